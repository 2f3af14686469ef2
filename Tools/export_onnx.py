#!/usr/bin/env python3
"""Convert an ONNX model with an LSTM, GRU or RNN node (and a MatMul/Gemm readout after it) to a
CellAudit model file.

    python Tools/export_onnx.py MODEL.onnx OUT.safetensors [--data DATA]
    python Tools/export_onnx.py --from-torch STATE_DICT.pt OUT.safetensors --data DATA

Tensors keep ONNX's layouts: lstm_0.W [1, 4H, I], lstm_0.R [1, 4H, H], lstm_0.B [1, 8H] (gate
order i, o, f, c); gru_0.… [1, 3H, ·], B [1, 6H] (gate order z, r, h; metadata
linear_before_reset 0 or 1, two different cells); rnn_0.… [1, H, ·], B [1, 2H] (activation Tanh
or Relu); readout.weight [K, H], readout.bias [K]. clip, input_forget, sequence_lens and other
activations are refused.
With --data, onnxruntime's outputs on DATA are stored as golden.outputs / golden.hidden.
--from-torch first writes the PyTorch nn.LSTM + nn.Linear state dict as an ONNX graph
(MODEL is then saved beside OUT as .onnx) built with onnx.helper.
Needs onnx, numpy and safetensors; --data needs onnxruntime; --from-torch needs torch.
"""
import argparse
import os
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto
from safetensors.numpy import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_pytorch import store_golden  # noqa: E402

# ONNX block b holds PyTorch gate ORDER[kind][b]: LSTM i, o, f, c from i, f, g, o; GRU z, r, h from r, z, n.
ORDER = {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2], "rnn_tanh": [0], "rnn_relu": [0]}
OP = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN", "rnn_relu": "RNN"}
PREFIX = {"lstm": "lstm_", "gru": "gru_", "rnn_tanh": "rnn_", "rnn_relu": "rnn_"}
TORCH_PREFIX = {"lstm": "lstm.", "gru": "gru.", "rnn_tanh": "rnn.", "rnn_relu": "rnn."}


def build_graph(kind, W, R, B, V, a, onnx_path, linear_before_reset=1):
    """One recurrent node (W [1, G*H, I], R [1, G*H, H], B [1, 2*G*H] in ONNX's gate order) and a
    MatMul + Add readout of the last step, saved to onnx_path; outputs `logits` and `hidden`."""
    hidden, inputs = R.shape[2], W.shape[2]
    inits = [numpy_helper.from_array(t.astype(np.float32), n) for t, n in
             [(W, "W"), (R, "R"), (B, "B"), (V.T.copy(), "VT"), (a, "a")]]
    attrs = {"hidden_size": hidden}
    if kind == "gru":
        attrs["linear_before_reset"] = linear_before_reset
    if kind == "rnn_relu":
        attrs["activations"] = ["Relu"]
    nodes = [
        helper.make_node("Transpose", ["x"], ["x_tm"], perm=[1, 0, 2]),   # [N,T,I] -> [T,N,I]
        helper.make_node(OP[kind], ["x_tm", "W", "R", "B"], ["Y", "Y_h"], **attrs),
        helper.make_node("Squeeze", ["Y_h", "axis0"], ["h_last"]),
        helper.make_node("MatMul", ["h_last", "VT"], ["logits_nb"]),
        helper.make_node("Add", ["logits_nb", "a"], ["logits"]),
        helper.make_node("Squeeze", ["Y", "axis1"], ["Y_tnh"]),
        helper.make_node("Transpose", ["Y_tnh"], ["hidden"], perm=[1, 0, 2]),
    ]
    inits += [numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0"),
              numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1")]
    graph = helper.make_graph(
        nodes, "cellaudit_" + kind,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T", inputs])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", V.shape[0]]),
         helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["N", "T", hidden])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, onnx_path)


def torch_to_onnx(state_path, onnx_path, kind="lstm"):
    import torch

    s = {k: v.numpy() for k, v in torch.load(state_path, map_location="cpu").items()}
    p = TORCH_PREFIX[kind]
    if p + "weight_ih_l1" in s:
        raise SystemExit("error: --from-torch handles one recurrent layer")
    w_ih, w_hh = s[p + "weight_ih_l0"], s[p + "weight_hh_l0"]
    hidden = w_hh.shape[1]

    def reorder(m):
        return np.concatenate([m[g * hidden:(g + 1) * hidden] for g in ORDER[kind]])

    B = np.concatenate([reorder(s[p + "bias_ih_l0"]), reorder(s[p + "bias_hh_l0"])])[None]
    # PyTorch's GRU is ONNX's linear_before_reset = 1.
    build_graph(kind, reorder(w_ih)[None], reorder(w_hh)[None], B, s["fc.weight"], s["fc.bias"], onnx_path, 1)


# Ops that only move or reshape data: allowed between the graph input and the recurrent node, and
# (with step selection) between the recurrent node and its readout.
LAYOUT_OPS = {"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Cast"}


def export(onnx_path, out, data):
    model = onnx.load(onnx_path)
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.op_type in ("LSTM", "GRU", "RNN")]
    if len(nodes) != 1:
        raise SystemExit(f"error: expected one LSTM, GRU or RNN node, found {len(nodes)}")
    node = nodes[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("direction", b"forward") not in (b"forward", "forward"):
        raise SystemExit(f"error: node '{node.name or node.op_type}': only forward {node.op_type}s are supported")
    for unsupported in ("clip", "input_forget"):
        if attrs.get(unsupported):
            raise SystemExit(f"error: node '{node.name or node.op_type}' sets '{unsupported}', which CellAudit does not represent")
    if len(node.input) > 4 and node.input[4]:
        raise SystemExit(f"error: node '{node.name or node.op_type}' takes a sequence_lens input, which CellAudit does not represent")
    activations = [x.decode() if isinstance(x, bytes) else x for x in attrs.get("activations", [])]
    default = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}[node.op_type]
    if node.op_type == "RNN" and activations in ([], ["Tanh"], ["Relu"]):
        kind = "rnn_relu" if activations == ["Relu"] else "rnn_tanh"
    elif activations in ([], default):
        kind = node.op_type.lower()
    else:
        raise SystemExit(f"error: node '{node.name or node.op_type}' has activations {activations}; CellAudit reads {default}")
    producers = {o: n for n in model.graph.node for o in n.output}
    graph_inputs = {i.name for i in model.graph.input} - set(init)
    # The input must reach the recurrent node through layout ops only: anything else before it
    # (a projection, an embedding, a normalisation) is a part of the network CellAudit cannot read.
    name, transposed = node.input[0], False
    while name not in graph_inputs:
        producer = producers.get(name)
        if producer is None:
            raise SystemExit(f"error: the input of node '{node.name or node.op_type}' is neither a graph input nor computed by the graph")
        if producer.op_type not in LAYOUT_OPS:
            raise SystemExit(f"error: node '{producer.name or producer.op_type}' ({producer.op_type}) comes before the "
                             f"{node.op_type}; CellAudit reads networks whose input goes straight into the recurrent layer")
        if producer.op_type == "Transpose":
            transposed = not transposed
        name = producer.input[0]
    time_major_input = int(attrs.get("layout", 0)) == 0 and not transposed
    W, R = init[node.input[1]], init[node.input[2]]
    H = int(attrs["hidden_size"])
    G = W.shape[1] // H
    B = init[node.input[3]] if len(node.input) > 3 and node.input[3] else np.zeros((1, 2 * G * H), np.float32)
    p = PREFIX[kind]
    tensors = {p + "0.W": W, p + "0.R": R, p + "0.B": B}
    meta = {"convention": "onnx", "cell": kind, "layers": "1", "input_size": str(W.shape[2]),
            "hidden_sizes": str(H), "output": "last", "task": "classification", "prefix": p}
    if kind == "gru":
        meta["linear_before_reset"] = str(int(attrs.get("linear_before_reset", 0)))
    # The readout is the MatMul or Gemm fed (through layout and step-selection ops) by the
    # recurrent node's output, never just the first one with an initializer.
    consumers = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    frontier, readout, seen = list(node.output), [], set()
    while frontier:
        for n in consumers.get(frontier.pop(), []):
            if id(n) in seen:
                continue
            seen.add(id(n))
            if n.op_type in ("MatMul", "Gemm"):
                readout.append(n)
            elif n.op_type in LAYOUT_OPS | {"Gather", "Slice", "Flatten"}:
                frontier.extend(n.output)
    others = [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and n not in readout]
    if others or len(readout) > 1:
        extra = (others or readout[1:])[0]
        raise SystemExit(f"error: node '{extra.name or extra.op_type}' ({extra.op_type}) is a second linear map besides the "
                         "readout of the recurrent output; CellAudit reads one readout and will not leave another out")
    if readout:
        r = readout[0]
        weight = next(init[i] for i in r.input if i in init)
        tensors["readout.weight"] = weight.T if r.op_type == "MatMul" else weight  # to [K, H]
        meta["readout_weight"] = "readout.weight"
        adds = [n for n in model.graph.node if n.op_type == "Add" and r.output[0] in n.input]
        bias = next((init[i] for n in adds for i in n.input if i in init), None)
        if r.op_type == "Gemm" and len(r.input) > 2:
            bias = init[r.input[2]]
        if bias is not None:
            tensors["readout.bias"] = bias
            meta["readout_bias"] = "readout.bias"
    if data:
        import onnxruntime as ort

        d = load_file(data)
        session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        x = d["inputs"].transpose(1, 0, 2) if time_major_input else d["inputs"]
        names = [o.name for o in session.get_outputs()]
        results = dict(zip(names, session.run(None, {session.get_inputs()[0].name: x})))
        logits = results.get("logits", results[names[0]])
        if logits.ndim != 2:
            raise SystemExit(f"error: the graph's output '{names[0]}' has shape {list(logits.shape)}; --data expects [N, K] from the last step")
        store_golden(tensors, meta, logits, results.get("hidden"), d.get("labels"))
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}, out, metadata=meta)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?")
    p.add_argument("out")
    p.add_argument("--from-torch")
    p.add_argument("--cell", choices=["lstm", "gru", "rnn_tanh", "rnn_relu"], default="lstm",
                   help="the kind of the --from-torch state dict")
    p.add_argument("--data")
    a = p.parse_args()
    path = a.model
    if a.from_torch:
        path = a.out.rsplit(".", 1)[0] + ".onnx"
        torch_to_onnx(a.from_torch, path, a.cell)
    export(path, a.out, a.data)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
