#!/usr/bin/env bash
# Regenerates docs/benchmarks.md from the newest stored sweep (bench/sweep.sh's
# results/<version>/sweep-<time>/), or from the sweep dir given, with a before/after table
# against the sweep stored before it (or the one given with --before; --before none: no table):
#   scripts/benchmarks-doc.sh [--before SWEEP_DIR|none] [SWEEP_DIR [OUT]]
#     (defaults: newest results/*/sweep-*, docs/benchmarks.md, the sweep before it)
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
# Sweep dirs are named by UTC time, so they sort by age whatever the release folder.
sweeps() { find results -mindepth 2 -maxdepth 2 -type d -name 'sweep-*' -printf '%f %p\n' 2>/dev/null | sort | cut -d' ' -f2; }
if [[ -z "$sweep" ]]; then
  sweep="$(sweeps | tail -n 1)"
fi
[[ -n "$sweep" && -f "$sweep/summary.md" ]] || { echo "benchmarks-doc.sh: no sweep with a summary.md (run bench/sweep.sh first)" >&2; exit 1; }
if [[ -z "$before" ]]; then
  # The sweep stored just before this one, if any.
  before="$(sweeps | grep -B1 -Fx "$sweep" | head -n 1 || true)"
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
