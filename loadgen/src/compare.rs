//! `loadgen compare A B [C...]`: result JSONs side by side, every percentile and throughput
//! with its change relative to the first run, regressions past a threshold flagged. Works on
//! the JSON alone (serde_json::Value), so old results stay comparable as fields are added.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// (label, JSON field, whether higher is better).
const METRICS: [(&str, &str, bool); 7] = [
    ("ops/s", "throughput_ops_s", true),
    ("p50(µs)", "p50_us", false),
    ("p90(µs)", "p90_us", false),
    ("p99(µs)", "p99_us", false),
    ("p99.9(µs)", "p99_9_us", false),
    ("p99.99(µs)", "p99_99_us", false),
    ("max(µs)", "max_us", false),
];

/// A run to compare: where it came from and its JSON.
pub struct Run {
    pub path: PathBuf,
    pub json: Value,
}

/// Loads a result: a .json file, or a folder (e.g. results/0.1.0) whose newest run is taken
/// (run ids sort by time).
pub fn load(path: &Path) -> Result<Run> {
    let file = if path.is_dir() {
        let mut jsons: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
            .collect();
        jsons.sort();
        jsons.pop().with_context(|| format!("no result .json in {}", path.display()))?
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let json: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    if !json["total"].is_object() {
        bail!("{} is not a loadgen result (no \"total\")", file.display());
    }
    Ok(Run { path: file, json })
}

/// Relative change from `a` to `b` in percent; None when `a` is 0.
fn change_pct(a: f64, b: f64) -> Option<f64> {
    (a != 0.0).then(|| (b - a) / a * 100.0)
}

/// Whether a change is a regression past `threshold_pct`.
fn is_regression(change: f64, higher_is_better: bool, threshold_pct: f64) -> bool {
    if higher_is_better {
        change < -threshold_pct
    } else {
        change > threshold_pct
    }
}

/// The op names to compare: those of the first run in its order, then any new ones, then total.
fn op_names(runs: &[Run]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for r in runs {
        if let Some(ops) = r.json["ops"].as_object() {
            for k in ops.keys() {
                if !names.contains(k) {
                    names.push(k.clone());
                }
            }
        }
    }
    names.push("total".to_string());
    names
}

fn op_stats<'a>(run: &'a Run, op: &str) -> &'a Value {
    if op == "total" {
        &run.json["total"]
    } else {
        &run.json["ops"][op]
    }
}

/// The comparison table, and one line per regression past `threshold_pct`.
pub fn compare(runs: &[Run], threshold_pct: f64) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut regressions = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let s = &r.json["settings"];
        let _ = writeln!(
            out,
            "run {}: {} (target {}; mix {}, ops {}, clients {} x pipeline {})",
            label(i),
            r.path.display(),
            r.json["target"]["version"].as_str().unwrap_or("?"),
            s["mix"].as_str().unwrap_or("?"),
            s["ops"],
            s["clients"],
            s["pipeline"]
        );
        if r.json.get("throughput_of").is_none() {
            let _ = writeln!(out, "  (older result: its ops/s and latencies count error replies too)");
        }
    }
    for op in op_names(runs) {
        let _ = write!(out, "\n{op:<12} {:>12}", label(0));
        for i in 1..runs.len() {
            let _ = write!(out, " {:>12} {:>9}", label(i), "change");
        }
        out.push('\n');
        for (name, field, higher_is_better) in METRICS {
            let base = op_stats(&runs[0], &op)[field].as_f64();
            let _ = write!(out, "{name:<12} {:>12}", fmt_value(base));
            for (i, run) in runs.iter().enumerate().skip(1) {
                let v = op_stats(run, &op)[field].as_f64();
                let change = base.zip(v).and_then(|(a, b)| change_pct(a, b));
                let flag = match change {
                    Some(c) if is_regression(c, higher_is_better, threshold_pct) => {
                        regressions.push(format!(
                            "{op} {name}: {} -> {} ({c:+.1}%) in run {}",
                            fmt_value(base),
                            fmt_value(v),
                            label(i)
                        ));
                        " !"
                    }
                    _ => "",
                };
                let change = change.map(|c| format!("{c:+.1}%{flag}")).unwrap_or_else(|| "-".to_string());
                let _ = write!(out, " {:>12} {change:>9}", fmt_value(v));
            }
            out.push('\n');
        }
    }
    (out, regressions)
}

fn label(i: usize) -> String {
    char::from_u32('A' as u32 + i as u32).map(String::from).unwrap_or_else(|| format!("#{i}"))
}

fn fmt_value(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(ops_s: f64, p99: u64) -> Run {
        let stats = json!({"throughput_ops_s": ops_s, "p50_us": 100, "p90_us": 200, "p99_us": p99,
            "p99_9_us": 900, "p99_99_us": 1000, "max_us": 2000});
        Run {
            path: PathBuf::from("x.json"),
            json: json!({"settings": {"mix": "90r10w", "ops": 1000, "clients": 1, "pipeline": 1},
                "target": {"version": "v"}, "total": stats, "ops": {"getData": stats}}),
        }
    }

    #[test]
    fn older_results_are_marked_as_counting_errors() {
        let mut new = run(1000.0, 500);
        new.json["throughput_of"] = json!("successes");
        let (table, _) = compare(&[run(1000.0, 500), new], 10.0);
        assert_eq!(table.matches("older result").count(), 1, "{table}");
    }

    #[test]
    fn changes_and_regressions() {
        assert_eq!(change_pct(100.0, 110.0), Some(10.0));
        assert_eq!(change_pct(0.0, 5.0), None);
        assert!(is_regression(-20.0, true, 10.0));
        assert!(!is_regression(-5.0, true, 10.0));
        assert!(is_regression(20.0, false, 10.0));
        assert!(!is_regression(-20.0, false, 10.0));
    }

    #[test]
    fn compare_flags_slower_throughput_and_higher_latency() {
        let (table, regressions) = compare(&[run(1000.0, 500), run(800.0, 400)], 10.0);
        assert!(table.contains("-20.0% !"), "{table}");
        assert!(table.contains("-20.0%"), "{table}");
        // Throughput dropped for getData and total; p99 improved, so it is no regression.
        assert_eq!(regressions.len(), 2, "{regressions:?}");
        assert!(regressions.iter().all(|r| r.contains("ops/s")));
        let (_, none) = compare(&[run(1000.0, 500), run(1000.0, 520)], 10.0);
        assert!(none.is_empty());
    }
}
