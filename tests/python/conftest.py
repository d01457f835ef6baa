"""pytest fixtures: a warren server per test module, kazoo clients on it.

The server binary is $WARREN_BIN, else <repo>/target/release/warren, else target/debug/warren.
With WARREN_NODES=3 the server is a 3-node cluster (`warren dev-cluster`, WARREN_CORES executors
and Raft groups per node, 1 unless set) and every client lists all three nodes (kazoo picks one
at random), so recipes run across nodes. With
ZK_TEST_SERVER=host:port[,host:port...] set, no server is started and the suite runs against
that one (for comparing with Apache ZooKeeper).
"""
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import pytest
from kazoo.client import KazooClient

REPO = pathlib.Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 20


def warren_bin():
    env = os.environ.get("WARREN_BIN")
    if env:
        if not os.path.isfile(env):
            pytest.fail(f"WARREN_BIN={env} does not exist; run `cargo build --release --bins`")
        return env
    for profile in ("release", "debug"):
        p = REPO / "target" / profile / "warren"
        if p.is_file():
            return str(p)
    pytest.fail("warren binary not found: set WARREN_BIN or run `cargo build --release --bins`")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def four_letter(host, port, word, timeout=5.0):
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(word.encode())
        out = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return out.decode(errors="replace")
            out += chunk


class Child:
    """A child process with a temp dir and a log file in it; stop() ends both."""

    def __init__(self, prefix, log_name):
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.log_path = os.path.join(self.tmp, log_name)
        self.proc = None

    def tail(self, n=100):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        shutil.rmtree(self.tmp, ignore_errors=True)


class Warren(Child):
    """A warren child process on a free loopback port and a temp data dir."""

    def __init__(self):
        super().__init__("warren-pytest-", "warren.stderr.log")
        self.host = "127.0.0.1"
        self.port = free_port()

    def start(self):
        data = os.path.join(self.tmp, "data")
        os.makedirs(data, exist_ok=True)
        args = [warren_bin(), "start", "--host", self.host, "--port", str(self.port), "--data-dir", data,
                "--cores", os.environ.get("WARREN_CORES", "1"), "--min-session-timeout", "1000", "--max-session-timeout", "40000",
                "--reap-interval-ms", "200"]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"warren exited with {self.proc.returncode} during start-up:\n{self.tail()}")
            try:
                if four_letter(self.host, self.port, "ruok", 0.5).strip() == "imok":
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"warren not ready within {READY_TIMEOUT_S}s:\n{self.tail()}")

    @property
    def hosts(self):
        return f"{self.host}:{self.port}"


class WarrenCluster(Child):
    """`warren dev-cluster --nodes N` as a child process: N nodes on free loopback ports."""

    def __init__(self, nodes):
        super().__init__("warren-pytest-cluster-", "dev-cluster.stderr.log")
        self.nodes = nodes
        self.addrs = []

    def start(self):
        cores = os.environ.get("WARREN_CORES", "1")
        args = [warren_bin(), "dev-cluster", "--nodes", str(self.nodes), "--cores", cores,
                "--data-dir", os.path.join(self.tmp, "data"), "--", "--min-session-timeout", "1000", "--max-session-timeout", "40000", "--reap-interval-ms", "200"]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.log, text=True)
        deadline = time.monotonic() + 2 * READY_TIMEOUT_S
        while len(self.addrs) < self.nodes:
            line = self.proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dev-cluster did not start:\n{self.tail()}")
            self.addrs.append(line.strip())
        return self

    @property
    def hosts(self):
        return ",".join(self.addrs)


@pytest.fixture(scope="module")
def server():
    external = os.environ.get("ZK_TEST_SERVER", "").strip()
    if external:
        yield external
        return
    nodes = int(os.environ.get("WARREN_NODES", "1"))
    w = (WarrenCluster(nodes) if nodes > 1 else Warren()).start()
    try:
        yield w.hosts
    finally:
        alive = w.proc is not None and w.proc.poll() is None
        log = w.tail()
        w.stop()
        if not alive:
            pytest.fail(f"warren died during the tests:\n{log}")


@pytest.fixture
def make_client(server):
    """Factory for started kazoo clients; all are stopped and closed at the end of the test."""
    clients = []

    def make(**kw):
        c = KazooClient(hosts=server, timeout=10, **kw)
        c.start(timeout=15)
        clients.append(c)
        return c

    yield make
    for c in clients:
        try:
            c.stop()
            c.close()
        except Exception:
            pass


@pytest.fixture
def zk(make_client):
    return make_client()


@pytest.fixture
def root(zk):
    """A fresh top-level node for the test (one shard: keep the test's nodes under it)."""
    path = "/py-" + uuid.uuid4().hex[:12]
    zk.create(path)
    return path
