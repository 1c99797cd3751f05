//! Consumers and credentials end to end: key-auth, basic-auth, acl, `anonymous` ("either"
//! logic), consumer headers and consumer-scoped plugins, against an upstream that echoes what
//! it receives.

use base64::Engine;

use crate::harness::TestGateway;
use crate::support::Upstream;

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
    let r = gw.get("/api/users", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), "Key realm=\"gatehouse\"");
    assert_eq!(r.body["message"], "No API key found in request");
    let r = gw.get("/api/users", &[("X-API-Key", "nope")]).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body["message"], "Invalid authentication credentials");
    let r = gw
        .get(
            "/api/users",
            &[
                ("X-API-Key", "alice-key-2"),
                ("X-Consumer-Username", "mallory"),
                ("X-Anonymous-Consumer", "true"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-api-key-owner"), Some("alice"));
    assert_eq!(
        r.upstream_header("x-consumer-username"),
        Some("alice"),
        "a forged header is replaced"
    );
    assert_eq!(r.upstream_header("x-consumer-custom-id"), Some("A-1"));
    assert_eq!(r.upstream_header("x-consumer-id").map(str::len), Some(36));
    assert!(r.upstream_header("x-credential-identifier").is_some());
    assert_eq!(r.upstream_header("x-anonymous-consumer"), None);
    assert_eq!(
        r.upstream_header("x-api-key"),
        Some("alice-key-2"),
        "kept without hide_credentials"
    );

    // The query parameter form, with a consumer that has an id and a credential id.
    let r = gw.get("/api/users?page=2&api_key=bob-key", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.upstream_header("x-consumer-id"),
        Some("2b1f2b1f-0000-4000-8000-00000000b0b0")
    );
    assert_eq!(
        r.upstream_header("x-credential-identifier"),
        Some("bob-key-id")
    );
    assert_eq!(r.body["query"], "page=2&api_key=bob-key");
    assert_eq!(
        r.upstream_header("x-consumer-custom-id"),
        None,
        "cleared when the consumer has none"
    );

    // A top-level credential naming its consumer by custom_id; the owner falls back to it.
    let r = gw.get("/default", &[("apikey", "carol-key")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-api-key-owner"), Some("C-3"));
    assert_eq!(r.upstream_header("x-consumer-username"), None);

    // hide_credentials removes the header or the query parameter, nothing else.
    let r = gw.get("/hidden?a=1&api_key=alice-key-1&b=2", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["query"], "a=1&b=2");
    let r = gw.get("/hidden", &[("x-api-key", "alice-key-1")]).await;
    assert_eq!(r.upstream_header("x-api-key"), None);
    // ...and the name is removed everywhere, not only where the key was read.
    let r = gw
        .get(
            "/hidden?X-API-Key=alice-key-1&b=1",
            &[("x-api-key", "alice-key-1")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-api-key"), None);
    assert_eq!(r.body["query"], "b=1");

    // Two keys at once are refused rather than one picked.
    let r = gw
        .get("/api?api_key=alice-key-1&api_key=bob-key", &[])
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["message"], "Duplicate API key found");

    // key_in_query: false ignores the query.
    let r = gw.get("/header-only?apikey=alice-key-1", &[]).await;
    assert_eq!(r.status, 401);
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
    let r = gw.get("/b", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), "Basic realm=\"service\"");
    assert_eq!(r.body["message"], "Unauthorized");
    for (user, password) in [
        ("alice", "wonder"),
        ("alice", "wonder:lan"),
        ("bob", "wonder:land"),
    ] {
        let r = gw
            .get("/b", &[("authorization", &basic(user, password))])
            .await;
        assert_eq!(r.status, 401, "{user}:{password}");
        assert_eq!(r.body["message"], "Invalid authentication credentials");
    }
    let r = gw
        .get("/b", &[("authorization", &basic("alice", "wonder:land"))])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-consumer-username"), Some("alice"));
    assert!(r.upstream_header("authorization").is_some());

    // Proxy-Authorization is read first; hide_credentials removes the header that was used.
    let r = gw
        .get(
            "/hide",
            &[
                ("proxy-authorization", &basic("alice", "wonder:land")),
                ("authorization", "Bearer for-the-upstream"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("proxy-authorization"), None);
    assert_eq!(
        r.upstream_header("authorization"),
        Some("Bearer for-the-upstream")
    );
    // Credentials for another proxy in Proxy-Authorization do not hide valid ones.
    let r = gw
        .get(
            "/b",
            &[
                ("proxy-authorization", &basic("corp-proxy", "x")),
                ("authorization", &basic("alice", "wonder:land")),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    let r = gw.get("/hide", &[]).await;
    assert_eq!(r.header("www-authenticate"), "Basic realm=\"api\"");
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
    let r = gw.get("/either", &[("apikey", "alice-key")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-consumer-username"), Some("alice"));
    assert_eq!(
        r.upstream_header("x-consumer-groups"),
        Some("admins, staff")
    );
    let r = gw
        .get("/either", &[("authorization", &basic("bob", "pw"))])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-consumer-username"), Some("bob"));
    assert_eq!(r.upstream_header("x-anonymous-consumer"), None);
    // Neither: the anonymous consumer, which the acl refuses (it is in no group).
    let r = gw.get("/either", &[]).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body["message"], "You cannot consume this service");
    // A consumer outside the allowed group.
    let r = gw.get("/either", &[("apikey", "eve-key")]).await;
    assert_eq!(r.status, 403);

    // Anonymous passes where nothing else objects, and is marked as such.
    let r = gw.get("/open", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-consumer-username"), Some("anon"));
    assert_eq!(r.upstream_header("x-anonymous-consumer"), Some("true"));
    assert_eq!(r.upstream_header("x-credential-identifier"), None);

    // deny lists, and hide_groups_header removes even a forged header.
    let r = gw
        .get(
            "/not-eve",
            &[("apikey", "alice-key"), ("x-consumer-groups", "forged")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-consumer-groups"), None);

    // acl without any authentication: no consumer is a 401.
    let r = gw.get("/acl-alone", &[]).await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn consumer_scoped_plugins_apply_once_the_consumer_is_known() {
    let up = Upstream::start().await;
    let config = |tier: &str| {
        format!(
            r#"_format_version: "3.0"
consumers:
- username: alice
  keyauth_credentials: [{{key: alice-key}}]
  plugins:
  - name: request-transformer
    config: {{add: {{headers: ["x-tier: {tier}"]}}}}
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
        )
    };
    let gw = TestGateway::start(&config("gold"));
    let r = gw.get("/", &[("apikey", "alice-key")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.upstream_header("x-tier"),
        Some("gold"),
        "consumer scope beats global"
    );
    let r = gw.get("/", &[("apikey", "bob-key")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-tier"), Some("basic"));
    let r = gw.get("/", &[("apikey", "blocked-key")]).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body["message"], "account suspended");

    // The chain resolved for alice is remembered by the worker, per configuration: a new
    // configuration gets its own.
    let r = gw.get("/", &[("apikey", "alice-key")]).await;
    assert_eq!(r.upstream_header("x-tier"), Some("gold"));
    gw.swap(&config("platinum"));
    let r = gw.get("/", &[("apikey", "alice-key")]).await;
    assert_eq!(r.upstream_header("x-tier"), Some("platinum"));
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
  - {name: key-auth, config: {anonymous: ghost}}
  - {name: acl, config: {allow: [a], deny: [b]}}
  - {name: basic-auth, config: {realm: "a\"b"}}
"#;
    let errors = crate::harness::config_errors(
        text,
        &[
            "consumers[1].keyauth_credentials[0].key: another key-auth credential has the same key",
            "consumers[0].keyauth_credentials[1].key: must not be empty",
            "consumers[1].basicauth_credentials[0].username: another basic-auth credential has the username `u`",
            "consumers[1].acls[0].group: must be non-empty",
            "keyauth_credentials[0]: a top-level entry of `keyauth_credentials` must name its `consumer`",
            "keyauth_credentials[1].consumer: no consumer named `nobody`",
            "routes[0].plugins[0].config.anonymous: no consumer with id or username `ghost`",
            "routes[0].plugins[1].config: only one of these fields must be non-empty",
            "routes[0].plugins[2].config.realm: must be non-empty printable ASCII",
        ],
    );
    assert!(
        !errors.contains("same\n"),
        "a key is never echoed: {errors}"
    );
}

#[tokio::test]
async fn key_auth_reads_keys_from_form_and_json_bodies() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&format!(
        r#"_format_version: "3.0"
consumers:
- username: alice
  keyauth_credentials: [{{key: alice-key}}]
services:
- name: s
  url: http://{}
  routes:
  - paths: [/echo]
    strip_path: false
    plugins: [{{name: key-auth, config: {{key_in_body: true, hide_credentials: true}}}}]
"#,
        up.addr()
    ));
    let post = |content_type: &'static str, body: &'static str| {
        let url = gw.url("/echo");
        async move {
            let resp = crate::support::client()
                .post(url)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    // The upstream echoes the body it received: the key is gone, the rest is intact.
    let (status, echoed) = post(
        "application/x-www-form-urlencoded",
        "item=book&apikey=alice-key&qty=2",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(echoed, "item=book&qty=2");
    let (status, echoed) = post(
        "application/json",
        r#"{"apikey":"alice-key","item":"book"}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(echoed, r#"{"item":"book"}"#);
    let (status, _) = post("application/json", r#"{"apikey":"wrong"}"#).await;
    assert_eq!(status, 403);
    let (status, body) = post("application/json", r#"{"apikey": "#).await;
    assert_eq!(status, 400);
    assert!(body.contains("Cannot process request body"), "{body}");
    let (status, _) = post("text/plain", "apikey=alice-key").await;
    assert_eq!(status, 401, "only forms and JSON carry fields");
}

/// The compiled configuration (what an export will show) never holds a password as given, and
/// the stored form it holds instead is accepted back in a file.
#[tokio::test]
async fn basic_auth_passwords_are_kept_only_in_stored_form() {
    let file = |password: &str| {
        format!(
            "_format_version: \"3.0\"\nconsumers:\n- username: alice\n  basicauth_credentials:\n  - {{username: alice, password: '{password}'}}\nroutes:\n- paths: [/]\n  plugins: [{{name: basic-auth}}, {{name: request-termination, config: {{status_code: 200, message: in}}}}]\n"
        )
    };
    let snap = gatehouse::snapshot::load_str("kong.yml", &file("wonder:land")).unwrap();
    let stored = snap.doc.credentials.basicauth[0].item.password.clone();
    assert!(stored.starts_with("$sha256$"), "{stored}");
    assert!(!format!("{:?}", snap.doc).contains("wonder:land"));

    let gw = TestGateway::start(&file(&stored));
    let r = gw
        .get("/", &[("authorization", &basic("alice", "wonder:land"))])
        .await;
    assert_eq!(r.status, 200);
    let r = gw
        .get("/", &[("authorization", &basic("alice", &stored))])
        .await;
    assert_eq!(r.status, 401, "the stored form is not itself a password");
}

/// However a request is authenticated, or when an authentication plugin does not run, no
/// identity header a client sent reaches the upstream as if the gateway had set it.
#[tokio::test]
async fn forged_identity_headers_never_pass() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&format!(
        r#"_format_version: "3.0"
consumers:
- username: anon
- username: alice
  keyauth_credentials: [{{key: alice-key}}]
services:
- name: s
  url: http://{}
  routes:
  - paths: [/jwt-key]
    plugins:
    - {{name: jwt, config: {{secret: k, claims_to_headers: {{sub: X-User-ID}}, run_on_preflight: false}}}}
    - {{name: key-auth, config: {{anonymous: anon, run_on_preflight: false}}}}
"#,
        up.addr()
    ));
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = crate::jwt_signer::sign_hmac(
        "HS256",
        b"k",
        &serde_json::json!({"sub": "user-1", "exp": exp}),
    );
    let forged = [
        ("x-consumer-id", "forged-id"),
        ("x-consumer-username", "admin"),
        ("x-consumer-custom-id", "forged"),
        ("x-credential-identifier", "forged"),
        ("x-anonymous-consumer", "false"),
        ("x-api-key-owner", "root"),
        ("x-user-id", "root"),
    ];
    // A token verified by the plugin's own key: authenticated, no consumer; key-auth (with
    // anonymous) is then skipped rather than marking the request anonymous.
    let auth = format!("Bearer {token}");
    let mut headers = forged.to_vec();
    headers.push(("authorization", &auth));
    let r = gw.get("/jwt-key", &headers).await;
    assert_eq!(r.status, 200);
    for (name, _) in &forged[..6] {
        assert_eq!(r.upstream_header(name), None, "{name}");
    }
    assert_eq!(r.upstream_header("x-user-id"), Some("user-1"));

    // A preflight passes both plugins unauthenticated: still nothing forged gets through.
    let mut req = crate::support::client().request(reqwest::Method::OPTIONS, gw.url("/jwt-key"));
    for (name, value) in forged {
        req = req.header(name, value);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(seen["headers"].get("x-api-key-owner"), None);
    assert_eq!(seen["headers"].get("x-user-id"), None);
}

/// When the anonymous consumer (with plugins of its own) is replaced by a real consumer
/// (without), the rest of the chain is the route's again, not the anonymous consumer's.
#[tokio::test]
async fn a_real_consumer_replacing_the_anonymous_one_gets_its_own_chain() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&format!(
        r#"_format_version: "3.0"
consumers:
- username: anon
  plugins:
  - name: request-termination
    config: {{status_code: 401, message: "log in"}}
- username: alice
  basicauth_credentials: [{{username: alice, password: pw}}]
services:
- name: s
  url: http://{}
  routes:
  - paths: [/]
    plugins:
    - {{name: key-auth, config: {{anonymous: anon}}}}
    - {{name: basic-auth, config: {{anonymous: anon}}}}
"#,
        up.addr()
    ));
    let r = gw
        .get("/", &[("authorization", &basic("alice", "pw"))])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.upstream_header("x-consumer-username"), Some("alice"));
    let r = gw.get("/", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["message"], "log in");
}
