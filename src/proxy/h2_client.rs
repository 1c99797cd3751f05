//! HTTP/2 to upstreams, for services whose `protocol` is `grpc` (HTTP/2 over plain TCP with
//! prior knowledge, as Kong's `grpc` services). Each worker keeps one multiplexed connection
//! per target (`host:port`) and sends every request to that target over it; a connection that
//! closed (GOAWAY, a broken socket) is replaced by a new one on the next request. Target
//! selection, connect retries, passive health and timeouts are those of HTTP/1 requests
//! ([`Attempts`], the service's `connect_timeout` and `read_timeout`). Bodies and trailers
//! stream both ways, so every gRPC call kind passes through.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::balance::Attempts;
use super::body::{ProxyBody, RequestBody, UpstreamBody};
use super::error::ProxyError;
use super::grpc;
use super::handler::{client_body_error, connect_failed, host_for};
use super::pool::{self, ConnectError};
use super::upstream_tls::TlsDest;
use crate::health::Outcome;
use crate::snapshot::{ServiceRt, TargetAddr};

type Sender = http2::SendRequest<RequestBody>;

thread_local! {
    /// This worker's connection to each HTTP/2 target.
    static CONNS: RefCell<HashMap<Arc<str>, Sender>> = RefCell::new(HashMap::new());
}

/// This worker's open connection to `target` (over TLS to `tls`, for `grpcs`), or a new one
/// (made within `timeout`). Connections are keyed like the HTTP/1 pool's: a TLS one by its
/// settings and server name too.
async fn checkout(
    target: &TargetAddr,
    tls: Option<&TlsDest<'_>>,
    timeout: Duration,
) -> Result<Sender, ConnectError> {
    let key = tls.map_or_else(|| target.key.clone(), |d| d.key.clone());
    let cached = CONNS.with(|m| m.borrow().get(&key).cloned());
    if let Some(sender) = cached {
        if !sender.is_closed() {
            return Ok(sender);
        }
        forget(&key);
    }
    let handshake = async {
        let stream = pool::open(target, tls, timeout).await?;
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder.timer(TokioTimer::new());
        let (sender, conn) = builder
            .handshake::<_, RequestBody>(TokioIo::new(stream))
            .await?;
        Ok::<_, ConnectError>((sender, conn))
    };
    let (sender, conn) = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| ConnectError::Timeout)??;
    // The connection is driven on this worker; it ends when the upstream closes it (after a
    // GOAWAY, once its streams are done) or when every sender is gone.
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream HTTP/2 connection closed with an error");
        }
    });
    CONNS.with(|m| m.borrow_mut().insert(key, sender.clone()));
    Ok(sender)
}

/// Drop this worker's connection to `key` (the next request opens a new one).
fn forget(key: &str) {
    CONNS.with(|m| m.borrow_mut().remove(key));
}

/// `scheme://authority/path?query` for an HTTP/2 request (the authority becomes `:authority`).
fn absolute(uri: &Uri, authority: &HeaderValue, tls: bool) -> Result<Uri, ProxyError> {
    let authority =
        Authority::try_from(authority.as_bytes()).map_err(|_| ProxyError::UpstreamBroken)?;
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::builder()
        .scheme(if tls { Scheme::HTTPS } else { Scheme::HTTP })
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|_| ProxyError::UriTooLong)
}

/// Send a request to a target of an HTTP/2 `service`: a failed connect moves on to the next
/// target, up to the service's `retries`; a request refused before it was sent (the cached
/// connection had just closed) goes out again on a new connection.
pub async fn send(
    attempts: &mut Attempts<'_>,
    service: &ServiceRt,
    mut parts: http::request::Parts,
    body: Option<RequestBody>,
    set_host: bool,
) -> Result<Response<ProxyBody>, ProxyError> {
    let body = body.unwrap_or_else(|| RequestBody::full(Bytes::new()));
    let request_sent = body.sent_flag();
    let client_failed = body.client_failed_flag();
    // gRPC servers look for `te: trailers` (removed with the other hop-by-hop headers): it says
    // the path to them carries trailers.
    if grpc::is_grpc(&parts.headers) {
        parts
            .headers
            .insert(header::TE, HeaderValue::from_static("trailers"));
    }
    let client_host = parts.headers.remove(header::HOST);
    let mut pending = Some(Request::from_parts(parts, body));
    let mut resent = false;
    loop {
        let (target, host_header) = attempts.next_target()?;
        let authority = match (&client_host, set_host) {
            (Some(h), false) => h.clone(),
            _ => host_for(target, host_header, service),
        };
        let dest = service
            .tls
            .as_ref()
            .map(|t| t.dest(Some(&authority), target));
        let key = dest
            .as_ref()
            .map_or_else(|| target.key.clone(), |d| d.key.clone());
        let mut sender = match checkout(target, dest.as_ref(), service.connect_timeout).await {
            Ok(s) => s,
            Err(e) => {
                connect_failed(attempts, target, &e)?;
                continue;
            }
        };
        let Some(mut req) = pending.take() else {
            return Err(ProxyError::UpstreamBroken);
        };
        *req.uri_mut() = absolute(req.uri(), &authority, dest.is_some())?;
        match tokio::time::timeout(service.read_timeout, sender.try_send_request(req)).await {
            Err(_) => {
                // Still sending the client's body: the client is the slow one.
                if !request_sent.load(Ordering::Acquire) {
                    return Err(ProxyError::BodyTimeout);
                }
                attempts.report(Outcome::Timeout);
                return Err(ProxyError::UpstreamTimeout);
            }
            Ok(Ok(resp)) => {
                attempts.answered(resp.status().as_u16());
                let (head, incoming) = resp.into_parts();
                let body = UpstreamBody::multiplexed(incoming, service.read_timeout);
                return Ok(Response::from_parts(head, ProxyBody::Upstream(body)));
            }
            Ok(Err(mut e)) => {
                if sender.is_closed() {
                    forget(&key);
                }
                match e.take_message() {
                    // Not sent: the connection closed meanwhile. A new one is opened.
                    Some(req) => {
                        tracing::debug!(target = %target.key, error = %e.error(), "upstream HTTP/2 connection closed; sending again");
                        forget(&key);
                        pending = Some(req);
                        if resent {
                            attempts.connect_failed(target, e.error(), false)?;
                        }
                        resent = true;
                    }
                    None => {
                        tracing::debug!(target = %target.key, error = %e.error(), "upstream HTTP/2 request failed");
                        if let Some(e) = client_body_error(&client_failed) {
                            return Err(e);
                        }
                        forget(&key);
                        attempts.report(Outcome::ConnectFailure);
                        return Err(ProxyError::UpstreamBroken);
                    }
                }
            }
        }
    }
}

/// Whether this worker holds a connection to `key` (for tests and diagnostics).
pub fn is_connected(key: &str) -> bool {
    CONNS.with(|m| m.borrow().get(key).is_some_and(|s| !s.is_closed()))
}
