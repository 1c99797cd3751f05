//! Balancer benchmarks.
//!
//! Contract: for each algorithm over 100 targets (weights 1..=100, all usable), one `pick` plus
//! the `start` and finish of the request on the picked target, as the request path does them;
//! plus `pick` alone, and consistent hashing's pick with the first owner unusable (a retry walks
//! the ring). Hash keys come from a rotation of 1,024 precomputed keys so that the ring lookup
//! is not flattered by one hot key.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gatehouse::balancer::{Algorithm, Balancer, hash_key};

const TARGETS: u32 = 100;
const KEYS: usize = 1_024;

fn balancer(algorithm: Algorithm) -> Balancer {
    let targets: Vec<(Arc<str>, u32)> = (1..=TARGETS)
        .map(|i| (Arc::from(format!("10.0.{}.{}:8080", i / 250, i % 250)), i))
        .collect();
    Balancer::new(algorithm, &targets, 10_000)
}

fn keys() -> Vec<u64> {
    (0..KEYS)
        .map(|i| hash_key(format!("198.51.100.{i}").as_bytes()))
        .collect()
}

fn bench_pick_start_finish(c: &mut Criterion) {
    let keys = keys();
    let mut g = c.benchmark_group("pick_start_finish");
    for algorithm in Algorithm::ALL {
        let b = balancer(algorithm);
        // Some samples first, so that latency compares estimates rather than in-flight only.
        for i in 0..TARGETS as usize {
            b.start(i).finish(Duration::from_micros(500 + i as u64));
        }
        g.bench_function(BenchmarkId::from_parameter(algorithm.name()), |bench| {
            let mut k = 0;
            bench.iter(|| {
                k = (k + 1) % KEYS;
                let Some(i) = b.pick(black_box(Some(keys[k])), |_| true) else {
                    panic!("no target");
                };
                b.start(i).finish(black_box(Duration::from_micros(700)));
            });
        });
    }
    g.finish();
}

fn bench_pick(c: &mut Criterion) {
    let keys = keys();
    let mut g = c.benchmark_group("pick");
    for algorithm in Algorithm::ALL {
        let b = balancer(algorithm);
        for i in 0..TARGETS as usize {
            b.start(i).finish(Duration::from_micros(500 + i as u64));
        }
        g.bench_function(BenchmarkId::from_parameter(algorithm.name()), |bench| {
            let mut k = 0;
            bench.iter(|| {
                k = (k + 1) % KEYS;
                black_box(b.pick(black_box(Some(keys[k])), |_| true))
            });
        });
    }
    g.finish();
}

fn bench_hash_retry(c: &mut Criterion) {
    let keys = keys();
    let b = balancer(Algorithm::ConsistentHashing);
    let first: Vec<usize> = keys
        .iter()
        .map(|k| b.pick(Some(*k), |_| true).unwrap_or(0))
        .collect();
    c.bench_function("consistent_hashing_retry", |bench| {
        let mut k = 0;
        bench.iter(|| {
            k = (k + 1) % KEYS;
            let tried = first[k];
            black_box(b.pick(black_box(Some(keys[k])), |i| i != tried))
        });
    });
}

fn bench_hash_key(c: &mut Criterion) {
    c.bench_function("hash_key_15_bytes", |bench| {
        bench.iter(|| black_box(hash_key(black_box(b"198.51.100.200:"))))
    });
}

criterion_group!(
    benches,
    bench_pick_start_finish,
    bench_pick,
    bench_hash_retry,
    bench_hash_key
);
criterion_main!(benches);
