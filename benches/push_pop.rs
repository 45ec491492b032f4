//! Criterion benchmarks of the single-threaded hot path: one `push` followed by one
//! `pop_into` on a ring file, for a few payload sizes, and the same entries 32 at a
//! time through `push_batch` and `pop_batch`. Single-threaded on purpose: it
//! measures the cost of the operations themselves (checksums, copies, atomics) without
//! cross-core traffic; `bench-compare/` measures threads and processes against peers.
//!
//! `cargo bench --bench push_pop`; `cargo test --benches` runs each once as a smoke test.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mmring::{Batch, OnFull, Options};
use std::hint::black_box;

fn push_pop(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut group = c.benchmark_group("push+pop_into");
    for size in [0usize, 64, 1024, 65536] {
        let ring = Options::new()
            .size((4 << 20) + 4096)
            .on_full(OnFull::Reject)
            .create(dir.path().join(format!("bench-{size}.ring")))
            .expect("create the ring");
        let data = vec![0x5a_u8; size];
        let mut buf = Vec::with_capacity(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter(|| {
                ring.push(black_box(&data)).expect("push");
                ring.pop_into(&mut buf).expect("pop").expect("an entry");
                black_box(&buf);
            })
        });
    }
    group.finish();
}

/// Entries per batch in `batch_push_pop`.
const BATCH: usize = 32;

fn batch_push_pop(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut group = c.benchmark_group("push_batch+pop_batch of 32");
    for size in [0usize, 64, 1024] {
        let ring = Options::new()
            .size((4 << 20) + 4096)
            .on_full(OnFull::Reject)
            .create(dir.path().join(format!("batch-{size}.ring")))
            .expect("create the ring");
        let entries = vec![vec![0x5a_u8; size]; BATCH];
        let mut batch = Batch::with_capacity(BATCH, BATCH * size);
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter(|| {
                let pushed = ring.push_batch(black_box(&entries)).expect("push_batch");
                assert_eq!(pushed, BATCH);
                let popped = ring.pop_batch(&mut batch, BATCH).expect("pop_batch");
                assert_eq!(popped, BATCH);
                black_box(&batch);
            })
        });
    }
    group.finish();
}

fn pop_empty(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let ring = Options::new()
        .create(dir.path().join("empty.ring"))
        .expect("create the ring");
    let mut buf = Vec::new();
    c.bench_function("pop_into on an empty ring", |b| {
        b.iter(|| black_box(ring.pop_into(&mut buf).expect("pop")))
    });
}

criterion_group!(benches, push_pop, batch_push_pop, pop_empty);
criterion_main!(benches);
