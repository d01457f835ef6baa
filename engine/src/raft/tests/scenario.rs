//! Scenario files in the style of etcd-io/raft's testdata: each file under
//! `engine/src/raft/testdata/` opens with comments stating the property under test, then
//! commands, each followed by `----` and what the cluster did (every message delivered or
//! dropped, every Ready). The test runs every file and compares; `UPDATE_SCENARIOS=1` rewrites
//! the expected blocks instead (then read the diff before committing it).
//!
//! Commands: `add-nodes N [no-pre-vote] [no-check-quorum]`, `campaign ID`, `stabilize`,
//! `tick ID [COUNT]`, `propose ID DATA`, `read-index ID CONTEXT`, `transfer ID TO`,
//! `isolate ID`, `heal`, `restart ID`, `status`.

use super::{Cluster, Ready};
use crate::raft::{Body, Message, NodeId, Role};

pub fn message(m: &Message) -> String {
    let body = match &m.body {
        Body::PreVote { last_index, last_term } => format!("PreVote last={last_term}/{last_index}"),
        Body::PreVoteResponse { granted } => format!("PreVoteResponse granted={granted}"),
        Body::Vote { last_index, last_term, transfer } => {
            format!("Vote last={last_term}/{last_index}{}", if *transfer { " transfer" } else { "" })
        }
        Body::VoteResponse { granted } => format!("VoteResponse granted={granted}"),
        Body::Append { prev_index, prev_term, entries, commit } => {
            let entries: Vec<String> = entries.iter().map(|e| format!("{}/{}", e.term, e.index)).collect();
            format!("Append prev={prev_term}/{prev_index} entries=[{}] commit={commit}", entries.join(" "))
        }
        Body::AppendResponse { success, index, last_index } => {
            format!("AppendResponse success={success} index={index} last={last_index}")
        }
        Body::Heartbeat { commit, read_context } => format!("Heartbeat commit={commit} read={read_context}"),
        Body::HeartbeatResponse { read_context, lost_log: None } => format!("HeartbeatResponse read={read_context}"),
        Body::HeartbeatResponse { read_context, lost_log: Some(last) } => {
            format!("HeartbeatResponse read={read_context} lost-log last={last}")
        }
        Body::TimeoutNow => "TimeoutNow".to_string(),
    };
    format!("{}->{} term={} {body}", m.from, m.to, m.term)
}

pub fn ready(id: NodeId, r: &Ready) -> String {
    let mut parts = Vec::new();
    if let Some(hs) = r.hard_state {
        let vote = hs.vote.map_or("-".to_string(), |v| v.to_string());
        parts.push(format!("hard-state term={} vote={vote} commit={}", hs.term, hs.commit));
    }
    if let Some(from) = r.truncate_from {
        parts.push(format!("cut-from {from}"));
    }
    if let (Some(first), Some(last)) = (r.entries.first(), r.entries.last()) {
        parts.push(format!("persist {}..{} (last term {})", first.index, last.index, last.term));
    }
    if let (Some(first), Some(last)) = (r.committed.first(), r.committed.last()) {
        parts.push(format!("apply {}..{}", first.index, last.index));
    }
    for read in &r.read_states {
        parts.push(format!("read {} at {}", read.context, read.index));
    }
    if parts.is_empty() {
        parts.push("send only".to_string());
    }
    format!("n{id} ready: {}", parts.join("; "))
}

fn status(c: &Cluster) -> Vec<String> {
    c.nodes
        .iter()
        .map(|(id, node)| {
            let raft = &node.raft;
            let role = match raft.role() {
                Role::Follower => "follower",
                Role::PreCandidate => "pre-candidate",
                Role::Candidate => "candidate",
                Role::Leader => "leader",
            };
            let leader = raft.leader().map_or("-".to_string(), |l| l.to_string());
            format!(
                "n{id}: {role} term={} leader={leader} commit={} last={}/{}",
                raft.term(),
                raft.commit_index(),
                raft.log().last_term(),
                raft.log().last_index()
            )
        })
        .collect()
}

fn arg(words: &[&str], i: usize) -> u64 {
    words
        .get(i)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("`{}`: argument {i} must be a number", words.join(" ")))
}

/// Runs one command; returns what happened.
fn run(cluster: &mut Option<Cluster>, line: &str) -> Vec<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    if words[0] == "add-nodes" {
        let tweak: fn(&mut crate::raft::Config) =
            match (words.contains(&"no-pre-vote"), words.contains(&"no-check-quorum")) {
                (false, false) => |_| {},
                (true, false) => |c| c.pre_vote = false,
                (false, true) => |c| c.check_quorum = false,
                (true, true) => |c| {
                    c.pre_vote = false;
                    c.check_quorum = false;
                },
            };
        let mut c = Cluster::with(arg(&words, 1), 1, tweak);
        c.trace = Some(Vec::new());
        *cluster = Some(c);
        return status(cluster.as_ref().expect("just set"));
    }
    let c = cluster.as_mut().expect("add-nodes first");
    let mut out = Vec::new();
    match words[0] {
        "campaign" => {
            c.raft(arg(&words, 1)).campaign_now();
            c.process(arg(&words, 1));
        }
        "stabilize" => c.stabilize(),
        "tick" => {
            for _ in 0..words.get(2).map_or(1, |_| arg(&words, 2)) {
                c.tick(arg(&words, 1));
            }
        }
        "propose" => {
            let result = c.raft(arg(&words, 1)).propose(words[2].as_bytes().to_vec());
            out.push(format!("{result:?}"));
            c.process(arg(&words, 1));
        }
        "read-index" => {
            let result = c.raft(arg(&words, 1)).read_index(arg(&words, 2));
            out.push(format!("{result:?}"));
            c.process(arg(&words, 1));
        }
        "transfer" => {
            let result = c.raft(arg(&words, 1)).transfer_leadership(arg(&words, 2));
            out.push(format!("{result:?}"));
            c.process(arg(&words, 1));
        }
        "isolate" => c.isolate(arg(&words, 1)),
        "heal" => c.heal(),
        "restart" => c.crash(arg(&words, 1)),
        "status" => out.extend(status(c)),
        other => panic!("unknown scenario command `{other}`"),
    }
    let mut lines = c.trace.replace(Vec::new()).expect("tracing");
    lines.extend(out);
    lines
}

/// Parses a file into (comments and command line, expected output) blocks and runs them.
fn run_file(text: &str) -> (String, bool) {
    let mut cluster = None;
    let mut rewritten = String::new();
    let mut same = true;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() || line.starts_with('#') {
            rewritten.push_str(line);
            rewritten.push('\n');
            continue;
        }
        assert_eq!(lines.next(), Some("----"), "`{line}` must be followed by ----");
        let mut expected = Vec::new();
        while let Some(l) = lines.peek() {
            if l.is_empty() {
                break;
            }
            expected.push(lines.next().expect("peeked").to_string());
        }
        let got = run(&mut cluster, line);
        let got = if got.is_empty() { vec!["ok".to_string()] } else { got };
        same &= got == expected;
        rewritten.push_str(&format!("{line}\n----\n{}\n", got.join("\n")));
    }
    (rewritten, same)
}

#[test]
fn scenario_files() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/raft/testdata");
    let mut files: Vec<_> = std::fs::read_dir(&dir).expect("testdata dir").map(|e| e.expect("entry").path()).collect();
    files.sort();
    assert!(!files.is_empty(), "no scenario files in {}", dir.display());
    let update = std::env::var_os("UPDATE_SCENARIOS").is_some();
    let mut failed = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("readable scenario");
        let (rewritten, same) = run_file(&text);
        if update {
            std::fs::write(&path, rewritten).expect("rewrite scenario");
        } else if !same {
            failed.push(format!("{}:\n{rewritten}", path.display()));
        }
    }
    assert!(failed.is_empty(), "scenarios differ (UPDATE_SCENARIOS=1 rewrites them):\n{}", failed.join("\n"));
}
