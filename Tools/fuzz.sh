#!/usr/bin/env bash
# Fuzzes the safetensors header parser (with the model loader behind it), the ONNX reader, the
# restricted pickle reader and the torch.save archive reader
# with libFuzzer for a bounded time, starting from the test fixtures:
#   bash Tools/fuzz.sh [SECONDS]     (default 60; CI runs it)
# The target is Sources/CellAuditFuzz (first input byte mod 4: 0 safetensors, 1 ONNX, 2 pickle, 3 torch.save). A crash
# or an error that is not a clean FormatError/ModelError fails the run; libFuzzer leaves the input
# as crash-* in .build-fuzz/findings. Replay inputs without the fuzzer:
#   swift run CellAuditFuzz FILE…
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-60}"
cd "$root"
scratch="$root/.build-fuzz"
swift build --product CellAuditFuzz --scratch-path "$scratch" -Xswiftc -sanitize=fuzzer -Xswiftc -parse-as-library \
    -Xswiftc -DCELLAUDIT_FUZZ >&2
bin="$(swift build --product CellAuditFuzz --scratch-path "$scratch" -Xswiftc -sanitize=fuzzer -Xswiftc -parse-as-library -Xswiftc -DCELLAUDIT_FUZZ --show-bin-path)/CellAuditFuzz"
corpus="$scratch/corpus"; findings="$scratch/findings"
rm -rf "$corpus"; mkdir -p "$corpus" "$findings"
# Seeds: small fixtures, each behind its selector byte.
for f in Tests/Fixtures/digits_lstm8.safetensors Tests/Fixtures/digits_gru16.safetensors Tests/Fixtures/state_dicts/*.safetensors \
         Tests/Fixtures/cases/*.safetensors Tests/Fixtures/cases/2026-12-07/*.safetensors; do
    [[ -f "$f" && $(stat -c %s "$f") -lt 200000 ]] || continue
    { printf '\x00'; cat "$f"; } > "$corpus/st-$(basename "$f")"
done
for f in Tests/Fixtures/torch/*.pt; do
    { printf '\x03'; cat "$f"; } > "$corpus/pt-$(basename "$f")"
    # The pickle alone (data.pkl of each archive), behind selector 2.
    python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); n = [m for m in z.namelist() if m.endswith("data.pkl")]; sys.stdout.buffer.write(b"\x02" + z.read(n[0]))' "$f" \
        > "$corpus/pkl-$(basename "$f")" 2>/dev/null || rm -f "$corpus/pkl-$(basename "$f")"
done
for f in Tests/Fixtures/onnx/*_ts.onnx Tests/Fixtures/onnx/refuse_*.onnx Tests/Fixtures/cases/onnx/*.onnx Tests/Fixtures/cases/2026-12-07/*.onnx \
         Tests/Fixtures/onnx_bidirectional/torch_lstm_x2_final.onnx Tests/Fixtures/onnx_bidirectional/helper_*.onnx Tests/Fixtures/onnx_core/*.onnx \
         Tests/Fixtures/onnx_peephole/*.onnx; do
    { printf '\x01'; cat "$f"; } > "$corpus/onnx-$(basename "$f")"
done
# Earlier findings, each behind the selector of the reader that met it (file name prefix).
for f in Tests/Fixtures/fuzz/*; do
    case "$f" in *.h5) continue;; *.pt) sel='\x03';; *.onnx) sel='\x01';; *.pkl) sel='\x02';; *) sel='\x00';; esac
    { printf "$sel"; cat "$f"; } > "$corpus/found-$(basename "$f")"
done
echo "fuzzing for ${seconds} s from $(ls "$corpus" | wc -l) seeds" >&2
# The Swift runtime's backtracer would bury the trap's message under register dumps: it is off, and on
# a finding the log's cause lines and the crashing input's name are printed.
log="$scratch/fuzz.log"
status=0
SWIFT_BACKTRACE=enable=no "$bin" "$corpus" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=4096 \
    -artifact_prefix="$findings/" -print_final_stats=1 > "$log" 2>&1 || status=$?
if [[ $status -ne 0 ]]; then
    grep -E "Fatal error|fatal error|ERROR: libFuzzer|SUMMARY|Test unit written|Illegal|Unexpected error|deadly signal" "$log" | head -20
    tail -15 "$log"
    echo "fuzz: a finding (exit $status); replay it with: swift run CellAuditFuzz $findings/crash-…" >&2
    exit "$status"
fi
tail -12 "$log"
