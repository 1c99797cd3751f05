//! The Admin API's CRUD matrix, table-driven over every entity kind it serves: created (JSON at
//! the top level, form-encoded with Kong's keys under the parent), read by id and by natural
//! key, listed page by page and by tags, patched, replaced and created with `PUT`, deleted,
//! refused when invalid (`400` schema violation naming the field) or taken (`409`); then the
//! proxy is shown to follow the writes. The same matrix runs on SQLite and on PostgreSQL, one
//! gateway process each.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::cli::Running;
use crate::database::runtime;
use crate::support::{Upstream, client};
use crate::test_db::PgDatabase;
use crate::tls::{Leaf, Pki, connect, default_client};

#[test]
fn every_entity_kind_on_sqlite() {
    let rt = runtime();
    let up = rt.block_on(Upstream::start());
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("g.db").display());
    let node = Running::start_database(&url, &[]);
    rt.block_on(matrix(&node, &up));
}

#[test]
fn every_entity_kind_on_postgresql() {
    let rt = runtime();
    let up = rt.block_on(Upstream::start());
    let db = rt.block_on(PgDatabase::create());
    let node = Running::start_database(&db.url, &[]);
    rt.block_on(matrix(&node, &up));
}

/// The parents every kind hangs from, created once.
struct Ctx {
    /// The echo upstream's `host:port`.
    upstream: String,
    service: String,
    route: String,
    up: String,
    consumer: String,
    certificate: String,
    other_certificate: String,
    pki: Pki,
    /// PEM pairs for the `certificates` kind, by index.
    leaves: Vec<Leaf>,
}

/// A kind's nested collection: its path under a parent (`other` = a second parent that owns
/// none of the children), and the reference field the children carry.
struct Nested {
    path: fn(&Ctx, bool) -> String,
    field: &'static str,
}

/// One row of the matrix.
struct Spec {
    endpoint: &'static str,
    /// The natural key a URL may use besides the id.
    key: Option<&'static str>,
    nested: Option<Nested>,
    /// Entity `i` as a JSON body for the top-level collection (references included).
    body: fn(&Ctx, usize) -> Value,
    /// Entity `i` as a form body for the nested collection (the parent implied by the URL).
    form: fn(&Ctx, usize) -> String,
    /// Defaults the gateway fills in (`field`, JSON value).
    defaults: &'static [(&'static str, &'static str)],
    /// A `PATCH` body (JSON) changing one field.
    patch: &'static str,
    /// Invalid bodies and the field each must be refused for.
    bad: fn(&Ctx) -> Vec<(Value, &'static str)>,
    /// Whether a second entity with entity 0's natural key (or scope) is a conflict.
    conflict: bool,
    /// Fields Kong generates when they are not given (`auto = true` in its schemas).
    auto: &'static [&'static str],
}

fn no_form(_: &Ctx, _: usize) -> String {
    String::new()
}

/// The plugins the `plugins` row creates: no two on one scope, none needing configuration
/// but `acl`.
fn plugin(i: usize) -> Value {
    let name = [
        "correlation-id",
        "request-termination",
        "key-auth",
        "basic-auth",
        "hmac-auth",
        "acl",
        "acl",
        "jwt",
        "ip-restriction",
    ][i];
    let config = match name {
        "acl" => json!({"allow": ["nobody"]}),
        "ip-restriction" => json!({"allow": ["10.0.0.0/8"]}),
        _ => json!({}),
    };
    json!({"name": name, "enabled": false, "config": config})
}

fn specs() -> Vec<Spec> {
    vec![
        Spec {
            endpoint: "services",
            key: Some("name"),
            nested: None,
            body: |c, i| json!({"name": format!("svc-{i}"), "url": format!("http://{}", c.upstream)}),
            form: no_form,
            defaults: &[
                ("retries", "5"),
                ("connect_timeout", "60000"),
                ("read_timeout", "60000"),
                ("write_timeout", "60000"),
                ("protocol", "\"http\""),
                ("path", "null"),
                ("enabled", "true"),
            ],
            patch: r#"{"retries": 2}"#,
            bad: |_| {
                vec![
                    (
                        json!({"name": "svc-bad", "host": "h", "retries": "abc"}),
                        "retries",
                    ),
                    (json!({"name": "svc-bad", "host": "h", "bogus": 1}), "bogus"),
                    (json!({"name": "svc-bad"}), "host"),
                    (json!({"name": "svc-bad", "url": "ftp://x"}), "url"),
                ]
            },
            conflict: true,
            auto: &[],
        },
        Spec {
            endpoint: "routes",
            key: Some("name"),
            nested: Some(Nested {
                path: |_, other| {
                    format!(
                        "/services/{}/routes",
                        if other { "crud-other" } else { "crud-parent" }
                    )
                },
                field: "service",
            }),
            body: |c, i| {
                json!({"name": format!("route-{i}"), "paths": [format!("/crud-route-{i}")],
                       "service": {"id": c.service}})
            },
            form: |_, i| format!("name=route-{i}&paths[]=/crud-route-{i}"),
            defaults: &[
                ("protocols", r#"["http","https"]"#),
                ("strip_path", "true"),
                ("preserve_host", "false"),
                ("regex_priority", "0"),
                ("https_redirect_status_code", "426"),
                ("path_handling", "\"v0\""),
                ("methods", "null"),
                ("hosts", "null"),
            ],
            patch: r#"{"strip_path": false}"#,
            bad: |c| {
                let s = json!({"id": c.service});
                vec![
                    (
                        json!({"name": "r-bad", "paths": "/x", "service": s}),
                        "paths",
                    ),
                    (
                        json!({"name": "r-bad", "paths": ["/x"], "strip_path": "x", "service": s}),
                        "strip_path",
                    ),
                    (
                        json!({"name": "r-bad", "paths": ["/x"], "bogus": 1, "service": s}),
                        "bogus",
                    ),
                    (
                        json!({"name": "r-bad", "paths": ["no-slash"], "service": s}),
                        "paths[0]",
                    ),
                ]
            },
            conflict: true,
            auto: &[],
        },
        Spec {
            endpoint: "upstreams",
            key: Some("name"),
            nested: None,
            body: |_, i| json!({"name": format!("up-{i}")}),
            form: no_form,
            defaults: &[
                ("slots", "10000"),
                ("hash_on", "\"none\""),
                ("hash_fallback", "\"none\""),
                ("hash_on_cookie_path", "\"/\""),
            ],
            patch: r#"{"slots": 100}"#,
            bad: |_| {
                vec![
                    (json!({"name": "up-bad", "slots": "abc"}), "slots"),
                    (json!({"name": "up-bad", "bogus": 1}), "bogus"),
                    (json!({}), "name"),
                ]
            },
            conflict: true,
            auto: &[],
        },
        Spec {
            endpoint: "targets",
            key: Some("target"),
            nested: Some(Nested {
                path: |_, other| {
                    format!(
                        "/upstreams/{}/targets",
                        if other { "crud-other" } else { "crud-parent" }
                    )
                },
                field: "upstream",
            }),
            body: |c, i| json!({"target": format!("10.0.0.{}:80", i + 1), "upstream": {"id": c.up}}),
            form: |_, i| format!("target=10.0.0.{}:80", i + 1),
            defaults: &[("weight", "100")],
            patch: r#"{"weight": 5}"#,
            bad: |c| {
                let u = json!({"id": c.up});
                vec![
                    (
                        json!({"target": "10.0.0.99:80", "weight": "x", "upstream": u}),
                        "weight",
                    ),
                    (
                        json!({"target": "10.0.0.99:80", "bogus": 1, "upstream": u}),
                        "bogus",
                    ),
                    (json!({"upstream": u}), "target"),
                ]
            },
            conflict: true,
            auto: &[],
        },
        Spec {
            endpoint: "consumers",
            key: Some("username"),
            nested: None,
            body: |_, i| json!({"username": format!("user-{i}")}),
            form: no_form,
            defaults: &[("custom_id", "null")],
            patch: r#"{"custom_id": "patched"}"#,
            bad: |_| {
                vec![
                    (json!({"username": 5}), "username"),
                    (json!({"username": "u-bad", "bogus": 1}), "bogus"),
                    // Kong's entity check: at least one of username and custom_id.
                    (json!({}), "@entity"),
                ]
            },
            conflict: true,
            auto: &[],
        },
        Spec {
            endpoint: "plugins",
            key: None,
            nested: Some(Nested {
                path: |_, other| {
                    format!(
                        "/services/{}/plugins",
                        if other { "crud-other" } else { "crud-parent" }
                    )
                },
                field: "service",
            }),
            body: |_, i| plugin(i),
            form: |_, i| {
                let p = plugin(i);
                let mut form = format!("name={}&enabled=false", p["name"].as_str().unwrap_or(""));
                for allowed in p["config"]["allow"].as_array().into_iter().flatten() {
                    form.push_str(&format!(
                        "&config.allow[]={}",
                        allowed.as_str().unwrap_or("")
                    ));
                }
                form
            },
            defaults: &[
                ("protocols", r#"["grpc","grpcs","http","https"]"#),
                ("route", "null"),
                ("consumer", "null"),
            ],
            patch: r#"{"protocols": ["http", "https"]}"#,
            bad: |c| {
                let r = json!({"id": c.route});
                vec![
                    (
                        json!({"name": "correlation-id", "route": r, "config": {"bogus": 1}}),
                        "config.bogus",
                    ),
                    (
                        json!({"name": "correlation-id", "route": r, "enabled": "x"}),
                        "enabled",
                    ),
                    (json!({"route": r}), "name"),
                    (json!({"name": "no-such-plugin", "route": r}), "name"),
                ]
            },
            // The same plugin twice on one scope.
            conflict: true,
            auto: &[],
        },
        Spec {
            endpoint: "certificates",
            key: None,
            nested: None,
            body: |c, i| json!({"cert": c.leaves[i].cert, "key": c.leaves[i].key}),
            form: no_form,
            defaults: &[("cert_alt", "null"), ("key_alt", "null")],
            patch: r#"{"tags": ["patched"]}"#,
            bad: |c| {
                let leaf = &c.leaves[0];
                vec![
                    (json!({"cert": "abc", "key": leaf.key}), "cert"),
                    (
                        json!({"cert": leaf.cert, "key": leaf.key, "bogus": 1}),
                        "bogus",
                    ),
                    (json!({"key": leaf.key}), "cert"),
                ]
            },
            // Nothing unique but the id.
            conflict: false,
            auto: &[],
        },
        Spec {
            endpoint: "snis",
            key: Some("name"),
            nested: Some(Nested {
                path: |c, other| {
                    let cert = if other {
                        &c.other_certificate
                    } else {
                        &c.certificate
                    };
                    format!("/certificates/{cert}/snis")
                },
                field: "certificate",
            }),
            body: |c, i| json!({"name": format!("sni-{i}.crud.test"), "certificate": {"id": c.certificate}}),
            form: |_, i| format!("name=sni-{i}.crud.test"),
            defaults: &[],
            patch: r#"{"tags": ["patched"]}"#,
            bad: |c| {
                let cert = json!({"id": c.certificate});
                vec![
                    (json!({"name": 5, "certificate": cert}), "name"),
                    (
                        json!({"name": "bad.crud.test", "bogus": 1, "certificate": cert}),
                        "bogus",
                    ),
                    (json!({"certificate": cert}), "name"),
                ]
            },
            conflict: true,
            auto: &[],
        },
        Spec {
            endpoint: "key-auths",
            key: Some("key"),
            nested: Some(Nested {
                path: |_, other| {
                    format!(
                        "/consumers/{}/key-auth",
                        if other { "crud-other" } else { "crud-owner" }
                    )
                },
                field: "consumer",
            }),
            body: |c, i| json!({"key": format!("key-{i}"), "consumer": {"id": c.consumer}}),
            form: |_, i| format!("key=key-{i}"),
            defaults: &[],
            patch: r#"{"tags": ["patched"]}"#,
            bad: |c| {
                let o = json!({"id": c.consumer});
                vec![
                    (json!({"key": 5, "consumer": o}), "key"),
                    (json!({"key": "k-bad", "bogus": 1, "consumer": o}), "bogus"),
                ]
            },
            conflict: true,
            auto: &["key"],
        },
        Spec {
            endpoint: "jwts",
            key: Some("key"),
            nested: Some(Nested {
                path: |_, other| {
                    format!(
                        "/consumers/{}/jwt",
                        if other { "crud-other" } else { "crud-owner" }
                    )
                },
                field: "consumer",
            }),
            body: |c, i| {
                json!({"key": format!("jwt-{i}"), "secret": format!("secret-{i}"),
                       "consumer": {"id": c.consumer}})
            },
            form: |_, i| format!("key=jwt-{i}&secret=secret-{i}"),
            defaults: &[("algorithm", "\"HS256\""), ("rsa_public_key", "null")],
            patch: r#"{"secret": "changed"}"#,
            bad: |c| {
                let o = json!({"id": c.consumer});
                vec![
                    (
                        json!({"key": "j-bad", "algorithm": "XX", "consumer": o}),
                        "algorithm",
                    ),
                    (json!({"key": "j-bad", "bogus": 1, "consumer": o}), "bogus"),
                    (
                        json!({"key": "j-bad", "algorithm": "RS256", "consumer": o}),
                        "rsa_public_key",
                    ),
                ]
            },
            conflict: true,
            auto: &["key", "secret"],
        },
        Spec {
            endpoint: "basic-auths",
            key: Some("username"),
            nested: Some(Nested {
                path: |_, other| {
                    format!(
                        "/consumers/{}/basic-auth",
                        if other { "crud-other" } else { "crud-owner" }
                    )
                },
                field: "consumer",
            }),
            body: |c, i| {
                json!({"username": format!("basic-{i}"), "password": format!("pw-{i}"),
                       "consumer": {"id": c.consumer}})
            },
            form: |_, i| format!("username=basic-{i}&password=pw-{i}"),
            defaults: &[],
            patch: r#"{"tags": ["patched"]}"#,
            bad: |c| {
                let o = json!({"id": c.consumer});
                vec![
                    (json!({"username": "b-bad", "consumer": o}), "password"),
                    (
                        json!({"username": "b-bad", "password": "x", "bogus": 1, "consumer": o}),
                        "bogus",
                    ),
                    (
                        json!({"username": 5, "password": "x", "consumer": o}),
                        "username",
                    ),
                ]
            },
            conflict: true,
            auto: &[],
        },
        Spec {
            endpoint: "hmac-auths",
            key: Some("username"),
            nested: Some(Nested {
                path: |_, other| {
                    format!(
                        "/consumers/{}/hmac-auth",
                        if other { "crud-other" } else { "crud-owner" }
                    )
                },
                field: "consumer",
            }),
            body: |c, i| {
                json!({"username": format!("hmac-{i}"), "secret": format!("hs-{i}"),
                       "consumer": {"id": c.consumer}})
            },
            form: |_, i| format!("username=hmac-{i}&secret=hs-{i}"),
            defaults: &[],
            patch: r#"{"secret": "changed"}"#,
            bad: |c| {
                let o = json!({"id": c.consumer});
                vec![
                    (json!({"secret": "x", "consumer": o}), "username"),
                    (
                        json!({"username": "h-bad", "bogus": 1, "consumer": o}),
                        "bogus",
                    ),
                    (json!({"username": 5, "consumer": o}), "username"),
                ]
            },
            conflict: true,
            auto: &["secret"],
        },
        Spec {
            endpoint: "acls",
            key: Some("group"),
            nested: Some(Nested {
                path: |_, other| {
                    format!(
                        "/consumers/{}/acls",
                        if other { "crud-other" } else { "crud-owner" }
                    )
                },
                field: "consumer",
            }),
            body: |c, i| json!({"group": format!("group-{i}"), "consumer": {"id": c.consumer}}),
            form: |_, i| format!("group=group-{i}"),
            defaults: &[],
            patch: r#"{"tags": ["patched"]}"#,
            bad: |c| {
                let o = json!({"id": c.consumer});
                vec![
                    (json!({"group": 5, "consumer": o}), "group"),
                    (
                        json!({"group": "g-bad", "bogus": 1, "consumer": o}),
                        "bogus",
                    ),
                    (json!({"consumer": o}), "group"),
                ]
            },
            // One consumer in one group once.
            conflict: true,
            auto: &[],
        },
    ]
}

/// The tags of entity `i`: `tags=a` finds 0, 1 and 4; `tags=a,b` 0 and 4; `tags=a/b` all
/// but 3.
fn tags(i: usize) -> &'static [&'static str] {
    match i {
        0 | 4 => &["a", "b"],
        1 => &["a"],
        2 => &["b"],
        _ => &[],
    }
}

const MISSING: &str = "00000000-0000-4000-8000-00000000dead";

async fn matrix(node: &Running, up: &Upstream) {
    let started = std::time::Instant::now();
    let ctx = parents(node, up).await;
    let mut timings = Vec::new();
    for spec in specs() {
        let at = std::time::Instant::now();
        exercise(node, &ctx, &spec).await;
        timings.push((spec.endpoint, at.elapsed()));
    }
    proxy_follows(node, &ctx, up).await;
    eprintln!(
        "admin CRUD matrix: {:?} in all; per kind: {timings:?}",
        started.elapsed()
    );
}

/// The parents, created once: a service, an upstream, a consumer and a certificate (and a
/// second of each that owns no children), and a route for scoping plugins.
async fn parents(node: &Running, up: &Upstream) -> Ctx {
    let url = format!("http://{}", up.addr());
    let mut ids = Vec::new();
    for (path, body) in [
        ("/services", json!({"name": "crud-parent", "url": url})),
        ("/services", json!({"name": "crud-other", "url": url})),
        (
            "/services/crud-other/routes",
            json!({"name": "crud-route", "paths": ["/crud-parent"]}),
        ),
        ("/upstreams", json!({"name": "crud-parent"})),
        ("/upstreams", json!({"name": "crud-other"})),
        ("/consumers", json!({"username": "crud-owner"})),
        ("/consumers", json!({"username": "crud-other"})),
    ] {
        let (status, e) = call(node, "POST", path, Body::Json(&body)).await;
        assert_eq!(status, 201, "POST {path}: {e}");
        ids.push(id(&e));
    }
    let pki = Pki::new();
    // The first certificate is the default one: its name is none of the SNIs', so that an
    // SNI that reaches the wrong certificate (or none) fails the handshake.
    let other = pki.leaf(&["other.crud.test"]);
    let sni_names: Vec<String> = (0..10).map(|i| format!("sni-{i}.crud.test")).collect();
    let names: Vec<&str> = sni_names.iter().map(String::as_str).collect();
    let parent = pki.leaf(&names);
    let mut certs = Vec::new();
    for leaf in [&other, &parent] {
        let body = json!({"cert": leaf.cert, "key": leaf.key});
        let (status, e) = call(node, "POST", "/certificates", Body::Json(&body)).await;
        assert_eq!(status, 201, "POST /certificates: {e}");
        certs.push(id(&e));
    }
    let leaves = (0..10)
        .map(|i| pki.leaf(&[&format!("cert-{i}.crud.test")]))
        .collect();
    Ctx {
        upstream: up.addr().to_string(),
        service: ids[0].clone(),
        route: ids[2].clone(),
        up: ids[3].clone(),
        consumer: ids[5].clone(),
        other_certificate: certs[0].clone(),
        certificate: certs[1].clone(),
        pki,
        leaves,
    }
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_string()
}

/// Every check of the matrix for one kind.
async fn exercise(node: &Running, ctx: &Ctx, spec: &Spec) {
    let kind = spec.endpoint;
    let top = format!("/{kind}");
    let nested = spec.nested.as_ref().map(|n| ((n.path)(ctx, false), n));

    // Create: even entities as JSON at the top level, odd ones form-encoded under the parent.
    let mut created: Vec<Value> = Vec::new();
    for i in 0..5 {
        let (status, e) = match &nested {
            Some((path, _)) if i % 2 == 1 => {
                let mut form = (spec.form)(ctx, i);
                for t in tags(i) {
                    form.push_str(&format!("&tags[]={t}"));
                }
                call(node, "POST", path, Body::Form(&form)).await
            }
            _ => {
                let mut body = (spec.body)(ctx, i);
                body["tags"] = json!(tags(i));
                call(node, "POST", &top, Body::Json(&body)).await
            }
        };
        assert_eq!(status, 201, "{kind} #{i}: {e}");
        assert!(e["id"].is_string(), "{kind} #{i} has an id: {e}");
        assert!(e["created_at"].is_number(), "{kind} #{i}: {e}");
        for (field, value) in spec.defaults {
            let value: Value = serde_json::from_str(value).expect("default as JSON");
            assert_eq!(e[*field], value, "{kind} #{i}: default of {field}: {e}");
        }
        let expected_tags = if tags(i).is_empty() {
            Value::Null
        } else {
            json!(tags(i))
        };
        assert_eq!(e["tags"], expected_tags, "{kind} #{i}");
        if let Some(key) = spec.key {
            assert_eq!(e[key], (spec.body)(ctx, i)[key], "{kind} #{i}: {key}");
        }
        if let Some((path, n)) = &nested
            && !(kind == "plugins" && i % 2 == 0)
        {
            let parent = (spec.body)(ctx, i)[n.field]["id"].clone();
            let parent = if parent.is_null() {
                // A plugin created under a service names the service.
                json!(ctx.service)
            } else {
                parent
            };
            assert_eq!(e[n.field]["id"], parent, "{kind} #{i} under {path}: {e}");
        }
        created.push(e);
    }
    let ids: Vec<String> = created
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_string())
        .collect();

    // Read: by id, by natural key, under the parent; a missing one is Kong's 404.
    for (i, e) in created.iter().enumerate() {
        let (status, got) = call(node, "GET", &format!("{top}/{}", ids[i]), Body::Empty).await;
        assert_eq!((status, &got), (200, e), "{kind} #{i} by id");
        if let Some(key) = spec.key {
            let value = e[key].as_str().expect("natural key");
            let (status, got) = call(node, "GET", &format!("{top}/{value}"), Body::Empty).await;
            assert_eq!((status, &got["id"]), (200, &e["id"]), "{kind} by {key}");
        }
    }
    if let Some((path, n)) = &nested {
        let owned: Vec<usize> = (0..5)
            .filter(|&i| created[i][n.field]["id"].is_string())
            .collect();
        for &i in &owned {
            let by = spec.key.map_or(ids[i].clone(), |k| {
                created[i][k].as_str().unwrap_or("").into()
            });
            let (status, got) = call(node, "GET", &format!("{path}/{by}"), Body::Empty).await;
            assert_eq!(
                (status, &got["id"]),
                (200, &created[i]["id"]),
                "{path}/{by}"
            );
            let other = (n.path)(ctx, true);
            let (status, _) = call(node, "GET", &format!("{other}/{by}"), Body::Empty).await;
            assert_eq!(status, 404, "{other}/{by}: not that parent's");
        }
        // The nested list: exactly the parent's children, paged with a `next` under the parent.
        let seen = pages(node, &format!("{path}?size=2"), kind).await;
        let expected: BTreeSet<String> = owned.iter().map(|&i| ids[i].clone()).collect();
        assert_eq!(
            seen.into_iter().collect::<BTreeSet<_>>(),
            expected,
            "{path}"
        );
    }
    for missing in [Some(MISSING), spec.key.map(|_| "no-such-entity")]
        .into_iter()
        .flatten()
    {
        let (status, body) = call(node, "GET", &format!("{top}/{missing}"), Body::Empty).await;
        assert_eq!(
            (status, body),
            (404, json!({"message": "Not found"})),
            "{top}/{missing}"
        );
    }

    // List: pages of 2 until `next` is null, every entity once; tags; a bad size.
    let seen = pages(node, &format!("{top}?size=2"), kind).await;
    let (_, all) = call(node, "GET", &format!("{top}?size=1000"), Body::Empty).await;
    let all_ids: Vec<&str> = all["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(
        seen, all_ids,
        "{kind}: the pages are the whole list, in order"
    );
    for id in &ids {
        assert_eq!(
            seen.iter().filter(|s| *s == id).count(),
            1,
            "{kind}: {id} once"
        );
    }
    for (query, members) in [
        ("a", vec![0, 1, 4]),
        ("a,b", vec![0, 4]),
        ("a/b", vec![0, 1, 2, 4]),
    ] {
        let (status, page) = call(node, "GET", &format!("{top}?tags={query}"), Body::Empty).await;
        assert_eq!(status, 200, "{kind}?tags={query}: {page}");
        let got: BTreeSet<&str> = page["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter_map(|e| e["id"].as_str())
            .collect();
        let want: BTreeSet<&str> = members.iter().map(|&i| ids[i].as_str()).collect();
        assert_eq!(got, want, "{kind}?tags={query}");
    }
    let (status, body) = call(node, "GET", &format!("{top}?size=abc"), Body::Empty).await;
    assert_eq!(
        (status, &body["name"]),
        (400, &json!("invalid size")),
        "{body}"
    );

    // PATCH: the given field changes, every other one stays.
    let patch: Value = serde_json::from_str(spec.patch).expect("patch JSON");
    let (status, patched) = call(
        node,
        "PATCH",
        &format!("{top}/{}", ids[0]),
        Body::Json(&patch),
    )
    .await;
    assert_eq!(status, 200, "PATCH {kind}: {patched}");
    assert_kept(&created[0], &patched, &patch, kind);
    if let Some((path, n)) = &nested
        && created[3][n.field]["id"].is_string()
    {
        // Under the parent, form-encoded as `curl --data` sends it (entity 3 has no tags).
        let by = spec.key.map_or(ids[3].clone(), |k| {
            created[3][k].as_str().unwrap_or("").into()
        });
        let (status, patched) = call(
            node,
            "PATCH",
            &format!("{path}/{by}"),
            Body::Form("tags[]=via-form"),
        )
        .await;
        assert_eq!(status, 200, "PATCH {path}/{by}: {patched}");
        assert_kept(&created[3], &patched, &json!({"tags": ["via-form"]}), kind);
    }
    if let Some(key) = spec.key
        && spec.conflict
    {
        // Taking another entity's natural key is a conflict too.
        let body = json!({ key: created[0][key] });
        let (status, e) = call(
            node,
            "PATCH",
            &format!("{top}/{}", ids[3]),
            Body::Json(&body),
        )
        .await;
        assert_conflict(status, &e, &format!("PATCH {kind} to a taken {key}"));
    }

    // PUT by id replaces: what is not given takes its default (no tags), the id and
    // `created_at` stay.
    let (status, replaced) = call(
        node,
        "PUT",
        &format!("{top}/{}", ids[1]),
        Body::Json(&(spec.body)(ctx, 1)),
    )
    .await;
    assert_eq!(status, 200, "PUT {kind}/{}: {replaced}", ids[1]);
    assert_eq!(replaced["id"], created[1]["id"], "{kind}");
    assert_eq!(replaced["created_at"], created[1]["created_at"], "{kind}");
    assert_eq!(
        replaced["tags"],
        Value::Null,
        "PUT {kind} replaced the tags"
    );

    // PUT to a new name (under the parent where there is one) or a new id creates.
    let mut fresh = (spec.body)(ctx, 7);
    let (put_path, expect): (String, (&str, Value)) = match (spec.key, &nested) {
        (Some(key), Some((path, n))) if kind != "plugins" => {
            let value = fresh[key].clone();
            if let Value::Object(m) = &mut fresh {
                m.remove(key);
                m.remove(n.field);
            }
            (
                format!("{path}/{}", value.as_str().unwrap_or("")),
                (key, value),
            )
        }
        (Some(key), _) => {
            let value = fresh[key].clone();
            if let Value::Object(m) = &mut fresh {
                m.remove(key);
            }
            (
                format!("{top}/{}", value.as_str().unwrap_or("")),
                (key, value),
            )
        }
        (None, _) => {
            let id = uuid::Uuid::new_v4().to_string();
            (format!("{top}/{id}"), ("id", json!(id)))
        }
    };
    let (status, e) = call(node, "PUT", &put_path, Body::Json(&fresh)).await;
    assert_eq!(status, 200, "PUT {put_path}: {e}");
    assert_eq!(e[expect.0], expect.1, "PUT {put_path}");
    let (status, _) = call(
        node,
        "GET",
        &format!("{top}/{}", e["id"].as_str().unwrap_or("")),
        Body::Empty,
    )
    .await;
    assert_eq!(status, 200, "PUT {put_path} created it");

    // DELETE: 204 without a body, then 404; a missing one is 204 as well (Kong).
    let (status, body) = call(node, "DELETE", &format!("{top}/{}", ids[2]), Body::Empty).await;
    assert_eq!(
        (status, body),
        (204, Value::Null),
        "DELETE {kind}/{}",
        ids[2]
    );
    let (status, _) = call(node, "GET", &format!("{top}/{}", ids[2]), Body::Empty).await;
    assert_eq!(status, 404, "{kind} deleted");
    let (status, body) = call(node, "DELETE", &format!("{top}/{MISSING}"), Body::Empty).await;
    assert_eq!(
        (status, body),
        (204, Value::Null),
        "DELETE a missing {kind}"
    );
    if let Some((path, n)) = &nested
        && created[4][n.field]["id"].is_string()
    {
        let by = spec.key.map_or(ids[4].clone(), |k| {
            created[4][k].as_str().unwrap_or("").into()
        });
        let (status, _) = call(node, "DELETE", &format!("{path}/{by}"), Body::Empty).await;
        assert_eq!(status, 204, "DELETE {path}/{by}");
        let (status, _) = call(node, "GET", &format!("{top}/{}", ids[4]), Body::Empty).await;
        assert_eq!(status, 404, "{path}/{by} deleted");
    }

    // Validation: Kong's schema violation, naming the field; never a 500.
    for (body, field) in (spec.bad)(ctx) {
        let (status, e) = call(node, "POST", &top, Body::Json(&body)).await;
        assert_eq!(status, 400, "POST {kind} {body}: {e}");
        assert_eq!(
            (&e["code"], &e["name"]),
            (&json!(2), &json!("schema violation")),
            "POST {kind} {body}: {e}"
        );
        assert!(e["message"].is_string(), "{e}");
        assert!(
            e["fields"].get(field).is_some(),
            "POST {kind} {body}: `{field}` named in {e}"
        );
    }
    let (status, e) = call(node, "POST", &top, Body::Raw("application/json", "{")).await;
    assert_eq!(status, 400, "POST {kind} with broken JSON: {e}");

    // Conflict: a second entity with entity 0's natural key (a plugin: its scope).
    if spec.conflict {
        let (status, e) = call(node, "POST", &top, Body::Json(&(spec.body)(ctx, 0))).await;
        assert_conflict(status, &e, &format!("POST {kind} twice"));
    }

    // Kong's generated fields.
    if !spec.auto.is_empty() {
        let mut body = (spec.body)(ctx, 8);
        if let Value::Object(m) = &mut body {
            for field in spec.auto {
                m.remove(*field);
            }
        }
        let (status, e) = call(node, "POST", &top, Body::Json(&body)).await;
        assert_eq!(status, 201, "POST {kind} without {:?}: {e}", spec.auto);
        for field in spec.auto {
            assert!(
                e[*field].as_str().is_some_and(|s| s.len() >= 16),
                "{kind}: a generated {field}: {e}"
            );
        }
    }
}

/// Follow `next` from `first` until it is null: the ids in order. Checks Kong's page shape
/// (`offset` only where a next page is).
async fn pages(node: &Running, first: &str, kind: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut next = Some(first.to_string());
    let mut n = 0;
    while let Some(path) = next {
        n += 1;
        assert!(n < 100, "{kind}: pages never end");
        let (status, page) = call(node, "GET", &path, Body::Empty).await;
        assert_eq!(status, 200, "GET {path}: {page}");
        let data = page["data"].as_array().expect("data");
        assert!(data.len() <= 2, "{path}: a page of 2 at most");
        seen.extend(
            data.iter()
                .map(|e| e["id"].as_str().unwrap_or_default().to_string()),
        );
        next = page["next"].as_str().map(str::to_string);
        match &next {
            Some(link) => {
                let base = first.split('?').next().unwrap_or(first);
                assert!(link.starts_with(&format!("{base}?")), "{link} under {base}");
                assert!(page["offset"].is_string(), "{path}: {page}");
            }
            None => {
                assert_eq!(page["next"], Value::Null, "{path}");
                assert!(
                    page.get("offset").is_none(),
                    "no offset on the last page: {page}"
                );
            }
        }
    }
    seen
}

/// `after` is `before` with `patch` applied: the patched fields as given, the others kept.
fn assert_kept(before: &Value, after: &Value, patch: &Value, kind: &str) {
    let (Some(b), Some(a), Some(p)) = (before.as_object(), after.as_object(), patch.as_object())
    else {
        panic!("{kind}: objects expected: {before} {after}");
    };
    for (field, value) in p {
        assert_eq!(&a[field], value, "{kind}: {field} patched: {after}");
    }
    let rest = |m: &Map<String, Value>| -> Map<String, Value> {
        m.iter()
            .filter(|(k, _)| !p.contains_key(*k) && *k != "updated_at")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    assert_eq!(rest(a), rest(b), "{kind}: PATCH kept the other fields");
}

fn assert_conflict(status: u16, e: &Value, what: &str) {
    assert_eq!(status, 409, "{what}: {e}");
    assert_eq!(
        (&e["code"], &e["name"]),
        (&json!(5), &json!("unique constraint violation")),
        "{what}: {e}"
    );
}

/// The proxy follows what the matrix wrote.
async fn proxy_follows(node: &Running, ctx: &Ctx, up: &Upstream) {
    let post = |path: &'static str, form: String| async move {
        let (status, e) = call(node, "POST", path, Body::Form(&form)).await;
        assert_eq!(status, 201, "POST {path} {form}: {e}");
        e
    };
    // Routes: route-0 (created as JSON) serves; route-2 was deleted.
    assert_eq!(proxy(node, "/crud-route-0", &[]).await, 200);
    assert_eq!(
        proxy(node, "/crud-route-3", &[]).await,
        200,
        "a form-created route"
    );
    assert_eq!(proxy(node, "/crud-route-2", &[]).await, 404);

    // Services: svc-0 serves through a new route; pointed at a closed port, it fails.
    post("/services/svc-0/routes", "paths[]=/crud-svc-0".into()).await;
    assert_eq!(proxy(node, "/crud-svc-0", &[]).await, 200);
    let closed = crate::support::closed_port();
    let (status, _) = call(
        node,
        "PATCH",
        "/services/svc-0",
        Body::Form(&format!("port={closed}")),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(proxy(node, "/crud-svc-0", &[]).await, 502);

    // Upstreams and targets: a service whose host is an upstream goes to its targets.
    post("/upstreams", "name=crud-lb".into()).await;
    let target = post(
        "/upstreams/crud-lb/targets",
        format!("target={}", ctx.upstream),
    )
    .await;
    post("/services", "name=crud-lb&host=crud-lb".into()).await;
    post(
        "/services/crud-lb/routes",
        "name=crud-lb&paths[]=/crud-lb".into(),
    )
    .await;
    let before = up.request_count();
    assert_eq!(proxy(node, "/crud-lb", &[]).await, 200);
    assert_eq!(up.request_count(), before + 1, "reached through the target");
    let (status, _) = call(
        node,
        "DELETE",
        &format!(
            "/upstreams/crud-lb/targets/{}",
            target["id"].as_str().unwrap_or("")
        ),
        Body::Empty,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(proxy(node, "/crud-lb", &[]).await, 503, "no target left");

    // Plugins: request-termination on a route answers for it; deleted, the route serves.
    let term = post(
        "/routes/crud-route/plugins",
        "name=request-termination&config.status_code=418".into(),
    )
    .await;
    assert_eq!(proxy(node, "/crud-parent", &[]).await, 418);
    let (status, _) = call(
        node,
        "DELETE",
        &format!("/plugins/{}", term["id"].as_str().unwrap_or("")),
        Body::Empty,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(proxy(node, "/crud-parent", &[]).await, 200);

    // Consumers and credentials, through routes with the auth plugins (on crud-parent).
    for (route, plugins) in [
        ("crud-key", vec!["name=key-auth"]),
        ("crud-basic", vec!["name=basic-auth"]),
        ("crud-jwt", vec!["name=jwt"]),
        (
            "crud-acl",
            vec!["name=key-auth", "name=acl&config.allow[]=group-0"],
        ),
    ] {
        let (status, e) = call(
            node,
            "POST",
            "/services/crud-parent/routes",
            Body::Form(&format!("name={route}&paths[]=/{route}")),
        )
        .await;
        assert_eq!(status, 201, "{e}");
        for p in plugins {
            let (status, e) = call(
                node,
                "POST",
                &format!("/routes/{route}/plugins"),
                Body::Form(p),
            )
            .await;
            assert_eq!(status, 201, "{route} {p}: {e}");
        }
    }
    assert_eq!(proxy(node, "/crud-key", &[]).await, 401);
    assert_eq!(proxy(node, "/crud-key", &[("apikey", "key-0")]).await, 200);
    assert_eq!(
        proxy(node, "/crud-key", &[("apikey", "key-3")]).await,
        200,
        "a form-created key"
    );
    assert_eq!(
        proxy(node, "/crud-key", &[("apikey", "key-2")]).await,
        403,
        "a deleted key (403 for a wrong key is this project's choice)"
    );
    // Consumers: a changed custom id reaches the upstream with the next request.
    let (status, _) = call(
        node,
        "PATCH",
        "/consumers/crud-owner",
        Body::Form("custom_id=owner-cid"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(proxy(node, "/crud-key", &[("apikey", "key-0")]).await, 200);
    let last = up.requests().pop().expect("a request upstream");
    assert_eq!(
        last.headers
            .get("x-consumer-custom-id")
            .and_then(|v| v.to_str().ok()),
        Some("owner-cid"),
        "{:?}",
        last.headers
    );
    let basic = |user: &str, pw: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
        )
    };
    assert_eq!(
        proxy(
            node,
            "/crud-basic",
            &[("authorization", &basic("basic-0", "pw-0"))]
        )
        .await,
        200,
        "the password survived a PATCH of the tags"
    );
    assert_eq!(
        proxy(
            node,
            "/crud-basic",
            &[("authorization", &basic("basic-1", "pw-1"))]
        )
        .await,
        200,
        "replaced with PUT"
    );
    assert_eq!(
        proxy(
            node,
            "/crud-basic",
            &[("authorization", &basic("basic-0", "nope"))]
        )
        .await,
        401
    );
    let token = |key: &str, secret: &str| {
        format!(
            "Bearer {}",
            crate::jwt_signer::sign_hmac("HS256", secret.as_bytes(), &json!({"iss": key}))
        )
    };
    assert_eq!(
        proxy(
            node,
            "/crud-jwt",
            &[("authorization", &token("jwt-0", "changed"))]
        )
        .await,
        200,
        "the patched secret"
    );
    assert_eq!(
        proxy(
            node,
            "/crud-jwt",
            &[("authorization", &token("jwt-0", "secret-0"))]
        )
        .await,
        401,
        "the old secret"
    );
    // The owner is in group-0 (its acl) and authenticates with key-0.
    assert_eq!(proxy(node, "/crud-acl", &[("apikey", "key-0")]).await, 200);
    let (status, _) = call(
        node,
        "DELETE",
        "/consumers/crud-owner/acls/group-0",
        Body::Empty,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(proxy(node, "/crud-acl", &[("apikey", "key-0")]).await, 403);

    // SNIs: a created one selects its certificate on the TLS listener; a deleted one does not.
    let tls: std::net::SocketAddr = node
        .started
        .split("proxy_tls=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .expect("the TLS listener in the start-up line");
    let client = default_client(&ctx.pki);
    for (name, served) in [
        ("sni-0.crud.test", true),
        ("sni-3.crud.test", true),
        ("sni-2.crud.test", false),
    ] {
        let handshake = connect(tls, &client, name).await;
        assert_eq!(handshake.is_ok(), served, "{name}: {handshake:?}");
    }
}

/// `GET path` on the proxy with `headers`: the status.
async fn proxy(node: &Running, path: &str, headers: &[(&str, &str)]) -> u16 {
    let mut req = client().get(format!("http://{}{path}", node.addr));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.map_or(0, |r| r.status().as_u16())
}

enum Body<'a> {
    Empty,
    Json(&'a Value),
    /// `application/x-www-form-urlencoded`, as `curl --data` sends it.
    Form(&'a str),
    Raw(&'a str, &'a str),
}

/// One Admin API call: the status and the JSON answer (`null` for an empty body).
async fn call(node: &Running, method: &str, path: &str, body: Body<'_>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client().request(method.clone(), format!("http://{}{path}", node.admin));
    req = match body {
        Body::Empty => req,
        Body::Json(v) => req.json(v),
        Body::Form(f) => req
            .header("content-type", "application/x-www-form-urlencoded")
            .body(f.to_string()),
        Body::Raw(t, b) => req.header("content-type", t).body(b.to_string()),
    };
    let resp = req.send().await.expect("admin call");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    assert_ne!(status, 500, "{method} {path}: {text}");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: {status} not JSON ({e}): {text}"))
    };
    (status, value)
}
