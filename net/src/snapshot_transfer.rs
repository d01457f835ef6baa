//! InstallSnapshot's flow control, without IO: what a leader sends to one follower and when
//! (`Sender`), and what a follower does with each chunk it gets (`receive`). A node
//! (`server/snapshots.rs`) and the simulation (`sim/node.rs`) run this same code, each with its
//! own bytes (a file, a vector) and clock.

use engine::raft::{Index, NodeId, Term};
use std::ops::Range;
use std::time::{Duration, Instant};

/// How a transfer is paced.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Bytes per chunk.
    pub chunk_bytes: u64,
    /// Chunks sent ahead of the follower's acknowledgement.
    pub chunks_in_flight: u64,
    /// Chunks not acknowledged within this are sent again from what the follower holds (a
    /// dropped message, a reconnect).
    pub resend_after: Duration,
    /// A follower that acknowledges nothing new for this long is given up on for now: a dead
    /// follower does not keep a sender running, and a snapshot's size is never capped by a
    /// timeout (each chunk has its own).
    pub give_up_after: Duration,
}

/// A node's pace. One chunk at a time, a transfer waited a round trip and a wake-up per MiB
/// (115 MB/s on loopback); the follower takes the chunks in order (the link keeps it) and drops
/// any that do not continue what it holds.
pub const PACE: Pace = Pace {
    chunk_bytes: 1 << 20,
    chunks_in_flight: 8,
    resend_after: Duration::from_secs(1),
    give_up_after: Duration::from_secs(30),
};

/// A leader's transfer of the snapshot after `index` to one follower.
#[derive(Debug, Clone)]
pub struct Sender {
    pub index: Index,
    pace: Pace,
    total: u64,
    /// Bytes the follower said it holds.
    acked: u64,
    installed: bool,
    /// Bytes sent so far (from the follower's count on), and when they last moved.
    sent: u64,
    sent_at: Instant,
    /// When the follower's count last grew.
    progress_at: Instant,
}

/// What a sender does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendStep {
    /// The follower installed the snapshot (or holds it whole and said nothing more for
    /// `Pace::give_up_after`).
    Done,
    /// No progress for `Pace::give_up_after`.
    GiveUp(String),
    /// These byte ranges of the file go out now, in order (none: wait).
    Send(Vec<Range<u64>>),
}

impl Sender {
    pub fn new(index: Index, total: u64, pace: Pace, now: Instant) -> Sender {
        Sender { index, pace, total, acked: 0, installed: false, sent: 0, sent_at: now, progress_at: now }
    }

    /// The follower's answer: the bytes it holds (its count is the truth: it takes chunks only
    /// in order, and one that restarted mid-transfer holds nothing), and whether it installed it.
    pub fn on_ack(&mut self, received: u64, installed: bool, now: Instant) {
        if received != self.acked {
            self.progress_at = now;
        }
        if received < self.acked {
            // It dropped what it held (it restarted, or refused a chunk): from there at once.
            self.sent = received;
        }
        self.acked = received;
        self.installed |= installed;
    }

    pub fn step(&mut self, now: Instant) -> SendStep {
        if self.installed {
            return SendStep::Done;
        }
        if self.acked >= self.total {
            // Whole: the follower loads it (a second or more for a large tree) and says when it
            // installed it. A sender that ended here was started again by the next look and
            // sent up to a window of chunks each time until then (380 MB of 1 MiB chunks for
            // one 213 MB rejoin). Waited for at most `give_up_after`, then done anyway: the next
            // look probes again with one window.
            if now.duration_since(self.progress_at) > self.pace.give_up_after {
                return SendStep::Done;
            }
            // The answer that it installed it can be lost (a connection cut as it switched),
            // and until it is heard the leader sends no appends and answers no lease probe:
            // each quiet `resend_after`, an empty chunk at the end asks again (answered with
            // what the follower holds, or that it installed it; never appended).
            if now.duration_since(self.sent_at) > self.pace.resend_after
                && now.duration_since(self.progress_at) > self.pace.resend_after
            {
                self.sent_at = now;
                let ask = self.total..self.total;
                return SendStep::Send(Vec::from([ask]));
            }
            return SendStep::Send(Vec::new());
        }
        if now.duration_since(self.progress_at) > self.pace.give_up_after {
            return SendStep::GiveUp(format!(
                "no progress for {}s at byte {} of {}",
                self.pace.give_up_after.as_secs(),
                self.acked,
                self.total
            ));
        }
        // A follower that holds less than was sent and acknowledges nothing for a while lost
        // chunks (or restarted): send again from what it holds.
        let quiet = now.duration_since(self.sent_at) > self.pace.resend_after
            && now.duration_since(self.progress_at) > self.pace.resend_after;
        if self.sent < self.acked || (self.sent > self.acked && quiet) {
            self.sent = self.acked;
        }
        let window_end = self.acked + self.pace.chunks_in_flight * self.pace.chunk_bytes;
        let mut ranges = Vec::new();
        while self.sent < self.total && self.sent < window_end {
            let end = (self.sent + self.pace.chunk_bytes).min(self.total);
            ranges.push(self.sent..end);
            self.sent = end;
            self.sent_at = now;
        }
        SendStep::Send(ranges)
    }
}

/// A chunk's header (`PeerMessage::SnapshotChunk` without its bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    pub from: NodeId,
    pub index: Index,
    pub term: Term,
    pub offset: u64,
    pub total: u64,
}

/// A follower's transfer under way: the leader's snapshot after `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receiving {
    /// The leader sending it: two leaders' files of the same entry differ (each head records
    /// what its own node had applied of the other groups).
    pub from: NodeId,
    pub index: Index,
    pub term: Term,
    pub total: u64,
    pub received: u64,
}

/// What a follower does with a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receipt {
    /// From a node that does not lead the group as far as this one knows (a deposed leader that
    /// woke up from a pause or a partition): no answer, nothing kept.
    Ignore,
    /// Keep nothing; answer that it holds this many bytes, and whether it has the state already.
    Answer { received: u64, installed: bool },
    /// Drop any transfer under way and begin this one with the chunk (`Receiving::begun`).
    Begin,
    /// Write the chunk after what it holds (`Receiving::appended`).
    Append,
    /// The leader sent something impossible: drop the transfer and answer 0, so it starts over.
    Refuse(String),
}

/// A follower's decision on a chunk. `leader` is the group's leader as the follower knows it;
/// `applied` the last entry its group applied; `loading` the index of a whole file received and
/// being switched to, if any.
pub fn receive(
    receiving: Option<&Receiving>,
    chunk: ChunkHeader,
    len: u64,
    leader: Option<NodeId>,
    applied: Index,
    loading: Option<Index>,
) -> Receipt {
    if leader.is_some_and(|leader| leader != chunk.from) {
        return Receipt::Ignore;
    }
    if chunk.index <= applied {
        return Receipt::Answer { received: chunk.total, installed: true };
    }
    // A chunk sent again while the whole file was being loaded: the transfer is over, and an
    // answer of 0 bytes would make the leader start it again.
    if loading == Some(chunk.index) {
        return Receipt::Answer { received: chunk.total, installed: false };
    }
    let same =
        receiving.filter(|r| (r.from, r.index, r.term, r.total) == (chunk.from, chunk.index, chunk.term, chunk.total));
    let held = match same {
        Some(receiving) => receiving.received,
        None if chunk.offset == 0 => return Receipt::Begin,
        // Another transfer's middle: the leader starts this one over from 0.
        None => return Receipt::Answer { received: 0, installed: false },
    };
    // An empty chunk is the sender asking what it holds.
    if chunk.offset != held || len == 0 {
        return Receipt::Answer { received: held, installed: false };
    }
    if chunk.offset + len > chunk.total {
        return Receipt::Refuse(format!("a chunk past the snapshot's {} bytes", chunk.total));
    }
    Receipt::Append
}

impl Receiving {
    /// A transfer begun by `chunk` (its bytes not yet counted).
    pub fn begun(chunk: ChunkHeader) -> Receiving {
        Receiving { from: chunk.from, index: chunk.index, term: chunk.term, total: chunk.total, received: 0 }
    }

    /// `len` more bytes written; true once the file is whole.
    pub fn appended(&mut self, len: u64) -> bool {
        self.received += len;
        assert!(self.received <= self.total, "receive refuses chunks past the end");
        self.received == self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Pace = Pace {
        chunk_bytes: 10,
        chunks_in_flight: 3,
        resend_after: Duration::from_millis(100),
        give_up_after: Duration::from_secs(2),
    };

    fn sends(step: SendStep) -> Vec<Range<u64>> {
        match step {
            SendStep::Send(ranges) => ranges,
            other => panic!("expected chunks, got {other:?}"),
        }
    }

    #[test]
    fn a_sender_keeps_its_window_full_and_is_done_when_the_follower_holds_everything() {
        let start = Instant::now();
        let mut sender = Sender::new(7, 45, SMALL, start);
        assert_eq!(sends(sender.step(start)), vec![0..10, 10..20, 20..30]);
        assert_eq!(sends(sender.step(start)), vec![], "the window is full");
        sender.on_ack(10, false, start);
        assert_eq!(sends(sender.step(start)), vec![30..40]);
        sender.on_ack(30, false, start);
        assert_eq!(sends(sender.step(start)), vec![40..45], "the last chunk is short");
        sender.on_ack(45, false, start);
        assert_eq!(sends(sender.step(start)), vec![], "whole: nothing more while the follower loads it");
        sender.on_ack(45, true, start);
        assert_eq!(sender.step(start), SendStep::Done);
        let mut unanswered = Sender::new(7, 45, SMALL, start);
        sends(unanswered.step(start));
        unanswered.on_ack(45, false, start);
        let quiet = start + Duration::from_millis(150);
        assert_eq!(sends(unanswered.step(quiet)), vec![45..45], "an empty chunk asks whether it installed it");
        assert_eq!(sends(unanswered.step(quiet)), vec![], "once per quiet resend interval");
        assert_eq!(sends(unanswered.step(quiet + Duration::from_millis(101))), vec![45..45]);
        assert_eq!(unanswered.step(start + Duration::from_millis(2100)), SendStep::Done, "not waited for forever");
        let mut installed = Sender::new(7, 45, SMALL, start);
        installed.on_ack(0, true, start);
        assert_eq!(installed.step(start), SendStep::Done, "a follower that installed it needs no more");
    }

    #[test]
    fn a_sender_resends_from_what_the_follower_holds() {
        let start = Instant::now();
        let mut sender = Sender::new(7, 100, SMALL, start);
        sends(sender.step(start));
        sender.on_ack(10, false, start);
        assert_eq!(sends(sender.step(start)), vec![30..40]);
        // Chunks lost: nothing new acknowledged for longer than resend_after.
        let later = start + Duration::from_millis(150);
        assert_eq!(sends(sender.step(later)), vec![10..20, 20..30, 30..40]);
        // The follower restarted and holds nothing: at once, from 0.
        sender.on_ack(0, false, later);
        assert_eq!(sends(sender.step(later)), vec![0..10, 10..20, 20..30]);
    }

    #[test]
    fn a_sender_gives_up_on_a_follower_that_stops_answering_but_not_on_a_slow_one() {
        let start = Instant::now();
        let mut sender = Sender::new(7, 1000, SMALL, start);
        let mut now = start;
        for held in 1..=10 {
            now += Duration::from_millis(1500);
            sender.on_ack(held * 10, false, now);
            assert!(matches!(sender.step(now), SendStep::Send(_)), "progress, however slow, goes on");
        }
        assert!(matches!(sender.step(now + Duration::from_millis(2100)), SendStep::GiveUp(_)));
    }

    fn chunk(from: NodeId, index: Index, offset: u64) -> ChunkHeader {
        ChunkHeader { from, index, term: 3, offset, total: 25 }
    }

    #[test]
    fn a_follower_takes_chunks_in_order_of_one_transfer_only() {
        let first = chunk(1, 50, 0);
        assert_eq!(receive(None, first, 10, None, 40, None), Receipt::Begin);
        let mut receiving = Receiving::begun(first);
        assert!(!receiving.appended(10));
        assert_eq!(receive(Some(&receiving), chunk(1, 50, 10), 10, None, 40, None), Receipt::Append);
        assert_eq!(
            receive(Some(&receiving), chunk(1, 50, 20), 5, None, 40, None),
            Receipt::Answer { received: 10, installed: false },
            "a gap: it says what it holds"
        );
        assert_eq!(
            receive(Some(&receiving), chunk(2, 50, 10), 10, None, 40, None),
            Receipt::Answer { received: 0, installed: false },
            "another leader's file of the same entry starts over"
        );
        assert_eq!(receive(Some(&receiving), chunk(2, 50, 0), 10, None, 40, None), Receipt::Begin);
        assert!(matches!(receive(Some(&receiving), chunk(1, 50, 10), 16, None, 40, None), Receipt::Refuse(_)));
        assert!(!receiving.appended(10));
        assert!(receiving.appended(5), "whole");
        assert_eq!(
            receive(Some(&receiving), chunk(1, 50, 25), 0, None, 40, None),
            Receipt::Answer { received: 25, installed: false },
            "an empty chunk at the end is a question, never appended"
        );
        assert_eq!(
            receive(None, chunk(2, 50, 25), 0, None, 40, None),
            Receipt::Answer { received: 0, installed: false },
            "asked after a restart that lost the transfer: start over"
        );
    }

    #[test]
    fn a_follower_ignores_chunks_from_a_node_it_does_not_follow() {
        assert_eq!(receive(None, chunk(2, 50, 0), 10, Some(1), 40, None), Receipt::Ignore);
        assert_eq!(receive(None, chunk(1, 50, 0), 10, Some(1), 40, None), Receipt::Begin);
        assert_eq!(receive(None, chunk(2, 50, 0), 10, None, 40, None), Receipt::Begin, "no leader known yet");
    }

    #[test]
    fn a_follower_that_has_the_state_or_is_loading_it_says_so() {
        assert_eq!(
            receive(None, chunk(1, 50, 10), 10, None, 50, None),
            Receipt::Answer { received: 25, installed: true }
        );
        assert_eq!(
            receive(None, chunk(1, 50, 10), 10, None, 40, Some(50)),
            Receipt::Answer { received: 25, installed: false },
            "not 0, which would start the transfer over"
        );
    }
}
