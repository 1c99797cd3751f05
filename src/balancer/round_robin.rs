//! Smooth weighted round-robin, as nginx's: over a cycle each target is picked in proportion to
//! its weight, and picks are interleaved (weights 5, 1, 1 give `a a b a c a a`, never five `a`s in
//! a row).
//!
//! The cycle is computed once, when the configuration is compiled, so a pick is one atomic
//! increment and an index: no lock, no per-pick arithmetic over the targets. Weights are reduced
//! by their greatest common divisor; a cycle that would still be longer than [`MAX_CYCLE`] is
//! built from weights scaled down to fit (each target keeps at least one slot), which keeps the
//! shares within a fraction of a percent of the configured ones.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Longest precomputed cycle (slots), unless there are more targets than this.
pub const MAX_CYCLE: u64 = 65_536;

/// Slots walked past an unusable pick before falling back to a pass over the targets: the
/// cycle keeps the weighted order for a retry, the pass bounds the work when few are usable.
const WALK: usize = 32;

/// A lock-free smooth weighted round-robin picker over target indices.
#[derive(Debug)]
pub struct WeightedRoundRobin {
    cycle: Box<[u32]>,
    /// Targets with a weight above 0, in index order.
    live: Box<[u32]>,
    next: AtomicUsize,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl WeightedRoundRobin {
    /// A picker over `weights.len()` targets; weights of 0 are never picked.
    pub fn new(weights: &[u32]) -> Self {
        WeightedRoundRobin {
            cycle: cycle(weights).into_boxed_slice(),
            live: (0..weights.len() as u32)
                .filter(|&i| weights[i as usize] > 0)
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// The next target index, or `None` when no target has a weight above 0.
    pub fn pick(&self) -> Option<usize> {
        self.pick_usable(|_| true)
    }

    /// The next usable target: the cycle's next slot, or when `usable` rejects it, a walk
    /// along the cycle from a point chosen by the draw (then every target once). `None` only
    /// when no target with a weight above 0 is usable.
    ///
    /// One counter step per pick, whatever happens: a request that retries does not shift the
    /// cycle for the others (which could lock every first attempt onto a failing target). The
    /// walk starts at a scrambled position rather than the next slot, so an unusable target's
    /// share spreads over all the others in proportion to their weights instead of all going
    /// to its neighbour in the cycle.
    pub fn pick_usable(&self, usable: impl Fn(usize) -> bool) -> Option<usize> {
        self.pick_from(self.next.fetch_add(1, Ordering::Relaxed), usable)
    }

    /// Like [`pick_usable`](Self::pick_usable) for a request's later attempt: the cycle does
    /// not move (a retry must not shift the first picks of other requests), and the scrambled
    /// walk moves the attempt off the slot its first pick had.
    pub fn repick_usable(&self, usable: impl Fn(usize) -> bool) -> Option<usize> {
        self.pick_from(self.next.load(Ordering::Relaxed), usable)
    }

    fn pick_from(&self, drawn: usize, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.cycle.len();
        if len == 0 {
            return None;
        }
        let start = drawn % len;
        let first = self.cycle[start] as usize;
        if usable(first) {
            return Some(first);
        }
        // One of the other slots, chosen by Fibonacci hashing of the draw (not of the slot,
        // which repeats every cycle): evenly over the cycle, so in proportion to the weights.
        let spread = ((drawn as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize;
        let scrambled = (start + 1 + spread % (len - 1).max(1)) % len;
        let walked = len.min(WALK);
        for k in 0..walked {
            let t = self.cycle[(scrambled + k) % len] as usize;
            if usable(t) {
                return Some(t);
            }
        }
        let from = start % self.live.len();
        let (tail, head) = self.live.split_at(from);
        head.iter()
            .chain(tail)
            .map(|&t| t as usize)
            .find(|&t| usable(t))
    }

    /// Length of one full cycle (slots).
    pub fn cycle_len(&self) -> usize {
        self.cycle.len()
    }
}

fn cycle(weights: &[u32]) -> Vec<u32> {
    let live: Vec<(u32, u64)> = weights
        .iter()
        .enumerate()
        .filter(|(_, w)| **w > 0)
        .map(|(i, w)| (i as u32, u64::from(*w)))
        .collect();
    if live.is_empty() {
        return Vec::new();
    }
    if live.iter().all(|(_, w)| *w == live[0].1) {
        return live.iter().map(|(i, _)| *i).collect();
    }
    let g = live.iter().fold(0, |g, (_, w)| gcd(g, *w));
    let mut reduced: Vec<(u32, u64)> = live.iter().map(|(i, w)| (*i, w / g)).collect();
    let total: u64 = reduced.iter().map(|(_, w)| w).sum();
    let limit = MAX_CYCLE.max(reduced.len() as u64);
    if total > limit {
        for (_, w) in reduced.iter_mut() {
            *w = (*w * limit / total).max(1);
        }
    }
    let total: u64 = reduced.iter().map(|(_, w)| w).sum();
    // nginx's smooth weighted round-robin, run once over a whole cycle.
    let mut current = vec![0i64; reduced.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (k, (_, w)) in reduced.iter().enumerate() {
            current[k] += *w as i64;
            if current[k] > current[best] {
                best = k;
            }
        }
        current[best] -= total as i64;
        out.push(reduced[best].0);
    }
    out
}

#[cfg(test)]
mod tests {
    /// Target 0 unusable: its share spreads evenly over the others, and a retry's pick (which
    /// excludes the target it tried) does not shift the cycle for the next request.
    #[test]
    fn an_unusable_target_share_spreads_and_retries_do_not_phase_lock() {
        let rr = WeightedRoundRobin::new(&[1, 1, 1]);
        let mut counts = [0usize; 3];
        for _ in 0..3000 {
            if let Some(t) = rr.pick_usable(|t| t != 0) {
                counts[t] += 1;
            }
        }
        assert_eq!(counts[0], 0);
        assert!(
            (counts[1] as i64 - counts[2] as i64).abs() < 300,
            "{counts:?}"
        );

        // Every first pick that lands on `bad` (target 0) is followed by a retry excluding it.
        let rr = WeightedRoundRobin::new(&[1, 1]);
        let mut first_on_bad = 0;
        for _ in 0..100 {
            let first = rr.pick_usable(|_| true);
            if first == Some(0) {
                first_on_bad += 1;
                assert_eq!(rr.repick_usable(|t| t != 0), Some(1));
            }
        }
        assert!(
            (40..=60).contains(&first_on_bad),
            "{first_on_bad} of 100 first picks"
        );
    }

    use super::*;

    fn picks(rr: &WeightedRoundRobin, n: usize) -> Vec<usize> {
        (0..n).map(|_| rr.pick().unwrap()).collect()
    }

    #[test]
    fn smooth_and_proportional() {
        let rr = WeightedRoundRobin::new(&[5, 1, 1]);
        assert_eq!(picks(&rr, 7), [0, 0, 1, 0, 2, 0, 0]);
        let rr = WeightedRoundRobin::new(&[100, 0, 300]);
        let p = picks(&rr, 4000);
        assert_eq!(p.iter().filter(|&&t| t == 0).count(), 1000);
        assert_eq!(p.iter().filter(|&&t| t == 2).count(), 3000);
        assert!(!p.contains(&1), "weight 0 is never picked");
        // Smooth: the heavier target never runs more than 3 in a row at 3:1.
        let longest = p.windows(4).filter(|w| w.iter().all(|&t| t == 2)).count();
        assert_eq!(longest, 0);
    }

    #[test]
    fn equal_weights_rotate_and_empty_sets_pick_nothing() {
        let rr = WeightedRoundRobin::new(&[100, 100, 100]);
        assert_eq!(picks(&rr, 6), [0, 1, 2, 0, 1, 2]);
        assert_eq!(WeightedRoundRobin::new(&[0, 0]).pick(), None);
        assert_eq!(WeightedRoundRobin::new(&[]).pick(), None);
    }

    #[test]
    fn unusable_picks_move_on() {
        let rr = WeightedRoundRobin::new(&[5, 1, 1]);
        let p: Vec<usize> = (0..7)
            .map(|_| rr.pick_usable(|t| t != 0).unwrap())
            .collect();
        assert!(!p.contains(&0));
        assert!(p.contains(&1) && p.contains(&2));
        assert_eq!(rr.pick_usable(|_| false), None);
        // A long cycle whose only usable target is rare: the walk gives up, the pass finds it.
        let mut weights = vec![1_000; 50];
        weights.push(1);
        let rr = WeightedRoundRobin::new(&weights);
        for _ in 0..100 {
            assert_eq!(rr.pick_usable(|t| t == 50), Some(50));
        }
        assert_eq!(rr.pick_usable(|_| false), None);
    }

    #[test]
    fn long_cycles_are_scaled_but_keep_shares() {
        let weights: Vec<u32> = (0..100).map(|i| 65_535 - i * 7).collect();
        let rr = WeightedRoundRobin::new(&weights);
        assert!(rr.cycle_len() as u64 <= MAX_CYCLE + 100);
        let total: f64 = weights.iter().map(|w| f64::from(*w)).sum();
        let n = rr.cycle_len();
        let p = picks(&rr, n);
        for (i, w) in weights.iter().enumerate() {
            let share = p.iter().filter(|&&t| t == i).count() as f64 / n as f64;
            let want = f64::from(*w) / total;
            assert!(
                (share - want).abs() < 0.001,
                "target {i}: {share} vs {want}"
            );
        }
    }
}
