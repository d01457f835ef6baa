//! loadgen against its own canned-reply server (`loadgen canned-server`): a closed loop gets
//! only well-formed, successful replies, and an open loop sees a server stall of known length
//! in its latencies and still counts every op that was due during it.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

mod common;

use common::LOADGEN;

/// A canned server started by the test on a free loopback port, killed on drop.
struct Canned {
    child: Child,
    addr: String,
}

impl Canned {
    fn start(extra: &[&str]) -> Canned {
        let mut child = Command::new(LOADGEN)
            .args(["canned-server", "--port", "0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn canned-server");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let Some(addr) = line.trim().strip_prefix("canned-server listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("canned-server did not announce its address: {line:?}");
        };
        Canned { addr: addr.to_string(), child }
    }
}

impl Drop for Canned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs loadgen (bounded by `limit`) and requires it to succeed.
fn loadgen(args: &[&str], limit: Duration) -> Output {
    let out = common::loadgen(args, limit);
    assert!(
        out.status.success(),
        "loadgen {args:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The single JSON result under `<dir>/<version>/`.
fn only_result(dir: &Path) -> serde_json::Value {
    let version_dir = dir.join(env!("CARGO_PKG_VERSION"));
    let json: Vec<_> = std::fs::read_dir(&version_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
        .collect();
    assert_eq!(json.len(), 1, "{json:?}");
    serde_json::from_str(&std::fs::read_to_string(&json[0]).unwrap()).expect("JSON")
}

#[test]
fn closed_loop_against_the_canned_server_has_no_errors() {
    let server = Canned::start(&[]);
    let results = tempfile::tempdir().unwrap();
    let args = [
        "--servers",
        &server.addr,
        "--ops",
        "20k",
        "--mix",
        "70r10w5c5d10x",
        "--clients",
        "4",
        "--keys",
        "200",
        "--results-dir",
        results.path().to_str().unwrap(),
    ];
    loadgen(&args, Duration::from_secs(60));
    let v = only_result(results.path());
    assert_eq!(v["total"]["count"], 20_000, "{v}");
    assert_eq!(v["total"]["errors"], 0, "{v}");
    assert!(v["target"]["version"].as_str().unwrap().contains("canned-server"), "{v}");
    assert_eq!(v["target"]["kind"], "canned", "{v}");
    for kind in ["getData", "setData", "create", "delete", "getWatch"] {
        assert!(v["ops"][kind]["count"].as_u64().unwrap() > 0, "{kind} never ran: {v}");
    }
}

/// Seven sessions on two threads (shares of 4 and 3, each thread on one epoll set), with the
/// server stalling 300 ms mid-run: every claimed op is answered and counted exactly once, and
/// the stall shows in the latencies of sessions of both threads.
#[test]
fn sessions_multiplexed_over_fewer_threads_complete_every_op() {
    let server = Canned::start(&["--stall-ms-at", "3000:300"]);
    let results = tempfile::tempdir().unwrap();
    let args = [
        "--servers",
        &server.addr,
        "--ops",
        "6000",
        "--mix",
        "80r10w10x",
        "--clients",
        "7",
        "--threads",
        "2",
        "--pipeline",
        "3",
        "--keys",
        "100",
        "--results-dir",
        results.path().to_str().unwrap(),
    ];
    let out = loadgen(&args, Duration::from_secs(60));
    let v = only_result(results.path());
    assert_eq!(v["settings"]["threads"], 2, "{v}");
    assert_eq!(v["total"]["count"], 6000, "{v}");
    assert_eq!(v["total"]["errors"], 0, "{v}");
    // In flight when the stall began: up to 7 x 3 requests, all waiting >= 300 ms.
    assert!(v["total"]["max_us"].as_u64().unwrap() >= 300_000, "{v}");
    assert!(v["total"]["p99_9_us"].as_u64().unwrap() >= 250_000, "{v}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("7 clients x pipeline 3 on 2 threads"), "{stderr}");
}

/// More threads than sessions: one thread per session, no idle thread.
#[test]
fn threads_are_at_most_one_per_session() {
    let server = Canned::start(&[]);
    let results = tempfile::tempdir().unwrap();
    let args = [
        "--servers",
        &server.addr,
        "--ops",
        "300",
        "--no-preload",
        "--clients",
        "2",
        "--threads",
        "8",
        "--results-dir",
        results.path().to_str().unwrap(),
    ];
    loadgen(&args, Duration::from_secs(60));
    let v = only_result(results.path());
    assert_eq!(v["settings"]["threads"], 2, "{v}");
    assert_eq!(v["total"]["count"], 300, "{v}");
}

/// The server stops answering for 200 ms when request 1900 of 2000 arrives, about 50 ms
/// before the deadline. Latency counts from intended send times, so the stall is in the
/// percentiles; the ops due between the stall and the deadline go out late but are counted.
#[test]
fn open_loop_sees_a_server_stall_and_counts_the_ops_due_during_it() {
    let server = Canned::start(&["--stall-ms-at", "1900:200"]);
    let results = tempfile::tempdir().unwrap();
    // Requests: exists("/") before timing (no preload), then 2 sessions x 1000 ops due in 1 s.
    let args = [
        "--servers",
        &server.addr,
        "--rate",
        "2k",
        "--duration",
        "1s",
        "--clients",
        "2",
        "--pipeline",
        "16",
        "--no-preload",
        "--mix",
        "100r",
        "--results-dir",
        results.path().to_str().unwrap(),
    ];
    let out = loadgen(&args, Duration::from_secs(60));
    let v = only_result(results.path());
    let stall_us = 200_000;
    assert_eq!(v["total"]["count"], 2000, "ops due before the deadline were dropped: {v}");
    assert_eq!(v["total"]["errors"], 0, "{v}");
    assert!(v["total"]["max_us"].as_u64().unwrap() >= stall_us, "{v}");
    // The 100 ops due from the stall to the deadline all waited for its end (>= 150 ms).
    assert!(v["total"]["p99_9_us"].as_u64().unwrap() >= 150_000, "{v}");
    let o = &v["open_loop"];
    assert_eq!(o["offered_ops_s"], 2000.0, "{v}");
    assert!(o["achieved_ops_s"].as_f64().unwrap() > 0.0, "{v}");
    // 16 per session in flight at the stall, the rest of the due ops queued behind them.
    assert!(o["send_lag_max_us"].as_u64().unwrap() >= 100_000, "{v}");
    assert_eq!(o["unsent_ops"], 0, "{v}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("open loop: offered 2000 ops/s, achieved"), "{stdout}");
}

#[test]
fn closed_loop_results_have_no_open_loop_section() {
    let server = Canned::start(&[]);
    let results = tempfile::tempdir().unwrap();
    let args =
        ["--servers", &server.addr, "--ops", "500", "--no-preload", "--results-dir", results.path().to_str().unwrap()];
    let out = loadgen(&args, Duration::from_secs(60));
    assert!(only_result(results.path()).get("open_loop").is_none());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("open loop:"));
}

/// The results record what a run needs to be reproduced and judged: loadgen's commit, the
/// target's kind, mode and settings, the server's CPU time and CPUs, the load around the run.
#[test]
fn results_record_the_server_cpu_pinning_and_load() {
    let server = Canned::start(&["--value-size", "10"]);
    let pid = server.child.id();
    let results = tempfile::tempdir().unwrap();
    let pid_arg = pid.to_string();
    let args = [
        "--servers",
        &server.addr,
        "--ops",
        "5000",
        "--keys",
        "100",
        "--server-pid",
        &pid_arg,
        "--results-dir",
        results.path().to_str().unwrap(),
    ];
    let out = loadgen(&args, Duration::from_secs(60));
    let v = only_result(results.path());
    assert!(!v["loadgen_git_commit"].as_str().unwrap().is_empty(), "{v}");
    let t = &v["target"];
    assert_eq!(t["kind"], "canned", "{v}");
    assert!(t["git_commit"].is_null(), "{v}");
    assert_eq!(t["servers"][0]["addr"], server.addr.as_str(), "{v}");
    assert_eq!(t["servers"][0]["mode"], "standalone", "{v}");
    assert_eq!(t["servers"][0]["conf"]["cannedValueSize"], "10", "{v}");
    assert!(t["leader"].is_null(), "{v}");
    assert_eq!(v["cluster"], "1 node (standalone), canned", "{v}");
    let cpu = &v["server_cpu"];
    assert_eq!(cpu["per_server"][0]["pid"], pid, "{v}");
    assert!(cpu["per_server"][0]["cpu_s"].as_f64().unwrap() >= 0.0, "{v}");
    assert!(!cpu["per_server"][0]["cpus_allowed"].as_str().unwrap().is_empty(), "{v}");
    assert!(cpu["total_cpu_s"].as_f64().unwrap() >= 0.0, "{v}");
    for when in ["before", "after"] {
        let load = v["load_average"][when].as_array().unwrap();
        assert_eq!(load.len(), 3, "{v}");
        assert!(load.iter().all(|l| l.as_f64().unwrap() >= 0.0), "{v}");
    }
    assert!(!v["pinning"]["loadgen_cpus_allowed"].as_str().unwrap().is_empty(), "{v}");
    assert_eq!(v["pinning"]["servers"][0]["pid"], pid, "{v}");
    // Every request wakes the canned server at least once now and then, and each loadgen
    // session blocks on its replies: both switch, and both are counted per reply.
    let switches = &v["context_switches"];
    assert_eq!(switches["per_server"][0]["pid"], pid, "{v}");
    assert!(switches["server_voluntary"].as_u64().unwrap() > 0, "{v}");
    assert!(switches["server_per_op"].as_f64().unwrap() > 0.0, "{v}");
    assert!(switches["loadgen_voluntary"].as_u64().unwrap() > 0, "{v}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("server CPU: ") && stdout.contains(&format!("(pids {pid})")), "{stdout}");
    assert!(stdout.contains("context switches per op: server "), "{stdout}");
}

#[test]
fn without_server_pids_server_cpu_is_null_and_pinning_still_recorded() {
    let server = Canned::start(&[]);
    let results = tempfile::tempdir().unwrap();
    let args =
        ["--servers", &server.addr, "--ops", "500", "--no-preload", "--results-dir", results.path().to_str().unwrap()];
    let out = loadgen(&args, Duration::from_secs(60));
    let v = only_result(results.path());
    assert!(v["server_cpu"].is_null(), "{v}");
    assert!(v["context_switches"]["server_per_op"].is_null(), "{v}");
    assert_eq!(v["pinning"]["servers"], serde_json::json!([]), "{v}");
    assert!(!v["pinning"]["loadgen_cpus_allowed"].as_str().unwrap().is_empty(), "{v}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("server CPU:"));
}

#[test]
fn a_server_pid_that_is_no_process_fails_before_the_run() {
    let server = Canned::start(&[]);
    let results = tempfile::tempdir().unwrap();
    let args = [
        "--servers",
        &server.addr,
        "--ops",
        "500",
        "--server-pid",
        "999999999",
        "--results-dir",
        results.path().to_str().unwrap(),
    ];
    let out = common::loadgen(&args, Duration::from_secs(60));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--server-pid 999999999: no such process"), "{stderr}");
    assert!(!stderr.contains("loadgen: running"), "the run started: {stderr}");
    assert!(!results.path().join(env!("CARGO_PKG_VERSION")).exists(), "a result was written");
    let bad = common::loadgen(&["--servers", &server.addr, "--server-pid", "12x"], Duration::from_secs(60));
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a process id"));
}
