//! One client connection: the ZooKeeper handshake, request dispatch to the owning shards,
//! replies leaving in request order (FIFO) and watch notifications written as they arrive.
//!
//! Every request gets a slot in `slots`, in arrival order. A slot has one part per shard it
//! was sent to (most requests touch one shard; reads of "/" and session open/close touch all).
//! When every part is back, the slot's reply is encoded; complete slots at the head of the
//! queue are moved to the output buffer, so replies leave in request order even when
//! consecutive requests go to different cores.
//!
//! Two more rules keep ZooKeeper's order guarantees across shards:
//! - A watch event from shard s leaves right after the last queued reply that shard s has
//!   already answered (that reply may have registered the watch, and clients register their
//!   watcher when the reply arrives), and before any reply shard s sends later (those could
//!   observe the change).
//! - A session's writes are applied in the order it sent them: a write to another shard than
//!   the writes still in flight waits (with every request behind it) until those are answered.
//!
//! This file owns the `Conn` state, its public surface (used by `server/mod.rs` and
//! `core.rs`) and the decoding and dispatch of requests. The rest, one concern a file:
//! - `handshake.rs`: session open / reconnect and the ConnectResponse;
//! - `routing.rs`: which shards a request goes to;
//! - `slots.rs`: the reply queue, writes held behind writes to another shard, reply zxids;
//! - `events.rs`: where a watch event leaves, and the de-duplication of events of "/";
//! - `merge.rs`: pure functions merging the parts' answers into one reply.

mod events;
mod handshake;
mod merge;
mod routing;
mod slots;
mod txn;

use self::handshake::Handshake;
use self::slots::{Held, Kind, Slot, WriteTarget};
use super::core::Core;
use super::msg::*;
use crate::jute::{self, Request, Response};
use engine::command::{Command, CreateOp, DeleteOp, SetDataOp, ShardId};
use engine::path::shard_of;
use engine::request::ReadOp;
use engine::types::{ConnId, CreateMode, Id, SessionId, Zxid};
use engine::ZkError;
use glommio::channels::local_channel::LocalSender;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

/// Bytes of replies and events queued for a client before it is cut off as not reading.
const OUTPUT_BYTES_MAX: usize = 64 << 20;

/// The answers of a slot's parts (part i from the i-th shard it was sent to), with the zxid
/// each came with.
/// The answer of each part of a request, None until it arrives.
type Parts = Vec<Option<ReplyBody>>;

pub struct Conn {
    pub id: ConnId,
    core: Rc<Core>,
    peer: SocketAddr,
    session: Cell<SessionId>,
    timeout_ms: Cell<i32>,
    auth: RefCell<Arc<Vec<Id>>>,
    slots: RefCell<VecDeque<Slot>>,
    /// Sequence number of `slots.front()`.
    base_seq: Cell<u64>,
    out: RefCell<Vec<u8>>,
    writer_wake: LocalSender<()>,
    space_wake: LocalSender<()>,
    closing: Cell<Option<&'static str>>,
    last_zxid: Cell<Zxid>,
    /// A one-shot child watch on "/" is registered in every shard; the first shard to fire it
    /// delivers the event, later ones are dropped until the client asks again.
    root_child_watch_armed: Cell<bool>,
    root_persistent_watch: Cell<bool>,
    received: Cell<u64>,
    sent: Cell<u64>,
    handshake: Cell<Handshake>,
    /// Per shard: the seq of the latest reply part that shard sent to this connection.
    last_reply_seq: RefCell<Vec<Option<u64>>>,
    held: RefCell<VecDeque<Held>>,
    write_parts_in_flight: Cell<usize>,
    write_target: Cell<Option<WriteTarget>>,
    /// Events waiting in some slot's `events_after` (skips the scan for the zxid cap).
    held_events: Cell<usize>,
    /// Per shard: the session's epoch there when this connection reattached it in a cluster
    /// (0 for the connection that created it): its writes carry it (`Command::OfConnection`).
    connection_epochs: RefCell<Vec<Zxid>>,
    /// A write came back SESSIONMOVED: nothing more leaves or is sent (ZooKeeper cuts such a
    /// connection at once).
    cut_off: Cell<bool>,
    /// The core's queue to itself when the connection came (`Core::read_inline`).
    born_at_self_queue: u64,
}

impl Conn {
    pub fn new(core: Rc<Core>, peer: SocketAddr, writer_wake: LocalSender<()>, space_wake: LocalSender<()>) -> Conn {
        let ip = Id::new("ip", &peer.ip().to_string());
        let shards = core.config.shards as usize;
        let born_at_self_queue = core.self_queue_position();
        Conn {
            id: core.new_conn_id(),
            core,
            peer,
            session: Cell::new(0),
            timeout_ms: Cell::new(0),
            auth: RefCell::new(Arc::new(vec![ip])),
            slots: RefCell::new(VecDeque::new()),
            base_seq: Cell::new(0),
            out: RefCell::new(Vec::with_capacity(4096)),
            writer_wake,
            space_wake,
            closing: Cell::new(None),
            last_zxid: Cell::new(0),
            root_child_watch_armed: Cell::new(false),
            root_persistent_watch: Cell::new(false),
            received: Cell::new(0),
            sent: Cell::new(0),
            handshake: Cell::new(Handshake::Pending),
            last_reply_seq: RefCell::new(vec![None; shards]),
            held: RefCell::new(VecDeque::new()),
            write_parts_in_flight: Cell::new(0),
            write_target: Cell::new(None),
            held_events: Cell::new(0),
            connection_epochs: RefCell::new(vec![0; shards]),
            cut_off: Cell::new(false),
            born_at_self_queue,
        }
    }

    /// The session of this connection, once its handshake gave it one.
    pub fn session_id(&self) -> Option<SessionId> {
        Some(self.session.get()).filter(|&session| session != 0)
    }

    pub fn outstanding(&self) -> usize {
        self.slots.borrow().len()
    }

    pub fn closing(&self) -> Option<&'static str> {
        self.closing.get()
    }

    /// Asks the writer to flush what is queued and close the socket.
    pub fn close(&self, reason: &'static str) {
        if self.closing.get().is_none() {
            tracing::debug!(
                conn = self.id,
                session = format!("{:#x}", self.session.get()),
                reason,
                "closing connection"
            );
            self.closing.set(Some(reason));
        }
        let _ = self.writer_wake.try_send(());
        let _ = self.space_wake.try_send(());
    }

    pub fn take_output(&self, spare: &mut Vec<u8>) {
        spare.clear();
        std::mem::swap(&mut *self.out.borrow_mut(), spare);
    }

    pub fn stats(&self) -> ConnStats {
        ConnStats {
            conn: self.id,
            peer: self.peer.to_string(),
            session: self.session.get(),
            timeout_ms: self.timeout_ms.get(),
            outstanding: self.outstanding() as u64,
            received: self.received.get(),
            sent: self.sent.get(),
            last_zxid: self.last_zxid.get(),
        }
    }

    fn caller_auth(&self) -> Arc<Vec<Id>> {
        self.auth.borrow().clone()
    }

    fn shard_count(&self) -> u16 {
        self.core.config.shards
    }

    /// The core (and so the Raft group) whose log holds `shard`.
    fn core_of(&self, shard: ShardId) -> usize {
        crate::server::core::core_of_shard(shard, self.core.cores())
    }

    /// Decodes and dispatches one request frame (the bytes after the length prefix).
    pub fn on_frame(&self, frame: &[u8]) {
        self.received.set(self.received.get() + 1);
        self.core.requests_total.set(self.core.requests_total.get() + 1);
        self.core.touch(self.session.get());
        match jute::decode_request(frame) {
            Ok((header, request)) => self.dispatch(header.xid, header.opcode, request),
            Err((Some(header), jute::DecodeError::UnknownOpcode(opcode))) => {
                tracing::warn!(conn = self.id, opcode, "unknown opcode");
                self.ready(header.xid, ZkError::Unimplemented.code(), Response::Empty);
            }
            Err((Some(header), error)) => {
                tracing::warn!(conn = self.id, opcode = header.opcode, %error, "malformed request");
                self.ready(header.xid, ZkError::MarshallingError.code(), Response::Empty);
            }
            Err((None, error)) => {
                tracing::warn!(conn = self.id, %error, "malformed request header; closing");
                self.close("malformed request header");
            }
        }
    }

    /// A frame larger than max-request-bytes: counted and logged; the caller closes the
    /// connection without reading the frame.
    pub fn on_oversized(&self, len: usize) {
        let max = self.core.config.max_request_bytes;
        tracing::warn!(
            conn = self.id,
            session = format!("{:#x}", self.session.get()),
            len,
            max,
            "request larger than max-request-bytes; closing the connection"
        );
        let rejected = &self.core.large_requests_rejected;
        rejected.set(rejected.get() + 1);
    }

    fn dispatch(&self, xid: i32, opcode: i32, request: Request) {
        match request {
            Request::Ping => self.ready(xid, 0, Response::Empty),
            Request::Create { opcode, path, data, acl, flags, ttl_ms } => {
                match self.create_op(opcode, path, data, acl, flags, ttl_ms) {
                    Ok(op) => {
                        let shard = self.create_shard(&op);
                        self.submit(xid, Kind::Op(opcode), vec![(shard, ShardOp::Write(Command::Create(op)))]);
                    }
                    Err(e) => self.ready(xid, e.code(), Response::Empty),
                }
            }
            Request::Delete { path, version } => {
                let op = DeleteOp { path, version, auth: self.auth_vec() };
                let shard = shard_of(&op.path, self.shard_count());
                self.submit(xid, Kind::Op(opcode), vec![(shard, ShardOp::Write(Command::Delete(op)))]);
            }
            Request::SetData { path, data, version } => {
                // The data of "/" lives in shard 0 alone (shard_of("/") is 0): one write, atomic.
                let shard = shard_of(&path, self.shard_count());
                let command = Command::SetData(SetDataOp { path, data, version, auth: self.auth_vec() });
                self.submit(xid, Kind::Op(opcode), vec![(shard, ShardOp::Write(command))]);
            }
            Request::SetAcl { path, acl, version } => self.set_acl(xid, opcode, path, acl, version),
            Request::Exists { path, watch } => self.read(xid, opcode, ReadOp::Exists { path, watch }),
            Request::GetData { path, watch } => self.read(xid, opcode, ReadOp::GetData { path, watch }),
            Request::GetChildren { path, watch } => self.read(xid, opcode, ReadOp::GetChildren { path, watch }),
            Request::GetChildren2 { path, watch } => self.read(xid, opcode, ReadOp::GetChildren2 { path, watch }),
            Request::GetAcl { path } => self.read(xid, opcode, ReadOp::GetAcl { path }),
            Request::GetAllChildrenNumber { path } => self.read(xid, opcode, ReadOp::GetAllChildrenNumber { path }),
            Request::GetEphemerals { prefix } => {
                let ops = (0..self.shard_count())
                    .map(|shard| (shard, ReadOp::GetEphemerals { prefix: prefix.clone() }))
                    .collect();
                self.submit_gathered(xid, Kind::Ephemerals, ops);
            }
            Request::Sync { path } => {
                // As ZooKeeper's: the whole node catches up, not only the path's group, so a
                // read of any path after it sees every write acknowledged before it.
                let groups = self.core.cores().min(self.shard_count() as usize);
                let ops = (0..groups).map(|group| (group as engine::command::ShardId, ShardOp::Sync)).collect();
                self.submit(xid, Kind::Sync(path), ops);
            }
            Request::Multi(ops) => self.multi(xid, ops),
            Request::MultiRead(ops) => self.multi_read(xid, ops),
            Request::AddWatch { path, mode } => self.add_watch(xid, path, mode),
            Request::CheckWatches { path, watcher_type } | Request::RemoveWatches { path, watcher_type } => {
                self.check_or_remove_watches(xid, opcode, path, watcher_type)
            }
            Request::SetWatches { relative_zxid, data, exist, child } => {
                self.set_watches(xid, relative_zxid, data, exist, child, Vec::new(), Vec::new())
            }
            Request::SetWatches2 { relative_zxid, data, exist, child, persistent, persistent_recursive } => {
                self.set_watches(xid, relative_zxid, data, exist, child, persistent, persistent_recursive)
            }
            Request::Auth { scheme, auth, .. } => self.add_auth(xid, &scheme, &auth),
            Request::WhoAmI => {
                let infos = self.auth.borrow().iter().map(|id| (id.scheme.clone(), who_am_i_user(id))).collect();
                self.ready(xid, 0, Response::WhoAmI(infos));
            }
            Request::CloseSession => {
                let session = self.session.get();
                let ops = self.all_shards(|_| ShardOp::Write(Command::CloseSession { session }));
                self.submit(xid, Kind::CloseSession, ops);
            }
            Request::Reconfig { .. } => self.ready(xid, ZkError::ReconfigDisabled.code(), Response::Empty),
            Request::Check { .. } | Request::Sasl { .. } => {
                self.ready(xid, ZkError::Unimplemented.code(), Response::Empty)
            }
        }
    }

    fn auth_vec(&self) -> Vec<Id> {
        // Writes check ACLs at apply time, so the identities (ip included) travel in the
        // log entry and replay decides exactly as the first apply did.
        self.auth.borrow().as_ref().clone()
    }

    fn create_op(
        &self,
        opcode: i32,
        path: String,
        data: Option<Vec<u8>>,
        acl: Vec<engine::types::Acl>,
        flags: i32,
        ttl_ms: i64,
    ) -> Result<CreateOp, ZkError> {
        let mode = CreateMode::from_flags(flags).ok_or(ZkError::BadArguments)?;
        let ttl_ok = match opcode {
            jute::opcode::CREATE_TTL => mode.is_ttl(),
            jute::opcode::CREATE_CONTAINER => mode.is_container(),
            _ => !mode.is_ttl(),
        };
        if !ttl_ok {
            return Err(ZkError::BadArguments);
        }
        Ok(CreateOp { path, data, acl, mode, ttl_ms, session: self.session.get(), auth: self.auth_vec() })
    }

    fn add_auth(&self, xid: i32, scheme: &str, auth: &[u8]) {
        let credentials = std::str::from_utf8(auth).ok().filter(|c| c.contains(':'));
        match (scheme, credentials) {
            ("digest", Some(credentials)) => {
                let id = Id::new("digest", &engine::acl::digest_id(credentials));
                let mut current = (**self.auth.borrow()).clone();
                if !current.contains(&id) {
                    current.push(id);
                }
                *self.auth.borrow_mut() = Arc::new(current);
                self.ready(xid, 0, Response::Empty);
            }
            _ => {
                // As ZooKeeper: AUTH_FAILED, then the connection is closed.
                tracing::info!(conn = self.id, scheme, "authentication failed");
                let mut slot =
                    Slot::new(xid, Kind::Ready { err: ZkError::AuthFailed.code(), response: Response::Empty }, 0);
                slot.close_after = true;
                self.push_slot(slot);
                self.pump();
            }
        }
    }
    /// Replies are bounded by the outstanding-request limit, but watch events are not: a
    /// client that does not read while events pile up is cut off instead of growing memory.
    fn check_output_bound(&self) {
        let queued = self.out.borrow().len();
        if queued > OUTPUT_BYTES_MAX && self.closing.get().is_none() {
            tracing::warn!(conn = self.id, queued, "client does not read its replies and events; closing");
            self.close("output buffer over its limit");
        }
    }
}

/// The user of an identity as ZooKeeper's whoAmI names it: for digest the user name alone
/// (DigestAuthenticationProvider.getUserName), for other schemes the id.
fn who_am_i_user(id: &Id) -> String {
    match id.scheme.as_str() {
        "digest" => id.id.split(':').next().unwrap_or_default().to_string(),
        _ => id.id.clone(),
    }
}

impl Conn {
    pub fn core_config(&self) -> Rc<crate::config::Config> {
        self.core.config.clone()
    }
}
