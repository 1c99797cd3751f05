//! Weighted least-connections, as Kong's: the target with the fewest in-flight requests relative
//! to its weight, scored `(in_flight + 1) / weight` so that with nothing in flight the heaviest
//! target goes first, and a target of weight 2 holds twice the requests of one of weight 1.
//!
//! A pick reads every target's counter (n relaxed loads) and compares scores by
//! cross-multiplication, without division. Ties go to the first tied target after a rotating
//! start, so equal targets take turns rather than the lowest index always winning.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Picks the least loaded target relative to its weight.
#[derive(Debug)]
pub struct LeastConnections {
    weights: Box<[u32]>,
    next: AtomicUsize,
}

impl LeastConnections {
    /// A picker over `weights.len()` targets; weights of 0 are never picked.
    pub fn new(weights: &[u32]) -> Self {
        LeastConnections {
            weights: weights.into(),
            next: AtomicUsize::new(0),
        }
    }

    /// The usable target with the lowest `(in_flight(i) + 1) / weight`, or `None` when no target
    /// with a weight above 0 is usable.
    pub fn pick(
        &self,
        in_flight: impl Fn(usize) -> u32,
        usable: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = self.weights.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        // (index, in-flight + 1, weight) of the best so far.
        let mut best: Option<(usize, u64, u64)> = None;
        for i in (start..n).chain(0..start) {
            let w = u64::from(self.weights[i]);
            if w == 0 {
                continue;
            }
            let load = u64::from(in_flight(i)) + 1;
            // load / w < best_load / best_w; strict, so the earliest after `start` keeps ties.
            if let Some((_, best_load, best_w)) = best
                && load * best_w >= best_load * w
            {
                continue;
            }
            // Asked only of a would-be winner: fewer calls to a possibly costly check.
            if usable(i) {
                best = Some((i, load, w));
            }
        }
        best.map(|(i, _, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn prefers_the_emptier_target() {
        let lc = LeastConnections::new(&[1, 1, 1]);
        let load = [3, 1, 2];
        for _ in 0..10 {
            assert_eq!(lc.pick(|i| load[i], |_| true), Some(1));
        }
        assert_eq!(lc.pick(|i| load[i], |i| i != 1), Some(2));
    }

    #[test]
    fn respects_weights() {
        // 4 in flight on weight 4 (score 5/4) beats 1 in flight on weight 1 (score 2).
        let lc = LeastConnections::new(&[4, 1]);
        assert_eq!(lc.pick(|i| [4, 1][i], |_| true), Some(0));
        assert_eq!(lc.pick(|i| [7, 1][i], |_| true), Some(1));
        // Filling up from empty keeps in-flight counts in proportion to the weights.
        let lc = LeastConnections::new(&[5, 3, 2, 0]);
        let load = RefCell::new([0u32; 4]);
        for _ in 0..100 {
            let i = lc.pick(|i| load.borrow()[i], |_| true).unwrap();
            load.borrow_mut()[i] += 1;
        }
        assert_eq!(*load.borrow(), [50, 30, 20, 0]);
    }

    #[test]
    fn equals_take_turns() {
        let lc = LeastConnections::new(&[2, 2, 2]);
        let p: Vec<usize> = (0..6).map(|_| lc.pick(|_| 0, |_| true).unwrap()).collect();
        assert_eq!(p, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn nothing_usable() {
        assert_eq!(LeastConnections::new(&[]).pick(|_| 0, |_| true), None);
        assert_eq!(LeastConnections::new(&[0, 0]).pick(|_| 0, |_| true), None);
        assert_eq!(LeastConnections::new(&[1, 1]).pick(|_| 0, |_| false), None);
    }
}
