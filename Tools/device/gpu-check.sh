#!/usr/bin/env bash
# One prepared call on a lent GPU machine (issue 31, item 3): with nothing but the bundle that
# Tools/device/bundle.sh made, register the NVIDIA OpenCL driver, list the devices, run the
# kernel parity table on the GPU, sweep the kernel settings that matter briefly, and benchmark
# every workload at GPU sizes; JSON and a log go to $OUT (default: gpu-check-out/).
#   On the device:  bash Tools/device/gpu-check.sh [BUNDLE]        (default dist/device/cellaudit-bundle.tar.gz)
#   Here, on PoCL:  bash Tools/device/gpu-check.sh --local [BUNDLE] (small sizes, the CPU device)
# BUNDLE is the archive bundle.sh writes (unpacked into a temporary folder first) or its folder.
# Each step has its own time limit; the whole stays under 8 minutes. A failing step is logged
# and the next one runs: the log says which failed (exit status 1 at the end if any did).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
local_run=0
if [[ "${1:-}" == "--local" ]]; then local_run=1; shift; fi
bundle="${1:-$root/dist/device/cellaudit-bundle.tar.gz}"
out="${OUT:-$root/gpu-check-out}"
mkdir -p "$out"
log="$out/gpu-check.log"
: > "$log"
if [[ -f "$bundle" ]]; then
    unpacked="$(mktemp -d)"
    trap 'rm -rf "$unpacked"' EXIT
    tar -C "$unpacked" -xzf "$bundle" || { echo "error: cannot unpack $bundle" | tee -a "$log"; exit 1; }
    bundle="$unpacked/$(ls "$unpacked" | head -1)"
fi
bundle="$(cd "$bundle" && pwd)"
failed=0
say() { echo "== $*" | tee -a "$log"; }
step() { # seconds name stdout-file command…   (stdout-file "-": the log)
    local limit="$1" name="$2" to="$3"; shift 3
    say "$name: $*"
    local start=$SECONDS rc
    if [[ "$to" == "-" ]]; then
        timeout --kill-after=10 "$limit" "$@" >> "$log" 2>&1; rc=$?
    else
        timeout --kill-after=10 "$limit" "$@" > "$out/$to" 2>> "$log"; rc=$?
    fi
    say "$name: exit $rc after $((SECONDS - start)) s"
    if (( rc != 0 )); then failed=1; fi
    return 0
}

export LD_LIBRARY_PATH="$bundle/lib"
export POCL_CACHE_DIR="$out/pocl-cache"
mkdir -p "$POCL_CACHE_DIR"
bin="$bundle/bin/cellaudit"
say "bundle $bundle; binary $(sha256sum "$bin" | cut -c1-16)"
ldd "$bin" >> "$log" 2>&1
if ldd "$bin" | grep -q "not found"; then say "error: the bundle misses a library (see ldd above)"; exit 1; fi
# Every library but the C library's own must come from the bundle, not from this machine.
outside=$(ldd "$bin" | awk '$3 ~ /^\// { print $1, $3 }' | grep -v -E '^(libc|libm|libdl|libpthread|librt|ld-linux|libresolv|libutil)[.-]' | grep -v " $bundle/" || true)
if [[ -n "$outside" ]]; then say "error: libraries resolved outside the bundle: $outside"; exit 1; fi

if (( local_run == 0 )); then
    # The ICD loader finds vendors through OCL_ICD_VENDORS (a folder of .icd files, each naming
    # a driver library); a bare machine has the NVIDIA driver but no /etc/OpenCL/vendors entry.
    icd=""
    for d in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/local/cuda/lib64 /run/nvidia/driver/usr/lib/x86_64-linux-gnu; do
        if [[ -e "$d/libnvidia-opencl.so.1" ]]; then icd="$d/libnvidia-opencl.so.1"; break; fi
    done
    if [[ -z "$icd" ]]; then icd="$(find / -xdev -name 'libnvidia-opencl.so.1' 2>/dev/null | head -1)"; fi
    if [[ -z "$icd" ]]; then say "error: no libnvidia-opencl.so.1 on this machine"; exit 1; fi
    mkdir -p "$out/vendors"
    echo "$icd" > "$out/vendors/nvidia.icd"
    export OCL_ICD_VENDORS="$out/vendors"
    say "NVIDIA OpenCL driver: $icd"
    nvidia-smi >> "$log" 2>&1 || true
    response_cells=4096; forward_cells=1024; repeats=3
else
    response_cells=64; forward_cells=32; repeats=1
fi

step 30 devices devices.txt "$bin" devices
step 150 parity parity.txt "$bin" check-kernels --full
# The settings that matter, briefly: work-group size, vector width (responses), forward tile.
for wg in 64 128 256; do
    for vw in 1 4 8; do
        step 40 "sweep wg=$wg vw=$vw" "sweep-response-wg$wg-vw$vw.json" env CELLAUDIT_WG=$wg CELLAUDIT_VW=$vw \
            "$bin" bench --backend opencl --workload response --cells "$response_cells" --repeats 1 --json
    done
done
for tile in 4 8 16; do
    step 40 "sweep forward tile=$tile" "sweep-forward-tile$tile.json" env CELLAUDIT_FORWARD_TILE=$tile \
        "$bin" bench --backend opencl --workload forward --cells "$forward_cells" --repeats 1 --json
done
step 150 "bench responses" bench-response.json "$bin" bench --backend all --workload response --cells "$response_cells" --repeats "$repeats" --json
step 150 "bench forward, ablation, relevance, fixed points" bench-all.json \
    "$bin" bench --backend all --workload all --cells "$forward_cells" --repeats "$repeats" --json
say "done; failed steps: $failed; results in $out"
exit $failed
