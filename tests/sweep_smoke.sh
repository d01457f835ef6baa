#!/usr/bin/env bash
# Smoke test of the side-by-side benchmark command (bench/sweep.sh) with tiny settings: 2 rounds,
# one point, one mix, 1 s each, against real Apache ZooKeeper (Debian package), a real warren and
# loadgen's canned-reply server. Checks the order of rounds (ABBA), that every run has its server
# CPU, that the summary and the generated docs page hold every side, that --nodes 3 measures a
# Warren 3-node cluster against a ZooKeeper 3-node ensemble (one tiny round), and that other
# node counts are refused. Writes only into a temp dir; sweep.sh stops the servers it started.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d -t warren-sweep-smoke-XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
failures=0
ok() { echo "ok   - $1"; }
fail() { echo "FAIL - $1" >&2; failures=$((failures + 1)); }
check() { # description, command...
  local what="$1"
  shift
  if "$@"; then ok "$what"; else fail "$what"; fi
}

set +e
"$repo/bench/sweep.sh" --nodes 2 >"$tmp/nodes2.out" 2>&1
rc=$?
set -e
check "--nodes 2 is refused (exit 2)" test "$rc" = 2
check "--nodes 2 says what is possible" grep -q "1 (vs ZooKeeper standalone) or 3" "$tmp/nodes2.out"

if ! timeout 600 "$repo/bench/sweep.sh" --nodes 3 --rounds 1 --duration 1s --warmup 500 --points 4x2 --mixes 90r10w \
  --no-ceiling --results-dir "$tmp/results3" >"$tmp/sweep3.out" 2>&1; then
  cat "$tmp/sweep3.out" >&2
  fail "bench/sweep.sh --nodes 3 runs to the end"
else
  ok "bench/sweep.sh --nodes 3 runs to the end"
  sweep3="$(find "$tmp/results3" -mindepth 2 -maxdepth 2 -type d -name 'sweep-*' | head -n 1)"
  check "--nodes 3: both sides ran as 3-node clusters, server CPU summed over 3 pids" python3 - "$sweep3/sweep.json" "$sweep3/runs" <<'PY'
import glob, json, sys
runs = json.load(open(sys.argv[1]))["runs"]
sides = sorted(r["side"] for r in runs)
clusters = [json.load(open(f)) for f in glob.glob(sys.argv[2] + "/**/*.json", recursive=True)]
three = all(c["target"]["nodes"] == 3 and len(c["server_cpu"]["per_server"]) == 3 for c in clusters)
modes = all(sorted(s["mode"] for s in c["target"]["servers"]) == ["follower", "follower", "leader"] for c in clusters)
sys.exit(0 if sides == ["warren", "zookeeper"] and len(clusters) == 2 and three and modes else 1)
PY
  check "--nodes 3: the ensemble's zoo.cfg lists three servers" test "$(grep -c '^server\.' "$sweep3/zookeeper/zoo-1.cfg")" = 3
fi

if ! timeout 600 "$repo/bench/sweep.sh" --rounds 2 --duration 1s --warmup 500 --points 4x2 --mixes 90r10w \
  --results-dir "$tmp/results" >"$tmp/sweep.out" 2>&1; then
  cat "$tmp/sweep.out" >&2
  fail "bench/sweep.sh runs to the end"
  exit 1
fi
ok "bench/sweep.sh runs to the end"
sweep="$(find "$tmp/results" -mindepth 2 -maxdepth 2 -type d -name 'sweep-*' | head -n 1)"
check "the sweep dir exists" test -n "$sweep"

# Every round starts with the canned ceiling; then ZooKeeper first in round 1, Warren first in round 2.
order="$(awk -F'\t' 'NR > 1 {printf "%s:%s ", $1, $2}' "$sweep/runs.tsv")"
check "rounds alternate (got: $order)" test "$order" = "1:canned 1:zookeeper 1:warren 2:canned 2:warren 2:zookeeper "

check "every run has its server CPU and ops per server CPU-second" python3 - "$sweep/sweep.json" <<'PY'
import json, sys
runs = json.load(open(sys.argv[1]))["runs"]
bad = [r for r in runs if not r["server_cpu_s"] or not r["ops_per_server_cpu_s"] or r["throughput_ops_s"] <= 0]
sys.exit(1 if bad or len(runs) != 6 else 0)
PY
check "summary has the ceiling row" grep -q "| 4x2 | 90r10w | loadgen ceiling" "$sweep/summary.md"
check "summary has both sides with a ratio" grep -Eq "^\| 4x2 \| 90r10w \| warren.*x \[" "$sweep/summary.md"
check "summary has ZooKeeper's row" grep -Eq "^\| 4x2 \| 90r10w \| zookeeper" "$sweep/summary.md"
check "zoo.cfg is on record with forceSync=yes" grep -q "^forceSync=yes" "$sweep/zookeeper/zoo-1.cfg"
check "ZooKeeper's mntr is kept for every run" test "$(find "$sweep/zookeeper" -name 'mntr-*' | wc -l)" = 2
check "java -version is kept" grep -qi "version" "$sweep/zookeeper/java-version.txt"
check "the summary states the ZooKeeper JVM flags" grep -q -- "-Xmx1g" "$sweep/summary.md"
check "the summary states the data dirs' filesystem" grep -Eq "data dirs on [a-z0-9]+ on " "$sweep/summary.md"

"$repo/scripts/benchmarks-doc.sh" "$sweep" "$tmp/benchmarks.md" >/dev/null
check "the docs page is generated from the sweep" grep -Eq "^\| 4x2 \| 90r10w \| warren" "$tmp/benchmarks.md"
check "the docs page names the command" grep -q "bench/sweep.sh --rounds 2" "$tmp/benchmarks.md"
check "without an earlier sweep the page has no before/after table" bash -c '! grep -q "^## Before and after" "$1"' _ "$tmp/benchmarks.md"
"$repo/scripts/benchmarks-doc.sh" --before "$sweep" "$sweep" "$tmp/benchmarks-ba.md" >/dev/null
check "--before adds the before/after table with Warren's row" grep -Eq "^\| 4x2 \| 90r10w \| [0-9,]+ \| [0-9,]+ \| [0-9.]+x \[[0-9.]+, [0-9.]+\] \| [0-9.]+x \[" "$tmp/benchmarks-ba.md"

[[ $failures == 0 ]] || { echo "sweep_smoke: $failures failed" >&2; exit 1; }
