//! Sessions: negotiated time-outs, ephemerals vanishing on close and on expiry (a silent raw
//! session; a client cut off by a proxy that then sees `Expired`), reconnect within the
//! time-out keeping the session and its watches, containers and TTL nodes being reaped.

use std::time::{Duration, Instant};

use warren_tests::zk::{self, Acls, CreateMode, EventType, SessionState};
use warren_tests::{bounded, closed_within, unique, wait_until_async, Proxy, RawSession, WarrenOpts, WarrenProcess};

fn persistent() -> zk::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

fn ephemeral() -> zk::CreateOptions<'static> {
    CreateMode::Ephemeral.with_acls(Acls::anyone_all())
}

async fn gone_within(c: &zk::Client, path: &str, within: Duration) -> bool {
    wait_until_async(within, || async { c.check_stat(path).await.unwrap().is_none() }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiated_timeout_is_clamped() {
    let s = WarrenProcess::start(WarrenOpts::default().session_timeouts_ms(1000, 40000));
    let low = tokio::task::spawn_blocking({
        let a = s.addr();
        move || RawSession::connect(a, 100).timeout_ms
    });
    assert_eq!(low.await.unwrap(), 1000, "below min → min");
    let a = s.addr();
    let high = tokio::task::spawn_blocking(move || RawSession::connect(a, 100_000).timeout_ms).await.unwrap();
    assert_eq!(high, 40000, "above max → max");
    let mid = tokio::task::spawn_blocking(move || RawSession::connect(a, 7000).timeout_ms).await.unwrap();
    assert_eq!(mid, 7000, "inside the range → as asked");
    let c = s.client_with(zk::Client::connector().with_session_timeout(Duration::from_millis(5000))).await;
    assert_eq!(c.session_timeout(), Duration::from_millis(5000));
    let c2 = s.client().await;
    assert_ne!(c.session_id(), c2.session_id(), "distinct sessions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemerals_vanish_when_the_session_closes() {
    let s = WarrenProcess::start(WarrenOpts::default());
    let observer = s.client().await;
    let root = format!("/{}", unique("eclose"));
    observer.create(&root, b"", &persistent()).await.unwrap();
    let owner = s.client().await;
    for i in 0..5 {
        owner.create(&format!("{root}/e{i}"), b"", &ephemeral()).await.unwrap();
    }
    owner
        .create(&format!("{root}/es-"), b"", &CreateMode::EphemeralSequential.with_acls(Acls::anyone_all()))
        .await
        .unwrap();
    assert_eq!(observer.list_children(&root).await.unwrap().len(), 6);
    drop(owner); // zookeeper-client closes the session when the last handle drops
    let ok =
        wait_until_async(Duration::from_secs(10), || async { observer.list_children(&root).await.unwrap().is_empty() })
            .await;
    assert!(ok, "ephemerals still present 10 s after closeSession: {:?}", observer.list_children(&root).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_session_expires_and_its_ephemerals_vanish() {
    let s = WarrenProcess::start(WarrenOpts::default().session_timeouts_ms(1000, 40000));
    let observer = s.client().await;
    let root = format!("/{}", unique("esilent"));
    observer.create(&root, b"", &persistent()).await.unwrap();
    let addr = s.addr();
    let eph = format!("{root}/e");
    let eph2 = eph.clone();
    let mut raw = tokio::task::spawn_blocking(move || {
        let mut raw = RawSession::connect(addr, 1000);
        assert_eq!(raw.timeout_ms, 1000);
        let r = raw.create(&eph2, b"", 1);
        assert_eq!(r.err, 0, "raw ephemeral create");
        raw
    })
    .await
    .unwrap();
    let st = observer.check_stat(&eph).await.unwrap().expect("ephemeral exists while the session lives");
    assert_eq!(st.ephemeral_owner, raw.session_id);
    let silent_since = Instant::now();
    // The raw session now sends nothing: no pings. It must expire within a few time-outs.
    assert!(
        gone_within(&observer, &eph, Duration::from_secs(15)).await,
        "ephemeral of a silent 1 s session still there after 15 s"
    );
    assert!(
        silent_since.elapsed() >= Duration::from_millis(900),
        "expired before its time-out: {:?}",
        silent_since.elapsed()
    );
    let closed =
        tokio::task::spawn_blocking(move || closed_within(&mut raw.stream, Duration::from_secs(10))).await.unwrap();
    assert!(closed, "server must close the connection of an expired session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinging_session_outlives_its_timeout() {
    let s = WarrenProcess::start(WarrenOpts::default().session_timeouts_ms(1000, 40000));
    let observer = s.client().await;
    let root = format!("/{}", unique("eping"));
    observer.create(&root, b"", &persistent()).await.unwrap();
    let addr = s.addr();
    let eph = format!("{root}/e");
    let eph2 = eph.clone();
    let raw = tokio::task::spawn_blocking(move || {
        let mut raw = RawSession::connect(addr, 1000);
        assert_eq!(raw.create(&eph2, b"", 1).err, 0);
        // Ping every 300 ms for 4 s: four time-outs.
        let until = Instant::now() + Duration::from_secs(4);
        while Instant::now() < until {
            raw.ping();
            std::thread::sleep(Duration::from_millis(300));
        }
        raw
    })
    .await
    .unwrap();
    assert!(observer.check_stat(&eph).await.unwrap().is_some(), "a pinging session must not expire");
    tokio::task::spawn_blocking(move || raw.close()).await.unwrap();
    assert!(gone_within(&observer, &eph, Duration::from_secs(10)).await, "closeSession must delete ephemerals");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cut_off_past_its_timeout_sees_expired() {
    let s = WarrenProcess::start(WarrenOpts::default().session_timeouts_ms(1000, 40000));
    let observer = s.client().await;
    let root = format!("/{}", unique("eexpire"));
    observer.create(&root, b"", &persistent()).await.unwrap();

    let proxy = Proxy::start(s.addr());
    let c = bounded(
        20,
        "connect via proxy",
        zk::Client::connector().with_session_timeout(Duration::from_millis(2000)).connect(&proxy.addr().to_string()),
    )
    .await
    .unwrap();
    let mut states = c.state_watcher();
    let eph = format!("{root}/e");
    c.create(&eph, b"", &ephemeral()).await.unwrap();

    proxy.cut();
    assert!(
        gone_within(&observer, &eph, Duration::from_secs(20)).await,
        "session cut off for > timeout did not expire"
    );
    proxy.heal();
    let expired = bounded(30, "client reaches Expired", async {
        loop {
            let st = states.changed().await;
            if st == SessionState::Expired {
                return st;
            }
        }
    })
    .await;
    assert_eq!(expired, SessionState::Expired);
    let err = c.get_data(&root).await.unwrap_err();
    assert_eq!(err, zk::Error::SessionExpired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_within_timeout_keeps_session_and_watches() {
    let s = WarrenProcess::start(WarrenOpts::default());
    let writer = s.client().await;
    let root = format!("/{}", unique("reconnect"));
    writer.create(&root, b"", &persistent()).await.unwrap();
    let data_node = format!("{root}/d");
    writer.create(&data_node, b"0", &persistent()).await.unwrap();

    let proxy = Proxy::start(s.addr());
    let c = bounded(
        20,
        "connect via proxy",
        zk::Client::connector().with_session_timeout(Duration::from_millis(10000)).connect(&proxy.addr().to_string()),
    )
    .await
    .unwrap();
    let sid = c.session_id();
    let eph = format!("{root}/e");
    c.create(&eph, b"", &ephemeral()).await.unwrap();
    let (_, _, dwatch) = c.get_and_watch_data(&data_node).await.unwrap();
    let (_, ewatch) = c.check_and_watch_stat(&format!("{root}/later")).await.unwrap();
    let mut states = c.state_watcher();

    proxy.cut();
    // While disconnected: changes the watches must hear about after reconnect (setWatches).
    writer.set_data(&data_node, b"1", None).await.unwrap();
    writer.create(&format!("{root}/later"), b"", &persistent()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    proxy.heal();

    bounded(20, "reconnected", async {
        while c.state() != SessionState::SyncConnected {
            states.changed().await;
        }
    })
    .await;
    assert_eq!(c.session_id(), sid);
    let ev = bounded(15, "missed data change after reconnect", dwatch.changed()).await;
    assert_eq!((ev.event_type, ev.path.as_str()), (EventType::NodeDataChanged, data_node.as_str()));
    let ev = bounded(15, "missed create after reconnect", ewatch.changed()).await;
    assert_eq!(ev.event_type, EventType::NodeCreated);
    let st = bounded(10, "ephemeral still there", writer.check_stat(&eph)).await.unwrap();
    assert_eq!(st.map(|s| s.ephemeral_owner), Some(sid.0), "session survived the short disconnect");
    assert_eq!(c.get_data(&data_node).await.unwrap().0, b"1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_is_removed_after_its_last_child() {
    let s = WarrenProcess::start(WarrenOpts::default().reap_interval_ms(200));
    let c = s.client().await;
    let root = format!("/{}", unique("container"));
    c.create(&root, b"", &persistent()).await.unwrap();
    let cont = format!("{root}/c");
    c.create(&cont, b"", &CreateMode::Container.with_acls(Acls::anyone_all())).await.unwrap();
    // A container that never had a child is kept.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(c.check_stat(&cont).await.unwrap().is_some(), "empty never-used container must stay");
    c.create(&format!("{cont}/a"), b"", &persistent()).await.unwrap();
    c.create(&format!("{cont}/b"), b"", &persistent()).await.unwrap();
    c.delete(&format!("{cont}/a"), None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(c.check_stat(&cont).await.unwrap().is_some(), "container with a child must stay");
    c.delete(&format!("{cont}/b"), None).await.unwrap();
    assert!(gone_within(&c, &cont, Duration::from_secs(20)).await, "emptied container not reaped within 20 s");
    assert!(c.check_stat(&root).await.unwrap().is_some(), "the persistent parent stays");
}

/// The container outlives its last child until the periodic sweep, as in ZooKeeper
/// (ContainerManager): Curator's mutex releases its lock node and the next acquire creates one
/// in the same container. It used to vanish in the apply of the delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emptied_container_stays_until_the_sweep() {
    let s = WarrenProcess::start(WarrenOpts::default().cores(2).reap_interval_ms(2000));
    let c = s.client().await;
    let root = format!("/{}", unique("container-sweep"));
    c.create(&root, b"", &CreateMode::Container.with_acls(Acls::anyone_all())).await.unwrap();
    let cont = format!("{root}/lock");
    c.create(&cont, b"", &CreateMode::Container.with_acls(Acls::anyone_all())).await.unwrap();
    for round in 0..3 {
        let node = format!("{cont}/lock-{round}");
        c.create(&node, b"", &CreateMode::Ephemeral.with_acls(Acls::anyone_all())).await.unwrap();
        c.delete(&node, None).await.unwrap();
        let st = c.check_stat(&cont).await.unwrap();
        assert!(st.is_some(), "round {round}: the container vanished with its last child");
        assert_eq!(st.unwrap().num_children, 0);
    }
    assert!(gone_within(&c, &cont, Duration::from_secs(20)).await, "emptied container not swept within 20 s");
    assert!(gone_within(&c, &root, Duration::from_secs(20)).await, "container emptied by the sweep not swept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_node_expires_unless_it_has_children() {
    let s = WarrenProcess::start(WarrenOpts::default().reap_interval_ms(200));
    let c = s.client().await;
    let root = format!("/{}", unique("ttl"));
    c.create(&root, b"", &persistent()).await.unwrap();
    let ttl = |m: CreateMode| m.with_acls(Acls::anyone_all()).with_ttl(Duration::from_millis(500));
    let lone = format!("{root}/lone");
    let parent = format!("{root}/parent");
    let created = Instant::now();
    c.create(&lone, b"x", &ttl(CreateMode::Persistent)).await.unwrap();
    c.create(&parent, b"", &ttl(CreateMode::Persistent)).await.unwrap();
    c.create(&format!("{parent}/kid"), b"", &persistent()).await.unwrap();
    let (_, seq) = c.create(&format!("{root}/s-"), b"", &ttl(CreateMode::PersistentSequential)).await.unwrap();
    let seq_path = format!("{root}/s-{seq}");

    assert!(gone_within(&c, &lone, Duration::from_secs(20)).await, "TTL node (500 ms) not reaped within 20 s");
    assert!(created.elapsed() >= Duration::from_millis(450), "reaped before its TTL: {:?}", created.elapsed());
    assert!(gone_within(&c, &seq_path, Duration::from_secs(20)).await, "sequential TTL node not reaped");
    assert!(c.check_stat(&parent).await.unwrap().is_some(), "a TTL node with children must stay");
    c.delete(&format!("{parent}/kid"), None).await.unwrap();
    assert!(gone_within(&c, &parent, Duration::from_secs(20)).await, "TTL node whose child left not reaped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_is_refreshed_by_writes() {
    let s = WarrenProcess::start(WarrenOpts::default().reap_interval_ms(200));
    let c = s.client().await;
    let root = format!("/{}", unique("ttlrefresh"));
    c.create(&root, b"", &persistent()).await.unwrap();
    let p = format!("{root}/busy");
    let opts = CreateMode::Persistent.with_acls(Acls::anyone_all()).with_ttl(Duration::from_millis(1500));
    c.create(&p, b"", &opts).await.unwrap();
    // Keep modifying it every 300 ms for 3 s (twice the TTL): it must survive.
    for i in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = c.set_data(&p, format!("{i}").as_bytes(), None).await;
        assert!(r.is_ok(), "TTL node reaped although modified {}ms ago: {r:?}", 300);
    }
    assert!(gone_within(&c, &p, Duration::from_secs(20)).await, "idle TTL node not reaped");
}
