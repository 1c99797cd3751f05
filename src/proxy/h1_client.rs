//! A lean HTTP/1.1 client for upstream requests without a body (most GET, HEAD, DELETE,
//! OPTIONS traffic), driven directly by the request's task: the request head is written in one
//! `write`, the response head parsed with `httparse`, and the body framed here (length,
//! chunked, or until close) and streamed frame by frame. Requests with a body go through
//! hyper's client, which writes the body while reading the response.
//!
//! Limits: response heads larger than [`MAX_HEAD_BYTES`] or with more than [`MAX_HEADERS`]
//! fields are rejected (502); `101 Switching Protocols` is refused by [`H1Conn::send`] and
//! handed back with its connection by [`H1Conn::send_upgrade`] (WebSocket pass-through);
//! trailers of a chunked response are read and dropped.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::stream::UpstreamStream;

/// Largest response head accepted from an upstream (bytes).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields accepted in a response head.
pub const MAX_HEADERS: usize = 100;
/// Read size for bodies: large reads keep syscalls per byte low on big responses.
const READ_CHUNK: usize = 64 * 1024;
/// Longest chunk-size line (hex digits plus extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;

/// What went wrong talking to an upstream.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    #[error("upstream I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("upstream closed the connection before responding")]
    ClosedBeforeResponse,
    #[error("upstream closed the connection in the middle of the response")]
    ClosedEarly,
    #[error("invalid response from upstream: {0}")]
    Invalid(&'static str),
    #[error("timed out sending the request to the upstream")]
    WriteTimeout,
}

impl H1Error {
    /// True when the connection closed (cleanly, or reset) before a single byte of response
    /// came back:
    /// the classic race of a keep-alive connection closed by the upstream as the request was
    /// sent. The upstream may still have seen the request, so only idempotent requests may be
    /// replayed, and only once.
    pub fn nothing_received(&self) -> bool {
        matches!(self, H1Error::ClosedBeforeResponse)
    }

    /// The short reason when the error is a TLS failure (an alert from the upstream, say).
    pub fn tls_failure(&self) -> Option<&'static str> {
        match self {
            H1Error::Io(e) => super::upstream_tls::failure(e),
            _ => None,
        }
    }
}

/// The connection was reset or broken by the peer (as opposed to any other I/O failure).
fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// One upstream connection.
pub struct H1Conn {
    stream: UpstreamStream,
    buf: BytesMut,
}

impl H1Conn {
    pub fn new(stream: impl Into<UpstreamStream>) -> Self {
        H1Conn {
            stream: stream.into(),
            buf: BytesMut::new(),
        }
    }

    /// Close an idle connection that is being retired with a reset rather than a FIN: nothing
    /// is in flight on it, and it spares both sides the TIME_WAIT and close handshake (HAProxy's
    /// `nolinger`). Keeps connection churn cheap for a busy upstream.
    pub fn retire(self) {
        let _ =
            socket2::SockRef::from(self.stream.tcp()).set_linger(Some(std::time::Duration::ZERO));
    }

    /// Whether an idle connection still looks usable: not closed by the upstream and with no
    /// unexpected bytes waiting. Uses the reactor's cached readiness, so usually no syscall.
    pub fn is_reusable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let stream = match &mut self.stream {
            UpstreamStream::Plain(s) => s,
            UpstreamStream::Tls(s) => {
                // A TLS read consumes records that carry no data (session tickets) and stays
                // pending; end of stream (close_notify or FIN) or stray bytes are not reusable.
                let mut probe = [0u8; 1];
                let mut probe = tokio::io::ReadBuf::new(&mut probe);
                return Pin::new(s.as_mut())
                    .poll_read(&mut cx, &mut probe)
                    .is_pending();
            }
        };
        match stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Readable while idle: either EOF or stray bytes; neither is reusable.
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Send a request head (no body) and read the response head.
    ///
    /// `write_timeout` bounds sending the head when the socket cannot take it at once (the
    /// common case writes it in one non-blocking call and arms no timer); the caller bounds the
    /// wait for the response head.
    pub async fn send(
        self,
        head: &http::request::Parts,
        write_timeout: std::time::Duration,
    ) -> Result<(http::response::Parts, H1Body), H1Error> {
        match self.exchange(head, write_timeout, false).await? {
            Answer::Response(parts, body) => Ok((parts, body)),
            Answer::Switched(..) => Err(H1Error::Invalid("protocol upgrade is not supported")),
        }
    }

    /// Send an upgrade request head (no body) and read the response head: `101 Switching
    /// Protocols` hands back the connection itself, with any bytes the upstream sent past its
    /// response head; any other answer comes back as a response with its body.
    pub async fn send_upgrade(
        self,
        head: &http::request::Parts,
        write_timeout: std::time::Duration,
    ) -> Result<Answer, H1Error> {
        self.exchange(head, write_timeout, true).await
    }

    async fn exchange(
        mut self,
        head: &http::request::Parts,
        write_timeout: std::time::Duration,
        upgrade: bool,
    ) -> Result<Answer, H1Error> {
        let mut out = Vec::with_capacity(256 + head.headers.len() * 48);
        out.extend_from_slice(head.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(
            head.uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .as_bytes(),
        );
        out.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in &head.headers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        let written = match &self.stream {
            UpstreamStream::Plain(s) => match s.try_write(&out) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) if is_reset(&e) => return Err(H1Error::ClosedBeforeResponse),
                Err(e) => return Err(e.into()),
            },
            UpstreamStream::Tls(_) => 0,
        };
        if written < out.len() {
            let stream = &mut self.stream;
            let send = async {
                stream.write_all(&out[written..]).await?;
                stream.flush().await
            };
            match tokio::time::timeout(write_timeout, send).await {
                Err(_) => return Err(H1Error::WriteTimeout),
                Ok(Err(e)) if is_reset(&e) => return Err(H1Error::ClosedBeforeResponse),
                Ok(r) => r?,
            }
        }

        loop {
            let parsed = loop {
                if let Some(parsed) = parse_head(&self.buf)? {
                    break parsed;
                }
                if self.buf.len() >= MAX_HEAD_BYTES {
                    return Err(H1Error::Invalid("response head too large"));
                }
                self.buf.reserve(8 * 1024);
                let received_before = !self.buf.is_empty();
                let read = match self.stream.read_buf(&mut self.buf).await {
                    // A reset before any byte of the response is the same race as a clean
                    // close (an upstream shutting down resets connections with requests unread).
                    Err(e) if !received_before && is_reset(&e) => {
                        return Err(H1Error::ClosedBeforeResponse);
                    }
                    other => other?,
                };
                if read == 0 {
                    return Err(if received_before {
                        H1Error::ClosedEarly
                    } else {
                        H1Error::ClosedBeforeResponse
                    });
                }
            };
            let head_bytes = self.buf.split_to(parsed.len).freeze();
            let mut parts = parsed.parts;
            parts.headers = build_headers(&head_bytes, &parsed.fields)?;
            if parts.status.is_informational() {
                if parts.status == StatusCode::SWITCHING_PROTOCOLS {
                    if !upgrade {
                        return Err(H1Error::Invalid("protocol upgrade is not supported"));
                    }
                    let rest = self.buf.split().freeze();
                    return Ok(Answer::Switched(parts, self.stream, rest));
                }
                continue; // 100 Continue, 103 Early Hints: wait for the final response.
            }
            let framing = framing(&head.method, &parts)?;
            // A message with both framings, or chunked from an HTTP/1.0 server, may have been
            // delimited differently by the upstream: do not trust the connection afterwards.
            let ambiguous = parts.headers.contains_key(header::TRANSFER_ENCODING)
                && (parts.headers.contains_key(header::CONTENT_LENGTH)
                    || parts.version == Version::HTTP_10);
            let keep_alive =
                keep_alive(&parts) && !matches!(framing, Framing::UntilClose) && !ambiguous;
            let body = H1Body {
                conn: Some(self),
                framing,
                keep_alive,
                chunk: ChunkState::Size,
            };
            return Ok(Answer::Response(parts, body));
        }
    }
}

/// What an upstream answered to a request head.
pub enum Answer {
    /// A final response, its body still to be read.
    Response(http::response::Parts, H1Body),
    /// `101 Switching Protocols`: the connection, and the bytes already read past the head.
    Switched(http::response::Parts, UpstreamStream, Bytes),
}

/// Byte ranges of one header field inside the response head.
#[derive(Clone, Copy)]
struct FieldAt {
    name: (usize, usize),
    value: (usize, usize),
}

/// A parsed response head: status line, where its fields are, and its length.
struct ParsedHead {
    parts: http::response::Parts,
    fields: Vec<FieldAt>,
    len: usize,
}

/// Parse a response head; `None` when more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<ParsedHead>, H1Error> {
    // Uninitialised slots: zeroing a hundred headers per response costs more than parsing.
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut headers,
    ) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(len)) => {
            let status = resp
                .code
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or(H1Error::Invalid("bad status code"))?;
            let (mut parts, ()) = http::Response::new(()).into_parts();
            parts.status = status;
            parts.version = if resp.version == Some(0) {
                Version::HTTP_10
            } else {
                Version::HTTP_11
            };
            // Offsets rather than slices, so the head can be frozen and shared afterwards.
            let base = buf.as_ptr() as usize;
            let range = |s: &[u8]| {
                let start = s.as_ptr() as usize - base;
                (start, start + s.len())
            };
            let fields = resp
                .headers
                .iter()
                .map(|h| FieldAt {
                    name: range(h.name.as_bytes()),
                    value: range(h.value),
                })
                .collect();
            Ok(Some(ParsedHead { parts, fields, len }))
        }
        Err(httparse::Error::TooManyHeaders) => Err(H1Error::Invalid("too many headers")),
        Err(_) => Err(H1Error::Invalid("malformed response head")),
    }
}

/// Header fields of a complete head, values sharing the head's buffer.
fn build_headers(head: &Bytes, fields: &[FieldAt]) -> Result<HeaderMap, H1Error> {
    let mut map = HeaderMap::with_capacity(fields.len());
    for f in fields {
        let name = HeaderName::from_bytes(&head[f.name.0..f.name.1])
            .map_err(|_| H1Error::Invalid("bad header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(f.value.0..f.value.1))
            .map_err(|_| H1Error::Invalid("bad header value"))?;
        map.append(name, value);
    }
    Ok(map)
}

/// How the response body is delimited (RFC 9112 §6.3).
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

fn framing(method: &Method, parts: &http::response::Parts) -> Result<Framing, H1Error> {
    let s = parts.status.as_u16();
    if method == Method::HEAD || s == 204 || s == 304 {
        return Ok(Framing::Empty);
    }
    if let Some(te) = parts
        .headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
    {
        let last = te
            .to_str()
            .ok()
            .and_then(|v| v.rsplit(',').next())
            .map(str::trim);
        // A final coding other than chunked (`chunked, gzip`) would have to be passed on with
        // its header, which the hop-by-hop rules drop: refuse rather than forward garbage.
        return match last {
            Some(c) if c.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
            _ => Err(H1Error::Invalid("unsupported transfer coding")),
        };
    }
    let mut length = None;
    for v in parts.headers.get_all(header::CONTENT_LENGTH) {
        for item in v
            .to_str()
            .map_err(|_| H1Error::Invalid("bad content-length"))?
            .split(',')
        {
            let item = item.trim();
            // 1*DIGIT only: `+5` style values are rejected, as hyper does.
            if item.is_empty() || !item.bytes().all(|b| b.is_ascii_digit()) {
                return Err(H1Error::Invalid("bad content-length"));
            }
            let n: u64 = item
                .parse()
                .map_err(|_| H1Error::Invalid("bad content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(H1Error::Invalid("conflicting content-length"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::UntilClose,
    })
}

fn keep_alive(parts: &http::response::Parts) -> bool {
    let mut close = parts.version == Version::HTTP_10;
    for v in parts.headers.get_all(header::CONNECTION) {
        for token in v.to_str().unwrap_or("").split(',') {
            let t = token.trim();
            if t.eq_ignore_ascii_case("close") {
                return false;
            }
            if t.eq_ignore_ascii_case("keep-alive") {
                close = false;
            }
        }
    }
    !close
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty line.
    Trailers,
}

/// A response body streamed from its connection.
pub struct H1Body {
    conn: Option<H1Conn>,
    framing: Framing,
    keep_alive: bool,
    chunk: ChunkState,
}

impl H1Body {
    /// The connection, once the body has been read completely and it may carry another request.
    pub fn take_reusable(&mut self) -> Option<H1Conn> {
        if self.is_end_stream() && self.keep_alive {
            self.conn.take()
        } else {
            None
        }
    }

    /// Read more bytes into the connection buffer; `Ok(0)` at end of stream.
    fn poll_fill(conn: &mut H1Conn, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let stream = match &mut conn.stream {
            UpstreamStream::Plain(s) => s,
            UpstreamStream::Tls(s) => {
                conn.buf.reserve(READ_CHUNK);
                return tokio_util::io::poll_read_buf(Pin::new(s.as_mut()), cx, &mut conn.buf);
            }
        };
        loop {
            ready!(stream.poll_read_ready(cx))?;
            conn.buf.reserve(READ_CHUNK);
            match stream.try_read_buf(&mut conn.buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Read more bytes where the framing says more must come: end of stream is an error.
    fn poll_fill_required(conn: &mut H1Conn, cx: &mut Context<'_>) -> Poll<Result<(), H1Error>> {
        Poll::Ready(match ready!(Self::poll_fill(conn, cx)) {
            Ok(0) => Err(H1Error::ClosedEarly),
            Ok(_) => Ok(()),
            Err(e) => Err(e.into()),
        })
    }

    /// The next frame, or `None` at the end; errors leave the connection to be dropped.
    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match self.framing {
                Framing::Empty => return Poll::Ready(None),
                Framing::Length(left) => {
                    if conn.buf.is_empty() {
                        ready!(Self::poll_fill_required(conn, cx))?;
                    }
                    let take = (conn.buf.len() as u64).min(left) as usize;
                    let data = conn.buf.split_to(take).freeze();
                    let left = left - take as u64;
                    self.framing = if left == 0 {
                        Framing::Empty
                    } else {
                        Framing::Length(left)
                    };
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::UntilClose => {
                    if conn.buf.is_empty() && ready!(Self::poll_fill(conn, cx))? == 0 {
                        self.framing = Framing::Empty;
                        return Poll::Ready(None);
                    }
                    let data = conn.buf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Chunked => match self.chunk {
                    ChunkState::Data(left) => {
                        if conn.buf.is_empty() {
                            ready!(Self::poll_fill_required(conn, cx))?;
                        }
                        let take = (conn.buf.len() as u64).min(left) as usize;
                        let data = conn.buf.split_to(take).freeze();
                        let left = left - take as u64;
                        self.chunk = if left == 0 {
                            ChunkState::DataEnd
                        } else {
                            ChunkState::Data(left)
                        };
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    state => {
                        let Some(n) = line_len(&conn.buf) else {
                            if conn.buf.len() > MAX_CHUNK_LINE {
                                return Poll::Ready(Some(Err(H1Error::Invalid(
                                    "chunk line too long",
                                ))));
                            }
                            ready!(Self::poll_fill_required(conn, cx))?;
                            continue;
                        };
                        let line = conn.buf.split_to(n + 2);
                        self.chunk = match (state, n) {
                            (ChunkState::DataEnd, 0) => ChunkState::Size,
                            (ChunkState::DataEnd, _) => {
                                return Poll::Ready(Some(Err(H1Error::Invalid(
                                    "missing CRLF after chunk",
                                ))));
                            }
                            (ChunkState::Trailers, 0) => {
                                self.framing = Framing::Empty;
                                return Poll::Ready(None);
                            }
                            (ChunkState::Trailers, _) => ChunkState::Trailers, // a trailer field: dropped
                            _ => match chunk_size(&line) {
                                Some(0) => ChunkState::Trailers,
                                Some(size) => ChunkState::Data(size),
                                None => {
                                    return Poll::Ready(Some(Err(H1Error::Invalid(
                                        "bad chunk size",
                                    ))));
                                }
                            },
                        };
                    }
                },
            }
        }
    }
}

/// The size on a chunk-size line (hex digits, optional `;extensions`), parsed by httparse.
fn chunk_size(line_with_crlf: &[u8]) -> Option<u64> {
    match httparse::parse_chunk_size(line_with_crlf) {
        Ok(httparse::Status::Complete((_, size))) => Some(size),
        _ => None,
    }
}

/// Find a CRLF-terminated line at the start of `buf`; returns its length without the CRLF.
fn line_len(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = H1Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        let this = self.get_mut();
        let frame = this.poll_step(cx);
        if let Poll::Ready(Some(Err(_))) = &frame {
            // A broken body leaves the connection in an unknown state: never reuse it.
            this.conn = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || matches!(self.framing, Framing::Empty)
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Empty => SizeHint::with_exact(0),
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    /// A one-shot upstream: reads one request head, then writes `pieces` (flushing each), then
    /// closes if `close` is set, else keeps the socket open until the test ends.
    async fn upstream(
        pieces: Vec<&'static [u8]>,
        close: bool,
    ) -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            for p in pieces {
                s.write_all(p).await.unwrap();
                s.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
            if !close {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
            req
        });
        (addr, task)
    }

    fn get(method: &str) -> http::request::Parts {
        let (mut parts, ()) = http::Request::builder()
            .method(method)
            .uri("/x?y=1")
            .header("host", "up")
            .body(())
            .unwrap()
            .into_parts();
        parts.headers.insert("x-a", HeaderValue::from_static("1"));
        parts
    }

    async fn exchange(
        method: &str,
        pieces: Vec<&'static [u8]>,
        close: bool,
    ) -> (
        Result<(http::response::Parts, Vec<u8>, bool), H1Error>,
        Vec<u8>,
    ) {
        let (addr, task) = upstream(pieces, close).await;
        let conn = H1Conn::new(TcpStream::connect(addr).await.unwrap());
        let result = async {
            let (head, mut body) = conn
                .send(&get(method), std::time::Duration::from_secs(5))
                .await?;
            let mut data = Vec::new();
            while let Some(frame) = body.frame().await {
                if let Ok(d) = frame?.into_data() {
                    data.extend_from_slice(&d);
                }
            }
            let reusable = body.take_reusable().is_some();
            Ok((head, data, reusable))
        }
        .await;
        task.abort();
        let req: Vec<u8> = task.await.unwrap_or_default();
        (result, req)
    }

    #[tokio::test]
    async fn writes_the_request_head_and_reads_a_length_body() {
        let (addr, task) = upstream(
            vec![
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Up: a\r\n\r\nhel",
                b"lo",
            ],
            true,
        )
        .await;
        let conn = H1Conn::new(TcpStream::connect(addr).await.unwrap());
        let (head, body) = conn
            .send(&get("GET"), std::time::Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.headers["x-up"], "a");
        let data = body.collect().await.unwrap().to_bytes();
        assert_eq!(&data[..], b"hello");
        let req = String::from_utf8(task.await.unwrap()).unwrap();
        assert!(req.starts_with("GET /x?y=1 HTTP/1.1\r\n"), "{req}");
        assert!(
            req.contains("host: up\r\n") && req.contains("x-a: 1\r\n"),
            "{req}"
        );
    }

    #[tokio::test]
    async fn chunked_bodies_with_extensions_and_trailers_split_anywhere() {
        let pieces: Vec<&'static [u8]> = vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"5;ext=1\r\nhel",
            b"lo\r\n",
            b"6\r\n worl",
            b"d\r\n0\r\nX-Trailer: t\r\n",
            b"\r\n",
        ];
        let (result, _) = exchange("GET", pieces, false).await;
        let (_, data, reusable) = result.unwrap();
        assert_eq!(data, b"hello world");
        assert!(
            reusable,
            "a complete chunked body leaves the connection reusable"
        );
    }

    #[tokio::test]
    async fn bodies_delimited_by_close_are_not_reused() {
        let (result, _) = exchange(
            "GET",
            vec![b"HTTP/1.1 200 OK\r\n\r\nuntil ", b"close"],
            true,
        )
        .await;
        let (_, data, reusable) = result.unwrap();
        assert_eq!(data, b"until close");
        assert!(!reusable);
    }

    #[tokio::test]
    async fn head_204_304_have_no_body_and_informational_responses_are_skipped() {
        let (result, _) = exchange(
            "HEAD",
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"],
            false,
        )
        .await;
        let (head, data, reusable) = result.unwrap();
        assert_eq!(
            (
                head.headers["content-length"].to_str().unwrap(),
                data.len(),
                reusable
            ),
            ("100", 0, true)
        );
        let (result, _) = exchange("GET", vec![b"HTTP/1.1 204 No Content\r\n\r\n"], false).await;
        assert_eq!(result.unwrap().1.len(), 0);
        let (result, _) = exchange(
            "GET",
            vec![b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n"],
            false,
        )
        .await;
        assert_eq!(result.unwrap().1.len(), 0);
        let (result, _) = exchange(
            "GET",
            vec![
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            ],
            false,
        )
        .await;
        let (head, data, _) = result.unwrap();
        assert_eq!((head.status.as_u16(), data), (200, b"ok".to_vec()));
    }

    #[tokio::test]
    async fn connection_close_and_http10_are_not_reused() {
        let (result, _) = exchange(
            "GET",
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\na"],
            false,
        )
        .await;
        assert!(!result.unwrap().2);
        let (result, _) = exchange(
            "GET",
            vec![b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\na"],
            false,
        )
        .await;
        assert!(!result.unwrap().2);
        let (result, _) = exchange(
            "GET",
            vec![b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\na"],
            false,
        )
        .await;
        assert!(result.unwrap().2);
    }

    /// An upstream shutting down resets connections whose request it did not answer: that is
    /// the same "nothing received" case as a clean close, so an idempotent request may be
    /// replayed.
    #[tokio::test]
    async fn a_reset_before_any_response_byte_counts_as_nothing_received() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            // SO_LINGER 0: closing sends a reset.
            let s = socket2::SockRef::from(&s);
            s.set_linger(Some(std::time::Duration::ZERO)).unwrap();
        });
        let conn = H1Conn::new(TcpStream::connect(addr).await.unwrap());
        let r = conn
            .send(&get("GET"), std::time::Duration::from_secs(5))
            .await;
        server.await.unwrap();
        let e = r.err().unwrap();
        assert!(e.nothing_received(), "{e:?}");
    }

    #[tokio::test]
    async fn malformed_and_truncated_responses_are_errors() {
        let (r, _) = exchange("GET", vec![], true).await;
        assert!(matches!(r, Err(H1Error::ClosedBeforeResponse)));
        assert!(r.err().is_some_and(|e| e.nothing_received()));
        let (r, _) = exchange("GET", vec![b"HTTP/1.1 200 OK\r\nContent-Le"], true).await;
        assert!(matches!(r, Err(H1Error::ClosedEarly)));
        let (r, _) = exchange("GET", vec![b"NOT HTTP\r\n\r\n"], true).await;
        assert!(matches!(r, Err(H1Error::Invalid(_))));
        let (r, _) = exchange(
            "GET",
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"],
            true,
        )
        .await;
        assert!(matches!(
            r,
            Err(H1Error::Invalid("conflicting content-length"))
        ));
        let (r, _) = exchange(
            "GET",
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"],
            true,
        )
        .await;
        assert!(matches!(r, Err(H1Error::ClosedEarly)));
        let (r, _) = exchange(
            "GET",
            vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],
            true,
        )
        .await;
        assert!(matches!(r, Err(H1Error::Invalid("bad chunk size"))));
        let (r, _) = exchange(
            "GET",
            vec![b"HTTP/1.1 101 Switching Protocols\r\n\r\n"],
            true,
        )
        .await;
        assert!(matches!(r, Err(H1Error::Invalid(_))));
    }

    #[tokio::test]
    async fn an_idle_connection_closed_by_the_upstream_is_not_reusable() {
        let (addr, task) =
            upstream(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"], true).await;
        let conn = H1Conn::new(TcpStream::connect(addr).await.unwrap());
        let (_, mut body) = conn
            .send(&get("GET"), std::time::Duration::from_secs(5))
            .await
            .unwrap();
        while body.frame().await.is_some() {}
        let mut conn = body.take_reusable().unwrap();
        task.await.unwrap(); // the upstream has closed its side
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        // The reactor learns of the close asynchronously; wait until it has.
        while conn.is_reusable() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(!conn.is_reusable());
    }

    #[tokio::test]
    async fn a_head_the_upstream_does_not_read_times_out() {
        // Accepts, never reads: a head larger than the socket buffers cannot be written.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
            drop(s);
        });
        let conn = H1Conn::new(TcpStream::connect(addr).await.unwrap());
        let mut parts = get("GET");
        let big = "x".repeat(32 << 20);
        parts
            .headers
            .insert("x-big", HeaderValue::from_str(&big).unwrap());
        let started = std::time::Instant::now();
        let r = conn
            .send(&parts, std::time::Duration::from_millis(200))
            .await;
        assert!(matches!(r, Err(H1Error::WriteTimeout)), "{:?}", r.err());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        hold.abort();
    }

    #[tokio::test]
    async fn a_retired_connection_is_reset_not_closed_gracefully() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conn = H1Conn::new(TcpStream::connect(addr).await.unwrap());
        let (mut peer, _) = listener.accept().await.unwrap();
        conn.retire();
        let mut buf = [0u8; 8];
        let r = tokio::time::timeout(std::time::Duration::from_secs(5), peer.read(&mut buf))
            .await
            .unwrap();
        assert!(
            matches!(&r, Err(e) if e.kind() == io::ErrorKind::ConnectionReset),
            "{r:?}"
        );
    }
}
