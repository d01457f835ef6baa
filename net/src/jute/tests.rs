//! Codec tests: round trips for every request and reply, byte-exact goldens written by hand
//! from zookeeper.jute, multi framing, handshake tolerance, and decoding of hostile input.

use engine::request::{MultiResult, ReadResult};
use engine::types::{Acl, Id, Stat};
use proptest::prelude::*;

use super::*;

fn stat(seed: i64) -> Stat {
    Stat {
        czxid: seed,
        mzxid: seed + 1,
        ctime: 1_700_000_000_000 + seed,
        mtime: 1_700_000_000_001 + seed,
        version: 3,
        cversion: 4,
        aversion: 5,
        ephemeral_owner: 0x0100_0000_0000_0007,
        data_length: 2,
        num_children: 6,
        pzxid: seed + 2,
    }
}

fn acls() -> Vec<Acl> {
    vec![Acl { perms: 31, id: Id::world_anyone() }, Acl { perms: 1, id: Id::new("digest", "bob:c2VjcmV0") }]
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The frame body after the 4-byte prefix, checking the prefix against the body length.
fn body(frame: &[u8]) -> &[u8] {
    let len = frame_len(frame).expect("frame has a length prefix");
    assert_eq!(len as usize, frame.len() - 4, "length prefix matches the body");
    &frame[4..]
}

fn create(op: i32, ttl_ms: i64) -> Request {
    Request::Create {
        opcode: op,
        path: "/app/lock-".into(),
        data: Some(b"payload".to_vec()),
        acl: acls(),
        flags: if ttl_ms > 0 { 5 } else { 3 },
        ttl_ms,
    }
}

fn write_ops() -> Vec<Request> {
    vec![
        create(opcode::CREATE, 0),
        create(opcode::CREATE2, 0),
        create(opcode::CREATE_CONTAINER, 0),
        create(opcode::CREATE_TTL, 60_000),
        Request::Delete { path: "/a".into(), version: -1 },
        Request::SetData { path: "/b".into(), data: Some(vec![0, 1, 2]), version: 7 },
        Request::SetData { path: "/b".into(), data: None, version: 8 },
        Request::SetData { path: "/b".into(), data: Some(vec![]), version: 9 },
        Request::Check { path: "/c".into(), version: 2 },
    ]
}

fn all_requests() -> Vec<Request> {
    let mut reqs = write_ops();
    reqs.extend([
        Request::Exists { path: "/e".into(), watch: true },
        Request::GetData { path: "/d".into(), watch: false },
        Request::GetAcl { path: "/acl".into() },
        Request::SetAcl { path: "/acl".into(), acl: acls(), version: 1 },
        Request::GetChildren { path: "/".into(), watch: true },
        Request::GetChildren2 { path: "/x".into(), watch: false },
        Request::Sync { path: "/s".into() },
        Request::Ping,
        Request::Multi(write_ops()),
        Request::Multi(vec![]),
        Request::MultiRead(vec![
            Request::GetChildren { path: "/".into(), watch: false },
            Request::GetData { path: "/d".into(), watch: false },
        ]),
        Request::Reconfig {
            joining: Some("server.4=h4:2888:3888;2181".into()),
            leaving: None,
            new_members: None,
            config_id: -1,
        },
        Request::CheckWatches { path: "/w".into(), watcher_type: 1 },
        Request::RemoveWatches { path: "/w".into(), watcher_type: 3 },
        Request::Auth { auth_type: 0, scheme: "digest".into(), auth: b"bob:secret".to_vec() },
        Request::SetWatches {
            relative_zxid: 0x1_0000_0005,
            data: strings(&["/a", "/b"]),
            exist: strings(&["/gone"]),
            child: vec![],
        },
        Request::SetWatches2 {
            relative_zxid: 9,
            data: strings(&["/a"]),
            exist: vec![],
            child: strings(&["/"]),
            persistent: strings(&["/p"]),
            persistent_recursive: strings(&["/r", "/r2"]),
        },
        Request::GetEphemerals { prefix: "/".into() },
        Request::GetAllChildrenNumber { path: "/n".into() },
        Request::AddWatch { path: "/aw".into(), mode: 1 },
        Request::WhoAmI,
        Request::CloseSession,
        Request::Sasl { token: vec![0x60, 0x82] },
    ]);
    reqs
}

fn encode_req(xid: i32, req: &Request) -> Vec<u8> {
    let mut out = Vec::new();
    encode_request(&mut out, &RequestHeader { xid, opcode: req.opcode() }, req);
    out
}

#[test]
fn jute_every_request_round_trips() {
    for (i, req) in all_requests().into_iter().enumerate() {
        let frame = encode_req(i as i32 + 1, &req);
        let (header, decoded) = decode_request(body(&frame)).expect("decodes");
        assert_eq!(header, RequestHeader { xid: i as i32 + 1, opcode: req.opcode() });
        assert_eq!(decoded, req);
    }
}

#[test]
fn jute_every_strict_prefix_of_a_request_body_is_an_error() {
    for req in all_requests() {
        let frame = encode_req(1, &req);
        let body = body(&frame);
        // Ping, WhoAmI and CloseSession have no body: only header prefixes can be short.
        for cut in 0..body.len() {
            assert!(decode_request(&body[..cut]).is_err(), "{req:?} cut at {cut}");
        }
    }
}

fn all_replies() -> Vec<(i32, Response)> {
    use opcode::*;
    vec![
        (DELETE, Response::Empty),
        (PING, Response::Empty),
        (SET_WATCHES2, Response::Empty),
        (ADD_WATCH, Response::ErrorResponse(0)),
        (CREATE, Response::Create { path: "/app/lock-0000000001".into() }),
        (CREATE2, Response::Create2 { path: "/c".into(), stat: stat(1) }),
        (CREATE_CONTAINER, Response::Create2 { path: "/cc".into(), stat: stat(2) }),
        (CREATE_TTL, Response::Create2 { path: "/ttl".into(), stat: stat(3) }),
        (EXISTS, Response::Stat(stat(4))),
        (SET_DATA, Response::Stat(stat(5))),
        (SET_ACL, Response::Stat(stat(6))),
        (GET_DATA, Response::Data { data: Some(b"hello".to_vec()), stat: stat(7) }),
        (GET_DATA, Response::Data { data: Some(vec![]), stat: stat(8) }),
        (GET_DATA, Response::Data { data: None, stat: stat(8) }),
        (RECONFIG, Response::Data { data: Some(b"server.1=h1".to_vec()), stat: stat(9) }),
        (GET_ACL, Response::Acl { acl: acls(), stat: stat(10) }),
        (GET_CHILDREN, Response::Children(strings(&["a", "b", "zz"]))),
        (GET_CHILDREN2, Response::Children2 { children: strings(&["x"]), stat: stat(11) }),
        (SYNC, Response::Sync { path: "/s".into() }),
        (GET_ALL_CHILDREN_NUMBER, Response::Number(42)),
        (GET_EPHEMERALS, Response::Ephemerals(strings(&["/e1", "/e2"]))),
        (WHO_AM_I, Response::WhoAmI(vec![("ip".into(), "127.0.0.1".into())])),
        (SASL, Response::Sasl { token: vec![1, 2, 3] }),
        (MULTI, Response::Multi(vec![])),
        (MULTI_READ, Response::MultiRead(vec![])),
    ]
}

fn encode_rep(xid: i32, err: i32, body: &Response) -> Vec<u8> {
    let mut out = Vec::new();
    encode_reply(&mut out, &ReplyHeader { xid, zxid: 0x5_0000_0001, err }, body);
    out
}

#[test]
fn jute_every_reply_round_trips() {
    for (i, (op, rep)) in all_replies().into_iter().enumerate() {
        let frame = encode_rep(i as i32, 0, &rep);
        let (header, decoded) = decode_reply(body(&frame), op).expect("decodes");
        assert_eq!(header, ReplyHeader { xid: i as i32, zxid: 0x5_0000_0001, err: 0 });
        assert_eq!(decoded, rep, "opcode {op}");
    }
}

#[test]
fn jute_error_reply_has_no_body() {
    let frame = encode_rep(3, -101, &Response::Data { data: Some(b"ignored".to_vec()), stat: stat(1) });
    assert_eq!(frame.len(), 4 + 16, "length prefix and ReplyHeader only");
    let (header, rep) = decode_reply(body(&frame), opcode::GET_DATA).unwrap();
    assert_eq!(header.err, -101);
    assert_eq!(rep, Response::Empty);
}

#[test]
fn jute_multi_with_mixed_ops_round_trips() {
    use opcode::*;
    let results = vec![
        (CREATE, MultiResult::Create { path: "/a".into(), stat: Stat::default() }),
        (CREATE2, MultiResult::Create { path: "/b".into(), stat: stat(1) }),
        (DELETE, MultiResult::Delete),
        (SET_DATA, MultiResult::SetData(stat(2))),
        (CHECK, MultiResult::Check),
    ];
    let frame = encode_rep(7, 0, &Response::Multi(results.clone()));
    let (_, rep) = decode_reply(body(&frame), MULTI).unwrap();
    assert_eq!(rep, Response::Multi(results));
}

#[test]
fn jute_multi_container_and_ttl_results_travel_as_create2() {
    // MultiResponse.deserialize knows only create (1) and create2 (15) result types.
    use opcode::*;
    let sent = vec![
        (CREATE_CONTAINER, MultiResult::Create { path: "/c".into(), stat: stat(1) }),
        (CREATE_TTL, MultiResult::Create { path: "/t".into(), stat: stat(2) }),
    ];
    let frame = encode_rep(7, 0, &Response::Multi(sent));
    let (_, rep) = decode_reply(body(&frame), MULTI).unwrap();
    let expected = vec![
        (CREATE2, MultiResult::Create { path: "/c".into(), stat: stat(1) }),
        (CREATE2, MultiResult::Create { path: "/t".into(), stat: stat(2) }),
    ];
    assert_eq!(rep, Response::Multi(expected));
}

#[test]
fn jute_aborted_multi_golden_and_round_trip() {
    // ops before the failure report 0, the failing one its code, the rest ZRUNTIMEINCONSISTENCY.
    let results = vec![
        (opcode::ERROR, MultiResult::Error(0)),
        (opcode::ERROR, MultiResult::Error(-101)),
        (opcode::ERROR, MultiResult::Error(-2)),
    ];
    let frame = encode_rep(9, 0, &Response::Multi(results.clone()));
    let mut expected = vec![0, 0, 0, 9, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0, 0];
    for err in [0i32, -101, -2] {
        // MultiHeader{type -1, done false, err} then ErrorResponse{err}.
        expected.extend((-1i32).to_be_bytes());
        expected.push(0);
        expected.extend(err.to_be_bytes());
        expected.extend(err.to_be_bytes());
    }
    expected.extend([0xff, 0xff, 0xff, 0xff, 1, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(body(&frame), &expected[..]);
    let (_, rep) = decode_reply(body(&frame), opcode::MULTI).unwrap();
    assert_eq!(rep, Response::Multi(results));
}

#[test]
fn jute_multi_read_round_trips_with_errors() {
    let results = vec![
        Ok(ReadResult::Children(strings(&["a", "b"]))),
        Err(-101),
        Ok(ReadResult::Data { data: Some(b"v".to_vec()), stat: stat(3) }),
    ];
    let frame = encode_rep(2, 0, &Response::MultiRead(results.clone()));
    let (_, rep) = decode_reply(body(&frame), opcode::MULTI_READ).unwrap();
    assert_eq!(rep, Response::MultiRead(results));
}

#[test]
fn jute_multi_request_golden() {
    let req = Request::Multi(vec![
        Request::Check { path: "/a".into(), version: 1 },
        Request::Delete { path: "/a".into(), version: -1 },
    ]);
    let frame = encode_req(5, &req);
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0, 0, 0, 5, 0, 0, 0, 14,                  // RequestHeader{xid 5, multi}
        0, 0, 0, 13, 0, 0xff, 0xff, 0xff, 0xff,   // MultiHeader{check, false, -1}
        0, 0, 0, 2, b'/', b'a', 0, 0, 0, 1,       // CheckVersionRequest{"/a", 1}
        0, 0, 0, 2, 0, 0xff, 0xff, 0xff, 0xff,    // MultiHeader{delete, false, -1}
        0, 0, 0, 2, b'/', b'a', 0xff, 0xff, 0xff, 0xff, // DeleteRequest{"/a", -1}
        0xff, 0xff, 0xff, 0xff, 1, 0xff, 0xff, 0xff, 0xff, // MultiHeader{-1, true, -1}
    ];
    assert_eq!(body(&frame), expected);
}

#[test]
fn jute_multi_refuses_ops_of_the_other_kind() {
    let read_in_write = Request::Multi(vec![Request::GetData { path: "/a".into(), watch: false }]);
    let frame = encode_req(4, &read_in_write);
    let (header, err) = decode_request(body(&frame)).unwrap_err();
    assert_eq!(header, Some(RequestHeader { xid: 4, opcode: opcode::MULTI }));
    assert_eq!(err, DecodeError::InvalidMultiOp { multi: opcode::MULTI, op: opcode::GET_DATA });

    let nested = Request::MultiRead(vec![Request::MultiRead(vec![])]);
    let frame = encode_req(4, &nested);
    let (_, err) = decode_request(body(&frame)).unwrap_err();
    assert_eq!(err, DecodeError::InvalidMultiOp { multi: 22, op: 22 });
}

#[test]
fn jute_unknown_opcode_keeps_the_header() {
    let frame = [0, 0, 0, 12, 0, 0, 0, 99, 1, 2, 3];
    let (header, err) = decode_request(&frame).unwrap_err();
    assert_eq!(header, Some(RequestHeader { xid: 12, opcode: 99 }));
    assert_eq!(err, DecodeError::UnknownOpcode(99));
    assert_eq!(decode_request(&frame[..5]).unwrap_err(), (None, DecodeError::Truncated { needed: 4, remaining: 1 }));
}

#[test]
fn jute_get_data_request_golden() {
    let frame = encode_req(1, &Request::GetData { path: "/a".into(), watch: true });
    let expected = [0, 0, 0, 15, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 2, b'/', b'a', 1];
    assert_eq!(frame, expected);
}

#[test]
fn jute_get_data_reply_golden() {
    let s = Stat {
        czxid: 0x10,
        mzxid: 0x11,
        ctime: 0x0102_0304_0506_0708,
        mtime: 0x0102_0304_0506_0709,
        version: 1,
        cversion: 2,
        aversion: 3,
        ephemeral_owner: -1,
        data_length: 2,
        num_children: 0,
        pzxid: 0x12,
    };
    let mut out = Vec::new();
    let header = ReplyHeader { xid: 7, zxid: 0x11, err: 0 };
    encode_reply(&mut out, &header, &Response::Data { data: Some(b"hi".to_vec()), stat: s });
    #[rustfmt::skip]
    let expected: Vec<u8> = [
        &[0, 0, 0, 0x5a][..],                                  // 90 = 16 + 6 + 68
        &[0, 0, 0, 7], &[0, 0, 0, 0, 0, 0, 0, 0x11], &[0, 0, 0, 0], // ReplyHeader
        &[0, 0, 0, 2, b'h', b'i'],                             // data
        &[0, 0, 0, 0, 0, 0, 0, 0x10], &[0, 0, 0, 0, 0, 0, 0, 0x11], // czxid, mzxid
        &[1, 2, 3, 4, 5, 6, 7, 8], &[1, 2, 3, 4, 5, 6, 7, 9],  // ctime, mtime
        &[0, 0, 0, 1], &[0, 0, 0, 2], &[0, 0, 0, 3],           // version, cversion, aversion
        &[0xff; 8],                                            // ephemeralOwner -1
        &[0, 0, 0, 2], &[0, 0, 0, 0],                          // dataLength, numChildren
        &[0, 0, 0, 0, 0, 0, 0, 0x12],                          // pzxid
    ]
    .concat();
    assert_eq!(out, expected);
    assert_eq!(STAT_BYTES, 68);
}

/// A ConnectRequest as zkCli (ZooKeeper 3.8) sends it for a new session: protocol 0, no zxid
/// seen, 30 s timeout, session 0, a 16-byte zero password and readOnly false.
fn zkcli_connect_bytes() -> Vec<u8> {
    #[rustfmt::skip]
    let frame: Vec<u8> = [
        &[0, 0, 0, 45][..],
        &[0, 0, 0, 0],                    // protocolVersion
        &[0; 8],                          // lastZxidSeen
        &[0, 0, 0x75, 0x30],              // timeOut 30000
        &[0; 8],                          // sessionId
        &[0, 0, 0, 16], &[0; 16],         // passwd
        &[0],                             // readOnly
    ]
    .concat();
    frame
}

#[test]
fn jute_connect_request_golden_as_zkcli_sends_it() {
    let req = ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 0,
        timeout_ms: 30_000,
        session_id: 0,
        passwd: vec![0; 16],
        read_only: false,
    };
    let mut out = Vec::new();
    encode_connect_request(&mut out, &req);
    assert_eq!(out, zkcli_connect_bytes());
    assert_eq!(decode_connect_request(body(&out)).unwrap(), req);
}

#[test]
fn jute_connect_request_without_read_only_byte_is_accepted() {
    let frame = zkcli_connect_bytes();
    let without = &frame[4..frame.len() - 1];
    let req = decode_connect_request(without).unwrap();
    assert!(!req.read_only);
    assert_eq!(req.timeout_ms, 30_000);

    let mut with_ro = frame[4..].to_vec();
    *with_ro.last_mut().unwrap() = 1;
    assert!(decode_connect_request(&with_ro).unwrap().read_only);
}

#[test]
fn jute_connect_response_round_trips_and_tolerates_old_servers() {
    let resp = ConnectResponse {
        protocol_version: 0,
        timeout_ms: 10_000,
        session_id: 0x0100_0000_0000_0001,
        passwd: (0..16).collect(),
        read_only: true,
    };
    let mut out = Vec::new();
    encode_connect_response(&mut out, &resp);
    assert_eq!(out.len(), 4 + 4 + 4 + 8 + 4 + 16 + 1);
    assert_eq!(decode_connect_response(body(&out)).unwrap(), resp);
    let old = decode_connect_response(&out[4..out.len() - 1]).unwrap();
    assert!(!old.read_only);
}

#[test]
fn jute_notification_round_trips() {
    let mut out = Vec::new();
    encode_notification(&mut out, 0x42, 3, 3, "/watched");
    let (header, event_type, state, path) = decode_notification(body(&out)).unwrap();
    assert_eq!(header, ReplyHeader { xid: xid::NOTIFICATION, zxid: 0x42, err: 0 });
    assert_eq!((event_type, state, path.as_str()), (3, 3, "/watched"));
}

#[test]
fn jute_frames_append_to_a_reused_buffer() {
    let mut out = vec![0xaa];
    encode_reply(&mut out, &ReplyHeader { xid: -2, zxid: 1, err: 0 }, &Response::Empty);
    encode_notification(&mut out, 1, 1, 3, "/n");
    assert_eq!(out[0], 0xaa);
    let first = frame_len(&out[1..]).unwrap() as usize;
    assert_eq!(first, 16);
    let second = &out[1 + 4 + first..];
    assert_eq!(frame_len(second).unwrap() as usize, second.len() - 4);
}

#[test]
fn jute_frame_len_needs_four_bytes() {
    assert_eq!(frame_len(&[0, 0, 1]), None);
    assert_eq!(frame_len(&[0, 0, 1, 0, 9]), Some(256));
    assert_eq!(frame_len(&[0xff, 0xff, 0xff, 0xfe]), Some(-2));
}

#[test]
fn jute_null_path_decodes_as_empty_and_null_data_stays_null() {
    // SetDataRequest{path null, data null, version 0}
    let frame = [0, 0, 0, 1, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
    let (_, req) = decode_request(&frame).unwrap();
    assert_eq!(req, Request::SetData { path: String::new(), data: None, version: 0 });
}

#[test]
fn jute_hostile_lengths_are_refused_before_allocating() {
    let huge = [0, 0, 0, 1, 0, 0, 0, 4, 0x7f, 0xff, 0xff, 0xff, 1];
    let (_, err) = decode_request(&huge).unwrap_err();
    assert_eq!(err, DecodeError::TooLong { len: 0x7fff_ffff, remaining: 1 });

    let negative = [0, 0, 0, 1, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xfe, 1];
    assert_eq!(decode_request(&negative).unwrap_err().1, DecodeError::NegativeLength(-2));

    // SetWatches whose first vector claims 2^30 strings in 4 bytes.
    let mut many = vec![0, 0, 0, 1, 0, 0, 0, 101];
    many.extend([0; 8]);
    many.extend([0x40, 0, 0, 0, 0, 0, 0, 0]);
    let err = decode_request(&many).unwrap_err().1;
    assert_eq!(err, DecodeError::TooLong { len: 1 << 30, remaining: 4 });
}

#[test]
fn jute_invalid_utf8_is_an_error() {
    let frame = [0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 2, 0xc3, 0x28];
    assert_eq!(decode_request(&frame).unwrap_err().1, DecodeError::InvalidUtf8);
}

#[test]
fn jute_reply_trailing_bytes_are_an_error() {
    let mut frame = encode_rep(1, 0, &Response::Number(3));
    frame.push(0);
    let err = decode_reply(&frame[4..], opcode::GET_ALL_CHILDREN_NUMBER).unwrap_err();
    assert_eq!(err, DecodeError::TrailingBytes(1));
}

const OPCODES: [i32; 30] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22, 100, 101, 102, 103, 104, 105, 106, 107, -11,
    20,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn jute_decode_request_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_request(&bytes);
    }

    #[test]
    fn jute_decode_request_body_never_panics(
        op in proptest::sample::select(&OPCODES[..]),
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut frame = vec![0, 0, 0, 1];
        frame.extend(op.to_be_bytes());
        frame.extend(body);
        let _ = decode_request(&frame);
    }

    #[test]
    fn jute_decode_connect_request_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        let _ = decode_connect_request(&bytes);
        let _ = decode_connect_response(&bytes);
    }

    #[test]
    fn jute_decode_reply_never_panics(
        op in proptest::sample::select(&OPCODES[..]),
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let _ = decode_reply(&bytes, op);
        let _ = decode_notification(&bytes);
    }

    /// Arbitrary field values survive encode → decode (strings of any Unicode, any bytes).
    #[test]
    fn jute_arbitrary_create_and_set_watches_round_trip(
        path in ".{0,40}",
        data in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        scheme in "[a-z]{0,8}",
        perms in any::<i32>(),
        flags in any::<i32>(),
        ttl_ms in any::<i64>(),
        lists in proptest::collection::vec(proptest::collection::vec(".{0,12}", 0..4), 5),
    ) {
        let acl = vec![Acl { perms, id: Id { scheme, id: path.clone() } }];
        let create = Request::Create { opcode: opcode::CREATE_TTL, path: path.clone(), data, acl, flags, ttl_ms };
        let watches = Request::SetWatches2 {
            relative_zxid: ttl_ms,
            data: lists[0].clone(),
            exist: lists[1].clone(),
            child: lists[2].clone(),
            persistent: lists[3].clone(),
            persistent_recursive: lists[4].clone(),
        };
        for req in [create.clone(), watches, Request::Multi(vec![create])] {
            let frame = encode_req(1, &req);
            prop_assert_eq!(decode_request(body(&frame)).unwrap().1, req);
        }
    }

    /// Corrupting one byte of a valid multi gives Ok or Err, never a panic.
    #[test]
    fn jute_corrupted_multi_never_panics(at in 0usize..512, byte in any::<u8>()) {
        let frame = encode_req(1, &Request::Multi(write_ops()));
        let mut body = body(&frame).to_vec();
        let i = at % body.len();
        body[i] = byte;
        let _ = decode_request(&body);
    }
}
