#!/usr/bin/env python3
"""NumPy peer of `cellaudit bench --workload response`: the same decoupled cells (LSTM, GRU or RNN) under the same
default stimulus bank, with the same step and sinusoid metrics, written the way a user would write
them in NumPy: simulate every (cell, stimulus) pair for the whole run at once, keep the whole
trajectory, then compute the metrics vectorised over it.

    python Tools/peer_numpy.py [--cell lstm|gru|rnn_tanh|rnn_relu] [--cells 256] [--window 400] [--repeat 3]
                               [--simulate-only] [--json]

Prints cell-stimulus-steps per second, counting the same steps as CellAudit (each stimulus's own
run length; the peer simulates every pair to the longest run, which it is not charged for).
Random parameters drawn like a PyTorch LSTM layer (U(-1/sqrt(H), 1/sqrt(H))). Needs numpy only.
"""
import argparse
import json
import math
import time

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def default_bank(window, pre=20):
    mags = np.exp(np.linspace(math.log(1 / 16), math.log(4), 16))
    steps = np.concatenate([-mags[::-1], mags]).astype(np.float32)
    freqs = np.exp(np.linspace(math.log(min(2 / window, 0.45)), math.log(0.45), 128)).astype(np.float32)
    kinds, amps, fs = [], [], []
    for a in steps:
        kinds.append(0); amps.append(a); fs.append(0.0)
    for f in freqs:
        for a in (0.25, 0.5, 1.0, 2.0):
            kinds.append(1); amps.append(a); fs.append(f)
    kinds, amps, fs = np.array(kinds), np.array(amps, np.float32), np.array(fs, np.float64)
    onset = pre
    ends, a_start, a_len, harm = [], [], [], []
    tail = max(1, math.ceil(window * 0.05))
    for k, f in zip(kinds, fs):
        if k == 0:
            ends.append(onset + window); a_start.append(onset + window - tail); a_len.append(tail); harm.append(0)
        else:
            period = 1 / float(np.float32(f))
            tr = math.ceil(max(window / 4, 2 * period) - 1e-4)
            periods = max(2, int((window - tr) // period))
            length = int(round(periods * period))
            ends.append(onset + max(window, tr + length)); a_start.append(onset + tr); a_len.append(length)
            harm.append(max(k for k in range(1, 6) if k * f < 0.5))
    return dict(kind=kinds, amp=amps, freq=fs, onset=onset, end=np.array(ends), a_start=np.array(a_start),
                a_len=np.array(a_len), harm=np.array(harm))


def waves(bank):
    T = int(bank["end"].max())
    t = np.arange(T)
    n = t[None, :] - bank["onset"]
    on = (n >= 0)
    phase = 2 * np.pi * bank["freq"][:, None] * n
    wave = np.where(bank["kind"][:, None] == 0, on, on * np.sin(phase)).astype(np.float32)
    quad = (on * np.cos(phase)).astype(np.float32)
    return wave, quad


GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


def simulate(w, r, b, bank, wave, cell="lstm", bhn=None):
    """Trajectory y[T, cells, stimuli] of every decoupled cell under every stimulus (METHOD.md
    section 1: LSTM i, f, g, o; GRU r, z, n with b_hn inside the reset gate; RNN tanh or relu)."""
    T = wave.shape[1]
    cells, stim = w.shape[1], wave.shape[0]
    h = np.zeros((cells, stim), np.float32)
    c = np.zeros((cells, stim), np.float32)
    y = np.empty((T, cells, stim), np.float32)
    u_all = bank["amp"][:, None] * wave  # [stim, T]
    for t in range(T):
        u = u_all[:, t][None, :]
        if cell == "lstm":
            i = sigmoid(w[0][:, None] * u + r[0][:, None] * h + b[0][:, None])
            f = sigmoid(w[1][:, None] * u + r[1][:, None] * h + b[1][:, None])
            g = np.tanh(w[2][:, None] * u + r[2][:, None] * h + b[2][:, None])
            o = sigmoid(w[3][:, None] * u + r[3][:, None] * h + b[3][:, None])
            c = f * c + i * g
            h = o * np.tanh(c)
        elif cell == "gru":
            rg = sigmoid(w[0][:, None] * u + r[0][:, None] * h + b[0][:, None])
            z = sigmoid(w[1][:, None] * u + r[1][:, None] * h + b[1][:, None])
            n = np.tanh(w[2][:, None] * u + b[2][:, None] + rg * (r[2][:, None] * h + bhn[:, None]))
            h = (1 - z) * n + z * h
        else:
            a = w[0][:, None] * u + r[0][:, None] * h + b[0][:, None]
            h = np.tanh(a) if cell == "rnn_tanh" else np.maximum(a, 0)
        y[t] = h
    return y


def step_metrics(y, bank, idx, band_frac=0.02):
    onset, window = bank["onset"], int(bank["end"][idx[0]] - bank["onset"])
    ys = y[:, :, idx]                      # [T, cells, S]
    tail = int(bank["a_len"][idx[0]])
    y0 = ys[onset - 1]
    yw = ys[onset:onset + window]
    final = yw[-tail:].mean(axis=0)
    delta = final - y0
    mag = np.abs(delta)
    ok = mag >= 1e-6
    sign = np.where(delta > 0, 1.0, -1.0).astype(np.float32)
    along = (yw - y0) * sign
    ext = along.max(axis=0)
    peak_idx = np.argmax(along >= ext - 1e-3 * mag, axis=0)
    peak = np.where(sign > 0, yw.max(axis=0), yw.min(axis=0))
    k = np.arange(window)[:, None, None]
    against = np.where(k <= peak_idx, along, np.inf).min(axis=0)

    def crossing(level):
        hit = along >= level
        first = np.argmax(hit, axis=0)
        prev = np.where(first > 0, np.take_along_axis(along, np.maximum(first - 1, 0)[None], 0)[0], 0.0)
        cur = np.take_along_axis(along, first[None], 0)[0]
        span = cur - prev
        frac = np.where(span > 0, (level - prev) / np.where(span > 0, span, 1), 1.0)
        return np.where(hit.any(axis=0), first - 1 + np.clip(frac, 0, 1), np.nan)

    rise = crossing(0.9 * mag) - crossing(0.1 * mag)
    err = yw - final
    outside = np.abs(err) > band_frac * mag
    last = window - 1 - np.argmax(outside[::-1], axis=0)
    settling = np.where(outside.any(axis=0), last + 1, 0)
    sgn = np.where(err > 0, 1, -1) * (outside & (k >= peak_idx))
    nz = sgn != 0
    # Sign changes between consecutive counted samples.
    filled = np.where(nz, sgn, 0)
    prev_sign = np.zeros_like(filled[0]); ringing = np.zeros(filled.shape[1:], np.int32)
    for t in range(window):
        s = filled[t]
        ringing += (s != 0) & (prev_sign != 0) & (s != prev_sign)
        prev_sign = np.where(s != 0, s, prev_sign)
    over = 100 * np.maximum(0, (peak - final) * sign) / mag
    under = 100 * np.maximum(0, -against) / mag
    nan = lambda v: np.where(ok, v, np.nan)
    return dict(y0=y0, y_final=final, gain=delta / bank["amp"][idx], peak=nan(peak), peak_time=nan(peak_idx),
                overshoot_pct=nan(over), undershoot_pct=nan(under), rise_time=nan(rise), settling_time=nan(settling),
                ringing=nan(ringing))


def sine_metrics(y, bank, quad, wave, idx):
    out = {}
    for s in idx:
        a0, L, H = int(bank["a_start"][s]), int(bank["a_len"][s]), int(bank["harm"][s])
        seg = y[a0:a0 + L, :, s]
        c1, s1 = quad[s, a0:a0 + L].astype(np.float64), wave[s, a0:a0 + L].astype(np.float64)
        theta = np.arctan2(s1, c1)
        Y = [None] + [(seg * np.cos(k * theta)[:, None]).sum(0) - 1j * (seg * np.sin(k * theta)[:, None]).sum(0) for k in range(1, H + 1)]
        amp = 2 * np.abs(Y[1]) / L
        out.setdefault("sine_gain", []).append(amp / abs(bank["amp"][s]))
        phi = np.degrees(np.arctan2(Y[1].real, -Y[1].imag))
        out.setdefault("phase_deg", []).append(np.where(amp >= 1e-6, phi, np.nan))
        out.setdefault("dc_shift", []).append(seg.mean(0) - y[bank["onset"] - 1, :, s])
        thd = np.sqrt(sum(np.abs(Y[k]) ** 2 for k in range(2, H + 1))) / np.abs(Y[1]) if H >= 2 else np.full(amp.shape, np.nan)
        out.setdefault("thd", []).append(thd)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", type=int, default=256)
    p.add_argument("--window", type=int, default=400)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--simulate-only", action="store_true")
    p.add_argument("--cell", choices=list(GATES), default="lstm")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rng = np.random.default_rng(2024)
    k = 1 / math.sqrt(args.cells)
    w, r, b = (rng.uniform(-k, k, (GATES[args.cell], args.cells)).astype(np.float32) for _ in range(3))
    bhn = rng.uniform(-k, k, args.cells).astype(np.float32)
    bank = default_bank(args.window)
    wave, quad = waves(bank)
    steps_idx = np.nonzero(bank["kind"] == 0)[0]
    sine_idx = np.nonzero(bank["kind"] == 1)[0]
    work = args.cells * int((bank["end"]).sum())
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        y = simulate(w, r, b, bank, wave, args.cell, bhn)
        if not args.simulate_only:
            step_metrics(y, bank, steps_idx)
            sine_metrics(y, bank, quad, wave, sine_idx)
        times.append(time.perf_counter() - start)
        del y
    median = sorted(times)[len(times) // 2]
    row = dict(peer="numpy" + (" simulate-only" if args.simulate_only else ""), cell=args.cell, cells=args.cells, stimuli=len(bank["amp"]),
               window=args.window, work=work, median_seconds=median, per_second=work / median)
    if args.json:
        print(json.dumps(row))
    else:
        print(f"{row['peer']}: {args.cells} cells x {row['stimuli']} stimuli, window {args.window}: "
              f"{row['per_second']:.3g} cell-stimulus-steps/s ({median:.3f} s)")


if __name__ == "__main__":
    main()
