//! The role of this node in its ensemble, as the four-letter words report it (`srvr`/`stat`
//! `Mode:`, `mntr` `zk_server_state`). One place decides it, so that replication only has to
//! change what `Core::role` returns.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// ZooKeeper's server states. A node without peers is standalone; in a cluster each core's
/// group has its own leader, and `Mode:` reports the node's role in group 0, the session group
/// (`mntr` lists every group's leader).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    Standalone,
    Leader,
    Follower,
}

/// Who leads each group, as this node last heard: shared by the cores (each writes its own
/// group's slot) so any core can answer the four-letter words.
pub struct GroupLeaders {
    clustered: bool,
    me: u64,
    /// Node id of each group's leader; 0 while unknown.
    leaders: Vec<AtomicU64>,
    /// The node is stopping (SIGTERM): its groups hand their leadership to other voters.
    stopping: AtomicBool,
    /// Per group: when this node last had two-way contact with a current leader of it, as
    /// microseconds after `epoch` plus one (0: never); see `lease.rs`.
    contact: Vec<AtomicU64>,
    epoch: Instant,
    /// Per group: the zxid of the last entry this node applied (writes in a cluster wait for
    /// their dependencies on them, `replica.rs`).
    applied: Vec<AtomicI64>,
    /// Per group: committed entries wait for another group of this node (`replica.rs`); a
    /// core that applies something wakes the groups that wait.
    waiting: Vec<AtomicBool>,
    /// Per group: the zxid it must have applied before this node serves again. A group that
    /// switched to a leader's snapshot shows the effects of its entries through the snapshot's
    /// point, which may depend on other groups up to what the snapshot's node had applied of
    /// them then (one order across groups): until this node's groups have too, it serves no
    /// client.
    required: Vec<AtomicI64>,
}

impl GroupLeaders {
    pub fn new(groups: usize, me: u64, clustered: bool) -> GroupLeaders {
        GroupLeaders {
            clustered,
            me,
            leaders: (0..groups).map(|_| AtomicU64::new(0)).collect(),
            stopping: AtomicBool::new(false),
            contact: (0..groups).map(|_| AtomicU64::new(0)).collect(),
            epoch: Instant::now(),
            applied: (0..groups).map(|_| AtomicI64::new(0)).collect(),
            waiting: (0..groups).map(|_| AtomicBool::new(false)).collect(),
            required: (0..groups).map(|_| AtomicI64::new(0)).collect(),
        }
    }

    /// This node serves no client until `group` has applied through `zxid` (`required`).
    pub fn require_applied(&self, group: usize, zxid: i64) {
        self.required[group].fetch_max(zxid, Ordering::Release);
    }

    /// The zxid `group` must have applied before this node serves again (`require_applied`).
    pub fn required(&self, group: usize) -> i64 {
        self.required[group].load(Ordering::Acquire)
    }

    /// The first group that has not applied what an installed snapshot requires.
    pub fn first_behind(&self) -> Option<usize> {
        (0..self.groups()).find(|&group| self.applied(group) < self.required(group))
    }

    pub fn set_waiting(&self, group: usize, waiting: bool) {
        self.waiting[group].store(waiting, Ordering::Release);
    }

    /// Whether `group` holds committed entries back for another group of this node.
    pub fn waiting(&self, group: usize) -> bool {
        self.waiting[group].load(Ordering::Acquire)
    }

    /// This node applied `group`'s entries through `zxid`.
    pub fn set_applied(&self, group: usize, zxid: i64) {
        self.applied[group].fetch_max(zxid, Ordering::Release);
    }

    /// The zxid of the last entry of `group` this node applied.
    pub fn applied(&self, group: usize) -> i64 {
        self.applied[group].load(Ordering::Acquire)
    }

    /// A leader of `group`, confirmed by a majority, heard from this node at `at` or later
    /// and answered (`lease.rs`).
    pub fn set_contact(&self, group: usize, at: Instant) {
        let micros = at.saturating_duration_since(self.epoch).as_micros() as u64 + 1;
        self.contact[group].fetch_max(micros, Ordering::Relaxed);
    }

    /// When this node last had two-way contact with a current leader of `group`.
    pub fn contact(&self, group: usize) -> Option<Instant> {
        let micros = self.contact[group].load(Ordering::Relaxed);
        (micros > 0).then(|| self.epoch + Duration::from_micros(micros - 1))
    }

    /// The first group this node has had no two-way contact with a current leader of for
    /// `bound` (never, or longer ago): a node of a cluster serves clients only while this is
    /// None. Always None for a single node.
    pub fn out_of_contact(&self, now: Instant, bound: Duration) -> Option<usize> {
        if !self.clustered {
            return None;
        }
        first_out_of_contact((0..self.groups()).map(|group| self.contact(group)), now, bound).or(self.first_behind())
    }

    pub fn set(&self, group: usize, leader: Option<u64>) {
        self.leaders[group].store(leader.unwrap_or(0), Ordering::Relaxed);
    }

    pub fn leader(&self, group: usize) -> Option<u64> {
        Some(self.leaders[group].load(Ordering::Relaxed)).filter(|&id| id != 0)
    }

    /// Whether this node leads any group.
    pub fn leads_any(&self) -> bool {
        (0..self.groups()).any(|group| self.leader(group) == Some(self.me))
    }

    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    pub fn groups(&self) -> usize {
        self.leaders.len()
    }

    /// The node's role: in group 0 for a cluster.
    pub fn role(&self) -> Role {
        match (self.clustered, self.leader(0)) {
            (false, _) => Role::Standalone,
            (true, Some(leader)) if leader == self.me => Role::Leader,
            (true, _) => Role::Follower,
        }
    }
}

impl Role {
    /// The word ZooKeeper uses (`QuorumPeer.ServerState`, lower case).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Standalone => "standalone",
            Role::Leader => "leader",
            Role::Follower => "follower",
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standalone_is_named_as_zookeeper_names_it() {
        assert_eq!(Role::Standalone.as_str(), "standalone");
        assert_eq!(Role::Leader.as_str(), "leader");
        assert_eq!(Role::Follower.as_str(), "follower");
    }

    #[test]
    fn the_mode_is_the_role_in_the_session_group() {
        let alone = GroupLeaders::new(2, 1, false);
        alone.set(0, Some(1));
        assert_eq!(alone.role(), Role::Standalone);
        let node = GroupLeaders::new(2, 2, true);
        assert_eq!(node.role(), Role::Follower, "no leader known");
        node.set(1, Some(2));
        assert_eq!(node.role(), Role::Follower, "leading group 1 only");
        node.set(0, Some(2));
        assert_eq!(node.role(), Role::Leader);
        assert!(node.leads_any());
        node.set(0, None);
        assert_eq!(node.leader(0), None);
        assert!(node.leads_any(), "still group 1");
        node.set(1, Some(3));
        assert!(!node.leads_any());
    }

    #[test]
    fn a_node_serves_only_while_it_has_recent_contact_with_every_group() {
        let bound = Duration::from_secs(2);
        let alone = GroupLeaders::new(2, 1, false);
        assert_eq!(alone.out_of_contact(Instant::now(), bound), None, "a single node always serves");
        let node = GroupLeaders::new(2, 1, true);
        let start = Instant::now();
        assert_eq!(node.out_of_contact(start, bound), Some(0), "no contact yet");
        node.set_contact(0, start);
        assert_eq!(node.out_of_contact(start, bound), Some(1));
        node.set_contact(1, start + Duration::from_secs(1));
        node.set_contact(1, start);
        let kept = node.contact(1).expect("set");
        assert!(kept > start + Duration::from_millis(999), "contact never goes back");
        assert!(kept <= start + Duration::from_secs(1), "rounded down, never later than it was");
        assert_eq!(node.out_of_contact(start + Duration::from_millis(1999), bound), None);
        assert_eq!(node.out_of_contact(start + Duration::from_millis(2001), bound), Some(0));
        node.set_contact(0, start + Duration::from_millis(2000));
        node.set_contact(1, start + Duration::from_millis(2000));
        node.require_applied(1, 50);
        assert_eq!(
            node.out_of_contact(start + Duration::from_millis(2001), bound),
            Some(1),
            "group 1 is behind a snapshot"
        );
        node.set_applied(1, 50);
        assert_eq!(node.out_of_contact(start + Duration::from_millis(2001), bound), None);
    }
}
