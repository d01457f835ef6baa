//! The znode tree of one shard: nodes by path, their data, ACL, kind and metadata, and the
//! parent/child links. This file owns only the structure and its bookkeeping; the ZooKeeper
//! rules (permissions, versions, which stat fields change) live in `write.rs`.

use crate::acl;
use crate::types::{Acl, Id, SessionId, Stat, Zxid};
use crate::ZkError;
use ahash::AHashMap;
use compact_str::CompactString;
use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};

/// ZooKeeper's ephemeralOwner of a container node (EphemeralType.CONTAINER_EPHEMERAL_OWNER).
pub const CONTAINER_EPHEMERAL_OWNER: i64 = i64::MIN;
/// High byte marking an extended ephemeralOwner; TTL nodes are `EXTENDED_MASK | ttl_ms`.
pub const EXTENDED_MASK: i64 = 0xff00_0000_0000_0000_u64 as i64;
/// Largest TTL ZooKeeper accepts (EphemeralType.TTL.maxValue(), 2^40 - 1 ms).
pub const TTL_MAX_MS: i64 = (1 << 40) - 1;

/// What kind of znode this is; decides its lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeKind {
    Persistent,
    /// Deleted when the owning session closes.
    Ephemeral(SessionId),
    /// Deleted once it had children and has none left.
    Container,
    /// Deleted once it has no children and was not modified for `ttl_ms`.
    Ttl {
        ttl_ms: i64,
    },
}

impl NodeKind {
    /// The ephemeralOwner ZooKeeper stores (StatPersisted): session id, or the special
    /// encodings of containers and TTL nodes.
    pub fn stored_ephemeral_owner(self) -> i64 {
        match self {
            NodeKind::Persistent => 0,
            NodeKind::Ephemeral(session) => session,
            NodeKind::Container => CONTAINER_EPHEMERAL_OWNER,
            NodeKind::Ttl { ttl_ms } => EXTENDED_MASK | ttl_ms,
        }
    }

    /// The ephemeralOwner clients see: ZooKeeper's DataNode.copyStat reports 0 for everything
    /// that is not a plain ephemeral (getClientEphemeralOwner).
    pub fn client_ephemeral_owner(self) -> i64 {
        match self {
            NodeKind::Ephemeral(session) => session,
            _ => 0,
        }
    }

    pub fn is_ephemeral(self) -> bool {
        matches!(self, NodeKind::Ephemeral(_))
    }

    /// Containers and TTL nodes, which the reaper watches.
    pub fn is_reapable(self) -> bool {
        matches!(self, NodeKind::Container | NodeKind::Ttl { .. })
    }
}

/// The stored metadata of a node (ZooKeeper's StatPersisted); archived as is in snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct NodeMeta {
    pub czxid: Zxid,
    pub mzxid: Zxid,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    /// Number of children ever created: what ZooKeeper stores as cversion and uses for
    /// sequence suffixes. Clients see `2 * child_creates - num_children` (see `Node::stat`).
    pub child_creates: i32,
    pub aversion: i32,
    pub pzxid: Zxid,
}

impl NodeMeta {
    /// Metadata of a node created by `zxid` at `time_ms`.
    pub fn created(zxid: Zxid, time_ms: i64) -> NodeMeta {
        NodeMeta { czxid: zxid, mzxid: zxid, ctime: time_ms, mtime: time_ms, pzxid: zxid, ..NodeMeta::default() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// None = null data: a client that stored null reads null back (ZooKeeper's DataNode).
    pub data: Option<Vec<u8>>,
    /// Shared: most nodes carry world:anyone with every permission and hold a reference to one
    /// copy of it, not a vector and two strings of their own (ZooKeeper interns ACLs too).
    acl: Arc<[Acl]>,
    /// The permissions `acl` grants world:anyone (all of them for an empty ACL), kept in the
    /// node itself: most nodes are open to everyone, and this answers their permission check
    /// without following the ACL's heap entries (three cache misses per read otherwise).
    world_perms: i32,
    pub kind: NodeKind,
    pub meta: NodeMeta,
    /// Child names, sorted: getChildren answers in this order. Inline strings: a name of up to
    /// 24 bytes needs no heap allocation of its own.
    pub children: BTreeSet<CompactString>,
}

impl Node {
    pub fn new(data: Option<Vec<u8>>, acl: Vec<Acl>, kind: NodeKind, meta: NodeMeta) -> Node {
        let world_perms = acl::world_perms(&acl);
        Node { data, acl: shared_acl(acl), world_perms, kind, meta, children: BTreeSet::new() }
    }

    /// A node whose ACL is a copy already shared (a snapshot's restore names each distinct ACL
    /// once per batch).
    pub(crate) fn with_shared_acl(data: Option<Vec<u8>>, acl: Arc<[Acl]>, kind: NodeKind, meta: NodeMeta) -> Node {
        let world_perms = acl::world_perms(&acl);
        Node { data, acl, world_perms, kind, meta, children: BTreeSet::new() }
    }

    pub fn acl(&self) -> &[Acl] {
        &self.acl
    }

    pub fn set_acl(&mut self, acl: Vec<Acl>) {
        self.world_perms = acl::world_perms(&acl);
        self.acl = shared_acl(acl);
    }

    /// ZooKeeper's checkACL of this node for one of the bits of `perm`.
    pub fn check(&self, perm: i32, auth: &[Id]) -> Result<(), ZkError> {
        if self.world_perms & perm != 0 {
            return Ok(());
        }
        acl::check(&self.acl, perm, auth)
    }

    /// Bytes of data; null counts as 0 (ZooKeeper's copyStat).
    pub fn data_len(&self) -> usize {
        self.data.as_ref().map_or(0, Vec::len)
    }

    /// The Stat clients see, as ZooKeeper's DataNode.copyStat builds it: cversion counts
    /// creates and deletes of children (every child not present any more was deleted once).
    pub fn stat(&self) -> Stat {
        let num_children = self.children.len() as i32;
        Stat {
            czxid: self.meta.czxid,
            mzxid: self.meta.mzxid,
            ctime: self.meta.ctime,
            mtime: self.meta.mtime,
            version: self.meta.version,
            cversion: self.meta.child_creates.wrapping_mul(2).wrapping_sub(num_children),
            aversion: self.meta.aversion,
            ephemeral_owner: self.kind.client_ephemeral_owner(),
            data_length: self.data_len() as i32,
            num_children,
            pzxid: self.meta.pzxid,
        }
    }
}

/// The parent of a path as a create sees it: "/" for top-level names (also for the sequential
/// create of "/" itself, whose child is "/<suffix>").
pub fn create_parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// `acl` as a node keeps it: the open ACL is one copy shared by every node that has it.
pub(crate) fn shared_acl(acl: Vec<Acl>) -> Arc<[Acl]> {
    static OPEN: LazyLock<Arc<[Acl]>> = LazyLock::new(|| Arc::from(Acl::open_unsafe()));
    if acl[..] == OPEN[..] {
        OPEN.clone()
    } else {
        Arc::from(acl)
    }
}

/// Nodes by path. Every node but "/" has its parent in the map and its name in the parent's
/// children (checked by `assert_linked` in tests and debug builds).
#[derive(Debug, Clone)]
pub struct Tree {
    /// Keyed by inline strings: a path of up to 24 bytes lives in the map's own slot, so a
    /// lookup compares it without another cache miss on a heap copy of the key.
    /// Nodes are boxed: a map of large values wastes the empty half of its slots after every
    /// doubling (at 1M nodes about 170 B per node); a slot of key and pointer wastes 32 B.
    nodes: AHashMap<CompactString, Box<Node>>,
    /// Containers and TTL nodes, sorted so reap candidates come out deterministically.
    reapable: BTreeSet<String>,
    /// Sum of path length + data length over nodes (ZooKeeper's approximateDataSize).
    approximate_bytes: u64,
    /// A snapshot's walk in progress (`walk_*`): boxed, as trees without one are the rule.
    walk: Option<Box<Walk>>,
}

/// A node's state without its children (a snapshot lists nodes, and rebuilds the links).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeState {
    pub data: Option<Vec<u8>>,
    pub acl: Arc<[Acl]>,
    pub kind: NodeKind,
    pub meta: NodeMeta,
}

impl NodeState {
    fn of(node: &Node) -> NodeState {
        NodeState { data: node.data.clone(), acl: node.acl.clone(), kind: node.kind, meta: node.meta }
    }
}

/// A walk over the tree as it was when the walk began, taken in steps while the tree changes
/// between them (a snapshot written in the background). Nodes are visited in depth-first order
/// with children by name (`walk_order`); a node changed before the walk reached it keeps its
/// state from the walk's start here, the first time it changes (copy on write, one node at a
/// time: no copy of the tree, no pause longer than a step).
#[derive(Debug, Clone, Default)]
struct Walk {
    /// The last path visited (None: not even "/" yet). Every path after it in `walk_order`
    /// is still to visit.
    cursor: Option<CompactString>,
    /// Nodes changed since the walk began and not visited yet, as they were when it began
    /// (None: the node did not exist).
    saved: AHashMap<CompactString, Option<NodeState>>,
}

impl Walk {
    fn visited(&self, path: &str) -> bool {
        self.cursor.as_deref().is_some_and(|cursor| walk_order(path, cursor).is_le())
    }
}

/// Depth-first order with children by name: a parent before its children, siblings' subtrees
/// in the order of their names (component by component, not byte by byte: "/a/b" before "/a-c").
pub fn walk_order(a: &str, b: &str) -> std::cmp::Ordering {
    let components = |path| str::split(path, '/').filter(|c: &&str| !c.is_empty());
    components(a).cmp(components(b))
}

impl Default for Tree {
    fn default() -> Tree {
        Tree::new()
    }
}

impl Tree {
    /// A tree holding only "/", open to everyone, all stat fields zero.
    pub fn new() -> Tree {
        let root = Node::new(Some(Vec::new()), Acl::open_unsafe(), NodeKind::Persistent, NodeMeta::default());
        let mut tree = Tree { nodes: AHashMap::new(), reapable: BTreeSet::new(), approximate_bytes: 0, walk: None };
        tree.approximate_bytes = node_bytes("/", &root);
        tree.nodes.insert(CompactString::const_new("/"), Box::new(root));
        tree
    }

    /// A tree holding only `root` (a snapshot's "/"), with room for `capacity` nodes.
    pub(crate) fn with_root(root: Node, capacity: usize) -> Tree {
        let mut tree = Tree::new();
        tree.nodes.reserve(capacity.saturating_sub(1));
        tree.approximate_bytes = node_bytes("/", &root);
        tree.nodes.insert(CompactString::const_new("/"), Box::new(root));
        tree
    }

    /// A snapshot's restore: adds a node whose parent is in the map, leaving the parent's
    /// children to `set_children` (built at once from the names in order, not one by one).
    /// The path back, and nothing changed, if it is in the tree already. `reapable` and `bytes`
    /// are the node's kind's and its `node_bytes` (known to the caller without reading it).
    pub(crate) fn insert_restored(
        &mut self,
        path: CompactString,
        node: Box<Node>,
        reapable: bool,
        bytes: u64,
    ) -> Result<(), CompactString> {
        debug_assert_eq!((reapable, bytes), (node.kind.is_reapable(), node_bytes(&path, &node)));
        match self.nodes.entry(path) {
            std::collections::hash_map::Entry::Occupied(occupied) => Err(occupied.key().clone()),
            std::collections::hash_map::Entry::Vacant(vacant) => {
                if reapable {
                    self.reapable.insert(vacant.key().to_string());
                }
                vacant.insert(node);
                self.approximate_bytes += bytes;
                Ok(())
            }
        }
    }

    /// A snapshot's restore: the child names of a node added with `insert_restored`.
    pub(crate) fn set_children(&mut self, path: &str, children: BTreeSet<CompactString>) {
        self.node_mut(path).children = children;
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path).map(|node| &**node)
    }

    /// Every path, in no particular order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(CompactString::as_str)
    }

    pub fn contains(&self, path: &str) -> bool {
        self.nodes.contains_key(path)
    }

    /// Number of nodes, "/" included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn approximate_bytes(&self) -> u64 {
        self.approximate_bytes
    }

    /// Paths of containers and TTL nodes, sorted.
    pub fn reapable(&self) -> impl Iterator<Item = &String> {
        self.reapable.iter()
    }

    pub(crate) fn meta_mut(&mut self, path: &str) -> &mut NodeMeta {
        &mut self.node_mut(path).meta
    }

    pub(crate) fn node_mut(&mut self, path: &str) -> &mut Node {
        self.before_change(path);
        self.nodes.get_mut(path).unwrap_or_else(|| panic!("node {path} must exist"))
    }

    /// Every change of a node goes through here first: a walk that has not visited it yet
    /// keeps its state from the walk's start.
    fn before_change(&mut self, path: &str) {
        let Some(walk) = self.walk.as_deref_mut() else { return };
        if walk.visited(path) || walk.saved.contains_key(path) {
            return;
        }
        walk.saved.insert(CompactString::from(path), self.nodes.get(path).map(|node| NodeState::of(node)));
    }

    /// Starts a walk over the tree as it is now (`walk_step`); replaces one in progress.
    pub(crate) fn walk_begin(&mut self) {
        self.walk = Some(Box::default());
    }

    pub(crate) fn walk_abandon(&mut self) {
        self.walk = None;
    }

    pub(crate) fn walking(&self) -> bool {
        self.walk.is_some()
    }

    /// Visits up to `max_nodes` more paths of the walk, handing `emit` each node that existed
    /// when the walk began, with its state then. Returns true once the walk is over (it then
    /// hands out the nodes deleted since it began that it had not reached, sorted).
    pub(crate) fn walk_step(&mut self, max_nodes: usize, mut emit: impl FnMut(String, NodeState)) -> bool {
        let mut walk = self.walk.take().expect("walk_step during a walk");
        let mut budget = max_nodes;
        while budget > 0 {
            // The common case, many leaves under one parent: run through the siblings after a
            // leaf with one iterator over the parent's children, not a search per node.
            let cursor = walk.cursor.clone();
            if let Some(run) = self.leaf_siblings(cursor.as_deref()) {
                let (parent, siblings) = run;
                let mut last = None;
                for name in siblings {
                    if budget == 0 {
                        break;
                    }
                    budget -= 1;
                    let path = crate::path::join(parent, name);
                    let node = &self.nodes[path.as_str()];
                    let has_children = !node.children.is_empty();
                    last = Some(name);
                    Self::visit(&mut walk, path, node, &mut emit);
                    if has_children {
                        break;
                    }
                }
                if let Some(last) = last {
                    walk.cursor = Some(CompactString::from(crate::path::join(parent, last)));
                    continue;
                }
            }
            budget -= 1;
            let Some(path) = self.path_after(walk.cursor.as_deref()) else {
                let mut deleted: Vec<(CompactString, NodeState)> =
                    walk.saved.drain().filter_map(|(path, state)| Some((path, state?))).collect();
                deleted.sort_unstable_by(|a, b| walk_order(&a.0, &b.0));
                for (path, state) in deleted {
                    emit(path.to_string(), state);
                }
                return true;
            };
            let cursor = CompactString::from(path.as_str());
            Self::visit(&mut walk, path, &self.nodes[cursor.as_str()], &mut emit);
            walk.cursor = Some(cursor);
        }
        self.walk = Some(walk);
        false
    }

    /// Hands `emit` the state of `path` as the walk must see it (a state kept from its start,
    /// or none: the node did not exist then; else `node` as it is).
    fn visit(walk: &mut Walk, path: String, node: &Node, emit: &mut impl FnMut(String, NodeState)) {
        // No search while nothing changed since the walk began (most of a walk).
        let saved = if walk.saved.is_empty() { None } else { walk.saved.remove(path.as_str()) };
        match saved {
            Some(Some(state)) => emit(path, state),
            Some(None) => {}
            None => emit(path, NodeState::of(node)),
        }
    }

    /// When the cursor is a leaf other than "/": its parent and the names after it.
    fn leaf_siblings<'a>(
        &'a self,
        cursor: Option<&'a str>,
    ) -> Option<(&'a str, impl Iterator<Item = &'a CompactString>)> {
        let cursor = cursor.filter(|&c| c != "/")?;
        if self.nodes.get(cursor).is_some_and(|node| !node.children.is_empty()) {
            return None;
        }
        let (parent, name) = (crate::path::parent(cursor), crate::path::name(cursor));
        let after = (std::ops::Bound::Excluded(name), std::ops::Bound::Unbounded);
        let siblings = self.nodes.get(parent)?.children.range::<str, _>(after);
        Some((parent, siblings))
    }

    /// The first path of the live tree after `cursor` in `walk_order` (None: "/" comes first).
    fn path_after(&self, cursor: Option<&str>) -> Option<String> {
        let Some(cursor) = cursor else { return Some("/".to_string()) };
        if let Some(first) = self.nodes.get(cursor).and_then(|node| node.children.first()) {
            return Some(crate::path::join(cursor, first));
        }
        let mut below = cursor;
        while below != "/" {
            let (parent, name) = (crate::path::parent(below), crate::path::name(below));
            let after = (std::ops::Bound::Excluded(name), std::ops::Bound::Unbounded);
            if let Some(next) = self.nodes.get(parent).and_then(|node| node.children.range::<str, _>(after).next()) {
                return Some(crate::path::join(parent, next));
            }
            below = parent;
        }
        None
    }

    /// Replaces the data of a node, returning the old data.
    pub(crate) fn replace_data(&mut self, path: &str, data: Option<Vec<u8>>) -> Option<Vec<u8>> {
        let node = self.node_mut(path);
        let old = std::mem::replace(&mut node.data, data);
        let new_len = node.data_len() as u64;
        self.approximate_bytes = self.approximate_bytes - old.as_ref().map_or(0, Vec::len) as u64 + new_len;
        old
    }

    /// Adds a node under its existing parent; touches no metadata of the parent (callers
    /// apply ZooKeeper's rules for that).
    pub(crate) fn link(&mut self, path: String, node: Node) {
        assert!(path != "/", "the root is never linked");
        self.before_change(&path);
        let parent = crate::path::parent(&path);
        let name = CompactString::from(crate::path::name(&path));
        let inserted = self.node_mut(parent).children.insert(name);
        assert!(inserted, "link of {path}: name already present in its parent");
        self.approximate_bytes += node_bytes(&path, &node);
        if node.kind.is_reapable() {
            self.reapable.insert(path.clone());
        }
        let previous = self.nodes.insert(CompactString::from(path), Box::new(node));
        assert!(previous.is_none(), "link of an existing node");
    }

    /// Removes a childless node from the map and from its parent's children.
    pub(crate) fn unlink(&mut self, path: &str) -> Node {
        assert!(path != "/", "the root is never unlinked");
        self.before_change(path);
        let node = *self.nodes.remove(path).unwrap_or_else(|| panic!("unlink of missing {path}"));
        assert!(node.children.is_empty(), "unlink of {path} that has children");
        let removed = self.node_mut(crate::path::parent(path)).children.remove(crate::path::name(path));
        assert!(removed, "unlink of {path}: not in its parent's children");
        self.approximate_bytes -= node_bytes(path, &node);
        if node.kind.is_reapable() {
            self.reapable.remove(path);
        }
        node
    }

    /// Number of nodes below `path` (all depths), as getAllChildrenNumber counts them.
    pub fn descendant_count(&self, path: &str) -> usize {
        let mut count = 0;
        let mut stack = vec![path.to_string()];
        while let Some(current) = stack.pop() {
            let Some(node) = self.nodes.get(current.as_str()) else {
                continue;
            };
            count += node.children.len();
            stack.extend(node.children.iter().map(|child| crate::path::join(&current, child)));
        }
        count
    }

    /// A hash of the whole tree (paths, data, ACLs, kinds, metadata), independent of the hash
    /// map's iteration order: equal trees have equal digests, across runs and builds.
    pub fn digest(&self) -> u64 {
        let mut paths: Vec<&str> = self.nodes.keys().map(CompactString::as_str).collect();
        paths.sort_unstable();
        let mut hasher = StableHasher::new();
        for path in paths {
            let node = &self.nodes[path];
            path.hash(&mut hasher);
            node.data.hash(&mut hasher);
            node.acl.hash(&mut hasher);
            node.kind.hash(&mut hasher);
            node.meta.hash(&mut hasher);
        }
        hasher.finish()
    }

    /// Checks the structural invariants (every link both ways, counters). For tests: O(n).
    pub fn assert_consistent(&self) {
        let mut bytes = 0;
        for (path, node) in &self.nodes {
            bytes += node_bytes(path, node);
            for child in &node.children {
                assert!(
                    self.nodes.contains_key(crate::path::join(path, child).as_str()),
                    "{path} lists missing {child}"
                );
            }
            if path != "/" {
                let parent = self.nodes.get(crate::path::parent(path)).expect("parent exists");
                assert!(parent.children.contains(crate::path::name(path)), "{path} not in parent");
            }
            assert_eq!(node.kind.is_reapable(), self.reapable.contains(path.as_str()), "reapable index of {path}");
        }
        assert_eq!(bytes, self.approximate_bytes, "approximate_bytes drifted");
    }
}

pub(crate) fn node_bytes(path: &str, node: &Node) -> u64 {
    (path.len() + node.data_len()) as u64
}

/// FNV-1a 64: a hasher whose output does not depend on the process (unlike ahash/SipHash
/// with random keys), so digests can be compared across replicas and restarts.
pub struct StableHasher(u64);

impl StableHasher {
    pub fn new() -> StableHasher {
        StableHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Default for StableHasher {
    fn default() -> StableHasher {
        StableHasher::new()
    }
}

impl Hasher for StableHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(kind: NodeKind) -> Node {
        Node::new(Some(b"x".to_vec()), Acl::open_unsafe(), kind, NodeMeta::created(1, 10))
    }

    #[test]
    fn nodes_with_the_open_acl_share_one_copy_of_it() {
        let open = |_| Node::new(None, Acl::open_unsafe(), NodeKind::Persistent, NodeMeta::default());
        let (a, b) = (open(1), open(2));
        assert!(std::ptr::eq(a.acl().as_ptr(), b.acl().as_ptr()));
        let read_only = vec![Acl { perms: crate::types::perms::READ, id: Id::world_anyone() }];
        let mut c = Node::new(None, read_only.clone(), NodeKind::Persistent, NodeMeta::default());
        assert_eq!(c.acl(), &read_only[..]);
        assert!(!std::ptr::eq(a.acl().as_ptr(), c.acl().as_ptr()));
        c.set_acl(Acl::open_unsafe());
        assert!(std::ptr::eq(a.acl().as_ptr(), c.acl().as_ptr()), "set to the open ACL, it shares it too");
    }

    #[test]
    fn the_permission_check_kept_in_the_node_follows_its_acl() {
        use crate::types::perms;
        let bob = Id::new("digest", "bob:hash");
        let mut node = leaf(NodeKind::Persistent);
        assert_eq!(node.check(perms::ALL, &[]), Ok(()), "open_unsafe: everyone may do everything");
        node.set_acl(vec![
            Acl { perms: perms::READ, id: Id::world_anyone() },
            Acl { perms: perms::ALL, id: bob.clone() },
        ]);
        assert_eq!(node.check(perms::READ, &[]), Ok(()));
        assert_eq!(node.check(perms::WRITE, &[]), Err(ZkError::NoAuth));
        assert_eq!(node.check(perms::WRITE, std::slice::from_ref(&bob)), Ok(()));
        node.set_acl(vec![Acl { perms: perms::ALL, id: bob }]);
        assert_eq!(node.check(perms::READ, &[]), Err(ZkError::NoAuth), "world no longer reads");
        // An empty ACL allows everything, as ZooKeeper's checkACL.
        node.set_acl(Vec::new());
        assert_eq!(node.check(perms::ADMIN, &[]), Ok(()));
    }

    #[test]
    fn link_and_unlink_keep_the_tree_consistent() {
        let mut tree = Tree::new();
        tree.link("/a".into(), leaf(NodeKind::Persistent));
        tree.link("/a/b".into(), leaf(NodeKind::Container));
        tree.assert_consistent();
        assert_eq!(tree.get("/a").unwrap().children.iter().map(CompactString::as_str).collect::<Vec<_>>(), vec!["b"]);
        assert_eq!(tree.reapable().collect::<Vec<_>>(), vec!["/a/b"]);
        assert_eq!(tree.descendant_count("/"), 2);
        let removed = tree.unlink("/a/b");
        assert_eq!(removed.kind, NodeKind::Container);
        tree.assert_consistent();
        assert_eq!(tree.reapable().count(), 0);
        assert_eq!(tree.approximate_bytes(), 1 + 2 + 1);
    }

    #[test]
    fn client_stat_translates_cversion_and_owner() {
        let mut node = leaf(NodeKind::Ttl { ttl_ms: 5 });
        node.meta.child_creates = 3;
        node.children.insert("only".into());
        let stat = node.stat();
        assert_eq!(stat.cversion, 5);
        assert_eq!(stat.num_children, 1);
        assert_eq!(stat.ephemeral_owner, 0);
        assert_eq!(node.kind.stored_ephemeral_owner(), 0xff00_0000_0000_0005_u64 as i64);
        assert_eq!(NodeKind::Container.stored_ephemeral_owner(), i64::MIN);
        assert_eq!(NodeKind::Ephemeral(42).client_ephemeral_owner(), 42);
    }

    #[test]
    fn digest_depends_on_content_not_insertion_order() {
        let mut a = Tree::new();
        a.link("/x".into(), leaf(NodeKind::Persistent));
        a.link("/y".into(), leaf(NodeKind::Persistent));
        let mut b = Tree::new();
        b.link("/y".into(), leaf(NodeKind::Persistent));
        b.link("/x".into(), leaf(NodeKind::Persistent));
        assert_eq!(a.digest(), b.digest());
        b.replace_data("/x", Some(b"changed".to_vec()));
        assert_ne!(a.digest(), b.digest());
    }

    #[test]
    fn walk_order_is_depth_first_with_children_by_name() {
        let mut paths = vec!["/a-c", "/a/b", "/", "/b", "/a", "/a/b/c", "/a/a"];
        paths.sort_by(|a, b| walk_order(a, b));
        assert_eq!(paths, vec!["/", "/a", "/a/a", "/a/b", "/a/b/c", "/a-c", "/b"]);
    }

    /// "/a-" comes after "/a/b" in the walk though before it byte by byte: a change of it while
    /// the walk is inside "/a" must keep its old state for the walk.
    #[test]
    fn a_walk_keeps_the_old_state_of_a_node_it_has_not_reached() {
        let mut tree = Tree::new();
        for path in ["/a", "/a/b", "/a-", "/b"] {
            tree.link(path.to_string(), leaf(NodeKind::Persistent));
        }
        tree.walk_begin();
        let mut seen = Vec::new();
        assert!(!tree.walk_step(3, |path, state| seen.push((path, state.data))));
        tree.replace_data("/a-", Some(b"new".to_vec()));
        tree.replace_data("/a", Some(b"new".to_vec()));
        tree.unlink("/b");
        tree.link("/c".to_string(), leaf(NodeKind::Persistent));
        assert!(tree.walk_step(100, |path, state| seen.push((path, state.data))));
        let old = leaf(NodeKind::Persistent).data;
        let expected: Vec<_> = ["/", "/a", "/a/b", "/a-", "/b"].iter().map(|p| (p.to_string(), old.clone())).collect();
        let root_data = tree.get("/").unwrap().data.clone();
        assert_eq!(seen[0].1, root_data);
        assert_eq!(seen[1..], expected[1..]);
        assert!(!tree.walking());
    }

    #[test]
    fn create_parent_of_sequential_root() {
        assert_eq!(create_parent("/"), "/");
        assert_eq!(create_parent("/a"), "/");
        assert_eq!(create_parent("/a/"), "/a");
        assert_eq!(create_parent("/a/b"), "/a");
    }
}
