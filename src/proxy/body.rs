//! Body types of the data plane. Bodies stream frame by frame; the exception is
//! [`read_up_to`], which reads a client's body into memory, bounded in size and in time: whole
//! for routes whose plugins need it ([`read_limited`]), and first of all for routes with
//! `request_buffering` (a body over the limit then streams on after what was read).
//!
//! - [`ProxyBody`] is what the gateway sends to clients: a small in-memory body (errors, plugin
//!   answers) or the upstream's streaming body, which returns its keep-alive connection to the
//!   pool once it ends and enforces the service's `read_timeout` between two reads.
//! - [`RequestBody`] is what the gateway sends upstream: the client's streaming body, or one
//!   held in memory (a buffered body).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Sleep;

use super::h1_client::H1Body;
use super::pool::{Lease, PooledConn};

/// Boxed error type of gateway bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The upstream stopped sending for longer than the service's `read_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("upstream read timed out")]
pub struct ReadTimeout;

/// A body sent to the client.
pub enum ProxyBody {
    /// A complete body held in memory (`None` once sent).
    Full(Option<Bytes>),
    /// The upstream's response body, streamed.
    Upstream(UpstreamBody),
}

impl ProxyBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let b = bytes.into();
        ProxyBody::Full((!b.is_empty()).then_some(b))
    }
}

/// The upstream response body plus the connection it arrived on; the connection goes back to
/// the pool once the body has been read to its end.
pub struct UpstreamBody {
    source: Source,
    read_timeout: Duration,
    idle: Option<Pin<Box<Sleep>>>,
    /// Whether `idle` counts the current wait (it is reset after every frame).
    idle_armed: bool,
}

enum Source {
    /// From hyper's client (requests that had a body).
    Hyper {
        inner: Incoming,
        conn: Option<PooledConn>,
    },
    /// From the lean client (requests without a body).
    Lean { body: H1Body, lease: Option<Lease> },
    /// From a multiplexed HTTP/2 connection (`grpc` services): nothing goes back to a pool.
    Multiplexed(Incoming),
}

impl UpstreamBody {
    pub fn new(inner: Incoming, conn: PooledConn, read_timeout: Duration) -> Self {
        Self::with_source(
            Source::Hyper {
                inner,
                conn: Some(conn),
            },
            read_timeout,
        )
    }

    pub fn lean(body: H1Body, lease: Lease, read_timeout: Duration) -> Self {
        Self::with_source(
            Source::Lean {
                body,
                lease: Some(lease),
            },
            read_timeout,
        )
    }

    /// A response body from an HTTP/2 upstream connection (see `h2_client`).
    pub fn multiplexed(inner: Incoming, read_timeout: Duration) -> Self {
        Self::with_source(Source::Multiplexed(inner), read_timeout)
    }

    fn with_source(source: Source, read_timeout: Duration) -> Self {
        let mut body = UpstreamBody {
            source,
            read_timeout,
            idle: None,
            idle_armed: false,
        };
        // A body that is empty from the start is never polled by the server: release now.
        if body.source_done() {
            body.release();
        }
        body
    }

    fn source_done(&self) -> bool {
        match &self.source {
            Source::Hyper { inner, .. } => inner.is_end_stream(),
            Source::Lean { body, .. } => body.is_end_stream(),
            Source::Multiplexed(inner) => inner.is_end_stream(),
        }
    }

    fn release(&mut self) {
        match &mut self.source {
            Source::Hyper { conn, .. } => {
                if let Some(conn) = conn.take() {
                    conn.release();
                }
            }
            Source::Lean { body, lease } => {
                if let (Some(conn), Some(lease)) = (body.take_reusable(), lease.take()) {
                    lease.release(conn);
                }
            }
            Source::Multiplexed(_) => {}
        }
    }

    fn forget_conn(&mut self) {
        match &mut self.source {
            Source::Hyper { conn, .. } => *conn = None,
            Source::Lean { lease, .. } => *lease = None,
            Source::Multiplexed(_) => {}
        }
    }

    fn poll_source(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.source {
            Source::Hyper { inner, .. } => Pin::new(inner).poll_frame(cx).map_err(Into::into),
            Source::Lean { body, .. } => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Source::Multiplexed(inner) => Pin::new(inner).poll_frame(cx).map_err(Into::into),
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Upstream(u) => match u.poll_source(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    u.idle_armed = false;
                    if u.source_done() {
                        u.release();
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => {
                    u.forget_conn();
                    Poll::Ready(Some(Err(e)))
                }
                Poll::Ready(None) => {
                    u.release();
                    Poll::Ready(None)
                }
                Poll::Pending => {
                    // The timer is armed only when the upstream makes us wait, and re-armed
                    // (not re-allocated) for every later wait.
                    let deadline = tokio::time::Instant::now() + u.read_timeout;
                    let armed = u.idle_armed;
                    let sleep = u
                        .idle
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                    if !armed {
                        sleep.as_mut().reset(deadline);
                        u.idle_armed = true;
                    }
                    ready!(sleep.as_mut().poll(cx));
                    u.forget_conn();
                    Poll::Ready(Some(Err(Box::new(ReadTimeout))))
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Upstream(u) => u.source_done(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ProxyBody::Full(None) => SizeHint::with_exact(0),
            ProxyBody::Upstream(u) => match &u.source {
                Source::Hyper { inner, .. } => inner.size_hint(),
                Source::Lean { body, .. } => body.size_hint(),
                Source::Multiplexed(inner) => inner.size_hint(),
            },
        }
    }
}

/// The client's body on its way upstream (hyper's client path). It records when it has been
/// sent completely: a connection whose request body is still streaming (the upstream answered
/// early) must not go back to the pool, or the next request would queue behind the upload.
pub struct RequestBody {
    inner: RequestSource,
    sent: Arc<AtomicBool>,
    /// Set when reading the client's body failed (the client aborted or sent a malformed body):
    /// the upstream is not to blame for the request failing then. See [`ClientFailure`].
    client_failed: Arc<AtomicU8>,
}

/// Why reading the client's body failed, as kept in [`RequestBody::client_failed_flag`].
pub struct ClientFailure;

impl ClientFailure {
    pub const NONE: u8 = 0;
    /// Broken off or malformed.
    pub const BROKEN: u8 = 1;
    /// Over `--client-max-body-size`.
    pub const TOO_LARGE: u8 = 2;
}

enum RequestSource {
    /// The client's body, streamed as it arrives.
    Stream(Incoming),
    /// The first part of the client's body, read already (`None` once sent), then the rest as
    /// it arrives.
    Prefixed(Option<Bytes>, Incoming),
    /// A body read whole beforehand (`None` once handed to the connection).
    Full(Option<Bytes>),
}

impl RequestBody {
    pub fn new(inner: Incoming) -> Self {
        let sent = Arc::new(AtomicBool::new(inner.is_end_stream()));
        RequestBody {
            inner: RequestSource::Stream(inner),
            sent,
            client_failed: Arc::default(),
        }
    }

    /// A body held in memory.
    pub fn full(bytes: Bytes) -> Self {
        let sent = Arc::new(AtomicBool::new(bytes.is_empty()));
        RequestBody {
            inner: RequestSource::Full((!bytes.is_empty()).then_some(bytes)),
            sent,
            client_failed: Arc::default(),
        }
    }

    /// A flag that turns true once the whole body has been handed to the connection.
    pub fn sent_flag(&self) -> Arc<AtomicBool> {
        self.sent.clone()
    }

    /// What was read of a body over the buffering limit, followed by the rest of it.
    pub fn prefixed(prefix: Bytes, rest: Incoming) -> Self {
        RequestBody {
            inner: RequestSource::Prefixed((!prefix.is_empty()).then_some(prefix), rest),
            sent: Arc::default(),
            client_failed: Arc::default(),
        }
    }

    /// Set (to a [`ClientFailure`] code) if reading the client's body failed.
    pub fn client_failed_flag(&self) -> Arc<AtomicU8> {
        self.client_failed.clone()
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let inner = match &mut this.inner {
            RequestSource::Stream(inner) => inner,
            RequestSource::Prefixed(prefix, inner) => {
                if let Some(bytes) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
                inner
            }
            RequestSource::Full(bytes) => {
                this.sent.store(true, Ordering::Release);
                return Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b))));
            }
        };
        let polled = Pin::new(&mut *inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(e))) = &polled {
            let code = match super::limits::violation_in(e) {
                Some(super::limits::Violation::BodyTooLarge) => ClientFailure::TOO_LARGE,
                _ => ClientFailure::BROKEN,
            };
            this.client_failed.store(code, Ordering::Release);
        } else if matches!(polled, Poll::Ready(None)) || inner.is_end_stream() {
            this.sent.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            RequestSource::Stream(inner) => inner.is_end_stream(),
            RequestSource::Prefixed(prefix, inner) => prefix.is_none() && inner.is_end_stream(),
            RequestSource::Full(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            RequestSource::Stream(inner) => inner.size_hint(),
            RequestSource::Prefixed(prefix, inner) => {
                let read = prefix.as_ref().map_or(0, |b| b.len() as u64);
                let rest = inner.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + read);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + read);
                }
                hint
            }
            RequestSource::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

/// Why a client's body could not be read into memory.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    /// The body is (or announced itself as) larger than the limit.
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// The client paused longer than the idle timeout between two reads.
    #[error("request body not received in time")]
    Timeout,
    /// The body broke off or was malformed (bad chunked encoding, connection closed early).
    #[error("malformed or incomplete request body")]
    Malformed(#[source] BoxError),
}

impl From<BufferError> for super::error::ProxyError {
    fn from(e: BufferError) -> Self {
        match e {
            BufferError::TooLarge { .. } => super::error::ProxyError::BodyTooLarge,
            BufferError::Timeout => super::error::ProxyError::BodyTimeout,
            // The framing guard found the body over the node's limit, or malformed.
            BufferError::Malformed(e) => match super::limits::violation_in(e.as_ref()) {
                Some(v) => super::error::ProxyError::Refused(v),
                None => super::error::ProxyError::BadBody,
            },
        }
    }
}

/// Read a client's body whole, at most `limit` bytes, allowing `idle` between two reads.
///
/// A body whose declared length is over the limit is refused before any of it is read (so a
/// client waiting on `Expect: 100-continue` is told at once); a chunked one as soon as it
/// crosses the limit. Trailers are dropped.
pub async fn read_limited<B>(body: B, limit: usize, idle: Duration) -> Result<Bytes, BufferError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    match read_up_to(body, limit, idle).await? {
        Buffered::Whole(bytes) => Ok(bytes),
        Buffered::Over(..) => Err(BufferError::TooLarge { limit }),
    }
}

/// What [`read_up_to`] read.
pub enum Buffered<B> {
    /// The whole body (trailers dropped).
    Whole(Bytes),
    /// A body over the limit: what was read of it (nothing when its declared length said so at
    /// once; otherwise up to the frame that crossed the limit), and the rest, unread.
    Over(Bytes, B),
}

/// Read a client's body into memory while it fits in `limit` bytes, allowing `idle` between two
/// reads.
pub async fn read_up_to<B>(
    mut body: B,
    limit: usize,
    idle: Duration,
) -> Result<Buffered<B>, BufferError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let declared = body.size_hint().lower();
    if declared > limit as u64 {
        return Ok(Buffered::Over(Bytes::new(), body));
    }
    // The declared length (bounded above) sizes the buffer once; a chunked body grows it.
    let mut buf = BytesMut::with_capacity(declared as usize);
    while !body.is_end_stream() {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(BufferError::Timeout),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(BufferError::Malformed(e.into())),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                buf.extend_from_slice(&data);
                return Ok(Buffered::Over(buf.freeze(), body));
            }
            // The first frame of a body that fits in one is kept without a copy.
            if buf.is_empty() && body.is_end_stream() {
                return Ok(Buffered::Whole(data));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Buffered::Whole(buf.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream::{self, StreamExt};
    use http_body_util::{Full, StreamBody};

    type Frames = Vec<Result<Frame<Bytes>, BoxError>>;

    fn frames(chunks: &[&'static [u8]]) -> Frames {
        chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c))))
            .collect()
    }

    const IDLE: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn reads_bodies_within_the_limit() {
        let one = read_limited(Full::new(Bytes::from_static(b"hello")), 5, IDLE).await;
        assert_eq!(one.ok(), Some(Bytes::from_static(b"hello")));
        let body = StreamBody::new(stream::iter(frames(&[b"ab", b"", b"cd"])));
        let many = read_limited(body, 4, IDLE).await;
        assert_eq!(many.ok(), Some(Bytes::from_static(b"abcd")));
        let empty = read_limited(Full::new(Bytes::new()), 0, IDLE).await;
        assert_eq!(empty.ok(), Some(Bytes::new()));
    }

    #[tokio::test]
    async fn refuses_bodies_over_the_limit() {
        let declared = read_limited(Full::new(Bytes::from_static(b"hello")), 4, IDLE).await;
        assert!(matches!(declared, Err(BufferError::TooLarge { limit: 4 })));
        let body = StreamBody::new(stream::iter(frames(&[b"ab", b"cd", b"e"])));
        let streamed = read_limited(body, 4, IDLE).await;
        assert!(matches!(streamed, Err(BufferError::TooLarge { .. })));
    }

    #[tokio::test]
    async fn broken_and_stalled_bodies_are_errors() {
        let mut broken = frames(&[b"ab"]);
        broken.push(Err("connection reset".into()));
        let body = StreamBody::new(stream::iter(broken));
        let got = read_limited(body, 100, IDLE).await;
        assert!(matches!(got, Err(BufferError::Malformed(_))));

        let stalled = stream::iter(frames(&[b"ab"])).chain(stream::pending());
        let got = read_limited(StreamBody::new(stalled), 100, Duration::from_millis(20)).await;
        assert!(matches!(got, Err(BufferError::Timeout)));
    }
}
