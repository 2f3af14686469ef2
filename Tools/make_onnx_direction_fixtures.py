#!/usr/bin/env python3
"""ONNX graphs with reverse recurrent nodes (direction="reverse"), and onnxruntime's outputs, for
CellAudit's ONNX reader (issue 30, item 3; issue 29, item 1).

Writes Tests/Fixtures/onnx_direction/:
    NAME.onnx               the graph (X [N, T, 3] batch-major, transposed to time-major)
    NAME.data.safetensors   inputs [4, 6, 3] and outputs: onnxruntime's result

Graphs (seeded random weights, opset 17):
    lstm_rev_last_state   reverse LSTM(5); the readout reads Y_h (its state after step 0)
    gru_rev_last_step     reverse GRU(4, linear_before_reset=1); the readout reads Y at step T−1
    lstm_fwd_rev          forward LSTM(4) → reverse LSTM(3); the readout reads Y_h of the top
    rnn_rev_sequence      reverse RNN(4, tanh); the readout at every step
    lstm_rev_lens4        reverse LSTM(5) with a constant sequence_lens of 4 for every sequence
    refuse_varying_lens   a GRU whose constant sequence_lens differs by batch position (refused)

    python Tools/make_onnx_direction_fixtures.py
Needs onnx, onnxruntime, numpy and safetensors.
"""
import os

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "onnx_direction")
RNG = np.random.default_rng(11)


def weights(name, shape):
    return numpy_helper.from_array((RNG.standard_normal(shape) * 0.5).astype(np.float32), name)


def recurrent(op, k, x, inputs, hidden, direction, nodes, inits, lens=None, **attrs):
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    inits += [weights(f"W{k}", (1, gates * hidden, inputs)), weights(f"R{k}", (1, gates * hidden, hidden)),
              weights(f"B{k}", (1, 2 * gates * hidden))]
    extra = []
    if lens is not None:
        inits.append(numpy_helper.from_array(np.array(lens, dtype=np.int32), f"lens{k}"))
        extra = [f"lens{k}"]
    nodes.append(helper.make_node(op, [x, f"W{k}", f"R{k}", f"B{k}"] + extra, [f"Y{k}", f"Yh{k}"], name=f"{op.lower()}{k}",
                                  hidden_size=hidden, direction=direction, **attrs))
    return f"Y{k}", f"Yh{k}"


def build(name, layers, read, k_out=2):
    nodes, inits = [], []
    nodes.append(helper.make_node("Transpose", ["X"], ["Xt"], perm=[1, 0, 2]))
    x, width = "Xt", 3
    for k, (op, hidden, direction, attrs) in enumerate(layers):
        attrs = dict(attrs)
        y, yh = recurrent(op, k, x, width, hidden, direction, nodes, inits, **attrs)
        if k < len(layers) - 1:
            inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), f"axis{k}"))
            nodes.append(helper.make_node("Squeeze", [y, f"axis{k}"], [f"Ys{k}"]))
            x = f"Ys{k}"
        width = hidden
    inits.append(weights("V", (width, k_out)))
    inits.append(weights("a", (k_out,)))
    if read == "last_state":          # Y_h [1, N, H] → [N, H]
        inits.append(numpy_helper.from_array(np.array([0], dtype=np.int64), "axis_h"))
        nodes.append(helper.make_node("Squeeze", [yh, "axis_h"], ["H"]))
    elif read == "last_step":         # Y [T, 1, N, H] → Y[T−1] → [N, H]
        inits.append(numpy_helper.from_array(np.array(-1, dtype=np.int64), "last"))
        inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_y"))
        nodes.append(helper.make_node("Squeeze", [y, "axis_y"], ["Ysq"]))
        nodes.append(helper.make_node("Gather", ["Ysq", "last"], ["H"], axis=0))
    else:                             # every step: Y [T, 1, N, H] → [N, T, H]
        inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_y"))
        nodes.append(helper.make_node("Squeeze", [y, "axis_y"], ["Ysq"]))
        nodes.append(helper.make_node("Transpose", ["Ysq"], ["H"], perm=[1, 0, 2]))
    nodes.append(helper.make_node("MatMul", ["H", "V"], ["HV"]))
    nodes.append(helper.make_node("Add", ["HV", "a"], ["out"]))
    out_shape = ["N", k_out] if read != "sequence" else ["N", "T", k_out]
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", "T", 3])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path = os.path.join(OUT, name + ".onnx")
    onnx.save(model, path)
    x = RNG.standard_normal((4, 6, 3)).astype(np.float32)
    (y,) = onnxruntime.InferenceSession(path).run(None, {"X": x})
    save_file({"inputs": x, "outputs": np.ascontiguousarray(y)}, os.path.join(OUT, name + ".data.safetensors"))


def main():
    os.makedirs(OUT, exist_ok=True)
    build("lstm_rev_last_state", [("LSTM", 5, "reverse", {})], "last_state")
    build("gru_rev_last_step", [("GRU", 4, "reverse", {"linear_before_reset": 1})], "last_step")
    build("lstm_fwd_rev", [("LSTM", 4, "forward", {}), ("LSTM", 3, "reverse", {})], "last_state")
    build("rnn_rev_sequence", [("RNN", 4, "reverse", {})], "sequence")
    # A constant sequence_lens of 4 for each of the 4 sequences: every sequence runs its first 4 steps.
    build("lstm_rev_lens4", [("LSTM", 5, "reverse", {"lens": [4, 4, 4, 4]})], "last_state")
    # Lengths that depend on the batch position: refused.
    build("refuse_varying_lens", [("GRU", 3, "forward", {"lens": [6, 5, 4, 6]})], "last_state")
    print("wrote", sorted(os.listdir(OUT)), "with onnx", onnx.__version__, "onnxruntime", onnxruntime.__version__)


if __name__ == "__main__":
    main()
