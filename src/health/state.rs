//! Health state of targets: one [`TargetState`] per (upstream name, `host:port`), kept by the
//! [`HealthRegistry`] across configuration reloads, and read/updated lock-free.
//!
//! The health flag and the four consecutive counters share one atomic word, so a transition
//! (threshold reached: flip the flag, reset the counters) is a single compare-and-swap and
//! exactly one reporter sees it happen and logs it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::HeaderValue;

use super::config::{CheckType, Healthchecks, secs};
use crate::balancer::TargetLoad;
use crate::snapshot::TargetAddr;

/// Bit set in the state word while the target is unhealthy (0, the initial word, is healthy).
const UNHEALTHY: u64 = 1;
/// Bit offsets of the 8-bit consecutive counters in the state word.
const SUCCESSES: u32 = 8;
const HTTP_FAILURES: u32 = 16;
const TCP_FAILURES: u32 = 24;
const TIMEOUTS: u32 = 32;

/// What one probe or one proxied attempt says about a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response with this status came back.
    Status(u16),
    /// A tcp check connected (no HTTP exchange).
    Connected,
    /// The connection could not be made, or broke before a response head came back.
    ConnectFailure,
    /// Connecting, sending or waiting for the response head took too long.
    Timeout,
}

/// An outcome classified by a check's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    Success,
    HttpFailure,
    TcpFailure,
    Timeout,
}

/// Which checks' thresholds apply to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Active,
    Passive,
}

/// HTTP statuses 0..1023 as a bitmap: membership is one shift and mask.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StatusSet([u64; 16]);

impl StatusSet {
    fn new(list: &[u32]) -> StatusSet {
        let mut set = StatusSet::default();
        for &s in list.iter().filter(|&&s| s < 1024) {
            set.0[(s / 64) as usize] |= 1 << (s % 64);
        }
        set
    }

    fn contains(&self, status: u16) -> bool {
        self.0
            .get(usize::from(status / 64))
            .is_some_and(|w| w & (1 << (status % 64)) != 0)
    }
}

/// Thresholds of one kind of check; 0 turns a criterion off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Thresholds {
    pub successes: u8,
    pub http_failures: u8,
    pub tcp_failures: u8,
    pub timeouts: u8,
}

/// Validated counters are at most 255.
fn counter(v: u32) -> u8 {
    u8::try_from(v).unwrap_or(u8::MAX)
}

/// A `healthchecks` block compiled for the data path.
#[derive(Debug)]
pub struct Policy {
    pub config: Arc<Healthchecks>,
    pub(crate) active: Thresholds,
    pub(crate) passive: Thresholds,
    active_healthy: StatusSet,
    active_unhealthy: StatusSet,
    passive_healthy: StatusSet,
    passive_unhealthy: StatusSet,
    active_tcp_only: bool,
    passive_tcp_only: bool,
    passive_on: bool,
    /// When no active check can bring a target back, it is ejected for a time instead.
    eject: bool,
    base_ejection: Duration,
    max_ejection: Duration,
}

impl Policy {
    pub fn new(config: Arc<Healthchecks>) -> Policy {
        let (a, p) = (&config.active, &config.passive);
        Policy {
            active: Thresholds {
                successes: counter(a.healthy.successes),
                http_failures: counter(a.unhealthy.http_failures),
                tcp_failures: counter(a.unhealthy.tcp_failures),
                timeouts: counter(a.unhealthy.timeouts),
            },
            passive: Thresholds {
                successes: counter(p.healthy.successes),
                http_failures: counter(p.unhealthy.http_failures),
                tcp_failures: counter(p.unhealthy.tcp_failures),
                timeouts: counter(p.unhealthy.timeouts),
            },
            active_healthy: StatusSet::new(&a.healthy.http_statuses),
            active_unhealthy: StatusSet::new(&a.unhealthy.http_statuses),
            passive_healthy: StatusSet::new(&p.healthy.http_statuses),
            passive_unhealthy: StatusSet::new(&p.unhealthy.http_statuses),
            active_tcp_only: a.kind == CheckType::Tcp,
            passive_tcp_only: p.kind == CheckType::Tcp,
            passive_on: config.passive_enabled(),
            eject: !config.active_recovers(),
            base_ejection: secs(p.unhealthy.base_ejection_time),
            max_ejection: secs(p.unhealthy.max_ejection_time),
            config,
        }
    }

    /// What an outcome means for the checks of `source`, or `None` when it does not count
    /// (a status in neither list).
    pub(crate) fn classify(&self, source: Source, outcome: Outcome) -> Option<Event> {
        let (healthy, unhealthy, tcp_only) = match source {
            Source::Active => (
                &self.active_healthy,
                &self.active_unhealthy,
                self.active_tcp_only,
            ),
            Source::Passive => (
                &self.passive_healthy,
                &self.passive_unhealthy,
                self.passive_tcp_only,
            ),
        };
        match outcome {
            // A tcp check only cares that the connection worked.
            Outcome::Status(_) | Outcome::Connected if tcp_only => Some(Event::Success),
            Outcome::Connected => None,
            Outcome::Status(s) if unhealthy.contains(s) => Some(Event::HttpFailure),
            Outcome::Status(s) if healthy.contains(s) => Some(Event::Success),
            Outcome::Status(_) => None,
            Outcome::ConnectFailure => Some(Event::TcpFailure),
            Outcome::Timeout => Some(Event::Timeout),
        }
    }

    fn thresholds(&self, source: Source) -> &Thresholds {
        match source {
            Source::Active => &self.active,
            Source::Passive => &self.passive,
        }
    }
}

fn get(word: u64, shift: u32) -> u8 {
    // Truncation keeps exactly the 8 bits of the counter.
    (word >> shift) as u8
}

fn set(word: u64, shift: u32, v: u8) -> u64 {
    (word & !(0xff << shift)) | (u64::from(v) << shift)
}

/// The next state word after `event` (Kong's rules): a success clears the failure counters and
/// a failure the success counter; a target turns unhealthy when a failure counter reaches its
/// threshold and healthy when successes reach theirs; every counter restarts on a transition.
pub(crate) fn step(word: u64, event: Event, th: &Thresholds) -> u64 {
    let unhealthy = word & UNHEALTHY != 0;
    let bump = |w: u64, shift: u32| set(w, shift, get(w, shift).saturating_add(1));
    match event {
        Event::Success => {
            if !unhealthy {
                // Healthy and succeeding: only failure streaks end.
                return word & !(0xff_ffff << HTTP_FAILURES);
            }
            let w = bump(word & UNHEALTHY | (word & (0xff << SUCCESSES)), SUCCESSES);
            if th.successes > 0 && get(w, SUCCESSES) >= th.successes {
                0
            } else {
                w
            }
        }
        Event::HttpFailure | Event::TcpFailure | Event::Timeout => {
            let (shift, limit) = match event {
                Event::HttpFailure => (HTTP_FAILURES, th.http_failures),
                Event::TcpFailure => (TCP_FAILURES, th.tcp_failures),
                _ => (TIMEOUTS, th.timeouts),
            };
            let w = bump(set(word, SUCCESSES, 0), shift);
            if !unhealthy && limit > 0 && get(w, shift) >= limit {
                UNHEALTHY
            } else {
                w
            }
        }
    }
}

/// Milliseconds since the first call in this process (never 0 after the first millisecond,
/// which keeps 0 free to mean "no ejection").
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

/// The shared, reload-surviving health of one target of one upstream.
#[derive(Debug)]
pub struct TargetState {
    upstream: Arc<str>,
    target: Arc<str>,
    /// Health flag and consecutive counters (see [`step`]).
    word: AtomicU64,
    /// When the current ejection ends ([`now_ms`] clock); 0 when not ejected.
    eject_until: AtomicU64,
    /// Ejections in a row (decays while the target stays healthy).
    ejections: AtomicU32,
    /// When the target last came back ([`now_ms`] clock).
    restored_at: AtomicU64,
    /// The configuration the state was built under: a changed one starts afresh.
    config: ArcSwap<Healthchecks>,
    /// The balancer's record of the target's load, kept here so that it survives reloads
    /// with the rest of the target's state (and is not reset with the health counters).
    load: Arc<TargetLoad>,
}

impl TargetState {
    fn new(upstream: Arc<str>, target: Arc<str>, config: Arc<Healthchecks>) -> TargetState {
        TargetState {
            upstream,
            target,
            word: AtomicU64::new(0),
            eject_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            restored_at: AtomicU64::new(0),
            config: ArcSwap::new(config),
            load: Arc::default(),
        }
    }

    /// The target's load record, for its upstream's balancer.
    pub fn load(&self) -> &Arc<TargetLoad> {
        &self.load
    }

    /// Healthy, or unhealthy with an ejection that has ended (which brings it back).
    pub fn is_healthy(&self) -> bool {
        if self.word.load(Ordering::Acquire) & UNHEALTHY == 0 {
            return true;
        }
        let until = self.eject_until.load(Ordering::Acquire);
        if until == 0 || now_ms() < until {
            return false;
        }
        // Whoever clears the deadline performs the transition; others just see it ended.
        if self
            .eject_until
            .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.word.store(0, Ordering::Release);
            self.restored_at.store(now_ms(), Ordering::Release);
            self.log(true, "ejection time over");
        }
        true
    }

    /// Apply an event with the thresholds of `source`; returns the new health on a transition.
    pub(crate) fn record(&self, policy: &Policy, source: Source, event: Event) -> Option<bool> {
        let th = policy.thresholds(source);
        let mut old = self.word.load(Ordering::Acquire);
        let new = loop {
            let new = step(old, event, th);
            if new == old {
                return None;
            }
            match self
                .word
                .compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break new,
                Err(current) => old = current,
            }
        };
        let was = old & UNHEALTHY == 0;
        let now = new & UNHEALTHY == 0;
        if was == now {
            return None;
        }
        let why = match (source, event) {
            (Source::Active, Event::Success) => "active check successes",
            (Source::Passive, Event::Success) => "passive check successes",
            (Source::Active, Event::HttpFailure) => "active check http failures",
            (Source::Active, Event::TcpFailure) => "active check tcp failures",
            (Source::Active, Event::Timeout) => "active check timeouts",
            (Source::Passive, Event::HttpFailure) => "passive check http failures",
            (Source::Passive, Event::TcpFailure) => "passive check tcp failures",
            (Source::Passive, Event::Timeout) => "passive check timeouts",
        };
        if now {
            self.eject_until.store(0, Ordering::Release);
            self.restored_at.store(now_ms(), Ordering::Release);
            self.log(true, why);
        } else if policy.eject {
            let ms = self.ejection_time(policy).as_millis();
            let ms = u64::try_from(ms).unwrap_or(u64::MAX).max(1);
            self.eject_until
                .store(now_ms().saturating_add(ms), Ordering::Release);
            tracing::info!(
                upstream = %self.upstream,
                target = %self.target,
                reason = why,
                ejection_ms = ms,
                "target is UNHEALTHY (ejected)"
            );
        } else {
            self.log(false, why);
        }
        Some(now)
    }

    /// The length of a new ejection: n × base for the n-th ejection in a row, at most the
    /// maximum, as Envoy's outlier detection; each base period spent healthy since the last
    /// ejection forgives one.
    fn ejection_time(&self, policy: &Policy) -> Duration {
        let base_ms = u64::try_from(policy.base_ejection.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let healthy_for = now_ms().saturating_sub(self.restored_at.load(Ordering::Acquire));
        let forgiven = u32::try_from(healthy_for / base_ms).unwrap_or(u32::MAX);
        let prev = self.ejections.load(Ordering::Acquire);
        let n = prev.saturating_sub(forgiven).saturating_add(1);
        self.ejections.store(n, Ordering::Release);
        policy
            .base_ejection
            .saturating_mul(n)
            .min(policy.max_ejection)
    }

    /// Ejections in a row so far (for diagnostics and tests).
    pub fn ejections(&self) -> u32 {
        self.ejections.load(Ordering::Acquire)
    }

    /// Time left in the current ejection, if any.
    pub fn ejected_for(&self) -> Option<Duration> {
        let until = self.eject_until.load(Ordering::Acquire);
        (until != 0).then(|| Duration::from_millis(until.saturating_sub(now_ms())))
    }

    fn log(&self, healthy: bool, why: &str) {
        tracing::info!(
            upstream = %self.upstream,
            target = %self.target,
            reason = why,
            "target is {}",
            if healthy { "HEALTHY" } else { "UNHEALTHY" }
        );
    }

    /// Set the target's health by hand (Kong's `PUT /upstreams/{u}/targets/{t}/healthy`,
    /// `…/unhealthy`): healthy clears every counter and ejection; unhealthy holds until an
    /// active check brings the target back (its `healthy.successes`) or a manual `healthy`.
    pub fn set_health(&self, healthy: bool) {
        if healthy {
            self.reset();
            self.restored_at.store(now_ms(), Ordering::Release);
        } else {
            self.eject_until.store(0, Ordering::Release);
            self.word.store(UNHEALTHY, Ordering::Release);
        }
        self.log(healthy, "set through the Admin API");
    }

    fn reset(&self) {
        self.word.store(0, Ordering::Release);
        self.eject_until.store(0, Ordering::Release);
        self.ejections.store(0, Ordering::Release);
    }

    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    pub fn target(&self) -> &str {
        &self.target
    }
}

/// A target's health as one snapshot sees it: the shared state and this configuration's policy.
#[derive(Debug, Clone)]
pub struct TargetHealth {
    pub addr: Arc<TargetAddr>,
    pub weight: u32,
    pub state: Arc<TargetState>,
    policy: Arc<Policy>,
}

impl TargetHealth {
    /// Whether the balancer may pick this target: one atomic load while healthy.
    #[inline]
    pub fn is_healthy(&self) -> bool {
        self.state.is_healthy()
    }

    /// Feed the outcome of one proxied attempt to the passive checks (lock-free; nothing to do
    /// when they are off).
    #[inline]
    pub fn report_passive(&self, outcome: Outcome) {
        if !self.policy.passive_on {
            return;
        }
        if let Some(event) = self.policy.classify(Source::Passive, outcome) {
            self.state.record(&self.policy, Source::Passive, event);
        }
    }

    /// Feed the outcome of one active probe.
    pub fn report_active(&self, outcome: Outcome) {
        if let Some(event) = self.policy.classify(Source::Active, outcome) {
            self.state.record(&self.policy, Source::Active, event);
        }
    }

    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }
}

/// The health of one upstream's targets under one configuration, in the order given to
/// [`HealthRegistry::bind`] (the integrator keeps it aligned with `UpstreamRt::targets`).
#[derive(Debug)]
pub struct UpstreamHealth {
    pub name: Arc<str>,
    pub policy: Arc<Policy>,
    pub targets: Vec<TargetHealth>,
    /// The upstream's `host_header`, sent by active HTTP probes instead of the target's.
    pub host_header: Option<HeaderValue>,
}

impl UpstreamHealth {
    /// Target `i`'s health (`None` past the end).
    #[inline]
    pub fn target(&self, i: usize) -> Option<&TargetHealth> {
        self.targets.get(i)
    }

    /// Kong's `GET /upstreams/{name}/health` body.
    pub fn report(&self) -> HealthReport {
        let off = self.policy.config.is_off();
        let data: Vec<TargetReport> = self
            .targets
            .iter()
            .map(|t| TargetReport {
                target: t.addr.key.to_string(),
                weight: t.weight,
                // A target set unhealthy by hand is so whether checks run or not.
                health: match (off, t.is_healthy()) {
                    (_, false) => Health::Unhealthy,
                    (true, true) => Health::HealthchecksOff,
                    (false, true) => Health::Healthy,
                },
            })
            .collect();
        HealthReport {
            total: data.len(),
            data,
            next: None,
        }
    }
}

/// A target's health as Kong's Admin API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Health {
    Healthy,
    Unhealthy,
    HealthchecksOff,
}

/// One entry of [`HealthReport::data`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TargetReport {
    pub target: String,
    pub weight: u32,
    pub health: Health,
}

/// Kong's shape: `{"total":n,"data":[...],"next":null}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HealthReport {
    pub total: usize,
    pub data: Vec<TargetReport>,
    pub next: Option<String>,
}

impl HealthReport {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

type Key = (Arc<str>, Arc<str>);

/// Every target's state, keyed by (upstream name, `host:port`). Entries are weak: a state
/// lives as long as a snapshot (or the active checker) uses it, so a target removed from the
/// configuration loses its state once the last snapshot naming it is gone, and a failed reload
/// loses nothing. Only compilation and the checker touch the lock, never a request.
#[derive(Debug, Default)]
pub struct HealthRegistry {
    states: RwLock<HashMap<Key, Weak<TargetState>>>,
}

impl HealthRegistry {
    pub fn new() -> Arc<HealthRegistry> {
        Arc::new(HealthRegistry::default())
    }

    /// The health of an upstream's targets under `config`: existing state for a known
    /// (upstream, target) pair, fresh (healthy) state otherwise. A pair whose upstream's
    /// `healthchecks` changed starts afresh, since its counters and ejection were earned
    /// under other rules.
    pub fn bind(
        &self,
        upstream: &str,
        config: Arc<Healthchecks>,
        host_header: Option<HeaderValue>,
        targets: impl IntoIterator<Item = (Arc<TargetAddr>, u32)>,
    ) -> Arc<UpstreamHealth> {
        let name: Arc<str> = upstream.into();
        let policy = Arc::new(Policy::new(config.clone()));
        let mut states = self.states.write().unwrap_or_else(|e| e.into_inner());
        states.retain(|_, w| w.strong_count() > 0);
        let targets = targets
            .into_iter()
            .map(|(addr, weight)| {
                let key = (name.clone(), addr.key.clone());
                let state = match states.get(&key).and_then(Weak::upgrade) {
                    Some(s) => {
                        if **s.config.load() != *config {
                            s.reset();
                            s.config.store(config.clone());
                        }
                        s
                    }
                    None => {
                        let s = Arc::new(TargetState::new(
                            name.clone(),
                            addr.key.clone(),
                            config.clone(),
                        ));
                        states.insert(key, Arc::downgrade(&s));
                        s
                    }
                };
                TargetHealth {
                    addr,
                    weight,
                    state,
                    policy: policy.clone(),
                }
            })
            .collect();
        Arc::new(UpstreamHealth {
            name,
            policy,
            targets,
            host_header,
        })
    }

    /// The live state of a target, if some snapshot still uses it.
    pub fn get(&self, upstream: &str, target: &str) -> Option<Arc<TargetState>> {
        let states = self.states.read().unwrap_or_else(|e| e.into_inner());
        states
            .get(&(Arc::from(upstream), Arc::from(target)))
            .and_then(Weak::upgrade)
    }

    /// Targets with live state.
    pub fn len(&self) -> usize {
        let states = self.states.read().unwrap_or_else(|e| e.into_inner());
        states.values().filter(|w| w.strong_count() > 0).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn th(s: u8, h: u8, t: u8, o: u8) -> Thresholds {
        Thresholds {
            successes: s,
            http_failures: h,
            tcp_failures: t,
            timeouts: o,
        }
    }

    fn run(word: u64, events: &[Event], th: &Thresholds) -> u64 {
        events.iter().fold(word, |w, e| step(w, *e, th))
    }

    #[test]
    fn failures_in_a_row_turn_unhealthy_and_successes_turn_healthy() {
        use Event::*;
        let t = th(2, 3, 2, 1);
        assert_eq!(run(0, &[HttpFailure, HttpFailure], &t) & UNHEALTHY, 0);
        assert_eq!(run(0, &[HttpFailure; 3], &t), UNHEALTHY);
        // A success in between ends the streak.
        let w = run(0, &[HttpFailure, HttpFailure, Success, HttpFailure], &t);
        assert_eq!(w & UNHEALTHY, 0);
        assert_eq!(get(w, HTTP_FAILURES), 1);
        // Kinds count separately.
        assert_eq!(
            run(0, &[TcpFailure, HttpFailure, TcpFailure], &t),
            UNHEALTHY
        );
        assert_eq!(run(0, &[Timeout], &t), UNHEALTHY);
        // Back: counters were reset on the way down; a failure resets the successes.
        assert_eq!(run(UNHEALTHY, &[Success, Success], &t), 0);
        let w = run(UNHEALTHY, &[Success, TcpFailure, Success], &t);
        assert_eq!((w & UNHEALTHY, get(w, SUCCESSES)), (UNHEALTHY, 1));
    }

    #[test]
    fn zero_disables_a_criterion_and_counters_saturate() {
        use Event::*;
        let t = th(0, 0, 1, 0);
        assert_eq!(run(0, &[HttpFailure; 300], &t) & UNHEALTHY, 0);
        assert_eq!(get(run(0, &[HttpFailure; 300], &t), HTTP_FAILURES), 255);
        assert_eq!(run(0, &[Timeout; 10], &t) & UNHEALTHY, 0);
        assert_eq!(run(UNHEALTHY, &[Success; 300], &t) & UNHEALTHY, UNHEALTHY);
    }

    #[test]
    fn statuses_are_classified_per_source() {
        let mut hc = Healthchecks::default();
        hc.passive.unhealthy.http_failures = 1;
        let p = Policy::new(Arc::new(hc.clone()));
        assert_eq!(
            p.classify(Source::Passive, Outcome::Status(503)),
            Some(Event::HttpFailure)
        );
        assert_eq!(p.classify(Source::Passive, Outcome::Status(404)), None);
        assert_eq!(
            p.classify(Source::Passive, Outcome::Status(204)),
            Some(Event::Success)
        );
        assert_eq!(
            p.classify(Source::Active, Outcome::Status(404)),
            Some(Event::HttpFailure)
        );
        assert_eq!(p.classify(Source::Active, Outcome::Status(204)), None);
        assert_eq!(
            p.classify(Source::Active, Outcome::Timeout),
            Some(Event::Timeout)
        );
        hc.passive.kind = CheckType::Tcp;
        let p = Policy::new(Arc::new(hc));
        assert_eq!(
            p.classify(Source::Passive, Outcome::Status(503)),
            Some(Event::Success)
        );
        assert_eq!(
            p.classify(Source::Passive, Outcome::ConnectFailure),
            Some(Event::TcpFailure)
        );
    }

    #[test]
    fn registry_keeps_state_while_used_and_resets_on_config_change() {
        let reg = HealthRegistry::new();
        let mut hc = Healthchecks::default();
        hc.passive.unhealthy.tcp_failures = 1;
        let hc = Arc::new(hc);
        let addr = Arc::new(crate::snapshot::target_addr("127.0.0.1", 9));
        let a = reg.bind("u", hc.clone(), None, [(addr.clone(), 100)]);
        a.targets[0].report_passive(Outcome::ConnectFailure);
        assert!(!a.targets[0].is_healthy());
        let b = reg.bind("u", hc.clone(), None, [(addr.clone(), 100)]);
        assert!(!b.targets[0].is_healthy(), "same config: state kept");
        let mut other = (*hc).clone();
        other.passive.unhealthy.tcp_failures = 2;
        let c = reg.bind("u", Arc::new(other), None, [(addr.clone(), 100)]);
        assert!(c.targets[0].is_healthy(), "changed config: fresh state");
        drop((a, b, c));
        assert!(reg.is_empty());
    }
}
