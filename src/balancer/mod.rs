//! Load-balancing algorithms: pure, lock-free pickers built once per configuration load.
//!
//! [`Balancer`] is the front the request path uses: it holds one algorithm's state and the
//! targets' shared counters (in-flight requests, latency estimates). A pick, a start and a finish
//! take no lock and allocate nothing. Each algorithm lives in its own module and can be used on
//! its own:
//!
//! - [`round_robin`]: smooth weighted round-robin (Kong's `round-robin`);
//! - [`least_connections`]: weighted least in-flight requests (Kong's `least-connections`);
//! - [`consistent_hashing`]: a hash ring keyed by target identity (Kong's `consistent-hashing`);
//! - [`latency`]: power of two choices over peak-EWMA latency (Kong's `latency`);
//! - [`random`]: weighted random.

pub mod consistent_hashing;
mod hash;
pub mod latency;
pub mod least_connections;
pub mod random;
mod rng;
pub mod round_robin;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

pub use consistent_hashing::HashRing;
pub use hash::hash_key;
pub use latency::{Latency, PeakEwma};
pub use least_connections::LeastConnections;
pub use random::WeightedRandom;
pub use round_robin::WeightedRoundRobin;

/// A balancing algorithm, by Kong's names (`random` is Gatehouse's own).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    RoundRobin,
    LeastConnections,
    ConsistentHashing,
    Latency,
    Random,
}

impl Algorithm {
    /// Every algorithm, in documentation order.
    pub const ALL: [Algorithm; 5] = [
        Algorithm::RoundRobin,
        Algorithm::LeastConnections,
        Algorithm::ConsistentHashing,
        Algorithm::Latency,
        Algorithm::Random,
    ];

    /// The configuration name: `round-robin`, `least-connections`, `consistent-hashing`,
    /// `latency` or `random`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round-robin",
            Algorithm::LeastConnections => "least-connections",
            Algorithm::ConsistentHashing => "consistent-hashing",
            Algorithm::Latency => "latency",
            Algorithm::Random => "random",
        }
    }

    /// The algorithm of a configuration name, if any.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }
}

enum Picker {
    RoundRobin(WeightedRoundRobin),
    LeastConnections(LeastConnections),
    /// Requests without a hash key go round-robin, as in Kong.
    ConsistentHashing(HashRing, WeightedRoundRobin),
    Latency(Latency),
    Random(WeightedRandom),
}

/// One target's load: requests in flight and the latency estimate. On a cache line of its own
/// so that requests to different targets on different cores do not contend.
///
/// A load record belongs to a target, not to a balancer: the configuration's compiler hands the
/// same record to every balancer built for that target (see
/// [`HealthRegistry`](crate::health::HealthRegistry)), so in-flight counts and latency averages
/// survive reloads, and requests started under the old configuration still count under the new.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct TargetLoad {
    in_flight: AtomicU32,
    latency: PeakEwma,
}

impl TargetLoad {
    /// Requests started on this target and not yet finished or dropped.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// Milliseconds on the process-wide clock of the latency estimates (one origin for every
/// balancer, since load records outlive the balancers that use them). Wrapping every ~49 days
/// is accounted for by the estimates.
fn now_ms(now: Instant) -> u32 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    now.saturating_duration_since(epoch).as_millis() as u32
}

/// The targets' load records, shared by a balancer and the [`InFlight`] guards it handed out.
#[derive(Debug)]
struct Shared {
    targets: Box<[Arc<TargetLoad>]>,
}

impl Shared {
    fn in_flight(&self, i: usize) -> u32 {
        self.targets.get(i).map_or(0, |t| t.in_flight())
    }
}

/// The balancer of one upstream: an algorithm over targets `0..n`, plus their in-flight counts
/// and latency estimates. `Send + Sync`; built once per configuration load.
pub struct Balancer {
    algorithm: Algorithm,
    picker: Picker,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer")
            .field("algorithm", &self.algorithm)
            .field("targets", &self.shared.targets.len())
            .finish_non_exhaustive()
    }
}

impl Balancer {
    /// A balancer over `targets`: (identity `host:port`, weight); index `i` in picks is
    /// `targets[i]`, and a weight of 0 is never picked. `slots` sizes the consistent-hashing ring
    /// (clamped to Kong's 10..=65536, see [`consistent_hashing`]); other algorithms ignore it.
    pub fn new<S: AsRef<str>>(algorithm: Algorithm, targets: &[(S, u32)], slots: u32) -> Balancer {
        let weights: Vec<u32> = targets.iter().map(|(_, w)| *w).collect();
        let picker = match algorithm {
            Algorithm::RoundRobin => Picker::RoundRobin(WeightedRoundRobin::new(&weights)),
            Algorithm::LeastConnections => {
                Picker::LeastConnections(LeastConnections::new(&weights))
            }
            Algorithm::ConsistentHashing => Picker::ConsistentHashing(
                HashRing::new(targets, slots),
                WeightedRoundRobin::new(&weights),
            ),
            Algorithm::Latency => Picker::Latency(Latency::new(&weights)),
            Algorithm::Random => Picker::Random(WeightedRandom::new(&weights)),
        };
        Balancer {
            algorithm,
            picker,
            shared: Arc::new(Shared {
                targets: targets.iter().map(|_| Arc::default()).collect(),
            }),
        }
    }

    /// Count on existing load records (`loads[i]` for target `i`), e.g. those of the same
    /// targets under the previous configuration; missing records start empty. Meant for a
    /// balancer not yet in use: guards handed out before keep the records they started on.
    pub fn adopt_loads(&mut self, mut loads: Vec<Arc<TargetLoad>>) {
        loads.resize_with(self.shared.targets.len(), Arc::default);
        self.shared = Arc::new(Shared {
            targets: loads.into_boxed_slice(),
        });
    }

    /// The algorithm this balancer runs.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Number of targets (including those of weight 0).
    pub fn len(&self) -> usize {
        self.shared.targets.len()
    }

    /// Whether there are no targets.
    pub fn is_empty(&self) -> bool {
        self.shared.targets.is_empty()
    }

    /// Requests started on target `i` and not yet finished or dropped.
    pub fn in_flight(&self, i: usize) -> u32 {
        self.shared.in_flight(i)
    }

    /// The latency estimate of target `i` now (`None` before its first sample, or for the
    /// algorithms other than `latency`, which record none).
    pub fn latency_estimate(&self, i: usize) -> Option<Duration> {
        let now = now_ms(Instant::now());
        let ns = self.shared.targets.get(i)?.latency.estimate(now)?;
        Some(Duration::from_nanos(ns as u64))
    }

    /// The target for a request, or `None` when no target with a weight above 0 is usable.
    ///
    /// `hash`: the request's key for consistent hashing (see [`hash_key`]); `None` (the hash
    /// input is missing) falls back to round-robin, as Kong does. Other algorithms ignore it.
    /// `usable(i)`: false for a target that is unhealthy or already tried by this request; the
    /// result is always usable, and when the algorithm's first choice is not, another usable
    /// target is found if there is one (for hashing, the next one along the ring). The work is
    /// bounded even when nothing is usable.
    pub fn pick(&self, hash: Option<u64>, usable: impl Fn(usize) -> bool) -> Option<usize> {
        self.pick_attempt(false, hash, usable)
    }

    /// [`pick`](Self::pick) for a request's later attempt (a retry): round-robin does not move
    /// its cycle, so retries do not shift other requests' first picks.
    pub fn repick(&self, hash: Option<u64>, usable: impl Fn(usize) -> bool) -> Option<usize> {
        self.pick_attempt(true, hash, usable)
    }

    fn pick_attempt(
        &self,
        retry: bool,
        hash: Option<u64>,
        usable: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let shared = &*self.shared;
        let round_robin = |rr: &WeightedRoundRobin, usable: &dyn Fn(usize) -> bool| {
            if retry {
                rr.repick_usable(usable)
            } else {
                rr.pick_usable(usable)
            }
        };
        match &self.picker {
            Picker::RoundRobin(rr) => round_robin(rr, &usable),
            Picker::LeastConnections(lc) => lc.pick(|i| shared.in_flight(i), usable),
            Picker::ConsistentHashing(ring, rr) => match hash {
                Some(key) => ring.pick(key, usable),
                None => round_robin(rr, &usable),
            },
            Picker::Latency(p2c) => {
                let now = now_ms(Instant::now());
                p2c.pick(
                    |i| {
                        shared.targets.get(i).map_or(
                            latency::Load {
                                in_flight: 0,
                                estimate: None,
                            },
                            |t| latency::Load {
                                in_flight: t.in_flight.load(Ordering::Relaxed),
                                estimate: t.latency.estimate(now),
                            },
                        )
                    },
                    usable,
                )
            }
            Picker::Random(r) => r.pick(usable),
        }
    }

    /// Marks a request started on target `i`. The guard counts it in flight until
    /// [`InFlight::finish`] is called or the guard is dropped. An `i` out of range gives a guard
    /// that counts nothing.
    pub fn start(&self, i: usize) -> InFlight {
        if let Some(t) = self.shared.targets.get(i) {
            t.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        InFlight {
            shared: Arc::clone(&self.shared),
            target: i,
            // Only `latency` reads the clock: the others keep no latency.
            started: matches!(self.picker, Picker::Latency(_)).then(Instant::now),
            done: false,
        }
    }
}

/// A request in flight on one target. `Send + 'static`: it may travel with the response body to
/// another task.
///
/// [`finish`](InFlight::finish) records a completed exchange (any response from the target,
/// error statuses included) and, for `latency`, its duration as a sample. Dropping the guard
/// without finishing means the exchange failed or was aborted (connect error, timeout, client
/// gone): the request stops counting as in flight and, for `latency`, a penalty sample of
/// `max(time since start, 2 × the current estimate)` is recorded, so that a target failing fast
/// does not look fast; repeated failures double its cost each time, and the idle decay brings
/// it back to be tried later.
#[derive(Debug)]
pub struct InFlight {
    shared: Arc<Shared>,
    target: usize,
    started: Option<Instant>,
    done: bool,
}

impl InFlight {
    /// The target this request runs on.
    pub fn target(&self) -> usize {
        self.target
    }

    /// The exchange completed after `elapsed` (for `latency`, the sample: the request path
    /// decides what it spans, e.g. connect to end of the response body).
    pub fn finish(mut self, elapsed: Duration) {
        self.complete(Some(elapsed));
    }

    fn complete(&mut self, elapsed: Option<Duration>) {
        self.done = true;
        let Some(t) = self.shared.targets.get(self.target) else {
            return;
        };
        if let Some(started) = self.started {
            let now = Instant::now();
            let at = now_ms(now);
            let sample = match elapsed {
                Some(e) => e.as_nanos() as f64,
                None => {
                    let took = now.saturating_duration_since(started).as_nanos() as f64;
                    let estimate = t.latency.estimate(at).unwrap_or(0.0);
                    took.max(2.0 * estimate)
                }
            };
            t.latency.record(at, sample);
        }
        t.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.done {
            self.complete(None);
        }
    }
}

#[cfg(test)]
mod tests;
