//! THE durability test: a burst of concurrent writes, `kill -9` in the middle of it, restart on
//! the same data dir, and every acknowledged write must be there with the acknowledged data.
//! A write is acknowledged only after it is fsync'd, so nothing acknowledged may be lost.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use warren_tests::zk::{self, Acls, CreateMode, SessionState};
use warren_tests::{bounded, skip_if_external, unique, RawSession, WarrenOpts, WarrenProcess};

const TASKS: usize = 16;

#[derive(Default)]
struct Acked {
    /// Sequential node path → its data.
    created: Vec<(String, Vec<u8>)>,
    /// Per-task counter node → last acknowledged version.
    set: BTreeMap<String, i32>,
}

fn persistent() -> zk::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

/// The data a task writes into its counter node at version `v`.
fn counter_data(task: usize, v: i32) -> Vec<u8> {
    format!("task{task}-v{v}").into_bytes()
}

/// Runs the burst until a write fails (the server died); records every acknowledged write.
async fn burst(c: zk::Client, root: String, task: usize, acked: Arc<Mutex<Acked>>) {
    let counter = format!("{root}/counter{task}");
    let mut version = 0;
    for i in 0u64.. {
        let payload = format!("t{task}-i{i}-{}", "x".repeat((i % 7) as usize * 50)).into_bytes();
        let seq = CreateMode::PersistentSequential.with_acls(Acls::anyone_all());
        match c.create(&format!("{root}/t{task}-"), &payload, &seq).await {
            Ok((_, s)) => acked.lock().unwrap().created.push((format!("{root}/t{task}-{s}"), payload)),
            Err(_) => return,
        }
        match c.set_data(&counter, &counter_data(task, version + 1), Some(version)).await {
            Ok(st) => {
                assert_eq!(st.version, version + 1);
                version = st.version;
                acked.lock().unwrap().set.insert(counter.clone(), version);
            }
            Err(_) => return,
        }
    }
}

/// Concurrent writers on several sessions, each recording what was acknowledged.
struct Burst {
    root: String,
    acked: Arc<Mutex<Acked>>,
    handles: Vec<tokio::task::JoinHandle<()>>,
    clients: Vec<zk::Client>,
}

async fn start_burst(s: &WarrenProcess, name: &str) -> Burst {
    let root = format!("/{}", unique(name));
    let acked = Arc::new(Mutex::new(Acked::default()));
    {
        let setup = s.client().await;
        setup.create(&root, b"", &persistent()).await.unwrap();
        for t in 0..TASKS {
            setup.create(&format!("{root}/counter{t}"), &counter_data(t, 0), &persistent()).await.unwrap();
        }
    }
    // Several sessions so writes arrive on several connections at once.
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(s.client().await);
    }
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let c = clients[t % clients.len()].clone();
        handles.push(tokio::spawn(burst(c, root.clone(), t, acked.clone())));
    }
    Burst { root, acked, handles, clients }
}

impl Burst {
    fn creates_acked(&self) -> usize {
        self.acked.lock().unwrap().created.len()
    }

    /// Waits (bounded: 20 s) until `count` creates are acknowledged.
    async fn wait_for(&self, count: usize) {
        let started = Instant::now();
        while self.creates_acked() < count && started.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// After the server died: waits for the writers to stop and returns what they saw acknowledged.
    async fn finish(self) -> (String, Acked) {
        for h in self.handles {
            bounded(60, "burst tasks stop after the server died", h).await.unwrap();
        }
        drop(self.clients);
        let acked = std::mem::take(&mut *self.acked.lock().unwrap());
        (self.root, acked)
    }
}

/// Every acknowledged write is served with the acknowledged data; sequence numbers continue.
async fn assert_acked_present(c: &zk::Client, root: &str, acked: &Acked, what: &str) {
    let mut lost = Vec::new();
    for (path, data) in &acked.created {
        match c.get_data(path).await {
            Ok((got, _)) if &got == data => {}
            Ok((got, _)) => lost.push(format!(
                "{path}: data {:?}, acknowledged {:?}",
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(data)
            )),
            Err(e) => lost.push(format!("{path}: {e}")),
        }
    }
    for (path, version) in &acked.set {
        let task: usize = path.rsplit("counter").next().unwrap().parse().unwrap();
        match c.get_data(path).await {
            // One more set may have been applied but not acknowledged before the server died.
            Ok((got, st)) if st.version >= *version && got == counter_data(task, st.version) => {}
            Ok((got, st)) => lost.push(format!(
                "{path}: version {} data {:?}, acknowledged version {version}",
                st.version,
                String::from_utf8_lossy(&got)
            )),
            Err(e) => lost.push(format!("{path}: {e}")),
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost after {what}:\n{}",
        lost.len(),
        acked.created.len() + acked.set.len(),
        lost.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
    );
    // The sequence numbers continue after recovery: no reuse of an acknowledged name.
    let (_, seq) = c
        .create(&format!("{root}/t0-"), b"after", &CreateMode::PersistentSequential.with_acls(Acls::anyone_all()))
        .await
        .unwrap();
    let after = format!("{root}/t0-{seq}");
    assert!(!acked.created.iter().any(|(p, _)| p == &after), "sequence {after} reused after {what}");
}

async fn durability_round(cores: u32) {
    let mut s = WarrenProcess::start(WarrenOpts::default().cores(cores));
    let burst = start_burst(&s, "durable").await;
    // Let the burst run until a good number of writes are acknowledged, then kill -9.
    burst.wait_for(1000).await;
    s.kill9();
    let killed_at = burst.creates_acked();
    let (root, acked) = burst.finish().await;
    assert!(killed_at >= 50, "burst too slow: only {killed_at} creates acknowledged in 20 s");

    s.restart();
    let c = s.client().await;
    assert_acked_present(&c, &root, &acked, &format!("kill -9 (cores {cores})")).await;
    eprintln!(
        "durability (cores {cores}): {} creates and {} counters acknowledged, all present after kill -9",
        acked.created.len(),
        acked.set.len()
    );
}

/// A disk that starts failing under load (RLIMIT_FSIZE: WAL writes fail with EFBIG): the
/// node must stop at once with status 74 rather than answer or apply the failed batch, and a
/// restart on a good disk must serve every write acknowledged before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_disk_stops_the_node_and_restart_serves_every_acknowledged_write() {
    if skip_if_external("failing_disk_stops_the_node_and_restart_serves_every_acknowledged_write") {
        return;
    }
    let mut s = WarrenProcess::start(WarrenOpts::default().cores(2));
    let burst = start_burst(&s, "faildisk").await;
    burst.wait_for(300).await;
    assert!(burst.creates_acked() >= 50, "burst too slow: {} creates in 20 s", burst.creates_acked());
    // WAL segments are preallocated: only the write offset counts, so the burst's core fails
    // its next flush once its log passes the limit. The room above the stderr log's size keeps
    // the server's own log lines writable (the limit is per process, for every file).
    s.limit_file_size(s.stderr_log_bytes() + (256 << 10));
    let status = s.wait_exit(Duration::from_secs(20));
    let log = s.stderr_tail();
    let status = status.unwrap_or_else(|| panic!("warren still runs 20 s after its disk failed:\n{log}"));
    assert_eq!(status.code(), Some(74), "exit status after a failed WAL write: {status}\n{log}");
    assert!(log.contains("WAL write or fdatasync failed") && log.contains("File too large"), "{log}");
    let (root, acked) = burst.finish().await;

    s.restart();
    let c = s.client().await;
    assert_acked_present(&c, &root, &acked, "a failed WAL write").await;
    eprintln!("failing disk: {} creates acknowledged before the node stopped, all present", acked.created.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill9_one_core() {
    if skip_if_external("acknowledged_writes_survive_kill9_one_core") {
        return;
    }
    durability_round(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill9_two_cores() {
    if skip_if_external("acknowledged_writes_survive_kill9_two_cores") {
        return;
    }
    durability_round(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_kill9_restart_cycles_keep_everything() {
    if skip_if_external("repeated_kill9_restart_cycles_keep_everything") {
        return;
    }
    let mut s = WarrenProcess::start(WarrenOpts::default());
    let root = format!("/{}", unique("cycles"));
    let mut expected: Vec<(String, Vec<u8>)> = Vec::new();
    for round in 0..4 {
        let c = s.client().await;
        if round == 0 {
            c.create(&root, b"", &persistent()).await.unwrap();
        }
        for i in 0..25 {
            let p = format!("{root}/r{round}-{i}");
            let d = format!("{round}:{i}").into_bytes();
            c.create(&p, &d, &persistent()).await.unwrap();
            expected.push((p, d));
        }
        // Overwrite one node of the previous round, and delete another.
        if round > 0 {
            let (p, _) = expected[(round - 1) * 25].clone();
            c.set_data(&p, b"overwritten", None).await.unwrap();
            expected[(round - 1) * 25].1 = b"overwritten".to_vec();
            let (p, _) = expected.remove((round - 1) * 25 + 1);
            c.delete(&p, None).await.unwrap();
        }
        drop(c);
        s.kill9();
        s.restart();
        let c = s.client().await;
        for (p, d) in &expected {
            let got = c.get_data(p).await.map(|(g, _)| g);
            assert_eq!(got.as_deref().ok(), Some(d.as_slice()), "round {round}: {p} after kill -9/restart: {got:?}");
        }
        let kids = c.list_children(&root).await.unwrap();
        assert_eq!(kids.len(), expected.len(), "round {round}: deleted nodes came back or nodes lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemerals_of_dead_sessions_do_not_survive_restart_forever() {
    if skip_if_external("ephemerals_of_dead_sessions_do_not_survive_restart_forever") {
        return;
    }
    let mut s = WarrenProcess::start(WarrenOpts::default());
    let root = format!("/{}", unique("ephrestart"));
    // A raw session: it dies with the server's socket and never reconnects (a client library
    // would come back and close its session, which tests nothing about expiry).
    let mut owner = RawSession::connect(s.addr(), 2000);
    assert_eq!(owner.create(&root, b"", 0).err, 0);
    assert_eq!(owner.create(&format!("{root}/e"), b"", 1).err, 0, "ephemeral");
    s.kill9();
    drop(owner);
    s.restart();
    let c = s.client().await;
    assert!(c.check_stat(&root).await.unwrap().is_some(), "persistent parent must survive");
    assert!(
        c.check_stat(&format!("{root}/e")).await.unwrap().is_some(),
        "right after the restart the session still exists (it gets a full time-out to come back)"
    );
    // The owner never comes back: its session must expire (ZooKeeper restores the session and
    // expires it one time-out after recovery), taking the ephemeral with it.
    let ok = warren_tests::wait_until_async(Duration::from_secs(30), || async {
        c.check_stat(&format!("{root}/e")).await.unwrap().is_none()
    })
    .await;
    assert!(ok, "ephemeral of a session that died with the server still present 30 s after restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_right_after_kill9_gets_the_port() {
    if skip_if_external("restart_right_after_kill9_gets_the_port") {
        return;
    }
    // systemd-style immediate restart: the new process must come up on the same port even if
    // the dead one's sockets (listener, TIME_WAIT connections) have not quite gone yet.
    let mut s = WarrenProcess::start(WarrenOpts::default());
    let root = format!("/{}", unique("quick"));
    for round in 0..3 {
        let c = s.client().await;
        if round == 0 {
            c.create(&root, b"", &persistent()).await.unwrap();
        }
        c.create(&format!("{root}/r{round}"), b"", &persistent()).await.unwrap();
        s.kill9();
        drop(c);
        s.restart_immediately();
    }
    let c = s.client().await;
    assert_eq!(c.list_children(&root).await.unwrap().len(), 3);
}

/// One top-level node per shard (the default 8 shards, spread over every core), so a session's
/// ephemerals below them live in every shard.
fn one_node_per_shard(prefix: &str) -> Vec<String> {
    const SHARDS: u16 = 8;
    let mut nodes: Vec<Option<String>> = vec![None; SHARDS as usize];
    for i in 0..100_000 {
        let node = format!("/{prefix}-{i}");
        let shard = engine::path::shard_of(&node, SHARDS) as usize;
        nodes[shard].get_or_insert(node);
        if nodes.iter().all(Option::is_some) {
            return nodes.into_iter().flatten().collect();
        }
    }
    panic!("no name for some shard among 100000");
}

/// A session that will die (raw, never pings, 2 s timeout) and one that will live (a real
/// client that reconnects, 20 s timeout), each with an ephemeral in every shard.
struct SessionsInEveryShard {
    nodes: Vec<String>,
    live: zk::Client,
    live_session: i64,
    /// Kept alive by pings until the test lets it die.
    dead: RawSession,
    /// Held open: closing it would be a write (CloseSession in every shard).
    _setup: zk::Client,
}

async fn sessions_in_every_shard(s: &WarrenProcess) -> SessionsInEveryShard {
    let nodes = one_node_per_shard(&unique("eph"));
    let setup = s.client().await;
    for node in &nodes {
        setup.create(node, b"", &persistent()).await.unwrap();
        // Some bulk in every core's WAL (see the failed-write variant's file size limit).
        for i in 0..8 {
            setup.create(&format!("{node}/p{i}"), b"", &persistent()).await.unwrap();
        }
    }
    let mut dead = RawSession::connect(s.addr(), 2000);
    for node in &nodes {
        let reply = dead.create(&format!("{node}/dead"), b"", 1);
        assert_eq!(reply.err, 0, "ephemeral of the dying session under {node}");
    }
    let live = s.client_with(zk::Client::connector().with_session_timeout(Duration::from_secs(20))).await;
    let ephemeral = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
    for node in &nodes {
        live.create(&format!("{node}/live"), b"", &ephemeral).await.unwrap();
    }
    let live_session = live.session_id().0;
    dead.ping();
    SessionsInEveryShard { nodes, live, live_session, dead, _setup: setup }
}

/// After a restart: the dead session's ephemerals vanish from every shard within its timeout
/// (it is re-armed from the log), the live one reconnects and keeps all of its ephemerals.
async fn assert_dead_gone_live_kept(s: &WarrenProcess, sessions: SessionsInEveryShard, dead_session: i64) {
    let observer = s.client().await;
    let dead_paths: Vec<String> = sessions.nodes.iter().map(|n| format!("{n}/dead")).collect();
    let gone = warren_tests::wait_until_async(Duration::from_secs(30), || async {
        for path in &dead_paths {
            if observer.check_stat(path).await.unwrap().is_some() {
                return false;
            }
        }
        true
    })
    .await;
    let left: Vec<&String> = {
        let mut left = Vec::new();
        for path in &dead_paths {
            if observer.check_stat(path).await.unwrap().is_some() {
                left.push(path);
            }
        }
        left
    };
    assert!(gone, "ephemerals of dead session {:#x} still present 30 s after restart: {left:?}", dead_session);
    let live = &sessions.live;
    let mut states = live.state_watcher();
    bounded(20, "the live session reconnects", async {
        while live.state() != SessionState::SyncConnected {
            states.changed().await;
        }
    })
    .await;
    assert_eq!(live.session_id().0, sessions.live_session);
    for node in &sessions.nodes {
        let path = format!("{node}/live");
        let stat = observer.check_stat(&path).await.unwrap();
        assert_eq!(stat.map(|s| s.ephemeral_owner), Some(sessions.live_session), "{path} of the live session");
    }
}

/// kill -9 with sessions open in every shard of two cores: after the restart a session whose
/// client never comes back expires with its ephemerals in every shard; one whose client
/// reconnects in time keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_in_every_shard_expire_after_restart_unless_they_reconnect() {
    if skip_if_external("sessions_in_every_shard_expire_after_restart_unless_they_reconnect") {
        return;
    }
    let mut s = WarrenProcess::start(WarrenOpts::default().cores(2));
    let mut sessions = sessions_in_every_shard(&s).await;
    // Alive right up to the kill: only the restart can expire it.
    sessions.dead.ping();
    s.kill9();
    let dead_session = sessions.dead.session_id;
    s.restart();
    assert_dead_gone_live_kept(&s, sessions, dead_session).await;
}

/// The expiry of a session is a CloseSession write in every shard that the server proposes
/// itself. When those writes fail (the disk fails just as the session expires), the node must
/// stop rather than drop them (which would orphan the ephemerals), and after the restart the
/// expiry is redone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_interrupted_by_a_failed_write_is_redone_after_restart() {
    if skip_if_external("session_expiry_interrupted_by_a_failed_write_is_redone_after_restart") {
        return;
    }
    let mut s = WarrenProcess::start(WarrenOpts::default().cores(2));
    let mut sessions = sessions_in_every_shard(&s).await;
    // Alive until now; from here on silent, it expires 2 s later, on the failing disk.
    sessions.dead.ping();
    let dead_session = sessions.dead.session_id;
    // Every core's WAL is past 36 batches (>= 144 KiB): its next write fails. 16 KiB of room
    // keeps the server's log lines writable.
    s.limit_file_size(s.stderr_log_bytes() + (16 << 10));
    let status = s.wait_exit(Duration::from_secs(20));
    let log = s.stderr_tail();
    let status = status.unwrap_or_else(|| panic!("warren still runs 20 s after the expiry's writes failed:\n{log}"));
    assert_eq!(status.code(), Some(74), "exit status: {status}\n{log}");
    assert!(log.contains("session expired") && log.contains("WAL write or fdatasync failed"), "{log}");
    s.restart();
    assert_dead_gone_live_kept(&s, sessions, dead_session).await;
}
