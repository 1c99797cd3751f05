//! The plugin pipeline: one trait with a default method per phase, a registry of the plugins
//! compiled into the binary, and the per-route chain built once per configuration load.
//!
//! Phase order for one request (see `docs/architecture.md` for the chart):
//! 0. Only on routes where some plugin asks for it ([`Plugin::needs_request_body`]): the
//!    client's body is read whole into [`RequestCtx::request_body`], within a size limit.
//! 1. [`Plugin::on_request`] in descending priority (Kong's access phase); may answer the
//!    request itself with [`Flow::Respond`], which skips the upstream.
//! 2. [`Plugin::on_upstream_request`] in descending priority, on the request about to be sent.
//! 3. [`Plugin::on_response`] in *ascending* priority (onion order) on the response head,
//!    whether it came from the upstream, from the gateway or from a plugin.
//! 4. [`Plugin::on_log`] once the response head has been handed to the client.
//!
//! Dispatch is static: [`PluginInstance`] is an enum over every plugin type, so the async phase
//! needs no boxing and the compiler sees through every call.

pub mod acl;
pub mod auth;
pub mod basic_auth;
pub mod body_fields;
pub mod chain;
pub mod correlation_id;
pub mod forward_auth;
pub mod hmac_auth;
pub mod http_call;
pub mod ip_restriction;
pub mod jwt;
pub mod key_auth;
pub mod protocols;
pub mod query;
pub mod request_termination;
pub mod request_transformer;
pub mod secret_map;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Response, StatusCode};
use serde::de::DeserializeOwned;

use crate::consumers::Consumers;
use crate::proxy::body::ProxyBody;

pub use chain::{Chain, PluginScopeKey, consumer_chain, resolve_chain};
pub use protocols::{Configured, Protocol, Protocols};

/// Per-request state shared by the phases of every plugin in the chain.
pub struct RequestCtx {
    /// When the request head was received.
    pub started: Instant,
    /// The client's address as resolved from the socket and trusted proxies.
    pub client_ip: IpAddr,
    /// The TCP peer (the client, or the last proxy in front of the gateway).
    pub peer: SocketAddr,
    /// The local address the connection was accepted on.
    pub local: SocketAddr,
    /// Per-process connection number, and the index of this request on its connection (1-based).
    pub connection_id: u64,
    pub connection_requests: u64,
    /// Whether the TCP peer is a trusted proxy (`--trusted-ips`), whose forwarding headers may
    /// be believed.
    pub peer_trusted: bool,
    /// The protocol the request came by (plugins run only on the protocols they name).
    pub protocol: Protocol,
    /// The normalised request path (what routing matched; the upstream path derives from it),
    /// once the request is routed. Plugins that pass the path on use this, never the raw one.
    pub path: Option<http::HeaderValue>,
    /// Index of the matched route in the snapshot, if any.
    pub route: Option<usize>,
    /// Index of the route's service in the snapshot, if any.
    pub service: Option<usize>,
    /// Index of the authenticated consumer, once an authentication plugin sets it (or of the
    /// `anonymous` consumer when authentication failed and the plugin allows that).
    pub consumer: Option<usize>,
    /// The id of the credential that authenticated the request (`None` when anonymous).
    pub credential: Option<http::HeaderValue>,
    /// The whole request body, on routes where a plugin asked for it
    /// ([`Plugin::needs_request_body`]); empty when the request has none. What it holds when
    /// the request phase ends is what the upstream receives (with a matching
    /// `Content-Length`). `None` on other routes: their bodies stream.
    pub request_body: Option<Bytes>,
    /// Typed per-plugin state (allocated only when a plugin uses it).
    pub extensions: http::Extensions,
}

impl RequestCtx {
    /// The state of a request that has just arrived: not routed, not authenticated.
    pub fn new(
        client_ip: IpAddr,
        peer: SocketAddr,
        local: SocketAddr,
        connection_id: u64,
        connection_requests: u64,
    ) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            client_ip,
            peer,
            local,
            connection_id,
            connection_requests,
            peer_trusted: false,
            protocol: Protocol::Http,
            path: None,
            route: None,
            service: None,
            consumer: None,
            credential: None,
            request_body: None,
            extensions: http::Extensions::new(),
        }
    }
}

/// The outcome of the request phase.
pub enum Flow {
    /// Go on to the next plugin, then the upstream.
    Continue,
    /// Answer the client with this response; the upstream is not contacted. (Boxed: the
    /// common `Continue` stays one word.)
    Respond(Box<Response<ProxyBody>>),
}

/// What a plugin may look at when it is built: the configuration's consumers and their
/// credential tables (shared by every instance of one configuration).
pub struct BuildContext<'a> {
    pub consumers: &'a Arc<Consumers>,
}

/// A plugin: a priority, a typed configuration and the phases it takes part in.
///
/// Instances are built once per configuration load from their typed config and shared by every
/// chain that uses them; per-request state goes into [`RequestCtx::extensions`].
pub trait Plugin: Sized + Send + Sync + 'static {
    /// The plugin's name in configuration (`request-termination`).
    const NAME: &'static str;
    /// Kong's static priority: higher runs first in the request phase.
    const PRIORITY: i32;
    /// The typed `config` object (`#[serde(deny_unknown_fields)]`, defaults as Kong's); its
    /// JSON Schema is what the Admin API publishes (`GET /schemas/plugins/{name}`) and fills
    /// defaults from.
    type Config: DeserializeOwned + schemars::JsonSchema;
    /// Whether the plugin may be configured on a consumer (authentication plugins may not:
    /// they are what identifies the consumer).
    const CONSUMER_SCOPED: bool = true;

    /// Build an instance; errors name the config field (`status_code`) and what is wrong.
    fn new(config: Self::Config, ctx: &BuildContext<'_>) -> Result<Self, Vec<(String, String)>>;

    /// Whether this instance needs the whole request body before its request phase. Asked once
    /// per configuration: routes whose chain has such a plugin read bodies into
    /// [`RequestCtx::request_body`] (bounded by `--request-buffer-limit`); other routes stream
    /// them untouched.
    fn needs_request_body(&self) -> bool {
        false
    }

    /// Request phase, after routing (and before the upstream is picked). Runs in descending
    /// priority. Return [`Flow::Respond`] to answer the client directly.
    fn on_request(
        &self,
        _ctx: &mut RequestCtx,
        _req: &mut http::request::Parts,
    ) -> impl Future<Output = Flow> + Send {
        async { Flow::Continue }
    }

    /// On the upstream request head, after the gateway set its forwarding headers and before it
    /// is sent. Runs in descending priority. Not called when the request was answered early.
    fn on_upstream_request(&self, _ctx: &mut RequestCtx, _req: &mut http::request::Parts) {}

    /// On the response head going to the client (from the upstream, the gateway or a plugin).
    /// Runs in ascending priority.
    fn on_response(&self, _ctx: &mut RequestCtx, _resp: &mut http::response::Parts) {}

    /// After the response head was handed to the client. Must not fail or block.
    fn on_log(&self, _ctx: &RequestCtx, _status: StatusCode) {}
}

macro_rules! plugin_registry {
    ($($variant:ident => $ty:path),* $(,)?) => {
        /// One configured plugin instance (static dispatch over every plugin type).
        // Instances live behind an `Arc`, built once per configuration: variant sizes do not
        // matter.
        #[allow(clippy::large_enum_variant)]
        pub enum PluginInstance {
            $($variant($ty)),*
        }

        /// Names of every plugin this build knows.
        pub const KNOWN_PLUGINS: &[&str] = &[$(<$ty as Plugin>::NAME),*];

        /// Every plugin this build knows, with its priority (`GET /` of the Admin API).
        pub const PLUGIN_PRIORITIES: &[(&str, i32)] = &[$((<$ty as Plugin>::NAME, <$ty as Plugin>::PRIORITY)),*];

        /// The JSON Schema (2020-12, self-contained) of plugin `name`'s `config`, or `None`
        /// for an unknown plugin.
        pub fn config_schema(name: &str) -> Option<schemars::Schema> {
            let generator = || {
                schemars::generate::SchemaSettings::draft2020_12()
                    .with(|s| s.inline_subschemas = true)
                    .into_generator()
            };
            match name {
                $(<$ty as Plugin>::NAME => Some(generator().into_root_schema_for::<<$ty as Plugin>::Config>()),)*
                _ => None,
            }
        }

        impl PluginInstance {
            /// Build a plugin from its name and raw `config`; errors are `(field path, message)`.
            pub fn build(
                name: &str,
                config: &serde_json::Value,
                ctx: &BuildContext<'_>,
            ) -> Result<Self, Vec<(String, String)>> {
                match name {
                    $(<$ty as Plugin>::NAME => build_typed::<$ty>(config, ctx).map(PluginInstance::$variant),)*
                    _ => Err(vec![(String::new(), format!(
                        "plugin '{name}' not enabled; known plugins: {}", KNOWN_PLUGINS.join(", ")
                    ))]),
                }
            }
            pub fn name(&self) -> &'static str {
                match self { $(PluginInstance::$variant(_) => <$ty as Plugin>::NAME),* }
            }
            pub fn priority(&self) -> i32 {
                match self { $(PluginInstance::$variant(_) => <$ty as Plugin>::PRIORITY),* }
            }
            /// Whether a plugin of this name may be scoped to a consumer (`None`: unknown name).
            pub fn consumer_scoped(name: &str) -> Option<bool> {
                match name {
                    $(<$ty as Plugin>::NAME => Some(<$ty as Plugin>::CONSUMER_SCOPED),)*
                    _ => None,
                }
            }
            pub fn needs_request_body(&self) -> bool {
                match self { $(PluginInstance::$variant(p) => p.needs_request_body()),* }
            }
            pub async fn on_request(&self, ctx: &mut RequestCtx, req: &mut http::request::Parts) -> Flow {
                match self { $(PluginInstance::$variant(p) => p.on_request(ctx, req).await),* }
            }
            pub fn on_upstream_request(&self, ctx: &mut RequestCtx, req: &mut http::request::Parts) {
                match self { $(PluginInstance::$variant(p) => p.on_upstream_request(ctx, req)),* }
            }
            pub fn on_response(&self, ctx: &mut RequestCtx, resp: &mut http::response::Parts) {
                match self { $(PluginInstance::$variant(p) => p.on_response(ctx, resp)),* }
            }
            pub fn on_log(&self, ctx: &RequestCtx, status: StatusCode) {
                match self { $(PluginInstance::$variant(p) => p.on_log(ctx, status)),* }
            }
        }
    };
}

plugin_registry! {
    Acl => acl::Acl,
    BasicAuth => basic_auth::BasicAuth,
    CorrelationId => correlation_id::CorrelationId,
    ForwardAuth => forward_auth::ForwardAuth,
    HmacAuth => hmac_auth::HmacAuth,
    IpRestriction => ip_restriction::IpRestriction,
    Jwt => jwt::Jwt,
    KeyAuth => key_auth::KeyAuth,
    RequestTermination => request_termination::RequestTermination,
    RequestTransformer => request_transformer::RequestTransformer,
}

fn build_typed<P: Plugin>(
    config: &serde_json::Value,
    ctx: &BuildContext<'_>,
) -> Result<P, Vec<(String, String)>> {
    // Kong fills a missing `config` with the schema defaults: an empty object does the same here.
    let raw = if config.is_null() {
        serde_json::Value::Object(Default::default())
    } else {
        config.clone()
    };
    let typed: P::Config = serde_path_to_error::deserialize(raw).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        vec![(path, e.into_inner().to_string())]
    })?;
    P::new(typed, ctx)
}

/// A small JSON response used by the gateway and by plugins: `{"message": "..."}`.
pub fn json_message(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({ "message": message }).to_string();
    json_response(status, Bytes::from(body))
}

/// A response with a JSON body.
pub fn json_response(status: StatusCode, body: Bytes) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}
