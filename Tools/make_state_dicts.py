#!/usr/bin/env python3
"""Plain PyTorch state dicts, saved the way users save them, for CellAudit's state-dict import
(issue 16): `safetensors.torch.save_file(model.state_dict(), path)`, no CellAudit metadata.

Writes Tests/Fixtures/state_dicts/:
    NAME.safetensors         the state dict as saved
    NAME.golden.safetensors  inputs [8, 6, I] and PyTorch's outputs on them ([8, K] from the last
                             step, or [8, 6, K] for sequence models), for the tests

Models (seeded, untrained: the import must be exact whatever the weights):
    lstm2_head          nn.LSTM(5, 7, 2) + Linear 'head'            (classification, last step)
    module_gru          the same with a GRU, wrapped in DataParallel's 'module.' prefix
    rnn_relu            nn.RNN(5, 6, nonlinearity='relu') + Linear   (needs --nonlinearity relu)
    lstm_nobias_seq     nn.LSTM(5, 4, bias=False) + Linear at every step (regression)
    two_heads           an LSTM with two Linear readouts of its width (ambiguous: --readout-prefix)
    lstm_proj           nn.LSTM(5, 6, proj_size=3) (refused when made; read since proj_size is folded in)
    extra_tensor        an LSTM + Linear + an unused 'scale' tensor (refused, named)
    lstm_bidirectional  nn.LSTM(5, 4, bidirectional=True) + Linear(8) (refused: '_reverse')

    python Tools/make_state_dicts.py
Needs torch and safetensors.
"""
import os

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "state_dicts")


class Net(torch.nn.Module):
    def __init__(self, rnn, head, sequence=False):
        super().__init__()
        self.rnn, self.head, self.sequence = rnn, head, sequence

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(y if self.sequence else y[:, -1])


def save(name, module, sequence=False, net=None):
    torch.manual_seed(1)
    x = torch.randn(8, 6, 5)
    tensors = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    save_file(tensors, os.path.join(OUT, name + ".safetensors"))
    if net is not None:
        with torch.no_grad():
            save_file({"inputs": x, "outputs": net(x).contiguous()}, os.path.join(OUT, name + ".golden.safetensors"))
    print(name, sorted(tensors))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(16)
    net = Net(torch.nn.LSTM(5, 7, 2, batch_first=True), torch.nn.Linear(7, 3))
    save("lstm2_head", net, net=net)
    gru = Net(torch.nn.GRU(5, 7, 2, batch_first=True), torch.nn.Linear(7, 3))
    save("module_gru", torch.nn.DataParallel(gru), net=gru)
    relu = Net(torch.nn.RNN(5, 6, nonlinearity="relu", batch_first=True), torch.nn.Linear(6, 2))
    save("rnn_relu", relu, net=relu)
    nobias = Net(torch.nn.LSTM(5, 4, bias=False, batch_first=True), torch.nn.Linear(4, 2), sequence=True)
    save("lstm_nobias_seq", nobias, net=nobias)
    two = Net(torch.nn.LSTM(5, 4, batch_first=True), torch.nn.Linear(4, 3))
    two.aux = torch.nn.Linear(4, 2)
    save("two_heads", two, net=two)
    proj = Net(torch.nn.LSTM(5, 6, proj_size=3, batch_first=True), torch.nn.Linear(3, 2))
    save("lstm_proj", proj)
    extra = Net(torch.nn.LSTM(5, 4, batch_first=True), torch.nn.Linear(4, 2))
    extra.scale = torch.nn.Parameter(torch.ones(4))
    save("extra_tensor", extra)
    bidi = Net(torch.nn.LSTM(5, 4, bidirectional=True, batch_first=True), torch.nn.Linear(8, 2))
    save("lstm_bidirectional", bidi)


if __name__ == "__main__":
    main()
