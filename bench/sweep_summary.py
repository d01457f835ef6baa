#!/usr/bin/env python3
"""Summarizes a bench/sweep.sh run from its files alone: sweep.json (every run with its server
CPU and what the servers said about themselves) and summary.md (per point and mix: median over
rounds of each side, the Warren/ZooKeeper ratio of each round as median [min, max], and
loadgen's own ceiling against the canned-reply server). Every statement about settings comes
from the files: the loadgen result JSONs, zoo.cfg, java-version.txt, the mntr files and the
--setting values sweep.sh recorded.

    bench/sweep_summary.py <runs.tsv> <out dir> [--setting key=value ...]
        (without --setting, an existing <out dir>/sweep.json's settings are kept)
    bench/sweep_summary.py --doc <sweep dir> <docs/benchmarks.md> [--before <earlier sweep dir>]
        (--before adds a before/after table: Warren's CPU per request against the floor and
        against ZooKeeper, each ratio taken within its own sweep)
"""
import argparse
import json
import os
import pathlib
import statistics
import csv

SIDES = ("zookeeper", "warren")
# A side whose throughput reaches this share of loadgen's ceiling at the same point may be
# measuring the client, not the server.
NEAR_CEILING = 0.7
# Ratios whose rounds spread more than this (max/min) are called noisy.
NOISY_SPREAD = 1.3
# mntr keys that show whether ZooKeeper throttled or dropped anything during the sweep.
ZK_THROTTLE_KEYS = ("zk_throttled_ops", "zk_request_throttle_wait_count", "zk_stale_requests_dropped")


def server_cpu(result):
    """(server CPU seconds of the measured phase, ops per server CPU-second) from loadgen's JSON."""
    cpu = result.get("server_cpu") or {}
    total = cpu.get("total_cpu_s")
    per = cpu.get("ops_per_server_cpu_s")
    if per is None and total:
        per = result["total"]["successes"] / total
    return total, per


def load_runs(tsv):
    runs = []
    base = pathlib.Path(tsv).resolve().parent
    with open(tsv, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            # Result paths are relative to the sweep dir, so a stored sweep stays readable anywhere.
            result = json.load(open(base / row["result"]))
            total = result["total"]
            cpu_s, per_cpu = server_cpu(result)
            target = result["target"]
            servers = target.get("servers") or [{}]
            runs.append({
                "round": int(row["round"]),
                "side": row["side"],
                "point": row["point"],
                "mix": row["mix"],
                "result": row["result"],
                "target": target.get("version"),
                "target_kind": target.get("kind"),
                "target_git_commit": target.get("git_commit"),
                "target_conf": servers[0].get("conf"),
                "cluster": result.get("cluster"),
                "throughput_ops_s": total["throughput_ops_s"],
                "p50_us": total["p50_us"],
                "p99_us": total["p99_us"],
                "p99_9_us": total["p99_9_us"],
                # Per operation kind: a mix's total p99 hides how its reads and writes differ.
                "getData_p99_us": ((result.get("ops") or {}).get("getData") or {}).get("p99_us"),
                "setData_p99_us": ((result.get("ops") or {}).get("setData") or {}).get("p99_us"),
                "errors": total["errors"],
                "server_cpu_s": cpu_s,
                "ops_per_server_cpu_s": per_cpu,
                "server_switches_per_op": (result.get("context_switches") or {}).get("server_per_op"),
                # The leader's transaction-log writes in the measured phase (mntr; both sides).
                "leader_fsyncs_per_s": (result.get("log_writes") or {}).get("leader_fsyncs_per_s"),
                "leader_entries_per_fsync": (result.get("log_writes") or {}).get("leader_entries_per_fsync"),
                "loadgen_ops_per_cpu_s": result.get("loadgen_ops_per_cpu_s"),
                # Share of one core loadgen used while measuring: near 100% (pinned to one core)
                # means the client, not the server, set the pace.
                "loadgen_cpu_share": result.get("loadgen_cpu_s", 0) / max(result.get("elapsed_s") or 0, 1e-9),
                "loadgen_git_commit": result.get("loadgen_git_commit"),
                "pinning": result.get("pinning"),
                "load_average": result.get("load_average"),
                "machine": result.get("machine"),
                "settings": result["settings"],
            })
    return runs


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio_range(runs, key, numerator="warren", denominator="zookeeper"):
    """numerator/denominator (Warren/ZooKeeper unless told) per round, of the runs of one point
    and mix: median, min, max."""
    by_round = {}
    for r in runs:
        by_round.setdefault(r["round"], {})[r["side"]] = r[key]
    ratios = [s[numerator] / s[denominator] for s in by_round.values()
              if s.get(numerator) is not None and s.get(denominator)]
    if not ratios:
        return None
    return statistics.median(ratios), min(ratios), max(ratios)


def fmt(v, digits=0):
    return "-" if v is None else f"{v:,.{digits}f}"


def pct(v):
    return "-" if v is None else f"{v:.0%}"


def fmt_ratio(r):
    return "-" if r is None else f"{r[0]:.2f}x [{r[1]:.2f}, {r[2]:.2f}]"


def point_order(key):
    point, mix = key
    clients, pipeline = (int(x) for x in point.split("x"))
    return (mix, clients * pipeline, clients)


def zk_throttling(out):
    """The largest value of each throttle key over all saved ZooKeeper mntr files."""
    worst = {}
    for f in sorted((out / "zookeeper").glob("mntr-*.txt")):
        for line in f.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) == 2 and parts[0] in ZK_THROTTLE_KEYS:
                worst[parts[0]] = max(worst.get(parts[0], 0), float(parts[1]))
    return worst


def zk_config(out):
    """Node 1's zoo.cfg (zoo.cfg in sweeps before --nodes 3) without its per-round paths, ports
    and server list."""
    cfg = next((c for c in (out / "zookeeper" / "zoo-1.cfg", out / "zookeeper" / "zoo.cfg") if c.exists()), None)
    if cfg is None:
        return None
    skip = ("dataDir=", "dataLogDir=", "clientPort=", "server.")
    return ", ".join(l for l in cfg.read_text().splitlines() if l and not l.startswith(skip))


def first_line(path):
    return path.read_text().splitlines()[0] if path.exists() else None


def rows(runs):
    """One dict per (point, mix): the ceiling, each side's medians and the ratios."""
    out = []
    for point, mix in sorted({(r["point"], r["mix"]) for r in runs}, key=point_order):
        group = [r for r in runs if r["point"] == point and r["mix"] == mix]
        canned = [r for r in group if r["side"] == "canned"]
        row = {"point": point, "mix": mix, "sides": {},
               "ratio_ops_s": ratio_range([r for r in group if r["side"] in SIDES], "throughput_ops_s"),
               "ratio_ops_per_cpu_s": ratio_range([r for r in group if r["side"] in SIDES], "ops_per_server_cpu_s")}
        if canned:
            row["ceiling"] = {
                "ops_s": median([r["throughput_ops_s"] for r in canned]),
                "loadgen_cpu_share": median([r["loadgen_cpu_share"] for r in canned]),
                "p50_us": median([r["p50_us"] for r in canned]),
                "p99_us": median([r["p99_us"] for r in canned]),
                "p99_9_us": median([r["p99_9_us"] for r in canned]),
                "loadgen_ops_per_cpu_s": median([r["loadgen_ops_per_cpu_s"] for r in canned]),
                "ops_per_server_cpu_s": median([r["ops_per_server_cpu_s"] for r in canned]),
                "server_switches_per_op": median([r["server_switches_per_op"] for r in canned]),
            }
        for side in SIDES:
            rs = [r for r in group if r["side"] == side]
            if rs:
                row["sides"][side] = {k: median([r[k] for r in rs]) for k in
                                      ("throughput_ops_s", "p50_us", "p99_us", "p99_9_us", "ops_per_server_cpu_s",
                                       "server_switches_per_op", "leader_fsyncs_per_s", "leader_entries_per_fsync",
                                       "loadgen_ops_per_cpu_s", "loadgen_cpu_share")}
                for kind in ("getData_p99_us", "setData_p99_us"):
                    values = [r[kind] for r in rs if r.get(kind)]
                    row["sides"][side][kind] = median(values) if values else None
                row["sides"][side]["errors"] = sum(r["errors"] for r in rs)
                row["sides"][side]["rounds"] = len(rs)
        out.append(row)
    return out


def table(table_rows):
    lines = ["| point | mix | side | ops/s | p50 µs | p99 µs | p99.9 µs | ops/server CPU-s | server ctx sw/op "
             "| leader fsyncs/s | entries/fsync | loadgen CPU | errors | ratio ops/s | ratio ops/CPU-s |",
             "|" + "---|" * 15]
    for row in table_rows:
        c = row.get("ceiling")
        if c:
            lines.append(f"| {row['point']} | {row['mix']} | loadgen ceiling (canned replies) | {fmt(c['ops_s'])} "
                         f"| {fmt(c['p50_us'])} | {fmt(c['p99_us'])} | {fmt(c['p99_9_us'])} | {fmt(c['ops_per_server_cpu_s'])} "
                         f"| {fmt(c['server_switches_per_op'], 2)} | | | {pct(c['loadgen_cpu_share'])} | | | |")
        for side in SIDES:
            s = row["sides"].get(side)
            if not s:
                continue
            near = c and c["ops_s"] and s["throughput_ops_s"] >= NEAR_CEILING * c["ops_s"]
            cells = [row["point"], row["mix"], side + (" (near ceiling)" if near else ""),
                     fmt(s["throughput_ops_s"]), fmt(s["p50_us"]), fmt(s["p99_us"]), fmt(s["p99_9_us"]),
                     fmt(s["ops_per_server_cpu_s"]), fmt(s["server_switches_per_op"], 2),
                     fmt(s.get("leader_fsyncs_per_s")), fmt(s.get("leader_entries_per_fsync"), 1),
                     pct(s["loadgen_cpu_share"]),
                     str(s["errors"]),
                     fmt_ratio(row["ratio_ops_s"]) if side == "warren" else "",
                     fmt_ratio(row["ratio_ops_per_cpu_s"]) if side == "warren" else ""]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def per_kind_table(table_rows):
    """getData and setData p99 apart, each side's median over rounds and Warren's over
    ZooKeeper's (below 1: Warren's tail is shorter)."""
    lines = ["| point | mix | getData p99 µs Warren | ZooKeeper | Warren/ZooKeeper | setData p99 µs Warren | ZooKeeper "
             "| Warren/ZooKeeper |", "|" + "---|" * 8]
    for row in table_rows:
        w, z = row["sides"].get("warren") or {}, row["sides"].get("zookeeper") or {}
        cells = [row["point"], row["mix"]]
        for kind in ("getData_p99_us", "setData_p99_us"):
            a, b = w.get(kind), z.get(kind)
            cells += [fmt(a) if a else "-", fmt(b) if b else "-", f"{a / b:.2f}" if a and b else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def cautions(runs, table_rows, settings):
    """What the data itself says should not be trusted."""
    notes = []
    for row in table_rows:
        c = row.get("ceiling")
        for side, s in row["sides"].items():
            if c and c["ops_s"] and s["throughput_ops_s"] >= NEAR_CEILING * c["ops_s"]:
                notes.append(f"{row['point']} {row['mix']}: {side} reached {s['throughput_ops_s'] / c['ops_s']:.0%} "
                             f"of loadgen's ceiling (canned replies), so its ops/s says as much about the client and "
                             f"loopback (round trips, wake-ups) as about the server.")
            if settings.get("pinned", "no") != "no" and (s["loadgen_cpu_share"] or 0) >= 0.9:
                notes.append(f"{row['point']} {row['mix']}: loadgen kept its core {s['loadgen_cpu_share']:.0%} busy "
                             f"against {side}: the client may have set the pace.")
            if s["errors"]:
                notes.append(f"{row['point']} {row['mix']}: {side} had {s['errors']} error replies (not counted "
                             f"in ops/s or latencies).")
        for name in ("ratio_ops_s", "ratio_ops_per_cpu_s"):
            r = row[name]
            if r and r[1] > 0 and r[2] / r[1] > NOISY_SPREAD:
                notes.append(f"{row['point']} {row['mix']}: the {name.replace('_', ' ')} spread over rounds "
                             f"from {r[1]:.2f}x to {r[2]:.2f}x: noisy, trust its median loosely.")
    if settings.get("pinned", "no") == "no":
        notes.append("Not pinned: latencies include the scheduler moving loadgen and the server between the two "
                     "cores (a cross-core wake-up costs ~90 µs on this VM), and the client competes with the "
                     "server for CPU, so ops/s understates both sides; ops per server CPU-second is the steadier "
                     "figure.")
    clusters = "; ".join(sorted({str(r["cluster"]) for r in runs if r["side"] in SIDES}))
    if settings.get("nodes", "1") == "1":
        notes.append(f"Like for like, but single nodes ({clusters}): no replication cost on either side; "
                     "`bench/sweep.sh --nodes 3` measures 3-node clusters.")
    else:
        notes.append(f"Like for like, {settings['nodes']}-node clusters on one machine ({clusters}): every write "
                     "is durable on a majority on both sides (each node its own data dir on the same disk); "
                     "loadgen's sessions go round-robin over the nodes; server CPU is the sum over the nodes.")
    missing = [r for r in runs if r["ops_per_server_cpu_s"] is None]
    if missing:
        notes.append(f"{len(missing)} runs have no server CPU figure (no server pid recorded).")
    if settings.get("data_dir_filesystem", "").startswith("tmpfs"):
        notes.append("The data dirs were on tmpfs: fsync costs nothing there, so no write number is durable-disk "
                     "performance.")
    return notes


def cpus_each_side(settings, cpus):
    """What the pinning let each side use, said per configuration: pinning all servers on one
    CPU weighs far more on ZooKeeper's thread-per-stage design than on Warren's executors."""
    nodes = int(settings.get("nodes", "1"))
    cores = settings.get("warren_cores", "?")
    servers = "the 3 ZooKeeper JVMs" if nodes > 1 else "the ZooKeeper JVM"
    warren = (f"the {nodes} Warren nodes ({cores} executor thread(s) each, plus glommio's blocking pool)"
              if nodes > 1 else f"the Warren node ({cores} executor thread(s), plus glommio's blocking pool)")
    if settings.get("pinned", "no") != "no":
        return (f"pinned: {servers} (dozens of threads each: request stages, quorum, GC) or {warren} shared "
                f"CPU 0; loadgen had CPU 1 to itself. On one CPU every hand-off between ZooKeeper's stages is a "
                f"context switch, so pinning costs ZooKeeper more than Warren: read the unpinned sweep first")
    return (f"unpinned: servers and loadgen shared all {cpus} CPUs; {servers} may use every CPU (their threads run "
            f"in parallel); {warren} may use at most {cores} CPU(s) per node for requests; loadgen competes with both")


def summary(runs, settings, out):
    table_rows = rows(runs)
    first = runs[0]
    s = first["settings"]
    lines = ["# Warren vs Apache ZooKeeper sweep", ""]
    lines.append(f"- Command: `{settings.get('command', '?')}` at repo commit {settings.get('repo_commit', '?')} "
                 f"({settings.get('repo_dirty_files', '?')} modified tracked files)")
    m = first["machine"] or {}
    lines.append(f"- Machine: {m.get('cpus')} CPUs ({m.get('cpu_model')}), {m.get('os')} {m.get('kernel')} "
                 f"{m.get('arch')}; pinning: {settings.get('pinned')}; data dirs on "
                 f"{settings.get('data_dir_filesystem', 'not recorded')}")
    for side in SIDES + ("canned",):
        rs = [r for r in runs if r["side"] == side]
        if rs:
            commits = sorted({str(r["target_git_commit"]) for r in rs if r["target_git_commit"]})
            lines.append(f"- {side}: {sorted({r['target'] for r in rs})}"
                         + (f", commit {commits}" if commits else "")
                         + f", cluster {sorted({str(r['cluster']) for r in rs})}")
    lines.append(f"- CPUs each side could use: {cpus_each_side(settings, m.get('cpus'))}")
    conf = next((r["target_conf"] for r in runs if r["side"] == "warren" and r["target_conf"]), None)
    lines.append(f"- Warren started as `{settings.get('warren_start')}`; its `conf`: "
                 + (", ".join(f"{k}={v}" for k, v in conf.items() if k in ("cores", "shards", "maxRequestBytes"))
                    if isinstance(conf, dict) else "not recorded"))
    lines.append(f"- ZooKeeper zoo.cfg: {zk_config(out)}; JVM: `{settings.get('zookeeper_jvm')}`; "
                 f"{first_line(out / 'zookeeper' / 'java-version.txt')}")
    throttle = zk_throttling(out)
    lines.append("- ZooKeeper throttling over all runs (max of each mntr key): "
                 + (", ".join(f"{k}={v:g}" for k, v in throttle.items()) if throttle else "no mntr saved"))
    lines.append(f"- loadgen {sorted({str(r['loadgen_git_commit']) for r in runs})}: {s['keys']} keys of "
                 f"{s['value_size']} B, key distribution {s['key_distribution']}, closed loop, warmup "
                 f"{s.get('warmup_ops')} ops (own seed stream), then {s.get('duration_s')} s measured, seed {s['seed']}; "
                 f"{settings.get('rounds')} rounds, ZooKeeper first in odd rounds and Warren first in even ones, "
                 "fresh data dirs every round")
    lines.append("")
    lines.append("Values: median over rounds, of successful replies only (errors apart). Ratio: Warren/ZooKeeper "
                 "of each round, median [min, max]. Ops per server CPU-second: successful ops of the measured "
                 "phase / the server process's user+system CPU seconds in that phase (/proc/PID/stat, read by "
                 "loadgen right before and after it). The loadgen ceiling row is the same loadgen run against "
                 "`loadgen canned-server` (canned replies, no tree, no disk; its CPU column is the canned "
                 "server's), run at the start of every round: a server measured near or above it at a point is limited by "
                 "the client or by loopback round trips there, not by itself. loadgen "
                 "CPU: loadgen's user+system CPU seconds / the measured seconds (100% = one core busy; "
                 "with --pin loadgen has one core, so near 100% means the client set the pace). Server ctx sw/op: "
                 "the server's voluntary + involuntary context switches over its threads in the measured phase "
                 "(/proc/PID/task/*/status) per reply. Leader fsyncs/s and entries/fsync: the leader's transaction-log "
                 "writes in the measured phase and the requests each made durable (mntr `zk_cnt_fsynctime` and "
                 "`zk_sum_sync_processor_batch_size` read by loadgen right before and after it; both servers report "
                 "them; Warren's is one O_DSYNC WAL write per batch; - for runs recorded before loadgen read them).")
    lines.append("")
    lines += table(table_rows)
    lines.append("")
    lines.append("Per operation kind (p99 of successful replies, median over rounds):")
    lines.append("")
    lines += per_kind_table(table_rows)
    lines.append("")
    lines.append("## Numbers to read with care (derived from the runs above)")
    lines.append("")
    lines += [f"- {n}" for n in cautions(runs, table_rows, settings)]
    return "\n".join(lines) + "\n", table_rows


def summarize(args):
    out = pathlib.Path(args.out)
    settings = dict(s.split("=", 1) for s in args.setting)
    if not settings and (out / "sweep.json").exists():
        # Re-summarizing a stored sweep: keep the settings sweep.sh recorded.
        settings = json.load(open(out / "sweep.json"))["settings"]
    runs = load_runs(args.runs)
    if not runs:
        raise SystemExit("sweep_summary: no runs")
    text, table_rows = summary(runs, settings, out)
    (out / "sweep.json").write_text(json.dumps({"settings": settings, "rows": table_rows, "runs": runs},
                                               indent=1) + "\n")
    (out / "summary.md").write_text(text)
    print(text)


DOC_HEAD = """# Benchmarks

Generated by `scripts/benchmarks-doc.sh` from the newest stored sweep of its shape (3-node
clusters unpinned, the headline: docs/benchmarks.md; 3-node clusters with every server pinned
on one CPU: docs/benchmarks-pinned.md; single nodes: docs/benchmarks-single-node.md; written by
hand: failover in docs/benchmarks-failover.md, snapshots and restarts in
docs/benchmarks-snapshots.md, what one replicated write costs in docs/architecture.md), `{rel}` (its
`summary.md`, `sweep.json`, every loadgen result JSON and `.hgrm` in `runs/`, ZooKeeper's
zoo.cfg, `java -version` and `mntr` after every run in `zookeeper/`); do not edit by hand.
Every setting below is read from those files.

**Reproduce:** `scripts/setup.sh` once (Debian's `zookeeper` package, Java), then the command
below. It builds warren and loadgen, runs every point and mix against `loadgen canned-server`
(loadgen's ceiling), then the rounds against ZooKeeper and Warren, and writes a new
`results/<version>/sweep-<time>/`. **Regenerate this page:** `scripts/benchmarks-doc.sh`.
Absolute numbers on a shared 2-core VM move from run to run: compare the ratios of one sweep,
not numbers across sweeps. `target/release/loadgen compare A.json B.json` puts two runs side
by side and refuses mismatched settings with `--fail-on-regression`.

"""


def floor_multiple(sweep, key):
    """Warren's server CPU per request as a multiple of the canned floor's at one point and mix
    of a sweep: the floor's ops per server CPU-second / Warren's in each round (both run in it,
    so a machine slower in one round moves both), median [min, max]; None if either is missing."""
    runs = [r for r in sweep.get("runs", []) if (r["point"], r["mix"]) == key]
    return ratio_range(runs, "ops_per_server_cpu_s", numerator="canned", denominator="warren")


def before_after(before_dir, after_dir, link_base):
    """The before/after table: per point and mix present in both sweeps, Warren's ops per
    server CPU-second, its CPU per request as a multiple of the floor's, and its ratio to
    ZooKeeper, each computed within its own sweep (absolute numbers move between sweeps)."""
    before_sweep, after_sweep = (json.load(open(d / "sweep.json")) for d in (before_dir, after_dir))
    before = {(r["point"], r["mix"]): r for r in before_sweep["rows"]}
    after = {(r["point"], r["mix"]): r for r in after_sweep["rows"]}
    commit = lambda d: json.load(open(d / "sweep.json"))["settings"].get("repo_commit", "?")
    link = lambda d: os.path.relpath(d / "summary.md", link_base)
    lines = [f"## Before and after: [{before_dir.name}]({link(before_dir)}) (commit {commit(before_dir)}) "
             f"→ [{after_dir.name}]({link(after_dir)}) (commit {commit(after_dir)})", "",
             "Each figure is a median over its sweep's rounds; the multiples and ratios are taken within one sweep, "
             "so they compare across sweeps where absolute numbers would not. x floor: Warren's server CPU per "
             "request / the canned-reply server's at the same point, in each round (both run in it), median "
             "[min, max] over rounds (1.0 = as cheap as a server that only answers). vs ZooKeeper: Warren's ops per server CPU-second / ZooKeeper's, median "
             "over rounds. Both sweeps' loadgen differ when their commits do (read each sweep's summary).", "",
             "| point | mix | Warren ops/server CPU-s before | after | x floor before | after "
             "| vs ZooKeeper before | after | Warren ops/s before | after |", "|" + "---|" * 10]
    for key in sorted(set(before) & set(after), key=point_order):
        b, a = before[key], after[key]
        wb, wa = b["sides"].get("warren", {}), a["sides"].get("warren", {})
        fb, fa = floor_multiple(before_sweep, key), floor_multiple(after_sweep, key)
        rb, ra = b.get("ratio_ops_per_cpu_s"), a.get("ratio_ops_per_cpu_s")
        cells = [key[0], key[1], fmt(wb.get("ops_per_server_cpu_s")), fmt(wa.get("ops_per_server_cpu_s")),
                 fmt_ratio(fb), fmt_ratio(fa),
                 f"{rb[0]:.2f}x" if rb else "-", f"{ra[0]:.2f}x" if ra else "-",
                 fmt(wb.get("throughput_ops_s")), fmt(wa.get("throughput_ops_s"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n"


def doc(sweep_dir, out_path, before_dir=None):
    sweep_dir = pathlib.Path(sweep_dir).resolve()
    out_path = pathlib.Path(out_path).resolve()
    text = (sweep_dir / "summary.md").read_text()
    link = os.path.relpath(sweep_dir / "summary.md", out_path.parent)
    shown = os.path.relpath(sweep_dir, pathlib.Path.cwd())
    body = text.replace("# Warren vs Apache ZooKeeper sweep\n",
                        f"## Warren vs Apache ZooKeeper: [{sweep_dir.name}]({link})\n", 1)
    changes = before_after(pathlib.Path(before_dir).resolve(), sweep_dir, out_path.parent) if before_dir else ""
    out_path.write_text(DOC_HEAD.format(rel=shown) + changes + body)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--doc", action="store_true", help="write docs from <sweep dir> to <out file>")
    parser.add_argument("runs", help="runs.tsv (or, with --doc, the sweep dir)")
    parser.add_argument("out", help="the sweep dir (or, with --doc, the markdown file)")
    parser.add_argument("--setting", action="append", default=[])
    parser.add_argument("--before", help="with --doc: an earlier sweep dir, for a before/after table")
    args = parser.parse_args()
    if args.doc:
        doc(args.runs, args.out, args.before)
    else:
        summarize(args)


if __name__ == "__main__":
    main()
