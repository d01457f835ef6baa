//! A simulated disk: a node's WAL as the batches it wrote (the same bytes `Wal::flush` writes,
//! built with the WAL's own record and header encoding) and its Raft term-and-vote file. A
//! crash can interrupt the write in progress: none of it, a prefix of it (a torn write) or
//! all of it reaches the disk. Recovery reads batches with the WAL's own `decode_batch`, cuts a
//! torn last batch as `Wal::open` does, and rebuilds the Raft log with `raft_log::recover`.

use crate::raft_log::{self, RecoveredLog};
use crate::wal::format::{decode_batch, encode_record, BatchHeader};
use engine::raft::{NodeId, Term};

#[derive(Default)]
pub struct Disk {
    /// Batches in the order written; only the last one can be torn.
    batches: Vec<Vec<u8>>,
    last_lsn: u64,
    /// The group's term and vote (`raft_state::store` replaces the file atomically).
    pub term_vote: (Term, Option<NodeId>),
    /// Bytes of torn batches recovery has cut so far (a crash interrupted them).
    pub torn_cut: usize,
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
        let mut last_lsn = 0;
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
        raft_log::recover(payloads.iter().map(Vec::as_slice))
            .unwrap_or_else(|error| panic!("recovery refused the log: {error}"))
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
