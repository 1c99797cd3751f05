//! gRPC at the edge: recognising gRPC requests, Kong's checks for routes whose `protocols` are
//! `grpc`/`grpcs`, and the gateway's own errors in gRPC form (HTTP 200, `content-type:
//! application/grpc`, `grpc-status` and `grpc-message`), so that a gRPC client reads them as
//! statuses rather than as broken responses. See `docs/protocols.md`.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode, Version};

use super::body::ProxyBody;
use crate::plugins::json_message;
use crate::snapshot::RouteRt;

pub static GRPC_STATUS: header::HeaderName = header::HeaderName::from_static("grpc-status");
pub static GRPC_MESSAGE: header::HeaderName = header::HeaderName::from_static("grpc-message");
const APPLICATION_GRPC: &str = "application/grpc";

/// gRPC status codes the gateway produces.
pub mod code {
    pub const CANCELLED: u8 = 1;
    pub const UNKNOWN: u8 = 2;
    pub const INTERNAL: u8 = 13;
    pub const UNIMPLEMENTED: u8 = 12;
    pub const UNAVAILABLE: u8 = 14;
    pub const UNAUTHENTICATED: u8 = 16;
    pub const PERMISSION_DENIED: u8 = 7;
    pub const RESOURCE_EXHAUSTED: u8 = 8;
    pub const DEADLINE_EXCEEDED: u8 = 4;
}

/// Whether `content-type` says gRPC (`application/grpc`, `application/grpc+proto`,
/// `application/grpc;…`), not gRPC-Web.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| is_grpc_type(v.as_bytes()))
}

fn is_grpc_type(v: &[u8]) -> bool {
    v.len() >= APPLICATION_GRPC.len()
        && v[..APPLICATION_GRPC.len()].eq_ignore_ascii_case(APPLICATION_GRPC.as_bytes())
        && matches!(v.get(APPLICATION_GRPC.len()), None | Some(b'+' | b';'))
}

/// The gRPC status for a gateway answer with HTTP `status`: the table of the gRPC
/// specification ("HTTP to gRPC status code mapping", which Envoy applies to its own replies),
/// with 504 as `DEADLINE_EXCEEDED` and 413 as `RESOURCE_EXHAUSTED`, which say more.
pub fn status_for(status: StatusCode) -> u8 {
    match status.as_u16() {
        400 => code::INTERNAL,
        401 => code::UNAUTHENTICATED,
        403 => code::PERMISSION_DENIED,
        404 | 405 => code::UNIMPLEMENTED,
        408 => code::DEADLINE_EXCEEDED,
        413 | 431 => code::RESOURCE_EXHAUSTED,
        429 | 502 | 503 => code::UNAVAILABLE,
        504 => code::DEADLINE_EXCEEDED,
        _ => code::UNKNOWN,
    }
}

/// A trailers-only gRPC response: HTTP 200 whose only header block carries the status.
pub fn status_response(grpc_status: u8, message: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(bytes::Bytes::new()));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(APPLICATION_GRPC),
    );
    h.insert(
        GRPC_STATUS.clone(),
        HeaderValue::from(u16::from(grpc_status)),
    );
    if let Ok(v) = HeaderValue::from_str(&percent_encode(message)) {
        h.insert(GRPC_MESSAGE.clone(), v);
    }
    resp
}

/// A response the gateway (or a plugin) made for a gRPC request, turned into gRPC form: its
/// HTTP status becomes a `grpc-status`, its JSON `message` the `grpc-message`. Upstream
/// responses and successful ones pass untouched.
pub fn gateway_answer(resp: Response<ProxyBody>) -> Response<ProxyBody> {
    let ProxyBody::Full(body) = resp.body() else {
        return resp;
    };
    if resp.status().is_success() || resp.headers().contains_key(&GRPC_STATUS) {
        return resp;
    }
    let message = body
        .as_ref()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
        .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| {
            resp.status()
                .canonical_reason()
                .unwrap_or("gateway error")
                .to_owned()
        });
    let mut out = status_response(status_for(resp.status()), &message);
    // Headers a plugin set (a challenge, a request id) go along.
    let (head, _) = resp.into_parts();
    for (name, value) in &head.headers {
        if name != header::CONTENT_TYPE
            && name != header::CONTENT_LENGTH
            && name != header::CONNECTION
            && name != header::UPGRADE
        {
            out.headers_mut().append(name.clone(), value.clone());
        }
    }
    out
}

/// Kong's checks for a request that matched a route whose `protocols` are `grpc`/`grpcs`:
/// a gRPC request over HTTP/1 gets 426, a non-gRPC request 415, a gRPC request over plain
/// text on a `grpcs`-only route a gRPC `CANCELLED` status. `None`: the request may go on.
pub fn route_mismatch(
    route: &RouteRt,
    version: Version,
    headers: &HeaderMap,
    tls: bool,
) -> Option<Response<ProxyBody>> {
    let grpc = is_grpc(headers);
    if grpc && version != Version::HTTP_2 {
        let mut resp = json_message(StatusCode::UPGRADE_REQUIRED, "Please use HTTP2 protocol");
        let h = resp.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("HTTP/2"));
        return Some(resp);
    }
    if !grpc {
        return Some(json_message(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Non-gRPC request matched gRPC route",
        ));
    }
    if !tls && !route.allows_http {
        return Some(status_response(
            code::CANCELLED,
            "gRPC request matched gRPCs route",
        ));
    }
    None
}

/// `grpc-message` is percent-encoded: bytes outside printable ASCII, and `%`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_grpc_content_types() {
        for yes in [
            "application/grpc",
            "application/grpc+proto",
            "application/GRPC;x=1",
        ] {
            assert!(is_grpc_type(yes.as_bytes()), "{yes}");
        }
        for no in [
            "application/grpc-web",
            "application/grpcx",
            "text/plain",
            "",
        ] {
            assert!(!is_grpc_type(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn maps_gateway_errors() {
        let resp = gateway_answer(json_message(StatusCode::NOT_FOUND, "no Route matched"));
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[&GRPC_STATUS], "12");
        assert_eq!(resp.headers()[&GRPC_MESSAGE], "no Route matched");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/grpc");
        assert_eq!(status_for(StatusCode::BAD_GATEWAY), code::UNAVAILABLE);
        assert_eq!(percent_encode("a%b\u{e9}"), "a%25b%C3%A9");
        // A success passes untouched.
        let ok = gateway_answer(json_message(StatusCode::OK, "fine"));
        assert!(!ok.headers().contains_key(&GRPC_STATUS));
    }
}
