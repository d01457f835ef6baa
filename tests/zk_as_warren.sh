#!/usr/bin/env bash
# Runs Apache ZooKeeper (Debian package) behind warren's command line, so the whole test
# harness can run against the reference implementation, restarts and kill -9 included:
#   WARREN_BIN=tests/zk_as_warren.sh cargo nextest run -p warren-tests --release
# Understands: start --host H --port P --data-dir D --min-session-timeout MS
# --max-session-timeout MS --max-request-bytes B --reap-interval-ms MS --node-id N
# --peers ID=HOST:PORT,... (an ensemble: PORT is the quorum port, PORT+1 the election port;
# others ignored).
set -euo pipefail
[[ "${1:-}" == start ]] || { echo "usage: $0 start [options]" >&2; exit 2; }
shift
host=127.0.0.1 port=2181 data="" min=4000 max=40000 maxbuf=1048576 reap=60000 node=1 peers=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --host) host="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --data-dir) data="$2"; shift 2 ;;
    --min-session-timeout) min="$2"; shift 2 ;;
    --max-session-timeout) max="$2"; shift 2 ;;
    --max-request-bytes) maxbuf="$2"; shift 2 ;;
    --reap-interval-ms) reap="$2"; shift 2 ;;
    --node-id) node="$2"; shift 2 ;;
    --peers) peers="$2"; shift 2 ;;
    # Warren-only switches without a value (ZooKeeper has no such mode: its reads are local).
    --linearizable-reads|--linearizable-reads=*) shift ;;
    *) shift 2 ;;
  esac
done
[[ -n "$data" ]] || { echo "--data-dir required" >&2; exit 2; }
mkdir -p "$data/zk"
cat >"$data/zoo.cfg" <<CFG
tickTime=500
dataDir=$data/zk
clientPort=$port
clientPortAddress=$host
minSessionTimeout=$min
maxSessionTimeout=$max
4lw.commands.whitelist=*
admin.enableServer=false
extendedTypesEnabled=true
CFG
if [[ -n "$peers" ]]; then
  echo "$node" >"$data/zk/myid"
  { echo "initLimit=10"; echo "syncLimit=5"; } >>"$data/zoo.cfg"
  IFS=, read -ra voters <<<"$peers"
  for voter in "${voters[@]}"; do
    id="${voter%%=*}" addr="${voter#*=}"
    echo "server.$id=${addr%:*}:${addr##*:}:$(( ${addr##*:} + 1 ))" >>"$data/zoo.cfg"
  done
fi
exec java -Xmx1g -Dzookeeper.root.logger=WARN,CONSOLE -Djute.maxbuffer="$maxbuf" \
  -Dznode.container.checkIntervalMs="$reap" -Dznode.container.minIntervalMs=0 -Dznode.container.maxPerMinute=100000 \
  -cp "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar" org.apache.zookeeper.server.quorum.QuorumPeerMain "$data/zoo.cfg"
