//! Recovery: reads every segment of a core's log, validates each batch, and cuts the log at the
//! first invalid one (truncating that segment, deleting later ones) so appends continue right
//! after the last valid batch. See "Recovery" in `wal/mod.rs` for the rules.

use std::path::{Path, PathBuf};

use glommio::io::{Directory, DmaFile};

use super::format::{decode_batch, BatchError, BatchHeader, BATCH_HEADER_BYTES, BLOCK_BYTES};
use super::segment::{
    create_segment, list_segments, open_segment, prime_dma_probe, segment_name, SegmentInfo, SegmentReader,
};
use super::{Damage, Recovered, WalConfig, WalError};

/// The segment appends go to.
pub struct ActiveSegment {
    pub file: DmaFile,
    pub path: PathBuf,
    /// From the segment's name; every lsn written to it must be >= this.
    pub first_lsn: u64,
    /// Bytes preallocated; a batch must end at or before this offset.
    pub capacity: u64,
}

/// Everything `Wal::open` needs to continue the log.
pub struct RecoveredLog {
    pub dir: Directory,
    pub active: ActiveSegment,
    /// Offset in the active segment where the next batch goes (block aligned).
    pub write_pos: u64,
    /// Lsn of the last valid record (0 if the log is empty).
    pub last_lsn: u64,
    pub recovered: Recovered,
}

/// How a segment's data ended.
enum SegmentEnd {
    /// The data ends at this (block aligned) offset and nothing non-zero follows.
    Clean(u64),
    /// The batch at `offset` is invalid; non-zero bytes reach up to `damage_end`.
    Damaged { offset: u64, damage_end: u64, reason: String },
}

pub async fn recover(config: &WalConfig) -> Result<RecoveredLog, WalError> {
    // Startup only: a blocking mkdir -p is fine here.
    std::fs::create_dir_all(&config.dir).map_err(|e| WalError::io("create wal dir", &config.dir, e))?;
    prime_dma_probe(&config.dir, config.core).await?;
    let dir = Directory::open(&config.dir).await.map_err(|e| WalError::glommio("open wal dir", &config.dir, e))?;
    let segments = list_segments(&config.dir, config.core)?;
    let mut recovered = Recovered::default();
    let mut last_lsn = 0u64;
    let mut active: Option<(ActiveSegment, u64)> = None;
    for (index, segment) in segments.iter().enumerate() {
        if let Some((previous, _)) = active.take() {
            close_quietly(previous.file).await;
        }
        let file = open_segment(&segment.path).await?;
        let file_bytes = file_size(&file, &segment.path).await?;
        let mut reader = SegmentReader::new(&file, &segment.path, file_bytes);
        let end = scan_segment(&mut reader, segment.first_lsn, &mut last_lsn, &mut recovered);
        let end = end.await?;
        let capacity = active_capacity(file_bytes, config.segment_bytes);
        let active_segment = ActiveSegment { file, path: segment.path.clone(), first_lsn: segment.first_lsn, capacity };
        match end {
            SegmentEnd::Clean(pos) => active = Some((active_segment, pos)),
            SegmentEnd::Damaged { offset, damage_end, reason } => {
                tracing::warn!(segment = %segment.path.display(), offset, %reason,
                    "wal: invalid batch; truncating the log here");
                recovered.truncated_bytes += damage_end - offset;
                recovered.damage = Some(Damage { segment: segment.path.clone(), offset, reason });
                zero_tail(&active_segment, offset).await?;
                recovered.truncated_bytes += remove_segments(&segments[index + 1..]).await?;
                sync_dir(&dir, &config.dir).await?;
                active = Some((active_segment, offset));
                break;
            }
        }
    }
    let (active, write_pos) = match active {
        Some((segment, pos)) => (prepare_active(segment).await?, pos),
        None => (first_segment(&dir, config).await?, 0),
    };
    assert_eq!(write_pos % BLOCK_BYTES, 0, "batches start block aligned");
    assert!(write_pos <= active.capacity);
    Ok(RecoveredLog { dir, active, write_pos, last_lsn, recovered })
}

/// Reads the batches of one segment, appending valid records to `recovered`.
async fn scan_segment(
    reader: &mut SegmentReader<'_>,
    segment_first_lsn: u64,
    last_lsn: &mut u64,
    recovered: &mut Recovered,
) -> Result<SegmentEnd, WalError> {
    let mut pos = 0u64;
    loop {
        if pos >= reader.file_bytes() {
            return Ok(SegmentEnd::Clean(pos));
        }
        let head = reader.bytes(pos, BATCH_HEADER_BYTES).await?;
        if head.iter().all(|&b| b == 0) {
            return end_of_data(reader, pos).await;
        }
        let header = match BatchHeader::decode(head) {
            Ok(header) => header,
            Err(err) => return damaged(reader, pos, err).await,
        };
        let bytes = reader.bytes(pos, header.used_bytes()).await?;
        let batch = match decode_batch(bytes, *last_lsn, segment_first_lsn) {
            Ok(batch) => batch,
            Err(err) => return damaged(reader, pos, err).await,
        };
        assert!(batch.header.first_lsn > *last_lsn, "lsns strictly increase");
        for range in &batch.records {
            recovered.records.push(bytes[range.clone()].to_vec());
        }
        recovered.lsns.extend(batch.header.first_lsn..=batch.header.last_lsn());
        *last_lsn = batch.header.last_lsn();
        pos += batch.header.disk_bytes();
    }
}

/// A zero header ends the segment's data; it is clean only if nothing non-zero follows (a
/// lost or zeroed header in front of later batches must not silently hide them).
async fn end_of_data(reader: &mut SegmentReader<'_>, pos: u64) -> Result<SegmentEnd, WalError> {
    Ok(match reader.nonzero_end(pos).await? {
        None => SegmentEnd::Clean(pos),
        Some(damage_end) => SegmentEnd::Damaged {
            offset: pos,
            damage_end,
            reason: "non-zero bytes after the end of the log".to_string(),
        },
    })
}

async fn damaged(reader: &mut SegmentReader<'_>, pos: u64, err: BatchError) -> Result<SegmentEnd, WalError> {
    let damage_end = reader.nonzero_end(pos).await?.unwrap_or(pos);
    Ok(SegmentEnd::Damaged { offset: pos, damage_end, reason: format!("{err:?}") })
}

/// Removes the stale bytes after the end of the log durably: truncating then preallocating
/// again makes the range read as zeros, so they can never reappear as a continuation.
async fn zero_tail(segment: &ActiveSegment, offset: u64) -> Result<(), WalError> {
    let path = &segment.path;
    segment.file.truncate(offset).await.map_err(|e| WalError::glommio("truncate damaged segment", path, e))?;
    segment
        .file
        .pre_allocate(segment.capacity, false)
        .await
        .map_err(|e| WalError::glommio("preallocate segment", path, e))?;
    segment.file.fdatasync().await.map_err(|e| WalError::glommio("sync truncated segment", path, e))
}

/// Deletes segments after the damage (their batches cannot chain to the truncated log);
/// returns how many non-zero bytes they held.
async fn remove_segments(segments: &[SegmentInfo]) -> Result<u64, WalError> {
    let mut dropped = 0;
    for segment in segments {
        let file = open_segment(&segment.path).await?;
        let file_bytes = file_size(&file, &segment.path).await?;
        let mut reader = SegmentReader::new(&file, &segment.path, file_bytes);
        dropped += reader.nonzero_end(0).await?.unwrap_or(0);
        close_quietly(file).await;
        tracing::warn!(segment = %segment.path.display(), "wal: deleting segment after damage");
        glommio::io::remove(&segment.path).await.map_err(|e| WalError::glommio("remove segment", &segment.path, e))?;
    }
    Ok(dropped)
}

/// Makes sure the active segment is preallocated to its capacity (it may have been cut short).
async fn prepare_active(segment: ActiveSegment) -> Result<ActiveSegment, WalError> {
    let file_bytes = file_size(&segment.file, &segment.path).await?;
    if file_bytes < segment.capacity {
        segment
            .file
            .pre_allocate(segment.capacity, false)
            .await
            .map_err(|e| WalError::glommio("preallocate segment", &segment.path, e))?;
        segment.file.fdatasync().await.map_err(|e| WalError::glommio("sync segment", &segment.path, e))?;
    }
    Ok(segment)
}

async fn first_segment(dir: &Directory, config: &WalConfig) -> Result<ActiveSegment, WalError> {
    let first_lsn = 1;
    let path = config.dir.join(segment_name(config.core, first_lsn));
    let file = create_segment(dir, &path, config.segment_bytes).await?;
    Ok(ActiveSegment { file, path, first_lsn, capacity: config.segment_bytes })
}

/// A segment keeps its size if it was grown for a big batch; one cut short (or created with a
/// smaller segment_bytes) is preallocated back up to segment_bytes.
fn active_capacity(file_bytes: u64, segment_bytes: u64) -> u64 {
    (file_bytes - file_bytes % BLOCK_BYTES).max(segment_bytes)
}

async fn file_size(file: &DmaFile, path: &Path) -> Result<u64, WalError> {
    file.file_size().await.map_err(|e| WalError::glommio("stat segment", path, e))
}

async fn sync_dir(dir: &Directory, path: &Path) -> Result<(), WalError> {
    dir.sync().await.map_err(|e| WalError::glommio("sync wal dir", path, e))
}

/// Closes a file only read from (or already synced): a close error loses nothing.
pub async fn close_quietly(file: DmaFile) {
    if let Err(err) = file.close().await {
        tracing::warn!(%err, "wal: closing a segment failed");
    }
}
