//! Database mode: `gatehouse run` without a file keeps its configuration in SQLite (the
//! default) or PostgreSQL; it survives restarts and `kill -9`, and nodes sharing one
//! PostgreSQL database follow each other's writes.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cli::{BIN, Running};
use crate::support::{Upstream, client};
use crate::test_db::PgDatabase;

/// A runtime, an upstream, and the URL of a fresh SQLite database in a temporary directory
/// (kept while the returned guard lives).
pub(crate) fn sqlite_setup() -> (tokio::runtime::Runtime, Upstream, tempfile::TempDir, String) {
    let rt = runtime();
    let up = rt.block_on(Upstream::start());
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("gatehouse.db").display());
    (rt, up, dir, url)
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A configuration with one service named `name` routed at `/{name}`.
fn document(up: &Upstream, name: &str) -> Value {
    json!({
        "_format_version": "3.0",
        "services": [{
            "name": name,
            "url": format!("http://{}", up.addr()),
            "routes": [{"name": name, "paths": [format!("/{name}")]}],
        }],
    })
}

async fn post_config(node: &Running, body: &Value) -> reqwest::Response {
    client()
        .post(format!("http://{}/config", node.admin))
        .json(body)
        .send()
        .await
        .expect("POST /config")
}

/// `GET path` on the node's Admin API, as JSON.
pub(crate) async fn admin_json(node: &Running, path: &str) -> Value {
    client()
        .get(format!("http://{}{path}", node.admin))
        .send()
        .await
        .expect("admin GET")
        .json()
        .await
        .expect("JSON")
}

async fn service_names(node: &Running) -> Vec<String> {
    let body = admin_json(node, "/services").await;
    body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn status(node: &Running, path: &str) -> u16 {
    client()
        .get(format!("http://{}{path}", node.addr))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// Poll `check` until it holds or `within` passes; returns how long it took.
async fn eventually<F, Fut>(within: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < within {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[test]
fn sqlite_keeps_the_configuration_across_restarts_and_imports() {
    let (rt, up, _dir, url) = sqlite_setup();

    let node = Running::start_database(&url, &[]);
    rt.block_on(async {
        let root = admin_json(&node, "/").await;
        assert_eq!(root["configuration"]["database"], "sqlite");
        assert!(
            service_names(&node).await.is_empty(),
            "a new database is empty"
        );
        let resp = post_config(&node, &document(&up, "first")).await;
        assert_eq!(resp.status(), 201);
        assert_eq!(status(&node, "/first").await, 200);
        // PUT replaces an entity as a whole (Kong's upsert), and creates one by name.
        let put = |path: String, body: Value| async move {
            let resp = client().put(path).json(&body).send().await.expect("PUT");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.expect("JSON"))
        };
        let target = format!("http://{}", up.addr());
        let (status, replaced) = put(
            format!("http://{}/services/first", node.admin),
            json!({"url": target, "retries": 1}),
        )
        .await;
        assert_eq!(status, 200, "{replaced}");
        assert_eq!(
            (replaced["retries"].as_u64(), replaced["name"].as_str()),
            (Some(1), Some("first"))
        );
        let (status, named) = put(
            format!("http://{}/services/second", node.admin),
            json!({"url": target}),
        )
        .await;
        assert_eq!((status, named["name"].as_str()), (200, Some("second")));
        let (status, bad) = put(
            format!("http://{}/services/second", node.admin),
            json!({"url": "ftp://x"}),
        )
        .await;
        assert_eq!(
            (status, bad["name"].as_str()),
            (400, Some("schema violation"))
        );
    });
    node.signal("-TERM");
    node.assert_exits_cleanly();

    // A restart serves what was stored.
    let node = Running::start_database(&url, &[]);
    rt.block_on(async {
        assert_eq!(service_names(&node).await, ["first", "second"]);
        assert_eq!(status(&node, "/first").await, 200);
    });

    // `config db_import` while the node runs: it picks the change up by itself.
    let file = crate::cli::write(&serde_json::to_string(&document(&up, "imported")).expect("json"));
    let out = Command::new(BIN)
        .args(["config", "db_import"])
        .arg(file.path())
        .env("GATEHOUSE_DATABASE_URL", &url)
        .output()
        .expect("db_import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rt.block_on(async {
        let took = eventually(Duration::from_secs(5), || async {
            status(&node, "/imported").await == 200
        })
        .await;
        assert!(took.is_some(), "the running node picked up the import");
        assert_eq!(status(&node, "/first").await, 404);
    });
    let out = Command::new(BIN)
        .args(["config", "db_export"])
        .env("GATEHOUSE_DATABASE_URL", &url)
        .output()
        .expect("db_export");
    assert!(out.status.success());
    let exported: Value = serde_json::from_slice(&out.stdout).expect("JSON export");
    assert_eq!(exported["services"][0]["name"], "imported");
    let out = Command::new(BIN)
        .args(["migrations", "status"])
        .env("GATEHOUSE_DATABASE_URL", &url)
        .output()
        .expect("migrations status");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "0001_entities: applied\n"
    );
    node.signal("-TERM");
    node.assert_exits_cleanly();
}

/// Writes in a loop, `kill -9` at an arbitrary moment, restart: the last acknowledged write is
/// there (or a later one that was in flight), and the database opens cleanly.
#[test]
fn acknowledged_writes_survive_sigkill() {
    let (rt, up, _dir, url) = sqlite_setup();
    let mut written = 0usize;
    for round in 0..4u64 {
        let mut node = Running::start_database(&url, &[]);
        let (acked, attempted) = rt.block_on(async {
            let mut acked = None;
            let mut attempted = written;
            // Kill after a different delay each round, in the middle of the stream of writes.
            let deadline = Instant::now() + Duration::from_millis(150 + 70 * round);
            while Instant::now() < deadline {
                attempted += 1;
                let name = format!("svc-{attempted}");
                let resp = post_config(&node, &document(&up, &name)).await;
                if resp.status() == 201 {
                    acked = Some(attempted);
                }
            }
            (acked, attempted)
        });
        // Writes are still going when the process dies: one more, unawaited.
        let next = format!("svc-{}", attempted + 1);
        let body = document(&up, &next);
        let admin = node.admin.clone();
        let in_flight = rt.spawn(async move {
            let _ = client()
                .post(format!("http://{admin}/config"))
                .json(&body)
                .send()
                .await;
        });
        node.kill();
        let _ = rt.block_on(in_flight);
        let acked = acked.expect("some writes were acknowledged");

        let node = Running::start_database(&url, &[]);
        let names = rt.block_on(service_names(&node));
        assert_eq!(names.len(), 1, "{names:?}");
        let stored: usize = names[0]
            .trim_start_matches("svc-")
            .parse()
            .expect("a service written by the loop");
        assert!(
            stored >= acked && stored <= attempted + 1,
            "round {round}: stored svc-{stored}, last acknowledged svc-{acked}, last attempted svc-{}",
            attempted + 1
        );
        assert_eq!(rt.block_on(status(&node, &format!("/svc-{stored}"))), 200);
        written = attempted + 1;
        node.signal("-TERM");
        node.assert_exits_cleanly();
    }
}

#[test]
fn nodes_on_one_postgres_database_follow_each_others_writes() {
    let rt = runtime();
    let up = rt.block_on(Upstream::start());
    let db = rt.block_on(PgDatabase::create());
    let a = Running::start_database(&db.url, &[]);
    let b = Running::start_database(&db.url, &[]);
    rt.block_on(async {
        for (writer, other, name) in [(&a, &b, "from-a"), (&b, &a, "from-b")] {
            let resp = post_config(writer, &document(&up, name)).await;
            assert_eq!(resp.status(), 201);
            assert_eq!(status(writer, &format!("/{name}")).await, 200);
            let took = eventually(Duration::from_secs(3), || async {
                status(other, &format!("/{name}")).await == 200
            })
            .await
            .expect("the other node follows");
            eprintln!("{name}: the other node served it {took:?} after the 201");
            assert!(took < Duration::from_secs(1), "took {took:?}");
        }
        // A write computed from an old version is refused: b serves "from-b" (version 2); a
        // write through a stale node would need its own version to match, which the store
        // checks. Both nodes agree on the final state.
        assert_eq!(service_names(&a).await, ["from-b"]);
        assert_eq!(service_names(&b).await, ["from-b"]);
        let root = admin_json(&a, "/status").await;
        assert_eq!(root["database"]["reachable"], true);
    });
    a.signal("-TERM");
    b.signal("-TERM");
    a.assert_exits_cleanly();
    b.assert_exits_cleanly();
}

/// A form-encoded Admin API call, as `curl --data` sends it.
async fn form(node: &Running, path: &str, body: &str) -> (u16, Value) {
    let resp = client()
        .post(format!("http://{}{path}", node.admin))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .expect("admin POST");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON answer"))
}

/// The founding document's "Kong JWT Route Registration", command for command (the service
/// URL pointing at a reachable upstream), then its `ip-restriction` example.
#[test]
fn the_founding_documents_admin_flow_works_as_written() {
    let (rt, up, _dir, url) = sqlite_setup();
    let node = Running::start_database(&url, &[]);
    rt.block_on(async {
        let (status, service) = form(
            &node,
            "/services",
            &format!("name=user-service&url=http://{}", up.addr()),
        )
        .await;
        assert_eq!(status, 201, "{service}");
        assert_eq!(service["name"], "user-service");
        assert_eq!(service["port"], up.addr().port());
        let (status, route) = form(
            &node,
            "/services/user-service/routes",
            "name=user-route&paths[]=/api/users",
        )
        .await;
        assert_eq!(status, 201, "{route}");
        assert_eq!(route["paths"], json!(["/api/users"]));
        assert_eq!(route["service"]["id"], service["id"]);
        let (status, plugin) = form(&node, "/services/user-service/plugins", "name=jwt").await;
        assert_eq!(status, 201, "{plugin}");
        let (status, _) = form(&node, "/consumers", "username=alice").await;
        assert_eq!(status, 201);
        let (status, credential) = form(
            &node,
            "/consumers/alice/jwt",
            "algorithm=HS256&secret=my-secret-key",
        )
        .await;
        assert_eq!(status, 201, "{credential}");
        let key = credential["key"]
            .as_str()
            .expect("a generated key")
            .to_string();
        assert!(key.len() >= 32, "{key}");

        // Without a token: 401. With one signed with my-secret-key and the key as `iss`: 200.
        assert_eq!(status_of(&node, "/api/users", None).await, 401);
        let token = crate::jwt_signer::sign_hmac(
            "HS256",
            b"my-secret-key",
            &json!({"iss": key, "sub": "alice"}),
        );
        assert_eq!(status_of(&node, "/api/users", Some(&token)).await, 200);

        // The ip-restriction example: its answer, and the restriction in effect.
        let (status, _) = form(
            &node,
            "/services",
            &format!("name=admin-api&url=http://{}", up.addr()),
        )
        .await;
        assert_eq!(status, 201);
        let (status, _) = form(&node, "/services/admin-api/routes", "paths[]=/admin").await;
        assert_eq!(status, 201);
        assert_eq!(status_of(&node, "/admin", None).await, 200);
        let (status, restriction) = form(
            &node,
            "/services/admin-api/plugins",
            "name=ip-restriction&config.allow[]=10.0.0.0/8&config.allow[]=172.16.0.0/12",
        )
        .await;
        assert_eq!(status, 201, "{restriction}");
        assert_eq!(
            restriction["config"]["allow"],
            json!(["10.0.0.0/8", "172.16.0.0/12"])
        );
        assert_eq!(restriction["enabled"], true);
        assert_eq!(
            status_of(&node, "/admin", None).await,
            403,
            "127.0.0.1 is not allowed"
        );

        // Bad input: Kong's schema violation with the field; a taken name is a conflict.
        let (status, bad) = form(&node, "/services", "name=broken&url=ftp://x").await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(bad["name"], "schema violation");
        assert!(bad["fields"]["url"].is_string(), "{bad}");
        let (status, taken) = form(
            &node,
            "/services",
            &format!("name=user-service&url=http://{}", up.addr()),
        )
        .await;
        assert_eq!(status, 409, "{taken}");
        assert_eq!(taken["name"], "unique constraint violation");
    });
    // Everything was stored: a restart serves the same.
    node.signal("-TERM");
    node.assert_exits_cleanly();
    let node = Running::start_database(&url, &[]);
    rt.block_on(async {
        assert_eq!(status_of(&node, "/api/users", None).await, 401);
        assert_eq!(service_names(&node).await, ["user-service", "admin-api"]);
    });
}

async fn status_of(node: &Running, path: &str, token: Option<&str>) -> u16 {
    let mut req = client().get(format!("http://{}{path}", node.addr));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    req.send().await.map_or(0, |r| r.status().as_u16())
}

async fn call(node: &Running, method: &str, path: &str, body: &str) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let resp = client()
        .request(method, format!("http://{}{path}", node.admin))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .expect("admin call");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn single_entities_are_patched_and_deleted_with_kongs_cascade() {
    let (rt, up, _dir, url) = sqlite_setup();
    let node = Running::start_database(&url, &[]);
    rt.block_on(async {
        let service = format!("name=s1&url=http://{}", up.addr());
        assert_eq!(call(&node, "POST", "/services", &service).await.0, 201);
        let route = "name=r1&paths[]=/r1";
        assert_eq!(
            call(&node, "POST", "/services/s1/routes", route).await.0,
            201
        );
        assert_eq!(
            call(&node, "POST", "/routes/r1/plugins", "name=key-auth")
                .await
                .0,
            201
        );
        assert_eq!(
            call(&node, "POST", "/consumers", "username=bob").await.0,
            201
        );
        assert_eq!(
            call(&node, "POST", "/consumers/bob/key-auth", "key=bob-key")
                .await
                .0,
            201
        );
        let with_key = |path: &'static str| {
            let node = &node;
            async move {
                client()
                    .get(format!("http://{}{path}", node.addr))
                    .header("apikey", "bob-key")
                    .send()
                    .await
                    .map_or(0, |r| r.status().as_u16())
            }
        };
        assert_eq!(with_key("/r1").await, 200);

        // PATCH: fields merged, the rest kept.
        let (status, patched) = call(&node, "PATCH", "/routes/r1", "paths[]=/r2").await;
        assert_eq!(status, 200, "{patched}");
        assert_eq!(patched["paths"], json!(["/r2"]));
        assert_eq!(patched["name"], "r1");
        assert_eq!(with_key("/r2").await, 200);
        assert_eq!(with_key("/r1").await, 404);
        assert_eq!(
            status_of(&node, "/r2", None).await,
            401,
            "the route's plugin stayed"
        );
        let closed = crate::support::closed_port();
        let (status, s) = call(&node, "PATCH", "/services/s1", &format!("port={closed}")).await;
        assert_eq!((status, s["port"].as_u64()), (200, Some(u64::from(closed))));
        assert_eq!(with_key("/r2").await, 502);
        let (status, _) = call(&node, "PATCH", "/services/s1", &service).await;
        assert_eq!(status, 200);
        assert_eq!(with_key("/r2").await, 200);
        let (status, bad) = call(&node, "PATCH", "/routes/r1", "paths[]=nope").await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(bad["name"], "schema violation");
        assert_eq!(
            call(&node, "PATCH", "/routes/missing", "name=x").await.0,
            404
        );

        // DELETE: a service that routes use is refused; cascades as Kong's.
        let (status, refused) = call(&node, "DELETE", "/services/s1", "").await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(refused["name"], "foreign key violation");
        assert_eq!(refused["code"], 4, "Kong's code for it");
        assert_eq!(call(&node, "DELETE", "/consumers/bob", "").await.0, 204);
        let (_, keys) = call(&node, "GET", "/key-auths", "").await;
        assert_eq!(keys["data"], json!([]), "the consumer's keys went with it");
        assert_eq!(call(&node, "DELETE", "/routes/r1", "").await.0, 204);
        let (_, plugins) = call(&node, "GET", "/plugins", "").await;
        assert_eq!(
            plugins["data"],
            json!([]),
            "the route's plugin went with it"
        );
        assert_eq!(call(&node, "DELETE", "/services/s1", "").await.0, 204);
        assert!(service_names(&node).await.is_empty());
        // Kong answers the deletion of what is not there with 204 as well.
        assert_eq!(call(&node, "DELETE", "/services/s1", "").await.0, 204);
        assert_eq!(call(&node, "GET", "/services/s1", "").await.0, 404);
    });
}

/// A node on a fresh PostgreSQL database serving [`document`] `name`.
fn postgres_node_serving(name: &str) -> (tokio::runtime::Runtime, Upstream, PgDatabase, Running) {
    let rt = runtime();
    let up = rt.block_on(Upstream::start());
    let db = rt.block_on(PgDatabase::create());
    let node = Running::start_database(&db.url, &[]);
    let answer = rt.block_on(post_config(&node, &document(&up, name)));
    assert_eq!(answer.status(), 201);
    (rt, up, db, node)
}

/// The database goes away: the proxy keeps serving its configuration, writes answer 503 and
/// `/status` says so; when the database is back, writes work again without a restart.
#[test]
fn a_lost_database_keeps_the_proxy_serving_and_writes_answer_503() {
    let (rt, up, db, node) = postgres_node_serving("before");
    rt.block_on(async {
        assert_eq!(status(&node, "/before").await, 200);

        db.admin(
            "ALTER DATABASE {db} ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{db}' AND pid <> pg_backend_pid()",
        )
        .await;
        assert_eq!(status(&node, "/before").await, 200, "still serving");
        let resp = post_config(&node, &document(&up, "during")).await;
        assert_eq!(resp.status(), 503);
        let body: Value = resp.json().await.expect("JSON");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("database")),
            "{body}"
        );
        let health = admin_json(&node, "/status").await;
        assert_eq!(health["database"]["reachable"], false);
        assert_eq!(status(&node, "/before").await, 200);
        assert_eq!(status(&node, "/during").await, 404);

        db.admin("ALTER DATABASE {db} ALLOW_CONNECTIONS true").await;
        let mut answered = 0;
        for _ in 0..50 {
            answered = post_config(&node, &document(&up, "after"))
                .await
                .status()
                .as_u16();
            if answered == 201 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(answered, 201, "writes work again once the database is back");
        assert_eq!(status(&node, "/after").await, 200);
    });
    node.signal("-TERM");
    node.assert_exits_cleanly();
}

/// What one single-entity write got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// 201: acknowledged, so it must survive anything.
    Acked,
    /// 409: another write reached the database first; nothing was stored.
    Conflict,
    /// No answer: the node died with the request in flight (stored or not).
    NoAnswer,
    /// Any other answer, which a test of healthy writes does not expect.
    Other(u16),
}

/// `POST /consumers` with `username=prefix-N`, N = 0, 1, … until the node stops answering;
/// every name attempted, with what it got. `acked` counts the 201s as they come.
async fn write_consumers(
    admin: String,
    prefix: String,
    acked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> Vec<(String, Outcome)> {
    let mut outcomes = Vec::new();
    for n in 0.. {
        let name = format!("{prefix}-{n}");
        let sent = client()
            .post(format!("http://{admin}/consumers"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("username={name}"))
            .send()
            .await;
        let outcome = match sent {
            Ok(r) if r.status() == 201 => {
                acked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Outcome::Acked
            }
            Ok(r) if r.status() == 409 => Outcome::Conflict,
            Ok(r) => Outcome::Other(r.status().as_u16()),
            Err(_) => Outcome::NoAnswer,
        };
        outcomes.push((name, outcome));
        if outcome == Outcome::NoAnswer {
            break;
        }
    }
    outcomes
}

/// Every consumer's username, following the list's pages.
async fn all_usernames(node: &Running) -> Vec<String> {
    let mut names = Vec::new();
    let mut path = "/consumers?size=1000".to_string();
    loop {
        let page = admin_json(node, &path).await;
        let data = page["data"].as_array().expect("a page of consumers");
        names.extend(
            data.iter()
                .map(|c| c["username"].as_str().unwrap_or_default().to_string()),
        );
        match page["next"].as_str() {
            Some(next) => path = next.to_string(),
            None => return names,
        }
    }
}

/// A small deterministic generator for kill delays; the seed is printed so that a failing
/// run can be told apart from the others.
struct Jitter(u64);

impl Jitter {
    fn from_clock() -> Jitter {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos());
        Jitter(u64::from(nanos) | 1)
    }

    /// A number in `low..high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        low + self.0 % (high - low)
    }
}

/// Writers on `nodes` (two each) creating consumers until the nodes are killed at a random
/// moment, `rounds` times; after each kill `check_store` looks at the database as the kill
/// left it, and a restarted node must serve every acknowledged write and nothing that was
/// never attempted. Returns the acknowledged writes of each round.
fn single_writes_survive_sigkill(
    url: &str,
    nodes_per_round: usize,
    rounds: usize,
    check_store: impl Fn(&tokio::runtime::Runtime),
) -> Vec<usize> {
    let rt = runtime();
    let mut jitter = Jitter::from_clock();
    let seed = jitter.0;
    let mut attempted = std::collections::HashSet::new();
    let mut acked_total = std::collections::HashSet::new();
    let mut per_round = Vec::new();
    for round in 0..rounds {
        let mut nodes: Vec<Running> = (0..nodes_per_round)
            .map(|_| Running::start_database(url, &[]))
            .collect();
        let acked_so_far = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let writers: Vec<_> = (0..2 * nodes_per_round)
            .map(|w| {
                let admin = nodes[w % nodes_per_round].admin.clone();
                let prefix = format!("u{round}w{w}");
                rt.spawn(write_consumers(admin, prefix, acked_so_far.clone()))
            })
            .collect();
        // A few writes first, so that every round has some to lose, then a random moment.
        let started = Instant::now();
        while acked_so_far.load(std::sync::atomic::Ordering::Relaxed) < 3 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "round {round}: no writes acknowledged"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let delay = jitter.between(50, 700);
        std::thread::sleep(Duration::from_millis(delay));
        for node in &mut nodes {
            node.kill();
        }
        let (mut acked, mut conflicts, mut no_answer) = (Vec::new(), 0, 0);
        for writer in writers {
            for (name, outcome) in rt.block_on(writer).expect("writer task") {
                match outcome {
                    Outcome::Acked => acked.push(name.clone()),
                    Outcome::Conflict => conflicts += 1,
                    Outcome::NoAnswer => no_answer += 1,
                    Outcome::Other(status) => {
                        panic!("round {round} (seed {seed}): {name} answered {status}")
                    }
                }
                attempted.insert(name);
            }
        }
        eprintln!(
            "round {round}: killed {delay} ms after the third 201; {} acknowledged, {conflicts} conflicts, {no_answer} in flight",
            acked.len()
        );
        per_round.push(acked.len());
        acked_total.extend(acked.iter().cloned());

        check_store(&rt);
        let node = Running::start_database(url, &[]);
        rt.block_on(async {
            let stored: std::collections::HashSet<String> =
                all_usernames(&node).await.into_iter().collect();
            let mut lost: Vec<&String> = acked_total.difference(&stored).collect();
            lost.sort();
            assert!(
                lost.is_empty(),
                "round {round} (seed {seed}): acknowledged but lost: {lost:?}"
            );
            let unknown: Vec<&String> = stored.difference(&attempted).collect();
            assert!(unknown.is_empty(), "never attempted: {unknown:?}");
            for name in &acked {
                let resp = client()
                    .get(format!("http://{}/consumers/{name}", node.admin))
                    .send()
                    .await
                    .expect("GET consumer");
                assert_eq!(resp.status(), 200, "{name}");
            }
        });
        node.signal("-TERM");
        node.assert_exits_cleanly();
    }
    per_round
}

#[test]
fn acknowledged_single_writes_survive_sigkill_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("gatehouse.db");
    let url = format!("sqlite://{}", file.display());
    let per_round = single_writes_survive_sigkill(&url, 1, 4, |rt| {
        // The file as the kill left it (plus its write-ahead log) passes SQLite's own check.
        let verdict: Vec<String> = rt.block_on(async {
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&file);
            let pool = sqlx::SqlitePool::connect_with(options)
                .await
                .expect("open the database file");
            let rows: Vec<(String,)> = sqlx::query_as("PRAGMA integrity_check")
                .fetch_all(&pool)
                .await
                .expect("integrity_check");
            pool.close().await;
            rows.into_iter().map(|(r,)| r).collect()
        });
        assert_eq!(verdict, ["ok"]);
    });
    assert!(
        per_round.iter().all(|&n| n >= 3) && per_round.iter().sum::<usize>() >= 15,
        "too few acknowledged writes to mean anything: {per_round:?}"
    );
}

/// Two nodes on one database, two writers on each: every write on one node makes the other
/// reload, and a write computed from the configuration that reload replaced must be refused
/// (409), never stored over the other node's acknowledged write.
#[test]
fn acknowledged_single_writes_survive_sigkill_on_postgres() {
    let rt = runtime();
    let db = rt.block_on(PgDatabase::create());
    let per_round = single_writes_survive_sigkill(&db.url, 2, 4, |_| {});
    assert!(
        per_round.iter().all(|&n| n >= 3) && per_round.iter().sum::<usize>() >= 15,
        "too few acknowledged writes to mean anything: {per_round:?}"
    );
}

/// A client sending `GET path` through the proxy from `after` on until `stop`: when each request that got 200
/// started and ended, and every other outcome (status or error).
async fn keep_requesting(
    proxy: String,
    path: &'static str,
    after: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (Vec<(Instant, Instant)>, Vec<String>) {
    tokio::time::sleep(after).await;
    let c = client();
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let start = Instant::now();
        match c.get(format!("http://{proxy}{path}")).send().await {
            Ok(r) if r.status() == 200 => ok.push((start, Instant::now())),
            Ok(r) => failed.push(format!("{path}: {}", r.status())),
            Err(e) => failed.push(format!("{path}: {e}")),
        }
    }
    (ok, failed)
}

/// Routes created through the Admin API while clients keep the proxy busy (slow requests
/// among them, so that the new configuration lands while they are in flight): each is served
/// within 100 ms of its 201 on the node that took the write, and no request fails; with a
/// `follower` node on the same database, it serves each within 1 s.
fn writes_reach_the_proxy(url: &str, follower: bool) {
    const WRITES: usize = 8;
    let rt = runtime();
    let up = rt.block_on(Upstream::start());
    let node = Running::start_database(url, &[]);
    let other = follower.then(|| Running::start_database(url, &[]));
    let target = format!("http://{}", up.addr());
    let (local, remote, first_try) = rt.block_on(async {
        let service = format!("name=base&url={target}");
        assert_eq!(form(&node, "/services", &service).await.0, 201);
        assert_eq!(
            form(&node, "/services/base/routes", "paths[]=/base")
                .await
                .0,
            201
        );
        assert_eq!(status(&node, "/base").await, 200);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients: Vec<_> = [
            "/base/delay/200",
            "/base/delay/200",
            "/base/delay/200",
            "/base/delay/200",
            "/base",
        ]
        .into_iter()
        .zip(0..)
        .map(|(path, i)| {
            // Staggered, so that some slow request is always in flight.
            let after = Duration::from_millis(50 * i);
            tokio::spawn(keep_requesting(
                node.addr.clone(),
                path,
                after,
                stop.clone(),
            ))
        })
        .collect();
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (mut local, mut remote, mut first_try) = (Vec::new(), Vec::new(), 0);
        let mut writes = Vec::new();
        for i in 0..WRITES {
            let name = format!("new{i}");
            let sent = Instant::now();
            let (created, body) = form(
                &node,
                "/services/base/routes",
                &format!("name={name}&paths[]=/{name}"),
            )
            .await;
            assert_eq!(created, 201, "{body}");
            let acked = Instant::now();
            writes.push((sent, acked));
            let path = format!("/{name}");
            // Poll every few milliseconds: the first 200 is when the write took effect.
            let serves = |n: &Running| {
                let path = path.clone();
                let proxy = n.addr.clone();
                async move {
                    let mut polls = 0u32;
                    loop {
                        polls += 1;
                        let answered = client()
                            .get(format!("http://{proxy}{path}"))
                            .send()
                            .await
                            .map_or(0, |r| r.status().as_u16());
                        if answered == 200 {
                            return polls;
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            };
            let (took, polls) = tokio::time::timeout(Duration::from_secs(1), serves(&node))
                .await
                .map(|polls| (acked.elapsed(), polls))
                .unwrap_or_else(|_| panic!("{name} not served within 1 s of its 201"));
            local.push(took);
            first_try += usize::from(polls == 1);
            if let Some(other) = &other {
                let took = tokio::time::timeout(Duration::from_secs(3), serves(other))
                    .await
                    .map(|_| acked.elapsed())
                    .unwrap_or_else(|_| panic!("the other node does not serve {name}"));
                remote.push(took);
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (mut served, mut failed) = (Vec::new(), Vec::new());
        for c in clients {
            let (ok, errors) = c.await.expect("client task");
            served.extend(ok);
            failed.extend(errors);
        }
        assert!(failed.is_empty(), "requests in flight failed: {failed:?}");
        // A write landed during a request if the request started before the write was sent and
        // ended after its answer.
        let during = writes
            .iter()
            .filter(|(sent, acked)| served.iter().any(|(s, e)| s < sent && e > acked))
            .count();
        eprintln!(
            "{} requests through the proxy, none failed; {during} of {WRITES} writes landed \
             while a request was in flight",
            served.len()
        );
        assert!(
            during >= WRITES / 4,
            "only {during} writes overlapped a request"
        );
        (local, remote, first_try)
    });
    let summary = |times: &[Duration]| {
        let mut sorted = times.to_vec();
        sorted.sort();
        (sorted[sorted.len() / 2], sorted[sorted.len() - 1])
    };
    let (median, max) = summary(&local);
    eprintln!(
        "same node: median {median:?}, max {max:?}; {first_try} of {WRITES} served on the \
         first request after the 201"
    );
    for (i, took) in local.iter().enumerate() {
        assert!(*took < Duration::from_millis(100), "new{i}: {took:?}");
    }
    if follower {
        let (median, max) = summary(&remote);
        eprintln!("other node: median {median:?}, max {max:?}");
        for (i, took) in remote.iter().enumerate() {
            assert!(
                *took < Duration::from_secs(1),
                "new{i} on the other node: {took:?}"
            );
        }
    }
    node.signal("-TERM");
    node.assert_exits_cleanly();
    if let Some(other) = other {
        other.signal("-TERM");
        other.assert_exits_cleanly();
    }
}

#[test]
fn a_write_reaches_the_proxy_within_100ms_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("gatehouse.db").display());
    writes_reach_the_proxy(&url, false);
}

#[test]
fn a_write_reaches_the_proxy_within_100ms_on_postgres_and_the_other_node_within_1s() {
    let rt = runtime();
    let db = rt.block_on(PgDatabase::create());
    writes_reach_the_proxy(&db.url, true);
}

/// A write that waits for the database (another session holds the configuration's row lock)
/// does not hold up reads: `/status` and the entity lists answer at once, and the write
/// completes when the lock goes.
#[test]
fn reads_go_on_while_a_write_waits_for_the_database() {
    use sqlx::Connection;
    let (rt, _up, db, node) = postgres_node_serving("first");
    rt.block_on(async {
        let mut blocker = sqlx::PgConnection::connect(&db.url).await.expect("connect");
        sqlx::query("BEGIN")
            .execute(&mut blocker)
            .await
            .expect("BEGIN");
        sqlx::query("SELECT version FROM gatehouse_state WHERE name = 'config' FOR UPDATE")
            .execute(&mut blocker)
            .await
            .expect("lock");
        let admin = node.admin.clone();
        let write = tokio::spawn(async move {
            client()
                .post(format!("http://{admin}/consumers"))
                .json(&json!({ "username": "waiting" }))
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!write.is_finished(), "the write waits for the lock");
        let started = Instant::now();
        let health = admin_json(&node, "/status").await;
        assert_eq!(health["database"]["reachable"], true);
        assert_eq!(service_names(&node).await, vec!["first".to_string()]);
        let took = started.elapsed();
        assert!(took < Duration::from_millis(500), "reads took {took:?}");
        sqlx::query("COMMIT")
            .execute(&mut blocker)
            .await
            .expect("COMMIT");
        assert_eq!(write.await.expect("join").expect("answer"), 201);
        let consumer = admin_json(&node, "/consumers/waiting").await;
        assert_eq!(consumer["username"], "waiting");
    });
}

/// Kong's documented way to add a certificate: `curl -F cert=@site.pem -F key=@site.key -F
/// snis[]=…`; the SNIs come with it.
#[test]
fn certificates_are_created_from_multipart_files_with_their_snis() {
    let (rt, _up, _dir, url) = sqlite_setup();
    let node = Running::start_database(&url, &[]);
    let pki = crate::tls::Pki::new();
    let leaf = pki.leaf(&["shop.example"]);
    rt.block_on(async {
        let file = |name: &str, text: &str| {
            reqwest::multipart::Part::text(text.to_string())
                .file_name(name.to_string())
                .mime_str("application/x-pem-file")
                .expect("mime")
        };
        let form = reqwest::multipart::Form::new()
            .part("cert", file("site.pem", &leaf.cert))
            .part("key", file("site.key", &leaf.key))
            .text("snis[]", "shop.example")
            .text("tags[]", "web");
        let resp = client()
            .post(format!("http://{}/certificates", node.admin))
            .multipart(form)
            .send()
            .await
            .expect("POST /certificates");
        let status = resp.status();
        let created: Value = resp.json().await.expect("JSON");
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["tags"], json!(["web"]));
        let id = created["id"].as_str().expect("id");
        let snis = admin_json(&node, &format!("/certificates/{id}/snis")).await;
        assert_eq!(snis["data"][0]["name"], "shop.example", "{snis}");
    });
}

/// An entity keeps its identity: `POST` with another entity's id is Kong's primary key
/// violation (not a replacement), a `PUT` under one consumer cannot take another consumer's
/// credential over, and a `PUT` that names a kind without natural keys needs a UUID.
#[test]
fn entities_keep_their_identity() {
    let (rt, _up, _dir, url) = sqlite_setup();
    let node = Running::start_database(&url, &[]);
    rt.block_on(async {
        let (status, alice) = call(&node, "POST", "/consumers", "username=alice").await;
        assert_eq!(status, 201, "{alice}");
        assert_eq!(
            call(&node, "POST", "/consumers", "username=bob").await.0,
            201
        );
        let alice_id = alice["id"].as_str().expect("id").to_string();
        let (status, taken) = call(
            &node,
            "POST",
            "/consumers",
            &format!("id={alice_id}&username=mallory"),
        )
        .await;
        assert_eq!(status, 400, "{taken}");
        assert_eq!(taken["code"], 3);
        assert_eq!(taken["name"], "primary key violation");
        assert_eq!(
            admin_json(&node, "/consumers/alice").await["id"],
            alice_id.as_str()
        );

        let (status, key) = call(&node, "POST", "/consumers/alice/key-auth", "key=alice-key").await;
        assert_eq!(status, 201, "{key}");
        let key_id = key["id"].as_str().expect("id");
        let (status, _) = call(
            &node,
            "PUT",
            &format!("/consumers/bob/key-auth/{key_id}"),
            "key=stolen",
        )
        .await;
        assert_eq!(status, 404, "bob cannot take alice's credential over");
        let still = admin_json(&node, &format!("/key-auths/{key_id}")).await;
        assert_eq!(still["consumer"]["id"], alice_id.as_str());
        assert_eq!(still["key"], "alice-key");

        let (status, invalid) = call(&node, "PUT", "/certificates/not-a-uuid", "").await;
        assert_eq!(status, 400, "{invalid}");
        assert_eq!(invalid["name"], "invalid primary key");
    });
}

/// Form values take the types of the entity's schema, as Kong types them: a plugin's
/// `config.message=404` stays text while `config.status_code=403` is a number, and a single
/// `paths=/a` is a list of one.
#[test]
fn form_values_are_typed_by_the_schemas() {
    let (rt, up, _dir, url) = sqlite_setup();
    let node = Running::start_database(&url, &[]);
    rt.block_on(async {
        let service = format!("name=s&url=http://{}&retries=2", up.addr());
        let (status, created) = call(&node, "POST", "/services", &service).await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["retries"], 2);
        let (status, route) =
            call(&node, "POST", "/services/s/routes", "name=r&paths=/typed").await;
        assert_eq!(status, 201, "{route}");
        assert_eq!(route["paths"], json!(["/typed"]));
        let (status, plugin) = call(
            &node,
            "POST",
            "/routes/r/plugins",
            "name=request-termination&config.status_code=403&config.message=404",
        )
        .await;
        assert_eq!(status, 201, "{plugin}");
        assert_eq!(plugin["config"]["status_code"], 403);
        assert_eq!(plugin["config"]["message"], "404");
        let id = plugin["id"].as_str().expect("id");
        let (status, patched) = call(
            &node,
            "PATCH",
            &format!("/plugins/{id}"),
            "config.status_code=451",
        )
        .await;
        assert_eq!(status, 200, "{patched}");
        assert_eq!(patched["config"]["status_code"], 451);
        assert_eq!(status_of(&node, "/typed", None).await, 451);
    });
}
