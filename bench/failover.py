#!/usr/bin/env python3
"""Failover time of a Warren 3-node cluster: kill -9 of the leader to the first acknowledged write.

    .venv/bin/python bench/failover.py [--runs 7] [--cores 1] [--json OUT]

Each run starts a fresh cluster (`warren dev-cluster --nodes 3`), connects a kazoo client to one
follower only (so the figure is the cluster's failover, not the client's reconnect to another
server), writes back to back (setData, each acknowledged before the next), kills the node that
leads the session group (`srvr` Mode: leader; with --cores 1 the only group) with SIGKILL, and
measures from the kill to the first write acknowledged after it. Prints every run and the
median; bounded: 20 s per run."""

import argparse
import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.handlers.threading import KazooTimeoutError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARREN = os.environ.get("WARREN_BIN", os.path.join(ROOT, "target", "release", "warren"))
RUN_TIMEOUT_S = 20.0


def four_letter(addr, word):
    host, port = addr.split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1) as s:
            s.sendall(word.encode())
            chunks = []
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    return b"".join(chunks).decode()
                chunks.append(chunk)
    except OSError:
        return ""


def pid_listening_on(port):
    """The pid of the process with a listening socket on `port` (from ss)."""
    out = subprocess.run(["ss", "-Htlnp", f"sport = :{port}"], capture_output=True, text=True).stdout
    for part in out.split("pid=")[1:]:
        return int(part.split(",")[0])
    raise RuntimeError(f"no process listens on {port}")


def one_run(cores):
    with tempfile.TemporaryDirectory(prefix="warren-failover-") as tmp:
        cluster = subprocess.Popen([WARREN, "dev-cluster", "--nodes", "3", "--cores", str(cores), "--data-dir", tmp],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            addrs = [cluster.stdout.readline().strip() for _ in range(3)]
            modes = {a: four_letter(a, "srvr") for a in addrs}
            leader = next(a for a, m in modes.items() if "Mode: leader" in m)
            follower = next(a for a in addrs if a != leader)
            client = KazooClient(hosts=follower, timeout=4.0, connection_retry={"max_tries": -1, "delay": 0.01,
                                                                                 "max_delay": 0.05})
            client.start(timeout=10)
            client.ensure_path("/failover")
            for i in range(200):  # warm: the path is hot before the kill
                client.set("/failover", str(i).encode())
            os.kill(pid_listening_on(int(leader.split(":")[1])), signal.SIGKILL)
            killed = time.monotonic()
            deadline = killed + RUN_TIMEOUT_S
            while time.monotonic() < deadline:
                try:
                    client.set("/failover", b"after")
                    return time.monotonic() - killed
                except (KazooException, KazooTimeoutError):
                    time.sleep(0.005)
            raise RuntimeError("no write succeeded within the run's bound")
        finally:
            try:
                client.stop()
                client.close()
            except Exception:  # the client may never have started
                pass
            cluster.send_signal(signal.SIGTERM)
            try:
                cluster.wait(timeout=10)
            except subprocess.TimeoutExpired:
                cluster.kill()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--json", help="write the runs and the median here")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # kazoo reports the dropped connection each run: expected here
    times = []
    for run in range(1, args.runs + 1):
        seconds = one_run(args.cores)
        times.append(seconds)
        print(f"run {run}: first acknowledged write {seconds * 1000:.0f} ms after kill -9 of the leader", flush=True)
    median = statistics.median(times)
    print(f"failover (kill -9 of the leader to the first acknowledged write), median of {len(times)}: "
          f"{median * 1000:.0f} ms (min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs_ms": [t * 1000 for t in times], "median_ms": median * 1000, "cores": args.cores}, f)


if __name__ == "__main__":
    sys.exit(main())
