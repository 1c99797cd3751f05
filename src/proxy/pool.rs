//! Upstream keep-alive connection pool.
//!
//! Idle HTTP/1.1 connections are kept per target (`host:port`) and per worker thread, as
//! nginx and Kong keep them per worker: a worker never takes a lock to find a connection.
//! Settings mirror Kong's `upstream_keepalive_pool_size` (idle connections kept per target),
//! `upstream_keepalive_max_requests` (requests per connection before it is closed) and
//! `upstream_keepalive_idle_timeout` (an idle connection older than this is closed).
//!
//! Checkout is LIFO (the most recently used connection is the warmest and the least likely to
//! have been closed by the upstream); a connection is only reused after hyper reports it ready.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::HashMap;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::body::RequestBody;

/// Pool limits (node settings, see `docs/configuration.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// Idle connections kept per target and worker; 0 disables keep-alive to upstreams.
    pub max_idle_per_target: usize,
    /// Requests sent on one connection before it is retired; 0 means unlimited.
    pub max_requests: u64,
    /// Idle connections older than this are closed.
    pub idle_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_idle_per_target: 256,
            max_requests: 10_000,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// A connection checked out of the pool (or freshly opened) for one request.
pub struct PooledConn {
    pub sender: http1::SendRequest<RequestBody>,
    key: Arc<str>,
    uses: u64,
    settings: Arc<PoolSettings>,
    /// True when the connection came from the pool rather than a fresh connect.
    pub reused: bool,
}

struct Idle {
    sender: http1::SendRequest<RequestBody>,
    uses: u64,
    since: Instant,
}

thread_local! {
    static IDLE: RefCell<HashMap<Arc<str>, VecDeque<Idle>>> = RefCell::new(HashMap::default());
}

impl PooledConn {
    /// Give the connection back for reuse (called when the response body has ended).
    pub fn release(self) {
        let s = &self.settings;
        if s.max_idle_per_target == 0
            || (s.max_requests != 0 && self.uses >= s.max_requests)
            || self.sender.is_closed()
        {
            return;
        }
        let idle = Idle {
            sender: self.sender,
            uses: self.uses,
            since: Instant::now(),
        };
        IDLE.with(|pool| {
            let mut pool = pool.borrow_mut();
            let list = match pool.get_mut(&*self.key) {
                Some(list) => list,
                None => pool.entry(self.key.clone()).or_default(),
            };
            if list.len() >= s.max_idle_per_target {
                list.pop_front();
            }
            list.push_back(idle);
        });
    }
}

/// Take a ready idle connection to `key`, discarding stale or closed ones.
pub async fn checkout(key: &Arc<str>, settings: &Arc<PoolSettings>) -> Option<PooledConn> {
    loop {
        let idle = IDLE.with(|pool| {
            let mut pool = pool.borrow_mut();
            let list = pool.get_mut(&**key)?;
            while let Some(idle) = list.pop_back() {
                if idle.since.elapsed() <= settings.idle_timeout && !idle.sender.is_closed() {
                    return Some(idle);
                }
            }
            None
        })?;
        let mut sender = idle.sender;
        if sender.ready().await.is_ok() {
            return Some(PooledConn {
                sender,
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
}

/// Open a new connection to `host:port` within `timeout`.
pub async fn connect(
    key: &Arc<str>,
    host: &str,
    port: u16,
    timeout: Duration,
    settings: &Arc<PoolSettings>,
) -> Result<PooledConn, ConnectError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect((host, port)))
        .await
        .map_err(|_| ConnectError::Timeout)??;
    stream.set_nodelay(true)?;
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
        key: key.clone(),
        uses: 1,
        settings: settings.clone(),
        reused: false,
    })
}

/// Idle connections currently pooled by this thread for `key` (for tests and diagnostics).
pub fn idle_count(key: &str) -> usize {
    IDLE.with(|pool| pool.borrow().get(key).map_or(0, VecDeque::len))
}
