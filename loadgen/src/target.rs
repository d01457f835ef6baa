//! What loadgen learns about the servers it measures, before timing starts, from the `srvr` and
//! `conf` four-letter words: each server's version, mode and configuration, and from them the
//! kind of server (Warren, ZooKeeper, loadgen's canned server), Warren's git commit, the leader
//! and a one-line description of the cluster. A refused or failing word is recorded, never
//! fatal: Apache ZooKeeper answers only whitelisted words.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::session::four_letter;

/// Bound on each four-letter word: a slow answer costs at most this before the run.
const WORD_TIMEOUT: Duration = Duration::from_secs(2);

/// What `srvr` says first in loadgen's canned server (canned.rs).
pub const CANNED_VERSION_PREFIX: &str = "loadgen-canned-";

/// Warren's version line ends in this, then the commit (net/src/server/fourlw.rs).
const WARREN_COMMIT_MARK: &str = "built on warren commit ";

/// One server as its four-letter words describe it.
#[derive(Debug, Clone, Default)]
pub struct ServerInfo {
    pub addr: String,
    /// `srvr`'s "Zookeeper version:" value.
    pub version: Option<String>,
    /// `srvr`'s "Mode:" value: standalone, leader, follower, observer.
    pub mode: Option<String>,
    /// `conf`'s key=value lines; None when refused or unanswered.
    pub conf: Option<Map<String, Value>>,
    /// Why srvr gave no version, if it did not.
    pub srvr_error: Option<String>,
    /// Why conf gave no key=value lines, if it did not.
    pub conf_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Warren,
    Zookeeper,
    Canned,
    Unknown,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Warren => "warren",
            Kind::Zookeeper => "zookeeper",
            Kind::Canned => "canned",
            Kind::Unknown => "unknown",
        }
    }
}

/// The kind of server whose srvr version line is `version` (None: srvr gave none).
pub fn kind_of(version: Option<&str>) -> Kind {
    match version {
        None => Kind::Unknown,
        Some(v) if v.contains(CANNED_VERSION_PREFIX) => Kind::Canned,
        Some(v) if v.contains("warren") => Kind::Warren,
        Some(_) => Kind::Zookeeper,
    }
}

/// Warren's git commit from its version line ("3.8.4-warren-0.1.0, built on warren commit X").
pub fn warren_commit(version: &str) -> Option<&str> {
    let (_, rest) = version.split_once(WARREN_COMMIT_MARK)?;
    rest.split_whitespace().next()
}

/// The value after `key:` on a line of a four-letter answer.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')).map(str::trim)
}

/// `conf`'s key=value lines as a JSON object of strings; None when there are none (a refusal
/// such as "conf is not executed because it is not in the whitelist.").
pub fn parse_conf(text: &str) -> Option<Map<String, Value>> {
    let pairs: Map<String, Value> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), Value::String(v.trim().to_string())))
        .collect();
    (!pairs.is_empty()).then_some(pairs)
}

impl ServerInfo {
    /// Asks `addr` for srvr and conf, each bounded by WORD_TIMEOUT.
    pub fn probe(name: &str, addr: SocketAddr) -> ServerInfo {
        let mut info = ServerInfo { addr: name.to_string(), ..ServerInfo::default() };
        match four_letter(addr, "srvr", WORD_TIMEOUT) {
            Ok(text) => {
                info.version = field(&text, "Zookeeper version").map(str::to_string);
                info.mode = field(&text, "Mode").map(str::to_string);
                if info.version.is_none() {
                    info.srvr_error = Some(format!("no version in srvr: {:?}", text.trim()));
                }
            }
            Err(e) => info.srvr_error = Some(format!("srvr: {e:#}")),
        }
        match four_letter(addr, "conf", WORD_TIMEOUT) {
            Ok(text) => {
                info.conf = parse_conf(&text);
                if info.conf.is_none() {
                    info.conf_error = Some(format!("no key=value in conf: {:?}", text.trim()));
                }
            }
            Err(e) => info.conf_error = Some(format!("conf: {e:#}")),
        }
        info
    }

    /// The version as loadgen has always recorded it: the value, or why it is unknown.
    pub fn version_or_reason(&self) -> String {
        match (&self.version, &self.srvr_error) {
            (Some(v), _) => v.clone(),
            (None, Some(e)) => format!("unknown ({e})"),
            (None, None) => "unknown".to_string(),
        }
    }

    fn json(&self) -> Value {
        json!({
            "addr": self.addr,
            "version": self.version,
            "mode": self.mode,
            "conf": self.conf,
            "srvr_error": self.srvr_error,
            "conf_error": self.conf_error,
        })
    }
}

/// All the servers of a run, in --servers order.
#[derive(Debug, Clone)]
pub struct Target {
    pub servers: Vec<ServerInfo>,
}

impl Target {
    pub fn probe(names: &[String], addrs: &[SocketAddr]) -> Target {
        assert_eq!(names.len(), addrs.len(), "one address per server name");
        Target { servers: names.iter().zip(addrs).map(|(n, a)| ServerInfo::probe(n, *a)).collect() }
    }

    /// The kind of the first server that named its version (a cluster runs one kind).
    pub fn kind(&self) -> Kind {
        kind_of(self.servers.iter().find_map(|s| s.version.as_deref()))
    }

    pub fn git_commit(&self) -> Option<&str> {
        self.servers.iter().find_map(|s| warren_commit(s.version.as_deref()?))
    }

    pub fn leader(&self) -> Option<&str> {
        self.servers.iter().find(|s| s.mode.as_deref() == Some("leader")).map(|s| s.addr.as_str())
    }

    /// E.g. "1 node (standalone), warren" or "3 nodes: 1 leader, 2 followers, zookeeper".
    pub fn cluster(&self) -> String {
        let modes: Vec<&str> = self.servers.iter().map(|s| s.mode.as_deref().unwrap_or("unknown mode")).collect();
        describe_cluster(&modes, self.kind())
    }

    /// The "target" object of the results JSON; `version` is the first server's, as before.
    pub fn json(&self) -> Value {
        json!({
            "version": self.servers.first().map(ServerInfo::version_or_reason),
            "nodes": self.servers.len(),
            "kind": self.kind().name(),
            "git_commit": self.git_commit(),
            "servers": self.servers.iter().map(ServerInfo::json).collect::<Vec<_>>(),
            "leader": self.leader(),
        })
    }
}

/// A one-line description of a cluster from its servers' modes: leaders first, then
/// followers, observers, and any other mode in first-seen order.
pub fn describe_cluster(modes: &[&str], kind: Kind) -> String {
    if let [mode] = modes {
        return format!("1 node ({mode}), {}", kind.name());
    }
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for &mode in modes {
        match counts.iter_mut().find(|(m, _)| *m == mode) {
            Some((_, n)) => *n += 1,
            None => counts.push((mode, 1)),
        }
    }
    let rank = |mode: &str| ["leader", "follower", "observer"].iter().position(|m| *m == mode).unwrap_or(3);
    counts.sort_by_key(|&(mode, _)| rank(mode));
    let parts: Vec<String> = counts.iter().map(|&(mode, n)| format!("{n} {}", plural(mode, n))).collect();
    format!("{} nodes: {}, {}", modes.len(), parts.join(", "), kind.name())
}

/// leader/follower/observer take an s; "standalone" and "unknown mode" read right as they are.
fn plural(mode: &str, n: usize) -> String {
    match mode {
        "leader" | "follower" | "observer" if n != 1 => format!("{mode}s"),
        _ => mode.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_version_lines() {
        assert_eq!(kind_of(Some("3.8.4-warren-0.1.0, built on warren commit 3f2a9c1d0e4b")), Kind::Warren);
        assert_eq!(kind_of(Some("loadgen-canned-0.1.0, built on loadgen canned-server")), Kind::Canned);
        assert_eq!(
            kind_of(Some("3.8.4-2f44b0c1c0d0bab4e1f1d2b5bd1a1cfbc4ddc4b4, built on 02/13/2024 20:56 UTC")),
            Kind::Zookeeper
        );
        assert_eq!(kind_of(None), Kind::Unknown);
    }

    #[test]
    fn warren_commit_follows_its_mark() {
        assert_eq!(
            warren_commit("3.8.4-warren-0.1.0, built on warren commit 3f2a9c1d0e4b-dirty"),
            Some("3f2a9c1d0e4b-dirty")
        );
        assert_eq!(warren_commit("3.8.4-warren-0.1.0, built on warren"), None);
        assert_eq!(warren_commit("3.8.4-abc, built on 02/13/2024 20:56 UTC"), None);
    }

    #[test]
    fn conf_lines_become_an_object() {
        let conf = parse_conf("clientPort=2181\ndataDir=/tmp/d\ncores=2\nshards=8\n").unwrap();
        assert_eq!(conf["cores"], "2");
        assert_eq!(conf["shards"], "8");
        assert_eq!(conf["dataDir"], "/tmp/d");
        assert_eq!(parse_conf("conf is not executed because it is not in the whitelist.\n"), None);
        assert_eq!(parse_conf(""), None);
    }

    #[test]
    fn srvr_fields() {
        let srvr = "Zookeeper version: 3.8.4-warren-0.1.0, built on warren commit abc\nMode: follower\nNode count: 4\n";
        assert_eq!(field(srvr, "Mode"), Some("follower"));
        assert_eq!(field(srvr, "Zookeeper version"), Some("3.8.4-warren-0.1.0, built on warren commit abc"));
        assert_eq!(field(srvr, "Zxid"), None);
    }

    #[test]
    fn cluster_descriptions() {
        assert_eq!(describe_cluster(&["standalone"], Kind::Warren), "1 node (standalone), warren");
        assert_eq!(
            describe_cluster(&["follower", "leader", "follower"], Kind::Zookeeper),
            "3 nodes: 1 leader, 2 followers, zookeeper"
        );
        assert_eq!(describe_cluster(&["standalone", "standalone"], Kind::Canned), "2 nodes: 2 standalone, canned");
    }

    #[test]
    fn leader_is_the_server_in_leader_mode() {
        let server = |addr: &str, mode: &str| ServerInfo {
            addr: addr.to_string(),
            version: Some("3.8.4-x".to_string()),
            mode: Some(mode.to_string()),
            ..ServerInfo::default()
        };
        let t = Target { servers: vec![server("a:1", "follower"), server("b:2", "leader")] };
        assert_eq!(t.leader(), Some("b:2"));
        assert_eq!(t.kind(), Kind::Zookeeper);
        assert_eq!(t.json()["leader"], "b:2");
        let solo = Target { servers: vec![server("a:1", "standalone")] };
        assert_eq!(solo.leader(), None);
        assert!(solo.json()["leader"].is_null());
    }
}
