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
use crate::snapshot_transfer::{self, ChunkHeader, Receipt, SendStep, Sender};
use ahash::AHashMap;
use engine::command::ShardId;
use engine::raft::{Index, NodeId};
use engine::snapshot::NodeBatchBuilder;
use engine::txn::TxnImage;
use futures_lite::AsyncWriteExt;
use glommio::io::{DmaFile, DmaStreamWriterBuilder};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

/// Nodes collected per step, between which the core serves others.
const NODES_PER_STEP: usize = 256;
/// Nodes per frame of the file.
const NODES_PER_FRAME: usize = 4096;

/// When the next snapshot is due: after a random share (half to all) of the configured
/// entries or bytes of log since the last one, drawn anew each time, and never before the log
/// grew by a quarter as many entries as the tree has nodes: a snapshot costs about a
/// microsecond and a half of the core per node, so a large tree rewritten every 100,000
/// entries would cost more than the writes themselves (measured at 1M znodes: three times the
/// server CPU per write); this keeps it to about 6 µs per entry, for a longer replay (a floor
/// of half the nodes made the restart of 1M znodes 2.7 s, most of it replay).
/// A snapshot waits for at least one entry of log per this many nodes of the last one.
const NODES_PER_ENTRY_DUE: u64 = 4;

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
        policy.rearm(entries, bytes, 0);
        policy
    }

    pub(super) fn note_entry(&mut self, bytes: usize) {
        self.entries += 1;
        self.bytes += bytes as u64;
    }

    pub(super) fn due(&self) -> bool {
        self.entries >= self.entries_due || self.bytes >= self.bytes_due
    }

    /// A snapshot of `nodes` nodes began: the count starts over towards a new random threshold.
    pub(super) fn rearm(&mut self, entries: u64, bytes: u64, nodes: u64) {
        let share = |this: &mut SnapshotPolicy, of: u64| of / 2 + this.next_random() % (of / 2 + 1);
        self.entries_due = share(self, entries).max(nodes / NODES_PER_ENTRY_DUE);
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
    /// Leader: snapshots being sent to followers, by follower.
    sending: RefCell<AHashMap<NodeId, Sender>>,
    /// Follower: the leader's snapshot being received.
    receiving: RefCell<Option<Receiving>>,
    /// Follower: a leader's snapshot received whole, for the replication loop to load off the
    /// core (`load_received`); the index of the one being loaded; a loaded one to switch to.
    to_load: RefCell<Option<Receiving>>,
    loading: Cell<Option<Index>>,
    to_install: RefCell<Option<(NodeId, snapshot_file::Loaded)>>,
    /// Snapshots sent whole to followers, and installed from a leader (mntr).
    pub(super) sent: Cell<u64>,
    pub(super) installed: Cell<u64>,
    /// The task queue the writer runs in (created on first use, on the core's executor).
    queue: std::cell::OnceCell<glommio::TaskQueueHandle>,
}

/// A leader's snapshot file arriving here.
pub(super) struct Receiving {
    transfer: snapshot_transfer::Receiving,
    file: std::fs::File,
    temp: PathBuf,
}

impl SnapshotStatus {
    /// The node started from a snapshot after `index`.
    pub(super) fn set_loaded(&self, index: Index) {
        self.last_index.set(index);
    }

    pub(super) fn running(&self) -> bool {
        self.running.get()
    }

    pub(super) fn figures(&self) -> super::msg::SnapshotFigures {
        let last = *self.last_written.borrow();
        super::msg::SnapshotFigures {
            index: self.last_index.get(),
            last_write_ms: last.map_or(0, |(_, elapsed, _)| elapsed.as_millis() as u64),
            last_bytes: last.map_or(0, |(_, _, bytes)| bytes),
            running: self.running.get(),
            sent: self.sent.get(),
            installed: self.installed.get(),
        }
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
    // The group's multis across groups in flight are kept in its home shard, its lowest.
    let txns = ids.first().and_then(|home| Some((*home, shards[home].shard.txns().image()?)));
    drop(shards);
    let head = head_of(heads);
    core.snapshots.begin(head.index);
    let queue = *core.snapshots.queue.get_or_init(|| {
        glommio::executor().create_task_queue(
            glommio::Shares::Static(SNAPSHOT_SHARES),
            glommio::Latency::NotImportant,
            "snapshots",
        )
    });
    let writer = write_snapshot(core.clone(), head, txns, ids);
    match glommio::spawn_local_into(writer, queue) {
        Ok(task) => task.detach(),
        Err(error) => panic!("cannot spawn the snapshot writer: {error}"),
    };
}

/// The snapshot writer's share of a busy core, against the default queue's 1000 (requests,
/// replication): it walks in the gaps between requests, and takes about a sixth of the core
/// when they leave none, so a snapshot under full load costs requests little latency.
const SNAPSHOT_SHARES: usize = 200;

async fn write_snapshot(core: Rc<Core>, head: GroupHead, txns: Option<(ShardId, TxnImage)>, shards: Vec<ShardId>) {
    let started = Instant::now();
    let dir = super::data_dir::snapshot_dir(&core.config.data_dir, core.id);
    let index = head.index;
    match write_file(&core, &dir, head, txns, &shards).await {
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
            let _ = std::fs::remove_file(durable_file::temp_path(&snapshot_file::path_of(&dir, index)));
            tracing::error!(core = core.id, index, %error, "snapshot failed; the WAL keeps everything until one succeeds");
        }
    }
    core.snapshots.running.set(false);
}

/// Writes the snapshot file; returns its path and size.
async fn write_file(
    core: &Core,
    dir: &Path,
    head: GroupHead,
    txns: Option<(ShardId, TxnImage)>,
    shards: &[ShardId],
) -> std::io::Result<(PathBuf, u64)> {
    durable_file::create_dir_all(dir)?;
    let path = snapshot_file::path_of(dir, head.index);
    let temp = durable_file::temp_path(&path);
    let file = DmaFile::create(&temp).await.map_err(std::io::Error::from)?;
    let mut writer = DmaStreamWriterBuilder::new(file).with_buffer_size(1 << 20).with_write_behind(2).build();
    let mut frames = Frames::begin(&head, txns.as_ref().map(|(home, image)| (*home, image)));
    let mut written = 0u64;
    for &shard in shards {
        let mut batch = NodeBatchBuilder::default();
        loop {
            let done = {
                let mut slots = core.shards.borrow_mut();
                let slot = slots.get_mut(&shard).expect("the core's shard");
                if !slot.shard.imaging() {
                    // The shard was replaced meanwhile (a leader's snapshot was installed).
                    return Err(std::io::Error::other("the shard was replaced by a leader's snapshot"));
                }
                slot.shard.image_step(NODES_PER_STEP, &mut batch)
            };
            if (done || batch.len() >= NODES_PER_FRAME) && !batch.is_empty() {
                // Serialized and checksummed on glommio's blocking pool: the core only walks,
                // copies the nodes out and hands the archive to the file.
                let nodes = batch.take();
                let count = nodes.nodes.len();
                let (archive, crc) = glommio::executor()
                    .spawn_blocking(move || {
                        let archive = nodes.to_bytes();
                        let crc = snapshot_file::nodes_crc(shard, &archive);
                        (archive, crc)
                    })
                    .await;
                let (header, padding) = frames.nodes_frame_header(shard, count, archive.len(), crc);
                writer.write_all(&header).await?;
                writer.write_all(&archive).await?;
                writer.write_all(&[0; 16][..padding]).await?;
                written += (header.len() + archive.len() + padding) as u64;
            }
            if done {
                break;
            }
            // The queue, not just the task: a task that only yields keeps its queue on the core
            // for the scheduler's whole slice (100 ms), and requests wait that long.
            glommio::executor().yield_task_queue_now().await;
        }
    }
    frames.end();
    let rest = frames.take(true);
    written += rest.len() as u64;
    writer.write_all(&rest).await?;
    // Closing fdatasyncs (the length is block aligned: no truncation after it).
    writer.close().await?;
    let (from, to, dir) = (temp.clone(), path.clone(), dir.to_path_buf());
    glommio::executor()
        .spawn_blocking(move || std::fs::rename(&from, &to).and_then(|()| durable_file::sync_dir(&dir)))
        .await?;
    Ok((path, written))
}

/// Leader: starts sending the newest snapshot that covers what `follower` lacks (one whose
/// index is at least `compacted_through`, the last entry no longer in the log); asks for a
/// snapshot if there is none yet. Idempotent while a send to it is under way.
pub(super) fn send_to(core: &Rc<Core>, follower: NodeId, compacted_through: Index) {
    if core.snapshots.sending.borrow().contains_key(&follower) {
        return;
    }
    let dir = super::data_dir::snapshot_dir(&core.config.data_dir, core.id);
    let newest = snapshot_file::list(&dir).ok().and_then(|list| list.into_iter().next());
    let Some((index, path)) = newest.filter(|(index, _)| *index >= compacted_through) else {
        if !core.snapshots.running() {
            core.snapshots.requested.set(true);
        }
        return;
    };
    let total = match std::fs::metadata(&path) {
        Ok(metadata) => metadata.len(),
        Err(error) => {
            return tracing::warn!(core = core.id, path = %path.display(), %error, "cannot read a snapshot's size")
        }
    };
    tracing::info!(core = core.id, follower, index, "sending a snapshot to a follower behind the log");
    let sender = Sender::new(index, total, snapshot_transfer::PACE, Instant::now());
    core.snapshots.sending.borrow_mut().insert(follower, sender);
    glommio::spawn_local(send_snapshot(core.clone(), follower, index, path, total)).detach();
}

async fn send_snapshot(core: Rc<Core>, follower: NodeId, index: Index, path: PathBuf, total: u64) {
    let outcome = send_file(&core, follower, index, &path, total).await;
    core.snapshots.sending.borrow_mut().remove(&follower);
    match outcome {
        Ok(total) => {
            core.snapshots.sent.set(core.snapshots.sent.get() + 1);
            tracing::info!(core = core.id, follower, index, bytes = total, "snapshot sent");
        }
        Err(why) => tracing::warn!(core = core.id, follower, index, %why, "snapshot not sent; retried while needed"),
    }
}

/// `total`: the file's size when the transfer began (snapshot files never change once renamed
/// into place).
async fn send_file(core: &Core, follower: NodeId, index: Index, path: &Path, total: u64) -> Result<u64, String> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let file = std::sync::Arc::new(file);
    // The snapshot's own term, from its head (the follower checks it again when it loads it).
    let term = snapshot_file::term_of(path)?;
    let transport = core.transport.as_ref().ok_or("a single node sends no snapshots")?;
    loop {
        let step = {
            let mut sending = core.snapshots.sending.borrow_mut();
            sending
                .get_mut(&follower)
                .filter(|sender| sender.index == index)
                .ok_or("the send was dropped")?
                .step(Instant::now())
        };
        let ranges = match step {
            SendStep::Done => return Ok(total),
            SendStep::GiveUp(why) => return Err(why),
            SendStep::Send(ranges) => ranges,
        };
        if !core.commit.leading() {
            return Err("no longer leading".to_string());
        }
        if ranges.is_empty() {
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
            continue;
        }
        // Read on the blocking pool: up to 8 MiB, not from the page cache after a restart.
        let reader = file.clone();
        let chunks = glommio::executor()
            .spawn_blocking(move || {
                let read = |range: std::ops::Range<u64>| {
                    let mut bytes = vec![0; (range.end - range.start) as usize];
                    reader.read_exact_at(&mut bytes, range.start).map(|()| (range.start, bytes))
                };
                ranges.into_iter().map(read).collect::<std::io::Result<Vec<_>>>()
            })
            .await
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        for (offset, bytes) in chunks {
            transport.send(follower, crate::peer::PeerMessage::SnapshotChunk { index, term, offset, total, bytes });
        }
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// Leader: a follower's answer to a chunk. Once it holds the state through `index` (it
/// installed the snapshot, or had it already), Raft hears what the follower's own append
/// answer would say: it matches through `index` (its Raft may not know the leader yet to
/// say so itself), and the leader goes on with appends after it.
pub(super) fn on_ack(core: &Core, from: NodeId, index: Index, received: u64, installed: bool) {
    if let Some(sender) = core.snapshots.sending.borrow_mut().get_mut(&from).filter(|s| s.index == index) {
        sender.on_ack(received, installed, Instant::now());
    }
    if installed && core.commit.leading() {
        let me = NodeId::from(core.config.node_id);
        let term = core.group_term();
        let body = engine::raft::Body::AppendResponse { success: true, index, last_index: index };
        core.commit.deliver(engine::raft::Message { from, to: me, term, body });
    }
}

/// Follower: a piece of a leader's snapshot. Written to a temporary file as it comes; the
/// whole file is fdatasync'd, renamed and loaded (checked frame by frame) before the
/// replication loop switches to it, so a crash leaves the old state or the new, never a mix.
pub(super) fn on_chunk(core: &Core, header: ChunkHeader, bytes: Vec<u8>) {
    let Some(transport) = core.transport.as_ref() else { return };
    if core.commit.leading() {
        return;
    }
    let (from, index) = (header.from, header.index);
    let answer = |received: u64, installed: bool| {
        transport.send(from, crate::peer::PeerMessage::SnapshotAck { index, received, installed })
    };
    let to_install = core.snapshots.to_install.borrow().as_ref().map(|(_, loaded)| loaded.index);
    let loading = core.snapshots.loading.get().or(to_install);
    let receipt = {
        let slot = core.snapshots.receiving.borrow();
        let under_way = slot.as_ref().map(|receiving| &receiving.transfer);
        let leader = core.group_leaders.leader(core.id);
        let applied = core.group_applied_index();
        snapshot_transfer::receive(under_way, header, bytes.len() as u64, leader, applied, loading)
    };
    let outcome = match receipt {
        Receipt::Ignore => return,
        Receipt::Answer { received, installed } => return answer(received, installed),
        Receipt::Begin => begin_receiving(core, header).and_then(|()| append(core, &bytes)),
        Receipt::Append => append(core, &bytes),
        Receipt::Refuse(why) => Err(why),
    };
    match outcome {
        Ok(received) => answer(received, false),
        Err(why) => {
            tracing::warn!(core = core.id, from, index, %why, "a snapshot from the leader failed; starting over");
            if let Some(receiving) = core.snapshots.receiving.borrow_mut().take() {
                let _ = std::fs::remove_file(&receiving.temp);
            }
            answer(0, false);
        }
    }
}

/// Drops the transfer under way, if any, and creates the file of the one `header` begins.
fn begin_receiving(core: &Core, header: ChunkHeader) -> Result<(), String> {
    let mut slot = core.snapshots.receiving.borrow_mut();
    if let Some(old) = slot.take() {
        let _ = std::fs::remove_file(&old.temp);
    }
    let dir = super::data_dir::snapshot_dir(&core.config.data_dir, core.id);
    durable_file::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let temp = snapshot_file::receiving_path(&dir, header.index);
    let file = std::fs::File::create(&temp).map_err(|e| format!("cannot create {}: {e}", temp.display()))?;
    tracing::info!(
        core = core.id,
        from = header.from,
        index = header.index,
        bytes = header.total,
        "receiving a snapshot from the leader"
    );
    *slot = Some(Receiving { transfer: snapshot_transfer::Receiving::begun(header), file, temp });
    Ok(())
}

/// Writes a chunk after what the file holds; returns the bytes held. The last one completes
/// the file, which the replication loop then has loaded off the core (`load_received`).
fn append(core: &Core, bytes: &[u8]) -> Result<u64, String> {
    use std::io::Write;
    let mut slot = core.snapshots.receiving.borrow_mut();
    let receiving = slot.as_mut().expect("a transfer under way");
    receiving.file.write_all(bytes).map_err(|e| format!("cannot write {}: {e}", receiving.temp.display()))?;
    if !receiving.transfer.appended(bytes.len() as u64) {
        return Ok(receiving.transfer.received);
    }
    let receiving = slot.take().expect("under way");
    drop(slot);
    let total = receiving.transfer.total;
    core.snapshots.loading.set(Some(receiving.transfer.index));
    *core.snapshots.to_load.borrow_mut() = Some(receiving);
    core.commit.wake();
    Ok(total)
}

/// Follower: a leader's snapshot received whole, for `load_received`.
pub(super) fn take_to_load(core: &Core) -> Option<Receiving> {
    core.snapshots.to_load.borrow_mut().take()
}

/// Makes a received file durable, loads and checks it on the blocking pool (about a second
/// of work at 1M znodes, which on the core held its heartbeats and lease answers), then hands
/// it to the replication loop to switch to. A file that fails is dropped, and the leader is
/// told the follower holds nothing of it, so it sends a snapshot again.
pub(super) fn load_received(core: &Rc<Core>, receiving: Receiving) {
    let (from, index) = (receiving.transfer.from, receiving.transfer.index);
    let dir = super::data_dir::snapshot_dir(&core.config.data_dir, core.id);
    let group = u16::try_from(core.id).expect("cores fit a u16");
    let shards = core.config.shards;
    let core = core.clone();
    let load = async move {
        let outcome = glommio::executor().spawn_blocking(move || complete(receiving, &dir, group, shards)).await;
        // A later file may have completed meanwhile: its mark stays.
        if core.snapshots.loading.get() == Some(index) {
            core.snapshots.loading.set(None);
        }
        match outcome {
            Ok(loaded) => {
                *core.snapshots.to_install.borrow_mut() = Some((from, loaded));
                core.commit.wake();
            }
            Err(why) => {
                tracing::warn!(core = core.id, from, index, %why, "a snapshot from the leader failed; starting over");
                if let Some(transport) = core.transport.as_ref() {
                    transport
                        .send(from, crate::peer::PeerMessage::SnapshotAck { index, received: 0, installed: false });
                }
            }
        }
    };
    glommio::spawn_local(load).detach();
}

/// The whole file: made durable under its real name, then loaded and checked (blocking). A
/// file that fails is removed.
fn complete(receiving: Receiving, dir: &Path, group: u16, shards: u16) -> Result<snapshot_file::Loaded, String> {
    let Receiving { transfer: snapshot_transfer::Receiving { index, term, .. }, file, temp } = receiving;
    let checked = (|| {
        file.sync_all().map_err(|e| format!("cannot sync {}: {e}", temp.display()))?;
        drop(file);
        // Checked before it gets its real name: a damaged transfer never becomes the newest
        // snapshot.
        let loaded = snapshot_file::load(&temp, group, shards)?;
        if (loaded.index, loaded.term) != (index, term) {
            return Err(format!("the file is of entry {} (term {}), not {index} ({term})", loaded.index, loaded.term));
        }
        Ok(loaded)
    })();
    let loaded = checked.inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })?;
    let path = snapshot_file::path_of(dir, index);
    std::fs::rename(&temp, &path).map_err(|e| format!("cannot rename {}: {e}", temp.display()))?;
    durable_file::sync_dir(dir).map_err(|e| format!("cannot sync {}: {e}", dir.display()))?;
    Ok(snapshot_file::Loaded { path, ..loaded })
}

/// Follower: a leader's snapshot to switch to, if one was received.
pub(super) fn take_to_install(core: &Core) -> Option<(NodeId, snapshot_file::Loaded)> {
    core.snapshots.to_install.borrow_mut().take()
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
            policy.rearm(1000, 1 << 30, 10);
        }
        assert!(seen.len() > 10, "thresholds vary: {seen:?}");
        let mut by_bytes = SnapshotPolicy::new(1_000_000, 1000, 7);
        for _ in 0..10 {
            by_bytes.note_entry(100);
        }
        assert!(by_bytes.due(), "the byte threshold counts too");
        let mut large = SnapshotPolicy::new(1000, 1 << 30, 9);
        large.rearm(1000, 1 << 30, 1_000_000);
        for _ in 0..249_999 {
            large.note_entry(10);
        }
        assert!(!large.due(), "a tree of 1M nodes waits for 250,000 entries");
        large.note_entry(10);
        assert!(large.due());
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
