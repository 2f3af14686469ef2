#!/usr/bin/env python3
"""PyTorch's own outputs for the recurrent cores of the real networks Tools/fetch_real_models.sh
downloads, on seeded inputs at the core's input, for the tests of --core (issue 30, item 4).

Writes Tests/Fixtures/real_refs/beatnet_core.safetensors: `inputs` [4, 16, 150] (standard normal,
seed 0: what BeatNet's Linear front end feeds the LSTM) and `targets` [4, 16, 3], the outputs of
BeatNet's own nn.LSTM(150, 150, 2) and nn.Linear(150, 3) head at every step, loaded from its
model_1_weights.pt with torch.load(weights_only=True). The test runs `cellaudit eval --core`
on it: its MSE must be ~0 and its outputs equal these.

Writes Tests/Fixtures/real_refs/silero_vad_core.safetensors: `inputs` [3, 12, 128] (|standard
normal|, seed 1: non-negative, as the ReLU before silero-vad's LSTM makes them) and `hidden`
[3, 12, 128], the LSTM node's output Y at every step as onnxruntime computes it from the zero
state: the node is cut out of silero_vad_16k_sequence.onnx with its own weights into a graph of
its own. The test reads the file with --core and compares its top layer's states.

    bash Tools/fetch_real_models.sh && python Tools/make_real_model_references.py
Needs torch, safetensors, onnx, onnxruntime and numpy.
"""
import os

import torch
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def main():
    state = torch.load(os.path.join(ROOT, "Tests", "Fixtures", "real", "beatnet_model_1_weights.pt"), weights_only=True)
    lstm = torch.nn.LSTM(150, 150, num_layers=2, batch_first=True)
    lstm.load_state_dict({k[len("lstm."):]: v for k, v in state.items() if k.startswith("lstm.")})
    head = torch.nn.Linear(150, 3)
    head.load_state_dict({k[len("linear."):]: v for k, v in state.items() if k.startswith("linear.")})
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 16, 150, generator=g)
    with torch.no_grad():
        y = head(lstm(x)[0])
    out = os.path.join(ROOT, "Tests", "Fixtures", "real_refs")
    os.makedirs(out, exist_ok=True)
    save_file({"inputs": x.contiguous(), "targets": y.contiguous()}, os.path.join(out, "beatnet_core.safetensors"))
    print("wrote beatnet_core.safetensors with torch", torch.__version__)
    silero(out)


def silero(out):
    import numpy as np
    import onnx
    import onnxruntime
    from onnx import helper
    from safetensors.numpy import save_file as save_numpy

    model = onnx.load(os.path.join(ROOT, "Tests", "Fixtures", "real", "silero_vad_16k_sequence.onnx"))
    (node,) = [n for n in model.graph.node if n.op_type == "LSTM"]
    weights = [t for t in model.graph.initializer if t.name in node.input[1:4]]
    lstm = helper.make_node("LSTM", ["x", *node.input[1:4]], ["Y"], hidden_size=128)
    graph = helper.make_graph([helper.make_node("Transpose", ["xb"], ["x"], perm=[1, 0, 2]), lstm,
                               helper.make_node("Squeeze", ["Y", "one"], ["Ys"]),
                               helper.make_node("Transpose", ["Ys"], ["hidden"], perm=[1, 0, 2])], "silero_core",
                              [helper.make_tensor_value_info("xb", onnx.TensorProto.FLOAT, [3, 12, 128])],
                              [helper.make_tensor_value_info("hidden", onnx.TensorProto.FLOAT, [3, 12, 128])],
                              weights + [onnx.numpy_helper.from_array(np.array([1], dtype=np.int64), "one")])
    core = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.abs(np.random.default_rng(1).standard_normal((3, 12, 128))).astype(np.float32)
    (hidden,) = onnxruntime.InferenceSession(core.SerializeToString()).run(None, {"xb": x})
    save_numpy({"inputs": x, "hidden": np.ascontiguousarray(hidden)}, os.path.join(out, "silero_vad_core.safetensors"))
    print("wrote silero_vad_core.safetensors with onnxruntime", onnxruntime.__version__)


if __name__ == "__main__":
    main()
