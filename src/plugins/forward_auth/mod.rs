//! `forward-auth` (priority 1500): ask an external authorization service about every request
//! before proxying it, as Traefik's ForwardAuth middleware and Envoy's HTTP `ext_authz` filter
//! do. Kong has no such plugin; names follow Traefik's options in snake_case.
//!
//! The gateway sends `GET <address>` with the client's headers (all end-to-end ones, or only
//! `auth_request_headers`) and `X-Forwarded-Method`, `-Proto`, `-Host`, `-Uri` and `-For`, never
//! a body. A 2xx answer lets the request through, with `auth_response_headers` (and the headers
//! matching `auth_response_headers_regex`) copied onto it in place of the client's; any other
//! status is returned to the client as it came: status, headers (all end-to-end ones, or only
//! `denied_response_headers` plus `Location`) and body (up to 64 KiB). When no answer comes
//! (connection refused, `timeout` elapsed, malformed response) the request is refused with
//! `503 {"message": ...}`, or let through with `failure_mode_allow` (Envoy's option).
//!
//! The call runs on the worker's runtime through [`super::http_call`]: the proxy's per-worker
//! keep-alive pool and lean HTTP/1.1 client, which exist for exactly this kind of bodiless
//! request.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Uri};
use regex::{Regex, RegexBuilder};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::http_call::{self, Answer, CallError, Endpoint};
use super::{BuildContext, Flow, Plugin, RequestCtx, json_message};
use crate::proxy::body::ProxyBody;
use crate::proxy::forward::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REAL_IP};
use crate::proxy::pool::{ConnectError, PoolSettings};
use crate::proxy::upstream_tls::ClientTls;
use crate::snapshot::TargetAddr;

/// Largest auth response body read back (and relayed to the client on a denial).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
pub const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

fn default_timeout() -> u64 {
    5_000
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `http://host[:port]/path`: where the authorization requests go.
    pub address: String,
    /// Milliseconds for the whole call (connect, request, answer and its body).
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    #[serde(default)]
    pub trust_forward_header: bool,
    #[serde(default)]
    pub auth_request_headers: Vec<String>,
    #[serde(default)]
    pub auth_response_headers: Vec<String>,
    #[serde(default)]
    pub auth_response_headers_regex: Option<String>,
    #[serde(default)]
    pub add_auth_cookies_to_response: Vec<String>,
    #[serde(default)]
    pub denied_response_headers: Vec<String>,
    #[serde(default)]
    pub failure_mode_allow: bool,
    /// Traefik's `forwardBody`: accepted only as `false` in this version.
    #[serde(default)]
    pub forward_body: bool,
    /// An `https://` address: verify its certificate against the system's trust store
    /// (Traefik's `tls.insecureSkipVerify`, inverted).
    #[serde(default = "default_true")]
    pub tls_verify: bool,
}

fn default_true() -> bool {
    true
}

/// Boxed: every variant of the plugin enum is as large as the largest, and these settings are
/// several times the size of any other plugin's.
pub struct ForwardAuth(Box<Settings>);

struct Settings {
    target: TargetAddr,
    /// For an `https://` address.
    tls: Option<Arc<ClientTls>>,
    /// The request target of the auth request (origin-form, from `address`).
    path: Uri,
    /// `Host` of the auth request: `address`'s authority.
    host: HeaderValue,
    timeout: Duration,
    trust_forward_header: bool,
    /// `None`: every end-to-end header of the client's request.
    request_headers: Option<Vec<HeaderName>>,
    response_headers: Vec<HeaderName>,
    response_regex: Option<Regex>,
    cookies: Vec<String>,
    /// `None`: every end-to-end header of the denial.
    denied_headers: Option<Vec<HeaderName>>,
    failure_mode_allow: bool,
    /// The node's pool settings do not reach plugins: the defaults apply.
    pool: Arc<PoolSettings>,
}

/// `Set-Cookie` values of the auth response to add to the client's response.
#[derive(Clone)]
struct AuthCookies(Vec<HeaderValue>);

impl Plugin for ForwardAuth {
    const NAME: &'static str = "forward-auth";
    const PRIORITY: i32 = 1500;
    const CONSUMER_SCOPED: bool = false;
    type Config = Config;

    fn new(c: Config, _ctx: &BuildContext<'_>) -> Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let address = Endpoint::parse_with(&c.address, c.tls_verify)
            .map_err(|e| errors.push(("address".to_string(), e.to_string())))
            .ok();
        if c.timeout == 0 || c.timeout > i32::MAX as u64 {
            errors.push((
                "timeout".into(),
                format!("value should be between 1 and {}", i32::MAX),
            ));
        }
        let request_headers =
            header_names(&c.auth_request_headers, "auth_request_headers", &mut errors);
        let response_headers = header_names(
            &c.auth_response_headers,
            "auth_response_headers",
            &mut errors,
        );
        for (i, name) in response_headers.iter().enumerate() {
            if !copyable(name) {
                errors.push((
                    format!("auth_response_headers[{i}]"),
                    format!("`{name}` cannot be copied onto the upstream request"),
                ));
            }
        }
        let response_regex = match c.auth_response_headers_regex.as_deref() {
            None | Some("") => None,
            // Header names reach the gateway lower-cased; Traefik matches canonical case
            // (`^X-Auth-`), so the pattern ignores case to keep such configurations working.
            Some(pattern) => match RegexBuilder::new(pattern).case_insensitive(true).build() {
                Ok(re) => Some(re),
                Err(e) => {
                    errors.push((
                        "auth_response_headers_regex".into(),
                        format!("invalid regex: {e}"),
                    ));
                    None
                }
            },
        };
        for (i, name) in c.add_auth_cookies_to_response.iter().enumerate() {
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                errors.push((
                    format!("add_auth_cookies_to_response[{i}]"),
                    "must be a cookie name (letters, digits and !#$%&'*+-.^_`|~)".into(),
                ));
            }
        }
        let denied_headers = header_names(
            &c.denied_response_headers,
            "denied_response_headers",
            &mut errors,
        );
        for (i, name) in denied_headers.iter().enumerate() {
            if !copyable(name) {
                errors.push((
                    format!("denied_response_headers[{i}]"),
                    format!("`{name}` cannot be relayed to the client"),
                ));
            }
        }
        if c.forward_body {
            errors.push((
                "forward_body".into(),
                "forwarding the request body is not supported by this version of Gatehouse".into(),
            ));
        }
        match address {
            Some(Endpoint { target, path, tls }) if errors.is_empty() => {
                Ok(ForwardAuth(Box::new(Settings {
                    host: target.host_header.clone(),
                    target,
                    tls,
                    path,
                    timeout: Duration::from_millis(c.timeout),
                    trust_forward_header: c.trust_forward_header,
                    request_headers: (!request_headers.is_empty()).then_some(request_headers),
                    response_headers,
                    response_regex,
                    cookies: c.add_auth_cookies_to_response,
                    denied_headers: (!denied_headers.is_empty()).then_some(denied_headers),
                    failure_mode_allow: c.failure_mode_allow,
                    pool: Arc::new(PoolSettings::default()),
                })))
            }
            _ => Err(errors),
        }
    }

    async fn on_request(&self, ctx: &mut RequestCtx, req: &mut http::request::Parts) -> Flow {
        let s = &*self.0;
        let auth_req = s.auth_request(ctx, req);
        match http_call::call(
            &s.target,
            s.tls.as_deref(),
            &auth_req,
            s.timeout,
            MAX_BODY_BYTES,
            &s.pool,
        )
        .await
        {
            Ok(answer) if answer.head.status.is_success() => {
                s.allow(ctx, req, &answer);
                Flow::Continue
            }
            Ok(answer) => Flow::Respond(Box::new(s.deny(answer))),
            Err(e) => {
                tracing::debug!(address = %s.target.key, error = %e, "authorization service failed");
                if s.failure_mode_allow {
                    // No answer to copy from: the client's copies must not pass for one.
                    s.strip_response_headers(&mut req.headers);
                    return Flow::Continue;
                }
                let message = match e {
                    CallError::Timeout(_) | CallError::Connect(ConnectError::Timeout) => {
                        "The authorization service did not answer in time"
                    }
                    _ => "The authorization service is unavailable",
                };
                Flow::Respond(Box::new(json_message(
                    StatusCode::SERVICE_UNAVAILABLE,
                    message,
                )))
            }
        }
    }

    fn on_response(&self, ctx: &mut RequestCtx, resp: &mut http::response::Parts) {
        let Some(AuthCookies(cookies)) = ctx.extensions.remove::<AuthCookies>() else {
            return;
        };
        // As Traefik: the auth service's cookies replace the upstream's of the same name.
        let names: Vec<&[u8]> = cookies.iter().filter_map(cookie_name).collect();
        let kept: Vec<HeaderValue> = resp
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter(|v| !cookie_name(v).is_some_and(|n| names.contains(&n)))
            .cloned()
            .collect();
        resp.headers.remove(header::SET_COOKIE);
        for v in kept.into_iter().chain(cookies) {
            resp.headers.append(header::SET_COOKIE, v);
        }
    }
}

impl Settings {
    /// The head of the auth request for the client's request `req`.
    fn auth_request(&self, ctx: &RequestCtx, req: &http::request::Parts) -> http::request::Parts {
        let mut headers = match &self.request_headers {
            Some(names) => {
                let mut headers = HeaderMap::with_capacity(names.len() + 6);
                for name in names {
                    for v in req.headers.get_all(name) {
                        headers.append(name.clone(), v.clone());
                    }
                }
                headers
            }
            None => {
                let mut headers = req.headers.clone();
                headers.reserve(6);
                headers
            }
        };
        // Framing and connection management belong to this hop; no body is ever sent.
        for name in [
            header::HOST,
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::EXPECT,
            header::CONNECTION,
            header::TE,
            header::UPGRADE,
            header::TRAILER,
            KEEP_ALIVE,
            PROXY_CONNECTION,
        ] {
            headers.remove(name);
        }
        // A client's forwarding headers are believed only from a trusted proxy (`--trusted-ips`),
        // as the gateway's own are.
        let trust_forward_header = self.trust_forward_header && ctx.peer_trusted;
        if !trust_forward_header {
            // The service is told the gateway's view of the client, never a client's claim.
            let claimed: Vec<HeaderName> = headers
                .keys()
                .filter(|n| n.as_str().starts_with("x-forwarded-"))
                .cloned()
                .collect();
            for name in claimed {
                headers.remove(name);
            }
            headers.remove(&X_REAL_IP);
            headers.remove(FORWARDED);
        }
        headers.insert(header::HOST, self.host.clone());

        let trusted = |name: &HeaderName| {
            trust_forward_header
                .then(|| req.headers.get(name).filter(|v| !v.is_empty()).cloned())
                .flatten()
        };
        let method = trusted(&X_FORWARDED_METHOD)
            .or_else(|| HeaderValue::from_str(req.method.as_str()).ok());
        let proto = trusted(&X_FORWARDED_PROTO).unwrap_or(HeaderValue::from_static("http"));
        let host = trusted(&X_FORWARDED_HOST).or_else(|| {
            req.headers.get(header::HOST).cloned().or_else(|| {
                req.uri
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            })
        });
        // The normalised path, as routed and as the upstream will receive it: the service must
        // judge the request the upstream will see (`/public/../admin` is `/admin`).
        let uri = trusted(&X_FORWARDED_URI).or_else(|| {
            let path = ctx
                .path
                .as_ref()
                .and_then(|p| p.to_str().ok())
                .unwrap_or_else(|| req.uri.path());
            match req.uri.query() {
                Some(q) => HeaderValue::from_str(&format!("{path}?{q}")).ok(),
                None => HeaderValue::from_str(path).ok(),
            }
        });
        let client = if trust_forward_header {
            forwarded_for(&req.headers, ctx.peer.ip())
        } else {
            HeaderValue::from_str(&ctx.client_ip.to_string()).ok()
        };
        for (name, value) in [
            (X_FORWARDED_METHOD, method),
            (X_FORWARDED_PROTO.clone(), Some(proto)),
            (X_FORWARDED_HOST.clone(), host),
            (X_FORWARDED_URI, uri),
            (X_FORWARDED_FOR.clone(), client),
        ] {
            match value {
                Some(v) => {
                    headers.insert(name, v);
                }
                None => {
                    headers.remove(name);
                }
            }
        }

        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.method = Method::GET;
        parts.uri = self.path.clone();
        parts.headers = headers;
        parts
    }

    /// A 2xx answer: copy the configured headers onto the request (Traefik's order and rules:
    /// the client's values go even when the answer has none) and keep the cookies to add.
    fn allow(&self, ctx: &mut RequestCtx, req: &mut http::request::Parts, answer: &Answer) {
        self.strip_response_headers(&mut req.headers);
        let from = &answer.head.headers;
        for name in &self.response_headers {
            for v in from.get_all(name) {
                req.headers.append(name.clone(), v.clone());
            }
        }
        if let Some(re) = &self.response_regex {
            for (name, v) in from {
                if re.is_match(name.as_str())
                    && copyable(name)
                    && !self.response_headers.contains(name)
                {
                    req.headers.append(name.clone(), v.clone());
                }
            }
        }
        if !self.cookies.is_empty() {
            let picked: Vec<HeaderValue> = from
                .get_all(header::SET_COOKIE)
                .iter()
                .filter(|v| {
                    cookie_name(v).is_some_and(|n| self.cookies.iter().any(|c| c.as_bytes() == n))
                })
                .cloned()
                .collect();
            if !picked.is_empty() {
                ctx.extensions.insert(AuthCookies(picked));
            }
        }
    }

    /// Remove every header a 2xx answer would set: the configured names and the regex's.
    fn strip_response_headers(&self, headers: &mut HeaderMap) {
        for name in &self.response_headers {
            headers.remove(name);
        }
        if let Some(re) = &self.response_regex {
            let matching: Vec<HeaderName> = headers
                .keys()
                .filter(|n| re.is_match(n.as_str()) && copyable(n))
                .cloned()
                .collect();
            for name in matching {
                headers.remove(name);
            }
        }
    }

    /// Any other answer goes back to the client as it came.
    fn deny(&self, answer: Answer) -> Response<ProxyBody> {
        let Answer { head, body } = answer;
        let mut headers = match &self.denied_headers {
            None => {
                let mut h = head.headers;
                crate::proxy::forward::remove_hop_by_hop(&mut h);
                h
            }
            Some(names) => {
                let mut h = HeaderMap::with_capacity(names.len() + 1);
                // Traefik always relays `Location`: a redirect to a login page needs it.
                for name in names.iter().chain(std::iter::once(&header::LOCATION)) {
                    if h.contains_key(name) {
                        continue;
                    }
                    for v in head.headers.get_all(name) {
                        h.append(name.clone(), v.clone());
                    }
                }
                h
            }
        };
        // The body is re-framed by the gateway.
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::TRANSFER_ENCODING);
        let body = body.unwrap_or_else(|e| {
            // The decision stands; a body that cannot be relayed whole is not relayed at all.
            tracing::debug!(address = %self.target.key, status = %head.status, error = %e, "authorization denial body dropped");
            headers.remove(header::CONTENT_TYPE);
            headers.remove(header::CONTENT_ENCODING);
            Bytes::new()
        });
        let mut resp = Response::new(ProxyBody::full(body));
        *resp.status_mut() = head.status;
        *resp.headers_mut() = headers;
        resp
    }
}

/// Parse a list of header names, reporting bad ones as `field[i]`.
fn header_names(
    names: &[String],
    field: &str,
    errors: &mut Vec<(String, String)>,
) -> Vec<HeaderName> {
    names
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match HeaderName::from_bytes(n.as_bytes()) {
            Ok(h) => Some(h),
            Err(_) => {
                errors.push((
                    format!("{field}[{i}]"),
                    format!("`{n}` is not a valid header name"),
                ));
                None
            }
        })
        .collect()
}

/// Whether a header of the auth response may be passed on (to the upstream request or the
/// client): not one that frames the message or manages the connection.
fn copyable(name: &HeaderName) -> bool {
    ![
        header::HOST,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::CONNECTION,
        header::TE,
        header::UPGRADE,
        header::TRAILER,
        header::EXPECT,
        KEEP_ALIVE,
        PROXY_CONNECTION,
    ]
    .contains(name)
}

/// RFC 9110 token characters (cookie names are tokens).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The name of the cookie a `Set-Cookie` value sets.
fn cookie_name(v: &HeaderValue) -> Option<&[u8]> {
    let b = v.as_bytes();
    let eq = b.iter().position(|&c| c == b'=')?;
    Some(b[..eq].trim_ascii())
}

/// `X-Forwarded-For` when the client's forwarding headers are trusted: its list, then the peer.
fn forwarded_for(headers: &HeaderMap, peer: std::net::IpAddr) -> Option<HeaderValue> {
    let mut list = String::new();
    for line in headers.get_all(&X_FORWARDED_FOR) {
        if let Ok(line) = line.to_str() {
            let line = line.trim();
            if !line.is_empty() {
                list.push_str(line);
                list.push_str(", ");
            }
        }
    }
    list.push_str(&peer.to_string());
    HeaderValue::from_str(&list).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(config: serde_json::Value) -> Result<ForwardAuth, Vec<(String, String)>> {
        let consumers = Arc::new(crate::consumers::Consumers::default());
        let ctx = BuildContext {
            consumers: &consumers,
        };
        let c: Config =
            serde_json::from_value(config).map_err(|e| vec![(String::new(), e.to_string())])?;
        ForwardAuth::new(c, &ctx)
    }

    fn fields(r: Result<ForwardAuth, Vec<(String, String)>>) -> Vec<String> {
        match r {
            Ok(_) => vec![],
            Err(e) => e.into_iter().map(|(f, _)| f).collect(),
        }
    }

    #[test]
    fn config_errors_name_their_field() {
        let errors = fields(build(serde_json::json!({
            "address": "ftp://auth/",
            "timeout": 0,
            "auth_request_headers": ["ok", "bad name"],
            "auth_response_headers": ["X-User", "Content-Length"],
            "auth_response_headers_regex": "(",
            "add_auth_cookies_to_response": ["a=b"],
            "denied_response_headers": [""],
            "forward_body": true,
        })));
        assert_eq!(
            errors,
            [
                "address",
                "timeout",
                "auth_request_headers[1]",
                "auth_response_headers[1]",
                "auth_response_headers_regex",
                "add_auth_cookies_to_response[0]",
                "denied_response_headers[0]",
                "forward_body",
            ]
        );
        assert!(build(serde_json::json!({"address": "http://127.0.0.1:1/"})).is_ok());
        assert!(build(serde_json::json!({})).is_err(), "address is required");
    }

    #[test]
    fn auth_cookies_replace_the_upstreams_of_the_same_name() {
        let plugin = build(serde_json::json!({
            "address": "http://127.0.0.1:1/",
            "add_auth_cookies_to_response": ["session"],
        }))
        .unwrap();
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], 1).into();
        let mut ctx = RequestCtx::new(addr.ip(), addr, addr, 1, 1);
        let (mut resp, ()) = Response::new(()).into_parts();
        resp.headers
            .append(header::SET_COOKIE, HeaderValue::from_static("session=old"));
        resp.headers
            .append(header::SET_COOKIE, HeaderValue::from_static("lang=en"));
        // Without an allowed answer for this request, nothing changes.
        plugin.on_response(&mut ctx, &mut resp);
        assert_eq!(resp.headers.get_all(header::SET_COOKIE).iter().count(), 2);
        ctx.extensions
            .insert(AuthCookies(vec![HeaderValue::from_static(
                "session=new; HttpOnly",
            )]));
        plugin.on_response(&mut ctx, &mut resp);
        let cookies: Vec<_> = resp.headers.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(cookies, ["lang=en", "session=new; HttpOnly"]);
    }

    #[test]
    fn cookie_names() {
        assert_eq!(
            cookie_name(&HeaderValue::from_static("a=1; Path=/")),
            Some(&b"a"[..])
        );
        assert_eq!(
            cookie_name(&HeaderValue::from_static(" _oauth2 =x")),
            Some(&b"_oauth2"[..])
        );
        assert_eq!(cookie_name(&HeaderValue::from_static("novalue")), None);
    }
}
