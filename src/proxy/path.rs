//! Request path normalisation and upstream path joining.
//!
//! # Contract
//!
//! * [`normalize_path`] turns the raw request path (no query string; the
//!   caller strips `?…` and handles the `OPTIONS *` form) into the canonical
//!   form used both for routing and as the path forwarded upstream:
//!   percent-encoded unreserved characters (`ALPHA DIGIT - . _ ~`) are decoded
//!   exactly once, every other escape is kept with upper-case hex digits, dot
//!   segments are removed (RFC 3986 §5.2.4, never climbing above the root,
//!   decoded `%2E` counts as `.`), runs of `/` are merged and a trailing `/` is
//!   kept. Encoded `/`, `\` and NUL, malformed escapes and relative paths are
//!   rejected with a [`PathError`] (the caller should answer `400`).
//! * [`upstream_path`] reproduces Kong's upstream path computation for
//!   `service.path`, `route.strip_path` and `route.path_handling` (`v0` and
//!   `v1`), as in `kong/router/utils.lua` (`get_upstream_uri`, formerly
//!   `get_upstream_uri_v0`) and `kong/router/traditional.lua` (the `v1`
//!   branch), checked against Kong's `spec/fixtures/router_path_handling_tests.lua`.
//!   The result always starts with `/` and never has a double slash at the
//!   join.
//!
//! # Limits
//!
//! * Input is expected to come from `http::Uri::path()`; bytes other than `%`,
//!   `/` and `.` are passed through untouched (a raw `\` is *not* rejected,
//!   only its encoded form `%5C` is).
//! * Percent-encodings of non-unreserved characters (including `%25`, UTF-8
//!   sequences, control characters other than NUL) are never decoded.
//! * `upstream_path` does not normalise its inputs: `service_path` is expected
//!   to be validated by the configuration loader and `request_path` to be the
//!   output of [`normalize_path`]. The query string is the caller's business.
//!
//! Both functions are on the hot path: they take no locks and return
//! [`Cow::Borrowed`] whenever the result is a slice of an input.

use std::borrow::Cow;

/// Why a request path was rejected by [`normalize_path`].
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum PathError {
    /// The path contains `%2F`, which could be decoded into a separator
    /// upstream and bypass routing.
    #[error("request path contains an encoded slash (%2F)")]
    EncodedSlash,
    /// The path contains `%5C`, which some upstreams treat as a separator.
    #[error("request path contains an encoded backslash (%5C)")]
    EncodedBackslash,
    /// The path contains `%00`.
    #[error("request path contains an encoded NUL byte (%00)")]
    EncodedNul,
    /// A `%` is not followed by two hexadecimal digits.
    #[error("request path contains a malformed percent-encoding")]
    InvalidPercentEncoding,
    /// The path contains a raw `\`, which some upstreams treat as a separator.
    #[error("request path contains a backslash")]
    Backslash,
    /// A segment such as `..;x` or `.;x`: servlet containers strip the `;` parameter and then
    /// treat it as a dot segment, which would bypass routing.
    #[error("request path contains a dot segment with parameters (`..;`)")]
    DotSegmentParameter,
    /// The path is empty or does not start with `/`.
    #[error("request path is not absolute (must start with '/')")]
    NotAbsolute,
}

/// Kong route field `path_handling`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathHandling {
    /// Kong's default: service path, route path and request are joined as
    /// URL segments (`/s` + `/req` → `/s/req`).
    #[default]
    V0,
    /// Kong 1.x behaviour (deprecated in Kong 3.0): the service path is a
    /// plain string prefix (`/s` + `/fv1req` with `strip_path=false` →
    /// `/sfv1req`).
    V1,
}

/// What a `%XX` escape does to the path.
enum Escape {
    /// Decodes to this unreserved ASCII byte.
    Unreserved(u8),
    /// Kept encoded, with these two hex digits; `needs_upper` when they are
    /// not already upper case.
    Kept { hi: u8, lo: u8, needs_upper: bool },
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Classifies the escape starting at `bytes[i]` (which must be `%`).
fn classify_escape(bytes: &[u8], i: usize) -> Result<Escape, PathError> {
    let (Some(&h), Some(&l)) = (bytes.get(i + 1), bytes.get(i + 2)) else {
        return Err(PathError::InvalidPercentEncoding);
    };
    let (Some(hv), Some(lv)) = (hex_val(h), hex_val(l)) else {
        return Err(PathError::InvalidPercentEncoding);
    };
    match (hv << 4) | lv {
        b'/' => Err(PathError::EncodedSlash),
        b'\\' => Err(PathError::EncodedBackslash),
        0 => Err(PathError::EncodedNul),
        v if is_unreserved(v) => Ok(Escape::Unreserved(v)),
        _ => Ok(Escape::Kept {
            hi: h,
            lo: l,
            needs_upper: h.is_ascii_lowercase() || l.is_ascii_lowercase(),
        }),
    }
}

/// Normalise a request path (no query string) before routing; the result is
/// also what is forwarded upstream.
///
/// Returns [`Cow::Borrowed`] when the path is already canonical.
///
/// # Errors
///
/// [`PathError::NotAbsolute`] if `raw` is empty or does not start with `/`;
/// [`PathError::EncodedSlash`], [`PathError::EncodedBackslash`] or
/// [`PathError::EncodedNul`] for `%2F`, `%5C` or `%00` (any case);
/// [`PathError::InvalidPercentEncoding`] for a `%` not followed by two hex
/// digits. The whole path is validated, even parts removed by `..`.
///
/// ```
/// use gatehouse::proxy::path::normalize_path;
/// assert_eq!(normalize_path("/api/public/../admin").unwrap(), "/api/admin");
/// assert_eq!(normalize_path("/%61pi").unwrap(), "/api");
/// assert!(normalize_path("/a%2fb").is_err());
/// ```
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }

    // Single validating scan: decide whether anything has to change.
    let mut needs_rewrite = false;
    let mut seg_start = 1; // index of the first byte of the current segment
    let mut i = 1;
    while i <= bytes.len() {
        match bytes.get(i) {
            Some(b'%') => {
                match classify_escape(bytes, i)? {
                    Escape::Unreserved(_)
                    | Escape::Kept {
                        needs_upper: true, ..
                    } => {
                        needs_rewrite = true;
                    }
                    Escape::Kept {
                        needs_upper: false, ..
                    } => {}
                }
                i += 3;
            }
            Some(b'\\') => return Err(PathError::Backslash),
            Some(b'/') | None => {
                let seg = bytes.get(seg_start..i).unwrap_or_default();
                if is_dot_parameter_segment(seg) {
                    return Err(PathError::DotSegmentParameter);
                }
                let at_end = i == bytes.len();
                // An empty segment before the end is `//`; `.`/`..` are dot
                // segments. An empty final segment is a trailing slash.
                if (seg.is_empty() && !at_end) || seg == b"." || seg == b".." {
                    needs_rewrite = true;
                }
                seg_start = i + 1;
                i += 1;
            }
            Some(_) => i += 1,
        }
    }
    if !needs_rewrite {
        return Ok(Cow::Borrowed(raw));
    }
    let normalized = normalize_slow(raw)?;
    // Decoding can reveal one (`/%2e%2e;x`).
    if normalized
        .split('/')
        .any(|seg| is_dot_parameter_segment(seg.as_bytes()))
    {
        return Err(PathError::DotSegmentParameter);
    }
    Ok(Cow::Owned(normalized))
}

/// `.;…` or `..;…`.
fn is_dot_parameter_segment(seg: &[u8]) -> bool {
    seg.starts_with(b".;") || seg.starts_with(b"..;")
}

/// Decoding + dot-segment removal + slash merging, into a fresh buffer.
fn normalize_slow(raw: &str) -> Result<String, PathError> {
    let mut out = String::with_capacity(raw.len());
    let mut trailing_slash = false;
    // `raw` starts with '/', so the first split item is the empty string
    // before it. Raw '/' are the only separators since %2F is rejected.
    for seg in raw.split('/').skip(1) {
        let seg_start = out.len();
        out.push('/');
        push_decoded(&mut out, seg)?;
        let decoded = out.get(seg_start + 1..).unwrap_or("");
        match decoded {
            "" | "." => {
                out.truncate(seg_start);
                trailing_slash = true;
            }
            ".." => {
                out.truncate(seg_start);
                // Drop the previous segment; never above the root.
                let prev = out.rfind('/').unwrap_or(0);
                out.truncate(prev);
                trailing_slash = true;
            }
            _ => trailing_slash = false,
        }
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Appends `seg` to `out`, decoding unreserved escapes and upper-casing the
/// hex digits of the others.
fn push_decoded(out: &mut String, seg: &str) -> Result<(), PathError> {
    let mut rest = seg;
    while let Some(pos) = rest.find('%') {
        // `pos` is a char boundary, and '%' plus two hex digits are ASCII.
        let (run, esc) = rest.split_at_checked(pos).unwrap_or((rest, ""));
        out.push_str(run);
        match classify_escape(esc.as_bytes(), 0)? {
            Escape::Unreserved(v) => out.push(char::from(v)),
            Escape::Kept { hi, lo, .. } => {
                out.push('%');
                out.push(char::from(hi.to_ascii_uppercase()));
                out.push(char::from(lo.to_ascii_uppercase()));
            }
        }
        rest = esc.get(3..).unwrap_or("");
    }
    out.push_str(rest);
    Ok(())
}

/// Kong's `sanitize_uri_postfix`: drops a leading `.`/`..` segment of the
/// part of the request path that follows the matched route path.
fn sanitize_postfix(postfix: &str) -> &str {
    match postfix {
        "." | ".." => "",
        _ => postfix
            .strip_prefix("./")
            .or_else(|| postfix.strip_prefix("../"))
            .unwrap_or(postfix),
    }
}

/// Kong's upstream path computation.
///
/// * `service_path`: the service's `path` (`None` or empty means `/`).
/// * `request_path`: the normalised request path ([`normalize_path`]).
/// * `matched_path_len`: byte length of the prefix of `request_path` matched
///   by the route's path (for a regex path, the length of the regex match).
///   `0` means the route matched without a path (hosts, methods, headers…),
///   which Kong treats like a match of the leading `/`. A value past the end
///   is clamped; one that is not on a char boundary is treated as `0`.
/// * `strip_path`: the route's `strip_path`.
/// * `handling`: the route's `path_handling`.
///
/// The result always starts with `/` and has no double slash where the
/// service path and the request part are joined.
///
/// ```
/// use gatehouse::proxy::path::{upstream_path, PathHandling};
/// assert_eq!(upstream_path(Some("/s"), "/tv0/req", 4, true, PathHandling::V0), "/s/req");
/// assert_eq!(upstream_path(Some("/s"), "/fv1req", 4, false, PathHandling::V1), "/sfv1req");
/// ```
#[must_use]
pub fn upstream_path<'a>(
    service_path: Option<&'a str>,
    request_path: &'a str,
    matched_path_len: usize,
    strip_path: bool,
    handling: PathHandling,
) -> Cow<'a, str> {
    let base = match service_path {
        None | Some("") => "/",
        Some(p) => p,
    };

    // Kong: `request_postfix = sanitize(req_uri:sub(#prefix + 1))`, or
    // `req_uri:sub(2)` when no path matched (same thing as a "/" match).
    let matched = match matched_path_len {
        0 => usize::from(request_path.starts_with('/')),
        n if n >= request_path.len() => request_path.len(),
        n if request_path.is_char_boundary(n) => n,
        _ => usize::from(request_path.starts_with('/')),
    };
    let raw_postfix = request_path.get(matched..).unwrap_or("");
    let postfix = sanitize_postfix(raw_postfix);
    // `postfix` is a suffix of `request_path`: remember where it starts so a
    // preceding '/' can be borrowed instead of allocated.
    let postfix_at = request_path.len() - postfix.len();
    // The request path without its leading slash (Kong's `req_uri:sub(2)`).
    let req_rest_at = usize::from(request_path.starts_with('/'));

    let base_ends_slash = base.ends_with('/');
    let req_ends_slash = request_path.len() > 1 && request_path.ends_with('/');

    // Each arm yields (head, insert '/', start of the tail in request_path).
    let end = request_path.len();
    let (head, slash, tail_at): (&str, bool, usize) = match (handling, strip_path) {
        (PathHandling::V0, true) if base_ends_slash => {
            if postfix.is_empty() {
                if base == "/" || request_path.ends_with('/') {
                    (base, false, end)
                } else {
                    (base.strip_suffix('/').unwrap_or(base), false, end)
                }
            } else {
                // A postfix starting with '/' would double the slash; the
                // join below drops it (Kong drops the base's instead: same
                // result).
                (base, false, postfix_at)
            }
        }
        (PathHandling::V0, true) => {
            if postfix.is_empty() {
                (base, req_ends_slash, end)
            } else if postfix.starts_with('/') {
                (base, false, postfix_at)
            } else {
                (base, true, postfix_at)
            }
        }
        (PathHandling::V0, false) if base_ends_slash => (base, false, req_rest_at),
        (PathHandling::V0, false) => {
            if request_path == "/" {
                (base, false, end)
            } else {
                (base, false, 0)
            }
        }
        // v1 strip: plain concatenation of the base and the postfix.
        (PathHandling::V1, true) => (base, false, postfix_at),
        // v1 no strip: base + the request path without its leading slash.
        (PathHandling::V1, false) => (base, false, req_rest_at),
    };

    join(head, slash, request_path, tail_at)
}

/// `head` + (`/` if `slash`) + `request_path[tail_at..]`, with exactly one
/// slash at the join when there is one, always starting with `/`; borrows
/// when the result is a slice of an input.
fn join<'a>(head: &'a str, slash: bool, request_path: &'a str, tail_at: usize) -> Cow<'a, str> {
    // At most one trailing slash on the head...
    let core = head.trim_end_matches('/');
    let head = head
        .get(..core.len() + 1)
        .filter(|_| core.len() < head.len())
        .unwrap_or(head);
    // ...and none leading the tail: the separator is re-added below.
    let raw_tail = request_path.get(tail_at..).unwrap_or("");
    let tail = raw_tail.trim_start_matches('/');
    let tail_at = request_path.len() - tail.len();
    let sep = (slash || tail.len() < raw_tail.len()) && !head.ends_with('/');

    let result: Cow<'a, str> = if tail.is_empty() && !sep {
        Cow::Borrowed(head)
    } else if (head == "/" && !sep) || (head.is_empty() && sep) {
        // "/" + tail: borrow it from the request path if a '/' precedes it.
        match tail_at.checked_sub(1) {
            Some(at) if request_path.as_bytes().get(at) == Some(&b'/') => {
                Cow::Borrowed(request_path.get(at..).unwrap_or(""))
            }
            _ => {
                let mut s = String::with_capacity(1 + tail.len());
                s.push('/');
                s.push_str(tail);
                Cow::Owned(s)
            }
        }
    } else {
        let mut s = String::with_capacity(head.len() + usize::from(sep) + tail.len());
        s.push_str(head);
        if sep {
            s.push('/');
        }
        s.push_str(tail);
        Cow::Owned(s)
    };

    if result.starts_with('/') {
        result
    } else {
        // Only reachable with an invalid service path (no leading '/') or a
        // relative request path: repair rather than emit a relative target.
        let mut s = String::with_capacity(1 + result.len());
        s.push('/');
        s.push_str(&result);
        Cow::Owned(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_table() {
        type Case = (&'static str, Result<&'static str, PathError>);
        let cases: &[Case] = &[
            // examples from the spec
            ("/api/public/../admin", Ok("/api/admin")),
            ("//a///b", Ok("/a/b")),
            ("/a/./b/../c", Ok("/a/c")),
            ("/%61pi", Ok("/api")),
            ("/a%2fb", Err(PathError::EncodedSlash)),
            ("/a/%2e%2e/b", Ok("/b")),
            ("/..", Ok("/")),
            ("/a/..", Ok("/")),
            ("/a%c3%a9", Ok("/a%C3%A9")),
            // identity
            ("/", Ok("/")),
            ("/a", Ok("/a")),
            ("/a/b/", Ok("/a/b/")),
            ("/a.b/c..d/...", Ok("/a.b/c..d/...")),
            ("/.well-known/x", Ok("/.well-known/x")),
            ("/caf\u{e9}/x", Ok("/caf\u{e9}/x")),
            // errors
            ("", Err(PathError::NotAbsolute)),
            ("a/b", Err(PathError::NotAbsolute)),
            ("*", Err(PathError::NotAbsolute)),
            ("../a", Err(PathError::NotAbsolute)),
            ("/a%2Fb", Err(PathError::EncodedSlash)),
            ("/a%5cb", Err(PathError::EncodedBackslash)),
            ("/a%5Cb", Err(PathError::EncodedBackslash)),
            ("/a%00", Err(PathError::EncodedNul)),
            ("/a%", Err(PathError::InvalidPercentEncoding)),
            ("/a%4", Err(PathError::InvalidPercentEncoding)),
            ("/a%zz", Err(PathError::InvalidPercentEncoding)),
            ("/a%g1/b", Err(PathError::InvalidPercentEncoding)),
            ("/a%%41", Err(PathError::InvalidPercentEncoding)),
            ("/a%\u{e9}", Err(PathError::InvalidPercentEncoding)),
            // errors win even when dot segments would drop the segment
            ("/a%2f/..", Err(PathError::EncodedSlash)),
            // decoding of unreserved characters, exactly once
            ("/%41%5a%61%7A%30%39%2D%2E%5F%7E", Ok("/AZaz09-._~")),
            ("/%2561", Ok("/%2561")),
            ("/a%25", Ok("/a%25")),
            ("/%3a%3B%40", Ok("/%3A%3B%40")),
            ("/%20x", Ok("/%20x")),
            ("/%0a", Ok("/%0A")),
            // dot segments
            ("/.", Ok("/")),
            ("/./", Ok("/")),
            ("/../", Ok("/")),
            ("/../../a", Ok("/a")),
            ("/a/.", Ok("/a/")),
            ("/a/./", Ok("/a/")),
            ("/a/b/..", Ok("/a/")),
            ("/a/b/../", Ok("/a/")),
            ("/a/b/../../../../c", Ok("/c")),
            ("/%2e", Ok("/")),
            ("/%2E%2e/x", Ok("/x")),
            ("/a/.%2e/b", Ok("/b")),
            ("/a/%2e./b", Ok("/b")),
            ("/a/%2e%2e%2e/b", Ok("/a/.../b")),
            // slash merging, with dots
            ("/a//", Ok("/a/")),
            ("//", Ok("/")),
            ("///..//a", Ok("/a")),
            ("/a//../b", Ok("/b")),
            ("/a/b//..", Ok("/a/")),
            ("//%2e%2e//%2e//a//", Ok("/a/")),
        ];
        for (input, expected) in cases {
            let got = normalize_path(input);
            assert_eq!(
                got.as_deref().map_err(|e| *e),
                *expected,
                "normalize_path({input:?})"
            );
        }
    }

    #[test]
    fn normalize_borrows_when_unchanged() {
        for input in [
            "/",
            "/a/b",
            "/a/b/",
            "/a%C3%A9/x%20y",
            "/a.b/..c/c..",
            "/%25",
        ] {
            assert!(
                matches!(normalize_path(input), Ok(Cow::Borrowed(s)) if s == input),
                "{input:?} should be borrowed"
            );
        }
        for input in ["/a//b", "/a/./b", "/a/..", "/%7e", "/%c3"] {
            assert!(
                matches!(normalize_path(input), Ok(Cow::Owned(_))),
                "{input:?} should be rewritten"
            );
        }
    }

    #[test]
    fn normalize_is_idempotent() {
        for input in [
            "/a/%2e%2e/b",
            "//x//%7e/./y/../z/",
            "/a%c3%a9/%2561",
            "/../%2E",
            "/p%3a/%41",
        ] {
            let once = normalize_path(input).map(Cow::into_owned);
            let Ok(once) = once else {
                panic!("{input:?} failed");
            };
            assert!(
                matches!(normalize_path(&once), Ok(Cow::Borrowed(_))),
                "{once:?}"
            );
        }
    }

    /// Exhaustive check over short paths built from the characters that
    /// matter: never panics, output is canonical and stable, and joining it
    /// upstream never yields "//" or a relative path.
    #[test]
    fn exhaustive_small_paths() {
        const ALPHABET: &[u8] = b"/.a%2Ee";
        let mut outputs = std::collections::BTreeSet::new();
        let mut buf = Vec::new();
        for len in 0..=5u32 {
            for mut n in 0..ALPHABET.len().pow(len) {
                buf.clear();
                buf.push(b'/');
                for _ in 0..len {
                    buf.push(ALPHABET[n % ALPHABET.len()]);
                    n /= ALPHABET.len();
                }
                let input = std::str::from_utf8(&buf).expect("ascii");
                let Ok(out) = normalize_path(input) else {
                    continue;
                };
                assert!(out.starts_with('/'), "{input:?} -> {out:?}");
                assert!(!out.contains("//"), "{input:?} -> {out:?}");
                for seg in out.split('/') {
                    assert!(seg != "." && seg != "..", "{input:?} -> {out:?}");
                    assert!(!seg.contains("%2E") && !seg.contains("%2e"), "{out:?}");
                }
                assert!(
                    matches!(normalize_path(&out), Ok(Cow::Borrowed(s)) if s == out),
                    "not idempotent: {input:?} -> {out:?}"
                );
                outputs.insert(out.into_owned());
            }
        }
        for req in &outputs {
            for matched in 0..=req.len() {
                for service in [None, Some("/"), Some("/s"), Some("/s/")] {
                    for strip in [false, true] {
                        for h in [PathHandling::V0, PathHandling::V1] {
                            let up = upstream_path(service, req, matched, strip, h);
                            assert!(
                                up.starts_with('/') && !up.contains("//"),
                                "{service:?} {req:?} {matched} {strip} {h:?} -> {up:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// (service path, route path, strip_path values, path_handling values,
    /// request path, expected upstream path)
    type FixtureRow = (
        &'static str,
        Option<&'static str>,
        &'static [bool],
        &'static [PathHandling],
        &'static str,
        &'static str,
    );

    /// Kong's `spec/fixtures/router_path_handling_tests.lua` (Kong/kong,
    /// commit 34c7dfdc29f759099ab6f022e86553f0e28eee10), expanded: a route
    /// path of `None` is a route that matched without a path.
    /// Columns: service path, route path, strip_path, path_handling,
    /// request path, expected upstream path.
    #[rustfmt::skip]
    const KONG_FIXTURE: &[FixtureRow] = {
        use PathHandling::{V0, V1};
        const B: &[bool] = &[false, true];
        const F: &[bool] = &[false];
        const T: &[bool] = &[true];
        const VV: &[PathHandling] = &[V0, V1];
        const V_0: &[PathHandling] = &[V0];
        const V_1: &[PathHandling] = &[V1];
        &[
            ("/",          Some("/"),        B, VV,  "/",           "/"),
            ("/",          Some("/"),        B, VV,  "/route",      "/route"),
            ("/",          Some("/"),        B, VV,  "/route/",     "/route/"),
            ("/",          Some("/"),        B, VV,  "/routereq",   "/routereq"),
            ("/",          Some("/"),        B, VV,  "/route/req",  "/route/req"),
            // 5
            ("/",          Some("/route"),   F, VV,  "/route",      "/route"),
            ("/",          Some("/route"),   F, VV,  "/route/",     "/route/"),
            ("/",          Some("/route"),   F, VV,  "/routereq",   "/routereq"),
            ("/",          Some("/route"),   T, VV,  "/route",      "/"),
            ("/",          Some("/route"),   T, VV,  "/route/",     "/"),
            ("/",          Some("/route"),   T, VV,  "/routereq",   "/req"),
            // 11
            ("/",          Some("/route/"),  F, VV,  "/route/",     "/route/"),
            ("/",          Some("/route/"),  F, VV,  "/route/req",  "/route/req"),
            ("/",          Some("/route/"),  T, VV,  "/route/",     "/"),
            ("/",          Some("/route/"),  T, VV,  "/route/req",  "/req"),
            // 15
            ("/srv",       Some("/rou"),     F, V_0, "/roureq",     "/srv/roureq"),
            ("/srv",       Some("/rou"),     F, V_1, "/roureq",     "/srvroureq"),
            ("/srv",       Some("/rou"),     T, V_0, "/roureq",     "/srv/req"),
            ("/srv",       Some("/rou"),     T, V_1, "/roureq",     "/srvreq"),
            // 19
            ("/srv/",      Some("/rou"),     F, VV,  "/rou",        "/srv/rou"),
            ("/srv/",      Some("/rou"),     T, V_0, "/rou",        "/srv"),
            ("/srv/",      Some("/rou"),     T, V_1, "/rou",        "/srv/"),
            // 22
            ("/service",   Some("/"),        B, VV,  "/",           "/service"),
            ("/service",   Some("/"),        B, V_0, "/route",      "/service/route"),
            ("/service",   Some("/"),        B, V_1, "/route",      "/serviceroute"),
            ("/service",   Some("/"),        B, V_0, "/route/",     "/service/route/"),
            ("/service",   Some("/"),        B, V_1, "/route/",     "/serviceroute/"),
            // 27
            ("/service",   Some("/"),        B, V_0, "/routereq",   "/service/routereq"),
            ("/service",   Some("/"),        B, V_1, "/routereq",   "/serviceroutereq"),
            ("/service",   Some("/"),        B, V_0, "/route/req",  "/service/route/req"),
            ("/service",   Some("/"),        B, V_1, "/route/req",  "/serviceroute/req"),
            // 31
            ("/service",   Some("/route"),   F, V_0, "/route",      "/service/route"),
            ("/service",   Some("/route"),   F, V_1, "/route",      "/serviceroute"),
            ("/service",   Some("/route"),   F, V_0, "/route/",     "/service/route/"),
            ("/service",   Some("/route"),   F, V_1, "/route/",     "/serviceroute/"),
            ("/service",   Some("/route"),   F, V_0, "/routereq",   "/service/routereq"),
            ("/service",   Some("/route"),   F, V_1, "/routereq",   "/serviceroutereq"),
            ("/service",   Some("/route"),   T, VV,  "/route",      "/service"),
            ("/service",   Some("/route"),   T, VV,  "/route/",     "/service/"),
            ("/service",   Some("/route"),   T, V_0, "/routereq",   "/service/req"),
            ("/service",   Some("/route"),   T, V_1, "/routereq",   "/servicereq"),
            // 41
            ("/service",   Some("/route/"),  F, V_0, "/route/",     "/service/route/"),
            ("/service",   Some("/route/"),  F, V_1, "/route/",     "/serviceroute/"),
            ("/service",   Some("/route/"),  F, V_0, "/route/req",  "/service/route/req"),
            ("/service",   Some("/route/"),  F, V_1, "/route/req",  "/serviceroute/req"),
            ("/service",   Some("/route/"),  T, V_0, "/route/",     "/service/"),
            ("/service",   Some("/route/"),  T, V_1, "/route/",     "/service"),
            ("/service",   Some("/route/"),  T, V_0, "/route/req",  "/service/req"),
            ("/service",   Some("/route/"),  T, V_1, "/route/req",  "/servicereq"),
            // 49
            ("/service/",  Some("/"),        B, V_0, "/route/",     "/service/route/"),
            ("/service/",  Some("/"),        B, V_1, "/route/",     "/service/route/"),
            ("/service/",  Some("/"),        B, VV,  "/",           "/service/"),
            ("/service/",  Some("/"),        B, VV,  "/route",      "/service/route"),
            ("/service/",  Some("/"),        B, VV,  "/routereq",   "/service/routereq"),
            ("/service/",  Some("/"),        B, VV,  "/route/req",  "/service/route/req"),
            // 55
            ("/service/",  Some("/route"),   F, VV,  "/route",      "/service/route"),
            ("/service/",  Some("/route"),   F, VV,  "/route/",     "/service/route/"),
            ("/service/",  Some("/route"),   F, VV,  "/routereq",   "/service/routereq"),
            ("/service/",  Some("/route"),   T, V_0, "/route",      "/service"),
            ("/service/",  Some("/route"),   T, V_1, "/route",      "/service/"),
            ("/service/",  Some("/route"),   T, VV,  "/route/",     "/service/"),
            ("/service/",  Some("/route"),   T, VV,  "/routereq",   "/service/req"),
            // 62
            ("/service/",  Some("/route/"),  F, VV,  "/route/",     "/service/route/"),
            ("/service/",  Some("/route/"),  F, VV,  "/route/req",  "/service/route/req"),
            ("/service/",  Some("/route/"),  T, VV,  "/route/",     "/service/"),
            ("/service/",  Some("/route/"),  T, VV,  "/route/req",  "/service/req"),
            // 66: matched on host, not on a path
            ("/",          None,             B, VV,  "/",           "/"),
            ("/",          None,             B, VV,  "/route",      "/route"),
            ("/",          None,             B, VV,  "/route/",     "/route/"),
            // 69
            ("/service",   None,             B, VV,  "/",           "/service"),
            ("/service",   None,             B, V_0, "/route",      "/service/route"),
            ("/service",   None,             B, V_1, "/route",      "/serviceroute"),
            ("/service",   None,             B, V_0, "/route/",     "/service/route/"),
            ("/service",   None,             B, V_1, "/route/",     "/serviceroute/"),
            // 74
            ("/service/",  None,             B, VV,  "/",           "/service/"),
            ("/service/",  None,             B, VV,  "/route",      "/service/route"),
            ("/service/",  None,             B, VV,  "/route/",     "/service/route/"),
        ]
    };

    /// The table of Kong's Admin API reference, "Path handling algorithms"
    /// (Route object). Columns: service path, route path, strip_path,
    /// path_handling, request path, proxied path. The docs row
    /// `/s /fv0/ false v0 /fv0/ → /s/fv01/` is a typo in the docs; Kong's
    /// code (and the fixture above) give `/s/fv0/`.
    #[rustfmt::skip]
    const KONG_DOCS_TABLE: &[(&str, &str, bool, PathHandling, &str, &str)] = {
        use PathHandling::{V0, V1};
        &[
            ("/s", "/fv0",  false, V0, "/fv0req",  "/s/fv0req"),
            ("/s", "/fv1",  false, V1, "/fv1req",  "/sfv1req"),
            ("/s", "/tv0",  true,  V0, "/tv0req",  "/s/req"),
            ("/s", "/tv1",  true,  V1, "/tv1req",  "/sreq"),
            ("/s", "/fv0/", false, V0, "/fv0/req", "/s/fv0/req"),
            ("/s", "/fv1/", false, V1, "/fv1/req", "/sfv1/req"),
            ("/s", "/tv0/", true,  V0, "/tv0/req", "/s/req"),
            ("/s", "/tv1/", true,  V1, "/tv1/req", "/sreq"),
            ("/s", "/fv0",  false, V0, "/fv0/req", "/s/fv0/req"),
            ("/s", "/fv0",  false, V0, "/fv0",     "/s/fv0"),
            ("/s", "/fv1",  false, V1, "/fv1/req", "/sfv1/req"),
            ("/s", "/fv1",  false, V1, "/fv1",     "/sfv1"),
            ("/s", "/tv0",  true,  V0, "/tv0/req", "/s/req"),
            ("/s", "/tv0",  true,  V0, "/tv0",     "/s"),
            ("/s", "/tv1",  true,  V1, "/tv1/req", "/s/req"),
            ("/s", "/tv1",  true,  V1, "/tv1",     "/s"),
            ("/s", "/fv0/", false, V0, "/fv0/req", "/s/fv0/req"),
            ("/s", "/fv0/", false, V0, "/fv0/",    "/s/fv0/"),
            ("/s", "/fv1/", false, V1, "/fv1/req", "/sfv1/req"),
            ("/s", "/fv1/", false, V1, "/fv1/",    "/sfv1/"),
            ("/s", "/tv0/", true,  V0, "/tv0/req", "/s/req"),
            ("/s", "/tv0/", true,  V0, "/tv0/",    "/s/"),
            ("/s", "/tv1/", true,  V1, "/tv1/req", "/sreq"),
            ("/s", "/tv1/", true,  V1, "/tv1/",    "/s"),
        ]
    };

    fn check(
        service: &str,
        route: Option<&str>,
        strip: bool,
        h: PathHandling,
        req: &str,
        want: &str,
    ) {
        let matched = route.map_or(0, str::len);
        assert!(
            req.starts_with(route.unwrap_or("")),
            "bad row {req} {route:?}"
        );
        let got = upstream_path(Some(service), req, matched, strip, h);
        assert_eq!(
            got, want,
            "service={service:?} route={route:?} strip_path={strip} {h:?} request={req:?}"
        );
        assert!(got.starts_with('/'));
    }

    #[test]
    fn upstream_path_kong_fixture() {
        let mut n = 0;
        for &(service, route, strips, handlings, req, want) in KONG_FIXTURE {
            for &strip in strips {
                for &h in handlings {
                    check(service, route, strip, h, req, want);
                    n += 1;
                }
            }
        }
        assert_eq!(n, 164, "76 fixture rows expand to 164 cases");
    }

    #[test]
    fn upstream_path_kong_docs_table() {
        for &(service, route, strip, h, req, want) in KONG_DOCS_TABLE {
            check(service, Some(route), strip, h, req, want);
        }
    }

    #[test]
    fn upstream_path_extra_cases() {
        use PathHandling::{V0, V1};
        #[rustfmt::skip]
        type Case = (Option<&'static str>, &'static str, usize, bool, PathHandling, &'static str);
        let cases: &[Case] = &[
            // missing / empty service path means "/"
            (None, "/a/b", 2, true, V0, "/b"),
            (Some(""), "/a/b", 2, false, V0, "/a/b"),
            (None, "/", 0, true, V1, "/"),
            // Kong's sanitize_uri_postfix: a leading "." / ".." postfix segment is dropped
            (Some("/s"), "/r..", 2, true, V0, "/s"),
            (Some("/s"), "/r../x", 2, true, V0, "/s/x"),
            (Some("/s"), "/r./x", 2, true, V1, "/sx"),
            (Some("/s/"), "/r..", 2, true, V0, "/s"),
            // matched length past the end is clamped; not on a char boundary = no path match
            (Some("/s"), "/r", 9, true, V0, "/s"),
            (Some("/s"), "/\u{e9}x", 2, true, V0, "/s/\u{e9}x"),
            // never a double slash at the join, even with non-normalised input
            (Some("/s/"), "//x", 0, false, V0, "/s/x"),
            (Some("/s/"), "/r//x", 2, true, V0, "/s/x"),
            (Some("/s/"), "/r//x", 2, true, V1, "/s/x"),
            (Some("/s"), "/r//x", 2, true, V0, "/s/x"),
            (Some("/s/"), "//x", 0, false, V1, "/s/x"),
            // always a leading slash, even with an invalid service path
            (Some("s"), "/x", 0, false, V0, "/s/x"),
            (Some("s"), "/x", 0, false, V1, "/sx"),
            (Some("s/"), "/x", 2, true, V0, "/s"),
            (Some("/"), "x", 0, false, V0, "/x"),
            (Some("/"), "", 0, true, V0, "/"),
            (Some("/s"), "", 0, false, V1, "/s"),
        ];
        for &(service, req, matched, strip, h, want) in cases {
            let got = upstream_path(service, req, matched, strip, h);
            assert_eq!(got, want, "{service:?} {req:?} {matched} {strip} {h:?}");
        }
    }

    #[test]
    fn upstream_path_borrows_when_possible() {
        use PathHandling::{V0, V1};
        let borrowed = |c: Cow<'_, str>| matches!(c, Cow::Borrowed(_));
        // service path "/" forwards (a suffix of) the request path as is
        assert!(borrowed(upstream_path(None, "/a/b", 0, false, V0)));
        assert!(borrowed(upstream_path(Some("/"), "/a/b", 2, true, V0)));
        assert!(borrowed(upstream_path(Some("/"), "/a/b", 2, true, V1)));
        assert!(borrowed(upstream_path(Some("/"), "/a/b", 0, true, V1)));
        // whole request stripped: the service path itself
        assert!(borrowed(upstream_path(Some("/s"), "/a", 2, true, V0)));
        assert!(borrowed(upstream_path(Some("/s/"), "/a", 2, true, V0)));
        assert!(borrowed(upstream_path(Some("/s"), "/", 0, false, V0)));
        // a real join allocates
        assert!(!borrowed(upstream_path(Some("/s"), "/a", 0, false, V0)));
    }
}
