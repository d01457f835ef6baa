//! The group commit of one core: decides when a write to one of the core's shards is
//! committed. Writes wait in the `CommitQueue`; the commit loop takes them in batches, gives
//! each entry its zxid, appends the batch to the core's WAL and makes it durable with one
//! fdatasync, and only then hands the entries to `Core` to apply and answer.
//!
//! Replication replaces this file (by a loop driven by consensus) and nothing else; the
//! connection code never sees it. Its whole interface:
//! - in: `CommitQueue::propose`, called by `Core` for every write routed to this core;
//! - out, per committed entry, in log order: `Core::apply_and_reply` (apply to the shard, send
//!   its watch notifications, then its reply, then serve the reads that waited for it);
//! - out, per batch, once every entry of it is applied: `Core::announce_applied`. The
//!   watermark (`watermark.rs`) relies on this order: the notifications of a batch MUST be
//!   sent before its `Applied` message, and nothing may be promised while a batch has zxids
//!   assigned but is not applied (`CommitQueue::applied_through` answers None meanwhile);
//! - out, per batch, after that: `Core::serve_cut_waiters` (parts of gathered reads waiting
//!   for this core to apply through their cut, `cut.rs`); `last_applied` tells how far it is;
//! - zxids: assigned here (`next_zxid`), above every zxid this core assigned or promised;
//! - a failed flush: `server::stop_on_wal_failure` (the batch is neither applied nor answered).

use super::core::{unix_micros, unix_millis, Core};
use super::msg::ShardRequest;
use crate::wal::Wal;
use engine::command::{Command, LogEntry, MultiOp};
use engine::types::Zxid;
use glommio::channels::local_channel::{LocalReceiver, LocalSender};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;

/// Most entries in one WAL batch (one write + one fdatasync).
const BATCH_ENTRIES_MAX: usize = 4096;
/// Most request bytes in one WAL batch; the rest waits for the next batch.
const BATCH_BYTES_MAX: usize = 64 << 20;

struct PendingWrite {
    request: ShardRequest,
    command: Command,
}

/// The writes waiting for this core's commit loop, and the zxids it has handed out.
pub(super) struct CommitQueue {
    pending: RefCell<Vec<PendingWrite>>,
    /// Wakes the commit loop.
    signal: LocalSender<()>,
    /// Highest zxid handed out by this core (its log's zxids strictly increase; assigned zxids
    /// run ahead of applied ones while a batch flushes).
    zxid_assigned: Cell<Zxid>,
    /// A batch has zxids assigned and is not applied yet: no promise beyond it.
    batch_in_flight: Cell<bool>,
    /// The zxid of the last entry applied (a batch in flight has only higher ones).
    last_applied: Cell<Zxid>,
}

impl CommitQueue {
    /// `last_zxid`: the highest zxid in this core's shards (recovered from the WAL).
    pub(super) fn new(signal: LocalSender<()>, last_zxid: Zxid) -> CommitQueue {
        CommitQueue {
            pending: RefCell::new(Vec::new()),
            signal,
            zxid_assigned: Cell::new(last_zxid),
            batch_in_flight: Cell::new(false),
            last_applied: Cell::new(last_zxid),
        }
    }

    /// Queues a write for the next batch and wakes the commit loop.
    pub(super) fn propose(&self, request: ShardRequest, command: Command) {
        self.pending.borrow_mut().push(PendingWrite { request, command });
        let _ = self.signal.try_send(());
    }

    /// With no batch in flight, everything this core assigned is applied: it may promise up to
    /// `heard` as well (the highest promise heard from any core), so those zxids are reserved
    /// and only higher ones are assigned from then on. None while a batch is in flight.
    pub(super) fn applied_through(&self, heard: Zxid) -> Option<Zxid> {
        if self.batch_in_flight.get() {
            return None;
        }
        let through = self.zxid_assigned.get().max(heard);
        self.zxid_assigned.set(through);
        Some(through)
    }

    /// Everything up to here is applied (whether or not a batch is in flight).
    pub(super) fn last_applied(&self) -> Zxid {
        self.last_applied.get()
    }

    /// zxid for a new entry: above every earlier one of this core (so of each of its shards)
    /// and, when the clock allows, the current time in microseconds, so zxids of different
    /// cores are ordered roughly as real time (see docs/architecture.md, "zxid").
    fn next_zxid(&self) -> Zxid {
        let zxid = (self.zxid_assigned.get() + 1).max(unix_micros());
        self.zxid_assigned.set(zxid);
        zxid
    }

    fn take_batch(&self) -> Vec<PendingWrite> {
        let mut pending = self.pending.borrow_mut();
        let mut bytes = 0;
        let mut count = 0;
        for write in pending.iter().take(BATCH_ENTRIES_MAX) {
            bytes += command_bytes(&write.command);
            if count > 0 && bytes > BATCH_BYTES_MAX {
                break;
            }
            count += 1;
        }
        pending.drain(..count).collect()
    }
}

/// The group-commit loop of this core's WAL: every write that arrived during one loop
/// turn goes into one batch, written and fdatasync'd once; only then are the entries
/// applied and answered. While a batch is on its way to disk the next one gathers.
pub(super) async fn commit_loop(core: Rc<Core>, mut wal: Wal, signal: LocalReceiver<()>) {
    while signal.recv().await.is_some() {
        futures_lite::future::yield_now().await;
        loop {
            let batch = core.commit.take_batch();
            if batch.is_empty() {
                break;
            }
            commit_batch(&core, &mut wal, batch).await;
        }
    }
}

async fn commit_batch(core: &Core, wal: &mut Wal, batch: Vec<PendingWrite>) {
    let queue = &core.commit;
    let time_ms = unix_millis();
    queue.batch_in_flight.set(true);
    let entries: Vec<(ShardRequest, LogEntry)> = batch
        .into_iter()
        .map(|w| {
            let entry = LogEntry { shard: w.request.shard, zxid: queue.next_zxid(), time_ms, command: w.command };
            (w.request, entry)
        })
        .collect();
    for (_, entry) in &entries {
        // Config validation keeps a request below the WAL's record limit; a violation is a
        // bug, reported by the WAL's own check.
        wal.try_append(&entry.to_bytes()).unwrap_or_else(|e| panic!("WAL refused an entry: {e}"));
    }
    let started = Instant::now();
    let flushed = wal.flush().await;
    core.metrics.borrow_mut().record_flush(started.elapsed(), entries.len());
    match flushed {
        Ok(_) => {
            for (request, entry) in entries {
                // Set first: reads served while this entry applies see it applied.
                queue.last_applied.set(entry.zxid);
                core.apply_and_reply(request, entry);
            }
            queue.batch_in_flight.set(false);
            core.announce_applied();
            core.serve_cut_waiters();
        }
        // The batch may or may not be on disk (fsyncgate): neither apply nor answer it.
        Err(error) => super::stop_on_wal_failure(core.id, &error, entries.len()),
    }
}

/// Roughly the bytes a command adds to a batch (its data dominates).
fn command_bytes(command: &Command) -> usize {
    const OVERHEAD: usize = 256;
    OVERHEAD
        + match command {
            Command::Create(op) => op.data.as_ref().map_or(0, Vec::len) + op.path.len(),
            Command::SetData(op) => op.data.as_ref().map_or(0, Vec::len) + op.path.len(),
            Command::Multi { ops, .. } => ops.len() * OVERHEAD + ops.iter().map(multi_op_bytes).sum::<usize>(),
            _ => 0,
        }
}

fn multi_op_bytes(op: &MultiOp) -> usize {
    match op {
        MultiOp::Create(c) => c.data.as_ref().map_or(0, Vec::len) + c.path.len(),
        MultiOp::SetData(s) => s.data.as_ref().map_or(0, Vec::len) + s.path.len(),
        MultiOp::Delete(d) => d.path.len(),
        MultiOp::Check { path, .. } => path.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::msg::{ShardOp, INTERNAL_CONN};
    use engine::command::SetDataOp;
    use glommio::channels::local_channel;

    fn queue(last_zxid: Zxid) -> CommitQueue {
        let (signal, _wake) = local_channel::new_bounded(1);
        CommitQueue::new(signal, last_zxid)
    }

    fn set_data(data_bytes: usize) -> Command {
        Command::SetData(SetDataOp {
            path: "/a".into(),
            data: Some(vec![0; data_bytes]),
            version: -1,
            auth: Vec::new(),
        })
    }

    fn propose(queue: &CommitQueue, command: Command) {
        let request = ShardRequest {
            shard: 0,
            conn: INTERNAL_CONN,
            seq: 0,
            part: 0,
            session: 0,
            auth: Default::default(),
            op: ShardOp::Sync,
        };
        queue.propose(request, command);
    }

    #[test]
    fn a_batch_holds_at_most_batch_entries_max_entries() {
        let queue = queue(0);
        for _ in 0..BATCH_ENTRIES_MAX + 10 {
            propose(&queue, set_data(0));
        }
        assert_eq!(queue.take_batch().len(), BATCH_ENTRIES_MAX);
        assert_eq!(queue.take_batch().len(), 10);
        assert!(queue.take_batch().is_empty());
    }

    #[test]
    fn a_batch_stops_below_batch_bytes_max_but_always_takes_one_entry() {
        let queue = queue(0);
        propose(&queue, set_data(BATCH_BYTES_MAX));
        propose(&queue, set_data(BATCH_BYTES_MAX / 2));
        propose(&queue, set_data(BATCH_BYTES_MAX / 4));
        assert_eq!(queue.take_batch().len(), 1, "an entry over the limit still goes, alone");
        assert_eq!(queue.take_batch().len(), 2);
    }

    #[test]
    fn zxids_increase_and_nothing_is_promised_while_a_batch_is_in_flight() {
        let queue = queue(1 << 60);
        let first = queue.next_zxid();
        assert!(queue.next_zxid() > first);
        queue.batch_in_flight.set(true);
        assert_eq!(queue.applied_through(first + 100), None);
        queue.batch_in_flight.set(false);
        assert_eq!(queue.applied_through(first + 100), Some(first + 100));
        assert!(queue.next_zxid() > first + 100, "a promised zxid is never assigned");
        assert_eq!(queue.applied_through(0), Some(first + 101), "it promises what it assigned");
    }
}
