//! Test harness: starts real warren processes on loopback, and speaks raw jute for the tests
//! that must send bytes no well-behaved client would send.
//!
//! `WarrenProcess::start(opts)` picks a free loopback port, makes a temp data dir, spawns the
//! warren binary (env `WARREN_BIN`, else `<workspace>/target/release/warren`, else
//! `target/debug/warren`) and waits for `ruok` → `imok`. The process is SIGKILLed on drop; only
//! the child this harness spawned is ever signalled.
//!
//! Comparison mode: with `ZK_TEST_SERVER=host:port` set, no process is started and every test
//! runs against that server (e.g. a standalone Apache ZooKeeper). Tests that must kill or
//! restart the server, or need server flags, call `skip_if_external()` and return early.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use zookeeper_client as zk;

/// How long a server gets to answer `imok` after spawn.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Flags passed to `warren start`. `None` leaves the server default.
#[derive(Clone, Debug)]
pub struct WarrenOpts {
    pub min_session_timeout_ms: Option<u64>,
    pub max_session_timeout_ms: Option<u64>,
    pub cores: Option<u32>,
    pub shards: Option<u32>,
    pub max_request_bytes: Option<u64>,
    pub reap_interval_ms: Option<u64>,
    pub extra_args: Vec<String>,
}

impl Default for WarrenOpts {
    /// Small and quick: one core, sessions may be as short as 1 s, reaper every 200 ms.
    fn default() -> Self {
        WarrenOpts {
            min_session_timeout_ms: Some(1000),
            max_session_timeout_ms: Some(40000),
            cores: Some(1),
            shards: None,
            max_request_bytes: None,
            reap_interval_ms: Some(200),
            extra_args: Vec::new(),
        }
    }
}

impl WarrenOpts {
    pub fn cores(mut self, n: u32) -> Self {
        self.cores = Some(n);
        self
    }
    pub fn shards(mut self, n: u32) -> Self {
        self.shards = Some(n);
        self
    }
    pub fn session_timeouts_ms(mut self, min: u64, max: u64) -> Self {
        self.min_session_timeout_ms = Some(min);
        self.max_session_timeout_ms = Some(max);
        self
    }
    pub fn max_request_bytes(mut self, n: u64) -> Self {
        self.max_request_bytes = Some(n);
        self
    }
    pub fn reap_interval_ms(mut self, ms: u64) -> Self {
        self.reap_interval_ms = Some(ms);
        self
    }
}

/// The server under test: a warren child process, or an external server (comparison mode).
pub struct WarrenProcess {
    opts: WarrenOpts,
    addr: SocketAddr,
    child: Option<Child>,
    bin: Option<PathBuf>,
    data_dir: PathBuf,
    stderr_path: PathBuf,
    // Held for its Drop: removes the temp dir (and the data dir when it lives inside).
    _tmp: tempfile::TempDir,
    external: bool,
}

/// `ZK_TEST_SERVER`, when set: the address of an external server to test instead of warren.
pub fn external_server() -> Option<String> {
    std::env::var("ZK_TEST_SERVER").ok().filter(|s| !s.trim().is_empty())
}

/// True (and says so on stderr) when the test cannot run against an external server.
/// Whether the server under test is Apache ZooKeeper behind `tests/zk_as_warren.sh`.
pub fn is_zookeeper() -> bool {
    std::env::var("WARREN_BIN").is_ok_and(|bin| bin.ends_with("zk_as_warren.sh"))
}

pub fn skip_if_external(test: &str) -> bool {
    if external_server().is_some() {
        eprintln!("{test}: skipped: needs a warren process it controls (ZK_TEST_SERVER set)");
        return true;
    }
    false
}

/// The warren binary: `WARREN_BIN`, else `<workspace>/target/release/warren`, else debug.
pub fn warren_bin() -> PathBuf {
    if let Ok(p) = std::env::var("WARREN_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "WARREN_BIN={} does not exist; build it with `cargo build --release --bins`", p.display());
        return p;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| workspace.join("target"));
    for profile in ["release", "debug"] {
        let p = target.join(profile).join("warren");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "warren binary not found: set WARREN_BIN or run `cargo build --release --bins` (looked in {}/{{release,debug}}/warren)",
        target.display()
    );
}

/// A loopback port nobody listens on right now.
/// A loopback port for a server to listen on: below the kernel's ephemeral range (32768 and
/// up here), so no socket bound to port 0 meanwhile (a proxy, a client) can take it before the
/// server binds it; free now; and reserved for the life of this process by a lock on
/// `<tmp>/warren-test-ports/<port>`, so tests running in parallel in other processes never
/// get the same one.
pub fn free_port() -> u16 {
    free_port_run(1)
}

/// Reserves `port` for this process (see `free_port`): false if another process holds it or
/// something listens on it.
fn reserve_port(port: u16) -> bool {
    static HELD: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
    let dir = std::env::temp_dir().join("warren-test-ports");
    let _ = std::fs::create_dir_all(&dir);
    let Ok(file) =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(port.to_string()))
    else {
        return false;
    };
    if file.try_lock().is_err() || TcpListener::bind(("127.0.0.1", port)).is_err() {
        return false;
    }
    HELD.lock().unwrap_or_else(|e| e.into_inner()).push(file);
    true
}

/// A node name no other test (or earlier run against a shared external server) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{}-{}", std::process::id(), nanos % 1_000_000_000, N.fetch_add(1, Ordering::Relaxed))
}

impl WarrenProcess {
    /// Starts a fresh server with an empty temp data dir.
    pub fn start(opts: WarrenOpts) -> WarrenProcess {
        let tmp = tempfile::Builder::new().prefix("warren-test-").tempdir().expect("tempdir");
        let data_dir = tmp.path().join("data");
        std::fs::create_dir_all(&data_dir).unwrap();
        Self::start_in(opts, tmp, data_dir)
    }

    /// Starts a server on an existing data dir (e.g. to inspect recovery of a kept dir).
    pub fn start_with_data_dir(opts: WarrenOpts, data_dir: &Path) -> WarrenProcess {
        let tmp = tempfile::Builder::new().prefix("warren-test-").tempdir().expect("tempdir");
        Self::start_in(opts, tmp, data_dir.to_path_buf())
    }

    /// Spawns a server without waiting for it (a cluster node serves sessions only once a
    /// majority is up); `wait_ready` waits.
    fn spawn_unready(opts: WarrenOpts, addr: SocketAddr) -> WarrenProcess {
        let tmp = tempfile::Builder::new().prefix("warren-test-").tempdir().expect("tempdir");
        let data_dir = tmp.path().join("data");
        std::fs::create_dir_all(&data_dir).unwrap();
        let mut p = Self::local(opts, addr, tmp, data_dir);
        p.spawn();
        p
    }

    /// A server this harness runs (not spawned yet).
    fn local(opts: WarrenOpts, addr: SocketAddr, tmp: tempfile::TempDir, data_dir: PathBuf) -> WarrenProcess {
        WarrenProcess {
            opts,
            addr,
            child: None,
            bin: Some(warren_bin()),
            data_dir,
            stderr_path: tmp.path().join("warren.stderr.log"),
            _tmp: tmp,
            external: false,
        }
    }

    fn start_in(opts: WarrenOpts, tmp: tempfile::TempDir, data_dir: PathBuf) -> WarrenProcess {
        if let Some(ext) = external_server() {
            let addr = std::net::ToSocketAddrs::to_socket_addrs(&ext)
                .expect("ZK_TEST_SERVER must be host:port")
                .next()
                .expect("ZK_TEST_SERVER resolves");
            return WarrenProcess {
                opts,
                addr,
                child: None,
                bin: None,
                data_dir,
                stderr_path: tmp.path().join("warren.stderr.log"),
                _tmp: tmp,
                external: true,
            };
        }
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut p = Self::local(opts, addr, tmp, data_dir);
        p.spawn_and_wait();
        p
    }

    fn args(&self) -> Vec<String> {
        let o = &self.opts;
        let mut a = vec![
            "start".to_string(),
            "--host".into(),
            self.addr.ip().to_string(),
            "--port".into(),
            self.addr.port().to_string(),
            "--data-dir".into(),
            self.data_dir.display().to_string(),
        ];
        let mut flag = |name: &str, v: Option<String>| {
            if let Some(v) = v {
                a.push(name.to_string());
                a.push(v);
            }
        };
        flag("--min-session-timeout", o.min_session_timeout_ms.map(|v| v.to_string()));
        flag("--max-session-timeout", o.max_session_timeout_ms.map(|v| v.to_string()));
        flag("--cores", o.cores.map(|v| v.to_string()));
        flag("--shards", o.shards.map(|v| v.to_string()));
        flag("--max-request-bytes", o.max_request_bytes.map(|v| v.to_string()));
        flag("--reap-interval-ms", o.reap_interval_ms.map(|v| v.to_string()));
        a.extend(o.extra_args.iter().cloned());
        a
    }

    fn spawn_and_wait(&mut self) {
        self.spawn();
        self.wait_ready();
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let bin = self.bin.clone().expect("no binary in external mode");
        // Append: a restart keeps the log of the run before it.
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.stderr_path).expect("stderr log");
        let args = self.args();
        let child = Command::new(&bin)
            .args(&args)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} {:?}: {e}", bin.display(), args));
        self.child = Some(child);
    }

    /// Waits (bounded) until the spawned server answers imok and serves a session.
    pub fn wait_ready(&mut self) {
        let bin = self.bin.clone().expect("no binary in external mode");
        let args = self.args();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!(
                    "warren exited during start-up with {status} ({} {:?})\n--- stderr ---\n{}\n--- sockets on the port ---\n{}",
                    bin.display(),
                    args,
                    self.stderr_tail(),
                    sockets_on_port(self.addr.port())
                );
            }
            if let Ok(r) = four_letter_at(self.addr, "ruok", Duration::from_millis(500)) {
                // Also require a session handshake: ZooKeeper answers imok a moment before it
                // serves sessions (warren must not, but the check costs nothing).
                if r.trim() == "imok" && handshake_ok(self.addr) {
                    return;
                }
            }
            if Instant::now() > deadline {
                let _ = self.child.as_mut().unwrap().kill();
                let _ = self.child.as_mut().unwrap().wait();
                self.child = None;
                panic!(
                    "warren not ready (ruok→imok) within {:?} on {} ({:?})\n--- stderr ---\n{}",
                    READY_TIMEOUT,
                    self.addr,
                    args,
                    self.stderr_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connect string for ZooKeeper clients.
    pub fn connect_string(&self) -> String {
        self.addr.to_string()
    }

    pub fn is_external(&self) -> bool {
        self.external
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL and reap the child: no chance to flush anything.
    pub fn kill9(&mut self) {
        assert!(!self.external, "kill9 on an external server");
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (bounded) for a graceful exit; returns whether it exited in time
    /// and successfully. Falls back to SIGKILL.
    pub fn terminate(&mut self, within: Duration) -> bool {
        assert!(!self.external, "terminate on an external server");
        let Some(mut c) = self.child.take() else { return true };
        // SAFETY: plain kill(2) on the pid of a child we spawned and have not reaped yet.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(st) = c.try_wait().unwrap() {
                // Exit 0; or 143 = 128 + SIGTERM returned by the process itself (the JVM's
                // graceful exit, for comparison runs); or the default action of SIGTERM, which
                // warren keeps on purpose (every acknowledged write is already on disk).
                use std::os::unix::process::ExitStatusExt;
                return st.success() || st.code() == Some(143) || st.signal() == Some(libc::SIGTERM);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// Starts the server again on the same port and data dir (after kill9/terminate), as an
    /// operator or systemd would: once the old process's listening socket is gone. (A killed
    /// io_uring process keeps its listener for a few ms after it is reaped, while the kernel
    /// tears the ring down.)
    pub fn restart(&mut self) {
        self.restart_unready();
        self.wait_ready();
    }

    /// Like `restart`, but returns once the process is spawned; `wait_ready` waits for it.
    pub fn restart_unready(&mut self) {
        assert!(!self.external, "restart on an external server");
        if self.child.is_some() {
            self.kill9();
        }
        let freed = wait_until(Duration::from_secs(5), || std::net::TcpListener::bind(self.addr).is_ok());
        assert!(
            freed,
            "port {} still busy 5 s after the old server died:\n{}",
            self.addr,
            sockets_on_port(self.addr.port())
        );
        self.spawn();
    }

    /// Like `restart`, but spawns at once, even while the dead server's socket lingers.
    pub fn restart_immediately(&mut self) {
        assert!(!self.external, "restart on an external server");
        if self.child.is_some() {
            self.kill9();
        }
        self.spawn_and_wait();
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => self.external,
            Some(c) => c.try_wait().unwrap().is_none(),
        }
    }

    /// Waits (bounded) for the child to exit on its own and reaps it; None if it still runs.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        assert!(!self.external, "wait_exit on an external server");
        let deadline = Instant::now() + within;
        loop {
            let status = self.child.as_mut()?.try_wait().unwrap();
            if let Some(status) = status {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A failing disk for the running server: sets its RLIMIT_FSIZE (prlimit(2)), so every
    /// write reaching offset `bytes` of a file fails with EFBIG (warren ignores SIGXFSZ). The
    /// limit covers its stderr log file too: leave room above `stderr_log_bytes()`. A restart
    /// runs without the limit.
    pub fn limit_file_size(&self, bytes: u64) {
        let pid = self.pid().expect("a running warren child") as libc::pid_t;
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: prlimit(2) on our own child's pid with valid, owned structs; the hard limit
        // is kept, so no privilege is needed.
        unsafe {
            assert_eq!(libc::prlimit(pid, libc::RLIMIT_FSIZE, std::ptr::null(), &mut limit), 0);
            limit.rlim_cur = bytes.min(limit.rlim_max);
            let done = libc::prlimit(pid, libc::RLIMIT_FSIZE, &limit, std::ptr::null_mut());
            assert_eq!(done, 0, "prlimit: {}", std::io::Error::last_os_error());
        }
    }

    /// Sends a four-letter word and reads the answer to EOF (bounded: 10 s).
    pub fn four_letter(&self, word: &str) -> String {
        four_letter_at(self.addr, word, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("4lw {word} on {}: {e}\n{}", self.addr, self.stderr_tail()))
    }

    /// The file the server's stderr/stdout go to (appended to across restarts).
    pub fn stderr_path(&self) -> &Path {
        &self.stderr_path
    }

    /// Bytes the server wrote to stderr/stdout so far (its log file's size).
    pub fn stderr_log_bytes(&self) -> u64 {
        std::fs::metadata(&self.stderr_path).map_or(0, |m| m.len())
    }

    /// The last 200 lines the server wrote to stderr/stdout.
    pub fn stderr_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        let from = lines.len().saturating_sub(200);
        lines[from..].join("\n")
    }

    /// A connected zookeeper-client session (bounded: 20 s).
    pub async fn client(&self) -> zk::Client {
        self.client_with(zk::Client::connector()).await
    }

    /// Connects, trying again for up to 20 s while the node refuses handshakes (a cluster node
    /// that is not in contact with a leader of every group, for a moment after a failure),
    /// as ZooKeeper clients keep trying.
    pub async fn client_with(&self, connector: zk::Connector) -> zk::Client {
        let deadline = Instant::now() + Duration::from_secs(20);
        let connect_string = self.connect_string();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = connector.clone().with_fail_eagerly().connect(&connect_string);
            match tokio::time::timeout(left, attempt).await {
                Ok(Ok(client)) => return client,
                Ok(Err(e)) if Instant::now() + Duration::from_millis(100) < deadline => {
                    eprintln!("connect to {}: {e}; trying again", self.addr);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(Err(e)) => panic!("connect to {}: {e}\n{}", self.addr, self.stderr_tail()),
                Err(_) => panic!("connect to {} timed out\n{}", self.addr, self.stderr_tail()),
            }
        }
    }
}

impl Drop for WarrenProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() && !self.external {
            eprintln!(
                "--- warren stderr ({}) ---\n{}\n--- end warren stderr ---",
                self.stderr_path.display(),
                self.stderr_tail()
            );
        }
    }
}

/// A cluster of `warren start` processes on loopback, peers of each other: node `i` (from 1)
/// is `nodes[i - 1]`, each with its own data dir; every node runs the same options.
pub struct WarrenCluster {
    pub nodes: Vec<WarrenProcess>,
    /// With `start_behind_proxies`: the link from node i to node j, by (i, j).
    links: std::collections::BTreeMap<(usize, usize), LinkProxy>,
}

impl WarrenCluster {
    /// Starts `size` nodes and waits until each serves a session.
    pub fn start(size: usize, opts: WarrenOpts) -> WarrenCluster {
        Self::start_with(size, opts, false)
    }

    /// Like `start`, but every node reaches every other through a TCP proxy of its own, so a
    /// test can cut links (`cut`, `isolate`) without touching the network configuration.
    pub fn start_behind_proxies(size: usize, opts: WarrenOpts) -> WarrenCluster {
        Self::start_with(size, opts, true)
    }

    /// Like `start`, but node `id` runs with `opts_of(id)`, and only the nodes in `wait_for`
    /// are waited for (a node started with settings the others refuse never serves).
    pub fn start_mixed(size: usize, opts_of: impl Fn(usize) -> WarrenOpts, wait_for: &[usize]) -> WarrenCluster {
        Self::start_each(size, opts_of, false, wait_for)
    }

    fn start_with(size: usize, opts: WarrenOpts, proxied: bool) -> WarrenCluster {
        let all: Vec<usize> = (1..=size).collect();
        Self::start_each(size, |_| opts.clone(), proxied, &all)
    }

    fn start_each(
        size: usize,
        opts_of: impl Fn(usize) -> WarrenOpts,
        proxied: bool,
        wait_for: &[usize],
    ) -> WarrenCluster {
        let opts = opts_of(1);
        // One peer port per core (Warren); two for ZooKeeper as WARREN_BIN (quorum, election).
        let run = (opts.cores.unwrap_or(1) as usize).max(2);
        let peer_ports: Vec<u16> = (0..size).map(|_| free_port_run(run)).collect();
        let mut links = std::collections::BTreeMap::new();
        let mut nodes = Vec::new();
        for id in 1..=size {
            let peers: Vec<String> = (1..=size)
                .map(|other| {
                    let real = peer_ports[other - 1];
                    if !proxied || other == id {
                        return format!("{other}=127.0.0.1:{real}");
                    }
                    let proxy = LinkProxy::start(real, run);
                    let port = proxy.port;
                    links.insert((id, other), proxy);
                    format!("{other}=127.0.0.1:{port}")
                })
                .collect();
            let mut node_opts = opts_of(id);
            node_opts.extra_args.extend(["--node-id".to_string(), id.to_string(), "--peers".into(), peers.join(",")]);
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            nodes.push(WarrenProcess::spawn_unready(node_opts, addr));
        }
        for (i, node) in nodes.iter_mut().enumerate() {
            if wait_for.contains(&(i + 1)) {
                node.wait_ready();
            }
        }
        WarrenCluster { nodes, links }
    }

    /// Cuts (or restores) the link from node `from` to node `to`: one direction only.
    pub fn set_link(&self, from: usize, to: usize, up: bool) {
        self.links.get(&(from, to)).expect("started behind proxies").set_up(up);
    }

    /// Cuts (or restores) the link from node `from` to node `to` of one core (one Raft group)
    /// only: one direction.
    pub fn set_core_link(&self, from: usize, to: usize, core: usize, up: bool) {
        self.links.get(&(from, to)).expect("started behind proxies").set_core_up(core, up);
    }

    /// Delays what node `from` sends to node `to` in one core's group by `ms` (0: none).
    pub fn set_core_link_delay_ms(&self, from: usize, to: usize, core: usize, ms: u64) {
        self.links.get(&(from, to)).expect("started behind proxies").set_core_delay_ms(core, ms);
    }

    /// Cuts every link to and from node `id` (or restores them).
    pub fn set_isolated(&self, id: usize, isolated: bool) {
        for other in 1..=self.nodes.len() {
            if other != id {
                self.set_link(id, other, !isolated);
                self.set_link(other, id, !isolated);
            }
        }
    }

    /// Node `id` (from 1).
    pub fn node(&mut self, id: usize) -> &mut WarrenProcess {
        &mut self.nodes[id - 1]
    }

    /// The `Mode:` line of each node's `srvr` (None for a node that does not answer).
    pub fn modes(&self) -> Vec<Option<String>> {
        self.nodes
            .iter()
            .map(|n| {
                let srvr = four_letter_at(n.addr(), "srvr", Duration::from_secs(2)).ok()?;
                srvr.lines().find_map(|l| l.strip_prefix("Mode: ").map(str::to_string))
            })
            .collect()
    }

    /// Waits (bounded) until exactly one node says it leads (the session group) and returns
    /// its id.
    pub fn wait_leader(&self, within: Duration) -> usize {
        let mut leader = None;
        let found = wait_until(within, || {
            let modes = self.modes();
            let leaders: Vec<usize> =
                modes.iter().enumerate().filter(|(_, m)| m.as_deref() == Some("leader")).map(|(i, _)| i + 1).collect();
            leader = (leaders.len() == 1).then(|| leaders[0]);
            leader.is_some()
        });
        assert!(found, "no single leader within {within:?}: {:?}", self.modes());
        leader.expect("found")
    }

    /// Every node's client address, as a ZooKeeper connect string.
    pub fn connect_string(&self) -> String {
        self.nodes.iter().map(|n| n.addr().to_string()).collect::<Vec<_>>().join(",")
    }
}

/// A TCP proxy for one peer link: a `Proxy` on each of `run` consecutive loopback ports, port
/// `port + i` forwarding to `target + i` (a node's cores, or ZooKeeper's quorum and election
/// ports). Cut, it closes the connections it carries and refuses new ones, as a broken
/// network would.
pub struct LinkProxy {
    pub port: u16,
    proxies: Vec<Proxy>,
}

impl LinkProxy {
    pub fn start(target: u16, run: usize) -> LinkProxy {
        let port = free_port_run(run);
        let proxies = (0..run as u16)
            .map(|i| Proxy::start_at(port + i, SocketAddr::from(([127, 0, 0, 1], target + i))))
            .collect();
        LinkProxy { port, proxies }
    }

    pub fn set_up(&self, up: bool) {
        for core in 0..self.proxies.len() {
            self.set_core_up(core, up);
        }
    }

    /// Delays the link to one core (port `target + core`) by `ms` (0: none).
    pub fn set_core_delay_ms(&self, core: usize, ms: u64) {
        self.proxies[core].set_delay_ms(ms);
    }

    /// Cuts or heals the link to one core (port `target + core`) only.
    pub fn set_core_up(&self, core: usize, up: bool) {
        let proxy = &self.proxies[core];
        if up {
            proxy.heal();
        } else {
            proxy.cut();
        }
    }
}

/// A free loopback port followed by `run - 1` more free ones (a node's peer ports).
pub fn free_port_run(run: usize) -> u16 {
    const FIRST: u32 = 10_000;
    const COUNT: u32 = 22_000;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let start = std::process::id().wrapping_mul(7919) % COUNT;
    for _ in 0..COUNT {
        let n = NEXT.fetch_add(run as u64, Ordering::Relaxed) as u32;
        let port = FIRST + (start + n) % COUNT;
        if port + run as u32 > FIRST + COUNT {
            continue;
        }
        if (0..run as u32).all(|i| reserve_port((port + i) as u16)) {
            return port as u16;
        }
    }
    panic!("no {run} consecutive free loopback ports in {FIRST}..{}", FIRST + COUNT)
}

/// `ss -tanp` lines for a port (diagnostics when a bind fails).
fn sockets_on_port(port: u16) -> String {
    Command::new("ss")
        .args(["-tanpo"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.contains(&format!(":{port} ")))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_else(|e| format!("(ss: {e})"))
}

/// The value of `key` in `node`'s `mntr` (panics if it is missing or not a number).
pub fn mntr_value(node: &WarrenProcess, key: &str) -> u64 {
    let mntr = node.four_letter("mntr");
    let prefix = format!("{key}\t");
    let value = mntr
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("mntr of {} has no {key}:\n{mntr}", node.addr()));
    value.trim().parse().unwrap_or_else(|e| panic!("{key} = {value:?}: {e}"))
}

/// A top-level path (with `tag`) whose shard, of `shards`, is `shard`.
pub fn top_level_in_shard(tag: &str, shard: u16, shards: u16) -> String {
    (0..)
        .map(|i| format!("/{}-{i}", unique(tag)))
        .find(|path| engine::path::shard_of(path, shards) == shard)
        .expect("some name lands in every shard")
}

/// Sends `word` and reads to EOF.
pub fn four_letter_at(addr: SocketAddr, word: &str, timeout: Duration) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(word.as_bytes())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Whether a ConnectRequest gets a ConnectResponse with a live session (then closes it).
fn handshake_ok(addr: SocketAddr) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let req = Jute::new().i32(0).i64(0).i32(5000).i64(0).buf(&[0u8; 16]).bool(false);
        s.write_all(&req.framed())?;
        let resp = read_frame(&mut s)?;
        if resp.len() < 16 {
            return Ok(false);
        }
        let mut r = JuteReader::new(&resp);
        r.i32();
        let timeout = r.i32();
        let session_id = r.i64();
        if timeout <= 0 {
            return Ok(false);
        }
        // closeSession, so the probe leaves no session behind.
        let close = Jute::new().i32(1).i32(op::CLOSE_SESSION);
        s.write_all(&close.framed())?;
        let _ = read_frame(&mut s);
        Ok(session_id != 0)
    };
    attempt().unwrap_or(false)
}

/// Runs `f` until it returns true, at most `within`; returns whether it did.
pub fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Async version of `wait_until`: polls `f` every 25 ms for at most `within`.
pub async fn wait_until_async<F, Fut>(within: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Awaits `fut` for at most `secs` seconds, panicking with `what` on time-out.
pub async fn bounded<T>(secs: u64, what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {secs}s: {what}"))
}

// ---------------------------------------------------------------------------------------------
// Raw jute, for the tests that send bytes by hand.

/// ZooKeeper opcodes (ZooDefs.OpCode).
pub mod op {
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const EXISTS: i32 = 3;
    pub const GET_DATA: i32 = 4;
    pub const SET_DATA: i32 = 5;
    pub const GET_ACL: i32 = 6;
    pub const SET_ACL: i32 = 7;
    pub const SET_WATCHES: i32 = 101;
    pub const GET_CHILDREN: i32 = 8;
    pub const SYNC: i32 = 9;
    pub const PING: i32 = 11;
    pub const GET_CHILDREN2: i32 = 12;
    pub const CHECK: i32 = 13;
    pub const MULTI: i32 = 14;
    pub const CREATE2: i32 = 15;
    pub const CREATE_CONTAINER: i32 = 19;
    pub const CREATE_TTL: i32 = 21;
    pub const MULTI_READ: i32 = 22;
    pub const AUTH: i32 = 100;
    pub const GET_EPHEMERALS: i32 = 103;
    pub const GET_ALL_CHILDREN_NUMBER: i32 = 104;
    pub const ADD_WATCH: i32 = 106;
    pub const WHO_AM_I: i32 = 107;
    pub const CLOSE_SESSION: i32 = -11;
    pub const ERROR: i32 = -1;
}

/// ZooKeeper error codes (KeeperException.Code).
pub mod err {
    pub const OK: i32 = 0;
    pub const RUNTIME_INCONSISTENCY: i32 = -2;
    pub const UNIMPLEMENTED: i32 = -6;
    pub const BAD_ARGUMENTS: i32 = -8;
    pub const NO_NODE: i32 = -101;
    pub const NO_AUTH: i32 = -102;
    pub const BAD_VERSION: i32 = -103;
    pub const NO_CHILDREN_FOR_EPHEMERALS: i32 = -108;
    pub const NODE_EXISTS: i32 = -110;
    pub const NOT_EMPTY: i32 = -111;
    pub const INVALID_ACL: i32 = -114;
}

/// A jute record being written (big-endian, length-prefixed strings/buffers).
#[derive(Default, Clone, Debug)]
pub struct Jute(pub Vec<u8>);

impl Jute {
    pub fn new() -> Jute {
        Jute(Vec::new())
    }
    pub fn i32(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn i64(mut self, v: i64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn bool(mut self, v: bool) -> Self {
        self.0.push(v as u8);
        self
    }
    pub fn buf(mut self, b: &[u8]) -> Self {
        self = self.i32(b.len() as i32);
        self.0.extend_from_slice(b);
        self
    }
    pub fn str(self, s: &str) -> Self {
        self.buf(s.as_bytes())
    }
    /// A null buffer (length -1), as the Java client writes `null` data.
    pub fn null_buf(self) -> Self {
        self.i32(-1)
    }
    /// ACL vector of (perms, scheme, id).
    pub fn acls(mut self, acls: &[(i32, &str, &str)]) -> Self {
        self = self.i32(acls.len() as i32);
        for (perms, scheme, id) in acls {
            self = self.i32(*perms).str(scheme).str(id);
        }
        self
    }
    /// world:anyone with all permissions.
    pub fn open_acl(self) -> Self {
        self.acls(&[(31, "world", "anyone")])
    }
    pub fn bytes(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    /// The record with its 4-byte length prefix.
    pub fn framed(&self) -> Vec<u8> {
        let mut v = (self.0.len() as i32).to_be_bytes().to_vec();
        v.extend_from_slice(&self.0);
        v
    }
}

/// A jute record being read.
pub struct JuteReader<'a> {
    pub buf: &'a [u8],
}

impl<'a> JuteReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        JuteReader { buf }
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(self.buf.len() >= n, "short record: want {n} bytes, have {}", self.buf.len());
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        a
    }
    pub fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take(4).try_into().unwrap())
    }
    pub fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take(8).try_into().unwrap())
    }
    pub fn bool(&mut self) -> bool {
        self.take(1)[0] != 0
    }
    pub fn buf(&mut self) -> Option<Vec<u8>> {
        let n = self.i32();
        if n < 0 {
            return None;
        }
        Some(self.take(n as usize).to_vec())
    }
    pub fn string(&mut self) -> String {
        String::from_utf8(self.buf().unwrap_or_default()).expect("utf8 string")
    }
    pub fn stat(&mut self) -> RawStat {
        RawStat {
            czxid: self.i64(),
            mzxid: self.i64(),
            ctime: self.i64(),
            mtime: self.i64(),
            version: self.i32(),
            cversion: self.i32(),
            aversion: self.i32(),
            ephemeral_owner: self.i64(),
            data_length: self.i32(),
            num_children: self.i32(),
            pzxid: self.i64(),
        }
    }
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawStat {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub data_length: i32,
    pub num_children: i32,
    pub pzxid: i64,
}

/// A reply: header and body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub xid: i32,
    pub zxid: i64,
    pub err: i32,
    pub body: Vec<u8>,
}

/// One frame from a session: a reply or a notification (xid -1).
#[derive(Debug)]
pub enum Frame {
    Reply(Reply),
    Event(RawEvent),
}

/// Splits a frame (without its length prefix) into its header and body.
pub fn decode_frame(f: &[u8]) -> Frame {
    let mut r = JuteReader::new(f);
    let xid = r.i32();
    let zxid = r.i64();
    let err = r.i32();
    if xid == -1 {
        let event_type = r.i32();
        let state = r.i32();
        let path = r.string();
        return Frame::Event(RawEvent { event_type, state, path });
    }
    Frame::Reply(Reply { xid, zxid, err, body: r.buf.to_vec() })
}

/// A watch notification (xid -1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    pub event_type: i32,
    pub state: i32,
    pub path: String,
}

/// A ZooKeeper session over a plain blocking socket. It pings only when told to, so a test can
/// make a session go silent (the server must then expire it).
pub struct RawSession {
    pub stream: TcpStream,
    pub session_id: i64,
    pub timeout_ms: i32,
    pub password: Vec<u8>,
    next_xid: i32,
    /// Notifications read while waiting for replies.
    pub events: Vec<RawEvent>,
}

/// Reads one length-prefixed frame; Err on EOF/timeout/error.
pub fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let n = i32::from_be_bytes(len);
    if !(0..=64 << 20).contains(&n) {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad frame length {n}")));
    }
    let mut v = vec![0u8; n as usize];
    s.read_exact(&mut v)?;
    Ok(v)
}

/// Connects a TCP socket to `addr` with 10 s read/write time-outs.
pub fn raw_socket(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("tcp connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Whether the peer closed (or reset) the socket, waiting at most `within`; data read
/// meanwhile is discarded.
pub fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

impl RawSession {
    /// Handshake: ConnectRequest{protocolVersion 0, lastZxidSeen 0, timeOut, sessionId 0,
    /// passwd[16]} + readOnly=false.
    pub fn connect(addr: SocketAddr, timeout_ms: i32) -> RawSession {
        let mut s = raw_socket(addr);
        let req = Jute::new().i32(0).i64(0).i32(timeout_ms).i64(0).buf(&[0u8; 16]).bool(false);
        s.write_all(&req.framed()).expect("send ConnectRequest");
        let resp = read_frame(&mut s).expect("read ConnectResponse");
        let mut r = JuteReader::new(&resp);
        let _proto = r.i32();
        let negotiated = r.i32();
        let session_id = r.i64();
        let password = r.buf().unwrap_or_default();
        assert!(negotiated > 0, "server refused the session (timeout {negotiated})");
        RawSession { stream: s, session_id, timeout_ms: negotiated, password, next_xid: 1, events: Vec::new() }
    }

    /// Reattaches to an existing session on a new connection, as a client does after losing
    /// its connection: ConnectRequest with the session id, password and last zxid seen.
    pub fn reattach(addr: SocketAddr, session_id: i64, password: &[u8], last_zxid_seen: i64) -> RawSession {
        Self::try_reattach(addr, session_id, password, last_zxid_seen)
            .unwrap_or_else(|| panic!("server refused to reattach session {session_id:#x}"))
    }

    /// `reattach` that returns None when the server refuses (timeout 0 or the connection
    /// closed: ZooKeeper closes it for a client that has seen a later zxid than it has).
    pub fn try_reattach(addr: SocketAddr, session_id: i64, password: &[u8], last_zxid_seen: i64) -> Option<RawSession> {
        let mut s = raw_socket(addr);
        let req = Jute::new().i32(0).i64(last_zxid_seen).i32(10000).i64(session_id).buf(password).bool(false);
        s.write_all(&req.framed()).ok()?;
        let resp = read_frame(&mut s).ok()?;
        let mut r = JuteReader::new(&resp);
        let _proto = r.i32();
        let negotiated = r.i32();
        if negotiated <= 0 {
            return None;
        }
        assert_eq!(r.i64(), session_id, "the same session");
        let password = r.buf().unwrap_or_default();
        Some(RawSession { stream: s, session_id, timeout_ms: negotiated, password, next_xid: 1, events: Vec::new() })
    }

    pub fn next_xid(&mut self) -> i32 {
        let x = self.next_xid;
        self.next_xid += 1;
        x
    }

    /// Sends RequestHeader{xid, op} + body, unframed bytes appended as given.
    pub fn send(&mut self, xid: i32, opcode: i32, body: &Jute) {
        let rec = Jute::new().i32(xid).i32(opcode).bytes(&body.0);
        self.stream.write_all(&rec.framed()).expect("send request");
    }

    /// Reads frames until a reply (xid != -1) arrives; notifications are stored in `events`.
    pub fn read_reply(&mut self) -> std::io::Result<Reply> {
        loop {
            match decode_frame(&read_frame(&mut self.stream)?) {
                Frame::Event(event) => self.events.push(event),
                Frame::Reply(reply) => return Ok(reply),
            }
        }
    }

    /// One request, one reply (skipping pings' replies and notifications).
    pub fn call(&mut self, opcode: i32, body: Jute) -> Reply {
        let xid = self.next_xid();
        self.send(xid, opcode, &body);
        loop {
            let r = self.read_reply().unwrap_or_else(|e| panic!("reply to op {opcode} xid {xid}: {e}"));
            if r.xid == -2 {
                continue;
            }
            assert_eq!(r.xid, xid, "reply xid out of order for op {opcode}");
            return r;
        }
    }

    pub fn ping(&mut self) {
        self.send(-2, op::PING, &Jute::new());
        loop {
            let r = self.read_reply().expect("ping reply");
            if r.xid == -2 {
                return;
            }
        }
    }

    /// Waits up to `within` for a notification, pinging meanwhile.
    pub fn wait_event(&mut self, within: Duration) -> Option<RawEvent> {
        let deadline = Instant::now() + within;
        while self.events.is_empty() && Instant::now() < deadline {
            self.ping();
            if self.events.is_empty() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if self.events.is_empty() {
            None
        } else {
            Some(self.events.remove(0))
        }
    }

    pub fn create(&mut self, path: &str, data: &[u8], flags: i32) -> Reply {
        self.call(op::CREATE, Jute::new().str(path).buf(data).open_acl().i32(flags))
    }

    pub fn get_data(&mut self, path: &str, watch: bool) -> Reply {
        self.call(op::GET_DATA, Jute::new().str(path).bool(watch))
    }

    pub fn set_data(&mut self, path: &str, data: &[u8], version: i32) -> Reply {
        self.call(op::SET_DATA, Jute::new().str(path).buf(data).i32(version))
    }

    pub fn close(mut self) {
        let xid = self.next_xid();
        self.send(xid, op::CLOSE_SESSION, &Jute::new());
        let _ = self.read_reply();
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// A create op inside a multi: MultiHeader{type, done=false, err=-1} + CreateRequest.
pub fn multi_create(j: Jute, path: &str, data: &[u8], flags: i32) -> Jute {
    j.i32(op::CREATE).bool(false).i32(-1).str(path).buf(data).open_acl().i32(flags)
}

/// A setData op inside a multi.
pub fn multi_set_data(j: Jute, path: &str, data: &[u8], version: i32) -> Jute {
    j.i32(op::SET_DATA).bool(false).i32(-1).str(path).buf(data).i32(version)
}

/// A check op inside a multi.
pub fn multi_check(j: Jute, path: &str, version: i32) -> Jute {
    j.i32(op::CHECK).bool(false).i32(-1).str(path).i32(version)
}

/// The multi terminator: MultiHeader{-1, done=true, -1}.
pub fn multi_end(j: Jute) -> Jute {
    j.i32(-1).bool(true).i32(-1)
}

/// Decodes a multi reply body into (op type, err) per op; err is 0 for successes.
pub fn parse_multi_reply(body: &[u8]) -> Vec<(i32, i32)> {
    let mut r = JuteReader::new(body);
    let mut out = Vec::new();
    loop {
        let ty = r.i32();
        let done = r.bool();
        let e = r.i32();
        if done {
            break;
        }
        match ty {
            op::ERROR => {
                let code = r.i32();
                out.push((ty, code));
            }
            op::CREATE => {
                r.string();
                out.push((ty, e));
            }
            op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => {
                r.string();
                r.stat();
                out.push((ty, e));
            }
            op::SET_DATA => {
                r.stat();
                out.push((ty, e));
            }
            op::DELETE | op::CHECK => out.push((ty, e)),
            other => panic!("unexpected op {other} in multi reply"),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// A TCP proxy that can cut a client off from the server, to make sessions expire.

/// Forwards loopback connections to `upstream`. `cut()` closes every open connection and
/// refuses new ones until `heal()`; the server then sees a silent session and must expire it.
pub struct Proxy {
    addr: SocketAddr,
    enabled: Arc<AtomicBool>,
    /// Milliseconds each chunk of bytes is held before it is passed on (0: none).
    delay_ms: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accept_thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    pub fn start(upstream: SocketAddr) -> Proxy {
        Self::start_at(0, upstream)
    }

    /// A proxy listening on loopback port `port` (0: any free one).
    pub fn start_at(port: u16, upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("proxy bind");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let enabled = Arc::new(AtomicBool::new(true));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (en, st, cs, delay) = (enabled.clone(), stop.clone(), conns.clone(), delay_ms.clone());
        let accept_thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((down, _)) => {
                        if !en.load(Ordering::SeqCst) {
                            drop(down);
                            continue;
                        }
                        down.set_nonblocking(false).unwrap();
                        let Ok(up) = TcpStream::connect_timeout(&upstream, Duration::from_secs(5)) else {
                            continue;
                        };
                        // As the nodes' own sockets: without it, Nagle held a small message
                        // behind an unacknowledged one until the peer's delayed ACK (up to
                        // 40 ms), and writes through the proxies ran 5x slower at random.
                        let _ = down.set_nodelay(true);
                        let _ = up.set_nodelay(true);
                        let mut cs = cs.lock().unwrap();
                        cs.push(down.try_clone().unwrap());
                        cs.push(up.try_clone().unwrap());
                        pipe(down.try_clone().unwrap(), up.try_clone().unwrap(), delay.clone());
                        pipe(up, down, delay.clone());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Proxy { addr, enabled, delay_ms, stop, conns, accept_thread: Some(accept_thread) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes all proxied connections and refuses new ones.
    pub fn cut(&self) {
        self.enabled.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    pub fn heal(&self) {
        self.enabled.store(true, Ordering::SeqCst);
    }

    /// Holds every chunk of bytes for `ms` before passing it on (a slow link; 0 restores it).
    pub fn set_delay_ms(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until either side closes. With a delay set, every chunk is passed on
/// `delay_ms` after it arrived (a second thread writes, so the delay adds latency and never
/// limits throughput).
fn pipe(mut from: TcpStream, mut to: TcpStream, delay_ms: Arc<AtomicU64>) {
    let (chunks, due_chunks) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    let writer_from = from.try_clone().ok();
    std::thread::spawn(move || {
        for (due, chunk) in due_chunks {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        if let Some(from) = writer_from {
            let _ = from.shutdown(Shutdown::Both);
        }
    });
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let due = Instant::now() + Duration::from_millis(delay_ms.load(Ordering::SeqCst));
                    if chunks.send((due, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = from.shutdown(Shutdown::Both);
    });
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
    }
}

/// digest ACL id for user:password, as ZooKeeper computes it: user:base64(sha1("user:password")).
pub fn digest_id(user: &str, password: &str) -> String {
    use base64::Engine;
    use sha1::Digest;
    let hash = sha1::Sha1::digest(format!("{user}:{password}").as_bytes());
    format!("{user}:{}", base64::engine::general_purpose::STANDARD.encode(hash))
}
