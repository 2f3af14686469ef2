#!/usr/bin/env python3
"""The PyTorch peer of `cellaudit bench --workload fixed-points`: the fixed-point search as
FixedPointFinder (mattgolub/fixed-point-finder, FixedPointFinderTorch) runs it by default, written
here from its documented behaviour: all seeds optimised jointly by Adam on mean q, learning rate
1.0 reduced by ReduceLROnPlateau (factor 0.95, patience 2), float32, stopping when every seed has
q < tol_q = 1e-12 or |dq| < tol_dq · lr (tol_dq = 1e-20), or after 5,000 iterations.

    python Tools/peer_fixed_points.py --model M.safetensors --seeds seeds.safetensors [--json]

The seeds file is the one `cellaudit bench --workload fixed-points --seeds-out` writes, so both
start from the same states. Reads GRU and RNN models written by Tools/export_pytorch.py (one
layer; FixedPointFinder's PyTorch version optimises a hidden state h). Prints the seeds that
reached q < 1e-12 per second.
"""
import argparse
import json
import time

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file


def load_cell(path):
    with safe_open(path, "np") as f:
        meta = f.metadata()
    t = load_file(path)
    kind, prefix = meta["cell"], meta["prefix"]
    w_ih, w_hh = t[prefix + "weight_ih_l0"], t[prefix + "weight_hh_l0"]
    H, I = w_hh.shape[1], w_ih.shape[1]
    if kind == "gru":
        cell = torch.nn.GRUCell(I, H)
    elif kind.startswith("rnn"):
        cell = torch.nn.RNNCell(I, H, nonlinearity=kind[4:])
    else:
        raise SystemExit(f"{path}: the peer reads GRU and RNN models (FixedPointFinder's torch version optimises h only)")
    cell.load_state_dict({"weight_ih": torch.from_numpy(w_ih), "weight_hh": torch.from_numpy(w_hh),
                          "bias_ih": torch.from_numpy(t[prefix + "bias_ih_l0"]), "bias_hh": torch.from_numpy(t[prefix + "bias_hh_l0"])})
    for p in cell.parameters():
        p.requires_grad_(False)
    return cell, I


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--seeds", required=True)
    p.add_argument("--tol-q", type=float, default=1e-12)
    p.add_argument("--tol-dq", type=float, default=1e-20)
    p.add_argument("--max-iters", type=int, default=5000)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cell, I = load_cell(a.model)
    seeds = load_file(a.seeds)["seeds"].astype(np.float32)
    x = torch.from_numpy(seeds.copy()).requires_grad_(True)
    inputs = torch.zeros(len(seeds), I)
    start = time.perf_counter()
    optimizer = torch.optim.Adam([x], lr=1.0)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.95, patience=2, cooldown=0)
    q_prev = torch.full((len(seeds),), float("nan"))
    iters = 1
    while True:
        q = 0.5 * ((cell(inputs, x) - x) ** 2).sum(1)
        loss = q.mean()
        dq = (q - q_prev).abs()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step(loss.item())
        lr = optimizer.param_groups[0]["lr"]
        if iters > 1 and bool(torch.all((dq < a.tol_dq * lr) | (q < a.tol_q))):
            break
        if iters + 1 > a.max_iters:
            break
        q_prev = q.detach()
        iters += 1
    with torch.no_grad():
        # q at the final states (FixedPointFinder reports q at x*, computed the same way).
        final_q = (0.5 * ((cell(inputs, x) - x) ** 2).sum(1)).numpy()
    seconds = time.perf_counter() - start
    converged = int((final_q < a.tol_q).sum())
    result = {"peer": "pytorch adam (FixedPointFinder defaults)", "per_second": converged / seconds, "converged": converged,
              "seeds": len(seeds), "iterations": iters, "seconds": seconds, "median_q": float(np.median(final_q))}
    print(json.dumps(result) if a.json else result)


if __name__ == "__main__":
    main()
