//! Applying one command to the tree, with ZooKeeper's rules (PrepRequestProcessor for the
//! checks and their order, DataTree for the effects). Every check of an op happens before it
//! mutates anything, so a failed op leaves the tree as it was; a multi undoes the ops before
//! its failing one with the undo log. Changes are recorded for watch firing, which happens
//! only after the whole command succeeded (a failed multi fires nothing).

use crate::acl;
use crate::command::{Command, CreateOp, MultiOp};
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
enum Undo {
    Created { path: String, parent_meta: NodeMeta },
    Deleted { path: String, node: Node, parent_meta: NodeMeta },
    DataSet { path: String, data: Vec<u8>, meta: NodeMeta },
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
    /// Parents of deleted nodes: containers among them may have to go too.
    emptied: Vec<String>,
}

impl<'a> Txn<'a> {
    pub(crate) fn new(tree: &'a mut Tree, sessions: &'a mut SessionTable, zxid: Zxid, time_ms: i64) -> Txn<'a> {
        Txn { tree, sessions, zxid, time_ms, undo: Vec::new(), changes: Vec::new(), emptied: Vec::new() }
    }

    /// Applies the command; returns its result and the changes to fire watches for.
    pub(crate) fn run(mut self, command: &Command) -> (Result<WriteResult, ZkError>, Vec<Change>) {
        let result = self.dispatch(command);
        self.reap_emptied_containers();
        (result, self.changes)
    }

    fn dispatch(&mut self, command: &Command) -> Result<WriteResult, ZkError> {
        match command {
            Command::Create(op) => {
                self.create(op, op.session, &op.auth).map(|(path, stat)| WriteResult::Created { path, stat })
            }
            Command::Delete(op) => self.delete(&op.path, op.version, &op.auth).map(|()| WriteResult::Deleted),
            Command::SetData(op) => self.set_data(&op.path, &op.data, op.version, &op.auth).map(WriteResult::Stat),
            Command::SetAcl { path, acl, version, auth } => {
                self.set_acl(path, acl, *version, auth).map(WriteResult::Stat)
            }
            Command::Multi { ops, session, auth } => Ok(WriteResult::Multi(self.multi(ops, *session, auth))),
            Command::CreateSession { session, timeout_ms, passwd } => {
                self.sessions.open(*session, *timeout_ms, passwd);
                Ok(WriteResult::SessionCreated)
            }
            Command::CloseSession { session } => {
                self.close_session(*session);
                Ok(WriteResult::SessionClosed)
            }
            Command::Reap { path } => Ok(WriteResult::Reaped(self.reap(path))),
        }
    }

    fn create(&mut self, op: &CreateOp, session: SessionId, auth: &[Id]) -> Result<(String, Stat), ZkError> {
        let kind = self.create_kind(op, session)?;
        path::validate(&op.path, op.mode.is_sequential())?;
        let acl = acl::fixup(&op.acl, auth)?;
        let parent_path = create_parent(&op.path);
        let parent = self.tree.get(parent_path).ok_or(ZkError::NoNode)?;
        acl::check(&parent.acl, perms::CREATE, auth)?;
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
            self.sessions.add_ephemeral(owner, &path);
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
        acl::check(&parent.acl, perms::DELETE, auth)?;
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
            self.sessions.remove_ephemeral(owner, path);
        }
        self.undo.push(Undo::Deleted { path: path.to_string(), node, parent_meta });
        self.changes.push(Change::Deleted(path.to_string()));
        self.emptied.push(parent_path.to_string());
    }

    fn set_data(&mut self, path: &str, data: &[u8], version: i32, auth: &[Id]) -> Result<Stat, ZkError> {
        path::validate(path, false)?;
        let node = self.tree.get(path).ok_or(ZkError::NoNode)?;
        // ZooKeeper checks WRITE before the version.
        acl::check(&node.acl, perms::WRITE, auth)?;
        check_version(node.meta.version, version)?;
        let old_meta = node.meta;
        let old_data = self.tree.replace_data(path, data.to_vec());
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
        acl::check(&node.acl, perms::ADMIN, auth)?;
        check_version(node.meta.aversion, version)?;
        let node = self.tree.node_mut(path);
        node.acl = acl;
        node.meta.aversion = node.meta.aversion.wrapping_add(1);
        Ok(node.stat())
    }

    /// The check op of a multi: it needs READ on the node (PrepRequestProcessor).
    fn check(&self, path: &str, version: i32, auth: &[Id]) -> Result<(), ZkError> {
        path::validate(path, false)?;
        let node = self.tree.get(path).ok_or(ZkError::NoNode)?;
        acl::check(&node.acl, perms::READ, auth)?;
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

    fn multi_op(&mut self, op: &MultiOp, session: SessionId, auth: &[Id]) -> Result<MultiResult, ZkError> {
        match op {
            MultiOp::Create(create) => {
                self.create(create, session, auth).map(|(path, stat)| MultiResult::Create { path, stat })
            }
            MultiOp::Delete(delete) => self.delete(&delete.path, delete.version, auth).map(|()| MultiResult::Delete),
            MultiOp::SetData(set) => self.set_data(&set.path, &set.data, set.version, auth).map(MultiResult::SetData),
            MultiOp::Check { path, version } => self.check(path, *version, auth).map(|()| MultiResult::Check),
        }
    }

    /// Takes back every applied op, newest first, and forgets their changes.
    fn rollback(&mut self) {
        while let Some(undo) = self.undo.pop() {
            match undo {
                Undo::Created { path, parent_meta } => {
                    let node = self.tree.unlink(&path);
                    if let NodeKind::Ephemeral(owner) = node.kind {
                        self.sessions.remove_ephemeral(owner, &path);
                    }
                    *self.tree.meta_mut(path::parent(&path)) = parent_meta;
                }
                Undo::Deleted { path, node, parent_meta } => {
                    if let NodeKind::Ephemeral(owner) = node.kind {
                        self.sessions.add_ephemeral(owner, &path);
                    }
                    *self.tree.meta_mut(path::parent(&path)) = parent_meta;
                    self.tree.link(path, node);
                }
                Undo::DataSet { path, data, meta } => {
                    self.tree.replace_data(&path, data);
                    *self.tree.meta_mut(&path) = meta;
                }
            }
        }
        self.changes.clear();
        self.emptied.clear();
    }

    /// Deletes the session's ephemerals (in path order, each like a delete) and forgets it.
    fn close_session(&mut self, session: SessionId) {
        for path in self.sessions.ephemerals(session) {
            self.remove_node(&path);
        }
        self.sessions.close(session);
    }

    fn reap(&mut self, path: &str) -> bool {
        let qualifies = self.tree.get(path).is_some_and(|node| qualifies_for_reap(node, self.time_ms));
        if qualifies {
            self.remove_node(path);
        }
        qualifies
    }

    /// A container whose last child went is deleted in the same apply (ZooKeeper's
    /// ContainerManager does it later; doing it here keeps apply deterministic). Cascades up.
    fn reap_emptied_containers(&mut self) {
        let mut next = 0;
        while next < self.emptied.len() {
            let path = self.emptied[next].clone();
            next += 1;
            let is_empty_container = self
                .tree
                .get(&path)
                .is_some_and(|node| node.kind == NodeKind::Container && qualifies_for_reap(node, self.time_ms));
            if is_empty_container {
                self.remove_node(&path);
            }
        }
        self.emptied.clear();
        self.undo.clear();
    }
}

/// Whether a reaper may delete the node at `now_ms`: a container that had children and has
/// none left, or a childless TTL node not modified for more than its TTL (ContainerManager:
/// `elapsed > ttl`).
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

fn aborted_results(len: usize, failed: usize, error: ZkError) -> Vec<MultiResult> {
    (0..len)
        .map(|index| match index.cmp(&failed) {
            std::cmp::Ordering::Less => MultiResult::Error(0),
            std::cmp::Ordering::Equal => MultiResult::Error(error.code()),
            std::cmp::Ordering::Greater => MultiResult::Error(ZkError::RuntimeInconsistency.code()),
        })
        .collect()
}
