#!/usr/bin/env python3
"""Reference relevance of bidirectional networks for CellAudit's LRP (issue 29, METHOD.md §7),
by PyTorch autograd in float64, on the fixtures of Tools/make_bidirectional_fixtures.py.

As in Tools/relevance_reference.py: with epsilon -> 0 and bias factor 0, LRP equals gradient x
input of the graph whose gates are detached and whose signal activations act(v) are replaced by
v * detach(act(v) / v). Each direction runs in its own time (the reverse one from the last step),
a layer's output at step t is [h_t(forward), h_t(reverse)], and the readout reads the final states
(cat(h_n[-2], h_n[-1])) or the last step (output[:, -1]).

Writes Tests/Fixtures/bidirectional/NAME.relevance.safetensors for NAME in lstm1, lstm2, gru2,
rnn_tanh2, with metadata 'reading', and for the first 5 sequences:
    input [5, 7, 3], cells [5, 7, C]      LRP reference (linearised graph), x*dscore/dx, h*dscore/dh;
                                          cells in CellAudit's order: per layer forward then reverse,
                                          each at its time step
    gradient_input, gradient_cells        plain gradient x input of the unmodified network
    score [5], target [5] (I32)           the explained output (arg max) and its value

    python Tools/bidirectional_relevance_reference.py
Needs torch, numpy and safetensors.
"""
import os
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from relevance_reference import passthrough  # noqa: E402

DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "bidirectional")
CASES = {"lstm1": ("lstm", "final-states"), "lstm2": ("lstm", "last-step"), "gru2": ("gru", "final-states"),
         "rnn_tanh2": ("rnn_tanh", "final-states")}


def step(kind, W, R, bi, bh, xt, h, c, gate, act_):
    H = R.shape[1]
    if kind == "lstm":
        z = xt @ W.T + bi + h @ R.T + bh
        i, f, o = (gate(torch.sigmoid(z[:, k * H:(k + 1) * H])) for k in (0, 1, 3))
        g = act_(z[:, 2 * H:3 * H], torch.tanh)
        c = f * c + i * g
        return o * act_(c, torch.tanh), c
    if kind == "gru":
        gx, gh = xt @ W.T + bi, h @ R.T
        r = gate(torch.sigmoid(gx[:, :H] + gh[:, :H] + bh[:H]))
        zg = gate(torch.sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H] + bh[H:2 * H]))
        n_ = act_(gx[:, 2 * H:] + r * (gh[:, 2 * H:] + bh[2 * H:]), torch.tanh)
        return (1 - zg) * n_ + zg * h, c
    return act_(xt @ W.T + bi + h @ R.T + bh, torch.tanh), c


def explain(kind, t, layers, x0, reading, linearised):
    gate = (lambda v: v.detach()) if linearised else (lambda v: v)
    act_ = lambda v, f: passthrough(v, f, linearised)
    x = torch.tensor(x0, requires_grad=True)
    n, T, _ = x.shape
    seq, kept = x, []
    for l in range(layers):
        outs = []
        for suffix in ("", "_reverse"):
            g = lambda name: torch.tensor(t[f"rnn.{name}_l{l}{suffix}"])
            W, R, bi, bh = g("weight_ih"), g("weight_hh"), g("bias_ih"), g("bias_hh")
            H = R.shape[1]
            h = torch.zeros(n, H, dtype=torch.float64)
            c = torch.zeros(n, H, dtype=torch.float64)
            hs = [None] * T
            for time in (range(T) if suffix == "" else range(T - 1, -1, -1)):
                h, c = step(kind, W, R, bi, bh, seq[:, time], h, c, gate, act_)
                h.retain_grad()
                hs[time] = h
            outs.append(hs)
            kept.append(hs)
        seq = torch.stack([torch.cat([outs[0][time], outs[1][time]], 1) for time in range(T)], 1)
    V, a = torch.tensor(t["head.weight"]), torch.tensor(t["head.bias"])
    fwd, rev = kept[-2], kept[-1]
    last = torch.cat([fwd[T - 1], rev[0]], 1) if reading == "final-states" else seq[:, -1]
    out = last @ V.T + a
    target = out.argmax(1)
    score = out.gather(1, target[:, None])[:, 0]
    score.sum().backward()
    cells = torch.cat([torch.stack([h * h.grad for h in direction], 1) for direction in kept], 2)
    return ((x * x.grad).detach().numpy().astype(np.float32), cells.detach().numpy().astype(np.float32),
            score.detach().numpy().astype(np.float32), target.numpy().astype(np.int32))


def main():
    for name, (kind, reading) in CASES.items():
        f = safe_open(os.path.join(DIR, name + ".safetensors"), "np")
        t = {k: f.get_tensor(k).astype(np.float64) for k in f.keys()}
        layers = len([k for k in t if k.startswith("rnn.weight_ih_l") and not k.endswith("_reverse")])
        x0 = safe_open(os.path.join(DIR, name + ".data.safetensors"), "np").get_tensor("inputs")[:5].astype(np.float64)
        inp, cells, score, target = explain(kind, t, layers, x0, reading, True)
        ginp, gcells, gscore, gtarget = explain(kind, t, layers, x0, reading, False)
        assert (target == gtarget).all()
        save_file({"input": inp, "cells": cells, "score": score, "target": target,
                   "gradient_input": ginp, "gradient_cells": gcells},
                  os.path.join(DIR, name + ".relevance.safetensors"), metadata={"reading": reading})
    print("wrote", ", ".join(n + ".relevance.safetensors" for n in CASES), "with torch", torch.__version__)


if __name__ == "__main__":
    main()
