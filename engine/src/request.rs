//! Requests the engine answers without a log entry (reads and per-connection watch state), and
//! the results of reads and of applied commands.

use crate::error::ZkError;
use crate::types::{Acl, AddWatchMode, ConnId, Id, SessionId, Stat, WatcherType, Zxid};

/// Who is asking: the session, the connection (watches belong to it) and its identities.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub session: SessionId,
    pub conn: ConnId,
    pub auth: &'a [Id],
}

/// A request served from the local replica of a shard.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadOp {
    Exists {
        path: String,
        watch: bool,
    },
    GetData {
        path: String,
        watch: bool,
    },
    GetChildren {
        path: String,
        watch: bool,
    },
    GetChildren2 {
        path: String,
        watch: bool,
    },
    GetAcl {
        path: String,
    },
    GetAllChildrenNumber {
        path: String,
    },
    /// The caller session's ephemerals in this shard whose path starts with `prefix`
    /// (all of them when prefix is "/").
    GetEphemerals {
        prefix: String,
    },
    /// Each op is GetData or GetChildren; each gets its own result, none aborts the others.
    MultiRead(Vec<ReadOp>),
    AddWatch {
        path: String,
        mode: AddWatchMode,
    },
    CheckWatches {
        path: String,
        kind: WatcherType,
    },
    RemoveWatches {
        path: String,
        kind: WatcherType,
    },
    /// Re-registers a reconnecting client's watches; fires at once those whose node changed
    /// after `relative_zxid` (as ZooKeeper's DataTree.setWatches does).
    SetWatches {
        relative_zxid: i64,
        data: Vec<String>,
        exist: Vec<String>,
        child: Vec<String>,
        persistent: Vec<String>,
        persistent_recursive: Vec<String>,
    },
}

impl ReadOp {
    /// The path the read names ("/" for those of no one path).
    pub fn path(&self) -> &str {
        match self {
            ReadOp::Exists { path, .. }
            | ReadOp::GetData { path, .. }
            | ReadOp::GetChildren { path, .. }
            | ReadOp::GetChildren2 { path, .. }
            | ReadOp::GetAcl { path }
            | ReadOp::GetAllChildrenNumber { path }
            | ReadOp::AddWatch { path, .. }
            | ReadOp::CheckWatches { path, .. }
            | ReadOp::RemoveWatches { path, .. } => path,
            ReadOp::GetEphemerals { prefix } => prefix,
            ReadOp::MultiRead(_) | ReadOp::SetWatches { .. } => "/",
        }
    }
}

/// The result of a read.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadResult {
    Stat(Stat),
    Data {
        /// None = null data, as the client stored it.
        data: Option<Vec<u8>>,
        stat: Stat,
    },
    Children(Vec<String>),
    Children2 {
        children: Vec<String>,
        stat: Stat,
    },
    Acl {
        acl: Vec<Acl>,
        stat: Stat,
    },
    Number(i32),
    Paths(Vec<String>),
    Multi(Vec<Result<ReadResult, ZkError>>),
    /// For AddWatch, CheckWatches, RemoveWatches, SetWatches.
    Done,
}

/// The result of applying one command.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteResult {
    /// create/create2/createContainer/createTTL: the actual path (with sequence suffix).
    Created {
        path: String,
        stat: Stat,
    },
    Deleted,
    /// setData and setACL.
    Stat(Stat),
    /// One result per op; when the multi failed, ops before the failing one carry
    /// `Err(ZkError::Ok)`-equivalent `MultiResult::Error(0)`, the failing one its error and
    /// the ones after it RuntimeInconsistency, as ZooKeeper reports them.
    Multi(Vec<MultiResult>),
    SessionCreated,
    SessionClosed,
    /// A Reap: whether the node was deleted.
    Reaped(bool),
    /// A MoveSession: the session's connection epoch in this shard after it.
    Moved(Zxid),
    /// An entry of a multi across groups (`engine::txn`).
    Txn(crate::txn::TxnApplied),
}

#[derive(Debug, Clone, PartialEq)]
pub enum MultiResult {
    Create {
        path: String,
        stat: Stat,
    },
    Delete,
    SetData(Stat),
    Check,
    /// Error code (0 for ops before the failing one in an aborted multi).
    Error(i32),
}
