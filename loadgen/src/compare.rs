//! `loadgen compare A B [C...]`: result JSONs side by side, every percentile and throughput
//! with its change relative to the first run, regressions past a threshold flagged. Works on
//! the JSON alone (serde_json::Value), so old results stay comparable as fields are added.
//! Runs whose settings, target kind or machine differ measure different things: those
//! differences are listed first, as a warning.

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

/// What a run's numbers depend on besides the speed of the server under test, each as (name,
/// how to read it from a result JSON; None = not recorded, as in results older than the field).
type Reader = fn(&Value) -> Option<String>;
const SHAPING: [(&str, Reader); 14] = [
    ("loop", loop_kind),
    ("mix", |j| recorded(&j["settings"]["mix"])),
    ("clients", |j| recorded(&j["settings"]["clients"])),
    ("pipeline", |j| recorded(&j["settings"]["pipeline"])),
    ("client threads", |j| recorded(&j["settings"]["threads"])),
    ("rate", rate),
    ("value_size", |j| recorded(&j["settings"]["value_size"])),
    ("keys", |j| recorded(&j["settings"]["keys"])),
    ("key_distribution", key_distribution),
    ("target.kind", target_kind),
    ("machine.cpus", |j| recorded(&j["machine"]["cpus"])),
    ("machine.cpu_model", |j| recorded(&j["machine"]["cpu_model"])),
    ("machine.kernel", |j| recorded(&j["machine"]["kernel"])),
    ("machine.arch", |j| recorded(&j["machine"]["arch"])),
];

/// First line of the block that lists the differences, on stderr and atop the table.
pub const WARNING_HEADER: &str = "WARNING: these runs differ in settings, so their numbers are not comparable:";

/// A JSON value as shown in a difference; null (or absent) is not recorded.
fn recorded(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Closed or open loop. Results record `rate` as null in a closed loop, so only an absent
/// field is unknown.
fn loop_kind(json: &Value) -> Option<String> {
    let rate = json["settings"].get("rate")?;
    Some(if rate.is_null() { "closed" } else { "open" }.to_string())
}

/// The open loop's rate, "none" in a closed loop (null), not recorded when absent.
fn rate(json: &Value) -> Option<String> {
    let rate = json["settings"].get("rate")?;
    Some(recorded(rate).unwrap_or_else(|| "none".to_string()))
}

/// The key distribution with its exponent when zipf: the exponent changes how hot the hot
/// keys are, so it is part of the distribution.
fn key_distribution(json: &Value) -> Option<String> {
    let distribution = recorded(&json["settings"]["key_distribution"])?;
    Some(match recorded(&json["settings"]["zipf_exponent"]) {
        Some(s) if distribution == "zipf" => format!("zipf s={s}"),
        _ => distribution,
    })
}

/// `target.kind` when the result records it, otherwise derived from `target.version` as the
/// results that record it do.
pub fn target_kind(json: &Value) -> Option<String> {
    if let Some(kind) = json["target"]["kind"].as_str() {
        return Some(kind.to_string());
    }
    json["target"]["version"].as_str().map(|v| kind_of_version(v).to_string())
}

/// warren, canned (loadgen's canned server), unknown (srvr gave no version) or zookeeper.
fn kind_of_version(version: &str) -> &'static str {
    // The canned server has answered "loadgen <v> canned-server"; "loadgen-canned..." is its
    // newer form.
    let canned_before = version.starts_with("loadgen ") && version.ends_with("canned-server");
    if version.to_ascii_lowercase().contains("warren") {
        "warren"
    } else if version.starts_with("loadgen-canned") || canned_before {
        "canned"
    } else if version.starts_with("unknown") {
        "unknown"
    } else {
        "zookeeper"
    }
}

/// One line per setting, target kind or machine property in which some run differs from the
/// first, e.g. `clients: A 64, C 16` (the first run, then every run that differs). A value
/// that one run did not record differs only from a recorded one: nothing says two unknowns
/// differ.
pub fn setting_differences(runs: &[Run]) -> Vec<String> {
    SHAPING
        .iter()
        .filter_map(|(name, read)| {
            let values: Vec<Option<String>> = runs.iter().map(|r| read(&r.json)).collect();
            difference_line(name, &values)
        })
        .collect()
}

fn difference_line(name: &str, values: &[Option<String>]) -> Option<String> {
    let base = values.first()?;
    let differing: Vec<usize> = (1..values.len()).filter(|&i| values[i] != *base).collect();
    if differing.is_empty() {
        return None;
    }
    let shown: Vec<String> = std::iter::once(0)
        .chain(differing)
        .map(|i| format!("{} {}", label(i), values[i].as_deref().unwrap_or("(not recorded)")))
        .collect();
    Some(format!("{name}: {}", shown.join(", ")))
}

/// The warning block listing `differences`; empty when there are none.
pub fn settings_warning(differences: &[String]) -> String {
    if differences.is_empty() {
        return String::new();
    }
    let mut out = format!("{WARNING_HEADER}\n");
    for d in differences {
        let _ = writeln!(out, "  {d}");
    }
    out
}

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
    let mut out = settings_warning(&setting_differences(runs));
    if !out.is_empty() {
        out.push('\n');
    }
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

    /// A closed-loop result with every field the difference check reads.
    fn shaped() -> Run {
        let mut r = run(1000.0, 500);
        r.json["settings"] = json!({"mix": "90r10w", "ops": 1000, "clients": 16, "pipeline": 8,
            "rate": null, "value_size": 100, "keys": 10000, "key_distribution": "uniform",
            "zipf_exponent": null});
        r.json["target"] = json!({"version": "warren 0.1.0", "nodes": 1});
        r.json["machine"] = json!({"os": "linux", "arch": "x86_64", "cpus": 8,
            "cpu_model": "Some CPU", "kernel": "6.1.0"});
        r
    }

    fn set(mut r: Run, pointer: &str, value: Value) -> Run {
        *r.json.pointer_mut(pointer).unwrap_or_else(|| panic!("no {pointer}")) = value;
        r
    }

    fn differences(runs: &[Run]) -> Vec<String> {
        setting_differences(runs)
    }

    #[test]
    fn identical_runs_have_no_differences() {
        assert_eq!(differences(&[shaped(), shaped(), shaped()]), Vec::<String>::new());
        let (table, _) = compare(&[shaped(), shaped()], 10.0);
        assert!(!table.contains("WARNING"), "{table}");
    }

    #[test]
    fn each_shaping_field_is_a_difference() {
        let cases = [
            ("/settings/mix", json!("50r50w"), "mix: A 90r10w, B 50r50w"),
            ("/settings/clients", json!(64), "clients: A 16, B 64"),
            ("/settings/pipeline", json!(1), "pipeline: A 8, B 1"),
            ("/settings/value_size", json!(1024), "value_size: A 100, B 1024"),
            ("/settings/keys", json!(100), "keys: A 10000, B 100"),
            ("/target/version", json!("3.8.4"), "target.kind: A warren, B zookeeper"),
            ("/machine/cpus", json!(2), "machine.cpus: A 8, B 2"),
            ("/machine/cpu_model", json!("Other CPU"), "machine.cpu_model: A Some CPU, B Other CPU"),
            ("/machine/kernel", json!("5.15.0"), "machine.kernel: A 6.1.0, B 5.15.0"),
            ("/machine/arch", json!("aarch64"), "machine.arch: A x86_64, B aarch64"),
        ];
        for (pointer, value, want) in cases {
            assert_eq!(differences(&[shaped(), set(shaped(), pointer, value)]), vec![want.to_string()], "{pointer}");
        }
    }

    #[test]
    fn zipf_exponent_is_part_of_the_key_distribution() {
        let zipf = |s: f64| {
            set(set(shaped(), "/settings/key_distribution", json!("zipf")), "/settings/zipf_exponent", json!(s))
        };
        assert_eq!(differences(&[shaped(), zipf(0.99)]), vec!["key_distribution: A uniform, B zipf s=0.99"]);
        assert_eq!(differences(&[zipf(0.99), zipf(1.2)]), vec!["key_distribution: A zipf s=0.99, B zipf s=1.2"]);
        assert!(differences(&[zipf(0.99), zipf(0.99)]).is_empty());
    }

    #[test]
    fn closed_and_open_loop_runs_differ_in_loop_and_rate() {
        let open = set(shaped(), "/settings/rate", json!(20000));
        assert_eq!(differences(&[shaped(), open]), vec!["loop: A closed, B open", "rate: A none, B 20000"]);
        let faster = set(shaped(), "/settings/rate", json!(40000));
        assert_eq!(
            differences(&[set(shaped(), "/settings/rate", json!(20000)), faster]),
            vec!["rate: A 20000, B 40000"]
        );
    }

    #[test]
    fn unrecorded_fields_differ_only_from_recorded_ones() {
        let old = || {
            let mut r = shaped();
            r.json["machine"].as_object_mut().unwrap().remove("kernel");
            r.json["settings"].as_object_mut().unwrap().remove("rate");
            r
        };
        assert!(differences(&[old(), old()]).is_empty());
        assert_eq!(
            differences(&[old(), shaped()]),
            vec![
                "loop: A (not recorded), B closed",
                "rate: A (not recorded), B none",
                "machine.kernel: A (not recorded), B 6.1.0"
            ]
        );
        // A null kernel (unreadable /proc) is not recorded either.
        assert_eq!(
            differences(&[old(), set(shaped(), "/machine/kernel", Value::Null)]),
            vec!["loop: A (not recorded), B closed", "rate: A (not recorded), B none"]
        );
    }

    #[test]
    fn runs_are_named_only_where_they_differ_from_the_first() {
        let runs = [shaped(), shaped(), set(shaped(), "/settings/clients", json!(64))];
        assert_eq!(differences(&runs), vec!["clients: A 16, C 64"]);
        let (table, _) = compare(&runs, 10.0);
        assert!(table.starts_with(&format!("{WARNING_HEADER}\n  clients: A 16, C 64\n")), "{table}");
    }

    #[test]
    fn target_kind_is_recorded_or_derived_from_the_version() {
        assert_eq!(kind_of_version("Warren 0.1.0"), "warren");
        assert_eq!(kind_of_version("0.1.0-warren"), "warren");
        assert_eq!(kind_of_version("loadgen-canned 0.1.0"), "canned");
        assert_eq!(kind_of_version("loadgen 0.1.0 canned-server"), "canned");
        assert_eq!(kind_of_version("unknown (srvr: timed out)"), "unknown");
        assert_eq!(kind_of_version("3.8.4-9316c2a7a97e1666d8f4593f34dd6fc36ecc436c, built on 2024-02-12"), "zookeeper");
        let kind = |target: Value| target_kind(&json!({ "target": target }));
        assert_eq!(kind(json!({"version": "3.8.4", "kind": "canned"})).as_deref(), Some("canned"));
        assert_eq!(kind(json!({"version": "3.8.4"})).as_deref(), Some("zookeeper"));
        assert_eq!(kind(json!({})), None);
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
