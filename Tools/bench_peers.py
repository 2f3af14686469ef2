#!/usr/bin/env python3
"""Runs `cellaudit bench` and the NumPy peers on identical workloads in one run and prints each
CellAudit backend's ratio to each peer:
  response  Tools/peer_numpy.py (decoupled simulation with every metric, and simulate-only)
  ablation  Tools/peer_numpy_ablation.py (every single-cell ablation as one batched forward)
  relevance Tools/peer_numpy_lrp.py (LRP one sequence at a time, as ArrasL/LRP_for_LSTM runs it)
  fixed-points  Tools/peer_fixed_points.py only (PyTorch, FixedPointFinder's defaults), from the
            same 1024 seeds on the flip-flop GRU fixture; not part of `all`
and, where torch is installed, the PyTorch peers of Tools/peer_torch.py (response simulate-only,
ablation, relevance: batched autograd gradient x input with detached gates; forward: nn.LSTM /
nn.GRU / nn.RNN of --cell with a Linear readout, 512 sequences x 64 steps, the only peer of the
forward workload).

    python Tools/bench_peers.py [--cells 256] [--window 400] [--workload response|ablation|relevance|all] [--cell KIND]
                                [--binary .build/release/cellaudit] [--pairs N]

--pairs N (--workload forward or relevance; --bidirectional for a bidirectional forward layer on
both sides): the CPU backend and the PyTorch peer in turn, N times, each pair's ratio and their
median, so the ratio holds while a shared machine's speed drifts (a single pair on a noisy 2-core
machine ranged 0.6x to 1.6x). Both sides run on the same CPUs (taskset) with the same thread count
(CellAudit's CELLAUDIT_THREADS or every CPU; torch.set_num_threads).

Needs numpy and a release build: the one `bash Tools/cellaudit.sh` makes for this CPU
(.build-native) if present, else `swift build -c release`.
"""
import argparse
import json
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))


def run_json(cmd):
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", type=int, default=256)
    p.add_argument("--window", type=int, default=400)
    p.add_argument("--workload", default="all")
    p.add_argument("--cell", default="lstm", help="cell kind of the response workload: lstm, gru, rnn_tanh or rnn_relu")
    native = os.path.join(here, "..", ".build-native", "release", "cellaudit")
    p.add_argument("--binary", default=native if os.path.exists(native) else os.path.join(here, "..", ".build", "release", "cellaudit"))
    p.add_argument("--pairs", type=int, default=0)
    p.add_argument("--bidirectional", action="store_true", help="with --pairs: a bidirectional layer on both sides")
    args = p.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "unknown CPU")
    print(f"CPU: {cpu}, {os.cpu_count()} logical cores")
    workloads = ["response", "ablation", "relevance", "forward"] if args.workload == "all" else [args.workload]
    sized = {"response": args.cells, "ablation": min(args.cells, 64), "relevance": min(args.cells, 128), "forward": min(args.cells, 256)}
    if args.workload == "fixed-points":
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            seeds = os.path.join(tmp, "seeds.safetensors")
            ours = run_json([args.binary, "bench", "--workload", "fixed-points", "--seeds-out", seeds, "--json"])
            model = os.path.join(here, "..", "Tests", "Fixtures", "dynamics", "flipflop3_gru16.safetensors")
            peer = run_json([sys.executable, os.path.join(here, "peer_fixed_points.py"), "--model", model, "--seeds", seeds, "--json"])
        print(f"fixed-points: {ours[0]['size']}; seeds converged to q < 1e-12 per second")
        for row in ours:
            print(f"  cellaudit {row['backend']:6} {row['median_per_second']:.3g}  ({row['device']})")
        print(f"  {peer['peer']:22} {peer['per_second']:.3g}  ({peer['converged']} of {peer['seeds']} converged in "
              f"{peer['iterations']} iterations, {peer['seconds']:.3g} s, median q {peer['median_q']:.2g})")
        for row in ours:
            print(f"  ratio cellaudit {row['backend']} / {peer['peer']}: {row['median_per_second'] / max(peer['per_second'], 1e-300):.3g}x")
        return
    if args.pairs > 0:
        import statistics
        import torch
        workload = "relevance" if args.workload == "relevance" else "forward"
        bi = ["--bidirectional"] if args.bidirectional and workload == "forward" else []
        threads = int(os.environ.get("CELLAUDIT_THREADS", os.cpu_count()))
        pin = ["taskset", "-c", f"0-{threads - 1}"]
        size = ["--cell", args.cell] if workload == "forward" else ["--steps", "32", "--repeat", "7"]
        print(f"{workload} ({args.cell if workload == 'forward' else 'lstm'}{', bidirectional' if bi else ''}, {args.cells} cells), "
              f"cellaudit cpu / pytorch in {args.pairs} alternating pairs on {threads} threads, torch {torch.__version__}")
        ratios = []
        for k in range(args.pairs):
            ours = run_json(pin + [args.binary, "bench", "--workload", workload, "--backend", "cpu", "--cells", str(args.cells),
                                   "--json"] + (["--cell", args.cell] if workload == "forward" else []) + bi)[0]["median_per_second"]
            peer = run_json(pin + [sys.executable, os.path.join(here, "peer_torch.py"), workload, "--cells", str(args.cells),
                                   "--threads", str(threads), "--json"] + size + bi)["per_second"]
            ratios.append(ours / peer)
            print(f"  pair {k + 1}: cellaudit {ours:.3g}, pytorch {peer:.3g}, ratio {ours / peer:.2f}x")
        print(f"  median ratio {statistics.median(ratios):.2f}x (min {min(ratios):.2f}x, max {max(ratios):.2f}x)")
        return
    for w in workloads:
        cell = ["--cell", args.cell] if w in ("response", "forward") else []
        ours = run_json([args.binary, "bench", "--workload", w, "--cells", str(args.cells), "--window", str(args.window), "--json"] + cell)
        if w == "response":
            peers = [run_json([sys.executable, os.path.join(here, "peer_numpy.py"), "--cells", str(args.cells),
                               "--window", str(args.window), "--json"] + cell + extra) for extra in ([], ["--simulate-only"])]
        elif w == "ablation":
            peers = [run_json([sys.executable, os.path.join(here, "peer_numpy_ablation.py"), "--cells", str(sized[w]), "--json"])]
        elif w == "forward":
            peers = []
        else:
            peers = [run_json([sys.executable, os.path.join(here, "peer_numpy_lrp.py"), "--cells", str(sized[w]), "--json"])]
        try:
            import torch  # noqa: F401
            extra = ["--steps", "32"] if w == "relevance" else []
            peers.append(run_json([sys.executable, os.path.join(here, "peer_torch.py"), w, "--cells", str(sized[w]), *extra,
                                   "--window", str(args.window), "--json"] + cell))
        except ImportError:
            print("(torch is not installed: no PyTorch peer)")
        print(f"{w} ({args.cell if w in ('response', 'forward') else 'lstm'}): {ours[0]['size']}; {ours[0]['unit']} per second")
        for row in ours:
            print(f"  cellaudit {row['backend']:6} {row['median_per_second']:.3g}  ({row['device']})")
        for peer in peers:
            print(f"  {peer['peer']:22} {peer['per_second']:.3g}")
        for row in ours:
            for peer in peers:
                print(f"  ratio cellaudit {row['backend']} / {peer['peer']}: {row['median_per_second'] / peer['per_second']:.2f}x")


if __name__ == "__main__":
    main()
