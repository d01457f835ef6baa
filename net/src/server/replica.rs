//! The replication loop of one core: the core's log is one Raft group (engine::raft, sans IO),
//! and this loop is its runtime. It decides when a write to one of the core's shards is
//! committed; `Core` applies and answers it. Its interface with `Core` is `CommitQueue`
//! (`commit.rs`): writes are proposed there, and per committed entry, in log order,
//! `Core::apply_and_reply` (the entry was proposed here: apply, notify, answer) or
//! `Core::apply_replicated` (proposed elsewhere: apply, notify); per turn that applied
//! anything, `Core::announce_applied` then `Core::serve_cut_waiters`.
//!
//! One turn: feed Raft the ticks and peer messages that arrived, propose the waiting writes
//! (as leader: each gets its zxid here), then carry out Raft's `Ready` in the order it
//! demands: send the messages that may precede persistence, write the term and vote if they
//! changed, append the new entries (and the commit index learned, a free lower bound for
//! restarts) to the WAL and make them durable with one O_DSYNC write, only then send the
//! messages that promise durability, apply what is committed, and `advance`.
//!
//! An entry's data is a `LogEntry` archive behind a header naming who proposed it, so the
//! node that holds the client's request answers it and every other node only applies it:
//!
//! ```text
//!   0  origin  u64   node id of the proposer
//!   8  token   u64   the proposer's handle of the waiting request
//!  16  zxid    i64   the LogEntry's zxid (read without decoding the archive)
//!  24  LogEntry rkyv archive
//! ```
//!
//! A failed WAL write stops the node (`server::stop_on_wal_failure`): nothing of the batch is
//! applied or answered.

use super::commit::PendingWrite;
use super::core::{unix_millis, Core};
use super::msg::ShardRequest;
use crate::raft_log::Record;
use crate::raft_state;
use crate::wal::Wal;
use ahash::AHashMap;
use engine::command::LogEntry;
use engine::raft::{Entry, HardState, NodeId, Raft, Role};
use engine::types::Zxid;
use glommio::channels::local_channel::LocalReceiver;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// One Raft tick. Elections time out after 10-20 ticks, a leader heartbeats every tick.
pub const TICK: Duration = Duration::from_millis(50);

const PROPOSAL_HEADER_BYTES: usize = 24;

/// An entry's data: who proposed it, their handle of the request, the zxid and the archive.
pub fn encode_proposal(origin: NodeId, token: u64, entry: &LogEntry) -> Vec<u8> {
    let archive = entry.to_bytes();
    let mut data = Vec::with_capacity(PROPOSAL_HEADER_BYTES + archive.len());
    data.extend_from_slice(&origin.to_le_bytes());
    data.extend_from_slice(&token.to_le_bytes());
    data.extend_from_slice(&entry.zxid.to_le_bytes());
    data.extend_from_slice(&archive);
    data
}

/// The parts of a proposal: (origin, token, zxid, LogEntry archive).
pub fn decode_proposal(data: &[u8]) -> Result<(NodeId, u64, Zxid, &[u8]), String> {
    if data.len() <= PROPOSAL_HEADER_BYTES {
        return Err(format!("an entry of {} bytes is shorter than a proposal", data.len()));
    }
    let u64_at = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"));
    Ok((u64_at(0), u64_at(8), u64_at(16) as Zxid, &data[PROPOSAL_HEADER_BYTES..]))
}

/// The zxid of a log entry's proposal, 0 for a leader's no-op.
fn zxid_of(entry: &Entry) -> Zxid {
    if entry.data.is_empty() {
        return 0;
    }
    decode_proposal(&entry.data).map_or(0, |(_, _, zxid, _)| zxid)
}

/// The highest zxid in `entries` (0 if none).
pub fn highest_zxid(entries: &[Entry]) -> Zxid {
    entries.iter().map(zxid_of).max().unwrap_or(0)
}

/// One core's Raft group and its durable log; owned by the replication loop.
pub(super) struct Replica {
    raft: Raft,
    wal: Wal,
    /// Where the group's term and vote live (`raft_state.rs`).
    state_path: PathBuf,
    /// The term and vote last made durable.
    stored: (u64, Option<NodeId>),
    /// The highest commit index written to the WAL.
    commit_written: u64,
    /// Requests of this node whose entries are proposed and not applied yet, by token.
    waiting: AHashMap<u64, ShardRequest>,
    next_token: u64,
    record: Vec<u8>,
}

impl Replica {
    pub(super) fn new(raft: Raft, wal: Wal, state_path: PathBuf, commit_written: u64) -> Replica {
        let hard_state = raft.hard_state();
        Replica {
            stored: (hard_state.term, hard_state.vote),
            raft,
            wal,
            state_path,
            commit_written,
            waiting: AHashMap::new(),
            next_token: 1,
            record: Vec::new(),
        }
    }

    /// Start-up: a node that is the only voter elects itself and commits (through its new
    /// term's no-op) everything in its log before it serves anything, so a restart answers
    /// with every write it acknowledged.
    pub(super) async fn catch_up_alone(&mut self, core: &Core) {
        let HardState { commit, .. } = self.raft.hard_state();
        let last = self.raft.log().last_index();
        tracing::debug!(core = core.id, commit, last, "electing the only voter");
        self.raft.campaign_now();
        while self.raft.role() != Role::Leader || self.raft.commit_index() < last {
            assert!(self.turn(core).await, "the only voter makes progress on its own");
        }
        while self.turn(core).await {}
    }

    /// One turn; false if there was nothing to do.
    pub(super) async fn turn(&mut self, core: &Core) -> bool {
        let queue = &core.commit;
        for _ in 0..queue.take_ticks() {
            self.raft.tick();
        }
        for message in queue.take_inbox() {
            self.raft.step(message);
        }
        self.propose_waiting(core);
        queue.set_leading(self.raft.role() == Role::Leader);
        if !self.raft.has_ready() {
            return false;
        }
        let ready = self.raft.ready();
        assert!(ready.messages.is_empty() && ready.messages_after_persist.is_empty(), "no peers yet");
        self.store_term_and_vote(core, ready.hard_state);
        let started = Instant::now();
        let appended = self.append(&ready.entries, ready.truncate_from);
        if appended > 0 {
            let flushed = self.wal.flush().await;
            core.metrics.borrow_mut().record_flush(started.elapsed(), ready.entries.len());
            if let Err(error) = flushed {
                super::stop_on_wal_failure(core.id, &error, ready.entries.len());
            }
        }
        queue.note_log_zxid(highest_zxid(&ready.entries));
        self.apply(core, ready.committed);
        self.raft.advance();
        true
    }

    /// Proposes every write waiting in the queue, if this node leads the group.
    fn propose_waiting(&mut self, core: &Core) {
        if self.raft.role() != Role::Leader {
            return;
        }
        let queue = &core.commit;
        let time_ms = unix_millis();
        loop {
            let batch = queue.take_batch();
            if batch.is_empty() {
                return;
            }
            for PendingWrite { request, command } in batch {
                let entry = LogEntry { shard: request.shard, zxid: queue.next_zxid(), time_ms, command };
                let token = self.next_token;
                self.next_token += 1;
                let data = encode_proposal(self.raft.id(), token, &entry);
                match self.raft.propose(data) {
                    Ok(_) => {
                        self.waiting.insert(token, request);
                        queue.proposed();
                    }
                    Err(error) => panic!("the leader refused a proposal: {error:?}"),
                }
            }
        }
    }

    /// Term and vote MUST be durable before any message of the new term or any vote leaves.
    fn store_term_and_vote(&mut self, core: &Core, hard_state: Option<HardState>) {
        let Some(HardState { term, vote, .. }) = hard_state else { return };
        if (term, vote) == self.stored {
            return;
        }
        if let Err(error) = raft_state::store(&self.state_path, term, vote) {
            tracing::error!(core = core.id, %error, path = %self.state_path.display(), "cannot store the Raft term and vote");
            super::stop_on_state_failure(core.id);
        }
        self.stored = (term, vote);
    }

    /// Appends the Ready's records to the WAL; returns how many.
    fn append(&mut self, entries: &[Entry], truncate_from: Option<u64>) -> usize {
        let mut appended = 0;
        if let Some(from) = truncate_from {
            self.append_record(Record::Truncate { from });
            appended += 1;
        }
        for entry in entries {
            self.append_record(Record::Entry { term: entry.term, index: entry.index, data: &entry.data });
            appended += 1;
        }
        let commit = self.raft.commit_index();
        if appended > 0 && commit > self.commit_written {
            // Rides along with entries; alone it would cost a write of its own.
            self.append_record(Record::Commit { index: commit });
            self.commit_written = commit;
            appended += 1;
        }
        appended
    }

    fn append_record(&mut self, record: Record<'_>) {
        self.record.clear();
        record.encode_into(&mut self.record);
        // Config validation keeps a request below the WAL's record limit; a violation is a
        // bug, reported by the WAL's own check.
        self.wal.try_append(&self.record).unwrap_or_else(|e| panic!("WAL refused a record: {e}"));
    }

    fn apply(&mut self, core: &Core, committed: Vec<Entry>) {
        let queue = &core.commit;
        let mut applied_any = false;
        for entry in committed {
            if entry.data.is_empty() {
                continue;
            }
            let (origin, token, zxid, archive) = decode_proposal(&entry.data)
                .unwrap_or_else(|e| panic!("committed entry {} of core {}: {e}", entry.index, core.id));
            let log_entry = LogEntry::from_bytes(archive)
                .unwrap_or_else(|e| panic!("committed entry {} of core {}: {e}", entry.index, core.id));
            assert_eq!(log_entry.zxid, zxid, "a proposal's header and archive agree on the zxid");
            // Set first: reads served while this entry applies see it applied.
            queue.set_last_applied(zxid);
            let request = if origin == self.raft.id() { self.waiting.remove(&token) } else { None };
            match request {
                Some(request) => {
                    queue.applied_own();
                    core.apply_and_reply(request, log_entry);
                }
                None => core.apply_replicated(log_entry),
            }
            applied_any = true;
        }
        if applied_any {
            core.announce_applied();
            core.serve_cut_waiters();
        }
    }
}

/// Runs the group: a turn whenever writes, ticks or peer messages arrive.
pub(super) async fn replication_loop(core: Rc<Core>, mut replica: Replica, signal: LocalReceiver<()>) {
    while signal.recv().await.is_some() {
        // Let the writes of this loop turn gather into one batch.
        futures_lite::future::yield_now().await;
        while replica.turn(&core).await {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::command::{Command, SetDataOp};

    fn log_entry(zxid: Zxid) -> LogEntry {
        let command =
            Command::SetData(SetDataOp { path: "/a".into(), data: Some(vec![1, 2]), version: -1, auth: Vec::new() });
        LogEntry { shard: 3, zxid, time_ms: 5, command }
    }

    #[test]
    fn a_proposal_round_trips_and_names_its_origin() {
        let data = encode_proposal(2, 77, &log_entry(1234));
        let (origin, token, zxid, archive) = decode_proposal(&data).unwrap();
        assert_eq!((origin, token, zxid), (2, 77, 1234));
        assert_eq!(LogEntry::from_bytes(archive).unwrap(), log_entry(1234));
        assert!(decode_proposal(&data[..PROPOSAL_HEADER_BYTES]).is_err(), "no archive");
    }

    #[test]
    fn the_highest_zxid_skips_no_ops() {
        let entries = vec![
            Entry { term: 1, index: 1, data: Vec::new() },
            Entry { term: 1, index: 2, data: encode_proposal(1, 1, &log_entry(90)) },
            Entry { term: 1, index: 3, data: encode_proposal(1, 2, &log_entry(40)) },
        ];
        assert_eq!(highest_zxid(&entries), 90);
        assert_eq!(highest_zxid(&[]), 0);
    }
}
