//! The Raft log of one node, in memory: the entries after the compacted prefix, which of them
//! are durable, committed, and handed out to be persisted or applied. The runtime keeps the
//! durable copy (the WAL) and is told through `Ready` what to write and what to cut. The runtime
//! may compact applied entries away (`compact`): only their last index and term remain.

use super::message::{Entry, Index, Term};

#[derive(Debug, Default)]
pub struct RaftLog {
    /// entries[i] has index offset + i + 1.
    entries: Vec<Entry>,
    /// The last compacted index (0: nothing compacted) and its term.
    offset: Index,
    offset_term: Term,
    /// Highest index known committed (a majority has it durably).
    pub(super) committed: Index,
    /// Highest index handed out to be applied.
    pub(super) applied: Index,
    /// Highest index the runtime reported durable (with the right term).
    pub(super) persisted: Index,
    /// Highest index handed out to be persisted.
    pub(super) handed_out: Index,
    /// Lowest index the runtime must discard from its durable log before writing what is
    /// handed out next (a follower's conflicting, uncommitted suffix).
    pub(super) truncate_from: Option<Index>,
}

impl RaftLog {
    /// A log restored from what the runtime persisted: entries with indexes 1, 2, ...
    pub fn restored(entries: Vec<Entry>, committed: Index) -> RaftLog {
        RaftLog::restored_after(0, 0, entries, committed)
    }

    /// A log restored from a snapshot of the entries through `base` (of `base_term`) and the
    /// entries persisted after it: indexes `base + 1`, `base + 2`, ...
    pub fn restored_after(base: Index, base_term: Term, entries: Vec<Entry>, committed: Index) -> RaftLog {
        for (i, entry) in entries.iter().enumerate() {
            assert_eq!(entry.index, base + i as Index + 1, "restored entries must be dense after {base}");
            let previous_term = if i == 0 { base_term } else { entries[i - 1].term };
            assert!(previous_term <= entry.term, "terms in a log never decrease");
        }
        let last = base + entries.len() as Index;
        assert!(committed <= last, "commit index {committed} past the restored log's end {last}");
        assert!(committed >= base, "a snapshot holds only committed entries ({base}, commit {committed})");
        RaftLog {
            entries,
            offset: base,
            offset_term: base_term,
            committed,
            applied: base,
            persisted: last,
            handed_out: last,
            truncate_from: None,
        }
    }

    pub fn last_index(&self) -> Index {
        self.offset + self.entries.len() as Index
    }

    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(self.offset_term, |e| e.term)
    }

    /// The first index still held (entries before it were compacted away).
    pub fn first_index(&self) -> Index {
        self.offset + 1
    }

    /// The term of the entry at `index` (0 for index 0 of an uncompacted log, the compacted
    /// prefix's last term at its last index); None past the end or inside the compacted prefix.
    pub fn term(&self, index: Index) -> Option<Term> {
        match index {
            // Index 0 (term 0) when nothing is compacted.
            i if i == self.offset => Some(self.offset_term),
            i if i < self.offset || i > self.last_index() => None,
            i => Some(self.entries[(i - self.offset) as usize - 1].term),
        }
    }

    pub fn entry(&self, index: Index) -> &Entry {
        assert!(index > self.offset, "entry {index} was compacted away (through {})", self.offset);
        &self.entries[(index - self.offset) as usize - 1]
    }

    /// Entries `from..=to`, all after the compacted prefix.
    pub fn slice(&self, from: Index, to: Index) -> &[Entry] {
        assert!(
            from > self.offset && to <= self.last_index(),
            "slice {from}..={to} of a log holding {}..={}",
            self.first_index(),
            self.last_index()
        );
        if from > to {
            return &[];
        }
        &self.entries[(from - self.offset) as usize - 1..(to - self.offset) as usize]
    }

    /// Forgets the entries through `index` but for its index and term: they are applied and
    /// durable (the runtime's WAL keeps them). A leader can no longer send them: a follower
    /// that needs them needs a snapshot.
    pub fn compact(&mut self, index: Index) {
        assert!(index <= self.applied && index <= self.persisted, "compacting {index} past applied/durable entries");
        if index <= self.offset {
            return;
        }
        self.offset_term = self.term(index).expect("a held entry");
        self.entries.drain(..(index - self.offset) as usize);
        self.offset = index;
    }

    /// A snapshot of the leader's log through `index` (of `term`) replaced the state: the log
    /// restarts after it, empty, with everything through it committed, applied and durable.
    pub fn reset_after(&mut self, index: Index, term: Term) {
        assert!(index > self.committed, "a snapshot through {index} below the commit index {}", self.committed);
        self.entries.clear();
        self.offset = index;
        self.offset_term = term;
        self.committed = index;
        self.applied = index;
        self.persisted = index;
        self.handed_out = index;
        self.truncate_from = None;
    }

    /// Raft's election restriction (5.4.1): a log ending at (`last_index`, `last_term`) is at
    /// least as up to date as this one.
    pub fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        last_term > self.last_term() || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// A leader's own new entry.
    pub fn push(&mut self, term: Term, data: Vec<u8>) -> Index {
        assert!(term >= self.last_term(), "terms in a log never decrease");
        let index = self.last_index() + 1;
        self.entries.push(Entry { term, index, data });
        index
    }

    /// A follower's append after a matching (`prev_index`, its term): entries it already has
    /// are kept, the first conflicting one and everything after it are cut, the rest appended
    /// (log matching, 5.3). Returns the index of the last entry of the append.
    pub fn append_after(&mut self, prev_index: Index, entries: Vec<Entry>) -> Index {
        let last_new = prev_index + entries.len() as Index;
        for entry in entries {
            assert_eq!(entry.index, self.index_after(entry.index), "append entries must be dense");
            match self.term(entry.index) {
                Some(term) if term == entry.term => continue,
                Some(_) => self.cut_from(entry.index),
                None => {}
            }
            self.entries.push(entry);
        }
        last_new
    }

    fn index_after(&self, index: Index) -> Index {
        // Only dense appends get here: the entry's index is at most one past the end.
        assert!(index <= self.last_index() + 1, "append leaves a gap at {index}");
        index
    }

    /// Drops entries from `index` on: never a committed one.
    fn cut_from(&mut self, index: Index) {
        assert!(index > self.committed, "cutting committed entry {index} (commit {})", self.committed);
        self.entries.truncate((index - self.offset) as usize - 1);
        self.persisted = self.persisted.min(index - 1);
        self.handed_out = self.handed_out.min(index - 1);
        self.truncate_from = Some(self.truncate_from.map_or(index, |t| t.min(index)));
    }

    pub fn commit_to(&mut self, index: Index) -> bool {
        if index <= self.committed {
            return false;
        }
        assert!(index <= self.last_index(), "commit {index} past the log's end {}", self.last_index());
        self.committed = index;
        true
    }

    /// The runtime made entries through `index` durable, `term` being the last one's term
    /// when handed out; ignored if those entries were cut meanwhile.
    /// Highest index the runtime made durable (`advance` after a Ready).
    pub fn persisted(&self) -> Index {
        self.persisted
    }

    pub fn persisted_to(&mut self, index: Index, term: Term) {
        if index > self.persisted && self.term(index) == Some(term) {
            self.persisted = index;
        }
    }

    /// Entries not handed out to be persisted yet, and where the durable log must be cut
    /// first; marks them handed out.
    pub fn take_unpersisted(&mut self) -> (Option<Index>, Vec<Entry>) {
        let from = self.handed_out + 1;
        let entries = self.slice(from, self.last_index()).to_vec();
        self.handed_out = self.last_index();
        (self.truncate_from.take(), entries)
    }

    /// Committed entries not handed out to be applied yet; marks them handed out.
    pub fn take_committed(&mut self) -> Vec<Entry> {
        let entries = self.slice(self.applied + 1, self.committed).to_vec();
        self.applied = self.committed;
        entries
    }

    pub fn has_unpersisted(&self) -> bool {
        self.handed_out < self.last_index() || self.truncate_from.is_some()
    }

    pub fn has_committed_unapplied(&self) -> bool {
        self.applied < self.committed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: Index, term: Term) -> Entry {
        Entry { term, index, data: vec![index as u8] }
    }

    fn log_of(terms: &[Term]) -> RaftLog {
        RaftLog::restored(terms.iter().enumerate().map(|(i, &t)| entry(i as Index + 1, t)).collect(), 0)
    }

    #[test]
    fn append_keeps_matching_entries_and_cuts_the_first_conflict() {
        let mut log = log_of(&[1, 1, 2, 2]);
        // (3, 2) and (4, 2) already there; (5, 3) new.
        assert_eq!(log.append_after(2, vec![entry(3, 2), entry(4, 2), entry(5, 3)]), 5);
        assert_eq!(log.last_index(), 5);
        assert_eq!(log.truncate_from, None, "nothing conflicted");
        // A new leader of term 4 overwrites from index 4.
        assert_eq!(log.append_after(3, vec![entry(4, 4)]), 4);
        assert_eq!((log.last_index(), log.last_term()), (4, 4));
        assert_eq!(log.truncate_from, Some(4));
        assert_eq!(log.persisted, 3, "what was cut is no longer durable");
        let (cut, unpersisted) = log.take_unpersisted();
        assert_eq!(cut, Some(4));
        assert_eq!(unpersisted, vec![entry(4, 4)]);
    }

    #[test]
    fn an_append_older_than_the_log_changes_nothing() {
        let mut log = log_of(&[1, 1, 1]);
        // A delayed append of entries 1..2 after the log already has 3: nothing is cut.
        assert_eq!(log.append_after(0, vec![entry(1, 1), entry(2, 1)]), 2);
        assert_eq!(log.last_index(), 3);
    }

    #[test]
    #[should_panic(expected = "cutting committed entry")]
    fn a_committed_entry_is_never_cut() {
        let mut log = log_of(&[1, 1, 1]);
        log.commit_to(2);
        log.append_after(1, vec![entry(2, 2)]);
    }

    #[test]
    fn persistence_of_cut_entries_is_ignored() {
        let mut log = log_of(&[1]);
        log.persisted = 1;
        log.push(2, vec![]);
        log.take_unpersisted();
        log.append_after(1, vec![entry(2, 3)]);
        // The runtime finishes writing (2, 2), which is gone.
        log.persisted_to(2, 2);
        assert_eq!(log.persisted, 1);
        log.persisted_to(2, 3);
        assert_eq!(log.persisted, 2);
    }

    #[test]
    fn a_compacted_log_keeps_its_positions_and_the_last_compacted_term() {
        let mut log = log_of(&[1, 1, 2, 2, 3]);
        log.commit_to(4);
        log.take_committed();
        log.compact(3);
        assert_eq!((log.first_index(), log.last_index(), log.last_term()), (4, 5, 3));
        assert_eq!(log.term(3), Some(2), "the compacted prefix's last term is kept");
        assert_eq!(log.term(2), None, "inside the compacted prefix");
        assert_eq!(log.term(0), None, "before the compacted prefix");
        assert_eq!(log.slice(4, 5).iter().map(|e| e.index).collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(log.entry(5).term, 3);
        // Appending and cutting after the prefix work on the same indexes.
        assert_eq!(log.append_after(4, vec![entry(5, 4), entry(6, 4)]), 6);
        assert_eq!((log.last_index(), log.term(5)), (6, Some(4)));
        log.compact(4);
        log.compact(2);
        assert_eq!(log.first_index(), 5, "compacting less than before changes nothing");
        let everything = RaftLog::restored(Vec::new(), 0);
        assert_eq!((everything.first_index(), everything.last_index()), (1, 0));
    }

    #[test]
    #[should_panic(expected = "past applied")]
    fn only_applied_entries_are_compacted() {
        let mut log = log_of(&[1, 1]);
        log.commit_to(2);
        log.compact(1);
    }

    #[test]
    fn up_to_date_compares_last_term_then_length() {
        let log = log_of(&[1, 2, 2]);
        assert!(log.is_up_to_date(3, 2));
        assert!(log.is_up_to_date(1, 3), "a higher last term wins over length");
        assert!(!log.is_up_to_date(5, 1));
        assert!(!log.is_up_to_date(2, 2));
    }
}
