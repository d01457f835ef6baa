//! `loadgen`: measures throughput and latency of any ZooKeeper-protocol server (Warren or
//! Apache ZooKeeper). Closed loop: --clients sessions, each with --pipeline requests
//! outstanding, until exactly --ops operations are done. Prints a percentile table per op type
//! and writes results/<version>/<run-id>.json.

mod canned;
mod compare;
mod epoll;
mod fsyncs;
mod intervals;
mod keys;
mod local;
mod parse;
mod plot;
mod procinfo;
mod report;
mod run;
mod session;
mod target;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::keys::{Distribution, KeyChooser};
use crate::local::LocalWarren;
use crate::parse::{parse_count, parse_duration, parse_mix, parse_pids, parse_servers, Mix, OpKind};
use crate::procinfo::ServerCpu;
use crate::report::{Settings, Summary};
use crate::session::{resolve, Session};
use crate::target::Target;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Set by SIGINT/SIGTERM: workers stop issuing, drain what is outstanding, and the run reports.
static STOP: AtomicBool = AtomicBool::new(false);
/// Set by SIGINT/SIGTERM only (STOP is also set by a failing worker to stop the others).
static SIGNALLED: AtomicBool = AtomicBool::new(false);

/// Largest pipeline depth: bounds the bytes in flight per session (and so the socket buffers a
/// stalled server could fill).
const PIPELINE_MAX: usize = 1024;
/// Largest --value-size: ZooKeeper's default jute.maxbuffer is 1 MiB for a whole request.
const VALUE_BYTES_MAX: usize = 1 << 20;

const EXAMPLES: &str = "\
Examples:
  loadgen --ops 1M --mix 90r10w
      start a local 3-node warren cluster (--nodes 1: a single node), run 1,000,000 ops,
      90% getData / 10% setData, print the table, write results/<version>/<run-id>.json
  loadgen --ops 500k --mix 100w --clients 32 --pipeline 16
  loadgen --duration 30s --warmup 20k --mix 50r50w --seed 42
  loadgen --rate 20k --duration 60s --pipeline 64 --key-distribution zipf
      open loop at 20,000 ops/s; latency counts from each op's intended send time
  loadgen --ops 200k --mix 80r10w5c5d --servers 127.0.0.1:2181,127.0.0.1:2182
      against running servers (Warren or Apache ZooKeeper); sessions round-robin over them
  loadgen --ops 100k --mix 80r10w10x --keys 1000
      10% of ops are getData with watch=true; setData fires the watches, notifications counted
  loadgen compare results/0.1.0/A.json results/0.2.0 --fail-on-regression 10 --plot cmp.html
      side by side with the change of every percentile and throughput (a folder = its newest run);
      runs differing in settings, target kind or machine are listed under a WARNING, and with
      --fail-on-regression refused (exit 2) unless --allow-different-settings
  loadgen canned-server --port 2191 &   loadgen --servers 127.0.0.1:2191 --ops 1M
      loadgen's own ceiling: a server that answers every request with a canned reply

Numbers: 2000, 500k, 1M, 2.5M, 1_000_000 (k = 10^3, M = 10^6, G = 10^9).
Mix: <percent><op>... summing to 100; ops: r = getData, w = setData (of preloaded keys),
  c = create of a new znode, d = delete of the oldest znode this session created
  (NONODE, counted as an error, when it has none), x = getData with watch=true of a
  preloaded key (row getWatch; the data watch fires on a later setData of that key and its
  notification is counted in the \"watch notifications received\" line, watch_notifications in
  the JSON), m = multi of a check of one key and a setData of another, a = multi of a check
  of /loadgen-epoch<i> and a setData of a key (two top-level subtrees). E.g. 90r10w, 100r,
  50r50w, 80r10w5c5d, 80r10w10x, 50m50a.
Keys are /loadgen/k0000000.. picked uniformly at random from --seed (the warmup from its
own stream derived from it); ops/s and latencies (microseconds) are of successful replies,
errors are counted, rated and timed apart. On a terminal a live progress bar
(ops or time done, ops/s over the last second) is drawn to stderr; piped, nothing is.
Ctrl-C stops the run and still reports.";

/// `loadgen --version`: the release and the git commit it was built from (see build.rs);
/// bench/sweep.sh reads the release as the second word.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("WARREN_GIT_COMMIT"), ")");

#[derive(Debug, Parser)]
#[command(
    version = VERSION,
    about = "Load generator for ZooKeeper-protocol servers (Warren, Apache ZooKeeper)",
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Put result JSONs (or release folders: their newest run) side by side, with each value's
    /// change relative to the first
    Compare {
        /// Result .json files or folders like results/0.1.0; the first is the baseline
        #[arg(required = true, num_args = 2..)]
        runs: Vec<PathBuf>,
        /// Flag changes worse than this many percent
        #[arg(long, default_value_t = 5.0)]
        threshold: f64,
        /// Exit 1 if any change is worse than this many percent (for CI); refuses, with exit 2,
        /// runs that differ in settings, target kind or machine
        #[arg(long, value_name = "PCT")]
        fail_on_regression: Option<f64>,
        /// With --fail-on-regression, judge runs even when their settings, target kind or
        /// machine differ (the differences are still printed as a warning)
        #[arg(long)]
        allow_different_settings: bool,
        /// Also draw the runs' latency-by-percentile curves into this .html or .svg file
        #[arg(long, value_name = "FILE")]
        plot: Option<PathBuf>,
    },
    /// Serve canned replies on 127.0.0.1 (no tree, no disk) so a run against it measures
    /// loadgen's own ceiling: getData gets --value-size bytes and a Stat, setData/exists a Stat,
    /// create its path, delete/ping/closeSession an empty reply, other ops ZUNIMPLEMENTED.
    /// Prints `canned-server listening on <addr>`; runs until killed
    CannedServer {
        /// Port on 127.0.0.1 (0 = any free port, printed)
        #[arg(long, default_value_t = 2181)]
        port: u16,
        /// Bytes of data in every getData reply
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=VALUE_BYTES_MAX as u64))]
        value_size: u64,
        /// Stop answering for MS milliseconds once, when the N-th request (over all
        /// connections) arrives, then answer everything queued; repeatable (e.g. 10k:200)
        #[arg(long, value_name = "N:MS", value_parser = canned::parse_stall)]
        stall_ms_at: Vec<canned::Stall>,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Total operations to run (e.g. 1M, 500k, 2000) [default: 100k, or unbounded with --duration]
    #[arg(long, value_parser = parse_count)]
    ops: Option<u64>,
    /// Run for this long instead (e.g. 30s, 2m); with --ops too, whichever comes first
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Open loop: offer this many ops/s in total (e.g. 20k), latency measured from each op's
    /// intended send time (no coordinated omission); every op due before --duration ends is
    /// sent and counted; offered vs achieved rate and send lag are reported. Without it,
    /// closed loop
    #[arg(long, value_parser = parse_count)]
    rate: Option<u64>,
    /// Operations to run first, unmeasured, with the same settings but their own key and op
    /// stream (e.g. 10k)
    #[arg(long, value_parser = parse_count, default_value = "0")]
    warmup: u64,
    /// Operation mix, e.g. 90r10w, 100r, 80r10w5c5d, 80r10w10x, 50m50a (r getData, w setData,
    /// c create, d delete, x getData with a watch, m multi in one subtree, a multi across two)
    #[arg(long, value_parser = parse_mix, default_value = "90r10w")]
    mix: Mix,
    /// Servers host:port,... to measure; without it loadgen starts a local warren
    #[arg(long, value_parser = parse_server_list)]
    servers: Option<ServerList>,
    /// Sessions, spread round-robin over the servers
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4096))]
    clients: u64,
    /// Outstanding requests per session (closed loop)
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=PIPELINE_MAX as u64))]
    pipeline: u64,
    /// Threads driving the sessions of a closed loop, each waiting on its share of them with
    /// epoll [default: the CPUs loadgen may run on, at most --clients]. The open loop (--rate)
    /// runs one thread per session
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
    threads: Option<u64>,
    /// Keys in the keyspace (/loadgen/k0000000..)
    #[arg(long, value_parser = parse_count, default_value = "10000")]
    keys: u64,
    /// How r/w ops pick keys: uniform, or zipf (key 0 hottest)
    #[arg(long, value_enum, default_value_t = Distribution::Uniform)]
    key_distribution: Distribution,
    /// Exponent s of --key-distribution zipf (weight of rank k is 1/(k+1)^s)
    #[arg(long, default_value_t = 0.99)]
    zipf_exponent: f64,
    /// Bytes of data per preloaded key, setData and create
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Seed for key and op choice; the same seed gives the same measured ops per session,
    /// whatever --warmup [default: from the clock; recorded in the JSON]
    #[arg(long)]
    seed: Option<u64>,
    /// Skip creating the keys first (they must exist, or reads and writes fail with NONODE)
    #[arg(long)]
    no_preload: bool,
    /// Where results/<version>/<run-id>.json go
    #[arg(long, default_value = "results")]
    results_dir: PathBuf,
    /// Executors of each local warren node (only without --servers)
    #[arg(long, default_value_t = 1)]
    server_cores: usize,
    /// Nodes of the local warren cluster (only without --servers); 1 runs a single node
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=7))]
    nodes: u8,
    /// Server processes (PID[,PID...], each must be live) whose CPU time during the measured
    /// phase is recorded; the local warren loadgen starts is always included
    #[arg(long, value_name = "PID[,PID...]", value_parser = parse_pid_list)]
    server_pid: Option<PidList>,
}

/// `--server-pid` as one value (clap would read a bare Vec as a repeatable flag).
#[derive(Debug, Clone)]
struct PidList(Vec<u32>);

fn parse_pid_list(s: &str) -> Result<PidList, String> {
    parse_pids(s).map(PidList)
}

/// `--servers` as one value (clap would read a bare Vec as a repeatable flag).
#[derive(Debug, Clone)]
struct ServerList(Vec<String>);

fn parse_server_list(s: &str) -> Result<ServerList, String> {
    parse_servers(s).map(ServerList)
}

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
    if SIGNALLED.swap(true, Ordering::SeqCst) {
        // Second Ctrl-C: leave now. The local warren dies with us (PR_SET_PDEATHSIG).
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

fn install_signal_handlers() {
    // SAFETY: the handler only touches an atomic and calls _exit, both async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
    }
}

/// Whether the user interrupted the run (Ctrl-C or SIGTERM).
fn stopped() -> bool {
    SIGNALLED.load(Ordering::Relaxed)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Sub::Compare { runs, threshold, fail_on_regression, allow_different_settings, plot }) = &cli.command {
        let judge =
            Judge { fail_on_regression: *fail_on_regression, allow_different_settings: *allow_different_settings };
        return match run_compare(runs, *threshold, judge, plot.as_deref()) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("loadgen: error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Sub::CannedServer { port, value_size, stall_ms_at }) = &cli.command {
        let cfg = canned::Config { port: *port, value_size: *value_size as usize, stalls: stall_ms_at.clone() };
        return match canned::serve(cfg) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loadgen: error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let result = run_cli(&cli.run);
    if stopped() {
        // Interrupted: whatever was measured has been reported; 130 is the shell's code for
        // SIGINT.
        if let Err(e) = result {
            eprintln!("loadgen: interrupted: {e:#}");
        }
        return ExitCode::from(130);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_cli(cli: &RunArgs) -> Result<()> {
    if cli.ops == Some(0) {
        bail!("--ops must be positive");
    }
    if cli.rate == Some(0) {
        bail!("--rate must be positive");
    }
    if cli.value_size > VALUE_BYTES_MAX {
        bail!("--value-size {} exceeds {VALUE_BYTES_MAX} bytes", cli.value_size);
    }
    let keyed = [OpKind::Read, OpKind::Write, OpKind::Watch, OpKind::Multi, OpKind::MultiAcross, OpKind::MultiGroups];
    if cli.keys == 0 && keyed.iter().any(|k| cli.mix.percent[k.index()] > 0) {
        bail!("--keys 0 leaves nothing for r/w/x/m/a ops to read, write or watch");
    }
    let mut server_pids = cli.server_pid.as_ref().map(|p| p.0.clone()).unwrap_or_default();
    for &pid in &server_pids {
        procinfo::check_live(pid)?;
    }
    install_signal_handlers();
    // Kept alive until main returns: dropping it stops warren and removes its data.
    let mut local_server = None;
    let servers = match &cli.servers {
        Some(s) => s.0.clone(),
        None => {
            let shape = match cli.nodes {
                1 => "a single node".to_string(),
                n => format!("a {n}-node cluster"),
            };
            eprintln!("loadgen: starting a local warren ({}): {shape}", local::warren_bin()?.display());
            let w = LocalWarren::start(cli.nodes as usize, cli.server_cores, &stopped)?;
            for pid in w.pids() {
                if !server_pids.contains(&pid) {
                    server_pids.push(pid);
                }
            }
            let addrs = w.addrs.iter().map(ToString::to_string).collect();
            local_server = Some(w);
            addrs
        }
    };
    let result = run(cli, &servers, local_server.is_some(), &server_pids);
    drop(local_server);
    result
}

/// Default --ops when neither --ops nor --duration is given.
const OPS_DEFAULT: u64 = 100_000;

/// Runs against `servers`; `server_pids` are the server processes whose CPU time is measured.
fn run(cli: &RunArgs, servers: &[String], local: bool, server_pids: &[u32]) -> Result<()> {
    let addrs = servers.iter().map(|s| resolve(s)).collect::<Result<Vec<_>>>()?;
    let target = Target::probe(servers, &addrs);
    let target_version = target.servers[0].version_or_reason();
    let started = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let run_id = report::run_id(started.as_secs());
    let ops = cli.ops.unwrap_or(if cli.duration.is_some() { u64::MAX } else { OPS_DEFAULT });
    let settings = Settings {
        ops: (ops != u64::MAX).then_some(ops),
        duration_s: cli.duration.map(|d| d.as_secs_f64()),
        warmup_ops: cli.warmup,
        rate: cli.rate,
        mix: cli.mix,
        servers: servers.to_vec(),
        local_cluster: local,
        clients: cli.clients as usize,
        pipeline: cli.pipeline as usize,
        threads: client_threads(cli),
        keys: cli.keys,
        key_distribution: cli.key_distribution,
        zipf_exponent: (cli.key_distribution == Distribution::Zipf).then_some(cli.zipf_exponent),
        value_size: cli.value_size,
        seed: cli.seed.unwrap_or(started.as_nanos() as u64),
        preload: !cli.no_preload,
    };
    eprintln!(
        "loadgen: target {} ({target_version}; {}); {}, mix {}, {} clients x pipeline {} on {} threads, {} keys of {} B, seed {}",
        servers.join(","),
        target.cluster(),
        budget(&settings),
        cli.mix,
        settings.clients,
        settings.pipeline,
        settings.threads,
        cli.keys,
        cli.value_size,
        settings.seed
    );
    let mut sessions = prepare(&addrs, &settings)?;
    let chooser = KeyChooser::new(cli.key_distribution, cli.keys.max(1), cli.zipf_exponent);
    if cli.warmup > 0 {
        eprintln!("loadgen: warming up with {} ops", cli.warmup);
        let warmup_id = format!("{run_id}-warmup");
        let mut plan = plan(&settings, &chooser, cli.warmup, None, &warmup_id);
        plan.seed = run::warmup_seed(settings.seed);
        run::run_phase(&mut sessions, &plan, false).context("warmup")?;
    }
    eprintln!("loadgen: running");
    let plan = plan(&settings, &chooser, ops, cli.duration, &run_id);
    let load_before = procinfo::load_average();
    let server_cpu_before = procinfo::sample_cpu(server_pids);
    let switches_before = procinfo::read_switches(server_pids);
    let log_before = fsyncs::sample(&addrs);
    let cpu_before = own_cpu();
    let run::Phase { stats, elapsed, interval_log } =
        run::run_phase(&mut sessions, &plan, std::io::stderr().is_terminal())?;
    let loadgen_cpu = own_cpu().saturating_sub(cpu_before);
    let modes: Vec<(String, Option<String>)> =
        target.servers.iter().map(|s| (s.addr.clone(), s.mode.clone())).collect();
    let log_writes = fsyncs::PhaseLogWrites::between(&modes, &log_before, &fsyncs::sample(&addrs), elapsed);
    let server_cpu_after = procinfo::sample_cpu(server_pids);
    let switches =
        procinfo::PhaseSwitches::between(server_pids, &switches_before, &procinfo::read_switches(server_pids));
    let load_after = procinfo::load_average();
    let server_cpu =
        (!server_pids.is_empty()).then(|| ServerCpu::between(server_pids, &server_cpu_before, &server_cpu_after));
    for s in sessions {
        // Best effort: the measurement is done; a failed close only delays the server's cleanup.
        if let Err(e) = s.close() {
            eprintln!("loadgen: warning: {e:#}");
        }
    }
    let interrupted = stopped();
    if interrupted {
        eprintln!("loadgen: interrupted after {} ops", stats.total_count());
    }
    print_summary(&stats, elapsed, loadgen_cpu, cli.mix.percent[OpKind::Watch.index()] > 0);
    let total = stats.total();
    if let Some(cpu) = &server_cpu {
        println!("{}", cpu.line(total.successes()));
    }
    println!("{}", switches.line(total.count));
    println!("{}", log_writes.line());
    let replies = run::OpenLoopReplies { successes: total.successes(), errors: total.error_count() };
    let open_loop = cli.rate.map(|r| run::OpenLoopSummary::new(&stats.open_loop, r as f64, replies, elapsed));
    if let Some(o) = &open_loop {
        println!("{}", o.line());
    }
    let summary = Summary {
        run_id: &run_id,
        settings: &settings,
        target: &target,
        stats: &stats,
        elapsed,
        interrupted,
        loadgen_cpu,
    };
    let mut json = report::summary_json(&summary);
    if let Some(o) = &open_loop {
        json["open_loop"] = o.json();
    }
    json["server_cpu"] = server_cpu.map_or(serde_json::Value::Null, |c| c.json(total.successes()));
    json["context_switches"] = switches.json(total.count);
    json["log_writes"] = log_writes.json();
    json["pinning"] = procinfo::pinning_json(server_pids);
    json["load_average"] = serde_json::json!({ "before": load_before, "after": load_after });
    let path = report::write_results(&cli.results_dir, &run_id, json, &stats, &interval_log)?;
    println!("results: {}", path.display());
    Ok(())
}

/// Opens the sessions round-robin over `addrs`, preloads the keys unless told not to, and checks
/// the server answers a read, all before timing starts.
fn prepare(addrs: &[std::net::SocketAddr], settings: &Settings) -> Result<Vec<Session>> {
    let mut sessions = Vec::with_capacity(settings.clients);
    for i in 0..settings.clients {
        sessions.push(Session::connect(addrs[i % addrs.len()])?);
    }
    if settings.preload {
        eprintln!("loadgen: preloading {} keys", settings.keys);
        let n = sessions.len().min(settings.keys.max(1) as usize);
        let value = vec![b'x'; settings.value_size];
        run::preload(&mut sessions[..n], settings.keys, &value, settings.pipeline, &STOP)?;
    }
    run::verify(&mut sessions[0], settings.preload && settings.keys > 0).context("server check before timing")?;
    Ok(sessions)
}

/// Threads driving the sessions: --threads (or the CPUs loadgen may run on) for a closed loop,
/// at most one per session; one per session for an open loop.
fn client_threads(cli: &RunArgs) -> usize {
    if cli.rate.is_some() {
        return cli.clients as usize;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cli.threads.map_or(cpus, |t| t as usize)).clamp(1, cli.clients as usize)
}

fn budget(s: &Settings) -> String {
    match (s.ops, s.duration_s) {
        (Some(ops), None) => format!("{ops} ops"),
        (None, Some(d)) => format!("{d} s"),
        (Some(ops), Some(d)) => format!("{ops} ops or {d} s"),
        (None, None) => unreachable!("ops defaults without --duration"),
    }
}

fn plan<'a>(
    s: &Settings,
    keys: &'a KeyChooser,
    ops: u64,
    duration: Option<Duration>,
    run_id: &'a str,
) -> run::Plan<'a> {
    run::Plan {
        ops,
        duration,
        mix: s.mix,
        session_rate: s.rate.map(|r| r as f64 / s.clients as f64),
        keys,
        pipeline: s.pipeline,
        threads: s.threads,
        value: vec![b'v'; s.value_size],
        seed: s.seed,
        run_id,
        claimed: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        stop: &STOP,
    }
}

fn print_summary(stats: &run::Stats, elapsed: Duration, loadgen_cpu: Duration, watches: bool) {
    print!("{}", report::table(stats, elapsed));
    if watches || stats.notifications > 0 {
        println!("watch notifications received: {}", stats.notifications);
    }
    let total = stats.total();
    println!(
        "overall: {} ops ({} errors) in {:.3} s = {:.0} successful ops/s",
        total.count,
        total.error_count(),
        elapsed.as_secs_f64(),
        total.successes() as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    // loadgen's cost is per reply handled, errors included: it did the same work for them.
    println!(
        "loadgen CPU: {:.3} s (user+sys) = {:.0} ops per loadgen CPU-second",
        loadgen_cpu.as_secs_f64(),
        stats.total_count() as f64 / loadgen_cpu.as_secs_f64().max(1e-9)
    );
}

/// How `loadgen compare` turns the comparison into an exit code.
#[derive(Debug, Clone, Copy)]
struct Judge {
    fail_on_regression: Option<f64>,
    allow_different_settings: bool,
}

/// Exit code of `loadgen compare --fail-on-regression` for runs whose settings differ: a
/// regression verdict between them would be meaningless, and CI must tell it from exit 1.
const EXIT_DIFFERENT_SETTINGS: u8 = 2;

/// `loadgen compare`: prints the table, after a warning if the runs' settings differ; exit 1 on
/// a regression past --fail-on-regression, exit 2 (no verdict) if with it the settings differ
/// and --allow-different-settings is not given.
fn run_compare(paths: &[PathBuf], threshold: f64, judge: Judge, plot: Option<&std::path::Path>) -> Result<ExitCode> {
    let fail_on_regression = judge.fail_on_regression;
    let runs = paths.iter().map(|p| compare::load(p)).collect::<Result<Vec<_>>>()?;
    let differences = compare::setting_differences(&runs);
    eprint!("{}", compare::settings_warning(&differences));
    if !differences.is_empty() && fail_on_regression.is_some() && !judge.allow_different_settings {
        eprintln!(
            "loadgen: not judging regressions between runs with different settings; \
             pass --allow-different-settings to compare anyway"
        );
        return Ok(ExitCode::from(EXIT_DIFFERENT_SETTINGS));
    }
    if let Some(path) = plot {
        plot::write(path, &runs)?;
        eprintln!("loadgen: plot written to {}", path.display());
    }
    let (table, regressions) = compare::compare(&runs, fail_on_regression.unwrap_or(threshold));
    print!("{table}");
    if regressions.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    println!("\nregressions:");
    for r in &regressions {
        println!("  {r}");
    }
    Ok(if fail_on_regression.is_some() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// CPU time (user + system) this process has used so far; the local warren is a child and not
/// included.
fn own_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct we hand it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
