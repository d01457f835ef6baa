//! The simulation's seeds. `WARREN_SIM_SEED=N` replays one seed with a trace of every event;
//! `WARREN_SIM_SEEDS=COUNT` (and `WARREN_SIM_FIRST=N`) runs more seeds than CI does (a soak).

use super::{run, Summary};

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

/// CI's seeds: 3-node and 5-node clusters under every fault.
#[test]
fn whole_clusters_keep_raft_safety_state_agreement_and_linearizable_histories() {
    let first = env_u64("WARREN_SIM_FIRST").unwrap_or(0);
    let count = env_u64("WARREN_SIM_SEEDS").unwrap_or(1500);
    let mut total = Summary::default();
    for seed in first..first + count {
        let nodes = if seed % 4 == 3 { 5 } else { 3 };
        let s = run_or_say_how_to_replay(seed, nodes);
        total.leaders += s.leaders;
        total.committed += s.committed;
        total.answered += s.answered;
        total.crashes += s.crashes;
        total.torn_bytes += s.torn_bytes;
    }
    eprintln!("{count} seeds from {first}: {total:?}");
    // Not vacuous: leaders changed, entries committed, clients were answered, crashes tore writes.
    let runs = count as usize;
    assert!(total.leaders >= 3 * runs, "{total:?}");
    assert!(total.committed >= 100 * runs, "{total:?}");
    assert!(total.answered >= 50 * runs, "{total:?}");
    assert!(total.crashes >= 5 * runs && total.torn_bytes > 0, "{total:?}");
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
