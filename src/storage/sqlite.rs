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
        narrow_to_owner(options.get_filename());
        let file = options.get_filename().to_path_buf();
        let directory = options.get_filename().parent().map(Path::to_path_buf);
        if let Some(directory) =
            directory.filter(|path| create_if_missing && !path.as_os_str().is_empty())
        {
            crate::storage::create_private_dir(&directory).with_context(|| {
                format!(
                    "could not create {}, the folder of database.url (APP_DATABASE__URL)",
                    directory.display()
                )
            })?;
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
            .with_context(|| {
                format!(
                    "could not open the SQLite database {} (database.url, APP_DATABASE__URL): \
                     check that its folder exists and that this user may write to it",
                    file.display()
                )
            })?;
        Ok(Self { pool })
    }
}

/// A database file that its group or others may read is narrowed to its owner before SQLite
/// opens it, and so are its `-wal` and `-shm` files. The service creates them owner-only (umask
/// 077), but a restored copy is not: `sqlite3 .backup` and `cp` write under the operator's umask,
/// usually 0644, and SQLite gives the `-wal` and `-shm` files it creates the database file's mode.
/// The allowlisted columns, sessions and the audit log would be readable by every local account.
/// Logged at WARN, since it changes a file the operator put there. A file of another user, or
/// one that cannot be changed (a read-only mount), is left as it is, with a warning: the start
/// goes on as it did before this check.
fn narrow_to_owner(database: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let mut files = vec![database.to_path_buf()];
        for suffix in ["-wal", "-shm"] {
            let mut name = database.as_os_str().to_owned();
            name.push(suffix);
            files.push(name.into());
        }
        for file in files {
            // Missing (a new database, or no WAL yet) or not a plain file: nothing to narrow.
            let Ok(metadata) = std::fs::metadata(&file) else {
                continue;
            };
            let mode = metadata.permissions().mode() & 0o777;
            if !metadata.is_file() || mode & 0o077 == 0 {
                continue;
            }
            if metadata.uid() != rustix::process::geteuid().as_raw() {
                tracing::warn!(
                    file = %file.display(),
                    "the SQLite file may be read by its group or others (mode {mode:04o}) and \
                     belongs to another user: left as it is; its owner should run `chmod go=` on it"
                );
                continue;
            }
            let narrowed = mode & 0o700;
            match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(narrowed)) {
                Ok(()) => tracing::warn!(
                    file = %file.display(),
                    "the SQLite file could be read by its group or others (mode {mode:04o}, a \
                     restored copy?); narrowed it to its owner ({narrowed:04o})"
                ),
                Err(error) => tracing::warn!(
                    file = %file.display(),
                    "the SQLite file may be read by its group or others (mode {mode:04o}) and \
                     could not be narrowed ({error}): left as it is"
                ),
            }
        }
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

    /// A restored copy written under a umask of 022 (as `sqlite3 .backup` and `cp` leave it),
    /// with a `-wal` beside it, is narrowed to its owner when opened, and the `-wal` and `-shm`
    /// files SQLite creates from then on are owner-only too.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_database_readable_by_others_is_narrowed_to_its_owner_before_it_is_opened() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.db");
        let url = format!("sqlite://{}", path.display());
        let mode = |name: &str| {
            std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        let store = SqliteStore::connect(&url, 1, crate::storage::Timeouts::default(), true)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&store.pool)
            .await
            .unwrap();
        store.pool.close().await;
        // As a restore leaves it: the file, and a stale -wal, readable by all.
        std::fs::write(dir.path().join("vault.db-wal"), b"").unwrap();
        for name in ["vault.db", "vault.db-wal"] {
            std::fs::set_permissions(
                dir.path().join(name),
                std::fs::Permissions::from_mode(0o644),
            )
            .unwrap();
        }
        std::fs::remove_file(dir.path().join("vault.db-shm")).ok();

        let store = SqliteStore::connect(&url, 1, crate::storage::Timeouts::default(), false)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&store.pool)
            .await
            .unwrap();
        assert_eq!(mode("vault.db"), 0o600);
        assert_eq!(mode("vault.db-wal"), 0o600);
        // Created by SQLite after the narrowing, with the database file's mode.
        assert_eq!(mode("vault.db-shm"), 0o600);
        store.pool.close().await;

        // A file that is owner-only already is left as it is (0400 stays 0400).
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        narrow_to_owner(&path);
        assert_eq!(mode("vault.db"), 0o400);

        // Another user's file is left as it is (narrowing it could lock that user out); only
        // root can make one here.
        if rustix::process::geteuid().is_root() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
            narrow_to_owner(&path);
            assert_eq!(mode("vault.db"), 0o644, "another user's file was changed");
        }
    }

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
