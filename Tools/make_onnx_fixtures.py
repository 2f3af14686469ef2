#!/usr/bin/env python3
"""ONNX fixtures for the native ONNX reader (Sources/CellAuditONNX), written to Tests/Fixtures/onnx/:

  {lstm,gru,rnn}{1,2}_{ts,dynamo}.onnx   nn.LSTM / nn.GRU / nn.RNN (tanh), 1 and 2 layers, batch_first,
                                          5 inputs, 6 cells, and nn.Linear(6, 3) on the last step, exported
                                          by both exporters torch offers: the TorchScript one
                                          (torch.onnx.export(..., dynamo=False)) and the dynamo one (needs
                                          onnxscript)
  lstm1_seq_ts.onnx, rnn_relu1_ts.onnx    a readout at every step; a ReLU RNN
  gru1_external.onnx (+ .data)            the GRU saved with its weights as external data
  lstm1_batch_major.onnx                  an LSTM node with layout = 1, built with onnx.helper (onnxruntime
                                          does not run layout = 1: its golden output is onnxruntime's on
                                          lstm1_time_major.onnx, the same weights with layout = 0)
  inputs.safetensors                      inputs [8, 9, 5] and labels [8]
  golden.safetensors                      onnxruntime's output of every model above on the inputs
  refuse_*.onnx                           one model per kind of graph CellAudit must refuse (below)

Refusals made from real framework objects where torch can build them: a bidirectional LSTM, a
Linear before the LSTM, a Softmax after the readout, a readout of step 0, two heads, a readout of
the memory c, the state fed back as initial_h from a graph input. The rest are ONNX nodes torch
never writes, built with onnx.helper from a trained-shape LSTM: clip, input_forget,
non-default activations, a non-zero initial_h constant, sequence_lens, direction reverse; and the
dynamo export of nn.RNN with one unrolled step's weight changed (no longer one recurrent layer).

Needs torch, onnx, onnxruntime, onnxscript and safetensors.  python3 Tools/make_onnx_fixtures.py
"""
import os
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import helper, numpy_helper, TensorProto
from safetensors.numpy import save_file

warnings.filterwarnings("ignore")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "onnx")
I, H, K, N, T = 5, 6, 3, 8, 9


class Net(torch.nn.Module):
    def __init__(self, kind, layers, step="last", nonlinearity="tanh", bidirectional=False):
        super().__init__()
        if kind == "lstm":
            self.rnn = torch.nn.LSTM(I, H, num_layers=layers, batch_first=True, bidirectional=bidirectional)
        elif kind == "gru":
            self.rnn = torch.nn.GRU(I, H, num_layers=layers, batch_first=True)
        else:
            self.rnn = torch.nn.RNN(I, H, num_layers=layers, batch_first=True, nonlinearity=nonlinearity)
        self.fc = torch.nn.Linear(H * (2 if bidirectional else 1), K)
        self.step = step

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.fc(y if self.step == "sequence" else y[:, 0] if self.step == "first" else y[:, -1])


class LastState(Net):
    """fc(h_n[-1]): the readout on the top layer's last state, as tutorials write it."""
    def forward(self, x):
        _, state = self.rnn(x)
        h = state[0] if isinstance(state, tuple) else state
        return self.fc(h[-1])


class ProjectionFirst(Net):
    def __init__(self):
        super().__init__("lstm", 1)
        self.proj = torch.nn.Linear(I, I)

    def forward(self, x):
        y, _ = self.rnn(self.proj(x))
        return self.fc(y[:, -1])


class SoftmaxAfter(Net):
    def forward(self, x):
        return torch.softmax(super().forward(x), -1)


class TwoHeads(Net):
    def __init__(self):
        super().__init__("lstm", 1)
        self.head2 = torch.nn.Linear(H, 2)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.fc(y[:, -1]), self.head2(y[:, -1])


class ReadsMemory(Net):
    def forward(self, x):
        _, (h, c) = self.rnn(x)
        return self.fc(c[-1])


class StateInput(Net):
    def forward(self, x, h0, c0):
        y, _ = self.rnn(x, (h0, c0))
        return self.fc(y[:, -1])


def export(net, path, exporter, args=None, names=("x",)):
    net.eval()
    args = args or (torch.randn(N, T, I),)
    if exporter == "ts":
        torch.onnx.export(net, args, path, dynamo=False, input_names=list(names), output_names=["y"],
                          dynamic_axes={"x": {0: "N", 1: "T"}})
    else:
        torch.onnx.export(net, args, path, dynamo=True, input_names=list(names), output_names=["y"],
                          dynamic_shapes=({0: torch.export.Dim("N"), 1: torch.export.Dim("T", min=2)},) + (None,) * (len(args) - 1))


def run(path, x):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def lstm_node_model(path, **changes):
    """A hand-built graph: Transpose -> LSTM -> Squeeze -> Gather(last) -> Gemm, with changes to
    the LSTM's attributes or extra inputs (peepholes, initial_h, sequence_lens)."""
    rng = np.random.default_rng(3)
    W = rng.uniform(-0.4, 0.4, (1, 4 * H, I)).astype(np.float32)
    R = rng.uniform(-0.4, 0.4, (1, 4 * H, H)).astype(np.float32)
    B = rng.uniform(-0.4, 0.4, (1, 8 * H)).astype(np.float32)
    V = rng.uniform(-0.4, 0.4, (K, H)).astype(np.float32)
    a = rng.uniform(-0.4, 0.4, changes.pop("bias_shape", (K,))).astype(np.float32)
    batch_major = changes.pop("layout", 0) == 1
    inits = [numpy_helper.from_array(t, n) for t, n in [(W, "W"), (R, "R"), (B, "B"), (V, "V"), (a, "a"),
                                                        (np.array(-1, np.int64), "last"), (np.array([1], np.int64), "dir_axis")]]
    inputs = ["x_tm" if not batch_major else "x", "W", "R", "B"]
    extra = changes.pop("extra_inputs", {})
    for k, (name, value) in sorted(extra.items()):
        while len(inputs) < k:
            inputs.append("")
        inputs.append(name)
        inits.append(numpy_helper.from_array(value, name))
    attrs = {"hidden_size": H}
    attrs.update(changes)
    nodes = ([] if batch_major else [helper.make_node("Transpose", ["x"], ["x_tm"], perm=[1, 0, 2])]) + [
        helper.make_node("LSTM", inputs, ["Y"], name="lstm", layout=1 if batch_major else 0, **attrs),
        helper.make_node("Squeeze", ["Y", "dir_axis2" if batch_major else "dir_axis"], ["Y3"]),
        helper.make_node("Gather", ["Y3", "last"], ["h_last"], axis=0 if not batch_major else 1),
        helper.make_node("Gemm", ["h_last", "V", "a"], ["y"], transB=1),
    ]
    if batch_major:
        inits = [t for t in inits if t.name != "dir_axis"] + [numpy_helper.from_array(np.array([2], np.int64), "dir_axis2")]
    graph = helper.make_graph(nodes, "lstm_node", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T", I])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", K])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)


def review_cases(out):
    """Graphs a review found read wrong or refused wrongly, kept as tests: a static-shape dynamo
    export of each kind and fc(h_n[-1]) of 2-layer stacks from both exporters (to read), and a Gemm bias of shape [K, 1], a Cast to float16, an unrolled
    RNN shorter than its input and a Reshape whose symbolic sizes only match by name (to refuse)."""
    golden = {}
    x = np.random.default_rng(0).standard_normal((N, T, I)).astype(np.float32)
    for kind in ["lstm", "gru", "rnn"]:
        torch.manual_seed(1)
        net = Net(kind, 2).eval()
        path = os.path.join(out, f"{kind}2_dynamo_static.onnx")
        torch.onnx.export(net, (torch.from_numpy(x),), path, dynamo=True, input_names=["x"], output_names=["y"])
        golden[f"{kind}2_dynamo_static"] = run(path, x)
    for kind in ["lstm", "gru"]:
        torch.manual_seed(2)
        net = LastState(kind, 2)
        for exporter in ["ts", "dynamo"]:
            name = f"{kind}2_last_state_{exporter}"
            export(net, os.path.join(out, name + ".onnx"), exporter)
            golden[name] = run(os.path.join(out, name + ".onnx"), x)
    lstm_node_model(os.path.join(out, "refuse_bias_column.onnx"), bias_shape=(K, 1))
    model = onnx.load(os.path.join(out, "lstm1_time_major.onnx"))
    transpose = model.graph.node[0]
    transpose.output[0] = "x_tm_f"
    model.graph.node.insert(1, helper.make_node("Cast", ["x_tm_f"], ["x_tm_h"], name="to_half", to=TensorProto.FLOAT16))
    model.graph.node.insert(2, helper.make_node("Cast", ["x_tm_h"], ["x_tm"], name="to_float", to=TensorProto.FLOAT))
    onnx.save(model, os.path.join(out, "refuse_cast_half.onnx"))
    model = onnx.load(os.path.join(out, "rnn1_dynamo.onnx"))
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = T + 2
    onnx.save(model, os.path.join(out, "refuse_unrolled_short.onnx"), save_as_external_data=False)
    # Input [N, T, I] whose axes are named 'time' and 'batch' the wrong way round; after the LSTM,
    # a Reshape [T, N, H] -> Shape(x)[0:2] + [H], a real reshape that scrambles the data.
    rng = np.random.default_rng(4)
    inits = [numpy_helper.from_array(rng.uniform(-0.4, 0.4, s).astype(np.float32), n) for n, s in
             [("W", (1, 4 * H, I)), ("R", (1, 4 * H, H)), ("V", (H, K))]]
    inits += [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in [("ax1", [1]), ("s0", [0]), ("s2", [2]), ("hh", [H])]]
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
             helper.make_node("LSTM", ["xt", "W", "R"], ["Y"], name="lstm", hidden_size=H),
             helper.make_node("Squeeze", ["Y", "ax1"], ["Ys"]), helper.make_node("Shape", ["x"], ["sx"]),
             helper.make_node("Slice", ["sx", "s0", "s2"], ["nt"]), helper.make_node("Concat", ["nt", "hh"], ["shp"], axis=0),
             helper.make_node("Reshape", ["Ys", "shp"], ["Yr"], name="scramble"), helper.make_node("MatMul", ["Yr", "V"], ["y"])]
    graph = helper.make_graph(nodes, "swapped_names", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["time", "batch", I])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), os.path.join(out, "refuse_swapped_names.onnx"))
    huge_dims(out)
    return golden


def huge_dims(out):
    """Constants whose dimensions multiply past any memory (2^62 × 8 values): the Squeeze axes
    and the Gather index of the readout. A fuzz finding, read as a clean refusal rather than an
    integer overflow."""
    model = onnx.load(os.path.join(out, "lstm1_time_major.onnx"))
    for t in model.graph.initializer:
        if t.name in ("dir_axis", "last"):
            del t.dims[:]
            t.dims.extend([2 ** 62, 8])
    onnx.save(model, os.path.join(out, "refuse_huge_dims.onnx"))


def untied_unrolled(source, path):
    """The dynamo export of nn.RNN (unrolled over its steps) with one step's recurrent weight
    replaced by another matrix: no longer one recurrent layer, so it must be refused."""
    model = onnx.load(source)
    steps = [n for n in model.graph.node if n.op_type == "MatMul" and n.input[0].startswith("tanh")]
    weight = next(t for t in model.graph.initializer if t.name == steps[2].input[1])
    other = numpy_helper.to_array(weight) * 0.5
    model.graph.initializer.append(numpy_helper.from_array(other.astype(np.float32), weight.name + "_untied"))
    steps[2].input[1] = weight.name + "_untied"
    onnx.save(model, path, save_as_external_data=False)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((N, T, I)).astype(np.float32)
    save_file({"inputs": x, "labels": np.zeros(N, np.int64)}, os.path.join(OUT, "inputs.safetensors"),
              metadata={"source": "Tools/make_onnx_fixtures.py"})
    golden = {}
    for kind in ["lstm", "gru", "rnn"]:
        for layers in [1, 2]:
            net = Net(kind, layers)
            for exporter in ["ts", "dynamo"]:
                name = f"{kind}{layers}_{exporter}"
                export(net, os.path.join(OUT, name + ".onnx"), exporter)
                golden[name] = run(os.path.join(OUT, name + ".onnx"), x)
    for name, net in [("lstm1_seq_ts", Net("lstm", 1, step="sequence")), ("rnn_relu1_ts", Net("rnn", 1, nonlinearity="relu"))]:
        export(net, os.path.join(OUT, name + ".onnx"), "ts")
        golden[name] = run(os.path.join(OUT, name + ".onnx"), x)
    # External data: the GRU's weights in a file beside the graph.
    model = onnx.load(os.path.join(OUT, "gru1_ts.onnx"))
    onnx.save(model, os.path.join(OUT, "gru1_external.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="gru1_external.data", size_threshold=0)
    golden["gru1_external"] = run(os.path.join(OUT, "gru1_external.onnx"), x)
    # onnxruntime does not run layout = 1: its reference is the same weights in a layout-0 graph.
    lstm_node_model(os.path.join(OUT, "lstm1_batch_major.onnx"), layout=1)
    lstm_node_model(os.path.join(OUT, "lstm1_time_major.onnx"))
    golden["lstm1_batch_major"] = run(os.path.join(OUT, "lstm1_time_major.onnx"), x)
    golden["lstm1_time_major"] = golden["lstm1_batch_major"]
    golden.update(review_cases(OUT))
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in golden.items()}, os.path.join(OUT, "golden.safetensors"))

    # Refusals from torch (the bidirectional one, and refuse_reverse, are read since the ONNX
    # reader follows directions; Tools/make_onnx_bidirectional_fixtures.py checks their numbers).
    export(Net("lstm", 1, bidirectional=True), os.path.join(OUT, "refuse_bidirectional.onnx"), "ts")
    export(ProjectionFirst(), os.path.join(OUT, "refuse_op_before.onnx"), "ts")
    export(SoftmaxAfter("lstm", 1), os.path.join(OUT, "refuse_softmax_after.onnx"), "ts")
    export(Net("lstm", 1, step="first"), os.path.join(OUT, "refuse_first_step.onnx"), "ts")
    export(TwoHeads(), os.path.join(OUT, "refuse_two_heads.onnx"), "ts")
    export(ReadsMemory("lstm", 1), os.path.join(OUT, "refuse_reads_memory.onnx"), "ts")
    h0 = torch.zeros(1, N, H)
    export(StateInput("lstm", 1), os.path.join(OUT, "refuse_state_input.onnx"), "ts", args=(torch.randn(N, T, I), h0, h0),
           names=("x", "h0", "c0"))
    # Refusals of ONNX features torch never writes.
    # Peepholes P are read (they once were refused; Tools/make_onnx_peephole_fixtures.py checks them against onnxruntime).
    lstm_node_model(os.path.join(OUT, "lstm_peepholes.onnx"), extra_inputs={7: ("P", np.full((1, 3 * H), 0.1, np.float32))})
    lstm_node_model(os.path.join(OUT, "refuse_clip.onnx"), clip=2.0)
    lstm_node_model(os.path.join(OUT, "refuse_input_forget.onnx"), input_forget=1)
    lstm_node_model(os.path.join(OUT, "refuse_activations.onnx"), activations=["Sigmoid", "Relu", "Tanh"])
    lstm_node_model(os.path.join(OUT, "refuse_initial_h.onnx"), extra_inputs={5: ("h0", np.full((1, N, H), 0.5, np.float32))})
    lstm_node_model(os.path.join(OUT, "refuse_sequence_lens.onnx"), extra_inputs={4: ("lens", np.full((N,), T, np.int32))})
    lstm_node_model(os.path.join(OUT, "refuse_reverse.onnx"), direction="reverse")
    untied_unrolled(os.path.join(OUT, "rnn1_dynamo.onnx"), os.path.join(OUT, "refuse_unrolled_untied.onnx"))
    for f in sorted(os.listdir(OUT)):
        print(f"{f}: {os.path.getsize(os.path.join(OUT, f))} bytes")


if __name__ == "__main__":
    main()
