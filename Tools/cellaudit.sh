#!/usr/bin/env bash
# Installs what CellAudit needs, builds it in release mode and runs it with the given arguments:
#   bash Tools/cellaudit.sh audit
# The binary is built for this machine's CPU (`-target-cpu native`, and fused multiply-adds where
# the CPU has them), so the Swift CPU path uses its widest vector unit; it may not run on an older CPU. CELLAUDIT_PORTABLE=1 builds for the
# architecture's baseline instead (as plain `swift build -c release` does).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/Tools/install-deps.sh"
export POCL_CACHE_DIR="${POCL_CACHE_DIR:-${TMPDIR:-/tmp}/cellaudit-pocl-$(id -u)}"
mkdir -p "$POCL_CACHE_DIR"
if [ "${CELLAUDIT_PORTABLE:-0}" = 1 ]; then
    swift build -c release --package-path "$root" >&2
    exec "$root/.build/release/cellaudit" "$@"
fi
source "$root/Tools/native-flags.sh"
if ! swift build -c release --package-path "$root" --scratch-path "$root/.build-native" "${native_flags[@]}" >&2; then
    echo "warning: the build for this CPU failed; building for the baseline instead" >&2
    CELLAUDIT_PORTABLE=1 exec bash "$0" "$@"
fi
exec "$root/.build-native/release/cellaudit" "$@"
