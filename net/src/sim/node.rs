//! One simulated node: the pure Raft core, the real shard state machine, a simulated disk, and
//! a runtime that follows `server/replica.rs` step for step (propose as leader or forward to the
//! leader, a sync as a ReadIndex round, Ready carried out in the order it demands, apply and
//! answer by origin and token), with the real entry and WAL record encodings. What it does not
//! have is IO: time is the simulation's clock, messages go to the simulated network.

use super::disk::Disk;
use crate::peer::PeerMessage;
use crate::raft_log::ready_records;
use crate::server::replica::{decode_proposal, encode_proposal, first_token, highest_zxid};
use ahash::AHashMap;
use engine::command::{Command, LogEntry, ShardId};
use engine::error::ZkError;
use engine::raft::{Config, ElectionPriority, HardState, Index, Message, NodeId, Raft, ReadState, Role, Term};
use engine::request::WriteResult;
use engine::shard::Shard;
use engine::types::Zxid;
use std::collections::{BTreeMap, VecDeque};

pub type ClientId = usize;

/// The one shard of the simulated group.
pub const SHARD: ShardId = 0;

/// As in `replica.rs`: waiting writes fail after this many ticks without a leader.
const LEADERLESS_TICKS_MAX: u32 = 40;

/// Where a request came from (`commit::WriteFrom`).
enum From {
    Local(ClientId),
    Peer { origin: NodeId, token: u64 },
}

/// A request waiting to be proposed or forwarded; no command: a sync.
struct Pending {
    from: From,
    command: Option<Command>,
}

/// The syncs of one turn, sharing one ReadIndex round (`replica.rs`'s `ReadBatch`).
#[derive(Default)]
struct ReadBatch {
    local: Vec<ClientId>,
    /// Leader: the rounds followers asked for, as (node, its token).
    remote: Vec<(NodeId, u64)>,
}

/// What a node tells its clients.
#[derive(Debug)]
pub enum Answer {
    Write {
        client: ClientId,
        result: Result<WriteResult, ZkError>,
    },
    /// The sync is done: everything committed before it is applied here.
    Synced {
        client: ClientId,
    },
    /// The outcome is unknown (the connection closes: ConnectionLoss).
    Abandoned {
        client: ClientId,
    },
}

/// An entry a node applied (or replayed at start-up), for the simulation's checks.
#[derive(Debug, Clone, Copy)]
pub struct AppliedEntry {
    pub index: Index,
    pub term: Term,
    pub data_hash: u64,
    /// The shard's digest after this entry (a replay knows it after its last entry only).
    pub digest: Option<u64>,
}

/// Where a crash stops a Ready.
#[derive(Debug, Clone, Copy)]
pub enum CrashAt {
    /// The messages that may precede persistence went out.
    AfterSend,
    /// The term and vote were stored too.
    AfterTermVote,
    /// The WAL write was in progress: `kept` of its bytes reached the disk.
    DuringWrite { kept_permille: u64 },
    /// The WAL write completed; nothing after it happened.
    AfterWrite,
}

pub struct Node {
    pub raft: Raft,
    pub shard: Shard,
    pub disk: Disk,
    /// The term and vote last stored.
    stored: (Term, Option<NodeId>),
    commit_written: Index,
    zxid_assigned: Zxid,
    next_token: u64,
    ticks: u32,
    pending: VecDeque<Pending>,
    /// Writes of this node's clients, proposed or forwarded, by token.
    waiting: BTreeMap<u64, ClientId>,
    /// ReadIndex rounds waiting for their index, by read context (leader) or token (follower).
    read_batches: BTreeMap<u64, ReadBatch>,
    ready_syncs: Vec<(Index, ClientId)>,
    seen_term: Term,
    leaderless_ticks: u32,
    /// Applied since the simulation last looked (`take_applied`).
    applied: Vec<AppliedEntry>,
}

pub fn data_hash(data: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = engine::tree::StableHasher::new();
    data.hash(&mut hasher);
    hasher.finish()
}

impl Node {
    /// Starts node `id` from what its disk holds, as `server::recover` and `start_replica` do:
    /// recover the log, apply what it records as committed, and start Raft after it.
    pub fn boot(
        id: NodeId,
        voters: Vec<NodeId>,
        seed: u64,
        priority: ElectionPriority,
        mut disk: Disk,
        now_us: i64,
    ) -> Node {
        let log = disk.recover();
        let mut shards = AHashMap::from_iter([(SHARD, Shard::new(SHARD, 1))]);
        crate::server::apply_committed(0, &log, &mut shards).unwrap_or_else(|e| panic!("node {id}: replay: {e}"));
        let shard = shards.remove(&SHARD).expect("the shard");
        let (term, vote) = disk.term_vote;
        let replayed = log.entries[..log.commit as usize].iter().map(|e| AppliedEntry {
            index: e.index,
            term: e.term,
            data_hash: data_hash(&e.data),
            digest: None,
        });
        let mut applied: Vec<AppliedEntry> = replayed.collect();
        if let Some(last) = applied.last_mut() {
            last.digest = Some(shard.digest());
        }
        let zxid_assigned = highest_zxid(&log.entries);
        let hard_state = HardState { term, vote, commit: log.commit };
        let commit = log.commit;
        let mut config = Config::new(id, voters, seed);
        config.election_priority = priority;
        let mut raft = Raft::new(config, hard_state, log.entries);
        raft.restore_applied(commit);
        Node {
            seen_term: raft.term(),
            raft,
            shard,
            disk,
            stored: (term, vote),
            commit_written: commit,
            zxid_assigned,
            next_token: first_token(now_us),
            ticks: 0,
            pending: VecDeque::new(),
            waiting: BTreeMap::new(),
            read_batches: BTreeMap::new(),
            ready_syncs: Vec::new(),
            leaderless_ticks: 0,
            applied,
        }
    }

    /// The entries applied (or replayed) since the last call.
    pub fn take_applied(&mut self) -> Vec<AppliedEntry> {
        std::mem::take(&mut self.applied)
    }

    pub fn tick(&mut self) {
        self.ticks += 1;
    }

    /// A client's write or (no command) sync.
    pub fn request(&mut self, client: ClientId, command: Option<Command>) {
        self.pending.push_back(Pending { from: From::Local(client), command });
    }

    /// Clients waiting for this node: their answers are lost when it crashes.
    pub fn clients(&self) -> Vec<ClientId> {
        let pending = self.pending.iter().filter_map(|p| match p.from {
            From::Local(client) => Some(client),
            From::Peer { .. } => None,
        });
        let syncs = self.read_batches.values().flat_map(|b| &b.local).chain(self.ready_syncs.iter().map(|(_, c)| c));
        pending.chain(self.waiting.values().copied()).chain(syncs.copied()).collect()
    }

    pub fn receive(&mut self, message: PeerMessage) {
        match message {
            PeerMessage::Raft(message) => self.raft.step(message),
            PeerMessage::Forward { origin, token, shard, command, .. } => {
                assert_eq!(shard, SHARD);
                self.pending.push_back(Pending { from: From::Peer { origin, token }, command });
            }
            PeerMessage::ReadIndex { token, index } => {
                if let Some(batch) = self.read_batches.remove(&token) {
                    self.ready_syncs.extend(batch.local.into_iter().map(|client| (index, client)));
                }
            }
            other => panic!("the simulation sends no {other:?}"),
        }
    }

    /// One turn of `Replica::turn`; false if there was nothing to do. With `crash`, the Ready
    /// stops there (the caller then restarts the node from its disk).
    pub fn turn(
        &mut self,
        now_us: i64,
        crash: Option<CrashAt>,
        out: &mut Vec<(NodeId, PeerMessage)>,
        answers: &mut Vec<Answer>,
    ) -> bool {
        let ticks = std::mem::take(&mut self.ticks);
        for _ in 0..ticks {
            self.raft.tick();
        }
        self.watch_leadership(ticks, answers);
        self.propose_waiting(now_us, out);
        self.answer_ready_syncs(answers);
        if !self.raft.has_ready() {
            return false;
        }
        let ready = self.raft.ready();
        send(out, ready.messages);
        if matches!(crash, Some(CrashAt::AfterSend)) {
            return true;
        }
        if let Some(HardState { term, vote, .. }) = ready.hard_state {
            self.stored = (term, vote);
            self.disk.term_vote = (term, vote);
        }
        if matches!(crash, Some(CrashAt::AfterTermVote)) {
            return true;
        }
        let records = self.records(&ready.entries, ready.truncate_from);
        if !records.is_empty() {
            let batch = self.disk.batch(&records);
            if let Some(CrashAt::DuringWrite { kept_permille }) = crash {
                let kept = batch.len() * kept_permille as usize / 1000;
                self.disk.interrupted(batch, kept);
                return true;
            }
            self.disk.write(batch, records.len());
        }
        if crash.is_some() {
            return true;
        }
        self.zxid_assigned = self.zxid_assigned.max(highest_zxid(&ready.entries));
        send(out, ready.messages_after_persist);
        for entry in &ready.committed {
            self.apply(entry.index, entry.term, &entry.data, answers);
        }
        self.on_read_states(ready.read_states, out);
        self.answer_ready_syncs(answers);
        self.raft.advance();
        true
    }

    /// The WAL records of a Ready, encoded (`raft_log::ready_records`, as `Replica::append`).
    fn records(&mut self, entries: &[engine::raft::Entry], truncate_from: Option<Index>) -> Vec<Vec<u8>> {
        let mut records = Vec::new();
        let commit = self.raft.commit_index();
        self.commit_written = ready_records(entries, truncate_from, commit, self.commit_written, |record| {
            let mut bytes = Vec::new();
            record.encode_into(&mut bytes);
            records.push(bytes);
        });
        records
    }

    fn watch_leadership(&mut self, ticks: u32, answers: &mut Vec<Answer>) {
        if self.raft.term() != self.seen_term {
            self.seen_term = self.raft.term();
            self.abandon_waiting(answers);
        }
        if self.raft.leader().is_some() {
            self.leaderless_ticks = 0;
            return;
        }
        self.leaderless_ticks += ticks;
        if self.leaderless_ticks >= LEADERLESS_TICKS_MAX {
            self.leaderless_ticks = 0;
            self.abandon_waiting(answers);
            let pending = std::mem::take(&mut self.pending);
            for p in pending {
                if let From::Local(client) = p.from {
                    answers.push(Answer::Abandoned { client });
                }
            }
        }
    }

    fn abandon_waiting(&mut self, answers: &mut Vec<Answer>) {
        let batches = std::mem::take(&mut self.read_batches).into_values().flat_map(|b| b.local);
        let syncs = batches.chain(self.ready_syncs.drain(..).map(|(_, c)| c));
        let writes = std::mem::take(&mut self.waiting).into_values();
        answers.extend(syncs.chain(writes).map(|client| Answer::Abandoned { client }));
    }

    fn propose_waiting(&mut self, now_us: i64, out: &mut Vec<(NodeId, PeerMessage)>) {
        if self.pending.is_empty() {
            return;
        }
        let me = self.raft.id();
        let forward_to = match (self.raft.role(), self.raft.leader()) {
            (Role::Leader, _) if self.raft.transferring() => return,
            (Role::Leader, _) => None,
            (_, Some(leader)) => Some(leader),
            (_, None) => return,
        };
        let mut reads = ReadBatch::default();
        while let Some(Pending { from, command }) = self.pending.pop_front() {
            match (command, from, forward_to) {
                (None, From::Local(client), _) => reads.local.push(client),
                (None, From::Peer { origin, token }, None) => reads.remote.push((origin, token)),
                // Asked of this node when it led: the asker learns of the new term.
                (None, From::Peer { .. }, Some(_)) => {}
                (Some(command), From::Local(client), Some(leader)) => {
                    let token = self.next_token();
                    self.waiting.insert(token, client);
                    out.push((
                        leader,
                        PeerMessage::Forward {
                            origin: me,
                            token,
                            shard: SHARD,
                            command: Some(command),
                            dependencies: Vec::new(),
                        },
                    ));
                }
                // Forwarded to this node when it led: the sender learns of the new term.
                (Some(_), From::Peer { .. }, Some(_)) => {}
                (Some(command), from, None) => {
                    let zxid = (self.zxid_assigned + 1).max(now_us);
                    self.zxid_assigned = zxid;
                    let entry = LogEntry { shard: SHARD, zxid, time_ms: now_us / 1000, command };
                    let data = match from {
                        From::Local(client) => {
                            let token = self.next_token();
                            self.waiting.insert(token, client);
                            encode_proposal(me, token, &entry)
                        }
                        From::Peer { origin, token } => encode_proposal(origin, token, &entry),
                    };
                    self.raft.propose(data).unwrap_or_else(|e| panic!("the leader refused a proposal: {e:?}"));
                }
            }
        }
        self.start_read_index(reads, forward_to, out);
    }

    /// One ReadIndex round for the turn's syncs (`Replica::start_read_index`).
    fn start_read_index(&mut self, reads: ReadBatch, leader: Option<NodeId>, out: &mut Vec<(NodeId, PeerMessage)>) {
        if reads.local.is_empty() && reads.remote.is_empty() {
            return;
        }
        let token = self.next_token();
        match leader {
            Some(leader) => {
                assert!(reads.remote.is_empty(), "a follower answers no read index");
                self.read_batches.insert(token, reads);
                let me = self.raft.id();
                let forward =
                    PeerMessage::Forward { origin: me, token, shard: SHARD, command: None, dependencies: Vec::new() };
                out.push((leader, forward));
            }
            None => {
                self.read_batches.insert(token, reads);
                self.raft.read_index(token).unwrap_or_else(|e| panic!("the leader refused a read index: {e:?}"));
            }
        }
    }

    fn on_read_states(&mut self, read_states: Vec<ReadState>, out: &mut Vec<(NodeId, PeerMessage)>) {
        for state in read_states {
            let Some(batch) = self.read_batches.remove(&state.context) else { continue };
            self.ready_syncs.extend(batch.local.into_iter().map(|client| (state.index, client)));
            for (origin, token) in batch.remote {
                out.push((origin, PeerMessage::ReadIndex { token, index: state.index }));
            }
        }
    }

    fn answer_ready_syncs(&mut self, answers: &mut Vec<Answer>) {
        let applied = self.raft.applied_index();
        self.ready_syncs.retain(|&(index, client)| {
            if index > applied {
                return true;
            }
            answers.push(Answer::Synced { client });
            false
        });
    }

    fn apply(&mut self, index: Index, term: Term, data: &[u8], answers: &mut Vec<Answer>) {
        if !data.is_empty() {
            let (origin, token, zxid, archive) =
                decode_proposal(data).unwrap_or_else(|e| panic!("committed entry {index}: {e}"));
            if !archive.is_empty() {
                let entry = LogEntry::from_bytes(archive).unwrap_or_else(|e| panic!("committed entry {index}: {e}"));
                assert_eq!(entry.zxid, zxid, "a proposal's header and archive agree on the zxid");
                let applied = self.shard.apply(&entry);
                if origin == self.raft.id() {
                    if let Some(client) = self.waiting.remove(&token) {
                        answers.push(Answer::Write { client, result: applied.result });
                    }
                }
            }
        }
        let digest = self.shard.digest();
        self.applied.push(AppliedEntry { index, term, data_hash: data_hash(data), digest: Some(digest) });
    }

    fn next_token(&mut self) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        token
    }
}

fn send(out: &mut Vec<(NodeId, PeerMessage)>, messages: Vec<Message>) {
    out.extend(messages.into_iter().map(|m| (m.to, PeerMessage::Raft(m))));
}
