#!/usr/bin/env python3
"""What one replicated write costs on each node of a 3-node Warren cluster.

    python3 bench/write_cost.py [--ops 200k] [--point 64x1] [--mix 100w] [--cores 1] [--pin] [--out FILE]

Starts three `warren start` nodes on loopback (fresh data dirs, `--cores N`), warms them with
loadgen, then runs loadgen's measured ops (a closed loop, --point sessions x outstanding) while
counting, per node, from just before to just after: CPU (utime + stime of every thread,
/proc/PID/stat), context switches (voluntary and involuntary, summed over /proc/PID/task/*),
syscalls (perf stat on raw_syscalls:sys_enter and the io_uring_enter, futex, write/sendmsg and
fdatasync/pwrite tracepoints of the process), and the bytes each node sent to each other node
on their peer connections (ss's bytes_sent of the connections it dialed: a peer connection
carries messages one way). Everything is divided by the writes loadgen had acknowledged (with
--mix 90r10w, by every op; say so when reading it). Prints a table per node, the leader marked,
and writes it to --out. Needs perf (Debian: linux-perf). Only the processes it started are
stopped; every loop is bounded (--ops, and a timeout on loadgen)."""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARREN = os.environ.get("WARREN_BIN", os.path.join(ROOT, "target", "release", "warren"))
LOADGEN = os.path.join(ROOT, "target", "release", "loadgen")
CLK_TCK = os.sysconf("SC_CLK_TCK")
SYSCALL_EVENTS = ["raw_syscalls:sys_enter", "syscalls:sys_enter_io_uring_enter", "syscalls:sys_enter_futex",
                  "syscalls:sys_enter_write", "syscalls:sys_enter_sendmsg", "syscalls:sys_enter_sendto",
                  "syscalls:sys_enter_pwrite64", "syscalls:sys_enter_fdatasync", "syscalls:sys_enter_epoll_wait"]


def free_port(run=1):
    """A port p with p..p+run-1 free now."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            for q in range(port + 1, port + run):
                with socket.socket() as t:
                    t.bind(("127.0.0.1", q))
            return port
        except OSError:
            continue


def four_letter(port, word):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(word.encode())
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            return out.decode()
    except OSError:
        return ""


def count(text):
    m = {"k": 1_000, "M": 1_000_000}
    return int(float(text[:-1]) * m[text[-1]]) if text[-1] in m else int(text)


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def context_switches(pid):
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            status = open(f"/proc/{pid}/task/{task}/status").read()
        except OSError:
            continue  # a thread that ended
        total += sum(int(v) for v in re.findall(r"(?:voluntary|nonvoluntary)_ctxt_switches:\s+(\d+)", status))
    return total


def bytes_sent_to_peers(pid, peer_ports):
    """Bytes this process sent on the peer connections it dialed, by destination port."""
    out = subprocess.run(["ss", "-tinpH", "state", "established"], capture_output=True, text=True).stdout
    sent = {}
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if f"pid={pid}," not in line:
            continue
        parts = line.split()
        dst_port = int(parts[3].rsplit(":", 1)[1]) if len(parts) > 3 else 0
        info = lines[i + 1] if i + 1 < len(lines) else ""
        m = re.search(r"bytes_sent:(\d+)", info)
        if dst_port in peer_ports and m:
            sent[dst_port] = sent.get(dst_port, 0) + int(m.group(1))
    return sent


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", default="200k")
    parser.add_argument("--warmup", default="20k")
    parser.add_argument("--point", default="64x1")
    parser.add_argument("--mix", default="100w")
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--pin", action="store_true", help="servers on CPU 0, loadgen on CPU 1")
    parser.add_argument("--profile", action="store_true",
                        help="also perf record each node (DWARF call graphs, 199 Hz) and print where its time goes")
    parser.add_argument("--out")
    args = parser.parse_args()
    clients, pipeline = args.point.split("x")
    server_cpus = ["taskset", "-c", "0"] if args.pin else []
    loadgen_cpus = ["taskset", "-c", "1"] if args.pin else []
    processes, perfs = [], []
    with tempfile.TemporaryDirectory(prefix="warren-write-cost-") as tmp:
        try:
            client_ports = [free_port() for _ in range(3)]
            peer_ports = [free_port(args.cores) for _ in range(3)]
            peers = ",".join(f"{i + 1}=127.0.0.1:{p}" for i, p in enumerate(peer_ports))
            for i in range(3):
                log = open(os.path.join(tmp, f"node-{i + 1}.log"), "w")
                processes.append(subprocess.Popen(
                    [*server_cpus, WARREN, "start", "--host", "127.0.0.1", "--port", str(client_ports[i]),
                     "--data-dir", os.path.join(tmp, f"node-{i + 1}"), "--cores", str(args.cores),
                     "--node-id", str(i + 1), "--peers", peers], stdout=log, stderr=subprocess.STDOUT))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                mntr = [four_letter(p, "mntr") for p in client_ports]
                if all("warren_serving\t1" in m for m in mntr):
                    break
                time.sleep(0.1)
            else:
                raise SystemExit("write_cost: the cluster did not serve within 30 s")
            servers = ",".join(f"127.0.0.1:{p}" for p in client_ports)
            base = [*loadgen_cpus, LOADGEN, "--servers", servers, "--clients", clients, "--pipeline", pipeline,
                    "--mix", args.mix]
            subprocess.run([*base, "--ops", args.warmup, "--results-dir", os.path.join(tmp, "warmup")], check=True,
                           stdout=subprocess.DEVNULL, timeout=300)
            pids = [p.pid for p in processes]
            before = {pid: (cpu_seconds(pid), context_switches(pid), bytes_sent_to_peers(pid, peer_ports))
                      for pid in pids}
            for pid in pids:
                perfs.append(subprocess.Popen(["perf", "stat", "-x", ",", "-e", ",".join(SYSCALL_EVENTS), "-p",
                                               str(pid), "-o", os.path.join(tmp, f"perf-{pid}.txt")]))
                if args.profile:
                    perfs.append(subprocess.Popen(["perf", "record", "-q", "-F", "199", "--call-graph", "dwarf,32768",
                                                   "-p", str(pid), "-o",
                                                   os.path.join(tmp, f"record-{pid}.data")],
                                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(0.3)  # perf attached
            started = time.monotonic()
            measured = os.path.join(tmp, "measured")
            subprocess.run([*base, "--ops", args.ops, "--results-dir", measured], check=True,
                           stdout=subprocess.DEVNULL, timeout=900)
            seconds = time.monotonic() - started
            for perf in perfs:
                perf.send_signal(signal.SIGINT)
            for perf in perfs:
                perf.wait(timeout=10)
            after = {pid: (cpu_seconds(pid), context_switches(pid), bytes_sent_to_peers(pid, peer_ports))
                     for pid in pids}
            runs = [os.path.join(d, f) for d, _, fs in os.walk(measured) for f in fs if f.endswith(".json")]
            result = json.load(open(runs[0]))
            roles = [("leader" if "Mode: leader" in four_letter(p, "srvr") else "follower") for p in client_ports]
            report(args, result, seconds, pids, roles, peer_ports, before, after, tmp)
            if args.profile:
                for i, pid in enumerate(pids):
                    top = subprocess.run(["perf", "report", "-q", "--children", "-g", "none", "--sort", "symbol",
                                          "--percent-limit", "4", "-i", os.path.join(tmp, f"record-{pid}.data")],
                                         capture_output=True, text=True).stdout
                    dsos = subprocess.run(["perf", "report", "-q", "--no-children", "--sort", "dso",
                                           "-i", os.path.join(tmp, f"record-{pid}.data")],
                                          capture_output=True, text=True).stdout
                    print(f"node {i + 1} ({roles[i]}), samples by object:\n{dsos}")
                    kept = f"/tmp/write-cost-node-{i + 1}.perf.data"
                    shutil.copy(os.path.join(tmp, f"record-{pid}.data"), kept)
                    print(f"node {i + 1}: its perf data is kept as {kept} (perf report -i {kept})")
                    print(f"node {i + 1} ({roles[i]}), symbols in over 4% of its samples (with what they call):\n{top}")
        finally:
            for perf in perfs:
                if perf.poll() is None:
                    perf.kill()
            for p in processes:
                p.send_signal(signal.SIGTERM)
            for p in processes:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def report(args, result, seconds, pids, roles, peer_ports, before, after, tmp):
    ops = result["total"]["successes"]
    writes = result["ops"].get("setData", {}).get("successes", 0)
    errors = result["total"]["errors"]
    if not ops:
        raise SystemExit("write_cost: loadgen had no op acknowledged")
    lines = [f"bench/write_cost.py --ops {args.ops} --point {args.point} --mix {args.mix} --cores {args.cores}"
             f"{' --pin' if args.pin else ''}: {ops} ops acknowledged ({writes} setData, {errors} errors) in "
             f"{seconds:.1f} s ({ops / seconds:,.0f} ops/s); per acknowledged op:", "",
             "| node | role | CPU µs | context switches | syscalls | io_uring_enter | futex | write+sendmsg+sendto "
             "| pwrite64+fdatasync | epoll_wait | bytes sent to each peer |", "|" + "---|" * 11]
    for i, pid in enumerate(pids):
        cpu = (after[pid][0] - before[pid][0]) / ops * 1e6
        ctx = (after[pid][1] - before[pid][1]) / ops
        counts = {}
        for line in open(os.path.join(tmp, f"perf-{pid}.txt")):
            parts = line.strip().split(",")
            if len(parts) > 2 and parts[0].replace(".", "").isdigit():
                counts[parts[2]] = int(float(parts[0]))
        per = lambda *events: sum(counts.get(e, 0) for e in events) / ops
        sent = []
        for j, port in enumerate(peer_ports):
            if j != i:
                b = after[pid][2].get(port, 0) - before[pid][2].get(port, 0)
                sent.append(f"to {j + 1}: {b / ops:.0f} B")
        lines.append(f"| {i + 1} | {roles[i]} | {cpu:.1f} | {ctx:.2f} | {per('raw_syscalls:sys_enter'):.2f} "
                     f"| {per('syscalls:sys_enter_io_uring_enter'):.2f} | {per('syscalls:sys_enter_futex'):.2f} "
                     f"| {per('syscalls:sys_enter_write', 'syscalls:sys_enter_sendmsg', 'syscalls:sys_enter_sendto'):.2f} "
                     f"| {per('syscalls:sys_enter_pwrite64', 'syscalls:sys_enter_fdatasync'):.2f} "
                     f"| {per('syscalls:sys_enter_epoll_wait'):.2f} | {', '.join(sent)} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    sys.exit(main())
