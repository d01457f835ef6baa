//! What a leader knows of one follower's log, and how much it may send it: probing (one append
//! at a time until the logs match) or replicating (appends pipelined, bounded by count and
//! bytes in flight).

use std::collections::VecDeque;

use super::message::Index;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Looking for the last matching entry: one append in flight at a time.
    Probe,
    /// Logs match through `match_index`: appends are sent ahead without waiting.
    Replicate,
}

#[derive(Debug)]
pub struct Progress {
    /// Highest index known to match (and be durable on) the follower.
    pub match_index: Index,
    /// Next index to send.
    pub next_index: Index,
    pub state: State,
    /// Probe: an append is out and unanswered.
    pub probe_sent: bool,
    /// Replicate: (last index, payload bytes) of each append in flight, oldest first.
    inflight: VecDeque<(Index, usize)>,
    inflight_bytes: usize,
    /// Heard from since the leader last checked its quorum.
    pub recent_active: bool,
}

impl Progress {
    pub fn new(next_index: Index) -> Progress {
        Progress {
            match_index: 0,
            next_index,
            state: State::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            recent_active: false,
        }
    }

    /// Whether another append may go out now.
    pub fn may_send(&self, max_msgs: usize, max_bytes: usize) -> bool {
        match self.state {
            State::Probe => !self.probe_sent,
            State::Replicate => self.inflight.len() < max_msgs && self.inflight_bytes < max_bytes,
        }
    }

    /// An append of entries up to `last_index` (`bytes` of payload) went out.
    pub fn sent(&mut self, last_index: Index, bytes: usize) {
        match self.state {
            State::Probe => self.probe_sent = true,
            State::Replicate => {
                if last_index >= self.next_index {
                    self.next_index = last_index + 1;
                    self.inflight.push_back((last_index, bytes));
                    self.inflight_bytes += bytes;
                }
            }
        }
    }

    /// The follower matches through `index`; returns whether the match index moved. A probe
    /// that finds the logs matching (even at the old match index) starts replicating.
    pub fn matched(&mut self, index: Index) -> bool {
        self.probe_sent = false;
        let moved = index > self.match_index;
        if moved {
            self.match_index = index;
            self.next_index = self.next_index.max(index + 1);
            while self.inflight.front().is_some_and(|&(last, _)| last <= index) {
                let (_, bytes) = self.inflight.pop_front().expect("front checked");
                self.inflight_bytes -= bytes;
            }
        }
        if self.state == State::Probe {
            self.become_replicate();
        }
        moved
    }

    /// The follower rejected an append after `rejected` (its prev_index); its log ends at
    /// `last_index`. Returns false for a stale rejection (of an append older than what we know).
    pub fn rejected(&mut self, rejected: Index, last_index: Index) -> bool {
        if rejected <= self.match_index {
            return false;
        }
        if self.state == State::Probe && rejected + 1 != self.next_index {
            return false;
        }
        // Skip straight past the follower's end; never below what matches.
        self.next_index = rejected.min(last_index + 1).max(self.match_index + 1);
        self.become_probe();
        true
    }

    /// The follower's log ends at `last_index`, before what it had matched: it lost its log (a
    /// wiped data dir). Nothing of it is known to match any more; probe from its end.
    pub fn lost_log(&mut self, last_index: Index) {
        assert!(last_index < self.match_index, "a log that ends past its match index lost nothing");
        self.match_index = 0;
        self.next_index = last_index + 1;
        self.become_probe();
    }

    /// A heartbeat answer shows the follower is there: resume probing, and in replicate
    /// with the pipeline full make room for one append (as etcd-io/raft does): appends lost on
    /// the way (a dropped connection, a restarted follower) are never answered, and without
    /// this the leader would wait for them forever. A follower that missed them rejects the
    /// next append and the leader probes back.
    pub fn resume(&mut self, max_msgs: usize, max_bytes: usize) {
        self.probe_sent = false;
        if self.state == State::Replicate && !self.may_send(max_msgs, max_bytes) {
            if let Some((_, bytes)) = self.inflight.pop_front() {
                self.inflight_bytes -= bytes;
            }
        }
    }

    fn become_replicate(&mut self) {
        self.state = State::Replicate;
        self.next_index = self.match_index + 1;
        self.inflight.clear();
        self.inflight_bytes = 0;
    }

    fn become_probe(&mut self) {
        self.state = State::Probe;
        self.probe_sent = false;
        self.inflight.clear();
        self.inflight_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicate_pipelines_within_its_limits_and_frees_on_match() {
        let mut p = Progress::new(1);
        assert!(p.may_send(2, 1000));
        p.sent(0, 0);
        assert!(!p.may_send(2, 1000), "probe: one append at a time");
        // An empty follower log matches at 0: replicate from 1.
        assert!(!p.matched(0));
        assert_eq!((p.state, p.next_index), (State::Replicate, 1));
        p.matched(3);
        assert_eq!(p.state, State::Replicate);
        assert_eq!(p.next_index, 4);
        p.sent(5, 600);
        p.sent(7, 600);
        assert!(!p.may_send(2, 10_000), "two appends in flight");
        assert!(!p.may_send(3, 1000), "1200 bytes in flight");
        p.matched(5);
        assert!(p.may_send(2, 1000));
        assert_eq!(p.next_index, 8);
    }

    #[test]
    fn a_heartbeat_answer_frees_a_full_pipeline_by_one() {
        let mut p = Progress::new(1);
        p.matched(0);
        p.sent(4, 10);
        p.sent(8, 10);
        assert!(!p.may_send(2, 1000), "full");
        p.resume(2, 1000);
        assert!(p.may_send(2, 1000), "one append may go again");
        p.sent(9, 10);
        p.resume(3, 1000);
        assert!(p.may_send(3, 1000), "not full: nothing freed");
        assert_eq!(p.inflight.len(), 2);
    }

    #[test]
    fn a_rejection_probes_back_to_the_follower_end() {
        let mut p = Progress::new(11);
        p.matched(3);
        p.sent(10, 0);
        // The follower's log ends at 6: skip straight to 7.
        assert!(p.rejected(10, 6));
        assert_eq!((p.state, p.next_index), (State::Probe, 7));
        // A late rejection of an older append is ignored.
        assert!(!p.rejected(2, 6));
        assert_eq!(p.next_index, 7);
    }
}
