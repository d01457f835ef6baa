//! Multis across groups (`txn`) against a model that applies each multi at once in one tree:
//! groups apply their logs in any interleaving, with plain writes of the same paths between,
//! decisions and finishes logged twice, and finishes pulled forward to a write that meets a
//! held path (the runtime's rule). At every step, every path no transaction holds reads as in
//! the model (no reader sees part of a multi), and at the end the two trees are the same.

use crate::command::{Command, LogEntry, MultiOp, ShardId, TxnId, TxnOutcome};
use crate::error::ZkError;
use crate::path::shard_of;
use crate::request::{MultiResult, WriteResult};
use crate::shard::Shard;
use crate::testkit::{create_op, m_delete, m_set};
use crate::txn::{
    apply_txn, finish_early, holder_of_command, outcome_of, restore_txns, ArchivedTxnImage, TxnApplied, Vote,
};
use crate::types::{CreateMode, Stat, Zxid};
use crate::write::aborted_results;
use proptest::prelude::*;
use std::collections::{BTreeMap, VecDeque};

const SHARDS: u16 = 4;
const GROUPS: u16 = 2;

fn group_of(shard: ShardId) -> u16 {
    shard % GROUPS
}

/// One replica of a group: its shards and its committed log not applied yet.
struct Group {
    id: u16,
    shards: Vec<Shard>,
    log: VecDeque<LogEntry>,
    next_zxid: Zxid,
}

impl Group {
    fn append(&mut self, shard: ShardId, command: Command) {
        self.next_zxid += 1;
        let zxid = self.next_zxid;
        self.log.push_back(LogEntry { shard, zxid, time_ms: 1000 + zxid, command });
    }

    fn handed(&mut self, entry: &LogEntry) -> Vec<&mut Shard> {
        let mut wanted = entry.other_shards();
        wanted.push(entry.shard);
        self.shards.iter_mut().filter(|s| wanted.contains(&s.id())).collect()
    }

    fn shard(&self, id: ShardId) -> &Shard {
        self.shards.iter().find(|s| s.id() == id).expect("a shard of this group")
    }
}

/// A multi across groups in flight: its ops, the votes so far and its finishes still to come.
struct Running {
    ops: Vec<MultiOp>,
    coordinator: u16,
    groups: Vec<u16>,
    votes: BTreeMap<u16, (Vote, Vec<(u32, MultiResult)>)>,
    /// The decision that holds, once the coordinator applied it.
    decision: Option<TxnOutcome>,
    finished: Vec<u16>,
}

struct World {
    groups: Vec<Group>,
    model: Shard,
    model_zxid: Zxid,
    running: BTreeMap<TxnId, Running>,
    serial: u64,
    /// Transaction entries applied, to log again (a second leader's decision or finish).
    again: Vec<(u16, ShardId, Command)>,
    /// Multis to try again (their client's retry, after a pause).
    retries: VecDeque<Vec<MultiOp>>,
    committed: usize,
}

fn placed(ops: &[MultiOp]) -> Vec<(ShardId, MultiOp)> {
    ops.iter().map(|op| (shard_of(op.path(), SHARDS), op.clone())).collect()
}

/// Stats without the fields that depend on which log assigned the zxid.
fn normal(stat: &Stat) -> Stat {
    Stat { czxid: 0, mzxid: 0, ctime: 0, mtime: 0, pzxid: 0, ..*stat }
}

fn normal_result(result: &Result<WriteResult, ZkError>) -> Result<WriteResult, ZkError> {
    let multi = |results: &[MultiResult]| -> Vec<MultiResult> {
        results
            .iter()
            .map(|r| match r {
                MultiResult::Create { path, stat } => MultiResult::Create { path: path.clone(), stat: normal(stat) },
                MultiResult::SetData(stat) => MultiResult::SetData(normal(stat)),
                other => other.clone(),
            })
            .collect()
    };
    match result {
        Ok(WriteResult::Created { path, stat }) => Ok(WriteResult::Created { path: path.clone(), stat: normal(stat) }),
        Ok(WriteResult::Stat(stat)) => Ok(WriteResult::Stat(normal(stat))),
        Ok(WriteResult::Multi(results)) => Ok(WriteResult::Multi(multi(results))),
        other => other.clone(),
    }
}

impl World {
    fn new() -> World {
        let groups = (0..GROUPS)
            .map(|id| Group {
                id,
                shards: (0..SHARDS).filter(|s| group_of(*s) == id).map(|s| Shard::new(s, SHARDS)).collect(),
                log: VecDeque::new(),
                next_zxid: 0,
            })
            .collect();
        World {
            groups,
            model: Shard::new(0, 1),
            model_zxid: 0,
            running: BTreeMap::new(),
            serial: 0,
            again: Vec::new(),
            retries: VecDeque::new(),
            committed: 0,
        }
    }

    fn model_apply(&mut self, command: Command) -> Result<WriteResult, ZkError> {
        self.model_zxid += 1;
        let entry = LogEntry { shard: 0, zxid: self.model_zxid, time_ms: 1000 + self.model_zxid, command };
        self.model.apply(&entry).result
    }

    /// A client's multi: one entry in its group if all ops live in one, else a prepare in each.
    fn submit(&mut self, ops: Vec<MultiOp>) {
        let placed = placed(&ops);
        let mut groups: Vec<u16> = placed.iter().map(|(shard, _)| group_of(*shard)).collect();
        groups.sort_unstable();
        groups.dedup();
        if groups.len() == 1 {
            let (own, group) = (placed[0].0, groups[0]);
            let command = if placed.iter().all(|(s, _)| *s == own) {
                Command::Multi { ops, session: 0, auth: vec![] }
            } else {
                Command::MultiAcross { ops: placed, session: 0, auth: vec![] }
            };
            self.groups[group as usize].append(own, command);
            return;
        }
        self.serial += 1;
        let txn = TxnId { node: 1, serial: self.serial };
        let coordinator = group_of(placed[0].0);
        for (group, prepare) in crate::txn::prepares(txn, &placed, group_of, 0, &[]) {
            self.groups[group as usize].append(group, Command::TxnPrepare(prepare));
        }
        self.running.insert(
            txn,
            Running { ops, coordinator, groups, votes: BTreeMap::new(), decision: None, finished: Vec::new() },
        );
    }

    fn write(&mut self, command: Command) {
        let shard = match &command {
            Command::Create(op) => shard_of(&op.path, SHARDS),
            Command::Delete(op) => shard_of(&op.path, SHARDS),
            Command::SetData(op) => shard_of(&op.path, SHARDS),
            other => panic!("not a plain write: {other:?}"),
        };
        self.groups[group_of(shard) as usize].append(shard, command);
    }

    /// Applies the next entry of `group`, as the runtime does. False if it must wait.
    fn step(&mut self, group: u16) -> bool {
        let g = group as usize;
        let Some(entry) = self.groups[g].log.front().cloned() else { return false };
        if !entry.command.is_txn() {
            let holder = {
                let replica = &mut self.groups[g];
                let handed = replica.handed(&entry);
                handed.iter().find_map(|shard| holder_of_command(shard, &entry.command))
            };
            if let Some(txn) = holder {
                return self.pull_finish_forward(group, txn);
            }
            self.groups[g].log.pop_front();
            let got = {
                let replica = &mut self.groups[g];
                let mut handed = replica.handed(&entry);
                if handed.len() == 1 {
                    handed[0].apply(&entry).result
                } else {
                    crate::shard::apply_across(&mut handed, &entry).result
                }
            };
            let command = match entry.command {
                Command::MultiAcross { ops, session, auth } => {
                    Command::Multi { ops: ops.into_iter().map(|(_, op)| op).collect(), session, auth }
                }
                other => other,
            };
            let expected = self.model_apply(command);
            assert_eq!(normal_result(&got), normal_result(&expected), "a plain write of group {group}");
            return true;
        }
        self.groups[g].log.pop_front();
        let applied = {
            let replica = &mut self.groups[g];
            let mut handed = replica.handed(&entry);
            apply_txn(&mut handed, &entry).applied
        };
        self.again.push((group, entry.shard, entry.command.clone()));
        self.after_txn_entry(group, &entry.command, applied);
        true
    }

    /// A write meets a path held by `txn`: the decisions this group's log has already, and the
    /// finish of `txn`, are applied now, ahead of their place; otherwise the group waits.
    fn pull_finish_forward(&mut self, group: u16, txn: TxnId) -> bool {
        let g = group as usize;
        let later = self.groups[g].log.iter().enumerate().flat_map(|(at, entry)| {
            crate::txn::releasers(&entry.command).into_iter().map(move |releaser| (at, releaser))
        });
        let Some(at) = crate::txn::first_release(txn, later, |_| true) else { return false };
        // The entry stays in the log: at its place it finds its work done.
        let entry = self.groups[g].log.remove(at).expect("found");
        self.groups[g].log.insert(at, LogEntry { command: pulled(&entry.command), ..entry.clone() });
        let applied = {
            let replica = &mut self.groups[g];
            let mut handed = replica.handed(&entry);
            match entry.command {
                Command::TxnFinish { .. } => finish_early(&mut handed, &entry).applied,
                _ => apply_txn_early(&mut handed, &entry).applied,
            }
        };
        self.after_txn_entry(group, &entry.command, applied);
        true
    }

    fn after_txn_entry(&mut self, group: u16, command: &Command, applied: TxnApplied) {
        match (command, applied) {
            (Command::TxnPrepare(prepare), TxnApplied::Voted { vote, results }) => {
                let Some(running) = self.running.get_mut(&prepare.txn) else { return };
                if running.votes.contains_key(&group) {
                    return;
                }
                running.votes.insert(group, (vote, results));
                if let Some(outcome) = running.decision {
                    // Prepared after its decision (the coordinator gave up waiting for it).
                    self.log_finish(group, prepare.txn, outcome);
                } else if running.votes.len() == running.groups.len() {
                    let outcome = outcome_of(running.votes.values().map(|(vote, _)| *vote));
                    let (coordinator, groups) = (running.coordinator, running.groups.clone());
                    let decide = Command::TxnDecide { txn: prepare.txn, groups, outcome };
                    self.groups[coordinator as usize].append(coordinator, decide);
                }
            }
            (Command::TxnDecide { txn, .. }, TxnApplied::Decided(outcome)) => {
                let Some(running) = self.running.get(txn) else { return };
                if running.decision.is_none() {
                    self.decided(*txn, outcome);
                }
            }
            (Command::TxnFinish { txn, .. }, TxnApplied::Finished(Some(_))) => {
                let running = self.running.get_mut(txn).expect("a finish of a running multi");
                running.finished.push(group);
                if running.finished.len() == running.groups.len() {
                    let coordinator = running.coordinator;
                    self.running.remove(txn);
                    self.groups[coordinator as usize].append(coordinator, Command::TxnForget { txns: vec![*txn] });
                }
            }
            (Command::TxnFinish { .. }, TxnApplied::Finished(None)) | (_, TxnApplied::Forgotten) => {}
            (command, applied) => panic!("{command:?} gave {applied:?}"),
        }
    }

    /// The coordinator gives up waiting for the votes of `txn` (its leader's timer).
    fn give_up(&mut self, txn: TxnId) {
        let running = &self.running[&txn];
        if running.decision.is_none() {
            let decide = Command::TxnDecide { txn, groups: running.groups.clone(), outcome: TxnOutcome::Retry };
            let coordinator = running.coordinator;
            self.groups[coordinator as usize].append(coordinator, decide);
        }
    }

    fn log_finish(&mut self, group: u16, txn: TxnId, outcome: TxnOutcome) {
        let replica = &self.groups[group as usize];
        let prepared = replica.shard(group).txns().prepared().find(|(t, _)| **t == txn).map(|(_, p)| p.shards());
        let shards = prepared.expect("a group logs its finish once it prepared");
        let coordinator = self.running[&txn].coordinator;
        let finish = Command::TxnFinish { txn, commit: outcome == TxnOutcome::Commit, shards, coordinator };
        self.groups[group as usize].append(group, finish);
    }

    /// The decision holds from here: the model applies the multi at once, the results must be
    /// those the groups voted, and every group that prepared logs its finish (the others do
    /// once they prepare).
    fn decided(&mut self, txn: TxnId, outcome: TxnOutcome) {
        let running = self.running.get_mut(&txn).expect("running");
        running.decision = Some(outcome);
        let (ops, voted): (Vec<MultiOp>, Vec<u16>) = (running.ops.clone(), running.votes.keys().copied().collect());
        if outcome != TxnOutcome::Retry {
            let votes = &running.votes;
            let got = match outcome {
                TxnOutcome::Commit => {
                    self.committed += 1;
                    let mut results: Vec<(u32, MultiResult)> = votes.values().flat_map(|(_, r)| r.clone()).collect();
                    results.sort_by_key(|(index, _)| *index);
                    WriteResult::Multi(results.into_iter().map(|(_, r)| r).collect())
                }
                TxnOutcome::Abort { index, error } => WriteResult::Multi(aborted_results(
                    ops.len(),
                    index as usize,
                    ZkError::from_code(error).expect("a known code"),
                )),
                TxnOutcome::Retry => unreachable!(),
            };
            let expected = self.model_apply(Command::Multi { ops: ops.clone(), session: 0, auth: vec![] });
            assert_eq!(normal_result(&Ok(got)), normal_result(&expected), "{txn:?} decided {outcome:?}");
        }
        for group in voted {
            self.log_finish(group, txn, outcome);
        }
        if outcome == TxnOutcome::Retry {
            self.retries.push_back(ops);
        }
    }

    /// The group's shards as a snapshot taken now restores them: same state, same table, same
    /// held paths.
    fn restart(&mut self, group: u16) {
        let replica = &mut self.groups[group as usize];
        let images: Vec<_> = replica.shards.iter_mut().map(|s| (s.id(), s.image(SHARDS))).collect();
        let table = replica.shard(group).txns().image();
        let mut restored: Vec<Shard> = images
            .iter()
            .map(|(id, image)| Shard::restore(&image.to_bytes(), *id, SHARDS).expect("an image restores"))
            .collect();
        if let Some(table) = &table {
            let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(table).expect("serializes");
            let archived = rkyv::access::<ArchivedTxnImage, rkyv::rancor::Error>(&bytes).expect("valid");
            let mut handed: Vec<&mut Shard> = restored.iter_mut().collect();
            let home = handed.iter().position(|s| s.id() == group).expect("home");
            restore_txns(&mut handed, home, archived).expect("the table restores");
        }
        for (before, after) in replica.shards.iter().zip(&restored) {
            assert_eq!(before.digest(), after.digest(), "shard {} restored", before.id());
            assert_eq!(before.txns().image(), after.txns().image(), "shard {} restored", before.id());
            assert_eq!(before.holds, after.holds, "shard {} restored", before.id());
        }
        replica.shards = restored;
    }

    /// Every path that no transaction holds reads as in the model.
    fn check_visible(&self, paths: &[String]) {
        for path in paths {
            let shard = shard_of(path, SHARDS);
            let replica = &self.groups[group_of(shard) as usize];
            let shard = replica.shard(shard);
            if shard.holder_of(path).is_some() {
                continue;
            }
            let got = shard.node(path).map(|n| (normal(&n.stat()), n.data.clone()));
            let expected = self.model.node(path).map(|n| (normal(&n.stat()), n.data.clone()));
            assert_eq!(got, expected, "{path} is not held and differs from the model");
        }
    }

    /// Runs every log to its end. When no group can go on, the coordinator of the oldest
    /// undecided multi gives up on it (its leader's timer); retries go one at a time.
    fn drain(&mut self) {
        for _ in 0..2_000 {
            let progressed: Vec<bool> = (0..GROUPS).map(|g| self.step(g)).collect();
            if progressed.contains(&true) {
                continue;
            }
            let undecided = self.running.iter().find(|(_, r)| r.decision.is_none()).map(|(t, _)| *t);
            if let Some(txn) = undecided {
                self.give_up(txn);
            } else if let Some(ops) = self.retries.pop_front() {
                self.submit(ops);
            } else {
                break;
            }
        }
        for replica in &self.groups {
            assert!(replica.log.is_empty(), "group {} is stuck with {:?}", replica.id, replica.log.front());
            for shard in &replica.shards {
                assert!(shard.txns().is_empty(), "shard {} keeps {:?}", shard.id(), shard.txns());
            }
        }
        assert!(self.running.is_empty(), "multis left running: {:?}", self.running.keys().collect::<Vec<_>>());
    }
}

/// What stays at the place of an entry applied ahead of it: an entry that does nothing (at
/// its place the entry itself would find its work done, see the unit tests of `txn`).
fn pulled(_: &Command) -> Command {
    Command::TxnForget { txns: Vec::new() }
}

/// A decision applied ahead of its place: it changes only the coordinator's table.
fn apply_txn_early(shards: &mut [&mut Shard], entry: &LogEntry) -> crate::txn::AppliedTxn {
    crate::txn::decide_early(shards, entry)
}

fn paths() -> Vec<String> {
    let tops: Vec<String> = ["a", "b", "c", "d", "e", "f"].iter().map(|n| format!("/{n}")).collect();
    tops.iter().cloned().chain(tops.iter().map(|t| format!("{t}/k"))).collect()
}

#[derive(Debug, Clone)]
enum OpKind {
    Create(usize),
    Delete(usize, i32),
    Set(usize, i32),
    Check(usize, i32),
}

fn to_op(kind: &OpKind, paths: &[String]) -> MultiOp {
    match kind {
        OpKind::Create(p) => MultiOp::Create(create_op(&paths[*p], b"c", CreateMode::Persistent)),
        OpKind::Delete(p, v) => m_delete(&paths[*p], *v),
        OpKind::Set(p, v) => m_set(&paths[*p], b"s", *v),
        OpKind::Check(p, v) => MultiOp::Check { path: paths[*p].clone(), version: *v },
    }
}

fn to_write(kind: &OpKind, paths: &[String]) -> Option<Command> {
    match to_op(kind, paths) {
        MultiOp::Create(op) => Some(Command::Create(op)),
        MultiOp::Delete(op) => Some(Command::Delete(op)),
        MultiOp::SetData(op) => Some(Command::SetData(op)),
        MultiOp::Check { .. } => None,
    }
}

/// Mostly ops that can succeed (any version), so that many multis commit.
fn op_kind(path_count: usize) -> impl Strategy<Value = OpKind> {
    let path = 0..path_count;
    let version = prop_oneof![3 => Just(-1), 1 => 0..2i32];
    prop_oneof![
        2 => path.clone().prop_map(OpKind::Create),
        1 => (path.clone(), version.clone()).prop_map(|(p, v)| OpKind::Delete(p, v)),
        1 => (path.clone(), version.clone()).prop_map(|(p, v)| OpKind::Set(p, v)),
        1 => (path, version).prop_map(|(p, v)| OpKind::Check(p, v)),
    ]
}

#[derive(Debug, Clone)]
enum Action {
    Multi(Vec<OpKind>),
    Write(OpKind),
    Step(u16),
    /// A second leader logs a decision or finish already applied once.
    Again(usize),
    /// The coordinator stops waiting for the votes of a running multi.
    GiveUp(usize),
    /// A client tries its multi again.
    Retry,
    /// The group restarts from a snapshot taken now (its log stays).
    Restart(u16),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        2 => proptest::collection::vec(op_kind(12), 1..5).prop_map(Action::Multi),
        1 => op_kind(12).prop_map(Action::Write),
        6 => (0..GROUPS).prop_map(Action::Step),
        1 => any::<usize>().prop_map(Action::Again),
        1 => any::<usize>().prop_map(Action::GiveUp),
        1 => Just(Action::Retry),
        1 => (0..GROUPS).prop_map(Action::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn multis_across_groups_match_the_same_multis_applied_at_once_in_one_tree(
        actions in proptest::collection::vec(action(), 1..120)
    ) {
        let paths = paths();
        let mut world = World::new();
        // Half the paths exist at the start, so that many multis can commit.
        for path in paths.iter().step_by(2).filter(|p| p.matches('/').count() == 1) {
            world.write(Command::Create(create_op(path, b"0", CreateMode::Persistent)));
        }
        world.drain();
        for action in &actions {
            match action {
                Action::Multi(kinds) => world.submit(kinds.iter().map(|k| to_op(k, &paths)).collect()),
                Action::Write(kind) => {
                    if let Some(command) = to_write(kind, &paths) {
                        world.write(command);
                    }
                }
                Action::Step(group) => {
                    world.step(*group);
                }
                Action::Restart(group) => world.restart(*group),
                Action::Retry => {
                    if let Some(ops) = world.retries.pop_front() {
                        world.submit(ops);
                    }
                }
                Action::GiveUp(pick) => {
                    let undecided: Vec<TxnId> =
                        world.running.iter().filter(|(_, r)| r.decision.is_none()).map(|(t, _)| *t).collect();
                    if !undecided.is_empty() {
                        world.give_up(undecided[pick % undecided.len()]);
                    }
                }
                Action::Again(pick) => {
                    // While the multi runs: its coordinator forgets it once every group finished.
                    let decisions: Vec<(u16, ShardId, Command)> = world
                        .again
                        .iter()
                        .filter(|(_, _, c)| match c {
                            Command::TxnDecide { txn, .. } | Command::TxnFinish { txn, .. } => world.running.contains_key(txn),
                            _ => false,
                        })
                        .cloned()
                        .collect();
                    if !decisions.is_empty() {
                        let (group, shard, command) = decisions[pick % decisions.len()].clone();
                        world.groups[group as usize].append(shard, command);
                    }
                }
            }
            world.check_visible(&paths);
        }
        world.drain();
        world.check_visible(&paths);
    }
}

#[test]
fn a_kafka_shaped_multi_across_groups_commits_in_every_group_at_its_decision() {
    let mut world = World::new();
    let (epoch, topic) = two_paths_in_different_groups();
    world.write(Command::Create(create_op(&epoch, b"1", CreateMode::Persistent)));
    world.drain();
    world.submit(vec![
        MultiOp::Check { path: epoch.clone(), version: 0 },
        MultiOp::Create(create_op(&topic, b"t", CreateMode::Persistent)),
    ]);
    world.drain();
    assert_eq!(world.committed, 1);
    let shard = shard_of(&topic, SHARDS);
    assert!(world.groups[group_of(shard) as usize].shard(shard).node(&topic).is_some());
}

/// A top-level path in group 0 and one in group 1.
fn two_paths_in_different_groups() -> (String, String) {
    let name = |i: usize| format!("/n{i}");
    let group = |p: &str| group_of(shard_of(p, SHARDS));
    let first = (0..).map(name).find(|n| group(n) == 0).expect("some name");
    let other = (0..).map(name).find(|n| group(n) == 1).expect("some name");
    (first, other)
}

#[test]
fn a_write_that_meets_a_held_path_waits_for_the_finish_and_then_sees_the_whole_multi() {
    let mut world = World::new();
    let (a, b) = two_paths_in_different_groups();
    world.submit(vec![
        MultiOp::Create(create_op(&a, b"x", CreateMode::Persistent)),
        MultiOp::Create(create_op(&b, b"y", CreateMode::Persistent)),
    ]);
    let (ga, gb) = (group_of(shard_of(&a, SHARDS)), group_of(shard_of(&b, SHARDS)));
    assert!(world.step(ga), "the prepare in a's group");
    world.write(Command::SetData(crate::command::SetDataOp {
        path: a.clone(),
        data: Some(b"z".to_vec()),
        version: 0,
        auth: vec![],
    }));
    assert!(!world.step(ga), "the write meets the held path and no finish is logged yet");
    assert!(world.step(gb), "the prepare in b's group");
    world.drain();
    let node = world.groups[ga as usize].shard(shard_of(&a, SHARDS)).node(&a).expect("created");
    assert_eq!((node.data.as_deref(), node.stat().version), (Some(&b"z"[..]), 1), "the write applied after the multi");
}

/// Multis that only check one path (Kafka's controller epoch) share its hold: both prepare Yes
/// and commit; a write to the path waits for both, and a multi that changes it votes Held.
#[test]
fn multis_that_check_one_path_share_it_and_a_write_to_it_waits_for_them() {
    let mut world = World::new();
    let (epoch, topic) = two_paths_in_different_groups();
    let other_topic = format!("{topic}/other");
    world.write(Command::Create(create_op(&epoch, b"1", CreateMode::Persistent)));
    world.write(Command::Create(create_op(&topic, b"t", CreateMode::Persistent)));
    world.write(Command::Create(create_op(&other_topic, b"t", CreateMode::Persistent)));
    world.drain();
    let check = || MultiOp::Check { path: epoch.clone(), version: -1 };
    world.submit(vec![check(), m_set(&topic, b"a", -1)]);
    world.submit(vec![check(), m_set(&other_topic, b"b", -1)]);
    let ge = group_of(shard_of(&epoch, SHARDS));
    assert!(world.step(ge) && world.step(ge), "both prepares in the epoch's group");
    let epoch_shard = world.groups[ge as usize].shard(shard_of(&epoch, SHARDS));
    assert!(epoch_shard.holds.holder_of(&epoch).is_some(), "the epoch is held against changes");
    assert_eq!(epoch_shard.holder_of(&epoch), None, "and not against reads");
    let votes: Vec<Vote> = world.running.values().map(|r| r.votes[&ge].0).collect();
    assert_eq!(votes, vec![Vote::Yes, Vote::Yes], "checks of one path share it");
    world.submit(vec![m_set(&epoch, b"2", -1), m_set(&topic, b"c", -1)]);
    assert!(world.step(ge));
    let votes: Vec<Vote> = world.running.values().filter_map(|r| r.votes.get(&ge).map(|v| v.0)).collect();
    assert_eq!(votes[2], Vote::Held, "a multi that changes a checked path waits its turn");
    world.write(Command::SetData(crate::command::SetDataOp {
        path: epoch.clone(),
        data: Some(b"3".to_vec()),
        version: -1,
        auth: vec![],
    }));
    world.drain();
    assert_eq!(world.committed, 3, "both checks and the retried change commit");
}
