//! The binary itself: `migrate`, and `serve` as an operator starts it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{Backend, TestDatabase};

fn binary(database: &TestDatabase, dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_incident-vault"));
    command
        .env("APP_DATABASE__URL", database.url())
        .env("APP_STORAGE__DATA_DIR", dir.join("data"))
        .env("APP_SERVER__BIND", "127.0.0.1:0")
        .env("APP_TELEMETRY__FORMAT", "json")
        .env_remove("APP_ESCROW__RECIPIENT");
    command
}

async fn migrate_prepares_an_empty_database_and_exits(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(database) = TestDatabase::create_for_test(backend, dir.path()).await else {
        return;
    };

    let output = binary(&database, dir.path())
        .arg("migrate")
        .output()
        .unwrap();

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected = migration_versions(backend);
    assert!(!expected.is_empty());
    let applied = database.applied_migrations().await;
    assert_eq!(
        applied,
        expected
            .iter()
            .map(|&version| (version, true))
            .collect::<Vec<_>>(),
        "one successful row per file of migrations/"
    );
    assert!(
        database
            .table_names()
            .await
            .iter()
            .any(|name| name == "cases"),
        "the schema was created"
    );
    let again = binary(&database, dir.path())
        .arg("migrate")
        .output()
        .unwrap();
    assert!(again.status.success(), "migrating twice is harmless");
    assert_eq!(
        database.applied_migrations().await,
        applied,
        "and applies nothing twice"
    );
}

/// The versions of the migration files of `backend`, in order: `0003_x.sql` is version 3.
fn migration_versions(backend: Backend) -> Vec<i64> {
    let folder = match backend {
        Backend::Sqlite => "migrations/sqlite",
        Backend::Postgres => "migrations/postgres",
    };
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
    let mut versions: Vec<i64> = std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".sql"))
        .map(|name| {
            let (version, _) = name.split_once('_').expect("NNNN_name.sql");
            version.parse().expect("a numbered migration")
        })
        .collect();
    versions.sort_unstable();
    versions
}

async fn serve_without_a_terminal_or_an_escrow_recipient_refuses_to_start(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(database) = TestDatabase::create_for_test(backend, dir.path()).await else {
        return;
    };

    let output = binary(&database, dir.path())
        .arg("serve")
        .stdin(Stdio::null())
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("APP_ESCROW__RECIPIENT") && stderr.contains("age-keygen"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains("AGE-SECRET-KEY"));
}

async fn serve_without_a_terminal_logs_no_setup_code_and_stops_cleanly_on_sigterm(
    backend: Backend,
) {
    let dir = tempfile::tempdir().unwrap();
    let Some(database) = TestDatabase::create_for_test(backend, dir.path()).await else {
        return;
    };
    let escrow = age::x25519::Identity::generate();
    let mut child = binary(&database, dir.path())
        .arg("serve")
        .env("APP_ESCROW__RECIPIENT", escrow.to_public().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Keep reading stdout to the end, as a terminal would, and signal the ready line.
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (ready_sender, ready) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in stdout.lines().map_while(Result::ok) {
            if line.contains("incident-vault is ready") {
                let _ = ready_sender.send(());
            }
            lines.push(line);
        }
        lines
    });
    assert!(
        ready.recv_timeout(Duration::from_secs(60)).is_ok(),
        "the service never said it was ready"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the service did not stop within 20 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    // Without a terminal, stdout is the log: the first start's setup code is not in it, only
    // how to ask for one.
    let lines = reader.join().unwrap();
    assert!(
        lines.iter().all(|line| !line.contains("setup code:")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.contains("run `incident-vault setup-code`")),
        "{lines:?}"
    );
}

/// An operator's shell without the service's environment points the commands at a database
/// that is not there: each fails and names the setting, and none creates a database in its place.
#[test]
fn operator_commands_create_no_database_where_there_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-here").join("incident-vault.db");
    let url = format!("sqlite://{}", missing.display());
    for arguments in [
        &["setup-code"][..],
        &[
            "escrow",
            "grant",
            "--identity",
            "x.txt",
            "--to",
            "rita",
            "--all",
        ],
        &["reviewer", "export-identity", "rita", "--out", "rita.txt"],
        &[
            "desk",
            "grant-cases",
            "default",
            "--as",
            "ada",
            "--to",
            "rita",
        ],
        &["audit", "verify"],
        &["case", "decrypt", "--identity", "x.txt", "K7QM-3XTA-9PWD"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_incident-vault"))
            .args(arguments)
            .env("APP_DATABASE__URL", &url)
            .env("APP_STORAGE__DATA_DIR", dir.path().join("data"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();

        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{arguments:?}");
        assert!(
            stderr.contains("APP_DATABASE__URL"),
            "{arguments:?}: {stderr}"
        );
        assert!(!missing.exists(), "{arguments:?} created the database");
        assert!(
            !missing.parent().unwrap().exists(),
            "{arguments:?} created its folder"
        );
    }
}

/// `init` refused for want of an escrow recipient (no terminal to show a generated one) leaves
/// its target as it was: an empty PostgreSQL database stays ready for `pg_restore`, a SQLite
/// path stays free for a restored file. Then an operator command on that empty database says it
/// holds no instance of this service and names it, instead of a raw "no such table".
async fn a_refused_init_creates_nothing_and_commands_name_an_empty_database(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(database) = TestDatabase::create_for_test(backend, dir.path()).await else {
        return;
    };

    let init = binary(&database, dir.path())
        .arg("init")
        .stdin(Stdio::null())
        .output()
        .unwrap();

    let stderr = String::from_utf8_lossy(&init.stderr);
    assert!(!init.status.success(), "{stderr}");
    assert!(stderr.contains("APP_ESCROW__RECIPIENT"), "{stderr}");
    assert!(!created_or_migrated(&database).await, "{stderr}");

    if let TestDatabase::Sqlite { file, .. } = &database {
        // An empty file where the restored one will go.
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, b"").unwrap();
    }
    let verify = binary(&database, dir.path())
        .args(["audit", "verify"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(!verify.status.success(), "{stderr}");
    assert!(stderr.contains("holds no instance"), "{stderr}");
    assert!(
        !stderr.contains("no such table") && !stderr.contains("does not exist"),
        "{stderr}"
    );
    let place = incident_vault::storage::describe_url(database.url());
    assert!(stderr.contains(&place), "{place}: {stderr}");
}

/// A setting of the wrong type is refused by its variable, before anything is created: a word
/// for a number, and a number for a choice of words.
#[test]
fn a_mistyped_setting_is_refused_by_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("db").join("incident-vault.db");
    for (variable, value, said) in [
        (
            "APP_SERVER__WORKERS",
            "many",
            "APP_SERVER__WORKERS must be a whole number",
        ),
        ("APP_TELEMETRY__FORMAT", "5", "(APP_TELEMETRY__FORMAT)"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_incident-vault"))
            .arg("migrate")
            .env("APP_DATABASE__URL", format!("sqlite://{}", file.display()))
            .env("APP_STORAGE__DATA_DIR", dir.path().join("data"))
            .env(variable, value)
            .stdin(Stdio::null())
            .output()
            .unwrap();

        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(stderr.contains(said), "{stderr}");
        assert!(!file.exists() && !dir.path().join("data").exists());
    }
}

/// Whether the SQLite file exists, or the PostgreSQL database holds a table.
async fn created_or_migrated(database: &TestDatabase) -> bool {
    match database {
        TestDatabase::Sqlite { file, .. } => file.exists(),
        TestDatabase::Postgres { url, .. } => {
            use sqlx::Connection;
            let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
            let tables: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
            )
            .fetch_one(&mut connection)
            .await
            .unwrap();
            tables > 0
        }
    }
}

/// A production start whose config folder is missing or mistyped is refused by name instead of
/// running on local defaults, and creates nothing; with its folder, production migrates only a
/// database that `init` prepared.
async fn production_migrates_only_with_its_config_layer_and_an_initialised_database(
    backend: Backend,
) {
    let dir = tempfile::tempdir().unwrap();
    let Some(database) = TestDatabase::create_for_test(backend, dir.path()).await else {
        return;
    };
    let empty = dir.path().join("no-config-here");
    std::fs::create_dir(&empty).unwrap();

    let output = binary(&database, dir.path())
        .arg("migrate")
        .env("APP_ENVIRONMENT", "production")
        .env("APP_CONFIG_DIR", &empty)
        .output()
        .unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("production.toml"), "{stderr}");
    assert!(stderr.contains("APP_CONFIG_DIR"), "{stderr}");
    let touched = created_or_migrated(&database).await;
    assert!(
        !touched,
        "the refused command created or migrated the database"
    );

    // With its layer, production still migrates no empty database (a restore may be on its
    // way), and says where it looked and what to run instead.
    let production = || {
        binary(&database, dir.path())
            .arg("migrate")
            .env("APP_ENVIRONMENT", "production")
            .env(
                "APP_CONFIG_DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
            )
            .output()
            .unwrap()
    };
    let empty = production();
    let stderr = String::from_utf8_lossy(&empty.stderr);
    assert!(!empty.status.success(), "{stderr}");
    assert!(stderr.contains("refused to migrate the "), "{stderr}");
    assert!(stderr.contains("incident-vault init"), "{stderr}");
    assert!(!created_or_migrated(&database).await, "{stderr}");
    if let TestDatabase::Sqlite { file, .. } = &database {
        // An empty SQLite file (one that exists, with no tables) is refused the same way.
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, b"").unwrap();
        let empty_file = production();
        let stderr = String::from_utf8_lossy(&empty_file.stderr);
        assert!(!empty_file.status.success(), "{stderr}");
        assert!(stderr.contains("holds no instance"), "{stderr}");
    } else {
        assert!(stderr.contains("holds no instance"), "{stderr}");
    }

    // Once initialised (as `init` does), production migrates, and names the database.
    let escrow = age::x25519::Identity::generate().to_public().to_string();
    let init = binary(&database, dir.path())
        .arg("init")
        .env("APP_ESCROW__RECIPIENT", &escrow)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let found = production();
    let stdout = String::from_utf8_lossy(&found.stdout);
    assert!(
        found.status.success(),
        "{}",
        String::from_utf8_lossy(&found.stderr)
    );
    let named = match &database {
        TestDatabase::Sqlite { file, .. } => file.display().to_string(),
        TestDatabase::Postgres { .. } => "the PostgreSQL database `".to_owned(),
    };
    assert!(stdout.contains(&named), "{stdout}");
    assert!(stdout.contains("migrations are up to date"), "{stdout}");
}

crate::on_both_backends!(
    migrate_prepares_an_empty_database_and_exits,
    production_migrates_only_with_its_config_layer_and_an_initialised_database,
    serve_without_a_terminal_or_an_escrow_recipient_refuses_to_start,
    serve_without_a_terminal_logs_no_setup_code_and_stops_cleanly_on_sigterm,
    a_refused_init_creates_nothing_and_commands_name_an_empty_database,
);
