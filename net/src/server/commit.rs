//! The queue between a core and its replication loop (`replica.rs`): the writes routed to
//! this core wait here to be proposed, in batches; the zxids this core hands out, and how far
//! it has applied, live here too.
//!
//! The interface the rest of the core relies on:
//! - in: `CommitQueue::propose`, called by `Core` for every write routed to this core;
//! - out, per committed entry, in log order: `Core::apply_and_reply` or
//!   `Core::apply_replicated`, then per turn `Core::announce_applied` and
//!   `Core::serve_cut_waiters`. The watermark (`watermark.rs`) relies on this order: the
//!   notifications of an entry MUST be sent before the `Applied` message that covers it, and
//!   nothing may be promised while this node has zxids assigned but not applied
//!   (`CommitQueue::applied_through` answers None meanwhile);
//! - zxids: assigned by the group's leader (`next_zxid`), above every zxid in its log and
//!   every zxid this core promised;
//! - a failed flush: `server::stop_on_wal_failure` (the batch is neither applied nor answered).

use super::clock::unix_micros;
use super::driver::{LeaseRound, Write, WriteFrom};
use super::msg::ShardRequest;
use engine::command::Command;
use engine::raft::{Message, NodeId};
use engine::types::Zxid;
use glommio::channels::local_channel::LocalSender;
use std::cell::{Cell, RefCell};

/// A fence asked of the leader and not seen applied is asked again after this long.
const FENCE_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

/// A write waiting for the replication loop, and when it was queued (mntr's commit queue time).
pub(super) struct PendingWrite {
    pub(super) queued_at: std::time::Instant,
    pub(super) write: Write<ShardRequest>,
}

/// The writes waiting for this core's replication loop, what else wakes it, and the zxids it
/// has handed out.
pub(super) struct CommitQueue {
    pending: RefCell<Vec<PendingWrite>>,
    /// Wakes the replication loop.
    signal: LocalSender<()>,
    /// Raft ticks due and peer messages received since the loop last looked.
    ticks: Cell<u32>,
    inbox: RefCell<Vec<Message>>,
    /// The leader's answers to this node's forwarded ReadIndex rounds: (token, read index).
    read_indexes: RefCell<Vec<(u64, u64)>>,
    /// Leader: lease probes to confirm with a ReadIndex round (`lease.rs`).
    lease_rounds: RefCell<Vec<LeaseRound>>,
    /// Committed entries wait for other groups of this node to apply what they depend on.
    waiting_for_other_groups: Cell<bool>,
    /// Leader: followers that need entries no longer held (a snapshot, which does not exist
    /// yet); their lease probes go unanswered.
    needing_snapshot: RefCell<Vec<NodeId>>,
    /// This node leads the core's group (only a leader assigns zxids and may reserve them).
    leading: Cell<bool>,
    decides: Cell<bool>,
    decisions_to_apply: RefCell<Vec<engine::command::TxnId>>,
    /// Highest zxid handed out by this core or seen in its log (a log's zxids strictly
    /// increase; assigned zxids run ahead of applied ones while entries commit).
    zxid_assigned: Cell<Zxid>,
    /// Entries this node proposed and has not applied yet: no promise beyond them.
    in_flight: Cell<usize>,
    /// The zxid of the last entry applied.
    last_applied: Cell<Zxid>,
    /// Leader: the highest fence followers asked for and not yet proposed (0: none).
    fence_wanted: Cell<Zxid>,
    /// Follower: the highest fence asked of the leader, and when.
    fence_asked: Cell<(Zxid, Option<std::time::Instant>)>,
}

impl CommitQueue {
    /// `last_zxid`: the highest zxid in this core's log (recovered from the WAL).
    pub(super) fn new(signal: LocalSender<()>, last_zxid: Zxid, last_applied: Zxid) -> CommitQueue {
        CommitQueue {
            pending: RefCell::new(Vec::new()),
            signal,
            ticks: Cell::new(0),
            inbox: RefCell::new(Vec::new()),
            read_indexes: RefCell::new(Vec::new()),
            lease_rounds: RefCell::new(Vec::new()),
            waiting_for_other_groups: Cell::new(false),
            needing_snapshot: RefCell::new(Vec::new()),
            leading: Cell::new(false),
            decides: Cell::new(false),
            decisions_to_apply: RefCell::new(Vec::new()),
            zxid_assigned: Cell::new(last_zxid),
            in_flight: Cell::new(0),
            last_applied: Cell::new(last_applied),
            fence_wanted: Cell::new(0),
            fence_asked: Cell::new((0, None)),
        }
    }

    /// Leader: a follower needs a fence above `at_least` (`PeerMessage::Fence`).
    pub(super) fn want_fence(&self, at_least: Zxid) {
        self.fence_wanted.set(self.fence_wanted.get().max(at_least));
        let _ = self.signal.try_send(());
    }

    /// Leader: the fence to propose now, if any: a zxid above every one asked for.
    pub(super) fn take_fence(&self) -> Option<Zxid> {
        let wanted = self.fence_wanted.replace(0);
        (wanted > 0).then(|| {
            self.note_log_zxid(wanted);
            self.next_zxid()
        })
    }

    /// Follower: whether to ask the leader for a fence above `at_least` now: not if one that
    /// high was asked for recently (a lost request is asked again after `FENCE_RETRY`).
    pub(super) fn should_ask_fence(&self, at_least: Zxid, now: std::time::Instant) -> bool {
        let (asked, when) = self.fence_asked.get();
        let recent = when.is_some_and(|when| now.duration_since(when) < FENCE_RETRY);
        if at_least <= asked && recent {
            return false;
        }
        self.fence_asked.set((at_least.max(asked), Some(now)));
        true
    }

    /// Queues a write for the next batch and wakes the replication loop.
    pub(super) fn propose(&self, mut request: ShardRequest, command: Command) {
        let shard = request.shard;
        let dependencies = std::mem::take(&mut request.dependencies);
        self.queue(Write { shard, from: WriteFrom::Local(request), command: Some(command), dependencies });
    }

    /// Queues a client's `sync`, or a linearizable read, in a cluster: a ReadIndex round of the
    /// group (`replica.rs`), then `Core::answer_sync`.
    pub(super) fn propose_sync(&self, request: ShardRequest) {
        let shard = request.shard;
        self.queue(Write { shard, from: WriteFrom::Local(request), command: None, dependencies: Vec::new() });
    }

    /// Queues a write (or sync) for the next batch and wakes the replication loop; a peer's
    /// (`WriteFrom::Peer`) was forwarded to this node as the group's leader of its term.
    pub(super) fn queue(&self, write: Write<ShardRequest>) {
        self.pending.borrow_mut().push(PendingWrite { queued_at: std::time::Instant::now(), write });
        let _ = self.signal.try_send(());
    }

    /// A lease probe (this node's own or a follower's) for the next ReadIndex round.
    pub(super) fn ask_lease(&self, round: LeaseRound) {
        self.lease_rounds.borrow_mut().push(round);
        let _ = self.signal.try_send(());
    }

    pub(super) fn set_needing_snapshot(&self, followers: &[NodeId]) {
        *self.needing_snapshot.borrow_mut() = followers.to_vec();
    }

    /// Whether `follower` needs entries this leader no longer holds.
    pub(super) fn needs_snapshot(&self, follower: NodeId) -> bool {
        self.needing_snapshot.borrow().contains(&follower)
    }

    pub(super) fn set_waiting_for_other_groups(&self, waiting: bool) {
        self.waiting_for_other_groups.set(waiting);
    }

    /// Another core applied more: wakes the replication loop if entries wait for that.
    pub(super) fn other_group_applied(&self) {
        if self.waiting_for_other_groups.get() {
            let _ = self.signal.try_send(());
        }
    }

    pub(super) fn take_lease_rounds(&self) -> Vec<LeaseRound> {
        std::mem::take(&mut *self.lease_rounds.borrow_mut())
    }

    /// One Raft tick passed.
    pub(super) fn tick(&self) {
        self.ticks.set(self.ticks.get() + 1);
        let _ = self.signal.try_send(());
    }

    /// A message from a peer for this core's group.
    pub(super) fn deliver(&self, message: Message) {
        self.inbox.borrow_mut().push(message);
        let _ = self.signal.try_send(());
    }

    /// The leader answered a forwarded ReadIndex round.
    pub(super) fn deliver_read_index(&self, token: u64, index: u64) {
        self.read_indexes.borrow_mut().push((token, index));
        let _ = self.signal.try_send(());
    }

    pub(super) fn take_read_indexes(&self) -> Vec<(u64, u64)> {
        std::mem::take(&mut *self.read_indexes.borrow_mut())
    }

    pub(super) fn take_ticks(&self) -> u32 {
        self.ticks.replace(0)
    }

    pub(super) fn take_inbox(&self) -> Vec<Message> {
        std::mem::take(&mut *self.inbox.borrow_mut())
    }

    pub(super) fn set_leading(&self, leading: bool) {
        self.leading.set(leading);
    }

    /// `GroupDriver::decides_now` and `decisions_to_apply`, as of the replication loop's
    /// last turn.
    pub(super) fn set_decides(&self, decides: bool, decisions_to_apply: Vec<engine::command::TxnId>) {
        self.decides.set(decides);
        *self.decisions_to_apply.borrow_mut() = decisions_to_apply;
    }

    /// This node's standing in its group for multis across groups (`txn_driver`).
    pub(super) fn leadership(&self) -> super::txn_driver::Leadership {
        super::txn_driver::Leadership {
            leading: self.leading.get(),
            decides: self.decides.get(),
            decisions_to_apply: self.decisions_to_apply.borrow().clone(),
        }
    }

    /// This node leads the core's group.
    /// Starts a turn of the replication loop for something it must look at (a snapshot
    /// received to switch to).
    pub(super) fn wake(&self) {
        let _ = self.signal.try_send(());
    }

    pub(super) fn leading(&self) -> bool {
        self.leading.get()
    }

    /// With nothing of its own in flight, everything this core assigned is applied: as the
    /// group's leader it may promise up to `heard` as well (the highest promise heard from any
    /// core), so those zxids are reserved and only higher ones are assigned from then on. A
    /// follower promises what it applied: the leader assigns the zxids. None while entries
    /// this node proposed are not applied.
    pub(super) fn applied_through(&self, heard: Zxid) -> Option<Zxid> {
        if self.in_flight.get() > 0 {
            return None;
        }
        if !self.leading.get() {
            return Some(self.last_applied.get());
        }
        let through = self.zxid_assigned.get().max(heard);
        self.zxid_assigned.set(through);
        Some(through)
    }

    /// Everything up to here is applied.
    pub(super) fn last_applied(&self) -> Zxid {
        self.last_applied.get()
    }

    pub(super) fn set_last_applied(&self, zxid: Zxid) {
        assert!(zxid > self.last_applied.get(), "zxids apply in increasing order");
        self.last_applied.set(zxid);
        self.note_log_zxid(zxid);
    }

    /// A zxid in the group's log: a leader assigns only above it.
    pub(super) fn note_log_zxid(&self, zxid: Zxid) {
        self.zxid_assigned.set(self.zxid_assigned.get().max(zxid));
    }

    /// Requests of this node proposed or forwarded and not applied yet (the replication loop
    /// counts them: `GroupHost::in_flight`).
    pub(super) fn set_in_flight(&self, requests: usize) {
        self.in_flight.set(requests);
    }

    /// zxid for a new entry: above every earlier one of this core (so of each of its shards)
    /// and, when the clock allows, the current time in microseconds, so zxids of different
    /// cores are ordered roughly as real time (see docs/architecture.md, "zxid").
    pub(super) fn next_zxid(&self) -> Zxid {
        let zxid = super::driver::next_zxid(self.zxid_assigned.get(), unix_micros());
        self.zxid_assigned.set(zxid);
        zxid
    }

    /// Every write queued since the loop last looked.
    pub(super) fn take_pending(&self) -> Vec<PendingWrite> {
        std::mem::take(&mut *self.pending.borrow_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::channels::local_channel;

    fn queue(last_zxid: Zxid) -> CommitQueue {
        let (signal, _wake) = local_channel::new_bounded(1);
        let queue = CommitQueue::new(signal, last_zxid, last_zxid);
        queue.set_leading(true);
        queue
    }

    #[test]
    fn zxids_increase_and_nothing_is_promised_while_an_entry_is_in_flight() {
        let queue = queue(1 << 60);
        let first = queue.next_zxid();
        assert!(queue.next_zxid() > first);
        queue.set_in_flight(1);
        assert_eq!(queue.applied_through(first + 100), None);
        queue.set_in_flight(0);
        assert_eq!(queue.applied_through(first + 100), Some(first + 100));
        assert!(queue.next_zxid() > first + 100, "a promised zxid is never assigned");
        assert_eq!(queue.applied_through(0), Some(first + 101), "it promises what it assigned");
    }

    #[test]
    fn a_follower_promises_what_it_applied_and_reserves_nothing() {
        let queue = queue(1 << 60);
        queue.set_leading(false);
        queue.set_last_applied((1 << 60) + 5);
        let heard: Zxid = 1 << 61;
        assert_eq!(queue.applied_through(heard), Some((1 << 60) + 5));
        queue.set_leading(true);
        let zxid = queue.next_zxid();
        assert!(zxid > (1 << 60) + 5 && zxid < heard, "nothing was reserved as follower");
    }
}
