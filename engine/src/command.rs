//! Command records: every mutation of a shard is one `LogEntry`, serialized with rkyv into the
//! WAL (and, later, sent to followers). Applying the entries of a shard's log in order on an
//! empty shard reproduces its tree exactly, so everything apply needs is in the record: the
//! zxid and the time are assigned by the proposer, never read from a clock during apply, and
//! the caller's authenticated identities travel with the command so ACL checks replay too.

use crate::types::{Acl, CreateMode, Id, SessionId, Zxid};
use rkyv::{Archive, Deserialize, Serialize};

/// Index of a shard within a node, `0..shard_count`.
pub type ShardId = u16;

/// One record of a shard's log.
#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct LogEntry {
    pub shard: ShardId,
    pub zxid: Zxid,
    /// Milliseconds since the Unix epoch at proposal time: ctime/mtime of what it creates or
    /// changes, and the clock that TTL expiry is judged by.
    pub time_ms: i64,
    pub command: Command,
}

/// One mutation.
#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub enum Command {
    Create(CreateOp),
    Delete(DeleteOp),
    SetData(SetDataOp),
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
        auth: Vec<Id>,
    },
    /// Gives this shard's local "/" the ACL that shard 0 holds for "/" (where setACL("/") is
    /// checked and applied): creates and deletes of top-level nodes in this shard check it.
    /// Unconditional: shard 0 already checked version and permission. `auth` expands the
    /// `auth` scheme exactly as shard 0 did.
    CopyRootAcl {
        acl: Vec<Acl>,
        auth: Vec<Id>,
    },
    /// All-or-nothing transaction; every op lives in this shard.
    Multi {
        ops: Vec<MultiOp>,
        session: SessionId,
        auth: Vec<Id>,
    },
    /// Opens a session in this shard (sessions are opened in every shard, so every shard can
    /// refuse ephemerals of a session it does not know as open).
    CreateSession {
        session: SessionId,
        timeout_ms: i32,
        passwd: Vec<u8>,
    },
    /// Closes a session: deletes its ephemerals in this shard and forgets it.
    CloseSession {
        session: SessionId,
    },
    /// Deletes a TTL node whose TTL ran out or an empty container, if it still qualifies at
    /// `time_ms` (checked again at apply, so a late reap of a node that got a child is a no-op).
    Reap {
        path: String,
    },
    /// A client's write sent by one connection of its session: applied only if the session has
    /// not moved to a newer connection in this shard since (`MoveSession`), else it fails with
    /// SESSIONMOVED, as on ZooKeeper. A cluster sends every client write this way: a write can
    /// linger in a forward queue while its client reattaches elsewhere.
    OfConnection {
        session: SessionId,
        /// The session's epoch in this shard when the connection got it (the `Moved` answer of
        /// its `MoveSession` here), 0 for the connection that created the session.
        epoch: Zxid,
        write: ClientWrite,
    },
    /// A session moved to a new connection (a reattach in a cluster): its epoch in this shard
    /// goes up by one, so writes of its earlier connections fail from here on in this shard.
    /// Answered `Moved(epoch after)`; SessionExpired for a session this shard does not hold.
    MoveSession {
        session: SessionId,
    },
    /// All-or-nothing transaction over several shards of one group (one log entry, applied to
    /// all of them in one step by `shard::apply_across`): each op names its shard; the entry's
    /// own shard is the first op's. Appended last, so entries written before it decode.
    MultiAcross {
        ops: Vec<(ShardId, MultiOp)>,
        session: SessionId,
        auth: Vec<Id>,
    },
    /// Phase one of a multi across groups, in one of them (`engine::txn`): the group's ops are
    /// applied and held out of sight, or refused. The entry's own shard is the group's home
    /// shard (the lowest of the group), which keeps the group's table of transactions.
    TxnPrepare(TxnPrepare),
    /// The coordinator's decision on a prepared multi across groups, in the coordinator
    /// group's home shard. The first decision logged for a transaction is the one that holds.
    TxnDecide {
        txn: TxnId,
        groups: Vec<u16>,
        outcome: TxnOutcome,
    },
    /// Phase two in one group: the prepared ops become visible (commit) or are taken back.
    /// `shards`: those its prepare changed (the group's home shard first).
    TxnFinish {
        txn: TxnId,
        commit: bool,
        shards: Vec<ShardId>,
        /// The coordinator group (told when the group finished).
        coordinator: u16,
    },
    /// The coordinator forgets decisions that every group has finished.
    TxnForget {
        txns: Vec<TxnId>,
    },
}

/// A multi across groups, named by the node that began it and its own count there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Archive, Serialize, Deserialize)]
#[rkyv(derive(Debug))]
pub struct TxnId {
    pub node: u64,
    pub serial: u64,
}

/// One op of a multi across groups: its place in the client's multi and its shard.
#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct TxnOp {
    pub index: u32,
    pub shard: ShardId,
    pub op: MultiOp,
}

/// A group's part of a multi across groups.
#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct TxnPrepare {
    pub txn: TxnId,
    /// The group that decides (the group of the multi's first op).
    pub coordinator: u16,
    /// Every group with ops, ascending.
    pub groups: Vec<u16>,
    /// This group's ops, in the multi's order.
    pub ops: Vec<TxnOp>,
    /// Ops of the whole multi.
    pub op_count: u32,
    pub session: SessionId,
    pub auth: Vec<Id>,
}

/// What a coordinator decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Archive, Serialize, Deserialize)]
#[rkyv(derive(Debug))]
pub enum TxnOutcome {
    Commit,
    /// The op at `index` of the multi failed with `error` (a ZooKeeper code); none is applied.
    Abort {
        index: u32,
        error: i32,
    },
    /// A group could not vote (its paths were held by another transaction): none is applied,
    /// and the multi is tried again.
    Retry,
}

/// A client's data write as `Command::OfConnection` carries it: the commands of the same name
/// (not a `Command`, so a command never holds a command and decoding one never recurses).
#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub enum ClientWrite {
    Create(CreateOp),
    Delete(DeleteOp),
    SetData(SetDataOp),
    SetAcl { path: String, acl: Vec<Acl>, version: i32, auth: Vec<Id> },
    Multi { ops: Vec<MultiOp>, session: SessionId, auth: Vec<Id> },
    MultiAcross { ops: Vec<(ShardId, MultiOp)>, session: SessionId, auth: Vec<Id> },
}

impl Command {
    /// An entry of a multi across groups (`engine::txn`).
    pub fn is_txn(&self) -> bool {
        matches!(
            self,
            Command::TxnPrepare(_) | Command::TxnDecide { .. } | Command::TxnFinish { .. } | Command::TxnForget { .. }
        )
    }
}

impl ClientWrite {
    /// `command` as a client's data write, or back unchanged if it is another command.
    // The Err is the command moved back, no larger than what came in: boxing it would cost an
    // allocation per write for nothing.
    #[allow(clippy::result_large_err)]
    pub fn of(command: Command) -> Result<ClientWrite, Command> {
        match command {
            Command::Create(op) => Ok(ClientWrite::Create(op)),
            Command::Delete(op) => Ok(ClientWrite::Delete(op)),
            Command::SetData(op) => Ok(ClientWrite::SetData(op)),
            Command::SetAcl { path, acl, version, auth } => Ok(ClientWrite::SetAcl { path, acl, version, auth }),
            Command::Multi { ops, session, auth } => Ok(ClientWrite::Multi { ops, session, auth }),
            Command::MultiAcross { ops, session, auth } => Ok(ClientWrite::MultiAcross { ops, session, auth }),
            other => Err(other),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct CreateOp {
    pub path: String,
    /// None = ZooKeeper's null data (jute length -1), kept apart from empty data.
    pub data: Option<Vec<u8>>,
    pub acl: Vec<Acl>,
    pub mode: CreateMode,
    /// TTL in milliseconds for TTL modes, else 0.
    pub ttl_ms: i64,
    pub session: SessionId,
    pub auth: Vec<Id>,
}

#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct DeleteOp {
    pub path: String,
    pub version: i32,
    pub auth: Vec<Id>,
}

#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct SetDataOp {
    pub path: String,
    pub data: Option<Vec<u8>>,
    pub version: i32,
    pub auth: Vec<Id>,
}

/// One op of a multi. `auth` and `session` of the inner ops are ignored: the multi's own apply.
#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub enum MultiOp {
    Create(CreateOp),
    Delete(DeleteOp),
    SetData(SetDataOp),
    Check { path: String, version: i32 },
}

impl MultiOp {
    /// The path the op names.
    pub fn path(&self) -> &str {
        match self {
            MultiOp::Create(c) => &c.path,
            MultiOp::Delete(d) => &d.path,
            MultiOp::SetData(s) => &s.path,
            MultiOp::Check { path, .. } => path,
        }
    }
}

impl LogEntry {
    /// The shards the entry changes besides its own: those of a multi across shards, else none.
    pub fn other_shards(&self) -> Vec<ShardId> {
        let shards: Vec<ShardId> = match &self.command {
            Command::MultiAcross { ops, .. }
            | Command::OfConnection { write: ClientWrite::MultiAcross { ops, .. }, .. } => {
                ops.iter().map(|(shard, _)| *shard).collect()
            }
            Command::TxnPrepare(prepare) => prepare.ops.iter().map(|op| op.shard).collect(),
            Command::TxnFinish { shards, .. } => shards.clone(),
            _ => return Vec::new(),
        };
        let mut others: Vec<ShardId> = shards.into_iter().filter(|s| *s != self.shard).collect();
        others.sort_unstable();
        others.dedup();
        others
    }

    /// Serializes to the rkyv bytes stored in the WAL.
    pub fn to_bytes(&self) -> Vec<u8> {
        rkyv::to_bytes::<rkyv::rancor::Error>(self).expect("LogEntry serializes").into_vec()
    }

    /// Validates rkyv bytes (read back from the WAL) and returns the owned entry.
    pub fn from_bytes(bytes: &[u8]) -> Result<LogEntry, String> {
        let archived = rkyv::access::<ArchivedLogEntry, rkyv::rancor::Error>(bytes)
            .map_err(|e| format!("invalid log entry: {e}"))?;
        rkyv::deserialize::<LogEntry, rkyv::rancor::Error>(archived)
            .map_err(|e| format!("log entry does not deserialize: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An archived enum is as large as its largest variant, and an entry's archive ends with
    /// its root: were a new command larger than every earlier one, the entries already in a WAL
    /// would no longer decode. New commands are appended last and kept this small.
    #[test]
    fn new_commands_leave_the_archived_size_of_a_command_as_it_was() {
        assert_eq!(std::mem::size_of::<ArchivedCommand>(), 88);
    }
}
