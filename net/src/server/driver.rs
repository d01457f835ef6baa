//! The decisions of one Raft group's runtime, with no clock, sockets or disk: propose as leader
//! or forward to the leader, batch limits, read-index rounds (syncs, linearizable reads, lease
//! probes), the leadership watch and abandoning, lost-link handling, hand-over on stop and
//! hand-back to the preferred leader, compaction, and the apply of committed entries in log
//! order under the one-order-across-groups rule. The runtime (`replica.rs`) and the simulation
//! (`sim/node.rs`) both run this code; each is a `GroupHost`, the one place where the driver's
//! effects (messages, WAL records, applies, answers) are carried out and its questions (a zxid,
//! what other groups applied, link losses) are answered.
//!
//! One turn: `start_turn` feeds Raft the ticks that passed, proposes or forwards the waiting
//! writes, applies entries that were held for other groups, and takes Raft's `Ready`: it sends
//! the messages that may precede persistence, stores the term and vote if they changed and
//! appends the new entries (and the commit index learned) as WAL records. The host then makes
//! the records durable (one write, one fsync) and calls `finish_turn`, which sends the messages
//! that promise durability, applies and answers what is committed, and advances Raft.
//!
//! One order across groups: a write's dependencies are what its node had applied in every other
//! group when the client's write was sent; every replica applies an entry only once its own
//! other groups have applied through them, so a reader on any node that sees a session's later
//! write in one group sees its earlier writes in the others.

use super::metrics::GroupStatus;
use super::proposal::{decode_proposal, encode_fence, encode_proposal_after, highest_zxid, proposal_dependencies};
use crate::peer::PeerMessage;
use crate::raft_log::{self, Record};
use ahash::AHashMap;
use engine::command::{ClientWrite, Command, LogEntry, MultiOp, ShardId, TxnId};
use engine::raft::{ElectionPriority, Entry, HardState, Index, Message, NodeId, Raft, ReadState, Role, Term};
use engine::txn::Releaser;
use engine::types::{SessionId, Zxid};
use std::collections::{BTreeSet, VecDeque};

/// One Raft tick (the runtime's timer). Elections time out after 10-20 ticks, a leader
/// heartbeats every tick.
pub const TICK_MS: u64 = 30;

/// Raft's election ticks for an election timeout of `ms` (at least two: a leader heartbeats
/// every tick).
pub fn election_ticks(ms: u64) -> u32 {
    u32::try_from(ms.div_ceil(TICK_MS)).unwrap_or(u32::MAX).max(2)
}

/// Ticks without a known leader after which this node's waiting writes fail (their clients
/// see the connection close, "maybe applied", as ZooKeeper's followers do when they lose
/// their leader): a minority must not keep clients waiting forever.
pub const LEADERLESS_TICKS_MAX: u32 = 40;

/// Most entries proposed in one batch.
pub const BATCH_ENTRIES_MAX: usize = 4096;
/// Most request bytes proposed in one batch; the rest waits for the next batch.
pub const BATCH_BYTES_MAX: usize = 64 << 20;

/// A write (or, without a command, a sync or linearizable read) for the group.
pub struct Write<R> {
    pub shard: ShardId,
    pub from: WriteFrom<R>,
    /// None: a client's `sync` or, with linearizable reads, a read (or a part of one): answered
    /// through a ReadIndex round once everything committed before it is applied here.
    pub command: Option<Command>,
    /// What other groups must have applied first, as (group, zxid).
    pub dependencies: Vec<(u16, Zxid)>,
}

/// Who waits for a write's outcome.
pub enum WriteFrom<R> {
    /// A request of this node.
    Local(R),
    /// A write another node forwarded to this one as the group's leader of `term`; that node
    /// answers it when it applies the entry, which names it as `origin` with its `token`.
    Peer { origin: NodeId, token: u64, term: Term },
}

/// A lease probe to confirm with a ReadIndex round (`lease.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRound {
    /// The follower that asked; None: this node's own probe.
    pub asker: Option<NodeId>,
    pub token: u64,
    /// The probe's sessions the session group's leader does not track.
    pub unknown: Vec<SessionId>,
    /// A reattach waits for it: a heartbeat round of its own, not the next regular one.
    pub urgent: bool,
}

/// What the driver asks of the node that runs it, and the effects it has carried out there.
/// Calls arrive in the order their effects must happen.
pub trait GroupHost {
    /// The node's handle of a client request.
    type Request;

    /// A zxid for a new entry, above every zxid of the group this node has seen or promised.
    fn next_zxid(&mut self) -> Zxid;
    /// A zxid now in the group's log: a leader assigns only above it.
    fn note_log_zxid(&mut self, zxid: Zxid);
    /// Leader: the zxid of a fence to propose now, if other groups asked for one.
    fn take_fence(&mut self) -> Option<Zxid>;
    /// What this node's group `group` has applied; None if the node has no such group.
    fn applied_in_group(&self, group: usize) -> Option<Zxid>;
    /// Losses on the link with `peer` so far (a message sent may not have arrived, or its
    /// answer may not), and on every link.
    fn link_losses(&self, peer: NodeId) -> u64;
    fn link_losses_total(&self) -> u64;
    /// An earlier request of the request's connection was abandoned: per-session order says
    /// nothing later of that connection may be done.
    fn connection_abandoned(&self, request: &Self::Request) -> bool;
    /// The node is stopping: hand leadership over.
    fn stopping(&self) -> bool;
    /// Wall-clock milliseconds for a new entry (its znodes' mtime).
    fn time_ms(&self) -> i64;

    fn send(&mut self, to: NodeId, message: PeerMessage);
    /// MUST be durable before the turn's `append`ed records are, and before any later `send`.
    fn store_term_and_vote(&mut self, term: Term, vote: Option<NodeId>);
    /// A WAL record of this turn; the host makes them durable before `finish_turn`.
    fn append(&mut self, record: Record<'_>);
    /// The group's leader as this node knows it, every turn.
    fn leader_known(&mut self, leader: Option<NodeId>);
    fn leadership_changed(&mut self, leading: bool, term: Term, leader: Option<NodeId>);
    /// Requests of this node proposed or forwarded and not applied yet (nothing may be
    /// promised beyond them).
    fn in_flight(&mut self, requests: usize);
    /// A committed entry to apply, with the request of this node it answers.
    fn apply(&mut self, entry: LogEntry, answer: Option<Self::Request>);
    /// A committed fence: nothing of the group below its zxid is still to come.
    fn apply_fence(&mut self, zxid: Zxid);
    /// Any entry left the apply queue (a no-op, fence or write), after its effect.
    /// `ahead_pending`: an entry further on was applied ahead of its place and has not reached
    /// it (the state is then not only a function of the entries through this one).
    fn entry_applied(&mut self, _entry: &Entry, _ahead_pending: bool) {}
    /// The entries of one step were applied (announce them, wake groups that wait).
    fn applied_run_done(&mut self);
    /// Committed entries wait for other groups of this node.
    fn waiting_for_other_groups(&mut self, waiting: bool);
    /// A sync or linearizable read whose read index this node has applied through.
    fn answer_sync(&mut self, request: Self::Request);
    /// A request whose outcome this node cannot learn: its client hears "maybe" (the
    /// connection closes).
    fn abandon(&mut self, request: Self::Request, reason: &'static str);
    /// This node's own lease probe was confirmed by a ReadIndex round it led.
    fn lease_confirmed(&mut self, token: u64, unknown: &[SessionId]);
    /// Followers that cannot catch up from the log this leader holds.
    fn followers_needing_snapshot(&mut self, followers: &[NodeId]);
    /// Leader: a batch up to `last` was proposed; entries through `last` committed (metrics).
    fn batch_proposed(&mut self, _last: Index) {}
    fn committed_through(&mut self, _last: Index) {}
    /// Committed entries are about to be applied (`committed_through` follows them; metrics).
    fn applying_committed(&mut self) {}
    /// The group's term changed (batches of the old term will not be timed).
    fn term_changed(&mut self) {}
    /// The multi across groups holding a path that `entry` reads or changes
    /// (`engine::txn::holder_of_command`): the entry waits until that multi's finish applied.
    fn held_by(&self, _entry: &Entry) -> Option<TxnId> {
        None
    }
    /// What `entry` does that matters to entries applied ahead of their place
    /// (`engine::txn::releasers`). Asked once per entry while entries wait.
    fn releasers(&self, _entry: &Entry) -> Vec<Releaser> {
        Vec::new()
    }
    /// Applies a decision or finish ahead of its place; at its place it finds its work done.
    fn apply_ahead(&mut self, _entry: &Entry) {}
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
        let delay_ticks = u32::try_from(delay_ms.div_ceil(TICK_MS)).unwrap_or(u32::MAX);
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

/// How a group's driver behaves.
#[derive(Clone, Copy, Debug)]
pub struct DriverConfig {
    /// The group's number on its node (its core): in logs, and skipped in its own dependencies.
    pub group: usize,
    pub placement: Placement,
    /// Applied entries kept in memory for followers that fall behind (0: a single node).
    pub retained_entries: u64,
    /// Entries dropped at a time (dropping moves the rest of the in-memory log).
    pub compact_every: u64,
}

/// Entries dropped at a time by the runtime.
pub const COMPACT_EVERY: u64 = 4096;

/// Syncs and linearizable reads that share one ReadIndex round (every one taken in one turn):
/// one heartbeat round of the leader, one `Forward` from a follower.
struct ReadBatch<R> {
    /// This node's requests.
    local: Vec<R>,
    /// Leader: the rounds followers asked for, as (node, its token).
    remote: Vec<(NodeId, u64)>,
    /// Follower: the leader asked, and the link losses with it then.
    asked: Option<(NodeId, u64)>,
    /// Leader: lease probes, this node's own and its followers'.
    leases: Vec<LeaseRound>,
}

impl<R> Default for ReadBatch<R> {
    fn default() -> Self {
        ReadBatch { local: Vec::new(), remote: Vec::new(), asked: None, leases: Vec::new() }
    }
}

/// A request of this node whose entry is proposed (or forwarded) and not applied yet.
struct Waiting<R> {
    request: R,
    /// The entry itself when this node proposed it as leader: applied as is, without decoding
    /// the archive it was sent and persisted as (a forwarded write's entry is built by the
    /// leader, so it is decoded).
    entry: Option<LogEntry>,
    /// A forwarded write: the leader it went to and the link losses with it then.
    forwarded_to: Option<(NodeId, u64)>,
}

/// The WAL records a turn appended, and the log entries among them.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    pub records: usize,
    pub entries: usize,
}

/// What a turn's Ready still has to do once its records are durable.
struct Persisting {
    messages_after_persist: Vec<Message>,
    committed: Vec<Entry>,
    read_states: Vec<ReadState>,
    highest_zxid: Zxid,
}

/// One group of one node: Raft and everything the runtime decides around it.
pub struct GroupDriver<R> {
    raft: Raft,
    config: DriverConfig,
    /// The term and vote last stored.
    stored: (Term, Option<NodeId>),
    /// The highest commit index written to the WAL.
    commit_written: Index,
    ticks_due: u32,
    /// Peer messages and the leader's answers to forwarded ReadIndex rounds, stepped in a turn
    /// after its ticks (a follower whose turn was held up by a slow WAL write counts the time
    /// that passed before it hears the heartbeats that came meanwhile, not after).
    inbox: Vec<Message>,
    read_indexes: Vec<(u64, Index)>,
    /// Writes not yet proposed or forwarded, oldest first.
    pending: VecDeque<Write<R>>,
    /// Lease probes for the next ReadIndex round.
    lease_rounds: Vec<LeaseRound>,
    /// Requests of this node whose entries are proposed and not applied yet, by token.
    waiting: AHashMap<u64, Waiting<R>>,
    next_token: u64,
    /// The term `waiting` was proposed in: when it changes, their outcome is unknown.
    seen_term: Term,
    leaderless_ticks: u32,
    /// ReadIndex rounds waiting for their read index, by the read context given to Raft
    /// (leader) or the token the leader answers with (follower).
    read_batches: AHashMap<u64, ReadBatch<R>>,
    /// Syncs and linearizable reads whose read index is known, waiting for this node to apply
    /// through it.
    ready_syncs: Vec<(Index, R)>,
    /// The followers last reported as needing a snapshot.
    reported_behind: Vec<NodeId>,
    /// Ticks this node has led the group while it is not the group's preferred leader.
    misplaced_ticks: u32,
    /// `link_losses_total` when last looked at.
    seen_link_losses: u64,
    /// Follower: the leader followed and `link_losses` with it when last looked at.
    leader_link: Option<(NodeId, u64)>,
    /// Committed entries not applied yet because one depends on what another group of this
    /// node has not applied yet, in log order.
    unapplied: VecDeque<Entry>,
    /// The index of the last entry applied to the shards (Raft's own applied index runs ahead
    /// of it while entries wait in `unapplied`).
    state_applied: Index,
    /// Entries that had to wait for other groups (mntr), and the last one counted.
    applies_held: u64,
    held_index: Index,
    /// Entries of `unapplied` applied ahead of their place (to release a held path).
    applied_ahead: BTreeSet<Index>,
    /// Entries of `unapplied` after its first that matter to entries applied ahead (decisions,
    /// finishes, forgets), as far as they were looked at (each is decoded once, not at every
    /// turn a long queue waits).
    releasers: Vec<(Index, Releaser)>,
    releasers_through: Index,
    persisting: Option<Persisting>,
    /// Whether the host was last told this node leads.
    leading_reported: bool,
}

impl<R> GroupDriver<R> {
    /// `raft` restored from the durable log, its applied index at the commit index; the state
    /// has every committed entry applied but the last `held` (`replay_limits`), which wait for
    /// other groups here. `first_token`: above every token an earlier run of the node handed
    /// out (`proposal::first_token`).
    pub fn new(raft: Raft, config: DriverConfig, first_token: u64, held: Vec<Entry>) -> GroupDriver<R> {
        let hard_state = raft.hard_state();
        assert_eq!(raft.applied_index(), hard_state.commit, "restored up to the commit index");
        assert!(held.last().is_none_or(|e| e.index == hard_state.commit), "held entries end at the commit index");
        GroupDriver {
            stored: (hard_state.term, hard_state.vote),
            commit_written: hard_state.commit,
            seen_term: raft.term(),
            state_applied: hard_state.commit - held.len() as u64,
            raft,
            config,
            ticks_due: 0,
            inbox: Vec::new(),
            read_indexes: Vec::new(),
            pending: VecDeque::new(),
            lease_rounds: Vec::new(),
            waiting: AHashMap::new(),
            next_token: first_token,
            leaderless_ticks: 0,
            read_batches: AHashMap::new(),
            ready_syncs: Vec::new(),
            reported_behind: Vec::new(),
            misplaced_ticks: 0,
            seen_link_losses: 0,
            leader_link: None,
            unapplied: held.into(),
            applies_held: 0,
            held_index: 0,
            applied_ahead: BTreeSet::new(),
            releasers: Vec::new(),
            releasers_through: 0,
            persisting: None,
            leading_reported: false,
        }
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The runtime made a leader's snapshot after `index` (of `term`) durable and switched the
    /// shards to it: the log restarts after it. False (nothing changed) if this node already
    /// has everything through `index` committed.
    pub fn install_snapshot(&mut self, index: Index, term: Term) -> bool {
        if !self.raft.install_snapshot(index, term) {
            return false;
        }
        self.unapplied.clear();
        self.state_applied = index;
        self.commit_written = self.commit_written.max(index);
        true
    }

    /// The last entry applied to the shards and its term: where a snapshot begun now stands.
    pub fn applied_point(&self) -> (Index, Term) {
        let term = self.raft.log().term(self.state_applied).expect("compaction keeps the last applied entry's term");
        (self.state_applied, term)
    }

    /// Whether this node's decisions on multis may rest on the group's table of them, but for
    /// the multis `decisions_to_apply` names: it leads and its commit index is current (an
    /// entry of its term committed, so every earlier entry is committed and here to apply).
    pub fn decides_now(&self) -> bool {
        let commit = self.raft.commit_index();
        self.raft.role() == Role::Leader && self.raft.log().term(commit) == Some(self.raft.term())
    }

    /// Multis with a decision or forget committed and still to apply here: a leader must not
    /// decide them from its table yet, or it would log a second decision after the forget,
    /// which then holds (found by the simulation: a multi aborted everywhere and then its
    /// client told it committed).
    pub fn decisions_to_apply(&mut self, releasers: impl Fn(&Entry) -> Vec<Releaser>) -> Vec<TxnId> {
        self.refresh_releasers(&releasers);
        let head = self.unapplied.front().filter(|entry| !entry.data.is_empty());
        let head = head.map(|entry| (entry.index, releasers(entry))).into_iter();
        let head = head.flat_map(|(index, found)| found.into_iter().map(move |releaser| (index, releaser)));
        head.chain(self.releasers.iter().copied())
            .filter(|(index, _)| !self.applied_ahead.contains(index))
            .filter_map(|(_, releaser)| match releaser {
                Releaser::Decision(txn) | Releaser::Forget(txn) => Some(txn),
                Releaser::Finish(_) => None,
            })
            .collect()
    }

    /// Held entries the start-up replay applied ahead of their place (`server::Replayed`).
    pub fn applied_ahead_at_start(&mut self, indexes: Vec<Index>) {
        assert!(
            indexes.iter().all(|index| self.unapplied.iter().any(|entry| entry.index == *index)),
            "entries applied ahead are held"
        );
        self.applied_ahead.extend(indexes);
    }

    /// The committed entries still to apply.
    #[cfg(test)]
    pub fn unapplied_entries(&self) -> impl Iterator<Item = &Entry> {
        self.unapplied.iter()
    }

    /// The next committed entry to apply, if one waits.
    #[cfg(test)]
    pub fn unapplied_front(&self) -> Option<&Entry> {
        self.unapplied.front()
    }

    /// Whether an entry not yet at its place was applied ahead of it (the shards are then not
    /// the state after `applied_point`).
    #[cfg(test)]
    pub fn applied_ahead_any(&self) -> bool {
        !self.applied_ahead.is_empty()
    }

    /// Committed entries wait for other groups of this node before they apply.
    pub fn holds_entries(&self) -> bool {
        !self.unapplied.is_empty()
    }

    /// A single voter at start-up: elect itself at once.
    pub fn campaign_now(&mut self) {
        self.raft.campaign_now();
    }

    pub fn tick(&mut self) {
        self.ticks_due += 1;
    }

    pub fn step(&mut self, message: Message) {
        self.inbox.push(message);
    }

    pub fn queue(&mut self, write: Write<R>) {
        self.pending.push_back(write);
    }

    pub fn ask_lease(&mut self, round: LeaseRound) {
        self.lease_rounds.push(round);
    }

    /// The leader answered a forwarded ReadIndex round.
    pub fn read_index_answered(&mut self, token: u64, index: Index) {
        self.read_indexes.push((token, index));
    }

    /// Requests of this node the driver holds, in any state: their answers are lost if the
    /// node crashes.
    #[cfg(test)]
    pub fn requests(&self) -> impl Iterator<Item = &R> {
        let pending = self.pending.iter().filter_map(|w| match &w.from {
            WriteFrom::Local(request) => Some(request),
            WriteFrom::Peer { .. } => None,
        });
        let batches = self.read_batches.values().flat_map(|b| &b.local);
        let syncs = self.ready_syncs.iter().map(|(_, r)| r);
        pending.chain(self.waiting.values().map(|w| &w.request)).chain(batches).chain(syncs)
    }

    pub fn status(&self) -> GroupStatus {
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

    /// The first half of a turn (see the module's doc): Some if Raft has a Ready, and the host
    /// must then make the records appended durable and call `finish_turn`.
    pub fn start_turn<H: GroupHost<Request = R>>(&mut self, host: &mut H) -> Option<Appended> {
        assert!(self.persisting.is_none(), "a turn finishes before the next starts");
        let ticks = std::mem::take(&mut self.ticks_due);
        for _ in 0..ticks {
            self.raft.tick();
        }
        for message in std::mem::take(&mut self.inbox) {
            self.raft.step(message);
        }
        for (token, index) in std::mem::take(&mut self.read_indexes) {
            if let Some(batch) = self.read_batches.remove(&token) {
                self.ready_syncs.extend(batch.local.into_iter().map(|request| (index, request)));
            }
        }
        self.notice_leader_link_loss(host);
        self.watch_leadership(host, ticks);
        self.abandon_lost_requests(host);
        self.hand_over_if_stopping(host);
        self.hand_back_to_preferred(host, ticks);
        host.leader_known(self.raft.leader());
        self.propose_waiting(host);
        let leading = self.raft.role() == Role::Leader;
        if leading != self.leading_reported {
            self.leading_reported = leading;
            host.leadership_changed(leading, self.raft.term(), self.raft.leader());
        }
        if !self.unapplied.is_empty() {
            self.apply_unapplied(host);
        }
        self.answer_ready_syncs(host);
        if !self.raft.has_ready() {
            return None;
        }
        let durable_here = self.raft.log().persisted();
        let ready = self.raft.ready();
        send(host, ready.messages);
        if let Some(HardState { term, vote, .. }) = ready.hard_state {
            if (term, vote) != self.stored {
                host.store_term_and_vote(term, vote);
                self.stored = (term, vote);
            }
        }
        let mut appended = 0;
        let commit = self.raft.commit_index();
        self.commit_written =
            raft_log::ready_records(&ready.entries, ready.truncate_from, commit, self.commit_written, |record| {
                host.append(record);
                appended += 1;
            });
        // Committed entries this node already holds durably apply now, while this turn's WAL
        // write is under way: they need nothing from it (a majority has them), and waiting
        // for it held every batch's answers back by one more WAL write whenever new entries
        // came in the same turn (always, under load). Those it does not hold durably yet wait.
        let mut committed = ready.committed;
        let later = committed.split_off(committed.partition_point(|e| e.index <= durable_here));
        self.apply_newly_committed(host, committed);
        self.persisting = Some(Persisting {
            messages_after_persist: ready.messages_after_persist,
            committed: later,
            read_states: ready.read_states,
            highest_zxid: highest_zxid(&ready.entries),
        });
        Some(Appended { records: appended, entries: ready.entries.len() })
    }

    fn apply_newly_committed<H: GroupHost<Request = R>>(&mut self, host: &mut H, committed: Vec<Entry>) {
        if let Some(last) = committed.last().map(|e| e.index) {
            host.applying_committed();
            self.unapplied.extend(committed);
            self.apply_unapplied(host);
            host.committed_through(last);
        }
    }

    /// The second half of a turn, once the records `start_turn` appended are durable.
    pub fn finish_turn<H: GroupHost<Request = R>>(&mut self, host: &mut H) {
        let Persisting { messages_after_persist, committed, read_states, highest_zxid } =
            self.persisting.take().expect("finish_turn follows a start_turn with a Ready");
        host.note_log_zxid(highest_zxid);
        send(host, messages_after_persist);
        self.apply_newly_committed(host, committed);
        self.on_read_states(host, read_states);
        self.answer_ready_syncs(host);
        self.raft.advance();
        self.compact(host);
    }
}

impl<R> GroupDriver<R> {
    /// Writes proposed or forwarded in an earlier term may commit or vanish: their clients
    /// learn "maybe" (the connection closes). So do writes waiting too long for a leader.
    fn watch_leadership<H: GroupHost<Request = R>>(&mut self, host: &mut H, ticks: u32) {
        if self.raft.term() != self.seen_term {
            self.seen_term = self.raft.term();
            host.term_changed();
            self.abandon_waiting(host, "the group's leader changed");
        }
        if self.raft.leader().is_some() {
            self.leaderless_ticks = 0;
            return;
        }
        self.leaderless_ticks += ticks;
        if self.leaderless_ticks >= LEADERLESS_TICKS_MAX {
            // Every write waiting now has waited at most this long; later ones get as long.
            self.leaderless_ticks = 0;
            self.abandon_waiting(host, "the group has no leader");
            for write in std::mem::take(&mut self.pending) {
                if let WriteFrom::Local(request) = write.from {
                    host.abandon(request, "the group has no leader");
                }
            }
        }
    }

    /// A follower whose link with its leader broke (the leader's process died and the kernel
    /// closed its connections, or the link was cut) tells Raft, which campaigns early if the
    /// other voters lost the leader too (`Raft::leader_link_lost`). Looked at after the
    /// turn's messages are stepped, so what the leader sent before the loss does not call it
    /// off.
    fn notice_leader_link_loss<H: GroupHost<Request = R>>(&mut self, host: &H) {
        let leader = self.raft.leader().filter(|&leader| leader != self.raft.id());
        let Some(leader) = leader else {
            self.leader_link = None;
            return;
        };
        let losses = host.link_losses(leader);
        let seen = self.leader_link.replace((leader, losses));
        if seen.is_some_and(|(followed, then)| followed == leader && then != losses) {
            self.raft.leader_link_lost(leader);
        }
    }

    /// A forwarded write or read-index question sent to the leader over a link that has lost
    /// something since may never arrive, or its answer may not: nothing else would end the
    /// wait while the leader stays. Its client learns "maybe" (the connection closes), as when
    /// the leader changes; a forwarded write that did arrive still commits.
    fn abandon_lost_requests<H: GroupHost<Request = R>>(&mut self, host: &mut H) {
        let total = host.link_losses_total();
        if total == self.seen_link_losses {
            return;
        }
        self.seen_link_losses = total;
        let lost = |sent: Option<(NodeId, u64)>| sent.is_some_and(|(peer, then)| host.link_losses(peer) != then);
        let writes: Vec<u64> = self.waiting.iter().filter(|(_, w)| lost(w.forwarded_to)).map(|(t, _)| *t).collect();
        let reads: Vec<u64> = self.read_batches.iter().filter(|(_, b)| lost(b.asked)).map(|(t, _)| *t).collect();
        if writes.is_empty() && reads.is_empty() {
            return;
        }
        let reason = "the link to the group's leader lost messages";
        tracing::warn!(
            core = self.config.group,
            writes = writes.len(),
            read_rounds = reads.len(),
            reason,
            "closing their connections"
        );
        for token in writes {
            let Waiting { request, .. } = self.waiting.remove(&token).expect("listed");
            host.in_flight(self.waiting.len());
            host.abandon(request, reason);
        }
        for token in reads {
            for request in self.read_batches.remove(&token).expect("listed").local {
                host.abandon(request, reason);
            }
        }
    }

    fn abandon_waiting<H: GroupHost<Request = R>>(&mut self, host: &mut H, reason: &'static str) {
        let batches = self.read_batches.drain().flat_map(|(_, batch)| batch.local);
        let syncs: Vec<R> = batches.chain(self.ready_syncs.drain(..).map(|(_, r)| r)).collect();
        for request in syncs {
            host.abandon(request, reason);
        }
        if self.waiting.is_empty() {
            return;
        }
        tracing::warn!(
            core = self.config.group,
            writes = self.waiting.len(),
            reason,
            "writes in flight get no answer; closing their connections"
        );
        let waiting: Vec<Waiting<R>> = self.waiting.drain().map(|(_, w)| w).collect();
        host.in_flight(0);
        for Waiting { request, .. } in waiting {
            host.abandon(request, reason);
        }
    }

    /// A stopping node hands each group it leads to the follower furthest along (Raft waits
    /// until it has caught up, then tells it to campaign at once), so the group is not without
    /// a leader for an election timeout. Asked again if a transfer is abandoned.
    fn hand_over_if_stopping<H: GroupHost<Request = R>>(&mut self, host: &H) {
        if !host.stopping() || self.raft.role() != Role::Leader || self.raft.transferring() {
            return;
        }
        if let Some(to) = self.raft.best_transferee() {
            tracing::info!(core = self.config.group, to, "stopping: handing the group's leadership over");
            self.raft.transfer_leadership(to).expect("the leader may transfer");
        }
    }

    /// Leader placement: a leader that is not the group's preferred leader hands leadership to
    /// it after `delay_ticks` as leader, once it has every entry (a transfer then completes at
    /// once); retried after another delay if it does not. The handover closes the connections
    /// of writes in flight here, as any leader change does.
    fn hand_back_to_preferred<H: GroupHost<Request = R>>(&mut self, host: &H, ticks: u32) {
        let placement = self.config.placement;
        let Some(preferred) = placement.preferred else { return };
        let misplaced = self.raft.role() == Role::Leader && preferred != self.raft.id();
        if !misplaced || self.raft.transferring() || host.stopping() || placement.delay_ticks == 0 {
            self.misplaced_ticks = 0;
            return;
        }
        self.misplaced_ticks = self.misplaced_ticks.saturating_add(ticks);
        if self.misplaced_ticks < placement.delay_ticks || !self.raft.is_caught_up(preferred) {
            return;
        }
        self.misplaced_ticks = 0;
        tracing::info!(
            core = self.config.group,
            to = preferred,
            "handing the group's leadership to its preferred leader"
        );
        self.raft.transfer_leadership(preferred).expect("the leader may transfer");
    }

    /// Proposes (as leader) or forwards (to the leader) the waiting writes, in batches of at
    /// most `BATCH_ENTRIES_MAX` entries and `BATCH_BYTES_MAX` bytes; with no leader known they
    /// wait.
    fn propose_waiting<H: GroupHost<Request = R>>(&mut self, host: &mut H) {
        // Confirmed only by a round this node starts as leader; elsewhere the probe is dropped
        // (its sender probes again).
        let leases = std::mem::take(&mut self.lease_rounds);
        let me = self.raft.id();
        let forward_to = match (self.raft.role(), self.raft.leader()) {
            // Proposals wait for the new leader, then are forwarded to it.
            (Role::Leader, _) if self.raft.transferring() => return,
            (Role::Leader, _) => None,
            (_, Some(leader)) => Some(leader),
            (_, None) => return,
        };
        if forward_to.is_none() {
            if let Some(zxid) = host.take_fence() {
                self.raft.propose(encode_fence(zxid)).unwrap_or_else(|e| panic!("the leader refused a fence: {e:?}"));
            }
        }
        let mut reads = ReadBatch::default();
        if forward_to.is_none() {
            reads.leases = leases;
        }
        let mut read_shard = None;
        let last_before = self.raft.log().last_index();
        loop {
            let batch = self.take_batch();
            if batch.is_empty() {
                break;
            }
            for Write { shard, from, command, dependencies } in batch {
                let from = match from {
                    // Per-session order: nothing after an abandoned request of its connection.
                    WriteFrom::Local(request) if host.connection_abandoned(&request) => {
                        host.abandon(request, "an earlier request of its connection was abandoned");
                        continue;
                    }
                    // Per-session order across leader changes: forwards sent to the leader of
                    // another term are dropped, also by a node that leads again in a later term
                    // (it dropped earlier ones of the same sender while it did not lead; the
                    // sender abandons them all when it learns of the new term).
                    WriteFrom::Peer { origin, term, .. } if term != self.raft.term() => {
                        tracing::debug!(
                            core = self.config.group,
                            origin,
                            term,
                            "a request forwarded to the leader of another term is dropped"
                        );
                        continue;
                    }
                    from => from,
                };
                match (command, from, forward_to) {
                    (None, WriteFrom::Local(request), _) => {
                        read_shard = Some(shard);
                        reads.local.push(request);
                    }
                    (None, WriteFrom::Peer { origin, token, .. }, None) => reads.remote.push((origin, token)),
                    (None, WriteFrom::Peer { origin, .. }, Some(_)) => {
                        tracing::debug!(
                            core = self.config.group,
                            origin,
                            "a sync forwarded to a former leader is dropped"
                        );
                    }
                    (Some(command), WriteFrom::Local(request), Some(leader)) => {
                        let token = self.next_token();
                        let forwarded_to = Some((leader, host.link_losses(leader)));
                        self.waiting.insert(token, Waiting { request, entry: None, forwarded_to });
                        host.in_flight(self.waiting.len());
                        let (command, term) = (Some(command), self.raft.term());
                        let forward = PeerMessage::Forward { origin: me, token, term, shard, command, dependencies };
                        host.send(leader, forward);
                    }
                    (Some(_), WriteFrom::Peer { origin, .. }, Some(_)) => {
                        // Sent when this node led; the sender learns of the new term and
                        // closes its client's connection.
                        tracing::debug!(
                            core = self.config.group,
                            origin,
                            "a write forwarded to a former leader is dropped"
                        );
                    }
                    (Some(command), from, None) => {
                        let entry = LogEntry { shard, zxid: host.next_zxid(), time_ms: host.time_ms(), command };
                        let data = match from {
                            WriteFrom::Local(request) => {
                                let token = self.next_token();
                                let data = encode_proposal_after(me, token, &entry, &dependencies);
                                self.waiting.insert(token, Waiting { request, entry: Some(entry), forwarded_to: None });
                                host.in_flight(self.waiting.len());
                                data
                            }
                            WriteFrom::Peer { origin, token, .. } => {
                                encode_proposal_after(origin, token, &entry, &dependencies)
                            }
                        };
                        self.raft.propose(data).unwrap_or_else(|e| panic!("the leader refused a proposal: {e:?}"));
                    }
                }
            }
        }
        if self.raft.log().last_index() > last_before {
            host.batch_proposed(self.raft.log().last_index());
        }
        self.start_read_index(host, reads, read_shard, forward_to);
    }
}

impl<R> GroupDriver<R> {
    /// The next batch of waiting writes: at most `BATCH_ENTRIES_MAX` entries and
    /// `BATCH_BYTES_MAX` bytes, but always one.
    fn take_batch(&mut self) -> Vec<Write<R>> {
        let mut bytes = 0;
        let mut count = 0;
        for write in self.pending.iter().take(BATCH_ENTRIES_MAX) {
            bytes += write.command.as_ref().map_or(0, command_bytes);
            if count > 0 && bytes > BATCH_BYTES_MAX {
                break;
            }
            count += 1;
        }
        self.pending.drain(..count).collect()
    }

    /// The syncs and linearizable reads of a turn: one ReadIndex round instead of a log entry
    /// (no WAL write). As leader, Raft confirms with a heartbeat round that it still leads and
    /// hands back its commit index; a follower asks the leader for it (a forward without a
    /// command). Each request is answered once this node has applied through that index:
    /// everything committed before it was asked is then visible.
    fn start_read_index<H: GroupHost<Request = R>>(
        &mut self,
        host: &mut H,
        mut reads: ReadBatch<R>,
        shard: Option<ShardId>,
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
                reads.asked = Some((leader, host.link_losses(leader)));
                self.read_batches.insert(token, reads);
                let me = self.raft.id();
                let term = self.raft.term();
                let forward =
                    PeerMessage::Forward { origin: me, token, term, shard, command: None, dependencies: Vec::new() };
                host.send(leader, forward);
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
    /// through them, other nodes' rounds and probes are answered.
    fn on_read_states<H: GroupHost<Request = R>>(&mut self, host: &mut H, read_states: Vec<ReadState>) {
        for state in read_states {
            let Some(batch) = self.read_batches.remove(&state.context) else { continue };
            self.ready_syncs.extend(batch.local.into_iter().map(|request| (state.index, request)));
            for (origin, token) in batch.remote {
                host.send(origin, PeerMessage::ReadIndex { token, index: state.index });
            }
            for LeaseRound { asker, token, unknown, .. } in batch.leases {
                match asker {
                    None => host.lease_confirmed(token, &unknown),
                    Some(follower) => host.send(follower, PeerMessage::Touched { token, unknown }),
                }
            }
        }
    }

    /// Syncs and linearizable reads whose read index this node has applied through are
    /// answered, in the order they were asked.
    fn answer_ready_syncs<H: GroupHost<Request = R>>(&mut self, host: &mut H) {
        if self.ready_syncs.is_empty() {
            return;
        }
        let applied = self.state_applied;
        let (done, waiting): (Vec<_>, Vec<_>) = self.ready_syncs.drain(..).partition(|(index, _)| *index <= applied);
        self.ready_syncs = waiting;
        for (_, request) in done {
            host.answer_sync(request);
        }
    }

    fn next_token(&mut self) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        token
    }

    /// Applies the committed entries whose dependencies on other groups this node has applied
    /// (one order across groups): the first that must wait stops the rest behind it, until
    /// another group applies more (the host starts a turn then) or the next tick.
    fn apply_unapplied<H: GroupHost<Request = R>>(&mut self, host: &mut H) {
        let mut applied_any = false;
        while let Some(entry) = self.unapplied.front() {
            if !entry.data.is_empty() && !self.dependencies_applied(host, entry) {
                if entry.index != self.held_index {
                    self.held_index = entry.index;
                    self.applies_held += 1;
                    tracing::debug!(
                        core = self.config.group,
                        index = entry.index,
                        dependencies = ?proposal_dependencies(&entry.data),
                        "a committed entry waits for another group of this node"
                    );
                }
                break;
            }
            let held = if entry.data.is_empty() || self.applied_ahead.contains(&entry.index) {
                None
            } else {
                host.held_by(entry).map(|txn| (txn, entry.index))
            };
            if let Some((txn, index)) = held {
                if self.apply_release_ahead(host, txn) {
                    continue;
                }
                if index != self.held_index {
                    self.held_index = index;
                    self.applies_held += 1;
                    tracing::debug!(
                        core = self.config.group,
                        index,
                        ?txn,
                        "a committed entry waits for a multi across groups to finish"
                    );
                }
                break;
            }
            let entry = self.unapplied.pop_front().expect("looked at");
            self.applied_ahead.remove(&entry.index);
            self.state_applied = entry.index;
            if !entry.data.is_empty() {
                self.apply_entry(host, &entry);
                applied_any = true;
            }
            host.entry_applied(&entry, !self.applied_ahead.is_empty());
        }
        host.waiting_for_other_groups(!self.unapplied.is_empty());
        if applied_any {
            host.applied_run_done();
        }
    }

    fn apply_entry<H: GroupHost<Request = R>>(&mut self, host: &mut H, entry: &Entry) {
        let group = self.config.group;
        let (origin, token, zxid, archive) = decode_proposal(&entry.data)
            .unwrap_or_else(|e| panic!("committed entry {} of group {group}: {e}", entry.index));
        if archive.is_empty() {
            host.apply_fence(zxid);
            return;
        }
        let waiting = if origin == self.raft.id() { self.waiting.remove(&token) } else { None };
        let decode = || {
            LogEntry::from_bytes(archive)
                .unwrap_or_else(|e| panic!("committed entry {} of group {group}: {e}", entry.index))
        };
        match waiting {
            Some(Waiting { request, entry: own, .. }) => {
                let log_entry = own.unwrap_or_else(decode);
                assert_eq!(log_entry.zxid, zxid, "a proposal's header and its entry agree on the zxid");
                host.in_flight(self.waiting.len());
                host.apply(log_entry, Some(request));
            }
            None => {
                let log_entry = decode();
                assert_eq!(log_entry.zxid, zxid, "a proposal's header and archive agree on the zxid");
                host.apply(log_entry, None);
            }
        }
    }

    /// The next committed entry meets a path `txn` holds: applies ahead of its place the entry
    /// further on that releases it or leads to its release (`engine::txn::first_release`),
    /// once it may be applied (its dependencies are). Every replica takes the same entries from
    /// the same log in the same order, so they all apply the same state.
    fn apply_release_ahead<H: GroupHost<Request = R>>(&mut self, host: &mut H, txn: TxnId) -> bool {
        self.look_for_releasers(host);
        let first = self.unapplied.front().map_or(0, |entry| entry.index);
        let candidates = self
            .releasers
            .iter()
            .filter(|(index, _)| !self.applied_ahead.contains(index))
            .map(|&(index, releaser)| (index, releaser));
        let entry_at = |index: Index| {
            let entry = &self.unapplied[(index - first) as usize];
            assert_eq!(entry.index, index, "unapplied entries are consecutive");
            entry
        };
        let Some(index) =
            engine::txn::first_release(txn, candidates, |index| self.dependencies_applied(host, entry_at(index)))
        else {
            return false;
        };
        let release = entry_at(index).clone();
        self.applied_ahead.insert(release.index);
        host.apply_ahead(&release);
        true
    }

    /// Brings `releasers` up to the end of `unapplied`: entries applied since are dropped, new
    /// ones are looked at.
    fn look_for_releasers<H: GroupHost<Request = R>>(&mut self, host: &H) {
        self.refresh_releasers(&|entry: &Entry| host.releasers(entry));
    }

    fn refresh_releasers(&mut self, releasers: &impl Fn(&Entry) -> Vec<Releaser>) {
        let Some(first) = self.unapplied.front().map(|entry| entry.index) else {
            self.releasers.clear();
            return;
        };
        self.releasers.retain(|(index, _)| *index > first);
        self.releasers_through = self.releasers_through.max(first);
        let from = (self.releasers_through + 1 - first) as usize;
        for entry in self.unapplied.iter().skip(from) {
            // A no-op (a new leader's first entry) carries nothing to decode.
            if !entry.data.is_empty() {
                self.releasers.extend(releasers(entry).into_iter().map(|releaser| (entry.index, releaser)));
            }
            self.releasers_through = entry.index;
        }
    }

    /// Whether this node's other groups have applied everything `entry` depends on.
    fn dependencies_applied<H: GroupHost<Request = R>>(&self, host: &H, entry: &Entry) -> bool {
        let dependencies = proposal_dependencies(&entry.data)
            .unwrap_or_else(|e| panic!("committed entry {} of group {}: {e}", entry.index, self.config.group));
        dependencies.into_iter().all(|(group, zxid)| {
            let group = usize::from(group);
            group == self.config.group || host.applied_in_group(group).is_none_or(|applied| applied >= zxid)
        })
    }

    /// Bounds the Raft log held in memory: applied entries are dropped (the WAL keeps them),
    /// but for the last `retained_entries`, which a leader sends to a follower that fell
    /// behind. One further behind needs a snapshot (sent by the runtime): logged, and its lease
    /// probes go unanswered until it has caught up (it serves no client meanwhile).
    fn compact<H: GroupHost<Request = R>>(&mut self, host: &mut H) {
        let retain = self.config.retained_entries;
        // Never past what the shards applied: a snapshot begun now needs its entry's term.
        let to = self.state_applied.saturating_sub(retain);
        if to >= self.raft.log().first_index() + self.config.compact_every {
            self.raft.compact(to);
        }
        let behind = self.raft.needs_snapshot();
        if behind != self.reported_behind {
            if !behind.is_empty() {
                tracing::warn!(core = self.config.group, followers = ?behind, retained = retain,
                    "followers need entries no longer held in memory; they get a snapshot and serve no client \
                     until they have caught up");
            }
            self.reported_behind = behind;
        }
        // Also a follower that has not answered since entries it lacks were compacted (it was
        // cut off): it must not be confirmed in touch before it could catch up.
        let mut cannot_catch_up = self.raft.behind_the_log();
        cannot_catch_up.extend(self.reported_behind.iter().copied());
        host.followers_needing_snapshot(&cannot_catch_up);
    }
}

fn send<H: GroupHost>(host: &mut H, messages: Vec<Message>) {
    for message in messages {
        host.send(message.to, PeerMessage::Raft(message));
    }
}

/// What a snapshot taken now records of every group (`GroupHead::applied_zxids`), from what
/// this node applied of each (`applied`) and what an installed snapshot requires of each
/// (`required`): the higher of the two. A snapshot installed whole brings state that depends on
/// the other groups through what its sender had applied of them; a snapshot this node takes
/// later holds that state too, so a node restarted from it must wait for those groups just
/// the same (recording only `applied` let a restarted node serve one group's writes without
/// the other group's writes they followed). Of its own group `own` it records what it applied:
/// the snapshot's state is that, whatever the group must still apply before the node serves
/// (a replay stopped short of its limit, `run_core`).
pub fn snapshot_dependencies(own: usize, applied: &[Zxid], required: &[Zxid]) -> Vec<Zxid> {
    assert_eq!(applied.len(), required.len(), "one figure per group");
    let zxid = |(group, (&applied, &required)): (usize, (&Zxid, &Zxid))| match group == own {
        true => applied,
        false => applied.max(required),
    };
    applied.iter().zip(required).enumerate().map(zxid).collect()
}

/// One order across groups: a write to group `own` depends on what its node has applied in
/// every other group (`applied[g]`, 0 for nothing yet) when it is sent.
pub fn dependencies_on_other_groups(own: usize, applied: impl IntoIterator<Item = Zxid>) -> Vec<(u16, Zxid)> {
    let groups = applied.into_iter().enumerate().filter(|&(group, zxid)| group != own && zxid > 0);
    groups.map(|(group, zxid)| (u16::try_from(group).expect("groups fit a u16"), zxid)).collect()
}

/// The zxid rule: above every earlier zxid of the group and, when the clock allows, the current
/// time in microseconds, so zxids of different groups are ordered roughly as real time (see
/// docs/architecture.md, "zxid").
pub fn next_zxid(assigned: Zxid, now_us: i64) -> Zxid {
    (assigned + 1).max(now_us)
}

/// Roughly the bytes a command adds to a batch (its data dominates).
fn command_bytes(command: &Command) -> usize {
    const OVERHEAD: usize = 256;
    OVERHEAD
        + match command {
            Command::Create(op) | Command::OfConnection { write: ClientWrite::Create(op), .. } => {
                op.data.as_ref().map_or(0, Vec::len) + op.path.len()
            }
            Command::SetData(op) | Command::OfConnection { write: ClientWrite::SetData(op), .. } => {
                op.data.as_ref().map_or(0, Vec::len) + op.path.len()
            }
            Command::Multi { ops, .. } | Command::OfConnection { write: ClientWrite::Multi { ops, .. }, .. } => {
                ops.len() * OVERHEAD + ops.iter().map(multi_op_bytes).sum::<usize>()
            }
            Command::MultiAcross { ops, .. }
            | Command::OfConnection { write: ClientWrite::MultiAcross { ops, .. }, .. } => {
                ops.len() * OVERHEAD + ops.iter().map(|(_, op)| multi_op_bytes(op)).sum::<usize>()
            }
            _ => 0,
        }
}

fn multi_op_bytes(op: &MultiOp) -> usize {
    match op {
        MultiOp::Create(c) => c.data.as_ref().map_or(0, Vec::len) + c.path.len(),
        MultiOp::SetData(s) => s.data.as_ref().map_or(0, Vec::len) + s.path.len(),
        MultiOp::Delete(d) => d.path.len(),
        MultiOp::Check { path, .. } => path.len(),
    }
}

/// One group's committed entries as start-up replay sees them (`replay_limits`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayLog {
    /// The zxid the group's snapshot had applied through (0: no snapshot).
    pub base_zxid: Zxid,
    /// Each entry's zxid after the snapshot, in log order (0 for a leader's no-op).
    pub zxids: Vec<Zxid>,
    /// Every dependency on another group: (position in `zxids`, group, zxid), in log order.
    pub dependencies: Vec<(usize, u16, Zxid)>,
}

impl ReplayLog {
    #[cfg(test)]
    pub fn of(entries: &[Entry]) -> Result<ReplayLog, String> {
        ReplayLog::after(0, entries)
    }

    /// The committed `entries` after a snapshot that had applied through `base_zxid`.
    pub fn after(base_zxid: Zxid, entries: &[Entry]) -> Result<ReplayLog, String> {
        let mut log = ReplayLog { base_zxid, zxids: Vec::with_capacity(entries.len()), dependencies: Vec::new() };
        for (position, entry) in entries.iter().enumerate() {
            if entry.data.is_empty() {
                log.zxids.push(0);
                continue;
            }
            let (_, _, zxid, _) = decode_proposal(&entry.data)?;
            log.zxids.push(zxid);
            let dependencies = proposal_dependencies(&entry.data)?;
            log.dependencies.extend(dependencies.into_iter().map(|(group, zxid)| (position, group, zxid)));
        }
        Ok(log)
    }
}

/// Start-up replay in one order across groups: how many of each group's committed entries a
/// restarting node applies before anything else. A group's replay stops before its first
/// entry that depends on more of another group than that group's replay applies (a group's
/// commit index on disk can lag what other groups saw it apply); the rest are held by the
/// driver (`GroupDriver::new`) and apply once the other groups catch up. Each group's limit
/// depends on the others': iterated until none moves (limits only fall, so it ends).
pub fn replay_limits(groups: &[ReplayLog]) -> Vec<usize> {
    let mut limits: Vec<usize> = groups.iter().map(|g| g.zxids.len()).collect();
    loop {
        let through: Vec<Zxid> = groups
            .iter()
            .zip(&limits)
            .map(|(g, &limit)| g.zxids[..limit].iter().copied().max().unwrap_or(0).max(g.base_zxid))
            .collect();
        let mut moved = false;
        for (group, log) in groups.iter().enumerate() {
            let blocked = log.dependencies.iter().find(|&&(position, other, zxid)| {
                let other = usize::from(other);
                position < limits[group] && other != group && other < groups.len() && zxid > through[other]
            });
            if let Some(&(position, _, _)) = blocked {
                limits[group] = position;
                moved = true;
            }
        }
        if !moved {
            return limits;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::command::SetDataOp;
    use engine::raft::Config;

    fn driver() -> GroupDriver<u32> {
        let raft = Raft::new(Config::new(1, vec![1], 7), HardState::default(), Vec::new());
        let placement = Placement { preferred: None, delay_ticks: 0 };
        let config = DriverConfig { group: 0, placement, retained_entries: 0, compact_every: COMPACT_EVERY };
        GroupDriver::new(raft, config, 1, Vec::new())
    }

    fn set_data(data_bytes: usize) -> Write<u32> {
        let command = Command::SetData(SetDataOp {
            path: "/a".into(),
            data: Some(vec![0; data_bytes]),
            version: -1,
            auth: Vec::new(),
        });
        Write { shard: 0, from: WriteFrom::Local(1), command: Some(command), dependencies: Vec::new() }
    }

    /// A host that records what the driver applies and makes records durable when told.
    #[derive(Default)]
    struct RecordingHost {
        zxid: Zxid,
        applied: Vec<u32>,
        records: usize,
        /// (zxid of an entry that meets a held path, zxid of the entry that releases it).
        hold: Option<(Zxid, Zxid)>,
        /// zxids of the entries applied ahead of their place.
        ahead: Vec<Zxid>,
    }

    fn zxid_of(entry: &Entry) -> Zxid {
        decode_proposal(&entry.data).expect("a proposal").2
    }

    impl GroupHost for RecordingHost {
        type Request = u32;
        fn next_zxid(&mut self) -> Zxid {
            self.zxid += 1;
            self.zxid
        }
        fn note_log_zxid(&mut self, zxid: Zxid) {
            self.zxid = self.zxid.max(zxid);
        }
        fn take_fence(&mut self) -> Option<Zxid> {
            None
        }
        fn applied_in_group(&self, _group: usize) -> Option<Zxid> {
            None
        }
        fn link_losses(&self, _peer: NodeId) -> u64 {
            0
        }
        fn link_losses_total(&self) -> u64 {
            0
        }
        fn connection_abandoned(&self, _request: &u32) -> bool {
            false
        }
        fn stopping(&self) -> bool {
            false
        }
        fn time_ms(&self) -> i64 {
            0
        }
        fn send(&mut self, _to: NodeId, _message: PeerMessage) {}
        fn store_term_and_vote(&mut self, _term: Term, _vote: Option<NodeId>) {}
        fn append(&mut self, _record: Record<'_>) {
            self.records += 1;
        }
        fn leader_known(&mut self, _leader: Option<NodeId>) {}
        fn leadership_changed(&mut self, _leading: bool, _term: Term, _leader: Option<NodeId>) {}
        fn in_flight(&mut self, _requests: usize) {}
        fn apply(&mut self, _entry: LogEntry, answer: Option<u32>) {
            self.applied.extend(answer);
        }
        fn apply_fence(&mut self, _zxid: Zxid) {}
        fn applied_run_done(&mut self) {}
        fn waiting_for_other_groups(&mut self, _waiting: bool) {}
        fn answer_sync(&mut self, _request: u32) {}
        fn abandon(&mut self, request: u32, reason: &'static str) {
            panic!("request {request} abandoned: {reason}");
        }
        fn lease_confirmed(&mut self, _token: u64, _unknown: &[SessionId]) {}
        fn followers_needing_snapshot(&mut self, _followers: &[NodeId]) {}
        fn held_by(&self, entry: &Entry) -> Option<TxnId> {
            let (held, release) = self.hold?;
            (zxid_of(entry) == held && !self.ahead.contains(&release)).then_some(TxnId { node: 1, serial: 1 })
        }
        fn releasers(&self, entry: &Entry) -> Vec<Releaser> {
            let releases = self.hold.is_some_and(|(_, release)| zxid_of(entry) == release);
            releases.then_some(Releaser::Finish(TxnId { node: 1, serial: 1 })).into_iter().collect()
        }
        fn apply_ahead(&mut self, entry: &Entry) {
            self.ahead.push(zxid_of(entry));
        }
    }

    fn write_of(request: u32) -> Write<u32> {
        let Write { shard, command, dependencies, .. } = set_data(8);
        Write { shard, from: WriteFrom::Local(request), command, dependencies }
    }

    #[test]
    fn a_committed_batch_is_answered_before_the_next_batch_is_durable() {
        let mut driver = driver();
        let mut host = RecordingHost::default();
        driver.campaign_now();
        while driver.start_turn(&mut host).is_some() {
            driver.finish_turn(&mut host);
        }
        assert_eq!(driver.raft().role(), Role::Leader);
        driver.queue(write_of(1));
        assert!(driver.start_turn(&mut host).is_some(), "write 1 goes to the WAL");
        driver.finish_turn(&mut host); // durable: a single voter commits it
        driver.queue(write_of(2));
        assert!(driver.start_turn(&mut host).is_some(), "write 2 goes to the WAL");
        // Write 2's WAL write is under way: write 1 is committed and durable here already, so
        // it is answered now, not after write 2's WAL write.
        assert_eq!(host.applied, vec![1]);
        driver.finish_turn(&mut host);
        while driver.start_turn(&mut host).is_some() {
            driver.finish_turn(&mut host);
        }
        assert_eq!(host.applied, vec![1, 2]);
    }

    /// Writes 1, 2, 3 commit together; write 1 meets a path held by a multi across groups that
    /// write 3 releases: write 3 is applied ahead of write 1 and again at its place (where it
    /// finds its work done), and without write 3 committed, write 1 and all after it wait.
    #[test]
    fn an_entry_that_meets_a_held_path_waits_for_the_entry_that_releases_it() {
        for release_committed in [true, false] {
            let mut driver = driver();
            let mut host = RecordingHost::default();
            driver.campaign_now();
            while driver.start_turn(&mut host).is_some() {
                driver.finish_turn(&mut host);
            }
            let first = host.zxid + 1;
            host.hold = Some((first, if release_committed { first + 2 } else { first + 99 }));
            for request in 1..=3 {
                driver.queue(write_of(request));
            }
            while driver.start_turn(&mut host).is_some() {
                driver.finish_turn(&mut host);
            }
            if release_committed {
                assert_eq!(host.ahead, vec![first + 2]);
                assert_eq!(host.applied, vec![1, 2, 3]);
            } else {
                assert!(host.ahead.is_empty());
                assert!(host.applied.is_empty(), "write 1 and those after it wait: {:?}", host.applied);
            }
        }
    }

    #[test]
    fn a_batch_holds_at_most_batch_entries_max_entries() {
        let mut driver = driver();
        for _ in 0..BATCH_ENTRIES_MAX + 10 {
            driver.queue(set_data(0));
        }
        assert_eq!(driver.take_batch().len(), BATCH_ENTRIES_MAX);
        assert_eq!(driver.take_batch().len(), 10);
        assert!(driver.take_batch().is_empty());
    }

    #[test]
    fn a_batch_stops_below_batch_bytes_max_but_always_takes_one_entry() {
        let mut driver = driver();
        driver.queue(set_data(BATCH_BYTES_MAX));
        driver.queue(set_data(BATCH_BYTES_MAX / 2));
        driver.queue(set_data(BATCH_BYTES_MAX / 4));
        assert_eq!(driver.take_batch().len(), 1, "an entry over the limit still goes, alone");
        assert_eq!(driver.take_batch().len(), 2);
    }

    fn replay_log(entries: &[(Zxid, &[(u16, Zxid)])]) -> ReplayLog {
        let mut log = ReplayLog::default();
        for (position, (zxid, dependencies)) in entries.iter().enumerate() {
            log.zxids.push(*zxid);
            log.dependencies.extend(dependencies.iter().map(|&(group, zxid)| (position, group, zxid)));
        }
        log
    }

    #[test]
    fn replay_stops_before_an_entry_that_needs_more_of_another_group_than_its_log_commits() {
        let group0 = replay_log(&[(10, &[]), (0, &[]), (30, &[(1, 20)])]);
        let group1 = replay_log(&[(20, &[(0, 10)]), (40, &[(0, 35)]), (50, &[])]);
        assert_eq!(replay_limits(&[group0.clone(), group1.clone()]), vec![3, 1]);
        assert_eq!(replay_limits(&[group0]), vec![3], "a group alone has nothing to wait for");
        assert_eq!(replay_limits(&[]), Vec::<usize>::new());
    }

    #[test]
    fn a_snapshot_counts_as_applied_for_the_groups_that_depend_on_it() {
        let group0 = replay_log(&[(30, &[(1, 20)])]);
        let mut group1 = replay_log(&[]);
        assert_eq!(replay_limits(&[group0.clone(), group1.clone()]), vec![0, 0]);
        group1.base_zxid = 20;
        assert_eq!(replay_limits(&[group0, group1]), vec![1, 0]);
    }

    #[test]
    fn replay_limits_follow_chains_across_groups() {
        // Group 1 waits for a zxid group 2's log does not commit; group 0 then waits for group 1.
        let group0 = replay_log(&[(10, &[]), (40, &[(1, 30)])]);
        let group1 = replay_log(&[(20, &[]), (30, &[(2, 50)])]);
        let group2 = replay_log(&[(45, &[])]);
        assert_eq!(replay_limits(&[group0, group1, group2]), vec![1, 1, 1]);
    }

    #[test]
    fn a_replay_log_reads_zxids_and_dependencies_from_the_entries() {
        let entry = |index, data| Entry { term: 1, index, data };
        let command = Command::SetData(SetDataOp { path: "/a".into(), data: None, version: -1, auth: Vec::new() });
        let log_entry = LogEntry { shard: 0, zxid: 77, time_ms: 1, command };
        let entries = vec![
            entry(1, Vec::new()),
            entry(2, encode_fence(60)),
            entry(3, encode_proposal_after(1, 5, &log_entry, &[(2, 44)])),
        ];
        let log = ReplayLog::of(&entries).unwrap();
        assert_eq!(log, ReplayLog { base_zxid: 0, zxids: vec![0, 60, 77], dependencies: vec![(2, 2, 44)] });
        assert!(ReplayLog::of(&[entry(1, vec![1, 2, 3])]).is_err(), "a damaged entry is an error, not a panic");
    }
}
