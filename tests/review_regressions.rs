//! Regression tests for the review fixes of dba0679: handshake gating, per-session write order
//! across shards, sequential creates under `/`, multiRead of `/`, failed addAuth closing the
//! connection, removeWatches(`/`) per type, and watch events never overtaking the reply that
//! registered their watch. Each test drives a real warren process, mostly over raw sockets.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use warren_tests::zk::{self, Acls, CreateMode};
use warren_tests::{
    bounded, closed_within, decode_frame, err, op, raw_socket, read_frame, unique, Frame, Jute, JuteReader, RawEvent,
    RawSession, Reply, WarrenOpts, WarrenProcess,
};

const SHARDS: u16 = 8;
const AUTH_FAILED: i32 = -115;
const NO_WATCHER: i32 = -121;
const CHECK_WATCHES: i32 = 17;
const REMOVE_WATCHES: i32 = 18;
const EVENT_NODE_DATA_CHANGED: i32 = 3;
const EVENT_NODE_CHILDREN_CHANGED: i32 = 4;
const EVENT_DATA_WATCH_REMOVED: i32 = 5;
const EVENT_CHILD_WATCH_REMOVED: i32 = 6;

/// Two cores and eight shards, so shards of different parity live on different cores.
fn opts() -> WarrenOpts {
    WarrenOpts::default().cores(2).shards(SHARDS as u32)
}

fn shard(path: &str) -> u16 {
    engine::path::shard_of(path, SHARDS) as u16
}

/// A fresh top-level path `/prefix-...` whose shard satisfies `pred`.
fn top_level_where(prefix: &str, pred: impl Fn(u16) -> bool) -> String {
    for _ in 0..1000 {
        let p = format!("/{}", unique(prefix));
        if pred(shard(&p)) {
            return p;
        }
    }
    panic!("no top-level name for {prefix} in a wanted shard");
}

fn next_frame(s: &mut TcpStream) -> std::io::Result<Frame> {
    Ok(decode_frame(&read_frame(s)?))
}

fn request(xid: i32, opcode: i32, body: &Jute) -> Vec<u8> {
    Jute::new().i32(xid).i32(opcode).bytes(&body.0).framed()
}

fn exists(raw: &mut RawSession, path: &str) -> Reply {
    raw.call(op::EXISTS, Jute::new().str(path).bool(false))
}

fn root_children(raw: &mut RawSession) -> Vec<String> {
    let r = raw.call(op::GET_CHILDREN, Jute::new().str("/").bool(false));
    assert_eq!(r.err, 0, "getChildren(/)");
    let mut rd = JuteReader::new(&r.body);
    let n = rd.i32();
    (0..n).map(|_| rd.string()).collect()
}

/// After a refused ConnectResponse the connection must end: the next read is EOF/reset, not a
/// reply to something pipelined behind the connect, and not a silence.
fn assert_eof_without_frames(s: &mut TcpStream, what: &str) {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    match read_frame(s) {
        Ok(f) => {
            let mut r = JuteReader::new(&f);
            let (xid, _zxid, e) = (r.i32(), r.i64(), r.i32());
            panic!("{what}: the server answered a request pipelined behind a refused connect (xid {xid}, err {e})");
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
            panic!("{what}: connection still open 5 s after a refused connect")
        }
        Err(_) => {}
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Handshake gating

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_behind_a_refused_connect_do_not_act_as_the_victim() {
    let s = WarrenProcess::start(opts());
    let victim = s.client().await;
    let sid = victim.session_id().0;
    let mut states = victim.state_watcher();
    assert_eq!(states.state(), zk::SessionState::SyncConnected);
    let eph = format!("/{}", unique("victim-eph"));
    let ephemeral = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
    bounded(10, "victim create ephemeral", victim.create(&eph, b"mine", &ephemeral)).await.unwrap();
    // Attacker nodes in several shards, so any shard acting for the victim would show.
    let attack_nodes: Vec<String> = (0..4).map(|i| format!("/{}", unique(&format!("attack{i}")))).collect();

    let addr = s.addr();
    let nodes = attack_nodes.clone();
    tokio::task::spawn_blocking(move || {
        // Variants: create ephemerals + closeSession; closeSession alone; creates alone.
        let variants: [(&str, bool, bool); 3] =
            [("creates+close", true, true), ("close only", false, true), ("creates only", true, false)];
        for (what, creates, close) in variants {
            let mut sock = raw_socket(addr);
            let wrong_pw = [0x5au8; 16];
            let mut bytes = Jute::new().i32(0).i64(0).i32(10000).i64(sid).buf(&wrong_pw).bool(false).framed();
            let mut xid = 1;
            if creates {
                for n in &nodes {
                    let body = Jute::new().str(n).buf(b"evil").open_acl().i32(1); // EPHEMERAL
                    bytes.extend(request(xid, op::CREATE, &body));
                    xid += 1;
                }
            }
            if close {
                bytes.extend(request(xid, op::CLOSE_SESSION, &Jute::new()));
            }
            // Everything in one write: the requests are on the wire before the connect is answered.
            sock.write_all(&bytes).unwrap();
            let resp =
                read_frame(&mut sock).unwrap_or_else(|e| panic!("{what}: no ConnectResponse to a bad password: {e}"));
            let mut rd = JuteReader::new(&resp);
            let _proto = rd.i32();
            let timeout = rd.i32();
            let session = rd.i64();
            assert_eq!(
                (timeout, session),
                (0, 0),
                "{what}: a wrong password must be refused with timeout 0 / session 0"
            );
            assert_eof_without_frames(&mut sock, what);
        }
    })
    .await
    .unwrap();

    // Give a (wrongly) accepted closeSession time to propagate through the shards.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The victim still works and still owns its ephemeral.
    let (data, stat) =
        bounded(10, "victim get_data", victim.get_data(&eph)).await.expect("victim's ephemeral must survive");
    assert_eq!(data, b"mine");
    assert_eq!(stat.ephemeral_owner, sid, "ephemeral still owned by the victim");
    let after = format!("/{}", unique("victim-after"));
    bounded(10, "victim create after attack", victim.create(&after, b"", &ephemeral))
        .await
        .expect("victim session must still be able to write");
    assert_eq!(states.peek_state(), zk::SessionState::SyncConnected, "victim session state");
    if let Ok(st) = tokio::time::timeout(Duration::from_millis(100), states.changed()).await {
        panic!("victim session changed state during the attack: {st:?}");
    }

    // An observer agrees: the victim's nodes are there, none of the attacker's.
    tokio::task::spawn_blocking(move || {
        let mut obs = RawSession::connect(addr, 10000);
        let r = exists(&mut obs, &eph);
        assert_eq!(r.err, 0, "victim's ephemeral {eph} vanished");
        assert_eq!(JuteReader::new(&r.body).stat().ephemeral_owner, sid);
        assert_eq!(exists(&mut obs, &after).err, 0);
        for n in &attack_nodes {
            assert_eq!(exists(&mut obs, n).err, err::NO_NODE, "attacker created {n} as the victim's session");
        }
    })
    .await
    .unwrap();
    drop(s);
}

// ---------------------------------------------------------------------------------------------
// 2. A session's writes apply in send order across shards

#[test]
fn pipelined_cross_shard_writes_apply_in_send_order() {
    let s = WarrenProcess::start(opts());
    let a = top_level_where("orderA", |_| true);
    let sa = shard(&a);
    // B on another shard, on the other core (shard s lives on core s mod 2).
    let b = top_level_where("orderB", |sh| sh != sa && sh % 2 != sa % 2);
    let mut raw = RawSession::connect(s.addr(), 20000);
    assert_eq!(raw.create(&a, b"", 0).err, 0);
    assert_eq!(raw.create(&b, b"", 0).err, 0);

    const PAIRS: i32 = 150;
    let first_xid = 1000;
    let mut bytes = Vec::new();
    for i in 0..PAIRS {
        let v = i.to_string();
        bytes.extend(request(first_xid + 2 * i, op::SET_DATA, &Jute::new().str(&a).buf(v.as_bytes()).i32(-1)));
        bytes.extend(request(first_xid + 2 * i + 1, op::SET_DATA, &Jute::new().str(&b).buf(v.as_bytes()).i32(-1)));
    }
    let mut w = raw.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || w.write_all(&bytes).expect("send pipelined writes"));

    raw.stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut replies = Vec::with_capacity(2 * PAIRS as usize);
    while replies.len() < 2 * PAIRS as usize {
        match next_frame(&mut raw.stream).unwrap_or_else(|e| panic!("reply {} of {}: {e}", replies.len(), 2 * PAIRS)) {
            Frame::Reply(r) => replies.push(r),
            Frame::Event(ev) => panic!("unexpected notification {ev:?}"),
        }
    }
    sender.join().unwrap();

    let xids: Vec<i32> = replies.iter().map(|r| r.xid).collect();
    let want: Vec<i32> = (first_xid..first_xid + 2 * PAIRS).collect();
    assert_eq!(xids, want, "replies must arrive in request order");
    for (k, r) in replies.iter().enumerate() {
        assert_eq!(r.err, 0, "setData xid {} failed", r.xid);
        let st = JuteReader::new(&r.body).stat();
        assert_eq!(st.version, (k / 2) as i32 + 1, "version after setData xid {}", r.xid);
    }
    for i in 0..PAIRS as usize {
        let (ra, rb) = (&replies[2 * i], &replies[2 * i + 1]);
        let mza = JuteReader::new(&ra.body).stat().mzxid;
        let mzb = JuteReader::new(&rb.body).stat().mzxid;
        assert!(
            mzb > mza,
            "pair {i}: setData({b}) (shard {}) has mzxid {mzb}, not above setData({a}) (shard {sa})'s {mza}: \
             the later write was applied first",
            shard(&b)
        );
        assert!(rb.zxid > ra.zxid, "pair {i}: reply zxid of setData(B) {} not above setData(A) {}", rb.zxid, ra.zxid);
        if i + 1 < PAIRS as usize {
            let next_a = JuteReader::new(&replies[2 * i + 2].body).stat().mzxid;
            assert!(next_a > mzb, "pair {i}: setData(A, {}) mzxid {next_a} not above setData(B, {i}) {mzb}", i + 1);
        }
    }
    let last = (PAIRS - 1).to_string();
    for p in [&a, &b] {
        let r = raw.get_data(p, false);
        assert_eq!(JuteReader::new(&r.body).buf().unwrap(), last.as_bytes(), "final data of {p}");
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Sequential creates directly under /

#[test]
fn sequential_create_under_root_is_readable_listable_and_deletable() {
    let s = WarrenProcess::start(opts());
    let mut raw = RawSession::connect(s.addr(), 10000);
    let prefix = format!("/{}-", unique("seqpfx"));
    let mut made = Vec::new();
    for (base, data) in [("/", &b"bare"[..]), (prefix.as_str(), &b"pfx"[..]), ("/", &b"bare2"[..])] {
        let r = raw.create(base, data, 2); // PERSISTENT_SEQUENTIAL
        assert_eq!(r.err, 0, "create({base:?}, PERSISTENT_SEQUENTIAL)");
        let path = JuteReader::new(&r.body).string();
        let suffix =
            path.strip_prefix(base).unwrap_or_else(|| panic!("returned path {path:?} does not start with {base:?}"));
        assert!(suffix.len() == 10 && suffix.bytes().all(|c| c.is_ascii_digit()), "sequence suffix of {path:?}");
        assert!(!made.iter().any(|(p, _)| p == &path), "sequential create returned {path:?} twice");
        made.push((path, data));
    }
    for (path, data) in &made {
        let r = raw.get_data(path, false);
        assert_eq!(r.err, 0, "getData({path}) right after its sequential create");
        assert_eq!(JuteReader::new(&r.body).buf().unwrap(), *data, "data of {path}");
        assert_eq!(exists(&mut raw, path).err, 0, "exists({path})");
        assert!(root_children(&mut raw).contains(&path[1..].to_string()), "getChildren(/) lacks {path}");
    }
    for (path, _) in &made {
        let r = raw.call(op::DELETE, Jute::new().str(path).i32(-1));
        assert_eq!(r.err, 0, "delete({path})");
        assert_eq!(exists(&mut raw, path).err, err::NO_NODE, "exists({path}) after delete");
        assert_eq!(raw.get_data(path, false).err, err::NO_NODE, "getData({path}) after delete");
        assert!(!root_children(&mut raw).contains(&path[1..].to_string()), "getChildren(/) still lists {path}");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. multiRead of /

#[test]
fn multi_read_of_root_children_is_refused() {
    let s = WarrenProcess::start(opts());
    let mut raw = RawSession::connect(s.addr(), 10000);
    // Top-level nodes in several shards.
    let mut tops = Vec::new();
    for i in 0..6 {
        let p = format!("/{}", unique(&format!("mr{i}")));
        assert_eq!(raw.create(&p, b"", 0).err, 0);
        tops.push(p);
    }
    let multi_get_children = |path: &str| {
        Jute::new().i32(op::GET_CHILDREN).bool(false).i32(-1).str(path).bool(false).i32(-1).bool(true).i32(-1)
    };
    let r = raw.call(op::MULTI_READ, multi_get_children("/"));
    assert_eq!(r.err, err::BAD_ARGUMENTS, "multiRead[getChildren(/)] must answer ZBADARGUMENTS in the reply header");
    // The session is unharmed and multiRead of other paths still works.
    let child = format!("{}/k", tops[0]);
    assert_eq!(raw.create(&child, b"", 0).err, 0);
    let r = raw.call(op::MULTI_READ, multi_get_children(&tops[0]));
    assert_eq!(r.err, 0, "multiRead[getChildren({})]", tops[0]);
    let mut rd = JuteReader::new(&r.body);
    assert_eq!((rd.i32(), rd.bool(), rd.i32()), (op::GET_CHILDREN, false, 0), "multiRead result header");
    assert_eq!(rd.i32(), 1);
    assert_eq!(rd.string(), "k");
    assert_eq!((rd.i32(), rd.bool(), rd.i32()), (-1, true, -1), "multiRead terminator");
    let kids = root_children(&mut raw);
    for t in &tops {
        assert!(kids.contains(&t[1..].to_string()), "getChildren(/) lacks {t}");
    }
}

// ---------------------------------------------------------------------------------------------
// 5. A failed addAuth closes the connection

fn send_bogus_auth(raw: &mut RawSession) {
    raw.send(-4, op::AUTH, &Jute::new().i32(0).str("bogus").buf(b"whatever"));
}

#[test]
fn failed_add_auth_answers_authfailed_and_closes() {
    let s = WarrenProcess::start(opts());
    // Nothing else outstanding.
    let mut raw = RawSession::connect(s.addr(), 10000);
    raw.ping();
    send_bogus_auth(&mut raw);
    let r = raw.read_reply().expect("a reply to the failed addAuth");
    assert_eq!((r.xid, r.err), (-4, AUTH_FAILED), "addAuth(bogus) → AUTHFAILED on xid -4");
    assert!(closed_within(&mut raw.stream, Duration::from_secs(5)), "connection must close after AUTHFAILED (idle)");

    // With a request pipelined behind the auth: the AUTHFAILED reply first, then the close.
    let mut raw = RawSession::connect(s.addr(), 10000);
    let p = format!("/{}", unique("afterauth"));
    send_bogus_auth(&mut raw);
    raw.send(7, op::EXISTS, &Jute::new().str(&p).bool(false));
    let r = raw.read_reply().expect("a reply to the failed addAuth");
    assert_eq!((r.xid, r.err), (-4, AUTH_FAILED), "first reply is AUTHFAILED on xid -4");
    assert!(
        closed_within(&mut raw.stream, Duration::from_secs(5)),
        "connection must close after AUTHFAILED (pipelined)"
    );

    // The server lives on.
    let mut ok = RawSession::connect(s.addr(), 10000);
    assert_eq!(exists(&mut ok, "/").err, 0);
}

// ---------------------------------------------------------------------------------------------
// 6. removeWatches(/) removes only the watch type asked for

/// Notifications for `/` other than watch-removed ones, collected for `within` (pinging).
fn root_events(w: &mut RawSession, within: Duration) -> Vec<RawEvent> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while Instant::now() < deadline {
        if let Some(ev) = w.wait_event(deadline.saturating_duration_since(Instant::now())) {
            if ev.event_type != EVENT_DATA_WATCH_REMOVED && ev.event_type != EVENT_CHILD_WATCH_REMOVED {
                out.push(ev);
            }
        }
    }
    out
}

#[test]
fn remove_data_watch_on_root_keeps_child_watch() {
    let s = WarrenProcess::start(opts());
    let mut w = RawSession::connect(s.addr(), 20000);
    let mut writer = RawSession::connect(s.addr(), 20000);

    // Data watch and one-shot child watch on /; remove the data one.
    assert_eq!(w.get_data("/", true).err, 0);
    assert_eq!(w.call(op::GET_CHILDREN, Jute::new().str("/").bool(true)).err, 0);
    assert_eq!(w.call(REMOVE_WATCHES, Jute::new().str("/").i32(2)).err, 0, "removeWatches(/, Data)");
    assert_eq!(w.call(CHECK_WATCHES, Jute::new().str("/").i32(2)).err, NO_WATCHER, "data watch on / is gone");
    assert_eq!(w.call(CHECK_WATCHES, Jute::new().str("/").i32(1)).err, 0, "child watch on / must remain");

    let first = format!("/{}", unique("rw1"));
    assert_eq!(writer.create(&first, b"", 0).err, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let ev = loop {
        let ev = w
            .wait_event(deadline.saturating_duration_since(Instant::now()))
            .expect("NodeChildrenChanged(/) after removing only the data watch of /");
        if ev.event_type != EVENT_DATA_WATCH_REMOVED {
            break ev;
        }
    };
    assert_eq!((ev.event_type, ev.path.as_str()), (EVENT_NODE_CHILDREN_CHANGED, "/"), "child watch event");
    // One-shot: a second top-level create, in another shard, fires nothing more.
    let second = top_level_where("rw2", |sh| sh != shard(&first));
    assert_eq!(writer.create(&second, b"", 0).err, 0);
    let extra = root_events(&mut w, Duration::from_millis(800));
    assert!(extra.is_empty(), "one-shot child watch of / fired again: {extra:?}");

    // The other way round: removing the child watch keeps the data watch.
    assert_eq!(w.get_data("/", true).err, 0);
    assert_eq!(w.call(op::GET_CHILDREN, Jute::new().str("/").bool(true)).err, 0);
    assert_eq!(w.call(REMOVE_WATCHES, Jute::new().str("/").i32(1)).err, 0, "removeWatches(/, Children)");
    assert_eq!(w.call(CHECK_WATCHES, Jute::new().str("/").i32(1)).err, NO_WATCHER, "child watch on / is gone");
    assert_eq!(w.call(CHECK_WATCHES, Jute::new().str("/").i32(2)).err, 0, "data watch on / must remain");
    let third = format!("/{}", unique("rw3"));
    assert_eq!(writer.create(&third, b"", 0).err, 0);
    assert_eq!(writer.set_data("/", b"root", -1).err, 0, "setData(/)");
    let evs = root_events(&mut w, Duration::from_millis(1500));
    assert!(
        evs.iter().any(|e| e.event_type == EVENT_NODE_DATA_CHANGED && e.path == "/"),
        "data watch on / must fire after removing only the child watch: {evs:?}"
    );
    assert!(
        !evs.iter().any(|e| e.event_type == EVENT_NODE_CHILDREN_CHANGED),
        "removed child watch of / fired: {evs:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. A watch event never precedes the reply that registered its watch

#[test]
fn watch_event_never_precedes_its_registering_reply() {
    let s = WarrenProcess::start(opts());
    let w = top_level_where("wnode", |_| true);
    let sw = shard(&w);
    // The slow write goes to a shard on the other core, with its own WAL.
    let slow = top_level_where("slow", |sh| sh != sw && sh % 2 != sw % 2);
    let mut c1 = RawSession::connect(s.addr(), 20000);
    let mut c2 = RawSession::connect(s.addr(), 20000);
    assert_eq!(c1.create(&w, b"0", 0).err, 0);
    assert_eq!(c1.create(&slow, b"", 0).err, 0);
    let big = vec![0x42u8; 256 * 1024];

    let mut fired = 0; // iterations where the watch fired (the change came after the watch)
    for it in 0..50 {
        let (x_slow, x_get) = (10_000 + 2 * it, 10_001 + 2 * it);
        let mut bytes = request(x_slow, op::SET_DATA, &Jute::new().str(&slow).buf(&big).i32(-1));
        bytes.extend(request(x_get, op::GET_DATA, &Jute::new().str(&w).bool(true)));
        c1.stream.write_all(&bytes).unwrap();
        let changed = c2.set_data(&w, format!("{it}").as_bytes(), -1);
        assert_eq!(changed.err, 0, "iteration {it}: C2 setData");
        let new_version = JuteReader::new(&changed.body).stat().version;

        // Read C1's frames in arrival order.
        c1.stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut order: Vec<String> = Vec::new();
        let mut get_reply_at = None;
        let mut watch_before_change = None;
        let mut event_at = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let done_replies = get_reply_at.is_some() && order.iter().any(|o| o == "reply-slow");
            if done_replies && (watch_before_change == Some(false) || event_at.is_some()) {
                break;
            }
            assert!(Instant::now() < deadline, "iteration {it}: frames so far {order:?}");
            match next_frame(&mut c1.stream).unwrap_or_else(|e| panic!("iteration {it}: read after {order:?}: {e}")) {
                Frame::Reply(r) if r.xid == x_slow => {
                    assert_eq!(r.err, 0, "iteration {it}: slow setData");
                    order.push("reply-slow".into());
                }
                Frame::Reply(r) if r.xid == x_get => {
                    assert_eq!(r.err, 0, "iteration {it}: getData");
                    let mut rd = JuteReader::new(&r.body);
                    rd.buf();
                    let version = rd.stat().version;
                    watch_before_change = Some(version < new_version);
                    get_reply_at = Some(order.len());
                    order.push(format!("reply-get(v{version})"));
                }
                Frame::Reply(r) => panic!("iteration {it}: unexpected reply {r:?}"),
                Frame::Event(ev) => {
                    assert_eq!(
                        (ev.event_type, ev.path.as_str()),
                        (EVENT_NODE_DATA_CHANGED, w.as_str()),
                        "iteration {it}"
                    );
                    assert!(
                        get_reply_at.is_some(),
                        "iteration {it}: NodeDataChanged({w}) arrived before the getData reply that registered the \
                         watch (frames: {order:?}, event)"
                    );
                    assert!(event_at.is_none(), "iteration {it}: two events for one one-shot watch");
                    event_at = Some(order.len());
                    order.push("event".into());
                }
            }
        }
        let get_at = get_reply_at.unwrap();
        let slow_at = order.iter().position(|o| o == "reply-slow").unwrap();
        assert!(slow_at < get_at, "iteration {it}: replies out of request order: {order:?}");
        match event_at {
            Some(e) => {
                assert!(e > get_at, "iteration {it}: event before its registering reply: {order:?}");
                assert_eq!(watch_before_change, Some(true), "iteration {it}: event although getData saw the change");
                fired += 1;
            }
            None => {
                // The change applied before the watch was set: the watch is still armed. Fire it
                // now so it cannot be taken for the next iteration's event.
                assert_eq!(c2.set_data(&w, b"flush", -1).err, 0);
                let ev = c1.wait_event(Duration::from_secs(10)).expect("event of the still-armed watch");
                assert_eq!((ev.event_type, ev.path.as_str()), (EVENT_NODE_DATA_CHANGED, w.as_str()));
            }
        }
    }
    eprintln!("watch_event_never_precedes_its_registering_reply: {fired}/50 iterations had the watch fire");
}
