//! The simulation's seeds. `WARREN_SIM_SEED=N` replays one seed with a trace of every event;
//! `WARREN_SIM_SEEDS=COUNT` (and `WARREN_SIM_FIRST=N`) runs more seeds than CI does (a soak).

use super::{run, run_moved_session_scenario, Summary};

/// Steps of one run after the bootstrap.
const STEPS: u64 = 6000;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

/// Runs `seed`, printing the command that replays it if it fails.
fn run_or_say_how_to_replay(seed: u64, nodes: u64) -> Summary {
    match std::panic::catch_unwind(|| run(seed, nodes, STEPS, false)) {
        Ok(summary) => summary,
        Err(panic) => {
            eprintln!(
                "\nsimulation seed {seed} ({nodes} nodes) failed; replay it with a trace:\n  \
                 WARREN_SIM_SEED={seed} WARREN_SIM_NODES={nodes} cargo test -p net --release --lib sim::tests::one_seed -- --nocapture\n"
            );
            std::panic::resume_unwind(panic)
        }
    }
}

/// Threads the seeds are spread over (the machine has two cores; other tests run beside).
const THREADS: u64 = 2;

/// CI's seeds: 3-node and 5-node clusters of one to three groups under every fault.
#[test]
fn whole_clusters_keep_raft_safety_state_agreement_and_linearizable_histories() {
    let first = env_u64("WARREN_SIM_FIRST").unwrap_or(0);
    let count = env_u64("WARREN_SIM_SEEDS").unwrap_or(10_000);
    let summaries: Vec<Summary> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..THREADS)
            .map(|thread| {
                scope.spawn(move || {
                    let mut total = Summary::default();
                    for seed in (first..first + count).filter(|seed| seed % THREADS == thread) {
                        let nodes = if seed % 4 == 3 { 5 } else { 3 };
                        total.add(&run_or_say_how_to_replay(seed, nodes));
                    }
                    total
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    });
    let mut total = Summary::default();
    for summary in &summaries {
        total.add(summary);
    }
    eprintln!("{count} seeds from {first}: {total:?}");
    // Not vacuous: leaders changed, entries committed, clients were answered, crashes tore
    // writes, most seeds ran several groups with writes ordered across them, nodes stopped,
    // clients pipelined, snapshots were taken, loaded and installed.
    let runs = count as usize;
    assert!(total.leaders >= 3 * runs, "{total:?}");
    assert!(total.committed >= 100 * runs, "{total:?}");
    assert!(total.answered >= 50 * runs, "{total:?}");
    assert!(total.crashes >= 5 * runs && total.torn_bytes > 0, "{total:?}");
    assert!(total.multi_group * 2 >= runs && total.ordered_writes >= runs, "{total:?}");
    assert!(total.stops >= runs / 2 && total.pipelined >= runs, "{total:?}");
    // Session writes: about one per run (0.9 with multis across groups sharing the clients'
    // traffic and holding registers, 1.25 before).
    assert!(total.reattaches * 4 >= runs && total.session_writes_applied * 4 >= runs * 3, "{total:?}");
    assert!(total.clock_jumps >= runs / 2, "{total:?}");
    // Multis across groups committed, aborted and tried again (seeds with several groups).
    assert!(total.multis_committed >= runs && total.multis_aborted * 4 >= runs, "{total:?}");
    assert!(total.multis_retried * 4 >= runs, "{total:?}");
    // Snapshots: taken while writes went on, nodes restarted from them, WAL released below
    // them, and followers behind the leaders' logs caught up by installing one.
    assert!(total.snapshots_taken as usize >= runs && total.started_from_snapshot >= runs, "{total:?}");
    assert!(total.batches_released >= runs && total.snapshots_installed as usize * 20 >= runs, "{total:?}");
}

/// Replays `WARREN_SIM_SEED` with a trace (does nothing without it).
#[test]
fn one_seed() {
    let Some(seed) = env_u64("WARREN_SIM_SEED") else { return };
    let nodes = env_u64("WARREN_SIM_NODES").unwrap_or(3);
    eprintln!("{:?}", run(seed, nodes, STEPS, true));
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let a = run(7, 3, 1500, false);
    let b = run(7, 3, 1500, false);
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}

/// ZOOKEEPER-710's shape on the real driver: a write held by a node paused past its session's
/// timeout, forwarded when the node resumes, after the session moved elsewhere.
#[test]
fn a_write_held_by_a_paused_node_never_applies_after_its_session_moved() {
    if let Some(seed) = env_u64("WARREN_SIM_MOVED_SEED") {
        run_moved_session_scenario(seed, true);
        return;
    }
    let runs: Vec<_> = (0..40).map(|seed| run_moved_session_scenario(seed, false)).collect();
    let moved = runs.iter().filter(|run| run.moved_while_paused).count();
    let refused = runs.iter().filter(|run| run.moved_while_paused && run.held_write_refused).count();
    let wrote = runs.iter().filter(|run| run.moved_while_paused && run.newest_wrote).count();
    eprintln!("of 40 seeds, {moved} moved the session while the node held its write; in {refused} the held write reached the log and was refused; in {wrote} the new connection's writes applied");
    assert!(moved >= 10 && refused * 2 >= moved && wrote * 2 >= moved, "{runs:?}");
}
