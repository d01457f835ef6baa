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
}

impl SessionInfo {
    pub fn new(timeout_ms: i32, passwd: Vec<u8>) -> SessionInfo {
        SessionInfo { timeout_ms, passwd, ephemerals: BTreeSet::new(), ephemerals_changed_zxid: 0 }
    }
}

/// Open sessions by id, sorted so listings and close order are deterministic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionTable {
    sessions: BTreeMap<SessionId, SessionInfo>,
    ephemeral_count: u64,
}

impl SessionTable {
    /// Opens a session; opening an open session again only refreshes timeout and password
    /// (the command may be re-proposed), its ephemerals stay.
    pub fn open(&mut self, id: SessionId, timeout_ms: i32, passwd: &[u8]) {
        let info = self.sessions.entry(id).or_insert_with(|| SessionInfo::new(timeout_ms, Vec::new()));
        info.timeout_ms = timeout_ms;
        info.passwd = passwd.to_vec();
    }

    /// Forgets a session. Its ephemerals MUST have been deleted from the tree first.
    pub fn close(&mut self, id: SessionId) -> Option<SessionInfo> {
        let info = self.sessions.remove(&id)?;
        assert!(info.ephemerals.is_empty(), "session {id:#x} closed with ephemerals left");
        Some(info)
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
