//! `compile(doc) -> Snapshot`: validation of everything the decoder cannot check on one entity
//! alone (uniqueness, URLs, route criteria, plugin configs), then construction of the runtime
//! tables. Every error is collected with its field path and source position.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, StatusCode, Uri};

use super::upstream_tls;
use super::{
    HashInput, HashPolicy, RouteRt, ServiceRt, ServiceTarget, Snapshot, TargetAddr, UpstreamRt,
};
use crate::balancer::{Algorithm, Balancer};
use crate::config::model::{CircuitBreakerConfig, Route, Service, Target, Upstream};
use crate::config::{ConfigDoc, ConfigError, Locator};
use crate::consumers::Consumers;
use crate::dns::AddressMap;
use crate::health::{HealthRegistry, Healthchecks};
use crate::plugins::{
    BuildContext, Configured, PluginInstance, PluginScopeKey, Protocols, resolve_chain,
};
use crate::proxy::breaker::{Breaker, BreakerSettings};
use crate::proxy::path::PathHandling;
use crate::proxy::retry::{RetryBudget, RetryOn};
use crate::router::{RouteSpec, RouterBuilder};

/// Largest timeout Kong accepts (ms).
const MAX_TIMEOUT_MS: u64 = (1 << 31) - 2;
/// Kong's bound on `retries`.
const MAX_RETRIES: u32 = 32_767;
/// Kong's default port for targets given without one.
const DEFAULT_TARGET_PORT: u16 = 8000;

const ROUTE_PROTOCOLS: &[&str] = &["http", "https", "grpc", "grpcs"];
/// Service protocols spoken to upstreams: HTTP/1.1, or HTTP/2 with prior knowledge (`grpc`).
const SERVICE_PROTOCOLS: &[&str] = &["http", "https", "grpc", "grpcs"];
const KNOWN_PROTOCOLS: &[&str] = &[
    "http",
    "https",
    "grpc",
    "grpcs",
    "tcp",
    "tls",
    "tls_passthrough",
    "udp",
    "ws",
    "wss",
];

struct Errors<'a> {
    locator: &'a Locator,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.list.push(self.locator.error(path, message));
    }
}

/// Compile a document into a snapshot, or return every problem found.
pub fn compile(doc: ConfigDoc) -> Result<Snapshot, Vec<ConfigError>> {
    compile_with(doc, &HealthRegistry::new())
}

/// [`compile`], with the upstreams' target health kept in `health` (so a reload keeps the
/// health of targets that did not change).
pub fn compile_with(doc: ConfigDoc, health: &HealthRegistry) -> Result<Snapshot, Vec<ConfigError>> {
    compile_with_addresses(doc, health, &AddressMap::new())
}

/// [`compile_with`], with the addresses DNS gave for target host names (see `crate::dns`):
/// each such target becomes one target per address.
pub fn compile_with_addresses(
    doc: ConfigDoc,
    health: &HealthRegistry,
    addresses: &AddressMap,
) -> Result<Snapshot, Vec<ConfigError>> {
    let scratch_health = HealthRegistry::new();
    let mut errors = Errors {
        locator: &doc.locator,
        list: Vec::new(),
    };

    check_unique(
        &mut errors,
        "name",
        doc.services
            .iter()
            .map(|s| (&s.path, s.item.name.as_deref())),
    );
    check_unique(
        &mut errors,
        "name",
        doc.routes.iter().map(|r| (&r.path, r.item.name.as_deref())),
    );
    check_unique(
        &mut errors,
        "name",
        doc.upstreams
            .iter()
            .map(|u| (&u.path, Some(u.item.name.as_str()))),
    );
    check_unique(
        &mut errors,
        "username",
        doc.consumers
            .iter()
            .map(|c| (&c.path, c.item.username.as_deref())),
    );
    check_unique(
        &mut errors,
        "custom_id",
        doc.consumers
            .iter()
            .map(|c| (&c.path, c.item.custom_id.as_deref())),
    );
    for ids in [
        ids_of(&doc.services, |s| s.id.as_deref()),
        ids_of(&doc.routes, |r| r.id.as_deref()),
        ids_of(&doc.upstreams, |u| u.id.as_deref()),
        ids_of(&doc.consumers, |c| c.id.as_deref()),
        doc.plugins
            .iter()
            .map(|(s, _)| (&s.path, s.item.id.as_deref()))
            .collect(),
        ids_of(&doc.targets, |t| t.id.as_deref()),
        ids_of(&doc.certificates, |c| c.id.as_deref()),
        ids_of(&doc.snis, |s| s.id.as_deref()),
        ids_of(&doc.ca_certificates, |c| c.id.as_deref()),
        ids_of(&doc.credentials.keyauth, |c| c.id.as_deref()),
        ids_of(&doc.credentials.jwt, |c| c.id.as_deref()),
        ids_of(&doc.credentials.basicauth, |c| c.id.as_deref()),
        ids_of(&doc.credentials.hmacauth, |c| c.id.as_deref()),
        ids_of(&doc.credentials.acls, |c| c.id.as_deref()),
    ] {
        check_unique(&mut errors, "id", ids.into_iter());
    }

    let mut upstreams: Vec<UpstreamRt> = doc
        .upstreams
        .iter()
        .enumerate()
        .map(|(i, u)| {
            compile_upstream(
                &mut errors,
                &u.path,
                &u.item,
                &doc,
                i,
                &scratch_health,
                addresses,
            )
        })
        .collect();

    let certificates =
        crate::tls::compile_certificates(&doc, &mut |path, message| errors.push(path, message));
    let ca_certificates = upstream_tls::compile_ca_certificates(&doc, &mut |path, message| {
        errors.push(path, message)
    });
    let services: Vec<ServiceRt> = doc
        .services
        .iter()
        .map(|s| {
            compile_service(
                &mut errors,
                &s.path,
                &s.item,
                (&doc, &certificates, &ca_certificates),
            )
        })
        .collect();

    let consumers = match Consumers::compile(&doc) {
        Ok(c) => c,
        Err(list) => {
            for (path, message) in list {
                errors.push(path, message);
            }
            Arc::new(Consumers::default())
        }
    };
    let build_ctx = BuildContext {
        consumers: &consumers,
    };

    // Plugins: build every instance (also disabled ones, so their config is validated).
    let mut instances: Vec<(PluginScopeKey, Arc<Configured>)> = Vec::new();
    let mut seen_scopes: HashSet<(String, PluginScopeKey)> = HashSet::new();
    for (p, scope) in &doc.plugins {
        for (i, proto) in p.item.protocols.iter().enumerate() {
            if !KNOWN_PROTOCOLS.contains(&proto.as_str()) {
                errors.push(
                    format!("{}.protocols[{i}]", p.path),
                    format!("unknown protocol `{proto}`"),
                );
            }
        }
        let key = (
            p.item.name.clone(),
            PluginScopeKey {
                route: scope.route,
                service: scope.service,
                consumer: scope.consumer,
            },
        );
        if !seen_scopes.insert(key) {
            errors.push(
                format!("{}.name", p.path),
                format!(
                    "plugin `{}` is configured twice on the same scope",
                    p.item.name
                ),
            );
        }
        if scope.consumer.is_some() && PluginInstance::consumer_scoped(&p.item.name) == Some(false)
        {
            errors.push(
                format!("{}.consumer", p.path),
                format!(
                    "plugin `{}` cannot be configured on a consumer (it is what identifies the consumer)",
                    p.item.name
                ),
            );
        }
        let config = p.item.config.clone().unwrap_or(serde_json::Value::Null);
        match PluginInstance::build(&p.item.name, &config, &build_ctx) {
            Ok(inst) => {
                if p.item.enabled {
                    instances.push((
                        PluginScopeKey {
                            route: scope.route,
                            service: scope.service,
                            consumer: scope.consumer,
                        },
                        Arc::new(Configured {
                            instance: inst,
                            protocols: Protocols::from_names(&p.item.protocols),
                        }),
                    ));
                }
            }
            Err(list) => {
                for (field, message) in list {
                    let path = if field.is_empty() && message.starts_with("plugin '") {
                        format!("{}.name", p.path)
                    } else if field.is_empty() {
                        format!("{}.config", p.path)
                    } else {
                        format!("{}.config.{field}", p.path)
                    };
                    errors.push(path, message);
                }
            }
        }
    }

    let mut router = RouterBuilder::new();
    let mut routes = Vec::with_capacity(doc.routes.len());
    for (i, r) in doc.routes.iter().enumerate() {
        let rt = compile_route(&mut errors, &r.path, &r.item, r.parent, &instances, i);
        let spec = route_spec(&r.item);
        if let Err(list) = router.add(i, &spec) {
            for e in list {
                let path = if e.field.is_empty() || e.field == "@entity" {
                    r.path.clone()
                } else {
                    format!("{}.{}", r.path, e.field)
                };
                errors.push(path, one_line(&e.message));
            }
        }
        routes.push(rt);
    }

    check_unique(
        &mut errors,
        "id",
        doc.certificates
            .iter()
            .map(|c| (&c.path, c.item.id.as_deref())),
    );
    check_unique(
        &mut errors,
        "id",
        doc.ca_certificates
            .iter()
            .map(|c| (&c.path, c.item.id.as_deref())),
    );

    if !errors.list.is_empty() {
        let mut list = errors.list;
        list.sort_by_key(|e| (e.line.unwrap_or(usize::MAX), e.column.unwrap_or(0)));
        list.dedup();
        return Err(list);
    }
    // Only a configuration that compiled binds to the live health state: a rejected reload
    // must not touch the health of the configuration that keeps serving.
    for up in &mut upstreams {
        up.health = health.bind(
            &up.name,
            up.health.policy.config.clone(),
            up.host_header.clone(),
            up.targets
                .iter()
                .cloned()
                .zip(up.health.targets.iter().map(|t| t.weight)),
        );
        // The targets' load records come with their state, so that in-flight counts and
        // latency averages carry over from the previous configuration.
        up.balancer.adopt_loads(
            up.health
                .targets
                .iter()
                .map(|t| t.state.load().clone())
                .collect(),
        );
    }
    // Routes of disabled services are not routed (Kong's behaviour), but keep their indices.
    let mut router = RouterBuilder::new();
    for (i, r) in doc.routes.iter().enumerate() {
        let service_enabled = r
            .parent
            .is_none_or(|s| doc.services.get(s).is_some_and(|s| s.item.enabled));
        if service_enabled {
            // Already validated above.
            let _ = router.add(i, &route_spec(&r.item));
        }
    }
    let global_chain = resolve_chain(&instances, None, None, None);
    // The document is kept with the snapshot (for export): it keeps passwords only in the form
    // the credential table stores them, never as given.
    let mut doc = doc;
    for c in &mut doc.credentials.basicauth {
        if let Some(stored) = consumers.basicauth.stored_form(&c.item.username) {
            c.item.password = stored;
        }
    }
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    Ok(Snapshot {
        id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        loaded_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
        router: router.build(),
        routes,
        services,
        upstreams,
        global_chain,
        plugins: instances,
        consumers,
        certificates: Arc::new(certificates),
        doc,
        stored_version: 0,
    })
}

/// RFC 3986 `path-abempty`: `/` and pchar (unreserved, sub-delims, `:`, `@`, `%XX`).
fn is_valid_path(p: &str) -> bool {
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                if !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
                {
                    return false;
                }
                i += 3;
                continue;
            }
            c if c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&c) => {}
            _ => return false,
        }
        i += 1;
    }
    true
}

/// Multi-line messages (the regex crate draws a caret diagram) become one line: the diagram is
/// dropped and the final `error: ...` line kept.
fn one_line(message: &str) -> String {
    match message.split_once('\n') {
        None => message.to_string(),
        Some((first, rest)) => {
            let last = rest
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            let first = first
                .trim_end_matches(':')
                .trim_end_matches(" regex parse error")
                .trim_end_matches(':');
            format!("{first}: {}", last.trim().trim_start_matches("error: "))
        }
    }
}

/// `(path, id)` of every entity of a collection, for [`check_unique`].
fn ids_of<T>(
    list: &[crate::config::model::Located<T>],
    id: impl Fn(&T) -> Option<&str>,
) -> Vec<(&String, Option<&str>)> {
    list.iter().map(|l| (&l.path, id(&l.item))).collect()
}

fn check_unique<'a>(
    errors: &mut Errors<'_>,
    field: &str,
    items: impl Iterator<Item = (&'a String, Option<&'a str>)>,
) {
    let mut seen: HashSet<&str> = HashSet::new();
    for (path, value) in items {
        if let Some(v) = value
            && !seen.insert(v)
        {
            errors.push(
                format!("{path}.{field}"),
                format!("duplicate {field} `{v}`: already declared"),
            );
        }
    }
}

fn route_spec(r: &Route) -> RouteSpec {
    RouteSpec {
        hosts: r.hosts.clone(),
        paths: r.paths.clone(),
        methods: r.methods.clone(),
        headers: r.headers.0.clone(),
        query_params: r.query_params.0.clone(),
        regex_priority: r.regex_priority,
        plain_only: !r.protocols.iter().any(|p| p == "https" || p == "grpcs"),
    }
}

fn compile_route(
    errors: &mut Errors<'_>,
    path: &str,
    r: &Route,
    service: Option<usize>,
    instances: &[(PluginScopeKey, Arc<Configured>)],
    index: usize,
) -> RouteRt {
    for (i, p) in r.protocols.iter().enumerate() {
        if !ROUTE_PROTOCOLS.contains(&p.as_str()) {
            let msg = if KNOWN_PROTOCOLS.contains(&p.as_str()) {
                format!(
                    "protocol `{p}` is not supported by this version of Gatehouse (http, https, grpc, grpcs)"
                )
            } else {
                format!("unknown protocol `{p}`; expected http, https, grpc or grpcs")
            };
            errors.push(format!("{path}.protocols[{i}]"), msg);
        }
    }
    // Kong: http/https and grpc/grpcs are groups that one route cannot mix.
    let grpc = r.protocols.iter().any(|p| p == "grpc" || p == "grpcs");
    if grpc && r.protocols.iter().any(|p| p == "http" || p == "https") {
        errors.push(
            format!("{path}.protocols"),
            "these sets are mutually exclusive: ('http', 'https'), ('grpc', 'grpcs')",
        );
    }
    if r.protocols.is_empty() {
        errors.push(format!("{path}.protocols"), "must not be empty");
    }
    let path_handling = match r.path_handling.as_str() {
        "v0" => PathHandling::V0,
        "v1" => PathHandling::V1,
        other => {
            errors.push(
                format!("{path}.path_handling"),
                format!("expected one of: v0, v1 (got `{other}`)"),
            );
            PathHandling::V0
        }
    };
    let https_redirect = match r.https_redirect_status_code {
        426 | 301 | 302 | 307 | 308 => StatusCode::from_u16(r.https_redirect_status_code)
            .unwrap_or(StatusCode::UPGRADE_REQUIRED),
        other => {
            errors.push(
                format!("{path}.https_redirect_status_code"),
                format!("expected one of: 426, 301, 302, 307, 308 (got {other})"),
            );
            StatusCode::UPGRADE_REQUIRED
        }
    };
    let chain = resolve_chain(instances, Some(index), service, None);
    // Consumer-scoped plugins join the chain only once the consumer is known, after the body
    // would have been read: any that may apply here counts.
    let needs_request_body = chain.iter().any(|p| p.needs_request_body())
        || instances.iter().any(|(scope, inst)| {
            scope.consumer.is_some()
                && scope.route.is_none_or(|r| r == index)
                && scope.service.is_none_or(|s| Some(s) == service)
                && inst.needs_request_body()
        });
    RouteRt {
        name: r.name.clone(),
        service,
        strip_path: r.strip_path,
        preserve_host: r.preserve_host,
        path_handling,
        allows_http: r.protocols.iter().any(|p| p == "http" || p == "grpc"),
        grpc,
        https_redirect,
        chain,
        needs_request_body,
        // gRPC streams both ways: a call's body may only end after answers came back.
        request_buffering: r.request_buffering && !grpc,
    }
}

fn compile_service(
    errors: &mut Errors<'_>,
    path: &str,
    s: &Service,
    tls_refs: (&ConfigDoc, &crate::tls::CertStore, &upstream_tls::CaCerts),
) -> ServiceRt {
    let doc = tls_refs.0;
    let mut protocol = s.protocol.clone();
    let mut host = s.host.clone();
    let mut port = s.port;
    let mut svc_path = s.path.clone();
    if let Some(url) = &s.url {
        if s.protocol.is_some() || s.host.is_some() || s.port.is_some() || s.path.is_some() {
            errors.push(
                format!("{path}.url"),
                "url cannot be combined with protocol, host, port or path",
            );
        }
        match url.parse::<Uri>() {
            Ok(u) if u.scheme().is_some() && u.host().is_some() => {
                protocol = u.scheme_str().map(str::to_string);
                host = u
                    .host()
                    .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string());
                port = u.port_u16();
                svc_path = match u.path() {
                    "" => None,
                    p => Some(p.to_string()),
                };
                if u.query().is_some() {
                    errors.push(format!("{path}.url"), "url must not carry a query string");
                }
            }
            _ => errors.push(
                format!("{path}.url"),
                // The value is not echoed: it may come from a secret reference.
                "invalid url; expected scheme://host[:port][/path]".to_string(),
            ),
        }
    }
    let protocol = protocol.unwrap_or_else(|| "http".into());
    if !SERVICE_PROTOCOLS.contains(&protocol.as_str()) {
        let msg = if KNOWN_PROTOCOLS.contains(&protocol.as_str()) {
            format!(
                "protocol `{protocol}` is not supported by this version of Gatehouse ({})",
                SERVICE_PROTOCOLS.join(", ")
            )
        } else {
            format!("unknown protocol `{protocol}`")
        };
        let field = if s.url.is_some() { "url" } else { "protocol" };
        errors.push(format!("{path}.{field}"), msg);
    }
    let http2 = protocol == "grpc" || protocol == "grpcs";
    let uses_tls = protocol == "https" || protocol == "grpcs";
    let tls = upstream_tls::service_tls(
        &mut |p, m| errors.push(p, m),
        path,
        s,
        uses_tls,
        if http2 {
            vec![b"h2".to_vec()]
        } else {
            Vec::new()
        },
        tls_refs,
    );
    // Kong: a gRPC service names no path (the gRPC method is the path).
    if http2 && svc_path.as_deref() == Some("/") && s.url.is_some() {
        svc_path = None;
    }
    if http2 && svc_path.is_some() {
        let field = if s.url.is_some() { "url" } else { "path" };
        errors.push(
            format!("{path}.{field}"),
            format!("value must be null for protocol `{protocol}`"),
        );
    }
    let port = port.unwrap_or(if uses_tls { 443 } else { 80 });
    if port == 0 {
        errors.push(
            format!("{path}.port"),
            "value should be between 1 and 65535",
        );
    }
    if let Some(p) = &svc_path {
        if !p.starts_with('/') {
            errors.push(format!("{path}.path"), "should start with: /");
        } else if !is_valid_path(p) {
            errors.push(
                format!("{path}.path"),
                "invalid path: only RFC 3986 path characters and %XX escapes are allowed (no spaces, `?` or `#`)",
            );
        }
    }
    for (field, v) in [
        ("connect_timeout", s.connect_timeout),
        ("write_timeout", s.write_timeout),
        ("read_timeout", s.read_timeout),
    ] {
        if v == 0 || v > MAX_TIMEOUT_MS {
            errors.push(
                format!("{path}.{field}"),
                format!("value should be between 1 and {MAX_TIMEOUT_MS}"),
            );
        }
    }
    if s.retries > MAX_RETRIES {
        errors.push(
            format!("{path}.retries"),
            format!("value should be between 0 and {MAX_RETRIES}"),
        );
    }
    let target = match host.as_deref() {
        None | Some("") => {
            errors.push(
                format!("{path}.host"),
                "required field missing (set `url` or `host`)",
            );
            ServiceTarget::Direct(Arc::new(target_addr("invalid", port)))
        }
        Some(h) => match doc.upstreams.iter().position(|u| u.item.name == h) {
            Some(u) => ServiceTarget::Upstream(u),
            None => ServiceTarget::Direct(Arc::new(target_addr(h, port))),
        },
    };
    let retry_on = RetryOn::parse(&s.retry_on).unwrap_or_else(|list| {
        for (i, message) in list {
            errors.push(format!("{path}.retry_on[{i}]"), message);
        }
        RetryOn::default()
    });
    if s.retry_budget.percent > 1000 {
        errors.push(
            format!("{path}.retry_budget.percent"),
            "value should be between 0 and 1000",
        );
    }
    ServiceRt {
        name: s.name.clone(),
        target,
        retry_on,
        retry_budget: RetryBudget::new(s.retry_budget.percent, s.retry_budget.min_per_second),
        path: svc_path,
        connect_timeout: Duration::from_millis(s.connect_timeout),
        write_timeout: Duration::from_millis(s.write_timeout),
        read_timeout: Duration::from_millis(s.read_timeout),
        retries: s.retries,
        tls,
        http2,
    }
}

/// The pool key and `Host` header of `host:port` (`host` without IPv6 brackets).
pub(crate) fn target_addr(host: &str, port: u16) -> TargetAddr {
    let bracketed = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let key: Arc<str> = format!("{bracketed}:{port}").into();
    let header = if port == 80 {
        bracketed
    } else {
        key.to_string()
    };
    TargetAddr {
        host: host.to_string(),
        port,
        host_header: HeaderValue::from_str(&header)
            .unwrap_or_else(|_| HeaderValue::from_static("invalid")),
        key,
    }
}

/// The host names (not IP literals) of every upstream target of a document: what DNS must
/// resolve for it.
pub fn target_host_names(doc: &ConfigDoc) -> Vec<String> {
    let mut names: Vec<String> = doc
        .targets
        .iter()
        .filter_map(|t| parse_target(&t.item.target))
        .map(|(host, _)| host)
        .filter(|h| crate::dns::ip_literal(h).is_none())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Parse Kong's `target` field: `host`, `host:port`, `[v6]`, `[v6]:port`.
fn parse_target(t: &str) -> Option<(String, u16)> {
    if let Some(rest) = t.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => DEFAULT_TARGET_PORT,
            None => return None,
        };
        return Some((h.to_string(), port));
    }
    match t.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h.to_string(), p.parse().ok()?)),
        Some(_) => None,
        None => Some((t.to_string(), DEFAULT_TARGET_PORT)),
    }
    .filter(|(h, p)| !h.is_empty() && *p != 0)
}

fn compile_upstream(
    errors: &mut Errors<'_>,
    path: &str,
    u: &Upstream,
    doc: &ConfigDoc,
    index: usize,
    health: &HealthRegistry,
    addresses: &AddressMap,
) -> UpstreamRt {
    if u.name.is_empty()
        || u.name.contains(':')
        || u.name.contains('/')
        || u.name.parse::<std::net::IpAddr>().is_ok()
    {
        errors.push(
            format!("{path}.name"),
            "Invalid name; must be a hostname without port (no ip addresses allowed)",
        );
    }
    let algorithm = compile_algorithm(errors, path, u);
    let hash = if algorithm == Some(Algorithm::ConsistentHashing) {
        compile_hash_policy(errors, path, u)
    } else {
        for (field, v) in [("hash_on", &u.hash_on), ("hash_fallback", &u.hash_fallback)] {
            if v != "none" {
                errors.push(
                    format!("{path}.{field}"),
                    "hashing applies to algorithm `consistent-hashing`",
                );
            }
        }
        None
    };
    let checks =
        match Healthchecks::parse(u.healthchecks.as_ref().unwrap_or(&serde_json::Value::Null)) {
            Ok(c) => c,
            Err(list) => {
                for (field, message) in list {
                    let at = if field.is_empty() {
                        format!("{path}.healthchecks")
                    } else {
                        format!("{path}.healthchecks.{field}")
                    };
                    errors.push(at, message);
                }
                Healthchecks::default()
            }
        };
    let host_header = u
        .host_header
        .as_deref()
        .and_then(|h| match HeaderValue::from_str(h) {
            Ok(v) => Some(v),
            Err(_) => {
                errors.push(format!("{path}.host_header"), "not a valid host");
                None
            }
        });
    let mut targets = Vec::new();
    let mut origins: Vec<Arc<str>> = Vec::new();
    let mut weighted: Vec<(Arc<str>, u32)> = Vec::new();
    let mut seen = HashSet::new();
    for t in doc.targets.iter().filter(|t| t.parent == Some(index)) {
        if !seen.insert(t.item.target.as_str()) {
            errors.push(
                format!("{}.target", t.path),
                format!(
                    "duplicate target `{}` in upstream `{}`",
                    t.item.target, u.name
                ),
            );
        }
        if let Some(addr) = compile_target(errors, &t.path, &t.item)
            && t.item.weight > 0
        {
            // A host name the resolver has answered for: one target per address, each with the
            // target's weight (as Kong does), sent the name in `Host`. A name it has not
            // answered for (yet) stays one target, resolved when connecting.
            match addresses.get(addr.host.as_str()) {
                Some(ips) if crate::dns::ip_literal(&addr.host).is_none() => {
                    for ip in ips.iter() {
                        let mut one = target_addr(&ip.to_string(), addr.port);
                        one.host_header = addr.host_header.clone();
                        if weighted.iter().any(|(k, _)| *k == one.key) {
                            continue;
                        }
                        weighted.push((one.key.clone(), t.item.weight));
                        targets.push(Arc::new(one));
                        origins.push(Arc::from(t.item.target.as_str()));
                    }
                }
                _ => {
                    weighted.push((addr.key.clone(), t.item.weight));
                    targets.push(Arc::new(addr));
                    origins.push(Arc::from(t.item.target.as_str()));
                }
            }
        }
    }
    let health = health.bind(
        &u.name,
        Arc::new(checks),
        host_header.clone(),
        targets
            .iter()
            .cloned()
            .zip(weighted.iter().map(|(_, w)| *w)),
    );
    UpstreamRt {
        name: u.name.clone(),
        targets,
        origins,
        host_header,
        health,
        balancer: Balancer::new(
            algorithm.unwrap_or(Algorithm::RoundRobin),
            &weighted,
            u.slots,
        ),
        hash,
        breaker: u
            .circuit_breaker
            .as_ref()
            .map(|c| compile_breaker(errors, path, c)),
    }
}

fn compile_breaker(errors: &mut Errors<'_>, path: &str, c: &CircuitBreakerConfig) -> Breaker {
    if !(0.0..=1.0).contains(&c.failure_ratio) {
        errors.push(
            format!("{path}.circuit_breaker.failure_ratio"),
            "value should be between 0 and 1 (0: never open)",
        );
    }
    if !(1..=60).contains(&c.window) {
        errors.push(
            format!("{path}.circuit_breaker.window"),
            "value should be between 1 and 60 (seconds)",
        );
    }
    if !(0.0..=86_400.0).contains(&c.open_for) {
        errors.push(
            format!("{path}.circuit_breaker.open_for"),
            "value should be between 0 and 86400 (seconds)",
        );
    }
    Breaker::new(BreakerSettings {
        max_requests: c.max_requests,
        failure_ratio: c.failure_ratio,
        min_requests: c.min_requests,
        window: Duration::from_secs(c.window),
        open_for: Duration::from_secs_f64(c.open_for.clamp(0.0, 86_400.0)),
        half_open_requests: c.half_open_requests,
    })
}

/// The balancing algorithm: Kong's names, `random`, and the founding document's `ip-hash` (an
/// alias of consistent hashing on the client address). `None` after an error.
fn compile_algorithm(errors: &mut Errors<'_>, path: &str, u: &Upstream) -> Option<Algorithm> {
    let name = match u.algorithm.as_deref() {
        Some(name) => name,
        None if u.hash_on != "none" => "consistent-hashing",
        None => "round-robin",
    };
    if name == "ip-hash" {
        if u.hash_on != "none" && u.hash_on != "ip" {
            errors.push(
                format!("{path}.hash_on"),
                "algorithm `ip-hash` hashes on `ip`; use `consistent-hashing` to hash on something else",
            );
        }
        return Some(Algorithm::ConsistentHashing);
    }
    let found = Algorithm::from_name(name);
    if found.is_none() {
        errors.push(
            format!("{path}.algorithm"),
            format!(
                "expected one of: round-robin, least-connections, consistent-hashing, latency, random, ip-hash (got `{name}`)"
            ),
        );
    }
    if !(10..=65_536).contains(&u.slots) {
        errors.push(
            format!("{path}.slots"),
            "value should be between 10 and 65536",
        );
    }
    found
}

/// Kong's `hash_on` / `hash_fallback` with their `hash_*_header`, `hash_on_cookie`,
/// `hash_*_query_arg` and `hash_*_uri_capture` companions.
fn compile_hash_policy(errors: &mut Errors<'_>, path: &str, u: &Upstream) -> Option<HashPolicy> {
    let ip_hash = u.algorithm.as_deref() == Some("ip-hash");
    let on_name = if ip_hash && u.hash_on == "none" {
        "ip"
    } else {
        u.hash_on.as_str()
    };
    let mut input = |which: &str,
                     name: &str,
                     header: &Option<String>,
                     query: &Option<String>,
                     capture: &Option<String>|
     -> Option<Option<HashInput>> {
        let missing = |errors: &mut Errors<'_>, field: &str| {
            errors.push(
                format!("{path}.{field}"),
                format!("required when {which} is `{name}`"),
            );
        };
        Some(Some(match name {
            "none" => return Some(None),
            "consumer" => HashInput::Consumer,
            "ip" => HashInput::Ip,
            "path" => HashInput::Path,
            "header" => {
                let field = format!(
                    "hash_{}_header",
                    if which == "hash_on" { "on" } else { "fallback" }
                );
                let Some(h) = header else {
                    missing(errors, &field);
                    return None;
                };
                match http::HeaderName::from_bytes(h.as_bytes()) {
                    Ok(h) => HashInput::Header(h),
                    Err(_) => {
                        errors.push(format!("{path}.{field}"), "not a valid header name");
                        return None;
                    }
                }
            }
            "cookie" if which == "hash_on" => {
                let Some(c) = u.hash_on_cookie.clone().filter(|c| !c.is_empty()) else {
                    missing(errors, "hash_on_cookie");
                    return None;
                };
                if !u.hash_on_cookie_path.starts_with('/') {
                    errors.push(format!("{path}.hash_on_cookie_path"), "must start with `/`");
                }
                HashInput::Cookie {
                    name: c,
                    path: u.hash_on_cookie_path.clone(),
                }
            }
            "query_arg" => {
                let field = format!(
                    "hash_{}_query_arg",
                    if which == "hash_on" { "on" } else { "fallback" }
                );
                let Some(q) = query.clone().filter(|q| !q.is_empty()) else {
                    missing(errors, &field);
                    return None;
                };
                HashInput::QueryArg(q)
            }
            "uri_capture" => {
                let field = format!(
                    "hash_{}_uri_capture",
                    if which == "hash_on" { "on" } else { "fallback" }
                );
                let Some(c) = capture.clone().filter(|c| !c.is_empty()) else {
                    missing(errors, &field);
                    return None;
                };
                HashInput::UriCapture(c)
            }
            other => {
                let expected = if which == "hash_on" {
                    "none, consumer, ip, header, cookie, path, query_arg, uri_capture"
                } else {
                    "none, consumer, ip, header, path, query_arg, uri_capture"
                };
                errors.push(
                    format!("{path}.{which}"),
                    format!("expected one of: {expected} (got `{other}`)"),
                );
                return None;
            }
        }))
    };
    let on = input(
        "hash_on",
        on_name,
        &u.hash_on_header,
        &u.hash_on_query_arg,
        &u.hash_on_uri_capture,
    )?;
    let fallback = input(
        "hash_fallback",
        &u.hash_fallback,
        &u.hash_fallback_header,
        &u.hash_fallback_query_arg,
        &u.hash_fallback_uri_capture,
    )?;
    let Some(on) = on else {
        // Consistent hashing without an input: Kong balances round-robin.
        if fallback.is_some() {
            errors.push(
                format!("{path}.hash_fallback"),
                "must be `none` when hash_on is `none`",
            );
        }
        return None;
    };
    if matches!(on, HashInput::Cookie { .. }) && fallback.is_some() {
        errors.push(
            format!("{path}.hash_fallback"),
            "must be `none` when hash_on is `cookie`",
        );
    }
    if fallback.as_ref() == Some(&on) {
        errors.push(format!("{path}.hash_fallback"), "must differ from hash_on");
    }
    Some(HashPolicy { on, fallback })
}

fn compile_target(errors: &mut Errors<'_>, path: &str, t: &Target) -> Option<TargetAddr> {
    if t.weight > 65_535 {
        errors.push(
            format!("{path}.weight"),
            "value should be between 0 and 65535",
        );
    }
    match parse_target(&t.target) {
        Some((h, p)) => Some(target_addr(&h, p)),
        None => {
            errors.push(
                format!("{path}.target"),
                format!("invalid target `{}`; expected host[:port]", t.target),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        assert_eq!(parse_target("a.b:80"), Some(("a.b".into(), 80)));
        assert_eq!(parse_target("a.b"), Some(("a.b".into(), 8000)));
        assert_eq!(parse_target("[::1]:9"), Some(("::1".into(), 9)));
        assert_eq!(parse_target("[::1]"), Some(("::1".into(), 8000)));
        assert_eq!(parse_target("::1"), None);
        assert_eq!(parse_target("a:0"), None);
        assert_eq!(parse_target(":80"), None);
    }

    #[test]
    fn an_id_given_twice_in_a_collection_is_refused() {
        let id = "4f2b6a8e-2f5c-4bde-9a43-0d6f3c1e7a11";
        for (collection, entity) in [
            (
                "targets",
                format!(r#"{{"id": "{id}", "target": "10.0.0.1:80", "upstream": "u"}}"#),
            ),
            (
                "ca_certificates",
                format!(r#"{{"id": "{id}", "cert": "x"}}"#),
            ),
        ] {
            let doc = format!(
                r#"{{"_format_version": "3.0", "upstreams": [{{"name": "u"}}], "{collection}": [{entity}, {entity}]}}"#
            );
            let config = crate::config::load_str("t.json", &doc).expect("decodes");
            let errors = compile(config).err().expect("refused");
            assert!(
                errors.iter().any(|e| e.message.starts_with("duplicate id")),
                "{collection}: {errors:?}"
            );
        }
    }
}
