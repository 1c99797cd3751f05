//! Validation and compilation of a [`RouteSpec`] into the router's internal form.
//!
//! Contract: [`compile`] either returns a [`CompiledRoute`] whose every criterion is ready to
//! match, or the complete list of problems in the spec (never just the first), each with a
//! field path relative to the route (`paths[1]`, `hosts[0]`, `methods[2]`,
//! `headers.X-Name`, `headers.X-Name[0]`, `query_params.name[0]`, `@entity` for the route as a
//! whole). Regex paths become `^(?:regex)` (anchored at the path start, like Kong); regexes
//! that are only a literal are recognised so that they can be indexed ([`PathSpec::Literal`]),
//! and other regexes carry the literal prefix all their matches share (see `literal.rs`).

use http::{HeaderName, Method};
use regex::{Regex, RegexBuilder};

use super::host::{HostPattern, parse_route_host};
use super::literal::{literal_of_regex, literal_prefix_of_regex};
use super::matchers::{HeaderMatcher, QueryMatcher, REGEX_SIZE_LIMIT, ValueMatcher};
use super::{RouteSpec, RouteSpecError};

/// A path regex that is not a plain literal.
#[derive(Debug, Clone)]
pub(crate) struct PathRegex {
    /// Compiled as `^(?:source)`.
    pub regex: Regex,
    /// Whether the regex has capture groups (captures are reported only then).
    pub has_groups: bool,
    /// A literal every match starts with (may be empty); used to index the regex.
    pub prefix: Box<str>,
}

/// One compiled entry of a route's `paths`.
#[derive(Debug, Clone)]
pub(crate) enum PathSpec {
    /// A plain (byte) prefix path.
    Prefix(Box<str>),
    /// A regex path that is just a literal: a prefix, or an exact path when it ended in `$`.
    Literal { literal: Box<str>, exact: bool },
    /// Any other regex path.
    Regex(Box<PathRegex>),
}

impl PathSpec {
    pub(crate) fn is_regex(&self) -> bool {
        !matches!(self, PathSpec::Prefix(_))
    }
}

/// A validated route, before indexing.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRoute {
    pub methods: Box<[Method]>,
    pub headers: Box<[HeaderMatcher]>,
    pub query: Box<[QueryMatcher]>,
    pub hosts: Vec<HostPattern>,
    pub paths: Vec<PathSpec>,
    /// Number of non-empty criteria among methods/hosts/paths/headers/query_params.
    pub criteria: u8,
    /// The route has hosts and none is a wildcard.
    pub plain_hosts: bool,
    pub regex_priority: i64,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> RouteSpecError {
    RouteSpecError {
        field: field.into(),
        message: message.into(),
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn compile_method(m: &str) -> Result<Method, String> {
    let bytes = m.as_bytes();
    let valid = !bytes.is_empty()
        && bytes
            .iter()
            .all(|&b| is_tchar(b) && !b.is_ascii_lowercase());
    if !valid {
        return Err(format!(
            "invalid method '{m}': must be an uppercase HTTP token"
        ));
    }
    Method::from_bytes(bytes).map_err(|e| format!("invalid method '{m}': {e}"))
}

fn compile_path(p: &str) -> Result<PathSpec, String> {
    if let Some(re) = p.strip_prefix('~') {
        let regex = RegexBuilder::new(&format!("^(?:{re})"))
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| format!("invalid regex '{re}': {e}"))?;
        // The regex compiled, so a literal-looking source really is that literal.
        if let Some((literal, exact)) = literal_of_regex(re) {
            return Ok(PathSpec::Literal {
                literal: literal.into(),
                exact,
            });
        }
        let has_groups = regex.captures_len() > 1;
        let prefix = literal_prefix_of_regex(re).into_boxed_str();
        return Ok(PathSpec::Regex(Box::new(PathRegex {
            regex,
            has_groups,
            prefix,
        })));
    }
    if !p.starts_with('/') {
        return Err(format!(
            "invalid path '{p}': must start with '/' (prefix path) or '~' (regex path)"
        ));
    }
    if let Some(c) = p
        .chars()
        .find(|&c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        return Err(format!("invalid path '{p}': must not contain {c:?}"));
    }
    Ok(PathSpec::Prefix(p.into()))
}

fn compile_values(
    field: &str,
    values: &[String],
    errors: &mut Vec<RouteSpecError>,
) -> Box<[ValueMatcher]> {
    let mut out = Vec::with_capacity(values.len());
    for (j, v) in values.iter().enumerate() {
        match ValueMatcher::parse(v) {
            Ok(m) => out.push(m),
            Err(e) => errors.push(err(format!("{field}[{j}]"), e)),
        }
    }
    out.into()
}

/// Validates `spec` and compiles it; see the module docs.
pub(crate) fn compile(spec: &RouteSpec) -> Result<CompiledRoute, Vec<RouteSpecError>> {
    let mut errors = Vec::new();

    let mut methods = Vec::with_capacity(spec.methods.len());
    for (i, m) in spec.methods.iter().enumerate() {
        match compile_method(m) {
            Ok(m) => methods.push(m),
            Err(e) => errors.push(err(format!("methods[{i}]"), e)),
        }
    }

    let mut hosts = Vec::with_capacity(spec.hosts.len());
    for (i, h) in spec.hosts.iter().enumerate() {
        match parse_route_host(h) {
            Ok(p) => hosts.push(p),
            Err(e) => errors.push(err(format!("hosts[{i}]"), e)),
        }
    }

    let mut paths = Vec::with_capacity(spec.paths.len());
    for (i, p) in spec.paths.iter().enumerate() {
        match compile_path(p) {
            Ok(p) => paths.push(p),
            Err(e) => errors.push(err(format!("paths[{i}]"), e)),
        }
    }

    let mut headers: Vec<HeaderMatcher> = Vec::with_capacity(spec.headers.len());
    for (name, values) in &spec.headers {
        let field = format!("headers.{name}");
        let values = compile_values(&field, values, &mut errors);
        if name.eq_ignore_ascii_case("host") {
            errors.push(err(
                field,
                "cannot contain 'host' header, which must be specified in the 'hosts' attribute",
            ));
            continue;
        }
        match HeaderName::from_bytes(name.as_bytes()) {
            Err(_) => errors.push(err(field, format!("invalid header name '{name}'"))),
            Ok(hn) if headers.iter().any(|h| h.name == hn) => {
                errors.push(err(
                    field,
                    "duplicate header name (names are case-insensitive)",
                ));
            }
            Ok(hn) => headers.push(HeaderMatcher { name: hn, values }),
        }
    }

    let mut query: Vec<QueryMatcher> = Vec::with_capacity(spec.query_params.len());
    for (i, (name, values)) in spec.query_params.iter().enumerate() {
        if name.is_empty() {
            errors.push(err(
                format!("query_params[{i}]"),
                "parameter name must not be empty",
            ));
            continue;
        }
        let field = format!("query_params.{name}");
        let values = compile_values(&field, values, &mut errors);
        if query.iter().any(|q| *q.name == *name.as_bytes()) {
            errors.push(err(field, "duplicate query parameter name"));
            continue;
        }
        query.push(QueryMatcher {
            name: name.as_bytes().into(),
            values,
        });
    }

    let criteria = [
        spec.methods.is_empty(),
        spec.hosts.is_empty(),
        spec.paths.is_empty(),
        spec.headers.is_empty(),
        spec.query_params.is_empty(),
    ]
    .iter()
    .filter(|empty| !**empty)
    .count();
    if criteria == 0 {
        errors.push(err(
            "@entity",
            "must set one of 'methods', 'hosts', 'headers', 'paths', 'query_params'",
        ));
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    let plain_hosts = !hosts.is_empty() && hosts.iter().all(|h| !h.is_wildcard());
    Ok(CompiledRoute {
        methods: methods.into(),
        headers: headers.into(),
        query: query.into(),
        hosts,
        paths,
        criteria: u8::try_from(criteria).unwrap_or(u8::MAX),
        plain_hosts,
        regex_priority: spec.regex_priority,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_must_be_uppercase_tokens() {
        assert!(compile_method("GET").is_ok());
        assert!(compile_method("M-SEARCH").is_ok());
        for bad in ["get", "Get", "", "GE T", "GET\n", "G(ET"] {
            assert!(compile_method(bad).is_err(), "{bad:?}");
        }
    }
}
