//! Property tests: the shard against a simple model of the tree, and log replay through the
//! rkyv bytes reproducing the same shard.

use crate::command::{ClientWrite, Command, CreateOp, DeleteOp, LogEntry, MultiOp, SetDataOp};
use crate::error::ZkError;
use crate::request::{MultiResult, WriteResult};
use crate::shard::{Applied, Shard};
use crate::snapshot::{ArchivedNodeBatch, ArchivedShardHead, NodeBatchBuilder, ShardRestore};
use crate::types::{perms, Acl, CreateMode, Id};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// Paths over names {a, b, c}, depth 1 to 3.
fn path_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "a-"]), 1..=3)
        .prop_map(|names| format!("/{}", names.join("/")))
}

fn version_strategy() -> impl Strategy<Value = i32> {
    prop::sample::select(vec![-1, 0, 1])
}

/// Null data included: it must survive apply and replay apart from empty data.
fn data_strategy() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop::option::weighted(0.8, prop::collection::vec(any::<u8>(), 0..4))
}

fn create(path: String, data: Option<Vec<u8>>, mode: CreateMode, ttl_ms: i64, session: i64) -> CreateOp {
    CreateOp { path, data, acl: Acl::open_unsafe(), mode, ttl_ms, session, auth: vec![] }
}

#[derive(Debug, Clone)]
enum ModelOp {
    Create(String, Option<Vec<u8>>),
    Delete(String, i32),
    SetData(String, Option<Vec<u8>>, i32),
    Check(String, i32),
}

fn model_op_strategy() -> impl Strategy<Value = ModelOp> {
    prop_oneof![
        3 => (path_strategy(), data_strategy()).prop_map(|(p, d)| ModelOp::Create(p, d)),
        2 => (path_strategy(), version_strategy()).prop_map(|(p, v)| ModelOp::Delete(p, v)),
        2 => (path_strategy(), data_strategy(), version_strategy()).prop_map(|(p, d, v)| ModelOp::SetData(p, d, v)),
        1 => (path_strategy(), version_strategy()).prop_map(|(p, v)| ModelOp::Check(p, v)),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    Single(ModelOp),
    Multi(Vec<ModelOp>),
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => model_op_strategy().prop_filter("check only in multi", |op| !matches!(op, ModelOp::Check(..))).prop_map(Step::Single),
        1 => prop::collection::vec(model_op_strategy(), 0..5).prop_map(Step::Multi),
    ]
}

/// path -> (data, version)
type Model = BTreeMap<String, (Option<Vec<u8>>, i32)>;

fn parent_exists(model: &Model, path: &str) -> bool {
    let parent = crate::path::parent(path);
    parent == "/" || model.contains_key(parent)
}

fn has_children(model: &Model, path: &str) -> bool {
    let prefix = format!("{path}/");
    model.range(prefix.clone()..).next().is_some_and(|(p, _)| p.starts_with(&prefix))
}

fn check_version(current: i32, expected: i32) -> Result<(), ZkError> {
    if expected == -1 || expected == current {
        Ok(())
    } else {
        Err(ZkError::BadVersion)
    }
}

fn model_apply(model: &mut Model, op: &ModelOp) -> Result<(), ZkError> {
    match op {
        ModelOp::Create(path, data) => {
            if !parent_exists(model, path) {
                return Err(ZkError::NoNode);
            }
            if model.contains_key(path) {
                return Err(ZkError::NodeExists);
            }
            model.insert(path.clone(), (data.clone(), 0));
        }
        ModelOp::Delete(path, version) => {
            let (_, current) = model.get(path).ok_or(ZkError::NoNode)?;
            check_version(*current, *version)?;
            if has_children(model, path) {
                return Err(ZkError::NotEmpty);
            }
            model.remove(path);
        }
        ModelOp::SetData(path, data, version) => {
            let (_, current) = model.get(path).ok_or(ZkError::NoNode)?;
            check_version(*current, *version)?;
            let version = current + 1;
            model.insert(path.clone(), (data.clone(), version));
        }
        ModelOp::Check(path, version) => {
            let (_, current) = model.get(path).ok_or(ZkError::NoNode)?;
            check_version(*current, *version)?;
        }
    }
    Ok(())
}

fn to_multi_op(op: &ModelOp) -> MultiOp {
    match op.clone() {
        ModelOp::Create(path, data) => MultiOp::Create(create(path, data, CreateMode::Persistent, 0, 0)),
        ModelOp::Delete(path, version) => MultiOp::Delete(DeleteOp { path, version, auth: vec![] }),
        ModelOp::SetData(path, data, version) => MultiOp::SetData(SetDataOp { path, data, version, auth: vec![] }),
        ModelOp::Check(path, version) => MultiOp::Check { path, version },
    }
}

fn to_command(step: &Step) -> Command {
    match step {
        Step::Single(op) => match to_multi_op(op) {
            MultiOp::Create(create) => Command::Create(create),
            MultiOp::Delete(delete) => Command::Delete(delete),
            MultiOp::SetData(set) => Command::SetData(set),
            MultiOp::Check { .. } => unreachable!("filtered"),
        },
        Step::Multi(ops) => Command::Multi { ops: ops.iter().map(to_multi_op).collect(), session: 0, auth: vec![] },
    }
}

/// The model's expected outcome: per-op codes for a multi (0 / error / -2), or one result.
fn model_step(model: &mut Model, step: &Step) -> Vec<i32> {
    match step {
        Step::Single(op) => vec![model_apply(model, op).err().map_or(0, ZkError::code)],
        Step::Multi(ops) => {
            let mut scratch = model.clone();
            for (index, op) in ops.iter().enumerate() {
                if let Err(error) = model_apply(&mut scratch, op) {
                    let mut codes = vec![0; ops.len()];
                    codes[index] = error.code();
                    codes[index + 1..].fill(ZkError::RuntimeInconsistency.code());
                    return codes;
                }
            }
            *model = scratch;
            vec![0; ops.len()]
        }
    }
}

fn shard_codes(applied: &Applied) -> Vec<i32> {
    match &applied.result {
        Err(error) => vec![error.code()],
        Ok(WriteResult::Multi(results)) => {
            results.iter().map(|r| if let MultiResult::Error(code) = r { *code } else { 0 }).collect()
        }
        Ok(_) => vec![0],
    }
}

fn assert_matches_model(shard: &Shard, model: &Model) {
    shard.tree().assert_consistent();
    // Every node of the model is in the shard with its data and version, and vice versa.
    let user_nodes = shard.tree().len() - 4; // "/" and the three /zookeeper nodes
    assert_eq!(user_nodes, model.len(), "node count");
    for (path, (data, version)) in model {
        let node = shard.node(path).unwrap_or_else(|| panic!("{path} missing"));
        assert_eq!(&node.data, data, "data of {path}");
        assert_eq!(node.meta.version, *version, "version of {path}");
        let prefix = format!("{path}/");
        let expected: Vec<&str> = model
            .keys()
            .filter(|p| p.starts_with(&prefix) && !p[prefix.len()..].contains('/'))
            .map(|p| &p[prefix.len()..])
            .collect();
        let actual: Vec<&str> = node.children.iter().map(|name| name.as_str()).collect();
        assert_eq!(actual, expected, "children of {path}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn shard_agrees_with_model(steps in prop::collection::vec(step_strategy(), 1..60)) {
        let mut shard = Shard::new(0, 1);
        let mut model = Model::new();
        for (index, step) in steps.iter().enumerate() {
            let entry = LogEntry { shard: 0, zxid: index as i64 + 1, time_ms: 1000 + index as i64, command: to_command(step) };
            let applied = shard.apply(&entry);
            let expected = model_step(&mut model, step);
            prop_assert_eq!(shard_codes(&applied), expected, "step {} {:?}", index, step);
            assert_matches_model(&shard, &model);
        }
    }
}

/// Commands exercising every kind of node, sessions, reaps and multis.
fn command_strategy() -> impl Strategy<Value = Command> {
    let mode = prop::sample::select(vec![
        CreateMode::Persistent,
        CreateMode::Ephemeral,
        CreateMode::PersistentSequential,
        CreateMode::EphemeralSequential,
        CreateMode::Container,
        CreateMode::PersistentWithTtl,
        CreateMode::PersistentSequentialWithTtl,
    ]);
    let session = 1i64..4;
    prop_oneof![
        6 => (path_strategy(), data_strategy(), mode, 0i64..50, session.clone())
            .prop_map(|(p, d, m, ttl, s)| Command::Create(create(p, d, m, ttl, s))),
        3 => (path_strategy(), version_strategy()).prop_map(|(path, version)| Command::Delete(DeleteOp { path, version, auth: vec![] })),
        2 => (path_strategy(), data_strategy(), version_strategy())
            .prop_map(|(path, data, version)| Command::SetData(SetDataOp { path, data, version, auth: vec![] })),
        1 => (path_strategy(), version_strategy())
            .prop_map(|(path, version)| Command::SetAcl { path, acl: Acl::open_unsafe(), version, auth: vec![] }),
        2 => (prop::collection::vec(model_op_strategy(), 0..4), session.clone())
            .prop_map(|(ops, session)| Command::Multi { ops: ops.iter().map(to_multi_op).collect(), session, auth: vec![] }),
        2 => session.clone().prop_map(|session| Command::CreateSession { session, timeout_ms: 5000, passwd: vec![1, 2] }),
        1 => session.clone().prop_map(|session| Command::CloseSession { session }),
        1 => path_strategy().prop_map(|path| Command::Reap { path }),
        1 => root_acl_strategy().prop_map(|acl| Command::CopyRootAcl { acl, auth: vec![] }),
        1 => session.clone().prop_map(|session| Command::MoveSession { session }),
        2 => (path_strategy(), data_strategy(), version_strategy(), session, 0i64..3).prop_map(|(path, data, version, session, epoch)| {
            let write = ClientWrite::SetData(SetDataOp { path, data, version, auth: vec![] });
            Command::OfConnection { session, epoch, write }
        }),
    ]
}

/// The ACL of "/" that setACL("/") copies to the other shards: open, or without ADMIN (top-level
/// creates and deletes still pass, so the rest of the run keeps its coverage).
fn root_acl_strategy() -> impl Strategy<Value = Vec<Acl>> {
    let no_admin = vec![Acl { perms: perms::ALL & !perms::ADMIN, id: Id::world_anyone() }];
    prop::sample::select(vec![Acl::open_unsafe(), no_admin])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn replay_through_log_bytes_reproduces_the_shard(
        commands in prop::collection::vec((command_strategy(), 1i64..40), 1..80)
    ) {
        let mut live = Shard::new(0, 1);
        let mut replica = Shard::new(0, 1);
        let mut time_ms = 1000;
        for (index, (command, step_ms)) in commands.into_iter().enumerate() {
            time_ms += step_ms;
            let entry = LogEntry { shard: 0, zxid: index as i64 + 1, time_ms, command };
            let live_applied = live.apply(&entry);
            let replayed = LogEntry::from_bytes(&entry.to_bytes()).expect("log entry round-trips");
            prop_assert_eq!(&replayed, &entry);
            let replica_applied = replica.apply(&replayed);
            prop_assert_eq!(&live_applied.result, &replica_applied.result);
            live.tree().assert_consistent();
        }
        prop_assert_eq!(live.digest(), replica.digest());
        prop_assert_eq!(live.tree().digest(), replica.tree().digest());
        // Close tombstones are not in the digest: a replay must keep them too (a restarted
        // node announces them so the other groups finish the closes).
        let (mut live_closed, mut replica_closed) = (live.recently_closed_sessions(), replica.recently_closed_sessions());
        live_closed.sort_unstable();
        replica_closed.sort_unstable();
        prop_assert_eq!(live_closed, replica_closed);
        for (id, info) in live.sessions() {
            for path in &info.ephemerals {
                let node = live.node(path).expect("ephemeral exists");
                prop_assert_eq!(node.stat().ephemeral_owner, id);
            }
        }
    }
}

/// Everything of a shard's replicated state a snapshot must carry, beyond the digest (which
/// covers the tree, the sessions' timeouts, passwords, ephemerals and epochs, and last zxid).
fn assert_same_replicated_state(a: &Shard, b: &Shard) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.digest(), b.digest());
    prop_assert_eq!(a.last_zxid(), b.last_zxid());
    prop_assert_eq!(a.recently_closed_sessions(), b.recently_closed_sessions());
    prop_assert_eq!(a.stats(), b.stats());
    prop_assert_eq!(a.reap_candidates(i64::MAX), b.reap_candidates(i64::MAX));
    let marks = |shard: &Shard| -> Vec<_> {
        shard
            .sessions()
            .into_iter()
            .map(|(id, info)| (id, info.ephemerals_changed_zxid, info.connection_epoch))
            .collect()
    };
    prop_assert_eq!(marks(a), marks(b));
    b.tree().assert_consistent();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// A snapshot image taken after any entry, archived, restored and then fed the rest of the
    /// log, ends in the state of the shard that applied the whole log, answering every entry
    /// alike (shard 0, with tombstones, and shard 1).
    #[test]
    fn a_snapshot_restored_and_replayed_reproduces_the_shard(
        commands in prop::collection::vec((command_strategy(), 1i64..40), 1..80),
        cut in 0usize..80,
        shard in 0u16..2,
    ) {
        const SHARDS: u16 = 2;
        let cut = cut % (commands.len() + 1);
        let mut live = Shard::new(shard, SHARDS);
        let mut restored = None;
        let mut time_ms = 1000;
        for (index, (command, step_ms)) in commands.into_iter().enumerate() {
            if index == cut {
                let bytes = live.image(SHARDS).to_bytes();
                let shard_back = Shard::restore(&bytes, shard, SHARDS).map_err(TestCaseError::fail)?;
                assert_same_replicated_state(&live, &shard_back)?;
                restored = Some(shard_back);
            }
            time_ms += step_ms;
            let entry = LogEntry { shard, zxid: index as i64 + 1, time_ms, command };
            let live_applied = live.apply(&entry);
            if let Some(restored) = restored.as_mut() {
                prop_assert_eq!(&live_applied.result, &restored.apply(&entry).result);
            }
        }
        let restored = match restored {
            Some(restored) => restored,
            None => Shard::restore(&live.image(SHARDS).to_bytes(), shard, SHARDS).map_err(TestCaseError::fail)?,
        };
        assert_same_replicated_state(&live, &restored)?;
    }

    /// The property: an image collected in steps while entries keep applying between
    /// them is the shard as it was when the image began; restored and fed the entries after
    /// that point, it ends in the state of the shard that applied them all (snapshot + replay
    /// == plain replay).
    #[test]
    fn an_image_walked_while_writes_continue_restores_the_state_when_it_began(
        commands in prop::collection::vec((command_strategy(), 1i64..40), 1..100),
        begin in 0usize..100,
        steps in prop::collection::vec(0usize..4, 1..100),
        shard in 0u16..2,
    ) {
        const SHARDS: u16 = 2;
        let begin = begin % commands.len();
        let mut live = Shard::new(shard, SHARDS);
        let mut walked = None;
        let mut nodes = NodeBatchBuilder::default();
        let mut batches = Vec::new();
        let mut time_ms = 1000;
        let entries: Vec<LogEntry> = commands
            .into_iter()
            .enumerate()
            .map(|(index, (command, step_ms))| {
                time_ms += step_ms;
                LogEntry { shard, zxid: index as i64 + 1, time_ms, command }
            })
            .collect();
        let mut at_begin = None;
        let mut done = false;
        for (index, entry) in entries.iter().enumerate() {
            if index == begin {
                at_begin = Some(live.image(SHARDS).to_bytes());
                walked = Some(live.begin_image(SHARDS));
            }
            live.apply(entry);
            if walked.is_some() && !done {
                done = live.image_step(steps[index % steps.len()], &mut nodes);
                batches.push(nodes.take());
            }
        }
        while !done {
            done = live.image_step(1, &mut nodes);
            batches.push(nodes.take());
        }
        prop_assert!(!live.imaging());
        let head = walked.expect("begun");
        let head_bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&head).unwrap();
        let head = rkyv::access::<ArchivedShardHead, rkyv::rancor::Error>(&head_bytes).unwrap();
        let mut restore = ShardRestore::begin(head, shard, SHARDS).map_err(TestCaseError::fail)?;
        for batch in &batches {
            let bytes = batch.to_bytes();
            let archived = rkyv::access::<ArchivedNodeBatch, rkyv::rancor::Error>(&bytes).unwrap();
            restore.add(archived).map_err(TestCaseError::fail)?;
        }
        let mut restored = restore.finish().map_err(TestCaseError::fail)?;
        let at_begin = Shard::restore(&at_begin.expect("taken"), shard, SHARDS).map_err(TestCaseError::fail)?;
        assert_same_replicated_state(&at_begin, &restored)?;
        for entry in &entries[begin..] {
            restored.apply(entry);
        }
        assert_same_replicated_state(&live, &restored)?;
    }

    /// Damaged image bytes are an error or, where the damage falls inside data the archive
    /// cannot check, a shard that still holds together: never a panic.
    #[test]
    fn a_damaged_image_is_an_error_never_a_panic(
        commands in prop::collection::vec((command_strategy(), 1i64..40), 1..40),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut_to in any::<prop::sample::Index>(),
    ) {
        let mut live = Shard::new(0, 1);
        for (index, (command, step_ms)) in commands.into_iter().enumerate() {
            live.apply(&LogEntry { shard: 0, zxid: index as i64 + 1, time_ms: 1000 + step_ms, command });
        }
        let bytes = live.image(1).to_bytes();
        let mut damaged = bytes.clone();
        for (at, xor) in flips {
            damaged[at.index(bytes.len())] ^= xor.max(1);
        }
        if let Ok(shard) = Shard::restore(&damaged, 0, 1) {
            shard.tree().assert_consistent();
        }
        prop_assert!(Shard::restore(&bytes[..cut_to.index(bytes.len())], 0, 1).is_err(), "a cut image");
        prop_assert!(Shard::restore(&bytes, 1, 2).is_err(), "the image of another shard");
    }
}
