//! Active health checks: probes sent to targets in the background, on a dedicated thread with
//! its own single-threaded runtime, so the proxy workers never run or wait for a probe.
//!
//! Per upstream with active checks on, two loops run: every `healthy.interval` the healthy
//! targets are probed, every `unhealthy.interval` the unhealthy ones; an upstream's probes in
//! flight are bounded by its `concurrency`. Each probe uses a fresh connection (a pooled one
//! would hide a target that stopped accepting) which is closed afterwards.
//!
//! `https` probes shake hands over TLS first: the certificate is verified against the system's
//! trust store unless `https_verify_certificate` is false; the server name is `https_sni`, or
//! else the probe's `Host` (the upstream's `host_header`, or the target's host). A failed
//! handshake counts as a TCP failure.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::config::{CheckType, Healthchecks, secs};
use super::state::{Outcome, TargetHealth, UpstreamHealth};
use crate::proxy::pool::{self, ConnectError, PoolSettings};
use crate::proxy::upstream_tls::{ClientTls, TlsSettings};

/// Why the checker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start the health-check thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// The running active checker. Dropping it stops it too (without waiting).
pub struct ActiveChecker {
    upstreams: watch::Sender<Vec<Arc<UpstreamHealth>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ActiveChecker {
    /// Start the checker thread, probing `upstreams` (those without active checks are skipped).
    pub fn start(upstreams: Vec<Arc<UpstreamHealth>>) -> Result<ActiveChecker, StartError> {
        let (tx, rx) = watch::channel(upstreams);
        let thread = crate::runtime::spawn("gatehouse-health".into(), move || supervise(rx))?;
        Ok(ActiveChecker {
            upstreams: tx,
            thread: Some(thread),
        })
    }

    /// Check this set from now on (after a reload). Upstreams whose checks and targets did not
    /// change keep their running loops and timers; the others restart.
    pub fn update(&self, upstreams: Vec<Arc<UpstreamHealth>>) {
        self.upstreams.send_replace(upstreams);
    }

    /// Stop probing and wait for the thread to end (probes in flight are abandoned).
    pub fn stop(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        // Closing the channel is the stop signal.
        let (closed, _) = watch::channel(Vec::new());
        drop(std::mem::replace(&mut self.upstreams, closed));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ActiveChecker {
    fn drop(&mut self) {
        // Signal only: joining in drop could stall whoever drops it.
        let (closed, _) = watch::channel(Vec::new());
        drop(std::mem::replace(&mut self.upstreams, closed));
    }
}

/// One upstream's loops (aborted when dropped).
struct Running {
    health: Arc<UpstreamHealth>,
    _loops: JoinSet<()>,
}

/// Same probes: same checks, same targets in the same order, same `Host`.
fn same_checks(a: &UpstreamHealth, b: &UpstreamHealth) -> bool {
    a.policy.config == b.policy.config
        && a.host_header == b.host_header
        && a.targets.len() == b.targets.len()
        && a.targets
            .iter()
            .zip(&b.targets)
            .all(|(x, y)| x.addr.key == y.addr.key && Arc::ptr_eq(&x.state, &y.state))
}

async fn supervise(mut rx: watch::Receiver<Vec<Arc<UpstreamHealth>>>) {
    let mut running: HashMap<Arc<str>, Running> = HashMap::new();
    loop {
        let set: Vec<Arc<UpstreamHealth>> = rx.borrow_and_update().clone();
        let mut next = HashMap::new();
        for up in set {
            if !up.policy.config.active_enabled() {
                continue;
            }
            match running.remove(&up.name) {
                Some(r) if same_checks(&r.health, &up) => {
                    next.insert(up.name.clone(), r);
                }
                _ => {
                    next.insert(up.name.clone(), spawn_upstream(up));
                }
            }
        }
        // Loops of upstreams gone or changed end here.
        running = next;
        if rx.changed().await.is_err() {
            return;
        }
    }
}

fn spawn_upstream(up: Arc<UpstreamHealth>) -> Running {
    let cfg = &up.policy.config.active;
    let limit = usize::try_from(cfg.concurrency)
        .unwrap_or(usize::MAX)
        .min(Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(limit));
    let probe = Arc::new(Probe::new(&up.policy.config));
    let mut loops = JoinSet::new();
    for (interval, healthy) in [
        (cfg.healthy.interval, true),
        (cfg.unhealthy.interval, false),
    ] {
        if interval > 0.0 {
            loops.spawn(probe_loop(
                up.clone(),
                probe.clone(),
                permits.clone(),
                secs(interval),
                healthy,
            ));
        }
    }
    tracing::debug!(upstream = %up.name, targets = up.targets.len(), "active health checks started");
    Running {
        health: up,
        _loops: loops,
    }
}

/// Every `every`, probe the targets whose health is `healthy`; a round that outlasts the
/// interval delays the next one rather than overlapping it.
async fn probe_loop(
    up: Arc<UpstreamHealth>,
    probe: Arc<Probe>,
    permits: Arc<Semaphore>,
    every: Duration,
    healthy: bool,
) {
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let mut round = JoinSet::new();
        for t in up.targets.iter().filter(|t| t.is_healthy() == healthy) {
            let (t, probe, permits, up) = (t.clone(), probe.clone(), permits.clone(), up.clone());
            round.spawn(async move {
                // The semaphore is never closed; a failure would only mean no limit.
                let _permit = permits.acquire_owned().await;
                let host = up.host_header.as_ref().unwrap_or(&t.addr.host_header);
                let outcome = probe.run(&t, host).await;
                tracing::debug!(upstream = %up.name, target = %t.addr.key, ?outcome, "health probe");
                t.report_active(outcome);
            });
        }
        while round.join_next().await.is_some() {}
    }
}

/// What a probe sends, prepared once per upstream.
struct Probe {
    kind: CheckType,
    timeout: Duration,
    request: http::request::Parts,
    settings: Arc<PoolSettings>,
    /// For `https` probes: the TLS client, and `https_sni` when set.
    tls: Option<(ClientTls, Option<HeaderValue>)>,
}

impl Probe {
    fn new(hc: &Healthchecks) -> Probe {
        let a = &hc.active;
        let mut request = Request::new(());
        *request.method_mut() = Method::GET;
        if let Ok(uri) = a.http_path.parse() {
            *request.uri_mut() = uri;
        }
        let headers = request.headers_mut();
        for (name, values) in a.headers.iter().flatten() {
            if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
                for v in values.iter() {
                    if let Ok(v) = HeaderValue::from_str(v) {
                        headers.append(name.clone(), v);
                    }
                }
            }
        }
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        if !headers.contains_key(header::USER_AGENT) {
            headers.insert(
                header::USER_AGENT,
                HeaderValue::from_static("gatehouse-healthcheck"),
            );
        }
        let tls = if a.kind == CheckType::Https {
            let settings = TlsSettings {
                verify: a.https_verify_certificate,
                ..TlsSettings::default()
            };
            match ClientTls::new(&settings) {
                Ok(tls) => {
                    let sni = a
                        .https_sni
                        .as_deref()
                        .and_then(|s| HeaderValue::from_str(s).ok());
                    Some((tls, sni))
                }
                Err(e) => {
                    // Not expected (no CA certificates are parsed here); every probe then fails.
                    tracing::warn!(error = %e, "https health checks cannot run");
                    None
                }
            }
        } else {
            None
        };
        Probe {
            kind: a.kind,
            timeout: hc.active_timeout(),
            request: request.into_parts().0,
            settings: Arc::new(PoolSettings::default()),
            tls,
        }
    }

    /// One probe, bounded by the timeout as a whole.
    async fn run(&self, target: &TargetHealth, host: &HeaderValue) -> Outcome {
        let deadline = Instant::now() + self.timeout;
        if self.kind == CheckType::Https && self.tls.is_none() {
            return Outcome::ConnectFailure;
        }
        let dest = self
            .tls
            .as_ref()
            .map(|(tls, sni)| tls.dest(Some(sni.as_ref().unwrap_or(host)), &target.addr));
        let exchange = async {
            let conn = match pool::checkout_h1(
                false,
                &target.addr,
                dest.as_ref(),
                self.timeout,
                &self.settings,
            )
            .await
            {
                Ok(c) => c.conn,
                Err(ConnectError::Timeout) => return Outcome::Timeout,
                Err(_) => return Outcome::ConnectFailure,
            };
            if self.kind == CheckType::Tcp {
                conn.retire();
                return Outcome::Connected;
            }
            let mut request = self.request.clone();
            if !request.headers.contains_key(header::HOST) {
                request.headers.insert(header::HOST, host.clone());
            }
            match conn.send(&request, self.timeout).await {
                Ok((head, _body)) => Outcome::Status(head.status.as_u16()),
                Err(crate::proxy::h1_client::H1Error::WriteTimeout) => Outcome::Timeout,
                Err(_) => Outcome::ConnectFailure,
            }
        };
        tokio::time::timeout_at(deadline, exchange)
            .await
            .unwrap_or(Outcome::Timeout)
    }
}
