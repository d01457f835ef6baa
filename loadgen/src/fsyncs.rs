//! The servers' log writes during the measured phase, from `mntr` read just before and just
//! after it: `zk_cnt_fsynctime` (fsyncs of the transaction log) and
//! `zk_sum_sync_processor_batch_size` (the requests they made durable). ZooKeeper and Warren
//! both report these keys (Warren: one WAL write per batch, O_DSYNC), so the leader's batch size
//! and fsyncs per second sit side by side.

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

/// One server's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogCounters {
    pub fsyncs: u64,
    pub entries: u64,
}

/// The counters in an `mntr` text; None if either key is missing or not a number.
pub fn parse_mntr(text: &str) -> Option<LogCounters> {
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.split_once('\t').filter(|(k, _)| *k == key).and_then(|(_, v)| v.trim().parse().ok()))
    };
    Some(LogCounters { fsyncs: value("zk_cnt_fsynctime")?, entries: value("zk_sum_sync_processor_batch_size")? })
}

/// Every server's counters now (None for one that does not answer or lacks the keys).
pub fn sample(addrs: &[SocketAddr]) -> Vec<Option<LogCounters>> {
    addrs
        .iter()
        .map(|&addr| {
            let text = crate::session::four_letter(addr, "mntr", Duration::from_secs(2)).ok()?;
            parse_mntr(&text)
        })
        .collect()
}

/// What each server's log did in the phase.
#[derive(Debug, Clone)]
pub struct PhaseLogWrites {
    /// (server, its mode, fsyncs and entries in the phase), or None if unknown.
    pub per_server: Vec<(String, Option<String>, Option<LogCounters>)>,
    pub elapsed: Duration,
}

impl PhaseLogWrites {
    pub fn between(
        servers: &[(String, Option<String>)],
        before: &[Option<LogCounters>],
        after: &[Option<LogCounters>],
        elapsed: Duration,
    ) -> PhaseLogWrites {
        let per_server = servers
            .iter()
            .zip(before.iter().zip(after))
            .map(|((name, mode), (b, a))| {
                let delta = match (b, a) {
                    (Some(b), Some(a)) if a.fsyncs >= b.fsyncs && a.entries >= b.entries => {
                        Some(LogCounters { fsyncs: a.fsyncs - b.fsyncs, entries: a.entries - b.entries })
                    }
                    _ => None,
                };
                (name.clone(), mode.clone(), delta)
            })
            .collect();
        PhaseLogWrites { per_server, elapsed }
    }

    /// The leader's counters (the only server for a single node).
    fn leader(&self) -> Option<LogCounters> {
        let leader = match self.per_server.as_slice() {
            [(_, _, only)] => *only,
            all => all.iter().find(|(_, mode, _)| mode.as_deref() == Some("leader")).and_then(|(_, _, c)| *c),
        };
        leader.filter(|c| c.fsyncs > 0)
    }

    fn rates(&self, c: LogCounters) -> (f64, f64) {
        (c.fsyncs as f64 / self.elapsed.as_secs_f64().max(1e-9), c.entries as f64 / c.fsyncs.max(1) as f64)
    }

    pub fn json(&self) -> Value {
        let per_server: Vec<Value> = self
            .per_server
            .iter()
            .map(|(server, mode, c)| match c {
                Some(c) => json!({ "server": server, "mode": mode, "fsyncs": c.fsyncs, "entries": c.entries }),
                None => json!({ "server": server, "mode": mode, "fsyncs": null, "entries": null }),
            })
            .collect();
        let (fsyncs_per_s, entries_per_fsync) = self.leader().map(|c| self.rates(c)).unzip();
        json!({
            "per_server": per_server,
            "leader_fsyncs_per_s": fsyncs_per_s,
            "leader_entries_per_fsync": entries_per_fsync,
        })
    }

    pub fn line(&self) -> String {
        match self.leader() {
            Some(c) => {
                let (per_s, per_fsync) = self.rates(c);
                format!("leader log writes: {per_s:.0} fsyncs/s, {per_fsync:.1} entries per fsync")
            }
            None => "leader log writes: - (no fsync counters in mntr, or no writes)".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_come_from_the_two_mntr_keys() {
        let text = "zk_version\t3.8\nzk_cnt_fsynctime\t120\nzk_sum_sync_processor_batch_size\t960\n";
        assert_eq!(parse_mntr(text), Some(LogCounters { fsyncs: 120, entries: 960 }));
        assert_eq!(parse_mntr("zk_cnt_fsynctime\t5\n"), None, "a missing key");
        assert_eq!(parse_mntr("zk_cnt_fsynctime\tx\nzk_sum_sync_processor_batch_size\t1\n"), None);
    }

    #[test]
    fn the_leader_rates_are_over_the_phase() {
        let servers =
            vec![("a".to_string(), Some("follower".to_string())), ("b".to_string(), Some("leader".to_string()))];
        let before =
            vec![Some(LogCounters { fsyncs: 10, entries: 10 }), Some(LogCounters { fsyncs: 100, entries: 400 })];
        let after =
            vec![Some(LogCounters { fsyncs: 30, entries: 50 }), Some(LogCounters { fsyncs: 300, entries: 2400 })];
        let phase = PhaseLogWrites::between(&servers, &before, &after, Duration::from_secs(2));
        let json = phase.json();
        assert_eq!(json["leader_fsyncs_per_s"], 100.0);
        assert_eq!(json["leader_entries_per_fsync"], 10.0);
        assert_eq!(phase.line(), "leader log writes: 100 fsyncs/s, 10.0 entries per fsync");
        let restarted = PhaseLogWrites::between(&servers, &after, &before, Duration::from_secs(2));
        assert_eq!(restarted.json()["leader_fsyncs_per_s"], Value::Null, "counters that went down say nothing");
    }
}
