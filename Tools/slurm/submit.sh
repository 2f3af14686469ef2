#!/usr/bin/env bash
# Submits a sharded CellAudit run to Slurm: a job array of N shards (at most M at once) and a
# merge job that starts only when every shard succeeded (--dependency=afterok).
#
#   Tools/slurm/submit.sh -n N [-m M] [--gpus] [--merge-cpus C] [--merged DIR] [-- SBATCH_OPTION...] -- COMMAND MODEL ... --out DIR
#
#   Tools/slurm/submit.sh -n 64 -m 16 --gpus -- characterize big.safetensors --out /shared/runs/big
#
# COMMAND is characterize, audit or ablate with its usual arguments; --out DIR is where the shards
# go (DIR/shard-K-of-N); the merged result goes to --merged (default DIR-merged). Prints the two
# job ids, array first. SBATCH_OPTIONs (a partition, an account, a time limit) go to both jobs.
# --merge-cpus gives the merge job C cores (default 2): audit and ablate merges compute the rankings
# and the ranked curves.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
n="" m="" gpus=0 merged="" merge_cpus=2 sbatch_options=()
while (($#)); do
    case "$1" in
        -n) n="${2:?-n needs the number of shards}"; shift 2 ;;
        -m) m="${2:?-m needs the number of shards at once}"; shift 2 ;;
        --gpus) gpus=1; shift ;;
        --merge-cpus) merge_cpus="${2:?--merge-cpus needs a number}"; shift 2 ;;
        --merged) merged="${2:?--merged needs a directory}"; shift 2 ;;
        --) shift
            # A second `--` separates sbatch options from the command.
            if [[ " $* " == *" -- "* ]]; then
                while [[ "$1" != "--" ]]; do sbatch_options+=("$1"); shift; done
                shift
            fi
            break ;;
        -h | --help) usage ;;
        *) echo "submit.sh: unknown option '$1'" >&2; usage ;;
    esac
done
[[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "submit.sh: -n N (the number of shards) is required" >&2; exit 2; }
((n >= 2)) || { echo "submit.sh: one shard is a whole run; run the command itself (sbatch --wrap 'cellaudit ...')" >&2; exit 2; }
m="${m:-$n}"
[[ "$m" =~ ^[1-9][0-9]*$ ]] || { echo "submit.sh: -m M must be a positive number" >&2; exit 2; }
(($# >= 2)) || usage
out=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    [[ "${args[i]}" == "--out" ]] && out="${args[i + 1]:-}"
    [[ "${args[i]}" == --out=* ]] && out="${args[i]#--out=}"
done
[[ -n "$out" ]] || { echo "submit.sh: the command needs --out DIR (the shards' directory, on storage every node sees)" >&2; exit 2; }
merged="${merged:-${out%/}-merged}"
gpu_options=()
((gpus)) && gpu_options=(--gpus-per-task=1)
array=$(sbatch --parsable "${sbatch_options[@]}" "${gpu_options[@]}" --array="0-$((n - 1))%$m" \
    "$here/cellaudit-shards.sbatch" "$@")
array="${array%%;*}"
merge=$(sbatch --parsable "${sbatch_options[@]}" --cpus-per-task="$merge_cpus" --dependency="afterok:$array" --kill-on-invalid-dep=yes \
    "$here/cellaudit-merge.sbatch" "$out" --out "$merged")
merge="${merge%%;*}"
echo "$array $merge"
