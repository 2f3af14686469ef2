#!/usr/bin/env python3
"""NumPy peer of `cellaudit eval`: the same LSTM forward pass, batched over sequences as a user
would write it (one matrix product per step and layer), timed the same way.

    python Tools/peer_numpy_forward.py MODEL.safetensors DATA.safetensors [--repeat 5]

Reads CellAudit model files of the pytorch convention. Prints the score and sequence-steps per
second (median of --repeat runs). Needs numpy and safetensors.
"""
import argparse
import time

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def forward(layers, V, a, x, sequence):
    h_seq = x
    for W, R, b in layers:
        n, steps, _ = h_seq.shape
        H = R.shape[1]
        h = np.zeros((n, H), np.float32)
        c = np.zeros((n, H), np.float32)
        pre_x = h_seq @ W.T + b            # all input projections at once: [N, T, 4H]
        out = np.empty((n, steps, H), np.float32)
        for t in range(steps):
            z = pre_x[:, t] + h @ R.T
            i, f, g, o = sigmoid(z[:, :H]), sigmoid(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), sigmoid(z[:, 3 * H:])
            c = f * c + i * g
            h = o * np.tanh(c)
            out[:, t] = h
        h_seq = out
    return (h_seq[:, -1] if not sequence else h_seq) @ V.T + a


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    t = load_file(args.model)
    with safe_open(args.model, "np") as f:
        meta = f.metadata()
    if meta.get("convention") != "pytorch":
        raise SystemExit("error: this peer reads pytorch-convention model files")
    layers = [(t[f"lstm.weight_ih_l{k}"], t[f"lstm.weight_hh_l{k}"], t[f"lstm.bias_ih_l{k}"] + t[f"lstm.bias_hh_l{k}"])
              for k in range(int(meta["layers"]))]
    V, a = t[meta["readout_weight"]], t[meta["readout_bias"]]
    d = load_file(args.data)
    x = d["inputs"].astype(np.float32)
    sequence = meta.get("output") == "sequence"
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        y = forward(layers, V, a, x, sequence)
        times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    if "labels" in d:
        print(f"accuracy: {(y.argmax(1) == d['labels']).mean():.4f}")
    else:
        print(f"mse: {((y - d['targets']) ** 2).mean():.4f}")
    print(f"numpy forward: {seconds:.4f} s, {x.shape[0] * x.shape[1] / seconds:.3g} sequence-steps per second")


if __name__ == "__main__":
    main()
