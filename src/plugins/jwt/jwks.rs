//! JSON Web Key Sets (RFC 7517 section 5) for the `jwt` plugin: a set given inline (`jwks`) or
//! fetched from an identity provider (`jwks_uri`), and the choice of a token's key by its `kid`.
//!
//! A fetched set is cached, and fetched again:
//! - on the first request that needs it (loading a configuration does no I/O, and the
//!   keep-alive pool the fetch uses belongs to the worker that makes it);
//! - in the background once it is older than `jwks_cache_ttl`, the old keys serving meanwhile;
//! - when a token names a `kid` the set lacks (the provider rotated its keys), at most once per
//!   `jwks_min_refresh_interval`, so that tokens with made-up `kid`s cannot make the gateway
//!   hammer the provider.
//!
//! Readers take the current set from an `ArcSwap` without locking. One fetch runs at a time (an
//! atomic flag), as a task on the runtime of the worker that started it; requests that need its
//! result wait on a `Notify`, which wakes tasks of any runtime. A failed fetch keeps the
//! previous keys and is logged once, by the fetch itself.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::Notify;

use super::token::{Algorithm, KeyError, Token, TokenError, VerifyKey};
use crate::plugins::http_call::{self, BodyError, CallError, Endpoint};
use crate::proxy::pool::PoolSettings;

/// Largest JWK Set document accepted (sets with many RSA keys and certificate chains exceed the
/// 64 KiB other calls are held to).
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// While no key was ever fetched, every request fails anyway: a failed fetch is retried after
/// this long (or the rate bound, if shorter) so a provider that comes up late is seen quickly.
const EMPTY_RETRY: Duration = Duration::from_secs(1);

/// How much longer than the fetch timeout a request waits for a fetch (scheduling, parsing).
const WAIT_SLACK: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// Key sets
// ---------------------------------------------------------------------------------------------

/// The keys of one JWK Set that fit the configured algorithms.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<VerifyKey>,
}

/// A JWK left out of a set.
#[derive(Debug)]
pub struct Skipped {
    pub index: usize,
    pub kid: Option<String>,
    pub reason: SkipReason,
}

#[derive(Debug, thiserror::Error)]
pub enum SkipReason {
    #[error(transparent)]
    Invalid(#[from] KeyError),
    #[error("fits none of the configured algorithms")]
    NoAlgorithm,
}

/// Why a document is not a JWK Set at all.
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    #[error("not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("not a JWK Set: expected an object with a `keys` array")]
    NotASet,
}

/// Why no key was picked for a token.
enum Miss {
    /// The token's `kid` names no key of the set.
    UnknownKid,
    Refuse(TokenError),
}

impl KeySet {
    /// The keys of the JWK Set `doc` that are valid and fit at least one of `algorithms`, and
    /// the ones left out. Invalid keys are skipped, not fatal: a provider publishing one key
    /// this version cannot read (another curve, `use: enc`) must not take the others down.
    pub fn parse(
        doc: &Value,
        algorithms: &[Algorithm],
    ) -> Result<(KeySet, Vec<Skipped>), SetError> {
        let jwks = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(SetError::NotASet)?;
        let mut keys = Vec::with_capacity(jwks.len());
        let mut skipped = Vec::new();
        for (index, jwk) in jwks.iter().enumerate() {
            let kid = || {
                jwk.get("kid")
                    .and_then(Value::as_str)
                    .map(|k| k.chars().take(128).collect())
            };
            match VerifyKey::from_jwk(jwk) {
                Ok(key) if algorithms.iter().any(|&a| key.allows(a)) => keys.push(key),
                Ok(_) => skipped.push(Skipped {
                    index,
                    kid: kid(),
                    reason: SkipReason::NoAlgorithm,
                }),
                Err(e) => skipped.push(Skipped {
                    index,
                    kid: kid(),
                    reason: e.into(),
                }),
            }
        }
        Ok((KeySet { keys }, skipped))
    }

    /// [`KeySet::parse`] on the bytes of a document.
    pub fn from_slice(
        doc: &[u8],
        algorithms: &[Algorithm],
    ) -> Result<(KeySet, Vec<Skipped>), SetError> {
        Self::parse(&serde_json::from_slice(doc)?, algorithms)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key for a token: the one named by its `kid` (among several with that `kid`, one that
    /// fits `alg`), or without a `kid` the only key of the set that fits `alg`.
    fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<&VerifyKey, Miss> {
        match kid {
            Some(kid) => {
                let mut named = self.keys.iter().filter(|k| k.kid() == Some(kid));
                let first = named.next().ok_or(Miss::UnknownKid)?;
                // `verify` refuses a key that does not fit: "Algorithm not allowed".
                Ok(std::iter::once(first)
                    .chain(named)
                    .find(|k| k.allows(alg))
                    .unwrap_or(first))
            }
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.allows(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(only), None) => Ok(only),
                    // Trying each key in turn would let a token pick its own: refused instead.
                    (Some(_), Some(_)) => Err(Miss::Refuse(TokenError::MissingKeyId)),
                    (None, _) => Err(Miss::Refuse(TokenError::AlgorithmNotAllowed(alg))),
                }
            }
        }
    }

    fn verify(&self, token: &Token<'_>) -> Result<(), Miss> {
        let key = self.select(token.kid(), token.algorithm())?;
        token.verify(key).map_err(Miss::Refuse)
    }
}

/// One line per skipped key: `warn` for a key that could not be read, `debug` for one that is
/// only meant for other algorithms.
fn log_skipped(source: &str, skipped: &[Skipped]) {
    for s in skipped {
        let kid = s.kid.as_deref().unwrap_or("");
        match &s.reason {
            SkipReason::Invalid(e) => {
                tracing::warn!(jwks = source, index = s.index, kid, error = %e, "JWK skipped");
            }
            SkipReason::NoAlgorithm => {
                tracing::debug!(
                    jwks = source,
                    index = s.index,
                    kid,
                    "JWK skipped: {}",
                    s.reason
                );
            }
        }
    }
}

/// `keys[i] (kid "x"): reason; ...` for a configuration error.
fn describe_skipped(skipped: &[Skipped]) -> String {
    skipped
        .iter()
        .map(|s| match &s.kid {
            Some(kid) => format!("keys[{}] (kid \"{kid}\"): {}", s.index, s.reason),
            None => format!("keys[{}]: {}", s.index, s.reason),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

// ---------------------------------------------------------------------------------------------
// Sources
// ---------------------------------------------------------------------------------------------

/// Why a token could not be verified against the set.
#[derive(Debug)]
pub enum Failure {
    Token(TokenError),
    /// No key was ever fetched: the provider's key endpoint has not answered usefully yet.
    NoKeys,
}

/// A key set on the plugin.
pub enum Jwks {
    Inline(KeySet),
    Remote(Arc<Remote>),
}

/// What a fetched set needs besides its URL.
pub struct RemoteSettings {
    pub timeout: Duration,
    pub cache_ttl: Duration,
    pub min_refresh_interval: Duration,
}

impl Jwks {
    /// An inline set (`jwks`): keys that cannot be used are logged and left out, and a set with
    /// none left is an error.
    pub fn inline(doc: &Value, algorithms: &[Algorithm]) -> Result<Jwks, String> {
        let (set, skipped) = KeySet::parse(doc, algorithms).map_err(|e| e.to_string())?;
        if set.is_empty() {
            return Err(if skipped.is_empty() {
                "the set has no keys".into()
            } else {
                format!("no usable key: {}", describe_skipped(&skipped))
            });
        }
        log_skipped("inline", &skipped);
        Ok(Jwks::Inline(set))
    }

    /// A set fetched from `uri` when first needed.
    pub fn remote(
        uri: &str,
        endpoint: Endpoint,
        algorithms: Vec<Algorithm>,
        s: RemoteSettings,
    ) -> Jwks {
        Jwks::Remote(Arc::new(Remote {
            uri: uri.into(),
            endpoint,
            algorithms,
            timeout: s.timeout,
            cache_ttl: millis(s.cache_ttl),
            min_refresh_interval: millis(s.min_refresh_interval),
            pool: Arc::new(PoolSettings::default()),
            keys: ArcSwap::default(),
            generation: AtomicU64::new(0),
            last_document: ArcSwapOption::empty(),
            fetched_at: AtomicU64::new(0),
            attempted_at: AtomicU64::new(0),
            in_flight: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            done: Notify::new(),
        }))
    }

    /// Changes whenever the keys in force change (0 for an inline set).
    pub fn generation(&self) -> u64 {
        match self {
            Jwks::Inline(_) => 0,
            Jwks::Remote(remote) => remote.generation.load(Ordering::Acquire),
        }
    }

    /// Start a background fetch if the keys are older than the cache TTL (for requests that do
    /// not otherwise look at the set).
    pub fn refresh_if_stale(&self) {
        if let Jwks::Remote(remote) = self {
            let now = now_millis();
            if remote.stale(now) {
                remote.start_fetch(now);
            }
        }
    }

    /// Verify `token`'s signature with its key from the set (fetching the set first if needed).
    pub async fn verify(&self, token: &Token<'_>) -> Result<(), Failure> {
        match self {
            Jwks::Inline(set) => set.verify(token).map_err(|m| match m {
                Miss::UnknownKid => Failure::Token(TokenError::UnknownKeyId),
                Miss::Refuse(e) => Failure::Token(e),
            }),
            Jwks::Remote(remote) => remote.verify(token).await,
        }
    }
}

/// A set fetched from the identity provider, and the state of its fetches. Times are
/// milliseconds since [`epoch`] (0: never).
pub struct Remote {
    uri: Box<str>,
    endpoint: Endpoint,
    algorithms: Vec<Algorithm>,
    timeout: Duration,
    cache_ttl: u64,
    min_refresh_interval: u64,
    /// The node's pool settings do not reach plugins: the defaults apply.
    pool: Arc<PoolSettings>,
    keys: ArcSwap<KeySet>,
    /// Incremented every time `keys` is replaced.
    generation: AtomicU64,
    /// The document the keys came from: an unchanged one is not parsed again.
    last_document: ArcSwapOption<Bytes>,
    /// The last successful fetch.
    fetched_at: AtomicU64,
    /// The start of the last fetch, successful or not (the rate bound counts from here).
    attempted_at: AtomicU64,
    in_flight: AtomicBool,
    /// The last fetch failed (so the next success is logged).
    failing: AtomicBool,
    /// Signalled when a fetch ends.
    done: Notify,
}

/// Why a fetch brought no keys.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("status {0}")]
    Status(StatusCode),
    #[error("body: {0}")]
    Body(#[from] BodyError),
    #[error(transparent)]
    Set(#[from] SetError),
    #[error("no usable key in the set")]
    NoUsableKey,
}

/// Clears the in-flight flag and wakes the waiters when a fetch ends, however it ends (a
/// worker's runtime shutting down drops its tasks).
struct InFlight(Arc<Remote>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.store(false, Ordering::Release);
        self.0.done.notify_waiters();
    }
}

impl Remote {
    async fn verify(self: &Arc<Self>, token: &Token<'_>) -> Result<(), Failure> {
        let now = now_millis();
        let mut keys = self.keys.load_full();
        if keys.is_empty() {
            self.refresh(now).await;
            keys = self.keys.load_full();
            if keys.is_empty() {
                return Err(Failure::NoKeys);
            }
        } else if self.stale(now) {
            // Served from the old keys; the new ones are for later requests.
            self.start_fetch(now);
        }
        match keys.verify(token) {
            Ok(()) => return Ok(()),
            Err(Miss::Refuse(e)) => return Err(Failure::Token(e)),
            Err(Miss::UnknownKid) => {}
        }
        // A `kid` the set lacks: the provider may have rotated its keys. Look once more after a
        // fetch, when the rate bound allows one (or one is running anyway).
        if self.refresh(now).await {
            match self.keys.load().verify(token) {
                Ok(()) => return Ok(()),
                Err(Miss::Refuse(e)) => return Err(Failure::Token(e)),
                Err(Miss::UnknownKid) => {}
            }
        }
        Err(Failure::Token(TokenError::UnknownKeyId))
    }

    fn stale(&self, now: u64) -> bool {
        let fetched = self.fetched_at.load(Ordering::Acquire);
        fetched != 0 && now.saturating_sub(fetched) >= self.cache_ttl
    }

    /// Whether the rate bound allows a fetch to start at `now`.
    fn due(&self, now: u64) -> bool {
        let last = self.attempted_at.load(Ordering::Acquire);
        let bound = if self.keys.load().is_empty() {
            self.min_refresh_interval.min(millis(EMPTY_RETRY))
        } else {
            self.min_refresh_interval
        };
        last == 0 || now.saturating_sub(last) >= bound
    }

    /// Start a fetch (if the rate bound allows and none is running) and wait for whichever
    /// fetch is running to end. Returns whether there was one.
    async fn refresh(self: &Arc<Self>, now: u64) -> bool {
        // Registered before looking at the flag, so the end of the fetch cannot be missed.
        let done = self.done.notified();
        tokio::pin!(done);
        done.as_mut().enable();
        let started = self.start_fetch(now);
        if self.in_flight.load(Ordering::Acquire) {
            let _ = tokio::time::timeout(self.timeout + WAIT_SLACK, done).await;
            return true;
        }
        started
    }

    /// Spawn a fetch on this worker's runtime, unless one is running or the rate bound says
    /// not yet. Returns whether one was started.
    fn start_fetch(self: &Arc<Self>, now: u64) -> bool {
        if !self.due(now)
            || self
                .in_flight
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return false;
        }
        let guard = InFlight(self.clone());
        // Checked again under the flag: a fetch that ended meanwhile moved `attempted_at`.
        if !self.due(now) {
            return false;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        self.attempted_at.store(now, Ordering::Release);
        runtime.spawn(async move {
            guard.0.fetch().await;
            drop(guard);
        });
        true
    }

    async fn fetch(&self) {
        let had = self.keys.load().len();
        match self.fetch_set().await {
            Ok(new) => {
                let count = match new {
                    Some((set, document)) => {
                        let count = set.len();
                        self.keys.store(Arc::new(set));
                        self.generation.fetch_add(1, Ordering::AcqRel);
                        self.last_document.store(Some(Arc::new(document)));
                        count
                    }
                    None => had,
                };
                self.fetched_at.store(now_millis(), Ordering::Release);
                if self.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!(jwks_uri = %self.uri, keys = count, "JWKS fetched again after failures");
                } else {
                    tracing::debug!(jwks_uri = %self.uri, keys = count, "JWKS fetched");
                }
            }
            Err(e) => {
                self.failing.store(true, Ordering::Release);
                if had == 0 {
                    tracing::warn!(jwks_uri = %self.uri, error = %e, "JWKS fetch failed; no keys to verify tokens with yet");
                } else {
                    tracing::warn!(jwks_uri = %self.uri, error = %e, keys = had, "JWKS fetch failed; the previous keys stay in use");
                }
            }
        }
    }

    /// GET the set. `None`: the same document as last time.
    async fn fetch_set(&self) -> Result<Option<(KeySet, Bytes)>, FetchError> {
        let (mut req, ()) = http::Request::new(()).into_parts();
        req.method = Method::GET;
        req.uri = self.endpoint.path.clone();
        req.headers
            .insert(header::HOST, self.endpoint.host().clone());
        req.headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/jwk-set+json, application/json"),
        );
        let answer = http_call::call(
            &self.endpoint.target,
            self.endpoint.tls.as_deref(),
            &req,
            self.timeout,
            MAX_JWKS_BYTES,
            &self.pool,
        )
        .await?;
        if answer.head.status != StatusCode::OK {
            return Err(FetchError::Status(answer.head.status));
        }
        let document = answer.body?;
        if self
            .last_document
            .load()
            .as_deref()
            .is_some_and(|last| **last == document)
        {
            return Ok(None);
        }
        let (set, skipped) = KeySet::from_slice(&document, &self.algorithms)?;
        log_skipped(&self.uri, &skipped);
        if set.is_empty() {
            return Err(FetchError::NoUsableKey);
        }
        Ok(Some((set, document)))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds since the first call in this process, plus one (0 stands for "never").
fn now_millis() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    millis(EPOCH.get_or_init(Instant::now).elapsed()) + 1
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_signer as signer;
    use super::super::token;
    use super::*;

    fn alg(name: &str) -> Algorithm {
        name.parse().unwrap()
    }

    /// The public JWK of `alg`'s key, with a `kid` (and more members).
    fn jwk(alg: &str, kid: &str, extra: Value) -> Value {
        let mut k = signer::public_jwk(alg);
        k["kid"] = json!(kid);
        for (name, v) in extra.as_object().unwrap() {
            k[name] = v.clone();
        }
        k
    }

    fn token(alg: &str, kid: Option<&str>) -> String {
        let header = match kid {
            Some(kid) => json!({"alg": alg, "kid": kid}),
            None => json!({"alg": alg}),
        };
        signer::sign_with_header(alg, &header, &json!({"sub": "x"}))
    }

    fn check(set: &KeySet, alg: &str, kid: Option<&str>) -> Result<(), TokenError> {
        let raw = token(alg, kid);
        let t = token::parse(&raw, 8192).unwrap();
        set.verify(&t).map_err(|m| match m {
            Miss::UnknownKid => TokenError::UnknownKeyId,
            Miss::Refuse(e) => e,
        })
    }

    fn algs(names: &[&str]) -> Vec<Algorithm> {
        names.iter().map(|n| alg(n)).collect()
    }

    #[test]
    fn keys_are_chosen_by_kid() {
        let doc = json!({"keys": [
            jwk("RS256", "rsa", json!({})),
            jwk("ES256", "ec", json!({"use": "sig"})),
            jwk("EdDSA", "ed", json!({})),
        ]});
        let (set, skipped) = KeySet::parse(&doc, &algs(&["RS256", "ES256", "EdDSA"])).unwrap();
        assert_eq!((set.len(), skipped.len()), (3, 0));
        assert_eq!(check(&set, "RS256", Some("rsa")), Ok(()));
        assert_eq!(check(&set, "ES256", Some("ec")), Ok(()));
        assert_eq!(check(&set, "EdDSA", Some("ed")), Ok(()));
        assert_eq!(
            check(&set, "RS256", Some("nope")),
            Err(TokenError::UnknownKeyId)
        );
        // The kid of another kind of key: that key refuses the algorithm.
        assert_eq!(
            check(&set, "RS256", Some("ec")),
            Err(TokenError::AlgorithmNotAllowed(Algorithm::RS256))
        );
        // kid comparison is exact.
        assert_eq!(
            check(&set, "RS256", Some("RSA")),
            Err(TokenError::UnknownKeyId)
        );
    }

    #[test]
    fn a_token_without_kid_needs_exactly_one_fitting_key() {
        let one = json!({"keys": [jwk("RS256", "a", json!({}))]});
        let (set, _) = KeySet::parse(&one, &algs(&["RS256"])).unwrap();
        assert_eq!(check(&set, "RS256", None), Ok(()));

        // One key per algorithm family: each fits only its own tokens.
        let mixed = json!({"keys": [jwk("RS256", "a", json!({})), jwk("ES256", "b", json!({}))]});
        let (set, _) = KeySet::parse(&mixed, &algs(&["RS256", "ES256"])).unwrap();
        assert_eq!(check(&set, "RS256", None), Ok(()));
        assert_eq!(check(&set, "ES256", None), Ok(()));
        assert_eq!(
            check(&set, "EdDSA", None),
            Err(TokenError::AlgorithmNotAllowed(Algorithm::EdDSA))
        );

        // Two RSA keys: which one is not for the token to choose.
        let mut other = jwk("RS256", "b", json!({}));
        other["n"] = json!(signer::b64(&[0xc5; 256]));
        let two = json!({"keys": [jwk("RS256", "a", json!({})), other]});
        let (set, _) = KeySet::parse(&two, &algs(&["RS256"])).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(check(&set, "RS256", None), Err(TokenError::MissingKeyId));
        assert_eq!(check(&set, "RS256", Some("a")), Ok(()));
        assert_eq!(
            check(&set, "RS256", Some("b")),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn keys_sharing_a_kid_are_told_apart_by_alg() {
        let doc = json!({"keys": [
            jwk("RS256", "k1", json!({"alg": "RS256"})),
            jwk("PS256", "k1", json!({"alg": "PS256"})),
        ]});
        let (set, _) = KeySet::parse(&doc, &algs(&["RS256", "PS256"])).unwrap();
        assert_eq!(check(&set, "RS256", Some("k1")), Ok(()));
        assert_eq!(check(&set, "PS256", Some("k1")), Ok(()));
        assert_eq!(
            check(&set, "RS384", Some("k1")),
            Err(TokenError::AlgorithmNotAllowed(Algorithm::RS384))
        );
    }

    #[test]
    fn unusable_keys_are_skipped() {
        let doc = json!({"keys": [
            jwk("RS256", "rsa", json!({})),
            jwk("ES256", "enc", json!({"use": "enc"})),
            {"kty": "EC", "crv": "P-521", "kid": "p521", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "no-n", "e": "AQAB"},
            jwk("EdDSA", "ed", json!({})),
            "not an object",
        ]});
        let (set, skipped) = KeySet::parse(&doc, &algs(&["RS256"])).unwrap();
        assert_eq!(set.len(), 1);
        let reasons: Vec<(usize, Option<&str>, String)> = skipped
            .iter()
            .map(|s| (s.index, s.kid.as_deref(), s.reason.to_string()))
            .collect();
        assert_eq!(reasons.len(), 5, "{reasons:?}");
        assert!(matches!(
            skipped[0].reason,
            SkipReason::Invalid(KeyError::NotForSignatures)
        ));
        assert_eq!(reasons[3].1, Some("ed"));
        assert!(matches!(skipped[3].reason, SkipReason::NoAlgorithm));
        assert_eq!(reasons[4].1, None);
        // An HMAC algorithm never picks an RSA key, nor the other way round.
        assert_eq!(
            check(&set, "HS256", Some("rsa")),
            Err(TokenError::AlgorithmNotAllowed(Algorithm::HS256))
        );
    }

    #[test]
    fn documents_that_are_not_sets() {
        for doc in [
            json!([]),
            json!({"keys": {}}),
            json!({"key": []}),
            json!("x"),
        ] {
            assert!(matches!(
                KeySet::parse(&doc, &algs(&["RS256"])),
                Err(SetError::NotASet)
            ));
        }
        assert!(matches!(
            KeySet::from_slice(b"{not json", &algs(&["RS256"])),
            Err(SetError::NotJson(_))
        ));
    }

    #[test]
    fn inline_sets_need_a_usable_key() {
        let rs = algs(&["RS256"]);
        assert!(Jwks::inline(&json!({"keys": [jwk("RS256", "a", json!({}))]}), &rs).is_ok());
        assert_eq!(
            Jwks::inline(&json!({"keys": []}), &rs).err().unwrap(),
            "the set has no keys"
        );
        let e = Jwks::inline(&json!({"keys": [jwk("ES256", "ec", json!({}))]}), &rs)
            .err()
            .unwrap();
        assert_eq!(
            e,
            "no usable key: keys[0] (kid \"ec\"): fits none of the configured algorithms"
        );
        assert!(Jwks::inline(&json!({"keys": 1}), &rs).is_err());
    }

    #[tokio::test]
    async fn an_unreachable_provider_gives_no_keys_and_is_retried_at_most_each_second() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let uri = format!("http://127.0.0.1:{port}/jwks");
        let Jwks::Remote(remote) = Jwks::remote(
            &uri,
            Endpoint::parse(&uri).unwrap(),
            algs(&["RS256"]),
            RemoteSettings {
                timeout: Duration::from_secs(2),
                cache_ttl: Duration::from_secs(300),
                min_refresh_interval: Duration::from_secs(30),
            },
        ) else {
            unreachable!()
        };
        let raw = token("RS256", Some("a"));
        let t = token::parse(&raw, 8192).unwrap();
        assert!(matches!(remote.verify(&t).await, Err(Failure::NoKeys)));
        let first = remote.attempted_at.load(Ordering::Acquire);
        assert_ne!(first, 0);
        assert!(!remote.in_flight.load(Ordering::Acquire));
        // Within the retry bound: no new attempt.
        assert!(matches!(remote.verify(&t).await, Err(Failure::NoKeys)));
        assert_eq!(remote.attempted_at.load(Ordering::Acquire), first);
    }

    #[test]
    fn shareable_across_workers() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Jwks>();
    }
}
