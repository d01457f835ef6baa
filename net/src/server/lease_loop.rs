//! A core's side of the leases (`lease.rs` says what they are and why they hold): the loop that
//! probes the group's leader, the leader's answers, the confirmations, the sessions' lapsed
//! leases and the serving gate, as methods of `Core`.

use super::core::Core;
use super::driver::LeaseRound;
use super::lease::{Probe, LEASE_FRACTION, LEASE_PROBE_INTERVAL};
use super::msg::{core_of_conn, Msg, ReplyBody, ShardRequest};
use crate::peer::PeerMessage;
use engine::raft::NodeId;
use engine::types::SessionId;
use std::rc::Rc;
use std::time::{Duration, Instant};

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
                sessions.extend(self.renewals.borrow().sessions());
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
        let answered = self.renewals.borrow_mut().answered(probe.sent_at, &renewed.unwrap_or_default());
        for request in answered {
            self.reply(&request, ReplyBody::Renewed(probe.sent_at));
        }
    }

    /// A reattach in a cluster: answered once a probe carrying the session is confirmed.
    pub(super) fn renew_session(&self, request: ShardRequest) {
        if !self.is_clustered() {
            return self.reply(&request, ReplyBody::Renewed(Instant::now()));
        }
        let now = Instant::now();
        let session = request.session;
        self.renewals.borrow_mut().push(request, session, now);
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
        let given_up = self.renewals.borrow_mut().given_up(now);
        for request in given_up {
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
