//! `loadgen compare --fail-on-regression` on result files written by the test: runs whose
//! settings differ are refused with exit 2 (unless --allow-different-settings), a regression
//! between comparable runs exits 1, and comparable equal runs exit 0 without a warning.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};

mod common;

const WARNING: &str = "WARNING: these runs differ in settings";

/// A result as loadgen writes it, reduced to what compare reads.
fn result(clients: u64, ops_s: f64) -> Value {
    let stats = json!({"count": 10000, "throughput_ops_s": ops_s, "p50_us": 100, "p90_us": 200,
        "p99_us": 500, "p99_9_us": 900, "p99_99_us": 1000, "max_us": 2000});
    json!({
        "settings": {"mix": "90r10w", "ops": 10000, "clients": clients, "pipeline": 8, "rate": null,
            "value_size": 100, "keys": 10000, "key_distribution": "uniform", "zipf_exponent": null},
        "target": {"version": "warren 0.1.0", "nodes": 1},
        "machine": {"os": "linux", "arch": "x86_64", "cpus": 2, "cpu_model": "Test CPU", "kernel": "6.1.0"},
        "throughput_of": "successes",
        "total": stats,
        "ops": {"getData": stats},
    })
}

/// Writes runs `a` and `b` and runs `loadgen compare a.json b.json --fail-on-regression 5`
/// plus `extra`.
fn compare(dir: &Path, a: &Value, b: &Value, extra: &[&str]) -> Output {
    let (pa, pb) = (dir.join("a.json"), dir.join("b.json"));
    std::fs::write(&pa, a.to_string()).unwrap();
    std::fs::write(&pb, b.to_string()).unwrap();
    let mut args = vec!["compare", pa.to_str().unwrap(), pb.to_str().unwrap(), "--fail-on-regression", "5"];
    args.extend_from_slice(extra);
    common::loadgen(&args, Duration::from_secs(30))
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn different_settings_are_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = compare(dir.path(), &result(64, 1000.0), &result(16, 1000.0), &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains(WARNING), "{stderr}");
    assert!(stderr.contains("clients: A 64, B 16"), "{stderr}");
    assert!(stderr.contains("--allow-different-settings"), "{stderr}");
    assert!(!stdout.contains("regressions"), "{stdout}");
}

#[test]
fn allow_different_settings_compares_and_still_warns() {
    let dir = tempfile::tempdir().unwrap();
    let out = compare(dir.path(), &result(64, 1000.0), &result(16, 1000.0), &["--allow-different-settings"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains(WARNING), "{stderr}");
    assert!(stdout.starts_with(WARNING), "{stdout}");
    assert!(stdout.contains("clients: A 64, B 16"), "{stdout}");
    assert!(stdout.contains("ops/s"), "no table: {stdout}");
}

#[test]
fn same_settings_and_numbers_pass_without_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let out = compare(dir.path(), &result(16, 1000.0), &result(16, 1000.0), &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!stdout.contains("WARNING") && !stderr.contains("WARNING"), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("ops/s"), "no table: {stdout}");
}

#[test]
fn same_settings_and_a_throughput_drop_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let out = compare(dir.path(), &result(16, 1000.0), &result(16, 800.0), &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("regressions:") && stdout.contains("total ops/s"), "{stdout}");
    assert!(!stderr.contains("WARNING"), "{stderr}");
}
