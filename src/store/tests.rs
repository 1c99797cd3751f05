//! The store on a real SQLite file and a real PostgreSQL database (127.0.0.1:5432, one
//! database per test, dropped at the end).

use serde_json::json;

use super::test_db::PgDatabase;
use super::*;

fn document(service: &str) -> Value {
    json!({
        "_format_version": "3.0",
        "services": [
            {"id": "5f1e4ad4-3c0b-4a4e-9a55-000000000001", "name": service, "url": "http://127.0.0.1:9"},
        ],
        "routes": [
            {"id": "5f1e4ad4-3c0b-4a4e-9a55-000000000002", "name": "b", "paths": ["/b"],
             "service": {"id": "5f1e4ad4-3c0b-4a4e-9a55-000000000001"}},
            {"id": "5f1e4ad4-3c0b-4a4e-9a55-000000000003", "name": "a", "paths": ["/a"],
             "service": {"id": "5f1e4ad4-3c0b-4a4e-9a55-000000000001"}},
        ],
    })
}

/// What every backend must do: migrate once, start empty, store and load back in order,
/// refuse a write computed from an old version.
async fn behaves(store: &Store) {
    assert_eq!(
        store.migrate().await.expect("migrate"),
        vec!["0001_entities"]
    );
    assert!(store.migrate().await.expect("again").is_empty());
    assert!(
        store
            .migration_status()
            .await
            .expect("status")
            .iter()
            .all(|m| m.applied)
    );
    store.ensure_migrated().await.expect("migrated");
    assert!(store.reachable().await);

    let empty = store.load().await.expect("load");
    assert_eq!(empty.version, 0);
    assert_eq!(empty.document, json!({"_format_version": "3.0"}));

    let v1 = store
        .replace(Some(0), &document("one"))
        .await
        .expect("write");
    assert_eq!(v1, 1);
    let loaded = store.load().await.expect("load");
    assert_eq!(loaded.version, 1);
    assert_eq!(loaded.document, document("one"), "order and content kept");
    // The loaded document is a valid configuration.
    let text = loaded.document.to_string();
    crate::snapshot::load_str("database", &text).expect("compiles");

    let err = store
        .replace(Some(0), &document("stale"))
        .await
        .expect_err("computed from version 0");
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                expected: 0,
                actual: 1
            }
        ),
        "{err}"
    );
    assert_eq!(store.load().await.expect("load").document, document("one"));

    assert_eq!(
        store.replace(None, &document("two")).await.expect("write"),
        2
    );
    assert_eq!(store.version().await.expect("version"), 2);
    assert_eq!(store.load().await.expect("load").document, document("two"));
}

#[tokio::test]
async fn sqlite_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("g.db").display());
    let store = Store::open(&url).await.expect("open");
    assert_eq!(store.kind(), "sqlite");
    behaves(&store).await;
    store.close().await;
    // Durable: a new pool on the same file sees it all.
    let again = Store::open(&url).await.expect("reopen");
    assert_eq!(again.load().await.expect("load").document, document("two"));
    again.close().await;
}

#[tokio::test]
async fn postgres() {
    let db = PgDatabase::create().await;
    let store = Store::open(&db.url).await.expect("open");
    assert_eq!(store.kind(), "postgres");
    let mut listener = store.listen().await.expect("listen").expect("a listener");
    behaves(&store).await;
    let note = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("notified in time")
        .expect("notification");
    assert_eq!(note.channel(), NOTIFY_CHANNEL);
    // The database refusing connections: not reachable, writes fail; then back again.
    db.admin(
        "ALTER DATABASE {db} ALLOW_CONNECTIONS false; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{db}' AND pid <> pg_backend_pid()",
    )
    .await;
    assert!(!store.reachable().await);
    assert!(store.replace(None, &document("down")).await.is_err());
    db.admin("ALTER DATABASE {db} ALLOW_CONNECTIONS true").await;
    assert!(store.reachable().await);
    assert_eq!(
        store.replace(None, &document("back")).await.expect("write"),
        3
    );
    // The listener holds one of the pool's connections: closing waits for it.
    drop(listener);
    store.close().await;
}

#[tokio::test]
async fn bad_urls_are_named() {
    let err = Store::open("mysql://localhost/x")
        .await
        .expect_err("unsupported");
    assert!(err.to_string().contains("mysql://localhost/x"), "{err}");
}

#[tokio::test]
async fn an_unmigrated_database_says_what_to_run() {
    let store = Store::open("sqlite::memory:").await.expect("open");
    let err = store.ensure_migrated().await.expect_err("pending");
    assert!(err.to_string().contains("gatehouse migrations up"), "{err}");
    assert!(err.to_string().contains("0001_entities"), "{err}");
}

#[test]
fn positions_keep_what_still_sorts() {
    // Nothing stored: numbered from 0.
    assert_eq!(positions(&[None, None, None]), vec![0, 1, 2]);
    // Unchanged.
    assert_eq!(positions(&[Some(0), Some(1), Some(2)]), vec![0, 1, 2]);
    // Appended: after the last.
    assert_eq!(positions(&[Some(0), Some(1), None, None]), vec![0, 1, 2, 3]);
    // Deleted from the middle: the others keep theirs.
    assert_eq!(positions(&[Some(0), Some(2), Some(3)]), vec![0, 2, 3]);
    // Inserted into a gap a deletion left.
    assert_eq!(positions(&[Some(0), None, Some(2)]), vec![0, 1, 2]);
    // Moved to the front: before the first; moved to the end: after the last.
    assert_eq!(positions(&[Some(2), Some(0), Some(1)]), vec![-1, 0, 1]);
    assert_eq!(positions(&[Some(1), Some(2), Some(0)]), vec![1, 2, 3]);
    // Inserted where there is no gap: numbered again.
    assert_eq!(positions(&[Some(0), None, Some(1)]), vec![0, 1, 2]);
    // Reversed: one kept, the others placed before it.
    assert_eq!(positions(&[Some(2), Some(1), Some(0)]), vec![-2, -1, 0]);
    // Strictly ascending whatever the input (a position stored twice).
    let p = positions(&[Some(5), Some(5), None, Some(3), Some(9)]);
    assert!(p.windows(2).all(|w| w[0] < w[1]), "{p:?}");
}

#[test]
fn an_id_twice_in_a_collection_is_refused() {
    let id = "5f1e4ad4-3c0b-4a4e-9a55-000000000009";
    let doc = json!({"consumers": [{"id": id, "username": "a"}, {"id": id, "username": "b"}]});
    let err = rows_of(&doc).expect_err("a duplicate id");
    assert!(matches!(err, StoreError::Duplicate { .. }), "{err}");
    assert!(err.to_string().contains(id), "{err}");
}

fn uuid(kind: u32, i: usize) -> String {
    format!("00000000-0000-4000-8000-{kind:04}{i:08}")
}

/// `services` services and as many routes (route i on service i), and `consumers` consumers.
fn sized(services: usize, consumers: usize) -> Value {
    let service =
        |i: usize| json!({"id": uuid(1, i), "name": format!("s{i}"), "url": "http://127.0.0.1:9"});
    let route = |i: usize| {
        json!({"id": uuid(2, i), "name": format!("r{i}"), "paths": [format!("/r{i}")],
               "service": {"id": uuid(1, i)}})
    };
    let consumer = |i: usize| json!({"id": uuid(3, i), "username": format!("c{i}")});
    let mut doc = json!({"_format_version": "3.0"});
    if services > 0 {
        doc["services"] = (0..services).map(service).collect();
        doc["routes"] = (0..services).map(route).collect();
    }
    if consumers > 0 {
        doc["consumers"] = (0..consumers).map(consumer).collect();
    }
    doc
}

/// What the database itself says about which rows were written, to check the store's count
/// against: on PostgreSQL each row's `xmin` (the transaction that wrote its current
/// version), on SQLite the connection's `total_changes()` (the pool has one connection).
enum Probe {
    Marks(HashMap<(String, String), String>),
    Changes(i64),
}

async fn probe(store: &Store) -> Probe {
    match &store.backend {
        Backend::Postgres(pool) => Probe::Marks(
            sqlx::query("SELECT collection, id, xmin::text AS mark FROM gatehouse_entities")
                .fetch_all(pool)
                .await
                .expect("xmin")
                .into_iter()
                .map(|r| {
                    (
                        (r.get::<String, _>("collection"), r.get::<String, _>("id")),
                        r.get::<String, _>("mark"),
                    )
                })
                .collect(),
        ),
        Backend::Sqlite(pool) => Probe::Changes(
            sqlx::query("SELECT total_changes() AS n")
                .fetch_one(pool)
                .await
                .expect("total_changes")
                .get::<i64, _>("n"),
        ),
    }
}

/// The entity rows written between two probes (inserted, updated or deleted).
fn written_between(before: &Probe, after: &Probe) -> u64 {
    match (before, after) {
        (Probe::Marks(b), Probe::Marks(a)) => {
            let changed = a.iter().filter(|(k, m)| b.get(*k) != Some(*m)).count();
            let gone = b.keys().filter(|k| !a.contains_key(*k)).count();
            (changed + gone) as u64
        }
        // Less the version row every write updates (and the probe's own statements change
        // nothing).
        (Probe::Changes(b), Probe::Changes(a)) => (a - b - 1) as u64,
        _ => panic!("probes of different backends"),
    }
}

/// One replace: it loads back exactly, writes `upserted`/`deleted` rows as the store counts
/// them, and the database agrees on how many rows were written.
async fn step(store: &Store, what: &str, doc: &Value, upserted: u64, deleted: u64) {
    let version = store.version().await.expect("version");
    let before = probe(store).await;
    let (v, written) = store
        .replace_counted(Some(version), doc)
        .await
        .expect("replace");
    assert_eq!(v, version + 1, "{what}: version");
    let after = probe(store).await;
    assert_eq!(
        written,
        Written { upserted, deleted },
        "{what}: rows the store wrote"
    );
    assert_eq!(
        written_between(&before, &after),
        upserted + deleted,
        "{what}: rows the database saw written"
    );
    assert_eq!(&store.load().await.expect("load").document, doc, "{what}");
}

/// A sequence of writes, each loading back exactly and writing only the rows that changed.
async fn writes_only_what_changed(store: &Store) {
    store.migrate().await.expect("migrate");
    let mut doc = sized(5, 3);
    step(store, "first write", &doc, 13, 0).await;
    step(store, "the same again", &doc, 0, 0).await;

    let list = |doc: &Value, name: &str| -> Vec<Value> {
        doc[name].as_array().cloned().expect("a collection")
    };
    let mut consumers = list(&doc, "consumers");
    consumers.push(json!({"id": uuid(3, 100), "username": "appended"}));
    doc["consumers"] = consumers.into();
    step(store, "append", &doc, 1, 0).await;

    doc["services"][2]["name"] = json!("renamed");
    step(store, "change one", &doc, 1, 0).await;

    // A route and its service from the middle: the others keep their rows.
    for name in ["routes", "services"] {
        let mut entities = list(&doc, name);
        entities.remove(2);
        doc[name] = entities.into();
    }
    step(store, "delete from the middle", &doc, 0, 2).await;

    // Into the gap the deletion left, and at the front.
    let mut consumers = list(&doc, "consumers");
    consumers.insert(0, json!({"id": uuid(3, 101), "username": "first"}));
    doc["consumers"] = consumers.into();
    step(store, "insert at the front", &doc, 1, 0).await;

    // The last route moved to the front: only it moves.
    let mut routes = list(&doc, "routes");
    let last = routes.pop().expect("a route");
    routes.insert(0, last);
    doc["routes"] = routes.into();
    step(store, "move one", &doc, 1, 0).await;

    // Reversed: all but one route move.
    let mut routes = list(&doc, "routes");
    routes.reverse();
    let n = routes.len() as u64;
    doc["routes"] = routes.into();
    step(store, "reverse", &doc, n - 1, 0).await;

    // A middle consumer moved one place on (no gap to put it in): the collection numbered
    // again, which writes some rows, and it still loads back in order.
    let mut consumers = list(&doc, "consumers");
    consumers.swap(1, 2);
    doc["consumers"] = consumers.into();
    let version = store.version().await.expect("version");
    store.replace(Some(version), &doc).await.expect("swap");
    assert_eq!(store.load().await.expect("load").document, doc, "swap");

    // Everything new: every old row deleted, every new one inserted.
    let all_new = json!({"_format_version": "3.0", "consumers": [
        {"id": uuid(4, 1), "username": "x"}, {"id": uuid(4, 2), "username": "y"}]});
    let stored = store
        .load()
        .await
        .expect("load")
        .document
        .as_object()
        .expect("a document")
        .iter()
        .filter_map(|(_, v)| v.as_array().map(Vec::len))
        .sum::<usize>() as u64;
    step(store, "replace all", &all_new, 2, stored).await;

    // A row of a collection this version does not know goes too, as with a whole-table
    // rewrite.
    on_pool!(store, pool => {
        sqlx::query(
            "INSERT INTO gatehouse_entities (collection, id, position, body) \
             VALUES ('retired', 'x', 0, '{}')",
        )
        .execute(pool)
        .await
        .expect("insert");
    });
    step(store, "unknown collection", &all_new, 0, 1).await;

    step(store, "empty", &json!({"_format_version": "3.0"}), 0, 2).await;
}

#[tokio::test]
async fn sqlite_writes_only_what_changed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("g.db").display());
    let store = Store::open(&url).await.expect("open");
    writes_only_what_changed(&store).await;
    store.close().await;
}

#[tokio::test]
async fn postgres_writes_only_what_changed() {
    let db = PgDatabase::create().await;
    let store = Store::open(&db.url).await.expect("open");
    writes_only_what_changed(&store).await;
    store.close().await;
}

/// More rows than one statement carries: chunked inserts and deletes.
async fn chunks(store: &Store) {
    store.migrate().await.expect("migrate");
    let big = sized(0, 2 * CHUNK + 7);
    step(store, "big", &big, 2 * CHUNK as u64 + 7, 0).await;
    step(store, "all gone", &sized(0, 1), 0, 2 * CHUNK as u64 + 6).await;
}

#[tokio::test]
async fn sqlite_chunks() {
    let store = Store::open("sqlite::memory:").await.expect("open");
    chunks(&store).await;
}

#[tokio::test]
async fn postgres_chunks() {
    let db = PgDatabase::create().await;
    let store = Store::open(&db.url).await.expect("open");
    chunks(&store).await;
    store.close().await;
}

/// The time of one single-entity write (a consumer added) with a configuration of 1,000 and
/// 5,000 entities (services and routes as the Admin API stores them), on SQLite and
/// PostgreSQL: `cargo test --release --lib store::tests::write_cost -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn write_cost() {
    const WRITES: usize = 21;
    for entities in [1000, 5000] {
        let text = sized(entities / 2, 0).to_string();
        let compiled = crate::snapshot::load_str("write_cost", &text).expect("compiles");
        let base = crate::config::export::declarative(&compiled.doc);
        for backend in ["sqlite", "postgres"] {
            let dir = tempfile::tempdir().expect("tempdir");
            let pg = if backend == "postgres" {
                Some(PgDatabase::create().await)
            } else {
                None
            };
            let url = match &pg {
                Some(db) => db.url.clone(),
                None => format!("sqlite://{}", dir.path().join("g.db").display()),
            };
            let store = Store::open(&url).await.expect("open");
            store.migrate().await.expect("migrate");
            let started = std::time::Instant::now();
            let mut version = store.replace(Some(0), &base).await.expect("first write");
            let first = started.elapsed();
            let mut doc = base.clone();
            let mut times = Vec::new();
            for i in 0..WRITES {
                let consumer = json!({"id": uuid(3, i), "username": format!("c{i}")});
                match doc.get_mut("consumers").and_then(Value::as_array_mut) {
                    Some(list) => list.push(consumer),
                    None => doc["consumers"] = json!([consumer]),
                }
                let started = std::time::Instant::now();
                version = store.replace(Some(version), &doc).await.expect("write");
                times.push(started.elapsed());
            }
            times.sort();
            println!(
                "write_cost {backend:8} {entities:5} entities: whole configuration {:8.1} ms, \
                 one entity median {:7.2} ms (min {:.2}, max {:.2}; {WRITES} writes)",
                first.as_secs_f64() * 1e3,
                times[WRITES / 2].as_secs_f64() * 1e3,
                times[0].as_secs_f64() * 1e3,
                times[WRITES - 1].as_secs_f64() * 1e3,
            );
            assert_eq!(store.load().await.expect("load").document, doc);
            store.close().await;
        }
    }
}
