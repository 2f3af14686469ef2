#!/usr/bin/env python3
"""NumPy datasets for CellAudit's .npz reader (issue 16): the first 20 sequences of the digits test
split and of the flip-flop test set, saved as NumPy users save them, plus broken archives.

Writes Tests/Fixtures/npz/:
    digits20.npz             numpy.savez: inputs float32 [20, 8, 8], labels int64 [20]
    digits20_compressed.npz  numpy.savez_compressed, inputs float64 in Fortran order
    flipflop20.npz           inputs float32 [20, 100, 3], targets float32 [20, 100, 3]
    labels_float.npz         labels as float64 (refused: labels must be integers)
    object_inputs.npz        inputs as an object array (refused)
    truncated.npz            digits20.npz cut in half (refused)

    python Tools/make_npz_fixtures.py
Needs numpy and safetensors.
"""
import os

import numpy as np
from safetensors.numpy import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "Tests", "Fixtures")
OUT = os.path.join(FIX, "npz")


def main():
    os.makedirs(OUT, exist_ok=True)
    digits = load_file(os.path.join(FIX, "digits_test.safetensors"))
    flip = load_file(os.path.join(FIX, "flipflop_test.safetensors"))
    x, y = digits["inputs"][:20], digits["labels"][:20].astype(np.int64)
    np.savez(os.path.join(OUT, "digits20.npz"), inputs=x, labels=y)
    np.savez_compressed(os.path.join(OUT, "digits20_compressed.npz"), inputs=np.asfortranarray(x.astype(np.float64)), labels=y)
    np.savez(os.path.join(OUT, "flipflop20.npz"), inputs=flip["inputs"][:20], targets=flip["targets"][:20])
    np.savez(os.path.join(OUT, "labels_float.npz"), inputs=x, labels=y.astype(np.float64))
    np.savez(os.path.join(OUT, "object_inputs.npz"), inputs=np.array([[[1.0]]], dtype=object), labels=np.array([0]))
    with open(os.path.join(OUT, "digits20.npz"), "rb") as f:
        whole = f.read()
    with open(os.path.join(OUT, "truncated.npz"), "wb") as f:
        f.write(whole[: len(whole) // 2])
    print(sorted(os.listdir(OUT)))


if __name__ == "__main__":
    main()
