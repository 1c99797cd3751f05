//! The canonical configuration model: Kong's declarative entities as typed, validated-on-parse
//! structs. Every provider (declarative file today, the Admin API later) produces a [`ConfigDoc`];
//! nothing downstream knows where it came from.
//!
//! Field names and defaults follow Kong 3.x. Extensions (fields Kong does not have) are marked
//! `Extension` in their doc comment and documented in `docs/configuration.md`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Kong's default for connect/write/read timeouts, in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 60_000;
/// Kong's default number of retries.
pub const DEFAULT_RETRIES: u32 = 5;
/// Kong's default target weight.
pub const DEFAULT_WEIGHT: u32 = 100;

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_MS
}
fn default_retries() -> u32 {
    DEFAULT_RETRIES
}
fn default_true() -> bool {
    true
}
fn default_weight() -> u32 {
    DEFAULT_WEIGHT
}

/// A reference to another entity: by name/username or id, as a string or `{id|name: ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum EntityRef {
    Name(String),
    Object(EntityRefObject),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EntityRefObject {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
}

impl<'de> Deserialize<'de> for EntityRefObject {
    /// From a map only: serde's derived struct would also take a sequence, and read
    /// `"consumer": ["bob"]` as `{"id": "bob"}`.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const FIELDS: &[&str] = &["id", "name", "username"];
        let map = std::collections::BTreeMap::<String, Option<String>>::deserialize(d)?;
        let mut out = EntityRefObject {
            id: None,
            name: None,
            username: None,
        };
        for (key, value) in map {
            match key.as_str() {
                "id" => out.id = value,
                "name" => out.name = value,
                "username" => out.username = value,
                _ => return Err(serde::de::Error::unknown_field(&key, FIELDS)),
            }
        }
        Ok(out)
    }
}

impl EntityRef {
    /// The id or name this reference names.
    pub fn key(&self) -> Option<&str> {
        match self {
            EntityRef::Name(n) => Some(n),
            EntityRef::Object(o) => {
                o.id.as_deref()
                    .or(o.name.as_deref())
                    .or(o.username.as_deref())
            }
        }
    }
}

/// Kong `services` entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Shorthand for protocol, host, port and path.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default = "default_timeout")]
    pub connect_timeout: u64,
    #[serde(default = "default_timeout")]
    pub write_timeout: u64,
    #[serde(default = "default_timeout")]
    pub read_timeout: u64,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Extension: what else than a connect failure is retried, for idempotent requests without
    /// a body: `timeout`, `gateway-error` (502, 503, 504), `502`, `503`, `504`.
    #[serde(default)]
    pub retry_on: Vec<String>,
    /// Extension: the share of recent requests retries may add (see `proxy::retry`).
    #[serde(default)]
    pub retry_budget: RetryBudgetConfig,
    /// `https` services: verify the upstream's certificate. Unset means verify (unlike Kong,
    /// whose default comes from nginx's `proxy_ssl_verify off`); `false` opts out.
    #[serde(default)]
    pub tls_verify: Option<bool>,
    /// `https` services: most intermediate certificates between the upstream's certificate and
    /// a trusted root (0..=64, nginx's `proxy_ssl_verify_depth`); unset means no limit.
    #[serde(default)]
    pub tls_verify_depth: Option<u32>,
    /// `https` services: ids of `ca_certificates` to verify against, instead of the system roots.
    #[serde(default)]
    pub ca_certificates: Option<Vec<String>>,
    /// `https` services: the `certificates` entity presented to the upstream (mutual TLS).
    #[serde(default)]
    pub client_certificate: Option<EntityRef>,
    #[serde(default)]
    pub created_at: Option<i64>,
    #[serde(default)]
    pub updated_at: Option<i64>,
}

/// Extension: a service's retry budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryBudgetConfig {
    /// Retries may add this many percent to the requests of the last ten seconds.
    #[serde(default = "default_budget_percent")]
    pub percent: u32,
    /// ...plus this many retries per second, however little the traffic.
    #[serde(default = "default_budget_min")]
    pub min_per_second: u32,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        RetryBudgetConfig {
            percent: default_budget_percent(),
            min_per_second: default_budget_min(),
        }
    }
}

fn default_budget_percent() -> u32 {
    20
}
fn default_budget_min() -> u32 {
    10
}

/// Kong `routes` entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The service this route forwards to (top-level routes only; nested routes get their parent).
    #[serde(default)]
    pub service: Option<EntityRef>,
    #[serde(default = "default_protocols")]
    pub protocols: Vec<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub paths: Vec<String>,
    /// Header name to accepted values (`~*` prefix: regex).
    #[serde(default)]
    pub headers: indexmap_like::OrderedMap,
    /// Extension: query parameter name to accepted values, shaped like `headers`.
    #[serde(default)]
    pub query_params: indexmap_like::OrderedMap,
    #[serde(default)]
    pub regex_priority: i64,
    #[serde(default = "default_true")]
    pub strip_path: bool,
    #[serde(default)]
    pub preserve_host: bool,
    #[serde(default = "default_path_handling")]
    pub path_handling: String,
    #[serde(default = "default_https_redirect")]
    pub https_redirect_status_code: u16,
    /// Read the request body whole before sending anything upstream (see `docs/limits.md`).
    #[serde(default = "default_true")]
    pub request_buffering: bool,
    /// Accepted for compatibility; Gatehouse always streams bodies unless a plugin buffers.
    #[serde(default = "default_true")]
    pub response_buffering: bool,
    #[serde(default)]
    pub created_at: Option<i64>,
    #[serde(default)]
    pub updated_at: Option<i64>,
}

fn default_protocols() -> Vec<String> {
    vec!["http".into(), "https".into()]
}
fn default_path_handling() -> String {
    "v0".into()
}
fn default_https_redirect() -> u16 {
    426
}

/// Kong `upstreams` entity (a named, load-balanced set of targets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// `round-robin` (Kong's default), `least-connections`, `consistent-hashing`, `latency`;
    /// extensions `random` and `ip-hash` (consistent hashing on the client address). Absent:
    /// `consistent-hashing` when `hash_on` is set, else `round-robin`.
    #[serde(default)]
    pub algorithm: Option<String>,
    #[serde(default = "default_hash_none")]
    pub hash_on: String,
    #[serde(default = "default_hash_none")]
    pub hash_fallback: String,
    #[serde(default)]
    pub hash_on_header: Option<String>,
    #[serde(default)]
    pub hash_fallback_header: Option<String>,
    #[serde(default)]
    pub hash_on_cookie: Option<String>,
    #[serde(default = "default_cookie_path")]
    pub hash_on_cookie_path: String,
    #[serde(default)]
    pub hash_on_query_arg: Option<String>,
    #[serde(default)]
    pub hash_fallback_query_arg: Option<String>,
    #[serde(default)]
    pub hash_on_uri_capture: Option<String>,
    #[serde(default)]
    pub hash_fallback_uri_capture: Option<String>,
    #[serde(default = "default_slots")]
    pub slots: u32,
    #[serde(default)]
    pub host_header: Option<String>,
    /// Extension: request limit and failure-ratio breaker (see `proxy::breaker`).
    #[serde(default)]
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// Kong's health-check block; only the disabled form is accepted until health checks exist.
    #[serde(default)]
    pub healthchecks: Option<Value>,
    #[serde(default)]
    pub created_at: Option<i64>,
    #[serde(default)]
    pub updated_at: Option<i64>,
}

fn default_cookie_path() -> String {
    "/".into()
}
fn default_hash_none() -> String {
    "none".into()
}
fn default_slots() -> u32 {
    10_000
}

/// Extension: an upstream's circuit breaker. Times in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    #[serde(default)]
    pub max_requests: u32,
    #[serde(default = "default_failure_ratio")]
    pub failure_ratio: f64,
    #[serde(default = "default_breaker_min_requests")]
    pub min_requests: u32,
    #[serde(default = "default_breaker_window")]
    pub window: u64,
    #[serde(default = "default_breaker_open_for")]
    pub open_for: f64,
    #[serde(default = "default_half_open_requests")]
    pub half_open_requests: u32,
}

fn default_failure_ratio() -> f64 {
    0.5
}
fn default_breaker_min_requests() -> u32 {
    20
}
fn default_breaker_window() -> u64 {
    10
}
fn default_breaker_open_for() -> f64 {
    10.0
}
fn default_half_open_requests() -> u32 {
    1
}

/// Kong `targets` entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    #[serde(default)]
    pub id: Option<String>,
    /// `host:port` or `host` (port 8000 as in Kong).
    pub target: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The upstream (top-level targets only).
    #[serde(default)]
    pub upstream: Option<EntityRef>,
    #[serde(default)]
    pub created_at: Option<f64>,
    #[serde(default)]
    pub updated_at: Option<f64>,
}

/// Kong `consumers` entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub custom_id: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub created_at: Option<i64>,
    #[serde(default)]
    pub updated_at: Option<i64>,
}

/// A credential collection nested in a consumer, or at the top level with a `consumer` field.
pub trait ConsumerCredential: serde::de::DeserializeOwned {
    /// The collection's key in the declarative file (`keyauth_credentials`).
    const COLLECTION: &'static str;
    /// The `consumer` reference of a top-level credential.
    fn consumer(&self) -> Option<&EntityRef>;
    /// The list of this kind in a document.
    fn list(doc: &mut ConfigDoc) -> &mut Vec<Located<Self>>
    where
        Self: Sized;
}

macro_rules! consumer_credential {
    ($ty:ident, $collection:literal, $field:ident) => {
        impl ConsumerCredential for $ty {
            const COLLECTION: &'static str = $collection;
            fn consumer(&self) -> Option<&EntityRef> {
                self.consumer.as_ref()
            }
            fn list(doc: &mut ConfigDoc) -> &mut Vec<Located<Self>> {
                &mut doc.credentials.$field
            }
        }
    };
}

/// Kong `keyauth_credentials`: an API key of a consumer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyauthCredential {
    #[serde(default)]
    pub id: Option<String>,
    pub key: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub consumer: Option<EntityRef>,
    #[serde(default)]
    pub created_at: Option<i64>,
}
consumer_credential!(KeyauthCredential, "keyauth_credentials", keyauth);

/// Kong `jwt_secrets`: a key (matched against the token's `key_claim_name` claim) with the
/// algorithm and the secret or public key its tokens are signed with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtSecret {
    #[serde(default)]
    pub id: Option<String>,
    pub key: String,
    #[serde(default = "default_jwt_algorithm")]
    pub algorithm: String,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub rsa_public_key: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub consumer: Option<EntityRef>,
    #[serde(default)]
    pub created_at: Option<i64>,
}
consumer_credential!(JwtSecret, "jwt_secrets", jwt);

fn default_jwt_algorithm() -> String {
    "HS256".into()
}

/// Kong `basicauth_credentials`. The password is hashed when the configuration is compiled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicauthCredential {
    #[serde(default)]
    pub id: Option<String>,
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub consumer: Option<EntityRef>,
    #[serde(default)]
    pub created_at: Option<i64>,
}
consumer_credential!(BasicauthCredential, "basicauth_credentials", basicauth);

/// Kong `hmacauth_credentials`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HmacauthCredential {
    #[serde(default)]
    pub id: Option<String>,
    pub username: String,
    pub secret: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub consumer: Option<EntityRef>,
    #[serde(default)]
    pub created_at: Option<i64>,
}
consumer_credential!(HmacauthCredential, "hmacauth_credentials", hmacauth);

/// Kong `acls`: a consumer's membership of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Acl {
    #[serde(default)]
    pub id: Option<String>,
    pub group: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub consumer: Option<EntityRef>,
    #[serde(default)]
    pub created_at: Option<i64>,
}
consumer_credential!(Acl, "acls", acls);

/// Every credential of every consumer; `parent` is the consumer's index.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Credentials {
    pub keyauth: Vec<Located<KeyauthCredential>>,
    pub jwt: Vec<Located<JwtSecret>>,
    pub basicauth: Vec<Located<BasicauthCredential>>,
    pub hmacauth: Vec<Located<HmacauthCredential>>,
    pub acls: Vec<Located<Acl>>,
}

/// Kong `plugins` entity. `config` is validated by the plugin's own typed schema at compile time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Plugin {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub instance_name: Option<String>,
    #[serde(default)]
    pub config: Option<Value>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_protocols_all")]
    pub protocols: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub service: Option<EntityRef>,
    #[serde(default)]
    pub route: Option<EntityRef>,
    #[serde(default)]
    pub consumer: Option<EntityRef>,
    #[serde(default)]
    pub created_at: Option<i64>,
    #[serde(default)]
    pub updated_at: Option<i64>,
}

fn default_protocols_all() -> Vec<String> {
    vec!["grpc".into(), "grpcs".into(), "http".into(), "https".into()]
}

/// An entity with the field path it was declared at (for error messages) and, for nested
/// entities, the index of its parent in the flat lists of [`ConfigDoc`].
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub path: String,
    pub item: T,
    pub parent: Option<usize>,
}

/// Scope of a plugin, resolved from nesting or from its `service`/`route`/`consumer` fields.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PluginScope {
    pub service: Option<usize>,
    pub route: Option<usize>,
    pub consumer: Option<usize>,
}

/// Kong `certificates`: a certificate chain and its private key (PEM, inline), served on the
/// TLS listener to clients asking for one of its SNIs (or by default). The SNIs are given in a
/// nested `snis` list or as top-level `snis` entities naming the certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    #[serde(default)]
    pub id: Option<String>,
    /// The certificate chain, leaf first (PEM).
    pub cert: String,
    /// The leaf's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// An alternate chain of another key type (an ECDSA one beside an RSA one, say).
    #[serde(default)]
    pub cert_alt: Option<String>,
    #[serde(default)]
    pub key_alt: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub created_at: Option<i64>,
    #[serde(default)]
    pub updated_at: Option<i64>,
}

/// Kong `snis`: a server name (exact, or with a leftmost or rightmost `*` label) served with a
/// certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sni {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    /// Set when declared as a bare name in a certificate's `snis` (errors about the name then
    /// point at the entry itself).
    #[serde(skip)]
    pub bare: bool,
    /// The certificate (by id); set only at the top level.
    #[serde(default)]
    pub certificate: Option<EntityRef>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub created_at: Option<i64>,
    #[serde(default)]
    pub updated_at: Option<i64>,
}

/// Kong `ca_certificates`: a trusted CA certificate (PEM) that `https` services name in their
/// `ca_certificates` to verify their upstream against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaCertificate {
    #[serde(default)]
    pub id: Option<String>,
    /// One certificate (PEM).
    pub cert: String,
    /// SHA-256 of the certificate's DER, lowercase hex; checked when given.
    #[serde(default)]
    pub cert_digest: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub created_at: Option<i64>,
    #[serde(default)]
    pub updated_at: Option<i64>,
}

/// The canonical, flattened configuration document.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConfigDoc {
    /// Where each field came from (for errors found when compiling).
    pub locator: super::source::Locator,
    pub format_version: String,
    pub services: Vec<Located<Service>>,
    /// `parent` is the index of the route's service.
    pub routes: Vec<Located<Route>>,
    pub upstreams: Vec<Located<Upstream>>,
    /// `parent` is the index of the target's upstream.
    pub targets: Vec<Located<Target>>,
    pub consumers: Vec<Located<Consumer>>,
    pub credentials: Credentials,
    pub plugins: Vec<(Located<Plugin>, PluginScope)>,
    pub certificates: Vec<Located<Certificate>>,
    /// `parent` is the index of the SNI's certificate.
    pub snis: Vec<Located<Sni>>,
    pub ca_certificates: Vec<Located<CaCertificate>>,
}

/// A small ordered map `name -> [values]` that accepts Kong's shapes: a map of lists, a map of
/// single strings, and keeps declaration order.
pub mod indexmap_like {
    use serde::de::{self, Deserializer, MapAccess, Visitor};
    use serde::{Deserialize, Serialize, Serializer};
    use std::fmt;

    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct OrderedMap(pub Vec<(String, Vec<String>)>);

    impl OrderedMap {
        pub fn is_empty(&self) -> bool {
            self.0.is_empty()
        }
    }

    impl schemars::JsonSchema for OrderedMap {
        fn schema_name() -> std::borrow::Cow<'static, str> {
            "OrderedMap".into()
        }
        fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
            schemars::json_schema!({
                "type": "object",
                "description": "Names to a value or a list of values.",
                "additionalProperties": {
                    "anyOf": [
                        {"type": "string"},
                        {"type": "array", "items": {"type": "string"}}
                    ]
                }
            })
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }

    impl<'de> Deserialize<'de> for OrderedMap {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = OrderedMap;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a map of names to a list of values")
                }
                fn visit_unit<E: de::Error>(self) -> Result<OrderedMap, E> {
                    Ok(OrderedMap::default())
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<OrderedMap, A::Error> {
                    let mut out = Vec::new();
                    while let Some((k, v)) = m.next_entry::<String, OneOrMany>()? {
                        out.push((
                            k,
                            match v {
                                OneOrMany::One(s) => vec![s],
                                OneOrMany::Many(v) => v,
                            },
                        ));
                    }
                    Ok(OrderedMap(out))
                }
            }
            d.deserialize_any(V)
        }
    }

    impl Serialize for OrderedMap {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut m = s.serialize_map(Some(self.0.len()))?;
            for (k, v) in &self.0 {
                m.serialize_entry(k, v)?;
            }
            m.end()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A reference is a name, an id, or an object naming one; a JSON array is none of them
    /// (schemathesis found `"consumer": ["bob"]` taken as consumer `bob`).
    #[test]
    fn a_reference_is_a_string_or_an_object() {
        let parse = |v: Value| serde_json::from_value::<EntityRef>(v);
        assert_eq!(
            parse(json!("bob")).expect("a name"),
            EntityRef::Name("bob".into())
        );
        let object = parse(json!({"username": "bob"})).expect("an object");
        assert_eq!(object.key(), Some("bob"));
        assert_eq!(
            parse(json!({"id": null, "name": "s1"}))
                .expect("nulls are unset")
                .key(),
            Some("s1")
        );
        for bad in [
            json!(["bob"]),
            json!([null, null]),
            json!({"nick": "bob"}),
            json!({"username": {}}),
            json!(5),
        ] {
            assert!(
                parse(bad.clone()).is_err(),
                "{bad} was taken as a reference"
            );
        }
    }
}
