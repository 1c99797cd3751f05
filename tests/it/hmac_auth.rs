//! hmac-auth end to end. Signatures are made here by an independent implementation (RustCrypto's
//! `hmac` and `sha2`; HMAC-SHA1 by hand over `sha1_smol`), never by the gateway's aws-lc-rs, and
//! every test spells out the string it signs.

use std::time::{Duration, SystemTime};

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

use crate::harness::{TestGateway, json};
use crate::support::{Upstream, client};

const SECRET: &str = "alice-secret";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn mac<M: Mac + KeyInit>(secret: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <M as KeyInit>::new_from_slice(secret).expect("any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// HMAC (RFC 2104) over SHA-1, written out: no HMAC-SHA1 crate is at hand.
fn hmac_sha1(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..20].copy_from_slice(&sha1_smol::Sha1::from(key).digest().bytes());
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = sha1_smol::Sha1::new();
    inner.update(&block.map(|b| b ^ 0x36));
    inner.update(data);
    let mut outer = sha1_smol::Sha1::new();
    outer.update(&block.map(|b| b ^ 0x5c));
    outer.update(&inner.digest().bytes());
    outer.digest().bytes().to_vec()
}

fn sign(algorithm: &str, secret: &str, signing_string: &str) -> String {
    let (key, data) = (secret.as_bytes(), signing_string.as_bytes());
    b64(&match algorithm {
        "hmac-sha1" => hmac_sha1(key, data),
        "hmac-sha224" => mac::<Hmac<Sha224>>(key, data),
        "hmac-sha256" => mac::<Hmac<Sha256>>(key, data),
        "hmac-sha384" => mac::<Hmac<Sha384>>(key, data),
        "hmac-sha512" => mac::<Hmac<Sha512>>(key, data),
        other => panic!("no test signer for {other}"),
    })
}

/// The `Authorization` value for `signing_string`, signed as `username` with `secret`.
fn authorization(
    username: &str,
    algorithm: &str,
    secret: &str,
    headers: &str,
    signing_string: &str,
) -> String {
    format!(
        r#"hmac username="{username}", algorithm="{algorithm}", headers="{headers}", signature="{}""#,
        sign(algorithm, secret, signing_string)
    )
}

/// An HTTP date `offset` seconds from now.
fn http_date(offset: i64) -> String {
    let now = SystemTime::now();
    let d = Duration::from_secs(offset.unsigned_abs());
    httpdate::fmt_http_date(if offset >= 0 { now + d } else { now - d })
}

fn digest(body: &[u8]) -> String {
    format!("SHA-256={}", b64(&Sha256::digest(body)))
}

const NOT_VERIFIED: &str = "HMAC signature cannot be verified";
const NO_MATCH: &str = "HMAC signature does not match";
const BAD_DATE: &str = "HMAC signature cannot be verified, a valid date or x-date header is required for HMAC Authentication";

async fn gateway() -> (Upstream, TestGateway) {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&format!(
        r#"_format_version: "3.0"
consumers:
- username: alice
  custom_id: A-1
  hmacauth_credentials:
  - username: alice
    secret: {SECRET}
    id: alice-hmac
- username: anon
services:
- name: s
  url: http://{}
  routes:
  - paths: [/default]
    plugins: [{{name: hmac-auth}}]
  - paths: [/skew]
    plugins: [{{name: hmac-auth, config: {{clock_skew: 10}}}}]
  - paths: [/enforce]
    plugins: [{{name: hmac-auth, config: {{enforce_headers: [date, request-line]}}}}]
  - paths: [/legacy]
    plugins: [{{name: hmac-auth, config: {{algorithms: [hmac-sha256, hmac-sha1]}}}}]
  - paths: [/body]
    plugins: [{{name: hmac-auth, config: {{validate_request_body: true, enforce_headers: [digest]}}}}]
  - paths: [/hide]
    plugins: [{{name: hmac-auth, config: {{hide_credentials: true, realm: api}}}}]
  - paths: [/anon]
    plugins: [{{name: hmac-auth, config: {{anonymous: anon}}}}]
  - paths: [/kong-replayable]
    plugins: [{{name: hmac-auth, config: {{require_signed_date: false}}}}]
  - paths: [/body-unsigned-digest]
    plugins: [{{name: hmac-auth, config: {{validate_request_body: true}}}}]
"#,
        up.addr()
    ));
    (up, gw)
}

/// Status and `message` (or the upstream's view of the request) of a response.
async fn outcome(resp: reqwest::Response) -> (u16, serde_json::Value) {
    (resp.status().as_u16(), json(resp).await)
}

#[tokio::test]
async fn valid_signatures_identify_the_consumer() {
    let (_up, gw) = gateway().await;
    for algorithm in ["hmac-sha224", "hmac-sha256", "hmac-sha384", "hmac-sha512"] {
        let date = http_date(0);
        let signed = format!("date: {date}\nGET /default/orders?b=2&a=1 HTTP/1.1");
        let auth = authorization("alice", algorithm, SECRET, "date request-line", &signed);
        let resp = client()
            .get(gw.url("/default/orders?b=2&a=1"))
            .header("date", &date)
            .header("authorization", &auth)
            .header("x-consumer-username", "mallory")
            .send()
            .await
            .unwrap();
        let (status, seen) = outcome(resp).await;
        assert_eq!(status, 200, "{algorithm}: {seen}");
        let h = &seen["headers"];
        assert_eq!(h["x-consumer-username"], "alice", "{algorithm}");
        assert_eq!(h["x-consumer-custom-id"], "A-1");
        assert_eq!(h["x-credential-identifier"], "alice-hmac");
        assert!(h.get("x-anonymous-consumer").is_none());
        assert_eq!(
            h["authorization"],
            auth.as_str(),
            "kept without hide_credentials"
        );
    }

    // X-Date instead of Date, Proxy-Authorization, any parameter order, @request-target and an
    // ordinary header, several values of which are signed together.
    let date = http_date(0);
    let signed = format!("x-date: {date}\npost /default\nx-tag: one, two");
    let auth = format!(
        r#"hmac signature="{}",headers="x-date @request-target x-tag",username="alice",algorithm="hmac-sha512""#,
        sign("hmac-sha512", SECRET, &signed)
    );
    let resp = client()
        .post(gw.url("/default"))
        .header("x-date", &date)
        .header("x-tag", "one")
        .header("x-tag", "two")
        .header("proxy-authorization", &auth)
        .header("authorization", "Bearer for-the-upstream")
        .send()
        .await
        .unwrap();
    let (status, seen) = outcome(resp).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["headers"]["authorization"], "Bearer for-the-upstream");

    // The draft's `Signature keyId=...` form.
    let signed = format!("(request-target): get /default\ndate: {date}");
    let auth = format!(
        r#"Signature keyId="alice",algorithm="hmac-sha256",headers="(request-target) date",signature="{}""#,
        sign("hmac-sha256", SECRET, &signed)
    );
    let resp = client()
        .get(gw.url("/default"))
        .header("date", &date)
        .header("authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn wrong_or_tampered_signatures_are_refused() {
    let (up, gw) = gateway().await;
    let date = http_date(0);
    let send = |path: &'static str, auth: Option<String>, extra: Vec<(&'static str, String)>| {
        let mut req = client().get(gw.url(path)).header("date", &date);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        for (k, v) in extra {
            req = req.header(k, v);
        }
        async move { req.send().await.unwrap() }
    };

    // No credentials at all: the challenge, and the upstream is never reached.
    let resp = send("/default", None, vec![]).await;
    assert_eq!(resp.headers()["www-authenticate"], "hmac");
    assert_eq!(
        outcome(resp).await,
        (401, serde_json::json!({"message": "Unauthorized"}))
    );

    let refused = |expected: &'static str| {
        move |(status, body): (u16, serde_json::Value)| {
            assert_eq!(status, 401, "{body}");
            assert_eq!(body["message"], expected);
        }
    };
    let signed = format!("date: {date}\nGET /default?a=1 HTTP/1.1");
    // Wrong secret.
    let auth = authorization(
        "alice",
        "hmac-sha256",
        "not-the-secret",
        "date request-line",
        &signed,
    );
    refused(NO_MATCH)(outcome(send("/default?a=1", Some(auth), vec![]).await).await);
    // Unknown username (signed with the right secret).
    let auth = authorization("bob", "hmac-sha256", SECRET, "date request-line", &signed);
    refused(NOT_VERIFIED)(outcome(send("/default?a=1", Some(auth), vec![]).await).await);
    // The query changed after signing.
    let auth = authorization("alice", "hmac-sha256", SECRET, "date request-line", &signed);
    refused(NO_MATCH)(outcome(send("/default?a=2", Some(auth), vec![]).await).await);
    // A signed header changed after signing.
    let signed_tag = format!("date: {date}\nx-amount: 10");
    let auth = authorization("alice", "hmac-sha256", SECRET, "date x-amount", &signed_tag);
    let ok = send(
        "/default",
        Some(auth.clone()),
        vec![("x-amount", "10".into())],
    )
    .await;
    assert_eq!(ok.status(), 200);
    let tampered = send(
        "/default",
        Some(auth.clone()),
        vec![("x-amount", "1000".into())],
    )
    .await;
    refused(NO_MATCH)(outcome(tampered).await);
    // ... or sent twice: both values are what gets checked.
    let twice = send(
        "/default",
        Some(auth),
        vec![("x-amount", "10".into()), ("x-amount", "1000".into())],
    )
    .await;
    refused(NO_MATCH)(outcome(twice).await);
    // Not base64, not hmac, or not parseable.
    for auth in [
        r#"hmac username="alice", algorithm="hmac-sha256", headers="date", signature="not base64!!""#
            .to_string(),
        "Basic YWxpY2U6cHc=".to_string(),
        r#"hmac username="alice" algorithm="hmac-sha256""#.to_string(),
    ] {
        let expected = if auth.contains("base64") { NO_MATCH } else { NOT_VERIFIED };
        refused(expected)(outcome(send("/default", Some(auth), vec![]).await).await);
    }
    assert_eq!(
        up.request_count(),
        1,
        "only the untampered request went upstream"
    );
}

#[tokio::test]
async fn the_date_must_be_present_and_within_the_clock_skew() {
    let (_up, gw) = gateway().await;
    let request = |date_header: &'static str, date: Option<String>, signed_names: &str| {
        let signed = match &date {
            Some(d) => format!("{date_header}: {d}\nGET /skew HTTP/1.1"),
            None => "GET /skew HTTP/1.1".to_string(),
        };
        let auth = authorization("alice", "hmac-sha256", SECRET, signed_names, &signed);
        let mut req = client().get(gw.url("/skew")).header("authorization", auth);
        if let Some(d) = date {
            req = req.header(date_header, d);
        }
        async move { outcome(req.send().await.unwrap()).await }
    };
    // clock_skew is 10 s on this route.
    for offset in [-5, 0, 5] {
        let (status, body) = request("date", Some(http_date(offset)), "date request-line").await;
        assert_eq!(status, 200, "{offset} s: {body}");
    }
    for offset in [-60, 60, -3600] {
        let (status, body) = request("date", Some(http_date(offset)), "date request-line").await;
        assert_eq!(
            (status, body["message"].as_str()),
            (401, Some(BAD_DATE)),
            "{offset} s"
        );
        let (status, _) = request("x-date", Some(http_date(offset)), "x-date request-line").await;
        assert_eq!(status, 401, "x-date {offset} s");
    }
    let (status, body) = request("date", None, "request-line").await;
    assert_eq!((status, body["message"].as_str()), (401, Some(BAD_DATE)));
    let (status, body) = request("date", Some("yesterday".into()), "date request-line").await;
    assert_eq!((status, body["message"].as_str()), (401, Some(BAD_DATE)));

    // An old signed Date cannot be revived by adding a fresh, unsigned X-Date.
    let old = http_date(-3600);
    let signed = format!("date: {old}\nGET /skew HTTP/1.1");
    let auth = authorization("alice", "hmac-sha256", SECRET, "date request-line", &signed);
    let resp = client()
        .get(gw.url("/skew"))
        .header("date", &old)
        .header("x-date", http_date(0))
        .header("authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(outcome(resp).await.1["message"], BAD_DATE);
}

#[tokio::test]
async fn enforced_headers_and_allowed_algorithms() {
    let (_up, gw) = gateway().await;
    let date = http_date(0);
    let get = |path: &'static str, auth: String| {
        let req = client()
            .get(gw.url(path))
            .header("date", &date)
            .header("authorization", auth);
        async move { outcome(req.send().await.unwrap()).await }
    };
    // enforce_headers [date, request-line]: signing only the date is not enough.
    let auth = authorization(
        "alice",
        "hmac-sha256",
        SECRET,
        "date",
        &format!("date: {date}"),
    );
    let (status, body) = get("/enforce", auth.clone()).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some(NOT_VERIFIED))
    );
    assert_eq!(
        get("/default", auth).await.0,
        200,
        "fine where nothing is enforced"
    );
    let signed = format!("GET /enforce HTTP/1.1\ndate: {date}");
    let auth = authorization("alice", "hmac-sha256", SECRET, "request-line date", &signed);
    assert_eq!(get("/enforce", auth).await.0, 200, "any order");

    // hmac-sha1 only where listed; a listed algorithm not used by the route is refused.
    let sha1 = authorization(
        "alice",
        "hmac-sha1",
        SECRET,
        "date",
        &format!("date: {date}"),
    );
    let (status, body) = get("/default", sha1.clone()).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some(NOT_VERIFIED))
    );
    assert_eq!(get("/legacy", sha1).await.0, 200);
    let sha512 = authorization(
        "alice",
        "hmac-sha512",
        SECRET,
        "date",
        &format!("date: {date}"),
    );
    let (status, body) = get("/legacy", sha512).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some(NOT_VERIFIED))
    );
    let unknown = authorization(
        "alice",
        "hmac-sha256",
        SECRET,
        "date",
        &format!("date: {date}"),
    )
    .replace("hmac-sha256", "hmac-md5");
    assert_eq!(get("/default", unknown).await.0, 401);
}

#[tokio::test]
async fn request_bodies_are_checked_against_their_digest() {
    let (up, gw) = gateway().await;
    let body = br#"{"order":42,"items":["a","b"]}"#.to_vec();
    let date = http_date(0);
    let signed_with = |digest_value: &str| {
        // An absent header is signed as its bare name.
        let line = match digest_value {
            "" => "digest:".to_string(),
            d => format!("digest: {d}"),
        };
        let signed = format!("date: {date}\n{line}\nPOST /body/echo HTTP/1.1");
        authorization(
            "alice",
            "hmac-sha256",
            SECRET,
            "date digest request-line",
            &signed,
        )
    };
    let post = |digest_value: Option<String>, auth: String, payload: Vec<u8>| {
        let mut req = client()
            .post(gw.url("/body/echo"))
            .header("date", &date)
            .header("authorization", auth)
            .body(payload);
        if let Some(d) = digest_value {
            req = req.header("digest", d);
        }
        req.send()
    };

    // The right digest, signed: the upstream gets the body intact.
    let good = digest(&body);
    let resp = post(Some(good.clone()), signed_with(&good), body.clone())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), body);

    // The same, uploaded chunked: read whole, then sent with a length of its own.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(7).map(|c| Ok(c.to_vec())).collect();
    let resp = client()
        .post(gw.url("/body/echo"))
        .header("date", &date)
        .header("digest", &good)
        .header("authorization", signed_with(&good))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), body);
    let last = up.requests().pop().expect("recorded");
    assert_eq!(
        last.headers["content-length"],
        body.len().to_string().as_str()
    );
    assert!(last.headers.get("transfer-encoding").is_none());

    // A body that does not match its (signed) digest; a body without a digest.
    let (status, msg) = outcome(
        post(
            Some(good.clone()),
            signed_with(&good),
            b"{\"order\":43}".to_vec(),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!((status, msg["message"].as_str()), (401, Some(NO_MATCH)));
    let (status, msg) = outcome(post(None, signed_with(""), body.clone()).await.unwrap()).await;
    assert_eq!((status, msg["message"].as_str()), (401, Some(NO_MATCH)));
    // A digest that matches but is not signed (enforce_headers: [digest]).
    let signed = format!("date: {date}");
    let unsigned = authorization("alice", "hmac-sha256", SECRET, "date", &signed);
    let (status, msg) = outcome(post(Some(good), unsigned, body.clone()).await.unwrap()).await;
    assert_eq!((status, msg["message"].as_str()), (401, Some(NOT_VERIFIED)));

    // No body and no digest is fine (Kong's rule).
    let signed = format!("date: {date}\ndigest:\nGET /body HTTP/1.1");
    let auth = authorization(
        "alice",
        "hmac-sha256",
        SECRET,
        "date digest request-line",
        &signed,
    );
    let resp = client()
        .get(gw.url("/body"))
        .header("date", &date)
        .header("authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn hide_credentials_and_anonymous() {
    let (_up, gw) = gateway().await;
    let date = http_date(0);
    let auth = authorization(
        "alice",
        "hmac-sha256",
        SECRET,
        "date",
        &format!("date: {date}"),
    );

    // hide_credentials removes the header that carried the signature, nothing else.
    let resp = client()
        .get(gw.url("/hide"))
        .header("date", &date)
        .header("proxy-authorization", &auth)
        .header("authorization", "Bearer for-the-upstream")
        .send()
        .await
        .unwrap();
    let (status, seen) = outcome(resp).await;
    assert_eq!(status, 200);
    assert!(seen["headers"].get("proxy-authorization").is_none());
    assert_eq!(seen["headers"]["authorization"], "Bearer for-the-upstream");
    let resp = client()
        .get(gw.url("/hide"))
        .header("date", &date)
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert!(
        outcome(resp).await.1["headers"]
            .get("authorization")
            .is_none()
    );
    let resp = client().get(gw.url("/hide")).send().await.unwrap();
    assert_eq!(resp.headers()["www-authenticate"], "hmac realm=\"api\"");

    // anonymous: a failed authentication goes on as that consumer, marked as such.
    for bad in [None, Some("hmac username=\"alice\"".to_string())] {
        let mut req = client().get(gw.url("/anon")).header("date", &date);
        if let Some(b) = bad {
            req = req.header("authorization", b);
        }
        let (status, seen) = outcome(req.send().await.unwrap()).await;
        assert_eq!(status, 200);
        assert_eq!(seen["headers"]["x-consumer-username"], "anon");
        assert_eq!(seen["headers"]["x-anonymous-consumer"], "true");
        assert!(seen["headers"].get("x-credential-identifier").is_none());
    }
    let resp = client()
        .get(gw.url("/anon"))
        .header("date", &date)
        .header("authorization", &auth)
        .header("x-anonymous-consumer", "true")
        .send()
        .await
        .unwrap();
    let (_, seen) = outcome(resp).await;
    assert_eq!(seen["headers"]["x-consumer-username"], "alice");
    assert!(seen["headers"].get("x-anonymous-consumer").is_none());
}

#[test]
fn the_test_signer_is_right() {
    // RFC 2202, test case 2, and RFC 4231, test case 2.
    let sha1 = hmac_sha1(b"Jefe", b"what do ya want for nothing?");
    assert_eq!(b64(&sha1), "7/zfauXrL6LSdBbV8YTfnCWafHk=");
    let sha256 = mac::<Hmac<Sha256>>(b"Jefe", b"what do ya want for nothing?");
    assert_eq!(b64(&sha256), "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=");
}

#[test]
fn hmac_config_errors_name_the_field() {
    let text = r#"_format_version: "3.0"
consumers:
- username: a
  hmacauth_credentials: [{username: same, secret: sekrit-1}, {username: empty, secret: ""}]
  plugins:
  - {name: hmac-auth}
- username: b
  hmacauth_credentials: [{username: same, secret: sekrit-2}]
routes:
- paths: [/]
  plugins:
  - name: hmac-auth
    config: {clock_skew: -1, algorithms: [hmac-sha256, hmac-md5], anonymous: ghost, realm: ""}
- paths: [/x]
  plugins:
  - {name: hmac-auth, config: {clock_skew: 0, enforce_headers: [""], algorithms: []}}
- paths: [/y]
  plugins:
  - {name: hmac-auth, config: {nonce: true}}
"#;
    let errors = crate::harness::config_errors(
        text,
        &[
            "consumers[1].hmacauth_credentials[0].username: another hmac-auth credential has the username `same`",
            "consumers[0].hmacauth_credentials[1].secret: must not be empty",
            "consumers[0].plugins[0].consumer: plugin `hmac-auth` cannot be configured on a consumer",
            "routes[0].plugins[0].config.clock_skew: value must be greater than 0",
            "routes[0].plugins[0].config.algorithms[1]: expected one of: hmac-sha1, hmac-sha224, hmac-sha256, hmac-sha384, hmac-sha512 (got `hmac-md5`)",
            "routes[0].plugins[0].config.anonymous: no consumer with id or username `ghost`",
            "routes[0].plugins[0].config.realm: must be non-empty printable ASCII",
            "routes[1].plugins[0].config.clock_skew: value must be greater than 0",
            "routes[1].plugins[0].config.enforce_headers[0]: must be a header name",
            "routes[1].plugins[0].config.algorithms: must not be empty",
            "routes[2].plugins[0].config.nonce: unknown field `nonce`",
        ],
    );
    assert!(
        !errors.contains("sekrit"),
        "a secret is never echoed: {errors}"
    );
}

/// Replays: a signature that covers no date could be sent again forever with a fresh `Date`, and
/// one that does not cover the digest could carry another body; both are refused by default.
#[tokio::test]
async fn signatures_must_cover_the_date_and_the_digest() {
    let (_up, gw) = gateway().await;
    let send = |path: &'static str, signed_headers: &'static str, signing: String| {
        let url = gw.url(path);
        async move {
            let auth = authorization("alice", "hmac-sha256", SECRET, signed_headers, &signing);
            let resp = client()
                .get(url)
                .header("date", http_date(0))
                .header("authorization", auth)
                .send()
                .await
                .unwrap();
            outcome(resp).await
        }
    };
    let (status, body) = send("/default", "request-line", "GET /default HTTP/1.1".into()).await;
    assert_eq!(status, 401);
    assert_eq!(body["message"], NOT_VERIFIED);
    // Kong's behaviour, when asked for.
    let (status, _) = send(
        "/kong-replayable",
        "request-line",
        "GET /kong-replayable HTTP/1.1".into(),
    )
    .await;
    assert_eq!(status, 200);

    // validate_request_body with a matching Digest that the signature does not cover.
    let body = b"amount=10";
    let date = http_date(0);
    let signing = format!("date: {date}\nPOST /body-unsigned-digest HTTP/1.1");
    let auth = authorization(
        "alice",
        "hmac-sha256",
        SECRET,
        "date request-line",
        &signing,
    );
    let resp = client()
        .post(gw.url("/body-unsigned-digest"))
        .header("date", &date)
        .header("digest", digest(body))
        .header("authorization", auth)
        .body(&body[..])
        .send()
        .await
        .unwrap();
    let (status, seen) = outcome(resp).await;
    assert_eq!(status, 401, "{seen}");
    // The same with the digest signed.
    let signing = format!(
        "date: {date}\nPOST /body-unsigned-digest HTTP/1.1\ndigest: {}",
        digest(body)
    );
    let auth = authorization(
        "alice",
        "hmac-sha256",
        SECRET,
        "date request-line digest",
        &signing,
    );
    let resp = client()
        .post(gw.url("/body-unsigned-digest"))
        .header("date", &date)
        .header("digest", digest(body))
        .header("authorization", auth)
        .body(&body[..])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
