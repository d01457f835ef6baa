//! The decisions of multis across groups (docs/architecture.md, "Transactions"), without IO:
//! what a group's core on one node hears (votes, decisions, finishes from the other groups'
//! cores of its node; the transaction entries its group applied; a timer) and what it does
//! about it (messages to those cores, entries to log, answers to connections). The runtime
//! (`txns.rs`, one per core) and the simulation (`sim/node.rs`, one per group of a node) run
//! this same code and carry out its effects.
//!
//! Every core reports to the coordinator group's core of its own node the vote of each prepare
//! its group applied, and each finish. The coordinator's core, on the coordinator group's
//! leader, logs the decision once every vote is in (Retry when one does not come in time) and,
//! once every group finished, the forget. Every core, on its group's leader, logs the finish of
//! a prepared multi once its node applied the decision. The reports are re-sent on a timer
//! (`resend`), so a new leader, or a node after a restart, picks up what was left; the log
//! holds everything that decides (votes, decisions), the messages only carry it.

use ahash::AHashMap;
use engine::command::{Command, LogEntry, TxnId, TxnOutcome};
use engine::txn::{outcome_of, TxnApplied, TxnTable, Vote};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The driver's times.
#[derive(Debug, Clone, Copy)]
pub struct TxnTimes {
    /// How long the coordinator's leader waits for every vote before it decides Retry (a
    /// prepare lost with a leader change; two multis each waiting behind the other's held path).
    pub vote_timeout: Duration,
    /// A decision, finish or forget is not proposed again sooner (it may be in flight).
    pub propose_again: Duration,
}

/// The runtime's: about 33 and 17 Raft ticks (`driver::TICK_MS`).
pub const TXN_TIMES: TxnTimes =
    TxnTimes { vote_timeout: Duration::from_millis(1000), propose_again: Duration::from_millis(500) };
/// How often the runtime re-sends the reports (`TxnDriver::resend`).
pub const RESEND_EVERY: Duration = Duration::from_millis(100);
/// How long a proposal is remembered (so it is not proposed again within `propose_again`).
const PROPOSED_KEPT: Duration = Duration::from_secs(60);

/// What one group's core tells another group's core on the same node.
#[derive(Debug, Clone, PartialEq)]
pub enum TxnMessage {
    /// A core that applied its group's prepare → the coordinator group's core.
    Vote { txn: TxnId, group: u16, vote: Vote, groups: Vec<u16> },
    /// The coordinator group's core, having applied the decision → each group's core.
    Decided { txn: TxnId, outcome: TxnOutcome },
    /// A core that applied its group's finish → the coordinator group's core.
    Finished { txn: TxnId, group: u16 },
}

/// What the host carries out.
#[derive(Debug, PartialEq)]
pub enum TxnEffect<R> {
    Send {
        to: u16,
        message: TxnMessage,
    },
    /// A connection waiting for the decision on a multi hears it.
    Answer {
        request: R,
        outcome: TxnOutcome,
    },
    /// Log `command` in this group (its home shard). `after_other_groups`: it depends on
    /// everything this node has applied in its other groups (a decision or finish must not be
    /// shown by a replica before every prepare of its multi).
    Propose {
        command: Command,
        after_other_groups: bool,
    },
    /// The paths `txn` held in this group are released: reads parked behind it may go on.
    Released {
        txn: TxnId,
    },
}

/// This node's standing in the group, as its group driver last saw it.
#[derive(Debug, Clone, Default)]
pub struct Leadership {
    /// It leads the group: it logs finishes and forgets.
    pub leading: bool,
    /// It leads with a current commit index (`GroupDriver::decides_now`): it logs decisions,
    /// but not on the multis whose decision or forget it has still to apply.
    pub decides: bool,
    pub decisions_to_apply: Vec<TxnId>,
}

impl Leadership {
    fn may_decide(&self, txn: TxnId) -> bool {
        self.decides && !self.decisions_to_apply.contains(&txn)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Step {
    Decide,
    Finish,
    Forget,
}

struct Tally {
    groups: Vec<u16>,
    votes: BTreeMap<u16, Vote>,
    finished: BTreeSet<u16>,
    since: Instant,
}

/// One group's core on one node. `R`: the host's handle of a waiting request.
pub struct TxnDriver<R> {
    group: u16,
    times: TxnTimes,
    /// Coordinator: what it heard of each multi.
    tallies: AHashMap<TxnId, Tally>,
    /// Decisions heard from coordinators' cores, for multis prepared here.
    decisions: AHashMap<TxnId, TxnOutcome>,
    /// Decisions, finishes and forgets proposed here, and when.
    proposed: AHashMap<(TxnId, Step), Instant>,
    /// Connections waiting for the decision on a multi (coordinator).
    waiters: AHashMap<TxnId, Vec<R>>,
    /// Multis decided Retry whose waiters hear it once these groups finished here.
    retry_after: AHashMap<TxnId, BTreeSet<u16>>,
    /// Reads of held paths, waiting for the finish of the multi that holds them.
    parked: Vec<(TxnId, R)>,
}

impl<R> TxnDriver<R> {
    /// The driver of group `group` (whose home shard has the same id).
    pub fn new(group: u16, times: TxnTimes) -> TxnDriver<R> {
        TxnDriver {
            group,
            times,
            tallies: AHashMap::new(),
            decisions: AHashMap::new(),
            proposed: AHashMap::new(),
            waiters: AHashMap::new(),
            retry_after: AHashMap::new(),
            parked: Vec::new(),
        }
    }

    /// After a transaction entry applied in this group (ahead of its place or at it).
    pub fn on_applied(&mut self, entry: &LogEntry, applied: &TxnApplied, out: &mut Vec<TxnEffect<R>>) {
        match (&entry.command, applied) {
            (Command::TxnPrepare(prepare), TxnApplied::Voted { vote, .. }) => {
                let vote = TxnMessage::Vote {
                    txn: prepare.txn,
                    group: self.group,
                    vote: *vote,
                    groups: prepare.groups.clone(),
                };
                out.push(TxnEffect::Send { to: prepare.coordinator, message: vote });
                if let Some(outcome) = self.decisions.get(&prepare.txn) {
                    let decided = TxnMessage::Decided { txn: prepare.txn, outcome: *outcome };
                    out.push(TxnEffect::Send { to: self.group, message: decided });
                }
            }
            (Command::TxnDecide { txn, groups, .. }, TxnApplied::Decided(outcome)) => {
                if *outcome == TxnOutcome::Retry {
                    // The next try must not find this one's held paths: its client hears the
                    // decision once every group that holds some has finished here.
                    if let Some(tally) = self.tallies.get(txn) {
                        let waiting: BTreeSet<u16> = tally
                            .votes
                            .iter()
                            .filter(|(group, vote)| **vote != Vote::Held && !tally.finished.contains(group))
                            .map(|(group, _)| *group)
                            .collect();
                        if !waiting.is_empty() {
                            self.retry_after.insert(*txn, waiting);
                        }
                    }
                }
                if !self.retry_after.contains_key(txn) {
                    self.answer_waiters(*txn, *outcome, out);
                }
                for group in groups {
                    out.push(TxnEffect::Send {
                        to: *group,
                        message: TxnMessage::Decided { txn: *txn, outcome: *outcome },
                    });
                }
            }
            (Command::TxnFinish { txn, coordinator, .. }, TxnApplied::Finished(finished)) => {
                self.decisions.remove(txn);
                if finished.is_some() {
                    let message = TxnMessage::Finished { txn: *txn, group: self.group };
                    out.push(TxnEffect::Send { to: *coordinator, message });
                    out.push(TxnEffect::Released { txn: *txn });
                }
            }
            (Command::TxnForget { txns }, TxnApplied::Forgotten) => {
                for txn in txns {
                    self.tallies.remove(txn);
                    for step in [Step::Decide, Step::Forget] {
                        self.proposed.remove(&(*txn, step));
                    }
                }
            }
            (command, applied) => {
                tracing::error!(group = self.group, ?command, ?applied, "a transaction entry gave an unexpected result")
            }
        }
    }

    /// A message from a group's core on this node. `table`: this group's table of multis (in
    /// its home shard).
    pub fn on_message(
        &mut self,
        message: TxnMessage,
        table: &TxnTable,
        lead: &Leadership,
        now: Instant,
        out: &mut Vec<TxnEffect<R>>,
    ) {
        match message {
            TxnMessage::Vote { txn, group, vote, groups } => {
                let tally = self.tallies.entry(txn).or_insert_with(|| Tally {
                    groups,
                    votes: BTreeMap::new(),
                    finished: BTreeSet::new(),
                    since: now,
                });
                tally.votes.insert(group, vote);
                if tally.votes.len() == tally.groups.len() {
                    self.decide(txn, table, lead, now, out);
                }
            }
            TxnMessage::Decided { txn, outcome } => {
                self.decisions.insert(txn, outcome);
                self.finish(txn, table, lead.leading, now, out);
            }
            TxnMessage::Finished { txn, group } => {
                let released = self.retry_after.get_mut(&txn).is_some_and(|waiting| {
                    waiting.remove(&group);
                    waiting.is_empty()
                });
                if released {
                    self.retry_after.remove(&txn);
                    self.answer_waiters(txn, TxnOutcome::Retry, out);
                }
                let all = self.tallies.get_mut(&txn).is_some_and(|tally| {
                    tally.finished.insert(group);
                    tally.finished.len() == tally.groups.len()
                });
                if all {
                    self.forget(txn, table, lead.leading, now, out);
                }
            }
        }
    }

    /// The timer: re-sends this group's reports, so that new leaders pick up what the old
    /// ones left, and decides Retry on multis whose votes did not all come in time.
    pub fn resend(&mut self, table: &TxnTable, lead: &Leadership, now: Instant, out: &mut Vec<TxnEffect<R>>) {
        let prepared: Vec<(TxnId, u16, Vote, Vec<u16>)> =
            table.prepared().map(|(txn, p)| (*txn, p.coordinator, p.vote, p.groups.clone())).collect();
        for (txn, coordinator, vote, groups) in prepared {
            out.push(TxnEffect::Send {
                to: coordinator,
                message: TxnMessage::Vote { txn, group: self.group, vote, groups },
            });
            self.finish(txn, table, lead.leading, now, out);
        }
        for (txn, outcome) in table.decided() {
            for group in self.tallies.get(txn).map(|tally| tally.groups.as_slice()).unwrap_or_default() {
                out.push(TxnEffect::Send { to: *group, message: TxnMessage::Decided { txn: *txn, outcome: *outcome } });
            }
        }
        let undecided: Vec<TxnId> = self.tallies.keys().copied().collect();
        for txn in undecided {
            self.decide(txn, table, lead, now, out);
        }
        self.proposed.retain(|_, at| now.duration_since(*at) < PROPOSED_KEPT);
    }

    /// A connection waits for the decision on a multi this group coordinates.
    pub fn await_decision(&mut self, txn: TxnId, request: R, table: &TxnTable, out: &mut Vec<TxnEffect<R>>) {
        match table.decision(&txn) {
            Some(outcome) if !self.retry_after.contains_key(&txn) => out.push(TxnEffect::Answer { request, outcome }),
            _ => self.waiters.entry(txn).or_default().push(request),
        }
    }

    /// A read of a path `txn` holds waits for its finish.
    pub fn park(&mut self, txn: TxnId, request: R) {
        self.parked.push((txn, request));
    }

    /// The reads that waited for `txn`'s finish.
    pub fn take_parked(&mut self, txn: TxnId) -> Vec<R> {
        let (released, still): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.parked).into_iter().partition(|(t, _)| *t == txn);
        self.parked = still;
        released.into_iter().map(|(_, request)| request).collect()
    }

    /// Coordinator's leader, once its table holds every decision logged on the multi: logs the
    /// decision from the votes, unless decided already.
    fn decide(&mut self, txn: TxnId, table: &TxnTable, lead: &Leadership, now: Instant, out: &mut Vec<TxnEffect<R>>) {
        if !lead.may_decide(txn) || table.decision(&txn).is_some() {
            return;
        }
        let Some(tally) = self.tallies.get(&txn) else { return };
        let outcome = if tally.votes.len() == tally.groups.len() {
            outcome_of(tally.votes.values().copied())
        } else if now.duration_since(tally.since) >= self.times.vote_timeout {
            tracing::info!(
                group = self.group,
                ?txn,
                votes = tally.votes.len(),
                groups = tally.groups.len(),
                "a multi across groups is tried again: not every group voted in time"
            );
            TxnOutcome::Retry
        } else {
            return;
        };
        let groups = tally.groups.clone();
        if self.may_propose(txn, Step::Decide, now) {
            let command = Command::TxnDecide { txn, groups, outcome };
            out.push(TxnEffect::Propose { command, after_other_groups: true });
        }
    }

    /// A group's leader: logs the finish of a multi prepared here whose decision it heard.
    fn finish(&mut self, txn: TxnId, table: &TxnTable, leading: bool, now: Instant, out: &mut Vec<TxnEffect<R>>) {
        if !leading {
            return;
        }
        let Some(outcome) = self.decisions.get(&txn).copied() else { return };
        let Some((_, prepared)) = table.prepared().find(|(t, _)| **t == txn) else { return };
        let finish = Command::TxnFinish {
            txn,
            commit: outcome == TxnOutcome::Commit,
            shards: prepared.shards(),
            coordinator: prepared.coordinator,
        };
        if self.may_propose(txn, Step::Finish, now) {
            out.push(TxnEffect::Propose { command: finish, after_other_groups: true });
        }
    }

    /// Coordinator's leader: every group finished; the decision is no longer needed.
    fn forget(&mut self, txn: TxnId, table: &TxnTable, leading: bool, now: Instant, out: &mut Vec<TxnEffect<R>>) {
        if leading && table.decision(&txn).is_some() && self.may_propose(txn, Step::Forget, now) {
            out.push(TxnEffect::Propose { command: Command::TxnForget { txns: vec![txn] }, after_other_groups: false });
        }
    }

    fn answer_waiters(&mut self, txn: TxnId, outcome: TxnOutcome, out: &mut Vec<TxnEffect<R>>) {
        for request in self.waiters.remove(&txn).unwrap_or_default() {
            out.push(TxnEffect::Answer { request, outcome });
        }
    }

    /// Whether `step` of `txn` may be proposed now (not proposed within `propose_again`).
    fn may_propose(&mut self, txn: TxnId, step: Step, now: Instant) -> bool {
        match self.proposed.get(&(txn, step)) {
            Some(at) if now.duration_since(*at) < self.times.propose_again => false,
            _ => {
                self.proposed.insert((txn, step), now);
                true
            }
        }
    }
}
