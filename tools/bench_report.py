#!/usr/bin/env python3
"""Turn criterion results into a markdown table for the book.

    python3 tools/bench_report.py --out book/src/generated/<crate>/bench.md \\
        [--target target/criterion] [--bench-cmd "cargo bench -p <crate>"] \\
        [--elements-unit GROUP=FLOP ...] SPEC...

Each SPEC is either
  GROUP                 every benchmark id of that criterion group, with its
                        mean time and throughput, or
  REF_GROUP:FAST_GROUP  each id present in both groups, with both mean times
                        and the speed-up ref/fast.
Group names are criterion's (`linear/forward`, `attention/plain_forward`).

Criterion writes `<target>/<group dir>/<id dir>/new/estimates.json` (the
`mean.point_estimate`, in nanoseconds) and `benchmark.json` (the group name,
the id and the throughput). Directory names are file-name-safe versions of
the names (`linear/forward` becomes `linear_forward`), so this script finds a
group by the `group_id` recorded in `benchmark.json`, not by its directory.

Timings depend on the machine, so the table names the machine it was
measured on and the command, and CI never runs this. Standard library only.
"""

import argparse
import json
import os
import re
import shlex
import sys


class ReportError(Exception):
    pass


def natural_key(text):
    """Sort `B64_T16` before `B64_T64` before `B128_T16`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def load_results(target):
    """Read every `new/` result under `target`: {group: {id: result}}."""
    if not os.path.isdir(target):
        raise ReportError(
            f"no criterion results: {target} does not exist (run `cargo bench -p <crate>` first)"
        )
    groups = {}
    for root, dirs, files in os.walk(target):
        dirs.sort()
        if os.path.basename(root) != "new" or "benchmark.json" not in files:
            continue
        with open(os.path.join(root, "benchmark.json")) as f:
            bench = json.load(f)
        estimates_path = os.path.join(root, "estimates.json")
        if not os.path.isfile(estimates_path):
            raise ReportError(f"{estimates_path} is missing; rerun the benchmark")
        with open(estimates_path) as f:
            estimates = json.load(f)
        mean = estimates["mean"]
        group = bench["group_id"]
        # An id is `function_id/value_str`, whichever parts the bench set.
        parts = [p for p in (bench.get("function_id"), bench.get("value_str")) if p]
        bench_id = "/".join(parts) if parts else group
        groups.setdefault(group, {})[bench_id] = {
            "mean_ns": mean["point_estimate"],
            "low_ns": mean["confidence_interval"]["lower_bound"],
            "high_ns": mean["confidence_interval"]["upper_bound"],
            "throughput": bench.get("throughput"),
        }
    return groups


def group_results(groups, name, target):
    if name not in groups:
        known = ", ".join(sorted(groups)) or "none"
        raise ReportError(f"no criterion group `{name}` under {target} (groups found: {known})")
    return groups[name]


def fmt_time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def fmt_rate(per_second, unit):
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if per_second >= scale:
            return f"{per_second / scale:.3g} {prefix}{unit}/s"
    return f"{per_second:.3g} {unit}/s"


def fmt_binary_rate(bytes_per_second):
    for prefix, scale in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if bytes_per_second >= scale:
            return f"{bytes_per_second / scale:.3g} {prefix}B/s"
    return f"{bytes_per_second:.3g} B/s"


def fmt_throughput(result, elements_unit):
    throughput = result["throughput"]
    if not throughput:
        return "–"
    seconds = result["mean_ns"] / 1e9
    (kind, amount), = throughput.items()
    if kind == "Elements":
        return fmt_rate(amount / seconds, elements_unit)
    if kind == "Bytes":
        return fmt_binary_rate(amount / seconds)
    if kind == "BytesDecimal":
        return fmt_rate(amount / seconds, "B")
    if kind == "ElementsAndBytes":
        return (
            f"{fmt_rate(amount['elements'] / seconds, elements_unit)}, "
            f"{fmt_rate(amount['bytes'] / seconds, 'B')}"
        )
    return f"{amount} {kind} per {fmt_time(result['mean_ns'])}"


def fmt_mean(result):
    half = (result["high_ns"] - result["low_ns"]) / 2
    return f"{fmt_time(result['mean_ns'])} ± {100 * half / result['mean_ns']:.1f}%"


def group_table(name, results, elements_unit):
    lines = [
        f"**`{name}`**",
        "",
        "| id | mean time (95% CI) | throughput |",
        "| --- | ---: | ---: |",
    ]
    for bench_id in sorted(results, key=natural_key):
        r = results[bench_id]
        lines.append(f"| `{bench_id}` | {fmt_mean(r)} | {fmt_throughput(r, elements_unit)} |")
    return lines


def speedup_table(ref_name, ref, fast_name, fast):
    common = sorted(set(ref) & set(fast), key=natural_key)
    if not common:
        raise ReportError(
            f"groups `{ref_name}` and `{fast_name}` share no benchmark id "
            f"({', '.join(sorted(ref))} vs {', '.join(sorted(fast))})"
        )
    lines = [
        f"**`{ref_name}` vs `{fast_name}`**",
        "",
        f"| id | `{ref_name}` | `{fast_name}` | speed-up |",
        "| --- | ---: | ---: | ---: |",
    ]
    for bench_id in common:
        r, f = ref[bench_id], fast[bench_id]
        lines.append(
            f"| `{bench_id}` | {fmt_time(r['mean_ns'])} | {fmt_time(f['mean_ns'])} "
            f"| {r['mean_ns'] / f['mean_ns']:.2f}× |"
        )
    return lines


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}"


def main(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    parser.add_argument("specs", nargs="+", metavar="SPEC", help="GROUP or REF_GROUP:FAST_GROUP")
    parser.add_argument("--out", required=True, help="the markdown file to write")
    parser.add_argument("--target", default="target/criterion", help="criterion's output folder")
    parser.add_argument(
        "--bench-cmd",
        default="cargo bench",
        help="the command that produced the results, stated under the table",
    )
    parser.add_argument(
        "--elements-unit",
        action="append",
        default=[],
        metavar="[GROUP=]UNIT",
        help="what a group's Throughput::Elements count, e.g. `linear/forward=FLOP` "
        "(repeatable; a bare UNIT applies to every group; default `elem`)",
    )
    args = parser.parse_args(argv)

    units = {}
    for item in args.elements_unit:
        group, _, unit = item.rpartition("=")
        units[group] = unit  # group "" is the default

    try:
        groups = load_results(args.target)
        lines = []
        for spec in args.specs:
            if lines:
                lines.append("")
            if ":" in spec:
                ref_name, fast_name = spec.split(":", 1)
                ref = group_results(groups, ref_name, args.target)
                fast = group_results(groups, fast_name, args.target)
                lines += speedup_table(ref_name, ref, fast_name, fast)
            else:
                unit = units.get(spec, units.get("", "elem"))
                lines += group_table(spec, group_results(groups, spec, args.target), unit)
    except ReportError as e:
        print(f"bench_report: error: {e}", file=sys.stderr)
        return 2

    report_cmd = " ".join(shlex.quote(a) for a in ["python3", "tools/bench_report.py", *argv])
    lines += [
        "",
        f"*Measured on {machine()} with `{args.bench_cmd}`; table made by `{report_cmd}`. "
        "Times are criterion's means; they differ from "
        "machine to machine, so compare the rows with each other rather than with "
        "your own numbers.*",
    ]
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
