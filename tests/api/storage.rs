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

/// A full disk under SQLite: reports refused while it is full, and every report answered 201 is
/// stored, during and after, once space is back. A failed COMMIT used to leave its connection
/// inside a transaction that sqlx had lost track of; later reports on that connection were
/// answered 201 inside it, never committed, and gone after a restart (while the lock it held made
/// every other writer time out). The database sits on a small tmpfs, which needs root: without
/// it the test skips loudly (and fails in CI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_report_answered_201_around_a_full_disk_is_stored() {
    let mount = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3M", "tmpfs"])
        .arg(mount.path())
        .status()
        .is_ok_and(|status| status.success());
    if !mounted {
        crate::helpers::skip_or_fail("a tmpfs mount (root)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(mount.path().to_owned());
    let file = mount.path().join("vault.db");
    let url = format!("sqlite://{}", file.display());
    let Some(app) = crate::helpers::spawn_app_with(Backend::Sqlite, |settings| {
        settings.database.url = url.clone();
    })
    .await
    else {
        return;
    };
    let filler = mount.path().join("filler");
    let free = |path: &std::path::Path| {
        let _ = std::fs::remove_file(path);
    };
    // Fill what is left but a little.
    {
        use std::io::Write as _;
        let mut out = std::fs::File::create(&filler).unwrap();
        let block = vec![0_u8; 4096];
        while out.write_all(&block).is_ok() {}
    }
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for index in 0..40 {
        let response = app
            .post_report(
                &crate::helpers::minimal_report(&format!("report {index} on a full disk")),
                None,
            )
            .await;
        if response.status() == 201 {
            let body: serde_json::Value = response.json().await.unwrap();
            acknowledged.push(body["case_ref"].as_str().unwrap().to_owned());
        } else {
            refused += 1;
        }
    }
    assert!(
        refused > 0,
        "the disk never filled: the test proves nothing"
    );
    free(&filler);
    let before_freeing = acknowledged.len();
    for index in 0..20 {
        let response = app
            .post_report(
                &crate::helpers::minimal_report(&format!(
                    "report {index} after the disk was freed"
                )),
                None,
            )
            .await;
        if response.status() == 201 {
            let body: serde_json::Value = response.json().await.unwrap();
            acknowledged.push(body["case_ref"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        acknowledged.len() - before_freeing,
        20,
        "intake did not recover once space was back"
    );
    app.stop().await;
    // Closing the store rolls back whatever a connection still held open.
    app.store.close().await;
    let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let stored: std::collections::BTreeSet<String> = sqlx::query_scalar(
        "SELECT c.id FROM cases c WHERE EXISTS (SELECT 1 FROM entries e WHERE e.case_id = c.id) \
         AND EXISTS (SELECT 1 FROM grants g WHERE g.case_id = c.id AND g.grantee_kind = 'escrow')",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|case| !stored.contains(*case))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged reports are not stored: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
}
