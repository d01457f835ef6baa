//! The measured work: preloading the keyspace and the measured phase. In a closed loop each
//! session keeps `pipeline` requests outstanding until the shared op budget is spent, so
//! exactly `ops` operations are issued in total (fewer only if the run is interrupted); the
//! sessions are shared out over `threads` threads, each waiting on its sessions with epoll
//! (multiplexed.rs). The open loop keeps one thread per session (open_loop.rs).
//! Latencies go into one HdrHistogram per op kind per session, merged at the end.

mod multiplexed;
mod open_loop;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use engine::types::Acl;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use net::jute::{opcode, Request};

use crate::intervals::{growing_histogram, IntervalLog};
use crate::keys::KeyChooser;
use crate::parse::{Mix, OpKind};
use crate::session::{Completion, Session};

pub use open_loop::{Replies as OpenLoopReplies, Summary as OpenLoopSummary};

/// Parent of every znode loadgen creates.
pub const ROOT: &str = "/loadgen";
/// ZooKeeper's NODEEXISTS: expected when preloading over an earlier run's keys.
const NODE_EXISTS: i32 = -110;
/// Highest latency the histograms track (µs); larger values are clamped and still counted.
const LATENCY_US_MAX: u64 = 3_600_000_000;

/// The node the `a` op checks: a top-level node in another shard than ROOT's among warren's
/// default 8, on the same core whether warren runs 1 or 2 cores (one Raft group), the first
/// `/loadgen-epoch<i>` that qualifies.
pub fn epoch_path() -> String {
    static EPOCH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    EPOCH.get_or_init(|| top_level_beside_root("epoch", true)).clone()
}

/// The node the `g` op checks: a top-level node on the other core than ROOT's of a warren
/// running 2 cores (another Raft group), the first `/loadgen-gepoch<i>` that qualifies.
pub fn group_epoch_path() -> String {
    static EPOCH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    EPOCH.get_or_init(|| top_level_beside_root("gepoch", false)).clone()
}

/// The first `/loadgen-<tag><i>` in another of warren's default 8 shards than ROOT's, on the
/// same core as ROOT's with 2 cores or on the other one.
fn top_level_beside_root(tag: &str, same_core: bool) -> String {
    const SHARDS: u16 = 8;
    let root = engine::path::shard_of(ROOT, SHARDS);
    (0..)
        .map(|i| format!("{ROOT}-{tag}{i}"))
        .find(|p| {
            let shard = engine::path::shard_of(p, SHARDS);
            shard != root && (shard % 2 == root % 2) == same_core
        })
        .expect("some name qualifies")
}

pub fn key_path(k: u64) -> String {
    format!("{ROOT}/k{k:07}")
}

/// What every worker needs, shared read-only (plus the two atomics).
pub struct Plan<'a> {
    pub ops: u64,
    pub mix: Mix,
    pub keys: &'a KeyChooser,
    pub pipeline: usize,
    /// Threads driving the sessions of a closed loop (each over an epoll set).
    pub threads: usize,
    pub value: Vec<u8>,
    pub seed: u64,
    pub run_id: &'a str,
    /// Open loop at this many ops/s per session (`--rate` / clients); None = closed loop.
    pub session_rate: Option<f64>,
    /// Stop issuing after this long, if set (`--duration`); `ops` still bounds the run.
    pub duration: Option<Duration>,
    /// Ops claimed so far; a worker issues an op only if it claims one below `ops`.
    pub claimed: AtomicU64,
    /// Replies received so far (for the progress bar).
    pub completed: AtomicU64,
    pub stop: &'a AtomicBool,
}

impl Plan<'_> {
    fn claim(&self, deadline: Option<Instant>) -> bool {
        if self.stop.load(Ordering::Relaxed) || self.claimed.load(Ordering::Relaxed) >= self.ops {
            return false;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        self.claimed.fetch_add(1, Ordering::Relaxed) < self.ops
    }

    /// As `claim` for an open loop's op due at `due`: the deadline bounds when ops are due,
    /// not when they are sent, so a session that is behind still sends (and counts) every op
    /// due before it. Dropping that backlog would drop exactly the slowest ops.
    fn claim_due(&self, due: Instant, deadline: Option<Instant>) -> bool {
        if self.stop.load(Ordering::Relaxed) || self.claimed.load(Ordering::Relaxed) >= self.ops {
            return false;
        }
        if deadline.is_some_and(|d| due >= d) {
            return false;
        }
        self.claimed.fetch_add(1, Ordering::Relaxed) < self.ops
    }
}

/// Latency and outcome of one op kind. Successful replies and error replies are timed apart:
/// a storm of fast NONODE answers must not pass for throughput nor pull the percentiles down.
pub struct OpStats {
    /// Latencies of successful replies: what ops/s and the percentiles report.
    pub hist: Histogram<u64>,
    /// Latencies of error replies, kept out of `hist`.
    pub error_hist: Histogram<u64>,
    /// Replies received, errors included.
    pub count: u64,
    /// Error replies by ZooKeeper error code.
    pub errors: BTreeMap<i32, u64>,
}

impl OpStats {
    pub fn new() -> OpStats {
        // Errors are usually few: an auto-resizing histogram keeps them from doubling the
        // memory every worker needs.
        let error_hist = growing_histogram();
        OpStats { hist: latency_histogram(), error_hist, count: 0, errors: BTreeMap::new() }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Replies without an error: what throughput counts.
    pub fn successes(&self) -> u64 {
        self.count - self.error_count()
    }

    fn record(&mut self, c: &Completion, now: Instant) {
        let us = latency_us(c, now);
        self.count += 1;
        if c.err == 0 {
            self.hist.saturating_record(us);
        } else {
            self.error_hist.saturating_record(us);
            *self.errors.entry(c.err).or_default() += 1;
        }
    }

    pub fn merge(&mut self, other: &OpStats) {
        self.hist.add(&other.hist).expect("histograms share bounds");
        self.error_hist.add(&other.error_hist).expect("auto-resizing histograms take any value");
        self.count += other.count;
        for (&code, &n) in &other.errors {
            *self.errors.entry(code).or_default() += n;
        }
    }
}

/// The latency of `c` answered at `now`, in µs, within what the histograms track.
fn latency_us(c: &Completion, now: Instant) -> u64 {
    u64::try_from(now.duration_since(c.sent).as_micros()).unwrap_or(u64::MAX).clamp(1, LATENCY_US_MAX)
}

/// A latency histogram in µs over 1..LATENCY_US_MAX, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("static histogram bounds are valid")
}

/// Stats of every op kind, indexed by OpKind::index.
pub struct Stats {
    pub ops: [OpStats; OpKind::COUNT],
    /// Watch notifications the sessions received during the phase (set by `x` ops, fired by
    /// setData).
    pub notifications: u64,
    /// Send lag and unsent ops of an open loop (empty in a closed loop).
    pub open_loop: open_loop::LagStats,
}

impl Stats {
    pub fn new() -> Stats {
        Stats { ops: std::array::from_fn(|_| OpStats::new()), notifications: 0, open_loop: open_loop::LagStats::new() }
    }

    pub fn merge(&mut self, other: &Stats) {
        for (a, b) in self.ops.iter_mut().zip(&other.ops) {
            a.merge(b);
        }
        self.notifications += other.notifications;
        self.open_loop.merge(&other.open_loop);
    }

    pub fn total_count(&self) -> u64 {
        self.ops.iter().map(|o| o.count).sum()
    }

    /// Every op kind merged into one: the `total` row.
    pub fn total(&self) -> OpStats {
        let mut all = OpStats::new();
        for o in &self.ops {
            all.merge(o);
        }
        all
    }
}

/// Told apart from the measured phase's stream by this constant ("WARMUP" in ASCII).
const WARMUP_STREAM: u64 = 0x5741_524D_5550_0000;

/// The seed of the warmup's op stream for a run seeded `seed`. The measured phase uses `seed`
/// itself, so its per-session sequences are the same whatever the warmup length (and the same
/// as a run without warmup), and it does not replay the keys and ops the warmup just touched
/// (they would be hot in the server's caches). Hashed, not offset: splitmix64 seeds a multiple
/// of its increment apart yield the same stream shifted.
pub fn warmup_seed(seed: u64) -> u64 {
    Rng::new(seed ^ WARMUP_STREAM).next_u64()
}

/// splitmix64: tiny, seedable, good enough to pick keys and ops.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (Lemire's multiply-shift; the bias is below 2^-32 for any n we use).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Runs `next` through `s` keeping up to `depth` requests outstanding, handing every reply to
/// `done`, until `next` has nothing more and every reply is in.
fn drive(
    s: &mut Session,
    depth: usize,
    mut next: impl FnMut() -> Option<(Request, u8)>,
    mut done: impl FnMut(Completion) -> Result<()>,
) -> Result<()> {
    let mut exhausted = false;
    loop {
        while !exhausted && s.outstanding() < depth {
            match next() {
                Some((req, tag)) => s.queue(&req, tag),
                None => exhausted = true,
            }
        }
        s.flush()?;
        if s.outstanding() == 0 {
            return Ok(());
        }
        // Take every reply already read before refilling: one write per batch of replies
        // rather than per reply.
        done(s.recv()?)?;
        while s.outstanding() > 0 && s.reply_buffered() {
            done(s.recv()?)?;
        }
    }
}

fn create_request(path: String, data: Vec<u8>) -> Request {
    Request::Create { opcode: opcode::CREATE, path, data: Some(data), acl: Acl::open_unsafe(), flags: 0, ttl_ms: 0 }
}

/// Creates ROOT and keys 0..keys (each `value` bytes), spread over the sessions, one thread
/// each. Keys left by an earlier run (NODEEXISTS) are kept as they are.
pub fn preload(sessions: &mut [Session], keys: u64, value: &[u8], depth: usize, stop: &AtomicBool) -> Result<()> {
    let first = sessions.first_mut().context("no sessions")?;
    drive(first, 1, once(create_request(ROOT.to_string(), Vec::new())), |c| expect_ok(c, "create /loadgen"))?;
    drive(first, 1, once(create_request(epoch_path(), Vec::new())), |c| expect_ok(c, "create the epoch node"))?;
    drive(first, 1, once(create_request(group_epoch_path(), Vec::new())), |c| {
        expect_ok(c, "create the group epoch node")
    })?;
    let n = sessions.len() as u64;
    std::thread::scope(|scope| {
        let handles: Vec<_> = sessions
            .iter_mut()
            .enumerate()
            .map(|(i, s)| {
                scope.spawn(move || {
                    let mut k = i as u64;
                    let next = || {
                        if k >= keys || stop.load(Ordering::Relaxed) {
                            return None;
                        }
                        let req = create_request(key_path(k), value.to_vec());
                        k += n;
                        Some((req, 0))
                    };
                    drive(s, depth, next, |c| expect_ok(c, "preload create"))
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| h.join().expect("preload thread panicked"))
    })?;
    if stop.load(Ordering::Relaxed) {
        bail!("interrupted during preload");
    }
    Ok(())
}

fn once(req: Request) -> impl FnMut() -> Option<(Request, u8)> {
    let mut req = Some(req);
    move || req.take().map(|r| (r, 0))
}

fn expect_ok(c: Completion, what: &str) -> Result<()> {
    match c.err {
        0 | NODE_EXISTS => Ok(()),
        e => bail!("{what} failed with ZooKeeper error {}", crate::report::error_name(e)),
    }
}

/// Checks the server serves reads before timing starts: getData of key 0 after a preload,
/// else exists("/").
pub fn verify(s: &mut Session, preloaded: bool) -> Result<()> {
    let (req, what) = if preloaded {
        (Request::GetData { path: key_path(0), watch: false }, format!("getData {}", key_path(0)))
    } else {
        (Request::Exists { path: "/".into(), watch: false }, "exists /".to_string())
    };
    let addr = s.addr();
    drive(s, 1, once(req), |c| match c.err {
        0 => Ok(()),
        e => bail!("{addr} did not answer {what}: error {}", crate::report::error_name(e)),
    })
}

/// One session's stream of ops: the op kind from the mix, the key from the chooser, and the
/// znodes its creates made (what its deletes remove).
struct OpGen<'p, 'a> {
    id: usize,
    plan: &'p Plan<'a>,
    rng: Rng,
    /// Znodes this session created with `c`, oldest first: what `d` deletes. The session's
    /// FIFO order guarantees a create is applied before a delete queued after it.
    created: VecDeque<String>,
    create_seq: u64,
}

impl<'p, 'a> OpGen<'p, 'a> {
    fn new(id: usize, plan: &'p Plan<'a>) -> Self {
        let rng = Rng::new(plan.seed ^ (id as u64).wrapping_mul(0xA24B_AED4_963E_E407));
        OpGen { id, plan, rng, created: VecDeque::new(), create_seq: 0 }
    }

    fn next(&mut self) -> (Request, u8) {
        let (plan, id) = (self.plan, self.id);
        let kind = plan.mix.pick(self.rng.below(100) as u32);
        let req = match kind {
            OpKind::Read => Request::GetData { path: key_path(plan.keys.pick(&mut self.rng)), watch: false },
            OpKind::Watch => Request::GetData { path: key_path(plan.keys.pick(&mut self.rng)), watch: true },
            OpKind::Write => {
                let path = key_path(plan.keys.pick(&mut self.rng));
                Request::SetData { path, data: Some(plan.value.clone()), version: -1 }
            }
            OpKind::Create => {
                let path = format!("{ROOT}/c-{}-{id}-{}", plan.run_id, self.create_seq);
                self.create_seq += 1;
                self.created.push_back(path.clone());
                create_request(path, plan.value.clone())
            }
            OpKind::Delete => {
                // Nothing of ours to delete yet: a path never created, answered NONODE.
                let path = self.created.pop_front().unwrap_or_else(|| format!("{ROOT}/c-{}-{id}-none", plan.run_id));
                Request::Delete { path, version: -1 }
            }
            OpKind::Multi | OpKind::MultiAcross | OpKind::MultiGroups => {
                let checked = match kind {
                    OpKind::Multi => key_path(plan.keys.pick(&mut self.rng)),
                    OpKind::MultiAcross => epoch_path(),
                    _ => group_epoch_path(),
                };
                let path = key_path(plan.keys.pick(&mut self.rng));
                Request::Multi(vec![
                    Request::Check { path: checked, version: -1 },
                    Request::SetData { path, data: Some(plan.value.clone()), version: -1 },
                ])
            }
        };
        (req, kind.index() as u8)
    }
}

/// Records completions, per second into the interval log too, and reports them to the
/// progress counter in batches.
struct Recorder<'p> {
    stats: Stats,
    unreported: u64,
    completed: &'p AtomicU64,
    /// This worker's index in the interval log.
    worker: usize,
    log: &'p IntervalLog,
    /// The interval `current` holds (successful replies' latencies per op kind), and when it
    /// ends: one comparison per op instead of a division.
    interval: u64,
    interval_end: Instant,
    current: Vec<Histogram<u64>>,
}

impl<'p> Recorder<'p> {
    fn new(worker: usize, completed: &'p AtomicU64, log: &'p IntervalLog) -> Recorder<'p> {
        let current = (0..OpKind::COUNT).map(|_| growing_histogram()).collect();
        let interval_end = log.end_of(0);
        Recorder { stats: Stats::new(), unreported: 0, completed, worker, log, interval: 0, interval_end, current }
    }

    fn record(&mut self, c: &Completion) -> Result<()> {
        let now = Instant::now();
        self.stats.ops[usize::from(c.tag)].record(c, now);
        if now >= self.interval_end {
            let interval = self.log.interval_of(now);
            self.log.hand_over(self.worker, self.interval, &self.current, Some(interval))?;
            self.current.iter_mut().for_each(Histogram::reset);
            self.interval = interval;
            self.interval_end = self.log.end_of(interval);
        }
        if c.err == 0 {
            // `record`, not `saturating_record`: the interval's histogram grows to hold the
            // value (a saturating record clamped every second's latencies at its first bound).
            let us = latency_us(c, now);
            let interval = &mut self.current[usize::from(c.tag)];
            if interval.record(us).is_err() {
                interval.saturating_record(us);
            }
        }
        self.unreported += 1;
        if self.unreported == 64 {
            self.completed.fetch_add(self.unreported, Ordering::Relaxed);
            self.unreported = 0;
        }
        Ok(())
    }

    fn finish(self) -> Result<Stats> {
        self.completed.fetch_add(self.unreported, Ordering::Relaxed);
        self.log.hand_over(self.worker, self.interval, &self.current, None)?;
        Ok(self.stats)
    }
}

/// One open-loop worker over its session.
fn open_loop_worker(
    (id, sessions): (usize, usize),
    s: &mut Session,
    plan: &Plan<'_>,
    rate: f64,
    (start, deadline): (Instant, Option<Instant>),
    log: &IntervalLog,
) -> Result<Stats> {
    let mut ops = OpGen::new(id, plan);
    let mut rec = Recorder::new(id, &plan.completed, log);
    let notifications_before = s.notifications;
    let first = open_loop::first_due(start, rate, id, sessions);
    open_loop::run(s, plan, rate, first, deadline, &mut ops, &mut rec)?;
    let mut stats = rec.finish()?;
    stats.notifications = s.notifications - notifications_before;
    Ok(stats)
}

/// What a phase measured: the merged stats, its wall time and its per-second interval log.
pub struct Phase {
    pub stats: Stats,
    pub elapsed: Duration,
    /// The HdrHistogram interval log text (see intervals.rs).
    pub interval_log: Vec<u8>,
}

/// Runs the phase on every session and returns what it measured: a closed loop on
/// `plan.threads` threads, each multiplexing its share of the sessions, or an open loop on one
/// thread per session. A thread that fails stops the others.
pub fn run_phase(sessions: &mut [Session], plan: &Plan<'_>, progress: bool) -> Result<Phase> {
    let start = Instant::now();
    let deadline = plan.duration.map(|d| start + d);
    let n = sessions.len();
    let per_thread = match plan.session_rate {
        None => n.div_ceil(plan.threads.clamp(1, n.max(1))).max(1),
        Some(_) => 1,
    };
    // One recorder per thread: a thread's sessions share its histograms.
    let log = IntervalLog::new(n.div_ceil(per_thread), start);
    let results: Vec<Result<Stats>> = std::thread::scope(|scope| {
        let log = &log;
        let handles: Vec<_> = sessions
            .chunks_mut(per_thread)
            .enumerate()
            .map(|(t, share)| {
                let first_id = t * per_thread;
                scope.spawn(move || {
                    let r = match plan.session_rate {
                        None => multiplexed::run((t, first_id), share, plan, deadline, log),
                        Some(rate) => open_loop_worker((t, n), &mut share[0], plan, rate, (start, deadline), log)
                            .with_context(|| format!("session {first_id}")),
                    };
                    if r.is_err() {
                        plan.stop.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        report_progress(&handles, plan, start, progress);
        handles.into_iter().map(|h| h.join().expect("worker thread panicked")).collect()
    });
    let elapsed = start.elapsed();
    let mut stats = Stats::new();
    for r in results {
        stats.merge(&r?);
    }
    let ran = std::array::from_fn(|k| stats.ops[k].count > 0);
    let interval_log = log.finish(elapsed, &ran)?;
    Ok(Phase { stats, elapsed, interval_log })
}

/// While workers run: a live indicatif progress bar on stderr, if asked for (stderr is a
/// terminal). It shows ops completed of --ops (or time elapsed of --duration when the run is
/// bounded by time only) and the throughput over roughly the last second. Without it, nothing
/// is drawn, so logs and tests stay clean.
fn report_progress<T>(handles: &[std::thread::ScopedJoinHandle<'_, T>], plan: &Plan<'_>, start: Instant, on: bool) {
    const TICK: Duration = Duration::from_millis(100);
    let bar = on.then(|| progress_bar(plan));
    let mut recent = RecentRate::new(start, Duration::from_secs(1));
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(TICK);
        let Some(bar) = &bar else { continue };
        let now = Instant::now();
        let done = plan.completed.load(Ordering::Relaxed);
        let rate = recent.sample(now, done);
        let elapsed = now.duration_since(start);
        match (plan.ops, plan.duration) {
            (u64::MAX, Some(d)) => {
                bar.set_position(elapsed.min(d).as_millis() as u64);
                bar.set_message(format!("{done} ops  {rate:.0} ops/s"));
            }
            _ => {
                bar.set_position(done);
                bar.set_message(format!("{rate:.0} ops/s"));
            }
        }
    }
    if let Some(bar) = bar {
        if plan.ops != u64::MAX {
            bar.set_position(plan.completed.load(Ordering::Relaxed));
        }
        // Interrupted (or a worker failed): the bar stays where the run stopped.
        if plan.stop.load(Ordering::Relaxed) {
            bar.abandon();
        } else {
            bar.finish();
        }
        // indicatif leaves the cursor on the bar's line; what follows starts on the next one.
        eprintln!();
    }
}

/// Throughput over a sliding window: ops/s between the oldest sample still at least `window`
/// old (or the first one) and the newest.
struct RecentRate {
    window: Duration,
    /// (time, ops completed) samples, oldest first.
    samples: VecDeque<(Instant, u64)>,
}

impl RecentRate {
    fn new(start: Instant, window: Duration) -> RecentRate {
        RecentRate { window, samples: VecDeque::from([(start, 0)]) }
    }

    /// Adds a sample and returns the ops/s over about the last `window`.
    fn sample(&mut self, now: Instant, done: u64) -> f64 {
        self.samples.push_back((now, done));
        // Drop the oldest while the next one still spans the whole window.
        while self.samples.len() > 2 && now.duration_since(self.samples[1].0) >= self.window {
            self.samples.pop_front();
        }
        let (t0, d0) = self.samples[0];
        done.saturating_sub(d0) as f64 / now.duration_since(t0).as_secs_f64().max(1e-3)
    }
}

/// The bar for `plan`: ops of --ops, or milliseconds of --duration when ops are unbounded.
fn progress_bar(plan: &Plan<'_>) -> ProgressBar {
    let (len, template) = match (plan.ops, plan.duration) {
        (u64::MAX, Some(d)) => {
            (d.as_millis() as u64, "  [{elapsed_precise}] {wide_bar} {percent:>3}% of {duration_s}  {msg}")
        }
        (ops, _) => (ops, "  [{elapsed_precise}] {wide_bar} {pos}/{len} ops  {msg}"),
    };
    let template =
        template.replace("{duration_s}", &format!("{:.1}s", plan.duration.unwrap_or_default().as_secs_f64()));
    let style =
        ProgressStyle::with_template(&template).expect("static progress template is valid").progress_chars("=> ");
    ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(10)).with_style(style)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..1000 {
            let x = a.below(10);
            assert_eq!(x, b.below(10));
            assert!(x < 10);
        }
        let mut c = Rng::new(1);
        let mut seen = [0u32; 4];
        for _ in 0..4000 {
            seen[c.below(4) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
    }

    #[test]
    fn stats_merge_adds_counts_errors_and_histograms_apart() {
        let mut a = Stats::new();
        let mut b = Stats::new();
        let t0 = Instant::now();
        let c = |err| Completion { tag: 0, sent: t0, err };
        a.ops[0].record(&c(0), t0 + Duration::from_micros(100));
        b.ops[0].record(&c(-101), t0 + Duration::from_micros(300));
        b.ops[1].record(&c(0), t0 + Duration::from_micros(50));
        a.notifications = 2;
        b.notifications = 3;
        a.merge(&b);
        assert_eq!(a.notifications, 5);
        assert_eq!(a.ops[0].count, 2);
        assert_eq!(a.ops[0].errors.get(&-101), Some(&1));
        // The error's latency stays out of the success histogram.
        assert_eq!(a.ops[0].hist.len(), 1);
        assert!(a.ops[0].hist.max() < 110);
        assert_eq!(a.ops[0].error_hist.len(), 1);
        assert!(a.ops[0].error_hist.max() >= 299);
        assert_eq!(a.ops[0].successes(), 1);
        assert_eq!(a.ops[1].count, 1);
        assert_eq!(a.total_count(), 3);
    }

    #[test]
    fn a_second_of_the_interval_log_keeps_latencies_past_its_histograms_first_bound() {
        let log = IntervalLog::new(1, Instant::now());
        let completed = AtomicU64::new(0);
        let mut recorder = Recorder::new(0, &completed, &log);
        let sent = Instant::now().checked_sub(Duration::from_millis(300)).expect("the clock is past 300 ms");
        recorder.record(&Completion { tag: 0, sent, err: 0 }).unwrap();
        // A stall of 300 ms shows as one, not as the 2 ms an unresized histogram holds.
        assert!(recorder.current[0].max() >= 299_000, "{}", recorder.current[0].max());
    }

    #[test]
    fn recent_rate_follows_the_last_second() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut r = RecentRate::new(t0, Duration::from_secs(1));
        // 1000 ops/s for 2 s...
        for i in 1..=20 {
            let rate = r.sample(at(i * 100), i * 100);
            assert!((rate - 1000.0).abs() < 1e-6, "{i}: {rate}");
        }
        // ...then 10,000 ops/s: after a second the old rate has left the window.
        let mut rate = 0.0;
        for i in 1..=10 {
            rate = r.sample(at(2000 + i * 100), 2000 + i * 1000);
        }
        assert!((rate - 10_000.0).abs() < 1e-6, "{rate}");
        // Never older than the window plus one tick.
        assert!(r.samples.len() <= 12, "{}", r.samples.len());
    }

    fn test_plan<'a>(keys: &'a KeyChooser, stop: &'a AtomicBool, seed: u64) -> Plan<'a> {
        Plan {
            ops: 1000,
            mix: crate::parse::parse_mix("50r50w").unwrap(),
            keys,
            pipeline: 1,
            threads: 1,
            value: vec![b'v'; 4],
            seed,
            run_id: "test",
            session_rate: None,
            duration: None,
            claimed: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            stop,
        }
    }

    fn first_ops(plan: &Plan<'_>, session: usize, n: usize) -> Vec<Request> {
        let mut gen = OpGen::new(session, plan);
        (0..n).map(|_| gen.next().0).collect()
    }

    #[test]
    fn warmup_draws_from_its_own_stream_and_the_measured_one_is_reproducible() {
        let keys = KeyChooser::new(crate::keys::Distribution::Uniform, 1_000_000, 0.99);
        let stop = AtomicBool::new(false);
        for seed in [0, 7, u64::MAX] {
            let measured = test_plan(&keys, &stop, seed);
            let warmup = test_plan(&keys, &stop, warmup_seed(seed));
            for session in 0..3 {
                let ops = first_ops(&measured, session, 20);
                // Over a million keys, no op (kind and key) of the warmup's first 20 recurs at
                // the same place in the measured phase's.
                let replayed = ops.iter().zip(first_ops(&warmup, session, 20)).filter(|(a, b)| **a == *b).count();
                assert_eq!(replayed, 0, "seed {seed} session {session}");
                // Same seed, same measured sequence, however long the warmup before it was.
                assert_eq!(ops, first_ops(&test_plan(&keys, &stop, seed), session, 20));
            }
        }
        assert_ne!(warmup_seed(1), warmup_seed(2));
    }

    #[test]
    fn key_paths_sort_with_their_numbers() {
        assert_eq!(key_path(0), "/loadgen/k0000000");
        assert_eq!(key_path(9_999_999), "/loadgen/k9999999");
    }
}
