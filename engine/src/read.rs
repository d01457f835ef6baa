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
                self.readable(caller, path, perms::READ)?;
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
        node.check(perm, caller.auth)?;
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
        let children = node.children.iter().map(|name| name.to_string()).collect();
        let stat = node.stat();
        if watch {
            self.watches.add(WatchKind::Child, path, caller.conn);
        }
        Ok((children, stat))
    }

    /// getACL (3.8): READ or ADMIN needed; without ADMIN digest hashes are hidden.
    fn get_acl(&self, caller: Caller<'_>, path: &str) -> Result<ReadResult, ZkError> {
        let node = self.readable(caller, path, perms::READ | perms::ADMIN)?;
        let acl = if node.check(perms::ADMIN, caller.auth).is_ok() {
            node.acl().to_vec()
        } else {
            acl::redact_digests(node.acl())
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

#[cfg(test)]
mod tests {
    use crate::acl::digest_id;
    use crate::command::Command;
    use crate::error::ZkError;
    use crate::request::{ReadOp, ReadResult};
    use crate::testkit::*;
    use crate::types::{perms, Acl, AddWatchMode, CreateMode, EventType, Id, WatcherType};

    fn events(notes: &[crate::types::Notification]) -> Vec<(u64, EventType, String)> {
        notes.iter().map(|n| (n.conn, n.event, n.path.clone())).collect()
    }

    fn ev(conn: u64, event: EventType, path: &str) -> (u64, EventType, String) {
        (conn, event, path.to_string())
    }

    #[test]
    fn exists_watch_on_missing_node_fires_node_created() {
        let mut h = Harness::new();
        let (result, _) = h.read(1, ReadOp::Exists { path: "/a".into(), watch: true });
        assert_eq!(result, Err(ZkError::NoNode));
        let zxid = h.next_zxid;
        let applied = h.apply(Command::Create(create_op("/a", b"", CreateMode::Persistent)));
        assert_eq!(events(&applied.notifications), vec![ev(1, EventType::NodeCreated, "/a")]);
        assert_eq!(applied.notifications[0].zxid, zxid);
        let (result, _) = h.read(1, ReadOp::Exists { path: "/a".into(), watch: false });
        assert!(matches!(result, Ok(ReadResult::Stat(stat)) if stat.czxid == zxid));
        assert_eq!(h.read(1, ReadOp::Exists { path: "bad".into(), watch: false }).0, Err(ZkError::BadArguments));
    }

    #[test]
    fn get_data_checks_read_and_registers_watch_only_on_success() {
        let mut h = Harness::new();
        let bob = Id::new("digest", &digest_id("bob:pw"));
        let mut op = create_op("/s", b"secret", CreateMode::Persistent);
        op.acl = vec![Acl { perms: perms::ALL, id: bob.clone() }];
        h.apply(Command::Create(op)).result.unwrap();
        let (result, _) = h.read(1, ReadOp::GetData { path: "/s".into(), watch: true });
        assert_eq!(result, Err(ZkError::NoAuth));
        assert_eq!(h.read(1, ReadOp::GetData { path: "/none".into(), watch: true }).0, Err(ZkError::NoNode));
        assert_eq!(h.shard.stats().watch_count, 0);
        let (result, _) = h.read_as(2, std::slice::from_ref(&bob), ReadOp::GetData { path: "/s".into(), watch: true });
        let Ok(ReadResult::Data { data, stat }) = result else { panic!("{result:?}") };
        assert_eq!((data.as_deref(), stat.data_length), (Some(&b"secret"[..]), 6));
        let set = Command::SetData(crate::command::SetDataOp {
            path: "/s".into(),
            data: Some(vec![]),
            version: -1,
            auth: vec![bob],
        });
        let applied = h.apply(set);
        assert_eq!(events(&applied.notifications), vec![ev(2, EventType::NodeDataChanged, "/s")]);
    }

    #[test]
    fn get_children_sorted_with_stat_and_child_watch() {
        let mut h = Harness::new();
        h.create("/p", b"").unwrap();
        for name in ["/p/c", "/p/a", "/p/b"] {
            h.create(name, b"").unwrap();
        }
        let (result, _) = h.read(1, ReadOp::GetChildren2 { path: "/p".into(), watch: true });
        let Ok(ReadResult::Children2 { children, stat }) = result else { panic!() };
        assert_eq!(children, vec!["a", "b", "c"]);
        assert_eq!(stat.num_children, 3);
        let applied = h.delete("/p/a", -1);
        assert_eq!(events(&applied.notifications), vec![ev(1, EventType::NodeChildrenChanged, "/p")]);
        let applied = h.delete("/p/b", -1);
        assert!(applied.notifications.is_empty(), "one-shot");
        let (result, _) = h.read(1, ReadOp::GetChildren { path: "/".into(), watch: false });
        assert_eq!(result, Ok(ReadResult::Children(vec!["p".into(), "zookeeper".into()])));
    }

    #[test]
    fn get_acl_needs_read_or_admin_and_redacts_without_admin() {
        let mut h = Harness::new();
        let bob = Id::new("digest", &digest_id("bob:pw"));
        let mut op = create_op("/x", b"", CreateMode::Persistent);
        op.acl = vec![Acl { perms: perms::READ, id: Id::world_anyone() }, Acl { perms: perms::ADMIN, id: bob.clone() }];
        h.apply(Command::Create(op)).result.unwrap();
        let (result, _) = h.read(1, ReadOp::GetAcl { path: "/x".into() });
        let Ok(ReadResult::Acl { acl, .. }) = result else { panic!() };
        assert_eq!(acl[1].id.id, "bob:x");
        let (result, _) = h.read_as(1, std::slice::from_ref(&bob), ReadOp::GetAcl { path: "/x".into() });
        let Ok(ReadResult::Acl { acl, .. }) = result else { panic!() };
        assert_eq!(acl[1].id, bob);
        let mut op = create_op("/w", b"", CreateMode::Persistent);
        op.acl = vec![Acl { perms: perms::WRITE, id: Id::world_anyone() }];
        h.apply(Command::Create(op)).result.unwrap();
        assert_eq!(h.read(1, ReadOp::GetAcl { path: "/w".into() }).0, Err(ZkError::NoAuth));
        assert_eq!(h.read(1, ReadOp::GetAcl { path: "/nope".into() }).0, Err(ZkError::NoNode));
    }

    #[test]
    fn last_change_read_by_a_gathered_read() {
        let mut h = Harness::new();
        h.open_session(4); // zxid 1
        let children = ReadOp::GetChildren { path: "/".into(), watch: false };
        let ephemerals = ReadOp::GetEphemerals { prefix: "/".into() };
        assert_eq!(h.shard.last_change_read_by(4, &children), 0);
        h.create("/a", b"").unwrap(); // zxid 2: a child of "/"
        h.create("/a/b", b"").unwrap(); // zxid 3: not what a read of "/" sees
        assert_eq!(h.shard.last_change_read_by(4, &children), 2);
        h.set_data("/", b"x", -1).result.unwrap(); // zxid 4: data of "/"
        assert_eq!(h.shard.last_change_read_by(4, &children), 4);
        assert_eq!(h.shard.last_change_read_by(4, &ephemerals), 0);
        let mut op = create_op("/a/e", b"", CreateMode::Ephemeral);
        op.session = 4;
        h.apply(Command::Create(op)).result.unwrap(); // zxid 5
        assert_eq!(h.shard.last_change_read_by(4, &ephemerals), 5);
        assert_eq!(h.shard.last_change_read_by(9, &ephemerals), 0, "an unknown session has none");
        h.apply(Command::Delete(crate::command::DeleteOp { path: "/a/e".into(), version: -1, auth: vec![] }))
            .result
            .unwrap();
        assert_eq!(h.shard.last_change_read_by(4, &ephemerals), 6, "another session's delete counts too");
    }

    #[test]
    fn all_children_number_and_ephemerals() {
        let mut h = Harness::new();
        h.open_session(4);
        h.create("/a", b"").unwrap();
        h.create("/a/b", b"").unwrap();
        for path in ["/a/b/e1", "/a/e2", "/e3"] {
            let mut op = create_op(path, b"", CreateMode::Ephemeral);
            op.session = 4;
            h.apply(Command::Create(op)).result.unwrap();
        }
        assert_eq!(h.read(1, ReadOp::GetAllChildrenNumber { path: "/a".into() }).0, Ok(ReadResult::Number(3)));
        // "/" counts everything but itself: zookeeper, quota, config, a, a/b, 3 ephemerals.
        assert_eq!(h.read(1, ReadOp::GetAllChildrenNumber { path: "/".into() }).0, Ok(ReadResult::Number(8)));
        let caller = crate::request::Caller { session: 4, conn: 1, auth: &[] };
        let (all, _) = h.shard.read(caller, &ReadOp::GetEphemerals { prefix: "/".into() });
        assert_eq!(all, Ok(ReadResult::Paths(vec!["/a/b/e1".into(), "/a/e2".into(), "/e3".into()])));
        let (some, _) = h.shard.read(caller, &ReadOp::GetEphemerals { prefix: "/a/".into() });
        assert_eq!(some, Ok(ReadResult::Paths(vec!["/a/b/e1".into(), "/a/e2".into()])));
        let (none, _) = h.read(1, ReadOp::GetEphemerals { prefix: "/".into() });
        assert_eq!(none, Ok(ReadResult::Paths(vec![])));
    }

    #[test]
    fn multi_read_answers_each_op() {
        let mut h = Harness::new();
        h.create("/a", b"1").unwrap();
        let ops = vec![
            ReadOp::GetData { path: "/a".into(), watch: false },
            ReadOp::GetData { path: "/missing".into(), watch: false },
            ReadOp::GetChildren { path: "/a".into(), watch: true },
            ReadOp::Exists { path: "/a".into(), watch: false },
        ];
        let (result, _) = h.read(1, ReadOp::MultiRead(ops));
        let Ok(ReadResult::Multi(results)) = result else { panic!() };
        assert!(matches!(&results[0], Ok(ReadResult::Data { data, .. }) if data.as_deref() == Some(&b"1"[..])));
        assert_eq!(results[1], Err(ZkError::NoNode));
        assert_eq!(results[2], Ok(ReadResult::Children(vec![])));
        assert_eq!(results[3], Err(ZkError::BadArguments));
        assert_eq!(h.shard.stats().watch_count, 1);
    }

    #[test]
    fn persistent_watch_via_add_watch() {
        let mut h = Harness::new();
        let add = ReadOp::AddWatch { path: "/p".into(), mode: AddWatchMode::Persistent };
        assert_eq!(h.read(1, add).0, Ok(ReadResult::Done));
        let mut all = Vec::new();
        all.extend(h.apply(Command::Create(create_op("/p", b"", CreateMode::Persistent))).notifications);
        all.extend(h.set_data("/p", b"x", -1).notifications);
        all.extend(h.apply(Command::Create(create_op("/p/c", b"", CreateMode::Persistent))).notifications);
        all.extend(h.set_data("/p/c", b"x", -1).notifications);
        all.extend(h.delete("/p/c", -1).notifications);
        all.extend(h.delete("/p", -1).notifications);
        all.extend(h.apply(Command::Create(create_op("/p", b"", CreateMode::Persistent))).notifications);
        assert_eq!(
            events(&all),
            vec![
                ev(1, EventType::NodeCreated, "/p"),
                ev(1, EventType::NodeDataChanged, "/p"),
                ev(1, EventType::NodeChildrenChanged, "/p"),
                ev(1, EventType::NodeChildrenChanged, "/p"),
                ev(1, EventType::NodeDeleted, "/p"),
                ev(1, EventType::NodeCreated, "/p"),
            ]
        );
    }

    #[test]
    fn recursive_watch_sees_every_descendant() {
        let mut h = Harness::new();
        h.read(1, ReadOp::AddWatch { path: "/r".into(), mode: AddWatchMode::PersistentRecursive }).0.unwrap();
        let mut all = Vec::new();
        all.extend(h.apply(Command::Create(create_op("/r", b"", CreateMode::Persistent))).notifications);
        all.extend(h.apply(Command::Create(create_op("/r/a", b"", CreateMode::Persistent))).notifications);
        all.extend(h.apply(Command::Create(create_op("/r/a/b", b"", CreateMode::Persistent))).notifications);
        all.extend(h.set_data("/r/a/b", b"x", -1).notifications);
        all.extend(h.delete("/r/a/b", -1).notifications);
        all.extend(h.apply(Command::Create(create_op("/rr", b"", CreateMode::Persistent))).notifications);
        assert_eq!(
            events(&all),
            vec![
                ev(1, EventType::NodeCreated, "/r"),
                ev(1, EventType::NodeCreated, "/r/a"),
                ev(1, EventType::NodeCreated, "/r/a/b"),
                ev(1, EventType::NodeDataChanged, "/r/a/b"),
                ev(1, EventType::NodeDeleted, "/r/a/b"),
            ]
        );
    }

    #[test]
    fn check_and_remove_watches() {
        let mut h = Harness::new();
        h.create("/a", b"").unwrap();
        let check = |kind| ReadOp::CheckWatches { path: "/a".into(), kind };
        let remove = |kind| ReadOp::RemoveWatches { path: "/a".into(), kind };
        assert_eq!(h.read(1, check(WatcherType::Any)).0, Err(ZkError::NoWatcher));
        h.watch_children(1, "/a");
        assert_eq!(h.read(1, check(WatcherType::Data)).0, Err(ZkError::NoWatcher));
        assert_eq!(h.read(1, check(WatcherType::Children)).0, Ok(ReadResult::Done));
        assert_eq!(h.read(2, check(WatcherType::Children)).0, Err(ZkError::NoWatcher));
        assert_eq!(h.read(1, remove(WatcherType::Data)).0, Err(ZkError::NoWatcher));
        assert_eq!(h.read(1, remove(WatcherType::Any)).0, Ok(ReadResult::Done));
        assert_eq!(h.read(1, check(WatcherType::Any)).0, Err(ZkError::NoWatcher));
        assert!(h.delete("/a", -1).notifications.is_empty());
    }

    #[test]
    fn set_watches_fires_what_changed_and_registers_the_rest() {
        let mut h = Harness::new();
        h.create("/same", b"").unwrap(); // zxid 1
        h.create("/changed", b"").unwrap(); // zxid 2
        h.create("/kids", b"").unwrap(); // zxid 3
        let relative_zxid = h.next_zxid - 1;
        h.set_data("/changed", b"x", -1).result.unwrap(); // zxid 4
        h.create("/kids/k", b"").unwrap(); // zxid 5
        let op = ReadOp::SetWatches {
            relative_zxid,
            data: vec!["/same".into(), "/changed".into(), "/gone".into()],
            exist: vec!["/same".into(), "/later".into()],
            child: vec!["/same".into(), "/kids".into(), "/gone".into()],
            persistent: vec!["/p".into()],
            persistent_recursive: vec!["/r".into()],
        };
        let (result, fired) = h.read(7, op);
        assert_eq!(result, Ok(ReadResult::Done));
        assert_eq!(
            events(&fired),
            vec![
                ev(7, EventType::NodeDataChanged, "/changed"),
                ev(7, EventType::NodeDeleted, "/gone"),
                ev(7, EventType::NodeCreated, "/same"),
                ev(7, EventType::NodeChildrenChanged, "/kids"),
                ev(7, EventType::NodeDeleted, "/gone"),
            ]
        );
        assert_eq!(fired[0].zxid, 4);
        assert_eq!(fired[3].zxid, 5);
        // Registered: data /same, exist /later, child /same, persistent /p, recursive /r.
        assert_eq!(h.shard.stats().watch_count, 5);
        let applied = h.apply(Command::Create(create_op("/later", b"", CreateMode::Persistent)));
        assert_eq!(events(&applied.notifications), vec![ev(7, EventType::NodeCreated, "/later")]);
    }

    #[test]
    fn drop_connection_forgets_watches_and_stats_count() {
        let mut h = Harness::new();
        h.create("/a", b"abc").unwrap();
        h.watch_data(1, "/a");
        h.watch_children(1, "/a");
        h.watch_data(2, "/a");
        h.read(2, ReadOp::AddWatch { path: "/b".into(), mode: AddWatchMode::Persistent }).0.unwrap();
        let stats = h.shard.stats();
        assert_eq!((stats.watch_count, stats.watched_path_count), (4, 2));
        assert_eq!(stats.znode_count, 5);
        // "/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config", "/a" paths + 3 bytes of data.
        assert_eq!(stats.approximate_data_size, (1 + 10 + 16 + 17 + 2 + 3) as u64);
        assert_eq!(h.shard.watched_paths(), vec![(1, vec!["/a".into()]), (2, vec!["/a".into(), "/b".into()])]);
        h.shard.drop_connection(1);
        assert_eq!(h.shard.stats().watch_count, 2);
        let applied = h.set_data("/a", b"", -1);
        assert_eq!(events(&applied.notifications), vec![ev(2, EventType::NodeDataChanged, "/a")]);
    }
}
