//! Znode paths: validation (ZooKeeper's PathUtils.validatePath rules), parent/name split, and
//! the shard that owns a path.

use crate::command::ShardId;
use crate::error::ZkError;

/// Checks a path as ZooKeeper does; `BadArguments` when it is not a valid znode path.
/// For sequential creates, pass `sequential = true`: the path then may end with '/', since
/// the suffix is appended to it.
pub fn validate(path: &str, sequential: bool) -> Result<(), ZkError> {
    if sequential {
        return validate_chars(&format!("{path}1"));
    }
    validate_chars(path)
}

fn validate_chars(path: &str) -> Result<(), ZkError> {
    if !path.starts_with('/') {
        return Err(ZkError::BadArguments);
    }
    if path.len() == 1 {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err(ZkError::BadArguments);
    }
    // One pass over the bytes for the components ('/' is ASCII, so never inside a character).
    let bytes = path.as_bytes();
    let mut start = 1;
    for end in 1..=bytes.len() {
        if end < bytes.len() && bytes[end] != b'/' {
            continue;
        }
        if matches!(&bytes[start..end], b"" | b"." | b"..") {
            return Err(ZkError::BadArguments);
        }
        start = end + 1;
    }
    let forbidden = if path.is_ascii() {
        bytes.iter().any(|&b| is_forbidden_char(char::from(b)))
    } else {
        path.chars().any(is_forbidden_char)
    };
    if forbidden {
        return Err(ZkError::BadArguments);
    }
    Ok(())
}

fn is_forbidden_char(c: char) -> bool {
    let c = c as u32;
    c <= 0x1f || (0x7f..=0x9f).contains(&c) || (0xd800..=0xf8ff).contains(&c) || c >= 0xfff0
}

/// The parent of a valid path other than "/".
pub fn parent(path: &str) -> &str {
    debug_assert!(path.len() > 1 && path.starts_with('/'));
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => "/",
    }
}

/// The last component of a valid path other than "/".
pub fn name(path: &str) -> &str {
    &path[path.rfind('/').map_or(0, |i| i + 1)..]
}

/// Joins a parent path and a child name.
pub fn join(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// Number of digits of a sequential suffix (`%010d` of the parent's cversion).
pub const SEQUENCE_DIGITS: usize = 10;

/// The shard that owns every child of "/" whose name ends in a sequence suffix (and each
/// one's subtree): the children of one parent are numbered from one counter, as on ZooKeeper,
/// and the children of "/" are the only ones spread over shards.
pub const ROOT_SEQUENCE_SHARD: ShardId = 0;

/// The shard that owns `path` among `shard_count` shards: chosen by the first path component,
/// so a subtree lives in one shard. A first component that ends in 10 digits (a sequential
/// child of "/", or a name that looks like one) lives in `ROOT_SEQUENCE_SHARD`, where the
/// sequential create that makes it draws its number: the suffix is not known until the create
/// applies, so the name cannot choose the counter. "/" itself has no owner: callers gather it
/// from all shards (see `Shard` docs); this returns 0 for it.
pub fn shard_of(path: &str, shard_count: u16) -> ShardId {
    assert!(shard_count > 0, "shard_count must be positive");
    let rest = path.strip_prefix('/').unwrap_or(path);
    if rest.is_empty() {
        return 0;
    }
    let first = rest.split('/').next().unwrap_or("");
    if has_sequence_suffix(first) {
        return ROOT_SEQUENCE_SHARD;
    }
    (fnv1a(first.as_bytes()) % shard_count as u64) as ShardId
}

/// The shard a create is sent to: the owner of the path it makes. A sequential create's path
/// is its prefix with a suffix still to come, so it is routed as if the suffix were there.
pub fn create_shard_of(path: &str, sequential: bool, shard_count: u16) -> ShardId {
    if sequential {
        shard_of(&format!("{path}{:0width$}", 0, width = SEQUENCE_DIGITS), shard_count)
    } else {
        shard_of(path, shard_count)
    }
}

fn has_sequence_suffix(component: &str) -> bool {
    component.bytes().rev().take_while(u8::is_ascii_digit).count() >= SEQUENCE_DIGITS
}

/// FNV-1a: stable across builds and platforms (the shard of a path is persistent state).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= *b as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid_paths() {
        for ok in ["/", "/a", "/a/b", "/a-b.c", "/..a", "/a.", "/zookeeper/quota", "/ä/ö", "/日本"] {
            assert_eq!(validate(ok, false), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "a",
            "/a/",
            "//",
            "/a//b",
            "/.",
            "/a/..",
            "/a/./b",
            "/a\u{0}b",
            "/a\u{1}",
            "/a\u{7f}",
            "/ä\u{9f}",
            "/\u{e000}",
            "/a/\u{fff0}",
            "/ä/..",
        ] {
            assert_eq!(validate(bad, false), Err(ZkError::BadArguments), "{bad:?}");
        }
        assert_eq!(validate("/a/", true), Ok(()));
        assert_eq!(validate("/", true), Ok(()));
    }

    #[test]
    fn parent_and_name() {
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("/a/b/c"), "/a/b");
        assert_eq!(name("/a/b/c"), "c");
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
    }

    #[test]
    fn subtree_and_sequential_children_of_root_stay_in_one_shard() {
        for n in 1..16u16 {
            assert_eq!(shard_of("/app", n), shard_of("/app/x/y", n));
            assert_eq!(shard_of("/job-0000000042", n), ROOT_SEQUENCE_SHARD);
            assert_eq!(shard_of("/job-0000000042/child", n), ROOT_SEQUENCE_SHARD);
            assert!(shard_of("/anything", n) < n);
        }
    }

    #[test]
    fn every_sequential_child_of_root_is_created_in_one_shard_whatever_its_prefix() {
        let count = 8;
        for prefix in ["/q-", "/job-", "/zz-", "/", "/lock-", "/x0000000001-"] {
            assert_eq!(create_shard_of(prefix, true, count), ROOT_SEQUENCE_SHARD, "{prefix}");
        }
        let spread: std::collections::BTreeSet<ShardId> =
            ["/q-", "/job-", "/zz-", "/a", "/b", "/c", "/d"].iter().map(|p| create_shard_of(p, false, count)).collect();
        assert!(spread.len() > 1, "plain top-level names still spread over shards: {spread:?}");
        // Deeper sequential children stay with their subtree.
        assert_eq!(create_shard_of("/app/n-", true, count), shard_of("/app", count));
    }
}
