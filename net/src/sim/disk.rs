//! A simulated disk: a node's WAL as the batches it wrote (the same bytes `Wal::flush` writes,
//! built with the WAL's own record and header encoding) and its Raft term-and-vote file. A
//! crash can interrupt the write in progress: none of it, a prefix of it (a torn write) or
//! all of it reaches the disk. Recovery reads batches with the WAL's own `decode_batch`, cuts a
//! torn last batch as `Wal::open` does, and rebuilds the Raft log with `raft_log::recover_after`
//! after the newest snapshot. Snapshots are the real file format's bytes
//! (`snapshot_file::Frames`), kept once complete (the rename); the WAL's leading batches are
//! released below the oldest kept one, as `Wal::segments_below` releases segments.

use crate::raft_log::{self, Record, RecoveredLog};
use crate::snapshot_file::{self, Loaded};
use crate::wal::format::{decode_batch, encode_record, BatchHeader};
use engine::raft::{Index, NodeId, Term};

#[derive(Default)]
pub struct Disk {
    /// Batches in the order written; only the last one can be torn.
    batches: Vec<Vec<u8>>,
    last_lsn: u64,
    /// The group's term and vote (`raft_state::store` replaces the file atomically).
    pub term_vote: (Term, Option<NodeId>),
    /// Bytes of torn batches recovery has cut so far (a crash interrupted them).
    pub torn_cut: usize,
    /// Complete snapshots, oldest first: (the entry each is after, its term, the file's bytes).
    snapshots: Vec<(Index, Term, Vec<u8>)>,
    /// The lsn the first batch kept chains to (0 until batches are released).
    first_prev_lsn: u64,
    /// Batches released below snapshots, so far.
    pub released: usize,
}

impl Disk {
    /// The bytes of one batch holding `records` after everything written so far.
    pub fn batch(&self, records: &[Vec<u8>]) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, payload) in records.iter().enumerate() {
            encode_record(&mut body, self.last_lsn + 1 + i as u64, payload);
        }
        let header = BatchHeader {
            prev_lsn: self.last_lsn,
            first_lsn: self.last_lsn + 1,
            record_count: u32::try_from(records.len()).expect("a batch holds few records"),
            body_bytes: u32::try_from(body.len()).expect("a batch is small"),
        };
        let mut bytes = header.encode().to_vec();
        bytes.extend_from_slice(&body);
        bytes
    }

    /// A completed (durable) write of `batch`, which holds `records` records.
    pub fn write(&mut self, batch: Vec<u8>, records: usize) {
        self.batches.push(batch);
        self.last_lsn += records as u64;
    }

    /// A write a crash interrupted: its first `kept` bytes reached the disk.
    pub fn interrupted(&mut self, mut batch: Vec<u8>, kept: usize) {
        batch.truncate(kept);
        if !batch.is_empty() {
            self.batches.push(batch);
        }
    }

    /// What a restart finds: every valid batch in order; an invalid one must be the last
    /// (only the write in progress at a crash can be damaged), and is cut. Panics on an
    /// impossible log, as the node would refuse to start.
    pub fn recover(&mut self) -> RecoveredLog {
        self.recover_after(0, 0)
    }

    /// `recover` of the log after a snapshot through `base` (of `base_term`).
    pub fn recover_after(&mut self, base: Index, base_term: Term) -> RecoveredLog {
        let mut last_lsn = self.first_prev_lsn;
        let mut payloads: Vec<Vec<u8>> = Vec::new();
        for (position, bytes) in self.batches.iter().enumerate() {
            match decode_batch(bytes, last_lsn, 0) {
                Ok(batch) => {
                    payloads.extend(batch.records.iter().map(|range| bytes[range.clone()].to_vec()));
                    last_lsn = batch.header.first_lsn + u64::from(batch.header.record_count) - 1;
                }
                Err(error) => {
                    assert_eq!(position + 1, self.batches.len(), "damage before the last batch: {error}");
                    self.torn_cut += bytes.len();
                    self.batches.pop();
                    break;
                }
            }
        }
        self.last_lsn = last_lsn;
        raft_log::recover_after(base, base_term, payloads.iter().map(Vec::as_slice))
            .unwrap_or_else(|error| panic!("recovery refused the log after snapshot {base}: {error}"))
    }

    /// A snapshot made durable under its name; all but the newest `kept` go.
    pub fn save_snapshot(&mut self, index: Index, term: Term, bytes: Vec<u8>, kept: usize) {
        self.snapshots.retain(|(other, _, _)| *other != index);
        self.snapshots.push((index, term, bytes));
        self.snapshots.sort_by_key(|(index, _, _)| *index);
        let excess = self.snapshots.len().saturating_sub(kept);
        self.snapshots.drain(..excess);
    }

    /// The entry the oldest kept snapshot is after.
    pub fn oldest_snapshot(&self) -> Option<Index> {
        self.snapshots.first().map(|(index, _, _)| *index)
    }

    /// The newest snapshot: the entry it is after, its term and the file's bytes.
    pub fn newest_snapshot(&self) -> Option<(Index, Term, &[u8])> {
        self.snapshots.last().map(|(index, term, bytes)| (*index, *term, bytes.as_slice()))
    }

    /// The newest snapshot that loads, as `server::load_snapshot` takes it.
    pub fn load_snapshot(&self, group: u16, shard_count: u16) -> Option<Loaded> {
        self.snapshots.iter().rev().find_map(|(index, _, bytes)| {
            let path = std::path::PathBuf::from(format!("sim/{group}/{index}.snap"));
            snapshot_file::load_bytes(bytes, &path, group, shard_count).ok()
        })
    }

    /// Releases the leading batches that hold nothing recovery needs to rebuild the log from
    /// `keep_from` on (every entry in them below it); never the last one.
    pub fn release_below(&mut self, keep_from: Index) {
        let mut prev = self.first_prev_lsn;
        let mut releasable = 0;
        for bytes in &self.batches[..self.batches.len().saturating_sub(1)] {
            let Ok(batch) = decode_batch(bytes, prev, 0) else { break };
            let below = batch.records.iter().all(|range| match Record::decode(&bytes[range.clone()]) {
                Ok(Record::Entry { index, .. }) => index < keep_from,
                Ok(Record::Truncate { from }) => from < keep_from,
                Ok(Record::Commit { .. }) => true,
                Err(_) => false,
            });
            if !below {
                break;
            }
            prev = batch.header.first_lsn + u64::from(batch.header.record_count) - 1;
            releasable += 1;
        }
        self.batches.drain(..releasable);
        self.first_prev_lsn = prev;
        self.released += releasable;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft_log::Record;

    fn entry(index: u64) -> Vec<u8> {
        let mut out = Vec::new();
        Record::Entry { term: 1, index, data: &[index as u8; 40] }.encode_into(&mut out);
        out
    }

    #[test]
    fn a_torn_last_batch_is_cut_and_the_disk_appends_after_what_is_left() {
        let mut disk = Disk::default();
        let first = disk.batch(&[entry(1), entry(2)]);
        disk.write(first, 2);
        let second = disk.batch(&[entry(3)]);
        let len = second.len();
        disk.interrupted(second, len - 5);
        assert_eq!(disk.recover().entries.len(), 2, "the torn batch is cut");
        assert!(disk.torn_cut > 0);
        let again = disk.batch(&[entry(3)]);
        disk.write(again, 1);
        assert_eq!(disk.recover().entries.len(), 3, "a batch after the cut chains to what is left");
    }

    #[test]
    #[should_panic(expected = "damage before the last batch")]
    fn damage_before_the_last_batch_is_refused() {
        let mut disk = Disk::default();
        let mut first = disk.batch(&[entry(1)]);
        first[40] ^= 1;
        disk.write(first, 1);
        let second = disk.batch(&[entry(2)]);
        disk.write(second, 1);
        disk.recover();
    }
}
