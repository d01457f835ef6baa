#!/usr/bin/env python3
"""Summarizes a bench/sweep.sh run: sweep.json (every run with its server CPU) and summary.md
(per point and mix: median over rounds of each side, and the Warren/ZooKeeper ratio of each
round as median [min, max]). Every statement about settings comes from the files.

    bench/sweep_summary.py <runs.tsv> <out dir> [--setting key=value ...]
"""
import argparse
import csv
import json
import pathlib
import statistics


def load_runs(tsv):
    runs = []
    with open(tsv, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            result = json.load(open(row["result"]))
            total = result["total"]
            measured = total["count"]
            warmup = result["settings"].get("warmup_ops") or 0
            cpu = float(row["server_cpu_s"])
            runs.append({
                "round": int(row["round"]),
                "side": row["side"],
                "point": row["point"],
                "mix": row["mix"],
                "result": row["result"],
                "target": result["target"].get("version"),
                "throughput_ops_s": total["throughput_ops_s"],
                "p50_us": total["p50_us"],
                "p99_us": total["p99_us"],
                "p99_9_us": total["p99_9_us"],
                "errors": total["errors"],
                "server_cpu_s": cpu,
                # The server's CPU covers the whole loadgen run: preload, warmup and measured ops.
                "ops_per_server_cpu_s": (measured + warmup) / cpu if cpu > 0 else None,
                "loadgen_ops_per_cpu_s": result.get("loadgen_ops_per_cpu_s"),
                "machine": result.get("machine"),
                "settings": result["settings"],
            })
    return runs


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio_range(runs, key):
    """Warren/ZooKeeper per round (same point and mix): median, min, max."""
    by_round = {}
    for r in runs:
        by_round.setdefault(r["round"], {})[r["side"]] = r[key]
    ratios = [s["warren"] / s["zookeeper"] for s in by_round.values()
              if s.get("warren") is not None and s.get("zookeeper")]
    if not ratios:
        return None
    return statistics.median(ratios), min(ratios), max(ratios)


def fmt(v, digits=0):
    return "-" if v is None else f"{v:,.{digits}f}"


def fmt_ratio(r):
    return "-" if r is None else f"{r[0]:.2f}x [{r[1]:.2f}, {r[2]:.2f}]"


def summary(runs, settings):
    first = runs[0]
    lines = ["# Warren vs Apache ZooKeeper sweep", ""]
    lines.append(f"Machine: {json.dumps(first['machine'])}")
    lines.append(f"Servers: {sorted({(r['side'], r['target']) for r in runs})}")
    lines.append("Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    s = first["settings"]
    lines.append(f"Per run: {s['keys']} keys of {s['value_size']} B, key distribution {s['key_distribution']}, "
                 f"warmup {s.get('warmup_ops')} ops, duration {s.get('duration_s')} s")
    lines.append("")
    lines.append("Values: median over rounds. Ratio: Warren/ZooKeeper of each round, median [min, max]. "
                 "Ops per server CPU-second: (warmup + measured ops) / the server process's CPU seconds "
                 "during the whole loadgen run (its preload included).")
    lines.append("")
    header = ("| point | mix | side | ops/s | p50 µs | p99 µs | p99.9 µs | ops/server CPU-s | errors "
              "| ratio ops/s | ratio ops/CPU-s |")
    lines += [header, "|" + "---|" * 11]
    keys = sorted({(r["point"], r["mix"]) for r in runs}, key=lambda k: (k[1], k[0]))
    for point, mix in keys:
        group = [r for r in runs if r["point"] == point and r["mix"] == mix]
        tput, cpu = ratio_range(group, "throughput_ops_s"), ratio_range(group, "ops_per_server_cpu_s")
        for side in ("zookeeper", "warren"):
            rs = [r for r in group if r["side"] == side]
            if not rs:
                continue
            cells = [point, mix, side, fmt(median([r["throughput_ops_s"] for r in rs])),
                     fmt(median([r["p50_us"] for r in rs])), fmt(median([r["p99_us"] for r in rs])),
                     fmt(median([r["p99_9_us"] for r in rs])),
                     fmt(median([r["ops_per_server_cpu_s"] for r in rs])), str(sum(r["errors"] for r in rs)),
                     fmt_ratio(tput) if side == "warren" else "", fmt_ratio(cpu) if side == "warren" else ""]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("runs")
    parser.add_argument("out")
    parser.add_argument("--setting", action="append", default=[])
    args = parser.parse_args()
    settings = dict(s.split("=", 1) for s in args.setting)
    runs = load_runs(args.runs)
    if not runs:
        raise SystemExit("sweep_summary: no runs")
    out = pathlib.Path(args.out)
    (out / "sweep.json").write_text(json.dumps({"settings": settings, "runs": runs}, indent=1) + "\n")
    text = summary(runs, settings)
    (out / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
