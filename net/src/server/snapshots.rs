//! Snapshots of a core's group, taken in the background: when one is due (`SnapshotPolicy`),
//! the replication loop begins an image of each of the core's shards between two applies
//! (`Shard::begin_image`: the state after the last applied entry, index S) and spawns
//! `write_snapshot`, which collects the nodes in steps (`Shard::image_step`), yielding to the
//! core between steps while applies go on, and streams the frames (`snapshot_file::Frames`)
//! through a glommio DMA file: temporary name, fdatasync, rename, directory fsync. Once it is
//! durable the replication loop prunes the older snapshots and releases the WAL segments that
//! only the pruned ones needed (`WalPositions`), keeping a tail for followers that are behind.

use super::core::Core;
use crate::durable_file;
use crate::snapshot_file::{self, Frames, GroupHead};
use engine::command::ShardId;
use engine::raft::Index;
use engine::snapshot::NodeBatchBuilder;
use futures_lite::AsyncWriteExt;
use glommio::io::{DmaFile, DmaStreamWriterBuilder};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

/// Nodes collected per step, between which the core serves others.
const NODES_PER_STEP: usize = 1024;
/// Nodes per frame of the file.
const NODES_PER_FRAME: usize = 4096;

/// When the next snapshot is due: after a random share (half to all) of the configured
/// entries or bytes of log since the last one, drawn anew each time.
pub(super) struct SnapshotPolicy {
    entries_due: u64,
    bytes_due: u64,
    entries: u64,
    bytes: u64,
    rng: u64,
}

impl SnapshotPolicy {
    pub(super) fn new(entries: u64, bytes: u64, seed: u64) -> SnapshotPolicy {
        let mut policy = SnapshotPolicy { entries_due: entries, bytes_due: bytes, entries: 0, bytes: 0, rng: seed | 1 };
        policy.rearm(entries, bytes);
        policy
    }

    pub(super) fn note_entry(&mut self, bytes: usize) {
        self.entries += 1;
        self.bytes += bytes as u64;
    }

    pub(super) fn due(&self) -> bool {
        self.entries >= self.entries_due || self.bytes >= self.bytes_due
    }

    /// A snapshot began: the count starts over towards a new random threshold.
    pub(super) fn rearm(&mut self, entries: u64, bytes: u64) {
        let share = |this: &mut SnapshotPolicy, of: u64| of / 2 + this.next_random() % (of / 2 + 1);
        self.entries_due = share(self, entries);
        self.bytes_due = share(self, bytes);
        self.entries = 0;
        self.bytes = 0;
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64: enough to spread the nodes' thresholds.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }
}

/// Where in the WAL the latest write of each Raft index is, sampled: which segments a
/// snapshot makes unnecessary. The latest writes of a log's entries are in index order in the
/// WAL (an entry rewritten after a truncation is followed by rewrites of all after it), so
/// keeping every record from the latest write of entry K on keeps every entry from K.
#[derive(Default)]
pub(super) struct WalPositions {
    /// (index, lsn of its latest write), increasing in both.
    samples: VecDeque<(Index, u64)>,
}

/// Indexes between samples (the lsn found for an index is at most this much early).
const SAMPLE_EVERY: Index = 256;

impl WalPositions {
    pub(super) fn wrote(&mut self, index: Index, lsn: u64) {
        self.truncated(index);
        if self.samples.back().is_none_or(|&(last, _)| index >= last + SAMPLE_EVERY) {
            self.samples.push_back((index, lsn));
        }
    }

    /// Entries from `from` on were dropped (they are written again later).
    pub(super) fn truncated(&mut self, from: Index) {
        while self.samples.back().is_some_and(|&(index, _)| index >= from) {
            self.samples.pop_back();
        }
    }

    /// An lsn such that the records from it on hold every entry from `index` on; None if
    /// nothing is known to lie below it.
    pub(super) fn lsn_keeping(&mut self, index: Index) -> Option<u64> {
        let position = self.samples.partition_point(|&(sampled, _)| sampled <= index);
        let (_, lsn) = *self.samples.get(position.checked_sub(1)?)?;
        // Samples below the one used are of records that may now be released.
        self.samples.drain(..position - 1);
        Some(lsn)
    }
}

/// The snapshot in progress and the last finished, shared by the replication loop and the
/// task writing it.
#[derive(Default)]
pub(super) struct SnapshotStatus {
    running: Cell<bool>,
    /// Set by the writer when its snapshot is durable; taken by the replication loop.
    finished: Cell<Option<Index>>,
    /// The index of the last snapshot begun or loaded: nothing new, no snapshot.
    last_index: Cell<Index>,
    /// Asked for on demand (`snap` four-letter word).
    pub(super) requested: Cell<bool>,
    /// (index, duration, bytes) of the last snapshot written, for mntr.
    pub(super) last_written: RefCell<Option<(Index, std::time::Duration, u64)>>,
}

impl SnapshotStatus {
    /// The node started from a snapshot after `index`.
    pub(super) fn set_loaded(&self, index: Index) {
        self.last_index.set(index);
    }

    pub(super) fn running(&self) -> bool {
        self.running.get()
    }

    pub(super) fn last_index(&self) -> Index {
        self.last_index.get()
    }

    pub(super) fn take_finished(&self) -> Option<Index> {
        self.finished.take()
    }

    pub(super) fn begin(&self, index: Index) {
        assert!(!self.running.get(), "one snapshot at a time");
        self.running.set(true);
        self.requested.set(false);
        self.last_index.set(index);
    }
}

/// Begins images of the core's shards now (between two applies) and spawns their writer.
pub(super) fn begin_snapshot(core: &Rc<Core>, head_of: impl FnOnce(Vec<engine::snapshot::ShardHead>) -> GroupHead) {
    let mut shards = core.shards.borrow_mut();
    let mut ids: Vec<ShardId> = shards.keys().copied().collect();
    ids.sort_unstable();
    let heads =
        ids.iter().map(|id| shards.get_mut(id).expect("listed").shard.begin_image(core.config.shards)).collect();
    drop(shards);
    let head = head_of(heads);
    core.snapshots.begin(head.index);
    glommio::spawn_local(write_snapshot(core.clone(), head, ids)).detach();
}

async fn write_snapshot(core: Rc<Core>, head: GroupHead, shards: Vec<ShardId>) {
    let started = Instant::now();
    let dir = super::data_dir::snapshot_dir(&core.config.data_dir, core.id);
    let index = head.index;
    match write_file(&core, &dir, head, &shards).await {
        Ok((path, bytes)) => {
            let elapsed = started.elapsed();
            tracing::info!(core = core.id, index, bytes, elapsed_ms = elapsed.as_millis() as u64, path = %path.display(), "snapshot written");
            *core.snapshots.last_written.borrow_mut() = Some((index, elapsed, bytes));
            core.snapshots.finished.set(Some(index));
        }
        Err(error) => {
            let mut slots = core.shards.borrow_mut();
            for id in &shards {
                slots.get_mut(id).expect("the core's shard").shard.abandon_image();
            }
            tracing::error!(core = core.id, index, %error, "snapshot failed; the WAL keeps everything until one succeeds");
        }
    }
    core.snapshots.running.set(false);
}

/// Writes the snapshot file; returns its path and size.
async fn write_file(core: &Core, dir: &Path, head: GroupHead, shards: &[ShardId]) -> std::io::Result<(PathBuf, u64)> {
    durable_file::create_dir_all(dir)?;
    let path = snapshot_file::path_of(dir, head.index);
    let temp = durable_file::temp_path(&path);
    let file = DmaFile::create(&temp).await.map_err(std::io::Error::from)?;
    let mut writer = DmaStreamWriterBuilder::new(file).with_buffer_size(1 << 20).with_write_behind(2).build();
    let mut frames = Frames::new(&head);
    let mut written = 0u64;
    for &shard in shards {
        let mut batch = NodeBatchBuilder::default();
        loop {
            let done = {
                let mut slots = core.shards.borrow_mut();
                let slot = slots.get_mut(&shard).expect("the core's shard");
                slot.shard.image_step(NODES_PER_STEP, &mut batch)
            };
            if done || batch.len() >= NODES_PER_FRAME {
                frames.nodes(shard, &batch.take());
            }
            let ready = frames.take(false);
            written += ready.len() as u64;
            writer.write_all(&ready).await?;
            if done {
                break;
            }
            futures_lite::future::yield_now().await;
        }
    }
    frames.end();
    let rest = frames.take(true);
    written += rest.len() as u64;
    writer.write_all(&rest).await?;
    // Closing fdatasyncs (the length is block aligned: no truncation after it).
    writer.close().await?;
    std::fs::rename(&temp, &path)?;
    durable_file::sync_dir(dir)?;
    Ok((path, written))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_drawn_between_half_and_all_of_the_setting() {
        let mut policy = SnapshotPolicy::new(1000, 1 << 30, 42);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let mut entries = 0;
            while !policy.due() {
                policy.note_entry(10);
                entries += 1;
            }
            assert!((500..=1000).contains(&entries), "{entries}");
            seen.insert(entries);
            policy.rearm(1000, 1 << 30);
        }
        assert!(seen.len() > 10, "thresholds vary: {seen:?}");
        let mut by_bytes = SnapshotPolicy::new(1_000_000, 1000, 7);
        for _ in 0..10 {
            by_bytes.note_entry(100);
        }
        assert!(by_bytes.due(), "the byte threshold counts too");
    }

    #[test]
    fn wal_positions_keep_the_latest_write_of_each_entry() {
        let mut positions = WalPositions::default();
        for index in 1..=1000 {
            positions.wrote(index, index + 10);
        }
        // Entries from 600 on were rewritten later.
        positions.truncated(600);
        for index in 600..=900 {
            positions.wrote(index, index + 2000);
        }
        let lsn = positions.lsn_keeping(550).unwrap();
        assert!(lsn <= 550 + 10, "{lsn}");
        let lsn = positions.lsn_keeping(700).unwrap();
        assert!(lsn <= 700 + 2000, "{lsn}: at or before the rewrite of 700");
        assert!(lsn > 10 + 256, "{lsn}: what lies well below 550 may go");
        assert_eq!(WalPositions::default().lsn_keeping(5), None);
    }
}
