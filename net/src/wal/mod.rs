//! The write-ahead log: one log per core on glommio DMA files (O_DIRECT through io_uring),
//! group commit (many `append`s, one `flush` = one aligned write to a segment opened with
//! O_DSYNC, durable when it completes, as a write + `fdatasync` would be), and crash recovery
//! that cuts a torn last write and refuses corruption before it.
//!
//! # On-disk format (version 1)
//!
//! **Segments.** Core `c`'s log is a sequence of files `wal-<c:03>-<first_lsn:020>.log` in the
//! WAL directory, ordered by `first_lsn` (every record in a segment has an lsn >= the name's).
//! A new segment is created under the name plus `.tmp`, `fallocate`d to `segment_bytes`
//! (default 64 MiB), fdatasync'ed, renamed, and the directory fsync'ed, before anything is
//! written to it; a `.tmp` left by a crash is removed at open. A flush that does not fit in
//! the rest of the active segment rotates to a new segment first; a batch never spans segments.
//! A batch bigger than `segment_bytes` gets a segment grown to fit it; only a single record that
//! cannot fit an empty segment (`payload > segment_bytes - 48`) is refused (`RecordTooLarge`).
//!
//! **Batches.** Each flush writes one batch. A batch starts at a 4096-aligned offset and is
//! written as whole 4096-byte blocks; its last block is zero-padded. So a flush never rewrites a
//! block that holds durable records (a torn rewrite could destroy acknowledged data), and the
//! next batch starts at the next block boundary. Batch layout, all integers little endian:
//!
//! ```text
//! batch header (32 bytes):
//!   0  magic       u32  "WRN1"
//!   4  header_crc  u32  crc32c of bytes 8..32
//!   8  prev_lsn    u64  lsn of the last record of the previous batch in the log (0 if none)
//!  16  first_lsn   u64  lsn of the first record; records are first_lsn, first_lsn+1, ...
//!  24  count       u32  number of records, >= 1
//!  28  body_bytes  u32  bytes of records that follow
//! records (count times, each 8-byte aligned):
//!   0  len         u32  payload bytes (0 is allowed)
//!   4  crc         u32  crc32c(lsn as u64 LE ++ payload)
//!   8  lsn         u64
//!  16  payload, zero padding to a multiple of 8
//! zero padding to the next 4096 boundary
//! ```
//!
//! **Lsns** start at 1 and strictly increase. Gaps are allowed: the lsns of a failed flush are
//! never reused, and after recovery the next lsn is also at least the active segment's
//! `first_lsn`.
//!
//! # Recovery: where does the log end?
//!
//! The reader walks the segments in order, batch by batch, starting each batch at the block
//! boundary after the previous one. A batch is valid only if its header checks out (magic,
//! crc), its `prev_lsn` equals the last valid lsn read so far (the chain), `first_lsn` is above
//! that lsn and at least the segment's `first_lsn`, every record has the expected consecutive
//! lsn, a sane length and a good crc, and the records fill exactly `body_bytes`. Recovery is
//! batch-atomic: a batch is the unit of durability (one O_DSYNC write), so if any part of it is
//! invalid the whole batch is dropped; a partially written batch was never acknowledged.
//!
//! - An all-zero header (or the end of the file) is the end of a segment's data. That is clean
//!   if the rest of the segment is all zeros, and the reader continues with the next segment,
//!   whose first batch must chain to the last lsn.
//! - Anything else — an invalid batch, or non-zero bytes after a zero header — is damage, and
//!   what follows it decides what kind:
//!   - **Torn last write.** Nothing valid follows: no batch at a later block boundary of the
//!     segment is valid in itself (header, every record's lsn and crc) with lsns above the
//!     log's last one, and every later segment is all zeros. A torn write can only damage the
//!     batch being written, the last one, which was never acknowledged. The log ends at the
//!     start of that batch: the segment is truncated there and re-preallocated (so the stale
//!     bytes are gone and read as zeros), every later segment is deleted, the directory is
//!     fsync'ed, and appends continue at that offset. `truncated_bytes` counts the bytes from
//!     each truncation point to the last non-zero byte dropped.
//!   - **Corruption before the tail.** A valid batch follows in the segment, or a later
//!     segment holds any non-zero byte: acknowledged records follow the damage, and cutting
//!     the log would drop them. `Wal::open` fails with `WalError::Corrupt` (a `Damage` naming
//!     the file, offset, lsns, failed check and the data after it) and changes nothing. Only
//!     with `WalConfig::truncate_corrupt` (the explicit `warren wal-repair`) is the log cut
//!     there as for a torn write. (A client payload that happens to contain a valid batch image
//!     at a block boundary of a torn batch would make a torn write look like corruption: the
//!     error is on the side of refusing.)
//!
//! Why the header and the chain: without a header, a torn multi-block write can lose a block in
//! the middle of a batch while a later block of it survives, and a reader that skips zero
//! padding to the next block boundary would resume after a hole. With the header the reader
//! knows exactly where each batch ends and never skips. The chain (`prev_lsn`) plus increasing
//! lsns make stale bytes harmless: bytes left by a failed flush carry lsns that are never reused
//! and a `prev_lsn` that no later batch ends with.
//!
//! # Failed flushes
//!
//! A failed (or cancelled) flush drops its batch: the records are not durable, the caller must
//! not acknowledge them, and their lsns are burned. The WAL stays usable: the next flush writes
//! at the same offset and its single write also zero-fills the extent the failed attempt may
//! have touched, so after it succeeds no stale bytes remain past the end of the log. Before
//! rotating away from a segment with such an extent, the segment is truncated to the end of its
//! log. Caveat: if the process crashes after a failed flush whose write fully landed and before
//! any later flush succeeds, that batch is a complete valid batch at the tail and recovery
//! returns it, so the server must report a failed flush's requests as indeterminate (like a
//! lost connection), never as definitely not applied. The server goes further: after a failed
//! flush it stops the node (`server::stop_on_wal_failure`): what the disk holds after a failed
//! write or fdatasync is unknown (a later fdatasync may report success without the data:
//! "fsyncgate"), so nothing more is acknowledged on top of it and recovery decides.
//!
//! # glommio's IOPOLL probe
//!
//! glommio decides per thread and device whether to use the io_uring poll ring by reading block
//! 0 of the first DmaFile opened; on an empty file that read never reaches the device, IOPOLL
//! gets enabled by mistake, and reads of written blocks then fail with EOPNOTSUPP on devices
//! without poll queues (virtio-blk here). `Wal::open` first opens a probe file with real data
//! (`prime_dma_probe`); code that opens other DmaFiles on the same executor thread before
//! `Wal::open` must call `prime_dma_probe` first.

pub(crate) mod format;
mod recovery;
mod segment;
mod writer;

#[cfg(test)]
mod tests;

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

pub use segment::prime_dma_probe;
pub use writer::{remove_segments, Wal, MAX_BATCH_BYTES};

/// Segment size unless configured otherwise.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// Where and how one core's log lives.
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// Directory of the segment files; created if missing. Several cores may share it.
    pub dir: PathBuf,
    /// The core whose log this is; part of every segment file name.
    pub core: usize,
    /// Preallocated size of a new segment; a multiple of 4096, at least 64 KiB.
    pub segment_bytes: u64,
    /// Cut the log at damage even when valid data follows it (corruption before the tail),
    /// discarding acknowledged records. Only the explicit repair (`warren wal-repair`) sets
    /// this; by default such damage makes `Wal::open` fail with `WalError::Corrupt`.
    pub truncate_corrupt: bool,
    /// Which recovered records to keep whole (all without it).
    pub keep_whole: Option<KeepWhole>,
}

impl WalConfig {
    pub fn new(dir: impl Into<PathBuf>, core: usize) -> WalConfig {
        WalConfig {
            dir: dir.into(),
            core,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            truncate_corrupt: false,
            keep_whole: None,
        }
    }
}

/// Records for which `whole` is false are recovered with only their first `head_bytes` bytes:
/// a caller that needs only the heads of most of its log (the Raft entries a snapshot holds
/// already, whose index and place in the log still count) need not read them all into memory.
/// Every record is checked as always; only what `Recovered` holds of it is shorter.
#[derive(Clone)]
pub struct KeepWhole {
    pub head_bytes: usize,
    pub whole: WholeRecord,
}

/// Whether a record's payload is kept whole.
pub type WholeRecord = std::sync::Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

impl std::fmt::Debug for KeepWhole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeepWhole {{ head_bytes: {} }}", self.head_bytes)
    }
}

/// What recovery found in the log.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Payloads of every valid record, in append (lsn) order (some only their head: `KeepWhole`).
    pub records: Vec<Vec<u8>>,
    /// `lsns[i]` is the lsn of `records[i]` (strictly increasing, possibly with gaps).
    pub lsns: Vec<u64>,
    /// Bytes of torn or corrupt tail that recovery dropped (0 after a clean shutdown or crash
    /// between flushes).
    pub truncated_bytes: u64,
    /// Where and why the log was truncated, if it was.
    pub damage: Option<Damage>,
}

/// The first invalid batch recovery found, and whether valid data follows it.
#[derive(Debug, Clone)]
pub struct Damage {
    pub segment: PathBuf,
    pub offset: u64,
    /// What failed at `offset` (header CRC, record CRC, prev_lsn link, ...).
    pub reason: String,
    /// Lsn of the last record of the valid log before the damage (0 if none).
    pub last_valid_lsn: u64,
    /// The lsns the damaged batch's header names, when the header itself checked.
    pub batch_lsns: Option<RangeInclusive<u64>>,
    /// Data after the damage: a valid batch later in the same segment, or a later non-empty
    /// segment. Its presence means the damage is not a torn last write but corruption of
    /// acknowledged data. None for a torn tail.
    pub data_after: Option<DataAfter>,
    /// Non-zero bytes from `offset` to the end of the log, over every segment: what cutting
    /// the log here discards.
    pub bytes_after: u64,
}

/// Where data was found after damage.
#[derive(Debug, Clone)]
pub struct DataAfter {
    pub segment: PathBuf,
    pub offset: u64,
    /// `(prev_lsn, first_lsn)` of the batch found there, if one decodes (the first batch of a
    /// later segment may be damaged itself).
    pub batch: Option<(u64, u64)>,
}

impl Damage {
    /// A torn last write (never acknowledged), as opposed to damage with data after it.
    pub fn is_torn_tail(&self) -> bool {
        self.data_after.is_none()
    }

    /// The lsns of the damaged batch, from its header or, if that is unreadable, from the
    /// `prev_lsn` of the next valid batch in the same segment.
    fn damaged_lsns(&self) -> Option<RangeInclusive<u64>> {
        if let Some(lsns) = &self.batch_lsns {
            return Some(lsns.clone());
        }
        let after = self.data_after.as_ref().filter(|a| a.segment == self.segment)?;
        let (prev_lsn, _) = after.batch?;
        (prev_lsn > self.last_valid_lsn).then(|| self.last_valid_lsn + 1..=prev_lsn)
    }
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}: {}", self.segment.display(), self.offset, self.reason)?;
        match self.damaged_lsns() {
            Some(lsns) => write!(f, "; damaged batch: lsns {}..={}", lsns.start(), lsns.end())?,
            None => write!(f, "; damaged batch: lsns unknown")?,
        }
        write!(f, "; the valid log before it ends at lsn {}", self.last_valid_lsn)?;
        if let Some(after) = &self.data_after {
            write!(f, "; data follows at byte {} of {}", after.offset, after.segment.display())?;
            match after.batch {
                Some((prev_lsn, first_lsn)) => {
                    write!(f, " (a valid batch from lsn {first_lsn}, after lsn {prev_lsn})")?
                }
                None => write!(f, " (not a valid batch)")?,
            }
        }
        write!(f, "; {} bytes from the damage to the end of the log", self.bytes_after)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// An IO operation failed; `source` keeps the OS error (`raw_os_error()`: ENOSPC, EIO...).
    #[error("wal: {op} failed on {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("wal: record of {payload_bytes} bytes exceeds the limit of {max_bytes}")]
    RecordTooLarge { payload_bytes: usize, max_bytes: usize },
    #[error("wal: pending batch would exceed {max_bytes} bytes; flush first")]
    BatchFull { max_bytes: usize },
    #[error("wal: invalid config: {0}")]
    Config(String),
    /// Damage before the end of the log: valid data follows it, so it is not a torn last write
    /// and cutting the log there would lose acknowledged records.
    #[error("wal: corruption before the end of the log (not a torn last write): {0}")]
    Corrupt(Box<Damage>),
}

impl WalError {
    /// The errno behind an IO error, e.g. `Some(libc::ENOSPC)`.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            WalError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    fn io(op: &'static str, path: &Path, source: std::io::Error) -> WalError {
        WalError::Io { op, path: path.to_path_buf(), source }
    }

    /// Maps a glommio error, keeping the underlying OS error so callers can tell ENOSPC apart.
    fn glommio(op: &'static str, path: &Path, err: glommio::GlommioError<()>) -> WalError {
        let source = match err {
            glommio::GlommioError::IoError(e) => e,
            glommio::GlommioError::EnhancedIoError { source, .. } => source,
            other => std::io::Error::other(other.to_string()),
        };
        WalError::io(op, path, source)
    }
}
