//! `basic-auth` (Kong priority 1100): authenticate a consumer by username and password
//! (RFC 7617), read from `Proxy-Authorization`, then `Authorization`.
//!
//! Config (Kong's): `anonymous`, `hide_credentials` (remove the header that authenticated the
//! request before it goes upstream), `realm` (default `service`).
//!
//! Answers: no credentials → `401 {"message":"Unauthorized"}`; a wrong username or password →
//! `401 {"message":"Invalid authentication credentials"}`; both with
//! `WWW-Authenticate: Basic realm="service"`.
//!
//! Passwords never stay in memory as text: each is kept as SHA-256 over a random per-credential
//! salt and the password, compared in constant time. An unknown username costs the same
//! hashing as a known one, so timing does not tell which usernames exist.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::{constant_time, digest, rand};
use base64::Engine;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::auth::{self, AuthCommon};
use super::{BuildContext, Flow, Plugin, RequestCtx};
use crate::config::model::{BasicauthCredential, Located};
use crate::consumers::{Consumers, CredentialId, UsernameIndexing, index_by_username};

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub anonymous: Option<String>,
    #[serde(default)]
    pub hide_credentials: bool,
    #[serde(default)]
    pub realm: Option<String>,
}

pub struct BasicAuth {
    common: AuthCommon,
    hide_credentials: bool,
    challenge: HeaderValue,
    consumers: Arc<Consumers>,
}

enum Failure {
    Missing,
    Invalid,
}

impl Plugin for BasicAuth {
    const NAME: &'static str = "basic-auth";
    const PRIORITY: i32 = 1100;
    const CONSUMER_SCOPED: bool = false;
    type Config = Config;

    fn new(c: Config, ctx: &BuildContext<'_>) -> Result<Self, Vec<(String, String)>> {
        let realm = c.realm.as_deref().unwrap_or("service");
        let mut errors = auth::check_realm(realm).err().unwrap_or_default();
        let common = AuthCommon::new(c.anonymous.as_deref(), true, ctx)
            .map_err(|e| errors.extend(e))
            .ok();
        match common {
            Some(common) if errors.is_empty() => Ok(BasicAuth {
                common,
                hide_credentials: c.hide_credentials,
                challenge: auth::challenge("Basic", realm),
                consumers: ctx.consumers.clone(),
            }),
            _ => Err(errors),
        }
    }

    async fn on_request(&self, ctx: &mut RequestCtx, req: &mut http::request::Parts) -> Flow {
        if self.common.skip(ctx, &req.method) {
            return Flow::Continue;
        }
        let failure = match self.identify(&req.headers) {
            Ok((cred, used)) => {
                if self.hide_credentials {
                    req.headers.remove(used);
                }
                auth::set_consumer(
                    ctx,
                    &mut req.headers,
                    &self.consumers,
                    cred.consumer,
                    Some(&cred.id),
                );
                return Flow::Continue;
            }
            Err(f) => f,
        };
        self.common
            .fail(ctx, &mut req.headers, &self.consumers, || {
                let message = match failure {
                    Failure::Missing => "Unauthorized",
                    Failure::Invalid => "Invalid authentication credentials",
                };
                auth::refusal(StatusCode::UNAUTHORIZED, message, Some(&self.challenge))
            })
    }
}

impl BasicAuth {
    /// `Proxy-Authorization`, then `Authorization` (also when the first names credentials that
    /// do not verify, as Kong does).
    fn identify(&self, headers: &HeaderMap) -> Result<(&PasswordCredential, HeaderName), Failure> {
        let mut failure = Failure::Missing;
        for name in [header::PROXY_AUTHORIZATION, header::AUTHORIZATION] {
            let Some(value) = headers.get(&name) else {
                continue;
            };
            let Some((user, password)) = parse_basic(value.as_bytes()) else {
                // Another scheme (a bearer token, say) in this header: look at the next one.
                continue;
            };
            match self.consumers.basicauth.verify(&user, &password) {
                Some(cred) => return Ok((cred, name)),
                None => failure = Failure::Invalid,
            }
        }
        Err(failure)
    }
}

/// `Basic base64(user:password)` → `(user, password)`; `None` for another scheme or bad base64.
fn parse_basic(value: &[u8]) -> Option<(String, Vec<u8>)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

/// A username's consumer, credential id and salted password digest.
pub struct PasswordCredential {
    pub consumer: usize,
    pub id: CredentialId,
    salt: [u8; 16],
    digest: [u8; 32],
}

fn salted_digest(salt: &[u8; 16], password: &[u8]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(salt);
    ctx.update(password);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Every basic-auth credential of a configuration, by username.
#[derive(Default)]
pub struct PasswordIndex {
    by_username: HashMap<String, PasswordCredential>,
    /// Compared against when the username is unknown, so that case costs the same.
    decoy: Option<PasswordCredential>,
}

impl PasswordIndex {
    pub fn compile(
        credentials: &[Located<BasicauthCredential>],
        consumer_ids: &[&str],
        errors: &mut Vec<(String, String)>,
    ) -> PasswordIndex {
        let how = UsernameIndexing {
            collection: "basicauth_credentials",
            plugin: "basic-auth",
            consumer_ids,
        };
        let by_username = index_by_username(
            credentials,
            &how,
            |c| (c.username.as_str(), c.id.as_deref()),
            |c, consumer, id, errors| match StoredPassword::parse(&c.item.password) {
                // Already in stored form (an export, or a file written without plain text).
                Some(Ok(stored)) => Some(PasswordCredential {
                    consumer,
                    id,
                    salt: stored.salt,
                    digest: stored.digest,
                }),
                Some(Err(message)) => {
                    errors.push((format!("{}.password", c.path), message.into()));
                    None
                }
                None => {
                    let cred = hashed(consumer, id, c.item.password.as_bytes());
                    if cred.is_none() {
                        errors.push((c.path.clone(), "the system random generator failed".into()));
                    }
                    cred
                }
            },
            errors,
        );
        let decoy = hashed(usize::MAX, HeaderValue::from_static(""), b"");
        PasswordIndex { by_username, decoy }
    }

    /// How `username`'s password is kept: what a configuration export shows instead of the
    /// password, and what a configuration file may give instead of it.
    pub fn stored_form(&self, username: &str) -> Option<String> {
        self.by_username.get(username).map(|c| {
            StoredPassword {
                salt: c.salt,
                digest: c.digest,
            }
            .to_string()
        })
    }

    /// The credential of `username` when `password` is its password.
    pub fn verify(&self, username: &str, password: &[u8]) -> Option<&PasswordCredential> {
        let (cred, known) = match self.by_username.get(username) {
            Some(c) => (c, true),
            None => (self.decoy.as_ref()?, false),
        };
        let digest = salted_digest(&cred.salt, password);
        let matches = constant_time::verify_slices_are_equal(&digest, &cred.digest).is_ok();
        (known && matches).then_some(cred)
    }
}

/// A password as kept: `$sha256$<salt>$<digest>`, both base64 (standard, unpadded).
struct StoredPassword {
    salt: [u8; 16],
    digest: [u8; 32],
}

const STORED_PREFIX: &str = "$sha256$";

impl StoredPassword {
    /// `None` when `text` is not in stored form (a plain password); an error when it claims to
    /// be but is malformed.
    fn parse(text: &str) -> Option<Result<StoredPassword, &'static str>> {
        let rest = text.strip_prefix(STORED_PREFIX)?;
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
        let parsed = rest.split_once('$').and_then(|(salt, digest)| {
            let salt: [u8; 16] = b64.decode(salt).ok()?.try_into().ok()?;
            let digest: [u8; 32] = b64.decode(digest).ok()?.try_into().ok()?;
            Some(StoredPassword { salt, digest })
        });
        Some(parsed.ok_or(
            "a stored password is `$sha256$<16-byte salt>$<32-byte digest>`, both base64 without padding",
        ))
    }
}

impl std::fmt::Display for StoredPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
        write!(
            f,
            "{STORED_PREFIX}{}${}",
            b64.encode(self.salt),
            b64.encode(self.digest)
        )
    }
}

fn hashed(consumer: usize, id: CredentialId, password: &[u8]) -> Option<PasswordCredential> {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt).ok()?;
    Some(PasswordCredential {
        consumer,
        id,
        digest: salted_digest(&salt, password),
        salt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_basic_credentials() {
        assert_eq!(
            parse_basic(b"Basic YWxpY2U6czNjcjN0OndpdGg6Y29sb25z"),
            Some(("alice".into(), b"s3cr3t:with:colons".to_vec()))
        );
        assert_eq!(
            parse_basic(b"basic   YWxpY2U6"),
            Some(("alice".into(), Vec::new()))
        );
        assert_eq!(parse_basic(b"Bearer abc"), None);
        assert_eq!(parse_basic(b"Basic !!!"), None);
        assert_eq!(parse_basic(b"Basic YWxpY2U="), None, "no colon");
    }

    #[test]
    fn verifies_passwords_without_keeping_them() {
        let creds = vec![Located {
            path: "consumers[0].basicauth_credentials[0]".into(),
            item: BasicauthCredential {
                id: None,
                username: "alice".into(),
                password: "wonderland".into(),
                tags: vec![],
                consumer: None,
                created_at: None,
            },
            parent: Some(0),
        }];
        let mut errors = Vec::new();
        let index = PasswordIndex::compile(&creds, &["c0"], &mut errors);
        assert!(errors.is_empty());
        assert!(index.verify("alice", b"wonderland").is_some());
        assert!(index.verify("alice", b"wonderlan").is_none());
        assert!(index.verify("bob", b"wonderland").is_none());
        assert!(
            index.verify("bob", b"").is_none(),
            "the decoy never matches"
        );
        let stored = &index.by_username["alice"];
        assert_ne!(&stored.digest[..10], b"wonderland");

        // The stored form is accepted back in place of the password.
        let form = index.stored_form("alice").unwrap();
        assert!(form.starts_with("$sha256$") && !form.contains("wonderland"));
        let mut again = creds.clone();
        again[0].item.password = form;
        let reloaded = PasswordIndex::compile(&again, &["c0"], &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(reloaded.verify("alice", b"wonderland").is_some());
        assert!(reloaded.verify("alice", b"$sha256$").is_none());
        again[0].item.password = "$sha256$bad".into();
        PasswordIndex::compile(&again, &["c0"], &mut errors);
        assert!(errors[0].1.contains("stored password"), "{errors:?}");
    }
}
