//! The local Warren that loadgen starts when no --servers are given: one `warren start` on a
//! free loopback port with a temporary data dir. Dropping `LocalWarren` kills the process and
//! removes the directory, on success, error and Ctrl-C alike (the process runs in its own
//! process group so the terminal's Ctrl-C reaches only loadgen, and on Linux it is killed if
//! loadgen itself dies).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::session::{four_letter, Session};

/// Bound on the wait for `ruok` → `imok`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct LocalWarren {
    child: Child,
    pub addr: SocketAddr,
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

fn free_loopback_port() -> Result<u16> {
    // Bind port 0 and release it: a small race with other processes, which start() reports
    // as warren failing to start.
    let l = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(l.local_addr()?.port())
}

impl LocalWarren {
    /// Starts warren and waits (bounded) until it answers `imok`. `stop` aborts the wait.
    pub fn start(cores: usize, stop: &dyn Fn() -> bool) -> Result<LocalWarren> {
        let bin = warren_bin()?;
        let dir = tempfile::Builder::new().prefix("loadgen-warren-").tempdir().context("cannot create a temp dir")?;
        let port = free_loopback_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log_path = dir.path().join("warren.log");
        let log = std::fs::File::create(&log_path).context("cannot create warren.log")?;
        let data_dir = dir.path().join("data");
        let mut cmd = Command::new(&bin);
        cmd.arg("start")
            .args(["--port", &port.to_string(), "--cores", &cores.to_string()])
            .arg("--data-dir")
            .arg(&data_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        detach(&mut cmd);
        let child = cmd.spawn().with_context(|| format!("cannot run {}", bin.display()))?;
        let mut w = LocalWarren { child, addr, dir };
        w.wait_ready(stop)?;
        Ok(w)
    }

    /// The warren process's id, to measure its CPU time.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_ready(&mut self, stop: &dyn Fn() -> bool) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("warren exited during start-up with {status}\n--- warren.log ---\n{}", self.log_tail());
            }
            if let Ok(answer) = four_letter(self.addr, "ruok", Duration::from_millis(500)) {
                // Also require a session: Apache ZooKeeper (as WARREN_BIN=tests/zk_as_warren.sh)
                // answers imok a moment before it serves sessions.
                if answer.trim() == "imok" && Session::connect(self.addr).and_then(Session::close).is_ok() {
                    return Ok(());
                }
            }
            if stop() {
                bail!("interrupted while waiting for warren to start");
            }
            if Instant::now() > deadline {
                bail!(
                    "warren on {} did not answer imok within {READY_TIMEOUT:?}\n--- warren.log ---\n{}",
                    self.addr,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("warren.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for LocalWarren {
    fn drop(&mut self) {
        // SIGKILL: the data is temporary, nothing needs flushing. `dir` is removed after this.
        let _ = self.child.kill();
        let _ = self.child.wait();
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
