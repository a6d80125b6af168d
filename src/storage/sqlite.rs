//! SQLite: the embedded default. WAL, so readers never wait for the writer; `synchronous = FULL`,
//! so an acknowledged report survives a power cut; a busy timeout, so concurrent writers queue
//! instead of failing.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::SqlitePool;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a writer waits for the write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

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
        create_if_missing: bool,
    ) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .context("database.url is not a valid sqlite:// URL")?
            .create_if_missing(create_if_missing)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
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
            .connect_with(options)
            .await
            .context("could not open the SQLite database")?;
        Ok(Self { pool })
    }
}

super::sql::impl_store!(SqliteStore, "sqlite", MIGRATOR);
