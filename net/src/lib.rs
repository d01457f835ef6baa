//! Warren's IO layer: everything that touches the OS. The glommio thread-per-core runtime, the
//! ZooKeeper jute codec, the framing of Raft messages between peers and a node's durable Raft
//! term and vote, the write-ahead log on DMA files, the four-letter words and the `warren`
//! server.

pub mod config;
pub mod dev_cluster;
pub mod durable_file;
pub mod jute;
pub mod peer;
pub mod raft_log;
pub mod raft_state;
pub mod server;
pub mod signals;
#[cfg(test)]
mod sim;
pub mod snapshot_file;
pub mod snapshot_transfer;
pub mod wal;
