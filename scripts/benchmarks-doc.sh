#!/usr/bin/env bash
# Regenerates docs/benchmarks.md from the newest stored sweep (bench/sweep.sh's
# results/<version>/sweep-<time>/), or from the sweep dir given:
#   scripts/benchmarks-doc.sh [SWEEP_DIR [OUT]]     (defaults: newest results/*/sweep-*, docs/benchmarks.md)
# Every setting on the page is read from the sweep's files (bench/sweep_summary.py --doc).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
sweep="${1:-}"
out="${2:-docs/benchmarks.md}"
if [[ -z "$sweep" ]]; then
  # Sweep dirs are named by UTC time, so the newest sorts last whatever the release folder.
  sweep="$(find results -mindepth 2 -maxdepth 2 -type d -name 'sweep-*' -printf '%f %p\n' 2>/dev/null | sort | tail -n 1 | cut -d' ' -f2)"
fi
[[ -n "$sweep" && -f "$sweep/summary.md" ]] || { echo "benchmarks-doc.sh: no sweep with a summary.md (run bench/sweep.sh first)" >&2; exit 1; }
python3 bench/sweep_summary.py --doc "$sweep" "$out"
echo "benchmarks-doc.sh: wrote $out from $sweep"
