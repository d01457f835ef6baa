//! The real loadgen binary against a real warren: a small run leaves the table on stdout and a
//! parseable JSON with the right op counts; an unreachable server fails fast with a clear
//! message. Throughput and latency numbers are never asserted.
//!
//! The warren binary is $WARREN_BIN, else <workspace>/target/release/warren (the suite runs
//! after `cargo build --release --workspace --bins`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{loadgen, LOADGEN};

fn warren_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WARREN_BIN") {
        return PathBuf::from(p);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("loadgen sits in the workspace");
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace.join("target"));
    let p = target.join("release").join("warren");
    assert!(
        p.is_file(),
        "no warren at {}: run `cargo build --release --workspace --bins` or set WARREN_BIN",
        p.display()
    );
    p
}

/// A warren started by the test, killed on drop.
struct Warren {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Warren {
    fn start() -> Warren {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(warren_bin())
            .args(["start", "--port", &port.to_string(), "--cores", "1", "--data-dir"])
            .arg(dir.path().join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn warren");
        let mut w = Warren { child, addr: ([127, 0, 0, 1], port).into(), _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(w.child.try_wait().unwrap().is_none(), "warren exited during start-up");
            if ruok(w.addr) {
                return w;
            }
            assert!(Instant::now() < deadline, "warren not ready within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Warren {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ruok(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut out = String::new();
    s.write_all(b"ruok").is_ok() && s.read_to_string(&mut out).is_ok() && out.trim() == "imok"
}

/// The single JSON result under `<dir>/<version>/`, after checking that the histogram log
/// holds a tagged histogram per op and the percentile .hgrm files it lists are there and end
/// with a HdrHistogram footer.
fn only_result(dir: &Path) -> serde_json::Value {
    let version_dir = dir.join(env!("CARGO_PKG_VERSION"));
    let files: Vec<_> = std::fs::read_dir(&version_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", version_dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    let json: Vec<_> = files.iter().filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json")).collect();
    assert_eq!(json.len(), 1, "{files:?}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(json[0]).unwrap()).expect("JSON");
    let hgrm = v["hgrm"].as_object().expect("hgrm list");
    assert!(hgrm.contains_key("total"), "{v}");
    for op in v["ops"].as_object().unwrap().keys() {
        assert!(hgrm.contains_key(op), "no hgrm for {op}: {v}");
    }
    let log = v["histogram_log"].as_str().expect("histogram_log named in the JSON");
    let log_text = std::fs::read_to_string(version_dir.join(log)).expect("histogram log written");
    for op in hgrm.keys() {
        assert!(log_text.contains(&format!("Tag={op},")), "no {op} histogram in {log}:\n{log_text}");
    }
    assert_eq!(files.len(), 2 + hgrm.len(), "{files:?}");
    for file in hgrm.values() {
        let text = std::fs::read_to_string(version_dir.join(file.as_str().unwrap())).unwrap();
        assert!(text.trim_start().starts_with("Value"), "{file}:\n{text}");
        assert!(text.contains("#[Buckets ="), "{file}:\n{text}");
    }
    v
}

fn check_run(out: &Output, results: &Path, ops: u64, kinds: &[&str]) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "loadgen failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    assert!(stdout.contains("p99.99(µs)"), "no table header:\n{stdout}");
    for kind in kinds {
        assert!(stdout.lines().any(|l| l.starts_with(kind)), "no {kind} row:\n{stdout}");
    }
    assert!(stdout.lines().any(|l| l.starts_with("total")), "no total row:\n{stdout}");
    let v = only_result(results);
    assert_eq!(v["settings"]["ops"], ops);
    assert_eq!(v["total"]["count"], ops);
    assert_eq!(v["interrupted"], false);
    let per_kind: u64 = v["ops"].as_object().unwrap().values().map(|o| o["count"].as_u64().unwrap()).sum();
    assert_eq!(per_kind, ops);
    for kind in kinds {
        assert!(v["ops"][kind]["count"].as_u64().unwrap() > 0, "{kind} never ran: {v}");
        assert!(v["ops"][kind]["p99_us"].as_u64().is_some());
    }
    v
}

#[test]
fn run_against_a_started_warren() {
    let w = Warren::start();
    let results = tempfile::tempdir().unwrap();
    let servers = w.addr.to_string();
    let args = [
        "--ops",
        "2000",
        "--mix",
        "90r10w",
        "--servers",
        &servers,
        "--clients",
        "4",
        "--keys",
        "500",
        "--seed",
        "7",
        "--results-dir",
        results.path().to_str().unwrap(),
    ];
    let out = loadgen(&args, Duration::from_secs(120));
    let v = check_run(&out, results.path(), 2000, &["getData", "setData"]);
    assert_eq!(v["settings"]["mix"], "90r10w");
    assert_eq!(v["settings"]["seed"], 7);
    assert_eq!(v["settings"]["local_cluster"], false);
    assert_eq!(v["total"]["errors"], 0, "{v}");
    assert!(v["target"]["version"].as_str().unwrap().contains("warren"), "{v}");
    check_warren_target(&v);
    // Not started by loadgen and no --server-pid: its CPU time is unknown.
    assert!(v["server_cpu"].is_null(), "{v}");
}

/// The target section of a run against a single warren: its kind, commit, mode and settings.
fn check_warren_target(v: &serde_json::Value) {
    let t = &v["target"];
    assert_eq!(t["kind"], "warren", "{v}");
    assert!(!t["git_commit"].as_str().unwrap().is_empty(), "{v}");
    assert_eq!(t["servers"][0]["mode"], "standalone", "{v}");
    check_warren_conf(v, 0);
    assert!(t["leader"].is_null(), "{v}");
    assert_eq!(v["cluster"], "1 node (standalone), warren", "{v}");
    assert!(!v["loadgen_git_commit"].as_str().unwrap().is_empty(), "{v}");
}

/// The target section of a run against a 3-node warren cluster: one leader, two followers.
fn check_warren_cluster_target(v: &serde_json::Value) {
    let t = &v["target"];
    assert_eq!(t["kind"], "warren", "{v}");
    assert_eq!(t["nodes"], 3, "{v}");
    let modes: Vec<&str> = (0..3).map(|i| t["servers"][i]["mode"].as_str().unwrap()).collect();
    assert_eq!(modes.iter().filter(|m| **m == "leader").count(), 1, "{modes:?}");
    assert_eq!(modes.iter().filter(|m| **m == "follower").count(), 2, "{modes:?}");
    let leader = modes.iter().position(|m| *m == "leader").unwrap();
    assert_eq!(t["leader"], t["servers"][leader]["addr"], "{v}");
    for node in 0..3 {
        check_warren_conf(v, node);
    }
    assert_eq!(v["cluster"], "3 nodes: 1 leader, 2 followers, warren", "{v}");
}

fn check_warren_conf(v: &serde_json::Value, node: usize) {
    let conf = &v["target"]["servers"][node]["conf"];
    assert!(conf["cores"].as_str().unwrap().parse::<u32>().unwrap() >= 1, "{v}");
    assert!(conf["shards"].as_str().unwrap().parse::<u32>().unwrap() >= 1, "{v}");
}

#[test]
fn extended_mix_counts_every_kind() {
    let w = Warren::start();
    let results = tempfile::tempdir().unwrap();
    let servers = w.addr.to_string();
    let args = [
        "--ops",
        "2k",
        "--mix",
        "40r20w20c20d",
        "--servers",
        &servers,
        "--clients",
        "2",
        "--keys",
        "100",
        "--results-dir",
        results.path().to_str().unwrap(),
    ];
    let out = loadgen(&args, Duration::from_secs(120));
    let v = check_run(&out, results.path(), 2000, &["getData", "setData", "create", "delete"]);
    // Creates are session-unique and never fail; deletes without a prior create of the same
    // session fail with NONODE, and every failure is accounted to a code.
    assert_eq!(v["ops"]["create"]["errors"], 0, "{v}");
    let delete = &v["ops"]["delete"];
    let by_code: u64 = delete["errors_by_code"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(by_code, delete["errors"].as_u64().unwrap());
}

/// Deletes with nothing of the session's own to delete all fail (NONODE): throughput counts
/// the reads alone, and the errors are counted, rated and timed apart.
#[test]
fn errors_are_counted_apart_from_throughput() {
    let w = Warren::start();
    let results = tempfile::tempdir().unwrap();
    let servers = w.addr.to_string();
    let dir = results.path().to_str().unwrap();
    let args = [
        "--ops",
        "2000",
        "--mix",
        "50r50d",
        "--servers",
        &servers,
        "--clients",
        "2",
        "--keys",
        "100",
        "--results-dir",
        dir,
    ];
    let out = loadgen(&args, Duration::from_secs(120));
    let v = check_run(&out, results.path(), 2000, &["getData", "delete"]);
    assert_eq!(v["throughput_of"], "successes");
    assert_eq!(v["latency_of"], "successes");
    let elapsed = v["elapsed_s"].as_f64().unwrap();
    let (reads, deletes, total) = (&v["ops"]["getData"], &v["ops"]["delete"], &v["total"]);
    let n = |o: &serde_json::Value, f: &str| o[f].as_u64().unwrap_or_else(|| panic!("no {f}: {o}"));
    assert_eq!(n(reads, "errors"), 0, "{v}");
    assert_eq!(n(deletes, "successes"), 0, "{v}");
    assert_eq!(n(deletes, "errors"), n(deletes, "count"), "{v}");
    assert_eq!(deletes["errors_by_code"]["NONODE(-101)"], deletes["count"], "{v}");
    assert_eq!(n(total, "successes"), n(reads, "count"), "{v}");
    assert_eq!(n(total, "errors"), n(deletes, "count"), "{v}");
    let rate = |o: &serde_json::Value, f: &str| o[f].as_f64().unwrap_or_else(|| panic!("no {f}: {o}"));
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.max(1.0);
    assert!(close(rate(total, "throughput_ops_s"), n(reads, "count") as f64 / elapsed), "{v}");
    assert!(close(rate(total, "error_rate_ops_s"), n(deletes, "count") as f64 / elapsed), "{v}");
    assert_eq!(rate(deletes, "throughput_ops_s"), 0.0, "{v}");
    assert!(close(rate(&deletes["error_rate_by_code_ops_s"], "NONODE(-101)"), rate(deletes, "error_rate_ops_s")));
    // Latencies: the errors' in their own histogram, none in the success percentiles.
    assert_eq!(n(&deletes["error_latency"], "count"), n(deletes, "count"), "{v}");
    assert!(n(&deletes["error_latency"], "max_us") > 0, "{v}");
    assert_eq!(n(deletes, "max_us"), 0, "{v}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("delete errors: NONODE(-101) x"), "{stdout}");
    assert!(stdout.contains("delete error latency(µs): p50"), "{stdout}");
}

#[test]
fn watch_mix_counts_notifications() {
    let w = Warren::start();
    let results = tempfile::tempdir().unwrap();
    let servers = w.addr.to_string();
    let args = [
        "--ops",
        "2000",
        "--mix",
        "50x50w",
        "--servers",
        &servers,
        "--clients",
        "4",
        "--keys",
        "20",
        "--seed",
        "3",
        "--results-dir",
        results.path().to_str().unwrap(),
    ];
    let out = loadgen(&args, Duration::from_secs(120));
    let v = check_run(&out, results.path(), 2000, &["getWatch", "setData"]);
    assert_eq!(v["settings"]["mix"], "50w50x");
    assert_eq!(v["total"]["errors"], 0, "{v}");
    // ~1000 setData over 20 keys that 4 sessions keep watching: some watches must fire, and
    // their notifications are counted rather than breaking the reply order.
    let notified = v["watch_notifications"].as_u64().expect("watch_notifications in the JSON");
    assert!(notified > 0, "no notification delivered: {v}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("watch notifications received: {notified}")), "{stdout}");
}

#[test]
fn without_servers_it_starts_and_stops_its_own_warren() {
    let results = tempfile::tempdir().unwrap();
    let warren = warren_bin();
    let mut child = Command::new(LOADGEN)
        .args(["--ops", "2000", "--keys", "200", "--clients", "2", "--results-dir"])
        .arg(results.path())
        .env("WARREN_BIN", &warren)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "loadgen did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("a 3-node cluster"), "{stderr}");
    let v = check_run(&out, results.path(), 2000, &["getData", "setData"]);
    assert_eq!(v["settings"]["local_cluster"], true);
    assert_eq!(v["settings"]["servers"].as_array().unwrap().len(), 3, "{v}");
    check_warren_cluster_target(&v);
    // loadgen started the warren nodes, so it measured their CPU time itself.
    let cpu = &v["server_cpu"];
    for node in 0..3 {
        assert!(cpu["per_server"][node]["pid"].as_u64().unwrap() > 0, "{v}");
        assert!(cpu["per_server"][node]["cpu_s"].as_f64().unwrap() >= 0.0, "{v}");
        assert_eq!(v["pinning"]["servers"][node]["pid"], cpu["per_server"][node]["pid"], "{v}");
    }
    assert!(String::from_utf8_lossy(&out.stdout).contains("server CPU: "));
    // The local warren nodes are gone: their ports no longer answer.
    for server in v["settings"]["servers"].as_array().unwrap() {
        let addr: SocketAddr = server.as_str().unwrap().parse().unwrap();
        assert!(!ruok(addr), "the local warren on {addr} is still running");
    }
}

#[test]
fn unreachable_server_fails_fast_with_a_clear_message() {
    let results = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let out = loadgen(
        &["--ops", "2000", "--servers", "127.0.0.1:1", "--results-dir", results.path().to_str().unwrap()],
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "loadgen succeeded against 127.0.0.1:1");
    assert!(stderr.contains("cannot connect to 127.0.0.1:1"), "{stderr}");
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(!results.path().join(env!("CARGO_PKG_VERSION")).exists(), "a failed run wrote results");
}

#[test]
fn bad_arguments_are_refused() {
    for (args, why) in [
        (&["--ops", "1x"][..], "unknown suffix"),
        (&["--mix", "90r"][..], "sum to 90"),
        (&["--servers", "localhost"][..], "has no port"),
        (&["--pipeline", "0"][..], "--pipeline"),
    ] {
        let out = loadgen(args, Duration::from_secs(10));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    }
}

/// Both binaries name the commit they were built from, the same way ("-dirty" or not).
#[test]
fn version_names_the_git_commit() {
    let out = loadgen(&["--version"], Duration::from_secs(10));
    assert!(out.status.success());
    let loadgen_version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let commit = loadgen_version
        .strip_prefix(&format!("loadgen {} (commit ", env!("CARGO_PKG_VERSION")))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{loadgen_version:?}"));
    assert!(!commit.is_empty(), "{loadgen_version:?}");
    let warren = Command::new(warren_bin()).arg("--version").output().unwrap();
    assert!(warren.status.success());
    let warren_version = String::from_utf8_lossy(&warren.stdout);
    assert!(warren_version.starts_with(&format!("warren {} (commit ", env!("CARGO_PKG_VERSION"))), "{warren_version}");
}

#[test]
fn help_shows_examples() {
    let out = loadgen(&["--help"], Duration::from_secs(10));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.contains("loadgen --ops 1M --mix 90r10w"), "{stdout}");
    assert!(stdout.contains("80r10w5c5d"), "{stdout}");
    assert!(stdout.contains("x = getData with watch=true"), "{stdout}");
}

/// Spawns loadgen and returns once it says "running", with a thread collecting its stderr.
fn spawn_until_running(args: &[&str]) -> (Child, std::thread::JoinHandle<String>) {
    use std::io::BufRead;
    let mut child = Command::new(LOADGEN)
        .args(args)
        .env("WARREN_BIN", warren_bin())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap_or_default();
            if line.contains("loadgen: running") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    if rx.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = child.kill();
        panic!("loadgen never started running; stderr:\n{}", reader.join().unwrap());
    }
    (child, reader)
}

/// Waits (bounded) for loadgen to exit; returns its output and its whole stderr.
fn wait_bounded(mut child: Child, reader: std::thread::JoinHandle<String>, limit: Duration) -> (Output, String) {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("loadgen did not exit within {limit:?}; stderr:\n{}", reader.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (out, reader.join().unwrap())
}

#[test]
fn ctrl_c_stops_the_run_reports_and_cleans_up() {
    let results = tempfile::tempdir().unwrap();
    let dir = results.path().to_str().unwrap();
    // Far more ops than can finish before the interrupt; the run is bounded by it anyway.
    let (child, reader) =
        spawn_until_running(&["--ops", "100M", "--keys", "200", "--clients", "2", "--results-dir", dir]);
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on the pid of our own unreaped child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let (out, stderr) = wait_bounded(child, reader, Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "stderr:\n{stderr}");
    assert!(stderr.contains("interrupted after"), "{stderr}");
    assert!(stdout.lines().any(|l| l.starts_with("total")), "no table after Ctrl-C:\n{stdout}");
    let v = only_result(results.path());
    assert_eq!(v["interrupted"], true);
    assert!(v["total"]["count"].as_u64().unwrap() < 100_000_000);
    let addr: SocketAddr = v["settings"]["servers"][0].as_str().unwrap().parse().unwrap();
    assert!(!ruok(addr), "the local warren on {addr} survived Ctrl-C");
}

#[test]
fn server_dying_mid_run_fails_the_run_clearly() {
    let mut w = Warren::start();
    let results = tempfile::tempdir().unwrap();
    let servers = w.addr.to_string();
    let dir = results.path().to_str().unwrap();
    let (child, reader) =
        spawn_until_running(&["--ops", "100M", "--servers", &servers, "--keys", "100", "--results-dir", dir]);
    std::thread::sleep(Duration::from_millis(300));
    let _ = w.child.kill();
    let _ = w.child.wait();
    let (out, stderr) = wait_bounded(child, reader, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(stderr.contains("loadgen: error:") && stderr.contains(&servers), "{stderr}");
    assert!(!stderr.contains("interrupted"), "a dead server is an error, not an interrupt:\n{stderr}");
}

#[test]
fn compare_two_runs() {
    let w = Warren::start();
    let results = tempfile::tempdir().unwrap();
    let servers = w.addr.to_string();
    let dir = results.path().to_str().unwrap();
    let args = ["--ops", "1000", "--servers", &servers, "--clients", "2", "--keys", "100", "--results-dir", dir];
    let out = loadgen(&args, Duration::from_secs(120));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let a = std::fs::read_dir(results.path().join(env!("CARGO_PKG_VERSION")))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
        .unwrap();
    // B = A with half the throughput everywhere: a regression whatever the machine did.
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&a).unwrap()).unwrap();
    let halve = |o: &mut serde_json::Value| {
        let t = o["throughput_ops_s"].as_f64().unwrap();
        o["throughput_ops_s"] = serde_json::json!(t / 2.0);
    };
    halve(&mut v["total"]);
    halve(&mut v["ops"]["getData"]);
    let b = results.path().join("b.json");
    std::fs::write(&b, serde_json::to_string(&v).unwrap()).unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());

    let same = loadgen(&["compare", a, a, "--fail-on-regression", "0"], Duration::from_secs(10));
    let table = String::from_utf8_lossy(&same.stdout);
    assert!(same.status.success(), "{table}");
    assert!(table.contains("getData") && table.contains("total") && table.contains("+0.0%"), "{table}");

    let worse = loadgen(&["compare", a, b, "--fail-on-regression", "10"], Duration::from_secs(10));
    let table = String::from_utf8_lossy(&worse.stdout);
    assert_eq!(worse.status.code(), Some(1), "{table}");
    assert!(table.contains("-50.0% !"), "{table}");
    assert!(table.contains("regressions:"), "{table}");

    // Without --fail-on-regression the same comparison only reports.
    let report = loadgen(&["compare", a, b], Duration::from_secs(10));
    assert!(report.status.success());

    let html = results.path().join("cmp.html");
    let plotted = loadgen(&["compare", a, b, "--plot", html.to_str().unwrap()], Duration::from_secs(10));
    assert!(plotted.status.success(), "{}", String::from_utf8_lossy(&plotted.stderr));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.matches("<polyline").count() == 2, "{page}");

    let bad = loadgen(&["compare", a, "/nonexistent/x.json"], Duration::from_secs(10));
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cannot read /nonexistent/x.json"));
}

#[test]
fn duration_and_warmup() {
    let w = Warren::start();
    let results = tempfile::tempdir().unwrap();
    let servers = w.addr.to_string();
    let dir = results.path().to_str().unwrap();
    let args = [
        "--duration",
        "1s",
        "--warmup",
        "500",
        "--mix",
        "40r20w20c20d",
        "--servers",
        &servers,
        "--clients",
        "2",
        "--keys",
        "100",
        "--results-dir",
        dir,
    ];
    let start = Instant::now();
    let out = loadgen(&args, Duration::from_secs(60));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(start.elapsed() >= Duration::from_secs(1));
    let v = only_result(results.path());
    assert_eq!(v["settings"]["ops"], serde_json::Value::Null);
    assert_eq!(v["settings"]["duration_s"], 1.0);
    assert_eq!(v["settings"]["warmup_ops"], 500);
    assert!(v["total"]["count"].as_u64().unwrap() > 0);
    // The warmup's creates use their own names, so the measured creates never collide.
    assert_eq!(v["ops"]["create"]["errors"], 0, "{v}");
}

/// (tag, start s, count) of every interval of an HdrHistogram interval log.
fn intervals(log: &[u8]) -> Vec<(String, f64, u64)> {
    use base64::Engine as _;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;
    let mut found = Vec::new();
    for entry in IntervalLogIterator::new(log) {
        if let LogEntry::Interval(h) = entry.expect("the interval log parses") {
            let bytes = base64::engine::general_purpose::STANDARD.decode(h.encoded_histogram()).unwrap();
            let hist: hdrhistogram::Histogram<u64> = Deserializer::new().deserialize(&mut bytes.as_slice()).unwrap();
            let tag = h.tag().expect("every interval is tagged").as_str().to_string();
            found.push((tag, h.start_timestamp().as_secs_f64(), hist.len()));
        }
    }
    found
}

/// A 3 s run: the .hgrm interval log has a histogram per second per op type and total, and
/// each tag's counts add up to its op count.
#[test]
fn interval_log_has_one_histogram_per_second() {
    let w = Warren::start();
    let results = tempfile::tempdir().unwrap();
    let servers = w.addr.to_string();
    let dir = results.path().to_str().unwrap();
    let args = [
        "--duration",
        "3s",
        "--mix",
        "90r10w",
        "--servers",
        &servers,
        "--clients",
        "2",
        "--keys",
        "100",
        "--results-dir",
        dir,
    ];
    let out = loadgen(&args, Duration::from_secs(60));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = only_result(results.path());
    assert_eq!(v["total"]["errors"], 0, "{v}");
    let version_dir = results.path().join(env!("CARGO_PKG_VERSION"));
    let log = std::fs::read(version_dir.join(v["histogram_log"].as_str().unwrap())).unwrap();
    let text = String::from_utf8_lossy(&log);
    assert!(text.contains("#[StartTime: ") && text.contains("#[BaseTime: "), "{text}");
    assert!(text.contains("microseconds") && text.contains("\"StartTimestamp\",\"Interval_Length\""), "{text}");
    let found = intervals(&log);
    for (tag, stats) in [("getData", &v["ops"]["getData"]), ("setData", &v["ops"]["setData"]), ("total", &v["total"])] {
        let mine: Vec<_> = found.iter().filter(|f| f.0 == tag).collect();
        assert!(mine.len() >= 3, "{tag}: {mine:?}");
        let starts: Vec<f64> = mine.iter().map(|f| f.1).collect();
        assert_eq!(starts, (0..mine.len()).map(|i| i as f64).collect::<Vec<_>>(), "{tag}: one per second in order");
        assert_eq!(mine.iter().map(|f| f.2).sum::<u64>(), stats["count"].as_u64().unwrap(), "{tag}: {mine:?}");
    }
}

#[test]
fn open_loop_paces_to_the_rate() {
    let w = Warren::start();
    let results = tempfile::tempdir().unwrap();
    let servers = w.addr.to_string();
    let dir = results.path().to_str().unwrap();
    let args = [
        "--rate",
        "2k",
        "--ops",
        "1000",
        "--servers",
        &servers,
        "--clients",
        "2",
        "--keys",
        "100",
        "--results-dir",
        dir,
    ];
    let out = loadgen(&args, Duration::from_secs(60));
    let v = check_run(&out, results.path(), 1000, &["getData"]);
    assert_eq!(v["settings"]["rate"], 2000);
    // Each session's last op is due 499 intervals of 1 ms after the start: pacing, not speed.
    assert!(v["elapsed_s"].as_f64().unwrap() >= 0.45, "{v}");
}
