//! Listeners and workers. The gateway runs one worker thread per core, each with its own
//! single-threaded runtime and its own `SO_REUSEPORT` listener on the proxy address, so the
//! kernel spreads connections and a connection's requests never change thread (which keeps the
//! upstream pool per worker and lock-free, as nginx does).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::health::ActiveChecker;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use super::client_ip::RealIpConfig;
use super::h1_guard::H1Guard;
use super::handler::{ConnState, Shared, handle};
use super::http2::{self as h2, Http2Settings, Sniffed};
use super::limits::{ClientLimits, ConnCount, ConnSlot};
use super::pool::PoolSettings;
use crate::snapshot::Snapshot;

/// Node settings of the proxy listener (flags / environment, not the declarative file).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub proxy_listen: SocketAddr,
    /// The TLS listener (`None`: off). Without certificates it refuses handshakes.
    pub proxy_tls_listen: Option<SocketAddr>,
    /// Time allowed for a client to complete the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Worker threads; 0 means one per available core.
    pub workers: usize,
    pub real_ip: RealIpConfig,
    pub pool: PoolSettings,
    /// Time allowed to receive the rest of a request head once its first byte arrived (408).
    pub header_read_timeout: Duration,
    /// Time allowed, after a response (or after connecting), for the next request head to
    /// arrive in full; an idle keep-alive connection is closed then.
    pub keepalive_timeout: Duration,
    /// Longest request line in bytes (414).
    pub max_request_line: usize,
    /// Largest request head in bytes (431).
    pub max_header_size: usize,
    /// Most header lines in a request head (431).
    pub max_headers: usize,
    /// Largest request body in bytes, 0 for no limit (413).
    pub client_max_body_size: u64,
    /// Most client connections open at once on the node, both listeners together (0: no
    /// limit); more are accepted and closed at once.
    pub max_connections: usize,
    /// On shutdown, how long open connections may take to finish their requests.
    pub drain_timeout: Duration,
    /// Largest request body read into memory for plugins that need it whole (413 above).
    pub request_buffer_limit: usize,
    /// Longest pause allowed between two reads of a body being read into memory (408).
    pub client_body_timeout: Duration,
    /// HTTP/2 from clients (ALPN `h2`, h2c with prior knowledge) and its limits.
    pub http2: Http2Settings,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            proxy_listen: SocketAddr::from(([0, 0, 0, 0], 8000)),
            proxy_tls_listen: None,
            tls_handshake_timeout: Duration::from_secs(10),
            workers: 0,
            real_ip: RealIpConfig::default(),
            pool: PoolSettings::default(),
            header_read_timeout: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(75),
            max_request_line: 8 << 10,
            max_header_size: 32 << 10,
            max_headers: 100,
            client_max_body_size: 100 << 20,
            max_connections: 16_384,
            drain_timeout: Duration::from_secs(10),
            request_buffer_limit: 8 << 20,
            client_body_timeout: Duration::from_secs(60),
            http2: Http2Settings::default(),
        }
    }
}

/// Read access to a running gateway's state, for other threads.
#[derive(Clone)]
pub struct GatewayHandle {
    shared: Arc<Shared>,
}

impl GatewayHandle {
    /// The configuration serving now.
    pub fn current(&self) -> Arc<Snapshot> {
        self.shared.snapshot.load_full()
    }

    /// Client connections accepted since the start.
    pub fn connections_accepted(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }
}

/// While draining, how long an idle keep-alive connection stays open for a request already on
/// its way (at most half the drain timeout).
const DRAIN_LINGER: Duration = Duration::from_secs(1);

/// A running gateway.
pub struct Gateway {
    shared: Arc<Shared>,
    proxy_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    workers: Vec<std::thread::JoinHandle<()>>,
    /// Active health checks of the current configuration's upstreams, off the request path.
    checker: ActiveChecker,
}

/// The health of every upstream of a snapshot, for the active checker.
fn upstream_health(snapshot: &Snapshot) -> Vec<Arc<crate::health::UpstreamHealth>> {
    snapshot
        .upstreams
        .iter()
        .map(|u| u.health.clone())
        .collect()
}

fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(16_384)?;
    Ok(socket.into())
}

/// Refuse to share a port with another process: with `SO_REUSEPORT` alone, a second gateway
/// started on the same port would silently receive half of the connections. A probe bound
/// without the option fails if anyone holds the port.
fn ensure_port_free(addr: SocketAddr) -> std::io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into())
}

impl Gateway {
    /// Bind the listeners and start the workers.
    pub fn start(config: ServerConfig, snapshot: Snapshot) -> std::io::Result<Gateway> {
        let workers = match config.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        ensure_port_free(config.proxy_listen)?;
        let first = bind_reuseport(config.proxy_listen)?;
        let proxy_addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..workers {
            listeners.push(bind_reuseport(proxy_addr)?);
        }
        // The TLS listener starts even without certificates (handshakes are refused until a
        // reload brings one), so that adding the first certificate needs no restart.
        if config.proxy_tls_listen.is_some() && snapshot.certificates.is_empty() {
            tracing::info!(
                "no certificates yet: TLS handshakes are refused until a configuration adds one"
            );
        }
        let mut tls_listeners = Vec::new();
        let mut tls_addr = None;
        if let Some(addr) = config.proxy_tls_listen {
            ensure_port_free(addr)?;
            let first = bind_reuseport(addr)?;
            let bound = first.local_addr()?;
            tls_addr = Some(bound);
            tls_listeners.push(first);
            for _ in 1..workers {
                tls_listeners.push(bind_reuseport(bound)?);
            }
        }
        let checker = ActiveChecker::start(upstream_health(&snapshot)).map_err(|e| match e {
            crate::health::StartError::Thread(io) => io,
        })?;
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            real_ip: config.real_ip,
            pool: Arc::new(config.pool),
            connections: AtomicU64::new(0),
            request_buffer_limit: config.request_buffer_limit,
            client_body_timeout: config.client_body_timeout,
            limits: ClientLimits {
                max_request_line: config.max_request_line,
                max_head_size: config.max_header_size,
                max_headers: config.max_headers,
                max_body_size: match config.client_max_body_size {
                    0 => u64::MAX,
                    n => n,
                },
                header_timeout: config.header_read_timeout,
                max_connections: config.max_connections,
            },
            open_connections: Arc::new(ConnCount::default()),
            draining: std::sync::atomic::AtomicBool::new(false),
            drain_linger: DRAIN_LINGER.min(config.drain_timeout / 2),
        });
        let acceptor = match tls_addr {
            Some(_) => Some(TlsAcceptor::from(
                crate::tls::server_config(shared.clone(), config.http2.enabled)
                    .map_err(std::io::Error::other)?,
            )),
            None => None,
        };
        let (shutdown, _) = watch::channel(false);
        let mut handles = Vec::with_capacity(workers);
        let mut tls_listeners = tls_listeners.into_iter();
        for (i, listener) in listeners.into_iter().enumerate() {
            let shared = shared.clone();
            let tls = tls_listeners
                .next()
                .zip(acceptor.clone())
                .map(|(l, a)| (l, a, config.tls_handshake_timeout));
            let rx = shutdown.subscribe();
            let header_timeout = config.keepalive_timeout;
            let drain_timeout = config.drain_timeout;
            let http2 = config.http2.clone();
            let handle =
                crate::runtime::spawn(format!("gatehouse-worker-{i}"), move || async move {
                    let plain = accept_loop(
                        listener,
                        None,
                        shared.clone(),
                        rx.clone(),
                        header_timeout,
                        drain_timeout,
                        http2.clone(),
                    );
                    let secure = async move {
                        if let Some((listener, acceptor, handshake_timeout)) = tls {
                            accept_loop(
                                listener,
                                Some((acceptor, handshake_timeout)),
                                shared,
                                rx,
                                header_timeout,
                                drain_timeout,
                                http2,
                            )
                            .await;
                        }
                    };
                    tokio::join!(plain, secure);
                })?;
            handles.push(handle);
        }
        Ok(Gateway {
            shared,
            proxy_addr,
            tls_addr,
            shutdown,
            workers: handles,
            checker,
        })
    }

    /// The address the proxy listens on (useful with port 0).
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_addr
    }

    /// The address the TLS listener listens on, when it started.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The configuration serving now.
    pub fn current(&self) -> Arc<Snapshot> {
        self.shared.snapshot.load_full()
    }

    /// A handle for reading the gateway's state from other threads (the Admin API).
    pub fn handle(&self) -> GatewayHandle {
        GatewayHandle {
            shared: self.shared.clone(),
        }
    }

    /// Replace the configuration; requests in flight finish on the one they started with.
    pub fn swap(&self, snapshot: Snapshot) {
        self.checker.update(upstream_health(&snapshot));
        self.shared.snapshot.store(Arc::new(snapshot));
    }

    /// Stop accepting, let requests in flight finish (within the drain timeout), stop the workers.
    pub fn shutdown(self) {
        self.shared.draining.store(true, Ordering::Relaxed);
        let _ = self.shutdown.send(true);
        for w in self.workers {
            let _ = w.join();
        }
        self.checker.stop();
    }
}

/// Serve HTTP/1.1 on an accepted connection until it closes or the gateway drains.
async fn serve<I>(
    io: I,
    conn: Arc<ConnState>,
    slot: ConnSlot,
    builder: &http1::Builder,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Strict framing and the client limits in front of hyper (see `h1_guard`).
    let io = H1Guard::new(io, &conn.shared.limits, conn.verdict.clone(), Some(slot));
    let linger = conn.shared.drain_linger;
    let svc = service_fn(move |req| {
        let conn = conn.clone();
        async move {
            let mut resp = handle(req, &conn).await;
            // Draining: this is the connection's last exchange; the client learns it from
            // the response instead of from a close racing its next request.
            if conn.shared.draining.load(Ordering::Relaxed)
                && resp.status() != http::StatusCode::SWITCHING_PROTOCOLS
            {
                resp.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    // With upgrades: a WebSocket handshake answered 101 hands the connection over to the
    // handler's bridge task (see `upgrade`).
    let served = builder
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    tokio::pin!(served);
    let result = tokio::select! {
        r = served.as_mut() => r,
        _ = stop.changed() => {
            // Draining. A busy client gets its next answer with `Connection: close` and the
            // connection ends by itself; one that stays idle for `linger` is closed (after
            // the exchange in flight, if any).
            match tokio::time::timeout(linger, served.as_mut()).await {
                Ok(r) => r,
                Err(_) => {
                    served.as_mut().graceful_shutdown();
                    served.await
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

/// Accept connections on one listener: plain HTTP, or TLS when `tls` gives the acceptor and
/// the handshake timeout.
async fn accept_loop(
    listener: std::net::TcpListener,
    tls: Option<(TlsAcceptor, Duration)>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    header_timeout: Duration,
    drain_timeout: Duration,
    http2: Http2Settings,
) {
    let connections = TaskTracker::new();
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot register listener");
            return;
        }
    };
    let mut builder = http1::Builder::new();
    // hyper's header timer runs from the moment it waits for a head until the guard hands it a
    // complete one: the keep-alive timeout. Its head limits stay as a backstop behind the
    // guard's, never tighter than them.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_headers(shared.limits.max_headers.max(100))
        .keep_alive(true);
    if shared.limits.max_head_size > 400 << 10 {
        builder.max_buf_size(shared.limits.max_head_size + (8 << 10));
    }
    let builder = Arc::new(builder);
    let h2_builder = Arc::new(h2::builder(&http2, connections.clone()));
    let h2c = http2.enabled;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Over the connection limit: closed at once (nothing is read or written).
                    let Some(slot) = shared.open_connections.acquire(shared.limits.max_connections) else {
                        tracing::debug!(peer = %peer, "connection limit reached: connection closed");
                        drop(stream);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let local = stream.local_addr().unwrap_or(peer);
                    let id = shared.connections.fetch_add(1, Ordering::Relaxed) + 1;
                    let conn = Arc::new(ConnState::new(shared.clone(), peer, local, id, tls.is_some(), connections.clone()));
                    let builder = builder.clone();
                    let h2_builder = h2_builder.clone();
                    let mut stop = shutdown.clone();
                    let tls = tls.clone();
                    connections.spawn(async move {
                        let Some((acceptor, handshake_timeout)) = tls else {
                            if !h2c {
                                serve(stream, conn, slot, &builder, stop).await;
                                return;
                            }
                            // A connection silent when the gateway drains is closed at once.
                            let sniffed = tokio::select! {
                                s = h2::sniff(&stream, header_timeout) => s,
                                _ = stop.changed() => return,
                            };
                            match sniffed {
                                Sniffed::Http1 => serve(stream, conn, slot, &builder, stop).await,
                                Sniffed::Http2 => {
                                    // The slot counts the connection until it ends.
                                    let _slot = slot;
                                    h2::serve(stream, conn, &h2_builder, stop).await
                                }
                                Sniffed::Nothing => {}
                            }
                            return;
                        };
                        let handshake = tokio::select! {
                            r = tokio::time::timeout(handshake_timeout, acceptor.accept(stream)) => r,
                            _ = stop.changed() => return,
                        };
                        match handshake {
                            Ok(Ok(stream)) if stream.get_ref().1.alpn_protocol() == Some(b"h2") => {
                                let _slot = slot;
                                h2::serve(stream, conn, &h2_builder, stop).await
                            }
                            Ok(Ok(stream)) => serve(stream, conn, slot, &builder, stop).await,
                            Ok(Err(e)) => tracing::debug!(peer = %peer, error = %e, "TLS handshake failed"),
                            Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out"),
                        }
                    });
                }
                Err(e) => {
                    // Out of descriptors or similar: back off briefly rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    // Stop accepting (the listener closes here), then let open connections finish what they
    // are doing, within the drain timeout.
    drop(listener);
    connections.close();
    let draining = connections.len();
    if tokio::time::timeout(drain_timeout, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = connections.len(),
            "drain timeout: closing connections still open"
        );
    } else if draining > 0 {
        tracing::debug!(connections = draining, "connections drained");
    }
}
