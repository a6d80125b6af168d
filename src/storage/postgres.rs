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
    pub async fn connect(
        url: &str,
        max_connections: u32,
        timeouts: super::Timeouts,
    ) -> anyhow::Result<Self> {
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
            .after_connect(move |connection, _| Box::pin(prepare_session(connection, timeouts)))
            .connect(url)
            .await
            .context("could not connect to PostgreSQL")?;
        Ok(Self { pool })
    }

    /// Migrations run without the session's time-outs: one may rewrite a large table, or wait
    /// for another node's migration (sqlx takes an advisory lock), and each is one transaction
    /// that either lands whole or not at all. Their connection is closed afterwards, not pooled.
    async fn before_migrating(connection: &mut sqlx::PgConnection) -> sqlx::Result<()> {
        use sqlx::Executor as _;
        connection
            .execute(
                "SET statement_timeout = 0; SET lock_timeout = 0; \
                 SET idle_in_transaction_session_timeout = 0",
            )
            .await?;
        Ok(())
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
            // The server's own words, once: sqlx's error shows them and then again as its
            // source, with the line of PostgreSQL's C code that raised them.
            if let sqlx::Error::Database(database) = &error {
                let code = database
                    .code()
                    .map(|code| format!(" ({code})"))
                    .unwrap_or_default();
                // Its detail and hint, where it gave them, say what to do (a role that may not
                // log in, a database to create). Connecting names no value of ours, so neither
                // quotes anything secret.
                let more: String = database
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .into_iter()
                    .flat_map(|postgres| [postgres.detail(), postgres.hint()])
                    .flatten()
                    .map(|text| format!("; {text}"))
                    .collect();
                anyhow::bail!(
                    "could not connect to {place}: the server said: {}{code}{more}",
                    database.message()
                );
            }
            return Err(anyhow::Error::new(error).context(format!("could not connect to {place}")));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// How soon the server probes a client connection that has gone quiet, and how often, before it
/// gives the connection up (PostgreSQL's `tcp_keepalives_*`, TCP only): an application node that
/// crashed or lost its network has its sessions, and any locks they held, ended within about
/// two minutes instead of the kernel's default two hours.
const KEEPALIVE_IDLE_SECONDS: u32 = 60;
const KEEPALIVE_INTERVAL_SECONDS: u32 = 10;
const KEEPALIVE_COUNT: u32 = 6;

/// Sets up each new connection's session, in one round trip per connection and none per request
/// (a pooler in transaction mode would hand these session settings to other clients; sqlx's
/// prepared statements need session mode anyway).
///
/// - An acknowledged report is never lost: with `synchronous_commit = off` (a server, database
///   or role default some operators set for speed), PostgreSQL answers COMMIT before the WAL
///   reaches the disk, and a crash in the next moments loses cases whose receipts the reporters
///   already hold. `off` becomes `on`, and any other value (`local`, `on`, `remote_write`,
///   `remote_apply`) is kept as it is, so that a later `ALTER SYSTEM … off` and reload cannot
///   reach a pooled session either.
/// - No request waits without end: a lock held elsewhere is waited for `timeouts.lock`, a
///   statement runs for at most `timeouts.statement`, and a session left that long inside a
///   transaction (its client gone) is ended with its locks. Set here, they override whatever the
///   database or role says.
async fn prepare_session(
    connection: &mut sqlx::PgConnection,
    timeouts: super::Timeouts,
) -> sqlx::Result<()> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let milliseconds = |duration: Duration| format!("{}ms", duration.as_millis());
    // The subquery reads the setting before the outer query sets it (`OFFSET 0` keeps the
    // planner from folding the two into one list).
    let was: String = sqlx::query_scalar(
        "SELECT was, set_config('synchronous_commit', \
         CASE was WHEN 'off' THEN 'on' ELSE was END, false), \
         set_config('lock_timeout', $1, false), \
         set_config('statement_timeout', $2, false), \
         set_config('idle_in_transaction_session_timeout', $2, false), \
         set_config('tcp_keepalives_idle', $3, false), \
         set_config('tcp_keepalives_interval', $4, false), \
         set_config('tcp_keepalives_count', $5, false) \
         FROM (SELECT current_setting('synchronous_commit') AS was OFFSET 0) AS setting",
    )
    .bind(milliseconds(timeouts.lock))
    .bind(milliseconds(timeouts.statement))
    .bind(KEEPALIVE_IDLE_SECONDS.to_string())
    .bind(KEEPALIVE_INTERVAL_SECONDS.to_string())
    .bind(KEEPALIVE_COUNT.to_string())
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

#[cfg(test)]
mod tests {
    use sqlx::Executor as _;

    use super::*;
    use crate::storage::{Store, Timeouts};

    /// A fresh database on the PostgreSQL of this machine kind, or `None` (loudly) when there is
    /// none; in CI (`CI=true`) its absence fails the test instead.
    async fn fresh_database() -> Option<(String, String)> {
        let server = std::env::var("TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let admin = format!("{server}/postgres");
        let connected =
            tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(&admin)).await;
        let Ok(Ok(mut connection)) = connected else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "PostgreSQL at {server} is required in CI"
            );
            eprintln!("SKIPPED: PostgreSQL at {server} cannot be reached");
            return None;
        };
        let name = format!("iv_unit_{:016x}", rand::random::<u64>());
        connection
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap();
        Some((admin, name))
    }

    /// The settings `prepare_session` makes, by name, as PostgreSQL reports them.
    async fn session_settings(connection: &mut sqlx::PgConnection) -> Vec<(String, String)> {
        sqlx::query_as(
            "SELECT name, setting FROM pg_settings WHERE name IN ('lock_timeout', \
             'statement_timeout', 'idle_in_transaction_session_timeout', \
             'tcp_keepalives_idle', 'tcp_keepalives_interval', 'tcp_keepalives_count', \
             'synchronous_commit') ORDER BY name",
        )
        .fetch_all(connection)
        .await
        .unwrap()
    }

    /// A connection the server refuses (here: no such database) is described by the server's
    /// words once, with their code, and without the line of PostgreSQL's C code that raised them.
    #[tokio::test]
    async fn a_refused_connection_is_described_by_the_servers_words_once() {
        let Some((admin, name)) = fresh_database().await else {
            return;
        };
        let missing = format!("{}/{name}_missing", admin.trim_end_matches("/postgres"));

        let message = format!("{:#}", first_connection(&missing).await.unwrap_err());

        assert_eq!(message.matches("does not exist").count(), 1, "{message}");
        assert!(message.contains("(3D000)"), "{message}");
        assert!(!message.contains(" at line "), "{message}");
        let mut setup = sqlx::PgConnection::connect(&admin).await.unwrap();
        setup
            .execute(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}")))
            .await
            .unwrap();
    }

    /// Every pooled connection, not just the first, carries the session settings that keep a
    /// request from waiting without end and an acknowledged report durable, whatever the
    /// database's own defaults; the migration, which runs without the time-outs, hands no
    /// connection without them to the pool; and `before_migrating` lifts them.
    #[tokio::test]
    async fn every_pooled_connection_has_the_time_outs_keepalives_and_durable_commits() {
        let Some((admin, name)) = fresh_database().await else {
            return;
        };
        let url = format!("{}/{name}", admin.trim_end_matches("/postgres"));
        let mut setup = sqlx::PgConnection::connect(&admin).await.unwrap();
        setup
            .execute(sqlx::AssertSqlSafe(format!(
                "ALTER DATABASE {name} SET statement_timeout = 0; \
                 ALTER DATABASE {name} SET lock_timeout = 0; \
                 ALTER DATABASE {name} SET synchronous_commit = off"
            )))
            .await
            .unwrap();
        let timeouts = Timeouts {
            lock: Duration::from_secs(7),
            statement: Duration::from_secs(42),
        };
        let store = PostgresStore::connect(&url, 3, timeouts).await.unwrap();
        assert!(store.migrate().await.unwrap() > 0);

        let mut connections = Vec::new();
        for _ in 0..3 {
            connections.push(store.pool.acquire().await.unwrap());
        }
        let mut seen = Vec::new();
        for connection in &mut connections {
            seen.push(session_settings(connection).await);
        }
        // Over TCP (this test's URL) the keepalives read back as set; over a Unix socket,
        // where they do not apply, PostgreSQL reads them as 0.
        let over_tcp: bool = sqlx::query_scalar("SELECT inet_server_addr() IS NOT NULL")
            .fetch_one(&mut *connections[0])
            .await
            .unwrap();
        let lifted_for_migrations = {
            let connection = &mut *connections[0];
            PostgresStore::before_migrating(connection).await.unwrap();
            session_settings(connection).await
        };
        connections[0].close_on_drop();
        drop(connections);
        store.pool.close().await;
        setup
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE {name} WITH (FORCE)"
            )))
            .await
            .unwrap();

        // Milliseconds, except the keepalives' seconds.
        let keepalive = |value: &'static str| if over_tcp { value } else { "0" };
        let expected = vec![
            ("idle_in_transaction_session_timeout", "42000"),
            ("lock_timeout", "7000"),
            ("statement_timeout", "42000"),
            ("synchronous_commit", "on"),
            ("tcp_keepalives_count", keepalive("6")),
            ("tcp_keepalives_idle", keepalive("60")),
            ("tcp_keepalives_interval", keepalive("10")),
        ];
        for settings in &seen {
            let found: Vec<(&str, &str)> = settings
                .iter()
                .map(|(name, setting)| (name.as_str(), setting.as_str()))
                .collect();
            assert_eq!(found, expected);
        }
        let lifted: Vec<(&str, &str)> = lifted_for_migrations
            .iter()
            .map(|(name, setting)| (name.as_str(), setting.as_str()))
            .filter(|(name, _)| name.ends_with("_timeout"))
            .collect();
        assert_eq!(
            lifted,
            [
                ("idle_in_transaction_session_timeout", "0"),
                ("lock_timeout", "0"),
                ("statement_timeout", "0"),
            ]
        );
    }

    /// A migration run (`migrate`, or a start) waits for a lock held on the migrations' own
    /// table, as the migrations themselves wait for theirs, instead of failing at the pool's lock
    /// time-out: the counts before and after are read on the migration's connection too.
    #[tokio::test]
    async fn migrating_waits_for_a_lock_on_the_migrations_table_past_the_lock_timeout() {
        let Some((admin, name)) = fresh_database().await else {
            return;
        };
        let url = format!("{}/{name}", admin.trim_end_matches("/postgres"));
        let timeouts = Timeouts {
            lock: Duration::from_secs(1),
            statement: Duration::from_secs(1),
        };
        let store = PostgresStore::connect(&url, 2, timeouts).await.unwrap();
        store.migrate().await.unwrap();
        let mut holder = sqlx::PgConnection::connect(&url).await.unwrap();
        holder.execute("BEGIN").await.unwrap();
        holder
            .execute("LOCK TABLE _sqlx_migrations IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        // Held for three lock time-outs, then released.
        let releasing = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            holder.execute("ROLLBACK").await.unwrap();
        });

        let migrated = store.migrate().await;

        releasing.await.unwrap();
        store.pool.close().await;
        let mut setup = sqlx::PgConnection::connect(&admin).await.unwrap();
        setup
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE {name} WITH (FORCE)"
            )))
            .await
            .unwrap();
        assert_eq!(migrated.unwrap(), 0, "nothing was left to apply");
    }
}
