//! Consistent hashing: a ketama-style ring of points, each owned by a target, sorted by hash; a
//! request key goes to the owner of the first point at or after it (wrapping around).
//!
//! A target's points are `hash_key(identity ++ "#" ++ k)` for `k` in `0..points`, where the
//! identity is its `host:port` and `points` depends only on its own weight and `slots`. So a
//! ring rebuilt after a reload, with the targets in any order, maps every key the same way, and
//! removing one of N equal targets moves only the keys on its points, about 1/N, each to the next
//! target along the ring; no other key moves.
//!
//! Ring size: a target of weight `w` gets `ceil(w * slots / 1000)` points, so ten targets of
//! Kong's default weight 100 make a ring of `slots` points (Kong's ring size). Were the points
//! instead shared out of a fixed total, removing a target would hand its share to the others as
//! new points, which take keys from the remaining targets too. Rings above [`MAX_POINTS`] are
//! thinned by the smallest power of two that fits; that factor, not each target's count, is what
//! changes if a reload crosses the limit.

use super::hash::hash_parts;

/// Kong's default and bounds for `slots`.
pub const DEFAULT_SLOTS: u32 = 10_000;
pub const MIN_SLOTS: u32 = 10;
pub const MAX_SLOTS: u32 = 65_536;

/// Most points in one ring (8 bytes each).
pub const MAX_POINTS: u64 = 1 << 20;

/// Weight units per `slots` points (see the module's documentation).
const WEIGHT_PER_SLOT_SHARE: u64 = 1_000;

/// A consistent-hash ring over target indices.
#[derive(Debug)]
pub struct HashRing {
    /// Ring positions, ascending.
    points: Box<[u32]>,
    /// `owners[k]`: the target owning `points[k]`.
    owners: Box<[u32]>,
    /// Targets with points, in index order.
    live: Box<[u32]>,
}

impl HashRing {
    /// A ring over `targets` (identity, weight); weights of 0 get no points. `slots` is clamped
    /// to Kong's range.
    pub fn new<S: AsRef<str>>(targets: &[(S, u32)], slots: u32) -> Self {
        let slots = u64::from(slots.clamp(MIN_SLOTS, MAX_SLOTS));
        let count = |w: u32, shift: u32| -> u64 {
            if w == 0 {
                0
            } else {
                (u64::from(w) * slots)
                    .div_ceil(WEIGHT_PER_SLOT_SHARE << shift)
                    .max(1)
            }
        };
        let total = |shift| targets.iter().map(|(_, w)| count(*w, shift)).sum::<u64>();
        let mut shift = 0;
        while total(shift) > MAX_POINTS.max(targets.len() as u64) && shift < 63 {
            shift += 1;
        }
        let mut ring: Vec<(u32, u32)> = Vec::with_capacity(total(shift) as usize);
        for (i, (id, w)) in targets.iter().enumerate() {
            let id = id.as_ref().as_bytes();
            for k in 0..count(*w, shift) {
                let h = hash_parts(&[id, b"#", &(k as u32).to_le_bytes()]);
                // The high half: `hash_key`'s best-mixed bits, and what request keys use too.
                ring.push(((h >> 32) as u32, i as u32));
            }
        }
        // Equal positions are ordered by identity, not index, so that the target order in the
        // configuration does not matter.
        ring.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0).then_with(|| {
                let (x, y) = (a.1 as usize, b.1 as usize);
                targets[x]
                    .0
                    .as_ref()
                    .cmp(targets[y].0.as_ref())
                    .then(x.cmp(&y))
            })
        });
        HashRing {
            points: ring.iter().map(|p| p.0).collect(),
            owners: ring.iter().map(|p| p.1).collect(),
            live: (0..targets.len() as u32)
                .filter(|&i| targets[i as usize].1 > 0)
                .collect(),
        }
    }

    /// Number of points on the ring.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether the ring has no point (no target with a weight above 0).
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The index of the first point at or after `key`'s position.
    fn slot(&self, key: u64) -> usize {
        let at = self.points.partition_point(|&p| p < (key >> 32) as u32);
        if at == self.points.len() { 0 } else { at }
    }

    /// The target for `key`: the owner of its point, or when `usable` rejects that owner, the
    /// next usable owner further along the ring (as Kong walks its ring). `None` only when no
    /// target on the ring is usable.
    pub fn pick(&self, key: u64, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.points.len();
        if len == 0 {
            return None;
        }
        let at = self.slot(key);
        let first = self.owners[at] as usize;
        if usable(first) {
            return Some(first);
        }
        let mut rejected = first;
        let mut asked = 1;
        let mut confirmed = false;
        for step in 1..len {
            let k = at + step;
            let owner = self.owners[if k >= len { k - len } else { k }] as usize;
            if owner == rejected {
                continue;
            }
            // Past twice as many checks as targets, make sure the walk can end well before
            // going on (all targets unusable is the usual reason to get here).
            if !confirmed && asked > 2 * self.live.len() {
                if !self.live.iter().any(|&t| usable(t as usize)) {
                    return None;
                }
                confirmed = true;
            }
            asked += 1;
            if usable(owner) {
                return Some(owner);
            }
            rejected = owner;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::hash_key;

    fn named(n: usize, weight: u32) -> Vec<(String, u32)> {
        (0..n)
            .map(|i| (format!("10.0.0.{i}:8000"), weight))
            .collect()
    }

    fn keys(n: u32) -> Vec<u64> {
        (0..n)
            .map(|i| hash_key(format!("user-{i}").as_bytes()))
            .collect()
    }

    #[test]
    fn sticky_and_independent_of_target_order() {
        let targets = named(5, 100);
        let ring = HashRing::new(&targets, DEFAULT_SLOTS);
        assert_eq!(ring.len(), 5 * 1_000);
        let mut reversed = targets.clone();
        reversed.reverse();
        let rebuilt = HashRing::new(&reversed, DEFAULT_SLOTS);
        for key in keys(10_000) {
            let t = ring.pick(key, |_| true).unwrap();
            assert_eq!(ring.pick(key, |_| true), Some(t), "same key, same target");
            let r = rebuilt.pick(key, |_| true).unwrap();
            assert_eq!(reversed[r].0, targets[t].0, "same identity after a rebuild");
        }
    }

    #[test]
    fn spreads_keys_by_weight() {
        let weights = [100u32, 200, 300, 400];
        let targets: Vec<(String, u32)> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| (format!("backend-{i}.internal:443"), *w))
            .collect();
        let ring = HashRing::new(&targets, DEFAULT_SLOTS);
        let mut counts = [0usize; 4];
        for key in keys(10_000) {
            counts[ring.pick(key, |_| true).unwrap()] += 1;
        }
        for (c, w) in counts.iter().zip(weights) {
            let want = f64::from(w) / 1_000.0;
            let got = *c as f64 / 10_000.0;
            assert!((got - want).abs() < 0.03, "{counts:?}");
        }
    }

    #[test]
    fn removing_one_of_five_moves_only_its_keys() {
        let targets = named(5, 100);
        let before = HashRing::new(&targets, DEFAULT_SLOTS);
        let removed = 2;
        let mut rest = targets.clone();
        rest.remove(removed);
        let after = HashRing::new(&rest, DEFAULT_SLOTS);
        let keys = keys(10_000);
        let mut moved = 0;
        for &key in &keys {
            let b = &targets[before.pick(key, |_| true).unwrap()].0;
            let a = &rest[after.pick(key, |_| true).unwrap()].0;
            if a != b {
                moved += 1;
                assert_eq!(
                    b, &targets[removed].0,
                    "only keys of the removed target move"
                );
            }
        }
        let share = moved as f64 / keys.len() as f64;
        assert!((0.15..=0.25).contains(&share), "{share}");
    }

    #[test]
    fn unusable_owners_are_skipped_along_the_ring() {
        let targets = named(5, 100);
        let ring = HashRing::new(&targets, DEFAULT_SLOTS);
        for key in keys(2_000) {
            let first = ring.pick(key, |_| true).unwrap();
            let second = ring.pick(key, |t| t != first).unwrap();
            assert_ne!(second, first);
            // The next distinct owner along the ring, from the key's point.
            let at = ring.slot(key);
            let expect = (0..ring.len())
                .map(|s| ring.owners[(at + s) % ring.len()] as usize)
                .find(|&o| o != first);
            assert_eq!(Some(second), expect);
            // Sticky on retry too.
            assert_eq!(ring.pick(key, |t| t != first), Some(second));
        }
    }

    #[test]
    fn one_usable_target_is_always_found() {
        let mut targets = named(20, 100);
        targets.push(("rare:1".into(), 1));
        let ring = HashRing::new(&targets, DEFAULT_SLOTS);
        assert_eq!(ring.len(), 20 * 1_000 + 10);
        for key in keys(500) {
            assert_eq!(ring.pick(key, |t| t == 20), Some(20));
            assert_eq!(ring.pick(key, |_| false), None);
        }
    }

    #[test]
    fn size_limits() {
        let ring = HashRing::new(&[("a:1", 0), ("b:1", 0)], DEFAULT_SLOTS);
        assert!(ring.is_empty());
        assert_eq!(ring.pick(1, |_| true), None);
        // Weight 1 at the smallest ring still gets a point.
        assert_eq!(HashRing::new(&[("a:1", 1)], MIN_SLOTS).len(), 1);
        // Huge weights are thinned to fit.
        let big: Vec<(String, u32)> = named(40, 65_535);
        let ring = HashRing::new(&big, MAX_SLOTS);
        assert!(ring.len() as u64 <= MAX_POINTS && ring.len() as u64 > MAX_POINTS / 2);
    }
}
