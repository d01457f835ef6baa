//! The user-space work of one request, in one process and without IO: what a server core does
//! between reading a request frame and having its reply frame in the output buffer, with the
//! executor, channels and sockets left out. getData: decode, route (shard of the path), read
//! the shard (10k nodes of 100 B), encode the reply. setData: decode, route, build the log
//! entry, serialize it (rkyv, as the WAL stores it), apply it, encode the reply. The WAL's
//! write and fdatasync are not in it. Run: `cargo bench -p bench --bench request_path`.
//!
//! The gap between these figures and a loaded server's CPU per request (loadgen's "ops per
//! server CPU-second") is the kernel (syscalls, loopback TCP, wake-ups) and the runtime.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::command::{Command, CreateOp, LogEntry, SetDataOp};
use engine::path::shard_of;
use engine::request::{Caller, ReadOp, ReadResult};
use engine::types::{Acl, CreateMode, Id};
use engine::Shard;
use net::jute::{self, opcode, ReplyHeader, Request, RequestHeader, Response};
use std::hint::black_box;

const KEYS: usize = 10_000;
const VALUE_BYTES: usize = 100;
/// As `warren start`'s default.
const SHARDS: u16 = 8;

fn key(i: usize) -> String {
    format!("/loadgen/k{i:07}")
}

/// One shard holding every key (routing is still computed per request, as the server does).
fn loaded_shard() -> (Shard, i64) {
    let mut shard = Shard::new(0, 1);
    let mut zxid = 1;
    let paths = std::iter::once("/loadgen".to_string()).chain((0..KEYS).map(key));
    for path in paths {
        let create = Command::Create(CreateOp {
            path,
            data: Some(vec![b'x'; VALUE_BYTES]),
            acl: Acl::open_unsafe(),
            mode: CreateMode::Persistent,
            ttl_ms: 0,
            session: 0,
            auth: vec![],
        });
        let applied = shard.apply(&LogEntry { shard: 0, zxid, time_ms: zxid, command: create });
        assert!(applied.result.is_ok(), "{:?}", applied.result);
        zxid += 1;
    }
    (shard, zxid)
}

/// Request frames (without the length prefix, as the server hands them on) for keys in a
/// scattered order, so the reads miss the caches as a server's do.
fn frames(request: impl Fn(String) -> Request) -> Vec<Vec<u8>> {
    (0..KEYS)
        .map(|i| {
            let path = key(i.wrapping_mul(7919) % KEYS);
            let req = request(path);
            let mut framed = Vec::new();
            jute::encode_request(&mut framed, &RequestHeader { xid: i as i32 + 1, opcode: req.opcode() }, &req);
            framed.split_off(4)
        })
        .collect()
}

fn bench_get_data(c: &mut Criterion) {
    let (mut shard, _) = loaded_shard();
    let frames = frames(|path| Request::GetData { path, watch: false });
    let auth = vec![Id::new("ip", "127.0.0.1")];
    let mut out = Vec::with_capacity(64 << 10);
    let mut next = 0;
    let mut group = c.benchmark_group("request_path");
    group.throughput(Throughput::Elements(1));
    group.bench_function("get_data", |b| {
        b.iter(|| {
            let frame = &frames[next % KEYS];
            next += 1;
            let Ok((header, Request::GetData { path, watch })) = jute::decode_request(frame) else {
                panic!("a getData frame")
            };
            black_box(shard_of(&path, SHARDS));
            let caller = Caller { session: 1, conn: 1, auth: &auth };
            let (result, _) = shard.read(caller, &ReadOp::GetData { path, watch });
            let Ok(ReadResult::Data { data, stat }) = result else { panic!("the key exists") };
            if out.len() > 60 << 10 {
                out.clear();
            }
            let reply = ReplyHeader { xid: header.xid, zxid: stat.mzxid, err: 0 };
            jute::encode_reply(&mut out, &reply, &Response::Data { data, stat });
        })
    });
    group.finish();
}

fn bench_set_data(c: &mut Criterion) {
    let (mut shard, mut zxid) = loaded_shard();
    let frames = frames(|path| Request::SetData { path, data: Some(vec![b'v'; VALUE_BYTES]), version: -1 });
    let auth = vec![Id::new("ip", "127.0.0.1")];
    let mut out = Vec::with_capacity(64 << 10);
    let mut wal = Vec::with_capacity(4 << 20);
    let mut next = 0;
    let mut group = c.benchmark_group("request_path");
    group.throughput(Throughput::Elements(1));
    group.bench_function("set_data", |b| {
        b.iter(|| {
            let frame = &frames[next % KEYS];
            next += 1;
            let Ok((header, Request::SetData { path, data, version })) = jute::decode_request(frame) else {
                panic!("a setData frame")
            };
            black_box(shard_of(&path, SHARDS));
            let command = Command::SetData(SetDataOp { path, data, version, auth: auth.clone() });
            let entry = LogEntry { shard: 0, zxid, time_ms: zxid, command };
            zxid += 1;
            // What the commit loop hands the WAL (its buffer copy stands in for the WAL's).
            if wal.len() > 4 << 20 {
                wal.clear();
            }
            wal.extend_from_slice(&entry.to_bytes());
            let applied = shard.apply(&entry);
            let Ok(engine::request::WriteResult::Stat(stat)) = applied.result else { panic!("setData applies") };
            if out.len() > 60 << 10 {
                out.clear();
            }
            let reply = ReplyHeader { xid: header.xid, zxid: entry.zxid, err: 0 };
            jute::encode_reply(&mut out, &reply, &Response::Stat(stat));
            assert_eq!(opcode::SET_DATA, header.opcode);
        })
    });
    group.finish();
}

criterion_group!(benches, bench_get_data, bench_set_data);
criterion_main!(benches);
