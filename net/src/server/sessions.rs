//! The session tracker of the session core (core 0): when each session was last heard of,
//! which connection it is attached to, which sessions ran out of time and, in a cluster, until
//! when the session group's leader is known to keep each session alive (its lease, see
//! `lease.rs`).

use ahash::AHashMap;
use engine::command::{Command, ShardId};
use engine::types::{ConnId, SessionId};
use std::time::{Duration, Instant};

/// The expiry loop re-arms every session when one of its rounds comes this much later than
/// due (a pause or a stall; see `ExpiryClock`).
pub const EXPIRY_GAP_MAX: Duration = Duration::from_secs(1);
/// The session group's leader expires sessions only while it confirmed its leadership this
/// recently (a paused or cut-off leader that has not yet heard of its successor must not).
pub const EXPIRY_CONTACT_MAX: Duration = Duration::from_secs(1);

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
        lapsed.sort_unstable();
        lapsed
    }

    /// The session group's leader, for a lease probe carrying `sessions`: renews the ones it
    /// tracks as of `now` and returns the ones it does not (expired, closed, or created too
    /// recently for it to have applied the create): those are not renewed.
    pub fn renew_for_probe(&mut self, sessions: &[SessionId], now: Instant) -> Vec<SessionId> {
        let unknown = self.unknown(sessions);
        self.touch(sessions, now);
        unknown
    }

    /// A probe carrying `sessions` and sent at `sent_at` was answered by a confirmed leader:
    /// the leases of all but `unknown` hold from `sent_at`. Returns the sessions renewed.
    pub fn confirm_probe(&mut self, sessions: &[SessionId], unknown: &[SessionId], sent_at: Instant) -> Vec<SessionId> {
        let unknown: ahash::AHashSet<SessionId> = unknown.iter().copied().collect();
        let renewed: Vec<SessionId> = sessions.iter().copied().filter(|s| !unknown.contains(s)).collect();
        self.confirm(&renewed, sent_at);
        renewed
    }

    /// This node now leads the session group: it tracks every session open in shard 0 and gives
    /// each a full timeout from `now`, as ZooKeeper does after an election (the old leader's
    /// clock of when each was last heard from is gone).
    pub fn take_over(&mut self, open: impl IntoIterator<Item = (SessionId, i32)>, now: Instant) {
        for (session, timeout_ms) in open {
            self.create(session, timeout_ms, super::msg::INTERNAL_CONN, now);
        }
        self.rearm_all(now);
    }

    /// A session command shard 0 applied: every node tracks every session, so whichever leads
    /// the session group can expire them. Returns the connection of a session closed (expired
    /// by the leader, or closed by its client elsewhere) that is still attached here.
    pub fn apply(&mut self, command: &Command, now: Instant) -> Option<ConnId> {
        match command {
            Command::CreateSession { session, timeout_ms, .. } => {
                self.create(*session, *timeout_ms, super::msg::INTERNAL_CONN, now);
                None
            }
            Command::CloseSession { session } => self.remove(*session).flatten(),
            _ => None,
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
        let mut expired: Vec<SessionId> =
            self.sessions.iter().filter(|(_, t)| t.deadline <= now).map(|(id, _)| *id).collect();
        expired.sort_unstable();
        expired.into_iter().map(|id| (id, self.sessions.remove(&id).and_then(|t| t.owner))).collect()
    }
}

/// When the expiry loop last ran: a round that comes much later than due (a pause, a stall)
/// re-arms every session rather than expiring them. The sessions' clients could not reach this
/// node either, and a resumed leader that has not yet heard of its successor must not expire
/// them all.
pub struct ExpiryClock {
    last_round: Instant,
}

impl ExpiryClock {
    pub fn new(now: Instant) -> ExpiryClock {
        ExpiryClock { last_round: now }
    }

    /// A round at `now`, due every `tick`: Some(gap) if it came so late that every session
    /// must get a full timeout instead.
    pub fn round(&mut self, now: Instant, tick: Duration) -> Option<Duration> {
        let gap = now.saturating_duration_since(std::mem::replace(&mut self.last_round, now));
        (gap > EXPIRY_GAP_MAX.max(tick * 4)).then_some(gap)
    }
}

/// How long after shard 0 closed a session another shard may still hold it before its group's
/// leader closes it again (`UnfinishedCloses`).
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How long a session closed in shard 0 stays listed in `UnfinishedCloses` after no shard
/// here holds it: its create in another shard may still be on its way (held for a leader, or
/// by a paused node), and must then be closed too.
pub const UNFINISHED_CLOSE_KEPT: Duration = Duration::from_secs(60);

/// Sessions shard 0 closed that a core's other shards may still hold: each shard's close is an
/// entry of its own group, and one abandoned by a leader change while shard 0's committed would
/// leave the session's ephemerals there for good. Every node keeps the list (every node applies
/// shard 0), so whichever node leads a group later finishes the close.
#[derive(Default)]
pub struct UnfinishedCloses {
    /// (session, when shard 0 closed it, when it was last closed here again).
    closed: Vec<(SessionId, Instant, Instant)>,
}

impl UnfinishedCloses {
    pub fn closed_in_shard0(&mut self, session: SessionId, now: Instant) {
        self.closed.push((session, now, now));
    }

    /// `open_in(session)`: the shards here that still hold it. As the group's leader, the
    /// sessions shard 0 closed more than `CLOSE_GRACE` ago (the first close had time to commit;
    /// a duplicate close is a no-op) are returned to be closed again, shard by shard, at most
    /// once per grace. Sessions no shard holds are forgotten `UNFINISHED_CLOSE_KEPT` after
    /// shard 0 closed them.
    pub fn to_close_again(
        &mut self,
        leading: bool,
        now: Instant,
        open_in: impl Fn(SessionId) -> Vec<ShardId>,
    ) -> Vec<(ShardId, SessionId)> {
        let mut again = Vec::new();
        self.closed.retain_mut(|(session, closed_at, last)| {
            let open = open_in(*session);
            if open.is_empty() {
                return now.saturating_duration_since(*closed_at) < UNFINISHED_CLOSE_KEPT;
            }
            if leading && now.saturating_duration_since(*last) >= CLOSE_GRACE {
                again.extend(open.into_iter().map(|shard| (shard, *session)));
                *last = now;
            }
            true
        });
        again
    }
}

/// Whether this node may expire sessions now: a single node always; in a cluster only the
/// session group's leader, and only while a ReadIndex round confirmed its leadership within
/// `EXPIRY_CONTACT_MAX` (a node that cannot reach a majority stops leading, so no session
/// expires for lack of quorum).
pub fn may_expire(clustered: bool, leading: bool, leadership_confirmed: Option<Instant>, now: Instant) -> bool {
    !clustered
        || (leading && leadership_confirmed.is_some_and(|at| now.saturating_duration_since(at) <= EXPIRY_CONTACT_MAX))
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
