#!/usr/bin/env python3
"""The ladder of the chapter "Making it fast": every plain-versus-fast pair of
the crates' benchmark tables on one page, one row per rung.

The tables under book/src/generated/<crate>/bench.md are made from criterion's
results by tools/bench_report.py (by hand, on a quiet machine: timings are not
CI's business). This script only reads those committed tables, so it is
deterministic and tools/book-outputs.sh runs it: a re-measured table updates
the ladder, and CI notices a ladder that was not regenerated.

For each rung below it finds the section "**`REF` vs `FAST`**" of the named
table and reports the smallest and the largest speed-up over the sizes
measured, and which sizes those were.

Usage: python3 tools/bench_ladder.py [--book book] [--out FILE]
Exit status: 0, or 1 when a table or a section it needs is missing (named).
Standard library only.
"""

import argparse
import os
import re
import sys

# (chapter, what changes, table, reference group, fast group), in the order of
# the chapter "Making it fast".
RUNGS = [
    ("embedding", "`Linear` forward: three plain loops → a blocked, vectorised matrix product",
     "embedding/bench.md", "linear/forward_naive", "linear/forward"),
    ("embedding", "the matrix product itself: ndarray's kernel (AVX2) → this workspace's (AVX-512)",
     "embedding/bench.md", "gemm/ndarray", "gemm/kernel"),
    ("embedding", "`Embedding` forward: a one-hot matrix product → a row lookup",
     "embedding/bench.md", "embedding/one_hot_forward", "embedding/forward"),
    ("attention", "attention forward: the plain kernel → the tiled kernel with an online softmax",
     "attention/bench.md", "attention/plain_forward", "attention/tiled_forward"),
    ("vision", "`Conv2d` forward: seven nested loops → im2col and one matrix product",
     "vision/bench.md", "conv2d/direct_forward", "conv2d/im2col_forward"),
    ("vision", "`Conv2d` backward: the loops → a matrix product and col2im",
     "vision/bench.md", "conv2d/direct_backward", "conv2d/im2col_backward"),
    ("model", "generating a caption: the whole prefix at every step → the KV cache",
     "model/generation_bench.md", "generation/uncached", "generation/cached"),
]

SECTION = re.compile(r"^\*\*`([^`]+)` vs `([^`]+)`\*\*\s*$")
ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|.*\|\s*([0-9.]+)×\s*\|\s*$")


def speedups(path, ref, fast):
    """[(id, speed-up)] of the section `ref` vs `fast` of a bench table, or None."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    rows, inside = [], False
    for line in lines:
        m = SECTION.match(line)
        if m:
            inside = (m.group(1), m.group(2)) == (ref, fast)
            continue
        if inside:
            r = ROW.match(line)
            if r:
                rows.append((r.group(1), float(r.group(2))))
            elif rows and not line.startswith("|"):
                break
    return rows or None


def fmt(x):
    return f"{x:.1f}×" if x < 10 else f"{x:.0f}×"


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--book", default=os.path.join(here, "..", "book"))
    parser.add_argument("--out", help="default: <book>/src/generated/fast/ladder.md")
    args = parser.parse_args()
    generated = os.path.join(args.book, "src", "generated")
    out = args.out or os.path.join(generated, "fast", "ladder.md")

    lines = [
        "| chapter | rung: plain → fast | speed-up | slowest / fastest gain at |",
        "| --- | --- | ---: | --- |",
    ]
    problems = []
    for chapter, what, table, ref, fast in RUNGS:
        path = os.path.join(generated, table)
        if not os.path.isfile(path):
            problems.append(f"{path}: no such table")
            continue
        rows = speedups(path, ref, fast)
        if rows is None:
            problems.append(f"{path}: no section `{ref}` vs `{fast}` with speed-ups")
            continue
        lo = min(rows, key=lambda r: r[1])
        hi = max(rows, key=lambda r: r[1])
        span = fmt(lo[1]) if lo[1] == hi[1] else f"{fmt(lo[1])} – {fmt(hi[1])}"
        where = f"`{lo[0]}`" if lo[0] == hi[0] else f"`{lo[0]}` / `{hi[0]}`"
        lines.append(f"| {chapter} | {what} | {span} | {where} |")
    if problems:
        for p in problems:
            print("error: " + p, file=sys.stderr)
        return 1
    lines.append("")
    lines.append(
        "*Read from the benchmark tables of each crate (`tools/bench_report.py`), which name the "
        "machine and the command; `python3 tools/bench_ladder.py` writes this table. A speed-up is "
        "the plain version's time over the fast one's on the same sizes.*"
    )
    os.makedirs(os.path.dirname(out), exist_ok=True)
    text = "\n".join(lines) + "\n"
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, out)
    print(f"wrote {os.path.relpath(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
