//! PostgreSQL: the production backend, for several stateless application nodes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");
/// How long the first connection of a start or a command may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// A pooled connection idle for longer than this is pinged before it is used.
const PING_AFTER_IDLE: Duration = Duration::from_secs(5);

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to the database named by a `postgres://` URL.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        first_connection(url).await?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(CONNECT_TIMEOUT)
            // sqlx pings every connection it hands out: one more round trip per request. Ping
            // only one that sat idle long enough for the server to have gone away since (a
            // restart, an idle-session timeout); a busy pool's connections are never stale.
            .test_before_acquire(false)
            .before_acquire(|connection, meta| {
                Box::pin(async move {
                    // See `storage::in_a_lost_transaction`.
                    if crate::storage::in_a_lost_transaction(connection) {
                        return Ok(false);
                    }
                    if meta.idle_for > PING_AFTER_IDLE {
                        connection.ping().await?;
                    }
                    Ok(true)
                })
            })
            .after_connect(|connection, _| Box::pin(insist_on_durable_commits(connection)))
            .connect(url)
            .await
            .context("could not connect to PostgreSQL")?;
        Ok(Self { pool })
    }
}

/// One plain connection before the pool is built. The pool retries a failed connection until
/// its acquire timeout and then says only "pool timed out"; this retries the same way (a server
/// still starting after a reboot, a restart: refused, or "starting up") and then names the
/// place and the last cause. What retrying cannot mend (authentication, no such database) fails
/// at once.
async fn first_connection(url: &str) -> anyhow::Result<()> {
    let place = super::describe_url(url);
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    let mut pause = Duration::from_millis(100);
    loop {
        let attempt = tokio::time::timeout_at(deadline, sqlx::PgConnection::connect(url)).await;
        let error = match attempt {
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
                return Ok(());
            }
            Ok(Err(error)) => error,
            Err(_) => {
                anyhow::bail!("could not connect to {place}: no answer within {CONNECT_TIMEOUT:?}")
            }
        };
        let worth_retrying = match &error {
            sqlx::Error::Io(_) => true,
            // 57P03: the database system is starting up (or shutting down).
            sqlx::Error::Database(database) => database.code().as_deref() == Some("57P03"),
            _ => false,
        };
        if !worth_retrying || tokio::time::Instant::now() + pause >= deadline {
            return Err(anyhow::Error::new(error).context(format!("could not connect to {place}")));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// An acknowledged report is never lost: with `synchronous_commit = off` (a server, database or
/// role default some operators set for speed), PostgreSQL answers COMMIT before the WAL reaches
/// the disk, and a crash in the next moments loses cases whose receipts the reporters already
/// hold. Each new connection pins the setting for its own session: `off` becomes `on`, and any
/// other value (`local`, `on`, `remote_write`, `remote_apply`) is kept as it is, so that a later
/// `ALTER SYSTEM … off` and reload cannot reach a pooled session either. One round trip per
/// connection, none per request. (A pooler in transaction mode would hand the session setting to
/// other clients; sqlx's prepared statements need session mode anyway.)
async fn insist_on_durable_commits(connection: &mut sqlx::PgConnection) -> sqlx::Result<()> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    // The subquery reads the setting before the outer query sets it (`OFFSET 0` keeps the
    // planner from folding the two into one list).
    let (was, _pinned): (String, String) = sqlx::query_as(
        "SELECT was, set_config('synchronous_commit', \
         CASE was WHEN 'off' THEN 'on' ELSE was END, false) \
         FROM (SELECT current_setting('synchronous_commit') AS was OFFSET 0) AS setting",
    )
    .fetch_one(&mut *connection)
    .await?;
    if was == "off" && !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "the database's synchronous_commit is off, which can lose acknowledged reports in a \
             crash: this service sets it to on for its own connections"
        );
    }
    Ok(())
}

super::sql::impl_store!(PostgresStore, "postgres", MIGRATOR);
