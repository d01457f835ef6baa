//! The Raft consensus core, sans IO, in the style of etcd-io/raft: `tick`, `step`, `propose`,
//! `read_index` and `transfer_leadership` change the state; `ready` hands the runtime what must
//! happen next (what to persist, messages to send before and after persisting, committed
//! entries to apply, ReadIndex results), and `advance` tells the core what was persisted. No
//! clock, socket, file or hidden randomness: time is `tick`, election jitter comes from the
//! seed in `Config`, so the same inputs give the same outputs.
//!
//! Implemented: leader election with randomized timeouts, pre-vote and check-quorum (a leader
//! that has not heard from a majority within an election timeout steps down; a follower that
//! hears from its leader ignores votes for that long: the leader lease); log replication
//! batched per `ready` (one append per follower) and pipelined (several appends in flight per
//! follower, bounded by count and bytes, fast back-off on rejection); the leader writes its
//! own log in parallel with replication and its copy counts for commit only once persisted;
//! commit only of entries of the leader's term by counting (5.4.2); ReadIndex; leadership
//! transfer. Membership is static; there is no snapshot or compaction yet.

mod log;
pub mod message;
mod progress;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub use message::{Body, Entry, HardState, Index, Message, NodeId, Term};
use progress::Progress;

pub use self::log::RaftLog;

#[derive(Clone, Debug)]
pub struct Config {
    pub id: NodeId,
    /// Every voter, this node included.
    pub voters: Vec<NodeId>,
    /// Ticks without hearing from a leader before campaigning: a random count in
    /// [election_ticks, 2 * election_ticks), drawn from `seed` after every reset.
    pub election_ticks: u32,
    /// Ticks between a leader's heartbeats; less than election_ticks.
    pub heartbeat_ticks: u32,
    /// Appends in flight to one follower.
    pub max_inflight_msgs: usize,
    /// Payload bytes in flight to one follower (an append may overshoot by one message).
    pub max_inflight_bytes: usize,
    /// Payload bytes in one append (at least one entry per append).
    pub max_append_bytes: usize,
    pub pre_vote: bool,
    pub check_quorum: bool,
    /// Where this node's election timeouts fall (leader placement).
    pub election_priority: ElectionPriority,
    /// Seeds the election jitter.
    pub seed: u64,
}

impl Config {
    pub fn new(id: NodeId, voters: Vec<NodeId>, seed: u64) -> Config {
        Config {
            id,
            voters,
            election_ticks: 10,
            heartbeat_ticks: 1,
            max_inflight_msgs: 64,
            max_inflight_bytes: 16 << 20,
            max_append_bytes: 1 << 20,
            pre_vote: true,
            check_quorum: true,
            election_priority: ElectionPriority::Neutral,
            seed,
        }
    }

    fn validate(&self) {
        assert!(self.voters.contains(&self.id), "node {} is not among the voters {:?}", self.id, self.voters);
        let unique: BTreeSet<_> = self.voters.iter().collect();
        assert_eq!(unique.len(), self.voters.len(), "duplicate voters {:?}", self.voters);
        assert!(self.heartbeat_ticks >= 1 && self.heartbeat_ticks < self.election_ticks, "heartbeat < election ticks");
        assert!(self.max_inflight_msgs >= 1, "at least one append in flight");
    }
}

/// Where a node draws its randomized election timeout in [election_ticks, 2 * election_ticks).
/// A group's preferred leader draws from the first quarter and every other voter from the
/// rest (and waits longer still for its first election after start), so with every node up
/// the preferred one times out, and campaigns, first. Safety does not depend on it: only who
/// tends to win an election does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElectionPriority {
    /// The whole range (no placement).
    Neutral,
    /// The first quarter.
    Preferred,
    /// The rest, after every timeout of the preferred node.
    Deferring,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// Expected refusals (programmer errors panic instead).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RaftError {
    /// Only the leader takes proposals and reads; this is who it is, if known.
    NotLeader { leader: Option<NodeId> },
    /// Leadership is being handed over: proposals wait for the new leader.
    Transferring,
}

/// A ReadIndex result: once the local state machine has applied `index`, a read there
/// reflects every write committed before `read_index` was called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    pub index: Index,
    pub context: u64,
}

/// What the runtime must do, in this order: (1) cut its durable log from `truncate_from`, then
/// write `entries` and `hard_state` durably, while sending `messages` (the leader's appends
/// may go before its own copy is durable); (2) only then send `messages_after_persist` (votes
/// and acknowledgements MUST NOT precede the state they promise); (3) apply `committed` in
/// order and serve `read_states` once applied through their index; (4) call `advance`.
/// Committed entries at or below `RaftLog::persisted` as it was before this Ready (durable
/// here already, and on a majority) may be applied at once, while (1) is under way.
#[derive(Debug, Default)]
pub struct Ready {
    pub hard_state: Option<HardState>,
    pub truncate_from: Option<Index>,
    pub entries: Vec<Entry>,
    pub messages: Vec<Message>,
    pub messages_after_persist: Vec<Message>,
    pub committed: Vec<Entry>,
    pub read_states: Vec<ReadState>,
}

struct PendingRead {
    context: u64,
    index: Index,
    acks: BTreeSet<NodeId>,
}

pub struct Raft {
    config: Config,
    role: Role,
    term: Term,
    vote: Option<NodeId>,
    leader: Option<NodeId>,
    log: RaftLog,
    /// Leader: one per other voter.
    progress: BTreeMap<NodeId, Progress>,
    /// (Pre)candidate: who answered and how.
    votes: BTreeMap<NodeId, bool>,
    election_elapsed: u32,
    heartbeat_elapsed: u32,
    randomized_election_ticks: u32,
    /// Follower: the runtime lost its link with the leader (`leader_link_lost`) and nothing
    /// was heard from it since: this node no longer upholds the leader's lease, and campaigns
    /// once `election_elapsed` reaches this count, before its randomized timeout.
    early_campaign_at: Option<u32>,
    /// The election timer has been set since start (the first setting is special for a
    /// `Deferring` node: see `reset_election_timer`).
    timer_started: bool,
    rng: u64,
    /// Leader: the voter leadership is being handed to.
    transferee: Option<NodeId>,
    /// Leader: reads waiting for a heartbeat quorum, oldest first.
    pending_reads: VecDeque<PendingRead>,
    /// Leader: reads waiting for the first commit of this term (the commit index is not
    /// known to be current before it).
    reads_before_term_commit: Vec<u64>,
    ready_reads: Vec<ReadState>,
    messages: Vec<Message>,
    messages_after_persist: Vec<Message>,
    last_hard_state: HardState,
    /// New entries were proposed since the last broadcast.
    broadcast_pending: bool,
    ready_outstanding: Option<(Index, Term)>,
    /// Leader: voters that need entries compacted away.
    needs_snapshot: BTreeSet<NodeId>,
}

impl Raft {
    /// A node starting from what it persisted: its hard state and its log.
    pub fn new(config: Config, hard_state: HardState, entries: Vec<Entry>) -> Raft {
        Raft::after_snapshot(config, hard_state, (0, 0), entries)
    }

    /// A node starting from a snapshot of its log through `base` (index, term), and what it
    /// persisted after it: its hard state and the entries after `base`.
    pub fn after_snapshot(config: Config, hard_state: HardState, base: (Index, Term), entries: Vec<Entry>) -> Raft {
        config.validate();
        let log = RaftLog::restored_after(base.0, base.1, entries, hard_state.commit);
        let mut raft = Raft {
            rng: config.seed ^ config.id.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            config,
            role: Role::Follower,
            term: hard_state.term,
            vote: hard_state.vote,
            leader: None,
            log,
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_ticks: 0,
            early_campaign_at: None,
            timer_started: false,
            transferee: None,
            pending_reads: VecDeque::new(),
            reads_before_term_commit: Vec::new(),
            ready_reads: Vec::new(),
            messages: Vec::new(),
            messages_after_persist: Vec::new(),
            last_hard_state: hard_state,
            broadcast_pending: false,
            ready_outstanding: None,
            needs_snapshot: BTreeSet::new(),
        };
        raft.reset_election_timer();
        raft
    }

    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// The runtime applied its log through `index` itself while recovering (at most the
    /// restored commit index): committed entries are handed out from after it.
    pub fn restore_applied(&mut self, index: Index) {
        assert_eq!(self.log.applied, self.log.first_index() - 1, "restore_applied before anything was handed out");
        assert!(index <= self.log.committed, "applied {index} past the commit index {}", self.log.committed);
        self.log.applied = index;
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn term(&self) -> Term {
        self.term
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    pub fn log(&self) -> &RaftLog {
        &self.log
    }

    pub fn commit_index(&self) -> Index {
        self.log.committed
    }

    pub fn hard_state(&self) -> HardState {
        HardState { term: self.term, vote: self.vote, commit: self.log.committed }
    }

    fn quorum(&self) -> usize {
        self.config.voters.len() / 2 + 1
    }

    fn others(&self) -> impl Iterator<Item = NodeId> + '_ {
        let id = self.config.id;
        self.config.voters.iter().copied().filter(move |&v| v != id)
    }

    fn next_random(&mut self) -> u64 {
        // splitmix64: tiny, and seeded by the caller.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        self.early_campaign_at = None;
        let ticks = self.config.election_ticks;
        let quarter = (ticks / 4).max(1);
        let boot = !std::mem::replace(&mut self.timer_started, true);
        let (first, spread) = match self.config.election_priority {
            ElectionPriority::Neutral => (ticks, ticks),
            ElectionPriority::Preferred => (ticks, quarter),
            // Nodes of a cluster start some hundred ms apart: a deferring node's first
            // timeout after start waits two more election timeouts, so a preferred node that
            // started later still campaigns first (and one that is down costs only the boot).
            ElectionPriority::Deferring if boot => (3 * ticks, ticks),
            ElectionPriority::Deferring => (ticks + quarter, ticks - quarter),
        };
        self.randomized_election_ticks = first + (self.next_random() % u64::from(spread.max(1))) as u32;
    }

    fn send(&mut self, to: NodeId, body: Body) {
        let message = Message { from: self.config.id, to, term: self.term, body };
        self.push_message(message);
    }

    fn push_message(&mut self, message: Message) {
        if message.body.may_precede_persistence() {
            self.messages.push(message);
        } else {
            self.messages_after_persist.push(message);
        }
    }

    // ----- time -----

    /// One unit of time passed.
    pub fn tick(&mut self) {
        self.election_elapsed += 1;
        if self.role != Role::Leader {
            let early = self.early_campaign_at.is_some_and(|at| self.election_elapsed >= at);
            if early || self.election_elapsed >= self.randomized_election_ticks {
                self.start_election();
            }
            return;
        }
        self.heartbeat_elapsed += 1;
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
        if self.election_elapsed >= self.config.election_ticks {
            self.election_elapsed = 0;
            // A transfer that has not finished within an election timeout is abandoned.
            self.transferee = None;
            if self.config.check_quorum && !self.quorum_active() {
                self.become_follower(self.term, None);
            }
        }
    }

    /// Whether a majority (this node included) was heard from since the last check; clears
    /// the marks for the next one.
    fn quorum_active(&mut self) -> bool {
        let mut active = 1;
        for progress in self.progress.values_mut() {
            if progress.recent_active {
                active += 1;
            }
            progress.recent_active = false;
        }
        active >= self.quorum()
    }

    // ----- roles -----

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        assert!(term >= self.term, "term goes back from {} to {term}", self.term);
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.progress.clear();
        self.votes.clear();
        self.transferee = None;
        // Reads the deposed leader had not confirmed are dropped: the runtime retries them
        // with the new leader (it never answers them from this node).
        self.pending_reads.clear();
        self.reads_before_term_commit.clear();
        self.reset_election_timer();
    }

    /// Starts an election after a timeout: a pre-vote first if configured.
    fn start_election(&mut self) {
        if self.config.pre_vote {
            self.campaign(Role::PreCandidate, false);
        } else {
            self.campaign(Role::Candidate, false);
        }
    }

    /// Campaigns now (an operator's or a test's nudge; a transfer uses TimeoutNow).
    pub fn campaign_now(&mut self) {
        if self.role != Role::Leader {
            self.start_election();
        }
    }

    /// The runtime's link with `peer` broke (its connection ended: the process died, or the
    /// link is cut). If `peer` is the leader this follower follows, it stops upholding the
    /// leader's lease and pre-votes after a short delay instead of a whole election timeout of
    /// silence, as a ZooKeeper follower goes looking when its leader's socket closes. The delay
    /// is staggered by rank among the other voters (1, 3, 5, ... ticks), so the survivors do
    /// not split the vote. Hearing from the leader again (`follow`) calls it off. Safe whatever
    /// the cause: the pre-vote wins only if a majority has also stopped hearing from the
    /// leader, and without pre-vote nothing changes (a campaign would depose a live leader).
    pub fn leader_link_lost(&mut self, peer: NodeId) {
        if !self.config.pre_vote || self.role != Role::Follower || self.leader != Some(peer) {
            return;
        }
        let mut survivors: Vec<NodeId> = self.config.voters.iter().copied().filter(|&v| v != peer).collect();
        survivors.sort_unstable();
        let rank = survivors.iter().position(|&v| v == self.config.id).expect("a follower is a voter") as u32;
        let at = self.election_elapsed + 1 + 2 * rank;
        self.early_campaign_at = Some(self.early_campaign_at.map_or(at, |earlier| earlier.min(at)));
    }

    fn campaign(&mut self, role: Role, transfer: bool) {
        assert!(matches!(role, Role::PreCandidate | Role::Candidate));
        self.role = role;
        self.leader = None;
        self.votes.clear();
        self.progress.clear();
        self.reset_election_timer();
        let term = if role == Role::Candidate {
            self.term += 1;
            self.vote = Some(self.config.id);
            self.term
        } else {
            self.term + 1
        };
        self.votes.insert(self.config.id, true);
        if self.votes_won() {
            return self.won_votes();
        }
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        let peers: Vec<NodeId> = self.others().collect();
        for to in peers {
            let body = match role {
                Role::PreCandidate => Body::PreVote { last_index, last_term },
                _ => Body::Vote { last_index, last_term, transfer },
            };
            // A vote request goes after the candidate's own vote is durable.
            self.messages_after_persist.push(Message { from: self.config.id, to, term, body });
        }
    }

    fn votes_won(&self) -> bool {
        self.votes.values().filter(|&&granted| granted).count() >= self.quorum()
    }

    fn votes_lost(&self) -> bool {
        self.votes.values().filter(|&&granted| !granted).count() >= self.quorum()
    }

    fn won_votes(&mut self) {
        match self.role {
            Role::PreCandidate => self.campaign(Role::Candidate, false),
            Role::Candidate => self.become_leader(),
            role => panic!("won votes as {role:?}"),
        }
    }

    fn become_leader(&mut self) {
        assert_eq!(self.role, Role::Candidate, "only a candidate becomes leader");
        self.role = Role::Leader;
        self.leader = Some(self.config.id);
        self.votes.clear();
        self.heartbeat_elapsed = 0;
        self.election_elapsed = 0;
        let next = self.log.last_index() + 1;
        self.progress = self.others().map(|id| (id, Progress::new(next))).collect();
        // The no-op of the new term: committing it commits everything before it (5.4.2) and
        // tells the leader its commit index is current (ReadIndex needs that).
        self.log.push(self.term, Vec::new());
        self.broadcast_pending = true;
        self.maybe_commit();
    }

    // ----- client requests -----

    /// Appends `data` to the log (leader only); returns its index. Batched: the appends go out
    /// at the next `ready`.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<Index, RaftError> {
        assert!(!data.is_empty(), "empty data is the leader's no-op");
        if self.role != Role::Leader {
            return Err(RaftError::NotLeader { leader: self.leader });
        }
        if self.transferee.is_some() {
            return Err(RaftError::Transferring);
        }
        let index = self.log.push(self.term, data);
        self.broadcast_pending = true;
        Ok(index)
    }

    /// Asks for a ReadIndex (leader only): a `ReadState` with this `context` (unique among
    /// pending requests, not 0) comes out of `ready` once a majority confirmed this node was
    /// still the leader after the call.
    pub fn read_index(&mut self, context: u64) -> Result<(), RaftError> {
        self.request_read(context, true)
    }

    /// `read_index` for a read that can wait a heartbeat interval (a lease probe): its round
    /// rides on the next regular heartbeat instead of a broadcast of its own, so it costs no
    /// message. Equally safe: that heartbeat is sent after the call, and only acks carrying
    /// this read's context (or a later one's) confirm it.
    pub fn read_index_at_next_heartbeat(&mut self, context: u64) -> Result<(), RaftError> {
        self.request_read(context, false)
    }

    /// A read of either kind: held until the first commit of the term (then started with a
    /// broadcast), else registered, with a heartbeat broadcast of its own if `broadcast`.
    fn request_read(&mut self, context: u64, broadcast: bool) -> Result<(), RaftError> {
        assert_ne!(context, 0, "read context 0 means none");
        if self.role != Role::Leader {
            return Err(RaftError::NotLeader { leader: self.leader });
        }
        if self.log.term(self.log.committed) != Some(self.term) {
            self.reads_before_term_commit.push(context);
            return Ok(());
        }
        if self.register_read(context) && broadcast {
            self.broadcast_heartbeat();
        }
        Ok(())
    }

    fn start_read(&mut self, context: u64) {
        if self.register_read(context) {
            self.broadcast_heartbeat();
        }
    }

    /// Records a read at the commit index; returns whether it waits for a heartbeat quorum
    /// (with one voter it is confirmed at once).
    fn register_read(&mut self, context: u64) -> bool {
        let index = self.log.committed;
        if self.quorum() == 1 {
            self.ready_reads.push(ReadState { index, context });
            return false;
        }
        self.pending_reads.push_back(PendingRead { context, index, acks: BTreeSet::from([self.config.id]) });
        true
    }

    /// Forgets applied entries through `index` (their durable copy is the runtime's). A follower
    /// that later needs them cannot be sent them (`needs_snapshot`).
    pub fn compact(&mut self, index: Index) {
        self.log.compact(index);
    }

    /// The runtime installed a snapshot of the leader's log through `index` (of `term`) and
    /// made it durable: the log restarts after it (an older one is ignored: false). The leader
    /// hears that this node matches through `index` and goes on from there.
    pub fn install_snapshot(&mut self, index: Index, term: Term) -> bool {
        if !self.wants_snapshot(index, term) {
            return false;
        }
        self.log.reset_after(index, term);
        if let Some(leader) = self.leader.filter(|_| self.role == Role::Follower) {
            self.send(leader, Body::AppendResponse { success: true, index, last_index: index });
        }
        true
    }

    /// Whether a leader's snapshot after `index` (of `term`) would change anything: not when
    /// everything through it is committed here, nor when the log holds its last entry already
    /// (the Raft paper's rule: the entries after it are kept, and the log brings the state up
    /// to it). Throwing those entries away could drop ones this node had acknowledged, and the
    /// leader counted toward a commit.
    pub fn wants_snapshot(&self, index: Index, term: Term) -> bool {
        index > self.log.committed && self.log.term(index) != Some(term)
    }

    /// Leader: the voters that need entries this node compacted away (they need a snapshot).
    pub fn needs_snapshot(&self) -> Vec<NodeId> {
        self.needs_snapshot.iter().copied().collect()
    }

    /// Leader: the voters not known to hold every entry before this node's first one (one that
    /// was just elected knows of none yet): they need a snapshot, or must first answer an append.
    pub fn behind_the_log(&self) -> Vec<NodeId> {
        if self.role != Role::Leader {
            return Vec::new();
        }
        let first = self.log.first_index();
        self.others().filter(|id| self.progress[id].match_index + 1 < first).collect()
    }

    /// Leader: whether voter `id` has every entry of the log and was heard from since the last
    /// quorum check (a transfer to it would complete at once).
    pub fn is_caught_up(&self, id: NodeId) -> bool {
        self.role == Role::Leader
            && self.progress.get(&id).is_some_and(|p| p.recent_active && p.match_index == self.log.last_index())
    }

    /// Leader: how many entries the furthest-behind other voter lacks (0 otherwise).
    pub fn follower_lag(&self) -> Index {
        if self.role != Role::Leader {
            return 0;
        }
        let last = self.log.last_index();
        self.progress.values().map(|p| last.saturating_sub(p.match_index)).max().unwrap_or(0)
    }

    /// Highest index handed out to be applied.
    pub fn applied_index(&self) -> Index {
        self.log.applied
    }

    /// Leader: a leadership transfer is under way (proposals wait for the new leader).
    pub fn transferring(&self) -> bool {
        self.transferee.is_some()
    }

    /// Leader: the other voter whose log matches furthest, preferring those heard from since
    /// the last quorum check: the natural one to hand leadership to.
    pub fn best_transferee(&self) -> Option<NodeId> {
        let best = |active_only: bool| {
            self.progress
                .iter()
                .filter(|(_, p)| p.recent_active || !active_only)
                .max_by_key(|(id, p)| (p.match_index, std::cmp::Reverse(**id)))
                .map(|(id, _)| *id)
        };
        best(true).or_else(|| best(false))
    }

    /// Hands leadership to `to` (leader only): proposals are refused meanwhile; `to` is brought
    /// up to date and told to campaign at once. Abandoned after an election timeout.
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<(), RaftError> {
        if self.role != Role::Leader {
            return Err(RaftError::NotLeader { leader: self.leader });
        }
        assert!(self.progress.contains_key(&to), "transfer to {to}, which is not another voter");
        self.transferee = Some(to);
        self.election_elapsed = 0;
        if self.progress[&to].match_index == self.log.last_index() {
            self.send(to, Body::TimeoutNow);
        } else {
            self.send_append(to, true);
        }
        Ok(())
    }

    // ----- messages -----

    /// Handles a message from a peer.
    pub fn step(&mut self, m: Message) {
        assert_eq!(m.to, self.config.id, "message for {} given to {}", m.to, self.config.id);
        if !self.config.voters.contains(&m.from) {
            return;
        }
        if m.term > self.term && !self.step_higher_term(&m) {
            return;
        }
        if m.term < self.term {
            return self.step_lower_term(m);
        }
        match m.body {
            Body::PreVote { last_index, last_term } => self.on_pre_vote(m.from, m.term, last_index, last_term),
            Body::Vote { last_index, last_term, .. } => self.on_vote(m.from, last_index, last_term),
            // A grant counts only for the pre-vote of this round (at our term + 1).
            Body::PreVoteResponse { granted }
                if self.role == Role::PreCandidate && (!granted || m.term == self.term + 1) =>
            {
                self.on_vote_response(m.from, granted)
            }
            Body::VoteResponse { granted } if self.role == Role::Candidate => self.on_vote_response(m.from, granted),
            Body::PreVoteResponse { .. } | Body::VoteResponse { .. } => {}
            Body::Append { prev_index, prev_term, entries, commit } => {
                self.follow(m.from);
                self.on_append(m.from, prev_index, prev_term, entries, commit);
            }
            Body::Heartbeat { commit, read_context } => {
                self.follow(m.from);
                self.on_heartbeat(m.from, commit, read_context);
            }
            Body::TimeoutNow => {
                if self.role != Role::Leader {
                    self.campaign(Role::Candidate, true);
                }
            }
            Body::AppendResponse { success, index, last_index } if self.role == Role::Leader => {
                self.on_append_response(m.from, success, index, last_index)
            }
            Body::HeartbeatResponse { read_context, lost_log } if self.role == Role::Leader => {
                self.on_heartbeat_response(m.from, read_context, lost_log)
            }
            Body::AppendResponse { .. } | Body::HeartbeatResponse { .. } => {}
        }
    }

    /// A message from a higher term: whether to go on handling it (after adopting the term
    /// where Raft says so).
    fn step_higher_term(&mut self, m: &Message) -> bool {
        let in_lease = self.config.check_quorum
            && self.leader.is_some()
            && self.early_campaign_at.is_none()
            && self.election_elapsed < self.config.election_ticks;
        match &m.body {
            // A pre-vote changes nobody's term. Within the lease of a leader it hears from, a
            // node does not help anyone unseat it (the disruptive-server fix, thesis 9.6).
            Body::PreVote { .. } => !in_lease,
            Body::Vote { transfer, .. } if in_lease && !transfer => false,
            // Our own pre-vote granted at the term we would campaign in.
            Body::PreVoteResponse { granted: true } => true,
            _ => {
                let leader = matches!(m.body, Body::Append { .. } | Body::Heartbeat { .. }).then_some(m.from);
                self.become_follower(m.term, leader);
                true
            }
        }
    }

    fn step_lower_term(&mut self, m: Message) {
        match m.body {
            // A stale leader (cut off, then back) learns the new term from the answer and
            // steps down; without it, pre-vote and check-quorum could leave it stuck.
            Body::Append { .. } | Body::Heartbeat { .. } => {
                self.send(m.from, Body::AppendResponse { success: false, index: 0, last_index: self.log.last_index() })
            }
            Body::PreVote { .. } => self.send(m.from, Body::PreVoteResponse { granted: false }),
            _ => {}
        }
    }

    /// A message from the leader of this term.
    fn follow(&mut self, leader: NodeId) {
        if self.role != Role::Follower {
            assert_ne!(self.role, Role::Leader, "two leaders in term {}", self.term);
            self.become_follower(self.term, Some(leader));
        }
        self.leader = Some(leader);
        self.election_elapsed = 0;
        self.early_campaign_at = None;
    }

    fn on_pre_vote(&mut self, from: NodeId, term: Term, last_index: Index, last_term: Term) {
        // As a vote would be (etcd's rule), or for any future term; never against our log.
        let may_vote = term > self.term || self.vote == Some(from) || (self.vote.is_none() && self.leader.is_none());
        let granted = may_vote && self.log.is_up_to_date(last_index, last_term);
        let answer_term = if granted { term } else { self.term };
        let message =
            Message { from: self.config.id, to: from, term: answer_term, body: Body::PreVoteResponse { granted } };
        self.push_message(message);
    }

    fn on_vote(&mut self, from: NodeId, last_index: Index, last_term: Term) {
        let may_vote = self.vote == Some(from) || (self.vote.is_none() && self.leader.is_none());
        let granted = may_vote && self.log.is_up_to_date(last_index, last_term);
        if granted {
            self.vote = Some(from);
            self.election_elapsed = 0;
        }
        self.send(from, Body::VoteResponse { granted });
    }

    fn on_vote_response(&mut self, from: NodeId, granted: bool) {
        self.votes.entry(from).or_insert(granted);
        if self.votes_won() {
            self.won_votes();
        } else if self.votes_lost() {
            self.become_follower(self.term, None);
        }
    }

    fn on_append(&mut self, from: NodeId, prev_index: Index, prev_term: Term, entries: Vec<Entry>, commit: Index) {
        let last_index = self.log.last_index();
        if prev_index < self.log.committed {
            // Everything through our commit index matches the leader's log already.
            let body = Body::AppendResponse { success: true, index: self.log.committed, last_index };
            return self.send(from, body);
        }
        if self.log.term(prev_index) != Some(prev_term) {
            return self.send(from, Body::AppendResponse { success: false, index: prev_index, last_index });
        }
        let last_new = self.log.append_after(prev_index, entries);
        self.log.commit_to(commit.min(last_new));
        // Sent after this ready's entries are durable (messages_after_persist).
        let last_index = self.log.last_index();
        self.send(from, Body::AppendResponse { success: true, index: last_new, last_index });
    }

    fn on_heartbeat(&mut self, from: NodeId, commit: Index, read_context: u64) {
        // The leader sends at most what it knows we match, so this never commits an entry of
        // ours that differs from its log.
        let last_index = self.log.last_index();
        self.log.commit_to(commit.min(last_index));
        let lost_log = (commit > last_index).then_some(last_index);
        self.send(from, Body::HeartbeatResponse { read_context, lost_log });
    }

    fn on_append_response(&mut self, from: NodeId, success: bool, index: Index, last_index: Index) {
        let Some(progress) = self.progress.get_mut(&from) else { return };
        progress.recent_active = true;
        if !success {
            if progress.rejected(index, last_index) {
                self.send_append(from, true);
            }
            return;
        }
        let moved = progress.matched(index);
        let caught_up = progress.match_index == self.log.last_index();
        if self.log.term(progress.next_index - 1).is_some() {
            // It matches past what was compacted away (it installed a snapshot): it needs none,
            // even when nothing is left to send it, which alone would never clear the mark.
            self.needs_snapshot.remove(&from);
        }
        if moved && self.maybe_commit() {
            // The new commit index rides on the next `ready`'s appends, with the entries
            // proposed meanwhile: one append per follower per turn, not one for the commit and
            // another for the entries.
            self.broadcast_pending = true;
        } else {
            self.send_append(from, false);
        }
        if caught_up && self.transferee == Some(from) {
            self.send(from, Body::TimeoutNow);
        }
    }

    fn on_heartbeat_response(&mut self, from: NodeId, read_context: u64, lost_log: Option<Index>) {
        let Some(progress) = self.progress.get_mut(&from) else { return };
        progress.recent_active = true;
        if let Some(last_index) = lost_log.filter(|&last| last < progress.match_index) {
            // A data dir wiped to rejoin. On an idle group no new append would ever meet its
            // rejection: probe it from its end now. (A late duplicate costs one probe.)
            progress.lost_log(last_index);
        }
        progress.resume(self.config.max_inflight_msgs, self.config.max_inflight_bytes);
        if progress.match_index < self.log.last_index() {
            // Empty if everything was sent already (as etcd does): appends lost on the way
            // are then found by the follower's rejection, even while no new entry comes.
            self.send_append(from, true);
        }
        if read_context != 0 {
            self.ack_read(from, read_context);
        }
    }

    /// A heartbeat answer carrying `context` confirms every read up to and including that one.
    fn ack_read(&mut self, from: NodeId, context: u64) {
        let Some(position) = self.pending_reads.iter().position(|r| r.context == context) else { return };
        self.pending_reads[position].acks.insert(from);
        if self.pending_reads[position].acks.len() < self.quorum() {
            return;
        }
        for read in self.pending_reads.drain(..=position) {
            self.ready_reads.push(ReadState { index: read.index, context: read.context });
        }
    }

    // ----- replication -----

    fn broadcast_append(&mut self) {
        let peers: Vec<NodeId> = self.others().collect();
        for to in peers {
            self.send_append(to, true);
        }
    }

    fn broadcast_heartbeat(&mut self) {
        let read_context = self.pending_reads.back().map_or(0, |r| r.context);
        let peers: Vec<NodeId> = self.others().collect();
        for to in peers {
            let commit = self.progress[&to].match_index.min(self.log.committed);
            self.send(to, Body::Heartbeat { commit, read_context });
        }
    }

    /// Sends `to` the entries it lacks, in as many appends as flow control allows (one while
    /// probing); an empty append (to carry the commit index, or probe) only if `allow_empty`.
    fn send_append(&mut self, to: NodeId, allow_empty: bool) {
        let mut allow_empty = allow_empty;
        while self.send_one_append(to, allow_empty) {
            allow_empty = false;
        }
    }

    /// One append to `to`; returns whether another may follow right away.
    fn send_one_append(&mut self, to: NodeId, allow_empty: bool) -> bool {
        let (max_msgs, max_bytes, append_bytes) =
            (self.config.max_inflight_msgs, self.config.max_inflight_bytes, self.config.max_append_bytes);
        let last_index = self.log.last_index();
        let progress = self.progress.get_mut(&to).expect("progress of every other voter");
        if !progress.may_send(max_msgs, max_bytes) {
            return false;
        }
        let next = progress.next_index;
        if next > last_index && !allow_empty {
            return false;
        }
        let prev_index = next - 1;
        let Some(prev_term) = self.log.term(prev_index) else {
            // The follower needs entries compacted away here: only a snapshot would catch it up.
            self.needs_snapshot.insert(to);
            return false;
        };
        self.needs_snapshot.remove(&to);
        let mut entries = Vec::new();
        let mut bytes = 0;
        for entry in self.log.slice(next, last_index) {
            if !entries.is_empty() && bytes + entry.payload_bytes() > append_bytes {
                break;
            }
            bytes += entry.payload_bytes();
            entries.push(entry.clone());
        }
        let last_sent = prev_index + entries.len() as Index;
        progress.sent(last_sent, bytes);
        let more = progress.state == progress::State::Replicate && last_sent < last_index;
        let commit = self.log.committed;
        self.send(to, Body::Append { prev_index, prev_term, entries, commit });
        more
    }

    /// Advances the commit index to the highest entry of this term a majority has durably
    /// (the leader's own copy counts once persisted); returns whether it moved.
    fn maybe_commit(&mut self) -> bool {
        let mut matched: Vec<Index> = self.progress.values().map(|p| p.match_index).collect();
        matched.push(self.log.persisted);
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = matched[self.quorum() - 1];
        // Only entries of the current term commit by counting replicas (5.4.2, figure 8).
        if self.log.term(candidate) != Some(self.term) || !self.log.commit_to(candidate) {
            return false;
        }
        if !self.reads_before_term_commit.is_empty() {
            for context in std::mem::take(&mut self.reads_before_term_commit) {
                self.start_read(context);
            }
        }
        true
    }

    // ----- the runtime's side -----

    pub fn has_ready(&self) -> bool {
        self.hard_state() != self.last_hard_state
            || self.log.has_unpersisted()
            || self.log.has_committed_unapplied()
            || !self.messages.is_empty()
            || !self.messages_after_persist.is_empty()
            || !self.ready_reads.is_empty()
            || (self.broadcast_pending && self.role == Role::Leader)
    }

    /// Everything the runtime must do now (see `Ready`). One at a time: `advance` MUST be
    /// called before the next `ready`.
    pub fn ready(&mut self) -> Ready {
        assert!(self.ready_outstanding.is_none(), "ready() again before advance()");
        if self.broadcast_pending && self.role == Role::Leader {
            self.broadcast_append();
        }
        self.broadcast_pending = false;
        let hard_state = self.hard_state();
        let changed = (hard_state != self.last_hard_state).then_some(hard_state);
        self.last_hard_state = hard_state;
        let (truncate_from, entries) = self.log.take_unpersisted();
        let last = entries
            .last()
            .map_or((self.log.persisted, self.log.term(self.log.persisted).unwrap_or(0)), |e| (e.index, e.term));
        self.ready_outstanding = Some(last);
        Ready {
            hard_state: changed,
            truncate_from,
            entries,
            messages: std::mem::take(&mut self.messages),
            messages_after_persist: std::mem::take(&mut self.messages_after_persist),
            committed: self.log.take_committed(),
            read_states: std::mem::take(&mut self.ready_reads),
        }
    }

    /// The last `ready` was carried out: its entries and hard state are durable.
    pub fn advance(&mut self) {
        let (index, term) = self.ready_outstanding.take().expect("advance() without ready()");
        self.log.persisted_to(index, term);
        if self.role == Role::Leader && self.maybe_commit() {
            self.broadcast_pending = true;
        }
    }
}
