//! The `jwt` plugin end to end: Kong's consumer model, a key on the plugin (the founding
//! document's model), claims to headers, and the attack matrix. Tokens are made by
//! `jwt_signer` (RustCrypto), not by the crates the gateway verifies with.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::harness::TestGateway;
use crate::jwt_signer as signer;
use crate::support::Upstream;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// YAML for a PEM block, indented to sit under a `key: |` line at `indent` spaces.
fn pem_block(pem: &str, indent: usize) -> String {
    pem.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(indent)))
        .collect()
}

async fn get(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> (u16, Value, String) {
    let r = gw.get(path, headers).await;
    let challenge = r.header("www-authenticate").to_string();
    (r.status, r.body, challenge)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn kong_consumer_model_as_in_the_founding_document() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&format!(
        r#"_format_version: "3.0"
services:
- name: user-service
  url: http://{}
  routes:
  - name: user-route
    paths: [/api/users]
  plugins:
  - name: jwt
    config:
      cookie_names: [session]
      claims_to_verify: [exp]
consumers:
- username: alice
  jwt_secrets:
  - key: alice-issuer
    algorithm: HS256
    secret: my-secret-key
- username: rsa-user
  custom_id: R-1
  jwt_secrets:
  - key: rsa-issuer
    algorithm: RS256
    rsa_public_key: |
{}- username: ec-user
  jwt_secrets:
  - key: ec-issuer
    algorithm: ES256
    rsa_public_key: |
{}"#,
        up.addr(),
        pem_block(signer::RSA_PUBLIC_PEM, 6),
        pem_block(signer::P256_PUBLIC_PEM, 6),
    ));
    let exp = now() + 3600;

    // `curl http://localhost:8000/api/users` => 401
    let (status, body, challenge) = get(&gw, "/api/users", &[]).await;
    assert_eq!(status, 401);
    assert_eq!(body["message"], "Unauthorized");
    assert_eq!(
        challenge, "Bearer realm=\"gatehouse\"",
        "no error code without a token"
    );

    // `curl -H "Authorization: Bearer <jwt-token>" ...` => 200
    let token = signer::sign_hmac(
        "HS256",
        b"my-secret-key",
        &json!({"iss": "alice-issuer", "exp": exp}),
    );
    let (status, seen, _) = get(&gw, "/api/users", &[("authorization", &bearer(&token))]).await;
    assert_eq!(status, 200);
    assert_eq!(seen["headers"]["x-consumer-username"], "alice");
    assert!(seen["headers"]["x-credential-identifier"].is_string());

    // The same token from the query and from a cookie.
    let (status, _, _) = get(&gw, &format!("/api/users?jwt={token}"), &[]).await;
    assert_eq!(status, 200);
    let cookie = format!("theme=dark; session={token}");
    let (status, _, _) = get(&gw, "/api/users", &[("cookie", &cookie)]).await;
    assert_eq!(status, 200);

    // Asymmetric credentials.
    for (alg, who) in [("RS256", "rsa-user"), ("ES256", "ec-user")] {
        let iss = if alg == "RS256" {
            "rsa-issuer"
        } else {
            "ec-issuer"
        };
        let token = signer::sign(alg, &json!({"iss": iss, "exp": exp}));
        let (status, seen, _) = get(&gw, "/api/users", &[("authorization", &bearer(&token))]).await;
        assert_eq!(status, 200, "{alg}");
        assert_eq!(seen["headers"]["x-consumer-username"], who);
    }

    // Kong's refusals.
    let cases: &[(&str, String, &str)] = &[
        (
            "no iss",
            signer::sign_hmac("HS256", b"my-secret-key", &json!({"exp": exp})),
            "No mandatory 'iss' in claims",
        ),
        (
            "unknown iss",
            signer::sign_hmac(
                "HS256",
                b"my-secret-key",
                &json!({"iss": "who", "exp": exp}),
            ),
            "No credentials found for given 'iss'",
        ),
        (
            "algorithm differs from the credential's",
            signer::sign_hmac(
                "HS512",
                b"my-secret-key",
                &json!({"iss": "alice-issuer", "exp": exp}),
            ),
            "Invalid algorithm",
        ),
        (
            "wrong secret",
            signer::sign_hmac(
                "HS256",
                b"guessed",
                &json!({"iss": "alice-issuer", "exp": exp}),
            ),
            "Invalid signature",
        ),
        (
            "exp required by claims_to_verify",
            signer::sign_hmac("HS256", b"my-secret-key", &json!({"iss": "alice-issuer"})),
            "Missing claim 'exp'",
        ),
        (
            "expired",
            signer::sign_hmac(
                "HS256",
                b"my-secret-key",
                &json!({"iss": "alice-issuer", "exp": now() - 10}),
            ),
            "Token expired",
        ),
    ];
    for (what, token, message) in cases {
        let (status, body, challenge) =
            get(&gw, "/api/users", &[("authorization", &bearer(token))]).await;
        assert_eq!(status, 401, "{what}");
        assert_eq!(body["message"], *message, "{what}");
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{what}: {challenge}"
        );
    }
}

/// The founding document's Python sample: HS256 with a shared secret, `exp` and `sub`
/// required, claims injected into upstream headers.
fn plugin_key_config(upstream: &Upstream) -> String {
    format!(
        r#"_format_version: "3.0"
services:
- name: s
  url: http://{}
  routes:
  - name: hs
    paths: [/hs]
    plugins:
    - name: jwt
      config:
        secret: change-me-in-production
        algorithms: [HS256]
        required_claims: [exp, sub]
        issuer: [https://issuer.example]
        audience: api
        claims_to_headers: {{sub: X-User-ID, roles: X-User-Roles}}
        max_token_length: 2048
  - name: rs
    paths: [/rs]
    plugins:
    - name: jwt
      config:
        algorithms: [RS256, PS256]
        public_key: |
{}"#,
        upstream.addr(),
        pem_block(signer::RSA_PUBLIC_PEM, 10),
    )
}

#[tokio::test]
async fn key_on_the_plugin_with_claims_to_headers() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&plugin_key_config(&up));
    let claims = json!({
        "sub": "user-42", "roles": ["admin", "ops"], "iat": now(), "exp": now() + 3600,
        "iss": "https://issuer.example", "aud": ["web", "api"],
    });
    let token = signer::sign_hmac("HS256", b"change-me-in-production", &claims);
    let (status, seen, _) = get(
        &gw,
        "/hs",
        &[("authorization", &bearer(&token)), ("x-user-id", "forged")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(seen["headers"]["x-user-id"], "user-42");
    assert_eq!(seen["headers"]["x-user-roles"], "admin,ops");
    assert!(
        seen["headers"].get("x-consumer-id").is_none(),
        "no consumer in this model"
    );
    for alg in ["RS256", "PS256"] {
        let token = signer::sign(alg, &json!({"sub": "svc", "exp": now() + 60}));
        let (status, _, _) = get(&gw, "/rs", &[("authorization", &bearer(&token))]).await;
        assert_eq!(status, 200, "{alg}");
    }
}

#[tokio::test]
async fn attack_matrix() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&plugin_key_config(&up));
    let secret: &[u8] = b"change-me-in-production";
    let good = json!({
        "sub": "user-42", "exp": now() + 3600, "iss": "https://issuer.example", "aud": "api",
    });
    let with = |patch: Value| {
        let mut c = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let hs = |claims: &Value| signer::sign_hmac("HS256", secret, claims);
    let b64 = |s: &str| signer::b64(s.as_bytes());
    let valid = hs(&good);
    let oversized = hs(&with(json!({"pad": "x".repeat(3000)})));
    // The RSA route's public key used as an HMAC secret: the classic algorithm confusion.
    let confused = signer::sign_hmac("HS256", signer::RSA_PUBLIC_PEM.as_bytes(), &good);

    // (what, route, Authorization value, expected message)
    let rows: Vec<(&str, &str, String, &str)> = vec![
        ("valid token (control)", "/hs", bearer(&valid), ""),
        (
            "bad signature",
            "/hs",
            bearer(&signer::sign_hmac("HS256", b"wrong", &good)),
            "Invalid signature",
        ),
        (
            "alg none, empty signature",
            "/hs",
            bearer(&signer::unsecured("none", &good)),
            "Unsupported algorithm",
        ),
        (
            "alg None, HS signature",
            "/hs",
            bearer(&signer::sign_raw(
                "HS256",
                secret,
                br#"{"alg":"None"}"#,
                good.to_string().as_bytes(),
            )),
            "Unsupported algorithm",
        ),
        (
            "HS/RS confusion",
            "/rs",
            bearer(&confused),
            "Algorithm not allowed",
        ),
        (
            "algorithm the key does not allow",
            "/hs",
            bearer(&signer::sign_hmac("HS512", secret, &good)),
            "Algorithm not allowed",
        ),
        (
            "expired",
            "/hs",
            bearer(&hs(&with(json!({"exp": now() - 5})))),
            "Token expired",
        ),
        (
            "not yet valid",
            "/hs",
            bearer(&hs(&with(json!({"nbf": now() + 600})))),
            "Token not valid yet",
        ),
        (
            "missing required claim",
            "/hs",
            bearer(&hs(&with(json!({"sub": null})))),
            "Missing claim 'sub'",
        ),
        (
            "exp not a number",
            "/hs",
            bearer(&hs(&with(json!({"exp": "tomorrow"})))),
            "Invalid claim 'exp'",
        ),
        (
            "wrong issuer",
            "/hs",
            bearer(&hs(&with(json!({"iss": "https://evil.example"})))),
            "Issuer not allowed",
        ),
        (
            "wrong audience",
            "/hs",
            bearer(&hs(&with(json!({"aud": ["web"]})))),
            "Audience not allowed",
        ),
        (
            "malformed base64",
            "/hs",
            bearer(&format!("{}.@@@.{}", b64(r#"{"alg":"HS256"}"#), b64("sig"))),
            "Malformed token",
        ),
        (
            "base64 padding",
            "/hs",
            bearer(&format!("{valid}=")),
            "Malformed token",
        ),
        (
            "two segments",
            "/hs",
            bearer(&valid[..valid.rfind('.').unwrap()]),
            "Malformed token",
        ),
        (
            "header not JSON",
            "/hs",
            bearer(&signer::sign_raw(
                "HS256",
                secret,
                b"not json",
                good.to_string().as_bytes(),
            )),
            "Malformed token",
        ),
        (
            "payload not an object",
            "/hs",
            bearer(&signer::sign_raw(
                "HS256",
                secret,
                br#"{"alg":"HS256"}"#,
                b"[1,2]",
            )),
            "Malformed token",
        ),
        (
            "oversized token",
            "/hs",
            bearer(&oversized),
            "Token too long",
        ),
        (
            "duplicate claim members",
            "/hs",
            bearer(&signer::sign_raw(
                "HS256",
                secret,
                br#"{"alg":"HS256"}"#,
                format!(
                    r#"{{"sub":"user-42","sub":"admin","exp":{},"iss":"https://issuer.example","aud":"api"}}"#,
                    now() + 60
                )
                .as_bytes(),
            )),
            "Malformed token",
        ),
        (
            "tampered payload",
            "/hs",
            bearer(&{
                let mut parts: Vec<String> = valid.split('.').map(str::to_string).collect();
                parts[1] = b64(&with(json!({"sub": "admin"})).to_string());
                parts.join(".")
            }),
            "Invalid signature",
        ),
        ("no token", "/hs", String::new(), "Unauthorized"),
        (
            "not a bearer token",
            "/hs",
            format!("Basic {valid}"),
            "Unauthorized",
        ),
    ];
    for (what, route, authorization, message) in rows {
        let headers: Vec<(&str, &str)> = if authorization.is_empty() {
            vec![]
        } else {
            vec![("authorization", authorization.as_str())]
        };
        let (status, body, challenge) = get(&gw, route, &headers).await;
        if message.is_empty() {
            assert_eq!(status, 200, "{what}: {body}");
            continue;
        }
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["message"], message, "{what}");
        assert!(
            challenge.starts_with("Bearer realm=\"gatehouse\""),
            "{what}: {challenge}"
        );
        let has_error = challenge.contains("error=\"invalid_token\"");
        assert_eq!(has_error, message != "Unauthorized", "{what}: {challenge}");
    }

    // Two different tokens (header and query): refused, so the upstream cannot read another.
    let other = hs(&with(json!({"sub": "someone-else"})));
    let (status, body, _) = get(
        &gw,
        &format!("/hs?jwt={other}"),
        &[("authorization", &bearer(&valid))],
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["message"], "Multiple tokens provided");
}

#[test]
fn jwt_config_errors_name_the_field() {
    let text = format!(
        r#"_format_version: "3.0"
consumers:
- username: a
  jwt_secrets:
  - {{key: k1, algorithm: HS999, secret: s}}
  - {{key: k2, algorithm: RS256}}
  - {{key: k3, algorithm: ES256, rsa_public_key: "not a pem"}}
  - {{key: k4, algorithm: HS256}}
routes:
- paths: [/]
  plugins:
  - name: jwt
    config: {{secret: s, public_key: p}}
- paths: [/b]
  plugins:
  - name: jwt
    config:
      algorithms: [RS256]
      secret: s
      claims_to_verify: [iat]
      claims_to_headers: {{sub: "bad header"}}
- paths: [/c]
  plugins:
  - name: jwt
    config:
      algorithms: [HS256]
      public_key: |
{}"#,
        pem_block(signer::RSA_PUBLIC_PEM, 8)
    );
    crate::harness::config_errors(
        &text,
        &[
            "consumers[0].jwt_secrets[0].algorithm: expected one of",
            "consumers[0].jwt_secrets[1].rsa_public_key: required for RS256",
            "consumers[0].jwt_secrets[2].rsa_public_key: expected a PEM public key",
            "consumers[0].jwt_secrets[3].secret: required for HS256",
            "routes[0].plugins[0].config: only one of these fields may be set",
            "routes[1].plugins[0].config.algorithms[0]: RS256 cannot be verified with this secret",
            "routes[1].plugins[0].config.claims_to_verify[0]: expected one of: exp, nbf",
            "routes[1].plugins[0].config.claims_to_headers.sub: `bad header` is not a valid header name",
            "routes[2].plugins[0].config.algorithms[0]: HS256 cannot be verified with this public_key",
        ],
    );
}

/// A verified token is remembered by the worker, but the clock is checked on every request.
#[tokio::test]
async fn a_remembered_token_still_expires() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&plugin_key_config(&up));
    let claims = json!({
        "sub": "user-42", "exp": now() + 2, "iss": "https://issuer.example", "aud": "api",
    });
    let token = signer::sign_hmac("HS256", b"change-me-in-production", &claims);
    for _ in 0..2 {
        let (status, seen, _) = get(&gw, "/hs", &[("authorization", &bearer(&token))]).await;
        assert_eq!(status, 200);
        assert_eq!(seen["headers"]["x-user-id"], "user-42");
    }
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let (status, body, _) = get(&gw, "/hs", &[("authorization", &bearer(&token))]).await;
    assert_eq!(status, 401);
    assert_eq!(body["message"], "Token expired");
}

/// Kong's options that change what is accepted: `maximum_expiration`, `secret_is_base64`,
/// `run_on_preflight`; and the extension `leeway`.
#[tokio::test]
async fn expiration_bounds_base64_secrets_preflight_and_leeway() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&format!(
        r#"_format_version: "3.0"
consumers:
- username: alice
  jwt_secrets:
  - {{key: alice-issuer, algorithm: HS256, secret: "c2VjcmV0LWJ5dGVz"}}
services:
- name: s
  url: http://{}
  routes:
  - paths: [/max]
    plugins: [{{name: jwt, config: {{claims_to_verify: [exp], maximum_expiration: 600}}}}]
  - paths: [/b64]
    plugins: [{{name: jwt, config: {{secret_is_base64: true}}}}]
  - paths: [/preflight]
    plugins: [{{name: jwt, config: {{run_on_preflight: false}}}}]
  - paths: [/leeway]
    plugins: [{{name: jwt, config: {{secret: k, leeway: 30}}}}]
  - paths: [/strict]
    plugins: [{{name: jwt, config: {{secret: k}}}}]
"#,
        up.addr()
    ));
    let raw_secret = b"c2VjcmV0LWJ5dGVz"; // the credential's secret as written
    let decoded_secret = b"secret-bytes"; // its base64 decoding
    let kong = |secret: &[u8], exp: i64| {
        signer::sign_hmac("HS256", secret, &json!({"iss": "alice-issuer", "exp": exp}))
    };

    let (status, _, _) = get(
        &gw,
        "/max",
        &[("authorization", &bearer(&kong(raw_secret, now() + 300)))],
    )
    .await;
    assert_eq!(status, 200);
    let (status, body, _) = get(
        &gw,
        "/max",
        &[("authorization", &bearer(&kong(raw_secret, now() + 3600)))],
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        body["message"],
        "Token exceeds the maximum allowed expiration"
    );

    let (status, _, _) = get(
        &gw,
        "/b64",
        &[("authorization", &bearer(&kong(decoded_secret, now() + 60)))],
    )
    .await;
    assert_eq!(status, 200, "signed with the decoded secret");
    let (status, _, _) = get(
        &gw,
        "/b64",
        &[("authorization", &bearer(&kong(raw_secret, now() + 60)))],
    )
    .await;
    assert_eq!(status, 401, "the text of the secret is not the key");

    // A CORS preflight goes through without a token; other methods do not.
    let resp = crate::support::client()
        .request(reqwest::Method::OPTIONS, gw.url("/preflight"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, _, _) = get(&gw, "/preflight", &[]).await;
    assert_eq!(status, 401);

    let expired = signer::sign_hmac("HS256", b"k", &json!({"sub": "u", "exp": now() - 10}));
    let (status, _, _) = get(&gw, "/leeway", &[("authorization", &bearer(&expired))]).await;
    assert_eq!(status, 200, "10 s late is within a 30 s leeway");
    let (status, body, _) = get(&gw, "/strict", &[("authorization", &bearer(&expired))]).await;
    assert_eq!(status, 401);
    assert_eq!(body["message"], "Token expired");
}

/// Kong's `key_claim_name: kid` finds the credential by the token header's `kid`; a parameter
/// repeated in the query is refused even with equal copies; a base64 secret may be URL-safe and
/// unpadded.
#[tokio::test]
async fn kid_as_key_claim_repeated_query_tokens_and_base64_forms() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&format!(
        r#"_format_version: "3.0"
consumers:
- username: alice
  jwt_secrets:
  - {{key: alice-kid, algorithm: HS256, secret: alice-secret}}
  - {{key: url-safe, algorithm: HS256, secret: "-_-_AQ"}}
services:
- name: s
  url: http://{}
  routes:
  - paths: [/kid]
    plugins: [{{name: jwt, config: {{key_claim_name: kid}}}}]
  - paths: [/b64]
    plugins: [{{name: jwt, config: {{secret_is_base64: true}}}}]
"#,
        up.addr()
    ));
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": "alice-kid"});
    let claims = json!({"sub": "a", "exp": now() + 60});
    let token = signer::sign_raw(
        "HS256",
        b"alice-secret",
        header.to_string().as_bytes(),
        claims.to_string().as_bytes(),
    );
    let (status, seen, _) = get(&gw, "/kid", &[("authorization", &bearer(&token))]).await;
    assert_eq!(status, 200);
    assert_eq!(seen["headers"]["x-consumer-username"], "alice");

    let (status, body, _) = get(&gw, &format!("/kid?jwt={token}&jwt={token}"), &[]).await;
    assert_eq!(status, 401);
    assert_eq!(body["message"], "Multiple tokens provided");

    // "-_-_AQ" is URL-safe, unpadded base64 for the bytes fb ff bf 01.
    let token = signer::sign_hmac(
        "HS256",
        &[0xfb, 0xff, 0xbf, 0x01],
        &json!({"iss": "url-safe", "exp": now() + 60}),
    );
    let (status, _, _) = get(&gw, "/b64", &[("authorization", &bearer(&token))]).await;
    assert_eq!(status, 200);
}
