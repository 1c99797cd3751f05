//! What `scripts/admin-fuzz.sh` (schemathesis on /openapi.json) found in the Admin API, each
//! held against a real node in database mode: a 405 names the allowed methods, a reference is
//! never read from a JSON array, `"id": null` is no id, a body of blanks is not JSON, the
//! upstream health list refuses a bad offset as every list does, and the description says
//! which bodies may be left out and which fields a path fills in.

use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::Running;
use crate::database::runtime;
use crate::support::client;

/// `(status, Allow header, JSON body)` of one request.
async fn call(
    node: &Running,
    method: Method,
    path: &str,
    json_body: Option<&str>,
) -> (u16, Option<String>, Value) {
    let mut req = client().request(method, format!("http://{}{path}", node.admin));
    if let Some(body) = json_body {
        req = req
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let allow = resp
        .headers()
        .get("allow")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let bytes = resp.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {bytes:?}"))
    };
    (status, allow, body)
}

#[test]
fn what_the_fuzzer_found() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("g.db").display());
    let node = Running::start_database(&url, &[]);
    rt.block_on(async {
        let (status, _, body) = call(
            &node,
            Method::POST,
            "/config",
            Some(
                &json!({
                    "_format_version": "3.0",
                    "upstreams": [{ "name": "u1" }],
                    "consumers": [{ "username": "bob" }, { "username": "carol" }],
                })
                .to_string(),
            ),
        )
        .await;
        assert_eq!(status, 201, "seed: {body}");

        // RFC 9110: a 405 lists what the path answers (HEAD with GET).
        let (status, allow, body) = call(
            &node,
            Method::from_bytes(b"TRACE").expect("method"),
            "/consumers",
            None,
        )
        .await;
        assert_eq!(status, 405, "{body}");
        assert_eq!(allow.as_deref(), Some("GET, POST, HEAD"));
        assert_eq!(body["message"], "Method not allowed");
        let (status, allow, _) = call(&node, Method::POST, "/consumers/bob", None).await;
        assert_eq!(status, 405);
        assert_eq!(allow.as_deref(), Some("GET, PUT, PATCH, DELETE, HEAD"));

        // A reference is a name, an id or an object: `["bob"]` was read as `{"id": "bob"}`
        // and the credential given to bob.
        for bad in [json!(["bob"]), json!([null, null]), json!({"username": {}})] {
            let body = json!({ "consumer": bad, "key": "k-array" }).to_string();
            let (status, _, answer) = call(&node, Method::POST, "/key-auths", Some(&body)).await;
            assert_eq!(status, 400, "consumer {bad}: {answer}");
            assert_eq!(answer["name"], "schema violation", "{answer}");
        }
        let (_, _, keys) = call(&node, Method::GET, "/key-auths", None).await;
        assert_eq!(keys["data"], json!([]), "a refused credential was stored");

        // `"id": null` is no id: POST generates one, PUT takes the URL's.
        let (status, _, created) = call(
            &node,
            Method::POST,
            "/consumers",
            Some(r#"{"username": "dave", "id": null}"#),
        )
        .await;
        assert_eq!(status, 201, "{created}");
        assert!(
            created["id"].as_str().is_some_and(|id| id.len() == 36),
            "{created}"
        );
        let (status, _, replaced) = call(
            &node,
            Method::PUT,
            "/consumers/erin",
            Some(r#"{"id": null}"#),
        )
        .await;
        assert_eq!(status, 200, "{replaced}");
        assert_eq!(replaced["username"], "erin");

        // No body is `{}`; blanks sent as JSON are not JSON.
        let (status, _, patched) = call(&node, Method::PATCH, "/consumers/bob", None).await;
        assert_eq!(status, 200, "{patched}");
        assert_eq!(patched["username"], "bob");
        let (status, _, refused) = call(&node, Method::PATCH, "/consumers/bob", Some("\n")).await;
        assert_eq!(status, 400, "{refused}");

        // The health list refuses a bad offset with the body every list has (code 9).
        let (status, _, refused) = call(
            &node,
            Method::GET,
            "/upstreams/u1/health?offset=zz%C3%AF",
            None,
        )
        .await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(
            refused,
            json!({"code": 9, "name": "invalid offset", "message": "invalid offset"})
        );

        // The description says what the API does with bodies.
        let (_, _, doc) = call(&node, Method::GET, "/openapi.json", None).await;
        let body = |path: &str, method: &str| doc["paths"][path][method]["requestBody"].clone();
        // A PATCH or a PUT by natural key may have no body (PUT /consumers/erin above).
        assert_eq!(body("/consumers/{consumer}", "patch")["required"], false);
        assert_eq!(body("/consumers/{consumer}", "put")["required"], false);
        // A top-level credential names its consumer; below the consumer's path, the path does
        // and the body's `consumer` is not read.
        let top = &body("/key-auths", "post")["content"]["application/json"]["schema"];
        assert_eq!(top["allOf"][1]["required"], json!(["consumer"]), "{top}");
        let nested = &body("/consumers/{consumer}/key-auth", "post")["content"]["application/json"]
            ["schema"];
        assert_eq!(
            nested["properties"]["consumer"],
            json!({"description": "Ignored: the path names it."}),
            "{nested}"
        );
        // The generated key may be left out; a plugin is one this build knows.
        let schemas = &doc["components"]["schemas"];
        let required = &schemas["keyauth_credentials-input"]["required"];
        assert!(
            !required
                .as_array()
                .is_some_and(|r| r.contains(&json!("key"))),
            "{required}"
        );
        assert!(
            schemas["plugins-input"]["properties"]["name"]["enum"]
                .as_array()
                .is_some_and(|names| names.contains(&json!("key-auth"))),
            "{}",
            schemas["plugins-input"]
        );
    });
}
