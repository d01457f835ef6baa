# Sourced by the shell suites and bench/sweep.sh: the process and port helpers they share.

# stop_process PID TENTHS: SIGTERM, up to TENTHS tenths of a second to exit, then SIGKILL; reaps it.
stop_process() {
  local pid="$1" tenths="$2"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 "$tenths"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# free_port: a loopback port free right now (a small race with other processes, which the
# caller sees as its server failing to start).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# fourlw HOST PORT WORD: the server's answer to a four-letter word (bounded; empty on failure).
fourlw() {
  timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2"; printf %s "$3" >&3; cat <&3' _ "$1" "$2" "$3" 2>/dev/null || true
}
