//! Segment files: naming, listing, creating (preallocated), and a chunked reader for recovery.

use std::path::{Path, PathBuf};

use glommio::io::{DmaFile, OpenOptions};

use super::format::{align_up, BLOCK_BYTES};
use super::WalError;

/// Recovery reads segments in chunks of this many bytes.
const READ_CHUNK_BYTES: u64 = 1 << 20;

/// A segment file name: `wal-<core:03>-<first_lsn:020>.log`.
pub fn segment_name(core: usize, first_lsn: u64) -> String {
    format!("wal-{core:03}-{first_lsn:020}.log")
}

/// Parses a segment file name of `core`; other cores' files and stray files are ignored.
pub fn parse_segment_name(name: &str, core: usize) -> Option<u64> {
    let rest = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    let (core_part, lsn_part) = rest.split_once('-')?;
    if core_part.len() < 3 || core_part.parse::<usize>().ok()? != core || lsn_part.len() != 20 {
        return None;
    }
    lsn_part.parse().ok()
}

/// One segment on disk, as found by `list_segments`.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    pub path: PathBuf,
    /// From the name: every record in the segment has an lsn >= this.
    pub first_lsn: u64,
}

/// The segments of `core` in `dir`, in log order (by first lsn).
pub fn list_segments(dir: &Path, core: usize) -> Result<Vec<SegmentInfo>, WalError> {
    // Directory listing happens once at open; glommio has no async readdir.
    let entries = std::fs::read_dir(dir).map_err(|e| WalError::io("list dir", dir, e))?;
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io("list dir", dir, e))?;
        let name = entry.file_name();
        if let Some(first_lsn) = name.to_str().and_then(|n| parse_segment_name(n, core)) {
            segments.push(SegmentInfo { path: entry.path(), first_lsn });
        }
    }
    segments.sort_by_key(|s| s.first_lsn);
    Ok(segments)
}

/// glommio decides, per thread and per block device, whether to send O_DIRECT IO through the
/// io_uring poll ring (IOPOLL) by reading block 0 of the first DmaFile opened there. On an empty
/// or preallocated file that read completes without reaching the device, so glommio wrongly
/// enables IOPOLL, and later reads of written blocks fail with EOPNOTSUPP on devices without
/// poll queues (virtio-blk, most cloud disks). Opening a file with real data at block 0 first
/// makes the probe honest. It MUST run on each executor thread before any other DmaFile on
/// that device is opened; `Wal::open` calls it.
pub async fn prime_dma_probe(dir: &Path, core: usize) -> Result<(), WalError> {
    use std::io::Write;
    let path = dir.join(format!(".wal-{core:03}-dma-probe"));
    // Startup only, a few KiB: blocking std IO is fine and makes the block real on disk.
    let written = std::fs::File::create(&path).and_then(|mut file| {
        file.write_all(&[0xa5; BLOCK_BYTES as usize])?;
        file.sync_all()
    });
    written.map_err(|e| WalError::io("write dma probe", &path, e))?;
    let file = DmaFile::open(&path).await.map_err(|e| WalError::glommio("open dma probe", &path, e))?;
    let _ = file.close().await;
    std::fs::remove_file(&path).map_err(|e| WalError::io("remove dma probe", &path, e))
}

/// Opens a segment for appending: O_DSYNC, so a write is durable when it completes (see
/// writer.rs).
pub async fn open_segment(path: &Path) -> Result<DmaFile, WalError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DSYNC)
        .dma_open(path)
        .await
        .map_err(|e| WalError::glommio("open segment", path, e))
}

/// The name a segment is prepared under before it is renamed to `path`.
pub fn temp_segment_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().expect("segment path has a name").to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Temp files of `core`'s segments that a crash during `create_segment` left behind.
pub fn list_temp_segments(dir: &Path, core: usize) -> Result<Vec<PathBuf>, WalError> {
    let entries = std::fs::read_dir(dir).map_err(|e| WalError::io("list dir", dir, e))?;
    let mut temps = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io("list dir", dir, e))?;
        let name = entry.file_name();
        let is_temp = name.to_str().and_then(|n| n.strip_suffix(".tmp")).and_then(|n| parse_segment_name(n, core));
        if is_temp.is_some() {
            temps.push(entry.path());
        }
    }
    Ok(temps)
}

/// Creates a new segment preallocated to `capacity` bytes (so appends do not allocate blocks
/// and read back as zeros until written), durably and atomically: it is prepared under a temp
/// name (preallocated, fdatasync'ed), renamed, and the directory fsync'ed before any record is
/// written into it. A crash leaves either no segment or a complete empty one, never a short
/// file under a segment's name (a stray temp file is removed at the next open).
pub async fn create_segment(dir: &glommio::io::Directory, path: &Path, capacity: u64) -> Result<DmaFile, WalError> {
    let temp = temp_segment_path(path);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DSYNC)
        .dma_open(&temp)
        .await
        .map_err(|e| WalError::glommio("create segment", &temp, e))?;
    let prepared = async {
        file.pre_allocate(capacity, false).await.map_err(|e| WalError::glommio("preallocate segment", &temp, e))?;
        file.fdatasync().await.map_err(|e| WalError::glommio("sync new segment", &temp, e))?;
        file.rename(path).await.map_err(|e| WalError::glommio("rename new segment", path, e))?;
        dir.sync().await.map_err(|e| WalError::glommio("sync wal dir", path, e))
    }
    .await;
    if let Err(err) = prepared {
        // Best effort: an empty leftover segment (or temp file) is harmless to recovery.
        let _ = file.remove().await;
        let _ = file.close().await;
        return Err(err);
    }
    Ok(file)
}

/// Reads a segment through a sliding window of aligned chunks.
pub struct SegmentReader<'a> {
    file: &'a DmaFile,
    path: &'a Path,
    file_bytes: u64,
    /// File offset of `window[0]`; always block aligned.
    window_start: u64,
    window: Vec<u8>,
}

impl<'a> SegmentReader<'a> {
    pub fn new(file: &'a DmaFile, path: &'a Path, file_bytes: u64) -> Self {
        SegmentReader { file, path, file_bytes, window_start: 0, window: Vec::new() }
    }

    pub fn file_bytes(&self) -> u64 {
        self.file_bytes
    }

    /// Up to `len` bytes at `pos` (fewer only at the end of the file).
    pub async fn bytes(&mut self, pos: u64, len: usize) -> Result<&[u8], WalError> {
        let want_end = (pos + len as u64).min(self.file_bytes);
        if pos < self.window_start || pos > self.window_end() {
            self.window_start = pos - pos % BLOCK_BYTES;
            self.window.clear();
        } else if self.window_end() < want_end {
            // About to read more: drop what lies before pos first, so the window stays about
            // one batch + one chunk (only here, not per call, to keep the memmove rare).
            let keep_from = pos - pos % BLOCK_BYTES;
            self.window.drain(..(keep_from - self.window_start) as usize);
            self.window_start = keep_from;
        }
        while self.window_end() < want_end {
            let at = self.window_end();
            let size = align_up((want_end - at).max(READ_CHUNK_BYTES), BLOCK_BYTES) as usize;
            let read = self
                .file
                .read_at_aligned(at, size)
                .await
                .map_err(|e| WalError::glommio("read segment", self.path, e))?;
            if read.is_empty() {
                break;
            }
            self.window.extend_from_slice(&read);
        }
        let from = (pos - self.window_start) as usize;
        let to = ((want_end.max(pos) - self.window_start) as usize).min(self.window.len());
        Ok(&self.window[from.min(to)..to])
    }

    fn window_end(&self) -> u64 {
        self.window_start + self.window.len() as u64
    }

    /// Offset one past the last non-zero byte at or after `from`, if any: how far damage
    /// beyond the end of the valid log extends.
    pub async fn nonzero_end(&mut self, from: u64) -> Result<Option<u64>, WalError> {
        let mut found = None;
        let mut pos = from;
        while pos < self.file_bytes {
            let chunk = self.bytes(pos, READ_CHUNK_BYTES as usize).await?;
            if chunk.is_empty() {
                break;
            }
            if let Some(i) = chunk.iter().rposition(|&b| b != 0) {
                found = Some(pos + i as u64 + 1);
            }
            pos += chunk.len() as u64;
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip_and_filter_by_core() {
        let name = segment_name(3, 42);
        assert_eq!(name, "wal-003-00000000000000000042.log");
        assert_eq!(parse_segment_name(&name, 3), Some(42));
        assert_eq!(parse_segment_name(&name, 4), None);
        assert_eq!(parse_segment_name("wal-003-42.log", 3), None);
        assert_eq!(parse_segment_name("wal-003-00000000000000000042.log.tmp", 3), None);
    }
}
