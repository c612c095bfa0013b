//! Criterion benchmarks: each case beside its raw baseline.
//!
//! `cargo bench -p mem-isolate-benches --bench isolation`. For ratios
//! measured A/B in one process, use
//! `cargo bench -p mem-isolate-benches --bench ratios`.

mod support;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use mem_isolate::execute_in_isolated_process;
use std::hint::black_box;
use support::{Row, ballast, bare_fork_wait, bytes, rows, shared_memory_bytes};

fn small(c: &mut Criterion) {
    let mut g = c.benchmark_group("small");
    g.bench_function("direct call", |b| {
        b.iter(|| black_box(black_box(21u64) * 2))
    });
    g.bench_function("bare fork+waitpid", |b| b.iter(bare_fork_wait));
    g.bench_function("mem-isolate", |b| {
        b.iter(|| execute_in_isolated_process(|| black_box(21u64) * 2).unwrap());
    });
    g.finish();
}

fn small_with_ballast(c: &mut Criterion) {
    let held = ballast(1 << 30);
    let mut g = c.benchmark_group("small, parent holding 1 GiB");
    g.sample_size(20);
    g.bench_function("bare fork+waitpid", |b| b.iter(bare_fork_wait));
    g.bench_function("mem-isolate", |b| {
        b.iter(|| execute_in_isolated_process(|| black_box(21u64) * 2).unwrap());
    });
    g.finish();
    drop(held);
}

fn byte_vectors(c: &mut Criterion) {
    let mut g = c.benchmark_group("Vec<u8>");
    g.sample_size(20);
    for mib in [1usize, 64] {
        let len = mib << 20;
        g.bench_with_input(BenchmarkId::new("shared memory", mib), &len, |b, &len| {
            b.iter(|| shared_memory_bytes(len));
        });
        g.bench_with_input(BenchmarkId::new("mem-isolate", mib), &len, |b, &len| {
            b.iter(|| execute_in_isolated_process(|| bytes(len)).unwrap());
        });
    }
    g.finish();
}

fn million_rows(c: &mut Criterion) {
    let mut g = c.benchmark_group("1M rows");
    g.sample_size(10);
    g.bench_function("direct", |b| b.iter(|| rows(1_000_000)));
    g.bench_function("mem-isolate", |b| {
        b.iter(|| execute_in_isolated_process(|| rows(1_000_000)).unwrap());
    });
    g.finish();
    let _: Option<Row> = None;
}

criterion_group!(
    benches,
    small,
    small_with_ballast,
    byte_vectors,
    million_rows
);
criterion_main!(benches);
