//! The Admin API's OpenAPI description held against the real API: a node in database mode
//! with one entity of every kind answers every described operation with a status the
//! description lists, and every JSON body matches the schema described for it.

use serde_json::{Value, json};

use crate::cli::Running;
use crate::database::admin_json;
use crate::support::{Upstream, client};
use crate::tls::Pki;

/// One entity of every kind, each with a natural key where the kind has one.
fn fixture(up: &Upstream, pki: &Pki) -> Value {
    let leaf = pki.leaf(&["example.test"]);
    json!({
        "_format_version": "3.0",
        "services": [{
            "name": "s1",
            "tags": ["team-a"],
            "url": format!("http://{}", up.addr()),
            "routes": [{ "name": "r1", "paths": ["/r1"] }],
        }],
        "upstreams": [{ "name": "u1", "targets": [{ "target": up.addr().to_string() }] }],
        "consumers": [{
            "username": "alice",
            "keyauth_credentials": [{ "key": "alice-key" }],
            "jwt_secrets": [{ "key": "alice-iss", "secret": "s3cr3t" }],
            "basicauth_credentials": [{ "username": "alice-b", "password": "pw" }],
            "hmacauth_credentials": [{ "username": "alice-h", "secret": "hs" }],
            "acls": [{ "group": "admins" }],
        }],
        "plugins": [{
            "name": "request-termination",
            "instance_name": "every",
            "service": "s1",
            "route": "r1",
            "consumer": "alice",
            "config": { "status_code": 418 },
        }],
        "certificates": [{ "cert": leaf.cert, "key": leaf.key, "snis": ["example.test"] }],
        "ca_certificates": [{ "cert": pki.ca_pem() }],
    })
}

/// The value for each path parameter: a natural key, or an id read from the node.
async fn parameters(node: &Running) -> Vec<(&'static str, String)> {
    let first_id = |path: &'static str| async move {
        let body = admin_json(node, path).await;
        body["data"][0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no entity at {path}: {body}"))
            .to_string()
    };
    vec![
        ("service", "s1".into()),
        ("route", "r1".into()),
        ("upstream", "u1".into()),
        ("target", first_id("/targets").await),
        ("consumer", "alice".into()),
        ("plugin", "every".into()),
        ("certificate", first_id("/certificates").await),
        ("sni", "example.test".into()),
        ("ca_certificate", first_id("/ca_certificates").await),
        ("key_auth", "alice-key".into()),
        ("jwt", "alice-iss".into()),
        ("basic_auth", "alice-b".into()),
        ("hmac_auth", "alice-h".into()),
        ("acl", "admins".into()),
        ("name", "key-auth".into()),
        ("tag", "team-a".into()),
        ("address", node_target(node).await),
    ]
}

/// The address of the fixture's one upstream target (the upstream itself).
async fn node_target(node: &Running) -> String {
    let body = admin_json(node, "/upstreams/u1/health").await;
    body["data"][0]["target"]
        .as_str()
        .unwrap_or_else(|| panic!("no target: {body}"))
        .to_string()
}

/// A response object, with a `$ref` into `components.responses` followed.
fn resolve<'a>(doc: &'a Value, response: &'a Value) -> &'a Value {
    match response.get("$ref").and_then(Value::as_str) {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("{r} does not resolve")),
        None => response,
    }
}

#[test]
fn every_described_operation_answers_as_described() {
    let (rt, up, _dir, url) = crate::database::sqlite_setup();
    let node = Running::start_database(&url, &[]);
    let pki = Pki::new();
    rt.block_on(async {
        let http = client();
        let admin = format!("http://{}", node.admin);
        let loaded = http
            .post(format!("{admin}/config"))
            .json(&fixture(&up, &pki))
            .send()
            .await
            .expect("POST /config");
        assert_eq!(
            loaded.status(),
            201,
            "{}",
            loaded.text().await.unwrap_or_default()
        );
        let doc: Value = http
            .get(format!("{admin}/openapi.json"))
            .send()
            .await
            .expect("GET /openapi.json")
            .json()
            .await
            .expect("JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let components = doc["components"].clone();
        let params = parameters(&node).await;

        // Reads first (every entity exists: each must be found), then writes, then deletes.
        let mut operations = Vec::new();
        for (template, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                if method != "parameters" {
                    operations.push((template.clone(), method.to_ascii_uppercase(), op.clone()));
                }
            }
        }
        let rank = |m: &str| match m {
            "GET" => 0,
            "DELETE" => 2,
            _ => 1,
        };
        operations.sort_by_key(|(t, m, _)| (rank(m), std::cmp::Reverse(t.len())));
        assert!(operations.len() > 150, "{} operations", operations.len());

        let mut checked_bodies = 0;
        let mut tally = std::collections::BTreeMap::<(String, u16), usize>::new();
        for (template, method, op) in &operations {
            let mut path = template.clone();
            for (name, value) in &params {
                path = path.replace(&format!("{{{name}}}"), value);
            }
            assert!(
                !path.contains('{'),
                "no value for a parameter of {template}"
            );
            let mut request = http.request(
                reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
                format!("{admin}{path}"),
            );
            if method != "GET" && method != "DELETE" {
                request = request.json(&json!({}));
            }
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            let text = response.text().await.expect("body");
            *tally.entry((method.clone(), status)).or_default() += 1;
            if std::env::var("OPENAPI_TRACE").is_ok() {
                eprintln!(
                    "{method} {path} -> {status} {}",
                    &text[..text.len().min(300)]
                );
            }
            let described = &op["responses"][status.to_string()];
            assert!(
                described.is_object(),
                "{method} {path} ({template}) answered {status}, which is not described: {text}"
            );
            if method == "GET" || method == "PATCH" {
                // Every entity exists, and an empty patch leaves a valid entity valid.
                assert_eq!(status, 200, "{method} {path}: {text}");
            }
            let schema = &resolve(&doc, described)["content"]["application/json"]["schema"];
            if schema.is_null() {
                continue;
            }
            let body: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
            let root = json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "components": components,
                "allOf": [schema],
            });
            let validator = jsonschema::validator_for(&root).expect("a valid schema");
            if let Err(e) = validator.validate(&body) {
                panic!(
                    "{method} {path} ({status}): the body does not match its schema: {e}\n{text}"
                );
            }
            checked_bodies += 1;
        }
        assert!(checked_bodies > 150, "{checked_bodies} bodies checked");
        eprintln!("answers by method and status: {tally:?}");
        // The walk did real work: writes were taken as well as refused.
        for (method, status) in [("POST", 201), ("PATCH", 200), ("PUT", 200), ("DELETE", 204)] {
            assert!(
                tally.contains_key(&(method.to_string(), status)),
                "no {method} answered {status}: {tally:?}"
            );
        }
    });
}
