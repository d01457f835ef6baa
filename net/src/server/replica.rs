//! The replication loop of one core: the runtime of the core's Raft group. The decisions are
//! the pure `GroupDriver` (`driver.rs`), which the simulation runs too; this loop feeds it what
//! `Core` queued for it (`CommitQueue`, `commit.rs`: writes, ticks, peer messages, read
//! indexes, lease probes), makes the WAL records of each turn durable with one O_DSYNC write
//! between `start_turn` and `finish_turn`, and carries out the driver's effects on the core in
//! one place, `CoreHost` (committed entries this node already held durably are applied in
//! `start_turn`, before the turn's WAL write; the rest in `finish_turn`): per committed entry,
//! in log order, `Core::apply_and_reply` (the entry
//! was proposed here: apply, notify, answer) or `Core::apply_replicated` (proposed elsewhere:
//! apply, notify); per run of applied entries, `Core::announce_applied` then
//! `Core::serve_cut_waiters`. The entry format is `proposal.rs`.
//!
//! A failed WAL write stops the node (`server::stop_on_wal_failure`): nothing of the batch is
//! applied or answered.

use super::clock::unix_millis;
use super::commit::PendingWrite;
use super::core::Core;
use super::driver::{self, GroupDriver, GroupHost};
use super::metrics::micros;
use super::msg::{Msg, ShardRequest};
use super::snapshots::{self, SnapshotPolicy, WalPositions};
use crate::peer::PeerMessage;
use crate::raft_log::Record;
use crate::raft_state;
use crate::snapshot_file;
use crate::snapshot_file::GroupHead;
use crate::wal::Wal;
use engine::command::{LogEntry, TxnId};
use engine::raft::{NodeId, Role, Term};
use engine::types::{SessionId, Zxid};
use glommio::channels::local_channel::LocalReceiver;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// One Raft tick. Elections time out after 10-20 ticks, a leader heartbeats every tick.
pub const TICK: Duration = Duration::from_millis(driver::TICK_MS);

/// A single node whose start-up still holds entries for other groups after this long says so.
const HELD_AT_START_WARNING: Duration = Duration::from_secs(5);

/// One core's Raft group and its durable log; owned by the replication loop.
pub(super) struct Replica {
    driver: GroupDriver<ShardRequest>,
    io: GroupIo,
}

/// What the runtime keeps beside the driver.
struct GroupIo {
    wal: Wal,
    /// Where the entries' latest writes are in the WAL, and when the next snapshot is due.
    positions: WalPositions,
    policy: SnapshotPolicy,
    /// Where the group's term and vote live (`raft_state.rs`).
    state_path: PathBuf,
    record: Vec<u8>,
    /// Leader: (last index, when proposed) of each batch not yet committed, oldest first.
    proposed_batches: VecDeque<(u64, Instant)>,
}

impl Replica {
    pub(super) fn new(
        driver: GroupDriver<ShardRequest>,
        wal: Wal,
        positions: WalPositions,
        policy: SnapshotPolicy,
        state_path: PathBuf,
    ) -> Replica {
        let io = GroupIo { wal, positions, policy, state_path, record: Vec::new(), proposed_batches: VecDeque::new() };
        Replica { driver, io }
    }

    /// Between turns: switches to a leader's snapshot received whole; as leader, sends
    /// snapshots to followers that need entries no longer held; begins a snapshot when one is
    /// due, and once one is durable prunes the older ones and releases the WAL segments no
    /// snapshot kept needs.
    pub(super) async fn look_after_snapshots(&mut self, core: &Rc<Core>) {
        if let Some(received) = snapshots::take_to_load(core) {
            snapshots::load_received(core, received);
        }
        if let Some((from, loaded)) = snapshots::take_to_install(core) {
            self.install(core, from, loaded);
            while self.turn(core).await {}
        }
        if self.driver.raft().role() == Role::Leader {
            let compacted_through = self.driver.raft().log().first_index() - 1;
            for follower in self.driver.raft().needs_snapshot() {
                snapshots::send_to(core, follower, compacted_through);
            }
        }
        if let Some(index) = core.snapshots.take_finished() {
            self.release_below_snapshots(core, index);
        }
        let status = &core.snapshots;
        if status.running() || !(self.io.policy.due() || status.requested.get()) {
            return;
        }
        let (index, term) = self.driver.applied_point();
        if index <= status.last_index() {
            status.requested.set(false);
            return;
        }
        let nodes: u64 = core.shards.borrow().values().map(|slot| slot.shard.tree().len() as u64).sum();
        self.io.policy.rearm(core.config.snapshot_entries, core.config.snapshot_bytes, nodes);
        let leaders = &core.group_leaders;
        let applied: Vec<Zxid> = (0..leaders.groups()).map(|group| leaders.applied(group)).collect();
        let required: Vec<Zxid> = (0..leaders.groups()).map(|group| leaders.required(group)).collect();
        let applied_zxids = driver::snapshot_dependencies(core.id, &applied, &required);
        let group = u16::try_from(core.id).expect("cores fit a u16");
        let shard_count = core.config.shards;
        super::snapshots::begin_snapshot(core, |shards| GroupHead {
            group,
            shard_count,
            term,
            index,
            applied_zxids,
            shards,
        });
    }

    /// Switches the core's shards and the group's log to a leader's snapshot (durable and
    /// checked already): the shards are replaced whole between two turns, so no apply sees a
    /// mix; the log restarts after the snapshot's entry and the leader sends the rest.
    fn install(&mut self, core: &Core, from: NodeId, loaded: crate::snapshot_file::Loaded) {
        let (index, term) = (loaded.index, loaded.term);
        if !self.driver.raft().wants_snapshot(index, term) {
            return;
        }
        // Only the leader's: a deposed leader that woke up (a pause, a partition) may still have
        // sent its file, and the current one sends entries this node must not lose.
        if self.driver.raft().leader() != Some(from) {
            tracing::warn!(core = core.id, from, index, leader = ?self.driver.raft().leader(),
                "a snapshot received from a node that no longer leads the group; ignored");
            return;
        }
        {
            let mut slots = core.shards.borrow_mut();
            if loaded.shards.len() != slots.len() || loaded.shards.iter().any(|s| !slots.contains_key(&s.id())) {
                tracing::error!(
                    core = core.id,
                    index,
                    "a leader's snapshot holds other shards than this core's; ignored"
                );
                return;
            }
            let mut replaced = Vec::with_capacity(loaded.shards.len());
            for shard in loaded.shards {
                let id = shard.id();
                replaced.push(std::mem::replace(&mut slots.get_mut(&id).expect("checked").shard, shard));
            }
            // Freeing a large tree takes a while (0.4 s at 1M znodes): not on the core.
            glommio::spawn_local(glommio::executor().spawn_blocking(move || drop(replaced))).detach();
        }
        assert!(self.driver.install_snapshot(index, term), "checked by wants_snapshot");
        let zxid = loaded.applied_zxids.get(core.id).copied().unwrap_or(0);
        core.group_leaders.set_applied(core.id, zxid);
        // One order across groups: the snapshot may show effects of entries that depended on
        // other groups up to what its node had applied of them; this node serves again once
        // its own groups have applied that much (`GroupLeaders::required`).
        for (group, &other) in loaded.applied_zxids.iter().enumerate() {
            if group != core.id && group < core.group_leaders.groups() {
                core.group_leaders.require_applied(group, other);
            }
        }
        core.commit.note_log_zxid(zxid);
        if zxid > core.commit.last_applied() {
            core.commit.set_last_applied(zxid);
        }
        core.snapshots.set_loaded(index);
        core.snapshots.installed.set(core.snapshots.installed.get() + 1);
        core.rearm_sessions();
        if core.id == 0 {
            // Closes shard 0 applied in the entries the snapshot skipped: every group of this
            // node finishes them in its own shards (as at start-up).
            core.announce_closed_sessions();
        }
        core.set_group_status(self.driver.status());
        if let (Some(leader), Some(transport)) = (self.driver.raft().leader(), core.transport.as_ref()) {
            transport.send(leader, PeerMessage::SnapshotAck { index, received: 0, installed: true });
        }
        tracing::info!(core = core.id, index, term, path = %loaded.path.display(), "switched to the leader's snapshot");
    }

    /// Once a snapshot is durable: the older ones beyond the kept number go, and so do the WAL
    /// segments only they needed. The deletions and directory syncs run on glommio's blocking
    /// pool, off the core's thread (an unlink of a large file and a directory fsync can take
    /// milliseconds that requests would wait).
    fn release_below_snapshots(&mut self, core: &Core, index: u64) {
        let dir = super::data_dir::snapshot_dir(&core.config.data_dir, core.id);
        let listed = snapshot_file::list(&dir);
        let kept = core.config.snapshots_kept;
        let Ok(listed) = listed else {
            tracing::warn!(core = core.id, "cannot list snapshots; the WAL keeps everything");
            return;
        };
        let oldest_kept = listed.get(kept.min(listed.len()).saturating_sub(1)).map_or(0, |(oldest, _)| *oldest);
        let tail = if core.is_clustered() { core.config.retained_log_entries } else { 0 };
        let keep_from = oldest_kept.min(index.saturating_sub(tail)) + 1;
        let segments = match self.io.positions.lsn_keeping(keep_from).map(|lsn| self.io.wal.segments_below(lsn)) {
            Some(Ok(segments)) => segments,
            Some(Err(error)) => {
                tracing::warn!(core = core.id, %error, "cannot list WAL segments");
                Vec::new()
            }
            None => Vec::new(),
        };
        let wal_dir = super::data_dir::wal_dir(&core.config.data_dir);
        let id = core.id;
        let release = glommio::executor().spawn_blocking(move || {
            if let Err(error) = snapshot_file::prune(&dir, kept) {
                tracing::warn!(core = id, %error, "cannot prune snapshots");
            }
            match crate::wal::remove_segments(&wal_dir, &segments) {
                Ok(()) if segments.is_empty() => {}
                Ok(()) => tracing::info!(
                    core = id,
                    released = segments.len(),
                    keep_from,
                    "WAL segments released below the snapshots"
                ),
                Err(error) => tracing::warn!(core = id, %error, "cannot release WAL segments"),
            }
        });
        glommio::spawn_local(release).detach();
    }

    /// Start-up: a node that is the only voter elects itself and commits (through its new
    /// term's no-op) everything in its log before it serves anything, so a restart answers
    /// with every write it acknowledged.
    pub(super) async fn catch_up_alone(&mut self, core: &Core) {
        let last = self.driver.raft().log().last_index();
        tracing::debug!(core = core.id, commit = self.driver.raft().commit_index(), last, "electing the only voter");
        self.driver.campaign_now();
        while self.driver.raft().role() != Role::Leader || self.driver.raft().commit_index() < last {
            assert!(self.turn(core).await, "the only voter makes progress on its own");
        }
        while self.turn(core).await {}
        // Entries held for other groups (`driver::replay_limits`) apply as those groups catch up
        // on their own cores: nothing is served before they have.
        let started = Instant::now();
        let mut warned = false;
        while self.driver.holds_entries() {
            glommio::timer::sleep(Duration::from_millis(1)).await;
            while self.turn(core).await {}
            if !warned && started.elapsed() > HELD_AT_START_WARNING {
                warned = true;
                tracing::warn!(core = core.id, "committed entries still wait for other groups to catch up");
            }
        }
    }

    /// One turn; false if there was nothing to do.
    pub(super) async fn turn(&mut self, core: &Core) -> bool {
        self.feed(core);
        let started = self.driver.start_turn(&mut self.io.host(core));
        self.publish_leadership(core);
        let Some(appended) = started else { return false };
        if appended.records > 0 {
            let started = Instant::now();
            let flushed = self.io.wal.flush().await;
            core.metrics.borrow_mut().record_flush(started.elapsed(), appended.entries);
            if let Err(error) = flushed {
                super::stop_on_wal_failure(core.id, &error, appended.entries);
            }
        }
        self.driver.finish_turn(&mut self.io.host(core));
        self.publish_leadership(core);
        core.set_group_status(self.driver.status());
        true
    }

    /// What the core's transaction driver needs of the group driver (`Leadership`).
    fn publish_leadership(&mut self, core: &Core) {
        let releasers = |entry: &engine::raft::Entry| {
            log_entry_of(entry).map_or_else(Vec::new, |e| engine::txn::releasers(&e.command))
        };
        let pending = self.driver.decisions_to_apply(releasers);
        core.commit.set_decides(self.driver.decides_now(), pending);
    }

    /// What `Core` queued since the last turn goes to the driver.
    fn feed(&mut self, core: &Core) {
        let queue = &core.commit;
        for _ in 0..queue.take_ticks() {
            self.driver.tick();
        }
        for message in queue.take_inbox() {
            self.driver.step(message);
        }
        for (token, index) in queue.take_read_indexes() {
            self.driver.read_index_answered(token, index);
        }
        for round in queue.take_lease_rounds() {
            self.driver.ask_lease(round);
        }
        let pending = queue.take_pending();
        if pending.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut metrics = core.metrics.borrow_mut();
        for PendingWrite { queued_at, write } in pending {
            metrics.commit_queue_us.record(micros(now.saturating_duration_since(queued_at)));
            self.driver.queue(write);
        }
    }
}

impl GroupIo {
    fn host<'a>(&'a mut self, core: &'a Core) -> CoreHost<'a> {
        CoreHost {
            core,
            wal: &mut self.wal,
            record: &mut self.record,
            state_path: &self.state_path,
            positions: &mut self.positions,
            policy: &mut self.policy,
            proposed_batches: &mut self.proposed_batches,
            applying_since: None,
        }
    }
}

/// The driver's effects on the core, its WAL and its peers, and its questions answered from them.
struct CoreHost<'a> {
    core: &'a Core,
    wal: &'a mut Wal,
    record: &'a mut Vec<u8>,
    state_path: &'a Path,
    positions: &'a mut WalPositions,
    policy: &'a mut SnapshotPolicy,
    proposed_batches: &'a mut VecDeque<(u64, Instant)>,
    /// When the driver began applying a run of committed entries (mntr's apply time).
    applying_since: Option<Instant>,
}

impl CoreHost<'_> {
    fn transport(&self) -> &super::transport::Transport {
        self.core.transport.as_ref().expect("a group that talks to other voters has a transport")
    }
}

/// The `LogEntry` of a committed entry (None for a no-op or a fence).
fn log_entry_of(entry: &engine::raft::Entry) -> Option<LogEntry> {
    let (_, _, _, archive) = super::proposal::decode_proposal(&entry.data)
        .unwrap_or_else(|e| panic!("committed entry {}: {e}", entry.index));
    if archive.is_empty() {
        return None;
    }
    Some(LogEntry::from_bytes(archive).unwrap_or_else(|e| panic!("committed entry {}: {e}", entry.index)))
}

impl GroupHost for CoreHost<'_> {
    type Request = ShardRequest;

    fn held_by(&self, entry: &engine::raft::Entry) -> Option<TxnId> {
        if !self.core.holds_any() {
            return None;
        }
        self.core.entry_held_by(&log_entry_of(entry)?)
    }

    fn releasers(&self, entry: &engine::raft::Entry) -> Vec<engine::txn::Releaser> {
        log_entry_of(entry).map_or_else(Vec::new, |e| engine::txn::releasers(&e.command))
    }

    fn apply_ahead(&mut self, entry: &engine::raft::Entry) {
        if let Some(entry) = log_entry_of(entry) {
            self.core.apply_txn_ahead(&entry);
        }
    }

    fn next_zxid(&mut self) -> Zxid {
        self.core.commit.next_zxid()
    }

    fn note_log_zxid(&mut self, zxid: Zxid) {
        self.core.commit.note_log_zxid(zxid);
    }

    fn take_fence(&mut self) -> Option<Zxid> {
        self.core.commit.take_fence()
    }

    fn applied_in_group(&self, group: usize) -> Option<Zxid> {
        let leaders = &self.core.group_leaders;
        (group < leaders.groups()).then(|| leaders.applied(group))
    }

    fn link_losses(&self, peer: NodeId) -> u64 {
        self.core.transport.as_ref().map_or(0, |t| t.losses_with(peer))
    }

    fn link_losses_total(&self) -> u64 {
        self.core.transport.as_ref().map_or(0, |t| t.losses_total())
    }

    fn connection_abandoned(&self, request: &ShardRequest) -> bool {
        self.core.is_abandoned(request.conn)
    }

    fn stopping(&self) -> bool {
        self.core.group_leaders.stopping()
    }

    fn time_ms(&self) -> i64 {
        unix_millis()
    }

    fn send(&mut self, to: NodeId, message: PeerMessage) {
        self.transport().send(to, message);
    }

    fn store_term_and_vote(&mut self, term: Term, vote: Option<NodeId>) {
        if let Err(error) = raft_state::store(self.state_path, term, vote) {
            let path = self.state_path.display();
            tracing::error!(core = self.core.id, %error, %path, "cannot store the Raft term and vote");
            super::stop_on_state_failure(self.core.id);
        }
    }

    fn append(&mut self, record: Record<'_>) {
        self.record.clear();
        record.encode_into(self.record);
        // Config validation keeps a request below the WAL's record limit; a violation is a
        // bug, reported by the WAL's own check.
        let lsn = self.wal.try_append(self.record).unwrap_or_else(|e| panic!("WAL refused a record: {e}"));
        match record {
            Record::Entry { index, data, .. } => {
                self.positions.wrote(index, lsn);
                self.policy.note_entry(data.len());
            }
            Record::Truncate { from } => self.positions.truncated(from),
            Record::Commit { .. } => {}
        }
    }

    fn leader_known(&mut self, leader: Option<NodeId>) {
        self.core.group_leaders.set(self.core.id, leader);
    }

    fn leadership_changed(&mut self, leading: bool, term: Term, leader: Option<NodeId>) {
        tracing::info!(core = self.core.id, term, leader = ?leader, "group leadership changed");
        self.core.commit.set_leading(leading);
        self.core.on_leadership(leading);
    }

    fn in_flight(&mut self, requests: usize) {
        self.core.commit.set_in_flight(requests);
    }

    fn apply(&mut self, entry: LogEntry, answer: Option<ShardRequest>) {
        let zxid = entry.zxid;
        // Set first: reads served while this entry applies see it applied, and a connection
        // answered for it (on another core) that sends its next write at once makes that write
        // depend on it. Nothing of this core is served before the apply below ends.
        self.core.commit.set_last_applied(zxid);
        self.core.group_leaders.set_applied(self.core.id, zxid);
        match answer {
            Some(request) => self.core.apply_and_reply(request, entry),
            None => self.core.apply_replicated(entry),
        }
    }

    fn apply_fence(&mut self, zxid: Zxid) {
        self.core.commit.set_last_applied(zxid);
        self.core.group_leaders.set_applied(self.core.id, zxid);
    }

    fn applied_run_done(&mut self) {
        // A group held back for this one looks again now, not at its next tick: catching up
        // interleaved groups goes step by step, each step a wake-up.
        let leaders = &self.core.group_leaders;
        for group in (0..leaders.groups()).filter(|&g| g != self.core.id) {
            if leaders.waiting(group) {
                self.core.send(group, Msg::OtherGroupApplied);
            }
        }
        self.core.announce_applied();
        self.core.serve_cut_waiters();
    }

    fn waiting_for_other_groups(&mut self, waiting: bool) {
        self.core.commit.set_waiting_for_other_groups(waiting);
        self.core.group_leaders.set_waiting(self.core.id, waiting);
    }

    fn answer_sync(&mut self, request: ShardRequest) {
        self.core.answer_sync(request);
    }

    fn abandon(&mut self, request: ShardRequest, reason: &'static str) {
        self.core.abandon_write(request, reason);
    }

    fn lease_confirmed(&mut self, token: u64, unknown: &[SessionId]) {
        self.core.on_lease_confirmed(token, unknown);
    }

    fn followers_needing_snapshot(&mut self, followers: &[NodeId]) {
        self.core.commit.set_needing_snapshot(followers);
    }

    fn batch_proposed(&mut self, last: u64) {
        self.proposed_batches.push_back((last, Instant::now()));
    }

    fn applying_committed(&mut self) {
        self.applying_since = Some(Instant::now());
    }

    /// mntr: the batches committed through `last` (proposal to commit), and how long their
    /// applying took.
    fn committed_through(&mut self, last: u64) {
        let now = Instant::now();
        let mut metrics = self.core.metrics.borrow_mut();
        if let Some(since) = self.applying_since.take() {
            metrics.apply_us.record(micros(now.duration_since(since)));
        }
        while let Some(&(batch_last, proposed_at)) = self.proposed_batches.front() {
            if batch_last > last {
                break;
            }
            metrics.commit_quorum_us.record(micros(now.duration_since(proposed_at)));
            self.proposed_batches.pop_front();
        }
    }

    fn term_changed(&mut self) {
        self.proposed_batches.clear();
    }
}

/// Runs the group: a turn whenever writes, ticks or peer messages arrive.
pub(super) async fn replication_loop(core: Rc<Core>, mut replica: Replica, signal: LocalReceiver<()>) {
    while signal.recv().await.is_some() {
        // Let the writes of this loop turn gather into one batch.
        futures_lite::future::yield_now().await;
        while replica.turn(&core).await {}
        replica.look_after_snapshots(&core).await;
    }
}
