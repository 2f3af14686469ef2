#!/usr/bin/env python3
"""Export a Keras 3 model (LSTM layers, then a Dense readout) to a CellAudit model file.

    python Tools/export_keras.py MODEL.keras OUT.safetensors [--data DATA] [--output last|sequence]
    python Tools/export_keras.py --from-torch STATE_DICT.pt OUT.safetensors --data DATA

Tensors keep Keras's layouts: lstm_{k}.kernel [I, 4H], lstm_{k}.recurrent_kernel [H, 4H],
lstm_{k}.bias [4H] (gate order i, f, c, o) and dense.kernel [H, K], dense.bias [K].
With --data, Keras's own outputs on DATA are stored as golden.outputs / golden.hidden.
--from-torch rebuilds a PyTorch nn.LSTM + nn.Linear state dict in Keras first (for fixtures).
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


def from_torch(path, steps, inputs):
    import torch

    s = {k: v.numpy() for k, v in torch.load(path, map_location="cpu").items()}
    layers = sum(1 for k in s if k.startswith("lstm.weight_ih_l"))
    x = keras.Input((steps, inputs))
    h = x
    lstm_layers = []
    for k in range(layers):
        hidden = s[f"lstm.weight_hh_l{k}"].shape[1]
        layer = keras.layers.LSTM(hidden, return_sequences=True, name=f"lstm_{k}")
        h = layer(h)
        layer.set_weights([s[f"lstm.weight_ih_l{k}"].T, s[f"lstm.weight_hh_l{k}"].T,
                           s[f"lstm.bias_ih_l{k}"] + s[f"lstm.bias_hh_l{k}"]])
        lstm_layers.append(layer)
    dense = keras.layers.Dense(s["fc.weight"].shape[0], name="dense")
    y = dense(h[:, -1])
    dense.set_weights([s["fc.weight"].T, s["fc.bias"]])
    return keras.Model(x, [y, h])


def export(model, out, output, data):
    lstms = [l for l in model.layers if isinstance(l, keras.layers.LSTM)]
    denses = [l for l in model.layers if isinstance(l, keras.layers.Dense)]
    if not lstms:
        raise SystemExit("error: the model has no LSTM layer")
    tensors, hidden = {}, []
    for k, layer in enumerate(lstms):
        if layer.go_backwards or getattr(layer, "use_bias", True) is False:
            raise SystemExit(f"error: LSTM layer {k} runs backwards or has no bias; CellAudit reads forward LSTMs with biases")
        kernel, recurrent, bias = layer.get_weights()
        tensors[f"lstm_{k}.kernel"], tensors[f"lstm_{k}.recurrent_kernel"], tensors[f"lstm_{k}.bias"] = kernel, recurrent, bias
        hidden.append(recurrent.shape[0])
    meta = {"convention": "keras", "cell": "lstm", "layers": str(len(lstms)),
            "input_size": str(tensors["lstm_0.kernel"].shape[0]), "hidden_sizes": ",".join(map(str, hidden)),
            "output": output, "task": "classification" if output == "last" else "regression", "prefix": "lstm_"}
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
    p.add_argument("--data")
    p.add_argument("--output", choices=["last", "sequence"], default="last")
    a = p.parse_args()
    if a.from_torch:
        x = load_file(a.data)["inputs"]
        model = from_torch(a.from_torch, x.shape[1], x.shape[2])
    else:
        model = keras.models.load_model(a.model)
    export(model, a.out, a.output, a.data)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
