#!/usr/bin/env python3
"""Wall time of one characterize run split into 1, 2 and 4 shards, one core each, as a job array
on this machine would run them: at most as many shards at once as there are cores (Slurm's %M),
each with CELLAUDIT_THREADS=1 and pinned to its own core, then `cellaudit merge`.

    python Tools/bench_shards.py [--binary B] [--model M] [--stimuli 2000] [--window 100] [--shards 1,2,4]

Defaults: the binary Tools/cellaudit.sh builds, and /tmp/large.safetensors
(python Tools/make_large_model.py /tmp/large.safetensors). Prints the CPU, one row per N (wall of
the shards, wall of the merge, the slowest shard's own seconds and its model-loading overhead),
and checks that every merged responses.safetensors equals the 1-shard one.
"""
import argparse
import filecmp
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default=os.path.join(root, ".build-native/release/cellaudit"))
    p.add_argument("--model", default="/tmp/large.safetensors")
    p.add_argument("--stimuli", type=int, default=2000, help="bank size: 16 steps, the rest sinusoids")
    p.add_argument("--window", type=int, default=100)
    p.add_argument("--shards", default="1,2,4")
    a = p.parse_args()
    cores = len(os.sched_getaffinity(0))
    work = tempfile.mkdtemp(prefix="cellaudit-bench-shards-")
    # The bank as a stimulus file: 16 log-spaced steps, then sinusoids over 8 amplitudes.
    steps = [0.0625 * 2 ** (i / 3) for i in range(16)]
    sines = a.stimuli - len(steps)
    amplitudes = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0]
    frequencies = [2 / a.window * (0.45 / (2 / a.window)) ** (i / max(1, sines // 8 - 1)) for i in range(sines // 8)]
    stimuli = [{"kind": "step", "amplitude": s} for s in steps]
    stimuli += [{"kind": "sine", "amplitude": amp, "frequency": f} for f in frequencies for amp in amplitudes]
    bank = os.path.join(work, "bank.json")
    json.dump({"stimuli": stimuli}, open(bank, "w"))
    print(f"CPU: {cpu_name()}, {cores} cores; model {a.model}; {len(stimuli)} stimuli, window {a.window}")
    print("| shards | at once | shards' wall (s) | merge (s) | total (s) | slowest shard's own s | merged = 1-shard |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    reference = None
    for n in [int(x) for x in a.shards.split(",")]:
        out = os.path.join(work, f"n{n}")
        env = dict(os.environ, CELLAUDIT_THREADS="1")
        start = time.perf_counter()
        running, seconds, k = [], [], 0
        while k < n or running:
            while k < n and len(running) < cores:
                cmd = ["taskset", "-c", str(k % cores), a.binary, "characterize", a.model, "--stimuli", bank, "--window", str(a.window),
                       "--backend", "cpu", "--quiet", "--json", "--out", out]
                if n > 1:
                    cmd += ["--shard", f"{k}/{n}"]
                running.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE))
                k += 1
            done = running.pop(0)
            stdout, _ = done.communicate()
            if done.returncode != 0:
                raise SystemExit(f"shard failed: {done.args}")
            seconds.append(json.loads(stdout)["seconds"])
        shards_wall = time.perf_counter() - start
        merged = out
        merge_wall = 0.0
        if n > 1:
            merged = os.path.join(work, f"n{n}-merged")
            t = time.perf_counter()
            subprocess.run([a.binary, "merge", out, "--out", merged, "--quiet"], check=True, stdout=subprocess.DEVNULL)
            merge_wall = time.perf_counter() - t
        responses = os.path.join(merged, "responses.safetensors")
        same = "reference"
        if reference is None:
            reference = responses
        else:
            same = "yes" if filecmp.cmp(reference, responses, shallow=False) else "NO"
        print(f"| {n} | {min(n, cores)} | {shards_wall:.1f} | {merge_wall:.1f} | {shards_wall + merge_wall:.1f} | {max(seconds):.1f} | {same} |")
        if n > 1:
            shutil.rmtree(out)
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
