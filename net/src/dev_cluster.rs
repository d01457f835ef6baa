//! `warren dev-cluster`: a loopback cluster in one command, for tries and tests. Each node is
//! its own `warren start` process (so a test can kill -9 one and start it again with the
//! command line written to `DIR/nodes.txt`), with its data dir and log under DIR. Prints each
//! node's client address (`127.0.0.1:PORT`, one per line) once every node answers and the
//! cluster has a leader; runs until SIGINT or SIGTERM, then stops the nodes.

use crate::signals;
use anyhow::{bail, Context};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the nodes get to answer and elect a leader.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long stopped nodes get to exit before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

pub struct DevCluster {
    pub nodes: usize,
    pub data_dir: PathBuf,
    pub cores: usize,
    /// More `warren start` flags for every node.
    pub start_args: Vec<String>,
}

struct Node {
    id: usize,
    client: SocketAddr,
    args: Vec<String>,
    child: Option<Child>,
}

impl DevCluster {
    pub fn run(self) -> anyhow::Result<()> {
        if !(1..=7).contains(&self.nodes) {
            bail!("--nodes {} must be between 1 and 7", self.nodes);
        }
        if !(1..=64).contains(&self.cores) {
            bail!("--cores {} must be between 1 and 64", self.cores);
        }
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("cannot create {}", self.data_dir.display()))?;
        let bin = std::env::current_exe().context("cannot locate the warren executable")?;
        let mut ports = Vec::new();
        for _ in 0..self.nodes {
            ports.push((free_ports(1)?, free_ports(self.cores)?));
        }
        let peers: Vec<String> =
            ports.iter().enumerate().map(|(i, (_, peer))| format!("{}=127.0.0.1:{peer}", i + 1)).collect();
        let mut nodes: Vec<Node> = ports
            .iter()
            .enumerate()
            .map(|(i, (client, _))| {
                let id = i + 1;
                let mut args = vec![
                    "start".to_string(),
                    "--port".into(),
                    client.to_string(),
                    "--cores".into(),
                    self.cores.to_string(),
                    "--data-dir".into(),
                    self.data_dir.join(format!("node-{id}")).display().to_string(),
                ];
                if self.nodes > 1 {
                    args.extend(["--node-id".into(), id.to_string(), "--peers".into(), peers.join(",")]);
                }
                args.extend(self.start_args.iter().cloned());
                Node { id, client: ([127, 0, 0, 1], *client).into(), args, child: None }
            })
            .collect();
        signals::block_stop_signals();
        let started = start_all(&bin, &self.data_dir, &mut nodes);
        let result = started.and_then(|()| self.serve(&bin, &mut nodes));
        stop_all(&mut nodes);
        result
    }

    fn serve(&self, bin: &Path, nodes: &mut [Node]) -> anyhow::Result<()> {
        wait_ready(nodes)?;
        let mut listing = String::new();
        for node in nodes.iter() {
            listing.push_str(&format!(
                "node {}: {}  log {}  restart: {} {}\n",
                node.id,
                node.client,
                log_path(&self.data_dir, node.id).display(),
                bin.display(),
                node.args.join(" ")
            ));
        }
        std::fs::write(self.data_dir.join("nodes.txt"), &listing).context("cannot write nodes.txt")?;
        eprint!("{listing}");
        let mut stdout = std::io::stdout().lock();
        for node in nodes.iter() {
            writeln!(stdout, "{}", node.client)?;
        }
        stdout.flush()?;
        drop(stdout);
        loop {
            if let Some(signal) = signals::stop_signal_within(Duration::from_millis(500)) {
                eprintln!("warren dev-cluster: signal {signal}; stopping the nodes");
                return Ok(());
            }
            for node in nodes.iter_mut() {
                if let Some(child) = node.child.as_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        // Kept running: a test may kill a node on purpose and start it again.
                        eprintln!("warren dev-cluster: node {} exited ({status})", node.id);
                        node.child = None;
                    }
                }
            }
        }
    }
}

fn log_path(dir: &Path, id: usize) -> PathBuf {
    dir.join(format!("node-{id}.log"))
}

fn start_all(bin: &Path, dir: &Path, nodes: &mut [Node]) -> anyhow::Result<()> {
    for node in nodes.iter_mut() {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path(dir, node.id))
            .context("cannot open a node log")?;
        let mut command = Command::new(bin);
        command.args(&node.args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        // SAFETY: prctl and sigprocmask are async-signal-safe and touch only the child being
        // set up. The nodes die with dev-cluster however it dies, and get back the stop
        // signals this process blocks (a signal mask survives exec).
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                signals::unblock_stop_signals_in_child();
                Ok(())
            });
        }
        node.child = Some(command.spawn().with_context(|| format!("cannot run {}", bin.display()))?);
    }
    Ok(())
}

/// Every node answers `ruok`, (a cluster) one says it leads, and every node serves (it is in
/// contact with a leader of every group: before that it refuses sessions).
fn wait_ready(nodes: &mut [Node]) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        for node in nodes.iter_mut() {
            if let Some(Ok(Some(status))) = node.child.as_mut().map(Child::try_wait) {
                bail!("node {} exited during start-up ({status}); see its log", node.id);
            }
        }
        let answers: Vec<Option<String>> = nodes.iter().map(|n| four_letter(n.client, "srvr")).collect();
        let modes: Vec<&str> =
            answers.iter().flatten().filter_map(|a| a.lines().find_map(|l| l.strip_prefix("Mode: "))).collect();
        let leaders = modes.iter().filter(|m| **m == "leader" || **m == "standalone").count();
        let serving =
            || nodes.iter().all(|n| four_letter(n.client, "mntr").is_some_and(|m| !m.contains("warren_serving\t0")));
        if modes.len() == nodes.len() && leaders == 1 && serving() {
            return Ok(());
        }
        if signals::stop_signal_within(Duration::from_millis(50)).is_some() {
            bail!("interrupted during start-up");
        }
        if Instant::now() > deadline {
            bail!("the nodes did not answer and elect a leader within {READY_TIMEOUT:?} (modes: {modes:?})");
        }
    }
}

fn stop_all(nodes: &mut [Node]) {
    for node in nodes.iter() {
        if let Some(child) = &node.child {
            // SAFETY: kill(2) on a child we spawned and have not reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        }
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    for node in nodes.iter_mut() {
        let Some(mut child) = node.child.take() else { continue };
        while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A free loopback port followed by `run - 1` more free ones (a node's peer ports). Bound and
/// released: a small race with other processes, which shows as a node failing to start.
pub fn free_ports(run: usize) -> anyhow::Result<u16> {
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let rest_free = (1..run)
            .all(|i| u16::try_from(port as usize + i).is_ok_and(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()));
        if rest_free {
            return Ok(port);
        }
    }
    bail!("found no {run} consecutive free loopback ports")
}

fn four_letter(addr: SocketAddr, word: &str) -> Option<String> {
    let timeout = Duration::from_millis(500);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.write_all(word.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}
