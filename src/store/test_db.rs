//! A fresh PostgreSQL database per test (127.0.0.1:5432, trust authentication), dropped at
//! the end. Shared by the store's unit tests and the integration tests (included by path).

use sqlx::postgres::PgPool;

/// A fresh PostgreSQL database for one test, dropped when the guard goes.
pub struct PgDatabase {
    pub url: String,
    name: String,
}

const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

impl PgDatabase {
    /// Run `sql` on the server's maintenance database (for tests that act on this database
    /// from outside: refusing connections, say). `{db}` in `sql` is this database's name.
    pub async fn admin(&self, sql: &str) {
        let admin = PgPool::connect(PG_ADMIN_URL)
            .await
            .expect("PostgreSQL on 127.0.0.1:5432");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.replace("{db}", &self.name)))
            .execute(&admin)
            .await
            .expect("admin statement");
        admin.close().await;
    }

    pub async fn create() -> PgDatabase {
        let name = format!("gatehouse_test_{}", uuid::Uuid::new_v4().simple());
        let admin = PgPool::connect(PG_ADMIN_URL)
            .await
            .expect("PostgreSQL on 127.0.0.1:5432");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("create database");
        admin.close().await;
        PgDatabase {
            url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Off the test's runtime, which may be shutting down.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(admin) = PgPool::connect(PG_ADMIN_URL).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&admin)
                    .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}
