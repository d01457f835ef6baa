//! The session table of a shard: open sessions and the ephemerals they own here.

use crate::types::{SessionId, Zxid};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub timeout_ms: i32,
    pub passwd: Vec<u8>,
    /// Paths of this session's ephemeral nodes in this shard.
    pub ephemerals: BTreeSet<String>,
    /// zxid of the last entry that added or removed one of them (0: none yet): how old a
    /// getEphemerals answer of this shard is (see `Shard::last_change_read_by`).
    pub ephemerals_changed_zxid: Zxid,
    /// The epoch of the session's current connection (`Command::MoveSession`), 0 until it
    /// moves: writes of an older connection fail with SESSIONMOVED.
    pub connection_epoch: Zxid,
}

impl SessionInfo {
    pub fn new(timeout_ms: i32, passwd: Vec<u8>) -> SessionInfo {
        SessionInfo { timeout_ms, passwd, ephemerals: BTreeSet::new(), ephemerals_changed_zxid: 0, connection_epoch: 0 }
    }
}

/// How long a closed session is remembered (`SessionTable::recently_closed`), in the time of
/// the log entries that closed them.
pub const CLOSED_KEPT_MS: i64 = 600_000;
/// At most this many closed sessions are remembered (the oldest are forgotten first).
pub const CLOSED_KEPT_MAX: usize = 100_000;

/// Open sessions by id, sorted so listings and close order are deterministic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionTable {
    sessions: BTreeMap<SessionId, SessionInfo>,
    ephemeral_count: u64,
    /// Sessions closed within `CLOSED_KEPT_MS` of the newest close, oldest first, with the time
    /// of the entry that closed them: a tombstone in the log's own state, rebuilt by replay.
    /// Kept by shard 0 only (`keeps_tombstones`), whose closes are the cluster's.
    closed: std::collections::VecDeque<(SessionId, i64)>,
    keeps_tombstones: bool,
}

impl SessionTable {
    /// An empty table; `keeps_tombstones` for shard 0's (see `closed`).
    pub fn new(keeps_tombstones: bool) -> SessionTable {
        SessionTable { keeps_tombstones, ..SessionTable::default() }
    }

    /// Opens a session; opening an open session again only refreshes timeout and password
    /// (the command may be re-proposed), its ephemerals stay.
    pub fn open(&mut self, id: SessionId, timeout_ms: i32, passwd: &[u8]) {
        let info = self.sessions.entry(id).or_insert_with(|| SessionInfo::new(timeout_ms, Vec::new()));
        info.timeout_ms = timeout_ms;
        info.passwd = passwd.to_vec();
    }

    /// Moves an open session to a new connection: its connection epoch goes up by one. Returns
    /// the epoch after, or None for a session not open here.
    pub fn move_on(&mut self, id: SessionId) -> Option<Zxid> {
        let info = self.sessions.get_mut(&id)?;
        info.connection_epoch += 1;
        Some(info.connection_epoch)
    }

    /// Forgets a session. Its ephemerals MUST have been deleted from the tree first.
    pub fn close(&mut self, id: SessionId) -> Option<SessionInfo> {
        let info = self.sessions.remove(&id)?;
        assert!(info.ephemerals.is_empty(), "session {id:#x} closed with ephemerals left");
        Some(info)
    }

    /// Remembers that an entry of time `time_ms` closed session `id`, and forgets closes
    /// older than `CLOSED_KEPT_MS` before it.
    pub(crate) fn record_closed(&mut self, id: SessionId, time_ms: i64) {
        if !self.keeps_tombstones {
            return;
        }
        let too_old = |at: i64| at < time_ms.saturating_sub(CLOSED_KEPT_MS);
        while self.closed.front().is_some_and(|&(_, at)| too_old(at)) || self.closed.len() >= CLOSED_KEPT_MAX {
            self.closed.pop_front();
        }
        self.closed.push_back((id, time_ms));
    }

    /// Sessions closed recently with the time of their closing entry, oldest first.
    pub(crate) fn closed_with_times(&self) -> impl Iterator<Item = (SessionId, i64)> + '_ {
        self.closed.iter().copied()
    }

    /// A restored session's marks (a snapshot's): when its ephemerals last changed, and its
    /// connection epoch.
    pub(crate) fn restore_marks(&mut self, id: SessionId, ephemerals_changed_zxid: Zxid, connection_epoch: Zxid) {
        let info = self.sessions.get_mut(&id).expect("opened just before");
        info.ephemerals_changed_zxid = ephemerals_changed_zxid;
        info.connection_epoch = connection_epoch;
    }

    /// Sessions closed recently (see `closed`), oldest first.
    pub fn recently_closed(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.closed.iter().map(|(id, _)| *id)
    }

    pub fn get(&self, id: SessionId) -> Option<&SessionInfo> {
        self.sessions.get(&id)
    }

    pub fn is_open(&self, id: SessionId) -> bool {
        self.sessions.contains_key(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (SessionId, &SessionInfo)> {
        self.sessions.iter().map(|(id, info)| (*id, info))
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn ephemeral_count(&self) -> u64 {
        self.ephemeral_count
    }

    /// The session's ephemerals, sorted (empty when the session is unknown).
    pub fn ephemerals(&self, id: SessionId) -> Vec<String> {
        self.sessions.get(&id).map(|info| info.ephemerals.iter().cloned().collect()).unwrap_or_default()
    }

    pub(crate) fn add_ephemeral(&mut self, id: SessionId, path: &str, zxid: Zxid) {
        let info = self.sessions.get_mut(&id).unwrap_or_else(|| panic!("ephemeral {path} of closed session {id:#x}"));
        info.ephemerals_changed_zxid = zxid;
        let inserted = info.ephemerals.insert(path.to_string());
        assert!(inserted, "ephemeral {path} registered twice");
        self.ephemeral_count += 1;
    }

    pub(crate) fn remove_ephemeral(&mut self, id: SessionId, path: &str, zxid: Zxid) {
        let info = self.sessions.get_mut(&id).unwrap_or_else(|| panic!("ephemeral {path} of unknown session {id:#x}"));
        info.ephemerals_changed_zxid = zxid;
        let removed = info.ephemerals.remove(path);
        assert!(removed, "ephemeral {path} not registered with its session");
        self.ephemeral_count -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_are_remembered_for_ten_minutes_of_log_time_and_a_bounded_count() {
        let mut other_shard = SessionTable::default();
        other_shard.record_closed(1, 1_000);
        assert_eq!(other_shard.recently_closed().count(), 0, "only shard 0 keeps tombstones");
        let mut table = SessionTable::new(true);
        table.open(1, 1000, b"p");
        table.open(2, 1000, b"p");
        table.close(1);
        table.record_closed(1, 1_000);
        table.close(2);
        table.record_closed(2, 1_000 + CLOSED_KEPT_MS);
        assert_eq!(table.recently_closed().collect::<Vec<_>>(), vec![1, 2], "exactly ten minutes are kept");
        table.record_closed(3, 1_001 + CLOSED_KEPT_MS);
        assert_eq!(table.recently_closed().collect::<Vec<_>>(), vec![2, 3]);
        for id in 0..CLOSED_KEPT_MAX as SessionId {
            table.record_closed(10 + id, 2_000 + CLOSED_KEPT_MS);
        }
        assert_eq!(table.recently_closed().count(), CLOSED_KEPT_MAX);
        assert_eq!(table.recently_closed().next(), Some(10), "the oldest went first");
    }

    #[test]
    fn open_is_idempotent_and_keeps_ephemerals() {
        let mut table = SessionTable::default();
        table.open(7, 3000, b"pw");
        table.add_ephemeral(7, "/e", 5);
        table.open(7, 4000, b"pw2");
        let info = table.get(7).unwrap();
        assert_eq!(info.timeout_ms, 4000);
        assert_eq!(info.passwd, b"pw2");
        assert_eq!(table.ephemerals(7), vec!["/e".to_string()]);
        assert_eq!(table.ephemeral_count(), 1);
        assert_eq!(table.get(7).unwrap().ephemerals_changed_zxid, 5);
        table.remove_ephemeral(7, "/e", 6);
        assert!(table.close(7).is_some());
        assert!(table.close(7).is_none());
        assert_eq!(table.ephemerals(7), Vec::<String>::new());
    }
}
