#!/usr/bin/env bash
# Warren vs Apache ZooKeeper with the same loadgen settings, in one run, on loopback.
#
#   bench/compare-zookeeper.sh [--results-dir DIR] [loadgen args...]
#
# Defaults: --ops 200k --mix 90r10w --seed 1 (each is used unless you pass that flag yourself).
# 1. Installs Debian's `zookeeper` package if /usr/share/zookeeper is missing (apt-get, as root).
# 2. Builds target/release/warren and target/release/loadgen if missing.
# 3. Starts a 3-node ZooKeeper ensemble on 127.0.0.1 (fsync on, as shipped; -Xmx256m each),
#    waits (bounded) until srvr reports leader/follower on all three, runs loadgen with
#    --servers on all three, then stops the ensemble.
# 4. Runs loadgen with the same settings against Warren: loadgen starts a local warren itself.
#    Warren is a SINGLE NODE until replication lands, so this is not yet like for like.
# 5. Prints both sides and the ratio Warren/ZooKeeper. Results: <results-dir>/<version>/<run-id>.json
#    (+ .hgrm); the JSON's target.version says which server it measured.
# Only the ZooKeeper processes this script started are stopped (trap on EXIT); its temp dir is removed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

results_dir=results
user_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --results-dir) results_dir="$2"; shift 2 ;;
    --results-dir=*) results_dir="${1#*=}"; shift ;;
    --servers|--servers=*) echo "compare-zookeeper.sh: --servers is chosen by this script" >&2; exit 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) user_args+=("$1"); shift ;;
  esac
done
has_arg() { local a; for a in "${user_args[@]+"${user_args[@]}"}"; do [[ "$a" == "$1" || "$a" == "$1="* ]] && return 0; done; return 1; }
lg_args=()
has_arg --ops || has_arg --duration || lg_args+=(--ops 200k)
has_arg --mix || lg_args+=(--mix 90r10w)
has_arg --seed || lg_args+=(--seed 1)
lg_args+=("${user_args[@]+"${user_args[@]}"}")

# --- 1. Apache ZooKeeper -------------------------------------------------------------------
if [[ ! -d /usr/share/zookeeper ]]; then
  echo "== installing Debian package zookeeper"
  sudo_=""; [[ $(id -u) -eq 0 ]] || sudo_=sudo
  timeout 600 $sudo_ apt-get update
  DEBIAN_FRONTEND=noninteractive timeout 900 $sudo_ apt-get install -y --no-install-recommends zookeeper
fi
command -v java >/dev/null || { echo "compare-zookeeper.sh: java not found" >&2; exit 1; }
zk_cp="/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"   # the jar's manifest lists its deps
[[ -f /usr/share/java/zookeeper.jar ]] || { echo "compare-zookeeper.sh: /usr/share/java/zookeeper.jar missing" >&2; exit 1; }

# --- 2. binaries -----------------------------------------------------------------------------
if [[ ! -x target/release/warren ]]; then timeout 1800 cargo build --release -p net --bin warren; fi
if [[ ! -x target/release/loadgen ]]; then timeout 1800 cargo build --release -p loadgen; fi
loadgen="$root/target/release/loadgen"

# --- 3. ensemble -----------------------------------------------------------------------------
tmp="$(mktemp -d -t compare-zk.XXXXXX)"
zk_pids=()
cleanup() {
  local p
  for p in "${zk_pids[@]+"${zk_pids[@]}"}"; do kill "$p" 2>/dev/null || true; done
  for p in "${zk_pids[@]+"${zk_pids[@]}"}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  zk_pids=()
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# nine free loopback ports: client, peer, election for each of three servers
read -r -a ports <<<"$(python3 - <<'PY'
import socket
socks = []
for _ in range(9):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)"
servers=""
for i in 1 2 3; do
  cport=${ports[$(( (i-1)*3 ))]}
  servers+="${servers:+,}127.0.0.1:$cport"
done
for i in 1 2 3; do
  d="$tmp/zk$i"; mkdir -p "$d/data"; echo "$i" >"$d/data/myid"
  {
    echo "tickTime=2000"
    echo "initLimit=10"
    echo "syncLimit=5"
    echo "dataDir=$d/data"
    echo "clientPort=${ports[$(( (i-1)*3 ))]}"
    echo "clientPortAddress=127.0.0.1"
    echo "maxClientCnxns=0"
    echo "4lw.commands.whitelist=*"
    echo "admin.enableServer=false"
    for j in 1 2 3; do
      echo "server.$j=127.0.0.1:${ports[$(( (j-1)*3+1 ))]}:${ports[$(( (j-1)*3+2 ))]}"
    done
  } >"$d/zoo.cfg"
  java -Xms256m -Xmx256m -Dzookeeper.root.logger=WARN,CONSOLE -cp "$zk_cp" \
    org.apache.zookeeper.server.quorum.QuorumPeerMain "$d/zoo.cfg" >"$d/log" 2>&1 &
  zk_pids+=($!)
done
echo "== ZooKeeper ensemble (3 nodes, fsync on): $servers"

srvr_mode() { # host:port -> leader|follower|standalone|"" (bounded)
  timeout 3 python3 - "$1" <<'PY' 2>/dev/null || true
import socket, sys
h, p = sys.argv[1].rsplit(":", 1)
try:
    s = socket.create_connection((h, int(p)), timeout=2); s.sendall(b"srvr")
    out = b""
    while True:
        b = s.recv(4096)
        if not b: break
        out += b
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("Mode:"): print(line.split(":", 1)[1].strip())
except Exception:
    pass
PY
}
deadline=$(( SECONDS + 90 ))
while :; do
  modes=(); ok=1
  for s in ${servers//,/ }; do m="$(srvr_mode "$s")"; modes+=("${m:-down}"); [[ "$m" == leader || "$m" == follower ]] || ok=0; done
  [[ $ok -eq 1 ]] && break
  for p in "${zk_pids[@]}"; do
    kill -0 "$p" 2>/dev/null || { echo "compare-zookeeper.sh: a ZooKeeper process died; log:" >&2; tail -n 30 "$tmp"/zk*/log >&2; exit 1; }
  done
  if (( SECONDS > deadline )); then
    echo "compare-zookeeper.sh: no quorum within 90 s (modes: ${modes[*]})" >&2; tail -n 30 "$tmp"/zk*/log >&2; exit 1
  fi
  sleep 1
done
echo "== quorum: ${modes[*]}"

run_loadgen() { # label, log, args...
  local label="$1" log="$2"; shift 2
  echo "== loadgen against $label: ${lg_args[*]}"
  local rc=0
  set +e
  timeout 3600 "$loadgen" "${lg_args[@]}" --results-dir "$results_dir" "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  [[ $rc -eq 0 ]] || { echo "compare-zookeeper.sh: loadgen against $label failed (exit $rc)" >&2; exit 1; }
}
run_loadgen "Apache ZooKeeper (3-node ensemble)" "$tmp/zk.out" --servers "$servers"
zk_json="$(sed -n 's/^results: //p' "$tmp/zk.out" | tail -n 1)"
# stop the ensemble so its JVMs do not share the two cores with Warren's run
for p in "${zk_pids[@]}"; do kill "$p" 2>/dev/null || true; done
for p in "${zk_pids[@]}"; do timeout 10 tail --pid="$p" -f /dev/null || kill -9 "$p" 2>/dev/null || true; done
zk_pids=()

# --- 4. Warren -------------------------------------------------------------------------------
echo "== Warren: loadgen starts a local SINGLE-NODE warren (replication not built yet; not like for like)"
run_loadgen "Warren (single node)" "$tmp/warren.out"
warren_json="$(sed -n 's/^results: //p' "$tmp/warren.out" | tail -n 1)"
[[ -f "$zk_json" && -f "$warren_json" ]] || { echo "compare-zookeeper.sh: result JSON not found" >&2; exit 1; }

# --- 5. side by side -------------------------------------------------------------------------
python3 - "$zk_json" "$warren_json" <<'PY'
import json, sys
zk, wr = (json.load(open(p)) for p in sys.argv[1:3])
s = zk["settings"]
print()
print(f"Same settings: {s['ops']} ops, mix {s['mix']}, {s['clients']} clients x pipeline {s['pipeline']}, "
      f"{s['keys']} keys of {s['value_size']} B, seed {s['seed']}")
print(f"ZooKeeper: {zk['target']['version']} ({zk['target'].get('nodes', '?')} nodes)  {sys.argv[1]}")
print(f"Warren:    {wr['target']['version']} ({wr['target'].get('nodes', '?')} node, single node until replication lands)  {sys.argv[2]}")
print()
rows = [("throughput (ops/s)", "throughput_ops_s", True)] + [
    (f"{n} (µs)", k, False) for n, k in
    [("p50", "p50_us"), ("p90", "p90_us"), ("p99", "p99_us"), ("p99.9", "p99_9_us"), ("max", "max_us")]]
print(f"{'total':<20}{'ZooKeeper':>14}{'Warren':>14}{'Warren/ZK':>12}")
for name, k, hi in rows:
    a, b = zk["total"][k], wr["total"][k]
    r = f"{b / a:.2f}x" if a else "-"
    print(f"{name:<20}{a:>14,.0f}{b:>14,.0f}{r:>12}")
print("(throughput: higher is better; latencies: lower is better)")
for side, j in (("ZooKeeper", zk), ("Warren", wr)):
    if j["total"]["errors"]:
        print(f"note: {side} had {j['total']['errors']} errors: {j['total']['errors_by_code']}")
PY
