//! What a Raft entry of a core's group holds: a `LogEntry` archive behind a header naming who
//! proposed it, so the node that holds the client's request answers it and every other node
//! only applies it:
//!
//! ```text
//!   0  origin  u64   node id of the proposer (bit 63: a dependency list follows)
//!   8  token   u64   the proposer's handle of the waiting request
//!  16  zxid    i64   the LogEntry's zxid (read without decoding the archive)
//!  24  [dependencies: count u64, (group u64, zxid i64) × count]   (`encode_proposal_after`)
//!  ..  LogEntry rkyv archive
//! ```
//!
//! A fence is the header alone; a leader's no-op is an empty entry.

use engine::command::LogEntry;
use engine::raft::{Entry, NodeId};
use engine::types::Zxid;

const PROPOSAL_HEADER_BYTES: usize = 24;

/// A fence: an entry with a zxid and nothing to apply (`PeerMessage::Fence`); its origin and
/// token are 0 (nobody waits for its answer).
pub fn encode_fence(zxid: Zxid) -> Vec<u8> {
    let mut data = Vec::with_capacity(PROPOSAL_HEADER_BYTES);
    data.extend_from_slice(&0u64.to_le_bytes());
    data.extend_from_slice(&0u64.to_le_bytes());
    data.extend_from_slice(&zxid.to_le_bytes());
    data
}

/// An entry's data: who proposed it, their handle of the request, the zxid and the archive.
#[cfg(test)]
pub fn encode_proposal(origin: NodeId, token: u64, entry: &LogEntry) -> Vec<u8> {
    encode_proposal_after(origin, token, entry, &[])
}

/// Set in the origin word when a list of dependencies follows the header.
const DEPENDENCIES_FLAG: u64 = 1 << 63;

/// A proposal that other groups must have applied through `dependencies` (group, zxid) before
/// any replica applies it (see `Dependencies`). The list sits between the header and the
/// archive, 8-byte aligned so the archive stays aligned:
///
/// ```text
///  24  count   u64
///  32  (group u64, zxid i64) × count
/// ```
pub fn encode_proposal_after(origin: NodeId, token: u64, entry: &LogEntry, dependencies: &[(u16, Zxid)]) -> Vec<u8> {
    let archive = entry.to_bytes();
    let list_bytes = if dependencies.is_empty() { 0 } else { 8 + 16 * dependencies.len() };
    let mut data = Vec::with_capacity(PROPOSAL_HEADER_BYTES + list_bytes + archive.len());
    let flagged = if dependencies.is_empty() { origin } else { origin | DEPENDENCIES_FLAG };
    data.extend_from_slice(&flagged.to_le_bytes());
    data.extend_from_slice(&token.to_le_bytes());
    data.extend_from_slice(&entry.zxid.to_le_bytes());
    if !dependencies.is_empty() {
        data.extend_from_slice(&(dependencies.len() as u64).to_le_bytes());
        for (group, zxid) in dependencies {
            data.extend_from_slice(&u64::from(*group).to_le_bytes());
            data.extend_from_slice(&zxid.to_le_bytes());
        }
    }
    data.extend_from_slice(&archive);
    data
}

/// The parts of a proposal: (origin, token, zxid, LogEntry archive); a fence has no archive.
pub fn decode_proposal(data: &[u8]) -> Result<(NodeId, u64, Zxid, &[u8]), String> {
    let (origin, token, zxid, _, archive) = split_proposal(data)?;
    Ok((origin, token, zxid, archive))
}

/// The dependencies of a proposal: (group, zxid) pairs (see `encode_proposal_after`).
pub fn proposal_dependencies(data: &[u8]) -> Result<Vec<(u16, Zxid)>, String> {
    let (_, _, _, list, _) = split_proposal(data)?;
    list.chunks_exact(16)
        .map(|pair| {
            let group = u64::from_le_bytes(pair[..8].try_into().expect("8 bytes"));
            let zxid = i64::from_le_bytes(pair[8..].try_into().expect("8 bytes"));
            u16::try_from(group).map(|group| (group, zxid)).map_err(|_| format!("dependency on group {group}"))
        })
        .collect()
}

/// (origin, token, zxid, dependency list bytes, archive).
type ProposalParts<'a> = (NodeId, u64, Zxid, &'a [u8], &'a [u8]);

fn split_proposal(data: &[u8]) -> Result<ProposalParts<'_>, String> {
    if data.len() < PROPOSAL_HEADER_BYTES {
        return Err(format!("an entry of {} bytes is shorter than a proposal", data.len()));
    }
    let u64_at = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"));
    let (flagged, token, zxid) = (u64_at(0), u64_at(8), u64_at(16) as Zxid);
    let rest = &data[PROPOSAL_HEADER_BYTES..];
    if flagged & DEPENDENCIES_FLAG == 0 {
        return Ok((flagged, token, zxid, &[], rest));
    }
    let count =
        rest.get(..8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).ok_or("cut dependency list")?;
    let list_bytes = usize::try_from(count)
        .ok()
        .and_then(|n| n.checked_mul(16))
        .filter(|bytes| 8 + bytes <= rest.len())
        .ok_or_else(|| format!("a dependency list of {count} does not fit in the entry"))?;
    Ok((flagged & !DEPENDENCIES_FLAG, token, zxid, &rest[8..8 + list_bytes], &rest[8 + list_bytes..]))
}

/// The zxid of a log entry's proposal, 0 for a leader's no-op.
fn zxid_of(entry: &Entry) -> Zxid {
    if entry.data.is_empty() {
        return 0;
    }
    decode_proposal(&entry.data).map_or(0, |(_, _, zxid, _)| zxid)
}

/// The first token a run of this node hands out: above every token an earlier run handed out
/// (4096 per microsecond of its life would be needed to reach it), because an entry proposed
/// before a crash can commit after the restart and must not answer a new request that happens
/// to carry the same token.
pub fn first_token(now_micros: i64) -> u64 {
    (now_micros.max(0) as u64).saturating_mul(4096).max(1)
}

/// The highest zxid in `entries` (0 if none).
pub fn highest_zxid(entries: &[Entry]) -> Zxid {
    entries.iter().map(zxid_of).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::command::{Command, SetDataOp};

    fn log_entry(zxid: Zxid) -> LogEntry {
        let command =
            Command::SetData(SetDataOp { path: "/a".into(), data: Some(vec![1, 2]), version: -1, auth: Vec::new() });
        LogEntry { shard: 3, zxid, time_ms: 5, command }
    }

    #[test]
    fn a_proposal_round_trips_and_names_its_origin() {
        let data = encode_proposal(2, 77, &log_entry(1234));
        let (origin, token, zxid, archive) = decode_proposal(&data).unwrap();
        assert_eq!((origin, token, zxid), (2, 77, 1234));
        assert_eq!(LogEntry::from_bytes(archive).unwrap(), log_entry(1234));
        assert!(decode_proposal(&data[..PROPOSAL_HEADER_BYTES - 1]).is_err(), "cut header");
        assert_eq!(decode_proposal(&encode_fence(99)).unwrap(), (0, 0, 99, &[][..]), "a fence has no archive");
    }

    #[test]
    fn a_proposal_with_dependencies_round_trips_and_keeps_its_archive_aligned() {
        let dependencies = [(0, 17), (3, i64::MAX)];
        let data = encode_proposal_after(2, 77, &log_entry(1234), &dependencies);
        let (origin, token, zxid, archive) = decode_proposal(&data).unwrap();
        assert_eq!((origin, token, zxid), (2, 77, 1234), "the flag is not part of the origin");
        assert_eq!(LogEntry::from_bytes(archive).unwrap(), log_entry(1234));
        assert_eq!((data.len() - archive.len()) % 8, 0, "the archive starts 8-byte aligned");
        assert_eq!(proposal_dependencies(&data).unwrap(), dependencies.to_vec());
        assert_eq!(proposal_dependencies(&encode_proposal(2, 77, &log_entry(1))).unwrap(), vec![]);
        assert!(decode_proposal(&data[..PROPOSAL_HEADER_BYTES + 20]).is_err(), "cut list");
        let mut huge = data.clone();
        huge[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_proposal(&huge).is_err(), "a count that does not fit is an error, not a panic");
    }

    #[test]
    fn tokens_of_a_later_run_start_above_every_token_of_an_earlier_one() {
        let started = 1_764_530_000_000_000; // µs since the epoch, in 2025
        let earlier_run_after_an_hour = first_token(started) + 3_600_000_000 * 1000; // 1000 tokens per µs
        assert!(first_token(started + 3_600_000_000) > earlier_run_after_an_hour);
        assert_eq!(first_token(-5), 1, "a clock before the epoch still gives a valid token");
    }

    #[test]
    fn the_highest_zxid_skips_no_ops() {
        let entries = vec![
            Entry { term: 1, index: 1, data: Vec::new() },
            Entry { term: 1, index: 2, data: encode_proposal(1, 1, &log_entry(90)) },
            Entry { term: 1, index: 3, data: encode_proposal(1, 2, &log_entry(40)) },
        ];
        assert_eq!(highest_zxid(&entries), 90);
        assert_eq!(highest_zxid(&[]), 0);
    }
}
