//! Watch registry of a shard: which connection watches what.
