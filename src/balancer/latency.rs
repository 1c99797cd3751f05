//! Latency-aware picking: power of two choices over a peak-EWMA of response times (Finagle's and
//! Linkerd's "peak EWMA").
//!
//! Each target keeps an estimate of its latency. A slower sample replaces the estimate at once
//! (the peak); a faster one pulls it down as an exponentially weighted moving average over time
//! with time constant [`DECAY`], so one fast response does not erase a slow streak. When read,
//! the estimate also decays toward 0 with the time since its last sample, so a target shunned
//! for being slow is tried again after a while instead of never.
//!
//! A pick draws two distinct targets at random, in proportion to their weights, and takes the
//! cheaper by `estimate * (in_flight + 1)`: latency, and load that will become latency. A target
//! without a sample yet is neutral: against a sampled one it is compared by in-flight requests
//! alone (as if it had the other's estimate), so new targets get tried at once but are not
//! flooded while their first responses are pending.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::random::WeightedRandom;

/// Time constant of the estimate's decay toward faster samples and, when idle, toward 0.
pub const DECAY: Duration = Duration::from_secs(10);
const DECAY_MS: f64 = DECAY.as_millis() as f64;

/// Smallest sample (ns): an estimate of 0 would cancel the in-flight term of the cost.
const MIN_SAMPLE_NS: f64 = 1_000.0;

/// The packed state of a target that has no sample yet (its estimate half is a NaN, never
/// stored otherwise).
const UNSAMPLED: u64 = u64::MAX;

/// A peak-EWMA latency estimate in one atomic word: the estimate in nanoseconds as an `f32`
/// (high half) and the time of the last sample in milliseconds (low half, wrapping every ~49
/// days, which only matters for a target idle that long and then only for its decay).
#[derive(Debug)]
pub struct PeakEwma(AtomicU64);

impl Default for PeakEwma {
    fn default() -> Self {
        PeakEwma(AtomicU64::new(UNSAMPLED))
    }
}

fn pack(estimate_ns: f64, at_ms: u32) -> u64 {
    (u64::from((estimate_ns as f32).to_bits()) << 32) | u64::from(at_ms)
}

fn unpack(v: u64) -> (f64, u32) {
    (f64::from(f32::from_bits((v >> 32) as u32)), v as u32)
}

/// Weight of the old estimate after `ms` milliseconds.
fn decay(since: u32, now: u32) -> f64 {
    let ms = now.wrapping_sub(since);
    // A stamp "ahead" of `now` (another thread read the clock later) means no time has passed.
    if ms == 0 || ms > i32::MAX as u32 {
        1.0
    } else {
        (-f64::from(ms) / DECAY_MS).exp()
    }
}

/// Largest sample or estimate kept (60 s): beyond it, a target is simply the slowest.
pub const MAX_SAMPLE_NS: f64 = 60e9;

impl PeakEwma {
    /// The estimate (ns) at time `now_ms`, decayed since the last sample; `None` before any.
    pub fn estimate(&self, now_ms: u32) -> Option<f64> {
        let v = self.0.load(Ordering::Relaxed);
        (v != UNSAMPLED).then(|| {
            let (estimate, at) = unpack(v);
            estimate * decay(at, now_ms)
        })
    }

    /// Adds a sample (ns) taken at `now_ms`.
    pub fn record(&self, now_ms: u32, sample_ns: f64) {
        // Bounded (repeated failure penalties double the estimate each time) and never NaN
        // (`clamp` would keep a NaN).
        let sample = if sample_ns.is_nan() {
            MIN_SAMPLE_NS
        } else {
            sample_ns.clamp(MIN_SAMPLE_NS, MAX_SAMPLE_NS)
        };
        // A compare-and-swap loop: lock-free, and retried only when another sample for the same
        // target landed in between.
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                let next = if v == UNSAMPLED {
                    sample
                } else {
                    let (estimate, at) = unpack(v);
                    if sample > estimate {
                        sample
                    } else {
                        let w = decay(at, now_ms);
                        estimate * w + sample * (1.0 - w)
                    }
                };
                Some(pack(next, now_ms))
            });
    }
}

/// What a pick knows of a target's state.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub in_flight: u32,
    /// Peak-EWMA latency (ns), `None` before the first sample.
    pub estimate: Option<f64>,
}

/// Whether `x` is strictly cheaper than `y`.
fn cheaper(x: Load, y: Load) -> bool {
    match (x.estimate, y.estimate) {
        (Some(ex), Some(ey)) => ex * f64::from(x.in_flight + 1) < ey * f64::from(y.in_flight + 1),
        // Neutral: an unsampled target is taken to have its rival's estimate.
        _ => x.in_flight < y.in_flight,
    }
}

/// Power of two choices over weighted candidates.
#[derive(Debug)]
pub struct Latency {
    candidates: WeightedRandom,
}

impl Latency {
    /// A picker over `weights.len()` targets; weights of 0 are never picked.
    pub fn new(weights: &[u32]) -> Self {
        Latency {
            candidates: WeightedRandom::new(weights),
        }
    }

    /// The cheaper of two distinct weighted random candidates. When `usable` rejects one, the
    /// other; when it rejects both, the cheapest usable target of all. `None` only when no target
    /// with a weight above 0 is usable.
    pub fn pick(
        &self,
        load: impl Fn(usize) -> Load,
        usable: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let a = self.candidates.draw()?;
        let Some(b) = self.candidates.draw_other(a) else {
            // `a` is the only target with a weight.
            return usable(a).then_some(a);
        };
        match (usable(a), usable(b)) {
            (true, true) => Some(if cheaper(load(b), load(a)) { b } else { a }),
            (true, false) => Some(a),
            (false, true) => Some(b),
            (false, false) => self.cheapest(load, usable),
        }
    }

    /// The cheapest usable target of all: bounded, and only when both candidates were rejected.
    fn cheapest(
        &self,
        load: impl Fn(usize) -> Load,
        usable: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let mut best: Option<(usize, Load)> = None;
        for i in 0..self.len() {
            if self.candidates.weight(i) == 0 || !usable(i) {
                continue;
            }
            let l = load(i);
            if best.is_none_or(|(_, b)| cheaper(l, b)) {
                best = Some((i, l));
            }
        }
        best.map(|(i, _)| i)
    }

    fn len(&self) -> usize {
        self.candidates.len()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn estimates_stay_finite_under_endless_penalties() {
        let e = PeakEwma::default();
        for _ in 0..300 {
            let now = e.estimate(0).unwrap_or(1e6);
            e.record(0, 2.0 * now);
        }
        let v = e.estimate(0).unwrap();
        assert!(v.is_finite() && v <= MAX_SAMPLE_NS * 1.001, "{v}");
        e.record(0, f64::NAN);
        e.record(0, f64::INFINITY);
        assert!(e.estimate(0).unwrap().is_finite());
    }

    use super::*;

    const MS: f64 = 1e6;

    #[test]
    fn peak_is_taken_at_once_and_decays_over_time() {
        let e = PeakEwma::default();
        assert_eq!(e.estimate(0), None);
        e.record(0, 10.0 * MS);
        assert_eq!(e.estimate(0), Some(10.0 * MS));
        // A slow sample: the estimate jumps to it, without averaging.
        e.record(5, 100.0 * MS);
        assert_eq!(e.estimate(5), Some(100.0 * MS));
        // Fast samples pull it down with the time constant: one time constant later, e^-1 of
        // the gap remains.
        e.record(10_005, 10.0 * MS);
        let got = e.estimate(10_005).unwrap() / MS;
        let want = 10.0 + 90.0 * (-1.0f64).exp();
        assert!((got - want).abs() < 0.01, "{got} vs {want}");
        // A fast sample right after a slow one barely moves it.
        e.record(20_000, 500.0 * MS);
        e.record(20_001, 1.0 * MS);
        assert!(e.estimate(20_001).unwrap() > 499.0 * MS);
        // Idle, it decays toward 0 so that the target gets tried again.
        let idle = e.estimate(20_001 + 60_000).unwrap();
        assert!(idle < 2.0 * MS, "{idle}");
    }

    #[test]
    fn stamps_from_a_later_clock_read_do_not_decay() {
        let e = PeakEwma::default();
        e.record(1_000, 10.0 * MS);
        assert_eq!(e.estimate(999), Some(10.0 * MS));
        e.record(u32::MAX, 10.0 * MS);
        // Wrapped clock: 2 ms later.
        let got = e.estimate(1).unwrap();
        assert!(got < 10.0 * MS && got > 9.99 * MS);
    }

    #[test]
    fn costs() {
        let l = |in_flight, estimate| Load {
            in_flight,
            estimate,
        };
        assert!(cheaper(l(0, Some(5.0)), l(0, Some(6.0))));
        // 3 in flight at 2 ms (8) costs more than 0 at 5 ms (5).
        assert!(cheaper(l(0, Some(5.0)), l(3, Some(2.0))));
        // Unsampled against sampled: in-flight only, both ways.
        assert!(cheaper(l(0, None), l(1, Some(1.0))));
        assert!(!cheaper(l(1, None), l(0, Some(100.0))));
        assert!(!cheaper(l(0, None), l(0, Some(1.0))));
    }
}
