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
# - Like for like: Warren 1 node vs ZooKeeper standalone, or with `--nodes 3` a Warren 3-node
#   cluster vs a ZooKeeper 3-node ensemble (all nodes on loopback, each with its own data dir;
#   loadgen's sessions round-robin over the nodes; server CPU is the sum over the nodes).
# - Server cost: each server process's CPU seconds (utime+stime from /proc) per run, reported as
#   ops per server CPU-second next to ops/s.
# - ZooKeeper configured on the record: zoo.cfg written out (forceSync=yes, a dataLogDir of its
#   own, snapCount, preAllocSize, globalOutstandingLimit high enough never to throttle), a 1 GiB
#   heap with G1 and AlwaysPreTouch, log4j at WARN; `java -version`, zoo.cfg and `mntr` after
#   every run are kept.
# - --pin: servers on CPU 0 (all nodes of a cluster), loadgen on CPU 1 (taskset), recorded.
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
if [[ "$nodes" != 1 && "$nodes" != 3 ]]; then
  echo "sweep.sh: --nodes is 1 (vs ZooKeeper standalone) or 3 (vs a ZooKeeper ensemble)" >&2
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

server_pids=() ports=()
stop_server() {
  local pid
  for pid in "${server_pids[@]}"; do stop_process "$pid" 100; done
  server_pids=() ports=()
}
cleanup() { stop_server; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

server_cpus=() loadgen_cpus=()
if [[ "$pin" == 1 ]]; then server_cpus=(taskset -c 0); loadgen_cpus=(taskset -c 1); fi

# CPU seconds (user+system, all threads) of a live process.
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.3f", ($14 + $15) / hz}' "/proc/$1/stat"; }
wait_ready() { # log, what srvr must say: ZooKeeper answers `imok` before it serves; `srvr` names its Mode once it does
  local port pid answers leaders
  for _ in $(seq 1 600); do # 60 s
    answers=0 leaders=0
    for port in "${ports[@]}"; do
      local srvr
      srvr="$(fourlw 127.0.0.1 "$port" srvr)"
      [[ "$srvr" == *"$2"* ]] && answers=$((answers + 1))
      [[ "$srvr" == *"Mode: leader"* ]] && leaders=$((leaders + 1))
      # A Warren node refuses sessions until it is in contact with a leader of every group.
      [[ "$(fourlw 127.0.0.1 "$port" mntr)" == *$'warren_serving\t0'* ]] && answers=$((answers - 1))
    done
    # A cluster serves once one node leads.
    (( answers == ${#ports[@]} )) && { (( ${#ports[@]} == 1 )) || (( leaders == 1 )); } && return 0
    for pid in "${server_pids[@]}"; do kill -0 "$pid" 2>/dev/null || break 2; done
    sleep 0.1
  done
  echo "sweep.sh: servers not ready on ports ${ports[*]}; log:" >&2
  tail -40 "$1" >&2 || true
  exit 1
}

peer_ports=()
pick_ports() { # nodes → ports (client), peer_ports (a run of free ports each: one per Warren core, or ZooKeeper's quorum and election ports)
  local i p run=$(( warren_cores > 2 ? warren_cores : 2 ))
  ports=() peer_ports=()
  for i in $(seq 1 "$1"); do
    ports+=("$(free_port)")
    while :; do
      p="$(free_port)"
      python3 -c 'import socket,sys
for q in range(int(sys.argv[1]) + 1, int(sys.argv[1]) + int(sys.argv[2])):
    socket.socket().bind(("127.0.0.1", q))' "$p" "$run" 2>/dev/null && break
    done
    peer_ports+=("$p")
  done
}

zk_classpath="/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar"
zk_jvm=(-Xms1g -Xmx1g -XX:+UseG1GC -XX:+AlwaysPreTouch -Dzookeeper.root.logger=WARN,CONSOLE
  -Dlog4j.configuration=file:/etc/zookeeper/conf/log4j.properties)
java -version >"$out/zookeeper/java-version.txt" 2>&1

start_zookeeper() { # round → sets server_pids, ports
  local i main=org.apache.zookeeper.server.ZooKeeperServerMain
  pick_ports "$nodes"
  (( nodes == 1 )) || main=org.apache.zookeeper.server.quorum.QuorumPeerMain
  for i in $(seq 1 "$nodes"); do
    local dir="$tmp/zk-$1-$i"
    mkdir -p "$dir/data" "$dir/datalog"
    cat >"$dir/zoo.cfg" <<CFG
tickTime=2000
dataDir=$dir/data
dataLogDir=$dir/datalog
clientPort=${ports[$((i - 1))]}
clientPortAddress=127.0.0.1
forceSync=yes
snapCount=100000
preAllocSize=65536
globalOutstandingLimit=100000
maxClientCnxns=0
4lw.commands.whitelist=*
admin.enableServer=false
CFG
    if (( nodes > 1 )); then
      echo "$i" >"$dir/data/myid"
      { echo "initLimit=10"; echo "syncLimit=5"; } >>"$dir/zoo.cfg"
      local j
      for j in $(seq 1 "$nodes"); do
        local peer="${peer_ports[$((j - 1))]}"
        echo "server.$j=127.0.0.1:$peer:$((peer + 1))" >>"$dir/zoo.cfg"
      done
    fi
    cp "$dir/zoo.cfg" "$out/zookeeper/zoo-$i.cfg"
    "${server_cpus[@]}" java "${zk_jvm[@]}" -cp "$zk_classpath" "$main" "$dir/zoo.cfg" >"$dir/log" 2>&1 &
    server_pids+=($!)
  done
  wait_ready "$tmp/zk-$1-1/log" "Mode: "
}

start_warren() { # round → sets server_pids, ports
  local i peers=() cluster=()
  pick_ports "$nodes"
  for i in $(seq 1 "$nodes"); do peers+=("$i=127.0.0.1:${peer_ports[$((i - 1))]}"); done
  for i in $(seq 1 "$nodes"); do
    (( nodes == 1 )) || cluster=(--node-id "$i" --peers "$(IFS=,; echo "${peers[*]}")")
    "${server_cpus[@]}" "$warren" start --host 127.0.0.1 --port "${ports[$((i - 1))]}" --data-dir "$tmp/warren-$1-$i" \
      --cores "$warren_cores" "${cluster[@]}" >"$tmp/warren-$1-$i.log" 2>&1 &
    server_pids+=($!)
  done
  wait_ready "$tmp/warren-$1-1.log" "Mode: "
}

start_canned() { # loadgen's ceiling: canned replies, no tree, no disk (one server whatever --nodes)
  ports=("$(free_port)")
  "${server_cpus[@]}" "$loadgen" canned-server --port "${ports[0]}" >"$tmp/canned.log" 2>&1 &
  server_pids+=($!)
  wait_ready "$tmp/canned.log" "canned"
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
      local servers pids
      servers="$(printf '127.0.0.1:%s,' "${ports[@]}")" pids="$(IFS=,; echo "${server_pids[*]}")"
      "${loadgen_cpus[@]}" timeout 900 "$loadgen" --servers "${servers%,}" --server-pid "$pids" \
        --duration "$duration" --warmup "$warmup" --clients "$clients" --pipeline "$pipeline" --mix "$mix" \
        --seed "$seed" --results-dir "$out/runs" >"$tmp/lg.out" 2>&1 || { cat "$tmp/lg.out" >&2; exit 1; }
      result="$(sed -n 's/^results: //p' "$tmp/lg.out" | tail -n 1)"
      result="${result#"$out"/}" # relative to the sweep dir, so a stored sweep reads anywhere
      grep -E '^(overall|server CPU)' "$tmp/lg.out" || true
      printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$side" "$point" "$mix" "$result" >>"$runs"
      [[ "$side" != zookeeper ]] || fourlw 127.0.0.1 "${ports[0]}" mntr >"$out/zookeeper/mntr-round$round-$point-$mix.txt"
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
  --setting "nodes=$nodes" \
  --setting "warren_start=warren start --host 127.0.0.1 --port PORT --data-dir DIR --cores $warren_cores$( (( nodes == 1 )) || echo " --node-id N --peers 1=127.0.0.1:P1,2=127.0.0.1:P2,3=127.0.0.1:P3")" \
  --setting "repo_commit=$repo_commit" --setting "repo_dirty_files=$repo_dirty_files" \
  --setting "data_dir_filesystem=$data_fs"
echo "sweep: $out/summary.md"
