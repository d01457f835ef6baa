//! The open loop (`--rate`): each session sends on a fixed schedule, and latency counts from
//! each op's intended send time, so a stalled server shows up in the percentiles instead of
//! silently lowering the offered load (coordinated omission, as wrk2 corrects it). Owns the
//! schedule (staggered session starts), the deadline rule (every op due before it is sent,
//! however late), and the send lag: how long after its intended time each op went out.

use std::time::{Duration, Instant};

use anyhow::Result;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::{OpGen, Plan, Recorder, LATENCY_US_MAX};
use crate::session::Session;

/// How long after the deadline a session that is behind keeps sending the ops that were due
/// before it. Past this, the rest are counted as unsent (and reported) instead of sent: the
/// run must end even against a server far slower than the offered rate.
pub const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// Send lag and what was never sent, per session, merged at the end.
pub struct LagStats {
    /// Send time minus intended send time of every op sent, µs (0 when on time).
    pub send_lag: Histogram<u64>,
    /// Ops due before the deadline still unsent DRAIN_GRACE after it.
    pub unsent: u64,
}

impl LagStats {
    pub fn new() -> LagStats {
        let send_lag = Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("static histogram bounds are valid");
        LagStats { send_lag, unsent: 0 }
    }

    pub fn merge(&mut self, other: &LagStats) {
        self.send_lag.add(&other.send_lag).expect("histograms share bounds");
        self.unsent += other.unsent;
    }

    fn record(&mut self, lag: Duration) {
        let us = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
        // 0 µs (on time) is below the histogram's lowest value 1; it still counts, as 1.
        self.send_lag.saturating_record(us.clamp(1, LATENCY_US_MAX));
    }
}

/// When session `id` of `sessions` sends its first op: the sessions' schedules are spread
/// evenly over one session interval, so the merged stream is evenly spaced at the total
/// rate rather than `sessions` ops at once every interval.
pub fn first_due(start: Instant, session_rate: f64, id: usize, sessions: usize) -> Instant {
    start + Duration::from_secs_f64(id as f64 / (session_rate * sessions.max(1) as f64))
}

/// Ops of a schedule with period `interval` due in [due, deadline).
fn due_before(due: Instant, deadline: Instant, interval: Duration) -> u64 {
    let left = deadline.saturating_duration_since(due);
    if left.is_zero() {
        return 0;
    }
    (left.as_nanos().div_ceil(interval.as_nanos().max(1))) as u64
}

/// Runs one session's open loop at `rate` ops/s from `first`. At most `pipeline` requests are
/// outstanding; due ops wait for a slot and the wait is measured (send lag, and latency).
pub(super) fn run(
    s: &mut Session,
    plan: &Plan<'_>,
    rate: f64,
    first: Instant,
    deadline: Option<Instant>,
    ops: &mut OpGen<'_, '_>,
    rec: &mut Recorder<'_>,
) -> Result<()> {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut due = first;
    let mut exhausted = false;
    loop {
        let now = Instant::now();
        while !exhausted && due <= now && s.outstanding() < plan.pipeline {
            if let Some(d) = deadline.filter(|&d| due < d && now >= d + DRAIN_GRACE) {
                let left = plan.ops.saturating_sub(plan.claimed.load(std::sync::atomic::Ordering::Relaxed));
                rec.stats.open_loop.unsent += due_before(due, d, interval).min(left);
                exhausted = true;
            } else if plan.claim_due(due, deadline) {
                let (req, tag) = ops.next();
                s.queue_at(&req, tag, due);
                rec.stats.open_loop.record(now - due);
                due += interval;
            } else {
                exhausted = true;
            }
        }
        s.flush()?;
        if exhausted && s.outstanding() == 0 {
            return Ok(());
        }
        // Wait for a reply, or until the next op is due if it could be sent then.
        let wait = if exhausted || s.outstanding() >= plan.pipeline {
            None
        } else {
            Some(due.saturating_duration_since(Instant::now()))
        };
        if s.outstanding() == 0 {
            std::thread::sleep(wait.unwrap_or_default());
            continue;
        }
        if s.reply_buffered() || s.wait_readable(wait)? {
            rec.record(&s.recv()?)?;
            while s.outstanding() > 0 && s.reply_buffered() {
                rec.record(&s.recv()?)?;
            }
        }
    }
}

/// Replies of the measured phase, split as throughput counts them.
#[derive(Debug, Clone, Copy)]
pub struct Replies {
    pub successes: u64,
    pub errors: u64,
}

/// Offered vs achieved rate and the send lag, as printed under the table and stored in the
/// JSON (`open_loop`).
pub struct Summary {
    pub offered_ops_s: f64,
    /// Successful replies per second of the whole measured phase, the drain after the deadline
    /// included: what throughput counts everywhere else, so a server that answers fast with
    /// errors does not look like it keeps up.
    pub achieved_ops_s: f64,
    /// Error replies per second over the same time, reported apart from `achieved_ops_s`.
    pub error_ops_s: f64,
    pub send_lag_p50_us: u64,
    pub send_lag_p99_us: u64,
    pub send_lag_p99_9_us: u64,
    pub send_lag_max_us: u64,
    pub unsent: u64,
}

impl Summary {
    pub fn new(lag: &LagStats, offered_ops_s: f64, replies: Replies, elapsed: Duration) -> Summary {
        let h = &lag.send_lag;
        let per_s = |n: u64| n as f64 / elapsed.as_secs_f64().max(1e-9);
        // An empty histogram reports 0 everywhere, which is what no sends means.
        Summary {
            offered_ops_s,
            achieved_ops_s: per_s(replies.successes),
            error_ops_s: per_s(replies.errors),
            send_lag_p50_us: h.value_at_quantile(0.5),
            send_lag_p99_us: h.value_at_quantile(0.99),
            send_lag_p99_9_us: h.value_at_quantile(0.999),
            send_lag_max_us: h.max(),
            unsent: lag.unsent,
        }
    }

    pub fn line(&self) -> String {
        format!(
            "open loop: offered {:.0} ops/s, achieved {:.0} ops/s (successes), {:.0} error replies/s; \
             send lag p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs; {} due ops unsent",
            self.offered_ops_s,
            self.achieved_ops_s,
            self.error_ops_s,
            self.send_lag_p50_us,
            self.send_lag_p99_us,
            self.send_lag_p99_9_us,
            self.send_lag_max_us,
            self.unsent
        )
    }

    pub fn json(&self) -> Value {
        json!({
            "offered_ops_s": self.offered_ops_s,
            "achieved_ops_s": self.achieved_ops_s,
            "error_ops_s": self.error_ops_s,
            "send_lag_p50_us": self.send_lag_p50_us,
            "send_lag_p99_us": self.send_lag_p99_us,
            "send_lag_p99_9_us": self.send_lag_p99_9_us,
            "send_lag_max_us": self.send_lag_max_us,
            "unsent_ops": self.unsent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_start_spread_over_one_interval() {
        let t0 = Instant::now();
        // 4 sessions at 1000 ops/s each: 4000 ops/s in all, one every 250 µs.
        let starts: Vec<_> = (0..4).map(|i| first_due(t0, 1000.0, i, 4) - t0).collect();
        let want: Vec<_> = [0, 250, 500, 750].into_iter().map(Duration::from_micros).collect();
        for (got, want) in starts.iter().zip(&want) {
            assert!(got.abs_diff(*want) < Duration::from_micros(1), "{starts:?}");
        }
    }

    #[test]
    fn ops_due_before_the_deadline_are_counted_with_the_last_partial_interval() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(due_before(t0, t0 + ms(10), ms(1)), 10);
        assert_eq!(due_before(t0, t0 + ms(10) + Duration::from_nanos(1), ms(1)), 11);
        assert_eq!(due_before(t0 + ms(10), t0 + ms(10), ms(1)), 0);
        assert_eq!(due_before(t0 + ms(11), t0 + ms(10), ms(1)), 0);
    }

    #[test]
    fn summary_reports_lag_percentiles_and_rates() {
        let mut a = LagStats::new();
        let mut b = LagStats::new();
        for _ in 0..99 {
            a.record(Duration::ZERO);
        }
        b.record(Duration::from_millis(200));
        b.unsent = 3;
        a.merge(&b);
        let s = Summary::new(&a, 2000.0, Replies { successes: 1000, errors: 0 }, Duration::from_millis(500));
        assert_eq!(s.achieved_ops_s, 2000.0);
        assert_eq!(s.error_ops_s, 0.0);
        assert_eq!(s.send_lag_p50_us, 1);
        assert!(s.send_lag_max_us >= 199_000, "{}", s.send_lag_max_us);
        assert_eq!(s.unsent, 3);
        let v = s.json();
        assert_eq!(v["unsent_ops"], 3);
        assert!(s.line().contains("offered 2000 ops/s, achieved 2000 ops/s"), "{}", s.line());
    }

    #[test]
    fn achieved_counts_successes_and_errors_are_rated_apart() {
        let replies = Replies { successes: 600, errors: 400 };
        let s = Summary::new(&LagStats::new(), 2000.0, replies, Duration::from_millis(500));
        assert_eq!(s.achieved_ops_s, 1200.0);
        assert_eq!(s.error_ops_s, 800.0);
        let v = s.json();
        assert_eq!(v["achieved_ops_s"], 1200.0);
        assert_eq!(v["error_ops_s"], 800.0);
        assert!(s.line().contains("achieved 1200 ops/s (successes), 800 error replies/s"), "{}", s.line());
    }
}
