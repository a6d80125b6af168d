//! PostgreSQL: the production backend, for several stateless application nodes.

use std::time::Duration;

use anyhow::Context;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");
/// A pooled connection idle for longer than this is pinged before it is used.
const PING_AFTER_IDLE: Duration = Duration::from_secs(5);

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to the database named by a `postgres://` URL.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(15))
            // sqlx pings every connection it hands out: one more round trip per request. Ping
            // only one that sat idle long enough for the server to have gone away since (a
            // restart, an idle-session timeout); a busy pool's connections are never stale.
            .test_before_acquire(false)
            .before_acquire(|connection, meta| {
                Box::pin(async move {
                    if meta.idle_for > PING_AFTER_IDLE {
                        connection.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect(url)
            .await
            .context("could not connect to PostgreSQL")?;
        Ok(Self { pool })
    }
}

super::sql::impl_store!(PostgresStore, "postgres", MIGRATOR);
