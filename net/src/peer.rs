//! What peers say to each other and its framing on the wire (`server/transport.rs` runs the
//! connections). A frame is `[len u32 BE][crc32c u32 BE][message]`: the message is a validated
//! rkyv archive of a `PeerMessage`, and the length and checksum are needed because rkyv's
//! validation alone accepts some damaged or cut buffers. A peer that sends a frame over
//! `FRAME_BYTES_MAX`, a bad checksum or an invalid archive is cut off (the caller drops the
//! connection and the dialer reconnects); nothing is guessed.

use engine::command::{Command, ShardId};
use engine::raft::{Message, NodeId};
use engine::types::{SessionId, Zxid};
use rkyv::{Archive, Deserialize, Serialize};

/// One message between the same core of two nodes (core c talks to core c: the group of the
/// core's log).
#[derive(Clone, Debug, PartialEq, Archive, Serialize, Deserialize)]
pub enum PeerMessage {
    /// The first frame on a connection: who dials, for which core, with how many cores and
    /// shards (the groups and the shard of every path are fixed when a cluster is created;
    /// a node with another count is refused, never let to commit an entry the others would
    /// route elsewhere).
    Hello { node: NodeId, core: u32, cores: u32, shards: u32 },
    /// Raft between the two replicas of the core's group.
    Raft(Message),
    /// A write a client sent to a follower, for the group's leader to propose; `origin` and
    /// `token` come back in the entry so that the follower answers its client. No command: a
    /// ReadIndex round for the follower's syncs and linearizable reads of one turn, answered
    /// with `ReadIndex`.
    /// `dependencies`: see `ShardRequest::dependencies`. `term`: the term of the leader it is
    /// sent to; any other term's leader drops it (per-session order, `driver.rs`).
    Forward {
        origin: NodeId,
        token: u64,
        term: u64,
        shard: ShardId,
        command: Option<Command>,
        dependencies: Vec<(u16, Zxid)>,
    },
    /// A lease probe to the group's leader (`server/lease.rs`), sent by each core of a
    /// follower every `LEASE_PROBE_INTERVAL`; from core 0, with the sessions that showed
    /// signs of life on the sender since its last probe (the leader of the session group
    /// renews them). The leader answers `Touched` once a ReadIndex round started after it
    /// arrived confirmed that a majority still follows it.
    /// `urgent`: a reattach waits for it; the leader confirms it with a heartbeat round of its
    /// own rather than the next regular heartbeat.
    Touch { token: u64, sessions: Vec<SessionId>, urgent: bool },
    /// The answer to `Touch`: a confirmed leader of the group heard the probe; `unknown` are
    /// the probe's sessions it no longer tracks (expired or closed).
    Touched { token: u64, unknown: Vec<SessionId> },
    /// The leader's answer to a forwarded ReadIndex round: once the asker has applied through
    /// `index`, it has everything committed before the round reached the leader.
    ReadIndex { token: u64, index: u64 },
    /// A follower must know that no entry at or below `at_least` is still to come in the
    /// group (a consistent cut of a read across groups needs it): the leader commits a fence,
    /// an entry with a zxid above it and nothing to apply.
    Fence { at_least: Zxid },
    /// A piece of the leader's snapshot file of the group for a follower that needs entries
    /// the leader no longer holds (`server/snapshots.rs`): the file of the snapshot after entry
    /// `index` (of `term`), `total` bytes long, from byte `offset` on. The follower answers
    /// each with `SnapshotAck`; the leader sends the next piece once the last one is acked.
    SnapshotChunk { index: u64, term: u64, offset: u64, total: u64, bytes: Vec<u8> },
    /// The follower holds the first `received` bytes of the snapshot after `index`; with
    /// `installed`, it has switched to it.
    SnapshotAck { index: u64, received: u64, installed: bool },
}

impl PeerMessage {
    pub fn to_bytes(&self) -> Vec<u8> {
        rkyv::to_bytes::<rkyv::rancor::Error>(self).expect("a peer message serializes").into_vec()
    }

    /// Validates bytes from a peer; never panics on bad input.
    pub fn from_bytes(bytes: &[u8]) -> Result<PeerMessage, String> {
        let archived = rkyv::access::<ArchivedPeerMessage, rkyv::rancor::Error>(bytes)
            .map_err(|e| format!("invalid peer message: {e}"))?;
        rkyv::deserialize::<PeerMessage, rkyv::rancor::Error>(archived)
            .map_err(|e| format!("peer message does not deserialize: {e}"))
    }
}

/// Bytes of the length and checksum before each message.
pub const FRAME_HEADER_BYTES: usize = 8;
/// Largest message accepted: appends are bounded by `Config::max_append_bytes` (1 MiB) plus
/// one entry, and an entry by max-request-bytes; 64 MiB leaves room and still bounds memory.
pub const FRAME_BYTES_MAX: usize = 64 << 20;

#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    TooLarge { len: usize },
    BadChecksum { len: usize },
    Invalid(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge { len } => write!(f, "peer frame of {len} bytes exceeds {FRAME_BYTES_MAX}"),
            FrameError::BadChecksum { len } => write!(f, "peer frame of {len} bytes fails its checksum"),
            FrameError::Invalid(why) => write!(f, "peer frame holds no valid message: {why}"),
        }
    }
}

/// Appends `message` as one frame to `out` (what one loop turn's batch of sends is built from).
pub fn encode_frame(out: &mut Vec<u8>, message: &PeerMessage) {
    let body = message.to_bytes();
    assert!(body.len() <= FRAME_BYTES_MAX, "a peer message of {} bytes exceeds the frame limit", body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
}

/// The first whole frame at the start of `buf`: Ok(Some((message, bytes used))), Ok(None) if
/// more bytes are needed, Err if the peer sent something it must be cut off for. The length is
/// checked before anything of the body is needed, so an oversized frame is refused at once.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(PeerMessage, usize)>, FrameError> {
    if buf.len() < FRAME_HEADER_BYTES {
        return Ok(None);
    }
    let len = u32::from_be_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge { len });
    }
    let Some(body) = buf.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len) else { return Ok(None) };
    let crc = u32::from_be_bytes(buf[4..8].try_into().expect("4 bytes"));
    if crc32c::crc32c(body) != crc {
        return Err(FrameError::BadChecksum { len });
    }
    // rkyv needs its archive aligned; a copy aligns it (frames are small next to the IO).
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(len);
    aligned.extend_from_slice(body);
    let message = PeerMessage::from_bytes(&aligned).map_err(FrameError::Invalid)?;
    Ok(Some((message, FRAME_HEADER_BYTES + len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::command::SetDataOp;
    use engine::raft::{Body, Entry};

    fn messages() -> Vec<PeerMessage> {
        let entries = (1..=3).map(|i| Entry { term: 2, index: i, data: vec![i as u8; 100 * i as usize] }).collect();
        let set_data = SetDataOp { path: "/a".into(), data: None, version: 3, auth: Vec::new() };
        vec![
            PeerMessage::Raft(Message {
                from: 1,
                to: 2,
                term: 2,
                body: Body::Append { prev_index: 0, prev_term: 0, entries, commit: 0 },
            }),
            PeerMessage::Hello { node: 2, core: 1, cores: 2, shards: 8 },
            PeerMessage::Raft(Message {
                from: 2,
                to: 1,
                term: 2,
                body: Body::AppendResponse { success: true, index: 3, last_index: 3 },
            }),
            PeerMessage::Forward {
                origin: 3,
                token: 99,
                term: 4,
                shard: 5,
                command: Some(Command::SetData(set_data)),
                dependencies: vec![(1, 1 << 52)],
            },
            PeerMessage::Forward { origin: 3, token: 100, term: 4, shard: 5, command: None, dependencies: Vec::new() },
            PeerMessage::Touch { token: 3, sessions: vec![1, -7, i64::MAX], urgent: true },
            PeerMessage::Touched { token: 3, unknown: vec![-7] },
            PeerMessage::Fence { at_least: 1 << 52 },
            PeerMessage::ReadIndex { token: 7, index: 1 << 40 },
            PeerMessage::Raft(Message {
                from: 1,
                to: 3,
                term: 2,
                body: Body::Heartbeat { commit: 3, read_context: 9 },
            }),
        ]
    }

    #[test]
    fn frames_split_anywhere_come_out_whole_and_in_order() {
        let mut stream = Vec::new();
        for m in messages() {
            encode_frame(&mut stream, &m);
        }
        for cut in 0..stream.len() {
            // The receiver sees the first `cut` bytes, then the rest.
            let mut got = Vec::new();
            let mut buf = stream[..cut].to_vec();
            let mut rest = &stream[cut..];
            loop {
                match decode_frame(&buf).expect("valid stream") {
                    Some((m, used)) => {
                        got.push(m);
                        buf.drain(..used);
                    }
                    None if !rest.is_empty() => {
                        buf.extend_from_slice(rest);
                        rest = &[];
                    }
                    None => break,
                }
            }
            assert_eq!(got, messages(), "cut at {cut}");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn a_damaged_frame_is_refused() {
        let mut frame = Vec::new();
        encode_frame(&mut frame, &messages()[0]);
        for at in FRAME_HEADER_BYTES..frame.len() {
            let mut damaged = frame.clone();
            damaged[at] ^= 0x10;
            assert!(
                matches!(decode_frame(&damaged), Err(FrameError::BadChecksum { .. })),
                "a flip at byte {at} was not caught"
            );
        }
    }

    #[test]
    fn an_oversized_length_is_refused_before_its_body_arrives() {
        let mut header = ((FRAME_BYTES_MAX + 1) as u32).to_be_bytes().to_vec();
        header.extend_from_slice(&[0; 4]);
        assert_eq!(decode_frame(&header), Err(FrameError::TooLarge { len: FRAME_BYTES_MAX + 1 }));
    }

    #[test]
    fn a_good_checksum_over_garbage_is_still_refused() {
        let body = vec![0xab; 40];
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        frame.extend_from_slice(&body);
        assert!(matches!(decode_frame(&frame), Err(FrameError::Invalid(_))));
    }
}
