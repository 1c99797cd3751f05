//! Client limits and strict HTTP/1 framing (docs/limits.md): each refusal has its status and a
//! JSON body, closes the connection, and sends nothing upstream; request buffering; slow, idle
//! and surplus connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gatehouse::proxy::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::TestGateway;
use crate::support::{Upstream, client, pattern_bytes, raw_http};

/// An upstream that records every connection and every byte it receives, and answers each
/// request (a head and its `Content-Length` body) with `200 ok`.
struct Recorder {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    bytes: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (connections, bytes, requests) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (c, b, r) = (connections.clone(), bytes.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let (b, r) = (b.clone(), r.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    loop {
                        // One request: its head, then its Content-Length body.
                        let head_end = loop {
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => {
                                    b.fetch_add(n, Ordering::SeqCst);
                                    buf.extend_from_slice(&chunk[..n]);
                                }
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap_or(0));
                        while buf.len() < head_end + len {
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => {
                                    b.fetch_add(n, Ordering::SeqCst);
                                    buf.extend_from_slice(&chunk[..n]);
                                }
                            }
                        }
                        buf.drain(..head_end + len);
                        r.fetch_add(1, Ordering::SeqCst);
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                    }
                });
            }
        });
        Recorder {
            addr,
            connections,
            bytes,
            requests,
        }
    }

    /// Panics unless nothing at all reached this upstream.
    fn assert_untouched(&self, case: &str) {
        assert_eq!(
            (
                self.connections.load(Ordering::SeqCst),
                self.bytes.load(Ordering::SeqCst)
            ),
            (0, 0),
            "the upstream was reached for {case}"
        );
    }
}

fn config(addr: SocketAddr) -> String {
    format!(
        "_format_version: \"3.0\"\nservices:\n- name: svc\n  url: http://{addr}\n  routes:\n  - name: buffered\n    paths: [/]\n  - name: streamed\n    paths: [/stream]\n    request_buffering: false\n"
    )
}

/// One response parsed from raw bytes: status, the JSON body, and the head's lines.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: serde_json::Value,
}

/// Every response in `raw` (each with a `Content-Length`).
fn answers(raw: &[u8]) -> Vec<Answer> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let len: usize = head
            .to_lowercase()
            .lines()
            .find_map(|l| {
                l.strip_prefix("content-length:")
                    .map(|v| v.trim().to_string())
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let body_end = (end + 4 + len).min(rest.len());
        let body = serde_json::from_slice(&rest[end + 4..body_end]).unwrap_or_else(|_| {
            serde_json::Value::String(
                String::from_utf8_lossy(&rest[end + 4..body_end]).into_owned(),
            )
        });
        out.push(Answer { status, head, body });
        rest = &rest[body_end..];
    }
    out
}

/// Send `bytes`, expect exactly one response with `status`, a JSON `message` and
/// `Connection: close`, and the connection closed.
async fn refused(addr: SocketAddr, bytes: &[u8], status: u16) -> Answer {
    let raw = raw_http(addr, bytes).await;
    let mut got = answers(&raw);
    assert_eq!(
        got.len(),
        1,
        "{:?} -> {:?}",
        String::from_utf8_lossy(bytes),
        String::from_utf8_lossy(&raw)
    );
    let a = got.remove(0);
    assert_eq!(
        a.status,
        status,
        "{:?}: {a:?}",
        String::from_utf8_lossy(bytes)
    );
    assert!(
        a.body["message"].is_string(),
        "not the JSON error shape: {a:?}"
    );
    assert!(a.head.to_lowercase().contains("connection: close"), "{a:?}");
    a
}

#[tokio::test]
async fn oversized_heads_are_431_and_long_request_lines_414() {
    let up = Recorder::start().await;
    let gw = TestGateway::start_with(
        &config(up.addr),
        ServerConfig {
            max_request_line: 256,
            max_header_size: 1024,
            max_headers: 10,
            ..ServerConfig::default()
        },
    );
    let big = format!(
        "GET / HTTP/1.1\r\nhost: a\r\nx-big: {}\r\n\r\n",
        "v".repeat(1100)
    );
    let a = refused(gw.addr, big.as_bytes(), 431).await;
    assert_eq!(a.body["message"], "Request header fields too large");

    let mut many = String::from("GET / HTTP/1.1\r\nhost: a\r\n");
    for i in 0..10 {
        many.push_str(&format!("x-{i}: 1\r\n"));
    }
    many.push_str("\r\n");
    let a = refused(gw.addr, many.as_bytes(), 431).await;
    assert_eq!(a.body["message"], "Too many request header fields");

    let long = format!("GET /{} HTTP/1.1\r\nhost: a\r\n\r\n", "a".repeat(300));
    let a = refused(gw.addr, long.as_bytes(), 414).await;
    assert_eq!(a.body["message"], "Request-URI too long");
    // Refused as soon as the line is too long, without waiting for its end.
    let partial = format!("GET /{}", "a".repeat(300));
    refused(gw.addr, partial.as_bytes(), 414).await;
    up.assert_untouched("oversized heads");

    // At the limits, requests pass (9 headers + host = 10 lines).
    let mut fits = String::from("GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n");
    for i in 0..8 {
        fits.push_str(&format!("x-{i}: 1\r\n"));
    }
    fits.push_str("\r\n");
    let got = answers(&raw_http(gw.addr, fits.as_bytes()).await);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].status, 200);
    assert_eq!(up.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn malformed_requests_are_400_and_nothing_is_forwarded() {
    let cases: &[(&str, &[u8])] = &[
        (
            "Content-Length with Transfer-Encoding",
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "Transfer-Encoding with Content-Length",
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "duplicate equal Content-Length",
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello",
        ),
        (
            "duplicate different Content-Length",
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
        ),
        (
            "Content-Length list",
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5, 5\r\n\r\nhello",
        ),
        (
            "signed Content-Length",
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: +5\r\n\r\nhello",
        ),
        (
            "bad chunk size",
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "signed chunk size",
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "chunk longer than its size",
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "overflowing chunk size",
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n10000000000000000\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "bare LF in a chunked body",
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        ),
        ("bare LF after the request line", b"GET / HTTP/1.1\nhost: a\r\n\r\n"),
        ("bare LF after a header", b"GET / HTTP/1.1\r\nhost: a\nx: y\r\n\r\n"),
        ("bare LF ending the head", b"GET / HTTP/1.1\r\nhost: a\r\n\n"),
        ("control byte in a value", b"GET / HTTP/1.1\r\nhost: a\r\nx: a\x01b\r\n\r\n"),
        ("NUL in a value", b"GET / HTTP/1.1\r\nhost: a\r\nx: a\x00b\r\n\r\n"),
        ("bare CR in a value", b"GET / HTTP/1.1\r\nhost: a\r\nx: a\rb\r\n\r\n"),
        ("control byte in a name", b"GET / HTTP/1.1\r\nhost: a\r\nx\x7f: b\r\n\r\n"),
        ("space before the colon", b"GET / HTTP/1.1\r\nhost: a\r\nx : b\r\n\r\n"),
        (
            "space before the colon of Content-Length",
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length : 5\r\n\r\nhello",
        ),
        ("obs-fold", b"GET / HTTP/1.1\r\nhost: a\r\nx: a\r\n  b\r\n\r\n"),
        ("header without colon", b"GET / HTTP/1.1\r\nhost: a\r\nxyz\r\n\r\n"),
        ("control byte in the target", b"GET /a\x01b HTTP/1.1\r\nhost: a\r\n\r\n"),
        ("two spaces in the request line", b"GET  / HTTP/1.1\r\nhost: a\r\n\r\n"),
        ("Transfer-Encoding in HTTP/1.0", b"POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("bad version", b"GET / HTTX/1.1\r\nhost: a\r\n\r\n"),
    ];
    let up = Recorder::start().await;
    let gw = TestGateway::start(&config(up.addr));
    for (case, bytes) in cases {
        let a = refused(gw.addr, bytes, 400).await;
        assert!(
            a.body["message"]
                .as_str()
                .unwrap_or("")
                .starts_with("Bad request"),
            "{case}: {a:?}"
        );
        up.assert_untouched(case);
    }
    // The two neighbours: an unknown transfer coding, a version this gateway does not speak.
    let a = refused(
        gw.addr,
        b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
    )
    .await;
    assert_eq!(a.body["message"], "Transfer-Encoding not supported");
    refused(gw.addr, b"GET / HTTP/1.2\r\nhost: a\r\n\r\n", 505).await;
    up.assert_untouched("unsupported framing");
}

#[tokio::test]
async fn the_tls_listener_is_guarded_too() {
    use crate::tls::{Pki, connect, default_client, q};
    let up = Recorder::start().await;
    let pki = Pki::new();
    let leaf = pki.leaf(&["example.test"]);
    let yaml = format!(
        "{}certificates:\n- cert: {}\n  key: {}\n  snis: [example.test]\n",
        config(up.addr),
        q(&leaf.cert),
        q(&leaf.key)
    );
    let gw = TestGateway::start_tls(&yaml);
    let mut tls = connect(gw.tls_addr.unwrap(), &default_client(&pki), "example.test")
        .await
        .unwrap();
    tls.write_all(
        b"POST / HTTP/1.1\r\nhost: example.test\r\ncontent-length: 1\r\ncontent-length: 1\r\n\r\nx",
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut raw)).await;
    let got = answers(&raw);
    assert_eq!(got.len(), 1, "{}", String::from_utf8_lossy(&raw));
    assert_eq!(got[0].status, 400);
    assert_eq!(
        got[0].body["message"],
        "Bad request: duplicate Content-Length"
    );
    up.assert_untouched("a malformed request over TLS");
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let up = Recorder::start().await;
    let gw = TestGateway::start_with(
        &config(up.addr),
        ServerConfig {
            client_max_body_size: 1000,
            ..ServerConfig::default()
        },
    );
    // Announced: refused before the body is read, even with Expect: 100-continue.
    let a = refused(
        gw.addr,
        b"POST / HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ncontent-length: 1001\r\n\r\n",
        413,
    )
    .await;
    assert_eq!(a.body["message"], "Payload too large");
    // Chunked: counted as it comes; refused at the chunk that crosses the limit.
    let mut chunked = b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(b"190\r\n");
        chunked.extend_from_slice(&[b'x'; 400]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    refused(gw.addr, &chunked, 413).await;
    up.assert_untouched("bodies over the limit");

    // At the limit, both pass.
    let mut ok =
        b"POST / HTTP/1.1\r\nhost: a\r\nconnection: close\r\ncontent-length: 1000\r\n\r\n".to_vec();
    ok.extend_from_slice(&[b'y'; 1000]);
    let got = answers(&raw_http(gw.addr, &ok).await);
    assert_eq!(got[0].status, 200);
    let mut ok = b"POST / HTTP/1.1\r\nhost: a\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n3e8\r\n".to_vec();
    ok.extend_from_slice(&[b'y'; 1000]);
    ok.extend_from_slice(b"\r\n0\r\n\r\n");
    let got = answers(&raw_http(gw.addr, &ok).await);
    assert_eq!(got[0].status, 200);
    assert_eq!(up.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_slowloris_is_cut_at_the_header_timeout_while_others_are_served() {
    let up = Upstream::start().await;
    let gw = TestGateway::start_with(
        &config(up.addr()),
        ServerConfig {
            header_read_timeout: Duration::from_secs(1),
            ..ServerConfig::default()
        },
    );
    let addr = gw.addr;
    let started = Instant::now();
    // One header byte every 100 ms, never finishing the head; reads what comes back.
    let slow = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: a\r\nx-slow: ")
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            tokio::select! {
                r = s.read(&mut buf) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                },
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    if s.write_all(b"z").await.is_err() {
                        // Keep reading what was sent before the close.
                        let _ = tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut got)).await;
                        break;
                    }
                }
            }
            if started.elapsed() > Duration::from_secs(10) {
                break;
            }
        }
        (started.elapsed(), got)
    });
    // The one worker keeps serving others meanwhile.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..5 {
        let t = Instant::now();
        let resp = client().get(gw.url("/x")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
    }
    let (elapsed, got) = slow.await.unwrap();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "slow client held for {elapsed:?}"
    );
    let got = answers(&got);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].status, 408);
    assert_eq!(got[0].body["message"], "Request timeout");
    assert_eq!(
        up.request_count(),
        5,
        "only the others reached the upstream"
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_timeout() {
    let up = Upstream::start().await;
    let gw = TestGateway::start_with(
        &config(up.addr()),
        ServerConfig {
            keepalive_timeout: Duration::from_secs(1),
            ..ServerConfig::default()
        },
    );
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // Kept open meanwhile: a second request on it works.
    s.write_all(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let idle = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    let waited = idle.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_millis(2500),
        "closed after {waited:?}"
    );
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_at_once() {
    let up = Upstream::start().await;
    let gw = TestGateway::start_with(
        &config(up.addr()),
        ServerConfig {
            max_connections: 2,
            ..ServerConfig::default()
        },
    );
    async fn exchange(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
        s.write_all(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n").await?;
        let mut buf = vec![0u8; 64 * 1024];
        let n = s.read(&mut buf).await?;
        Ok(buf[..n].to_vec())
    }
    let mut a = TcpStream::connect(gw.addr).await.unwrap();
    let mut b = TcpStream::connect(gw.addr).await.unwrap();
    assert!(exchange(&mut a).await.unwrap().starts_with(b"HTTP/1.1 200"));
    assert!(exchange(&mut b).await.unwrap().starts_with(b"HTTP/1.1 200"));
    // A third is closed without an answer, promptly.
    let t = Instant::now();
    let mut c = TcpStream::connect(gw.addr).await.unwrap();
    let third = tokio::time::timeout(Duration::from_secs(2), exchange(&mut c)).await;
    match third {
        Ok(Ok(bytes)) => assert!(bytes.is_empty(), "{}", String::from_utf8_lossy(&bytes)),
        Ok(Err(_)) => {}
        Err(_) => panic!("the surplus connection was held open"),
    }
    assert!(t.elapsed() < Duration::from_secs(1));
    // The two open ones keep working.
    assert!(exchange(&mut a).await.unwrap().starts_with(b"HTTP/1.1 200"));
    assert!(exchange(&mut b).await.unwrap().starts_with(b"HTTP/1.1 200"));
    // Closing one frees its slot.
    drop(a);
    let mut d = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        if let Ok(bytes) = exchange(&mut s).await
            && bytes.starts_with(b"HTTP/1.1 200")
        {
            d = Some(s);
            break;
        }
    }
    assert!(
        d.is_some(),
        "the freed slot was not given to a new connection"
    );
    assert_eq!(up.request_count(), 5);
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_up_to_a_malformed_one() {
    let up = Recorder::start().await;
    let gw = TestGateway::start(&config(up.addr));
    // Valid after valid, bodies included, in one write.
    let raw = raw_http(
        gw.addr,
        b"GET /a HTTP/1.1\r\nhost: a\r\n\r\nPOST /b HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhelloPOST /c HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\nGET /d HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    let got = answers(&raw);
    assert_eq!(
        got.iter().map(|a| a.status).collect::<Vec<_>>(),
        [200, 200, 200, 200],
        "{}",
        String::from_utf8_lossy(&raw)
    );
    assert_eq!(up.requests.load(Ordering::SeqCst), 4);

    // A malformed one after a valid one: the valid one is answered first, then the 400, and
    // nothing of the malformed one goes upstream.
    let raw = raw_http(
        gw.addr,
        b"GET /a HTTP/1.1\r\nhost: a\r\n\r\nPOST /b HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\ncontent-length: 1\r\n\r\nxGET /c HTTP/1.1\r\nhost: a\r\n\r\n",
    )
    .await;
    let got = answers(&raw);
    assert_eq!(
        got.iter().map(|a| a.status).collect::<Vec<_>>(),
        [200, 400],
        "{}",
        String::from_utf8_lossy(&raw)
    );
    assert_eq!(
        got[1].body["message"],
        "Bad request: duplicate Content-Length"
    );
    assert_eq!(up.requests.load(Ordering::SeqCst), 5);

    // Valid requests on one keep-alive connection, one write each.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    for _ in 0..3 {
        s.write_all(b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n\r\nok")
            .await
            .unwrap();
        let n = s.read(&mut buf).await.unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    assert_eq!(up.requests.load(Ordering::SeqCst), 8);
}

#[tokio::test]
async fn buffered_bodies_that_break_off_reach_no_upstream() {
    let up = Recorder::start().await;
    let gw = TestGateway::start_with(
        &config(up.addr),
        ServerConfig {
            client_body_timeout: Duration::from_millis(300),
            ..ServerConfig::default()
        },
    );
    // Half a body, then silence: 408, nothing upstream.
    let a = refused(
        gw.addr,
        b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nhello",
        408,
    )
    .await;
    assert_eq!(a.body["message"], "Request timeout");
    // A chunked body that goes bad after good chunks: 400, nothing upstream.
    refused(
        gw.addr,
        b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n5\r\nworld\r\nnope\r\n",
        400,
    )
    .await;
    // A client that stops mid-body and closes: nothing upstream either.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 100\r\n\r\npartial")
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut Vec::new())).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    up.assert_untouched("broken bodies on a buffered route");
}

#[tokio::test]
async fn unbuffered_routes_stream_before_the_body_ends() {
    let up = Recorder::start().await;
    let gw = TestGateway::start(&config(up.addr));
    // request_buffering: false sends the head upstream while the body is still on its way.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /stream HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nhello")
        .await
        .unwrap();
    let mut reached = false;
    for _ in 0..100 {
        if up.bytes.load(Ordering::SeqCst) > 0 {
            reached = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(reached, "nothing streamed to the upstream");
    s.write_all(b"world").await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
}

#[tokio::test]
async fn buffered_bodies_over_the_buffer_limit_stream_on_intact() {
    let up = Upstream::start().await;
    let gw = TestGateway::start_with(
        &config(up.addr()),
        ServerConfig {
            request_buffer_limit: 64 * 1024,
            ..ServerConfig::default()
        },
    );
    let data = pattern_bytes(300 * 1024);
    // Chunked (read up to the limit, then streamed on) and with a length (streamed at once).
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(10_000).map(|c| Ok(c.to_vec())).collect();
    let resp = client()
        .post(gw.url("/echo"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.unwrap() == data);
    let resp = client()
        .post(gw.url("/echo"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.unwrap() == data);
    // Within the limit, the upstream gets it with its length, chunked or not.
    let small: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(b"ab".to_vec()), Ok(b"cd".to_vec())];
    let resp = client()
        .post(gw.url("/x"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            small,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = up.requests().pop().unwrap();
    assert_eq!(seen.headers["content-length"], "4");
    assert!(seen.headers.get("transfer-encoding").is_none());
}
