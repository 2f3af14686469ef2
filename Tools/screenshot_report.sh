#!/usr/bin/env bash
# Renders an audit report in headless Chromium (Debian's `chromium`) to a PNG, to look at it.
#   bash Tools/screenshot_report.sh DIR/report.html [OUT.png] [WIDTHxHEIGHT]
set -euo pipefail
report=${1:?usage: screenshot_report.sh REPORT.html [OUT.png] [WIDTHxHEIGHT]}
out=${2:-${report%.html}.png}
size=${3:-1360x2400}
command -v chromium >/dev/null || { echo "error: chromium is not installed (apt-get install chromium)" >&2; exit 1; }
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size="${size/x/,}" \
    --screenshot="$(realpath -m "$out")" "file://$(realpath "$report")" 2>/dev/null
echo "wrote $out"
