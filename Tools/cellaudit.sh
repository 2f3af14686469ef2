#!/usr/bin/env bash
# Installs what CellAudit needs, builds it in release mode and runs it with the given arguments:
#   bash Tools/cellaudit.sh audit
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/Tools/install-deps.sh"
export POCL_CACHE_DIR="${POCL_CACHE_DIR:-${TMPDIR:-/tmp}/cellaudit-pocl-$(id -u)}"
mkdir -p "$POCL_CACHE_DIR"
swift build -c release --package-path "$root" >&2
exec "$root/.build/release/cellaudit" "$@"
