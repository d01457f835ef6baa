//! A linearizability checker for one key's register (the Wing & Gong search with the state
//! cache of Lowe and of porcupine): given every operation clients invoked on a key, with when
//! each was called and answered, is there one order of them that respects real time (an op
//! answered before another was called comes first) and that a single register explains (every
//! read returns the last write before it)? The cluster simulation and the real-process tests
//! record histories per key and check each with `check`.
//!
//! An op without an answer (a timeout, a lost connection: ZooKeeper's "maybe applied") may
//! have taken effect at any time after its call, or never.

use std::collections::HashSet;
use std::hash::Hash;

/// What a client did to the register and what it was told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<V> {
    Write(V),
    /// A read and the value it returned (None: the key held nothing).
    Read(Option<V>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op<V> {
    /// When the client sent it, on the history's one clock.
    pub call: u64,
    /// When the answer arrived; None: no answer (it may or may not have taken effect).
    pub answer: Option<u64>,
    pub action: Action<V>,
}

/// Why no linearization was found: how far the search got and the op it could not place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The search hit its budget (`STATES_MAX`) before deciding: not a proof of a violation,
    /// but a history too concurrent to check (the caller should record less of it).
    pub gave_up: bool,
    /// The most ops any order the search tried could explain.
    pub longest_prefix: usize,
    /// An answered op no order could place (the first one in real time that blocked the
    /// longest prefix).
    pub stuck_at: usize,
}

/// States the search explores at most before giving up.
pub const STATES_MAX: usize = 2_000_000;

/// Whether `ops` on a register starting at `initial` is linearizable. Unanswered writes whose
/// value no read returned are left out first (with unique values that is exact: such a write
/// can always be the one that never happened, and placing it explains nothing), so that
/// lost writes, which overlap everything after their call, do not blow up the search.
pub fn check<V: Clone + Eq + Hash>(initial: Option<V>, ops: &[Op<V>]) -> Result<(), Violation> {
    for op in ops {
        assert!(op.answer.is_none_or(|a| a >= op.call), "an op answered before it was called");
    }
    let seen: HashSet<&V> = ops
        .iter()
        .filter_map(|op| match &op.action {
            Action::Read(Some(v)) if op.answer.is_some() => Some(v),
            _ => None,
        })
        .collect();
    let kept: Vec<usize> = (0..ops.len())
        .filter(|&i| match (&ops[i].action, ops[i].answer) {
            (Action::Write(v), None) => seen.contains(v),
            (Action::Read(_), None) => false,
            _ => true,
        })
        .collect();
    let subset: Vec<Op<V>> = kept.iter().map(|&i| ops[i].clone()).collect();
    let mut search = Search {
        ops: &subset,
        done: vec![false; subset.len()],
        cache: HashSet::new(),
        best: (0, usize::MAX),
        gave_up: false,
    };
    if search.explore(initial, 0) {
        return Ok(());
    }
    let stuck_at = kept.get(search.best.1).copied().unwrap_or(usize::MAX);
    Err(Violation { gave_up: search.gave_up, longest_prefix: search.best.0, stuck_at })
}

struct Search<'a, V> {
    ops: &'a [Op<V>],
    /// Ops placed in the order so far.
    done: Vec<bool>,
    /// (placed ops, register value) already explored without success.
    cache: HashSet<(Vec<bool>, Option<V>)>,
    /// The longest prefix found, and the op that blocked it.
    best: (usize, usize),
    gave_up: bool,
}

impl<V: Clone + Eq + Hash> Search<'_, V> {
    /// Depth-first: places, one at a time, any op that may come next in real time and that the
    /// register explains; `placed` ops are in the order already.
    fn explore(&mut self, value: Option<V>, placed: usize) -> bool {
        let pending: Vec<usize> = (0..self.ops.len()).filter(|&i| !self.done[i]).collect();
        if pending.iter().all(|&i| self.ops[i].answer.is_none()) {
            // Every answered op is placed; unanswered ones may never have happened.
            return true;
        }
        if self.gave_up || !self.cache.insert((self.done.clone(), value.clone())) {
            return false;
        }
        if self.cache.len() > STATES_MAX {
            self.gave_up = true;
            return false;
        }
        // An op may come next only if no pending op was answered before it was called.
        let first_answer = pending.iter().filter_map(|&i| self.ops[i].answer).min().expect("an answered op is pending");
        for &i in &pending {
            let op = &self.ops[i];
            if op.call > first_answer {
                continue;
            }
            let next_value = match &op.action {
                Action::Write(v) => Some(v.clone()),
                Action::Read(seen) if *seen == value => value.clone(),
                Action::Read(_) => continue,
            };
            self.done[i] = true;
            let found = self.explore(next_value, placed + 1);
            self.done[i] = false;
            if found {
                return true;
            }
        }
        if placed >= self.best.0 {
            let blocking = pending
                .iter()
                .copied()
                .filter(|&i| self.ops[i].answer == Some(first_answer))
                .min()
                .expect("the first answer belongs to a pending op");
            self.best = (placed, blocking);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn w(call: u64, answer: u64, v: u32) -> Op<u32> {
        Op { call, answer: Some(answer), action: Action::Write(v) }
    }

    fn r(call: u64, answer: u64, seen: Option<u32>) -> Op<u32> {
        Op { call, answer: Some(answer), action: Action::Read(seen) }
    }

    fn lost(call: u64, v: u32) -> Op<u32> {
        Op { call, answer: None, action: Action::Write(v) }
    }

    #[test]
    fn sequential_writes_and_reads() {
        assert!(check(None, &[r(0, 1, None), w(2, 3, 1), r(4, 5, Some(1)), w(6, 7, 2), r(8, 9, Some(2))]).is_ok());
    }

    #[test]
    fn a_read_after_a_completed_write_must_see_it() {
        let stale = [w(0, 1, 1), w(2, 3, 2), r(4, 5, Some(1))];
        let violation = check(None, &stale).unwrap_err();
        assert_eq!(violation.stuck_at, 2, "{violation:?}");
        assert!(!violation.gave_up);
    }

    #[test]
    fn a_read_concurrent_with_a_write_may_see_either_value() {
        assert!(check(Some(0), &[w(0, 10, 1), r(2, 5, Some(0))]).is_ok());
        assert!(check(Some(0), &[w(0, 10, 1), r(2, 5, Some(1))]).is_ok());
        assert!(check(Some(0), &[w(0, 10, 1), r(2, 5, Some(7))]).is_err(), "7 was never written");
    }

    #[test]
    fn reads_never_go_back_in_time() {
        // Both reads overlap the write, but once one read saw 1, a later read cannot see 0.
        let history = [w(0, 100, 1), r(10, 20, Some(1)), r(30, 40, Some(0))];
        assert!(check(Some(0), &history).is_err());
        let history = [w(0, 100, 1), r(10, 20, Some(0)), r(30, 40, Some(1))];
        assert!(check(Some(0), &history).is_ok());
    }

    #[test]
    fn an_unanswered_write_may_have_happened_or_not() {
        assert!(check(Some(0), &[lost(0, 1), r(5, 6, Some(1))]).is_ok(), "it happened");
        assert!(check(Some(0), &[lost(0, 1), r(5, 6, Some(0))]).is_ok(), "not yet, or never");
        assert!(check(Some(0), &[lost(0, 1), r(5, 6, Some(1)), r(7, 8, Some(0))]).is_err(), "it cannot be undone");
        assert!(check(Some(0), &[r(0, 1, Some(0)), lost(5, 1), r(2, 3, Some(1))]).is_err(), "not before its call");
    }

    #[test]
    fn lost_writes_nobody_read_do_not_slow_the_search() {
        // 40 lost writes overlapping everything: without leaving them out, the search would
        // try their orders; no read saw them, so they are left out.
        let mut history: Vec<Op<u32>> = (0..40).map(|i| lost(i, 1000 + i as u32)).collect();
        for i in 0..20 {
            history.push(w(100 + 10 * i, 105 + 10 * i, i as u32));
            history.push(r(106 + 10 * i, 108 + 10 * i, Some(i as u32)));
        }
        assert!(check(None, &history).is_ok());
        history.push(r(1000, 1001, Some(3)));
        let violation = check(None, &history).unwrap_err();
        assert!(!violation.gave_up);
        assert_eq!(violation.stuck_at, history.len() - 1);
    }

    #[test]
    fn two_writers_one_order() {
        // Writes of 1 and 2 overlap; readers after both must agree on which came last.
        let agree = [w(0, 10, 1), w(0, 10, 2), r(20, 21, Some(2)), r(22, 23, Some(2))];
        assert!(check(None, &agree).is_ok());
        let disagree = [w(0, 10, 1), w(0, 10, 2), r(20, 21, Some(2)), r(22, 23, Some(1))];
        assert!(check(None, &disagree).is_err());
    }

    /// Histories made by real concurrent clients of one register: each op takes effect at a
    /// point inside its [call, answer] interval.
    fn run_history(ops: &[(u8, bool, u32, u64, u64)]) -> Vec<Op<u32>> {
        // (client, is_write, value, effect time, how long before and after the effect the
        // client called and was answered); the client does not matter to the checker.
        let mut effects: Vec<(u64, usize)> = ops.iter().enumerate().map(|(i, op)| (op.3 * 16 + i as u64, i)).collect();
        effects.sort();
        let mut value = None;
        let mut history = vec![None; ops.len()];
        for (at, i) in effects {
            let (_, write, v, _, spread) = ops[i];
            let action = if write {
                value = Some(v);
                Action::Write(v)
            } else {
                Action::Read(value)
            };
            history[i] = Some(Op { call: at.saturating_sub(spread), answer: Some(at + spread), action });
        }
        history.into_iter().map(|op| op.expect("every op ran")).collect()
    }

    proptest! {
        #[test]
        fn histories_of_a_real_register_are_linearizable(
            ops in proptest::collection::vec((0u8..4, any::<bool>(), 0u32..4, 0u64..40, 0u64..40), 1..14)
        ) {
            let history = run_history(&ops);
            prop_assert!(check(None, &history).is_ok(), "{history:?}");
        }

        #[test]
        fn a_read_of_a_value_never_written_is_caught(
            ops in proptest::collection::vec((0u8..4, any::<bool>(), 0u32..4, 0u64..40, 0u64..40), 1..14),
            which in any::<prop::sample::Index>(),
        ) {
            let mut history = run_history(&ops);
            let reads: Vec<usize> = (0..history.len()).filter(|&i| matches!(history[i].action, Action::Read(_))).collect();
            prop_assume!(!reads.is_empty());
            let i = reads[which.index(reads.len())];
            history[i].action = Action::Read(Some(99));
            prop_assert!(check(None, &history).is_err(), "{history:?}");
        }
    }
}
