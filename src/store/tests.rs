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
