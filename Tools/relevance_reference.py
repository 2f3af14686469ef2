#!/usr/bin/env python3
"""Reference relevance for CellAudit's LRP, computed by PyTorch autograd (issue 17, METHOD.md §7).

With epsilon -> 0 and bias_factor = 0, the LRP rules of Arras et al. 2019 equal gradient x input
of a modified graph: every gate (sigmoid) is detached, a constant; every activation of a signal
act(v) is replaced by v * detach(act(v) / v), so the signal path is locally linear in its inputs.
This script builds that graph in float64 from a CellAudit model file, explains the target output
of the first sequences of a dataset (predicted class, or for regression one output summed over
steps) and stores, next to the fixtures:

    Tests/Fixtures/relevance/<model>.safetensors
        input  [n, T, I]  x * d score / d x
        cells  [n, T, C]  h_t * d score / d h_t, every cell of every layer in order
        score  [n]        the explained output value
        target [n] (I32)  the output explained
        gradient_input, gradient_cells: the same for the unmodified network (plain gradient x
                          input, the gradient ranker's reference)
        numpy_lrp_input, numpy_lrp_cells (digits_lstm8 only): Tools/peer_numpy_lrp.py LRP at
                          epsilon 0.05, bias factor 1, float64

It also writes two small random networks that the trained fixtures do not cover (a 2-layer
ReLU RNN and a 2-layer GRU) as model files, with their references.

    python Tools/relevance_reference.py [--fixtures Tests/Fixtures] [--count 12]

Needs torch, numpy and safetensors. Every file it writes is deterministic for a given torch build.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_pytorch import export_recurrent  # noqa: E402


def read_model(path):
    """Canonical layers (PyTorch layout, float64) and the readout of a CellAudit model file
    written in the PyTorch or ONNX convention."""
    f = safe_open(path, "np")
    meta = f.metadata()
    kind, layers, prefix = meta["cell"], int(meta["layers"]), meta["prefix"]
    t = {k: f.get_tensor(k).astype(np.float64) for k in f.keys()}
    out = []
    if meta["convention"] == "pytorch":
        for l in range(layers):
            g = lambda name: t[f"{prefix}{name}_l{l}"]
            W, R, bi, bh = g("weight_ih"), g("weight_hh"), g("bias_ih"), g("bias_hh")
            out.append(dict(W=W, R=R, b_ih=bi, b_hh=bh, reset_after=True))
    elif meta["convention"] == "onnx" and kind == "gru":
        for l in range(layers):
            W, R, B = t[f"{prefix}{l}.W"][0], t[f"{prefix}{l}.R"][0], t[f"{prefix}{l}.B"][0]
            H = R.shape[1]
            order = lambda m: np.concatenate([m[H:2 * H], m[:H], m[2 * H:]])  # ONNX z, r, h -> r, z, n
            out.append(dict(W=order(W), R=order(R), b_ih=order(B[:3 * H]), b_hh=order(B[3 * H:]),
                            reset_after=meta.get("linear_before_reset", "0") == "1"))
    else:
        raise SystemExit(f"{path}: convention {meta['convention']} for {kind} is not read by this script")
    V, a = t[meta["readout_weight"]], t[meta["readout_bias"]]
    return kind, out, V, a, meta


def passthrough(v, act, linearised=True):
    """v * detach(act(v) / v): equal to act(v), with the derivative act(v)/v (1 where v = 0).
    Not linearised: act(v) itself."""
    if not linearised:
        return act(v)
    ratio = torch.where(v == 0, torch.ones_like(v), act(v) / torch.where(v == 0, torch.ones_like(v), v))
    return v * ratio.detach()


def modified_forward(kind, layers, V, a, x, keep, linearised=True):
    """Runs the modified graph over x [n, T, I]; returns outputs [n, T, K] and the h_t tensors of
    every layer (keep: retain their gradients). linearised=False: the unmodified network (gates
    not detached, activations as they are), for plain gradient x input."""
    gate = (lambda v: v.detach()) if linearised else (lambda v: v)
    act_ = lambda v, f: passthrough(v, f, linearised)
    n, T, _ = x.shape
    seq = x
    hs_all = []
    for L in layers:
        W, R = torch.tensor(L["W"]), torch.tensor(L["R"])
        bi, bh = torch.tensor(L["b_ih"]), torch.tensor(L["b_hh"])
        H = R.shape[1]
        h = torch.zeros(n, H, dtype=torch.float64)
        c = torch.zeros(n, H, dtype=torch.float64)
        hs = []
        for t in range(T):
            xt = seq[:, t]
            if kind == "lstm":
                z = xt @ W.T + bi + h @ R.T + bh
                i, f, o = (gate(torch.sigmoid(z[:, k * H:(k + 1) * H])) for k in (0, 1, 3))
                g = act_(z[:, 2 * H:3 * H], torch.tanh)
                c = f * c + i * g
                h = o * act_(c, torch.tanh)
            elif kind == "gru":
                gx = xt @ W.T + bi
                gh = h @ R.T
                r = gate(torch.sigmoid(gx[:, :H] + gh[:, :H] + bh[:H]))
                zg = gate(torch.sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H] + bh[H:2 * H]))
                if L["reset_after"]:
                    pre = gx[:, 2 * H:] + r * (gh[:, 2 * H:] + bh[2 * H:])
                else:
                    pre = gx[:, 2 * H:] + bh[2 * H:] + (r * h) @ R[2 * H:].T
                n_ = act_(pre, torch.tanh)
                h = (1 - zg) * n_ + zg * h
            else:
                act = torch.tanh if kind == "rnn_tanh" else torch.relu
                h = act_(xt @ W.T + bi + h @ R.T + bh, act)
            if keep:
                h.retain_grad()
            hs.append(h)
        hs_all.append(hs)
        seq = torch.stack(hs, 1)
    out = seq @ torch.tensor(V).T + torch.tensor(a)
    return out, hs_all


def explain(kind, layers, V, a, meta, inputs, target_output, linearised):
    """x * d score/d x, h_t * d score/d h_t for every cell, the score and the target."""
    x = torch.tensor(inputs, requires_grad=True)
    out, hs = modified_forward(kind, layers, V, a, x, keep=True, linearised=linearised)
    if meta["output"] == "last":
        last = out[:, -1]
        target = last.argmax(1) if target_output is None else torch.full((x.shape[0],), target_output)
        score = last.gather(1, target[:, None])[:, 0]
    else:
        target = torch.full((x.shape[0],), target_output or 0)
        score = out[:, :, target_output or 0].sum(1)
    score.sum().backward()
    cells = torch.cat([torch.stack([h * h.grad for h in layer], 1) for layer in hs], 2)
    return ((x * x.grad).detach().numpy().astype(np.float32), cells.detach().numpy().astype(np.float32),
            score.detach().numpy().astype(np.float32), target.numpy().astype(np.int32))


def reference(model_path, data_path, count, target_output=None):
    kind, layers, V, a, meta = read_model(model_path)
    d = safe_open(data_path, "np")
    inputs = d.get_tensor("inputs")[:count].astype(np.float32).astype(np.float64)
    lrp_input, lrp_cells, score, target = explain(kind, layers, V, a, meta, inputs, target_output, True)
    gxi_input, gxi_cells, _, _ = explain(kind, layers, V, a, meta, inputs, target_output, False)
    return dict(input=lrp_input, cells=lrp_cells, score=score, target=target,
                gradient_input=gxi_input, gradient_cells=gxi_cells), meta


def numpy_lrp(model_path, data_path, targets, eps=0.05, bias_factor=1.0):
    from peer_numpy_lrp import explain as lrp_sequence
    kind, layers, V, a, _ = read_model(model_path)
    assert kind == "lstm" and len(layers) == 1
    L = layers[0]
    d = safe_open(data_path, "np")
    inputs = d.get_tensor("inputs")[:len(targets)].astype(np.float32).astype(np.float64)
    rx, rh = zip(*(lrp_sequence(x, L["W"], L["R"], L["b_ih"] + L["b_hh"], V, a, eps, bias_factor) for x in inputs))
    return dict(numpy_lrp_input=np.stack(rx).astype(np.float32), numpy_lrp_cells=np.stack(rh).astype(np.float32))


def random_models(fixtures):
    """Two seeded random networks the trained fixtures lack: a 2-layer ReLU RNN and a 2-layer GRU,
    each with a Linear readout, exported with export_recurrent."""
    torch.manual_seed(17)
    made = []
    for name, module in (("relevance_rnn_relu_x2", torch.nn.RNN(8, 12, num_layers=2, nonlinearity="relu", batch_first=True)),
                         ("relevance_gru_x2", torch.nn.GRU(8, 12, num_layers=2, batch_first=True))):
        readout = torch.nn.Linear(12, 10)
        path = os.path.join(fixtures, name + ".safetensors")
        export_recurrent(module, readout, path, extra_metadata={"trained_by": "Tools/relevance_reference.py (random, seed 17)"})
        made.append(name)
    return made


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fixtures", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures"))
    p.add_argument("--count", type=int, default=12, help="sequences explained per model")
    args = p.parse_args()
    fixtures = os.path.abspath(args.fixtures)
    os.makedirs(os.path.join(fixtures, "relevance"), exist_ok=True)
    digits, flipflop = os.path.join(fixtures, "digits_test.safetensors"), os.path.join(fixtures, "flipflop_test.safetensors")
    jobs = [(m, digits, None) for m in ("digits_lstm8", "digits_lstm32x2", "digits_gru16", "digits_gru16_onnx_lbr0", "digits_rnn16")]
    jobs += [(m, digits, None) for m in random_models(fixtures)]
    jobs += [("flipflop_rnn32", flipflop, 1), ("flipflop_gru32", flipflop, 2)]
    for model, data, target in jobs:
        tensors, meta = reference(os.path.join(fixtures, model + ".safetensors"), data, 4 if data == flipflop else args.count, target)
        info = {"model": model + ".safetensors", "data": os.path.basename(data), "sequences": str(tensors["score"].shape[0]),
                "rule": "gradient x input, gates detached, act(v) -> v * detach(act(v)/v); float64",
                "made_by": "Tools/relevance_reference.py", "torch": torch.__version__}
        if target is not None:
            info["target_output"] = str(target)
        if model == "digits_lstm8":
            # The reference-style NumPy LRP (Tools/peer_numpy_lrp.py) at the explanation's epsilon
            # with bias factor 1: checks the bias shares, including the identity maps' cross terms.
            tensors.update(numpy_lrp(os.path.join(fixtures, model + ".safetensors"), data, tensors["target"]))
        out = os.path.join(fixtures, "relevance", model + ".safetensors")
        save_file(tensors, out, metadata=info)
        print(f"{out}: {json.dumps({k: list(v.shape) for k, v in tensors.items()})}")


if __name__ == "__main__":
    main()
