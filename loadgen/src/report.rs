//! What a run leaves behind: the percentile table on stdout and the JSON summary in
//! results/<version>/<run-id>.json.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use engine::ZkError;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{json, Value};

use crate::keys::Distribution;
use crate::parse::{Mix, OpKind};
use crate::run::{OpStats, Stats};
use crate::target::Target;

/// The percentiles reported, as (label, quantile).
pub const PERCENTILES: [(&str, f64); 5] =
    [("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p99.9", 0.999), ("p99.99", 0.9999)];

/// Everything that shapes a run, recorded in the JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// None: bounded by `duration_s` only.
    pub ops: Option<u64>,
    pub duration_s: Option<f64>,
    /// Unmeasured ops run before timing started.
    pub warmup_ops: u64,
    /// Open loop target in ops/s; None = closed loop.
    pub rate: Option<u64>,
    #[serde(serialize_with = "display")]
    pub mix: Mix,
    pub servers: Vec<String>,
    /// True when loadgen started the target itself (a local single warren node).
    pub local_cluster: bool,
    pub clients: usize,
    pub pipeline: usize,
    /// Client threads driving the sessions (a closed loop multiplexes sessions over them).
    pub threads: usize,
    pub keys: u64,
    pub key_distribution: Distribution,
    pub zipf_exponent: Option<f64>,
    pub value_size: usize,
    pub seed: u64,
    pub preload: bool,
}

fn display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// "NONODE(-101)"-style name of a ZooKeeper error code.
pub fn error_name(code: i32) -> String {
    match ZkError::from_code(code) {
        Some(e) => format!("{}({code})", format!("{e:?}").to_ascii_uppercase()),
        None => format!("UNKNOWN({code})"),
    }
}

fn per_sec(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// The table printed at the end of a run: one row per op kind that ran, then the total. ops/s
/// and the percentiles are of successful replies; errors have their own count, rate and
/// latency lines below.
pub fn table(stats: &Stats, elapsed: Duration) -> String {
    let mut out = String::new();
    let _ = write!(out, "{:<11} {:>10} {:>8} {:>11} {:>9}", "op", "count", "errors", "ops/s", "errors/s");
    for (label, _) in PERCENTILES {
        let _ = write!(out, " {:>10}", format!("{label}(µs)"));
    }
    let _ = writeln!(out, " {:>10}", "max(µs)");
    for kind in OpKind::ALL {
        let o = &stats.ops[kind.index()];
        if o.count > 0 {
            row(&mut out, kind.name(), o, elapsed);
        }
    }
    row(&mut out, "total", &stats.total(), elapsed);
    for kind in OpKind::ALL {
        error_lines(&mut out, kind.name(), &stats.ops[kind.index()], elapsed);
    }
    out
}

fn row(out: &mut String, name: &str, o: &OpStats, elapsed: Duration) {
    let (ok, errors) = (o.successes(), o.error_count());
    let _ = write!(
        out,
        "{name:<11} {:>10} {:>8} {:>11.0} {:>9.0}",
        o.count,
        errors,
        per_sec(ok, elapsed),
        per_sec(errors, elapsed)
    );
    for (_, q) in PERCENTILES {
        let _ = write!(out, " {:>10}", latency_cell(&o.hist, |h| h.value_at_quantile(q)));
    }
    let _ = writeln!(out, " {:>10}", latency_cell(&o.hist, |h| h.max()));
}

/// A latency for the table, or "-" when no reply of that kind succeeded.
fn latency_cell(h: &Histogram<u64>, f: impl Fn(&Histogram<u64>) -> u64) -> String {
    if h.is_empty() {
        "-".to_string()
    } else {
        f(h).to_string()
    }
}

/// One line per error code (count and rate), then the error replies' own latencies.
fn error_lines(out: &mut String, name: &str, o: &OpStats, elapsed: Duration) {
    for (&code, &n) in &o.errors {
        let _ = writeln!(out, "  {name} errors: {} x {n} ({:.0}/s)", error_name(code), per_sec(n, elapsed));
    }
    let h = &o.error_hist;
    if !h.is_empty() {
        let _ = writeln!(
            out,
            "  {name} error latency(µs): p50 {} p99 {} max {}",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.max()
        );
    }
}

/// Mean, max and the percentiles of `h` as `<prefix>mean_us`, `<prefix>p99_us`, ...
fn latency_json(v: &mut Value, h: &Histogram<u64>) {
    v["mean_us"] = json!(if h.is_empty() { 0.0 } else { h.mean() });
    v["max_us"] = json!(h.max());
    for (label, q) in PERCENTILES {
        v[format!("{}_us", label.replace('.', "_"))] = json!(h.value_at_quantile(q));
    }
}

/// One op kind's JSON. `count` is every reply; `throughput_ops_s` and the latencies are of
/// successful replies; errors have their count, rate and latencies (`error_latency`) apart.
fn op_json(o: &OpStats, elapsed: Duration) -> Value {
    let errors_by_code = o.errors.iter().map(|(&c, &n)| (error_name(c), json!(n))).collect::<serde_json::Map<_, _>>();
    let error_rates =
        o.errors.iter().map(|(&c, &n)| (error_name(c), json!(per_sec(n, elapsed)))).collect::<serde_json::Map<_, _>>();
    let mut error_latency = json!({ "count": o.error_count() });
    latency_json(&mut error_latency, &o.error_hist);
    let mut v = json!({
        "count": o.count,
        "successes": o.successes(),
        "errors": o.error_count(),
        "errors_by_code": errors_by_code,
        "throughput_ops_s": per_sec(o.successes(), elapsed),
        "error_rate_ops_s": per_sec(o.error_count(), elapsed),
        "error_rate_by_code_ops_s": error_rates,
        "error_latency": error_latency,
    });
    latency_json(&mut v, &o.hist);
    v
}

pub struct Summary<'a> {
    pub run_id: &'a str,
    pub settings: &'a Settings,
    /// The servers as their four-letter words described them before the run.
    pub target: &'a Target,
    pub stats: &'a Stats,
    pub elapsed: Duration,
    pub interrupted: bool,
    /// CPU time loadgen itself used during the measured phase.
    pub loadgen_cpu: Duration,
}

pub fn summary_json(s: &Summary<'_>) -> Value {
    let mut ops = serde_json::Map::new();
    for kind in OpKind::ALL {
        let o = &s.stats.ops[kind.index()];
        if o.count > 0 {
            ops.insert(kind.name().to_string(), op_json(o, s.elapsed));
        }
    }
    json!({
        "loadgen_version": env!("CARGO_PKG_VERSION"),
        // The commit loadgen was built from (build.rs); "-dirty" when tracked files differed.
        "loadgen_git_commit": env!("WARREN_GIT_COMMIT"),
        "run_id": s.run_id,
        "settings": s.settings,
        "target": s.target.json(),
        "cluster": s.target.cluster(),
        "machine": {
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
            "cpus": online_cpus(),
            "cpu_model": cpu_model(),
            "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).ok(),
        },
        "elapsed_s": s.elapsed.as_secs_f64(),
        "interrupted": s.interrupted,
        // What ops/s and the latency fields count (results before this field counted every
        // reply, errors included, in both).
        "throughput_of": "successes",
        "latency_of": "successes",
        "loadgen_cpu_s": s.loadgen_cpu.as_secs_f64(),
        "loadgen_ops_per_cpu_s": s.stats.total_count() as f64 / s.loadgen_cpu.as_secs_f64().max(1e-9),
        "watch_notifications": s.stats.notifications,
        "total": op_json(&s.stats.total(), s.elapsed),
        "ops": ops,
    })
}

/// CPUs online on the machine. Not available_parallelism(): that is loadgen's own affinity,
/// which `taskset` narrows (recorded apart, under "pinning").
fn online_cpus() -> u64 {
    // SAFETY: sysconf only reads a system value.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u64::try_from(n).unwrap_or(0)
}

/// The first "model name" of /proc/cpuinfo (Linux), if any.
fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

/// Writes `<dir>/<version>/<stem>.json`, `<stem>.hgrm` (`interval_log`: the HdrHistogram
/// interval log, one histogram per op type and total per second, see intervals.rs) and one `<stem>.<op>.hgrm` percentile text per op kind that ran (plus
/// `<stem>.total.hgrm`), where `<stem>` is the run id, with a numeric suffix if that name is
/// taken. The JSON lists the hgrm files. Returns the JSON's path.
pub fn write_results(
    dir: &Path,
    run_id: &str,
    mut summary: Value,
    stats: &Stats,
    interval_log: &[u8],
) -> Result<PathBuf> {
    let dir = dir.join(env!("CARGO_PKG_VERSION"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (stem, mut json_file) = reserve(&dir, run_id)?;
    let mut hgrm = serde_json::Map::new();
    let all = stats.total();
    let ran = OpKind::ALL.into_iter().map(|k| (k.name(), &stats.ops[k.index()])).filter(|(_, o)| o.count > 0);
    for (name, o) in ran.chain(std::iter::once(("total", &all))) {
        let file = format!("{stem}.{name}.hgrm");
        let path = dir.join(&file);
        std::fs::write(&path, percentile_distribution(&o.hist))
            .with_context(|| format!("cannot write {}", path.display()))?;
        hgrm.insert(name.to_string(), json!(file));
    }
    summary["hgrm"] = Value::Object(hgrm);
    let log_file = format!("{stem}.hgrm");
    let log_path = dir.join(&log_file);
    std::fs::write(&log_path, interval_log).with_context(|| format!("cannot write {}", log_path.display()))?;
    summary["histogram_log"] = json!(log_file);
    let text = serde_json::to_string_pretty(&summary)? + "\n";
    let json_path = dir.join(format!("{stem}.json"));
    std::io::Write::write_all(&mut json_file, text.as_bytes())
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    Ok(json_path)
}

/// Creates `<dir>/<run_id>[-n].json` empty (create_new, so two runs never share a name) and
/// returns the stem and the open file.
fn reserve(dir: &Path, run_id: &str) -> Result<(String, std::fs::File)> {
    for n in 0..100 {
        let stem = if n == 0 { run_id.to_string() } else { format!("{run_id}-{n}") };
        let path = dir.join(format!("{stem}.json"));
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => return Ok((stem, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
        }
    }
    anyhow::bail!("100 results named {run_id}*.json already exist in {}", dir.display())
}

/// HdrHistogram's percentile distribution text (Java's outputPercentileDistribution with 5
/// ticks per half distance and values scaled to milliseconds, as wrk2 prints it), which the
/// HdrHistogram plotter reads. The histogram holds microseconds.
pub fn percentile_distribution(h: &Histogram<u64>) -> String {
    const US_PER_MS: f64 = 1000.0;
    let mut out = format!("{:>12} {:>14} {:>10} {:>14}\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let value = v.value_iterated_to() as f64 / US_PER_MS;
        let q = v.quantile_iterated_to();
        if q < 1.0 {
            let _ = writeln!(out, "{value:>12.3} {q:>2.12} {total:>10} {:>14.2}", 1.0 / (1.0 - q));
        } else {
            let _ = writeln!(out, "{value:>12.3} {q:>2.12} {total:>10}");
        }
    }
    let (mean, stdev) = if h.is_empty() { (0.0, 0.0) } else { (h.mean() / US_PER_MS, h.stdev() / US_PER_MS) };
    let _ = writeln!(out, "#[Mean    = {mean:>12.3}, StdDeviation   = {stdev:>12.3}]");
    let _ = writeln!(out, "#[Max     = {:>12.3}, Total count    = {:>12}]", h.max() as f64 / US_PER_MS, h.len());
    // Sub-buckets cover 2 * 10^sigfig values at unit resolution, rounded up to a power of two.
    let sub_buckets = (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two();
    let _ = writeln!(out, "#[Buckets = {:>12}, SubBuckets     = {sub_buckets:>12}]", h.buckets());
    out
}

/// A run id from a Unix time: `20261126T103512Z` (UTC, sorts by time).
pub fn run_id(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids() {
        assert_eq!(run_id(0), "19700101T000000Z");
        assert_eq!(run_id(951_782_400), "20000229T000000Z");
        assert_eq!(run_id(1_795_689_312), "20261126T103512Z");
    }

    #[test]
    fn percentile_distribution_has_the_hgrm_shape() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for us in 1..=1000 {
            h.record(us).unwrap();
        }
        let text = percentile_distribution(&h);
        let mut lines = text.lines();
        assert!(lines.next().unwrap().trim_start().starts_with("Value"));
        assert_eq!(lines.next(), Some(""));
        let rows: Vec<Vec<&str>> =
            text.lines().skip(2).take_while(|l| !l.starts_with('#')).map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(rows.first().unwrap()[0], "0.001");
        let last = rows.last().unwrap();
        assert_eq!(last[1], "1.000000000000");
        assert_eq!(last[2], "1000");
        assert!(text.contains("Total count    =         1000]"), "{text}");
        assert!(text.contains("SubBuckets     =         2048]"), "{text}");
        // Cumulative counts never decrease.
        let counts: Vec<u64> = rows.iter().map(|r| r[2].parse().unwrap()).collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn machine_cpus_ignore_loadgens_own_affinity() {
        let cpus = online_cpus();
        assert!(cpus >= 1);
        let allowed = std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1);
        assert!(cpus >= allowed, "{cpus} online < {allowed} allowed");
    }

    #[test]
    fn error_names() {
        assert_eq!(error_name(-101), "NONODE(-101)");
        assert_eq!(error_name(-110), "NODEEXISTS(-110)");
        assert_eq!(error_name(-999), "UNKNOWN(-999)");
    }
}
