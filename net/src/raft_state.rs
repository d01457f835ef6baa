//! The durable term and vote of a Raft node (its "hard state" but for the commit index, which a
//! restarted node relearns from the leader). Raft MUST have them on disk before the node answers
//! a vote or acts in a newer term (Raft 5.1, 5.2), so they are written before such a Ready's
//! messages go out. They change only around elections: one small file, replaced atomically
//! (`durable_file::write_atomic`: temp file, fsync, rename, directory fsync).
//!
//! Format: magic `WRNHS001`, term u64, vote u64 (0 = none), crc32c of those 24 bytes, all
//! big-endian. A missing file is term 0 and no vote (a new node); a damaged one is an error,
//! never a guess: a forgotten vote could elect two leaders in one term.

use std::path::Path;

use engine::raft::{NodeId, Term};

const MAGIC: &[u8; 8] = b"WRNHS001";
const FILE_BYTES: usize = 28;

#[derive(Debug, thiserror::Error)]
pub enum RaftStateError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is damaged ({why}): refusing to guess the node's term and vote")]
    Damaged { path: String, why: &'static str },
}

/// The term and vote stored at `path`; term 0 and no vote when there is no file yet.
pub fn load(path: &Path) -> Result<(Term, Option<NodeId>), RaftStateError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, None)),
        Err(source) => return Err(RaftStateError::Read { path: path.display().to_string(), source }),
    };
    let damaged = |why| RaftStateError::Damaged { path: path.display().to_string(), why };
    if bytes.len() != FILE_BYTES {
        return Err(damaged("wrong size"));
    }
    if &bytes[..8] != MAGIC {
        return Err(damaged("bad magic"));
    }
    let crc = u32::from_be_bytes(bytes[24..28].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[..24]) != crc {
        return Err(damaged("checksum mismatch"));
    }
    let term = u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let vote = u64::from_be_bytes(bytes[16..24].try_into().expect("8 bytes"));
    Ok((term, (vote != 0).then_some(vote)))
}

/// Replaces the stored term and vote, durably, before this returns.
pub fn store(path: &Path, term: Term, vote: Option<NodeId>) -> std::io::Result<()> {
    assert_ne!(vote, Some(0), "node id 0 means no vote");
    let mut bytes = Vec::with_capacity(FILE_BYTES);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&term.to_be_bytes());
    bytes.extend_from_slice(&vote.unwrap_or(0).to_be_bytes());
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_be_bytes());
    crate::durable_file::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_node_starts_at_term_0_without_a_vote_and_keeps_what_it_stores() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft-state");
        assert_eq!(load(&path).unwrap(), (0, None));
        store(&path, 7, Some(3)).unwrap();
        assert_eq!(load(&path).unwrap(), (7, Some(3)));
        store(&path, 8, None).unwrap();
        assert_eq!(load(&path).unwrap(), (8, None));
        // Nothing is left beside it (the temp file was renamed over it).
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_damaged_file_is_refused_not_guessed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft-state");
        store(&path, 5, Some(2)).unwrap();
        let good = std::fs::read(&path).unwrap();
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            std::fs::write(&path, &bad).unwrap();
            let err = load(&path).unwrap_err();
            assert!(matches!(err, RaftStateError::Damaged { .. }), "byte {at}: {err}");
        }
        std::fs::write(&path, &good[..20]).unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("wrong size"));
    }
}
