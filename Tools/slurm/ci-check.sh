#!/usr/bin/env bash
# The sharded run on a real Slurm cluster, as a user would submit it: Tools/slurm/submit.sh sends
# an array of 4 `characterize` shards and the dependent merge; once both ended (bounded), the
# merged responses must equal a single run's byte for byte.
#
#   bash Tools/slurm/ci-check.sh [CELLAUDIT_BINARY]
#
# Needs a running cluster (Tools/slurm/local-cluster.sh install && start, as .ci/run does).
# Without one it fails when CELLAUDIT_REQUIRE_SLURM=1 (CI), and says it did not run otherwise.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
binary="${1:-$root/.build/debug/cellaudit}"
[[ -x "$binary" ]] || { echo "slurm check: error: no cellaudit binary at $binary (build first)" >&2; exit 1; }
if ! command -v sinfo >/dev/null || ! sinfo -h -o %T 2>/dev/null | grep -q .; then
    if [[ "${CELLAUDIT_REQUIRE_SLURM:-0}" == 1 ]]; then
        echo "slurm check: error: no Slurm cluster answers (CELLAUDIT_REQUIRE_SLURM=1); start one with Tools/slurm/local-cluster.sh install start" >&2
        exit 1
    fi
    echo "slurm check: NOT RUN: no Slurm cluster answers (Tools/slurm/local-cluster.sh install && Tools/slurm/local-cluster.sh start)" >&2
    exit 0
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/cellaudit-slurm-check.XXXXXX")"
trap 'rm -rf "$work"' EXIT
model="$root/Tests/Fixtures/digits_lstm32x2.safetensors"
bank=(--step-amplitudes 0.25,0.5,1,2 --frequencies 0.02,0.05,0.1,0.2 --sine-amplitudes 0.5,1 --window 120 --backend cpu --quiet)
# sbatch exports this shell's environment; each task's one core must come from Slurm.
unset CELLAUDIT_THREADS
start=$(date +%s.%N)
read -r array merge < <(cd "$work" && CELLAUDIT="$binary" bash "$root/Tools/slurm/submit.sh" -n 4 -m 4 -- \
    characterize "$model" "${bank[@]}" --out "$work/shards")
echo "slurm check: submitted array $array (4 characterize shards) and merge $merge (afterok)" >&2
bash "$root/Tools/slurm/wait-jobs.sh" "$array" "$merge" --timeout "${CELLAUDIT_SLURM_TIMEOUT:-300}" || {
    echo "slurm check: error: the jobs did not all complete; their output:" >&2
    tail -n 20 "$work"/cellaudit-*.out >&2 || true
    exit 1
}
end=$(date +%s.%N)
# One core, as each shard had: the metadata names the thread count, the tensors never depend on it.
CELLAUDIT_THREADS=1 "$binary" characterize "$model" "${bank[@]}" --out "$work/single" >/dev/null
for file in responses.safetensors stimuli.csv; do
    cmp "$work/single/$file" "$work/shards-merged/$file" || { echo "slurm check: error: merged $file differs from a single run's" >&2; exit 1; }
done
ls "$work/shards" | grep -qx 'shard-3-of-4' || { echo "slurm check: error: no shard-3-of-4 directory" >&2; exit 1; }
printf 'slurm check: passed: 4 shards + merge on Slurm in %.1f s; merged responses.safetensors and stimuli.csv equal a single run byte for byte\n' \
    "$(awk "BEGIN { print $end - $start }")" >&2
