//! Choosing the target of each attempt of one request: the upstream's balancer, the request's
//! hash key (consistent hashing), the targets this request already failed on (a retry goes
//! elsewhere), and the in-flight record of the current attempt (least-connections, latency).

use std::sync::Arc;
use std::time::Instant;

use http::HeaderValue;
use http::header::{self, HeaderMap};

use super::error::ProxyError;
use super::retry::RetryBudget;
use crate::balancer::{InFlight, hash_key};
use crate::consumers::Consumers;
use crate::health::Outcome;
use crate::plugins::{RequestCtx, query};
use crate::router::Captures;
use crate::snapshot::UpstreamRt;
use crate::snapshot::{HashInput, HashPolicy, ServiceRt, ServiceTarget, TargetAddr};

/// Where the attempts of one request go.
pub struct Attempts<'s> {
    to: To<'s>,
    hash: Option<u64>,
    tried: Tried,
    /// The current attempt's target index, in-flight record and start, and whether its
    /// outcome was reported to the target's health already.
    current: Option<(usize, InFlight, Instant, bool)>,
    failures: u32,
    retries: u32,
    budget: &'s RetryBudget,
}

enum To<'s> {
    Direct(&'s Arc<TargetAddr>),
    Upstream(&'s UpstreamRt),
    Unavailable,
}

/// Target indices already tried: a bit set for the first 64, a list beyond.
#[derive(Default)]
struct Tried {
    bits: u64,
    more: Vec<usize>,
}

impl Tried {
    fn insert(&mut self, i: usize) {
        if i < 64 {
            self.bits |= 1 << i;
        } else if !self.more.contains(&i) {
            self.more.push(i);
        }
    }
    fn contains(&self, i: usize) -> bool {
        if i < 64 {
            self.bits & (1 << i) != 0
        } else {
            self.more.contains(&i)
        }
    }
    fn is_empty(&self) -> bool {
        self.bits == 0 && self.more.is_empty()
    }
    fn clear(&mut self) {
        self.bits = 0;
        self.more.clear();
    }
}

impl<'s> Attempts<'s> {
    /// The attempts of a request to `service`, with its consistent-hashing key if any.
    /// The attempts of a request to `service`; `upstream` is the service's upstream, when its
    /// target is one (the caller has looked it up already).
    pub fn new(
        service: &'s ServiceRt,
        upstream: Option<&'s UpstreamRt>,
        hash: Option<u64>,
    ) -> Self {
        let to = match (upstream, &service.target) {
            (Some(up), _) => To::Upstream(up),
            (None, ServiceTarget::Direct(t)) => To::Direct(t),
            // Not reached: the caller answers 503 when the upstream is missing.
            (None, ServiceTarget::Upstream(_)) => To::Unavailable,
        };
        Attempts {
            to,
            hash,
            tried: Tried::default(),
            current: None,
            failures: 0,
            retries: service.retries,
            budget: &service.retry_budget,
        }
    }

    /// The target of the next attempt, and the upstream's `host_header` if it has one.
    pub fn next_target(
        &mut self,
    ) -> Result<(&'s Arc<TargetAddr>, Option<&'s HeaderValue>), ProxyError> {
        let up = match self.to {
            To::Direct(t) => return Ok((t, None)),
            To::Upstream(up) => up,
            To::Unavailable => return Err(ProxyError::NoTargets),
        };
        // A previous attempt that neither failed nor was answered (a stale pooled connection,
        // replayed) is not counted against its target.
        self.current = None;
        let healthy = |i: usize| up.health.target(i).is_none_or(|t| t.is_healthy());
        let tried = &self.tried;
        let usable = |i| !tried.contains(i) && healthy(i);
        let mut pick = if self.tried.is_empty() {
            up.balancer.pick(self.hash, usable)
        } else {
            up.balancer.repick(self.hash, usable)
        };
        if pick.is_none() && !self.tried.is_empty() {
            // Every healthy target failed once and retries remain: start over.
            self.tried.clear();
            pick = up.balancer.repick(self.hash, healthy);
        }
        let i = pick.ok_or(ProxyError::NoTargets)?;
        let target = up.targets.get(i).ok_or(ProxyError::NoTargets)?;
        self.current = Some((i, up.balancer.start(i), Instant::now(), false));
        Ok((target, up.host_header.as_ref()))
    }

    /// The current attempt failed (see [`super::retry`] for which failures are retried): if the
    /// service's `retries` allow another attempt, and for a failure after the request reached
    /// the upstream (`reached_upstream`: a timeout, a 5xx) its retry budget too, record the
    /// failure and return `true`: the next attempt goes to a target this request has not tried.
    /// A connection that failed before the upstream got the request costs it nothing, so it is
    /// not charged to the budget.
    pub fn retry(&mut self, reached_upstream: bool) -> bool {
        if self.failures >= self.retries || (reached_upstream && !self.budget.try_retry()) {
            return false;
        }
        self.failures += 1;
        if let Some((i, guard, _, _)) = self.current.take() {
            self.tried.insert(i);
            // Dropped unfinished: counted as a failed exchange.
            drop(guard);
        }
        true
    }

    /// Tell the current target's health (passive checks) how the attempt went.
    /// Once per attempt: a later report of the same attempt is ignored.
    pub fn report(&mut self, outcome: Outcome) {
        if let (To::Upstream(up), Some((i, _, _, reported))) = (&self.to, &mut self.current)
            && !*reported
        {
            *reported = true;
            if let Some(t) = up.health.target(*i) {
                t.report_passive(outcome);
            }
        }
    }

    /// The current attempt could not connect (`timed_out`: within `connect_timeout`). `Err`
    /// once no retry is allowed.
    pub fn connect_failed(
        &mut self,
        target: &TargetAddr,
        error: &dyn std::fmt::Display,
        timed_out: bool,
    ) -> Result<(), ProxyError> {
        tracing::debug!(target = %target.key, error = %error, attempt = self.failures + 1, "upstream connect failed");
        self.report(if timed_out {
            Outcome::Timeout
        } else {
            Outcome::ConnectFailure
        });
        if self.retry(false) {
            Ok(())
        } else {
            Err(ProxyError::ConnectFailed)
        }
    }

    /// The target answered with `status`: record the exchange.
    pub fn answered(&mut self, status: u16) {
        self.report(Outcome::Status(status));
        if let Some((_, guard, started, _)) = self.current.take() {
            guard.finish(started.elapsed());
        }
    }
}

/// A cookie the gateway made up for a client that had none, to set on the response.
pub struct NewCookie(pub HeaderValue);

/// The consistent-hashing key of a request: `policy.on`, or `policy.fallback` when the request
/// lacks that input. `None` (no input at all) makes the balancer fall back to round-robin, as
/// Kong does. A cookie input the request lacks is made up (and returned, to be set).
pub fn request_hash(
    policy: &HashPolicy,
    ctx: &RequestCtx,
    headers: &HeaderMap,
    query_string: Option<&str>,
    captures: Option<&Captures>,
    consumers: &Consumers,
) -> (Option<u64>, Option<NewCookie>) {
    let input = |input: &HashInput| -> Option<u64> {
        match input {
            HashInput::Consumer => ctx
                .consumer
                .and_then(|c| consumers.get(c))
                .map(|c| hash_key(c.id.as_bytes())),
            HashInput::Ip => Some(match ctx.client_ip {
                std::net::IpAddr::V4(a) => hash_key(&a.octets()),
                std::net::IpAddr::V6(a) => hash_key(&a.octets()),
            }),
            HashInput::Header(name) => {
                let mut values = headers.get_all(name).iter();
                let first = values.next()?;
                let Some(second) = values.next() else {
                    return Some(hash_key(first.as_bytes()));
                };
                // Several lines hash as one list, in order.
                let mut joined = first.as_bytes().to_vec();
                for v in std::iter::once(second).chain(values) {
                    joined.push(b',');
                    joined.extend_from_slice(v.as_bytes());
                }
                Some(hash_key(&joined))
            }
            HashInput::Cookie { name, .. } => cookie(headers, name).map(|v| hash_key(v.as_bytes())),
            HashInput::Path => ctx.path.as_ref().map(|p| hash_key(p.as_bytes())),
            HashInput::QueryArg(name) => {
                let values = query::values(query_string?, name);
                (!values.is_empty()).then(|| hash_key(values.join(",").as_bytes()))
            }
            HashInput::UriCapture(name) => captures?
                .named
                .iter()
                .find(|(n, _)| n == name)
                .filter(|(_, v)| !v.is_empty())
                .map(|(_, v)| hash_key(v.as_bytes())),
        }
    };
    if let Some(key) = input(&policy.on) {
        return (Some(key), None);
    }
    if let HashInput::Cookie { name, path } = &policy.on {
        let value = uuid::Uuid::new_v4().simple().to_string();
        let cookie = HeaderValue::from_str(&format!(
            "{name}={value}; Path={path}; SameSite=Lax; HttpOnly"
        ))
        .ok();
        return (Some(hash_key(value.as_bytes())), cookie.map(NewCookie));
    }
    (policy.fallback.as_ref().and_then(input), None)
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tried_targets_beyond_sixty_four() {
        let mut t = Tried::default();
        for i in [0, 63, 64, 200] {
            assert!(!t.contains(i));
            t.insert(i);
            assert!(t.contains(i));
        }
        t.insert(200);
        assert_eq!(t.more.len(), 2);
        t.clear();
        assert!(t.is_empty());
    }

    #[test]
    fn reads_cookies() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; sticky=abc".parse().unwrap());
        h.append(header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(cookie(&h, "sticky"), Some("abc"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
