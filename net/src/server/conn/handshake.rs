//! The session handshake of a connection: opening a new session in every shard or checking a
//! reconnect's session and password, and the ConnectResponse (granted, or refused and closed).

use super::slots::{Kind, Slot, WriteTarget};
use super::Conn;
use crate::jute::{self, ConnectRequest, ConnectResponse};
use crate::server::msg::*;
use engine::command::{Command, ShardId};
use engine::request::WriteResult;
use engine::types::SessionId;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Handshake {
    Pending,
    Granted,
    Refused,
}

impl Conn {
    /// True until the session handshake is answered: like ZooKeeper, the server reads no
    /// request of a connection whose session is not yet validated.
    pub fn awaiting_handshake(&self) -> bool {
        self.handshake.get() == Handshake::Pending
    }

    /// Starts the session handshake: a new session is opened in shard 0, then (once shard 0
    /// has it) in every other shard; a reconnect is checked against the session table.
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
            // Shard 0 decides: the other shards' creates go out once it has the session
            // (`open_in_other_shards`), each depending on shard 0's create, so no shard holds a
            // session shard 0 never opened, and one that shard 0 no longer holds is closed.
            let command = Command::CreateSession { session, timeout_ms, passwd: passwd.clone() };
            let kind = match self.shard_count() {
                1 => Kind::Connect { session, passwd },
                _ => Kind::OpenSession { session, passwd, timeout_ms },
            };
            self.submit(0, kind, vec![(0, ShardOp::Write(command))]);
        } else {
            self.session.set(request.session_id);
            let check = ShardOp::CheckSession { passwd: request.passwd.clone() };
            let (session, passwd) = (request.session_id, request.passwd.clone());
            let kind = match self.core.is_clustered() {
                true => Kind::Reattach { session, passwd },
                false => Kind::Connect { session, passwd },
            };
            let mut ops = Vec::new();
            if self.core.is_clustered() {
                // Never older state after switching server: before the session is served here,
                // this node applies everything every group committed before the reconnect (a
                // sync through each group's log), so all the client saw elsewhere, and more.
                // The syncs go first: the check, a read of shard 0 by the same session, then
                // waits for shard 0's sync, so a session opened through another node moments
                // ago is known here when it is checked.
                let groups = self.core.cores().min(self.shard_count() as usize);
                ops.extend((0..groups).map(|shard| (shard as ShardId, ShardOp::Sync)));
            }
            ops.push((0, check));
            if self.core.is_clustered() {
                // Renewed at the session group's leader before the client is told it is
                // connected, so it cannot expire right after a successful reconnect.
                ops.push((0, ShardOp::RenewSession));
            }
            self.submit(0, kind, ops);
        }
    }

    pub(super) fn finish_connect(
        &self,
        session: SessionId,
        passwd: Vec<u8>,
        parts: &[Option<ReplyBody>],
    ) -> (Vec<u8>, bool) {
        let granted = parts.iter().all(answered_well);
        let stored_timeout = parts.iter().find_map(|part| match part {
            Some(ReplyBody::Session(Some(timeout))) => Some(*timeout),
            _ => None,
        });
        let renewed_at = parts.iter().find_map(|part| match part {
            Some(ReplyBody::Renewed(at)) => Some(*at),
            _ => None,
        });
        if let (true, Some(timeout_ms), Some(at)) = (granted, stored_timeout, renewed_at) {
            // The syncs of the handshake took long after the renewal: the lease it gave may
            // have lapsed, so the client is not told it is connected (ConnectionLoss; it tries
            // again) rather than connected to a session the majority may have expired.
            let lease = std::time::Duration::from_millis(timeout_ms.max(0) as u64)
                .mul_f64(crate::server::lease::LEASE_FRACTION);
            if at.elapsed() > lease {
                tracing::info!(
                    session = format!("{session:#x}"),
                    "reattach took longer than its renewed lease; closing"
                );
                self.handshake.set(Handshake::Refused);
                return (Vec::new(), true);
            }
        }
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
        self.adopt_moved_epochs(parts);
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
}

impl Conn {
    /// A reconnect in a cluster, once its syncs, check and renewal are all answered: the
    /// session moves to this connection in every shard at once (each shard's epoch for it goes
    /// up by one; this connection's writes to that shard carry the new one). Only then is the
    /// client told it is connected, so no write its session's earlier connections still have
    /// in flight applies after that anywhere (`Command::OfConnection`).
    pub(super) fn move_session_here(&self, seq: u64, slot: &mut Slot) {
        if slot.missing > 0 {
            return;
        }
        let Kind::Reattach { session, passwd } = std::mem::replace(&mut slot.kind, Kind::Done) else {
            unreachable!("called for Reattach slots")
        };
        slot.kind = Kind::Connect { session, passwd };
        if !slot.parts.iter().all(answered_well) {
            return;
        }
        let moves =
            (0..self.shard_count()).map(|shard| (shard, ShardOp::Write(Command::MoveSession { session }))).collect();
        let write_target = match self.shard_count() {
            1 => WriteTarget::Shard(0),
            _ => WriteTarget::Many,
        };
        self.send_further_parts(seq, slot, moves, write_target);
    }

    /// A granted reconnect's moves (its last parts, one per shard): each shard's epoch is what
    /// this connection's writes to it carry from now on.
    fn adopt_moved_epochs(&self, parts: &[Option<ReplyBody>]) {
        let shards = self.shard_count() as usize;
        let moves = &parts[parts.len().saturating_sub(shards)..];
        let mut epochs = self.connection_epochs.borrow_mut();
        for (shard, part) in moves.iter().enumerate() {
            if let Some(ReplyBody::Write(Ok(WriteResult::Moved(epoch)))) = part {
                epochs[shard] = *epoch;
            }
        }
    }
}

/// A handshake part that lets the session be served here.
fn answered_well(part: &Option<ReplyBody>) -> bool {
    matches!(
        part,
        Some(ReplyBody::Write(Ok(_)))
            | Some(ReplyBody::Session(Some(_)))
            | Some(ReplyBody::Synced)
            | Some(ReplyBody::Renewed(_))
    )
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
    /// Shard 0 answered a new session's create: the slot becomes the handshake's `Connect`, and
    /// if shard 0 opened the session, the other shards' creates go out as its further parts
    /// (sent before this write part counts as done, so nothing held behind it slips in between).
    pub(super) fn open_in_other_shards(&self, seq: u64, slot: &mut Slot) {
        let Kind::OpenSession { session, passwd, timeout_ms } = std::mem::replace(&mut slot.kind, Kind::Done) else {
            unreachable!("called for OpenSession slots")
        };
        slot.kind = Kind::Connect { session, passwd: passwd.clone() };
        if !matches!(slot.parts[0], Some(ReplyBody::Write(Ok(_)))) {
            return;
        }
        let creates = (1..self.shard_count())
            .map(|shard| {
                (shard, ShardOp::Write(Command::CreateSession { session, timeout_ms, passwd: passwd.clone() }))
            })
            .collect();
        self.send_further_parts(seq, slot, creates, WriteTarget::Many);
    }
}
