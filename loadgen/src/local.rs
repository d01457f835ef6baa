//! The local Warren cluster that loadgen starts when no --servers are given: `--nodes` (3 by
//! default) `warren start` processes on free loopback ports, each with its own data dir in one
//! temporary directory, peers of each other (1 node: a single node without peers). Dropping
//! `LocalWarren` kills the processes and removes the directory, on success, error and Ctrl-C
//! alike (each process runs in its own process group so the terminal's Ctrl-C reaches only
//! loadgen, and on Linux it is killed if loadgen itself dies).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::session::{four_letter, Session};

/// Bound on the wait for `ruok` → `imok`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct LocalWarren {
    children: Vec<Child>,
    /// Client address of each node.
    pub addrs: Vec<SocketAddr>,
    dir: tempfile::TempDir,
}

/// The warren binary: $WARREN_BIN, else `warren` next to the loadgen executable (cargo puts
/// both in target/<profile>/).
pub fn warren_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("WARREN_BIN") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("WARREN_BIN={} is not a file", p.display());
        }
        return Ok(p);
    }
    let exe = std::env::current_exe().context("cannot locate the loadgen executable")?;
    let p = exe.with_file_name("warren");
    if !p.is_file() {
        bail!(
            "no warren binary at {} (build it with `cargo build --release -p net --bin warren`, set WARREN_BIN, \
             or pass --servers host:port)",
            p.display()
        );
    }
    Ok(p)
}

impl LocalWarren {
    /// Starts `nodes` warren processes (a cluster of them, or a single node) and waits
    /// (bounded) until each answers `imok` and serves a session. `stop` aborts the wait.
    pub fn start(nodes: usize, cores: usize, stop: &dyn Fn() -> bool) -> Result<LocalWarren> {
        let bin = warren_bin()?;
        let dir = tempfile::Builder::new().prefix("loadgen-warren-").tempdir().context("cannot create a temp dir")?;
        let mut ports = Vec::with_capacity(nodes);
        for _ in 0..nodes {
            ports.push((net::dev_cluster::free_ports(1)?, net::dev_cluster::free_ports(cores)?));
        }
        let peers: Vec<String> =
            ports.iter().enumerate().map(|(i, (_, peer))| format!("{}=127.0.0.1:{peer}", i + 1)).collect();
        let mut w = LocalWarren { children: Vec::new(), addrs: Vec::new(), dir };
        for (i, (port, _)) in ports.iter().enumerate() {
            let node = i + 1;
            let log = std::fs::File::create(w.log_path(node)).context("cannot create a warren log")?;
            let mut cmd = Command::new(&bin);
            cmd.arg("start")
                .args(["--port", &port.to_string(), "--cores", &cores.to_string()])
                .arg("--data-dir")
                .arg(w.dir.path().join(format!("data-{node}")))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
            if nodes > 1 {
                cmd.args(["--node-id", &node.to_string(), "--peers", &peers.join(",")]);
            }
            detach(&mut cmd);
            w.children.push(cmd.spawn().with_context(|| format!("cannot run {}", bin.display()))?);
            w.addrs.push(([127, 0, 0, 1], *port).into());
        }
        for node in 1..=nodes {
            w.wait_ready(node, stop)?;
        }
        Ok(w)
    }

    /// The warren processes' ids, to measure their CPU time.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    fn log_path(&self, node: usize) -> PathBuf {
        self.dir.path().join(format!("warren-{node}.log"))
    }

    fn wait_ready(&mut self, node: usize, stop: &dyn Fn() -> bool) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = self.addrs[node - 1];
        loop {
            if let Some(status) = self.children[node - 1].try_wait()? {
                bail!("warren {node} exited during start-up with {status}\n--- its log ---\n{}", self.log_tail(node));
            }
            if let Ok(answer) = four_letter(addr, "ruok", Duration::from_millis(500)) {
                // Also require a session: Apache ZooKeeper (as WARREN_BIN=tests/zk_as_warren.sh)
                // answers imok a moment before it serves sessions, and a cluster's node serves
                // one only once its groups have leaders.
                if answer.trim() == "imok" && Session::connect(addr).and_then(Session::close).is_ok() {
                    return Ok(());
                }
            }
            if stop() {
                bail!("interrupted while waiting for warren to start");
            }
            if Instant::now() > deadline {
                bail!(
                    "warren {node} on {addr} did not serve a session within {READY_TIMEOUT:?}\n--- its log ---\n{}",
                    self.log_tail(node)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self, node: usize) -> String {
        let log = std::fs::read_to_string(self.log_path(node)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for LocalWarren {
    fn drop(&mut self) {
        // SIGKILL: the data is temporary, nothing needs flushing. `dir` is removed after this.
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(target_os = "linux")]
fn detach(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe and touches only the child being set up.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn detach(cmd: &mut Command) {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let _ = cmd;
}
