//! A map keyed by secrets (API keys, bearer tokens) whose lookups do not leak, through timing,
//! how much of a guessed key matched a stored one.
//!
//! Keys are filed under a hash seeded randomly per map, so a client cannot aim at a stored key's
//! bucket; the stored keys that share the hash are then compared in constant time. This costs
//! one fast hash per lookup, far less than hashing the key with a cryptographic digest first.

use std::collections::HashMap;
use std::hash::BuildHasher;

use aws_lc_rs::constant_time::verify_slices_are_equal;

/// The stored keys that share one hash, with their values.
type Bucket<V> = Vec<(Box<[u8]>, V)>;

/// `secret → V`, with lookups that compare candidate keys in constant time.
pub struct SecretMap<V> {
    hasher: foldhash::quality::RandomState,
    buckets: HashMap<u64, Bucket<V>, foldhash::fast::RandomState>,
    len: usize,
}

impl<V> Default for SecretMap<V> {
    fn default() -> Self {
        SecretMap {
            hasher: Default::default(),
            buckets: Default::default(),
            len: 0,
        }
    }
}

impl<V> SecretMap<V> {
    pub fn with_capacity(n: usize) -> Self {
        SecretMap {
            hasher: Default::default(),
            buckets: HashMap::with_capacity_and_hasher(n, Default::default()),
            len: 0,
        }
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &[u8]) -> Option<&V> {
        let bucket = self.buckets.get(&self.hash(key))?;
        // Every candidate is compared, so the time does not tell which one matched.
        let mut found = None;
        for (k, v) in bucket {
            if verify_slices_are_equal(k, key).is_ok() {
                found = Some(v);
            }
        }
        found
    }

    /// Store `value` under `key`; returns `false` (and keeps the old value) if `key` is taken.
    pub fn insert(&mut self, key: &[u8], value: V) -> bool {
        let h = self.hash(key);
        let bucket = self.buckets.entry(h).or_default();
        if bucket.iter().any(|(k, _)| &**k == key) {
            return false;
        }
        bucket.push((key.into(), value));
        self.len += 1;
        true
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.buckets.clear();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_finds_by_exact_key() {
        let mut m = SecretMap::default();
        assert!(m.insert(b"alpha-key", 1));
        assert!(m.insert(b"beta-key", 2));
        assert!(!m.insert(b"alpha-key", 3), "a taken key is refused");
        assert_eq!(m.get(b"alpha-key"), Some(&1));
        assert_eq!(m.get(b"beta-key"), Some(&2));
        assert_eq!(m.get(b"alpha-ke"), None);
        assert_eq!(m.get(b"alpha-keyy"), None);
        assert_eq!(m.get(b""), None);
        assert_eq!(m.len(), 2);
        m.clear();
        assert!(m.is_empty());
        assert_eq!(m.get(b"alpha-key"), None);
    }
}
