//! One request's journey: normalise → route → (read the body, on routes whose plugins need it)
//! → request-phase plugins → upstream (with retries on connect failure) → response-phase
//! plugins → stream back. WebSocket handshakes take the same road up to the upstream, then
//! [`super::upgrade`]. See `docs/architecture.md`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use tokio_util::task::TaskTracker;

use super::balance::{Attempts, NewCookie, request_hash};
use super::body::{
    Buffered, ClientFailure, ProxyBody, RequestBody, UpstreamBody, read_limited, read_up_to,
};
use super::breaker::Refused;
use super::client_ip::{RealIpConfig, client_ip};
use super::error::{Blame, ProxyError};
use super::forward::{ClientSide, remove_hop_by_hop, set_forwarded_headers};
use super::h1_client::H1Error;
use super::h1_guard::Verdict;
use super::limits::{ClientLimits, ConnCount};
use super::path::{normalize_path, upstream_path};
use super::pool::{self, H1Pooled, PoolSettings, PooledConn};
use super::upgrade::{self, Handshake};
use super::{grpc, h2_client, upstream_tls};
use crate::health::Outcome;
use crate::plugins::{Chain, Flow, Protocol, RequestCtx, consumer_chain};
use crate::router::{RequestView, RouteMatch};
use crate::snapshot::{ServiceRt, ServiceTarget, Snapshot, TargetAddr};

/// State shared by every connection of a running gateway.
pub struct Shared {
    /// The current configuration; replaced as a whole on reload.
    pub snapshot: ArcSwap<Snapshot>,
    pub real_ip: RealIpConfig,
    pub pool: Arc<PoolSettings>,
    pub connections: AtomicU64,
    /// Bounds on bodies read whole for plugins: size, and pause between two reads.
    pub request_buffer_limit: usize,
    pub client_body_timeout: Duration,
    /// Limits on what clients send (enforced by `h1_guard` on HTTP/1 connections).
    pub limits: ClientLimits,
    /// Client connections open on the node (bounded by `limits.max_connections`).
    pub open_connections: Arc<ConnCount>,
    /// Set when the gateway starts draining: HTTP/1 responses then carry `Connection: close`,
    /// so that busy keep-alive clients stop sending on connections about to close.
    pub draining: std::sync::atomic::AtomicBool,
    /// While draining, how long an idle HTTP/1 connection is kept for a request its client
    /// may be sending already (then it is closed).
    pub drain_linger: Duration,
}

/// Per-connection facts.
pub struct ConnState {
    pub shared: Arc<Shared>,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// `peer.ip()` and `local.port()` as header values, computed once per connection.
    pub peer_ip_value: HeaderValue,
    pub local_port_value: HeaderValue,
    pub id: u64,
    pub requests: AtomicU64,
    /// Whether the connection came through the TLS listener (the request's scheme is `https`).
    pub tls: bool,
    /// The listener's connection tasks: upgraded (WebSocket) connections are bridged on tasks
    /// tracked here, so that a graceful shutdown waits for them too.
    pub tasks: TaskTracker,
    /// The request the framing guard refused, if any (answered at its turn).
    pub verdict: Arc<Verdict>,
}

impl ConnState {
    pub fn new(
        shared: Arc<Shared>,
        peer: SocketAddr,
        local: SocketAddr,
        id: u64,
        tls: bool,
        tasks: TaskTracker,
    ) -> ConnState {
        ConnState {
            peer_ip_value: HeaderValue::from_str(&peer.ip().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            local_port_value: HeaderValue::from(local.port()),
            shared,
            peer,
            local,
            id,
            requests: AtomicU64::new(0),
            tls,
            tasks,
            verdict: Arc::default(),
        }
    }
}

/// Handle one request from a client connection. Never fails: every error becomes a response.
pub async fn handle(mut req: Request<Incoming>, conn: &ConnState) -> Response<ProxyBody> {
    let seq = conn.requests.fetch_add(1, Ordering::Relaxed) + 1;
    // The stand-in for a request the framing guard refused: its answer, and nothing else.
    if let Some(v) = conn.verdict.for_request(seq) {
        return ProxyError::Refused(v).into_response();
    }
    let shared = &*conn.shared;
    let snap = shared.snapshot.load();
    // A WebSocket handshake: hyper's handle on the connection it will hand over after a 101,
    // taken before the request is taken apart.
    let on_upgrade = upgrade::is_websocket(req.method(), req.version(), req.headers())
        .then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let peer_ip = conn.peer.ip();
    let peer_trusted =
        !shared.real_ip.trusted.is_empty() && shared.real_ip.trusted.contains(peer_ip);
    let mut ctx = RequestCtx::new(
        if peer_trusted {
            client_ip(peer_ip, &parts.headers, &shared.real_ip)
        } else {
            peer_ip
        },
        conn.peer,
        conn.local,
        conn.id,
        seq,
    );
    ctx.peer_trusted = peer_trusted;
    ctx.protocol = Protocol::of(conn.tls, false);

    // HTTP/1.1 requires exactly one Host (RFC 9112 §3.2); two could route by one and reach the
    // upstream with the other.
    let hosts = parts.headers.get_all(header::HOST).iter().count();
    if hosts > 1 || (hosts == 0 && parts.version == http::Version::HTTP_11) {
        return Box::pin(respond_unrouted(
            &snap.global_chain,
            &mut ctx,
            &mut parts,
            ProxyError::BadHost,
        ))
        .await;
    }

    // Route on the normalised path; remember what the upstream request needs from it, so that
    // the borrow of the URI ends before plugins get the request head.
    let routed = {
        let path = match normalize_path(parts.uri.path()) {
            Ok(p) => p,
            Err(e) => {
                return Box::pin(respond_unrouted(
                    &snap.global_chain,
                    &mut ctx,
                    &mut parts,
                    ProxyError::BadPath(e),
                ))
                .await;
            }
        };
        let host = parts.headers.get(header::HOST);
        let view = RequestView {
            method: &parts.method,
            host: host.and_then(|h| h.to_str().ok()).unwrap_or(""),
            path: &path,
            query: parts.uri.query(),
            headers: &parts.headers,
            tls: conn.tls,
        };
        match snap.router.find(&view) {
            RouteMatch::Matched(m) => {
                let route = &snap.routes[m.route];
                let service = route.service.and_then(|s| snap.services.get(s));
                let upstream = upstream_path(
                    service.and_then(|s| s.path.as_deref()),
                    &path,
                    m.matched_path_len,
                    route.strip_path,
                    route.path_handling,
                );
                // Joined with the query after plugins ran: they may edit the query.
                let upstream = (upstream != parts.uri.path()).then(|| upstream.into_owned());
                let fwd_path = HeaderValue::from_str(&path).ok();
                Ok((m.route, upstream, fwd_path, m.captures))
            }
            RouteMatch::MethodNotAllowed { allow } => Err(ProxyError::MethodNotAllowed(allow)),
            RouteMatch::NotFound => Err(ProxyError::NoRoute),
        }
    };
    let (route_idx, upstream_path, fwd_path, captures) = match routed {
        Ok(r) => r,
        Err(e) => {
            return Box::pin(respond_unrouted(
                &snap.global_chain,
                &mut ctx,
                &mut parts,
                e,
            ))
            .await;
        }
    };
    let route = &snap.routes[route_idx];
    ctx.route = Some(route_idx);
    ctx.protocol = Protocol::of(conn.tls, route.grpc);
    ctx.service = route.service;
    ctx.path = fwd_path.clone();

    if route.grpc {
        if let Some(resp) = grpc::route_mismatch(route, parts.version, &parts.headers, conn.tls) {
            return finish(&route.chain, &mut ctx, resp);
        }
    } else if !route.allows_http && !conn.tls {
        let resp = https_required(route.https_redirect, &parts);
        return finish(&route.chain, &mut ctx, resp);
    }

    // A plugin on this route needs the whole body: read it now, bounded, so the request phase
    // sees it and the upstream gets the same bytes. Other routes stream it untouched.
    let streamed = if !route.needs_request_body {
        Some(body)
    } else {
        let bytes = if http_body::Body::is_end_stream(&body) {
            Bytes::new()
        } else {
            match Box::pin(read_limited(
                body,
                shared.request_buffer_limit,
                shared.client_body_timeout,
            ))
            .await
            {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::debug!(route = route_idx, error = %e, "request body not read");
                    return finish(&route.chain, &mut ctx, ProxyError::from(e).into_response());
                }
            }
        };
        ctx.request_body = Some(bytes);
        None
    };

    // Hop-by-hop headers go before plugins run, so that a client's `Connection` list cannot
    // remove headers a plugin adds (a correlation id, say).
    remove_hop_by_hop(&mut parts.headers);
    if !route.chain.is_empty() {
        // Room for what plugins add (an authentication plugin sets five or six headers) and for
        // the forwarding headers below, in one allocation instead of a growth per step.
        parts.headers.reserve(16);
    }
    // Plugin futures (an authorization call, a key-set fetch) are large and rarely awaited for
    // long: boxed, they do not make every request's future, moved as a whole, larger.
    let consumer_chain = if route.chain.is_empty() {
        None
    } else {
        match Box::pin(run_request_phase(&snap, route_idx, &mut ctx, &mut parts)).await {
            Ok(c) => c,
            Err((chain, resp)) => return finish(&chain, &mut ctx, resp),
        }
    };
    let chain = consumer_chain.as_ref().unwrap_or(&route.chain);
    let Some(service) = route.service.and_then(|s| snap.services.get(s)) else {
        return finish(chain, &mut ctx, ProxyError::NoService.into_response());
    };
    let read = match streamed {
        Some(b) if http_body::Body::is_end_stream(&b) => None,
        // `request_buffering`: read the body before the first upstream byte (after the request
        // phase, so a refused client is not read at all), so that a body that breaks off or is
        // malformed reaches no upstream. One over the limit streams on after what was read.
        Some(b) if route.request_buffering => match Box::pin(read_up_to(
            b,
            shared.request_buffer_limit,
            shared.client_body_timeout,
        ))
        .await
        {
            Ok(Buffered::Whole(bytes)) => Some(Ok(bytes)),
            Ok(Buffered::Over(prefix, rest)) => Some(Err(RequestBody::prefixed(prefix, rest))),
            Err(e) => {
                tracing::debug!(route = route_idx, error = %e, "request body not read");
                return finish(chain, &mut ctx, ProxyError::from(e).into_response());
            }
        },
        Some(b) => Some(Err(RequestBody::new(b))),
        None => Some(Ok(ctx.request_body.clone().unwrap_or_default())),
    };
    let upstream_body = match read {
        None => None,
        Some(Err(streamed)) => Some(streamed),
        Some(Ok(bytes)) => {
            // A read body goes upstream as the request phase left it, with its own length (the
            // client's framing, chunked or not, went with the hop-by-hop headers).
            if !bytes.is_empty() || parts.headers.contains_key(header::CONTENT_LENGTH) {
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            }
            (!bytes.is_empty()).then(|| RequestBody::full(bytes))
        }
    };

    // The upstream request head.
    let client_host = parts.headers.get(header::HOST).cloned();
    if let Some(path) = upstream_path {
        match join_query(path, parts.uri.query()) {
            Ok(uri) => parts.uri = uri,
            Err(e) => return finish(chain, &mut ctx, e.into_response()),
        }
    } else if parts.uri.scheme().is_some() {
        // absolute-form from the client: forward origin-form
        match join_query(parts.uri.path().to_owned(), parts.uri.query()) {
            Ok(uri) => parts.uri = uri,
            Err(e) => return finish(chain, &mut ctx, e.into_response()),
        }
    }
    parts.headers.remove(header::EXPECT);
    // Room for the forwarding headers and Host at once, rather than growing step by step.
    parts.headers.reserve(8);
    set_forwarded_headers(
        &mut parts.headers,
        ClientSide {
            peer_ip: &conn.peer_ip_value,
            client_ip: (ctx.client_ip != peer_ip)
                .then(|| HeaderValue::from_str(&ctx.client_ip.to_string()).ok())
                .flatten(),
            peer_trusted,
            scheme: if conn.tls { "https" } else { "http" },
            local_port: &conn.local_port_value,
            host: client_host.as_ref(),
            path: fwd_path,
        },
    );
    for plugin in chain.iter_for(ctx.protocol) {
        plugin.on_upstream_request(&mut ctx, &mut parts);
    }

    // `preserve_host` keeps the client's Host; otherwise the target's is set per attempt.
    let set_host = !(route.preserve_host && client_host.is_some());
    let upstream = match &service.target {
        ServiceTarget::Upstream(u) => match snap.upstreams.get(*u) {
            Some(up) => Some(up),
            None => return finish(chain, &mut ctx, ProxyError::NoTargets.into_response()),
        },
        ServiceTarget::Direct(_) => None,
    };
    // Consistent hashing: the key comes from the request as the plugins left it.
    let (hash, new_cookie) = match upstream.and_then(|u| u.hash.as_ref()) {
        Some(policy) => request_hash(
            policy,
            &ctx,
            &parts.headers,
            parts.uri.query(),
            captures.as_deref(),
            &snap.consumers,
        ),
        None => (None, None),
    };
    // An open breaker or a full upstream answers at once, before any attempt.
    let admitted = match upstream.and_then(|u| u.breaker.as_ref()) {
        None => None,
        Some(breaker) => match breaker.admit() {
            Ok(a) => Some(a),
            Err(refused) => {
                let e = match refused {
                    Refused::Open => ProxyError::CircuitOpen,
                    Refused::Overloaded => ProxyError::Overloaded,
                };
                return finish(chain, &mut ctx, e.into_response());
            }
        },
    };
    service.retry_budget.request();
    let mut attempts = Attempts::new(service, upstream, hash);
    let mut switched = false;
    let sent = match (on_upgrade, upstream_body) {
        // Boxed: a large future that most requests never await would make every request's
        // future larger.
        (_, body) if service.http2 => {
            Box::pin(h2_client::send(
                &mut attempts,
                service,
                parts,
                body,
                set_host,
            ))
            .await
        }
        (Some(on_upgrade), None) => {
            upgrade::send_handshake(&mut attempts, service, parts, set_host, &shared.pool)
                .await
                .map(|answer| match answer {
                    Handshake::Switched { head, stream, rest } => {
                        switched = true;
                        upgrade::bridge(&conn.tasks, on_upgrade, stream, rest);
                        upgrade::switching_response(head)
                    }
                    Handshake::Refused(resp) => resp,
                })
        }
        (_, None) => send_lean(&mut attempts, service, parts, set_host, &shared.pool).await,
        (_, Some(body)) => {
            send_upstream(&mut attempts, service, parts, body, set_host, &shared.pool)
                .await
                .map(|(resp, conn)| {
                    let (head, incoming) = resp.into_parts();
                    let body = UpstreamBody::new(incoming, conn, service.read_timeout);
                    Response::from_parts(head, ProxyBody::Upstream(body))
                })
        }
    };
    if let Some(admitted) = admitted {
        match &sent {
            Ok(resp) => admitted.done(resp.status().is_server_error()),
            Err(e) if e.blame() == Blame::Upstream => admitted.done(true),
            // The client's or the gateway's failure says nothing about the upstream.
            Err(_) => drop(admitted),
        }
    }
    match sent {
        Ok(mut resp) if switched => {
            // Headers made for the client already (see `upgrade::switching_response`).
            if let Some(NewCookie(cookie)) = new_cookie {
                resp.headers_mut().append(header::SET_COOKIE, cookie);
            }
            finish(chain, &mut ctx, resp)
        }
        Ok(resp) => {
            let (mut head, body) = resp.into_parts();
            // RFC 9112 §6.3: with Transfer-Encoding, Content-Length is wrong and must not be
            // forwarded (the body was decoded by its transfer coding).
            if head.headers.contains_key(header::TRANSFER_ENCODING) {
                head.headers.remove(header::CONTENT_LENGTH);
            }
            remove_hop_by_hop(&mut head.headers);
            // An intermediary speaks its own version (RFC 9110 §6.2); hyper adapts to 1.0 clients.
            head.version = http::Version::HTTP_11;
            if let Some(NewCookie(cookie)) = new_cookie {
                head.headers.append(header::SET_COOKIE, cookie);
            }
            finish(chain, &mut ctx, Response::from_parts(head, body))
        }
        Err(e) => {
            tracing::debug!(route = route_idx, blame = ?e.blame(), error = ?e, "request failed");
            finish(chain, &mut ctx, e.into_response())
        }
    }
}

/// The request phase of the route's chain. When an authentication plugin identifies a consumer
/// that has plugins of its own, the rest of the phase runs on the chain resolved for that
/// consumer (Kong's precedence), which is returned for the later phases. On an early answer,
/// returns the chain in force with the response.
async fn run_request_phase(
    snap: &Snapshot,
    route_idx: usize,
    ctx: &mut RequestCtx,
    parts: &mut http::request::Parts,
) -> Result<Option<Chain>, (Chain, Response<ProxyBody>)> {
    let route = &snap.routes[route_idx];
    let mut for_consumer: Option<Chain> = None;
    let mut next = 0;
    loop {
        let chain = for_consumer.as_ref().unwrap_or(&route.chain);
        let Some(plugin) = chain.0.get(next) else {
            return Ok(for_consumer);
        };
        if !plugin.protocols.contains(ctx.protocol) {
            next += 1;
            continue;
        }
        let consumer_before = ctx.consumer;
        if let Flow::Respond(resp) = plugin.on_request(ctx, parts).await {
            return Err((chain.clone(), *resp));
        }
        next += 1;
        if ctx.consumer != consumer_before {
            // The chain depends on the consumer when the new one or the previous one has
            // plugins of its own (an anonymous consumer replaced by a real one, say).
            let has_plugins = |c: Option<usize>| {
                c.and_then(|c| snap.consumers.get(c))
                    .is_some_and(|c| c.has_plugins)
            };
            if has_plugins(consumer_before) || has_plugins(ctx.consumer) {
                let ran = (plugin.priority(), plugin.name());
                for_consumer = ctx
                    .consumer
                    .filter(|&c| has_plugins(Some(c)))
                    .map(|c| consumer_chain(snap.id, &snap.plugins, route_idx, route.service, c));
                // Go on after the plugin that just ran, in the new chain's order.
                let chain = for_consumer.as_ref().unwrap_or(&route.chain);
                next = chain
                    .iter()
                    .position(|p| runs_after((p.priority(), p.name()), ran))
                    .unwrap_or(chain.0.len());
            }
        }
    }
}

/// Chains run by descending priority, then by name.
fn runs_after(plugin: (i32, &str), other: (i32, &str)) -> bool {
    plugin.0 < other.0 || (plugin.0 == other.0 && plugin.1 > other.1)
}

/// The upstream request target. Both parts were validated (the path by normalisation and the
/// service's path at config time), so only length can make it unrepresentable: 414.
fn join_query(mut path: String, query: Option<&str>) -> Result<Uri, ProxyError> {
    if let Some(q) = query {
        path.reserve_exact(q.len() + 1);
        path.push('?');
        path.push_str(q);
    }
    Uri::try_from(path).map_err(|_| ProxyError::UriTooLong)
}

fn https_required(status: StatusCode, parts: &http::request::Parts) -> Response<ProxyBody> {
    if status == StatusCode::UPGRADE_REQUIRED {
        return ProxyError::HttpsRequired.into_response();
    }
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let host = super::forward::strip_port(host);
    let target = format!(
        "https://{host}{}",
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut resp = crate::plugins::json_message(status, "Moved");
    if let Ok(v) = HeaderValue::from_str(&target) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// Unmatched or malformed requests: global plugins may still answer; otherwise the error.
async fn respond_unrouted(
    chain: &Chain,
    ctx: &mut RequestCtx,
    parts: &mut http::request::Parts,
    error: ProxyError,
) -> Response<ProxyBody> {
    // Malformed requests are answered at once; global plugins see only well-formed ones.
    if matches!(error, ProxyError::NoRoute | ProxyError::MethodNotAllowed(_)) {
        for plugin in chain.iter_for(ctx.protocol) {
            if let Flow::Respond(resp) = plugin.on_request(ctx, parts).await {
                return finish(chain, ctx, *resp);
            }
        }
    }
    finish(chain, ctx, error.into_response())
}

/// Response phases: `on_response` in ascending priority, then `on_log`.
fn finish(chain: &Chain, ctx: &mut RequestCtx, resp: Response<ProxyBody>) -> Response<ProxyBody> {
    if chain.is_empty() {
        return resp;
    }
    let (mut head, body) = resp.into_parts();
    for plugin in chain.iter_for(ctx.protocol).rev() {
        plugin.on_response(ctx, &mut head);
    }
    for plugin in chain.iter_for(ctx.protocol) {
        plugin.on_log(ctx, head.status);
    }
    Response::from_parts(head, body)
}

/// The `Host` for a request to `target`: the upstream's `host_header` if set, else the target's
/// (without port 443 for a service over TLS).
pub(super) fn host_for(
    target: &TargetAddr,
    upstream_host: Option<&HeaderValue>,
    service: &ServiceRt,
) -> HeaderValue {
    match upstream_host {
        Some(h) => h.clone(),
        None => service
            .tls
            .as_ref()
            .and_then(|_| upstream_tls::host_header(target))
            .unwrap_or_else(|| target.host_header.clone()),
    }
}

/// The error to answer when sending to the upstream failed because the client's body did
/// (broken off, malformed, or over the size limit), if it did.
pub(super) fn client_body_error(flag: &std::sync::atomic::AtomicU8) -> Option<ProxyError> {
    match flag.load(std::sync::atomic::Ordering::Acquire) {
        ClientFailure::NONE => None,
        ClientFailure::TOO_LARGE => Some(ProxyError::BodyTooLarge),
        _ => Some(ProxyError::BadBody),
    }
}

/// A connect to `target` failed: recorded against it; `Ok` when another target may be tried,
/// otherwise the error to answer (a TLS failure names itself).
pub(super) fn connect_failed(
    attempts: &mut Attempts<'_>,
    target: &TargetAddr,
    e: &pool::ConnectError,
) -> Result<(), ProxyError> {
    let timed_out = matches!(e, pool::ConnectError::Timeout);
    attempts
        .connect_failed(target, e, timed_out)
        .map_err(|otherwise| match e.tls_failure() {
            Some(reason) => ProxyError::UpstreamTls(reason),
            None => otherwise,
        })
}

/// Send a request without a body through the lean client (see `h1_client`). A failed connect
/// moves on to the next target, up to the service's `retries`; an idempotent request whose
/// pooled connection turns out to have been closed by the upstream (closed cleanly before any
/// response byte) is replayed once, on a freshly opened connection.
async fn send_lean(
    attempts: &mut Attempts<'_>,
    service: &ServiceRt,
    mut parts: http::request::Parts,
    set_host: bool,
    settings: &Arc<PoolSettings>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let idempotent = matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    let mut replayed = false;
    loop {
        let (target, host_header) = attempts.next_target()?;
        if set_host {
            parts
                .headers
                .insert(header::HOST, host_for(target, host_header, service));
        }
        let dest = service
            .tls
            .as_ref()
            .map(|t| t.dest(parts.headers.get(header::HOST), target));
        let pooled = match pool::checkout_h1(
            !replayed,
            target,
            dest.as_ref(),
            service.connect_timeout,
            settings,
        )
        .await
        {
            Ok(p) => p,
            Err(e) => {
                connect_failed(attempts, target, &e)?;
                continue;
            }
        };
        let H1Pooled {
            conn,
            lease,
            reused,
        } = pooled;
        match tokio::time::timeout(
            service.read_timeout,
            conn.send(&parts, service.write_timeout),
        )
        .await
        {
            Err(_) | Ok(Err(H1Error::WriteTimeout)) => {
                attempts.report(Outcome::Timeout);
                if idempotent && service.retry_on.timeout && attempts.retry(true) {
                    tracing::debug!(target = %target.key, "upstream timed out; retrying elsewhere");
                    continue;
                }
                return Err(ProxyError::UpstreamTimeout);
            }
            Ok(Ok((head, body)))
                if idempotent && service.retry_on.status(head.status.as_u16()) && {
                    attempts.report(Outcome::Status(head.status.as_u16()));
                    attempts.retry(true)
                } =>
            {
                // The answer is dropped unread, and its connection with it.
                tracing::debug!(target = %target.key, status = head.status.as_u16(), "retrying elsewhere");
                drop((body, lease));
                continue;
            }
            Ok(Ok((head, body))) => {
                attempts.answered(head.status.as_u16());
                let body = UpstreamBody::lean(body, lease, service.read_timeout);
                return Ok(Response::from_parts(head, ProxyBody::Upstream(body)));
            }
            Ok(Err(e)) if reused && idempotent && !replayed && e.nothing_received() => {
                // The pooled connection had been closed by the upstream: replay once, on a
                // freshly opened connection.
                tracing::debug!(target = %target.key, error = %e, "stale keep-alive connection; replaying once");
                replayed = true;
            }
            Ok(Err(e)) => {
                tracing::debug!(target = %target.key, error = %e, "upstream request failed");
                attempts.report(Outcome::ConnectFailure);
                // Nothing came back (a target going down): an idempotent request is as safe to
                // send elsewhere as after a failed connect (nginx's `proxy_next_upstream error`).
                if idempotent && e.nothing_received() && attempts.retry(false) {
                    continue;
                }
                return Err(match e.tls_failure() {
                    Some(reason) => ProxyError::UpstreamTls(reason),
                    None => ProxyError::UpstreamBroken,
                });
            }
        }
    }
}

/// Send the request to a target of `service`: a failed connect moves on to the next target, up
/// to the service's `retries`; a pooled connection found closed is replaced without counting.
async fn send_upstream(
    attempts: &mut Attempts<'_>,
    service: &ServiceRt,
    parts: http::request::Parts,
    body: RequestBody,
    set_host: bool,
    settings: &Arc<PoolSettings>,
) -> Result<(Response<Incoming>, PooledConn), ProxyError> {
    let request_sent = body.sent_flag();
    let client_failed = body.client_failed_flag();
    let mut pending = Some(Request::from_parts(parts, body));
    loop {
        let (target, host_header) = attempts.next_target()?;
        let Some(mut req) = pending.take() else {
            return Err(ProxyError::UpstreamBroken);
        };
        if set_host {
            req.headers_mut()
                .insert(header::HOST, host_for(target, host_header, service));
        }
        let dest = service
            .tls
            .as_ref()
            .map(|t| t.dest(req.headers().get(header::HOST), target));
        let key = dest.as_ref().map_or(&target.key, |d| &d.key);
        let mut conn = match pool::checkout(key, settings).await {
            Some(c) => c,
            None => match pool::connect(target, dest.as_ref(), service.connect_timeout, settings)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    pending = Some(req);
                    connect_failed(attempts, target, &e)?;
                    continue;
                }
            },
        };
        match tokio::time::timeout(service.read_timeout, conn.sender.try_send_request(req)).await {
            Err(_) => {
                // Still sending the client's body: the client is the slow one.
                if !request_sent.load(std::sync::atomic::Ordering::Acquire) {
                    return Err(ProxyError::BodyTimeout);
                }
                attempts.report(Outcome::Timeout);
                return Err(ProxyError::UpstreamTimeout);
            }
            Ok(Ok(resp)) => {
                attempts.answered(resp.status().as_u16());
                conn.request_sent = Some(request_sent);
                return Ok((resp, conn));
            }
            Ok(Err(mut e)) => match e.take_message() {
                // Not sent: the pooled connection had been closed by the upstream meanwhile.
                Some(req) => {
                    if !conn.reused {
                        attempts.connect_failed(target, e.error(), false)?;
                    }
                    pending = Some(req);
                }
                None => {
                    tracing::debug!(target = %target.key, error = %e.error(), "upstream request failed");
                    // The client's body broke off: not the target's fault.
                    if let Some(e) = client_body_error(&client_failed) {
                        return Err(e);
                    }
                    attempts.report(Outcome::ConnectFailure);
                    return Err(match upstream_tls::failure_in(e.error()) {
                        Some(reason) => ProxyError::UpstreamTls(reason),
                        None => ProxyError::UpstreamBroken,
                    });
                }
            },
        }
    }
}
