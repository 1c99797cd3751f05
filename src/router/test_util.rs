//! Test helpers: terse route specs, requests and lookups.
//!
//! Contract: test-only; panics are fine here. `Spec` builds a [`RouteSpec`] fluently, `router`
//! builds a [`Router`] from specs with ids 0..n, and `Req` describes a request for `find`.

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::{RequestView, RouteMatch, RouteSpec, Router, RouterBuilder};

/// Fluent [`RouteSpec`] builder.
#[derive(Debug, Clone, Default)]
pub(crate) struct Spec(pub RouteSpec);

pub(crate) fn spec() -> Spec {
    Spec::default()
}

impl Spec {
    /// The route's protocols name no TLS scheme.
    pub(crate) fn plain_only(mut self) -> Self {
        self.0.plain_only = true;
        self
    }
    pub(crate) fn host(mut self, h: &str) -> Self {
        self.0.hosts.push(h.into());
        self
    }
    pub(crate) fn path(mut self, p: &str) -> Self {
        self.0.paths.push(p.into());
        self
    }
    pub(crate) fn method(mut self, m: &str) -> Self {
        self.0.methods.push(m.into());
        self
    }
    pub(crate) fn header(mut self, name: &str, values: &[&str]) -> Self {
        self.0.headers.push((
            name.into(),
            values.iter().map(|v| (*v).to_owned()).collect(),
        ));
        self
    }
    pub(crate) fn query(mut self, name: &str, values: &[&str]) -> Self {
        self.0.query_params.push((
            name.into(),
            values.iter().map(|v| (*v).to_owned()).collect(),
        ));
        self
    }
    pub(crate) fn prio(mut self, p: i64) -> Self {
        self.0.regex_priority = p;
        self
    }
}

/// Builds a router with route ids `0..specs.len()` in order.
pub(crate) fn router(specs: &[Spec]) -> Router {
    let mut b = RouterBuilder::new();
    for (i, s) in specs.iter().enumerate() {
        if let Err(e) = b.add(i, &s.0) {
            panic!("route {i} rejected: {e:?}");
        }
    }
    b.build()
}

/// A request description.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub method: Method,
    pub host: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub tls: bool,
}

pub(crate) fn req(method: &str, host: &str, path: &str) -> Req {
    Req {
        method: Method::from_bytes(method.as_bytes()).expect("method"),
        host: host.into(),
        path: path.into(),
        query: None,
        headers: HeaderMap::new(),
        tls: false,
    }
}

pub(crate) fn get(path: &str) -> Req {
    req("GET", "", path)
}

impl Req {
    /// The request came over TLS.
    pub(crate) fn tls(mut self) -> Self {
        self.tls = true;
        self
    }
    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.append(
            HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(value).expect("value"),
        );
        self
    }
    pub(crate) fn query(mut self, q: &str) -> Self {
        self.query = Some(q.into());
        self
    }
    pub(crate) fn host(mut self, h: &str) -> Self {
        self.host = h.into();
        self
    }
    pub(crate) fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            host: &self.host,
            path: &self.path,
            query: self.query.as_deref(),
            headers: &self.headers,
            tls: self.tls,
        }
    }
}

/// The matched route id, or `None` for 404/405.
pub(crate) fn route_of(r: &Router, q: &Req) -> Option<usize> {
    match r.find(&q.view()) {
        RouteMatch::Matched(m) => Some(m.route),
        _ => None,
    }
}

/// The full match result.
pub(crate) fn find(r: &Router, q: &Req) -> RouteMatch {
    r.find(&q.view())
}
