#!/usr/bin/env python3
"""Our training step against PyTorch eager's, in interleaved rounds, as a table
for the chapter "Making it fast".

A shared machine drifts by 10-20 % from minute to minute, so one measurement
of each side would compare two different machines. This script alternates:
in each round it times PyTorch's step for the tiny model with each image tower,
and the multimodal LLM's instruction-tuning step (`--only clip|vlm` for one
of the two), on 1 and 2 threads (`tools/pytorch_step.py`, the model's PyTorch mirror), then
ours (`cargo bench -p train --bench step_count`, with RAYON_NUM_THREADS), and
compares the two sides within the round. It writes the median over the rounds
of each side's median step time, and the range and median of the per-round
ratio ours / PyTorch.

    python3 tools/step_vs_pytorch.py [--python /path/to/venv/bin/python] [--rounds 4]

Needs PyTorch in the given Python (see tools/golden/README.md) and a release
build; run by hand on a quiet machine, never by CI. Writes
book/src/generated/fast/step.md (or --out), naming the machine, the versions
and the load average before and after. Standard library only.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys

CONFIGS = [("vit", 1), ("vit", 2), ("cnn", 1), ("cnn", 2), ("vlm", 1), ("vlm", 2)]
TORCH_LINE = re.compile(r"^(vit|cnn|vlm instruct) threads=(\d): median ([0-9.]+) ms")
OURS_LINE = re.compile(r"^(vit|cnn|vlm-instruct)_B64: \d+ steps, median ([0-9.]+) ms")
# the step_count bench's --tower for each configuration's model
OUR_TOWER = {"vit": "vit", "cnn": "cnn", "vlm": "vlm-instruct"}
LABEL = {"vit": "ViT", "cnn": "CNN", "vlm": "multimodal LLM, instruction tuning"}


def run(cmd, env=None, cwd=None):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    if out.returncode != 0:
        sys.exit("error: %s failed:\n%s" % (" ".join(cmd), out.stderr[-2000:]))
    return out.stdout


def torch_round(python, root, steps, only):
    cmd = [python, os.path.join(root, "tools", "pytorch_step.py"), "--steps", str(steps)]
    if only:
        cmd += ["--only", only]
    text = run(cmd)
    times = {}
    version = text.splitlines()[0] if text else ""
    for line in text.splitlines():
        m = TORCH_LINE.match(line)
        if m:
            times[(m.group(1).split()[0], int(m.group(2)))] = float(m.group(3))
    return times, version


def ours_round(root, steps, configs):
    times = {}
    for tower, threads in configs:
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
        text = run(
            ["cargo", "bench", "-q", "-p", "train", "--bench", "step_count", "--",
             "--steps", str(steps), "--tower", OUR_TOWER[tower]],
            env=env, cwd=root,
        )
        for line in text.splitlines():
            m = OURS_LINE.match(line)
            if m and m.group(1) == OUR_TOWER[tower]:
                times[(tower, threads)] = float(m.group(2))
    return times


def machine():
    name = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%d cores, %s" % (os.cpu_count() or 0, name)


def load():
    try:
        return "%.1f" % os.getloadavg()[0]
    except OSError:
        return "?"


def main():
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", default=sys.executable, help="a Python with torch")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--torch-steps", type=int, default=30)
    parser.add_argument("--our-steps", type=int, default=20)
    parser.add_argument("--out", default=os.path.join(root, "book", "src", "generated", "fast", "step.md"))
    parser.add_argument("--only", choices=["clip", "vlm"],
                        help="only the CLIP model's steps, or only the multimodal LLM's")
    parser.add_argument(
        "--max-load", type=float, default=float(os.cpu_count() or 1),
        help="refuse to start above this 1-minute load average (default: the core count)",
    )
    args = parser.parse_args()
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    if busy > args.max_load:
        # PyTorch's threads spin and wait for each other when the cores are
        # taken: its 2-thread step then slows tenfold, and the ratio would
        # measure the other processes, not the two implementations
        sys.exit("error: load average %.1f is above %.1f: measure on a quiet machine "
                 "(or pass --max-load)" % (busy, args.max_load))

    run(["cargo", "bench", "-q", "-p", "train", "--bench", "step_count", "--no-run"], cwd=root)
    configs = [c for c in CONFIGS
               if args.only is None or (c[0] == "vlm") == (args.only == "vlm")]
    load_before = load()
    torch_times, ours_times, version = [], [], ""
    for r in range(args.rounds):
        t, version = torch_round(args.python, root, args.torch_steps, args.only)
        o = ours_round(root, args.our_steps, configs)
        missing = [c for c in configs if c not in t or c not in o]
        if missing:
            sys.exit("error: round %d has no time for %s" % (r + 1, missing))
        torch_times.append(t)
        ours_times.append(o)
        print("round %d: %s" % (r + 1, ", ".join(
            "%s/%d %.0f vs %.0f ms" % (c[0], c[1], o[c], t[c]) for c in configs)))
    load_after = load()

    lines = [
        "| training step, batch 64 | ours | PyTorch eager | ours / PyTorch, per round | median ratio |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for tower, threads in configs:
        c = (tower, threads)
        ours = statistics.median(o[c] for o in ours_times)
        torch = statistics.median(t[c] for t in torch_times)
        ratios = [o[c] / t[c] for o, t in zip(ours_times, torch_times)]
        lines.append(
            "| %s, %d thread%s | %.0f ms | %.0f ms | %.2f – %.2f | %.2f |"
            % (LABEL[tower], threads, "" if threads == 1 else "s",
               ours, torch, min(ratios), max(ratios), statistics.median(ratios))
        )
    lines.append("")
    lines.append(
        "*Measured on %s; %s; %d interleaved rounds of PyTorch (median of %d steps per "
        "configuration) and ours (median of %d steps); load average %s before and %s after. "
        "Made by `python3 tools/step_vs_pytorch.py --python <a Python with torch>%s`.*"
        % (machine(), version, args.rounds, args.torch_steps, args.our_steps, load_before, load_after,
           " --only " + args.only if args.only else "")
    )
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".tmp", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(args.out + ".tmp", args.out)
    print("wrote %s" % os.path.relpath(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
