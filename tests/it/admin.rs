//! The Admin API without a database (the declarative file is the source of truth): the real
//! `gatehouse run` process, its Admin API on an ephemeral loopback port, a real HTTP client.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cli::{Running, write};
use crate::support::{Upstream, client};

fn config(up: &Upstream) -> String {
    format!(
        r#"_format_version: "3.0"
services:
- name: users
  url: http://{up}/v1
  tags: [team-a]
  routes:
  - name: users-route
    paths: [/users]
    plugins:
    - name: key-auth
  - name: open
    paths: [/open]
- name: orders
  url: http://{up}
  tags: [team-b]
upstreams:
- name: pool
  targets: [{{target: "{up}", weight: 10}}]
consumers:
- username: alice
  keyauth_credentials: [{{key: alice-key}}]
  acls: [{{group: admins}}]
plugins:
- name: ip-restriction
  service: orders
  config: {{allow: [10.0.0.0/8, 172.16.0.0/12]}}
"#,
        up = up.addr()
    )
}

struct Admin {
    base: String,
    http: reqwest::Client,
}

impl Admin {
    fn of(gw: &Running) -> Admin {
        Admin {
            base: format!("http://{}", gw.admin),
            http: client(),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("admin request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        (status, body)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).await
    }
}

/// A node on [`config`] in front of a real upstream, with its Admin API on.
struct Node {
    rt: tokio::runtime::Runtime,
    up: Upstream,
    gw: Running,
    admin: Admin,
    // Kept for the node's lifetime: the file it runs on.
    _file: tempfile::NamedTempFile,
}

fn start() -> Node {
    let rt = crate::database::runtime();
    let up = rt.block_on(Upstream::start());
    let file = write(&config(&up));
    let gw = Running::start(file.path());
    let admin = Admin::of(&gw);
    Node {
        rt,
        up,
        gw,
        admin,
        _file: file,
    }
}

#[test]
fn entities_are_listed_found_and_nested_in_kongs_shapes() {
    let Node {
        rt,
        up,
        admin,
        gw: _gw,
        _file,
    } = start();
    rt.block_on(async {
        let (status, root) = admin.get("/").await;
        assert_eq!(status, 200);
        assert_eq!(root["configuration"]["database"], "off");
        assert!(root["plugins"]["available_on_server"]["jwt"]["priority"].is_number());
        assert_eq!(
            root["plugins"]["enabled_in_cluster"],
            json!(["ip-restriction", "key-auth"])
        );
        assert!(uuid::Uuid::parse_str(root["node_id"].as_str().expect("node_id")).is_ok());

        let (status, list) = admin.get("/services").await;
        assert_eq!(status, 200);
        let services = list["data"].as_array().expect("data");
        assert_eq!(services.len(), 2);
        assert_eq!(list["next"], Value::Null);
        let users = &services[0];
        assert_eq!(users["name"], "users");
        assert_eq!(users["protocol"], "http");
        assert_eq!(users["host"], "127.0.0.1");
        assert_eq!(users["port"], up.addr().port());
        assert_eq!(users["path"], "/v1");
        assert_eq!(users["retries"], 5);
        assert_eq!(users["connect_timeout"], 60000);
        assert!(users["created_at"].is_number());
        let users_id = users["id"].as_str().expect("id").to_string();

        // By name or by id, the same entity.
        assert_eq!(admin.get("/services/users").await.1, *users);
        assert_eq!(admin.get(&format!("/services/{users_id}")).await.1, *users);
        let (status, missing) = admin.get("/services/nope").await;
        assert_eq!(
            (status, missing["message"].as_str()),
            (404, Some("Not found"))
        );

        // Nested lists.
        let (_, routes) = admin.get("/services/users/routes").await;
        let names: Vec<&str> = routes["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|r| r["name"].as_str().expect("name"))
            .collect();
        assert_eq!(names, ["users-route", "open"]);
        assert_eq!(routes["data"][0]["service"]["id"], users_id.as_str());
        assert_eq!(routes["data"][0]["protocols"], json!(["http", "https"]));
        assert_eq!(routes["data"][0]["methods"], Value::Null);
        let (_, service) = admin.get("/routes/users-route/service").await;
        assert_eq!(service["id"], users_id.as_str());
        let (_, plugins) = admin.get("/routes/users-route/plugins").await;
        assert_eq!(plugins["data"][0]["name"], "key-auth");
        assert!(plugins["data"][0]["config"].is_object());

        // The founding document's ip-restriction plugin, as Kong shows it.
        let (_, plugins) = admin.get("/services/orders/plugins").await;
        let ip = &plugins["data"][0];
        assert_eq!(ip["name"], "ip-restriction");
        assert_eq!(
            ip["config"]["allow"],
            json!(["10.0.0.0/8", "172.16.0.0/12"])
        );
        assert_eq!(ip["enabled"], true);
        assert_eq!(ip["route"], Value::Null);

        let (_, keys) = admin.get("/consumers/alice/key-auth").await;
        assert_eq!(keys["data"][0]["key"], "alice-key");
        let key_id = keys["data"][0]["id"].as_str().expect("id").to_string();
        let (status, key) = admin
            .get(&format!("/consumers/alice/key-auth/{key_id}"))
            .await;
        assert_eq!((status, key["key"].as_str()), (200, Some("alice-key")));
        let (_, all_keys) = admin.get("/key-auths").await;
        assert_eq!(all_keys["data"].as_array().map(Vec::len), Some(1));
        let (_, acls) = admin.get("/consumers/alice/acls").await;
        assert_eq!(acls["data"][0]["group"], "admins");
        let (_, targets) = admin.get("/upstreams/pool/targets").await;
        assert_eq!(targets["data"][0]["weight"], 10);
        let (status, health) = admin.get("/upstreams/pool/health").await;
        assert_eq!(status, 200);
        assert_eq!(health["data"][0]["health"], "HEALTHCHECKS_OFF");
        assert_eq!(health["total"], 1);
    });
}

#[test]
fn lists_page_and_filter_by_tags() {
    let Node {
        rt,
        admin,
        gw: _gw,
        _file,
        ..
    } = start();
    rt.block_on(async {
        let (_, first) = admin.get("/routes?size=1").await;
        assert_eq!(first["data"].as_array().map(Vec::len), Some(1));
        let next = first["next"].as_str().expect("next page").to_string();
        let (_, second) = admin.get(&next).await;
        assert_eq!(second["data"].as_array().map(Vec::len), Some(1));
        assert_ne!(first["data"][0]["id"], second["data"][0]["id"]);
        assert_eq!(second["next"], Value::Null);

        let (_, tagged) = admin.get("/services?tags=team-b").await;
        assert_eq!(tagged["data"][0]["name"], "orders");
        assert_eq!(tagged["data"].as_array().map(Vec::len), Some(1));
        let (_, either) = admin.get("/services?tags=team-a/team-b").await;
        assert_eq!(either["data"].as_array().map(Vec::len), Some(2));

        for bad in [
            "/services?size=0",
            "/services?offset=garbage",
            "/services?tags=a,b/c",
        ] {
            let (status, body) = admin.get(bad).await;
            assert_eq!(status, 400, "{bad}");
            assert!(body["message"].is_string(), "{bad}: {body}");
        }
    });
}

#[test]
fn without_a_database_writes_are_refused_and_post_config_replaces_everything() {
    let Node {
        rt,
        up,
        gw,
        admin,
        _file,
    } = start();
    let proxy = format!("http://{}", gw.addr);
    rt.block_on(async {
        for (method, path) in [
            ("POST", "/services"),
            ("PATCH", "/services/users"),
            ("PUT", "/services/users"),
            ("DELETE", "/services/users"),
            ("POST", "/consumers/alice/key-auth"),
        ] {
            let (status, body) = admin
                .call(method, path, Some(json!({"name": "x"})))
                .await;
            assert_eq!(status, 405, "{method} {path}");
            assert_eq!(body["name"], "operation unsupported");
            assert!(
                body["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("when not using a database")),
                "{body}"
            );
        }

        // The export loads back: posting it changes nothing.
        let (status, exported) = admin.get("/config").await;
        assert_eq!(status, 200);
        let text = exported["config"].as_str().expect("config text").to_string();
        let (_, before) = admin.get("/services").await;
        let (status, _) = admin.call("POST", "/config", Some(json!({"config": text}))).await;
        assert_eq!(status, 201);
        let (_, after) = admin.get("/services").await;
        let ids = |v: &Value| {
            v["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|s| s["id"].clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&after), ids(&before));

        // An invalid configuration is refused with its fields; the old one keeps serving.
        let (status, body) = admin
            .call(
                "POST",
                "/config",
                Some(json!({"_format_version": "3.0", "routes": [{"paths": ["~("]}]})),
            )
            .await;
        assert_eq!(status, 400);
        assert_eq!(body["name"], "invalid declarative configuration");
        assert!(body["fields"]["routes[0].paths[0]"].is_string(), "{body}");
        let http = client();
        assert_eq!(
            http.get(format!("{proxy}/open")).send().await.expect("proxy").status(),
            200
        );

        // A new configuration takes effect on the proxy at once.
        let replacement = json!({
            "_format_version": "3.0",
            "services": [{
                "name": "fresh",
                "url": format!("http://{}", up.addr()),
                "routes": [{"name": "fresh", "paths": ["/fresh"]}],
            }],
        });
        let posted = Instant::now();
        let (status, created) = admin.call("POST", "/config", Some(replacement)).await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["services"].as_object().map(|m| m.len()), Some(1));
        let fresh = http.get(format!("{proxy}/fresh")).send().await.expect("proxy");
        assert_eq!(fresh.status(), 200);
        assert!(posted.elapsed() < Duration::from_secs(2));
        let gone = http.get(format!("{proxy}/open")).send().await.expect("proxy");
        assert_eq!(gone.status(), 404);
        let (_, services) = admin.get("/services").await;
        assert_eq!(services["data"][0]["name"], "fresh");

        // Form-encoded, as `curl -d config=...`.
        let yaml = format!(
            "_format_version: \"3.0\"\nservices:\n- name: formed\n  url: http://{}\n  routes: [{{paths: [/formed]}}]\n",
            up.addr()
        );
        let resp = http
            .post(format!("{}/config", admin.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "config={}",
                percent_encoding::utf8_percent_encode(&yaml, percent_encoding::NON_ALPHANUMERIC)
            ))
            .send()
            .await
            .expect("form post");
        assert_eq!(resp.status(), 201);
        let formed = http.get(format!("{proxy}/formed")).send().await.expect("proxy");
        assert_eq!(formed.status(), 200);

        let (status, status_body) = admin.get("/status").await;
        assert_eq!(status, 200);
        assert_eq!(status_body["database"]["reachable"], true);
        assert_eq!(
            status_body["configuration_hash"].as_str().map(str::len),
            Some(32)
        );
    });
    gw.signal("-TERM");
    gw.assert_exits_cleanly();
}

#[test]
fn the_admin_api_listens_on_loopback_by_default_and_can_be_turned_off() {
    let help = std::process::Command::new(crate::cli::BIN)
        .args(["run", "--help"])
        .output()
        .expect("help");
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("[default: 127.0.0.1:8001]"), "{text}");
    let file = write("_format_version: \"3.0\"\n");
    let gw = Running::start_with_env(file.path(), &[("GATEHOUSE_ADMIN_LISTEN", "off")]);
    assert_eq!(gw.admin, "off");
    gw.signal("-TERM");
    gw.assert_exits_cleanly();
}

#[test]
fn an_admin_token_and_an_allow_list_guard_the_api() {
    let file = write("_format_version: \"3.0\"\n");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let get = |gw: &Running, token: Option<&str>| {
        let mut req = client().get(format!("http://{}/services", gw.admin));
        if let Some(t) = token {
            req = req.header("Kong-Admin-Token", t);
        }
        rt.block_on(async {
            let resp = req.send().await.expect("admin");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.expect("JSON"))
        })
    };
    let guarded = Running::start_with_env(
        file.path(),
        &[
            ("GATEHOUSE_ADMIN_TOKEN", "s3cret"),
            ("GATEHOUSE_ADMIN_ALLOW", "127.0.0.0/8,::1"),
        ],
    );
    let (status, body) = get(&guarded, None);
    assert_eq!(status, 401);
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("Token")),
        "{body}"
    );
    assert_eq!(get(&guarded, Some("wrong")).0, 401);
    assert_eq!(get(&guarded, Some("s3cret")).0, 200);
    let fenced = Running::start_with_env(file.path(), &[("GATEHOUSE_ADMIN_ALLOW", "10.0.0.0/8")]);
    let (status, body) = get(&fenced, None);
    assert_eq!(status, 403);
    assert_eq!(body["message"], "Your IP address is not allowed");
    guarded.signal("-TERM");
    fenced.signal("-TERM");
    guarded.assert_exits_cleanly();
    fenced.assert_exits_cleanly();
    // A bad allow list stops the node at start with a clear message.
    let out = std::process::Command::new(crate::cli::BIN)
        .args(["run", "-c"])
        .arg(file.path())
        .env("GATEHOUSE_ADMIN_ALLOW", "not-a-network")
        .env("GATEHOUSE_PROXY_LISTEN", "127.0.0.1:0")
        .env("GATEHOUSE_PROXY_TLS_LISTEN", "off")
        .env("GATEHOUSE_ADMIN_LISTEN", "127.0.0.1:0")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not-a-network"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn schemas_describe_plugins_fill_their_defaults_and_validate_without_storing() {
    let Node {
        rt,
        admin,
        gw: _gw,
        _file,
        ..
    } = start();
    rt.block_on(async {
        let field = |fields: &Value, name: &str| -> Value {
            fields["fields"]
                .as_array()
                .and_then(|fs| fs.iter().find_map(|f| f.get(name)))
                .cloned()
                .unwrap_or_else(|| panic!("no field {name} in {fields}"))
        };
        let (status, schema) = admin.get("/schemas/plugins/key-auth").await;
        assert_eq!(status, 200);
        let config = field(&schema, "config");
        assert_eq!(config["type"], "record");
        assert_eq!(field(&config, "key_names")["default"], json!(["apikey"]));
        assert_eq!(field(&config, "key_names")["elements"]["type"], "string");
        assert_eq!(admin.get("/schemas/plugins/no-such-plugin").await.0, 404);
        let (status, services) = admin.get("/schemas/services").await;
        assert_eq!(status, 200);
        assert_eq!(field(&services, "retries")["default"], 5);

        // The file gave `allow` only: Kong shows every config field.
        let (_, plugins) = admin.get("/plugins").await;
        let named = |name: &str| {
            plugins["data"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["name"] == name))
                .cloned()
                .unwrap_or_else(|| panic!("no {name} plugin"))
        };
        let ip = named("ip-restriction");
        assert_eq!(
            ip["config"]["allow"],
            json!(["10.0.0.0/8", "172.16.0.0/12"])
        );
        assert_eq!(ip["config"]["deny"], Value::Null);
        assert!(
            ip["config"]
                .as_object()
                .expect("config")
                .contains_key("message")
        );
        let key_auth = named("key-auth");
        assert_eq!(key_auth["config"]["key_names"], json!(["apikey"]));
        assert_eq!(key_auth["config"]["hide_credentials"], false);

        // Validation answers as a write would, and stores nothing (this node has no database).
        let (status, ok) = admin
            .call(
                "POST",
                "/schemas/plugins/validate",
                Some(json!({"name": "key-auth", "config": {"key_names": ["x-key"]}})),
            )
            .await;
        assert_eq!(
            (status, ok["message"].clone()),
            (200, json!("schema validation successful"))
        );
        let (status, bad) = admin
            .call(
                "POST",
                "/schemas/plugins/validate",
                Some(json!({"name": "key-auth", "config": {"key_names": "x-key"}})),
            )
            .await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(bad["name"], "schema violation");
        assert!(
            bad["fields"]
                .as_object()
                .expect("fields")
                .keys()
                .any(|k| k.contains("key_names")),
            "{bad}"
        );
        let (status, bad) = admin
            .call(
                "POST",
                "/schemas/services/validate",
                Some(json!({"name": "x"})),
            )
            .await;
        assert_eq!(status, 400, "{bad}");
        let (_, after) = admin.get("/plugins").await;
        assert_eq!(
            after["data"].as_array().map(Vec::len),
            Some(2),
            "nothing was stored"
        );
    });
}

/// Kong's DB-less command, `curl -X POST /config -F config=@kong.yml`: a multipart body
/// with the file as the `config` part replaces the configuration.
#[test]
fn config_is_replaced_from_a_multipart_file_as_kongs_curl_sends_it() {
    let Node {
        rt,
        up,
        admin,
        gw,
        _file,
    } = start();
    rt.block_on(async {
        let yaml = format!(
            "_format_version: \"3.0\"\nservices:\n- name: from-file\n  url: http://{}\n  routes:\n  - paths: [/from-file]\n",
            up.addr()
        );
        let part = reqwest::multipart::Part::text(yaml)
            .file_name("kong.yml")
            .mime_str("application/x-yaml")
            .expect("mime");
        let form = reqwest::multipart::Form::new().part("config", part);
        let resp = admin
            .http
            .post(format!("{}/config", admin.base))
            .multipart(form)
            .send()
            .await
            .expect("POST /config");
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap_or_default());
        let served = client()
            .get(format!("http://{}/from-file", gw.addr))
            .send()
            .await
            .expect("proxy");
        assert_eq!(served.status(), 200);
        // A broken multipart body is a 400 with a reason, not a 500.
        let resp = admin
            .http
            .post(format!("{}/config", admin.base))
            .header("content-type", "multipart/form-data; boundary=zz")
            .body("--zz\r\nno headers end")
            .send()
            .await
            .expect("POST /config");
        assert_eq!(resp.status(), 400);
        let body: Value = resp.json().await.expect("JSON");
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains("multipart")),
            "{body}"
        );
    });
}

/// Kong's manual target health: a target set unhealthy gets no traffic and shows so in
/// `/upstreams/{u}/health` (health checks need not be on), and comes back when set healthy.
#[test]
fn targets_are_set_unhealthy_and_healthy_by_hand() {
    let rt = crate::database::runtime();
    let (a, b) = rt.block_on(async { (Upstream::start().await, Upstream::start().await) });
    let file = write(&format!(
        r#"_format_version: "3.0"
services:
- name: pooled
  host: pool
  routes: [{{paths: [/pooled]}}]
upstreams:
- name: pool
  targets: [{{target: "{a}"}}, {{target: "{b}"}}]
"#,
        a = a.addr(),
        b = b.addr()
    ));
    let gw = Running::start(file.path());
    let admin = Admin::of(&gw);
    rt.block_on(async {
        let http = client();
        let send = |n: usize| {
            let http = http.clone();
            let url = format!("http://{}/pooled", gw.addr);
            async move {
                for _ in 0..n {
                    let status = http.get(&url).send().await.expect("proxy").status();
                    assert_eq!(status, 200);
                }
            }
        };
        let target = a.addr().to_string();
        let (status, _) = admin
            .call(
                "PUT",
                &format!("/upstreams/pool/targets/{target}/unhealthy"),
                None,
            )
            .await;
        assert_eq!(status, 204);
        let (_, health) = admin.get("/upstreams/pool/health").await;
        let health_of = |health: &Value, t: &str| {
            health["data"]
                .as_array()
                .and_then(|d| d.iter().find(|e| e["target"] == t))
                .map(|e| e["health"].clone())
        };
        assert_eq!(
            health_of(&health, &target),
            Some(json!("UNHEALTHY")),
            "{health}"
        );
        let before_a = a.requests().len();
        let before_b = b.requests().len();
        send(6).await;
        assert_eq!(
            a.requests().len(),
            before_a,
            "no traffic to the unhealthy target"
        );
        assert_eq!(b.requests().len(), before_b + 6);

        // By address (Kong 2's POST also works), then back to healthy.
        let (status, _) = admin
            .call(
                "POST",
                &format!("/upstreams/pool/targets/{target}/{target}/healthy"),
                None,
            )
            .await;
        assert_eq!(status, 204);
        let (_, health) = admin.get("/upstreams/pool/health").await;
        assert_eq!(
            health_of(&health, &target),
            Some(json!("HEALTHCHECKS_OFF")),
            "{health}"
        );
        send(6).await;
        assert!(a.requests().len() > before_a, "the target is back");

        for path in [
            "/upstreams/nope/targets/x/healthy".to_string(),
            "/upstreams/pool/targets/10.9.9.9:1/healthy".to_string(),
            format!("/upstreams/pool/targets/{target}/10.9.9.9:1/unhealthy"),
        ] {
            assert_eq!(admin.call("PUT", &path, None).await.0, 404, "{path}");
        }
    });
}

#[test]
fn tags_list_every_tagged_entity() {
    let Node {
        rt,
        admin,
        gw: _gw,
        _file,
        ..
    } = start();
    rt.block_on(async {
        let (status, all) = admin.get("/tags").await;
        assert_eq!(status, 200);
        let entries = all["data"].as_array().expect("data");
        assert_eq!(entries.len(), 2, "{all}");
        assert_eq!(entries[0]["entity_name"], "services");
        assert_eq!(entries[0]["tag"], "team-a");
        let (_, users) = admin.get("/services/users").await;
        assert_eq!(entries[0]["entity_id"], users["id"]);
        let (_, one) = admin.get("/tags/team-b").await;
        let (_, orders) = admin.get("/services/orders").await;
        assert_eq!(
            one["data"],
            json!([{"entity_name": "services", "entity_id": orders["id"], "tag": "team-b"}])
        );
        let (_, none) = admin.get("/tags/nobody").await;
        assert_eq!(none["data"], json!([]));
        let (_, paged) = admin.get("/tags?size=1").await;
        assert!(
            paged["next"]
                .as_str()
                .is_some_and(|n| n.starts_with("/tags?offset=")),
            "{paged}"
        );
        assert_eq!(admin.get("/tags?tags=x").await.0, 400);
        // HEAD is answered wherever GET is, without a body.
        assert_eq!(admin.call("HEAD", "/tags", None).await, (200, Value::Null));
        assert_eq!(
            admin.call("HEAD", "/services/users", None).await,
            (200, Value::Null)
        );
    });
}

/// Without a database, `POST /config` leaves the file alone unless `--admin-writes-file`
/// asks for it; then the file holds the posted text and a restart serves it.
#[test]
fn posted_configurations_are_written_to_the_file_only_when_asked() {
    let rt = crate::database::runtime();
    let up = rt.block_on(Upstream::start());
    let original = format!(
        "_format_version: \"3.0\"\nservices:\n- name: old\n  url: http://{}\n  routes: [{{paths: [/old]}}]\n",
        up.addr()
    );
    let posted = format!(
        "_format_version: \"3.0\"\n# posted through the Admin API\nservices:\n- name: new\n  url: http://{}\n  routes: [{{paths: [/new]}}]\n",
        up.addr()
    );
    let post = |gw: &Running| {
        let admin = Admin::of(gw);
        let posted = posted.clone();
        async move {
            admin
                .http
                .post(format!("{}/config", admin.base))
                .header("content-type", "application/x-yaml")
                .body(posted)
                .send()
                .await
                .expect("POST /config")
                .status()
        }
    };
    let served = |gw: &Running, path: &'static str| {
        let url = format!("http://{}{path}", gw.addr);
        async move {
            client()
                .get(url)
                .send()
                .await
                .expect("proxy")
                .status()
                .as_u16()
        }
    };

    // Not asked: the file keeps its text.
    let file = write(&original);
    let gw = Running::start(file.path());
    rt.block_on(async {
        assert_eq!(post(&gw).await, 201);
        assert_eq!(served(&gw, "/new").await, 200);
    });
    assert_eq!(
        std::fs::read_to_string(file.path()).expect("read"),
        original
    );
    drop(gw);

    // Asked: the file holds what was posted, and a restart serves it.
    let mut gw = Running::start_with(file.path(), &["--admin-writes-file"], &[]);
    rt.block_on(async {
        assert_eq!(served(&gw, "/old").await, 200);
        assert_eq!(post(&gw).await, 201);
        assert_eq!(served(&gw, "/new").await, 200);
    });
    assert_eq!(std::fs::read_to_string(file.path()).expect("read"), posted);
    gw.kill();
    let gw = Running::start(file.path());
    rt.block_on(async {
        assert_eq!(served(&gw, "/new").await, 200);
        assert_eq!(served(&gw, "/old").await, 404);
    });
}

/// What the Kong Ingress Controller sends: `POST /config?check_hash=1` (304 when nothing
/// changes) and `?flatten_errors=1` (errors per entity).
#[test]
fn config_posts_check_their_hash_and_flatten_their_errors() {
    let Node {
        rt,
        up,
        admin,
        gw: _gw,
        _file,
    } = start();
    rt.block_on(async {
        let (_, exported) = admin.get("/config").await;
        let current: Value =
            serde_json::from_str(exported["config"].as_str().expect("text")).expect("JSON");
        let (status, _) = admin
            .call("POST", "/config?check_hash=1", Some(current.clone()))
            .await;
        assert_eq!(status, 304);
        let (_, status_before) = admin.get("/status").await;
        let mut changed = current.clone();
        changed["services"][0]["retries"] = json!(2);
        let (status, _) = admin
            .call("POST", "/config?check_hash=1", Some(changed))
            .await;
        assert_eq!(status, 201);
        let (_, status_after) = admin.get("/status").await;
        assert_ne!(
            status_before["configuration_hash"],
            status_after["configuration_hash"]
        );

        let invalid = json!({
            "_format_version": "3.0",
            "services": [{
                "name": "svc",
                "url": format!("http://{}", up.addr()),
                "tags": ["k8s"],
                "routes": [{"name": "bad", "paths": ["~("]}],
            }],
        });
        let (status, body) = admin
            .call("POST", "/config?flatten_errors=1", Some(invalid))
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["code"], 14);
        let flat = body["flattened_errors"]
            .as_array()
            .expect("flattened_errors");
        assert_eq!(flat.len(), 1, "{body}");
        assert_eq!(flat[0]["entity_type"], "route");
        assert_eq!(flat[0]["entity_name"], "bad");
        assert_eq!(flat[0]["errors"][0]["field"], "paths[0]");
        assert_eq!(flat[0]["errors"][0]["type"], "field");
    });
}
