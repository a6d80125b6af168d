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
    if let TestDatabase::Sqlite { file, .. } = &database {
        use std::os::unix::fs::PermissionsExt as _;
        for suffix in ["", "-wal", "-shm"] {
            let path = format!("{}{suffix}", file.display());
            if let Ok(metadata) = std::fs::metadata(&path) {
                let mode = metadata.permissions().mode() & 0o777;
                assert_eq!(mode & 0o077, 0, "{path} is readable by others: {mode:o}");
            }
        }
    }
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
    // Refused before anything was made: the target may be waiting for a restore.
    match &database {
        TestDatabase::Sqlite { file, .. } => {
            assert!(!file.exists(), "{}", file.display());
            assert!(!file.parent().unwrap().exists());
        }
        TestDatabase::Postgres { .. } => {
            assert_eq!(database.table_names().await, Vec::<String>::new());
        }
    }
}

/// `serve` as a supervisor runs it: no terminal, stdout read to the end on a thread. Killed if
/// the test fails before [`Served::wait`].
struct Served {
    child: std::process::Child,
    port: u16,
    stdout: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if self.stdout.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Served {
    /// Starts `serve` with a configured escrow recipient and waits for its ready line.
    fn start(database: &TestDatabase, dir: &std::path::Path) -> Self {
        let escrow = age::x25519::Identity::generate();
        let mut child = binary(database, dir)
            .arg("serve")
            .env("APP_ESCROW__RECIPIENT", escrow.to_public().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (ready_sender, ready) = std::sync::mpsc::channel();
        let stdout = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in stdout.lines().map_while(Result::ok) {
                if line.contains("incident-vault is ready") {
                    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
                    let port = event["fields"]["port"]
                        .as_u64()
                        .expect("the port is logged");
                    let _ = ready_sender.send(u16::try_from(port).unwrap());
                }
                lines.push(line);
            }
            lines
        });
        let mut served = Self {
            child,
            port: 0,
            stdout: Some(stdout),
        };
        served.port = ready
            .recv_timeout(Duration::from_secs(60))
            .expect("the service never said it was ready");
        served
    }

    /// Sends SIGTERM.
    fn terminate(&self) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
    }

    /// Waits for the process to end after [`Self::terminate`]; its status and stdout lines.
    fn wait(mut self, within: Duration) -> (std::process::ExitStatus, Vec<String>) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the service did not stop within {within:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let stdout = self.stdout.take().unwrap();
        (status, stdout.join().unwrap())
    }
}

async fn serve_without_a_terminal_logs_no_setup_code_and_stops_cleanly_on_sigterm(
    backend: Backend,
) {
    let dir = tempfile::tempdir().unwrap();
    let Some(database) = TestDatabase::create_for_test(backend, dir.path()).await else {
        return;
    };
    let served = Served::start(&database, dir.path());

    served.terminate();

    let (status, lines) = served.wait(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    // Without a terminal, stdout is the log: the first start's setup code is not in it, only
    // how to ask for one.
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

/// SIGTERM in the middle of a stream of reports (PEERS.md: the peer failed to stop two times in
/// five after load). The service stops taking connections, answers the reports it had taken in,
/// exits with 0, and every report it acknowledged is stored whole: the case, its report entry
/// and its escrow grant.
async fn sigterm_under_load_answers_what_is_in_flight_and_loses_no_acknowledged_report(
    backend: Backend,
) {
    let dir = tempfile::tempdir().unwrap();
    let Some(database) = TestDatabase::create_for_test(backend, dir.path()).await else {
        return;
    };
    let served = Served::start(&database, dir.path());
    let url = format!("http://127.0.0.1:{}/api/v1/reports", served.port);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let signalled: std::sync::Arc<std::sync::OnceLock<Instant>> = Default::default();
    let acknowledged = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));

    // Eight phones filing one report after another: (sent, answered, case_ref) per 201.
    let phones: Vec<_> = (0..8)
        .map(|phone| {
            let (client, url) = (client.clone(), url.clone());
            let (signalled, acknowledged) = (signalled.clone(), acknowledged.clone());
            tokio::spawn(async move {
                let mut filed = Vec::new();
                loop {
                    let sent = Instant::now();
                    let answer = client
                        .post(&url)
                        .header("Idempotency-Key", crate::helpers::random_idempotency_key())
                        .json(&crate::helpers::minimal_report(
                            "filed while the service stops",
                        ))
                        .send()
                        .await;
                    let Ok(response) = answer else {
                        // Refused or closed: only once the service is stopping.
                        assert!(signalled.get().is_some(), "phone {phone}: {answer:?}");
                        break;
                    };
                    let status = response.status().as_u16();
                    let body: serde_json::Value = response.json().await.unwrap_or_default();
                    let answered = Instant::now();
                    match status {
                        201 => {
                            let case_ref = body["case_ref"].as_str().unwrap().to_owned();
                            filed.push((sent, answered, case_ref));
                            acknowledged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        503 if body["error"] == "intake_saturated" => {}
                        _ => panic!("phone {phone}: {status} {body}"),
                    }
                    if signalled
                        .get()
                        .is_some_and(|at| at.elapsed() > Duration::from_secs(30))
                    {
                        break;
                    }
                }
                filed
            })
        })
        .collect();
    // A bound on the wait, not a timing check: phones that all failed would leave it waiting.
    let deadline = Instant::now() + Duration::from_secs(120);
    while acknowledged.load(std::sync::atomic::Ordering::Relaxed) < 24 {
        assert!(
            !phones.iter().any(tokio::task::JoinHandle::is_finished),
            "a phone stopped before the signal"
        );
        assert!(
            Instant::now() < deadline,
            "too few reports were acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Noted before the signal: from then on, a connection the stopping service closes is fine.
    let signal = Instant::now();
    signalled.set(signal).unwrap();
    served.terminate();
    let mut filed = Vec::new();
    for phone in phones {
        filed.extend(phone.await.unwrap());
    }
    let (status, lines) = served.wait(Duration::from_secs(60));

    assert!(status.success(), "{status:?}");
    assert!(
        lines
            .iter()
            .any(|line| line.contains("incident-vault stopped")),
        "{lines:?}"
    );
    let drained = filed
        .iter()
        .filter(|(sent, answered, _)| *sent < signal && *answered > signal)
        .count();
    assert!(
        drained > 0,
        "no report in flight at SIGTERM was answered: {} filed",
        filed.len()
    );
    let stored = database.whole_case_ids().await;
    let lost: Vec<_> = filed
        .iter()
        .filter(|(_, _, case_ref)| !stored.contains(case_ref))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged but not stored whole: {lost:?}"
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
            stderr.contains("APP_DATABASE__URL") && stderr.contains("does not exist"),
            "{arguments:?}: {stderr}"
        );
        assert!(
            stderr.contains("operator commands use the service's existing database"),
            "{arguments:?}: {stderr}"
        );
        assert!(!missing.exists(), "{arguments:?} created the database");
        assert!(
            !missing.parent().unwrap().exists(),
            "{arguments:?} created its folder"
        );
    }
}

/// A PostgreSQL that cannot be reached is named with the cause (here: nothing listens on port
/// 1), rather than as "pool timed out"; and it is not
/// answered with advice to run `init`, which is for a database that answers but is empty, nor
/// (`init` without a terminal or a configured recipient) with advice to make an escrow key.
#[test]
fn an_unreachable_postgresql_is_named_with_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let url = "postgres://postgres@127.0.0.1:1/iv_nowhere";
    // Each waits out the retries of a server that may be starting (15 s), so two of them.
    for arguments in [&["audit", "verify"][..], &["init"]] {
        let output = Command::new(env!("CARGO_BIN_EXE_incident-vault"))
            .args(arguments)
            .env("APP_DATABASE__URL", url)
            .env_remove("APP_ESCROW__RECIPIENT")
            .env("APP_STORAGE__DATA_DIR", dir.path().join("data"))
            .stdin(Stdio::null())
            .output()
            .unwrap();

        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{arguments:?}");
        assert!(
            stderr.contains(
                "could not connect to the PostgreSQL database `iv_nowhere` on 127.0.0.1:1"
            ),
            "{arguments:?}: {stderr}"
        );
        assert!(
            stderr.to_lowercase().contains("connection refused"),
            "{arguments:?}: {stderr}"
        );
        assert!(
            !stderr.contains("pool timed out")
                && !stderr.contains("incident-vault init")
                && !stderr.contains("age-keygen"),
            "{arguments:?}: {stderr}"
        );
    }
}

/// A configuration folder that is named but not there is refused by its variable: a local run
/// would otherwise go on with the built-in defaults, ignoring the operator's files.
#[test]
fn a_named_configuration_folder_that_is_missing_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("confg");
    let output = Command::new(env!("CARGO_BIN_EXE_incident-vault"))
        .args(["audit", "verify"])
        .env("APP_CONFIG_DIR", &missing)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("APP_CONFIG_DIR") && stderr.contains("which is not a folder"),
        "{stderr}"
    );
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
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
        (
            "APP_TELEMETRY__FORMAT",
            "5",
            "the setting APP_TELEMETRY__FORMAT is missing or has a value of the wrong kind",
        ),
        (
            "APP_TELEMETRY__FORMAT",
            "JSON",
            "the setting APP_TELEMETRY__FORMAT is missing or has a value of the wrong kind",
        ),
        // Too large for its type: named, and neither the value nor the largest number the
        // reader could hold in its place is shown.
        (
            "APP_DATABASE__MAX_CONNECTIONS",
            "4294967297",
            "the setting APP_DATABASE__MAX_CONNECTIONS is missing or has a value of the wrong kind",
        ),
        (
            "APP_ARGON2__MEMORY_KIB",
            "18446744073709551616",
            "the setting APP_ARGON2__MEMORY_KIB is missing or has a value of the wrong kind",
        ),
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
        for shown in [value, "4294967295", "18446744073709551615"] {
            assert!(
                value.len() < 4 || !stderr.contains(shown),
                "a value is shown: {stderr}"
            );
        }
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
    sigterm_under_load_answers_what_is_in_flight_and_loses_no_acknowledged_report,
    a_refused_init_creates_nothing_and_commands_name_an_empty_database,
);
