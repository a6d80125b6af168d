//! Lock-out and races around logins (issue 3, "Repeated failures per account get an exponential
//! delay"): parallel guesses are each counted, a guess that was already running when the account
//! locked opens nothing, a locked account cannot change its password, the offline tools obey the
//! same rules, and concurrent enrolments all succeed.

use incident_vault::services::audit;
use incident_vault::storage::{NewAuditEvent, SecretsChange, SessionRecord, StoreError};
use reqwest::Method;
use serde_json::{Value, json};

use crate::cli_grants::cli_with_input;
use crate::helpers::{Backend, TestApp, spawn_app};
use crate::people::PASSWORD;

/// Free failures before the first delay (`FREE_FAILURES` in src/services/accounts.rs).
const FREE_FAILURES: i64 = 3;

async fn secrets_of(
    app: &TestApp,
    username: &str,
) -> incident_vault::storage::ReviewerSecretsRecord {
    app.stored_account(username).await.1
}

fn unix_now() -> i64 {
    i64::try_from(crate::people::now()).unwrap()
}

async fn parallel_wrong_guesses_are_each_counted_and_lock_the_account(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.enrol_first_admin("ada").await;
    let guesses = 6;

    let responses = futures_util::future::join_all((0..guesses).map(|index| {
        app.post_json(
            "/api/v1/auth/login",
            json!({"username": "ada", "password": format!("wrong guess number {index}"), "totp": "123456"}),
        )
    }))
    .await;
    let right_password = app
        .post_json(
            "/api/v1/auth/login",
            json!({"username": "ada", "password": PASSWORD, "totp": admin.next_code().await}),
        )
        .await;

    for response in responses {
        assert_eq!(response.status(), 401);
    }
    assert_eq!(right_password.status(), 401, "the account is locked");
    let secrets = secrets_of(&app, "ada").await;
    assert_eq!(
        secrets.failed_logins,
        guesses + 1,
        "every guess counts, however they interleave (and the refused login too)"
    );
    assert!(secrets.locked_until > unix_now());
    let outcomes: Vec<String> = app
        .store
        .audit_events(0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|event| event.action == "login")
        .map(|event| event.outcome)
        .collect();
    assert_eq!(outcomes.len(), 7, "every try is audited: {outcomes:?}");
    assert_eq!(outcomes.last().map(String::as_str), Some("failure:locked"));
}

/// What a login that passed its checks before the account changed would write.
fn session_for(reviewer_id: &str, now: i64) -> SessionRecord {
    SessionRecord {
        token_hash: rand::random::<[u8; 32]>().to_vec(),
        reviewer_id: reviewer_id.to_owned(),
        created_at: now,
        last_seen_at: now,
        expires_at: now + 600,
        sealed_identity: vec![7; 120],
        stepped_up_at: None,
    }
}

/// The same secrets again, as a password change writes them.
fn unchanged_secrets(
    secrets: &incident_vault::storage::ReviewerSecretsRecord,
    now: i64,
) -> SecretsChange<'_> {
    SecretsChange {
        secrets,
        expected_verifier: &secrets.login_verifier,
        now,
        new_session: None,
        totp_step: None,
    }
}

fn login_event(reviewer_id: &str, now: i64) -> NewAuditEvent {
    NewAuditEvent {
        occurred_at: now,
        actor: reviewer_id.to_owned(),
        action: "login".into(),
        target: None,
        outcome: "success".into(),
    }
}

async fn a_login_completes_only_if_nothing_changed_since_its_checks(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.enrol_first_admin("ada").await;
    let (ada, secrets) = app.stored_account("ada").await;
    let now = unix_now();
    let step = now / 30 + 10;
    let sessions_before = app.count("sessions").await;
    let events_before = app.count("audit_events").await;
    let complete = |verifier: Vec<u8>, step: i64| {
        let store = app.store.clone();
        let id = ada.id.clone();
        async move {
            store
                .complete_login(
                    &session_for(&id, now),
                    step,
                    &verifier,
                    now,
                    &login_event(&id, now),
                    &audit::chain_hash,
                )
                .await
        }
    };

    // A parallel guess locked the account after this login read it.
    app.execute(&format!(
        "UPDATE reviewer_secrets SET locked_until = {} WHERE reviewer_id = '{}'",
        now + 600,
        ada.id
    ))
    .await;
    let while_locked = complete(secrets.login_verifier.clone(), step).await;
    app.execute("UPDATE reviewer_secrets SET locked_until = 0")
        .await;
    // The password changed meanwhile.
    let stale_password = complete(vec![0; secrets.login_verifier.len()], step).await;
    // An admin disabled the account meanwhile.
    app.execute("UPDATE reviewers SET status = 'disabled'")
        .await;
    let while_disabled = complete(secrets.login_verifier.clone(), step).await;
    app.execute("UPDATE reviewers SET status = 'active'").await;
    let completed = complete(secrets.login_verifier.clone(), step).await;
    // The same TOTP step again: a replay.
    let replayed = complete(secrets.login_verifier.clone(), step).await;

    for refused in [while_locked, stale_password, replayed] {
        assert!(
            matches!(refused, Err(StoreError::Conflict("login"))),
            "{refused:?}"
        );
    }
    assert!(
        matches!(while_disabled, Err(StoreError::Conflict("inactive"))),
        "{while_disabled:?}"
    );
    completed.unwrap();
    assert_eq!(
        app.count("sessions").await,
        sessions_before + 1,
        "only the completed login left a session"
    );
    assert_eq!(
        app.count("audit_events").await,
        events_before + 1,
        "and only it was audited as a success"
    );
    assert_eq!(audit::verify(app.store.as_ref()).await.unwrap(), {
        u64::try_from(events_before + 1).unwrap()
    });
    let after = secrets_of(&app, "ada").await;
    assert_eq!(after.totp_last_step, Some(step));
}

async fn a_locked_account_cannot_change_its_password(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.enrol_first_admin("ada").await;
    let token = app.login(&admin).await;
    let before = secrets_of(&app, "ada").await;
    app.execute(&format!(
        "UPDATE reviewer_secrets SET locked_until = {}, failed_logins = {}",
        unix_now() + 600,
        FREE_FAILURES + 1
    ))
    .await;

    let change = app
        .send(
            Method::POST,
            "/api/v1/auth/password",
            Some(&token),
            Some(json!({
                "current_password": PASSWORD,
                "new_password": "a different long passphrase, plum quartz",
            })),
        )
        .await;

    assert_eq!(change.status(), 422);
    let body: Value = change.json().await.unwrap();
    assert_eq!(body["error"], "wrong_password");
    let after = secrets_of(&app, "ada").await;
    assert_eq!(after.login_verifier, before.login_verifier, "unchanged");
    assert!(after.locked_until > unix_now(), "the lock is not cleared");
    assert_eq!(after.failed_logins, FREE_FAILURES + 2, "and the try counts");
}

/// Recovery, step-up and password change check the lock-out before their KDF, like login; a
/// parallel guess that fails during that KDF locks the account, so their writes check it again.
/// Each write is refused while the account is locked at its time, and goes through after.
async fn recovery_step_up_and_password_change_writes_refuse_a_lock_set_meanwhile(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.enrol_first_admin("ada").await;
    let token = app.login(&admin).await;
    let (ada, secrets) = app.stored_account("ada").await;
    let now = unix_now();
    let step = now / 30 + 10;
    let session_hash = incident_vault::crypto::session::SessionToken::parse(&token)
        .unwrap()
        .lookup_hash();
    let lock = format!(
        "UPDATE reviewer_secrets SET locked_until = {} WHERE reviewer_id = '{}'",
        now + 600,
        ada.id
    );
    let unlock = "UPDATE reviewer_secrets SET locked_until = 0";
    // A recovery writes the same secrets here, with the session it opens and the TOTP step it
    // spends.
    let session = session_for(&ada.id, now);
    let recovery = SecretsChange {
        new_session: Some(&session),
        totp_step: Some(step),
        ..unchanged_secrets(&secrets, now)
    };

    app.execute(&lock).await;
    let events_before = app.count("audit_events").await;
    let recovery_while_locked = app
        .store
        .replace_login_secrets(&recovery, &login_event(&ada.id, now), &audit::chain_hash)
        .await;
    let step_up_while_locked = app
        .store
        .record_step_up(
            &session_hash,
            now,
            &login_event(&ada.id, now),
            &audit::chain_hash,
        )
        .await;
    let change_while_locked = app
        .store
        .replace_login_secrets(
            &unchanged_secrets(&secrets, now),
            &login_event(&ada.id, now),
            &audit::chain_hash,
        )
        .await;
    for refused in [
        &recovery_while_locked,
        &step_up_while_locked,
        &change_while_locked,
    ] {
        assert!(
            matches!(refused, Err(StoreError::Conflict(_))),
            "{refused:?}"
        );
    }
    let held = secrets_of(&app, "ada").await;
    assert!(held.locked_until > now, "no refused write cleared the lock");
    assert_eq!(held.totp_last_step, secrets.totp_last_step, "no step spent");
    assert_eq!(app.count("sessions").await, 1, "no session ended");
    assert_eq!(
        app.count("audit_events").await,
        events_before,
        "a refused write appended no event"
    );

    app.execute(unlock).await;
    app.store
        .record_step_up(
            &session_hash,
            now,
            &login_event(&ada.id, now),
            &audit::chain_hash,
        )
        .await
        .unwrap();
    app.store
        .replace_login_secrets(&recovery, &login_event(&ada.id, now), &audit::chain_hash)
        .await
        .unwrap();
    assert_eq!(secrets_of(&app, "ada").await.totp_last_step, Some(step));
    assert_eq!(
        app.count("sessions").await,
        1,
        "only the recovery's session"
    );
    // The same step again: a replayed recovery changes nothing.
    let replayed = app
        .store
        .replace_login_secrets(&recovery, &login_event(&ada.id, now), &audit::chain_hash)
        .await;
    assert!(
        matches!(replayed, Err(StoreError::Conflict(_))),
        "{replayed:?}"
    );
    app.store
        .replace_login_secrets(
            &unchanged_secrets(&secrets, now),
            &login_event(&ada.id, now),
            &audit::chain_hash,
        )
        .await
        .unwrap();
    assert_eq!(secrets_of(&app, "ada").await.totp_last_step, Some(step));
    assert_eq!(
        app.count("sessions").await,
        0,
        "the replacement ends every session"
    );
}

/// `reviewer export-identity USERNAME` with `password` on standard input.
fn export_identity(app: &TestApp, username: &str, password: &str) -> std::process::Output {
    let out = app.dir.path().join(format!("{username}.identity"));
    let out_text = out.to_str().unwrap();
    let output = cli_with_input(
        app,
        &["reviewer", "export-identity", username, "--out", out_text],
        password,
    );
    assert_eq!(out.exists(), output.status.success());
    output
}

/// A login completing while an admin's disabling is in flight either waits for it and is refused,
/// or is seen by it: no session survives a disabling. (On PostgreSQL, a session inserted under
/// READ COMMITTED escaped the disabling's DELETE before the login locked the account's row.)
async fn a_login_racing_a_disabling_leaves_no_session(backend: Backend) {
    use sqlx::{Connection, Executor};
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.enrol_first_admin("ada").await;
    let (ada, secrets) = app.stored_account("ada").await;
    let now = unix_now();
    let disable = format!(
        "UPDATE reviewers SET status = 'disabled' WHERE id = '{}'",
        ada.id
    );
    let end_sessions = format!("DELETE FROM sessions WHERE reviewer_id = '{}'", ada.id);

    // The admin's transaction, as `change_account` writes it, held open.
    let login = |store: std::sync::Arc<dyn incident_vault::storage::Store>| {
        let id = ada.id.clone();
        let verifier = secrets.login_verifier.clone();
        tokio::spawn(async move {
            store
                .complete_login(
                    &session_for(&id, now),
                    now / 30 + 10,
                    &verifier,
                    now,
                    &login_event(&id, now),
                    &audit::chain_hash,
                )
                .await
        })
    };
    let outcome = match &app.database {
        crate::helpers::TestDatabase::Sqlite { url, .. } => {
            let mut admin = sqlx::SqliteConnection::connect(url).await.unwrap();
            admin.execute("BEGIN IMMEDIATE").await.unwrap();
            admin
                .execute(sqlx::AssertSqlSafe(disable.clone()))
                .await
                .unwrap();
            let pending = login(app.store.clone());
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            admin
                .execute(sqlx::AssertSqlSafe(end_sessions.clone()))
                .await
                .unwrap();
            admin.execute("COMMIT").await.unwrap();
            pending.await.unwrap()
        }
        crate::helpers::TestDatabase::Postgres { url, .. } => {
            let mut admin = sqlx::PgConnection::connect(url).await.unwrap();
            admin.execute("BEGIN").await.unwrap();
            admin
                .execute(sqlx::AssertSqlSafe(disable.clone()))
                .await
                .unwrap();
            let pending = login(app.store.clone());
            // Until the login waits on the account's row (or has finished without waiting).
            let mut watcher = sqlx::PgConnection::connect(url).await.unwrap();
            for _ in 0..500 {
                let waiting: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND wait_event_type = 'Lock'",
                )
                .fetch_one(&mut watcher)
                .await
                .unwrap();
                if waiting > 0 || pending.is_finished() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            admin
                .execute(sqlx::AssertSqlSafe(end_sessions.clone()))
                .await
                .unwrap();
            admin.execute("COMMIT").await.unwrap();
            pending.await.unwrap()
        }
    };

    assert!(
        matches!(outcome, Err(StoreError::Conflict(_))),
        "{outcome:?}"
    );
    assert_eq!(
        app.count(&format!("sessions WHERE reviewer_id = '{}'", ada.id))
            .await,
        0,
        "a session outlived the disabling"
    );
}

/// A recovery whose account an admin disabled while it ran changes nothing and opens no
/// session: new secrets, the session and the audit event are one write, refused as a whole.
async fn no_session_is_written_for_an_account_disabled_meanwhile(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.enrol_first_admin("ada").await;
    app.login(&admin).await;
    let (ada, secrets) = app.stored_account("ada").await;
    let now = unix_now();
    let mut replacement = secrets.clone();
    replacement.password_salt = vec![9; 16];
    let session = session_for(&ada.id, now);
    let recovery = SecretsChange {
        secrets: &replacement,
        expected_verifier: &secrets.login_verifier,
        now,
        new_session: Some(&session),
        totp_step: None,
    };
    let events_before = app.count("audit_events").await;

    app.execute("UPDATE reviewers SET status = 'disabled'")
        .await;
    let while_disabled = app
        .store
        .replace_login_secrets(&recovery, &login_event(&ada.id, now), &audit::chain_hash)
        .await;
    assert!(
        matches!(while_disabled, Err(StoreError::Conflict("inactive"))),
        "{while_disabled:?}"
    );
    assert_eq!(
        secrets_of(&app, "ada").await.password_salt,
        secrets.password_salt
    );
    assert_eq!(
        app.count("sessions").await,
        1,
        "the login's session is untouched"
    );
    assert_eq!(app.count("audit_events").await, events_before);

    app.execute("UPDATE reviewers SET status = 'active'").await;
    app.store
        .replace_login_secrets(&recovery, &login_event(&ada.id, now), &audit::chain_hash)
        .await
        .unwrap();
    assert_eq!(secrets_of(&app, "ada").await.password_salt, vec![9; 16]);
    assert_eq!(
        app.count("sessions").await,
        1,
        "the other session ended, the recovery's opened"
    );
    assert_eq!(app.count("audit_events").await, events_before + 1);
}

/// An identity export whose audit event cannot be written leaves no file behind: a secret on disk
/// that the log does not show is what the audit exists to rule out.
async fn an_export_that_cannot_be_audited_leaves_no_file(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.enrol_first_admin("ada").await;
    // The unlock before it is audited as usual; only the export's own event is refused.
    let (refuse_exports, allow_exports) = match backend {
        Backend::Sqlite => (
            "CREATE TRIGGER refuse_exports BEFORE INSERT ON audit_events \
             WHEN NEW.action = 'reviewer.identity_exported' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
            "DROP TRIGGER refuse_exports",
        ),
        Backend::Postgres => (
            "CREATE FUNCTION refuse_exports() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION 'refused by the test'; END $$; \
             CREATE TRIGGER refuse_exports BEFORE INSERT ON audit_events FOR EACH ROW \
             WHEN (NEW.action = 'reviewer.identity_exported') EXECUTE FUNCTION refuse_exports()",
            "DROP TRIGGER refuse_exports ON audit_events",
        ),
    };
    app.execute(refuse_exports).await;

    // `export_identity` asserts that the file exists exactly when the command succeeds.
    let unaudited = export_identity(&app, "ada", PASSWORD);
    app.execute(allow_exports).await;
    let audited = export_identity(&app, "ada", PASSWORD);

    assert!(!unaudited.status.success());
    let stderr = String::from_utf8_lossy(&unaudited.stderr);
    assert!(stderr.contains("was removed"), "{stderr}");
    assert!(
        audited.status.success(),
        "{}",
        String::from_utf8_lossy(&audited.stderr)
    );
}

async fn the_offline_tools_refuse_disabled_and_locked_accounts_and_count_wrong_passwords(
    backend: Backend,
) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.enrol_first_admin("ada").await;
    let admin_token = app.login(&admin).await;
    app.add_reviewer(&admin_token, "rita", "reviewer", &["default"])
        .await;
    let disabled = app
        .send(
            Method::PATCH,
            "/api/v1/admin/reviewers/rita",
            Some(&admin_token),
            Some(json!({"status": "disabled"})),
        )
        .await;
    assert_eq!(disabled.status(), 204);

    let of_disabled = export_identity(&app, "rita", PASSWORD);
    let wrong = export_identity(&app, "ada", "not the password of ada");
    let failures_after_wrong = secrets_of(&app, "ada").await.failed_logins;
    app.execute(&format!(
        "UPDATE reviewer_secrets SET locked_until = {}",
        unix_now() + 600
    ))
    .await;
    let of_locked = export_identity(&app, "ada", PASSWORD);
    app.execute("UPDATE reviewer_secrets SET locked_until = 0")
        .await;
    let of_active = export_identity(&app, "ada", PASSWORD);

    assert!(
        !of_disabled.status.success(),
        "a disabled account opens nothing"
    );
    assert!(!wrong.status.success());
    assert_eq!(failures_after_wrong, 1, "a wrong password counts");
    assert!(
        !of_locked.status.success(),
        "a locked account opens nothing"
    );
    assert!(
        of_active.status.success(),
        "{}",
        String::from_utf8_lossy(&of_active.stderr)
    );
}

async fn concurrent_enrolments_all_succeed(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.enrol_first_admin("ada").await;
    let admin_token = app.login(&admin).await;
    let names = ["rita", "sam", "tess", "uma", "vic", "wen"];
    let contested = app.invite(&admin_token, "xia", "reviewer", &[]).await;
    let mut invitations = Vec::new();
    for name in names {
        invitations.push(
            app.invite(&admin_token, name, "reviewer", &["default"])
                .await,
        );
    }

    let redeemed =
        futures_util::future::join_all(names.iter().zip(&invitations).map(|(name, token)| {
            app.post_json(
                "/api/v1/enrol",
                json!({"token": token, "username": name, "password": PASSWORD}),
            )
        }))
        .await;
    // One invitation redeemed twice at once by the same person: one account either way. The
    // second either met the first mid-way (a clean refusal) or came after it and replaced its
    // pending account (as a retry after a lost answer does).
    let twice = futures_util::future::join_all((0..2).map(|_| {
        app.post_json(
            "/api/v1/enrol",
            json!({"token": contested, "username": "xia", "password": PASSWORD}),
        )
    }))
    .await;

    for response in redeemed {
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
    }
    let mut statuses: Vec<u16> = twice.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort_unstable();
    assert!(
        statuses == [200, 422] || statuses == [200, 200],
        "{statuses:?}"
    );
    assert_eq!(app.count("reviewers").await, 2 + names.len() as i64);
    assert_eq!(app.count("reviewers WHERE username = 'xia'").await, 1);
}

/// A step-up with the right password clears the failures before it, as a login does: they no
/// longer count towards a lock-out.
async fn a_right_step_up_clears_earlier_failures(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.enrol_first_admin("ada").await;
    let token = app.login(&admin).await;
    let wrong = app
        .send(
            Method::POST,
            "/api/v1/auth/step-up",
            Some(&token),
            Some(json!({"password": "not the password of ada"})),
        )
        .await;
    assert_eq!(wrong.status(), 422, "wrong_password");
    assert_eq!(secrets_of(&app, "ada").await.failed_logins, 1);

    app.step_up(&token, &admin).await;

    assert_eq!(secrets_of(&app, "ada").await.failed_logins, 0);
}

crate::on_both_backends!(
    a_right_step_up_clears_earlier_failures,
    parallel_wrong_guesses_are_each_counted_and_lock_the_account,
    a_login_completes_only_if_nothing_changed_since_its_checks,
    a_locked_account_cannot_change_its_password,
    recovery_step_up_and_password_change_writes_refuse_a_lock_set_meanwhile,
    an_export_that_cannot_be_audited_leaves_no_file,
    no_session_is_written_for_an_account_disabled_meanwhile,
    a_login_racing_a_disabling_leaves_no_session,
    the_offline_tools_refuse_disabled_and_locked_accounts_and_count_wrong_passwords,
    concurrent_enrolments_all_succeed,
);
