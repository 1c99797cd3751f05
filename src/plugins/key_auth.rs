//! `key-auth` (Kong priority 1250): authenticate a consumer by an API key sent in a header or
//! a query parameter.
//!
//! Config (Kong's): `key_names` (default `[apikey]`; each name is looked for as a header, then
//! as a query parameter, then as a field of a form or JSON body), `key_in_header`,
//! `key_in_query`, `key_in_body` (the route then reads request bodies whole), `hide_credentials`,
//! `anonymous`, `run_on_preflight`, `realm`.
//!
//! Answers: no key → `401 {"message":"No API key found in request"}` with
//! `WWW-Authenticate: Key realm="gatehouse"`; the same key name given twice → 401; an unknown
//! key → `403 {"message":"Invalid authentication credentials"}`. On success the upstream gets
//! the consumer headers (see [`super::auth`]) and `X-API-Key-Owner` (the consumer's username).
//!
//! Keys are looked up in a [`SecretMap`]: a randomly seeded hash picks the candidates, which are
//! compared in constant time, so timing does not reveal how much of a guessed key was right.

use std::collections::HashMap;

use http::StatusCode;
use http::header::{HeaderName, HeaderValue};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::auth::{self, AuthCommon};
use super::body_fields::{self, BodyKind};
use super::secret_map::SecretMap;
use super::{BuildContext, Flow, Plugin, RequestCtx, query};
use crate::config::model::{KeyauthCredential, Located};
use crate::consumers::{Consumers, CredentialId, credential_id};

pub use super::auth::X_API_KEY_OWNER;

fn default_key_names() -> Vec<String> {
    vec!["apikey".into()]
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_key_names")]
    pub key_names: Vec<String>,
    #[serde(default)]
    pub hide_credentials: bool,
    #[serde(default)]
    pub anonymous: Option<String>,
    #[serde(default = "default_true")]
    pub key_in_header: bool,
    #[serde(default = "default_true")]
    pub key_in_query: bool,
    #[serde(default)]
    pub key_in_body: bool,
    #[serde(default = "default_true")]
    pub run_on_preflight: bool,
    #[serde(default)]
    pub realm: Option<String>,
}

/// One key name: the query parameter name, and the header name when it is a valid one.
struct KeyName {
    name: String,
    header: Option<HeaderName>,
}

pub struct KeyAuth {
    names: Vec<KeyName>,
    in_header: bool,
    in_query: bool,
    in_body: bool,
    hide_credentials: bool,
    common: AuthCommon,
    challenge: HeaderValue,
    consumers: std::sync::Arc<Consumers>,
}

/// Where a key was found, so `hide_credentials` can remove it.
enum Found {
    /// The header, and the configured name it was found under.
    Header(HeaderName, String),
    Query(String),
    Body(String),
}

/// Why no consumer could be identified.
enum Failure {
    Missing,
    Duplicate,
    Invalid,
    /// `key_in_body` and a body that is not what its `Content-Type` says.
    BadBody,
}

impl Plugin for KeyAuth {
    const NAME: &'static str = "key-auth";
    const PRIORITY: i32 = 1250;
    const CONSUMER_SCOPED: bool = false;
    type Config = Config;

    fn new(c: Config, ctx: &BuildContext<'_>) -> Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        if c.key_names.is_empty() {
            errors.push(("key_names".into(), "must not be empty".into()));
        }
        let names = c
            .key_names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                if n.is_empty() || n.bytes().any(|b| b.is_ascii_control() || b == b' ') {
                    errors.push((
                        format!("key_names[{i}]"),
                        "must be a non-empty name without spaces or control characters".into(),
                    ));
                    return None;
                }
                Some(KeyName {
                    name: n.clone(),
                    header: HeaderName::from_bytes(n.as_bytes()).ok(),
                })
            })
            .collect();
        let realm = c.realm.as_deref().unwrap_or("gatehouse");
        if let Err(e) = auth::check_realm(realm) {
            errors.extend(e);
        }
        let common = match AuthCommon::new(c.anonymous.as_deref(), c.run_on_preflight, ctx) {
            Ok(common) => Some(common),
            Err(e) => {
                errors.extend(e);
                None
            }
        };
        match common {
            Some(common) if errors.is_empty() => Ok(KeyAuth {
                names,
                in_header: c.key_in_header,
                in_query: c.key_in_query,
                in_body: c.key_in_body,
                hide_credentials: c.hide_credentials,
                common,
                challenge: auth::challenge("Key", realm),
                consumers: ctx.consumers.clone(),
            }),
            _ => Err(errors),
        }
    }

    fn needs_request_body(&self) -> bool {
        self.in_body
    }

    async fn on_request(&self, ctx: &mut RequestCtx, req: &mut http::request::Parts) -> Flow {
        if self.common.skip(ctx, &req.method) {
            // Only this plugin sets it, and it did not run: no client's copy goes upstream.
            req.headers.remove(X_API_KEY_OWNER);
            return Flow::Continue;
        }
        let outcome = self.identify(req, ctx.request_body.as_deref());
        let failure = match outcome {
            Ok((cred, found)) => {
                if self.hide_credentials {
                    hide(req, &mut ctx.request_body, &found);
                }
                auth::set_consumer(
                    ctx,
                    &mut req.headers,
                    &self.consumers,
                    cred.consumer,
                    Some(&cred.id),
                );
                let owner = self.consumers.get(cred.consumer).map(|c| {
                    c.username_header
                        .as_ref()
                        .or(c.custom_id_header.as_ref())
                        .unwrap_or(&c.id_header)
                        .clone()
                });
                auth::set_or_remove(&mut req.headers, X_API_KEY_OWNER, owner.as_ref());
                return Flow::Continue;
            }
            Err(f) => f,
        };
        req.headers.remove(X_API_KEY_OWNER);
        self.common
            .fail(ctx, &mut req.headers, &self.consumers, || match failure {
                Failure::Missing => auth::refusal(
                    StatusCode::UNAUTHORIZED,
                    "No API key found in request",
                    Some(&self.challenge),
                ),
                Failure::Duplicate => auth::refusal(
                    StatusCode::UNAUTHORIZED,
                    "Duplicate API key found",
                    Some(&self.challenge),
                ),
                Failure::Invalid => auth::refusal(
                    StatusCode::FORBIDDEN,
                    "Invalid authentication credentials",
                    None,
                ),
                Failure::BadBody => {
                    auth::refusal(StatusCode::BAD_REQUEST, "Cannot process request body", None)
                }
            })
    }
}

impl KeyAuth {
    /// Find the key (first name first; for each name the header, the query, then the body) and
    /// its credential.
    fn identify(
        &self,
        req: &http::request::Parts,
        body: Option<&[u8]>,
    ) -> Result<(&KeyCredential, Found), Failure> {
        for name in &self.names {
            if self.in_header
                && let Some(header) = &name.header
            {
                let mut values = req.headers.get_all(header).iter();
                if let Some(first) = values.next() {
                    if values.next().is_some() {
                        return Err(Failure::Duplicate);
                    }
                    let key = first.as_bytes();
                    if !key.is_empty() {
                        return self
                            .consumers
                            .keyauth
                            .lookup(key)
                            .map(|c| (c, Found::Header(header.clone(), name.name.clone())))
                            .ok_or(Failure::Invalid);
                    }
                }
            }
            if self.in_query
                && let Some(q) = req.uri.query()
            {
                let values = query::values(q, &name.name);
                if values.len() > 1 {
                    return Err(Failure::Duplicate);
                }
                if let Some(key) = values.first().filter(|k| !k.is_empty()) {
                    return self
                        .consumers
                        .keyauth
                        .lookup(key.as_bytes())
                        .map(|c| (c, Found::Query(name.name.clone())))
                        .ok_or(Failure::Invalid);
                }
            }
            if self.in_body
                && let Some(body) = body
            {
                let kind = BodyKind::of(&req.headers);
                let values =
                    body_fields::values(kind, body, &name.name).map_err(|_| Failure::BadBody)?;
                if values.len() > 1 {
                    return Err(Failure::Duplicate);
                }
                if let Some(key) = values.first().filter(|k| !k.is_empty()) {
                    return self
                        .consumers
                        .keyauth
                        .lookup(key.as_bytes())
                        .map(|c| (c, Found::Body(name.name.clone())))
                        .ok_or(Failure::Invalid);
                }
            }
        }
        Err(Failure::Missing)
    }
}

/// Remove the key's name from everywhere it may be (header, query, body), as Kong does, not
/// only where the key was read: no copy of it reaches the upstream.
fn hide(req: &mut http::request::Parts, body: &mut Option<bytes::Bytes>, found: &Found) {
    let (name, header) = match found {
        Found::Header(h, n) => (n.as_str(), Some(h.clone())),
        Found::Query(n) | Found::Body(n) => (n.as_str(), HeaderName::from_bytes(n.as_bytes()).ok()),
    };
    if let Some(h) = header {
        req.headers.remove(h);
    }
    if let Some(q) = req.uri.query() {
        let rest = query::without(q, name);
        if rest.as_deref() != Some(q) {
            query::set_query(&mut req.uri, rest.as_deref());
        }
    }
    let kind = BodyKind::of(&req.headers);
    if kind != BodyKind::Other
        && let Some(b) = body.as_ref()
        && let Ok(rest) = body_fields::without(kind, b, name)
    {
        *body = Some(rest);
    }
}

/// A key's consumer and credential id.
pub struct KeyCredential {
    pub consumer: usize,
    pub id: CredentialId,
}

/// Every API key of a configuration.
#[derive(Default)]
pub struct KeyIndex {
    by_key: SecretMap<KeyCredential>,
}

impl KeyIndex {
    pub fn compile(
        credentials: &[Located<KeyauthCredential>],
        consumer_ids: &[&str],
        errors: &mut Vec<(String, String)>,
    ) -> KeyIndex {
        let mut by_key = SecretMap::with_capacity(credentials.len());
        let mut per_consumer: HashMap<usize, usize> = HashMap::new();
        for c in credentials {
            let Some(consumer) = c.parent else { continue };
            if c.item.key.is_empty() {
                errors.push((format!("{}.key", c.path), "must not be empty".into()));
                continue;
            }
            let n = per_consumer.entry(consumer).or_default();
            *n += 1;
            let id = credential_id(
                c.item.id.as_deref(),
                "keyauth_credentials",
                consumer_ids.get(consumer).copied().unwrap_or(""),
                &n.to_string(),
            );
            let cred = KeyCredential { consumer, id };
            if !by_key.insert(c.item.key.as_bytes(), cred) {
                // The key itself is a secret: the message does not repeat it.
                errors.push((
                    format!("{}.key", c.path),
                    "another key-auth credential has the same key".into(),
                ));
            }
        }
        KeyIndex { by_key }
    }

    /// The credential of `key`, if any.
    pub fn lookup(&self, key: &[u8]) -> Option<&KeyCredential> {
        self.by_key.get(key)
    }
}
