//! One shard of the namespace: its znode tree (replicated state, changed only by `apply`),
//! its session table and its watch registry (local to this node, fed by reads).
//!
//! The root "/" is special: every shard keeps its own local root node holding the top-level
//! children that live in it. Reads of "/" return this shard's local view and the runtime
//! gathers and merges the views of all shards (children = union, numChildren = sum); data and
//! ACL of "/" are kept identical in every shard by broadcasting setData("/") and setACL("/").

use crate::command::{LogEntry, ShardId};
use crate::error::ZkError;
use crate::request::{Caller, ReadOp, ReadResult, WriteResult};
use crate::session::SessionInfo;
use crate::types::{ConnId, Notification, SessionId, Zxid};

/// What applying one log entry produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub result: Result<WriteResult, ZkError>,
    /// Watch notifications, in the order ZooKeeper fires them. The runtime MUST deliver them
    /// before the reply to the write (and before any later reply on those connections).
    pub notifications: Vec<Notification>,
}

pub struct Shard {
    #[allow(dead_code)]
    id: ShardId,
}

impl Shard {
    /// An empty shard: only its local root (world:anyone, all permissions); the shard that
    /// owns "/zookeeper" also holds "/zookeeper", "/zookeeper/quota" and "/zookeeper/config".
    pub fn new(id: ShardId, shard_count: u16) -> Shard {
        let _ = shard_count;
        Shard { id }
    }

    pub fn id(&self) -> ShardId {
        self.id
    }

    /// zxid of the last applied entry (0 when none).
    pub fn last_zxid(&self) -> Zxid {
        todo!()
    }

    /// Applies one committed entry. Entries MUST be applied in log order with increasing zxid.
    pub fn apply(&mut self, entry: &LogEntry) -> Applied {
        let _ = entry;
        todo!()
    }

    /// Serves a read (or a watch-state request) from this replica. Registers the watch when
    /// asked, also on NoNode for exists. Returns notifications that fire at once (SetWatches).
    pub fn read(&mut self, caller: Caller<'_>, op: &ReadOp) -> (Result<ReadResult, ZkError>, Vec<Notification>) {
        let _ = (caller, op);
        todo!()
    }

    /// An open session, if this shard knows it.
    pub fn session(&self, id: SessionId) -> Option<&SessionInfo> {
        let _ = id;
        todo!()
    }

    /// Every open session (for re-arming expiry timers after restart).
    pub fn sessions(&self) -> Vec<(SessionId, &SessionInfo)> {
        todo!()
    }

    /// Forgets every watch of a closed connection.
    pub fn drop_connection(&mut self, conn: ConnId) {
        let _ = conn;
        todo!()
    }

    /// Paths to reap at `now_ms`: TTL nodes without children whose mtime + ttl < now, and
    /// containers without children whose cversion > 0 (they had a child once).
    pub fn reap_candidates(&self, now_ms: i64) -> Vec<String> {
        let _ = now_ms;
        todo!()
    }

    /// Counters for the four-letter words (mntr, wchs, stat).
    pub fn stats(&self) -> ShardStats {
        todo!()
    }

    /// For `wchs`/`dump`: paths watched per connection.
    pub fn watched_paths(&self) -> Vec<(ConnId, Vec<String>)> {
        todo!()
    }
}

/// Sizes reported by the four-letter words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardStats {
    pub znode_count: u64,
    pub ephemeral_count: u64,
    pub approximate_data_size: u64,
    pub watch_count: u64,
    pub watched_path_count: u64,
    pub session_count: u64,
}
