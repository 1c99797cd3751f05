//! HTTP/2 from clients: h2c with prior knowledge on the plain listener, ALPN `h2` on the TLS
//! one, the authority routed on and passed on as `Host`, HTTP/1.1 alongside, and the
//! connection's protections (concurrent streams, rapid reset, CONTINUATION flood).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::TestGateway;
use crate::support::{Upstream, client};
use crate::tls::{Pki, default_client, q};
use gatehouse::proxy::{Http2Settings, ServerConfig};

/// Close client connections and let their tasks run, so that the gateway's graceful shutdown
/// (which waits for an HTTP/2 client to acknowledge its GOAWAY) does not wait for them.
pub(crate) async fn hang_up<T>(clients: T) {
    drop(clients);
    tokio::time::sleep(Duration::from_millis(100)).await;
}

fn config(up: &Upstream) -> String {
    format!(
        r#"_format_version: "3.0"
services:
- name: svc
  url: http://{}
  routes:
  - name: by-host
    hosts: [h2.test]
    paths: [/h2]
  - name: any
    paths: [/any]
"#,
        up.addr()
    )
}

/// An HTTP/2 connection with prior knowledge to `addr`.
async fn h2c<B>(addr: SocketAddr) -> http2::SendRequest<B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    sender
}

async fn json_body(resp: http::Response<hyper::body::Incoming>) -> serde_json::Value {
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&body).expect("json")
}

#[tokio::test]
async fn h2c_with_prior_knowledge_is_proxied() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&config(&up));
    let mut h2a = h2c::<Empty<Bytes>>(gw.addr).await;
    let h2 = &mut h2a;

    // Routed on the authority (no Host header on HTTP/2); the HTTP/1.1 upstream gets a Host.
    let port = gw.addr.port();
    let req = Request::get(format!("http://h2.test:{port}/h2/x?q=1"))
        .body(Empty::new())
        .expect("request");
    let resp = h2.send_request(req).await.expect("response");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), Version::HTTP_2);
    let seen = json_body(resp).await;
    assert_eq!(seen["uri"], "/x?q=1");
    assert_eq!(seen["headers"]["host"], up.addr().to_string());
    assert_eq!(seen["headers"]["x-forwarded-host"], "h2.test");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http");

    // Another authority does not match that route.
    let req = Request::get(format!("http://other.test:{port}/h2/x"))
        .body(Empty::new())
        .expect("request");
    let resp = h2.send_request(req).await.expect("response");
    assert_eq!(resp.status(), 404);
    let _ = resp.into_body().collect().await;

    // Hop-by-hop headers of the upstream's answer never reach an HTTP/2 client (the client
    // would refuse the response); end-to-end ones do.
    let req = Request::get(format!("http://h2.test:{port}/h2/headers-out"))
        .body(Empty::new())
        .expect("request");
    let resp = h2.send_request(req).await.expect("response");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-end-to-end"], "1");
    for name in [
        "connection",
        "keep-alive",
        "upgrade",
        "proxy-connection",
        "x-hop",
    ] {
        assert!(!resp.headers().contains_key(name), "{name} was sent");
    }
    let _ = resp.into_body().collect().await;

    // A body streams up and back over the same connection.
    let mut h2 = h2c::<Full<Bytes>>(gw.addr).await;
    let req = Request::post(format!("http://h2.test:{port}/h2/echo"))
        .body(Full::new(Bytes::from_static(b"over h2")))
        .expect("request");
    let resp = h2.send_request(req).await.expect("response");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&body[..], b"over h2");

    // HTTP/1.1 on the same listener, as before.
    let resp = client().get(gw.url("/any")).send().await.expect("http/1.1");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    hang_up((h2a, h2)).await;
    up.stop().await;
}

#[tokio::test]
async fn alpn_offers_h2_on_the_tls_listener() {
    let up = Upstream::start().await;
    let pki = Pki::new();
    let leaf = pki.leaf(&["a.test"]);
    let yaml = format!(
        "{}certificates:\n- cert: {}\n  key: {}\n  snis: [a.test]\n",
        config(&up),
        q(&leaf.cert),
        q(&leaf.key)
    );
    let gw = TestGateway::start_tls(&yaml);
    let tls_addr = gw.tls_addr.expect("tls listener");
    let mut cfg = (*default_client(&pki)).clone();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let stream = crate::tls::connect(tls_addr, &Arc::new(cfg), "a.test")
        .await
        .expect("tls");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    let req = Request::get(format!("https://a.test:{}/any", tls_addr.port()))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = h2.send_request(req).await.expect("response");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), Version::HTTP_2);
    let seen = json_body(resp).await;
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");

    // A client offering only http/1.1 still gets it.
    let stream = crate::tls::connect(tls_addr, &default_client(&pki), "a.test")
        .await
        .expect("tls");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    hang_up((h2, stream)).await;
    up.stop().await;
}

#[tokio::test]
async fn http2_can_be_turned_off() {
    let up = Upstream::start().await;
    let gw = TestGateway::start_with(
        &config(&up),
        ServerConfig {
            http2: Http2Settings {
                enabled: false,
                ..Http2Settings::default()
            },
            ..ServerConfig::default()
        },
    );
    let tcp = TcpStream::connect(gw.addr).await.expect("connect");
    let refused = http2::handshake::<_, _, Empty<Bytes>>(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .map(|(mut s, conn)| {
            tokio::spawn(conn);
            async move {
                s.send_request(Request::get("http://x/any").body(Empty::new()).unwrap())
                    .await
            }
        });
    match refused {
        Err(_) => {}
        Ok(send) => assert!(send.await.is_err(), "h2c served while turned off"),
    }
    up.stop().await;
}

#[tokio::test]
async fn concurrent_streams_are_limited() {
    let up = Upstream::start().await;
    let gw = TestGateway::start_with(
        &config(&up),
        ServerConfig {
            http2: Http2Settings {
                max_concurrent_streams: 7,
                ..Http2Settings::default()
            },
            ..ServerConfig::default()
        },
    );
    let tcp = TcpStream::connect(gw.addr).await.expect("connect");
    let (_client, mut conn) = h2::client::handshake(tcp).await.expect("handshake");
    // The limit arrives with the server's SETTINGS: drive the connection until it has.
    let mut limit = conn.max_concurrent_send_streams();
    for _ in 0..100 {
        std::future::poll_fn(|cx| {
            let _ = std::pin::Pin::new(&mut conn).poll(cx);
            std::task::Poll::Ready(())
        })
        .await;
        limit = conn.max_concurrent_send_streams();
        if limit == 7 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(limit, 7);
    hang_up((_client, conn)).await;
    up.stop().await;
}

/// Open streams on a fresh connection and reset each at once, up to `streams` of them; stops
/// early when the gateway ends the connection. Returns how many were opened, how the
/// connection ended if it did, and the client (when still usable).
async fn reset_flood(
    addr: SocketAddr,
    streams: usize,
) -> (
    usize,
    Option<Result<(), h2::Error>>,
    Option<h2::client::SendRequest<Bytes>>,
) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (attacker, conn) = h2::client::handshake(tcp).await.expect("handshake");
    let mut conn = tokio::spawn(conn);
    let mut attacker = Some(attacker);
    let mut opened = 0;
    while opened < streams {
        let Some(ready) = attacker.take() else { break };
        let Ok(mut ready) = ready.ready().await else {
            break;
        };
        let req = Request::get(format!("http://127.0.0.1:{}/any/delay/50", addr.port()))
            .body(())
            .expect("request");
        match ready.send_request(req, true) {
            Ok((_response, mut stream)) => {
                stream.send_reset(h2::Reason::CANCEL);
                opened += 1;
            }
            Err(_) => break,
        }
        attacker = Some(ready);
        // Let the connection task write, and read what the gateway says.
        tokio::task::yield_now().await;
        if conn.is_finished() {
            break;
        }
    }
    let ended = tokio::time::timeout(Duration::from_secs(2), &mut conn)
        .await
        .ok()
        .map(|j| j.expect("join"));
    (opened, ended, attacker)
}

#[tokio::test]
async fn rapid_reset_ends_the_connection_and_others_are_served() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&config(&up));
    let (opened, ended, _) = reset_flood(gw.addr, 10_000).await;
    // GOAWAY ENHANCE_YOUR_CALM, or the connection closed under the client's writes.
    let e = ended
        .expect("the gateway ended the connection")
        .expect_err("ended with an error");
    assert!(
        (e.is_go_away() && e.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM)) || e.is_io(),
        "{e}"
    );
    assert!(opened < 10_000, "cut off after {opened} streams");

    // Meanwhile the gateway serves everyone else.
    let mut h2 = h2c::<Empty<Bytes>>(gw.addr).await;
    let req = Request::get(format!("http://h2.test:{}/h2/x", gw.addr.port()))
        .body(Empty::new())
        .expect("request");
    assert_eq!(h2.send_request(req).await.expect("response").status(), 200);
    let resp = client().get(gw.url("/any")).send().await.expect("h1");
    assert_eq!(resp.status(), 200);
    hang_up(h2).await;
    up.stop().await;
}

#[tokio::test]
async fn without_the_reset_limit_the_same_client_is_not_cut_off() {
    // The control for the test above: what ends that connection is the limit.
    let up = Upstream::start().await;
    let gw = TestGateway::start_with(
        &config(&up),
        ServerConfig {
            http2: Http2Settings {
                max_pending_accept_reset_streams: 1_000_000,
                ..Http2Settings::default()
            },
            ..ServerConfig::default()
        },
    );
    let (opened, ended, attacker) = reset_flood(gw.addr, 2_000).await;
    assert_eq!(opened, 2_000);
    assert!(ended.is_none(), "connection ended: {ended:?}");
    hang_up(attacker).await;
    up.stop().await;
}

#[tokio::test]
async fn oversized_header_lists_are_refused() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&config(&up));
    let mut h2 = h2c::<Empty<Bytes>>(gw.addr).await;
    // Over the default 32 KiB list: 431, and the connection goes on serving.
    let req = Request::get(format!("http://h2.test:{}/h2/x", gw.addr.port()))
        .header("x-big", "a".repeat(40 << 10))
        .body(Empty::new())
        .expect("request");
    match h2.send_request(req).await {
        Ok(resp) => assert_eq!(resp.status(), 431),
        Err(e) => panic!("refused without an answer: {e}"),
    }
    let req = Request::get(format!("http://h2.test:{}/h2/x", gw.addr.port()))
        .header("x-small", "a".repeat(1 << 10))
        .body(Empty::new())
        .expect("request");
    assert_eq!(h2.send_request(req).await.expect("response").status(), 200);
    assert_eq!(up.request_count(), 1, "only the small one was forwarded");
    hang_up(h2).await;
    up.stop().await;
}

/// One HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK "literal header field without indexing, new name", names and values under 127 bytes.
fn literal(name: &str, value: &str) -> Vec<u8> {
    let mut out = vec![0, name.len() as u8];
    out.extend_from_slice(name.as_bytes());
    out.push(value.len() as u8);
    out.extend_from_slice(value.as_bytes());
    out
}

#[tokio::test]
async fn continuation_flood_ends_the_connection() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&config(&up));
    let mut tcp = TcpStream::connect(gw.addr).await.expect("connect");
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    // GET http://x/any, END_STREAM but no END_HEADERS: the header block goes on in
    // CONTINUATION frames that never end.
    let mut block = vec![0x82, 0x86, 0x84];
    block.extend(literal(":authority", "x"));
    out.extend(frame(0x1, 0x1, 1, &block));
    for i in 0..1000 {
        out.extend(frame(0x9, 0, 1, &literal(&format!("x-flood-{i}"), "v")));
    }
    let _ = tcp.write_all(&out).await;
    let mut received = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("the gateway closed the connection");
    // Walk the frames received for a GOAWAY: ENHANCE_YOUR_CALM (0xb).
    let mut at = 0;
    let mut goaway = None;
    while at + 9 <= received.len() {
        let len =
            u32::from_be_bytes([0, received[at], received[at + 1], received[at + 2]]) as usize;
        let kind = received[at + 3];
        let payload = &received[(at + 9).min(received.len())..(at + 9 + len).min(received.len())];
        if kind == 0x7 && payload.len() >= 8 {
            goaway = Some(u32::from_be_bytes([
                payload[4], payload[5], payload[6], payload[7],
            ]));
        }
        at += 9 + len;
    }
    assert_eq!(goaway, Some(0xb), "GOAWAY ENHANCE_YOUR_CALM");
    assert_eq!(up.request_count(), 0, "nothing forwarded");
    up.stop().await;
}
