#!/usr/bin/env bash
# A real one-node Slurm cluster (Debian's slurmctld + slurmd + munge) inside this machine, for CI.
# Works as root in a container without systemd and without cgroup delegation: no cgroup plugin is
# used (proctrack/linuxproc, task/none, jobacct_gather/none) and the daemons are started by hand.
#
#   Tools/slurm/local-cluster.sh install   # apt-get the packages (skipped when already installed)
#   Tools/slurm/local-cluster.sh start     # munge key + munged, /etc/slurm/slurm.conf, slurmctld, slurmd; waits for the node
#   Tools/slurm/local-cluster.sh stop      # scancel everything, stop the daemons (never fails when they are gone)
#   Tools/slurm/local-cluster.sh status    # sinfo + squeue
#
# Environment:
#   SLURM_LOCAL_DIR      state, spool, pid and log files (default /var/tmp/cellaudit-slurm)
#   SLURM_START_TIMEOUT  seconds start waits for the node to be idle (default 60)
#   SLURM_STOP_TIMEOUT   seconds stop waits for each daemon to exit before SIGKILL (default 20)
#
# Cluster: ClusterName=cellaudit-ci, one node (this host's short name, NodeAddr=127.0.0.1) with
# CPUs=$(nproc), one partition `debug` (default, no time limit). Jobs get cores, not memory
# (select/cons_tres, CR_Core), so independent 1-CPU tasks run side by side. A job whose dependency
# can never be satisfied is cancelled (DependencyParameters=kill_invalid_depend) instead of pending
# forever. No accounting storage: finished jobs stay visible to `scontrol show job` for MinJobAge
# (600 s), which Tools/slurm/wait-jobs.sh reads.
set -euo pipefail

DIR="${SLURM_LOCAL_DIR:-/var/tmp/cellaudit-slurm}"
START_TIMEOUT="${SLURM_START_TIMEOUT:-60}"
STOP_TIMEOUT="${SLURM_STOP_TIMEOUT:-20}"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
MUNGE_KEY=/etc/munge/munge.key
MUNGE_RUN=/run/munge
MUNGE_PID="$MUNGE_RUN/munged.pid"
PACKAGES=(munge slurm-client slurmctld slurmd slurm-wlm-basic-plugins)

die() { echo "local-cluster: error: $*" >&2; exit 1; }
say() { echo "local-cluster: $*" >&2; }

need_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (it writes /etc/slurm and starts the daemons)"
}

need_installed() {
    local cmd
    for cmd in munged slurmctld slurmd sinfo squeue scontrol scancel; do
        command -v "$cmd" >/dev/null || die "$cmd is not on PATH; run '$0 install' first"
    done
}

# pid_alive PIDFILE: true when the file names a running process.
pid_alive() {
    local pid
    [ -s "$1" ] || return 1
    pid="$(tr -dc '0-9' <"$1")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

show_logs() {
    local f
    for f in "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" /var/log/munge/munged.log; do
        [ -f "$f" ] || continue
        echo "----- tail $f -----" >&2
        tail -n 30 "$f" >&2 || true
    done
}

cmd_install() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        say "already installed: ${PACKAGES[*]}"
        return 0
    fi
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    say "installing: ${missing[*]}"
    # policy-rc.d (present in most containers) keeps the postinst scripts from starting daemons;
    # without systemd they could not anyway, and `start` runs them by hand.
    $sudo apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
    say "installed: $(slurmctld -V 2>/dev/null || echo '?')"
}

start_munge() {
    getent passwd munge >/dev/null || die "no 'munge' user; is the munge package installed?"
    if [ ! -s "$MUNGE_KEY" ]; then
        say "creating $MUNGE_KEY"
        mkdir -p "$(dirname "$MUNGE_KEY")"
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile="$MUNGE_KEY" || die "mungekey --create failed"
        else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none || die "cannot write $MUNGE_KEY"
        fi
    fi
    chown munge:munge "$(dirname "$MUNGE_KEY")" "$MUNGE_KEY"
    chmod 0700 "$(dirname "$MUNGE_KEY")"
    chmod 0400 "$MUNGE_KEY"
    mkdir -p "$MUNGE_RUN" /var/lib/munge /var/log/munge
    chown munge:munge "$MUNGE_RUN" /var/lib/munge /var/log/munge
    chmod 0755 "$MUNGE_RUN"
    if pid_alive "$MUNGE_PID"; then
        say "munged already running (pid $(cat "$MUNGE_PID"))"
    else
        rm -f "$MUNGE_PID" "$MUNGE_RUN/munge.socket.2" "$MUNGE_RUN/munge.socket.2.lock"
        runuser -u munge -- /usr/sbin/munged || die "munged did not start; see /var/log/munge/munged.log"
    fi
    local i
    for ((i = 0; i < 50; i++)); do
        if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    show_logs
    die "munge does not encode/decode credentials after 10 s"
}

write_conf() {
    local host cpus mem_mb
    host="$(hostname -s)"
    [ -n "$host" ] || die "hostname -s is empty"
    cpus="$(nproc)"
    mem_mb="$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)"
    ((mem_mb > 0)) || mem_mb=1
    mkdir -p "$CONF_DIR" "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/run"
    cat >"$CONF" <<EOF
# Written by Tools/slurm/local-cluster.sh: a one-node cluster for CI, without cgroups.
ClusterName=cellaudit-ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# Schedule again right after a job ends (defaults: up to 3 s batch delay, 2 s minimum interval), so
# short CI jobs and their dependents do not sit in the queue.
SchedulerParameters=batch_sched_delay=0,sched_min_interval=100000
DependencyParameters=kill_invalid_depend
ReturnToService=2
MinJobAge=600
KillWait=5
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    # No cgroup plugin is configured above; this only keeps anything that reads cgroup.conf from
    # trying to mount or constrain cgroups.
    cat >"$CONF_DIR/cgroup.conf" <<EOF
# Written by Tools/slurm/local-cluster.sh: nothing is constrained.
CgroupAutomount=no
ConstrainCores=no
ConstrainDevices=no
ConstrainRAMSpace=no
ConstrainSwapSpace=no
EOF
    NODE="$host"
}

node_state() {
    sinfo --noheader --nodes="$NODE" --format=%T 2>/dev/null | head -n 1 | tr -d ' *'
}

cmd_start() {
    need_root
    need_installed
    local t0
    t0="$(date +%s%N)"
    start_munge
    write_conf
    if pid_alive "$DIR/run/slurmctld.pid"; then
        say "slurmctld already running (pid $(cat "$DIR/run/slurmctld.pid"))"
    else
        # -c: forget jobs from an earlier run, so every start begins with an empty queue.
        slurmctld -c || { show_logs; die "slurmctld did not start"; }
    fi
    if pid_alive "$DIR/run/slurmd.pid"; then
        say "slurmd already running (pid $(cat "$DIR/run/slurmd.pid"))"
    else
        slurmd -N "$NODE" || { show_logs; die "slurmd did not start"; }
    fi
    local state="" deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        state="$(node_state)"
        case "$state" in
            idle | mixed | allocated | completing) break ;;
            down | drained | draining | fail | failing | inval | invalid)
                # ReturnToService=2 brings a node back once slurmd registers; nudge it in case.
                scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
        esac
        sleep 0.5
    done
    case "$state" in
        idle | mixed | allocated | completing) ;;
        *)
            sinfo -N -l >&2 2>&1 || true
            show_logs
            die "node $NODE is '${state:-unreachable}', not idle, after ${START_TIMEOUT} s" ;;
    esac
    say "cluster cellaudit-ci is up in $(( ($(date +%s%N) - t0) / 1000000 )) ms: node $NODE ($(nproc) CPUs) is $state; logs in $DIR/log"
    echo "$DIR/log"
}

# stop_procs LABEL PIDFILE... -- NAME...: SIGTERM to the processes named by the pid files and to
# every process whose name is exactly one of NAMEs (daemons started without, or having lost, their
# pid file), waits up to STOP_TIMEOUT s for all of them, then SIGKILLs what is left. Never fails.
stop_procs() {
    local label="$1" n pids="" pid i left="" files=()
    shift
    while (($#)) && [ "$1" != "--" ]; do
        if pid_alive "$1"; then pids+=" $(tr -dc '0-9' <"$1")"; fi
        files+=("$1")
        shift
    done
    (($#)) && shift
    for n in "$@"; do pids+=" $(pgrep -x "$n" | tr '\n' ' ' || true)"; done
    pids="$(tr ' ' '\n' <<<"$pids" | grep -E '^[0-9]+$' | sort -un | tr '\n' ' ' || true)"
    if [ -n "${pids// /}" ]; then
        for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
        for ((i = 0; ; i++)); do
            left=""
            for pid in $pids; do kill -0 "$pid" 2>/dev/null && left+=" $pid"; done
            [ -n "$left" ] && ((i < STOP_TIMEOUT * 10)) || break
            sleep 0.1
        done
        if [ -n "$left" ]; then
            say "$label:$left ignored SIGTERM for ${STOP_TIMEOUT} s; killing"
            for pid in $left; do kill -KILL "$pid" 2>/dev/null || true; done
            # Even SIGKILL takes a moment; do not hand back while they still hold ports and files.
            for ((i = 0; i < 50; i++)); do
                left=""
                for pid in $pids; do kill -0 "$pid" 2>/dev/null && left+=" $pid"; done
                [ -n "$left" ] || break
                sleep 0.1
            done
            [ -z "$left" ] || say "$label:$left still there 5 s after SIGKILL"
        fi
    fi
    ((${#files[@]} == 0)) || rm -f "${files[@]}"
}

cmd_stop() {
    if command -v scancel >/dev/null && pid_alive "$DIR/run/slurmctld.pid"; then
        local jobs
        jobs="$(timeout 10 squeue --noheader --format=%F 2>/dev/null | sort -u || true)"
        # shellcheck disable=SC2086
        [ -z "$jobs" ] || timeout 10 scancel --quiet $jobs >/dev/null 2>&1 || true
        # Let running jobs get their signal before slurmd goes away (bounded).
        local i
        for ((i = 0; i < 20; i++)); do
            [ -z "$(timeout 5 squeue --noheader --states=RUNNING,COMPLETING 2>/dev/null || true)" ] && break
            sleep 0.5
        done
    fi
    # slurmd and slurmctld together (each takes 1-2 s to exit), munged after them.
    stop_procs slurm "$DIR/run/slurmd.pid" "$DIR/run/slurmctld.pid" -- slurmstepd slurmd slurmctld slurmscriptd
    stop_procs munged "$MUNGE_PID" -- munged
    say "stopped"
}

cmd_status() {
    need_installed
    sinfo || die "sinfo failed: is the cluster started? ($0 start)"
    squeue || die "squeue failed"
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
