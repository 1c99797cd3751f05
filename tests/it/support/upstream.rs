//! A real, controllable HTTP/1.1 upstream server for integration tests.
//!
//! [`Upstream::start`] binds `127.0.0.1:0` and serves HTTP/1.1 (keep-alive on) with hyper, one
//! tokio task per accepted TCP connection. Every request is recorded (see [`Recorded`]) and the
//! behaviour is chosen per request by the *first path segment* (the path is matched as received,
//! without percent-decoding; only the first two segments matter, so `/status/503/x` is
//! `/status/503`):
//!
//! | path                | behaviour |
//! |---------------------|-----------|
//! | anything else       | 200, `content-type: application/json`, body = JSON describing the request (see below) |
//! | `/status/{code}`    | that status (200..=999) with JSON `{"status":code,"upstream":name}`; 204/304 have no body; a code < 200 or not a number gives 400 |
//! | `/delay/{ms}`       | answer like the default route `ms` milliseconds after the request head arrived |
//! | `/hang`             | read the request body, then never answer (connection held until [`Upstream::stop`]) |
//! | `/close`            | read the request body, then close the TCP connection without writing a single byte |
//! | `/bytes/{n}`        | `n` pattern bytes ([`pattern_bytes`]) in [`CHUNK_SIZE`] frames, with `content-length: n`, `content-type: application/octet-stream` |
//! | `/chunked/{n}`      | same bytes, no `content-length` (`transfer-encoding: chunked`), a `yield_now` between frames |
//! | `/slow-body/{ms}`   | chunked `text/plain`: headers + [`SLOW_BODY_FIRST`] at once, then a stall of `ms`, then [`SLOW_BODY_LAST`] |
//! | `/echo`             | request body streamed back frame by frame (no buffering); request `content-type` copied if present; `content-length` mirrored when the request had one, chunked otherwise |
//! | `/sink`             | read and discard the body while streaming, answer JSON `{"body_len":n}` |
//! | `/headers-out`      | 200 with hop-by-hop response headers, see [`HEADERS_OUT`] |
//!
//! [`Upstream::start_tls`] serves the same over TLS, recording the server name each
//! connection asked for ([`Upstream::tls_server_names`]).
//!
//! Malformed numeric arguments (`/delay/abc`, `/status/`) answer 400 with JSON `{"error": ...}`;
//! a numeric route without its argument segment (`/status`, `/bytes`) is the default route.
//! Every response (including 400s) carries `x-upstream-port: <port>` and, once
//! [`Upstream::set_name`] was called, `x-upstream-name: <name>`.
//!
//! # JSON
//! The default route answers
//! `{"method","path","query","uri","headers","body_len","upstream"}` where `query` is `null`
//! when absent, `headers` maps each (lower-case) name to a string, or to an array of strings when
//! the header was received more than once, and `upstream` is the name or `null`.

// Test-only server: a std mutex around the request log is fine here (clippy.toml bans it for
// the gateway's request path).
#![allow(clippy::disallowed_types)]

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type RespBody = UnsyncBoxBody<Bytes, BoxError>;

/// Frame size used by `/bytes/{n}` and `/chunked/{n}`.
pub const CHUNK_SIZE: usize = 64 * 1024;
/// First body chunk of `/slow-body/{ms}` (sent together with the headers).
pub const SLOW_BODY_FIRST: &[u8] = b"slow-body: first chunk\n";
/// Final body chunk of `/slow-body/{ms}` (sent after the stall).
pub const SLOW_BODY_LAST: &[u8] = b"slow-body: last chunk\n";

/// Response headers sent by `/headers-out`, exactly as they appear on the wire (hyper writes
/// header names lower-case and passes these values through untouched; verified byte-for-byte
/// by a raw-TCP self-test):
///
/// * `connection: x-hop` — nominates `x-hop` as hop-by-hop. hyper keeps the value as is on a
///   keep-alive connection; when the connection is going to close (e.g. the request said
///   `connection: close`) hyper appends its own token, giving `connection: x-hop, close`.
/// * `x-hop: 1` — hop-by-hop only because `connection` lists it.
/// * `keep-alive: timeout=5`, `proxy-connection: keep-alive`,
///   `proxy-authenticate: Basic realm="upstream"`, `upgrade: h2c` — classic hop-by-hop names
///   (a 200 with `upgrade` is not treated as an upgrade by hyper, it is just a header).
/// * `trailer: x-upstream-trailer` — the body is chunked (no `content-length`) and its last
///   frame is the trailer field [`HEADERS_OUT_TRAILER`] (`x-upstream-trailer: done`). hyper
///   only puts that field on the wire when the *request* carried `te: trailers` (and the field
///   is declared in `trailer`); otherwise the body just ends with `0\r\n\r\n`.
/// * `x-end-to-end: 1` — a control header a proxy must forward.
///
/// Plus the usual `content-type: application/json`, `x-upstream-port`, `x-upstream-name`,
/// `transfer-encoding: chunked` and `date` (the last two added by hyper). `transfer-encoding`
/// is the one hop-by-hop header hyper manages itself and cannot be set freely.
/// The body is the default-route JSON.
pub const HEADERS_OUT: &[(&str, &str)] = &[
    ("connection", "x-hop"),
    ("x-hop", "1"),
    ("keep-alive", "timeout=5"),
    ("proxy-connection", "keep-alive"),
    ("proxy-authenticate", "Basic realm=\"upstream\""),
    ("upgrade", "h2c"),
    ("trailer", "x-upstream-trailer"),
    ("x-end-to-end", "1"),
];
/// Trailer field sent at the end of the `/headers-out` body.
pub const HEADERS_OUT_TRAILER: (&str, &str) = ("x-upstream-trailer", "done");

/// One request received by an [`Upstream`].
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path only, as received (not percent-decoded).
    pub path: String,
    /// Query string without `?`, as received.
    pub query: Option<String>,
    /// Request target as received: `path?query` for origin-form, the full URI for
    /// absolute-form, `*` for asterisk-form.
    pub uri: String,
    pub headers: HeaderMap,
    /// Bytes of request body read so far. The entry is created when the request head arrives
    /// and this is filled in once the body has been consumed (before the response completes),
    /// so it is final by the time the client has the whole response.
    pub body_len: u64,
    /// Client address of the TCP connection that carried the request.
    pub peer: SocketAddr,
}

struct State {
    port: u16,
    name: Mutex<Option<String>>,
    requests: Mutex<Vec<Recorded>>,
    connections: AtomicUsize,
    /// Per completed TLS handshake, the SNI the client sent.
    tls_names: Mutex<Vec<Option<String>>>,
}

impl State {
    fn requests(&self) -> MutexGuard<'_, Vec<Recorded>> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn name(&self) -> Option<String> {
        self.name.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records the request head; returns its index so the body length can be filled in later.
    fn record(&self, parts: &Parts, peer: SocketAddr) -> usize {
        let mut requests = self.requests();
        requests.push(Recorded {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            uri: parts.uri.to_string(),
            headers: parts.headers.clone(),
            body_len: 0,
            peer,
        });
        requests.len() - 1
    }
}

/// A running upstream server. Dropping it also shuts it down (asynchronously); use
/// [`Upstream::stop`] to wait until the port refuses connections.
pub struct Upstream {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Binds `127.0.0.1:0` and starts serving on a background tokio task.
    pub async fn start() -> Upstream {
        Upstream::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Binds `addr` and starts serving: with the address of an upstream that was
    /// [`stop`](Upstream::stop)ped, this restarts it on the same port (tokio binds with
    /// `SO_REUSEADDR`, so connections it closed in `TIME_WAIT` do not block the port).
    pub async fn start_on(addr: SocketAddr) -> Upstream {
        Upstream::bind(addr, None).await
    }

    /// Binds `127.0.0.1:0` and serves over TLS with `config`.
    pub async fn start_tls(config: Arc<rustls::ServerConfig>) -> Upstream {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        Upstream::bind(SocketAddr::from(([127, 0, 0, 1], 0)), Some(acceptor)).await
    }

    async fn bind(addr: SocketAddr, tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("upstream: bind {addr}: {e}"));
        let addr = listener.local_addr().expect("upstream: local_addr");
        let state = Arc::new(State {
            port: addr.port(),
            name: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            tls_names: Mutex::new(Vec::new()),
        });
        let (shutdown, shutdown_rx) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, state.clone(), shutdown_rx, tls));
        Upstream {
            addr,
            state,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in order of arrival of the request head.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests().clone()
    }

    pub fn request_count(&self) -> usize {
        self.state.requests().len()
    }

    /// Number of TCP connections accepted so far (counted at accept time).
    pub fn connections_accepted(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// For each completed TLS handshake (in order), the server name the client sent.
    pub fn tls_server_names(&self) -> Vec<Option<String>> {
        self.state
            .tls_names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets the value echoed in `x-upstream-name` and in the JSON `upstream` field.
    /// Panics if `name` is not a valid header value.
    pub fn set_name(&self, name: &str) {
        HeaderValue::from_str(name).expect("upstream name must be a valid header value");
        *self.state.name.lock().unwrap_or_else(|e| e.into_inner()) = Some(name.to_owned());
    }

    /// Closes the listener and every open connection (including hanging and idle keep-alive
    /// ones), and waits until that is done: afterwards connecting to the port is refused.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// A port on 127.0.0.1 on which nothing listens (bound to port 0, then released).
pub fn closed_port() -> u16 {
    let listener = StdTcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// The byte pattern used by `/bytes/{n}` and `/chunked/{n}`: byte `i` is `(i % 251) as u8`.
pub fn pattern_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// `len` pattern bytes starting at absolute offset `offset`, without copying.
fn pattern_slice(offset: u64, len: usize) -> Bytes {
    static BASE: OnceLock<Bytes> = OnceLock::new();
    let base = BASE.get_or_init(|| Bytes::from(pattern_bytes(CHUNK_SIZE + 251)));
    let start = (offset % 251) as usize;
    base.slice(start..start + len)
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    mut shutdown: oneshot::Receiver<()>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            // Explicit stop() or the Upstream was dropped.
            _ = &mut shutdown => break,
            // Reap finished connection tasks.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    state.connections.fetch_add(1, Ordering::SeqCst);
                    connections.spawn(serve_connection(stream, peer, state.clone(), tls.clone()));
                }
                // Transient accept errors (ECONNABORTED, EMFILE, ...): back off a little.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
        }
    }
    drop(listener);
    // Aborts every connection task and waits for them: their sockets are closed on return.
    connections.shutdown().await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<State>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => serve_io(stream, peer, state).await,
        Some(acceptor) => {
            // A failed handshake (an untrusted client, say) just closes the connection.
            if let Ok(stream) = acceptor.accept(stream).await {
                let name = stream.get_ref().1.server_name().map(str::to_owned);
                state
                    .tls_names
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(name);
                serve_io(stream, peer, state).await;
            }
        }
    }
}

async fn serve_io<S>(stream: S, peer: SocketAddr, state: Arc<State>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(state.clone(), peer, req));
    // An error here is a client going away, a malformed request, or `/close`: in every case the
    // socket is dropped (closed) when this task returns.
    let _ = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn handle(
    state: Arc<State>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<RespBody>, BoxError> {
    let (parts, body) = req.into_parts();
    let index = state.record(&parts, peer);
    let body = CountingBody {
        inner: body,
        count: 0,
        state: state.clone(),
        index,
    };
    let path = parts.uri.path().to_owned();
    let mut segments = path.strip_prefix('/').unwrap_or(&path).split('/');
    let first = segments.next().unwrap_or("");
    let arg = segments.next();

    let mut response = match first {
        "status" if arg.is_some() => status(&state, arg, body).await?,
        "delay" if arg.is_some() => match parse::<u64>(arg) {
            Some(ms) => {
                let deadline = Instant::now() + Duration::from_millis(ms);
                let len = drain(body).await?;
                tokio::time::sleep_until(deadline).await;
                default_response(&state, &parts, len)
            }
            None => bad_request("/delay/{ms} needs a number of milliseconds"),
        },
        "hang" => {
            drain(body).await?;
            std::future::pending::<()>().await;
            unreachable!("pending() never completes")
        }
        "close" => {
            drain(body).await?;
            // A service error makes hyper drop the connection without writing anything.
            return Err("upstream: /close closes the connection without a response".into());
        }
        "bytes" if arg.is_some() => match parse::<u64>(arg) {
            Some(n) => {
                drain(body).await?;
                let mut response = Response::new(pattern_body(n, false));
                let headers = response.headers_mut();
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                response
            }
            None => bad_request("/bytes/{n} needs a number of bytes"),
        },
        "chunked" if arg.is_some() => match parse::<u64>(arg) {
            Some(n) => {
                drain(body).await?;
                let mut response = Response::new(pattern_body(n, true));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                response
            }
            None => bad_request("/chunked/{n} needs a number of bytes"),
        },
        "slow-body" if arg.is_some() => match parse::<u64>(arg) {
            Some(ms) => {
                drain(body).await?;
                slow_body(Duration::from_millis(ms))
            }
            None => bad_request("/slow-body/{ms} needs a number of milliseconds"),
        },
        "echo" => {
            let mut response = Response::new(body.map_err(BoxError::from).boxed_unsync());
            if let Some(content_type) = parts.headers.get(header::CONTENT_TYPE) {
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, content_type.clone());
            }
            response
        }
        "sink" => {
            let len = drain(body).await?;
            json_response(StatusCode::OK, &json!({ "body_len": len }))
        }
        "headers-out" => {
            let len = drain(body).await?;
            headers_out(&state, &parts, len)
        }
        _ => {
            let len = drain(body).await?;
            default_response(&state, &parts, len)
        }
    };

    let headers = response.headers_mut();
    headers.insert("x-upstream-port", HeaderValue::from(state.port));
    if let Some(name) = state.name() {
        headers.insert(
            "x-upstream-name",
            HeaderValue::from_str(&name).expect("validated in set_name"),
        );
    }
    Ok(response)
}

fn parse<T: FromStr>(arg: Option<&str>) -> Option<T> {
    arg?.parse().ok()
}

/// Reads the whole request body, discarding it; returns its length.
async fn drain(mut body: CountingBody) -> Result<u64, hyper::Error> {
    while let Some(frame) = body.frame().await {
        frame?;
    }
    Ok(body.count)
}

fn full(bytes: impl Into<Bytes>) -> RespBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn json_response(status: StatusCode, value: &Value) -> Response<RespBody> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn bad_request(message: &str) -> Response<RespBody> {
    json_response(StatusCode::BAD_REQUEST, &json!({ "error": message }))
}

fn headers_json(headers: &HeaderMap) -> Value {
    let mut map = serde_json::Map::new();
    for name in headers.keys() {
        let mut values: Vec<Value> = headers
            .get_all(name)
            .iter()
            .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let value = if values.len() == 1 {
            values.remove(0)
        } else {
            Value::Array(values)
        };
        map.insert(name.as_str().to_owned(), value);
    }
    Value::Object(map)
}

fn describe(state: &State, parts: &Parts, body_len: u64) -> Value {
    json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "uri": parts.uri.to_string(),
        "headers": headers_json(&parts.headers),
        "body_len": body_len,
        "upstream": state.name(),
    })
}

fn default_response(state: &State, parts: &Parts, body_len: u64) -> Response<RespBody> {
    json_response(StatusCode::OK, &describe(state, parts, body_len))
}

async fn status(
    state: &State,
    arg: Option<&str>,
    body: CountingBody,
) -> Result<Response<RespBody>, hyper::Error> {
    let code = parse::<u16>(arg)
        .and_then(|n| StatusCode::from_u16(n).ok())
        .filter(|code| code.as_u16() >= 200);
    let Some(code) = code else {
        return Ok(bad_request(
            "/status/{code} needs a status code in 200..=999",
        ));
    };
    drain(body).await?;
    if code == StatusCode::NO_CONTENT || code == StatusCode::NOT_MODIFIED {
        let mut response =
            Response::new(Empty::new().map_err(|never| match never {}).boxed_unsync());
        *response.status_mut() = code;
        return Ok(response);
    }
    Ok(json_response(
        code,
        &json!({ "status": code.as_u16(), "upstream": state.name() }),
    ))
}

/// `n` pattern bytes in [`CHUNK_SIZE`] frames; `yield_between` inserts a task yield between
/// frames (used by `/chunked`).
fn pattern_body(n: u64, yield_between: bool) -> RespBody {
    let frames = futures_util::stream::unfold(0u64, move |offset| async move {
        if offset >= n {
            return None;
        }
        if yield_between && offset > 0 {
            tokio::task::yield_now().await;
        }
        let len = (n - offset).min(CHUNK_SIZE as u64) as usize;
        let frame = Frame::data(pattern_slice(offset, len));
        Some((Ok::<_, BoxError>(frame), offset + len as u64))
    });
    StreamBody::new(frames).boxed_unsync()
}

fn slow_body(stall: Duration) -> Response<RespBody> {
    let frames = futures_util::stream::unfold(0u8, move |step| async move {
        let data = match step {
            0 => SLOW_BODY_FIRST,
            1 => {
                tokio::time::sleep(stall).await;
                SLOW_BODY_LAST
            }
            _ => return None,
        };
        Some((
            Ok::<_, BoxError>(Frame::data(Bytes::from_static(data))),
            step + 1,
        ))
    });
    let mut response = Response::new(StreamBody::new(frames).boxed_unsync());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

fn headers_out(state: &State, parts: &Parts, body_len: u64) -> Response<RespBody> {
    let data = Bytes::from(describe(state, parts, body_len).to_string());
    let mut trailers = HeaderMap::new();
    trailers.insert(
        HeaderName::from_static(HEADERS_OUT_TRAILER.0),
        HeaderValue::from_static(HEADERS_OUT_TRAILER.1),
    );
    let frames = futures_util::stream::iter([
        Ok::<_, BoxError>(Frame::data(data)),
        Ok(Frame::trailers(trailers)),
    ]);
    let mut response = Response::new(StreamBody::new(frames).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in HEADERS_OUT {
        headers.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}

/// The request body, counting data bytes as they are read; the count is stored into the
/// request's [`Recorded`] entry when the body ends, fails or is dropped.
struct CountingBody {
    inner: Incoming,
    count: u64,
    state: Arc<State>,
    index: usize,
}

impl CountingBody {
    fn publish(&self) {
        if let Some(recorded) = self.state.requests().get_mut(self.index) {
            recorded.body_len = self.count;
        }
    }
}

impl Body for CountingBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let result = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &result {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.count += data.len() as u64;
                }
            }
            // End of body or error: publish before the caller (e.g. `/echo`'s response
            // stream) can finish the response.
            _ => this.publish(),
        }
        Poll::Ready(result)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for CountingBody {
    fn drop(&mut self) {
        self.publish();
    }
}
