#!/usr/bin/env python3
"""NumPy peer of `cellaudit bench --workload relevance` for Tools/bench_peers.py: LRP of an LSTM
with a linear readout, one sequence at a time, written as the reference implementation
ArrasL/LRP_for_LSTM structures it (a forward pass that keeps every gate, then a backward loop
over steps calling one epsilon-rule function per linear map). Written here from the rules of
METHOD.md section 7, not copied.

    python Tools/peer_numpy_lrp.py [--cells 128] [--sequences 256] [--steps 32] [--timed 16] [--json]

Only the first --timed sequences are explained (it is slow); the rate is per sequence-step.
Needs numpy.
"""
import argparse
import json
import math
import time

import numpy as np


def eps_rule(a, w, b, z, r_out, n_inputs, eps, bias_factor):
    """Relevance of the inputs a [D] of the map z = w a + b (w [M, D], z [M]) given r_out [M]."""
    s = np.where(z >= 0, 1.0, -1.0)
    numer = w.T * a[:, None] + bias_factor * (b + eps * s)[None, :] / n_inputs
    return (numer / (z + eps * s)[None, :] * r_out[None, :]).sum(1)


def explain(x, W, R, b, V, a, eps=0.001, bias_factor=0.0):
    T, I = x.shape
    H = R.shape[1]
    h = np.zeros((T + 1, H)); c = np.zeros((T + 1, H))   # index -1 is the initial state
    gates = np.zeros((T, 4 * H)); pre = np.zeros((T, 4 * H))
    for t in range(T):
        pre[t] = W @ x[t] + R @ h[t - 1] + b
        gates[t, :H] = 1 / (1 + np.exp(-pre[t, :H]))
        gates[t, H:2 * H] = 1 / (1 + np.exp(-pre[t, H:2 * H]))
        gates[t, 2 * H:3 * H] = np.tanh(pre[t, 2 * H:3 * H])
        gates[t, 3 * H:] = 1 / (1 + np.exp(-pre[t, 3 * H:]))
        c[t] = gates[t, H:2 * H] * c[t - 1] + gates[t, :H] * gates[t, 2 * H:3 * H]
        h[t] = gates[t, 3 * H:] * np.tanh(c[t])
    logits = V @ h[T - 1] + a
    k = int(logits.argmax())
    r_out = np.zeros_like(logits); r_out[k] = logits[k]
    rh = np.zeros((T + 1, H)); rc = np.zeros((T + 1, H)); rx = np.zeros((T, I))
    rh[T - 1] = eps_rule(h[T - 1], V, a, logits, r_out, H, eps, bias_factor)
    eye = np.identity(H); zero = np.zeros(H)
    g = slice(2 * H, 3 * H)
    for t in reversed(range(T)):
        rc[t] += rh[t]
        rc[t - 1] = eps_rule(gates[t, H:2 * H] * c[t - 1], eye, zero, c[t], rc[t], 2 * H, eps, bias_factor)
        rg = eps_rule(gates[t, :H] * gates[t, g], eye, zero, c[t], rc[t], 2 * H, eps, bias_factor)
        rx[t] = eps_rule(x[t], W[g], b[g], pre[t, g], rg, I + H, eps, bias_factor)
        rh[t - 1] = eps_rule(h[t - 1], R[g], b[g], pre[t, g], rg, I + H, eps, bias_factor)
    return rx, rh[:T]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", type=int, default=128)
    p.add_argument("--sequences", type=int, default=256)
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--timed", type=int, default=16)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rng = np.random.default_rng(17)
    H, I, K = args.cells, 8, 10
    s = 1 / math.sqrt(H)
    W, R = rng.uniform(-s, s, (4 * H, I)), rng.uniform(-s, s, (4 * H, H))
    b, V, a = rng.uniform(-s, s, 4 * H), rng.uniform(-s, s, (K, H)), rng.uniform(-s, s, K)
    x = rng.uniform(-1, 1, (args.sequences, args.steps, I))
    count = min(args.timed, args.sequences)
    explain(x[0], W, R, b, V, a)
    start = time.perf_counter()
    for n in range(count):
        explain(x[n], W, R, b, V, a)
    seconds = time.perf_counter() - start
    work = count * args.steps
    row = dict(peer="numpy lrp per sequence", cells=H, work=work, median_seconds=seconds, per_second=work / seconds)
    print(json.dumps(row) if args.json else f"{row['peer']}: {row['per_second']:.3g} sequence-steps per second")


if __name__ == "__main__":
    main()
