//! Upstream balancing end to end: each algorithm in front of real backends on loopback, counted
//! by the backends themselves.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::harness::TestGateway;
use crate::support::client;

/// A backend that counts its requests and answers after an adjustable delay.
struct Backend {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    delay_ms: Arc<AtomicU64>,
    status: Arc<AtomicU16>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    async fn start() -> Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let status = Arc::new(AtomicU16::new(200));
        let (h, d, st) = (hits.clone(), delay_ms.clone(), status.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (h, d, st) = (h.clone(), d.clone(), st.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |_req| {
                        let (h, d, st) = (h.clone(), d.clone(), st.clone());
                        async move {
                            h.fetch_add(1, Ordering::SeqCst);
                            let ms = d.load(Ordering::SeqCst);
                            if ms > 0 {
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                            }
                            let body = format!("{{\"backend\":\"{}\"}}", addr.port());
                            let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
                            *resp.status_mut() =
                                hyper::StatusCode::from_u16(st.load(Ordering::SeqCst))
                                    .unwrap_or(hyper::StatusCode::OK);
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Backend {
            addr,
            hits,
            delay_ms,
            status,
            task,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An upstream named `pool` over `backends` with `weights`, `extra` YAML lines for the
/// upstream, and a route `/` to it.
fn config(backends: &[&Backend], weights: &[u32], extra: &str) -> String {
    let targets: String = backends
        .iter()
        .zip(weights)
        .map(|(b, w)| format!("  - {{target: \"{}\", weight: {w}}}\n", b.addr))
        .collect();
    format!(
        "_format_version: \"3.0\"\nupstreams:\n- name: pool\n{extra}  targets:\n{targets}services:\n- name: s\n  host: pool\n  port: 80\n  routes: [{{paths: [\"~/(?<user>[a-z]+)?\"]}}]\n"
    )
}

async fn send(gw: &TestGateway, n: usize, path: &str, headers: &[(&str, &str)]) {
    let c = client();
    for _ in 0..n {
        let mut req = c.get(gw.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        assert_eq!(req.send().await.unwrap().status(), 200);
    }
}

#[tokio::test]
async fn round_robin_and_random_follow_the_weights() {
    let b: Vec<Backend> = futures_util::future::join_all((0..3).map(|_| Backend::start())).await;
    let refs: Vec<&Backend> = b.iter().collect();
    let gw = TestGateway::start(&config(&refs, &[5, 3, 2], ""));
    send(&gw, 1000, "/", &[]).await;
    let hits: Vec<usize> = b.iter().map(Backend::hits).collect();
    assert_eq!(
        hits,
        vec![500, 300, 200],
        "smooth weighted round-robin is exact per cycle"
    );

    let b: Vec<Backend> = futures_util::future::join_all((0..3).map(|_| Backend::start())).await;
    let refs: Vec<&Backend> = b.iter().collect();
    let gw = TestGateway::start(&config(&refs, &[5, 3, 2], "  algorithm: random\n"));
    send(&gw, 2000, "/", &[]).await;
    for (backend, share) in b.iter().zip([0.5, 0.3, 0.2]) {
        let got = backend.hits() as f64 / 2000.0;
        assert!((got - share).abs() < 0.05, "random: {got} for {share}");
    }
}

#[tokio::test]
async fn least_connections_and_latency_move_traffic_off_a_slow_target() {
    for algorithm in ["least-connections", "latency"] {
        let b: Vec<Backend> =
            futures_util::future::join_all((0..3).map(|_| Backend::start())).await;
        b[0].delay_ms.store(50, Ordering::SeqCst);
        let refs: Vec<&Backend> = b.iter().collect();
        let gw = TestGateway::start(&config(
            &refs,
            &[100, 100, 100],
            &format!("  algorithm: {algorithm}\n"),
        ));
        // 8 clients at once, 40 requests each.
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let url = gw.url("/");
                tokio::spawn(async move {
                    let c = client();
                    for _ in 0..40 {
                        assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let hits: Vec<usize> = b.iter().map(Backend::hits).collect();
        let total: usize = hits.iter().sum();
        assert_eq!(total, 320);
        assert!(
            hits[0] * 5 < total,
            "{algorithm}: the slow target got {} of {total} ({hits:?})",
            hits[0]
        );
    }
}

#[tokio::test]
async fn consistent_hashing_is_sticky_and_falls_back() {
    let b: Vec<Backend> = futures_util::future::join_all((0..4).map(|_| Backend::start())).await;
    let refs: Vec<&Backend> = b.iter().collect();
    let gw = TestGateway::start(&config(
        &refs,
        &[100, 100, 100, 100],
        "  hash_on: header\n  hash_on_header: X-Tenant\n  hash_fallback: query_arg\n  hash_fallback_query_arg: tenant\n",
    ));
    let c = client();
    let mut owners = std::collections::HashMap::new();
    for tenant in ["acme", "globex", "initech", "umbrella", "hooli", "stark"] {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..5 {
            let body = c
                .get(gw.url("/"))
                .header("x-tenant", tenant)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            seen.insert(body);
        }
        assert_eq!(seen.len(), 1, "{tenant} moved between targets: {seen:?}");
        // The fallback input names the same tenant: without the header, the query decides,
        // with a key of its own (not necessarily the same target), still sticky.
        let by_query: std::collections::HashSet<String> =
            futures_util::future::join_all((0..3).map(|_| {
                let url = gw.url(&format!("/?tenant={tenant}"));
                let c = c.clone();
                async move { c.get(url).send().await.unwrap().text().await.unwrap() }
            }))
            .await
            .into_iter()
            .collect();
        assert_eq!(by_query.len(), 1, "{tenant} by query moved");
        owners.insert(tenant, seen.into_iter().next().unwrap());
    }
    let distinct: std::collections::HashSet<&String> = owners.values().collect();
    assert!(
        distinct.len() > 1,
        "six tenants all on one target: {owners:?}"
    );
}

#[tokio::test]
async fn cookie_hashing_sets_the_cookie_and_ip_hash_pins_the_client() {
    let b: Vec<Backend> = futures_util::future::join_all((0..3).map(|_| Backend::start())).await;
    let refs: Vec<&Backend> = b.iter().collect();
    let gw = TestGateway::start(&config(
        &refs,
        &[100, 100, 100],
        "  hash_on: cookie\n  hash_on_cookie: sticky\n  hash_on_cookie_path: /app\n",
    ));
    let resp = client().get(gw.url("/")).send().await.unwrap();
    let set_cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set_cookie.starts_with("sticky=")
            && set_cookie.ends_with("; Path=/app; SameSite=Lax; HttpOnly"),
        "{set_cookie}"
    );
    let first = resp.text().await.unwrap();
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    for _ in 0..10 {
        let resp = client()
            .get(gw.url("/"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert!(
            resp.headers().get("set-cookie").is_none(),
            "kept, not set again"
        );
        assert_eq!(resp.text().await.unwrap(), first);
    }

    // ip-hash: every request from 127.0.0.1 goes to one target.
    let b: Vec<Backend> = futures_util::future::join_all((0..3).map(|_| Backend::start())).await;
    let refs: Vec<&Backend> = b.iter().collect();
    let gw = TestGateway::start(&config(&refs, &[100, 100, 100], "  algorithm: ip-hash\n"));
    send(&gw, 30, "/", &[]).await;
    let mut hits: Vec<usize> = b.iter().map(Backend::hits).collect();
    hits.sort();
    assert_eq!(hits, vec![0, 0, 30]);
}

#[tokio::test]
async fn hashing_on_a_route_capture_and_retries_elsewhere() {
    let b: Vec<Backend> = futures_util::future::join_all((0..3).map(|_| Backend::start())).await;
    let refs: Vec<&Backend> = b.iter().collect();
    let gw = TestGateway::start(&config(
        &refs,
        &[100, 100, 100],
        "  hash_on: uri_capture\n  hash_on_uri_capture: user\n",
    ));
    for user in ["alice", "bob", "carol"] {
        let bodies: std::collections::HashSet<String> =
            futures_util::future::join_all((0..4).map(|_| {
                let url = gw.url(&format!("/{user}"));
                async move {
                    client()
                        .get(url)
                        .send()
                        .await
                        .unwrap()
                        .text()
                        .await
                        .unwrap()
                }
            }))
            .await
            .into_iter()
            .collect();
        assert_eq!(bodies.len(), 1, "{user}");
    }

    // A dead target among live ones: connect failures are retried on another target, so every
    // request succeeds whichever target the balancer tries first.
    let live: Vec<Backend> = futures_util::future::join_all((0..2).map(|_| Backend::start())).await;
    let dead_port = crate::support::closed_port();
    let yaml = format!(
        "_format_version: \"3.0\"\nupstreams:\n- name: pool\n  algorithm: least-connections\n  targets:\n  - target: \"127.0.0.1:{dead_port}\"\n  - target: \"{}\"\n  - target: \"{}\"\nservices:\n- name: s\n  host: pool\n  retries: 1\n  routes: [{{paths: [/]}}]\n",
        live[0].addr, live[1].addr
    );
    let gw = TestGateway::start(&yaml);
    send(&gw, 30, "/", &[]).await;
    assert_eq!(live[0].hits() + live[1].hits(), 30);
}

#[test]
fn balancing_config_errors_name_the_field() {
    let text = "_format_version: \"3.0\"\nupstreams:\n- name: a\n  algorithm: fastest\n- name: b\n  algorithm: round-robin\n  hash_on: ip\n- name: c\n  hash_on: header\n- name: d\n  hash_on: cookie\n  hash_on_cookie: s\n  hash_fallback: ip\n- name: e\n  algorithm: consistent-hashing\n  hash_on: ip\n  hash_fallback: ip\n- name: f\n  slots: 5\n";
    crate::harness::config_errors(
        text,
        &[
            "upstreams[0].algorithm: expected one of: round-robin, least-connections, consistent-hashing, latency, random, ip-hash (got `fastest`)",
            "upstreams[1].hash_on: hashing applies to algorithm `consistent-hashing`",
            "upstreams[2].hash_on_header: required when hash_on is `header`",
            "upstreams[3].hash_fallback: must be `none` when hash_on is `cookie`",
            "upstreams[4].hash_fallback: must differ from hash_on",
            "upstreams[5].slots: value should be between 10 and 65536",
        ],
    );
}

/// A service with `retry_on` and `retry_budget` in front of `backends`.
fn retry_config(backends: &[&Backend], service_extra: &str) -> String {
    let targets: String = backends
        .iter()
        .map(|b| format!("  - {{target: \"{}\"}}\n", b.addr))
        .collect();
    format!(
        "_format_version: \"3.0\"\nupstreams:\n- name: pool\n  targets:\n{targets}services:\n- name: s\n  host: pool\n{service_extra}  routes: [{{paths: [/]}}]\n"
    )
}

#[tokio::test]
async fn gateway_errors_and_timeouts_are_retried_elsewhere_when_asked() {
    let b: Vec<Backend> = futures_util::future::join_all((0..2).map(|_| Backend::start())).await;
    b[0].status.store(503, Ordering::SeqCst);
    let refs: Vec<&Backend> = b.iter().collect();

    // Without retry_on, the 503s reach the client.
    let gw = TestGateway::start(&retry_config(&refs, ""));
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(
            client()
                .get(gw.url("/"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        5,
        "{statuses:?}"
    );

    // With it, every GET succeeds; a POST is not retried.
    let gw = TestGateway::start(&retry_config(
        &refs,
        "  retry_on: [gateway-error, timeout]\n",
    ));
    for _ in 0..10 {
        assert_eq!(
            client().get(gw.url("/")).send().await.unwrap().status(),
            200
        );
    }
    let mut post_503 = 0;
    for _ in 0..10 {
        if client()
            .post(gw.url("/"))
            .body("x")
            .send()
            .await
            .unwrap()
            .status()
            == 503
        {
            post_503 += 1;
        }
    }
    assert!(post_503 > 0, "a POST is never retried");

    // A target slower than read_timeout: the GET goes to the other one after the timeout.
    b[0].status.store(200, Ordering::SeqCst);
    b[0].delay_ms.store(2_000, Ordering::SeqCst);
    let gw = TestGateway::start(&retry_config(
        &refs,
        "  read_timeout: 300\n  retry_on: [timeout]\n",
    ));
    let started = std::time::Instant::now();
    for _ in 0..4 {
        assert_eq!(
            client().get(gw.url("/")).send().await.unwrap().status(),
            200
        );
    }
    assert!(
        started.elapsed() < Duration::from_millis(1_900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_retry_budget_bounds_retries() {
    let b: Vec<Backend> = futures_util::future::join_all((0..2).map(|_| Backend::start())).await;
    for backend in &b {
        backend.status.store(503, Ordering::SeqCst);
    }
    let refs: Vec<&Backend> = b.iter().collect();
    // No share of traffic, one retry per second: at most 10 retries in the 10 s window.
    let gw = TestGateway::start(&retry_config(
        &refs,
        "  retries: 5\n  retry_on: [gateway-error]\n  retry_budget: {percent: 0, min_per_second: 1}\n",
    ));
    for _ in 0..40 {
        assert_eq!(
            client().get(gw.url("/")).send().await.unwrap().status(),
            503
        );
    }
    let hits: usize = b.iter().map(Backend::hits).sum();
    assert_eq!(
        hits,
        40 + 10,
        "40 requests and the 10 retries the budget allowed"
    );
}

#[tokio::test]
async fn the_circuit_breaker_opens_refuses_and_closes_after_a_probe() {
    let b = Backend::start().await;
    b.status.store(500, Ordering::SeqCst);
    let gw = TestGateway::start(&config(
        &[&b],
        &[100],
        "  circuit_breaker: {failure_ratio: 0.5, min_requests: 5, window: 10, open_for: 0.3}\n",
    ));
    for _ in 0..5 {
        assert_eq!(
            client().get(gw.url("/")).send().await.unwrap().status(),
            500
        );
    }
    // Open: answered at once, the backend is not asked.
    let resp = client().get(gw.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        body["message"],
        "The upstream is failing: circuit breaker open"
    );
    assert_eq!(b.hits(), 5);
    // After the pause one probe goes through; the backend has recovered, so it closes.
    b.status.store(200, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(350)).await;
    for _ in 0..5 {
        assert_eq!(
            client().get(gw.url("/")).send().await.unwrap().status(),
            200
        );
    }
    assert_eq!(b.hits(), 10);
}

#[tokio::test]
async fn the_request_limit_refuses_the_excess_at_once() {
    let b = Backend::start().await;
    b.delay_ms.store(400, Ordering::SeqCst);
    let gw = TestGateway::start(&config(
        &[&b],
        &[100],
        "  circuit_breaker: {max_requests: 2, failure_ratio: 0}\n",
    ));
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let url = gw.url("/");
            tokio::spawn(async move { client().get(url).send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, vec![200, 200, 503, 503, 503]);
    assert_eq!(b.hits(), 2);
}

/// Kong's defaults (no health checks) with one of two targets down: connect failures are
/// retried without spending the retry budget, so no request fails.
#[tokio::test]
async fn a_dead_target_costs_no_request_without_health_checks() {
    let live = Backend::start().await;
    let dead = crate::support::closed_port();
    let yaml = format!(
        "_format_version: \"3.0\"\nupstreams:\n- name: pool\n  targets:\n  - target: \"127.0.0.1:{dead}\"\n  - target: \"{}\"\nservices:\n- name: s\n  host: pool\n  routes: [{{paths: [/]}}]\n",
        live.addr
    );
    let gw = TestGateway::start(&yaml);
    let c = client();
    let mut failed = 0;
    for _ in 0..300 {
        if c.get(gw.url("/")).send().await.unwrap().status() != 200 {
            failed += 1;
        }
    }
    assert_eq!(failed, 0);
    assert_eq!(live.hits(), 300);
}

/// A client that aborts its upload is not the target's failure: passive checks and the
/// breaker do not count it.
#[tokio::test]
async fn a_client_aborting_its_upload_does_not_eject_the_target() {
    use tokio::io::AsyncWriteExt;
    let b = Backend::start().await;
    let gw = TestGateway::start(&config(
        &[&b],
        &[100],
        "  healthchecks:\n    passive:\n      unhealthy: {tcp_failures: 1, timeouts: 1, http_failures: 1}\n",
    ));
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\ncontent-length: 100000\r\n\r\nabcdef")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        client().get(gw.url("/")).send().await.unwrap().status(),
        200
    );
}
