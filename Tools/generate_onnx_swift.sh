#!/usr/bin/env bash
# Regenerates Sources/CellAuditImport/ONNX/onnx.pb.swift from ONNX's own schema, onnx.proto, with
# apple/swift-protobuf's protoc plugin. Run once per ONNX schema change; the generated file is
# committed, so builds and CI need neither protoc nor the plugin.
#
#   bash Tools/generate_onnx_swift.sh [path/to/onnx.proto]
#
# Default schema: the onnx.proto that ships in the `onnx` Python package (pip install onnx).
# Needs protoc (Debian: protobuf-compiler) and builds protoc-gen-swift from swift-protobuf 1.39.0
# (the version Package.swift resolves) into /tmp unless PROTOC_GEN_SWIFT names one.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
proto="${1:-$(python3 -c 'import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), "onnx.proto"))')}"
[[ -f "$proto" ]] || { echo "error: no onnx.proto at $proto" >&2; exit 1; }
command -v protoc >/dev/null || { echo "error: protoc is not installed (apt-get install protobuf-compiler)" >&2; exit 1; }
plugin="${PROTOC_GEN_SWIFT:-}"
if [[ -z "$plugin" ]]; then
    src=/tmp/cellaudit-swift-protobuf
    if [[ ! -d "$src" ]]; then
        git clone -q https://github.com/apple/swift-protobuf "$src"
        git -C "$src" checkout -q 1.39.0
    fi
    (cd "$src" && swift build -c release --product protoc-gen-swift >&2)
    plugin="$src/.build/release/protoc-gen-swift"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$proto" "$work/onnx.proto"
protoc --plugin=protoc-gen-swift="$plugin" --proto_path="$work" --swift_opt=Visibility=Internal \
    --swift_out="$work" "$work/onnx.proto"
cp "$work/onnx.pb.swift" "$root/Sources/CellAuditImport/ONNX/onnx.pb.swift"
echo "wrote Sources/CellAuditImport/ONNX/onnx.pb.swift from $proto ($(python3 -c 'import onnx; print("onnx", onnx.__version__)' 2>/dev/null || echo 'given schema'))"
