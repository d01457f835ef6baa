//! The `warren` server: one glommio executor per core, each owning the shards `s` with
//! `s mod cores == core`, its WAL and the connections the kernel hands it (SO_REUSEPORT).
//! See docs/architecture.md for the threads and the path of a read and of a write.

pub(crate) mod clock;
mod commit;
pub mod conn;
pub mod core;
pub mod cut;
pub mod data_dir;
pub(crate) mod driver;
pub mod fourlw;
pub mod lease;
mod lease_loop;
pub mod metrics;
pub mod msg;
pub(crate) mod proposal;
pub mod repair;
pub(crate) mod replica;
pub mod role;
pub mod sessions;
mod snapshots;
mod transport;
pub mod txn_driver;
mod txns;
pub mod watermark;

use self::conn::Conn;
use self::core::{Cluster, Core, ShardSlot};
use self::msg::Msg;
use self::role::GroupLeaders;
use self::transport::Transport;
use crate::config::Config;
use crate::config::Peer;
use crate::jute;
use crate::wal::{KeepWhole, Recovered, Wal, WalConfig, WalError};
use crate::{raft_log, raft_state, snapshot_file};
use ahash::AHashMap;
use anyhow::{anyhow, bail};
use engine::command::{LogEntry, ShardId};
use engine::raft::{Config as RaftConfig, HardState, NodeId, Raft};
use engine::types::Zxid;
use engine::Shard;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver};
use glommio::channels::shared_channel::{self, SharedReceiver, SharedSender};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Batches a core-to-core channel holds before its sender waits.
const CORE_CHANNEL_CAPACITY: usize = 1024;
/// Most messages in one core-to-core batch.
const CORE_BATCH_MAX: usize = 4096;
/// Locked memory per executor for io_uring buffers: small, so that several nodes fit under
/// the default RLIMIT_MEMLOCK of 8 MiB.
pub(crate) const IO_MEMORY_BYTES: usize = 1 << 20;
/// How long a task queue runs before the executor looks at the network again. glommio reaps
/// socket completions only between its runs of the task queues, and leaves that loop only when
/// every queue is idle or this timer fires (100 ms by default): a snapshot writer that is
/// always runnable held every request of the core back up to 100 ms. The timer is not armed
/// while the core sleeps, so an idle core pays nothing for it.
const PREEMPT_AFTER: Duration = Duration::from_millis(1);
/// How long a busy client port is retried at start-up.
const PORT_BUSY_RETRY: Duration = Duration::from_secs(5);

/// The executor of one core.
fn core_executor(core: usize) -> LocalExecutorBuilder {
    LocalExecutorBuilder::new(Placement::Unbound)
        .name(&format!("warren-core-{core}"))
        .io_memory(IO_MEMORY_BYTES)
        .preempt_timer(PREEMPT_AFTER)
}

/// Runs a node until the process is stopped (SIGTERM, SIGINT).
pub fn run(config: Config) -> anyhow::Result<()> {
    let config = config.validate()?;
    data_dir::prepare(&config)?;
    check_port_free(&config)?;
    let cores = config.cores;
    let voters = config.voters()?;
    crate::signals::block_stop_signals();
    let group_leaders = Arc::new(GroupLeaders::new(cores, u64::from(config.node_id), voters.len() > 1));
    let replay = Arc::new(ReplayExchange::new(cores));
    let (mut senders, mut receivers) = channel_matrix(cores);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let mut handles = Vec::new();
    for core in 0..cores {
        let config = config.clone();
        let outgoing = std::mem::take(&mut senders[core]);
        let incoming = std::mem::take(&mut receivers[core]);
        let ready = ready_tx.clone();
        let (voters, group_leaders, replay) = (voters.clone(), group_leaders.clone(), replay.clone());
        let handle = core_executor(core)
            .spawn(move || async move {
                let channels = CoreChannels { outgoing, incoming, replay };
                if let Err(error) = run_core(core, config, channels, voters, group_leaders, ready.clone()).await {
                    let _ = ready.send(Err(format!("core {core}: {error:#}")));
                }
            })
            .map_err(|e| anyhow!("cannot start the executor of core {core}: {e}"))?;
        handles.push(handle);
    }
    // Only the cores hold senders now: a core that dies during start-up ends the wait at once.
    drop(ready_tx);
    for _ in 0..cores {
        match ready_rx.recv_timeout(Duration::from_secs(600)) {
            Ok(Ok(())) => {}
            Ok(Err(message)) => bail!("{message}"),
            Err(_) => bail!("the cores did not start"),
        }
    }
    tracing::info!(host = %config.host, port = config.port, cores, shards = config.shards, "warren listening on {}:{}", config.host, config.port);
    eprintln!("warren listening on {}:{}", config.host, config.port);
    // The executors run until the process ends; their handles are not joined.
    drop(handles);
    let signal = crate::signals::wait_stop_signal();
    stop(signal, &group_leaders)
}

/// How long a stopping cluster node waits for its groups' leadership to move.
const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(3);

/// Stops the node: every acknowledged write is already durable, so a single node exits at
/// once; a cluster node first hands the groups it leads to other voters (bounded), so they
/// are not without a leader for an election timeout.
fn stop(signal: i32, group_leaders: &GroupLeaders) -> ! {
    if group_leaders.leads_any() {
        tracing::info!(signal, "stopping: handing leadership over");
        group_leaders.stop();
        let deadline = Instant::now() + HAND_OVER_TIMEOUT;
        while group_leaders.leads_any() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if group_leaders.leads_any() {
            tracing::warn!("stopping while still leading a group: no voter took over within {HAND_OVER_TIMEOUT:?}");
        } else {
            tracing::info!("leadership handed over");
        }
    }
    tracing::info!(signal, "stopped");
    // _exit: the executors are still running; nothing is buffered (logs go to stderr).
    // SAFETY: _exit(2) ends the process at once.
    unsafe { libc::_exit(0) }
}

/// Exit status of a node stopped by a failed WAL write or fdatasync (sysexits' EX_IOERR).
pub const EXIT_WAL_FAILED: i32 = 74;

/// Stops the node after a WAL write or fdatasync failed. The outcome of that batch is
/// unknown: the data may be on disk or not, and after a failed fdatasync the kernel may have
/// dropped the dirty pages and report the next fdatasync clean (PostgreSQL's "fsyncgate"). So
/// its writes are neither applied nor answered, and nothing later may be acknowledged on top
/// of them; as ZooKeeper does, the node exits. Clients see the connection drop
/// (ConnectionLoss: "maybe applied") and the restart decides from the disk (recovery keeps
/// the batch if it is whole and valid, cuts it if torn). This also makes sure no write the
/// server proposed itself (a session close on expiry) is silently lost: it is redone after
/// the restart.
pub fn stop_on_wal_failure(core: usize, error: &WalError, writes: usize) -> ! {
    tracing::error!(core, %error, writes, exit_status = EXIT_WAL_FAILED,
        "WAL write or fdatasync failed; stopping the node (the batch is neither applied nor answered; \
         restart it once the disk is fixed, recovery decides from the disk)");
    // _exit, not exit: the other cores' executors keep running until the process ends, and
    // atexit handlers must not run under them; nothing is buffered (logs go to unbuffered stderr).
    // SAFETY: _exit(2) ends the process at once; it touches no Rust state.
    unsafe { libc::_exit(EXIT_WAL_FAILED) }
}

/// Stops the node after its Raft term and vote could not be made durable: it may not vote or
/// lead without them (a forgotten vote could elect two leaders in one term).
pub fn stop_on_state_failure(core: usize) -> ! {
    tracing::error!(core, exit_status = EXIT_WAL_FAILED, "stopping the node: the Raft term and vote are not durable");
    // SAFETY: as in stop_on_wal_failure.
    unsafe { libc::_exit(EXIT_WAL_FAILED) }
}

/// The executors bind with SO_REUSEPORT, which would silently share a port with another
/// warren; a plain bind first turns a busy port into a clear error.
///
/// Right after a `kill -9` the dead process's listener can outlive it for a moment (the
/// kernel tears its io_uring down asynchronously), so a busy port is retried for a few
/// seconds before it is an error.
fn check_port_free(config: &Config) -> anyhow::Result<()> {
    let addr = format!("{}:{}", config.host, config.port);
    let deadline = Instant::now() + PORT_BUSY_RETRY;
    loop {
        match std::net::TcpListener::bind(&addr) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => bail!("cannot listen on {addr}: {e}"),
        }
    }
}

type Matrix<T> = Vec<Vec<Option<T>>>;
type Senders = Matrix<SharedSender<Vec<Msg>>>;
type Receivers = Matrix<SharedReceiver<Vec<Msg>>>;

/// One bounded SPSC channel per ordered pair of cores: senders[i][j] sends i → j and
/// receivers[j][i] receives it.
fn channel_matrix(cores: usize) -> (Senders, Receivers) {
    let mut senders: Senders = (0..cores).map(|_| (0..cores).map(|_| None).collect()).collect();
    let mut receivers: Receivers = (0..cores).map(|_| (0..cores).map(|_| None).collect()).collect();
    for from in 0..cores {
        for to in 0..cores {
            if from != to {
                let (tx, rx) = shared_channel::new_bounded(CORE_CHANNEL_CAPACITY);
                senders[from][to] = Some(tx);
                receivers[to][from] = Some(rx);
            }
        }
    }
    (senders, receivers)
}

/// A core's ends of the channels to the node's other cores.
struct CoreChannels {
    outgoing: Vec<Option<SharedSender<Vec<Msg>>>>,
    incoming: Vec<Option<SharedReceiver<Vec<Msg>>>>,
    replay: Arc<ReplayExchange>,
}

async fn run_core(
    core_id: usize,
    config: Config,
    channels: CoreChannels,
    voters: Vec<Peer>,
    group_leaders: Arc<GroupLeaders>,
    ready: mpsc::Sender<Result<(), String>>,
) -> anyhow::Result<()> {
    let config = Rc::new(config);
    let clustered = voters.len() > 1;
    // Bound before anything is recovered, so a busy peer port fails the start at once.
    let peer_listener = match voters.iter().find(|p| p.id == config.node_id) {
        Some(me) if clustered => {
            let addr = me.addr(core_id);
            Some(
                bind_shared_listener(&addr)
                    .map_err(|e| anyhow!("core {core_id} cannot listen for peers on {addr}: {e}"))?,
            )
        }
        _ => None,
    };
    let recovered = recover(core_id, &config, &channels.replay).await?;
    let (write_tx, write_rx) = local_channel::new_bounded(1);
    let mut outboxes = Vec::with_capacity(config.cores);
    let mut outbox_receivers = Vec::with_capacity(config.cores);
    for _ in 0..config.cores {
        let (tx, rx) = local_channel::new_unbounded();
        outboxes.push(tx);
        outbox_receivers.push(rx);
    }
    let log_zxid = proposal::highest_zxid(&recovered.log.entries).max(recovered.base_zxid);
    let cluster = Cluster {
        transport: clustered.then(|| Transport::start(core_id, &config, &voters)),
        voters: voters.iter().map(|p| NodeId::from(p.id)).collect(),
        group_leaders,
    };
    // What this group has applied, fences included (the shards know only their own entries'
    // zxids): other nodes' writes may depend on a fence's zxid, and must not wait for ever.
    let committed = recovered.log.committed();
    let (replayed, held) = committed.split_at(recovered.replayed);
    cluster.group_leaders.set_applied(core_id, proposal::highest_zxid(replayed).max(recovered.base_zxid));
    // The snapshot's state may depend on what its node had applied of the other groups then,
    // which their own replay may not reach (their commit records on disk can lag what this
    // node applied): until they have, a cluster node serves no client (one order across groups).
    for (group, &zxid) in recovered.snapshot_zxids.iter().enumerate() {
        if group != core_id && group < cluster.group_leaders.groups() {
            cluster.group_leaders.require_applied(group, zxid);
        }
    }
    if let Some(zxid) = recovered.required_zxid {
        cluster.group_leaders.require_applied(core_id, zxid);
    }
    let held = held.to_vec();
    let core = Rc::new(Core::new(core_id, config.clone(), recovered.shards, outboxes, write_tx, log_zxid, cluster));
    core.snapshots.set_loaded(recovered.log.base);
    connect_mesh(&core, channels.outgoing, channels.incoming, outbox_receivers);
    let replica_start = ReplicaStart {
        wal: recovered.wal,
        log: recovered.log,
        base_term: recovered.base_term,
        held,
        applied_ahead: recovered.applied_ahead,
        positions: recovered.positions,
    };
    let mut replica = start_replica(core_id, &config, &voters, replica_start)?;
    if let Some(listener) = peer_listener {
        glommio::spawn_local(transport::accept_loop(core.clone(), listener)).detach();
    } else {
        replica.catch_up_alone(&core).await;
    }
    core.rearm_sessions();
    core.announce_applied();
    if core_id == 0 {
        core.send_root_acl();
        core.announce_closed_sessions();
    }
    glommio::spawn_local(replica::replication_loop(core.clone(), replica, write_rx)).detach();
    glommio::spawn_local(tick_loop(core.clone())).detach();
    glommio::spawn_local(core.clone().reap_loop()).detach();
    glommio::spawn_local(core.clone().touch_loop()).detach();
    if config.cores > 1 {
        glommio::spawn_local(core.clone().txn_loop()).detach();
    }
    if core.is_clustered() {
        glommio::spawn_local(core.clone().finish_closes_loop()).detach();
        glommio::spawn_local(core.clone().lease_loop()).detach();
    }
    if core_id == 0 {
        glommio::spawn_local(core.clone().expiry_loop()).detach();
    }
    let addr = format!("{}:{}", config.host, config.port);
    let listener = bind_shared_listener(&addr).map_err(|e| anyhow!("core {core_id} cannot listen on {addr}: {e}"))?;
    let _ = ready.send(Ok(()));
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let core = core.clone();
                glommio::spawn_local(async move {
                    if let Err(error) = serve_connection(core, stream).await {
                        tracing::debug!(%error, "connection ended");
                    }
                })
                .detach();
            }
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// A listener every core binds to the same port (SO_REUSEPORT: the kernel spreads
/// connections over the cores) that also binds while closed connections of an earlier run
/// linger in TIME_WAIT (SO_REUSEADDR), as ZooKeeper's and every server's listener does.
fn bind_shared_listener(addr: &str) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::net::ToSocketAddrs;
    use std::os::fd::{FromRawFd, IntoRawFd};
    let addr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "address resolves to nothing"))?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    // SAFETY: the descriptor is a listening TCP socket we own and hand over whole.
    Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
}

/// What a core recovered from its newest valid snapshot and its WAL.
struct RecoveredCore {
    wal: Wal,
    /// The snapshot's entry's term and the zxid its group had applied (0 without one).
    base_term: engine::raft::Term,
    base_zxid: Zxid,
    /// What the snapshot's node had applied of every group when it began (empty without one).
    snapshot_zxids: Vec<Zxid>,
    positions: snapshots::WalPositions,
    /// The core's shards with every entry applied that the log records as committed.
    shards: AHashMap<ShardId, ShardSlot>,
    /// The core's Raft log; its first `replayed` entries are applied to `shards`, the rest
    /// through `log.commit` wait for other groups (`driver::replay_limits`).
    log: raft_log::RecoveredLog,
    replayed: usize,
    /// Entries after `replayed` the replay applied ahead of their place.
    applied_ahead: Vec<engine::raft::Index>,
    /// What the group must apply before the node serves, if its replay stopped short.
    required_zxid: Option<Zxid>,
}

/// How long a core waits at start-up for the other cores to read their logs.
const REPLAY_EXCHANGE_TIMEOUT: Duration = Duration::from_secs(600);

/// The cores' committed entries at start-up, gathered so that each replays only what keeps one
/// order across groups (`driver::replay_limits`).
pub(crate) struct ReplayExchange {
    logs: std::sync::Mutex<ReplayLogs>,
    all_in: std::sync::Condvar,
}

/// The cores' logs as they hand them in, and the limits once every core has (computed once).
struct ReplayLogs {
    logs: Vec<Option<driver::ReplayLog>>,
    limits: Option<Vec<usize>>,
}

impl ReplayExchange {
    fn new(cores: usize) -> ReplayExchange {
        let logs = ReplayLogs { logs: vec![None; cores], limits: None };
        ReplayExchange { logs: std::sync::Mutex::new(logs), all_in: std::sync::Condvar::new() }
    }

    /// Hands in `core`'s committed entries, waits for every core's, and says how many of them
    /// `core` replays. Blocks the core's thread: nothing else runs on it yet.
    fn limit_of(&self, core: usize, log: driver::ReplayLog) -> anyhow::Result<usize> {
        let mut logs = self.logs.lock().map_err(|_| anyhow!("another core failed while reading its log"))?;
        logs.logs[core] = Some(log);
        if logs.logs.iter().all(Option::is_some) {
            // The last core in computes the limits for all; the logs are not needed after.
            let all: Vec<driver::ReplayLog> =
                logs.logs.iter_mut().map(|log| log.take().expect("every core's")).collect();
            logs.limits = Some(driver::replay_limits(&all));
            self.all_in.notify_all();
        }
        let (logs, timeout) = self
            .all_in
            .wait_timeout_while(logs, REPLAY_EXCHANGE_TIMEOUT, |logs| logs.limits.is_none())
            .map_err(|_| anyhow!("another core failed while reading its log"))?;
        if timeout.timed_out() {
            bail!("the other cores did not read their logs within {}s", REPLAY_EXCHANGE_TIMEOUT.as_secs());
        }
        Ok(logs.limits.as_ref().expect("computed")[core])
    }
}

/// Opens this core's WAL, rebuilds its Raft log and applies what is recorded as committed to
/// the shards this core owns; the replication loop commits and applies the rest.
async fn recover(core_id: usize, config: &Config, exchange: &ReplayExchange) -> anyhow::Result<RecoveredCore> {
    let started = Instant::now();
    // The snapshot loads on a thread of its own while this one reads the WAL (building a
    // large tree is most of a restart).
    let snapshot_job = {
        let config = config.clone();
        std::thread::Builder::new()
            .name(format!("warren-load-{core_id}"))
            .spawn(move || load_snapshot(core_id, &config))
            .map_err(|e| anyhow!("cannot start the snapshot loader: {e}"))?
    };
    // The entries the newest snapshot holds are read for their place in the log only: with
    // snapshots kept as by default, they are most of the WAL.
    let newest_snapshot = snapshot_file::list(&data_dir::snapshot_dir(&config.data_dir, core_id))
        .ok()
        .and_then(|snapshots| snapshots.first().map(|(index, _)| *index))
        .unwrap_or(0);
    let (mut wal, mut recovered) = open_wal(core_id, config, newest_snapshot).await?;
    let wal_read = started.elapsed();
    let snapshot = snapshot_job.join().map_err(|_| anyhow!("the snapshot loader of core {core_id} panicked"))??;
    let snapshot_loaded = started.elapsed();
    let base = snapshot.as_ref().map_or(0, |s| s.index);
    let base_term = snapshot.as_ref().map_or(0, |s| s.term);
    if base < newest_snapshot {
        // The newest snapshot was damaged: the one before it needs the entries read short. A
        // torn tail the first open cut is still said.
        drop(wal);
        let (truncated_bytes, damage) = (recovered.truncated_bytes, recovered.damage.take());
        (wal, recovered) = open_wal(core_id, config, base).await?;
        recovered.truncated_bytes += truncated_bytes;
        recovered.damage = recovered.damage.or(damage);
    }
    let positions = wal_positions(&recovered.records, &recovered.lsns);
    let records = recovered.records.len();
    let log = raft_log::recover_after(base, base_term, std::mem::take(&mut recovered.records)).map_err(|e| {
        anyhow!(
            "the WAL of core {core_id} holds an impossible Raft log{}: {e}",
            if base > 0 { format!(" after its snapshot of entry {base}") } else { String::new() }
        )
    })?;
    let (base_zxid, snapshot_zxids, mut shards) = match snapshot {
        Some(loaded) => {
            let base_zxid = loaded.applied_zxids.get(core_id).copied().unwrap_or(0);
            let shards: AHashMap<ShardId, Shard> = loaded.shards.into_iter().map(|s| (s.id(), s)).collect();
            (base_zxid, loaded.applied_zxids, shards)
        }
        None => (0, Vec::new(), AHashMap::new()),
    };
    let owned: Vec<ShardId> = (0..config.shards).filter(|s| core::core_of_shard(*s, config.cores) == core_id).collect();
    if base > 0 && (shards.len() != owned.len() || owned.iter().any(|s| !shards.contains_key(s))) {
        bail!("the snapshot of core {core_id} holds shards {:?}, the core owns {owned:?}", shards.keys());
    }
    for shard in owned {
        shards.entry(shard).or_insert_with(|| Shard::new(shard, config.shards));
    }
    let committed = log.committed();
    let replay_log =
        driver::ReplayLog::after(base_zxid, committed).map_err(|e| anyhow!("the WAL of core {core_id}: {e}"))?;
    let limit = exchange.limit_of(core_id, replay_log)?;
    let Replayed { count: replayed, ahead: applied_ahead } =
        apply_committed(core_id, &committed[..limit], &mut shards)?;
    // Stopped short of its limit at an entry that waits for a multi's finish: the other
    // groups replayed as if it reached it, so the node serves once it has.
    let required_zxid = (replayed < limit).then(|| proposal::highest_zxid(&committed[..limit]));
    refuse_misplaced_nodes(core_id, config, &shards)?;
    tracing::info!(
        core = core_id,
        snapshot = base,
        records,
        entries = log.entries.len(),
        commit = log.commit,
        held_for_other_groups = committed.len() - replayed,
        truncated_bytes = recovered.truncated_bytes,
        wal_read_ms = wal_read.as_millis() as u64,
        snapshot_loaded_ms = snapshot_loaded.as_millis() as u64,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "snapshot loaded and WAL replayed"
    );
    let shards = shards.into_iter().map(|(id, shard)| (id, ShardSlot::new(shard))).collect();
    Ok(RecoveredCore {
        wal,
        base_term,
        base_zxid,
        snapshot_zxids,
        positions,
        shards,
        log,
        replayed,
        applied_ahead,
        required_zxid,
    })
}

/// Refuses to start on a data dir whose top-level nodes are not where this version looks for
/// them (see `Shard::misplaced_top_level`): serving it would hide them from every request.
fn refuse_misplaced_nodes(core_id: usize, config: &Config, shards: &AHashMap<ShardId, Shard>) -> anyhow::Result<()> {
    for shard in shards.values() {
        if let Some(path) = shard.misplaced_top_level(config.shards) {
            bail!(
                "core {core_id}: {path} is kept in shard {} but this version looks for it in shard {}; the data \
                 dir was written by a version that placed top-level names differently (sequential children of \
                 \"/\" are now all numbered in shard {}). Refusing to start rather than hide it: see \
                 docs/operations.md, \"Upgrading\"",
                shard.id(),
                engine::path::shard_of(&path, config.shards),
                engine::path::ROOT_SEQUENCE_SHARD,
            );
        }
    }
    Ok(())
}

/// Opens the core's WAL; the entries up to `snapshot` (a snapshot's index) are recovered with
/// their Raft record header only.
async fn open_wal(core_id: usize, config: &Config, snapshot: engine::raft::Index) -> anyhow::Result<(Wal, Recovered)> {
    let whole = move |payload: &[u8]| match raft_log::Record::decode(payload) {
        Ok(raft_log::Record::Entry { index, .. }) => index > snapshot,
        _ => true,
    };
    let wal_config = WalConfig {
        dir: data_dir::wal_dir(&config.data_dir),
        core: core_id,
        segment_bytes: config.wal_segment_bytes,
        truncate_corrupt: false,
        keep_whole: Some(KeepWhole { head_bytes: raft_log::HEADER_BYTES, whole: std::sync::Arc::new(whole) }),
    };
    Wal::open(wal_config).await.map_err(|e| match e {
        WalError::Corrupt(_) => anyhow!(
            "cannot open its WAL: {e}\nrefusing to start: acknowledged writes follow the damage. \
             Restore the data dir from a copy, or discard the damaged batch and everything after it in this \
             core's log with `warren wal-repair --data-dir {}` (see docs/operations.md, \"Damaged WAL\")",
            config.data_dir.display()
        ),
        e => anyhow!("cannot open its WAL: {e}"),
    })
}

/// The newest snapshot of the core's group that checks out; each newer one that does not is
/// said and skipped (the WAL still holds what the one before it needs).
fn load_snapshot(core_id: usize, config: &Config) -> anyhow::Result<Option<snapshot_file::Loaded>> {
    let dir = data_dir::snapshot_dir(&config.data_dir, core_id);
    let group = u16::try_from(core_id).expect("cores fit a u16");
    // A snapshot being written when the node stopped is incomplete: gone, as if never begun.
    snapshot_file::remove_partial(&dir).map_err(|e| anyhow!("cannot clean {}: {e}", dir.display()))?;
    let (loaded, skipped) = snapshot_file::load_newest(&dir, group, config.shards)
        .map_err(|e| anyhow!("cannot list the snapshots in {}: {e}", dir.display()))?;
    for (path, why) in skipped {
        tracing::error!(core = core_id, path = %path.display(), %why, "snapshot damaged: skipped for the one before it");
    }
    if let Some(loaded) = &loaded {
        tracing::info!(core = core_id, index = loaded.index, path = %loaded.path.display(), "snapshot loaded");
        let removed = snapshot_file::prune_at_start(&dir, config.snapshots_kept, loaded.index)
            .map_err(|e| anyhow!("cannot prune the snapshots in {}: {e}", dir.display()))?;
        if !removed.is_empty() {
            tracing::info!(
                core = core_id,
                ?removed,
                "snapshots beyond the kept number removed (left by a stop before pruning)"
            );
        }
    }
    Ok(loaded)
}

/// Where the recovered WAL's entries were last written.
fn wal_positions(records: &[Vec<u8>], lsns: &[u64]) -> snapshots::WalPositions {
    let mut positions = snapshots::WalPositions::default();
    for (payload, &lsn) in records.iter().zip(lsns) {
        match raft_log::Record::decode(payload) {
            Ok(raft_log::Record::Entry { index, .. }) => positions.wrote(index, lsn),
            Ok(raft_log::Record::Truncate { from }) => positions.truncated(from),
            _ => {}
        }
    }
    positions
}

/// Start-up replay: applies committed `entries` to the core's shards, in log order (the
/// replication loop applies the rest). An entry that meets a path held by a multi across groups
/// waits for the entry that releases it, applied ahead of its place as the replication loop
/// does (`GroupDriver::apply_release_ahead`); if none is committed, the replay stops there and
/// returns how many entries it applied (the rest wait in the replication loop).
pub(crate) fn apply_committed(
    core_id: usize,
    entries: &[engine::raft::Entry],
    shards: &mut AHashMap<ShardId, Shard>,
) -> anyhow::Result<Replayed> {
    let decoded = entries
        .iter()
        .map(|entry| {
            let fail = |e: String| anyhow!("Raft entry {} of core {core_id}: {e}", entry.index);
            if entry.data.is_empty() {
                return Ok(None);
            }
            let (_, _, _, archive) = proposal::decode_proposal(&entry.data).map_err(fail)?;
            if archive.is_empty() {
                return Ok(None); // a fence
            }
            LogEntry::from_bytes(archive).map(Some).map_err(fail)
        })
        .collect::<anyhow::Result<Vec<Option<LogEntry>>>>()?;
    let mut ahead = std::collections::BTreeSet::new();
    for (position, entry) in decoded.iter().enumerate() {
        let Some(entry) = entry else { continue };
        loop {
            let touched = touched_shards(core_id, shards, entry)?;
            let Some(txn) = touched.iter().find_map(|s| engine::txn::holder_of_command(s, &entry.command)) else {
                break;
            };
            let later = (position + 1..decoded.len()).filter(|later| !ahead.contains(later)).flat_map(|later| {
                let releasers = decoded[later].as_ref().map_or_else(Vec::new, |e| engine::txn::releasers(&e.command));
                releasers.into_iter().map(move |releaser| (later, releaser))
            });
            let release = engine::txn::first_release(txn, later, |_| true);
            let Some(release) = release else {
                tracing::info!(
                    core = core_id,
                    ?txn,
                    waiting = entries.len() - position,
                    "start-up replay stops at an entry that waits for a multi across groups to finish"
                );
                let ahead = ahead.range(position..).map(|&later: &usize| entries[later].index).collect();
                return Ok(Replayed { count: position, ahead });
            };
            ahead.insert(release);
            let release = decoded[release].as_ref().expect("found");
            let mut touched = touched_shards(core_id, shards, release)?;
            match release.command {
                engine::command::Command::TxnFinish { .. } => engine::txn::finish_early(&mut touched, release),
                _ => engine::txn::decide_early(&mut touched, release),
            };
        }
        let mut touched = touched_shards(core_id, shards, entry)?;
        match touched.as_mut_slice() {
            [shard] => {
                shard.apply(entry);
            }
            all if entry.command.is_txn() => {
                engine::txn::apply_txn(all, entry);
            }
            all => {
                engine::shard::apply_across(all, entry);
            }
        }
    }
    Ok(Replayed { count: entries.len(), ahead: Vec::new() })
}

/// What a start-up replay applied: its first `count` entries, and entries after them it
/// applied ahead of their place (to release a held path) that the driver must not apply again.
pub(crate) struct Replayed {
    pub count: usize,
    pub ahead: Vec<engine::raft::Index>,
}

/// The shards of this core an entry names, each once.
fn touched_shards<'a>(
    core_id: usize,
    shards: &'a mut AHashMap<ShardId, Shard>,
    entry: &LogEntry,
) -> anyhow::Result<Vec<&'a mut Shard>> {
    let others = entry.other_shards();
    let touched: Vec<&mut Shard> =
        shards.values_mut().filter(|s| s.id() == entry.shard || others.contains(&s.id())).collect();
    if touched.len() != others.len() + 1 {
        let owned: Vec<ShardId> = touched.iter().map(|s| s.id()).collect();
        let named: Vec<ShardId> = std::iter::once(entry.shard).chain(others).collect();
        return Err(anyhow!(
            "WAL of core {core_id} holds an entry of shards {named:?}; this core owns {owned:?} of them"
        ));
    }
    Ok(touched)
}

/// What a core's Raft group starts from.
struct ReplicaStart {
    wal: Wal,
    log: raft_log::RecoveredLog,
    base_term: engine::raft::Term,
    /// Committed entries that wait for other groups (`driver::replay_limits`) or for a multi's
    /// finish, and those of them the replay applied ahead of their place.
    held: Vec<engine::raft::Entry>,
    applied_ahead: Vec<engine::raft::Index>,
    positions: snapshots::WalPositions,
}

/// The core's Raft group from its snapshot, its recovered log and its stored term and vote. A
/// single node is a group of one voter.
fn start_replica(
    core_id: usize,
    config: &Config,
    voters: &[Peer],
    start: ReplicaStart,
) -> anyhow::Result<replica::Replica> {
    let ReplicaStart { wal, log, base_term, held, applied_ahead, positions } = start;
    let state_path = data_dir::raft_state_path(&config.data_dir, core_id);
    let (term, vote) = raft_state::load(&state_path)?;
    let node = NodeId::from(config.node_id);
    let seed = u64::from(config.node_id) << 32 | core_id as u64 ^ unix_micros_seed();
    let mut ids: Vec<NodeId> = voters.iter().map(|p| NodeId::from(p.id)).collect();
    if ids.is_empty() {
        ids.push(node);
    }
    let placement = driver::Placement::of_group(core_id, &ids, config.leader_placement_delay_ms);
    let clustered = ids.len() > 1;
    let mut raft_config = RaftConfig::new(node, ids, seed);
    raft_config.election_priority = placement.election_priority(node);
    raft_config.election_ticks = driver::election_ticks(config.election_timeout_ms);
    let hard_state = HardState { term, vote, commit: log.commit };
    let mut raft = Raft::after_snapshot(raft_config, hard_state, (log.base, base_term), log.entries);
    raft.restore_applied(log.commit);
    // A single node keeps no log in memory for followers.
    let retained_entries = if clustered { config.retained_log_entries } else { 0 };
    let driver_config =
        driver::DriverConfig { group: core_id, placement, retained_entries, compact_every: driver::COMPACT_EVERY };
    let first_token = proposal::first_token(self::core::unix_micros());
    let mut driver = driver::GroupDriver::new(raft, driver_config, first_token, held);
    driver.applied_ahead_at_start(applied_ahead);
    let policy = snapshots::SnapshotPolicy::new(config.snapshot_entries, config.snapshot_bytes, seed);
    Ok(replica::Replica::new(driver, wal, positions, policy, state_path))
}

/// Election jitter differs between runs (the Raft core itself stays deterministic in its seed).
fn unix_micros_seed() -> u64 {
    self::core::unix_micros() as u64
}

/// Drives the Raft clock of this core's group.
async fn tick_loop(core: Rc<Core>) {
    loop {
        glommio::timer::sleep(replica::TICK).await;
        core.commit.tick();
    }
}

/// The messages for one peer that gathered during this loop turn: waking a core on another
/// thread costs a membarrier and an eventfd write, so it is paid once per batch, not per message.
async fn next_batch(outbox: &LocalReceiver<Msg>) -> Option<Vec<Msg>> {
    let first = outbox.recv().await?;
    futures_lite::future::yield_now().await;
    let mut batch = vec![first];
    while batch.len() < CORE_BATCH_MAX {
        match futures_lite::future::poll_once(outbox.recv()).await {
            Some(Some(msg)) => batch.push(msg),
            _ => break,
        }
    }
    Some(batch)
}

/// Connects this core's channels to every other core and starts its routing tasks.
fn connect_mesh(
    core: &Rc<Core>,
    outgoing: Vec<Option<SharedSender<Vec<Msg>>>>,
    incoming: Vec<Option<SharedReceiver<Vec<Msg>>>>,
    outbox_receivers: Vec<LocalReceiver<Msg>>,
) {
    for ((peer, sender), outbox) in outgoing.into_iter().enumerate().zip(outbox_receivers) {
        match sender {
            None => {
                assert_eq!(peer, core.id, "only the channel to oneself is missing");
                self::core::spawn_router(core, outbox);
            }
            Some(sender) => {
                // Connecting waits for the peer's side; each channel connects in its own task
                // so that no core waits on a peer that is itself waiting.
                glommio::spawn_local(async move {
                    let connected = sender.connect().await;
                    while let Some(batch) = next_batch(&outbox).await {
                        if connected.send(batch).await.is_err() {
                            break;
                        }
                    }
                })
                .detach();
            }
        }
    }
    for receiver in incoming.into_iter().flatten() {
        let core = core.clone();
        glommio::spawn_local(async move {
            let connected = receiver.connect().await;
            while let Some(batch) = connected.recv().await {
                for msg in batch {
                    core.handle(msg);
                }
            }
        })
        .detach();
    }
}

async fn serve_connection(core: Rc<Core>, mut stream: TcpStream) -> std::io::Result<()> {
    let peer = stream.peer_addr()?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut first = [0u8; 4];
    stream.read_exact(&mut first).await?;
    if let Some(word) = fourlw::word(&first) {
        return fourlw::answer(&core, word, stream).await;
    }
    let len = i32::from_be_bytes(first);
    if len <= 0 || len as usize > core.config.max_request_bytes {
        tracing::warn!(%peer, len, "bad connect request length; closing");
        if len > 0 {
            core.large_requests_rejected.set(core.large_requests_rejected.get() + 1);
        }
        return Ok(());
    }
    let mut frame = vec![0u8; len as usize];
    stream.read_exact(&mut frame).await?;
    let connect = match jute::decode_connect_request(&frame) {
        Ok(connect) => connect,
        Err(error) => {
            tracing::warn!(%peer, %error, "malformed connect request; closing");
            return Ok(());
        }
    };
    if let Some(group) = core.out_of_contact(Instant::now()) {
        // As a ZooKeeper server that is not currently serving: the client tries another.
        tracing::debug!(%peer, group, "refused a session handshake: no contact with a current leader of a group");
        return Ok(());
    }
    let timeout_ms = core.config.negotiate_timeout_ms(connect.timeout_ms);
    // A client pings at a third of its timeout; silence for longer than the timeout means the
    // client is gone (its session expires on the same clock).
    stream.set_read_timeout(Some(Duration::from_millis(timeout_ms as u64 + 1000)))?;
    // A client that stops reading must not pin the connection (and its watches) forever.
    stream.set_write_timeout(Some(Duration::from_millis(timeout_ms.max(10_000) as u64)))?;
    let fd = stream.as_raw_fd();
    let (writer_tx, writer_rx) = local_channel::new_bounded(1);
    let (space_tx, space_rx) = local_channel::new_bounded(1);
    let conn = Rc::new(Conn::new(core.clone(), peer, writer_tx, space_tx));
    core.conns.borrow_mut().insert(conn.id, conn.clone());
    let (reader, writer) = futures_lite::io::split(stream);
    let writer_task = glommio::spawn_local(write_loop(conn.clone(), writer, writer_rx, fd));
    conn.start_handshake(&connect);
    let mut reader = futures_lite::io::BufReader::with_capacity(64 * 1024, reader);
    let result = read_loop(&conn, &mut reader, &space_rx).await;
    conn.close(if result.is_ok() { "closed" } else { "read failed" });
    writer_task.await;
    core.conns.borrow_mut().remove(&conn.id);
    for other in 0..core.cores() {
        core.send(other, Msg::DropConn { conn: conn.id });
    }
    if let Some(session) = conn.session_id() {
        // Its lease no longer needs renewing from here, nor its connection closing.
        core.send(0, Msg::SessionDetached { session, conn: conn.id });
    }
    result
}

async fn read_loop(
    conn: &Rc<Conn>,
    reader: &mut (impl futures_lite::AsyncRead + Unpin),
    space: &LocalReceiver<()>,
) -> std::io::Result<()> {
    let max_request_bytes = conn_config(conn).max_request_bytes;
    let max_outstanding = conn_config(conn).max_outstanding_per_connection;
    let mut frame = Vec::with_capacity(4096);
    loop {
        while (conn.awaiting_handshake() || conn.outstanding() >= max_outstanding) && conn.closing().is_none() {
            space.recv().await;
        }
        if conn.closing().is_some() {
            return Ok(());
        }
        let mut len_bytes = [0u8; 4];
        if let Err(error) = reader.read_exact(&mut len_bytes).await {
            return match error.kind() {
                std::io::ErrorKind::UnexpectedEof => Ok(()),
                _ => Err(error),
            };
        }
        let len = i32::from_be_bytes(len_bytes);
        if len < 0 {
            tracing::warn!(conn = conn.id, len, "negative frame length; closing");
            return Ok(());
        }
        let len = len as usize;
        if len > max_request_bytes {
            // As ZooKeeper (jute.maxbuffer): the connection is closed before the frame is
            // read, so the client sees ConnectionLoss; nothing of the frame is buffered.
            conn.on_oversized(len);
            return Ok(());
        }
        frame.resize(len, 0);
        reader.read_exact(&mut frame).await?;
        conn.on_frame(&frame);
    }
}

fn conn_config(conn: &Rc<Conn>) -> Rc<Config> {
    conn.core_config()
}

async fn write_loop(
    conn: Rc<Conn>,
    mut writer: futures_lite::io::WriteHalf<TcpStream>,
    wake: LocalReceiver<()>,
    fd: std::os::fd::RawFd,
) {
    let mut buf = Vec::with_capacity(4096);
    loop {
        conn.take_output(&mut buf);
        if buf.is_empty() {
            if conn.closing().is_some() || wake.recv().await.is_none() {
                break;
            }
            continue;
        }
        if let Err(error) = writer.write_all(&buf).await {
            tracing::debug!(conn = conn.id, %error, "write failed");
            conn.close("write failed");
            break;
        }
    }
    // Wakes the reader too: a closed socket ends its pending read.
    // SAFETY: shutdown(2) on the connection's own descriptor, which is still open here.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A snapshot writer keeps its task queue runnable for a second or more; requests on the
    /// same core must still be read and answered within about `PREEMPT_AFTER`, not after
    /// glommio's default slice of 100 ms.
    #[test]
    fn a_core_reaps_the_network_while_another_task_queue_is_always_runnable() {
        const ROUND_TRIPS: u32 = 20;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let echo = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut byte = [0u8; 1];
            while stream.read_exact(&mut byte).is_ok() {
                stream.write_all(&byte).unwrap();
            }
        });
        let elapsed = core_executor(0)
            .spawn(move || async move {
                let busy = glommio::executor().create_task_queue(
                    glommio::Shares::Static(200),
                    glommio::Latency::NotImportant,
                    "always runnable",
                );
                let done = Rc::new(std::cell::Cell::new(false));
                let spinning = done.clone();
                glommio::spawn_local_into(
                    async move {
                        while !spinning.get() {
                            glommio::executor().yield_task_queue_now().await;
                        }
                    },
                    busy,
                )
                .unwrap()
                .detach();
                let mut stream = TcpStream::connect(address).await.unwrap();
                let started = std::time::Instant::now();
                for round in 0..ROUND_TRIPS {
                    stream.write_all(&[round as u8]).await.unwrap();
                    let mut back = [0u8; 1];
                    stream.read_exact(&mut back).await.unwrap();
                    assert_eq!(back[0], round as u8);
                }
                done.set(true);
                started.elapsed()
            })
            .unwrap()
            .join()
            .unwrap();
        echo.join().unwrap();
        // With the default slice each round trip waits for it: 20 x 100 ms. A bound far above
        // 20 x PREEMPT_AFTER keeps a busy machine from failing it.
        assert!(elapsed < Duration::from_millis(1000), "{ROUND_TRIPS} loopback round trips took {elapsed:?}");
    }

    /// An executor preempted before it ran anything must not park while a queue is runnable
    /// (vendor/README.md): with a preempt timer that fires at once, every turn is such a turn.
    #[test]
    fn an_executor_preempted_at_once_still_runs_its_queues_to_the_end() {
        let (done, finished) = mpsc::channel();
        let executor = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(IO_MEMORY_BYTES)
            .preempt_timer(Duration::from_micros(1))
            .spawn(move || async move {
                for _ in 0..2000 {
                    glommio::executor().yield_task_queue_now().await;
                }
                done.send(()).unwrap();
            })
            .unwrap();
        let outcome = finished.recv_timeout(Duration::from_secs(20));
        assert!(outcome.is_ok(), "the executor parked with its task runnable");
        executor.join().unwrap();
    }
}
