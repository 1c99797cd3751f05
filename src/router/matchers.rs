//! Header and query-parameter criteria, and the query-string decoder they use.
//!
//! Contract:
//! - A value starting with `~*` is a regex (matched case-insensitively, unanchored unless the
//!   regex anchors itself); any other value is a literal. Header literals compare ASCII
//!   case-insensitively, query literals byte-exactly (after percent-decoding).
//! - [`HeaderMatcher`] matches when any occurrence of its header matches any of its values
//!   (an empty value list means "header present").
//! - [`QueryMatcher`] scans the raw query (`a=1&b=2`; `+` and `%XX` decoded in names and values,
//!   malformed escapes kept literally, a pair without `=` has the value `""`) and matches when
//!   any occurrence of its parameter matches any value (empty list means "present").
//!   Matching allocates only when a regex needs the decoded form of an escaped value.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName};
use regex::bytes::{Regex, RegexBuilder};

/// Compiled-program size limit for every regex of a route (1 MiB).
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One accepted value of a header or query parameter.
#[derive(Debug, Clone)]
pub(crate) enum ValueMatcher {
    Literal(Box<[u8]>),
    Regex(Regex),
}

impl ValueMatcher {
    /// Parses a configured value (`~*regex` or a literal).
    pub(crate) fn parse(value: &str) -> Result<ValueMatcher, String> {
        match value.strip_prefix("~*") {
            None => Ok(ValueMatcher::Literal(value.as_bytes().into())),
            Some(re) => RegexBuilder::new(re)
                .case_insensitive(true)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map(ValueMatcher::Regex)
                .map_err(|e| format!("invalid regex '{re}': {e}")),
        }
    }

    #[inline]
    fn matches(&self, value: &[u8], ascii_ci: bool) -> bool {
        match self {
            ValueMatcher::Literal(lit) if ascii_ci => lit.eq_ignore_ascii_case(value),
            ValueMatcher::Literal(lit) => **lit == *value,
            ValueMatcher::Regex(re) => re.is_match(value),
        }
    }
}

/// A required header: name plus accepted values.
#[derive(Debug, Clone)]
pub(crate) struct HeaderMatcher {
    pub name: HeaderName,
    pub values: Box<[ValueMatcher]>,
}

impl HeaderMatcher {
    #[inline]
    pub(crate) fn matches(&self, headers: &HeaderMap) -> bool {
        let mut all = headers.get_all(&self.name).iter();
        if self.values.is_empty() {
            return all.next().is_some();
        }
        all.any(|hv| self.values.iter().any(|v| v.matches(hv.as_bytes(), true)))
    }
}

/// A required query parameter: decoded name plus accepted values.
#[derive(Debug, Clone)]
pub(crate) struct QueryMatcher {
    pub name: Box<[u8]>,
    pub values: Box<[ValueMatcher]>,
}

impl QueryMatcher {
    pub(crate) fn matches(&self, query: Option<&str>) -> bool {
        let Some(query) = query else {
            return false;
        };
        for pair in query.as_bytes().split(|&b| b == b'&') {
            if pair.is_empty() {
                continue;
            }
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            if !Decoded(name).eq_bytes(&self.name) {
                continue;
            }
            if self.values.is_empty() {
                return true;
            }
            let decoded = Decoded(value);
            let hit = self.values.iter().any(|v| match v {
                ValueMatcher::Literal(lit) => decoded.eq_bytes(lit),
                ValueMatcher::Regex(_) => v.matches(&decoded.to_cow(), false),
            });
            if hit {
                return true;
            }
        }
        false
    }
}

/// A percent-encoded query component (`+` is a space).
#[derive(Debug, Clone, Copy)]
struct Decoded<'a>(&'a [u8]);

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl<'a> Decoded<'a> {
    fn needs_decoding(self) -> bool {
        self.0.iter().any(|&b| b == b'%' || b == b'+')
    }

    /// Decoded bytes, one at a time.
    fn bytes(self) -> impl Iterator<Item = u8> + 'a {
        let raw = self.0;
        let mut i = 0;
        std::iter::from_fn(move || {
            let b = *raw.get(i)?;
            i += 1;
            Some(match b {
                b'+' => b' ',
                b'%' => match (
                    raw.get(i).copied().and_then(hex),
                    raw.get(i + 1).copied().and_then(hex),
                ) {
                    (Some(h), Some(l)) => {
                        i += 2;
                        (h << 4) | l
                    }
                    _ => b'%',
                },
                _ => b,
            })
        })
    }

    fn eq_bytes(self, want: &[u8]) -> bool {
        if !self.needs_decoding() {
            return self.0 == want;
        }
        let mut it = self.bytes();
        want.iter().all(|&w| it.next() == Some(w)) && it.next().is_none()
    }

    fn to_cow(self) -> Cow<'a, [u8]> {
        if self.needs_decoding() {
            Cow::Owned(self.bytes().collect())
        } else {
            Cow::Borrowed(self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn decode(s: &str) -> Vec<u8> {
        Decoded(s.as_bytes()).to_cow().into_owned()
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(decode("a+b%20c"), b"a b c");
        assert_eq!(decode("%41%6a"), b"Aj");
        assert_eq!(decode("100%"), b"100%");
        assert_eq!(decode("%zz%4"), b"%zz%4");
        assert_eq!(decode("%C3%A9"), "é".as_bytes());
        assert!(Decoded(b"a%2Bb").eq_bytes(b"a+b"));
        assert!(!Decoded(b"a%2Bb").eq_bytes(b"a+bc"));
        assert!(!Decoded(b"a%2Bbc").eq_bytes(b"a+b"));
        assert!(Decoded(b"plain").eq_bytes(b"plain"));
    }

    fn query(name: &str, values: &[&str]) -> QueryMatcher {
        let values: Result<Vec<_>, _> = values.iter().map(|v| ValueMatcher::parse(v)).collect();
        QueryMatcher {
            name: name.as_bytes().into(),
            values: values.unwrap_or_default().into(),
        }
    }

    #[test]
    fn query_matching() {
        let m = query("region", &["eu-west"]);
        assert!(m.matches(Some("region=eu-west")));
        assert!(m.matches(Some("a=1&&region=us&region=eu-west")));
        assert!(m.matches(Some("re%67ion=eu%2Dwest")));
        assert!(!m.matches(Some("region=EU-WEST")));
        assert!(!m.matches(Some("region")));
        assert!(!m.matches(Some("regions=eu-west")));
        assert!(!m.matches(None));
        let any = query("debug", &[]);
        assert!(any.matches(Some("debug")));
        assert!(any.matches(Some("x=1&debug=")));
        assert!(!any.matches(Some("x=debug")));
        let re = query("q", &["~*^hello w"]);
        assert!(re.matches(Some("q=HELLO+World")));
        assert!(re.matches(Some("q=hello%20w")));
        assert!(!re.matches(Some("q=xhello+w")));
        let empty = query("e", &[""]);
        assert!(empty.matches(Some("e")));
        assert!(empty.matches(Some("e=")));
        assert!(!empty.matches(Some("e=1")));
    }

    #[test]
    fn header_matching() {
        let mut h = HeaderMap::new();
        h.append("x-version", HeaderValue::from_static("V1"));
        h.append("x-version", HeaderValue::from_static("beta-2"));
        let lit = HeaderMatcher {
            name: HeaderName::from_static("x-version"),
            values: vec![ValueMatcher::Literal((*b"v1").into())].into(),
        };
        assert!(lit.matches(&h));
        let re = ValueMatcher::parse("~*^BETA-\\d$").unwrap_or(ValueMatcher::Literal([].into()));
        assert!(matches!(re, ValueMatcher::Regex(_)));
        let rem = HeaderMatcher {
            name: HeaderName::from_static("x-version"),
            values: vec![re].into(),
        };
        assert!(rem.matches(&h));
        let present = HeaderMatcher {
            name: HeaderName::from_static("x-version"),
            values: [].into(),
        };
        assert!(present.matches(&h));
        let absent = HeaderMatcher {
            name: HeaderName::from_static("x-other"),
            values: [].into(),
        };
        assert!(!absent.matches(&h));
        assert!(ValueMatcher::parse("~*(").is_err());
    }
}
