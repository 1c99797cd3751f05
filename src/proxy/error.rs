//! Data-plane errors: what went wrong, who is to blame, and the one place where an error becomes
//! an HTTP status and a JSON body (`{"message": ...}`, Kong's wording where Kong has one).

use http::{HeaderValue, Method, StatusCode, header};

use crate::plugins::json_message;
use crate::proxy::body::ProxyBody;

/// Who caused an error (for logs and, later, metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    Client,
    Upstream,
    Gateway,
}

/// Every way the gateway can fail a request on its own.
#[derive(Debug)]
pub enum ProxyError {
    /// The request path is malformed or uses a forbidden encoding.
    BadPath(super::path::PathError),
    /// An HTTP/1.1 request without a `Host`, or any request with several.
    BadHost,
    /// No route matched.
    NoRoute,
    /// The upstream request target would be too long to represent.
    UriTooLong,
    /// A route matched the path but not the method.
    MethodNotAllowed(Vec<Method>),
    /// A route only accepts HTTPS.
    HttpsRequired,
    /// The matched route has no service.
    NoService,
    /// The service's upstream has no usable target.
    NoTargets,
    /// The upstream's circuit breaker is open.
    CircuitOpen,
    /// The upstream has `circuit_breaker.max_requests` requests in flight already.
    Overloaded,
    /// Connecting to the upstream failed (after retries).
    ConnectFailed,
    /// The upstream did not answer within `read_timeout`.
    UpstreamTimeout,
    /// The upstream closed or reset the connection or sent an invalid response.
    UpstreamBroken,
    /// TLS with the upstream failed (certificate not trusted, expired, for another name; client
    /// certificate refused): the short reason.
    UpstreamTls(&'static str),
    /// A body to be read whole is larger than `--request-buffer-limit`.
    BodyTooLarge,
    /// A body to be read whole stalled longer than `--client-body-timeout`.
    BodyTimeout,
    /// A body to be read whole broke off or was malformed.
    BadBody,
    /// The request broke a client limit or HTTP/1 framing (see `limits::Violation`).
    Refused(super::limits::Violation),
}

impl ProxyError {
    pub fn blame(&self) -> Blame {
        match self {
            ProxyError::BadPath(_)
            | ProxyError::UriTooLong
            | ProxyError::BadHost
            | ProxyError::NoRoute
            | ProxyError::MethodNotAllowed(_)
            | ProxyError::HttpsRequired
            | ProxyError::BodyTooLarge
            | ProxyError::BodyTimeout
            | ProxyError::BadBody
            | ProxyError::Refused(_) => Blame::Client,
            ProxyError::NoService | ProxyError::NoTargets => Blame::Gateway,
            ProxyError::CircuitOpen | ProxyError::Overloaded => Blame::Upstream,
            ProxyError::ConnectFailed
            | ProxyError::UpstreamTimeout
            | ProxyError::UpstreamBroken
            | ProxyError::UpstreamTls(_) => Blame::Upstream,
        }
    }

    /// Status code for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadPath(_) | ProxyError::BadHost | ProxyError::BadBody => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::UriTooLong => StatusCode::URI_TOO_LONG,
            ProxyError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::HttpsRequired => StatusCode::UPGRADE_REQUIRED,
            ProxyError::NoService
            | ProxyError::NoTargets
            | ProxyError::CircuitOpen
            | ProxyError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::ConnectFailed | ProxyError::UpstreamBroken | ProxyError::UpstreamTls(_) => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Refused(v) => v.status(),
        }
    }

    /// The JSON response for this error.
    pub fn into_response(self) -> http::Response<ProxyBody> {
        let status = self.status();
        let message: std::borrow::Cow<'static, str> = match &self {
            ProxyError::BadPath(e) => format!("Bad request: {e}").into(),
            ProxyError::NoRoute => "no Route matched with those values".into(),
            ProxyError::UriTooLong => "URI too long".into(),
            ProxyError::BadHost => "Bad request: missing or duplicate Host header".into(),
            ProxyError::MethodNotAllowed(_) => "Method not allowed".into(),
            ProxyError::HttpsRequired => "Please use HTTPS protocol".into(),
            ProxyError::NoService => "no Service found with those values".into(),
            ProxyError::NoTargets => "failure to get a peer from the ring-balancer".into(),
            ProxyError::CircuitOpen => "The upstream is failing: circuit breaker open".into(),
            ProxyError::Overloaded => "The upstream has too many requests in flight".into(),
            ProxyError::ConnectFailed | ProxyError::UpstreamBroken => {
                "An invalid response was received from the upstream server".into()
            }
            ProxyError::UpstreamTimeout => "The upstream server is timing out".into(),
            ProxyError::UpstreamTls(reason) => {
                format!("TLS error with the upstream server: {reason}").into()
            }
            ProxyError::BodyTooLarge => "Payload too large".into(),
            ProxyError::BodyTimeout => "Request timeout".into(),
            ProxyError::BadBody => "Bad request".into(),
            ProxyError::Refused(v) => v.message(),
        };
        let mut resp = json_message(status, &message);
        match self {
            ProxyError::MethodNotAllowed(allow) => {
                let list = allow
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                if let Ok(v) = HeaderValue::from_str(&list) {
                    resp.headers_mut().insert(header::ALLOW, v);
                }
            }
            ProxyError::HttpsRequired => {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
                resp.headers_mut().insert(
                    header::UPGRADE,
                    HeaderValue::from_static("TLS/1.2, HTTP/1.1"),
                );
            }
            // The rest of the body may still be on its way: close rather than read it.
            ProxyError::BodyTooLarge
            | ProxyError::BodyTimeout
            | ProxyError::BadBody
            | ProxyError::Refused(_) => {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        resp
    }
}
