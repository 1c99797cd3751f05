//! Long-lived connections across reloads: an open WebSocket and a streaming response keep
//! flowing while the configuration is replaced many times by changes that do not touch their
//! route (routes added and removed, plugins changed elsewhere).

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::TestGateway;
use crate::support::{client, read_request_head};
use crate::websocket::{EchoServer, GREETING, close, next, open};

/// Ticks the streaming upstream sends, one every [`TICK`].
const TICKS: usize = 30;
const TICK: Duration = Duration::from_millis(50);

/// A server answering every request with a chunked event stream of [`TICKS`] lines, one per
/// [`TICK`], then the end of the body.
async fn ticking_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if read_request_head(&mut stream).await.is_none() {
                    return;
                }
                let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                    transfer-encoding: chunked\r\n\r\n"
                    .to_vec();
                for i in 0..TICKS {
                    let line = format!("data: tick {i}\n\n");
                    out.extend_from_slice(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes());
                    if stream.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                    tokio::time::sleep(TICK).await;
                }
                let _ = stream.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    addr
}

/// The configuration under test: the long-lived routes stay, `generation` changes the rest.
fn config(ws: SocketAddr, events: SocketAddr, generation: usize) -> String {
    let extra = if generation.is_multiple_of(2) {
        format!("\n  - name: extra-{generation}\n    paths: [/extra-{generation}]")
    } else {
        String::new()
    };
    format!(
        r#"_format_version: "3.0"
services:
- name: ws
  url: http://{ws}
  routes:
  - name: chat
    paths: [/chat]
- name: events
  url: http://{events}
  routes:
  - name: events
    paths: [/events]{extra}
- name: other
  url: http://{events}
  routes:
  - name: other
    paths: [/other]
    plugins:
    - name: request-termination
      config: {{status_code: 200, message: "generation {generation}"}}
"#
    )
}

#[tokio::test]
async fn websocket_and_event_stream_keep_flowing_across_reloads() {
    let echo = EchoServer::start().await;
    let events = ticking_server().await;
    let gw = TestGateway::start(&config(echo.addr, events, 0));

    let tcp = TcpStream::connect(gw.addr).await.expect("connect");
    let (mut ws, _) = open(tcp, &format!("ws://{}/chat", gw.addr), &[])
        .await
        .expect("handshake");
    assert_eq!(next(&mut ws).await, Message::text(GREETING));
    let resp = client()
        .get(gw.url("/events"))
        .send()
        .await
        .expect("event stream");
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();

    // Reload every TICK while the stream runs; exchange a WebSocket message between reloads.
    let mut received = Vec::new();
    let mut reloads = 0;
    loop {
        reloads += 1;
        gw.swap(&config(echo.addr, events, reloads));
        let text = format!("message {reloads}");
        ws.send(Message::text(text.clone())).await.expect("send");
        assert_eq!(next(&mut ws).await, Message::text(text));
        match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
            Ok(Some(chunk)) => received.extend_from_slice(&chunk.expect("stream chunk")),
            Ok(None) => break,
            Err(_) => panic!("the event stream stalled after {reloads} reloads"),
        }
    }
    let text = String::from_utf8(received).expect("utf-8");
    let ticks: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let expected: Vec<String> = (0..TICKS).map(|i| format!("data: tick {i}")).collect();
    assert_eq!(ticks, expected, "every event, in order");
    assert!(
        reloads >= 10,
        "only {reloads} reloads happened during the stream"
    );

    // The reloads took effect for new requests meanwhile.
    let other = gw.get("/other", &[]).await;
    assert_eq!(other.body["message"], format!("generation {reloads}"));
    assert!(
        close(&mut ws).await,
        "the WebSocket closes cleanly after it all"
    );
}
