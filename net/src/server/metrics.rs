//! Per-core latency and WAL figures for the four-letter words: request latencies (all, reads,
//! updates) and WAL fsync times in microseconds, WAL batch sizes in entries. Each core records
//! into its own `CoreMetrics` (no sharing, no atomics); `mntr`/`srvr` gather a clone from every
//! core and merge them. Recording is one histogram increment: no allocation on the hot path.

use hdrhistogram::Histogram;
use std::time::Duration;

/// Highest time tracked (µs): 60 s. A slower request or fsync is counted as 60 s.
const TIME_US_MAX: u64 = 60_000_000;
/// Largest batch tracked, in entries; above the commit loop's own limit, so never clamped.
const BATCH_ENTRIES_MAX: u64 = 1 << 16;
/// Relative precision of the histograms: values below 2048 are exact, larger ones within 0.1%.
const SIGNIFICANT_DIGITS: u8 = 3;

/// How a request counts: ZooKeeper splits its latencies into reads and updates (requests that
/// go through the log). Pings and other requests answered without a write count as reads, as
/// in ZooKeeper (`ServerStats.updateLatency`: a request without a txn header is a read).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RequestClass {
    Read,
    Update,
}

/// A distribution of non-negative integers with an exact count and sum.
#[derive(Clone, Debug)]
pub struct Distribution {
    histogram: Histogram<u64>,
    /// Sum of the recorded values (as clamped into the histogram's range), so that the mean
    /// is exact and never above the maximum.
    sum: u64,
}

impl Distribution {
    fn new(max: u64) -> Distribution {
        let histogram = Histogram::new_with_bounds(1, max, SIGNIFICANT_DIGITS)
            .unwrap_or_else(|e| panic!("histogram bounds 1..{max} rejected: {e}"));
        Distribution { histogram, sum: 0 }
    }

    pub fn record(&mut self, value: u64) {
        let value = value.min(self.histogram.high());
        self.histogram.saturating_record(value);
        self.sum = self.sum.saturating_add(value);
    }

    /// Adds `other`'s values to these (both made by `CoreMetrics::default`, so same bounds).
    pub fn merge(&mut self, other: &Distribution) {
        self.histogram.add(&other.histogram).unwrap_or_else(|e| panic!("histograms of different bounds: {e}"));
        self.sum = self.sum.saturating_add(other.sum);
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// Smallest value (rounded down to the histogram's precision); 0 when empty.
    pub fn min(&self) -> u64 {
        self.histogram.min()
    }

    /// Largest value (rounded up to the histogram's precision); 0 when empty.
    pub fn max(&self) -> u64 {
        if self.histogram.is_empty() {
            0
        } else {
            self.histogram.max()
        }
    }

    /// Exact mean; 0 when empty.
    pub fn mean(&self) -> f64 {
        match self.count() {
            0 => 0.0,
            count => self.sum as f64 / count as f64,
        }
    }

    /// The value `quantile` (0..=1) of the values are at or below (rounded up to the
    /// histogram's precision, so never above `max`); 0 when empty.
    pub fn quantile(&self, quantile: f64) -> u64 {
        self.histogram.value_at_quantile(quantile)
    }
}

/// What one core measured since it started.
#[derive(Clone, Debug)]
pub struct CoreMetrics {
    /// Every request (connect handshakes excepted), frame read to reply encoded, µs.
    pub requests_us: Distribution,
    pub reads_us: Distribution,
    pub updates_us: Distribution,
    /// WAL write + fdatasync of one batch, µs.
    pub fsync_us: Distribution,
    /// Entries per WAL batch.
    pub batch_entries: Distribution,
    /// The commit latency split: a write's wait in the core's queue before it was proposed or
    /// forwarded; from proposing a batch (leader) to its last entry committed (its own WAL
    /// write and a majority's acknowledgements); applying one turn's committed entries. µs.
    pub commit_queue_us: Distribution,
    pub commit_quorum_us: Distribution,
    pub apply_us: Distribution,
}

/// Where one core's Raft group stands, as `mntr` reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupStatus {
    pub term: u64,
    /// The first entry still held in memory (earlier ones were compacted away; the WAL keeps them).
    pub first_index: u64,
    pub last_index: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    /// Leader: entries the furthest-behind follower lacks (0 on a follower).
    pub follower_lag: u64,
    /// Committed entries that had to wait before applying for another group of this node to
    /// apply what they depend on (one order across groups), since start.
    pub applies_held: u64,
}

impl Default for CoreMetrics {
    fn default() -> CoreMetrics {
        CoreMetrics {
            requests_us: Distribution::new(TIME_US_MAX),
            reads_us: Distribution::new(TIME_US_MAX),
            updates_us: Distribution::new(TIME_US_MAX),
            fsync_us: Distribution::new(TIME_US_MAX),
            batch_entries: Distribution::new(BATCH_ENTRIES_MAX),
            commit_queue_us: Distribution::new(TIME_US_MAX),
            commit_quorum_us: Distribution::new(TIME_US_MAX),
            apply_us: Distribution::new(TIME_US_MAX),
        }
    }
}

impl CoreMetrics {
    pub fn record_request(&mut self, class: RequestClass, elapsed: Duration) {
        let us = micros(elapsed);
        self.requests_us.record(us);
        match class {
            RequestClass::Read => self.reads_us.record(us),
            RequestClass::Update => self.updates_us.record(us),
        }
    }

    pub fn record_flush(&mut self, elapsed: Duration, entries: usize) {
        self.fsync_us.record(micros(elapsed));
        self.batch_entries.record(entries as u64);
    }

    pub fn merge(&mut self, other: &CoreMetrics) {
        self.requests_us.merge(&other.requests_us);
        self.reads_us.merge(&other.reads_us);
        self.updates_us.merge(&other.updates_us);
        self.fsync_us.merge(&other.fsync_us);
        self.batch_entries.merge(&other.batch_entries);
        self.commit_queue_us.merge(&other.commit_queue_us);
        self.commit_quorum_us.merge(&other.commit_quorum_us);
        self.apply_us.merge(&other.apply_us);
    }
}

pub fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

/// A time distribution in ZooKeeper's units: whole milliseconds, the mean with 4 decimals.
/// Minimum and percentiles are rounded down, as ZooKeeper truncates each time to whole ms (a
/// 40 µs p50 shows 0); the maximum is rounded up, so that min ≤ avg ≤ max still holds when
/// everything takes under a millisecond (ZooKeeper's avg would be 0.0 there, Warren's is not).
pub struct Millis<'a>(pub &'a Distribution);

impl Millis<'_> {
    pub fn min(&self) -> u64 {
        self.0.min() / 1000
    }

    pub fn max(&self) -> u64 {
        self.0.max().div_ceil(1000)
    }

    pub fn avg(&self) -> String {
        java_double(self.0.mean() / 1000.0)
    }

    pub fn sum(&self) -> u64 {
        (self.0.sum() + 500) / 1000
    }

    pub fn quantile(&self, quantile: f64) -> u64 {
        self.0.quantile(quantile) / 1000
    }
}

/// A double as ZooKeeper prints its averages: rounded to 4 decimals (AvgMinMaxCounter) and
/// always with a decimal point, as Java's Double.toString writes "0.0" and "1.5" (Java would
/// write 0.0001 as "1.0E-4"; both parse as the same float).
pub fn java_double(value: f64) -> String {
    let rounded = (value * 10_000.0).round() / 10_000.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.1}")
    } else {
        format!("{rounded}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn empty_distribution_reports_zeros() {
        let m = CoreMetrics::default();
        let d = &m.requests_us;
        assert_eq!((d.count(), d.sum(), d.min(), d.max(), d.quantile(0.99)), (0, 0, 0, 0, 0));
        assert_eq!(d.mean(), 0.0);
        assert_eq!(Millis(d).avg(), "0.0");
    }

    #[test]
    fn requests_are_split_into_reads_and_updates_and_all() {
        let mut m = CoreMetrics::default();
        for n in 1..=90 {
            m.record_request(RequestClass::Read, us(n));
        }
        for n in 1..=10 {
            m.record_request(RequestClass::Update, us(1000 * n));
        }
        assert_eq!(m.reads_us.count(), 90);
        assert_eq!(m.updates_us.count(), 10);
        assert_eq!(m.requests_us.count(), 100);
        assert_eq!(m.reads_us.sum(), (1..=90).sum::<u64>());
        assert_eq!((m.reads_us.min(), m.reads_us.max()), (1, 90));
        assert_eq!(m.reads_us.quantile(0.5), 45, "values under 2048 are exact");
        assert_eq!(m.requests_us.quantile(0.5), 50);
        assert_eq!(m.updates_us.min(), 1000);
        assert!((m.updates_us.max() as f64 - 10_000.0).abs() <= 10.0, "within 0.1%: {}", m.updates_us.max());
        assert_eq!(m.updates_us.mean(), 5500.0);
    }

    #[test]
    fn figures_stay_ordered() {
        let mut m = CoreMetrics::default();
        for n in [3, 70, 70, 900, 12_345, 1_234_567, 7] {
            m.record_request(RequestClass::Read, us(n));
        }
        let d = &m.reads_us;
        assert!(d.min() as f64 <= d.mean() && d.mean() <= d.max() as f64);
        let ps: Vec<u64> = [0.5, 0.95, 0.99, 0.999].iter().map(|q| d.quantile(*q)).collect();
        assert!(ps.windows(2).all(|w| w[0] <= w[1]), "{ps:?}");
        assert!(d.min() <= ps[0] && ps[3] <= d.max(), "{ps:?} max {}", d.max());
    }

    #[test]
    fn slow_values_are_clamped_and_the_mean_stays_below_the_max() {
        let mut m = CoreMetrics::default();
        m.record_request(RequestClass::Update, Duration::from_secs(3600));
        m.record_request(RequestClass::Update, Duration::from_secs(3600));
        let d = &m.updates_us;
        assert_eq!(d.count(), 2);
        assert_eq!(d.sum(), 2 * TIME_US_MAX);
        assert!(d.mean() <= d.max() as f64);
    }

    #[test]
    fn merge_adds_counts_and_sums_and_keeps_extremes() {
        let mut a = CoreMetrics::default();
        let mut b = CoreMetrics::default();
        a.record_request(RequestClass::Read, us(5));
        b.record_request(RequestClass::Read, us(500));
        b.record_request(RequestClass::Update, us(800));
        a.record_flush(us(2000), 3);
        b.record_flush(us(100), 40);
        a.merge(&b);
        assert_eq!((a.reads_us.count(), a.reads_us.min(), a.reads_us.max()), (2, 5, 500));
        assert_eq!(a.requests_us.count(), 3);
        assert_eq!(a.requests_us.sum(), 1305);
        assert_eq!((a.fsync_us.count(), a.fsync_us.min(), a.fsync_us.max()), (2, 100, 2000));
        assert_eq!((a.batch_entries.sum(), a.batch_entries.min(), a.batch_entries.max()), (43, 3, 40));
    }

    #[test]
    fn millis_keep_min_avg_max_ordered_under_a_millisecond() {
        let mut m = CoreMetrics::default();
        for n in [1400, 1400, 1400] {
            m.record_request(RequestClass::Read, us(n));
        }
        let ms = Millis(&m.reads_us);
        assert_eq!((ms.min(), ms.avg(), ms.max()), (1, "1.4".to_string(), 2));
        assert_eq!(ms.quantile(0.5), 1, "truncated as ZooKeeper's whole-ms times");
        assert_eq!(ms.sum(), 4);
        let mut fast = CoreMetrics::default();
        fast.record_request(RequestClass::Read, us(12));
        let ms = Millis(&fast.reads_us);
        assert_eq!((ms.min(), ms.avg(), ms.max()), (0, "0.012".to_string(), 1));
        assert_eq!(ms.quantile(0.99), 0);
    }

    #[test]
    fn doubles_print_as_zookeeper_prints_them() {
        assert_eq!(java_double(0.0), "0.0");
        assert_eq!(java_double(2.0), "2.0");
        assert_eq!(java_double(1.5), "1.5");
        assert_eq!(java_double(0.123_456), "0.1235");
        assert_eq!(java_double(0.000_04), "0.0");
    }
}
