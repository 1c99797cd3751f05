//! Host criteria: route host parsing/validation, request host normalisation, host buckets.
//!
//! Contract:
//! - [`parse_route_host`] accepts `name`, `name:port`, `*.suffix[:port]`, `prefix.*[:port]`,
//!   IPv4 literals and IPv6 literals (`[::1]`, `[::1]:8000`, bare `::1`), and lowercases the name.
//! - [`with_request_host`] splits a request `Host` value into a lowercased name and an optional
//!   port without allocating for ordinary hosts (IPv6 literals are canonicalised).
//! - [`HostIndex`] stores one bucket per (pattern, port) and visits every bucket whose pattern
//!   matches a request host: exact names by hash lookup, `*.x` by looking up each label
//!   suffix of the request name, `x.*` by each label prefix, plus the "any host" bucket.
//!   A pattern without port matches any request port (or none); with a port it matches only
//!   that exact request port. Wildcards need at least one character in place of the `*`.

use std::net::Ipv6Addr;

use foldhash::HashMap;

/// How a route host pattern matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum HostKind {
    /// The name must equal the request host name.
    Exact,
    /// `*.key`: the request name ends with `.key`, with at least one character before the dot.
    Suffix,
    /// `key.*`: the request name starts with `key.`, with at least one character after the dot.
    Prefix,
}

/// A parsed, lowercased route host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPattern {
    pub kind: HostKind,
    /// The lowercased name (exact) or the part without `*.` / `.*` (wildcards).
    pub key: Box<str>,
    pub port: Option<u16>,
}

impl HostPattern {
    pub(crate) fn is_wildcard(&self) -> bool {
        self.kind != HostKind::Exact
    }
}

fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|&p| p != 0)
}

fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Parses and validates one entry of a route's `hosts`.
pub(crate) fn parse_route_host(raw: &str) -> Result<HostPattern, String> {
    if raw.is_empty() {
        return Err("must not be empty".to_owned());
    }
    let invalid = || format!("invalid hostname: {raw}");
    // IPv6 literals: "[addr]" with optional ":port", or a bare address without port.
    if let Some(rest) = raw.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or_else(invalid)?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| invalid())?;
        let port = match after {
            "" => None,
            _ => {
                let p = after.strip_prefix(':').ok_or_else(invalid)?;
                Some(parse_port(p).ok_or_else(|| "invalid port number".to_owned())?)
            }
        };
        let key = format!("[{addr}]").into_boxed_str();
        return Ok(HostPattern {
            kind: HostKind::Exact,
            key,
            port,
        });
    }
    let (name, port) = match raw.matches(':').count() {
        0 => (raw, None),
        1 => {
            let (name, port) = raw.split_once(':').ok_or_else(invalid)?;
            (
                name,
                Some(parse_port(port).ok_or_else(|| "invalid port number".to_owned())?),
            )
        }
        _ => {
            let addr: Ipv6Addr = raw.parse().map_err(|_| invalid())?;
            let key = format!("[{addr}]").into_boxed_str();
            return Ok(HostPattern {
                kind: HostKind::Exact,
                key,
                port: None,
            });
        }
    };
    let name = name.to_ascii_lowercase();
    let (kind, key) = match name.matches('*').count() {
        0 => (HostKind::Exact, name.as_str()),
        1 => {
            if let Some(k) = name.strip_prefix("*.") {
                (HostKind::Suffix, k)
            } else if let Some(k) = name.strip_suffix(".*") {
                (HostKind::Prefix, k)
            } else {
                return Err(
                    "invalid wildcard: must be placed at leftmost or rightmost label".into(),
                );
            }
        }
        _ => return Err("invalid wildcard: must have at most one wildcard".to_owned()),
    };
    if !valid_hostname(key) {
        return Err(invalid());
    }
    Ok(HostPattern {
        kind,
        key: key.into(),
        port,
    })
}

/// A normalised request host: lowercased name (IPv6 in canonical bracketed form) and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestHost<'a> {
    pub name: &'a str,
    pub port: Option<u16>,
}

/// Splits a bracketed IPv6 host `[v6][:port]`. An unparsable port yields `None`.
fn split_bracketed(raw: &str) -> (&str, Option<u16>) {
    match raw.find(']') {
        Some(close) => (
            &raw[..=close],
            raw[close + 1..].strip_prefix(':').and_then(parse_port),
        ),
        None => (raw, None),
    }
}

/// Canonicalises an IPv6 literal (bracketed or bare) into `buf` as `[addr]`.
fn canonical_v6<'b>(name: &str, buf: &'b mut [u8; 64]) -> Option<&'b str> {
    use std::io::Write;
    let inner = match name.strip_prefix('[') {
        Some(r) => r.strip_suffix(']')?,
        None => name,
    };
    let addr: Ipv6Addr = inner.parse().ok()?;
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    write!(cursor, "[{addr}]").ok()?;
    let len = usize::try_from(cursor.position()).ok()?;
    std::str::from_utf8(&buf[..len]).ok()
}

/// Normalises the request host and passes it to `f`; allocation-free for hosts ≤ 255 bytes.
///
/// `name[:port]` is split at its single colon; `[v6][:port]` and bare IPv6 addresses (several
/// colons, no port) are canonicalised; an unparsable port yields `None`.
#[inline]
pub(crate) fn with_request_host<R>(raw: &str, f: impl FnOnce(RequestHost<'_>) -> R) -> R {
    // One pass over the (short) host: colon count, last colon, any uppercase.
    let (mut colons, mut last_colon, mut upper) = (0usize, 0usize, false);
    for (i, &b) in raw.as_bytes().iter().enumerate() {
        if b == b':' {
            colons += 1;
            last_colon = i;
        }
        upper |= b.is_ascii_uppercase();
    }
    let (name, port) = match colons {
        0 => (raw, None),
        1 if !raw.starts_with('[') => (&raw[..last_colon], parse_port(&raw[last_colon + 1..])),
        _ => {
            let (name, port) = if raw.starts_with('[') {
                split_bracketed(raw)
            } else {
                (raw, None)
            };
            let mut buf = [0u8; 64];
            if let Some(v6) = canonical_v6(name, &mut buf) {
                return f(RequestHost { name: v6, port });
            }
            (name, port)
        }
    };
    if !upper {
        return f(RequestHost { name, port });
    }
    let mut buf = [0u8; 255];
    if let Some(dst) = buf.get_mut(..name.len()) {
        dst.copy_from_slice(name.as_bytes());
        dst.make_ascii_lowercase();
        // ASCII lowercasing keeps UTF-8 valid; the fallback is unreachable in practice.
        if let Ok(lower) = std::str::from_utf8(dst) {
            return f(RequestHost { name: lower, port });
        }
    }
    let lower = name.to_ascii_lowercase();
    f(RequestHost { name: &lower, port })
}

/// Buckets of one host key, split by port constraint.
#[derive(Debug)]
struct PortBuckets<T> {
    any_port: Option<T>,
    ports: Vec<(u16, T)>,
}

impl<T> Default for PortBuckets<T> {
    fn default() -> Self {
        PortBuckets {
            any_port: None,
            ports: Vec::new(),
        }
    }
}

impl<T: Default> PortBuckets<T> {
    fn bucket_mut(&mut self, port: Option<u16>) -> &mut T {
        match port {
            None => self.any_port.get_or_insert_with(T::default),
            Some(p) => {
                let pos = match self.ports.iter().position(|(q, _)| *q == p) {
                    Some(pos) => pos,
                    None => {
                        self.ports.push((p, T::default()));
                        self.ports.len() - 1
                    }
                };
                &mut self.ports[pos].1
            }
        }
    }
}

impl<T> PortBuckets<T> {
    #[inline]
    fn visit(&self, port: Option<u16>, f: &mut impl FnMut(&T)) {
        if let Some(b) = &self.any_port {
            f(b);
        }
        if let Some(p) = port {
            for (q, b) in &self.ports {
                if *q == p {
                    f(b);
                }
            }
        }
    }

    fn for_each_mut(&mut self, f: &mut impl FnMut(&mut T)) {
        if let Some(b) = &mut self.any_port {
            f(b);
        }
        for (_, b) in &mut self.ports {
            f(b);
        }
    }
}

/// Host buckets; see the module docs.
#[derive(Debug)]
pub(crate) struct HostIndex<T> {
    exact: HashMap<Box<str>, PortBuckets<T>>,
    suffix: HashMap<Box<str>, PortBuckets<T>>,
    prefix: HashMap<Box<str>, PortBuckets<T>>,
    any: T,
}

impl<T: Default> Default for HostIndex<T> {
    fn default() -> Self {
        HostIndex {
            exact: HashMap::default(),
            suffix: HashMap::default(),
            prefix: HashMap::default(),
            any: T::default(),
        }
    }
}

impl<T: Default> HostIndex<T> {
    /// The bucket for `pattern`, or the "any host" bucket for `None`.
    pub(crate) fn bucket_mut(&mut self, pattern: Option<&HostPattern>) -> &mut T {
        let Some(p) = pattern else {
            return &mut self.any;
        };
        let map = match p.kind {
            HostKind::Exact => &mut self.exact,
            HostKind::Suffix => &mut self.suffix,
            HostKind::Prefix => &mut self.prefix,
        };
        map.entry(p.key.clone()).or_default().bucket_mut(p.port)
    }
}

impl<T> HostIndex<T> {
    /// The "any host" bucket if it is the only one (no route has hosts).
    #[inline]
    pub(crate) fn only_any(&self) -> Option<&T> {
        let hostless = self.exact.is_empty() && self.suffix.is_empty() && self.prefix.is_empty();
        hostless.then_some(&self.any)
    }

    /// Calls `f` on every bucket matching `host` (each bucket at most once).
    #[inline]
    pub(crate) fn for_each_match(&self, host: &RequestHost<'_>, mut f: impl FnMut(&T)) {
        f(&self.any);
        let name = host.name;
        if name.is_empty() {
            return;
        }
        if !self.exact.is_empty()
            && let Some(b) = self.exact.get(name)
        {
            b.visit(host.port, &mut f);
        }
        if !self.suffix.is_empty() {
            for (i, _) in name.match_indices('.') {
                if i > 0
                    && let Some(b) = self.suffix.get(&name[i + 1..])
                {
                    b.visit(host.port, &mut f);
                }
            }
        }
        if !self.prefix.is_empty() {
            for (i, _) in name.match_indices('.') {
                if i > 0
                    && i + 1 < name.len()
                    && let Some(b) = self.prefix.get(&name[..i])
                {
                    b.visit(host.port, &mut f);
                }
            }
        }
    }

    /// Calls `f` on every bucket (used to finalise them after building).
    pub(crate) fn for_each_mut(&mut self, mut f: impl FnMut(&mut T)) {
        f(&mut self.any);
        for map in [&mut self.exact, &mut self.suffix, &mut self.prefix] {
            map.shrink_to_fit();
            for b in map.values_mut() {
                b.for_each_mut(&mut f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(kind: HostKind, key: &str, port: Option<u16>) -> HostPattern {
        HostPattern {
            kind,
            key: key.into(),
            port,
        }
    }

    #[test]
    fn parses_route_hosts() {
        use HostKind::*;
        assert_eq!(
            parse_route_host("Example.COM"),
            Ok(pat(Exact, "example.com", None))
        );
        assert_eq!(
            parse_route_host("example.com:8080"),
            Ok(pat(Exact, "example.com", Some(8080)))
        );
        assert_eq!(
            parse_route_host("*.example.com"),
            Ok(pat(Suffix, "example.com", None))
        );
        assert_eq!(
            parse_route_host("*.example.com:81"),
            Ok(pat(Suffix, "example.com", Some(81)))
        );
        assert_eq!(
            parse_route_host("example.*"),
            Ok(pat(Prefix, "example", None))
        );
        assert_eq!(
            parse_route_host("10.0.0.1:9"),
            Ok(pat(Exact, "10.0.0.1", Some(9)))
        );
        assert_eq!(
            parse_route_host("[::1]:8000"),
            Ok(pat(Exact, "[::1]", Some(8000)))
        );
        assert_eq!(parse_route_host("[0:0::1]"), Ok(pat(Exact, "[::1]", None)));
        assert_eq!(parse_route_host("::1"), Ok(pat(Exact, "[::1]", None)));
        assert_eq!(
            parse_route_host("[2001:DB8::1]"),
            Ok(pat(Exact, "[2001:db8::1]", None))
        );
    }

    #[test]
    fn rejects_bad_route_hosts() {
        for bad in [
            "",
            "*",
            "*.",
            ".*",
            "a.*.com",
            "*.a.*",
            "**.a",
            "a*.com",
            "*example.com",
            "a..b",
            "a b",
            "a/b",
            "[::1",
            "[zz]",
            "[::1]x",
            "a:b:c",
            "example.com:",
            "example.com:0",
            "example.com:65536",
            "example.com:8a",
            "*.example.com:",
            ".example.com",
        ] {
            assert!(parse_route_host(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(
            parse_route_host("*.a.*"),
            Err("invalid wildcard: must have at most one wildcard".to_owned())
        );
        assert_eq!(
            parse_route_host("a.*.com"),
            Err("invalid wildcard: must be placed at leftmost or rightmost label".to_owned())
        );
        assert_eq!(
            parse_route_host("a:99999"),
            Err("invalid port number".to_owned())
        );
    }

    fn req(raw: &str) -> (String, Option<u16>) {
        with_request_host(raw, |h| (h.name.to_owned(), h.port))
    }

    #[test]
    fn normalises_request_hosts() {
        assert_eq!(req("Example.COM:8080"), ("example.com".into(), Some(8080)));
        assert_eq!(req("example.com"), ("example.com".into(), None));
        assert_eq!(req("example.com:x"), ("example.com".into(), None));
        assert_eq!(req("[::1]:8000"), ("[::1]".into(), Some(8000)));
        assert_eq!(req("[0:0:0:0:0:0:0:1]"), ("[::1]".into(), None));
        assert_eq!(req("::1"), ("[::1]".into(), None));
        assert_eq!(req(""), (String::new(), None));
        let long = "A".repeat(300);
        assert_eq!(req(&long), ("a".repeat(300), None));
    }

    fn matches(index: &HostIndex<Vec<u32>>, host: &str) -> Vec<u32> {
        let mut out = Vec::new();
        with_request_host(host, |h| {
            index.for_each_match(&h, |b| out.extend_from_slice(b))
        });
        out.sort_unstable();
        out
    }

    #[test]
    fn index_visits_matching_buckets() {
        let mut idx: HostIndex<Vec<u32>> = HostIndex::default();
        let hosts = [
            "example.com",
            "example.com:8080",
            "*.example.com",
            "*.b.example.com:9",
            "example.*",
            "[::1]:8000",
        ];
        for (i, h) in hosts.iter().enumerate() {
            let p = parse_route_host(h).ok();
            assert!(p.is_some());
            idx.bucket_mut(p.as_ref()).push(i as u32 + 1);
        }
        idx.bucket_mut(None).push(0);
        idx.for_each_mut(|_| {});
        assert_eq!(matches(&idx, "EXAMPLE.com"), vec![0, 1, 5]);
        assert_eq!(matches(&idx, "example.com:8080"), vec![0, 1, 2, 5]);
        assert_eq!(matches(&idx, "example.com:8081"), vec![0, 1, 5]);
        assert_eq!(matches(&idx, "a.example.com"), vec![0, 3]);
        assert_eq!(matches(&idx, "a.b.example.com:9"), vec![0, 3, 4]);
        assert_eq!(matches(&idx, "b.example.com:9"), vec![0, 3]);
        assert_eq!(matches(&idx, ".example.com"), vec![0]);
        assert_eq!(matches(&idx, "example.org"), vec![0, 5]);
        assert_eq!(matches(&idx, "example.co.uk:1"), vec![0, 5]);
        assert_eq!(matches(&idx, "example."), vec![0]);
        assert_eq!(matches(&idx, "myexample.org"), vec![0]);
        assert_eq!(matches(&idx, "[::1]:8000"), vec![0, 6]);
        assert_eq!(matches(&idx, "[::1]"), vec![0]);
        assert_eq!(matches(&idx, ""), vec![0]);
    }
}
