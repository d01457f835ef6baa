# Sourced by the script suites (zkcli_smoke.sh, curator_suite.sh): a temp dir, the server they
# start on a free loopback port (or ZK_TEST_SERVER, started by someone else), and an exit trap
# that stops only the server they started and removes the temp dir.
# Needs: $suite (name in messages), $warren (the binary). Sets: $tmp, $server_log, and after
# start_server: $server (host:port) and $pid (empty for ZK_TEST_SERVER).

# shellcheck source=scripts/proc.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/proc.sh"
tmp="$(mktemp -d -t "warren-$suite-XXXXXX")"
server_log="$tmp/server.log"
pid=""
cleanup() {
  stop_process "$pid" 50
  rm -rf "$tmp"
}
trap cleanup EXIT

# start_server READY_SECONDS [warren start flags...]: starts $warren and waits for `imok`
# (ZooKeeper's JVM behind tests/zk_as_warren.sh takes a few seconds). With WARREN_NODES=N (N > 1)
# it starts `warren dev-cluster --nodes N` instead and $server lists every node.
start_server() {
  local ready_seconds="$1"
  shift
  if [[ -n "${ZK_TEST_SERVER:-}" ]]; then
    server="$ZK_TEST_SERVER"
    return
  fi
  [[ -x "$warren" ]] || { echo "$suite: $warren missing (cargo build --release --bins)" >&2; exit 1; }
  if (( ${WARREN_NODES:-1} > 1 )); then
    start_cluster "$ready_seconds" "$@"
    return
  fi
  local port
  port="$(free_port)"
  "$warren" start --host 127.0.0.1 --port "$port" --data-dir "$tmp/data" "$@" >"$server_log" 2>&1 &
  pid=$!
  server="127.0.0.1:$port"
  local ready="" tenths
  for ((tenths = 0; tenths < ready_seconds * 10; tenths++)); do
    if [[ "$(fourlw 127.0.0.1 "$port" ruok)" == imok* ]]; then ready=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -z "$ready" ]]; then
    echo "$suite: server not ready on $server" >&2
    tail -50 "$server_log" >&2 || true
    exit 1
  fi
}

# start_cluster READY_SECONDS [warren start flags...]: `warren dev-cluster` with $WARREN_NODES
# nodes; waits until it has printed every node's address.
start_cluster() {
  local ready_seconds="$1" tenths cores=1 flags=()
  shift
  # --cores belongs to dev-cluster itself (it allocates a peer port per core).
  while [[ $# -gt 0 ]]; do
    if [[ "$1" == --cores ]]; then cores="$2"; shift 2; else flags+=("$1"); shift; fi
  done
  : >"$tmp/addrs"
  "$warren" dev-cluster --nodes "$WARREN_NODES" --cores "$cores" --data-dir "$tmp/data" -- "${flags[@]}" \
    >"$tmp/addrs" 2>"$server_log" &
  pid=$!
  for ((tenths = 0; tenths < ready_seconds * 10; tenths++)); do
    [[ "$(wc -l <"$tmp/addrs")" -ge "$WARREN_NODES" ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if [[ "$(wc -l <"$tmp/addrs")" -lt "$WARREN_NODES" ]]; then
    echo "$suite: the $WARREN_NODES-node cluster did not start" >&2
    tail -50 "$server_log" >&2 || true
    exit 1
  fi
  server="$(paste -sd, "$tmp/addrs")"
}
