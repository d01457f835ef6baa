#!/usr/bin/env bash
# Rejoin of a wiped follower, Warren 3-node cluster vs Apache ZooKeeper 3.8 ensemble in the same
# run, all nodes on 127.0.0.1 (Warren --cores 1 each, default snapshot settings; ZooKeeper
# QuorumPeerMain, fsync on, snapCount 100000, -Xmx2g each, tickTime 2000, initLimit 300 ticks
# so a large SNAP is not cut off by it, syncLimit 10). Per side:
#   1. start 3 nodes, wait until all serve (srvr names a Mode, one leader; Warren: warren_serving 1),
#   2. preload N znodes of 100 B (loadgen --keys N over all three),
#   3. kill -9 a follower (Warren: a node that does not lead group 0, from mntr; ZooKeeper: srvr
#      Mode: follower),
#   4. M setData (--mix 100w --no-preload) against the two live nodes only,
#   5. wipe the follower's data (Warren: its whole --data-dir; ZooKeeper: dataDir/version-2, the
#      myid file kept), restart it with the same flags and time, talking only to that node
#      (every 50 ms, bounded at 300 s):
#        - restart -> its mntr zk_znode_count equals a live node's AND a getData through loadgen
#          against it alone succeeds (0 errors),
#        - restart -> it has applied everything written while it was down (Warren: mntr
#          warren_group_0_applied_index >= the leader's commit index before the restart;
#          ZooKeeper: srvr Zxid >= the leader's Zxid before the restart),
#      and records its data dir size, the bytes its open TCP sockets received (ss), the leader's
#      CPU seconds (utime+stime from /proc) from restart to caught up, and how it was synced
#      (Warren: its 'snapshot' log lines and the leader's 'snapshot sent' bytes; ZooKeeper: the
#      learner's 'Getting a snapshot/diff' line),
#   6. kill -9 every node of that side.
# Only the processes this script started are killed (trap on EXIT). Prints a table and writes it
# (with the sync log lines) to --out.
#
#   bench/rejoin_bench.sh [--znodes 1M] [--writes 300k] [--only warren|zookeeper] [--out FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/proc.sh
source scripts/proc.sh # free_port, fourlw

znodes=1M
writes=300k
only=""
out="results/0.1.0/rejoin-$(date -u +%Y%m%d).txt"
while (( $# )); do
  case "$1" in
    --znodes) znodes=$2; shift 2 ;;
    --writes) writes=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; exit 0 ;;
    *) echo "rejoin_bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -z $only || $only == warren || $only == zookeeper ]] || { echo "rejoin_bench.sh: --only warren|zookeeper" >&2; exit 2; }
[[ -f /usr/share/java/zookeeper.jar ]] || { echo "rejoin_bench.sh: Apache ZooKeeper missing (run scripts/setup.sh)" >&2; exit 1; }
[[ -x target/release/warren && -x target/release/loadgen ]] || cargo build --release -q -p net -p loadgen
tmp=$(mktemp -d /tmp/warren-rejoin.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
# Private copies: a rebuild of target/ during the run does not change the binary a restart runs.
mkdir -p "$tmp/bin"
cp target/release/warren target/release/loadgen "$tmp/bin/"
warren=$tmp/bin/warren
loadgen=$tmp/bin/loadgen

count() { python3 -c "import sys; s=sys.argv[1]; m={'k':1000,'M':1000000}; print(int(float(s[:-1])*m[s[-1]]) if s[-1] in m else int(s))" "$1"; }
now_ns() { date +%s%N; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
mntr_value() { awk -v k="$2" '$1 == k {print $2}' <<<"$1"; }
nocolor() { sed 's/\x1b\[[0-9;]*m//g' "$@"; }
mib() { du -sb "$1" | awk '{printf "%.1f", $1 / 1048576}'; }
# Bytes received by the open TCP sockets of a process (ss -ti bytes_received).
tcp_bytes_received() {
  ss -tinpH state established 2>/dev/null | awk -v pid="pid=$1," '
    /^[^ \t]/ || /users:/ { mine = index($0, pid) > 0 }
    mine { for (i = 1; i <= NF; i++) if ($i ~ /^bytes_received:/) { split($i, a, ":"); s += a[2] } }
    END { printf "%d", s }'
}
n_znodes=$(count "$znodes")
n_writes=$(count "$writes")
init_limit=300 sync_limit=10 tick_ms=2000

zk_classpath="/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar"
zk_jvm=(-Xms512m -Xmx2g -XX:+UseG1GC -Dzookeeper.root.logger=INFO,CONSOLE
  -Dlog4j.configuration=file:/etc/zookeeper/conf/log4j.properties)

port=() peer=() elect=() pid=() dir=()
setup() { # side: picks ports, writes configs
  local side=$1 i j
  port=() peer=() elect=() pid=() dir=()
  for i in 1 2 3; do port[i]=$(free_port); peer[i]=$(free_port); elect[i]=$(free_port); dir[i]=$tmp/$side-$i; done
  [[ $side == zookeeper ]] || return 0
  for i in 1 2 3; do
    mkdir -p "${dir[i]}/data"
    echo "$i" >"${dir[i]}/data/myid"
    cat >"${dir[i]}/zoo.cfg" <<CFG
tickTime=$tick_ms
initLimit=$init_limit
syncLimit=$sync_limit
dataDir=${dir[i]}/data
clientPort=${port[i]}
clientPortAddress=127.0.0.1
forceSync=yes
snapCount=100000
globalOutstandingLimit=100000
maxClientCnxns=0
4lw.commands.whitelist=*
admin.enableServer=false
CFG
    for j in 1 2 3; do echo "server.$j=127.0.0.1:${peer[j]}:${elect[j]}" >>"${dir[i]}/zoo.cfg"; done
  done
}

start_node() { # side i logfile
  local side=$1 i=$2 log=$3
  if [[ $side == warren ]]; then
    "$warren" start --host 127.0.0.1 --port "${port[i]}" --data-dir "${dir[i]}" --cores 1 --node-id "$i" \
      --peers "1=127.0.0.1:${peer[1]},2=127.0.0.1:${peer[2]},3=127.0.0.1:${peer[3]}" >>"$log" 2>&1 &
  else
    java "${zk_jvm[@]}" -cp "$zk_classpath" org.apache.zookeeper.server.quorum.QuorumPeerMain "${dir[i]}/zoo.cfg" >>"$log" 2>&1 &
  fi
  pid[i]=$!
  pids+=("${pid[i]}")
}

wait_ready() { # side: all three serve, one leads (bounded: 120 s)
  local side=$1 i srvr serving leaders
  for _ in $(seq 1 1200); do
    serving=0 leaders=0
    for i in 1 2 3; do
      srvr=$(fourlw 127.0.0.1 "${port[i]}" srvr)
      [[ $srvr == *"Mode: "* ]] || continue
      [[ $srvr == *"Mode: leader"* ]] && leaders=$((leaders + 1))
      [[ $side != warren || "$(fourlw 127.0.0.1 "${port[i]}" mntr)" == *$'warren_serving\t1'* ]] && serving=$((serving + 1))
    done
    (( serving == 3 && leaders == 1 )) && return 0
    for i in 1 2 3; do kill -0 "${pid[i]}" 2>/dev/null || { echo "rejoin_bench.sh: $side node $i exited" >&2; tail -30 "$tmp/$side-$i.log" >&2; exit 1; }; done
    sleep 0.1
  done
  echo "rejoin_bench.sh: $side cluster not ready in 120 s" >&2
  tail -30 "$tmp/$side-1.log" >&2
  exit 1
}

getdata_ok() { # port: one getData of /loadgen/k0000000 through this node alone, 0 errors
  local o
  o=$(timeout 10 "$loadgen" --servers "127.0.0.1:$1" --no-preload --keys 1 --ops 1 --mix 100r --clients 1 --pipeline 1 \
    --results-dir "$tmp/lg-probe" 2>&1) || return 1
  rm -rf "$tmp/lg-probe"
  [[ $o == *"overall: 1 ops (0 errors)"* ]]
}

leader_position() { # side i: the position a caught-up node must reach (Warren: group 0 commit index; ZooKeeper: Zxid)
  if [[ $1 == warren ]]; then
    mntr_value "$(fourlw 127.0.0.1 "${port[$2]}" mntr)" warren_group_0_commit_index
  else
    local z
    z=$(fourlw 127.0.0.1 "${port[$2]}" srvr | awk '/^Zxid:/ {print $2}')
    [[ -z $z ]] || echo $((z))
  fi
}
node_position() { # side i mntr-text
  if [[ $1 == warren ]]; then
    mntr_value "$3" warren_group_0_applied_index
  else
    local z
    z=$(fourlw 127.0.0.1 "${port[$2]}" srvr | awk '/^Zxid:/ {print $2}')
    [[ -z $z ]] || echo $((z))
  fi
}

declare -A result
rows=(znodes writes write_ops count_ms caught_ms target_count sync_kind snap_sent tcp_bytes data_dir leader_cpu)
logs_out=()
for side in warren zookeeper; do
  if [[ -n $only && $side != "$only" ]]; then
    for key in "${rows[@]}"; do result[$side.$key]=-; done
    continue
  fi
  echo "== $side: start 3 nodes" >&2
  setup "$side"
  for i in 1 2 3; do start_node "$side" "$i" "$tmp/$side-$i.log"; done
  wait_ready "$side"
  [[ $side != warren ]] || result[warren.version]=$(fourlw 127.0.0.1 "${port[1]}" srvr | sed -n 's/^Zookeeper version: //p')
  servers="127.0.0.1:${port[1]},127.0.0.1:${port[2]},127.0.0.1:${port[3]}"

  echo "== $side: preload $znodes znodes of 100 B" >&2
  rm -rf "$tmp/lg"
  timeout 1800 "$loadgen" --servers "$servers" --keys "$znodes" --ops 1 --mix 100r --results-dir "$tmp/lg" >"$tmp/lg.out" 2>&1 ||
    { cat "$tmp/lg.out" >&2; exit 1; }

  # The follower to kill and the leader.
  leader="" follower=""
  for i in 1 2 3; do
    if [[ $side == warren ]]; then
      m=$(fourlw 127.0.0.1 "${port[i]}" mntr)
      if [[ $(mntr_value "$m" warren_group_0_leader) == "$i" ]]; then leader=$i; else follower=$i; fi
    else
      s=$(fourlw 127.0.0.1 "${port[i]}" srvr)
      [[ $s == *"Mode: leader"* ]] && leader=$i
      [[ $s == *"Mode: follower"* ]] && follower=$i
    fi
  done
  [[ -n $leader && -n $follower ]] || { echo "rejoin_bench.sh: $side: no leader/follower found" >&2; exit 1; }
  live=()
  for i in 1 2 3; do [[ $i == "$follower" ]] || live+=("$i"); done
  echo "== $side: leader node $leader; kill -9 follower node $follower" >&2
  kill -9 "${pid[follower]}"; wait "${pid[follower]}" 2>/dev/null || true

  echo "== $side: $writes setData against nodes ${live[*]} only" >&2
  rm -rf "$tmp/lg"
  timeout 3600 "$loadgen" --servers "127.0.0.1:${port[${live[0]}]},127.0.0.1:${port[${live[1]}]}" --keys "$znodes" \
    --no-preload --ops "$writes" --mix 100w --results-dir "$tmp/lg" >"$tmp/lg.out" 2>&1 || { cat "$tmp/lg.out" >&2; exit 1; }
  grep '^overall' "$tmp/lg.out" >&2 || true
  result[$side.write_ops]=$(python3 -c 'import json,sys; print("%.0f" % json.load(open(sys.argv[1]))["ops"]["setData"]["throughput_ops_s"])' \
    "$(sed -n 's/^results: //p' "$tmp/lg.out" | tail -1)")

  target_count=$(mntr_value "$(fourlw 127.0.0.1 "${port[leader]}" mntr)" zk_znode_count)
  target_pos=$(leader_position "$side" "$leader")
  [[ -n $target_count && -n $target_pos ]] || { echo "rejoin_bench.sh: $side: no znode count / position from the leader" >&2; exit 1; }
  result[$side.target_count]=$target_count

  echo "== $side: wipe node $follower, restart it; until it serves $target_count znodes (position $target_pos)" >&2
  if [[ $side == warren ]]; then
    find "${dir[follower]}" -mindepth 1 -delete
  else
    rm -rf "${dir[follower]}/data/version-2"
  fi
  leader_log_lines=$(wc -l <"$tmp/$side-$leader.log")
  rejoin_log=$tmp/$side-$follower.rejoin.log
  cpu_before=$(cpu_ticks "${pid[leader]}")
  started=$(now_ns)
  start_node "$side" "$follower" "$rejoin_log"
  count_ms="never" caught_ms="never" tcp_bytes=- data_dir=-
  deadline=$(( started + 300 * 1000000000 ))
  while (( $(now_ns) < deadline )); do
    m=$(fourlw 127.0.0.1 "${port[follower]}" mntr)
    if [[ $count_ms == never && $(mntr_value "$m" zk_znode_count) == "$target_count" ]] && getdata_ok "${port[follower]}"; then
      count_ms=$(( ($(now_ns) - started) / 1000000 ))
      tcp_bytes=$(tcp_bytes_received "${pid[follower]}")
      data_dir=$(mib "${dir[follower]}")
    fi
    if [[ $caught_ms == never ]]; then
      pos=$(node_position "$side" "$follower" "$m")
      [[ -n $pos ]] && (( pos >= target_pos )) && [[ -n $(mntr_value "$m" zk_znode_count) ]] && caught_ms=$(( ($(now_ns) - started) / 1000000 ))
    fi
    [[ $count_ms != never && $caught_ms != never ]] && break
    kill -0 "${pid[follower]}" 2>/dev/null || { echo "rejoin_bench.sh: $side node $follower exited" >&2; tail -30 "$rejoin_log" >&2; break; }
    sleep 0.05
  done
  cpu_after=$(cpu_ticks "${pid[leader]}")
  result[$side.count_ms]=$count_ms
  result[$side.caught_ms]=$caught_ms
  result[$side.tcp_bytes]=$tcp_bytes
  result[$side.data_dir]=$data_dir
  result[$side.leader_cpu]=$(awk -v a="$cpu_before" -v b="$cpu_after" -v hz="$hz" 'BEGIN {printf "%.2f", (b - a) / hz}')
  result[$side.znodes]=$n_znodes
  result[$side.writes]=$n_writes
  live_count=$(mntr_value "$(fourlw 127.0.0.1 "${port[${live[0]}]}" mntr)" zk_znode_count)
  [[ $live_count == "$target_count" ]] || echo "rejoin_bench.sh: $side: live node's znode count moved: $target_count -> $live_count" >&2

  if [[ $side == warren ]]; then
    mapfile -t lines < <(nocolor "$rejoin_log" | grep -i snapshot || true)
    mapfile -t sent < <(tail -n +"$((leader_log_lines + 1))" "$tmp/$side-$leader.log" | nocolor | grep -i 'snapshot' | grep -i 'follower\|sent' || true)
    result[$side.snap_sent]=$(printf '%s\n' "${sent[@]}" | awk '/snapshot sent/ {for (i=1;i<=NF;i++) if ($i ~ /^bytes=/) {split($i,a,"="); s+=a[2]; n++}} END {print n ? s : "-"}')
    if printf '%s\n' "${lines[@]}" | grep -q "switched to the leader's snapshot"; then
      result[$side.sync_kind]="snapshot"
    else
      result[$side.sync_kind]="log (no snapshot)"
    fi
    logs_out+=("warren node $follower (rejoined) log, 'snapshot' lines:" "${lines[@]}"
      "warren node $leader (leader) log after the restart, snapshot-to-follower lines:" "${sent[@]}")
  else
    mapfile -t lines < <(grep -E 'Getting a (snapshot|diff) from|Getting a diff|TRUNC|Snapshotting' "$rejoin_log" || true)
    mapfile -t sent < <(tail -n +"$((leader_log_lines + 1))" "$tmp/$side-$leader.log" | grep -E 'Synchronizing with Learner|Sending (SNAP|DIFF|TRUNC)' || true)
    if printf '%s\n' "${lines[@]}" | grep -q 'Getting a snapshot from'; then
      result[$side.sync_kind]="snapshot (SNAP)"
    elif printf '%s\n' "${lines[@]}" | grep -q 'Getting a diff'; then
      result[$side.sync_kind]="DIFF"
    else
      result[$side.sync_kind]="?"
    fi
    result[$side.snap_sent]=-
    logs_out+=("zookeeper node $follower (rejoined) log, sync lines:" "${lines[@]}"
      "zookeeper node $leader (leader) log after the restart, sync lines:" "${sent[@]}")
  fi
  echo "== $side: same znode count + getData after $count_ms ms, caught up after $caught_ms ms (${result[$side.sync_kind]})" >&2

  for p in "${pid[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp/$side-"?/ "$tmp/lg"
done

mkdir -p "$(dirname "$out")"
{
  echo "# Rejoin of a wiped follower: 3 nodes on 127.0.0.1, $znodes znodes of 100 B, one follower killed (kill -9),"
  echo "#   $writes setData (loadgen 16 sessions x 8) against the other two, its data wiped, restarted; $(date -u +%FT%TZ)"
  echo "# Warren ${result[warren.version]:-(not run)}, each node --cores 1, default snapshot settings"
  echo "#   (a snapshot every 50-100% of 100k entries and not before a quarter of the node count, 2 kept,"
  echo "#   200k entries kept in memory for followers); its data dir wiped whole."
  echo "# ZooKeeper 3.8 QuorumPeerMain, fsync on, snapCount 100000, -Xms512m -Xmx2g G1, tickTime ${tick_ms} ms,"
  echo "#   initLimit $init_limit ticks ($(( init_limit * tick_ms / 1000 )) s, so a large SNAP is not cut off), syncLimit $sync_limit ticks; dataDir/version-2 wiped, myid kept."
  echo "# Rejoin = restart -> the node alone reports the leader's zk_znode_count in mntr AND a loadgen getData through"
  echo "#   it alone succeeds (polled every 50 ms, bounded at 300 s). Caught up = restart -> its position reaches the"
  echo "#   leader's before the restart (Warren mntr warren_group_0_applied_index >= commit index; ZooKeeper srvr Zxid)."
  echo "# Both times include the process start (ZooKeeper: JVM start and leader election). Data dirs include preallocated"
  echo "#   log space (Warren's 64 MiB WAL segment, ZooKeeper's 64 MiB preAllocSize)."
  printf '%-56s %20s %20s\n' "" Warren ZooKeeper
  row() { printf '%-56s %20s %20s\n' "$1" "${result[warren.$2]}" "${result[zookeeper.$2]}"; }
  row "znodes preloaded" znodes
  row "writes while down (setData)" writes
  row "  their throughput on 2 nodes (ops/s)" write_ops
  row "znode count to match (leader's mntr)" target_count
  row "rejoin ms (restart -> same znode count + getData)" count_ms
  row "caught up ms (restart -> leader's last position)" caught_ms
  row "synced by" sync_kind
  row "snapshot bytes sent (Warren leader's log)" snap_sent
  row "bytes received, rejoined node's TCP sockets (ss)" tcp_bytes
  row "rejoined node's data dir at rejoin (MiB)" data_dir
  row "leader CPU-s, restart -> caught up" leader_cpu
  echo
  for l in "${logs_out[@]}"; do echo "# $l"; done
} | tee "$out"
