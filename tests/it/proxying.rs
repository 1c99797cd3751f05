//! Proxying through the real gateway to real upstream servers: path joining, forwarded and
//! hop-by-hop headers, trusted proxies, streaming, timeouts, retries and keep-alive pooling.

use std::time::Duration;

use futures_util::StreamExt;
use gatehouse::proxy::ServerConfig;
use gatehouse::proxy::client_ip::{RealIpConfig, TrustedProxies};
use gatehouse::proxy::pool::PoolSettings;

use crate::harness::{TestGateway, json};
use crate::support::{Upstream, client, closed_port, pattern_bytes, raw_http};

fn service(url: &str, route: &str) -> String {
    format!(
        "_format_version: \"3.0\"\nservices:\n- name: svc\n  url: {url}\n  routes:\n  - name: r\n{route}\n"
    )
}

#[tokio::test]
async fn strip_path_and_service_path_join() {
    let up = Upstream::start().await;
    let cases = [
        // (service path, route, request, upstream path)
        ("", "    paths: [/api]", "/api/users?x=1&y=2", "/users"),
        (
            "",
            "    paths: [/api]\n    strip_path: false",
            "/api/users",
            "/api/users",
        ),
        ("/base", "    paths: [/api]", "/api/users", "/base/users"),
        ("/base/", "    paths: [/api/]", "/api/users", "/base/users"),
        ("/base", "    paths: [/api]", "/api", "/base"),
        ("", "    paths: [/api]", "/api", "/"),
        (
            "/base",
            "    paths: [/api]\n    strip_path: false",
            "/api/users",
            "/base/api/users",
        ),
    ];
    for (svc_path, route, request, expected) in cases {
        let gw = TestGateway::start(&service(&format!("http://{}{svc_path}", up.addr()), route));
        let resp = client().get(gw.url(request)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{request}");
        let body = json(resp).await;
        assert_eq!(
            body["path"], expected,
            "service {svc_path:?} request {request}"
        );
        if request.contains('?') {
            assert_eq!(body["query"], "x=1&y=2");
        }
    }
}

#[tokio::test]
async fn forwarded_headers_and_host() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&service(&format!("http://{}", up.addr()), "    paths: [/]"));
    let resp = client()
        .get(gw.url("/a/b"))
        .header("host", "shop.example.com:8000")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("x-real-ip", "1.2.3.4")
        .send()
        .await
        .unwrap();
    let body = json(resp).await;
    let h = &body["headers"];
    // The client is not a trusted proxy: its list is kept and the peer appended, but it cannot
    // choose the proto or the real IP.
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "shop.example.com");
    assert_eq!(h["x-forwarded-port"], gw.addr.port().to_string());
    assert_eq!(h["x-forwarded-path"], "/a/b");
    assert_eq!(
        h["host"],
        up.addr().to_string(),
        "Host is the upstream's without preserve_host"
    );

    let gw = TestGateway::start(&service(
        &format!("http://{}", up.addr()),
        "    paths: [/]\n    preserve_host: true",
    ));
    let resp = client()
        .get(gw.url("/"))
        .header("host", "shop.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(json(resp).await["headers"]["host"], "shop.example.com");
}

#[tokio::test]
async fn trusted_proxy_supplies_the_client_address() {
    let up = Upstream::start().await;
    let config = ServerConfig {
        real_ip: RealIpConfig {
            trusted: TrustedProxies::parse(&["127.0.0.0/8".to_string()]).unwrap(),
            recursive: true,
            ..RealIpConfig::default()
        },
        ..ServerConfig::default()
    };
    let gw = TestGateway::start_with(
        &service(&format!("http://{}", up.addr()), "    paths: [/]"),
        config,
    );
    let resp = client()
        .get(gw.url("/"))
        .header("x-forwarded-for", "198.51.100.7, 127.0.0.5")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let h = json(resp).await["headers"].clone();
    assert_eq!(h["x-real-ip"], "198.51.100.7");
    assert_eq!(
        h["x-forwarded-proto"], "https",
        "a trusted proxy's proto is kept"
    );
    assert_eq!(h["x-forwarded-for"], "198.51.100.7, 127.0.0.5, 127.0.0.1");
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&service(&format!("http://{}", up.addr()), "    paths: [/]"));
    let resp = client()
        .get(gw.url("/"))
        .header("connection", "keep-alive, x-private")
        .header("x-private", "secret")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("te", "trailers")
        .header("x-end-to-end", "kept")
        .send()
        .await
        .unwrap();
    let h = json(resp).await["headers"].clone();
    for gone in ["x-private", "keep-alive", "proxy-connection", "te"] {
        assert!(h.get(gone).is_none(), "{gone} reached the upstream: {h}");
    }
    assert_eq!(h["x-end-to-end"], "kept");

    let raw = raw_http(
        gw.addr,
        b"GET /headers-out HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(!text.contains("keep-alive: timeout"), "{text}");
    assert!(!text.contains("proxy-connection"), "{text}");
}

#[tokio::test]
async fn bodies_stream_both_ways() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&service(&format!("http://{}", up.addr()), "    paths: [/]"));
    // Download, with and without content-length.
    for path in ["/bytes/8388608", "/chunked/8388608"] {
        let resp = client().get(gw.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.bytes().await.unwrap();
        assert_eq!(body.len(), 8 << 20, "{path}");
        assert!(body == pattern_bytes(8 << 20), "{path}: bytes differ");
    }
    // Upload streamed from the client, echoed back.
    let data = pattern_bytes(4 << 20);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(65536).map(|c| Ok(c.to_vec())).collect();
    let resp = client()
        .post(gw.url("/echo"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut got = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert!(got == data, "echoed body differs ({} bytes)", got.len());
}

#[tokio::test]
async fn first_bytes_arrive_before_the_upstream_finishes() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&service(&format!("http://{}", up.addr()), "    paths: [/]"));
    let started = std::time::Instant::now();
    let resp = client()
        .get(gw.url("/slow-body/1500"))
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "first chunk was buffered: {:?}",
        started.elapsed()
    );
    while stream.next().await.is_some() {}
    assert!(started.elapsed() >= Duration::from_millis(1500));
}

#[tokio::test]
async fn connect_failure_is_502_and_read_timeout_is_504() {
    let up = Upstream::start().await;
    let port = closed_port();
    let gw = TestGateway::start(&format!(
        "_format_version: \"3.0\"\nservices:\n- name: dead\n  url: http://127.0.0.1:{port}\n  retries: 2\n  routes: [{{paths: [/dead]}}]\n- name: slow\n  url: http://{}\n  read_timeout: 300\n  routes: [{{paths: [/delay], strip_path: false}}, {{paths: [/close], strip_path: false}}, {{paths: [/slow-body], strip_path: false}}]\n",
        up.addr()
    ));
    let resp = client().get(gw.url("/dead")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(
        json(resp).await["message"],
        "An invalid response was received from the upstream server"
    );

    let started = std::time::Instant::now();
    let resp = client().get(gw.url("/delay/2000")).send().await.unwrap();
    assert_eq!(resp.status(), 504);
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(
        json(resp).await["message"],
        "The upstream server is timing out"
    );

    let resp = client().get(gw.url("/close")).send().await.unwrap();
    assert_eq!(resp.status(), 502);

    // A body that stalls longer than read_timeout is cut off (the head was already sent).
    let resp = client()
        .get(gw.url("/slow-body/2000"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.bytes().await.is_err(),
        "a stalled body must be aborted, not completed"
    );
}

#[tokio::test]
async fn failed_connect_is_retried_on_another_target() {
    let a = Upstream::start().await;
    let b = Upstream::start().await;
    let dead = closed_port();
    let gw = TestGateway::start(&format!(
        "_format_version: \"3.0\"\nupstreams:\n- name: backend\n  targets:\n  - target: 127.0.0.1:{dead}\n  - target: {}\n  - target: {}\n  - target: 127.0.0.1:1\n    weight: 0\nservices:\n- name: svc\n  host: backend\n  routes: [{{paths: [/]}}]\n",
        a.addr(),
        b.addr()
    ));
    for _ in 0..30 {
        let resp = client().get(gw.url("/")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(a.request_count() + b.request_count(), 30);
    assert!(
        a.request_count() >= 10 && b.request_count() >= 10,
        "{} / {}",
        a.request_count(),
        b.request_count()
    );
}

#[tokio::test]
async fn upstream_connections_are_pooled_and_retired() {
    let up = Upstream::start().await;
    let yaml = service(&format!("http://{}", up.addr()), "    paths: [/]");
    let gw = TestGateway::start(&yaml);
    for _ in 0..20 {
        assert_eq!(
            client().get(gw.url("/")).send().await.unwrap().status(),
            200
        );
    }
    assert_eq!(
        up.connections_accepted(),
        1,
        "sequential requests reuse one connection"
    );

    let up = Upstream::start().await;
    let config = ServerConfig {
        pool: PoolSettings {
            max_requests: 5,
            ..PoolSettings::default()
        },
        ..ServerConfig::default()
    };
    let gw = TestGateway::start_with(
        &service(&format!("http://{}", up.addr()), "    paths: [/]"),
        config,
    );
    for _ in 0..20 {
        assert_eq!(
            client().get(gw.url("/")).send().await.unwrap().status(),
            200
        );
    }
    assert_eq!(
        up.connections_accepted(),
        4,
        "max_requests=5 retires a connection after 5 requests"
    );
}

#[tokio::test]
async fn route_without_service_is_503() {
    let gw =
        TestGateway::start("_format_version: \"3.0\"\nroutes:\n- name: lonely\n  paths: [/x]\n");
    let resp = client().get(gw.url("/x")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(
        json(resp).await["message"],
        "no Service found with those values"
    );
}

/// An upstream that advertises keep-alive but closes every connection right after answering,
/// so the gateway's pooled connection is always stale on the next request.
async fn closing_upstream() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                if crate::support::read_request_head(&mut s).await.is_none() {
                    return;
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok",
                    )
                    .await;
                // dropping `s` closes the connection the gateway believes is reusable
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn stale_keep_alive_connections_are_replaced_transparently() {
    let (addr, task) = closing_upstream().await;
    let gw = TestGateway::start(&service(&format!("http://{addr}"), "    paths: [/]"));
    for i in 0..20 {
        let resp = client().get(gw.url("/")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "request {i}");
        assert_eq!(resp.text().await.unwrap(), "ok");
        if i % 5 == 0 {
            // give the upstream's close time to arrive, so both detection paths are exercised
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    task.abort();
}

#[tokio::test]
async fn head_and_no_content_responses_pass_through() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&service(&format!("http://{}", up.addr()), "    paths: [/]"));
    let resp = client().head(gw.url("/bytes/1000")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], "1000");
    assert!(resp.bytes().await.unwrap().is_empty());
    let resp = client().get(gw.url("/status/204")).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    // The same keep-alive connection still works afterwards.
    assert_eq!(
        client().get(gw.url("/")).send().await.unwrap().status(),
        200
    );
    assert_eq!(up.connections_accepted(), 1);
}

#[tokio::test]
async fn idle_upstream_connections_expire() {
    let up = Upstream::start().await;
    let config = ServerConfig {
        pool: PoolSettings {
            idle_timeout: Duration::from_millis(200),
            ..PoolSettings::default()
        },
        ..ServerConfig::default()
    };
    let gw = TestGateway::start_with(
        &service(&format!("http://{}", up.addr()), "    paths: [/]"),
        config,
    );
    assert_eq!(
        client().get(gw.url("/")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        client().get(gw.url("/")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        up.connections_accepted(),
        1,
        "reused within the idle timeout"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        client().get(gw.url("/")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        up.connections_accepted(),
        2,
        "an expired idle connection is not reused"
    );
}

#[tokio::test]
async fn target_weights_set_the_shares() {
    let heavy = Upstream::start().await;
    let light = Upstream::start().await;
    let gw = TestGateway::start(&format!(
        "_format_version: \"3.0\"\nupstreams:\n- name: backend\n  targets:\n  - {{target: \"{}\", weight: 300}}\n  - {{target: \"{}\", weight: 100}}\nservices:\n- name: svc\n  host: backend\n  routes: [{{paths: [/]}}]\n",
        heavy.addr(),
        light.addr()
    ));
    for _ in 0..400 {
        assert_eq!(
            client().get(gw.url("/")).send().await.unwrap().status(),
            200
        );
    }
    assert_eq!((heavy.request_count(), light.request_count()), (300, 100));
}

/// Writes `bytes`, closes the writing half, and returns everything read until the gateway
/// closes (a body cut short is then seen as such).
async fn raw_half_closed(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn bodies_read_whole_for_plugins_reach_the_upstream_intact_and_are_bounded() {
    let up = Upstream::start().await;
    // hmac-auth's body check makes /buffered read bodies whole; `anonymous` lets unsigned
    // requests through, so only the pipeline is under test here.
    let yaml = format!(
        r#"_format_version: "3.0"
consumers:
- username: anon
services:
- name: s
  url: http://{}
  routes:
  - paths: [/buffered]
    plugins: [{{name: hmac-auth, config: {{validate_request_body: true, anonymous: anon}}}}]
  - paths: [/streamed]
"#,
        up.addr()
    );
    let config = ServerConfig {
        request_buffer_limit: 64 * 1024,
        client_body_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let gw = TestGateway::start_with(&yaml, config);

    // Uploaded chunked, within the limit: echoed back byte for byte, and sent upstream with a
    // Content-Length instead of the client's chunked framing.
    let data = pattern_bytes(64 * 1024);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(1000).map(|c| Ok(c.to_vec())).collect();
    let resp = client()
        .post(gw.url("/buffered/echo"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = resp.bytes().await.unwrap();
    assert!(got == data, "echoed body differs ({} bytes)", got.len());
    let seen = up.requests().pop().expect("recorded");
    assert_eq!(seen.headers["content-length"], "65536");
    assert!(seen.headers.get("transfer-encoding").is_none());
    assert_eq!(seen.body_len, 65536);
    let before = up.request_count();

    // Over the limit by Content-Length: refused before any of the body is read.
    let resp = raw_http(
        gw.addr,
        b"POST /buffered/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 65537\r\n\r\n",
    )
    .await;
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(
        text.contains(r#"{"message":"Payload too large"}"#),
        "{text}"
    );
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    // Over the limit while chunked: refused once the limit is crossed.
    let mut chunked =
        b"POST /buffered/echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(b"6000\r\n");
        chunked.extend_from_slice(&[b'a'; 0x6000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let text = raw_half_closed(gw.addr, &chunked).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    // Malformed chunked encoding, and a body cut short: 400.
    let text = raw_half_closed(
        gw.addr,
        b"POST /buffered HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(
        text.contains(r#"{"message":"Bad request: invalid chunk size"}"#),
        "{text}"
    );
    let text = raw_half_closed(
        gw.addr,
        b"POST /buffered HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    // A client that stops sending: 408 after --client-body-timeout.
    let resp = raw_http(
        gw.addr,
        b"POST /buffered HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789",
    )
    .await;
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains(r#"{"message":"Request timeout"}"#), "{text}");
    assert_eq!(up.request_count(), before, "no refused body went upstream");

    // Routes without such a plugin still stream bodies of any size.
    let big = pattern_bytes(256 * 1024);
    let resp = client()
        .post(gw.url("/streamed/echo"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.unwrap() == big);
    // A bodiless request on the buffering route takes the usual path.
    let resp = client().get(gw.url("/buffered")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}
