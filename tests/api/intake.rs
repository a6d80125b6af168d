//! `GET /api/v1/intake`, and intake while the database is unavailable.

use incident_vault::domain::IncidentType;
use serde_json::Value;
use sqlx::{Connection, Executor};

use crate::helpers::{
    Backend, LOGS, LockHolder, TestApp, TestDatabase, minimal_report, random_idempotency_key,
    request_id, spawn_app, spawn_app_with,
};

async fn intake_lists_the_default_desk_the_vocabularies_and_the_limits(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };

    let response = app.get("/api/v1/intake").await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["desks"][0]["slug"], "default");
    let types: Vec<&str> = body["vocabulary"]["incident_type"]
        .as_array()
        .unwrap()
        .iter()
        .map(|value| value.as_str().unwrap())
        .collect();
    assert_eq!(types, IncidentType::names());
    assert_eq!(body["limits"]["description_chars"], 20_000);
    assert_eq!(body["limits"]["occurred_at_chars"], 64);
    assert_eq!(
        body["limits"]["body_bytes"],
        app.settings.limits.json_body_bytes
    );
    assert_eq!(body["idempotency"]["header"], "Idempotency-Key");
    assert_eq!(
        body["limits"]["body_timeout_seconds"],
        app.settings.limits.body_timeout_seconds
    );
    assert_eq!(
        body["limits"]["request_timeout_seconds"],
        app.settings.server.request_timeout_seconds
    );
}

/// A database that is locked past the busy timeout (SQLite) or whose connections were cut
/// (PostgreSQL restarting) is not our fault: the phone gets 503 with `Retry-After`, not an opaque
/// 500, nothing is filed, and a retry with the same key files the report once.
async fn a_database_that_stops_answering_gets_503_and_a_retry_files_once(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |settings| {
        settings.database.lock_timeout_seconds = 1;
    })
    .await
    else {
        return;
    };
    let key = "6c1f0a3e-9b7d-4e21-8f4a-0d5c3b2a1e9f";
    let report = minimal_report("filed while the database was away");

    let refused = match &app.database {
        TestDatabase::Sqlite { url, .. } => {
            // Another writer holds the lock for longer than the service's lock timeout.
            let mut holder = sqlx::SqliteConnection::connect(url).await.unwrap();
            holder.execute("BEGIN EXCLUSIVE").await.unwrap();
            let refused = app.post_report(&report, Some(key)).await;
            holder.execute("ROLLBACK").await.unwrap();
            vec![refused]
        }
        TestDatabase::Postgres { url, .. } => {
            let mut admin = sqlx::PgConnection::connect(url).await.unwrap();
            admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid()",
                )
                .await
                .unwrap();
            // Each cut connection the pool still holds fails one request; then it reconnects.
            let mut refused = Vec::new();
            for _ in 0..=app.settings.database.max_connections {
                let response = app.post_report(&report, Some(key)).await;
                if response.status() == 201 {
                    break;
                }
                refused.push(response);
            }
            refused
        }
    };

    assert!(
        !refused.is_empty(),
        "no request met the unavailable database"
    );
    for response in refused {
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "5");
        // The log says why, so that an operator can tell a restart from a leak.
        let id = crate::helpers::request_id(&response);
        let lines = LOGS.lines_of_requests(std::slice::from_ref(&id));
        assert!(
            lines.iter().any(|line| line.contains("\"level\":\"WARN\"")
                && line.contains("database_unavailable: ")),
            "{lines:?}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "database_unavailable");
    }
    let retried = app.post_report(&report, Some(key)).await;
    assert_eq!(retried.status(), 201, "{:?}", retried.text().await);
    let again = app.post_report(&report, Some(key)).await;
    assert_eq!(again.status(), 201);
    assert_eq!(app.count("cases").await, 1);
}

/// The desk a report is sealed for, with its active members only: a disabled member, a desk of
/// only disabled members, a desk without members and no desk at all.
async fn the_intake_desk_lists_its_active_members_only(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let default = app.store.desk_by_slug("default").await.unwrap().unwrap();
    app.seed_desk_members(&default.id, 3).await;
    app.execute("UPDATE reviewers SET status = 'disabled' WHERE id = 'R00001'")
        .await;
    for (id, slug) in [("DESKEMPTY", "empty"), ("DESKIDLE", "idle")] {
        let desk = incident_vault::storage::DeskRecord {
            id: id.into(),
            slug: slug.into(),
            name: slug.into(),
        };
        let created = incident_vault::storage::NewAuditEvent {
            occurred_at: 0,
            actor: "test".into(),
            action: "desk.created".into(),
            target: Some(slug.into()),
            outcome: "success".into(),
        };
        app.store
            .insert_desk(
                &desk,
                "2026-11-29",
                &created,
                &incident_vault::services::audit::chain_hash,
            )
            .await
            .unwrap();
    }
    app.execute("INSERT INTO desk_members (desk_id, reviewer_id, role) VALUES ('DESKIDLE', 'R00001', 'member')")
        .await;

    let members = |desk: Option<incident_vault::storage::IntakeDesk>| -> (String, Vec<String>) {
        let desk = desk.expect("the desk is found");
        let ids = desk
            .members
            .into_iter()
            .map(|member| member.reviewer_id)
            .collect();
        (desk.desk_id, ids)
    };
    let (id, of_default) = members(app.store.intake_desk("default").await.unwrap());
    assert_eq!(id, default.id);
    assert_eq!(of_default, vec!["R00000".to_owned(), "R00002".to_owned()]);
    assert_eq!(
        members(app.store.intake_desk("empty").await.unwrap()),
        ("DESKEMPTY".to_owned(), vec![])
    );
    assert_eq!(
        members(app.store.intake_desk("idle").await.unwrap()),
        ("DESKIDLE".to_owned(), vec![])
    );
    assert!(app.store.intake_desk("nowhere").await.unwrap().is_none());
}

/// Files `report` with `key` while the test holds a lock that intake's INSERT waits for.
async fn file_while_cases_are_locked(
    app: &TestApp,
    report: &Value,
    key: &str,
) -> reqwest::Response {
    let holder = LockHolder::take(&app.database, "LOCK TABLE cases IN SHARE MODE").await;
    let answer = app.post_report(report, Some(key)).await;
    // Liveness does not wait for the database.
    assert_eq!(app.get("/healthz").await.status(), 200);
    holder.release().await;
    answer
}

/// A write that waits for a lock held elsewhere gives up after `database.lock_timeout_seconds`
/// with 503, instead of holding the phone (and a pooled connection) for as long as the lock is
/// held: PostgreSQL would otherwise wait without end. Nothing is filed, the log names the lock,
/// and a retry with the same key files the report once. The request deadline is set a little
/// further out: were the setting not what the database used (the built-in 10 s, say), the
/// deadline would answer first, with another code.
async fn a_report_that_waits_past_the_lock_timeout_gets_503_and_a_retry_files_once(
    backend: Backend,
) {
    let Some(app) = spawn_app_with(backend, |settings| {
        settings.database.lock_timeout_seconds = 1;
        settings.limits.body_timeout_seconds = 1;
        settings.server.request_timeout_seconds = 5;
    })
    .await
    else {
        return;
    };
    let key = random_idempotency_key();
    let report = minimal_report("filed while another session held a lock");

    let refused = file_while_cases_are_locked(&app, &report, &key).await;

    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "5");
    let id = request_id(&refused);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "database_unavailable");
    let lines = LOGS.lines_of_requests(std::slice::from_ref(&id));
    let cause = match backend {
        Backend::Sqlite => "database is locked",
        Backend::Postgres => "lock timeout",
    };
    assert!(
        lines.iter().any(|line| line.contains(cause)),
        "the log does not say {cause:?}: {lines:?}"
    );
    assert_eq!(app.count("cases").await, 0);
    let retried = app.post_report(&report, Some(&key)).await;
    assert_eq!(retried.status(), 201, "{:?}", retried.text().await);
    assert_eq!(app.count("cases").await, 1);
}

/// A request that the database leaves waiting (a stalled server, a connection that died without
/// a word, a lock held past any timeout of the database's own) is answered at
/// `server.request_timeout_seconds` with 503, rather than never. Whatever the abandoned write
/// did afterwards, a retry with the same key files the report exactly once.
async fn a_report_the_database_leaves_waiting_gets_503_at_the_request_deadline(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |settings| {
        settings.database.lock_timeout_seconds = 600;
        settings.database.statement_timeout_seconds = 600;
        settings.limits.body_timeout_seconds = 1;
        settings.server.request_timeout_seconds = 4;
    })
    .await
    else {
        return;
    };
    let key = random_idempotency_key();
    let report = minimal_report("filed while the database stalled");

    let refused = file_while_cases_are_locked(&app, &report, &key).await;

    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "5");
    // Every answer keeps the security headers, this one too.
    assert_eq!(refused.headers()["cache-control"], "no-store");
    let id = request_id(&refused);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "timed_out");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("same Idempotency-Key"),
        "{body}"
    );
    let lines = LOGS.lines_of_requests(std::slice::from_ref(&id));
    assert!(
        lines
            .iter()
            .any(|line| line.contains("\"level\":\"WARN\"") && line.contains("timed_out")),
        "{lines:?}"
    );
    let retried = app.post_report(&report, Some(&key)).await;
    assert_eq!(retried.status(), 201, "{:?}", retried.text().await);
    let first: Value = retried.json().await.unwrap();
    let again: Value = app
        .post_report(&report, Some(&key))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["case_ref"], again["case_ref"]);
    assert_eq!(app.count("cases").await, 1);
}

crate::on_both_backends!(
    the_intake_desk_lists_its_active_members_only,
    intake_lists_the_default_desk_the_vocabularies_and_the_limits,
    a_database_that_stops_answering_gets_503_and_a_retry_files_once,
    a_report_that_waits_past_the_lock_timeout_gets_503_and_a_retry_files_once,
    a_report_the_database_leaves_waiting_gets_503_at_the_request_deadline,
);
