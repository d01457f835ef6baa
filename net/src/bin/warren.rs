//! `warren`: the server binary.

use clap::{Parser, Subcommand};
use net::config::Config;
use std::path::PathBuf;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `warren --version`: the release and the git commit it was built from (see build.rs).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("WARREN_GIT_COMMIT"), ")");

#[derive(Parser)]
#[command(name = "warren", version = VERSION, about = "Warren: a ZooKeeper-compatible coordination service")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Starts a node. Flags override the config file; the config file overrides defaults.
    Start(Box<StartArgs>),
    /// Repairs a WAL damaged before its end, which `start` refuses: cuts each damaged core's
    /// log at its first bad batch, DISCARDING that batch and every later write of that core
    /// (acknowledged ones included), and prints what it discarded. Run it only after reading
    /// the refusal, on a stopped node; keep a copy of the data dir first.
    WalRepair(RepairArgs),
    /// Starts a loopback cluster, each node its own `warren start` process, and prints each
    /// node's client address (127.0.0.1:PORT, one per line) once a leader is elected; the
    /// command line to restart each node is in DIR/nodes.txt. Runs until SIGINT/SIGTERM.
    DevCluster(DevClusterArgs),
}

#[derive(Parser)]
struct DevClusterArgs {
    /// Nodes (voters), 1 to 7
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Directory for the nodes' data dirs (node-N) and logs (node-N.log)
    #[arg(long)]
    data_dir: PathBuf,
    /// Executors (Raft groups) per node
    #[arg(long, default_value_t = 1)]
    cores: usize,
    /// More `warren start` flags for every node, after `--` (e.g. `-- --min-session-timeout 1000`)
    #[arg(last = true)]
    start_args: Vec<String>,
}

#[derive(Parser)]
struct RepairArgs {
    /// TOML config file of the node (for data-dir and wal-segment-bytes).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory [default: from --config, else warren-data]
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl RepairArgs {
    fn run(self) -> anyhow::Result<()> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = self.data_dir {
            config.data_dir = v;
        }
        for line in net::server::repair::repair_wal(&config)? {
            println!("{line}");
        }
        Ok(())
    }
}

#[derive(Parser)]
struct StartArgs {
    /// TOML config file (keys as the long flags, e.g. `data-dir = "/var/lib/warren"`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1]
    #[arg(long)]
    host: Option<String>,
    /// Client port [default: 2181]
    #[arg(long)]
    port: Option<u16>,
    /// Data directory (WAL) [default: warren-data]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Executors, one per core; 0 = all cores [default: 0]
    #[arg(long)]
    cores: Option<usize>,
    /// Shards of the namespace [default: 8]
    #[arg(long)]
    shards: Option<u16>,
    /// Smallest session timeout granted, ms [default: 4000]
    #[arg(long)]
    min_session_timeout: Option<i32>,
    /// Largest session timeout granted, ms [default: 40000]
    #[arg(long)]
    max_session_timeout: Option<i32>,
    /// Largest request accepted, bytes [default: 1048576]
    #[arg(long)]
    max_request_bytes: Option<usize>,
    /// How often expired TTL nodes and emptied containers are swept, ms [default: 60000]
    #[arg(long)]
    reap_interval_ms: Option<u64>,
    /// In a cluster, serve a read only once this node has applied through its group leader's
    /// commit index (a ReadIndex round, as sync): linearizable reads, one heartbeat round trip
    /// to the leader per batch of reads. `=false` overrides a config file [default: false]
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    linearizable_reads: Option<bool>,
    /// How long a group may be led by another node than its preferred leader before its
    /// leader hands leadership back; 0 = never [default: 60000]
    #[arg(long)]
    leader_placement_delay_ms: Option<u64>,
    /// In a cluster, how long a follower hears nothing from its group's leader before it
    /// campaigns (a random point up to twice this); a follower whose connection with the
    /// leader ends campaigns within a few heartbeats instead [default: 300]
    #[arg(long)]
    election_timeout_ms: Option<u64>,
    /// In a cluster, how long a node may go without two-way contact with a current leader of
    /// every group before it closes its client connections and refuses new ones until it is
    /// back [default: 2000]
    #[arg(long)]
    leader_contact_timeout_ms: Option<u64>,
    /// In a cluster, applied entries each group keeps in memory for followers that fall behind
    /// [default: 200000]
    #[arg(long)]
    retained_log_entries: Option<u64>,
    /// A group takes a snapshot after about this many entries since its last one (a random
    /// point between half and all of it, so nodes do not snapshot at once) [default: 100000]
    #[arg(long)]
    snapshot_entries: Option<u64>,
    /// ... or after about this many bytes of log entries [default: 268435456]
    #[arg(long)]
    snapshot_bytes: Option<u64>,
    /// Snapshots kept per group; the WAL keeps what the oldest of them needs [default: 2]
    #[arg(long)]
    snapshots_kept: Option<usize>,
    /// Size of one WAL segment file [default: 67108864]
    #[arg(long)]
    wal_segment_bytes: Option<u64>,
    /// This node's id among the peers [default: 1]
    #[arg(long)]
    node_id: Option<u8>,
    /// Every voter, this node included, comma separated: ID=HOST:PORT (the peer port of its
    /// core 0; core c uses PORT + c). Without it the node runs alone.
    #[arg(long, value_delimiter = ',')]
    peers: Option<Vec<String>>,
}

impl StartArgs {
    fn into_config(self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = self.host {
            config.host = v;
        }
        if let Some(v) = self.port {
            config.port = v;
        }
        if let Some(v) = self.data_dir {
            config.data_dir = v;
        }
        if let Some(v) = self.cores {
            config.cores = v;
        }
        if let Some(v) = self.shards {
            config.shards = v;
        }
        if let Some(v) = self.min_session_timeout {
            config.min_session_timeout_ms = v;
        }
        if let Some(v) = self.max_session_timeout {
            config.max_session_timeout_ms = v;
        }
        if let Some(v) = self.max_request_bytes {
            config.max_request_bytes = v;
        }
        if let Some(v) = self.reap_interval_ms {
            config.reap_interval_ms = v;
        }
        if let Some(v) = self.linearizable_reads {
            config.linearizable_reads = v;
        }
        if let Some(v) = self.leader_placement_delay_ms {
            config.leader_placement_delay_ms = v;
        }
        if let Some(v) = self.election_timeout_ms {
            config.election_timeout_ms = v;
        }
        if let Some(v) = self.leader_contact_timeout_ms {
            config.leader_contact_timeout_ms = v;
        }
        if let Some(v) = self.retained_log_entries {
            config.retained_log_entries = v;
        }
        if let Some(v) = self.snapshot_entries {
            config.snapshot_entries = v;
        }
        if let Some(v) = self.snapshot_bytes {
            config.snapshot_bytes = v;
        }
        if let Some(v) = self.snapshots_kept {
            config.snapshots_kept = v;
        }
        if let Some(v) = self.wal_segment_bytes {
            config.wal_segment_bytes = v;
        }
        if let Some(v) = self.node_id {
            config.node_id = v;
        }
        if let Some(v) = self.peers {
            config.peers = v;
        }
        Ok(config)
    }
}

/// A panic on one core would leave the others serving while requests to its shards hang:
/// a violated invariant stops the whole node instead (the WAL keeps every acknowledged write).
fn abort_on_panic() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
}

/// A write past RLIMIT_FSIZE raises SIGXFSZ, whose default action kills the process without a
/// word; ignored, the write fails with EFBIG and takes the logged failed-write path instead.
fn ignore_sigxfsz() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("WARREN_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // A log write that fails (stderr redirected to a file on a full or failing disk) must
        // not panic and abort the node: the failed-WAL path still exits with its own status.
        .log_internal_errors(false)
        .init();
    abort_on_panic();
    ignore_sigxfsz();
    let cli = Cli::parse();
    let result = match cli.command {
        Commands::Start(args) => args.into_config().and_then(net::server::run),
        Commands::WalRepair(args) => args.run(),
        Commands::DevCluster(args) => {
            let DevClusterArgs { nodes, data_dir, cores, start_args } = args;
            net::dev_cluster::DevCluster { nodes, data_dir, cores, start_args }.run()
        }
    };
    if let Err(error) = result {
        eprintln!("warren: {error:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start_config(args: &[&str]) -> Config {
        let cli = Cli::try_parse_from(["warren", "start"].iter().chain(args)).expect("flags parse");
        let Commands::Start(start) = cli.command else { panic!("not start") };
        start.into_config().expect("a config")
    }

    #[test]
    fn the_linearizable_reads_flag_overrides_the_config() {
        assert!(!start_config(&[]).linearizable_reads);
        assert!(start_config(&["--linearizable-reads"]).linearizable_reads);
        assert!(start_config(&["--linearizable-reads=true"]).linearizable_reads);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("warren.toml");
        std::fs::write(&file, "linearizable-reads = true\n").unwrap();
        let path = file.to_str().unwrap();
        assert!(start_config(&["--config", path]).linearizable_reads);
        assert!(!start_config(&["--config", path, "--linearizable-reads=false"]).linearizable_reads);
        assert!(Cli::try_parse_from(["warren", "start", "--linearizable-reads", "yes"]).is_err());
    }
}
