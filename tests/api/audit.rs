//! The hash-chained audit log and `incident-vault audit verify`.

use incident_vault::services::audit;
use incident_vault::storage::NewAuditEvent;

use crate::helpers::{Backend, full_report, spawn_app};

fn event(number: usize) -> NewAuditEvent {
    NewAuditEvent {
        occurred_at: 1_700_000_000 + number as i64,
        actor: format!("reviewer-{number}"),
        action: "case.read".into(),
        target: None,
        outcome: "success".into(),
    }
}

async fn an_offline_case_read_is_audited_and_the_chain_verifies(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (case_ref, _) = app.file(&full_report("x")).await;
    let identity = app.escrow_identity_file();

    let read = app.cli(&[
        "case",
        "decrypt",
        "--identity",
        identity.to_str().unwrap(),
        &case_ref,
    ]);
    let verified = app.cli(&["audit", "verify"]);

    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    // First start issued a setup code (one event); the read is the second.
    assert_eq!(
        String::from_utf8_lossy(&verified.stdout).trim(),
        "audit chain intact: 2 events"
    );
    let events = app.store.audit_events(0, 10).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].action, "setup.code_issued");
    assert_eq!(events[1].action, "case.read.offline");
    assert_eq!(events[1].target.as_deref(), Some(case_ref.as_str()));
}

async fn concurrent_appends_form_one_unbroken_chain(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };

    let (before, _) = app.store.audit_head().await.unwrap();
    let appends = (0..24).map(|number| audit::record(app.store.as_ref(), event(number)));
    let sequences = futures_util::future::join_all(appends).await;

    let mut sequences: Vec<i64> = sequences.into_iter().map(Result::unwrap).collect();
    sequences.sort_unstable();
    assert_eq!(sequences, (before + 1..=before + 24).collect::<Vec<_>>());
    assert_eq!(
        audit::verify(app.store.as_ref()).await.unwrap(),
        before as u64 + 24
    );
}

async fn tampering_with_one_audit_row_makes_verify_fail_and_name_it(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    for number in 0..5 {
        audit::record(app.store.as_ref(), event(number))
            .await
            .unwrap();
    }
    assert!(app.cli(&["audit", "verify"]).status.success());

    app.execute("UPDATE audit_events SET outcome = 'failure' WHERE sequence = 3")
        .await;
    let output = app.cli(&["audit", "verify"]);

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("broken at event #3"), "{stderr}");
}

/// Appends five events, runs `tampering` on the database, and returns the first broken link
/// `audit::verify` reports (`None` when the backend is unavailable outside CI).
async fn first_break_after(backend: Backend, tampering: &str) -> Option<i64> {
    let app = spawn_app(backend).await?;
    for number in 0..5 {
        audit::record(app.store.as_ref(), event(number))
            .await
            .unwrap();
    }
    app.execute(tampering).await;
    match audit::verify(app.store.as_ref()).await {
        Err(audit::VerifyError::Broken(link)) => Some(link.sequence),
        other => panic!("expected a broken link after `{tampering}`, got {other:?}"),
    }
}

async fn deleting_an_audit_row_makes_verify_name_the_gap(backend: Backend) {
    let broken = first_break_after(backend, "DELETE FROM audit_events WHERE sequence = 2").await;

    if let Some(sequence) = broken {
        assert_eq!(sequence, 2);
    }
}

async fn deleting_the_latest_audit_rows_is_noticed(backend: Backend) {
    let broken = first_break_after(backend, "DELETE FROM audit_events WHERE sequence >= 4").await;

    if let Some(sequence) = broken {
        assert_eq!(sequence, 4, "the removal of #4 and #5 is noticed");
    }
}

crate::on_both_backends!(
    deleting_the_latest_audit_rows_is_noticed,
    an_offline_case_read_is_audited_and_the_chain_verifies,
    concurrent_appends_form_one_unbroken_chain,
    tampering_with_one_audit_row_makes_verify_fail_and_name_it,
    deleting_an_audit_row_makes_verify_name_the_gap,
);
