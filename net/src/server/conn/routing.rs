//! Which shards a request goes to: the owner of its path, every shard for "/" (reads merged,
//! data/exists watches in shard 0 alone), the shard of a (sequential) create, multi kept
//! within one shard, multiRead and setWatches split per shard, and the second stage of
//! setACL("/").

use super::slots::{Kind, Slot, WriteTarget};
use super::Conn;
use crate::jute::{self, Request, Response};
use crate::server::msg::*;
use engine::command::{Command, CreateOp, DeleteOp, MultiOp, SetDataOp, ShardId};
use engine::path::shard_of;
use engine::request::ReadOp;
use engine::types::{Acl, AddWatchMode, WatcherType};
use engine::ZkError;

impl Conn {
    /// The shard of a create (see `engine::path::create_shard_of`).
    pub(super) fn create_shard(&self, op: &CreateOp) -> ShardId {
        engine::path::create_shard_of(&op.path, op.mode.is_sequential(), self.shard_count())
    }

    /// setACL: one write to the owner; for "/" (in every shard) the first stage of a two-stage
    /// write, see `copy_root_acl`.
    pub(super) fn set_acl(&self, xid: i32, opcode: i32, path: String, acl: Vec<Acl>, version: i32) {
        let shard = shard_of(&path, self.shard_count());
        let kind = match path.as_str() {
            "/" if self.shard_count() > 1 => Kind::RootAcl { opcode, acl: acl.clone() },
            _ => Kind::Op(opcode),
        };
        let command = Command::SetAcl { path, acl, version, auth: self.auth_vec() };
        self.submit(xid, kind, vec![(shard, ShardOp::Write(command))]);
    }

    pub(super) fn read(&self, xid: i32, opcode: i32, op: ReadOp) {
        let path = op.path();
        if path != "/" {
            let shard = shard_of(path, self.shard_count());
            if !self.answer_inline(xid, opcode, shard, &op) {
                self.submit(xid, Kind::Op(opcode), vec![(shard, ShardOp::Read(op))]);
            }
            return;
        }
        let child_watch =
            matches!(op, ReadOp::GetChildren { watch: true, .. } | ReadOp::GetChildren2 { watch: true, .. });
        // Data/exists watches of "/" are registered in shard 0 only: its data lives there.
        let ops: Vec<(ShardId, ReadOp)> = (0..self.shard_count())
            .map(|shard| {
                let mut op = op.clone();
                if shard != 0 {
                    if let ReadOp::Exists { watch, .. } | ReadOp::GetData { watch, .. } = &mut op {
                        *watch = false;
                    }
                }
                (shard, op)
            })
            .collect();
        let seq = if let ReadOp::GetAllChildrenNumber { .. } = op {
            // A sum of per-shard counts of the whole subtree, each exact at its own moment: any
            // write anywhere changes it, so it is not held to a cut (docs/architecture.md).
            let ops = ops.into_iter().map(|(shard, op)| (shard, ShardOp::Read(op))).collect();
            self.submit(xid, Kind::Root(opcode), ops)
        } else {
            self.submit_gathered(xid, Kind::Root(opcode), ops)
        };
        if child_watch {
            self.arm_root_child_watch_at(seq);
        }
    }

    pub(super) fn add_watch(&self, xid: i32, path: String, mode: i32) {
        match AddWatchMode::from_mode(mode) {
            Some(mode) => {
                if path == "/" {
                    self.root_persistent_watch.set(true);
                }
                self.watch_op(xid, &path, Kind::AddWatch, |path| ReadOp::AddWatch { path, mode });
            }
            None => self.ready(xid, ZkError::BadArguments.code(), Response::Empty),
        }
    }

    /// checkWatches / removeWatches (told apart by `opcode`).
    pub(super) fn check_or_remove_watches(&self, xid: i32, opcode: i32, path: String, watcher_type: i32) {
        let remove = opcode == jute::opcode::REMOVE_WATCHES;
        match WatcherType::from_type(watcher_type) {
            Some(kind) => {
                if remove && path == "/" {
                    // As the engine: Children covers child and persistent watches,
                    // Data covers data, exist and persistent ones, Any all.
                    if kind != WatcherType::Data {
                        self.root_child_watch_armed.set(false);
                    }
                    self.root_persistent_watch.set(false);
                }
                let make = move |path| match remove {
                    true => ReadOp::RemoveWatches { path, kind },
                    false => ReadOp::CheckWatches { path, kind },
                };
                let kind = if path == "/" { Kind::AnyWatch } else { Kind::Op(opcode) };
                self.watch_op(xid, &path, kind, make);
            }
            None => self.ready(xid, ZkError::BadArguments.code(), Response::Empty),
        }
    }

    fn watch_op(&self, xid: i32, path: &str, kind: Kind, make: impl Fn(String) -> ReadOp) {
        let ops = self.owners_of(path, |_| ShardOp::Read(make(path.to_string())));
        self.submit(xid, kind, ops);
    }

    /// One op for the shard that owns `path`, or one per shard for "/" (spread over all).
    pub(super) fn owners_of(&self, path: &str, make: impl Fn(ShardId) -> ShardOp) -> Vec<(ShardId, ShardOp)> {
        if path == "/" {
            self.all_shards(make)
        } else {
            let shard = shard_of(path, self.shard_count());
            vec![(shard, make(shard))]
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn set_watches(
        &self,
        xid: i32,
        relative_zxid: i64,
        data: Vec<String>,
        exist: Vec<String>,
        child: Vec<String>,
        persistent: Vec<String>,
        persistent_recursive: Vec<String>,
    ) {
        let shards = self.shard_count() as usize;
        let mut per_shard: Vec<[Vec<String>; 5]> = (0..shards).map(|_| Default::default()).collect();
        let arms_root_child_watch = child.iter().any(|p| p == "/");
        let lists = [data, exist, child, persistent, persistent_recursive];
        for (list_index, list) in lists.into_iter().enumerate() {
            for path in list {
                if path == "/" {
                    let everywhere = list_index >= 2;
                    if list_index >= 3 {
                        self.root_persistent_watch.set(true);
                    }
                    let targets = if everywhere { 0..shards } else { 0..1 };
                    for shard in targets {
                        per_shard[shard][list_index].push(path.clone());
                    }
                } else {
                    per_shard[shard_of(&path, shards as u16) as usize][list_index].push(path);
                }
            }
        }
        let ops: Vec<(ShardId, ShardOp)> = per_shard
            .into_iter()
            .enumerate()
            .filter(|(_, lists)| lists.iter().any(|l| !l.is_empty()))
            .map(|(shard, [data, exist, child, persistent, persistent_recursive])| {
                let op = ReadOp::SetWatches { relative_zxid, data, exist, child, persistent, persistent_recursive };
                (shard as ShardId, ShardOp::Read(op))
            })
            .collect();
        if ops.is_empty() {
            self.ready(xid, 0, Response::Empty);
        } else {
            let seq = self.submit(xid, Kind::Done, ops);
            if arms_root_child_watch {
                self.arm_root_child_watch_at(seq);
            }
        }
    }

    pub(super) fn multi(&self, xid: i32, ops: Vec<Request>) {
        if ops.is_empty() {
            return self.ready(xid, 0, Response::Multi(Vec::new()));
        }
        let mut opcodes = Vec::with_capacity(ops.len());
        let mut multi_ops = Vec::with_capacity(ops.len());
        let mut shards = Vec::with_capacity(ops.len());
        for op in ops {
            let (opcode, multi_op) = match op {
                Request::Create { opcode, path, data, acl, flags, ttl_ms } => {
                    match self.create_op(opcode, path, data, acl, flags, ttl_ms) {
                        Ok(create) => (opcode, MultiOp::Create(create)),
                        Err(e) => return self.ready(xid, e.code(), Response::Empty),
                    }
                }
                Request::Delete { path, version } => {
                    (jute::opcode::DELETE, MultiOp::Delete(DeleteOp { path, version, auth: Vec::new() }))
                }
                Request::SetData { path, data, version } => {
                    (jute::opcode::SET_DATA, MultiOp::SetData(SetDataOp { path, data, version, auth: Vec::new() }))
                }
                Request::Check { path, version } => (jute::opcode::CHECK, MultiOp::Check { path, version }),
                _ => return self.ready(xid, ZkError::BadArguments.code(), Response::Empty),
            };
            let shard = match &multi_op {
                MultiOp::Create(create) => self.create_shard(create),
                other => shard_of(other.path(), self.shard_count()),
            };
            shards.push(shard);
            opcodes.push(opcode);
            multi_ops.push(multi_op);
        }
        if multi_ops.iter().any(|op| op.path() == "/") {
            tracing::info!(conn = self.id, "multi refused: an op on \"/\" itself");
            return self.ready(xid, ZkError::BadArguments.code(), Response::Empty);
        }
        let (session, auth) = (self.session.get(), self.auth_vec());
        let primary = shards[0];
        let command = if shards.iter().all(|s| *s == primary) {
            Command::Multi { ops: multi_ops, session, auth }
        } else if shards.iter().all(|s| self.core_of(*s) == self.core_of(primary)) {
            // One group's shards: one log entry applied to all of them at once.
            Command::MultiAcross { ops: shards.into_iter().zip(multi_ops).collect(), session, auth }
        } else {
            let request = super::txn::TxnRequest {
                opcodes,
                ops: shards.into_iter().zip(multi_ops).collect(),
                session,
                auth,
                first_part: 0,
                attempt: 0,
            };
            let parts = self.txn_parts(&request);
            self.submit(xid, Kind::Txn(Box::new(request)), parts);
            return;
        };
        self.submit(xid, Kind::Multi(opcodes), vec![(primary, ShardOp::Write(command))]);
    }

    pub(super) fn multi_read(&self, xid: i32, ops: Vec<Request>) {
        let mut parts = Vec::with_capacity(ops.len());
        for op in ops {
            let read = match op {
                Request::GetData { path, .. } => ReadOp::GetData { path, watch: false },
                Request::GetChildren { path, .. } => ReadOp::GetChildren { path, watch: false },
                _ => return self.ready(xid, ZkError::BadArguments.code(), Response::Empty),
            };
            if read.path() == "/" {
                // "/" is spread over every shard; multiRead does not gather it (yet).
                return self.ready(xid, ZkError::BadArguments.code(), Response::Empty);
            }
            parts.push((shard_of(read.path(), self.shard_count()), ShardOp::Read(read)));
        }
        if parts.is_empty() {
            return self.ready(xid, 0, Response::MultiRead(Vec::new()));
        }
        self.submit(xid, Kind::MultiRead, parts);
    }

    pub(super) fn all_shards(&self, make: impl Fn(ShardId) -> ShardOp) -> Vec<(ShardId, ShardOp)> {
        (0..self.shard_count()).map(|shard| (shard, make(shard))).collect()
    }

    /// Second stage of setACL("/"): shard 0 answered; if it applied the ACL, every other shard
    /// copies it before the reply leaves (each shard checks top-level creates against its own
    /// "/"). A failure in shard 0 (version, permission) changes no shard.
    pub(super) fn copy_root_acl(&self, seq: u64, slot: &mut Slot) {
        let Kind::RootAcl { opcode, acl } = std::mem::replace(&mut slot.kind, Kind::Done) else {
            unreachable!("called for RootAcl slots")
        };
        slot.kind = Kind::Broadcast(opcode);
        if !matches!(slot.parts[0], Some(ReplyBody::Write(Ok(_)))) {
            return;
        }
        let auth = self.auth_vec();
        let copies = (1..self.shard_count())
            .map(|shard| (shard, ShardOp::Write(Command::CopyRootAcl { acl: acl.clone(), auth: auth.clone() })))
            .collect();
        self.send_further_parts(seq, slot, copies, WriteTarget::Many);
    }
}
