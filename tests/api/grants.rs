//! Granting and revoking cases (issue 3, item 5): step-up, coordinator rights, batch grants,
//! and re-keying on revoke, proven down to the crypto layer.

use incident_vault::crypto::case_key::open_grant;
use incident_vault::crypto::envelope::{EnvelopeBinding, open_envelope, seal_envelope};
use incident_vault::crypto::kdf::Argon2Params;
use incident_vault::crypto::reviewer_key::{derive_reviewer_keys, open_identity};
use incident_vault::domain::{CaseRef, EntryId, EntryKind};
use incident_vault::storage::EntryRecord;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, minimal_report, spawn_app};
use crate::people::{AdaAndRita, PASSWORD, spawn_with_ada_and_rita};

async fn grant(app: &TestApp, token: &str, case_ref: &str, to: &str) -> reqwest::Response {
    app.send(
        Method::POST,
        &format!("/api/v1/cases/{case_ref}/grants"),
        Some(token),
        Some(json!({"reviewer": to})),
    )
    .await
}

async fn revoke(app: &TestApp, token: &str, case_ref: &str, who: &str) -> reqwest::Response {
    app.send(
        Method::DELETE,
        &format!("/api/v1/cases/{case_ref}/grants/{who}"),
        Some(token),
        None,
    )
    .await
}

async fn error_code(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    body["error"].as_str().unwrap_or_default().to_owned()
}

/// A coordinator made a plain reviewer stops coordinating their desks: the step-up that let them
/// grant a case before no longer does.
async fn a_demoted_coordinator_grants_nothing_on_their_desk(backend: Backend) {
    let Some(AdaAndRita {
        app, admin_token, ..
    }) = spawn_with_ada_and_rita(backend).await
    else {
        return;
    };
    let (otto, otto_token) = app
        .add_reviewer(&admin_token, "otto", "coordinator", &["default"])
        .await;
    app.add_reviewer(&admin_token, "ines", "reviewer", &[])
        .await;
    let (first, _) = app.file(&minimal_report("Before the demotion.")).await;
    let (second, _) = app.file(&minimal_report("After the demotion.")).await;
    app.step_up(&otto_token, &otto).await;
    let while_coordinator = grant(&app, &otto_token, &first, "ines").await;

    let demoted = app
        .send(
            Method::PATCH,
            "/api/v1/admin/reviewers/otto",
            Some(&admin_token),
            Some(json!({"role": "reviewer"})),
        )
        .await;
    let after = grant(&app, &otto_token, &second, "ines").await;

    assert_eq!(while_coordinator.status(), 201);
    assert_eq!(demoted.status(), 204);
    assert_eq!(after.status(), 403);
    assert_eq!(error_code(after).await, "forbidden");
    let (otto_record, _) = app.stored_account("otto").await;
    let roles: Vec<String> = app
        .store
        .memberships_of(&otto_record.id)
        .await
        .unwrap()
        .into_iter()
        .map(|membership| membership.role)
        .collect();
    assert_eq!(roles, ["member"], "still on the desk, as a member");
}

async fn a_coordinator_grants_a_case_after_a_step_up_and_the_grantee_reads_it(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.enrol_first_admin("ada").await;
    let admin_token = app.login(&admin).await;
    let (case_ref, _) = app.file(&minimal_report("Filmed at the side event.")).await;
    let (_, rita_token) = app
        .add_reviewer(&admin_token, "rita", "reviewer", &[])
        .await;
    assert_eq!(
        app.get_as(&rita_token, &format!("/api/v1/cases/{case_ref}"))
            .await
            .status(),
        404
    );

    let without_step_up = grant(&app, &admin_token, &case_ref, "rita").await;
    assert_eq!(without_step_up.status(), 403);
    assert_eq!(error_code(without_step_up).await, "step_up_required");
    app.step_up(&admin_token, &admin).await;
    let granted = grant(&app, &admin_token, &case_ref, "rita").await;
    let again = grant(&app, &admin_token, &case_ref, "rita").await;
    let read = app
        .get_as(&rita_token, &format!("/api/v1/cases/{case_ref}"))
        .await;

    assert_eq!(granted.status(), 201);
    assert_eq!(again.status(), 200, "granting twice changes nothing");
    assert_eq!(read.status(), 200);
    let case: Value = read.json().await.unwrap();
    assert_eq!(case["report"]["description"], "Filmed at the side event.");
    let grants = app.store.grants_of_case(&case_ref).await.unwrap();
    assert_eq!(grants.len(), 3, "escrow, the admin, rita");
    let events = app.store.audit_events(0, 1000).await.unwrap();
    let grant_events: Vec<_> = events
        .iter()
        .filter(|event| event.action == "case.grant")
        .collect();
    assert_eq!(grant_events.len(), 1);
    assert!(
        grant_events[0]
            .target
            .as_deref()
            .unwrap()
            .starts_with(&format!("case:{case_ref} reviewer:"))
    );
}

async fn a_grantee_who_is_no_coordinator_cannot_grant_and_nobody_grants_to_an_auditor(
    backend: Backend,
) {
    let Some(AdaAndRita {
        app,
        admin,
        admin_token,
        rita,
        rita_token,
    }) = spawn_with_ada_and_rita(backend).await
    else {
        return;
    };
    app.add_reviewer(&admin_token, "otto", "reviewer", &[])
        .await;
    app.add_reviewer(&admin_token, "aud", "auditor", &[]).await;
    let (case_ref, _) = app.file(&minimal_report("For the default desk.")).await;
    app.step_up(&rita_token, &rita).await;
    app.step_up(&admin_token, &admin).await;

    let by_member = grant(&app, &rita_token, &case_ref, "otto").await;
    let to_auditor = grant(&app, &admin_token, &case_ref, "aud").await;
    let to_nobody = grant(&app, &admin_token, &case_ref, "nobody").await;

    assert_eq!(by_member.status(), 403);
    assert_eq!(error_code(by_member).await, "forbidden");
    assert_eq!(to_auditor.status(), 422);
    assert_eq!(to_nobody.status(), 422);
    assert_eq!(app.store.grants_of_case(&case_ref).await.unwrap().len(), 3);
}

async fn revoking_re_keys_the_case_and_the_revoked_reviewer_reads_nothing(backend: Backend) {
    let Some(AdaAndRita {
        app,
        admin_token,
        rita_token,
        ..
    }) = spawn_with_ada_and_rita(backend).await
    else {
        return;
    };
    let (case_ref, _) = app.file(&minimal_report("Both can read this.")).await;
    assert_eq!(
        app.get_as(&rita_token, &format!("/api/v1/cases/{case_ref}"))
            .await
            .status(),
        200
    );

    let revoked = revoke(&app, &admin_token, &case_ref, "rita").await;
    let twice = revoke(&app, &admin_token, &case_ref, "rita").await;

    assert_eq!(revoked.status(), 204);
    assert_eq!(twice.status(), 404);
    assert_eq!(error_code(twice).await, "grant_not_found");
    let case = app.store.case_record(&case_ref).await.unwrap().unwrap();
    assert_eq!(case.key_epoch, 2);
    let rita_reads = app
        .get_as(&rita_token, &format!("/api/v1/cases/{case_ref}"))
        .await;
    assert_eq!(rita_reads.status(), 404);
    let list: Value = app
        .get_as(&rita_token, "/api/v1/cases")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["cases"].as_array().unwrap().len(), 0);
    let admin_reads = app
        .get_as(&admin_token, &format!("/api/v1/cases/{case_ref}"))
        .await;
    assert_eq!(admin_reads.status(), 200, "the others keep access");
    let escrow = app.cli(&[
        "case",
        "decrypt",
        "--identity",
        app.escrow_identity_file().to_str().unwrap(),
        &case_ref,
    ]);
    assert!(
        escrow.status.success(),
        "{}",
        String::from_utf8_lossy(&escrow.stderr)
    );
    let events = app.store.audit_events(0, 1000).await.unwrap();
    assert!(events.iter().any(|event| event.action == "case.revoke"));
}

/// A reader's request tries only the reader's own grants: another reviewer's damaged grant row
/// neither costs the reader its X25519 work nor stops the read (it stopped every read before).
async fn a_case_read_opens_only_the_readers_own_grant(backend: Backend) {
    let Some(AdaAndRita {
        app,
        admin_token,
        rita_token,
        ..
    }) = spawn_with_ada_and_rita(backend).await
    else {
        return;
    };
    let (case_ref, _) = app.file(&minimal_report("Both can read this.")).await;
    let rita = app.stored_account("rita").await.0;
    let hex_null = match &app.database {
        crate::helpers::TestDatabase::Sqlite { .. } => "x'00'",
        crate::helpers::TestDatabase::Postgres { .. } => "'\\x00'::bytea",
    };
    app.execute(&format!(
        "UPDATE grants SET ciphertext = {hex_null} WHERE grantee_id = '{}'",
        rita.id
    ))
    .await;

    let by_ada = app
        .get_as(&admin_token, &format!("/api/v1/cases/{case_ref}"))
        .await;
    let by_rita = app
        .get_as(&rita_token, &format!("/api/v1/cases/{case_ref}"))
        .await;

    assert_eq!(by_ada.status(), 200, "{:?}", by_ada.text().await);
    let body: Value = by_ada.json().await.unwrap();
    assert_eq!(body["report"]["description"], "Both can read this.");
    let rita_request = crate::helpers::request_id(&by_rita);
    assert_eq!(by_rita.status(), 500, "her own damaged grant is refused");
    // Its log line says what failed, but not which case: the audit log holds that.
    let logged = crate::helpers::LOGS
        .lines_of_requests(&[rita_request])
        .join("\n");
    assert!(logged.contains("failed its checks"), "{logged}");
    for spelling in crate::helpers::case_ref_spellings(&case_ref) {
        assert!(
            !logged.contains(&spelling),
            "the case reference is in the log: {logged}"
        );
    }
}

/// An entry whose key epoch no grant of the reader opens (a damaged restore, a row moved) makes
/// the read fail with a 500 whose log line says so, without naming the case or the entry.
async fn a_read_missing_a_key_epoch_is_logged_without_the_case(backend: Backend) {
    let Some(AdaAndRita {
        app, admin_token, ..
    }) = spawn_with_ada_and_rita(backend).await
    else {
        return;
    };
    let (case_ref, _) = app
        .file(&minimal_report("An entry of a later epoch."))
        .await;
    app.execute(&format!(
        "UPDATE entries SET epoch = 2 WHERE case_id = '{case_ref}'"
    ))
    .await;

    let read = app
        .get_as(&admin_token, &format!("/api/v1/cases/{case_ref}"))
        .await;

    let read_request = crate::helpers::request_id(&read);
    assert_eq!(read.status(), 500);
    let logged = crate::helpers::LOGS
        .lines_of_requests(&[read_request])
        .join("\n");
    assert!(logged.contains("no grant opens a key epoch"), "{logged}");
    let entry_ids: Vec<String> = app
        .store
        .entries_of_case(&case_ref)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.id)
        .collect();
    assert!(!entry_ids.is_empty());
    for named in crate::helpers::case_ref_spellings(&case_ref)
        .into_iter()
        .chain(entry_ids)
    {
        assert!(!logged.contains(&named), "{named} is in the log: {logged}");
    }
}

/// A revoke re-keys the case for those who keep access, but an account disabled meanwhile (a
/// suspected infiltrator) receives no new key: not from the service's choice of grantees, and
/// not from a re-key computed before the account was disabled, nor from a grant sealed before.
async fn a_disabled_account_gets_no_new_key_from_a_revoke_or_a_grant(backend: Backend) {
    let Some(AdaAndRita {
        app, admin_token, ..
    }) = spawn_with_ada_and_rita(backend).await
    else {
        return;
    };
    app.add_reviewer(&admin_token, "otto", "reviewer", &["default"])
        .await;
    let (case_ref, _) = app
        .file(&minimal_report("Three reviewers hold this."))
        .await;
    let otto = app.stored_account("otto").await.0;
    let ada = app.stored_account("ada").await.0;
    let disabled = app
        .send(
            Method::PATCH,
            "/api/v1/admin/reviewers/otto",
            Some(&admin_token),
            Some(json!({"status": "disabled"})),
        )
        .await;
    assert_eq!(disabled.status(), 204);

    let revoked = revoke(&app, &admin_token, &case_ref, "rita").await;

    assert_eq!(revoked.status(), 204, "{:?}", revoked.text().await);
    let grants = app.store.grants_of_case(&case_ref).await.unwrap();
    let mut second_epoch: Vec<&str> = grants
        .iter()
        .filter(|grant| grant.epoch == 2)
        .map(|grant| grant.grantee_id.as_str())
        .collect();
    second_epoch.sort_unstable();
    let mut expected = vec!["escrow", ada.id.as_str()];
    expected.sort_unstable();
    assert_eq!(second_epoch, expected);
    assert!(
        grants
            .iter()
            .any(|grant| grant.grantee_id == otto.id && grant.epoch == 1),
        "what otto held before stays: it cannot be taken back"
    );

    // A re-key sealed while otto was still active, written after he was disabled.
    let grant_to = |grantee_kind: &str, grantee_id: &str| incident_vault::storage::GrantRecord {
        case_id: case_ref.clone(),
        grantee_kind: grantee_kind.into(),
        grantee_id: grantee_id.into(),
        epoch: 3,
        ciphertext: b"sealed before the account was disabled".to_vec(),
    };
    let rekey = incident_vault::storage::Rekey {
        case_id: case_ref.clone(),
        from_epoch: 2,
        to_epoch: 3,
        new_recipient: "age1placeholderrecipient".into(),
        revoked_reviewer: ada.id.clone(),
        remaining_reviewers: vec![otto.id.clone()],
        grants: vec![grant_to("escrow", "escrow"), grant_to("reviewer", &otto.id)],
    };
    let event = incident_vault::storage::NewAuditEvent {
        occurred_at: 1_795_000_000,
        actor: ada.id.clone(),
        action: "case.revoke".into(),
        target: Some(case_ref.clone()),
        outcome: "success".into(),
    };
    app.store
        .rekey_case(&rekey, &event, &incident_vault::services::audit::chain_hash)
        .await
        .unwrap();
    let third_epoch: Vec<String> = app
        .store
        .grants_of_case(&case_ref)
        .await
        .unwrap()
        .into_iter()
        .filter(|grant| grant.epoch == 3)
        .map(|grant| grant.grantee_id)
        .collect();
    assert_eq!(third_epoch, vec!["escrow".to_owned()]);

    // A grant sealed to otto while he was active (a coordinator's, say), written after he was
    // disabled: none is added, and no event says one was.
    let events = app.count("audit_events").await;
    let added = app
        .store
        .add_grants(
            &case_ref,
            3,
            &[grant_to("reviewer", &otto.id)],
            &event,
            &incident_vault::services::audit::chain_hash,
        )
        .await
        .unwrap();
    assert_eq!(added, 0);
    let otto_now: Vec<i64> = app
        .store
        .grants_of_case(&case_ref)
        .await
        .unwrap()
        .into_iter()
        .filter(|grant| grant.grantee_id == otto.id)
        .map(|grant| grant.epoch)
        .collect();
    assert_eq!(otto_now, vec![1], "otto holds only what he held before");
    assert_eq!(app.count("audit_events").await, events);
}

/// The must-show of revocation: with a copy of the database taken while she still had access,
/// and her own password, the revoked reviewer opens none of the content added after the revoke.
async fn after_a_revoke_a_database_copy_and_the_password_open_no_later_content(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.enrol_first_admin("ada").await;
    let admin_token = app.login(&admin).await;
    app.add_reviewer(&admin_token, "rita", "reviewer", &["default"])
        .await;
    let (case_ref, _) = app.file(&minimal_report("Before the revoke.")).await;
    let case_ref = CaseRef::parse(&case_ref).unwrap();
    // Rita's copy of the database, taken while she had access: her sealed login material and
    // every grant of the case.
    let (rita, rita_secrets) = app.stored_account("rita").await;
    let copied_grants = app.store.grants_of_case(case_ref.as_str()).await.unwrap();

    assert_eq!(
        revoke(&app, &admin_token, case_ref.as_str(), "rita")
            .await
            .status(),
        204
    );
    // Content added later, sealed the way the server adds content: to the case's recipient.
    let case = app
        .store
        .case_record(case_ref.as_str())
        .await
        .unwrap()
        .unwrap();
    let recipient: age::x25519::Recipient = case.case_recipient.parse().unwrap();
    let entry_id = EntryId::generate();
    let binding = EnvelopeBinding {
        case: &case_ref,
        entry: &entry_id,
        kind: EntryKind::InternalNote,
    };
    let later = seal_envelope(binding, b"{\"note\":\"after the revoke\"}", &[&recipient]).unwrap();
    app.store
        .insert_entry(&EntryRecord {
            id: entry_id.to_string(),
            case_id: case_ref.to_string(),
            kind: EntryKind::InternalNote.as_str().into(),
            author: "system".into(),
            epoch: case.key_epoch,
            created_on: "2026-11-28".into(),
            ciphertext: later.clone(),
        })
        .await
        .unwrap();
    let all_grants_now = app.store.grants_of_case(case_ref.as_str()).await.unwrap();

    // Rita opens her identity with her password, exactly as the server would.
    let params = Argon2Params::decode(&rita_secrets.kdf_params).unwrap();
    let keys =
        derive_reviewer_keys(PASSWORD.as_bytes(), &rita_secrets.password_salt, &params).unwrap();
    let identity = open_identity(&rita_secrets.sealed_identity, &keys.wrap_key, &rita.id).unwrap();
    let mut her_keys = Vec::new();
    for grant in copied_grants.iter().chain(&all_grants_now) {
        let epoch = u32::try_from(grant.epoch).unwrap();
        if let Ok(key) = open_grant(&grant.ciphertext, &[&identity], &case_ref, epoch) {
            her_keys.push((grant.epoch, key));
        }
    }
    assert!(
        her_keys.iter().all(|(epoch, _)| *epoch == 1),
        "she holds only keys of the epoch before the revoke"
    );
    assert!(
        !her_keys.is_empty(),
        "her old grant still opens the old key"
    );
    for (_, key) in &her_keys {
        assert!(
            open_envelope(binding, &later, &[key.as_age_identity()]).is_err(),
            "the content added after the revoke does not open with her old key"
        );
    }
    // While the admin, who kept access, opens it with the new epoch's key.
    let admin_case = app
        .get_as(&admin_token, &format!("/api/v1/cases/{case_ref}"))
        .await;
    assert_eq!(admin_case.status(), 200);
    let admin_case: Value = admin_case.json().await.unwrap();
    let note = admin_case["thread"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["kind"] == "internal_note")
        .expect("the note is in the thread");
    assert_eq!(note["body"]["note"], "after the revoke");
}

async fn a_new_desk_member_gets_the_desk_cases_as_a_batch(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.enrol_first_admin("ada").await;
    let admin_token = app.login(&admin).await;
    for number in 0..4 {
        app.file(&minimal_report(&format!("case {number}"))).await;
    }
    let (_, nora_token) = app
        .add_reviewer(&admin_token, "nora", "reviewer", &["default"])
        .await;
    let before: Value = app
        .get_as(&nora_token, "/api/v1/cases")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        before["cases"].as_array().unwrap().len(),
        0,
        "joining a desk grants nothing by itself"
    );
    app.step_up(&admin_token, &admin).await;

    let batch = app
        .send(
            Method::POST,
            "/api/v1/desks/default/grants",
            Some(&admin_token),
            Some(json!({"reviewer": "nora"})),
        )
        .await;
    let again = app
        .send(
            Method::POST,
            "/api/v1/desks/default/grants",
            Some(&admin_token),
            Some(json!({"reviewer": "nora"})),
        )
        .await;

    assert_eq!(batch.status(), 200);
    let tally: Value = batch.json().await.unwrap();
    assert_eq!(tally, json!({"granted": 4, "already_held": 0}));
    let tally: Value = again.json().await.unwrap();
    assert_eq!(tally, json!({"granted": 0, "already_held": 4}));
    let after: Value = app
        .get_as(&nora_token, "/api/v1/cases")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after["cases"].as_array().unwrap().len(), 4);
}

crate::on_both_backends!(
    a_demoted_coordinator_grants_nothing_on_their_desk,
    a_coordinator_grants_a_case_after_a_step_up_and_the_grantee_reads_it,
    a_grantee_who_is_no_coordinator_cannot_grant_and_nobody_grants_to_an_auditor,
    revoking_re_keys_the_case_and_the_revoked_reviewer_reads_nothing,
    a_disabled_account_gets_no_new_key_from_a_revoke_or_a_grant,
    a_case_read_opens_only_the_readers_own_grant,
    a_read_missing_a_key_epoch_is_logged_without_the_case,
    after_a_revoke_a_database_copy_and_the_password_open_no_later_content,
    a_new_desk_member_gets_the_desk_cases_as_a_batch,
);
