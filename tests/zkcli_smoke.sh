#!/usr/bin/env bash
# Smoke test with Apache ZooKeeper's own CLI (Debian package `zookeeper`): starts a warren on a
# free loopback port and a temp data dir, runs zkCli.sh create/get/set/ls/stat/delete against it,
# checks the output, and stops only the warren it started.
# Env: WARREN_BIN (default target/release/warren), ZKCLI (default /usr/share/zookeeper/bin/zkCli.sh),
# ZK_TEST_SERVER=host:port to test an already running server instead.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
warren="${WARREN_BIN:-$repo/target/release/warren}"
zkcli="${ZKCLI:-/usr/share/zookeeper/bin/zkCli.sh}"
[[ -x "$zkcli" ]] || { echo "zkcli_smoke: $zkcli missing (run scripts/setup.sh)" >&2; exit 1; }

suite=zkcli_smoke
# shellcheck source=tests/server.sh
source "$repo/tests/server.sh"
start_server 20 --cores 1

node="/zkcli-smoke-$$-$RANDOM"
failures=0
check() { # description, output file, grep -E pattern
  if grep -Eq -- "$3" "$2"; then
    echo "ok   - $1"
  else
    echo "FAIL - $1: no match for /$3/ in:" >&2
    sed 's/^/    /' "$2" >&2
    failures=$((failures + 1))
  fi
}
check_not() {
  if grep -Eq -- "$3" "$2"; then
    echo "FAIL - $1: unexpected /$3/ in:" >&2
    sed 's/^/    /' "$2" >&2
    failures=$((failures + 1))
  else
    echo "ok   - $1"
  fi
}

# 1) One command per invocation (arguments).
cli() { timeout 60 "$zkcli" -server "$server" "$@" >"$tmp/out" 2>&1 || true; }
cli create "$node" hello
check "create $node" "$tmp/out" "Created $node"
cli get "$node"
check "get returns the data" "$tmp/out" "^hello$"

# 2) A session of several commands through stdin.
timeout 90 "$zkcli" -server "$server" >"$tmp/session" 2>&1 <<EOF || true
set $node world
get $node
create $node/child1 c1
create -s $node/seq- s
create -e $node/eph e
ls $node
stat $node
get -s $node
delete $node/child1
ls $node
quit
EOF
check "set then get shows new data" "$tmp/session" "^world$"
check "create child" "$tmp/session" "Created $node/child1"
check "sequential create has 10 digits" "$tmp/session" "Created $node/seq-[0-9]{10}"
check "ephemeral create" "$tmp/session" "Created $node/eph"
check "ls lists the children" "$tmp/session" "\[child1, eph, seq-[0-9]{10}\]|\[child1, seq-[0-9]{10}, eph\]|\[eph, child1, seq-[0-9]{10}\]|\[eph, seq-[0-9]{10}, child1\]|\[seq-[0-9]{10}, child1, eph\]|\[seq-[0-9]{10}, eph, child1\]"
check "stat shows dataVersion 1" "$tmp/session" "dataVersion = 1"
check "stat shows numChildren 3" "$tmp/session" "numChildren = 3"
check "ls after delete" "$tmp/session" "^\[(eph, seq-[0-9]{10}|seq-[0-9]{10}, eph)\]$"
check_not "no exceptions" "$tmp/session" "Exception|Node does not exist"

# 3) Errors surface as ZooKeeper errors; the ephemeral left with its session.
cli get "$node/nothing"
check "get of a missing node" "$tmp/out" "Node does not exist"
cli ls "$node"
check "ephemeral gone with its session" "$tmp/out" "^\[seq-[0-9]{10}\]$"
cli deleteall "$node"
cli ls "$node"
check "deleteall removed the tree" "$tmp/out" "Node does not exist"

if [[ -n "$pid" ]]; then
  kill -0 "$pid" 2>/dev/null && echo "ok   - warren still running" || { echo "FAIL - warren died" >&2; tail -50 "$server_log" >&2; failures=$((failures + 1)); }
fi
if (( failures > 0 )); then
  echo "zkcli_smoke: $failures check(s) failed" >&2
  exit 1
fi
echo "zkcli_smoke: all checks passed"
