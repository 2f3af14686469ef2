#!/usr/bin/env python3
"""Export a PyTorch nn.LSTM (+ optional nn.Linear readout) to a CellAudit model file.

A CellAudit model file is one safetensors file: the tensors keep PyTorch's own names
(lstm.weight_ih_l0, ... fc.weight, fc.bias) and `__metadata__` says how to read them.

    from export_pytorch import export_lstm
    export_lstm(model.lstm, model.fc, "model.safetensors", output="last", task="classification")

Command line (a checkpoint saved with torch.save(model.state_dict())):
    python Tools/export_pytorch.py STATE_DICT.pt OUT.safetensors --lstm-prefix lstm. \
        --readout-prefix fc. [--output last|sequence] [--task classification|regression]
Needs torch, numpy and safetensors.
"""
import argparse
import sys

import numpy as np
from safetensors.numpy import save_file


def export_lstm(lstm, readout, path, output="last", task="classification", extra_metadata=None):
    import torch

    if not isinstance(lstm, torch.nn.LSTM):
        raise TypeError("export_lstm takes a torch.nn.LSTM")
    if lstm.bidirectional or lstm.proj_size or not lstm.bias:
        raise ValueError("CellAudit reads unidirectional LSTMs with biases and no projection")
    tensors = {}
    for name, value in lstm.state_dict().items():
        tensors["lstm." + name] = value.detach().cpu().float().numpy()
    metadata = {
        "convention": "pytorch",
        "cell": "lstm",
        "layers": str(lstm.num_layers),
        "input_size": str(lstm.input_size),
        "hidden_sizes": ",".join([str(lstm.hidden_size)] * lstm.num_layers),
        "output": output,
        "task": task,
        "prefix": "lstm.",
    }
    if readout is not None:
        tensors["fc.weight"] = readout.weight.detach().cpu().float().numpy()
        metadata["readout_weight"] = "fc.weight"
        if readout.bias is not None:
            tensors["fc.bias"] = readout.bias.detach().cpu().float().numpy()
            metadata["readout_bias"] = "fc.bias"
    metadata.update(extra_metadata or {})
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, path, metadata=metadata)


def store_golden(tensors, meta, outputs, hidden=None, labels=None):
    """Stores a framework's own outputs on a dataset as the golden reference of an exported model:
    golden.outputs, golden.hidden (the first four sequences, where the framework gives them) and,
    with labels, the metadata golden_accuracy. Shared by the Keras and ONNX exporters."""
    tensors["golden.outputs"] = outputs
    if hidden is not None:
        tensors["golden.hidden"] = hidden[:4]
    if labels is not None:
        meta["golden_accuracy"] = repr(float((outputs.argmax(1) == labels).mean()))


def main():
    import torch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("state_dict")
    p.add_argument("out")
    p.add_argument("--lstm-prefix", default="lstm.")
    p.add_argument("--readout-prefix", default="fc.")
    p.add_argument("--output", choices=["last", "sequence"], default="last")
    p.add_argument("--task", choices=["classification", "regression"], default="classification")
    a = p.parse_args()
    state = torch.load(a.state_dict, map_location="cpu")
    sub = {k[len(a.lstm_prefix):]: v for k, v in state.items() if k.startswith(a.lstm_prefix)}
    if "weight_ih_l0" not in sub:
        sys.exit(f"error: no {a.lstm_prefix}weight_ih_l0 in {a.state_dict}")
    layers = sum(1 for k in sub if k.startswith("weight_ih_l"))
    hidden = sub["weight_hh_l0"].shape[1]
    lstm = torch.nn.LSTM(sub["weight_ih_l0"].shape[1], hidden, num_layers=layers, batch_first=True)
    lstm.load_state_dict(sub)
    readout = None
    if a.readout_prefix + "weight" in state:
        w = state[a.readout_prefix + "weight"]
        readout = torch.nn.Linear(w.shape[1], w.shape[0], bias=a.readout_prefix + "bias" in state)
        readout.load_state_dict({k[len(a.readout_prefix):]: v for k, v in state.items() if k.startswith(a.readout_prefix)})
    export_lstm(lstm, readout, a.out, output=a.output, task=a.task)


if __name__ == "__main__":
    main()
