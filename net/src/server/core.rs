//! One core's state and its tasks: the shards it owns (requests, reads, applying committed
//! writes, replies), the routing of messages between cores, and — on core 0 — the session
//! tracker. When a write is committed is decided by `replica.rs` (the core's Raft group and its
//! WAL); this file applies what it commits.

use super::commit::CommitQueue;
use super::conn::Conn;
use super::cut::PartStamp;
use super::driver::{Write, WriteFrom};
use super::lease::{Probes, Renewals};
use super::metrics::{CoreMetrics, GroupStatus};
use super::msg::*;
use super::role::GroupLeaders;
use super::role::Role;
use super::sessions::{may_expire, ExpiryClock, SessionTracker, UnfinishedCloses, CLOSE_GRACE};
use super::transport::Transport;
use super::watermark::Watermark;
use crate::config::Config;
use crate::peer::PeerMessage;
use ahash::AHashMap;
use engine::command::{Command, LogEntry, ShardId};
use engine::raft::NodeId;
use engine::request::{Caller, ReadOp, ReadResult, WriteResult};
use engine::types::{ConnId, SessionId, Zxid};
use engine::Shard;
use engine::ZkError;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The core that runs shard `shard`.
pub fn core_of_shard(shard: ShardId, cores: usize) -> usize {
    shard as usize % cores
}

/// How long a connection with an abandoned request stays marked (`Core::abandoned_conns`).
const ABANDONED_KEPT: Duration = Duration::from_secs(60);

/// A shard with the runtime bookkeeping that orders a session's requests in it.
pub struct ShardSlot {
    pub shard: Shard,
    /// Per session with requests counted or waiting in this shard (none: the session is idle).
    sessions: AHashMap<SessionId, SessionOrder>,
}

impl ShardSlot {
    pub fn new(shard: Shard) -> ShardSlot {
        ShardSlot { shard, sessions: AHashMap::new() }
    }

    /// The session has nothing counted and unfinished, nor waiting, in this shard.
    fn idle(&self, session: SessionId) -> bool {
        self.sessions.get(&session).is_none_or(SessionOrder::idle)
    }
}

/// How a request waits for its session's other requests in the same shard: ZooKeeper's
/// per-session order, a session's read sees the session's earlier writes and none of its
/// later ones, and a later read never sees less than an earlier one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    /// Through the group's log, counted until applied: a write. Starts once the session's
    /// earlier `Read`s finished (at once for a session that has none), pipelined with its
    /// other writes.
    Write,
    /// A ReadIndex round, counted until answered: a sync in a cluster; a read, or a part of a
    /// gathered read, in a cluster with linearizable reads on. Starts once the session's earlier writes finished (a read
    /// index may lie below a write still in flight), pipelined with other `Read`s.
    Read,
    /// Answered here, from the shard as it is, not counted: a read or a part of a gathered read
    /// (linearizable reads off, or a single node), a session check. Waits for every earlier
    /// counted request.
    Local,
}

/// One session's counted requests in one shard, by position (1, 2, ... in arrival order),
/// and the requests waiting for some of them to finish.
///
/// A waiting request's mark is the position of the last earlier request it must follow, and
/// `finished >= mark` tells that all of those finished: writes and `Read`s never run at the
/// same time (each lane starts only once the other's earlier requests finished), writes finish
/// in log order, and a write that starts ahead of a waiting `Local` (it may: see `may_start`)
/// finishes after every earlier write. A connection whose requests are abandoned is closed.
#[derive(Default)]
struct SessionOrder {
    submitted: u64,
    finished: u64,
    /// Position of the last write and of the last `Read` submitted.
    last_write: u64,
    last_read: u64,
    /// Requests waiting for `finished` to reach their mark, in arrival order, and how many of
    /// them are counted (`Write` or `Read`).
    deferred: VecDeque<Deferred>,
    deferred_counted: usize,
}

struct Deferred {
    mark: u64,
    lane: Lane,
    request: ShardRequest,
}

impl SessionOrder {
    fn idle(&self) -> bool {
        self.finished == self.submitted && self.deferred.is_empty()
    }

    /// A request of the session arrives: counted (unless `Local`), and handed back if it may
    /// start now, else kept until it may.
    fn arrive(&mut self, lane: Lane, request: ShardRequest) -> Option<ShardRequest> {
        let mark = self.admit(lane);
        if self.may_start(lane, mark) {
            return Some(request);
        }
        if lane != Lane::Local {
            self.deferred_counted += 1;
        }
        self.deferred.push_back(Deferred { mark, lane, request });
        None
    }

    /// Counts a request (unless `Local`) and returns its mark: how many of the session's
    /// requests must have finished before it starts.
    fn admit(&mut self, lane: Lane) -> u64 {
        let mark = match lane {
            Lane::Write => self.last_read,
            Lane::Read => self.last_write,
            Lane::Local => self.submitted,
        };
        match lane {
            Lane::Write => {
                self.submitted += 1;
                self.last_write = self.submitted;
            }
            Lane::Read => {
                self.submitted += 1;
                self.last_read = self.submitted;
            }
            Lane::Local => {}
        }
        mark
    }

    /// A request may start now if what it follows finished and it overtakes nothing waiting
    /// but `Local` requests, and those only if it is a write: a waiting `Local` is answered as
    /// soon as the writes it follows finish, before the overtaking write can apply.
    fn may_start(&self, lane: Lane, mark: u64) -> bool {
        let overtakes = match lane {
            Lane::Write => self.deferred_counted > 0,
            Lane::Read | Lane::Local => !self.deferred.is_empty(),
        };
        self.finished >= mark && !overtakes
    }

    /// One counted request finished; returns the waiting requests that may start now, in order.
    fn finish(&mut self) -> Vec<(Lane, ShardRequest)> {
        self.finished += 1;
        assert!(self.finished <= self.submitted, "more requests of a session finished than were counted");
        let mut ready = Vec::new();
        while self.deferred.front().is_some_and(|d| d.mark <= self.finished) {
            let Deferred { lane, request, .. } = self.deferred.pop_front().expect("front exists");
            if lane != Lane::Local {
                self.deferred_counted -= 1;
            }
            ready.push((lane, request));
        }
        ready
    }
}

/// The queue of a core to itself, as far as a read answered inline must know it: such a read
/// must not overtake a watch event, a watermark or a session change still queued (only
/// requests to shards and replies to connections do not bear on it: the reading connection
/// has none of either in flight), nor anything queued before its connection existed (an
/// earlier connection of its session may have left a write there).
#[derive(Default)]
struct SelfQueue {
    /// Messages queued so far, and taken by the router so far.
    sent: Cell<u64>,
    taken: Cell<u64>,
    /// Queued messages of the kinds a read answered inline must wait for.
    order_bearing: Cell<usize>,
}

impl SelfQueue {
    fn bears_on_inline_reads(msg: &Msg) -> bool {
        !matches!(msg, Msg::Shard(_) | Msg::Reply(_))
    }

    fn queued(&self, msg: &Msg) {
        self.sent.set(self.sent.get() + 1);
        if Self::bears_on_inline_reads(msg) {
            self.order_bearing.set(self.order_bearing.get() + 1);
        }
    }

    fn taken(&self, msg: &Msg) {
        self.taken.set(self.taken.get() + 1);
        assert!(self.taken.get() <= self.sent.get(), "the router took a message never queued");
        if Self::bears_on_inline_reads(msg) {
            let left = self.order_bearing.get().checked_sub(1).expect("order-bearing messages are counted");
            self.order_bearing.set(left);
        }
    }

    /// Nothing queued holds back a read inline of a connection that came after `position`.
    fn lets_read_inline(&self, position: u64) -> bool {
        self.order_bearing.get() == 0 && self.taken.get() >= position
    }
}

pub struct Core {
    pub id: usize,
    pub config: Rc<Config>,
    pub shards: RefCell<AHashMap<ShardId, ShardSlot>>,
    pub conns: RefCell<AHashMap<ConnId, Rc<Conn>>>,
    outboxes: Vec<LocalSender<Msg>>,
    /// What the queue to this core itself holds, for reads answered inline (`read_inline`).
    self_queue: SelfQueue,
    /// The writes waiting to be proposed, and the zxids handed out (see `commit.rs`).
    pub(super) commit: CommitQueue,
    touched: RefCell<Vec<SessionId>>,
    /// Sessions shard 0 closed, and since when this core has waited for its own shards to
    /// close them too (a cluster only; `finish_closes_loop`).
    closed_in_shard0: RefCell<UnfinishedCloses>,
    /// Closes this core proposed again because a session shard 0 closed was still open here.
    pub session_closes_redone: Cell<u64>,
    pub sessions: Option<RefCell<SessionTracker>>,
    next_conn: Cell<u64>,
    next_session: Cell<i64>,
    next_token: Cell<u64>,
    pub stats_waiters: RefCell<AHashMap<u64, Rc<LocalSender<Box<CoreStats>>>>>,
    /// Request latencies, WAL fsync times and batch sizes (for mntr/srvr).
    pub metrics: RefCell<CoreMetrics>,
    pub requests_total: Cell<u64>,
    /// The node-wide zxid watermark that replies carry (see `watermark.rs`).
    watermark: RefCell<Watermark>,
    /// Parts of gathered reads waiting for this core to apply through their cut (`cut.rs`).
    cut_waiters: RefCell<Vec<ShardRequest>>,
    /// Frames over max-request-bytes (their connections were closed): mntr's
    /// zk_large_requests_rejected.
    pub large_requests_rejected: Cell<u64>,
    /// Parts of gathered reads asked again for a consistent cut (`cut.rs`), and gathered reads
    /// answered OPERATIONTIMEOUT for finding none.
    pub gathered_read_retries: Cell<u64>,
    pub gathered_read_timeouts: Cell<u64>,
    /// Reads answered at once on the connection's own core (`read_inline`), without the
    /// message to the shard and back.
    pub reads_inline: Cell<u64>,
    /// Reads served after a ReadIndex round (linearizable reads, `answer_sync`).
    pub reads_linearizable_served: Cell<u64>,
    /// Links to this core of the other voters (None for a single node).
    pub transport: Option<Transport>,
    /// Lease probes to the group's leader waiting for their answer (`lease.rs`).
    pub(super) lease_probes: RefCell<Probes>,
    /// Core 0 of a cluster: reattaches waiting for the leader to renew their session.
    pub(super) renewals: RefCell<Renewals<ShardRequest>>,
    /// Connections closed because their session's lease was not renewed in time.
    pub session_leases_lapsed: Cell<u64>,
    /// Whether this core serves clients (a cluster node out of contact with a group's leader
    /// does not, `lease.rs`); for logging the changes.
    pub(super) serving: Cell<bool>,
    /// Connections one of whose requests was abandoned here (their client sees the connection
    /// close), with when: none of their later requests may apply, or a session's writes could
    /// apply out of order. Kept `ABANDONED_KEPT` (requests of a gone connection still counted
    /// in a session's order start when the requests before them finish), then forgotten.
    abandoned_conns: RefCell<AHashMap<ConnId, Instant>>,
    /// Every voter's node id, this node's included.
    voters: Vec<NodeId>,
    pub group_leaders: Arc<GroupLeaders>,
    /// Where this core's Raft group stands (set by the replication loop, for mntr).
    group_status: Cell<GroupStatus>,
    /// The group's snapshot in progress and the last one taken (`snapshots.rs`).
    pub(super) snapshots: super::snapshots::SnapshotStatus,
    /// Multis across groups: reports heard, waiters, parked reads (`txns.rs`).
    pub(super) txns: super::txns::TxnRuntime,
    txn_count: Cell<u64>,
}

/// What a core of a cluster node knows of the cluster.
pub struct Cluster {
    pub transport: Option<Transport>,
    pub voters: Vec<NodeId>,
    pub group_leaders: Arc<GroupLeaders>,
}

pub use super::clock::{unix_micros, unix_millis};

impl Core {
    pub fn new(
        id: usize,
        config: Rc<Config>,
        shards: AHashMap<ShardId, ShardSlot>,
        outboxes: Vec<LocalSender<Msg>>,
        write_signal: LocalSender<()>,
        log_zxid: Zxid,
        cluster: Cluster,
    ) -> Core {
        let sessions = (id == 0).then(|| RefCell::new(SessionTracker::new()));
        let last_applied = shards.values().map(|slot| slot.shard.last_zxid()).max().unwrap_or(0);
        cluster.group_leaders.set_applied(id, last_applied);
        // ZooKeeper's scheme: node id in the top byte, start time below it, so session ids of
        // different nodes and of different runs of one node do not collide; cores interleave.
        let base = ((unix_millis() << 24) as u64 >> 8) as i64 | ((config.node_id as i64) << 56);
        Core {
            id,
            shards: RefCell::new(shards),
            conns: RefCell::new(AHashMap::new()),
            outboxes,
            self_queue: SelfQueue::default(),
            commit: CommitQueue::new(write_signal, last_applied.max(log_zxid), last_applied),
            touched: RefCell::new(Vec::new()),
            closed_in_shard0: RefCell::new(UnfinishedCloses::default()),
            session_closes_redone: Cell::new(0),
            sessions,
            next_conn: Cell::new(0),
            next_session: Cell::new(base + id as i64),
            next_token: Cell::new(1),
            stats_waiters: RefCell::new(AHashMap::new()),
            metrics: RefCell::new(CoreMetrics::default()),
            requests_total: Cell::new(0),
            watermark: RefCell::new(Watermark::new(config.cores)),
            cut_waiters: RefCell::new(Vec::new()),
            large_requests_rejected: Cell::new(0),
            gathered_read_retries: Cell::new(0),
            reads_inline: Cell::new(0),
            reads_linearizable_served: Cell::new(0),
            gathered_read_timeouts: Cell::new(0),
            transport: cluster.transport,
            lease_probes: RefCell::new(Probes::default()),
            renewals: RefCell::new(Renewals::default()),
            session_leases_lapsed: Cell::new(0),
            serving: Cell::new(cluster.voters.len() <= 1),
            abandoned_conns: RefCell::new(AHashMap::new()),
            voters: cluster.voters,
            group_leaders: cluster.group_leaders,
            group_status: Cell::new(GroupStatus::default()),
            snapshots: super::snapshots::SnapshotStatus::default(),
            txns: super::txns::TxnRuntime::new(id),
            txn_count: Cell::new(unix_micros() as u64),
            config,
        }
    }

    pub fn cores(&self) -> usize {
        self.config.cores
    }

    /// This node's role: the one source of `Mode:` and `zk_server_state`.
    pub fn role(&self) -> Role {
        self.group_leaders.role()
    }

    pub fn is_voter(&self, node: NodeId) -> bool {
        self.voters.contains(&node)
    }

    /// The group's term, as the replication loop last reported it.
    pub(super) fn group_term(&self) -> u64 {
        self.group_status.get().term
    }

    /// The last entry of the group applied here, as the replication loop last reported it.
    pub(super) fn group_applied_index(&self) -> u64 {
        self.group_status.get().applied_index
    }

    pub(super) fn set_group_status(&self, status: GroupStatus) {
        self.group_status.set(status);
    }

    /// This node has peers (its groups have other voters).
    pub fn is_clustered(&self) -> bool {
        self.voters.len() > 1
    }

    /// What the same core of another voter sent.
    pub fn on_peer_message(&self, from: NodeId, message: PeerMessage) {
        match message {
            PeerMessage::Raft(message) if message.to == NodeId::from(self.config.node_id) => {
                self.commit.deliver(message)
            }
            PeerMessage::Raft(message) => {
                tracing::warn!(core = self.id, from, to = message.to, "Raft message for another node; dropped")
            }
            PeerMessage::Forward { origin, token, term, shard, command, dependencies } => {
                if core_of_shard(shard, self.cores()) != self.id {
                    tracing::warn!(core = self.id, from, shard, "forwarded write for a shard of another core; dropped");
                    return;
                }
                if dependencies.len() >= self.cores() {
                    tracing::warn!(
                        core = self.id,
                        from,
                        count = dependencies.len(),
                        "forwarded write with more dependencies than other groups; dropped"
                    );
                    return;
                }
                let from = WriteFrom::Peer { origin, token, term };
                self.commit.queue(Write { shard, from, command, dependencies });
            }
            PeerMessage::Touch { token, sessions, urgent } => self.on_lease_probe(from, token, &sessions, urgent),
            PeerMessage::Touched { token, unknown } => self.on_lease_confirmed(token, &unknown),
            PeerMessage::Fence { at_least } => self.commit.want_fence(at_least),
            PeerMessage::SnapshotChunk { index, term, offset, total, bytes } => {
                let header = crate::snapshot_transfer::ChunkHeader { from, index, term, offset, total };
                super::snapshots::on_chunk(self, header, bytes);
            }
            PeerMessage::SnapshotAck { index, received, installed } => {
                super::snapshots::on_ack(self, from, index, received, installed)
            }
            PeerMessage::ReadIndex { token, index } => self.commit.deliver_read_index(token, index),
            PeerMessage::Hello { .. } => {
                tracing::warn!(core = self.id, from, "unexpected peer message; dropped");
            }
        }
    }

    /// This node started or stopped leading the core's group. A new leader of the session
    /// group (core 0) gives every session a full timeout, as ZooKeeper does after an election:
    /// the old leader's clock of when each was last heard from is gone.
    pub(super) fn on_leadership(&self, leading: bool) {
        if !leading || self.sessions.is_none() {
            return;
        }
        let open: Vec<(SessionId, i32)> = {
            let shards = self.shards.borrow();
            let shard0 = &shards.get(&0).expect("shard 0 lives on core 0").shard;
            shard0.sessions().into_iter().map(|(session, info)| (session, info.timeout_ms)).collect()
        };
        self.with_tracker(|t| t.take_over(open, Instant::now()));
    }

    /// A write, sync or linearizable read that will get no answer: its session's later
    /// requests stop waiting for it and its connection closes (the client sees
    /// ConnectionLoss: maybe applied).
    pub(super) fn abandon_write(&self, request: ShardRequest, reason: &'static str) {
        let mut shards = self.shards.borrow_mut();
        let slot = shards.get_mut(&request.shard).expect("shard of a write lives here");
        self.abandon_in(slot, request, reason);
    }

    /// `abandon_write` with the request's shard at hand.
    fn abandon_in(&self, slot: &mut ShardSlot, request: ShardRequest, reason: &'static str) {
        if request.conn != INTERNAL_CONN {
            let now = Instant::now();
            let mut abandoned = self.abandoned_conns.borrow_mut();
            abandoned.retain(|_, since| now.duration_since(*since) < ABANDONED_KEPT);
            abandoned.entry(request.conn).or_insert(now);
        }
        self.finish(slot, request.session);
        if request.conn == INTERNAL_CONN {
            tracing::warn!(
                core = self.id,
                shard = request.shard,
                reason,
                "a write of the server's own was not committed"
            );
            return;
        }
        self.send(core_of_conn(request.conn), Msg::CloseConn { conn: request.conn, reason });
    }

    pub fn send(&self, core: usize, msg: Msg) {
        if core == self.id {
            self.self_queue.queued(&msg);
        }
        // Outboxes are unbounded local queues drained by one sender task per peer, so a
        // handler never waits on a full channel (two cores waiting on each other would
        // deadlock); back-pressure comes from the per-connection outstanding limit.
        if self.outboxes[core].try_send(msg).is_err() {
            tracing::error!(core, "outbox closed; message dropped during shutdown");
        }
    }

    pub fn send_to_shard(&self, request: ShardRequest) {
        let core = core_of_shard(request.shard, self.cores());
        self.send(core, Msg::Shard(request));
    }

    pub fn new_conn_id(&self) -> ConnId {
        let local = self.next_conn.get();
        assert!(local < 1 << CONN_CORE_SHIFT, "connection counter exhausted");
        self.next_conn.set(local + 1);
        ((self.id as u64) << CONN_CORE_SHIFT) | local
    }

    pub fn new_session_id(&self) -> SessionId {
        let id = self.next_session.get();
        self.next_session.set(id + self.cores() as i64);
        id
    }

    pub fn new_token(&self) -> u64 {
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        token
    }

    /// The zxid replies leave with: the node-wide watermark.
    pub fn watermark(&self) -> Zxid {
        self.watermark.borrow().watermark()
    }

    /// With no batch in flight, everything this core assigned is applied and its notifications
    /// are queued: it promises as much as it heard from any core (reserving those zxids) and
    /// tells every core, itself included, behind those notifications.
    pub fn announce_applied(&self) {
        let heard = self.watermark.borrow().highest_heard();
        let Some(through) = self.commit.applied_through(heard) else { return };
        let news = self.watermark.borrow_mut().promise(through);
        if let Some(zxid) = news {
            for core in 0..self.cores() {
                self.send(core, Msg::Applied { core: self.id, zxid });
            }
        }
    }

    pub fn touch(&self, session: SessionId) {
        self.touched.borrow_mut().push(session);
    }

    /// Handles one message addressed to this core. Never awaits.
    pub fn handle(self: &Rc<Self>, msg: Msg) {
        match msg {
            Msg::Shard(request) => self.handle_shard_request(request),
            Msg::TakeSnapshot => {
                self.snapshots.requested.set(true);
                self.commit.wake();
            }
            Msg::Reply(reply) => {
                let conn = self.conns.borrow().get(&reply.conn).cloned();
                match conn {
                    Some(conn) => conn.on_reply(reply),
                    None if self.reads_linearizable() && matches!(reply.body, ReplyBody::Read(_)) => {
                        // A read that waited for its read index may have registered a watch
                        // after the connection was dropped there: drop it again.
                        let core = core_of_shard(reply.shard, self.cores());
                        self.send(core, Msg::DropConn { conn: reply.conn });
                    }
                    None => {}
                }
            }
            Msg::Notify { conn, shard, event, path, zxid } => {
                let found = self.conns.borrow().get(&conn).cloned();
                if let Some(found) = found {
                    found.on_notification(shard, event, &path, zxid);
                }
            }
            Msg::DropConn { conn } => {
                self.cut_waiters.borrow_mut().retain(|request| request.conn != conn);
                for slot in self.shards.borrow_mut().values_mut() {
                    // Deferred local reads of the connection would register watches nobody
                    // hears. Counted requests stay: their session's later requests wait for
                    // them to finish (a linearizable read's watch is dropped again when its
                    // reply finds no connection).
                    for order in slot.sessions.values_mut() {
                        order.deferred.retain(|d| d.request.conn != conn || d.lane != Lane::Local);
                    }
                    slot.shard.drop_connection(conn);
                }
            }
            // In a cluster the next lease probe carries them to the session group's leader.
            Msg::Touch { sessions } => self.with_tracker(|t| t.touch(&sessions, Instant::now())).unwrap_or(()),
            Msg::SessionAttached { session, timeout_ms, conn, create } => {
                self.attach_session(session, timeout_ms, conn, create)
            }
            Msg::SessionDetached { session, conn } => {
                self.with_tracker(|t| t.detach_conn(session, conn));
            }
            Msg::SessionClosed { session } => {
                self.with_tracker(|t| t.remove(session));
            }
            Msg::SessionGone { session } => {
                self.closed_in_shard0.borrow_mut().closed_in_shard0(session, Instant::now())
            }
            Msg::CloseConn { conn, reason } => {
                let found = self.conns.borrow().get(&conn).cloned();
                if let Some(found) = found {
                    found.close(reason);
                }
            }
            Msg::Applied { core, zxid } => {
                self.commit.other_group_applied();
                self.watermark.borrow_mut().on_applied(core, zxid);
                if core != self.id {
                    self.announce_applied();
                }
            }
            Msg::RootAcl { acl } => self.copy_root_acl_where_it_differs(acl),
            Msg::OtherGroupApplied => self.commit.other_group_applied(),
            Msg::Txn(_) | Msg::TxnReleased { .. } => self.on_txn_msg(msg),
            Msg::StatsQuery { reply_core, token } => {
                let stats = Box::new(self.stats());
                self.send(reply_core, Msg::StatsReply { token, stats });
            }
            Msg::StatsReply { token, stats } => {
                let waiter = self.stats_waiters.borrow().get(&token).cloned();
                if let Some(waiter) = waiter {
                    let _ = waiter.try_send(stats);
                }
            }
        }
    }

    /// Start-up, core 0: shard 0 holds the ACL of "/"; every other shard must hold a copy.
    pub fn send_root_acl(&self) {
        let acl = {
            let shards = self.shards.borrow();
            let shard0 = shards.get(&0).expect("shard 0 lives on core 0");
            shard0.shard.node("/").expect("every shard has /").acl().to_vec()
        };
        for core in 0..self.cores() {
            self.send(core, Msg::RootAcl { acl: acl.clone() });
        }
    }

    fn copy_root_acl_where_it_differs(&self, acl: Vec<engine::types::Acl>) {
        let differing: Vec<ShardId> = {
            let shards = self.shards.borrow();
            let differs = |slot: &ShardSlot| slot.shard.node("/").is_some_and(|root| root.acl() != acl);
            shards.iter().filter(|(id, slot)| **id != 0 && differs(slot)).map(|(id, _)| *id).collect()
        };
        for shard in differing {
            tracing::warn!(
                shard,
                "the ACL of / differs from shard 0's (a setACL(\"/\") was cut by a crash); copying it"
            );
            self.propose_internal(shard, Command::CopyRootAcl { acl: acl.clone(), auth: Vec::new() });
        }
    }

    fn attach_session(&self, session: SessionId, timeout_ms: i32, conn: ConnId, create: bool) {
        let now = Instant::now();
        if create {
            self.with_tracker(|t| t.create(session, timeout_ms, conn, now));
            return;
        }
        match self.with_tracker(|t| t.reattach(session, conn, now)) {
            Some(Some(Some(previous))) if previous != conn => {
                self.send(core_of_conn(previous), Msg::CloseConn { conn: previous, reason: "session moved" });
            }
            Some(None) => {
                // It expired between the password check and now: the client must learn it.
                self.send(core_of_conn(conn), Msg::CloseConn { conn, reason: "session expired" });
            }
            _ => {}
        }
    }

    /// After a restart every session found in this core's shards gets a full timeout to
    /// reconnect (as in ZooKeeper); sessions that do not come back expire with their ephemerals.
    pub fn rearm_sessions(&self) {
        let shards = self.shards.borrow();
        for slot in shards.values() {
            for (session, info) in slot.shard.sessions() {
                if self.sessions.is_some() {
                    // The session core tracks its own shards' sessions before serving anything.
                    self.with_tracker(|t| t.create(session, info.timeout_ms, INTERNAL_CONN, Instant::now()));
                } else {
                    let msg = Msg::SessionAttached {
                        session,
                        timeout_ms: info.timeout_ms,
                        conn: INTERNAL_CONN,
                        create: true,
                    };
                    self.send(0, msg);
                }
            }
        }
    }

    /// `f` on the session tracker, if this core has it (core 0).
    pub(super) fn with_tracker_if_any<T>(&self, f: impl FnOnce(&mut SessionTracker) -> T) -> Option<T> {
        self.sessions.as_ref().map(|tracker| f(&mut tracker.borrow_mut()))
    }

    /// Start-up, core 0 of a cluster: shard 0's tombstones (sessions it closed recently, as
    /// replayed from the log) go to every core, as when their closes applied, so a close that
    /// this node's other groups had not applied before a restart is still finished
    /// (`finish_closes_loop`) by whichever node leads them.
    pub fn announce_closed_sessions(&self) {
        if !self.is_clustered() {
            return;
        }
        let closed = {
            let shards = self.shards.borrow();
            shards.get(&0).expect("shard 0 lives on core 0").shard.recently_closed_sessions()
        };
        for session in closed {
            for core in 0..self.cores() {
                self.send(core, Msg::SessionGone { session });
            }
        }
    }

    pub(super) fn with_tracker<T>(&self, f: impl FnOnce(&mut SessionTracker) -> T) -> Option<T> {
        match &self.sessions {
            Some(tracker) => Some(f(&mut tracker.borrow_mut())),
            None => {
                tracing::error!(core = self.id, "session message sent to a core without the session tracker");
                None
            }
        }
    }

    /// Whether a request of `conn` was abandoned here: its later ones must not apply.
    pub(super) fn is_abandoned(&self, conn: ConnId) -> bool {
        conn != INTERNAL_CONN && self.abandoned_conns.borrow().contains_key(&conn)
    }

    /// Reads are linearizable here: the option is on and this node has peers.
    pub fn reads_linearizable(&self) -> bool {
        self.config.linearizable_reads && self.is_clustered()
    }

    fn lane_of(&self, op: &ShardOp) -> Lane {
        match op {
            ShardOp::Write(_) => Lane::Write,
            // Through the group's leader (a ReadIndex round), as ZooKeeper sends a sync through
            // its leader: the answer comes once every write committed before it is applied here.
            ShardOp::Sync if self.is_clustered() => Lane::Read,
            // Each part of a gathered read too: every part is then served from a state at least
            // as new as its read index, and the cut they share is one (`cut.rs`).
            ShardOp::Read(_) | ShardOp::GatheredRead { .. } if self.reads_linearizable() => Lane::Read,
            ShardOp::Read(_)
            | ShardOp::Sync
            | ShardOp::GatheredRead { .. }
            | ShardOp::CheckSession { .. }
            | ShardOp::RenewSession
            | ShardOp::AwaitTxn(_) => Lane::Local,
        }
    }

    fn handle_shard_request(self: &Rc<Self>, request: ShardRequest) {
        if let ShardOp::RenewSession = request.op {
            return self.renew_session(request);
        }
        if let ShardOp::AwaitTxn(txn) = request.op {
            return self.await_txn(request, txn);
        }
        let mut shards = self.shards.borrow_mut();
        let slot = shards
            .get_mut(&request.shard)
            .unwrap_or_else(|| panic!("shard {} routed to core {} which does not own it", request.shard, self.id));
        let lane = self.lane_of(&request.op);
        if lane == Lane::Local && slot.idle(request.session) {
            return self.start(slot, lane, request);
        }
        let order = slot.sessions.entry(request.session).or_default();
        if let Some(request) = order.arrive(lane, request) {
            self.start(slot, lane, request);
        }
    }

    /// Proposes a write, starts the ReadIndex round of a sync or linearizable read, or answers
    /// a local read.
    fn start(&self, slot: &mut ShardSlot, lane: Lane, mut request: ShardRequest) {
        if lane != Lane::Local && self.is_abandoned(request.conn) {
            return self.abandon_in(slot, request, "an earlier request of its connection was abandoned");
        }
        match lane {
            Lane::Write => {
                let ShardOp::Write(command) = std::mem::replace(&mut request.op, ShardOp::Sync) else {
                    unreachable!("the write lane holds writes")
                };
                self.commit.propose(request, command);
            }
            Lane::Read => self.commit.propose_sync(request),
            Lane::Local => self.serve_read(slot, request),
        }
    }

    fn serve_read(&self, slot: &mut ShardSlot, request: ShardRequest) {
        if let Some(txn) = self.read_held_by(slot, &request) {
            // A multi across groups holds the path: the read sees all of it or none of it.
            return self.park(txn, request);
        }
        if let ShardOp::GatheredRead { .. } = request.op {
            return self.serve_gathered_read(slot, request);
        }
        let (body, notifications) = match &request.op {
            ShardOp::Read(op) => {
                let caller = Caller { session: request.session, conn: request.conn, auth: &request.auth };
                let (result, notifications) = slot.shard.read(caller, op);
                (ReplyBody::Read(result), notifications)
            }
            ShardOp::Sync => (ReplyBody::Synced, Vec::new()),
            ShardOp::CheckSession { passwd } => {
                // Shard 0 lives on the session core: a session whose expiry is already decided
                // (its close not yet applied) is not handed out again.
                let tracked = self.sessions.as_ref().is_none_or(|t| t.borrow().contains(request.session));
                let info = slot.shard.session(request.session).filter(|_| tracked);
                let timeout = info.filter(|s| s.passwd == *passwd).map(|s| s.timeout_ms);
                (ReplyBody::Session(timeout), Vec::new())
            }
            ShardOp::Write(_) => unreachable!("writes go through the commit loop"),
            ShardOp::RenewSession => unreachable!("renewals are handled by renew_session"),
            ShardOp::AwaitTxn(_) => unreachable!("waits for decisions are handled by await_txn"),
            ShardOp::GatheredRead { .. } => unreachable!("served by serve_gathered_read"),
        };
        self.send_notifications(request.shard, notifications);
        self.reply(&request, body);
    }

    /// How many messages this core has queued to itself so far: a new connection's reads are
    /// answered inline only once all of them were taken (`read_inline`).
    pub fn self_queue_position(&self) -> u64 {
        self.self_queue.sent.get()
    }

    /// Serves a read of one path (exists, getData, getChildren(2), getACL) in a shard of this
    /// core for a connection of this core right away, if that is what the queued path would
    /// answer: nothing that bears on it is queued for this core (no watch event or watermark
    /// news sent before the read still on its way to the connection, nothing queued before
    /// the connection, which came after `conn_position`, existed: see `SelfQueue`) and the
    /// session has no write pending in the shard (a session's read sees its earlier writes).
    /// None: queue it.
    pub fn read_inline(
        &self,
        shard: ShardId,
        caller: Caller<'_>,
        conn_position: u64,
        op: &ReadOp,
    ) -> Option<Result<ReadResult, ZkError>> {
        let single_path = matches!(
            op,
            ReadOp::Exists { .. }
                | ReadOp::GetData { .. }
                | ReadOp::GetChildren { .. }
                | ReadOp::GetChildren2 { .. }
                | ReadOp::GetAcl { .. }
        );
        let here = core_of_shard(shard, self.cores()) == self.id;
        if !single_path || !here || !self.self_queue.lets_read_inline(conn_position) || self.reads_linearizable() {
            return None;
        }
        let mut shards = self.shards.borrow_mut();
        let slot = shards.get_mut(&shard)?;
        if !slot.idle(caller.session) || slot.shard.holder_of(op.path()).is_some() {
            return None;
        }
        let (result, notifications) = slot.shard.read(caller, op);
        // Only setWatches fires events from a read.
        assert!(notifications.is_empty(), "a single-path read fired watch events");
        Some(result)
    }

    fn send_notifications(&self, shard: ShardId, notifications: Vec<engine::types::Notification>) {
        for n in notifications {
            self.send(
                core_of_conn(n.conn),
                Msg::Notify { conn: n.conn, shard, event: n.event, path: n.path, zxid: n.zxid },
            );
        }
    }

    pub(super) fn reply(&self, request: &ShardRequest, body: ReplyBody) {
        if request.conn == INTERNAL_CONN {
            return;
        }
        self.reply_stamped(request, body, None);
    }

    fn reply_stamped(&self, request: &ShardRequest, body: ReplyBody, stamp: Option<PartStamp>) {
        if request.conn == INTERNAL_CONN {
            return;
        }
        let (conn, seq, part, shard) = (request.conn, request.seq, request.part, request.shard);
        let reply = Reply { conn, seq, part, shard, body, stamp };
        self.send(core_of_conn(request.conn), Msg::Reply(reply));
    }

    /// The zxid this core has applied everything through, and will assign nothing at or below,
    /// if it is at least `at_least`: when idle it reserves up to `at_least`; while a batch is in
    /// flight it is the last applied zxid.
    fn valid_through(&self, at_least: Zxid) -> Option<Zxid> {
        let through = self.commit.applied_through(at_least).unwrap_or_else(|| self.commit.last_applied());
        (through >= at_least).then_some(through)
    }

    /// A part of a gathered read: answered with its moment, or parked until this core has
    /// applied everything through what the other parts need (`cut.rs`).
    fn serve_gathered_read(&self, slot: &mut ShardSlot, request: ShardRequest) {
        let ShardOp::GatheredRead { op, valid_through_at_least } = &request.op else {
            unreachable!("called for gathered reads")
        };
        let Some(valid_through) = self.valid_through(*valid_through_at_least) else {
            self.ask_fence(*valid_through_at_least);
            self.cut_waiters.borrow_mut().push(request);
            return;
        };
        let caller = Caller { session: request.session, conn: request.conn, auth: &request.auth };
        let (result, notifications) = slot.shard.read(caller, op);
        let changed = slot.shard.last_change_read_by(request.session, op);
        self.send_notifications(request.shard, notifications);
        let stamp = PartStamp { changed, valid_through };
        self.reply_stamped(&request, ReplyBody::Read(result), Some(stamp));
    }

    /// A follower cannot promise zxids of its group (the leader assigns them): it asks the
    /// leader for a fence above `at_least` instead, so a parked part of a gathered read does
    /// not wait for the next write to an idle group.
    fn ask_fence(&self, at_least: Zxid) {
        let me = NodeId::from(self.config.node_id);
        let (Some(transport), Some(leader)) = (&self.transport, self.group_leaders.leader(self.id)) else { return };
        if leader != me && self.commit.should_ask_fence(at_least, Instant::now()) {
            transport.send(leader, PeerMessage::Fence { at_least });
        }
    }

    /// After a batch: the parked parts of gathered reads whose moment has come.
    pub(super) fn serve_cut_waiters(&self) {
        let waiters = std::mem::take(&mut *self.cut_waiters.borrow_mut());
        let mut shards = self.shards.borrow_mut();
        for request in waiters {
            let slot = shards.get_mut(&request.shard).expect("a parked part's shard lives here");
            self.serve_gathered_read(slot, request);
        }
    }

    /// Proposes a write the server makes itself (expiry, reaping); nobody waits for the reply.
    pub fn propose_internal(&self, shard: ShardId, command: Command) {
        self.propose_internal_after(shard, command, Vec::new());
    }

    /// As `propose_internal`, for a write that must apply after everything this node has
    /// applied in the other groups (one order across groups): a decision on a multi across
    /// groups after every prepare, a finish after its decision.
    pub(super) fn propose_internal_after_other_groups(&self, shard: ShardId, command: Command) {
        let dependencies = self.applied_in_other_groups(shard);
        self.propose_internal_after(shard, command, dependencies);
    }

    fn propose_internal_after(&self, shard: ShardId, command: Command, dependencies: Vec<(u16, Zxid)>) {
        let request = ShardRequest {
            shard,
            conn: INTERNAL_CONN,
            seq: 0,
            part: 0,
            session: 0,
            auth: Default::default(),
            op: ShardOp::Write(command),
            dependencies,
        };
        self.send_to_shard(request);
    }

    /// One order across groups: what a write to `shard` depends on, everything this node has
    /// applied in the other groups now, so no replica shows the write without them.
    pub(super) fn applied_in_other_groups(&self, shard: ShardId) -> Vec<(u16, Zxid)> {
        let own = core_of_shard(shard, self.cores());
        let leaders = &self.group_leaders;
        super::driver::dependencies_on_other_groups(own, (0..leaders.groups()).map(|g| leaders.applied(g)))
    }

    /// Applies a committed entry to its shard and answers it: its watch notifications are sent
    /// before its reply (over the same FIFO channels, so a client sees the event before any
    /// reply that could observe the change), then the reads that waited for it are served.
    pub(super) fn apply_and_reply(&self, request: ShardRequest, entry: LogEntry) {
        let mut shards = self.shards.borrow_mut();
        let result = self.apply_entry(&mut shards, &entry);
        self.reply(&request, ReplyBody::Write(result));
        let slot = shards.get_mut(&entry.shard).expect("shard of an applied entry");
        self.finish(slot, request.session);
        self.on_applied_close(&entry);
    }

    /// Applies a committed entry to its shard, or a multi across shards to all of its shards
    /// at once, and sends the watch notifications (before any reply: see `apply_and_reply`).
    fn apply_entry(&self, shards: &mut AHashMap<ShardId, ShardSlot>, entry: &LogEntry) -> Result<WriteResult, ZkError> {
        let others = entry.other_shards();
        if others.is_empty() {
            let slot = shards.get_mut(&entry.shard).expect("shard of an applied entry");
            let applied = slot.shard.apply(entry);
            self.send_notifications(entry.shard, applied.notifications);
            if let Ok(WriteResult::Txn(txn_applied)) = &applied.result {
                self.on_txn_applied(entry, txn_applied);
            }
            return applied.result;
        }
        let mut touched: Vec<&mut Shard> = shards
            .iter_mut()
            .filter(|(id, _)| **id == entry.shard || others.contains(id))
            .map(|(_, slot)| &mut slot.shard)
            .collect();
        assert_eq!(touched.len(), others.len() + 1, "a multi across shards of another core applied here");
        if entry.command.is_txn() {
            let applied = engine::txn::apply_txn(&mut touched, entry);
            for (shard, notifications) in applied.notifications {
                self.send_notifications(shard, notifications);
            }
            self.on_txn_applied(entry, &applied.applied);
            return Ok(WriteResult::Txn(applied.applied));
        }
        let applied = engine::shard::apply_across(&mut touched, entry);
        for (shard, notifications) in applied.notifications {
            self.send_notifications(shard, notifications);
        }
        applied.result
    }

    /// A decision or finish applied ahead of its place, while the group's next entry waits for
    /// a path its multi holds (`GroupDriver::apply_release_ahead`).
    pub(super) fn apply_txn_ahead(&self, entry: &LogEntry) {
        let mut shards = self.shards.borrow_mut();
        let mut others = entry.other_shards();
        others.push(entry.shard);
        let mut touched: Vec<&mut Shard> =
            shards.iter_mut().filter(|(id, _)| others.contains(id)).map(|(_, slot)| &mut slot.shard).collect();
        let applied = match entry.command {
            Command::TxnFinish { .. } => engine::txn::finish_early(&mut touched, entry),
            _ => engine::txn::decide_early(&mut touched, entry),
        };
        for (shard, notifications) in applied.notifications {
            self.send_notifications(shard, notifications);
        }
        self.on_txn_applied(entry, &applied.applied);
    }

    /// The multi across groups holding a path `entry` would read or change here.
    pub(super) fn entry_held_by(&self, entry: &LogEntry) -> Option<engine::command::TxnId> {
        let shards = self.shards.borrow();
        let mut named = entry.other_shards();
        named.push(entry.shard);
        named
            .iter()
            .filter_map(|id| shards.get(id))
            .find_map(|slot| engine::txn::holder_of_command(&slot.shard, &entry.command))
    }

    /// A new multi across groups' id: this node's, unique among its multis (a count per core
    /// that starts at the clock in microseconds, so a restart does not reuse one).
    pub(super) fn new_txn_id(&self) -> engine::command::TxnId {
        let count = self.txn_count.get() + 1;
        self.txn_count.set(count);
        engine::command::TxnId { node: u64::from(self.config.node_id), serial: count << 8 | self.id as u64 }
    }

    /// Whether any path of this core's shards is held by a multi across groups.
    pub(super) fn holds_any(&self) -> bool {
        self.shards.borrow().values().any(|slot| slot.shard.holds_any())
    }

    /// Shard 0 closed a session: in a cluster, every core makes sure its shards close it too.
    /// Each shard's close is an entry of its own group, and one abandoned by a leader change
    /// while shard 0's committed would leave the session's ephemerals there for good.
    fn on_applied_close(&self, entry: &LogEntry) {
        if let (0, true, Command::CloseSession { session }) = (entry.shard, self.is_clustered(), &entry.command) {
            for core in 0..self.cores() {
                self.send(core, Msg::SessionGone { session: *session });
            }
        }
    }

    /// A client's sync, or a linearizable read, in a cluster: this node has applied through
    /// its read index, so everything committed before it was asked is visible. A sync is
    /// answered Synced; a read is served from the shard now, as a local read would be.
    pub(super) fn answer_sync(&self, request: ShardRequest) {
        let mut shards = self.shards.borrow_mut();
        let slot = shards.get_mut(&request.shard).expect("shard of a sync lives here");
        let session = request.session;
        match request.op {
            ShardOp::Sync => self.reply(&request, ReplyBody::Synced),
            ShardOp::Read(_) | ShardOp::GatheredRead { .. } => {
                self.reads_linearizable_served.set(self.reads_linearizable_served.get() + 1);
                self.serve_read(slot, request);
            }
            _ => unreachable!("only syncs and reads take a ReadIndex round"),
        }
        self.finish(slot, session);
    }

    /// Applies a committed entry another node proposed (its client is connected there): its
    /// watch notifications go to this node's watchers; nobody here waits for a reply.
    pub(super) fn apply_replicated(&self, entry: LogEntry) {
        if entry.shard == 0 {
            self.track_sessions_of(&entry.command);
        }
        let mut shards = self.shards.borrow_mut();
        let _ = self.apply_entry(&mut shards, &entry);
        self.on_applied_close(&entry);
    }

    /// Every node's session core tracks every session of the cluster (from shard 0, where
    /// each is opened and closed), so whichever node leads the session group can expire them.
    /// A session closed elsewhere (expired by the leader) closes its connection here.
    fn track_sessions_of(&self, command: &Command) {
        if let Some(Some(conn)) = self.with_tracker(|t| t.apply(command, Instant::now())) {
            self.send(core_of_conn(conn), Msg::CloseConn { conn, reason: "session expired" });
        }
    }

    /// Counts a finished request of `session` (a write applied or abandoned, a sync or
    /// linearizable read answered or abandoned) and starts the requests that waited for it.
    fn finish(&self, slot: &mut ShardSlot, session: SessionId) {
        let order = slot.sessions.get_mut(&session).expect("a finished request was counted");
        let ready = order.finish();
        if order.idle() {
            slot.sessions.remove(&session);
        }
        for (lane, request) in ready {
            self.start(slot, lane, request);
        }
    }

    /// Every `interval`, proposes the removal of expired TTL nodes and empty containers.
    pub async fn reap_loop(self: Rc<Self>) {
        let interval = Duration::from_millis(self.config.reap_interval_ms);
        loop {
            glommio::timer::sleep(interval).await;
            let now_ms = unix_millis();
            let mut doomed = Vec::new();
            for (id, slot) in self.shards.borrow().iter() {
                doomed.extend(slot.shard.reap_candidates(now_ms).into_iter().map(|path| (*id, path)));
            }
            for (shard, path) in doomed {
                self.propose_internal(shard, Command::Reap { path });
            }
        }
    }

    /// A cluster only: the leader of this core's group proposes the close again in each of its
    /// shards that still holds a session shard 0 closed more than `CLOSE_GRACE` ago (the first
    /// close had time to commit; a duplicate close is a no-op). Every node keeps the list, as
    /// every node applies shard 0, so whichever node leads the group later does it.
    pub async fn finish_closes_loop(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(CLOSE_GRACE / 2).await;
            let redo = {
                let shards = self.shards.borrow();
                let open_in = |session| {
                    let open = shards.iter().filter(|(_, slot)| slot.shard.session(session).is_some());
                    open.map(|(id, _)| *id).collect()
                };
                self.closed_in_shard0.borrow_mut().to_close_again(self.commit.leading(), Instant::now(), open_in)
            };
            for (shard, session) in redo {
                tracing::warn!(
                    core = self.id,
                    shard,
                    session = format!("{session:#x}"),
                    "a session shard 0 closed is still open here (its close was abandoned); closing it again"
                );
                self.session_closes_redone.set(self.session_closes_redone.get() + 1);
                self.propose_internal(shard, Command::CloseSession { session });
            }
        }
    }

    /// Sends the sessions touched on this core to the session core, batched.
    pub async fn touch_loop(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(Duration::from_millis(100)).await;
            let mut sessions = std::mem::take(&mut *self.touched.borrow_mut());
            if sessions.is_empty() {
                continue;
            }
            sessions.sort_unstable();
            sessions.dedup();
            self.send(0, Msg::Touch { sessions });
        }
    }

    /// Session core only: closes sessions whose clients went silent for their timeout.
    pub async fn expiry_loop(self: Rc<Self>) {
        let tick = Duration::from_millis((self.config.min_session_timeout_ms as u64 / 4).clamp(10, 250));
        let mut clock = ExpiryClock::new(Instant::now());
        loop {
            glommio::timer::sleep(tick).await;
            let now = Instant::now();
            if let Some(gap) = clock.round(now, tick) {
                // Paused (SIGSTOP, a VM stall) or starved: each session gets a full timeout.
                tracing::warn!(
                    gap_ms = gap.as_millis() as u64,
                    "the expiry loop was held up; every session gets a full timeout"
                );
                self.with_tracker(|t| t.rearm_all(now));
                continue;
            }
            let confirmed = self.group_leaders.contact(self.id);
            if !may_expire(self.is_clustered(), self.commit.leading(), confirmed, now) {
                continue;
            }
            let expired = self.with_tracker(|t| t.expire(now)).unwrap_or_default();
            for (session, owner) in expired {
                tracing::info!(session = format!("{session:#x}"), "session expired");
                for shard in 0..self.config.shards {
                    self.propose_internal(shard, Command::CloseSession { session });
                }
                if let Some(conn) = owner {
                    self.send(core_of_conn(conn), Msg::CloseConn { conn, reason: "session expired" });
                }
            }
        }
    }

    /// Gathers `CoreStats` from every core (for the four-letter words).
    pub async fn gather_stats(self: &Rc<Self>) -> Vec<Box<CoreStats>> {
        let token = self.new_token();
        let (tx, rx) = local_channel::new_bounded(self.cores());
        self.stats_waiters.borrow_mut().insert(token, Rc::new(tx));
        for core in 0..self.cores() {
            self.send(core, Msg::StatsQuery { reply_core: self.id, token });
        }
        let mut all = Vec::with_capacity(self.cores());
        while all.len() < self.cores() {
            match glommio::timer::timeout(Duration::from_secs(5), async { Ok(rx.recv().await) }).await {
                Ok(Some(stats)) => all.push(stats),
                _ => break,
            }
        }
        self.stats_waiters.borrow_mut().remove(&token);
        all.sort_by_key(|s| s.core);
        all
    }

    fn stats(&self) -> CoreStats {
        let shards = self.shards.borrow();
        let mut stats = CoreStats {
            core: self.id,
            metrics: self.metrics.borrow().clone(),
            requests_total: self.requests_total.get(),
            large_requests_rejected: self.large_requests_rejected.get(),
            gathered_read_retries: self.gathered_read_retries.get(),
            reads_inline: self.reads_inline.get(),
            reads_linearizable: self.reads_linearizable_served.get(),
            txns: self.txns.counts.get(),
            session_closes_redone: self.session_closes_redone.get(),
            session_leases_lapsed: self.session_leases_lapsed.get(),
            gathered_read_timeouts: self.gathered_read_timeouts.get(),
            live_sessions: self.sessions.as_ref().map_or(0, |t| t.borrow().len() as u64),
            group: self.group_status.get(),
            snapshots: self.snapshots.figures(),
            ..CoreStats::default()
        };
        for (id, slot) in shards.iter() {
            stats.shards.push((*id, slot.shard.stats(), slot.shard.last_zxid()));
            for (session, info) in slot.shard.sessions() {
                if !info.ephemerals.is_empty() {
                    stats.ephemerals.push((session, info.ephemerals.iter().cloned().collect()));
                }
            }
            stats.watches.extend(slot.shard.watched_paths());
        }
        for conn in self.conns.borrow().values() {
            let c = conn.stats();
            stats.outstanding_requests += c.outstanding;
            stats.connections.push(c);
        }
        stats
    }
}

/// Runs the routing tasks of a core: one per incoming channel, handing each message to
/// `Core::handle`, and one per outgoing channel, draining the core's outbox for that peer.
/// Serves the queue of a core to itself (messages from other cores come by `connect_mesh`).
pub fn spawn_router(core: &Rc<Core>, inbox: LocalReceiver<Msg>) {
    let core = core.clone();
    glommio::spawn_local(async move {
        while let Some(msg) = inbox.recv().await {
            core.self_queue.taken(&msg);
            core.handle(msg);
        }
    })
    .detach();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Request `seq` of session 1 in shard 0.
    fn request(seq: u64, op: ShardOp) -> ShardRequest {
        ShardRequest {
            shard: 0,
            conn: 0,
            seq,
            part: 0,
            session: 1,
            auth: Default::default(),
            op,
            dependencies: Vec::new(),
        }
    }

    #[test]
    fn requests_and_replies_queued_to_the_core_itself_hold_back_no_inline_read_of_an_older_connection() {
        let queue = SelfQueue::default();
        let older_conn = 0;
        let msgs = [Msg::Shard(request(1, ShardOp::Sync)), Msg::Shard(request(2, ShardOp::Sync))];
        for msg in &msgs {
            queue.queued(msg);
        }
        assert!(queue.lets_read_inline(older_conn));
        let newer_conn = 2;
        assert!(!queue.lets_read_inline(newer_conn), "a request queued before the connection came");
        queue.taken(&msgs[0]);
        assert!(!queue.lets_read_inline(newer_conn));
        queue.taken(&msgs[1]);
        assert!(queue.lets_read_inline(newer_conn));
    }

    #[test]
    fn watermark_news_and_other_order_bearing_messages_hold_back_every_inline_read_until_taken() {
        let queue = SelfQueue::default();
        let applied = Msg::Applied { core: 0, zxid: 7 };
        queue.queued(&applied);
        queue.queued(&Msg::TakeSnapshot);
        assert!(!queue.lets_read_inline(0));
        queue.taken(&applied);
        assert!(!queue.lets_read_inline(0), "one order-bearing message is still queued");
        queue.taken(&Msg::TakeSnapshot);
        assert!(queue.lets_read_inline(0) && queue.lets_read_inline(2));
    }

    fn arrive(order: &mut SessionOrder, lane: Lane, seq: u64) -> bool {
        order.arrive(lane, request(seq, ShardOp::Sync)).is_some()
    }

    fn started(ready: Vec<(Lane, ShardRequest)>) -> Vec<u64> {
        ready.into_iter().map(|(_, r)| r.seq).collect()
    }

    #[test]
    fn linearizable_reads_wait_for_earlier_writes_and_later_writes_for_them() {
        let mut order = SessionOrder::default();
        assert!(arrive(&mut order, Lane::Write, 1));
        assert!(!arrive(&mut order, Lane::Read, 2), "a read index may lie below write 1");
        assert!(!arrive(&mut order, Lane::Read, 3));
        assert!(!arrive(&mut order, Lane::Write, 4), "write 4 must not apply before reads 2 and 3 are served");
        assert!(!arrive(&mut order, Lane::Local, 5));
        assert_eq!(started(order.finish()), vec![2, 3], "reads pipeline with each other");
        assert_eq!(started(order.finish()), Vec::<u64>::new());
        assert_eq!(started(order.finish()), vec![4]);
        assert!(!order.idle());
        assert_eq!(started(order.finish()), vec![5], "a local read follows everything before it");
        assert!(order.idle());
    }

    #[test]
    fn without_syncs_writes_pipeline_past_reads_that_wait_for_earlier_writes() {
        let mut order = SessionOrder::default();
        assert!(arrive(&mut order, Lane::Write, 1));
        assert!(!arrive(&mut order, Lane::Local, 2));
        assert!(arrive(&mut order, Lane::Write, 3), "read 2 is answered when write 1 applies, before write 3");
        assert!(!arrive(&mut order, Lane::Local, 4));
        assert_eq!(started(order.finish()), vec![2]);
        assert_eq!(started(order.finish()), vec![4]);
        assert!(order.idle());
    }

    #[test]
    fn a_sync_finishes_after_the_writes_before_it() {
        let mut order = SessionOrder::default();
        assert!(arrive(&mut order, Lane::Write, 1));
        // Its read index may lie below write 1: started at once, it could be answered first and
        // let read 3 go before write 1 applied.
        assert!(!arrive(&mut order, Lane::Read, 2));
        assert!(!arrive(&mut order, Lane::Local, 3));
        assert!(!arrive(&mut order, Lane::Write, 4), "read 3 must not see write 4");
        assert_eq!(started(order.finish()), vec![2]);
        assert_eq!(started(order.finish()), vec![3, 4]);
        assert_eq!(started(order.finish()), Vec::<u64>::new());
        assert!(order.idle());
    }

    #[test]
    #[should_panic(expected = "more requests of a session finished than were counted")]
    fn finishing_more_than_was_counted_is_a_bug() {
        let mut order = SessionOrder::default();
        assert!(arrive(&mut order, Lane::Write, 1));
        order.finish();
        order.finish();
    }
}
