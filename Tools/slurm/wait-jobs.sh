#!/usr/bin/env bash
# Waits until none of the given Slurm jobs is pending or running, then prints each job's final state.
#
#   Tools/slurm/wait-jobs.sh JOBID... --timeout SECONDS
#
# JOBID is a job id (12), an array job id (12, meaning all its tasks) or one array task (12_3).
# Output, one line per job or array task: `<id> <STATE> <exit code> <reason>`, e.g. `12_3 FAILED 1:0 NonZeroExitCode`.
# States come from sacct when accounting storage works, else from `scontrol show job`, which only
# knows a finished job for MinJobAge seconds (600 in Tools/slurm/local-cluster.sh's slurm.conf).
#
# Exit status: 0 when every job (every array task) ended COMPLETED; 1 when any ended otherwise
# (FAILED, CANCELLED, TIMEOUT, ... or no longer known); 124 on timeout, after printing squeue and
# cancelling the jobs; 2 on bad arguments.
set -euo pipefail

usage() { echo "usage: $0 JOBID... --timeout SECONDS" >&2; exit 2; }
die() { echo "wait-jobs: error: $1" >&2; exit "${2:-1}"; }

jobs=()
timeout=""
while (($#)); do
    case "$1" in
        --timeout) (($# >= 2)) || usage; timeout="$2"; shift 2 ;;
        --timeout=*) timeout="${1#--timeout=}"; shift ;;
        -h | --help) usage ;;
        *)
            [[ "$1" =~ ^[0-9]+(_[0-9]+)?$ ]] || die "not a job id: '$1'" 2
            jobs+=("$1"); shift ;;
    esac
done
((${#jobs[@]})) || usage
[[ "$timeout" =~ ^[0-9]+$ ]] && ((timeout > 0)) || die "--timeout SECONDS (a positive integer) is required" 2
for cmd in squeue scontrol scancel; do
    command -v "$cmd" >/dev/null || die "$cmd is not on PATH (is Slurm installed? Tools/slurm/local-cluster.sh install)" 2
done
joblist="$(IFS=,; echo "${jobs[*]}")"

# Finished states; anything else (PENDING, RUNNING, COMPLETING, SUSPENDED, REQUEUED, ...) is waited on.
terminal=" BOOT_FAIL CANCELLED COMPLETED DEADLINE FAILED NODE_FAIL OUT_OF_MEMORY PREEMPTED TIMEOUT "

errfile="$(mktemp)"
trap 'rm -f "$errfile"' EXIT

# active: prints the ids of the given jobs/tasks that have not finished; fails (squeue's message in
# $errfile) when squeue can not answer.
active() {
    local out rc=0
    out="$(squeue --noheader --states=all --jobs="$joblist" --format='%i %T' 2>"$errfile")" || rc=$?
    if ((rc != 0)); then
        # squeue fails this way when none of the ids is known any more: nothing is active.
        grep -q "Invalid job id" "$errfile" && return 0
        return 1
    fi
    local id state
    while read -r id state; do
        [ -n "$id" ] || continue
        [[ "$terminal" == *" $state "* ]] || echo "$id"
    done <<<"$out"
}

last_error=""
deadline=$((SECONDS + timeout))
delay=0.5
while :; do
    if pending="$(active)"; then
        [ -n "$pending" ] || break
        last_error=""
    else
        last_error="$(tr '\n' ' ' <"$errfile")"
    fi
    if ((SECONDS > deadline)); then
        echo "wait-jobs: timeout: after ${timeout} s jobs $joblist are not all finished${last_error:+ (squeue: $last_error)}" >&2
        timeout 10 squeue --jobs="$joblist" --states=all >&2 || true
        timeout 10 scancel "${jobs[@]}" >&2 || true
        exit 124
    fi
    sleep "$delay"
    delay=1
done

# final_sacct: `id STATE exitcode reason` lines from accounting, or failure when it is not usable.
final_sacct() {
    command -v sacct >/dev/null || return 1
    local out
    out="$(sacct --noheader --allocations --parsable2 --jobs="$joblist" --format=JobID,State,ExitCode,Reason 2>/dev/null)" || return 1
    [ -n "$out" ] || return 1
    # "CANCELLED by 0" -> CANCELLED
    awk -F'|' '{ split($2, s, " "); r = ($4 == "" ? "None" : $4); print $1, s[1], $3, r }' <<<"$out"
}

# final_scontrol: the same from the controller's memory of finished jobs (MinJobAge).
final_scontrol() {
    local j out
    for j in "${jobs[@]}"; do
        if ! out="$(scontrol show job --oneliner "$j" 2>/dev/null)" || [ -z "$out" ]; then
            echo "$j UNKNOWN - no-longer-known-to-slurmctld(older-than-MinJobAge?)"
            continue
        fi
        awk '{
            delete f
            for (i = 1; i <= NF; i++) { k = $i; sub(/=.*/, "", k); v = $i; sub(/^[^=]*=/, "", v); if (!(k in f)) f[k] = v }
            id = ("ArrayTaskId" in f) ? f["ArrayJobId"] "_" f["ArrayTaskId"] : f["JobId"]
            print id, f["JobState"], f["ExitCode"], f["Reason"]
        }' <<<"$out"
    done
}

if ! final="$(final_sacct)"; then
    final="$(final_scontrol)"
fi
final="$(awk '!seen[$1]++' <<<"$final" | sort -t_ -k1,1n -k2,2n)"
echo "$final"
bad="$(awk '$2 != "COMPLETED"' <<<"$final")"
if [ -n "$bad" ]; then
    echo "wait-jobs: $(wc -l <<<"$bad") of $(wc -l <<<"$final") jobs did not end COMPLETED" >&2
    exit 1
fi
