//! The session tracker of the session core (core 0): when each session was last heard of,
//! which connection it is attached to, and which sessions ran out of time.

use ahash::AHashMap;
use engine::types::{ConnId, SessionId};
use std::time::{Duration, Instant};

struct Tracked {
    timeout: Duration,
    deadline: Instant,
    owner: Option<ConnId>,
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
        self.sessions.insert(session, Tracked { timeout, deadline: now + timeout, owner });
    }

    /// Re-attaches a tracked session to a new connection and returns the connection it had.
    /// None if the session is no longer tracked (it expired or was closed): the caller must
    /// not let the client use it.
    pub fn reattach(&mut self, session: SessionId, conn: ConnId, now: Instant) -> Option<Option<ConnId>> {
        let tracked = self.sessions.get_mut(&session)?;
        tracked.deadline = now + tracked.timeout;
        Some(tracked.owner.replace(conn))
    }

    pub fn contains(&self, session: SessionId) -> bool {
        self.sessions.contains_key(&session)
    }

    pub fn touch(&mut self, sessions: &[SessionId], now: Instant) {
        for session in sessions {
            if let Some(tracked) = self.sessions.get_mut(session) {
                tracked.deadline = now + tracked.timeout;
            }
        }
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
}
