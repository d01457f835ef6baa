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

    /// Tracks a session (new, reconnected, or recovered from the log with `owner` None) and
    /// returns the connection it was attached to before, if any.
    pub fn attach(&mut self, session: SessionId, timeout_ms: i32, conn: ConnId, now: Instant) -> Option<ConnId> {
        let owner = (conn != super::msg::INTERNAL_CONN).then_some(conn);
        let timeout = Duration::from_millis(timeout_ms.max(0) as u64);
        let tracked = Tracked { timeout, deadline: now + timeout, owner };
        self.sessions.insert(session, tracked).and_then(|previous| previous.owner)
    }

    pub fn touch(&mut self, sessions: &[SessionId], now: Instant) {
        for session in sessions {
            if let Some(tracked) = self.sessions.get_mut(session) {
                tracked.deadline = now + tracked.timeout;
            }
        }
    }

    pub fn remove(&mut self, session: SessionId) {
        self.sessions.remove(&session);
    }

    /// Removes and returns the sessions whose deadline passed, with their connection.
    pub fn expire(&mut self, now: Instant) -> Vec<(SessionId, Option<ConnId>)> {
        let expired: Vec<SessionId> =
            self.sessions.iter().filter(|(_, t)| t.deadline <= now).map(|(id, _)| *id).collect();
        expired
            .into_iter()
            .map(|id| (id, self.sessions.remove(&id).and_then(|t| t.owner)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_after_their_timeout_unless_touched() {
        let start = Instant::now();
        let mut tracker = SessionTracker::new();
        assert_eq!(tracker.attach(1, 1000, 7, start), None);
        tracker.attach(2, 3000, 8, start);
        assert!(tracker.expire(start + Duration::from_millis(999)).is_empty());
        tracker.touch(&[1], start + Duration::from_millis(900));
        assert!(tracker.expire(start + Duration::from_millis(1500)).is_empty());
        assert_eq!(tracker.expire(start + Duration::from_millis(1900)), vec![(1, Some(7))]);
        assert_eq!(tracker.attach(2, 3000, 9, start), Some(8), "reattach reports the old connection");
        assert_eq!(tracker.len(), 1);
    }
}
