//! Account administration and the account's own life (issue 3): invitations, disabling, roles,
//! password change, recovery, the audit endpoint, the stored KDF floor, and sessions across a
//! restart.

use incident_vault::crypto::kdf::Argon2Params;
use incident_vault::crypto::session::{SessionToken, open_identity_for_session};
use incident_vault::startup::Application;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, minimal_report, spawn_app};
use crate::people::{AdaAndRita, PASSWORD, spawn_with_ada_and_rita};

const NEW_PASSWORD: &str = "a different long passphrase, plum quartz";

async fn error_code(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    body["error"].as_str().unwrap_or_default().to_owned()
}

async fn an_invitation_is_for_one_username_and_one_use(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.enrol_first_admin("ada").await;
    let admin_token = app.login(&admin).await;
    let invitation = app
        .invite(&admin_token, "rita", "reviewer", &["default"])
        .await;

    let other_name = app
        .post_json(
            "/api/v1/enrol",
            json!({"token": invitation, "username": "mallory", "password": PASSWORD}),
        )
        .await;
    let taken = app
        .send(
            Method::POST,
            "/api/v1/admin/reviewers",
            Some(&admin_token),
            Some(json!({"username": "ada", "role": "reviewer"})),
        )
        .await;
    let unknown_desk = app
        .send(
            Method::POST,
            "/api/v1/admin/reviewers",
            Some(&admin_token),
            Some(json!({"username": "otto", "role": "reviewer", "desks": ["nowhere"]})),
        )
        .await;
    let auditor_on_desk = app
        .send(
            Method::POST,
            "/api/v1/admin/reviewers",
            Some(&admin_token),
            Some(json!({"username": "otto", "role": "auditor", "desks": ["default"]})),
        )
        .await;
    app.enrol_with(&invitation, "rita").await;
    let reused = app
        .post_json(
            "/api/v1/enrol",
            json!({"token": invitation, "username": "rita2", "password": PASSWORD}),
        )
        .await;

    assert_eq!(other_name.status(), 422);
    assert_eq!(error_code(other_name).await, "username_mismatch");
    assert_eq!(taken.status(), 422);
    assert_eq!(unknown_desk.status(), 404);
    assert_eq!(auditor_on_desk.status(), 422);
    assert_eq!(reused.status(), 422);
    assert_eq!(error_code(reused).await, "invalid_token");
    let accounts: Value = app
        .get_as(&admin_token, "/api/v1/admin/reviewers")
        .await
        .json()
        .await
        .unwrap();
    let rita = accounts["reviewers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|account| account["username"] == "rita")
        .unwrap();
    assert_eq!(rita["role"], "reviewer");
    assert_eq!(rita["status"], "active");
    assert_eq!(
        rita["desks"],
        json!([{"desk": "default", "role": "member"}])
    );
}

async fn disabling_an_account_ends_its_sessions_at_once(backend: Backend) {
    let Some(AdaAndRita {
        app,
        admin_token,
        rita,
        rita_token,
        ..
    }) = spawn_with_ada_and_rita(backend).await
    else {
        return;
    };
    assert_eq!(app.get_as(&rita_token, "/api/v1/cases").await.status(), 200);

    let disabled = app
        .send(
            Method::PATCH,
            "/api/v1/admin/reviewers/rita",
            Some(&admin_token),
            Some(json!({"status": "disabled"})),
        )
        .await;
    let own = app
        .send(
            Method::PATCH,
            "/api/v1/admin/reviewers/ada",
            Some(&admin_token),
            Some(json!({"role": "reviewer"})),
        )
        .await;

    assert_eq!(disabled.status(), 204);
    assert_eq!(own.status(), 422, "an admin cannot demote themselves");
    assert_eq!(app.get_as(&rita_token, "/api/v1/cases").await.status(), 401);
    let login = app
        .post_json(
            "/api/v1/auth/login",
            // Refused for being disabled, before the code is even looked at.
            json!({"username": "rita", "password": PASSWORD, "totp": "000000"}),
        )
        .await;
    assert_eq!(login.status(), 401);
    // A disabled member receives no grant for new cases.
    let (case_ref, _) = app.file(&minimal_report("After rita left.")).await;
    assert_eq!(app.store.grants_of_case(&case_ref).await.unwrap().len(), 2);
    let events = app.store.audit_events(0, 1000).await.unwrap();
    assert!(
        events
            .iter()
            .any(|event| event.action == "account.disabled")
    );

    let enabled = app
        .send(
            Method::PATCH,
            "/api/v1/admin/reviewers/rita",
            Some(&admin_token),
            Some(json!({"status": "active", "role": "coordinator"})),
        )
        .await;
    assert_eq!(enabled.status(), 204);
    app.login(&rita).await;
    let events = app.store.audit_events(0, 1000).await.unwrap();
    assert!(
        events
            .iter()
            .any(|event| event.action == "account.role_changed:coordinator")
    );

    // The same again changes nothing, and the audit log records no change that did not happen.
    let account_events = |events: &[incident_vault::storage::AuditEventRecord]| {
        events
            .iter()
            .filter(|event| event.action.starts_with("account."))
            .count()
    };
    let before = account_events(&app.store.audit_events(0, 1000).await.unwrap());
    let again = app
        .send(
            Method::PATCH,
            "/api/v1/admin/reviewers/rita",
            Some(&admin_token),
            Some(json!({"status": "active", "role": "coordinator"})),
        )
        .await;
    assert_eq!(again.status(), 204);
    let after = account_events(&app.store.audit_events(0, 1000).await.unwrap());
    assert_eq!(after, before);
}

async fn a_password_change_re_seals_the_identity_and_ends_every_session(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mut admin = app.enrol_first_admin("ada").await;
    let token = app.login(&admin).await;
    let (case_ref, _) = app.file(&minimal_report("Still readable after.")).await;

    let wrong = app
        .send(
            Method::POST,
            "/api/v1/auth/password",
            Some(&token),
            Some(
                json!({"current_password": "not my password at all", "new_password": NEW_PASSWORD}),
            ),
        )
        .await;
    let weak = app
        .send(
            Method::POST,
            "/api/v1/auth/password",
            Some(&token),
            Some(json!({"current_password": PASSWORD, "new_password": "password1234"})),
        )
        .await;
    let changed = app
        .send(
            Method::POST,
            "/api/v1/auth/password",
            Some(&token),
            Some(json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD})),
        )
        .await;

    assert_eq!(wrong.status(), 422);
    assert_eq!(error_code(wrong).await, "wrong_password");
    assert_eq!(weak.status(), 422);
    assert_eq!(changed.status(), 204);
    assert_eq!(app.get_as(&token, "/api/v1/cases").await.status(), 401);
    assert_eq!(app.count("sessions").await, 0);
    let old = app
        .post_json(
            "/api/v1/auth/login",
            // Refused at the password, before the code is looked at.
            json!({"username": "ada", "password": PASSWORD, "totp": "000000"}),
        )
        .await;
    assert_eq!(old.status(), 401);
    admin.password = NEW_PASSWORD.to_owned();
    let token = app.login(&admin).await;
    let read = app
        .get_as(&token, &format!("/api/v1/cases/{case_ref}"))
        .await;
    assert_eq!(read.status(), 200, "the same identity, sealed again");
}

async fn the_recovery_code_replaces_a_forgotten_password_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mut admin = app.enrol_first_admin("ada").await;
    let old_token = app.login(&admin).await;
    let (case_ref, _) = app.file(&minimal_report("Kept through recovery.")).await;

    let without_totp = app
        .post_json(
            "/api/v1/auth/recover",
            json!({"username": "ada", "recovery_code": admin.recovery_code,
                   "totp": "000000", "new_password": NEW_PASSWORD}),
        )
        .await;
    let recovered = app
        .post_json(
            "/api/v1/auth/recover",
            json!({"username": "ada", "recovery_code": admin.recovery_code,
                   "totp": admin.next_code().await, "new_password": NEW_PASSWORD}),
        )
        .await;

    assert_eq!(without_totp.status(), 401);
    assert_eq!(recovered.status(), 200, "{:?}", recovered.text().await);
    let body: Value = recovered.json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_owned();
    let new_code = body["recovery_code"].as_str().unwrap().to_owned();
    assert_ne!(new_code, admin.recovery_code);
    assert_eq!(app.get_as(&old_token, "/api/v1/cases").await.status(), 401);
    let read = app
        .get_as(&token, &format!("/api/v1/cases/{case_ref}"))
        .await;
    assert_eq!(read.status(), 200);
    let again = app
        .post_json(
            "/api/v1/auth/recover",
            json!({"username": "ada", "recovery_code": admin.recovery_code,
                   "totp": admin.next_code().await, "new_password": PASSWORD}),
        )
        .await;
    assert_eq!(again.status(), 401, "the old recovery code is spent");
    admin.password = NEW_PASSWORD.to_owned();
    app.login(&admin).await;
    let events = app.store.audit_events(0, 1000).await.unwrap();
    assert!(
        events
            .iter()
            .any(|event| event.action == "account.recovered")
    );
}

async fn auditors_and_admins_read_the_audit_log_and_nobody_else(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.enrol_first_admin("ada").await;
    let admin_token = app.login(&admin).await;
    let (_, auditor_token) = app.add_reviewer(&admin_token, "aud", "auditor", &[]).await;
    let (_, rita_token) = app
        .add_reviewer(&admin_token, "rita", "reviewer", &[])
        .await;

    let by_auditor = app
        .get_as(&auditor_token, "/api/v1/admin/audit?limit=2")
        .await;
    let by_reviewer = app.get_as(&rita_token, "/api/v1/admin/audit").await;
    let accounts_by_auditor = app.get_as(&auditor_token, "/api/v1/admin/reviewers").await;

    assert_eq!(by_auditor.status(), 200);
    let page: Value = by_auditor.json().await.unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert_eq!(page["events"][0]["sequence"], 1);
    assert_eq!(page["next"], 2);
    let rest: Value = app
        .get_as(&admin_token, "/api/v1/admin/audit?after=2&limit=500")
        .await
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = rest["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["action"].as_str().unwrap())
        .collect();
    for action in [
        "account.invited",
        "enrolment.invitation",
        "login",
        "audit.read",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    assert!(
        rest["next"].is_null(),
        "the last page says so: {}",
        rest["next"]
    );
    // A page that ends exactly at the end of the log is the last one too.
    let (head, _) = app.store.audit_head().await.unwrap();
    let exact: Value = app
        .get_as(
            &admin_token,
            &format!("/api/v1/admin/audit?after={}&limit=2", head - 2),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(exact["events"].as_array().unwrap().len(), 2);
    assert!(exact["next"].is_null(), "{}", exact["next"]);
    // Following `next` two events at a time ends, although each read appends its own
    // `audit.read`; the last page, full or not, says it is the last (one at a time, a walk keeps
    // meeting the reads it made, as the README says).
    let mut after = rest["events"].as_array().unwrap().last().unwrap()["sequence"]
        .as_i64()
        .unwrap()
        - 2;
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages <= 5, "the walk did not end");
        let page: Value = app
            .get_as(
                &admin_token,
                &format!("/api/v1/admin/audit?after={after}&limit=2"),
            )
            .await
            .json()
            .await
            .unwrap();
        match page["next"].as_i64() {
            Some(next) => after = next,
            None => break,
        }
    }
    // A bad value is a 422 naming its parameter, as on the case list.
    for (query, field) in [
        ("after=-1", "after"),
        ("after=abc", "after"),
        ("after=9223372036854775808", "after"),
        ("limit=", "limit"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
    ] {
        let refused = app
            .get_as(&admin_token, &format!("/api/v1/admin/audit?{query}"))
            .await;
        assert_eq!(refused.status(), 422, "{query}");
        let body: Value = refused.json().await.unwrap();
        assert!(body["fields"][field].is_string(), "{query}: {body}");
    }
    assert_eq!(by_reviewer.status(), 403);
    assert_eq!(accounts_by_auditor.status(), 403);
}

async fn every_stored_password_kdf_meets_the_floor(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.enrol_first_admin("ada").await;
    let admin_token = app.login(&admin).await;
    app.add_reviewer(&admin_token, "rita", "reviewer", &[])
        .await;
    app.file(&minimal_report("A receipt KDF too.")).await;

    let mut stored = Vec::new();
    for username in ["ada", "rita"] {
        let (_, secrets) = app.stored_account(username).await;
        stored.push(secrets.kdf_params);
    }

    assert_eq!(stored.len(), 2);
    for encoded in stored {
        let params = Argon2Params::decode(&encoded).expect("stored parameters parse");
        assert!(
            params.memory_kib >= 19 * 1024,
            "m = {} KiB",
            params.memory_kib
        );
        assert!(params.iterations >= 2, "t = {}", params.iterations);
    }
}

async fn sessions_survive_a_restart_and_a_copy_of_the_table_opens_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.enrol_first_admin("ada").await;
    let token = app.login(&admin).await;
    let (case_ref, _) = app.file(&minimal_report("Across the restart.")).await;
    app.stop().await;

    // The same database, a new process-worth of state: nothing of the session is in memory.
    let restarted = Application::build(app.settings.clone()).await.unwrap();
    let address = format!("http://127.0.0.1:{}", restarted.port());
    let store = restarted.store();
    tokio::spawn(restarted.run_until_stopped());
    let read = app
        .client
        .get(format!("{address}/api/v1/cases/{case_ref}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();

    assert_eq!(read.status(), 200);
    // The copied row holds the token's hash and a sealed identity; neither the hash, nor any
    // other token, opens it. Only the token itself does.
    let real = SessionToken::parse(&token).unwrap();
    let (session, reviewer) = store
        .live_session(&real.lookup_hash(), 0)
        .await
        .unwrap()
        .unwrap();
    use base64::Engine as _;
    let hash_as_token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(session.token_hash);
    let guesses = [
        SessionToken::parse(&hash_as_token).unwrap(),
        SessionToken::generate(),
    ];
    for guess in &guesses {
        assert!(open_identity_for_session(&session.sealed_identity, guess, &reviewer.id).is_err());
    }
    assert!(open_identity_for_session(&session.sealed_identity, &real, &reviewer.id).is_ok());
}

/// A session nobody presents again is deleted by the minute's sweep once idle past 30 minutes
/// or past its 12 hours: its row holds the reviewer's identity, sealed under a key derived from
/// the token, which must not outlive the session in the database.
async fn dead_sessions_are_swept_from_the_table(backend: Backend) {
    let Some(AdaAndRita {
        app,
        admin_token,
        rita_token,
        ..
    }) = spawn_with_ada_and_rita(backend).await
    else {
        return;
    };
    let (_, ines_token) = app
        .add_reviewer(&admin_token, "ines", "reviewer", &["default"])
        .await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // Rita's session was last seen 31 minutes ago; Ines's passed its absolute expiry a second
    // ago while still being used.
    for (username, column, value) in [
        ("rita", "last_seen_at", now - 31 * 60),
        ("ines", "expires_at", now - 1),
    ] {
        app.execute(&format!(
            "UPDATE sessions SET {column} = {value} WHERE reviewer_id = \
             (SELECT id FROM reviewers WHERE username = '{username}')"
        ))
        .await;
    }

    // The service's own sweep may run in between (it ticks every minute): only the end state is
    // asserted, which both reach through the same function.
    incident_vault::services::accounts::purge_dead_sessions(app.store.as_ref(), now)
        .await
        .unwrap();

    assert_eq!(app.count("sessions").await, 1);
    assert_eq!(
        app.get_as(&admin_token, "/api/v1/cases").await.status(),
        200
    );
    for dead in [&rita_token, &ines_token] {
        assert_eq!(app.get_as(dead, "/api/v1/cases").await.status(), 401);
    }
}

/// Two admins replacing a desk's members at the same moment take turns: the desk ends with one
/// of the two lists, never both merged, and neither gets a 500 for a duplicate key.
async fn members_replaced_at_once_end_as_one_list(backend: Backend) {
    use incident_vault::storage::{DeskMemberRecord, NewAuditEvent};
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let desk = app.store.desk_by_slug("default").await.unwrap().unwrap();
    app.seed_desk_members(&desk.id, 6).await;
    let list = |ids: &[usize]| -> Vec<DeskMemberRecord> {
        ids.iter()
            .map(|index| DeskMemberRecord {
                desk_id: desk.id.clone(),
                reviewer_id: format!("R{index:05}"),
                role: "member".into(),
            })
            .collect()
    };
    let event = NewAuditEvent {
        occurred_at: 1_795_000_000,
        actor: "R00000".into(),
        action: "desk.members_set".into(),
        target: Some("default".into()),
        outcome: "success".into(),
    };
    let first = list(&[0, 1, 2, 3]);
    let second = list(&[2, 3, 4, 5]);
    let ids = |records: &[DeskMemberRecord]| -> std::collections::BTreeSet<String> {
        records
            .iter()
            .map(|record| record.reviewer_id.clone())
            .collect()
    };

    for _ in 0..10 {
        let (one, other) = tokio::join!(
            app.store.set_desk_members(
                &desk.id,
                &first,
                &event,
                &incident_vault::services::audit::chain_hash
            ),
            app.store.set_desk_members(
                &desk.id,
                &second,
                &event,
                &incident_vault::services::audit::chain_hash
            ),
        );
        one.unwrap();
        other.unwrap();
        let now_members = ids(&app.store.desk_members().await.unwrap());
        assert!(
            now_members == ids(&first) || now_members == ids(&second),
            "{now_members:?}"
        );
    }
}

/// One invitation per account is live: inviting again replaces the one nobody redeemed (a lost
/// invitation is withdrawn that way), and invitations made at the same moment leave one.
async fn a_new_invitation_replaces_the_open_one_of_the_same_username(backend: Backend) {
    let Some(cast) = spawn_with_ada_and_rita(backend).await else {
        return;
    };
    let app = &cast.app;
    let first = app
        .invite(&cast.admin_token, "nora", "reviewer", &["default"])
        .await;
    let second = app
        .invite(&cast.admin_token, "nora", "reviewer", &["default"])
        .await;

    let with_first = app.redeem(&first, "nora").await;
    assert_eq!(with_first.status(), 422);
    let body: Value = with_first.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");
    app.enrol_with(&second, "nora").await;

    // Eight at once: each is a 201 or a 422 naming the username, and one invitation is open.
    let answers = futures_util::future::join_all((0..8).map(|_| {
        app.send(
            Method::POST,
            "/api/v1/admin/reviewers",
            Some(&cast.admin_token),
            Some(json!({"username": "racer", "role": "reviewer", "desks": ["default"]})),
        )
    }))
    .await;
    let mut tokens = Vec::new();
    for answer in answers {
        match answer.status().as_u16() {
            201 => {
                let body: Value = answer.json().await.unwrap();
                tokens.push(body["token"].as_str().unwrap().to_owned());
            }
            422 => {
                let body: Value = answer.json().await.unwrap();
                assert!(body["fields"]["username"].is_string(), "{body}");
            }
            other => panic!("{other}: {:?}", answer.text().await),
        }
    }
    assert!(!tokens.is_empty());
    assert_eq!(
        app.count("enrolments WHERE username = 'racer'").await,
        1,
        "one open invitation"
    );
    let mut redeemed = 0;
    for token in &tokens {
        if app.redeem(token, "racer").await.status() == 200 {
            redeemed += 1;
        }
    }
    assert_eq!(redeemed, 1, "exactly one of {} tokens works", tokens.len());
    // The name is now held by a pending account: inviting again withdraws it (see
    // `inviting_a_redeemed_name_again_withdraws_it`).
    let again = app
        .send(
            Method::POST,
            "/api/v1/admin/reviewers",
            Some(&cast.admin_token),
            Some(json!({"username": "racer", "role": "reviewer", "desks": ["default"]})),
        )
        .await;
    assert_eq!(again.status(), 201, "{:?}", again.text().await);
    let events = app.store.audit_events(0, 1000).await.unwrap();
    assert!(
        events
            .iter()
            .any(|event| event.action == "account.invited" && event.outcome == "success:replaced"),
        "the replaced invitation of nora is audited"
    );
}

/// A refused member is named by its place in the list, as a shape error of the list is.
async fn a_refused_desk_member_is_named_by_its_index(backend: Backend) {
    let Some(cast) = spawn_with_ada_and_rita(backend).await else {
        return;
    };
    for (members, field) in [
        (
            json!([{"username": "rita", "role": "member"}, {"username": "ned", "role": "boss"}]),
            "members[1].role",
        ),
        (
            json!([{"username": "", "role": "member"}]),
            "members[0].username",
        ),
        (json!([{"username": "rita"}]), "members[0].role"),
    ] {
        let response = cast
            .app
            .send(
                Method::PUT,
                "/api/v1/admin/desks/default/members",
                Some(&cast.admin_token),
                Some(json!({"members": members})),
            )
            .await;
        assert_eq!(response.status(), 422, "{field}");
        let body: Value = response.json().await.unwrap();
        assert!(body["fields"][field].is_string(), "{field}: {body}");
    }
}

/// A caller who may not use an admin route hears so first (403), whatever the body: not about a
/// body that could never be accepted from them.
async fn a_non_admin_is_refused_before_the_body_is_read(backend: Backend) {
    let Some(cast) = spawn_with_ada_and_rita(backend).await else {
        return;
    };
    let app = &cast.app;
    for (method, path) in [
        (Method::POST, "/api/v1/admin/reviewers"),
        (Method::PATCH, "/api/v1/admin/reviewers/ada"),
        (Method::POST, "/api/v1/admin/desks"),
        (Method::PUT, "/api/v1/admin/desks/default/members"),
    ] {
        for body in ["{bad", r#"{"zzz": 1}"#] {
            let response = app
                .client
                .request(method.clone(), format!("{}{path}", app.address))
                .bearer_auth(&cast.rita_token)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 403, "{method} {path} {body}");
            let answer: Value = response.json().await.unwrap();
            assert_eq!(answer["error"], "forbidden", "{method} {path} {body}");
        }
    }
}

/// An action and its audit event are one write: when the event cannot be appended (here the
/// chain's head row is gone, so appending fails), creating a desk, inviting an account and a
/// step-up answer 500 and change nothing. They used to commit the action first, and an action
/// could stand unaudited.
async fn an_action_whose_audit_event_cannot_be_written_changes_nothing(backend: Backend) {
    let Some(cast) = spawn_with_ada_and_rita(backend).await else {
        return;
    };
    let app = &cast.app;
    let before = (
        app.count("desks").await,
        app.count("enrolments").await,
        app.count("audit_events").await,
    );
    let stepped_up = "SELECT COUNT(*) FROM sessions WHERE stepped_up_at IS NOT NULL";
    let stepped_up_before = app.database.count(stepped_up).await;
    app.execute("DELETE FROM audit_head").await;
    for (path, body) in [
        (
            "/api/v1/admin/desks",
            json!({"slug": "geneva", "name": "Geneva"}),
        ),
        (
            "/api/v1/admin/reviewers",
            json!({"username": "nadia", "role": "reviewer", "desks": ["default"]}),
        ),
        (
            "/api/v1/auth/step-up",
            json!({"password": cast.admin.password}),
        ),
    ] {
        let response = app
            .send(Method::POST, path, Some(&cast.admin_token), Some(body))
            .await;
        assert_eq!(response.status(), 500, "{path}");
    }
    assert_eq!(
        (
            app.count("desks").await,
            app.count("enrolments").await,
            app.count("audit_events").await,
        ),
        before
    );
    assert_eq!(app.database.count(stepped_up).await, stepped_up_before);
}

/// An account disabled by an admin while its enrolment was pending is not made active by the
/// confirmation, and the confirmation says so instead of answering 204.
async fn a_pending_account_disabled_by_an_admin_cannot_be_confirmed(backend: Backend) {
    let Some(cast) = spawn_with_ada_and_rita(backend).await else {
        return;
    };
    let app = &cast.app;
    let (invitation, secret) = app.invite_and_redeem(&cast.admin_token, "pendtwo").await;
    let disabled = app
        .send(
            Method::PATCH,
            "/api/v1/admin/reviewers/pendtwo",
            Some(&cast.admin_token),
            Some(json!({"status": "disabled"})),
        )
        .await;
    assert_eq!(disabled.status(), 204);

    let confirmed = app
        .post_json(
            "/api/v1/enrol/confirm",
            json!({"token": invitation, "totp": crate::people::code(&secret, crate::people::now())}),
        )
        .await;

    assert_eq!(confirmed.status(), 422);
    let body: Value = confirmed.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");
    let (account, _) = app.stored_account("pendtwo").await;
    assert_eq!(account.status, "disabled");
}

/// Inviting a name again is how a lost or leaked invitation is withdrawn, also when it was
/// already redeemed (an account pending its first TOTP code): that pending account goes with it,
/// its token confirms nothing and signs nobody in, the new invitation enrols the person, and the
/// replacement is audited as such. A name whose account confirmed stays taken.
async fn inviting_a_redeemed_name_again_withdraws_it(backend: Backend) {
    let Some(cast) = spawn_with_ada_and_rita(backend).await else {
        return;
    };
    let app = &cast.app;
    let (leaked, secret) = app.invite_and_redeem(&cast.admin_token, "victor").await;

    let fresh = app
        .invite(&cast.admin_token, "victor", "reviewer", &["default"])
        .await;
    let confirmed = app
        .post_json(
            "/api/v1/enrol/confirm",
            json!({"token": leaked, "totp": crate::people::code(&secret, crate::people::now())}),
        )
        .await;
    let login = app
        .post_json(
            "/api/v1/auth/login",
            json!({
                "username": "victor",
                "password": PASSWORD,
                "totp": crate::people::code(&secret, crate::people::now() + 30),
            }),
        )
        .await;
    let redeemed_again = app.redeem(&leaked, "victor").await;

    assert_eq!(confirmed.status(), 422);
    assert_eq!(error_code(confirmed).await, "invalid_token");
    assert_eq!(login.status(), 401);
    assert_eq!(redeemed_again.status(), 422);
    assert_eq!(
        app.count("reviewers WHERE username = 'victor'").await,
        0,
        "the pending account went with its invitation"
    );
    let victor = app.enrol_with(&fresh, "victor").await;
    app.login(&victor).await;
    let events = app.store.audit_events(0, 1000).await.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|event| event.action == "account.invited"
                && event.outcome == "success:replaced_redeemed")
            .count(),
        1
    );
    // Confirmed, the account holds its name.
    let again = app
        .send(
            Method::POST,
            "/api/v1/admin/reviewers",
            Some(&cast.admin_token),
            Some(json!({"username": "victor", "role": "reviewer", "desks": ["default"]})),
        )
        .await;
    assert_eq!(again.status(), 422);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["fields"]["username"], "is taken", "{body}");
}

crate::on_both_backends!(
    inviting_a_redeemed_name_again_withdraws_it,
    a_new_invitation_replaces_the_open_one_of_the_same_username,
    a_refused_desk_member_is_named_by_its_index,
    a_non_admin_is_refused_before_the_body_is_read,
    a_pending_account_disabled_by_an_admin_cannot_be_confirmed,
    an_action_whose_audit_event_cannot_be_written_changes_nothing,
    members_replaced_at_once_end_as_one_list,
    dead_sessions_are_swept_from_the_table,
    an_invitation_is_for_one_username_and_one_use,
    disabling_an_account_ends_its_sessions_at_once,
    a_password_change_re_seals_the_identity_and_ends_every_session,
    the_recovery_code_replaces_a_forgotten_password_once,
    auditors_and_admins_read_the_audit_log_and_nobody_else,
    every_stored_password_kdf_meets_the_floor,
    sessions_survive_a_restart_and_a_copy_of_the_table_opens_nothing,
);
