//! A group's snapshot on disk: every shard of the group as of one applied Raft entry, one file
//! per snapshot, `DIR/{index:020}.snap` (DIR is the group's snapshot directory). The file is a
//! stream of checksummed frames, so that a snapshot is written while it is collected (the tree
//! is walked in steps between applies: `Shard::image_step`) and never held whole in memory:
//!
//! ```text
//!   0  magic    u32  "WSN2" little endian; the digit is the format version
//!   4  zeros to 64
//!  64  frames, each 16-aligned:
//!        0  kind   u16  1 head (rkyv `GroupHead`), 2 nodes (rkyv `NodeBatch` of `shard`), 3 end,
//!                       4 transactions (rkyv `TxnImage` of the group, kept in `shard`, its home)
//!        2  shard  u16  a nodes or transactions frame's shard; 0 otherwise
//!        4  length u32  of the archive
//!        8  crc    u32  crc32c of bytes 0..8 and the archive
//!       12  zero   u32
//!       16  archive, zero padded to a multiple of 16
//!      the head first, then the transactions if the group has multis across groups in flight
//!      (no such frame otherwise, so that earlier versions read the file), nodes frames of each
//!      shard in walk order, the end (rkyv `End`) last
//!  zero padding to a multiple of 4096 (the file is written with O_DIRECT)
//! ```
//!
//! A snapshot is written under a temporary name through a glommio DMA stream, fdatasync'd,
//! renamed, and its directory fsync'd: after a crash the file is absent or complete. Loading
//! takes the newest snapshot whose frames all check out and restores its shards from the
//! archives in place (rkyv's validated access, no second decode: `ShardRestore`); a damaged one
//! is skipped, said, and the one before it is tried, so a node never starts from silently wrong
//! data.

use crate::durable_file;
use engine::raft::{Index, Term};
use engine::shard::Shard;
use engine::snapshot::{ArchivedNodeBatch, NodeBatch, PreparedBatch, ShardHead, ShardRestore};
use engine::txn::{ArchivedTxnImage, TxnImage};
use engine::types::Zxid;
use rkyv::{Archive, Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// "WSN2": the snapshot format, version 2.
const MAGIC: u32 = u32::from_le_bytes(*b"WSN2");
const FILE_HEADER_BYTES: usize = 64;
const FRAME_HEADER_BYTES: usize = 16;
const FRAME_ALIGN: usize = 16;
/// The file's length is a multiple of this (O_DIRECT writes whole blocks, and a file that needs
/// no truncation after its fdatasync needs no second one).
pub const FILE_ALIGN: usize = 4096;
const SUFFIX: &str = ".snap";

const KIND_HEAD: u16 = 1;
const KIND_NODES: u16 = 2;
const KIND_END: u16 = 3;
const KIND_TXNS: u16 = 4;

/// What a snapshot holds beside its nodes: the group's shards after its entry `index` (of
/// `term`).
#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct GroupHead {
    pub group: u16,
    pub shard_count: u16,
    pub term: Term,
    pub index: Index,
    /// Per group of the node (this one included): the zxid it had applied when the snapshot
    /// began. Entries of this group in the image may depend on other groups up to these, and
    /// those were applied here, so committed: start-up replays the other groups through them.
    pub applied_zxids: Vec<Zxid>,
    pub shards: Vec<ShardHead>,
}

/// The last frame: what came before it, so a file cut at a frame boundary is not taken whole.
#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
struct End {
    frames: u64,
    nodes: u64,
}

/// A snapshot loaded and restored.
pub struct Loaded {
    pub path: PathBuf,
    pub term: Term,
    pub index: Index,
    pub applied_zxids: Vec<Zxid>,
    pub shards: Vec<Shard>,
}

/// A snapshot file's bytes as they are produced, frame by frame; `take` hands out what is
/// ready to be written (the writer drains it as it goes).
#[derive(Default)]
pub struct Frames {
    bytes: Vec<u8>,
    /// Bytes handed out by `take` or written by the caller (`nodes_frame_header`) before `bytes`.
    offset: u64,
    frames: u64,
    nodes: u64,
    started: bool,
}

impl Frames {
    pub fn new(head: &GroupHead) -> Frames {
        let mut frames = Frames::default();
        frames.bytes.extend_from_slice(&MAGIC.to_le_bytes());
        frames.bytes.resize(FILE_HEADER_BYTES, 0);
        frames.started = true;
        let archive = rkyv::to_bytes::<rkyv::rancor::Error>(head).expect("a group head serializes");
        frames.push(KIND_HEAD, 0, &archive);
        frames
    }

    /// The head, then the group's multis across groups in flight as of it (kept in `home`),
    /// if there are any: how every snapshot begins.
    pub fn begin(head: &GroupHead, txns: Option<(u16, &TxnImage)>) -> Frames {
        let mut frames = Frames::new(head);
        if let Some((home, image)) = txns {
            frames.txns(home, image);
        }
        frames
    }

    /// The group's multis across groups in flight, kept in `home`, as of the head: right after
    /// the head.
    pub fn txns(&mut self, home: u16, image: &TxnImage) {
        assert_eq!(self.frames, 1, "the transactions follow the head");
        let archive = rkyv::to_bytes::<rkyv::rancor::Error>(image).expect("a transaction table serializes");
        self.push(KIND_TXNS, home, &archive);
    }

    pub fn nodes(&mut self, shard: u16, batch: &NodeBatch) {
        if batch.nodes.is_empty() {
            return;
        }
        self.nodes += batch.nodes.len() as u64;
        self.push(KIND_NODES, shard, &batch.to_bytes());
    }

    /// `nodes` of a batch of `count` nodes whose archive the caller writes itself, right after
    /// the bytes returned (what `take(true)` had, then the frame's header), followed by
    /// `padding` zero bytes: the server serializes and checksums a batch off its executor
    /// (`nodes_crc`) and hands the archive to the file without copying it here.
    pub fn nodes_frame_header(&mut self, shard: u16, count: usize, archive_len: usize, crc: u32) -> (Vec<u8>, usize) {
        assert!(count > 0, "a nodes frame holds nodes");
        self.nodes += count as u64;
        self.frames += 1;
        let mut out = self.take(true);
        out.extend_from_slice(&frame_header(KIND_NODES, shard, archive_len, crc));
        let unpadded = self.offset + (FRAME_HEADER_BYTES + archive_len) as u64;
        let padding = (unpadded.next_multiple_of(FRAME_ALIGN as u64) - unpadded) as usize;
        self.offset = unpadded + padding as u64;
        (out, padding)
    }

    /// The end frame and the padding after it: the file is complete.
    pub fn end(&mut self) {
        let end = End { frames: self.frames, nodes: self.nodes };
        let archive = rkyv::to_bytes::<rkyv::rancor::Error>(&end).expect("an end serializes");
        self.push(KIND_END, 0, &archive);
        let end = (self.offset + self.bytes.len() as u64).next_multiple_of(FILE_ALIGN as u64);
        self.bytes.resize((end - self.offset) as usize, 0);
    }

    /// Bytes produced since the last `take`, a multiple of `FILE_ALIGN` but at the end (the
    /// rest stays for the next call).
    pub fn take(&mut self, all: bool) -> Vec<u8> {
        let ready = if all { self.bytes.len() } else { self.bytes.len() / FILE_ALIGN * FILE_ALIGN };
        let rest = self.bytes.split_off(ready);
        self.offset += ready as u64;
        std::mem::replace(&mut self.bytes, rest)
    }

    pub fn pending_bytes(&self) -> usize {
        self.bytes.len()
    }

    fn push(&mut self, kind: u16, shard: u16, archive: &[u8]) {
        assert!(self.started, "frames follow the file header");
        let header = frame_header(kind, shard, archive.len(), frame_crc(kind, shard, archive));
        self.bytes.extend_from_slice(&header);
        self.bytes.extend_from_slice(archive);
        let end = (self.offset + self.bytes.len() as u64).next_multiple_of(FRAME_ALIGN as u64);
        self.bytes.resize((end - self.offset) as usize, 0);
        self.frames += 1;
    }
}

/// The checksum of a frame of `kind` of `shard` holding `archive` (any thread may take it).
pub fn frame_crc(kind: u16, shard: u16, archive: &[u8]) -> u32 {
    let header = frame_header(kind, shard, archive.len(), 0);
    crc32c::crc32c_append(crc32c::crc32c(&header[0..8]), archive)
}

/// The checksum of a nodes frame of `shard` holding `archive`.
pub fn nodes_crc(shard: u16, archive: &[u8]) -> u32 {
    frame_crc(KIND_NODES, shard, archive)
}

fn frame_header(kind: u16, shard: u16, archive_len: usize, crc: u32) -> [u8; FRAME_HEADER_BYTES] {
    let length = u32::try_from(archive_len).expect("a frame's archive is under 4 GiB");
    let mut header = [0u8; FRAME_HEADER_BYTES];
    header[0..2].copy_from_slice(&kind.to_le_bytes());
    header[2..4].copy_from_slice(&shard.to_le_bytes());
    header[4..8].copy_from_slice(&length.to_le_bytes());
    header[8..12].copy_from_slice(&crc.to_le_bytes());
    header
}

/// The file a snapshot after `index` has in `dir`.
pub fn path_of(dir: &Path, index: Index) -> PathBuf {
    dir.join(format!("{index:020}{SUFFIX}"))
}

/// Writes a whole snapshot's bytes (`Frames`, ended) durably with blocking IO: tests and tools.
pub fn write_bytes(dir: &Path, index: Index, bytes: &[u8]) -> std::io::Result<PathBuf> {
    durable_file::create_dir_all(dir)?;
    let path = path_of(dir, index);
    durable_file::write_atomic(&path, bytes)?;
    Ok(path)
}

/// The snapshots in `dir`, newest (highest index) first; temporary files are not listed.
pub fn list(dir: &Path) -> std::io::Result<Vec<(Index, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let index = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(SUFFIX))
            .and_then(|digits| digits.parse::<Index>().ok());
        if let Some(index) = index {
            found.push((index, path));
        }
    }
    found.sort_unstable_by_key(|(index, _)| std::cmp::Reverse(*index));
    Ok(found)
}

/// Snapshots passed over at load, each with why.
pub type Skipped = Vec<(PathBuf, String)>;

/// The newest snapshot of `group` in `dir` that checks out, restored; each newer one that does
/// not is named in the returned list with why (the caller says so). None when there is none.
pub fn load_newest(dir: &Path, group: u16, shard_count: u16) -> std::io::Result<(Option<Loaded>, Skipped)> {
    let mut skipped = Vec::new();
    for (_, path) in list(dir)? {
        match load(&path, group, shard_count) {
            Ok(loaded) => return Ok((Some(loaded), skipped)),
            Err(why) => skipped.push((path, why)),
        }
    }
    Ok((None, skipped))
}

/// The term of the entry a snapshot file is after, from its head (checked).
pub fn term_of(path: &Path) -> Result<Term, String> {
    use std::os::unix::fs::FileExt;
    let fail = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(fail)?;
    let mut header = [0u8; FILE_HEADER_BYTES + FRAME_HEADER_BYTES];
    file.read_exact_at(&mut header, 0).map_err(fail)?;
    let length = u32::from_le_bytes(header[FILE_HEADER_BYTES + 4..FILE_HEADER_BYTES + 8].try_into().expect("4 bytes"));
    let mut start = rkyv::util::AlignedVec::<16>::with_capacity(header.len() + length as usize);
    start.resize(header.len() + length as usize, 0);
    file.read_exact_at(&mut start, 0).map_err(fail)?;
    if start[0..4] != MAGIC.to_le_bytes() {
        return Err("not a snapshot of this format".to_string());
    }
    let mut frames = FrameReader { bytes: &start, at: FILE_HEADER_BYTES, count: 0 };
    let (_, _, archive) = frames.next()?;
    let head =
        rkyv::access::<ArchivedGroupHead, rkyv::rancor::Error>(archive).map_err(|e| format!("invalid head: {e}"))?;
    Ok(head.term.to_native())
}

/// One snapshot file, checked frame by frame and restored.
pub fn load(path: &Path, group: u16, shard_count: u16) -> Result<Loaded, String> {
    let mapped = Mapped::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    load_bytes(mapped.bytes(), path, group, shard_count)
}

/// A file mapped read-only: the archives are read in place from the page cache, with no copy
/// into (and no zeroing of) a buffer of the file's size.
struct Mapped {
    at: *mut libc::c_void,
    len: usize,
}

impl Mapped {
    fn open(path: &Path) -> std::io::Result<Mapped> {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len() as usize;
        if len == 0 {
            return Ok(Mapped { at: std::ptr::null_mut(), len: 0 });
        }
        // SAFETY: a private read-only mapping of a file we opened; unmapped on drop. The file
        // is not written while mapped (snapshots are written under another name, then renamed).
        let at =
            unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0) };
        if at == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapped { at, len })
    }

    fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `at` maps `len` readable bytes for the life of `self`.
        unsafe { std::slice::from_raw_parts(self.at as *const u8, self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmapping the mapping `open` made, once.
            unsafe { libc::munmap(self.at, self.len) };
        }
    }
}

/// `load` of a snapshot file's bytes (`path` names it in the result).
pub fn load_bytes(bytes: &[u8], path: &Path, group: u16, shard_count: u16) -> Result<Loaded, String> {
    if !(bytes.as_ptr() as usize).is_multiple_of(FRAME_ALIGN) {
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
        aligned.extend_from_slice(bytes);
        return load_bytes(&aligned, path, group, shard_count);
    }
    if bytes.len() < FILE_HEADER_BYTES || bytes[0..4] != MAGIC.to_le_bytes() {
        return Err("not a snapshot of this format (bad magic or too short)".to_string());
    }
    let mut frames = FrameReader { bytes, at: FILE_HEADER_BYTES, count: 0 };
    let (kind, _, archive) = frames.next()?;
    if kind != KIND_HEAD {
        return Err(format!("the first frame is of kind {kind}, not the head"));
    }
    let head =
        rkyv::access::<ArchivedGroupHead, rkyv::rancor::Error>(archive).map_err(|e| format!("invalid head: {e}"))?;
    if head.group.to_native() != group || head.shard_count.to_native() != shard_count {
        return Err(format!(
            "a snapshot of group {} of a {}-shard node, not of group {group} of {shard_count} shards",
            head.group.to_native(),
            head.shard_count.to_native()
        ));
    }
    let mut restores = Vec::with_capacity(head.shards.len());
    for shard in head.shards.iter() {
        let id = shard.shard.to_native();
        if restores.iter().any(|(other, _)| *other == id) {
            return Err(format!("shard {id} twice in the head"));
        }
        restores.push((id, ShardRestore::begin(shard, id, shard_count)?));
    }
    let mut batches = Vec::new();
    let mut txns: Option<(u16, &ArchivedTxnImage)> = None;
    loop {
        let (kind, shard, archive) = frames.next()?;
        match kind {
            KIND_TXNS if frames.count == 2 => {
                let image = rkyv::access::<ArchivedTxnImage, rkyv::rancor::Error>(archive)
                    .map_err(|e| format!("invalid transactions: {e}"))?;
                txns = Some((shard, image));
            }
            KIND_NODES => {
                let restore = restores
                    .iter()
                    .position(|(id, _)| *id == shard)
                    .ok_or_else(|| format!("nodes of shard {shard}, which the head does not list"))?;
                batches.push((restore, archive));
            }
            KIND_END => {
                let end = rkyv::access::<ArchivedEnd, rkyv::rancor::Error>(archive)
                    .map_err(|e| format!("invalid end: {e}"))?;
                if end.frames.to_native() != frames.count - 1 {
                    return Err(format!(
                        "the end counts {} frames, the file holds {}",
                        end.frames.to_native(),
                        frames.count - 1
                    ));
                }
                let nodes = add_batches(&batches, &mut restores)?;
                if end.nodes.to_native() != nodes {
                    return Err(format!("the end counts {} nodes, the file holds {nodes}", end.nodes.to_native()));
                }
                break;
            }
            other => return Err(format!("a frame of kind {other} after the head")),
        }
    }
    let mut shards = restores.into_iter().map(|(_, restore)| restore.finish()).collect::<Result<Vec<_>, _>>()?;
    if let Some((home, image)) = txns {
        let mut handed: Vec<&mut Shard> = shards.iter_mut().collect();
        let home = handed
            .iter()
            .position(|s| s.id() == home)
            .ok_or_else(|| format!("transactions kept in shard {home}, which the head does not list"))?;
        engine::txn::restore_txns(&mut handed, home, image)?;
    }
    Ok(Loaded {
        path: path.to_path_buf(),
        term: head.term.to_native(),
        index: head.index.to_native(),
        applied_zxids: head.applied_zxids.iter().map(|zxid| zxid.to_native()).collect(),
        shards,
    })
}

/// Threads preparing node batches while the loader adds them (at most: a machine's cores).
const MAX_PREPARING_THREADS: usize = 4;
/// Batches a preparing thread may have ready before the loader takes them.
const PREPARED_AHEAD: usize = 2;

/// Adds the node batches (each a shard's position in `restores` and its archive) in file
/// order, and returns how many nodes they held. Decoding and allocating the nodes, most of a
/// large restore, runs on up to `MAX_PREPARING_THREADS` threads (batch i on thread i mod n);
/// this thread puts them into their shards in order.
fn add_batches(batches: &[(usize, &[u8])], restores: &mut [(u16, ShardRestore)]) -> Result<u64, String> {
    let prepare = |archive: &[u8]| {
        let batch = rkyv::access::<ArchivedNodeBatch, rkyv::rancor::Error>(archive)
            .map_err(|e| format!("invalid nodes: {e}"))?;
        PreparedBatch::of(batch)
    };
    let mut nodes = 0u64;
    let mut add = |restore: usize, batch: Result<PreparedBatch, String>| {
        let (shard, restore) = &mut restores[restore];
        let batch = batch.map_err(|e| format!("shard {shard}: {e}"))?;
        nodes += batch.len() as u64;
        restore.add_prepared(batch).map_err(|e| format!("shard {shard}: {e}"))
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_PREPARING_THREADS);
    if threads <= 1 || batches.len() <= 1 {
        for (restore, archive) in batches {
            add(*restore, prepare(archive))?;
        }
        return Ok(nodes);
    }
    std::thread::scope(|scope| {
        let mut ready = Vec::with_capacity(threads);
        for first in 0..threads {
            let (sender, receiver) = std::sync::mpsc::sync_channel(PREPARED_AHEAD);
            std::thread::Builder::new()
                .name("warren-load-prepare".to_string())
                .spawn_scoped(scope, move || {
                    for (_, archive) in batches.iter().skip(first).step_by(threads) {
                        // The loader stopped at an error: nothing more to prepare.
                        if sender.send(prepare(archive)).is_err() {
                            return;
                        }
                    }
                })
                .map_err(|e| format!("cannot start a thread to load with: {e}"))?;
            ready.push(receiver);
        }
        for (i, (restore, _)) in batches.iter().enumerate() {
            let batch = ready[i % threads].recv().map_err(|_| "a thread preparing nodes stopped early".to_string())?;
            add(*restore, batch)?;
        }
        Ok::<(), String>(())
    })?;
    Ok(nodes)
}

/// Walks a file's frames, checking each one's bounds and checksum.
struct FrameReader<'a> {
    bytes: &'a [u8],
    at: usize,
    count: u64,
}

impl<'a> FrameReader<'a> {
    fn next(&mut self) -> Result<(u16, u16, &'a [u8]), String> {
        let at = self.at;
        let header = self
            .bytes
            .get(at..at + FRAME_HEADER_BYTES)
            .ok_or_else(|| format!("cut short: no frame at byte {at} (frame {})", self.count))?;
        let kind = u16::from_le_bytes([header[0], header[1]]);
        let shard = u16::from_le_bytes([header[2], header[3]]);
        let length = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        let start = at + FRAME_HEADER_BYTES;
        let archive = self
            .bytes
            .get(start..start.saturating_add(length))
            .ok_or_else(|| format!("cut short: frame {} at byte {at} claims {length} bytes", self.count))?;
        if crc32c::crc32c_append(crc32c::crc32c(&header[0..8]), archive) != crc || header[12..16] != [0; 4] {
            return Err(format!("checksum mismatch in frame {} at byte {at}", self.count));
        }
        self.at = (start + length).next_multiple_of(FRAME_ALIGN);
        self.count += 1;
        Ok((kind, shard, archive))
    }
}

/// Removes all but the `keep` newest snapshots of `dir`, a few MiB at a time
/// (`durable_file::remove_gradually`: a crash midway leaves a temp name that `remove_partial`
/// deletes). Returns the paths removed. Files being written are left alone.
pub fn prune(dir: &Path, keep: usize) -> std::io::Result<Vec<PathBuf>> {
    let removed: Vec<PathBuf> = list(dir)?.into_iter().skip(keep).map(|(_, path)| path).collect();
    durable_file::remove_gradually(dir, &removed)?;
    Ok(removed)
}

/// Start-up: removes all but the `keep` newest snapshots of `dir`, but never `loaded` (the one
/// the node starts from) or one newer than it: a node killed after writing a snapshot and
/// before pruning the oldest would otherwise keep one more for good. Returns the paths removed.
pub fn prune_at_start(dir: &Path, keep: usize, loaded: Index) -> std::io::Result<Vec<PathBuf>> {
    let removed: Vec<PathBuf> =
        list(dir)?.into_iter().skip(keep).filter(|(index, _)| *index < loaded).map(|(_, path)| path).collect();
    remove_durably(dir, &removed)?;
    Ok(removed)
}

/// The name a leader's snapshot after `index` is received under, until it is complete.
pub fn receiving_path(dir: &Path, index: Index) -> PathBuf {
    dir.join(format!("{index:020}{SUFFIX}.recv"))
}

/// Start-up: removes what a stopped node was writing (a snapshot under its temporary name, a
/// leader's snapshot being received): incomplete, so as if never begun. Returns the paths.
pub fn remove_partial(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut partial = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let name = path.file_name().and_then(|name| name.to_str()).unwrap_or("");
            if name.ends_with(".snap.tmp") || name.ends_with(".snap.recv") {
                partial.push(path);
            }
        }
    }
    remove_durably(dir, &partial)?;
    Ok(partial)
}

fn remove_durably(dir: &Path, paths: &[PathBuf]) -> std::io::Result<()> {
    for path in paths {
        std::fs::remove_file(path)?;
    }
    if !paths.is_empty() {
        durable_file::sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::command::{Command, CreateOp, LogEntry};
    use engine::snapshot::NodeBatchBuilder;
    use engine::types::{Acl, CreateMode};

    /// A snapshot file of group 1 of a 4-shard node holding shards 1 and 3, after `writes`
    /// creates in each, with nodes in batches of 7.
    fn image(index: Index, writes: i64) -> (Vec<u8>, Vec<u64>) {
        let mut shards = Vec::new();
        let mut digests = Vec::new();
        for id in [1u16, 3] {
            let mut shard = Shard::new(id, 4);
            for zxid in 1..=writes {
                let create = CreateOp {
                    path: format!("/n{id}-{zxid}"),
                    data: Some(vec![zxid as u8; 10]),
                    acl: Acl::open_unsafe(),
                    mode: CreateMode::Persistent,
                    ttl_ms: 0,
                    session: 0,
                    auth: Vec::new(),
                };
                shard.apply(&LogEntry { shard: id, zxid, time_ms: 1000 + zxid, command: Command::Create(create) });
            }
            digests.push(shard.digest());
            shards.push(shard);
        }
        let heads = shards.iter_mut().map(|shard| shard.begin_image(4)).collect();
        let mut frames = Frames::new(&GroupHead {
            group: 1,
            shard_count: 4,
            term: 3,
            index,
            applied_zxids: vec![7, writes],
            shards: heads,
        });
        for shard in &mut shards {
            let mut batch = NodeBatchBuilder::default();
            while !shard.image_step(7, &mut batch) {
                frames.nodes(shard.id(), &batch.take());
            }
            frames.nodes(shard.id(), &batch.take());
        }
        frames.end();
        let bytes = frames.take(true);
        assert_eq!(bytes.len() % FILE_ALIGN, 0);
        (bytes, digests)
    }

    fn write(dir: &Path, (bytes, _): &(Vec<u8>, Vec<u64>), index: Index) -> PathBuf {
        write_bytes(dir, index, bytes).unwrap()
    }

    /// A node killed after writing its third snapshot and before pruning the first starts
    /// with two; the one it starts from is never removed, even when newer ones were damaged.
    #[test]
    fn start_up_prunes_the_snapshots_beyond_the_kept_number_but_not_the_one_loaded() {
        let dir = tempfile::tempdir().unwrap();
        for index in [20, 30, 40] {
            write(dir.path(), &image(index, 3), index);
        }
        assert!(prune_at_start(dir.path(), 2, 20).unwrap().is_empty(), "the newer two were damaged: 20 is loaded");
        let removed = prune_at_start(dir.path(), 2, 40).unwrap();
        assert_eq!(removed, vec![path_of(dir.path(), 20)]);
        let left: Vec<Index> = list(dir.path()).unwrap().into_iter().map(|(index, _)| index).collect();
        assert_eq!(left, vec![40, 30]);
    }

    #[test]
    fn a_snapshot_written_is_loaded_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let written = image(40, 25);
        let digests = written.1.clone();
        let path = write(dir.path(), &written, 40);
        assert!(path.ends_with("00000000000000000040.snap"));
        let (loaded, skipped) = load_newest(dir.path(), 1, 4).unwrap();
        let loaded = loaded.expect("a snapshot");
        assert!(skipped.is_empty());
        assert_eq!((loaded.term, loaded.index, loaded.applied_zxids.clone()), (3, 40, vec![7, 25]));
        assert_eq!(loaded.shards.iter().map(Shard::digest).collect::<Vec<_>>(), digests);
        assert_eq!(loaded.shards.iter().map(Shard::id).collect::<Vec<_>>(), vec![1, 3]);
        assert!(load(&path, 2, 4).is_err(), "another group's snapshot");
        assert!(load(&path, 1, 8).is_err(), "another shard count");
    }

    /// A multi across groups prepared in group 1 (shards 1 and 3 of 4) and not finished: the
    /// snapshot keeps its held effects, its table and the paths it holds, and after a load its
    /// finish takes the effects back exactly.
    #[test]
    fn a_snapshot_keeps_a_prepared_multi_across_groups_and_its_held_paths() {
        use engine::command::{MultiOp, TxnId, TxnOp, TxnPrepare};
        let mut shards = vec![Shard::new(1, 4), Shard::new(3, 4)];
        let before: Vec<u64> = shards.iter().map(|s| s.tree().digest()).collect();
        let txn = TxnId { node: 2, serial: 9 };
        let create = |shard: u16| {
            let path = (0..).map(|i| format!("/t{i}")).find(|p| engine::path::shard_of(p, 4) == shard).unwrap();
            let op = CreateOp {
                path,
                data: Some(b"x".to_vec()),
                acl: Acl::open_unsafe(),
                mode: CreateMode::Persistent,
                ttl_ms: 0,
                session: 0,
                auth: Vec::new(),
            };
            TxnOp { index: u32::from(shard), shard, op: MultiOp::Create(op) }
        };
        let prepare = TxnPrepare {
            txn,
            coordinator: 0,
            groups: vec![0, 1],
            ops: vec![create(1), create(3)],
            op_count: 4,
            session: 0,
            auth: Vec::new(),
        };
        let entry = LogEntry { shard: 1, zxid: 5, time_ms: 1005, command: Command::TxnPrepare(prepare) };
        let mut handed: Vec<&mut Shard> = shards.iter_mut().collect();
        engine::txn::apply_txn(&mut handed, &entry);
        let table = shards[0].txns().image().expect("a prepared multi");
        let heads = shards.iter_mut().map(|shard| shard.begin_image(4)).collect();
        let mut frames = Frames::new(&GroupHead {
            group: 1,
            shard_count: 4,
            term: 1,
            index: 3,
            applied_zxids: vec![0, 5],
            shards: heads,
        });
        frames.txns(1, &table);
        for shard in &mut shards {
            let mut batch = NodeBatchBuilder::default();
            while !shard.image_step(7, &mut batch) {}
            frames.nodes(shard.id(), &batch.take());
        }
        frames.end();
        let mut loaded = load_bytes(&frames.take(true), Path::new("t"), 1, 4).expect("loads").shards;
        assert_eq!(loaded[0].txns().image(), Some(table));
        for (original, restored) in shards.iter().zip(&loaded) {
            assert_eq!(restored.digest(), original.digest());
            let held = (0..).map(|i| format!("/t{i}")).find(|p| engine::path::shard_of(p, 4) == original.id()).unwrap();
            assert_eq!(restored.holder_of(&held), Some(txn));
        }
        let finish = Command::TxnFinish { txn, commit: false, shards: vec![1, 3], coordinator: 0 };
        let mut handed: Vec<&mut Shard> = loaded.iter_mut().collect();
        engine::txn::apply_txn(&mut handed, &LogEntry { shard: 1, zxid: 6, time_ms: 1006, command: finish });
        let after: Vec<u64> = loaded.iter().map(|s| s.tree().digest()).collect();
        assert_eq!(after, before, "the abort takes both creates back");
        assert!(loaded[0].txns().is_empty());
    }

    #[test]
    fn frames_whose_archive_the_caller_writes_are_the_bytes_of_frames_pushed_whole() {
        let mut shard = Shard::new(2, 4);
        for zxid in 1..=30i64 {
            let create = CreateOp {
                path: format!("/n{}", "x".repeat(zxid as usize % 7)) + &zxid.to_string(),
                data: Some(vec![7; zxid as usize % 13]),
                acl: Acl::open_unsafe(),
                mode: CreateMode::Persistent,
                ttl_ms: 0,
                session: 0,
                auth: Vec::new(),
            };
            shard.apply(&LogEntry { shard: 2, zxid, time_ms: zxid, command: Command::Create(create) });
        }
        let head = GroupHead { group: 2, shard_count: 4, term: 1, index: 30, applied_zxids: vec![30], shards: vec![] };
        let mut batches = Vec::new();
        let mut builder = NodeBatchBuilder::default();
        shard.begin_image(4);
        while !shard.image_step(4, &mut builder) {
            batches.push(builder.take());
        }
        batches.push(builder.take());
        let mut whole = Frames::new(&head);
        let mut by_parts = Frames::new(&head);
        let mut parts = Vec::new();
        for batch in batches.iter().filter(|b| !b.nodes.is_empty()) {
            whole.nodes(2, batch);
            let archive = batch.to_bytes();
            let (header, padding) =
                by_parts.nodes_frame_header(2, batch.nodes.len(), archive.len(), nodes_crc(2, &archive));
            parts.extend_from_slice(&header);
            parts.extend_from_slice(&archive);
            parts.extend(std::iter::repeat_n(0, padding));
        }
        whole.end();
        by_parts.end();
        parts.extend(by_parts.take(true));
        assert_eq!(parts, whole.take(true));
        assert_eq!(parts.len() % FILE_ALIGN, 0);
    }

    #[test]
    fn a_damaged_newest_snapshot_is_skipped_for_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let older = image(40, 25);
        let older_digests = older.1.clone();
        write(dir.path(), &older, 40);
        let newest = write(dir.path(), &image(90, 60), 90);
        let mut bytes = std::fs::read(&newest).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        std::fs::write(&newest, &bytes).unwrap();
        let (loaded, skipped) = load_newest(dir.path(), 1, 4).unwrap();
        let loaded = loaded.expect("the older snapshot");
        assert_eq!(loaded.index, 40);
        assert_eq!(loaded.shards.iter().map(Shard::digest).collect::<Vec<_>>(), older_digests);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].0, newest);
        assert!(skipped[0].1.contains("checksum"), "{}", skipped[0].1);
        // Cut short, or not a snapshot at all: skipped too, never a panic.
        std::fs::write(&newest, &bytes[..FILE_HEADER_BYTES + 10]).unwrap();
        assert_eq!(load_newest(dir.path(), 1, 4).unwrap().1.len(), 1);
        let (whole, _) = image(90, 60);
        let last_frame = whole.iter().rposition(|b| *b != 0).unwrap() / FRAME_ALIGN * FRAME_ALIGN - FRAME_HEADER_BYTES;
        std::fs::write(&newest, &whole[..last_frame]).unwrap();
        let (loaded, skipped) = load_newest(dir.path(), 1, 4).unwrap();
        assert_eq!(loaded.expect("older").index, 40, "a file cut before its end frame is not taken");
        assert!(skipped[0].1.contains("cut short"), "{}", skipped[0].1);
        std::fs::write(&newest, b"garbage").unwrap();
        assert_eq!(load_newest(dir.path(), 1, 4).unwrap().0.expect("older").index, 40);
    }

    #[test]
    fn no_snapshot_dir_means_no_snapshot_and_pruning_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none");
        assert!(load_newest(&missing, 1, 4).unwrap().0.is_none());
        for index in [10, 20, 30, 40] {
            write(dir.path(), &image(index, 3), index);
        }
        let leftover = dir.path().join("00000000000000000050.snap.tmp");
        std::fs::write(&leftover, b"half a snapshot").unwrap();
        assert_eq!(list(dir.path()).unwrap().iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![40, 30, 20, 10]);
        let removed = prune(dir.path(), 2).unwrap();
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(leftover.exists(), "a snapshot being written is not pruned");
        let receiving = receiving_path(dir.path(), 60);
        std::fs::write(&receiving, b"half a leader's snapshot").unwrap();
        assert_eq!(remove_partial(dir.path()).unwrap().len(), 2);
        assert!(!leftover.exists() && !receiving.exists());
        assert_eq!(list(dir.path()).unwrap().iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![40, 30]);
    }
}
