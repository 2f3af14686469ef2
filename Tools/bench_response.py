#!/usr/bin/env python3
"""Runs `cellaudit bench --workload response` and the NumPy peer (with metrics, and simulate-only)
on the same workload in one run, and prints each CellAudit backend's ratio to each peer.

    python Tools/bench_response.py [--cells 256] [--window 400] [--binary .build/release/cellaudit]

Needs numpy and a release build (`swift build -c release`).
"""
import argparse
import json
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", type=int, default=256)
    p.add_argument("--window", type=int, default=400)
    p.add_argument("--binary", default=os.path.join(here, "..", ".build", "release", "cellaudit"))
    args = p.parse_args()
    ours = json.loads(subprocess.run([args.binary, "bench", "--workload", "response", "--cells", str(args.cells),
                                      "--window", str(args.window), "--json"], check=True, capture_output=True, text=True).stdout)
    peers = []
    for extra in ([], ["--simulate-only"]):
        out = subprocess.run([sys.executable, os.path.join(here, "peer_numpy.py"), "--cells", str(args.cells),
                              "--window", str(args.window), "--json"] + extra, check=True, capture_output=True, text=True).stdout
        peers.append(json.loads(out))
    print(f"response workload: {args.cells} cells x default bank, window {args.window}; cell-stimulus-steps per second")
    for row in ours:
        print(f"  cellaudit {row['backend']:6} {row['median_per_second']:.3g}  ({row['device']})")
    for peer in peers:
        print(f"  {peer['peer']:22} {peer['per_second']:.3g}")
    for row in ours:
        for peer in peers:
            print(f"  ratio cellaudit {row['backend']} / {peer['peer']}: {row['median_per_second'] / peer['per_second']:.1f}x")


if __name__ == "__main__":
    main()
