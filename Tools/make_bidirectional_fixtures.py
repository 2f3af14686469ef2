#!/usr/bin/env python3
"""Bidirectional PyTorch networks and PyTorch's own outputs, for CellAudit's bidirectional
layers (issue 29, item 1).

Writes Tests/Fixtures/bidirectional/:
    NAME.safetensors       the state dict (safetensors.torch.save_file(model.state_dict(), …))
    NAME.pt                the same state dict saved with torch.save
    NAME.data.safetensors  inputs [5, 7, 3] and the model's outputs on them:
                           final_states [5, K]  head(cat(h_n[-2], h_n[-1]))
                           last_step    [5, K]  head(output[:, -1])
                           sequence     [5, 7, K] head(output) at every step
                           hidden       [5, 7, 2H] the last layer's output (both directions)

Models (seeded, untrained: reading must be exact whatever the weights), bidirectional=True:
    lstm1, lstm2 (2 layers), gru1, gru2, rnn_tanh2, rnn_relu1

    python Tools/make_bidirectional_fixtures.py
Needs torch and safetensors.
"""
import os

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "bidirectional")


def make(name, rnn, k=2):
    head = torch.nn.Linear(2 * rnn.hidden_size, k)
    model = torch.nn.ModuleDict({"rnn": rnn, "head": head})
    state = model.state_dict()
    save_file({key: v.contiguous() for key, v in state.items()}, os.path.join(OUT, name + ".safetensors"))
    torch.save(state, os.path.join(OUT, name + ".pt"))
    x = torch.randn(5, 7, rnn.input_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y, h_n = rnn(x)
        if isinstance(h_n, tuple):
            h_n = h_n[0]
        data = {
            "inputs": x,
            "final_states": head(torch.cat([h_n[-2], h_n[-1]], dim=1)),
            "last_step": head(y[:, -1]),
            "sequence": head(y),
            "hidden": y,
        }
    save_file({key: v.contiguous() for key, v in data.items()}, os.path.join(OUT, name + ".data.safetensors"))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    make("lstm1", torch.nn.LSTM(3, 4, batch_first=True, bidirectional=True))
    make("lstm2", torch.nn.LSTM(3, 5, num_layers=2, batch_first=True, bidirectional=True), k=3)
    make("gru1", torch.nn.GRU(3, 4, batch_first=True, bidirectional=True))
    make("gru2", torch.nn.GRU(3, 4, num_layers=2, batch_first=True, bidirectional=True))
    make("rnn_tanh2", torch.nn.RNN(3, 4, num_layers=2, batch_first=True, bidirectional=True))
    make("rnn_relu1", torch.nn.RNN(3, 4, nonlinearity="relu", batch_first=True, bidirectional=True))
    print("wrote", sorted(os.listdir(OUT)), "with torch", torch.__version__)


if __name__ == "__main__":
    main()
