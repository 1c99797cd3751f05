//! The schema, as numbered migrations applied in order, each once (`gatehouse migrations up`,
//! and on start). The same SQL runs on SQLite and PostgreSQL.

use sqlx::Row;

use super::{Backend, Store, StoreError};

/// `(name, SQL)` in the order they apply. Never edit one that has shipped: add another.
pub const MIGRATIONS: &[(&str, &str)] = &[(
    "0001_entities",
    "CREATE TABLE gatehouse_entities (
        collection TEXT NOT NULL,
        id TEXT NOT NULL,
        position BIGINT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (collection, id)
    );
    CREATE TABLE gatehouse_state (name TEXT PRIMARY KEY, version BIGINT NOT NULL);
    INSERT INTO gatehouse_state (name, version) VALUES ('config', 0);",
)];

const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS gatehouse_migrations (
    name TEXT PRIMARY KEY,
    applied_at BIGINT NOT NULL
)";

/// One migration and whether the database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    pub name: &'static str,
    pub applied: bool,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Store {
    /// Apply the migrations the database does not have yet, in one transaction (nodes
    /// starting together on one PostgreSQL take turns). Returns the names applied.
    pub async fn migrate(&self) -> Result<Vec<&'static str>, StoreError> {
        macro_rules! run {
            ($pool:expr, $lock:expr) => {{
                let mut tx = $pool.begin().await?;
                if let Some(lock) = $lock {
                    sqlx::query(lock).execute(&mut *tx).await?;
                }
                sqlx::raw_sql(CREATE_LEDGER).execute(&mut *tx).await?;
                let done: Vec<String> = sqlx::query("SELECT name FROM gatehouse_migrations")
                    .fetch_all(&mut *tx)
                    .await?
                    .into_iter()
                    .map(|r| r.try_get::<String, _>("name"))
                    .collect::<Result<_, _>>()?;
                let mut applied = Vec::new();
                for (name, sql) in MIGRATIONS {
                    if done.iter().any(|d| d == name) {
                        continue;
                    }
                    sqlx::raw_sql(*sql).execute(&mut *tx).await?;
                    sqlx::query(
                        "INSERT INTO gatehouse_migrations (name, applied_at) VALUES ($1, $2)",
                    )
                    .bind(*name)
                    .bind(now())
                    .execute(&mut *tx)
                    .await?;
                    applied.push(*name);
                }
                tx.commit().await?;
                applied
            }};
        }
        let applied = match &self.backend {
            Backend::Sqlite(pool) => run!(pool, None::<&'static str>),
            // Held until the transaction ends.
            Backend::Postgres(pool) => run!(pool, Some("SELECT pg_advisory_xact_lock(7306871203)")),
        };
        Ok(applied)
    }

    /// Every migration, applied or not.
    pub async fn migration_status(&self) -> Result<Vec<MigrationStatus>, StoreError> {
        let done: Vec<String> = match &self.backend {
            Backend::Sqlite(pool) => {
                sqlx::raw_sql(CREATE_LEDGER).execute(pool).await?;
                names(
                    sqlx::query("SELECT name FROM gatehouse_migrations")
                        .fetch_all(pool)
                        .await?,
                )?
            }
            Backend::Postgres(pool) => {
                sqlx::raw_sql(CREATE_LEDGER).execute(pool).await?;
                names(
                    sqlx::query("SELECT name FROM gatehouse_migrations")
                        .fetch_all(pool)
                        .await?,
                )?
            }
        };
        Ok(MIGRATIONS
            .iter()
            .map(|(name, _)| MigrationStatus {
                name,
                applied: done.iter().any(|d| d == name),
            })
            .collect())
    }

    /// An error naming the pending migrations, if any.
    pub async fn ensure_migrated(&self) -> Result<(), StoreError> {
        let pending: Vec<&str> = self
            .migration_status()
            .await?
            .into_iter()
            .filter(|m| !m.applied)
            .map(|m| m.name)
            .collect();
        if pending.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Pending(pending.join(", ")))
        }
    }
}

fn names<R: Row>(rows: Vec<R>) -> Result<Vec<String>, sqlx::Error>
where
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    rows.into_iter()
        .map(|r| r.try_get::<String, _>("name"))
        .collect()
}
