//! Reads and per-connection watch requests, as ZooKeeper's FinalRequestProcessor and
//! DataTree answer them: permission checks, watch registration, setWatches firing.

use crate::acl;
use crate::error::ZkError;
use crate::path;
use crate::request::{Caller, ReadOp, ReadResult};
use crate::shard::Shard;
use crate::tree::Node;
use crate::types::{perms, AddWatchMode, EventType, Notification, WatcherType, Zxid};
use crate::watch::WatchKind;

impl Shard {
    pub(crate) fn serve_read(
        &mut self,
        caller: Caller<'_>,
        op: &ReadOp,
        out: &mut Vec<Notification>,
    ) -> Result<ReadResult, ZkError> {
        match op {
            ReadOp::Exists { path, watch } => self.exists(caller, path, *watch),
            ReadOp::GetData { path, watch } => self.get_data(caller, path, *watch),
            ReadOp::GetChildren { path, watch } => {
                self.get_children(caller, path, *watch).map(|(children, _)| ReadResult::Children(children))
            }
            ReadOp::GetChildren2 { path, watch } => {
                self.get_children(caller, path, *watch).map(|(children, stat)| ReadResult::Children2 { children, stat })
            }
            ReadOp::GetAcl { path } => self.get_acl(caller, path),
            ReadOp::GetAllChildrenNumber { path } => {
                let node = self.readable(caller, path, perms::READ)?;
                let _ = node;
                Ok(ReadResult::Number(self.tree.descendant_count(path) as i32))
            }
            ReadOp::GetEphemerals { prefix } => Ok(ReadResult::Paths(self.ephemerals(caller, prefix))),
            ReadOp::MultiRead(ops) => {
                Ok(ReadResult::Multi(ops.iter().map(|op| self.multi_read_op(caller, op)).collect()))
            }
            ReadOp::AddWatch { path, mode } => {
                path::validate(path, false)?;
                let kind = match mode {
                    AddWatchMode::Persistent => WatchKind::Persistent,
                    AddWatchMode::PersistentRecursive => WatchKind::PersistentRecursive,
                };
                self.watches.add(kind, path, caller.conn);
                Ok(ReadResult::Done)
            }
            ReadOp::CheckWatches { path, kind } => self.check_watches(caller, path, *kind, false),
            ReadOp::RemoveWatches { path, kind } => self.check_watches(caller, path, *kind, true),
            ReadOp::SetWatches { relative_zxid, data, exist, child, persistent, persistent_recursive } => {
                self.set_data_watches(caller, *relative_zxid, data, out);
                self.set_exist_watches(caller, exist, out);
                self.set_child_watches(caller, *relative_zxid, child, out);
                for path in persistent {
                    self.watches.add(WatchKind::Persistent, path, caller.conn);
                }
                for path in persistent_recursive {
                    self.watches.add(WatchKind::PersistentRecursive, path, caller.conn);
                }
                Ok(ReadResult::Done)
            }
        }
    }

    /// The node at a valid path the caller holds one of `perm` on.
    fn readable(&self, caller: Caller<'_>, path: &str, perm: i32) -> Result<&Node, ZkError> {
        path::validate(path, false)?;
        let node = self.tree.get(path).ok_or(ZkError::NoNode)?;
        acl::check(&node.acl, perm, caller.auth)?;
        Ok(node)
    }

    /// exists: the watch is registered whether or not the node exists (DataTree.statNode);
    /// no permission is needed.
    fn exists(&mut self, caller: Caller<'_>, path: &str, watch: bool) -> Result<ReadResult, ZkError> {
        path::validate(path, false)?;
        if watch {
            self.watches.add(WatchKind::Data, path, caller.conn);
        }
        self.tree.get(path).map(|node| ReadResult::Stat(node.stat())).ok_or(ZkError::NoNode)
    }

    /// getData: NoNode and NoAuth register no watch.
    fn get_data(&mut self, caller: Caller<'_>, path: &str, watch: bool) -> Result<ReadResult, ZkError> {
        let node = self.readable(caller, path, perms::READ)?;
        let result = ReadResult::Data { data: node.data.clone(), stat: node.stat() };
        if watch {
            self.watches.add(WatchKind::Data, path, caller.conn);
        }
        Ok(result)
    }

    /// getChildren: children sorted by name (ZooKeeper answers in hash order; sorted is one
    /// of the orders it may use and is deterministic).
    fn get_children(
        &mut self,
        caller: Caller<'_>,
        path: &str,
        watch: bool,
    ) -> Result<(Vec<String>, crate::types::Stat), ZkError> {
        let node = self.readable(caller, path, perms::READ)?;
        let children = node.children.iter().cloned().collect();
        let stat = node.stat();
        if watch {
            self.watches.add(WatchKind::Child, path, caller.conn);
        }
        Ok((children, stat))
    }

    /// getACL (3.8): READ or ADMIN needed; without ADMIN digest hashes are hidden.
    fn get_acl(&self, caller: Caller<'_>, path: &str) -> Result<ReadResult, ZkError> {
        let node = self.readable(caller, path, perms::READ | perms::ADMIN)?;
        let acl = if acl::allows(&node.acl, perms::ADMIN, caller.auth) {
            node.acl.clone()
        } else {
            acl::redact_digests(&node.acl)
        };
        Ok(ReadResult::Acl { acl, stat: node.stat() })
    }

    /// getEphemerals: no session check; an unknown session simply has none.
    fn ephemerals(&self, caller: Caller<'_>, prefix: &str) -> Vec<String> {
        let all = self.sessions.ephemerals(caller.session);
        let prefix = prefix.trim();
        if prefix.is_empty() || prefix == "/" {
            return all;
        }
        all.into_iter().filter(|path| path.starts_with(prefix)).collect()
    }

    fn multi_read_op(&mut self, caller: Caller<'_>, op: &ReadOp) -> Result<ReadResult, ZkError> {
        match op {
            ReadOp::GetData { path, watch } => self.get_data(caller, path, *watch),
            ReadOp::GetChildren { path, watch } => {
                self.get_children(caller, path, *watch).map(|(children, _)| ReadResult::Children(children))
            }
            _ => Err(ZkError::BadArguments),
        }
    }

    fn check_watches(
        &mut self,
        caller: Caller<'_>,
        path: &str,
        kind: WatcherType,
        remove: bool,
    ) -> Result<ReadResult, ZkError> {
        path::validate(path, false)?;
        let found = if remove {
            self.watches.remove(kind, path, caller.conn)
        } else {
            self.watches.contains(kind, path, caller.conn)
        };
        if found {
            Ok(ReadResult::Done)
        } else {
            Err(ZkError::NoWatcher)
        }
    }

    /// Data watches of a reconnecting client: missing node → NodeDeleted, changed since
    /// `relative_zxid` → NodeDataChanged, else re-registered (DataTree.setWatches).
    fn set_data_watches(
        &mut self,
        caller: Caller<'_>,
        relative_zxid: Zxid,
        paths: &[String],
        out: &mut Vec<Notification>,
    ) {
        for path in paths {
            let fired = match self.tree.get(path) {
                None => Some((EventType::NodeDeleted, self.last_zxid())),
                Some(node) if node.meta.mzxid > relative_zxid => Some((EventType::NodeDataChanged, node.meta.mzxid)),
                Some(_) => None,
            };
            self.fire_or_register(caller, path, fired, WatchKind::Data, out);
        }
    }

    /// Exist watches: an existing node fires NodeCreated at once, whatever its czxid.
    fn set_exist_watches(&mut self, caller: Caller<'_>, paths: &[String], out: &mut Vec<Notification>) {
        for path in paths {
            let fired = self.tree.get(path).map(|node| (EventType::NodeCreated, node.meta.czxid));
            self.fire_or_register(caller, path, fired, WatchKind::Data, out);
        }
    }

    /// Child watches: missing node → NodeDeleted, children changed since `relative_zxid` →
    /// NodeChildrenChanged, else re-registered.
    fn set_child_watches(
        &mut self,
        caller: Caller<'_>,
        relative_zxid: Zxid,
        paths: &[String],
        out: &mut Vec<Notification>,
    ) {
        for path in paths {
            let fired = match self.tree.get(path) {
                None => Some((EventType::NodeDeleted, self.last_zxid())),
                Some(node) if node.meta.pzxid > relative_zxid => {
                    Some((EventType::NodeChildrenChanged, node.meta.pzxid))
                }
                Some(_) => None,
            };
            self.fire_or_register(caller, path, fired, WatchKind::Child, out);
        }
    }

    fn fire_or_register(
        &mut self,
        caller: Caller<'_>,
        path: &str,
        fired: Option<(EventType, Zxid)>,
        kind: WatchKind,
        out: &mut Vec<Notification>,
    ) {
        match fired {
            Some((event, zxid)) => out.push(Notification { conn: caller.conn, event, path: path.to_string(), zxid }),
            None => self.watches.add(kind, path, caller.conn),
        }
    }
}
