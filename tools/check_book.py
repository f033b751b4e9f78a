#!/usr/bin/env python3
"""Check the book's includes, then build it and fail on any error mdBook logs.

mdBook exits 0 when an `{{#include}}` names a missing file (it only logs
ERROR), and a misspelled anchor silently gives an empty code block. So before
building, this script checks every

    {{#include path}}            {{#include path:anchor}}
    {{#rustdoc_include path}}    {{#rustdoc_include path:anchor}}
    {{#include path:10:20}}      (line ranges: the file must be long enough)
    {{#playground path attr...}}

in `book/src/**/*.md`: the file must exist (its path is relative to the
chapter), an anchor needs both an `ANCHOR: name` and a later
`ANCHOR_END: name` line with at least one line of code between them, and a
local image `![alt](path)` must exist too. Then it runs `mdbook build` and
fails when mdBook exits non-zero, logs ERROR, or mdbook-katex reports a
formula it could not render (the page would show raw TeX).

Usage: python3 tools/check_book.py [--book DIR] [--no-build]
Exit status: 0 when the book is sound, 1 otherwise. Standard library only.
"""

import argparse
import os
import re
import subprocess
import sys

# `\{{#include ...}}` is mdBook's escape for showing the directive literally.
DIRECTIVE = re.compile(r"(?<!\\)\{\{\s*#(include|rustdoc_include|playground)\s+([^}]*?)\s*\}\}")
IMAGE = re.compile(r"!\[[^\]]*\]\(\s*([^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
# mdBook's own anchor syntax: `ANCHOR: name` and `ANCHOR_END: name` anywhere on a line.
ANCHOR = re.compile(r"ANCHOR:\s*([\w-]+)")
ANCHOR_END = re.compile(r"ANCHOR_END:\s*([\w-]+)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def split_target(arg):
    """`path[:a[:b]]` -> (path, anchor or None, (start, end) line range or None)."""
    parts = arg.split(":")
    path, rest = parts[0], parts[1:]
    if not rest or rest == [""]:
        return path, None, None
    if len(rest) == 1 and not rest[0].isdigit():
        return path, rest[0], None
    # Line forms: `:N` (just line N), `:N:`, `:N:M`, `::M` (1-based, inclusive).
    nums = rest + [""] * (2 - len(rest))
    if len(rest) > 2 or not all(n == "" or n.isdigit() for n in nums):
        return path, ":".join(rest), None  # let the anchor check name it as broken
    start = int(nums[0]) if nums[0] else 1
    if len(rest) == 1:
        end = start
    else:
        end = int(nums[1]) if nums[1] else None
    return path, None, (start, end)


def check_anchor(lines, anchor):
    """Return None if `anchor` spans at least one real line in `lines`, else why not."""
    start = end = None
    for i, line in enumerate(lines):
        m = ANCHOR.search(line)
        if m and m.group(1) == anchor and start is None:
            start = i
        m = ANCHOR_END.search(line)
        if m and m.group(1) == anchor and start is not None and end is None:
            end = i
    if start is None:
        if any((m := ANCHOR_END.search(line)) and m.group(1) == anchor for line in lines):
            return f"has `ANCHOR_END: {anchor}` but no `ANCHOR: {anchor}` before it"
        return f"has no `ANCHOR: {anchor}` line"
    if end is None:
        return f"has `ANCHOR: {anchor}` (line {start + 1}) but no `ANCHOR_END: {anchor}` after it"
    # mdBook drops the marker lines of other anchors nested inside the span.
    body = [
        line
        for line in lines[start + 1 : end]
        if line.strip() and not ANCHOR.search(line) and not ANCHOR_END.search(line)
    ]
    if not body:
        return f"anchor `{anchor}` (lines {start + 1}-{end + 1}) encloses no code"
    return None


def check_sources(src):
    """Check every directive and local image under `src`; return a list of problems."""
    problems = []
    checked = 0
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(".md"):
                continue
            chapter = os.path.join(root, name)
            with open(chapter, encoding="utf-8") as f:
                text = f.read()
            for lineno, line in enumerate(text.splitlines(), start=1):
                where = f"{os.path.relpath(chapter)}:{lineno}"
                for m in DIRECTIVE.finditer(line):
                    checked += 1
                    directive = m.group(0)
                    arg = m.group(2).split()[0] if m.group(2).split() else ""
                    path, anchor, lines_range = split_target(arg)
                    target = os.path.normpath(os.path.join(os.path.dirname(chapter), path))
                    if not os.path.isfile(target):
                        problems.append(f"{where}: {directive}: no such file {os.path.relpath(target)}")
                        continue
                    with open(target, encoding="utf-8", errors="replace") as f:
                        lines = f.read().splitlines()
                    if anchor is not None:
                        why = check_anchor(lines, anchor)
                        if why:
                            problems.append(f"{where}: {directive}: {os.path.relpath(target)} {why}")
                    elif lines_range is not None:
                        start, end = lines_range
                        last = end if end is not None else start
                        if start < 1 or last > len(lines) or (end is not None and end < start):
                            problems.append(
                                f"{where}: {directive}: lines {start}-{end or 'end'} outside "
                                f"{os.path.relpath(target)} ({len(lines)} lines)"
                            )
                    elif not lines:
                        problems.append(f"{where}: {directive}: {os.path.relpath(target)} is empty")
                for m in IMAGE.finditer(line):
                    link = m.group(1).split("#")[0]
                    if not link or re.match(r"^[a-z][a-z0-9+.-]*:", link, re.I):
                        continue  # a URL, not a file of ours
                    checked += 1
                    target = os.path.normpath(os.path.join(os.path.dirname(chapter), link))
                    if not os.path.isfile(target):
                        problems.append(f"{where}: image {m.group(0)}: no such file {os.path.relpath(target)}")
    return problems, checked


def build(book):
    """Run `mdbook build`; return (problems, output)."""
    env = dict(os.environ, NO_COLOR="1")
    try:
        proc = subprocess.run(
            ["mdbook", "build", book],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
        )
    except FileNotFoundError:
        return ["mdbook not found on PATH (install: cargo install mdbook --version 0.5.4 --locked)"], ""
    output = ANSI.sub("", proc.stdout)
    problems = []
    for line in output.splitlines():
        if "ERROR" in line:
            problems.append(f"mdbook: {line.strip()}")
        elif "Rendering failed" in line:
            problems.append(f"mdbook-katex could not render a formula: {line.strip()}")
    if proc.returncode != 0:
        problems.append(f"mdbook build exited with status {proc.returncode}")
    return problems, output


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--book", default="book", help="the book's root (holds book.toml)")
    parser.add_argument("--no-build", action="store_true", help="check the includes only")
    args = parser.parse_args()

    src = os.path.join(args.book, "src")
    if not os.path.isdir(src):
        print(f"check_book: no directory {src}", file=sys.stderr)
        return 1
    problems, checked = check_sources(src)
    print(f"check_book: {checked} includes and images checked under {src}")
    if problems:
        sys.stdout.flush()
        for p in problems:
            print(f"check_book: {p}", file=sys.stderr)
        print(f"check_book: {len(problems)} broken include(s) or image(s)", file=sys.stderr)
        return 1
    if args.no_build:
        return 0
    problems, output = build(args.book)
    sys.stdout.write(output)
    if problems:
        sys.stdout.flush()
        for p in problems:
            print(f"check_book: {p}", file=sys.stderr)
        print("check_book: the book build is broken", file=sys.stderr)
        return 1
    print(f"check_book: book built cleanly into {os.path.join(args.book, 'book')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
