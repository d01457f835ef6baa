#!/usr/bin/env python3
"""Failover as a client sees it, Warren vs Apache ZooKeeper 3.8: kill -9 of the leader to the
first acknowledged write, and elections under a steady load.

    .venv/bin/python bench/failover.py [--runs 7] [--sides warren,zookeeper] [--json OUT]
                                       [--load-seconds 60]

Failover: each run starts a fresh 3-node cluster on loopback (`warren dev-cluster --nodes 3
--cores 1`, so the session group and the written path's group are the one group; or a 3-node
ZooKeeper 3.8 ensemble, fsync on, its defaults), connects a kazoo client to one follower only
(so the figure is the cluster's failover, not the client's reconnect to another server), writes
back to back (setData, each acknowledged before the next), kills the node whose `srvr` says
"Mode: leader" with SIGKILL, and measures from the kill to the first write acknowledged after
it. Runs alternate between the sides. Bounded: 20 s per run.

Elections under load (--load-seconds > 0, Warren only): a fresh 3-node cluster takes loadgen's
90r10w, 16 sessions x 8 outstanding, unpinned, for that many seconds; the terms of every group
before and after (mntr `warren_group_<g>_term` on each node) say how many elections the load
caused: a node starved of CPU must not depose a live leader."""

import argparse
import json
import logging
import os
import re
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
LOADGEN = os.path.join(ROOT, "target", "release", "loadgen")
RUN_TIMEOUT_S = 20.0
READY_TIMEOUT_S = 60.0
ZK_CLASSPATH = ("/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:"
                "/usr/share/java/log4j-1.2.jar")
ZK_JVM = ["-Xms512m", "-Xmx512m", "-XX:+UseG1GC", "-Dzookeeper.root.logger=WARN,CONSOLE",
          "-Dlog4j.configuration=file:/etc/zookeeper/conf/log4j.properties"]


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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WarrenCluster:
    """`warren dev-cluster --nodes 3 --cores 1`; each node's pid from the port it listens on."""

    def __init__(self, tmp):
        self.process = subprocess.Popen([WARREN, "dev-cluster", "--nodes", "3", "--cores", "1", "--data-dir", tmp],
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.addrs = [self.process.stdout.readline().strip() for _ in range(3)]

    def pid_of(self, addr):
        out = subprocess.run(["ss", "-Htlnp", f"sport = :{addr.split(':')[1]}"], capture_output=True,
                             text=True).stdout
        for part in out.split("pid=")[1:]:
            return int(part.split(",")[0])
        raise RuntimeError(f"no process listens on {addr}")

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class ZooKeeperEnsemble:
    """Three QuorumPeerMain JVMs on loopback (fsync on, tickTime 2000, initLimit 10, syncLimit 5)."""

    def __init__(self, tmp):
        ports = [(free_port(), free_port(), free_port()) for _ in range(3)]
        self.addrs = [f"127.0.0.1:{client}" for client, _, _ in ports]
        self.processes = {}
        for i, (client, quorum, election) in enumerate(ports, start=1):
            data = os.path.join(tmp, f"zk-{i}")
            os.makedirs(data)
            with open(os.path.join(data, "myid"), "w") as f:
                f.write(f"{i}\n")
            servers = "".join(f"server.{j}=127.0.0.1:{q}:{e}\n" for j, (_, q, e) in enumerate(ports, start=1))
            cfg = os.path.join(data, "zoo.cfg")
            with open(cfg, "w") as f:
                f.write(f"tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={data}\nclientPort={client}\n"
                        f"clientPortAddress=127.0.0.1\nforceSync=yes\n4lw.commands.whitelist=*\n"
                        f"admin.enableServer=false\n{servers}")
            log = open(os.path.join(data, "log"), "w")
            self.processes[f"127.0.0.1:{client}"] = subprocess.Popen(
                ["java", *ZK_JVM, "-cp", ZK_CLASSPATH, "org.apache.zookeeper.server.quorum.QuorumPeerMain", cfg],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            modes = [four_letter(a, "srvr") for a in self.addrs]
            if sum("Mode: leader" in m for m in modes) == 1 and all("Mode: " in m for m in modes):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("the ZooKeeper ensemble did not elect a leader within its bound")

    def pid_of(self, addr):
        return self.processes[addr].pid

    def stop(self):
        for process in self.processes.values():
            process.kill()
            process.wait()


def one_run(side):
    with tempfile.TemporaryDirectory(prefix=f"{side}-failover-") as tmp:
        cluster = WarrenCluster(tmp) if side == "warren" else ZooKeeperEnsemble(tmp)
        client = None
        try:
            modes = {a: four_letter(a, "srvr") for a in cluster.addrs}
            leader = next(a for a, m in modes.items() if "Mode: leader" in m)
            follower = next(a for a in cluster.addrs if a != leader)
            client = KazooClient(hosts=follower, timeout=4.0, connection_retry={"max_tries": -1, "delay": 0.01,
                                                                                 "max_delay": 0.05})
            client.start(timeout=10)
            client.ensure_path("/failover")
            for i in range(200):  # warm: the path is hot before the kill
                client.set("/failover", str(i).encode())
            os.kill(cluster.pid_of(leader), signal.SIGKILL)
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
            if client is not None:
                try:
                    client.stop()
                    client.close()
                except Exception:  # the client may never have started
                    pass
            cluster.stop()


def group_terms(addrs):
    """(node address, group) → term, from mntr."""
    terms = {}
    for addr in addrs:
        for group, term in re.findall(r"warren_group_(\d+)_term\t(\d+)", four_letter(addr, "mntr")):
            terms[(addr, int(group))] = int(term)
    return terms


def elections_under_load(seconds):
    with tempfile.TemporaryDirectory(prefix="warren-elections-") as tmp:
        cluster = WarrenCluster(tmp)
        try:
            before = group_terms(cluster.addrs)
            if not before:
                raise RuntimeError("mntr shows no group terms")
            subprocess.run([LOADGEN, "--servers", ",".join(cluster.addrs), "--duration", f"{seconds}s",
                            "--warmup", "0", "--clients", "16", "--pipeline", "8", "--mix", "90r10w",
                            "--results-dir", os.path.join(tmp, "loadgen")],
                           check=True, stdout=subprocess.DEVNULL, timeout=seconds + 120)
            after = group_terms(cluster.addrs)
        finally:
            cluster.stop()
    groups = sorted({g for _, g in before})
    # A group's elections: how far its highest term moved (every election raises it by one).
    return {g: max(t for (_, gg), t in after.items() if gg == g) - max(t for (_, gg), t in before.items() if gg == g)
            for g in groups}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="failover runs per side")
    parser.add_argument("--sides", default="warren,zookeeper")
    parser.add_argument("--load-seconds", type=int, default=0)
    parser.add_argument("--json", help="write every run and the medians here")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # kazoo reports the dropped connection each run: expected here
    sides = [s for s in args.sides.split(",") if s]
    if not set(sides) <= {"warren", "zookeeper"}:
        parser.error("--sides takes warren and zookeeper")
    times = {side: [] for side in sides}
    for run in range(1, args.runs + 1):
        for side in sides if run % 2 else reversed(sides):
            seconds = one_run(side)
            times[side].append(seconds)
            print(f"run {run} {side}: first acknowledged write {seconds * 1000:.0f} ms after kill -9 of the leader",
                  flush=True)
    report = {"runs_ms": {}, "median_ms": {}}
    for side, runs in times.items():
        median = statistics.median(runs)
        report["runs_ms"][side] = [t * 1000 for t in runs]
        report["median_ms"][side] = median * 1000
        print(f"{side}: failover (kill -9 of the leader to the first acknowledged write), median of {len(runs)}: "
              f"{median * 1000:.0f} ms (min {min(runs) * 1000:.0f}, max {max(runs) * 1000:.0f})")
    if args.load_seconds > 0:
        elections = elections_under_load(args.load_seconds)
        report["elections_under_load"] = {"seconds": args.load_seconds, "per_group": elections}
        print(f"warren: elections during {args.load_seconds} s of loadgen 16x8 90r10w on 3 nodes, per group: "
              f"{elections} (0 = no leader was deposed)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f)


if __name__ == "__main__":
    sys.exit(main())
