//! What Linux's /proc says about processes and the machine, for the run record: a process's CPU
//! time (/proc/PID/stat), the CPUs it may run on (/proc/PID/status) and the load average
//! (/proc/loadavg). Parsers are pure functions over the text so they are tested on literals.

use std::time::Duration;

use anyhow::{bail, Context, Result};

/// utime + stime in clock ticks from a /proc/PID/stat line. Field 2 (`comm`) is in parens and
/// may itself hold spaces and parens, so fields are counted after the last ')': field 3 (state)
/// is the first there, so utime (field 14) and stime (field 15) are the 12th and 13th.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    let mut fields = after_comm.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The value of `Cpus_allowed_list:` in a /proc/PID/status text, e.g. "0-3,6".
pub fn parse_cpus_allowed_list(status: &str) -> Option<String> {
    let line = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
    Some(line.trim().to_string())
}

/// The 1, 5 and 15 minute load averages from /proc/loadavg's text.
pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut fields = text.split_whitespace().map(str::parse::<f64>);
    Some([fields.next()?.ok()?, fields.next()?.ok()?, fields.next()?.ok()?])
}

/// CPU time (user + system) process `pid` has used so far.
pub fn process_cpu(pid: u32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let ticks = parse_stat_cpu_ticks(&stat).with_context(|| format!("no utime/stime in {path}: {stat:?}"))?;
    Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks_per_s()))
}

/// Ticks per second of /proc/PID/stat's time fields (USER_HZ, nearly always 100).
fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf only reads a constant of the running system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    assert!(hz > 0, "sysconf(_SC_CLK_TCK) failed");
    hz as f64
}

/// The CPUs process `pid` (None: loadgen itself) may run on, as /proc lists them ("0-3").
pub fn cpus_allowed(pid: Option<u32>) -> Option<String> {
    let path = pid.map_or("/proc/self/status".to_string(), |p| format!("/proc/{p}/status"));
    parse_cpus_allowed_list(&std::fs::read_to_string(path).ok()?)
}

/// The machine's load averages now, if /proc/loadavg is there.
pub fn load_average() -> Option<[f64; 3]> {
    parse_loadavg(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

/// Fails unless `pid` is a live process whose CPU time can be read.
pub fn check_live(pid: u32) -> Result<()> {
    if pid == 0 {
        bail!("--server-pid 0 is not a process id");
    }
    match process_cpu(pid) {
        Ok(_) => Ok(()),
        Err(e) => bail!("--server-pid {pid}: no such process (or its CPU time is unreadable): {e:#}"),
    }
}

/// The CPUs loadgen and each server process may run on: `{"loadgen_cpus_allowed": "0-3",
/// "servers": [{"pid": P, "cpus_allowed": "4-7"}]}`.
pub fn pinning_json(server_pids: &[u32]) -> serde_json::Value {
    let servers: Vec<serde_json::Value> = server_pids
        .iter()
        .map(|&pid| serde_json::json!({ "pid": pid, "cpus_allowed": cpus_allowed(Some(pid)) }))
        .collect();
    serde_json::json!({ "loadgen_cpus_allowed": cpus_allowed(None), "servers": servers })
}

/// Context switches of a process, summed over its threads (/proc/PID/task/*/status): how often
/// it gave up the CPU (voluntary: it blocked, e.g. waiting for a socket or the disk) or had it
/// taken away (involuntary: preempted, e.g. by another thread on the same core).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Switches {
    pub voluntary: u64,
    pub involuntary: u64,
}

impl Switches {
    pub fn total(&self) -> u64 {
        self.voluntary + self.involuntary
    }

    fn saturating_sub(self, before: Switches) -> Switches {
        Switches {
            voluntary: self.voluntary.saturating_sub(before.voluntary),
            involuntary: self.involuntary.saturating_sub(before.involuntary),
        }
    }
}

/// The `voluntary_ctxt_switches` and `nonvoluntary_ctxt_switches` of one /proc/.../status text.
pub fn parse_switches(status: &str) -> Option<Switches> {
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim_start_matches(':').trim().parse().ok())
    };
    Some(Switches { voluntary: field("voluntary_ctxt_switches")?, involuntary: field("nonvoluntary_ctxt_switches")? })
}

/// Context switches of process `pid` (None: loadgen itself) so far, over the threads alive now.
/// A thread that exits between two readings takes its switches with it (io_uring's io-wq
/// workers do after a few idle seconds), so a difference can undercount, never overcount.
pub fn process_switches(pid: Option<u32>) -> Result<Switches> {
    let dir = pid.map_or("/proc/self/task".to_string(), |p| format!("/proc/{p}/task"));
    let mut sum = Switches::default();
    for task in std::fs::read_dir(&dir).with_context(|| format!("cannot list {dir}"))? {
        let path = task?.path().join("status");
        // A thread may exit between listing and reading: skip it.
        let Ok(status) = std::fs::read_to_string(&path) else { continue };
        let s = parse_switches(&status).with_context(|| format!("no ctxt_switches in {}", path.display()))?;
        sum.voluntary += s.voluntary;
        sum.involuntary += s.involuntary;
    }
    Ok(sum)
}

/// The context switches of the servers (and of loadgen) during the measured phase.
#[derive(Debug, Clone)]
pub struct PhaseSwitches {
    pub per_server: Vec<(u32, Result<Switches, String>)>,
    pub loadgen: Option<Switches>,
}

/// A reading of every server's switches and loadgen's own, taken right before or after the phase.
pub struct SwitchReading {
    servers: Vec<Result<Switches, String>>,
    loadgen: Option<Switches>,
}

pub fn read_switches(pids: &[u32]) -> SwitchReading {
    SwitchReading {
        servers: pids.iter().map(|&p| process_switches(Some(p)).map_err(|e| format!("{e:#}"))).collect(),
        loadgen: own_switches(),
    }
}

/// loadgen's own switches from getrusage, which, unlike /proc/self/task, keeps those of
/// threads that already exited (the closed loop's session threads end with the phase).
fn own_switches() -> Option<Switches> {
    // SAFETY: getrusage only writes the struct we hand it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return None;
    }
    Some(Switches {
        voluntary: u64::try_from(ru.ru_nvcsw).unwrap_or(0),
        involuntary: u64::try_from(ru.ru_nivcsw).unwrap_or(0),
    })
}

impl PhaseSwitches {
    pub fn between(pids: &[u32], before: &SwitchReading, after: &SwitchReading) -> PhaseSwitches {
        assert!(pids.len() == before.servers.len() && pids.len() == after.servers.len(), "one reading per pid");
        let per_server = pids
            .iter()
            .zip(before.servers.iter().zip(&after.servers))
            .map(|(&pid, (b, a))| match (b, a) {
                (Ok(b), Ok(a)) => (pid, Ok(a.saturating_sub(*b))),
                (Err(e), _) | (_, Err(e)) => (pid, Err(e.clone())),
            })
            .collect();
        let loadgen = before.loadgen.zip(after.loadgen).map(|(b, a)| a.saturating_sub(b));
        PhaseSwitches { per_server, loadgen }
    }

    /// The servers' switches whose readings succeeded, summed.
    pub fn servers_total(&self) -> Switches {
        self.per_server.iter().filter_map(|(_, s)| s.as_ref().ok()).fold(Switches::default(), |sum, s| Switches {
            voluntary: sum.voluntary + s.voluntary,
            involuntary: sum.involuntary + s.involuntary,
        })
    }

    /// `{"per_server": [{pid, voluntary, involuntary}], "server_voluntary", "server_involuntary",
    /// "server_per_op", "loadgen_voluntary", "loadgen_involuntary", "loadgen_per_op"}`; per_op
    /// divides by every reply (errors included: they cost the same switches).
    pub fn json(&self, replies: u64) -> serde_json::Value {
        let per_op = |s: Switches| (replies > 0).then(|| s.total() as f64 / replies as f64);
        let per_server: Vec<serde_json::Value> = self
            .per_server
            .iter()
            .map(|(pid, s)| match s {
                Ok(s) => serde_json::json!({ "pid": pid, "voluntary": s.voluntary, "involuntary": s.involuntary }),
                Err(e) => serde_json::json!({ "pid": pid, "error": e }),
            })
            .collect();
        let servers = self.servers_total();
        serde_json::json!({
            "per_server": per_server,
            "server_voluntary": servers.voluntary,
            "server_involuntary": servers.involuntary,
            "server_per_op": if self.per_server.is_empty() { None } else { per_op(servers) },
            "loadgen_voluntary": self.loadgen.map(|s| s.voluntary),
            "loadgen_involuntary": self.loadgen.map(|s| s.involuntary),
            "loadgen_per_op": self.loadgen.and_then(per_op),
        })
    }

    /// `context switches per op: server 1.93 (...), loadgen 2.01 (...)`.
    pub fn line(&self, replies: u64) -> String {
        let describe = |s: Switches| {
            let per_op = if replies > 0 { s.total() as f64 / replies as f64 } else { 0.0 };
            format!("{per_op:.2} ({} voluntary, {} involuntary)", s.voluntary, s.involuntary)
        };
        let server = if self.per_server.is_empty() { "-".to_string() } else { describe(self.servers_total()) };
        let loadgen = self.loadgen.map_or("-".to_string(), describe);
        format!("context switches per op: server {server}, loadgen {loadgen}")
    }
}

/// The servers' CPU time during the measured phase, from readings just before and just after.
#[derive(Debug, Clone)]
pub struct ServerCpu {
    /// (pid, CPU time used in the phase or why it is unknown, CPUs it may run on).
    pub per_server: Vec<(u32, Result<Duration, String>, Option<String>)>,
}

/// Each pid's CPU time now, or why it cannot be read.
pub fn sample_cpu(pids: &[u32]) -> Vec<Result<Duration, String>> {
    pids.iter().map(|&p| process_cpu(p).map_err(|e| format!("{e:#}"))).collect()
}

impl ServerCpu {
    pub fn between(pids: &[u32], before: &[Result<Duration, String>], after: &[Result<Duration, String>]) -> ServerCpu {
        assert!(pids.len() == before.len() && pids.len() == after.len(), "one reading per pid");
        let per_server = pids
            .iter()
            .zip(before.iter().zip(after))
            .map(|(&pid, (b, a))| {
                let used = match (b, a) {
                    (Ok(b), Ok(a)) => Ok(a.saturating_sub(*b)),
                    (Err(e), _) | (_, Err(e)) => Err(e.clone()),
                };
                (pid, used, cpus_allowed(Some(pid)))
            })
            .collect();
        ServerCpu { per_server }
    }

    /// CPU seconds of the servers whose readings succeeded.
    pub fn total_s(&self) -> f64 {
        self.per_server.iter().filter_map(|(_, used, _)| used.as_ref().ok()).map(Duration::as_secs_f64).sum()
    }

    /// Successful ops per server CPU-second; None when no CPU time was measured (a tick is
    /// 10 ms, a short run against an idle server can use none).
    pub fn ops_per_cpu_s(&self, successes: u64) -> Option<f64> {
        let total = self.total_s();
        (total > 0.0).then(|| successes as f64 / total)
    }

    pub fn json(&self, successes: u64) -> serde_json::Value {
        let per_server: Vec<serde_json::Value> = self
            .per_server
            .iter()
            .map(|(pid, used, allowed)| match used {
                Ok(d) => serde_json::json!({ "pid": pid, "cpu_s": d.as_secs_f64(), "cpus_allowed": allowed }),
                Err(e) => serde_json::json!({ "pid": pid, "cpu_s": null, "error": e, "cpus_allowed": allowed }),
            })
            .collect();
        serde_json::json!({
            "per_server": per_server,
            "total_cpu_s": self.total_s(),
            "ops_per_server_cpu_s": self.ops_per_cpu_s(successes),
        })
    }

    /// `server CPU: X s (pids ...) = Y ops per server CPU-second`.
    pub fn line(&self, successes: u64) -> String {
        let pids: Vec<String> = self.per_server.iter().map(|(p, _, _)| p.to_string()).collect();
        let rate = self.ops_per_cpu_s(successes).map_or("-".to_string(), |r| format!("{r:.0}"));
        format!("server CPU: {:.3} s (pids {}) = {rate} ops per server CPU-second", self.total_s(), pids.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_ticks_count_fields_after_the_last_paren() {
        let plain = "4242 (warren) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 3 0 9999 0 0";
        assert_eq!(parse_stat_cpu_ticks(plain), Some(325));
        // comm may hold spaces and parens: "(a) b) c" would fool a split on the first ')'.
        let odd = "77 (a) b) c (d) R 1 77 77 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 1 0 0";
        assert_eq!(parse_stat_cpu_ticks(odd), Some(10));
        assert_eq!(parse_stat_cpu_ticks("77 (short) R 1 2"), None);
        assert_eq!(parse_stat_cpu_ticks("no parens at all"), None);
    }

    #[test]
    fn cpus_allowed_list_is_read_from_status() {
        let status = "Name:\twarren\nCpus_allowed:\tf\nCpus_allowed_list:\t0-3,6\nMems_allowed:\t1\n";
        assert_eq!(parse_cpus_allowed_list(status).as_deref(), Some("0-3,6"));
        assert_eq!(parse_cpus_allowed_list("Name:\tx\n"), None);
    }

    #[test]
    fn loadavg_has_three_averages() {
        assert_eq!(parse_loadavg("0.52 1.25 2.00 3/512 12345\n"), Some([0.52, 1.25, 2.0]));
        assert_eq!(parse_loadavg("0.52 1.25"), None);
        assert_eq!(parse_loadavg("a b c"), None);
    }

    #[test]
    fn server_cpu_is_the_difference_of_two_readings() {
        let ms = Duration::from_millis;
        let before = vec![Ok(ms(1000)), Ok(ms(50)), Err("gone".to_string())];
        let after = vec![Ok(ms(3000)), Ok(ms(50)), Err("gone".to_string())];
        let cpu = ServerCpu::between(&[999_999_997, 999_999_998, 999_999_999], &before, &after);
        assert_eq!(cpu.total_s(), 2.0);
        assert_eq!(cpu.ops_per_cpu_s(1000), Some(500.0));
        let v = cpu.json(1000);
        assert_eq!(v["per_server"][0]["cpu_s"], 2.0);
        assert_eq!(v["per_server"][1]["cpu_s"], 0.0);
        assert!(v["per_server"][2]["cpu_s"].is_null());
        assert_eq!(v["per_server"][2]["error"], "gone");
        assert_eq!(v["ops_per_server_cpu_s"], 500.0);
        assert_eq!(
            cpu.line(1000),
            "server CPU: 2.000 s (pids 999999997,999999998,999999999) = 500 ops per server CPU-second"
        );
        let idle = ServerCpu::between(&[1], &[Ok(ms(5))], &[Ok(ms(5))]);
        assert_eq!(idle.ops_per_cpu_s(10), None);
    }

    #[test]
    fn switches_are_read_from_status() {
        let status = "Name:\twarren\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t7\n";
        assert_eq!(parse_switches(status), Some(Switches { voluntary: 120, involuntary: 7 }));
        assert_eq!(parse_switches("Name:\tx\nvoluntary_ctxt_switches:\t1\n"), None);
    }

    #[test]
    fn phase_switches_are_the_difference_of_two_readings() {
        let s = |voluntary, involuntary| Switches { voluntary, involuntary };
        let before = SwitchReading { servers: vec![Ok(s(100, 10)), Err("gone".into())], loadgen: Some(s(5, 5)) };
        let after = SwitchReading { servers: vec![Ok(s(300, 30)), Err("gone".into())], loadgen: Some(s(105, 5)) };
        let phase = PhaseSwitches::between(&[1, 2], &before, &after);
        assert_eq!(phase.servers_total(), s(200, 20));
        let v = phase.json(110);
        assert_eq!((v["server_voluntary"].as_u64(), v["server_involuntary"].as_u64()), (Some(200), Some(20)));
        assert_eq!(v["server_per_op"], 2.0);
        assert_eq!(v["loadgen_per_op"].as_f64(), Some(100.0 / 110.0));
        assert_eq!(v["per_server"][1]["error"], "gone");
        assert_eq!(
            phase.line(110),
            "context switches per op: server 2.00 (200 voluntary, 20 involuntary), loadgen 0.91 (100 voluntary, 0 involuntary)"
        );
        let none = PhaseSwitches::between(
            &[],
            &SwitchReading { servers: vec![], loadgen: None },
            &SwitchReading { servers: vec![], loadgen: None },
        );
        assert!(none.json(10)["server_per_op"].is_null());
    }

    #[test]
    fn the_current_process_switches_are_readable() {
        let before = process_switches(None).unwrap();
        let own_before = own_switches().unwrap();
        // Blocking on a sleep is a voluntary switch, also in a thread that then exits.
        std::thread::spawn(|| std::thread::sleep(Duration::from_millis(2))).join().unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let after = process_switches(Some(std::process::id())).unwrap();
        assert!(after.voluntary > before.voluntary, "{before:?} -> {after:?}");
        let own_after = own_switches().unwrap();
        assert!(own_after.voluntary >= own_before.voluntary + 2, "{own_before:?} -> {own_after:?}");
    }

    #[test]
    fn the_current_process_is_readable() {
        let me = std::process::id();
        // Burn a little CPU so the reading is not trivially the start-up value.
        let before = process_cpu(me).unwrap();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(process_cpu(me).unwrap() >= before);
        assert!(!cpus_allowed(Some(me)).unwrap().is_empty());
        assert_eq!(cpus_allowed(None), cpus_allowed(Some(me)));
        assert_eq!(load_average().map(|l| l.len()), Some(3));
        check_live(me).unwrap();
        let err = check_live(999_999_999).unwrap_err().to_string();
        assert!(err.contains("999999999"), "{err}");
    }
}
