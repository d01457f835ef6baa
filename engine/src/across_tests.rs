//! A multi across shards of one group (`shard::apply_across`) against the same multi in one
//! unsharded tree: same results, same state, watches only when it commits.

use crate::command::{ClientWrite, Command, LogEntry, MultiOp, ShardId};
use crate::error::ZkError;
use crate::path::shard_of;
use crate::request::{MultiResult, WriteResult};
use crate::shard::{apply_across, AppliedAcross, Shard};
use crate::testkit::{create_op, m_create, m_delete, m_set};
use crate::types::{CreateMode, Zxid};
use proptest::prelude::*;

const SHARDS: u16 = 3;

/// `SHARDS` shards of one group whose entries get zxid 1, 2, ... and time 1000, 1010, ...
struct Group {
    shards: Vec<Shard>,
    next_zxid: Zxid,
}

impl Group {
    fn new(count: u16) -> Group {
        Group { shards: (0..count).map(|id| Shard::new(id, count)).collect(), next_zxid: 1 }
    }

    fn entry(&mut self, shard: ShardId, command: Command) -> LogEntry {
        let zxid = self.next_zxid;
        self.next_zxid += 1;
        LogEntry { shard, zxid, time_ms: 1000 + 10 * zxid, command }
    }

    /// The multi as the server sends it: in the one shard of its ops, or across them.
    fn multi(&mut self, ops: Vec<MultiOp>) -> AppliedAcross {
        let count = self.shards.len() as u16;
        let placed: Vec<(ShardId, MultiOp)> = ops.into_iter().map(|op| (shard_of(op.path(), count), op)).collect();
        let own = placed[0].0;
        if placed.iter().all(|(shard, _)| *shard == own) {
            let ops = placed.into_iter().map(|(_, op)| op).collect();
            let entry = self.entry(own, Command::Multi { ops, session: 0, auth: vec![] });
            let applied = self.shards[own as usize].apply(&entry);
            return AppliedAcross { result: applied.result, notifications: vec![(own, applied.notifications)] };
        }
        let entry = self.entry(own, Command::MultiAcross { ops: placed, session: 0, auth: vec![] });
        self.apply_across(&entry)
    }

    fn apply_across(&mut self, entry: &LogEntry) -> AppliedAcross {
        let mut touched = entry.other_shards();
        touched.push(entry.shard);
        let mut shards: Vec<&mut Shard> = self.shards.iter_mut().filter(|s| touched.contains(&s.id())).collect();
        apply_across(&mut shards, entry)
    }

    fn shard_of(&self, path: &str) -> &Shard {
        &self.shards[shard_of(path, self.shards.len() as u16) as usize]
    }
}

/// A top-level name in `shard`, and one in another shard.
fn names_in_two_shards() -> (String, String) {
    let name = |i: usize| format!("/n{i}");
    let first = name(0);
    let other = (1..).map(name).find(|n| shard_of(n, SHARDS) != shard_of(&first, SHARDS)).expect("some name");
    (first, other)
}

fn multi_results(applied: &AppliedAcross) -> &[MultiResult] {
    match &applied.result {
        Ok(WriteResult::Multi(results)) => results,
        other => panic!("expected multi results, got {other:?}"),
    }
}

#[test]
fn a_multi_across_shards_applies_every_op_in_its_shard_under_one_zxid() {
    let mut group = Group::new(SHARDS);
    let (a, b) = names_in_two_shards();
    let applied = group.multi(vec![m_create(&a), m_create(&format!("{a}/child")), m_create(&b), m_set(&b, b"v", 0)]);
    let results = multi_results(&applied);
    assert!(matches!(&results[0], MultiResult::Create { path, .. } if *path == a));
    assert!(matches!(&results[2], MultiResult::Create { path, .. } if *path == b));
    assert!(matches!(&results[3], MultiResult::SetData(stat) if stat.version == 1));
    let (stat_a, stat_b) = (group.shard_of(&a).node(&a).unwrap().stat(), group.shard_of(&b).node(&b).unwrap().stat());
    assert_eq!((stat_a.czxid, stat_b.czxid, stat_b.mzxid), (1, 1, 1), "one zxid for the whole multi");
    assert_eq!((group.shard_of(&a).last_zxid(), group.shard_of(&b).last_zxid()), (1, 1));
    assert_eq!(stat_a.num_children, 1);
}

#[test]
fn a_failing_op_in_one_shard_takes_back_the_ops_already_done_in_the_others() {
    let mut group = Group::new(SHARDS);
    let (a, b) = names_in_two_shards();
    group.multi(vec![m_create(&b)]);
    let root_before: Vec<_> = group.shards.iter().map(|s| s.node("/").unwrap().stat()).collect();
    // Created in a's shard, then set with a wrong version in b's.
    let applied = group.multi(vec![m_create(&a), m_set(&b, b"v", 5), m_create(&format!("{a}/late"))]);
    assert_eq!(
        multi_results(&applied),
        [
            MultiResult::Error(0),
            MultiResult::Error(ZkError::BadVersion.code()),
            MultiResult::Error(ZkError::RuntimeInconsistency.code())
        ]
    );
    assert!(group.shard_of(&a).node(&a).is_none(), "the create in the other shard was taken back");
    let root_after: Vec<_> = group.shards.iter().map(|s| s.node("/").unwrap().stat()).collect();
    assert_eq!(root_before, root_after, "every shard's root is as before");
    assert!(applied.notifications.iter().all(|(_, n)| n.is_empty()), "a failed multi fires nothing");
    assert_eq!(group.shard_of(&a).last_zxid(), 2, "the failed multi's zxid is applied in every shard it names");
}

#[test]
fn watches_fire_in_each_shard_of_a_committed_multi_and_in_none_of_an_aborted_one() {
    let mut group = Group::new(SHARDS);
    let (a, b) = names_in_two_shards();
    let (shard_a, shard_b) = (shard_of(&a, SHARDS), shard_of(&b, SHARDS));
    for (path, shard) in [(&a, shard_a), (&b, shard_b)] {
        let caller = crate::request::Caller { session: 0, conn: 7, auth: &[] };
        let exists = crate::request::ReadOp::Exists { path: path.clone(), watch: true };
        let _ = group.shards[shard as usize].read(caller, &exists);
    }
    let aborted = group.multi(vec![m_create(&a), m_delete(&b, -1)]);
    assert!(aborted.notifications.iter().all(|(_, n)| n.is_empty()));
    let committed = group.multi(vec![m_create(&a), m_create(&b)]);
    let fired: Vec<(ShardId, String)> =
        committed.notifications.iter().flat_map(|(shard, n)| n.iter().map(move |n| (*shard, n.path.clone()))).collect();
    assert!(fired.contains(&(shard_a, a.clone())) && fired.contains(&(shard_b, b.clone())), "fired: {fired:?}");
}

#[test]
fn a_client_multi_across_shards_fails_whole_once_its_session_moved_in_the_entry_shard() {
    let mut group = Group::new(SHARDS);
    let (a, b) = names_in_two_shards();
    let own = shard_of(&a, SHARDS);
    let session = 42;
    for shard in 0..SHARDS {
        let open = group.entry(shard, Command::CreateSession { session, timeout_ms: 30_000, passwd: vec![0; 16] });
        group.shards[shard as usize].apply(&open);
    }
    let moved = group.entry(own, Command::MoveSession { session });
    group.shards[own as usize].apply(&moved);
    let ops = vec![(own, m_create(&a)), (shard_of(&b, SHARDS), m_create(&b))];
    let write = ClientWrite::MultiAcross { ops, session, auth: vec![] };
    let entry = group.entry(own, Command::OfConnection { session, epoch: 0, write });
    let applied = group.apply_across(&entry);
    assert_eq!(applied.result, Err(ZkError::SessionMoved));
    assert!(group.shard_of(&a).node(&a).is_none() && group.shard_of(&b).node(&b).is_none());
}

#[derive(Debug, Clone)]
enum OpKind {
    Create(usize),
    Delete(usize, i32),
    Set(usize, i32),
    Check(usize, i32),
}

/// Top-level nodes (spread over the shards) and a child of each.
fn paths() -> Vec<String> {
    let tops: Vec<String> = ["a", "b", "c", "d", "e"].iter().map(|n| format!("/{n}")).collect();
    tops.iter().cloned().chain(tops.iter().map(|t| format!("{t}/k"))).collect()
}

fn to_op(kind: &OpKind, paths: &[String]) -> MultiOp {
    match kind {
        OpKind::Create(p) => MultiOp::Create(create_op(&paths[*p], b"c", CreateMode::Persistent)),
        OpKind::Delete(p, v) => m_delete(&paths[*p], *v),
        OpKind::Set(p, v) => m_set(&paths[*p], b"s", *v),
        OpKind::Check(p, v) => MultiOp::Check { path: paths[*p].clone(), version: *v },
    }
}

fn op_kind(path_count: usize) -> impl Strategy<Value = OpKind> {
    let path = 0..path_count;
    let version = -1..2i32;
    prop_oneof![
        path.clone().prop_map(OpKind::Create),
        (path.clone(), version.clone()).prop_map(|(p, v)| OpKind::Delete(p, v)),
        (path.clone(), version.clone()).prop_map(|(p, v)| OpKind::Set(p, v)),
        (path, version).prop_map(|(p, v)| OpKind::Check(p, v)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Sharded, a multi gives the results and leaves the state that it would in one tree.
    #[test]
    fn multis_across_shards_match_the_same_multis_in_one_tree(
        steps in proptest::collection::vec(proptest::collection::vec(op_kind(10), 1..5), 1..25)
    ) {
        let paths = paths();
        let (mut one_tree, mut sharded) = (Group::new(1), Group::new(SHARDS));
        for step in &steps {
            let ops: Vec<MultiOp> = step.iter().map(|k| to_op(k, &paths)).collect();
            let expected = one_tree.multi(ops.clone());
            let got = sharded.multi(ops);
            prop_assert_eq!(&got.result, &expected.result, "step {:?}", step);
        }
        for path in &paths {
            let expected = one_tree.shard_of(path).node(path).map(|n| (n.stat(), n.data.clone()));
            let got = sharded.shard_of(path).node(path).map(|n| (n.stat(), n.data.clone()));
            prop_assert_eq!(got, expected, "{}", path);
        }
    }
}
