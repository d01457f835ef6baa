#!/usr/bin/env bash
# A flamegraph of a loaded Warren node, kept with the results:
#
#   bench/flamegraph.sh [--point 16x8] [--mix 100r] [--duration 8s] [--cores 1] [--results-dir results]
#
# Starts `warren --cores N` pinned to CPU 0 and loadgen pinned to CPU 1 (as `bench/sweep.sh
# --pin`), lets loadgen warm up, records the server with `perf record --call-graph dwarf` for
# half of the measured phase, and writes to <results-dir>/<version>/flamegraph-<UTC time>/:
#   flamegraph.svg  (inferno-flamegraph), stacks.folded.gz (the collapsed stacks it is drawn from),
#   loadgen.json (the run, with the server's CPU per op), perf-stat.txt (syscalls, context
#   switches and reschedule IPIs of the server over 2 s), command.txt.
# Needs perf (Debian: linux-perf) and inferno (`cargo install inferno`); it says so when they
# are missing. Only the processes it started are stopped.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/proc.sh
source "$root/scripts/proc.sh"

point=16x8 mix=100r duration=8s cores=1 results_dir=results
command_line="bench/flamegraph.sh $*"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --point) point="$2"; shift 2 ;;
    --mix) mix="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --cores) cores="$2"; shift 2 ;;
    --results-dir) results_dir="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "flamegraph.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
for tool in perf inferno-collapse-perf inferno-flamegraph; do
  command -v "$tool" > /dev/null || { echo "flamegraph.sh: $tool missing (perf: apt install linux-perf; inferno: cargo install inferno)" >&2; exit 1; }
done
clients="${point%x*}" pipeline="${point#*x}"
seconds="${duration%s}"
[[ "$clients" =~ ^[0-9]+$ && "$pipeline" =~ ^[0-9]+$ && "$seconds" =~ ^[0-9]+$ && "$seconds" -ge 4 ]] \
  || { echo "flamegraph.sh: --point CxP and --duration Ns (N >= 4) expected" >&2; exit 2; }

cargo build --release -p net -p loadgen --bins
warren="$root/target/release/warren" loadgen="$root/target/release/loadgen"
version="$("$warren" --version | awk '{print $2}')"
out="$results_dir/$version/flamegraph-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
work="$(mktemp -d)"
server="" load=""
cleanup() {
  [[ -n "$load" ]] && stop_process "$load" 20
  [[ -n "$server" ]] && stop_process "$server" 50
  rm -rf "$work"
}
trap cleanup EXIT

port="$(free_port)"
taskset -c 0 "$warren" start --host 127.0.0.1 --port "$port" --data-dir "$work/data" --cores "$cores" > "$work/warren.log" 2>&1 &
server=$!
for _ in $(seq 1 50); do [[ "$(fourlw 127.0.0.1 "$port" ruok)" == imok ]] && break; sleep 0.1; done
[[ "$(fourlw 127.0.0.1 "$port" ruok)" == imok ]] || { cat "$work/warren.log" >&2; exit 1; }

taskset -c 1 "$loadgen" --servers "127.0.0.1:$port" --clients "$clients" --pipeline "$pipeline" --mix "$mix" \
  --duration "$duration" --warmup 20000 --seed 1 --server-pid "$server" --results-dir "$work/results" > "$work/loadgen.log" 2>&1 &
load=$!
# Past preload and warmup, well inside the measured phase.
for _ in $(seq 1 300); do grep -q "loadgen: running" "$work/loadgen.log" && break; sleep 0.1; done
sleep 1
record=$(( seconds / 2 ))
perf record -F 999 --call-graph dwarf,16384 -p "$server" -o "$work/perf.data" -- sleep "$record" > /dev/null 2>&1
perf stat -x, -e task-clock,context-switches,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,irq_vectors:reschedule_entry \
  -p "$server" -- sleep 2 2> "$out/perf-stat.txt" || true
wait "$load"
load=""
cp "$work"/results/*/*.json "$out/loadgen.json"
perf script -i "$work/perf.data" 2> /dev/null | inferno-collapse-perf > "$work/stacks.folded"
commit="$("$warren" --version | sed -E 's/.*commit ([0-9a-f]+(-dirty)?).*/\1/')"
inferno-flamegraph --title "warren --cores $cores, $point $mix, pinned, commit $commit" \
  < "$work/stacks.folded" > "$out/flamegraph.svg"
gzip -9 < "$work/stacks.folded" > "$out/stacks.folded.gz"
echo "$command_line" > "$out/command.txt"
grep -E "^total|server CPU|context switches" "$work/loadgen.log" | tee "$out/summary.txt"
echo "flamegraph.sh: wrote $out"
