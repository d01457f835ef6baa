//! The session table of a shard: open sessions and the ephemerals they own here.

use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub timeout_ms: i32,
    pub passwd: Vec<u8>,
    /// Paths of this session's ephemeral nodes in this shard.
    pub ephemerals: BTreeSet<String>,
}
