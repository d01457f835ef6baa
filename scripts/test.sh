#!/usr/bin/env bash
# THE test command (README, CI): setup, one release build of every binary, then every suite
# against target/release/warren:
#   1. cargo nextest run --workspace --release   (unit tests + tests/ integration suites)
#   2. .venv/bin/pytest -q tests/python           (kazoo recipes; again on a 3-node cluster, 2 cores each)
#   3. tests/zkcli_smoke.sh                      (Apache ZooKeeper's zkCli.sh)
#   4. tests/curator_suite.sh                    (Apache Curator 5 recipes and the Java client;
#                                                 again on a 3-node cluster)
#   5. tests/sweep_smoke.sh                      (bench/sweep.sh, tiny, vs Apache ZooKeeper)
# All suites run even if one fails; a summary follows; the exit status is non-zero on any failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$(pwd)"

scripts/setup.sh

echo "== build (release, all binaries and tests)"
cargo build --release --workspace --bins
export WARREN_BIN="${CARGO_TARGET_DIR:-$repo/target}/release/warren"
[[ -x "$WARREN_BIN" ]] || { echo "test: $WARREN_BIN was not built" >&2; exit 1; }

logs="$(mktemp -d -t warren-test-logs-XXXXXX)"
declare -a names=() results=()
passed=0 failed=0

count() { # word, text → sum of the numbers written before the word (0 if none)
  { grep -oE "[0-9]+ $1" <<<"$2" || true; } | awk '{s+=$1} END {print s+0}'
}

record() { # name, exit status
  names+=("$1")
  if [[ "$2" == 0 ]]; then results+=("ok"); else results+=("FAILED (exit $2)"); fi
}

echo "== rust: unit and integration tests"
set +e
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --release --no-fail-fast 2>&1 | tee "$logs/rust.log"
  rc=${PIPESTATUS[0]}
  line="$(grep -E '^ *Summary .* tests? run:' "$logs/rust.log" | tail -1)"
  p="$(count passed "$line")" f="$(count failed "$line")" t="$(count 'timed out' "$line")"
else
  cargo test --workspace --release --no-fail-fast -- --test-threads=2 2>&1 | tee "$logs/rust.log"
  rc=${PIPESTATUS[0]}
  results_lines="$(grep -E '^test result:' "$logs/rust.log")"
  p="$(count passed "$results_lines")" f="$(count failed "$results_lines")" t=0
fi
set -e
passed=$((passed + p)); failed=$((failed + f + t))
# A failure that no test accounts for (e.g. a build error) still counts as one.
if [[ $rc != 0 && $((f + t)) == 0 ]]; then failed=$((failed + 1)); fi
record "rust (cargo nextest)" "$rc"

pytest_suite() { # name, log name, nodes, cores per node
  local name="$1" log="$logs/$2.log" rc line p f
  echo "== python: kazoo suite ($name)"
  set +e
  WARREN_NODES="$3" WARREN_CORES="$4" .venv/bin/pytest -q tests/python 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  line="$(grep -E '[0-9]+ (passed|failed|errors?)' "$log" | tail -1 || true)"
  p="$(count passed "$line")" f=$(( $(count failed "$line") + $(count error "$line") ))
  passed=$((passed + p)); failed=$((failed + f))
  # Exit 5 = no tests collected: that is a failure here too.
  if [[ $rc != 0 && $f == 0 ]]; then failed=$((failed + 1)); fi
  record "$name" "$rc"
}
pytest_suite "python (pytest + kazoo)" pytest 1 1
# Two Raft groups per node: recipes cross groups (leases, one order across groups).
pytest_suite "kazoo on 3 nodes" pytest3 3 2

# A suite script that prints `ok   - ` / `FAIL - ` lines: args name, log name, time limit (s), command.
script_suite() {
  local name="$1" log="$logs/$2.log" limit="$3" rc p f
  shift 3
  set +e
  timeout "$limit" "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  p="$(grep -c '^ok   - ' "$log" || true)"
  f="$(grep -c '^FAIL - ' "$log" || true)"
  p=${p:-0} f=${f:-0}
  passed=$((passed + p)); failed=$((failed + f))
  if [[ $rc != 0 && $f == 0 ]]; then failed=$((failed + 1)); fi
  record "$name" "$rc"
}

echo "== zkCli.sh smoke test"
script_suite "zkCli.sh smoke" zkcli 300 tests/zkcli_smoke.sh

echo "== Curator recipe suite"
script_suite "Curator recipes (Java)" curator 600 tests/curator_suite.sh

echo "== Curator recipe suite on a 3-node cluster"
script_suite "Curator on 3 nodes" curator3 600 env WARREN_NODES=3 tests/curator_suite.sh

echo "== benchmark sweep smoke test"
script_suite "bench sweep smoke" sweep 600 tests/sweep_smoke.sh

echo
echo "== summary (logs in $logs)"
status=0
for i in "${!names[@]}"; do
  printf '  %-26s %s\n' "${names[$i]}" "${results[$i]}"
  [[ "${results[$i]}" == ok ]] || status=1
done
echo "total: $passed passed, $failed failed"
exit $status
