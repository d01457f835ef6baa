//! Messages between cores. Each core owns its shards and its connections; cores talk only by
//! these messages (one bounded SPSC channel per ordered pair of cores), so a shard's state is
//! touched by its core alone.

use super::metrics::{CoreMetrics, GroupStatus};
use engine::command::{Command, ShardId, TxnId};
use engine::request::{ReadOp, ReadResult, WriteResult};
use engine::shard::ShardStats;
use engine::types::{ConnId, EventType, Id, SessionId, Zxid};
use engine::ZkError;
use std::sync::Arc;

/// Connection id of requests the server makes itself (session expiry, reaping): no reply.
pub const INTERNAL_CONN: ConnId = u64::MAX;

/// Connection ids are `core << 48 | counter`: 48 bits of counter never wrap in practice.
pub const CONN_CORE_SHIFT: u32 = 48;

/// The core that owns a connection.
pub fn core_of_conn(conn: ConnId) -> usize {
    (conn >> CONN_CORE_SHIFT) as usize
}

pub enum Msg {
    /// Connection core → shard core.
    Shard(ShardRequest),
    /// The `snap` four-letter word → every core: take a snapshot of the group now.
    TakeSnapshot,
    /// Shard core → connection core: one part of the answer to request `seq`.
    Reply(Reply),
    /// Shard core → connection core: a watch fired.
    Notify {
        conn: ConnId,
        shard: ShardId,
        event: EventType,
        path: String,
        zxid: Zxid,
    },
    /// Connection core → every core: the connection is gone, forget its watches.
    DropConn {
        conn: ConnId,
    },
    /// Any core → session core: these sessions showed signs of life.
    Touch {
        sessions: Vec<SessionId>,
    },
    /// Connection core → session core: a session is attached to a connection; `create` for a
    /// new session, else a reconnect (refused if the session expired meanwhile).
    SessionAttached {
        session: SessionId,
        timeout_ms: i32,
        conn: ConnId,
        create: bool,
    },
    /// Connection core → session core: a session was closed by its client.
    SessionClosed {
        session: SessionId,
    },
    /// Connection core → session core: the connection of a session ended (the session lives
    /// on until it expires or its client reattaches).
    SessionDetached {
        session: SessionId,
        conn: ConnId,
    },
    /// Session core → every core (itself included), in a cluster: shard 0 applied the close
    /// of this session, so every other shard must close it too (`finish_closes_loop`).
    SessionGone {
        session: SessionId,
    },
    /// Session core → connection core: close this connection (session expired or moved).
    CloseConn {
        conn: ConnId,
        reason: &'static str,
    },
    /// A core → every core (itself included), behind its notifications: all of its entries up
    /// to `zxid` are applied and their watch events sent (see `watermark.rs`).
    Applied {
        core: usize,
        zxid: Zxid,
    },
    /// A core that applied entries → a core whose group waits for other groups (`replica.rs`):
    /// look again.
    OtherGroupApplied,
    /// Core 0 → every core at start-up: shard 0's ACL of "/". A shard whose local "/" differs
    /// (a setACL("/") cut by a crash between its two stages) copies it.
    RootAcl {
        acl: Vec<engine::types::Acl>,
    },
    /// Any core → every core: report your counters to `reply_core` under `token`.
    StatsQuery {
        reply_core: usize,
        token: u64,
    },
    StatsReply {
        token: u64,
        stats: Box<CoreStats>,
    },
    /// Between the cores of one node, about multis across groups (`txn_driver.rs`).
    Txn(super::txn_driver::TxnMessage),
    /// A core to itself: the paths `txn` held are released; serve the reads that waited.
    TxnReleased {
        txn: TxnId,
    },
}

pub struct ShardRequest {
    pub shard: ShardId,
    pub conn: ConnId,
    pub seq: u64,
    /// Which part of a gathered request this is (index into the request's parts).
    pub part: u32,
    pub session: SessionId,
    pub auth: Arc<Vec<Id>>,
    pub op: ShardOp,
    /// A write in a cluster: (group, zxid) pairs that every replica must have applied before
    /// it applies this write (what this node had applied when the write was sent; `replica.rs`,
    /// "one order across groups"). Empty otherwise.
    pub dependencies: Vec<(u16, Zxid)>,
}

pub enum ShardOp {
    Read(ReadOp),
    /// One shard's part of a read gathered from every shard ("/", getEphemerals): answered
    /// with a `PartStamp` (see `cut.rs`), once this core has applied everything through
    /// `valid_through_at_least`.
    GatheredRead {
        op: ReadOp,
        valid_through_at_least: Zxid,
    },
    Write(Command),
    /// Answered once every earlier write of the session in this shard has applied and, in a
    /// cluster, everything committed before it (a ReadIndex round).
    Sync,
    /// Is this session open here with this password? Answers its timeout.
    CheckSession {
        passwd: Vec<u8>,
    },
    /// Shard 0, a reattach in a cluster: answered `Renewed` once the session group's leader
    /// confirmed it renewed the session (`lease.rs`).
    RenewSession,
    /// The home shard of a multi's coordinator group: answered (as a write, `TxnApplied::Decided`)
    /// once this node applied the decision on the multi (`txns.rs`).
    AwaitTxn(TxnId),
}

/// Multis across groups as connections of a core saw them end (mntr), and reads of held paths
/// that waited for a finish.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxnCounts {
    pub committed: u64,
    pub aborted: u64,
    /// Tries decided Retry and sent again.
    pub retried: u64,
    /// Multis answered OPERATIONTIMEOUT after every try was decided Retry.
    pub gave_up: u64,
    pub reads_waited: u64,
}

impl TxnCounts {
    pub fn add(&mut self, other: &TxnCounts) {
        self.committed += other.committed;
        self.aborted += other.aborted;
        self.retried += other.retried;
        self.gave_up += other.gave_up;
        self.reads_waited += other.reads_waited;
    }
}

pub struct Reply {
    pub conn: ConnId,
    pub seq: u64,
    pub part: u32,
    pub shard: ShardId,
    pub body: ReplyBody,
    /// For a `GatheredRead`: the moment of this part.
    pub stamp: Option<super::cut::PartStamp>,
}

pub enum ReplyBody {
    Read(Result<ReadResult, ZkError>),
    Write(Result<WriteResult, ZkError>),
    Synced,
    /// A reconnect's session timeout as shard 0 holds it, if it is open and the password matches.
    Session(Option<i32>),
    /// A reattach's session was renewed by the session group's leader as of this time (the
    /// send time of the probe that carried it, `lease.rs`).
    Renewed(std::time::Instant),
}

/// What one core reports for the four-letter words.
#[derive(Default)]
pub struct CoreStats {
    pub core: usize,
    pub shards: Vec<(ShardId, ShardStats, Zxid)>,
    pub connections: Vec<ConnStats>,
    /// (session, ephemeral paths) for `dump`.
    pub ephemerals: Vec<(SessionId, Vec<String>)>,
    /// (connection, watched paths) for `wchs`/`dump`.
    pub watches: Vec<(ConnId, Vec<String>)>,
    /// A copy of the core's histograms; merged over the cores by the four-letter words.
    pub metrics: CoreMetrics,
    pub requests_total: u64,
    pub large_requests_rejected: u64,
    pub gathered_read_retries: u64,
    pub reads_inline: u64,
    pub reads_linearizable: u64,
    /// Multis across groups answered by this core's connections, and reads that waited for one.
    pub txns: TxnCounts,
    /// Session closes proposed again in this core's shards (`Core::finish_closes_loop`).
    pub session_closes_redone: u64,
    /// Connections closed because their session's lease lapsed (`lease.rs`).
    pub session_leases_lapsed: u64,
    pub gathered_read_timeouts: u64,
    pub outstanding_requests: u64,
    pub live_sessions: u64,
    /// The core's Raft group.
    pub group: GroupStatus,
    /// The group's snapshots (`snapshots.rs`).
    pub snapshots: SnapshotFigures,
}

/// A group's snapshots, for mntr.
#[derive(Debug, Clone, Copy, Default)]
pub struct SnapshotFigures {
    /// The entry the newest snapshot (taken, installed or loaded) is after; 0: none.
    pub index: u64,
    /// The last one this node wrote: how long it took and its size.
    pub last_write_ms: u64,
    pub last_bytes: u64,
    pub running: bool,
    /// Snapshots sent whole to followers, and installed from a leader, since start.
    pub sent: u64,
    pub installed: u64,
}

#[derive(Clone)]
pub struct ConnStats {
    pub conn: ConnId,
    pub peer: String,
    pub session: SessionId,
    pub timeout_ms: i32,
    pub outstanding: u64,
    pub received: u64,
    pub sent: u64,
    pub last_zxid: Zxid,
}
