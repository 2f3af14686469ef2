#!/usr/bin/env python3
"""State dicts saved with torch.save, as most PyTorch users save them, for CellAudit's native
.pt reader (issue 30, item 1). Each readable file has a twin saved with safetensors from the
same tensors: the tests require the two routes to give the same network, bit for bit.

Writes Tests/Fixtures/torch/:
    lstm2_f32.pt / .safetensors     nn.LSTM(3, 5, 2) + Linear 'head' (4 outputs), float32
    gru_f16.pt / .safetensors       nn.GRU(3, 4) + Linear, converted to float16
    rnn_bf16.pt / .safetensors      nn.RNN(3, 4) (tanh) + Linear, converted to bfloat16
    lstm_f64.pt / .safetensors      nn.LSTM(3, 4) + Linear, float64
    views.pt / views.safetensors    the LSTM of lstm2_f32 with non-contiguous views: a transposed
                                    weight, biases that are slices at offsets of one shared storage
    checkpoint.pt                   {"epoch": 7, "model": state dict, "lr": 0.001}: a training
                                    checkpoint (read from its "model" entry; same twin as lstm2_f32)
    parameters.pt                   dict(model.named_parameters()): nn.Parameter tensors
                                    (torch._utils._rebuild_parameter; same twin as lstm2_f32)
    whole_module.pt                 torch.save(model): a pickled nn.Module (refused by its global)
    legacy.pt                       torch.save(..., _use_new_zipfile_serialization=False): the
                                    pre-1.6 format (refused: re-save with a current torch)
    os_system.pt                    a torch.save archive whose data.pkl calls os.system (refused
                                    by name, never run)
    front_deep_head.pt              a bigger model: Conv1d + Linear front end, nn.LSTM(3, 4), then
                                    Linear(4, 6) → ReLU → Linear(6, 2); --core reads the LSTM and
                                    no readout (the first Linear's outputs feed another layer)
    conv_head.pt / conv_head.safetensors
                                    nn.LSTM(3, 4) read by a 1×1 nn.Conv1d(4, 2, 1) at every step;
                                    the twin holds the same map as a Linear 'head'

    python Tools/make_torch_fixtures.py
Needs torch and safetensors (pip install torch safetensors); the files are small and committed.
"""
import io
import os
import pickle
import zipfile

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "torch")


class Net(torch.nn.Module):
    def __init__(self, rnn, head):
        super().__init__()
        self.rnn, self.head = rnn, head

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(y[:, -1])


def twin(name, state):
    """Saves `state` with torch.save and its contiguous copy with safetensors."""
    torch.save(state, os.path.join(OUT, name + ".pt"))
    save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, os.path.join(OUT, name + ".safetensors"))


class Evil:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    lstm = Net(torch.nn.LSTM(3, 5, num_layers=2, batch_first=True), torch.nn.Linear(5, 4))
    twin("lstm2_f32", lstm.state_dict())
    twin("gru_f16", Net(torch.nn.GRU(3, 4, batch_first=True), torch.nn.Linear(4, 2)).half().state_dict())
    twin("rnn_bf16", Net(torch.nn.RNN(3, 4, batch_first=True), torch.nn.Linear(4, 2)).to(torch.bfloat16).state_dict())
    twin("lstm_f64", Net(torch.nn.LSTM(3, 4, batch_first=True), torch.nn.Linear(4, 3)).double().state_dict())

    # Views: the same values as lstm2_f32, stored non-contiguously.
    views = dict(lstm.state_dict())
    w = views["rnn.weight_ih_l0"]                       # [20, 3]
    views["rnn.weight_ih_l0"] = w.t().contiguous().t()  # same values, strides (1, 20)
    shared = torch.cat([torch.zeros(3), views["rnn.bias_ih_l0"], views["rnn.bias_hh_l0"], torch.zeros(2)])
    views["rnn.bias_ih_l0"] = shared[3:23]              # offset 3 into one storage
    views["rnn.bias_hh_l0"] = shared[23:43]             # offset 23 into the same storage
    views["rnn.weight_hh_l1"] = torch.stack([views["rnn.weight_hh_l1"], torch.zeros(20, 5)], dim=2)[:, :, 0]  # stride 2
    assert not views["rnn.weight_ih_l0"].is_contiguous() and not views["rnn.weight_hh_l1"].is_contiguous()
    twin("views", views)

    torch.save({"epoch": 7, "model": lstm.state_dict(), "lr": 0.001}, os.path.join(OUT, "checkpoint.pt"))
    torch.save(dict(lstm.named_parameters()), os.path.join(OUT, "parameters.pt"))
    torch.save(lstm, os.path.join(OUT, "whole_module.pt"))
    torch.save(lstm.state_dict(), os.path.join(OUT, "legacy.pt"), _use_new_zipfile_serialization=False)

    # Bigger models for --core.
    front = torch.nn.ModuleDict({"conv1": torch.nn.Conv1d(1, 2, 3), "linear0": torch.nn.Linear(6, 3),
                                 "lstm": torch.nn.LSTM(3, 4, batch_first=True), "fc1": torch.nn.Linear(4, 6),
                                 "fc2": torch.nn.Linear(6, 2)})
    torch.save(front.state_dict(), os.path.join(OUT, "front_deep_head.pt"))
    conv = torch.nn.ModuleDict({"lstm": torch.nn.LSTM(3, 4, batch_first=True), "head": torch.nn.Conv1d(4, 2, 1)})
    torch.save(conv.state_dict(), os.path.join(OUT, "conv_head.pt"))
    flat = {k: v.clone() for k, v in conv.state_dict().items()}
    flat["head.weight"] = flat["head.weight"][:, :, 0].contiguous()
    save_file(flat, os.path.join(OUT, "conv_head.safetensors"))

    # A hostile archive: torch.save's layout, but data.pkl reduces os.system.
    with zipfile.ZipFile(os.path.join(OUT, "os_system.pt"), "w", zipfile.ZIP_STORED) as z:
        z.writestr("os_system/data.pkl", pickle.dumps({"rnn.weight_ih_l0": Evil()}, protocol=2))
        z.writestr("os_system/byteorder", "little")
        z.writestr("os_system/version", "3\n")
    print("wrote", sorted(os.listdir(OUT)), "with torch", torch.__version__)


if __name__ == "__main__":
    main()
