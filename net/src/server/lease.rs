//! Leases: how a node of a cluster knows it is still in touch with the majority, so that a
//! node cut off from it (both ways, one way, or paused) stops telling its clients that they
//! are connected, and a lock holder learns it may have lost its lock *before* the majority
//! can expire its session and let another client take the lock.
//!
//! Every `LEASE_PROBE_INTERVAL` each core of a cluster node probes the current leader of its
//! group: a follower sends `PeerMessage::Touch` (core 0 with the sessions that showed signs
//! of life since its last probe; the session group's leader renews them), the leader itself
//! asks its own Raft group. The leader answers (`PeerMessage::Touched`, or for its own probe
//! directly) only once a ReadIndex round it started after the probe arrived has confirmed that
//! a majority still follows it. So an answered probe sent at time T proves: a leader that the
//! majority followed after T heard from this node after T. The leader's session clock was then
//! renewed at or after T, and any later leader was elected after T and gives every session a
//! full timeout from its election (`Core::on_leadership`). Hence the two rules:
//!
//! - **Sessions** (core 0, `SessionTracker::confirm`): a session's lease is the send time of the
//!   newest answered probe that carried it. The session group's leader cannot expire it before
//!   `lease + timeout`. A node closes the connection of a session whose lease is older than
//!   `LEASE_FRACTION` of its timeout (checked every `LEASE_PROBE_INTERVAL`), so the client
//!   is told (ConnectionLoss; Curator and kazoo then suspend their locks) at least
//!   `(1 - LEASE_FRACTION) · timeout - LEASE_PROBE_INTERVAL` before the session can expire. A
//!   reattach is answered only after a probe carrying the session was answered
//!   (`ShardOp::RenewSession`), so the session is renewed at the leader first.
//! - **Serving** (every core, `GroupLeaders::out_of_contact`): a node whose last answered probe
//!   of some group is older than `leader-contact-timeout-ms` closes every client connection
//!   and refuses handshakes until it is back, so reads through a node cut off from the
//!   majority are at most that stale (ZooKeeper's followers stop serving when they lose their
//!   leader).
//!
//! The clocks are the nodes' monotonic clocks: wall-clock jumps change nothing; the argument
//! assumes their rates agree (as every lease does).

use super::core::Core;
use super::driver::LeaseRound;
use super::msg::{core_of_conn, Msg, ReplyBody, ShardRequest};
use crate::peer::PeerMessage;
use engine::raft::NodeId;
use engine::types::SessionId;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How often each core probes its group's leader.
pub const LEASE_PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// A session's connection is closed once its lease is older than this fraction of its
/// timeout. Clients ping at a third of the timeout (Java, kazoo) or more often, so a live
/// client's lease is at most a third plus a probe interval old.
pub const LEASE_FRACTION: f64 = 0.5;
/// Probes not answered within this long are forgotten (lost, or sent to a former leader).
const PROBE_FORGET: Duration = Duration::from_secs(5);
/// A reattach whose renewal is not confirmed within this long fails (ConnectionLoss: the
/// client tries again, maybe elsewhere).
pub const RENEW_GIVE_UP: Duration = Duration::from_secs(2);

/// The first group whose newest contact with a confirmed leader (`contacts`, by group) is
/// older than `bound`, or never came: a node of a cluster serves clients only while there is
/// none.
pub fn first_out_of_contact(
    contacts: impl IntoIterator<Item = Option<Instant>>,
    now: Instant,
    bound: Duration,
) -> Option<usize> {
    contacts.into_iter().position(|contact| contact.is_none_or(|at| now.saturating_duration_since(at) > bound))
}

/// One probe sent and not answered yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub token: u64,
    pub sent_at: Instant,
    pub sessions: Vec<SessionId>,
}

/// The probes of one core waiting for their answer.
#[derive(Default)]
pub struct Probes {
    sent: VecDeque<Probe>,
}

impl Probes {
    pub fn sent(&mut self, probe: Probe) {
        while self.sent.front().is_some_and(|p| probe.sent_at.saturating_duration_since(p.sent_at) > PROBE_FORGET) {
            self.sent.pop_front();
        }
        self.sent.push_back(probe);
    }

    /// The probe `token` answers, if it is still waiting (each is answered at most once).
    pub fn answered(&mut self, token: u64) -> Option<Probe> {
        let at = self.sent.iter().position(|p| p.token == token)?;
        self.sent.remove(at)
    }
}

/// A reattach waiting for the session group's leader to renew its session.
pub struct Renewal {
    pub request: ShardRequest,
    pub since: Instant,
}

impl Core {
    /// Every core of a cluster node: probes its group's leader, closes the connections of
    /// sessions whose lease lapsed (core 0) and stops serving when out of contact.
    pub async fn lease_loop(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(LEASE_PROBE_INTERVAL).await;
            let now = Instant::now();
            self.probe_leader(now, None);
            if self.sessions.is_some() {
                self.close_lapsed_sessions(now);
            }
            self.serve_only_in_contact(now);
        }
    }

    /// `only`: an urgent probe for one reattach, carrying that session alone; otherwise every
    /// session to renew and every reattach still waiting.
    fn probe_leader(&self, now: Instant, only: Option<SessionId>) {
        let urgent = only.is_some();
        let me = NodeId::from(self.config.node_id);
        let Some(leader) = self.group_leaders.leader(self.id) else { return };
        let sessions = match only {
            Some(session) => vec![session],
            None => {
                let mut sessions = self.with_tracker_if_any(|t| t.to_renew()).unwrap_or_default();
                sessions.extend(self.renewals.borrow().iter().map(|r| r.request.session));
                sessions.sort_unstable();
                sessions.dedup();
                sessions
            }
        };
        let token = self.new_token();
        if leader == me {
            if !self.commit.leading() {
                return;
            }
            // This node's own session clock: renewed now, confirmed by the round.
            let unknown = self.renew_as_leader(&sessions, now);
            self.commit.ask_lease(LeaseRound { asker: None, token, unknown, urgent });
        } else {
            let Some(transport) = &self.transport else { return };
            transport.send(leader, PeerMessage::Touch { token, sessions: sessions.clone(), urgent });
        }
        self.lease_probes.borrow_mut().sent(Probe { token, sent_at: now, sessions });
    }

    /// The leader of this core's group: a follower's probe. Its sessions are renewed now and
    /// the answer waits for the next ReadIndex round to confirm the leadership.
    pub(super) fn on_lease_probe(&self, from: NodeId, token: u64, sessions: &[SessionId], urgent: bool) {
        // A follower that cannot catch up (it needs a snapshot) must not serve its old state.
        if !self.commit.leading() || self.commit.needs_snapshot(from) {
            return;
        }
        let unknown = self.renew_as_leader(sessions, Instant::now());
        self.commit.ask_lease(LeaseRound { asker: Some(from), token, unknown, urgent });
    }

    /// The session group's leader renews `sessions` in its tracker as of `now` and returns
    /// those it does not track (nothing to do on the other cores).
    fn renew_as_leader(&self, sessions: &[SessionId], now: Instant) -> Vec<SessionId> {
        if sessions.is_empty() {
            return Vec::new();
        }
        self.with_tracker_if_any(|t| t.renew_for_probe(sessions, now)).unwrap_or_default()
    }

    /// A confirmed leader of this core's group answered probe `token`: contact as of its send
    /// time, and on core 0 the leases of its sessions.
    pub(super) fn on_lease_confirmed(&self, token: u64, unknown: &[SessionId]) {
        let Some(probe) = self.lease_probes.borrow_mut().answered(token) else { return };
        self.group_leaders.set_contact(self.id, probe.sent_at);
        if self.sessions.is_none() {
            return;
        }
        // `unknown`: not renewed (the leader does not track them: expired, closed, or created
        // too recently for it to have applied the create). Their leases are not confirmed, so
        // their connections close once the lease lapses, or when their close applies here;
        // their reattaches keep waiting (and fail with ConnectionLoss after RENEW_GIVE_UP).
        let renewed = self.with_tracker_if_any(|t| t.confirm_probe(&probe.sessions, unknown, probe.sent_at));
        let renewed: ahash::AHashSet<SessionId> = renewed.unwrap_or_default().into_iter().collect();
        let answered: Vec<Renewal> = {
            let mut renewals = self.renewals.borrow_mut();
            let (answered, waiting) = std::mem::take(&mut *renewals)
                .into_iter()
                .partition(|r| r.since <= probe.sent_at && renewed.contains(&r.request.session));
            *renewals = waiting;
            answered
        };
        for renewal in answered {
            self.reply(&renewal.request, ReplyBody::Renewed(probe.sent_at));
        }
    }

    /// A reattach in a cluster: answered once a probe carrying the session is confirmed.
    pub(super) fn renew_session(&self, request: ShardRequest) {
        if !self.is_clustered() {
            return self.reply(&request, ReplyBody::Renewed(Instant::now()));
        }
        let now = Instant::now();
        let session = request.session;
        self.renewals.borrow_mut().push(Renewal { request, since: now });
        // The client waits for this renewal: probe now, not at the next interval.
        self.probe_leader(now, Some(session));
    }

    fn close_lapsed_sessions(&self, now: Instant) {
        let lapsed = self.with_tracker_if_any(|t| t.lapsed_leases(now, LEASE_FRACTION)).unwrap_or_default();
        for (session, conn) in lapsed {
            tracing::info!(
                session = format!("{session:#x}"),
                "the session group's leader did not renew this session's lease in time; closing its connection \
                 before the session could expire"
            );
            self.session_leases_lapsed.set(self.session_leases_lapsed.get() + 1);
            self.send(core_of_conn(conn), Msg::CloseConn { conn, reason: "session lease not renewed" });
        }
        let given_up: Vec<Renewal> = {
            let mut renewals = self.renewals.borrow_mut();
            let (given_up, waiting) =
                std::mem::take(&mut *renewals).into_iter().partition(|r| now.duration_since(r.since) > RENEW_GIVE_UP);
            *renewals = waiting;
            given_up
        };
        for Renewal { request, .. } in given_up {
            let conn = request.conn;
            self.send(core_of_conn(conn), Msg::CloseConn { conn, reason: "session not renewed by the leader" });
        }
    }

    /// Out of contact with a leader of some group for longer than `leader-contact-timeout-ms`:
    /// every client connection of this core is closed (new ones are refused at their
    /// handshake, `serve_connection`) until contact is back.
    fn serve_only_in_contact(&self, now: Instant) {
        match (self.out_of_contact(now), self.serving.get()) {
            (Some(group), _) => {
                if self.serving.replace(false) {
                    tracing::warn!(
                        core = self.id,
                        group,
                        bound_ms = self.config.leader_contact_timeout_ms,
                        "not serving: no contact with a current leader of a group; closing client connections"
                    );
                }
                let conns: Vec<_> = self.conns.borrow().values().cloned().collect();
                for conn in conns {
                    conn.close("not serving: no contact with a current leader");
                }
            }
            (None, false) => {
                tracing::info!(core = self.id, "serving: in contact with a current leader of every group");
                self.serving.set(true);
            }
            (None, true) => {}
        }
    }

    /// The first group this node has been out of contact with for too long (None: it serves).
    pub fn out_of_contact(&self, now: Instant) -> Option<usize> {
        let bound = Duration::from_millis(self.config.leader_contact_timeout_ms);
        self.group_leaders.out_of_contact(now, bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(token: u64, sent_at: Instant) -> Probe {
        Probe { token, sent_at, sessions: vec![token as SessionId] }
    }

    #[test]
    fn a_probe_is_answered_once_and_old_ones_are_forgotten() {
        let start = Instant::now();
        let mut probes = Probes::default();
        probes.sent(probe(1, start));
        probes.sent(probe(2, start + Duration::from_millis(100)));
        assert_eq!(probes.answered(2), Some(probe(2, start + Duration::from_millis(100))));
        assert_eq!(probes.answered(2), None, "a duplicated answer confirms nothing twice");
        assert_eq!(probes.answered(9), None, "an answer to a probe never sent");
        probes.sent(probe(3, start + PROBE_FORGET + Duration::from_millis(1)));
        assert_eq!(probes.answered(1), None, "forgotten");
        assert!(probes.answered(3).is_some(), "the newest stays");
    }
}
