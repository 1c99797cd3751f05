//! Consumers and credentials end to end: key-auth, basic-auth, acl, `anonymous` ("either"
//! logic), consumer headers and consumer-scoped plugins, against an upstream that echoes what
//! it receives.

use base64::Engine;

use crate::harness::{TestGateway, json};
use crate::support::{Upstream, client};

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[tokio::test]
async fn key_auth_identifies_consumers_by_header_or_query() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&format!(
        r#"_format_version: "3.0"
consumers:
- username: alice
  custom_id: A-1
  keyauth_credentials:
  - key: alice-key-1
  - key: alice-key-2
- username: bob
  id: 2b1f2b1f-0000-4000-8000-00000000b0b0
  keyauth_credentials:
  - id: bob-key-id
    key: bob-key
- custom_id: C-3
keyauth_credentials:
- key: carol-key
  consumer: C-3
services:
- name: s
  url: http://{}
  routes:
  - paths: [/default]
    plugins: [{{name: key-auth}}]
  - paths: [/api]
    plugins: [{{name: key-auth, config: {{key_names: [X-API-Key, api_key]}}}}]
  - paths: [/hidden]
    plugins: [{{name: key-auth, config: {{key_names: [X-API-Key, api_key], hide_credentials: true}}}}]
  - paths: [/header-only]
    plugins: [{{name: key-auth, config: {{key_in_query: false}}}}]
"#,
        up.addr()
    ));

    // The founding document's flow: missing → 401, wrong → 403, right → 200 + owner.
    let resp = client().get(gw.url("/api/users")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Key realm=\"gatehouse\""
    );
    assert_eq!(json(resp).await["message"], "No API key found in request");
    let resp = client()
        .get(gw.url("/api/users"))
        .header("X-API-Key", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        json(resp).await["message"],
        "Invalid authentication credentials"
    );
    let resp = client()
        .get(gw.url("/api/users"))
        .header("X-API-Key", "alice-key-2")
        .header("X-Consumer-Username", "mallory")
        .header("X-Anonymous-Consumer", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = json(resp).await;
    let h = &seen["headers"];
    assert_eq!(h["x-api-key-owner"], "alice");
    assert_eq!(
        h["x-consumer-username"], "alice",
        "a forged header is replaced"
    );
    assert_eq!(h["x-consumer-custom-id"], "A-1");
    assert_eq!(h["x-consumer-id"].as_str().unwrap().len(), 36);
    assert!(h["x-credential-identifier"].is_string());
    assert!(h.get("x-anonymous-consumer").is_none());
    assert_eq!(
        h["x-api-key"], "alice-key-2",
        "kept without hide_credentials"
    );

    // The query parameter form, with a consumer that has an id and a credential id.
    let resp = client()
        .get(gw.url("/api/users?page=2&api_key=bob-key"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = json(resp).await;
    assert_eq!(
        seen["headers"]["x-consumer-id"],
        "2b1f2b1f-0000-4000-8000-00000000b0b0"
    );
    assert_eq!(seen["headers"]["x-credential-identifier"], "bob-key-id");
    assert_eq!(seen["query"], "page=2&api_key=bob-key");
    assert!(
        seen["headers"].get("x-consumer-custom-id").is_none(),
        "cleared when the consumer has none"
    );

    // A top-level credential naming its consumer by custom_id; the owner falls back to it.
    let resp = client()
        .get(gw.url("/default"))
        .header("apikey", "carol-key")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = json(resp).await;
    assert_eq!(seen["headers"]["x-api-key-owner"], "C-3");
    assert!(seen["headers"].get("x-consumer-username").is_none());

    // hide_credentials removes the header or the query parameter, nothing else.
    let resp = client()
        .get(gw.url("/hidden?a=1&api_key=alice-key-1&b=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await["query"], "a=1&b=2");
    let resp = client()
        .get(gw.url("/hidden"))
        .header("x-api-key", "alice-key-1")
        .send()
        .await
        .unwrap();
    assert!(json(resp).await["headers"].get("x-api-key").is_none());

    // Two keys at once are refused rather than one picked.
    let resp = client()
        .get(gw.url("/api?api_key=alice-key-1&api_key=bob-key"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(json(resp).await["message"], "Duplicate API key found");

    // key_in_query: false ignores the query.
    assert_eq!(
        client()
            .get(gw.url("/header-only?apikey=alice-key-1"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn basic_auth_checks_hashed_passwords() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&format!(
        r#"_format_version: "3.0"
consumers:
- username: alice
  basicauth_credentials:
  - username: alice
    password: "wonder:land"
services:
- name: s
  url: http://{}
  routes:
  - paths: [/b]
    plugins: [{{name: basic-auth}}]
  - paths: [/hide]
    plugins: [{{name: basic-auth, config: {{hide_credentials: true, realm: api}}}}]
"#,
        up.addr()
    ));
    let resp = client().get(gw.url("/b")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Basic realm=\"service\""
    );
    assert_eq!(json(resp).await["message"], "Unauthorized");
    for (user, password) in [
        ("alice", "wonder"),
        ("alice", "wonder:lan"),
        ("bob", "wonder:land"),
    ] {
        let resp = client()
            .get(gw.url("/b"))
            .header("authorization", basic(user, password))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{user}:{password}");
        assert_eq!(
            json(resp).await["message"],
            "Invalid authentication credentials"
        );
    }
    let resp = client()
        .get(gw.url("/b"))
        .header("authorization", basic("alice", "wonder:land"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = json(resp).await;
    assert_eq!(seen["headers"]["x-consumer-username"], "alice");
    assert!(seen["headers"]["authorization"].is_string());

    // Proxy-Authorization is read first; hide_credentials removes the header that was used.
    let resp = client()
        .get(gw.url("/hide"))
        .header("proxy-authorization", basic("alice", "wonder:land"))
        .header("authorization", "Bearer for-the-upstream")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = json(resp).await;
    assert!(seen["headers"].get("proxy-authorization").is_none());
    assert_eq!(seen["headers"]["authorization"], "Bearer for-the-upstream");
    let resp = client().get(gw.url("/hide")).send().await.unwrap();
    assert_eq!(resp.headers()["www-authenticate"], "Basic realm=\"api\"");
}

#[tokio::test]
async fn anonymous_makes_two_auth_plugins_mean_either_and_acl_decides() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&format!(
        r#"_format_version: "3.0"
consumers:
- username: anon
- username: alice
  keyauth_credentials: [{{key: alice-key}}]
  acls: [{{group: admins}}, {{group: staff}}]
- username: bob
  basicauth_credentials: [{{username: bob, password: pw}}]
  acls: [{{group: staff}}]
- username: eve
  keyauth_credentials: [{{key: eve-key}}]
services:
- name: s
  url: http://{}
  routes:
  - paths: [/either]
    plugins:
    - {{name: key-auth, config: {{anonymous: anon}}}}
    - {{name: basic-auth, config: {{anonymous: anon}}}}
    - {{name: acl, config: {{allow: [staff]}}}}
  - paths: [/open]
    plugins:
    - {{name: key-auth, config: {{anonymous: anon}}}}
  - paths: [/not-eve]
    plugins:
    - {{name: key-auth}}
    - {{name: acl, config: {{deny: [banned], hide_groups_header: true}}}}
  - paths: [/acl-alone]
    plugins:
    - {{name: acl, config: {{allow: [staff]}}}}
"#,
        up.addr()
    ));
    // Either credential works; the acl sees the consumer and passes its groups on.
    let resp = client()
        .get(gw.url("/either"))
        .header("apikey", "alice-key")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = json(resp).await;
    assert_eq!(seen["headers"]["x-consumer-username"], "alice");
    assert_eq!(seen["headers"]["x-consumer-groups"], "admins, staff");
    let resp = client()
        .get(gw.url("/either"))
        .header("authorization", basic("bob", "pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = json(resp).await;
    assert_eq!(seen["headers"]["x-consumer-username"], "bob");
    assert!(seen["headers"].get("x-anonymous-consumer").is_none());
    // Neither: the anonymous consumer, which the acl refuses (it is in no group).
    let resp = client().get(gw.url("/either")).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        json(resp).await["message"],
        "You cannot consume this service"
    );
    // A consumer outside the allowed group.
    let resp = client()
        .get(gw.url("/either"))
        .header("apikey", "eve-key")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // Anonymous passes where nothing else objects, and is marked as such.
    let resp = client().get(gw.url("/open")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen = json(resp).await;
    assert_eq!(seen["headers"]["x-consumer-username"], "anon");
    assert_eq!(seen["headers"]["x-anonymous-consumer"], "true");
    assert!(seen["headers"].get("x-credential-identifier").is_none());

    // deny lists, and hide_groups_header removes even a forged header.
    let resp = client()
        .get(gw.url("/not-eve"))
        .header("apikey", "alice-key")
        .header("x-consumer-groups", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        json(resp).await["headers"]
            .get("x-consumer-groups")
            .is_none()
    );

    // acl without any authentication: no consumer is a 401.
    let resp = client().get(gw.url("/acl-alone")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn consumer_scoped_plugins_apply_once_the_consumer_is_known() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&format!(
        r#"_format_version: "3.0"
consumers:
- username: alice
  keyauth_credentials: [{{key: alice-key}}]
  plugins:
  - name: request-transformer
    config: {{add: {{headers: ["x-tier: gold"]}}}}
- username: bob
  keyauth_credentials: [{{key: bob-key}}]
- username: blocked
  keyauth_credentials: [{{key: blocked-key}}]
plugins:
- name: request-termination
  consumer: blocked
  config: {{status_code: 403, message: "account suspended"}}
- name: request-transformer
  config: {{add: {{headers: ["x-tier: basic"]}}}}
services:
- name: s
  url: http://{}
  routes:
  - paths: [/]
    plugins: [{{name: key-auth}}]
"#,
        up.addr()
    ));
    let tier = |key: &'static str| {
        let url = gw.url("/");
        async move {
            let resp = client()
                .get(url)
                .header("apikey", key)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), json(resp).await)
        }
    };
    let (status, seen) = tier("alice-key").await;
    assert_eq!(status, 200);
    assert_eq!(
        seen["headers"]["x-tier"], "gold",
        "consumer scope beats global"
    );
    let (status, seen) = tier("bob-key").await;
    assert_eq!(status, 200);
    assert_eq!(seen["headers"]["x-tier"], "basic");
    let (status, seen) = tier("blocked-key").await;
    assert_eq!(status, 403);
    assert_eq!(seen["message"], "account suspended");
}

#[test]
fn credential_errors_name_the_field() {
    let text = r#"_format_version: "3.0"
consumers:
- username: a
  keyauth_credentials: [{key: same}, {key: ""}]
  basicauth_credentials: [{username: u, password: p}]
- username: b
  keyauth_credentials: [{key: same}]
  basicauth_credentials: [{username: u, password: q}]
  acls: [{group: ""}]
keyauth_credentials:
- key: orphan
- key: x
  consumer: nobody
routes:
- paths: [/]
  plugins:
  - {name: key-auth, config: {anonymous: ghost, key_in_body: true}}
  - {name: acl, config: {allow: [a], deny: [b]}}
  - {name: basic-auth, config: {realm: "a\"b"}}
"#;
    let errors = match gatehouse::snapshot::load_str("kong.yml", text) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    for expected in [
        "consumers[1].keyauth_credentials[0].key: another key-auth credential has the same key",
        "consumers[0].keyauth_credentials[1].key: must not be empty",
        "consumers[1].basicauth_credentials[0].username: another basic-auth credential has the username `u`",
        "consumers[1].acls[0].group: must be non-empty",
        "keyauth_credentials[0]: a top-level entry of `keyauth_credentials` must name its `consumer`",
        "keyauth_credentials[1].consumer: no consumer named `nobody`",
        "routes[0].plugins[0].config.anonymous: no consumer with id or username `ghost`",
        "routes[0].plugins[0].config.key_in_body: keys in the request body are not supported",
        "routes[0].plugins[1].config: only one of these fields must be non-empty",
        "routes[0].plugins[2].config.realm: must be non-empty printable ASCII",
    ] {
        assert!(
            errors.contains(expected),
            "missing `{expected}` in:\n{errors}"
        );
    }
    assert!(
        !errors.contains("same\n"),
        "a key is never echoed: {errors}"
    );
}
