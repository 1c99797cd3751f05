//! The compiled, immutable runtime state of one configuration: router tables, one ordered
//! plugin chain per route (precedence resolved ahead of time), services and upstreams with
//! their targets. A request loads the current snapshot once and uses it for its whole life.
//!
//! [`compile`] is pure and total: it validates the whole [`ConfigDoc`] and returns every error
//! with its field path and source position, or a snapshot.

mod compile;
mod upstream_tls;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, StatusCode};

use crate::balancer::Balancer;
use crate::config::ConfigDoc;
use crate::consumers::Consumers;
use crate::health::{HealthRegistry, UpstreamHealth};
use crate::plugins::{Chain, Configured, PluginScopeKey};
use crate::proxy::breaker::Breaker;
use crate::proxy::path::PathHandling;
use crate::proxy::retry::{RetryBudget, RetryOn};
use crate::router::Router;

pub(crate) use compile::target_addr;
pub use compile::{compile, compile_with, compile_with_addresses, target_host_names};

use crate::config::{ConfigErrors, decode, read_file, source};

/// Parse, decode and compile declarative text in one go, reporting the errors of every stage
/// together (semantic errors of the entities that did decode are found even when others did not).
pub fn load_str(name: &str, text: &str) -> Result<Snapshot, ConfigErrors> {
    load_str_with(name, text, &HealthRegistry::new())
}

/// [`load_str`], with the health state of upstream targets kept in `health` (the registry a
/// running gateway keeps across reloads).
pub fn load_str_with(
    name: &str,
    text: &str,
    health: &HealthRegistry,
) -> Result<Snapshot, ConfigErrors> {
    let src = source::parse(name, text).map_err(|e| ConfigErrors(vec![e]))?;
    let (doc, mut errors) = decode::decode(src);
    match compile_with(doc, health) {
        Ok(snapshot) if errors.is_empty() => return Ok(snapshot),
        Ok(_) => {}
        Err(more) => errors.extend(more),
    }
    errors.sort_by_key(|e| (e.line.unwrap_or(usize::MAX), e.column.unwrap_or(0)));
    errors.dedup();
    Err(ConfigErrors(errors))
}

/// [`load_str`] on a file.
pub fn load_file(path: &std::path::Path) -> Result<Snapshot, ConfigErrors> {
    load_str(&path.display().to_string(), &read_file(path)?)
}

/// [`load_str_with`] on a file.
pub fn load_file_with(
    path: &std::path::Path,
    health: &HealthRegistry,
) -> Result<Snapshot, ConfigErrors> {
    load_str_with(&path.display().to_string(), &read_file(path)?, health)
}

/// One compiled configuration.
pub struct Snapshot {
    /// Unique per compiled configuration in this process (never reused), for caches keyed by
    /// configuration.
    pub id: u64,
    /// When this configuration was compiled (Unix seconds): the `created_at` of entities
    /// declared without one.
    pub loaded_at: i64,
    pub router: Router,
    pub routes: Vec<RouteRt>,
    pub services: Vec<ServiceRt>,
    pub upstreams: Vec<UpstreamRt>,
    /// Plugins configured globally: they run for requests no route matched.
    pub global_chain: Chain,
    /// Every enabled plugin instance with its scope, for chains that depend on the consumer
    /// (resolved when a request's consumer has plugins of its own).
    pub plugins: Vec<(PluginScopeKey, Arc<Configured>)>,
    pub consumers: Arc<Consumers>,
    /// Certificates of the TLS listener, by SNI.
    pub certificates: Arc<crate::tls::CertStore>,
    /// The document this snapshot was compiled from (for export and diffing).
    pub doc: ConfigDoc,
    /// Database mode: the stored version this configuration is (0 otherwise). An Admin API
    /// write computed from it is stored only if the database is still at that version.
    pub stored_version: i64,
}

/// A route as the data plane needs it.
pub struct RouteRt {
    pub name: Option<String>,
    pub service: Option<usize>,
    pub strip_path: bool,
    pub preserve_host: bool,
    pub path_handling: PathHandling,
    /// False when the route's `protocols` exclude plain `http`.
    pub allows_http: bool,
    /// Whether the route's `protocols` are `grpc`/`grpcs` (Kong's gRPC checks apply, see
    /// `proxy::grpc`); `allows_http` then means `grpc`. (Whether it takes requests over TLS is
    /// the router's business: `RouteSpec::plain_only`.)
    pub grpc: bool,
    /// Kong's `https_redirect_status_code` (426, or a redirect status).
    pub https_redirect: StatusCode,
    pub chain: Chain,
    /// Whether a plugin that may run on this route (in its chain, or scoped to a consumer and
    /// applying once the consumer is known) needs the whole request body.
    pub needs_request_body: bool,
    /// Kong's `request_buffering`: read the body whole (up to `--request-buffer-limit`) before
    /// anything is sent upstream.
    pub request_buffering: bool,
}

/// An upstream address: `host:port`, with the key its pooled connections are filed under.
#[derive(Debug)]
pub struct TargetAddr {
    pub host: String,
    pub port: u16,
    /// `host:port`, the connection-pool key.
    pub key: Arc<str>,
    /// The `Host` header for requests to this target (port omitted when it is the default).
    pub host_header: HeaderValue,
}

/// Where a service sends its requests.
pub enum ServiceTarget {
    /// The service's own `host:port`.
    Direct(Arc<TargetAddr>),
    /// An upstream (index into [`Snapshot::upstreams`]) named by the service's `host`.
    Upstream(usize),
}

/// A service as the data plane needs it.
pub struct ServiceRt {
    pub name: Option<String>,
    pub target: ServiceTarget,
    pub path: Option<String>,
    pub connect_timeout: Duration,
    pub write_timeout: Duration,
    pub read_timeout: Duration,
    pub retries: u32,
    /// What is retried besides connect failures.
    pub retry_on: RetryOn,
    /// Shared by every request to the service, on every worker.
    pub retry_budget: RetryBudget,
    /// TLS to the upstream (`https` services).
    pub tls: Option<Arc<crate::proxy::upstream_tls::ClientTls>>,
    /// Requests go out over HTTP/2 with prior knowledge (`protocol: grpc`), see
    /// `proxy::h2_client`.
    pub http2: bool,
}

/// An upstream: its targets and the balancer that picks among them.
pub struct UpstreamRt {
    pub name: String,
    /// Targets with a weight above 0, in declaration order (the balancer's indices).
    pub targets: Vec<Arc<TargetAddr>>,
    /// For each of `targets`, the `target` of the entity it comes from (a host name target
    /// gives one entry per address).
    pub origins: Vec<Arc<str>>,
    pub host_header: Option<HeaderValue>,
    pub balancer: Balancer,
    /// For `consistent-hashing`: what the request's hash key is made of.
    pub hash: Option<HashPolicy>,
    pub breaker: Option<Breaker>,
    /// Health of each target (same indices as `targets`), kept across reloads.
    pub health: Arc<UpstreamHealth>,
}

/// One input of a consistent-hashing key (Kong's `hash_on` / `hash_fallback`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashInput {
    /// The authenticated consumer's id.
    Consumer,
    /// The client address (as resolved through trusted proxies).
    Ip,
    Header(http::HeaderName),
    /// A cookie; when the request has none, the gateway makes one up and sets it on the
    /// response, so the client sticks to a target from then on.
    Cookie {
        name: String,
        path: String,
    },
    /// The normalised request path.
    Path,
    QueryArg(String),
    /// A named capture of the route's regex path.
    UriCapture(String),
}

/// What a consistent-hashing upstream hashes on, and the fallback when that input is absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashPolicy {
    pub on: HashInput,
    pub fallback: Option<HashInput>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config(algorithm: &str, extra_route: bool) -> String {
        let extra = if extra_route {
            "\n      - name: extra\n        paths: [/extra]"
        } else {
            ""
        };
        format!(
            r#"_format_version: "3.0"
upstreams:
  - name: pool
    algorithm: {algorithm}
    targets:
      - target: 127.0.0.1:9001
      - target: 127.0.0.1:9002
services:
  - name: s
    host: pool
    routes:
      - name: r
        paths: [/]{extra}
"#
        )
    }

    /// A reload that keeps an upstream's targets keeps their load records: requests started
    /// under the old configuration still count in flight under the new one, and latency
    /// averages carry over.
    #[test]
    fn balancer_load_survives_a_reload() {
        let health = crate::health::HealthRegistry::new();
        let old = load_str_with("old.yaml", &config("least-connections", false), &health)
            .expect("old config");
        let b = &old.upstreams[0].balancer;
        let busy = b.start(0);
        assert_eq!(b.in_flight(0), 1);

        let new = load_str_with("new.yaml", &config("least-connections", true), &health)
            .expect("new config");
        let nb = &new.upstreams[0].balancer;
        assert_eq!(nb.in_flight(0), 1, "the request in flight still counts");
        // Least-connections sends new work to the idle target.
        assert_eq!(nb.pick(None, |_| true), Some(1));
        drop(old);
        busy.finish(Duration::from_millis(5));
        assert_eq!(nb.in_flight(0), 0);

        // Latency estimates carry over too, even when the algorithm changes.
        let lat = load_str_with("lat.yaml", &config("latency", false), &health).expect("latency");
        lat.upstreams[0]
            .balancer
            .start(1)
            .finish(Duration::from_millis(40));
        // Through a configuration with another algorithm, and back.
        let other = load_str_with("lc.yaml", &config("least-connections", false), &health)
            .expect("least-connections");
        drop((lat, other));
        let again = load_str_with("lat2.yaml", &config("latency", true), &health).expect("again");
        let estimate = again.upstreams[0].balancer.latency_estimate(1);
        assert!(
            estimate.is_some_and(|e| e >= Duration::from_millis(30)),
            "{estimate:?}"
        );
        // A fresh registry (a new process) starts from nothing.
        let fresh = load_str("fresh.yaml", &config("latency", false)).expect("fresh");
        assert_eq!(fresh.upstreams[0].balancer.latency_estimate(1), None);
    }
}
