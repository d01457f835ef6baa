//! The Raft log of one group inside its core's WAL: what a WAL record's payload holds and how
//! recovery turns the records back into Raft's log. The WAL stays append-only; a follower that
//! must drop a conflicting, uncommitted suffix appends records that say so (an entry at an index
//! at or below the log's end replaces that index and everything after it; a `Truncate` record
//! does the same without an entry), and recovery replays them in order.
//!
//! Record payload, little endian, 24 bytes of header so that the entry's data (an rkyv archive)
//! starts 8-aligned:
//!
//! ```text
//!   0  kind   u32   1 = entry, 2 = commit, 3 = truncate
//!   4  zero   u32
//!   8  term   u64   entry: its term; otherwise 0
//!  16  index  u64   entry: its index; commit: the commit index; truncate: the first index dropped
//!  24  data         entry only: Raft's opaque data (empty for a leader's no-op)
//! ```
//!
//! A commit record is a lower bound the node learned (a majority had the entries durably); it
//! rides along in the next batch, so it costs no extra write. A restarted node applies through
//! it at once and relearns the rest from the leader.

use engine::raft::{Entry, Index, Term};

pub const HEADER_BYTES: usize = 24;

const KIND_ENTRY: u32 = 1;
const KIND_COMMIT: u32 = 2;
const KIND_TRUNCATE: u32 = 3;

/// One WAL record of a Raft group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    Entry { term: Term, index: Index, data: &'a [u8] },
    Commit { index: Index },
    Truncate { from: Index },
}

impl Record<'_> {
    /// The payload to append to the WAL.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let (kind, term, index, data): (u32, Term, Index, &[u8]) = match *self {
            Record::Entry { term, index, data } => (KIND_ENTRY, term, index, data),
            Record::Commit { index } => (KIND_COMMIT, 0, index, &[]),
            Record::Truncate { from } => (KIND_TRUNCATE, 0, from, &[]),
        };
        out.reserve(HEADER_BYTES + data.len());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&term.to_le_bytes());
        out.extend_from_slice(&index.to_le_bytes());
        out.extend_from_slice(data);
    }

    pub fn decode(payload: &[u8]) -> Result<Record<'_>, String> {
        if payload.len() < HEADER_BYTES {
            return Err(format!("a Raft record of {} bytes is shorter than its header", payload.len()));
        }
        let u32_at = |at: usize| u32::from_le_bytes(payload[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(payload[at..at + 8].try_into().expect("8 bytes"));
        let (kind, term, index, data) = (u32_at(0), u64_at(8), u64_at(16), &payload[HEADER_BYTES..]);
        if u32_at(4) != 0 {
            return Err("a Raft record's reserved field is not zero".to_string());
        }
        let bare = term == 0 && data.is_empty();
        match kind {
            KIND_ENTRY if index >= 1 && term >= 1 => Ok(Record::Entry { term, index, data }),
            KIND_COMMIT if bare => Ok(Record::Commit { index }),
            KIND_TRUNCATE if bare && index >= 1 => Ok(Record::Truncate { from: index }),
            _ => Err(format!("bad Raft record (kind {kind}, term {term}, index {index}, {} data bytes)", data.len())),
        }
    }
}

/// Hands `write` the WAL records of one Ready, in the order they must be written: the
/// truncation, the entries, then the commit index if it moved past `commit_written` and other
/// records go out (riding along it is free; alone it would cost a write of its own). Returns
/// the commit index written so far.
pub fn ready_records(
    entries: &[Entry],
    truncate_from: Option<Index>,
    commit: Index,
    commit_written: Index,
    mut write: impl FnMut(Record<'_>),
) -> Index {
    if let Some(from) = truncate_from {
        write(Record::Truncate { from });
    }
    for entry in entries {
        write(Record::Entry { term: entry.term, index: entry.index, data: &entry.data });
    }
    let any = truncate_from.is_some() || !entries.is_empty();
    if any && commit > commit_written {
        write(Record::Commit { index: commit });
        return commit;
    }
    commit_written
}

/// A group's log as recovery rebuilt it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RecoveredLog {
    /// The index the log continues after: a snapshot's (0: none).
    pub base: Index,
    /// Dense from index `base + 1`.
    pub entries: Vec<Entry>,
    /// The highest commit index recorded, at least `base` (never past `entries`).
    pub commit: Index,
}

impl RecoveredLog {
    pub fn last_index(&self) -> Index {
        self.base + self.entries.len() as Index
    }

    /// The committed entries after the base.
    pub fn committed(&self) -> &[Entry] {
        &self.entries[..(self.commit - self.base) as usize]
    }
}

/// Replays a group's records in WAL order. Fails on anything a correct writer never produces
/// (a gap in the indexes, a term going down, a commit past the log's end, a cut below the
/// commit): recovery refuses rather than guessing.
pub fn recover<'a>(payloads: impl IntoIterator<Item = &'a [u8]>) -> Result<RecoveredLog, String> {
    recover_after(0, 0, payloads)
}

/// `recover` of the log after a snapshot of entries through `base` (of `base_term`): records
/// of entries at or below it are passed over (the WAL may still hold them, or only some of
/// them: its older segments are released once a snapshot covers them), the first entry kept
/// must be `base + 1`, and the commit index is at least `base`. Entries after `base` of a term
/// below `base_term` are what the node held before it installed a leader's snapshot: never
/// committed (a committed entry after `base` has a term of at least `base_term`), dropped.
///
/// Payloads passed as owned vectors become the entries' data in place (no copy: a restart
/// replays up to a snapshot interval of entries).
pub fn recover_after<P: AsRef<[u8]> + Into<Vec<u8>>>(
    base: Index,
    base_term: Term,
    payloads: impl IntoIterator<Item = P>,
) -> Result<RecoveredLog, String> {
    let mut log = RecoveredLog { base, entries: Vec::new(), commit: 0 };
    for (position, payload) in payloads.into_iter().enumerate() {
        let fail = |why: String| format!("Raft record {position}: {why}");
        match Record::decode(payload.as_ref()).map_err(fail)? {
            Record::Entry { index, .. } if index <= base => {}
            Record::Entry { term, index, .. } => {
                cut(&mut log, index).map_err(fail)?;
                if log.entries.last().is_some_and(|last| last.term > term) {
                    return Err(fail(format!("entry {index} has term {term}, below the entry before it")));
                }
                let mut data: Vec<u8> = payload.into();
                data.drain(..HEADER_BYTES);
                log.entries.push(Entry { term, index, data });
            }
            Record::Truncate { from } => cut(&mut log, from.max(base + 1)).map_err(fail)?,
            Record::Commit { index } => log.commit = log.commit.max(index),
        }
        if log.commit > log.last_index() {
            return Err(fail(format!("commit index {} is past the log's end {}", log.commit, log.last_index())));
        }
    }
    if let Some(stale) = log.entries.iter().position(|entry| entry.term < base_term) {
        log.entries.truncate(stale);
    }
    log.commit = log.commit.min(log.last_index()).max(base);
    Ok(log)
}

/// Drops the entries from `from` on, so that the next one appended gets index `from`.
fn cut(log: &mut RecoveredLog, from: Index) -> Result<(), String> {
    let last = log.last_index();
    if from <= log.base || from > last + 1 {
        return Err(format!(
            "index {from} leaves a gap after the log's end {last} (the log continues after {})",
            log.base
        ));
    }
    if from <= log.commit {
        return Err(format!("index {from} would replace a committed entry (commit {})", log.commit));
    }
    log.entries.truncate((from - log.base) as usize - 1);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(record: Record<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        record.encode_into(&mut out);
        out
    }

    fn entry(term: Term, index: Index) -> Vec<u8> {
        encode(Record::Entry { term, index, data: &[index as u8; 3] })
    }

    fn recover_all(records: &[Vec<u8>]) -> Result<RecoveredLog, String> {
        recover(records.iter().map(Vec::as_slice))
    }

    fn terms(log: &RecoveredLog) -> Vec<(Term, Index)> {
        log.entries.iter().map(|e| (e.term, e.index)).collect()
    }

    #[test]
    fn records_round_trip_and_data_starts_aligned() {
        for record in [
            Record::Entry { term: 3, index: 9, data: b"archive" },
            Record::Entry { term: 1, index: 1, data: b"" },
            Record::Commit { index: 0 },
            Record::Commit { index: 77 },
            Record::Truncate { from: 5 },
        ] {
            let bytes = encode(record.clone());
            assert_eq!(Record::decode(&bytes), Ok(record));
        }
        assert_eq!(HEADER_BYTES % 8, 0, "an rkyv archive in the data needs 8-byte alignment");
    }

    #[test]
    fn damaged_records_are_errors() {
        assert!(Record::decode(&[0; 10]).is_err(), "short");
        let mut bad_kind = encode(Record::Commit { index: 1 });
        bad_kind[0] = 9;
        assert!(Record::decode(&bad_kind).is_err());
        let mut reserved = encode(Record::Commit { index: 1 });
        reserved[4] = 1;
        assert!(Record::decode(&reserved).is_err());
        assert!(Record::decode(&encode(Record::Entry { term: 0, index: 1, data: b"" })).is_err(), "term 0");
        assert!(Record::decode(&encode(Record::Entry { term: 1, index: 0, data: b"" })).is_err(), "index 0");
        let mut commit_with_data = encode(Record::Commit { index: 1 });
        commit_with_data.push(1);
        assert!(Record::decode(&commit_with_data).is_err());
    }

    #[test]
    fn a_later_entry_at_a_lower_index_replaces_the_suffix() {
        let log =
            recover_all(&[entry(1, 1), entry(1, 2), entry(1, 3), encode(Record::Commit { index: 1 }), entry(2, 2)])
                .unwrap();
        assert_eq!(terms(&log), vec![(1, 1), (2, 2)]);
        assert_eq!(log.commit, 1);
        assert_eq!(log.entries[1].data, vec![2; 3]);
    }

    #[test]
    fn a_truncate_record_drops_the_suffix() {
        let log = recover_all(&[entry(1, 1), entry(1, 2), encode(Record::Truncate { from: 2 })]).unwrap();
        assert_eq!(terms(&log), vec![(1, 1)]);
    }

    #[test]
    fn the_commit_index_is_the_highest_recorded() {
        let log = recover_all(&[
            entry(1, 1),
            entry(1, 2),
            encode(Record::Commit { index: 2 }),
            encode(Record::Commit { index: 1 }),
        ])
        .unwrap();
        assert_eq!(log.commit, 2);
    }

    #[test]
    fn impossible_logs_are_refused() {
        let gap = recover_all(&[entry(1, 1), entry(1, 3)]).unwrap_err();
        assert!(gap.contains("gap"), "{gap}");
        let term_down = recover_all(&[entry(2, 1), entry(1, 2)]).unwrap_err();
        assert!(term_down.contains("below"), "{term_down}");
        let commit_past_end = recover_all(&[entry(1, 1), encode(Record::Commit { index: 2 })]).unwrap_err();
        assert!(commit_past_end.contains("past the log's end"), "{commit_past_end}");
        let committed_cut = recover_all(&[entry(1, 1), encode(Record::Commit { index: 1 }), entry(2, 1)]).unwrap_err();
        assert!(committed_cut.contains("committed"), "{committed_cut}");
    }

    #[test]
    fn a_log_after_a_snapshot_keeps_only_the_entries_past_its_base() {
        let all = [
            entry(1, 1),
            entry(1, 2),
            entry(1, 3),
            encode(Record::Truncate { from: 2 }),
            entry(2, 2),
            entry(2, 3),
            encode(Record::Commit { index: 2 }),
            entry(2, 4),
        ];
        let log = recover_after(2, 1, all.iter().map(Vec::as_slice)).unwrap();
        assert_eq!((log.base, log.commit, log.last_index()), (2, 2, 4));
        assert_eq!(terms(&log), vec![(2, 3), (2, 4)]);
        assert_eq!(log.committed(), &[] as &[Entry]);
        // The WAL's older segments released: the records start inside the snapshot.
        let log = recover_after(2, 1, all[4..].iter().map(Vec::as_slice)).unwrap();
        assert_eq!(terms(&log), vec![(2, 3), (2, 4)]);
        // Or right after it; but never after a gap.
        assert!(recover_after(2, 1, all[5..].iter().map(Vec::as_slice)).is_ok());
        let gap = recover_after(1, 1, all[5..].iter().map(Vec::as_slice)).unwrap_err();
        assert!(gap.contains("gap"), "{gap}");
        // Entries of an older term than the snapshot's were left from before it was installed.
        let log = recover_after(2, 3, all.iter().map(Vec::as_slice)).unwrap();
        assert_eq!((log.entries.len(), log.commit), (0, 2));
        // A commit index at least the snapshot's.
        assert_eq!(recover_after(9, 1, std::iter::empty::<Vec<u8>>()).unwrap().commit, 9);
        // Owned payloads become the entries' data as borrowed ones are copied.
        let owned = recover_after(2, 1, all.to_vec()).unwrap();
        let borrowed = recover_after(2, 1, all.iter().map(Vec::as_slice)).unwrap();
        assert_eq!((owned.entries, owned.commit), (borrowed.entries, borrowed.commit));
    }

    #[test]
    fn an_empty_wal_is_an_empty_log() {
        assert_eq!(recover_all(&[]).unwrap(), RecoveredLog::default());
    }

    #[test]
    fn a_ready_writes_truncation_entries_then_a_commit_that_rides_along() {
        let entries = vec![Entry { term: 2, index: 4, data: vec![1] }, Entry { term: 2, index: 5, data: vec![2] }];
        let mut written = Vec::new();
        let committed = ready_records(&entries, Some(4), 5, 3, |r| written.push(encode(r)));
        assert_eq!(committed, 5);
        let expected = [
            encode(Record::Truncate { from: 4 }),
            encode(Record::Entry { term: 2, index: 4, data: &[1] }),
            encode(Record::Entry { term: 2, index: 5, data: &[2] }),
            encode(Record::Commit { index: 5 }),
        ];
        assert_eq!(written, expected);
        let mut alone = Vec::new();
        assert_eq!(ready_records(&[], None, 9, 5, |r| alone.push(encode(r))), 5, "no write for a commit alone");
        assert!(alone.is_empty());
        let mut old = Vec::new();
        assert_eq!(ready_records(&entries[..1], None, 3, 3, |r| old.push(encode(r))), 3);
        assert_eq!(old.len(), 1, "a commit already written is not written again");
    }
}
