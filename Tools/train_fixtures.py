#!/usr/bin/env python3
"""Train CellAudit's test fixtures for real, reproducibly from a seed, and store each framework's
own outputs as the golden reference.

    python Tools/train_fixtures.py [--out Tests/Fixtures] [--seed 0]

Makes, in the output folder:
  digits_test.safetensors           scikit-learn's 8x8 digits read row by row (8 steps x 8
                                    features), the fixed test split (inputs, labels)
  digits_lstm{8,16,32,64,128}.safetensors   1-layer LSTMs (the capacity family)
  digits_lstm32x2.safetensors       a 2-layer LSTM (32 + 32)
  flipflop_test.safetensors         3-bit flip-flop task, test sequences (inputs, targets)
  flipflop_lstm64.safetensors       one 64-cell LSTM, per-step regression
  digits_lstm16_keras.safetensors   the 16-cell model rebuilt in Keras 3 and exported by
                                    Tools/export_keras.py (where keras is installed)
  digits_lstm16_onnx.safetensors    the 16-cell model as an ONNX LSTM node, exported by
                                    Tools/export_onnx.py (where onnx and onnxruntime are installed)
Each model file carries golden tensors computed by its framework on the test split:
  golden.outputs [N, K] or [N, T, K], golden.hidden [4, T, H_last] (first four sequences),
  and metadata golden_accuracy or golden_mse; the PyTorch models also carry golden_ablation, a
  JSON list of {"cells": [...], "score": ...}: the accuracy or MSE with those cells' h and c
  clamped to 0 after every step (flat cell numbers over the layers), computed by PyTorch.
  `--ablation-only` adds golden_ablation to existing fixtures without retraining.
Needs torch, numpy, safetensors and scikit-learn (keras, onnx, onnxruntime optional).
"""
import argparse
import os
import sys

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_pytorch import export_lstm  # noqa: E402


class Net(torch.nn.Module):
    def __init__(self, inputs, hidden, outputs, layers=1, sequence=False):
        super().__init__()
        self.lstm = torch.nn.LSTM(inputs, hidden, num_layers=layers, batch_first=True)
        self.fc = torch.nn.Linear(hidden, outputs)
        self.sequence = sequence

    def forward(self, x):
        h, _ = self.lstm(x)
        return self.fc(h if self.sequence else h[:, -1]), h


def digits(seed):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)  # [N, 8 rows, 8 columns], rows are the steps
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    test, train = order[:360], order[360:]
    return x[train], y[train], x[test], y[test]


def flipflop(n, steps, rng, p=0.05):
    pulses = rng.random((n, steps, 3)) < p
    signs = np.where(rng.random((n, steps, 3)) < 0.5, -1.0, 1.0)
    x = (pulses * signs).astype(np.float32)
    y = np.zeros_like(x)
    state = np.zeros((n, 3), dtype=np.float32)
    for t in range(steps):
        state = np.where(x[:, t] != 0, x[:, t], state)
        y[:, t] = state
    return x, y


def train(model, x, y, loss_fn, epochs, batch, lr, seed):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            out, _ = model(xt[idx])
            loss_fn(out, yt[idx]).backward()
            opt.step()


def golden(model, x):
    with torch.no_grad():
        out, h = model(torch.from_numpy(x))
    return out.numpy(), h[:4].numpy()


def add_golden(path, outputs, hidden, extra):
    tensors = load_file(path)
    from safetensors import safe_open

    with safe_open(path, "np") as f:
        metadata = f.metadata()
    tensors["golden.outputs"] = np.ascontiguousarray(outputs, dtype=np.float32)
    tensors["golden.hidden"] = np.ascontiguousarray(hidden, dtype=np.float32)
    metadata.update(extra)
    save_file(tensors, path, metadata=metadata)


def masked_forward(tensors, meta, x, keep):
    """The network in PyTorch, step by step, with h and c multiplied by `keep` after every step."""
    h_seq = torch.from_numpy(x)
    offset = 0
    for k in range(int(meta["layers"])):
        w_ih = torch.from_numpy(tensors[f"lstm.weight_ih_l{k}"])
        w_hh = torch.from_numpy(tensors[f"lstm.weight_hh_l{k}"])
        b = torch.from_numpy(tensors[f"lstm.bias_ih_l{k}"] + tensors[f"lstm.bias_hh_l{k}"])
        H = w_hh.shape[1]
        mask = torch.from_numpy(keep[offset:offset + H])
        offset += H
        n, steps, _ = h_seq.shape
        h = torch.zeros(n, H)
        c = torch.zeros(n, H)
        out = []
        for t in range(steps):
            z = h_seq[:, t] @ w_ih.T + h @ w_hh.T + b
            i, f, g, o = torch.sigmoid(z[:, :H]), torch.sigmoid(z[:, H:2 * H]), torch.tanh(z[:, 2 * H:3 * H]), torch.sigmoid(z[:, 3 * H:])
            c = (f * c + i * g) * mask
            h = o * torch.tanh(c) * mask
            out.append(h)
        h_seq = torch.stack(out, 1)
    V, a = torch.from_numpy(tensors[meta["readout_weight"]]), torch.from_numpy(tensors[meta["readout_bias"]])
    return ((h_seq if meta.get("output") == "sequence" else h_seq[:, -1]) @ V.T + a).numpy()


def add_ablation_golden(path, data_path):
    """Stores PyTorch's score with chosen cells ablated in the model file's metadata."""
    import json
    from safetensors import safe_open

    tensors = load_file(path)
    with safe_open(path, "np") as f:
        meta = f.metadata()
    data = load_file(data_path)
    total = sum(int(h) for h in meta["hidden_sizes"].split(","))
    sets = [[0], list(range(total // 2)), list(range(0, total, 3)), [total - 1, total // 3], list(range(total))]
    results = []
    with torch.no_grad():
        for cells in sets:
            keep = np.ones(total, np.float32)
            keep[cells] = 0
            out = masked_forward(tensors, meta, data["inputs"].astype(np.float32), keep)
            if "labels" in data:
                score = float((out.argmax(-1) == data["labels"]).mean())
            else:
                score = float(((out - data["targets"]) ** 2).mean())
            results.append({"cells": cells, "score": score})
    meta["golden_ablation"] = json.dumps(results)
    save_file(tensors, path, metadata=meta)
    print(f"{os.path.basename(path)}: ablation golden " + ", ".join(f"{len(r['cells'])} cells -> {r['score']:.4f}" for r in results))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ablation-only", action="store_true", help="only add golden_ablation to existing fixtures")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    ablated = [("digits_lstm16", "digits_test"), ("digits_lstm64", "digits_test"), ("digits_lstm32x2", "digits_test"),
               ("flipflop_lstm64", "flipflop_test")]
    if a.ablation_only:
        for model, data in ablated:
            add_ablation_golden(os.path.join(a.out, model + ".safetensors"), os.path.join(a.out, data + ".safetensors"))
        return
    torch.manual_seed(a.seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    xtr, ytr, xte, yte = digits(a.seed)
    save_file({"inputs": xte, "labels": yte}, os.path.join(a.out, "digits_test.safetensors"),
              metadata={"task": "classification", "source": "sklearn load_digits, rows as steps"})
    ce = torch.nn.CrossEntropyLoss()
    for hidden, layers, name in [(8, 1, "digits_lstm8"), (16, 1, "digits_lstm16"), (32, 1, "digits_lstm32"),
                                 (64, 1, "digits_lstm64"), (128, 1, "digits_lstm128"), (32, 2, "digits_lstm32x2")]:
        torch.manual_seed(a.seed + hidden + layers)
        model = Net(8, hidden, 10, layers)
        train(model, xtr, ytr, ce, epochs=40, batch=64, lr=1e-2, seed=a.seed)
        out, h = golden(model, xte)
        acc = float((out.argmax(1) == yte).mean())
        path = os.path.join(a.out, name + ".safetensors")
        export_lstm(model.lstm, model.fc, path, output="last", task="classification")
        add_golden(path, out, h, {"golden_accuracy": repr(acc), "trained_by": "Tools/train_fixtures.py"})
        print(f"{name}: test accuracy {acc:.4f}")
        if name == "digits_lstm16":
            sixteen = model

    rng = np.random.default_rng(a.seed)
    fx, fy = flipflop(512, 100, rng)
    tx, ty = flipflop(64, 100, rng)
    save_file({"inputs": tx, "targets": ty}, os.path.join(a.out, "flipflop_test.safetensors"),
              metadata={"task": "regression", "source": "3-bit flip-flop, pulse probability 0.05"})
    torch.manual_seed(a.seed + 64)
    model = Net(3, 64, 3, 1, sequence=True)
    train(model, fx, fy, torch.nn.MSELoss(), epochs=60, batch=32, lr=1e-2, seed=a.seed)
    out, h = golden(model, tx)
    mse = float(((out - ty) ** 2).mean())
    path = os.path.join(a.out, "flipflop_lstm64.safetensors")
    export_lstm(model.lstm, model.fc, path, output="sequence", task="regression")
    add_golden(path, out, h, {"golden_mse": repr(mse), "trained_by": "Tools/train_fixtures.py"})
    print(f"flipflop_lstm64: test mse {mse:.5f}")

    for model_name, data_name in ablated:
        add_ablation_golden(os.path.join(a.out, model_name + ".safetensors"), os.path.join(a.out, data_name + ".safetensors"))

    # The same 16-cell network through the other two frameworks.
    torch.save(sixteen.state_dict(), os.path.join(a.out, ".digits_lstm16.pt"))
    here = os.path.dirname(os.path.abspath(__file__))
    for tool, target in [("export_keras.py", "digits_lstm16_keras.safetensors"),
                         ("export_onnx.py", "digits_lstm16_onnx.safetensors")]:
        rc = os.system(f"{sys.executable} {os.path.join(here, tool)} --from-torch {os.path.join(a.out, '.digits_lstm16.pt')} "
                       f"--data {os.path.join(a.out, 'digits_test.safetensors')} {os.path.join(a.out, target)}")
        if rc != 0:
            print(f"{target}: skipped ({tool} failed; is its framework installed?)")
    os.remove(os.path.join(a.out, ".digits_lstm16.pt"))


if __name__ == "__main__":
    main()
