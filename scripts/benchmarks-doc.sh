#!/usr/bin/env bash
# Regenerates the benchmark pages from the stored sweeps (bench/sweep.sh's
# results/<version>/sweep-<time>/), each with a before/after table against the sweep of the same
# shape (node count and pinning) stored before it (or the one given with --before; --before none:
# no table):
#   scripts/benchmarks-doc.sh                      # every page, each from the newest sweep of its
#                                                  # shape: docs/benchmarks.md (the headline: 3-node
#                                                  # clusters, unpinned), docs/benchmarks-pinned.md
#                                                  # (3-node, pinned), docs/benchmarks-single-node.md
#   scripts/benchmarks-doc.sh [--before SWEEP_DIR|none] SWEEP_DIR [OUT]   # one page (default OUT:
#                                                  # docs/benchmarks.md)
# Every setting on the page is read from the sweeps' files (bench/sweep_summary.py --doc).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
before=""
if [[ "${1:-}" == "--before" ]]; then
  before="${2:?--before needs a sweep dir or none}"
  shift 2
fi
sweep="${1:-}"
out="${2:-docs/benchmarks.md}"
# Sweep dirs are named by UTC time, so they sort by age whatever the release folder. With a
# shape, only the sweeps of that shape: "3 unpinned", "3 pinned", "1 pinned"... (a sweep without
# the nodes setting is a single-node one).
sweeps() {
  local dir
  find results -mindepth 2 -maxdepth 2 -type d -name 'sweep-*' -printf '%f %p\n' 2>/dev/null | sort | cut -d' ' -f2 |
    while read -r dir; do
      if [[ -z "${1:-}" || "$(shape_of "$dir")" == "$1" ]]; then echo "$dir"; fi
    done
}
shape_of() {
  python3 -c 'import json,sys
s = json.load(open(sys.argv[1]))["settings"]
print(s.get("nodes", "1"), "unpinned" if s.get("pinned", "no") == "no" else "pinned")' "$1/sweep.json" 2>/dev/null || echo "1 pinned"
}
if [[ -z "$sweep" ]]; then
  [[ -z "$before" ]] || { echo "benchmarks-doc.sh: --before needs a SWEEP_DIR" >&2; exit 2; }
  newest3="$(sweeps "3 unpinned" | tail -n 1)" newest3p="$(sweeps "3 pinned" | tail -n 1)"
  newest1="$( (sweeps "1 unpinned"; sweeps "1 pinned") | sort -t/ -k3 | tail -n 1)"
  [[ -z "$newest3" ]] || "$0" "$newest3" docs/benchmarks.md
  [[ -z "$newest3p" ]] || "$0" "$newest3p" docs/benchmarks-pinned.md
  [[ -z "$newest1" ]] || "$0" "$newest1" docs/benchmarks-single-node.md
  [[ -n "$newest3$newest3p$newest1" ]] || { echo "benchmarks-doc.sh: no stored sweep (run bench/sweep.sh first)" >&2; exit 1; }
  exit 0
fi
[[ -n "$sweep" && -f "$sweep/summary.md" ]] || { echo "benchmarks-doc.sh: no sweep with a summary.md (run bench/sweep.sh first)" >&2; exit 1; }
if [[ -z "$before" ]]; then
  # The sweep of the same shape stored just before this one, if any.
  before="$(sweeps "$(shape_of "$sweep")" | grep -B1 -Fx "$sweep" | head -n 1 || true)"
  [[ "$before" == "$sweep" ]] && before=""
fi
[[ "$before" == "none" ]] && before=""
if [[ -n "$before" ]]; then
  [[ -f "$before/sweep.json" ]] || { echo "benchmarks-doc.sh: $before has no sweep.json" >&2; exit 1; }
  python3 bench/sweep_summary.py --doc "$sweep" "$out" --before "$before"
  echo "benchmarks-doc.sh: wrote $out from $sweep (before/after against $before)"
else
  python3 bench/sweep_summary.py --doc "$sweep" "$out"
  echo "benchmarks-doc.sh: wrote $out from $sweep"
fi
