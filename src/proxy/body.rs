//! Body types of the data plane. Nothing here buffers: upstream bodies stream frame by frame.
//!
//! - [`ProxyBody`] is what the gateway sends to clients: a small in-memory body (errors, plugin
//!   answers) or the upstream's streaming body, which returns its keep-alive connection to the
//!   pool once it ends and enforces the service's `read_timeout` between two reads.
//! - [`RequestBody`] is what the gateway sends upstream: the client's streaming body, or a small
//!   in-memory one.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
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
        }
    }

    fn forget_conn(&mut self) {
        match &mut self.source {
            Source::Hyper { conn, .. } => *conn = None,
            Source::Lean { lease, .. } => *lease = None,
        }
    }

    fn poll_source(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.source {
            Source::Hyper { inner, .. } => Pin::new(inner).poll_frame(cx).map_err(Into::into),
            Source::Lean { body, .. } => Pin::new(body).poll_frame(cx).map_err(Into::into),
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
            },
        }
    }
}

/// The client's body on its way upstream (hyper's client path). It records when it has been
/// sent completely: a connection whose request body is still streaming (the upstream answered
/// early) must not go back to the pool, or the next request would queue behind the upload.
pub struct RequestBody {
    inner: Incoming,
    sent: Arc<AtomicBool>,
}

impl RequestBody {
    pub fn new(inner: Incoming) -> Self {
        let sent = Arc::new(AtomicBool::new(inner.is_end_stream()));
        RequestBody { inner, sent }
    }

    /// A flag that turns true once the whole body has been handed to the connection.
    pub fn sent_flag(&self) -> Arc<AtomicBool> {
        self.sent.clone()
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
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || this.inner.is_end_stream() {
            this.sent.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
