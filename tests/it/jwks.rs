//! The `jwt` plugin with a JWK Set: `jwks_uri` against a real key server written here (which
//! counts the fetches, can rotate its keys, answer slowly or go down), and inline `jwks`.
//! Tokens and JWKs come from `jwt_signer` (RustCrypto), not from the crates the gateway
//! verifies with.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gatehouse::proxy::ServerConfig;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::harness::{TestGateway, json};
use crate::jwt_signer as signer;
use crate::support::{Upstream, client, closed_port};

/// The key server: `GET` anything answers the current set as JSON, after `delay`.
struct JwksServer {
    addr: SocketAddr,
    scheme: &'static str,
    hits: Arc<AtomicUsize>,
    set: Arc<Mutex<Value>>,
    delay_ms: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
}

impl JwksServer {
    async fn start(set: Value) -> JwksServer {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), set).await
    }

    async fn start_on(addr: SocketAddr, set: Value) -> JwksServer {
        Self::bind(addr, set, None).await
    }

    /// Serves over TLS with `config`.
    async fn start_tls(set: Value, config: Arc<rustls::ServerConfig>) -> JwksServer {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0)), set, Some(acceptor)).await
    }

    async fn bind(
        addr: SocketAddr,
        set: Value,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> JwksServer {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let set = Arc::new(Mutex::new(set));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (stop, mut stopped) = watch::channel(false);
        let (h, s, d) = (hits.clone(), set.clone(), delay_ms.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => break,
                    },
                    _ = stopped.changed() => break,
                };
                let (h, s, d) = (h.clone(), s.clone(), d.clone());
                let mut stopped = stopped.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service =
                        service_fn(move |req| serve(h.clone(), s.clone(), d.clone(), req));
                    let builder = http1::Builder::new();
                    // Stopping closes kept-alive connections too: the server is really down.
                    match tls {
                        None => {
                            let conn = builder.serve_connection(TokioIo::new(stream), service);
                            tokio::select! {
                                _ = conn => {}
                                _ = stopped.changed() => {}
                            }
                        }
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            let conn = builder.serve_connection(TokioIo::new(stream), service);
                            tokio::select! {
                                _ = conn => {}
                                _ = stopped.changed() => {}
                            }
                        }
                    }
                });
            }
        });
        JwksServer {
            addr,
            scheme,
            hits,
            set,
            delay_ms,
            stop,
        }
    }

    fn uri(&self) -> String {
        format!("{}://{}/.well-known/jwks.json", self.scheme, self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn publish(&self, set: Value) {
        *self.set.lock().unwrap() = set;
    }

    fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Wait (up to 5 s) until the server has answered `n` fetches.
    async fn wait_hits(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.hits() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(self.hits(), n);
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(
    hits: Arc<AtomicUsize>,
    set: Arc<Mutex<Value>>,
    delay_ms: Arc<AtomicU64>,
    _req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    hits.fetch_add(1, Ordering::SeqCst);
    let delay = delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let body = set.lock().unwrap().to_string();
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::from(body))
        .unwrap())
}

/// The public JWK of the key `alg` signs with, named `kid`.
fn jwk(alg: &str, kid: &str) -> Value {
    let mut k = signer::public_jwk(alg);
    k["kid"] = json!(kid);
    k
}

fn set(keys: &[Value]) -> Value {
    json!({ "keys": keys })
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims() -> Value {
    json!({"sub": "user-7", "iss": "https://id.example", "exp": now() + 600})
}

/// A token signed with `alg`, its header naming `kid` (none when `None`).
fn token(alg: &str, kid: Option<&str>) -> String {
    let header = match kid {
        Some(kid) => json!({"alg": alg, "typ": "JWT", "kid": kid}),
        None => json!({"alg": alg, "typ": "JWT"}),
    };
    signer::sign_with_header(alg, &header, &claims())
}

/// `(status, body, WWW-Authenticate)` of `GET path` with the token as a bearer.
async fn call(gw: &TestGateway, path: &str, token: &str) -> (u16, Value, String) {
    let resp = client()
        .get(gw.url(path))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, json(resp).await, challenge)
}

/// A route `/api` with the `jwt` plugin configured by `config` (YAML lines at 8 spaces).
fn gateway_yaml(up: &Upstream, config: &str) -> String {
    format!(
        r#"_format_version: "3.0"
services:
- name: s
  url: http://{}
  routes:
  - paths: [/api]
    plugins:
    - name: jwt
      config:
{config}"#,
        up.addr()
    )
}

fn two_workers() -> ServerConfig {
    ServerConfig {
        workers: 2,
        ..ServerConfig::default()
    }
}

#[tokio::test]
async fn tokens_are_verified_by_the_key_their_kid_names() {
    let up = Upstream::start().await;
    let idp = JwksServer::start(set(&[
        jwk("RS256", "rsa-1"),
        jwk("ES256", "ec-1"),
        jwk("EdDSA", "ed-1"),
    ]))
    .await;
    let gw = TestGateway::start(&gateway_yaml(
        &up,
        &format!(
            "        jwks_uri: {}\n        algorithms: [RS256, ES256, EdDSA]\n        issuer: https://id.example\n        claims_to_headers: {{sub: X-User}}\n",
            idp.uri()
        ),
    ));
    assert_eq!(
        idp.hits(),
        0,
        "nothing is fetched before a request needs it"
    );

    for (alg, kid) in [("RS256", "rsa-1"), ("ES256", "ec-1"), ("EdDSA", "ed-1")] {
        let (status, seen, _) = call(&gw, "/api", &token(alg, Some(kid))).await;
        assert_eq!(status, 200, "{alg}: {seen}");
        assert_eq!(seen["headers"]["x-user"], "user-7");
    }
    // One key per family in the set: a token without `kid` has exactly one key to go to.
    let (status, _, _) = call(&gw, "/api", &token("ES256", None)).await;
    assert_eq!(status, 200);
    assert_eq!(idp.hits(), 1, "the set is fetched once and cached");

    let tampered = {
        let t = token("RS256", Some("rsa-1"));
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = signer::b64(
            json!({"sub": "admin", "exp": now() + 600})
                .to_string()
                .as_bytes(),
        );
        parts[1] = &forged;
        parts.join(".")
    };
    let rows: Vec<(&str, String, &str)> = vec![
        (
            "unknown kid",
            token("RS256", Some("rsa-2")),
            "Unknown key id",
        ),
        (
            "kid of a key of another kind",
            token("RS256", Some("ec-1")),
            "Algorithm not allowed",
        ),
        (
            "algorithm outside `algorithms`",
            token("PS256", Some("rsa-1")),
            "Algorithm not allowed",
        ),
        (
            "HS256 signed with the RSA public key, kid of the RSA key",
            signer::sign_raw(
                "HS256",
                signer::RSA_PUBLIC_PEM.as_bytes(),
                json!({"alg": "HS256", "kid": "rsa-1"})
                    .to_string()
                    .as_bytes(),
                claims().to_string().as_bytes(),
            ),
            "Algorithm not allowed",
        ),
        ("tampered payload", tampered, "Invalid signature"),
        (
            "alg none",
            signer::unsecured("none", &claims()),
            "Unsupported algorithm",
        ),
    ];
    for (what, token, message) in rows {
        let (status, body, challenge) = call(&gw, "/api", &token).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["message"], message, "{what}");
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{what}: {challenge}"
        );
    }
    assert_eq!(
        idp.hits(),
        1,
        "within jwks_min_refresh_interval (30 s by default) an unknown kid fetches nothing"
    );
}

#[tokio::test]
async fn https_key_endpoints_are_verified_unless_told_otherwise() {
    use crate::upstream_tls::{Ca, server_config};
    let up = Upstream::start().await;
    // A certificate from a CA the system's store does not have.
    let ca = Ca::root();
    let idp = JwksServer::start_tls(
        set(&[jwk("RS256", "rsa-1")]),
        server_config(&ca.leaf(&["127.0.0.1"]), None),
    )
    .await;
    assert!(idp.uri().starts_with("https://"));
    let config = |verify: bool| {
        format!(
            "        jwks_uri: {}\n        algorithms: [RS256]\n        jwks_tls_verify: {verify}\n",
            idp.uri()
        )
    };
    let strict = TestGateway::start(&gateway_yaml(&up, &config(true)));
    let (status, body, _) = call(&strict, "/api", &token("RS256", Some("rsa-1"))).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(idp.hits(), 0, "the handshake failed before any request");

    let lax = TestGateway::start(&gateway_yaml(&up, &config(false)));
    let (status, body, _) = call(&lax, "/api", &token("RS256", Some("rsa-1"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(idp.hits(), 1);
}

#[tokio::test]
async fn rotated_keys_are_found_by_refetching_and_expire_with_the_cache() {
    let up = Upstream::start().await;
    let idp = JwksServer::start(set(&[jwk("RS256", "2024")])).await;
    let gw = TestGateway::start(&gateway_yaml(
        &up,
        &format!(
            "        jwks_uri: {}\n        algorithms: [RS256, ES256]\n        jwks_cache_ttl: 2\n        jwks_min_refresh_interval: 1\n",
            idp.uri()
        ),
    ));
    let (status, _, _) = call(&gw, "/api", &token("RS256", Some("2024"))).await;
    assert_eq!(status, 200);
    assert_eq!(idp.hits(), 1);

    // The provider adds a key. Right after the last fetch the rate bound holds...
    idp.publish(set(&[jwk("RS256", "2024"), jwk("ES256", "2025")]));
    let (status, body, _) = call(&gw, "/api", &token("ES256", Some("2025"))).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some("Unknown key id"))
    );
    assert_eq!(idp.hits(), 1);
    // ...and once it has passed, the unknown kid makes the gateway fetch again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body, _) = call(&gw, "/api", &token("ES256", Some("2025"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(idp.hits(), 2);

    // The provider drops the old key: it verifies until the cache expires, then the refresh
    // runs in the background while the request in hand is still served from the old set.
    // One token, used throughout: once verified it is remembered by the worker, and the new
    // set must still make it unreachable.
    let old = token("RS256", Some("2024"));
    idp.publish(set(&[jwk("ES256", "2025")]));
    let (status, _, _) = call(&gw, "/api", &old).await;
    assert_eq!(status, 200, "cached");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, _, _) = call(&gw, "/api", &old).await;
    assert_eq!(status, 200, "served from the stale set");
    idp.wait_hits(3).await;
    // The server has answered; the gateway swaps the set in right after.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (status, body) = loop {
        let (status, body, _) = call(&gw, "/api", &old).await;
        if status != 200 || Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some("Unknown key id"))
    );
    let (status, _, _) = call(&gw, "/api", &token("ES256", Some("2025"))).await;
    assert_eq!(status, 200);
    assert_eq!(idp.hits(), 3, "the unknown kid came within the rate bound");
}

#[tokio::test]
async fn unknown_kids_cause_at_most_one_fetch_per_interval() {
    let up = Upstream::start().await;
    let idp = JwksServer::start(set(&[jwk("RS256", "k1")])).await;
    let gw = TestGateway::start_with(
        &gateway_yaml(
            &up,
            &format!(
                "        jwks_uri: {}\n        algorithms: [RS256]\n        jwks_min_refresh_interval: 2\n",
                idp.uri()
            ),
        ),
        two_workers(),
    );
    let (status, _, _) = call(&gw, "/api", &token("RS256", Some("k1"))).await;
    assert_eq!(status, 200);
    assert_eq!(idp.hits(), 1);

    // Made-up kids, concurrently on both workers: one fetch for all of them, then none.
    let burst = |round: usize| {
        let gw = &gw;
        async move {
            let calls = (0..20).map(|i| async move {
                let kid = format!("attacker-{round}-{i}");
                call(gw, "/api", &token("RS256", Some(&kid))).await
            });
            for (status, body, _) in futures_util::future::join_all(calls).await {
                assert_eq!(
                    (status, body["message"].as_str()),
                    (401, Some("Unknown key id"))
                );
            }
        }
    };
    // Two seconds leave the second burst ample time to land within the interval.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    idp.delay_ms.store(200, Ordering::SeqCst);
    burst(1).await;
    assert_eq!(idp.hits(), 2, "one refetch for the whole burst");
    burst(2).await;
    assert_eq!(idp.hits(), 2, "none within the interval");
    let (status, _, _) = call(&gw, "/api", &token("RS256", Some("k1"))).await;
    assert_eq!(status, 200, "known kids are unaffected");
}

#[tokio::test]
async fn concurrent_first_requests_share_one_fetch() {
    let up = Upstream::start().await;
    let idp = JwksServer::start(set(&[jwk("EdDSA", "ed")])).await;
    idp.delay_ms.store(300, Ordering::SeqCst);
    let gw = TestGateway::start_with(
        &gateway_yaml(
            &up,
            &format!(
                "        jwks_uri: {}\n        algorithms: [EdDSA]\n",
                idp.uri()
            ),
        ),
        two_workers(),
    );
    let t = token("EdDSA", Some("ed"));
    let calls = (0..12).map(|_| call(&gw, "/api", &t));
    for (status, body, _) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(idp.hits(), 1);
}

#[tokio::test]
async fn a_provider_down_at_first_use_gives_503_until_it_answers() {
    let up = Upstream::start().await;
    let port = closed_port();
    let gw = TestGateway::start(&gateway_yaml(
        &up,
        &format!(
            "        jwks_uri: http://127.0.0.1:{port}/jwks\n        algorithms: [RS256]\n        jwks_timeout: 1000\n"
        ),
    ));
    let t = token("RS256", Some("k1"));
    for _ in 0..3 {
        let (status, body, challenge) = call(&gw, "/api", &t).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["message"], "No keys available to verify the token");
        assert_eq!(
            challenge, "",
            "no challenge: the client's credentials are not at fault"
        );
    }
    // A malformed token is still the client's fault.
    let (status, body, _) = call(&gw, "/api", "not.a.token").await;
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some("Malformed token"))
    );

    // The provider comes up: while there are no keys, a fetch is retried after a second.
    let idp = JwksServer::start_on(
        SocketAddr::from(([127, 0, 0, 1], port)),
        set(&[jwk("RS256", "k1")]),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body, _) = call(&gw, "/api", &t).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(idp.hits(), 1);
}

#[tokio::test]
async fn cached_keys_outlive_a_provider_outage() {
    let up = Upstream::start().await;
    let idp = JwksServer::start(set(&[jwk("ES256", "ec")])).await;
    let gw = TestGateway::start(&gateway_yaml(
        &up,
        &format!(
            "        jwks_uri: {}\n        algorithms: [ES256]\n        jwks_cache_ttl: 1\n        jwks_min_refresh_interval: 1\n        jwks_timeout: 1000\n",
            idp.uri()
        ),
    ));
    let t = token("ES256", Some("ec"));
    assert_eq!(call(&gw, "/api", &t).await.0, 200);
    idp.stop();
    // Past the cache's lifetime and the rate bound: each refresh fails, the keys stay.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..3 {
        let (status, body, _) = call(&gw, "/api", &t).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body, _) = call(&gw, "/api", &token("ES256", Some("other"))).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some("Unknown key id"))
    );
    assert_eq!(idp.hits(), 1);
}

#[tokio::test]
async fn an_inline_set() {
    let up = Upstream::start().await;
    let inline = set(&[
        jwk("RS256", "a"),
        jwk("RS256", "b"),
        jwk("ES384", "c"),
        json!({"kty": "RSA", "kid": "broken", "e": "AQAB"}),
    ]);
    let gw = TestGateway::start(&gateway_yaml(
        &up,
        &format!("        algorithms: [RS256, ES384]\n        jwks: {inline}\n"),
    ));
    for (alg, kid) in [
        ("RS256", Some("a")),
        ("RS256", Some("b")),
        ("ES384", Some("c")),
        ("ES384", None),
    ] {
        let (status, body, _) = call(&gw, "/api", &token(alg, kid)).await;
        assert_eq!(status, 200, "{alg} {kid:?}: {body}");
    }
    for (what, t, message) in [
        (
            "two RSA keys, no kid",
            token("RS256", None),
            "Missing key id",
        ),
        ("unknown kid", token("RS256", Some("z")), "Unknown key id"),
        (
            "the skipped key's kid",
            token("RS256", Some("broken")),
            "Unknown key id",
        ),
    ] {
        let (status, body, challenge) = call(&gw, "/api", &t).await;
        assert_eq!(status, 401, "{what}");
        assert_eq!(body["message"], message, "{what}");
        assert!(challenge.contains("error=\"invalid_token\""), "{what}");
    }
}

#[test]
fn jwks_config_errors_name_the_field() {
    let key = set(&[jwk("RS256", "a")]);
    let text = format!(
        r#"_format_version: "3.0"
routes:
- paths: [/a]
  plugins:
  - name: jwt
    config: {{jwks_uri: "http://idp/jwks", secret: s, algorithms: [RS256]}}
- paths: [/b]
  plugins:
  - name: jwt
    config: {{jwks_uri: "http://idp/jwks", jwks: {key}, algorithms: [RS256]}}
- paths: [/c]
  plugins:
  - name: jwt
    config: {{jwks_uri: "ftp://idp.example/.well-known/jwks.json", algorithms: [RS256]}}
- paths: [/d]
  plugins:
  - name: jwt
    config: {{jwks_uri: "http://idp/jwks"}}
- paths: [/e]
  plugins:
  - name: jwt
    config: {{jwks: {key}}}
- paths: [/f]
  plugins:
  - name: jwt
    config: {{jwks: {key}, algorithms: [ES256], jwks_cache_ttl: 60}}
- paths: [/g]
  plugins:
  - name: jwt
    config: {{jwks_uri: "http://idp/jwks", algorithms: [RS256, XS1], jwks_timeout: 0, jwks_min_refresh_interval: 0}}
"#
    );
    crate::harness::config_errors(
        &text,
        &[
            "routes[0].plugins[0].config: only one of these fields may be set: 'config.secret', 'config.public_key', 'config.jwks_uri', 'config.jwks'",
            "routes[1].plugins[0].config: only one of these fields may be set",
            "routes[2].plugins[0].config.jwks_uri: `ftp://idp.example/.well-known/jwks.json` must be an http:// or https:// URL",
            "routes[3].plugins[0].config.algorithms: required with `jwks_uri`",
            "routes[4].plugins[0].config.algorithms: required with `jwks`",
            "routes[5].plugins[0].config.jwks: no usable key: keys[0] (kid \"a\"): fits none of the configured algorithms",
            "routes[5].plugins[0].config.jwks_cache_ttl: applies to `jwks_uri` only",
            "routes[6].plugins[0].config.algorithms[1]: unknown algorithm `XS1`",
        ],
    );
    // With a valid `algorithms`, the bounds are reported too.
    let text = r#"_format_version: "3.0"
routes:
- paths: [/]
  plugins:
  - name: jwt
    config: {jwks_uri: "http://idp/jwks", algorithms: [RS256], jwks_timeout: 0, jwks_min_refresh_interval: 0, jwks_cache_ttl: 99999999}
"#;
    let errors = crate::harness::config_errors(text, &[]);
    for field in [
        "jwks_timeout",
        "jwks_cache_ttl",
        "jwks_min_refresh_interval",
    ] {
        assert!(
            errors.contains(&format!("config.{field}: value should be between 1 and")),
            "{field} in:\n{errors}"
        );
    }
    assert!(
        gatehouse::snapshot::load_str(
            "kong.yml",
            r#"_format_version: "3.0"
routes:
- paths: [/]
  plugins:
  - name: jwt
    config: {jwks_uri: "http://idp.internal:8080/jwks", algorithms: [RS256]}
"#
        )
        .is_ok(),
        "no fetch at load: an unreachable provider is not a configuration error"
    );
}
