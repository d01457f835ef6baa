#!/usr/bin/env bash
# The README's run command until loadgen exists: builds warren, starts one node on loopback,
# uses it from zkCli.sh and kazoo, kills it with -9, restarts it and shows the data survived.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --bin warren
PORT="${WARREN_PORT:-2181}"
DATA="$(mktemp -d /tmp/warren-demo.XXXXXX)"
WARREN=target/release/warren
ZKCLI=/usr/share/zookeeper/bin/zkCli.sh
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$DATA"; }
trap cleanup EXIT

ruok() { exec 3<>/dev/tcp/127.0.0.1/"$PORT" && printf ruok >&3 && cat <&3; }
start() {
  "$WARREN" start --port "$PORT" --data-dir "$DATA" 2>>"$DATA.log" &
  pid=$!
  for _ in $(seq 100); do
    [ "$(ruok 2>/dev/null)" = imok ] && return 0
    sleep 0.1
  done
  echo "warren did not start; log:"; cat "$DATA.log"; exit 1
}
zk() { timeout 60 "$ZKCLI" -server "127.0.0.1:$PORT" "$@" 2>/dev/null | grep -v -e '^WATCHER' -e '^WatchedEvent' -e '^$' -e '^Connecting' || true; }

start
echo "== warren is up on 127.0.0.1:$PORT (data in $DATA)"
echo "== zkCli.sh: create, set, get, ls"
zk create /demo "hello"
zk set /demo "hello, warren"
zk get /demo
zk create /demo/child ""
zk ls /demo
echo "== kazoo: a lock and a data watch"
.venv/bin/python - "$PORT" <<'PY'
import sys, threading
from kazoo.client import KazooClient
zk = KazooClient(hosts=f"127.0.0.1:{sys.argv[1]}"); zk.start(timeout=15)
seen = threading.Event()
@zk.DataWatch("/demo")
def watch(data, stat):
    if data == b"changed by kazoo": seen.set()
with zk.Lock("/demo-lock", "demo"):
    zk.set("/demo", b"changed by kazoo")
print("kazoo: lock taken and released; watch fired:", seen.wait(10))
zk.stop()
PY
echo "== kill -9 and restart: acknowledged writes survive"
kill -9 "$pid"; wait "$pid" 2>/dev/null || true
start
zk get /demo
zk delete /demo/child
zk ls /demo
echo "== stats (mntr)"
exec 3<>/dev/tcp/127.0.0.1/"$PORT"; printf mntr >&3; cat <&3
