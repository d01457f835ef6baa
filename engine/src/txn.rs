//! Multis across Raft groups: the engine's half of their two-phase commit (the protocol and its
//! recovery rules are in docs/architecture.md, "Transactions").
//!
//! Each group with ops logs a `TxnPrepare` of its own ops. Applying it runs them at once, in
//! the multi's order, and either keeps their effects with the paths they touch *held* (the
//! group votes Yes) or takes them back (No, with the failing op; or Held, when a path was held
//! by another transaction already). The coordinator group logs a `TxnDecide` from the votes,
//! and each group then logs a `TxnFinish`: the held effects fire their watches and the paths
//! are released (commit), or the effects are taken back (abort).
//!
//! Holding is what makes the multi atomic: from its prepare to its finish, nothing else in the
//! group may change or read a held path (the runtime keeps such writes and reads waiting, see
//! `holder_of_command`), so the group's part is as if applied at the moment of the decision,
//! whatever the group applied meanwhile. Everything here is state of the group's log: every
//! replica, and a replay, holds and releases the same paths at the same entries.

use crate::command::{ClientWrite, Command, LogEntry, MultiOp, ShardId, TxnId, TxnOp, TxnOutcome, TxnPrepare};
use crate::error::ZkError;
use crate::path;
use crate::request::MultiResult;
use crate::shard::Shard;
use crate::snapshot::{kind_code, kind_of};
use crate::tree::{Node, NodeMeta};
use crate::types::{Acl, Notification, Zxid};
use crate::write::{take_back, Change, Txn, Undo};
use ahash::AHashMap;
use rkyv::{Archive, Deserialize, Serialize};
use std::collections::BTreeMap;

/// A group's answer to a prepare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vote {
    /// Every op of the group succeeded; their effects are held until the decision.
    Yes,
    /// The op at `index` of the multi failed with `error`; nothing of the group's is applied.
    No { index: u32, error: ZkError },
    /// A path of the group's ops is held by another transaction: nothing is applied.
    Held,
}

/// The decision from the votes of every group: commit if all said yes; a held path anywhere
/// means the multi is tried again (what the held op would have done is not known); otherwise
/// the failure with the lowest index is the multi's, as ZooKeeper runs the ops in order and
/// stops at the first that fails (ops of different groups never see each other's paths).
pub fn outcome_of(votes: impl IntoIterator<Item = Vote>) -> TxnOutcome {
    let mut first_failure: Option<(u32, ZkError)> = None;
    for vote in votes {
        match vote {
            Vote::Yes => {}
            Vote::Held => return TxnOutcome::Retry,
            Vote::No { index, error } => {
                if first_failure.is_none_or(|(first, _)| index < first) {
                    first_failure = Some((index, error));
                }
            }
        }
    }
    match first_failure {
        None => TxnOutcome::Commit,
        Some((index, error)) => TxnOutcome::Abort { index, error: error.code() },
    }
}

/// The prepares of one try of a multi whose ops (each with its shard, in the client's order)
/// span groups: one per group, ascending, each for the group's home shard, holding that
/// group's ops with their index in the multi. The group of the first op coordinates.
pub fn prepares(
    txn: TxnId,
    ops: &[(ShardId, MultiOp)],
    group_of: impl Fn(ShardId) -> u16,
    session: crate::types::SessionId,
    auth: &[crate::types::Id],
) -> Vec<(u16, TxnPrepare)> {
    assert!(!ops.is_empty(), "a multi across groups has ops");
    let mut groups: Vec<u16> = ops.iter().map(|(shard, _)| group_of(*shard)).collect();
    groups.sort_unstable();
    groups.dedup();
    let coordinator = group_of(ops[0].0);
    groups
        .iter()
        .map(|&group| {
            let own = ops
                .iter()
                .enumerate()
                .filter(|(_, (shard, _))| group_of(*shard) == group)
                .map(|(index, (shard, op))| TxnOp { index: index as u32, shard: *shard, op: op.clone() })
                .collect();
            let prepare = TxnPrepare {
                txn,
                coordinator,
                groups: groups.clone(),
                ops: own,
                op_count: ops.len() as u32,
                session,
                auth: auth.to_vec(),
            };
            (group, prepare)
        })
        .collect()
}

/// What a group keeps of the multis across groups it takes part in (in its home shard).
#[derive(Debug, Clone, Default)]
pub struct TxnTable {
    /// Prepared here and not finished yet.
    prepared: BTreeMap<TxnId, Prepared>,
    /// Decided by this group as coordinator and not forgotten yet.
    decided: BTreeMap<TxnId, TxnOutcome>,
}

#[derive(Debug, Clone)]
pub struct Prepared {
    pub coordinator: u16,
    pub groups: Vec<u16>,
    pub vote: Vote,
    /// The held paths, by shard, and whether each is held for a change.
    held: Vec<(ShardId, String, bool)>,
    /// The shards whose state the ops changed: how to take it back, and the watches to fire.
    parts: Vec<Part>,
}

impl Prepared {
    /// The shards a finish must be handed (those the ops changed or hold paths in).
    pub fn shards(&self) -> Vec<ShardId> {
        let mut shards: Vec<ShardId> = self.held.iter().map(|(shard, _, _)| *shard).collect();
        shards.extend(self.parts.iter().map(|part| part.shard));
        shards.sort_unstable();
        shards.dedup();
        shards
    }
}

#[derive(Debug, Clone)]
struct Part {
    shard: ShardId,
    undo: Vec<Undo>,
    changes: Vec<Change>,
}

impl TxnTable {
    pub fn is_empty(&self) -> bool {
        self.prepared.is_empty() && self.decided.is_empty()
    }

    pub fn prepared(&self) -> impl Iterator<Item = (&TxnId, &Prepared)> {
        self.prepared.iter()
    }

    pub fn decided(&self) -> impl Iterator<Item = (&TxnId, &TxnOutcome)> {
        self.decided.iter()
    }

    pub fn decision(&self, txn: &TxnId) -> Option<TxnOutcome> {
        self.decided.get(txn).copied()
    }
}

/// Paths of one shard held by transactions prepared in its group. A path a multi changes is
/// held by it alone (a write hold: nothing else reads or changes it); a path it only checks is
/// held against changes (a read hold), which any number of multis share, so that multis that
/// all check one node (Kafka's controller epoch) do not exclude each other.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Holds(AHashMap<String, Hold>);

#[derive(Debug, Clone, PartialEq)]
enum Hold {
    Write(TxnId),
    /// Readers, in id order.
    Read(Vec<TxnId>),
}

impl Holds {
    /// A multi that holds `path` against changes (a write or a read hold): a write to it waits.
    pub fn holder_of(&self, path: &str) -> Option<TxnId> {
        if self.0.is_empty() {
            return None;
        }
        match self.0.get(path)? {
            Hold::Write(txn) => Some(*txn),
            Hold::Read(readers) => readers.first().copied(),
        }
    }

    /// The multi that changes `path` (a write hold): a read of it waits.
    pub fn writer_of(&self, path: &str) -> Option<TxnId> {
        if self.0.is_empty() {
            return None;
        }
        match self.0.get(path)? {
            Hold::Write(txn) => Some(*txn),
            Hold::Read(_) => None,
        }
    }

    /// Whether `txn` may hold `path` (for a change if `write`): no other multi holds it
    /// against that.
    fn may_take(&self, path: &str, write: bool, txn: TxnId) -> bool {
        match self.0.get(path) {
            None => true,
            Some(Hold::Write(holder)) => *holder == txn,
            Some(Hold::Read(readers)) => !write || readers.iter().all(|r| *r == txn),
        }
    }

    /// `txn` holds `path` (for a change if `write`; a read hold of its own becomes a write
    /// hold). The caller checked `may_take`.
    fn take(&mut self, path: &str, write: bool, txn: TxnId) {
        assert!(self.may_take(path, write, txn), "{path} taken by {txn:?} against another multi");
        match self.0.get_mut(path) {
            None if write => {
                self.0.insert(path.to_string(), Hold::Write(txn));
            }
            None => {
                self.0.insert(path.to_string(), Hold::Read(vec![txn]));
            }
            Some(Hold::Write(_)) => {}
            Some(hold @ Hold::Read(_)) if write => *hold = Hold::Write(txn),
            Some(Hold::Read(readers)) => {
                // In id order, not arrival order: a snapshot's restore builds the same list.
                if let Err(at) = readers.binary_search(&txn) {
                    readers.insert(at, txn);
                }
            }
        }
    }

    /// Whether `txn` holds `path` for a change.
    fn writes(&self, path: &str, txn: TxnId) -> bool {
        self.0.get(path) == Some(&Hold::Write(txn))
    }

    /// `txn` no longer holds `path`; false if it did not.
    fn release(&mut self, path: &str, txn: TxnId) -> bool {
        let Some(hold) = self.0.get_mut(path) else { return false };
        let (held, empty) = match hold {
            Hold::Write(holder) => (*holder == txn, *holder == txn),
            Hold::Read(readers) => {
                let before = readers.len();
                readers.retain(|r| *r != txn);
                (readers.len() < before, readers.is_empty())
            }
        };
        if empty {
            self.0.remove(path);
        }
        held
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn sorted_debug(&self) -> Vec<String> {
        let mut all: Vec<String> = self.0.iter().map(|(path, hold)| format!("{path} {hold:?}")).collect();
        all.sort();
        all
    }
}

/// What applying a transaction entry produced.
#[derive(Debug, Clone, PartialEq)]
pub enum TxnApplied {
    /// A prepare: the group's vote and, on Yes, its ops' results with their index in the multi.
    /// A second prepare of the same transaction changes nothing and gives no results.
    Voted {
        vote: Vote,
        results: Vec<(u32, MultiResult)>,
    },
    /// A decision: the one that holds (the first logged for the transaction).
    Decided(TxnOutcome),
    /// A finish: whether the group's ops became visible; None when nothing was prepared (a
    /// second finish).
    Finished(Option<bool>),
    Forgotten,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppliedTxn {
    pub applied: TxnApplied,
    pub notifications: Vec<(ShardId, Vec<Notification>)>,
}

/// Applies a transaction entry to the shards it names (`LogEntry::other_shards` and its own,
/// the group's home shard), each once. Every shard handed takes the entry's zxid.
pub fn apply_txn(shards: &mut [&mut Shard], entry: &LogEntry) -> AppliedTxn {
    for (i, shard) in shards.iter().enumerate() {
        assert!(shards[..i].iter().all(|other| other.id() != shard.id()), "shard {} handed twice", shard.id());
    }
    for shard in entry.other_shards() {
        assert!(shards.iter().any(|s| s.id() == shard), "shard {shard} of a transaction entry was not handed");
    }
    let home = shards.iter().position(|s| s.id() == entry.shard).expect("the entry's own shard is handed");
    for shard in shards.iter_mut() {
        shard.advance_to(entry.zxid);
    }
    let mut notifications = Vec::new();
    let applied = match &entry.command {
        Command::TxnPrepare(prepare) => prepare_in(shards, home, prepare, entry.zxid, entry.time_ms),
        Command::TxnDecide { txn, outcome, .. } => {
            TxnApplied::Decided(*shards[home].txns.decided.entry(*txn).or_insert(*outcome))
        }
        Command::TxnFinish { txn, commit, .. } => {
            finish_in(shards, home, *txn, *commit, entry.zxid, &mut notifications)
        }
        Command::TxnForget { txns } => {
            for txn in txns {
                shards[home].txns.decided.remove(txn);
            }
            TxnApplied::Forgotten
        }
        other => panic!("apply_txn of an entry that is not a transaction's: {other:?}"),
    };
    AppliedTxn { applied, notifications }
}

/// A finish applied ahead of its place in the log, at the first entry that meets a path its
/// transaction holds (docs/architecture.md, "Transactions"): the shards keep their zxid (the
/// entries before its place still follow), and the finish finds nothing to do at its place.
pub fn finish_early(shards: &mut [&mut Shard], entry: &LogEntry) -> AppliedTxn {
    let Command::TxnFinish { txn, commit, .. } = &entry.command else {
        panic!("finish_early of an entry that is not a finish: {:?}", entry.command);
    };
    for shard in entry.other_shards() {
        assert!(shards.iter().any(|s| s.id() == shard), "shard {shard} of a finish was not handed");
    }
    let home = shards.iter().position(|s| s.id() == entry.shard).expect("the entry's own shard is handed");
    let zxid = shards.iter().map(|s| s.last_zxid()).max().expect("some shard");
    let mut notifications = Vec::new();
    let applied = finish_in(shards, home, *txn, *commit, zxid, &mut notifications);
    AppliedTxn { applied, notifications }
}

/// A decision applied ahead of its place, while the group's next entry waits for a held path:
/// the finish that releases it may wait for this decision (the coordinator's own group), or for
/// a vote that waits behind a path another decision releases. A decision changes only the
/// table of decisions, and the first logged still holds; at its place it finds it taken.
pub fn decide_early(shards: &mut [&mut Shard], entry: &LogEntry) -> AppliedTxn {
    let Command::TxnDecide { txn, outcome, .. } = &entry.command else {
        panic!("decide_early of an entry that is not a decision: {:?}", entry.command);
    };
    let home = shards.iter().position(|s| s.id() == entry.shard).expect("the entry's own shard is handed");
    let outcome = *shards[home].txns.decided.entry(*txn).or_insert(*outcome);
    AppliedTxn { applied: TxnApplied::Decided(outcome), notifications: Vec::new() }
}

fn prepare_in(shards: &mut [&mut Shard], home: usize, prepare: &TxnPrepare, zxid: Zxid, time_ms: i64) -> TxnApplied {
    if let Some(prepared) = shards[home].txns.prepared.get(&prepare.txn) {
        return TxnApplied::Voted { vote: prepared.vote, results: Vec::new() };
    }
    let place = |shard: ShardId| shards.iter().position(|s| s.id() == shard).expect("checked by apply_txn");
    let places: Vec<usize> = prepare.ops.iter().map(|op| place(op.shard)).collect();
    let already_held = prepare.ops.iter().zip(&places).any(|(op, &place)| {
        touched_by_op(&op.op).iter().any(|&(path, write)| !shards[place].holds.may_take(path, write, prepare.txn))
    });
    let (vote, results, parts) = if already_held {
        (Vote::Held, Vec::new(), Vec::new())
    } else {
        run_ops(shards, prepare, &places, zxid, time_ms)
    };
    // What the vote rests on stays as it is until the decision: the paths of the ops run (for
    // No, up to the one that failed; its failure must still hold when the multi is decided).
    let run = match vote {
        Vote::Yes => prepare.ops.len(),
        Vote::No { index, .. } => prepare.ops.iter().position(|op| op.index == index).expect("a failed op") + 1,
        Vote::Held => 0,
    };
    let mut held: Vec<(ShardId, String)> = Vec::new();
    for (i, (op, &place)) in prepare.ops.iter().zip(&places).enumerate().take(run) {
        // A sequential create holds the name it got, not the prefix it was asked for.
        let created = match results.get(i) {
            Some((_, MultiResult::Create { path, .. })) => Some(path.as_str()),
            _ => None,
        };
        for (path, write) in touched_by_op(&op.op) {
            let path = created.filter(|_| path == op.op.path()).unwrap_or(path);
            shards[place].holds.take(path, write, prepare.txn);
            if !held.iter().any(|(shard, p)| *shard == op.shard && p == path) {
                held.push((op.shard, path.to_string()));
            }
        }
    }
    let held = held
        .into_iter()
        .map(|(shard, path)| {
            let place = places[prepare.ops.iter().position(|op| op.shard == shard).expect("a shard of the ops")];
            let write = shards[place].holds.writes(&path, prepare.txn);
            (shard, path, write)
        })
        .collect();
    let prepared = Prepared { coordinator: prepare.coordinator, groups: prepare.groups.clone(), vote, held, parts };
    shards[home].txns.prepared.insert(prepare.txn, prepared);
    TxnApplied::Voted { vote, results }
}

/// Runs the group's ops in order: all of them kept (Yes, with their results and what takes
/// them back), or none (No, with the first that failed).
fn run_ops(
    shards: &mut [&mut Shard],
    prepare: &TxnPrepare,
    places: &[usize],
    zxid: Zxid,
    time_ms: i64,
) -> (Vote, Vec<(u32, MultiResult)>, Vec<Part>) {
    let ids: Vec<ShardId> = shards.iter().map(|s| s.id()).collect();
    let mut txns: Vec<Txn<'_>> =
        shards.iter_mut().map(|s| Txn::new(&mut s.tree, &mut s.sessions, zxid, time_ms)).collect();
    let mut results = Vec::with_capacity(prepare.ops.len());
    for (op, &place) in prepare.ops.iter().zip(places) {
        match txns[place].multi_op(&op.op, prepare.session, &prepare.auth) {
            Ok(result) => results.push((op.index, result)),
            Err(error) => {
                txns.iter_mut().for_each(Txn::rollback);
                return (Vote::No { index: op.index, error }, Vec::new(), Vec::new());
            }
        }
    }
    let parts = txns
        .iter_mut()
        .zip(ids)
        .filter_map(|(txn, shard)| {
            let (undo, changes) = txn.take_applied();
            (!undo.is_empty()).then_some(Part { shard, undo, changes })
        })
        .collect();
    (Vote::Yes, results, parts)
}

fn finish_in(
    shards: &mut [&mut Shard],
    home: usize,
    txn: TxnId,
    commit: bool,
    zxid: Zxid,
    notifications: &mut Vec<(ShardId, Vec<Notification>)>,
) -> TxnApplied {
    let Some(prepared) = shards[home].txns.prepared.remove(&txn) else {
        return TxnApplied::Finished(None);
    };
    assert!(!commit || prepared.vote == Vote::Yes, "{txn:?} committed though this group voted {:?}", prepared.vote);
    let place = |shards: &[&mut Shard], shard: ShardId| {
        shards.iter().position(|s| s.id() == shard).unwrap_or_else(|| panic!("shard {shard} of {txn:?} not handed"))
    };
    for (shard, path, _) in &prepared.held {
        let place = place(shards, *shard);
        assert!(shards[place].holds.release(path, txn), "{path} was held by {txn:?}");
    }
    for part in prepared.parts {
        let place = place(shards, part.shard);
        let shard = &mut *shards[place];
        if commit {
            notifications.push((part.shard, shard.fire(&part.changes, zxid)));
        } else {
            take_back(&mut shard.tree, &mut shard.sessions, zxid, part.undo);
        }
    }
    TxnApplied::Finished(Some(commit))
}

/// ZooKeeper's results of a multi of `len` ops whose op `failed` failed with `error`.
pub fn aborted_results(len: usize, failed: usize, error: ZkError) -> Vec<MultiResult> {
    crate::write::aborted_results(len, failed, error)
}

/// Whether `command`, applied ahead of its place, releases what `txn` holds or leads to its
/// release: the finish of `txn`, or any decision (a decision changes only the coordinator's
/// table, and the finish that releases a path may wait for it). See `finish_early`.
/// What an entry does that matters to entries applied ahead of their place: a multi's
/// finish releases its held paths; a decision (of any multi) leads to a finish, and changes
/// only the coordinator's table; a forget drops a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Releaser {
    Decision(TxnId),
    Finish(TxnId),
    Forget(TxnId),
}

pub fn releasers(command: &Command) -> Vec<Releaser> {
    match command {
        Command::TxnDecide { txn, .. } => vec![Releaser::Decision(*txn)],
        Command::TxnFinish { txn, .. } => vec![Releaser::Finish(*txn)],
        Command::TxnForget { txns } => txns.iter().map(|txn| Releaser::Forget(*txn)).collect(),
        _ => Vec::new(),
    }
}

/// An entry meets a path `held` holds: which of the entries after it (`later`, in log order,
/// those not applied ahead yet) goes ahead of its place, if any: the first that `may_apply`
/// (its dependencies are applied) and is the finish of `held` or a decision (any decision may
/// lead to the finish, in the coordinator's group or, through another group's wait, here).
/// A decision never passes an earlier decision or forget of its own multi, so every replica
/// keeps the first logged decision, and forgets it, in log order.
pub fn first_release<K: Copy>(
    held: TxnId,
    later: impl IntoIterator<Item = (K, Releaser)>,
    mut may_apply: impl FnMut(K) -> bool,
) -> Option<K> {
    let mut blocked: Vec<TxnId> = Vec::new();
    for (key, releaser) in later {
        match releaser {
            Releaser::Finish(txn) if txn == held && may_apply(key) => return Some(key),
            Releaser::Finish(_) => {}
            Releaser::Decision(txn) if !blocked.contains(&txn) && may_apply(key) => return Some(key),
            Releaser::Decision(txn) | Releaser::Forget(txn) => blocked.push(txn),
        }
    }
    None
}

/// The paths an op reads or changes: its own, and its parent's for a create or delete (they
/// change the parent's children, cversion and pzxid). A sequential create's own path is its
/// prefix here.
/// Each with whether the op changes it (a check only reads its path).
fn touched_by_op(op: &MultiOp) -> Vec<(&str, bool)> {
    match op {
        MultiOp::Create(create) => with_parent(&create.path).into_iter().map(|p| (p, true)).collect(),
        MultiOp::Delete(delete) => with_parent(&delete.path).into_iter().map(|p| (p, true)).collect(),
        MultiOp::SetData(set) => vec![(set.path.as_str(), true)],
        MultiOp::Check { path, .. } => vec![(path.as_str(), false)],
    }
}

fn paths_of_op(op: &MultiOp) -> Vec<&str> {
    touched_by_op(op).into_iter().map(|(path, _)| path).collect()
}

fn with_parent(path: &str) -> Vec<&str> {
    if path.len() > 1 && path.starts_with('/') {
        vec![path, path::parent(path)]
    } else {
        vec![path]
    }
}

/// The transaction holding a path that `command` would read or change in `shard`, if any: the
/// runtime applies the command only after that transaction's finish (see docs/architecture.md).
/// Transaction entries themselves never wait (a prepare that meets a held path votes Held).
pub fn holder_of_command(shard: &Shard, command: &Command) -> Option<TxnId> {
    if shard.holds.is_empty() {
        return None;
    }
    let holder = |paths: &[&str]| paths.iter().find_map(|p| shard.holds.holder_of(p));
    match command {
        Command::Create(op) => holder(&with_parent(&op.path)),
        Command::Delete(op) => holder(&with_parent(&op.path)),
        Command::SetData(op) => holder(&[&op.path]),
        Command::SetAcl { path, .. } => holder(&[path]),
        Command::CopyRootAcl { .. } => holder(&["/"]),
        Command::Multi { ops, .. } => ops.iter().find_map(|op| holder(&paths_of_op(op))),
        Command::MultiAcross { ops, .. } => ops.iter().find_map(|(_, op)| holder(&paths_of_op(op))),
        Command::Reap { path } => holder(&with_parent(path)),
        Command::CloseSession { session } => {
            shard.sessions.ephemerals(*session).iter().find_map(|path| holder(&with_parent(path)))
        }
        Command::OfConnection { write, .. } => match write {
            ClientWrite::Create(op) => holder(&with_parent(&op.path)),
            ClientWrite::Delete(op) => holder(&with_parent(&op.path)),
            ClientWrite::SetData(op) => holder(&[&op.path]),
            ClientWrite::SetAcl { path, .. } => holder(&[path]),
            ClientWrite::Multi { ops, .. } => ops.iter().find_map(|op| holder(&paths_of_op(op))),
            ClientWrite::MultiAcross { ops, .. } => ops.iter().find_map(|(_, op)| holder(&paths_of_op(op))),
        },
        Command::CreateSession { .. }
        | Command::MoveSession { .. }
        | Command::TxnPrepare(_)
        | Command::TxnDecide { .. }
        | Command::TxnFinish { .. }
        | Command::TxnForget { .. } => None,
    }
}

/// A group's table of multis across groups in a snapshot (a frame of its own beside the home
/// shard's head): the prepared ones with what takes them back, and the decisions kept. The
/// tree in the same snapshot holds the prepared effects, as of the same entry.
#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct TxnImage {
    pub prepared: Vec<PreparedImage>,
    pub decided: Vec<(TxnId, TxnOutcome)>,
}

#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct PreparedImage {
    pub txn: TxnId,
    pub coordinator: u16,
    pub groups: Vec<u16>,
    /// 0 Yes, 1 No (`index`, `error`), 2 Held.
    pub vote: u8,
    pub index: u32,
    pub error: i32,
    /// Each held path, and whether it is held for a change (else for reading).
    pub held: Vec<(ShardId, String, bool)>,
    pub parts: Vec<PartImage>,
}

#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct PartImage {
    pub shard: ShardId,
    pub undo: Vec<UndoImage>,
    /// 0 created, 1 deleted, 2 data changed; the path.
    pub changes: Vec<(u8, String)>,
}

#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub enum UndoImage {
    Created {
        path: String,
        parent_meta: NodeMeta,
    },
    Deleted {
        path: String,
        data: Option<Vec<u8>>,
        acl: Vec<Acl>,
        kind: u8,
        kind_value: i64,
        meta: NodeMeta,
        parent_meta: NodeMeta,
    },
    DataSet {
        path: String,
        data: Option<Vec<u8>>,
        meta: NodeMeta,
    },
}

impl TxnTable {
    /// The table as a snapshot keeps it; None when empty (the common case: no frame at all).
    pub fn image(&self) -> Option<TxnImage> {
        if self.is_empty() {
            return None;
        }
        let prepared = self.prepared.iter().map(|(txn, p)| prepared_image(*txn, p)).collect();
        let decided = self.decided.iter().map(|(txn, outcome)| (*txn, *outcome)).collect();
        Some(TxnImage { prepared, decided })
    }
}

fn prepared_image(txn: TxnId, prepared: &Prepared) -> PreparedImage {
    let (vote, index, error) = match prepared.vote {
        Vote::Yes => (0, 0, 0),
        Vote::No { index, error } => (1, index, error.code()),
        Vote::Held => (2, 0, 0),
    };
    let parts = prepared
        .parts
        .iter()
        .map(|part| PartImage {
            shard: part.shard,
            undo: part.undo.iter().map(undo_image).collect(),
            changes: part.changes.iter().map(change_image).collect(),
        })
        .collect();
    PreparedImage {
        txn,
        coordinator: prepared.coordinator,
        groups: prepared.groups.clone(),
        vote,
        index,
        error,
        held: prepared.held.clone(),
        parts,
    }
}

fn undo_image(undo: &Undo) -> UndoImage {
    match undo {
        Undo::Created { path, parent_meta } => UndoImage::Created { path: path.clone(), parent_meta: *parent_meta },
        Undo::Deleted { path, node, parent_meta } => {
            let (kind, kind_value) = kind_code(node.kind);
            UndoImage::Deleted {
                path: path.clone(),
                data: node.data.clone(),
                acl: node.acl().to_vec(),
                kind,
                kind_value,
                meta: node.meta,
                parent_meta: *parent_meta,
            }
        }
        Undo::DataSet { path, data, meta } => {
            UndoImage::DataSet { path: path.clone(), data: data.clone(), meta: *meta }
        }
    }
}

fn change_image(change: &Change) -> (u8, String) {
    match change {
        Change::Created(path) => (0, path.clone()),
        Change::Deleted(path) => (1, path.clone()),
        Change::DataChanged(path) => (2, path.clone()),
    }
}

/// Puts a snapshot's table back into the group's shards, restored from the same snapshot: the
/// table into the home shard (`shards[home]`), each held path into its shard. Checked: a table
/// that names a shard not handed, a path held twice or a bad code is an error.
pub fn restore_txns(shards: &mut [&mut Shard], home: usize, image: &ArchivedTxnImage) -> Result<(), String> {
    let image =
        rkyv::deserialize::<TxnImage, rkyv::rancor::Error>(image).map_err(|e| format!("the transactions: {e}"))?;
    let place = |shards: &[&mut Shard], shard: ShardId| {
        shards.iter().position(|s| s.id() == shard).ok_or_else(|| format!("a transaction names shard {shard}"))
    };
    let mut table = TxnTable::default();
    for prepared in image.prepared {
        let vote = match prepared.vote {
            0 => Vote::Yes,
            1 => Vote::No {
                index: prepared.index,
                error: ZkError::from_code(prepared.error).ok_or(format!("an unknown error {}", prepared.error))?,
            },
            2 => Vote::Held,
            code => return Err(format!("an unknown vote {code}")),
        };
        for (shard, path, write) in &prepared.held {
            let place = place(shards, *shard)?;
            if !shards[place].holds.may_take(path, *write, prepared.txn) {
                return Err(format!("{path} held by two multis against each other"));
            }
            shards[place].holds.take(path, *write, prepared.txn);
        }
        let mut parts = Vec::with_capacity(prepared.parts.len());
        for part in prepared.parts {
            place(shards, part.shard)?;
            let undo = part.undo.into_iter().map(undo_of).collect::<Result<_, _>>()?;
            let changes = part.changes.into_iter().map(change_of).collect::<Result<_, _>>()?;
            parts.push(Part { shard: part.shard, undo, changes });
        }
        let restored =
            Prepared { coordinator: prepared.coordinator, groups: prepared.groups, vote, held: prepared.held, parts };
        table.prepared.insert(prepared.txn, restored);
    }
    table.decided = image.decided.into_iter().collect();
    shards[home].txns = table;
    Ok(())
}

fn undo_of(image: UndoImage) -> Result<Undo, String> {
    Ok(match image {
        UndoImage::Created { path, parent_meta } => Undo::Created { path, parent_meta },
        UndoImage::Deleted { path, data, acl, kind, kind_value, meta, parent_meta } => {
            let kind = kind_of(kind, kind_value).ok_or(format!("{path} has an unknown kind {kind}"))?;
            Undo::Deleted { path, node: Node::new(data, acl, kind, meta), parent_meta }
        }
        UndoImage::DataSet { path, data, meta } => Undo::DataSet { path, data, meta },
    })
}

fn change_of((code, path): (u8, String)) -> Result<Change, String> {
    match code {
        0 => Ok(Change::Created(path)),
        1 => Ok(Change::Deleted(path)),
        2 => Ok(Change::DataChanged(path)),
        other => Err(format!("an unknown change {other} of {path}")),
    }
}
