#!/usr/bin/env bash
# Snapshots and recovery, Warren vs Apache ZooKeeper 3.8 in the same run, one node each
# (Warren --cores 1; ZooKeeper standalone, fsync on, snapCount 100000, its default retention):
#   1. preload N znodes of 100 B (loadgen --keys N): RSS per znode (ZooKeeper: also its heap
#      after a full GC),
#   2. M setData over them, snapshots taken as each server does by default: throughput,
#      snapshot write time and size, data dir size,
#   3. kill -9 and restart: time until the first getData succeeds (restart to serving),
#   4. K setData with snapshots on (as in 2), then, after a restart with snapshots off
#      (Warren --snapshot-entries/--snapshot-bytes huge, ZooKeeper snapCount huge), K setData
#      again: write p99/p99.9 with and without snapshots, over runs of the same length (WAL
#      segment rotations and the disk's own stalls land in both).
# Every load loop is bounded (--ops). Prints a table and writes it to --out.
#
#   bench/snapshot_bench.sh [--znodes 1M] [--writes 5M] [--compare-writes 1M] [--out FILE]
set -euo pipefail
cd "$(dirname "$0")/.."

znodes=1M
writes=5M
quiet_writes=1M
only=""
out="results/0.1.0/snapshots-$(date -u +%Y%m%d).txt"
while (( $# )); do
  case "$1" in
    --znodes) znodes=$2; shift 2 ;;
    --writes) writes=$2; shift 2 ;;
    --compare-writes) quiet_writes=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    *) echo "snapshot_bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -f /usr/share/java/zookeeper.jar ]] || { echo "snapshot_bench.sh: Apache ZooKeeper missing (run scripts/setup.sh)" >&2; exit 1; }
cargo build --release -q -p net -p loadgen
warren=$PWD/target/release/warren
loadgen=$PWD/target/release/loadgen
tmp=$(mktemp -d /tmp/warren-snapbench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
count() { python3 -c "import sys; s=sys.argv[1]; m={'k':1000,'M':1000000}; print(int(float(s[:-1])*m[s[-1]]) if s[-1] in m else int(s))" "$1"; }
n_znodes=$(count "$znodes")

zk_classpath="/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar"
zk_jvm=(-Xms512m -Xmx6g -XX:+UseG1GC -Dzookeeper.root.logger=INFO,CONSOLE
  -Dlog4j.configuration=file:/etc/zookeeper/conf/log4j.properties)

start() { # side port snapshots(on|off) → sets pid
  local side=$1 port=$2 mode=$3
  if [[ $side == warren ]]; then
    local extra=()
    [[ $mode == on ]] || extra=(--snapshot-entries 1000000000000 --snapshot-bytes 1000000000000000)
    "$warren" start --port "$port" --data-dir "$tmp/warren" --cores 1 "${extra[@]}" >>"$tmp/warren.log" 2>&1 &
  else
    local snap=100000
    [[ $mode == on ]] || snap=1000000000
    mkdir -p "$tmp/zk/data"
    cat >"$tmp/zk/zoo.cfg" <<CFG
tickTime=2000
dataDir=$tmp/zk/data
clientPort=$port
clientPortAddress=127.0.0.1
forceSync=yes
snapCount=$snap
globalOutstandingLimit=100000
maxClientCnxns=0
4lw.commands.whitelist=*
admin.enableServer=false
CFG
    java "${zk_jvm[@]}" -cp "$zk_classpath" org.apache.zookeeper.server.ZooKeeperServerMain "$tmp/zk/zoo.cfg" >>"$tmp/zk.log" 2>&1 &
  fi
  pid=$!
  pids+=("$pid")
}

# Milliseconds from now until a getData of a preloaded key succeeds, or with "connect" until a
# session is established (before the preload) (bounded: 300 s).
until_serving_ms() {
  local port=$1 want=${2:-getdata} started now
  started=$(date +%s%N)
  for _ in $(seq 1 6000); do
    # loadgen exits 0 once it connects, whatever its ops did: the getData must have succeeded.
    local out
    out=$(timeout 5 "$loadgen" --servers "127.0.0.1:$port" --no-preload --keys 1 --ops 1 --mix 100r --clients 1 --pipeline 1 \
        --results-dir "$tmp/lg" 2>&1) && [[ $want == connect ]] && out="overall: 1 ops (0 errors)"
    if [[ $out == *"overall: 1 ops (0 errors)"* ]]; then
      now=$(date +%s%N)
      echo $(( (now - started) / 1000000 ))
      return
    fi
    sleep 0.05
  done
  echo "never"
}

run_json() { # port ops mix [extra] → path of the result JSON
  local port=$1 ops=$2 mix=$3; shift 3
  rm -rf "$tmp/lg"
  "$loadgen" --servers "127.0.0.1:$port" --keys "$znodes" --ops "$ops" --mix "$mix" --clients 16 --pipeline 8 \
    --server-pid "$pid" --results-dir "$tmp/lg" "$@" >"$tmp/lg.out" 2>&1 || { cat "$tmp/lg.out" >&2; exit 1; }
  ls "$tmp"/lg/*/*.json
}

figures() { # json → "ops/s p99 p99.9 (setData, ms) ops-per-server-cpu-s"
  python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s = r["ops"]["setData"]
ms = lambda us: f"{us / 1000:.1f}"
cpu = r.get("server_cpu", {}).get("ops_per_server_cpu_s")
print(f"{s['throughput_ops_s']:.0f}", ms(s["p99_us"]), ms(s["p99_9_us"]), f"{cpu:.0f}" if cpu else "-")
PY
}

declare -A result
for side in warren zookeeper; do
  if [[ -n $only && $side != "$only" ]]; then
    for key in rss_per_znode heap_per_znode snap_ms snap_bytes data_dir restart_ms snap_ops snap_cpu snap_p999 on_ops on_p99 on_p999 quiet_ops quiet_p99 quiet_p999; do
      result[$side.$key]=-
    done
    continue
  fi
  port=$(free_port)
  start "$side" "$port" on
  until_serving_ms "$port" connect >/dev/null
  base_rss=$(rss_kib "$pid")
  echo "== $side: preload $znodes znodes" >&2
  rm -rf "$tmp/lg"
  "$loadgen" --servers "127.0.0.1:$port" --keys "$znodes" --ops 1 --mix 100r --results-dir "$tmp/lg" >/dev/null 2>&1
  sleep 2
  loaded_rss=$(rss_kib "$pid")
  result[$side.rss_per_znode]=$(( (loaded_rss - base_rss) * 1024 / n_znodes ))
  if [[ $side == zookeeper ]]; then
    jcmd "$pid" GC.run >/dev/null 2>&1 || true
    used=$(jcmd "$pid" GC.heap_info 2>/dev/null | awk '/garbage-first heap/ {for (i=1;i<=NF;i++) if ($i=="used") print $(i+1)}' | tr -d 'K')
    result[$side.heap_per_znode]=$(( ${used:-0} * 1024 / n_znodes ))
  else
    result[$side.heap_per_znode]=-
  fi
  echo "== $side: $writes setData with snapshots on" >&2
  json=$(run_json "$port" "$writes" 100w)
  read -r ops p99 p999 cpu <<<"$(figures "$json")"
  result[$side.snap_ops]=$ops; result[$side.snap_p99]=$p99; result[$side.snap_p999]=$p999; result[$side.snap_cpu]=$cpu
  if [[ $side == zookeeper ]]; then
    mntr=$(exec 3<>"/dev/tcp/127.0.0.1/$port"; printf mntr >&3; cat <&3)
    result[$side.snap_ms]="$(awk '/zk_avg_snapshottime/ {a=$2} /zk_max_snapshottime/ {m=$2} END {print a "/" m}' <<<"$mntr")"
    # The newest may still be being written (ZooKeeper writes in place): the one before it.
    newest=$(ls -t "$tmp"/zk/data/version-2/snapshot.* | sed -n 2p)
    result[$side.snap_bytes]=$(stat -c %s "$newest")
  else
    result[$side.snap_ms]="$(grep 'snapshot written' "$tmp/warren.log" | sed 's/\x1b\[[0-9;]*m//g' |
      awk '{for (i=1;i<=NF;i++) if ($i ~ /^elapsed_ms=/) {split($i,a,"="); s+=a[2]; n++; if (a[2]>m) m=a[2]}} END {printf "%.0f/%d", s/n, m}')"
    result[$side.snap_bytes]=$(grep 'snapshot written' "$tmp/warren.log" | sed 's/\x1b\[[0-9;]*m//g' | tail -1 |
      awk '{for (i=1;i<=NF;i++) if ($i ~ /^bytes=/) {split($i,a,"="); print a[2]}}')
  fi
  dir=$tmp/warren; [[ $side == warren ]] || dir=$tmp/zk/data
  result[$side.data_dir]=$(du -sb "$dir" | awk '{printf "%.0f", $1 / 1048576}')
  echo "== $side: kill -9, restart" >&2
  kill -9 "$pid"; wait "$pid" 2>/dev/null || true
  start "$side" "$port" on
  result[$side.restart_ms]=$(until_serving_ms "$port")
  [[ $side != warren ]] || sed 's/\x1b\[[0-9;]*m//g' "$tmp/warren.log" | grep 'WAL replayed' | tail -1 >&2
  echo "== $side: $quiet_writes setData with snapshots on" >&2
  json=$(run_json "$port" "$quiet_writes" 100w --no-preload)
  read -r ops p99 p999 cpu <<<"$(figures "$json")"
  result[$side.on_ops]=$ops; result[$side.on_p99]=$p99; result[$side.on_p999]=$p999
  kill -9 "$pid"; wait "$pid" 2>/dev/null || true
  start "$side" "$port" off
  until_serving_ms "$port" >/dev/null
  echo "== $side: $quiet_writes setData with snapshots off" >&2
  json=$(run_json "$port" "$quiet_writes" 100w --no-preload)
  read -r ops p99 p999 cpu <<<"$(figures "$json")"
  result[$side.quiet_ops]=$ops; result[$side.quiet_p99]=$p99; result[$side.quiet_p999]=$p999
  kill -9 "$pid"; wait "$pid" 2>/dev/null || true
done

mkdir -p "$(dirname "$out")"
{
  echo "# Snapshots and recovery: $znodes znodes of 100 B, then $writes setData; one node each, same run, $(date -u +%FT%TZ)"
  echo "# Warren $(git rev-parse --short HEAD) --cores 1 (defaults: a snapshot every 50-100% of 100k entries and at least
#   a quarter of the tree's node count, 2 kept);"
  echo "# ZooKeeper 3.8 standalone, fsync on, snapCount 100000, no autopurge (its defaults); loadgen 16 sessions x 8."
  printf '%-44s %14s %14s\n' "" Warren ZooKeeper
  row() { printf '%-44s %14s %14s\n' "$1" "${result[warren.$2]}" "${result[zookeeper.$2]}"; }
  row "RSS growth per znode (B)" rss_per_znode
  row "heap in use per znode after full GC (B)" heap_per_znode
  row "snapshot write time avg/max (ms)" snap_ms
  row "snapshot size (bytes)" snap_bytes
  row "data dir after the writes (MiB)" data_dir
  row "kill -9 to serving a getData (ms)" restart_ms
  row "setData ops/s over the $writes" snap_ops
  row "setData ops per server CPU-s over the $writes" snap_cpu
  row "setData p99.9 / ms over the $writes" snap_p999
  row "$quiet_writes setData, snapshots on: ops/s" on_ops
  row "  p99 / ms" on_p99
  row "  p99.9 / ms" on_p999
  row "$quiet_writes setData, snapshots off: ops/s" quiet_ops
  row "  p99 / ms" quiet_p99
  row "  p99.9 / ms" quiet_p999
} | tee "$out"
