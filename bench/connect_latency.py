#!/usr/bin/env python3
"""Session creation latency: kazoo connects (a new session each), then closes, COUNT times in a
row, spread over the nodes of a fresh `warren dev-cluster --nodes 3 --cores 2`.

    .venv/bin/python bench/connect_latency.py [--bin target/release/warren] [--count 200]

Prints the median, p90 and max of KazooClient.start(); bounded: 10 s per connect. Compare two
builds by alternating runs (results/0.1.0/handshake-ab-20261207.txt)."""
import argparse
import logging
import signal
import statistics
import subprocess
import tempfile
import time

from kazoo.client import KazooClient


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default="target/release/warren")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    data_dir = tempfile.mkdtemp(prefix="connect-latency-")
    cluster = subprocess.Popen(
        [args.bin, "dev-cluster", "--nodes", "3", "--cores", str(args.cores), "--data-dir", data_dir],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    times = []
    try:
        addrs = [cluster.stdout.readline().strip() for _ in range(3)]
        time.sleep(2)
        for i in range(args.count):
            client = KazooClient(hosts=addrs[i % 3], timeout=10)
            started = time.perf_counter()
            client.start(timeout=10)
            times.append((time.perf_counter() - started) * 1000)
            client.stop()
            client.close()
    finally:
        cluster.send_signal(signal.SIGTERM)
        cluster.wait(timeout=30)
    times.sort()
    print(f"{args.count} connects: median {statistics.median(times):.2f} ms, "
          f"p90 {times[int(0.9 * len(times))]:.2f} ms, max {times[-1]:.2f} ms")


if __name__ == "__main__":
    main()
