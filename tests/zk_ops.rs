//! Every ZooKeeper operation through a real client (zookeeper-client 0.11), and every error
//! code a well-formed request can reach. Each test starts its own server and keeps its nodes
//! under one top-level node so no multi spans shards.

use std::time::Duration;

use warren_tests::zk::{self, Acls, CreateMode, Error, MultiReadResult, MultiWriteError, MultiWriteResult};
use warren_tests::{bounded, top_level_in_shard, unique, WarrenOpts, WarrenProcess};

fn persistent() -> zk::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

fn mode(m: CreateMode) -> zk::CreateOptions<'static> {
    m.with_acls(Acls::anyone_all())
}

async fn setup(name: &str) -> (WarrenProcess, zk::Client, String) {
    let server = WarrenProcess::start(WarrenOpts::default());
    let client = server.client().await;
    let root = format!("/{}", unique(name));
    bounded(10, "create root", client.create(&root, b"", &persistent())).await.unwrap();
    (server, client, root)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_set_delete_roundtrip() {
    let (_s, c, root) = setup("crud").await;
    let p = format!("{root}/a");
    let (stat, seq) = c.create(&p, b"hello", &persistent()).await.unwrap();
    assert_eq!(seq.into_i64(), -1, "non-sequential create has no sequence");
    assert_eq!(stat.version, 0);
    assert_eq!(stat.data_length, 5);
    assert_eq!(stat.ephemeral_owner, 0);
    assert!(stat.czxid > 0 && stat.czxid == stat.mzxid, "czxid {} mzxid {}", stat.czxid, stat.mzxid);

    let (data, st) = c.get_data(&p).await.unwrap();
    assert_eq!(data, b"hello");
    assert_eq!(st, stat, "create2's stat equals getData's stat");

    let st2 = c.set_data(&p, b"world!", Some(0)).await.unwrap();
    assert_eq!(st2.version, 1);
    assert_eq!(st2.data_length, 6);
    assert_eq!(st2.czxid, stat.czxid);
    assert!(st2.mzxid > stat.mzxid, "mzxid must advance");
    let (data, _) = c.get_data(&p).await.unwrap();
    assert_eq!(data, b"world!");

    // Unconditional set (-1).
    let st3 = c.set_data(&p, b"", None).await.unwrap();
    assert_eq!(st3.version, 2);
    assert_eq!(st3.data_length, 0);
    let (data, _) = c.get_data(&p).await.unwrap();
    assert!(data.is_empty());

    c.delete(&p, Some(2)).await.unwrap();
    assert_eq!(c.check_stat(&p).await.unwrap(), None);
    assert_eq!(c.get_data(&p).await.unwrap_err(), Error::NoNode);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exists_and_parent_stat() {
    let (_s, c, root) = setup("exists").await;
    assert_eq!(c.check_stat(&format!("{root}/nope")).await.unwrap(), None);
    let (_, before) = c.get_data(&root).await.unwrap();
    assert_eq!(before.num_children, 0);
    c.create(&format!("{root}/x"), b"", &persistent()).await.unwrap();
    c.create(&format!("{root}/y"), b"", &persistent()).await.unwrap();
    let st = c.check_stat(&root).await.unwrap().expect("root exists");
    assert_eq!(st.num_children, 2);
    assert_eq!(st.cversion, before.cversion + 2, "cversion counts child changes");
    assert!(st.pzxid > before.pzxid, "pzxid advances with children");
    assert_eq!(st.version, before.version, "children do not change the data version");
    c.delete(&format!("{root}/x"), None).await.unwrap();
    let st = c.check_stat(&root).await.unwrap().unwrap();
    assert_eq!(st.num_children, 1);
    assert_eq!(st.cversion, before.cversion + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_children_and_children2() {
    let (_s, c, root) = setup("children").await;
    for n in ["c", "a", "b"] {
        c.create(&format!("{root}/{n}"), n.as_bytes(), &persistent()).await.unwrap();
    }
    c.create(&format!("{root}/a/deep"), b"", &persistent()).await.unwrap();
    let mut kids = c.list_children(&root).await.unwrap();
    kids.sort();
    assert_eq!(kids, vec!["a", "b", "c"]);
    let (mut kids2, stat) = c.get_children(&root).await.unwrap();
    kids2.sort();
    assert_eq!(kids2, kids);
    assert_eq!(stat.num_children, 3);
    assert_eq!(c.list_children(&format!("{root}/b")).await.unwrap(), Vec::<String>::new());
    assert_eq!(c.list_children(&format!("{root}/zz")).await.unwrap_err(), Error::NoNode);
    assert_eq!(c.get_children(&format!("{root}/zz")).await.unwrap_err(), Error::NoNode);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_children_gathered_from_all_shards() {
    let server = WarrenProcess::start(WarrenOpts::default());
    let c = server.client().await;
    let names: Vec<String> = (0..12).map(|i| unique(&format!("top{i}"))).collect();
    for n in &names {
        c.create(&format!("/{n}"), b"", &persistent()).await.unwrap();
    }
    let kids = c.list_children("/").await.unwrap();
    for n in &names {
        assert!(kids.contains(n), "/{n} missing from children of / : {kids:?}");
    }
    let (kids2, stat) = c.get_children("/").await.unwrap();
    for n in &names {
        assert!(kids2.contains(n), "/{n} missing from getChildren2 of /");
    }
    assert!(stat.num_children as usize >= names.len(), "numChildren of / = {}", stat.num_children);
    let total = c.count_descendants_number("/").await.unwrap();
    assert!(total >= names.len(), "getAllChildrenNumber(/) = {total}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_modes_ephemeral_sequential_container_ttl() {
    let (_s, c, root) = setup("modes").await;
    let sid = c.session_id().0;

    let (st, _) = c.create(&format!("{root}/e"), b"e", &mode(CreateMode::Ephemeral)).await.unwrap();
    assert_eq!(st.ephemeral_owner, sid, "ephemeral owner is the session");

    let (st, seq) = c.create(&format!("{root}/ps-"), b"", &mode(CreateMode::PersistentSequential)).await.unwrap();
    assert_eq!(st.ephemeral_owner, 0);
    assert!(seq.into_i64() >= 0);
    let (st, seq2) = c.create(&format!("{root}/es-"), b"", &mode(CreateMode::EphemeralSequential)).await.unwrap();
    assert_eq!(st.ephemeral_owner, sid);
    assert!(seq2 > seq, "sequence grows within a parent: {seq} then {seq2}");

    let (st, _) = c.create(&format!("{root}/box"), b"", &mode(CreateMode::Container)).await.unwrap();
    assert_eq!(st.ephemeral_owner, 0);
    c.create(&format!("{root}/box/item"), b"", &persistent()).await.unwrap();

    let ttl = CreateMode::Persistent.with_acls(Acls::anyone_all()).with_ttl(Duration::from_secs(3600));
    let (st, _) = c.create(&format!("{root}/ttl"), b"t", &ttl).await.unwrap();
    assert_eq!(st.version, 0);
    let ttl_seq = CreateMode::PersistentSequential.with_acls(Acls::anyone_all()).with_ttl(Duration::from_secs(3600));
    let (_, s3) = c.create(&format!("{root}/ttls-"), b"", &ttl_seq).await.unwrap();
    assert!(s3 > seq2);

    let mut kids = c.list_children(&root).await.unwrap();
    kids.sort();
    assert_eq!(kids.len(), 6, "{kids:?}");
    assert!(kids.contains(&format!("ps-{seq}")), "{kids:?}");
    assert!(kids.contains(&format!("es-{seq2}")), "{kids:?}");
    assert!(kids.contains(&format!("ttls-{s3}")), "{kids:?}");
    let (data, _) = c.get_data(&format!("{root}/ttl")).await.unwrap();
    assert_eq!(data, b"t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_numbering_ten_digits_per_parent() {
    let (_s, c, root) = setup("seq").await;
    let p1 = format!("{root}/p1");
    let p2 = format!("{root}/p2");
    c.create(&p1, b"", &persistent()).await.unwrap();
    c.create(&p2, b"", &persistent()).await.unwrap();
    let mut names = Vec::new();
    for i in 0..15 {
        let (_, seq) = c.create(&format!("{p1}/n-"), b"", &mode(CreateMode::PersistentSequential)).await.unwrap();
        assert_eq!(seq.into_i64(), i, "sequence = parent's cversion before the create");
        names.push(format!("n-{seq}"));
    }
    assert_eq!(names[0], "n-0000000000");
    assert_eq!(names[14], "n-0000000014");
    let mut kids = c.list_children(&p1).await.unwrap();
    kids.sort();
    assert_eq!(kids, names);
    for k in &kids {
        let digits = &k[2..];
        assert_eq!(digits.len(), 10, "{k}");
        assert!(digits.chars().all(|ch| ch.is_ascii_digit()), "{k}");
    }
    // Another parent counts on its own; a plain child bumps the counter too (cversion).
    c.create(&format!("{p2}/plain"), b"", &persistent()).await.unwrap();
    let (_, seq) = c.create(&format!("{p2}/n-"), b"", &mode(CreateMode::EphemeralSequential)).await.unwrap();
    assert_eq!(seq.into_i64(), 1);
    // Deleting a child never makes a number come back (ZooKeeper 3.8 answers 2 here).
    c.delete(&format!("{p2}/plain"), None).await.unwrap();
    let (_, seq) = c.create(&format!("{p2}/n-"), b"", &mode(CreateMode::PersistentSequential)).await.unwrap();
    assert!(seq.into_i64() >= 2, "sequence reused after a delete: {seq}");
    // Sequential with an empty prefix: the name is just the digits.
    let (_, seq) = c.create(&format!("{p2}/"), b"", &mode(CreateMode::PersistentSequential)).await.unwrap();
    assert!(c.check_stat(&format!("{p2}/{seq}")).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sequential_creates_are_unique_and_ordered() {
    let (_s, c, root) = setup("seqconc").await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let c = c.clone();
        let root = root.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..20 {
                let (_, seq) = c
                    .create(&format!("{root}/q-"), format!("{t}").as_bytes(), &mode(CreateMode::PersistentSequential))
                    .await
                    .unwrap();
                got.push(seq.into_i64());
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let got = bounded(60, "sequential creates", t).await.unwrap();
        assert!(got.windows(2).all(|w| w[0] < w[1]), "one client's sequence numbers increase (FIFO): {got:?}");
        all.extend(got);
    }
    all.sort();
    assert_eq!(all, (0..160).collect::<Vec<i64>>(), "160 distinct numbers 0..160");
}

/// ZooKeeper numbers the children of one parent from one counter. The children of "/" are
/// spread over shards and cores by name; their sequence numbers must still be unique and
/// increase, whatever the prefix, the client, or whether the create is part of a multi across
/// Raft groups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_children_of_root_share_one_counter_whatever_their_prefix() {
    let server = WarrenProcess::start(WarrenOpts::default().cores(2));
    let c = server.client().await;
    let u = unique("rootseq");
    let prefixes: Vec<String> = ["q-", "job-", "zz-", "lock-", "a", "b"].iter().map(|p| format!("/{u}-{p}")).collect();
    if !server.is_external() {
        let cores: std::collections::BTreeSet<u16> =
            prefixes.iter().map(|p| engine::path::create_shard_of(p, false, 8) % 2).collect();
        assert_eq!(cores.len(), 2, "the prefixes, as plain names, must span both cores");
    }
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (c, prefixes) = (server.client().await, prefixes.clone());
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..12 {
                let prefix = &prefixes[(t + i) % prefixes.len()];
                let kind = if i % 3 == 0 { CreateMode::EphemeralSequential } else { CreateMode::PersistentSequential };
                let (_, seq) = c.create(prefix, b"", &mode(kind)).await.unwrap();
                got.push((seq.into_i64(), format!("{prefix}{seq}")));
            }
            (c, got)
        }));
    }
    let mut numbers = Vec::new();
    let mut clients = Vec::new();
    for task in tasks {
        let (client, got) = bounded(60, "sequential creates under /", task).await.unwrap();
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "one client's numbers must increase: {got:?}");
        let children = c.list_children("/").await.unwrap();
        for (_, name) in &got {
            assert!(children.contains(&name[1..].to_string()), "{name} is not listed under /");
        }
        numbers.extend(got.into_iter().map(|(n, _)| n));
        clients.push(client);
    }
    let distinct: std::collections::BTreeSet<i64> = numbers.iter().copied().collect();
    assert_eq!(distinct.len(), numbers.len(), "two children of / got the same number: {numbers:?}");

    // In a multi across both Raft groups, the sequential child of "/" takes the next number.
    let other = top_level_in_shard("rootseq-other", 1, 8);
    let mut w = c.new_multi_writer();
    w.add_create(&other, b"", &persistent()).unwrap();
    w.add_create(&prefixes[0], b"", &mode(CreateMode::PersistentSequential)).unwrap();
    let results = bounded(10, "multi with a sequential child of /", w.commit()).await.unwrap();
    let MultiWriteResult::Create { path, .. } = &results[1] else { panic!("a create's result: {results:?}") };
    let number: i64 = path[prefixes[0].len()..].parse().unwrap();
    assert!(number > *distinct.last().unwrap(), "{path} does not come after every earlier child of /");
    let (_, seq) = c.create(&prefixes[1], b"", &mode(CreateMode::PersistentSequential)).await.unwrap();
    assert!(seq.into_i64() > number, "{seq} after {path}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_codes_from_well_formed_requests() {
    let (_s, c, root) = setup("errors").await;
    let a = format!("{root}/a");
    c.create(&a, b"", &persistent()).await.unwrap();

    // NodeExists
    assert_eq!(c.create(&a, b"", &persistent()).await.unwrap_err(), Error::NodeExists);
    // NoNode: missing parent, missing node for every op
    assert_eq!(c.create(&format!("{root}/no/child"), b"", &persistent()).await.unwrap_err(), Error::NoNode);
    let missing = format!("{root}/missing");
    assert_eq!(c.get_data(&missing).await.unwrap_err(), Error::NoNode);
    assert_eq!(c.set_data(&missing, b"", None).await.unwrap_err(), Error::NoNode);
    assert_eq!(c.delete(&missing, None).await.unwrap_err(), Error::NoNode);
    assert_eq!(c.get_acl(&missing).await.unwrap_err(), Error::NoNode);
    let world = [zk::Acl::new(zk::Permission::ALL, zk::AuthId::anyone())];
    assert_eq!(c.set_acl(&missing, &world, None).await.unwrap_err(), Error::NoNode);
    assert_eq!(c.count_descendants_number(&missing).await.unwrap_err(), Error::NoNode);
    // BadVersion
    assert_eq!(c.set_data(&a, b"x", Some(7)).await.unwrap_err(), Error::BadVersion);
    assert_eq!(c.delete(&a, Some(3)).await.unwrap_err(), Error::BadVersion);
    let (_, st) = c.get_data(&a).await.unwrap();
    assert_eq!(st.version, 0, "failed conditional ops change nothing");
    // NotEmpty
    c.create(&format!("{a}/kid"), b"", &persistent()).await.unwrap();
    assert_eq!(c.delete(&a, None).await.unwrap_err(), Error::NotEmpty);
    assert!(c.check_stat(&a).await.unwrap().is_some());
    // NoChildrenForEphemerals
    let e = format!("{root}/eph");
    c.create(&e, b"", &mode(CreateMode::Ephemeral)).await.unwrap();
    assert_eq!(c.create(&format!("{e}/kid"), b"", &persistent()).await.unwrap_err(), Error::NoChildrenForEphemerals);
    assert_eq!(
        c.create(&format!("{e}/kid"), b"", &mode(CreateMode::EphemeralSequential)).await.unwrap_err(),
        Error::NoChildrenForEphemerals
    );
    // InvalidACL: creator-only ACL with no authenticated identity.
    assert_eq!(
        c.create(&format!("{root}/creator"), b"", &CreateMode::Persistent.with_acls(Acls::creator_all()))
            .await
            .unwrap_err(),
        Error::InvalidAcl
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_all_children_number_and_ephemerals() {
    let (_s, c, root) = setup("counts").await;
    c.create(&format!("{root}/a"), b"", &persistent()).await.unwrap();
    c.create(&format!("{root}/a/b"), b"", &persistent()).await.unwrap();
    c.create(&format!("{root}/a/b/c"), b"", &persistent()).await.unwrap();
    c.create(&format!("{root}/d"), b"", &persistent()).await.unwrap();
    c.create(&format!("{root}/a/e1"), b"", &mode(CreateMode::Ephemeral)).await.unwrap();
    c.create(&format!("{root}/d/e2"), b"", &mode(CreateMode::Ephemeral)).await.unwrap();
    assert_eq!(c.count_descendants_number(&root).await.unwrap(), 6);
    assert_eq!(c.count_descendants_number(&format!("{root}/a")).await.unwrap(), 3);
    assert_eq!(c.count_descendants_number(&format!("{root}/a/b/c")).await.unwrap(), 0);

    let other = _s.client().await;
    other.create(&format!("{root}/d/theirs"), b"", &mode(CreateMode::Ephemeral)).await.unwrap();

    let mut mine = c.list_ephemerals(&root).await.unwrap();
    mine.sort();
    assert_eq!(mine, vec![format!("{root}/a/e1"), format!("{root}/d/e2")], "only this session's ephemerals");
    let mine_a = c.list_ephemerals(&format!("{root}/a")).await.unwrap();
    assert_eq!(mine_a, vec![format!("{root}/a/e1")]);
    let theirs = other.list_ephemerals(&root).await.unwrap();
    assert_eq!(theirs, vec![format!("{root}/d/theirs")]);
    // Every ephemeral of the session, from "/".
    let all_mine = c.list_ephemerals("/").await.unwrap();
    assert_eq!(all_mine.len(), 2, "{all_mine:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_success_applies_everything() {
    let (_s, c, root) = setup("multi").await;
    let a = format!("{root}/a");
    let b = format!("{root}/b");
    c.create(&b, b"old", &persistent()).await.unwrap();
    let mut w = c.new_multi_writer();
    w.add_create(&a, b"A", &persistent()).unwrap();
    w.add_check_version(&b, 0).unwrap();
    w.add_set_data(&b, b"new", Some(0)).unwrap();
    w.add_create(&format!("{a}/s-"), b"", &mode(CreateMode::PersistentSequential)).unwrap();
    w.add_create(&format!("{root}/gone"), b"", &persistent()).unwrap();
    w.add_delete(&format!("{root}/gone"), None).unwrap();
    let results = bounded(10, "multi", w.commit()).await.unwrap();
    assert_eq!(results.len(), 6);
    assert!(matches!(&results[0], MultiWriteResult::Create { path, .. } if path == &a), "{:?}", results[0]);
    assert_eq!(results[1], MultiWriteResult::Check);
    assert!(matches!(&results[2], MultiWriteResult::SetData { stat } if stat.version == 1), "{:?}", results[2]);
    assert!(
        matches!(&results[3], MultiWriteResult::Create { path, .. } if path == &format!("{a}/s-0000000000")),
        "{:?}",
        results[3]
    );
    assert_eq!(results[5], MultiWriteResult::Delete);
    assert_eq!(c.get_data(&a).await.unwrap().0, b"A");
    assert_eq!(c.get_data(&b).await.unwrap().0, b"new");
    assert!(c.check_stat(&format!("{root}/gone")).await.unwrap().is_none());
    // All ops of one multi share one zxid.
    let sa = c.check_stat(&a).await.unwrap().unwrap();
    let sb = c.check_stat(&b).await.unwrap().unwrap();
    assert_eq!(sa.czxid, sb.mzxid, "a multi is one transaction");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_multi_applies_nothing() {
    let (_s, c, root) = setup("multiabort").await;
    let exists = format!("{root}/exists");
    c.create(&exists, b"keep", &persistent()).await.unwrap();
    let (_, before) = c.get_data(&root).await.unwrap();

    let mut w = c.new_multi_writer();
    w.add_create(&format!("{root}/new1"), b"", &persistent()).unwrap();
    w.add_set_data(&exists, b"changed", None).unwrap();
    w.add_create(&exists, b"", &persistent()).unwrap(); // fails: NodeExists
    w.add_create(&format!("{root}/new2"), b"", &persistent()).unwrap();
    let err = bounded(10, "multi", w.commit()).await.unwrap_err();
    assert_eq!(err, MultiWriteError::OperationFailed { index: 2, source: Error::NodeExists });

    assert!(c.check_stat(&format!("{root}/new1")).await.unwrap().is_none(), "op before the failure rolled back");
    assert!(c.check_stat(&format!("{root}/new2")).await.unwrap().is_none());
    let (data, st) = c.get_data(&exists).await.unwrap();
    assert_eq!(data, b"keep");
    assert_eq!(st.version, 0);
    let (_, after) = c.get_data(&root).await.unwrap();
    assert_eq!(after.cversion, before.cversion, "parent untouched");

    // Failing check version.
    let mut w = c.new_multi_writer();
    w.add_create(&format!("{root}/new3"), b"", &persistent()).unwrap();
    w.add_check_version(&exists, 5).unwrap();
    let err = w.commit().await.unwrap_err();
    assert_eq!(err, MultiWriteError::OperationFailed { index: 1, source: Error::BadVersion });
    assert!(c.check_stat(&format!("{root}/new3")).await.unwrap().is_none());

    // Failing delete of a missing node at index 0.
    let mut w = c.new_multi_writer();
    w.add_delete(&format!("{root}/nothing"), None).unwrap();
    w.add_set_data(&exists, b"x", None).unwrap();
    let err = w.commit().await.unwrap_err();
    assert_eq!(err, MultiWriteError::OperationFailed { index: 0, source: Error::NoNode });
    assert_eq!(c.get_data(&exists).await.unwrap().0, b"keep");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_across_top_level_nodes_of_one_core_is_atomic() {
    let server = WarrenProcess::start(WarrenOpts::default().cores(1));
    let c = server.client().await;
    let u = unique("across");
    let (epoch, brokers, admin) = (format!("/{u}-epoch"), format!("/{u}-brokers"), format!("/{u}-admin"));
    if !server.is_external() {
        let shards: std::collections::BTreeSet<u16> =
            [&epoch, &brokers, &admin].iter().map(|p| engine::path::shard_of(p, 8)).collect();
        assert!(shards.len() > 1, "the test's top-level nodes must span shards: {shards:?}");
    }
    c.create(&epoch, b"1", &persistent()).await.unwrap();
    c.create(&brokers, b"", &persistent()).await.unwrap();
    c.create(&admin, b"a0", &persistent()).await.unwrap();

    let mut w = c.new_multi_writer();
    w.add_check_version(&epoch, 0).unwrap();
    w.add_create(&format!("{brokers}/t1"), b"p", &persistent()).unwrap();
    w.add_set_data(&admin, b"a1", None).unwrap();
    let results = bounded(10, "multi across shards", w.commit()).await.expect("a multi across shards of one core");
    assert_eq!(results.len(), 3);
    assert_eq!(c.get_data(&admin).await.unwrap().0, b"a1");
    assert!(c.check_stat(&format!("{brokers}/t1")).await.unwrap().is_some());

    let mut w = c.new_multi_writer();
    w.add_create(&format!("{brokers}/t2"), b"p", &persistent()).unwrap();
    w.add_set_data(&admin, b"stale", None).unwrap();
    w.add_check_version(&epoch, 5).unwrap();
    let err = bounded(10, "failing multi across shards", w.commit()).await.unwrap_err();
    assert_eq!(err, MultiWriteError::OperationFailed { index: 2, source: Error::BadVersion });
    assert!(c.check_stat(&format!("{brokers}/t2")).await.unwrap().is_none(), "the create in another shard was kept");
    assert_eq!(c.get_data(&admin).await.unwrap().0, b"a1", "the setData in another shard was kept");
}

/// Top-level nodes in shards 0, 1 and 3 of 8: with `--cores 2`, in both Raft groups (shard s
/// lives on core s mod 2), so a multi over them is a two-phase commit between the groups.
fn top_levels_in_both_groups(tag: &str) -> (String, String, String) {
    (top_level_in_shard(tag, 0, 8), top_level_in_shard(tag, 1, 8), top_level_in_shard(tag, 3, 8))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_across_raft_groups_gives_zookeepers_results_and_is_all_or_nothing() {
    let server = WarrenProcess::start(WarrenOpts::default().cores(2));
    let c = server.client().await;
    let (epoch, brokers, admin) = top_levels_in_both_groups("groups");
    c.create(&epoch, b"1", &persistent()).await.unwrap();
    c.create(&brokers, b"", &persistent()).await.unwrap();
    c.create(&admin, b"a0", &persistent()).await.unwrap();

    let mut w = c.new_multi_writer();
    w.add_check_version(&epoch, 0).unwrap();
    w.add_create(&format!("{brokers}/t1"), b"p", &persistent()).unwrap();
    w.add_set_data(&admin, b"a1", None).unwrap();
    w.add_create(&format!("{epoch}/seq-"), b"", &mode(CreateMode::PersistentSequential)).unwrap();
    let results = bounded(10, "multi across groups", w.commit()).await.expect("a multi across groups commits");
    assert_eq!(results.len(), 4);
    assert!(
        matches!(&results[1], MultiWriteResult::Create { path, .. } if *path == format!("{brokers}/t1")),
        "{results:?}"
    );
    assert!(matches!(&results[2], MultiWriteResult::SetData { stat } if stat.version == 1), "{results:?}");
    assert!(
        matches!(&results[3], MultiWriteResult::Create { path, .. } if *path == format!("{epoch}/seq-0000000000")),
        "{results:?}"
    );
    assert_eq!(c.get_data(&admin).await.unwrap().0, b"a1");
    assert!(c.check_stat(&format!("{brokers}/t1")).await.unwrap().is_some());

    // The failing op is in one group, the ops before it in both: all are taken back.
    let mut w = c.new_multi_writer();
    w.add_create(&format!("{brokers}/t2"), b"p", &persistent()).unwrap();
    w.add_set_data(&admin, b"stale", None).unwrap();
    w.add_create(&format!("{epoch}/t2"), b"", &persistent()).unwrap();
    w.add_check_version(&epoch, 5).unwrap();
    let err = bounded(10, "failing multi across groups", w.commit()).await.unwrap_err();
    assert_eq!(err, MultiWriteError::OperationFailed { index: 3, source: Error::BadVersion });
    assert!(c.check_stat(&format!("{brokers}/t2")).await.unwrap().is_none(), "a create of the other group was kept");
    assert!(c.check_stat(&format!("{epoch}/t2")).await.unwrap().is_none(), "a create of the same group was kept");
    assert_eq!(c.get_data(&admin).await.unwrap().0, b"a1", "the setData of the other group was kept");

    // The first op fails: ZooKeeper reports it and rolls back the rest.
    let mut w = c.new_multi_writer();
    w.add_delete(&format!("{brokers}/missing"), None).unwrap();
    w.add_set_data(&epoch, b"never", None).unwrap();
    let err = bounded(10, "multi across groups failing first", w.commit()).await.unwrap_err();
    assert_eq!(err, MultiWriteError::OperationFailed { index: 0, source: Error::NoNode });
    assert_eq!(c.get_data(&epoch).await.unwrap().0, b"1");

    // An ephemeral created by a multi across groups goes with its session.
    let owner = server.client().await;
    let mut w = owner.new_multi_writer();
    w.add_create(&format!("{brokers}/e"), b"", &mode(CreateMode::Ephemeral)).unwrap();
    w.add_set_data(&admin, b"a2", None).unwrap();
    bounded(10, "ephemeral multi across groups", w.commit()).await.expect("commits");
    drop(owner);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while c.check_stat(&format!("{brokers}/e")).await.unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "the ephemeral outlived its session");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A writer sets two nodes in different Raft groups to the same count in each multi; a reader
/// never sees one ahead of the other: reading one and then the other, in either order, the
/// second is never behind the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reader_sees_part_of_a_multi_across_raft_groups() {
    let server = WarrenProcess::start(WarrenOpts::default().cores(2));
    let writer = server.client().await;
    let reader = server.client().await;
    let (x, y, _) = top_levels_in_both_groups("visible");
    writer.create(&x, b"0", &persistent()).await.unwrap();
    writer.create(&y, b"0", &persistent()).await.unwrap();
    let count = |data: &[u8]| std::str::from_utf8(data).unwrap().parse::<u64>().unwrap();
    let (px, py) = (x.clone(), y.clone());
    let writes = tokio::spawn(async move {
        for i in 1..=300u64 {
            let mut w = writer.new_multi_writer();
            w.add_set_data(&x, i.to_string().as_bytes(), None).unwrap();
            w.add_set_data(&y, i.to_string().as_bytes(), None).unwrap();
            bounded(10, "multi", w.commit()).await.expect("commits");
        }
    });
    let mut reads = 0;
    while !writes.is_finished() && reads < 5000 {
        let (a, b) = if reads % 2 == 0 { (&px, &py) } else { (&py, &px) };
        let first = count(&reader.get_data(a).await.unwrap().0);
        let second = count(&reader.get_data(b).await.unwrap().0);
        assert!(second >= first, "read {a} = {first}, then {b} = {second}: the second group's part was missing");
        reads += 1;
    }
    bounded(60, "writer", writes).await.unwrap();
    assert!(reads > 10, "the readers ran alongside the writer ({reads} rounds)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_read_mixes_results_and_errors() {
    let (_s, c, root) = setup("multiread").await;
    c.create(&format!("{root}/a"), b"AA", &persistent()).await.unwrap();
    c.create(&format!("{root}/a/k"), b"", &persistent()).await.unwrap();
    let mut r = c.new_multi_reader();
    r.add_get_data(&format!("{root}/a")).unwrap();
    r.add_get_children(&format!("{root}/a")).unwrap();
    r.add_get_data(&format!("{root}/missing")).unwrap();
    r.add_get_children(&root).unwrap();
    let res = bounded(10, "multiRead", r.commit()).await.unwrap();
    assert_eq!(res.len(), 4);
    assert!(
        matches!(&res[0], MultiReadResult::Data { data, stat } if data == b"AA" && stat.num_children == 1),
        "{:?}",
        res[0]
    );
    assert!(
        matches!(&res[1], MultiReadResult::Children { children } if children == &vec!["k".to_string()]),
        "{:?}",
        res[1]
    );
    assert!(matches!(&res[2], MultiReadResult::Error { err: Error::NoNode }), "{:?}", res[2]);
    assert!(
        matches!(&res[3], MultiReadResult::Children { children } if children == &vec!["a".to_string()]),
        "{:?}",
        res[3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_then_read_sees_other_clients_write() {
    let (s, c, root) = setup("sync").await;
    let other = s.client().await;
    let p = format!("{root}/v");
    other.create(&p, b"1", &persistent()).await.unwrap();
    bounded(10, "sync", c.sync(&p)).await.unwrap();
    assert_eq!(c.get_data(&p).await.unwrap().0, b"1");
    other.set_data(&p, b"2", None).await.unwrap();
    bounded(10, "sync", c.sync(&root)).await.unwrap();
    assert_eq!(c.get_data(&p).await.unwrap().0, b"2");
    // sync on a missing path still answers (ZooKeeper does not check existence).
    let r = bounded(10, "sync missing", c.sync(&format!("{root}/missing"))).await;
    assert!(r.is_ok() || r == Err(Error::NoNode), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_up_to_limit_roundtrips() {
    let (_s, c, root) = setup("bigdata").await;
    let p = format!("{root}/big");
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    c.create(&p, &data, &persistent()).await.unwrap();
    let (got, st) = bounded(20, "get big", c.get_data(&p)).await.unwrap();
    assert_eq!(st.data_length as usize, data.len());
    assert!(got == data, "1 MB value corrupted");
    let binary: Vec<u8> = (0..=255u8).collect();
    c.set_data(&p, &binary, None).await.unwrap();
    assert_eq!(c.get_data(&p).await.unwrap().0, binary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_order_of_pipelined_requests() {
    let (_s, c, root) = setup("fifo").await;
    let p = format!("{root}/n");
    c.create(&p, b"0", &persistent()).await.unwrap();
    // Issue many requests without awaiting; they are sent in call order and must be
    // answered in that order with each set seeing the previous one.
    let mut futs = Vec::new();
    for i in 1..=50 {
        futs.push(c.set_data(&p, format!("{i}").as_bytes(), Some(i - 1)));
    }
    let mut versions = Vec::new();
    for f in futs {
        versions.push(bounded(20, "pipelined set", f).await.unwrap().version);
    }
    assert_eq!(versions, (1..=50).collect::<Vec<i32>>());
    assert_eq!(c.get_data(&p).await.unwrap().0, b"50");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_and_restart_keeps_data() {
    if warren_tests::skip_if_external("graceful_stop_and_restart_keeps_data") {
        return;
    }
    let mut s = WarrenProcess::start(WarrenOpts::default());
    let root = format!("/{}", unique("graceful"));
    {
        let c = s.client().await;
        c.create(&root, b"r", &persistent()).await.unwrap();
        for i in 0..20 {
            c.create(&format!("{root}/n{i}"), format!("{i}").as_bytes(), &persistent()).await.unwrap();
        }
        c.set_data(&root, b"r2", None).await.unwrap();
    }
    assert!(
        s.terminate(Duration::from_secs(15)),
        "SIGTERM must stop warren within 15 s (exit 0 or by SIGTERM)\n{}",
        s.stderr_tail()
    );
    s.restart();
    let c = s.client().await;
    let (data, st) = c.get_data(&root).await.unwrap();
    assert_eq!(data, b"r2");
    assert_eq!(st.version, 1);
    assert_eq!(st.num_children, 20);
    for i in 0..20 {
        assert_eq!(c.get_data(&format!("{root}/n{i}")).await.unwrap().0, format!("{i}").as_bytes());
    }
    // The zxid keeps growing across restarts.
    let (st2, _) = c.create(&format!("{root}/after"), b"", &persistent()).await.unwrap();
    assert!(st2.czxid > st.mzxid, "zxid went backwards after restart: {} <= {}", st2.czxid, st.mzxid);
}
