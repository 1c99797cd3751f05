//! Test-only JWT signer, independent of the verifier: RustCrypto (`hmac`, `sha2`, `rsa`, `p256`,
//! `p384`, `ed25519-dalek`) instead of `jsonwebtoken` and `aws-lc-rs`, with the key pairs
//! committed under `tests/fixtures/keys/`.
//!
//! Self-contained (no `crate::` paths) so integration tests can compile the same file:
//! `#[path = "../../src/plugins/jwt/test_signer.rs"] mod jwt_signer;` in `tests/it/main.rs`.
//! Algorithms are JOSE names (`"RS256"`), not the verifier's types, for the same reason.
#![allow(dead_code)]

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
// One `pkcs8` trait serves the RSA, EC and Ed25519 keys.
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use sha2::{Sha256, Sha384, Sha512};

/// The HMAC secret tests sign with unless they say otherwise.
pub const HMAC_SECRET: &[u8] = b"gatehouse-test-secret-0123456789abcdef";

pub const RSA_PUBLIC_PEM: &str = include_str!("../../../tests/fixtures/keys/rsa2048-public.pem");
pub const RSA_PUBLIC_PKCS1_PEM: &str =
    include_str!("../../../tests/fixtures/keys/rsa2048-public-pkcs1.pem");
pub const P256_PUBLIC_PEM: &str = include_str!("../../../tests/fixtures/keys/p256-public.pem");
pub const P384_PUBLIC_PEM: &str = include_str!("../../../tests/fixtures/keys/p384-public.pem");
pub const ED25519_PUBLIC_PEM: &str =
    include_str!("../../../tests/fixtures/keys/ed25519-public.pem");

/// Public keys of other key pairs, for "signed with a different key" cases.
pub const OTHER_RSA_PUBLIC_PEM: &str =
    include_str!("../../../tests/fixtures/keys/other-rsa2048-public.pem");
pub const OTHER_P256_PUBLIC_PEM: &str =
    include_str!("../../../tests/fixtures/keys/other-p256-public.pem");
pub const OTHER_P384_PUBLIC_PEM: &str =
    include_str!("../../../tests/fixtures/keys/other-p384-public.pem");
pub const OTHER_ED25519_PUBLIC_PEM: &str =
    include_str!("../../../tests/fixtures/keys/other-ed25519-public.pem");

const RSA_PRIVATE_PEM: &str = include_str!("../../../tests/fixtures/keys/rsa2048-private.pem");
const P256_PRIVATE_PEM: &str = include_str!("../../../tests/fixtures/keys/p256-private.pem");
const P384_PRIVATE_PEM: &str = include_str!("../../../tests/fixtures/keys/p384-private.pem");
const ED25519_PRIVATE_PEM: &str = include_str!("../../../tests/fixtures/keys/ed25519-private.pem");

/// Every algorithm the signer knows.
pub const ALGORITHMS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

struct Keys {
    rsa: rsa::PrivateKey,
    p256: p256::ecdsa::SigningKey,
    p384: p384::ecdsa::SigningKey,
    ed25519: ed25519_dalek::SigningKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        rsa: rsa::PrivateKey::from_pkcs8_der(&pem_to_der(RSA_PRIVATE_PEM)).expect("RSA fixture"),
        p256: p256::ecdsa::SigningKey::from_pkcs8_der(&pem_to_der(P256_PRIVATE_PEM))
            .expect("P-256 fixture"),
        p384: p384::ecdsa::SigningKey::from_pkcs8_der(&pem_to_der(P384_PRIVATE_PEM))
            .expect("P-384 fixture"),
        ed25519: ed25519_dalek::SigningKey::from_pkcs8_der(&pem_to_der(ED25519_PRIVATE_PEM))
            .expect("Ed25519 fixture"),
    })
}

/// The DER inside a single-block PEM.
pub fn pem_to_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body.trim()).expect("PEM body is base64")
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The PEM public key matching the key `alg` signs with (`None` for HMAC).
pub fn public_pem(alg: &str) -> Option<&'static str> {
    Some(match alg {
        "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => RSA_PUBLIC_PEM,
        "ES256" => P256_PUBLIC_PEM,
        "ES384" => P384_PUBLIC_PEM,
        "EdDSA" => ED25519_PUBLIC_PEM,
        _ => return None,
    })
}

/// A public key of a different key pair of the same kind as `alg`'s (`None` for HMAC).
pub fn other_public_pem(alg: &str) -> Option<&'static str> {
    Some(match alg {
        "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => OTHER_RSA_PUBLIC_PEM,
        "ES256" => OTHER_P256_PUBLIC_PEM,
        "ES384" => OTHER_P384_PUBLIC_PEM,
        "EdDSA" => OTHER_ED25519_PUBLIC_PEM,
        _ => return None,
    })
}

/// The public JWK (no `alg`, `kid`) of the key `alg` signs with, computed by RustCrypto;
/// `oct` with [`HMAC_SECRET`] for the HMAC algorithms.
pub fn public_jwk(alg: &str) -> Value {
    let k = keys();
    match alg {
        "HS256" | "HS384" | "HS512" => json!({ "kty": "oct", "k": b64(HMAC_SECRET) }),
        "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => json!({
            "kty": "RSA",
            "n": b64(&k.rsa.n_bytes()),
            "e": b64(&k.rsa.e_bytes()),
        }),
        "ES256" => {
            let point = k.p256.verifying_key().to_sec1_point(false);
            let (x, y) = point.as_bytes()[1..].split_at(32);
            json!({ "kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y) })
        }
        "ES384" => {
            let point = k.p384.verifying_key().to_sec1_point(false);
            let (x, y) = point.as_bytes()[1..].split_at(48);
            json!({ "kty": "EC", "crv": "P-384", "x": b64(x), "y": b64(y) })
        }
        "EdDSA" => json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64(k.ed25519.verifying_key().as_bytes()),
        }),
        _ => panic!("unknown algorithm {alg}"),
    }
}

/// HMAC of `msg` with the digest `$d`.
macro_rules! hmac {
    ($d:ty, $secret:expr, $msg:expr) => {{
        let mut mac = <Hmac<$d> as KeyInit>::new_from_slice($secret).expect("any key length");
        mac.update($msg);
        mac.finalize().into_bytes().to_vec()
    }};
}

/// The raw signature of `msg` with `alg`, using the fixture keys and [`HMAC_SECRET`].
pub fn signature(alg: &str, msg: &[u8]) -> Vec<u8> {
    signature_with_secret(alg, HMAC_SECRET, msg)
}

/// Like [`signature`], with `secret` for the HMAC algorithms.
pub fn signature_with_secret(alg: &str, secret: &[u8], msg: &[u8]) -> Vec<u8> {
    use rsa::{pkcs1v15, pss};
    let k = keys();
    match alg {
        "HS256" => hmac!(Sha256, secret, msg),
        "HS384" => hmac!(Sha384, secret, msg),
        "HS512" => hmac!(Sha512, secret, msg),
        "RS256" => pkcs1v15::SigningKey::<Sha256>::new(k.rsa.clone())
            .sign(msg)
            .to_vec(),
        "RS384" => pkcs1v15::SigningKey::<Sha384>::new(k.rsa.clone())
            .sign(msg)
            .to_vec(),
        "RS512" => pkcs1v15::SigningKey::<Sha512>::new(k.rsa.clone())
            .sign(msg)
            .to_vec(),
        "PS256" => pss::SigningKey::<Sha256>::new(k.rsa.clone())
            .sign(msg)
            .to_vec(),
        "PS384" => pss::SigningKey::<Sha384>::new(k.rsa.clone())
            .sign(msg)
            .to_vec(),
        "PS512" => pss::SigningKey::<Sha512>::new(k.rsa.clone())
            .sign(msg)
            .to_vec(),
        "ES256" => {
            let sig: p256::ecdsa::Signature = k.p256.sign(msg);
            sig.to_bytes().to_vec()
        }
        "ES384" => {
            let sig: p384::ecdsa::Signature = k.p384.sign(msg);
            sig.to_bytes().to_vec()
        }
        "EdDSA" => k.ed25519.sign(msg).to_bytes().to_vec(),
        _ => panic!("unknown algorithm {alg}"),
    }
}

/// Join raw parts into a token: each is base64url-encoded without padding.
pub fn assemble(header: &[u8], payload: &[u8], signature: &[u8]) -> String {
    format!("{}.{}.{}", b64(header), b64(payload), b64(signature))
}

/// A token for `claims` signed with `alg` (header `{"alg": alg, "typ": "JWT"}`).
pub fn sign(alg: &str, claims: &Value) -> String {
    sign_with_header(alg, &json!({ "alg": alg, "typ": "JWT" }), claims)
}

/// A token with the given header, signed with `alg` whatever the header says.
pub fn sign_with_header(alg: &str, header: &Value, claims: &Value) -> String {
    sign_raw(
        alg,
        HMAC_SECRET,
        header.to_string().as_bytes(),
        claims.to_string().as_bytes(),
    )
}

/// An HMAC token signed with `secret` (header `{"alg": alg, "typ": "JWT"}`).
pub fn sign_hmac(alg: &str, secret: &[u8], claims: &Value) -> String {
    let header = json!({ "alg": alg, "typ": "JWT" }).to_string();
    sign_raw(
        alg,
        secret,
        header.as_bytes(),
        claims.to_string().as_bytes(),
    )
}

/// A token from raw header and payload bytes (which need not be JSON), signed with `alg`.
pub fn sign_raw(alg: &str, secret: &[u8], header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let sig = signature_with_secret(alg, secret, input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

/// An unsecured token (`alg` as given, e.g. `"none"`), with an empty signature part.
pub fn unsecured(alg: &str, claims: &Value) -> String {
    let header = json!({ "alg": alg }).to_string();
    format!(
        "{}.{}.",
        b64(header.as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}
