#!/usr/bin/env python3
"""Export a Keras 3 model (LSTM, GRU or SimpleRNN layers, then a Dense readout) to a CellAudit model file.

    python Tools/export_keras.py MODEL.keras OUT.safetensors [--data DATA] [--output last|sequence]
    python Tools/export_keras.py --from-torch STATE_DICT.pt OUT.safetensors --data DATA

Tensors keep Keras's layouts: lstm_{k}.kernel [I, 4H], lstm_{k}.recurrent_kernel [H, 4H],
lstm_{k}.bias [4H] (gate order i, f, c, o); gru_{k}.… [I, 3H], [H, 3H] (gate order z, r, h) with
bias [2, 3H] (reset_after=True) or [3H] (reset_after=False, a different cell: metadata
reset_after = 0); simple_rnn_{k}.… [I, H], [H, H], [H]; and dense.kernel [H, K], dense.bias [K].
Activations other than tanh/sigmoid (ReLU for SimpleRNN) are refused.
With --data, Keras's own outputs on DATA are stored as golden.outputs / golden.hidden.
--from-torch rebuilds a PyTorch nn.LSTM/GRU/RNN (--cell) + nn.Linear state dict in Keras first (for fixtures).
Needs keras (any backend), numpy and safetensors; --from-torch also torch.
"""
import argparse
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")
import keras  # noqa: E402
import numpy as np  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_pytorch import store_golden  # noqa: E402


TORCH_PREFIX = {"lstm": "lstm.", "gru": "gru.", "rnn_tanh": "rnn.", "rnn_relu": "rnn."}
KERAS_PREFIX = {"lstm": "lstm_", "gru": "gru_", "rnn_tanh": "simple_rnn_", "rnn_relu": "simple_rnn_"}


def torch_gru_to_keras(w, hidden):
    """PyTorch gate blocks r, z, n to Keras's z, r, h (rows of a [3H, ...] matrix or a [3H] bias)."""
    return np.concatenate([w[hidden:2 * hidden], w[:hidden], w[2 * hidden:]])


def from_torch(path, steps, inputs, cell="lstm"):
    import torch

    s = {k: v.numpy() for k, v in torch.load(path, map_location="cpu").items()}
    p = TORCH_PREFIX[cell]
    layers = sum(1 for k in s if k.startswith(p + "weight_ih_l"))
    x = keras.Input((steps, inputs))
    h = x
    for k in range(layers):
        w_ih, w_hh = s[f"{p}weight_ih_l{k}"], s[f"{p}weight_hh_l{k}"]
        b_ih, b_hh = s[f"{p}bias_ih_l{k}"], s[f"{p}bias_hh_l{k}"]
        hidden = w_hh.shape[1]
        name = f"{KERAS_PREFIX[cell]}{k}"
        if cell == "lstm":
            layer = keras.layers.LSTM(hidden, return_sequences=True, name=name)
            weights = [w_ih.T, w_hh.T, b_ih + b_hh]
        elif cell == "gru":
            layer = keras.layers.GRU(hidden, return_sequences=True, reset_after=True, name=name)
            weights = [torch_gru_to_keras(w_ih, hidden).T, torch_gru_to_keras(w_hh, hidden).T,
                       np.stack([torch_gru_to_keras(b_ih, hidden), torch_gru_to_keras(b_hh, hidden)])]
        else:
            layer = keras.layers.SimpleRNN(hidden, return_sequences=True, activation=cell[4:], name=name)
            weights = [w_ih.T, w_hh.T, b_ih + b_hh]
        h = layer(h)
        layer.set_weights(weights)
    dense = keras.layers.Dense(s["fc.weight"].shape[0], name="dense")
    y = dense(h[:, -1])
    dense.set_weights([s["fc.weight"].T, s["fc.bias"]])
    return keras.Model(x, [y, h])


def layer_kind(layer, k):
    """CellAudit's cell kind of a Keras recurrent layer; refuses what the kind cannot represent."""
    if getattr(layer, "go_backwards", False) or getattr(layer, "use_bias", True) is False:
        raise SystemExit(f"error: recurrent layer {k} runs backwards or has no bias; CellAudit reads forward layers with biases")
    activation = keras.activations.serialize(layer.activation)
    activation = activation if isinstance(activation, str) else activation.get("config", {}).get("name", str(activation))
    if isinstance(layer, keras.layers.SimpleRNN):
        if activation not in ("tanh", "relu"):
            raise SystemExit(f"error: SimpleRNN layer {k} has activation '{activation}'; CellAudit reads tanh and relu")
        return "rnn_" + activation
    recurrent = keras.activations.serialize(layer.recurrent_activation)
    recurrent = recurrent if isinstance(recurrent, str) else recurrent.get("config", {}).get("name", str(recurrent))
    if activation != "tanh" or recurrent != "sigmoid":
        raise SystemExit(f"error: layer {k} has activation '{activation}' and recurrent_activation '{recurrent}'; "
                         "CellAudit reads tanh and sigmoid")
    return "lstm" if isinstance(layer, keras.layers.LSTM) else "gru"


def check_structure(layers, recurrent):
    """The only models read exactly: [InputLayer] recurrent layers (one after another), then at
    most one linear Dense readout. Dropout is the identity at inference and is passed over;
    anything else (Masking, a layer between the recurrent stack and the readout, a second Dense, an
    activation on the readout) changes the outputs and is refused by name."""
    kinds = (keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN)
    body = [l for l in layers if not isinstance(l, (keras.layers.InputLayer, keras.layers.Dropout))]
    first, last = body.index(recurrent[0]), body.index(recurrent[-1])
    if first != 0:
        raise SystemExit(f"error: layer '{body[0].name}' ({type(body[0]).__name__}) comes before the first recurrent layer; "
                         "CellAudit reads networks whose input goes straight into the recurrent stack")
    for l in body[first:last + 1]:
        if not isinstance(l, kinds):
            raise SystemExit(f"error: layer '{l.name}' ({type(l).__name__}) sits between recurrent layers; CellAudit cannot represent it")
    after = body[last + 1:]
    if len(after) > 1:
        raise SystemExit(f"error: layer '{after[0].name}' ({type(after[0]).__name__}) sits between the recurrent stack and the readout "
                         f"'{after[-1].name}'; CellAudit reads one linear readout of the last recurrent layer")
    if after:
        readout = after[0]
        if not isinstance(readout, keras.layers.Dense):
            raise SystemExit(f"error: layer '{readout.name}' ({type(readout).__name__}) follows the recurrent stack; "
                             "CellAudit reads a Dense readout only")
        activation = keras.activations.serialize(readout.activation)
        activation = activation if isinstance(activation, str) else activation.get("config", {}).get("name", str(activation))
        if activation != "linear":
            raise SystemExit(f"error: the readout Dense '{readout.name}' has activation '{activation}'; CellAudit's readout is "
                             "linear (it reports the logits): export the model without the activation")


def export(model, out, output, data):
    recurrent = [l for l in model.layers if isinstance(l, (keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN))]
    denses = [l for l in model.layers if isinstance(l, keras.layers.Dense)]
    if not recurrent:
        raise SystemExit("error: the model has no LSTM, GRU or SimpleRNN layer")
    check_structure(model.layers, recurrent)
    kinds = [layer_kind(l, k) for k, l in enumerate(recurrent)]
    if len(set(kinds)) != 1:
        raise SystemExit(f"error: the recurrent layers mix cell kinds ({', '.join(kinds)})")
    kind, prefix = kinds[0], KERAS_PREFIX[kinds[0]]
    tensors, hidden = {}, []
    for k, layer in enumerate(recurrent):
        kernel, recurrent_kernel, bias = layer.get_weights()
        tensors[f"{prefix}{k}.kernel"], tensors[f"{prefix}{k}.recurrent_kernel"], tensors[f"{prefix}{k}.bias"] = kernel, recurrent_kernel, bias
        hidden.append(recurrent_kernel.shape[0])
    meta = {"convention": "keras", "cell": kind, "layers": str(len(recurrent)),
            "input_size": str(tensors[f"{prefix}0.kernel"].shape[0]), "hidden_sizes": ",".join(map(str, hidden)),
            "output": output, "task": "classification" if output == "last" else "regression", "prefix": prefix}
    if kind == "gru":
        meta["reset_after"] = "1" if recurrent[0].reset_after else "0"
    if denses:
        kernel, bias = denses[-1].get_weights()
        tensors["dense.kernel"], tensors["dense.bias"] = kernel, bias
        meta["readout_weight"], meta["readout_bias"] = "dense.kernel", "dense.bias"
    if data:
        d = load_file(data)
        outs = model(d["inputs"])
        logits, h = (outs if isinstance(outs, (list, tuple)) else (outs, None))
        store_golden(tensors, meta, keras.ops.convert_to_numpy(logits),
                     None if h is None else keras.ops.convert_to_numpy(h), d.get("labels"))
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}, out, metadata=meta)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?")
    p.add_argument("out")
    p.add_argument("--from-torch")
    p.add_argument("--cell", choices=["lstm", "gru", "rnn_tanh", "rnn_relu"], default="lstm",
                   help="the kind of the --from-torch state dict")
    p.add_argument("--data")
    p.add_argument("--output", choices=["last", "sequence"], default="last")
    a = p.parse_args()
    if a.from_torch:
        x = load_file(a.data)["inputs"]
        model = from_torch(a.from_torch, x.shape[1], x.shape[2], a.cell)
    else:
        model = keras.models.load_model(a.model)
    export(model, a.out, a.output, a.data)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
