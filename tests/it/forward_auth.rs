//! `forward-auth` end to end: the gateway in front of the echoing upstream, asking a real
//! authorization server written here, which decides by the `X-Test-Auth` header and records
//! every request it receives.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::harness::{TestGateway, json};
use crate::support::{Upstream, client, closed_port};

/// One request as the authorization server received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    headers: HeaderMap,
    body_len: usize,
}

/// The authorization server. `X-Test-Auth` (absent: `allow`) chooses the answer:
/// `allow` (200 with identity headers and two cookies), `deny` (401 with a challenge),
/// `redirect` (302 to a login page with a CSRF cookie), `big` (403 with a 100 KiB body) and
/// `slow` (200 after 3 s).
struct AuthServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl AuthServer {
    async fn start() -> AuthServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (s, c) = (seen.clone(), connections.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let seen = s.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| decide(seen.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        AuthServer {
            addr,
            seen,
            connections,
            task,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn last(&self) -> Seen {
        self.seen()
            .pop()
            .expect("the authorization server was asked")
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn decide(
    seen: Arc<Mutex<Vec<Seen>>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body_len = body.collect().await.map_or(0, |b| b.to_bytes().len());
    seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers.clone(),
        body_len,
    });
    let decision = parts
        .headers
        .get("x-test-auth")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("allow");
    let resp = match decision {
        "deny" => Response::builder()
            .status(401)
            .header(
                "www-authenticate",
                r#"Bearer realm="example", error="invalid_token""#,
            )
            .header("content-type", "text/plain")
            .header("x-reason", "expired")
            .body(Full::from("token expired\n")),
        "redirect" => Response::builder()
            .status(302)
            .header("location", "http://login.example/oauth2/start?rd=%2Fapi")
            .header("set-cookie", "_csrf=xyz; Path=/")
            .header("x-reason", "login")
            .body(Full::default()),
        "big" => Response::builder()
            .status(403)
            .header("content-type", "text/plain")
            .body(Full::from(vec![b'x'; 100 * 1024])),
        other => {
            if other == "slow" {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            Response::builder()
                .status(200)
                .header("x-auth-user", "alice")
                .header("x-auth-role", "admin")
                .header("x-claim-sub", "42")
                .header("x-claim-email", "alice@example.com")
                .header("x-internal", "not for the upstream")
                .header("set-cookie", "session=abc; Path=/; HttpOnly")
                .header("set-cookie", "tracking=1")
                .body(Full::from("ok"))
        }
    };
    Ok(resp.unwrap())
}

/// A client that shows redirects instead of following them.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers.get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn allowed_requests_carry_the_auth_services_headers_and_cookies() {
    let up = Upstream::start().await;
    let auth = AuthServer::start().await;
    let gw = TestGateway::start(&format!(
        r#"_format_version: "3.0"
services:
- name: s
  url: http://{}
  routes:
  - paths: [/api]
    plugins:
    - name: forward-auth
      config:
        address: http://{}/verify
        auth_response_headers: [X-Auth-User, X-Auth-Role]
        auth_response_headers_regex: ^X-Claim-
        add_auth_cookies_to_response: [session]
"#,
        up.addr(),
        auth.addr
    ));

    let resp = client()
        .get(gw.url("/api/items"))
        .header("X-Auth-User", "mallory")
        .header("X-Claim-Admin", "true")
        .header("X-Kept", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cookies: Vec<_> = resp.headers().get_all("set-cookie").iter().collect();
    assert_eq!(
        cookies,
        ["session=abc; Path=/; HttpOnly"],
        "only the named cookie"
    );
    let h = json(resp).await["headers"].clone();
    assert_eq!(h["x-auth-user"], "alice", "the client's copy is replaced");
    assert_eq!(h["x-auth-role"], "admin");
    assert_eq!(h["x-claim-sub"], "42");
    assert_eq!(h["x-claim-email"], "alice@example.com");
    assert!(
        h.get("x-claim-admin").is_none(),
        "a client's header matching the regex goes"
    );
    assert!(h.get("x-internal").is_none(), "other auth headers stay out");
    assert!(h.get("set-cookie").is_none());
    assert_eq!(h["x-kept"], "1");
    assert_eq!(auth.seen().len(), 1);

    // Calls to the authorization service reuse the worker's keep-alive connection.
    for _ in 0..3 {
        let resp = client().get(gw.url("/api")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(auth.seen().len(), 4);
    assert_eq!(auth.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn denials_are_relayed_as_they_came() {
    let up = Upstream::start().await;
    let auth = AuthServer::start().await;
    let gw = TestGateway::start(&format!(
        r#"_format_version: "3.0"
services:
- name: s
  url: http://{up}
  routes:
  - paths: [/all]
    plugins: [{{name: forward-auth, config: {{address: "http://{auth}/verify"}}}}]
  - paths: [/some]
    plugins:
    - name: forward-auth
      config: {{address: "http://{auth}/verify", denied_response_headers: [X-Reason]}}
"#,
        up = up.addr(),
        auth = auth.addr
    ));
    let get = |path: &str, decision: &str| {
        no_redirects()
            .get(gw.url(path))
            .header("x-test-auth", decision)
            .send()
    };

    let resp = get("/all", "deny").await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        r#"Bearer realm="example", error="invalid_token""#
    );
    assert_eq!(resp.headers()["content-type"], "text/plain");
    assert_eq!(resp.headers()["x-reason"], "expired");
    assert_eq!(resp.text().await.unwrap(), "token expired\n");

    let resp = get("/all", "redirect").await.unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers()["location"],
        "http://login.example/oauth2/start?rd=%2Fapi"
    );
    assert_eq!(resp.headers()["set-cookie"], "_csrf=xyz; Path=/");

    // A body over 64 KiB is not relayed; the decision still is.
    let resp = get("/all", "big").await.unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().get("content-type").is_none());
    assert_eq!(resp.bytes().await.unwrap().len(), 0);

    // Only the listed headers, plus Location.
    let resp = get("/some", "deny").await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["x-reason"], "expired");
    assert!(resp.headers().get("www-authenticate").is_none());
    assert_eq!(resp.text().await.unwrap(), "token expired\n");
    let resp = get("/some", "redirect").await.unwrap();
    assert_eq!(resp.status(), 302);
    assert!(resp.headers().get("location").is_some());
    assert!(resp.headers().get("set-cookie").is_none());

    assert_eq!(
        up.request_count(),
        0,
        "denied requests never reach the upstream"
    );
    assert_eq!(auth.seen().len(), 5);
}

#[tokio::test]
async fn the_auth_service_gets_a_bodiless_get_with_forwarding_headers() {
    let up = Upstream::start().await;
    let auth = AuthServer::start().await;
    let gw_yaml = format!(
        r#"_format_version: "3.0"
services:
- name: s
  url: http://{up}
  routes:
  - paths: [/api]
    plugins: [{{name: forward-auth, config: {{address: "http://{auth}/verify?app=1"}}}}]
  - paths: [/filtered]
    plugins:
    - name: forward-auth
      config: {{address: "http://{auth}/verify", auth_request_headers: [Authorization, X-Test-Auth]}}
  - paths: [/trusting]
    plugins:
    - name: forward-auth
      config: {{address: "http://{auth}/verify", trust_forward_header: true}}
"#,
        up = up.addr(),
        auth = auth.addr
    );
    let gw = TestGateway::start(&gw_yaml);
    let spoofing_at = |gw: &TestGateway, path: &str| {
        client()
            .post(gw.url(path))
            .header("Authorization", "Bearer t")
            .header("Cookie", "c=1")
            .header("X-Custom", "1")
            .header("Content-Type", "text/plain")
            .header("X-Forwarded-For", "6.6.6.6")
            .header("X-Forwarded-Host", "evil.example")
            .header("X-Forwarded-Uri", "/fake")
            .header("X-Forwarded-Port", "1")
            .header("X-Real-IP", "6.6.6.6")
            .body("payload")
    };
    let spoofing = |path: &str| spoofing_at(&gw, path);

    let resp = spoofing("/api/items?x=1&y=2").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen = auth.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.uri, "/verify?app=1");
    assert_eq!(seen.body_len, 0);
    assert_eq!(header(&seen, "host"), Some(auth.addr.to_string().as_str()));
    assert_eq!(header(&seen, "x-forwarded-method"), Some("POST"));
    assert_eq!(header(&seen, "x-forwarded-uri"), Some("/api/items?x=1&y=2"));
    // The service judges the path the upstream will get, not the client's spelling of it.
    for spelling in [
        "/api/public/../items?x=1",
        "/%61pi/items?x=1",
        "/api//items?x=1",
    ] {
        let resp = spoofing(spelling).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{spelling}");
        let seen = auth.last();
        assert_eq!(
            header(&seen, "x-forwarded-uri"),
            Some("/api/items?x=1"),
            "{spelling}"
        );
    }
    assert_eq!(
        header(&seen, "x-forwarded-host"),
        Some(gw.addr.to_string().as_str())
    );
    assert_eq!(header(&seen, "x-forwarded-proto"), Some("http"));
    assert_eq!(header(&seen, "x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(
        header(&seen, "x-forwarded-port"),
        None,
        "a client's claim is dropped"
    );
    assert_eq!(header(&seen, "x-real-ip"), None);
    assert_eq!(header(&seen, "authorization"), Some("Bearer t"));
    assert_eq!(header(&seen, "cookie"), Some("c=1"));
    assert_eq!(header(&seen, "x-custom"), Some("1"));
    assert_eq!(header(&seen, "content-type"), Some("text/plain"));
    assert_eq!(header(&seen, "content-length"), None);
    assert_eq!(header(&seen, "transfer-encoding"), None);
    let on_upstream = up.requests().pop().unwrap();
    assert_eq!(
        (on_upstream.method.as_str(), on_upstream.body_len),
        ("POST", 7),
        "the client's request goes on untouched"
    );

    // Only the listed client headers; the forwarding headers are always set.
    let resp = spoofing("/filtered")
        .header("X-Test-Auth", "allow")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = auth.last();
    assert_eq!(header(&seen, "authorization"), Some("Bearer t"));
    assert_eq!(header(&seen, "x-test-auth"), Some("allow"));
    for absent in ["cookie", "x-custom", "content-type", "x-real-ip"] {
        assert_eq!(header(&seen, absent), None, "{absent}");
    }
    assert_eq!(header(&seen, "x-forwarded-method"), Some("POST"));
    assert_eq!(header(&seen, "x-forwarded-uri"), Some("/filtered"));
    assert_eq!(header(&seen, "x-forwarded-for"), Some("127.0.0.1"));

    // trust_forward_header from a peer that is not a trusted proxy: not believed.
    let resp = spoofing("/trusting").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen = auth.last();
    assert_eq!(header(&seen, "x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(header(&seen, "x-forwarded-uri"), Some("/trusting"));

    // From a trusted proxy (`--trusted-ips 127.0.0.1`), the forwarding headers are believed.
    let trusted = gatehouse::proxy::ServerConfig {
        real_ip: gatehouse::proxy::client_ip::RealIpConfig {
            trusted: gatehouse::proxy::client_ip::TrustedProxies::parse(&["127.0.0.1".into()])
                .unwrap(),
            ..Default::default()
        },
        ..Default::default()
    };
    let gw = TestGateway::start_with(&gw_yaml, trusted);
    let resp = spoofing_at(&gw, "/trusting").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen = auth.last();
    assert_eq!(header(&seen, "x-forwarded-for"), Some("6.6.6.6, 127.0.0.1"));
    assert_eq!(header(&seen, "x-forwarded-host"), Some("evil.example"));
    assert_eq!(header(&seen, "x-forwarded-uri"), Some("/fake"));
    assert_eq!(header(&seen, "x-forwarded-port"), Some("1"));
    assert_eq!(header(&seen, "x-forwarded-method"), Some("POST"));
}

#[tokio::test]
async fn an_unreachable_auth_service_fails_closed_unless_failure_mode_allow() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&format!(
        r#"_format_version: "3.0"
services:
- name: s
  url: http://{up}
  routes:
  - paths: [/closed]
    plugins: [{{name: forward-auth, config: {{address: "http://127.0.0.1:{port}/verify"}}}}]
  - paths: [/open]
    plugins:
    - name: forward-auth
      config:
        address: http://127.0.0.1:{port}/verify
        failure_mode_allow: true
        auth_response_headers: [X-Auth-User]
"#,
        up = up.addr(),
        port = closed_port()
    ));

    let resp = client().get(gw.url("/closed")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(
        json(resp).await["message"],
        "The authorization service is unavailable"
    );
    assert_eq!(up.request_count(), 0);

    let resp = client()
        .get(gw.url("/open"))
        .header("X-Auth-User", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = json(resp).await["headers"].clone();
    assert!(
        h.get("x-auth-user").is_none(),
        "without an answer, a client's copy of an auth header is not trusted"
    );
}

#[tokio::test]
async fn a_slow_auth_service_times_out() {
    let up = Upstream::start().await;
    let auth = AuthServer::start().await;
    let gw = TestGateway::start(&format!(
        r#"_format_version: "3.0"
services:
- name: s
  url: http://{up}
  routes:
  - paths: [/closed]
    plugins: [{{name: forward-auth, config: {{address: "http://{auth}/", timeout: 300}}}}]
  - paths: [/open]
    plugins:
    - name: forward-auth
      config: {{address: "http://{auth}/", timeout: 300, failure_mode_allow: true}}
"#,
        up = up.addr(),
        auth = auth.addr
    ));
    let started = Instant::now();
    let resp = client()
        .get(gw.url("/closed"))
        .header("x-test-auth", "slow")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(
        json(resp).await["message"],
        "The authorization service did not answer in time"
    );
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");

    let resp = client()
        .get(gw.url("/open"))
        .header("x-test-auth", "slow")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.request_count(), 1);
}

#[tokio::test]
async fn https_services_are_verified_unless_told_otherwise() {
    use crate::upstream_tls::{Ca, server_config};
    let up = Upstream::start().await;
    // A certificate from a CA the system's store does not have; any request is allowed.
    let ca = Ca::root();
    let auth =
        Upstream::start_tls(server_config(&ca.leaf(&["auth.test", "127.0.0.1"]), None)).await;
    let route = |path: &str, verify: bool| {
        format!(
            "  - paths: [{path}]\n    plugins:\n    - name: forward-auth\n      config: {{address: \"https://{}/verify\", tls_verify: {verify}}}\n",
            auth.addr()
        )
    };
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://{}\n  routes:\n{}{}",
        up.addr(),
        route("/strict", true),
        route("/lax", false)
    );
    let gw = TestGateway::start(&yaml);
    let resp = client().get(gw.url("/strict")).send().await.unwrap();
    assert_eq!(
        resp.status(),
        503,
        "the service's certificate is not trusted"
    );
    assert_eq!(auth.request_count(), 0);
    let resp = client().get(gw.url("/lax")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(auth.request_count(), 1);
    assert_eq!(auth.requests()[0].path, "/verify");
    // The server name is the address's host: an IP address sends none.
    assert_eq!(auth.tls_server_names(), vec![None]);
    assert_eq!(up.request_count(), 1);
}

#[test]
fn bad_settings_are_rejected_at_load() {
    let yaml = r#"_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:9
  routes:
  - paths: [/]
    plugins:
    - name: forward-auth
      config:
        address: ftp://auth.example/verify
        timeout: 0
"#;
    let errors = crate::harness::config_errors(yaml, &[]);
    assert!(
        errors.contains("kong.yml:10:")
            && errors.contains(
                "services[0].routes[0].plugins[0].config.address: `ftp://auth.example/verify` must be an http:// or https:// URL"
            ),
        "{errors}"
    );
    assert!(
        errors.contains("services[0].routes[0].plugins[0].config.timeout: value should be"),
        "{errors}"
    );
}
