//! The four-letter words report what the server measured: request latencies from histograms
//! (reads, updates, all requests) in ZooKeeper's keys and units, WAL fsync times and batch
//! sizes as their own keys, and the node's real role. Also run against ZooKeeper 3.8
//! (`WARREN_BIN=$PWD/tests/zk_as_warren.sh`), which has the same `zk_*` keys; the
//! `warren_*` microsecond keys are checked on Warren only.

use std::collections::BTreeMap;

use warren_tests::zk::{Acls, CreateMode};
use warren_tests::{skip_if_external, unique, WarrenOpts, WarrenProcess};

const READS: u64 = 50;
const WRITES: u64 = 20;

fn against_zookeeper() -> bool {
    warren_tests::warren_bin().ends_with("zk_as_warren.sh")
}

/// mntr's `key<TAB>value` lines.
fn parse_mntr(out: &str) -> BTreeMap<String, String> {
    out.lines().filter_map(|l| l.split_once('\t')).map(|(k, v)| (k.to_string(), v.trim().to_string())).collect()
}

fn int(m: &BTreeMap<String, String>, key: &str) -> u64 {
    let v = m.get(key).unwrap_or_else(|| panic!("mntr lacks {key}"));
    v.parse().unwrap_or_else(|e| panic!("mntr {key} = {v:?} is not an integer: {e}"))
}

fn float(m: &BTreeMap<String, String>, key: &str) -> f64 {
    let v = m.get(key).unwrap_or_else(|| panic!("mntr lacks {key}"));
    v.parse().unwrap_or_else(|e| panic!("mntr {key} = {v:?} is not a number: {e}"))
}

/// `Latency min/avg/max: a/b/c` of srvr, as strings.
fn srvr_latency(srvr: &str) -> (String, String, String) {
    let line = srvr.lines().find_map(|l| l.strip_prefix("Latency min/avg/max: ")).expect("srvr has a Latency line");
    let parts: Vec<&str> = line.trim().split('/').collect();
    assert_eq!(parts.len(), 3, "Latency min/avg/max: {line}");
    (parts[0].to_string(), parts[1].to_string(), parts[2].to_string())
}

/// srvr and mntr taken while no request completed (the client's pings may land at any time):
/// srvr is bracketed by two mntr answers that counted the same requests.
fn quiet_srvr_and_mntr(s: &WarrenProcess) -> (String, BTreeMap<String, String>) {
    let requests = |m: &BTreeMap<String, String>| int(m, "zk_cnt_readlatency") + int(m, "zk_cnt_updatelatency");
    for _ in 0..20 {
        let before = parse_mntr(&s.four_letter("mntr"));
        let srvr = s.four_letter("srvr");
        let after = parse_mntr(&s.four_letter("mntr"));
        if requests(&before) == requests(&after) {
            return (srvr, after);
        }
    }
    panic!("requests kept completing between two mntr answers");
}

/// ZooKeeper's `zk_{avg,min,max,cnt,sum}_<name>` and percentiles are present and ordered.
fn check_zk_distribution(m: &BTreeMap<String, String>, name: &str, percentiles: bool) {
    let (min, avg, max) =
        (int(m, &format!("zk_min_{name}")), float(m, &format!("zk_avg_{name}")), int(m, &format!("zk_max_{name}")));
    assert!(min as f64 <= avg && avg <= max as f64, "{name}: min {min} avg {avg} max {max}");
    let cnt = int(m, &format!("zk_cnt_{name}"));
    let sum = int(m, &format!("zk_sum_{name}"));
    if cnt > 0 {
        assert!(sum >= min * cnt, "{name}: sum {sum} under min {min} × cnt {cnt}");
    }
    if percentiles {
        let ps: Vec<u64> = ["p50", "p95", "p99", "p999"].iter().map(|p| int(m, &format!("zk_{p}_{name}"))).collect();
        assert!(ps.windows(2).all(|w| w[0] <= w[1]), "{name} percentiles not ordered: {ps:?}");
        assert!(ps[3] <= max, "{name}: p999 {} above max {max}", ps[3]);
    }
}

/// Warren's `<prefix>_{cnt,sum,min,avg,max,p50,p95,p99,p999}` (µs) are present and ordered;
/// returns (cnt, min, max).
fn check_micros(m: &BTreeMap<String, String>, prefix: &str) -> (u64, u64, u64) {
    let (cnt, min, avg, max) = (
        int(m, &format!("{prefix}_cnt")),
        int(m, &format!("{prefix}_min")),
        float(m, &format!("{prefix}_avg")),
        int(m, &format!("{prefix}_max")),
    );
    let sum = int(m, &format!("{prefix}_sum"));
    assert!(min as f64 <= avg && avg <= max as f64, "{prefix}: min {min} avg {avg} max {max}");
    assert!((avg * cnt as f64 - sum as f64).abs() <= 0.001 * sum as f64 + 1.0, "{prefix}: avg {avg} × {cnt} ≠ {sum}");
    let ps: Vec<u64> = ["p50", "p95", "p99", "p999"].iter().map(|p| int(m, &format!("{prefix}_{p}"))).collect();
    assert!(min <= ps[0] && ps.windows(2).all(|w| w[0] <= w[1]) && ps[3] <= max, "{prefix}: {min} {ps:?} {max}");
    (cnt, min, max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mntr_and_srvr_report_measured_latencies_and_role() {
    if skip_if_external("mntr_and_srvr_report_measured_latencies_and_role") {
        return; // a shared server's counters move with the other tests
    }
    // Two cores: the figures are gathered and merged over cores.
    let s = WarrenProcess::start(WarrenOpts::default().cores(2));
    let c = s.client().await;
    let root = format!("/{}", unique("obs"));
    let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());
    c.create(&root, b"", &persistent).await.unwrap();
    for i in 1..WRITES {
        c.create(&format!("{root}/{i}"), b"x", &persistent).await.unwrap();
    }
    for _ in 0..READS {
        c.get_data(&root).await.unwrap();
    }
    let (srvr, m) = quiet_srvr_and_mntr(&s);

    assert!(int(&m, "zk_cnt_readlatency") >= READS, "reads counted: {m:?}");
    assert!(int(&m, "zk_cnt_updatelatency") >= WRITES, "updates counted: {m:?}");
    check_zk_distribution(&m, "readlatency", true);
    check_zk_distribution(&m, "updatelatency", true);
    check_zk_distribution(&m, "fsynctime", false);
    check_zk_distribution(&m, "sync_processor_batch_size", false);
    assert!(int(&m, "zk_cnt_fsynctime") >= 1, "the writes were fsync'd");
    assert!(int(&m, "zk_cnt_sync_processor_batch_size") >= 1);
    assert!(int(&m, "zk_min_sync_processor_batch_size") >= 1, "a batch holds at least one entry");

    // srvr's line is mntr's overall latency, in the same units.
    let (min, avg, max) = srvr_latency(&srvr);
    assert_eq!(min, m["zk_min_latency"], "srvr min vs mntr\n{srvr}");
    assert_eq!(max, m["zk_max_latency"], "srvr max vs mntr\n{srvr}");
    assert_eq!(avg.parse::<f64>().unwrap(), float(&m, "zk_avg_latency"), "srvr avg vs mntr\n{srvr}");
    let (min, avg, max) = (int(&m, "zk_min_latency"), float(&m, "zk_avg_latency"), int(&m, "zk_max_latency"));
    assert!(min as f64 <= avg && avg <= max as f64, "min {min} avg {avg} max {max}");
    assert!(max >= int(&m, "zk_max_readlatency") && max >= int(&m, "zk_max_updatelatency"), "overall covers both");

    assert!(srvr.lines().any(|l| l == "Mode: standalone"), "srvr Mode:\n{srvr}");
    assert!(s.four_letter("stat").lines().any(|l| l == "Mode: standalone"), "stat Mode");
    assert_eq!(m["zk_server_state"], "standalone");

    if against_zookeeper() {
        return;
    }
    let (all, _, all_max) = check_micros(&m, "warren_request_latency_us");
    let (reads, _, _) = check_micros(&m, "warren_read_latency_us");
    let (updates, update_min, _) = check_micros(&m, "warren_update_latency_us");
    let (fsyncs, fsync_min, _) = check_micros(&m, "warren_wal_fsync_us");
    assert_eq!(reads, int(&m, "zk_cnt_readlatency"));
    assert_eq!(updates, int(&m, "zk_cnt_updatelatency"));
    assert_eq!(fsyncs, int(&m, "zk_cnt_fsynctime"));
    assert_eq!(all, reads + updates, "every request is a read or an update");
    assert!(all_max > 0, "requests take time");
    // Every update waited for its batch's fsync: request latency, not fsync time, yet bounded by it.
    assert!(update_min >= fsync_min, "update min {update_min} µs under fsync min {fsync_min} µs");
    assert_eq!(min, int(&m, "warren_request_latency_us_min") / 1000, "ms min is the µs min rounded down");
    assert_eq!(max, int(&m, "warren_request_latency_us_max").div_ceil(1000), "ms max is the µs max rounded up");

    // The commit latency split: every write waited in its core's queue and was committed by
    // its group (a single node leads every group), in batches whose applying was timed.
    let (queued, _, _) = check_micros(&m, "warren_commit_queue_us");
    let (committed_batches, quorum_min, _) = check_micros(&m, "warren_commit_quorum_us");
    let (applied_batches, _, _) = check_micros(&m, "warren_apply_us");
    assert!(queued >= WRITES, "every write was queued: {queued}");
    assert!(committed_batches >= 1 && applied_batches >= committed_batches, "{committed_batches} {applied_batches}");
    assert!(quorum_min >= fsync_min, "a batch commits only after its WAL write: {quorum_min} < {fsync_min}");
    for group in 0..2 {
        let commit = int(&m, &format!("warren_group_{group}_commit_index"));
        assert!(commit >= 1, "group {group} committed its entries");
        assert_eq!(int(&m, &format!("warren_group_{group}_applied_index")), commit, "group {group} applied all");
        assert_eq!(int(&m, &format!("warren_group_{group}_last_index")), commit, "group {group}: nothing uncommitted");
        assert_eq!(int(&m, &format!("warren_group_{group}_follower_lag")), 0, "no followers");
        assert!(int(&m, &format!("warren_group_{group}_term")) >= 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_drops_applied_entries_from_memory_and_still_replays_them_all() {
    if skip_if_external("a_single_node_drops_applied_entries_from_memory") || against_zookeeper() {
        return;
    }
    let mut s = WarrenProcess::start(WarrenOpts::default());
    let c = s.client().await;
    let root = format!("/{}", unique("compact"));
    let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());
    c.create(&root, b"", &persistent).await.unwrap();
    // More than one compaction step (4096 entries) of writes, pipelined 100 at a time.
    let paths: Vec<String> = (0..6000).map(|i| format!("{root}/{i}")).collect();
    for chunk in paths.chunks(100) {
        let writes: Vec<_> = chunk.iter().map(|path| c.create(path, b"x", &persistent)).collect();
        for write in writes {
            write.await.unwrap();
        }
    }
    let (_, m) = quiet_srvr_and_mntr(&s);
    let (first, last) = (int(&m, "warren_group_0_first_index"), int(&m, "warren_group_0_last_index"));
    assert!(last > 6000 && first > 4096, "the in-memory log holds {first}..={last}: nothing was compacted");
    // The WAL still has every entry: a restart replays them all.
    drop(c);
    s.kill9();
    s.restart();
    let c = s.client().await;
    assert_eq!(c.get_children(&root).await.unwrap().0.len(), 6000);
}
