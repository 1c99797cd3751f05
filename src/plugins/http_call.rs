//! A plugin's own call to an HTTP service (an authorization service, a JWKS endpoint): a
//! bodiless GET to an `http://` or `https://` URL over the gateway's upstream machinery (the
//! per-worker keep-alive pool, the upstream TLS client and the lean HTTP/1.1 client), bounded in
//! time as a whole and in the size of the body read back.
//!
//! `https://` verifies the service's certificate against the system's trust store (unless the
//! plugin's setting turns verification off), with the URL's host as server name.
//!
//! The URL is checked once, when the configuration is loaded ([`Endpoint::parse`]): an IP
//! literal connects without any lookup; a host name is resolved at each new connection, as for
//! upstream targets.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::Uri;
use http::header::HeaderValue;
use http_body::Body;
use http_body_util::BodyExt;
use tokio::time::Instant;

use crate::proxy::h1_client::{H1Body, H1Error};
use crate::proxy::pool::{self, ConnectError, H1Pooled, PoolSettings};
use crate::proxy::upstream_tls::{self, ClientTls, TlsSettings};
use crate::snapshot::{TargetAddr, target_addr};

/// Where the calls go: the target to connect to and the request target (origin-form).
#[derive(Debug)]
pub struct Endpoint {
    pub target: TargetAddr,
    pub path: Uri,
    /// For `https://` URLs.
    pub tls: Option<Arc<ClientTls>>,
}

/// Why a URL cannot be an [`Endpoint`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("{0}")]
    Invalid(String),
    #[error("TLS: {0}")]
    Tls(String),
}

impl Endpoint {
    /// `http://host[:port][/path][?query]` or `https://…`, verifying the service's certificate.
    pub fn parse(url: &str) -> Result<Endpoint, UrlError> {
        Endpoint::parse_with(url, true)
    }

    /// [`Endpoint::parse`]; an `https://` service's certificate is verified when `tls_verify`.
    pub fn parse_with(url: &str, tls_verify: bool) -> Result<Endpoint, UrlError> {
        let invalid = |m: String| UrlError::Invalid(m);
        let uri: Uri = url
            .parse()
            .map_err(|e| invalid(format!("invalid URL `{url}`: {e}")))?;
        let https = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") => false,
            Some(s) if s.eq_ignore_ascii_case("https") => true,
            _ => {
                return Err(invalid(format!(
                    "`{url}` must be an http:// or https:// URL such as http://auth.internal:9000/verify"
                )));
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| invalid(format!("`{url}` has no host")))?;
        if authority.as_str().contains('@') {
            return Err(invalid(
                "user information in the address is not supported".into(),
            ));
        }
        let raw_host = authority.host();
        let host = match raw_host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => v6
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| invalid(format!("invalid IPv6 address `{raw_host}`")))?
                .to_string(),
            None => match raw_host.parse::<std::net::Ipv4Addr>() {
                Ok(v4) => v4.to_string(),
                Err(_) if is_host_name(raw_host) => raw_host.to_ascii_lowercase(),
                Err(_) => return Err(invalid(format!("invalid host `{raw_host}`"))),
            },
        };
        let port = match authority.port_u16() {
            Some(0) => return Err(invalid("port must be between 1 and 65535".into())),
            Some(p) => p,
            None if https => 443,
            None => 80,
        };
        let path = match uri.path_and_query().map(|p| p.as_str()) {
            Some(p) if p.starts_with('/') => p.to_owned(),
            Some(p) => format!("/{p}"),
            None => "/".to_owned(),
        };
        let path = Uri::try_from(path).map_err(|e| invalid(format!("invalid path: {e}")))?;
        let mut target = target_addr(&host, port);
        let tls = if https {
            if let Some(h) = upstream_tls::host_header(&target) {
                target.host_header = h;
            }
            let settings = TlsSettings {
                verify: tls_verify,
                ..TlsSettings::default()
            };
            let tls = ClientTls::new(&settings).map_err(|e| UrlError::Tls(e.to_string()))?;
            Some(Arc::new(tls))
        } else {
            None
        };
        Ok(Endpoint { target, path, tls })
    }

    /// The `Host` header of a call: the URL's authority.
    pub fn host(&self) -> &HeaderValue {
        &self.target.host_header
    }
}

/// A DNS name: dot-separated labels of letters, digits, `-` and `_`.
fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Why no answer came back.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("cannot connect: {0}")]
    Connect(#[from] ConnectError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("HTTP exchange failed: {0}")]
    Http(#[from] H1Error),
}

/// Why the body of an answer could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("larger than {0} bytes")]
    TooLarge(usize),
    #[error("not complete within the timeout")]
    Timeout,
    #[error(transparent)]
    Http(#[from] H1Error),
}

/// The service's answer: its head, and its body when it was read completely.
pub struct Answer {
    pub head: http::response::Parts,
    pub body: Result<Bytes, BodyError>,
}

/// Send `request` (no body) to `target` and read the answer, all within `timeout`; a body
/// larger than `max_body` bytes is not kept.
pub async fn call(
    target: &TargetAddr,
    tls: Option<&ClientTls>,
    request: &http::request::Parts,
    timeout: Duration,
    max_body: usize,
    settings: &Arc<PoolSettings>,
) -> Result<Answer, CallError> {
    let deadline = Instant::now() + timeout;
    let dest = tls.map(|t| t.dest(request.headers.get(http::header::HOST), target));
    let (head, mut body, lease) = tokio::time::timeout_at(deadline, async {
        let mut replayed = false;
        loop {
            let H1Pooled {
                conn,
                lease,
                reused,
            } = pool::checkout_h1(!replayed, target, dest.as_ref(), timeout, settings).await?;
            match conn.send(request, timeout).await {
                Ok((head, body)) => return Ok((head, body, lease)),
                // A pooled connection the service had closed meanwhile: the GET is idempotent,
                // so it is sent once more on a fresh connection, as the proxy does.
                Err(e) if reused && !replayed && e.nothing_received() => replayed = true,
                Err(e) => return Err(CallError::from(e)),
            }
        }
    })
    .await
    .map_err(|_| CallError::Timeout(timeout))??;

    let body_result =
        match tokio::time::timeout_at(deadline, read_bounded(&mut body, max_body)).await {
            Ok(r) => r,
            Err(_) => Err(BodyError::Timeout),
        };
    if body_result.is_ok()
        && let Some(conn) = body.take_reusable()
    {
        lease.release(conn);
    }
    Ok(Answer {
        head,
        body: body_result,
    })
}

/// The whole body, unless it is larger than `max` bytes.
async fn read_bounded(body: &mut H1Body, max: usize) -> Result<Bytes, BodyError> {
    if body.size_hint().exact().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge(max));
    }
    let mut out = BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if out.len() + data.len() > max {
                return Err(BodyError::TooLarge(max));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let e = Endpoint::parse("http://auth.internal:9000/verify?app=1").unwrap();
        assert_eq!(
            (e.target.host.as_str(), e.target.port, &*e.target.key),
            ("auth.internal", 9000, "auth.internal:9000")
        );
        assert_eq!(e.host(), "auth.internal:9000");
        assert_eq!(e.path, "/verify?app=1");
        let e = Endpoint::parse("http://10.0.0.7").unwrap();
        assert_eq!(
            (
                e.target.host.as_str(),
                e.target.port,
                e.host().to_str().unwrap()
            ),
            ("10.0.0.7", 80, "10.0.0.7")
        );
        assert_eq!(e.path, "/");
        let e = Endpoint::parse("HTTP://[::1]:8080/a").unwrap();
        assert_eq!(
            (e.target.host.as_str(), &*e.target.key),
            ("::1", "[::1]:8080")
        );
        let e = Endpoint::parse("https://auth.internal/keys").unwrap();
        assert_eq!(
            (e.target.port, e.host().to_str().unwrap(), e.tls.is_some()),
            (443, "auth.internal", true)
        );
        for bad in [
            "ftp://auth/",
            "auth:9000/verify",
            "/verify",
            "http://user:pw@auth/",
            "http://auth:0/",
            "http://[zz]/",
            "http://a..b/",
            "",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
