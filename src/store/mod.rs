//! The durable store of database mode: every entity as a row, in embedded SQLite (the default,
//! a file in the current directory) or PostgreSQL (nodes of a cluster share one database).
//!
//! A row is an entity as [`crate::config::export`] writes it (its id, its fields, references
//! as `{"id": …}`), so the whole configuration is the rows read back as one declarative
//! document, and it goes through the same decoding and compilation as a file. A version counter
//! orders the writes of every node: a write states the version it was computed from, and is
//! refused ([`StoreError::Conflict`]) when another write came first. Writes are acknowledged
//! only once committed (SQLite in WAL mode with `synchronous=FULL`; a committed PostgreSQL
//! transaction), and on PostgreSQL a commit notifies the other nodes (`LISTEN/NOTIFY`).

mod migrations;

use std::str::FromStr;
use std::time::Duration;

use serde_json::{Map, Value};
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::config::export::COLLECTIONS;

pub use migrations::{MIGRATIONS, MigrationStatus};

/// The channel PostgreSQL nodes are notified on (the payload is the new version).
pub const NOTIFY_CHANNEL: &str = "gatehouse_config";

/// The default database: an SQLite file in the current directory.
pub const DEFAULT_URL: &str = "sqlite://gatehouse.db";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL `{0}`: expected sqlite://PATH or postgres://...")]
    Url(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the configuration changed since version {expected} (now {actual}); read it again")]
    Conflict { expected: i64, actual: i64 },
    #[error("row {collection}/{id} is not valid JSON: {message}")]
    Corrupt {
        collection: String,
        id: String,
        message: String,
    },
    #[error("the database schema is not up to date (pending: {0}); run `gatehouse migrations up`")]
    Pending(String),
}

/// The whole configuration as stored, and the version it is at.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub version: i64,
    /// A declarative document (`_format_version` and the collections).
    pub document: Value,
}

#[derive(Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A connection pool on the configured database.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    url: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("kind", &self.kind()).finish()
    }
}

/// Run the same query code on either pool (sqlx's queries are typed by database).
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            Backend::Sqlite($pool) => $body,
            Backend::Postgres($pool) => $body,
        }
    };
}

impl Store {
    /// Connect to `url` (`sqlite://file.db`, `sqlite::memory:`, `postgres://…`). An SQLite
    /// file is created when missing. Nothing is migrated here: see [`Store::migrate`].
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let backend = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // Every commit reaches the disk before it is acknowledged.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10));
            // One writer at a time is what SQLite does anyway; a single connection also keeps
            // an in-memory database one database.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await?;
            Backend::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(5))
                .connect(url)
                .await?;
            Backend::Postgres(pool)
        } else {
            return Err(StoreError::Url(url.to_string()));
        };
        Ok(Store {
            backend,
            url: url.to_string(),
        })
    }

    /// `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// The URL the store was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the database answers now.
    pub async fn reachable(&self) -> bool {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.is_ok())
    }

    /// The version of the stored configuration (0: nothing written yet).
    pub async fn version(&self) -> Result<i64, StoreError> {
        let row = on_pool!(self, pool => sqlx::query(
            "SELECT version FROM gatehouse_state WHERE name = 'config'"
        )
        .fetch_one(pool)
        .await?.try_get::<i64, _>("version")?);
        Ok(row)
    }

    /// The whole configuration.
    pub async fn load(&self) -> Result<Stored, StoreError> {
        // Version and rows in one transaction, so they agree.
        let (version, rows) = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let version: i64 = sqlx::query("SELECT version FROM gatehouse_state WHERE name = 'config'")
                .fetch_one(&mut *tx)
                .await?
                .try_get("version")?;
            let rows = sqlx::query(
                "SELECT collection, id, body FROM gatehouse_entities ORDER BY collection, position",
            )
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|r| Ok((r.try_get::<String, _>("collection")?, r.try_get::<String, _>("id")?, r.try_get::<String, _>("body")?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
            tx.commit().await?;
            (version, rows)
        });
        let mut collections: Map<String, Value> = Map::new();
        for (collection, id, body) in rows {
            let entity: Value = serde_json::from_str(&body).map_err(|e| StoreError::Corrupt {
                collection: collection.clone(),
                id,
                message: e.to_string(),
            })?;
            if let Value::Array(list) = collections
                .entry(collection)
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                list.push(entity);
            }
        }
        let mut document = Map::new();
        document.insert("_format_version".into(), Value::from("3.0"));
        // In dependency order: an entity comes after those it names.
        for &name in COLLECTIONS {
            if let Some(list) = collections.remove(name) {
                document.insert(name.into(), list);
            }
        }
        Ok(Stored {
            version,
            document: Value::Object(document),
        })
    }

    /// Replace the whole configuration with `document`'s collections, if the stored one is
    /// still at version `expected` (`None`: whatever it is). Returns the new version once
    /// committed.
    pub async fn replace(
        &self,
        expected: Option<i64>,
        document: &Value,
    ) -> Result<i64, StoreError> {
        let rows = rows_of(document);
        let version = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // Taking the write lock first (the row on PostgreSQL, the database on SQLite)
            // orders this write against every other node's.
            let version: i64 = sqlx::query(
                "UPDATE gatehouse_state SET version = version + 1 WHERE name = 'config' RETURNING version",
            )
            .fetch_one(&mut *tx)
            .await?
            .try_get("version")?;
            if let Some(expected) = expected
                && version != expected + 1
            {
                tx.rollback().await?;
                return Err(StoreError::Conflict { expected, actual: version - 1 });
            }
            sqlx::query("DELETE FROM gatehouse_entities").execute(&mut *tx).await?;
            for (collection, position, id, body) in &rows {
                sqlx::query(
                    "INSERT INTO gatehouse_entities (collection, id, position, body) VALUES ($1, $2, $3, $4)",
                )
                .bind(collection)
                .bind(id)
                .bind(position)
                .bind(body)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            version
        });
        if let Backend::Postgres(pool) = &self.backend {
            // After the commit: a node that hears it reads a committed version. Losing a
            // notification costs only the polling interval.
            let _ = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(NOTIFY_CHANNEL)
                .bind(version.to_string())
                .execute(pool)
                .await;
        }
        Ok(version)
    }

    /// A listener for other nodes' writes (PostgreSQL only). It holds one of the pool's
    /// connections until dropped ([`Store::close`] waits for it).
    pub async fn listen(&self) -> Result<Option<sqlx::postgres::PgListener>, StoreError> {
        match &self.backend {
            Backend::Postgres(pool) => {
                let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
                listener.listen(NOTIFY_CHANNEL).await?;
                Ok(Some(listener))
            }
            Backend::Sqlite(_) => Ok(None),
        }
    }

    /// Close the pool (waits for connections in use).
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}

/// `(collection, position, id, body)` for every entity of a declarative document's
/// collections (entities without an id are skipped: a compiled document has ids on all).
fn rows_of(document: &Value) -> Vec<(String, i64, String, String)> {
    let mut rows = Vec::new();
    for &name in COLLECTIONS {
        let Some(Value::Array(list)) = document.get(name) else {
            continue;
        };
        for (position, entity) in list.iter().enumerate() {
            let Some(id) = entity.get("id").and_then(Value::as_str) else {
                continue;
            };
            rows.push((
                name.to_string(),
                position as i64,
                id.to_string(),
                entity.to_string(),
            ));
        }
    }
    rows
}

#[cfg(test)]
pub(crate) mod test_db;
#[cfg(test)]
mod tests;
