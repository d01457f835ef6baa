//! One simulated node: several Raft groups, each the runtime's own `GroupDriver` (the code
//! `server/replica.rs` runs) over the real shard state machine and a simulated disk, with the
//! real entry and WAL record encodings. What it does not have is IO: time is the simulation's
//! clock, messages go to the simulated network, and `SimHost` carries out the driver's effects
//! as `replica.rs`'s `CoreHost` does on a core.

use super::disk::Disk;
use crate::peer::PeerMessage;
use crate::raft_log::Record;
use crate::server::driver::{
    self, replay_limits, DriverConfig, GroupDriver, GroupHost, Placement, ReplayLog, Write, WriteFrom,
};
use crate::server::proposal::{decode_proposal, first_token, highest_zxid};
use ahash::AHashMap;
use engine::command::{Command, LogEntry, ShardId};
use engine::error::ZkError;
use engine::raft::{Config, Entry, HardState, Index, NodeId, Raft, Term};
use engine::request::WriteResult;
use engine::shard::Shard;
use engine::types::{SessionId, Zxid};
use std::collections::{BTreeMap, BTreeSet};

pub type ClientId = usize;

/// A client request as a node holds it: the simulation's request id and the connection it came
/// on (`ShardRequest`'s conn: a connection with an abandoned request sends nothing more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimRequest {
    pub id: ClientId,
    pub conn: u64,
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

/// An entry a group applied (or replayed at start-up), for the simulation's checks.
#[derive(Debug, Clone, Copy)]
pub struct AppliedEntry {
    pub group: usize,
    pub index: Index,
    pub term: Term,
    pub data_hash: u64,
    /// The shard's digest after this entry (a replay knows it after its last entry only).
    pub digest: Option<u64>,
    /// The value a register write (setData of 4 bytes) set.
    pub written: Option<u32>,
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

/// How a node is set up.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    pub groups: usize,
    /// The preferred leader of every group (leader placement with hand-back), if any.
    pub preferred: Option<NodeId>,
    pub hand_back_ticks: u32,
    pub retained_entries: u64,
    pub compact_every: u64,
}

/// One group of a node: its driver, its one shard (shard g of group g) and its disk.
pub struct Group {
    pub driver: GroupDriver<SimRequest>,
    pub shard: Shard,
    pub disk: Disk,
    zxid_assigned: Zxid,
}

pub struct Node {
    pub groups: Vec<Group>,
    /// What each group has applied (its last applied zxid, fences included).
    applied_zxids: Vec<Zxid>,
    /// Frames lost on each link with a peer, either way (`GroupHost::link_losses`).
    losses: BTreeMap<NodeId, u64>,
    losses_total: u64,
    /// Applied since the simulation last looked (`take_applied`).
    applied: Vec<AppliedEntry>,
    /// SIGTERM: the node hands over the groups it leads.
    pub stopping: bool,
    /// Connections with an abandoned request (`Core::is_abandoned`).
    abandoned_conns: BTreeSet<u64>,
}

pub fn data_hash(data: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = engine::tree::StableHasher::new();
    data.hash(&mut hasher);
    hasher.finish()
}

impl Node {
    /// Starts node `id` from what its disks hold, as `server::recover` and `start_replica` do:
    /// recover each group's log, apply what it records as committed as far as one order across
    /// groups allows (`driver::replay_limits`; the driver holds the rest), and start Raft.
    pub fn boot(id: NodeId, voters: Vec<NodeId>, seed: u64, setup: Setup, disks: Vec<Disk>, now_us: i64) -> Node {
        assert_eq!(disks.len(), setup.groups);
        let mut disks = disks;
        let logs: Vec<_> = disks.iter_mut().map(Disk::recover).collect();
        let replay: Vec<ReplayLog> =
            logs.iter().map(|log| ReplayLog::of(&log.entries[..log.commit as usize]).expect("valid entries")).collect();
        let limits = replay_limits(&replay);
        let mut applied = Vec::new();
        let mut applied_zxids = Vec::new();
        let mut groups = Vec::new();
        for (g, (disk, log)) in disks.into_iter().zip(logs).enumerate() {
            let shard_id = ShardId::try_from(g).expect("few groups");
            let shard_count = u16::try_from(setup.groups).expect("few groups");
            let mut shards = AHashMap::from_iter([(shard_id, Shard::new(shard_id, shard_count))]);
            let committed = &log.entries[..log.commit as usize];
            let (replayed, held) = committed.split_at(limits[g]);
            crate::server::apply_committed(g, replayed, &mut shards)
                .unwrap_or_else(|e| panic!("node {id} group {g}: replay: {e}"));
            let shard = shards.remove(&shard_id).expect("the shard");
            let start = applied.len();
            applied.extend(replayed.iter().map(|e| AppliedEntry {
                group: g,
                index: e.index,
                term: e.term,
                data_hash: data_hash(&e.data),
                digest: None,
                written: register_write(&e.data),
            }));
            if applied.len() > start {
                applied.last_mut().expect("replayed").digest = Some(shard.digest());
            }
            applied_zxids.push(highest_zxid(replayed));
            let held = held.to_vec();
            let zxid_assigned = highest_zxid(&log.entries);
            let (term, vote) = disk.term_vote;
            let placement = Placement { preferred: setup.preferred, delay_ticks: setup.hand_back_ticks };
            let mut config = Config::new(id, voters.clone(), seed ^ (g as u64) << 40);
            config.election_priority = placement.election_priority(id);
            let commit = log.commit;
            let mut raft = Raft::new(config, HardState { term, vote, commit }, log.entries);
            raft.restore_applied(commit);
            let driver_config = DriverConfig {
                group: g,
                placement,
                retained_entries: setup.retained_entries,
                compact_every: setup.compact_every,
            };
            let driver = GroupDriver::new(raft, driver_config, first_token(now_us), held);
            groups.push(Group { driver, shard, disk, zxid_assigned });
        }
        Node {
            groups,
            applied_zxids,
            losses: BTreeMap::new(),
            losses_total: 0,
            applied,
            stopping: false,
            abandoned_conns: BTreeSet::new(),
        }
    }

    /// The entries applied (or replayed) since the last call.
    pub fn take_applied(&mut self) -> Vec<AppliedEntry> {
        std::mem::take(&mut self.applied)
    }

    pub fn tick(&mut self) {
        for group in &mut self.groups {
            group.driver.tick();
        }
    }

    /// A client's write or (no command) sync for `group`'s shard. A write depends on what this
    /// node applied in its other groups when it was sent (`conn/slots.rs`).
    pub fn request(&mut self, request: SimRequest, group: usize, command: Option<Command>) {
        let dependencies = match command {
            Some(_) => self
                .applied_zxids
                .iter()
                .enumerate()
                .filter(|&(g, &zxid)| g != group && zxid > 0)
                .map(|(g, &zxid)| (u16::try_from(g).expect("few groups"), zxid))
                .collect(),
            None => Vec::new(),
        };
        let shard = ShardId::try_from(group).expect("few groups");
        let write = Write { shard, from: WriteFrom::Local(request), command, dependencies };
        self.groups[group].driver.queue(write);
    }

    /// Clients waiting for this node: their answers are lost when it crashes.
    pub fn clients(&self) -> Vec<ClientId> {
        self.groups.iter().flat_map(|g| g.driver.requests().map(|r| r.id)).collect()
    }

    /// A frame was lost on the link with `peer` (the connection broke).
    pub fn lost_with(&mut self, peer: NodeId) {
        *self.losses.entry(peer).or_default() += 1;
        self.losses_total += 1;
    }

    pub fn receive(&mut self, group: usize, message: PeerMessage) {
        let driver = &mut self.groups[group].driver;
        match message {
            PeerMessage::Raft(message) => driver.step(message),
            PeerMessage::Forward { origin, token, term, shard, command, dependencies } => {
                assert_eq!(usize::from(shard), group);
                driver.queue(Write { shard, from: WriteFrom::Peer { origin, token, term }, command, dependencies });
            }
            PeerMessage::ReadIndex { token, index } => driver.read_index_answered(token, index),
            other => panic!("the simulation sends no {other:?}"),
        }
    }

    /// One turn of `group` (`Replica::turn`); false if it did nothing. With `crash`, the Ready
    /// stops there (the caller then restarts the node from its disks).
    pub fn turn(
        &mut self,
        group: usize,
        now_us: i64,
        crash: Option<CrashAt>,
        out: &mut Vec<(NodeId, PeerMessage)>,
        answers: &mut Vec<Answer>,
    ) -> bool {
        let Node { groups, applied_zxids, losses, losses_total, applied, stopping, abandoned_conns } = self;
        let Group { driver, shard, disk, zxid_assigned } = &mut groups[group];
        let mut host = SimHost {
            group,
            now_us,
            zxid_assigned,
            shard,
            applied_zxids,
            losses,
            losses_total: *losses_total,
            stopping: *stopping,
            abandoned_conns,
            out,
            answers,
            applied,
            term_vote: None,
            records: Vec::new(),
            did_apply: false,
        };
        let Some(_) = driver.start_turn(&mut host) else { return host.did_apply };
        let (term_vote, records) = (host.term_vote.take(), std::mem::take(&mut host.records));
        if matches!(crash, Some(CrashAt::AfterSend)) {
            return true;
        }
        if let Some(term_vote) = term_vote {
            disk.term_vote = term_vote;
        }
        if matches!(crash, Some(CrashAt::AfterTermVote)) {
            return true;
        }
        if !records.is_empty() {
            let batch = disk.batch(&records);
            if let Some(CrashAt::DuringWrite { kept_permille }) = crash {
                let kept = batch.len() * kept_permille as usize / 1000;
                disk.interrupted(batch, kept);
                return true;
            }
            disk.write(batch, records.len());
        }
        if crash.is_some() {
            return true;
        }
        driver.finish_turn(&mut host);
        true
    }
}

/// The driver's effects on a simulated node (`replica.rs`'s `CoreHost` on a real core).
struct SimHost<'a> {
    group: usize,
    now_us: i64,
    zxid_assigned: &'a mut Zxid,
    shard: &'a mut Shard,
    applied_zxids: &'a mut [Zxid],
    losses: &'a BTreeMap<NodeId, u64>,
    losses_total: u64,
    stopping: bool,
    abandoned_conns: &'a mut BTreeSet<u64>,
    out: &'a mut Vec<(NodeId, PeerMessage)>,
    answers: &'a mut Vec<Answer>,
    applied: &'a mut Vec<AppliedEntry>,
    /// The turn's term and vote and WAL records, made durable (or not: a crash) by `Node::turn`.
    term_vote: Option<(Term, Option<NodeId>)>,
    records: Vec<Vec<u8>>,
    did_apply: bool,
}

impl GroupHost for SimHost<'_> {
    type Request = SimRequest;

    fn next_zxid(&mut self) -> Zxid {
        *self.zxid_assigned = driver::next_zxid(*self.zxid_assigned, self.now_us);
        *self.zxid_assigned
    }

    fn note_log_zxid(&mut self, zxid: Zxid) {
        *self.zxid_assigned = (*self.zxid_assigned).max(zxid);
    }

    fn take_fence(&mut self) -> Option<Zxid> {
        None
    }

    fn applied_in_group(&self, group: usize) -> Option<Zxid> {
        self.applied_zxids.get(group).copied()
    }

    fn link_losses(&self, peer: NodeId) -> u64 {
        self.losses.get(&peer).copied().unwrap_or(0)
    }

    fn link_losses_total(&self) -> u64 {
        self.losses_total
    }

    fn connection_abandoned(&self, request: &SimRequest) -> bool {
        self.abandoned_conns.contains(&request.conn)
    }

    fn stopping(&self) -> bool {
        self.stopping
    }

    fn time_ms(&self) -> i64 {
        self.now_us / 1000
    }

    fn send(&mut self, to: NodeId, message: PeerMessage) {
        self.out.push((to, message));
    }

    fn store_term_and_vote(&mut self, term: Term, vote: Option<NodeId>) {
        self.term_vote = Some((term, vote));
    }

    fn append(&mut self, record: Record<'_>) {
        let mut bytes = Vec::new();
        record.encode_into(&mut bytes);
        self.records.push(bytes);
    }

    fn leader_known(&mut self, _leader: Option<NodeId>) {}

    fn leadership_changed(&mut self, _leading: bool, _term: Term, _leader: Option<NodeId>) {}

    fn in_flight(&mut self, _requests: usize) {}

    fn apply(&mut self, entry: LogEntry, answer: Option<SimRequest>) {
        let applied = self.shard.apply(&entry);
        self.applied_zxids[self.group] = entry.zxid;
        if let Some(request) = answer {
            self.answers.push(Answer::Write { client: request.id, result: applied.result });
        }
    }

    fn apply_fence(&mut self, zxid: Zxid) {
        self.applied_zxids[self.group] = zxid;
    }

    fn entry_applied(&mut self, entry: &Entry) {
        self.did_apply = true;
        self.applied.push(AppliedEntry {
            group: self.group,
            index: entry.index,
            term: entry.term,
            data_hash: data_hash(&entry.data),
            digest: Some(self.shard.digest()),
            written: register_write(&entry.data),
        });
    }

    fn applied_run_done(&mut self) {}

    fn waiting_for_other_groups(&mut self, _waiting: bool) {}

    fn answer_sync(&mut self, request: SimRequest) {
        self.answers.push(Answer::Synced { client: request.id });
    }

    fn abandon(&mut self, request: SimRequest, _reason: &'static str) {
        self.abandoned_conns.insert(request.conn);
        self.answers.push(Answer::Abandoned { client: request.id });
    }

    fn lease_confirmed(&mut self, _token: u64, _unknown: &[SessionId]) {}

    fn followers_needing_snapshot(&mut self, _followers: &[NodeId]) {}
}

/// The value of a register write (a setData of 4 bytes) in an entry's data.
fn register_write(data: &[u8]) -> Option<u32> {
    let (_, _, _, archive) = decode_proposal(data).ok()?;
    match LogEntry::from_bytes(archive).ok()?.command {
        Command::SetData(op) => op.data.and_then(|d| d.try_into().ok()).map(u32::from_be_bytes),
        _ => None,
    }
}
