#!/usr/bin/env python3
"""Session creation latency: kazoo connects (a new session each), then closes, COUNT times in a
row, spread over the nodes of a fresh `warren dev-cluster --nodes 3 --cores 2`. With
--reattach: one session reattached COUNT times, each time through the next node (a raw
ConnectRequest with the session's id and password, as a client that lost its connection sends).

    .venv/bin/python bench/connect_latency.py [--bin target/release/warren] [--count 200] [--reattach]

Prints the median, p90 and max of KazooClient.start() (or of the reattach's ConnectRequest to
its ConnectResponse); bounded: 10 s per connect. Compare two builds by alternating runs
(results/0.1.0/handshake-ab-20261207.txt, reattach-ab-20261207.txt)."""
import argparse
import logging
import signal
import socket
import statistics
import struct
import subprocess
import tempfile
import time

from kazoo.client import KazooClient


def connect_raw(addr, session_id=0, passwd=b"\0" * 16):
    """One ConnectRequest on a new socket: (session id, password, seconds to the answer)."""
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    body = struct.pack(">iqiqi", 0, 0, 30000, session_id, len(passwd)) + passwd + b"\0"
    started = time.perf_counter()
    sock.sendall(struct.pack(">i", len(body)) + body)
    length = struct.unpack(">i", read_exactly(sock, 4))[0]
    answer = read_exactly(sock, length)
    elapsed = time.perf_counter() - started
    sock.close()
    _, timeout_ms, got_session, passwd_len = struct.unpack(">iiqi", answer[:20])
    if timeout_ms <= 0:
        raise RuntimeError(f"session {session_id:#x} refused by {addr}")
    return got_session, answer[20:20 + passwd_len], elapsed


def read_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise RuntimeError("connection closed")
        data += chunk
    return data


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default="target/release/warren")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--reattach", action="store_true")
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
        if args.reattach:
            session, passwd, _ = connect_raw(addrs[0])
        for i in range(args.count):
            if args.reattach:
                times.append(connect_raw(addrs[(i + 1) % 3], session, passwd)[2] * 1000)
                continue
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
    what = "reattaches" if args.reattach else "connects"
    print(f"{args.count} {what}: median {statistics.median(times):.2f} ms, "
          f"p90 {times[int(0.9 * len(times))]:.2f} ms, max {times[-1]:.2f} ms")


if __name__ == "__main__":
    main()
