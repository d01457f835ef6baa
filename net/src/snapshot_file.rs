//! A group's snapshot on disk: every shard of the group as of one applied Raft entry, one file
//! per snapshot, `DIR/{index:020}.snap` (DIR is the group's snapshot directory):
//!
//! ```text
//!   0  magic    u32  "WSN1" little endian; the digit is the format version
//!   4  crc      u32  crc32c of the archive
//!   8  length   u64  of the archive
//!  16  zeros to 64
//!  64  archive  rkyv `GroupImage`
//! ```
//!
//! A snapshot is written whole to a temporary name, fsync'd, renamed and its directory fsync'd
//! (`durable_file::write_atomic`): after a crash the file is absent or complete. Loading takes
//! the newest snapshot whose checksum and archive check out and restores its shards from the
//! archive in place (`Shard::restore_archived`); a damaged one is skipped, said, and the one
//! before it is tried, so a node never starts from silently wrong data.

use crate::durable_file;
use engine::raft::{Index, Term};
use engine::shard::Shard;
use engine::snapshot::ShardImage;
use engine::types::Zxid;
use rkyv::{Archive, Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};

/// "WSN1": the snapshot format, version 1.
const MAGIC: u32 = u32::from_le_bytes(*b"WSN1");
/// Bytes before the archive; a multiple of 16, so the archive is aligned in a 16-aligned buffer.
const HEADER_BYTES: usize = 64;
const SUFFIX: &str = ".snap";

/// A group's shards after its entry `index` (of `term`).
#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct GroupImage {
    pub group: u16,
    pub term: Term,
    pub index: Index,
    /// Per group of the node (this one included): the zxid it had applied when the image was
    /// taken. Entries of this group in the image may depend on other groups up to these, and
    /// those were applied here, so committed: start-up replays the other groups through them.
    pub applied_zxids: Vec<Zxid>,
    pub shards: Vec<ShardImage>,
}

/// A snapshot loaded and restored.
pub struct Loaded {
    pub path: PathBuf,
    pub term: Term,
    pub index: Index,
    pub applied_zxids: Vec<Zxid>,
    pub shards: Vec<Shard>,
}

/// The bytes of a snapshot file holding `image`.
pub fn encode(image: &GroupImage) -> Vec<u8> {
    let archive = rkyv::to_bytes::<rkyv::rancor::Error>(image).expect("a group image serializes");
    let mut bytes = Vec::with_capacity(HEADER_BYTES + archive.len());
    bytes.extend_from_slice(&MAGIC.to_le_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&archive).to_le_bytes());
    bytes.extend_from_slice(&(archive.len() as u64).to_le_bytes());
    bytes.resize(HEADER_BYTES, 0);
    bytes.extend_from_slice(&archive);
    bytes
}

/// Writes `image` as a snapshot in `dir` (created if missing), durably; returns its path.
pub fn write(dir: &Path, image: &GroupImage) -> std::io::Result<PathBuf> {
    durable_file::create_dir_all(dir)?;
    let path = dir.join(format!("{:020}{SUFFIX}", image.index));
    durable_file::write_atomic(&path, &encode(image))?;
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

/// One snapshot file, checked and restored.
pub fn load(path: &Path, group: u16, shard_count: u16) -> Result<Loaded, String> {
    let bytes = read_aligned(path).map_err(|e| format!("cannot read it: {e}"))?;
    let archive = checked_archive(&bytes)?;
    let image = rkyv::access::<ArchivedGroupImage, rkyv::rancor::Error>(archive)
        .map_err(|e| format!("invalid archive: {e}"))?;
    if image.group.to_native() != group {
        return Err(format!("a snapshot of group {}, not {group}", image.group.to_native()));
    }
    let shards = image
        .shards
        .iter()
        .map(|shard| Shard::restore_archived(shard, shard.shard.to_native(), shard_count))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Loaded {
        path: path.to_path_buf(),
        term: image.term.to_native(),
        index: image.index.to_native(),
        applied_zxids: image.applied_zxids.iter().map(|zxid| zxid.to_native()).collect(),
        shards,
    })
}

/// The archive of a snapshot file's bytes, once magic, length and checksum agree.
fn checked_archive(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() < HEADER_BYTES {
        return Err(format!("{} bytes is shorter than a snapshot header", bytes.len()));
    }
    let magic = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
    if magic != MAGIC {
        return Err(format!("bad magic {magic:#010x}"));
    }
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    let length = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let archive = &bytes[HEADER_BYTES..];
    if archive.len() as u64 != length {
        return Err(format!("the archive is {} bytes, the header says {length}", archive.len()));
    }
    if crc32c::crc32c(archive) != crc {
        return Err("checksum mismatch".to_string());
    }
    Ok(archive)
}

/// A file's bytes in a 16-aligned buffer (rkyv reads the archive in place).
fn read_aligned(path: &Path) -> std::io::Result<rkyv::util::AlignedVec<16>> {
    let mut file = std::fs::File::open(path)?;
    let length = file.metadata()?.len() as usize;
    let mut bytes = rkyv::util::AlignedVec::<16>::with_capacity(length);
    bytes.resize(length, 0);
    file.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// Removes all but the `keep` newest snapshots of `dir`, and leftover temporary files; the
/// removals are made durable. Returns the paths removed.
pub fn prune(dir: &Path, keep: usize) -> std::io::Result<Vec<PathBuf>> {
    let mut removed: Vec<PathBuf> = list(dir)?.into_iter().skip(keep).map(|(_, path)| path).collect();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.to_str().is_some_and(|name| name.ends_with(".snap.tmp")) {
                removed.push(path);
            }
        }
    }
    for path in &removed {
        std::fs::remove_file(path)?;
    }
    if !removed.is_empty() {
        durable_file::sync_dir(dir)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::command::{Command, CreateOp, LogEntry};
    use engine::types::{Acl, CreateMode};

    /// Group 1 of a 4-shard node holding shards 1 and 3, after `writes` creates in each.
    fn image(index: Index, writes: i64) -> (GroupImage, Vec<u64>) {
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
            shards.push(shard.image(4));
        }
        (GroupImage { group: 1, term: 3, index, applied_zxids: vec![7, writes], shards }, digests)
    }

    #[test]
    fn a_snapshot_written_is_loaded_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (group_image, digests) = image(40, 25);
        let path = write(dir.path(), &group_image).unwrap();
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

    #[test]
    fn a_damaged_newest_snapshot_is_skipped_for_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let (older, older_digests) = image(40, 25);
        write(dir.path(), &older).unwrap();
        let (newer, _) = image(90, 60);
        let newest = write(dir.path(), &newer).unwrap();
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
        std::fs::write(&newest, &bytes[..HEADER_BYTES + 10]).unwrap();
        assert_eq!(load_newest(dir.path(), 1, 4).unwrap().1.len(), 1);
        std::fs::write(&newest, b"garbage").unwrap();
        assert_eq!(load_newest(dir.path(), 1, 4).unwrap().0.expect("older").index, 40);
    }

    #[test]
    fn no_snapshot_dir_means_no_snapshot_and_pruning_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none");
        assert!(load_newest(&missing, 1, 4).unwrap().0.is_none());
        for index in [10, 20, 30, 40] {
            write(dir.path(), &image(index, 3).0).unwrap();
        }
        let leftover = dir.path().join("00000000000000000050.snap.tmp");
        std::fs::write(&leftover, b"half a snapshot").unwrap();
        assert_eq!(list(dir.path()).unwrap().iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![40, 30, 20, 10]);
        let removed = prune(dir.path(), 2).unwrap();
        assert_eq!(removed.len(), 3, "{removed:?}");
        assert!(!leftover.exists());
        assert_eq!(list(dir.path()).unwrap().iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![40, 30]);
    }
}
