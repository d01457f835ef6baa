//! Warren's engine: the pure, deterministic state machine of one shard.
//!
//! Nothing here touches sockets, threads, clocks or files. The runtime (net/) hands the
//! engine committed [`command::LogEntry`] records in log order and read requests; the engine
//! hands back results and watch notifications. Applying the same log to an empty shard always
//! produces the same tree (replay). `raft` is the consensus core, sans IO, that replication
//! will drive (not wired into the server yet).

pub mod acl;
pub mod command;
pub mod error;
pub mod linearizability;
pub mod path;
pub mod raft;
mod read;
pub mod request;
pub mod session;
pub mod shard;
pub mod snapshot;
pub mod tree;
pub mod txn;
pub mod types;
pub mod watch;
mod write;

pub use error::ZkError;
pub use shard::Shard;
#[cfg(test)]
mod across_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod txn_tests;
