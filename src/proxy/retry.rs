//! When a failed attempt is tried again, and how many retries a service may spend.
//!
//! A connect failure is always worth another target (nothing reached the upstream). An answer
//! of 502/503/504 or a read timeout is retried only for idempotent requests without a body, and
//! only when the service asks for it (`retry_on`, an extension). Every retry, whatever its
//! cause, spends from the service's retry budget (Finagle's and Envoy's idea): retries may add at
//! most `percent` % to the requests of the last ten seconds, plus `min_per_second`, so a failing
//! backend is not hit by a storm of retries on top of its normal load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// What a service retries besides connect failures.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RetryOn {
    pub timeout: bool,
    pub status_502: bool,
    pub status_503: bool,
    pub status_504: bool,
}

impl RetryOn {
    /// Parse `retry_on` entries: `timeout`, `gateway-error` (502, 503 and 504), `502`, `503`,
    /// `504`. Errors are `(index, message)`.
    pub fn parse(entries: &[String]) -> Result<RetryOn, Vec<(usize, String)>> {
        let mut on = RetryOn::default();
        let mut errors = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            match e.as_str() {
                "timeout" => on.timeout = true,
                "gateway-error" => {
                    on.status_502 = true;
                    on.status_503 = true;
                    on.status_504 = true;
                }
                "502" => on.status_502 = true,
                "503" => on.status_503 = true,
                "504" => on.status_504 = true,
                other => errors.push((
                    i,
                    format!(
                        "expected one of: timeout, gateway-error, 502, 503, 504 (got `{other}`)"
                    ),
                )),
            }
        }
        if errors.is_empty() {
            Ok(on)
        } else {
            Err(errors)
        }
    }

    pub fn status(&self, status: u16) -> bool {
        match status {
            502 => self.status_502,
            503 => self.status_503,
            504 => self.status_504,
            _ => false,
        }
    }
}

/// Seconds covered by the budget's window.
const WINDOW_SECS: u64 = 10;

/// Requests and retries per second over the last [`WINDOW_SECS`] seconds, lock-free.
///
/// Each bucket packs its second (upper 24 bits), requests (20 bits) and retries (20 bits) into
/// one atomic, so a bucket from an older second is recognised and restarted in one step.
pub struct RetryBudget {
    percent: u64,
    min_per_second: u64,
    epoch: Instant,
    buckets: [AtomicU64; WINDOW_SECS as usize],
}

const COUNT_BITS: u32 = 20;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;

fn pack(second: u64, requests: u64, retries: u64) -> u64 {
    ((second & 0xFF_FFFF) << (2 * COUNT_BITS))
        | (requests.min(COUNT_MAX) << COUNT_BITS)
        | retries.min(COUNT_MAX)
}

fn unpack(v: u64) -> (u64, u64, u64) {
    (
        v >> (2 * COUNT_BITS),
        (v >> COUNT_BITS) & COUNT_MAX,
        v & COUNT_MAX,
    )
}

impl RetryBudget {
    pub fn new(percent: u32, min_per_second: u32) -> RetryBudget {
        RetryBudget {
            percent: u64::from(percent),
            min_per_second: u64::from(min_per_second),
            epoch: Instant::now(),
            buckets: Default::default(),
        }
    }

    fn second(&self) -> u64 {
        self.epoch.elapsed().as_secs() & 0xFF_FFFF
    }

    /// Add to the current second's bucket (restarting it if it holds an older second).
    fn add(&self, requests: u64, retries: u64) {
        let now = self.second();
        let bucket = &self.buckets[(now % WINDOW_SECS) as usize];
        let _ = bucket.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            let (s, req, ret) = unpack(v);
            Some(if s == now && v != 0 {
                pack(now, req + requests, ret + retries)
            } else {
                pack(now, requests, retries)
            })
        });
    }

    /// Requests and retries in the window.
    fn totals(&self) -> (u64, u64) {
        let now = self.second();
        let mut totals = (0, 0);
        for b in &self.buckets {
            let v = b.load(Ordering::Acquire);
            let (s, req, ret) = unpack(v);
            if v != 0 && now.wrapping_sub(s) & 0xFF_FFFF < WINDOW_SECS {
                totals.0 += req;
                totals.1 += ret;
            }
        }
        totals
    }

    /// A request (first attempt) was made.
    pub fn request(&self) {
        self.add(1, 0);
    }

    /// Whether one more retry fits the budget; if it does, it is counted.
    pub fn try_retry(&self) -> bool {
        let (requests, retries) = self.totals();
        let allowed = self.min_per_second * WINDOW_SECS + requests * self.percent / 100;
        if retries < allowed {
            self.add(0, 1);
            true
        } else {
            false
        }
    }
}

impl std::fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (requests, retries) = self.totals();
        f.debug_struct("RetryBudget")
            .field("percent", &self.percent)
            .field("min_per_second", &self.min_per_second)
            .field("requests", &requests)
            .field("retries", &retries)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_retry_on() {
        let on = RetryOn::parse(&["timeout".into(), "gateway-error".into()]).unwrap();
        assert!(on.timeout && on.status(502) && on.status(503) && on.status(504));
        assert!(!on.status(500));
        let on = RetryOn::parse(&["503".into()]).unwrap();
        assert!(on.status(503) && !on.status(502) && !on.timeout);
        let errors = RetryOn::parse(&["5xx".into()]).unwrap_err();
        assert_eq!(errors[0].0, 0);
    }

    #[test]
    fn the_budget_allows_a_share_of_recent_requests() {
        // No floor: retries may add 20 % of the requests.
        let b = RetryBudget::new(20, 0);
        assert!(!b.try_retry(), "nothing allowed before any request");
        for _ in 0..100 {
            b.request();
        }
        let granted = (0..100).filter(|_| b.try_retry()).count();
        assert_eq!(granted, 20);
        // The floor allows a few retries per second however little traffic there is.
        let b = RetryBudget::new(20, 1);
        let granted = (0..100).filter(|_| b.try_retry()).count();
        assert_eq!(granted, WINDOW_SECS as usize);
    }

    #[test]
    fn packing_round_trips_and_saturates() {
        assert_eq!(unpack(pack(7, 3, 2)), (7, 3, 2));
        assert_eq!(unpack(pack(7, COUNT_MAX + 5, 0)).1, COUNT_MAX);
    }
}
