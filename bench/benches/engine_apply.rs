//! Apply throughput of the engine on a shard holding 10k znodes: create, setData, getData.
//! Run: `cargo bench -p bench --bench engine_apply`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use engine::command::{Command, CreateOp, DeleteOp, LogEntry, SetDataOp};
use engine::request::{Caller, ReadOp};
use engine::types::{Acl, CreateMode};
use engine::Shard;
use std::cell::RefCell;
use std::hint::black_box;
use std::time::Duration;

const PRELOADED_NODES: usize = 10_000;
const VALUE_BYTES: usize = 64;

/// A shard with "/bench" and PRELOADED_NODES children "/bench/n<i>"; returns it and the next zxid.
fn preloaded_shard() -> (Shard, i64) {
    let mut shard = Shard::new(0, 1);
    let mut zxid = 1;
    apply(&mut shard, &mut zxid, create("/bench".to_string()));
    for i in 0..PRELOADED_NODES {
        apply(&mut shard, &mut zxid, create(format!("/bench/n{i}")));
    }
    (shard, zxid)
}

fn create(path: String) -> Command {
    Command::Create(CreateOp {
        path,
        data: Some(vec![7; VALUE_BYTES]),
        acl: Acl::open_unsafe(),
        mode: CreateMode::Persistent,
        ttl_ms: 0,
        session: 0,
        auth: vec![],
    })
}

fn apply(shard: &mut Shard, zxid: &mut i64, command: Command) {
    let entry = LogEntry { shard: 0, zxid: *zxid, time_ms: *zxid, command };
    *zxid += 1;
    let applied = shard.apply(&entry);
    assert!(applied.result.is_ok(), "{:?}", applied.result);
}

fn bench_create(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine_apply");
    group.throughput(Throughput::Elements(1));
    let (shard, mut zxid) = preloaded_shard();
    // The setup (not timed) deletes the node the previous iteration created, so the shard
    // stays at 10k nodes however many iterations criterion runs.
    let shard = RefCell::new(shard);
    let mut previous: Option<String> = None;
    group.bench_function("create", |b| {
        b.iter_batched(
            || {
                if let Some(path) = previous.take() {
                    let delete = Command::Delete(DeleteOp { path, version: -1, auth: vec![] });
                    apply(&mut shard.borrow_mut(), &mut zxid, delete);
                }
                let path = format!("/bench/c{zxid}");
                previous = Some(path.clone());
                let entry = LogEntry { shard: 0, zxid, time_ms: zxid, command: create(path) };
                zxid += 1;
                entry
            },
            |entry| black_box(shard.borrow_mut().apply(&entry)),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn bench_set_data(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine_apply");
    group.throughput(Throughput::Elements(1));
    let (mut shard, mut zxid) = preloaded_shard();
    group.bench_function("set_data", |b| {
        b.iter_batched(
            || {
                let path = format!("/bench/n{}", zxid as usize % PRELOADED_NODES);
                let command =
                    Command::SetData(SetDataOp { path, data: Some(vec![9; VALUE_BYTES]), version: -1, auth: vec![] });
                let entry = LogEntry { shard: 0, zxid, time_ms: zxid, command };
                zxid += 1;
                entry
            },
            |entry| black_box(shard.apply(&entry)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn bench_get_data(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine_apply");
    group.throughput(Throughput::Elements(1));
    let (mut shard, _) = preloaded_shard();
    let reads: Vec<ReadOp> =
        (0..PRELOADED_NODES).map(|i| ReadOp::GetData { path: format!("/bench/n{i}"), watch: false }).collect();
    let mut next = 0;
    group.bench_function("get_data", |b| {
        b.iter(|| {
            let op = &reads[next % PRELOADED_NODES];
            next += 1;
            black_box(shard.read(Caller { session: 0, conn: 1, auth: &[] }, op))
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_create, bench_set_data, bench_get_data
}
criterion_main!(benches);
