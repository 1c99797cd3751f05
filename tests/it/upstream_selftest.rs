//! Self-tests of the test upstream (`support::upstream`), driven directly with reqwest / raw TCP.

use std::future::IntoFuture;
use std::io::ErrorKind;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::support::upstream::{
    CHUNK_SIZE, HEADERS_OUT, HEADERS_OUT_TRAILER, SLOW_BODY_FIRST, SLOW_BODY_LAST,
};
use crate::support::{Recorded, Upstream, client, closed_port, pattern_bytes, raw_http};

/// Every await in these tests goes through this.
async fn within<F: IntoFuture>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("test step timed out")
}

fn url(upstream: &Upstream, path: &str) -> String {
    format!("http://{}{}", upstream.addr(), path)
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).map(|v| v.to_str().unwrap())
}

async fn json(resp: reqwest::Response) -> Value {
    within(resp.json::<Value>()).await.unwrap()
}

#[tokio::test]
async fn default_route_describes_request_and_records_it() {
    let upstream = within(Upstream::start()).await;
    let port = upstream.addr().port().to_string();
    let resp = within(
        client()
            .post(url(&upstream, "/some/p%20th?b=2&a=1"))
            .header("x-multi", "one")
            .header("x-test", "yes")
            .header("content-type", "text/plain")
            .body("hello")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), Some("application/json"));
    assert_eq!(header(&resp, "x-upstream-port"), Some(port.as_str()));
    assert_eq!(header(&resp, "x-upstream-name"), None);
    let body = json(resp).await;
    assert_eq!(body["method"], "POST");
    assert_eq!(body["path"], "/some/p%20th");
    assert_eq!(body["query"], "b=2&a=1");
    assert_eq!(body["uri"], "/some/p%20th?b=2&a=1");
    assert_eq!(body["headers"]["x-test"], "yes");
    assert_eq!(body["headers"]["content-length"], "5");
    assert_eq!(body["body_len"], 5);
    assert_eq!(body["upstream"], Value::Null);

    // Repeated header -> JSON array; no query -> null.
    let resp = within(
        client()
            .get(url(&upstream, "/x"))
            .header("x-multi", "one")
            .header("x-multi", "two")
            .send(),
    )
    .await
    .unwrap();
    let body = json(resp).await;
    assert_eq!(body["query"], Value::Null);
    assert_eq!(
        body["headers"]["x-multi"],
        serde_json::json!(["one", "two"])
    );
    assert_eq!(body["body_len"], 0);

    assert_eq!(upstream.request_count(), 2);
    let recorded: Vec<Recorded> = upstream.requests();
    let first = &recorded[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/some/p%20th");
    assert_eq!(first.query.as_deref(), Some("b=2&a=1"));
    assert_eq!(first.uri, "/some/p%20th?b=2&a=1");
    assert_eq!(first.headers["x-test"], "yes");
    assert_eq!(first.body_len, 5);
    assert!(first.peer.ip().is_loopback());
    assert_eq!(recorded[1].method, "GET");
    assert_eq!(recorded[1].query, None);
    assert_eq!(recorded[1].headers.get_all("x-multi").iter().count(), 2);
    within(upstream.stop()).await;
}

#[tokio::test]
async fn set_name_is_echoed_in_header_and_json() {
    let upstream = within(Upstream::start()).await;
    upstream.set_name("alpha");
    let resp = within(client().get(url(&upstream, "/")).send())
        .await
        .unwrap();
    assert_eq!(header(&resp, "x-upstream-name"), Some("alpha"));
    assert_eq!(json(resp).await["upstream"], "alpha");
    let resp = within(client().get(url(&upstream, "/status/503")).send())
        .await
        .unwrap();
    assert_eq!(header(&resp, "x-upstream-name"), Some("alpha"));
    assert_eq!(json(resp).await["upstream"], "alpha");
    within(upstream.stop()).await;
}

#[tokio::test]
async fn status_route_answers_requested_status() {
    let upstream = within(Upstream::start()).await;
    let port = upstream.addr().port().to_string();
    for code in [200u16, 201, 404, 429, 500, 502, 503, 599] {
        let resp = within(
            client()
                .get(url(&upstream, &format!("/status/{code}")))
                .send(),
        )
        .await
        .unwrap();
        assert_eq!(resp.status().as_u16(), code);
        assert_eq!(header(&resp, "content-type"), Some("application/json"));
        assert_eq!(header(&resp, "x-upstream-port"), Some(port.as_str()));
        assert_eq!(json(resp).await["status"], code);
    }
    let resp = within(client().get(url(&upstream, "/status/204")).send())
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert!(within(resp.bytes()).await.unwrap().is_empty());
    for bad in [
        "/status/abc",
        "/status/100",
        "/status/1000",
        "/delay/x",
        "/bytes/-1",
    ] {
        let resp = within(client().get(url(&upstream, bad)).send())
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
        assert_eq!(header(&resp, "x-upstream-port"), Some(port.as_str()));
    }
    within(upstream.stop()).await;
}

#[tokio::test]
async fn delay_route_waits_then_answers_like_default() {
    let upstream = within(Upstream::start()).await;
    let started = Instant::now();
    let resp = within(client().get(url(&upstream, "/delay/250?q=1")).send())
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(resp.status(), 200);
    let body = json(resp).await;
    assert_eq!(body["path"], "/delay/250");
    assert_eq!(body["query"], "q=1");
    within(upstream.stop()).await;
}

#[tokio::test]
async fn hang_never_answers_and_stop_still_completes() {
    let upstream = within(Upstream::start()).await;
    let err = within(
        client()
            .get(url(&upstream, "/hang"))
            .timeout(Duration::from_millis(300))
            .send(),
    )
    .await
    .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(upstream.request_count(), 1);
    assert_eq!(upstream.requests()[0].path, "/hang");

    // A hanging connection held open by a raw client is closed by stop().
    let mut stream = within(TcpStream::connect(upstream.addr())).await.unwrap();
    within(stream.write_all(b"GET /hang HTTP/1.1\r\nhost: x\r\n\r\n"))
        .await
        .unwrap();
    within(wait_for(|| upstream.request_count() == 2)).await;
    within(upstream.stop()).await;
    let mut buf = [0u8; 64];
    let n = within(stream.read(&mut buf)).await.unwrap_or(0);
    assert_eq!(n, 0, "connection must be closed without a response");
}

/// Polls `cond` (yielding to the runtime) until it holds; callers bound it with `within`.
async fn wait_for(cond: impl Fn() -> bool) {
    while !cond() {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn close_drops_connection_without_response() {
    let upstream = within(Upstream::start()).await;
    let client = client();
    let err = within(client.get(url(&upstream, "/close")).send())
        .await
        .unwrap_err();
    assert!(!err.is_timeout(), "{err:?}");
    assert!(err.is_request() || err.is_connect(), "{err:?}");
    assert_eq!(upstream.request_count(), 1);

    // Nothing at all is written on the wire.
    let raw = within(raw_http(
        upstream.addr(),
        b"POST /close HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc",
    ))
    .await;
    assert!(raw.is_empty(), "{}", String::from_utf8_lossy(&raw));
    assert_eq!(upstream.requests()[1].body_len, 3);

    // The same client recovers on a fresh connection.
    let resp = within(client.get(url(&upstream, "/after")).send())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(upstream.connections_accepted(), 3);
    within(upstream.stop()).await;
}

#[tokio::test]
async fn bytes_route_streams_pattern_with_content_length() {
    let upstream = within(Upstream::start()).await;
    for n in [
        0usize,
        1,
        250,
        251,
        252,
        CHUNK_SIZE,
        3 * CHUNK_SIZE + 17,
        1_000_000,
    ] {
        let resp = within(client().get(url(&upstream, &format!("/bytes/{n}"))).send())
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            header(&resp, "content-length"),
            Some(n.to_string().as_str())
        );
        assert_eq!(header(&resp, "transfer-encoding"), None);
        assert_eq!(resp.content_length(), Some(n as u64));
        let body = within(resp.bytes()).await.unwrap();
        assert_eq!(body.len(), n);
        assert!(
            body[..] == pattern_bytes(n)[..],
            "pattern mismatch for n={n}"
        );
    }
    within(upstream.stop()).await;
}

#[tokio::test]
async fn chunked_route_streams_pattern_without_content_length() {
    let upstream = within(Upstream::start()).await;
    for n in [0usize, 10, 3 * CHUNK_SIZE + 5] {
        let resp = within(
            client()
                .get(url(&upstream, &format!("/chunked/{n}")))
                .send(),
        )
        .await
        .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "content-length"), None);
        assert_eq!(header(&resp, "transfer-encoding"), Some("chunked"));
        let body = within(resp.bytes()).await.unwrap();
        assert!(
            body[..] == pattern_bytes(n)[..],
            "pattern mismatch for n={n}"
        );
    }
    // Wire check: several chunks.
    let raw = within(raw_http(
        upstream.addr(),
        b"GET /chunked/200000 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    ))
    .await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
    assert!(
        text.contains("\r\n10000\r\n"),
        "64 KiB chunk size line expected"
    );
    assert!(text.ends_with("\r\n0\r\n\r\n"));
    within(upstream.stop()).await;
}

#[tokio::test]
async fn slow_body_sends_headers_and_first_chunk_then_stalls() {
    let upstream = within(Upstream::start()).await;
    let stall = Duration::from_millis(600);
    let started = Instant::now();
    let resp = within(client().get(url(&upstream, "/slow-body/600")).send())
        .await
        .unwrap();
    assert!(
        started.elapsed() < stall,
        "headers must not wait for the stall"
    );
    assert_eq!(header(&resp, "content-length"), None);
    let mut stream = resp.bytes_stream();
    let first = within(stream.next()).await.unwrap().unwrap();
    assert_eq!(&first[..], SLOW_BODY_FIRST);
    assert!(
        started.elapsed() < stall,
        "first chunk must not wait for the stall"
    );
    let mut rest = Vec::new();
    while let Some(chunk) = within(stream.next()).await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(&rest[..], SLOW_BODY_LAST);
    assert!(started.elapsed() >= stall);
    within(upstream.stop()).await;
}

#[tokio::test]
async fn echo_round_trips_one_mebibyte() {
    let upstream = within(Upstream::start()).await;
    let payload = pattern_bytes(1024 * 1024);
    let resp = within(
        client()
            .post(url(&upstream, "/echo"))
            .header("content-type", "application/x-test")
            .body(payload.clone())
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), Some("application/x-test"));
    assert_eq!(resp.content_length(), Some(payload.len() as u64));
    let body = within(resp.bytes()).await.unwrap();
    assert!(body[..] == payload[..]);
    assert_eq!(upstream.requests()[0].body_len, payload.len() as u64);

    // Streamed (chunked) request body -> chunked response, no content-type when none sent.
    let chunks: Vec<Result<Bytes, std::io::Error>> = payload
        .chunks(100_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let resp = within(
        client()
            .put(url(&upstream, "/echo"))
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            )))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(header(&resp, "content-type"), None);
    assert_eq!(header(&resp, "transfer-encoding"), Some("chunked"));
    let body = within(resp.bytes()).await.unwrap();
    assert!(body[..] == payload[..]);
    assert_eq!(upstream.requests()[1].body_len, payload.len() as u64);
    within(upstream.stop()).await;
}

#[tokio::test]
async fn echo_streams_frame_by_frame() {
    let upstream = within(Upstream::start()).await;
    let (tx, mut rx) = mpsc::channel::<Bytes>(1);
    let body = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|o| o.map(Ok::<_, std::io::Error>))
    });
    let request = client()
        .post(url(&upstream, "/echo"))
        .body(reqwest::Body::wrap_stream(body))
        .send();
    within(tx.send(Bytes::from_static(b"ping-1")))
        .await
        .unwrap();
    let resp = within(request).await.unwrap();
    let mut stream = resp.bytes_stream();
    // The echo of each piece arrives before the next piece is even sent.
    let mut got = within(stream.next()).await.unwrap().unwrap();
    assert_eq!(&got[..], b"ping-1");
    within(tx.send(Bytes::from_static(b"ping-2")))
        .await
        .unwrap();
    got = within(stream.next()).await.unwrap().unwrap();
    assert_eq!(&got[..], b"ping-2");
    drop(tx);
    assert!(within(stream.next()).await.is_none());
    assert_eq!(upstream.requests()[0].body_len, 12);
    within(upstream.stop()).await;
}

#[tokio::test]
async fn sink_counts_streamed_body() {
    let upstream = within(Upstream::start()).await;
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..48)
        .map(|_| Ok(Bytes::from(vec![7u8; CHUNK_SIZE])))
        .collect();
    let resp = within(
        client()
            .post(url(&upstream, "/sink"))
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            )))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let expected = 48 * CHUNK_SIZE as u64;
    assert_eq!(
        json(resp).await,
        serde_json::json!({ "body_len": expected })
    );
    assert_eq!(upstream.requests()[0].body_len, expected);
    within(upstream.stop()).await;
}

#[tokio::test]
async fn stop_closes_listener_and_open_connections() {
    let upstream = within(Upstream::start()).await;
    let addr = upstream.addr();
    // An idle keep-alive connection after a completed exchange.
    let mut idle = within(TcpStream::connect(addr)).await.unwrap();
    within(idle.write_all(b"GET /status/200 HTTP/1.1\r\nhost: x\r\n\r\n"))
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = within(idle.read(&mut buf)).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));
    // A connection accepted but without any request yet.
    let fresh = within(TcpStream::connect(addr)).await.unwrap();
    within(wait_for(|| upstream.connections_accepted() == 2)).await;

    within(upstream.stop()).await;

    let err = within(TcpStream::connect(addr)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    assert_eq!(within(idle.read(&mut buf)).await.unwrap_or(0), 0);
    let mut fresh = fresh;
    assert_eq!(within(fresh.read(&mut buf)).await.unwrap_or(0), 0);
    // And reqwest sees a connect error.
    let err = within(client().get(format!("http://{addr}/")).send())
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
}

#[tokio::test]
async fn connections_accepted_counts_keep_alive_reuse() {
    let upstream = within(Upstream::start()).await;

    // Three requests on one hyper client connection: one TCP connection.
    let stream = within(TcpStream::connect(upstream.addr())).await.unwrap();
    let (mut sender, conn) = within(hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(
        TokioIo::new(stream),
    ))
    .await
    .unwrap();
    let conn_task = tokio::spawn(conn);
    for i in 0..3 {
        within(sender.ready()).await.unwrap();
        let req = http::Request::get(format!("/ka/{i}"))
            .header("host", "upstream")
            .body(Empty::new())
            .unwrap();
        let resp = within(sender.send_request(req)).await.unwrap();
        assert_eq!(resp.status(), 200);
        within(resp.into_body().collect()).await.unwrap();
    }
    assert_eq!(upstream.connections_accepted(), 1);
    assert_eq!(upstream.request_count(), 3);
    let peers: Vec<_> = upstream.requests().iter().map(|r| r.peer).collect();
    assert!(peers.iter().all(|p| *p == peers[0]));
    drop(sender);
    within(conn_task).await.unwrap().unwrap();

    // A second connection is counted separately and has another peer address.
    let resp = within(client().get(url(&upstream, "/other")).send())
        .await
        .unwrap();
    within(resp.bytes()).await.unwrap();
    assert_eq!(upstream.connections_accepted(), 2);
    assert_ne!(upstream.requests()[3].peer, peers[0]);
    within(upstream.stop()).await;
}

#[tokio::test]
async fn reqwest_pool_reuses_one_upstream_connection() {
    let upstream = within(Upstream::start()).await;
    let client = client();
    for _ in 0..5 {
        let resp = within(client.get(url(&upstream, "/")).send())
            .await
            .unwrap();
        within(resp.bytes()).await.unwrap();
    }
    assert_eq!(upstream.request_count(), 5);
    assert_eq!(upstream.connections_accepted(), 1);
    within(upstream.stop()).await;
}

#[tokio::test]
async fn headers_out_sends_hop_by_hop_headers_on_the_wire() {
    let upstream = within(Upstream::start()).await;
    // Two pipelined requests: the first response is the keep-alive form, the second request
    // closes the connection so raw_http returns promptly.
    let raw = within(raw_http(
        upstream.addr(),
        b"GET /headers-out HTTP/1.1\r\nhost: x\r\nte: trailers\r\n\r\n\
          GET /headers-out HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    ))
    .await;
    let text = String::from_utf8(raw).unwrap();
    let mut responses = text.split("HTTP/1.1 ").skip(1);
    let keep_alive = responses.next().unwrap();
    let closing = responses.next().unwrap();
    assert!(responses.next().is_none());

    for (response, te_trailers) in [(keep_alive, true), (closing, false)] {
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let lines: Vec<&str> = head.split("\r\n").collect();
        assert_eq!(lines[0], "200 OK");
        for (name, value) in HEADERS_OUT {
            if *name == "connection" {
                continue;
            }
            let line = format!("{name}: {value}");
            assert!(lines.contains(&line.as_str()), "missing {line:?} in {head}");
        }
        assert!(lines.contains(&"transfer-encoding: chunked"), "{head}");
        assert!(
            !lines.iter().any(|l| l.starts_with("content-length")),
            "{head}"
        );
        // The trailer field is only written when the request said `te: trailers`.
        let end = if te_trailers {
            format!(
                "\r\n0\r\n{}: {}\r\n\r\n",
                HEADERS_OUT_TRAILER.0, HEADERS_OUT_TRAILER.1
            )
        } else {
            "\r\n0\r\n\r\n".to_owned()
        };
        assert!(body.ends_with(&end), "unexpected body end: {body:?}");
    }
    let connection_lines = |head: &str| -> Vec<String> {
        head.split("\r\n")
            .filter(|l| l.starts_with("connection:"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(connection_lines(keep_alive), ["connection: x-hop"]);
    assert_eq!(connection_lines(closing), ["connection: x-hop, close"]);

    // reqwest (hyper client) exposes them all and the body is the default JSON.
    let resp = within(client().get(url(&upstream, "/headers-out")).send())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    for (name, value) in HEADERS_OUT {
        assert_eq!(header(&resp, name), Some(*value), "{name}");
    }
    assert_eq!(json(resp).await["path"], "/headers-out");
    within(upstream.stop()).await;
}

#[tokio::test]
async fn raw_http_returns_response_to_malformed_request() {
    let upstream = within(Upstream::start()).await;
    let raw = within(raw_http(upstream.addr(), b"NOT HTTP AT ALL\r\n\r\n")).await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    within(upstream.stop()).await;
}

#[tokio::test]
async fn closed_port_refuses_connections() {
    let port = closed_port();
    let err = within(TcpStream::connect(("127.0.0.1", port)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn restarts_on_the_same_port() {
    let upstream = within(Upstream::start()).await;
    let addr = upstream.addr();
    // A served keep-alive connection leaves a closed socket behind on stop.
    let resp = within(client().get(url(&upstream, "/")).send())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    within(upstream.stop()).await;
    let refused = within(TcpStream::connect(addr)).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    let again = within(Upstream::start_on(addr)).await;
    assert_eq!(again.addr(), addr);
    let resp = within(client().get(url(&again, "/")).send()).await.unwrap();
    assert_eq!(resp.status(), 200);
    within(again.stop()).await;
}
