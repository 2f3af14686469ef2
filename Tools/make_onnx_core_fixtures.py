#!/usr/bin/env python3
"""ONNX graphs of recurrent networks inside bigger models, for `--core` on ONNX files (issue 30,
item 4), exported by torch.onnx.export (dynamo=False) from seeded random weights.

Writes Tests/Fixtures/onnx_core/:
    conv_lstm_linear.onnx      Conv1d(4→6, k=3) + ReLU front end, a 2-layer LSTM(6, 5), a Linear(5, 3)
                               read at every step
    conv_lstm_linear.core.safetensors
                               `inputs` [3, 7, 6] at the LSTM's input (standard normal, seed 0) and
                               `targets` [3, 7, 3]: PyTorch's own LSTM and Linear on them
    conv_bigru_deep_head.onnx  Conv1d front end, a bidirectional GRU(6, 4), then Linear → ReLU →
                               Linear on the last step: a head, so the core has no readout
    lstm_linear_sigmoid.onnx   an LSTM(4, 5) and a Linear(5, 1) followed by a sigmoid: the linear
                               map's outputs are not the model's, so the core has no readout

    python Tools/make_onnx_core_fixtures.py
Needs torch, onnx and safetensors.
"""
import os
import warnings

import torch
from safetensors.torch import save_file

warnings.filterwarnings("ignore")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "onnx_core")


class ConvLSTM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(4, 6, 3, padding=1)
        self.lstm = torch.nn.LSTM(6, 5, num_layers=2, batch_first=True)
        self.fc = torch.nn.Linear(5, 3)

    def forward(self, x):                       # x [N, T, 4]
        z = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        return self.fc(self.lstm(z)[0])


class ConvBiGRUDeepHead(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(4, 6, 3, padding=1)
        self.gru = torch.nn.GRU(6, 4, batch_first=True, bidirectional=True)
        self.fc1 = torch.nn.Linear(8, 8)
        self.fc2 = torch.nn.Linear(8, 2)

    def forward(self, x):
        z = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        return self.fc2(torch.relu(self.fc1(self.gru(z)[0][:, -1])))


class LSTMSigmoid(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(4, 5, batch_first=True)
        self.fc = torch.nn.Linear(5, 1)

    def forward(self, x):
        return torch.sigmoid(self.fc(self.lstm(x)[0][:, -1]))


def export(model, name):
    torch.onnx.export(model.eval(), torch.randn(2, 7, 4), os.path.join(OUT, name + ".onnx"), dynamo=False,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "N", 1: "T"}})


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(30)
    model = ConvLSTM()
    export(model, "conv_lstm_linear")
    x = torch.randn(3, 7, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model.fc(model.lstm(x)[0])
    save_file({"inputs": x.contiguous(), "targets": y.contiguous()}, os.path.join(OUT, "conv_lstm_linear.core.safetensors"))
    export(ConvBiGRUDeepHead(), "conv_bigru_deep_head")
    export(LSTMSigmoid(), "lstm_linear_sigmoid")
    print("wrote", sorted(os.listdir(OUT)), "with torch", torch.__version__)


if __name__ == "__main__":
    main()
