//! The reply queue of a connection: one slot per request in arrival order, filled by the
//! shards' reply parts; complete slots at the head are encoded into the output, so replies
//! leave in request order. Also the holding of requests behind writes in flight to another
//! shard, and the zxid a reply carries.

use super::events::PendingEvent;
use super::merge::merge;
use super::{Conn, Parts};
use crate::jute::{self, ReplyHeader, Response};
use crate::server::cut::{check_cut, PartStamp};
use crate::server::metrics::RequestClass;
use crate::server::msg::*;
use engine::command::{ClientWrite, Command, ShardId};
use engine::request::{Caller, ReadOp};
use engine::types::{SessionId, Zxid};
use engine::ZkError;
use std::collections::VecDeque;
use std::time::Instant;

/// How a slot's parts become one reply.
pub(super) enum Kind {
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
    /// A multi across groups (`conn/txn.rs`): its prepares and the wait for its decision; it
    /// becomes `Ready` once they all answered (or goes out again, Retry).
    Txn(Box<super::txn::TxnRequest>),
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
    /// A reconnect in a cluster while its syncs, check and renewal are out; once all of them
    /// are answered it becomes `Connect`, and if they succeeded the session's moves to this
    /// connection go out as its further parts (`Conn::move_session_here`).
    Reattach {
        session: SessionId,
        passwd: Vec<u8>,
    },
    /// A new session's create in shard 0 (part 0); becomes `Connect` when shard 0 answers, and
    /// the creates in the other shards follow (`Conn::open_in_other_shards`).
    OpenSession {
        session: SessionId,
        passwd: Vec<u8>,
        timeout_ms: i32,
    },
    /// Answered without asking a shard.
    Ready {
        err: i32,
        response: Response,
    },
}

pub(super) struct Slot {
    pub(super) xid: i32,
    pub(super) kind: Kind,
    pub(super) parts: Parts,
    pub(super) missing: usize,
    pub(super) close_after: bool,
    /// The reply registers a one-shot child watch on "/" (armed when the reply leaves).
    pub(super) arms_root_child_watch: bool,
    /// Watch events that must leave right after this reply.
    pub(super) events_after: Vec<PendingEvent>,
    /// When the request's frame was read: its latency ends when the reply is encoded.
    pub(super) started: Instant,
    /// A read gathered from every shard: merged only at a consistent cut (`cut.rs`).
    pub(super) gathered: Option<Gathered>,
}

/// How many times the lagging parts of a gathered read are asked again before the read is
/// answered OPERATIONTIMEOUT (only continuous changes in every round get there).
const CUT_ROUNDS_MAX: u32 = 64;

/// The parts of a gathered read and their moments.
pub(super) struct Gathered {
    /// Per part: its shard and op, to ask again.
    ops: Vec<(ShardId, ReadOp)>,
    stamps: Vec<Option<PartStamp>>,
    rounds: u32,
}

impl Slot {
    pub(super) fn new(xid: i32, kind: Kind, part_count: usize) -> Slot {
        Slot {
            xid,
            kind,
            parts: (0..part_count).map(|_| None).collect(),
            missing: part_count,
            close_after: false,
            arms_root_child_watch: false,
            events_after: Vec::new(),
            started: Instant::now(),
            gathered: None,
        }
    }

    /// How the request counts in the latency figures (call before `finish` takes the parts):
    /// an update if any part was a write, else a read; a connect handshake does not count.
    fn latency_class(&self) -> Option<RequestClass> {
        match self.kind {
            Kind::Connect { .. } | Kind::OpenSession { .. } | Kind::Reattach { .. } => None,
            _ if self.parts.iter().flatten().any(|body| matches!(body, ReplyBody::Write(_))) => {
                Some(RequestClass::Update)
            }
            _ => Some(RequestClass::Read),
        }
    }
}

/// Which shards the writes in flight of this connection go to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum WriteTarget {
    Shard(ShardId),
    Many,
    /// A multi across shards: it goes to the shard of its first op, which stands for all of
    /// them, so the session order of the others is kept by sending nothing else of the
    /// connection, read or write, until it is answered (and it waits for every write before it).
    Alone,
}

/// Requests of one slot not sent yet (they wait for writes to another shard).
pub(super) struct Held {
    pub(super) requests: Vec<ShardRequest>,
    pub(super) write_target: Option<WriteTarget>,
}

impl Conn {
    pub(super) fn arm_root_child_watch_at(&self, seq: u64) {
        let index = (seq - self.base_seq.get()) as usize;
        if let Some(slot) = self.slots.borrow_mut().get_mut(index) {
            slot.arms_root_child_watch = true;
        }
    }

    pub(super) fn push_slot(&self, slot: Slot) -> u64 {
        let mut slots = self.slots.borrow_mut();
        let seq = self.base_seq.get() + slots.len() as u64;
        slots.push_back(slot);
        seq
    }

    /// Queues a reply that needs no shard.
    pub(super) fn ready(&self, xid: i32, err: i32, response: Response) {
        self.push_slot(Slot::new(xid, Kind::Ready { err, response }, 0));
        self.pump();
    }

    /// Queues the slot that gathers the answers of one part per (shard, op), and sends the
    /// parts unless they must wait for writes in flight (see the module doc). Returns its seq.
    pub(super) fn submit(&self, xid: i32, kind: Kind, ops: Vec<(ShardId, ShardOp)>) -> u64 {
        assert!(!ops.is_empty(), "a submitted request goes to at least one shard");
        let seq = self.push_slot(Slot::new(xid, kind, ops.len()));
        let write_target = write_target_of(&ops);
        let requests =
            ops.into_iter().enumerate().map(|(part, (shard, op))| self.shard_request(seq, part, shard, op)).collect();
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
            (_, Some(WriteTarget::Alone)) => false,
            (None, _) | (Some(_), None) => true,
            (Some(WriteTarget::Shard(new)), Some(WriteTarget::Shard(in_flight))) => new == in_flight,
            _ => false,
        }
    }

    /// Adds a write part to `slot` (request `seq`) for each of `ops`, numbered after its parts so
    /// far, and sends them at once: the second stage of a request whose first stage just
    /// answered (sent before that part counts as done, so nothing held behind the request slips
    /// in between the stages).
    pub(super) fn send_further_parts(
        &self,
        seq: u64,
        slot: &mut Slot,
        ops: Vec<(ShardId, ShardOp)>,
        write_target: WriteTarget,
    ) {
        let first_part = slot.parts.len();
        let requests: Vec<ShardRequest> = ops
            .into_iter()
            .enumerate()
            .map(|(i, (shard, op))| self.shard_request(seq, first_part + i, shard, op))
            .collect();
        if requests.is_empty() {
            return;
        }
        slot.parts.extend(requests.iter().map(|_| None));
        slot.missing += requests.len();
        self.send_now(Held { requests, write_target: Some(write_target) });
    }

    pub(super) fn send_now(&self, held: Held) {
        if let Some(target) = held.write_target {
            self.write_target.set(Some(target));
            self.write_parts_in_flight.set(self.write_parts_in_flight.get() + held.requests.len());
        }
        let ordered_after_other_groups = held.write_target.is_some() && self.core.is_clustered();
        for mut request in held.requests {
            if ordered_after_other_groups && matches!(request.op, ShardOp::Write(_)) {
                // The session's earlier writes were answered, so they are among these, and so is
                // whatever its reads saw.
                request.dependencies = self.core.applied_in_other_groups(request.shard);
                self.stamp_connection(&mut request);
            }
            self.core.send_to_shard(request);
        }
    }

    /// A client's write in a cluster names this connection's epoch in its shard, so it fails
    /// with SESSIONMOVED if it applies after its session moved to a newer connection: a write
    /// can linger in a forward queue while its client reattaches elsewhere
    /// (`Command::OfConnection`).
    fn stamp_connection(&self, request: &mut ShardRequest) {
        let ShardOp::Write(command) = &mut request.op else { return };
        let placeholder = Command::Reap { path: String::new() };
        match ClientWrite::of(std::mem::replace(command, placeholder)) {
            Ok(write) => {
                let epoch = self.connection_epochs.borrow()[request.shard as usize];
                *command = Command::OfConnection { session: self.session.get(), epoch, write };
            }
            Err(other) => *command = other,
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
        if self.cut_off.get() {
            return;
        }
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
            *part = Some(reply.body);
            let slot = &mut slots[index as usize];
            slot.missing -= 1;
            if let Some(gathered) = slot.gathered.as_mut() {
                gathered.stamps[reply.part as usize] = reply.stamp;
                self.check_cut(reply.seq, slot);
            }
            if let (Kind::Txn(_), 0) = (&slot.kind, slot.missing) {
                // Before this write part counts as done, as for the stages of setACL("/").
                self.txn_step(reply.seq, slot);
            }
            if let Kind::RootAcl { .. } = slot.kind {
                // Sent before this write part counts as done, so no write held behind it slips
                // in between the two stages.
                self.copy_root_acl(reply.seq, slot);
            }
            if let Kind::OpenSession { .. } = slot.kind {
                self.open_in_other_shards(reply.seq, slot);
            }
            if let Kind::Reattach { .. } = slot.kind {
                self.move_session_here(reply.seq, slot);
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

    /// Answers a read of one path in a shard of this core at once, without a message to the
    /// shard and back, when that changes nothing a client can tell: no earlier request of this
    /// connection is unanswered (its reply would leave first anyway) and the core has nothing
    /// queued for itself that the reply could overtake (an event, watermark news, anything
    /// queued before this connection came; see `Core::read_inline`). Returns false when the
    /// read must take the queued path.
    pub(super) fn answer_inline(&self, xid: i32, opcode: i32, shard: ShardId, op: &ReadOp) -> bool {
        if !self.slots.borrow().is_empty() || !self.held.borrow().is_empty() {
            return false;
        }
        let auth = self.auth.borrow();
        let caller = Caller { session: self.session.get(), conn: self.id, auth: &auth };
        let Some(result) = self.core.read_inline(shard, caller, self.born_at_self_queue, op) else { return false };
        drop(auth);
        let mut slot = Slot::new(xid, Kind::Op(opcode), 1);
        slot.parts[0] = Some(ReplyBody::Read(result));
        slot.missing = 0;
        let seq = self.push_slot(slot);
        if let Some(last) = self.last_reply_seq.borrow_mut().get_mut(shard as usize) {
            *last = Some(seq);
        }
        bump(&self.core.reads_inline, 1);
        self.pump();
        true
    }

    /// Part `part` of the request in slot `seq`, for `shard`, as this connection's session.
    pub(super) fn shard_request(&self, seq: u64, part: usize, shard: ShardId, op: ShardOp) -> ShardRequest {
        let (conn, session, auth) = (self.id, self.session.get(), self.caller_auth());
        ShardRequest { shard, conn, seq, part: part as u32, session, auth, op, dependencies: Vec::new() }
    }

    /// Sends the parts of a read gathered from every shard; returns the slot's seq.
    pub(super) fn submit_gathered(&self, xid: i32, kind: Kind, ops: Vec<(ShardId, ReadOp)>) -> u64 {
        let shard_ops = ops
            .iter()
            .map(|(shard, op)| (*shard, ShardOp::GatheredRead { op: op.clone(), valid_through_at_least: 0 }))
            .collect();
        let stamps = vec![None; ops.len()];
        let seq = self.submit(xid, kind, shard_ops);
        let index = (seq - self.base_seq.get()) as usize;
        if let Some(slot) = self.slots.borrow_mut().get_mut(index) {
            slot.gathered = Some(Gathered { ops, stamps, rounds: 0 });
        }
        seq
    }

    /// Once every part of a gathered read is in: if they do not share a moment, the lagging
    /// parts are asked again for a moment at least as late as the others' (`cut::check_cut`).
    fn check_cut(&self, seq: u64, slot: &mut Slot) {
        let Some(gathered) = slot.gathered.as_mut().filter(|_| slot.missing == 0) else { return };
        let stamps: Vec<PartStamp> =
            gathered.stamps.iter().map(|s| s.expect("every part of a gathered read is stamped")).collect();
        let Err(retry) = check_cut(&stamps) else { return };
        gathered.rounds += 1;
        if gathered.rounds > CUT_ROUNDS_MAX {
            bump(&self.core.gathered_read_timeouts, 1);
            tracing::warn!(conn = self.id, rounds = gathered.rounds, "no consistent cut for a read of every shard");
            slot.kind = Kind::Ready { err: ZkError::OperationTimeout.code(), response: Response::Empty };
            return;
        }
        bump(&self.core.gathered_read_retries, retry.parts.len() as u64);
        for part in retry.parts {
            slot.parts[part] = None;
            gathered.stamps[part] = None;
            slot.missing += 1;
            let (shard, op) = gathered.ops[part].clone();
            let op = ShardOp::GatheredRead { op, valid_through_at_least: retry.valid_through_at_least };
            self.core.send_to_shard(self.shard_request(seq, part, shard, op));
        }
    }

    /// Encodes complete slots at the head of the queue into the output buffer.
    pub(super) fn pump(&self) {
        let mut wrote = false;
        loop {
            if self.cut_off.get() {
                break;
            }
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
            self.finish(&mut slot, held_floor);
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

    /// Encodes the reply of a complete slot into the output buffer.
    fn finish(&self, slot: &mut Slot, held_floor: Option<Zxid>) {
        let zxid = self.reply_zxid(held_floor);
        self.last_zxid.set(zxid);
        let kind = std::mem::replace(&mut slot.kind, Kind::Done);
        let (err, response) = match kind {
            Kind::Connect { session, passwd, .. } => {
                let (frame, close) = self.finish_connect(session, passwd, &slot.parts);
                slot.close_after = close;
                self.out.borrow_mut().extend_from_slice(&frame);
                return;
            }
            Kind::CloseSession => {
                slot.close_after = true;
                let closed_everywhere = slot.parts.iter().all(|p| matches!(p, Some(ReplyBody::Write(Ok(_)))));
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
                Err(ZkError::SessionMoved) => {
                    // As ZooKeeper: a connection-level error, the client is not answered but
                    // disconnected, and learns where its session is by reconnecting.
                    tracing::info!(
                        conn = self.id,
                        session = format!("{:#x}", self.session.get()),
                        "a write of a connection its session left; closing"
                    );
                    self.cut_off.set(true);
                    self.close("session moved");
                    return;
                }
                Err(e) => (e.code(), Response::Empty),
            },
        };
        // Straight into the output: no frame of its own to grow and copy.
        jute::encode_reply(&mut self.out.borrow_mut(), &ReplyHeader { xid: slot.xid, zxid, err }, &response);
    }
}

/// Where the write parts of a request go, if it writes.
fn write_target_of(ops: &[(ShardId, ShardOp)]) -> Option<WriteTarget> {
    if !ops.iter().any(|(_, op)| matches!(op, ShardOp::Write(_))) {
        return None;
    }
    let alone = |op: &ShardOp| {
        matches!(op, ShardOp::Write(Command::MultiAcross { .. } | Command::TxnPrepare(_)) | ShardOp::AwaitTxn(_))
    };
    if ops.iter().any(|(_, op)| alone(op)) {
        return Some(WriteTarget::Alone);
    }
    match ops {
        [(shard, _)] => Some(WriteTarget::Shard(*shard)),
        _ => Some(WriteTarget::Many),
    }
}

fn bump(counter: &std::cell::Cell<u64>, by: u64) {
    counter.set(counter.get() + by);
}
