//! Recovery: reads every segment of a core's log, validates each batch, and at the first
//! invalid one decides whether it is a torn last write (nothing valid after it: the log is cut
//! there, truncating that segment and deleting later ones, so appends continue right after the
//! last valid batch) or corruption before the tail (refused, unless the repair asked for the
//! cut). See "Recovery" in `wal/mod.rs` for the rules.

use std::path::{Path, PathBuf};

use glommio::io::{Directory, DmaFile};

use std::ops::RangeInclusive;

use super::format::{decode_batch, BatchHeader, BATCH_HEADER_BYTES, BATCH_MAGIC, BLOCK_BYTES};
use super::segment::{
    create_segment, list_segments, list_temp_segments, open_segment, prime_dma_probe, segment_name, SegmentInfo,
    SegmentReader,
};
use super::{Damage, DataAfter, KeepWhole, Recovered, WalConfig, WalError};

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
    /// The batch at `offset` is invalid.
    Damaged(SegmentDamage),
}

/// The first invalid batch of a segment, as `scan_segment` saw it.
struct SegmentDamage {
    offset: u64,
    /// Non-zero bytes of the segment reach up to here.
    damage_end: u64,
    reason: String,
    /// The lsns the batch header names, if the header checked.
    batch_lsns: Option<RangeInclusive<u64>>,
    /// A valid batch later in the same segment: `(offset, header)`.
    valid_after: Option<(u64, BatchHeader)>,
}

pub async fn recover(config: &WalConfig) -> Result<RecoveredLog, WalError> {
    // Startup only: a blocking mkdir -p (fsyncing each new entry's parent) is fine here.
    crate::durable_file::create_dir_all(&config.dir).map_err(|e| WalError::io("create wal dir", &config.dir, e))?;
    prime_dma_probe(&config.dir, config.core).await?;
    let dir = Directory::open(&config.dir).await.map_err(|e| WalError::glommio("open wal dir", &config.dir, e))?;
    remove_temp_segments(&dir, config).await?;
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
        if index == 0 && segment.first_lsn > 1 {
            // The segments before it were released (`Wal::release_before`): the log starts
            // with its first batch, chained to whatever came before.
            last_lsn = first_prev_lsn(&mut reader).await?;
        }
        let end =
            scan_segment(&mut reader, segment.first_lsn, &mut last_lsn, config.keep_whole.as_ref(), &mut recovered);
        let end = end.await?;
        let capacity = active_capacity(file_bytes, config.segment_bytes);
        let active_segment = ActiveSegment { file, path: segment.path.clone(), first_lsn: segment.first_lsn, capacity };
        match end {
            SegmentEnd::Clean(pos) => active = Some((active_segment, pos)),
            SegmentEnd::Damaged(found) => {
                let later = &segments[index + 1..];
                let damage = assess_damage(segment, found, last_lsn, later).await?;
                if !damage.is_torn_tail() && !config.truncate_corrupt {
                    close_quietly(active_segment.file).await;
                    return Err(WalError::Corrupt(Box::new(damage)));
                }
                let offset = damage.offset;
                cut_log(&dir, config, &active_segment, &damage, later).await?;
                recovered.truncated_bytes += damage.bytes_after;
                recovered.damage = Some(damage);
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

/// The `prev_lsn` of a segment's first batch, 0 if it has no readable header (the scan then
/// judges the damage as usual).
async fn first_prev_lsn(reader: &mut SegmentReader<'_>) -> Result<u64, WalError> {
    if reader.file_bytes() < BATCH_HEADER_BYTES as u64 {
        return Ok(0);
    }
    let head = reader.bytes(0, BATCH_HEADER_BYTES).await?;
    Ok(BatchHeader::decode(head).map_or(0, |header| header.prev_lsn))
}

/// Reads the batches of one segment, appending valid records to `recovered`.
async fn scan_segment(
    reader: &mut SegmentReader<'_>,
    segment_first_lsn: u64,
    last_lsn: &mut u64,
    keep_whole: Option<&KeepWhole>,
    recovered: &mut Recovered,
) -> Result<SegmentEnd, WalError> {
    let mut pos = 0u64;
    loop {
        if pos >= reader.file_bytes() {
            return Ok(SegmentEnd::Clean(pos));
        }
        let head = reader.bytes(pos, BATCH_HEADER_BYTES).await?;
        if head.iter().all(|&b| b == 0) {
            return end_of_data(reader, pos, segment_first_lsn, *last_lsn).await;
        }
        let header = match BatchHeader::decode(head) {
            Ok(header) => header,
            Err(err) => return damaged(reader, pos, err.to_string(), None, segment_first_lsn, *last_lsn).await,
        };
        let bytes = reader.bytes(pos, header.used_bytes()).await?;
        let batch = match decode_batch(bytes, *last_lsn, segment_first_lsn) {
            Ok(batch) => batch,
            Err(err) => {
                let lsns = claimed_lsns(&header);
                return damaged(reader, pos, err.to_string(), lsns, segment_first_lsn, *last_lsn).await;
            }
        };
        assert!(batch.header.first_lsn > *last_lsn, "lsns strictly increase");
        for range in &batch.records {
            let payload = &bytes[range.clone()];
            let kept = match keep_whole {
                Some(keep) if !(keep.whole)(payload) => &payload[..keep.head_bytes.min(payload.len())],
                _ => payload,
            };
            recovered.records.push(kept.to_vec());
        }
        recovered.lsns.extend(batch.header.first_lsn..=batch.header.last_lsn());
        *last_lsn = batch.header.last_lsn();
        pos += batch.header.disk_bytes();
    }
}

/// A zero header ends the segment's data; it is clean only if nothing non-zero follows (a
/// lost or zeroed header in front of later batches must not silently hide them).
async fn end_of_data(
    reader: &mut SegmentReader<'_>,
    pos: u64,
    segment_first_lsn: u64,
    last_lsn: u64,
) -> Result<SegmentEnd, WalError> {
    if reader.nonzero_end(pos).await?.is_none() {
        return Ok(SegmentEnd::Clean(pos));
    }
    let reason = "no batch header (zero bytes) but non-zero bytes follow".to_string();
    damaged(reader, pos, reason, None, segment_first_lsn, last_lsn).await
}

async fn damaged(
    reader: &mut SegmentReader<'_>,
    offset: u64,
    reason: String,
    batch_lsns: Option<RangeInclusive<u64>>,
    segment_first_lsn: u64,
    last_lsn: u64,
) -> Result<SegmentEnd, WalError> {
    let damage_end = reader.nonzero_end(offset).await?.unwrap_or(offset);
    let valid_after = find_valid_batch(reader, offset + BLOCK_BYTES, segment_first_lsn, last_lsn).await?;
    Ok(SegmentEnd::Damaged(SegmentDamage { offset, damage_end, reason, batch_lsns, valid_after }))
}

/// The lsns a header names (its crc checked, but the batch did not): None if they overflow.
fn claimed_lsns(header: &BatchHeader) -> Option<RangeInclusive<u64>> {
    let end = header.first_lsn.checked_add(u64::from(header.record_count))?;
    (header.record_count > 0).then(|| header.first_lsn..=end - 1)
}

/// The first batch at a block boundary from `from` on that is valid in itself (header, every
/// record's lsn and crc) and newer than the valid log (`first_lsn` above `last_lsn`, linked to
/// `last_lsn` or later). A torn write damages only the batch being written, the last one, so
/// such a batch after damage is acknowledged data that cutting the log would lose.
async fn find_valid_batch(
    reader: &mut SegmentReader<'_>,
    from: u64,
    segment_first_lsn: u64,
    last_lsn: u64,
) -> Result<Option<(u64, BatchHeader)>, WalError> {
    let mut pos = from;
    while pos + BATCH_HEADER_BYTES as u64 <= reader.file_bytes() {
        let head = reader.bytes(pos, BATCH_HEADER_BYTES).await?;
        // Most blocks are zeros or record bytes: reject them on the magic before any crc.
        let newer = match head.starts_with(&BATCH_MAGIC.to_le_bytes()) {
            true => BatchHeader::decode(head).ok().filter(|h| h.first_lsn > last_lsn && h.prev_lsn >= last_lsn),
            false => None,
        };
        if let Some(header) = newer {
            if pos + header.used_bytes() as u64 <= reader.file_bytes() {
                let bytes = reader.bytes(pos, header.used_bytes()).await?;
                if decode_batch(bytes, header.prev_lsn, segment_first_lsn).is_ok() {
                    return Ok(Some((pos, header)));
                }
            }
        }
        pos += BLOCK_BYTES;
    }
    Ok(None)
}

/// Completes what one segment's scan found with the segments after it: any non-zero byte in
/// a later segment is also data after the damage.
async fn assess_damage(
    segment: &SegmentInfo,
    found: SegmentDamage,
    last_valid_lsn: u64,
    later: &[SegmentInfo],
) -> Result<Damage, WalError> {
    let mut data_after = found.valid_after.map(|(offset, header)| DataAfter {
        segment: segment.path.clone(),
        offset,
        batch: Some((header.prev_lsn, header.first_lsn)),
    });
    let mut bytes_after = found.damage_end - found.offset;
    for segment in later {
        let (bytes, first_batch) = segment_contents(segment).await?;
        bytes_after += bytes;
        if bytes > 0 && data_after.is_none() {
            let batch = first_batch.map(|h| (h.prev_lsn, h.first_lsn));
            data_after = Some(DataAfter { segment: segment.path.clone(), offset: 0, batch });
        }
    }
    Ok(Damage {
        segment: segment.path.clone(),
        offset: found.offset,
        reason: found.reason,
        last_valid_lsn,
        batch_lsns: found.batch_lsns,
        data_after,
        bytes_after,
    })
}

/// How many bytes of a segment hold data (up to its last non-zero byte) and the header of its
/// first batch, if that checks.
async fn segment_contents(segment: &SegmentInfo) -> Result<(u64, Option<BatchHeader>), WalError> {
    let file = open_segment(&segment.path).await?;
    let file_bytes = file_size(&file, &segment.path).await?;
    let mut reader = SegmentReader::new(&file, &segment.path, file_bytes);
    let bytes = reader.nonzero_end(0).await?.unwrap_or(0);
    let header = BatchHeader::decode(reader.bytes(0, BATCH_HEADER_BYTES).await?).ok();
    drop(reader);
    close_quietly(file).await;
    Ok((bytes, header))
}

/// Ends the log at the damage: the damaged segment is truncated there, every later segment
/// deleted, and the directory synced, so appends continue at `damage.offset`.
async fn cut_log(
    dir: &Directory,
    config: &WalConfig,
    active: &ActiveSegment,
    damage: &Damage,
    later: &[SegmentInfo],
) -> Result<(), WalError> {
    if damage.is_torn_tail() {
        tracing::warn!(%damage, "wal: torn last write (never acknowledged); cutting it off");
    } else {
        tracing::error!(%damage, "wal: repair: discarding the damaged batch and everything after it");
    }
    zero_tail(active, damage.offset).await?;
    remove_segments(later).await?;
    sync_dir(dir, &config.dir).await
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

/// Deletes segments after the damage (their batches cannot chain to the truncated log).
async fn remove_segments(segments: &[SegmentInfo]) -> Result<(), WalError> {
    for segment in segments {
        tracing::warn!(segment = %segment.path.display(), "wal: deleting segment after damage");
        glommio::io::remove(&segment.path).await.map_err(|e| WalError::glommio("remove segment", &segment.path, e))?;
    }
    Ok(())
}

/// Removes what a crash while creating a segment left (it never held records), durably.
async fn remove_temp_segments(dir: &Directory, config: &WalConfig) -> Result<(), WalError> {
    let temps = list_temp_segments(&config.dir, config.core)?;
    for path in &temps {
        tracing::info!(file = %path.display(), "wal: removing a segment left half-created by a crash");
        glommio::io::remove(path).await.map_err(|e| WalError::glommio("remove temp segment", path, e))?;
    }
    if !temps.is_empty() {
        sync_dir(dir, &config.dir).await?;
    }
    Ok(())
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
