#!/usr/bin/env python3
"""Fits the rational tanh used by both backends and reports its Float32 accuracy.

    python3 Tools/fit_tanh.py            # needs only NumPy

tanh(x) is approximated on [-L, L] (L = 9.5, beyond which tanh rounds to +-1 in Float32) as

    tanh(x) ~ x * P(x^2) / Q(x^2),   deg P = 6, deg Q = 3, Q(0) = 1,

which is odd by construction and keeps its relative accuracy near 0. The coefficients minimise
the maximum relative error: a linearised least-squares fit (P - f Q = 0 with f = tanh(x)/x),
re-weighted by the current error after each round (Lawson's iteration), in the scaled variable
s = (x / L)^2 for conditioning. The script prints the Float32 coefficients in the order they
appear in Sources/CellAuditCore/VectorMath.swift and Kernels/cell_math.h (highest power first),
then evaluates Horner's scheme in Float32, fused and unfused, against tanh in Float64.
"""
import numpy as np

LIMIT = 9.5
DEG_P, DEG_Q = 7, 4          # number of coefficients


def fit():
    x = np.sort(np.concatenate([np.linspace(0, LIMIT, 40001)[1:], np.geomspace(1e-5, 0.2, 2000)]))
    f = np.tanh(x) / x
    s = (x / LIMIT) ** 2
    weights = np.ones_like(x)
    q_values = np.ones_like(x)
    best = (np.inf, None, None)
    for _ in range(2000):
        a = np.hstack([s[:, None] ** np.arange(DEG_P), -f[:, None] * s[:, None] ** np.arange(1, DEG_Q)])
        w = weights / (f * q_values)
        sol, *_ = np.linalg.lstsq(a * w[:, None], f * w, rcond=None)
        p, q = sol[:DEG_P], np.concatenate([[1.0], sol[DEG_P:]])
        q_values = np.polyval(q[::-1], s)
        err = np.abs(np.polyval(p[::-1], s) / q_values - f) / f
        if err.max() < best[0]:
            best = (err.max(), p.copy(), q.copy())
        weights = weights * (err / err.max()) ** 0.5 + 1e-9
        weights /= weights.sum()
    e, p, q = best
    # Back to powers of z = x^2.
    return e, p / LIMIT ** (2 * np.arange(DEG_P)), q / LIMIT ** (2 * np.arange(DEG_Q))


def tanh32(x, p, q, fused):
    x = np.clip(x.astype(np.float32), -LIMIT, LIMIT).astype(np.float32)
    z = (x * x).astype(np.float32)

    def horner(c):
        acc = np.full_like(z, c[-1])
        for k in c[-2::-1]:
            if fused:
                acc = (acc.astype(np.float64) * z + np.float64(k)).astype(np.float32)
            else:
                acc = (acc * z).astype(np.float32) + np.float32(k)
        return acc.astype(np.float32)

    r = ((x * horner(p)).astype(np.float32) / horner(q)).astype(np.float32)
    return np.clip(r, -1, 1)


def main():
    e, p, q = fit()
    p32, q32 = p.astype(np.float32), q.astype(np.float32)
    print(f"max relative error of the fit in Float64: {e:.3g}")
    print("P (x^12 ... x^0):", ", ".join(np.format_float_scientific(v, unique=True) for v in p32[::-1]))
    print("Q (x^6 ... x^0): ", ", ".join(np.format_float_scientific(v, unique=True) for v in q32[::-1]))
    x = np.concatenate([np.linspace(-12, 12, 2_000_001), np.geomspace(1e-30, 1, 100_000)]).astype(np.float32)
    x = np.concatenate([x, -x[-100_000:]])
    want = np.tanh(x.astype(np.float64))
    spacing = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    for fused in (False, True):
        got = tanh32(x, p32, q32, fused)
        ulps = np.abs(got - want) / spacing
        print(f"{'fused' if fused else 'unfused'} Float32: max {ulps.max():.2f} ulp (at x = {x[ulps.argmax()]:.6g}), "
              f"max absolute error {np.abs(got - want).max():.3g}")


if __name__ == "__main__":
    main()
