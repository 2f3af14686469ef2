#!/usr/bin/env python3
"""Fixtures for `cellaudit attractors` (docs/METHOD.md §8), written to Tests/Fixtures/dynamics/:

  flipflop3_test.safetensors        3-bit flip-flop test sequences (inputs [64, 200, 3], targets)
  flipflop3_lstm16.safetensors      nn.LSTM(3, 16) + Linear(16, 3), per-step regression
  flipflop3_gru16.safetensors       nn.GRU(3, 16) + Linear(16, 3)
  jacobian_rnn7.safetensors         nn.RNN(2, 7) tanh with zero biases and a random W_hh: the origin
                                    is a fixed point under zero input with Jacobian W_hh

The flip-flop task (Sussillo & Barak 2013): three channels of sparse ±1 pulses; each output holds
the sign of its channel's last pulse. Trained on long sequences (200 steps, pulse probability 0.03,
input noise 0.02) so that each of the 8 memories is an attractor of the autonomous network, not a
slow transient (the 100-step flipflop_* fixtures of Tools/train_fixtures.py keep their bits for
100 steps only: their GRU keeps 4 of the 8 patterns after 5,000 steps without input).

Each flip-flop model carries, as golden tensors computed by PyTorch in float64:
  golden.outputs [64, 200, 3]        the readout on the test sequences
  golden.stable_states [8, D]        the network's resting states, one per bit pattern: the states
                                     the test sequences end in, run 5,000 further steps at zero
                                     input and merged within 1e-6 (D = H, or 2H for (h, c))
  golden.patterns [8, 3]             sign of the readout at each (±1)
and jacobian_rnn7 carries golden.eigenvalues [7, 2] = numpy.linalg.eigvals(W_hh) (real, imag).
Needs torch, numpy and safetensors. Rerun: python3 Tools/make_dynamics_fixtures.py
"""
import argparse
import os
import sys

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_pytorch import export_recurrent  # noqa: E402
import train_fixtures  # noqa: E402


def flipflop(n, steps, rng, p=0.03):
    """Pulses of ±1 with probability p per step and channel; every channel is set at step 0."""
    return train_fixtures.flipflop(n, steps, rng, p=p, set_first=True)


def train(kind, hidden, rng, iterations):
    torch.manual_seed(0)
    rnn = torch.nn.LSTM(3, hidden, batch_first=True) if kind == "lstm" else torch.nn.GRU(3, hidden, batch_first=True)
    fc = torch.nn.Linear(hidden, 3)
    opt = torch.optim.Adam(list(rnn.parameters()) + list(fc.parameters()), lr=3e-3)
    for it in range(iterations):
        x, y = flipflop(64, 200, rng)
        xt = torch.from_numpy(x)
        xt = xt + 0.02 * torch.randn_like(xt)
        out, _ = rnn(xt)
        loss = ((fc(out) - torch.from_numpy(y)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"{kind}{hidden}: training loss {loss.item():.4g}")
    return rnn, fc


def resting_states(rnn, fc, x):
    """States the sequences end in, run 5,000 steps further at zero input (float64), merged."""
    rnn, fc = rnn.double(), fc.double()
    with torch.no_grad():
        _, state = rnn(torch.from_numpy(x).double())
        zeros = torch.zeros(x.shape[0], 5000, 3, dtype=torch.float64)
        out, state = rnn(zeros, state)
        if isinstance(state, tuple):
            s = torch.cat([state[0][0], state[1][0]], 1)
        else:
            s = state[0]
        patterns = torch.sign(fc(out[:, -1]))
    kept, kept_patterns = [], []
    for row, pattern in zip(s, patterns):
        if not any((row - k).norm() < 1e-6 for k in kept):
            kept.append(row)
            kept_patterns.append(pattern)
    order = sorted(range(len(kept)), key=lambda i: tuple(kept_patterns[i].tolist()))
    return (torch.stack([kept[i] for i in order]).numpy(), torch.stack([kept_patterns[i] for i in order]).numpy())


def add_golden(path, tensors):
    from safetensors import safe_open

    with safe_open(path, "np") as f:
        metadata = f.metadata()
    stored = load_file(path)
    stored.update({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()})
    save_file(stored, path, metadata=metadata)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(here, "..", "Tests", "Fixtures", "dynamics"))
    parser.add_argument("--iterations", type=int, default=1500)
    a = parser.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    rng = np.random.default_rng(0)
    tx, ty = flipflop(64, 200, np.random.default_rng(1))
    save_file({"inputs": tx, "targets": ty}, os.path.join(a.out, "flipflop3_test.safetensors"),
              metadata={"task": "regression", "source": "3-bit flip-flop, Tools/make_dynamics_fixtures.py"})
    for kind in ["lstm", "gru"]:
        rnn, fc = train(kind, 16, rng, a.iterations)
        path = os.path.join(a.out, f"flipflop3_{kind}16.safetensors")
        export_recurrent(rnn, fc, path, output="sequence", task="regression")
        with torch.no_grad():
            out, _ = rnn.double()(torch.from_numpy(tx).double())
            outputs = fc.double()(out).numpy()
        states, patterns = resting_states(rnn, fc, tx)
        print(f"{kind}16: {len(states)} resting states, test MSE {((outputs - ty) ** 2).mean():.4g}")
        if len(states) != 8:
            sys.exit(f"{kind}16 has {len(states)} resting states, not 8: train longer (--iterations)")
        add_golden(path, {"golden.outputs": outputs, "golden.stable_states": states, "golden.patterns": patterns})

    torch.manual_seed(7)
    rnn = torch.nn.RNN(2, 7, batch_first=True)
    with torch.no_grad():
        rnn.bias_ih_l0.zero_()
        rnn.bias_hh_l0.zero_()
        rnn.weight_hh_l0.copy_(torch.randn(7, 7) * 1.3 / 7 ** 0.5)
    fc = torch.nn.Linear(7, 2)
    path = os.path.join(a.out, "jacobian_rnn7.safetensors")
    export_recurrent(rnn, fc, path)
    eig = np.linalg.eigvals(rnn.weight_hh_l0.detach().double().numpy())
    add_golden(path, {"golden.eigenvalues": np.stack([eig.real, eig.imag], 1)})
    print(f"jacobian_rnn7: |lambda|max {np.abs(eig).max():.4f}")


if __name__ == "__main__":
    main()
