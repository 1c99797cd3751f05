//! Building the upstream request head from the client's: hop-by-hop headers removed (RFC 9110
//! §7.6.1, including every header named in `Connection`), `Host` per `preserve_host`, and the
//! `X-Forwarded-*` / `X-Real-IP` headers set the way Kong sets them:
//!
//! - `X-Forwarded-For`: the client's list (if any) with the TCP peer appended.
//! - `X-Forwarded-Proto`, `-Host`, `-Port`, `-Path`: taken from the client only when the peer
//!   is a trusted proxy, otherwise computed by the gateway (a client cannot spoof them).
//! - `X-Real-IP`: the client address resolved through trusted proxies.
//!
//! The same hop-by-hop removal applies to responses.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub static X_FORWARDED_PATH: HeaderName = HeaderName::from_static("x-forwarded-path");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Hop-by-hop headers that never cross the gateway.
fn is_fixed_hop_header(name: &HeaderName) -> bool {
    // Standard names compare as enum tags; only the two custom ones compare bytes.
    name == header::CONNECTION
        || name == header::TE
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
}

/// Remove hop-by-hop headers, including those listed in `Connection`.
///
/// Hot path: one pass over the header names finds what is present (usually nothing, or
/// `Connection: keep-alive`), then only those are removed.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let mut found: [Option<HeaderName>; 8] = Default::default();
    let mut n = 0;
    for name in headers.keys() {
        if is_fixed_hop_header(name) && n < found.len() {
            found[n] = Some(name.clone());
            n += 1;
        }
    }
    if n == 0 {
        return;
    }
    // Extra hop-by-hop headers named in `Connection` (other than its own keywords).
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        // `Host` is never hop-by-hop, whatever a client lists.
        .filter(|t| {
            !t.is_empty()
                && !t.eq_ignore_ascii_case("keep-alive")
                && !t.eq_ignore_ascii_case("close")
                && !t.eq_ignore_ascii_case("host")
        })
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in found.into_iter().flatten() {
        headers.remove(name);
    }
}

/// What the gateway knows about the client side of a request. The header values that depend
/// only on the connection are computed once per connection, not per request.
pub struct ClientSide<'a> {
    /// The TCP peer's address as a header value.
    pub peer_ip: &'a HeaderValue,
    /// The resolved client address (`None`: same as the peer).
    pub client_ip: Option<HeaderValue>,
    pub peer_trusted: bool,
    pub scheme: &'static str,
    /// The listener's port as a header value.
    pub local_port: &'a HeaderValue,
    /// The `Host` the client used (may carry a port).
    pub host: Option<&'a HeaderValue>,
    /// The normalised request path (before stripping), as a header value.
    pub path: Option<HeaderValue>,
}

/// Set `X-Forwarded-*` and `X-Real-IP` on an upstream request.
pub fn set_forwarded_headers(headers: &mut HeaderMap, c: ClientSide<'_>) {
    match headers.entry(&X_FORWARDED_FOR) {
        header::Entry::Vacant(e) => {
            e.insert(c.peer_ip.clone());
        }
        // Several incoming lines are folded into one list, in order, plus the peer.
        header::Entry::Occupied(mut e) => {
            let peer = c.peer_ip.to_str().unwrap_or("");
            let mut list = String::new();
            for line in e.iter() {
                let line = line.to_str().unwrap_or("").trim();
                if !line.is_empty() {
                    list.push_str(line);
                    list.push_str(", ");
                }
            }
            list.push_str(peer);
            let value = HeaderValue::from_str(&list).ok();
            match value {
                Some(v) => {
                    e.insert(v);
                }
                None => {
                    e.remove();
                }
            }
        }
    }
    let real_ip = c.client_ip.unwrap_or_else(|| c.peer_ip.clone());
    headers.insert(X_REAL_IP.clone(), real_ip);
    let keep =
        |headers: &HeaderMap, name: &HeaderName| c.peer_trusted && headers.contains_key(name);
    if !keep(headers, &X_FORWARDED_PROTO) {
        headers.insert(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(c.scheme),
        );
    }
    if !keep(headers, &X_FORWARDED_HOST) {
        let host = c.host.and_then(|h| {
            if h.as_bytes().contains(&b':') {
                let stripped = strip_port(h.to_str().ok()?);
                HeaderValue::from_str(stripped).ok()
            } else {
                Some(h.clone())
            }
        });
        match host {
            Some(v) => {
                headers.insert(X_FORWARDED_HOST.clone(), v);
            }
            None => {
                headers.remove(&X_FORWARDED_HOST);
            }
        }
    }
    if !keep(headers, &X_FORWARDED_PORT) {
        headers.insert(X_FORWARDED_PORT.clone(), c.local_port.clone());
    }
    if !keep(headers, &X_FORWARDED_PATH)
        && let Some(v) = c.path
    {
        headers.insert(X_FORWARDED_PATH.clone(), v);
    }
}

/// `example.com:8000` → `example.com`; `[::1]:80` → `[::1]`.
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn strips_ports() {
        assert_eq!(strip_port("a.com:80"), "a.com");
        assert_eq!(strip_port("a.com"), "a.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }
}
