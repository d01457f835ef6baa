//! Bytes no well-behaved client sends, written by hand: garbage, negative and oversized
//! frames, unknown opcodes, bad paths; per-op multi errors; one-shot watch semantics and
//! notification-before-data ordering; the four-letter words. After each abuse the server must
//! still answer `ruok` with `imok`.

use std::io::Write;
use std::time::Duration;

use warren_tests::{
    closed_within, err, four_letter_at, multi_check, multi_create, multi_end, multi_set_data, op, parse_multi_reply,
    raw_socket, read_frame, unique, Jute, JuteReader, RawSession, WarrenOpts, WarrenProcess,
};

fn assert_alive(s: &WarrenProcess) {
    assert_eq!(s.four_letter("ruok").trim(), "imok", "server must survive\n{}", s.stderr_tail());
    let mut raw = RawSession::connect(s.addr(), 5000);
    raw.ping();
    let r = raw.call(op::EXISTS, Jute::new().str("/").bool(false));
    assert_eq!(r.err, 0, "exists / after abuse");
}

fn mkroot(raw: &mut RawSession, name: &str) -> String {
    let root = format!("/{}", unique(name));
    assert_eq!(raw.create(&root, b"", 0).err, 0);
    root
}

#[test]
fn garbage_handshake_is_dropped_and_server_survives() {
    let s = WarrenProcess::start(WarrenOpts::default());
    let mut sock = raw_socket(s.addr());
    // A plausible length followed by junk that is not a ConnectRequest.
    let mut junk = 40i32.to_be_bytes().to_vec();
    junk.extend_from_slice(b"GARBAGE!GARBAGE!GARBAGE!GARBAGE!GARBAGE!");
    sock.write_all(&junk).unwrap();
    assert!(closed_within(&mut sock, Duration::from_secs(10)), "garbage ConnectRequest must close the connection");
    // Junk after a good handshake.
    let mut raw = RawSession::connect(s.addr(), 5000);
    raw.stream.write_all(&[0, 0, 0, 3, 0xde, 0xad, 0xbe]).unwrap();
    let _ = closed_within(&mut raw.stream, Duration::from_secs(3));
    assert_alive(&s);
}

#[test]
fn negative_length_frame_closes_connection() {
    let s = WarrenProcess::start(WarrenOpts::default());
    let mut sock = raw_socket(s.addr());
    sock.write_all(&(-5i32).to_be_bytes()).unwrap();
    sock.write_all(&[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
    assert!(closed_within(&mut sock, Duration::from_secs(10)), "negative frame length must close the connection");
    let mut raw = RawSession::connect(s.addr(), 5000);
    raw.stream.write_all(&i32::MIN.to_be_bytes()).unwrap();
    assert!(closed_within(&mut raw.stream, Duration::from_secs(10)), "negative length in a session must close it");
    assert_alive(&s);
}

#[test]
fn oversized_request_is_refused_without_crash() {
    if warren_tests::skip_if_external("oversized_request_is_refused_without_crash") {
        return;
    }
    let s = WarrenProcess::start(WarrenOpts::default().max_request_bytes(4096));
    // A create carrying 8 KiB of data in a session: the connection is closed, as ZooKeeper
    // does for a frame over jute.maxbuffer (clients see ConnectionLoss).
    let mut raw = RawSession::connect(s.addr(), 5000);
    let root = mkroot(&mut raw, "big");
    let xid = raw.next_xid();
    let body = Jute::new().str(&format!("{root}/n")).buf(&vec![7u8; 8192]).open_acl().i32(0);
    raw.send(xid, op::CREATE, &body);
    assert!(raw.read_reply().is_err(), "an over-limit request closes the connection, without a reply");
    // A frame header announcing 100 MiB, with nothing after it.
    let mut sock = raw_socket(s.addr());
    sock.write_all(&(100i32 << 20).to_be_bytes()).unwrap();
    assert!(closed_within(&mut sock, Duration::from_secs(10)), "a 100 MiB frame header must be refused at once");
    // Same after a handshake.
    let mut raw2 = RawSession::connect(s.addr(), 5000);
    raw2.stream.write_all(&(64i32 << 20).to_be_bytes()).unwrap();
    assert!(closed_within(&mut raw2.stream, Duration::from_secs(10)), "64 MiB frame in a session must close it");
    assert_alive(&s);
    // The node was not created.
    let mut raw3 = RawSession::connect(s.addr(), 5000);
    let r = raw3.call(op::EXISTS, Jute::new().str(&format!("{root}/n")).bool(false));
    assert_eq!(r.err, err::NO_NODE);
}

#[test]
fn unknown_opcode_answers_unimplemented_with_same_xid() {
    let s = WarrenProcess::start(WarrenOpts::default());
    let mut raw = RawSession::connect(s.addr(), 5000);
    raw.send(4242, 999, &Jute::new().str("/whatever"));
    let r = raw.read_reply().expect("a reply to an unknown opcode, not a close");
    assert_eq!(r.xid, 4242, "same xid");
    assert_eq!(r.err, err::UNIMPLEMENTED, "unknown opcode → ZUNIMPLEMENTED");
    // ZooKeeper then closes the connection; either way the server lives on.
    assert_alive(&s);
}

#[test]
fn bad_paths_are_bad_arguments() {
    let s = WarrenProcess::start(WarrenOpts::default());
    let mut raw = RawSession::connect(s.addr(), 5000);
    let root = mkroot(&mut raw, "badpath");
    // Invalid as a path whatever exists: ZBADARGUMENTS.
    let bad = [
        "noslash".to_string(),
        String::new(),
        format!("{root}/"),
        format!("{root}/a\0b"),
        format!("{root}/."),
        format!("{root}/.."),
    ];
    for p in &bad {
        let r = raw.create(p, b"", 0);
        assert_eq!(r.err, err::BAD_ARGUMENTS, "create {p:?}: want ZBADARGUMENTS (-8)");
    }
    // Invalid, and so is the parent: ZooKeeper looks the parent up first and answers ZNONODE;
    // ZBADARGUMENTS is as good.
    for p in [format!("{root}//x"), format!("{root}/./x"), format!("{root}/../x"), format!("{root}/x/")] {
        let r = raw.create(&p, b"", 0);
        assert!([err::BAD_ARGUMENTS, err::NO_NODE].contains(&r.err), "create {p:?}: got {}, want -8 or -101", r.err);
    }
    let r = raw.create("/", b"", 0);
    assert!([err::BAD_ARGUMENTS, err::NODE_EXISTS].contains(&r.err), "create \"/\": got {}", r.err);
    // A sequential create with a trailing slash is a valid request (name = digits only).
    let r = raw.create(&format!("{root}/"), b"", 2);
    assert_eq!(r.err, 0, "sequential create of {root}/ is legal");
    // Bad paths on other ops do not crash anything either.
    let r = raw.call(op::GET_DATA, Jute::new().str("noslash").bool(false));
    assert_ne!(r.err, 0);
    let r = raw.call(op::DELETE, Jute::new().str(&format!("{root}//x")).i32(-1));
    assert_ne!(r.err, 0);
    assert_alive(&s);
}

#[test]
fn aborted_multi_reports_per_op_errors() {
    let s = WarrenProcess::start(WarrenOpts::default());
    let mut raw = RawSession::connect(s.addr(), 5000);
    let root = mkroot(&mut raw, "rawmulti");
    let exists = format!("{root}/exists");
    assert_eq!(raw.create(&exists, b"v0", 0).err, 0);

    let mut m = multi_create(Jute::new(), &format!("{root}/ok"), b"", 0);
    m = multi_check(m, &exists, 0);
    m = multi_set_data(m, &exists, b"v1", 9); // fails: BadVersion
    m = multi_create(m, &format!("{root}/later"), b"", 0);
    let r = raw.call(op::MULTI, multi_end(m));
    // ZooKeeper answers the multi itself with the first error in the header.
    assert!(r.err == 0 || r.err == err::BAD_VERSION, "multi header err {}", r.err);
    let per_op = parse_multi_reply(&r.body);
    assert_eq!(
        per_op,
        vec![
            (op::ERROR, err::OK),
            (op::ERROR, err::OK),
            (op::ERROR, err::BAD_VERSION),
            (op::ERROR, err::RUNTIME_INCONSISTENCY)
        ],
        "per-op results of an aborted multi"
    );
    let r = raw.call(op::EXISTS, Jute::new().str(&format!("{root}/ok")).bool(false));
    assert_eq!(r.err, err::NO_NODE, "aborted multi applied its first op");
    let r = raw.get_data(&exists, false);
    let mut rd = JuteReader::new(&r.body);
    assert_eq!(rd.buf().unwrap(), b"v0");

    // Successful multi: per-op result types.
    let mut m = multi_create(Jute::new(), &format!("{root}/a"), b"A", 0);
    m = multi_check(m, &exists, 0);
    m = multi_set_data(m, &exists, b"v1", 0);
    m = m.i32(op::DELETE).bool(false).i32(-1).str(&format!("{root}/a")).i32(-1);
    let r = raw.call(op::MULTI, multi_end(m));
    assert_eq!(r.err, 0);
    let per_op = parse_multi_reply(&r.body);
    assert_eq!(per_op, vec![(op::CREATE, 0), (op::CHECK, 0), (op::SET_DATA, 0), (op::DELETE, 0)]);
    // An empty multi is legal and returns no results.
    let r = raw.call(op::MULTI, multi_end(Jute::new()));
    assert_eq!(r.err, 0);
    assert_eq!(parse_multi_reply(&r.body), vec![]);
}

#[test]
fn one_shot_watch_fires_exactly_once() {
    let s = WarrenProcess::start(WarrenOpts::default());
    let mut w = RawSession::connect(s.addr(), 10000);
    let mut writer = RawSession::connect(s.addr(), 10000);
    let root = mkroot(&mut writer, "oneshot");
    let p = format!("{root}/n");
    assert_eq!(writer.create(&p, b"0", 0).err, 0);
    assert_eq!(w.get_data(&p, true).err, 0);
    assert_eq!(writer.set_data(&p, b"1", -1).err, 0);
    assert_eq!(writer.set_data(&p, b"2", -1).err, 0);
    let ev = w.wait_event(Duration::from_secs(10)).expect("data watch event");
    assert_eq!((ev.event_type, ev.state, ev.path.as_str()), (3, 3, p.as_str()), "NodeDataChanged, SyncConnected");
    assert_eq!(w.wait_event(Duration::from_millis(800)), None, "a one-shot watch fires once");

    // Watches registered twice on the same path by one session still fire once.
    assert_eq!(w.get_data(&p, true).err, 0);
    assert_eq!(w.call(op::EXISTS, Jute::new().str(&p).bool(true)).err, 0);
    assert_eq!(writer.set_data(&p, b"3", -1).err, 0);
    assert!(w.wait_event(Duration::from_secs(10)).is_some());
    assert_eq!(w.wait_event(Duration::from_millis(800)), None, "one event per path and type per session");

    // Child watch event type 4; deleting the watched parent with a child watch gives type 2.
    assert_eq!(w.call(op::GET_CHILDREN, Jute::new().str(&root).bool(true)).err, 0);
    assert_eq!(writer.create(&format!("{root}/k"), b"", 0).err, 0);
    let ev = w.wait_event(Duration::from_secs(10)).expect("child watch event");
    assert_eq!((ev.event_type, ev.path.as_str()), (4, root.as_str()));
    // Exists watch on a missing node: NodeCreated (1).
    let missing = format!("{root}/m");
    assert_eq!(w.call(op::EXISTS, Jute::new().str(&missing).bool(true)).err, err::NO_NODE);
    assert_eq!(writer.create(&missing, b"", 0).err, 0);
    let ev = w.wait_event(Duration::from_secs(10)).expect("exists watch event");
    assert_eq!((ev.event_type, ev.path.as_str()), (1, missing.as_str()));
}

#[test]
fn notification_arrives_before_the_data_it_announces() {
    let s = WarrenProcess::start(WarrenOpts::default());
    let mut w = RawSession::connect(s.addr(), 10000);
    let mut writer = RawSession::connect(s.addr(), 10000);
    let root = mkroot(&mut writer, "order");
    let p = format!("{root}/n");
    assert_eq!(writer.create(&p, b"0", 0).err, 0);
    for round in 1..=20 {
        assert_eq!(w.get_data(&p, true).err, 0);
        assert_eq!(writer.set_data(&p, format!("{round}").as_bytes(), -1).err, 0);
        // Poll the data without a watch until the new value shows; the event must be in first.
        let mut seen = false;
        for _ in 0..200 {
            let r = w.get_data(&p, false);
            let mut rd = JuteReader::new(&r.body);
            let data = rd.buf().unwrap();
            if data == format!("{round}").as_bytes() {
                assert!(
                    !w.events.is_empty(),
                    "round {round}: saw the new data before the NodeDataChanged notification"
                );
                seen = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(seen, "round {round}: new data never visible");
        let ev = w.events.remove(0);
        assert_eq!((ev.event_type, ev.path.as_str()), (3, p.as_str()));
        w.events.clear();
    }
}

#[test]
fn create2_ttl_container_and_get_children2_wire_format() {
    let s = WarrenProcess::start(WarrenOpts::default());
    let mut raw = RawSession::connect(s.addr(), 5000);
    let root = mkroot(&mut raw, "wire");
    // create2 answers path + stat.
    let r = raw.call(op::CREATE2, Jute::new().str(&format!("{root}/c2")).buf(b"abc").open_acl().i32(0));
    assert_eq!(r.err, 0);
    let mut rd = JuteReader::new(&r.body);
    assert_eq!(rd.string(), format!("{root}/c2"));
    let st = rd.stat();
    assert_eq!((st.version, st.data_length, st.num_children), (0, 3, 0));
    assert_eq!(rd.remaining(), 0);
    // createTTL with a TTL on a non-TTL mode is refused; on mode 5 it works.
    let r = raw.call(op::CREATE_TTL, Jute::new().str(&format!("{root}/t")).buf(b"").open_acl().i32(0).i64(1000));
    assert_eq!(r.err, err::BAD_ARGUMENTS, "TTL with persistent (non-TTL) flags");
    let r = raw.call(op::CREATE_TTL, Jute::new().str(&format!("{root}/t")).buf(b"").open_acl().i32(5).i64(0));
    assert_eq!(r.err, err::BAD_ARGUMENTS, "TTL 0");
    let r = raw.call(op::CREATE_TTL, Jute::new().str(&format!("{root}/t")).buf(b"").open_acl().i32(5).i64(60_000));
    assert_eq!(r.err, 0);
    // createContainer must carry flag 4.
    let r = raw.call(op::CREATE_CONTAINER, Jute::new().str(&format!("{root}/box")).buf(b"").open_acl().i32(4));
    assert_eq!(r.err, 0);
    // getChildren2: children + stat.
    let r = raw.call(op::GET_CHILDREN2, Jute::new().str(&root).bool(false));
    assert_eq!(r.err, 0);
    let mut rd = JuteReader::new(&r.body);
    let n = rd.i32();
    let mut kids: Vec<String> = (0..n).map(|_| rd.string()).collect();
    kids.sort();
    assert_eq!(kids, vec!["box", "c2", "t"]);
    assert_eq!(rd.stat().num_children, 3);
    // getAllChildrenNumber and getEphemerals wire replies.
    let r = raw.call(op::GET_ALL_CHILDREN_NUMBER, Jute::new().str(&root));
    assert_eq!(r.err, 0);
    assert_eq!(JuteReader::new(&r.body).i32(), 3);
    assert_eq!(raw.create(&format!("{root}/eph"), b"", 1).err, 0);
    let r = raw.call(op::GET_EPHEMERALS, Jute::new().str(&root));
    assert_eq!(r.err, 0);
    let mut rd = JuteReader::new(&r.body);
    assert_eq!(rd.i32(), 1);
    assert_eq!(rd.string(), format!("{root}/eph"));
    // Replies carry the zxid; a write's zxid is at least the zxid of a later read's header.
    let w = raw.set_data(&format!("{root}/c2"), b"x", -1);
    let rd2 = raw.call(op::EXISTS, Jute::new().str(&root).bool(false));
    assert!(w.zxid > 0 && rd2.zxid >= w.zxid, "reply zxids: write {} then read {}", w.zxid, rd2.zxid);
}

#[test]
fn old_client_handshake_without_readonly_byte() {
    let s = WarrenProcess::start(WarrenOpts::default());
    let mut sock = raw_socket(s.addr());
    let req = Jute::new().i32(0).i64(0).i32(5000).i64(0).buf(&[0u8; 16]);
    sock.write_all(&req.framed()).unwrap();
    let resp = read_frame(&mut sock).expect("ConnectResponse to a handshake without the readOnly byte");
    let mut rd = JuteReader::new(&resp);
    assert_eq!(rd.i32(), 0, "protocol version");
    assert_eq!(rd.i32(), 5000, "timeout");
    assert_ne!(rd.i64(), 0, "session id");
    assert_eq!(rd.buf().map(|p| p.len()), Some(16), "16-byte password");
    assert_alive(&s);
}

#[test]
fn reconnect_with_wrong_password_is_refused() {
    let s = WarrenProcess::start(WarrenOpts::default());
    let raw = RawSession::connect(s.addr(), 10000);
    let mut sock = raw_socket(s.addr());
    let mut bad_pw = raw.password.clone();
    bad_pw[0] ^= 0xff;
    let req = Jute::new().i32(0).i64(0).i32(10000).i64(raw.session_id).buf(&bad_pw).bool(false);
    sock.write_all(&req.framed()).unwrap();
    // ZooKeeper answers with timeout 0 / session id 0 (expired) and closes.
    let resp = read_frame(&mut sock).expect("a refused reconnect is answered before the close");
    let mut rd = JuteReader::new(&resp);
    rd.i32();
    assert_eq!(rd.i32(), 0, "a bad password must not revive the session (timeout 0)");
    assert!(closed_within(&mut sock, Duration::from_secs(10)));
    // The right password resumes the session.
    let mut sock = raw_socket(s.addr());
    let req = Jute::new().i32(0).i64(0).i32(10000).i64(raw.session_id).buf(&raw.password).bool(false);
    sock.write_all(&req.framed()).unwrap();
    let resp = read_frame(&mut sock).expect("resume");
    let mut rd = JuteReader::new(&resp);
    rd.i32();
    assert!(rd.i32() > 0, "resume with the right password");
    assert_eq!(rd.i64(), raw.session_id);
}

#[test]
fn four_letter_words_answer_and_server_stays_up() {
    let s = WarrenProcess::start(WarrenOpts::default());
    let _session = RawSession::connect(s.addr(), 10000); // something for cons/dump to show
    for word in ["ruok", "srvr", "stat", "mntr", "conf", "cons", "wchs", "envi", "dump", "isro"] {
        let out = four_letter_at(s.addr(), word, Duration::from_secs(10)).unwrap_or_else(|e| panic!("4lw {word}: {e}"));
        assert!(!out.trim().is_empty(), "4lw {word} answered nothing");
        match word {
            "ruok" => assert_eq!(out.trim(), "imok"),
            "isro" => assert_eq!(out.trim(), "rw"),
            "srvr" | "stat" => {
                assert!(out.contains("Mode:"), "{word} lacks Mode:\n{out}");
                assert!(out.contains("Zxid:"), "{word} lacks Zxid:\n{out}");
                assert!(out.contains("Node count:"), "{word} lacks Node count:\n{out}");
            }
            "mntr" => {
                for key in ["zk_version", "zk_server_state", "zk_znode_count", "zk_num_alive_connections"] {
                    assert!(out.lines().any(|l| l.starts_with(key)), "mntr lacks {key}:\n{out}");
                }
                assert!(out.lines().all(|l| l.is_empty() || l.contains('\t')), "mntr lines are key<TAB>value:\n{out}");
            }
            "conf" => assert!(out.contains("clientPort") || out.contains("dataDir"), "conf:\n{out}"),
            "envi" => assert!(out.contains("Environment"), "envi:\n{out}"),
            _ => {}
        }
    }
    // An unknown word is not a crash.
    let _ = four_letter_at(s.addr(), "zzzz", Duration::from_secs(5));
    assert_eq!(s.four_letter("ruok").trim(), "imok");
}

#[test]
fn many_connections_opened_and_dropped() {
    let s = WarrenProcess::start(WarrenOpts::default());
    for i in 0..100 {
        let mut sock = raw_socket(s.addr());
        if i % 3 == 0 {
            // Half a handshake, then gone.
            sock.write_all(&[0, 0, 0, 44, 0, 0]).unwrap();
        }
        drop(sock);
    }
    let mut live: Vec<RawSession> = (0..50).map(|_| RawSession::connect(s.addr(), 10000)).collect();
    for r in live.iter_mut() {
        r.ping();
    }
    drop(live);
    assert_alive(&s);
}

#[test]
fn remove_watches_and_check_watches() {
    let s = WarrenProcess::start(WarrenOpts::default());
    let mut w = RawSession::connect(s.addr(), 10000);
    let mut writer = RawSession::connect(s.addr(), 10000);
    let root = mkroot(&mut writer, "rmwatch");
    let p = format!("{root}/n");
    assert_eq!(writer.create(&p, b"0", 0).err, 0);
    // getData watch on a missing node is not set (ZooKeeper: NoNode, no watch).
    let missing = format!("{root}/missing");
    assert_eq!(w.get_data(&missing, true).err, err::NO_NODE);
    // A data watch, checked (17) and removed (18); type 2 = data.
    assert_eq!(w.get_data(&p, true).err, 0);
    assert_eq!(w.call(17, Jute::new().str(&p).i32(2)).err, 0, "checkWatches finds the data watch");
    assert_eq!(w.call(18, Jute::new().str(&p).i32(2)).err, 0, "removeWatches removes it");
    assert_eq!(w.call(17, Jute::new().str(&p).i32(2)).err, -121, "no watcher left: ZNOWATCHER");
    assert_eq!(w.call(18, Jute::new().str(&p).i32(1)).err, -121, "no child watch to remove: ZNOWATCHER");
    assert_eq!(writer.create(&missing, b"", 0).err, 0);
    assert_eq!(writer.set_data(&p, b"1", -1).err, 0);
    // ZooKeeper sends a DataWatchRemoved (type 5) notification on removal; nothing else may come.
    let mut events = Vec::new();
    while let Some(ev) = w.wait_event(Duration::from_millis(800)) {
        events.push(ev);
    }
    assert!(
        events.iter().all(|e| e.event_type == 5 && e.path == p),
        "a removed watch (and a getData watch on a missing node) must not fire: {events:?}"
    );
}

#[test]
fn reconfig_is_refused_clearly() {
    let s = WarrenProcess::start(WarrenOpts::default());
    let mut raw = RawSession::connect(s.addr(), 10000);
    // ReconfigRequest{joiningServers, leavingServers, newMembers, curConfigId}
    let body = Jute::new().str("server.9=127.0.0.1:2888:3888;2181").i32(-1).i32(-1).i64(-1);
    let r = raw.call(16, body);
    assert!(
        [-123, err::NO_AUTH, err::UNIMPLEMENTED].contains(&r.err),
        "reconfig must answer ZRECONFIGDISABLED/ZNOAUTH (or ZUNIMPLEMENTED), got {}",
        r.err
    );
    assert_alive(&s);
}

/// addWatch is answered with ErrorResponse{err 0} after the header, like ZooKeeper's
/// FinalRequestProcessor: the Java client reads that int, and an empty body made it drop the
/// connection, so Curator's PersistentWatcher and CuratorCache never saw an event.
#[test]
fn add_watch_reply_carries_error_response_body() {
    let s = WarrenProcess::start(WarrenOpts::default().cores(2));
    let mut w = RawSession::connect(s.addr(), 10000);
    let mut writer = RawSession::connect(s.addr(), 10000);
    let root = mkroot(&mut writer, "addwatch");
    for (path, mode) in [(root.as_str(), 1), (root.as_str(), 0), ("/", 1)] {
        let r = w.call(op::ADD_WATCH, Jute::new().str(path).i32(mode));
        assert_eq!(r.err, 0, "addWatch({path}, mode {mode})");
        assert_eq!(r.body, vec![0, 0, 0, 0], "addWatch({path}, mode {mode}) body: ErrorResponse{{0}}");
    }
    assert_eq!(writer.create(&format!("{root}/a"), b"", 0).err, 0);
    let ev = w.wait_event(Duration::from_secs(5)).expect("an event from the recursive watch");
    assert_eq!((ev.event_type, ev.path.as_str()), (1, format!("{root}/a").as_str()), "NodeCreated {ev:?}");
}
