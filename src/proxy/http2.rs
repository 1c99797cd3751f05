//! HTTP/2 from clients: negotiated by ALPN on the TLS listener, or spoken with prior knowledge
//! (h2c) on the plain one, where the connection preface is recognised by peeking at the first
//! bytes (an HTTP/1 connection is handed to the HTTP/1 server untouched, so its path costs one
//! `peek` per connection and nothing per request). Every stream goes through the same handler
//! as an HTTP/1 request; what differs is taken care of here: the authority comes in the URI
//! (it becomes the `Host` the router and the upstream see), connection-specific headers are
//! never sent, and gateway answers to gRPC requests take gRPC form. The connection's limits
//! (concurrent streams, rapid reset, header list size) are [`Http2Settings`].

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use super::body::ProxyBody;
use super::error::ProxyError;
use super::grpc;
use super::handler::{ConnState, handle};

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// HTTP/2 settings of the client listeners.
#[derive(Debug, Clone)]
pub struct Http2Settings {
    /// Whether clients may speak HTTP/2 (ALPN `h2`, and h2c with prior knowledge).
    pub enabled: bool,
    /// Streams a client may have open at once on one connection.
    pub max_concurrent_streams: u32,
    /// Largest header list (decoded, per request) accepted; a header block spread over more
    /// CONTINUATION frames than this allows ends the connection.
    pub max_header_list_size: u32,
    /// Streams the client opened and reset before the gateway took them up; more close the
    /// connection (GOAWAY `ENHANCE_YOUR_CALM`): the rapid-reset attack.
    pub max_pending_accept_reset_streams: usize,
    /// Streams the gateway had to reset because the client erred; more close the connection.
    pub max_local_error_reset_streams: usize,
    /// Interval of keep-alive PINGs to the client (`None`: none are sent).
    pub keepalive_interval: Option<Duration>,
    /// Time allowed for a PING's answer before the connection is closed.
    pub keepalive_timeout: Duration,
}

impl Default for Http2Settings {
    fn default() -> Self {
        Http2Settings {
            enabled: true,
            max_concurrent_streams: 128,
            max_header_list_size: 32 << 10,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
            keepalive_interval: None,
            keepalive_timeout: Duration::from_secs(20),
        }
    }
}

/// Runs a connection's stream tasks on the listener's tracker, so that a graceful shutdown
/// waits for them as for HTTP/1 requests.
#[derive(Clone)]
pub struct Exec(TaskTracker);

impl<F> hyper::rt::Executor<F> for Exec
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        self.0.spawn(fut);
    }
}

/// The HTTP/2 server of one listener.
pub fn builder(settings: &Http2Settings, tasks: TaskTracker) -> http2::Builder<Exec> {
    let mut b = http2::Builder::new(Exec(tasks));
    b.timer(TokioTimer::new())
        .max_concurrent_streams(settings.max_concurrent_streams)
        .max_header_list_size(settings.max_header_list_size)
        .max_pending_accept_reset_streams(settings.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(settings.max_local_error_reset_streams)
        .keep_alive_interval(settings.keepalive_interval)
        .keep_alive_timeout(settings.keepalive_timeout);
    b
}

/// What a plain connection speaks, by its first bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Sniffed {
    Http1,
    Http2,
    /// Closed, or nothing decisive arrived within the timeout.
    Nothing,
}

/// Look at the first bytes of a plain connection without consuming them: the HTTP/2 preface
/// means h2c with prior knowledge, anything else HTTP/1. A client that sends nothing within
/// `timeout` (the request-head timeout) is dropped, as the HTTP/1 server would drop it.
pub async fn sniff(stream: &TcpStream, timeout: Duration) -> Sniffed {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; PREFACE.len()];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Sniffed::Nothing,
            Ok(Ok(n)) => n,
        };
        if buf[..n] != PREFACE[..n] {
            return Sniffed::Http1;
        }
        if n == PREFACE.len() {
            return Sniffed::Http2;
        }
        // Part of the preface so far (real clients send it whole): a peek would return at
        // once with the same bytes, so wait a little before looking again.
        let next = tokio::time::Instant::now() + Duration::from_millis(5);
        if next >= deadline {
            return Sniffed::Nothing;
        }
        tokio::time::sleep_until(next).await;
    }
}

/// Serve HTTP/2 on an accepted connection until it closes or the gateway drains.
pub async fn serve<I>(
    io: I,
    conn: Arc<ConnState>,
    builder: &http2::Builder<Exec>,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(respond(req, &conn).await) }
    });
    let served = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(served);
    let result = tokio::select! {
        r = served.as_mut() => r,
        _ = stop.changed() => {
            // Draining: GOAWAY, let the open streams finish, then close.
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "HTTP/2 client connection ended with an error");
    }
}

/// One HTTP/2 stream: the request made to look like what the handler expects, the answer made
/// fit for HTTP/2 (and for gRPC, when the request is gRPC).
async fn respond(mut req: Request<Incoming>, conn: &ConnState) -> Response<ProxyBody> {
    // The authority travels in `:authority`; route on it and pass it on as `Host`. A `Host`
    // naming another authority makes the request malformed (RFC 9113 §8.3.1).
    if let Some(authority) = req.uri().authority() {
        match req.headers().get(header::HOST) {
            None => {
                if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
                    req.headers_mut().insert(header::HOST, v);
                }
            }
            Some(h) if h.as_bytes() != authority.as_str().as_bytes() => {
                return ProxyError::BadHost.into_response();
            }
            Some(_) => {}
        }
    }
    let grpc = grpc::is_grpc(req.headers());
    let mut resp = handle(req, conn).await;
    if grpc {
        resp = grpc::gateway_answer(resp);
    }
    // Connection-specific headers are not HTTP/2 (RFC 9113 §8.2.2); the gateway's own answers
    // may carry them (`Connection: close` after a refused body, the 426's `Upgrade`).
    let h = resp.headers_mut();
    if h.contains_key(header::CONNECTION) || h.contains_key(header::UPGRADE) {
        super::forward::remove_hop_by_hop(h);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn sniffed(first: &'static [u8]) -> Sniffed {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(first).await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
        });
        let (stream, _) = listener.accept().await.unwrap();
        let got = sniff(&stream, Duration::from_millis(200)).await;
        client.abort();
        got
    }

    #[tokio::test]
    async fn tells_the_preface_from_http1() {
        assert_eq!(sniffed(PREFACE).await, Sniffed::Http2);
        assert_eq!(sniffed(b"GET / HTTP/1.1\r\n").await, Sniffed::Http1);
        assert_eq!(sniffed(b"PUT / HTTP/1.1\r\n").await, Sniffed::Http1);
        assert_eq!(sniffed(b"PRI * HTTP/1.1\r\n").await, Sniffed::Http1);
        // A partial preface that never completes, and silence, time out.
        assert_eq!(sniffed(b"PRI * HTTP/2").await, Sniffed::Nothing);
        assert_eq!(sniffed(b"").await, Sniffed::Nothing);
    }
}
