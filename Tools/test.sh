#!/usr/bin/env bash
# Installs what the tests need and runs the whole suite:
#   bash Tools/test.sh
# With CELLAUDIT_REQUIRE_OPENCL=1 (as CI sets it) a missing OpenCL device fails the OpenCL
# tests; without it they are skipped where no device exists.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/Tools/install-deps.sh"
export POCL_CACHE_DIR="${POCL_CACHE_DIR:-${TMPDIR:-/tmp}/cellaudit-pocl-$(id -u)}"
mkdir -p "$POCL_CACHE_DIR"
export POCL_MAX_PTHREAD_COUNT="${POCL_MAX_PTHREAD_COUNT:-$(nproc)}"
cd "$root"
swift build --build-tests
swift test --skip-build --disable-xctest
