//! Weighted random: each pick lands on a target with probability weight / total weight.
//!
//! Cumulative weights and a binary search: O(log n) per pick, no lock (the random source is
//! per thread, see `rng`). Also the weighted candidate draw for the `latency` picker.

use super::rng;

/// Draws targets at random in proportion to their weights.
#[derive(Debug)]
pub struct WeightedRandom {
    /// `cumulative[i]` = sum of the weights of targets `0..=i`.
    cumulative: Box<[u64]>,
}

/// Draws tried before an exact pass over the usable targets: a retry that excludes one target
/// of many almost always succeeds at the second draw.
const REJECTION_DRAWS: usize = 4;

impl WeightedRandom {
    /// A picker over `weights.len()` targets; weights of 0 are never picked.
    pub fn new(weights: &[u32]) -> Self {
        let mut sum = 0u64;
        let cumulative = weights
            .iter()
            .map(|w| {
                sum += u64::from(*w);
                sum
            })
            .collect();
        WeightedRandom { cumulative }
    }

    /// Sum of all weights.
    pub fn total(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// Number of targets, with or without weight.
    pub fn len(&self) -> usize {
        self.cumulative.len()
    }

    /// Whether there are no targets at all.
    pub fn is_empty(&self) -> bool {
        self.cumulative.is_empty()
    }

    /// Weight of target `i` (0 when out of range).
    pub fn weight(&self, i: usize) -> u64 {
        let below = if i == 0 {
            0
        } else {
            self.cumulative.get(i - 1).copied().unwrap_or(0)
        };
        self.cumulative
            .get(i)
            .map_or(0, |c| c.saturating_sub(below))
    }

    /// The target owning point `r` (< total) of the weight line; zero-weight targets own no
    /// point, so they are never returned.
    fn at(&self, r: u64) -> usize {
        self.cumulative.partition_point(|&c| c <= r)
    }

    /// One weighted draw, ignoring usability; `None` when every weight is 0.
    pub fn draw(&self) -> Option<usize> {
        let total = self.total();
        (total > 0).then(|| self.at(rng::below(total)))
    }

    /// One weighted draw among the targets other than `not`; `None` when `not` holds all the
    /// weight.
    pub fn draw_other(&self, not: usize) -> Option<usize> {
        let skip = self.weight(not);
        let rest = self.total() - skip;
        if rest == 0 {
            return None;
        }
        // Draw on the line with `not`'s segment cut out, then step over that segment.
        let start = self.cumulative.get(not).map_or(0, |c| c - skip);
        let r = rng::below(rest);
        Some(self.at(if r >= start { r + skip } else { r }))
    }

    /// A weighted pick among the usable targets; `None` when none is usable.
    pub fn pick(&self, usable: impl Fn(usize) -> bool) -> Option<usize> {
        for _ in 0..REJECTION_DRAWS {
            let i = self.draw()?;
            if usable(i) {
                return Some(i);
            }
        }
        self.pick_exact(usable)
    }

    /// One pass over all targets keeping one at random with probability weight / weight seen so
    /// far (a weighted reservoir of one): exact shares among the usable ones, bounded work.
    fn pick_exact(&self, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let mut seen = 0u64;
        let mut chosen = None;
        for i in 0..self.cumulative.len() {
            let w = self.weight(i);
            if w == 0 || !usable(i) {
                continue;
            }
            seen += w;
            if rng::below(seen) < w {
                chosen = Some(i);
            }
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(weights: &[u32], n: usize, pick: impl Fn() -> Option<usize>) -> Vec<f64> {
        let mut counts = vec![0usize; weights.len()];
        for _ in 0..n {
            counts[pick().unwrap()] += 1;
        }
        counts.iter().map(|c| *c as f64 / n as f64).collect()
    }

    #[test]
    fn weighted_shares() {
        let weights = [5, 3, 0, 2];
        let r = WeightedRandom::new(&weights);
        let s = shares(&weights, 10_000, || r.pick(|_| true));
        for (got, want) in s.iter().zip([0.5, 0.3, 0.0, 0.2]) {
            assert!((got - want).abs() < 0.03, "{s:?}");
        }
        assert_eq!(s[2], 0.0, "weight 0 is never picked");
    }

    #[test]
    fn exact_pass_keeps_shares_among_usable() {
        let weights = [5, 3, 2];
        let r = WeightedRandom::new(&weights);
        let s = shares(&weights, 10_000, || r.pick_exact(|i| i != 0));
        assert_eq!(s[0], 0.0);
        assert!((s[1] - 0.6).abs() < 0.03, "{s:?}");
    }

    #[test]
    fn draw_other_never_returns_the_excluded_one() {
        let weights = [1, 0, 6, 3];
        let r = WeightedRandom::new(&weights);
        for not in 0..4 {
            let mut counts = [0usize; 4];
            for _ in 0..10_000 {
                counts[r.draw_other(not).unwrap()] += 1;
            }
            assert_eq!(counts[not], 0);
            assert_eq!(counts[1], 0);
            let rest: usize = weights
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != not)
                .map(|(_, w)| *w as usize)
                .sum();
            for i in [0, 2, 3].into_iter().filter(|i| *i != not) {
                let want = weights[i] as f64 / rest as f64;
                let got = counts[i] as f64 / 10_000.0;
                assert!((got - want).abs() < 0.03, "not {not}: {counts:?}");
            }
        }
        assert_eq!(WeightedRandom::new(&[0, 4]).draw_other(1), None);
    }

    #[test]
    fn nothing_to_draw() {
        assert_eq!(WeightedRandom::new(&[]).pick(|_| true), None);
        assert_eq!(WeightedRandom::new(&[0, 0]).pick(|_| true), None);
        assert_eq!(WeightedRandom::new(&[1, 2]).pick(|_| false), None);
    }
}
