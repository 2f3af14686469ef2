#!/usr/bin/env python3
"""Train CellAudit's test fixtures for real, reproducibly from a seed, and store each framework's
own outputs as the golden reference.

    python Tools/train_fixtures.py [--out Tests/Fixtures] [--seed 0]

    python Tools/train_fixtures.py --cells gru,rnn_tanh     # only the GRU and RNN fixtures

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
  digits_gru16, flipflop_gru32      nn.GRU models; digits_gru16_keras / _onnx the same network as a
                                    Keras GRU (reset_after=True) and an ONNX GRU (linear_before_reset=1)
  digits_rnn16, flipflop_rnn32      nn.RNN (tanh) models; digits_rnn16_keras / _onnx as a Keras
                                    SimpleRNN and an ONNX RNN node
  digits_gru16_keras_reset_before   a Keras GRU with reset_after=False (a different cell), trained
                                    in Keras; digits_gru16_onnx_lbr0 its weights as an ONNX GRU with
                                    linear_before_reset=0 (the same cell), run by onnxruntime
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
from export_pytorch import PREFIX, export_recurrent  # noqa: E402


class Net(torch.nn.Module):
    """A recurrent stack (nn.LSTM, nn.GRU or nn.RNN, by CellAudit's cell kind) and a linear readout;
    the stack is the attribute lstm, gru or rnn, so the state dict has the exporters' names."""

    def __init__(self, inputs, hidden, outputs, layers=1, sequence=False, cell="lstm"):
        super().__init__()
        if cell == "lstm":
            module = torch.nn.LSTM(inputs, hidden, num_layers=layers, batch_first=True)
        elif cell == "gru":
            module = torch.nn.GRU(inputs, hidden, num_layers=layers, batch_first=True)
        else:
            module = torch.nn.RNN(inputs, hidden, num_layers=layers, batch_first=True, nonlinearity=cell[4:])
        self.attribute = PREFIX[cell][:-1]
        setattr(self, self.attribute, module)
        self.fc = torch.nn.Linear(hidden, outputs)
        self.sequence = sequence

    @property
    def recurrent(self):
        return getattr(self, self.attribute)

    def forward(self, x):
        h, _ = self.recurrent(x)
        return self.fc(h if self.sequence else h[:, -1]), h


def digits(seed):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)  # [N, 8 rows, 8 columns], rows are the steps
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    test, train = order[:360], order[360:]
    return x[train], y[train], x[test], y[test]


def flipflop(n, steps, rng, p=0.05, set_first=False):
    """3-bit flip-flop sequences: ±1 pulses with probability p per step and channel; each target
    holds the sign of its channel's last pulse. set_first: every channel is set at step 0."""
    pulses = rng.random((n, steps, 3)) < p
    signs = np.where(rng.random((n, steps, 3)) < 0.5, -1.0, 1.0)
    x = (pulses * signs).astype(np.float32)
    if set_first:
        x[:, 0, :] = np.where(rng.random((n, 3)) < 0.5, -1.0, 1.0)
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
    """The network step by step through PyTorch's own cells (nn.LSTMCell, nn.GRUCell, nn.RNNCell
    with the file's weights), with h (and an LSTM's c) multiplied by `keep` after every step."""
    kind, prefix = meta["cell"], meta["prefix"]
    h_seq = torch.from_numpy(x)
    offset = 0
    for k in range(int(meta["layers"])):
        w_ih = torch.from_numpy(tensors[f"{prefix}weight_ih_l{k}"])
        w_hh = torch.from_numpy(tensors[f"{prefix}weight_hh_l{k}"])
        H, I = w_hh.shape[1], w_ih.shape[1]
        if kind == "lstm":
            cell = torch.nn.LSTMCell(I, H)
        elif kind == "gru":
            cell = torch.nn.GRUCell(I, H)
        else:
            cell = torch.nn.RNNCell(I, H, nonlinearity=kind[4:])
        cell.load_state_dict({"weight_ih": w_ih, "weight_hh": w_hh,
                              "bias_ih": torch.from_numpy(tensors[f"{prefix}bias_ih_l{k}"]),
                              "bias_hh": torch.from_numpy(tensors[f"{prefix}bias_hh_l{k}"])})
        mask = torch.from_numpy(keep[offset:offset + H])
        offset += H
        n, steps, _ = h_seq.shape
        h = torch.zeros(n, H)
        c = torch.zeros(n, H)
        out = []
        for t in range(steps):
            if kind == "lstm":
                h, c = cell(h_seq[:, t], (h, c))
                h, c = h * mask, c * mask
            else:
                h = cell(h_seq[:, t], h) * mask
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


def keras_gru_reset_before(xtr, ytr, data_path, out_dir, seed):
    """A Keras GRU with reset_after=False (a different cell from PyTorch's) trained in Keras, and
    the same trained weights as an ONNX GRU node with linear_before_reset=0 (the same cell), each
    with its framework's golden outputs. Returns the paths written."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras
    import export_keras
    import export_onnx

    keras.utils.set_random_seed(seed + 316)
    x = keras.Input((xtr.shape[1], xtr.shape[2]))
    layer = keras.layers.GRU(16, return_sequences=True, reset_after=False, name="gru_0")
    h = layer(x)
    dense = keras.layers.Dense(10, name="dense")
    y = dense(h[:, -1])
    trainer = keras.Model(x, y)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    trainer.fit(xtr, ytr, epochs=40, batch_size=64, verbose=0)
    keras_path = os.path.join(out_dir, "digits_gru16_keras_reset_before.safetensors")
    export_keras.export(keras.Model(x, [y, h]), keras_path, "last", data_path)
    kernel, recurrent, bias = layer.get_weights()
    V, a = dense.get_weights()
    onnx_model = os.path.join(out_dir, "digits_gru16_onnx_lbr0.onnx")
    # Keras's z, r, h order is ONNX's; reset_after=False has no recurrent bias.
    export_onnx.build_graph("gru", kernel.T[None], recurrent.T[None], np.concatenate([bias, np.zeros_like(bias)])[None],
                            V.T, a, onnx_model, linear_before_reset=0)
    onnx_path = os.path.join(out_dir, "digits_gru16_onnx_lbr0.safetensors")
    export_onnx.export(onnx_model, onnx_path, data_path)
    return [keras_path, onnx_path]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ablation-only", action="store_true", help="only add golden_ablation to existing fixtures")
    p.add_argument("--cells", default="lstm,gru,rnn_tanh",
                   help="cell kinds to (re)train, comma-separated (default all: lstm,gru,rnn_tanh)")
    a = p.parse_args()
    kinds = a.cells.split(",")
    os.makedirs(a.out, exist_ok=True)
    ablated = [("digits_lstm16", "digits_test"), ("digits_lstm64", "digits_test"), ("digits_lstm32x2", "digits_test"),
               ("flipflop_lstm64", "flipflop_test"), ("digits_gru16", "digits_test"), ("flipflop_gru32", "flipflop_test"),
               ("digits_rnn16", "digits_test"), ("flipflop_rnn32", "flipflop_test")]
    if a.ablation_only:
        for model, data in ablated:
            add_ablation_golden(os.path.join(a.out, model + ".safetensors"), os.path.join(a.out, data + ".safetensors"))
        return
    torch.manual_seed(a.seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    here = os.path.dirname(os.path.abspath(__file__))
    digits_path = os.path.join(a.out, "digits_test.safetensors")
    flipflop_path = os.path.join(a.out, "flipflop_test.safetensors")

    xtr, ytr, xte, yte = digits(a.seed)
    save_file({"inputs": xte, "labels": yte}, digits_path,
              metadata={"task": "classification", "source": "sklearn load_digits, rows as steps"})
    rng = np.random.default_rng(a.seed)
    fx, fy = flipflop(512, 100, rng)
    tx, ty = flipflop(64, 100, rng)
    save_file({"inputs": tx, "targets": ty}, flipflop_path,
              metadata={"task": "regression", "source": "3-bit flip-flop, pulse probability 0.05"})
    ce = torch.nn.CrossEntropyLoss()

    # (name, cell kind, hidden, layers, task); the digits models classify from the last step, the
    # flip-flop models regress every step.
    runs = [(f"digits_lstm{h}", "lstm", h, 1, "digits") for h in (8, 16, 32, 64, 128)]
    runs += [("digits_lstm32x2", "lstm", 32, 2, "digits"), ("flipflop_lstm64", "lstm", 64, 1, "flipflop"),
             ("digits_gru16", "gru", 16, 1, "digits"), ("flipflop_gru32", "gru", 32, 1, "flipflop"),
             ("digits_rnn16", "rnn_tanh", 16, 1, "digits"), ("flipflop_rnn32", "rnn_tanh", 32, 1, "flipflop")]
    trained = {}
    for name, kind, hidden, layers, task in runs:
        if kind not in kinds:
            continue
        if task == "digits":
            torch.manual_seed(a.seed + hidden + layers + (0 if kind == "lstm" else len(kind)))
            model = Net(8, hidden, 10, layers, cell=kind)
            train(model, xtr, ytr, ce, epochs=40, batch=64, lr=1e-2, seed=a.seed)
            out, h = golden(model, xte)
            score = {"golden_accuracy": repr(float((out.argmax(1) == yte).mean()))}
        else:
            torch.manual_seed(a.seed + hidden + (0 if kind == "lstm" else len(kind)))
            model = Net(3, hidden, 3, 1, sequence=True, cell=kind)
            train(model, fx, fy, torch.nn.MSELoss(), epochs=60, batch=32, lr=1e-2 if kind != "rnn_tanh" else 3e-3, seed=a.seed)
            out, h = golden(model, tx)
            score = {"golden_mse": repr(float(((out - ty) ** 2).mean()))}
        path = os.path.join(a.out, name + ".safetensors")
        export_recurrent(model.recurrent, model.fc, path, output="last" if task == "digits" else "sequence",
                         task="classification" if task == "digits" else "regression")
        add_golden(path, out, h, dict(score, trained_by="Tools/train_fixtures.py"))
        print(f"{name}: test {', '.join(f'{k} {float(v):.4f}' for k, v in score.items())}")
        trained[name] = model

    for model_name, data_name in ablated:
        if model_name in trained:
            add_ablation_golden(os.path.join(a.out, model_name + ".safetensors"), os.path.join(a.out, data_name + ".safetensors"))

    # The 16-cell digits networks through the other two frameworks.
    conversions = [("digits_lstm16", "lstm", "digits_lstm16_keras", "digits_lstm16_onnx"),
                   ("digits_gru16", "gru", "digits_gru16_keras", "digits_gru16_onnx"),
                   ("digits_rnn16", "rnn_tanh", "digits_rnn16_keras", "digits_rnn16_onnx")]
    for source, kind, keras_name, onnx_name in conversions:
        if source not in trained:
            continue
        state = os.path.join(a.out, f".{source}.pt")
        torch.save(trained[source].state_dict(), state)
        for tool, target in [("export_keras.py", keras_name), ("export_onnx.py", onnx_name)]:
            rc = os.system(f"{sys.executable} {os.path.join(here, tool)} --from-torch {state} --cell {kind} "
                           f"--data {digits_path} {os.path.join(a.out, target + '.safetensors')}")
            if rc != 0:
                print(f"{target}: skipped ({tool} failed; is its framework installed?)")
        os.remove(state)
    if "gru" in kinds:
        try:
            for path in keras_gru_reset_before(xtr, ytr, digits_path, a.out, a.seed):
                print(f"wrote {path}")
        except ImportError as error:
            print(f"Keras reset_after=False GRU: skipped ({error})")


if __name__ == "__main__":
    main()
