//! `warren start` refuses bad settings with a clear message and a non-zero exit, never a
//! hang: a busy port, a data dir it cannot create, a data dir in use or made with other
//! settings, inconsistent timeouts, unknown config keys.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use warren_tests::{free_port, skip_if_external, warren_bin, WarrenOpts, WarrenProcess};

/// Runs `warren start ARGS` and returns (exit code, stderr); fails the test if it runs past
/// `within` (a refusal must be quick).
fn refused(args: &[&str], within: Duration) -> (i32, String) {
    let mut child = Command::new(warren_bin())
        .arg("start")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("warren starts");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait works") {
            let mut stderr = String::new();
            use std::io::Read;
            child.stderr.take().expect("piped").read_to_string(&mut stderr).expect("stderr readable");
            return (status.code().unwrap_or(-1), stderr);
        }
        if started.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            panic!("warren {args:?} did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn dir_arg(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn busy_port_is_a_clear_error() {
    if skip_if_external("busy_port_is_a_clear_error") {
        return;
    }
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = holder.local_addr().expect("addr").port().to_string();
    let data = tempfile::tempdir().expect("tempdir");
    let (code, stderr) = refused(&["--port", &port, "--data-dir", &dir_arg(data.path())], Duration::from_secs(20));
    assert_ne!(code, 0);
    assert!(stderr.contains("cannot listen on") && stderr.contains("in use"), "stderr: {stderr}");
}

#[test]
fn uncreatable_data_dir_is_a_clear_error() {
    if skip_if_external("uncreatable_data_dir_is_a_clear_error") {
        return;
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    let file = scratch.path().join("a-file");
    std::fs::write(&file, b"not a directory").expect("write");
    let port = free_port().to_string();
    let (code, stderr) =
        refused(&["--port", &port, "--data-dir", &dir_arg(&file.join("data"))], Duration::from_secs(10));
    assert_ne!(code, 0);
    assert!(stderr.contains("cannot create data dir"), "stderr: {stderr}");
}

#[test]
fn inconsistent_settings_are_refused() {
    if skip_if_external("inconsistent_settings_are_refused") {
        return;
    }
    let data = tempfile::tempdir().expect("tempdir");
    let port = free_port().to_string();
    let dir = dir_arg(data.path());
    let (code, stderr) = refused(
        &["--port", &port, "--data-dir", &dir, "--min-session-timeout", "5000", "--max-session-timeout", "1000"],
        Duration::from_secs(10),
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("session timeouts"), "stderr: {stderr}");

    let config = data.path().join("warren.toml");
    std::fs::write(&config, "prot = 2181\n").expect("write config");
    let (code, stderr) = refused(&["--config", &dir_arg(&config)], Duration::from_secs(10));
    assert_ne!(code, 0);
    assert!(stderr.contains("invalid config file") && stderr.contains("prot"), "stderr: {stderr}");
}

#[test]
fn data_dir_in_use_or_made_with_other_shards_is_refused() {
    if skip_if_external("data_dir_in_use_or_made_with_other_shards_is_refused") {
        return;
    }
    let data = tempfile::tempdir().expect("tempdir");
    let mut running = WarrenProcess::start_with_data_dir(WarrenOpts::default().cores(1).shards(4), data.path());
    let dir = dir_arg(data.path());
    let port = free_port().to_string();
    let (code, stderr) =
        refused(&["--port", &port, "--data-dir", &dir, "--cores", "1", "--shards", "4"], Duration::from_secs(10));
    assert_ne!(code, 0);
    assert!(stderr.contains("in use by another warren process"), "stderr: {stderr}");

    running.kill9();
    let port = free_port().to_string();
    let (code, stderr) =
        refused(&["--port", &port, "--data-dir", &dir, "--cores", "1", "--shards", "5"], Duration::from_secs(10));
    assert_ne!(code, 0);
    assert!(stderr.contains("different settings") && stderr.contains("shards = 4"), "stderr: {stderr}");
}

/// Runs `warren wal-repair ARGS`; returns (exit code, stdout + stderr).
fn repair(args: &[&str]) -> (i32, String) {
    let out = Command::new(warren_bin()).arg("wal-repair").args(args).output().expect("warren runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn wal_repair_refuses_a_running_node_and_a_dir_that_is_no_data_dir() {
    if skip_if_external("wal_repair_refuses_a_running_node_and_a_dir_that_is_no_data_dir") {
        return;
    }
    let empty = tempfile::tempdir().expect("tempdir");
    let (code, text) = repair(&["--data-dir", &dir_arg(empty.path())]);
    assert_ne!(code, 0);
    assert!(text.contains("not a warren data dir"), "{text}");

    let data = tempfile::tempdir().expect("tempdir");
    let mut running = WarrenProcess::start_with_data_dir(WarrenOpts::default(), data.path());
    let (code, text) = repair(&["--data-dir", &dir_arg(data.path())]);
    assert_ne!(code, 0);
    assert!(text.contains("in use by another warren process"), "{text}");
    running.kill9();
    let (code, text) = repair(&["--data-dir", &dir_arg(data.path())]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("core 0: log intact"), "{text}");
}

#[test]
fn wal_without_warren_meta_is_refused() {
    if skip_if_external("wal_without_warren_meta_is_refused") {
        return;
    }
    let data = tempfile::tempdir().expect("tempdir");
    let mut running = WarrenProcess::start_with_data_dir(WarrenOpts::default(), data.path());
    running.kill9();
    std::fs::remove_file(data.path().join("warren.meta")).expect("warren.meta was written");
    let port = free_port().to_string();
    let (code, stderr) = refused(&["--port", &port, "--data-dir", &dir_arg(data.path())], Duration::from_secs(10));
    assert_ne!(code, 0);
    assert!(stderr.contains("has WAL segments") && stderr.contains("no warren.meta"), "stderr: {stderr}");
}
