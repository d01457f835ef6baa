//! The znode tree of a shard.
