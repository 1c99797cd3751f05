//! Circuit breaking per upstream: a limit on requests in flight (Envoy's `max_requests`), and a
//! breaker that opens when the share of failed requests over a window passes a ratio, answers
//! at once while open, and half-opens after a pause to let a few probes decide (Traefik's and
//! Hystrix's breaker). Lock-free: atomics only.
//!
//! A failure is a request whose attempts all failed: no connection, a timeout, or a 5xx answer.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The breaker's settings (the upstream's `circuit_breaker`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSettings {
    /// Requests in flight at once (0: no limit).
    pub max_requests: u32,
    /// Open when failures / requests over the window reach this (0: never).
    pub failure_ratio: f64,
    /// ...and the window saw at least this many requests.
    pub min_requests: u32,
    pub window: Duration,
    /// How long the breaker stays open before letting probes through.
    pub open_for: Duration,
    /// Probes let through at once while half-open.
    pub half_open_requests: u32,
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// Seconds the window is split into, at most.
const BUCKETS: usize = 60;

/// One upstream's breaker.
pub struct Breaker {
    settings: BreakerSettings,
    epoch: Instant,
    in_flight: AtomicU32,
    state: AtomicU8,
    /// Milliseconds since `epoch` when the breaker last opened.
    opened_at: AtomicU64,
    probes: AtomicU32,
    /// Per second: the second (upper 24 bits), requests (20 bits), failures (20 bits).
    buckets: [AtomicU64; BUCKETS],
}

/// Why a request is refused without being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Too many requests in flight on the upstream.
    Overloaded,
    /// The breaker is open.
    Open,
}

/// A request let through: report its outcome with [`Admitted::done`]; dropping it without
/// counts it as neither success nor failure (the client went away).
pub struct Admitted<'b> {
    breaker: &'b Breaker,
    probe: bool,
}

const COUNT_BITS: u32 = 20;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;

fn pack(second: u64, requests: u64, failures: u64) -> u64 {
    ((second & 0xFF_FFFF) << (2 * COUNT_BITS))
        | (requests.min(COUNT_MAX) << COUNT_BITS)
        | failures.min(COUNT_MAX)
}

fn unpack(v: u64) -> (u64, u64, u64) {
    (
        v >> (2 * COUNT_BITS),
        (v >> COUNT_BITS) & COUNT_MAX,
        v & COUNT_MAX,
    )
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Breaker {
        Breaker {
            settings,
            epoch: Instant::now(),
            in_flight: AtomicU32::new(0),
            state: AtomicU8::new(CLOSED),
            opened_at: AtomicU64::new(0),
            probes: AtomicU32::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn window_secs(&self) -> u64 {
        self.settings.window.as_secs().clamp(1, BUCKETS as u64)
    }

    /// Whether the breaker is open now (for reports).
    pub fn is_open(&self) -> bool {
        self.state.load(Ordering::Acquire) == OPEN
    }

    /// Let a request through, or say why not.
    pub fn admit(&self) -> Result<Admitted<'_>, Refused> {
        let mut probe = false;
        match self.state.load(Ordering::Acquire) {
            CLOSED => {}
            OPEN => {
                let since = self
                    .now_ms()
                    .saturating_sub(self.opened_at.load(Ordering::Acquire));
                if since < self.settings.open_for.as_millis() as u64 {
                    return Err(Refused::Open);
                }
                // The pause is over: the first to notice half-opens the breaker.
                let _ = self.state.compare_exchange(
                    OPEN,
                    HALF_OPEN,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                return self.admit();
            }
            _ => {
                let limit = self.settings.half_open_requests.max(1);
                if self
                    .probes
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                        (p < limit).then_some(p + 1)
                    })
                    .is_err()
                {
                    return Err(Refused::Open);
                }
                probe = true;
            }
        }
        if self.settings.max_requests > 0 {
            let max = self.settings.max_requests;
            if self
                .in_flight
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < max).then_some(n + 1)
                })
                .is_err()
            {
                if probe {
                    self.probes.fetch_sub(1, Ordering::AcqRel);
                }
                return Err(Refused::Overloaded);
            }
        }
        Ok(Admitted {
            breaker: self,
            probe,
        })
    }

    fn record(&self, failed: bool) {
        let secs = self.epoch.elapsed().as_secs() & 0xFF_FFFF;
        let bucket = &self.buckets[(secs % self.window_secs()) as usize];
        let _ = bucket.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            let (s, req, fail) = unpack(v);
            Some(if s == secs && v != 0 {
                pack(secs, req + 1, fail + u64::from(failed))
            } else {
                pack(secs, 1, u64::from(failed))
            })
        });
        if !failed || self.settings.failure_ratio <= 0.0 {
            return;
        }
        let (mut requests, mut failures) = (0u64, 0u64);
        let window = self.window_secs();
        for b in &self.buckets[..window as usize] {
            let v = b.load(Ordering::Acquire);
            let (s, req, fail) = unpack(v);
            if v != 0 && secs.wrapping_sub(s) & 0xFF_FFFF < window {
                requests += req;
                failures += fail;
            }
        }
        if requests >= u64::from(self.settings.min_requests.max(1))
            && failures as f64 >= self.settings.failure_ratio * requests as f64
            && self.state.load(Ordering::Acquire) == CLOSED
        {
            // The time first: `admit` reads it as soon as it sees OPEN.
            self.opened_at.store(self.now_ms(), Ordering::Release);
            if self
                .state
                .compare_exchange(CLOSED, OPEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                tracing::warn!(requests, failures, "circuit breaker opened");
            }
        }
    }

    fn clear_window(&self) {
        for b in &self.buckets {
            b.store(0, Ordering::Release);
        }
    }
}

impl Admitted<'_> {
    /// The request's outcome: `failed` when no attempt got a usable answer.
    pub fn done(self, failed: bool) {
        let b = self.breaker;
        if self.probe {
            if failed {
                b.opened_at.store(b.now_ms(), Ordering::Release);
                b.state.store(OPEN, Ordering::Release);
                tracing::warn!("circuit breaker probe failed; open again");
            } else if b
                .state
                .compare_exchange(HALF_OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                b.clear_window();
                tracing::info!("circuit breaker closed");
            }
        } else {
            b.record(failed);
        }
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        let b = self.breaker;
        // An abandoned probe decides nothing: the next request probes again.
        if self.probe {
            b.probes.fetch_sub(1, Ordering::AcqRel);
        }
        if b.settings.max_requests > 0 {
            b.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            max_requests: 0,
            failure_ratio: 0.5,
            min_requests: 10,
            window: Duration::from_secs(10),
            open_for: Duration::from_millis(50),
            half_open_requests: 1,
        }
    }

    #[test]
    fn opens_on_the_failure_ratio_and_refuses_while_open() {
        let b = Breaker::new(BreakerSettings {
            open_for: Duration::from_secs(60),
            ..settings()
        });
        for _ in 0..5 {
            b.admit().unwrap().done(false);
        }
        for _ in 0..4 {
            b.admit().unwrap().done(true);
        }
        assert!(!b.is_open(), "9 requests: under min_requests");
        b.admit().unwrap().done(true);
        assert!(b.is_open(), "5 failures of 10");
        assert_eq!(b.admit().err(), Some(Refused::Open));
    }

    #[test]
    fn half_opens_after_the_pause_and_probes_decide() {
        // No pause: the first request after opening is a probe.
        let b = Breaker::new(BreakerSettings {
            open_for: Duration::ZERO,
            ..settings()
        });
        for _ in 0..10 {
            b.admit().unwrap().done(true);
        }
        assert!(b.is_open());
        let probe = b.admit().unwrap();
        assert_eq!(b.admit().err(), Some(Refused::Open), "one probe at a time");
        probe.done(true);
        assert!(b.is_open(), "a failed probe opens it again");
        let probe = b.admit().unwrap();
        drop(probe);
        b.admit().unwrap().done(false);
        assert!(!b.is_open(), "a successful probe closes it");
        for _ in 0..9 {
            b.admit().unwrap().done(true);
        }
        assert!(!b.is_open(), "the window started afresh when it closed");
    }

    #[test]
    fn limits_requests_in_flight() {
        let b = Breaker::new(BreakerSettings {
            max_requests: 2,
            failure_ratio: 0.0,
            ..settings()
        });
        let a1 = b.admit().unwrap();
        let a2 = b.admit().unwrap();
        assert_eq!(b.admit().err(), Some(Refused::Overloaded));
        drop(a1);
        let a3 = b.admit().unwrap();
        a2.done(false);
        a3.done(true);
        assert_eq!(b.in_flight.load(Ordering::Acquire), 0);
    }
}
