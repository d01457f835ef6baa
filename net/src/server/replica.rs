//! The replication loop of one core: the core's log is one Raft group (engine::raft, sans IO),
//! and this loop is its runtime. It decides when a write to one of the core's shards is
//! committed; `Core` applies and answers it. Its interface with `Core` is `CommitQueue`
//! (`commit.rs`): writes are proposed there, and per committed entry, in log order,
//! `Core::apply_and_reply` (the entry was proposed here: apply, notify, answer) or
//! `Core::apply_replicated` (proposed elsewhere: apply, notify); per turn that applied
//! anything, `Core::announce_applied` then `Core::serve_cut_waiters`.
//!
//! One turn: feed Raft the ticks and peer messages that arrived, propose the waiting writes
//! (as leader: each gets its zxid here), then carry out Raft's `Ready` in the order it
//! demands: send the messages that may precede persistence, write the term and vote if they
//! changed, append the new entries (and the commit index learned, a free lower bound for
//! restarts) to the WAL and make them durable with one O_DSYNC write, only then send the
//! messages that promise durability, apply what is committed, and `advance`.
//!
//! An entry's data is a `LogEntry` archive behind a header naming who proposed it, so the
//! node that holds the client's request answers it and every other node only applies it:
//!
//! ```text
//!   0  origin  u64   node id of the proposer (bit 63: a dependency list follows)
//!   8  token   u64   the proposer's handle of the waiting request
//!  16  zxid    i64   the LogEntry's zxid (read without decoding the archive)
//!  24  [dependencies: count u64, (group u64, zxid i64) × count]   (`encode_proposal_after`)
//!  ..  LogEntry rkyv archive
//! ```
//!
//! One order across groups: a write's dependencies are what its node had applied in every other
//! group when the client's write was sent; every replica applies an entry only once its own
//! other groups have applied through them (`apply_unapplied`), so a reader on any node that sees
//! a session's later write in one group sees its earlier writes in the others.
//!
//! A failed WAL write stops the node (`server::stop_on_wal_failure`): nothing of the batch is
//! applied or answered.

use super::commit::{PendingWrite, WriteFrom};
use super::core::{unix_millis, Core};
use super::lease::LeaseRound;
use super::metrics::{micros, GroupStatus};
use super::msg::ShardRequest;
use crate::peer::PeerMessage;
use crate::raft_log::{self, Record};
use crate::raft_state;
use crate::wal::Wal;
use ahash::AHashMap;
use engine::command::LogEntry;
use engine::raft::{ElectionPriority, Entry, HardState, NodeId, Raft, Role};
use engine::types::Zxid;
use glommio::channels::local_channel::LocalReceiver;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// One Raft tick. Elections time out after 10-20 ticks, a leader heartbeats every tick.
pub const TICK: Duration = Duration::from_millis(30);

const PROPOSAL_HEADER_BYTES: usize = 24;
/// Entries dropped at a time (dropping moves the rest of the in-memory log).
const COMPACT_EVERY: u64 = 4096;
/// Ticks without a known leader after which this node's waiting writes fail (their clients
/// see the connection close, "maybe applied", as ZooKeeper's followers do when they lose
/// their leader): a minority must not keep clients waiting forever.
const LEADERLESS_TICKS_MAX: u32 = 40;

/// A fence: an entry with a zxid and nothing to apply (`PeerMessage::Fence`); its origin and
/// token are 0 (nobody waits for its answer).
pub fn encode_fence(zxid: Zxid) -> Vec<u8> {
    let mut data = Vec::with_capacity(PROPOSAL_HEADER_BYTES);
    data.extend_from_slice(&0u64.to_le_bytes());
    data.extend_from_slice(&0u64.to_le_bytes());
    data.extend_from_slice(&zxid.to_le_bytes());
    data
}

/// An entry's data: who proposed it, their handle of the request, the zxid and the archive.
#[cfg(test)]
pub fn encode_proposal(origin: NodeId, token: u64, entry: &LogEntry) -> Vec<u8> {
    encode_proposal_after(origin, token, entry, &[])
}

/// Set in the origin word when a list of dependencies follows the header.
const DEPENDENCIES_FLAG: u64 = 1 << 63;

/// A proposal that other groups must have applied through `dependencies` (group, zxid) before
/// any replica applies it (see `Dependencies`). The list sits between the header and the
/// archive, 8-byte aligned so the archive stays aligned:
///
/// ```text
///  24  count   u64
///  32  (group u64, zxid i64) × count
/// ```
pub fn encode_proposal_after(origin: NodeId, token: u64, entry: &LogEntry, dependencies: &[(u16, Zxid)]) -> Vec<u8> {
    let archive = entry.to_bytes();
    let list_bytes = if dependencies.is_empty() { 0 } else { 8 + 16 * dependencies.len() };
    let mut data = Vec::with_capacity(PROPOSAL_HEADER_BYTES + list_bytes + archive.len());
    let flagged = if dependencies.is_empty() { origin } else { origin | DEPENDENCIES_FLAG };
    data.extend_from_slice(&flagged.to_le_bytes());
    data.extend_from_slice(&token.to_le_bytes());
    data.extend_from_slice(&entry.zxid.to_le_bytes());
    if !dependencies.is_empty() {
        data.extend_from_slice(&(dependencies.len() as u64).to_le_bytes());
        for (group, zxid) in dependencies {
            data.extend_from_slice(&u64::from(*group).to_le_bytes());
            data.extend_from_slice(&zxid.to_le_bytes());
        }
    }
    data.extend_from_slice(&archive);
    data
}

/// The parts of a proposal: (origin, token, zxid, LogEntry archive); a fence has no archive.
pub fn decode_proposal(data: &[u8]) -> Result<(NodeId, u64, Zxid, &[u8]), String> {
    let (origin, token, zxid, _, archive) = split_proposal(data)?;
    Ok((origin, token, zxid, archive))
}

/// The dependencies of a proposal: (group, zxid) pairs (see `encode_proposal_after`).
pub fn proposal_dependencies(data: &[u8]) -> Result<Vec<(u16, Zxid)>, String> {
    let (_, _, _, list, _) = split_proposal(data)?;
    list.chunks_exact(16)
        .map(|pair| {
            let group = u64::from_le_bytes(pair[..8].try_into().expect("8 bytes"));
            let zxid = i64::from_le_bytes(pair[8..].try_into().expect("8 bytes"));
            u16::try_from(group).map(|group| (group, zxid)).map_err(|_| format!("dependency on group {group}"))
        })
        .collect()
}

/// (origin, token, zxid, dependency list bytes, archive).
type ProposalParts<'a> = (NodeId, u64, Zxid, &'a [u8], &'a [u8]);

fn split_proposal(data: &[u8]) -> Result<ProposalParts<'_>, String> {
    if data.len() < PROPOSAL_HEADER_BYTES {
        return Err(format!("an entry of {} bytes is shorter than a proposal", data.len()));
    }
    let u64_at = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"));
    let (flagged, token, zxid) = (u64_at(0), u64_at(8), u64_at(16) as Zxid);
    let rest = &data[PROPOSAL_HEADER_BYTES..];
    if flagged & DEPENDENCIES_FLAG == 0 {
        return Ok((flagged, token, zxid, &[], rest));
    }
    let count =
        rest.get(..8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).ok_or("cut dependency list")?;
    let list_bytes = usize::try_from(count)
        .ok()
        .and_then(|n| n.checked_mul(16))
        .filter(|bytes| 8 + bytes <= rest.len())
        .ok_or_else(|| format!("a dependency list of {count} does not fit in the entry"))?;
    Ok((flagged & !DEPENDENCIES_FLAG, token, zxid, &rest[8..8 + list_bytes], &rest[8 + list_bytes..]))
}

/// The zxid of a log entry's proposal, 0 for a leader's no-op.
fn zxid_of(entry: &Entry) -> Zxid {
    if entry.data.is_empty() {
        return 0;
    }
    decode_proposal(&entry.data).map_or(0, |(_, _, zxid, _)| zxid)
}

/// The first token a run of this node hands out: above every token an earlier run handed out
/// (4096 per microsecond of its life would be needed to reach it), because an entry proposed
/// before a crash can commit after the restart and must not answer a new request that happens
/// to carry the same token.
pub fn first_token(now_micros: i64) -> u64 {
    (now_micros.max(0) as u64).saturating_mul(4096).max(1)
}

/// The highest zxid in `entries` (0 if none).
pub fn highest_zxid(entries: &[Entry]) -> Zxid {
    entries.iter().map(zxid_of).max().unwrap_or(0)
}

/// Syncs and linearizable reads that share one ReadIndex round (every one taken from the queue
/// in one turn): one heartbeat round of the leader, one `Forward` from a follower.
#[derive(Default)]
struct ReadBatch {
    /// This node's requests.
    local: Vec<ShardRequest>,
    /// Leader: the rounds followers asked for, as (node, its token).
    remote: Vec<(NodeId, u64)>,
    /// Follower: the leader asked, and the link losses with it then (`Transport::losses_with`).
    asked: Option<(NodeId, u64)>,
    /// Leader: lease probes, this node's own and its followers' (`lease.rs`).
    leases: Vec<LeaseRound>,
}

/// Leader placement of one group: group g's preferred leader is voter g mod N (voters in id
/// order), so with several groups the leaders spread over the nodes and writes use every node.
/// Elections favour it (`ElectionPriority`); a group led elsewhere for `delay_ticks` (after its
/// preferred node came back from a failure) is handed back once that node has caught up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// None: a single node.
    pub preferred: Option<NodeId>,
    /// 0: never hand leadership back.
    pub delay_ticks: u32,
}

impl Placement {
    pub fn of_group(group: usize, voters: &[NodeId], delay_ms: u64) -> Placement {
        let mut ids = voters.to_vec();
        ids.sort_unstable();
        let preferred = (ids.len() > 1).then(|| ids[group % ids.len()]);
        let delay_ticks = u32::try_from(delay_ms.div_ceil(TICK.as_millis() as u64)).unwrap_or(u32::MAX);
        Placement { preferred, delay_ticks }
    }

    pub fn election_priority(&self, me: NodeId) -> ElectionPriority {
        match self.preferred {
            None => ElectionPriority::Neutral,
            Some(preferred) if preferred == me => ElectionPriority::Preferred,
            Some(_) => ElectionPriority::Deferring,
        }
    }
}

/// A request of this node whose entry is proposed (or forwarded) and not applied yet.
struct Waiting {
    request: ShardRequest,
    /// The entry itself when this node proposed it as leader: applied as is, without decoding
    /// the archive it was sent and persisted as (a forwarded write's entry is built by the
    /// leader, so it is decoded).
    entry: Option<LogEntry>,
    /// A forwarded write: the leader it went to and the link losses with it then.
    forwarded_to: Option<(NodeId, u64)>,
}

/// One core's Raft group and its durable log; owned by the replication loop.
pub(super) struct Replica {
    raft: Raft,
    wal: Wal,
    /// Where the group's term and vote live (`raft_state.rs`).
    state_path: PathBuf,
    /// The term and vote last made durable.
    stored: (u64, Option<NodeId>),
    /// The highest commit index written to the WAL.
    commit_written: u64,
    /// Requests of this node whose entries are proposed and not applied yet, by token.
    waiting: AHashMap<u64, Waiting>,
    next_token: u64,
    record: Vec<u8>,
    /// The term `waiting` was proposed in: when it changes, their outcome is unknown.
    seen_term: u64,
    leaderless_ticks: u32,
    /// Leader: (last index, when proposed) of each batch not yet committed, oldest first.
    proposed_batches: std::collections::VecDeque<(u64, Instant)>,
    /// ReadIndex rounds waiting for their read index, by the read context given to Raft
    /// (leader) or the token the leader answers with (follower).
    read_batches: AHashMap<u64, ReadBatch>,
    /// Syncs and linearizable reads whose read index is known, waiting for this node to apply
    /// through it.
    ready_syncs: Vec<(u64, ShardRequest)>,
    /// The followers last reported as needing a snapshot.
    reported_behind: Vec<NodeId>,
    placement: Placement,
    /// Ticks this node has led the group while it is not the group's preferred leader.
    misplaced_ticks: u32,
    /// `Transport::losses_total` when last looked at.
    seen_link_losses: u64,
    /// Committed entries not applied yet because one depends on what another group of this
    /// node has not applied yet (`apply_unapplied`), in log order.
    unapplied: std::collections::VecDeque<Entry>,
    /// The index of the last entry applied to the shards (Raft's own applied index runs ahead
    /// of it while entries wait in `unapplied`).
    state_applied: u64,
    /// Entries that had to wait for other groups (mntr), and the last one counted.
    applies_held: u64,
    held_index: u64,
}

impl Replica {
    pub(super) fn new(raft: Raft, wal: Wal, state_path: PathBuf, commit_written: u64, placement: Placement) -> Replica {
        let hard_state = raft.hard_state();
        Replica {
            stored: (hard_state.term, hard_state.vote),
            seen_term: raft.term(),
            raft,
            wal,
            state_path,
            commit_written,
            waiting: AHashMap::new(),
            next_token: first_token(super::core::unix_micros()),
            record: Vec::new(),
            leaderless_ticks: 0,
            proposed_batches: std::collections::VecDeque::new(),
            read_batches: AHashMap::new(),
            ready_syncs: Vec::new(),
            reported_behind: Vec::new(),
            placement,
            misplaced_ticks: 0,
            seen_link_losses: 0,
            unapplied: std::collections::VecDeque::new(),
            state_applied: commit_written,
            applies_held: 0,
            held_index: 0,
        }
    }

    /// Start-up: a node that is the only voter elects itself and commits (through its new
    /// term's no-op) everything in its log before it serves anything, so a restart answers
    /// with every write it acknowledged.
    pub(super) async fn catch_up_alone(&mut self, core: &Core) {
        let HardState { commit, .. } = self.raft.hard_state();
        let last = self.raft.log().last_index();
        tracing::debug!(core = core.id, commit, last, "electing the only voter");
        self.raft.campaign_now();
        while self.raft.role() != Role::Leader || self.raft.commit_index() < last {
            assert!(self.turn(core).await, "the only voter makes progress on its own");
        }
        while self.turn(core).await {}
    }

    /// One turn; false if there was nothing to do.
    pub(super) async fn turn(&mut self, core: &Core) -> bool {
        let queue = &core.commit;
        let ticks = queue.take_ticks();
        for _ in 0..ticks {
            self.raft.tick();
        }
        for message in queue.take_inbox() {
            self.raft.step(message);
        }
        for (token, index) in queue.take_read_indexes() {
            if let Some(batch) = self.read_batches.remove(&token) {
                self.ready_syncs.extend(batch.local.into_iter().map(|request| (index, request)));
            }
        }
        self.watch_leadership(core, ticks);
        self.abandon_lost_requests(core);
        self.hand_over_if_stopping(core);
        self.hand_back_to_preferred(core, ticks);
        core.group_leaders.set(core.id, self.raft.leader());
        self.propose_waiting(core);
        let leading = self.raft.role() == Role::Leader;
        if leading != queue.leading() {
            tracing::info!(core = core.id, term = self.raft.term(), leader = ?self.raft.leader(), "group leadership changed");
            queue.set_leading(leading);
            core.on_leadership(leading);
        }
        if !self.unapplied.is_empty() {
            self.apply_unapplied(core);
        }
        self.answer_ready_syncs(core);
        if !self.raft.has_ready() {
            return false;
        }
        let ready = self.raft.ready();
        self.send(core, ready.messages);
        self.store_term_and_vote(core, ready.hard_state);
        let started = Instant::now();
        let appended = self.append(&ready.entries, ready.truncate_from);
        if appended > 0 {
            let flushed = self.wal.flush().await;
            core.metrics.borrow_mut().record_flush(started.elapsed(), ready.entries.len());
            if let Err(error) = flushed {
                super::stop_on_wal_failure(core.id, &error, ready.entries.len());
            }
        }
        queue.note_log_zxid(highest_zxid(&ready.entries));
        self.send(core, ready.messages_after_persist);
        if let Some(last) = ready.committed.last().map(|e| e.index) {
            let started = Instant::now();
            self.apply(core, ready.committed);
            self.record_commit(core, last, started);
        }
        self.on_read_states(core, ready.read_states);
        self.answer_ready_syncs(core);
        self.raft.advance();
        self.compact(core);
        core.set_group_status(self.status());
        true
    }

    /// Bounds the Raft log held in memory: applied entries are dropped (the WAL keeps them),
    /// but for the last `retained-log-entries` in a cluster (a single node keeps none), which a
    /// leader sends to a follower that fell behind. One further behind needs a snapshot, which
    /// does not exist yet: logged, and its lease probes go unanswered (it stops serving).
    fn compact(&mut self, core: &Core) {
        let retain = if core.is_clustered() { core.config.retained_log_entries } else { 0 };
        let to = self.raft.applied_index().saturating_sub(retain);
        if to >= self.raft.log().first_index() + COMPACT_EVERY {
            self.raft.compact(to);
        }
        let behind = self.raft.needs_snapshot();
        if behind != self.reported_behind {
            if !behind.is_empty() {
                tracing::error!(core = core.id, followers = ?behind, retained = retain,
                    "followers need entries no longer held in memory; they cannot catch up until snapshots exist \
                     and stop serving (restart them from a copy of a current node's data dir)");
            }
            self.reported_behind = behind;
        }
        // Also a follower that has not answered since entries it lacks were compacted (it was
        // cut off): it must not be confirmed in touch before it could catch up.
        let mut cannot_catch_up = self.raft.behind_the_log();
        cannot_catch_up.extend(self.reported_behind.iter().copied());
        core.commit.set_needing_snapshot(&cannot_catch_up);
    }

    /// mntr: the batches committed through `last` (proposal to commit), and the apply time.
    fn record_commit(&mut self, core: &Core, last: u64, apply_started: Instant) {
        let mut metrics = core.metrics.borrow_mut();
        metrics.apply_us.record(micros(apply_started.elapsed()));
        while let Some(&(batch_last, proposed_at)) = self.proposed_batches.front() {
            if batch_last > last {
                break;
            }
            metrics.commit_quorum_us.record(micros(apply_started.duration_since(proposed_at)));
            self.proposed_batches.pop_front();
        }
    }

    fn status(&self) -> GroupStatus {
        GroupStatus {
            term: self.raft.term(),
            first_index: self.raft.log().first_index(),
            last_index: self.raft.log().last_index(),
            commit_index: self.raft.commit_index(),
            applied_index: self.state_applied,
            follower_lag: self.raft.follower_lag(),
            applies_held: self.applies_held,
        }
    }

    fn send(&self, core: &Core, messages: Vec<engine::raft::Message>) {
        if messages.is_empty() {
            return;
        }
        let transport = core.transport.as_ref().expect("a group with other voters has a transport");
        for message in messages {
            transport.send(message.to, PeerMessage::Raft(message));
        }
    }

    /// A stopping node hands each group it leads to the follower furthest along (Raft waits
    /// until it has caught up, then tells it to campaign at once), so the group is not without
    /// a leader for an election timeout. Asked again if a transfer is abandoned.
    fn hand_over_if_stopping(&mut self, core: &Core) {
        if !core.group_leaders.stopping() || self.raft.role() != Role::Leader || self.raft.transferring() {
            return;
        }
        if let Some(to) = self.raft.best_transferee() {
            tracing::info!(core = core.id, to, "stopping: handing the group's leadership over");
            self.raft.transfer_leadership(to).expect("the leader may transfer");
        }
    }

    /// Leader placement: a leader that is not the group's preferred leader hands leadership to
    /// it after `delay_ticks` as leader, once it has every entry (a transfer then completes at
    /// once); retried after another delay if it does not. The handover closes the connections
    /// of writes in flight here, as any leader change does.
    fn hand_back_to_preferred(&mut self, core: &Core, ticks: u32) {
        let Some(preferred) = self.placement.preferred else { return };
        let misplaced = self.raft.role() == Role::Leader && preferred != self.raft.id();
        if !misplaced || self.raft.transferring() || core.group_leaders.stopping() || self.placement.delay_ticks == 0 {
            self.misplaced_ticks = 0;
            return;
        }
        self.misplaced_ticks = self.misplaced_ticks.saturating_add(ticks);
        if self.misplaced_ticks < self.placement.delay_ticks || !self.raft.is_caught_up(preferred) {
            return;
        }
        self.misplaced_ticks = 0;
        tracing::info!(core = core.id, to = preferred, "handing the group's leadership to its preferred leader");
        self.raft.transfer_leadership(preferred).expect("the leader may transfer");
    }

    /// Writes proposed or forwarded in an earlier term may commit or vanish: their clients
    /// learn "maybe" (the connection closes). So do writes waiting too long for a leader.
    fn watch_leadership(&mut self, core: &Core, ticks: u32) {
        if self.raft.term() != self.seen_term {
            self.seen_term = self.raft.term();
            self.proposed_batches.clear();
            self.abandon_waiting(core, "the group's leader changed");
        }
        if self.raft.leader().is_some() {
            self.leaderless_ticks = 0;
            return;
        }
        self.leaderless_ticks += ticks;
        if self.leaderless_ticks >= LEADERLESS_TICKS_MAX {
            // Every write waiting now has waited at most this long; later ones get as long.
            self.leaderless_ticks = 0;
            self.abandon_waiting(core, "the group has no leader");
            // Every batch queued (a batch is bounded; more may wait behind it).
            loop {
                let batch = core.commit.take_batch();
                if batch.is_empty() {
                    break;
                }
                for write in batch {
                    if let WriteFrom::Local(request) = write.from {
                        core.abandon_write(request, "the group has no leader");
                    }
                }
            }
        }
    }

    /// A forwarded write or read-index question sent to the leader over a link that has lost
    /// something since may never arrive, or its answer may not: nothing else would end the
    /// wait while the leader stays. Its client learns "maybe" (the connection closes), as when
    /// the leader changes; a forwarded write that did arrive still commits.
    fn abandon_lost_requests(&mut self, core: &Core) {
        let Some(transport) = core.transport.as_ref() else { return };
        let total = transport.losses_total();
        if total == self.seen_link_losses {
            return;
        }
        self.seen_link_losses = total;
        let lost = |sent: Option<(NodeId, u64)>| sent.is_some_and(|(peer, then)| transport.losses_with(peer) != then);
        let writes: Vec<u64> = self.waiting.iter().filter(|(_, w)| lost(w.forwarded_to)).map(|(t, _)| *t).collect();
        let reads: Vec<u64> = self.read_batches.iter().filter(|(_, b)| lost(b.asked)).map(|(t, _)| *t).collect();
        if writes.is_empty() && reads.is_empty() {
            return;
        }
        let reason = "the link to the group's leader lost messages";
        tracing::warn!(
            core = core.id,
            writes = writes.len(),
            read_rounds = reads.len(),
            reason,
            "closing their connections"
        );
        for token in writes {
            let Waiting { request, .. } = self.waiting.remove(&token).expect("listed");
            core.commit.abandoned_one_own();
            core.abandon_write(request, reason);
        }
        for token in reads {
            for request in self.read_batches.remove(&token).expect("listed").local {
                core.abandon_write(request, reason);
            }
        }
    }

    fn abandon_waiting(&mut self, core: &Core, reason: &'static str) {
        let syncs: Vec<ShardRequest> = self
            .read_batches
            .drain()
            .flat_map(|(_, batch)| batch.local)
            .chain(self.ready_syncs.drain(..).map(|(_, r)| r))
            .collect();
        for request in syncs {
            core.abandon_write(request, reason);
        }
        if self.waiting.is_empty() {
            return;
        }
        tracing::warn!(
            core = core.id,
            writes = self.waiting.len(),
            reason,
            "writes in flight get no answer; closing their connections"
        );
        for (_, Waiting { request, .. }) in self.waiting.drain() {
            core.abandon_write(request, reason);
        }
        core.commit.abandoned_own();
    }

    /// Proposes (as leader) or forwards (to the leader) every write waiting in the queue; with
    /// no leader known they wait.
    fn propose_waiting(&mut self, core: &Core) {
        let queue = &core.commit;
        if !queue.has_pending() {
            return;
        }
        // Confirmed only by a round this node starts as leader; elsewhere the probe is dropped
        // (its sender probes again).
        let leases = queue.take_lease_rounds();
        let me = self.raft.id();
        let forward_to = match (self.raft.role(), self.raft.leader()) {
            // Proposals wait for the new leader, then are forwarded to it.
            (Role::Leader, _) if self.raft.transferring() => return,
            (Role::Leader, _) => None,
            (_, Some(leader)) => Some(leader),
            (_, None) => return,
        };
        let time_ms = unix_millis();
        let now = Instant::now();
        if forward_to.is_none() {
            if let Some(zxid) = queue.take_fence() {
                self.raft.propose(encode_fence(zxid)).unwrap_or_else(|e| panic!("the leader refused a fence: {e:?}"));
            }
        }
        let mut reads = ReadBatch::default();
        if forward_to.is_none() {
            reads.leases = leases;
        }
        let mut read_shard = None;
        loop {
            let batch = queue.take_batch();
            if batch.is_empty() {
                break;
            }
            for PendingWrite { queued_at, shard, from, command, dependencies } in batch {
                core.metrics.borrow_mut().commit_queue_us.record(micros(now.saturating_duration_since(queued_at)));
                let from = match from {
                    // Per-session order: nothing after an abandoned request of its connection.
                    WriteFrom::Local(request) if core.is_abandoned(request.conn) => {
                        core.abandon_write(request, "an earlier request of its connection was abandoned");
                        continue;
                    }
                    from => from,
                };
                match (command, from, forward_to) {
                    (None, WriteFrom::Local(request), _) => {
                        read_shard = Some(shard);
                        reads.local.push(request);
                    }
                    (None, WriteFrom::Peer { origin, token }, None) => reads.remote.push((origin, token)),
                    (None, WriteFrom::Peer { origin, .. }, Some(_)) => {
                        tracing::debug!(core = core.id, origin, "a sync forwarded to a former leader is dropped");
                    }
                    (Some(command), WriteFrom::Local(request), Some(leader)) => {
                        let token = self.next_token();
                        let transport = core.transport.as_ref().expect("a follower has peers");
                        let forwarded_to = Some((leader, transport.losses_with(leader)));
                        self.waiting.insert(token, Waiting { request, entry: None, forwarded_to });
                        queue.proposed();
                        let command = Some(command);
                        transport
                            .send(leader, PeerMessage::Forward { origin: me, token, shard, command, dependencies });
                    }
                    (Some(_), WriteFrom::Peer { origin, .. }, Some(_)) => {
                        // Sent when this node led; the sender learns of the new term and
                        // closes its client's connection.
                        tracing::debug!(core = core.id, origin, "a write forwarded to a former leader is dropped");
                    }
                    (Some(command), from, None) => {
                        let entry = LogEntry { shard, zxid: queue.next_zxid(), time_ms, command };
                        let data = match from {
                            WriteFrom::Local(request) => {
                                let token = self.next_token();
                                let data = encode_proposal_after(me, token, &entry, &dependencies);
                                self.waiting.insert(token, Waiting { request, entry: Some(entry), forwarded_to: None });
                                queue.proposed();
                                data
                            }
                            WriteFrom::Peer { origin, token } => {
                                encode_proposal_after(origin, token, &entry, &dependencies)
                            }
                        };
                        self.raft.propose(data).unwrap_or_else(|e| panic!("the leader refused a proposal: {e:?}"));
                    }
                }
            }
            if forward_to.is_none() {
                self.proposed_batches.push_back((self.raft.log().last_index(), now));
            }
        }
        self.start_read_index(core, reads, read_shard, forward_to);
    }

    /// The syncs and linearizable reads of a turn: one ReadIndex round instead of a log entry
    /// (no WAL write). As leader, Raft confirms with a heartbeat round that it still leads and
    /// hands back its commit index; a follower asks the leader for it (a forward without a
    /// command). Each request is answered once this node has applied through that index:
    /// everything committed before it was asked is then visible.
    fn start_read_index(
        &mut self,
        core: &Core,
        reads: ReadBatch,
        shard: Option<engine::command::ShardId>,
        leader: Option<NodeId>,
    ) {
        if reads.local.is_empty() && reads.remote.is_empty() && reads.leases.is_empty() {
            return;
        }
        let token = self.next_token();
        match leader {
            Some(leader) => {
                assert!(reads.remote.is_empty() && reads.leases.is_empty(), "a follower answers no read index");
                let shard = shard.expect("a follower's round is for its own requests");
                let transport = core.transport.as_ref().expect("a follower has peers");
                let mut reads = reads;
                reads.asked = Some((leader, transport.losses_with(leader)));
                self.read_batches.insert(token, reads);
                let me = self.raft.id();
                let forward =
                    PeerMessage::Forward { origin: me, token, shard, command: None, dependencies: Vec::new() };
                transport.send(leader, forward);
            }
            None => {
                // Lease probes alone can wait for the next heartbeat (every tick): no messages,
                // unless a reattach waits for one.
                let lazy = reads.local.is_empty() && reads.remote.is_empty() && !reads.leases.iter().any(|l| l.urgent);
                self.read_batches.insert(token, reads);
                let asked = match lazy {
                    true => self.raft.read_index_at_next_heartbeat(token),
                    false => self.raft.read_index(token),
                };
                asked.unwrap_or_else(|e| panic!("the leader refused a read index: {e:?}"));
            }
        }
    }

    /// Read indexes Raft confirmed (this node leads): its own requests wait to be applied
    /// through them, other nodes' rounds are answered.
    fn on_read_states(&mut self, core: &Core, read_states: Vec<engine::raft::ReadState>) {
        for state in read_states {
            let Some(batch) = self.read_batches.remove(&state.context) else { continue };
            self.ready_syncs.extend(batch.local.into_iter().map(|request| (state.index, request)));
            for (origin, token) in batch.remote {
                let transport = core.transport.as_ref().expect("a read index for another node means peers");
                transport.send(origin, PeerMessage::ReadIndex { token, index: state.index });
            }
            for LeaseRound { asker, token, unknown, .. } in batch.leases {
                match asker {
                    None => core.on_lease_confirmed(token, &unknown),
                    Some(follower) => {
                        let transport = core.transport.as_ref().expect("a follower's probe means peers");
                        transport.send(follower, PeerMessage::Touched { token, unknown });
                    }
                }
            }
        }
    }

    /// Syncs and linearizable reads whose read index this node has applied through are
    /// answered, in the order they were asked.
    fn answer_ready_syncs(&mut self, core: &Core) {
        if self.ready_syncs.is_empty() {
            return;
        }
        let applied = self.state_applied;
        let (done, waiting): (Vec<_>, Vec<_>) = self.ready_syncs.drain(..).partition(|(index, _)| *index <= applied);
        self.ready_syncs = waiting;
        for (_, request) in done {
            core.answer_sync(request);
        }
    }

    /// The request of this node an entry answers, if it still waits.
    fn waiting_for(&mut self, origin: NodeId, token: u64) -> Option<Waiting> {
        if origin == self.raft.id() {
            self.waiting.remove(&token)
        } else {
            None
        }
    }

    fn next_token(&mut self) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        token
    }

    /// Term and vote MUST be durable before any message of the new term or any vote leaves.
    fn store_term_and_vote(&mut self, core: &Core, hard_state: Option<HardState>) {
        let Some(HardState { term, vote, .. }) = hard_state else { return };
        if (term, vote) == self.stored {
            return;
        }
        if let Err(error) = raft_state::store(&self.state_path, term, vote) {
            tracing::error!(core = core.id, %error, path = %self.state_path.display(), "cannot store the Raft term and vote");
            super::stop_on_state_failure(core.id);
        }
        self.stored = (term, vote);
    }

    /// Appends the Ready's records to the WAL; returns how many.
    fn append(&mut self, entries: &[Entry], truncate_from: Option<u64>) -> usize {
        let mut appended = 0;
        let commit = self.raft.commit_index();
        let (wal, buf) = (&mut self.wal, &mut self.record);
        self.commit_written = raft_log::ready_records(entries, truncate_from, commit, self.commit_written, |record| {
            append_record(wal, buf, record);
            appended += 1;
        });
        appended
    }

    /// Committed entries join the ones waiting to apply, which apply in log order.
    fn apply(&mut self, core: &Core, committed: Vec<Entry>) {
        self.unapplied.extend(committed);
        self.apply_unapplied(core);
    }

    /// Applies the committed entries whose dependencies on other groups this node has applied
    /// (one order across groups): the first that must wait stops the rest behind it, until
    /// another core applies more (`Msg::Applied` pokes this loop, and ticks retry).
    fn apply_unapplied(&mut self, core: &Core) {
        let queue = &core.commit;
        let mut applied_any = false;
        while let Some(entry) = self.unapplied.front() {
            if !entry.data.is_empty() && !dependencies_applied(core, entry) {
                if entry.index != self.held_index {
                    self.held_index = entry.index;
                    self.applies_held += 1;
                    tracing::debug!(
                        core = core.id,
                        index = entry.index,
                        dependencies = ?proposal_dependencies(&entry.data),
                        "a committed entry waits for another group of this node"
                    );
                }
                break;
            }
            let entry = self.unapplied.pop_front().expect("looked at");
            self.state_applied = entry.index;
            if entry.data.is_empty() {
                continue;
            }
            let (origin, token, zxid, archive) = decode_proposal(&entry.data)
                .unwrap_or_else(|e| panic!("committed entry {} of core {}: {e}", entry.index, core.id));
            if archive.is_empty() {
                // A fence: nothing below its zxid is still to come.
                queue.set_last_applied(zxid);
                core.group_leaders.set_applied(core.id, zxid);
                applied_any = true;
                continue;
            }
            let waiting = self.waiting_for(origin, token);
            let decode = || {
                LogEntry::from_bytes(archive)
                    .unwrap_or_else(|e| panic!("committed entry {} of core {}: {e}", entry.index, core.id))
            };
            // Set first: reads served while this entry applies see it applied.
            queue.set_last_applied(zxid);
            match waiting {
                Some(Waiting { request, entry: own, .. }) => {
                    let log_entry = own.unwrap_or_else(decode);
                    assert_eq!(log_entry.zxid, zxid, "a proposal's header and its entry agree on the zxid");
                    queue.applied_own();
                    core.apply_and_reply(request, log_entry);
                }
                None => {
                    let log_entry = decode();
                    assert_eq!(log_entry.zxid, zxid, "a proposal's header and archive agree on the zxid");
                    core.apply_replicated(log_entry);
                }
            }
            core.group_leaders.set_applied(core.id, zxid);
            applied_any = true;
        }
        let waiting = !self.unapplied.is_empty();
        queue.set_waiting_for_other_groups(waiting);
        core.group_leaders.set_waiting(core.id, waiting);
        if applied_any {
            // A group held back for this one looks again now, not at its next tick: catching
            // up interleaved groups goes step by step, each step a wake-up.
            for group in (0..core.group_leaders.groups()).filter(|&g| g != core.id) {
                if core.group_leaders.waiting(group) {
                    core.send(group, super::msg::Msg::OtherGroupApplied);
                }
            }
            core.announce_applied();
            core.serve_cut_waiters();
        }
    }
}

/// Whether this node's other groups have applied everything `entry` depends on.
fn dependencies_applied(core: &Core, entry: &Entry) -> bool {
    let dependencies = proposal_dependencies(&entry.data)
        .unwrap_or_else(|e| panic!("committed entry {} of core {}: {e}", entry.index, core.id));
    dependencies.into_iter().all(|(group, zxid)| {
        usize::from(group) == core.id
            || usize::from(group) >= core.group_leaders.groups()
            || core.group_leaders.applied(usize::from(group)) >= zxid
    })
}

/// Encodes `record` in `buf` and appends it to the WAL's pending batch.
fn append_record(wal: &mut Wal, buf: &mut Vec<u8>, record: Record<'_>) {
    buf.clear();
    record.encode_into(buf);
    // Config validation keeps a request below the WAL's record limit; a violation is a
    // bug, reported by the WAL's own check.
    wal.try_append(buf).unwrap_or_else(|e| panic!("WAL refused a record: {e}"));
}

/// Runs the group: a turn whenever writes, ticks or peer messages arrive.
pub(super) async fn replication_loop(core: Rc<Core>, mut replica: Replica, signal: LocalReceiver<()>) {
    while signal.recv().await.is_some() {
        // Let the writes of this loop turn gather into one batch.
        futures_lite::future::yield_now().await;
        while replica.turn(&core).await {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::command::{Command, SetDataOp};

    fn log_entry(zxid: Zxid) -> LogEntry {
        let command =
            Command::SetData(SetDataOp { path: "/a".into(), data: Some(vec![1, 2]), version: -1, auth: Vec::new() });
        LogEntry { shard: 3, zxid, time_ms: 5, command }
    }

    #[test]
    fn a_proposal_round_trips_and_names_its_origin() {
        let data = encode_proposal(2, 77, &log_entry(1234));
        let (origin, token, zxid, archive) = decode_proposal(&data).unwrap();
        assert_eq!((origin, token, zxid), (2, 77, 1234));
        assert_eq!(LogEntry::from_bytes(archive).unwrap(), log_entry(1234));
        assert!(decode_proposal(&data[..PROPOSAL_HEADER_BYTES - 1]).is_err(), "cut header");
        assert_eq!(decode_proposal(&encode_fence(99)).unwrap(), (0, 0, 99, &[][..]), "a fence has no archive");
    }

    #[test]
    fn a_proposal_with_dependencies_round_trips_and_keeps_its_archive_aligned() {
        let dependencies = [(0, 17), (3, i64::MAX)];
        let data = encode_proposal_after(2, 77, &log_entry(1234), &dependencies);
        let (origin, token, zxid, archive) = decode_proposal(&data).unwrap();
        assert_eq!((origin, token, zxid), (2, 77, 1234), "the flag is not part of the origin");
        assert_eq!(LogEntry::from_bytes(archive).unwrap(), log_entry(1234));
        assert_eq!((data.len() - archive.len()) % 8, 0, "the archive starts 8-byte aligned");
        assert_eq!(proposal_dependencies(&data).unwrap(), dependencies.to_vec());
        assert_eq!(proposal_dependencies(&encode_proposal(2, 77, &log_entry(1))).unwrap(), vec![]);
        assert!(decode_proposal(&data[..PROPOSAL_HEADER_BYTES + 20]).is_err(), "cut list");
        let mut huge = data.clone();
        huge[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_proposal(&huge).is_err(), "a count that does not fit is an error, not a panic");
    }

    #[test]
    fn tokens_of_a_later_run_start_above_every_token_of_an_earlier_one() {
        let started = 1_764_530_000_000_000; // µs since the epoch, in 2025
        let earlier_run_after_an_hour = first_token(started) + 3_600_000_000 * 1000; // 1000 tokens per µs
        assert!(first_token(started + 3_600_000_000) > earlier_run_after_an_hour);
        assert_eq!(first_token(-5), 1, "a clock before the epoch still gives a valid token");
    }

    #[test]
    fn the_highest_zxid_skips_no_ops() {
        let entries = vec![
            Entry { term: 1, index: 1, data: Vec::new() },
            Entry { term: 1, index: 2, data: encode_proposal(1, 1, &log_entry(90)) },
            Entry { term: 1, index: 3, data: encode_proposal(1, 2, &log_entry(40)) },
        ];
        assert_eq!(highest_zxid(&entries), 90);
        assert_eq!(highest_zxid(&[]), 0);
    }
}
