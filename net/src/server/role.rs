//! The role of this node in its ensemble, as the four-letter words report it (`srvr`/`stat`
//! `Mode:`, `mntr` `zk_server_state`). One place decides it, so that replication only has to
//! change what `Core::role` returns.

/// ZooKeeper's server states. Warren has no replication yet, so a node is always standalone;
/// leader and follower join when it does.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    Standalone,
}

impl Role {
    /// The word ZooKeeper uses (`QuorumPeer.ServerState`, lower case).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Standalone => "standalone",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standalone_is_named_as_zookeeper_names_it() {
        assert_eq!(Role::Standalone.as_str(), "standalone");
    }
}
