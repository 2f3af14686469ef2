#!/usr/bin/env python3
"""PyTorch peers for `Tools/bench_peers.py` (CPU, all threads): the decoupled response simulation
(simulate-only, the same default bank and random cells as Tools/peer_numpy.py), the batched
single-cell ablation (as Tools/peer_numpy_ablation.py), and relevance as a PyTorch user would
compute it: autograd gradient x input of the LSTM with its gates detached (which equals LRP at
epsilon -> 0, bias factor 0), batched over all sequences.

    python Tools/peer_torch.py response [--cells 256] [--window 400] [--json]
    python Tools/peer_torch.py ablation [--cells 64] [--sequences 256] [--steps 16] [--json]
    python Tools/peer_torch.py relevance [--cells 128] [--sequences 256] [--steps 32] [--json]
    python Tools/peer_torch.py forward [--cell lstm|gru|rnn_tanh|rnn_relu] [--cells 256] [--sequences 512] [--steps 64] [--json]

Needs torch and numpy.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_numpy import default_bank, waves  # noqa: E402


def median_time(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def response(args):
    rng = np.random.default_rng(2024)
    k = 1 / math.sqrt(args.cells)
    gates = {"lstm": 4, "gru": 3}.get(args.cell, 1)
    w, r, b = (torch.from_numpy(rng.uniform(-k, k, (gates, args.cells, 1)).astype(np.float32)) for _ in range(3))
    bhn = torch.from_numpy(rng.uniform(-k, k, (args.cells, 1)).astype(np.float32))
    bank = default_bank(args.window)
    wave, _ = waves(bank)
    u_all = torch.from_numpy((bank["amp"][:, None] * wave).astype(np.float32))  # [stim, T]

    def run():
        with torch.no_grad():
            h = torch.zeros(args.cells, u_all.shape[0])
            c = torch.zeros_like(h)
            y = torch.empty(u_all.shape[1], args.cells, u_all.shape[0])
            for t in range(u_all.shape[1]):
                u = u_all[:, t][None, :]
                if args.cell == "lstm":
                    i = torch.sigmoid(w[0] * u + r[0] * h + b[0])
                    f = torch.sigmoid(w[1] * u + r[1] * h + b[1])
                    g = torch.tanh(w[2] * u + r[2] * h + b[2])
                    o = torch.sigmoid(w[3] * u + r[3] * h + b[3])
                    c = f * c + i * g
                    h = o * torch.tanh(c)
                elif args.cell == "gru":
                    rg = torch.sigmoid(w[0] * u + r[0] * h + b[0])
                    z = torch.sigmoid(w[1] * u + r[1] * h + b[1])
                    n = torch.tanh(w[2] * u + b[2] + rg * (r[2] * h + bhn))
                    h = (1 - z) * n + z * h
                else:
                    a = w[0] * u + r[0] * h + b[0]
                    h = torch.tanh(a) if args.cell == "rnn_tanh" else torch.relu(a)
                y[t] = h
    seconds = median_time(run, args.repeat)
    work = args.cells * int(bank["end"].sum())
    return dict(peer="torch simulate-only", cell=args.cell, cells=args.cells, work=work, median_seconds=seconds, per_second=work / seconds)


def random_lstm(seed, H, I, K, sequences, steps):
    """An LSTM (W [4H, I], R [4H, H], b [4H]), a readout (V [K, H], a [K]) and inputs
    [sequences, steps, I], uniform as PyTorch initialises them."""
    rng = np.random.default_rng(seed)
    s = 1 / math.sqrt(H)
    shapes = [(4 * H, I), (4 * H, H), (4 * H,), (K, H), (K,)]
    tensors = [torch.from_numpy(rng.uniform(-s, s, shape).astype(np.float32)) for shape in shapes]
    return (*tensors, torch.from_numpy(rng.uniform(-1, 1, (sequences, steps, I)).astype(np.float32)))


def ablation(args):
    H, I = args.cells, 8
    W, R, b, V, a, x = random_lstm(6, H, I, 10, args.sequences, args.steps)
    keep = torch.ones(H + 1, H)
    keep[torch.arange(1, H + 1), torch.arange(H)] = 0

    def run():
        with torch.no_grad():
            pre_x = x @ W.T + b
            h = torch.zeros(H + 1, args.sequences, H)
            c = torch.zeros_like(h)
            kk = keep[:, None, :]
            for t in range(args.steps):
                z = pre_x[None, :, t] + h @ R.T
                i, f, g, o = torch.sigmoid(z[..., :H]), torch.sigmoid(z[..., H:2 * H]), torch.tanh(z[..., 2 * H:3 * H]), torch.sigmoid(z[..., 3 * H:])
                c = (f * c + i * g) * kk
                h = o * torch.tanh(c) * kk
            return h @ V.T + a
    seconds = median_time(run, args.repeat)
    work = (H + 1) * args.sequences * args.steps
    return dict(peer="torch ablation", cells=H, work=work, median_seconds=seconds, per_second=work / seconds)


def relevance(args):
    """Forward with detached gates and linearised tanh, then autograd of the predicted logit back
    to every input and every h_t (as `cellaudit explain` returns both)."""
    H = args.cells
    W, R, b, V, a, data = random_lstm(17, H, 8, 10, args.sequences, args.steps)

    def lin(v):
        return v * (torch.tanh(v) / torch.where(v == 0, torch.ones_like(v), v)).detach()

    def run():
        x = data.clone().requires_grad_(True)
        pre_x = x @ W.T + b
        h = torch.zeros(args.sequences, H)
        c = torch.zeros_like(h)
        hs = []
        for t in range(args.steps):
            z = pre_x[:, t] + h @ R.T
            i, f, o = (torch.sigmoid(z[:, k * H:(k + 1) * H]).detach() for k in (0, 1, 3))
            c = f * c + i * lin(z[:, 2 * H:3 * H])
            h = o * lin(c)
            h.retain_grad()
            hs.append(h)
        logits = h @ V.T + a
        score = logits.gather(1, logits.argmax(1, keepdim=True))
        score.sum().backward()
        return (x * x.grad), torch.stack([hh * hh.grad for hh in hs], 1)
    seconds = median_time(run, args.repeat)
    work = args.sequences * args.steps
    return dict(peer="torch autograd gxi", cells=H, work=work, median_seconds=seconds, per_second=work / seconds,
                threads=torch.get_num_threads())


def forward(args):
    """nn.LSTM / nn.GRU / nn.RNN forward with a Linear readout of the last step, as `cellaudit bench
    --workload forward` runs it: 16 inputs, 10 outputs, no gradient, all threads."""
    torch.manual_seed(5)
    I, H, bi = 16, args.cells, args.bidirectional
    if args.cell == "lstm":
        rnn = torch.nn.LSTM(I, H, batch_first=True, bidirectional=bi)
    elif args.cell == "gru":
        rnn = torch.nn.GRU(I, H, batch_first=True, bidirectional=bi)
    else:
        rnn = torch.nn.RNN(I, H, batch_first=True, nonlinearity=args.cell[4:], bidirectional=bi)
    fc = torch.nn.Linear(2 * H if bi else H, 10)
    x = torch.rand(args.sequences, args.steps, I) * 2 - 1

    def run():
        with torch.no_grad():
            y, state = rnn(x)
            if bi:   # cat(h_n[-2], h_n[-1]): each direction's final state
                h = state[0] if isinstance(state, tuple) else state
                fc(torch.cat([h[-2], h[-1]], dim=1))
            else:
                fc(y[:, -1])

    seconds = median_time(run, args.repeat)
    return {"peer": f"pytorch nn.{type(rnn).__name__}" + ("(bidirectional)" if bi else ""), "per_second": args.sequences * args.steps / seconds, "seconds": seconds,
            "threads": torch.get_num_threads()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workload", choices=["response", "ablation", "relevance", "forward"])
    p.add_argument("--cells", type=int, default=None)
    p.add_argument("--window", type=int, default=400)
    p.add_argument("--sequences", type=int, default=256)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--cell", choices=["lstm", "gru", "rnn_tanh", "rnn_relu"], default="lstm",
                   help="cell kind of the response and forward workloads")
    p.add_argument("--bidirectional", action="store_true", help="forward: nn.LSTM/GRU/RNN(bidirectional=True), read at cat(h_n[-2], h_n[-1])")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads(N): pin the peer to CellAudit's thread count")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cells is None:
        args.cells = {"response": 256, "ablation": 64, "relevance": 128, "forward": 256}[args.workload]
    if args.workload == "forward" and args.sequences == 256 and args.steps == 16:
        args.sequences, args.steps = 512, 64   # bench's forward workload
    row = {"response": response, "ablation": ablation, "relevance": relevance, "forward": forward}[args.workload](args)
    print(json.dumps(row) if args.json else f"{row['peer']}: {row['per_second']:.3g} per second ({row['median_seconds']:.3f} s)")


if __name__ == "__main__":
    main()
