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

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use serde_json::{Map, Value};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row};

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
    #[error("{collection}/{id} appears twice in the configuration")]
    Duplicate { collection: String, id: String },
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
    ///
    /// Only the rows that differ are written: those gone are deleted, those new or changed
    /// (body or position) are upserted, so a change to one entity costs a few row writes
    /// whatever the size of the configuration.
    pub async fn replace(
        &self,
        expected: Option<i64>,
        document: &Value,
    ) -> Result<i64, StoreError> {
        Ok(self.replace_counted(expected, document).await?.0)
    }

    /// [`Store::replace`], with the number of rows it wrote.
    async fn replace_counted(
        &self,
        expected: Option<i64>,
        document: &Value,
    ) -> Result<(i64, Written), StoreError> {
        let rows = rows_of(document)?;
        let (version, written) = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // Taking the write lock first (the row on PostgreSQL, the database on SQLite)
            // orders this write against every other node's; the rows read below are then
            // those of the last committed write (PostgreSQL's read committed takes a snapshot
            // per statement).
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
            let stored = sqlx::query("SELECT collection, id, position, body FROM gatehouse_entities")
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .map(|r| {
                    Ok((
                        (r.try_get::<String, _>("collection")?, r.try_get::<String, _>("id")?),
                        (r.try_get::<i64, _>("position")?, r.try_get::<String, _>("body")?),
                    ))
                })
                .collect::<Result<HashMap<_, _>, sqlx::Error>>()?;
            let changes = diff(stored, rows);
            let mut written = Written::default();
            // Every row gone, of whatever collection (one this version does not know too,
            // as the whole-table delete this replaces did).
            for gone in changes.delete.chunk_by(|a, b| a.0 == b.0) {
                for chunk in gone.chunks(CHUNK) {
                    let Some((collection, _)) = chunk.first() else { continue };
                    let mut q = QueryBuilder::new("DELETE FROM gatehouse_entities WHERE collection = ");
                    q.push_bind(collection.as_str()).push(" AND id IN (");
                    let mut list = q.separated(", ");
                    for (_, id) in chunk {
                        list.push_bind(id.as_str());
                    }
                    q.push(")");
                    written.deleted += q.build().execute(&mut *tx).await?.rows_affected();
                }
            }
            for chunk in changes.upsert.chunks(CHUNK) {
                let mut q = QueryBuilder::new("INSERT INTO gatehouse_entities (collection, id, position, body) ");
                q.push_values(chunk, |mut row, r| {
                    row.push_bind(r.collection)
                        .push_bind(r.id.as_str())
                        .push_bind(r.position)
                        .push_bind(r.body.as_str());
                });
                q.push(
                    " ON CONFLICT (collection, id) DO UPDATE \
                     SET position = excluded.position, body = excluded.body",
                );
                written.upserted += q.build().execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            (version, written)
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
        Ok((version, written))
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

/// Rows per statement: 4 parameters a row stays far below PostgreSQL's 65,535 and SQLite's
/// 32,766, and a statement this size already costs little per row.
const CHUNK: usize = 1000;

/// The rows one write changed (as the database counted them).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Written {
    upserted: u64,
    deleted: u64,
}

/// One entity of a document, as a row.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NewRow {
    collection: &'static str,
    id: String,
    position: i64,
    body: String,
}

/// A collection's name and its entities' `(id, body)` in document order.
type Collection = (&'static str, Vec<(String, String)>);

/// For each collection in order, its entities' `(id, body)` in document order (entities
/// without an id are skipped: a compiled document has ids on all). An id twice in one
/// collection is refused, as the table's key would.
fn rows_of(document: &Value) -> Result<Vec<Collection>, StoreError> {
    let mut rows = Vec::new();
    for &name in COLLECTIONS {
        let Some(Value::Array(list)) = document.get(name) else {
            continue;
        };
        let mut seen = HashSet::new();
        let mut entities = Vec::with_capacity(list.len());
        for entity in list {
            let Some(id) = entity.get("id").and_then(Value::as_str) else {
                continue;
            };
            if !seen.insert(id) {
                return Err(StoreError::Duplicate {
                    collection: name.to_string(),
                    id: id.to_string(),
                });
            }
            entities.push((id.to_string(), entity.to_string()));
        }
        rows.push((name, entities));
    }
    Ok(rows)
}

/// What a write must do to turn the stored rows into the new ones.
#[derive(Debug, Default)]
struct Changes {
    /// `(collection, id)` of rows no longer in the document.
    delete: Vec<(String, String)>,
    /// Rows new, or whose body or position changed.
    upsert: Vec<NewRow>,
}

/// The rows to delete and to write, given the stored rows (`(collection, id)` to
/// `(position, body)`) and the new ones. Positions only order a collection's rows, so an
/// entity keeps its stored position while that still sorts it right ([`positions`]): a
/// deletion or an append moves no other row.
fn diff(mut stored: HashMap<(String, String), (i64, String)>, new: Vec<Collection>) -> Changes {
    let mut changes = Changes::default();
    for (collection, entities) in new {
        // Taken out of `stored`, so what is left at the end is what is gone.
        let old: Vec<Option<(i64, String)>> = entities
            .iter()
            .map(|(id, _)| stored.remove(&(collection.to_string(), id.clone())))
            .collect();
        let at: Vec<Option<i64>> = old.iter().map(|o| o.as_ref().map(|(p, _)| *p)).collect();
        for (((id, body), position), old) in entities.into_iter().zip(positions(&at)).zip(old) {
            let same = matches!(&old, Some((p, b)) if *p == position && *b == body);
            if !same {
                changes.upsert.push(NewRow {
                    collection,
                    id,
                    position,
                    body,
                });
            }
        }
    }
    changes.delete = stored.into_keys().collect();
    // A stable order: statements (and their locks) in the same order on every write.
    changes.delete.sort();
    changes
}

/// Strictly increasing positions for a collection's entities in their new order, given the
/// stored position of each (`None`: a new entity). The longest run of stored positions that
/// still ascends is kept; the others are placed in the gaps between (before the first, after
/// the last); when a gap is too narrow, the collection is numbered again from 0 (rows whose
/// position that leaves unchanged are still not written).
fn positions(stored: &[Option<i64>]) -> Vec<i64> {
    let keep = longest_ascending(stored);
    let mut out = vec![0; stored.len()];
    let mut lower: Option<i64> = None;
    let mut i = 0;
    while i < stored.len() {
        if keep[i] {
            // `keep` holds only entities with a stored position.
            let p = stored[i].unwrap_or_default();
            out[i] = p;
            lower = Some(p);
            i += 1;
            continue;
        }
        let start = i;
        while i < stored.len() && !keep[i] {
            i += 1;
        }
        let run = (i - start) as i64;
        let upper = if i < stored.len() { stored[i] } else { None };
        let first = match (lower, upper) {
            (None, None) => 0,
            (Some(l), None) => l + 1,
            (None, Some(u)) => u - run,
            (Some(l), Some(u)) if u - l > run => l + 1,
            (Some(_), Some(_)) => return (0..stored.len() as i64).collect(),
        };
        for (k, slot) in out[start..i].iter_mut().enumerate() {
            *slot = first + k as i64;
        }
    }
    out
}

/// Which entries belong to a longest strictly ascending subsequence of the `Some` values
/// (patience sorting, O(n log n)).
fn longest_ascending(values: &[Option<i64>]) -> Vec<bool> {
    // tails[k]: index of the smallest last value of an ascending run of length k + 1.
    let mut tails: Vec<usize> = Vec::new();
    let mut prev: Vec<Option<usize>> = vec![None; values.len()];
    for (i, v) in values.iter().enumerate() {
        let Some(v) = *v else { continue };
        let k = tails.partition_point(|&t| values[t].is_some_and(|tv| tv < v));
        prev[i] = k.checked_sub(1).map(|k| tails[k]);
        if k == tails.len() {
            tails.push(i);
        } else {
            tails[k] = i;
        }
    }
    let mut keep = vec![false; values.len()];
    let mut at = tails.last().copied();
    while let Some(i) = at {
        keep[i] = true;
        at = prev[i];
    }
    keep
}

#[cfg(test)]
pub(crate) mod test_db;
#[cfg(test)]
mod tests;
