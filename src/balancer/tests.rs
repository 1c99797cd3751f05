//! Tests of the common front, across algorithms.

use super::*;
use std::collections::VecDeque;

fn targets(weights: &[u32]) -> Vec<(Arc<str>, u32)> {
    weights
        .iter()
        .enumerate()
        .map(|(i, w)| (Arc::from(format!("10.1.0.{i}:80")), *w))
        .collect()
}

fn balancer(algorithm: Algorithm, weights: &[u32]) -> Balancer {
    Balancer::new(
        algorithm,
        &targets(weights),
        consistent_hashing::DEFAULT_SLOTS,
    )
}

fn assert_shares(counts: &[usize], weights: &[u32], tolerance: f64) {
    let total: usize = counts.iter().sum();
    let weight: u32 = weights.iter().sum();
    for (c, w) in counts.iter().zip(weights) {
        let got = *c as f64 / total as f64;
        let want = f64::from(*w) / f64::from(weight);
        assert!((got - want).abs() < tolerance, "{counts:?} for {weights:?}");
    }
}

/// A small deterministic generator for test inputs.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

#[test]
fn names_round_trip() {
    for a in Algorithm::ALL {
        assert_eq!(Algorithm::from_name(a.name()), Some(a));
    }
    assert_eq!(Algorithm::from_name("ROUND-ROBIN"), None);
}

#[test]
fn shared_across_threads_and_guards_outlive_borrows() {
    fn send_sync<T: Send + Sync>() {}
    fn send_static<T: Send + 'static>() {}
    send_sync::<Balancer>();
    send_static::<InFlight>();
    let b = balancer(Algorithm::LeastConnections, &[1, 1]);
    let guard = b.start(1);
    assert_eq!(b.in_flight(1), 1);
    std::thread::spawn(move || guard.finish(Duration::from_millis(1)))
        .join()
        .unwrap();
    assert_eq!(b.in_flight(1), 0);
}

#[test]
fn in_flight_counts_starts_finishes_and_drops() {
    for a in Algorithm::ALL {
        let b = balancer(a, &[1, 1, 1]);
        let g1 = b.start(2);
        let g2 = b.start(2);
        assert_eq!((b.in_flight(0), b.in_flight(2)), (0, 2), "{a:?}");
        g1.finish(Duration::from_millis(3));
        assert_eq!(b.in_flight(2), 1);
        assert_eq!(g2.target(), 2);
        drop(g2);
        assert_eq!(b.in_flight(2), 0);
        // Out of range: counts nothing, fails nothing.
        b.start(7).finish(Duration::ZERO);
        drop(b.start(7));
        assert_eq!(b.in_flight(7), 0);
    }
}

#[test]
fn round_robin_weighted_shares() {
    let weights = [5, 3, 2];
    let b = balancer(Algorithm::RoundRobin, &weights);
    let mut counts = [0; 3];
    for _ in 0..10_000 {
        counts[b.pick(None, |_| true).unwrap()] += 1;
    }
    assert_eq!(counts, [5_000, 3_000, 2_000]);
}

#[test]
fn random_weighted_shares() {
    let weights = [5, 3, 2];
    let b = balancer(Algorithm::Random, &weights);
    let mut counts = [0; 3];
    for _ in 0..10_000 {
        let i = b.pick(None, |_| true).unwrap();
        counts[i] += 1;
        drop(b.start(i));
    }
    assert_shares(&counts, &weights, 0.03);
}

#[test]
fn least_connections_prefers_the_emptier_target() {
    let b = balancer(Algorithm::LeastConnections, &[1, 1, 1]);
    let _busy = [b.start(0), b.start(0), b.start(2)];
    for _ in 0..5 {
        assert_eq!(b.pick(None, |_| true), Some(1));
    }
    let _one = b.start(1);
    // 2, 1, 1 in flight: 1 and 2 tie.
    let p: Vec<usize> = (0..4).map(|_| b.pick(None, |_| true).unwrap()).collect();
    assert!(p.contains(&1) && p.contains(&2) && !p.contains(&0), "{p:?}");
}

#[test]
fn least_connections_alternates_among_equals() {
    let b = balancer(Algorithm::LeastConnections, &[100, 100, 100, 100]);
    let p: Vec<usize> = (0..8)
        .map(|_| {
            let i = b.pick(None, |_| true).unwrap();
            b.start(i).finish(Duration::from_millis(1));
            i
        })
        .collect();
    assert_eq!(p, [0, 1, 2, 3, 0, 1, 2, 3]);
}

#[test]
fn least_connections_shares_follow_weights_under_load() {
    // 100 requests always in flight, each finishing after 100 more have started.
    let weights = [5, 3, 2];
    let b = balancer(Algorithm::LeastConnections, &weights);
    let mut window = VecDeque::new();
    let mut counts = [0; 3];
    for _ in 0..10_000 {
        let i = b.pick(None, |_| true).unwrap();
        counts[i] += 1;
        window.push_back(b.start(i));
        if window.len() > 100 {
            window.pop_front();
        }
    }
    assert_shares(&counts, &weights, 0.02);
    let held = [b.in_flight(0), b.in_flight(1), b.in_flight(2)];
    assert_eq!(held.iter().sum::<u32>(), 100);
    for (h, w) in held.iter().zip(weights) {
        assert!(h.abs_diff(w * 10) <= 1, "{held:?}");
    }
}

#[test]
fn consistent_hashing_is_sticky_and_falls_back_to_round_robin() {
    let b = balancer(Algorithm::ConsistentHashing, &[100, 100, 100]);
    let key = hash_key(b"203.0.113.7");
    let t = b.pick(Some(key), |_| true).unwrap();
    for _ in 0..100 {
        assert_eq!(b.pick(Some(key), |_| true), Some(t));
    }
    // A retry goes elsewhere, and again to the same place.
    let retry = b.pick(Some(key), |i| i != t).unwrap();
    assert_ne!(retry, t);
    assert_eq!(b.pick(Some(key), |i| i != t), Some(retry));
    // No key: round-robin.
    let p: Vec<usize> = (0..6).map(|_| b.pick(None, |_| true).unwrap()).collect();
    assert_eq!(p, [0, 1, 2, 0, 1, 2]);
}

#[test]
fn consistent_hashing_maps_by_identity() {
    let a = targets(&[100, 100, 100, 100]);
    let mut shuffled = a.clone();
    shuffled.rotate_left(1);
    let x = Balancer::new(Algorithm::ConsistentHashing, &a, 2_000);
    let y = Balancer::new(Algorithm::ConsistentHashing, &shuffled, 2_000);
    for k in 0..1_000u32 {
        let key = hash_key(&k.to_le_bytes());
        let (i, j) = (x.pick(Some(key), |_| true), y.pick(Some(key), |_| true));
        assert_eq!(a[i.unwrap()].0, shuffled[j.unwrap()].0);
    }
}

/// A simulated run: each pick starts a request that completes `latency[i]` steps later with that
/// many milliseconds as its sample. Returns picks per target after `warm_up` steps.
fn simulate_latency(b: &Balancer, latency: &[u64], warm_up: u64, steps: u64) -> Vec<usize> {
    let mut pending: Vec<(u64, InFlight)> = Vec::new();
    let mut counts = vec![0; latency.len()];
    for step in 0..warm_up + steps {
        let (due, rest): (Vec<_>, Vec<_>) = pending.drain(..).partition(|(d, _)| *d <= step);
        pending = rest;
        for (_, g) in due {
            let ms = latency[g.target()];
            g.finish(Duration::from_millis(ms));
        }
        let i = b.pick(None, |_| true).unwrap();
        if step >= warm_up {
            counts[i] += 1;
        }
        pending.push((step + latency[i], b.start(i)));
    }
    counts
}

#[test]
fn latency_moves_traffic_away_from_a_slow_target() {
    let b = balancer(Algorithm::Latency, &[100; 5]);
    let counts = simulate_latency(&b, &[2, 2, 2, 2, 20], 1_000, 10_000);
    let slow = counts[4] as f64 / 10_000.0;
    assert!(slow < 0.2, "{counts:?}");
    assert!(b.latency_estimate(4).unwrap() >= Duration::from_millis(19));
    // The fast ones share the rest evenly.
    for c in &counts[..4] {
        assert!((*c as f64 / 10_000.0 - 0.25).abs() < 0.06, "{counts:?}");
    }
}

#[test]
fn latency_tries_targets_without_samples() {
    // Four targets known to be fast, one new: the new one is picked without waiting for decay.
    let b = balancer(Algorithm::Latency, &[100; 5]);
    for i in 0..4 {
        b.start(i).finish(Duration::from_millis(1));
    }
    let mut tried = false;
    for _ in 0..200 {
        let i = b.pick(None, |_| true).unwrap();
        tried |= i == 4;
        drop(b.start(i));
        b.start(i).finish(Duration::from_millis(1));
    }
    assert!(tried);
    assert!(b.latency_estimate(4).is_some());
}

#[test]
fn latency_weights_bias_candidates() {
    // Equal latencies: shares follow the weights.
    let weights = [6, 3, 1];
    let b = balancer(Algorithm::Latency, &weights);
    let counts = simulate_latency(&b, &[1, 1, 1], 100, 10_000);
    let share: Vec<f64> = counts.iter().map(|c| *c as f64 / 10_000.0).collect();
    assert!(share[0] > share[1] && share[1] > share[2], "{counts:?}");
}

#[test]
fn a_dropped_guard_is_a_penalty_for_latency() {
    let b = balancer(Algorithm::Latency, &[1, 1]);
    b.start(0).finish(Duration::from_millis(10));
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    assert!((ms(b.latency_estimate(0).unwrap()) - 10.0).abs() < 0.05);
    drop(b.start(0));
    assert!((ms(b.latency_estimate(0).unwrap()) - 20.0).abs() < 0.1);
    assert_eq!(b.in_flight(0), 0);
    // Other algorithms keep no latency.
    let rr = balancer(Algorithm::RoundRobin, &[1]);
    rr.start(0).finish(Duration::from_millis(10));
    assert_eq!(rr.latency_estimate(0), None);
}

#[test]
fn never_an_unusable_target_and_none_only_when_nothing_is_usable() {
    let mut rng = Lcg(7);
    for a in Algorithm::ALL {
        for round in 0..300 {
            let n = 1 + (rng.next() % 12) as usize;
            let weights: Vec<u32> = (0..n)
                .map(|_| match rng.next() % 4 {
                    0 => 0,
                    1 => 1,
                    _ => (rng.next() % 1_000) as u32,
                })
                .collect();
            let b = balancer(a, &weights);
            // Some load and latency history, so that every branch is exercised.
            let _held: Vec<InFlight> = (0..rng.next() % 8)
                .map(|_| b.start((rng.next() % n as u64) as usize))
                .collect();
            for i in 0..n {
                if rng.next().is_multiple_of(2) {
                    b.start(i)
                        .finish(Duration::from_micros(rng.next() % 50_000));
                }
            }
            for _ in 0..20 {
                let mask = rng.next();
                let usable = |i: usize| mask & (1 << i) != 0;
                let any = (0..n).any(|i| weights[i] > 0 && usable(i));
                let hash =
                    (!rng.next().is_multiple_of(3)).then(|| hash_key(&rng.next().to_le_bytes()));
                match b.pick(hash, usable) {
                    Some(i) => {
                        assert!(usable(i), "{a:?} round {round}: {i} is not usable");
                        assert!(weights[i] > 0, "{a:?} round {round}: {i} has weight 0");
                    }
                    None => assert!(!any, "{a:?} round {round}: {weights:?} mask {mask:b}"),
                }
            }
        }
    }
}

#[test]
fn empty_balancers_pick_nothing() {
    for a in Algorithm::ALL {
        let none: [(Arc<str>, u32); 0] = [];
        let b = Balancer::new(a, &none, 10_000);
        assert!(b.is_empty());
        assert_eq!(b.pick(Some(1), |_| true), None, "{a:?}");
        assert_eq!(b.pick(None, |_| true), None, "{a:?}");
        let b = balancer(a, &[0, 0]);
        assert_eq!(b.len(), 2);
        assert_eq!(b.pick(Some(1), |_| true), None, "{a:?}");
    }
}
