//! The hash-chained audit log and `incident-vault audit verify`.

use incident_vault::services::audit;
use incident_vault::storage::NewAuditEvent;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, full_report, minimal_report, spawn_app};
use crate::people::{AdaAndRita, spawn_with_ada_and_rita};

fn event(number: usize) -> NewAuditEvent {
    NewAuditEvent {
        occurred_at: 1_700_000_000 + number as i64,
        actor: format!("reviewer-{number}"),
        action: "case.read".into(),
        target: None,
        outcome: "success".into(),
    }
}

/// A fresh service whose audit chain holds five more events (`None` when the backend is
/// unavailable outside CI).
async fn with_five_events(backend: Backend) -> Option<crate::helpers::TestApp> {
    let app = spawn_app(backend).await?;
    for number in 0..5 {
        audit::record(app.store.as_ref(), event(number))
            .await
            .unwrap();
    }
    Some(app)
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
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert_eq!(
        stdout.lines().next(),
        Some("audit chain intact: 2 events"),
        "{stdout}"
    );
    assert!(stdout.contains("\nhead: 2:"), "{stdout}");
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
    let Some(app) = with_five_events(backend).await else {
        return;
    };
    assert!(app.cli(&["audit", "verify"]).status.success());

    app.execute("UPDATE audit_events SET outcome = 'failure' WHERE sequence = 3")
        .await;
    let output = app.cli(&["audit", "verify"]);

    // 3: the check ran and found a break; 1 and 2 (clap's) are for a check that could not run.
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("broken at event #3"), "{stderr}");
    let unreadable = app.cli(&["audit", "verify", "--anchor", "not-an-anchor"]);
    assert_ne!(unreadable.status.code(), Some(3));
    assert!(!unreadable.status.success());
}

/// Appends five events, runs `tampering` on the database, and returns the first broken link
/// `audit::verify` reports (`None` when the backend is unavailable outside CI).
async fn first_break_after(backend: Backend, tampering: &str) -> Option<i64> {
    let app = with_five_events(backend).await?;
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

/// The anchor that a passing `audit verify` prints on its `head:` line.
fn printed_anchor(app: &crate::helpers::TestApp) -> String {
    let verified = app.cli(&["audit", "verify"]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let printed = String::from_utf8_lossy(&verified.stdout).into_owned();
    printed
        .lines()
        .find_map(|line| line.strip_prefix("head: "))
        .unwrap_or_else(|| panic!("no head line in {printed}"))
        .to_owned()
}

/// The chain and its head share one database: whoever can write to it can trim the chain and
/// move the head back, and plain `verify` cannot tell. The head `audit verify` printed earlier,
/// kept elsewhere and given back as `--anchor`, catches that, and an edit whose later hashes
/// were all recomputed too.
async fn an_anchor_kept_off_the_server_catches_a_trimmed_or_rewritten_chain(backend: Backend) {
    let Some(app) = with_five_events(backend).await else {
        return;
    };
    let anchor = printed_anchor(&app);
    let (head, _) = app.store.audit_head().await.unwrap();
    assert!(anchor.starts_with(&format!("{head}:")), "{anchor}");
    // Events appended later leave an older anchor valid.
    audit::record(app.store.as_ref(), event(5)).await.unwrap();
    let later = app.cli(&["audit", "verify", "--anchor", &anchor]);
    assert!(
        later.status.success(),
        "{}",
        String::from_utf8_lossy(&later.stderr)
    );

    // Trim the last two events and move the head back onto the one before them.
    app.execute(&format!(
        "DELETE FROM audit_events WHERE sequence >= {}",
        head
    ))
    .await;
    app.execute(&format!(
        "UPDATE audit_head SET sequence = {0}, hash = \
         (SELECT hash FROM audit_events WHERE sequence = {0}) WHERE id = 1",
        head - 1
    ))
    .await;
    let plain = app.cli(&["audit", "verify"]);
    let anchored = app.cli(&["audit", "verify", "--anchor", &anchor]);

    assert!(
        plain.status.success(),
        "a consistent trim passes without an anchor"
    );
    assert_eq!(anchored.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&anchored.stderr);
    assert!(stderr.contains("trimmed"), "{stderr}");

    // Rewrite the anchored event itself: a consistent chain of new hashes ends in another hash.
    let rewritten = chain_of(&app, head).await;
    let anchored = app.cli(&["audit", "verify", "--anchor", &anchor]);
    assert!(rewritten, "the rewritten chain is consistent");
    assert!(!anchored.status.success());
    let stderr = String::from_utf8_lossy(&anchored.stderr);
    assert!(
        stderr.contains(&format!("broken at event #{head}")),
        "{stderr}"
    );
}

/// Appends events until the chain reaches `sequence` again, with an outcome of its own, so the
/// event at `sequence` gets another hash; returns whether plain `verify` accepts the result.
async fn chain_of(app: &crate::helpers::TestApp, sequence: i64) -> bool {
    loop {
        let (head, _) = app.store.audit_head().await.unwrap();
        if head >= sequence {
            break;
        }
        let mut forged = event(99);
        forged.outcome = "forged".into();
        audit::record(app.store.as_ref(), forged).await.unwrap();
    }
    audit::verify(app.store.as_ref()).await.is_ok()
}

/// A head moved back over events that are still there: the events past it are checked too, so
/// an edit among them is found, and so is the moved head itself.
async fn events_past_a_head_moved_back_are_checked(backend: Backend) {
    let Some(app) = with_five_events(backend).await else {
        return;
    };
    let move_head_back = "UPDATE audit_head SET sequence = 2, \
                          hash = (SELECT hash FROM audit_events WHERE sequence = 2) WHERE id = 1";
    app.execute(move_head_back).await;

    let moved = app.cli(&["audit", "verify"]);
    assert_eq!(moved.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&moved.stderr);
    assert!(
        stderr.contains("broken at event #3") && stderr.contains("the head was moved back"),
        "{stderr}"
    );

    app.execute("UPDATE audit_events SET outcome = 'edited' WHERE sequence = 5")
        .await;
    match audit::verify(app.store.as_ref()).await {
        Err(audit::VerifyError::Broken(link)) => assert_eq!(link.sequence, 5),
        other => panic!("expected the edit of #5 to be named, got {other:?}"),
    }
}

/// Each kind of tampering is named as what it is, with the exit code of a break (3), with and
/// without an anchor: a deleted head row (no raw database error, no "could not run"), a head
/// whose hash was changed (not "events were removed", at an event that never was), an event
/// deleted from the middle (the missing one named as missing), and a head moved back while an
/// anchor is given (moved back, not trimmed).
async fn each_kind_of_tampering_is_named_as_what_it_is(backend: Backend) {
    let cases = [
        (
            "DELETE FROM audit_head",
            false,
            "the audit chain is broken: the head of the chain is missing",
        ),
        (
            "UPDATE audit_head SET hash = (SELECT hash FROM audit_events WHERE sequence = 1)",
            false,
            "the head of the chain records another hash",
        ),
        (
            "DELETE FROM audit_events WHERE sequence = 2",
            false,
            "broken at event #2: it is missing",
        ),
        (
            "UPDATE audit_head SET sequence = 2, \
             hash = (SELECT hash FROM audit_events WHERE sequence = 2) WHERE id = 1",
            true,
            "broken at event #3: it lies past the head of the chain: the head was moved back",
        ),
    ];
    for (tampering, anchored, expected) in cases {
        let Some(app) = with_five_events(backend).await else {
            return;
        };
        let anchor = printed_anchor(&app);
        let (head, _) = app.store.audit_head().await.unwrap();
        app.execute(tampering).await;
        let mut arguments = vec!["audit", "verify"];
        if anchored {
            arguments.extend(["--anchor", anchor.as_str()]);
        }
        let verified = app.cli(&arguments);
        let stderr = String::from_utf8_lossy(&verified.stderr);
        assert_eq!(verified.status.code(), Some(3), "{tampering}: {stderr}");
        assert!(stderr.contains(expected), "{tampering}: {stderr}");
        if tampering.contains("SET hash") {
            // Named at the head, the one event whose hash the head contradicts.
            assert!(stderr.contains(&format!("event #{head}:")), "{stderr}");
        }
    }
}

/// Setting a desk's members logs who is on the desk afterwards, by account id and desk role, so
/// that the log shows who joined and who left.
async fn a_desk_membership_change_names_the_members_it_leaves(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.enrol_first_admin("ada").await;
    let admin_token = app.login(&admin).await;
    app.add_reviewer(&admin_token, "otto", "reviewer", &[])
        .await;
    let (otto, _) = app.stored_account("otto").await;
    let path = "/api/v1/admin/desks/default/members";

    let mut targets = Vec::new();
    for members in [json!([{"username": "otto", "role": "member"}]), json!([])] {
        let response = app
            .send(
                Method::PUT,
                path,
                Some(&admin_token),
                Some(json!({ "members": members })),
            )
            .await;
        assert_eq!(response.status(), 204);
        let events = app.store.audit_events(0, 10_000).await.unwrap();
        let last = events
            .iter()
            .rev()
            .find(|event| event.action == "desk.members_set")
            .expect("a desk.members_set event");
        targets.push(last.target.clone());
    }

    assert_eq!(
        targets,
        [
            Some(format!("default: {} member", otto.id)),
            Some("default: none".to_owned()),
        ]
    );
}

/// A grant, a revoke, an account change and a desk change are each written in one transaction
/// with their audit event: when the event cannot be appended (here the chain head is gone), the
/// change is not made either, so nothing happens that the log does not show.
async fn a_change_whose_audit_event_cannot_be_written_is_not_made(backend: Backend) {
    let Some(AdaAndRita {
        app,
        admin,
        admin_token,
        rita_token,
        ..
    }) = spawn_with_ada_and_rita(backend).await
    else {
        return;
    };
    app.add_reviewer(&admin_token, "otto", "reviewer", &[])
        .await;
    let (case_ref, _) = app.file(&minimal_report("Only audited changes.")).await;
    app.step_up(&admin_token, &admin).await;
    let events_before = app.store.audit_events(0, 10_000).await.unwrap();
    let grants_before = app.store.grants_of_case(&case_ref).await.unwrap();
    let members_before = app.store.desk_members().await.unwrap();

    app.execute("CREATE TABLE audit_head_saved AS SELECT * FROM audit_head")
        .await;
    app.execute("DELETE FROM audit_head").await;
    let grants_path = format!("/api/v1/cases/{case_ref}/grants");
    let attempts = [
        (
            Method::POST,
            grants_path.clone(),
            Some(json!({"reviewer": "otto"})),
        ),
        (Method::DELETE, format!("{grants_path}/rita"), None),
        (
            Method::PATCH,
            "/api/v1/admin/reviewers/rita".to_owned(),
            Some(json!({"status": "disabled"})),
        ),
        (
            Method::PATCH,
            "/api/v1/admin/reviewers/otto".to_owned(),
            Some(json!({"role": "coordinator"})),
        ),
        (
            Method::PUT,
            "/api/v1/admin/desks/default/members".to_owned(),
            Some(json!({"members": [{"username": "otto", "role": "member"}]})),
        ),
    ];
    let mut statuses = Vec::new();
    for (method, path, body) in attempts {
        let response = app.send(method, &path, Some(&admin_token), body).await;
        statuses.push((path, response.status().as_u16()));
    }
    app.execute("INSERT INTO audit_head SELECT * FROM audit_head_saved")
        .await;

    for (path, status) in &statuses {
        assert_eq!(
            *status, 500,
            "{path} answered {status} without its audit event"
        );
    }
    assert_eq!(
        app.store.grants_of_case(&case_ref).await.unwrap(),
        grants_before,
        "no grant added, none revoked"
    );
    let case = app.store.case_record(&case_ref).await.unwrap().unwrap();
    assert_eq!(case.key_epoch, 1, "the case was not re-keyed");
    assert_eq!(app.store.desk_members().await.unwrap(), members_before);
    let (rita, _) = app.stored_account("rita").await;
    let (otto, _) = app.stored_account("otto").await;
    assert_eq!(
        (rita.status.as_str(), otto.role.as_str()),
        ("active", "reviewer")
    );
    assert_eq!(
        app.get_as(&rita_token, &format!("/api/v1/cases/{case_ref}"))
            .await
            .status(),
        200,
        "rita's session and grant survive"
    );
    let events = app.store.audit_events(0, 10_000).await.unwrap();
    assert_eq!(
        events.len(),
        events_before.len() + 1,
        "only rita's read was logged"
    );
    audit::verify(app.store.as_ref()).await.unwrap();

    // With the chain head back, the same grant goes through and is logged with it.
    let granted = app
        .send(
            Method::POST,
            &grants_path,
            Some(&admin_token),
            Some(json!({"reviewer": "otto"})),
        )
        .await;
    assert_eq!(granted.status(), 201);
    let events = app.store.audit_events(0, 10_000).await.unwrap();
    assert_eq!(events.last().unwrap().action, "case.grant");
    audit::verify(app.store.as_ref()).await.unwrap();
}

crate::on_both_backends!(
    an_anchor_kept_off_the_server_catches_a_trimmed_or_rewritten_chain,
    a_desk_membership_change_names_the_members_it_leaves,
    a_change_whose_audit_event_cannot_be_written_is_not_made,
    deleting_the_latest_audit_rows_is_noticed,
    an_offline_case_read_is_audited_and_the_chain_verifies,
    concurrent_appends_form_one_unbroken_chain,
    tampering_with_one_audit_row_makes_verify_fail_and_name_it,
    deleting_an_audit_row_makes_verify_name_the_gap,
    events_past_a_head_moved_back_are_checked,
    each_kind_of_tampering_is_named_as_what_it_is,
);
