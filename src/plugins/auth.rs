//! What every authentication plugin shares, as Kong does it:
//!
//! - on success the request carries `X-Consumer-ID`, `X-Consumer-Username`,
//!   `X-Consumer-Custom-ID` and `X-Credential-Identifier` upstream (each removed when the
//!   consumer has no such value, so a client cannot smuggle one in);
//! - with `anonymous` set, a failed authentication goes on as that consumer with
//!   `X-Anonymous-Consumer: true` instead of being refused;
//! - a plugin with `anonymous` set is skipped when an earlier one already authenticated the
//!   request, which makes two authentication plugins on one route mean "either";
//! - `run_on_preflight: false` lets CORS preflight requests (`OPTIONS`) through unauthenticated.

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode};

use super::{BuildContext, Flow, RequestCtx, json_response};
use crate::proxy::body::ProxyBody;

pub const X_CONSUMER_ID: HeaderName = HeaderName::from_static("x-consumer-id");
pub const X_CONSUMER_USERNAME: HeaderName = HeaderName::from_static("x-consumer-username");
pub const X_CONSUMER_CUSTOM_ID: HeaderName = HeaderName::from_static("x-consumer-custom-id");
pub const X_CREDENTIAL_IDENTIFIER: HeaderName = HeaderName::from_static("x-credential-identifier");
pub const X_ANONYMOUS_CONSUMER: HeaderName = HeaderName::from_static("x-anonymous-consumer");
/// Set by `key-auth` after [`set_consumer`], which clears it so that no other path lets a
/// client's copy through.
pub const X_API_KEY_OWNER: HeaderName = HeaderName::from_static("x-api-key-owner");

/// The settings every authentication plugin has, resolved at build time.
#[derive(Debug, Clone, Copy)]
pub struct AuthCommon {
    /// The `anonymous` consumer's index.
    pub anonymous: Option<usize>,
    pub run_on_preflight: bool,
}

impl AuthCommon {
    /// Resolve `anonymous` (a consumer id or username) against the configuration's consumers.
    pub fn new(
        anonymous: Option<&str>,
        run_on_preflight: bool,
        ctx: &BuildContext<'_>,
    ) -> Result<AuthCommon, Vec<(String, String)>> {
        let anonymous = match anonymous.filter(|a| !a.is_empty()) {
            None => None,
            Some(name) => match ctx.consumers.find(name) {
                Some(i) => Some(i),
                None => {
                    return Err(vec![(
                        "anonymous".into(),
                        format!("no consumer with id or username `{name}`"),
                    )]);
                }
            },
        };
        Ok(AuthCommon {
            anonymous,
            run_on_preflight,
        })
    }

    /// Whether the plugin should not run for this request at all.
    pub fn skip(&self, ctx: &RequestCtx, method: &Method) -> bool {
        (!self.run_on_preflight && method == Method::OPTIONS)
            || (self.anonymous.is_some() && ctx.credential.is_some())
    }

    /// Authentication failed: go on as the anonymous consumer, or answer with `refusal`.
    pub fn fail(
        &self,
        ctx: &mut RequestCtx,
        headers: &mut HeaderMap,
        consumers: &crate::consumers::Consumers,
        refusal: impl FnOnce() -> Response<ProxyBody>,
    ) -> Flow {
        match self.anonymous {
            Some(anonymous) => {
                set_consumer(ctx, headers, consumers, anonymous, None);
                Flow::Continue
            }
            None => Flow::Respond(Box::new(refusal())),
        }
    }
}

/// Record the consumer (and the credential, `None` for the anonymous consumer) on the request
/// and set the consumer headers the upstream receives.
pub fn set_consumer(
    ctx: &mut RequestCtx,
    headers: &mut HeaderMap,
    consumers: &crate::consumers::Consumers,
    consumer: usize,
    credential: Option<&HeaderValue>,
) {
    ctx.consumer = Some(consumer);
    ctx.credential = credential.cloned();
    let c = consumers.get(consumer);
    set_or_remove(headers, X_CONSUMER_ID, c.map(|c| &c.id_header));
    set_or_remove(
        headers,
        X_CONSUMER_USERNAME,
        c.and_then(|c| c.username_header.as_ref()),
    );
    set_or_remove(
        headers,
        X_CONSUMER_CUSTOM_ID,
        c.and_then(|c| c.custom_id_header.as_ref()),
    );
    set_or_remove(headers, X_CREDENTIAL_IDENTIFIER, credential);
    headers.remove(X_API_KEY_OWNER);
    if credential.is_some() {
        headers.remove(X_ANONYMOUS_CONSUMER);
    } else {
        headers.insert(X_ANONYMOUS_CONSUMER, HeaderValue::from_static("true"));
    }
}

/// Record a request authenticated without a consumer (a token verified by a key configured on
/// the plugin): later plugins see it as authenticated (`credential`), and the identity headers
/// a client may have sent are removed, none being true of it.
pub fn set_authenticated_without_consumer(
    ctx: &mut RequestCtx,
    headers: &mut HeaderMap,
    credential: HeaderValue,
) {
    ctx.consumer = None;
    ctx.credential = Some(credential);
    for name in [
        X_CONSUMER_ID,
        X_CONSUMER_USERNAME,
        X_CONSUMER_CUSTOM_ID,
        X_CREDENTIAL_IDENTIFIER,
        X_ANONYMOUS_CONSUMER,
        X_API_KEY_OWNER,
    ] {
        headers.remove(name);
    }
}

/// Whether a plugin may write `name` with a value of its choosing (`claims_to_headers`, say):
/// not the identity headers authentication sets, nor headers that frame or route the request.
pub fn is_reserved_header(name: &HeaderName) -> bool {
    [
        X_CONSUMER_ID,
        X_CONSUMER_USERNAME,
        X_CONSUMER_CUSTOM_ID,
        X_CREDENTIAL_IDENTIFIER,
        X_ANONYMOUS_CONSUMER,
        X_API_KEY_OWNER,
        HeaderName::from_static("x-consumer-groups"),
        http::header::HOST,
        http::header::CONTENT_LENGTH,
        http::header::TRANSFER_ENCODING,
        http::header::CONNECTION,
        http::header::TE,
        http::header::UPGRADE,
        http::header::TRAILER,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ]
    .contains(name)
}

/// Set `name` to `value`, or remove every occurrence when there is no value.
pub fn set_or_remove(headers: &mut HeaderMap, name: HeaderName, value: Option<&HeaderValue>) {
    match value {
        Some(v) => {
            headers.insert(name, v.clone());
        }
        None => {
            headers.remove(name);
        }
    }
}

/// A refusal: `{"message": ...}` with a `WWW-Authenticate` challenge when one is given.
pub fn refusal(
    status: StatusCode,
    message: &str,
    challenge: Option<&HeaderValue>,
) -> Response<ProxyBody> {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut resp = json_response(status, bytes::Bytes::from(body));
    if let Some(c) = challenge {
        resp.headers_mut()
            .insert(http::header::WWW_AUTHENTICATE, c.clone());
    }
    resp
}

/// A `WWW-Authenticate` challenge `Scheme realm="realm"`. The realm was validated at build
/// time (no quotes or control characters).
pub fn challenge(scheme: &str, realm: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{scheme} realm=\"{realm}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic"))
}

/// Check a configured realm: it is written inside a quoted string.
pub fn check_realm(realm: &str) -> Result<(), Vec<(String, String)>> {
    if realm.is_empty()
        || realm
            .bytes()
            .any(|b| b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b))
    {
        return Err(vec![(
            "realm".into(),
            "must be non-empty printable ASCII without quotes or backslashes".into(),
        )]);
    }
    Ok(())
}
