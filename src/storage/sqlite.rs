//! SQLite: the embedded default. WAL, so readers never wait for the writer; `synchronous = FULL`,
//! so an acknowledged report survives a power cut; a busy timeout
//! (`database.lock_timeout_seconds`), so concurrent writers queue instead of failing, for that
//! long and no longer; `secure_delete`, so a deleted row is overwritten with zeros instead of
//! staying readable in a free part of its page: a purged session holds a reviewer's identity sealed
//! under its token, and a stolen file plus a cookie found later must not open it (DESIGN §3).
//! Copies in older `-wal` frames last until SQLite reuses them.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::SqlitePool;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// The SQLite store.
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens the database file named by a `sqlite://` URL, creating it (and its folder) only
    /// when `create_if_missing`.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        timeouts: super::Timeouts,
        create_if_missing: bool,
    ) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .context("database.url is not a valid sqlite:// URL")?
            .create_if_missing(create_if_missing)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            // SQLite has no statement time-out: its only waits are for the write lock.
            .busy_timeout(timeouts.lock)
            .foreign_keys(true)
            .pragma("secure_delete", "ON");
        let directory = options.get_filename().parent().map(Path::to_path_buf);
        if let Some(directory) =
            directory.filter(|path| create_if_missing && !path.as_os_str().is_empty())
        {
            crate::storage::create_private_dir(&directory)
                .with_context(|| format!("could not create {}", directory.display()))?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(15))
            // An open SQLite connection is a file handle in this process: there is no server to
            // lose, so sqlx's ping before every use is a wasted round trip to its worker thread.
            .test_before_acquire(false)
            // See `storage::in_a_lost_transaction`.
            .before_acquire(|connection, _| {
                Box::pin(async move { Ok(!crate::storage::in_a_lost_transaction(connection)) })
            })
            .connect_with(options)
            .await
            .context("could not open the SQLite database")?;
        Ok(Self { pool })
    }
}

impl SqliteStore {
    /// Nothing to lift for migrations: SQLite has no statement time-out, and its busy timeout
    /// only makes a migration that meets a writer wait for it.
    async fn before_migrating(_: &mut sqlx::SqliteConnection) -> sqlx::Result<()> {
        Ok(())
    }
}

super::sql::impl_store!(SqliteStore, "sqlite", MIGRATOR);

#[cfg(test)]
mod tests {
    use super::*;

    /// The durability promises of this module's header hold on every connection the pool hands
    /// out, not just the first: sqlx applies the options per connection, so two are checked.
    #[tokio::test]
    async fn every_pooled_connection_uses_wal_full_sync_the_busy_timeout_foreign_keys_and_secure_delete()
     {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}",
            dir.path().join("db").join("vault.db").display()
        );
        let timeouts = crate::storage::Timeouts {
            lock: Duration::from_secs(7),
            ..crate::storage::Timeouts::default()
        };
        let store = SqliteStore::connect(&url, 2, timeouts, true).await.unwrap();

        let mut connections = Vec::new();
        for _ in 0..2 {
            connections.push(store.pool.acquire().await.unwrap());
        }

        for connection in &mut connections {
            let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&mut **connection)
                .await
                .unwrap();
            assert_eq!(journal_mode, "wal");
            let busy_timeout_ms: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
                .fetch_one(&mut **connection)
                .await
                .unwrap();
            assert_eq!(
                u128::try_from(busy_timeout_ms).unwrap(),
                timeouts.lock.as_millis()
            );
            // 2 is FULL: https://sqlite.org/pragma.html#pragma_synchronous
            let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut **connection)
                .await
                .unwrap();
            assert_eq!(synchronous, 2, "synchronous is not FULL");
            let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
                .fetch_one(&mut **connection)
                .await
                .unwrap();
            assert_eq!(foreign_keys, 1, "foreign keys are not enforced");
            let secure_delete: i64 = sqlx::query_scalar("PRAGMA secure_delete")
                .fetch_one(&mut **connection)
                .await
                .unwrap();
            assert_eq!(secure_delete, 1, "deleted rows are not overwritten");
        }
    }
}
