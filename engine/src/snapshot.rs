//! A shard's replicated state as one rkyv archive (a snapshot image): the tree, the session
//! table with its close tombstones, and the zxid of the last entry applied. A node restores a
//! shard from the image and replays only the log after it; restoring reads the archive in place
//! (`rkyv::access`, validated) and builds the live structures from it, with no second decode.
//!
//! What is not in it: watches (local to a node, re-registered by clients) and each session's
//! set of ephemerals (rebuilt from the nodes' owners). The image is the state exactly after
//! `last_zxid`, the last entry applied when it began, even when its nodes are collected in
//! steps between later applies (the tree keeps a node's older state for the walk when it
//! changes before the walk reached it: `Tree::walk_step`).

use crate::command::ShardId;
use crate::session::SessionTable;
use crate::shard::Shard;
use crate::tree::{Node, NodeKind, NodeMeta, NodeState, Tree};
use crate::types::{Acl, SessionId, Zxid};
use ahash::AHashMap;
use compact_str::CompactString;
use rkyv::{Archive, Deserialize, Serialize};
use std::sync::Arc;

/// A shard's state after `last_zxid`, whole (tests, and small shards); a snapshot file holds
/// the same parts as a head and a stream of node batches (`begin_image`, `image_step`).
#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct ShardImage {
    pub head: ShardHead,
    pub nodes: NodeBatch,
}

/// Everything of a shard's image but its nodes: taken at once when the image begins.
#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct ShardHead {
    pub shard: ShardId,
    pub shard_count: u16,
    pub last_zxid: Zxid,
    /// Nodes when the image began: room to reserve when restoring.
    pub node_count: u64,
    /// Open sessions, by id.
    pub sessions: Vec<SessionImage>,
    /// Shard 0's close tombstones, oldest first: (session, time of the closing entry).
    pub closed: Vec<(SessionId, i64)>,
}

/// Nodes of an image in walk order (`tree::walk_order`: "/" first, each parent before its
/// children), then those deleted since the image began that the walk had not reached (also
/// parents first). ACLs are listed once per batch and named by position.
#[derive(Debug, Clone, Default, PartialEq, Archive, Serialize, Deserialize)]
pub struct NodeBatch {
    pub acls: Vec<Vec<Acl>>,
    pub nodes: Vec<NodeImage>,
}

#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct NodeImage {
    pub path: String,
    pub data: Option<Vec<u8>>,
    /// Position in the batch's `acls`.
    pub acl: u32,
    /// 0 persistent, 1 ephemeral (`kind_value` its session), 2 container, 3 TTL (`kind_value`
    /// its TTL in ms). Not ZooKeeper's one-word ephemeralOwner: a session of node 255 would read
    /// as a TTL in it.
    pub kind: u8,
    pub kind_value: i64,
    pub meta: NodeMeta,
}

#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct SessionImage {
    pub session: SessionId,
    pub timeout_ms: i32,
    pub passwd: Vec<u8>,
    pub ephemerals_changed_zxid: Zxid,
    pub connection_epoch: Zxid,
}

impl ShardImage {
    /// The archive's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        rkyv::to_bytes::<rkyv::rancor::Error>(self).expect("a shard image serializes").into_vec()
    }
}

/// Builds a `NodeBatch`, listing each distinct ACL (by the node's shared copy) once.
#[derive(Default)]
pub struct NodeBatchBuilder {
    batch: NodeBatch,
    /// The shared copies named so far, kept alive so that their addresses stay theirs.
    acls: Vec<Arc<[Acl]>>,
    acl_positions: AHashMap<usize, u32>,
    /// The address and position of the ACL of the node pushed last.
    last_acl: Option<(usize, u32)>,
}

impl NodeBatchBuilder {
    pub fn push(&mut self, path: String, state: NodeState) {
        let address = state.acl.as_ptr() as usize;
        // Most nodes share one ACL with the node before them: no lookup.
        let acl = match self.last_acl {
            Some((last, position)) if last == address => position,
            _ => self.acl_position(&state.acl),
        };
        self.last_acl = Some((address, acl));
        let (kind, kind_value) = kind_code(state.kind);
        self.batch.nodes.push(NodeImage { path, data: state.data, acl, kind, kind_value, meta: state.meta });
    }

    /// Where the batch lists `acl`, listed now if it was not yet.
    fn acl_position(&mut self, acl: &Arc<[Acl]>) -> u32 {
        let address = acl.as_ptr() as usize;
        if let Some(&position) = self.acl_positions.get(&address) {
            return position;
        }
        let position = u32::try_from(self.acls.len()).expect("fewer than 2^32 ACLs in a batch");
        self.batch.acls.push(acl.to_vec());
        self.acls.push(acl.clone());
        self.acl_positions.insert(address, position);
        position
    }

    pub fn len(&self) -> usize {
        self.batch.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.nodes.is_empty()
    }

    /// The batch so far; the builder starts a new one.
    pub fn take(&mut self) -> NodeBatch {
        self.acls.clear();
        self.acl_positions.clear();
        self.last_acl = None;
        std::mem::take(&mut self.batch)
    }
}

impl NodeBatch {
    pub fn to_bytes(&self) -> rkyv::util::AlignedVec<16> {
        // Sized up front: growing the buffer by doubling copied it again and again.
        let estimate: usize = self.nodes.iter().map(|n| n.path.len() + n.data.as_ref().map_or(0, Vec::len) + 112).sum();
        let buffer = rkyv::util::AlignedVec::<16>::with_capacity(estimate + 4096);
        rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(self, buffer).expect("a node batch serializes")
    }
}

impl Shard {
    /// Begins an image of the shard as it is now (between two applies): returns its head; its
    /// nodes come from `image_step`, which may be called between later applies. An image in
    /// progress is replaced.
    pub fn begin_image(&mut self, shard_count: u16) -> ShardHead {
        self.tree.walk_begin();
        let sessions = self
            .sessions
            .iter()
            .map(|(session, info)| SessionImage {
                session,
                timeout_ms: info.timeout_ms,
                passwd: info.passwd.clone(),
                ephemerals_changed_zxid: info.ephemerals_changed_zxid,
                connection_epoch: info.connection_epoch,
            })
            .collect();
        ShardHead {
            shard: self.id(),
            shard_count,
            last_zxid: self.last_zxid(),
            node_count: self.tree.len() as u64,
            sessions,
            closed: self.sessions.closed_with_times().collect(),
        }
    }

    /// Up to `max_nodes` more nodes of the image begun by `begin_image`, as they were when it
    /// began; true once it is complete.
    pub fn image_step(&mut self, max_nodes: usize, out: &mut NodeBatchBuilder) -> bool {
        self.tree.walk_step(max_nodes, |path, state| out.push(path, state))
    }

    /// Drops an image in progress (its writer failed or gave up).
    pub fn abandon_image(&mut self) {
        self.tree.walk_abandon();
    }

    pub fn imaging(&self) -> bool {
        self.tree.walking()
    }

    /// The shard's whole image now (between two applies).
    pub fn image(&mut self, shard_count: u16) -> ShardImage {
        let head = self.begin_image(shard_count);
        let mut nodes = NodeBatchBuilder::default();
        while !self.image_step(usize::MAX, &mut nodes) {}
        ShardImage { head, nodes: nodes.take() }
    }

    /// The shard an image's archive bytes hold, checked: a damaged or inconsistent image is an
    /// error, never a panic or a half-built shard.
    pub fn restore(bytes: &[u8], shard: ShardId, shard_count: u16) -> Result<Shard, String> {
        let image = rkyv::access::<ArchivedShardImage, rkyv::rancor::Error>(bytes)
            .map_err(|e| format!("invalid shard image: {e}"))?;
        let mut restore = ShardRestore::begin(&image.head, shard, shard_count)?;
        restore.add(&image.nodes)?;
        restore.finish()
    }
}

/// A shard being rebuilt from an image's head and its node batches, in order; every step
/// checks what it reads, so a damaged image is an error, never a panic or a half-built shard.
pub struct ShardRestore {
    shard: ShardId,
    last_zxid: Zxid,
    /// Room to reserve for the nodes (a hint from the head, bounded).
    node_count: usize,
    sessions: SessionTable,
    /// None until the batch holding "/" came.
    tree: Option<Tree>,
    /// Each parent's child names as they came (in walk order: sorted, but for nodes deleted
    /// while the image was taken, which come last); made into the parents' child sets at the
    /// end in one go.
    children: AHashMap<CompactString, Vec<CompactString>>,
    /// The parent of the last node added and the names of its children since that parent
    /// began to be filled: consecutive siblings, the common case, need no map lookup.
    siblings: (CompactString, Vec<CompactString>),
}

/// A batch of an image's nodes decoded, checked on their own and allocated: the part of a
/// restore that needs nothing of the shard, so a loader can prepare the next batches on other
/// threads while it adds this one (building a large tree is most of a restart).
pub struct PreparedBatch {
    nodes: Vec<PreparedNode>,
}

struct PreparedNode {
    path: CompactString,
    node: Box<Node>,
    /// The node's kind and `Tree`'s size estimate of it, taken here: the thread adding the node
    /// need not read the node (a cache miss: another thread wrote it).
    kind: NodeKind,
    bytes: u64,
}

impl PreparedBatch {
    pub fn of(batch: &ArchivedNodeBatch) -> Result<PreparedBatch, String> {
        let acls = batch
            .acls
            .iter()
            .map(|acl| {
                let acl =
                    rkyv::deserialize::<Vec<Acl>, rkyv::rancor::Error>(acl).map_err(|e| format!("an ACL: {e}"))?;
                Ok(crate::tree::shared_acl(acl))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let mut nodes = Vec::with_capacity(batch.nodes.len());
        for archived in batch.nodes.iter() {
            let node = node_of(archived, &acls)?;
            let path = archived.path.as_str();
            if path != "/" {
                crate::path::validate(path, false).map_err(|e| format!("node {path:?} in the image: {e:?}"))?;
            }
            let bytes = crate::tree::node_bytes(path, &node);
            let kind = node.kind;
            nodes.push(PreparedNode { path: CompactString::from(path), node: Box::new(node), kind, bytes });
        }
        Ok(PreparedBatch { nodes })
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// Nodes reserved for at most, whatever a (damaged) head says.
const RESERVE_MAX: usize = 1 << 26;

impl ShardRestore {
    pub fn begin(head: &ArchivedShardHead, shard: ShardId, shard_count: u16) -> Result<ShardRestore, String> {
        if head.shard.to_native() != shard || head.shard_count.to_native() != shard_count {
            return Err(format!(
                "the image is of shard {} of {}, not of shard {shard} of {shard_count}",
                head.shard.to_native(),
                head.shard_count.to_native()
            ));
        }
        let mut sessions = SessionTable::new(shard == 0);
        for s in head.sessions.iter() {
            let id = s.session.to_native();
            if sessions.is_open(id) {
                return Err(format!("session {id:#x} twice in the image"));
            }
            sessions.open(id, s.timeout_ms.to_native(), &s.passwd);
            sessions.restore_marks(id, s.ephemerals_changed_zxid.to_native(), s.connection_epoch.to_native());
        }
        for closed in head.closed.iter() {
            sessions.record_closed(closed.0.to_native(), closed.1.to_native());
        }
        Ok(ShardRestore {
            shard,
            last_zxid: head.last_zxid.to_native(),
            node_count: (head.node_count.to_native() as usize).min(RESERVE_MAX),
            sessions,
            tree: None,
            children: AHashMap::new(),
            siblings: (CompactString::default(), Vec::new()),
        })
    }

    /// The next batch of the image's nodes.
    pub fn add(&mut self, batch: &ArchivedNodeBatch) -> Result<(), String> {
        self.add_prepared(PreparedBatch::of(batch)?)
    }

    /// The next batch of the image's nodes, prepared (on any thread) by `PreparedBatch::of`:
    /// what is left is what needs the nodes before it (the map, the parents, the sessions).
    pub fn add_prepared(&mut self, batch: PreparedBatch) -> Result<(), String> {
        for PreparedNode { path, node, kind, bytes } in batch.nodes {
            let Some(tree) = self.tree.as_mut() else {
                if path != "/" {
                    return Err(format!("the image starts with {path:?}, not /"));
                }
                self.tree = Some(Tree::with_root(*node, self.node_count));
                continue;
            };
            if path == "/" {
                return Err("node / twice in the image".to_string());
            }
            let parent = crate::path::parent(&path);
            if self.siblings.0 != parent {
                if !tree.contains(parent) {
                    return Err(format!("node {path} comes before its parent in the image"));
                }
                flush_siblings(&mut self.siblings, &mut self.children);
                self.siblings.0 = CompactString::from(parent);
            }
            if let NodeKind::Ephemeral(owner) = kind {
                let Some(session) = self.sessions.get(owner) else {
                    return Err(format!("ephemeral {path} of session {owner:#x}, which the image does not hold"));
                };
                let changed = session.ephemerals_changed_zxid;
                self.sessions.add_ephemeral(owner, &path, changed);
            }
            let name = CompactString::from(crate::path::name(&path));
            if let Err(path) = tree.insert_restored(path, node, kind.is_reapable(), bytes) {
                return Err(format!("node {path} twice in the image"));
            }
            self.siblings.1.push(name);
        }
        Ok(())
    }

    pub fn finish(mut self) -> Result<Shard, String> {
        flush_siblings(&mut self.siblings, &mut self.children);
        let mut tree = self.tree.ok_or("the image holds no nodes, not even /")?;
        for (parent, names) in self.children {
            // Sorted already but for the nodes deleted during the image: sorting a sorted
            // run is linear, and the set is then built in bulk.
            tree.set_children(&parent, names.into_iter().collect());
        }
        Ok(Shard::from_parts(self.shard, self.last_zxid, tree, self.sessions))
    }
}

/// Moves the names of the parent being filled into `children` (a parent's children can come in
/// several runs: a subtree of one of them comes between its siblings).
fn flush_siblings(
    siblings: &mut (CompactString, Vec<CompactString>),
    children: &mut AHashMap<CompactString, Vec<CompactString>>,
) {
    let (parent, names) = std::mem::take(siblings);
    if !names.is_empty() {
        children.entry(parent).or_default().extend(names);
    }
}

pub(crate) fn kind_code(kind: NodeKind) -> (u8, i64) {
    match kind {
        NodeKind::Persistent => (0, 0),
        NodeKind::Ephemeral(session) => (1, session),
        NodeKind::Container => (2, 0),
        NodeKind::Ttl { ttl_ms } => (3, ttl_ms),
    }
}

/// The kind `kind_code` gave, if `code` is one.
pub(crate) fn kind_of(code: u8, value: i64) -> Option<NodeKind> {
    match code {
        0 => Some(NodeKind::Persistent),
        1 => Some(NodeKind::Ephemeral(value)),
        2 => Some(NodeKind::Container),
        3 => Some(NodeKind::Ttl { ttl_ms: value }),
        _ => None,
    }
}

fn node_of(image: &ArchivedNodeImage, acls: &[Arc<[Acl]>]) -> Result<Node, String> {
    let kind = kind_of(image.kind, image.kind_value.to_native())
        .ok_or_else(|| format!("node {} has an unknown kind {}", image.path, image.kind))?;
    let meta = rkyv::deserialize::<NodeMeta, rkyv::rancor::Error>(&image.meta)
        .map_err(|e| format!("the stat of {} does not decode: {e}", image.path))?;
    let data = image.data.as_ref().map(|data| data.to_vec());
    let acl = acls
        .get(image.acl.to_native() as usize)
        .ok_or_else(|| format!("node {} names ACL {} of {}", image.path, image.acl.to_native(), acls.len()))?
        .clone();
    Ok(Node::with_shared_acl(data, acl, kind, meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Harness;

    /// "/a" has children "x" and "y" with "x"'s subtree between them in walk order: its child
    /// names come in two runs.
    fn nested() -> Harness {
        let mut h = Harness::new();
        for path in ["/a", "/a/x", "/a/x/1", "/a/x/2", "/a/y", "/b", "/b/z"] {
            h.create(path, path.as_bytes()).unwrap();
        }
        h
    }

    fn restore(image: &ShardImage) -> Result<Shard, String> {
        Shard::restore(&image.to_bytes(), 0, 1)
    }

    fn refusal(image: &ShardImage) -> String {
        restore(image).err().expect("a damaged image is refused")
    }

    #[test]
    fn a_restore_takes_a_parents_children_in_several_runs() {
        let mut h = nested();
        let image = h.shard.image(1);
        let restored = restore(&image).expect("a whole image restores");
        assert_eq!(restored.digest(), h.shard.digest());
        assert_eq!(restored.tree().get("/a").unwrap().children.len(), 2);
    }

    #[test]
    fn a_restore_refuses_a_node_twice_or_before_its_parent() {
        let mut h = nested();
        let image = h.shard.image(1);
        let position = |image: &ShardImage, path: &str| image.nodes.nodes.iter().position(|n| n.path == path).unwrap();

        let mut twice = image.clone();
        let again = twice.nodes.nodes[position(&image, "/a/y")].clone();
        twice.nodes.nodes.push(again);
        let error = refusal(&twice);
        assert!(error.contains("/a/y twice"), "{error}");

        let mut orphan = image.clone();
        let child = orphan.nodes.nodes.remove(position(&image, "/b/z"));
        let parent = position(&orphan, "/b");
        orphan.nodes.nodes.insert(parent, child);
        let error = refusal(&orphan);
        assert!(error.contains("/b/z comes before its parent"), "{error}");

        let mut root_twice = image.clone();
        let root = root_twice.nodes.nodes[0].clone();
        root_twice.nodes.nodes.push(root);
        assert!(refusal(&root_twice).contains("/ twice"));
    }
}
