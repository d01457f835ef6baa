//! What Raft peers say to each other, and the log entries they carry. Plain data: the runtime
//! (net/) serializes it and moves it between nodes.

/// A node of the cluster (its id in the static membership).
pub type NodeId = u64;
/// A Raft term: at most one leader per term.
pub type Term = u64;
/// A position in the log, from 1; 0 is "before the first entry".
pub type Index = u64;

/// One log entry. `data` is opaque to Raft (Warren stores a `command::LogEntry` archive); an
/// entry with empty data is the no-op a new leader appends to commit entries of its term, and
/// the runtime applies nothing for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub term: Term,
    pub index: Index,
    pub data: Vec<u8>,
}

impl Entry {
    /// Bytes of payload, what flow control counts.
    pub fn payload_bytes(&self) -> usize {
        self.data.len()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    /// The sender's term; for a pre-vote request, the term the sender would campaign in (its
    /// own term + 1, which it has not adopted); for a granted pre-vote, that same term.
    pub term: Term,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Would you vote for me in `term`? Changes nobody's term (pre-vote, Raft thesis 9.6).
    PreVote {
        last_index: Index,
        last_term: Term,
    },
    PreVoteResponse {
        granted: bool,
    },
    /// `transfer`: sent after a leader's TimeoutNow, so voters ignore their leader lease.
    Vote {
        last_index: Index,
        last_term: Term,
        transfer: bool,
    },
    VoteResponse {
        granted: bool,
    },
    /// Entries after (`prev_index`, `prev_term`), and the leader's commit index.
    Append {
        prev_index: Index,
        prev_term: Term,
        entries: Vec<Entry>,
        commit: Index,
    },
    /// Success: the follower's log matches the leader's through `index` (and those entries
    /// are durable: it is sent only after they were persisted). Rejection: the entry at
    /// `index` (the append's prev_index) did not match; `last_index` is the follower's last
    /// index, so the leader can skip back at once.
    AppendResponse {
        success: bool,
        index: Index,
        last_index: Index,
    },
    /// `commit`: at most what the follower is known to match. `read_context`: the newest
    /// pending ReadIndex request when sent (0: none).
    Heartbeat {
        commit: Index,
        read_context: u64,
    },
    HeartbeatResponse {
        read_context: u64,
    },
    /// From a leader handing over leadership: campaign now.
    TimeoutNow,
}

impl Body {
    /// A message the leader may send before its own entries are durable (Raft thesis 10.2.1:
    /// the leader writes its log in parallel with replication); every other message MUST wait
    /// until the state that produced it is persisted.
    pub fn may_precede_persistence(&self) -> bool {
        matches!(self, Body::Append { .. } | Body::Heartbeat { .. } | Body::TimeoutNow)
    }
}

/// What MUST be on disk before a node answers votes or acknowledges entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: Term,
    pub vote: Option<NodeId>,
    pub commit: Index,
}
