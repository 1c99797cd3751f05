//! Tokens already verified, per worker thread, so that a client presenting the same token again
//! (the common case: a token lives for minutes or hours and rides on every request) skips the
//! decoding, the JSON parsing and the signature check. Envoy's `jwt_authn` caches the same way.
//!
//! Only tokens that passed every check are stored, keyed by their exact text in a
//! [`SecretMap`], per plugin instance. What depends on the clock (`exp`, `nbf`, the maximum
//! expiration) is checked again on every hit from the stored claims. The cache is bounded: when
//! a worker's cache is full it is emptied and refilled by the tokens in use.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use http::header::{HeaderName, HeaderValue};

use super::token::Claims;
use crate::plugins::secret_map::SecretMap;

/// Verified tokens kept per worker thread, all plugin instances together.
pub const CAPACITY: usize = 1024;
/// Longer tokens are verified every time rather than stored.
pub const MAX_CACHED_TOKEN: usize = 4096;

/// What a verified token gave: its consumer and credential (consumer model), its claims (for the
/// clock checks) and the upstream headers from `claims_to_headers`.
pub struct Verified {
    pub consumer: Option<(usize, HeaderValue)>,
    pub claims: Claims,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Whose entries: a plugin instance's id and the generation of its key set.
pub type Key = (u64, u64);

/// A fresh id for a plugin instance (never reused, unlike an address).
pub fn instance_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[derive(Default)]
struct WorkerCache {
    len: usize,
    by_instance: HashMap<Key, SecretMap<Verified>>,
}

thread_local! {
    static VERIFIED: RefCell<WorkerCache> = RefCell::new(WorkerCache::default());
}

/// Run `f` on the entry for `token` under `instance`, if there is one.
pub fn with<R>(instance: Key, token: &str, f: impl FnOnce(&Verified) -> R) -> Option<R> {
    VERIFIED.with(|cache| {
        let cache = cache.borrow();
        cache
            .by_instance
            .get(&instance)
            .and_then(|m| m.get(token.as_bytes()))
            .map(f)
    })
}

/// Remember a verified token.
pub fn insert(instance: Key, token: &str, verified: Verified) {
    if token.len() > MAX_CACHED_TOKEN {
        return;
    }
    VERIFIED.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.len >= CAPACITY {
            cache.by_instance.clear();
            cache.len = 0;
        }
        if cache
            .by_instance
            .entry(instance)
            .or_default()
            .insert(token.as_bytes(), verified)
        {
            cache.len += 1;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(sub: &str) -> Verified {
        let mut claims = Claims::new();
        claims.insert("sub".into(), sub.into());
        Verified {
            consumer: None,
            claims,
            headers: Vec::new(),
        }
    }

    #[test]
    fn entries_are_per_instance_and_bounded() {
        let (a, b) = ((instance_id(), 0), (instance_id(), 0));
        insert(a, "tok-1", verified("one"));
        assert_eq!(
            with(a, "tok-1", |v| v.claims["sub"].clone()),
            Some("one".into())
        );
        assert!(with(b, "tok-1", |_| ()).is_none(), "another instance");
        assert!(with(a, "tok-2", |_| ()).is_none());
        for i in 0..CAPACITY {
            insert(b, &format!("filler-{i}"), verified("x"));
        }
        assert!(with(a, "tok-1", |_| ()).is_none(), "emptied when full");
        insert(a, &"x".repeat(MAX_CACHED_TOKEN + 1), verified("big"));
        assert!(with(a, &"x".repeat(MAX_CACHED_TOKEN + 1), |_| ()).is_none());
    }
}
