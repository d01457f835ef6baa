//! One simulated node: several Raft groups, each the runtime's own `GroupDriver` (the code
//! `server/replica.rs` runs) over the real shard state machine and a simulated disk, with the
//! real entry and WAL record encodings, and the session side of its core 0 (`SessionSide`: the
//! real `SessionTracker`, lease `Probes`, `ExpiryClock` and `UnfinishedCloses`, driven as
//! `lease.rs` and `core.rs` drive them). What it does not have is IO: time is the simulation's
//! clock, messages go to the simulated network, and `SimHost` carries out the driver's effects
//! as `replica.rs`'s `CoreHost` does on a core.

use super::disk::Disk;
use crate::peer::PeerMessage;
use crate::raft_log::Record;
use crate::server::driver::{
    self, replay_limits, DriverConfig, GroupDriver, GroupHost, LeaseRound, Placement, ReplayLog, Write, WriteFrom,
};
use crate::server::lease::{Probe, Probes, Renewals, LEASE_FRACTION};
use crate::server::proposal::{decode_proposal, first_token, highest_zxid};
use crate::server::role::first_out_of_contact;
use crate::server::sessions::{may_expire, ExpiryClock, SessionTracker, UnfinishedCloses};
use crate::server::txn_driver::{Leadership, TxnDriver, TxnEffect, TxnMessage, TxnTimes};
use crate::snapshot_file::{Frames, GroupHead};
use crate::snapshot_transfer::{self, ChunkHeader, Pace, Receipt, SendStep, Sender};
use ahash::AHashMap;
use engine::command::{ClientWrite, Command, LogEntry, ShardId, TxnId};
use engine::error::ZkError;
use engine::raft::{Config, Entry, HardState, Index, NodeId, Raft, Role, Term};
use engine::request::WriteResult;
use engine::shard::Shard;
use engine::snapshot::NodeBatchBuilder;
use engine::txn::TxnApplied;
use engine::types::{SessionId, Zxid};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The connection of the server's own requests (expiry closes): never marked abandoned, its
/// answers go to nobody (`msg::INTERNAL_CONN`).
pub const INTERNAL: u64 = 0;
const INTERNAL_CONN: engine::types::ConnId = crate::server::msg::INTERNAL_CONN;
/// As `server::lease`: a node out of contact with a leader of some group for this long stops
/// serving (`leader-contact-timeout-ms`, default 2000).
const LEADER_CONTACT_TIMEOUT: Duration = Duration::from_millis(2000);
/// As `Core::expiry_loop`'s round for the sessions' timeouts.
pub const EXPIRY_TICK: Duration = Duration::from_millis(250);

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
    /// The session a close in shard 0 closed.
    pub closed_session: Option<SessionId>,
    /// A session client's write (its 4-byte data), and whether it applied (else it was refused
    /// as SESSIONMOVED); unknown for a replayed entry, which is not reported.
    pub session_write: Option<(u32, bool)>,
    /// Not an entry: the shard became the state after `index` from a snapshot (loaded at
    /// start-up or installed from the leader), with `digest`.
    pub snapshot: bool,
    /// The multi across groups a prepare, decision or finish is of.
    pub txn: Option<TxnId>,
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
    /// A group snapshots after this many entries since its last one (0: only when a follower
    /// needs one); nodes collected per turn while it is taken.
    pub snapshot_entries: u64,
    pub snapshot_step_nodes: usize,
}

/// `txn_driver::TXN_TIMES` in Raft ticks: a tick every ten steps or so here, three times the
/// runtime's rate (see `LEASE_ROUND_STEPS`).
const TXN_TIMES: TxnTimes =
    TxnTimes { vote_timeout: Duration::from_millis(330), propose_again: Duration::from_millis(170) };

/// Snapshots kept per group, as `snapshots-kept`'s default.
const SNAPSHOTS_KEPT: usize = 2;
/// How snapshots go to followers: small chunks, so a transfer takes several and its window
/// fills; `snapshot_transfer::PACE`'s times scaled to the simulation's few steps per Raft tick.
const PACE: Pace = Pace {
    chunk_bytes: 2048,
    chunks_in_flight: 4,
    resend_after: Duration::from_millis(20),
    give_up_after: Duration::from_millis(600),
};

/// One group of a node: its driver, its one shard (shard g of group g) and its disk.
pub struct Group {
    pub driver: GroupDriver<SimRequest>,
    /// The group's core's half of multis across groups (`txns.rs` runs the same driver).
    txn: TxnDriver<SimRequest>,
    pub shard: Shard,
    pub disk: Disk,
    zxid_assigned: Zxid,
    /// A snapshot being taken (`snapshots::write_snapshot`: the walk goes on between turns).
    imaging: Option<Imaging>,
    entries_since_snapshot: u64,
    snapshot_wanted: bool,
    /// As leader: snapshots on their way to followers. As follower: one arriving.
    sending: BTreeMap<NodeId, Sender>,
    receiving: Option<Receiving>,
}

struct Imaging {
    index: Index,
    term: Term,
    frames: Frames,
    batch: NodeBatchBuilder,
}

struct Receiving {
    transfer: snapshot_transfer::Receiving,
    bytes: Vec<u8>,
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
    pub sessions: SessionSide,
    /// Snapshot chunks and acknowledgements to send: (group, to, message).
    pub outbox: Vec<(usize, NodeId, PeerMessage)>,
    /// What the groups' transaction drivers decided, not carried out yet: (group, effect).
    txn_effects: Vec<(usize, TxnEffect<SimRequest>)>,
    /// Groups given entries to propose by a transaction driver since the simulation looked.
    txn_proposing: BTreeSet<usize>,
    /// Per group: what it must have applied before this node serves (`GroupLeaders::required`).
    required_zxids: Vec<Zxid>,
    setup: Setup,
    /// Snapshots begun while an entry after theirs was applied ahead of its place (a finish
    /// that released a held path): their state is not exactly the one after their entry.
    pub snapshots_with_entries_ahead: Vec<(usize, Index)>,
    /// Snapshots taken, sent whole and installed here (for the summary).
    pub snapshots_taken: u64,
    pub snapshots_installed: u64,
}

/// The session side of a node's core 0, and each core's lease of its group.
pub struct SessionSide {
    pub tracker: SessionTracker,
    /// Per group: the lease probes sent and not answered, and the send time of the newest one
    /// a confirmed leader answered.
    probes: Vec<Probes>,
    pub contact: Vec<Option<Instant>>,
    expiry: ExpiryClock,
    /// Per group: closes shard 0 applied that the group's shard may still have to finish.
    closes: Vec<UnfinishedCloses>,
    /// Per group, as its leader: followers that cannot catch up (their probes go unanswered).
    needing_snapshot: Vec<Vec<NodeId>>,
    /// Client connections with a session, open here: connection → session.
    pub conns: BTreeMap<u64, SessionId>,
    /// Connections closed here since the simulation last looked, with why.
    pub closed: Vec<(u64, &'static str)>,
    /// Reattaches waiting for the session group's leader to renew their session (by
    /// connection), and those answered: connection → the renewing probe's send time.
    renewals: Renewals<u64>,
    renewed: BTreeMap<u64, Instant>,
    /// Reattaches whose renewal was given up since the simulation last looked.
    pub renewals_given_up: Vec<u64>,
    serving: bool,
    next_token: u64,
}

impl SessionSide {
    fn new(groups: usize, now: Instant, first_token: u64) -> SessionSide {
        SessionSide {
            tracker: SessionTracker::new(),
            probes: (0..groups).map(|_| Probes::default()).collect(),
            contact: vec![None; groups],
            expiry: ExpiryClock::new(now),
            closes: (0..groups).map(|_| UnfinishedCloses::default()).collect(),
            needing_snapshot: vec![Vec::new(); groups],
            conns: BTreeMap::new(),
            closed: Vec::new(),
            renewals: Renewals::default(),
            renewed: BTreeMap::new(),
            renewals_given_up: Vec::new(),
            serving: false,
            next_token: first_token,
        }
    }

    fn close(&mut self, conn: u64, reason: &'static str) {
        if let Some(session) = self.conns.remove(&conn) {
            self.tracker.detach_conn(session, conn);
            self.closed.push((conn, reason));
        }
    }

    /// A confirmed leader of `group` answered probe `token` (`Core::on_lease_confirmed`).
    fn confirmed(&mut self, group: usize, token: u64, unknown: &[SessionId]) {
        let Some(Probe { sent_at, sessions, .. }) = self.probes[group].answered(token) else { return };
        let contact = &mut self.contact[group];
        *contact = Some(contact.map_or(sent_at, |at| at.max(sent_at)));
        if group == 0 {
            let renewed = self.tracker.confirm_probe(&sessions, unknown, sent_at);
            for conn in self.renewals.answered(sent_at, &renewed) {
                self.renewed.insert(conn, sent_at);
            }
        }
    }
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
    pub fn boot(
        id: NodeId,
        voters: Vec<NodeId>,
        seed: u64,
        setup: Setup,
        disks: Vec<Disk>,
        now_us: i64,
        now: Instant,
    ) -> Node {
        assert_eq!(disks.len(), setup.groups);
        let mut disks = disks;
        let shard_count = u16::try_from(setup.groups).expect("few groups");
        // `server::load_snapshot`: the newest snapshot of each group, then its log after it.
        let snapshots: Vec<_> =
            disks.iter().enumerate().map(|(g, disk)| disk.load_snapshot(g as u16, shard_count)).collect();
        let logs: Vec<_> = disks
            .iter_mut()
            .zip(&snapshots)
            .map(|(disk, loaded)| {
                disk.recover_after(loaded.as_ref().map_or(0, |l| l.index), loaded.as_ref().map_or(0, |l| l.term))
            })
            .collect();
        let base_zxids: Vec<Zxid> = snapshots
            .iter()
            .enumerate()
            .map(|(g, loaded)| loaded.as_ref().map_or(0, |l| l.applied_zxids.get(g).copied().unwrap_or(0)))
            .collect();
        let replay: Vec<ReplayLog> = logs
            .iter()
            .zip(&base_zxids)
            .map(|(log, &base)| ReplayLog::after(base, log.committed()).expect("valid entries"))
            .collect();
        let limits = replay_limits(&replay);
        let mut required_zxids = vec![0; setup.groups];
        let mut applied = Vec::new();
        let mut applied_zxids = Vec::new();
        let mut groups = Vec::new();
        for (g, ((disk, log), loaded)) in disks.into_iter().zip(logs).zip(snapshots).enumerate() {
            let shard_id = ShardId::try_from(g).expect("few groups");
            let base_term = loaded.as_ref().map_or(0, |l| l.term);
            let shard = match loaded {
                Some(loaded) => {
                    // `run_core`: the other groups must reach what the snapshot's node had
                    // applied of them before this node serves.
                    for (other, &zxid) in loaded.applied_zxids.iter().enumerate() {
                        if other != g && other < setup.groups {
                            required_zxids[other] = required_zxids[other].max(zxid);
                        }
                    }
                    let shard = loaded.shards.into_iter().next().expect("one shard per group");
                    applied.push(AppliedEntry::of_snapshot(g, loaded.index, shard.digest() ^ shard.txn_digest()));
                    shard
                }
                None => Shard::new(shard_id, shard_count),
            };
            let mut shards = AHashMap::from_iter([(shard_id, shard)]);
            let committed = log.committed();
            // The replay also stops at an entry that meets a path a multi holds and no entry
            // after it releases (`server::apply_committed`): the driver holds the rest.
            let crate::server::Replayed { count: replayed, ahead } =
                crate::server::apply_committed(g, &committed[..limits[g]], &mut shards)
                    .unwrap_or_else(|e| panic!("node {id} group {g}: replay: {e}"));
            // `run_core`: stopped short of its limit, the other groups replayed as if it got
            // there; the node serves once it has.
            if replayed < limits[g] {
                required_zxids[g] = required_zxids[g].max(highest_zxid(&committed[..limits[g]]));
            }
            let (replayed, held) = committed.split_at(replayed);
            let shard = shards.remove(&shard_id).expect("the shard");
            let start = applied.len();
            // A replay's results are not kept: a session write was checked when it first applied.
            let replayed_entry = |e| AppliedEntry { session_write: None, ..AppliedEntry::of(g, e, None) };
            applied.extend(replayed.iter().map(replayed_entry));
            // A replay stopped short may have applied entries after it ahead of their place.
            if applied.len() > start && replayed.len() == limits[g] {
                applied.last_mut().expect("replayed").digest = Some(shard.digest() ^ shard.txn_digest());
            }
            applied_zxids.push(highest_zxid(replayed).max(base_zxids[g]));
            let held = held.to_vec();
            let zxid_assigned = highest_zxid(&log.entries).max(base_zxids[g]);
            let (term, vote) = disk.term_vote;
            let placement = Placement { preferred: setup.preferred, delay_ticks: setup.hand_back_ticks };
            let mut config = Config::new(id, voters.clone(), seed ^ (g as u64) << 40);
            config.election_priority = placement.election_priority(id);
            let commit = log.commit;
            let base = (log.base, base_term);
            let mut raft = Raft::after_snapshot(config, HardState { term, vote, commit }, base, log.entries);
            raft.restore_applied(commit);
            let driver_config = DriverConfig {
                group: g,
                placement,
                retained_entries: setup.retained_entries,
                compact_every: setup.compact_every,
            };
            let mut driver = GroupDriver::new(raft, driver_config, first_token(now_us), held);
            driver.applied_ahead_at_start(ahead);
            groups.push(Group {
                driver,
                txn: TxnDriver::new(shard_id, TXN_TIMES),
                shard,
                disk,
                zxid_assigned,
                imaging: None,
                entries_since_snapshot: 0,
                snapshot_wanted: false,
                sending: BTreeMap::new(),
                receiving: None,
            });
        }
        let mut node = Node {
            groups,
            applied_zxids,
            losses: BTreeMap::new(),
            losses_total: 0,
            applied,
            stopping: false,
            abandoned_conns: BTreeSet::new(),
            sessions: SessionSide::new(setup.groups, now, first_token(now_us)),
            outbox: Vec::new(),
            txn_effects: Vec::new(),
            txn_proposing: BTreeSet::new(),
            required_zxids,
            setup,
            snapshots_with_entries_ahead: Vec::new(),
            snapshots_taken: 0,
            snapshots_installed: 0,
        };
        // `Core::announce_closed_sessions`: closes shard 0 made recently are finished in every
        // group by whichever node leads it.
        for session in node.groups[0].shard.recently_closed_sessions() {
            for closes in &mut node.sessions.closes {
                closes.closed_in_shard0(session, now);
            }
        }
        // `Core::rearm_sessions`: every session found in the shards gets a full timeout.
        for group in &node.groups {
            for (session, info) in group.shard.sessions() {
                node.sessions.tracker.create(session, info.timeout_ms, INTERNAL_CONN, now);
            }
        }
        node
    }

    /// Whether every group has applied what an installed snapshot requires (one order across
    /// groups: until then the node serves no client).
    pub fn current(&self) -> bool {
        self.applied_zxids.iter().zip(&self.required_zxids).all(|(applied, required)| applied >= required)
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
            Some(_) => driver::dependencies_on_other_groups(group, self.applied_zxids.iter().copied()),
            None => Vec::new(),
        };
        let shard = ShardId::try_from(group).expect("few groups");
        let write = Write { shard, from: WriteFrom::Local(request), command, dependencies };
        self.groups[group].driver.queue(write);
    }

    /// `Core::lease_loop` on every core: each group's leader is probed (core 0's probe carries
    /// the sessions to renew); core 0 closes the connections of sessions whose lease lapsed;
    /// a node out of contact with a leader of some group stops serving. Touch messages go to
    /// `out` as (group, to, message).
    pub fn lease_round(&mut self, me: NodeId, now: Instant, out: &mut Vec<(usize, NodeId, PeerMessage)>) {
        for group in 0..self.groups.len() {
            self.probe_leader(me, group, now, None, out);
        }
        let side = &mut self.sessions;
        for (_, conn) in side.tracker.lapsed_leases(now, LEASE_FRACTION) {
            side.close(conn, "session lease not renewed");
        }
        let given_up = side.renewals.given_up(now);
        side.renewals_given_up.extend(given_up);
        side.serving = first_out_of_contact(side.contact.iter().copied(), now, LEADER_CONTACT_TIMEOUT).is_none()
            && self.applied_zxids.iter().zip(&self.required_zxids).all(|(applied, required)| applied >= required);
        if !side.serving {
            let conns: Vec<u64> = side.conns.keys().copied().collect();
            for conn in conns {
                side.close(conn, "not serving: no contact with a current leader");
            }
        }
    }

    /// `Core::probe_leader` for one group.
    /// `Core::probe_leader` for one group; `only`: an urgent probe for one reattach, carrying
    /// that session alone.
    fn probe_leader(
        &mut self,
        me: NodeId,
        group: usize,
        now: Instant,
        only: Option<SessionId>,
        out: &mut Vec<(usize, NodeId, PeerMessage)>,
    ) {
        let driver = &mut self.groups[group].driver;
        let Some(leader) = driver.raft().leader() else { return };
        let side = &mut self.sessions;
        let urgent = only.is_some();
        let sessions = match (group, only) {
            (_, Some(session)) => vec![session],
            (0, None) => {
                let mut sessions = side.tracker.to_renew();
                sessions.extend(side.renewals.sessions());
                sessions.sort_unstable();
                sessions.dedup();
                sessions
            }
            _ => Vec::new(),
        };
        let token = side.next_token;
        side.next_token += 1;
        if leader == me {
            if driver.raft().role() != Role::Leader {
                return;
            }
            let unknown = if group == 0 { side.tracker.renew_for_probe(&sessions, now) } else { Vec::new() };
            driver.ask_lease(LeaseRound { asker: None, token, unknown, urgent });
        } else {
            out.push((group, leader, PeerMessage::Touch { token, sessions: sessions.clone(), urgent }));
        }
        side.probes[group].sent(Probe { token, sent_at: now, sessions });
    }

    /// A reattach of `session` on connection `conn` (`Conn::start_handshake` with a session id):
    /// first a sync of every group by the requests `ids`. False if this node does not serve.
    pub fn reattach_syncs(&mut self, conn: u64, ids: &[ClientId]) -> bool {
        if !self.sessions.serving {
            return false;
        }
        for (group, &id) in ids.iter().enumerate() {
            self.request(SimRequest { id, conn }, group, None);
        }
        true
    }

    /// The reattach's syncs are done: shard 0 must know the session and the tracker must not
    /// have decided its expiry (CheckSession); then the session group's leader renews it
    /// (RenewSession: an urgent probe). False if refused.
    pub fn reattach_check(
        &mut self,
        me: NodeId,
        conn: u64,
        session: SessionId,
        now: Instant,
        out: &mut Vec<(usize, NodeId, PeerMessage)>,
    ) -> bool {
        let known = self.groups[0].shard.session(session).is_some() && self.sessions.tracker.contains(session);
        if !known || !self.sessions.serving {
            return false;
        }
        self.sessions.renewals.push(conn, session, now);
        self.probe_leader(me, 0, now, Some(session), out);
        true
    }

    /// The send time of the probe that renewed the reattach on `conn`, once it was answered.
    pub fn reattach_renewed(&mut self, conn: u64) -> Option<Instant> {
        self.sessions.renewed.remove(&conn)
    }

    /// `Conn::finish_connect` and `Msg::SessionAttached`: granted only while the renewal's lease
    /// holds (half the timeout from the renewing probe) and the tracker still has the session.
    pub fn reattach_grant(
        &mut self,
        conn: u64,
        session: SessionId,
        timeout_ms: i32,
        renewed_at: Instant,
        now: Instant,
    ) -> bool {
        let lease = Duration::from_millis(timeout_ms.max(0) as u64).mul_f64(LEASE_FRACTION);
        if !self.sessions.serving || now.saturating_duration_since(renewed_at) > lease {
            return false;
        }
        let side = &mut self.sessions;
        match side.tracker.reattach(session, conn, now) {
            Some(previous) => {
                if let Some(previous) = previous.filter(|&p| p != conn) {
                    side.close(previous, "session moved");
                }
                side.conns.insert(conn, session);
                true
            }
            None => false,
        }
    }

    /// `Core::expiry_loop`, one round: a late round re-arms every session; otherwise the
    /// session group's leader, while its leadership was confirmed recently, closes the sessions
    /// whose clients went silent, in every shard.
    pub fn expiry_round(&mut self, now: Instant) {
        let side = &mut self.sessions;
        if side.expiry.round(now, EXPIRY_TICK).is_some() {
            side.tracker.rearm_all(now);
            return;
        }
        let leading = self.groups[0].driver.raft().role() == Role::Leader;
        if !may_expire(true, leading, side.contact[0], now) {
            return;
        }
        for (session, owner) in side.tracker.expire(now) {
            if let Some(conn) = owner {
                self.sessions.close(conn, "session expired");
            }
            for group in 0..self.groups.len() {
                self.request(SimRequest { id: 0, conn: INTERNAL }, group, Some(Command::CloseSession { session }));
            }
        }
    }

    /// `Core::finish_closes_loop` on every core: the leader of a group closes again, in its
    /// shard, a session shard 0 closed more than a grace ago.
    pub fn finish_closes(&mut self, now: Instant) {
        for group in 0..self.groups.len() {
            let leading = self.groups[group].driver.raft().role() == Role::Leader;
            let shard = &self.groups[group].shard;
            let open_in = |session| if shard.session(session).is_some() { vec![shard.id()] } else { Vec::new() };
            let again = self.sessions.closes[group].to_close_again(leading, now, open_in);
            for (_, session) in again {
                self.request(SimRequest { id: 0, conn: INTERNAL }, group, Some(Command::CloseSession { session }));
            }
        }
    }

    /// A client's handshake for a new session on connection `conn` (`Conn::start_handshake`):
    /// tracked here at once and opened in shard 0 by request `id`. False if this node does not
    /// serve.
    pub fn open_session(&mut self, conn: u64, session: SessionId, timeout_ms: i32, now: Instant, id: ClientId) -> bool {
        if !self.sessions.serving {
            return false;
        }
        self.sessions.tracker.create(session, timeout_ms, conn, now);
        self.sessions.conns.insert(conn, session);
        let open = Command::CreateSession { session, timeout_ms, passwd: vec![2; 16] };
        self.request(SimRequest { id, conn }, 0, Some(open));
        true
    }

    /// Shard 0 opened the session: the other shards open it too, by the requests `ids` (one per
    /// group from group 1), each depending on shard 0's create (`Conn::open_in_other_shards`).
    pub fn open_in_other_groups(&mut self, conn: u64, session: SessionId, timeout_ms: i32, ids: &[ClientId]) {
        for (group, &id) in (1..).zip(ids) {
            let open = Command::CreateSession { session, timeout_ms, passwd: vec![2; 16] };
            self.request(SimRequest { id, conn }, group, Some(open));
        }
    }

    /// The client of a session opened on `conn` creates an ephemeral in every shard.
    pub fn create_ephemerals(&mut self, conn: u64, session: SessionId) {
        for group in 0..self.groups.len() {
            let request = SimRequest { id: 0, conn };
            let ephemeral = engine::command::CreateOp {
                path: format!("/eph-{session}"),
                data: None,
                acl: engine::types::Acl::open_unsafe(),
                mode: engine::types::CreateMode::Ephemeral,
                ttl_ms: 0,
                session,
                auth: Vec::new(),
            };
            let ephemeral = Command::OfConnection { session, epoch: 0, write: ClientWrite::Create(ephemeral) };
            self.request(request, group, Some(ephemeral));
        }
    }

    /// A client's ping on `conn`: answered (the session touched) only while the connection is
    /// open here.
    pub fn ping(&mut self, conn: u64, now: Instant) -> bool {
        let side = &mut self.sessions;
        let Some(&session) = side.conns.get(&conn) else { return false };
        side.tracker.touch(&[session], now);
        true
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

    pub fn receive(&mut self, group: usize, from: NodeId, message: PeerMessage, now: Instant) {
        let driver = &mut self.groups[group].driver;
        match message {
            PeerMessage::Raft(message) => driver.step(message),
            PeerMessage::Forward { origin, token, term, shard, command, dependencies } => {
                assert_eq!(usize::from(shard), group);
                driver.queue(Write { shard, from: WriteFrom::Peer { origin, token, term }, command, dependencies });
            }
            PeerMessage::ReadIndex { token, index } => driver.read_index_answered(token, index),
            // `Core::on_lease_probe`: the leader renews the probe's sessions and answers once a
            // ReadIndex round confirms it still leads.
            PeerMessage::Touch { token, sessions, urgent } => {
                let side = &mut self.sessions;
                if driver.raft().role() != Role::Leader || side.needing_snapshot[group].contains(&from) {
                    return;
                }
                let unknown = match group {
                    0 => side.tracker.renew_for_probe(&sessions, now),
                    _ => Vec::new(),
                };
                driver.ask_lease(LeaseRound { asker: Some(from), token, unknown, urgent });
            }
            PeerMessage::Touched { token, unknown } => self.sessions.confirmed(group, token, &unknown),
            PeerMessage::SnapshotChunk { index, term, offset, total, bytes } => {
                self.on_chunk(group, from, index, term, offset, total, bytes, now)
            }
            PeerMessage::SnapshotAck { index, received, installed } => {
                // `snapshots::on_ack`.
                let g = &mut self.groups[group];
                if let Some(sender) = g.sending.get_mut(&from).filter(|s| s.index == index) {
                    sender.on_ack(received, installed, now);
                    if installed {
                        g.sending.remove(&from);
                    }
                }
                if installed && g.driver.raft().role() == Role::Leader {
                    let (me, term) = (g.driver.raft().id(), g.driver.raft().term());
                    let body = engine::raft::Body::AppendResponse { success: true, index, last_index: index };
                    g.driver.step(engine::raft::Message { from, to: me, term, body });
                }
            }
            other => panic!("the simulation sends no {other:?}"),
        }
    }

    /// One turn of `group` (`Replica::turn`); false if it did nothing. With `crash`, the Ready
    /// stops there (the caller then restarts the node from its disks).
    #[allow(clippy::too_many_arguments)]
    pub fn turn(
        &mut self,
        group: usize,
        now_us: i64,
        now: Instant,
        crash: Option<CrashAt>,
        out: &mut Vec<(NodeId, PeerMessage)>,
        answers: &mut Vec<Answer>,
    ) -> bool {
        let Node {
            groups,
            applied_zxids,
            losses,
            losses_total,
            applied,
            stopping,
            abandoned_conns,
            sessions,
            txn_effects,
            ..
        } = self;
        let Group { driver, txn, shard, disk, zxid_assigned, entries_since_snapshot, .. } = &mut groups[group];
        let mut host = SimHost {
            group,
            txn,
            txn_effects,
            now_us,
            zxid_assigned,
            shard,
            applied_zxids,
            losses,
            losses_total: *losses_total,
            stopping: *stopping,
            abandoned_conns,
            side: sessions,
            now,
            out,
            answers,
            applied,
            term_vote: None,
            records: Vec::new(),
            did_apply: false,
            last_applied_ok: false,
        };
        let Some(_) = driver.start_turn(&mut host) else {
            let did_apply = host.did_apply;
            self.carry_out_txns(now, answers);
            return did_apply;
        };
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
            let entries = records.iter().filter(|r| matches!(Record::decode(r), Ok(Record::Entry { .. }))).count();
            *entries_since_snapshot += entries as u64;
        }
        if crash.is_some() {
            return true;
        }
        driver.finish_turn(&mut host);
        self.carry_out_txns(now, answers);
        self.look_after_snapshots(group);
        true
    }

    /// `Core::carry_out` on every core of the node: the transaction drivers' messages reach
    /// the other groups' drivers (which may decide more), their entries are queued in their
    /// groups, waiting connections hear decisions and parked reads are served again.
    fn carry_out_txns(&mut self, now: Instant, answers: &mut Vec<Answer>) {
        while !self.txn_effects.is_empty() {
            for (group, effect) in std::mem::take(&mut self.txn_effects) {
                match effect {
                    TxnEffect::Send { to, message } => self.txn_message(usize::from(to), message, now),
                    TxnEffect::Answer { request, outcome } => {
                        let result = Ok(WriteResult::Txn(TxnApplied::Decided(outcome)));
                        answers.push(Answer::Write { client: request.id, result });
                    }
                    TxnEffect::Propose { command, after_other_groups } => {
                        let dependencies = match after_other_groups {
                            true => driver::dependencies_on_other_groups(group, self.applied_zxids.iter().copied()),
                            false => Vec::new(),
                        };
                        let shard = ShardId::try_from(group).expect("few groups");
                        let from = WriteFrom::Local(SimRequest { id: 0, conn: INTERNAL });
                        self.groups[group].driver.queue(Write { shard, from, command: Some(command), dependencies });
                        self.txn_proposing.insert(group);
                    }
                    TxnEffect::Released { txn } => {
                        for request in self.groups[group].txn.take_parked(txn) {
                            answers.push(Answer::Synced { client: request.id });
                        }
                    }
                }
            }
        }
    }

    fn txn_message(&mut self, group: usize, message: TxnMessage, now: Instant) {
        let g = &mut self.groups[group];
        let lead = leadership(&mut g.driver);
        let mut effects = Vec::new();
        g.txn.on_message(message, g.shard.txns(), &lead, now, &mut effects);
        self.txn_effects.extend(effects.into_iter().map(|effect| (group, effect)));
    }

    /// `Core::txn_loop`, one round on every core: reports re-sent, late votes decided Retry.
    pub fn txn_round(&mut self, now: Instant, answers: &mut Vec<Answer>) {
        for (group, g) in self.groups.iter_mut().enumerate() {
            let lead = leadership(&mut g.driver);
            let mut effects = Vec::new();
            g.txn.resend(g.shard.txns(), &lead, now, &mut effects);
            self.txn_effects.extend(effects.into_iter().map(|effect| (group, effect)));
        }
        self.carry_out_txns(now, answers);
    }

    /// A connection waits for the decision on multi `txn`, coordinated by `group`
    /// (`ShardOp::AwaitTxn`).
    pub fn await_txn(
        &mut self,
        request: SimRequest,
        group: usize,
        txn: TxnId,
        now: Instant,
        answers: &mut Vec<Answer>,
    ) {
        let g = &mut self.groups[group];
        let mut effects = Vec::new();
        g.txn.await_decision(txn, request, g.shard.txns(), &mut effects);
        self.txn_effects.extend(effects.into_iter().map(|effect| (group, effect)));
        self.carry_out_txns(now, answers);
    }

    /// A read of a path `txn` holds in `group` waits for its finish (`Core::park`).
    pub fn park_read(&mut self, group: usize, txn: TxnId, request: SimRequest) {
        self.groups[group].txn.park(txn, request);
    }

    /// Groups given entries by a transaction driver since the last call: they have turns to run.
    pub fn take_txn_proposing(&mut self) -> BTreeSet<usize> {
        std::mem::take(&mut self.txn_proposing)
    }

    /// Groups here with multis across groups still prepared or paths still held: (group,
    /// prepared multis, whether paths are held).
    pub fn txns_in_doubt(&self) -> Vec<(usize, usize, bool)> {
        let doubt = |(group, g): (usize, &Group)| (group, g.shard.txns().prepared().count(), g.shard.holds_any());
        self.groups.iter().enumerate().map(doubt).filter(|&(_, prepared, held)| prepared > 0 || held).collect()
    }

    /// For a failure's message: per group, where it applied to, what it holds and decided,
    /// and the first entry still to apply with what it waits for.
    pub fn txn_report(&self) -> String {
        let group = |(i, g): (usize, &Group)| {
            let prepared: Vec<_> = g.shard.txns().prepared().map(|(t, p)| (*t, p.vote, p.coordinator)).collect();
            let decided: Vec<_> = g.shard.txns().decided().collect();
            let next = g.driver.unapplied_front().and_then(|e| {
                let entry = log_entry_of(e)?;
                let dependencies = crate::server::proposal::proposal_dependencies(&e.data).unwrap_or_default();
                let held_by = engine::txn::holder_of_command(&g.shard, &entry.command);
                Some(format!(
                    "{} {:.80} depends on {dependencies:?}, held by {held_by:?}",
                    e.index,
                    format!("{:?}", entry.command)
                ))
            });
            let txn_entries: Vec<String> = g
                .driver
                .unapplied_entries()
                .take(400)
                .filter_map(|e| {
                    let entry = log_entry_of(e)?;
                    let dependencies = crate::server::proposal::proposal_dependencies(&e.data).unwrap_or_default();
                    let what = match &entry.command {
                        Command::TxnDecide { txn, outcome, .. } => format!("decide {} {outcome:?}", txn.serial),
                        Command::TxnFinish { txn, commit, .. } => format!("finish {} {commit}", txn.serial),
                        Command::TxnPrepare(p) => format!("prepare {}", p.txn.serial),
                        _ => return None,
                    };
                    Some(format!("{} {what} deps {dependencies:?}", e.index))
                })
                .collect();
            format!(
                "g{i}: applied {:?} (zxid {}), commit {}, prepared {prepared:?}, decided {decided:?}, next {next:?}, \
                 multis' entries still to apply {txn_entries:?}",
                g.driver.applied_point(),
                self.applied_zxids[i],
                g.driver.raft().commit_index()
            )
        };
        self.groups.iter().enumerate().map(group).collect::<Vec<_>>().join("; ")
    }

    /// `Replica::look_after_snapshots`: begins a snapshot when one is due or wanted, and walks
    /// the one under way a few nodes further (applies go on between turns, as on a core
    /// between the writer's steps); a complete one is kept (the rename), the older ones beyond
    /// the kept number go, and so do the WAL batches none of the kept ones needs.
    fn look_after_snapshots(&mut self, group: usize) {
        let Setup {
            snapshot_entries: setup_entries, snapshot_step_nodes: step_nodes, retained_entries: retained, ..
        } = self.setup;
        let applied_zxids = driver::snapshot_dependencies(group, &self.applied_zxids, &self.required_zxids);
        let shard_count = u16::try_from(self.groups.len()).expect("few groups");
        let g = &mut self.groups[group];
        let due = setup_entries > 0 && g.entries_since_snapshot >= setup_entries;
        if g.imaging.is_none() && (due || g.snapshot_wanted) {
            let (index, term) = g.driver.applied_point();
            if index > g.disk.newest_snapshot().map_or(0, |(newest, _, _)| newest) {
                let head = GroupHead {
                    group: group as u16,
                    shard_count,
                    term,
                    index,
                    applied_zxids,
                    shards: vec![g.shard.begin_image(shard_count)],
                };
                // `snapshots::begin_snapshot`: the multis in flight as of the head.
                let txns = g.shard.txns().image();
                let frames = Frames::begin(&head, txns.as_ref().map(|image| (group as u16, image)));
                if g.driver.applied_ahead_any() {
                    self.snapshots_with_entries_ahead.push((group, index));
                }
                g.imaging = Some(Imaging { index, term, frames, batch: NodeBatchBuilder::default() });
            }
            g.entries_since_snapshot = 0;
            g.snapshot_wanted = false;
        }
        let Some(imaging) = g.imaging.as_mut() else { return };
        let done = g.shard.image_step(step_nodes, &mut imaging.batch);
        imaging.frames.nodes(g.shard.id(), &imaging.batch.take());
        if !done {
            return;
        }
        let Imaging { index, term, mut frames, .. } = g.imaging.take().expect("under way");
        frames.end();
        g.disk.save_snapshot(index, term, frames.take(true), SNAPSHOTS_KEPT);
        self.snapshots_taken += 1;
        let oldest = g.disk.oldest_snapshot().expect("just saved");
        g.disk.release_below(oldest.min(index.saturating_sub(retained)) + 1);
    }

    /// `snapshots::send_to` and `send_file` for every group this node leads: each follower
    /// that needs entries no longer held gets the newest snapshot that covers them, paced by
    /// the node's `Sender`; a snapshot is asked for when none covers them.
    pub fn send_snapshots(&mut self, now: Instant) {
        for (group, g) in self.groups.iter_mut().enumerate() {
            if g.driver.raft().role() != Role::Leader {
                g.sending.clear();
                continue;
            }
            let needing = g.driver.raft().needs_snapshot();
            g.sending.retain(|follower, _| needing.contains(follower));
            let compacted_through = g.driver.raft().log().first_index() - 1;
            for follower in needing {
                let newest = g.disk.newest_snapshot().filter(|(index, _, _)| *index >= compacted_through);
                let Some((index, term, bytes)) = newest else {
                    g.snapshot_wanted = true;
                    continue;
                };
                let total = bytes.len() as u64;
                let sender = g.sending.entry(follower).or_insert_with(|| Sender::new(index, total, PACE, now));
                if sender.index != index {
                    *sender = Sender::new(index, total, PACE, now);
                }
                match sender.step(now) {
                    SendStep::Done => {}
                    // `send_snapshot` ends; the next look starts over.
                    SendStep::GiveUp(_) => {
                        g.sending.remove(&follower);
                    }
                    SendStep::Send(ranges) => {
                        for range in ranges {
                            let chunk = bytes[range.start as usize..range.end as usize].to_vec();
                            let message =
                                PeerMessage::SnapshotChunk { index, term, offset: range.start, total, bytes: chunk };
                            self.outbox.push((group, follower, message));
                        }
                    }
                }
            }
        }
    }

    /// `snapshots::on_chunk` and `Replica::install`: a follower keeps the chunks in order; the
    /// whole file is checked, kept (the rename) and switched to at once: the shard replaced,
    /// the log restarted after it; the leader hears it was installed.
    #[allow(clippy::too_many_arguments)]
    fn on_chunk(
        &mut self,
        group: usize,
        from: NodeId,
        index: Index,
        term: Term,
        offset: u64,
        total: u64,
        bytes: Vec<u8>,
        now: Instant,
    ) {
        let shard_count = u16::try_from(self.groups.len()).expect("few groups");
        let g = &mut self.groups[group];
        if g.driver.raft().role() == Role::Leader {
            return;
        }
        let ack = |received, installed| PeerMessage::SnapshotAck { index, received, installed };
        let header = ChunkHeader { from, index, term, offset, total };
        let under_way = g.receiving.as_ref().map(|receiving| &receiving.transfer);
        // The whole file is switched to as it arrives: never one being loaded.
        let (leader, applied) = (g.driver.raft().leader(), g.driver.applied_point().0);
        match snapshot_transfer::receive(under_way, header, bytes.len() as u64, leader, applied, None) {
            // `Replica::install` takes a snapshot only from the group's leader too.
            Receipt::Ignore => return,
            Receipt::Answer { received, installed } => {
                self.outbox.push((group, from, ack(received, installed)));
                return;
            }
            Receipt::Refuse(why) => panic!("the simulation's leaders send whole chunks: {why}"),
            Receipt::Begin => {
                g.receiving =
                    Some(Receiving { transfer: snapshot_transfer::Receiving::begun(header), bytes: Vec::new() });
            }
            Receipt::Append => {}
        }
        let receiving = g.receiving.as_mut().expect("begun");
        receiving.bytes.extend_from_slice(&bytes);
        if !receiving.transfer.appended(bytes.len() as u64) {
            self.outbox.push((group, from, ack(receiving.transfer.received, false)));
            return;
        }
        let Receiving { bytes, .. } = g.receiving.take().expect("complete");
        let path = std::path::PathBuf::from(format!("sim/{group}/{index}.snap"));
        let loaded = crate::snapshot_file::load_bytes(&bytes, &path, group as u16, shard_count)
            .unwrap_or_else(|e| panic!("a snapshot sent whole does not load: {e}"));
        assert_eq!((loaded.index, loaded.term), (index, term));
        g.disk.save_snapshot(index, term, bytes, SNAPSHOTS_KEPT);
        // Between two turns: no apply sees a mix.
        if !g.driver.install_snapshot(index, term) {
            return;
        }
        g.imaging = None;
        let shard = loaded.shards.into_iter().next().expect("one shard per group");
        g.shard = shard;
        let zxid = loaded.applied_zxids.get(group).copied().unwrap_or(0);
        self.applied_zxids[group] = self.applied_zxids[group].max(zxid);
        g.zxid_assigned = g.zxid_assigned.max(zxid);
        for (other, &required) in loaded.applied_zxids.iter().enumerate() {
            if other != group && other < self.required_zxids.len() {
                self.required_zxids[other] = self.required_zxids[other].max(required);
            }
        }
        self.applied.push(AppliedEntry::of_snapshot(group, index, g.shard.digest() ^ g.shard.txn_digest()));
        self.snapshots_installed += 1;
        // `Core::rearm_sessions`, and for shard 0 `announce_closed_sessions`: closes applied
        // in the entries the snapshot skipped are finished in every group.
        for (session, info) in g.shard.sessions() {
            self.sessions.tracker.create(session, info.timeout_ms, INTERNAL_CONN, now);
        }
        if group == 0 {
            for session in g.shard.recently_closed_sessions() {
                for closes in &mut self.sessions.closes {
                    closes.closed_in_shard0(session, now);
                }
            }
        }
        self.outbox.push((group, from, ack(total, true)));
    }
}

/// The driver's effects on a simulated node (`replica.rs`'s `CoreHost` on a real core).
struct SimHost<'a> {
    group: usize,
    txn: &'a mut TxnDriver<SimRequest>,
    txn_effects: &'a mut Vec<(usize, TxnEffect<SimRequest>)>,
    now_us: i64,
    zxid_assigned: &'a mut Zxid,
    shard: &'a mut Shard,
    applied_zxids: &'a mut [Zxid],
    losses: &'a BTreeMap<NodeId, u64>,
    losses_total: u64,
    stopping: bool,
    abandoned_conns: &'a mut BTreeSet<u64>,
    side: &'a mut SessionSide,
    now: Instant,
    out: &'a mut Vec<(NodeId, PeerMessage)>,
    answers: &'a mut Vec<Answer>,
    applied: &'a mut Vec<AppliedEntry>,
    /// The turn's term and vote and WAL records, made durable (or not: a crash) by `Node::turn`.
    term_vote: Option<(Term, Option<NodeId>)>,
    records: Vec<Vec<u8>>,
    did_apply: bool,
    /// Whether the last entry applied succeeded (a session write refused as SESSIONMOVED did not).
    last_applied_ok: bool,
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
        request.conn != INTERNAL && self.abandoned_conns.contains(&request.conn)
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

    /// `Core::on_leadership`: the session group's new leader tracks every open session.
    fn leadership_changed(&mut self, leading: bool, _term: Term, _leader: Option<NodeId>) {
        if leading && self.group == 0 {
            let open = self.shard.sessions().into_iter().map(|(session, info)| (session, info.timeout_ms));
            self.side.tracker.take_over(open.collect::<Vec<_>>(), self.now);
        }
    }

    fn in_flight(&mut self, _requests: usize) {}

    fn apply(&mut self, entry: LogEntry, answer: Option<SimRequest>) {
        // `Core::apply_replicated` / `track_sessions_of` / `on_applied_close`.
        if self.group == 0 {
            if let Some(conn) = self.side.tracker.apply(&entry.command, self.now) {
                self.side.close(conn, "session expired");
            }
            if let Command::CloseSession { session } = entry.command {
                for closes in &mut self.side.closes {
                    closes.closed_in_shard0(session, self.now);
                }
            }
        }
        let applied = self.shard.apply(&entry);
        self.last_applied_ok = applied.result.is_ok();
        self.applied_zxids[self.group] = entry.zxid;
        if let Ok(WriteResult::Txn(txn_applied)) = &applied.result {
            self.on_txn_applied(&entry, txn_applied);
        }
        if let Some(request) = answer {
            self.answers.push(Answer::Write { client: request.id, result: applied.result });
        }
    }

    fn apply_fence(&mut self, zxid: Zxid) {
        self.applied_zxids[self.group] = zxid;
    }

    fn entry_applied(&mut self, entry: &Entry, ahead_pending: bool) {
        self.did_apply = true;
        // With a release applied ahead and not yet at its place, which releases went ahead
        // depends on this node's other groups (`first_release` takes the first one whose
        // dependencies are applied): only the paths they released differ from another
        // replica's, and no reader sees those held. Compared once it reached its place.
        let digest = (!ahead_pending).then(|| self.shard.digest() ^ self.shard.txn_digest());
        let mut applied = AppliedEntry::of(self.group, entry, digest);
        let ok = std::mem::take(&mut self.last_applied_ok);
        applied.session_write = applied.session_write.map(|(write, _)| (write, ok));
        self.applied.push(applied);
    }

    fn applied_run_done(&mut self) {}

    fn waiting_for_other_groups(&mut self, _waiting: bool) {}

    fn answer_sync(&mut self, request: SimRequest) {
        self.answers.push(Answer::Synced { client: request.id });
    }

    fn abandon(&mut self, request: SimRequest, _reason: &'static str) {
        if request.conn != INTERNAL {
            self.abandoned_conns.insert(request.conn);
        }
        self.answers.push(Answer::Abandoned { client: request.id });
    }

    fn lease_confirmed(&mut self, token: u64, unknown: &[SessionId]) {
        self.side.confirmed(self.group, token, unknown);
    }

    fn followers_needing_snapshot(&mut self, followers: &[NodeId]) {
        self.side.needing_snapshot[self.group] = followers.to_vec();
    }

    // `CoreHost`'s: entries that meet a held path wait; the decision or finish that releases
    // it applies ahead of its place.
    fn held_by(&self, entry: &Entry) -> Option<TxnId> {
        if !self.shard.holds_any() {
            return None;
        }
        engine::txn::holder_of_command(self.shard, &log_entry_of(entry)?.command)
    }

    fn releasers(&self, entry: &Entry) -> Vec<engine::txn::Releaser> {
        log_entry_of(entry).map_or_else(Vec::new, |e| engine::txn::releasers(&e.command))
    }

    fn apply_ahead(&mut self, entry: &Entry) {
        let Some(entry) = log_entry_of(entry) else { return };
        let applied = match entry.command {
            Command::TxnFinish { .. } => engine::txn::finish_early(&mut [&mut *self.shard], &entry),
            _ => engine::txn::decide_early(&mut [&mut *self.shard], &entry),
        };
        self.on_txn_applied(&entry, &applied.applied);
    }
}

impl SimHost<'_> {
    /// `Core::on_txn_applied`: the group's transaction driver hears of it; its effects are
    /// carried out after the turn (`Node::carry_out_txns`).
    fn on_txn_applied(&mut self, entry: &LogEntry, applied: &TxnApplied) {
        let mut effects = Vec::new();
        self.txn.on_applied(entry, applied, &mut effects);
        self.txn_effects.extend(effects.into_iter().map(|effect| (self.group, effect)));
    }
}

/// `Replica::publish_leadership`: what a group's transaction driver needs of its group driver.
fn leadership(driver: &mut GroupDriver<SimRequest>) -> Leadership {
    let releasers = |entry: &Entry| log_entry_of(entry).map_or_else(Vec::new, |e| engine::txn::releasers(&e.command));
    let decisions_to_apply = driver.decisions_to_apply(releasers);
    let (leading, decides) = (driver.raft().role() == Role::Leader, driver.decides_now());
    Leadership { leading, decides, decisions_to_apply }
}

/// The log entry a Raft entry carries, if any (not a no-op or fence).
fn log_entry_of(entry: &Entry) -> Option<LogEntry> {
    let (_, _, _, archive) = decode_proposal(&entry.data).ok()?;
    if archive.is_empty() {
        return None;
    }
    LogEntry::from_bytes(archive).ok()
}

impl AppliedEntry {
    /// The shard of `group` became the state after `index` from a snapshot.
    fn of_snapshot(group: usize, index: Index, digest: u64) -> AppliedEntry {
        AppliedEntry {
            group,
            index,
            term: 0,
            data_hash: 0,
            digest: Some(digest),
            written: None,
            closed_session: None,
            session_write: None,
            snapshot: true,
            txn: None,
        }
    }

    /// `entry` of `group` as the checks see it: a register write's value, shard 0's closes.
    fn of(group: usize, entry: &Entry, digest: Option<u64>) -> AppliedEntry {
        let command = decode_proposal(&entry.data)
            .ok()
            .and_then(|(_, _, _, archive)| LogEntry::from_bytes(archive).ok())
            .map(|log_entry| log_entry.command);
        let value = |data: Option<Vec<u8>>| data.and_then(|d| d.try_into().ok()).map(u32::from_be_bytes);
        let txn = match &command {
            Some(Command::TxnPrepare(prepare)) => Some(prepare.txn),
            Some(Command::TxnDecide { txn, .. } | Command::TxnFinish { txn, .. }) => Some(*txn),
            _ => None,
        };
        let (written, closed_session, session_write) = match command {
            Some(Command::SetData(op)) => (value(op.data), None, None),
            Some(Command::CloseSession { session }) if group == 0 => (None, Some(session), None),
            Some(Command::OfConnection { write: ClientWrite::Create(op), .. }) => {
                (None, None, value(op.data).map(|write| (write, true)))
            }
            _ => (None, None, None),
        };
        AppliedEntry {
            group,
            index: entry.index,
            term: entry.term,
            data_hash: data_hash(&entry.data),
            digest,
            written,
            closed_session,
            session_write,
            snapshot: false,
            txn,
        }
    }
}
