//! Server configuration: a TOML file and the same settings as command-line flags (flags win).

use anyhow::{bail, Context};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Settings of one `warren` node. Every field has a default so a bare `warren start` works.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct Config {
    /// Address the client port binds to.
    pub host: String,
    /// Client port (ZooKeeper's clientPort).
    pub port: u16,
    /// Where the WAL lives.
    pub data_dir: PathBuf,
    /// Executors (one per core). 0 = every core of the machine.
    pub cores: usize,
    /// Shards of the namespace; fixed for the life of a data dir.
    pub shards: u16,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// Largest request frame accepted; larger ones get an error reply.
    pub max_request_bytes: usize,
    /// How often expired TTL nodes and emptied containers are swept; ZooKeeper's
    /// `znode.container.checkIntervalMs`, whose default (60 s) it keeps.
    pub reap_interval_ms: u64,
    /// Requests a connection may have outstanding before the server stops reading from it.
    pub max_outstanding_per_connection: usize,
    /// In a cluster, every read of a path first does the ReadIndex round a `sync` does and is
    /// served once this node has applied through the leader's commit index: a read sees every
    /// write acknowledged before it was sent, through any node. Off: reads are served from the
    /// local replica at once (ZooKeeper's sequential consistency). A single node ignores it.
    pub linearizable_reads: bool,
    /// Leader placement: how long a group may be led by another node than its preferred leader
    /// (voter g mod N of group g) before its leader hands leadership back, once the preferred
    /// node has caught up; 0 turns these handovers off (elections still favour the preferred
    /// node).
    pub leader_placement_delay_ms: u64,
    /// In a cluster, how long a follower hears nothing from its group's leader before it
    /// campaigns: a random point between this and twice this (a leader heartbeats every 30 ms).
    /// A follower whose connection with the leader ends (the leader's process died) campaigns
    /// within a few heartbeats instead, if the other voters lost the leader too.
    pub election_timeout_ms: u64,
    /// In a cluster, how long a node may go without two-way contact with a current leader of
    /// every group (a lease probe answered, `server/lease.rs`) before it stops serving: it
    /// closes its client connections and refuses new ones until it is back in contact, so a
    /// node cut off from the majority never keeps serving its old state.
    pub leader_contact_timeout_ms: u64,
    /// In a cluster, applied entries each group keeps in memory for followers that fall behind
    /// (about 50 MB of small writes at the default). A follower further behind cannot catch up
    /// until snapshots exist: its leader stops answering its lease probes, so it stops serving
    /// rather than serve its old state.
    pub retained_log_entries: u64,
    /// A group takes a snapshot once its log grew by about this many entries since its last
    /// one: at a random point between half and all of it, drawn anew each time, so the nodes
    /// of a cluster do not snapshot at once (ZooKeeper's snapCount does the same).
    pub snapshot_entries: u64,
    /// ... or by about this many bytes of entries, whichever comes first.
    pub snapshot_bytes: u64,
    /// Snapshots kept per group (at least 1). The WAL keeps every entry the oldest of them
    /// needs (and, in a cluster, the last `retained_log_entries`), so a damaged newest snapshot
    /// falls back to the one before it with nothing lost.
    pub snapshots_kept: usize,
    /// Size of one WAL segment file.
    pub wal_segment_bytes: u64,
    /// This node's id: its id among the peers and the high byte of its session ids.
    pub node_id: u8,
    /// Every voter of the cluster, this node included, as `ID=HOST:PORT` (the peer port of
    /// the voter's core 0; core c listens on PORT + c). Empty: a single node.
    pub peers: Vec<String>,
}

/// One voter of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: u8,
    pub host: String,
    /// Peer port of the voter's core 0; core c uses `port + c`.
    pub port: u16,
}

impl Peer {
    pub fn parse(text: &str) -> anyhow::Result<Peer> {
        let fail = || anyhow::anyhow!("peer {text:?} is not ID=HOST:PORT (e.g. 2=127.0.0.1:2889)");
        let (id, addr) = text.split_once('=').ok_or_else(fail)?;
        let (host, port) = addr.rsplit_once(':').ok_or_else(fail)?;
        let id: u8 = id.trim().parse().map_err(|_| fail())?;
        let port: u16 = port.parse().map_err(|_| fail())?;
        if id == 0 || host.is_empty() || port == 0 {
            return Err(fail());
        }
        Ok(Peer { id, host: host.to_string(), port })
    }

    /// Where core `core` of this voter listens for its peers.
    pub fn addr(&self, core: usize) -> String {
        format!("{}:{}", self.host, self.port as usize + core)
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            host: "127.0.0.1".to_string(),
            port: 2181,
            data_dir: PathBuf::from("warren-data"),
            cores: 0,
            shards: 8,
            min_session_timeout_ms: 4000,
            max_session_timeout_ms: 40000,
            max_request_bytes: 1 << 20,
            reap_interval_ms: 60_000,
            max_outstanding_per_connection: 1000,
            linearizable_reads: false,
            leader_placement_delay_ms: 60_000,
            election_timeout_ms: 300,
            leader_contact_timeout_ms: 2000,
            retained_log_entries: 200_000,
            snapshot_entries: 100_000,
            snapshot_bytes: 256 << 20,
            snapshots_kept: 2,
            wal_segment_bytes: 64 << 20,
            node_id: 1,
            peers: Vec::new(),
        }
    }
}

impl Config {
    /// Reads a TOML config file.
    pub fn from_file(path: &Path) -> anyhow::Result<Config> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// Resolves `cores = 0` and checks every setting; the error says which one is wrong.
    pub fn validate(mut self) -> anyhow::Result<Config> {
        if self.cores == 0 {
            self.cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        }
        if self.cores > 256 {
            bail!("cores = {} is more than 256", self.cores);
        }
        if self.shards == 0 || self.shards > 4096 {
            bail!("shards = {} must be between 1 and 4096", self.shards);
        }
        if self.min_session_timeout_ms <= 0 || self.min_session_timeout_ms > self.max_session_timeout_ms {
            bail!(
                "session timeouts must satisfy 0 < min ({}) <= max ({})",
                self.min_session_timeout_ms,
                self.max_session_timeout_ms
            );
        }
        if self.max_request_bytes < 1024 || self.max_request_bytes > (256 << 20) {
            bail!("max-request-bytes = {} must be between 1 KiB and 256 MiB", self.max_request_bytes);
        }
        if !(100..=60_000).contains(&self.election_timeout_ms) {
            bail!("election-timeout-ms = {} must be between 100 and 60000", self.election_timeout_ms);
        }
        if !(500..=60_000).contains(&self.leader_contact_timeout_ms) {
            bail!("leader-contact-timeout-ms = {} must be between 500 and 60000", self.leader_contact_timeout_ms);
        }
        if self.retained_log_entries < 1000 {
            bail!("retained-log-entries = {} must be at least 1000", self.retained_log_entries);
        }
        if self.snapshot_entries < 100 || self.snapshot_bytes < (1 << 20) {
            bail!(
                "snapshot-entries = {} must be at least 100 and snapshot-bytes = {} at least 1 MiB",
                self.snapshot_entries,
                self.snapshot_bytes
            );
        }
        if self.snapshots_kept == 0 {
            bail!("snapshots-kept must be at least 1");
        }
        if self.reap_interval_ms == 0 {
            bail!("reap-interval-ms must be positive");
        }
        if self.max_outstanding_per_connection == 0 {
            bail!("max-outstanding-per-connection must be positive");
        }
        if self.wal_segment_bytes < (1 << 20) {
            bail!("wal-segment-bytes = {} must be at least 1 MiB", self.wal_segment_bytes);
        }
        if self.max_request_bytes as u64 + (64 << 10) > self.wal_segment_bytes {
            bail!(
                "max-request-bytes = {} must leave 64 KiB of room in a WAL segment (wal-segment-bytes = {})",
                self.max_request_bytes,
                self.wal_segment_bytes
            );
        }
        let peers = self.voters()?;
        if !peers.is_empty() {
            if !peers.iter().any(|p| p.id == self.node_id) {
                bail!("node-id = {} is not among the peers {:?}", self.node_id, self.peers);
            }
            if peers.len() > 7 {
                bail!("{} peers: at most 7 voters (a larger quorum only slows writes)", peers.len());
            }
            let mut ids: Vec<u8> = peers.iter().map(|p| p.id).collect();
            ids.sort_unstable();
            ids.dedup();
            if ids.len() != peers.len() {
                bail!("peer ids repeat in {:?}", self.peers);
            }
            for peer in &peers {
                if peer.port as usize + self.cores > usize::from(u16::MAX) {
                    bail!(
                        "peer {} needs ports {}..{} (one per core)",
                        peer.id,
                        peer.port,
                        peer.port as usize + self.cores
                    );
                }
            }
        }
        Ok(self)
    }

    /// The voters from `peers` (empty for a single node).
    pub fn voters(&self) -> anyhow::Result<Vec<Peer>> {
        self.peers.iter().map(|p| Peer::parse(p)).collect()
    }

    /// The session timeout the server grants for a requested one (ZooKeeper clamps it).
    pub fn negotiate_timeout_ms(&self, requested_ms: i32) -> i32 {
        requested_ms.clamp(self.min_session_timeout_ms, self.max_session_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_toml_and_rejects_bad_values() {
        let config: Config = toml::from_str("port = 2999\nshards = 4\ndata-dir = \"/tmp/x\"").unwrap();
        assert_eq!(config.port, 2999);
        assert_eq!(config.shards, 4);
        assert!(toml::from_str::<Config>("prot = 1").is_err(), "unknown keys are refused");
        let bad = Config { min_session_timeout_ms: 5000, max_session_timeout_ms: 1000, ..Config::default() };
        assert!(bad.validate().is_err());
        let config = Config { cores: 0, ..Config::default() }.validate().unwrap();
        assert!(config.cores >= 1);
        let too_big = Config { max_request_bytes: 2 << 20, wal_segment_bytes: 2 << 20, ..Config::default() };
        assert!(too_big.validate().is_err(), "a request must fit a WAL segment with room to spare");
        assert_eq!(Config::default().reap_interval_ms, 60_000, "ZooKeeper's znode.container.checkIntervalMs");
        assert_eq!(config.negotiate_timeout_ms(1), 4000);
        assert_eq!(config.negotiate_timeout_ms(100_000), 40000);
    }

    #[test]
    fn peers_parse_and_a_cluster_is_checked() {
        let peers = vec!["1=127.0.0.1:2888".to_string(), "2=127.0.0.1:2898".into(), "3=localhost:2908".into()];
        let config = Config { peers: peers.clone(), node_id: 2, cores: 2, ..Config::default() }.validate().unwrap();
        let voters = config.voters().unwrap();
        assert_eq!(voters[2], Peer { id: 3, host: "localhost".into(), port: 2908 });
        assert_eq!(voters[1].addr(1), "127.0.0.1:2899", "core c listens on the base port + c");
        let stranger = Config { peers: peers.clone(), node_id: 4, cores: 1, ..Config::default() }.validate();
        assert!(stranger.unwrap_err().to_string().contains("not among the peers"));
        let twice = vec!["1=a:1".to_string(), "1=b:2".into()];
        assert!(Config { peers: twice, cores: 1, ..Config::default() }.validate().is_err());
        for bad in ["x=a:1", "1=a", "1=:5", "0=a:1", "1=a:0", "1=a:70000"] {
            assert!(Peer::parse(bad).is_err(), "{bad} must be refused");
        }
        let toml: Config = toml::from_str("node-id = 3\npeers = [\"3=h:10\"]").unwrap();
        assert_eq!(toml.voters().unwrap(), vec![Peer { id: 3, host: "h".into(), port: 10 }]);
    }

    #[test]
    fn linearizable_reads_are_off_unless_asked_for() {
        assert!(!Config::default().linearizable_reads, "follower reads, as ZooKeeper, by default");
        let on: Config = toml::from_str("linearizable-reads = true").unwrap();
        assert!(on.linearizable_reads);
        assert!(on.validate().is_ok());
        assert!(toml::from_str::<Config>("linearizable-reads = 1").is_err(), "a boolean, not a number");
    }
}
