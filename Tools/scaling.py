#!/usr/bin/env python3
"""Measures how the characterization time grows with cells, stimuli and steps, and plots it.

    python Tools/scaling.py [--backend opencl] [--binary .build/release/cellaudit] [--out docs/scaling]

Cells and steps: `cellaudit bench --workload response` at several --cells and --window values.
Stimuli: `cellaudit characterize` of a random 1,024-cell layer (made by Tools/make_large_model.py)
under banks of 1,250 to 10,000 stimuli. Writes OUT.csv and OUT.svg (seconds against each
factor, each normalised to its largest point, with the linear reference). Needs numpy and
safetensors.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))


def bench(binary, backend, cells, window):
    rows = json.loads(subprocess.run([binary, "bench", "--workload", "response", "--backend", backend, "--cells", str(cells),
                                      "--window", str(window), "--repeats", "3", "--json"],
                                     check=True, capture_output=True, text=True).stdout)
    return rows[0]["median_seconds"], rows[0]["work"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="opencl")
    p.add_argument("--binary", default=os.path.join(here, "..", ".build", "release", "cellaudit"))
    p.add_argument("--out", default=os.path.join(here, "..", "docs", "scaling"))
    a = p.parse_args()
    rows = []
    for cells in (256, 512, 1024, 2048, 4096):
        s, w = bench(a.binary, a.backend, cells, 400)
        rows.append(("cells", cells, s, w))
    for window in (100, 200, 400, 800, 1600):
        s, w = bench(a.binary, a.backend, 1024, window)
        rows.append(("steps", window, s, w))
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "layer.safetensors")
        subprocess.run([sys.executable, os.path.join(here, "make_large_model.py"), model, "--layers", "1", "--cells", "1024"],
                       check=True, capture_output=True)
        for n in (1250, 2500, 5000, 10000):
            bank = os.path.join(tmp, f"bank{n}.json")
            json.dump({"window": 100, "step_amplitudes": list(np.geomspace(0.01, 4, n // 25)),
                       "frequencies": list(np.geomspace(0.02, 0.45, n * 24 // 25 // 4)), "sine_amplitudes": [0.5, 1, 2, 4]},
                      open(bank, "w"))
            out = json.loads(subprocess.run([a.binary, "characterize", model, "--stimuli", bank, "--backend", a.backend,
                                             "--out", os.path.join(tmp, f"out{n}"), "--json"],
                                            check=True, capture_output=True, text=True).stdout)
            rows.append(("stimuli", out["stimuli"], out["seconds"], out["cell_stimulus_steps"]))
    with open(a.out + ".csv", "w") as f:
        f.write("factor,value,seconds,cell_stimulus_steps\n")
        for r in rows:
            f.write(f"{r[0]},{r[1]},{r[2]:.6g},{r[3]}\n")
    # One panel per factor: seconds against the factor, both normalised to the largest point.
    width, height, pad = 900, 300, 50
    colors = {"cells": "#1f77b4", "steps": "#d62728", "stimuli": "#2ca02c"}
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="Helvetica, Arial, sans-serif" font-size="11">',
           '<rect width="100%" height="100%" fill="white"/>']
    for i, factor in enumerate(("cells", "stimuli", "steps")):
        pts = [(r[1], r[2]) for r in rows if r[0] == factor]
        x0 = i * width / 3 + pad
        pw, ph = width / 3 - pad - 10, height - 2 * pad
        xm, ym = max(p[0] for p in pts), max(p[1] for p in pts)
        svg.append(f'<text x="{x0 + pw / 2}" y="20" text-anchor="middle" font-weight="bold">time against {factor} ({a.backend})</text>')
        svg.append(f'<line x1="{x0}" y1="{pad + ph}" x2="{x0 + pw}" y2="{pad + ph}" stroke="#444"/><line x1="{x0}" y1="{pad}" x2="{x0}" y2="{pad + ph}" stroke="#444"/>')
        svg.append(f'<line x1="{x0}" y1="{pad + ph}" x2="{x0 + pw}" y2="{pad}" stroke="#bbb" stroke-dasharray="4 3"/>')
        d = " ".join(f"{x0 + p[0] / xm * pw:.1f},{pad + ph - p[1] / ym * ph:.1f}" for p in pts)
        svg.append(f'<polyline fill="none" stroke="{colors[factor]}" stroke-width="2" points="{d}"/>')
        for p_ in pts:
            svg.append(f'<circle cx="{x0 + p_[0] / xm * pw:.1f}" cy="{pad + ph - p_[1] / ym * ph:.1f}" r="3" fill="{colors[factor]}"/>')
        svg.append(f'<text x="{x0 + pw / 2}" y="{height - 12}" text-anchor="middle">{factor} (max {xm}); dashed: linear</text>')
        svg.append(f'<text x="{x0 - 8}" y="{pad + 4}" text-anchor="end">{ym:.3g} s</text>')
    svg.append("</svg>")
    open(a.out + ".svg", "w").write("\n".join(svg) + "\n")
    for r in rows:
        print(f"{r[0]:8} {r[1]:>6}  {r[2]:8.4f} s  {r[3] / r[2]:.3g} cell-stimulus-steps/s")


if __name__ == "__main__":
    main()
