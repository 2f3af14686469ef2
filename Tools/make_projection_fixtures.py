#!/usr/bin/env python3
"""PyTorch LSTMs with an output projection (`proj_size`) and PyTorch's own outputs, for
CellAudit's projection LSTMs (issue 29, item 4).

Writes Tests/Fixtures/projection/:
    NAME.safetensors       the state dict (an nn.LSTM with proj_size, and a Linear head)
    NAME.pt                the same state dict saved with torch.save
    NAME.data.safetensors  inputs [5, 7, 3] and the model's outputs on them:
                           final_states [5, K]  head(h_n[-1]), or head(cat(h_n[-2], h_n[-1])) when bidirectional
                           last_step    [5, K]  head(output[:, -1])
                           sequence     [5, 7, K] head(output) at every step
                           gradient_input [5, 7, 3] gradient × input (torch autograd) of
                                        output 0 of the final_states readout

Models (seeded, untrained), input 3, 6 cells projected to 4:
    proj1 (1 layer), proj2 (2 layers), biproj2 (2 layers, bidirectional), proj1_nobias (bias=False)

    python Tools/make_projection_fixtures.py
Needs torch and safetensors.
"""
import os

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "projection")


def make(name, rnn, k=2):
    directions = 2 if rnn.bidirectional else 1
    head = torch.nn.Linear(directions * rnn.proj_size, k)
    model = torch.nn.ModuleDict({"rnn": rnn, "head": head})
    state = model.state_dict()
    save_file({key: v.contiguous() for key, v in state.items()}, os.path.join(OUT, name + ".safetensors"))
    torch.save(state, os.path.join(OUT, name + ".pt"))
    x = torch.randn(5, 7, rnn.input_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y, (h_n, _) = rnn(x)
        final = torch.cat([h_n[-2], h_n[-1]], dim=1) if directions == 2 else h_n[-1]
        data = {"inputs": x, "final_states": head(final), "last_step": head(y[:, -1]), "sequence": head(y)}
    xg = x.clone().requires_grad_(True)
    _, (h_n, _) = rnn(xg)
    final = torch.cat([h_n[-2], h_n[-1]], dim=1) if directions == 2 else h_n[-1]
    head(final)[:, 0].sum().backward()
    data["gradient_input"] = (xg.grad * x).detach()
    save_file({key: v.contiguous() for key, v in data.items()}, os.path.join(OUT, name + ".data.safetensors"))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    make("proj1", torch.nn.LSTM(3, 6, proj_size=4, batch_first=True))
    make("proj2", torch.nn.LSTM(3, 6, num_layers=2, proj_size=4, batch_first=True), k=3)
    make("biproj2", torch.nn.LSTM(3, 6, num_layers=2, proj_size=4, batch_first=True, bidirectional=True))
    make("proj1_nobias", torch.nn.LSTM(3, 6, proj_size=4, batch_first=True, bias=False))
    print("wrote", sorted(os.listdir(OUT)), "with torch", torch.__version__)


if __name__ == "__main__":
    main()
