//! Jute codec micro-benchmarks: the per-request work the server does on its hot path —
//! decoding a getData and a setData request, and encoding a getData reply (100-byte value
//! and a Stat) into a reused output buffer.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::types::Stat;
use net::jute::{self, ReplyHeader, Request, RequestHeader, Response};

/// A request frame body (without the length prefix), as the server sees it after splitting.
fn request_body(req: &Request) -> Vec<u8> {
    let mut frame = Vec::new();
    jute::encode_request(&mut frame, &RequestHeader { xid: 42, opcode: req.opcode() }, req);
    frame.split_off(4)
}

fn bench_decode(c: &mut Criterion) {
    let get = request_body(&Request::GetData { path: "/app/config/node-0000000042".into(), watch: true });
    let set = request_body(&Request::SetData {
        path: "/app/config/node-0000000042".into(),
        data: Some(vec![7; 100]),
        version: -1,
    });
    let mut group = c.benchmark_group("jute_decode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("get_data_request", |b| b.iter(|| jute::decode_request(black_box(&get))));
    group.bench_function("set_data_request_100b", |b| b.iter(|| jute::decode_request(black_box(&set))));
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let stat = Stat { czxid: 0x1_0000_0001, mzxid: 0x1_0000_0042, data_length: 100, ..Stat::default() };
    let reply = Response::Data { data: Some(vec![7; 100]), stat };
    let header = ReplyHeader { xid: 42, zxid: 0x1_0000_0042, err: 0 };
    let mut out = Vec::with_capacity(4096);
    let mut group = c.benchmark_group("jute_encode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("get_data_reply_100b", |b| {
        b.iter(|| {
            out.clear();
            jute::encode_reply(&mut out, black_box(&header), black_box(&reply));
            black_box(out.len())
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_decode, bench_encode
}
criterion_main!(benches);
