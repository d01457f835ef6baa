//! One shard of the namespace: its znode tree (replicated state, changed only by `apply`),
//! its session table and its watch registry (local to this node, fed by reads).
//!
//! The root "/" is special: every shard keeps its own local root node holding the top-level
//! children that live in it. Reads of "/" return this shard's local view and the runtime
//! gathers and merges the views of all shards (children = union, numChildren = sum); data and
//! ACL of "/" are kept identical in every shard by broadcasting setData("/") and setACL("/").

use crate::command::{ClientWrite, Command, LogEntry, MultiOp, ShardId, TxnId};
use crate::error::ZkError;
use crate::path;
use crate::request::{Caller, MultiResult, ReadOp, ReadResult, WriteResult};
use crate::session::SessionInfo;
use crate::session::SessionTable;
use crate::tree::{Node, NodeKind, NodeMeta, StableHasher, Tree};
use crate::txn::{self, Holds, TxnTable};
use crate::types::{perms, Acl, ConnId, Id, Notification, SessionId, Zxid};
use crate::watch::WatchRegistry;
use crate::write::{aborted_results, qualifies_for_reap, Change, Txn};
use std::hash::{Hash, Hasher};

/// What applying one log entry produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub result: Result<WriteResult, ZkError>,
    /// Watch notifications, in the order ZooKeeper fires them. The runtime MUST deliver them
    /// before the reply to the write (and before any later reply on those connections).
    pub notifications: Vec<Notification>,
}

pub struct Shard {
    id: ShardId,
    last_zxid: Zxid,
    pub(crate) tree: Tree,
    pub(crate) sessions: SessionTable,
    pub(crate) watches: WatchRegistry,
    /// Multis across groups this shard's group takes part in (kept in the group's home shard).
    pub(crate) txns: TxnTable,
    /// Paths of this shard held by prepared multis across groups.
    pub(crate) holds: Holds,
}

impl Shard {
    /// An empty shard: only its local root (world:anyone, all permissions); the shard that
    /// owns "/zookeeper" also holds "/zookeeper", "/zookeeper/quota" and "/zookeeper/config".
    pub fn new(id: ShardId, shard_count: u16) -> Shard {
        assert!(id < shard_count, "shard {id} out of 0..{shard_count}");
        let mut tree = Tree::new();
        if path::shard_of("/zookeeper", shard_count) == id {
            add_system_nodes(&mut tree);
        }
        let sessions = SessionTable::new(id == 0);
        Shard {
            id,
            last_zxid: 0,
            tree,
            sessions,
            watches: WatchRegistry::default(),
            txns: TxnTable::default(),
            holds: Holds::default(),
        }
    }

    /// A shard restored from its parts (`snapshot.rs`); no watches.
    pub(crate) fn from_parts(id: ShardId, last_zxid: Zxid, tree: Tree, sessions: SessionTable) -> Shard {
        Shard {
            id,
            last_zxid,
            tree,
            sessions,
            watches: WatchRegistry::default(),
            txns: TxnTable::default(),
            holds: Holds::default(),
        }
    }

    /// A child of "/" kept here that `path::shard_of` places in another shard, if any: left by
    /// a version that placed names differently (sequential children of "/" lived with their
    /// prefix before they were all numbered in one shard). Requests for it would look in the
    /// other shard and miss it, so a node must not serve such data.
    pub fn misplaced_top_level(&self, shard_count: u16) -> Option<String> {
        let root = self.tree.get("/").expect("every shard has its local root");
        root.children.iter().map(|name| path::join("/", name)).find(|path| path::shard_of(path, shard_count) != self.id)
    }

    pub fn id(&self) -> ShardId {
        self.id
    }

    /// The multi across groups changing `path` (prepared, not finished): a read of it waits.
    /// (A path a multi only checks is held against changes, not against reads.)
    pub fn holder_of(&self, path: &str) -> Option<TxnId> {
        self.holds.writer_of(path)
    }

    /// Whether a multi across groups holds any path of this shard.
    pub fn holds_any(&self) -> bool {
        !self.holds.is_empty()
    }

    /// The multis across groups of this shard's group (its home shard's table).
    pub fn txns(&self) -> &TxnTable {
        &self.txns
    }

    /// zxid of the last applied entry (0 when none).
    pub fn last_zxid(&self) -> Zxid {
        self.last_zxid
    }

    /// Applies one committed entry. Entries MUST be applied in log order with increasing zxid.
    /// An entry that changes other shards too (`LogEntry::other_shards`) goes to `apply_across`.
    pub fn apply(&mut self, entry: &LogEntry) -> Applied {
        assert_eq!(entry.shard, self.id, "entry of shard {} applied to shard {}", entry.shard, self.id);
        if entry.command.is_txn() {
            let applied = txn::apply_txn(&mut [self], entry);
            let notifications = applied.notifications.into_iter().flat_map(|(_, n)| n).collect();
            return Applied { result: Ok(WriteResult::Txn(applied.applied)), notifications };
        }
        self.advance_to(entry.zxid);
        let txn = Txn::new(&mut self.tree, &mut self.sessions, entry.zxid, entry.time_ms);
        let (result, changes) = txn.run(&entry.command);
        let notifications = self.fire(&changes, entry.zxid);
        Applied { result, notifications }
    }

    pub(crate) fn advance_to(&mut self, zxid: Zxid) {
        assert!(
            zxid > self.last_zxid,
            "zxid must increase: entry {:#x} after {:#x} in shard {}",
            zxid,
            self.last_zxid,
            self.id
        );
        self.last_zxid = zxid;
    }

    pub(crate) fn fire(&mut self, changes: &[Change], zxid: Zxid) -> Vec<Notification> {
        let mut notifications = Vec::new();
        for change in changes {
            match change {
                Change::Created(path) => self.watches.node_created(path, zxid, &mut notifications),
                Change::Deleted(path) => self.watches.node_deleted(path, zxid, &mut notifications),
                Change::DataChanged(path) => self.watches.data_changed(path, zxid, &mut notifications),
            }
        }
        notifications
    }

    /// Serves a read (or a watch-state request) from this replica. Registers the watch when
    /// asked, also on NoNode for exists. Returns notifications that fire at once (SetWatches).
    pub fn read(&mut self, caller: Caller<'_>, op: &ReadOp) -> (Result<ReadResult, ZkError>, Vec<Notification>) {
        let mut notifications = Vec::new();
        let result = self.serve_read(caller, op, &mut notifications);
        (result, notifications)
    }

    /// An open session, if this shard knows it.
    pub fn session(&self, id: SessionId) -> Option<&SessionInfo> {
        self.sessions.get(id)
    }

    /// Every open session (for re-arming expiry timers after restart).
    pub fn sessions(&self) -> Vec<(SessionId, &SessionInfo)> {
        self.sessions.iter().collect()
    }

    /// Sessions this shard closed recently (`session::CLOSED_KEPT_MS` of log time), oldest
    /// first: shard 0's are the cluster's tombstones (every shard must close them).
    pub fn recently_closed_sessions(&self) -> Vec<SessionId> {
        self.sessions.recently_closed().collect()
    }

    /// Forgets every watch of a closed connection.
    pub fn drop_connection(&mut self, conn: ConnId) {
        self.watches.drop_connection(conn);
    }

    /// Paths to reap at `now_ms`: TTL nodes without children whose mtime + ttl < now, and
    /// containers without children whose cversion > 0 (they had a child once).
    pub fn reap_candidates(&self, now_ms: i64) -> Vec<String> {
        self.tree
            .reapable()
            .filter(|path| self.tree.get(path).is_some_and(|node| qualifies_for_reap(node, now_ms)))
            .cloned()
            .collect()
    }

    /// Counters for the four-letter words (mntr, wchs, stat).
    pub fn stats(&self) -> ShardStats {
        ShardStats {
            znode_count: self.tree.len() as u64,
            ephemeral_count: self.sessions.ephemeral_count(),
            approximate_data_size: self.tree.approximate_bytes(),
            watch_count: self.watches.watch_count(),
            watched_path_count: self.watches.watched_path_count(),
            session_count: self.sessions.len() as u64,
        }
    }

    /// For `wchs`/`dump`: paths watched per connection.
    pub fn watched_paths(&self) -> Vec<(ConnId, Vec<String>)> {
        self.watches.watched_paths()
    }

    /// For a read gathered from every shard ("/" and getEphemerals): the zxid of the last entry
    /// that changed what `op` reads in this shard. The answer of this shard equals its state at
    /// any zxid from this one up to the zxid its core has applied everything through; the
    /// server merges the parts only when one zxid lies in every part's range (a consistent cut).
    pub fn last_change_read_by(&self, session: SessionId, op: &ReadOp) -> Zxid {
        match op {
            ReadOp::GetEphemerals { .. } => self.sessions.get(session).map_or(0, |s| s.ephemerals_changed_zxid),
            _ => {
                let root = self.tree.get("/").expect("every shard has /");
                root.meta.pzxid.max(root.meta.mzxid)
            }
        }
    }

    /// The node at `path` (read-only), e.g. for snapshots and `dump`.
    pub fn node(&self, path: &str) -> Option<&Node> {
        self.tree.get(path)
    }

    /// The replicated tree (read-only).
    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// A hash of the replicated state (tree, sessions and their ephemerals, last zxid):
    /// replicas that applied the same log have equal digests.
    /// A digest of the multis across groups prepared here and the paths they hold (for the
    /// simulation's agreement checks; `digest` leaves them out).
    pub fn txn_digest(&self) -> u64 {
        let mut hasher = StableHasher::new();
        let mut prepared: Vec<String> = self.txns.prepared().map(|(txn, p)| format!("{txn:?} {:?}", p.vote)).collect();
        prepared.sort();
        prepared.hash(&mut hasher);
        self.holds.sorted_debug().hash(&mut hasher);
        hasher.finish()
    }

    pub fn digest(&self) -> u64 {
        let mut hasher = StableHasher::new();
        self.tree.digest().hash(&mut hasher);
        self.last_zxid.hash(&mut hasher);
        for (id, info) in self.sessions.iter() {
            id.hash(&mut hasher);
            info.timeout_ms.hash(&mut hasher);
            info.passwd.hash(&mut hasher);
            info.ephemerals.hash(&mut hasher);
            info.connection_epoch.hash(&mut hasher);
        }
        hasher.finish()
    }
}

/// What applying a multi across shards produced: its one result, and each shard's watch
/// notifications (to be delivered before the reply, as `Applied::notifications`).
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedAcross {
    pub result: Result<WriteResult, ZkError>,
    pub notifications: Vec<(ShardId, Vec<Notification>)>,
}

/// Applies a multi across shards of one group (`Command::MultiAcross`, or a client's one in
/// `Command::OfConnection`) to `shards`, which hold the entry's shard and every shard of its
/// ops, each once. As ZooKeeper's multi: the ops run in their order, each in its own shard, and
/// on the first failure every op already done, in any shard, is taken back; the results are
/// those of a multi in one tree (ops in different shards touch different paths, and a path's
/// parent lives in the path's shard, so no op sees another shard's). Every shard takes the
/// entry's zxid, whatever the outcome, so all of them have applied the same log.
pub fn apply_across(shards: &mut [&mut Shard], entry: &LogEntry) -> AppliedAcross {
    let (ops, session, auth, connection) = match &entry.command {
        Command::MultiAcross { ops, session, auth } => (ops, *session, auth, None),
        Command::OfConnection { session: of, epoch, write: ClientWrite::MultiAcross { ops, session, auth } } => {
            (ops, *session, auth, Some((*of, *epoch)))
        }
        other => panic!("apply_across of an entry that is not a multi across shards: {other:?}"),
    };
    let position = |id: ShardId| shards.iter().position(|s| s.id == id);
    for (shard, _) in ops {
        assert!(position(*shard).is_some(), "shard {shard} of a multi op was not handed to apply_across");
    }
    let own = position(entry.shard).expect("the entry's own shard is handed to apply_across");
    for (i, shard) in shards.iter().enumerate() {
        assert!(shards[..i].iter().all(|other| other.id != shard.id), "shard {} handed twice", shard.id);
    }
    let places: Vec<usize> = ops.iter().map(|(shard, _)| position(*shard).expect("checked above")).collect();
    for shard in shards.iter_mut() {
        shard.advance_to(entry.zxid);
    }
    let mut txns: Vec<Txn<'_>> =
        shards.iter_mut().map(|s| Txn::new(&mut s.tree, &mut s.sessions, entry.zxid, entry.time_ms)).collect();
    // As `Command::OfConnection` in one shard: the session's epoch in the entry's own shard.
    if connection.is_some_and(|(of, epoch)| txns[own].moved_on(of, epoch)) {
        return AppliedAcross { result: Err(ZkError::SessionMoved), notifications: Vec::new() };
    }
    let result = run_across(&mut txns, ops, &places, session, auth);
    let changes: Vec<Vec<Change>> = txns.into_iter().map(Txn::into_changes).collect();
    let notifications = shards.iter_mut().zip(&changes).map(|(s, c)| (s.id, s.fire(c, entry.zxid))).collect();
    AppliedAcross { result: Ok(WriteResult::Multi(result)), notifications }
}

fn run_across(
    txns: &mut [Txn<'_>],
    ops: &[(ShardId, MultiOp)],
    places: &[usize],
    session: SessionId,
    auth: &[Id],
) -> Vec<MultiResult> {
    let mut results = Vec::with_capacity(ops.len());
    for (index, ((_, op), &place)) in ops.iter().zip(places).enumerate() {
        match txns[place].multi_op(op, session, auth) {
            Ok(result) => results.push(result),
            Err(error) => {
                txns.iter_mut().for_each(Txn::rollback);
                return aborted_results(ops.len(), index, error);
            }
        }
    }
    results
}

/// "/zookeeper", "/zookeeper/quota" and "/zookeeper/config" as ZooKeeper's DataTree creates
/// them: zero stats, open ACL, except config which is read-only (ZOOKEEPER-2014) and carries
/// aversion -1 because ZooKeeper sets its ACL with version -1.
fn add_system_nodes(tree: &mut Tree) {
    let open = |acl: Vec<Acl>| Node::new(Some(Vec::new()), acl, NodeKind::Persistent, NodeMeta::default());
    tree.link("/zookeeper".to_string(), open(Acl::open_unsafe()));
    tree.link("/zookeeper/quota".to_string(), open(Acl::open_unsafe()));
    let mut config = open(vec![Acl { perms: perms::READ, id: Id::world_anyone() }]);
    config.meta.aversion = -1;
    tree.link("/zookeeper/config".to_string(), config);
}

/// Sizes reported by the four-letter words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardStats {
    pub znode_count: u64,
    pub ephemeral_count: u64,
    pub approximate_data_size: u64,
    pub watch_count: u64,
    pub watched_path_count: u64,
    pub session_count: u64,
}
