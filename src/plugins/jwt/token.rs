//! JSON Web Tokens in the JWS compact serialization (RFC 7515, RFC 7519): parsing, signature
//! verification and claim checks, with no configuration or HTTP types.
//!
//! Keys ([`VerifyKey`]) are built once per configuration load, from an HMAC secret, a PEM public
//! key or a JWK; a request then runs [`parse`], [`Token::verify`] and whichever `check_*`
//! functions its plugin configuration asks for. A key accepts only the algorithms of its own
//! kind ([`VerifyKey::allows`]): an RSA public key can never be used as an HMAC secret, an EC
//! key only with its own curve, and `alg: none` is not an algorithm at all.
//!
//! HMAC verification uses precomputed `aws-lc-rs` keys and a constant-time comparison; RSA,
//! ECDSA and EdDSA go through `jsonwebtoken`'s verifier (backed by `aws-lc-rs`).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::Once;

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ED25519, ParsedPublicKey,
    RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents, VerificationAlgorithm,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// The claims of a token: its payload, a JSON object.
pub type Claims = Map<String, Value>;

/// RSA moduli outside this range (in bits) are refused when the key is loaded, as they would be
/// by every verification.
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 8192;

/// Longest HMAC signature (HS512), decoded.
const MAX_HMAC_TAG: usize = 64;

// ---------------------------------------------------------------------------------------------
// Algorithms
// ---------------------------------------------------------------------------------------------

/// A JWS signature algorithm (RFC 7518 section 3, RFC 8037 for `EdDSA`).
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

/// The kind of key an [`Algorithm`] needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

/// The curve of an ECDSA key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    P256,
    P384,
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 12] = [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    /// The JOSE name (`"HS256"`, `"EdDSA"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    pub fn family(self) -> Family {
        match self {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Family::Hmac,
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => Family::Rsa,
            Algorithm::ES256 | Algorithm::ES384 => Family::Ec,
            Algorithm::EdDSA => Family::Ed,
        }
    }

    /// The curve an ECDSA algorithm is defined on (`None` for the other families).
    pub fn curve(self) -> Option<Curve> {
        match self {
            Algorithm::ES256 => Some(Curve::P256),
            Algorithm::ES384 => Some(Curve::P384),
            _ => None,
        }
    }

    fn jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::HS256 => jsonwebtoken::Algorithm::HS256,
            Algorithm::HS384 => jsonwebtoken::Algorithm::HS384,
            Algorithm::HS512 => jsonwebtoken::Algorithm::HS512,
            Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            Algorithm::RS384 => jsonwebtoken::Algorithm::RS384,
            Algorithm::RS512 => jsonwebtoken::Algorithm::RS512,
            Algorithm::PS256 => jsonwebtoken::Algorithm::PS256,
            Algorithm::PS384 => jsonwebtoken::Algorithm::PS384,
            Algorithm::PS512 => jsonwebtoken::Algorithm::PS512,
            Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
            Algorithm::ES384 => jsonwebtoken::Algorithm::ES384,
            Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

impl FromStr for Algorithm {
    type Err = TokenError;

    /// Exact, case-sensitive JOSE names. `none` (in any case) and anything unknown are
    /// [`TokenError::UnsupportedAlgorithm`].
    fn from_str(s: &str) -> Result<Self, TokenError> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or(TokenError::UnsupportedAlgorithm)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// The two JSON parts of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPart {
    Header,
    Payload,
}

impl fmt::Display for TokenPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenPart::Header => "header",
            TokenPart::Payload => "payload",
        })
    }
}

/// Why a token was refused. `Display` is the detailed text for logs; [`TokenError::message`] is
/// the short text for a response body and [`TokenError::error_description`] the RFC 6750 one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is longer than {max} bytes")]
    TooLong { max: usize },
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("token {0} is not a valid JSON object")]
    InvalidJson(TokenPart),
    #[error("unsupported token algorithm")]
    UnsupportedAlgorithm,
    #[error("algorithm {0} is not allowed")]
    AlgorithmNotAllowed(Algorithm),
    #[error("invalid signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("token exceeds the maximum allowed expiration")]
    ExceedsMaximumExpiration,
    #[error("missing claim '{0}'")]
    MissingClaim(Cow<'static, str>),
    #[error("claim '{0}' is invalid")]
    InvalidClaim(Cow<'static, str>),
    #[error("issuer not allowed")]
    WrongIssuer,
    #[error("audience not allowed")]
    WrongAudience,
    /// The header's `kid` names no key of the key set, even after a refetch.
    #[error("no key with the token's 'kid'")]
    UnknownKeyId,
    /// No `kid`, and the key set holds more than one key that could verify the token.
    #[error("token has no 'kid' and the key set holds several keys")]
    MissingKeyId,
}

impl TokenError {
    /// A short human message for a JSON response body. Never echoes token content; names a
    /// claim only for the claim errors (those names come from the configuration or the RFCs).
    pub fn message(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            TokenError::TooLong { .. } => "Token too long",
            TokenError::Malformed(_) | TokenError::InvalidJson(_) => "Malformed token",
            TokenError::UnsupportedAlgorithm => "Unsupported algorithm",
            TokenError::AlgorithmNotAllowed(_) => "Algorithm not allowed",
            TokenError::BadSignature => "Invalid signature",
            TokenError::Expired => "Token expired",
            TokenError::NotYetValid => "Token not valid yet",
            TokenError::ExceedsMaximumExpiration => "Token exceeds the maximum allowed expiration",
            TokenError::MissingClaim(name) => return Cow::Owned(format!("Missing claim '{name}'")),
            TokenError::InvalidClaim(name) => return Cow::Owned(format!("Invalid claim '{name}'")),
            TokenError::WrongIssuer => "Issuer not allowed",
            TokenError::WrongAudience => "Audience not allowed",
            TokenError::UnknownKeyId => "Unknown key id",
            TokenError::MissingKeyId => "Missing key id",
        })
    }

    /// Text for the `error_description` attribute of an RFC 6750 `WWW-Authenticate: Bearer`
    /// challenge (with `error="invalid_token"`). Static, so it is always within the attribute's
    /// allowed characters.
    pub fn error_description(&self) -> &'static str {
        match self {
            TokenError::TooLong { .. } => "The access token is too long",
            TokenError::Malformed(_) | TokenError::InvalidJson(_) => {
                "The access token is malformed"
            }
            TokenError::UnsupportedAlgorithm => "The access token algorithm is not supported",
            TokenError::AlgorithmNotAllowed(_) => "The access token algorithm is not allowed",
            TokenError::BadSignature => "The access token signature is invalid",
            TokenError::Expired => "The access token expired",
            TokenError::NotYetValid => "The access token is not valid yet",
            TokenError::ExceedsMaximumExpiration => {
                "The access token expiration exceeds the allowed maximum"
            }
            TokenError::MissingClaim(_) => "The access token lacks a required claim",
            TokenError::InvalidClaim(_) => "The access token has an invalid claim",
            TokenError::WrongIssuer => "The access token issuer is not allowed",
            TokenError::WrongAudience => "The access token audience is not allowed",
            TokenError::UnknownKeyId => "The access token key id is not recognised",
            TokenError::MissingKeyId => "The access token has no key id",
        }
    }
}

/// Why a key could not be built from configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the secret is empty")]
    EmptySecret,
    #[error("expected a PEM public key: {0}")]
    InvalidPem(&'static str),
    #[error("a private key was given; configure the public key")]
    PrivateKey,
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    #[error("invalid JWK: {0}")]
    InvalidJwk(Cow<'static, str>),
    #[error("the JWK is not meant for signatures")]
    NotForSignatures,
    #[error("unsupported algorithm '{0}'")]
    UnsupportedAlgorithm(String),
    #[error("algorithm {0} does not fit this key")]
    AlgorithmMismatch(Algorithm),
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/// What a [`VerifyKey`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Hmac,
    Rsa,
    Ec(Curve),
    Ed25519,
}

/// A key for verifying token signatures, built once when the configuration is loaded.
pub struct VerifyKey {
    material: Material,
    /// From a JWK's `alg`: the only algorithm this key may be used with.
    only: Option<Algorithm>,
    kid: Option<Box<str>>,
}

enum Material {
    /// One precomputed key schedule per HMAC algorithm.
    Hmac(Box<HmacKeys>),
    Rsa(DecodingKey),
    Ec(Curve, DecodingKey),
    Ed(DecodingKey),
}

struct HmacKeys {
    hs256: hmac::Key,
    hs384: hmac::Key,
    hs512: hmac::Key,
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kind", &self.kind())
            .field("alg", &self.only)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// `jsonwebtoken` picks its `aws-lc-rs` provider by itself when that is its only crypto
/// feature, but panics if feature unification ever turns on its RustCrypto backend too. Install
/// the `aws-lc-rs` provider explicitly (once, before the first asymmetric key exists) unless
/// one is already available.
fn ensure_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        if jsonwebtoken::crypto::CryptoProvider::try_get_default().is_none() {
            // Losing a race with another installer is fine: any installed provider will do.
            let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        }
    });
}

impl VerifyKey {
    /// An HMAC key (`HS256`, `HS384`, `HS512`) from the raw secret bytes.
    pub fn hmac(secret: &[u8]) -> Result<Self, KeyError> {
        Ok(Self::new(Material::Hmac(hmac_keys(secret)?)))
    }

    /// A public key in PEM: RSA (`BEGIN RSA PUBLIC KEY`, PKCS#1, or `BEGIN PUBLIC KEY`, SPKI),
    /// EC P-256 or P-384 (SPKI) or Ed25519 (SPKI). The kind is detected.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        ensure_crypto_provider();
        let label = pem_label(pem)?;
        let material = match label {
            "RSA PUBLIC KEY" => rsa_from_pem(pem)?,
            "PUBLIC KEY" => {
                if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
                    rsa_material(key)?
                } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
                    let point = key.try_get_as_bytes().map_err(|_| invalid_ec())?;
                    let curve = ec_curve_of_point(point)?;
                    Material::Ec(curve, key)
                } else if let Ok(key) = DecodingKey::from_ed_pem(pem) {
                    let raw = key.try_get_as_bytes().map_err(|_| invalid_ed())?;
                    validate_ed25519(raw)?;
                    Material::Ed(key)
                } else {
                    return Err(KeyError::InvalidPem(
                        "not an RSA, EC (P-256, P-384) or Ed25519 public key",
                    ));
                }
            }
            l if l.ends_with("PRIVATE KEY") => return Err(KeyError::PrivateKey),
            "CERTIFICATE" => {
                return Err(KeyError::InvalidPem(
                    "certificates are not accepted; give the public key",
                ));
            }
            _ => return Err(KeyError::InvalidPem("not a public key")),
        };
        Ok(Self::new(material))
    }

    /// A key from a JWK (RFC 7517): `kty` `RSA` (`n`, `e`), `EC` (`crv` `P-256`/`P-384`, `x`,
    /// `y`), `OKP` (`crv` `Ed25519`, `x`) or `oct` (`k`). An `alg` member restricts the key to
    /// that algorithm; a `use` other than `sig` is refused; `kid` is kept ([`VerifyKey::kid`]).
    pub fn from_jwk(jwk: &Value) -> Result<Self, KeyError> {
        let obj = jwk
            .as_object()
            .ok_or(KeyError::InvalidJwk(Cow::Borrowed("not a JSON object")))?;
        let kty = jwk_str(obj, "kty")?.ok_or(KeyError::InvalidJwk(Cow::Borrowed("no 'kty'")))?;
        if jwk_str(obj, "use")?.is_some_and(|u| u != "sig") {
            return Err(KeyError::NotForSignatures);
        }
        let only = jwk_str(obj, "alg")?
            .map(|a| {
                a.parse::<Algorithm>()
                    .map_err(|_| KeyError::UnsupportedAlgorithm(a.to_owned()))
            })
            .transpose()?;
        let kid = jwk_str(obj, "kid")?.map(Box::from);

        let material = match kty {
            "RSA" => {
                ensure_crypto_provider();
                let n = jwk_b64(obj, "n")?;
                let e = jwk_b64(obj, "e")?;
                // RFC 7518 forbids leading zero octets, but some publishers add one and aws-lc
                // refuses them at every verification: strip them here, once.
                let (n, e) = (trim_leading_zeros(&n), trim_leading_zeros(&e));
                check_rsa_bits(n)?;
                RsaPublicKeyComponents { n, e }
                    .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
                    .map_err(|_| KeyError::InvalidKey("not a valid RSA public key"))?;
                Material::Rsa(DecodingKey::from_rsa_raw_components(n, e))
            }
            "EC" => {
                ensure_crypto_provider();
                let curve = match jwk_str(obj, "crv")? {
                    Some("P-256") => Curve::P256,
                    Some("P-384") => Curve::P384,
                    Some(_) => {
                        return Err(KeyError::InvalidJwk(Cow::Borrowed(
                            "'crv' must be P-256 or P-384",
                        )));
                    }
                    None => return Err(KeyError::InvalidJwk(Cow::Borrowed("no 'crv'"))),
                };
                let len = match curve {
                    Curve::P256 => 32,
                    Curve::P384 => 48,
                };
                let x = jwk_b64(obj, "x")?;
                let y = jwk_b64(obj, "y")?;
                if x.len() != len || y.len() != len {
                    return Err(KeyError::InvalidJwk(Cow::Borrowed(
                        "'x' and 'y' do not match the curve size",
                    )));
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                validate_ec_point(curve, &point)?;
                Material::Ec(curve, DecodingKey::from_ec_der(&point))
            }
            "OKP" => {
                ensure_crypto_provider();
                if jwk_str(obj, "crv")? != Some("Ed25519") {
                    return Err(KeyError::InvalidJwk(Cow::Borrowed("'crv' must be Ed25519")));
                }
                let x = jwk_b64(obj, "x")?;
                validate_ed25519(&x)?;
                Material::Ed(DecodingKey::from_ed_der(&x))
            }
            "oct" => Material::Hmac(hmac_keys(&jwk_b64(obj, "k")?)?),
            _ => {
                return Err(KeyError::InvalidJwk(Cow::Borrowed(
                    "'kty' must be RSA, EC, OKP or oct",
                )));
            }
        };
        let key = VerifyKey {
            material,
            only: None,
            kid,
        };
        if let Some(alg) = only
            && !key.allows(alg)
        {
            return Err(KeyError::AlgorithmMismatch(alg));
        }
        Ok(VerifyKey { only, ..key })
    }

    fn new(material: Material) -> Self {
        VerifyKey {
            material,
            only: None,
            kid: None,
        }
    }

    pub fn kind(&self) -> KeyKind {
        match &self.material {
            Material::Hmac(_) => KeyKind::Hmac,
            Material::Rsa(_) => KeyKind::Rsa,
            Material::Ec(curve, _) => KeyKind::Ec(*curve),
            Material::Ed(_) => KeyKind::Ed25519,
        }
    }

    /// The JWK `kid`, if the key came from a JWK that has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithm a JWK's `alg` restricted this key to, if any.
    pub fn algorithm(&self) -> Option<Algorithm> {
        self.only
    }

    /// Whether a token signed with `alg` may be verified with this key: the algorithm's family
    /// must be the key's (HMAC key: `HS*`; RSA: `RS*`, `PS*`; EC: the ES algorithm of its curve;
    /// Ed25519: `EdDSA`), and the JWK `alg`, if any, must be `alg`.
    pub fn allows(&self, alg: Algorithm) -> bool {
        if self.only.is_some_and(|only| only != alg) {
            return false;
        }
        match &self.material {
            Material::Hmac(_) => alg.family() == Family::Hmac,
            Material::Rsa(_) => alg.family() == Family::Rsa,
            Material::Ec(curve, _) => alg.curve() == Some(*curve),
            Material::Ed(_) => alg == Algorithm::EdDSA,
        }
    }
}

fn hmac_keys(secret: &[u8]) -> Result<Box<HmacKeys>, KeyError> {
    if secret.is_empty() {
        return Err(KeyError::EmptySecret);
    }
    Ok(Box::new(HmacKeys {
        hs256: hmac::Key::new(hmac::HMAC_SHA256, secret),
        hs384: hmac::Key::new(hmac::HMAC_SHA384, secret),
        hs512: hmac::Key::new(hmac::HMAC_SHA512, secret),
    }))
}

/// The label of the first PEM block (`PUBLIC KEY` for `-----BEGIN PUBLIC KEY-----`).
fn pem_label(pem: &[u8]) -> Result<&str, KeyError> {
    const BEGIN: &str = "-----BEGIN ";
    let text = std::str::from_utf8(pem).map_err(|_| KeyError::InvalidPem("not text"))?;
    let start = text
        .find(BEGIN)
        .ok_or(KeyError::InvalidPem("no BEGIN line"))?
        + BEGIN.len();
    let len = text[start..]
        .find("-----")
        .ok_or(KeyError::InvalidPem("unterminated BEGIN line"))?;
    Ok(&text[start..start + len])
}

fn rsa_from_pem(pem: &[u8]) -> Result<Material, KeyError> {
    let key = DecodingKey::from_rsa_pem(pem)
        .map_err(|_| KeyError::InvalidPem("not an RSA public key"))?;
    rsa_material(key)
}

/// Check an RSA key from PEM (jsonwebtoken keeps it as PKCS#1 DER) the way every verification
/// would, so a bad or too small key fails at load time instead of on each request.
fn rsa_material(key: DecodingKey) -> Result<Material, KeyError> {
    let der = key
        .try_get_as_bytes()
        .map_err(|_| KeyError::InvalidKey("not a valid RSA public key"))?;
    let public = aws_lc_rs::rsa::PublicKey::from_der(der)
        .map_err(|_| KeyError::InvalidKey("not a valid RSA public key"))?;
    check_rsa_bits(public.modulus().big_endian_without_leading_zero())?;
    Ok(Material::Rsa(key))
}

fn check_rsa_bits(n: &[u8]) -> Result<(), KeyError> {
    let bits = match n.first() {
        Some(&first) => n.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    };
    if (RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        Ok(())
    } else {
        Err(KeyError::InvalidKey(
            "RSA modulus must be 2048 to 8192 bits long",
        ))
    }
}

fn trim_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn invalid_ec() -> KeyError {
    KeyError::InvalidKey("not a valid P-256 or P-384 public key")
}

fn invalid_ed() -> KeyError {
    KeyError::InvalidKey("not a valid Ed25519 public key")
}

/// The curve of an uncompressed SEC1 point, checked to lie on it.
fn ec_curve_of_point(point: &[u8]) -> Result<Curve, KeyError> {
    let curve = match point.len() {
        65 => Curve::P256,
        97 => Curve::P384,
        _ => return Err(invalid_ec()),
    };
    validate_ec_point(curve, point)?;
    Ok(curve)
}

fn validate_ec_point(curve: Curve, point: &[u8]) -> Result<(), KeyError> {
    let alg: &'static dyn VerificationAlgorithm = match curve {
        Curve::P256 => &ECDSA_P256_SHA256_FIXED,
        Curve::P384 => &ECDSA_P384_SHA384_FIXED,
    };
    if point.first() != Some(&0x04) {
        return Err(invalid_ec());
    }
    ParsedPublicKey::new(alg, point).map_err(|_| invalid_ec())?;
    Ok(())
}

fn validate_ed25519(raw: &[u8]) -> Result<(), KeyError> {
    if raw.len() != 32 {
        return Err(invalid_ed());
    }
    ParsedPublicKey::new(&ED25519, raw).map_err(|_| invalid_ed())?;
    Ok(())
}

/// A string member of a JWK (`None` when absent or null).
fn jwk_str<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, KeyError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(KeyError::InvalidJwk(Cow::Owned(format!(
            "'{name}' must be a string"
        )))),
    }
}

/// A required base64url member of a JWK, decoded (trailing `=` padding tolerated).
fn jwk_b64(obj: &Map<String, Value>, name: &str) -> Result<Vec<u8>, KeyError> {
    let text = jwk_str(obj, name)?
        .ok_or_else(|| KeyError::InvalidJwk(Cow::Owned(format!("no '{name}'"))))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| KeyError::InvalidJwk(Cow::Owned(format!("'{name}' is not base64url"))))?;
    if bytes.is_empty() {
        return Err(KeyError::InvalidJwk(Cow::Owned(format!(
            "'{name}' is empty"
        ))));
    }
    Ok(bytes)
}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

/// A parsed, not yet verified token. Borrows the token text.
#[derive(Debug)]
pub struct Token<'a> {
    /// `header.payload`, the bytes the signature covers.
    signing_input: &'a str,
    /// The signature, still base64url.
    signature: &'a str,
    algorithm: Algorithm,
    kid: Option<Box<str>>,
    claims: Claims,
}

/// The header members this module looks at; others are ignored. Duplicate members are refused
/// (by serde), so no two readers can disagree on which `alg` counts.
#[derive(Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow, default)]
    alg: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    #[serde(default)]
    crit: Present,
}

/// Records whether a member was present, whatever its value.
#[derive(Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| Present(true))
    }
}

/// Split and decode a compact JWS. Checks the structure, the header (`alg` must be a supported
/// algorithm, `crit` is refused) and that the payload is a JSON object; does not check the
/// signature ([`Token::verify`]) nor any claim. `max_len` bounds the work done for hostile input.
pub fn parse(token: &str, max_len: usize) -> Result<Token<'_>, TokenError> {
    if token.len() > max_len {
        return Err(TokenError::TooLong { max: max_len });
    }
    let (first_dot, second_dot) = split_points(token.as_bytes())?;
    let header_b64 = &token[..first_dot];
    let payload_b64 = &token[first_dot + 1..second_dot];
    let signature = &token[second_dot + 1..];
    if header_b64.is_empty() || payload_b64.is_empty() {
        return Err(TokenError::Malformed("empty header or payload"));
    }

    // One buffer, sized for the larger part, decodes the header and then the payload.
    let mut buf = Vec::with_capacity(base64::decoded_len_estimate(
        header_b64.len().max(payload_b64.len()),
    ));

    decode_part(header_b64, &mut buf)?;
    if !is_json_object(&buf) {
        return Err(TokenError::InvalidJson(TokenPart::Header));
    }
    let header: RawHeader<'_> =
        serde_json::from_slice(&buf).map_err(|_| TokenError::InvalidJson(TokenPart::Header))?;
    let algorithm = header
        .alg
        .as_deref()
        .ok_or(TokenError::Malformed("header has no 'alg'"))?
        .parse::<Algorithm>()?;
    if header.crit.0 {
        return Err(TokenError::Malformed(
            "critical header extensions are not supported",
        ));
    }
    let kid = header.kid.map(|k| Box::<str>::from(k.as_ref()));

    if signature.is_empty() {
        return Err(TokenError::Malformed("empty signature"));
    }
    if signature.len() % 4 == 1 {
        return Err(TokenError::Malformed("signature is not base64url"));
    }

    buf.clear();
    decode_part(payload_b64, &mut buf)?;
    let UniqueClaims(claims) =
        serde_json::from_slice(&buf).map_err(|_| TokenError::InvalidJson(TokenPart::Payload))?;

    Ok(Token {
        signing_input: &token[..second_dot],
        signature,
        algorithm,
        kid,
        claims,
    })
}

/// A payload object whose members are all distinct: with `{"iss":"bob","iss":"alice"}` a
/// last-wins reader (this one) and a first-wins one (an upstream's) would disagree on who the
/// token is for, so such a token is refused, as a header with duplicate members is.
struct UniqueClaims(Claims);

impl<'de> Deserialize<'de> for UniqueClaims {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = UniqueClaims;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueClaims, A::Error> {
                let mut claims = Claims::new();
                while let Some(name) = map.next_key::<String>()? {
                    let value: Value = map.next_value()?;
                    if claims.contains_key(&name) {
                        return Err(serde::de::Error::custom("duplicate member"));
                    }
                    claims.insert(name, value);
                }
                Ok(UniqueClaims(claims))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// The positions of the two dots, after checking every other byte is base64url (no padding).
fn split_points(bytes: &[u8]) -> Result<(usize, usize), TokenError> {
    let mut dots = [0usize; 2];
    let mut found = 0;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => {}
            b'.' => {
                if found == 2 {
                    return Err(TokenError::Malformed("token must have three parts"));
                }
                dots[found] = i;
                found += 1;
            }
            b'=' => return Err(TokenError::Malformed("base64url padding is not allowed")),
            _ => return Err(TokenError::Malformed("token is not base64url")),
        }
    }
    if found != 2 {
        return Err(TokenError::Malformed("token must have three parts"));
    }
    Ok((dots[0], dots[1]))
}

fn decode_part(part: &str, buf: &mut Vec<u8>) -> Result<(), TokenError> {
    URL_SAFE_NO_PAD
        .decode_vec(part, buf)
        .map_err(|_| TokenError::Malformed("part is not base64url"))
}

/// serde would read a JSON array into a struct field by field; a header must be an object.
fn is_json_object(json: &[u8]) -> bool {
    json.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{')
}

impl<'a> Token<'a> {
    /// The header's `alg`.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The header's `kid`, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The payload.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// The payload, owned.
    pub fn into_claims(self) -> Claims {
        self.claims
    }

    /// Verify the signature with `key`: [`TokenError::AlgorithmNotAllowed`] if the token's
    /// algorithm does not fit the key ([`VerifyKey::allows`]), [`TokenError::BadSignature`] if
    /// the signature does not match.
    pub fn verify(&self, key: &VerifyKey) -> Result<(), TokenError> {
        let alg = self.algorithm;
        if !key.allows(alg) {
            return Err(TokenError::AlgorithmNotAllowed(alg));
        }
        let message = self.signing_input.as_bytes();
        let valid = match &key.material {
            Material::Hmac(keys) => {
                let key = match alg {
                    Algorithm::HS256 => &keys.hs256,
                    Algorithm::HS384 => &keys.hs384,
                    _ => &keys.hs512,
                };
                // Decoded on the stack; a signature too long for HS512 cannot be valid.
                let mut tag = [0u8; MAX_HMAC_TAG];
                match URL_SAFE_NO_PAD.decode_slice(self.signature, &mut tag) {
                    Ok(len) => hmac::verify(key, message, &tag[..len]).is_ok(),
                    Err(_) => false,
                }
            }
            Material::Rsa(key) | Material::Ec(_, key) | Material::Ed(key) => {
                jsonwebtoken::crypto::verify(self.signature, message, key, alg.jsonwebtoken())
                    .unwrap_or(false)
            }
        };
        if valid {
            Ok(())
        } else {
            Err(TokenError::BadSignature)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Claims
// ---------------------------------------------------------------------------------------------

/// A NumericDate claim (RFC 7519: seconds since the epoch, integer or not).
fn numeric_date(claims: &Claims, name: &'static str) -> Result<f64, TokenError> {
    match claims.get(name) {
        None | Some(Value::Null) => Err(TokenError::MissingClaim(Cow::Borrowed(name))),
        Some(Value::Number(n)) => n
            .as_f64()
            .ok_or(TokenError::InvalidClaim(Cow::Borrowed(name))),
        Some(_) => Err(TokenError::InvalidClaim(Cow::Borrowed(name))),
    }
}

/// `exp` must be present, a number, and later than `now - leeway` (`exp <= now - leeway` is
/// expired). `now` is seconds since the Unix epoch.
pub fn check_exp(claims: &Claims, now: u64, leeway: u64) -> Result<(), TokenError> {
    let exp = numeric_date(claims, "exp")?;
    if exp <= now as f64 - leeway as f64 {
        return Err(TokenError::Expired);
    }
    Ok(())
}

/// `nbf` must be present, a number, and not later than `now + leeway`.
pub fn check_nbf(claims: &Claims, now: u64, leeway: u64) -> Result<(), TokenError> {
    let nbf = numeric_date(claims, "nbf")?;
    if nbf > now as f64 + leeway as f64 {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

/// `exp` must be present, a number, and no later than `now + max` (Kong's
/// `maximum_expiration`, in seconds).
pub fn check_max_expiration(claims: &Claims, now: u64, max: u64) -> Result<(), TokenError> {
    let exp = numeric_date(claims, "exp")?;
    if exp > now as f64 + max as f64 {
        return Err(TokenError::ExceedsMaximumExpiration);
    }
    Ok(())
}

/// `iss` must be present, a string, and one of `allowed`.
pub fn check_issuer<S: AsRef<str>>(claims: &Claims, allowed: &[S]) -> Result<(), TokenError> {
    match claims.get("iss") {
        None | Some(Value::Null) => Err(TokenError::MissingClaim(Cow::Borrowed("iss"))),
        Some(Value::String(iss)) => {
            if allowed.iter().any(|a| a.as_ref() == iss) {
                Ok(())
            } else {
                Err(TokenError::WrongIssuer)
            }
        }
        Some(_) => Err(TokenError::InvalidClaim(Cow::Borrowed("iss"))),
    }
}

/// `aud` must be present, a string or an array of strings, and (one of) its values one of
/// `allowed`.
pub fn check_audience<S: AsRef<str>>(claims: &Claims, allowed: &[S]) -> Result<(), TokenError> {
    let is_allowed = |aud: &str| allowed.iter().any(|a| a.as_ref() == aud);
    match claims.get("aud") {
        None | Some(Value::Null) => Err(TokenError::MissingClaim(Cow::Borrowed("aud"))),
        Some(Value::String(aud)) => {
            if is_allowed(aud) {
                Ok(())
            } else {
                Err(TokenError::WrongAudience)
            }
        }
        Some(Value::Array(auds)) => {
            let mut matched = false;
            for aud in auds {
                match aud {
                    Value::String(aud) => matched |= is_allowed(aud),
                    _ => return Err(TokenError::InvalidClaim(Cow::Borrowed("aud"))),
                }
            }
            if matched {
                Ok(())
            } else {
                Err(TokenError::WrongAudience)
            }
        }
        Some(_) => Err(TokenError::InvalidClaim(Cow::Borrowed("aud"))),
    }
}

/// Every claim in `names` must be present (and not null); the first missing one is reported.
pub fn check_required<S: AsRef<str>>(claims: &Claims, names: &[S]) -> Result<(), TokenError> {
    for name in names {
        let name = name.as_ref();
        if claims.get(name).is_none_or(Value::is_null) {
            return Err(TokenError::MissingClaim(Cow::Owned(name.to_owned())));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::jwt::test_signer::{self as signer, ALGORITHMS, HMAC_SECRET};

    const MAX: usize = 8 * 1024;
    const NOW: u64 = 1_700_000_000;

    fn alg(name: &str) -> Algorithm {
        name.parse().unwrap()
    }

    fn pem_key(alg: &str) -> VerifyKey {
        match signer::public_pem(alg) {
            Some(pem) => VerifyKey::from_pem(pem.as_bytes()).unwrap(),
            None => VerifyKey::hmac(HMAC_SECRET).unwrap(),
        }
    }

    fn other_key(alg: &str) -> VerifyKey {
        match signer::other_public_pem(alg) {
            Some(pem) => VerifyKey::from_pem(pem.as_bytes()).unwrap(),
            None => VerifyKey::hmac(b"another secret").unwrap(),
        }
    }

    fn jwk_key(alg: &str) -> VerifyKey {
        VerifyKey::from_jwk(&signer::public_jwk(alg)).unwrap()
    }

    fn payload() -> Value {
        json!({ "sub": "alice", "iss": "issuer-a", "exp": NOW + 60 })
    }

    fn claims(v: Value) -> Claims {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    fn parse_err(token: &str) -> TokenError {
        parse(token, MAX).unwrap_err()
    }

    fn verify(token: &str, key: &VerifyKey) -> Result<(), TokenError> {
        parse(token, MAX)?.verify(key)
    }

    #[test]
    fn algorithm_names_round_trip() {
        for a in Algorithm::ALL {
            assert_eq!(a.name().parse::<Algorithm>(), Ok(a));
            assert_eq!(a.to_string(), a.name());
        }
        for bad in [
            "none", "None", "NONE", "hs256", "HS1024", "ES512", "RS1", "", "EDDSA",
        ] {
            assert_eq!(
                bad.parse::<Algorithm>(),
                Err(TokenError::UnsupportedAlgorithm),
                "{bad}"
            );
        }
        assert_eq!(signer::ALGORITHMS.len(), Algorithm::ALL.len());
    }

    #[test]
    fn every_algorithm_verifies_with_its_pem_and_jwk_keys() {
        for name in ALGORITHMS {
            let token = signer::sign(name, &payload());
            let parsed = parse(&token, MAX).unwrap();
            assert_eq!(parsed.algorithm(), alg(name));
            assert_eq!(parsed.claims()["sub"], "alice");
            assert_eq!(parsed.verify(&pem_key(name)), Ok(()), "{name} with PEM key");
            assert_eq!(parsed.verify(&jwk_key(name)), Ok(()), "{name} with JWK key");
        }
    }

    #[test]
    fn rsa_pkcs1_pem_verifies_all_rsa_algorithms() {
        let key = VerifyKey::from_pem(signer::RSA_PUBLIC_PKCS1_PEM.as_bytes()).unwrap();
        assert_eq!(key.kind(), KeyKind::Rsa);
        for name in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
            assert_eq!(
                verify(&signer::sign(name, &payload()), &key),
                Ok(()),
                "{name}"
            );
        }
    }

    #[test]
    fn pem_key_kinds_are_detected() {
        let cases = [
            (signer::RSA_PUBLIC_PEM, KeyKind::Rsa),
            (signer::RSA_PUBLIC_PKCS1_PEM, KeyKind::Rsa),
            (signer::P256_PUBLIC_PEM, KeyKind::Ec(Curve::P256)),
            (signer::P384_PUBLIC_PEM, KeyKind::Ec(Curve::P384)),
            (signer::ED25519_PUBLIC_PEM, KeyKind::Ed25519),
        ];
        for (pem, kind) in cases {
            assert_eq!(VerifyKey::from_pem(pem.as_bytes()).unwrap().kind(), kind);
        }
        assert_eq!(VerifyKey::hmac(b"s").unwrap().kind(), KeyKind::Hmac);
    }

    #[test]
    fn wrong_key_is_a_bad_signature() {
        for name in ALGORITHMS {
            let token = signer::sign(name, &payload());
            assert_eq!(
                verify(&token, &other_key(name)),
                Err(TokenError::BadSignature),
                "{name}"
            );
        }
    }

    #[test]
    fn tampered_payload_is_a_bad_signature() {
        let forged = signer::b64(
            json!({ "sub": "mallory", "exp": NOW + 60 })
                .to_string()
                .as_bytes(),
        );
        for name in ALGORITHMS {
            let token = signer::sign(name, &payload());
            let parts: Vec<&str> = token.split('.').collect();
            let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
            assert_eq!(
                verify(&tampered, &pem_key(name)),
                Err(TokenError::BadSignature),
                "{name}"
            );
        }
    }

    #[test]
    fn tampered_or_truncated_signature_is_a_bad_signature() {
        for name in ALGORITHMS {
            let token = signer::sign(name, &payload());
            let (input, sig) = token.rsplit_once('.').unwrap();
            let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
            raw[0] ^= 1;
            let flipped = format!("{input}.{}", signer::b64(&raw));
            let short = format!("{input}.{}", signer::b64(&raw[..raw.len() / 2]));
            let long = format!("{input}.{}", signer::b64(&[raw.as_slice(), &raw].concat()));
            for bad in [flipped, short, long] {
                assert_eq!(
                    verify(&bad, &pem_key(name)),
                    Err(TokenError::BadSignature),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn alg_none_is_rejected_with_or_without_a_signature() {
        for none in ["none", "None", "NONE", "nOnE"] {
            assert_eq!(
                parse_err(&signer::unsecured(none, &payload())),
                TokenError::UnsupportedAlgorithm,
                "{none}"
            );
            let header = json!({ "alg": none }).to_string();
            let signed = signer::sign_raw(
                "HS256",
                HMAC_SECRET,
                header.as_bytes(),
                payload().to_string().as_bytes(),
            );
            assert_eq!(
                parse_err(&signed),
                TokenError::UnsupportedAlgorithm,
                "{none}"
            );
        }
    }

    #[test]
    fn hmac_token_keyed_with_the_rsa_public_key_is_refused_by_the_rsa_key() {
        // The classic confusion attack: HS256 with the (public) RSA PEM as the HMAC secret.
        let pem = signer::RSA_PUBLIC_PEM.as_bytes();
        let token = signer::sign_hmac("HS256", pem, &payload());
        // The forgery is a valid HMAC token for that secret...
        assert_eq!(verify(&token, &VerifyKey::hmac(pem).unwrap()), Ok(()));
        // ...but the RSA key never accepts an HMAC algorithm.
        let rsa = VerifyKey::from_pem(pem).unwrap();
        assert_eq!(
            verify(&token, &rsa),
            Err(TokenError::AlgorithmNotAllowed(Algorithm::HS256))
        );
        let rsa_jwk = jwk_key("RS256");
        assert_eq!(
            verify(&token, &rsa_jwk),
            Err(TokenError::AlgorithmNotAllowed(Algorithm::HS256))
        );
    }

    #[test]
    fn ec_keys_accept_only_their_curve() {
        let p256 = pem_key("ES256");
        let p384 = pem_key("ES384");
        assert_eq!(
            verify(&signer::sign("ES384", &payload()), &p256),
            Err(TokenError::AlgorithmNotAllowed(Algorithm::ES384))
        );
        assert_eq!(
            verify(&signer::sign("ES256", &payload()), &p384),
            Err(TokenError::AlgorithmNotAllowed(Algorithm::ES256))
        );
        // A header lying about the curve does not help either.
        let lying = signer::sign_with_header("ES384", &json!({ "alg": "ES256" }), &payload());
        assert_eq!(verify(&lying, &p256), Err(TokenError::BadSignature));
    }

    #[test]
    fn allows_matches_key_kind_and_algorithm_family() {
        use Algorithm::*;
        let table: [(VerifyKey, &[Algorithm]); 5] = [
            (pem_key("HS256"), &[HS256, HS384, HS512]),
            (
                pem_key("RS256"),
                &[RS256, RS384, RS512, PS256, PS384, PS512],
            ),
            (pem_key("ES256"), &[ES256]),
            (pem_key("ES384"), &[ES384]),
            (pem_key("EdDSA"), &[EdDSA]),
        ];
        for (key, allowed) in &table {
            for a in Algorithm::ALL {
                assert_eq!(key.allows(a), allowed.contains(&a), "{key:?} {a}");
            }
        }
    }

    #[test]
    fn jwk_alg_restricts_the_key_and_kid_is_kept() {
        let mut jwk = signer::public_jwk("RS256");
        jwk["alg"] = json!("PS256");
        jwk["kid"] = json!("rsa-1");
        jwk["use"] = json!("sig");
        let key = VerifyKey::from_jwk(&jwk).unwrap();
        assert_eq!(key.kid(), Some("rsa-1"));
        assert_eq!(key.algorithm(), Some(Algorithm::PS256));
        assert_eq!(verify(&signer::sign("PS256", &payload()), &key), Ok(()));
        assert_eq!(
            verify(&signer::sign("RS256", &payload()), &key),
            Err(TokenError::AlgorithmNotAllowed(Algorithm::RS256))
        );

        let mut oct = signer::public_jwk("HS256");
        oct["alg"] = json!("HS384");
        let key = VerifyKey::from_jwk(&oct).unwrap();
        assert_eq!(key.kid(), None);
        assert_eq!(verify(&signer::sign("HS384", &payload()), &key), Ok(()));
        assert_eq!(
            verify(&signer::sign("HS256", &payload()), &key),
            Err(TokenError::AlgorithmNotAllowed(Algorithm::HS256))
        );
    }

    #[test]
    fn jwk_errors() {
        let with = |alg: &str, member: &str, value: Value| {
            let mut jwk = signer::public_jwk(alg);
            jwk[member] = value;
            VerifyKey::from_jwk(&jwk).unwrap_err()
        };
        assert_eq!(
            with("RS256", "alg", json!("ES256")),
            KeyError::AlgorithmMismatch(Algorithm::ES256)
        );
        assert_eq!(
            with("ES256", "alg", json!("ES384")),
            KeyError::AlgorithmMismatch(Algorithm::ES384)
        );
        assert_eq!(
            with("RS256", "alg", json!("RSA-OAEP")),
            KeyError::UnsupportedAlgorithm("RSA-OAEP".into())
        );
        assert_eq!(
            with("RS256", "use", json!("enc")),
            KeyError::NotForSignatures
        );
        assert!(matches!(
            with("RS256", "kty", json!("DSA")),
            KeyError::InvalidJwk(_)
        ));
        assert!(matches!(
            with("RS256", "kid", json!(7)),
            KeyError::InvalidJwk(_)
        ));
        assert!(matches!(
            with("RS256", "n", json!("not*base64")),
            KeyError::InvalidJwk(_)
        ));
        assert!(matches!(
            with("ES256", "crv", json!("P-521")),
            KeyError::InvalidJwk(_)
        ));
        assert!(matches!(
            with("ES256", "crv", json!("P-384")),
            KeyError::InvalidJwk(_)
        ));
        assert!(matches!(
            with("EdDSA", "crv", json!("Ed448")),
            KeyError::InvalidJwk(_)
        ));
        assert!(matches!(
            with("HS256", "k", json!("")),
            KeyError::InvalidJwk(_)
        ));
        // A point that is not on the curve.
        let x = signer::public_jwk("ES256")["x"].clone();
        assert_eq!(with("ES256", "y", x), invalid_ec());
        // A 1024-bit modulus.
        let small = signer::b64(&[0xC5; 128]);
        assert!(matches!(
            with("RS256", "n", json!(small)),
            KeyError::InvalidKey(_)
        ));
        assert!(matches!(
            VerifyKey::from_jwk(&json!(["kty", "RSA"])),
            Err(KeyError::InvalidJwk(_))
        ));
        assert!(matches!(
            VerifyKey::from_jwk(&json!({ "n": "AQAB" })),
            Err(KeyError::InvalidJwk(_))
        ));
    }

    #[test]
    fn jwk_rsa_modulus_with_a_leading_zero_still_verifies() {
        let mut jwk = signer::public_jwk("RS256");
        let mut n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
        n.insert(0, 0);
        jwk["n"] = json!(signer::b64(&n));
        let key = VerifyKey::from_jwk(&jwk).unwrap();
        assert_eq!(verify(&signer::sign("RS256", &payload()), &key), Ok(()));
    }

    #[test]
    fn pem_errors() {
        let private = include_str!("../../../tests/fixtures/keys/rsa2048-private.pem");
        let ec_private = include_str!("../../../tests/fixtures/keys/p256-private.pem");
        assert_eq!(
            VerifyKey::from_pem(private.as_bytes()).unwrap_err(),
            KeyError::PrivateKey
        );
        assert_eq!(
            VerifyKey::from_pem(ec_private.as_bytes()).unwrap_err(),
            KeyError::PrivateKey
        );
        for bad in [
            &b"not a key"[..],
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            b"-----BEGIN RSA PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----\n",
            b"\xff\xfe",
        ] {
            assert!(
                matches!(VerifyKey::from_pem(bad), Err(KeyError::InvalidPem(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(VerifyKey::hmac(b"").unwrap_err(), KeyError::EmptySecret);
    }

    #[test]
    fn malformed_tokens() {
        let good = signer::sign("HS256", &payload());
        let parts: Vec<&str> = good.split('.').collect();
        let (h, p, s) = (parts[0], parts[1], parts[2]);
        let cases = [
            ("two parts", format!("{h}.{p}")),
            ("four parts", format!("{h}.{p}.{s}.{s}")),
            ("one part", h.to_string()),
            ("empty", String::new()),
            ("empty header", format!(".{p}.{s}")),
            ("empty payload", format!("{h}..{s}")),
            ("empty signature", format!("{h}.{p}.")),
            ("padding", format!("{h}=.{p}.{s}")),
            ("padded signature", format!("{h}.{p}.{s}=")),
            ("standard base64 plus", format!("{h}.{p}+.{s}")),
            ("standard base64 slash", format!("{h}.{p}.{s}/")),
            ("space", format!("{h}.{p} .{s}")),
            ("non-ascii", format!("{h}.{p}é.{s}")),
            // A base64 length of 4n + 1 cannot encode anything.
            (
                "impossible length",
                format!("{h}.{}.{s}", pad_to_4n_plus_1(p)),
            ),
            (
                "impossible signature length",
                format!("{h}.{p}.{}", pad_to_4n_plus_1(s)),
            ),
            // `{}` is `e30`; in `e31` the last character carries stray low bits.
            ("non-canonical base64", format!("{h}.e31.{s}")),
        ];
        for (what, token) in cases {
            assert!(
                matches!(parse(&token, MAX), Err(TokenError::Malformed(_))),
                "{what}: {:?}",
                parse(&token, MAX)
            );
        }
    }

    fn pad_to_4n_plus_1(part: &str) -> String {
        let mut part = part.to_string();
        while part.len() % 4 != 1 {
            part.push('A');
        }
        part
    }

    #[test]
    fn bad_headers() {
        let body = payload().to_string();
        let with_header = |header: &[u8]| {
            parse(
                &signer::sign_raw("HS256", HMAC_SECRET, header, body.as_bytes()),
                MAX,
            )
            .map(|t| t.algorithm())
        };
        let cases: [(&[u8], TokenError); 9] = [
            (b"not json", TokenError::InvalidJson(TokenPart::Header)),
            (br#"["HS256"]"#, TokenError::InvalidJson(TokenPart::Header)),
            (br#""HS256""#, TokenError::InvalidJson(TokenPart::Header)),
            (
                br#"{"alg":"HS256"} x"#,
                TokenError::InvalidJson(TokenPart::Header),
            ),
            (
                br#"{"alg":256}"#,
                TokenError::InvalidJson(TokenPart::Header),
            ),
            (
                br#"{"alg":"HS256","alg":"RS256"}"#,
                TokenError::InvalidJson(TokenPart::Header),
            ),
            (
                br#"{"alg":"HS256","kid":1}"#,
                TokenError::InvalidJson(TokenPart::Header),
            ),
            (
                br#"{"typ":"JWT"}"#,
                TokenError::Malformed("header has no 'alg'"),
            ),
            (br#"{"alg":"XS256"}"#, TokenError::UnsupportedAlgorithm),
        ];
        for (header, err) in cases {
            assert_eq!(
                with_header(header),
                Err(err),
                "{}",
                String::from_utf8_lossy(header)
            );
        }
        assert!(matches!(
            with_header(br#"{"alg":"HS256","crit":["exp"],"exp":1}"#),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            with_header(br#"{"alg":"HS256","b64":false,"crit":["b64"]}"#),
            Err(TokenError::Malformed(_))
        ));
        // Unknown members are ignored; whitespace and escapes are fine.
        assert_eq!(
            with_header(b" {\"typ\":\"JWT\", \"x5t\":[1], \"alg\":\"HS\\u0032\\u00356\"}"),
            Ok(Algorithm::HS256)
        );
    }

    #[test]
    fn kid_is_read_from_the_header() {
        let token = signer::sign_with_header(
            "ES256",
            &json!({ "alg": "ES256", "kid": "key-\"1\"" }),
            &payload(),
        );
        let parsed = parse(&token, MAX).unwrap();
        assert_eq!(parsed.kid(), Some("key-\"1\""));
        assert_eq!(parsed.verify(&pem_key("ES256")), Ok(()));
        let plain = signer::sign("ES256", &payload());
        assert_eq!(parse(&plain, MAX).unwrap().kid(), None);
    }

    #[test]
    fn payload_must_be_a_json_object() {
        for body in [
            &b"[1,2]"[..],
            b"\"alice\"",
            b"42",
            b"null",
            b"{\"a\":",
            b"not json",
            b"{} {}",
        ] {
            let token = signer::sign_raw("HS256", HMAC_SECRET, br#"{"alg":"HS256"}"#, body);
            assert_eq!(
                parse_err(&token),
                TokenError::InvalidJson(TokenPart::Payload),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let empty_object = signer::sign_raw("HS256", HMAC_SECRET, br#"{"alg":"HS256"}"#, b"{}");
        assert!(parse(&empty_object, MAX).unwrap().claims().is_empty());
    }

    #[test]
    fn oversized_tokens_are_refused_before_decoding() {
        let token = signer::sign("HS256", &payload());
        assert!(parse(&token, token.len()).is_ok());
        assert_eq!(
            parse_err_with(&token, token.len() - 1),
            TokenError::TooLong {
                max: token.len() - 1
            }
        );
        // Garbage beyond the limit is not even looked at.
        let junk = "*".repeat(MAX + 1);
        assert_eq!(parse_err(&junk), TokenError::TooLong { max: MAX });
    }

    fn parse_err_with(token: &str, max: usize) -> TokenError {
        parse(token, max).unwrap_err()
    }

    #[test]
    fn exp_with_leeway_edges() {
        let c = |exp: Value| claims(json!({ "exp": exp }));
        // exp <= now - leeway is expired.
        assert_eq!(check_exp(&c(json!(NOW + 1)), NOW, 0), Ok(()));
        assert_eq!(check_exp(&c(json!(NOW)), NOW, 0), Err(TokenError::Expired));
        assert_eq!(
            check_exp(&c(json!(NOW - 30)), NOW, 30),
            Err(TokenError::Expired)
        );
        assert_eq!(check_exp(&c(json!(NOW - 29)), NOW, 30), Ok(()));
        // NumericDate may be fractional.
        assert_eq!(check_exp(&c(json!(NOW as f64 + 0.5)), NOW, 0), Ok(()));
        assert_eq!(
            check_exp(&c(json!(NOW as f64 - 0.5)), NOW, 0),
            Err(TokenError::Expired)
        );
        assert_eq!(check_exp(&c(json!(-1)), NOW, 0), Err(TokenError::Expired));
        // Leeway larger than now does not wrap around.
        assert_eq!(check_exp(&c(json!(0)), 10, 100), Ok(()));
        assert_eq!(
            check_exp(&claims(json!({})), NOW, 0),
            Err(TokenError::MissingClaim("exp".into()))
        );
        assert_eq!(
            check_exp(&c(Value::Null), NOW, 0),
            Err(TokenError::MissingClaim("exp".into()))
        );
        for bad in [
            json!("1700000000"),
            json!(true),
            json!([NOW + 60]),
            json!({}),
        ] {
            assert_eq!(
                check_exp(&c(bad), NOW, 0),
                Err(TokenError::InvalidClaim("exp".into()))
            );
        }
    }

    #[test]
    fn nbf_with_leeway_edges() {
        let c = |nbf: Value| claims(json!({ "nbf": nbf }));
        // nbf > now + leeway is not yet valid.
        assert_eq!(check_nbf(&c(json!(NOW)), NOW, 0), Ok(()));
        assert_eq!(
            check_nbf(&c(json!(NOW + 1)), NOW, 0),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(check_nbf(&c(json!(NOW + 30)), NOW, 30), Ok(()));
        assert_eq!(
            check_nbf(&c(json!(NOW + 31)), NOW, 30),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(
            check_nbf(&c(json!(NOW as f64 + 0.5)), NOW, 0),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(
            check_nbf(&claims(json!({})), NOW, 0),
            Err(TokenError::MissingClaim("nbf".into()))
        );
        assert_eq!(
            check_nbf(&c(json!("soon")), NOW, 0),
            Err(TokenError::InvalidClaim("nbf".into()))
        );
    }

    #[test]
    fn maximum_expiration() {
        let c = |exp: u64| claims(json!({ "exp": exp }));
        assert_eq!(check_max_expiration(&c(NOW + 3600), NOW, 3600), Ok(()));
        assert_eq!(
            check_max_expiration(&c(NOW + 3601), NOW, 3600),
            Err(TokenError::ExceedsMaximumExpiration)
        );
        assert_eq!(check_max_expiration(&c(NOW - 10), NOW, 3600), Ok(()));
        assert_eq!(
            check_max_expiration(&claims(json!({})), NOW, 3600),
            Err(TokenError::MissingClaim("exp".into()))
        );
        assert_eq!(
            check_max_expiration(&claims(json!({ "exp": "later" })), NOW, 3600),
            Err(TokenError::InvalidClaim("exp".into()))
        );
    }

    #[test]
    fn issuer() {
        let allowed = ["issuer-a", "issuer-b"];
        let c = |iss: Value| claims(json!({ "iss": iss }));
        assert_eq!(check_issuer(&c(json!("issuer-b")), &allowed), Ok(()));
        assert_eq!(
            check_issuer(&c(json!("issuer-c")), &allowed),
            Err(TokenError::WrongIssuer)
        );
        assert_eq!(
            check_issuer(&c(json!("Issuer-a")), &allowed),
            Err(TokenError::WrongIssuer)
        );
        assert_eq!(
            check_issuer(&c(json!(["issuer-a"])), &allowed),
            Err(TokenError::InvalidClaim("iss".into()))
        );
        assert_eq!(
            check_issuer(&claims(json!({})), &allowed),
            Err(TokenError::MissingClaim("iss".into()))
        );
        let owned = vec![String::from("issuer-a")];
        assert_eq!(check_issuer(&c(json!("issuer-a")), &owned), Ok(()));
        assert_eq!(
            check_issuer(&c(json!("issuer-a")), &[] as &[&str]),
            Err(TokenError::WrongIssuer)
        );
    }

    #[test]
    fn audience_string_or_array() {
        let allowed = ["api", "admin"];
        let c = |aud: Value| claims(json!({ "aud": aud }));
        assert_eq!(check_audience(&c(json!("api")), &allowed), Ok(()));
        assert_eq!(
            check_audience(&c(json!("web")), &allowed),
            Err(TokenError::WrongAudience)
        );
        assert_eq!(
            check_audience(&c(json!(["web", "admin"])), &allowed),
            Ok(())
        );
        assert_eq!(
            check_audience(&c(json!(["web", "app"])), &allowed),
            Err(TokenError::WrongAudience)
        );
        assert_eq!(
            check_audience(&c(json!([])), &allowed),
            Err(TokenError::WrongAudience)
        );
        for bad in [json!(["api", 1]), json!(1), json!({ "aud": "api" })] {
            assert_eq!(
                check_audience(&c(bad), &allowed),
                Err(TokenError::InvalidClaim("aud".into()))
            );
        }
        assert_eq!(
            check_audience(&claims(json!({})), &allowed),
            Err(TokenError::MissingClaim("aud".into()))
        );
    }

    #[test]
    fn required_claims() {
        let c = claims(json!({ "sub": "alice", "scope": "", "tenant": null }));
        assert_eq!(check_required(&c, &["sub", "scope"]), Ok(()));
        assert_eq!(check_required(&c, &[] as &[&str]), Ok(()));
        assert_eq!(
            check_required(&c, &["sub", "role", "team"]),
            Err(TokenError::MissingClaim("role".into()))
        );
        assert_eq!(
            check_required(&c, &[String::from("tenant")]),
            Err(TokenError::MissingClaim("tenant".into()))
        );
    }

    #[test]
    fn claim_checks_run_on_a_parsed_token() {
        let token = signer::sign(
            "EdDSA",
            &json!({ "iss": "issuer-a", "aud": ["api"], "exp": NOW as f64 + 60.5, "nbf": NOW - 1 }),
        );
        let parsed = parse(&token, MAX).unwrap();
        parsed.verify(&pem_key("EdDSA")).unwrap();
        let c = parsed.claims();
        check_exp(c, NOW, 0).unwrap();
        check_nbf(c, NOW, 0).unwrap();
        check_max_expiration(c, NOW, 61).unwrap();
        check_issuer(c, &["issuer-a"]).unwrap();
        check_audience(c, &["api"]).unwrap();
        check_required(c, &["iss", "aud"]).unwrap();
        assert_eq!(parsed.into_claims()["iss"], "issuer-a");
    }

    #[test]
    fn error_texts_fit_their_uses() {
        let all = [
            TokenError::TooLong { max: 10 },
            TokenError::Malformed("x"),
            TokenError::InvalidJson(TokenPart::Header),
            TokenError::UnsupportedAlgorithm,
            TokenError::AlgorithmNotAllowed(Algorithm::HS256),
            TokenError::BadSignature,
            TokenError::Expired,
            TokenError::NotYetValid,
            TokenError::ExceedsMaximumExpiration,
            TokenError::MissingClaim("exp".into()),
            TokenError::InvalidClaim("exp".into()),
            TokenError::WrongIssuer,
            TokenError::WrongAudience,
            TokenError::UnknownKeyId,
            TokenError::MissingKeyId,
        ];
        for e in &all {
            assert!(!e.message().is_empty());
            assert!(!e.to_string().is_empty());
            // RFC 6750 section 3: error_description is %x20-21 / %x23-5B / %x5D-7E.
            let desc = e.error_description();
            assert!(
                desc.bytes()
                    .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)),
                "{desc}"
            );
        }
        assert_eq!(
            TokenError::MissingClaim("sub".into()).message(),
            "Missing claim 'sub'"
        );
    }

    #[test]
    fn keys_and_tokens_are_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<VerifyKey>();
        assert_send_sync::<Token<'static>>();
        assert_send_sync::<TokenError>();
        assert_send_sync::<KeyError>();
    }
}
