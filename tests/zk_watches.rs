//! Watches through a real client: one-shot data/exists/child watches and their event types,
//! persistent and persistent-recursive watches (addWatch).

use std::time::Duration;

use warren_tests::zk::{self, Acls, AddWatchMode, CreateMode, EventType, WatchedEvent};
use warren_tests::{bounded, unique, WarrenOpts, WarrenProcess};

fn persistent() -> zk::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

async fn setup(name: &str) -> (WarrenProcess, zk::Client, zk::Client, String) {
    let server = WarrenProcess::start(WarrenOpts::default());
    let watcher = server.client().await;
    let writer = server.client().await;
    let root = format!("/{}", unique(name));
    writer.create(&root, b"", &persistent()).await.unwrap();
    (server, watcher, writer, root)
}

fn assert_event(ev: &WatchedEvent, ty: EventType, path: &str) {
    assert_eq!((ev.event_type, ev.path.as_str()), (ty, path), "unexpected event {ev:?}");
}

async fn next(w: &mut zk::PersistentWatcher, what: &str) -> WatchedEvent {
    bounded(10, what, w.changed()).await
}

/// Asserts the persistent watcher delivers nothing within `ms`.
async fn quiet(w: &mut zk::PersistentWatcher, ms: u64) {
    if let Ok(ev) = tokio::time::timeout(Duration::from_millis(ms), w.changed()).await {
        panic!("unexpected event {ev:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_watch_fires_on_set_and_delete() {
    let (_s, c, w, root) = setup("wdata").await;
    let p = format!("{root}/d");
    w.create(&p, b"1", &persistent()).await.unwrap();

    let (data, _, watch) = c.get_and_watch_data(&p).await.unwrap();
    assert_eq!(data, b"1");
    w.set_data(&p, b"2", None).await.unwrap();
    let ev = bounded(10, "NodeDataChanged", watch.changed()).await;
    assert_event(&ev, EventType::NodeDataChanged, &p);
    // The data the event announced is visible once it has arrived.
    assert_eq!(c.get_data(&p).await.unwrap().0, b"2");

    let (_, _, watch) = c.get_and_watch_data(&p).await.unwrap();
    w.delete(&p, None).await.unwrap();
    let ev = bounded(10, "NodeDeleted", watch.changed()).await;
    assert_event(&ev, EventType::NodeDeleted, &p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exists_watch_fires_on_create_change_delete() {
    let (_s, c, w, root) = setup("wexists").await;
    let p = format!("{root}/e");
    let (stat, watch) = c.check_and_watch_stat(&p).await.unwrap();
    assert!(stat.is_none());
    w.create(&p, b"", &persistent()).await.unwrap();
    assert_event(&bounded(10, "NodeCreated", watch.changed()).await, EventType::NodeCreated, &p);

    let (stat, watch) = c.check_and_watch_stat(&p).await.unwrap();
    assert!(stat.is_some());
    w.set_data(&p, b"x", None).await.unwrap();
    assert_event(&bounded(10, "NodeDataChanged", watch.changed()).await, EventType::NodeDataChanged, &p);

    let (_, watch) = c.check_and_watch_stat(&p).await.unwrap();
    w.delete(&p, None).await.unwrap();
    assert_event(&bounded(10, "NodeDeleted", watch.changed()).await, EventType::NodeDeleted, &p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_watch_fires_on_child_create_delete_and_parent_delete() {
    let (_s, c, w, root) = setup("wchild").await;
    let p = format!("{root}/parent");
    w.create(&p, b"", &persistent()).await.unwrap();

    let (kids, watch) = c.list_and_watch_children(&p).await.unwrap();
    assert!(kids.is_empty());
    w.create(&format!("{p}/k"), b"", &persistent()).await.unwrap();
    assert_event(&bounded(10, "child created", watch.changed()).await, EventType::NodeChildrenChanged, &p);

    // getChildren2 watch; a data change on the parent must not fire a child watch.
    let (kids, _, watch) = c.get_and_watch_children(&p).await.unwrap();
    assert_eq!(kids, vec!["k"]);
    w.set_data(&p, b"not a child change", None).await.unwrap();
    w.set_data(&format!("{p}/k"), b"nor this", None).await.unwrap();
    w.delete(&format!("{p}/k"), None).await.unwrap();
    assert_event(&bounded(10, "child deleted", watch.changed()).await, EventType::NodeChildrenChanged, &p);

    let (_, watch) = c.list_and_watch_children(&p).await.unwrap();
    w.delete(&p, None).await.unwrap();
    assert_event(&bounded(10, "parent deleted", watch.changed()).await, EventType::NodeDeleted, &p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_fire_for_multi_and_sequential_and_ephemeral_changes() {
    let (s, c, w, root) = setup("wmulti").await;
    let p = format!("{root}/p");
    w.create(&p, b"", &persistent()).await.unwrap();
    let (_, dwatch) = c.check_and_watch_stat(&format!("{p}/a")).await.unwrap();
    let (_, cwatch) = c.list_and_watch_children(&p).await.unwrap();
    let mut m = w.new_multi_writer();
    m.add_create(&format!("{p}/a"), b"", &persistent()).unwrap();
    m.add_create(&format!("{p}/s-"), b"", &CreateMode::PersistentSequential.with_acls(Acls::anyone_all())).unwrap();
    m.commit().await.unwrap();
    assert_event(&bounded(10, "created via multi", dwatch.changed()).await, EventType::NodeCreated, &format!("{p}/a"));
    assert_event(&bounded(10, "children via multi", cwatch.changed()).await, EventType::NodeChildrenChanged, &p);

    // An ephemeral vanishing with its session fires the watches on it.
    let owner = s.client().await;
    let e = format!("{p}/eph");
    owner.create(&e, b"", &CreateMode::Ephemeral.with_acls(Acls::anyone_all())).await.unwrap();
    let (_, _, ewatch) = c.get_and_watch_data(&e).await.unwrap();
    let (_, cwatch) = c.list_and_watch_children(&p).await.unwrap();
    drop(owner); // closes the session
    assert_event(&bounded(15, "ephemeral deleted", ewatch.changed()).await, EventType::NodeDeleted, &e);
    assert_event(&bounded(15, "ephemeral child gone", cwatch.changed()).await, EventType::NodeChildrenChanged, &p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_watch_keeps_firing_on_the_node_only() {
    let (_s, c, w, root) = setup("wpers").await;
    let p = format!("{root}/node");
    let mut pw = bounded(10, "addWatch", c.watch(&p, AddWatchMode::Persistent)).await.unwrap();

    w.create(&p, b"", &persistent()).await.unwrap();
    assert_event(&next(&mut pw, "created").await, EventType::NodeCreated, &p);
    w.set_data(&p, b"1", None).await.unwrap();
    assert_event(&next(&mut pw, "changed 1").await, EventType::NodeDataChanged, &p);
    w.set_data(&p, b"2", None).await.unwrap();
    assert_event(&next(&mut pw, "changed 2").await, EventType::NodeDataChanged, &p);
    w.create(&format!("{p}/kid"), b"", &persistent()).await.unwrap();
    assert_event(&next(&mut pw, "child created").await, EventType::NodeChildrenChanged, &p);
    // A grandchild or a child's data is not this node's business.
    w.set_data(&format!("{p}/kid"), b"x", None).await.unwrap();
    w.create(&format!("{p}/kid/grand"), b"", &persistent()).await.unwrap();
    quiet(&mut pw, 500).await;
    w.delete(&format!("{p}/kid/grand"), None).await.unwrap();
    w.delete(&format!("{p}/kid"), None).await.unwrap();
    assert_event(&next(&mut pw, "child deleted").await, EventType::NodeChildrenChanged, &p);
    w.delete(&p, None).await.unwrap();
    assert_event(&next(&mut pw, "deleted").await, EventType::NodeDeleted, &p);
    // Still registered after the node is gone.
    w.create(&p, b"", &persistent()).await.unwrap();
    assert_event(&next(&mut pw, "re-created").await, EventType::NodeCreated, &p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_recursive_watch_sees_the_subtree() {
    let (_s, c, w, root) = setup("wrec").await;
    let p = format!("{root}/tree");
    w.create(&p, b"", &persistent()).await.unwrap();
    let mut rw = bounded(10, "addWatch recursive", c.watch(&p, AddWatchMode::PersistentRecursive)).await.unwrap();

    let a = format!("{p}/a");
    let b = format!("{a}/b");
    w.create(&a, b"", &persistent()).await.unwrap();
    assert_event(&next(&mut rw, "a created").await, EventType::NodeCreated, &a);
    w.create(&b, b"", &persistent()).await.unwrap();
    assert_event(&next(&mut rw, "b created").await, EventType::NodeCreated, &b);
    w.set_data(&b, b"x", None).await.unwrap();
    assert_event(&next(&mut rw, "b changed").await, EventType::NodeDataChanged, &b);
    w.set_data(&p, b"top", None).await.unwrap();
    assert_event(&next(&mut rw, "root changed").await, EventType::NodeDataChanged, &p);
    w.delete(&b, None).await.unwrap();
    // Recursive watches never deliver NodeChildrenChanged: the next event is b's deletion.
    assert_event(&next(&mut rw, "b deleted").await, EventType::NodeDeleted, &b);
    // Siblings outside the watched path are not reported.
    w.create(&format!("{root}/treeish"), b"", &persistent()).await.unwrap();
    w.set_data(&root, b"parent", None).await.unwrap();
    quiet(&mut rw, 500).await;
    w.delete(&a, None).await.unwrap();
    assert_event(&next(&mut rw, "a deleted").await, EventType::NodeDeleted, &a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_watching_one_node_all_get_the_event() {
    let (s, _c, w, root) = setup("wmany").await;
    let p = format!("{root}/hot");
    w.create(&p, b"", &persistent()).await.unwrap();
    let mut clients = Vec::new();
    let mut watches = Vec::new();
    for _ in 0..10 {
        let c = s.client().await;
        let (_, _, watch) = c.get_and_watch_data(&p).await.unwrap();
        watches.push(watch);
        clients.push(c);
    }
    w.set_data(&p, b"go", None).await.unwrap();
    for watch in watches {
        assert_event(&bounded(10, "fan-out", watch.changed()).await, EventType::NodeDataChanged, &p);
    }
}
