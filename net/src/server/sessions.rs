//! The session tracker of the session core (core 0): when each session was last heard of,
//! which connection it is attached to, which sessions ran out of time and, in a cluster, until
//! when the session group's leader is known to keep each session alive (its lease, see
//! `lease.rs`).

use ahash::AHashMap;
use engine::types::{ConnId, SessionId};
use std::time::{Duration, Instant};

struct Tracked {
    timeout: Duration,
    deadline: Instant,
    owner: Option<ConnId>,
    /// When the session last showed a sign of life here (a request on its connection, a
    /// reattach, its creation).
    touched: Instant,
    /// A time at or before which the session group's leader last heard of the session, as
    /// confirmed by that leader (a cluster; `lease.rs`): the leader expires it no earlier than
    /// `confirmed + timeout`.
    confirmed: Instant,
}

#[derive(Default)]
pub struct SessionTracker {
    sessions: AHashMap<SessionId, Tracked>,
}

impl SessionTracker {
    pub fn new() -> SessionTracker {
        SessionTracker::default()
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Starts tracking a new session (or one recovered from the log, `conn` = INTERNAL_CONN),
    /// attached to `conn`. A recovered session that is already tracked is left alone.
    pub fn create(&mut self, session: SessionId, timeout_ms: i32, conn: ConnId, now: Instant) {
        let owner = (conn != super::msg::INTERNAL_CONN).then_some(conn);
        if owner.is_none() && self.sessions.contains_key(&session) {
            return;
        }
        let timeout = Duration::from_millis(timeout_ms.max(0) as u64);
        // A new session is tracked at its handshake, before its create is proposed: the leader
        // starts its clock no earlier than the create applies there.
        self.sessions
            .insert(session, Tracked { timeout, deadline: now + timeout, owner, touched: now, confirmed: now });
    }

    /// Re-attaches a tracked session to a new connection and returns the connection it had.
    /// None if the session is no longer tracked (it expired or was closed): the caller must
    /// not let the client use it.
    pub fn reattach(&mut self, session: SessionId, conn: ConnId, now: Instant) -> Option<Option<ConnId>> {
        let tracked = self.sessions.get_mut(&session)?;
        tracked.deadline = now + tracked.timeout;
        tracked.touched = now;
        Some(tracked.owner.replace(conn))
    }

    pub fn contains(&self, session: SessionId) -> bool {
        self.sessions.contains_key(&session)
    }

    pub fn touch(&mut self, sessions: &[SessionId], now: Instant) {
        for session in sessions {
            if let Some(tracked) = self.sessions.get_mut(session) {
                tracked.deadline = now + tracked.timeout;
                tracked.touched = now;
            }
        }
    }

    /// The sessions attached to a connection here that showed signs of life since their lease
    /// was last confirmed: the next lease probe carries them to the session group's leader
    /// (again, if an earlier probe was lost).
    pub fn to_renew(&self) -> Vec<SessionId> {
        let mut sessions: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, t)| t.owner.is_some() && t.touched > t.confirmed)
            .map(|(id, _)| *id)
            .collect();
        sessions.sort_unstable();
        sessions
    }

    /// Connection `conn` of `session` ended: the session has no connection here any more
    /// (unless it already moved to another one).
    pub fn detach_conn(&mut self, session: SessionId, conn: ConnId) {
        if let Some(tracked) = self.sessions.get_mut(&session) {
            if tracked.owner == Some(conn) {
                tracked.owner = None;
            }
        }
    }

    /// The session group's leader confirmed it heard of these sessions at `at` or later.
    pub fn confirm(&mut self, sessions: &[SessionId], at: Instant) {
        for session in sessions {
            if let Some(tracked) = self.sessions.get_mut(session) {
                tracked.confirmed = tracked.confirmed.max(at);
            }
        }
    }

    /// The sessions among `sessions` that are not tracked (expired or closed).
    pub fn unknown(&self, sessions: &[SessionId]) -> Vec<SessionId> {
        sessions.iter().copied().filter(|session| !self.sessions.contains_key(session)).collect()
    }

    /// The sessions attached to a connection here whose lease was last confirmed more than
    /// `fraction` of their timeout before `now`: they are detached (their connections must be
    /// closed before the leader can expire them) and returned with their connection.
    pub fn lapsed_leases(&mut self, now: Instant, fraction: f64) -> Vec<(SessionId, ConnId)> {
        let mut lapsed = Vec::new();
        for (session, tracked) in self.sessions.iter_mut() {
            let Some(conn) = tracked.owner else { continue };
            if now.saturating_duration_since(tracked.confirmed) > tracked.timeout.mul_f64(fraction) {
                tracked.owner = None;
                lapsed.push((*session, conn));
            }
        }
        lapsed
    }

    /// Gives every session a full timeout from `now` (a new owner of the sessions).
    pub fn rearm_all(&mut self, now: Instant) {
        for tracked in self.sessions.values_mut() {
            tracked.deadline = now + tracked.timeout;
        }
    }

    /// Forgets a session; returns the connection it was attached to here, if it was tracked.
    pub fn remove(&mut self, session: SessionId) -> Option<Option<ConnId>> {
        self.sessions.remove(&session).map(|t| t.owner)
    }

    /// Removes and returns the sessions whose deadline passed, with their connection.
    pub fn expire(&mut self, now: Instant) -> Vec<(SessionId, Option<ConnId>)> {
        let expired: Vec<SessionId> =
            self.sessions.iter().filter(|(_, t)| t.deadline <= now).map(|(id, _)| *id).collect();
        expired.into_iter().map(|id| (id, self.sessions.remove(&id).and_then(|t| t.owner))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::msg::INTERNAL_CONN;
    use super::*;

    #[test]
    fn sessions_expire_after_their_timeout_unless_touched() {
        let start = Instant::now();
        let mut tracker = SessionTracker::new();
        tracker.create(1, 1000, 7, start);
        tracker.create(2, 3000, 8, start);
        assert!(tracker.expire(start + Duration::from_millis(999)).is_empty());
        tracker.touch(&[1], start + Duration::from_millis(900));
        assert!(tracker.expire(start + Duration::from_millis(1500)).is_empty());
        assert_eq!(tracker.expire(start + Duration::from_millis(1900)), vec![(1, Some(7))]);
        assert_eq!(tracker.reattach(2, 9, start), Some(Some(8)), "reattach reports the old connection");
        assert_eq!(tracker.reattach(1, 9, start), None, "an expired session cannot come back");
        tracker.create(2, 5000, INTERNAL_CONN, start);
        assert_eq!(tracker.reattach(2, 10, start), Some(Some(9)), "log recovery does not replace a live owner");
        assert_eq!(tracker.len(), 1);
    }

    #[test]
    fn a_lease_lapses_at_its_fraction_of_the_timeout_unless_confirmed() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let mut tracker = SessionTracker::new();
        tracker.create(1, 1000, 7, start);
        tracker.create(2, 1000, INTERNAL_CONN, start);
        assert!(tracker.lapsed_leases(start + ms(500), 0.5).is_empty(), "exactly half is not past it");
        tracker.confirm(&[1], start + ms(400));
        tracker.confirm(&[1], start + ms(100));
        assert!(tracker.lapsed_leases(start + ms(900), 0.5).is_empty(), "confirmations never go back");
        assert_eq!(tracker.lapsed_leases(start + ms(901), 0.5), vec![(1, 7)], "session 2 has no connection here");
        assert!(tracker.lapsed_leases(start + ms(5000), 0.5).is_empty(), "a lapsed session is detached once");
        assert!(tracker.contains(1), "a lapsed lease closes the connection, not the session");
        assert_eq!(tracker.unknown(&[1, 2, 3]), vec![3]);
    }

    #[test]
    fn sessions_touched_since_their_lease_was_confirmed_are_renewed_until_it_is() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let mut tracker = SessionTracker::new();
        tracker.create(1, 1000, 7, start);
        tracker.create(2, 1000, 8, start);
        tracker.create(3, 1000, INTERNAL_CONN, start);
        assert!(tracker.to_renew().is_empty(), "a new session's lease starts at its creation");
        tracker.touch(&[1, 2, 3], start + ms(10));
        assert_eq!(tracker.to_renew(), vec![1, 2], "only sessions with a connection here");
        tracker.confirm(&[1], start + ms(5));
        assert_eq!(tracker.to_renew(), vec![1, 2], "a probe sent before the touch does not cover it");
        tracker.confirm(&[1], start + ms(20));
        assert_eq!(tracker.to_renew(), vec![2]);
        tracker.detach_conn(2, 8);
        assert!(tracker.to_renew().is_empty());
        tracker.touch(&[1], start + ms(30));
        tracker.detach_conn(1, 99);
        assert_eq!(tracker.to_renew(), vec![1], "another connection's end leaves the session attached");
        tracker.detach_conn(1, 7);
        assert!(tracker.to_renew().is_empty(), "its own connection ended");
        assert!(tracker.lapsed_leases(start + ms(60_000), 0.5).is_empty(), "no connection here to close");
    }
}
