//! A damaged WAL on a real data dir. A torn last write (never acknowledged) is cut off and the
//! node starts; damage with valid data after it (a middle batch, a middle segment) would lose
//! acknowledged writes, so `warren start` refuses with where and what, and `warren wal-repair`
//! is the explicit way out: it discards the damaged batch and everything after it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use warren_tests::zk::{self, Acls, CreateMode};
use warren_tests::{free_port, skip_if_external, unique, warren_bin, WarrenOpts, WarrenProcess};

const BLOCK: u64 = 4096;

fn persistent() -> zk::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

fn node_data(i: usize, len: usize) -> Vec<u8> {
    let mut data = format!("node-{i:03}-").into_bytes();
    data.resize(len.max(data.len()), b'a' + (i % 26) as u8);
    data
}

/// Starts warren on `data`, creates `<root>/n000..` one by one (one WAL batch each) with data
/// of the given lengths, and kills it with -9 before the client could close its session.
async fn write_nodes(opts: &WarrenOpts, data: &Path, lens: &[usize]) -> String {
    let mut s = WarrenProcess::start_with_data_dir(opts.clone(), data);
    let root = format!("/{}", unique("wal"));
    let c = s.client().await;
    c.create(&root, b"", &persistent()).await.unwrap();
    for (i, &len) in lens.iter().enumerate() {
        c.create(&format!("{root}/n{i:03}"), &node_data(i, len), &persistent()).await.unwrap();
    }
    s.kill9();
    drop(c);
    root
}

/// The data dir's WAL segments, in log order.
fn segments(data: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().ends_with(".log"))
        .collect();
    files.sort();
    files
}

/// Offsets of the batches of a segment: blocks that start with the batch magic (the test's
/// payloads never do).
fn batch_starts(segment: &Path) -> Vec<u64> {
    let bytes = std::fs::read(segment).unwrap();
    (0..bytes.len() as u64).step_by(BLOCK as usize).filter(|&at| bytes[at as usize..].starts_with(b"WRN1")).collect()
}

/// The segment and offset of the batch whose records hold `needle`.
fn batch_holding(data: &Path, needle: &str) -> (PathBuf, u64) {
    for segment in segments(data) {
        let bytes = std::fs::read(&segment).unwrap();
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle.as_bytes()) {
            let start = batch_starts(&segment).into_iter().filter(|&s| s <= at as u64).max().unwrap();
            return (segment, start);
        }
    }
    panic!("{needle} is in no WAL segment");
}

fn flip_byte(path: &Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).unwrap();
    byte[0] ^= 0x5a;
    file.write_all_at(&byte, offset).unwrap();
}

fn zero_bytes(path: &Path, offset: u64, len: usize) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(&vec![0u8; len], offset).unwrap();
}

/// Runs `warren ARGS` to its exit (bounded: 30 s); returns (status code, stdout, stderr).
fn run_warren(args: &[String]) -> (i32, String, String) {
    let mut child = Command::new(warren_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("warren runs");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("warren {args:?} did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

/// `warren start` on `data` with `opts`' cores and extra args; must refuse. Returns stderr.
fn start_refused(opts: &WarrenOpts, data: &Path) -> String {
    let mut args: Vec<String> = ["start", "--port", &free_port().to_string(), "--data-dir"].map(String::from).into();
    args.push(data.display().to_string());
    args.extend(["--cores".to_string(), opts.cores.unwrap_or(1).to_string()]);
    args.extend(opts.extra_args.iter().cloned());
    let (code, _, stderr) = run_warren(&args);
    assert_eq!(code, 1, "start on a corrupt WAL must fail; stderr:\n{stderr}");
    eprintln!("--- refused start ---\n{stderr}");
    stderr
}

fn repair(opts: &WarrenOpts, data: &Path) -> String {
    let mut args: Vec<String> = vec!["wal-repair".into(), "--data-dir".into(), data.display().to_string()];
    args.extend(opts.extra_args.iter().cloned());
    let (code, stdout, stderr) = run_warren(&args);
    assert_eq!(code, 0, "wal-repair failed; stdout:\n{stdout}\nstderr:\n{stderr}");
    eprintln!("--- wal-repair ---\n{stdout}");
    stdout
}

fn assert_mentions(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "{part:?} missing in:\n{text}");
    }
}

/// Nodes `0..present` are served with their data, `present..total` are not there.
async fn assert_prefix_served(opts: &WarrenOpts, data: &Path, root: &str, lens: &[usize], present: usize) {
    let s = WarrenProcess::start_with_data_dir(opts.clone(), data);
    let c = s.client().await;
    for (i, &len) in lens.iter().enumerate() {
        let got = c.get_data(&format!("{root}/n{i:03}")).await.map(|(d, _)| d);
        if i < present {
            assert_eq!(got.ok(), Some(node_data(i, len)), "n{i:03} was acknowledged before the damage");
        } else {
            assert_eq!(got.err(), Some(zk::Error::NoNode), "n{i:03} was at or after the damage");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_middle_batch_refuses_to_start_and_repair_keeps_what_precedes_it() {
    if skip_if_external("corrupt_middle_batch_refuses_to_start_and_repair_keeps_what_precedes_it") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let opts = WarrenOpts::default();
    let lens = vec![100; 30];
    let root = write_nodes(&opts, data.path(), &lens).await;
    let (segment, start) = batch_holding(data.path(), &format!("{root}/n015"));
    // In the first record's payload (after the 32-byte batch and 16-byte record headers).
    flip_byte(&segment, start + 32 + 16 + 8);

    let stderr = start_refused(&opts, data.path());
    let name = segment.file_name().unwrap().to_string_lossy().into_owned();
    let at = format!("at byte {start}");
    assert_mentions(
        &stderr,
        &[&name, &at, "record 0: CRC mismatch", "damaged batch: lsns", "corruption before the end of the log"],
    );
    assert_mentions(&stderr, &["data follows at byte", "warren wal-repair --data-dir"]);

    let report = repair(&opts, data.path());
    assert_mentions(&report, &["core 0: DISCARDED", &name, &at]);
    assert_prefix_served(&opts, data.path(), &root, &lens, 15).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_middle_segment_refuses_to_start_and_repair_drops_later_segments() {
    if skip_if_external("corrupt_middle_segment_refuses_to_start_and_repair_drops_later_segments") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("warren.toml");
    std::fs::write(&config, "wal-segment-bytes = 1048576\nmax-request-bytes = 524288\n").unwrap();
    let opts = WarrenOpts { extra_args: vec!["--config".into(), config.display().to_string()], ..Default::default() };
    let lens = vec![100_000; 30];
    let root = write_nodes(&opts, data.path(), &lens).await;
    let files = segments(data.path());
    assert!(files.len() >= 3, "expected several 1 MiB segments, got {files:?}");
    // The last batch of the second segment: nothing valid follows it in its own segment.
    let start = *batch_starts(&files[1]).last().unwrap();
    let bytes = std::fs::read(&files[1]).unwrap();
    let marker = format!("{root}/n");
    let at =
        start as usize + bytes[start as usize..].windows(marker.len()).position(|w| w == marker.as_bytes()).unwrap();
    let damaged: usize =
        std::str::from_utf8(&bytes[at + marker.len()..at + marker.len() + 3]).unwrap().parse().unwrap();
    flip_byte(&files[1], start + 32 + 16 + 8);

    let stderr = start_refused(&opts, data.path());
    let name = |p: &PathBuf| p.file_name().unwrap().to_string_lossy().into_owned();
    assert_mentions(&stderr, &[&name(&files[1]), &format!("at byte {start}"), "record 0: CRC mismatch"]);
    assert_mentions(&stderr, &[&format!("data follows at byte 0 of {}", files[2].display()), "wal-repair"]);

    let report = repair(&opts, data.path());
    assert_mentions(&report, &["core 0: DISCARDED", &name(&files[1])]);
    assert_eq!(segments(data.path()), files[..2], "the segments after the damage are gone");
    assert_prefix_served(&opts, data.path(), &root, &lens, damaged).await;
}

/// A torn last write (zeroed blocks, or a broken header, in the last batch) is cut off
/// without asking, and every earlier acknowledged write is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_or_corrupt_tail_starts_and_serves_every_acknowledged_write() {
    if skip_if_external("torn_or_corrupt_tail_starts_and_serves_every_acknowledged_write") {
        return;
    }
    for tear in [true, false] {
        let data = tempfile::tempdir().unwrap();
        let opts = WarrenOpts::default();
        let mut lens = vec![100; 19];
        // The last write spans five blocks.
        lens.push(20_000);
        let root = write_nodes(&opts, data.path(), &lens).await;
        let (segment, start) = batch_holding(data.path(), &format!("{root}/n019"));
        assert_eq!(Some(start), batch_starts(&segment).last().copied(), "n019's batch is the last one");
        if tear {
            // A torn multi-block write: its third block never reached the disk.
            zero_bytes(&segment, start + 2 * BLOCK, BLOCK as usize);
        } else {
            flip_byte(&segment, start + 10);
        }
        assert_prefix_served(&opts, data.path(), &root, &lens, 19).await;
    }
}
