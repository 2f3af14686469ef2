#!/usr/bin/env python3
"""Writes a large random LSTM as a CellAudit model file (pytorch convention, F16 weights), for
the large-network benchmark: by default 3 layers of 4,096 cells, 16 inputs, 10 outputs.

    python Tools/make_large_model.py OUT.safetensors [--layers 3] [--cells 4096] [--inputs 16] [--seed 0]

Weights are drawn like PyTorch's LSTM initialisation, U(-1/sqrt(H), 1/sqrt(H)). Needs numpy and
safetensors.
"""
import argparse
import math

import numpy as np
from safetensors.numpy import save_file


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--cells", type=int, default=4096)
    p.add_argument("--inputs", type=int, default=16)
    p.add_argument("--outputs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rng = np.random.default_rng(a.seed)
    H = a.cells
    k = 1 / math.sqrt(H)
    t = {}
    width = a.inputs
    for l in range(a.layers):
        t[f"lstm.weight_ih_l{l}"] = rng.uniform(-k, k, (4 * H, width)).astype(np.float16)
        t[f"lstm.weight_hh_l{l}"] = rng.uniform(-k, k, (4 * H, H)).astype(np.float16)
        t[f"lstm.bias_ih_l{l}"] = rng.uniform(-k, k, 4 * H).astype(np.float16)
        t[f"lstm.bias_hh_l{l}"] = rng.uniform(-k, k, 4 * H).astype(np.float16)
        width = H
    t["fc.weight"] = rng.uniform(-k, k, (a.outputs, H)).astype(np.float16)
    t["fc.bias"] = rng.uniform(-k, k, a.outputs).astype(np.float16)
    meta = {"convention": "pytorch", "cell": "lstm", "layers": str(a.layers), "input_size": str(a.inputs),
            "hidden_sizes": ",".join([str(H)] * a.layers), "readout_weight": "fc.weight", "readout_bias": "fc.bias",
            "output": "last", "task": "classification", "source": f"Tools/make_large_model.py --seed {a.seed}"}
    save_file(t, a.out, metadata=meta)
    print(f"wrote {a.out}: {a.layers} layers x {H} cells")


if __name__ == "__main__":
    main()
