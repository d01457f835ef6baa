//! ACLs: validation and "auth" expansion of the ACL a create/setACL carries (ZooKeeper's
//! PrepRequestProcessor.fixupACL), the permission check (ZooKeeperServer.checkACL) and the
//! identity schemes Warren knows: `world:anyone`, `digest` and `ip` (address or CIDR).

use crate::error::ZkError;
use crate::types::perms;
use crate::types::{Acl, Id};
use base64::Engine as _;
use sha1::{Digest, Sha1};

/// `user:base64(sha1("user:password"))`: the id a `digest` addAuth of `user:password` yields
/// (ZooKeeper's DigestAuthenticationProvider.generateDigest).
pub fn digest_id(user_password: &str) -> String {
    let user = user_password.split(':').next().unwrap_or("");
    let hash = Sha1::digest(user_password.as_bytes());
    format!("{user}:{}", base64::engine::general_purpose::STANDARD.encode(hash))
}

/// Validates the ACL of a create or setACL and replaces `auth` entries by the caller's
/// authenticated identities. `InvalidAcl` when the list is empty, an id is not valid for its
/// scheme, the scheme is unknown, or an `auth` entry finds no authenticated identity.
pub fn fixup(acl: &[Acl], auth: &[Id]) -> Result<Vec<Acl>, ZkError> {
    if acl.is_empty() {
        return Err(ZkError::InvalidAcl);
    }
    let mut fixed = Vec::with_capacity(acl.len());
    for entry in dedup(acl) {
        if entry.id.scheme == "auth" {
            expand_auth(entry.perms, auth, &mut fixed)?;
        } else if is_valid_id(&entry.id) {
            fixed.push(entry.clone());
        } else {
            return Err(ZkError::InvalidAcl);
        }
    }
    Ok(fixed)
}

/// ZooKeeper removes duplicate entries (keeping the first) before fixing up.
fn dedup(acl: &[Acl]) -> Vec<&Acl> {
    let mut unique: Vec<&Acl> = Vec::with_capacity(acl.len());
    for entry in acl {
        if !unique.contains(&entry) {
            unique.push(entry);
        }
    }
    unique
}

/// An `auth` entry grants its permissions to every authenticated identity of the caller.
/// The `ip` provider does not count as authenticated in ZooKeeper (isAuthenticated is false).
fn expand_auth(perms: i32, auth: &[Id], out: &mut Vec<Acl>) -> Result<(), ZkError> {
    let mut found = false;
    for id in auth.iter().filter(|id| is_authenticated_scheme(&id.scheme)) {
        found = true;
        out.push(Acl { perms, id: id.clone() });
    }
    if found {
        Ok(())
    } else {
        Err(ZkError::InvalidAcl)
    }
}

fn is_authenticated_scheme(scheme: &str) -> bool {
    scheme != "ip" && scheme != "world" && scheme != "auth"
}

/// Whether an id is well-formed for its scheme (AuthenticationProvider.isValid).
pub fn is_valid_id(id: &Id) -> bool {
    match id.scheme.as_str() {
        "world" => id.id == "anyone",
        "digest" => is_valid_digest(&id.id),
        "ip" => parse_ip_expr(&id.id).is_some(),
        _ => false,
    }
}

/// ZooKeeper: `id.split(":").length == 2` (Java's split drops trailing empty parts).
fn is_valid_digest(id: &str) -> bool {
    let parts: Vec<&str> = id.split(':').collect();
    let trimmed = parts.iter().rposition(|p| !p.is_empty()).map_or(0, |i| i + 1);
    trimmed == 2
}

/// `NoAuth` unless some entry of `acl` grants one of the bits of `perm` to the caller.
pub fn check(acl: &[Acl], perm: i32, auth: &[Id]) -> Result<(), ZkError> {
    if allows(acl, perm, auth) {
        Ok(())
    } else {
        Err(ZkError::NoAuth)
    }
}

/// The permissions `acl` grants everyone: those of its world:anyone entries, or all of them
/// for an empty ACL (which allows everything, see `allows`).
pub fn world_perms(acl: &[Acl]) -> i32 {
    if acl.is_empty() {
        return perms::ALL;
    }
    acl.iter().filter(|entry| entry.id.scheme == "world" && entry.id.id == "anyone").fold(0, |all, e| all | e.perms)
}

/// ZooKeeper's checkACL: an empty ACL allows everything; otherwise an entry must carry one of
/// the requested bits and match world:anyone or one of the caller's identities.
pub fn allows(acl: &[Acl], perm: i32, auth: &[Id]) -> bool {
    if acl.is_empty() {
        return true;
    }
    acl.iter().filter(|entry| entry.perms & perm != 0).any(|entry| grants(&entry.id, auth))
}

fn grants(acl_id: &Id, auth: &[Id]) -> bool {
    if acl_id.scheme == "world" && acl_id.id == "anyone" {
        return true;
    }
    auth.iter().filter(|id| id.scheme == acl_id.scheme).any(|id| match acl_id.scheme.as_str() {
        "ip" => ip_matches(&id.id, &acl_id.id),
        _ => id.id == acl_id.id,
    })
}

/// The ACL a caller without ADMIN sees from getACL: digest hashes are hidden as `user:x`
/// (ZooKeeper 3.8 FinalRequestProcessor).
pub fn redact_digests(acl: &[Acl]) -> Vec<Acl> {
    acl.iter()
        .map(|entry| {
            if entry.id.scheme != "digest" {
                return entry.clone();
            }
            let user = entry.id.id.split(':').next().unwrap_or("");
            Acl { perms: entry.perms, id: Id::new("digest", &format!("{user}:x")) }
        })
        .collect()
}

/// Whether the client address `client_ip` falls in `acl_expr` (an address or `addr/bits`).
pub fn ip_matches(client_ip: &str, acl_expr: &str) -> bool {
    let (Some((acl_addr, bits)), Some(client)) = (parse_ip_expr(acl_expr), parse_addr(client_ip)) else {
        return false;
    };
    if client.len() != acl_addr.len() {
        return false;
    }
    masked_equal(&client, &acl_addr, bits)
}

fn masked_equal(a: &[u8], b: &[u8], bits: usize) -> bool {
    (0..a.len()).all(|i| {
        let bits_here = bits.saturating_sub(i * 8).min(8);
        let mask: u8 = if bits_here == 0 { 0 } else { 0xffu8 << (8 - bits_here) };
        a[i] & mask == b[i] & mask
    })
}

/// `addr` or `addr/bits`: the address bytes and the prefix length.
fn parse_ip_expr(expr: &str) -> Option<(Vec<u8>, usize)> {
    let (addr, bits) = match expr.split_once('/') {
        Some((addr, bits)) => (addr, Some(bits)),
        None => (expr, None),
    };
    let bytes = parse_addr(addr)?;
    let max_bits = bytes.len() * 8;
    let bits = match bits {
        Some(b) => b.parse::<usize>().ok().filter(|b| *b <= max_bits)?,
        None => max_bits,
    };
    Some((bytes, bits))
}

fn parse_addr(addr: &str) -> Option<Vec<u8>> {
    if let Some(v4) = parse_v4(addr) {
        return Some(v4.to_vec());
    }
    addr.parse::<std::net::Ipv6Addr>().ok().map(|v6| v6.octets().to_vec())
}

/// Four dot-separated decimal octets, as ZooKeeper's v4addr2Bytes accepts them.
fn parse_v4(addr: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = addr.split('.');
    for byte in out.iter_mut() {
        let part = parts.next()?;
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *byte = part.parse::<u8>().ok()?;
    }
    parts.next().is_none().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::perms::*;

    fn acl(perms: i32, scheme: &str, id: &str) -> Acl {
        Acl { perms, id: Id::new(scheme, id) }
    }

    #[test]
    fn digest_matches_zookeeper_vector() {
        assert_eq!(digest_id("super:test"), "super:D/InIHSb7yEEbrWz8b9l71RjZJU=");
    }

    #[test]
    fn world_anyone_allows_everyone() {
        let open = Acl::open_unsafe();
        assert!(allows(&open, READ, &[]));
        assert!(allows(&[acl(READ, "world", "anyone")], READ, &[]));
        assert_eq!(check(&[acl(READ, "world", "anyone")], WRITE, &[]), Err(ZkError::NoAuth));
    }

    #[test]
    fn digest_identity_must_match() {
        let bob = digest_id("bob:secret");
        let entries = [acl(ALL, "digest", &bob)];
        assert!(allows(&entries, WRITE, &[Id::new("digest", &bob)]));
        assert!(!allows(&entries, WRITE, &[Id::new("digest", &digest_id("bob:wrong"))]));
        assert!(!allows(&entries, WRITE, &[Id::new("ip", "127.0.0.1")]));
    }

    #[test]
    fn ip_address_and_cidr() {
        assert!(ip_matches("10.1.2.3", "10.0.0.0/8"));
        assert!(!ip_matches("11.1.2.3", "10.0.0.0/8"));
        assert!(ip_matches("127.0.0.1", "127.0.0.1"));
        assert!(!ip_matches("127.0.0.2", "127.0.0.1"));
        assert!(ip_matches("192.168.1.77", "192.168.1.64/26"));
        assert!(!ip_matches("192.168.1.128", "192.168.1.64/26"));
        assert!(ip_matches("1.2.3.4", "0.0.0.0/0"));
        assert!(!ip_matches("::1", "127.0.0.1"));
        let entries = [acl(READ, "ip", "10.0.0.0/8")];
        assert!(allows(&entries, READ, &[Id::new("ip", "10.9.9.9")]));
        assert!(!allows(&entries, READ, &[Id::new("ip", "192.168.0.1")]));
    }

    #[test]
    fn id_validation() {
        assert!(is_valid_id(&Id::new("world", "anyone")));
        assert!(!is_valid_id(&Id::new("world", "someone")));
        assert!(is_valid_id(&Id::new("digest", "bob:hash")));
        assert!(!is_valid_id(&Id::new("digest", "bob")));
        assert!(!is_valid_id(&Id::new("digest", "bob:")));
        assert!(!is_valid_id(&Id::new("digest", "a:b:c")));
        assert!(is_valid_id(&Id::new("ip", "10.0.0.1")));
        assert!(is_valid_id(&Id::new("ip", "10.0.0.0/8")));
        assert!(!is_valid_id(&Id::new("ip", "10.0.0.0/33")));
        assert!(!is_valid_id(&Id::new("ip", "10.0.0")));
        assert!(!is_valid_id(&Id::new("ip", "10.0.0.256")));
        assert!(!is_valid_id(&Id::new("sasl", "bob")));
    }

    #[test]
    fn fixup_rules() {
        assert_eq!(fixup(&[], &[]), Err(ZkError::InvalidAcl));
        assert_eq!(fixup(&[acl(ALL, "auth", "")], &[]), Err(ZkError::InvalidAcl));
        // ip identities are not "authenticated" for the auth scheme.
        assert_eq!(fixup(&[acl(ALL, "auth", "")], &[Id::new("ip", "127.0.0.1")]), Err(ZkError::InvalidAcl));
        let bob = Id::new("digest", &digest_id("bob:pw"));
        let fixed = fixup(&[acl(READ, "auth", "")], &[Id::new("ip", "1.2.3.4"), bob.clone()]).unwrap();
        assert_eq!(fixed, vec![Acl { perms: READ, id: bob }]);
        let dup = fixup(&[acl(READ, "world", "anyone"), acl(READ, "world", "anyone")], &[]).unwrap();
        assert_eq!(dup.len(), 1);
        assert_eq!(fixup(&[acl(READ, "foo", "bar")], &[]), Err(ZkError::InvalidAcl));
    }

    #[test]
    fn redaction_hides_hashes() {
        let redacted = redact_digests(&[acl(ALL, "digest", "bob:abc="), acl(READ, "ip", "1.2.3.4")]);
        assert_eq!(redacted[0].id.id, "bob:x");
        assert_eq!(redacted[1].id.id, "1.2.3.4");
    }
}
