//! A 3-node cluster of real `warren` processes on loopback, with the Rust ZooKeeper client:
//! writes through any node are read on every node, a killed leader loses no acknowledged
//! write (on the survivors and on itself once restarted), and a paused leader serves nothing
//! stale once it resumes, and a session moved to a lagging node never reads older data; with
//! `--linearizable-reads`, a read through any node sees every write acknowledged before it
//! was sent, without a sync. All but the tests of Warren's own commands, mntr and options
//! run against a ZooKeeper 3.8 ensemble too (`WARREN_BIN=tests/zk_as_warren.sh`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use warren_tests::zk::{self, Acls, CreateMode, EventType};
use warren_tests::{
    bounded, mntr_value, top_level_in_shard, unique, wait_until, Proxy, WarrenCluster, WarrenOpts, WarrenProcess,
};

fn persistent() -> zk::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

/// Two cores, so two Raft groups per cluster.
fn cluster() -> WarrenCluster {
    WarrenCluster::start(3, WarrenOpts::default().cores(2).session_timeouts_ms(1000, 40000))
}

/// The leader of every group as node 1 reports it, once every group has one (`mntr`; empty
/// for ZooKeeper, which has one group).
fn group_leaders(c3: &WarrenCluster) -> Vec<String> {
    let mut leaders = Vec::new();
    let all_known = wait_until(Duration::from_secs(10), || {
        let mntr = c3.nodes[0].four_letter("mntr");
        leaders = mntr
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .filter(|(key, _)| key.starts_with("warren_group_") && key.ends_with("_leader"))
            .map(|(_, id)| id.to_string())
            .collect();
        !leaders.iter().any(|id| id == "0")
    });
    assert!(all_known, "a group without a leader: {leaders:?}");
    leaders
}

/// A session on `node`, retried for a while: a node that just rejoined may refuse sessions
/// until it has caught up (ZooKeeper does; Warren's session needs its groups' leaders).
async fn connect_eventually(node: &WarrenProcess) -> zk::Client {
    let deadline = Instant::now() + Duration::from_secs(15);
    let address = node.connect_string();
    loop {
        let connect = zk::Client::connector().with_fail_eagerly().connect(&address);
        match tokio::time::timeout(Duration::from_secs(3), connect).await {
            Ok(Ok(client)) => return client,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!(
                "no session on {} within 15 s: {:?}\n{}",
                node.addr(),
                other.map(|r| r.err()),
                node.stderr_tail()
            ),
        }
    }
}

/// Creates `path` through `client`, an attempt of at most 3 s at a time, until it is
/// acknowledged (or found there: an earlier attempt went through after all) within `within`.
async fn create_acknowledged(client: &zk::Client, path: &str, data: &[u8], within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout(Duration::from_secs(3), client.create(path, data, &persistent())).await {
            Ok(Ok(_)) | Ok(Err(zk::Error::NodeExists)) => return,
            _ => assert!(Instant::now() < deadline, "{what}"),
        }
    }
}

/// Every (path, data) in `expected` on `node`, after a sync of each path's parent.
async fn assert_has_all(node: &WarrenProcess, expected: &BTreeMap<String, Vec<u8>>, what: &str) {
    let c = connect_eventually(node).await;
    let parents: std::collections::BTreeSet<String> =
        expected.keys().map(|p| p[..p.rfind('/').expect("absolute")].to_string()).collect();
    for parent in &parents {
        bounded(20, "sync", c.sync(parent)).await.unwrap_or_else(|e| panic!("{what}: sync {parent}: {e}"));
    }
    for (path, data) in expected {
        match c.get_data(path).await {
            Ok((got, _)) => assert_eq!(&got, data, "{what}: {path} on {}", node.addr()),
            Err(e) => panic!("{what}: acknowledged {path} missing on {}: {e}", node.addr()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_reads_what_any_node_wrote_and_watches_fire_where_the_client_is() {
    let c3 = cluster();
    let leader = c3.wait_leader(Duration::from_secs(10));
    let modes = c3.modes();
    assert_eq!(modes.iter().filter(|m| m.as_deref() == Some("follower")).count(), 2, "{modes:?} (leader {leader})");
    if !warren_tests::is_zookeeper() {
        // Every node names the same leader for each group; group 0's is the one Mode names.
        for group in 0..2 {
            let key = format!("warren_group_{group}_leader");
            let named: Vec<u64> = c3.nodes.iter().map(|n| mntr_value(n, &key)).collect();
            assert!(named.iter().all(|id| *id == named[0] && *id != 0), "group {group}: {named:?}");
            if group == 0 {
                assert_eq!(named[0], leader as u64);
            }
        }
    }
    let mut clients = Vec::new();
    for node in &c3.nodes {
        clients.push(node.client().await);
    }
    let root = format!("/{}", unique("cluster"));
    clients[0].create(&root, b"", &persistent()).await.unwrap();
    let mut expected = BTreeMap::new();
    for i in 0..30 {
        let path = format!("{root}/k{i}");
        let data = format!("v{i}").into_bytes();
        clients[i % 3].create(&path, &data, &persistent()).await.unwrap();
        expected.insert(path, data);
    }
    for node in &c3.nodes {
        assert_has_all(node, &expected, "created through every node").await;
    }
    for (i, c) in clients.iter().enumerate() {
        c.sync(&root).await.unwrap();
        let (mut children, _) = c.get_children(&root).await.unwrap();
        children.sort();
        assert_eq!(children.len(), 30, "node {}: {children:?}", i + 1);
    }

    // A watch set through node 3 fires for a write through node 1.
    let watched = format!("{root}/k0");
    let (_, _, watch) = clients[2].get_and_watch_data(&watched).await.unwrap();
    clients[0].set_data(&watched, b"changed", None).await.unwrap();
    let event = bounded(10, "NodeDataChanged on another node", watch.changed()).await;
    assert_eq!(event.event_type, EventType::NodeDataChanged);

    // An ephemeral of a session on node 2 is seen through node 3 and gone once it closes.
    let ephemeral = format!("{root}/ephemeral");
    let owner = c3.nodes[1].client().await;
    owner.create(&ephemeral, b"", &CreateMode::Ephemeral.with_acls(Acls::anyone_all())).await.unwrap();
    clients[2].sync(&root).await.unwrap();
    assert!(clients[2].check_stat(&ephemeral).await.unwrap().is_some());
    drop(owner);
    let gone = warren_tests::wait_until_async(Duration::from_secs(10), || async {
        clients[2].sync(&root).await.is_ok() && clients[2].check_stat(&ephemeral).await.unwrap().is_none()
    })
    .await;
    assert!(gone, "the ephemeral outlived its closed session");
}

/// A session of 4 s through `addr`, if one is made within 3 s.
async fn try_connect(addr: &str) -> Option<zk::Client> {
    let connect = zk::Client::connector().with_session_timeout(Duration::from_secs(4)).connect(addr);
    tokio::time::timeout(Duration::from_secs(3), connect).await.ok()?.ok()
}

/// Writes through `node` on several sessions for `run`, reconnecting after errors; records
/// every acknowledged create.
async fn write_stream(node_addr: String, roots: Vec<String>, run: Duration) -> BTreeMap<String, Vec<u8>> {
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let deadline = Instant::now() + run;
    let mut tasks = Vec::new();
    for task in 0..6 {
        let (acked, roots, addr) = (acked.clone(), roots.clone(), node_addr.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < deadline {
                let Some(c) = try_connect(&addr).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                while Instant::now() < deadline {
                    i += 1;
                    let root = &roots[i as usize % roots.len()];
                    let path = format!("{root}/t{task}-{i}");
                    let data = format!("task{task} write{i}").into_bytes();
                    match tokio::time::timeout(Duration::from_secs(5), c.create(&path, &data, &persistent())).await {
                        Ok(Ok(_)) => {
                            acked.lock().unwrap().insert(path, data);
                        }
                        _ => break,
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_the_leader_during_a_write_stream_loses_no_acknowledged_write() {
    let mut c3 = cluster();
    let leader = c3.wait_leader(Duration::from_secs(10));
    let follower = if leader == 1 { 2 } else { 1 };
    // Several top-level roots, so the writes land in both groups.
    let roots: Vec<String> = (0..4).map(|i| format!("/{}", unique(&format!("kill-{i}")))).collect();
    {
        let setup = c3.node(follower).client().await;
        for root in &roots {
            setup.create(root, b"", &persistent()).await.unwrap();
        }
    }
    let addr = c3.node(follower).addr().to_string();
    let stream = tokio::spawn(write_stream(addr, roots.clone(), Duration::from_secs(4)));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let killed_at = Instant::now();
    c3.node(leader).kill9();
    let acked = stream.await.unwrap();
    assert!(acked.len() > 50, "the stream wrote too little to mean anything: {}", acked.len());
    let new_leader = c3.wait_leader(Duration::from_secs(10));
    assert_ne!(new_leader, leader);
    eprintln!(
        "{} writes acknowledged; leader {leader} killed, node {new_leader} leads {:?} later",
        acked.len(),
        killed_at.elapsed()
    );
    for id in 1..=3 {
        if id != leader {
            assert_has_all(&c3.nodes[id - 1], &acked, "a survivor").await;
        }
    }
    c3.node(leader).restart();
    assert_has_all(&c3.nodes[leader - 1], &acked, "the restarted leader").await;
}

/// Multis across two shards through `node_addr` for `run`, reconnecting after errors: each
/// creates `{a}/{name}` and `{b}/{name}`. Returns the names acknowledged and all names tried.
async fn multi_stream(node_addr: String, a: String, b: String, run: Duration) -> (Vec<String>, Vec<String>) {
    let (acked, tried) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    let deadline = Instant::now() + run;
    let mut tasks = Vec::new();
    for task in 0..4 {
        let (acked, tried, a, b, addr) = (acked.clone(), tried.clone(), a.clone(), b.clone(), node_addr.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < deadline {
                let Some(c) = try_connect(&addr).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                while Instant::now() < deadline {
                    i += 1;
                    let name = format!("m{task}-{i}");
                    tried.lock().unwrap().push(name.clone());
                    let mut w = c.new_multi_writer();
                    w.add_create(&format!("{a}/{name}"), b"x", &persistent()).unwrap();
                    w.add_create(&format!("{b}/{name}"), b"x", &persistent()).unwrap();
                    match tokio::time::timeout(Duration::from_secs(5), w.commit()).await {
                        Ok(Ok(_)) => acked.lock().unwrap().push(name),
                        _ => break,
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let (acked, tried) = (acked.lock().unwrap().clone(), tried.lock().unwrap().clone());
    (acked, tried)
}

/// Each acknowledged multi is whole on `node`, and every multi tried is there whole or not at
/// all (also those whose outcome the client never learned).
async fn assert_multis_whole(node: &WarrenProcess, a: &str, b: &str, acked: &[String], tried: &[String], what: &str) {
    let c = connect_eventually(node).await;
    let mut children = Vec::new();
    for root in [a, b] {
        bounded(20, "sync", c.sync(root)).await.unwrap_or_else(|e| panic!("{what}: sync {root}: {e}"));
        let (names, _) = c.get_children(root).await.unwrap();
        children.push(names.into_iter().collect::<std::collections::BTreeSet<String>>());
    }
    for name in acked {
        assert!(
            children[0].contains(name) && children[1].contains(name),
            "{what}: acknowledged multi {name} not whole"
        );
    }
    for name in tried {
        assert_eq!(
            children[0].contains(name),
            children[1].contains(name),
            "{what}: multi {name} applied in one shard only"
        );
    }
}

/// Multis across shards of one group while its leader is killed with -9: no acknowledged multi
/// is lost and none is half applied, on the survivors and on the restarted leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_the_leader_during_multis_across_shards_leaves_each_whole_or_absent_everywhere() {
    // Two shards of the one group (8 shards, one core per node).
    kill9_of_group_0s_leader_during_multis_over_shards_0_and_1(1, "multi-kill").await;
}

/// Multis across two Raft groups (`--cores 2`: shard 0 in group 0, shard 1 in group 1) while
/// the coordinator group's leader is killed with -9 mid-stream: every acknowledged multi is
/// whole and every other one whole or absent, on the survivors and on the restarted node (the
/// two-phase commit's in-doubt multis are finished from the logs by the new leaders).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_the_coordinators_leader_during_multis_across_groups_leaves_each_whole_or_absent_everywhere() {
    kill9_of_group_0s_leader_during_multis_over_shards_0_and_1(2, "groups-kill").await;
}

/// A stream of multis creating a child under a top-level node of shard 0 and one of shard 1,
/// through a follower, while group 0's leader is killed with -9; then every multi is checked
/// whole or absent on each node.
async fn kill9_of_group_0s_leader_during_multis_over_shards_0_and_1(cores: u32, tag: &str) {
    let mut c3 = WarrenCluster::start(3, WarrenOpts::default().cores(cores).session_timeouts_ms(1000, 40000));
    let leader = c3.wait_leader(Duration::from_secs(10));
    let follower = if leader == 1 { 2 } else { 1 };
    let (a, b) = (top_level_in_shard(tag, 0, 8), top_level_in_shard(tag, 1, 8));
    {
        let setup = c3.node(follower).client().await;
        setup.create(&a, b"", &persistent()).await.unwrap();
        setup.create(&b, b"", &persistent()).await.unwrap();
    }
    let addr = c3.node(follower).addr().to_string();
    let stream = tokio::spawn(multi_stream(addr, a.clone(), b.clone(), Duration::from_secs(4)));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    c3.node(leader).kill9();
    let (acked, tried) = stream.await.unwrap();
    assert!(acked.len() > 20, "the stream wrote too little to mean anything: {}", acked.len());
    assert!(tried.len() > acked.len(), "no multi was in flight at the kill");
    eprintln!(
        "{} multis acknowledged of {} tried ({cores} cores); leader {leader} of group 0 killed",
        acked.len(),
        tried.len()
    );
    for id in 1..=3 {
        if id != leader {
            assert_multis_whole(&c3.nodes[id - 1], &a, &b, &acked, &tried, "a survivor").await;
        }
    }
    c3.node(leader).restart();
    assert_multis_whole(&c3.nodes[leader - 1], &a, &b, &acked, &tried, "the restarted leader").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_serves_nothing_stale_once_it_resumes() {
    // One core: one group, so the paused node leads the group of every key.
    let mut c3 = WarrenCluster::start(3, WarrenOpts::default().cores(1));
    let leader = c3.wait_leader(Duration::from_secs(10));
    let follower = if leader == 1 { 2 } else { 1 };
    let root = format!("/{}", unique("pause"));
    let key = format!("{root}/key");
    let on_leader = c3.node(leader).client().await;
    on_leader.create(&root, b"", &persistent()).await.unwrap();
    on_leader.create(&key, b"before", &persistent()).await.unwrap();
    // Connected first: a new session needs the groups' leaders to commit it.
    let writer = c3.node(follower).client().await;
    let pid = c3.node(leader).pid().expect("running") as libc::pid_t;
    // SAFETY: kill(2) on a child this test spawned.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let paused_at = Instant::now();
    let mut last = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut written = 0;
    while written < 20 {
        assert!(Instant::now() < deadline, "no write succeeded while the leader was paused");
        let data = format!("during-{written}").into_bytes();
        match tokio::time::timeout(Duration::from_secs(3), writer.set_data(&key, &data, None)).await {
            Ok(Ok(_)) => {
                if written == 0 {
                    eprintln!("first write after the pause acknowledged {:?} after it", paused_at.elapsed());
                }
                last = data;
                written += 1;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    // Through the old leader: a sync and a read see the last write acknowledged meanwhile,
    // whether the old session survived or a new one is needed.
    let resumed = c3.nodes[leader - 1].connect_string();
    let seen = warren_tests::wait_until_async(Duration::from_secs(20), || async {
        // The resumed node may refuse sessions while it catches up (ZooKeeper does).
        let connect = zk::Client::connector().with_fail_eagerly().connect(&resumed);
        let Ok(Ok(c)) = tokio::time::timeout(Duration::from_secs(3), connect).await else { return false };
        if !matches!(tokio::time::timeout(Duration::from_secs(3), c.sync(&root)).await, Ok(Ok(()))) {
            return false;
        }
        let (data, _) = c.get_data(&key).await.expect("the key exists");
        assert_eq!(data, last, "a sync+read through the resumed leader returned stale data");
        true
    })
    .await;
    assert!(seen, "the resumed node never answered a sync");
    drop(on_leader);
    assert!(
        wait_until(Duration::from_secs(10), || c3.modes().iter().filter(|m| m.as_deref() == Some("leader")).count()
            == 1),
        "not exactly one leader after the pause: {:?}",
        c3.modes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_cluster_prints_three_serving_nodes_and_stops_them_on_sigterm() {
    use std::io::BufRead;
    if warren_tests::is_zookeeper() {
        eprintln!("skipped: dev-cluster is warren's own command");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(warren_tests::warren_bin())
        .args(["dev-cluster", "--nodes", "3", "--data-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout).lines().take(3).map(|l| l.unwrap()).collect::<Vec<String>>()
    });
    let addrs = bounded(40, "dev-cluster prints three addresses", lines).await.unwrap();
    assert_eq!(addrs.len(), 3, "{addrs:?}");
    let first = bounded(20, "connect", zk::Client::connector().connect(&addrs[0])).await.unwrap();
    first.create("/dev-cluster", b"hello", &persistent()).await.unwrap();
    let last = bounded(20, "connect", zk::Client::connector().connect(&addrs[2])).await.unwrap();
    last.sync("/dev-cluster").await.unwrap();
    assert_eq!(last.get_data("/dev-cluster").await.unwrap().0, b"hello");
    let listing = std::fs::read_to_string(dir.path().join("nodes.txt")).unwrap();
    assert_eq!(listing.lines().filter(|l| l.contains("restart: ")).count(), 3, "{listing}");
    drop((first, last));
    // SAFETY: kill(2) on the child this test spawned.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let exited = wait_until(Duration::from_secs(10), || child.try_wait().unwrap().is_some());
    assert!(exited, "dev-cluster did not stop on SIGTERM");
    for addr in &addrs {
        let addr: std::net::SocketAddr = addr.parse().unwrap();
        let gone = wait_until(Duration::from_secs(5), || std::net::TcpStream::connect(addr).is_err());
        assert!(gone, "node {addr} still serves after dev-cluster stopped");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_moved_to_a_lagging_node_never_reads_older_data() {
    use warren_tests::{JuteReader, RawSession};
    let mut c3 = cluster();
    let leader = c3.wait_leader(Duration::from_secs(10));
    // The node that falls behind must lead no group, or stopping it would stall the writes.
    let leaders = group_leaders(&c3);
    let lagging = (1..=3).find(|id| *id != leader && !leaders.contains(&id.to_string())).expect("a node leads nothing");
    let root = format!("/{}", unique("switch"));
    let mut session = RawSession::connect(c3.node(leader).addr(), 10_000);
    assert_eq!(session.create(&root, b"", 0).err, 0);
    for round in 0..5 {
        let key = format!("{root}/k{round}");
        assert_eq!(session.create(&key, b"old", 0).err, 0);
        // The lagging node misses the new value while it is stopped...
        let pid = c3.node(lagging).pid().expect("running") as libc::pid_t;
        // SAFETY: kill(2) on a child this test spawned.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        if round % 2 == 1 {
            // A session the lagging node has not even heard of yet.
            session = RawSession::connect(c3.node(leader).addr(), 10_000);
        }
        let written = session.set_data(&key, b"new", -1);
        assert_eq!(written.err, 0, "round {round}: a majority is up");
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        // ...and the session moves to it at once, as a client does when its server goes away.
        // Warren catches up before it answers; ZooKeeper refuses a client that has seen more
        // than it has, and the client tries again.
        let to = c3.node(lagging).addr();
        let mut moved = None;
        let mut attempts = 0;
        let accepted = wait_until(Duration::from_secs(10), || {
            attempts += 1;
            moved = RawSession::try_reattach(to, session.session_id, &session.password, written.zxid);
            moved.is_some()
        });
        assert!(accepted, "round {round}: the lagging node never took the session");
        assert!(attempts == 1 || warren_tests::is_zookeeper(), "round {round}: refused {} times first", attempts - 1);
        let mut moved = moved.expect("accepted");
        let reply = moved.get_data(&key, false);
        assert_eq!(reply.err, 0);
        let data = JuteReader::new(&reply.body).buf();
        assert_eq!(data.as_deref(), Some(&b"new"[..]), "round {round}: the moved session read older data");
        // Back to the leader for the next round.
        session = RawSession::reattach(c3.node(leader).addr(), session.session_id, &session.password, reply.zxid);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_the_leader_hands_leadership_over_before_it_exits() {
    if warren_tests::is_zookeeper() {
        eprintln!("skipped: ZooKeeper's leader does not hand over on SIGTERM");
        return;
    }
    let mut c3 = WarrenCluster::start(3, WarrenOpts::default().cores(2));
    let leader = c3.wait_leader(Duration::from_secs(10));
    let follower = if leader == 1 { 2 } else { 1 };
    let writer = c3.node(follower).client().await;
    writer.create("/handover", b"before", &persistent()).await.unwrap();
    let stopped_at = Instant::now();
    assert!(c3.node(leader).terminate(Duration::from_secs(10)), "the leader did not exit cleanly on SIGTERM");
    let log = c3.node(leader).stderr_tail();
    assert!(log.contains("leadership handed over"), "no hand-over in the log:\n{log}");
    // Every group already has a new leader: a write through the follower goes through at once.
    bounded(5, "a write after the hand-over", writer.set_data("/handover", b"after", None)).await.unwrap();
    eprintln!("leader stopped and a write acknowledged {:?} after SIGTERM", stopped_at.elapsed());
    let new_leader = c3.wait_leader(Duration::from_secs(5));
    assert_ne!(new_leader, leader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_minority_acknowledges_no_write_and_rejoins_with_the_majority_writes() {
    let mut c3 = WarrenCluster::start_behind_proxies(3, WarrenOpts::default().cores(1));
    let leader = c3.wait_leader(Duration::from_secs(10));
    let root = format!("/{}", unique("partition"));
    let on_minority = c3.node(leader).client().await;
    on_minority.create(&root, b"", &persistent()).await.unwrap();
    let majority: Vec<usize> = (1..=3).filter(|&id| id != leader).collect();
    let on_majority = c3.node(majority[0]).client().await;
    // The leader alone on its side of the cut.
    c3.set_isolated(leader, true);
    let attempt = format!("{root}/minority-write");
    let refused = tokio::time::timeout(Duration::from_secs(4), on_minority.create(&attempt, b"", &persistent())).await;
    assert!(!matches!(refused, Ok(Ok(_))), "the isolated old leader acknowledged a write");
    // The majority elects a leader and goes on (ZooKeeper's election and sync can take ~10 s).
    let written = format!("{root}/majority-write");
    create_acknowledged(&on_majority, &written, b"m", Duration::from_secs(25), "the majority wrote nothing").await;
    // The minority node steps down (check-quorum) rather than go on as leader.
    let stepped_down = wait_until(Duration::from_secs(5), || {
        warren_tests::four_letter_at(c3.nodes[leader - 1].addr(), "srvr", Duration::from_secs(1))
            .is_ok_and(|srvr| !srvr.contains("Mode: leader"))
    });
    assert!(stepped_down, "the isolated node still says it leads");
    c3.set_isolated(leader, false);
    let mut expected = BTreeMap::new();
    expected.insert(written, b"m".to_vec());
    assert_has_all(&c3.nodes[leader - 1], &expected, "the healed minority").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_is_a_read_index_round_and_writes_nothing_to_the_log() {
    if warren_tests::is_zookeeper() {
        eprintln!("skipped: reads Warren's mntr");
        return;
    }
    let mut c3 = WarrenCluster::start(3, WarrenOpts::default().cores(1));
    let leader = c3.wait_leader(Duration::from_secs(10));
    let follower = if leader == 1 { 2 } else { 1 };
    let on_leader = c3.node(leader).client().await;
    let on_follower = c3.node(follower).client().await;
    let last_index = |node: &WarrenProcess| mntr_value(node, "warren_group_0_last_index");
    on_leader.create("/synced", b"0", &persistent()).await.unwrap();
    let before = last_index(&c3.nodes[leader - 1]);
    for i in 1..=20 {
        // Each sync through the follower sees the write acknowledged just before it.
        on_leader.set_data("/synced", i.to_string().as_bytes(), None).await.unwrap();
        bounded(5, "sync through the follower", on_follower.sync("/synced")).await.unwrap();
        assert_eq!(on_follower.get_data("/synced").await.unwrap().0, i.to_string().into_bytes());
        bounded(5, "sync on the leader", on_leader.sync("/synced")).await.unwrap();
    }
    assert_eq!(last_index(&c3.nodes[leader - 1]), before + 20, "the 20 writes and nothing for the 40 syncs");
}

/// Options of a cluster whose reads are linearizable.
fn linearizable_reads(opts: WarrenOpts) -> WarrenOpts {
    let mut opts = opts;
    opts.extra_args.push("--linearizable-reads".into());
    opts
}

/// One value of `node`'s mntr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_reads_through_a_follower_see_every_write_acknowledged_before_them() {
    if warren_tests::is_zookeeper() {
        eprintln!("skipped: ZooKeeper has no linearizable read mode (a read needs a sync before it)");
        return;
    }
    let mut c3 = WarrenCluster::start(3, linearizable_reads(WarrenOpts::default().cores(1)));
    let leader = c3.wait_leader(Duration::from_secs(10));
    let follower = if leader == 1 { 2 } else { 1 };
    let on_leader = c3.node(leader).client().await;
    let on_follower = c3.node(follower).client().await;
    let root = format!("/{}", unique("linearizable"));
    let key = format!("{root}/key");
    on_leader.create(&root, b"", &persistent()).await.unwrap();
    on_leader.create(&key, b"0", &persistent()).await.unwrap();
    let before = mntr_value(&c3.nodes[leader - 1], "warren_group_0_last_index");
    let reads_before = mntr_value(&c3.nodes[follower - 1], "warren_reads_linearizable");
    for i in 1..=20 {
        // Acknowledged through the leader, then read through the follower at once: no sync.
        // A follower learns of a commit a heartbeat after its leader, so without the mode the
        // read often returns the value before.
        on_leader.set_data(&key, i.to_string().as_bytes(), None).await.unwrap();
        let (data, _) = bounded(5, "a read through the follower", on_follower.get_data(&key)).await.unwrap();
        assert_eq!(data, i.to_string().into_bytes(), "write {i}: the follower read a stale value");
        let child = format!("{root}/c{i}");
        on_leader.create(&child, b"", &persistent()).await.unwrap();
        assert!(on_follower.check_stat(&child).await.unwrap().is_some(), "create {i}: not seen through the follower");
        let (children, _) = on_follower.get_children(&root).await.unwrap();
        assert_eq!(children.len(), i + 1, "create {i}: {children:?}");
    }
    // Reads of "/", gathered from every shard, too.
    for i in 0..5 {
        let top = unique("top");
        on_leader.create(&format!("/{top}"), b"", &persistent()).await.unwrap();
        let (children, _) = on_follower.get_children("/").await.unwrap();
        assert!(children.contains(&top), "top-level create {i}: not among the children of / through the follower");
    }
    let follower_node = &c3.nodes[follower - 1];
    assert!(
        mntr_value(follower_node, "warren_reads_linearizable") >= reads_before + 65,
        "every read took a ReadIndex round"
    );
    assert_eq!(mntr_value(follower_node, "warren_reads_inline"), 0, "no read was answered on the spot");
    assert_eq!(
        mntr_value(&c3.nodes[leader - 1], "warren_group_0_last_index"),
        before + 45,
        "the 45 writes and nothing for the 65 reads"
    );
    assert!(follower_node.four_letter("conf").contains("linearizableReads=true\n"));

    // A single node is linearizable as it is: the mode changes nothing there.
    let single = WarrenProcess::start(linearizable_reads(WarrenOpts::default()));
    let client = single.client().await;
    client.create("/alone", b"one", &persistent()).await.unwrap();
    for _ in 0..5 {
        assert_eq!(client.get_data("/alone").await.unwrap().0, b"one");
    }
    assert_eq!(mntr_value(&single, "warren_reads_linearizable"), 0, "no ReadIndex round on a single node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_linearizable_reads_a_resumed_old_leader_never_answers_a_stale_read() {
    use warren_tests::{op, Jute, JuteReader, RawSession};
    if warren_tests::is_zookeeper() {
        eprintln!("skipped: ZooKeeper has no linearizable read mode (a read needs a sync before it)");
        return;
    }
    // One core: one group, so the paused node leads the group of every key.
    let mut c3 = WarrenCluster::start(3, linearizable_reads(WarrenOpts::default().cores(1)));
    let leader = c3.wait_leader(Duration::from_secs(10));
    let follower = if leader == 1 { 2 } else { 1 };
    let root = format!("/{}", unique("stale"));
    let key = format!("{root}/key");
    // A session that does not ping, on a connection to the leader that outlives the pause.
    let mut on_old_leader = RawSession::connect(c3.node(leader).addr(), 30_000);
    assert_eq!(on_old_leader.create(&root, b"", 0).err, 0);
    assert_eq!(on_old_leader.create(&key, b"before", 0).err, 0);
    let writer = c3.node(follower).client().await;
    let pid = c3.node(leader).pid().expect("running") as libc::pid_t;
    // SAFETY: kill(2) on a child this test spawned.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < deadline, "no write succeeded while the leader was paused");
        match tokio::time::timeout(Duration::from_secs(3), writer.set_data(&key, b"after", None)).await {
            Ok(Ok(_)) => break,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    // Sent after the write was acknowledged, while the old leader still sleeps: it reads the
    // request when it wakes, before it has heard of the new leader or the write.
    let xid = on_old_leader.next_xid();
    on_old_leader.send(xid, op::GET_DATA, &Jute::new().str(&key).bool(false));
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    match on_old_leader.read_reply() {
        Ok(reply) => {
            assert_eq!((reply.xid, reply.err), (xid, 0));
            let data = JuteReader::new(&reply.body).buf();
            assert_eq!(data.as_deref(), Some(&b"after"[..]), "the resumed old leader answered a stale read");
        }
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            panic!("the resumed old leader neither answered the read nor closed the connection")
        }
        // Its ReadIndex round found it deposed: the connection closes, as for a sync.
        Err(e) => eprintln!("the read's connection was closed ({e}): the old leader learned it was deposed"),
    }
    // And through the old leader, now a follower, on a new connection of the same session.
    let addr = c3.node(leader).addr();
    let mut session = None;
    let attached = wait_until(Duration::from_secs(10), || {
        session = RawSession::try_reattach(addr, on_old_leader.session_id, &on_old_leader.password, 0);
        session.is_some()
    });
    assert!(attached, "the resumed node never took the session back");
    let mut session = session.expect("attached");
    for round in 0..5 {
        let data = format!("round {round}");
        bounded(5, "a write through the new leader's side", writer.set_data(&key, data.as_bytes(), None))
            .await
            .unwrap();
        let reply = session.get_data(&key, false);
        assert_eq!(reply.err, 0);
        let read = JuteReader::new(&reply.body).buf();
        assert_eq!(read.as_deref(), Some(data.as_bytes()), "round {round}: a stale read through the old leader");
    }
}

/// The leader of `group` as node `id` reports it (0 while it knows none).
fn group_leader_seen_by(c3: &WarrenCluster, id: usize, group: usize) -> usize {
    mntr_value(&c3.nodes[id - 1], &format!("warren_group_{group}_leader")) as usize
}

/// A session's close is one entry per group. Its close in group 1 is abandoned (the session
/// group's leader, which proposed it, lost group 1's leader) while group 0 commits its own: the
/// session's ephemeral in group 1 must still go. It stayed for good before the leader of every
/// group learned to close again what group 0 closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_close_abandoned_in_one_group_still_removes_its_ephemerals_there() {
    if warren_tests::is_zookeeper() {
        eprintln!("skipped: reads Warren's mntr (groups)");
        return;
    }
    let opts = WarrenOpts::default().cores(2).shards(2).session_timeouts_ms(1000, 40000);
    let c3 = WarrenCluster::start_behind_proxies(3, opts);
    // The session group's leader expires the session; it must not lead group 1, so that its
    // close there has to travel a link the test cuts. If it leads both, group 1 gets another
    // leader while the node is cut off from it in that group.
    let leaders = || (group_leader_seen_by(&c3, 1, 0), group_leader_seen_by(&c3, 1, 1));
    assert!(wait_until(Duration::from_secs(10), || { leaders().0 != 0 && leaders().1 != 0 }), "{:?}", leaders());
    let (l0, l1) = leaders();
    if l0 == l1 {
        for other in (1..=3).filter(|&id| id != l0) {
            c3.set_core_link(l0, other, 1, false);
            c3.set_core_link(other, l0, 1, false);
        }
        let moved = wait_until(Duration::from_secs(10), || {
            (1..=3).filter(|&id| id != l0).all(|id| ![0, l0].contains(&group_leader_seen_by(&c3, id, 1)))
        });
        assert!(moved, "group 1 elected no other leader");
        for other in (1..=3).filter(|&id| id != l0) {
            c3.set_core_link(l0, other, 1, true);
            c3.set_core_link(other, l0, 1, true);
        }
    }
    let other_of = |exclude: usize| (1..=3).find(|&id| id != l0 && id != exclude).expect("a third node");
    let l1 = group_leader_seen_by(&c3, other_of(0), 1);
    assert!(l1 != 0 && l1 != l0, "group 1 led by {l1}, group 0 by {l0}");
    let third = other_of(l1);
    let observer = c3.nodes[third - 1].client().await;
    let proxy = Proxy::start(c3.nodes[third - 1].addr());
    let through_proxy = proxy.addr().to_string();
    let connect = zk::Client::connector().with_session_timeout(Duration::from_millis(2000)).connect(&through_proxy);
    let session = bounded(20, "connect through the proxy", connect).await.unwrap();
    let ephemeral = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
    let in_group0 = top_level_in_shard("close0", 0, 2);
    let in_group1 = top_level_in_shard("close1", 1, 2);
    session.create(&in_group0, b"", &ephemeral).await.unwrap();
    session.create(&in_group1, b"", &ephemeral).await.unwrap();
    // The session group's leader loses group 1: its core-1 links to group 1's leader are cut.
    c3.set_core_link(l0, l1, 1, false);
    c3.set_core_link(l1, l0, 1, false);
    let lost = wait_until(Duration::from_secs(10), || group_leader_seen_by(&c3, l0, 1) == 0);
    assert!(lost, "node {l0} still knows group 1's leader");
    // The session goes silent and expires; its close in group 1 waits for a leader node l0
    // cannot reach, and is abandoned.
    proxy.cut();
    let gone = |path: String| {
        let observer = &observer;
        async move {
            warren_tests::wait_until_async(Duration::from_secs(20), || async {
                observer.check_stat(&path).await.unwrap().is_none()
            })
            .await
        }
    };
    assert!(gone(in_group0.clone()).await, "the session never expired");
    assert!(gone(in_group1.clone()).await, "the ephemeral in group 1 outlived its session");
    assert!(
        mntr_value(&c3.nodes[l1 - 1], "warren_session_closes_redone") >= 1,
        "group 1's leader did not have to close the session again: the scenario did not happen"
    );
    c3.set_core_link(l0, l1, 1, true);
    c3.set_core_link(l1, l0, 1, true);
    drop(proxy);
}

/// The leader of every group as node `id` reports it, once it knows all `groups` of them.
fn leaders_seen_by(c3: &WarrenCluster, id: usize, groups: usize) -> Vec<usize> {
    (0..groups).map(|g| group_leader_seen_by(c3, id, g)).collect()
}

/// Leader placement: group g's preferred leader is node g+1 (voter g mod 3): three groups on
/// three nodes get one leader each, and a group that moved when its node was killed moves back
/// once the node is back and caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leaders_of_the_groups_spread_over_the_nodes_and_come_back_after_a_failure() {
    if warren_tests::is_zookeeper() {
        eprintln!("skipped: ZooKeeper has one group");
        return;
    }
    let mut opts = WarrenOpts::default().cores(3).shards(3);
    opts.extra_args.extend(["--leader-placement-delay-ms".to_string(), "1000".to_string()]);
    let mut c3 = WarrenCluster::start(3, opts);
    let spread = |c3: &WarrenCluster, seen_by: usize| leaders_seen_by(c3, seen_by, 3) == vec![1, 2, 3];
    let placed = wait_until(Duration::from_secs(15), || spread(&c3, 1));
    assert!(placed, "group leaders {:?}, not one per node", leaders_seen_by(&c3, 1, 3));
    {
        // Writes to every group, so the restarted node has entries to catch up on.
        let client = c3.node(2).client().await;
        for i in 0..30 {
            client.create(&format!("/{}", unique(&format!("placed-{i}"))), b"x", &persistent()).await.unwrap();
        }
    }
    c3.node(1).kill9();
    let moved = wait_until(Duration::from_secs(10), || {
        let group0 = group_leader_seen_by(&c3, 2, 0);
        group0 != 0 && group0 != 1
    });
    assert!(moved, "group 0 found no new leader: {:?}", leaders_seen_by(&c3, 2, 3));
    {
        let client = c3.node(3).client().await;
        for i in 0..30 {
            client.create(&format!("/{}", unique(&format!("moved-{i}"))), b"y", &persistent()).await.unwrap();
        }
    }
    c3.node(1).restart();
    let back = wait_until(Duration::from_secs(20), || spread(&c3, 2) && spread(&c3, 1));
    assert!(
        back,
        "after the restart: {:?} (node 2 sees), {:?} (node 1 sees)",
        leaders_seen_by(&c3, 2, 3),
        leaders_seen_by(&c3, 1, 3)
    );
}

/// Five voters: two can fail (the leader among them) and the other three go on writing; a
/// third failure leaves two, which acknowledge nothing; a restarted node restores the majority
/// and has every write acknowledged before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_write_through_two_failures_and_stop_at_three() {
    let mut c5 = WarrenCluster::start(5, WarrenOpts::default().cores(1));
    let leader = c5.wait_leader(Duration::from_secs(15));
    let mut alive: Vec<usize> = (1..=5).filter(|&id| id != leader).collect();
    let root = format!("/{}", unique("five"));
    let writer = connect_eventually(&c5.nodes[alive[0] - 1]).await;
    writer.create(&root, b"", &persistent()).await.unwrap();
    let mut expected = BTreeMap::new();
    // Two failures, the leader first: every write is still acknowledged.
    let second = alive.pop().expect("four others");
    for (round, killed) in [leader, second].into_iter().enumerate() {
        c5.node(killed).kill9();
        let path = format!("{root}/after-kill-{round}");
        let what = format!("no write acknowledged after node {killed} was killed");
        create_acknowledged(&writer, &path, b"w", Duration::from_secs(25), &what).await;
        expected.insert(path, b"w".to_vec());
    }
    // A third failure: two of five are no majority.
    let third = alive.pop().expect("three others");
    c5.node(third).kill9();
    let refused =
        tokio::time::timeout(Duration::from_secs(4), writer.create(&format!("{root}/minority"), b"", &persistent()))
            .await;
    assert!(!matches!(refused, Ok(Ok(_))), "two of five nodes acknowledged a write");
    // One node back: three of five again.
    c5.node(third).restart();
    let path = format!("{root}/majority-again");
    let writer = connect_eventually(&c5.nodes[alive[0] - 1]).await;
    let what = format!("no write acknowledged once node {third} was back");
    create_acknowledged(&writer, &path, b"m", Duration::from_secs(25), &what).await;
    expected.insert(path, b"m".to_vec());
    for id in alive.iter().copied().chain([third]) {
        assert_has_all(&c5.nodes[id - 1], &expected, "a node of the majority").await;
    }
}

/// A write forwarded over a link that then loses it (here: the follower's link to the leader is
/// cut while the leader stays) must not wait forever: nothing else would end the wait while the
/// leader keeps leading. The client gets an answer or ConnectionLoss ("maybe"), and writes
/// through the follower work again once the link is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_forwarded_over_a_lost_link_is_answered_not_left_waiting() {
    if warren_tests::is_zookeeper() {
        eprintln!("skipped: cuts one direction of Warren's per-core peer links");
        return;
    }
    let opts = WarrenOpts::default().cores(1).session_timeouts_ms(1000, 40000);
    let c3 = WarrenCluster::start_behind_proxies(3, opts);
    let leader = c3.wait_leader(Duration::from_secs(10));
    let follower = if leader == 1 { 2 } else { 1 };
    let root = format!("/{}", unique("lostlink"));
    // A long session: its client gives up on a silent connection only after 20 s (replies,
    // pings' too, come in order, so a write left waiting silences the connection).
    let address = c3.nodes[follower - 1].connect_string();
    let connect = zk::Client::connector().with_session_timeout(Duration::from_secs(30)).connect(&address);
    let client = bounded(20, "connect to the follower", connect).await.unwrap();
    client.create(&root, b"", &persistent()).await.unwrap();
    // The follower can no longer reach the leader; the leader still reaches it and the third
    // node, so it keeps leading.
    c3.set_link(follower, leader, false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let attempt =
        tokio::time::timeout(Duration::from_secs(5), client.create(&format!("{root}/w"), b"", &persistent())).await;
    assert!(attempt.is_ok(), "a write forwarded over the lost link got no answer in 5 s");
    c3.set_link(follower, leader, true);
    let client = connect_eventually(&c3.nodes[follower - 1]).await;
    let what = "no write through the follower once the link was back";
    create_acknowledged(&client, &format!("{root}/after"), b"", Duration::from_secs(15), what).await;
}

/// A leader killed with -9 is replaced as soon as its peers see its connections end, not after
/// an election timeout of silence (as a ZooKeeper follower goes looking when its leader's
/// socket closes). The election timeout is 5 s here, so a write acknowledged through a follower
/// within 2.5 s of the kill can only come from the early election; `bench/failover.py`
/// measures the gap at the default timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_without_waiting_out_the_election_timeout() {
    let mut opts = WarrenOpts::default().session_timeouts_ms(1000, 40000);
    opts.extra_args = vec!["--election-timeout-ms".into(), "5000".into()];
    let mut c3 = WarrenCluster::start(3, opts);
    let leader = c3.wait_leader(Duration::from_secs(30));
    let follower = if leader == 1 { 2 } else { 1 };
    assert!(
        c3.node(follower).four_letter("conf").contains("electionTimeoutMs=5000"),
        "the election timeout did not take: {}",
        c3.node(follower).four_letter("conf")
    );
    let path = format!("/{}", unique("failover"));
    let client = c3.node(follower).client().await;
    client.create(&path, b"before", &persistent()).await.unwrap();
    c3.node(leader).kill9();
    let killed_at = Instant::now();
    let addr = c3.node(follower).addr().to_string();
    let mut client = Some(client);
    let written = loop {
        assert!(
            killed_at.elapsed() < Duration::from_millis(2500),
            "no write acknowledged within 2.5 s of the leader's kill -9: the group waited for its election timeout\n{}",
            c3.node(follower).stderr_tail()
        );
        let c = match client.take() {
            Some(c) => c,
            None => {
                let connect = zk::Client::connector().with_session_timeout(Duration::from_secs(4)).connect(&addr);
                match tokio::time::timeout(Duration::from_millis(500), connect).await {
                    Ok(Ok(c)) => c,
                    _ => continue,
                }
            }
        };
        match tokio::time::timeout(Duration::from_millis(500), c.set_data(&path, b"after", None)).await {
            Ok(Ok(_)) => break killed_at.elapsed(),
            Ok(Err(zk::Error::ConnectionLoss)) | Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                client = Some(c);
            }
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    let new_leader = c3.wait_leader(Duration::from_secs(5));
    assert_ne!(new_leader, leader);
    eprintln!("leader {leader} killed; a write through node {follower} acknowledged {written:?} later");
    let reader = connect_eventually(&c3.nodes[new_leader - 1]).await;
    bounded(10, "sync", reader.sync(&path)).await.unwrap();
    assert_eq!(reader.get_data(&path).await.unwrap().0, b"after");
}
