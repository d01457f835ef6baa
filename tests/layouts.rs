//! The same semantics whatever the layout: several cores and shard counts, requests of one
//! connection spread over shards (FIFO, read-your-writes), version-checked updates racing
//! from many clients (no lost update), recovery of a multi-core layout after kill -9.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use warren_tests::zk::{self, Acls, CreateMode, Error};
use warren_tests::{bounded, skip_if_external, unique, WarrenOpts, WarrenProcess};

fn persistent() -> zk::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

async fn layout_roundtrip(cores: u32, shards: u32) {
    let mut s = WarrenProcess::start(WarrenOpts::default().cores(cores).shards(shards));
    let c = s.client().await;
    let tops: Vec<String> = (0..10).map(|i| format!("/{}", unique(&format!("l{cores}x{shards}t{i}")))).collect();
    for (i, t) in tops.iter().enumerate() {
        c.create(t, format!("{i}").as_bytes(), &persistent()).await.unwrap();
        c.create(&format!("{t}/child"), b"c", &persistent()).await.unwrap();
        c.create(&format!("{t}/eph"), b"", &CreateMode::Ephemeral.with_acls(Acls::anyone_all())).await.unwrap();
    }
    // Sequential children of "/" (one shard owns them): numbers still increase.
    let prefix = format!("/{}-", unique("rootseq"));
    let (_, a) = c.create(&prefix, b"", &CreateMode::PersistentSequential.with_acls(Acls::anyone_all())).await.unwrap();
    let (_, b) = c.create(&prefix, b"", &CreateMode::PersistentSequential.with_acls(Acls::anyone_all())).await.unwrap();
    assert!(b > a, "sequential children of / must increase: {a} then {b}");
    let kids = c.list_children("/").await.unwrap();
    for t in &tops {
        assert!(kids.contains(&t[1..].to_string()), "{t} missing from / ({cores} cores, {shards} shards)");
    }
    assert!(kids.contains(&format!("{}{a}", &prefix[1..])), "root sequential node missing");
    // A multi inside one subtree works on every layout.
    let mut m = c.new_multi_writer();
    m.add_set_data(&tops[3], b"m", Some(0)).unwrap();
    m.add_create(&format!("{}/m", tops[3]), b"", &persistent()).unwrap();
    m.add_delete(&format!("{}/child", tops[3]), None).unwrap();
    bounded(10, "multi", m.commit()).await.unwrap();
    let ephemerals = c.list_ephemerals("/").await.unwrap();
    assert_eq!(ephemerals.len(), tops.len(), "getEphemerals(/) gathers every shard: {ephemerals:?}");

    if skip_if_external("layout restart") {
        return;
    }
    drop(c);
    s.kill9();
    s.restart();
    let c = s.client().await;
    for (i, t) in tops.iter().enumerate() {
        let want = if i == 3 { b"m".to_vec() } else { format!("{i}").into_bytes() };
        assert_eq!(c.get_data(t).await.unwrap().0, want, "{t} after restart ({cores} cores, {shards} shards)");
    }
    assert!(c.check_stat(&format!("{}/child", tops[3])).await.unwrap().is_none());
    assert!(c.check_stat(&format!("{}/m", tops[3])).await.unwrap().is_some());
    let (_, n) = c.create(&prefix, b"", &CreateMode::PersistentSequential.with_acls(Acls::anyone_all())).await.unwrap();
    assert!(n > b, "root sequence reused after recovery: {n} after {b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_core_one_shard() {
    layout_roundtrip(1, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cores_eight_shards() {
    layout_roundtrip(2, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cores_three_shards() {
    layout_roundtrip(2, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_across_shards_keep_order_and_read_your_writes() {
    let s = WarrenProcess::start(WarrenOpts::default().cores(2));
    let c = s.client().await;
    let tops: Vec<String> = (0..8).map(|i| format!("/{}", unique(&format!("fifo{i}")))).collect();
    for t in &tops {
        c.create(t, b"0", &persistent()).await.unwrap();
    }
    // Without awaiting: write to shard X, read it back, write to shard Y, ... The reads are
    // answered in order and each sees the write issued just before it on this connection.
    let mut writes = Vec::new();
    let mut reads = Vec::new();
    for round in 1..=10 {
        for t in &tops {
            writes.push(c.set_data(t, format!("{round}").as_bytes(), None));
            reads.push((round, t.clone(), c.get_data(t)));
        }
    }
    for w in writes {
        bounded(30, "pipelined write", w).await.unwrap();
    }
    for (round, t, r) in reads {
        let (data, st) = bounded(30, "pipelined read", r).await.unwrap();
        assert_eq!(data, format!("{round}").as_bytes(), "{t}: read after write in round {round}");
        assert_eq!(st.version, round, "{t}: version");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_conditional_updates_lose_nothing() {
    let s = WarrenProcess::start(WarrenOpts::default().cores(2));
    let setup = s.client().await;
    let p = format!("/{}", unique("cas"));
    setup.create(&p, b"0", &persistent()).await.unwrap();
    let wins = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let c = s.client().await;
        let p = p.clone();
        let wins = wins.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = 0;
            while mine < 15 {
                let (data, st) = c.get_data(&p).await.unwrap();
                let n: u64 = String::from_utf8(data).unwrap().parse().unwrap();
                match c.set_data(&p, format!("{}", n + 1).as_bytes(), Some(st.version)).await {
                    Ok(_) => {
                        mine += 1;
                        wins.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(Error::BadVersion) => {}
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
        }));
    }
    for t in tasks {
        bounded(120, "CAS loop", t).await.unwrap();
    }
    let (data, st) = setup.get_data(&p).await.unwrap();
    assert_eq!(wins.load(Ordering::SeqCst), 90);
    assert_eq!(String::from_utf8(data).unwrap(), "90", "a version-checked update was lost");
    assert_eq!(st.version, 90);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mntr_and_cons_reflect_activity() {
    if skip_if_external("mntr_and_cons_reflect_activity") {
        return; // a shared server's counters move with the other tests
    }
    let s = WarrenProcess::start(WarrenOpts::default());
    let c = s.client().await;
    let count = |out: &str| -> i64 {
        out.lines()
            .find_map(|l| l.strip_prefix("zk_znode_count").map(|v| v.trim().parse::<i64>().unwrap_or(-1)))
            .unwrap_or(-1)
    };
    let before = count(&s.four_letter("mntr"));
    assert!(before >= 0, "mntr zk_znode_count missing");
    let root = format!("/{}", unique("mntr"));
    c.create(&root, b"", &persistent()).await.unwrap();
    for i in 0..5 {
        c.create(&format!("{root}/{i}"), b"", &persistent()).await.unwrap();
    }
    let after = count(&s.four_letter("mntr"));
    assert_eq!(after - before, 6, "zk_znode_count must count the 6 new nodes");
    let _w = c.get_and_watch_data(&root).await.unwrap();
    let wchs = s.four_letter("wchs");
    assert!(wchs.contains('1') || wchs.contains("watch"), "wchs: {wchs}");
    let cons = s.four_letter("cons");
    assert!(cons.contains("127.0.0.1"), "cons lists the client connection:\n{cons}");
}
