//! Kong's `jwt_secrets`, compiled once per configuration: the credential's `key` (what a token
//! names in its `key_claim_name` claim) → consumer, algorithm and verification key.

use std::collections::HashMap;

use base64::Engine;

use super::token::{Algorithm, Family, VerifyKey};
use crate::config::model::{JwtSecret, Located};
use crate::consumers::{CredentialId, credential_id};

/// One `jwt_secrets` entry.
pub struct JwtCredential {
    pub consumer: usize,
    pub id: CredentialId,
    /// The only algorithm its tokens may use (Kong: "Invalid algorithm" otherwise).
    pub algorithm: Algorithm,
    /// The secret as given (HS*) or the public key (other algorithms).
    pub key: VerifyKey,
    /// HS* only: the secret base64-decoded, for plugins with `secret_is_base64: true`.
    pub key_from_base64: Option<VerifyKey>,
}

/// A secret given in base64 (`secret_is_base64`): standard or URL-safe alphabet, padded or not,
/// as Kong accepts.
pub fn decode_base64_secret(secret: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(secret).ok())
}

/// Every `jwt_secrets` entry of a configuration, by `key`.
#[derive(Default)]
pub struct JwtIndex {
    by_key: HashMap<String, JwtCredential>,
}

impl JwtIndex {
    pub fn compile(
        credentials: &[Located<JwtSecret>],
        consumer_ids: &[&str],
        errors: &mut Vec<(String, String)>,
    ) -> JwtIndex {
        let mut by_key = HashMap::with_capacity(credentials.len());
        for c in credentials {
            let Some(consumer) = c.parent else { continue };
            let item = &c.item;
            if item.key.is_empty() {
                errors.push((format!("{}.key", c.path), "must not be empty".into()));
                continue;
            }
            let algorithm = match item.algorithm.parse::<Algorithm>() {
                Ok(a) => a,
                Err(_) => {
                    errors.push((
                        format!("{}.algorithm", c.path),
                        format!(
                            "expected one of: HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA (got `{}`)",
                            item.algorithm
                        ),
                    ));
                    continue;
                }
            };
            let built = if algorithm.family() == Family::Hmac {
                match item.secret.as_deref() {
                    None | Some("") => Err((
                        "secret",
                        "required for HS256, HS384 and HS512 credentials".to_string(),
                    )),
                    Some(secret) => VerifyKey::hmac(secret.as_bytes())
                        .map(|k| {
                            let b64 = decode_base64_secret(secret)
                                .and_then(|raw| VerifyKey::hmac(&raw).ok());
                            (k, b64)
                        })
                        .map_err(|e| ("secret", e.to_string())),
                }
            } else {
                match item.rsa_public_key.as_deref() {
                    None | Some("") => Err((
                        "rsa_public_key",
                        format!("required for {algorithm} credentials (the PEM public key)"),
                    )),
                    Some(pem) => match VerifyKey::from_pem(pem.as_bytes()) {
                        Ok(k) if k.allows(algorithm) => Ok((k, None)),
                        Ok(_) => Err((
                            "rsa_public_key",
                            format!("this key cannot verify {algorithm} signatures"),
                        )),
                        Err(e) => Err(("rsa_public_key", e.to_string())),
                    },
                }
            };
            let (key, key_from_base64) = match built {
                Ok(k) => k,
                Err((field, message)) => {
                    errors.push((format!("{}.{field}", c.path), message));
                    continue;
                }
            };
            let id = credential_id(
                item.id.as_deref(),
                "jwt_secrets",
                consumer_ids.get(consumer).copied().unwrap_or(""),
                &item.key,
            );
            let cred = JwtCredential {
                consumer,
                id,
                algorithm,
                key,
                key_from_base64,
            };
            if by_key.insert(item.key.clone(), cred).is_some() {
                errors.push((
                    format!("{}.key", c.path),
                    format!("another jwt credential has the key `{}`", item.key),
                ));
            }
        }
        JwtIndex { by_key }
    }

    /// The credential whose `key` is `key`.
    pub fn get(&self, key: &str) -> Option<&JwtCredential> {
        self.by_key.get(key)
    }
}
