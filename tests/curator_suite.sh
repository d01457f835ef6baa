#!/usr/bin/env bash
# Apache Curator 5 recipe suite (tests/java/*.java, Debian's libcurator-*-java): compiles it with
# javac against /usr/share/java, starts a warren on a free loopback port and a temp data dir
# (2 cores, so shards live on two executors), runs every case and stops only the server it started.
# Prints `ok   - name` / `FAIL - name: reason` lines and a summary; exits non-zero on a failure.
#   tests/curator_suite.sh [name-substring ...]          # only the cases whose name contains one
#   WARREN_BIN=tests/zk_as_warren.sh tests/curator_suite.sh   # against Apache ZooKeeper 3.8
# Env: WARREN_BIN (default target/release/warren), ZK_TEST_SERVER=host:port to test an already
# running server instead (its sweep interval is then assumed to be REAP_INTERVAL_MS).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
warren="${WARREN_BIN:-$repo/target/release/warren}"
# The sweep of containers and TTL nodes (ZooKeeper's znode.container.checkIntervalMs, 60 s by
# default) runs every 2 s here so those cases finish quickly; long enough that "the container
# is still there right after its last child went" cannot race a sweep in practice.
REAP_INTERVAL_MS="${REAP_INTERVAL_MS:-2000}"
jars=/usr/share/java
classpath="$jars/curator-recipes.jar:$jars/curator-framework.jar:$jars/curator-client.jar:$jars/zookeeper.jar"
classpath+=":$jars/zookeeper-jute.jar:$jars/guava.jar:$jars/slf4j-api.jar:$jars/slf4j-nop.jar"
for jar in ${classpath//:/ }; do
  [[ -f "$jar" ]] || { echo "curator_suite: $jar missing (run scripts/setup.sh)" >&2; exit 1; }
done
command -v javac >/dev/null || { echo "curator_suite: javac missing (run scripts/setup.sh)" >&2; exit 1; }

suite=curator_suite
# shellcheck source=tests/server.sh
source "$repo/tests/server.sh"

echo "curator_suite: compiling tests/java"
javac -nowarn --release 17 -cp "$classpath" -d "$tmp/classes" "$repo"/tests/java/*.java

start_server 30 --cores 2 --min-session-timeout 1000 --max-session-timeout 40000 \
  --reap-interval-ms "$REAP_INTERVAL_MS"

echo "curator_suite: running against $server ($warren)"
set +e
timeout 600 java -Xmx256m -cp "$tmp/classes:$classpath" CuratorSuite "$server" "$REAP_INTERVAL_MS" "$@"
rc=$?
set -e
if [[ -n "$pid" ]]; then
  if kill -0 "$pid" 2>/dev/null; then
    echo "ok   - server still running"
  else
    echo "FAIL - server died"
    rc=1
  fi
  if [[ $rc != 0 ]]; then
    echo "curator_suite: last lines of the server log:" >&2
    tail -30 "$server_log" >&2 || true
  fi
fi
exit $rc
