#!/usr/bin/env python3
"""NumPy peer of `cellaudit bench --workload ablation`: every single-cell ablation of a random
LSTM (plus the intact network) over random sequences, batched the way a user would write it in
NumPy (the ablation configurations as an extra batch dimension, one matrix product per step).

    python Tools/peer_numpy_ablation.py [--cells 64] [--sequences 256] [--steps 16] [--repeat 3] [--json]

Prints configuration-sequence-steps per second (median of --repeat runs). Needs numpy only.
"""
import argparse
import json
import math
import time

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def ablated_forward(W, R, b, V, a, x, keep):
    """keep [C, H]; x [N, T, I] -> outputs [C, N, K]."""
    C, H = keep.shape
    N, T, _ = x.shape
    pre_x = x @ W.T + b                                   # [N, T, 4H], shared by every configuration
    h = np.zeros((C, N, H), np.float32)
    c = np.zeros((C, N, H), np.float32)
    k = keep[:, None, :]
    for t in range(T):
        z = pre_x[None, :, t] + h @ R.T                   # [C, N, 4H]
        i, f, g, o = sigmoid(z[..., :H]), sigmoid(z[..., H:2 * H]), np.tanh(z[..., 2 * H:3 * H]), sigmoid(z[..., 3 * H:])
        c = (f * c + i * g) * k
        h = o * np.tanh(c) * k
    return h @ V.T + a


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", type=int, default=64)
    p.add_argument("--sequences", type=int, default=256)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rng = np.random.default_rng(6)
    H, I, K = args.cells, 8, 10
    s = 1 / math.sqrt(H)
    W = rng.uniform(-s, s, (4 * H, I)).astype(np.float32)
    R = rng.uniform(-s, s, (4 * H, H)).astype(np.float32)
    b = rng.uniform(-s, s, 4 * H).astype(np.float32)
    V = rng.uniform(-s, s, (K, H)).astype(np.float32)
    a = rng.uniform(-s, s, K).astype(np.float32)
    x = rng.uniform(-1, 1, (args.sequences, args.steps, I)).astype(np.float32)
    keep = np.ones((H + 1, H), np.float32)
    keep[np.arange(1, H + 1), np.arange(H)] = 0
    work = (H + 1) * args.sequences * args.steps
    ablated_forward(W, R, b, V, a, x, keep)
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        ablated_forward(W, R, b, V, a, x, keep)
        times.append(time.perf_counter() - start)
    median = sorted(times)[len(times) // 2]
    row = dict(peer="numpy ablation", cells=H, configurations=H + 1, work=work, median_seconds=median, per_second=work / median)
    print(json.dumps(row) if args.json else f"numpy ablation: {H + 1} configurations x {args.sequences} sequences x "
          f"{args.steps} steps: {row['per_second']:.3g} configuration-sequence-steps/s ({median:.3f} s)")


if __name__ == "__main__":
    main()
