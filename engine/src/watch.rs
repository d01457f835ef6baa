//! The watch registry of a shard (local to this node: watches belong to connections), and
//! the firing rules of ZooKeeper's WatchManager.
//!
//! Kinds: one-shot data watches (getData and exists; ZooKeeper keeps both in dataWatches),
//! one-shot child watches (getChildren), persistent and persistent-recursive (addWatch).
//! One-shot watches are removed when they fire; persistent ones stay. Within one trigger a
//! connection gets at most one notification, and notifications of one trigger are ordered by
//! connection id so the output is deterministic.

use crate::types::{ConnId, EventType, Notification, WatcherType, Zxid};
use ahash::{AHashMap, AHashSet};
use std::collections::BTreeSet;

/// Watchers of one kind, indexed by path (for firing) and by connection (for drop/listing).
#[derive(Debug, Clone, Default)]
struct PathIndex {
    by_path: AHashMap<String, BTreeSet<ConnId>>,
    by_conn: AHashMap<ConnId, AHashSet<String>>,
    count: usize,
}

impl PathIndex {
    fn add(&mut self, path: &str, conn: ConnId) {
        if self.by_path.entry(path.to_string()).or_default().insert(conn) {
            self.by_conn.entry(conn).or_default().insert(path.to_string());
            self.count += 1;
        }
    }

    fn contains(&self, path: &str, conn: ConnId) -> bool {
        self.by_path.get(path).is_some_and(|conns| conns.contains(&conn))
    }

    fn remove(&mut self, path: &str, conn: ConnId) -> bool {
        let Some(conns) = self.by_path.get_mut(path) else {
            return false;
        };
        if !conns.remove(&conn) {
            return false;
        }
        if conns.is_empty() {
            self.by_path.remove(path);
        }
        self.forget_conn_path(conn, path);
        self.count -= 1;
        true
    }

    fn forget_conn_path(&mut self, conn: ConnId, path: &str) {
        let paths = self.by_conn.get_mut(&conn).expect("by_conn mirrors by_path");
        paths.remove(path);
        if paths.is_empty() {
            self.by_conn.remove(&conn);
        }
    }

    fn get(&self, path: &str) -> Option<&BTreeSet<ConnId>> {
        self.by_path.get(path)
    }

    /// Removes and returns every watcher of `path` (one-shot watches firing).
    fn take(&mut self, path: &str) -> Option<BTreeSet<ConnId>> {
        let conns = self.by_path.remove(path)?;
        for conn in &conns {
            self.forget_conn_path(*conn, path);
        }
        self.count -= conns.len();
        Some(conns)
    }

    fn drop_conn(&mut self, conn: ConnId) {
        let Some(paths) = self.by_conn.remove(&conn) else {
            return;
        };
        for path in paths {
            let conns = self.by_path.get_mut(&path).expect("by_path mirrors by_conn");
            conns.remove(&conn);
            if conns.is_empty() {
                self.by_path.remove(&path);
            }
            self.count -= 1;
        }
    }

    fn paths_of(&self, conn: ConnId) -> impl Iterator<Item = &String> {
        self.by_conn.get(&conn).into_iter().flatten()
    }
}

/// The kinds of watch a SetWatches / exists / getData / getChildren / addWatch registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchKind {
    /// getData / exists (ZooKeeper keeps both in dataWatches).
    Data,
    Child,
    Persistent,
    PersistentRecursive,
}

#[derive(Debug, Clone, Default)]
pub struct WatchRegistry {
    data: PathIndex,
    child: PathIndex,
    persistent: PathIndex,
    recursive: PathIndex,
}

impl WatchRegistry {
    pub fn add(&mut self, kind: WatchKind, path: &str, conn: ConnId) {
        self.index_mut(kind).add(path, conn);
    }

    fn index_mut(&mut self, kind: WatchKind) -> &mut PathIndex {
        match kind {
            WatchKind::Data => &mut self.data,
            WatchKind::Child => &mut self.child,
            WatchKind::Persistent => &mut self.persistent,
            WatchKind::PersistentRecursive => &mut self.recursive,
        }
    }

    /// The kinds a checkWatches/removeWatches of `kind` covers. ZooKeeper keeps persistent
    /// watches in both its data and child tables and recursive ones in the data table.
    fn covered(kind: WatcherType) -> &'static [WatchKind] {
        match kind {
            WatcherType::Children => &[WatchKind::Child, WatchKind::Persistent],
            WatcherType::Data => &[WatchKind::Data, WatchKind::Persistent, WatchKind::PersistentRecursive],
            WatcherType::Any => {
                &[WatchKind::Data, WatchKind::Child, WatchKind::Persistent, WatchKind::PersistentRecursive]
            }
        }
    }

    /// Whether the connection has a watch of `kind` on `path` (checkWatches).
    pub fn contains(&self, kind: WatcherType, path: &str, conn: ConnId) -> bool {
        Self::covered(kind).iter().any(|k| self.index(*k).contains(path, conn))
    }

    /// Removes the connection's watches of `kind` on `path`; whether there was one.
    pub fn remove(&mut self, kind: WatcherType, path: &str, conn: ConnId) -> bool {
        let mut removed = false;
        for k in Self::covered(kind) {
            removed |= self.index_mut(*k).remove(path, conn);
        }
        removed
    }

    fn index(&self, kind: WatchKind) -> &PathIndex {
        match kind {
            WatchKind::Data => &self.data,
            WatchKind::Child => &self.child,
            WatchKind::Persistent => &self.persistent,
            WatchKind::PersistentRecursive => &self.recursive,
        }
    }

    /// Forgets every watch of a connection.
    pub fn drop_connection(&mut self, conn: ConnId) {
        self.data.drop_conn(conn);
        self.child.drop_conn(conn);
        self.persistent.drop_conn(conn);
        self.recursive.drop_conn(conn);
    }

    /// A node was created: NodeCreated to its watchers, NodeChildrenChanged to the parent's.
    pub fn node_created(&mut self, path: &str, zxid: Zxid, out: &mut Vec<Notification>) {
        self.trigger_node(path, EventType::NodeCreated, zxid, out);
        self.trigger_children(crate::path::parent(path), EventType::NodeChildrenChanged, zxid, &BTreeSet::new(), out);
    }

    /// A node was deleted: NodeDeleted to its data and child watchers (once per connection),
    /// NodeChildrenChanged to the parent's child watchers.
    pub fn node_deleted(&mut self, path: &str, zxid: Zxid, out: &mut Vec<Notification>) {
        let notified = self.trigger_node(path, EventType::NodeDeleted, zxid, out);
        self.trigger_children(path, EventType::NodeDeleted, zxid, &notified, out);
        self.trigger_children(crate::path::parent(path), EventType::NodeChildrenChanged, zxid, &BTreeSet::new(), out);
    }

    /// A node's data changed: NodeDataChanged to its watchers.
    pub fn data_changed(&mut self, path: &str, zxid: Zxid, out: &mut Vec<Notification>) {
        self.trigger_node(path, EventType::NodeDataChanged, zxid, out);
    }

    /// The data-table trigger: one-shot data watches of `path`, persistent watches of `path`,
    /// recursive watches of `path` and its ancestors. Returns who got notified.
    fn trigger_node(
        &mut self,
        path: &str,
        event: EventType,
        zxid: Zxid,
        out: &mut Vec<Notification>,
    ) -> BTreeSet<ConnId> {
        let mut conns = self.data.take(path).unwrap_or_default();
        if let Some(persistent) = self.persistent.get(path) {
            conns.extend(persistent);
        }
        if self.recursive.count > 0 {
            for ancestor in self_and_ancestors(path) {
                if let Some(recursive) = self.recursive.get(ancestor) {
                    conns.extend(recursive);
                }
            }
        }
        emit(&conns, event, path, zxid, out);
        conns
    }

    /// The child-table trigger: one-shot child watches and persistent watches of `path`.
    fn trigger_children(
        &mut self,
        path: &str,
        event: EventType,
        zxid: Zxid,
        suppress: &BTreeSet<ConnId>,
        out: &mut Vec<Notification>,
    ) {
        let mut conns = self.child.take(path).unwrap_or_default();
        if let Some(persistent) = self.persistent.get(path) {
            conns.extend(persistent);
        }
        conns.retain(|conn| !suppress.contains(conn));
        emit(&conns, event, path, zxid, out);
    }

    /// Total watches (a connection watching a path with two kinds counts twice).
    pub fn watch_count(&self) -> u64 {
        (self.data.count + self.child.count + self.persistent.count + self.recursive.count) as u64
    }

    /// Distinct watched paths.
    pub fn watched_path_count(&self) -> u64 {
        let mut paths: AHashSet<&String> = AHashSet::new();
        for index in [&self.data, &self.child, &self.persistent, &self.recursive] {
            paths.extend(index.by_path.keys());
        }
        paths.len() as u64
    }

    /// Per connection (sorted), the paths it watches (sorted, each once).
    pub fn watched_paths(&self) -> Vec<(ConnId, Vec<String>)> {
        let mut conns: BTreeSet<ConnId> = BTreeSet::new();
        for index in [&self.data, &self.child, &self.persistent, &self.recursive] {
            conns.extend(index.by_conn.keys());
        }
        conns
            .into_iter()
            .map(|conn| {
                let mut paths: BTreeSet<&String> = BTreeSet::new();
                for index in [&self.data, &self.child, &self.persistent, &self.recursive] {
                    paths.extend(index.paths_of(conn));
                }
                (conn, paths.into_iter().cloned().collect())
            })
            .collect()
    }
}

fn emit(conns: &BTreeSet<ConnId>, event: EventType, path: &str, zxid: Zxid, out: &mut Vec<Notification>) {
    out.extend(conns.iter().map(|conn| Notification { conn: *conn, event, path: path.to_string(), zxid }));
}

/// `path`, its parent, ..., "/".
fn self_and_ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(path);
    std::iter::from_fn(move || {
        let current = next?;
        next = if current == "/" { None } else { Some(crate::path::parent(current)) };
        Some(current)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventType::*;

    fn events(out: &[Notification]) -> Vec<(ConnId, EventType, &str)> {
        out.iter().map(|n| (n.conn, n.event, n.path.as_str())).collect()
    }

    #[test]
    fn ancestors_walk_to_root() {
        assert_eq!(self_and_ancestors("/a/b/c").collect::<Vec<_>>(), vec!["/a/b/c", "/a/b", "/a", "/"]);
        assert_eq!(self_and_ancestors("/").collect::<Vec<_>>(), vec!["/"]);
    }

    #[test]
    fn one_shot_watches_fire_once() {
        let mut w = WatchRegistry::default();
        w.add(WatchKind::Data, "/a", 2);
        w.add(WatchKind::Data, "/a", 1);
        w.add(WatchKind::Child, "/", 3);
        let mut out = Vec::new();
        w.node_created("/a", 5, &mut out);
        assert_eq!(events(&out), vec![(1, NodeCreated, "/a"), (2, NodeCreated, "/a"), (3, NodeChildrenChanged, "/")]);
        assert!(out.iter().all(|n| n.zxid == 5));
        out.clear();
        w.data_changed("/a", 6, &mut out);
        w.node_created("/b", 7, &mut out);
        assert!(out.is_empty());
        assert_eq!(w.watch_count(), 0);
    }

    #[test]
    fn delete_notifies_data_and_child_watchers_once_per_connection() {
        let mut w = WatchRegistry::default();
        w.add(WatchKind::Data, "/a", 1);
        w.add(WatchKind::Child, "/a", 1);
        w.add(WatchKind::Child, "/a", 2);
        w.add(WatchKind::Child, "/", 3);
        let mut out = Vec::new();
        w.node_deleted("/a", 9, &mut out);
        assert_eq!(events(&out), vec![(1, NodeDeleted, "/a"), (2, NodeDeleted, "/a"), (3, NodeChildrenChanged, "/")]);
        assert_eq!(w.watch_count(), 0);
    }

    #[test]
    fn persistent_watches_stay_and_see_child_changes() {
        let mut w = WatchRegistry::default();
        w.add(WatchKind::Persistent, "/a", 1);
        let mut out = Vec::new();
        w.node_created("/a", 1, &mut out);
        w.node_created("/a/x", 2, &mut out);
        w.data_changed("/a", 3, &mut out);
        w.data_changed("/a/x", 4, &mut out);
        w.node_deleted("/a/x", 5, &mut out);
        w.node_deleted("/a", 6, &mut out);
        assert_eq!(
            events(&out),
            vec![
                (1, NodeCreated, "/a"),
                (1, NodeChildrenChanged, "/a"),
                (1, NodeDataChanged, "/a"),
                (1, NodeChildrenChanged, "/a"),
                (1, NodeDeleted, "/a"),
            ]
        );
        assert_eq!(w.watch_count(), 1);
    }

    #[test]
    fn recursive_watches_see_descendants_but_not_child_lists() {
        let mut w = WatchRegistry::default();
        w.add(WatchKind::PersistentRecursive, "/a", 1);
        w.add(WatchKind::Data, "/a/b", 1);
        let mut out = Vec::new();
        w.node_created("/a/b", 1, &mut out);
        w.data_changed("/a/b", 2, &mut out);
        w.node_created("/a/b/c", 3, &mut out);
        w.node_deleted("/a/b/c", 4, &mut out);
        w.data_changed("/other", 5, &mut out);
        assert_eq!(
            events(&out),
            vec![
                (1, NodeCreated, "/a/b"),
                (1, NodeDataChanged, "/a/b"),
                (1, NodeCreated, "/a/b/c"),
                (1, NodeDeleted, "/a/b/c")
            ]
        );
    }

    #[test]
    fn check_remove_and_drop() {
        let mut w = WatchRegistry::default();
        w.add(WatchKind::Data, "/a", 1);
        w.add(WatchKind::Child, "/a", 1);
        w.add(WatchKind::Persistent, "/p", 1);
        w.add(WatchKind::Child, "/c", 2);
        assert!(w.contains(WatcherType::Data, "/a", 1));
        assert!(w.contains(WatcherType::Children, "/p", 1));
        assert!(!w.contains(WatcherType::Data, "/c", 2));
        assert!(w.remove(WatcherType::Data, "/a", 1));
        assert!(!w.remove(WatcherType::Data, "/a", 1));
        assert!(w.contains(WatcherType::Any, "/a", 1));
        assert_eq!(w.watched_paths(), vec![(1, vec!["/a".to_string(), "/p".to_string()]), (2, vec!["/c".to_string()])]);
        assert_eq!(w.watched_path_count(), 3);
        w.drop_connection(1);
        assert_eq!(w.watch_count(), 1);
        assert_eq!(w.watched_paths(), vec![(2, vec!["/c".to_string()])]);
    }
}
