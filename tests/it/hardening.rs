//! Edge cases found in review: framing, replay, pooling and header handling, each driven by a
//! raw TCP upstream that answers exactly what the test scripts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{TestGateway, json};
use crate::support::{Upstream, client, raw_http};

fn service(addr: std::net::SocketAddr, route: &str) -> String {
    format!(
        "_format_version: \"3.0\"\nservices:\n- name: svc\n  url: http://{addr}\n  routes:\n  - name: r\n{route}\n"
    )
}

/// Read one request head (and nothing more) from `s`; `None` when the peer closed.
async fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// An upstream that answers every request head with `response`, on kept-alive connections;
/// `hits` counts request heads received.
async fn scripted(response: &'static [u8]) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                while read_head(&mut s).await.is_some() {
                    counter.fetch_add(1, Ordering::SeqCst);
                    if s.write_all(response).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, hits)
}

#[tokio::test]
async fn content_length_is_dropped_when_transfer_encoding_is_present() {
    let (addr, _) = scripted(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n").await;
    let gw = TestGateway::start(&service(addr, "    paths: [/]"));
    let resp = client().get(gw.url("/")).send().await.unwrap();
    assert!(resp.headers().get("content-length").is_none());
    assert_eq!(resp.text().await.unwrap(), "hello world");
}

#[tokio::test]
async fn lenient_framing_from_the_upstream_is_refused() {
    for response in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello"[..],
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nxx"[..],
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n"[..],
    ] {
        let (addr, _) = scripted(response).await;
        let gw = TestGateway::start(&service(addr, "    paths: [/]"));
        let resp = client().get(gw.url("/")).send().await;
        // Either a 502 before the head, or an aborted body: never a silently wrong message.
        match resp {
            Ok(r) if r.status() == 502 => {}
            Ok(r) => assert!(
                r.bytes().await.is_err(),
                "{}",
                String::from_utf8_lossy(response)
            ),
            Err(_) => {}
        }
    }
}

#[tokio::test]
async fn an_http10_upstream_does_not_downgrade_the_client() {
    let (addr, _) = scripted(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    let gw = TestGateway::start(&service(addr, "    paths: [/]"));
    let raw = raw_http(
        gw.addr,
        b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

#[tokio::test]
async fn a_stale_connection_is_replayed_at_most_once() {
    // Answers the first request on each connection, then swallows the next one and closes.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let deletes = Arc::new(AtomicUsize::new(0));
    let seen = deletes.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                if read_head(&mut s).await.is_none() {
                    return;
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                if let Some(head) = read_head(&mut s).await
                    && head.starts_with("DELETE")
                {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
                // close without answering
            });
        }
    });
    let gw = TestGateway::start(&service(addr, "    paths: [/]"));
    // Fill the pool with several connections.
    let warm: Vec<_> = (0..6).map(|_| client().get(gw.url("/")).send()).collect();
    for r in futures_util::future::join_all(warm).await {
        assert_eq!(r.unwrap().status(), 200);
    }
    let resp = client().delete(gw.url("/")).send().await.unwrap();
    assert!(
        resp.status() == 502 || resp.status() == 200,
        "{}",
        resp.status()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        deletes.load(Ordering::SeqCst) <= 2,
        "DELETE sent {} times",
        deletes.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn a_stalled_upload_does_not_block_the_next_request() {
    // The upstream answers as soon as it has a head (an early 401), then keeps reading.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                while read_head(&mut s).await.is_some() {
                    if s.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                    // Drain whatever body follows, slowly, without delimiting it.
                    let mut buf = [0u8; 4096];
                    let _ =
                        tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await;
                }
            });
        }
    });
    let gw = TestGateway::start(&service(addr, "    paths: [/]"));
    // Client A: announces a large body, sends 10 bytes, stalls.
    let mut a = TcpStream::connect(gw.addr).await.unwrap();
    a.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\n0123456789")
        .await
        .unwrap();
    let mut head = [0u8; 64];
    let _ = tokio::time::timeout(Duration::from_secs(2), a.read(&mut head)).await;
    // Client B: an ordinary POST must not queue behind A's upload.
    let b = tokio::time::timeout(
        Duration::from_secs(3),
        client().post(gw.url("/")).body("hello").send(),
    )
    .await;
    let b = b
        .expect("the second request hung behind the stalled upload")
        .unwrap();
    assert_eq!(b.status(), 401);
    drop(a);
}

#[tokio::test]
async fn overlong_upstream_targets_are_414_not_rewritten() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(
        &service(up.addr(), "    paths: [/]\n    strip_path: false").replace(
            &format!("url: http://{}", up.addr()),
            &format!("url: http://{}/{}", up.addr(), "b".repeat(2000)),
        ),
    );
    let path = format!("/{}", "a".repeat(64_000));
    let resp = client().get(gw.url(&path)).send().await.unwrap();
    assert_eq!(resp.status(), 414);
    assert_eq!(up.request_count(), 0, "nothing reaches the upstream");
}

#[tokio::test]
async fn backslashes_and_dot_parameters_cannot_bypass_routes() {
    let gw = TestGateway::start(
        "_format_version: \"3.0\"\nroutes:\n- paths: [/public]\n  plugins: [{name: request-termination, config: {status_code: 200}}]\n- paths: [/admin]\n  plugins: [{name: request-termination, config: {status_code: 403}}]\n",
    );
    for path in ["/public/..;/admin", "/public/.;/x", "/public/%2e%2e;/admin"] {
        assert_eq!(
            client().get(gw.url(path)).send().await.unwrap().status(),
            400,
            "{path}"
        );
    }
    let raw = raw_http(
        gw.addr,
        b"GET /public/..\\admin HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(
        String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
}

#[tokio::test]
async fn forwarded_for_lines_are_joined_and_connection_cannot_strip_plugin_headers() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&format!(
        "{}plugins:\n- name: correlation-id\n  config: {{header_name: X-Request-Id}}\n",
        service(up.addr(), "    paths: [/]")
    ));
    let raw = raw_http(
        gw.addr,
        b"GET / HTTP/1.1\r\nhost: x\r\nx-forwarded-for: 1.1.1.1\r\nx-forwarded-for: 2.2.2.2\r\nconnection: close, x-request-id\r\n\r\n",
    )
    .await;
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"));
    let seen = &up.requests()[0].headers;
    assert_eq!(seen["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 127.0.0.1");
    assert!(
        seen.contains_key("x-request-id"),
        "the client's Connection list removed a plugin's header"
    );
}

#[tokio::test]
async fn missing_or_duplicate_host_is_400() {
    let gw = TestGateway::start(
        "_format_version: \"3.0\"\nroutes:\n- paths: [/]\n  plugins: [{name: request-termination, config: {status_code: 200}}]\n",
    );
    for req in [
        &b"GET / HTTP/1.1\r\nconnection: close\r\n\r\n"[..],
        &b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\nconnection: close\r\n\r\n"[..],
    ] {
        let raw = raw_http(gw.addr, req).await;
        assert!(
            String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 400"),
            "{}",
            String::from_utf8_lossy(&raw)
        );
    }
    let raw = raw_http(gw.addr, b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(
        String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200")
            || String::from_utf8_lossy(&raw).starts_with("HTTP/1.0 200")
    );
}

#[tokio::test]
async fn json_error_bodies_for_bad_requests() {
    let gw = TestGateway::start(
        "_format_version: \"3.0\"\nroutes:\n- paths: [/x]\n  plugins: [{name: request-termination, config: {status_code: 200}}]\n",
    );
    let resp = client().get(gw.url("/x%2f..%2fy")).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(
        json(resp).await["message"]
            .as_str()
            .unwrap()
            .contains("encoded slash")
    );
}
