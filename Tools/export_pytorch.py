#!/usr/bin/env python3
"""Export a PyTorch nn.LSTM, nn.GRU or nn.RNN (+ optional nn.Linear readout) to a CellAudit model file.

A CellAudit model file is one safetensors file: the tensors keep PyTorch's own names
(lstm.weight_ih_l0 / gru.… / rnn.…, ... fc.weight, fc.bias) and `__metadata__` says how to read
them (cell = lstm, gru, rnn_tanh or rnn_relu).

    from export_pytorch import export_recurrent
    export_recurrent(model.rnn, model.fc, "model.safetensors", output="last", task="classification")

Command line (a checkpoint saved with torch.save(model.state_dict())):
    python Tools/export_pytorch.py STATE_DICT.pt OUT.safetensors [--cell lstm|gru|rnn_tanh|rnn_relu] \
        --lstm-prefix lstm. --readout-prefix fc. [--output last|sequence] [--task classification|regression]
Needs torch, numpy and safetensors.
"""
import argparse
import sys

import numpy as np
from safetensors.numpy import save_file


def cell_kind(module):
    """CellAudit's cell kind of a torch.nn.LSTM, GRU or RNN (PyTorch's own names)."""
    import torch

    if isinstance(module, torch.nn.LSTM):
        return "lstm"
    if isinstance(module, torch.nn.GRU):
        return "gru"
    if isinstance(module, torch.nn.RNN):
        return "rnn_" + module.nonlinearity
    raise TypeError("CellAudit reads torch.nn.LSTM, GRU and RNN modules")


PREFIX = {"lstm": "lstm.", "gru": "gru.", "rnn_tanh": "rnn.", "rnn_relu": "rnn."}


def export_recurrent(module, readout, path, output="last", task="classification", extra_metadata=None):
    kind = cell_kind(module)
    if module.bidirectional or getattr(module, "proj_size", 0) or not module.bias:
        raise ValueError("CellAudit reads unidirectional recurrent layers with biases and no projection")
    prefix = PREFIX[kind]
    tensors = {}
    for name, value in module.state_dict().items():
        tensors[prefix + name] = value.detach().cpu().float().numpy()
    metadata = {
        "convention": "pytorch",
        "cell": kind,
        "layers": str(module.num_layers),
        "input_size": str(module.input_size),
        "hidden_sizes": ",".join([str(module.hidden_size)] * module.num_layers),
        "output": output,
        "task": task,
        "prefix": prefix,
    }
    if readout is not None:
        tensors["fc.weight"] = readout.weight.detach().cpu().float().numpy()
        metadata["readout_weight"] = "fc.weight"
        if readout.bias is not None:
            tensors["fc.bias"] = readout.bias.detach().cpu().float().numpy()
            metadata["readout_bias"] = "fc.bias"
    metadata.update(extra_metadata or {})
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, path, metadata=metadata)


export_lstm = export_recurrent


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
    p.add_argument("--cell", choices=["lstm", "gru", "rnn_tanh", "rnn_relu"], default="lstm")
    p.add_argument("--lstm-prefix", default="lstm.", help="prefix of the recurrent module's tensors")
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
    size = (sub["weight_ih_l0"].shape[1], hidden)
    if a.cell == "lstm":
        lstm = torch.nn.LSTM(*size, num_layers=layers, batch_first=True)
    elif a.cell == "gru":
        lstm = torch.nn.GRU(*size, num_layers=layers, batch_first=True)
    else:
        lstm = torch.nn.RNN(*size, num_layers=layers, batch_first=True, nonlinearity=a.cell[4:])
    lstm.load_state_dict(sub)
    readout = None
    if a.readout_prefix + "weight" in state:
        w = state[a.readout_prefix + "weight"]
        readout = torch.nn.Linear(w.shape[1], w.shape[0], bias=a.readout_prefix + "bias" in state)
        readout.load_state_dict({k[len(a.readout_prefix):]: v for k, v in state.items() if k.startswith(a.readout_prefix)})
    export_lstm(lstm, readout, a.out, output=a.output, task=a.task)


if __name__ == "__main__":
    main()
