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

use super::core::Core;
use super::metrics::RequestClass;
use super::msg::*;
use crate::jute::{self, ConnectRequest, ConnectResponse, ReplyHeader, Request, Response};
use engine::command::{Command, CreateOp, DeleteOp, MultiOp, SetDataOp, ShardId};
use engine::path::shard_of;
use engine::request::{ReadOp, ReadResult, WriteResult};
use engine::types::{
    keeper_state, AddWatchMode, ConnId, CreateMode, EventType, Id, SessionId, Stat, WatcherType, Zxid,
};
use engine::ZkError;
use glommio::channels::local_channel::LocalSender;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// Bytes of replies and events queued for a client before it is cut off as not reading.
const OUTPUT_BYTES_MAX: usize = 64 << 20;

/// How a slot's parts become one reply.
enum Kind {
    /// A request answered by one shard; the opcode says how to encode it.
    Op(i32),
    /// A read of "/" gathered from every shard (part i = shard i) and merged.
    Root(i32),
    /// setACL("/"): checked and applied by shard 0 (part 0) first; when it succeeds the other
    /// shards copy the ACL (`CopyRootAcl`, parts 1..) before the reply leaves.
    RootAcl {
        opcode: i32,
        acl: Vec<engine::types::Acl>,
    },
    /// setACL("/") once every shard has it; shard 0 answers.
    Broadcast(i32),
    Sync(String),
    /// multi: the opcode of each op (create vs create2 results differ).
    Multi(Vec<i32>),
    /// multiRead: part i answers op i.
    MultiRead,
    Ephemerals,
    /// checkWatches/removeWatches of "/": fine if any shard had the watch.
    AnyWatch,
    /// setWatches: done when every part is.
    Done,
    /// addWatch: as `Done`, answered with ErrorResponse{0}.
    AddWatch,
    CloseSession,
    Connect {
        session: SessionId,
        passwd: Vec<u8>,
    },
    /// Answered without asking a shard.
    Ready {
        err: i32,
        response: Response,
    },
}

struct Slot {
    xid: i32,
    kind: Kind,
    parts: Vec<Option<(Zxid, ReplyBody)>>,
    missing: usize,
    frame: Option<Vec<u8>>,
    close_after: bool,
    /// The reply registers a one-shot child watch on "/" (armed when the reply leaves).
    arms_root_child_watch: bool,
    /// Watch events that must leave right after this reply.
    events_after: Vec<PendingEvent>,
    /// When the request's frame was read: its latency ends when the reply is encoded.
    started: Instant,
}

impl Slot {
    fn new(xid: i32, kind: Kind, part_count: usize) -> Slot {
        Slot {
            xid,
            kind,
            parts: (0..part_count).map(|_| None).collect(),
            missing: part_count,
            frame: None,
            close_after: false,
            arms_root_child_watch: false,
            events_after: Vec::new(),
            started: Instant::now(),
        }
    }

    /// How the request counts in the latency figures (call before `finish` takes the parts):
    /// an update if any part was a write, else a read; a connect handshake does not count.
    fn latency_class(&self) -> Option<RequestClass> {
        match self.kind {
            Kind::Connect { .. } => None,
            _ if self.parts.iter().flatten().any(|(_, body)| matches!(body, ReplyBody::Write(_))) => {
                Some(RequestClass::Update)
            }
            _ => Some(RequestClass::Read),
        }
    }
}

struct PendingEvent {
    shard: ShardId,
    event: EventType,
    path: String,
    zxid: Zxid,
}

/// Which shards the writes in flight of this connection go to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum WriteTarget {
    Shard(ShardId),
    Many,
}

/// Requests of one slot not sent yet (they wait for writes to another shard).
struct Held {
    requests: Vec<ShardRequest>,
    write_target: Option<WriteTarget>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Handshake {
    Pending,
    Granted,
    Refused,
}

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
}

impl Conn {
    pub fn new(core: Rc<Core>, peer: SocketAddr, writer_wake: LocalSender<()>, space_wake: LocalSender<()>) -> Conn {
        let ip = Id::new("ip", &peer.ip().to_string());
        let shards = core.config.shards as usize;
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
        }
    }

    /// True until the session handshake is answered: like ZooKeeper, the server reads no
    /// request of a connection whose session is not yet validated.
    pub fn awaiting_handshake(&self) -> bool {
        self.handshake.get() == Handshake::Pending
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

    // ---- handshake ----------------------------------------------------------------------

    /// Starts the session handshake: a new session is opened in every shard; a reconnect is
    /// checked against the session table.
    pub fn start_handshake(&self, request: &ConnectRequest) {
        let timeout_ms = self.core.config.negotiate_timeout_ms(request.timeout_ms);
        if request.session_id == 0 {
            let session = self.core.new_session_id();
            let passwd = random_passwd();
            self.session.set(session);
            self.timeout_ms.set(timeout_ms);
            // Tracked before it exists anywhere, so a session whose client vanishes before the
            // handshake ends still expires (and its ephemerals with it).
            self.core.send(0, Msg::SessionAttached { session, timeout_ms, conn: self.id, create: true });
            let ops = (0..self.shard_count())
                .map(|shard| {
                    let command = Command::CreateSession { session, timeout_ms, passwd: passwd.clone() };
                    (shard, ShardOp::Write(command))
                })
                .collect();
            self.submit(0, Kind::Connect { session, passwd }, ops);
        } else {
            self.session.set(request.session_id);
            let check = ShardOp::CheckSession { passwd: request.passwd.clone() };
            let kind = Kind::Connect { session: request.session_id, passwd: request.passwd.clone() };
            self.submit(0, kind, vec![(0, check)]);
        }
    }

    fn finish_connect(
        &self,
        session: SessionId,
        passwd: Vec<u8>,
        parts: &[Option<(Zxid, ReplyBody)>],
    ) -> (Vec<u8>, bool) {
        let granted = parts
            .iter()
            .all(|part| matches!(part, Some((_, ReplyBody::Write(Ok(_)))) | Some((_, ReplyBody::Session(Some(_))))));
        let stored_timeout = parts.iter().find_map(|part| match part {
            Some((_, ReplyBody::Session(Some(timeout)))) => Some(*timeout),
            _ => None,
        });
        let mut frame = Vec::new();
        if !granted {
            // ZooKeeper's answer to an expired or unknown session: timeout 0, then close.
            let refused = ConnectResponse {
                protocol_version: 0,
                timeout_ms: 0,
                session_id: 0,
                passwd: vec![0; 16],
                read_only: false,
            };
            jute::encode_connect_response(&mut frame, &refused);
            tracing::info!(session = format!("{session:#x}"), "refused session: expired or wrong password");
            self.handshake.set(Handshake::Refused);
            return (frame, true);
        }
        self.handshake.set(Handshake::Granted);
        if let Some(timeout_ms) = stored_timeout {
            // A reconnect: the session tracker re-checks that it did not expire meanwhile.
            self.timeout_ms.set(timeout_ms);
            self.core.send(0, Msg::SessionAttached { session, timeout_ms, conn: self.id, create: false });
        }
        let timeout_ms = self.timeout_ms.get();
        let response =
            ConnectResponse { protocol_version: 0, timeout_ms, session_id: session, passwd, read_only: false };
        jute::encode_connect_response(&mut frame, &response);
        (frame, false)
    }

    // ---- requests -------------------------------------------------------------------------

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
            Request::SetAcl { path, acl, version } => {
                let shard = shard_of(&path, self.shard_count());
                let kind = match path.as_str() {
                    "/" if self.shard_count() > 1 => Kind::RootAcl { opcode, acl: acl.clone() },
                    _ => Kind::Op(opcode),
                };
                let command = Command::SetAcl { path, acl, version, auth: self.auth_vec() };
                self.submit(xid, kind, vec![(shard, ShardOp::Write(command))]);
            }
            Request::Exists { path, watch } => self.read(xid, opcode, ReadOp::Exists { path, watch }),
            Request::GetData { path, watch } => self.read(xid, opcode, ReadOp::GetData { path, watch }),
            Request::GetChildren { path, watch } => self.read(xid, opcode, ReadOp::GetChildren { path, watch }),
            Request::GetChildren2 { path, watch } => self.read(xid, opcode, ReadOp::GetChildren2 { path, watch }),
            Request::GetAcl { path } => self.read(xid, opcode, ReadOp::GetAcl { path }),
            Request::GetAllChildrenNumber { path } => self.read(xid, opcode, ReadOp::GetAllChildrenNumber { path }),
            Request::GetEphemerals { prefix } => {
                let ops = self.all_shards(|_| ShardOp::Read(ReadOp::GetEphemerals { prefix: prefix.clone() }));
                self.submit(xid, Kind::Ephemerals, ops);
            }
            Request::Sync { path } => {
                let ops = self.owners_of(&path, |_| ShardOp::Sync);
                self.submit(xid, Kind::Sync(path), ops);
            }
            Request::Multi(ops) => self.multi(xid, ops),
            Request::MultiRead(ops) => self.multi_read(xid, ops),
            Request::AddWatch { path, mode } => match AddWatchMode::from_mode(mode) {
                Some(mode) => {
                    if path == "/" {
                        self.root_persistent_watch.set(true);
                    }
                    self.watch_op(xid, &path, Kind::AddWatch, |path| ReadOp::AddWatch { path, mode });
                }
                None => self.ready(xid, ZkError::BadArguments.code(), Response::Empty),
            },
            Request::CheckWatches { path, watcher_type } | Request::RemoveWatches { path, watcher_type } => {
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

    /// The shard of a create. A sequential create is routed by its path with a suffix, so
    /// `create("/", SEQUENTIAL)` lands where "/0000000042" will be looked up.
    fn create_shard(&self, op: &CreateOp) -> ShardId {
        if op.mode.is_sequential() {
            shard_of(&format!("{}{:010}", op.path, 0), self.shard_count())
        } else {
            shard_of(&op.path, self.shard_count())
        }
    }

    fn read(&self, xid: i32, opcode: i32, op: ReadOp) {
        let path = read_path(&op).to_string();
        if path != "/" {
            let shard = shard_of(&path, self.shard_count());
            self.submit(xid, Kind::Op(opcode), vec![(shard, ShardOp::Read(op))]);
            return;
        }
        let child_watch =
            matches!(op, ReadOp::GetChildren { watch: true, .. } | ReadOp::GetChildren2 { watch: true, .. });
        // Data/exists watches of "/" are registered in shard 0 only: its data changes in every
        // shard at once, so one registration gives one event.
        let ops = self.all_shards(|shard| {
            let mut op = op.clone();
            if shard != 0 {
                if let ReadOp::Exists { watch, .. } | ReadOp::GetData { watch, .. } = &mut op {
                    *watch = false;
                }
            }
            ShardOp::Read(op)
        });
        let seq = self.submit(xid, Kind::Root(opcode), ops);
        if child_watch {
            self.arm_root_child_watch_at(seq);
        }
    }

    fn arm_root_child_watch_at(&self, seq: u64) {
        let index = (seq - self.base_seq.get()) as usize;
        if let Some(slot) = self.slots.borrow_mut().get_mut(index) {
            slot.arms_root_child_watch = true;
        }
    }

    fn watch_op(&self, xid: i32, path: &str, kind: Kind, make: impl Fn(String) -> ReadOp) {
        let ops = self.owners_of(path, |_| ShardOp::Read(make(path.to_string())));
        self.submit(xid, kind, ops);
    }

    /// One op for the shard that owns `path`, or one per shard for "/" (spread over all).
    fn owners_of(&self, path: &str, make: impl Fn(ShardId) -> ShardOp) -> Vec<(ShardId, ShardOp)> {
        if path == "/" {
            self.all_shards(make)
        } else {
            let shard = shard_of(path, self.shard_count());
            vec![(shard, make(shard))]
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn set_watches(
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

    fn multi(&self, xid: i32, ops: Vec<Request>) {
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
                other => shard_of(multi_op_path(other), self.shard_count()),
            };
            shards.push(shard);
            opcodes.push(opcode);
            multi_ops.push(multi_op);
        }
        if shards.iter().any(|s| *s != shards[0]) || multi_ops.iter().any(|op| multi_op_path(op) == "/") {
            tracing::info!(
                conn = self.id,
                "multi refused: its ops span shards (keep a transaction under one top-level node)"
            );
            return self.ready(xid, ZkError::BadArguments.code(), Response::Empty);
        }
        let command = Command::Multi { ops: multi_ops, session: self.session.get(), auth: self.auth_vec() };
        self.submit(xid, Kind::Multi(opcodes), vec![(shards[0], ShardOp::Write(command))]);
    }

    fn multi_read(&self, xid: i32, ops: Vec<Request>) {
        let mut parts = Vec::with_capacity(ops.len());
        for op in ops {
            let read = match op {
                Request::GetData { path, .. } => ReadOp::GetData { path, watch: false },
                Request::GetChildren { path, .. } => ReadOp::GetChildren { path, watch: false },
                _ => return self.ready(xid, ZkError::BadArguments.code(), Response::Empty),
            };
            if read_path(&read) == "/" {
                // "/" is spread over every shard; multiRead does not gather it (yet).
                return self.ready(xid, ZkError::BadArguments.code(), Response::Empty);
            }
            parts.push((shard_of(read_path(&read), self.shard_count()), ShardOp::Read(read)));
        }
        if parts.is_empty() {
            return self.ready(xid, 0, Response::MultiRead(Vec::new()));
        }
        self.submit(xid, Kind::MultiRead, parts);
    }

    fn all_shards(&self, make: impl Fn(ShardId) -> ShardOp) -> Vec<(ShardId, ShardOp)> {
        (0..self.shard_count()).map(|shard| (shard, make(shard))).collect()
    }

    // ---- slots ----------------------------------------------------------------------------

    fn push_slot(&self, slot: Slot) -> u64 {
        let mut slots = self.slots.borrow_mut();
        let seq = self.base_seq.get() + slots.len() as u64;
        slots.push_back(slot);
        seq
    }

    /// Queues a reply that needs no shard.
    fn ready(&self, xid: i32, err: i32, response: Response) {
        self.push_slot(Slot::new(xid, Kind::Ready { err, response }, 0));
        self.pump();
    }

    /// Queues the slot that gathers the answers of one part per (shard, op), and sends the
    /// parts unless they must wait for writes in flight (see the module doc). Returns its seq.
    fn submit(&self, xid: i32, kind: Kind, ops: Vec<(ShardId, ShardOp)>) -> u64 {
        assert!(!ops.is_empty(), "a submitted request goes to at least one shard");
        let seq = self.push_slot(Slot::new(xid, kind, ops.len()));
        let write_target = write_target_of(&ops);
        let auth = self.caller_auth();
        let requests = ops
            .into_iter()
            .enumerate()
            .map(|(part, (shard, op))| ShardRequest {
                shard,
                conn: self.id,
                seq,
                part: part as u32,
                session: self.session.get(),
                auth: auth.clone(),
                op,
            })
            .collect();
        let held = Held { requests, write_target };
        if self.held.borrow().is_empty() && self.may_send(write_target) {
            self.send_now(held);
        } else {
            self.held.borrow_mut().push_back(held);
        }
        seq
    }

    fn may_send(&self, target: Option<WriteTarget>) -> bool {
        match (target, self.write_target.get()) {
            (None, _) | (Some(_), None) => true,
            (Some(WriteTarget::Shard(new)), Some(WriteTarget::Shard(in_flight))) => new == in_flight,
            _ => false,
        }
    }

    fn send_now(&self, held: Held) {
        if let Some(target) = held.write_target {
            self.write_target.set(Some(target));
            self.write_parts_in_flight.set(self.write_parts_in_flight.get() + held.requests.len());
        }
        for request in held.requests {
            self.core.send_to_shard(request);
        }
    }

    /// A write part came back: once no write is in flight, held requests go out in order.
    fn write_part_done(&self) {
        let in_flight = self.write_parts_in_flight.get();
        assert!(in_flight > 0, "a write reply without a write in flight");
        self.write_parts_in_flight.set(in_flight - 1);
        if in_flight > 1 {
            return;
        }
        self.write_target.set(None);
        loop {
            let next = {
                let mut held = self.held.borrow_mut();
                match held.front() {
                    Some(front) if self.may_send(front.write_target) => held.pop_front(),
                    _ => None,
                }
            };
            match next {
                Some(held) => self.send_now(held),
                None => break,
            }
        }
    }

    pub fn on_reply(&self, reply: Reply) {
        let is_write = matches!(reply.body, ReplyBody::Write(_));
        {
            let mut slots = self.slots.borrow_mut();
            let Some(index) = reply.seq.checked_sub(self.base_seq.get()) else {
                tracing::error!(conn = self.id, seq = reply.seq, "reply for a slot already sent; dropped");
                return;
            };
            let Some(part) = slots.get_mut(index as usize).and_then(|slot| slot.parts.get_mut(reply.part as usize))
            else {
                tracing::error!(conn = self.id, seq = reply.seq, part = reply.part, "reply for no slot; dropped");
                return;
            };
            if part.is_some() {
                tracing::error!(conn = self.id, seq = reply.seq, part = reply.part, "second reply for a part; dropped");
                return;
            }
            *part = Some((reply.zxid, reply.body));
            let slot = &mut slots[index as usize];
            slot.missing -= 1;
            if let Kind::RootAcl { .. } = slot.kind {
                // Sent before this write part counts as done, so no write held behind it slips
                // in between the two stages.
                self.copy_root_acl(reply.seq, slot);
            }
            if let Some(last) = self.last_reply_seq.borrow_mut().get_mut(reply.shard as usize) {
                *last = Some(reply.seq);
            }
        }
        if is_write {
            self.write_part_done();
        }
        self.pump();
    }

    /// Second stage of setACL("/"): shard 0 answered; if it applied the ACL, every other shard
    /// copies it before the reply leaves (each shard checks top-level creates against its own
    /// "/"). A failure in shard 0 (version, permission) changes no shard.
    fn copy_root_acl(&self, seq: u64, slot: &mut Slot) {
        let Kind::RootAcl { opcode, acl } = std::mem::replace(&mut slot.kind, Kind::Done) else {
            unreachable!("called for RootAcl slots")
        };
        slot.kind = Kind::Broadcast(opcode);
        if !matches!(slot.parts[0], Some((_, ReplyBody::Write(Ok(_))))) {
            return;
        }
        let auth = self.caller_auth();
        let requests: Vec<ShardRequest> = (1..self.shard_count())
            .map(|shard| ShardRequest {
                shard,
                conn: self.id,
                seq,
                part: shard as u32,
                session: self.session.get(),
                auth: auth.clone(),
                op: ShardOp::Write(Command::CopyRootAcl { acl: acl.clone(), auth: auth.as_ref().clone() }),
            })
            .collect();
        slot.parts.extend(requests.iter().map(|_| None));
        slot.missing += requests.len();
        self.send_now(Held { requests, write_target: Some(WriteTarget::Many) });
    }

    /// Encodes complete slots at the head of the queue into the output buffer.
    fn pump(&self) {
        let mut wrote = false;
        loop {
            let mut slots = self.slots.borrow_mut();
            let Some(front) = slots.front_mut() else { break };
            if front.missing > 0 {
                break;
            }
            let mut slot = slots.pop_front().expect("front exists");
            let held_floor = self.held_event_floor(&slot, &slots);
            drop(slots);
            self.base_seq.set(self.base_seq.get() + 1);
            let class = slot.latency_class();
            let frame = self.finish(&mut slot, held_floor);
            self.out.borrow_mut().extend_from_slice(&frame);
            if let Some(class) = class {
                self.core.metrics.borrow_mut().record_request(class, slot.started.elapsed());
            }
            self.check_output_bound();
            self.sent.set(self.sent.get() + 1);
            if slot.arms_root_child_watch {
                self.root_child_watch_armed.set(true);
            }
            self.held_events.set(self.held_events.get() - slot.events_after.len());
            for event in slot.events_after.drain(..) {
                self.emit_event(event);
            }
            wrote = true;
            if slot.close_after {
                self.close("closed after reply");
            }
        }
        if wrote {
            let _ = self.writer_wake.try_send(());
            let _ = self.space_wake.try_send(());
        }
    }

    /// The lowest zxid of the events that will leave after the reply of `slot` (held in it or
    /// in a later slot), if any.
    fn held_event_floor(&self, slot: &Slot, later: &VecDeque<Slot>) -> Option<Zxid> {
        if self.held_events.get() == 0 {
            return None;
        }
        std::iter::once(slot).chain(later.iter()).flat_map(|s| s.events_after.iter()).map(|e| e.zxid).min()
    }

    /// The zxid a reply carries: the node-wide watermark (every event at or below it is
    /// already here), and below every event still held behind this reply, so a client's
    /// lastZxidSeen never passes an event it has not received (setWatches after a reconnect
    /// relies on it).
    fn reply_zxid(&self, held_floor: Option<Zxid>) -> Zxid {
        let watermark = self.core.watermark();
        match held_floor {
            Some(floor) => watermark.min(floor - 1),
            None => watermark,
        }
    }

    fn finish(&self, slot: &mut Slot, held_floor: Option<Zxid>) -> Vec<u8> {
        if let Some(frame) = slot.frame.take() {
            return frame;
        }
        let zxid = self.reply_zxid(held_floor);
        self.last_zxid.set(zxid);
        let kind = std::mem::replace(&mut slot.kind, Kind::Done);
        let (err, response) = match kind {
            Kind::Connect { session, passwd, .. } => {
                let (frame, close) = self.finish_connect(session, passwd, &slot.parts);
                slot.close_after = close;
                return frame;
            }
            Kind::CloseSession => {
                slot.close_after = true;
                let closed_everywhere = slot.parts.iter().all(|p| matches!(p, Some((_, ReplyBody::Write(Ok(_))))));
                if closed_everywhere {
                    self.core.send(0, Msg::SessionClosed { session: self.session.get() });
                    (0, Response::Empty)
                } else {
                    // The session stays tracked, so it expires and its close is proposed again.
                    (ZkError::SystemError.code(), Response::Empty)
                }
            }
            Kind::Ready { err, response } => (err, response),
            kind => match merge(kind, std::mem::take(&mut slot.parts)) {
                Ok(response) => (0, response),
                Err(e) => (e.code(), Response::Empty),
            },
        };
        let mut frame = Vec::new();
        jute::encode_reply(&mut frame, &ReplyHeader { xid: slot.xid, zxid, err }, &response);
        frame
    }

    /// A watch fired in `shard`.
    pub fn on_notification(&self, shard: ShardId, event: EventType, path: &str, zxid: Zxid) {
        let event = PendingEvent { shard, event, path: path.to_string(), zxid };
        let after_seq = self.last_reply_seq.borrow().get(shard as usize).copied().flatten();
        if let Some(seq) = after_seq.filter(|seq| *seq >= self.base_seq.get()) {
            let index = (seq - self.base_seq.get()) as usize;
            if let Some(slot) = self.slots.borrow_mut().get_mut(index) {
                slot.events_after.push(event);
                self.held_events.set(self.held_events.get() + 1);
                return;
            }
        }
        self.emit_event(event);
        let _ = self.writer_wake.try_send(());
    }

    fn emit_event(&self, e: PendingEvent) {
        if self.closing.get().is_some() || (e.path == "/" && !self.accept_root_event(e.shard, e.event)) {
            return;
        }
        jute::encode_notification(
            &mut self.out.borrow_mut(),
            e.zxid,
            e.event as i32,
            keeper_state::SYNC_CONNECTED,
            &e.path,
        );
        self.check_output_bound();
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

    fn accept_root_event(&self, shard: ShardId, event: EventType) -> bool {
        match event {
            // setData("/") applies in every shard; shard 0 speaks for "/".
            EventType::NodeDataChanged => shard == 0,
            EventType::NodeChildrenChanged => {
                if self.root_persistent_watch.get() {
                    return true;
                }
                self.root_child_watch_armed.replace(false)
            }
            _ => true,
        }
    }
}

/// Where the write parts of a request go, if it writes.
fn write_target_of(ops: &[(ShardId, ShardOp)]) -> Option<WriteTarget> {
    if !ops.iter().any(|(_, op)| matches!(op, ShardOp::Write(_))) {
        return None;
    }
    match ops {
        [(shard, _)] => Some(WriteTarget::Shard(*shard)),
        _ => Some(WriteTarget::Many),
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

fn read_path(op: &ReadOp) -> &str {
    match op {
        ReadOp::Exists { path, .. }
        | ReadOp::GetData { path, .. }
        | ReadOp::GetChildren { path, .. }
        | ReadOp::GetChildren2 { path, .. }
        | ReadOp::GetAcl { path }
        | ReadOp::GetAllChildrenNumber { path }
        | ReadOp::AddWatch { path, .. }
        | ReadOp::CheckWatches { path, .. }
        | ReadOp::RemoveWatches { path, .. } => path,
        ReadOp::GetEphemerals { prefix } => prefix,
        ReadOp::MultiRead(_) | ReadOp::SetWatches { .. } => "/",
    }
}

fn multi_op_path(op: &MultiOp) -> &str {
    match op {
        MultiOp::Create(c) => &c.path,
        MultiOp::Delete(d) => &d.path,
        MultiOp::SetData(s) => &s.path,
        MultiOp::Check { path, .. } => path,
    }
}

type Parts = Vec<Option<(Zxid, ReplyBody)>>;

fn take_bodies(parts: Parts) -> Vec<ReplyBody> {
    parts.into_iter().map(|p| p.expect("every part answered").1).collect()
}

fn read_result(body: ReplyBody) -> Result<ReadResult, ZkError> {
    match body {
        ReplyBody::Read(result) => result,
        _ => Err(ZkError::SystemError),
    }
}

fn write_result(body: ReplyBody) -> Result<WriteResult, ZkError> {
    match body {
        ReplyBody::Write(result) => result,
        _ => Err(ZkError::SystemError),
    }
}

/// Turns the answers of a slot's parts into the reply.
fn merge(kind: Kind, parts: Parts) -> Result<Response, ZkError> {
    let mut bodies = take_bodies(parts);
    match kind {
        Kind::Op(opcode) => {
            let body = bodies.pop().expect("one part");
            match body {
                ReplyBody::Read(result) => Ok(read_response(opcode, result?)),
                ReplyBody::Write(result) => Ok(write_response(opcode, result?)),
                ReplyBody::Synced | ReplyBody::Session(_) => Ok(Response::Empty),
            }
        }
        Kind::Broadcast(opcode) => {
            // Every shard must have applied it; shard 0's result speaks for "/".
            let results: Vec<_> = bodies.into_iter().map(write_result).collect::<Result<_, _>>()?;
            let first = results.into_iter().next().expect("shard 0 answers");
            Ok(write_response(opcode, first))
        }
        Kind::Root(opcode) => merge_root(opcode, bodies),
        Kind::Sync(path) => Ok(Response::Sync { path }),
        Kind::Multi(opcodes) => match write_result(bodies.pop().expect("one part"))? {
            WriteResult::Multi(results) => Ok(Response::Multi(opcodes.into_iter().zip(results).collect())),
            _ => Err(ZkError::SystemError),
        },
        Kind::MultiRead => {
            Ok(Response::MultiRead(bodies.into_iter().map(|b| read_result(b).map_err(|e| e.code())).collect()))
        }
        Kind::Ephemerals => {
            let mut all = Vec::new();
            for body in bodies {
                if let ReadResult::Paths(paths) = read_result(body)? {
                    all.extend(paths);
                }
            }
            all.sort();
            Ok(Response::Ephemerals(all))
        }
        Kind::AnyWatch => {
            let results: Vec<_> = bodies.into_iter().map(read_result).collect();
            if results.iter().any(|r| r.is_ok()) {
                Ok(Response::Empty)
            } else {
                Err(results.into_iter().find_map(|r| r.err()).unwrap_or(ZkError::NoWatcher))
            }
        }
        Kind::Done => first_error(bodies).map(|()| Response::Empty),
        Kind::AddWatch => first_error(bodies).map(|()| Response::ErrorResponse(0)),
        Kind::CloseSession | Kind::Connect { .. } | Kind::Ready { .. } => unreachable!("finished by Conn::finish"),
        Kind::RootAcl { .. } => unreachable!("a RootAcl slot becomes Broadcast when shard 0 answers"),
    }
}

/// The first error among the parts of a request that is done when every part is.
fn first_error(bodies: Vec<ReplyBody>) -> Result<(), ZkError> {
    for body in bodies {
        if let ReplyBody::Read(Err(e)) | ReplyBody::Write(Err(e)) = body {
            return Err(e);
        }
    }
    Ok(())
}

fn read_response(opcode: i32, result: ReadResult) -> Response {
    match result {
        ReadResult::Stat(stat) => Response::Stat(stat),
        ReadResult::Data { data, stat } => Response::Data { data, stat },
        ReadResult::Children(children) => Response::Children(children),
        ReadResult::Children2 { children, stat } => Response::Children2 { children, stat },
        ReadResult::Acl { acl, stat } => Response::Acl { acl, stat },
        ReadResult::Number(n) => Response::Number(n),
        ReadResult::Paths(paths) => Response::Ephemerals(paths),
        ReadResult::Multi(results) => {
            Response::MultiRead(results.into_iter().map(|r| r.map_err(|e| e.code())).collect())
        }
        ReadResult::Done => {
            let _ = opcode;
            Response::Empty
        }
    }
}

fn write_response(opcode: i32, result: WriteResult) -> Response {
    match result {
        WriteResult::Created { path, stat } => match opcode {
            jute::opcode::CREATE => Response::Create { path },
            _ => Response::Create2 { path, stat },
        },
        WriteResult::Stat(stat) => Response::Stat(stat),
        WriteResult::Multi(results) => Response::Multi(results.into_iter().map(|r| (opcode, r)).collect()),
        WriteResult::Deleted | WriteResult::SessionCreated | WriteResult::SessionClosed | WriteResult::Reaped(_) => {
            Response::Empty
        }
    }
}

/// Merges every shard's view of "/" (part i is shard i).
fn merge_root(opcode: i32, bodies: Vec<ReplyBody>) -> Result<Response, ZkError> {
    let results: Vec<ReadResult> = bodies.into_iter().map(read_result).collect::<Result<_, _>>()?;
    let stats: Vec<Stat> = results.iter().filter_map(result_stat).collect();
    let merged_stat = merge_root_stats(&stats);
    let mut children: Vec<String> = Vec::new();
    let mut total = 0i32;
    for result in &results {
        match result {
            ReadResult::Children(c) | ReadResult::Children2 { children: c, .. } => children.extend(c.iter().cloned()),
            ReadResult::Number(n) => total += n,
            _ => {}
        }
    }
    children.sort();
    let first = results.into_iter().next().expect("shard 0 answers");
    Ok(match first {
        ReadResult::Stat(_) => Response::Stat(merged_stat),
        ReadResult::Data { data, .. } => Response::Data { data, stat: merged_stat },
        ReadResult::Acl { acl, .. } => Response::Acl { acl, stat: merged_stat },
        ReadResult::Children(_) => Response::Children(children),
        ReadResult::Children2 { .. } => Response::Children2 { children, stat: merged_stat },
        ReadResult::Number(_) => Response::Number(total),
        other => read_response(opcode, other),
    })
}

fn result_stat(result: &ReadResult) -> Option<Stat> {
    match result {
        ReadResult::Stat(s)
        | ReadResult::Data { stat: s, .. }
        | ReadResult::Acl { stat: s, .. }
        | ReadResult::Children2 { stat: s, .. } => Some(*s),
        _ => None,
    }
}

/// The Stat of "/": shard 0's, with children counted over all shards.
fn merge_root_stats(stats: &[Stat]) -> Stat {
    let Some(first) = stats.first() else { return Stat::default() };
    let mut merged = *first;
    merged.num_children = stats.iter().map(|s| s.num_children).sum();
    merged.cversion = stats.iter().map(|s| s.cversion).sum();
    merged.pzxid = stats.iter().map(|s| s.pzxid).max().unwrap_or(0);
    merged
}

/// 16 random bytes from the kernel: the session password a reconnect must present.
fn random_passwd() -> Vec<u8> {
    let mut passwd = vec![0u8; 16];
    // SAFETY: getrandom writes at most `len` bytes into the buffer we own.
    let n = unsafe { libc::getrandom(passwd.as_mut_ptr().cast(), passwd.len(), 0) };
    assert_eq!(n, 16, "getrandom failed to produce a session password");
    passwd
}

impl Conn {
    pub fn core_config(&self) -> Rc<crate::config::Config> {
        self.core.config.clone()
    }
}
