//! Request router: picks the route for a request, Kong 3 `traditional_compatible` style.
//!
//! Contract:
//! - Routes are described by [`RouteSpec`], validated and added with [`RouterBuilder::add`]
//!   (all problems are reported at once) and frozen into an immutable, `Send + Sync`
//!   [`Router`] by [`RouterBuilder::build`].
//! - [`Router::find`] returns the highest-precedence route whose criteria all match (AND
//!   across criteria, OR within one); a criterion a route does not set matches anything.
//!   Precedence is computed per (route, path) pair, descending by
//!   `(criteria count, all hosts plain, header count, path is regex, regex_priority, prefix
//!   length)`, then ascending route id, then declaration order (see `priority.rs`).
//! - If nothing matches but some routes would have matched except for their `methods`, the
//!   answer is [`RouteMatch::MethodNotAllowed`] with the sorted union of those methods;
//!   otherwise [`RouteMatch::NotFound`].
//! - Lookup cost does not grow with the number of prefix/exact-path routes or exact hosts:
//!   routes are bucketed by host (see `host.rs`) and, per bucket, by path (see `index.rs`,
//!   `radix.rs`). Regex paths are indexed under their literal prefix (see `literal.rs`);
//!   only regexes without one (e.g. `~/(a|b)/x`) and path-less routes of a matching host
//!   bucket are scanned (pre-filtered by a `RegexSet` when numerous).
//!   `find` does not allocate unless a regex path, a spilled candidate list (> 32
//!   candidates), a 405 answer or an escaped query value checked by a regex needs it.

mod compile;
mod host;
mod index;
mod literal;
mod matchers;
mod priority;
mod radix;

#[cfg(test)]
mod test_util;
#[cfg(test)]
mod tests_match;
#[cfg(test)]
mod tests_precedence;
#[cfg(test)]
mod tests_scale;
#[cfg(test)]
mod tests_validation;

use std::fmt;

use http::{HeaderMap, Method};

use compile::{CompiledRoute, PathSpec, compile};
use host::{HostIndex, with_request_host};
use index::{CandBuf, Entry, EntryPath, PathIndex};
use matchers::{HeaderMatcher, QueryMatcher};
use priority::{PriorityInput, priority_key};

/// The matching criteria of one route (Kong's route fields relevant to routing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteSpec {
    /// `example.com`, `example.com:8080`, `*.example.com`, `example.*`, `[::1]:8000`.
    pub hosts: Vec<String>,
    /// `/api` (byte prefix) or `~/users/(?<id>\d+)$` (regex anchored at the path start).
    pub paths: Vec<String>,
    /// Uppercase HTTP method tokens, matched exactly.
    pub methods: Vec<String>,
    /// Header name → accepted values (`~*regex` for a case-insensitive regex; literals compare
    /// case-insensitively). An empty list means "header present".
    pub headers: Vec<(String, Vec<String>)>,
    /// Query parameter name → accepted decoded values (`~*regex` as for headers; literals
    /// compare exactly). An empty list means "parameter present, any value".
    pub query_params: Vec<(String, Vec<String>)>,
    /// Orders regex paths among otherwise equal routes (higher first).
    pub regex_priority: i64,
    /// The route does not match requests that came over TLS (its `protocols` name no TLS
    /// scheme), so that they find the next route instead. Routes for TLS only still match
    /// plain requests: the handler answers those with 426 or a redirect, as Kong does.
    pub plain_only: bool,
}

/// One problem found in a [`RouteSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpecError {
    /// Field path relative to the route: `paths[1]`, `hosts[0]`, `methods[0]`,
    /// `headers.X-API-Version` (name problems), `headers.X-API-Version[0]` (value problems),
    /// `query_params.region[0]`, `query_params[2]` (empty name), or `@entity` for the route as
    /// a whole (as in Kong's flattened errors).
    pub field: String,
    pub message: String,
}

impl fmt::Display for RouteSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for RouteSpecError {}

/// The parts of a request the router looks at.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a Method,
    /// Host header (or URI authority); may carry `:port`; may be empty; case-insensitive.
    pub host: &'a str,
    /// Already normalised path, without query.
    pub path: &'a str,
    /// Raw query string without `?`, percent-encoded.
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// The request came over TLS (its scheme is `https`).
    pub tls: bool,
}

/// The outcome of [`Router::find`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMatch {
    Matched(Matched),
    /// Some routes matched everything but their methods; `allow` is the sorted, deduplicated
    /// union of their methods (sorted by method name).
    MethodNotAllowed {
        allow: Vec<Method>,
    },
    NotFound,
}

/// A successful match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    /// The `id` given to [`RouterBuilder::add`].
    pub route: usize,
    /// Bytes of `path` consumed by the matching path criterion: prefix length for prefix
    /// paths, end of the regex match for regex paths; 0 when the route has no paths.
    pub matched_path_len: usize,
    /// Only for regex paths that have capture groups: Kong's `uri_captures`.
    pub captures: Option<Box<Captures>>,
}

/// Capture groups of a regex path match (Kong's `uri_captures`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captures {
    /// Positional groups in order: `unnamed[i]` is group `i + 1`, i.e. Kong's
    /// `uri_captures[i + 1]`. As in Kong (PCRE numbering) a named group also holds its
    /// position here. A group that did not participate is `""`. The whole match (group 0)
    /// is `path[..matched_path_len]`.
    pub unnamed: Vec<String>,
    /// Named groups in pattern order (`(?<name>...)` or `(?P<name>...)`); a group that did
    /// not participate is `""`.
    pub named: Vec<(String, String)>,
}

/// The criteria of a route that are checked after the index lookup.
#[derive(Debug)]
struct RouteData {
    id: usize,
    methods: Box<[Method]>,
    headers: Box<[HeaderMatcher]>,
    query: Box<[QueryMatcher]>,
    plain_only: bool,
}

impl RouteData {
    /// Whether the route takes requests of this scheme at all.
    #[inline]
    fn scheme_matches(&self, tls: bool) -> bool {
        !(tls && self.plain_only)
    }

    #[inline]
    fn method_matches(&self, method: &Method) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m == method)
    }

    #[inline]
    fn headers_and_query_match(&self, req: &RequestView<'_>) -> bool {
        self.headers.iter().all(|h| h.matches(req.headers))
            && self.query.iter().all(|q| q.matches(req.query))
    }
}

/// One (route, path) pair awaiting ranking.
#[derive(Debug)]
struct Pending {
    key: u128,
    id: usize,
    route: u32,
    path: Option<PathSpec>,
}

/// Collects validated routes; see [`RouterBuilder::add`].
#[derive(Debug, Default)]
pub struct RouterBuilder {
    routes: Vec<RouteData>,
    hosts: Vec<Vec<host::HostPattern>>,
    pending: Vec<Pending>,
}

impl RouterBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates `spec` and adds it as route `id`.
    ///
    /// `id` is the caller's route index (returned on match; ties are broken by lower id =
    /// declaration order). On error nothing is added and ALL problems found are returned.
    pub fn add(&mut self, id: usize, spec: &RouteSpec) -> Result<(), Vec<RouteSpecError>> {
        let compiled = compile(spec)?;
        let route = u32::try_from(self.routes.len()).map_err(|_| {
            vec![RouteSpecError {
                field: "@entity".into(),
                message: "too many routes".into(),
            }]
        })?;
        let CompiledRoute {
            methods,
            headers,
            query,
            hosts,
            paths,
            criteria,
            plain_hosts,
            regex_priority,
        } = compiled;
        let base = PriorityInput {
            criteria,
            plain_hosts,
            header_count: headers.len(),
            regex: false,
            regex_priority,
            path_len: 0,
        };
        if paths.is_empty() {
            let key = priority_key(&base);
            self.pending.push(Pending {
                key,
                id,
                route,
                path: None,
            });
        }
        for path in paths {
            let input = match &path {
                PathSpec::Prefix(p) => PriorityInput {
                    path_len: p.len(),
                    ..base
                },
                _ => PriorityInput {
                    regex: path.is_regex(),
                    ..base
                },
            };
            let key = priority_key(&input);
            self.pending.push(Pending {
                key,
                id,
                route,
                path: Some(path),
            });
        }
        self.routes.push(RouteData {
            id,
            methods,
            headers,
            query,
            plain_only: spec.plain_only,
        });
        self.hosts.push(hosts);
        Ok(())
    }

    /// Ranks all (route, path) pairs and builds the indexes.
    pub fn build(self) -> Router {
        let RouterBuilder {
            routes,
            hosts,
            mut pending,
        } = self;
        // Stable: equal (key, id) keep declaration order.
        pending.sort_by(|a, b| b.key.cmp(&a.key).then(a.id.cmp(&b.id)));
        let mut index: HostIndex<PathIndex> = HostIndex::default();
        let mut entries = Vec::with_capacity(pending.len());
        for (rank, p) in pending.iter().enumerate() {
            // `add` bounds routes to u32; pairs beyond u32::MAX cannot be ranked.
            let Ok(rank) = u32::try_from(rank) else { break };
            let route_hosts = hosts
                .get(p.route as usize)
                .map(Vec::as_slice)
                .unwrap_or_default();
            if route_hosts.is_empty() {
                index.bucket_mut(None).insert(rank, p.path.as_ref());
            }
            for h in route_hosts {
                index.bucket_mut(Some(h)).insert(rank, p.path.as_ref());
            }
            entries.push(Entry::new(p.route, p.path.as_ref()));
        }
        index.for_each_mut(|b| b.finish(&entries));
        Router {
            routes: routes.into(),
            entries: entries.into(),
            index,
        }
    }
}

/// An immutable routing table; see the module docs.
#[derive(Debug)]
pub struct Router {
    routes: Box<[RouteData]>,
    /// All (route, path) pairs in precedence order: the index of an entry is its rank.
    entries: Box<[Entry]>,
    index: HostIndex<PathIndex>,
}

impl Default for Router {
    fn default() -> Self {
        RouterBuilder::new().build()
    }
}

impl Router {
    /// Number of routes added.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Finds the route for `req`; see the module docs.
    pub fn find(&self, req: &RequestView<'_>) -> RouteMatch {
        let mut cands = CandBuf::new();
        match self.index.only_any() {
            Some(bucket) => bucket.collect(req.path, &mut cands),
            None => with_request_host(req.host, |host| {
                self.index
                    .for_each_match(&host, |bucket| bucket.collect(req.path, &mut cands));
            }),
        }
        let cands = cands.sorted();
        for &rank in cands {
            let Some((entry, route)) = self.entry(rank) else {
                continue;
            };
            if !route.scheme_matches(req.tls)
                || !route.method_matches(req.method)
                || !route.headers_and_query_match(req)
            {
                continue;
            }
            if let Some(m) = self.matched(entry, route, req.path) {
                return RouteMatch::Matched(m);
            }
        }
        self.not_matched(cands, req)
    }

    #[inline]
    fn entry(&self, rank: u32) -> Option<(&Entry, &RouteData)> {
        let entry = self.entries.get(rank as usize)?;
        Some((entry, self.routes.get(entry.route as usize)?))
    }

    /// Checks the entry's path (a no-op except for regexes) and builds the match.
    #[inline]
    fn matched(&self, entry: &Entry, route: &RouteData, path: &str) -> Option<Matched> {
        let EntryPath::Regex(re) = &entry.path else {
            let matched_path_len = entry.match_path(path)?;
            return Some(Matched {
                route: route.id,
                matched_path_len,
                captures: None,
            });
        };
        if !re.has_groups {
            let end = re.regex.find(path)?.end();
            return Some(Matched {
                route: route.id,
                matched_path_len: end,
                captures: None,
            });
        }
        let caps = re.regex.captures(path)?;
        let text =
            |m: Option<regex::Match<'_>>| m.map_or_else(String::new, |m| m.as_str().to_owned());
        let unnamed = caps.iter().skip(1).map(text).collect();
        let named = re
            .regex
            .capture_names()
            .flatten()
            .map(|name| (name.to_owned(), text(caps.name(name))))
            .collect();
        Some(Matched {
            route: route.id,
            matched_path_len: caps.get(0).map_or(0, |m| m.end()),
            captures: Some(Box::new(Captures { unnamed, named })),
        })
    }

    /// 405 if some candidate failed only on its methods, else 404.
    #[cold]
    fn not_matched(&self, cands: &[u32], req: &RequestView<'_>) -> RouteMatch {
        let mut allow: Vec<Method> = Vec::new();
        for &rank in cands {
            let Some((entry, route)) = self.entry(rank) else {
                continue;
            };
            if !route.scheme_matches(req.tls)
                || route.methods.is_empty()
                || route.methods.iter().all(|m| allow.contains(m))
            {
                continue;
            }
            if route.headers_and_query_match(req) && entry.match_path(req.path).is_some() {
                allow.extend(route.methods.iter().cloned());
            }
        }
        if allow.is_empty() {
            return RouteMatch::NotFound;
        }
        allow.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        allow.dedup();
        RouteMatch::MethodNotAllowed { allow }
    }
}
