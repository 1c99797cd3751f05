//! `jwt` (Kong priority 1450): authenticate requests by a signed JSON Web Token (RFC 7519,
//! compact JWS).
//!
//! Two ways to say which key verifies a token:
//! - **Kong's consumer model** (default): the token names a `jwt_secrets` credential in its
//!   `key_claim_name` claim (default `iss`); that credential's algorithm and secret or public
//!   key verify it, and its consumer is the request's consumer.
//! - **A key on the plugin** (extension, the founding document's model): `secret` (HS*),
//!   `public_key` (PEM: RSA, EC or Ed25519), or a JWK Set (`jwks` inline, or `jwks_uri` fetched
//!   from an identity provider, the token's `kid` choosing the key), with `algorithms` listing
//!   what is accepted; no consumer is involved.
//!
//! Tokens are read from the query (`uri_param_names`), cookies (`cookie_names`) and
//! `Authorization: Bearer` (`header_names`); two different tokens are refused. Every refusal is
//! `401` with `{"message": ...}` and an RFC 6750 `WWW-Authenticate: Bearer` challenge, except
//! `503` while a `jwks_uri` has never given any key.
//! `claims_to_headers` copies verified claims into upstream headers.

pub mod cache;
pub mod credentials;
pub mod jwks;
#[cfg(test)]
mod test_signer;
pub mod token;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use http::header::{self, HeaderName, HeaderValue};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::{self, AuthCommon};
use super::http_call::Endpoint;
use super::{BuildContext, Flow, Plugin, RequestCtx, query};
use crate::consumers::Consumers;
use jwks::{Failure, Jwks, RemoteSettings};
use token::{Algorithm, Claims, KeyKind, Token, TokenError, VerifyKey};

fn default_uri_param_names() -> Vec<String> {
    vec!["jwt".into()]
}
fn default_header_names() -> Vec<String> {
    vec!["authorization".into()]
}
fn default_key_claim_name() -> String {
    "iss".into()
}
fn default_true() -> bool {
    true
}
fn default_max_token_length() -> usize {
    8192
}
const DEFAULT_JWKS_CACHE_TTL: u64 = 300;
const DEFAULT_JWKS_MIN_REFRESH_INTERVAL: u64 = 30;
const DEFAULT_JWKS_TIMEOUT: u64 = 5_000;
/// Upper bound of the `jwks_*` durations in seconds (a year, as `maximum_expiration`).
const MAX_JWKS_SECONDS: u64 = 31_536_000;

/// One string or a list of strings.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    // Kong's fields.
    #[serde(default = "default_uri_param_names")]
    pub uri_param_names: Vec<String>,
    #[serde(default)]
    pub cookie_names: Vec<String>,
    #[serde(default = "default_header_names")]
    pub header_names: Vec<String>,
    #[serde(default = "default_key_claim_name")]
    pub key_claim_name: String,
    #[serde(default)]
    pub secret_is_base64: bool,
    #[serde(default)]
    pub claims_to_verify: Vec<String>,
    #[serde(default)]
    pub anonymous: Option<String>,
    #[serde(default = "default_true")]
    pub run_on_preflight: bool,
    #[serde(default)]
    pub maximum_expiration: u64,
    #[serde(default)]
    pub realm: Option<String>,
    // Extensions: a key on the plugin, and claim checks.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub public_key: Option<String>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// An inline JWK Set (`{"keys": [...]}`).
    #[serde(default)]
    pub jwks: Option<Value>,
    /// Seconds; `None` so that setting one without `jwks_uri` can be reported.
    #[serde(default)]
    pub jwks_cache_ttl: Option<u64>,
    #[serde(default)]
    pub jwks_min_refresh_interval: Option<u64>,
    /// Milliseconds for a whole fetch.
    #[serde(default)]
    pub jwks_timeout: Option<u64>,
    /// An `https://` `jwks_uri`: verify its certificate against the system's trust store.
    #[serde(default = "default_true")]
    pub jwks_tls_verify: bool,
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    #[serde(default)]
    pub issuer: Option<OneOrMany>,
    #[serde(default)]
    pub audience: Option<OneOrMany>,
    #[serde(default)]
    pub required_claims: Vec<String>,
    #[serde(default)]
    pub leeway: u64,
    #[serde(default)]
    pub claims_to_headers: BTreeMap<String, String>,
    #[serde(default = "default_max_token_length")]
    pub max_token_length: usize,
}

/// Where a token's verification key comes from.
enum Keys {
    /// Kong's `jwt_secrets`, found by the `key_claim_name` claim.
    Credentials {
        key_claim_name: String,
        secret_is_base64: bool,
    },
    /// A key configured on the plugin, with the algorithms it accepts.
    Plugin {
        key: VerifyKey,
        algorithms: Vec<Algorithm>,
    },
    /// A JWK Set on the plugin (inline or fetched); each key is used only for the algorithms
    /// it allows among these.
    Jwks {
        jwks: Jwks,
        algorithms: Vec<Algorithm>,
    },
}

pub struct Jwt {
    uri_param_names: Vec<String>,
    cookie_names: Vec<String>,
    header_names: Vec<HeaderName>,
    keys: Keys,
    verify_exp: bool,
    verify_nbf: bool,
    maximum_expiration: u64,
    leeway: u64,
    issuers: Vec<String>,
    audiences: Vec<String>,
    required_claims: Vec<String>,
    claims_to_headers: Vec<(String, HeaderName)>,
    max_token_length: usize,
    common: AuthCommon,
    realm: String,
    consumers: Arc<Consumers>,
    /// This instance's entries in the verified-token cache.
    cache_id: u64,
}

/// What a verified token gives the request: its consumer and credential (consumer model) and
/// the headers from `claims_to_headers`.
type VerifiedParts = (Option<(usize, HeaderValue)>, Vec<(HeaderName, HeaderValue)>);

/// Why a request was refused: a status (401, or 503 while a `jwks_uri` has given no key), a
/// message for the body, and the RFC 6750 error attributes (`None` when the request carried no
/// token at all, as RFC 6750 §3.1 asks).
struct Refusal {
    status: StatusCode,
    message: Cow<'static, str>,
    description: Option<&'static str>,
}

impl Refusal {
    fn invalid(message: impl Into<Cow<'static, str>>, description: &'static str) -> Refusal {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
            description: Some(description),
        }
    }
}

impl From<Failure> for Refusal {
    fn from(f: Failure) -> Refusal {
        match f {
            Failure::Token(e) => e.into(),
            // The identity provider's key endpoint is down, not the client's token wrong: a
            // 401 would send clients to fetch new tokens (more load on a provider in trouble)
            // and hide the outage among authentication failures.
            Failure::NoKeys => Refusal {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: Cow::Borrowed("No keys available to verify the token"),
                description: None,
            },
        }
    }
}

impl From<TokenError> for Refusal {
    fn from(e: TokenError) -> Refusal {
        Refusal::invalid(e.message(), e.error_description())
    }
}

impl Plugin for Jwt {
    const NAME: &'static str = "jwt";
    const PRIORITY: i32 = 1450;
    const CONSUMER_SCOPED: bool = false;
    type Config = Config;

    fn new(c: Config, ctx: &BuildContext<'_>) -> Result<Self, Vec<(String, String)>> {
        let mut errors: Vec<(String, String)> = Vec::new();
        let mut err = |field: &str, message: String| errors.push((field.to_string(), message));

        let header_names = c
            .header_names
            .iter()
            .enumerate()
            .filter_map(|(i, h)| match HeaderName::from_bytes(h.as_bytes()) {
                Ok(h) => Some(h),
                Err(_) => {
                    err(
                        &format!("header_names[{i}]"),
                        "not a valid header name".into(),
                    );
                    None
                }
            })
            .collect();
        let (mut verify_exp, mut verify_nbf) = (false, false);
        for (i, claim) in c.claims_to_verify.iter().enumerate() {
            match claim.as_str() {
                "exp" => verify_exp = true,
                "nbf" => verify_nbf = true,
                other => err(
                    &format!("claims_to_verify[{i}]"),
                    format!("expected one of: exp, nbf (got `{other}`)"),
                ),
            }
        }
        if c.maximum_expiration > 31_536_000 {
            err(
                "maximum_expiration",
                "value should be between 0 and 31536000".into(),
            );
        }
        if c.max_token_length == 0 {
            err("max_token_length", "must be greater than 0".into());
        }
        let realm = c.realm.clone().unwrap_or_else(|| "gatehouse".into());
        if let Err(e) = auth::check_realm(&realm) {
            errors.extend(e);
        }
        let keys = plugin_keys(&c, &mut errors);
        let mut claims_to_headers = Vec::new();
        for (claim, name) in &c.claims_to_headers {
            match HeaderName::from_bytes(name.as_bytes()) {
                Ok(h) if auth::is_reserved_header(&h) => errors.push((
                    format!("claims_to_headers.{claim}"),
                    format!(
                        "`{name}` is set by the gateway itself (identity, framing or routing) and cannot carry a claim"
                    ),
                )),
                Ok(h) => claims_to_headers.push((claim.clone(), h)),
                Err(_) => errors.push((
                    format!("claims_to_headers.{claim}"),
                    format!("`{name}` is not a valid header name"),
                )),
            }
        }
        let common = AuthCommon::new(c.anonymous.as_deref(), c.run_on_preflight, ctx)
            .map_err(|e| errors.extend(e))
            .ok();
        let (Some(common), Some(keys)) = (common, keys) else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Jwt {
            uri_param_names: c.uri_param_names,
            cookie_names: c.cookie_names,
            header_names,
            keys,
            verify_exp,
            verify_nbf,
            maximum_expiration: c.maximum_expiration,
            leeway: c.leeway,
            issuers: c.issuer.map(OneOrMany::into_vec).unwrap_or_default(),
            audiences: c.audience.map(OneOrMany::into_vec).unwrap_or_default(),
            required_claims: c.required_claims,
            claims_to_headers,
            max_token_length: c.max_token_length,
            common,
            realm,
            consumers: ctx.consumers.clone(),
            cache_id: cache::instance_id(),
        })
    }

    async fn on_request(&self, ctx: &mut RequestCtx, req: &mut http::request::Parts) -> Flow {
        // Claim headers are ours to set: a client's copies never reach the upstream, even when
        // this plugin does not run.
        for (_, name) in &self.claims_to_headers {
            req.headers.remove(name);
        }
        if self.common.skip(ctx, &req.method) {
            return Flow::Continue;
        }
        let refusal = match self.authenticate(ctx, req).await {
            Ok(()) => return Flow::Continue,
            Err(r) => r,
        };
        self.common
            .fail(ctx, &mut req.headers, &self.consumers, || {
                // A challenge asks for credentials: only a 401 carries one.
                let challenge = (refusal.status == StatusCode::UNAUTHORIZED)
                    .then(|| self.challenge(refusal.description));
                auth::refusal(refusal.status, &refusal.message, challenge.as_ref())
            })
    }
}

/// The key source configured on the plugin, if any, with the algorithms it accepts.
fn plugin_keys(c: &Config, errors: &mut Vec<(String, String)>) -> Option<Keys> {
    let sources: Vec<&str> = [
        ("secret", c.secret.is_some()),
        ("public_key", c.public_key.is_some()),
        ("jwks_uri", c.jwks_uri.is_some()),
        ("jwks", c.jwks.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    if sources.len() > 1 {
        errors.push((
            String::new(),
            "only one of these fields may be set: 'config.secret', 'config.public_key', 'config.jwks_uri', 'config.jwks'".into(),
        ));
        return None;
    }
    if c.jwks_uri.is_none() {
        for (field, set) in [
            ("jwks_cache_ttl", c.jwks_cache_ttl.is_some()),
            (
                "jwks_min_refresh_interval",
                c.jwks_min_refresh_interval.is_some(),
            ),
            ("jwks_timeout", c.jwks_timeout.is_some()),
        ] {
            if set {
                errors.push((field.into(), "applies to `jwks_uri` only".into()));
            }
        }
    }
    match sources.first().copied() {
        None => {
            if c.algorithms.is_some() {
                errors.push((
                    "algorithms".into(),
                    "applies to a key on the plugin: set `secret`, `public_key`, `jwks_uri` or `jwks`".into(),
                ));
                return None;
            }
            Some(Keys::Credentials {
                key_claim_name: c.key_claim_name.clone(),
                secret_is_base64: c.secret_is_base64,
            })
        }
        Some(field @ ("jwks_uri" | "jwks")) => jwks_keys(c, field, errors),
        Some(_) => single_key(c, errors),
    }
}

/// `secret` or `public_key`, and the algorithms it accepts.
fn single_key(c: &Config, errors: &mut Vec<(String, String)>) -> Option<Keys> {
    let (key, field) = match (&c.secret, &c.public_key) {
        (Some(secret), _) => {
            let raw = if c.secret_is_base64 {
                match credentials::decode_base64_secret(secret) {
                    Some(raw) => raw,
                    None => {
                        errors.push((
                            "secret".into(),
                            "not valid base64 (secret_is_base64 is true)".into(),
                        ));
                        return None;
                    }
                }
            } else {
                secret.as_bytes().to_vec()
            };
            (VerifyKey::hmac(&raw), "secret")
        }
        (None, Some(pem)) => (VerifyKey::from_pem(pem.as_bytes()), "public_key"),
        (None, None) => return None,
    };
    let key = match key {
        Ok(k) => k,
        Err(e) => {
            errors.push((field.into(), e.to_string()));
            return None;
        }
    };
    let algorithms = match &c.algorithms {
        None => vec![default_algorithm(key.kind())],
        Some(list) => parse_algorithms(list, errors, |a| {
            (!key.allows(a)).then(|| format!("{a} cannot be verified with this {field}"))
        })?,
    };
    Some(Keys::Plugin { key, algorithms })
}

/// `jwks_uri` or `jwks` (`field`): `algorithms` must say what the set's keys may verify, as a
/// set can hold keys of every kind.
fn jwks_keys(c: &Config, field: &str, errors: &mut Vec<(String, String)>) -> Option<Keys> {
    let Some(list) = &c.algorithms else {
        errors.push((
            "algorithms".into(),
            format!("required with `{field}`: list the algorithms the tokens are signed with, such as [RS256]"),
        ));
        return None;
    };
    let algorithms = parse_algorithms(list, errors, |_| None)?;
    let jwks = match (&c.jwks_uri, &c.jwks) {
        (Some(uri), _) => {
            let endpoint = match Endpoint::parse_with(uri, c.jwks_tls_verify) {
                Ok(e) => Some(e),
                Err(e) => {
                    errors.push(("jwks_uri".into(), e.to_string()));
                    None
                }
            };
            let mut bounded = |field: &str, value: Option<u64>, default: u64, max: u64| {
                let v = value.unwrap_or(default);
                if v == 0 || v > max {
                    errors.push((field.into(), format!("value should be between 1 and {max}")));
                }
                v
            };
            let timeout = bounded(
                "jwks_timeout",
                c.jwks_timeout,
                DEFAULT_JWKS_TIMEOUT,
                i32::MAX as u64,
            );
            let cache_ttl = bounded(
                "jwks_cache_ttl",
                c.jwks_cache_ttl,
                DEFAULT_JWKS_CACHE_TTL,
                MAX_JWKS_SECONDS,
            );
            let min_refresh_interval = bounded(
                "jwks_min_refresh_interval",
                c.jwks_min_refresh_interval,
                DEFAULT_JWKS_MIN_REFRESH_INTERVAL,
                MAX_JWKS_SECONDS,
            );
            Jwks::remote(
                uri,
                endpoint?,
                algorithms.clone(),
                RemoteSettings {
                    timeout: Duration::from_millis(timeout),
                    cache_ttl: Duration::from_secs(cache_ttl),
                    min_refresh_interval: Duration::from_secs(min_refresh_interval),
                },
            )
        }
        (None, Some(doc)) => match Jwks::inline(doc, &algorithms) {
            Ok(jwks) => jwks,
            Err(e) => {
                errors.push(("jwks".into(), e));
                return None;
            }
        },
        (None, None) => return None,
    };
    Some(Keys::Jwks { jwks, algorithms })
}

/// `algorithms` as a list of known, non-repeated names; `misfit` says why one cannot be used.
fn parse_algorithms(
    list: &[String],
    errors: &mut Vec<(String, String)>,
    misfit: impl Fn(Algorithm) -> Option<String>,
) -> Option<Vec<Algorithm>> {
    if list.is_empty() {
        errors.push(("algorithms".into(), "must not be empty".into()));
        return None;
    }
    let before = errors.len();
    let mut algs = Vec::with_capacity(list.len());
    for (i, name) in list.iter().enumerate() {
        match name.parse::<Algorithm>() {
            Ok(a) => match misfit(a) {
                None => algs.push(a),
                Some(why) => errors.push((format!("algorithms[{i}]"), why)),
            },
            Err(_) => errors.push((
                format!("algorithms[{i}]"),
                format!("unknown algorithm `{name}`; expected one of HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA"),
            )),
        }
    }
    (errors.len() == before).then_some(algs)
}

/// What a key accepts when `algorithms` is not given: the usual algorithm of its kind.
fn default_algorithm(kind: KeyKind) -> Algorithm {
    match kind {
        KeyKind::Hmac => Algorithm::HS256,
        KeyKind::Rsa => Algorithm::RS256,
        KeyKind::Ec(token::Curve::P256) => Algorithm::ES256,
        KeyKind::Ec(token::Curve::P384) => Algorithm::ES384,
        KeyKind::Ed25519 => Algorithm::EdDSA,
    }
}

impl Jwt {
    /// `Bearer realm="…"`, with RFC 6750's `error` and `error_description` for a bad token.
    fn challenge(&self, description: Option<&'static str>) -> HeaderValue {
        let text = match description {
            None => format!("Bearer realm=\"{}\"", self.realm),
            Some(d) => format!(
                "Bearer realm=\"{}\", error=\"invalid_token\", error_description=\"{d}\"",
                self.realm
            ),
        };
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }

    async fn authenticate(
        &self,
        ctx: &mut RequestCtx,
        req: &mut http::request::Parts,
    ) -> Result<(), Refusal> {
        // The token borrows the request: keep only what outlives it.
        let (consumer, headers) = {
            let raw = self.find_token(req)?;
            if let Keys::Jwks { jwks, .. } = &self.keys {
                // Cache hits skip the key set: let it notice that it is due for a refresh.
                jwks.refresh_if_stale();
            }
            let cached = cache::with(self.cache_key(), &raw, |v| {
                self.check_claims(&v.claims)
                    .map(|()| (v.consumer.clone(), v.headers.clone()))
            });
            match cached {
                Some(outcome) => outcome?,
                None => self.verify(&raw).await?,
            }
        };
        match consumer {
            Some((consumer, credential)) => auth::set_consumer(
                ctx,
                &mut req.headers,
                &self.consumers,
                consumer,
                Some(&credential),
            ),
            // A key on the plugin: authenticated, but no consumer is known.
            None => auth::set_authenticated_without_consumer(
                ctx,
                &mut req.headers,
                HeaderValue::from_static("jwt"),
            ),
        }
        for (name, value) in headers {
            req.headers.insert(name, value);
        }
        Ok(())
    }

    /// The full check of a token not seen before (decoding, signature, claims); a token that
    /// passes is remembered by this worker's cache.
    async fn verify(&self, raw: &str) -> Result<VerifiedParts, Refusal> {
        // Read before verifying: if the key set changes meanwhile, the entry is filed under the
        // older generation and is never found again.
        let cache_key = self.cache_key();
        let token = token::parse(raw, self.max_token_length)?;
        let consumer = match &self.keys {
            Keys::Plugin { key, algorithms } => {
                if !algorithms.contains(&token.algorithm()) {
                    return Err(TokenError::AlgorithmNotAllowed(token.algorithm()).into());
                }
                token.verify(key)?;
                None
            }
            Keys::Jwks { jwks, algorithms } => {
                // Before any key lookup: a token with another algorithm never causes a fetch.
                if !algorithms.contains(&token.algorithm()) {
                    return Err(TokenError::AlgorithmNotAllowed(token.algorithm()).into());
                }
                jwks.verify(&token).await?;
                None
            }
            Keys::Credentials {
                key_claim_name,
                secret_is_base64,
            } => Some(self.verify_with_credential(&token, key_claim_name, *secret_is_base64)?),
        };
        let claims = token.into_claims();
        self.check_claims(&claims)?;
        let headers: Vec<(HeaderName, HeaderValue)> = self
            .claims_to_headers
            .iter()
            .filter_map(|(claim, name)| {
                let value = claims.get(claim).and_then(claim_header_value)?;
                Some((name.clone(), value))
            })
            .collect();
        let parts = (consumer.clone(), headers.clone());
        cache::insert(
            cache_key,
            raw,
            cache::Verified {
                consumer,
                claims,
                headers,
            },
        );
        Ok(parts)
    }

    /// This instance's entries in the verified-token cache, for the key set in force (a JWK
    /// Set that changed makes earlier entries unreachable: a removed key stops verifying).
    fn cache_key(&self) -> cache::Key {
        let generation = match &self.keys {
            Keys::Jwks { jwks, .. } => jwks.generation(),
            _ => 0,
        };
        (self.cache_id, generation)
    }

    /// Kong's lookup: the credential named by the `key_claim_name` claim, whose algorithm the
    /// token must use and whose key must verify it.
    fn verify_with_credential(
        &self,
        token: &Token<'_>,
        key_claim_name: &str,
        secret_is_base64: bool,
    ) -> Result<(usize, HeaderValue), Refusal> {
        // Kong looks in the claims, then in the token's header: `key_claim_name: kid` names the
        // credential by the header's `kid`.
        let from_header = (key_claim_name == "kid")
            .then(|| token.kid())
            .flatten()
            .map(|kid| Value::String(kid.to_owned()));
        let claim = token
            .claims()
            .get(key_claim_name)
            .filter(|v| !v.is_null())
            .or(from_header.as_ref());
        let name = match claim {
            None | Some(Value::Null) => {
                return Err(Refusal::invalid(
                    format!("No mandatory '{key_claim_name}' in claims"),
                    "The access token lacks a required claim",
                ));
            }
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(_) => {
                return Err(Refusal::invalid(
                    format!("Invalid '{key_claim_name}' in claims"),
                    "The access token has an invalid claim",
                ));
            }
        };
        let Some(cred) = self.consumers.jwt.get(name) else {
            return Err(Refusal::invalid(
                format!("No credentials found for given '{key_claim_name}'"),
                "The access token is not recognised",
            ));
        };
        if token.algorithm() != cred.algorithm {
            return Err(Refusal::invalid(
                "Invalid algorithm",
                "The access token algorithm is not allowed",
            ));
        }
        let key = if secret_is_base64 {
            // A secret that is not base64 cannot verify anything when it is said to be.
            cred.key_from_base64.as_ref().ok_or_else(|| {
                Refusal::invalid("Invalid key/secret", "The access token cannot be verified")
            })?
        } else {
            &cred.key
        };
        token.verify(key)?;
        Ok((cred.consumer, cred.id.clone()))
    }

    fn check_claims(&self, claims: &Claims) -> Result<(), TokenError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let plugin_key = !matches!(self.keys, Keys::Credentials { .. });
        token::check_required(claims, &self.required_claims)?;
        if self.verify_exp || (plugin_key && claims.contains_key("exp")) {
            token::check_exp(claims, now, self.leeway)?;
        }
        if self.verify_nbf || (plugin_key && claims.contains_key("nbf")) {
            token::check_nbf(claims, now, self.leeway)?;
        }
        if self.maximum_expiration > 0 {
            token::check_max_expiration(claims, now, self.maximum_expiration)?;
        }
        if !self.issuers.is_empty() {
            token::check_issuer(claims, &self.issuers)?;
        }
        if !self.audiences.is_empty() {
            token::check_audience(claims, &self.audiences)?;
        }
        Ok(())
    }

    /// The token from the query, cookies and headers (Kong's order). Several different tokens
    /// are refused: a gateway and an upstream must never read different ones.
    fn find_token<'r>(&self, req: &'r http::request::Parts) -> Result<Cow<'r, str>, Refusal> {
        let mut found: Option<Cow<'r, str>> = None;
        let mut add = |t: Cow<'r, str>| -> Result<(), Refusal> {
            match &found {
                Some(prev) if *prev != t => Err(Refusal::invalid(
                    "Multiple tokens provided",
                    "The request carries more than one access token",
                )),
                Some(_) => Ok(()),
                None => {
                    found = Some(t);
                    Ok(())
                }
            }
        };
        if let Some(q) = req.uri.query() {
            for name in &self.uri_param_names {
                let values = query::values(q, name);
                if values.len() > 1 {
                    // Kong refuses a repeated parameter even when the copies are equal.
                    return Err(Refusal::invalid(
                        "Multiple tokens provided",
                        "The request carries more than one access token",
                    ));
                }
                for v in values {
                    if !v.is_empty() {
                        add(v)?;
                    }
                }
            }
        }
        if !self.cookie_names.is_empty() {
            for cookie_header in req.headers.get_all(header::COOKIE) {
                let Ok(text) = cookie_header.to_str() else {
                    continue;
                };
                for pair in text.split(';') {
                    let Some((name, value)) = pair.trim().split_once('=') else {
                        continue;
                    };
                    if !value.is_empty() && self.cookie_names.iter().any(|c| c == name) {
                        add(Cow::Borrowed(value.trim_matches('"')))?;
                    }
                }
            }
        }
        for name in &self.header_names {
            for value in req.headers.get_all(name) {
                if let Some(t) = value.to_str().ok().and_then(bearer_token) {
                    add(Cow::Borrowed(t))?;
                }
            }
        }
        found.ok_or(Refusal {
            status: StatusCode::UNAUTHORIZED,
            message: Cow::Borrowed("Unauthorized"),
            description: None,
        })
    }
}

/// `Bearer <token>` (scheme case-insensitive, as Kong's `\s*[Bb]earer\s+(.+)`).
fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim_start();
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case("bearer") || !rest.starts_with([' ', '\t']) {
        return None;
    }
    let token = rest.trim();
    (!token.is_empty()).then_some(token)
}

/// A claim as a header value: strings as they are, arrays joined by commas, other values as
/// JSON. `None` when the result cannot be a header value.
fn claim_header_value(v: &Value) -> Option<HeaderValue> {
    let text = match v {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    HeaderValue::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bearer_tokens_like_kong() {
        assert_eq!(bearer_token("Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(bearer_token("  bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("BEARER\tabc"), Some("abc"));
        assert_eq!(bearer_token("Bearerabc"), None);
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bear"), None);
    }

    #[test]
    fn claims_become_header_values() {
        let v =
            |j: serde_json::Value| claim_header_value(&j).map(|h| h.to_str().unwrap().to_string());
        assert_eq!(v(serde_json::json!("user-1")).as_deref(), Some("user-1"));
        assert_eq!(
            v(serde_json::json!(["admin", "ops"])).as_deref(),
            Some("admin,ops")
        );
        assert_eq!(v(serde_json::json!(42)).as_deref(), Some("42"));
        assert_eq!(v(serde_json::json!(true)).as_deref(), Some("true"));
        assert_eq!(v(serde_json::json!({"a": 1})).as_deref(), Some("{\"a\":1}"));
        assert_eq!(v(serde_json::json!("bad\nvalue")), None);
        assert_eq!(v(serde_json::Value::Null), None);
    }
}
