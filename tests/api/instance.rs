//! First start, restarts, and settings that must be refused.

use std::sync::LazyLock;

use age::secrecy::ExposeSecret;
use incident_vault::crypto::kdf::Argon2Params;
use incident_vault::crypto::receipt::{InstanceSalt, derive_receipt_keys, open_reporter_identity};
use incident_vault::domain::{CaseRef, ReceiptCode};
use incident_vault::services::instance::EscrowGeneration;
use incident_vault::services::offline::decrypt_case;
use incident_vault::startup::Application;
use incident_vault::storage::InstanceRecord;
use serde_json::Value;

use crate::helpers::{
    Backend, TestApp, TestDatabase, contains_in_any_encoding, full_report, random_idempotency_key,
    read_tree, start, test_settings,
};

async fn fresh(backend: Backend) -> Option<(TestDatabase, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let database = crate::helpers::TestDatabase::create_for_test(backend, dir.path()).await?;
    Some((database, dir))
}

async fn first_start_without_escrow_generates_one_that_is_shown_once_and_never_stored(
    backend: Backend,
) {
    // The capture is installed before the build, so that whatever the build logs is read below,
    // whichever test ran first.
    LazyLock::force(&crate::helpers::LOGS);
    let Some((database, dir)) = fresh(backend).await else {
        return;
    };
    let settings = test_settings(database.url(), dir.path(), None);

    let mut application = Application::build(settings.clone()).await.unwrap();

    let generated = application
        .take_generated_escrow()
        .expect("an escrow identity on first start");
    assert!(
        application.take_generated_escrow().is_none(),
        "it is handed out once"
    );
    let identity: age::x25519::Identity = generated.identity.expose_secret().parse().unwrap();
    assert_eq!(identity.to_public().to_string(), generated.recipient);
    let app = start(application, settings, identity, database, dir);
    let (case_ref, _) = app.file(&full_report("sealed to the generated key")).await;
    let secret_key = generated.identity.expose_secret().to_owned();
    let at_rest = app.database_at_rest().await;
    assert!(
        !contains_in_any_encoding(&at_rest, &secret_key),
        "the escrow identity was stored"
    );
    assert!(!contains_in_any_encoding(
        &read_tree(app.dir.path()),
        &secret_key
    ));
    assert!(!contains_in_any_encoding(
        crate::helpers::LOGS.contents().as_bytes(),
        &secret_key
    ));
    let case = decrypt_case(
        app.store.as_ref(),
        &[&app.escrow],
        &CaseRef::parse(&case_ref).unwrap(),
    )
    .await;
    assert!(case.is_ok(), "{case:?}");
}

/// A first start that fails (here: its port is taken) writes no instance, so the escrow identity
/// it would have generated is not recorded unseen: the next start generates and shows one.
async fn a_first_start_that_cannot_listen_records_no_escrow(backend: Backend) {
    LazyLock::force(&crate::helpers::LOGS);
    let Some((database, dir)) = fresh(backend).await else {
        return;
    };
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut settings = test_settings(database.url(), dir.path(), None);
    settings.server.bind = taken.local_addr().unwrap().to_string();

    let refused = Application::build(settings.clone()).await;

    let error = refused.err().expect("a taken port stops the start");
    assert!(
        format!("{error:#}").contains("APP_SERVER__BIND"),
        "{error:#}"
    );
    settings.server.bind = "127.0.0.1:0".into();
    let mut application = Application::build(settings.clone()).await.unwrap();
    let generated = application
        .take_generated_escrow()
        .expect("the retry generates (and so shows) the escrow identity");
    drop(application);
    drop(taken);
    // Started again still without the setting: it seals to the recorded recipient, and says so.
    let mut again = Application::build(settings).await.unwrap();
    assert!(again.take_generated_escrow().is_none());
    let logs = crate::helpers::LOGS.contents();
    assert!(
        logs.lines()
            .any(|line| line.contains("APP_ESCROW__RECIPIENT) is not set")
                && line.contains(&generated.recipient)),
        "no warning naming the recorded recipient"
    );
}

/// The generated escrow identity is shown before its recipient is recorded: a start whose
/// showing fails (a terminal gone, a kill) records nothing, so no case is ever sealed to a key
/// nobody saw; the next start shows another, and that one is recorded.
async fn a_generated_escrow_is_recorded_only_after_it_was_shown(backend: Backend) {
    let Some((database, dir)) = fresh(backend).await else {
        return;
    };
    let settings = test_settings(database.url(), dir.path(), None);

    let refused =
        Application::build_showing(settings.clone(), EscrowGeneration::Allowed, &mut |_| {
            anyhow::bail!("the terminal is gone")
        })
        .await;

    let error = format!(
        "{:#}",
        refused.err().expect("a failed showing stops the start")
    );
    assert!(error.contains("nothing was recorded"), "{error}");
    let store = incident_vault::storage::open(database.url(), 1, Default::default())
        .await
        .unwrap();
    let instance = store.instance().await.unwrap();
    store.close().await;
    assert!(instance.is_none(), "an instance was recorded unseen");

    let mut shown = Vec::new();
    let mut application =
        Application::build_showing(settings.clone(), EscrowGeneration::Allowed, &mut |escrow| {
            shown.push(escrow.recipient.clone());
            Ok(())
        })
        .await
        .unwrap();

    assert_eq!(shown.len(), 1, "shown once");
    let generated = application.take_generated_escrow().expect("recorded");
    assert_eq!(generated.recipient, shown[0]);
    application.store().close().await;
    drop(application);
    assert_eq!(
        recorded_instance(database.url()).await.escrow_recipient,
        shown[0]
    );
    // A restart shows nothing: there is no new identity to show.
    let mut restarted =
        Application::build_showing(settings, EscrowGeneration::Allowed, &mut |_| {
            anyhow::bail!("nothing may be shown on a restart")
        })
        .await
        .unwrap();
    assert!(restarted.take_generated_escrow().is_none());
    restarted.store().close().await;
}

/// A first start whose recording fails after the identity was shown never tells the operator to
/// discard it (a failed COMMIT may still land): keep it until a start names the recipient in
/// force. Here nothing was recorded.
async fn a_first_start_that_cannot_record_says_to_keep_the_shown_escrow(backend: Backend) {
    let Some((database, dir)) = fresh(backend).await else {
        return;
    };
    let migrated = incident_vault::storage::connect(database.url(), 1)
        .await
        .unwrap();
    migrated.close().await;
    // The database refuses the instance row, as a full disk or a lost connection would.
    match backend {
        Backend::Sqlite => {
            database
                .execute(
                    "CREATE TRIGGER refuse_instance BEFORE INSERT ON instance \
                     BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
                )
                .await;
        }
        Backend::Postgres => {
            database
                .execute(
                    "CREATE FUNCTION refuse_instance() RETURNS trigger LANGUAGE plpgsql AS \
                     $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$",
                )
                .await;
            database
                .execute(
                    "CREATE TRIGGER refuse_instance BEFORE INSERT ON instance \
                     FOR EACH ROW EXECUTE FUNCTION refuse_instance()",
                )
                .await;
        }
    }
    let settings = test_settings(database.url(), dir.path(), None);
    let mut shown = Vec::new();

    let refused = Application::build_showing(settings, EscrowGeneration::Allowed, &mut |escrow| {
        shown.push(escrow.recipient.clone());
        Ok(())
    })
    .await;

    let error = format!(
        "{:#}",
        refused.err().expect("the refused row stops the start")
    );
    assert_eq!(
        shown.len(),
        1,
        "the identity is shown before the record is tried"
    );
    assert!(error.contains("keep it until a start"), "{error}");
    assert!(
        error.contains(&format!("not its public key ({})", shown[0])),
        "{error}"
    );
    assert!(!error.contains("discard it (the next"), "{error}");
    let store = incident_vault::storage::open(database.url(), 1, Default::default())
        .await
        .unwrap();
    assert!(store.instance().await.unwrap().is_none());
    store.close().await;
}

/// In production the service starts only on a database that `incident-vault init` prepared: an
/// empty one (a restore under way, a mistyped URL) is refused before anything is written to it,
/// instead of becoming a new instance that takes reports.
async fn production_serves_only_a_database_that_init_prepared(backend: Backend) {
    let Some((database, dir)) = fresh(backend).await else {
        return;
    };
    let escrow = age::x25519::Identity::generate();
    let mut settings = test_settings(database.url(), dir.path(), Some(&escrow));
    settings.environment = incident_vault::configuration::Environment::Production;

    let refused = Application::build(settings.clone()).await;

    let error = format!("{:#}", refused.err().expect("an empty database is refused"));
    assert!(error.contains("incident-vault init"), "{error}");
    let untouched = match incident_vault::storage::open(database.url(), 1, Default::default()).await
    {
        Err(_) => true,
        Ok(store) => store.instance().await.is_err(),
    };
    assert!(
        untouched,
        "the refused start created or migrated the database"
    );
    assert!(
        !settings.storage.data_dir.exists(),
        "the refused start created its data folder"
    );
    let (url, data_dir, recipient) = (
        database.url().to_owned(),
        dir.path().join("data"),
        escrow.to_public().to_string(),
    );
    let init = move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_incident-vault"))
            .arg("init")
            .env("APP_ENVIRONMENT", "production")
            .env("APP_DATABASE__URL", &url)
            .env("APP_STORAGE__DATA_DIR", &data_dir)
            .env("APP_ESCROW__RECIPIENT", &recipient)
            .env("APP_TELEMETRY__LEVEL", "warn")
            .output()
            .unwrap()
    };
    let first = init();
    let again = init();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let first_said = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(first_said.starts_with("initialised:"), "{first_said}");
    assert!(
        first_said.contains("next, `incident-vault setup-code`"),
        "{first_said}"
    );
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("initialised already"));
    let app = start(
        Application::build(settings.clone()).await.unwrap(),
        settings,
        escrow,
        database,
        dir,
    );
    let (case_ref, _) = app.file(&full_report("after init")).await;
    assert!(!case_ref.is_empty());
    // On a database with accounts (a restored one, say), `init` no longer sends the operator to
    // the setup code, which would be refused.
    app.enrol_first_admin("ada").await;
    let with_accounts = init();
    let said = String::from_utf8_lossy(&with_accounts.stdout);
    assert!(with_accounts.status.success());
    assert!(
        said.contains("initialised already") && said.contains("it has accounts already"),
        "{said}"
    );
    assert!(!said.contains("setup-code"), "{said}");
}

/// `init`s run at the same moment against one migrated database: each succeeds, all name the
/// same recipient, and exactly one says it initialised the database (the one whose instance row
/// was recorded), not every one that found none before it wrote.
async fn of_inits_at_the_same_moment_one_says_it_initialised(backend: Backend) {
    let Some((database, dir)) = fresh(backend).await else {
        return;
    };
    let escrow = age::x25519::Identity::generate();
    let command = |verb: &str| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_incident-vault"));
        command
            .arg(verb)
            // A production `migrate` refuses a database that `init` has not prepared.
            .env(
                "APP_ENVIRONMENT",
                if verb == "init" {
                    "production"
                } else {
                    "local"
                },
            )
            .env("APP_DATABASE__URL", database.url())
            .env("APP_STORAGE__DATA_DIR", dir.path().join("data"))
            .env("APP_ESCROW__RECIPIENT", escrow.to_public().to_string())
            .env("APP_TELEMETRY__LEVEL", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command
    };
    // Migrated first: what races here is the instance row, not the migrations.
    let migrated = command("migrate").output().unwrap();
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );

    let racing: Vec<_> = (0..4).map(|_| command("init").spawn().unwrap()).collect();
    let outputs: Vec<_> = racing
        .into_iter()
        .map(|child| child.wait_with_output().unwrap())
        .collect();

    let recipient = escrow.to_public().to_string();
    let mut initialised = 0;
    for output in &outputs {
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains(&recipient), "{stdout}");
        if stdout.starts_with("initialised:") {
            initialised += 1;
        } else {
            assert!(
                stdout.starts_with("this database was initialised already:"),
                "{stdout}"
            );
        }
    }
    assert_eq!(initialised, 1, "{outputs:?}");
}

async fn a_restart_keeps_the_instance_and_its_cases(backend: Backend) {
    let Some((database, dir)) = fresh(backend).await else {
        return;
    };
    let escrow = age::x25519::Identity::generate();
    let settings = test_settings(database.url(), dir.path(), Some(&escrow));
    let first = start(
        Application::build(settings.clone()).await.unwrap(),
        settings.clone(),
        escrow,
        database,
        dir,
    );
    let report = full_report("before the restart");
    let key = random_idempotency_key();
    let filed = first.post_report(&report, Some(&key)).await;
    assert_eq!(filed.status(), 201);
    let filed: Value = filed.json().await.unwrap();
    let case_ref = filed["case_ref"].as_str().unwrap().to_owned();
    let before = recorded_instance(first.database.url()).await;
    first.stop().await;
    first.store.close().await;
    let TestApp {
        settings,
        escrow,
        database,
        dir,
        ..
    } = first;

    let mut again = Application::build(settings.clone()).await.unwrap();

    assert!(again.take_generated_escrow().is_none());
    let again = start(again, settings, escrow, database, dir);
    let after = recorded_instance(again.database.url()).await;
    assert_eq!(after, before, "the instance row changed across the restart");
    let case = decrypt_case(
        again.store.as_ref(),
        &[&again.escrow],
        &CaseRef::parse(&case_ref).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(case.case_ref, case_ref);
    // The retry of a phone that lost the answer across the restart gets the first answer: the
    // restarted service opens what the first sealed with the instance's salt.
    let retried = again.post_report(&report, Some(&key)).await;
    assert_eq!(retried.status(), 201);
    assert_eq!(retried.headers()["idempotent-replayed"], "true");
    assert_eq!(retried.json::<Value>().await.unwrap(), filed);
    // And the receipt still finds and opens the reporter's way back into the case.
    let receipt = ReceiptCode::parse(filed["receipt"].as_str().unwrap()).unwrap();
    let access = again.database.reporter_access_rows().await;
    assert_eq!(access.len(), 1);
    let access = &access[0];
    let salt = InstanceSalt(after.receipt_salt.as_slice().try_into().unwrap());
    let params = Argon2Params::decode(&access.kdf_params).unwrap();
    let keys = derive_receipt_keys(&receipt, &salt, &params).unwrap();
    assert_eq!(access.lookup_id, keys.lookup_id, "the receipt finds no row");
    assert_eq!(access.case_id, case_ref);
    let case = CaseRef::parse(&access.case_id).unwrap();
    let reporter = open_reporter_identity(&keys, &case, &access.sealed_identity).unwrap();
    assert_eq!(reporter.to_public().to_string(), access.reporter_recipient);
}

/// The instance row as the database holds it, read outside the service.
async fn recorded_instance(url: &str) -> InstanceRecord {
    let store = incident_vault::storage::open(url, 1, Default::default())
        .await
        .unwrap();
    let instance = store.instance().await.unwrap();
    store.close().await;
    instance.expect("an instance is recorded")
}

async fn a_different_escrow_recipient_on_restart_is_refused(backend: Backend) {
    let Some((database, dir)) = fresh(backend).await else {
        return;
    };
    let escrow = age::x25519::Identity::generate();
    let settings = test_settings(database.url(), dir.path(), Some(&escrow));
    let first = Application::build(settings.clone()).await.unwrap();
    first.store().close().await;
    let other = age::x25519::Identity::generate();

    let refused = Application::build(test_settings(database.url(), dir.path(), Some(&other))).await;

    let message = format!(
        "{:#}",
        refused.err().expect("a different escrow key is refused")
    );
    assert!(message.contains("APP_ESCROW__RECIPIENT"), "{message}");
}

async fn an_unknown_database_scheme_is_refused_before_anything_is_created(backend: Backend) {
    let _ = backend;
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings("mysql://root@127.0.0.1/test", dir.path(), None);

    let refused = Application::build(settings).await;

    let message = format!("{:#}", refused.err().expect("mysql:// is refused"));
    assert!(message.contains("APP_DATABASE__URL"), "{message}");
    assert!(!dir.path().join("data").exists(), "nothing was created");
}

/// While the service starts (migrations, a database still starting, a lock held elsewhere), its
/// port refuses connections, as a stopped service's does, instead of queueing them for an answer
/// that may never come (a start that then fails); once it is ready, it serves. Here the start
/// waits for a lock held on the database, and a connection made meanwhile is refused.
async fn a_starting_service_refuses_connections_until_it_is_ready(backend: Backend) {
    let Some((database, dir)) = fresh(backend).await else {
        return;
    };
    incident_vault::storage::connect(database.url(), 1)
        .await
        .unwrap()
        .close()
        .await;
    // The start's first write, the instance row, waits for this lock.
    let holder =
        crate::helpers::LockHolder::take(&database, "LOCK TABLE instance IN ACCESS EXCLUSIVE MODE")
            .await;
    // A free port outside the ephemeral range, which the parallel tests' own connections use.
    let address = loop {
        let port = 20_000 + rand::random::<u16>() % 10_000;
        if let Ok(probe) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            break probe.local_addr().unwrap();
        }
    };
    let escrow = age::x25519::Identity::generate();
    let mut settings = test_settings(database.url(), dir.path(), Some(&escrow));
    settings.server.bind = address.to_string();
    settings.database.lock_timeout_seconds = 60;
    let building = tokio::spawn(Application::build(settings.clone()));
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;

    let while_starting = tokio::net::TcpStream::connect(address).await;

    assert!(
        !building.is_finished(),
        "the start did not wait for the lock"
    );
    let error = while_starting.expect_err("a connection was taken before the service was ready");
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
    // Refused, yet held: no other program can bind the port meanwhile, even one asking to
    // share it (SO_REUSEADDR, as most servers bind).
    for shared in [false, true] {
        let other =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        other.set_reuse_address(shared).unwrap();
        let taken = other
            .bind(&address.into())
            .expect_err("the port was not held");
        assert_eq!(
            taken.kind(),
            std::io::ErrorKind::AddrInUse,
            "reuse: {shared}"
        );
    }
    holder.release().await;
    let application = building.await.unwrap().unwrap();
    assert_eq!(application.port(), address.port());
    let app = start(application, settings, escrow, database, dir);
    assert_eq!(app.get("/healthz").await.status(), 200);
}

crate::on_both_backends!(
    a_starting_service_refuses_connections_until_it_is_ready,
    first_start_without_escrow_generates_one_that_is_shown_once_and_never_stored,
    a_first_start_that_cannot_listen_records_no_escrow,
    a_generated_escrow_is_recorded_only_after_it_was_shown,
    a_first_start_that_cannot_record_says_to_keep_the_shown_escrow,
    production_serves_only_a_database_that_init_prepared,
    of_inits_at_the_same_moment_one_says_it_initialised,
    a_restart_keeps_the_instance_and_its_cases,
    a_different_escrow_recipient_on_restart_is_refused,
    an_unknown_database_scheme_is_refused_before_anything_is_created,
);
