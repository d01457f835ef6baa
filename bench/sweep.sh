#!/usr/bin/env bash
# Warren vs Apache ZooKeeper, side by side, the way a sceptical reader would run it:
#
#   bench/sweep.sh [--rounds 3] [--duration 10s] [--warmup 20000] [--points 1x1,64x1,256x1,16x8]
#                  [--mixes 90r10w,100w,100r] [--nodes 1] [--warren-cores 1] [--pin] [--no-ceiling]
#                  [--seed 1] [--results-dir results]
#
# - Same work on both sides: every point (clients x pipeline) and every mix, the same loadgen
#   settings and seed, --duration with a --warmup of unmeasured ops (the JIT warms up outside
#   the measurement), fresh data dirs for every round.
# - Rounds alternate the order (ABBA...): round 1 ZooKeeper first, round 2 Warren first, ...
# - Like for like: Warren 1 node vs ZooKeeper standalone (`--nodes 3` will be Warren 3 nodes vs a
#   ZooKeeper 3-node ensemble once replication exists; refused until then).
# - Server cost: each server process's CPU seconds (utime+stime from /proc) per run, reported as
#   ops per server CPU-second next to ops/s.
# - ZooKeeper configured on the record: zoo.cfg written out (forceSync=yes, a dataLogDir of its
#   own, snapCount, preAllocSize, globalOutstandingLimit high enough never to throttle), a 1 GiB
#   heap with G1 and AlwaysPreTouch, log4j at WARN; `java -version`, zoo.cfg and `mntr` after
#   every run are kept.
# - --pin: servers on CPU 0, loadgen on CPU 1 (taskset), recorded.
# - loadgen's own ceiling: every round starts with every point and mix against
#   `loadgen canned-server` (canned replies, no tree, no disk) with the same pinning; its ops/s,
#   latencies and loadgen's CPU stand next to every comparison (--no-ceiling skips it).
# - Server CPU is loadgen's own measurement (--server-pid): the server's utime+stime during the
#   measured phase only, so preload and warmup are not counted.
# Output: <results-dir>/<warren version>/sweep-<UTC time>/ with every loadgen JSON, sweep.json
# (all runs, server CPU, settings, machine) and summary.md (median of rounds, ratio min/max).
# Only the servers this script started are stopped (trap on EXIT).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/proc.sh
source "$root/scripts/proc.sh"

rounds=3 duration=10s warmup=20000 points=1x1,64x1,256x1,16x8 mixes=90r10w,100w,100r
nodes=1 warren_cores=1 pin=0 results_dir=results seed=1 ceiling=1
command_line="bench/sweep.sh $*"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --points) points="$2"; shift 2 ;;
    --mixes) mixes="$2"; shift 2 ;;
    --nodes) nodes="$2"; shift 2 ;;
    --warren-cores) warren_cores="$2"; shift 2 ;;
    --pin) pin=1; shift ;;
    --no-ceiling) ceiling=0; shift ;;
    --seed) seed="$2"; shift 2 ;;
    --results-dir) results_dir="$2"; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "sweep.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ "$nodes" != 1 ]]; then
  echo "sweep.sh: --nodes $nodes needs Warren replication, which does not exist yet; only --nodes 1 (vs ZooKeeper standalone)" >&2
  exit 2
fi
[[ -f /usr/share/java/zookeeper.jar ]] || { echo "sweep.sh: Apache ZooKeeper missing (run scripts/setup.sh)" >&2; exit 1; }
command -v java >/dev/null || { echo "sweep.sh: java missing (run scripts/setup.sh)" >&2; exit 1; }
if [[ "$pin" == 1 ]] && ! command -v taskset >/dev/null; then echo "sweep.sh: --pin needs taskset" >&2; exit 1; fi

timeout 1800 cargo build --release --workspace --bins # as scripts/test.sh: one feature set, no rebuild
warren="$root/target/release/warren"
loadgen="$root/target/release/loadgen"
version="$("$loadgen" --version | awk '{print $2}')"
[[ "$results_dir" == /* ]] || results_dir="$root/$results_dir"
out="$results_dir/$version/sweep-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out/runs" "$out/zookeeper"
tmp="$(mktemp -d -t warren-sweep-XXXXXX)"
# What was measured, taken before anything runs: the tree the binaries are built from, and the
# filesystem every data dir lives on (fsyncs on tmpfs would measure nothing).
repo_commit="$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
repo_dirty_files="$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null | wc -l)"
data_fs="$(df -T "$tmp" | awk 'NR == 2 {print $2 " on " $1 " mounted at " $7}')"

server_pid=""
stop_server() {
  stop_process "$server_pid" 100
  server_pid=""
}
cleanup() { stop_server; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

server_cpus=() loadgen_cpus=()
if [[ "$pin" == 1 ]]; then server_cpus=(taskset -c 0); loadgen_cpus=(taskset -c 1); fi

# CPU seconds (user+system, all threads) of a live process.
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.3f", ($14 + $15) / hz}' "/proc/$1/stat"; }
wait_ready() { # port, log, what srvr must say: ZooKeeper answers `imok` before it serves; `srvr` names its Mode once it does
  for _ in $(seq 1 600); do # 60 s
    [[ "$(fourlw 127.0.0.1 "$1" srvr)" == *"$3"* ]] && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "sweep.sh: server not ready on port $1; log:" >&2
  tail -40 "$2" >&2 || true
  exit 1
}

zk_classpath="/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar"
zk_jvm=(-Xms1g -Xmx1g -XX:+UseG1GC -XX:+AlwaysPreTouch -Dzookeeper.root.logger=WARN,CONSOLE
  -Dlog4j.configuration=file:/etc/zookeeper/conf/log4j.properties)
java -version >"$out/zookeeper/java-version.txt" 2>&1

start_zookeeper() { # round → sets server_pid, port
  local dir="$tmp/zk-$1"
  mkdir -p "$dir/data" "$dir/datalog"
  port="$(free_port)"
  cat >"$dir/zoo.cfg" <<CFG
tickTime=2000
dataDir=$dir/data
dataLogDir=$dir/datalog
clientPort=$port
clientPortAddress=127.0.0.1
forceSync=yes
snapCount=100000
preAllocSize=65536
globalOutstandingLimit=100000
maxClientCnxns=0
4lw.commands.whitelist=*
admin.enableServer=false
CFG
  cp "$dir/zoo.cfg" "$out/zookeeper/zoo.cfg"
  "${server_cpus[@]}" java "${zk_jvm[@]}" -cp "$zk_classpath" org.apache.zookeeper.server.ZooKeeperServerMain \
    "$dir/zoo.cfg" >"$dir/log" 2>&1 &
  server_pid=$!
  wait_ready "$port" "$dir/log" "Mode: "
}

start_warren() { # round → sets server_pid, port
  local dir="$tmp/warren-$1"
  port="$(free_port)"
  "${server_cpus[@]}" "$warren" start --host 127.0.0.1 --port "$port" --data-dir "$dir/data" \
    --cores "$warren_cores" >"$tmp/warren-$1.log" 2>&1 &
  server_pid=$!
  wait_ready "$port" "$tmp/warren-$1.log" "Mode: "
}

start_canned() { # loadgen's ceiling: canned replies, no tree, no disk
  port="$(free_port)"
  "${server_cpus[@]}" "$loadgen" canned-server --port "$port" >"$tmp/canned.log" 2>&1 &
  server_pid=$!
  wait_ready "$port" "$tmp/canned.log" "canned"
}

runs="$out/runs.tsv"
printf 'round\tside\tpoint\tmix\tresult\n' >"$runs"
run_side() { # round, side
  local round="$1" side="$2" point mix
  "start_$side" "$round"
  for point in ${points//,/ }; do
    for mix in ${mixes//,/ }; do
      local clients="${point%x*}" pipeline="${point#*x}" result
      echo "== round $round, $side, ${clients}x$pipeline, $mix"
      "${loadgen_cpus[@]}" timeout 900 "$loadgen" --servers "127.0.0.1:$port" --server-pid "$server_pid" \
        --duration "$duration" --warmup "$warmup" --clients "$clients" --pipeline "$pipeline" --mix "$mix" \
        --seed "$seed" --results-dir "$out/runs" >"$tmp/lg.out" 2>&1 || { cat "$tmp/lg.out" >&2; exit 1; }
      result="$(sed -n 's/^results: //p' "$tmp/lg.out" | tail -n 1)"
      result="${result#"$out"/}" # relative to the sweep dir, so a stored sweep reads anywhere
      grep -E '^(overall|server CPU)' "$tmp/lg.out" || true
      printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$side" "$point" "$mix" "$result" >>"$runs"
      [[ "$side" != zookeeper ]] || fourlw 127.0.0.1 "$port" mntr >"$out/zookeeper/mntr-round$round-$point-$mix.txt"
    done
  done
  stop_server
}

for round in $(seq 1 "$rounds"); do
  if (( round % 2 == 1 )); then order=(zookeeper warren); else order=(warren zookeeper); fi
  [[ "$ceiling" == 0 ]] || order=(canned "${order[@]}")
  for side in "${order[@]}"; do run_side "$round" "$side"; done
done

python3 "$root/bench/sweep_summary.py" "$runs" "$out" \
  --setting "rounds=$rounds" --setting "duration=$duration" --setting "warmup_ops=$warmup" \
  --setting "warren_cores=$warren_cores" --setting "pinned=$([[ $pin == 1 ]] && echo 'servers on CPU 0, loadgen on CPU 1' || echo no)" \
  --setting "zookeeper_jvm=${zk_jvm[*]}" --setting "seed=$seed" --setting "command=$command_line" \
  --setting "warren_start=warren start --host 127.0.0.1 --port PORT --data-dir DIR --cores $warren_cores" \
  --setting "repo_commit=$repo_commit" --setting "repo_dirty_files=$repo_dirty_files" \
  --setting "data_dir_filesystem=$data_fs"
echo "sweep: $out/summary.md"
