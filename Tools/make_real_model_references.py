#!/usr/bin/env python3
"""PyTorch's own outputs for the recurrent cores of the real networks Tools/fetch_real_models.sh
downloads, on seeded inputs at the core's input, for the tests of --core (issue 30, item 4).

Writes Tests/Fixtures/real_refs/beatnet_core.safetensors: `inputs` [4, 16, 150] (standard normal,
seed 0: what BeatNet's Linear front end feeds the LSTM) and `targets` [4, 16, 3], the outputs of
BeatNet's own nn.LSTM(150, 150, 2) and nn.Linear(150, 3) head at every step, loaded from its
model_1_weights.pt with torch.load(weights_only=True). The test runs `cellaudit eval --core`
on it: its MSE must be ~0 and its outputs equal these.

    bash Tools/fetch_real_models.sh && python Tools/make_real_model_references.py
Needs torch and safetensors.
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


if __name__ == "__main__":
    main()
