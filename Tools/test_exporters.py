#!/usr/bin/env python3
"""Checks that Tools/export_keras.py and Tools/export_onnx.py refuse, in one line, every model they
cannot read exactly, and still export the ones they can (issue 16, item 4), including the shared
cases keras-relu, keras-two-dense, onnx-clip, onnx-input-forget, onnx-sequence-lens,
onnx-input-projection-square and torch-onnx-export (whose export must equal torch_out.npy within
1e-4). Needs keras (any backend), onnx, onnxruntime, numpy and safetensors, which CI does not
install: run it where they are.

    KERAS_BACKEND=torch python Tools/test_exporters.py [--cases ../shared/cases]

Exits 0 when every check holds, 1 otherwise, printing one line per check.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import keras  # noqa: E402
import numpy as np  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

import export_keras  # noqa: E402
import export_onnx  # noqa: E402


def outcome(model):
    try:
        export_keras.export(model, "/tmp/cellaudit-test-export.safetensors", "last", None)
        return None
    except SystemExit as e:
        return str(e)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "cases"))
    args = p.parse_args()
    L = keras.layers
    built = {
        "plain LSTM + Dense": ([L.LSTM(4), L.Dense(2)], None),
        "Dropout before the readout": ([L.LSTM(4), L.Dropout(0.2), L.Dense(2)], None),
        "Masking": ([L.Masking(), L.LSTM(4), L.Dense(2)], "'masking' (Masking)"),
        "softmax readout": ([L.LSTM(4), L.Dense(2, activation="softmax")], "activation 'softmax'"),
        "hard_sigmoid cell": ([L.LSTM(4, activation="hard_sigmoid"), L.Dense(2)], "'hard_sigmoid'"),
        "relu LSTM": ([L.LSTM(4, activation="relu"), L.Dense(2)], "'relu'"),
        "Dense between": ([L.LSTM(4), L.Dense(3, activation="relu"), L.Dense(2)], "between the recurrent stack and the readout"),
    }
    failures = 0
    for name, (layers, expected) in built.items():
        got = outcome(keras.Sequential([keras.Input((5, 3))] + layers))
        ok = (got is None) if expected is None else (got is not None and expected in got and "\n" not in got and got.startswith("error: "))
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {got or 'exported'}")
    for case, expected in (("keras-relu", "'relu'"), ("keras-two-dense", "between the recurrent stack and the readout")):
        path = os.path.join(args.cases, case, "model.keras")
        if not os.path.exists(path):
            print(f"FAIL {case}: {path} not found")
            failures += 1
            continue
        got = outcome(keras.saving.load_model(path))
        ok = got is not None and expected in got
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} shared case {case}: {got or 'exported'}")
    for case, expected in (("onnx-clip", "'clip'"), ("onnx-input-forget", "'input_forget'"),
                           ("onnx-sequence-lens", "sequence_lens"), ("onnx-input-projection-square", "(MatMul) comes before")):
        try:
            export_onnx.export(os.path.join(args.cases, case, "model.onnx"), "/tmp/cellaudit-test-export.safetensors",
                               os.path.join(args.cases, case, "data.safetensors"))
            got = None
        except SystemExit as e:
            got = str(e)
        ok = got is not None and expected in got and got.startswith("error: ") and "\n" not in got
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} shared case {case}: {got or 'exported'}")
    case = os.path.join(args.cases, "torch-onnx-export")
    export_onnx.export(os.path.join(case, "model.onnx"), "/tmp/cellaudit-test-export.safetensors", os.path.join(case, "data.safetensors"))
    worst = float(np.abs(load_file("/tmp/cellaudit-test-export.safetensors")["golden.outputs"] - np.load(os.path.join(case, "torch_out.npy"))).max())
    ok = worst <= 1e-4
    failures += not ok
    print(f"{'ok  ' if ok else 'FAIL'} shared case torch-onnx-export: exported, golden outputs within {worst:.2g} of torch_out.npy "
          "(then: cellaudit inspect OUT --data data.safetensors --verify)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
