//! `hmac-auth` (Kong priority 1030): authenticate a consumer by an HMAC signature over parts of
//! the request, sent in `Proxy-Authorization` or `Authorization` (read in that order):
//!
//! ```text
//! Authorization: hmac username="alice", algorithm="hmac-sha256", headers="date request-line", signature="<base64>"
//! ```
//!
//! The signed string is one line per name in `headers`, joined by `\n`: `name: value` for a
//! header (its lower-case name; several values joined by `, `; `name:` when absent),
//! `METHOD /path?query HTTP/1.1` for `request-line`, `method /path?query` for
//! `@request-target` (`(request-target): method /path?query` for the draft's
//! `(request-target)`). The draft-cavage form `Signature keyId="alice", ...` is read too.
//!
//! Config (Kong's): `hide_credentials`, `clock_skew` (seconds, default 300), `anonymous`,
//! `validate_request_body` (a `Digest: SHA-256=<base64>` header must match the body, which is
//! then read whole: see [`super::Plugin::needs_request_body`]), `enforce_headers` (names that
//! must be signed), `algorithms` (default hmac-sha224/256/384/512; hmac-sha1 only when listed),
//! `realm`.
//!
//! Every refusal is 401 with `{"message": ...}` and `WWW-Authenticate: hmac` (with
//! `realm="..."` when one is configured): no credentials → `Unauthorized`; no `X-Date` or
//! `Date` within `clock_skew` → `HMAC signature cannot be verified, a valid date or x-date
//! header is required for HMAC Authentication`; an unparseable header, an unknown username, an
//! algorithm not allowed or an enforced header left unsigned → `HMAC signature cannot be
//! verified`; a wrong signature or body digest → `HMAC signature does not match`.
//!
//! Beyond Kong, for safety: when the signature covers `x-date` or `date`, only a signed date
//! counts for the clock check (a fresh unsigned date cannot revive an old signature); a signed
//! header sent twice is signed as both values, so neither can be slipped past the signature;
//! the signature always covers the query (Kong's deprecated path-only form is not accepted).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lc_rs::{constant_time, digest, hmac};
use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::auth::{self, AuthCommon};
use super::{BuildContext, Flow, Plugin, RequestCtx};
use crate::config::model::{HmacauthCredential, Located};
use crate::consumers::{Consumers, CredentialId, UsernameIndexing, index_by_username};

const X_DATE: HeaderName = HeaderName::from_static("x-date");
const DIGEST: HeaderName = HeaderName::from_static("digest");

const UNAUTHORIZED: &str = "Unauthorized";
const BAD_DATE: &str = "HMAC signature cannot be verified, a valid date or x-date header is required for HMAC Authentication";
const NOT_VERIFIED: &str = "HMAC signature cannot be verified";
const NO_MATCH: &str = "HMAC signature does not match";

/// Signed names per request: the signed string's size is bounded by the request head, and
/// each name costs one header lookup.
const MAX_SIGNED_HEADERS: usize = 32;

/// Base64 with or without padding (clients differ).
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The algorithms Kong knows, by configuration name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Algorithm {
    const ALL: [(&'static str, Algorithm); 5] = [
        ("hmac-sha1", Algorithm::Sha1),
        ("hmac-sha224", Algorithm::Sha224),
        ("hmac-sha256", Algorithm::Sha256),
        ("hmac-sha384", Algorithm::Sha384),
        ("hmac-sha512", Algorithm::Sha512),
    ];

    fn from_name(name: &str) -> Option<Algorithm> {
        Self::ALL
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, a)| a)
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Algorithm::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Algorithm::Sha224 => hmac::HMAC_SHA224,
            Algorithm::Sha256 => hmac::HMAC_SHA256,
            Algorithm::Sha384 => hmac::HMAC_SHA384,
            Algorithm::Sha512 => hmac::HMAC_SHA512,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_clock_skew() -> f64 {
    300.0
}
fn default_algorithms() -> Vec<String> {
    ["hmac-sha224", "hmac-sha256", "hmac-sha384", "hmac-sha512"]
        .map(String::from)
        .to_vec()
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub hide_credentials: bool,
    #[serde(default = "default_clock_skew")]
    pub clock_skew: f64,
    #[serde(default)]
    pub anonymous: Option<String>,
    #[serde(default)]
    pub validate_request_body: bool,
    #[serde(default)]
    pub enforce_headers: Vec<String>,
    /// Extension: the signature must cover `date` or `x-date`. Kong does not ask this, so a
    /// signature over other headers only could be replayed forever with a fresh, unsigned
    /// `Date`; `false` restores Kong's behaviour.
    #[serde(default = "default_true")]
    pub require_signed_date: bool,
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    #[serde(default)]
    pub realm: Option<String>,
}

pub struct HmacAuth {
    common: AuthCommon,
    hide_credentials: bool,
    clock_skew: Duration,
    validate_request_body: bool,
    require_signed_date: bool,
    /// Lower-case names that must be among the signed ones.
    enforce_headers: Vec<String>,
    /// One bit per allowed [`Algorithm`].
    algorithms: u8,
    challenge: HeaderValue,
    consumers: Arc<Consumers>,
}

/// Why no consumer could be identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Missing,
    BadDate,
    NotVerified,
    NoMatch,
}

impl Failure {
    fn message(self) -> &'static str {
        match self {
            Failure::Missing => UNAUTHORIZED,
            Failure::BadDate => BAD_DATE,
            Failure::NotVerified => NOT_VERIFIED,
            Failure::NoMatch => NO_MATCH,
        }
    }
}

impl Plugin for HmacAuth {
    const NAME: &'static str = "hmac-auth";
    const PRIORITY: i32 = 1030;
    const CONSUMER_SCOPED: bool = false;
    type Config = Config;

    fn new(c: Config, ctx: &BuildContext<'_>) -> Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        // Kong's bound (`gt = 0`); the upper one keeps the Duration representable.
        if !(c.clock_skew > 0.0 && c.clock_skew <= 1e12) {
            errors.push(("clock_skew".into(), "value must be greater than 0".into()));
        }
        let mut algorithms = 0;
        for (i, name) in c.algorithms.iter().enumerate() {
            match Algorithm::from_name(name) {
                Some(a) => algorithms |= a.bit(),
                None => errors.push((
                    format!("algorithms[{i}]"),
                    format!(
                        "expected one of: {} (got `{name}`)",
                        Algorithm::ALL.map(|(n, _)| n).join(", ")
                    ),
                )),
            }
        }
        if c.algorithms.is_empty() {
            errors.push(("algorithms".into(), "must not be empty".into()));
        }
        for (i, name) in c.enforce_headers.iter().enumerate() {
            if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace() || b < 0x21) {
                errors.push((
                    format!("enforce_headers[{i}]"),
                    "must be a header name (or request-line, @request-target)".into(),
                ));
            }
        }
        let challenge = match c.realm.as_deref() {
            None => HeaderValue::from_static("hmac"),
            Some(realm) => {
                if let Err(e) = auth::check_realm(realm) {
                    errors.extend(e);
                }
                auth::challenge("hmac", realm)
            }
        };
        let common = AuthCommon::new(c.anonymous.as_deref(), true, ctx)
            .map_err(|e| errors.extend(e))
            .ok();
        match common {
            Some(common) if errors.is_empty() => Ok(HmacAuth {
                common,
                hide_credentials: c.hide_credentials,
                clock_skew: Duration::from_secs_f64(c.clock_skew),
                validate_request_body: c.validate_request_body,
                require_signed_date: c.require_signed_date,
                enforce_headers: c
                    .enforce_headers
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
                algorithms,
                challenge,
                consumers: ctx.consumers.clone(),
            }),
            _ => Err(errors),
        }
    }

    fn needs_request_body(&self) -> bool {
        self.validate_request_body
    }

    async fn on_request(&self, ctx: &mut RequestCtx, req: &mut http::request::Parts) -> Flow {
        if self.common.skip(ctx, &req.method) {
            return Flow::Continue;
        }
        let (outcome, used) = self.authenticate(req, ctx.request_body.as_ref(), SystemTime::now());
        if self.hide_credentials
            && let Some(used) = used
        {
            req.headers.remove(used);
        }
        match outcome {
            Ok(cred) => {
                auth::set_consumer(
                    ctx,
                    &mut req.headers,
                    &self.consumers,
                    cred.consumer,
                    Some(&cred.id),
                );
                Flow::Continue
            }
            Err(failure) => {
                tracing::debug!(?failure, "hmac-auth refused the request");
                self.common
                    .fail(ctx, &mut req.headers, &self.consumers, || {
                        auth::refusal(
                            StatusCode::UNAUTHORIZED,
                            failure.message(),
                            Some(&self.challenge),
                        )
                    })
            }
        }
    }
}

impl HmacAuth {
    /// Kong's order of checks: credentials present, a date within the skew, a well-formed
    /// header, allowed algorithm and enforced headers, a known username, the signature, the
    /// body digest. Also returns the header that carried hmac credentials, if any.
    fn authenticate(
        &self,
        req: &http::request::Parts,
        body: Option<&Bytes>,
        now: SystemTime,
    ) -> (Result<&HmacCredential, Failure>, Option<HeaderName>) {
        let mut present = false;
        let mut found = None;
        for name in [header::PROXY_AUTHORIZATION, header::AUTHORIZATION] {
            let mut values = req.headers.get_all(&name).iter();
            let Some(value) = values.next() else { continue };
            present = true;
            // Two values of one header: which one was meant is ambiguous, so neither is used.
            if values.next().is_some() {
                continue;
            }
            if let Some(params) = std::str::from_utf8(value.as_bytes())
                .ok()
                .and_then(parse_authorization)
            {
                found = Some((params, name));
                break;
            }
        }
        let used = found.as_ref().map(|(_, name)| name.clone());
        let outcome = self.check(req, body, now, present, found.map(|(p, _)| p));
        (outcome, used)
    }

    fn check(
        &self,
        req: &http::request::Parts,
        body: Option<&Bytes>,
        now: SystemTime,
        present: bool,
        params: Option<Params<'_>>,
    ) -> Result<&HmacCredential, Failure> {
        if !present {
            return Err(Failure::Missing);
        }
        if !self.date_ok(&req.headers, params.as_ref().map(|p| &p.headers[..]), now) {
            return Err(Failure::BadDate);
        }
        let params = params.ok_or(Failure::NotVerified)?;
        let algorithm = Algorithm::from_name(&params.algorithm)
            .filter(|a| self.algorithms & a.bit() != 0)
            .ok_or(Failure::NotVerified)?;
        if !self
            .enforce_headers
            .iter()
            .all(|e| params.headers.contains(e))
        {
            return Err(Failure::NotVerified);
        }
        let signs = |name: &str| params.headers.iter().any(|h| h == name);
        // A signature that covers no date can be replayed with any fresh date; one that does
        // not cover the digest lets a replay within the skew carry another body.
        if (self.require_signed_date && !signs("date") && !signs("x-date"))
            || (self.validate_request_body && !signs("digest"))
        {
            return Err(Failure::NotVerified);
        }
        let cred = self
            .consumers
            .hmacauth
            .get(&params.username)
            .ok_or(Failure::NotVerified)?;
        let signature = LENIENT_BASE64
            .decode(params.signature.as_bytes())
            .map_err(|_| Failure::NoMatch)?;
        let key = hmac::Key::new(algorithm.hmac(), &cred.secret);
        hmac::verify(&key, &signing_string(req, &params.headers), &signature)
            .map_err(|_| Failure::NoMatch)?;
        if self.validate_request_body && !body.is_some_and(|b| digest_matches(&req.headers, b)) {
            return Err(Failure::NoMatch);
        }
        Ok(cred)
    }

    /// Whether `X-Date` or `Date` is within the skew. When the signature covers one of them,
    /// only a signed one counts.
    fn date_ok(&self, headers: &HeaderMap, signed: Option<&[String]>, now: SystemTime) -> bool {
        let is_signed = |name: &str| signed.is_some_and(|s| s.iter().any(|h| h == name));
        let any_signed = is_signed("x-date") || is_signed("date");
        [(X_DATE, "x-date"), (header::DATE, "date")]
            .into_iter()
            .any(|(h, name)| (!any_signed || is_signed(name)) && self.within_skew(headers, &h, now))
    }

    fn within_skew(&self, headers: &HeaderMap, name: &HeaderName, now: SystemTime) -> bool {
        let mut values = headers.get_all(name).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return false;
        };
        let Some(sent) = value
            .to_str()
            .ok()
            .and_then(|v| httpdate::parse_http_date(v.trim()).ok())
        else {
            return false;
        };
        let skew = now.duration_since(sent).unwrap_or_else(|e| e.duration());
        skew <= self.clock_skew
    }
}

/// The string the client signed: one line per name in `headers`.
fn signing_string(req: &http::request::Parts, headers: &[String]) -> Vec<u8> {
    let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = Vec::with_capacity(256);
    for (i, name) in headers.iter().enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        match name.as_str() {
            "request-line" => {
                out.extend_from_slice(req.method.as_str().as_bytes());
                out.push(b' ');
                out.extend_from_slice(target.as_bytes());
                out.push(b' ');
                out.extend_from_slice(version(req.version).as_bytes());
            }
            // Kong's form, and the draft's (which keeps the `name: ` prefix).
            "@request-target" | "(request-target)" => {
                if name == "(request-target)" {
                    out.extend_from_slice(b"(request-target): ");
                }
                out.extend(req.method.as_str().bytes().map(|b| b.to_ascii_lowercase()));
                out.push(b' ');
                out.extend_from_slice(target.as_bytes());
            }
            name => {
                out.extend_from_slice(name.as_bytes());
                out.push(b':');
                for (j, value) in req.headers.get_all(name).iter().enumerate() {
                    out.extend_from_slice(if j == 0 { b" " } else { b", " });
                    out.extend_from_slice(value.as_bytes());
                }
            }
        }
    }
    out
}

fn version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// `Digest: SHA-256=<base64>` against the body. Without the header only an empty body passes
/// (Kong's rule); other algorithms in the list are ignored.
fn digest_matches(headers: &HeaderMap, body: &[u8]) -> bool {
    let mut values = headers.get_all(DIGEST).iter();
    let value = match (values.next(), values.next()) {
        (None, _) => return body.is_empty(),
        (Some(v), None) => v,
        (Some(_), Some(_)) => return false,
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let Some(sent) = value.split(',').find_map(|entry| {
        let (alg, b64) = entry.trim().split_once('=')?;
        alg.trim()
            .eq_ignore_ascii_case("sha-256")
            .then(|| general_purpose::STANDARD.decode(b64.trim()).ok())?
    }) else {
        return false;
    };
    let actual = digest::digest(&digest::SHA256, body);
    constant_time::verify_slices_are_equal(actual.as_ref(), &sent).is_ok()
}

/// The parameters of an hmac `Authorization` value.
#[derive(Debug, PartialEq, Eq)]
struct Params<'a> {
    username: Cow<'a, str>,
    algorithm: Cow<'a, str>,
    /// Lower-case, in the order signed.
    headers: Vec<String>,
    signature: Cow<'a, str>,
}

/// Parse `hmac username="...", algorithm="...", headers="...", signature="..."` (parameters
/// in any order, values quoted or bare, `keyId` for `username`), or the same under the
/// `Signature` scheme (where `headers` defaults to `date`). `None` for anything else: another
/// scheme, a missing or repeated parameter, a malformed list. Never panics.
fn parse_authorization(value: &str) -> Option<Params<'_>> {
    let value = value.trim_start_matches([' ', '\t']);
    let (scheme, mut rest) = value.split_once([' ', '\t'])?;
    let cavage = if scheme.eq_ignore_ascii_case("hmac") {
        false
    } else if scheme.eq_ignore_ascii_case("signature") {
        true
    } else {
        return None;
    };
    let (mut username, mut algorithm, mut headers, mut signature) = (None, None, None, None);
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        if rest.is_empty() {
            break;
        }
        let key_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(rest.len());
        let (key, after) = rest.split_at(key_len);
        let after = after.trim_start_matches([' ', '\t']).strip_prefix('=')?;
        let (value, after) = param_value(after.trim_start_matches([' ', '\t']))?;
        let mut ignored = None;
        let slot = if key.is_empty() {
            return None;
        } else if key.eq_ignore_ascii_case("username") || key.eq_ignore_ascii_case("keyid") {
            &mut username
        } else if key.eq_ignore_ascii_case("algorithm") {
            &mut algorithm
        } else if key.eq_ignore_ascii_case("headers") {
            &mut headers
        } else if key.eq_ignore_ascii_case("signature") {
            &mut signature
        } else {
            // Other draft parameters (`created`, `expires`) are not checked.
            &mut ignored
        };
        if slot.replace(value).is_some() {
            return None;
        }
        rest = after.trim_start_matches([' ', '\t']);
        if !rest.is_empty() {
            rest = rest.strip_prefix(',')?;
        }
    }
    let headers = match headers {
        Some(h) => h,
        None if cavage => Cow::Borrowed("date"),
        None => return None,
    };
    let list: Vec<String> = headers
        .split_ascii_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    let distinct = list.iter().enumerate().all(|(i, h)| !list[..i].contains(h));
    if list.is_empty() || list.len() > MAX_SIGNED_HEADERS || !distinct {
        return None;
    }
    Some(Params {
        username: username.filter(|v| !v.is_empty())?,
        algorithm: algorithm.filter(|v| !v.is_empty())?,
        headers: list,
        signature: signature.filter(|v| !v.is_empty())?,
    })
}

/// A parameter value at the start of `s` (a quoted string with `\` escapes, or a bare token
/// up to a comma or blank) and what follows it.
fn param_value(s: &str) -> Option<(Cow<'_, str>, &str)> {
    let Some(quoted) = s.strip_prefix('"') else {
        let end = s.find([',', ' ', '\t']).unwrap_or(s.len());
        let (token, rest) = s.split_at(end);
        return (!token.is_empty()).then_some((Cow::Borrowed(token), rest));
    };
    let mut owned: Option<String> = None;
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                let value = match owned {
                    Some(o) => Cow::Owned(o),
                    None => Cow::Borrowed(&quoted[..i]),
                };
                return Some((value, &quoted[i + 1..]));
            }
            '\\' => {
                let (_, escaped) = chars.next()?;
                owned
                    .get_or_insert_with(|| quoted[..i].to_string())
                    .push(escaped);
            }
            c => {
                if let Some(o) = owned.as_mut() {
                    o.push(c);
                }
            }
        }
    }
    None
}

/// A username's consumer, credential id and secret.
pub struct HmacCredential {
    pub consumer: usize,
    pub id: CredentialId,
    secret: Box<[u8]>,
}

/// Every hmac-auth credential of a configuration, by username.
#[derive(Default)]
pub struct HmacIndex {
    by_username: HashMap<String, HmacCredential>,
}

impl HmacIndex {
    pub fn compile(
        credentials: &[Located<HmacauthCredential>],
        consumer_ids: &[&str],
        errors: &mut Vec<(String, String)>,
    ) -> HmacIndex {
        let how = UsernameIndexing {
            collection: "hmacauth_credentials",
            plugin: "hmac-auth",
            consumer_ids,
        };
        let by_username = index_by_username(
            credentials,
            &how,
            |c| (c.username.as_str(), c.id.as_deref()),
            |c, consumer, id, errors| {
                if c.item.secret.is_empty() {
                    errors.push((format!("{}.secret", c.path), "must not be empty".into()));
                    return None;
                }
                Some(HmacCredential {
                    consumer,
                    id,
                    secret: c.item.secret.as_bytes().into(),
                })
            },
            errors,
        );
        HmacIndex { by_username }
    }

    pub fn get(&self, username: &str) -> Option<&HmacCredential> {
        self.by_username.get(username)
    }

    pub fn len(&self) -> usize {
        self.by_username.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_username.is_empty()
    }
}

#[cfg(test)]
mod tests;
