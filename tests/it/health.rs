//! Health checks driven directly (the module alone, not yet through the proxy): real servers on
//! loopback, an active checker with intervals of 100 ms, passive reports with short ejections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use gatehouse::health::{
    ActiveChecker, Health, HealthRegistry, Healthchecks, Outcome, UpstreamHealth,
};
use gatehouse::snapshot::TargetAddr;
use http::HeaderValue;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::support::Upstream;

/// Slack on top of the time a transition needs: the checker runs on its own thread, and this
/// machine is shared.
const SLACK: Duration = Duration::from_millis(700);

fn target(addr: SocketAddr) -> Arc<TargetAddr> {
    let key = addr.to_string();
    Arc::new(TargetAddr {
        host: addr.ip().to_string(),
        port: addr.port(),
        host_header: HeaderValue::from_str(&key).unwrap(),
        key: key.into(),
    })
}

fn checks(v: Value) -> Arc<Healthchecks> {
    Arc::new(Healthchecks::parse(&v).unwrap())
}

fn bind(reg: &HealthRegistry, hc: &Arc<Healthchecks>, addrs: &[SocketAddr]) -> Arc<UpstreamHealth> {
    reg.bind(
        "svc",
        hc.clone(),
        None,
        addrs.iter().map(|a| (target(*a), 100)),
    )
}

/// Poll `cond` every 10 ms until it holds; the time it took, or a panic after `limit`.
async fn within(limit: Duration, what: &str, cond: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

fn healthy(up: &UpstreamHealth, i: usize) -> bool {
    up.target(i).unwrap().is_healthy()
}

/// A raw HTTP server answering every request with the status currently set, `Connection:
/// close`; it counts requests.
struct StatusServer {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    requests: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl StatusServer {
    async fn start(status: u16) -> StatusServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let status = Arc::new(AtomicU16::new(status));
        let requests = Arc::new(AtomicUsize::new(0));
        let (s, r) = (status.clone(), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (s, r) = (s.clone(), r.clone());
                tokio::spawn(async move {
                    if crate::support::read_request_head(&mut stream)
                        .await
                        .is_none()
                    {
                        return;
                    }
                    r.fetch_add(1, Ordering::SeqCst);
                    let code = s.load(Ordering::SeqCst);
                    let resp = format!(
                        "HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = stream.write_all(resp.as_bytes()).await;
                });
            }
        });
        StatusServer {
            addr,
            status,
            requests,
            task,
        }
    }

    fn set(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn active_http_follows_a_target_stopped_and_restarted_on_its_port() {
    let a = Upstream::start().await;
    let b = Upstream::start().await;
    let (a_addr, b_addr) = (a.addr(), b.addr());
    let hc = checks(json!({"active": {
        "http_path": "/health", "timeout": 0.5,
        "healthy": {"interval": 0.1, "successes": 2},
        "unhealthy": {"interval": 0.1, "tcp_failures": 2, "timeouts": 2, "http_failures": 2}
    }}));
    let reg = HealthRegistry::new();
    let up = bind(&reg, &hc, &[a_addr, b_addr]);
    let checker = ActiveChecker::start(vec![up.clone()]).unwrap();

    within(SLACK * 2, "probes reach the target", || {
        a.request_count() >= 2
    })
    .await;
    let probe = &a.requests()[0];
    assert_eq!(
        (probe.method.as_str(), probe.path.as_str()),
        ("GET", "/health")
    );
    assert_eq!(probe.headers["host"], a_addr.to_string().as_str());
    assert!(healthy(&up, 0) && healthy(&up, 1));

    a.stop().await;
    let down = within(
        Duration::from_millis(200) + SLACK,
        "stopped target is UNHEALTHY",
        || !healthy(&up, 0),
    )
    .await;
    assert!(
        down >= Duration::from_millis(100),
        "needs two failures: {down:?}"
    );
    assert!(healthy(&up, 1), "the other target is unaffected");
    assert_eq!(up.report().data[0].health, Health::Unhealthy);

    let a = Upstream::start_on(a_addr).await;
    within(
        Duration::from_millis(200) + SLACK,
        "restarted target is HEALTHY",
        || healthy(&up, 0),
    )
    .await;
    assert!(a.request_count() >= 2);
    checker.stop();
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn active_http_statuses_count() {
    let server = StatusServer::start(500).await;
    let hc = checks(json!({"active": {
        "healthy": {"interval": 0.1, "successes": 2},
        "unhealthy": {"interval": 0.1, "http_failures": 2}
    }}));
    let reg = HealthRegistry::new();
    let up = bind(&reg, &hc, &[server.addr]);
    let checker = ActiveChecker::start(vec![up.clone()]).unwrap();
    within(
        Duration::from_millis(200) + SLACK,
        "500s make it UNHEALTHY",
        || !healthy(&up, 0),
    )
    .await;
    // 200 is in the healthy list; a status in neither list changes nothing.
    server.set(418);
    let seen = server.requests.load(Ordering::SeqCst);
    within(SLACK, "probes go on", || {
        server.requests.load(Ordering::SeqCst) >= seen + 3
    })
    .await;
    assert!(!healthy(&up, 0));
    server.set(200);
    within(
        Duration::from_millis(200) + SLACK,
        "200s make it HEALTHY",
        || healthy(&up, 0),
    )
    .await;
    checker.stop();
}

#[tokio::test]
async fn active_https_probes_verify_the_certificate_and_send_the_sni() {
    use crate::upstream_tls::{Ca, server_config};
    // A certificate from a CA the system's store does not have.
    let ca = Ca::root();
    let server = Upstream::start_tls(server_config(&ca.leaf(&["probe.test"]), None)).await;
    let reg = HealthRegistry::new();
    let policy = |verify: bool| {
        checks(json!({"active": {
            "type": "https", "https_verify_certificate": verify, "https_sni": "probe.test",
            "healthy": {"interval": 0.1, "successes": 1},
            "unhealthy": {"interval": 0.1, "tcp_failures": 1, "http_failures": 1}
        }}))
    };
    let lax = reg.bind("lax", policy(false), None, [(target(server.addr()), 100)]);
    let strict = reg.bind("strict", policy(true), None, [(target(server.addr()), 100)]);
    let checker = ActiveChecker::start(vec![lax.clone(), strict.clone()]).unwrap();
    within(
        Duration::from_millis(100) + SLACK,
        "an untrusted certificate makes it UNHEALTHY",
        || !healthy(&strict, 0),
    )
    .await;
    within(SLACK, "unverified probes reach the server", || {
        server.request_count() >= 2
    })
    .await;
    assert!(healthy(&lax, 0));
    assert!(server.requests().iter().all(|r| r.path == "/"));
    assert!(
        server
            .tls_server_names()
            .iter()
            .all(|n| n.as_deref() == Some("probe.test"))
    );
    checker.stop();
}

#[tokio::test]
async fn active_timeouts_count() {
    let hanging = Upstream::start().await;
    let hc = checks(json!({"active": {
        "http_path": "/hang", "timeout": 0.1,
        "healthy": {"interval": 0.1},
        "unhealthy": {"timeouts": 1}
    }}));
    let reg = HealthRegistry::new();
    let up = bind(&reg, &hc, &[hanging.addr()]);
    let checker = ActiveChecker::start(vec![up.clone()]).unwrap();
    let took = within(
        Duration::from_millis(200) + SLACK,
        "a hanging target is UNHEALTHY",
        || !healthy(&up, 0),
    )
    .await;
    assert!(
        took >= Duration::from_millis(150),
        "interval + timeout: {took:?}"
    );
    checker.stop();
    hanging.stop().await;
}

#[tokio::test]
async fn active_tcp_checks_connect_only() {
    // A tcp check ignores what an HTTP server answers.
    let server = StatusServer::start(500).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hc = checks(json!({"active": {
        "type": "tcp",
        "healthy": {"interval": 0.1, "successes": 1},
        "unhealthy": {"interval": 0.1, "tcp_failures": 1, "http_failures": 1}
    }}));
    let reg = HealthRegistry::new();
    let up = bind(&reg, &hc, &[addr, server.addr]);
    let checker = ActiveChecker::start(vec![up.clone()]).unwrap();
    let accept = tokio::spawn(async move {
        // Accept a few probes, then close the port.
        for _ in 0..2 {
            let _ = listener.accept().await;
        }
    });
    accept.await.unwrap();
    within(
        Duration::from_millis(100) + SLACK,
        "closed port is UNHEALTHY",
        || !healthy(&up, 0),
    )
    .await;
    assert!(healthy(&up, 1));
    assert_eq!(server.requests.load(Ordering::SeqCst), 0, "no HTTP sent");
    let listener = TcpListener::bind(addr).await.unwrap();
    let accept = tokio::spawn(async move {
        loop {
            let _ = listener.accept().await;
        }
    });
    within(
        Duration::from_millis(100) + SLACK,
        "reopened port is HEALTHY",
        || healthy(&up, 0),
    )
    .await;
    accept.abort();
    checker.stop();
}

#[tokio::test]
async fn passive_failures_eject_for_a_growing_time() {
    let hc = checks(json!({"passive": {"unhealthy": {
        "http_failures": 3, "base_ejection_time": 0.2, "max_ejection_time": 0.5
    }}}));
    let reg = HealthRegistry::new();
    let up = bind(&reg, &hc, &["127.0.0.1:1".parse().unwrap()]);
    let t = up.target(0).unwrap();
    // Statuses in neither list, and a success, break or skip the streak.
    for s in [503, 503, 404, 200, 503, 500] {
        t.report_passive(Outcome::Status(s));
    }
    assert!(t.is_healthy());
    for (round, expected_ms) in [(1, 200), (2, 400), (3, 500)] {
        t.report_passive(Outcome::Status(503));
        if round > 1 {
            t.report_passive(Outcome::Status(500));
            t.report_passive(Outcome::Status(429));
        }
        assert!(!t.is_healthy(), "ejection {round}");
        assert_eq!(t.state.ejections(), round);
        let left = t.state.ejected_for().unwrap();
        let expected = Duration::from_millis(expected_ms);
        assert!(
            left <= expected && left + Duration::from_millis(50) >= expected,
            "{left:?}"
        );
        let back = within(expected + SLACK, "ejection ends", || t.is_healthy()).await;
        assert!(
            back + Duration::from_millis(20) >= expected,
            "{back:?} < {expected:?}"
        );
        assert_eq!(t.state.ejected_for(), None);
    }
    // Other kinds count too; a timeout threshold of 0 never ejects.
    let hc = checks(json!({"passive": {"unhealthy": {"tcp_failures": 2}}}));
    let up = bind(&reg, &hc, &["127.0.0.1:2".parse().unwrap()]);
    let t = up.target(0).unwrap();
    for _ in 0..5 {
        t.report_passive(Outcome::Timeout);
    }
    assert!(t.is_healthy());
    t.report_passive(Outcome::ConnectFailure);
    t.report_passive(Outcome::ConnectFailure);
    assert!(!t.is_healthy());
    assert_eq!(
        t.state.ejected_for().map(|d| d.as_secs().div_ceil(10) * 10),
        Some(30),
        "default base ejection time is 30 s"
    );
}

#[tokio::test]
async fn passive_ejection_comes_back_through_active_checks() {
    let server = StatusServer::start(200).await;
    let hc = checks(json!({
        "active": {"healthy": {"successes": 1}, "unhealthy": {"interval": 0.1}},
        "passive": {"unhealthy": {"tcp_failures": 1}}
    }));
    let reg = HealthRegistry::new();
    let up = bind(&reg, &hc, &[server.addr]);
    let checker = ActiveChecker::start(vec![up.clone()]).unwrap();
    let t = up.target(0).unwrap();
    t.report_passive(Outcome::ConnectFailure);
    assert!(!t.is_healthy());
    assert_eq!(
        t.state.ejected_for(),
        None,
        "no timer: active checks decide"
    );
    within(
        Duration::from_millis(100) + SLACK,
        "a probe brings it back",
        || t.is_healthy(),
    )
    .await;
    // Healthy targets are not probed (healthy.interval is 0).
    let seen = server.requests.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.requests.load(Ordering::SeqCst), seen);
    checker.stop();
}

#[tokio::test]
async fn state_survives_an_update_for_kept_targets_only() {
    let kept = Upstream::start().await;
    let kept_addr = kept.addr();
    kept.stop().await;
    let removed: SocketAddr = format!("127.0.0.1:{}", crate::support::closed_port())
        .parse()
        .unwrap();
    let hc = checks(json!({"active": {
        "healthy": {"interval": 0.1},
        "unhealthy": {"tcp_failures": 1}
    }}));
    let reg = HealthRegistry::new();
    let old = bind(&reg, &hc, &[kept_addr, removed]);
    let checker = ActiveChecker::start(vec![old.clone()]).unwrap();
    within(
        Duration::from_millis(100) + SLACK,
        "both closed ports are UNHEALTHY",
        || !healthy(&old, 0) && !healthy(&old, 1),
    )
    .await;

    // A reload: the same upstream without `removed`, plus a new target.
    let fresh = StatusServer::start(200).await;
    let new = bind(&reg, &hc, &[kept_addr, fresh.addr]);
    assert!(!healthy(&new, 0), "unchanged target keeps its state");
    assert!(healthy(&new, 1), "a new target starts healthy");
    checker.update(vec![new.clone()]);
    drop(old);
    within(SLACK, "state of the removed target is dropped", || {
        reg.get("svc", &removed.to_string()).is_none()
    })
    .await;
    assert!(reg.get("svc", &kept_addr.to_string()).is_some());
    assert_eq!(reg.len(), 2);
    // The new set is probed: the new target gets requests.
    within(SLACK, "new target probed", || {
        fresh.requests.load(Ordering::SeqCst) >= 1
    })
    .await;
    checker.stop();
}

#[tokio::test]
async fn report_has_kongs_shape() {
    let reg = HealthRegistry::new();
    let addrs: [SocketAddr; 2] = [
        "127.0.0.1:7001".parse().unwrap(),
        "127.0.0.1:7002".parse().unwrap(),
    ];
    let off = reg.bind(
        "off",
        checks(Value::Null),
        None,
        addrs.iter().map(|a| (target(*a), 100)),
    );
    assert_eq!(
        off.report().to_json(),
        json!({"total": 2, "data": [
            {"target": "127.0.0.1:7001", "weight": 100, "health": "HEALTHCHECKS_OFF"},
            {"target": "127.0.0.1:7002", "weight": 100, "health": "HEALTHCHECKS_OFF"}
        ], "next": null})
    );
    let on = reg.bind(
        "on",
        checks(json!({"passive": {"unhealthy": {"timeouts": 1}}})),
        None,
        [(target(addrs[0]), 10), (target(addrs[1]), 0)],
    );
    on.target(1).unwrap().report_passive(Outcome::Timeout);
    assert_eq!(
        on.report().to_json()["data"],
        json!([
            {"target": "127.0.0.1:7001", "weight": 10, "health": "HEALTHY"},
            {"target": "127.0.0.1:7002", "weight": 0, "health": "UNHEALTHY"}
        ])
    );
    // Same target under another upstream: separate state.
    assert!(off.target(1).unwrap().is_healthy());
}

#[test]
fn the_documented_example_is_valid() {
    let doc = include_str!("../../docs/health-checks.md");
    let yaml = doc
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a yaml block");
    let config = gatehouse::config::load_str("health-checks.md", yaml).unwrap();
    let hc = config.upstreams[0].item.healthchecks.clone().unwrap();
    let hc = Healthchecks::parse(&hc).unwrap();
    assert!(hc.active_enabled() && hc.passive_enabled() && hc.active_recovers());
    assert_eq!(hc.active.http_path, "/healthz");
    assert_eq!(hc.passive.unhealthy.http_statuses, [500, 502, 503, 504]);
    assert_eq!(config.targets.len(), 3);
}

#[tokio::test]
async fn concurrency_bounds_probes_in_flight() {
    let hanging = [
        Upstream::start().await,
        Upstream::start().await,
        Upstream::start().await,
    ];
    let addrs: Vec<SocketAddr> = hanging.iter().map(Upstream::addr).collect();
    let hc = checks(json!({"active": {
        "http_path": "/hang", "timeout": 0.2, "concurrency": 1,
        "healthy": {"interval": 0.1},
        "unhealthy": {"timeouts": 1}
    }}));
    let reg = HealthRegistry::new();
    let up = bind(&reg, &hc, &addrs);
    let checker = ActiveChecker::start(vec![up.clone()]).unwrap();
    // One probe at a time: the third target times out 0.1 + 3 × 0.2 s after the start.
    let took = within(Duration::from_millis(700) + SLACK, "all UNHEALTHY", || {
        (0..3).all(|i| !healthy(&up, i))
    })
    .await;
    assert!(
        took >= Duration::from_millis(650),
        "probes overlapped: {took:?}"
    );
    checker.stop();
    for h in hanging {
        h.stop().await;
    }
}

/// Through the gateway: a stopped target is ejected by the active checks and the traffic goes
/// to the others (no retries needed); with every target down, the answer is an immediate 503;
/// a target back up is admitted again.
#[tokio::test]
async fn the_gateway_routes_around_unhealthy_targets() {
    let mut ups = Vec::new();
    for _ in 0..3 {
        ups.push(Upstream::start().await);
    }
    let addrs: Vec<SocketAddr> = ups.iter().map(|u| u.addr()).collect();
    let yaml = format!(
        r#"_format_version: "3.0"
upstreams:
- name: pool
  healthchecks:
    active:
      http_path: /status/200
      timeout: 0.5
      healthy: {{interval: 0.1, successes: 1}}
      unhealthy: {{interval: 0.1, tcp_failures: 1, http_failures: 1, timeouts: 1}}
  targets:
  - target: "{}"
  - target: "{}"
  - target: "{}"
services:
- name: s
  host: pool
  retries: 0
  routes: [{{paths: [/]}}]
"#,
        addrs[0], addrs[1], addrs[2]
    );
    let gw = crate::harness::TestGateway::start(&yaml);
    let get = |path: &'static str| {
        let url = gw.url(path);
        async move {
            crate::support::client()
                .get(url)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    for _ in 0..6 {
        assert_eq!(get("/").await, 200);
    }
    let stopped = ups.remove(0);
    stopped.stop().await;
    tokio::time::sleep(Duration::from_millis(100) + SLACK).await;
    // Ejected: no request goes to the dead target, even without retries.
    for _ in 0..20 {
        assert_eq!(get("/").await, 200);
    }
    for u in ups.drain(..) {
        u.stop().await;
    }
    tokio::time::sleep(Duration::from_millis(100) + SLACK).await;
    let started = Instant::now();
    let resp = crate::support::client()
        .get(gw.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "answered at once"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["message"],
        "failure to get a peer from the ring-balancer"
    );

    // One target comes back on its port: admitted again.
    let back = Upstream::start_on(addrs[1]).await;
    tokio::time::sleep(Duration::from_millis(100) + SLACK).await;
    for _ in 0..5 {
        assert_eq!(get("/").await, 200);
    }
    back.stop().await;
}

/// A reload that is rejected (an error anywhere in the file) leaves the live health state as it
/// was: only a configuration that compiled binds to the registry.
#[test]
fn a_rejected_reload_does_not_touch_live_health() {
    let registry = HealthRegistry::new();
    let good = "_format_version: \"3.0\"\nupstreams:\n- name: pool\n  healthchecks:\n    passive:\n      unhealthy: {tcp_failures: 1}\n  targets:\n  - target: 127.0.0.1:9\n";
    let snap = gatehouse::snapshot::load_str_with("kong.yml", good, &registry).unwrap();
    let target = snap.upstreams[0].health.target(0).unwrap();
    target.report_passive(Outcome::ConnectFailure);
    assert!(!target.is_healthy());
    let bad = good.replace(
        "tcp_failures: 1}",
        "tcp_failures: 1}\n    active: {concurrency: 0}",
    );
    assert!(gatehouse::snapshot::load_str_with("kong.yml", &bad, &registry).is_err());
    assert!(
        !target.is_healthy(),
        "the rejected file reset the live state"
    );
    let again = gatehouse::snapshot::load_str_with("kong.yml", good, &registry).unwrap();
    assert!(
        !again.upstreams[0].health.target(0).unwrap().is_healthy(),
        "the same configuration keeps the state"
    );
}
