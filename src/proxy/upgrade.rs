//! WebSocket pass-through (HTTP/1.1 `Upgrade`, RFC 6455 §4.1 and RFC 9110 §7.8).
//!
//! A WebSocket handshake request goes through routing and the request-phase plugins like any
//! other request. It is then sent on a freshly opened upstream connection (never a pooled one)
//! with `Connection: Upgrade` and `Upgrade: websocket` restored (they are hop-by-hop, removed
//! with the others). When the upstream answers `101 Switching Protocols`, the client gets the
//! 101 with the upstream's `Upgrade` and `Sec-WebSocket-*` headers, and a task tracked by the
//! listener copies bytes both ways until either side closes; any other answer is passed on as
//! an ordinary response.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio_util::task::TaskTracker;

use super::balance::Attempts;
use super::body::{ProxyBody, UpstreamBody};
use super::error::ProxyError;
use super::forward::remove_hop_by_hop;
use super::h1_client::{Answer, H1Error};
use super::pool::{self, H1Pooled, PoolSettings};
use super::stream::UpstreamStream;
use crate::health::Outcome;
use crate::snapshot::ServiceRt;

/// Whether a header's comma-separated values contain `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether a request head is a WebSocket opening handshake: an HTTP/1.1 `GET` with
/// `Connection: upgrade` and `websocket` among its `Upgrade` protocols. Other upgrades (`h2c`,
/// say) are not passed through: they go upstream as ordinary requests, without `Upgrade`.
pub fn is_websocket(method: &Method, version: Version, headers: &HeaderMap) -> bool {
    // Cheap test first: almost no request carries `Upgrade`.
    headers.contains_key(header::UPGRADE)
        && method == Method::GET
        && version == Version::HTTP_11
        && has_token(headers, header::CONNECTION, "upgrade")
        && has_token(headers, header::UPGRADE, "websocket")
}

/// How the upstream answered a handshake.
pub enum Handshake {
    /// `101`: its head, the connection, and the bytes it sent past its head.
    Switched {
        head: http::response::Parts,
        stream: UpstreamStream,
        rest: Bytes,
    },
    /// Any other answer, passed on as it is.
    Refused(Response<ProxyBody>),
}

/// Send a handshake request (no body) to a target of `service` on a fresh connection. A failed
/// connect moves on to the next target, up to the service's `retries`; nothing is retried once
/// the request was sent. The wait for the response head is bounded by `read_timeout`.
pub async fn send_handshake(
    attempts: &mut Attempts<'_>,
    service: &ServiceRt,
    mut parts: http::request::Parts,
    set_host: bool,
    settings: &Arc<PoolSettings>,
) -> Result<Handshake, ProxyError> {
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    parts
        .headers
        .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    loop {
        let (target, host_header) = attempts.next_target()?;
        if set_host {
            parts.headers.insert(
                header::HOST,
                super::handler::host_for(target, host_header, service),
            );
        }
        let dest = service
            .tls
            .as_ref()
            .map(|t| t.dest(parts.headers.get(header::HOST), target));
        let H1Pooled { conn, lease, .. } = match pool::checkout_h1(
            false,
            target,
            dest.as_ref(),
            service.connect_timeout,
            settings,
        )
        .await
        {
            Ok(p) => p,
            Err(e) => {
                super::handler::connect_failed(attempts, target, &e)?;
                continue;
            }
        };
        return match tokio::time::timeout(
            service.read_timeout,
            conn.send_upgrade(&parts, service.write_timeout),
        )
        .await
        {
            Err(_) | Ok(Err(H1Error::WriteTimeout)) => {
                attempts.report(Outcome::Timeout);
                Err(ProxyError::UpstreamTimeout)
            }
            Ok(Ok(Answer::Switched(head, stream, rest))) => {
                attempts.answered(head.status.as_u16());
                Ok(Handshake::Switched { head, stream, rest })
            }
            Ok(Ok(Answer::Response(head, body))) => {
                attempts.answered(head.status.as_u16());
                let body = UpstreamBody::lean(body, lease, service.read_timeout);
                Ok(Handshake::Refused(Response::from_parts(
                    head,
                    ProxyBody::Upstream(body),
                )))
            }
            Ok(Err(e)) => {
                tracing::debug!(target = %target.key, error = %e, "upgrade request failed");
                attempts.report(Outcome::ConnectFailure);
                Err(ProxyError::UpstreamBroken)
            }
        };
    }
}

/// The `101` for the client: the upstream's end-to-end headers (`Sec-WebSocket-Accept`,
/// `Sec-WebSocket-Protocol`, `Sec-WebSocket-Extensions`, cookies...) with `Connection: Upgrade`
/// and the upstream's `Upgrade`.
pub fn switching_response(head: http::response::Parts) -> Response<ProxyBody> {
    let mut headers = head.headers;
    let upgrade = headers
        .get(header::UPGRADE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("websocket"));
    remove_hop_by_hop(&mut headers);
    // A 101 has no body: framing headers would confuse the client.
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, upgrade);
    let mut resp = Response::new(ProxyBody::Full(None));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *resp.headers_mut() = headers;
    resp
}

/// Copy bytes between the client (once hyper has sent the 101 and hands its connection over)
/// and the upstream, until either side closes. Runs on its own task, tracked with the
/// listener's connections so that a graceful shutdown waits for it (up to the drain timeout).
pub fn bridge(
    tasks: &TaskTracker,
    on_upgrade: OnUpgrade,
    mut upstream: UpstreamStream,
    rest: Bytes,
) {
    tasks.spawn(async move {
        let client = match on_upgrade.await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "client connection not upgraded");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        if !rest.is_empty()
            && let Err(e) = client.write_all(&rest).await
        {
            tracing::debug!(error = %e, "upgraded connection closed");
            return;
        }
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((up, down)) => tracing::debug!(
                to_upstream = up,
                to_client = down + rest.len() as u64,
                "upgraded connection closed"
            ),
            Err(e) => tracing::debug!(error = %e, "upgraded connection ended with an error"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in list {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn recognises_websocket_handshakes() {
        let ws = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
        ]);
        assert!(is_websocket(&Method::GET, Version::HTTP_11, &ws));
        assert!(!is_websocket(&Method::POST, Version::HTTP_11, &ws));
        assert!(!is_websocket(&Method::GET, Version::HTTP_10, &ws));
        let no_connection = headers(&[("upgrade", "websocket")]);
        assert!(!is_websocket(
            &Method::GET,
            Version::HTTP_11,
            &no_connection
        ));
        let h2c = headers(&[("connection", "upgrade"), ("upgrade", "h2c")]);
        assert!(!is_websocket(&Method::GET, Version::HTTP_11, &h2c));
        assert!(!is_websocket(
            &Method::GET,
            Version::HTTP_11,
            &HeaderMap::new()
        ));
    }

    #[test]
    fn switching_response_keeps_websocket_headers() {
        let (mut head, ()) = Response::new(()).into_parts();
        head.headers = headers(&[
            ("connection", "upgrade, x-hop"),
            ("x-hop", "1"),
            ("upgrade", "websocket"),
            ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            ("sec-websocket-protocol", "chat"),
        ]);
        let resp = switching_response(head);
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        let h = resp.headers();
        assert_eq!(h["connection"], "Upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(h["sec-websocket-protocol"], "chat");
        assert!(!h.contains_key("x-hop"));
    }
}
