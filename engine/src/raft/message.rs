//! What Raft peers say to each other, and the log entries they carry. Plain data; on the wire
//! (and in the WAL) as validated rkyv archives (`Message::to_bytes` / `from_bytes`).

use rkyv::{Archive, Deserialize, Serialize};

/// A node of the cluster (its id in the static membership).
pub type NodeId = u64;
/// A Raft term: at most one leader per term.
pub type Term = u64;
/// A position in the log, from 1; 0 is "before the first entry".
pub type Index = u64;

/// One log entry. `data` is opaque to Raft (Warren stores a `command::LogEntry` archive); an
/// entry with empty data is the no-op a new leader appends to commit entries of its term, and
/// the runtime applies nothing for it.
#[derive(Clone, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
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

#[derive(Clone, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    /// The sender's term; for a pre-vote request, the term the sender would campaign in (its
    /// own term + 1, which it has not adopted); for a granted pre-vote, that same term.
    pub term: Term,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
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
    /// `lost_log`: the follower's last index, when it lacks entries the heartbeat's `commit`
    /// says it matched. The leader sent that commit after the follower acknowledged them
    /// durable, so it lost its log since (a wiped data dir rejoining); the leader probes it
    /// again. A fact about the past that stays true if the answer is delayed or duplicated.
    HeartbeatResponse {
        read_context: u64,
        lost_log: Option<Index>,
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct HardState {
    pub term: Term,
    pub vote: Option<NodeId>,
    pub commit: Index,
}

impl Message {
    /// The message as one rkyv archive, what a peer connection carries (length-prefixed).
    pub fn to_bytes(&self) -> Vec<u8> {
        rkyv::to_bytes::<rkyv::rancor::Error>(self).expect("a Raft message serializes").into_vec()
    }

    /// Validates bytes from a peer and returns the message; never panics on bad input. rkyv's
    /// validation rejects broken structure, not every damaged or cut buffer (a prefix of a
    /// message can be a valid smaller one): the peer transport frames each message with its
    /// length and a crc32c, as the WAL frames records.
    pub fn from_bytes(bytes: &[u8]) -> Result<Message, String> {
        let archived = rkyv::access::<ArchivedMessage, rkyv::rancor::Error>(bytes)
            .map_err(|e| format!("invalid Raft message: {e}"))?;
        rkyv::deserialize::<Message, rkyv::rancor::Error>(archived)
            .map_err(|e| format!("Raft message does not deserialize: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry() -> impl Strategy<Value = Entry> {
        (any::<u64>(), any::<u64>(), proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(term, index, data)| Entry { term, index, data })
    }

    fn body() -> impl Strategy<Value = Body> {
        prop_oneof![
            (any::<u64>(), any::<u64>()).prop_map(|(last_index, last_term)| Body::PreVote { last_index, last_term }),
            any::<bool>().prop_map(|granted| Body::PreVoteResponse { granted }),
            (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(last_index, last_term, transfer)| Body::Vote {
                last_index,
                last_term,
                transfer
            }),
            any::<bool>().prop_map(|granted| Body::VoteResponse { granted }),
            (any::<u64>(), any::<u64>(), proptest::collection::vec(entry(), 0..4), any::<u64>()).prop_map(
                |(prev_index, prev_term, entries, commit)| Body::Append { prev_index, prev_term, entries, commit }
            ),
            (any::<bool>(), any::<u64>(), any::<u64>()).prop_map(|(success, index, last_index)| Body::AppendResponse {
                success,
                index,
                last_index
            }),
            (any::<u64>(), any::<u64>()).prop_map(|(commit, read_context)| Body::Heartbeat { commit, read_context }),
            (any::<u64>(), any::<Option<u64>>())
                .prop_map(|(read_context, lost_log)| Body::HeartbeatResponse { read_context, lost_log }),
            Just(Body::TimeoutNow),
        ]
    }

    proptest! {
        #[test]
        fn messages_survive_the_wire(from in any::<u64>(), to in any::<u64>(), term in any::<u64>(), body in body()) {
            let message = Message { from, to, term, body };
            prop_assert_eq!(Message::from_bytes(&message.to_bytes()), Ok(message));
        }

        #[test]
        fn garbage_is_an_error_not_a_crash(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            // Whatever random bytes decode to (if anything) is a well-formed message.
            if let Ok(message) = Message::from_bytes(&bytes) {
                prop_assert_eq!(Message::from_bytes(&message.to_bytes()), Ok(message));
            }
        }
    }
}
