#!/usr/bin/env python3
"""ONNX LSTM graphs with peepholes (input P), onnxruntime's outputs, and gradient × input from
torch autograd, for CellAudit's peephole LSTM (issue 29, item 4; issue 30, item 3).

ONNX's LSTM with P [D, 3H] (order i, o, f): i = σ(Wi x + Ri h + pi ⊙ c_{t−1} + b), f likewise
with pf, c_t = f ⊙ c_{t−1} + i ⊙ tanh(Wc x + Rc h + b), o = σ(Wo x + Ro h + po ⊙ c_t + b),
h = o ⊙ tanh(c_t). PyTorch and Keras LSTMs have no peepholes, so the graphs are written with
onnx.helper (opset 17).

Writes Tests/Fixtures/onnx_peephole/:
    NAME.onnx               the graph
    NAME.data.safetensors   inputs [4, 6, 3] (batch-major), outputs (onnxruntime), and where
                            named: lengths [4], grad_x [4, 6, 3] (x ⊙ ∂y[n, n mod 2]/∂x, torch
                            autograd in float64 on the same weights)
Graphs:
    helper_lstm_peephole_x2_final   LSTM(5, P) → Squeeze → LSTM(4, P), Y_h of the top read by a
                                    Gemm (2 outputs); grad_x recorded
    helper_bilstm_peephole_final    one bidirectional LSTM(4) with P [2, 12], both final states
                                    (Y_h transposed and reshaped to [N, 8]) read by a Gemm
    helper_lstm_peephole_lens_input an LSTM(5, P) whose sequence_lens is a graph input (the data
                                    carry lengths 6, 3, 5, 1), Y_h read
    helper_lstm_zero_peephole       an LSTM(5) with an all-zero P: the plain cell
    refuse_peephole_computed        P computed by the graph (an Add of two constants): refused
    refuse_peephole_input           P fed from a graph input: refused (--core would not help)
    refuse_peephole_nan_reverse     a bidirectional LSTM whose reverse P holds a NaN: refused naming
                                    the direction, the gate and the cell
    refuse_gru_extra_input          a GRU node with a 7th input (ONNX's GRU takes 6; onnx.checker
                                    and onnxruntime refuse it, so it is written without the checker)

    python Tools/make_onnx_peephole_fixtures.py
Needs onnx, onnxruntime, numpy, torch and safetensors.
"""
import os

import numpy as np
import onnx
import onnxruntime
import torch
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "onnx_peephole")
RNG = np.random.default_rng(8)
T, I = 6, 3


def arr(shape, scale=0.5):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def save_graph(name, nodes, inits, inputs, out_shape, check=True):
    graph = helper.make_graph(nodes, name, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if check:
        onnx.checker.check_model(model)
    path = os.path.join(OUT, name + ".onnx")
    onnx.save(model, path)
    return path


def x_input():
    return helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", T, I])


def bidirectional_lstm_nodes(H):
    """Transpose to time-major, one bidirectional LSTM with P, its Y_h [2, N, H] as [N, 2H], a Gemm."""
    return [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
            helper.make_node("LSTM", ["xt", "W", "R", "B", "", "", "", "P"], ["Y", "Yh"], hidden_size=H, direction="bidirectional"),
            helper.make_node("Transpose", ["Yh"], ["Yht"], perm=[1, 0, 2]),
            helper.make_node("Reshape", ["Yht", "shape"], ["Hn"]),
            helper.make_node("Gemm", ["Hn", "V", "a"], ["y"], transB=1)]


def lstm_reference(x, layers):
    """The stacked forward peephole LSTM of ONNX in torch float64; layers: (W, R, B, P) per
    layer, ONNX layouts with D = 1. Returns the top layer's final h [N, H] (a torch tensor)."""
    h_in = x
    for W, R, B, P in layers:
        W, R, B, P = (torch.tensor(v[0], dtype=torch.float64) for v in (W, R, B, P))
        H = R.shape[1]
        Wb, Rb = B[:4 * H], B[4 * H:]
        pi, po, pf = P[:H], P[H:2 * H], P[2 * H:]
        n = h_in.shape[0]
        h = torch.zeros(n, H, dtype=torch.float64)
        c = torch.zeros(n, H, dtype=torch.float64)
        ys = []
        for t in range(h_in.shape[1]):
            a = h_in[:, t] @ W.T + h @ R.T + Wb + Rb
            ai, ao, af, ac = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
            i = torch.sigmoid(ai + pi * c)
            f = torch.sigmoid(af + pf * c)
            c = f * c + i * torch.tanh(ac)
            o = torch.sigmoid(ao + po * c)
            h = o * torch.tanh(c)
            ys.append(h)
        h_in = torch.stack(ys, dim=1)
    return h


def main():
    os.makedirs(OUT, exist_ok=True)
    x = arr((4, T, I), 1.0)

    # Two stacked peephole LSTMs; the second reads the first's Y [T, 1, N, 5] squeezed.
    H0, H1 = 5, 4
    inits = {"W0": arr((1, 4 * H0, I)), "R0": arr((1, 4 * H0, H0)), "B0": arr((1, 8 * H0)), "P0": arr((1, 3 * H0), 1.0),
             "W1": arr((1, 4 * H1, H0)), "R1": arr((1, 4 * H1, H1)), "B1": arr((1, 8 * H1)), "P1": arr((1, 3 * H1), 1.0),
             "V": arr((2, H1)), "a": arr((2,)), "axis1": np.array([1], dtype=np.int64), "axis0": np.array([0], dtype=np.int64)}
    path = save_graph("helper_lstm_peephole_x2_final", [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
        helper.make_node("LSTM", ["xt", "W0", "R0", "B0", "", "", "", "P0"], ["Y0", "Yh0"], hidden_size=H0),
        helper.make_node("Squeeze", ["Y0", "axis1"], ["Y0s"]),
        helper.make_node("LSTM", ["Y0s", "W1", "R1", "B1", "", "", "", "P1"], ["Y1", "Yh1"], hidden_size=H1),
        helper.make_node("Squeeze", ["Yh1", "axis0"], ["Hn"]),
        helper.make_node("Gemm", ["Hn", "V", "a"], ["y"], transB=1),
    ], inits, [x_input()], ["N", 2])
    (y,) = onnxruntime.InferenceSession(path).run(None, {"x": x})
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    layers = [(inits["W0"], inits["R0"], inits["B0"], inits["P0"]), (inits["W1"], inits["R1"], inits["B1"], inits["P1"])]
    top = lstm_reference(xt, layers)
    out = top @ torch.tensor(inits["V"], dtype=torch.float64).T + torch.tensor(inits["a"], dtype=torch.float64)
    assert np.abs(out.detach().numpy() - y).max() < 1e-5, "the torch reference disagrees with onnxruntime"
    targets = torch.arange(4) % 2
    out[torch.arange(4), targets].sum().backward()
    grad_x = (xt * xt.grad).detach().numpy().astype(np.float32)
    save_file({"inputs": x, "outputs": y, "grad_x": grad_x},
              os.path.join(OUT, "helper_lstm_peephole_x2_final.data.safetensors"))

    # Bidirectional: P [2, 3H], forward direction first.
    H = 4
    inits = {"W": arr((2, 4 * H, I)), "R": arr((2, 4 * H, H)), "B": arr((2, 8 * H)), "P": arr((2, 3 * H), 1.0),
             "shape": np.array([0, -1], dtype=np.int64), "V": arr((2, 2 * H)), "a": arr((2,))}
    path = save_graph("helper_bilstm_peephole_final", bidirectional_lstm_nodes(H), inits, [x_input()], ["N", 2])
    (y,) = onnxruntime.InferenceSession(path).run(None, {"x": x})
    save_file({"inputs": x, "outputs": y}, os.path.join(OUT, "helper_bilstm_peephole_final.data.safetensors"))

    # sequence_lens from a graph input, and an all-zero P.
    H = 5
    lengths = np.array([6, 3, 5, 1], dtype=np.int32)
    for name, scale in [("helper_lstm_peephole_lens_input", 1.0), ("helper_lstm_zero_peephole", 0.0)]:
        inits = {"W": arr((1, 4 * H, I)), "R": arr((1, 4 * H, H)), "B": arr((1, 8 * H)), "P": arr((1, 3 * H), 1.0) * scale,
                 "axis0": np.array([0], dtype=np.int64), "V": arr((2, H)), "a": arr((2,))}
        lens = name.endswith("lens_input")
        inputs = [x_input()] + ([helper.make_tensor_value_info("lens", TensorProto.INT32, ["N"])] if lens else [])
        path = save_graph(name, [
            helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
            helper.make_node("LSTM", ["xt", "W", "R", "B", "lens" if lens else "", "", "", "P"], ["Y", "Yh"], hidden_size=H),
            helper.make_node("Squeeze", ["Yh", "axis0"], ["Hn"]),
            helper.make_node("Gemm", ["Hn", "V", "a"], ["y"], transB=1),
        ], inits, inputs, ["N", 2])
        feeds = {"x": x, "lens": lengths} if lens else {"x": x}
        (y,) = onnxruntime.InferenceSession(path).run(None, feeds)
        extra = {"lengths": lengths.astype(np.int64)} if lens else {}
        save_file({"inputs": x, "outputs": y, **extra}, os.path.join(OUT, name + ".data.safetensors"))

    # P computed by the graph: not a weight CellAudit reads.
    inits = {"W": arr((1, 4 * H, I)), "R": arr((1, 4 * H, H)), "B": arr((1, 8 * H)), "axis0": np.array([0], dtype=np.int64),
             "V": arr((2, H)), "a": arr((2,)), "p1": arr((1, 3 * H)), "p2": arr((1, 3 * H))}
    save_graph("refuse_peephole_computed", [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
        helper.make_node("Add", ["p1", "p2"], ["P"]),
        helper.make_node("LSTM", ["xt", "W", "R", "B", "", "", "", "P"], ["Y", "Yh"], hidden_size=H),
        helper.make_node("Squeeze", ["Yh", "axis0"], ["Hn"]),
        helper.make_node("Gemm", ["Hn", "V", "a"], ["y"], transB=1),
    ], inits, [x_input()], ["N", 2])
    # P fed from a graph input: a run-time value, not a weight.
    inits = {"W": arr((1, 4 * H, I)), "R": arr((1, 4 * H, H)), "B": arr((1, 8 * H)), "axis0": np.array([0], dtype=np.int64),
             "V": arr((2, H)), "a": arr((2,))}
    save_graph("refuse_peephole_input", [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
        helper.make_node("LSTM", ["xt", "W", "R", "B", "", "", "", "p"], ["Y", "Yh"], hidden_size=H),
        helper.make_node("Squeeze", ["Yh", "axis0"], ["Hn"]),
        helper.make_node("Gemm", ["Hn", "V", "a"], ["y"], transB=1),
    ], inits, [x_input(), helper.make_tensor_value_info("p", TensorProto.FLOAT, [1, 3 * H])], ["N", 2])
    # A NaN in the reverse direction's P, at file index [1, 7]: gate o (ONNX order i, o, f) of cell 3.
    H = 4
    P = arr((2, 3 * H), 1.0)
    P[1, 7] = np.nan
    inits = {"W": arr((2, 4 * H, I)), "R": arr((2, 4 * H, H)), "B": arr((2, 8 * H)), "P": P,
             "shape": np.array([0, -1], dtype=np.int64), "V": arr((2, 2 * H)), "a": arr((2,))}
    save_graph("refuse_peephole_nan_reverse", bidirectional_lstm_nodes(H), inits, [x_input()], ["N", 2])
    # A GRU with a 7th input (a GRU has no initial_c and no P): invalid ONNX, written unchecked.
    H = 5
    inits = {"W": arr((1, 3 * H, I)), "R": arr((1, 3 * H, H)), "B": arr((1, 6 * H)), "extra": arr((1, 3 * H)),
             "axis0": np.array([0], dtype=np.int64), "V": arr((2, H)), "a": arr((2,))}
    save_graph("refuse_gru_extra_input", [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
        helper.make_node("GRU", ["xt", "W", "R", "B", "", "", "extra"], ["Y", "Yh"], hidden_size=H),
        helper.make_node("Squeeze", ["Yh", "axis0"], ["Hn"]),
        helper.make_node("Gemm", ["Hn", "V", "a"], ["y"], transB=1),
    ], inits, [x_input()], ["N", 2], check=False)
    print("wrote", len(os.listdir(OUT)), "files with onnx", onnx.__version__, "onnxruntime", onnxruntime.__version__,
          "torch", torch.__version__)


if __name__ == "__main__":
    main()
