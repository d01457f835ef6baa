//! The measured phase's latency over time: one histogram per op kind (plus `total`) per
//! second, written as an HdrHistogram interval log (`<run-id>.hgrm`), so a warmup tail, a GC
//! pause or an fsync stall shows at the second it happened instead of vanishing into the
//! whole-run percentiles. Successful replies only, like the percentiles.
//!
//! Each worker records its current second into histograms of its own (no lock per op) and
//! hands them over here when it moves to the next second. A second is encoded (V2, deflate)
//! as soon as every worker has moved past it, so memory holds the encoded lines (a few KB a
//! second) plus the seconds some worker may still add to (as many as the slowest worker lags).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

use crate::parse::OpKind;

/// Length of one interval.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// Histograms per interval: one per op kind, then `total`.
const SLOTS: usize = OpKind::COUNT + 1;
const TOTAL: usize = OpKind::COUNT;
/// What a worker's position is once it has handed over its last interval.
const FINISHED: u64 = u64::MAX;

/// An auto-resizing µs histogram (3 significant digits), as large as its largest value needs:
/// for the many histograms that hold few values (an interval's, the error replies').
pub fn growing_histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits are valid")
}

/// Collects the workers' intervals during a phase.
pub struct IntervalLog {
    start: Instant,
    start_wall: SystemTime,
    inner: Mutex<Collector>,
}

struct Collector {
    /// The interval each worker records into now (FINISHED once done).
    at: Vec<u64>,
    /// Intervals a worker may still add to, by index: one histogram per slot.
    open: BTreeMap<u64, Vec<Histogram<u64>>>,
    /// Encoded log lines by (interval, slot).
    lines: BTreeMap<(u64, usize), Vec<u8>>,
}

impl IntervalLog {
    /// A log for `workers` workers whose phase starts at `start`.
    pub fn new(workers: usize, start: Instant) -> IntervalLog {
        let collector = Collector { at: vec![0; workers], open: BTreeMap::new(), lines: BTreeMap::new() };
        IntervalLog { start, start_wall: SystemTime::now(), inner: Mutex::new(collector) }
    }

    /// The interval `now` falls in.
    pub fn interval_of(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.start).as_nanos() / INTERVAL.as_nanos()) as u64
    }

    /// When interval `idx` ends.
    pub fn end_of(&self, idx: u64) -> Instant {
        self.start + interval_start(idx.saturating_add(1))
    }

    /// Worker `worker` hands over what it recorded in interval `done` (one histogram per op
    /// kind, successes only) and records into `next` from now on (`None`: it is finished).
    /// Every interval all workers have left is encoded.
    pub fn hand_over(&self, worker: usize, done: u64, hists: &[Histogram<u64>], next: Option<u64>) -> Result<()> {
        assert_eq!(hists.len(), OpKind::COUNT, "one histogram per op kind");
        let mut c = self.inner.lock().expect("interval log lock poisoned");
        let next = next.unwrap_or(FINISHED);
        assert!(next > done, "worker {worker} went back from interval {done} to {next}");
        if hists.iter().any(|h| !h.is_empty()) {
            let open = c.open.entry(done).or_insert_with(|| (0..OpKind::COUNT).map(|_| growing_histogram()).collect());
            for (into, h) in open.iter_mut().zip(hists) {
                into.add(h).expect("auto-resizing histograms take any value");
            }
        }
        c.at[worker] = next;
        // Once every worker is done, the last intervals wait for `finish`: only it knows
        // where the phase ended, so how long the last one is.
        let Some(oldest_active) = c.at.iter().copied().filter(|&at| at != FINISHED).min() else {
            return Ok(());
        };
        while let Some(entry) = c.open.first_entry() {
            if *entry.key() >= oldest_active {
                break;
            }
            let (idx, hists) = entry.remove_entry();
            c.encode(idx, &hists, INTERVAL)?;
        }
        Ok(())
    }

    /// The whole log after a phase of `elapsed`: header, then for every second of the phase
    /// one line per op kind that `ran` plus `total` (empty histograms for seconds without
    /// replies: a stall shows as a gap in counts). Intervals still open are encoded here.
    pub fn finish(self, elapsed: Duration, ran: &[bool; OpKind::COUNT]) -> Result<Vec<u8>> {
        let start_wall = self.start_wall;
        let mut c = self.inner.into_inner().expect("interval log lock poisoned");
        let intervals = (elapsed.as_nanos() / INTERVAL.as_nanos()) as u64 + 1;
        let open = std::mem::take(&mut c.open);
        for (idx, hists) in open {
            c.encode(idx, &hists, length(idx, elapsed))?;
        }
        let mut out = header(start_wall)?;
        let empty = growing_histogram();
        for idx in 0..intervals.max(c.lines.keys().last().map_or(0, |k| k.0 + 1)) {
            for slot in (0..SLOTS).filter(|&s| s == TOTAL || ran[s]) {
                match c.lines.get(&(idx, slot)) {
                    Some(line) => out.extend_from_slice(line),
                    None => out.extend(encode_line(&empty, idx, length(idx, elapsed), slot_name(slot))?),
                }
            }
        }
        Ok(out)
    }
}

impl Collector {
    /// Encodes interval `idx` (one histogram per op kind) and its total.
    fn encode(&mut self, idx: u64, hists: &[Histogram<u64>], len: Duration) -> Result<()> {
        let mut total = growing_histogram();
        for (slot, h) in hists.iter().enumerate() {
            total.add(h).expect("auto-resizing histograms take any value");
            self.lines.insert((idx, slot), encode_line(h, idx, len, slot_name(slot))?);
        }
        self.lines.insert((idx, TOTAL), encode_line(&total, idx, len, slot_name(TOTAL))?);
        Ok(())
    }
}

/// The length of interval `idx` in a phase of `elapsed`: INTERVAL, but the last one ends with
/// the phase.
fn length(idx: u64, elapsed: Duration) -> Duration {
    elapsed.saturating_sub(interval_start(idx)).min(INTERVAL)
}

/// Where interval `idx` starts, from the phase's start.
fn interval_start(idx: u64) -> Duration {
    INTERVAL * u32::try_from(idx).unwrap_or(u32::MAX)
}

fn slot_name(slot: usize) -> &'static str {
    if slot == TOTAL {
        "total"
    } else {
        OpKind::ALL.into_iter().find(|k| k.index() == slot).expect("slot of an op kind").name()
    }
}

/// Comments naming the content and units, StartTime and BaseTime (the phase's start, so
/// interval timestamps are seconds into the measured phase), and the column legend.
fn header(start_wall: SystemTime) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    let mut builder = IntervalLogWriterBuilder::new();
    builder
        .add_comment("loadgen latency interval log: per 1 s interval of the measured phase, one histogram per op type (Tag=<op>) and Tag=total, successful replies only")
        .add_comment("Values (and Interval_Max) are in microseconds (us); StartTimestamp is seconds since BaseTime, the measured phase's start")
        .with_start_time(start_wall)
        .with_base_time(start_wall);
    drop(builder.begin_log_with(&mut out, &mut serializer)?);
    out.extend_from_slice(
        b"\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n",
    );
    Ok(out)
}

/// One interval line: `Tag=<tag>,<start>,<length>,<max>,<base64 V2 deflate histogram>`.
fn encode_line(h: &Histogram<u64>, idx: u64, len: Duration, tag: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    let mut log = IntervalLogWriterBuilder::new().begin_log_with(&mut out, &mut serializer)?;
    let tag = Tag::new(tag).with_context(|| format!("{tag} is not a valid histogram tag"))?;
    log.write_histogram(h, interval_start(idx), len, Some(tag))
        .map_err(|e| anyhow::anyhow!("cannot encode the {tag:?} histogram of interval {idx}: {e:?}"))?;
    drop(log);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;

    /// (tag, start s, length s, count, max) of every interval line, and the header lines.
    fn parse(log: &[u8]) -> Vec<(String, f64, f64, u64, u64)> {
        let mut found = Vec::new();
        for entry in IntervalLogIterator::new(log) {
            if let LogEntry::Interval(h) = entry.expect("the log parses") {
                let bytes = base64::engine::general_purpose::STANDARD.decode(h.encoded_histogram()).unwrap();
                let hist: Histogram<u64> = Deserializer::new().deserialize(&mut bytes.as_slice()).unwrap();
                let tag = h.tag().expect("every histogram is tagged").as_str().to_string();
                found.push((
                    tag,
                    h.start_timestamp().as_secs_f64(),
                    h.duration().as_secs_f64(),
                    hist.len(),
                    hist.max(),
                ));
            }
        }
        found
    }

    fn hists(values: &[(usize, u64)]) -> Vec<Histogram<u64>> {
        let mut hs: Vec<_> = (0..OpKind::COUNT).map(|_| growing_histogram()).collect();
        for &(kind, us) in values {
            hs[kind].record(us).unwrap();
        }
        hs
    }

    #[test]
    fn intervals_per_second_per_kind_and_total_with_gaps_filled() {
        let start = Instant::now();
        let log = IntervalLog::new(2, start);
        assert_eq!(log.interval_of(start + Duration::from_millis(2500)), 2);
        let (r, w) = (OpKind::Read.index(), OpKind::Write.index());
        log.hand_over(0, 0, &hists(&[(r, 100), (r, 200)]), Some(1)).unwrap();
        log.hand_over(1, 0, &hists(&[(w, 5000)]), Some(3)).unwrap();
        // Interval 0 is encoded: both workers left it.
        assert_eq!(log.inner.lock().unwrap().open.len(), 0);
        // Worker 0 stalls through second 2 and finishes in 3; worker 1 in 3 too.
        log.hand_over(0, 1, &hists(&[(r, 300)]), Some(3)).unwrap();
        log.hand_over(0, 3, &hists(&[(r, 400)]), None).unwrap();
        log.hand_over(1, 3, &hists(&[]), None).unwrap();
        let mut ran = [false; OpKind::COUNT];
        ran[r] = true;
        ran[w] = true;
        let text = log.finish(Duration::from_millis(3500), &ran).unwrap();
        let found = parse(&text);
        let (rn, wn) = (OpKind::Read.name(), OpKind::Write.name());
        let count = |tag: &str| found.iter().filter(|f| f.0 == tag).map(|f| f.3).sum::<u64>();
        assert_eq!((count(rn), count(wn), count("total")), (4, 1, 5), "{found:?}");
        for tag in [rn, wn, "total"] {
            let starts: Vec<f64> = found.iter().filter(|f| f.0 == tag).map(|f| f.1).collect();
            assert_eq!(starts, [0.0, 1.0, 2.0, 3.0], "{tag}: {found:?}");
        }
        // The stalled second is there, empty; the last interval ends with the phase.
        assert!(found.iter().any(|f| f.0 == "total" && f.1 == 2.0 && f.3 == 0), "{found:?}");
        assert!(found.iter().any(|f| f.0 == "total" && f.1 == 3.0 && f.2 == 0.5), "{found:?}");
        assert!(found.iter().any(|f| f.0 == "total" && f.1 == 0.0 && f.4 >= 4990), "{found:?}");
        // Kinds that never ran have no lines.
        assert!(found.iter().all(|f| [rn, wn, "total"].contains(&f.0.as_str())), "{found:?}");
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("microseconds"), "{text}");
        assert!(text.contains("#[StartTime: ") && text.contains("#[BaseTime: "), "{text}");
        assert!(text.contains("\"StartTimestamp\",\"Interval_Length\""), "{text}");
    }
}
