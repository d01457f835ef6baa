//! The runtime's half of multis across groups (docs/architecture.md, "Transactions"). Every
//! core reports to the coordinator group's core on its own node the vote of each prepare its
//! group applied, and each finish. The coordinator's core, on the coordinator group's leader,
//! logs the decision once every vote is in (Retry when one does not come in time) and, once
//! every group finished, the forget. Every core, on its group's leader, logs the finish of a
//! prepared multi once its node applied the decision. The reports are re-sent on a timer
//! (`txn_loop`), so a new leader, or a node after a restart, picks up what was left; the log
//! holds everything that decides (votes, decisions), the messages only carry it.

use super::core::{Core, ShardSlot};
use super::msg::{Msg, ReplyBody, ShardOp, ShardRequest, TxnCounts};
use ahash::AHashMap;
use engine::command::{Command, LogEntry, ShardId, TxnId, TxnOutcome};
use engine::request::WriteResult;
use engine::txn::{outcome_of, TxnApplied, Vote};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long the coordinator's leader waits for every vote before it decides Retry (a prepare
/// lost with a leader change; two multis each waiting behind the other's held path).
pub const VOTE_TIMEOUT: Duration = Duration::from_millis(1000);
/// A decision, finish or forget is not proposed again sooner (it may be in flight).
const PROPOSE_AGAIN: Duration = Duration::from_millis(500);
/// How often the reports are re-sent.
const RESEND_EVERY: Duration = Duration::from_millis(100);

#[derive(Default)]
pub struct TxnRuntime {
    /// Coordinator's core: what it heard of each multi.
    tallies: RefCell<AHashMap<TxnId, Tally>>,
    /// Any core: decisions heard from coordinators' cores, for multis prepared here.
    decisions: RefCell<AHashMap<TxnId, TxnOutcome>>,
    /// Decisions, finishes and forgets proposed here, and when.
    proposed: RefCell<AHashMap<(TxnId, Step), Instant>>,
    /// Connections waiting for the decision on a multi (coordinator's core).
    waiters: RefCell<AHashMap<TxnId, Vec<ShardRequest>>>,
    /// Multis decided Retry whose waiters hear it once these groups finished here.
    retry_after: RefCell<AHashMap<TxnId, BTreeSet<u16>>>,
    /// Reads of held paths, waiting for the finish of the multi that holds them.
    parked: RefCell<Vec<(TxnId, ShardRequest)>>,
    /// For mntr.
    pub counts: Cell<TxnCounts>,
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

impl TxnRuntime {
    /// Reads waiting for released paths: `core` serves them again.
    fn take_parked(&self, txn: TxnId) -> Vec<ShardRequest> {
        let mut parked = self.parked.borrow_mut();
        let (released, still): (Vec<_>, Vec<_>) = parked.drain(..).partition(|(t, _)| *t == txn);
        *parked = still;
        released.into_iter().map(|(_, request)| request).collect()
    }

    /// Whether `step` of `txn` may be proposed now (not proposed within `PROPOSE_AGAIN`).
    fn may_propose(&self, txn: TxnId, step: Step, now: Instant) -> bool {
        let mut proposed = self.proposed.borrow_mut();
        match proposed.get(&(txn, step)) {
            Some(at) if now.duration_since(*at) < PROPOSE_AGAIN => false,
            _ => {
                proposed.insert((txn, step), now);
                true
            }
        }
    }
}

impl Core {
    /// The lowest shard of this core's group: it keeps the group's table of multis.
    fn home_shard(&self) -> ShardId {
        self.id as ShardId
    }

    /// After a transaction entry applied here (the shards are borrowed: only messages).
    pub(super) fn on_txn_applied(&self, entry: &LogEntry, applied: &TxnApplied) {
        match (&entry.command, applied) {
            (Command::TxnPrepare(prepare), TxnApplied::Voted { vote, .. }) => {
                let vote = Msg::TxnVote {
                    txn: prepare.txn,
                    group: self.id as u16,
                    vote: *vote,
                    groups: prepare.groups.clone(),
                };
                self.send(usize::from(prepare.coordinator), vote);
                if let Some(outcome) = self.txns.decisions.borrow().get(&prepare.txn) {
                    self.send(self.id, Msg::TxnDecided { txn: prepare.txn, outcome: *outcome });
                }
            }
            (Command::TxnDecide { txn, groups, .. }, TxnApplied::Decided(outcome)) => {
                if *outcome == TxnOutcome::Retry {
                    // The next try must not find this one's held paths: its client hears the
                    // decision once every group that holds some has finished here.
                    let holding: BTreeSet<u16> = self.txns.tallies.borrow().get(txn).map_or_else(BTreeSet::new, |t| {
                        t.votes.iter().filter(|(_, vote)| **vote != Vote::Held).map(|(g, _)| *g).collect()
                    });
                    let finished = self.txns.tallies.borrow().get(txn).map(|t| t.finished.clone()).unwrap_or_default();
                    let waiting: BTreeSet<u16> = holding.difference(&finished).copied().collect();
                    if !waiting.is_empty() {
                        self.txns.retry_after.borrow_mut().insert(*txn, waiting);
                    }
                }
                if !self.txns.retry_after.borrow().contains_key(txn) {
                    for request in self.txns.waiters.borrow_mut().remove(txn).unwrap_or_default() {
                        self.reply(&request, decided(*outcome));
                    }
                }
                for group in groups {
                    self.send(usize::from(*group), Msg::TxnDecided { txn: *txn, outcome: *outcome });
                }
            }
            (Command::TxnFinish { txn, coordinator, .. }, TxnApplied::Finished(finished)) => {
                self.txns.decisions.borrow_mut().remove(txn);
                if finished.is_some() {
                    self.send(usize::from(*coordinator), Msg::TxnFinished { txn: *txn, group: self.id as u16 });
                    self.send(self.id, Msg::TxnReleased { txn: *txn });
                }
            }
            (Command::TxnForget { txns }, TxnApplied::Forgotten) => {
                let mut tallies = self.txns.tallies.borrow_mut();
                let mut proposed = self.txns.proposed.borrow_mut();
                for txn in txns {
                    tallies.remove(txn);
                    for step in [Step::Decide, Step::Forget] {
                        proposed.remove(&(*txn, step));
                    }
                }
            }
            (command, applied) => {
                tracing::error!(core = self.id, ?command, ?applied, "a transaction entry gave an unexpected result")
            }
        }
    }

    pub(super) fn on_txn_msg(self: &Rc<Self>, msg: Msg) {
        let now = Instant::now();
        match msg {
            Msg::TxnVote { txn, group, vote, groups } => {
                let complete = {
                    let mut tallies = self.txns.tallies.borrow_mut();
                    let tally = tallies.entry(txn).or_insert_with(|| Tally {
                        groups,
                        votes: BTreeMap::new(),
                        finished: BTreeSet::new(),
                        since: now,
                    });
                    tally.votes.insert(group, vote);
                    tally.votes.len() == tally.groups.len()
                };
                if complete {
                    self.decide(txn, now);
                }
            }
            Msg::TxnDecided { txn, outcome } => {
                self.txns.decisions.borrow_mut().insert(txn, outcome);
                self.finish_txn(txn, now);
            }
            Msg::TxnFinished { txn, group } => {
                let released = {
                    let mut retry_after = self.txns.retry_after.borrow_mut();
                    let done = retry_after.get_mut(&txn).is_some_and(|waiting| {
                        waiting.remove(&group);
                        waiting.is_empty()
                    });
                    if done {
                        retry_after.remove(&txn);
                    }
                    done
                };
                if released {
                    for request in self.txns.waiters.borrow_mut().remove(&txn).unwrap_or_default() {
                        self.reply(&request, decided(TxnOutcome::Retry));
                    }
                }
                let all = {
                    let mut tallies = self.txns.tallies.borrow_mut();
                    tallies.get_mut(&txn).is_some_and(|tally| {
                        tally.finished.insert(group);
                        tally.finished.len() == tally.groups.len()
                    })
                };
                if all {
                    self.forget(txn, now);
                }
            }
            Msg::TxnReleased { txn } => {
                for request in self.txns.take_parked(txn) {
                    self.handle(Msg::Shard(request));
                }
            }
            _ => unreachable!("not a transaction message"),
        }
    }

    /// Coordinator's leader: logs the decision from the votes, unless decided already.
    fn decide(&self, txn: TxnId, now: Instant) {
        if !self.commit.leading() || self.decision(txn).is_some() {
            return;
        }
        let (groups, outcome) = {
            let tallies = self.txns.tallies.borrow();
            let Some(tally) = tallies.get(&txn) else { return };
            let outcome = if tally.votes.len() == tally.groups.len() {
                outcome_of(tally.votes.values().copied())
            } else if now.duration_since(tally.since) >= VOTE_TIMEOUT {
                tracing::info!(
                    core = self.id,
                    ?txn,
                    votes = tally.votes.len(),
                    groups = tally.groups.len(),
                    "a multi across groups is tried again: not every group voted in time"
                );
                TxnOutcome::Retry
            } else {
                return;
            };
            (tally.groups.clone(), outcome)
        };
        if self.txns.may_propose(txn, Step::Decide, now) {
            self.propose_internal_after_other_groups(self.home_shard(), Command::TxnDecide { txn, groups, outcome });
        }
    }

    /// A group's leader: logs the finish of a multi prepared here whose decision it heard.
    fn finish_txn(&self, txn: TxnId, now: Instant) {
        if !self.commit.leading() {
            return;
        }
        let Some(outcome) = self.txns.decisions.borrow().get(&txn).copied() else { return };
        let finish = {
            let shards = self.shards.borrow();
            let home = &shards[&self.home_shard()].shard;
            let prepared = home.txns().prepared().find(|(t, _)| **t == txn).map(|(_, p)| (p.shards(), p.coordinator));
            prepared.map(|(shards, coordinator)| Command::TxnFinish {
                txn,
                commit: outcome == TxnOutcome::Commit,
                shards,
                coordinator,
            })
        };
        if let Some(finish) = finish {
            if self.txns.may_propose(txn, Step::Finish, now) {
                self.propose_internal_after_other_groups(self.home_shard(), finish);
            }
        }
    }

    /// Coordinator's leader: every group finished; the decision is no longer needed.
    fn forget(&self, txn: TxnId, now: Instant) {
        if self.commit.leading() && self.decision(txn).is_some() && self.txns.may_propose(txn, Step::Forget, now) {
            self.propose_internal(self.home_shard(), Command::TxnForget { txns: vec![txn] });
        }
    }

    /// The decision this node applied on a multi this core coordinates.
    fn decision(&self, txn: TxnId) -> Option<TxnOutcome> {
        self.shards.borrow().get(&self.home_shard())?.shard.txns().decision(&txn)
    }

    /// A connection waits for the decision on a multi this core coordinates.
    pub(super) fn await_txn(&self, request: ShardRequest, txn: TxnId) {
        match self.decision(txn) {
            Some(outcome) if !self.txns.retry_after.borrow().contains_key(&txn) => {
                self.reply(&request, decided(outcome))
            }
            _ => self.txns.waiters.borrow_mut().entry(txn).or_default().push(request),
        }
    }

    /// The multi holding the path a read names, if one does: the read waits for its finish.
    pub(super) fn read_held_by(&self, slot: &ShardSlot, request: &ShardRequest) -> Option<TxnId> {
        let (ShardOp::Read(op) | ShardOp::GatheredRead { op, .. }) = &request.op else { return None };
        slot.shard.holder_of(op.path())
    }

    pub(super) fn park(&self, txn: TxnId, request: ShardRequest) {
        self.count_txn(|c| c.reads_waited += 1);
        self.txns.parked.borrow_mut().push((txn, request));
    }

    /// Counts for mntr.
    pub(super) fn count_txn(&self, count: impl FnOnce(&mut TxnCounts)) {
        let mut counts = self.txns.counts.get();
        count(&mut counts);
        self.txns.counts.set(counts);
    }

    /// Re-sends this core's reports, so that new leaders pick up what the old ones left, and
    /// decides Retry on multis whose votes did not all come in time.
    pub async fn txn_loop(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(RESEND_EVERY).await;
            let now = Instant::now();
            let (prepared, decided) = {
                let shards = self.shards.borrow();
                let Some(home) = shards.get(&self.home_shard()) else { continue };
                let table = home.shard.txns();
                let prepared: Vec<(TxnId, u16, Vote, Vec<u16>)> =
                    table.prepared().map(|(txn, p)| (*txn, p.coordinator, p.vote, p.groups.clone())).collect();
                let decided: Vec<(TxnId, TxnOutcome)> = table.decided().map(|(t, o)| (*t, *o)).collect();
                (prepared, decided)
            };
            for (txn, coordinator, vote, groups) in prepared {
                self.send(usize::from(coordinator), Msg::TxnVote { txn, group: self.id as u16, vote, groups });
                self.finish_txn(txn, now);
            }
            for (txn, outcome) in decided {
                let groups = self.txns.tallies.borrow().get(&txn).map(|tally| tally.groups.clone());
                for group in groups.unwrap_or_default() {
                    self.send(usize::from(group), Msg::TxnDecided { txn, outcome });
                }
            }
            let undecided: Vec<TxnId> = self.txns.tallies.borrow().keys().copied().collect();
            for txn in undecided {
                self.decide(txn, now);
            }
            self.txns.proposed.borrow_mut().retain(|_, at| now.duration_since(*at) < Duration::from_secs(60));
        }
    }
}

fn decided(outcome: TxnOutcome) -> ReplyBody {
    ReplyBody::Write(Ok(WriteResult::Txn(TxnApplied::Decided(outcome))))
}
