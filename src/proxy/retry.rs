//! When a failed attempt is tried again, and how many retries a service may spend.
//!
//! A connect failure is always worth another target (nothing reached the upstream). An answer
//! of 502/503/504 or a read timeout is retried only for idempotent requests without a body, and
//! only when the service asks for it (`retry_on`, an extension). Every retry, whatever its
//! cause, spends from the service's retry budget (Finagle's and Envoy's idea): retries may add at
//! most `percent` % to the requests of the last ten seconds, plus `min_per_second`, so a failing
//! backend is not hit by a storm of retries on top of its normal load.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
/// Request counters, spread so that workers do not all update one cache line.
const STRIPES: usize = 8;

/// A counter alone on its cache line.
#[repr(align(64))]
#[derive(Default)]
struct Padded(AtomicU64);

/// One second of the window, touched only when a retry is considered: the running request
/// total first seen in that second, and the retries made in it.
struct Second {
    /// `u64::MAX`: never used.
    second: AtomicU64,
    requests_at: AtomicU64,
    retries: AtomicU64,
}

impl Default for Second {
    fn default() -> Self {
        Second {
            second: AtomicU64::new(u64::MAX),
            requests_at: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }
}

/// The retries a service may make: a share of its recent requests, plus a floor.
///
/// Counting a request costs one relaxed increment of a per-thread stripe: no clock read and no
/// cache line shared by every worker. The clock and the window are only looked at when a
/// retry is considered, which is rare. (Approximate by design: a second's request count is the
/// running total when the first retry of that second was considered.)
pub struct RetryBudget {
    percent: u64,
    min_per_second: u64,
    epoch: Instant,
    requests: [Padded; STRIPES],
    seconds: [Second; WINDOW_SECS as usize],
}

/// This thread's request stripe.
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|s| *s)
}

impl RetryBudget {
    pub fn new(percent: u32, min_per_second: u32) -> RetryBudget {
        RetryBudget {
            percent: u64::from(percent),
            min_per_second: u64::from(min_per_second),
            epoch: Instant::now(),
            requests: Default::default(),
            seconds: Default::default(),
        }
    }

    /// A request (first attempt) was made.
    pub fn request(&self) {
        self.requests[stripe()].0.fetch_add(1, Ordering::Relaxed);
    }

    fn requests_total(&self) -> u64 {
        self.requests
            .iter()
            .map(|c| c.0.load(Ordering::Relaxed))
            .sum()
    }

    /// Whether one more retry fits the budget; if it does, it is counted.
    pub fn try_retry(&self) -> bool {
        let now = self.epoch.elapsed().as_secs();
        let total = self.requests_total();
        let slot = &self.seconds[(now % WINDOW_SECS) as usize];
        if slot.second.load(Ordering::Acquire) != now {
            // A new second for this slot (two threads may both restart it: harmless).
            slot.requests_at.store(total, Ordering::Relaxed);
            slot.retries.store(0, Ordering::Relaxed);
            slot.second.store(now, Ordering::Release);
        }
        let in_window = |s: &Second| {
            let second = s.second.load(Ordering::Acquire);
            second != u64::MAX && now.saturating_sub(second) < WINDOW_SECS && second <= now
        };
        // Requests in the window: since the oldest second seen in it, or since the start while
        // the budget is younger than the window.
        let baseline = if now < WINDOW_SECS {
            0
        } else {
            self.seconds
                .iter()
                .filter(|s| in_window(s))
                .map(|s| s.requests_at.load(Ordering::Relaxed))
                .min()
                .unwrap_or(total)
        };
        let retries: u64 = self
            .seconds
            .iter()
            .filter(|s| in_window(s))
            .map(|s| s.retries.load(Ordering::Relaxed))
            .sum();
        let allowed =
            self.min_per_second * WINDOW_SECS + total.saturating_sub(baseline) * self.percent / 100;
        if retries < allowed {
            slot.retries.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }
}

impl std::fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryBudget")
            .field("percent", &self.percent)
            .field("min_per_second", &self.min_per_second)
            .field("requests", &self.requests_total())
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
    fn requests_on_many_threads_all_count() {
        let b = std::sync::Arc::new(RetryBudget::new(100, 0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    for _ in 0..250 {
                        b.request();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(b.requests_total(), 1000);
    }
}
