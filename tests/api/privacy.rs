//! What must never be at rest or in a log: report content, client addresses, User-Agents.

use crate::helpers::{
    Backend, CLIENT_ADDRESS, LOGS, TEST_USER_AGENT, canary, contains_in_any_encoding, full_report,
    read_tree, spawn_app,
};

async fn a_canary_in_a_report_leaves_no_trace_at_rest_or_in_the_logs(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let secret = canary();

    let response = app
        .post_report(
            &full_report(&secret),
            Some("4f1d2c3b-5a69-4788-9aab-bccddeeff001"),
        )
        .await;
    assert_eq!(response.status(), 201);
    // A bad request that echoes nothing either.
    let mut invalid = full_report(&secret);
    invalid["description"] = serde_json::json!(format!("{secret}\u{0}"));
    assert_eq!(app.post_report(&invalid, None).await.status(), 422);

    let database = app.database_at_rest().await;
    assert!(!database.is_empty());
    assert!(
        !contains_in_any_encoding(&database, &secret),
        "the canary is in the database"
    );
    assert!(
        !contains_in_any_encoding(&read_tree(app.dir.path()), &secret),
        "the canary is on disk"
    );
    assert!(
        !contains_in_any_encoding(LOGS.contents().as_bytes(), &secret),
        "the canary is in a log"
    );
    // And the escrow holder can still read it: the absence is encryption, not loss.
    let case_ref = response_case_ref(response).await;
    let case = incident_vault::services::offline::decrypt_case(
        app.store.as_ref(),
        &[&app.escrow],
        &incident_vault::domain::CaseRef::parse(&case_ref).unwrap(),
    )
    .await
    .unwrap();
    assert!(case.report["location"].as_str().unwrap().contains(&secret));
}

async fn response_case_ref(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.unwrap();
    body["case_ref"].as_str().unwrap().to_owned()
}

async fn a_full_request_cycle_logs_no_ip_address_and_no_user_agent(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let forwarded_for = "198.51.100.23";

    for path in [
        "/healthz",
        "/readyz",
        "/api/v1/intake",
        "/api/v1/nothing?who=me",
    ] {
        let response = app
            .client
            .get(format!("{}{path}", app.address))
            .header("X-Forwarded-For", forwarded_for)
            .header("Forwarded", format!("for={forwarded_for}"))
            .header("X-Real-IP", forwarded_for)
            .send()
            .await
            .unwrap();
        assert!(response.status().as_u16() < 500);
    }
    let response = app
        .client
        .post(format!("{}/api/v1/reports", app.address))
        .header("X-Forwarded-For", forwarded_for)
        .json(&full_report("log test"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    let logs = LOGS.contents();
    assert!(logs.contains("request finished"), "the log capture works");
    assert!(
        logs.contains("\"http.route\":\"/api/v1/reports\""),
        "routes are logged as templates"
    );
    for forbidden in [
        CLIENT_ADDRESS.to_string().as_str(),
        forwarded_for,
        TEST_USER_AGENT,
        "ua-canary-5e1d",
        "who=me",
    ] {
        assert!(!logs.contains(forbidden), "the log holds {forbidden}");
    }
    let lower = logs.to_lowercase();
    assert!(
        !lower.contains("user-agent") && !lower.contains("user_agent"),
        "the log names the User-Agent"
    );
    assert!(
        !lower.contains("x-forwarded-for") && !lower.contains("peer_addr"),
        "the log names an address"
    );
}

/// Account secrets never reach a log either: not a password (right or wrong), not an unknown
/// username, not a recovery code, not a session token sent as a bearer or as the cookie, and
/// not on the one path that logs variable text, an opaque 500 with its cause chain.
async fn account_secrets_leave_no_trace_in_the_logs(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let secret = canary();
    let admin = app.enrol_first_admin("ada").await;
    let token = app.login(&admin).await;
    let wrong_password = format!("wrong {secret} password");
    let unknown_user = format!("who{}", secret.to_lowercase());
    let recovery_code = format!("{secret}-RECOVERY");
    for (username, password) in [
        ("ada", wrong_password.as_str()),
        (unknown_user.as_str(), admin.password.as_str()),
    ] {
        let refused = app
            .post_json(
                "/api/v1/auth/login",
                serde_json::json!({"username": username, "password": password, "totp": "123456"}),
            )
            .await;
        assert_eq!(refused.status(), 401);
    }
    let recover = app
        .post_json(
            "/api/v1/auth/recover",
            serde_json::json!({
                "username": "ada",
                "recovery_code": recovery_code,
                "totp": "123456",
                "new_password": format!("a new passphrase {secret}"),
            }),
        )
        .await;
    assert!(recover.status().is_client_error());
    let with_cookie = app
        .client
        .get(format!("{}/api/v1/cases", app.address))
        .header("Cookie", format!("__Host-iv_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(with_cookie.status(), 200);
    // The one path that logs variable text: a 500 and its cause chain.
    app.execute("DROP TABLE grants").await;
    let failed = app.get_as(&token, "/api/v1/cases").await;
    assert_eq!(failed.status(), 500);

    let logs = LOGS.contents();
    assert!(logs.contains("request failed"), "the 500 was logged");
    for forbidden in [
        secret.as_str(),
        secret.to_lowercase().as_str(),
        token.as_str(),
        admin.password.as_str(),
        admin.recovery_code.as_str(),
    ] {
        assert!(!logs.contains(forbidden), "the log holds a secret");
    }
}

crate::on_both_backends!(
    account_secrets_leave_no_trace_in_the_logs,
    a_canary_in_a_report_leaves_no_trace_at_rest_or_in_the_logs,
    a_full_request_cycle_logs_no_ip_address_and_no_user_agent,
);
