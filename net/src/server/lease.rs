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

use engine::types::SessionId;
use std::collections::VecDeque;
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

/// Reattaches waiting for the session group's leader to renew their session (`R`: the
/// reattach's request), each with its session and when it asked.
pub struct Renewals<R> {
    waiting: Vec<(R, SessionId, Instant)>,
}

impl<R> Default for Renewals<R> {
    fn default() -> Self {
        Renewals { waiting: Vec::new() }
    }
}

impl<R> Renewals<R> {
    pub fn push(&mut self, request: R, session: SessionId, since: Instant) {
        self.waiting.push((request, session, since));
    }

    /// The sessions waiting: every probe carries them until they are renewed.
    pub fn sessions(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.waiting.iter().map(|(_, session, _)| *session)
    }

    /// A probe sent at `sent_at` renewed `renewed`: the reattaches of those sessions that asked
    /// at or before then are answered (the lease holds from `sent_at`).
    pub fn answered(&mut self, sent_at: Instant, renewed: &[SessionId]) -> Vec<R> {
        if self.waiting.is_empty() {
            return Vec::new();
        }
        let renewed: ahash::AHashSet<SessionId> = renewed.iter().copied().collect();
        let (answered, waiting) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(_, session, since)| *since <= sent_at && renewed.contains(session));
        self.waiting = waiting;
        answered.into_iter().map(|(request, _, _)| request).collect()
    }

    /// The reattaches that waited longer than `RENEW_GIVE_UP`: they fail (ConnectionLoss).
    pub fn given_up(&mut self, now: Instant) -> Vec<R> {
        let (given_up, waiting) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(_, _, since)| now.saturating_duration_since(*since) > RENEW_GIVE_UP);
        self.waiting = waiting;
        given_up.into_iter().map(|(request, _, _)| request).collect()
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
