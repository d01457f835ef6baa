//! A shard's replicated state as one rkyv archive (a snapshot image): the tree, the session
//! table with its close tombstones, and the zxid of the last entry applied. A node restores a
//! shard from the image and replays only the log after it; restoring reads the archive in place
//! (`rkyv::access`, validated) and builds the live structures from it, with no second decode.
//!
//! What is not in it: watches (local to a node, re-registered by clients) and each session's
//! set of ephemerals (rebuilt from the nodes' owners). The image is taken between two applies,
//! so it is the state exactly after `last_zxid`.

use crate::command::ShardId;
use crate::session::SessionTable;
use crate::shard::Shard;
use crate::tree::{Node, NodeKind, NodeMeta, Tree};
use crate::types::{Acl, SessionId, Zxid};
use rkyv::{Archive, Deserialize, Serialize};

/// A shard's state after `last_zxid`.
#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct ShardImage {
    pub shard: ShardId,
    pub shard_count: u16,
    pub last_zxid: Zxid,
    /// Every node, "/" first and each parent before its children (sorted by path: a parent's
    /// path is a prefix of its children's).
    pub nodes: Vec<NodeImage>,
    /// Open sessions, by id.
    pub sessions: Vec<SessionImage>,
    /// Shard 0's close tombstones, oldest first: (session, time of the closing entry).
    pub closed: Vec<(SessionId, i64)>,
}

#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct NodeImage {
    pub path: String,
    pub data: Option<Vec<u8>>,
    pub acl: Vec<Acl>,
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

impl Shard {
    /// The shard's replicated state now (between two applies).
    pub fn image(&self, shard_count: u16) -> ShardImage {
        let mut paths: Vec<&str> = self.tree.paths().collect();
        paths.sort_unstable();
        let nodes = paths
            .into_iter()
            .map(|path| {
                let node = self.tree.get(path).expect("listed");
                NodeImage {
                    path: path.to_string(),
                    data: node.data.clone(),
                    acl: node.acl().to_vec(),
                    kind: kind_code(node.kind).0,
                    kind_value: kind_code(node.kind).1,
                    meta: node.meta,
                }
            })
            .collect();
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
        ShardImage {
            shard: self.id(),
            shard_count,
            last_zxid: self.last_zxid(),
            nodes,
            sessions,
            closed: self.sessions.closed_with_times().collect(),
        }
    }

    /// The shard an image's archive bytes hold, checked: a damaged or inconsistent image is an
    /// error, never a panic or a half-built shard.
    pub fn restore(bytes: &[u8], shard: ShardId, shard_count: u16) -> Result<Shard, String> {
        let image = rkyv::access::<ArchivedShardImage, rkyv::rancor::Error>(bytes)
            .map_err(|e| format!("invalid shard image: {e}"))?;
        Shard::restore_archived(image, shard, shard_count)
    }

    /// `restore` from an image inside an archive already validated (a group's snapshot file).
    pub fn restore_archived(image: &ArchivedShardImage, shard: ShardId, shard_count: u16) -> Result<Shard, String> {
        if image.shard.to_native() != shard || image.shard_count.to_native() != shard_count {
            return Err(format!(
                "the image is of shard {} of {}, not of shard {shard} of {shard_count}",
                image.shard.to_native(),
                image.shard_count.to_native()
            ));
        }
        let mut sessions = SessionTable::new(shard == 0);
        for s in image.sessions.iter() {
            let id = s.session.to_native();
            if sessions.is_open(id) {
                return Err(format!("session {id:#x} twice in the image"));
            }
            sessions.open(id, s.timeout_ms.to_native(), &s.passwd);
            sessions.restore_marks(id, s.ephemerals_changed_zxid.to_native(), s.connection_epoch.to_native());
        }
        for closed in image.closed.iter() {
            sessions.record_closed(closed.0.to_native(), closed.1.to_native());
        }
        let mut nodes = image.nodes.iter();
        let root = nodes.next().filter(|root| root.path.as_str() == "/").ok_or("the image does not start with /")?;
        let mut tree = Tree::with_root(node_of(root)?);
        for archived in nodes {
            let path = archived.path.as_str();
            crate::path::validate(path, false).map_err(|e| format!("node {path:?} in the image: {e:?}"))?;
            if tree.contains(path) {
                return Err(format!("node {path} twice in the image"));
            }
            if !tree.contains(crate::path::parent(path)) {
                return Err(format!("node {path} comes before its parent in the image"));
            }
            let node = node_of(archived)?;
            if let NodeKind::Ephemeral(owner) = node.kind {
                if !sessions.is_open(owner) {
                    return Err(format!("ephemeral {path} of session {owner:#x}, which the image does not hold"));
                }
                sessions.add_ephemeral(owner, path, sessions.get(owner).expect("open").ephemerals_changed_zxid);
            }
            tree.link(path.to_string(), node);
        }
        Ok(Shard::from_parts(shard, image.last_zxid.to_native(), tree, sessions))
    }
}

fn kind_code(kind: NodeKind) -> (u8, i64) {
    match kind {
        NodeKind::Persistent => (0, 0),
        NodeKind::Ephemeral(session) => (1, session),
        NodeKind::Container => (2, 0),
        NodeKind::Ttl { ttl_ms } => (3, ttl_ms),
    }
}

fn node_of(image: &ArchivedNodeImage) -> Result<Node, String> {
    let kind = match (image.kind, image.kind_value.to_native()) {
        (0, _) => NodeKind::Persistent,
        (1, session) => NodeKind::Ephemeral(session),
        (2, _) => NodeKind::Container,
        (3, ttl_ms) => NodeKind::Ttl { ttl_ms },
        (code, _) => return Err(format!("node {} has an unknown kind {code}", image.path)),
    };
    let meta = rkyv::deserialize::<NodeMeta, rkyv::rancor::Error>(&image.meta)
        .map_err(|e| format!("the stat of {} does not decode: {e}", image.path))?;
    let data = image.data.as_ref().map(|data| data.to_vec());
    let acl = rkyv::deserialize::<Vec<Acl>, rkyv::rancor::Error>(&image.acl)
        .map_err(|e| format!("the ACL of {} does not decode: {e}", image.path))?;
    Ok(Node::new(data, acl, kind, meta))
}
