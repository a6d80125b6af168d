//! What the load benches share: which backends to run, and a PostgreSQL database of their own
//! for one run. Included with `mod common;` by each bench (cargo does not build this folder as a
//! bench of its own).

use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection, PgConnection};

const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const POSTGRES_BASE_URL: &str = "postgres://postgres@127.0.0.1:5432";

/// `BENCH_BACKENDS`: a comma-separated list of `sqlite` and `postgres` (default both).
pub fn backends_from_env() -> anyhow::Result<Vec<String>> {
    let backends = std::env::var("BENCH_BACKENDS")
        .unwrap_or_else(|_| "sqlite,postgres".into())
        .split(',')
        .map(|name| name.trim().to_lowercase())
        .filter(|name| !name.is_empty())
        .collect::<Vec<_>>();
    for backend in &backends {
        anyhow::ensure!(
            backend == "sqlite" || backend == "postgres",
            "BENCH_BACKENDS: unknown backend `{backend}`; use sqlite,postgres"
        );
    }
    Ok(backends)
}

/// A fresh, randomly named PostgreSQL database on 127.0.0.1:5432, dropped by [`Self::drop`].
pub struct ScratchDatabase {
    admin: PgConnection,
    name: String,
}

impl ScratchDatabase {
    /// Creates the database; `Err` is why PostgreSQL cannot be benched here (skip, not fail).
    pub async fn create() -> Result<Self, String> {
        let admin = tokio::time::timeout(
            Duration::from_secs(5),
            PgConnection::connect(POSTGRES_ADMIN_URL),
        )
        .await;
        let mut admin = match admin {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => return Err(format!("cannot connect to PostgreSQL: {error}")),
            Err(_) => return Err("PostgreSQL did not answer within 5 s".into()),
        };
        let name = format!("iv_bench_{:016x}", rand::random::<u64>());
        if let Err(error) = sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
        {
            return Err(format!("cannot create a database: {error}"));
        }
        Ok(Self { admin, name })
    }

    /// The database's URL.
    pub fn url(&self) -> String {
        format!("{POSTGRES_BASE_URL}/{}", self.name)
    }

    /// Drops the database (closing whatever still uses it); a failure is only a warning.
    pub async fn drop(mut self) {
        let name = &self.name;
        if let Err(error) = sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut self.admin)
        .await
        {
            println!("[postgres] WARNING: could not drop database {name}: {error}");
        }
        let _ = self.admin.close().await;
    }
}
