#!/usr/bin/env python3
"""ONNX graphs with bidirectional recurrent nodes, and onnxruntime's outputs, for CellAudit's ONNX
reader (issue 30, item 3; issue 29, item 1).

Writes Tests/Fixtures/onnx_bidirectional/:
    NAME.onnx               the graph
    NAME.data.safetensors   inputs [4, 6, 3] (batch-major) and outputs: onnxruntime's result

Graphs written by torch.onnx.export (dynamo=False), seeded random weights, batch_first models:
    torch_{lstm,gru,rnn_tanh,rnn_relu}_x{1,2}_{final,last,seq}
        nn.LSTM/GRU/RNN(3, 5, num_layers=1|2, bidirectional=True) and nn.Linear(10, 2) reading
        final: cat(h_n[-2], h_n[-1]); last: output[:, -1]; seq: output at every step.
Graphs written with onnx.helper (opset 17):
    helper_lstm_final          one bidirectional LSTM(4), its Y_h [2, N, H] transposed and
                               reshaped to [N, 8] and read by a Gemm (onnxruntime runs no
                               layout=1 recurrent node, so the batch-major layout is not here)
    helper_gru_lens4           a bidirectional GRU(4, linear_before_reset=0) with a constant
                               sequence_lens of 4 for every sequence, both final states read
    torch_emb_bilstm_final     nn.Embedding(20, 4) → bidirectional nn.LSTM(4, 5) → Linear(10, 2) of
                               cat(h_n[-2], h_n[-1]): a Gather of the table by the int64 token
                               ids [4, 6] (data `inputs` are the ids)
    helper_bigru_lens_input    a bidirectional GRU(4) whose sequence_lens is a graph input `lens`
                               [N]; the data carry `lengths` [4] (6, 3, 5, 1), its final states
                               Y_h read
    helper_bigru_lens_int64    the same with an int64 `lens` input cast to int32 before the GRU
    refuse_lens_input_last_step
                               the same lengths input, but Y read at the last step (which ONNX
                               zeroes past each length): refused
    refuse_top_reverse_only    torch's graph reading h_n[-1] alone (the reverse direction's final
                               state): refused
    refuse_directions_split    a readout that reads Y with its direction axis still apart: refused
    refuse_swapped_final_states
                               torch's graph of cat(h_n[-1], h_n[-2]) (reverse first): refused

    python Tools/make_onnx_bidirectional_fixtures.py
Needs torch, onnx, onnxruntime, numpy and safetensors.
"""
import os
import warnings
import zlib

import numpy as np
import onnx
import onnxruntime
import torch
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import save_file

warnings.filterwarnings("ignore")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "onnx_bidirectional")
RNG = np.random.default_rng(29)


class Bidirectional(torch.nn.Module):
    def __init__(self, cell, layers, read, nonlinearity=None):
        super().__init__()
        extra = {"nonlinearity": nonlinearity} if nonlinearity else {}
        self.rnn = getattr(torch.nn, cell)(3, 5, num_layers=layers, bidirectional=True, batch_first=True, **extra)
        self.fc = torch.nn.Linear(10, 2)
        self.read = read

    def forward(self, x):
        y, h = self.rnn(x)
        if isinstance(h, tuple):
            h = h[0]
        if self.read == "final":
            return self.fc(torch.cat([h[-2], h[-1]], dim=1))
        if self.read == "swapped":
            return self.fc(torch.cat([h[-1], h[-2]], dim=1))
        if self.read == "reverse_only":
            return torch.nn.functional.linear(h[-1], self.fc.weight[:, :5], self.fc.bias)
        if self.read == "seq":
            return self.fc(y)
        return self.fc(y[:, -1])


def record(name, path, x, feeds=None, extra=None):
    (y,) = onnxruntime.InferenceSession(path).run(None, feeds or {"x": x})
    save_file({"inputs": x, "outputs": np.ascontiguousarray(y), **(extra or {})}, os.path.join(OUT, name + ".data.safetensors"))


class EmbeddingBiLSTM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(20, 4)
        self.rnn = torch.nn.LSTM(4, 5, batch_first=True, bidirectional=True)
        self.fc = torch.nn.Linear(10, 2)

    def forward(self, ids):
        _, (h, _) = self.rnn(self.emb(ids))
        return self.fc(torch.cat([h[-2], h[-1]], dim=1))


def torch_graph(name, cell, layers, read, nonlinearity=None):
    torch.manual_seed(zlib.crc32(name.encode()))
    model = Bidirectional(cell, layers, read, nonlinearity).eval()
    path = os.path.join(OUT, name + ".onnx")
    torch.onnx.export(model, torch.randn(2, 6, 3), path, dynamo=False, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "N", 1: "T"}})
    record(name, path, RNG.standard_normal((4, 6, 3)).astype(np.float32))


def w(name, shape):
    return numpy_helper.from_array((RNG.standard_normal(shape) * 0.5).astype(np.float32), name)


def ints(name, values, dtype=np.int64):
    return numpy_helper.from_array(np.array(values, dtype=dtype), name)


def helper_graph(name, nodes, inits, out_shape, x_shape=("N", 6, 3)):
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path = os.path.join(OUT, name + ".onnx")
    onnx.save(model, path)
    record(name, path, RNG.standard_normal((4, 6, 3)).astype(np.float32))


def main():
    os.makedirs(OUT, exist_ok=True)
    for cell, nonlinearity, tag in [("LSTM", None, "lstm"), ("GRU", None, "gru"), ("RNN", "tanh", "rnn_tanh"), ("RNN", "relu", "rnn_relu")]:
        for layers in (1, 2):
            for read in ("final", "last", "seq"):
                torch_graph(f"torch_{tag}_x{layers}_{read}", cell, layers, read, nonlinearity)
    torch_graph("refuse_top_reverse_only", "LSTM", 2, "reverse_only")
    torch.manual_seed(7)
    path = os.path.join(OUT, "torch_emb_bilstm_final.onnx")
    torch.onnx.export(EmbeddingBiLSTM().eval(), torch.randint(0, 20, (2, 6)), path, dynamo=False, input_names=["ids"],
                      output_names=["y"], dynamic_axes={"ids": {0: "N", 1: "T"}})
    ids = RNG.integers(0, 20, (4, 6)).astype(np.int64)
    record("torch_emb_bilstm_final", path, ids, {"ids": ids})

    # Y_h [2, N, 4] → [N, 2, 4] → [N, 8] → Gemm.
    H = 4
    helper_graph("helper_lstm_final", [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
        helper.make_node("LSTM", ["xt", "W", "R", "B"], ["Y", "Yh"], hidden_size=H, direction="bidirectional"),
        helper.make_node("Transpose", ["Yh"], ["Yht"], perm=[1, 0, 2]),
        helper.make_node("Reshape", ["Yht", "shape"], ["H"]),
        helper.make_node("Gemm", ["H", "V", "a"], ["y"], transB=1),
    ], [w("W", (2, 4 * H, 3)), w("R", (2, 4 * H, H)), w("B", (2, 8 * H)), ints("shape", [0, -1]), w("V", (2, 2 * H)), w("a", (2,))],
        ["N", 2])
    # A constant sequence_lens of 4: each sequence runs its first 4 steps; both directions'
    # final states Y_h (the forward one after step 3, the reverse one after step 0) are read.
    helper_graph("helper_gru_lens4", [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
        helper.make_node("GRU", ["xt", "W", "R", "B", "lens"], ["Y", "Yh"], hidden_size=H, direction="bidirectional"),
        helper.make_node("Transpose", ["Yh"], ["Yht"], perm=[1, 0, 2]),
        helper.make_node("Reshape", ["Yht", "shape"], ["H"]),
        helper.make_node("MatMul", ["H", "V"], ["HV"]),
        helper.make_node("Add", ["HV", "a"], ["y"]),
    ], [w("W", (2, 3 * H, 3)), w("R", (2, 3 * H, H)), w("B", (2, 6 * H)), ints("lens", [4, 4, 4, 4], np.int32),
        ints("shape", [0, -1]), w("V", (2 * H, 2)), w("a", (2,))], ["N", 2], x_shape=(4, 6, 3))
    # sequence_lens from a graph input: the data's lengths.
    lengths = np.array([6, 3, 5, 1], dtype=np.int32)
    for name, read_last_step in [("helper_bigru_lens_input", False), ("refuse_lens_input_last_step", True)]:
        if read_last_step:
            head = [helper.make_node("Transpose", ["Y"], ["Yt"], perm=[0, 2, 1, 3]),
                    helper.make_node("Reshape", ["Yt", "shape3"], ["Ym"]),
                    helper.make_node("Gather", ["Ym", "last"], ["H"], axis=0)]
        else:
            head = [helper.make_node("Transpose", ["Yh"], ["Yht"], perm=[1, 0, 2]),
                    helper.make_node("Reshape", ["Yht", "shape"], ["H"])]
        nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
                 helper.make_node("GRU", ["xt", "W", "R", "B", "lens"], ["Y", "Yh"], hidden_size=H, direction="bidirectional",
                                  linear_before_reset=1)] + head + [
                 helper.make_node("MatMul", ["H", "V"], ["HV"]), helper.make_node("Add", ["HV", "a"], ["y"])]
        inits = [w("W", (2, 3 * H, 3)), w("R", (2, 3 * H, H)), w("B", (2, 6 * H)), ints("shape", [0, -1]), ints("shape3", [0, 0, -1]),
                 ints("last", -1), w("V", (2 * H, 2)), w("a", (2,))]
        graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6, 3]),
                                                helper.make_tensor_value_info("lens", TensorProto.INT32, ["N"])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        onnx.checker.check_model(model)
        path = os.path.join(OUT, name + ".onnx")
        onnx.save(model, path)
        x = RNG.standard_normal((4, 6, 3)).astype(np.float32)
        record(name, path, x, {"x": x, "lens": lengths}, {"lengths": lengths.astype(np.int64)})
    # The direction axis never merged: a MatMul over H features per direction.
    helper_graph("refuse_directions_split", [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
        helper.make_node("RNN", ["xt", "W", "R", "B"], ["Y", "Yh"], hidden_size=H, direction="bidirectional"),
        helper.make_node("Transpose", ["Yh"], ["Yht"], perm=[1, 0, 2]),
        helper.make_node("MatMul", ["Yht", "V"], ["y"]),
    ], [w("W", (2, H, 3)), w("R", (2, H, H)), w("B", (2, 2 * H)), w("V", (H, 2))], ["N", 2, 2])
    torch_graph("refuse_swapped_final_states", "LSTM", 1, "swapped")
    # An int64 lengths input, cast to int32 for sequence_lens (as exporters write it).
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
             helper.make_node("Cast", ["lens"], ["lens32"], to=TensorProto.INT32),
             helper.make_node("GRU", ["xt", "W", "R", "B", "lens32"], ["Y", "Yh"], hidden_size=H, direction="bidirectional",
                              linear_before_reset=1),
             helper.make_node("Transpose", ["Yh"], ["Yht"], perm=[1, 0, 2]),
             helper.make_node("Reshape", ["Yht", "shape"], ["H"]),
             helper.make_node("MatMul", ["H", "V"], ["HV"]), helper.make_node("Add", ["HV", "a"], ["y"])]
    inits = [w("W", (2, 3 * H, 3)), w("R", (2, 3 * H, H)), w("B", (2, 6 * H)), ints("shape", [0, -1]), w("V", (2 * H, 2)), w("a", (2,))]
    graph = helper.make_graph(nodes, "helper_bigru_lens_int64", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6, 3]),
                                                                 helper.make_tensor_value_info("lens", TensorProto.INT64, ["N"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path = os.path.join(OUT, "helper_bigru_lens_int64.onnx")
    onnx.save(model, path)
    x = RNG.standard_normal((4, 6, 3)).astype(np.float32)
    lengths64 = np.array([2, 6, 4, 5], dtype=np.int64)
    record("helper_bigru_lens_int64", path, x, {"x": x, "lens": lengths64}, {"lengths": lengths64})
    print("wrote", len(os.listdir(OUT)), "files with torch", torch.__version__, "onnx", onnx.__version__,
          "onnxruntime", onnxruntime.__version__)


if __name__ == "__main__":
    main()
