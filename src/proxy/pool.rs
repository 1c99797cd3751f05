//! Upstream keep-alive connection pool.
//!
//! Idle HTTP/1.1 connections are kept per target (`host:port`; for TLS connections, a key that
//! also names the TLS settings and server name, see `upstream_tls`) and per worker thread, as
//! nginx and Kong keep them per worker: a worker never takes a lock to find a connection.
//! Settings mirror Kong's `upstream_keepalive_pool_size` (idle connections kept per target),
//! `upstream_keepalive_max_requests` (requests per connection before it is closed) and
//! `upstream_keepalive_idle_timeout` (an idle connection older than this is closed).
//!
//! Two kinds of connection are pooled separately: hyper client connections, which carry
//! requests with a body, and the lean client's ([`H1Conn`]) for requests without one.
//! Checkout is LIFO (the most recently used connection is the warmest and the least likely to
//! have been closed by the upstream); a connection is only reused once it is known to be open.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use foldhash::HashMap;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::body::RequestBody;
use super::h1_client::H1Conn;
use super::stream::UpstreamStream;
use super::upstream_tls::{self, TlsDest};
use crate::snapshot::TargetAddr;

/// Pool limits (node settings, see `docs/configuration.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// Idle connections kept per target and worker; 0 disables keep-alive to upstreams.
    pub max_idle_per_target: usize,
    /// Requests sent on one connection before it is retired; 0 means unlimited.
    pub max_requests: u64,
    /// Idle connections older than this are closed (at the next use of their target's pool).
    pub idle_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_idle_per_target: 256,
            max_requests: 1_000,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// An idle connection of kind `C` waiting in the pool.
struct Idle<C> {
    conn: C,
    uses: u64,
    since: Instant,
}

/// Idle connections of one kind, per target key.
type IdleMap<C> = RefCell<HashMap<Arc<str>, VecDeque<Idle<C>>>>;

thread_local! {
    /// hyper connections (requests with a body).
    static IDLE: IdleMap<http1::SendRequest<RequestBody>> = RefCell::new(HashMap::default());
    /// Lean client connections (requests without a body).
    static IDLE_H1: IdleMap<H1Conn> = RefCell::new(HashMap::default());
}

/// File `conn` as idle under `key`, unless the settings say it must be retired.
fn put_idle<C>(map: &IdleMap<C>, key: &Arc<str>, conn: C, uses: u64, s: &PoolSettings) {
    if s.max_idle_per_target == 0 || (s.max_requests != 0 && uses >= s.max_requests) {
        return;
    }
    let idle = Idle {
        conn,
        uses,
        since: Instant::now(),
    };
    let mut pool = map.borrow_mut();
    let list = match pool.get_mut(&**key) {
        Some(list) => list,
        None => pool.entry(key.clone()).or_default(),
    };
    drop_expired(list, s.idle_timeout);
    if list.len() >= s.max_idle_per_target {
        list.pop_front();
    }
    list.push_back(idle);
}

/// Close idle connections past their idle timeout. The oldest sit at the front (checkout takes
/// from the back), so under steady traffic the surplus of an earlier burst is closed here
/// rather than held open forever.
fn drop_expired<C>(list: &mut VecDeque<Idle<C>>, idle_timeout: Duration) {
    while list
        .front()
        .is_some_and(|i| i.since.elapsed() > idle_timeout)
    {
        list.pop_front();
    }
}

/// The most recently used idle connection under `key` that is young enough and passes `usable`.
fn take_idle<C>(
    map: &IdleMap<C>,
    key: &str,
    s: &PoolSettings,
    mut usable: impl FnMut(&mut C) -> bool,
) -> Option<Idle<C>> {
    let mut pool = map.borrow_mut();
    let list = pool.get_mut(key)?;
    drop_expired(list, s.idle_timeout);
    while let Some(mut idle) = list.pop_back() {
        if idle.since.elapsed() <= s.idle_timeout && usable(&mut idle.conn) {
            return Some(idle);
        }
    }
    None
}

/// A hyper connection checked out of the pool (or freshly opened) for one request.
pub struct PooledConn {
    pub sender: http1::SendRequest<RequestBody>,
    /// Set once the request body of the current exchange has been sent completely.
    pub request_sent: Option<Arc<AtomicBool>>,
    key: Arc<str>,
    uses: u64,
    settings: Arc<PoolSettings>,
    /// True when the connection came from the pool rather than a fresh connect.
    pub reused: bool,
}

impl PooledConn {
    /// Give the connection back for reuse (called when the response body has ended).
    pub fn release(self) {
        let request_pending = self
            .request_sent
            .as_ref()
            .is_some_and(|f| !f.load(Ordering::Acquire));
        if request_pending || self.sender.is_closed() {
            return;
        }
        IDLE.with(|map| put_idle(map, &self.key, self.sender, self.uses, &self.settings));
    }
}

/// A lean-client connection checked out for one request without a body.
pub struct H1Pooled {
    pub conn: H1Conn,
    pub lease: Lease,
    /// True when the connection came from the pool rather than a fresh connect.
    pub reused: bool,
}

/// What returning a lean-client connection to the pool needs.
pub struct Lease {
    key: Arc<str>,
    uses: u64,
    settings: Arc<PoolSettings>,
}

impl Lease {
    /// Give `conn` back for reuse (its response was read completely and it stays open); a
    /// connection that has carried its share of requests is retired instead.
    pub fn release(self, conn: H1Conn) {
        let s = &self.settings;
        if s.max_requests != 0 && self.uses >= s.max_requests {
            conn.retire();
            return;
        }
        IDLE_H1.with(|map| put_idle(map, &self.key, conn, self.uses, s));
    }
}

/// Take an idle lean-client connection to `target` (over TLS to `tls` when given; when `reuse`
/// allows), or open one within `timeout`.
pub async fn checkout_h1(
    reuse: bool,
    target: &TargetAddr,
    tls: Option<&TlsDest<'_>>,
    timeout: Duration,
    settings: &Arc<PoolSettings>,
) -> Result<H1Pooled, ConnectError> {
    let key = tls.map_or(&target.key, |d| &d.key);
    let idle = if reuse {
        IDLE_H1.with(|map| take_idle(map, key, settings, H1Conn::is_reusable))
    } else {
        None
    };
    if let Some(idle) = idle {
        let lease = Lease {
            key: key.clone(),
            uses: idle.uses + 1,
            settings: settings.clone(),
        };
        return Ok(H1Pooled {
            conn: idle.conn,
            lease,
            reused: true,
        });
    }
    let stream = open(target, tls, timeout).await?;
    let lease = Lease {
        key: key.clone(),
        uses: 1,
        settings: settings.clone(),
    };
    Ok(H1Pooled {
        conn: H1Conn::new(stream),
        lease,
        reused: false,
    })
}

/// Take a ready idle hyper connection to `key`, discarding stale or closed ones.
pub async fn checkout(key: &Arc<str>, settings: &Arc<PoolSettings>) -> Option<PooledConn> {
    loop {
        let idle = IDLE.with(|map| take_idle(map, key, settings, |s| !s.is_closed()))?;
        let mut sender = idle.conn;
        if sender.ready().await.is_ok() {
            return Some(PooledConn {
                sender,
                request_sent: None,
                key: key.clone(),
                uses: idle.uses + 1,
                settings: settings.clone(),
                reused: true,
            });
        }
    }
}

/// Why a new upstream connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect timed out")]
    Timeout,
    #[error("connect failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP handshake failed: {0}")]
    Handshake(#[from] hyper::Error),
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
}

impl ConnectError {
    /// The short reason of a failed TLS handshake (see [`upstream_tls::failure`]).
    pub fn tls_failure(&self) -> Option<&'static str> {
        match self {
            ConnectError::Tls(e) => {
                Some(upstream_tls::failure(e).unwrap_or("the handshake failed"))
            }
            _ => None,
        }
    }
}

/// Connect to `target` (and shake hands over TLS with `tls`), all within `timeout`.
pub(super) async fn open(
    target: &TargetAddr,
    tls: Option<&TlsDest<'_>>,
    timeout: Duration,
) -> Result<UpstreamStream, ConnectError> {
    let connect = async {
        let stream = TcpStream::connect((target.host.as_str(), target.port)).await?;
        stream.set_nodelay(true)?;
        match tls {
            None => Ok(UpstreamStream::Plain(stream)),
            Some(d) => match d.tls.handshake(d.name.clone(), stream).await {
                Ok(s) => Ok(UpstreamStream::Tls(Box::new(s))),
                Err(e) => Err(ConnectError::Tls(e)),
            },
        }
    };
    tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| ConnectError::Timeout)?
}

/// Open a new hyper connection to `target` (over TLS to `tls` when given) within `timeout`.
pub async fn connect(
    target: &TargetAddr,
    tls: Option<&TlsDest<'_>>,
    timeout: Duration,
    settings: &Arc<PoolSettings>,
) -> Result<PooledConn, ConnectError> {
    let stream = open(target, tls, timeout).await?;
    let (sender, conn) = http1::Builder::new()
        .handshake::<_, RequestBody>(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream connection closed with an error");
        }
    });
    Ok(PooledConn {
        sender,
        request_sent: None,
        key: tls.map_or(&target.key, |d| &d.key).clone(),
        uses: 1,
        settings: settings.clone(),
        reused: false,
    })
}

/// Idle connections currently pooled by this thread for `key` (for tests and diagnostics).
pub fn idle_count(key: &str) -> usize {
    fn count<C>(map: &IdleMap<C>, key: &str) -> usize {
        map.borrow().get(key).map_or(0, VecDeque::len)
    }
    IDLE.with(|m| count(m, key)) + IDLE_H1.with(|m| count(m, key))
}
