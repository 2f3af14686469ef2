#!/usr/bin/env python3
"""Padded batches with lengths and PyTorch's packed-sequence outputs, for CellAudit's variable
lengths (issue 29, item 3).

Writes Tests/Fixtures/lengths/:
    NAME.safetensors        the state dict ('rnn.', 'head.')
    NAME.data.safetensors   inputs [6, 9, 3] (padding filled with large random values, so any
                            padding that entered a state would show), lengths [6], and:
        final_states [6, K]   head(cat(h_n[-2], h_n[-1])) (bidirectional) or head(h_n[-1]), of
                              rnn(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        last_step [6, K]      head(output[n, lengths[n] - 1]) of pad_packed_sequence(output)
        sequence [6, 9, K]    head(output) at every step (padding: head(0), the bias)
        target [6]            argmax of final_states
        gradient_input [6, 9, 3]  x · ∂ final_states[n, target[n]] / ∂x (autograd; 0 at padding)

Models (seeded, untrained): lstm_bi2 (2-layer bidirectional LSTM), gru1 (1-layer GRU),
rnn_bi1 (bidirectional tanh RNN).

    python Tools/make_length_fixtures.py
Needs torch and safetensors.
"""
import os

import torch
from safetensors.torch import save_file
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "lengths")
LENGTHS = torch.tensor([9, 4, 1, 7, 9, 4])


def make(name, rnn, k=3):
    directions = 2 if rnn.bidirectional else 1
    head = torch.nn.Linear(directions * rnn.hidden_size, k)
    model = torch.nn.ModuleDict({"rnn": rnn, "head": head})
    save_file({key: v.contiguous() for key, v in model.state_dict().items()}, os.path.join(OUT, name + ".safetensors"))
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 9, rnn.input_size, generator=g)
    for n, length in enumerate(LENGTHS.tolist()):
        x[n, length:] = 50 * torch.randn(9 - length, rnn.input_size, generator=g)
    x.requires_grad_(True)

    def run(x):
        packed = pack_padded_sequence(x, LENGTHS, batch_first=True, enforce_sorted=False)
        out, h_n = rnn(packed)
        if isinstance(h_n, tuple):
            h_n = h_n[0]
        y, _ = pad_packed_sequence(out, batch_first=True, total_length=9)
        final = torch.cat([h_n[-2], h_n[-1]], dim=1) if directions == 2 else h_n[-1]
        return head(final), head(y[torch.arange(6), LENGTHS - 1]), head(y)

    final, last, sequence = run(x)
    target = final.argmax(dim=1)
    chosen = final[torch.arange(6), target].sum()
    (grad,) = torch.autograd.grad(chosen, x)
    data = {"inputs": x.detach(), "lengths": LENGTHS, "final_states": final.detach(), "last_step": last.detach(),
            "sequence": sequence.detach(), "target": target, "gradient_input": (grad * x).detach()}
    save_file({key: v.contiguous() for key, v in data.items()}, os.path.join(OUT, name + ".data.safetensors"))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    make("lstm_bi2", torch.nn.LSTM(3, 4, num_layers=2, batch_first=True, bidirectional=True))
    make("gru1", torch.nn.GRU(3, 5, batch_first=True))
    make("rnn_bi1", torch.nn.RNN(3, 4, batch_first=True, bidirectional=True))
    print("wrote", sorted(os.listdir(OUT)), "with torch", torch.__version__)


if __name__ == "__main__":
    main()
