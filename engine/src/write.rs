//! Applying one command to the tree, with ZooKeeper's rules (PrepRequestProcessor for the
//! checks and their order, DataTree for the effects). Every check of an op happens before it
//! mutates anything, so a failed op leaves the tree as it was; a multi undoes the ops before
//! its failing one with the undo log. Changes are recorded for watch firing, which happens
//! only after the whole command succeeded (a failed multi fires nothing).

use crate::acl;
use crate::command::{ClientWrite, Command, CreateOp, DeleteOp, MultiOp, SetDataOp};
use crate::error::ZkError;
use crate::path;
use crate::request::{MultiResult, WriteResult};
use crate::session::SessionTable;
use crate::tree::{create_parent, Node, NodeKind, NodeMeta, Tree, TTL_MAX_MS};
use crate::types::{perms, Acl, Id, SessionId, Stat, Zxid};

/// A change that fires watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    Created(String),
    Deleted(String),
    DataChanged(String),
}

/// How to take back one applied op of a multi.
#[derive(Debug, Clone)]
pub(crate) enum Undo {
    Created { path: String, parent_meta: NodeMeta },
    Deleted { path: String, node: Node, parent_meta: NodeMeta },
    DataSet { path: String, data: Option<Vec<u8>>, meta: NodeMeta },
}

/// Paths ZooKeeper refuses to delete (DataTree.isSpecialPath).
const SPECIAL_PATHS: [&str; 4] = ["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"];

/// The application of one log entry.
pub(crate) struct Txn<'a> {
    tree: &'a mut Tree,
    sessions: &'a mut SessionTable,
    zxid: Zxid,
    time_ms: i64,
    undo: Vec<Undo>,
    changes: Vec<Change>,
}

impl<'a> Txn<'a> {
    pub(crate) fn new(tree: &'a mut Tree, sessions: &'a mut SessionTable, zxid: Zxid, time_ms: i64) -> Txn<'a> {
        Txn { tree, sessions, zxid, time_ms, undo: Vec::new(), changes: Vec::new() }
    }

    /// Applies the command; returns its result and the changes to fire watches for.
    pub(crate) fn run(mut self, command: &Command) -> (Result<WriteResult, ZkError>, Vec<Change>) {
        let result = self.dispatch(command);
        (result, self.changes)
    }

    fn dispatch(&mut self, command: &Command) -> Result<WriteResult, ZkError> {
        match command {
            Command::Create(op) => self.create_node(op),
            Command::Delete(op) => self.delete_node(op),
            Command::SetData(op) => self.set_node_data(op),
            Command::SetAcl { path, acl, version, auth } => self.set_node_acl(path, acl, *version, auth),
            Command::CopyRootAcl { acl, auth } => self.copy_root_acl(acl, auth).map(WriteResult::Stat),
            Command::Multi { ops, session, auth } => Ok(self.run_multi(ops, *session, auth)),
            Command::CreateSession { session, timeout_ms, passwd } => {
                self.sessions.open(*session, *timeout_ms, passwd);
                Ok(WriteResult::SessionCreated)
            }
            Command::CloseSession { session } => {
                self.close_session(*session);
                Ok(WriteResult::SessionClosed)
            }
            Command::Reap { path } => Ok(WriteResult::Reaped(self.reap(path))),
            Command::OfConnection { session, epoch, write } => {
                if self.moved_on(*session, *epoch) {
                    return Err(ZkError::SessionMoved);
                }
                self.client_write(write)
            }
            Command::MoveSession { session } => {
                self.sessions.move_on(*session).map(WriteResult::Moved).ok_or(ZkError::SessionExpired)
            }
            Command::MultiAcross { .. } => unreachable!("a multi across shards is applied by shard::apply_across"),
            Command::TxnPrepare(_)
            | Command::TxnDecide { .. }
            | Command::TxnFinish { .. }
            | Command::TxnForget { .. } => {
                unreachable!("a transaction entry is applied by txn::apply_txn")
            }
        }
    }

    /// The session moved to a connection newer than the one of `epoch` in this shard.
    pub(crate) fn moved_on(&self, session: SessionId, epoch: Zxid) -> bool {
        self.sessions.get(session).is_some_and(|info| info.connection_epoch > epoch)
    }

    /// The changes to fire watches for, once the command is done.
    pub(crate) fn into_changes(self) -> Vec<Change> {
        self.changes
    }

    /// A client's write of `Command::OfConnection`, as the command of the same name.
    fn client_write(&mut self, write: &ClientWrite) -> Result<WriteResult, ZkError> {
        match write {
            ClientWrite::Create(op) => self.create_node(op),
            ClientWrite::Delete(op) => self.delete_node(op),
            ClientWrite::SetData(op) => self.set_node_data(op),
            ClientWrite::SetAcl { path, acl, version, auth } => self.set_node_acl(path, acl, *version, auth),
            ClientWrite::Multi { ops, session, auth } => Ok(self.run_multi(ops, *session, auth)),
            ClientWrite::MultiAcross { .. } => unreachable!("a multi across shards is applied by shard::apply_across"),
        }
    }

    fn create_node(&mut self, op: &CreateOp) -> Result<WriteResult, ZkError> {
        self.create(op, op.session, &op.auth).map(|(path, stat)| WriteResult::Created { path, stat })
    }

    fn delete_node(&mut self, op: &DeleteOp) -> Result<WriteResult, ZkError> {
        self.delete(&op.path, op.version, &op.auth).map(|()| WriteResult::Deleted)
    }

    fn set_node_data(&mut self, op: &SetDataOp) -> Result<WriteResult, ZkError> {
        self.set_data(&op.path, op.data.as_deref(), op.version, &op.auth).map(WriteResult::Stat)
    }

    fn set_node_acl(&mut self, path: &str, acl: &[Acl], version: i32, auth: &[Id]) -> Result<WriteResult, ZkError> {
        self.set_acl(path, acl, version, auth).map(WriteResult::Stat)
    }

    fn run_multi(&mut self, ops: &[MultiOp], session: SessionId, auth: &[Id]) -> WriteResult {
        WriteResult::Multi(self.multi(ops, session, auth))
    }

    fn create(&mut self, op: &CreateOp, session: SessionId, auth: &[Id]) -> Result<(String, Stat), ZkError> {
        let kind = self.create_kind(op, session)?;
        path::validate(&op.path, op.mode.is_sequential())?;
        let acl = acl::fixup(&op.acl, auth)?;
        let parent_path = create_parent(&op.path);
        let parent = self.tree.get(parent_path).ok_or(ZkError::NoNode)?;
        parent.check(perms::CREATE, auth)?;
        let path = if op.mode.is_sequential() {
            // The suffix is the parent's count of child creates before this one.
            format!("{}{:010}", op.path, parent.meta.child_creates)
        } else {
            op.path.clone()
        };
        path::validate(&path, false)?;
        if self.tree.contains(&path) {
            return Err(ZkError::NodeExists);
        }
        if parent.kind.is_ephemeral() {
            return Err(ZkError::NoChildrenForEphemerals);
        }
        let parent_meta = parent.meta;
        let node = Node::new(op.data.clone(), acl, kind, NodeMeta::created(self.zxid, self.time_ms));
        self.tree.link(path.clone(), node);
        let meta = self.tree.meta_mut(parent_path);
        meta.child_creates = meta.child_creates.wrapping_add(1);
        meta.pzxid = self.zxid;
        if let NodeKind::Ephemeral(owner) = kind {
            self.sessions.add_ephemeral(owner, &path, self.zxid);
        }
        let stat = self.tree.get(&path).expect("just linked").stat();
        self.undo.push(Undo::Created { path: path.clone(), parent_meta });
        self.changes.push(Change::Created(path.clone()));
        Ok((path, stat))
    }

    /// The kind a create makes. ZooKeeper checks the session before anything else, then the
    /// TTL (EphemeralType.validateTTL: 0 < ttl <= 2^40 - 1, else BadArguments).
    fn create_kind(&self, op: &CreateOp, session: SessionId) -> Result<NodeKind, ZkError> {
        if op.mode.is_ephemeral() {
            if !self.sessions.is_open(session) {
                return Err(ZkError::SessionExpired);
            }
            return Ok(NodeKind::Ephemeral(session));
        }
        if op.mode.is_ttl() {
            if op.ttl_ms <= 0 || op.ttl_ms > TTL_MAX_MS {
                return Err(ZkError::BadArguments);
            }
            return Ok(NodeKind::Ttl { ttl_ms: op.ttl_ms });
        }
        if op.mode.is_container() {
            return Ok(NodeKind::Container);
        }
        Ok(NodeKind::Persistent)
    }

    fn delete(&mut self, path: &str, version: i32, auth: &[Id]) -> Result<(), ZkError> {
        path::validate(path, false)?;
        if SPECIAL_PATHS.contains(&path) {
            return Err(ZkError::BadArguments);
        }
        let parent = self.tree.get(path::parent(path)).ok_or(ZkError::NoNode)?;
        parent.check(perms::DELETE, auth)?;
        let node = self.tree.get(path).ok_or(ZkError::NoNode)?;
        check_version(node.meta.version, version)?;
        if !node.children.is_empty() {
            return Err(ZkError::NotEmpty);
        }
        self.remove_node(path);
        Ok(())
    }

    /// Deletes a childless node: the parent's pzxid moves (its stored cversion does not: the
    /// cversion clients see grows because numChildren shrinks, see `Node::stat`).
    fn remove_node(&mut self, path: &str) {
        let parent_path = path::parent(path);
        let parent_meta = self.tree.get(parent_path).expect("parent of a node exists").meta;
        let node = self.tree.unlink(path);
        self.tree.meta_mut(parent_path).pzxid = self.zxid;
        if let NodeKind::Ephemeral(owner) = node.kind {
            self.sessions.remove_ephemeral(owner, path, self.zxid);
        }
        self.undo.push(Undo::Deleted { path: path.to_string(), node, parent_meta });
        self.changes.push(Change::Deleted(path.to_string()));
    }

    fn set_data(&mut self, path: &str, data: Option<&[u8]>, version: i32, auth: &[Id]) -> Result<Stat, ZkError> {
        path::validate(path, false)?;
        let node = self.tree.get(path).ok_or(ZkError::NoNode)?;
        // ZooKeeper checks WRITE before the version.
        node.check(perms::WRITE, auth)?;
        check_version(node.meta.version, version)?;
        let old_meta = node.meta;
        let old_data = self.tree.replace_data(path, data.map(<[u8]>::to_vec));
        let meta = self.tree.meta_mut(path);
        meta.version = old_meta.version.wrapping_add(1);
        meta.mzxid = self.zxid;
        meta.mtime = self.time_ms;
        self.undo.push(Undo::DataSet { path: path.to_string(), data: old_data, meta: old_meta });
        self.changes.push(Change::DataChanged(path.to_string()));
        Ok(self.tree.get(path).expect("exists").stat())
    }

    /// setACL: fixupACL comes before the node lookup in ZooKeeper; aversion moves, mzxid not.
    fn set_acl(&mut self, path: &str, acl: &[Acl], version: i32, auth: &[Id]) -> Result<Stat, ZkError> {
        path::validate(path, false)?;
        let acl = acl::fixup(acl, auth)?;
        let node = self.tree.get(path).ok_or(ZkError::NoNode)?;
        node.check(perms::ADMIN, auth)?;
        check_version(node.meta.aversion, version)?;
        let node = self.tree.node_mut(path);
        node.set_acl(acl);
        node.meta.aversion = node.meta.aversion.wrapping_add(1);
        Ok(node.stat())
    }

    fn copy_root_acl(&mut self, acl: &[Acl], auth: &[Id]) -> Result<Stat, ZkError> {
        let acl = acl::fixup(acl, auth)?;
        let root = self.tree.node_mut("/");
        root.set_acl(acl);
        Ok(root.stat())
    }

    /// The check op of a multi: it needs READ on the node (PrepRequestProcessor).
    fn check(&self, path: &str, version: i32, auth: &[Id]) -> Result<(), ZkError> {
        path::validate(path, false)?;
        let node = self.tree.get(path).ok_or(ZkError::NoNode)?;
        node.check(perms::READ, auth)?;
        check_version(node.meta.version, version)
    }

    /// All ops or none: on the first failure the applied ones are undone and the results are
    /// 0 before the failing op, its error, RuntimeInconsistency after it.
    fn multi(&mut self, ops: &[MultiOp], session: SessionId, auth: &[Id]) -> Vec<MultiResult> {
        assert!(self.undo.is_empty(), "a multi starts with an empty undo log");
        let mut results = Vec::with_capacity(ops.len());
        for (index, op) in ops.iter().enumerate() {
            match self.multi_op(op, session, auth) {
                Ok(result) => results.push(result),
                Err(error) => {
                    self.rollback();
                    return aborted_results(ops.len(), index, error);
                }
            }
        }
        results
    }

    /// One op of a multi, undoable by `rollback` until the command is done.
    pub(crate) fn multi_op(&mut self, op: &MultiOp, session: SessionId, auth: &[Id]) -> Result<MultiResult, ZkError> {
        match op {
            MultiOp::Create(create) => {
                self.create(create, session, auth).map(|(path, stat)| MultiResult::Create { path, stat })
            }
            MultiOp::Delete(delete) => self.delete(&delete.path, delete.version, auth).map(|()| MultiResult::Delete),
            MultiOp::SetData(set) => {
                self.set_data(&set.path, set.data.as_deref(), set.version, auth).map(MultiResult::SetData)
            }
            MultiOp::Check { path, version } => self.check(path, *version, auth).map(|()| MultiResult::Check),
        }
    }

    /// Takes back every applied op, newest first, and forgets their changes.
    pub(crate) fn rollback(&mut self) {
        take_back(self.tree, self.sessions, self.zxid, std::mem::take(&mut self.undo));
        self.changes.clear();
    }

    /// What takes back the ops applied so far (`take_back`), and their changes: the ops stay
    /// applied, and this `Txn` forgets them (a prepared multi across groups keeps them aside).
    pub(crate) fn take_applied(&mut self) -> (Vec<Undo>, Vec<Change>) {
        (std::mem::take(&mut self.undo), std::mem::take(&mut self.changes))
    }

    /// Deletes the session's ephemerals (in path order, each like a delete) and forgets it.
    fn close_session(&mut self, session: SessionId) {
        for path in self.sessions.ephemerals(session) {
            self.remove_node(&path);
        }
        if self.sessions.close(session).is_some() {
            self.sessions.record_closed(session, self.time_ms);
        }
    }

    fn reap(&mut self, path: &str) -> bool {
        let qualifies = self.tree.get(path).is_some_and(|node| qualifies_for_reap(node, self.time_ms));
        if qualifies {
            self.remove_node(path);
        }
        qualifies
    }
}

/// Whether a reaper may delete the node at `now_ms`: a container that had children and has
/// none left, or a childless TTL node not modified for more than its TTL (ContainerManager:
/// `elapsed > ttl`). Only the periodic sweep (`Command::Reap`) deletes them, never the apply
/// that removed the last child: as in ZooKeeper, a lock recipe may create its next node in the
/// emptied container (Curator's mutex release followed by an acquire) without racing its deletion.
pub(crate) fn qualifies_for_reap(node: &Node, now_ms: i64) -> bool {
    if !node.children.is_empty() {
        return false;
    }
    match node.kind {
        NodeKind::Container => node.meta.child_creates > 0,
        NodeKind::Ttl { ttl_ms } => now_ms.saturating_sub(node.meta.mtime) > ttl_ms,
        NodeKind::Persistent | NodeKind::Ephemeral(_) => false,
    }
}

/// ZooKeeper's checkAndIncVersion: -1 matches any version.
fn check_version(current: i32, expected: i32) -> Result<(), ZkError> {
    if expected != -1 && expected != current {
        return Err(ZkError::BadVersion);
    }
    Ok(())
}

/// Takes back applied ops (`Txn::take_applied`), newest first. `zxid` is the entry doing it
/// (the sessions note when their ephemerals changed).
pub(crate) fn take_back(tree: &mut Tree, sessions: &mut SessionTable, zxid: Zxid, mut undo: Vec<Undo>) {
    while let Some(step) = undo.pop() {
        match step {
            Undo::Created { path, parent_meta } => {
                let node = tree.unlink(&path);
                if let NodeKind::Ephemeral(owner) = node.kind {
                    sessions.remove_ephemeral(owner, &path, zxid);
                }
                *tree.meta_mut(path::parent(&path)) = parent_meta;
            }
            Undo::Deleted { path, node, parent_meta } => {
                if let NodeKind::Ephemeral(owner) = node.kind {
                    sessions.add_ephemeral(owner, &path, zxid);
                }
                *tree.meta_mut(path::parent(&path)) = parent_meta;
                tree.link(path, node);
            }
            Undo::DataSet { path, data, meta } => {
                tree.replace_data(&path, data);
                *tree.meta_mut(&path) = meta;
            }
        }
    }
}

pub(crate) fn aborted_results(len: usize, failed: usize, error: ZkError) -> Vec<MultiResult> {
    (0..len)
        .map(|index| match index.cmp(&failed) {
            std::cmp::Ordering::Less => MultiResult::Error(0),
            std::cmp::Ordering::Equal => MultiResult::Error(error.code()),
            std::cmp::Ordering::Greater => MultiResult::Error(ZkError::RuntimeInconsistency.code()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{DeleteOp, LogEntry, SetDataOp};
    use crate::shard::Shard;
    use crate::testkit::*;
    use crate::types::{CreateMode, EventType};

    fn err<T: std::fmt::Debug>(result: Result<T, ZkError>) -> ZkError {
        result.expect_err("expected an error")
    }

    #[test]
    fn create_sets_stat_of_node_and_parent() {
        let mut h = Harness::new();
        let result = h.create("/a", b"hello");
        let Ok(WriteResult::Created { path, stat }) = result else { panic!("{result:?}") };
        assert_eq!(path, "/a");
        let expected = Stat {
            czxid: 1,
            mzxid: 1,
            ctime: 1000,
            mtime: 1000,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: 0,
            data_length: 5,
            num_children: 0,
            pzxid: 1,
        };
        assert_eq!(stat, expected);
        h.create("/a/b", b"").unwrap();
        let parent = h.stat("/a").unwrap();
        assert_eq!((parent.cversion, parent.pzxid, parent.num_children, parent.mzxid), (1, 2, 1, 1));
        assert_eq!(h.shard.last_zxid(), 2);
        h.shard.tree().assert_consistent();
    }

    #[test]
    fn create_errors_in_zookeeper_order() {
        let mut h = Harness::new();
        assert_eq!(err(h.create("a", b"")), ZkError::BadArguments);
        assert_eq!(err(h.create("/a/", b"")), ZkError::BadArguments);
        assert_eq!(err(h.create("/a/b", b"")), ZkError::NoNode);
        h.create("/a", b"").unwrap();
        assert_eq!(err(h.create("/a", b"")), ZkError::NodeExists);
        assert_eq!(err(h.create("/", b"")), ZkError::NodeExists);
        let mut no_acl = create_op("/x", b"", CreateMode::Persistent);
        no_acl.acl.clear();
        assert_eq!(err(h.apply(Command::Create(no_acl)).result), ZkError::InvalidAcl);
        // Failed commands still advance last_zxid.
        assert_eq!(h.shard.last_zxid(), h.next_zxid - 1);
        assert_eq!(h.shard.tree().len(), 5);
    }

    #[test]
    fn ephemerals_need_an_open_session_and_have_no_children() {
        let mut h = Harness::new();
        let mut op = create_op("/e", b"", CreateMode::Ephemeral);
        op.session = 7;
        assert_eq!(err(h.apply(Command::Create(op.clone())).result), ZkError::SessionExpired);
        h.open_session(7);
        let stat = match h.apply(Command::Create(op.clone())).result {
            Ok(WriteResult::Created { stat, .. }) => stat,
            other => panic!("{other:?}"),
        };
        assert_eq!(stat.ephemeral_owner, 7);
        assert_eq!(h.shard.session(7).unwrap().ephemerals.iter().collect::<Vec<_>>(), vec!["/e"]);
        assert_eq!(err(h.create("/e/child", b"")), ZkError::NoChildrenForEphemerals);
        h.apply(Command::CloseSession { session: 7 });
        assert!(h.shard.node("/e").is_none());
        assert!(h.shard.session(7).is_none());
        op.path = "/e2".into();
        assert_eq!(err(h.apply(Command::Create(op)).result), ZkError::SessionExpired);
        h.shard.tree().assert_consistent();
    }

    #[test]
    fn a_write_of_a_connection_the_session_left_fails_with_session_moved() {
        let mut h = Harness::new();
        h.open_session(7);
        let of = |epoch, path: &str| Command::OfConnection {
            session: 7,
            epoch,
            write: ClientWrite::Create(create_op(path, b"", CreateMode::Persistent)),
        };
        h.apply(of(0, "/before")).result.unwrap();
        assert_eq!(h.apply(Command::MoveSession { session: 7 }).result, Ok(WriteResult::Moved(1)));
        assert_eq!(err(h.apply(of(0, "/late")).result), ZkError::SessionMoved);
        assert!(h.shard.node("/late").is_none(), "a refused write changes nothing");
        h.apply(of(1, "/after")).result.unwrap();
        assert_eq!(h.apply(Command::MoveSession { session: 7 }).result, Ok(WriteResult::Moved(2)));
        assert_eq!(err(h.apply(of(1, "/older")).result), ZkError::SessionMoved);
        h.apply(of(2, "/newest")).result.unwrap();
        assert_eq!(err(h.apply(Command::MoveSession { session: 8 }).result), ZkError::SessionExpired);
        // A write of a session this shard does not hold (a persistent node needs none) applies.
        let unknown = Command::OfConnection {
            session: 9,
            epoch: 0,
            write: ClientWrite::Create(create_op("/u", b"", CreateMode::Persistent)),
        };
        h.apply(unknown).result.unwrap();
        h.shard.tree().assert_consistent();
    }

    #[test]
    fn a_close_leaves_a_tombstone_that_replaying_the_log_rebuilds() {
        let mut h = Harness::new();
        let mut log = Vec::new();
        for command in [
            Command::CreateSession { session: 5, timeout_ms: 30_000, passwd: vec![0; 16] },
            Command::CloseSession { session: 5 },
            Command::CloseSession { session: 6 },
        ] {
            let entry = h.entry(command);
            h.shard.apply(&entry);
            log.push(entry);
        }
        assert_eq!(h.shard.recently_closed_sessions(), vec![5], "a close of a session never opened leaves none");
        let mut replayed = crate::Shard::new(0, 1);
        for entry in &log {
            replayed.apply(entry);
        }
        assert_eq!(replayed.recently_closed_sessions(), vec![5]);
    }

    #[test]
    fn close_session_fires_delete_events() {
        let mut h = Harness::new();
        h.open_session(9);
        h.create("/p", b"").unwrap();
        for name in ["/p/x", "/p/y"] {
            let mut op = create_op(name, b"", CreateMode::Ephemeral);
            op.session = 9;
            h.apply(Command::Create(op)).result.unwrap();
        }
        h.watch_data(1, "/p/x");
        h.watch_children(2, "/p");
        let applied = h.apply(Command::CloseSession { session: 9 });
        assert_eq!(applied.result, Ok(WriteResult::SessionClosed));
        let events: Vec<_> = applied.notifications.iter().map(|n| (n.conn, n.event, n.path.as_str())).collect();
        assert_eq!(events, vec![(1, EventType::NodeDeleted, "/p/x"), (2, EventType::NodeChildrenChanged, "/p")]);
        assert!(h.children("/p").is_empty());
        assert_eq!(h.shard.stats().ephemeral_count, 0);
    }

    #[test]
    fn sequential_suffix_counts_child_creates() {
        let mut h = Harness::new();
        h.create("/q", b"").unwrap();
        let first = created_path(&h.create_mode("/q/n-", CreateMode::PersistentSequential).result);
        assert_eq!(first, "/q/n-0000000000");
        h.create("/q/plain", b"").unwrap();
        let third = created_path(&h.create_mode("/q/n-", CreateMode::PersistentSequential).result);
        assert_eq!(third, "/q/n-0000000002");
        h.delete(&third, -1).result.unwrap();
        let fourth = created_path(&h.create_mode("/q/", CreateMode::PersistentSequential).result);
        assert_eq!(fourth, "/q/0000000003");
        // 4 creates, 1 delete: clients see cversion 5 (creates + deletes), as ZooKeeper.
        let stat = h.stat("/q").unwrap();
        assert_eq!((stat.cversion, stat.num_children), (5, 3));
        let root_seq = created_path(&h.create_mode("/", CreateMode::PersistentSequential).result);
        // The root counted one create (/q); /zookeeper came with the tree.
        assert_eq!(root_seq, "/0000000001");
    }

    #[test]
    fn a_top_level_node_kept_outside_the_shard_that_owns_it_is_found() {
        let count = 4;
        let mut shard = Shard::new(1, count);
        let mut create = |path: &str, zxid: i64| {
            let command = Command::Create(create_op(path, b"", CreateMode::Persistent));
            let applied = shard.apply(&LogEntry { shard: 1, zxid, time_ms: 1000, command });
            assert!(applied.result.is_ok(), "{path}: {:?}", applied.result);
        };
        let owned = (0..).map(|i| format!("/t{i}")).find(|p| path::shard_of(p, count) == 1).unwrap();
        create(&owned, 1);
        create(&format!("{owned}/child"), 2);
        // Where an earlier version kept a sequential child of "/": with its prefix's shard.
        create("/q-0000000007", 3);
        assert_eq!(shard.misplaced_top_level(count), Some("/q-0000000007".to_string()));
        let mut clean = Shard::new(1, count);
        let command = Command::Create(create_op(&owned, b"", CreateMode::Persistent));
        clean.apply(&LogEntry { shard: 1, zxid: 1, time_ms: 1000, command });
        assert_eq!(clean.misplaced_top_level(count), None);
    }

    #[test]
    fn system_nodes_exist_only_in_their_shard() {
        let h = Harness::new();
        assert_eq!(
            h.shard.node("/").unwrap().children.iter().map(|name| name.as_str()).collect::<Vec<_>>(),
            vec!["zookeeper"]
        );
        let config = h.shard.node("/zookeeper/config").unwrap();
        assert_eq!(config.acl(), vec![Acl { perms: perms::READ, id: Id::world_anyone() }]);
        assert_eq!(config.stat().aversion, -1);
        // ZooKeeper's fresh root reports cversion -1: one child, no recorded create.
        assert_eq!(h.shard.node("/").unwrap().stat().cversion, -1);
        let count = 4u16;
        let owner = path::shard_of("/zookeeper", count);
        for id in 0..count {
            let shard = crate::shard::Shard::new(id, count);
            assert_eq!(shard.node("/zookeeper").is_some(), id == owner);
        }
    }

    #[test]
    fn ttl_modes_validate_ttl() {
        let mut h = Harness::new();
        for (ttl_ms, ok) in [(0, false), (-5, false), (TTL_MAX_MS + 1, false), (1, true), (TTL_MAX_MS, true)] {
            let mut op = create_op(&format!("/t{ttl_ms}"), b"", CreateMode::PersistentWithTtl);
            op.ttl_ms = ttl_ms;
            let result = h.apply(Command::Create(op)).result;
            assert_eq!(result.is_ok(), ok, "ttl {ttl_ms}: {result:?}");
            if !ok {
                assert_eq!(result.unwrap_err(), ZkError::BadArguments);
            }
        }
        let node = h.shard.node("/t1").unwrap();
        assert_eq!(node.kind.stored_ephemeral_owner(), 0xff00_0000_0000_0001_u64 as i64);
        assert_eq!(node.stat().ephemeral_owner, 0);
    }

    #[test]
    fn delete_rules() {
        let mut h = Harness::new();
        assert_eq!(err(h.delete("/", -1).result), ZkError::BadArguments);
        assert_eq!(err(h.delete("/zookeeper", -1).result), ZkError::BadArguments);
        assert_eq!(err(h.delete("/zookeeper/config", -1).result), ZkError::BadArguments);
        assert_eq!(err(h.delete("/nope", -1).result), ZkError::NoNode);
        assert_eq!(err(h.delete("/nope/deeper", -1).result), ZkError::NoNode);
        h.create("/a", b"").unwrap();
        h.create("/a/b", b"").unwrap();
        assert_eq!(err(h.delete("/a", -1).result), ZkError::NotEmpty);
        assert_eq!(err(h.delete("/a/b", 3).result), ZkError::BadVersion);
        let zxid = h.next_zxid;
        assert_eq!(h.delete("/a/b", 0).result, Ok(WriteResult::Deleted));
        let parent = h.stat("/a").unwrap();
        assert_eq!((parent.pzxid, parent.cversion, parent.num_children), (zxid, 2, 0));
        assert_eq!(h.delete("/a", -1).result, Ok(WriteResult::Deleted));
        h.shard.tree().assert_consistent();
    }

    #[test]
    fn set_data_rules() {
        let mut h = Harness::new();
        assert_eq!(err(h.set_data("/a", b"x", -1).result), ZkError::NoNode);
        h.create("/a", b"").unwrap();
        assert_eq!(err(h.set_data("/a", b"x", 1).result), ZkError::BadVersion);
        let zxid = h.next_zxid;
        let time_ms = h.time_ms;
        let Ok(WriteResult::Stat(stat)) = h.set_data("/a", b"xyz", 0).result else { panic!() };
        assert_eq!((stat.version, stat.mzxid, stat.mtime, stat.data_length, stat.czxid), (1, zxid, time_ms, 3, 2));
        let Ok(WriteResult::Stat(stat)) = h.set_data("/a", b"", -1).result else { panic!() };
        assert_eq!(stat.version, 2);
        assert_eq!(h.shard.node("/a").unwrap().data.as_deref(), Some(&b""[..]));
    }

    #[test]
    fn permissions_are_checked_before_versions() {
        let mut h = Harness::new();
        let bob = Id::new("digest", &acl::digest_id("bob:pw"));
        let mut op = create_op("/locked", b"", CreateMode::Persistent);
        op.acl = vec![Acl { perms: perms::READ, id: Id::world_anyone() }, Acl { perms: perms::ALL, id: bob.clone() }];
        h.apply(Command::Create(op)).result.unwrap();
        assert_eq!(err(h.set_data("/locked", b"x", 99).result), ZkError::NoAuth);
        assert_eq!(err(h.create("/locked/child", b"")), ZkError::NoAuth);
        let set = SetDataOp { path: "/locked".into(), data: Some(b"x".to_vec()), version: 99, auth: vec![bob.clone()] };
        assert_eq!(err(h.apply(Command::SetData(set)).result), ZkError::BadVersion);
        let mut child = create_op("/locked/child", b"", CreateMode::Persistent);
        child.auth = vec![bob.clone()];
        h.apply(Command::Create(child)).result.unwrap();
        // DELETE is checked on the parent, before the node's existence and version.
        let del = |version| Command::Delete(DeleteOp { path: "/locked/child".into(), version, auth: vec![] });
        assert_eq!(err(h.apply(del(7)).result), ZkError::NoAuth);
        let del_missing = Command::Delete(DeleteOp { path: "/locked/none".into(), version: -1, auth: vec![] });
        assert_eq!(err(h.apply(del_missing).result), ZkError::NoAuth);
    }

    #[test]
    fn auth_scheme_expands_to_caller_identities() {
        let mut h = Harness::new();
        let bob = Id::new("digest", &acl::digest_id("bob:pw"));
        let mut op = create_op("/mine", b"", CreateMode::Persistent);
        op.acl = vec![Acl { perms: perms::ALL, id: Id::new("auth", "") }];
        assert_eq!(err(h.apply(Command::Create(op.clone())).result), ZkError::InvalidAcl);
        op.auth = vec![Id::new("ip", "10.0.0.1"), bob.clone()];
        h.apply(Command::Create(op)).result.unwrap();
        assert_eq!(h.shard.node("/mine").unwrap().acl(), vec![Acl { perms: perms::ALL, id: bob }]);
    }

    #[test]
    fn ip_acl_grants_by_cidr() {
        let mut h = Harness::new();
        let mut op = create_op("/net", b"", CreateMode::Persistent);
        op.acl = vec![Acl { perms: perms::ALL, id: Id::new("ip", "10.0.0.0/8") }];
        h.apply(Command::Create(op)).result.unwrap();
        let mut inside = create_op("/net/a", b"", CreateMode::Persistent);
        inside.auth = vec![Id::new("ip", "10.20.30.40")];
        let mut outside = inside.clone();
        outside.auth = vec![Id::new("ip", "192.168.0.1")];
        assert_eq!(err(h.apply(Command::Create(outside)).result), ZkError::NoAuth);
        h.apply(Command::Create(inside)).result.unwrap();
    }

    #[test]
    fn set_acl_rules() {
        let mut h = Harness::new();
        let set =
            |path: &str, acl: Vec<Acl>, version| Command::SetAcl { path: path.into(), acl, version, auth: vec![] };
        assert_eq!(err(h.apply(set("/a", vec![], -1)).result), ZkError::InvalidAcl);
        assert_eq!(err(h.apply(set("/a", Acl::open_unsafe(), -1)).result), ZkError::NoNode);
        h.create("/a", b"").unwrap();
        assert_eq!(err(h.apply(set("/a", Acl::open_unsafe(), 1)).result), ZkError::BadVersion);
        let read_only = vec![Acl { perms: perms::READ, id: Id::world_anyone() }];
        let Ok(WriteResult::Stat(stat)) = h.apply(set("/a", read_only.clone(), 0)).result else { panic!() };
        assert_eq!((stat.aversion, stat.mzxid, stat.version), (1, 3, 0));
        assert_eq!(err(h.apply(set("/a", Acl::open_unsafe(), -1)).result), ZkError::NoAuth);
        let bad_digest = vec![Acl { perms: perms::READ, id: Id::new("digest", "nohash") }];
        assert_eq!(err(h.apply(set("/a", bad_digest, -1)).result), ZkError::InvalidAcl);
    }

    #[test]
    fn copy_root_acl_sets_the_acl_top_level_creates_check_without_checks_of_its_own() {
        let mut h = Harness::new();
        let read_only = vec![Acl { perms: perms::READ, id: Id::world_anyone() }];
        // No ADMIN on "/" is needed and no version: shard 0 checked both.
        let copy = Command::CopyRootAcl { acl: read_only.clone(), auth: vec![] };
        let Ok(WriteResult::Stat(stat)) = h.apply(copy).result else { panic!() };
        assert_eq!(stat.aversion, 0, "the aversion of / is shard 0's to count");
        assert_eq!(h.shard.node("/").unwrap().acl(), read_only);
        assert_eq!(h.create("/top", b"").unwrap_err(), ZkError::NoAuth);
    }

    #[test]
    fn multi_success_returns_per_op_results_and_fires_in_order() {
        let mut h = Harness::new();
        h.create("/m", b"").unwrap();
        h.watch_children(1, "/m");
        h.watch_data(2, "/m");
        let applied = h.apply(multi(vec![
            MultiOp::Create(create_op("/m/s-", b"", CreateMode::PersistentSequential)),
            MultiOp::Create(create_op("/m/s-", b"", CreateMode::PersistentSequential)),
            m_set("/m", b"v", 0),
            MultiOp::Check { path: "/m".into(), version: 1 },
            m_delete("/m/s-0000000000", 0),
        ]));
        let Ok(WriteResult::Multi(results)) = applied.result else { panic!() };
        assert!(matches!(&results[0], MultiResult::Create { path, .. } if path == "/m/s-0000000000"));
        assert!(matches!(&results[1], MultiResult::Create { path, .. } if path == "/m/s-0000000001"));
        assert!(matches!(&results[2], MultiResult::SetData(stat) if stat.version == 1));
        assert_eq!(results[3], MultiResult::Check);
        assert_eq!(results[4], MultiResult::Delete);
        let events: Vec<_> = applied.notifications.iter().map(|n| (n.conn, n.event, n.path.as_str())).collect();
        assert_eq!(events, vec![(1, EventType::NodeChildrenChanged, "/m"), (2, EventType::NodeDataChanged, "/m")]);
        assert_eq!(h.children("/m"), vec!["s-0000000001"]);
    }

    #[test]
    fn failed_multi_rolls_back_everything_and_fires_nothing() {
        let mut h = Harness::new();
        h.create("/m", b"orig").unwrap();
        h.create("/m/old", b"").unwrap();
        h.open_session(5);
        h.watch_children(1, "/m");
        h.watch_data(1, "/m");
        let digest_before = h.shard.tree().digest();
        let mut eph = create_op("/m/eph", b"", CreateMode::Ephemeral);
        eph.session = 5;
        let applied = h.apply(Command::Multi {
            ops: vec![
                m_create("/m/new"),
                MultiOp::Create(eph),
                m_set("/m", b"changed", -1),
                m_delete("/m/old", -1),
                MultiOp::Check { path: "/m".into(), version: 0 },
                m_create("/m/after"),
            ],
            session: 5,
            auth: vec![],
        });
        let Ok(WriteResult::Multi(results)) = applied.result else { panic!() };
        let codes: Vec<i32> = results
            .iter()
            .map(|r| match r {
                MultiResult::Error(code) => *code,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(codes, vec![0, 0, 0, 0, ZkError::BadVersion.code(), ZkError::RuntimeInconsistency.code()]);
        assert!(applied.notifications.is_empty());
        assert_eq!(h.shard.tree().digest(), digest_before);
        assert!(h.shard.session(5).unwrap().ephemerals.is_empty());
        h.shard.tree().assert_consistent();
        // The watches were not consumed by the failed multi.
        assert_eq!(h.shard.stats().watch_count, 2);
        assert_eq!(h.shard.last_zxid(), h.next_zxid - 1);
    }

    #[test]
    fn multi_check_needs_read_and_reports_no_node() {
        let mut h = Harness::new();
        let applied = h.apply(multi(vec![MultiOp::Check { path: "/none".into(), version: -1 }, m_create("/x")]));
        assert_eq!(applied.result, Ok(WriteResult::Multi(vec![MultiResult::Error(-101), MultiResult::Error(-2)])));
        let mut op = create_op("/secret", b"", CreateMode::Persistent);
        op.acl = vec![Acl { perms: perms::WRITE, id: Id::world_anyone() }];
        h.apply(Command::Create(op)).result.unwrap();
        let applied = h.apply(multi(vec![MultiOp::Check { path: "/secret".into(), version: -1 }]));
        assert_eq!(applied.result, Ok(WriteResult::Multi(vec![MultiResult::Error(ZkError::NoAuth.code())])));
        assert_eq!(h.apply(multi(vec![])).result, Ok(WriteResult::Multi(vec![])));
    }

    /// An emptied container stays until a sweep (ContainerManager) reaps it: deleting it in the
    /// apply that removed its last child made Curator's lock parent vanish on every release.
    #[test]
    fn emptied_container_stays_until_the_sweep_and_cascades_sweep_by_sweep() {
        let mut h = Harness::new();
        h.create_mode("/c", CreateMode::Container).result.unwrap();
        h.create_mode("/c/inner", CreateMode::Container).result.unwrap();
        h.create("/c/inner/leaf", b"").unwrap();
        h.create("/c/other", b"").unwrap();
        assert!(h.shard.reap_candidates(i64::MAX).is_empty());
        h.watch_data(1, "/c/inner");
        h.watch_children(2, "/c");
        let applied = h.delete("/c/inner/leaf", -1);
        assert!(applied.notifications.is_empty(), "{:?}", applied.notifications);
        let inner = h.stat("/c/inner").expect("the emptied container stays until a sweep");
        assert_eq!((inner.num_children, inner.cversion), (0, 2));
        assert_eq!(h.shard.reap_candidates(h.time_ms), vec!["/c/inner".to_string()]);
        let applied = h.apply(Command::Reap { path: "/c/inner".into() });
        assert_eq!(applied.result, Ok(WriteResult::Reaped(true)));
        let events: Vec<_> = applied.notifications.iter().map(|n| (n.conn, n.event, n.path.as_str())).collect();
        assert_eq!(events, vec![(1, EventType::NodeDeleted, "/c/inner"), (2, EventType::NodeChildrenChanged, "/c")]);
        assert!(h.shard.reap_candidates(i64::MAX).is_empty(), "/c still has /c/other");
        h.delete("/c/other", -1).result.unwrap();
        assert!(h.shard.node("/c").is_some());
        assert_eq!(h.shard.reap_candidates(h.time_ms), vec!["/c".to_string()]);
        assert_eq!(h.apply(Command::Reap { path: "/c".into() }).result, Ok(WriteResult::Reaped(true)));
        // A container that never had a child stays.
        h.create_mode("/fresh", CreateMode::Container).result.unwrap();
        assert!(h.shard.reap_candidates(i64::MAX).is_empty());
        h.shard.tree().assert_consistent();
    }

    /// A reap judged before a child came back is a no-op (the check is repeated at apply).
    #[test]
    fn reap_of_a_refilled_container_is_a_no_op() {
        let mut h = Harness::new();
        h.create_mode("/c", CreateMode::Container).result.unwrap();
        h.create("/c/a", b"").unwrap();
        h.delete("/c/a", -1).result.unwrap();
        assert_eq!(h.shard.reap_candidates(h.time_ms), vec!["/c".to_string()]);
        h.create("/c/b", b"").unwrap();
        assert_eq!(h.apply(Command::Reap { path: "/c".into() }).result, Ok(WriteResult::Reaped(false)));
        assert_eq!(h.children("/c"), vec!["b"]);
    }

    #[test]
    fn container_stays_when_a_multi_refills_it() {
        let mut h = Harness::new();
        h.create_mode("/c", CreateMode::Container).result.unwrap();
        h.create("/c/a", b"").unwrap();
        let applied = h.apply(multi(vec![m_delete("/c/a", -1), m_create("/c/b")]));
        let Ok(WriteResult::Multi(results)) = applied.result else { panic!() };
        assert_eq!(results[0], MultiResult::Delete);
        assert!(matches!(&results[1], MultiResult::Create { path, .. } if path == "/c/b"));
        assert_eq!(h.children("/c"), vec!["b"]);
    }

    #[test]
    fn ttl_nodes_are_reaped_after_their_ttl() {
        let mut h = Harness::new();
        let mut op = create_op("/t", b"", CreateMode::PersistentWithTtl);
        op.ttl_ms = 100;
        h.apply(Command::Create(op)).result.unwrap();
        let mtime = h.stat("/t").unwrap().mtime;
        assert!(h.shard.reap_candidates(mtime + 100).is_empty());
        assert_eq!(h.shard.reap_candidates(mtime + 101), vec!["/t".to_string()]);
        // A reap judged at an earlier time is a no-op.
        assert_eq!(h.apply(Command::Reap { path: "/t".into() }).result, Ok(WriteResult::Reaped(false)));
        h.create("/t/kid", b"").unwrap();
        h.time_ms = mtime + 1000;
        assert!(h.shard.reap_candidates(h.time_ms).is_empty(), "TTL node with a child stays");
        assert_eq!(h.apply(Command::Reap { path: "/t".into() }).result, Ok(WriteResult::Reaped(false)));
        h.delete("/t/kid", -1).result.unwrap();
        h.watch_data(3, "/t");
        let applied = h.apply(Command::Reap { path: "/t".into() });
        assert_eq!(applied.result, Ok(WriteResult::Reaped(true)));
        assert_eq!(applied.notifications.len(), 1);
        assert_eq!(h.apply(Command::Reap { path: "/t".into() }).result, Ok(WriteResult::Reaped(false)));
    }

    #[test]
    fn reap_of_container_and_plain_nodes() {
        let mut h = Harness::new();
        h.create("/plain", b"").unwrap();
        assert_eq!(h.apply(Command::Reap { path: "/plain".into() }).result, Ok(WriteResult::Reaped(false)));
        assert_eq!(h.apply(Command::Reap { path: "/missing".into() }).result, Ok(WriteResult::Reaped(false)));
    }

    #[test]
    fn closing_a_session_empties_its_container_for_the_sweep() {
        let mut h = Harness::new();
        h.open_session(2);
        h.create_mode("/lock", CreateMode::Container).result.unwrap();
        let mut op = create_op("/lock/n-", b"", CreateMode::EphemeralSequential);
        op.session = 2;
        assert_eq!(created_path(&h.apply(Command::Create(op.clone())).result), "/lock/n-0000000000");
        h.watch_children(1, "/lock");
        let applied = h.apply(Command::CloseSession { session: 2 });
        assert!(h.children("/lock").is_empty());
        let events: Vec<_> = applied.notifications.iter().map(|n| (n.event, n.path.as_str())).collect();
        assert_eq!(events, vec![(EventType::NodeChildrenChanged, "/lock")]);
        assert_eq!(h.shard.reap_candidates(h.time_ms), vec!["/lock".to_string()]);
        // A multi of a closed session cannot create ephemerals either.
        let applied = h.apply(Command::Multi { ops: vec![MultiOp::Create(op)], session: 2, auth: vec![] });
        assert_eq!(applied.result, Ok(WriteResult::Multi(vec![MultiResult::Error(ZkError::SessionExpired.code())])));
    }

    #[test]
    fn ttl_sequential_gets_suffix_and_ttl() {
        let mut h = Harness::new();
        let mut op = create_op("/job-", b"", CreateMode::PersistentSequentialWithTtl);
        op.ttl_ms = 5;
        let path = created_path(&h.apply(Command::Create(op)).result);
        assert_eq!(path, "/job-0000000000");
        assert_eq!(h.shard.node(&path).unwrap().kind, NodeKind::Ttl { ttl_ms: 5 });
        let mtime = h.stat(&path).unwrap().mtime;
        assert_eq!(h.shard.reap_candidates(mtime + 6), vec![path.clone()]);
        // setData refreshes mtime, which postpones the reap.
        h.set_data(&path, b"x", -1).result.unwrap();
        assert!(h.shard.reap_candidates(mtime + 6).is_empty());
    }

    #[test]
    #[should_panic(expected = "zxid must increase")]
    fn zxid_going_back_is_a_bug() {
        let mut h = Harness::new();
        h.create("/a", b"").unwrap();
        h.next_zxid = 1;
        let _ = h.create("/b", b"");
    }

    #[test]
    fn create_session_is_idempotent() {
        let mut h = Harness::new();
        h.open_session(3);
        let mut op = create_op("/e", b"", CreateMode::Ephemeral);
        op.session = 3;
        h.apply(Command::Create(op)).result.unwrap();
        assert_eq!(
            h.apply(Command::CreateSession { session: 3, timeout_ms: 1, passwd: vec![] }).result,
            Ok(WriteResult::SessionCreated)
        );
        assert!(h.shard.node("/e").is_some());
        assert_eq!(h.shard.sessions().len(), 1);
        assert_eq!(h.apply(Command::CloseSession { session: 99 }).result, Ok(WriteResult::SessionClosed));
    }
}
