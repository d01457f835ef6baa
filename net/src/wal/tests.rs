//! End-to-end WAL tests: real files and real fdatasyncs in temp dirs, each inside a glommio
//! executor configured like the server's (io_memory 1 MiB, no spinning).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Instant;

use glommio::{LocalExecutorBuilder, Placement};
use proptest::prelude::*;

use super::format::{align_up, encode_record, record_bytes, BatchHeader, BATCH_HEADER_BYTES};
use super::format::{BLOCK_BYTES, RECORD_HEADER_BYTES};
use super::{Recovered, Wal, WalConfig, WalError};

const SMALL_SEGMENT: u64 = 64 << 10;

fn run<T>(future: impl Future<Output = T>) -> T {
    LocalExecutorBuilder::new(Placement::Unbound).io_memory(1 << 20).make().expect("glommio executor").run(future)
}

fn config(dir: &Path, segment_bytes: u64) -> WalConfig {
    WalConfig { dir: dir.to_path_buf(), core: 0, segment_bytes, truncate_corrupt: false, keep_whole: None }
}

/// A recognisable, mostly non-zero payload.
fn payload(seed: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| ((seed * 131 + i * 7) % 251) as u8 + 1).collect()
}

/// Disk bytes of a batch holding payloads of these lengths.
fn batch_disk_bytes(lens: &[usize]) -> u64 {
    let used = BATCH_HEADER_BYTES + lens.iter().map(|&l| record_bytes(l)).sum::<usize>();
    align_up(used as u64, BLOCK_BYTES)
}

async fn open(config: &WalConfig) -> (Wal, Recovered) {
    Wal::open(config.clone()).await.expect("open wal")
}

async fn reopen(config: &WalConfig) -> Recovered {
    let (wal, recovered) = open(config).await;
    wal.close().await.expect("close");
    recovered
}

async fn append_flush(wal: &mut Wal, records: &[Vec<u8>]) -> u64 {
    for record in records {
        wal.append(record);
    }
    wal.flush().await.expect("flush")
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

fn write_bytes_at(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset).unwrap();
}

fn flip_byte(path: &Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).unwrap();
    byte[0] ^= 0x5a;
    file.write_all_at(&byte, offset).unwrap();
}

fn cut_file(path: &Path, len: u64) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_len(len).unwrap();
}

/// The extents of `path` (FIEMAP): (logical offset, length, unwritten). None where the
/// filesystem has no FIEMAP (tmpfs), so the caller cannot tell written from unwritten.
fn extents(path: &Path) -> Option<Vec<(u64, u64, bool)>> {
    const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
    const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x800;
    const SLOTS: usize = 64;
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Extent {
        logical: u64,
        physical: u64,
        length: u64,
        reserved64: [u64; 2],
        flags: u32,
        reserved: [u32; 3],
    }
    #[repr(C)]
    struct Fiemap {
        start: u64,
        length: u64,
        flags: u32,
        mapped_extents: u32,
        extent_count: u32,
        reserved: u32,
        extents: [Extent; SLOTS],
    }
    let file = std::fs::File::open(path).unwrap();
    let mut map = Fiemap {
        start: 0,
        length: u64::MAX,
        flags: 1, // FIEMAP_FLAG_SYNC
        mapped_extents: 0,
        extent_count: SLOTS as u32,
        reserved: 0,
        extents: [Extent::default(); SLOTS],
    };
    use std::os::fd::AsRawFd;
    // SAFETY: FS_IOC_FIEMAP fills at most extent_count entries of the struct we own.
    if unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP, &mut map) } != 0 {
        return None;
    }
    let found = &map.extents[..map.mapped_extents as usize];
    Some(found.iter().map(|e| (e.logical, e.length, e.flags & FIEMAP_EXTENT_UNWRITTEN != 0)).collect())
}

/// Segments are opened O_DSYNC (a write is durable when it completes), and a flush writes
/// zeros ahead of the log's end, so the next batches land in written extents and their syncs
/// need no journal commit for the extent (see ZERO_AHEAD_BYTES).
#[test]
fn records_not_kept_whole_are_recovered_with_their_head_only() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1 << 20);
    let written: Vec<Vec<u8>> = (0..40).map(|i| payload(i, 100 + i)).collect();
    let lsns = run(async {
        let (mut wal, _) = open(&cfg).await;
        let mut lsns = Vec::new();
        for chunk in written.chunks(7) {
            lsns.push(append_flush(&mut wal, chunk).await);
        }
        wal.close().await.expect("close");
        lsns
    });
    // Keep whole only the records whose first byte is even.
    let short = WalConfig {
        keep_whole: Some(super::KeepWhole {
            head_bytes: 3,
            whole: std::sync::Arc::new(|p: &[u8]| p[0].is_multiple_of(2)),
        }),
        ..cfg.clone()
    };
    let recovered = run(reopen(&short));
    assert_eq!(recovered.records.len(), written.len());
    for (record, payload) in recovered.records.iter().zip(&written) {
        let expected = if payload[0] % 2 == 0 { &payload[..] } else { &payload[..3] };
        assert_eq!(record.as_slice(), expected);
    }
    assert!(written.iter().any(|p| p[0] % 2 == 1), "some records are cut short");
    assert_eq!(*recovered.lsns.last().unwrap(), *lsns.last().unwrap(), "every record keeps its lsn");
    assert_eq!(run(reopen(&cfg)).records, written, "the log itself is unchanged");
}

#[test]
fn segments_sync_on_write_and_flushes_write_zeros_ahead() {
    use super::writer::ZERO_AHEAD_BYTES;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 4 << 20);
    run(async {
        let (mut wal, _) = open(&cfg).await;
        let (path, fd) = wal.active_segment();
        let path = path.to_path_buf();
        // SAFETY: F_GETFL on a descriptor the WAL holds open.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        assert_ne!(flags & libc::O_DSYNC, 0, "segment not opened O_DSYNC: flags {flags:#x}");
        append_flush(&mut wal, &[payload(1, 100)]).await;
        // Where the preallocation shows as unwritten extents (ext4), the first step must not.
        let Some(extents) = extents(&path).filter(|e| e.iter().any(|&(_, _, unwritten)| unwritten)) else {
            eprintln!("no unwritten extents on this filesystem: written vs unwritten not checked");
            return wal.close().await.expect("close");
        };
        let unwritten_within = |end: u64| extents.iter().any(|&(start, _, unwritten)| unwritten && start < end);
        assert!(!unwritten_within(ZERO_AHEAD_BYTES), "unwritten extent within the zeroed step: {extents:?}");
        // A second step once the log passes the first.
        let big = payload(2, 100 << 10);
        for _ in 0..3 {
            append_flush(&mut wal, std::slice::from_ref(&big)).await;
        }
        let extents = self::extents(&path).expect("FIEMAP worked a moment ago");
        let unwritten_within = |end: u64| extents.iter().any(|&(start, _, unwritten)| unwritten && start < end);
        assert!(!unwritten_within(2 * ZERO_AHEAD_BYTES), "second step not zeroed: {extents:?}");
        wal.close().await.expect("close");
    });
}

/// A crash in the flush that crosses into a new zeroed step: the write (batch plus 256 KiB of
/// zeros ahead) is torn after its first block. Recovery keeps every acknowledged batch, cuts
/// the torn one, and appends continue there and survive another reopen.
#[test]
fn a_torn_write_with_zeros_ahead_is_cut_and_everything_before_it_kept() {
    use super::writer::ZERO_AHEAD_BYTES;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 4 << 20);
    run(async {
        let (mut wal, _) = open(&cfg).await;
        // Acknowledged batches up to just short of the end of the first zeroed step.
        let mut acked = Vec::new();
        let big = 60 << 10;
        while wal.position().1 + 2 * big as u64 <= ZERO_AHEAD_BYTES {
            let batch = vec![payload(acked.len(), big)];
            append_flush(&mut wal, &batch).await;
            acked.extend(batch);
        }
        // The next batch (256 KiB) ends past the zeroed extent (the first flush zeroed up to
        // its own end + 256 KiB), so its write carries zeros ahead; it tears after one block.
        wal.faults.fail_next_flush_after_bytes = Some(BLOCK_BYTES);
        wal.append(&payload(500, ZERO_AHEAD_BYTES as usize));
        wal.flush().await.expect_err("injected torn write");
        // Crash: no close.
        drop(wal);
        let recovered = reopen(&cfg).await;
        assert_eq!(recovered.records, acked);
        append_after_damage_and_reopen(&cfg, acked).await;
    });
}

#[test]
fn append_flush_reopen_returns_records_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), super::DEFAULT_SEGMENT_BYTES);
    let sizes: Vec<Vec<usize>> = vec![
        vec![1],
        vec![0, 4095],
        vec![4096],
        // One record exactly filling a block with the batch header.
        vec![4096 - BATCH_HEADER_BYTES - RECORD_HEADER_BYTES],
        vec![100 << 10, 5000, 8, 7, 0],
        vec![12_000, 3, 9000],
    ];
    run(async {
        let (mut wal, recovered) = open(&cfg).await;
        assert!(recovered.records.is_empty());
        assert_eq!(recovered.truncated_bytes, 0);
        let mut expected = Vec::new();
        for lens in &sizes {
            let batch: Vec<Vec<u8>> = lens.iter().map(|&l| payload(expected.len(), l)).collect();
            for record in &batch {
                expected.push(record.clone());
                assert_eq!(wal.append(record), expected.len() as u64);
            }
            assert_eq!(wal.pending_records(), lens.len());
            assert_eq!(wal.flush().await.unwrap(), expected.len() as u64);
            assert_eq!(wal.pending_records(), 0);
            assert_eq!(wal.durable_lsn(), expected.len() as u64);
        }
        // An empty flush does no IO and changes nothing.
        assert_eq!(wal.flush().await.unwrap(), expected.len() as u64);
        wal.close().await.unwrap();

        let recovered = reopen(&cfg).await;
        assert_eq!(recovered.records, expected);
        assert_eq!(recovered.lsns, (1..=expected.len() as u64).collect::<Vec<_>>());
        assert_eq!(recovered.truncated_bytes, 0);
        assert!(recovered.damage.is_none());

        let (mut wal, recovered) = open(&cfg).await;
        assert_eq!(recovered.records.len(), expected.len());
        assert_eq!(wal.next_lsn(), expected.len() as u64 + 1);
        for round in 0..3 {
            let batch = vec![payload(round, 300), payload(round + 1, 5000)];
            append_flush(&mut wal, &batch).await;
            expected.extend(batch);
        }
        wal.close().await.unwrap();
        let recovered = reopen(&cfg).await;
        assert_eq!(recovered.records, expected);
        assert_eq!(recovered.truncated_bytes, 0);
    });
}

/// Writes `batches`, returns (records before the last batch, last batch, its segment, offset).
async fn write_batches(cfg: &WalConfig, batches: &[Vec<usize>]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, PathBuf, u64) {
    let (mut wal, _) = open(cfg).await;
    let mut acked = Vec::new();
    let mut last = Vec::new();
    let mut at = (PathBuf::new(), 0);
    for (i, lens) in batches.iter().enumerate() {
        acked.append(&mut last);
        last = lens.iter().map(|&l| payload(acked.len() + i, l)).collect();
        append_flush(&mut wal, &last).await;
        let (path, end) = wal.position();
        at = (path, end - batch_disk_bytes(lens));
    }
    wal.close().await.unwrap();
    (acked, last, at.0, at.1)
}

/// After damage, appending works and the dropped bytes never come back.
async fn append_after_damage_and_reopen(cfg: &WalConfig, mut expected: Vec<Vec<u8>>) {
    let (mut wal, recovered) = open(cfg).await;
    assert_eq!(recovered.records, expected);
    assert_eq!(recovered.truncated_bytes, 0, "the first reopen cleaned the tail");
    let batch = vec![payload(77, 10), payload(78, 6000)];
    append_flush(&mut wal, &batch).await;
    wal.close().await.unwrap();
    expected.extend(batch);
    let recovered = reopen(cfg).await;
    assert_eq!(recovered.records, expected);
    assert_eq!(recovered.truncated_bytes, 0);
}

#[test]
fn flipped_byte_in_last_batch_drops_that_batch() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), SMALL_SEGMENT);
    run(async {
        let batches = vec![vec![100, 200], vec![3000], vec![3000, 3000, 3000]];
        let (acked, _, path, start) = write_batches(&cfg, &batches).await;
        // In the payload of the second record of the last batch.
        let record_2 = BATCH_HEADER_BYTES + record_bytes(3000) + RECORD_HEADER_BYTES;
        flip_byte(&path, start + record_2 as u64 + 1000);
        let recovered = reopen(&cfg).await;
        assert_eq!(recovered.records, acked);
        assert!(recovered.truncated_bytes > 9000, "{}", recovered.truncated_bytes);
        let damage = recovered.damage.expect("damage reported");
        assert_eq!((damage.segment, damage.offset), (path, start));
        append_after_damage_and_reopen(&cfg, acked).await;
    });
}

#[test]
fn file_cut_mid_record_drops_the_torn_batch() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), SMALL_SEGMENT);
    run(async {
        let batches = vec![vec![10], vec![5000, 5000]];
        let (acked, _, path, start) = write_batches(&cfg, &batches).await;
        cut_file(&path, start + 32 + 16 + 6000);
        let recovered = reopen(&cfg).await;
        assert_eq!(recovered.records, acked);
        assert!(recovered.truncated_bytes > 0);
        append_after_damage_and_reopen(&cfg, acked).await;
    });
}

#[test]
fn file_cut_at_batch_end_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), SMALL_SEGMENT);
    run(async {
        let batches = vec![vec![10], vec![5000, 5000]];
        let (mut acked, last, path, start) = write_batches(&cfg, &batches).await;
        cut_file(&path, start + batch_disk_bytes(&batches[1]));
        acked.extend(last);
        let recovered = reopen(&cfg).await;
        assert_eq!(recovered.records, acked);
        assert_eq!(recovered.truncated_bytes, 0);
        append_after_damage_and_reopen(&cfg, acked).await;
    });
}

#[test]
fn garbage_after_the_end_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), SMALL_SEGMENT);
    run(async {
        let batches = vec![vec![10, 20], vec![700]];
        let (mut acked, last, path, start) = write_batches(&cfg, &batches).await;
        acked.extend(last);
        let end = start + batch_disk_bytes(&batches[1]);
        // Garbage two blocks after the end: a zero header is not enough to end the log.
        write_bytes_at(&path, end + 2 * BLOCK_BYTES + 100, &[0xab; 100]);
        let recovered = reopen(&cfg).await;
        assert_eq!(recovered.records, acked);
        assert_eq!(recovered.truncated_bytes, 2 * BLOCK_BYTES + 200);
        assert_eq!(recovered.damage.unwrap().offset, end);
        append_after_damage_and_reopen(&cfg, acked.clone()).await;

        // Garbage right at the next batch position.
        let (wal, _) = open(&cfg).await;
        let (path, end) = wal.position();
        wal.close().await.unwrap();
        let junk = b"not a batch header at all, just junk";
        write_bytes_at(&path, end, junk);
        let recovered = reopen(&cfg).await;
        assert_eq!(recovered.damage.unwrap().offset, end);
        assert_eq!(recovered.truncated_bytes, junk.len() as u64);
    });
}

/// A flush fails after its (longer) batch reached the disk; a shorter batch with larger lsns
/// is then written at the same offset. Recovery must not return the failed batch's records,
/// whether the writer zero-filled the stale extent (normal) or not (recovery's rules alone).
fn failed_flush_then_shorter_batch(zero_fill: bool) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), SMALL_SEGMENT);
    run(async {
        let (mut wal, _) = open(&cfg).await;
        wal.faults.no_zero_fill = !zero_fill;
        let acked = vec![payload(1, 100), payload(2, 200)];
        append_flush(&mut wal, &acked).await;
        let (_, failed_at) = wal.position();

        wal.faults.fail_next_flush_after_bytes = Some(u64::MAX);
        let failed_lsns: Vec<u64> = (0..10).map(|i| wal.append(&payload(10 + i, 1000))).collect();
        let err = wal.flush().await.expect_err("injected failure");
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
        assert_eq!(wal.pending_records(), 0, "a failed batch is dropped");
        assert_eq!(wal.durable_lsn(), 2);
        assert_eq!(wal.position().1, failed_at, "the next flush writes at the same offset");

        let shorter = vec![payload(99, 50)];
        let lsn = append_flush(&mut wal, &shorter).await;
        assert!(lsn > *failed_lsns.last().unwrap(), "failed lsns are never reused");
        wal.close().await.unwrap();

        let recovered = reopen(&cfg).await;
        let mut expected = acked.clone();
        expected.extend(shorter);
        assert_eq!(recovered.records, expected);
        assert_eq!(recovered.lsns, vec![1, 2, lsn]);
        if zero_fill {
            assert_eq!(recovered.truncated_bytes, 0, "stale extent was zeroed");
        } else {
            assert!(recovered.truncated_bytes > 0, "stale extent detected as damage");
        }
        append_after_damage_and_reopen(&cfg, expected).await;
    });
}

#[test]
fn failed_flush_stale_tail_is_zeroed_by_next_flush() {
    failed_flush_then_shorter_batch(true);
}

#[test]
fn failed_flush_stale_tail_is_rejected_by_recovery() {
    failed_flush_then_shorter_batch(false);
}

/// A hand-written stale batch after the end of the log, valid in itself (magic, crcs) but with
/// lsns at or below the last one, or not chained to it: recovery must stop before it.
#[test]
fn handcrafted_stale_batch_is_not_continuation() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), SMALL_SEGMENT);
    run(async {
        let batches = vec![vec![10, 10, 10], vec![20]];
        let (mut acked, last, path, start) = write_batches(&cfg, &batches).await;
        acked.extend(last);
        let end = start + BLOCK_BYTES;
        // (prev_lsn, first_lsn): old lsns chained correctly; new lsns chained to an old batch.
        for (prev_lsn, first_lsn) in [(4, 2), (3, 9)] {
            let mut body = Vec::new();
            encode_record(&mut body, first_lsn, b"stale");
            let header = BatchHeader { prev_lsn, first_lsn, record_count: 1, body_bytes: body.len() as u32 };
            let mut bytes = header.encode().to_vec();
            bytes.extend(body);
            write_bytes_at(&path, end, &bytes);
            let recovered = reopen(&cfg).await;
            assert_eq!(recovered.records, acked);
            assert_eq!(recovered.damage.unwrap().offset, end);
        }
        append_after_damage_and_reopen(&cfg, acked).await;
    });
}

#[test]
fn segments_rotate_and_recover_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), SMALL_SEGMENT);
    run(async {
        let (mut wal, _) = open(&cfg).await;
        let mut expected = Vec::new();
        for i in 0..40usize {
            let batch: Vec<Vec<u8>> =
                (0..1 + i % 4).map(|j| payload(i * 10 + j, (i * 997 + j * 3001) % 20_000)).collect();
            append_flush(&mut wal, &batch).await;
            expected.extend(batch);
        }
        // A batch larger than a segment grows its segment; a maximal record fits an empty one.
        let big: Vec<Vec<u8>> = (0..10).map(|j| payload(j, 20_000)).collect();
        append_flush(&mut wal, &big).await;
        expected.extend(big);
        let max = wal.max_payload_bytes();
        assert!(matches!(wal.try_append(&vec![1; max + 1]), Err(WalError::RecordTooLarge { .. })));
        append_flush(&mut wal, &[payload(5, max)]).await;
        expected.push(payload(5, max));
        wal.close().await.unwrap();

        let files = segment_files(dir.path());
        assert!(files.len() > 8, "rotated into {} segments", files.len());
        let recovered = reopen(&cfg).await;
        assert_eq!(recovered.records, expected);
        assert_eq!(recovered.truncated_bytes, 0);

        let (mut wal, _) = open(&cfg).await;
        for i in 0..10 {
            let batch = vec![payload(i, 30_000)];
            append_flush(&mut wal, &batch).await;
            expected.extend(batch);
        }
        wal.close().await.unwrap();
        assert_eq!(reopen(&cfg).await.records, expected);
    });
}

/// The config of the explicit repair (`warren wal-repair`).
fn repair_config(cfg: &WalConfig) -> WalConfig {
    WalConfig { truncate_corrupt: true, ..cfg.clone() }
}

/// Opening must fail with `Corrupt` and leave every file exactly as it was.
async fn open_refused(cfg: &WalConfig) -> super::Damage {
    let before: Vec<(PathBuf, Vec<u8>)> =
        segment_files(&cfg.dir).into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect();
    let damage = match Wal::open(cfg.clone()).await {
        Err(WalError::Corrupt(damage)) => *damage,
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok((_, recovered)) => panic!("opened despite corruption; damage {:?}", recovered.damage),
    };
    let after: Vec<(PathBuf, Vec<u8>)> =
        segment_files(&cfg.dir).into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect();
    assert!(before == after, "a refused open changed the log");
    damage
}

/// Writes batches of `lens` each; returns every record and, per batch, (segment, offset,
/// records before it).
async fn write_located(cfg: &WalConfig, batches: usize, lens: &[usize]) -> (Vec<Vec<u8>>, Vec<(PathBuf, u64, usize)>) {
    let (mut wal, _) = open(cfg).await;
    let mut records = Vec::new();
    let mut starts = Vec::new();
    for i in 0..batches {
        let batch: Vec<Vec<u8>> = lens.iter().map(|&l| payload(i, l)).collect();
        append_flush(&mut wal, &batch).await;
        let (path, end) = wal.position();
        starts.push((path, end - batch_disk_bytes(lens), records.len()));
        records.extend(batch);
    }
    wal.close().await.unwrap();
    (records, starts)
}

/// A bad batch followed by valid ones is corruption of acknowledged data, whichever check
/// fails: opening refuses and says where; the repair cuts the log there.
#[test]
fn damage_before_valid_batches_is_refused_then_repaired() {
    // (what to damage: offset in the batch, or None to zero its first block; expected reason)
    let cases: [(Option<u64>, &str); 4] = [
        (Some(10), "header CRC"),
        (Some(BATCH_HEADER_BYTES as u64 + RECORD_HEADER_BYTES as u64 + 5), "record 0: CRC mismatch"),
        (Some(BATCH_HEADER_BYTES as u64 + 8), "record 0: lsn"),
        (None, "no batch header"),
    ];
    for (what, reason) in cases {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), SMALL_SEGMENT);
        run(async {
            // Two records of 3000 bytes: each batch takes two blocks.
            let (records, starts) = write_located(&cfg, 6, &[3000, 3000]).await;
            let (path, offset, before) = starts[2].clone();
            match what {
                Some(at) => flip_byte(&path, offset + at),
                None => write_bytes_at(&path, offset, &[0; BLOCK_BYTES as usize]),
            }
            let damage = open_refused(&cfg).await;
            assert_eq!((&damage.segment, damage.offset), (&path, offset), "{reason}");
            assert!(damage.reason.contains(reason), "{reason}: {}", damage.reason);
            assert_eq!(damage.last_valid_lsn, 4);
            let after = damage.data_after.clone().expect("the next batch is found");
            assert_eq!((after.offset, after.batch), (starts[3].1, Some((6, 7))));
            let text = damage.to_string();
            for part in [path.display().to_string(), format!("at byte {offset}"), "lsns 5..=6".into()] {
                assert!(text.contains(&part), "{reason}: {part:?} missing in: {text}");
            }

            let (wal, recovered) = Wal::open(repair_config(&cfg)).await.expect("the repair opens");
            wal.close().await.unwrap();
            assert_eq!(recovered.records, records[..before]);
            assert_eq!(recovered.truncated_bytes, damage.bytes_after);
            assert!(recovered.damage.is_some_and(|d| !d.is_torn_tail()));
            append_after_damage_and_reopen(&cfg, records[..before].to_vec()).await;
        });
    }
}

/// Damage in the last batch of a segment followed by a non-empty segment: refused (the later
/// segment holds acknowledged writes); the repair deletes the later segments.
#[test]
fn damage_in_a_middle_segment_is_refused_then_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), SMALL_SEGMENT);
    run(async {
        let (records, starts) = write_located(&cfg, 30, &[10_000, 7000]).await;
        let segments = segment_files(dir.path());
        assert!(segments.len() >= 5);
        // Damage the last batch of the third segment.
        let (path, offset, before) = starts.iter().rev().find(|s| s.0 == segments[2]).unwrap().clone();
        flip_byte(&path, offset + 40);
        let damage = open_refused(&cfg).await;
        assert_eq!((&damage.segment, damage.offset), (&path, offset));
        let after = damage.data_after.clone().expect("the next segment is data after the damage");
        assert_eq!((&after.segment, after.offset), (&segments[3], 0));
        assert!(after.batch.is_some());
        assert!(damage.bytes_after > 17_000 * (segments.len() as u64 - 3));

        let (wal, recovered) = Wal::open(repair_config(&cfg)).await.expect("the repair opens");
        wal.close().await.unwrap();
        assert_eq!(recovered.records, records[..before]);
        assert_eq!(segment_files(dir.path()), segments[..3]);
        append_after_damage_and_reopen(&cfg, records[..before].to_vec()).await;
    });
}

/// Only data counts: damage in the last batch followed by an all-zero segment (created, then
/// the crash) or zero blocks is a torn tail, cut without asking.
#[test]
fn damage_followed_only_by_zeros_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), SMALL_SEGMENT);
    run(async {
        let (records, starts) = write_located(&cfg, 3, &[5000]).await;
        let (path, offset, before) = starts[2].clone();
        flip_byte(&path, offset + 100);
        let empty_next = dir.path().join(super::segment::segment_name(0, 1000));
        std::fs::File::create(&empty_next).unwrap().set_len(SMALL_SEGMENT).unwrap();
        let (wal, recovered) = open(&cfg).await;
        wal.close().await.unwrap();
        assert_eq!(recovered.records, records[..before]);
        let damage = recovered.damage.expect("the torn batch is reported");
        assert!(damage.is_torn_tail(), "{damage}");
        assert!(!empty_next.exists(), "segments after the cut are deleted");
        append_after_damage_and_reopen(&cfg, records[..before].to_vec()).await;
    });
}

/// A crash while creating a segment leaves a temp file, never a short segment; the next open
/// removes it and the log is intact.
#[test]
fn a_half_created_segment_is_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), SMALL_SEGMENT);
    run(async {
        let (records, _) = write_located(&cfg, 2, &[100]).await;
        let segments = segment_files(dir.path());
        assert!(segments.iter().all(|p| !p.to_string_lossy().ends_with(".tmp")), "{segments:?}");
        let temp = super::segment::temp_segment_path(&dir.path().join(super::segment::segment_name(0, 50)));
        std::fs::write(&temp, b"half").unwrap();
        let other_core = super::segment::temp_segment_path(&dir.path().join(super::segment::segment_name(1, 50)));
        std::fs::write(&other_core, b"not ours").unwrap();
        let recovered = reopen(&cfg).await;
        assert_eq!(recovered.records, records);
        assert!(!temp.exists(), "the temp segment is removed");
        assert!(other_core.exists(), "another core's files are left alone");
    });
}

/// A flush fails with its whole batch on disk, and the next batch does not fit the segment.
/// Rotation must first cut the failed batch off the old segment, or recovery would accept it
/// and then reject the new segment (whose first batch chains to the batch before it).
#[test]
fn failed_flush_before_rotation_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), SMALL_SEGMENT);
    run(async {
        let (mut wal, _) = open(&cfg).await;
        let mut expected = vec![payload(1, 40_000)];
        append_flush(&mut wal, &expected).await;
        wal.faults.fail_next_flush_after_bytes = Some(u64::MAX);
        wal.append(&payload(2, 10_000));
        assert!(wal.flush().await.is_err());
        let next = vec![payload(3, 30_000)];
        append_flush(&mut wal, &next).await;
        expected.extend(next);
        wal.close().await.unwrap();
        assert_eq!(segment_files(dir.path()).len(), 2);
        let recovered = reopen(&cfg).await;
        assert_eq!(recovered.records, expected);
        assert_eq!(recovered.truncated_bytes, 0);
    });
}

/// A real kernel error on the write path. RLIMIT_FSIZE makes writes past an offset fail with
/// EFBIG (the closest cheap stand-in for ENOSPC without mounting a tiny filesystem). The limit
/// is per process, so the body runs in a child test process.
#[test]
fn kernel_write_error_fails_flush_and_wal_stays_usable() {
    const CHILD: &str = "WARREN_WAL_FSIZE_CHILD_DIR";
    if let Ok(dir) = std::env::var(CHILD) {
        return fsize_child(Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "wal::tests::kernel_write_error_fails_flush_and_wal_stays_usable",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD, dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "child failed: {status}");
}

fn set_fsize_limit(bytes: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain syscalls on a valid, owned struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit), 0);
        limit.rlim_cur = bytes.min(limit.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
}

fn fsize_child(dir: &Path) {
    // SAFETY: ignoring SIGXFSZ turns the over-limit write into a plain EFBIG error.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let cfg = config(dir, 1 << 20);
    run(async {
        let (mut wal, _) = open(&cfg).await;
        let acked = vec![payload(1, 100)];
        append_flush(&mut wal, &acked).await;
        let (_, pos) = wal.position();
        set_fsize_limit(pos);
        wal.append(&payload(2, 100));
        let err = wal.flush().await.expect_err("write beyond RLIMIT_FSIZE");
        eprintln!("flush failed as expected: {err}");
        assert_eq!(err.raw_os_error(), Some(libc::EFBIG), "{err}");
        assert_eq!(wal.position().1, pos);
        set_fsize_limit(libc::RLIM_INFINITY);
        let after = vec![payload(3, 100)];
        append_flush(&mut wal, &after).await;
        wal.close().await.unwrap();
        let recovered = reopen(&cfg).await;
        assert_eq!(recovered.records, vec![acked[0].clone(), after[0].clone()]);
        assert_eq!(recovered.lsns, vec![1, 3]);
    });
}

/// What one crash case found, compared outside the executor.
struct CrashOutcome {
    acked: Vec<Vec<u8>>,
    last: Vec<Vec<u8>>,
    recovered: Vec<Vec<u8>>,
    /// The damage hit a byte covered by a header or crc, so the last batch must be gone.
    must_drop_last: bool,
    after_append_ok: bool,
}

async fn crash_case(
    dir: &Path,
    segment_bytes: u64,
    batches: &[Vec<usize>],
    kind: u8,
    at: prop::sample::Index,
    garbage: u8,
) -> CrashOutcome {
    let cfg = config(dir, segment_bytes);
    let (acked, last, path, start) = write_batches(&cfg, batches).await;
    let lens = batches.last().unwrap();
    let used = (BATCH_HEADER_BYTES + lens.iter().map(|&l| record_bytes(l)).sum::<usize>()) as u64;
    let must_drop_last = match kind {
        // Crash mid-write: the file ends somewhere inside the last batch.
        0 => {
            cut_file(&path, start + at.index(used as usize) as u64);
            true
        }
        // A byte of the last batch's header or first record header is torn.
        1 => {
            let offset = at.index(BATCH_HEADER_BYTES + RECORD_HEADER_BYTES) as u64;
            flip_byte(&path, start + offset);
            true
        }
        // Garbage anywhere from the last batch to two blocks past its end.
        _ => {
            let offset = at.index((batch_disk_bytes(lens) + 2 * BLOCK_BYTES) as usize) as u64;
            write_bytes_at(&path, start + offset, &[garbage | 1; 24]);
            offset < BATCH_HEADER_BYTES as u64
        }
    };
    let recovered = reopen(&cfg).await.records;
    let (mut wal, again) = open(&cfg).await;
    let extra = payload(1234, 321);
    append_flush(&mut wal, std::slice::from_ref(&extra)).await;
    wal.close().await.unwrap();
    let mut expected = again.records;
    expected.push(extra);
    let after_append_ok = again.truncated_bytes == 0 && reopen(&cfg).await.records == expected;
    CrashOutcome { acked, last, recovered, must_drop_last, after_append_ok }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// Random batches, then damage limited to the last (unacknowledged) batch: recovery returns
    /// every acknowledged record, plus the last batch whole or not at all, never garbage; and
    /// appending after recovery works.
    #[test]
    fn crash_in_last_batch_keeps_every_acknowledged_record(
        batches in prop::collection::vec(prop::collection::vec(0usize..9000, 1..6), 1..8),
        small_segments in any::<bool>(),
        kind in 0u8..3,
        at in any::<prop::sample::Index>(),
        garbage in any::<u8>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let segment_bytes = if small_segments { SMALL_SEGMENT } else { 1 << 20 };
        let outcome = run(crash_case(dir.path(), segment_bytes, &batches, kind, at, garbage));
        let mut with_last = outcome.acked.clone();
        with_last.extend(outcome.last.clone());
        prop_assert!(
            outcome.recovered == outcome.acked
                || (!outcome.must_drop_last && outcome.recovered == with_last),
            "recovered {} records, acked {}, last batch {}",
            outcome.recovered.len(), outcome.acked.len(), outcome.last.len()
        );
        prop_assert!(outcome.after_append_ok);
    }
}

fn percentile(sorted_us: &[f64], p: f64) -> f64 {
    sorted_us[((sorted_us.len() as f64 * p).ceil() as usize).min(sorted_us.len()) - 1]
}

/// Numbers for the report: `cargo test -p net --lib wal::tests::bench -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_flush_latency_and_batch_throughput() {
    let dir = tempfile::tempdir_in(std::env::var("WAL_BENCH_DIR").unwrap_or("/work".into())).unwrap();
    let cfg = config(dir.path(), super::DEFAULT_SEGMENT_BYTES);
    run(async {
        let (mut wal, _) = open(&cfg).await;
        let record = payload(1, 100);
        let mut samples = Vec::new();
        for _ in 0..200 {
            let start = Instant::now();
            wal.append(&record);
            wal.flush().await.unwrap();
            samples.push(start.elapsed().as_secs_f64() * 1e6);
        }
        samples.sort_by(f64::total_cmp);
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        println!(
            "1 x 100 B + flush, 200 times: mean {mean:.0} us, p50 {:.0} us, p99 {:.0} us, max {:.0} us",
            percentile(&samples, 0.5),
            percentile(&samples, 0.99),
            samples.last().unwrap()
        );
        for size in [100usize, 1024] {
            let record = payload(2, size);
            let batches = 50;
            let start = Instant::now();
            let mut flush_us = Vec::new();
            for _ in 0..batches {
                for _ in 0..1000 {
                    wal.append(&record);
                }
                let flush_start = Instant::now();
                wal.flush().await.unwrap();
                flush_us.push(flush_start.elapsed().as_secs_f64() * 1e6);
            }
            let secs = start.elapsed().as_secs_f64();
            flush_us.sort_by(f64::total_cmp);
            println!(
                "{batches} batches x 1000 x {size} B: {:.0} records/s, {:.1} MB/s payload, flush p50 {:.0} us p99 {:.0} us",
                (batches * 1000) as f64 / secs,
                (batches * 1000 * size) as f64 / secs / 1e6,
                percentile(&flush_us, 0.5),
                percentile(&flush_us, 0.99)
            );
        }
        wal.close().await.unwrap();
        let start = Instant::now();
        let recovered = reopen(&cfg).await;
        println!(
            "reopen: {} records, {} segments in {:.1} ms",
            recovered.records.len(),
            segment_files(dir.path()).len(),
            start.elapsed().as_secs_f64() * 1e3
        );
    });
}

/// Segments below a snapshot are released; the log then recovers from the first segment left
/// (its first batch chains to a released one), appends continue, and nothing later is lost.
#[test]
fn released_segments_leave_a_log_that_recovers_from_the_first_one_kept() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), SMALL_SEGMENT);
    run(async {
        let (mut wal, _) = open(&config).await;
        let records: Vec<Vec<u8>> = (0..60).map(|i| payload(i, 3000)).collect();
        let mut lsns = Vec::new();
        for chunk in records.chunks(3) {
            lsns.push(append_flush(&mut wal, chunk).await);
        }
        let before = segment_files(dir.path()).len();
        assert!(before >= 3, "{before} segments");
        let keep_from = lsns[lsns.len() / 2];
        let released = wal.release_before(keep_from).unwrap();
        assert!(released >= 1 && released < before, "{released} of {before}");
        assert_eq!(segment_files(dir.path()).len(), before - released);
        assert_eq!(wal.release_before(keep_from).unwrap(), 0, "released once");
        wal.close().await.unwrap();
        let recovered = reopen(&config).await;
        assert_eq!(recovered.lsns.last(), lsns.last(), "the log's end is unchanged");
        assert!(recovered.lsns[0] <= keep_from, "everything from the lsn asked for is kept");
        let first = recovered.lsns[0] as usize - 1;
        assert_eq!(recovered.records, records[first..].to_vec());
        let (mut wal, _) = open(&config).await;
        let last = append_flush(&mut wal, &[payload(99, 10)]).await;
        wal.close().await.unwrap();
        let recovered = reopen(&config).await;
        assert_eq!(recovered.lsns.last(), Some(&last));
        assert_eq!(recovered.records.last(), Some(&payload(99, 10)));
    });
}
