//! WebSocket pass-through: a real WebSocket client through the gateway (plain and over TLS) to a
//! real WebSocket echo server; request plugins still guard the handshake; an upstream that
//! refuses the upgrade is answered as it is.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use gatehouse::proxy::ServerConfig;
use http::HeaderMap;
use http::header::HeaderValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{WebSocketStream, accept_hdr_async, client_async};

use crate::harness::TestGateway;
use crate::support::{Upstream, raw_http};

/// The first message the echo server sends, right after its handshake response.
pub(crate) const GREETING: &str = "hello from upstream";

/// A WebSocket echo server on loopback: greets, then echoes text and binary messages, answers
/// a close; picks the `chat` subprotocol when offered; records each handshake's headers.
pub(crate) struct EchoServer {
    pub(crate) addr: SocketAddr,
    handshakes: Arc<Mutex<Vec<HeaderMap>>>,
    task: JoinHandle<()>,
}

impl EchoServer {
    pub(crate) async fn start() -> EchoServer {
        EchoServer::bind(None).await
    }

    /// The same over TLS with `config`.
    async fn start_tls(config: Arc<rustls::ServerConfig>) -> EchoServer {
        EchoServer::bind(Some(tokio_rustls::TlsAcceptor::from(config))).await
    }

    async fn bind(tls: Option<tokio_rustls::TlsAcceptor>) -> EchoServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let seen = handshakes.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = seen.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => echo(stream, seen).await,
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                echo(stream, seen).await;
                            }
                        }
                    }
                });
            }
        });
        EchoServer {
            addr,
            handshakes,
            task,
        }
    }

    fn handshakes(&self) -> Vec<HeaderMap> {
        self.handshakes.lock().expect("lock").clone()
    }
}

/// One WebSocket connection of the echo server.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(stream: S, seen: Arc<Mutex<Vec<HeaderMap>>>) {
    // The error type is tungstenite's.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, mut resp: Response| {
        let offered = req
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|p| p.trim() == "chat"));
        if offered {
            resp.headers_mut()
                .insert("sec-websocket-protocol", HeaderValue::from_static("chat"));
        }
        seen.lock().expect("lock").push(req.headers().clone());
        Ok(resp)
    };
    let Ok(mut ws) = accept_hdr_async(stream, callback).await else {
        return;
    };
    if ws.send(Message::text(GREETING)).await.is_err() {
        return;
    }
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            return;
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn config(up: SocketAddr, extra: &str) -> String {
    format!(
        r#"_format_version: "3.0"
consumers:
- username: alice
  keyauth_credentials:
  - key: alice-key
services:
- name: ws
  url: http://{up}
  routes:
  - name: open
    paths: [/ws]
  - name: guarded
    paths: [/guarded]
    plugins: [{{name: key-auth}}]
{extra}"#
    )
}

/// Open a WebSocket to `url` over `stream`, with extra handshake headers.
pub(crate) async fn open<S>(
    stream: S,
    url: &str,
    headers: &[(&'static str, &'static str)],
) -> Result<(WebSocketStream<S>, http::Response<Option<Vec<u8>>>), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut req = url.into_client_request()?;
    for (name, value) in headers {
        req.headers_mut()
            .insert(*name, HeaderValue::from_static(value));
    }
    tokio::time::timeout(Duration::from_secs(10), client_async(req, stream))
        .await
        .map_err(|_| WsError::Io(std::io::ErrorKind::TimedOut.into()))?
}

pub(crate) async fn next<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
) -> Message {
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("message in time")
        .expect("stream open")
        .expect("message")
}

/// Several text and binary messages both ways (one of 1 MiB), then a close handshake.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) {
    assert_eq!(next(ws).await, Message::text(GREETING));
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let messages = [
        Message::text("one"),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::text("ünïcødé ✓"),
        Message::binary(big),
        Message::text("x".repeat(70_000)),
        Message::text("last"),
    ];
    // Pipelined: all sent before any echo is read.
    for m in &messages {
        ws.send(m.clone()).await.expect("send");
    }
    for m in &messages {
        assert_eq!(&next(ws).await, m);
    }
    // The upstream's close frame comes back, then the stream ends.
    assert!(close(ws).await, "the upstream's close frame came through");
}

#[tokio::test]
async fn websocket_messages_flow_both_ways_through_the_gateway() {
    let up = EchoServer::start().await;
    let gw = TestGateway::start(&config(up.addr, ""));
    let tcp = TcpStream::connect(gw.addr).await.expect("connect");
    let url = format!("ws://{}/ws/chat?room=1", gw.addr);
    let (mut ws, resp) = open(tcp, &url, &[("sec-websocket-protocol", "chat")])
        .await
        .expect("handshake");
    assert_eq!(resp.status(), 101);
    assert_eq!(resp.headers()["sec-websocket-protocol"], "chat");
    exchange(&mut ws).await;

    let seen = up.handshakes();
    assert_eq!(seen.len(), 1);
    let h = &seen[0];
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["host"], up.addr.to_string().as_str());
    assert!(h.contains_key("sec-websocket-key"));

    // Two at once, each on its own upstream connection.
    let mut both = Vec::new();
    for _ in 0..2 {
        let tcp = TcpStream::connect(gw.addr).await.expect("connect");
        let (ws, _) = open(tcp, &url, &[]).await.expect("handshake");
        both.push(ws);
    }
    for ws in &mut both {
        assert_eq!(next(ws).await, Message::text(GREETING));
        ws.send(Message::text("ping")).await.expect("send");
        assert_eq!(next(ws).await, Message::text("ping"));
    }
    for ws in &mut both {
        close(ws).await;
    }
}

#[tokio::test]
async fn websocket_to_an_https_upstream() {
    use crate::upstream_tls::{Ca, server_config};
    let ca = Ca::root();
    let up = EchoServer::start_tls(server_config(&ca.leaf(&["127.0.0.1"]), None)).await;
    let yaml = format!(
        "_format_version: \"3.0\"\nca_certificates:\n- id: ws-ca\n  cert: {}\nservices:\n- name: wss\n  url: https://{}\n  ca_certificates: [ws-ca]\n  routes:\n  - paths: [/ws]\n",
        crate::tls::q(&ca.pem()),
        up.addr
    );
    let gw = TestGateway::start(&yaml);
    let tcp = TcpStream::connect(gw.addr).await.expect("connect");
    let (mut ws, resp) = open(tcp, &format!("ws://{}/ws", gw.addr), &[])
        .await
        .expect("handshake");
    assert_eq!(resp.status(), 101);
    exchange(&mut ws).await;
    assert_eq!(up.handshakes().len(), 1);
}

/// Close handshake from the client: true when the upstream's close frame came back before the
/// stream ended.
pub(crate) async fn close<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> bool {
    ws.close(None).await.expect("close");
    let mut closed = false;
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("close in time")
        .transpose()
    {
        closed |= msg.is_close();
    }
    closed
}

#[tokio::test]
async fn shutdown_waits_for_bridged_connections_within_the_drain_timeout() {
    let up = EchoServer::start().await;
    let settings = ServerConfig {
        drain_timeout: Duration::from_secs(5),
        ..ServerConfig::default()
    };
    let gw = TestGateway::start_with(&config(up.addr, ""), settings);
    let tcp = TcpStream::connect(gw.addr).await.expect("connect");
    let (mut ws, _) = open(tcp, &format!("ws://{}/ws", gw.addr), &[])
        .await
        .expect("handshake");
    assert_eq!(next(&mut ws).await, Message::text(GREETING));

    // Shutdown blocks its thread until the workers are done: off the test's runtime, which
    // keeps running the echo server.
    let started = Instant::now();
    let stopping = tokio::task::spawn_blocking(move || drop(gw));
    tokio::time::sleep(Duration::from_millis(300)).await;
    ws.send(Message::text("while draining"))
        .await
        .expect("send");
    assert_eq!(next(&mut ws).await, Message::text("while draining"));
    assert!(
        !stopping.is_finished(),
        "the bridged connection holds the drain"
    );

    assert!(close(&mut ws).await);
    drop(ws);
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("shutdown in time")
        .expect("shutdown");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "shutdown ended with the connection, not at the drain timeout"
    );
}

#[tokio::test]
async fn request_plugins_guard_the_handshake() {
    let up = EchoServer::start().await;
    let gw = TestGateway::start(&config(up.addr, ""));
    let url = format!("ws://{}/guarded", gw.addr);

    let tcp = TcpStream::connect(gw.addr).await.expect("connect");
    match open(tcp, &url, &[]).await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|(_, r)| r.status())),
    }
    assert!(up.handshakes().is_empty(), "refused before the upstream");

    let tcp = TcpStream::connect(gw.addr).await.expect("connect");
    let (mut ws, _) = open(tcp, &url, &[("apikey", "alice-key")])
        .await
        .expect("handshake with a key");
    exchange(&mut ws).await;
    let seen = up.handshakes();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["x-consumer-username"], "alice");
}

#[tokio::test]
async fn an_upgrade_refused_by_the_upstream_is_passed_through() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&config(up.addr(), ""));

    // The upstream (no WebSocket support) answers 400 to `/status/400`.
    let tcp = TcpStream::connect(gw.addr).await.expect("connect");
    match open(tcp, &format!("ws://{}/ws/status/400", gw.addr), &[]).await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 400),
        other => panic!("expected 400, got {:?}", other.map(|(_, r)| r.status())),
    }

    let request = format!(
        "GET /ws/status/400 HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        gw.addr
    );
    let raw = String::from_utf8_lossy(&raw_http(gw.addr, request.as_bytes()).await).into_owned();
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(raw.contains(r#""status":400"#), "{raw}");
    assert!(
        !raw.to_ascii_lowercase().contains("upgrade: websocket"),
        "{raw}"
    );
    // The upstream saw the upgrade request, with the hop-by-hop headers it needs.
    let recorded = up.requests();
    let last = recorded.last().expect("recorded");
    assert_eq!(last.headers["upgrade"], "websocket");
    assert_eq!(last.headers["connection"], "Upgrade");
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502() {
    let gw = TestGateway::start(&config(
        SocketAddr::from(([127, 0, 0, 1], crate::support::closed_port())),
        "",
    ));
    let tcp = TcpStream::connect(gw.addr).await.expect("connect");
    match open(tcp, &format!("ws://{}/ws", gw.addr), &[]).await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 502),
        other => panic!("expected 502, got {:?}", other.map(|(_, r)| r.status())),
    }
}

#[tokio::test]
async fn websocket_over_the_tls_listener() {
    use crate::tls::{Pki, connect, default_client, q};

    let up = EchoServer::start().await;
    let pki = Pki::new();
    let leaf = pki.leaf(&["ws.test"]);
    let certs = format!(
        "certificates:\n- cert: {}\n  key: {}\n  snis: [ws.test]\n",
        q(&leaf.cert),
        q(&leaf.key)
    );
    let gw = TestGateway::start_tls(&config(up.addr, &certs));
    let addr = gw.tls_addr.expect("TLS listener");
    let stream = connect(addr, &default_client(&pki), "ws.test")
        .await
        .expect("TLS handshake");
    let url = format!("wss://ws.test:{}/ws", addr.port());
    let (mut ws, resp) = open(stream, &url, &[]).await.expect("handshake");
    assert_eq!(resp.status(), 101);
    exchange(&mut ws).await;
    let seen = up.handshakes();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn an_upstream_silent_after_the_handshake_request_is_a_504() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&format!(
        "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://{}\n  read_timeout: 300\n  routes:\n  - paths: [/ws]\n",
        up.addr()
    ));
    // `/hang` never answers: the wait for the 101 is bounded by `read_timeout`.
    let started = Instant::now();
    let tcp = TcpStream::connect(gw.addr).await.expect("connect");
    match open(tcp, &format!("ws://{}/ws/hang", gw.addr), &[]).await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 504),
        other => panic!("expected 504, got {:?}", other.map(|(_, r)| r.status())),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}
