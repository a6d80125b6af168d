//! The storage layer under the service: what no HTTP request can time precisely enough to test.

use std::future::Future;
use std::str::FromStr;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use sqlx::Connection as _;

use crate::helpers::{Backend, TestDatabase};

/// Polls `begin` once, so that it is in flight, and waits for its BEGIN to reach the database
/// (PostgreSQL shows it as a session "idle in transaction"; SQLite shows nothing, so there it
/// waits a moment). Panics if `begin` finished within its poll: the test could not drop it in
/// flight then.
async fn until_begin_is_in_flight<F: Future>(
    begin: &mut std::pin::Pin<Box<F>>,
    database: &TestDatabase,
) {
    let mut context = Context::from_waker(Waker::noop());
    for _ in 0..50 {
        assert!(
            matches!(begin.as_mut().poll(&mut context), Poll::Pending),
            "BEGIN was answered within one poll; it could not be dropped in flight"
        );
        let TestDatabase::Postgres { url, .. } = database else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            return;
        };
        let mut observer = sqlx::PgConnection::connect(url).await.unwrap();
        for _ in 0..20 {
            let open: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND pid <> pg_backend_pid() AND state = 'idle in transaction'",
            )
            .fetch_one(&mut observer)
            .await
            .unwrap();
            if open > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    panic!("the BEGIN never reached the database");
}

/// A caller dropped while its BEGIN is on the way (actix drops the handler of a client that hung
/// up) must not leave the connection in an open transaction: sqlx 0.9.0's PostgreSQL driver does
/// (launchbadge/sqlx#4393), and the next write on that connection, answered as done, would then
/// sit in that transaction until something rolled it back. `storage::begin`, which every store
/// method uses, waits for the BEGIN on a task of its own.
async fn a_begin_dropped_in_flight_leaves_no_transaction_open_for_the_next_write(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(database) = TestDatabase::create_for_test(backend, dir.path()).await else {
        return;
    };
    macro_rules! exercise {
        ($pool:expr) => {{
            let pool = $pool;
            sqlx::query("CREATE TABLE probe (x INTEGER)")
                .execute(&pool)
                .await
                .unwrap();
            let mut begin = Box::pin(incident_vault::storage::begin(&pool));
            until_begin_is_in_flight(&mut begin, &database).await;
            drop(begin);
            // One connection in the pool: this write gets the one the BEGIN went out on.
            sqlx::query("INSERT INTO probe (x) VALUES (1)")
                .execute(&pool)
                .await
                .unwrap();
            // Seen from elsewhere, the write is there: it was not left inside an open transaction.
            let seen = database.count("SELECT count(*) FROM probe").await;
            assert_eq!(
                seen, 1,
                "the write after an abandoned BEGIN is not visible elsewhere"
            );
            // And the connection is still usable for a transaction of its own.
            let mut transaction = incident_vault::storage::begin(&pool).await.unwrap();
            sqlx::query("INSERT INTO probe (x) VALUES (2)")
                .execute(&mut *transaction)
                .await
                .unwrap();
            transaction.commit().await.unwrap();
            pool.close().await;
        }};
    }
    match &database {
        TestDatabase::Sqlite { url, file } => {
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                .unwrap()
                .create_if_missing(true);
            exercise!(
                sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(options)
                    .await
                    .unwrap()
            );
        }
        TestDatabase::Postgres { url, .. } => {
            exercise!(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .connect(url)
                    .await
                    .unwrap()
            );
        }
    }
    assert_eq!(database.count("SELECT count(*) FROM probe").await, 2);
}

/// A session ended by logout leaves no copy of its row in the SQLite file: the row holds the
/// reviewer's identity sealed under a key derived from the session token, and a stolen database
/// file plus a cookie found later (a seized laptop) must open nothing. With `secure_delete` the
/// deleted row is overwritten with zeros; without it, it stays readable in the page's free space.
/// (PostgreSQL keeps dead rows until VACUUM reuses their space; the README says so.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_out_session_leaves_no_copy_of_its_sealed_identity_in_the_sqlite_file() {
    let Some(app) = crate::helpers::spawn_app(Backend::Sqlite).await else {
        return;
    };
    let TestDatabase::Sqlite { file, url } = &app.database else {
        unreachable!("a SQLite app has a SQLite database");
    };
    let admin = app.enrol_first_admin("ada").await;
    let token = app.login(&admin).await;
    let hash = incident_vault::crypto::session::SessionToken::parse(&token)
        .unwrap()
        .lookup_hash();
    let session = app
        .store
        .live_session(&hash, crate::people::now() as i64)
        .await
        .unwrap()
        .expect("the session is stored")
        .0;
    let sealed = session.sealed_identity;
    let file_holds_it = || {
        let bytes = std::fs::read(file).unwrap();
        bytes.windows(sealed.len()).any(|window| window == sealed)
    };
    let checkpoint = || async {
        let mut connection = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut connection)
            .await
            .unwrap();
    };
    checkpoint().await;
    assert!(file_holds_it(), "the live session is in the file");

    let logout = app
        .send(
            reqwest::Method::POST,
            "/api/v1/auth/logout",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(logout.status(), 204);
    checkpoint().await;
    assert!(
        !file_holds_it(),
        "the sealed identity of an ended session is still readable in the file"
    );
}

crate::on_both_backends!(a_begin_dropped_in_flight_leaves_no_transaction_open_for_the_next_write);
