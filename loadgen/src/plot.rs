//! `loadgen compare --plot out.html|out.svg`: the latency-by-percentile curves of several runs
//! on one chart, x on the HdrHistogram plotter's log scale (1/(1-p): 90%, 99%, 99.9%, ...),
//! y in milliseconds. Each curve comes from the run's total .hgrm; a result without one falls
//! back to the percentiles in its JSON. Self-contained SVG, no scripts.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::compare::Run;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 520.0;
const MARGIN_LEFT: f64 = 70.0;
const MARGIN_RIGHT: f64 = 20.0;
const MARGIN_TOP: f64 = 40.0;
const MARGIN_BOTTOM: f64 = 60.0;
/// x axis end: 99.9999%.
const NINES_MAX: f64 = 6.0;
const COLORS: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

/// (percentile as a fraction, latency in ms) points of one run's total latency.
pub fn curve(run: &Run) -> Vec<(f64, f64)> {
    let hgrm = run.json["hgrm"]["total"].as_str().and_then(|name| {
        let path = run.path.parent().unwrap_or(Path::new(".")).join(name);
        std::fs::read_to_string(path).ok()
    });
    match hgrm {
        Some(text) => parse_hgrm(&text),
        None => {
            let t = &run.json["total"];
            let fields =
                [(0.5, "p50_us"), (0.9, "p90_us"), (0.99, "p99_us"), (0.999, "p99_9_us"), (0.9999, "p99_99_us")];
            fields.iter().filter_map(|&(q, f)| t[f].as_f64().map(|us| (q, us / 1000.0))).collect()
        }
    }
}

/// The (percentile, value) rows of a percentile distribution (.hgrm) text.
pub fn parse_hgrm(text: &str) -> Vec<(f64, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let value: f64 = f.next()?.parse().ok()?;
            let q: f64 = f.next()?.parse().ok()?;
            Some((q, value))
        })
        .collect()
}

/// x of a percentile: the number of nines, log10(1/(1-q)), capped at NINES_MAX.
fn nines(q: f64) -> f64 {
    if q >= 1.0 {
        NINES_MAX
    } else {
        (-(1.0 - q).log10()).min(NINES_MAX)
    }
}

pub fn svg(runs: &[Run]) -> String {
    let curves: Vec<Vec<(f64, f64)>> = runs.iter().map(curve).collect();
    let y_max = curves.iter().flatten().map(|&(_, v)| v).fold(0.0, f64::max).max(0.001) * 1.05;
    let (pw, ph) = (WIDTH - MARGIN_LEFT - MARGIN_RIGHT, HEIGHT - MARGIN_TOP - MARGIN_BOTTOM);
    let x = |q: f64| MARGIN_LEFT + nines(q) / NINES_MAX * pw;
    let y = |v: f64| MARGIN_TOP + ph - v / y_max * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">Latency by percentile (total)</text>"#,
        WIDTH / 2.0
    );
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"].iter().enumerate() {
        let gx = MARGIN_LEFT + i as f64 / NINES_MAX * pw;
        let _ = writeln!(
            s,
            r##"<line x1="{gx:.1}" y1="{MARGIN_TOP}" x2="{gx:.1}" y2="{:.1}" stroke="#ddd"/>"##,
            MARGIN_TOP + ph
        );
        let _ =
            writeln!(s, r#"<text x="{gx:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#, MARGIN_TOP + ph + 18.0);
    }
    for i in 0..=5 {
        let v = y_max * f64::from(i) / 5.0;
        let gy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{MARGIN_LEFT}" y1="{gy:.1}" x2="{:.1}" y2="{gy:.1}" stroke="#ddd"/>"##,
            MARGIN_LEFT + pw
        );
        let _ =
            writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{v:.2}</text>"#, MARGIN_LEFT - 6.0, gy + 4.0);
    }
    let _ = writeln!(
        s,
        r#"<text x="16" y="{:.1}" transform="rotate(-90 16 {:.1})" text-anchor="middle">latency (ms)</text>"#,
        MARGIN_TOP + ph / 2.0,
        MARGIN_TOP + ph / 2.0
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        MARGIN_LEFT + pw / 2.0,
        HEIGHT - 12.0
    );
    for (i, (run, points)) in runs.iter().zip(&curves).enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = points.iter().map(|&(q, v)| format!("{:.1},{:.1}", x(q), y(v))).collect();
        let _ = writeln!(s, r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#, path.join(" "));
        let name = run.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let ly = MARGIN_TOP + 16.0 + 16.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{ly:.1}" fill="{color}">{}: {}</text>"#,
            MARGIN_LEFT + 10.0,
            (b'A' + (i % 26) as u8) as char,
            escape(&name)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Writes the chart: bare SVG for a .svg path, else an HTML page holding it.
pub fn write(path: &Path, runs: &[Run]) -> Result<()> {
    let svg = svg(runs);
    let is_svg = path.extension().and_then(|e| e.to_str()) == Some("svg");
    let text = if is_svg {
        svg
    } else {
        format!("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>loadgen compare</title></head><body>\n{svg}</body></html>\n")
    };
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hgrm_rows_parse_and_nines_scale() {
        let text = "       Value     Percentile TotalCount 1/(1-Percentile)\n\n       0.051 0.000000000000          3           1.00\n       1.789 0.900000000000      10004          10.00\n      46.943 1.000000000000      20000\n#[Mean    =        2.461, StdDeviation   =        2.454]\n";
        assert_eq!(parse_hgrm(text), vec![(0.0, 0.051), (0.9, 1.789), (1.0, 46.943)]);
        assert!((nines(0.9) - 1.0).abs() < 1e-9);
        assert!((nines(0.999) - 3.0).abs() < 1e-9);
        assert_eq!(nines(1.0), NINES_MAX);
    }

    #[test]
    fn svg_has_one_curve_per_run() {
        let json = serde_json::json!({"total": {"p50_us": 100, "p90_us": 200, "p99_us": 400, "p99_9_us": 800, "p99_99_us": 900}});
        let runs = [Run { path: "a.json".into(), json: json.clone() }, Run { path: "b<x>.json".into(), json }];
        let s = svg(&runs);
        assert_eq!(s.matches("<polyline").count(), 2);
        assert!(s.contains("b&lt;x&gt;.json"));
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
    }
}
