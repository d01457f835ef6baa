//! The four-letter words (ruok, srvr, stat, mntr, conf, cons, wchs, envi, isro, dump): a
//! connection whose first four bytes are one of them gets a text answer and is closed.

use super::core::Core;
use super::metrics::{java_double, CoreMetrics, Distribution, Millis};
use super::msg::{CoreStats, TxnCounts};
use super::role::Role;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use std::fmt::Write;
use std::rc::Rc;

pub const VERSION_LINE: &str = concat!("3.8.4-warren-", env!("CARGO_PKG_VERSION"));
/// What follows the version after ", ": names the commit this binary was built from (set by
/// build.rs; `unknown` outside a git checkout) so a result can be traced to its code.
pub const BUILT_ON: &str = concat!("built on warren commit ", env!("WARREN_GIT_COMMIT"));

const WORDS: [&str; 11] = ["ruok", "srvr", "stat", "mntr", "conf", "cons", "wchs", "envi", "isro", "dump", "snap"];

/// The word, if the first four bytes of a connection are one.
pub fn word(first: &[u8; 4]) -> Option<&'static str> {
    WORDS.into_iter().find(|w| w.as_bytes() == first)
}

pub async fn answer(core: &Rc<Core>, word: &str, mut stream: TcpStream) -> std::io::Result<()> {
    let text = match word {
        "ruok" => "imok".to_string(),
        "isro" => "rw".to_string(),
        "conf" => conf(core),
        "envi" => envi(),
        // Warren's own: every group takes a snapshot now (one already under way counts).
        "snap" => {
            for other in 0..core.cores() {
                core.send(other, super::msg::Msg::TakeSnapshot);
            }
            "snapshot requested of every group\n".to_string()
        }
        _ => {
            let stats = core.gather_stats().await;
            match word {
                "srvr" => srvr(core.role(), &stats),
                "stat" => stat(core.role(), &stats),
                "mntr" => mntr(core, &stats),
                "cons" => cons(&stats),
                "wchs" => wchs(&stats),
                _ => dump(&stats),
            }
        }
    };
    stream.write_all(text.as_bytes()).await?;
    stream.close().await
}

struct Totals {
    received: u64,
    sent: u64,
    connections: usize,
    outstanding: u64,
    zxid: i64,
    znodes: u64,
    watches: u64,
    watched_paths: u64,
    ephemerals: u64,
    data_bytes: u64,
    sessions: u64,
    large_requests_rejected: u64,
    gathered_read_retries: u64,
    gathered_read_timeouts: u64,
    reads_inline: u64,
    reads_linearizable: u64,
    txns: TxnCounts,
    session_closes_redone: u64,
    session_leases_lapsed: u64,
    metrics: CoreMetrics,
}

fn totals(stats: &[Box<CoreStats>]) -> Totals {
    let mut t = Totals {
        received: 0,
        sent: 0,
        connections: 0,
        outstanding: 0,
        zxid: 0,
        znodes: 0,
        watches: 0,
        watched_paths: 0,
        ephemerals: 0,
        data_bytes: 0,
        sessions: 0,
        large_requests_rejected: 0,
        gathered_read_retries: 0,
        gathered_read_timeouts: 0,
        reads_inline: 0,
        reads_linearizable: 0,
        txns: TxnCounts::default(),
        session_closes_redone: 0,
        session_leases_lapsed: 0,
        metrics: CoreMetrics::default(),
    };
    for core in stats {
        t.connections += core.connections.len();
        t.received += core.connections.iter().map(|c| c.received).sum::<u64>();
        t.sent += core.connections.iter().map(|c| c.sent).sum::<u64>();
        t.outstanding += core.outstanding_requests;
        t.sessions += core.live_sessions;
        t.metrics.merge(&core.metrics);
        t.large_requests_rejected += core.large_requests_rejected;
        t.gathered_read_retries += core.gathered_read_retries;
        t.gathered_read_timeouts += core.gathered_read_timeouts;
        t.reads_inline += core.reads_inline;
        t.reads_linearizable += core.reads_linearizable;
        t.txns.add(&core.txns);
        t.session_closes_redone += core.session_closes_redone;
        t.session_leases_lapsed += core.session_leases_lapsed;
        for (_, shard, zxid) in &core.shards {
            t.zxid = t.zxid.max(*zxid);
            // Every shard has its own local "/"; the root is counted once, below.
            t.znodes += shard.znode_count.saturating_sub(1);
            t.watches += shard.watch_count;
            t.watched_paths += shard.watched_path_count;
            t.ephemerals += shard.ephemeral_count;
            t.data_bytes += shard.approximate_data_size;
        }
    }
    t.znodes += 1;
    t
}

fn srvr(role: Role, stats: &[Box<CoreStats>]) -> String {
    let t = totals(stats);
    let latency = Millis(&t.metrics.requests_us);
    let mut s = String::new();
    let _ = writeln!(s, "Zookeeper version: {VERSION_LINE}, {BUILT_ON}");
    let _ = writeln!(s, "Latency min/avg/max: {}/{}/{}", latency.min(), latency.avg(), latency.max());
    let _ = writeln!(s, "Received: {}", t.received);
    let _ = writeln!(s, "Sent: {}", t.sent);
    let _ = writeln!(s, "Connections: {}", t.connections);
    let _ = writeln!(s, "Outstanding: {}", t.outstanding);
    let _ = writeln!(s, "Zxid: {:#x}", t.zxid);
    let _ = writeln!(s, "Mode: {}", role.as_str());
    let _ = writeln!(s, "Node count: {}", t.znodes);
    s
}

fn stat(role: Role, stats: &[Box<CoreStats>]) -> String {
    let mut s = format!("Zookeeper version: {VERSION_LINE}, {BUILT_ON}\nClients:\n");
    s.push_str(&cons(stats));
    s.push('\n');
    let srvr = srvr(role, stats);
    s.push_str(srvr.split_once('\n').map_or("", |(_, rest)| rest));
    s
}

fn cons(stats: &[Box<CoreStats>]) -> String {
    let mut s = String::new();
    for core in stats {
        for c in &core.connections {
            let _ = writeln!(
                s,
                " /{}[1](queued={},recved={},sent={},sid={:#x},to={},lzxid={:#x})",
                c.peer, c.outstanding, c.received, c.sent, c.session, c.timeout_ms, c.last_zxid
            );
        }
    }
    s
}

fn mntr(core: &Rc<Core>, stats: &[Box<CoreStats>]) -> String {
    let t = totals(stats);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    let latency = Millis(&t.metrics.requests_us);
    let mut rows: Vec<(String, String)> = vec![
        ("zk_version", format!("{VERSION_LINE}, {BUILT_ON}")),
        ("zk_avg_latency", latency.avg()),
        ("zk_max_latency", latency.max().to_string()),
        ("zk_min_latency", latency.min().to_string()),
        ("zk_packets_received", t.received.to_string()),
        ("zk_packets_sent", t.sent.to_string()),
        ("zk_num_alive_connections", t.connections.to_string()),
        ("zk_outstanding_requests", t.outstanding.to_string()),
        ("zk_server_state", core.role().as_str().to_string()),
        ("zk_znode_count", t.znodes.to_string()),
        ("zk_watch_count", t.watches.to_string()),
        ("zk_ephemerals_count", t.ephemerals.to_string()),
        ("zk_approximate_data_size", t.data_bytes.to_string()),
        ("zk_open_file_descriptor_count", fds.to_string()),
        ("zk_global_sessions", t.sessions.to_string()),
        ("zk_large_requests_rejected", t.large_requests_rejected.to_string()),
        ("warren_gathered_read_retries", t.gathered_read_retries.to_string()),
        ("warren_gathered_read_timeouts", t.gathered_read_timeouts.to_string()),
        ("warren_reads_inline", t.reads_inline.to_string()),
        ("warren_reads_linearizable", t.reads_linearizable.to_string()),
        ("warren_multis_across_groups_committed", t.txns.committed.to_string()),
        ("warren_multis_across_groups_aborted", t.txns.aborted.to_string()),
        ("warren_multis_across_groups_retried", t.txns.retried.to_string()),
        ("warren_multis_across_groups_gave_up", t.txns.gave_up.to_string()),
        ("warren_reads_waited_for_multis", t.txns.reads_waited.to_string()),
        ("warren_session_closes_redone", t.session_closes_redone.to_string()),
        ("warren_session_leases_lapsed", t.session_leases_lapsed.to_string()),
        ("warren_serving", u8::from(core.out_of_contact(std::time::Instant::now()).is_none()).to_string()),
        ("warren_cores", core.cores().to_string()),
        ("warren_shards", core.config.shards.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let m = &t.metrics;
    rows.extend(zk_millis_rows("readlatency", &m.reads_us, true));
    rows.extend(zk_millis_rows("updatelatency", &m.updates_us, true));
    rows.extend(zk_millis_rows("fsynctime", &m.fsync_us, false));
    rows.extend(zk_count_rows("sync_processor_batch_size", &m.batch_entries));
    rows.extend(micros_rows("warren_request_latency_us", &m.requests_us));
    rows.extend(micros_rows("warren_read_latency_us", &m.reads_us));
    rows.extend(micros_rows("warren_update_latency_us", &m.updates_us));
    rows.extend(micros_rows("warren_wal_fsync_us", &m.fsync_us));
    rows.extend(micros_rows("warren_commit_queue_us", &m.commit_queue_us));
    rows.extend(micros_rows("warren_commit_quorum_us", &m.commit_quorum_us));
    rows.extend(micros_rows("warren_apply_us", &m.apply_us));
    rows.push(("warren_node_id".to_string(), core.config.node_id.to_string()));
    let leaders = &core.group_leaders;
    for group in 0..leaders.groups() {
        // The node id of the group's leader as this node knows it; 0 while unknown.
        rows.push((format!("warren_group_{group}_leader"), leaders.leader(group).unwrap_or(0).to_string()));
        // Why a node of a cluster does not serve: no recent contact with the group's leader
        // (-1: never), or the group has not applied what an installed snapshot requires.
        let contact_ms = leaders.contact(group).map_or(-1, |at| at.elapsed().as_millis() as i64);
        rows.push((format!("warren_group_{group}_leader_contact_ms_ago"), contact_ms.to_string()));
        rows.push((format!("warren_group_{group}_applied_zxid"), leaders.applied(group).to_string()));
        rows.push((format!("warren_group_{group}_required_zxid"), leaders.required(group).to_string()));
    }
    for stats in stats {
        let (g, status) = (stats.core, stats.group);
        rows.push((format!("warren_group_{g}_term"), status.term.to_string()));
        rows.push((format!("warren_group_{g}_first_index"), status.first_index.to_string()));
        rows.push((format!("warren_group_{g}_last_index"), status.last_index.to_string()));
        rows.push((format!("warren_group_{g}_commit_index"), status.commit_index.to_string()));
        rows.push((format!("warren_group_{g}_applied_index"), status.applied_index.to_string()));
        rows.push((format!("warren_group_{g}_follower_lag"), status.follower_lag.to_string()));
        rows.push((format!("warren_group_{g}_applies_held"), status.applies_held.to_string()));
        let snap = stats.snapshots;
        rows.push((format!("warren_group_{g}_snapshot_index"), snap.index.to_string()));
        rows.push((format!("warren_group_{g}_snapshot_last_write_ms"), snap.last_write_ms.to_string()));
        rows.push((format!("warren_group_{g}_snapshot_last_bytes"), snap.last_bytes.to_string()));
        rows.push((format!("warren_group_{g}_snapshot_running"), u8::from(snap.running).to_string()));
        rows.push((format!("warren_group_{g}_snapshots_sent"), snap.sent.to_string()));
        rows.push((format!("warren_group_{g}_snapshots_installed"), snap.installed.to_string()));
    }
    rows.into_iter().map(|(k, v)| format!("{k}\t{v}\n")).collect()
}

/// Percentiles reported, as ZooKeeper's AvgMinMaxPercentileCounter names them.
const PERCENTILES: [(&str, f64); 4] = [("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("p999", 0.999)];

/// ZooKeeper's `zk_{avg,min,max,cnt,sum}_<name>` (+ `zk_p50_<name>`... with percentiles) of a
/// time distribution, in milliseconds.
fn zk_millis_rows(name: &str, d: &Distribution, percentiles: bool) -> Vec<(String, String)> {
    let ms = Millis(d);
    let mut rows = vec![
        (format!("zk_avg_{name}"), ms.avg()),
        (format!("zk_min_{name}"), ms.min().to_string()),
        (format!("zk_max_{name}"), ms.max().to_string()),
        (format!("zk_cnt_{name}"), d.count().to_string()),
        (format!("zk_sum_{name}"), ms.sum().to_string()),
    ];
    if percentiles {
        rows.extend(PERCENTILES.iter().map(|(p, q)| (format!("zk_{p}_{name}"), ms.quantile(*q).to_string())));
    }
    rows
}

/// ZooKeeper's `zk_{avg,min,max,cnt,sum}_<name>` of a count distribution.
fn zk_count_rows(name: &str, d: &Distribution) -> Vec<(String, String)> {
    vec![
        (format!("zk_avg_{name}"), java_double(d.mean())),
        (format!("zk_min_{name}"), d.min().to_string()),
        (format!("zk_max_{name}"), d.max().to_string()),
        (format!("zk_cnt_{name}"), d.count().to_string()),
        (format!("zk_sum_{name}"), d.sum().to_string()),
    ]
}

/// Warren's own `<prefix>_{cnt,sum,min,avg,max,p50,p95,p99,p999}` in microseconds: most
/// requests take well under ZooKeeper's unit of a millisecond.
fn micros_rows(prefix: &str, d: &Distribution) -> Vec<(String, String)> {
    let mut rows = vec![
        (format!("{prefix}_cnt"), d.count().to_string()),
        (format!("{prefix}_sum"), d.sum().to_string()),
        (format!("{prefix}_min"), d.min().to_string()),
        (format!("{prefix}_avg"), java_double(d.mean())),
        (format!("{prefix}_max"), d.max().to_string()),
    ];
    rows.extend(PERCENTILES.iter().map(|(p, q)| (format!("{prefix}_{p}"), d.quantile(*q).to_string())));
    rows
}

fn wchs(stats: &[Box<CoreStats>]) -> String {
    let t = totals(stats);
    let watchers: std::collections::BTreeSet<u64> =
        stats.iter().flat_map(|c| c.watches.iter().map(|(conn, _)| *conn)).collect();
    format!("{} connections watching {} paths\nTotal watches:{}\n", watchers.len(), t.watched_paths, t.watches)
}

fn dump(stats: &[Box<CoreStats>]) -> String {
    let t = totals(stats);
    let mut sessions: Vec<(i64, Vec<String>)> = Vec::new();
    for core in stats {
        for (session, paths) in &core.ephemerals {
            match sessions.iter_mut().find(|(s, _)| s == session) {
                Some((_, all)) => all.extend(paths.iter().cloned()),
                None => sessions.push((*session, paths.clone())),
            }
        }
    }
    sessions.sort();
    let mut s = format!("SessionTracker dump:\nGlobal Sessions({}):\nephemeral nodes dump:\n", t.sessions);
    let _ = writeln!(s, "Sessions with Ephemerals ({}):", sessions.len());
    for (session, mut paths) in sessions {
        paths.sort();
        let _ = writeln!(s, "{session:#x}:");
        for path in paths {
            let _ = writeln!(s, "\t{path}");
        }
    }
    s.push_str("Connections with Ephemerals / watches:\n");
    for core in stats {
        for (conn, paths) in &core.watches {
            let _ = writeln!(s, "{conn:#x}");
            for path in paths {
                let _ = writeln!(s, "\t{path}");
            }
        }
    }
    s
}

fn conf(core: &Rc<Core>) -> String {
    let c = &core.config;
    format!(
        "clientPort={}\nclientPortAddress={}\ndataDir={}\ndataLogDir={}\nmaxClientCnxns=0\nminSessionTimeout={}\nmaxSessionTimeout={}\nserverId={}\ncores={}\nshards={}\nmaxRequestBytes={}\nlinearizableReads={}\nleaderPlacementDelayMs={}\nelectionTimeoutMs={}\nleaderContactTimeoutMs={}\nretainedLogEntries={}\n",
        c.port,
        c.host,
        c.data_dir.display(),
        c.data_dir.join("wal").display(),
        c.min_session_timeout_ms,
        c.max_session_timeout_ms,
        c.node_id,
        c.cores,
        c.shards,
        c.max_request_bytes,
        c.linearizable_reads,
        c.leader_placement_delay_ms,
        c.election_timeout_ms,
        c.leader_contact_timeout_ms,
        c.retained_log_entries
    )
}

fn envi() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let cwd = std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default();
    format!(
        "Environment:\nzookeeper.version={VERSION_LINE}, {BUILT_ON}\nhost.name={}\nos.name={}\nos.arch={}\nuser.dir={}\n",
        host.trim(),
        std::env::consts::OS,
        std::env::consts::ARCH,
        cwd
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clients parse the `3.8.4-warren-<version>` prefix; loadgen reads the commit after
    /// "built on warren commit ".
    #[test]
    fn version_lines_name_the_release_and_the_commit() {
        let expected =
            format!("3.8.4-warren-{}, built on warren commit {}", env!("CARGO_PKG_VERSION"), env!("WARREN_GIT_COMMIT"));
        assert!(!env!("WARREN_GIT_COMMIT").is_empty());
        let srvr = srvr(Role::Standalone, &[]);
        assert_eq!(srvr.lines().next(), Some(format!("Zookeeper version: {expected}").as_str()));
        assert!(srvr.contains("\nMode: standalone\n"), "{srvr}");
        let stat = stat(Role::Standalone, &[]);
        assert_eq!(stat.lines().next(), Some(format!("Zookeeper version: {expected}").as_str()));
        assert!(envi().contains(&format!("zookeeper.version={expected}\n")));
    }
}
