//! The first account: setup code, enrolment with password and TOTP, login, logout.

use incident_vault::crypto::totp::TotpSecret;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, minimal_report, spawn_app};
use crate::people::{PASSWORD, code, now, totp_secret};

async fn post(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.post_json(path, body).await
}

/// Confirms an enrolment with the current code of `secret`.
async fn confirm(app: &TestApp, token: &str, secret: &TotpSecret) -> reqwest::Response {
    post(
        app,
        "/api/v1/enrol/confirm",
        json!({"token": token, "totp": code(secret, now())}),
    )
    .await
}

/// Enrols and confirms the first account with the setup code; returns its TOTP secret.
async fn enrol_first_account(app: &TestApp, username: &str) -> TotpSecret {
    let token = app.setup_code.clone().expect("a setup code on first start");
    let response = post(
        app,
        "/api/v1/enrol",
        json!({"token": token, "username": username, "password": PASSWORD}),
    )
    .await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["recovery_code"]
            .as_str()
            .is_some_and(|code| code.len() >= 25)
    );
    let secret = totp_secret(body["totp_uri"].as_str().unwrap());
    let confirmed = confirm(app, &token, &secret).await;
    assert_eq!(confirmed.status(), 204, "{:?}", confirmed.text().await);
    secret
}

async fn the_setup_code_creates_the_first_account_which_can_log_in_and_out(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let secret = enrol_first_account(&app, "coordinator").await;

    // The code of the next step: the confirming code was spent.
    let login = post(
        &app,
        "/api/v1/auth/login",
        json!({"username": "coordinator", "password": PASSWORD, "totp": code(&secret, now() + 30)}),
    )
    .await;

    assert_eq!(login.status(), 200, "{:?}", login.text().await);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-iv_session="));
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let body: Value = login.json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 43);
    assert_eq!(app.count("sessions").await, 1);
    let logout = app
        .client
        .post(format!("{}/api/v1/auth/logout", app.address))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    assert_eq!(app.count("sessions").await, 0);
}

/// A browser's cookie authenticates reads from anywhere, but a change only from this site: the
/// `Origin` must name this host. Without that check a page elsewhere could log a reviewer out
/// or grant cases in their name (cross-site request forgery).
async fn a_cookie_session_changes_nothing_from_another_origin(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.enrol_first_admin("ada").await;
    let login = app
        .post_json(
            "/api/v1/auth/login",
            json!({"username": "ada", "password": admin.password, "totp": admin.next_code().await}),
        )
        .await;
    assert_eq!(login.status(), 200);
    let set_cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let with_cookie = |method: Method, path: &str, origin: Option<&str>| {
        let mut request = app
            .client
            .request(method, format!("{}{path}", app.address))
            .header("Cookie", &cookie)
            .header("Content-Type", "application/json");
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        request.send()
    };

    let read_from_elsewhere =
        with_cookie(Method::GET, "/api/v1/cases", Some("https://evil.example"))
            .await
            .unwrap();
    let foreign = with_cookie(
        Method::POST,
        "/api/v1/auth/logout",
        Some("https://evil.example"),
    )
    .await
    .unwrap();
    let lookalike = with_cookie(
        Method::POST,
        "/api/v1/auth/logout",
        Some(&format!("{}.evil.example", app.address)),
    )
    .await
    .unwrap();
    let none = with_cookie(Method::POST, "/api/v1/auth/logout", None)
        .await
        .unwrap();
    let sessions_after_refusals = app.count("sessions").await;
    let same_site = with_cookie(Method::POST, "/api/v1/auth/logout", Some(&app.address))
        .await
        .unwrap();

    assert_eq!(read_from_elsewhere.status(), 200, "reads need no Origin");
    for refused in [foreign, lookalike, none] {
        assert_eq!(refused.status(), 403);
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"], "cross_origin_request");
    }
    assert_eq!(
        sessions_after_refusals, 1,
        "no refused logout ended the session"
    );
    assert_eq!(same_site.status(), 204);
    assert_eq!(app.count("sessions").await, 0);
}

async fn the_first_account_joins_the_default_desk_and_receives_new_cases(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    enrol_first_account(&app, "coordinator").await;

    app.file(&minimal_report("For the desk.")).await;

    assert_eq!(app.count("grants").await, 2, "escrow and the coordinator");
}

/// A name holding a NUL character is simply no match, as on SQLite: PostgreSQL refuses NUL in
/// text, and without a guard it answered 500 (and logged an error) to anyone, logged in or not.
async fn a_name_with_a_nul_character_is_no_match_on_either_database(backend: Backend) {
    let Some(crate::people::AdaAndRita {
        app,
        admin_token,
        rita,
        ..
    }) = crate::people::spawn_with_ada_and_rita(backend).await
    else {
        return;
    };
    let (case_ref, _) = app.file(&minimal_report("x")).await;
    let login = |username: &str| {
        app.post_json(
            "/api/v1/auth/login",
            json!({"username": username, "password": rita.password, "totp": "123456"}),
        )
    };
    let (app, admin_token) = (&app, admin_token.as_str());
    let grant = |reviewer: &str| {
        let path = format!("/api/v1/cases/{case_ref}/grants");
        let body = json!({"reviewer": reviewer});
        async move {
            app.send(Method::POST, &path, Some(admin_token), Some(body))
                .await
        }
    };
    let change = |username: &str| {
        let path = format!("/api/v1/admin/reviewers/{username}");
        async move {
            app.send(
                Method::PATCH,
                &path,
                Some(admin_token),
                Some(json!({"status": "disabled"})),
            )
            .await
        }
    };
    let list = |desk: &str| {
        let path = format!("/api/v1/cases?desk={desk}");
        async move { app.get_as(admin_token, &path).await }
    };

    let pairs = [
        (login("rita\u{0}").await, login("nobody").await),
        (grant("rita\u{0}").await, grant("nobody").await),
        (change("rita%00").await, change("nobody").await),
        (list("default%00").await, list("no-such-desk").await),
    ];

    for (with_nul, unknown) in pairs {
        assert_ne!(with_nul.status(), 500);
        assert_eq!(with_nul.status(), unknown.status(), "{}", with_nul.url());
    }
}

/// Nodes that issue setup codes at the same moment leave exactly one live code, not one each.
async fn setup_codes_issued_at_once_leave_one_live_code(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    for _ in 0..5 {
        let issued = futures_util::future::join_all(
            (0..6)
                .map(|_| incident_vault::services::accounts::issue_setup_code(app.store.as_ref())),
        )
        .await;

        assert!(issued.iter().all(|code| matches!(code, Ok(Some(_)))));
        assert_eq!(
            app.count("enrolments WHERE kind = 'setup' AND reviewer_id IS NULL")
                .await,
            1
        );
    }
}

/// Makes every audit write fail (a trigger), or lets them through again.
async fn refuse_audit_writes(app: &TestApp, refuse: bool) {
    let statements: &[&str] = match (&app.database, refuse) {
        (crate::helpers::TestDatabase::Sqlite { .. }, true) => {
            &["CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events \
             BEGIN SELECT RAISE(ABORT, 'audit refused by the test'); END"]
        }
        (crate::helpers::TestDatabase::Sqlite { .. }, false) => &["DROP TRIGGER refuse_audit"],
        (crate::helpers::TestDatabase::Postgres { .. }, true) => &[
            "CREATE OR REPLACE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql \
             AS $$ BEGIN RAISE EXCEPTION 'audit refused by the test'; END $$",
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events \
             FOR EACH ROW EXECUTE FUNCTION refuse_audit()",
        ],
        (crate::helpers::TestDatabase::Postgres { .. }, false) => {
            &["DROP TRIGGER refuse_audit ON audit_events"]
        }
    };
    for statement in statements {
        app.execute(statement).await;
    }
}

/// An enrolment step whose audit event cannot be written changes nothing, so the same token and
/// code still work once the database does: the account and its event are one transaction.
async fn an_enrolment_step_that_cannot_be_audited_changes_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let token = app.setup_code.clone().unwrap();
    let enrol = json!({"token": token, "username": "coordinator", "password": PASSWORD});

    refuse_audit_writes(&app, true).await;
    let refused = post(&app, "/api/v1/enrol", enrol.clone()).await;
    assert_eq!(refused.status(), 500);
    for table in ["reviewers", "reviewer_secrets", "desk_members"] {
        assert_eq!(app.count(table).await, 0, "{table}");
    }
    assert_eq!(
        app.count("enrolments WHERE reviewer_id IS NULL").await,
        1,
        "the token is still unredeemed"
    );
    refuse_audit_writes(&app, false).await;

    let redeemed = post(&app, "/api/v1/enrol", enrol).await;
    assert_eq!(redeemed.status(), 200, "{:?}", redeemed.text().await);
    let body: Value = redeemed.json().await.unwrap();
    let secret = totp_secret(body["totp_uri"].as_str().unwrap());
    refuse_audit_writes(&app, true).await;
    let refused = confirm(&app, &token, &secret).await;
    assert_eq!(refused.status(), 500);
    assert_eq!(app.count("reviewers WHERE status = 'pending'").await, 1);
    refuse_audit_writes(&app, false).await;
    let confirmed = confirm(&app, &token, &secret).await;
    assert_eq!(confirmed.status(), 204, "{:?}", confirmed.text().await);
    assert_eq!(app.count("reviewers WHERE status = 'active'").await, 1);
    assert_eq!(
        app.count("audit_events WHERE action LIKE 'enrolment.%'")
            .await,
        2
    );
}

/// The answer to an enrolment (TOTP link, recovery code) can be lost on a shaky connection;
/// without it the account can never be confirmed. Redeeming the same token again replaces the
/// pending account instead of refusing the token.
async fn a_token_redeemed_again_before_confirmation_replaces_the_pending_account(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let token = app.setup_code.clone().unwrap();
    let enrol = json!({"token": token, "username": "coordinator", "password": PASSWORD});
    let lost = post(&app, "/api/v1/enrol", enrol.clone()).await;
    assert_eq!(lost.status(), 200);
    let lost: Value = lost.json().await.unwrap();

    let again = post(&app, "/api/v1/enrol", enrol).await;

    assert_eq!(again.status(), 200, "{:?}", again.text().await);
    let body: Value = again.json().await.unwrap();
    assert_ne!(body["recovery_code"], lost["recovery_code"]);
    for table in ["reviewers", "reviewer_secrets", "desk_members"] {
        assert_eq!(app.count(table).await, 1, "{table}");
    }
    let old_secret = totp_secret(lost["totp_uri"].as_str().unwrap());
    let secret = totp_secret(body["totp_uri"].as_str().unwrap());
    let with_old = confirm(&app, &token, &old_secret).await;
    assert_ne!(
        with_old.status(),
        204,
        "the replaced secret confirms nothing"
    );
    let confirmed = confirm(&app, &token, &secret).await;
    assert_eq!(confirmed.status(), 204, "{:?}", confirmed.text().await);
    let login = post(
        &app,
        "/api/v1/auth/login",
        json!({"username": "coordinator", "password": PASSWORD, "totp": code(&secret, now() + 30)}),
    )
    .await;
    assert_eq!(login.status(), 200);
    let spent = post(
        &app,
        "/api/v1/enrol",
        json!({"token": token, "username": "coordinator", "password": PASSWORD}),
    )
    .await;
    assert_eq!(spent.status(), 422, "a confirmed token redeems nothing");
    assert_eq!(app.count("reviewers").await, 1);
}

/// A first enrolment abandoned after its password step (the setup code expired unconfirmed)
/// must not lock the instance out of its first account: `setup-code` issues a new code, and the
/// name can be taken again. The same holds for an invitation that expired half-way.
async fn an_enrolment_abandoned_half_way_does_not_hold_the_instance_or_the_name(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let abandoned = post(
        &app,
        "/api/v1/enrol",
        json!({"token": app.setup_code.clone().unwrap(), "username": "ada", "password": PASSWORD}),
    )
    .await;
    assert_eq!(abandoned.status(), 200);
    let live = app.cli(&["setup-code"]);
    assert!(!live.status.success(), "a live enrolment keeps its code");
    app.execute("UPDATE enrolments SET expires_at = 0").await;

    let fresh = app.cli(&["setup-code"]);

    let stdout = String::from_utf8_lossy(&fresh.stdout).into_owned();
    assert!(
        fresh.status.success(),
        "{}",
        String::from_utf8_lossy(&fresh.stderr)
    );
    let code_text = stdout
        .lines()
        .find_map(|line| line.strip_prefix("setup code: "))
        .unwrap_or_else(|| panic!("no code in {stdout:?}"))
        .trim()
        .to_owned();
    assert_eq!(app.count("reviewers").await, 0);
    let admin = app.enrol_with(&code_text, "ada").await;
    let admin_token = app.login(&admin).await;

    let invitation = app
        .invite(&admin_token, "rita", "reviewer", &["default"])
        .await;
    let half_way = post(
        &app,
        "/api/v1/enrol",
        json!({"token": invitation, "username": "rita", "password": PASSWORD}),
    )
    .await;
    assert_eq!(half_way.status(), 200);
    // Once her enrolment expired unconfirmed, the name is free (while it is live, a new
    // invitation withdraws it: `inviting_a_redeemed_name_again_withdraws_it`).
    app.execute("UPDATE enrolments SET expires_at = 0 WHERE kind = 'invitation'")
        .await;
    let again = app
        .invite(&admin_token, "rita", "reviewer", &["default"])
        .await;
    app.enrol_with(&again, "rita").await;
    assert_eq!(app.count("reviewers").await, 2);
    assert_eq!(app.count("reviewers WHERE status = 'pending'").await, 0);
}

/// Intake and reviewers have crypto pools of their own, as the service wires them: with intake's
/// saturated by anonymous reports (one running, one waiting), a new report is shed with 503 while
/// a coordinator still logs in at once instead of queueing behind hundreds of argon2id runs.
async fn a_flood_of_reports_queues_no_reviewer_login(backend: Backend) {
    let Some(app) = crate::helpers::spawn_app_with(backend, |settings| {
        settings.limits.crypto_concurrency = 1;
        settings.limits.crypto_queue = 1;
    })
    .await
    else {
        return;
    };
    let secret = enrol_first_account(&app, "coordinator").await;
    let mut releases = Vec::new();
    let mut held = Vec::new();
    for _ in 0..2 {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        releases.push(release);
        let vault = app.vault.clone();
        held.push(tokio::spawn(async move {
            vault.intake_crypto.run(move || wait.recv().is_ok()).await
        }));
    }
    for _ in 0..2_000 {
        if app.vault.intake_crypto.is_saturated() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(app.vault.intake_crypto.is_saturated());

    let shed = app.post_report(&minimal_report("shed"), None).await;
    let login = post(
        &app,
        "/api/v1/auth/login",
        json!({"username": "coordinator", "password": PASSWORD, "totp": code(&secret, now() + 30)}),
    )
    .await;

    assert_eq!(shed.status(), 503);
    let body: Value = shed.json().await.unwrap();
    assert_eq!(body["error"], "intake_saturated");
    assert_eq!(
        login.status(),
        200,
        "the login waited for nothing of intake's"
    );
    for release in releases {
        release.send(()).unwrap();
    }
    for job in held {
        assert!(job.await.unwrap().unwrap());
    }
    assert_eq!(app.count("cases").await, 0);
}

async fn a_spent_setup_code_and_a_second_setup_code_are_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    enrol_first_account(&app, "coordinator").await;

    let again = post(
        &app,
        "/api/v1/enrol",
        json!({"token": app.setup_code.clone().unwrap(), "username": "intruder", "password": PASSWORD}),
    )
    .await;
    let fresh = app.cli(&["setup-code"]);

    assert_eq!(again.status(), 422);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");
    assert!(!fresh.status.success());
    assert!(String::from_utf8_lossy(&fresh.stderr).contains("an account exists already"));
    assert_eq!(app.count("reviewers").await, 1);
}

async fn wrong_passwords_replayed_codes_and_unknown_users_get_one_generic_401(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let secret = enrol_first_account(&app, "coordinator").await;
    let next = code(&secret, now() + 30);
    let ok = post(
        &app,
        "/api/v1/auth/login",
        json!({"username": "coordinator", "password": PASSWORD, "totp": next}),
    )
    .await;
    assert_eq!(ok.status(), 200);

    let attempts = [
        json!({"username": "coordinator", "password": "wrong password entirely", "totp": code(&secret, now())}),
        json!({"username": "coordinator", "password": PASSWORD, "totp": next}),
        json!({"username": "nobody-here", "password": PASSWORD, "totp": "123456"}),
    ];
    for attempt in attempts {
        let response = post(&app, "/api/v1/auth/login", attempt).await;

        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "login_failed");
    }
    let failures: Vec<String> = app
        .store
        .audit_events(0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|event| event.action == "login" && event.outcome.starts_with("failure"))
        .map(|event| event.outcome)
        .collect();
    // A replayed code is refused by the step check; a concurrent race, by the store.
    assert_eq!(
        failures,
        [
            "failure:bad_password",
            "failure:bad_totp",
            "failure:unknown_user"
        ]
    );
}

async fn a_weak_password_is_refused_and_creates_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };

    let response = post(
        &app,
        "/api/v1/enrol",
        json!({"token": app.setup_code.clone().unwrap(), "username": "coordinator", "password": "password1234"}),
    )
    .await;

    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "weak_password");
    assert_eq!(app.count("reviewers").await, 0);
}

/// Enrols the first account and logs it in; returns the bearer token.
async fn logged_in_coordinator(app: &TestApp) -> String {
    let admin = app.enrol_first_admin("coordinator").await;
    app.login(&admin).await
}

async fn get_as(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    app.get_as(token, path).await
}

async fn a_coordinator_lists_and_reads_the_cases_granted_to_them_and_nothing_else(
    backend: Backend,
) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    // Filed before the coordinator existed: granted to escrow only.
    let (earlier, _) = app
        .file(&minimal_report("Before the desk had members."))
        .await;
    let token = logged_in_coordinator(&app).await;
    let (granted, _) = app.file(&minimal_report("Photographed in Room XX.")).await;

    let list = get_as(&app, &token, "/api/v1/cases?status=new&limit=10").await;
    let read = get_as(&app, &token, &format!("/api/v1/cases/{granted}")).await;
    let hidden = get_as(&app, &token, &format!("/api/v1/cases/{earlier}")).await;
    let unknown = get_as(&app, &token, "/api/v1/cases/0000-0000-0000").await;

    assert_eq!(list.status(), 200);
    let list: Value = list.json().await.unwrap();
    let listed: Vec<&str> = list["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| case["case_ref"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [granted.as_str()]);
    assert_eq!(read.status(), 200);
    let case: Value = read.json().await.unwrap();
    assert_eq!(case["report"]["description"], "Photographed in Room XX.");
    assert_eq!(case["thread"][0]["kind"], "report");
    assert_eq!(hidden.status(), 404, "no grant: 404, not 403");
    assert_eq!(unknown.status(), 404);
    let hidden: Value = hidden.json().await.unwrap();
    let unknown: Value = unknown.json().await.unwrap();
    assert_eq!(
        hidden, unknown,
        "a case without a grant looks exactly like no case"
    );
    // Both refused reads are in the audit log, by the same actor as the granted one.
    let events = app.store.audit_events(0, 1000).await.unwrap();
    let reads: Vec<(String, String)> = events
        .iter()
        .filter(|event| event.action == "case.read")
        .map(|event| {
            (
                event.target.clone().unwrap_or_default(),
                event.outcome.clone(),
            )
        })
        .collect();
    assert_eq!(
        reads,
        [
            (granted.clone(), "success".to_owned()),
            (earlier.clone(), "failure:no_grant".to_owned()),
            ("0000-0000-0000".to_owned(), "failure:no_grant".to_owned()),
        ]
    );
    let actors: std::collections::BTreeSet<&str> = events
        .iter()
        .filter(|event| event.action == "case.read")
        .map(|event| event.actor.as_str())
        .collect();
    assert_eq!(actors.len(), 1);
}

async fn case_routes_need_a_live_session(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let token = logged_in_coordinator(&app).await;
    let (case_ref, _) = app.file(&minimal_report("x")).await;
    app.client
        .post(format!("{}/api/v1/auth/logout", app.address))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();

    let anonymous = app.get("/api/v1/cases").await;
    let logged_out = get_as(&app, &token, &format!("/api/v1/cases/{case_ref}")).await;
    let forged = get_as(&app, &"A".repeat(43), "/api/v1/cases").await;

    for response in [anonymous, logged_out, forged] {
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "no_session");
    }
}

async fn the_triage_list_refuses_unknown_filters_and_pages_with_a_cursor(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let token = logged_in_coordinator(&app).await;
    for number in 0..3 {
        app.file(&minimal_report(&format!("report {number}"))).await;
    }

    let bad_type = get_as(&app, &token, "/api/v1/cases?incident_type=kidnapping").await;
    let bad_parameter = get_as(&app, &token, "/api/v1/cases?sort=oldest").await;
    let first: Value = get_as(&app, &token, "/api/v1/cases?limit=2")
        .await
        .json()
        .await
        .unwrap();
    let cursor = first["next"]
        .as_str()
        .expect("a cursor after a full page")
        .to_owned();
    let second: Value = get_as(
        &app,
        &token,
        &format!("/api/v1/cases?limit=2&after={cursor}"),
    )
    .await
    .json()
    .await
    .unwrap();

    assert_eq!(bad_type.status(), 422);
    assert_eq!(bad_parameter.status(), 400);
    assert_eq!(first["cases"].as_array().unwrap().len(), 2);
    assert_eq!(second["cases"].as_array().unwrap().len(), 1);
    assert!(second["next"].is_null());
    let all: std::collections::BTreeSet<&str> = first["cases"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["cases"].as_array().unwrap())
        .map(|case| case["case_ref"].as_str().unwrap())
        .collect();
    assert_eq!(all.len(), 3, "pages neither skip nor repeat");
    // A page that ends exactly at the end of the list is the last one.
    let exact: Value = get_as(&app, &token, "/api/v1/cases?limit=3")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(exact["cases"].as_array().unwrap().len(), 3);
    assert!(exact["next"].is_null(), "{}", exact["next"]);
    // The scheme's case does not matter (RFC 9110); another scheme is no session.
    for (scheme, status) in [("bearer", 200), ("BEARER", 200), ("Basic", 401)] {
        let response = app
            .client
            .get(format!("{}/api/v1/cases", app.address))
            .header("Authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{scheme}");
    }
    // A value outside a vocabulary is answered with the vocabulary.
    let bad_status: Value = get_as(&app, &token, "/api/v1/cases?status=bogus")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(bad_status["error"], "unknown_value");
    assert!(
        bad_status["fields"]["status"]
            .as_str()
            .unwrap()
            .contains("expected one of new, "),
        "{bad_status}"
    );
    let (_, id) = cursor.split_once('~').unwrap();
    for forged in [
        format!("%00%00%00%00%00%00%00%00%00%00~{id}"),
        format!("2026-13-45~{id}"),
        format!("abcdefghij~{id}"),
    ] {
        let refused = get_as(&app, &token, &format!("/api/v1/cases?after={forged}")).await;
        assert_eq!(refused.status(), 422, "{forged}");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"], "invalid_cursor");
    }
    // The cursor's case reference in lower case or without hyphens, as the reads accept it,
    // continues the list where the cursor says, not from its top.
    let (day, _) = cursor.split_once('~').unwrap();
    for spelling in [id.to_lowercase(), id.replace('-', "")] {
        let page: Value = get_as(
            &app,
            &token,
            &format!("/api/v1/cases?limit=2&after={day}~{spelling}"),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(page["cases"], second["cases"], "{spelling}");
    }
    // Each refusal names its parameter: a desk that does not exist, a page size too large for
    // any integer, a day written with a sign.
    for (query, code, field) in [
        ("desk=no-such-desk", "unknown_value", "desk"),
        ("desk=", "unknown_value", "desk"),
        ("limit=100000000000000000000", "invalid_limit", "limit"),
        ("limit=ten", "invalid_limit", "limit"),
        ("received_from=-0001-01-01", "invalid_date", "received_from"),
        (
            "received_until=+2026-01-01",
            "invalid_date",
            "received_until",
        ),
    ] {
        let refused = get_as(&app, &token, &format!("/api/v1/cases?{query}")).await;
        assert_eq!(refused.status(), 422, "{query}");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"], code, "{query}: {body}");
        assert!(body["fields"][field].is_string(), "{query}: {body}");
    }
}

async fn a_session_works_on_a_second_instance_of_the_same_database(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let token = logged_in_coordinator(&app).await;
    let (case_ref, _) = app.file(&minimal_report("Seen from either node.")).await;
    // A second node: same settings, same database, its own port and memory.
    let second = incident_vault::startup::Application::build(app.settings.clone())
        .await
        .unwrap();
    let second_address = format!("http://127.0.0.1:{}", second.port());
    tokio::spawn(second.run_until_stopped());

    let read = app
        .client
        .get(format!("{second_address}/api/v1/cases/{case_ref}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();

    assert_eq!(read.status(), 200);
    let case: Value = read.json().await.unwrap();
    assert_eq!(case["report"]["description"], "Seen from either node.");
}

crate::on_both_backends!(
    a_flood_of_reports_queues_no_reviewer_login,
    an_enrolment_step_that_cannot_be_audited_changes_nothing,
    a_token_redeemed_again_before_confirmation_replaces_the_pending_account,
    an_enrolment_abandoned_half_way_does_not_hold_the_instance_or_the_name,
    a_session_works_on_a_second_instance_of_the_same_database,
    a_coordinator_lists_and_reads_the_cases_granted_to_them_and_nothing_else,
    case_routes_need_a_live_session,
    the_triage_list_refuses_unknown_filters_and_pages_with_a_cursor,
    the_setup_code_creates_the_first_account_which_can_log_in_and_out,
    the_first_account_joins_the_default_desk_and_receives_new_cases,
    a_spent_setup_code_and_a_second_setup_code_are_refused,
    setup_codes_issued_at_once_leave_one_live_code,
    a_name_with_a_nul_character_is_no_match_on_either_database,
    a_cookie_session_changes_nothing_from_another_origin,
    wrong_passwords_replayed_codes_and_unknown_users_get_one_generic_401,
    a_weak_password_is_refused_and_creates_nothing,
);
