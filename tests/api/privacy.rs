//! What must never be at rest or in a log: report content, client addresses, User-Agents,
//! account secrets and receipts.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::helpers::{
    Backend, CLIENT_ADDRESS, FULL_REPORT_OCCURRED_AT, LOGS, TEST_USER_AGENT, TestApp, canary,
    contains_in_any_encoding, full_report, full_report_language, random_idempotency_key, read_tree,
    request_id, spawn_app,
};
use crate::people::PASSWORD;

/// How the exact time of [`full_report`]'s incident could show if it leaked: the day (finer than
/// the month that may be stored), the time of day, and the Unix second. `T…` and `…Z` keep the
/// time of day apart from the wall-clock times a database holds (`_sqlx_migrations` writes
/// `2026-11-29 10:37:41`, with a space): a test run at 10:37:41 must not fail.
fn occurred_at_at_rest() -> [String; 4] {
    let moment = time::OffsetDateTime::parse(
        FULL_REPORT_OCCURRED_AT,
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    [
        "2024-01-23".to_owned(),
        "T10:37:41".to_owned(),
        "10:37:41Z".to_owned(),
        moment.unix_timestamp().to_string(),
    ]
}

/// Log lines as one text, without the logger's own `timestamp` field: that is the wall clock,
/// which may read 10:37:41 too.
fn without_timestamps(lines: &[String]) -> String {
    lines
        .iter()
        .map(|line| match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(mut fields)) => {
                fields.remove("timestamp");
                Value::Object(fields).to_string()
            }
            _ => line.clone(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether each of these requests has a line in `lines` that says `message`.
fn logged_for_each(lines: &[String], request_ids: &[String], message: &str) -> bool {
    request_ids.iter().all(|id| {
        lines.iter().any(|line| {
            line.contains(&format!("\"request_id\":\"{id}\"")) && line.contains(message)
        })
    })
}

async fn a_canary_in_a_report_leaves_no_trace_at_rest_or_in_the_logs(backend: Backend) {
    let Some(mut app) = spawn_app(backend).await else {
        return;
    };
    let secret = canary();
    let language = full_report_language(&secret);
    let mut request_ids = Vec::new();

    // The key opens the stored answer, which holds the receipt: it is kept only as a hash.
    let key = random_idempotency_key();

    let response = app.post_report(&full_report(&secret), Some(&key)).await;
    assert_eq!(response.status(), 201);
    request_ids.push(request_id(&response));
    // A bad request that echoes nothing either.
    let mut invalid = full_report(&secret);
    invalid["description"] = json!(format!("{secret}\u{0}"));
    let refused = app.post_report(&invalid, None).await;
    assert_eq!(refused.status(), 422);
    request_ids.push(request_id(&refused));
    let refusal = refused.text().await.unwrap();
    assert!(refusal.contains("description"), "{refusal}");
    for echoed in [secret.as_str(), language.as_str(), "10:37:41"] {
        assert!(
            !refusal.contains(echoed),
            "the 422 echoes {echoed}: {refusal}"
        );
    }
    // The escrow holder can read every field: the absence below is encryption, not loss.
    let case_ref = response_case_ref(response).await;
    let case = incident_vault::services::offline::decrypt_case(
        app.store.as_ref(),
        &[&app.escrow],
        &incident_vault::domain::CaseRef::parse(&case_ref).unwrap(),
    )
    .await
    .unwrap();
    let sealed = &case.report;
    assert!(sealed["location"].as_str().unwrap().contains(&secret));
    assert_eq!(sealed["mechanism"]["session"], format!("UPR 45 {secret}"));
    assert_eq!(
        sealed["consent"]["contact"]["channel"],
        format!("signal {secret}")
    );
    assert_eq!(sealed["language"], language);
    assert_eq!(sealed["occurred_at"], FULL_REPORT_OCCURRED_AT);
    // In clear: the month, and no session label (the session is not label-shaped).
    let row = app.store.case_record(&case_ref).await.unwrap().unwrap();
    assert_eq!(row.incident_month.as_deref(), Some("2024-01"));
    assert_eq!(row.session_label, None);

    app.hang_up_and_stop().await;

    let database = app.database_at_rest().await;
    assert!(!database.is_empty());
    let files = read_tree(app.dir.path());
    for content in [secret.as_str(), language.as_str(), key.as_str()] {
        assert!(
            !contains_in_any_encoding(&database, content),
            "{content} is in the database"
        );
        assert!(
            !contains_in_any_encoding(&files, content),
            "{content} is on disk"
        );
    }
    for moment in occurred_at_at_rest() {
        assert!(
            !contains_in_any_encoding(&database, &moment),
            "the time of the incident ({moment}) is in the database"
        );
        assert!(
            !contains_in_any_encoding(&files, &moment),
            "the time of the incident ({moment}) is on disk"
        );
    }
    let own = LOGS.lines_of_requests(&request_ids);
    assert!(
        logged_for_each(&own, &request_ids, "request finished"),
        "the log capture holds this test's requests: {own:?}"
    );
    // Only this test sent these: no line of the whole capture may hold them.
    let everything = LOGS.contents();
    for content in [secret.as_str(), language.as_str(), key.as_str()] {
        assert!(
            !contains_in_any_encoding(everything.as_bytes(), content),
            "{content} is in a log"
        );
    }
    // Every test files the same time: this test's lines, and those of no request, must not hold it.
    let mut relevant = own;
    relevant.extend(LOGS.lines_outside_requests());
    let relevant = without_timestamps(&relevant);
    for moment in occurred_at_at_rest()
        .iter()
        .map(String::as_str)
        .chain(["10:37:41"])
    {
        assert!(
            !relevant.contains(moment),
            "the time of the incident ({moment}) is in a log"
        );
    }
}

async fn response_case_ref(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.unwrap();
    body["case_ref"].as_str().unwrap().to_owned()
}

async fn a_full_request_cycle_logs_no_ip_address_and_no_user_agent(backend: Backend) {
    let Some(mut app) = spawn_app(backend).await else {
        return;
    };
    let forwarded_for = "198.51.100.23";
    let mut request_ids = Vec::new();

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
        request_ids.push(request_id(&response));
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
    let report_request = request_id(&response);
    request_ids.push(report_request.clone());
    app.hang_up_and_stop().await;

    let own = LOGS.lines_of_requests(&request_ids);
    assert!(
        logged_for_each(&own, &request_ids, "request finished"),
        "the log capture holds a line for each of this test's requests: {own:?}"
    );
    assert!(
        logged_for_each(
            &own,
            std::slice::from_ref(&report_request),
            "\"http.route\":\"/api/v1/reports\""
        ),
        "routes are logged as templates: {own:?}"
    );
    // This test's lines, and the lines of no request (a connection, a start-up): a line outside
    // every request span would escape a check of the request ids alone.
    let mut relevant = own;
    relevant.extend(LOGS.lines_outside_requests());
    let logs = relevant.join("\n");
    for forbidden in [
        CLIENT_ADDRESS.to_string().as_str(),
        forwarded_for,
        TEST_USER_AGENT,
        "ua-canary-5e1d",
        "who=me",
    ] {
        assert!(!logs.contains(forbidden), "the log holds {forbidden}");
    }
    // Only this test sends these: no line of the whole capture may hold them.
    let everything = LOGS.contents();
    for forbidden in [forwarded_for, "who=me"] {
        assert!(!everything.contains(forbidden), "a log holds {forbidden}");
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
    let Some(mut app) = spawn_app(backend).await else {
        return;
    };
    let secret = canary();
    let admin = app.enrol_first_admin("ada").await;
    let token = app.login(&admin).await;
    let wrong_password = format!("wrong {secret} password");
    let unknown_user = format!("who{}", secret.to_lowercase());
    let recovery_code = format!("{secret}-RECOVERY");
    let mut request_ids = Vec::new();
    for (username, password) in [
        ("ada", wrong_password.as_str()),
        (unknown_user.as_str(), admin.password.as_str()),
    ] {
        let refused = app
            .post_json(
                "/api/v1/auth/login",
                json!({"username": username, "password": password, "totp": "123456"}),
            )
            .await;
        assert_eq!(refused.status(), 401);
        request_ids.push(request_id(&refused));
    }
    let recover = app
        .post_json(
            "/api/v1/auth/recover",
            json!({
                "username": "ada",
                "recovery_code": recovery_code,
                "totp": "123456",
                "new_password": format!("a new passphrase {secret}"),
            }),
        )
        .await;
    assert!(recover.status().is_client_error());
    request_ids.push(request_id(&recover));
    let with_cookie = app
        .client
        .get(format!("{}/api/v1/cases", app.address))
        .header("Cookie", format!("__Host-iv_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(with_cookie.status(), 200);
    request_ids.push(request_id(&with_cookie));
    // The one path that logs variable text: a 500 and its cause chain.
    app.execute("DROP TABLE grants").await;
    let failed = app.get_as(&token, "/api/v1/cases").await;
    assert_eq!(failed.status(), 500);
    let failed_request = request_id(&failed);
    request_ids.push(failed_request.clone());
    app.hang_up_and_stop().await;

    let own = LOGS.lines_of_requests(&request_ids);
    assert!(
        logged_for_each(&own, &request_ids[..4], "request finished"),
        "the log capture holds this test's requests: {own:?}"
    );
    assert!(
        logged_for_each(&own, &[failed_request], "request failed"),
        "the 500 was logged: {own:?}"
    );
    // Only this test knows these: no line of the whole capture may hold them.
    let everything = LOGS.contents();
    for forbidden in [
        secret.as_str(),
        secret.to_lowercase().as_str(),
        token.as_str(),
        admin.recovery_code.as_str(),
    ] {
        assert!(!everything.contains(forbidden), "the log holds a secret");
    }
    // Every test account has this password: this test's lines, and those of no request.
    let mut relevant = own;
    relevant.extend(LOGS.lines_outside_requests());
    assert!(
        !relevant.join("\n").contains(admin.password.as_str()),
        "the log holds the password"
    );
}

/// The one line a request leaves when it ends, parsed: the line of `request_id` that says
/// `request finished`.
fn finished_line_of(request_id: &str) -> Value {
    let lines = LOGS.lines_of_requests(&[request_id.to_owned()]);
    let finished: Vec<Value> = lines
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["fields"]["message"] == "request finished")
        .collect();
    assert_eq!(
        finished.len(),
        1,
        "one `request finished` line for {request_id}: {lines:?}"
    );
    finished.into_iter().next().unwrap()
}

/// Support and monitoring learn about a request only from its span: method, route template,
/// status, latency, and the id that the client was given to quote. The route is the template
/// because a concrete path may name a case: reading a case by its reference must log
/// `{case_ref}`, never the reference.
async fn the_request_span_carries_method_route_template_status_latency_and_the_returned_id(
    backend: Backend,
) {
    let Some(mut app) = spawn_app(backend).await else {
        return;
    };

    let filed = app.post_report(&full_report("span test"), None).await;
    assert_eq!(filed.status(), 201);
    let filed_id = request_id(&filed);
    let case_ref = response_case_ref(filed).await;
    let read = app.get(&format!("/api/v1/cases/{case_ref}")).await;
    assert_eq!(read.status(), 401);
    let read_id = request_id(&read);
    // actix takes any token as a method: a client's word must not reach the log.
    let odd = app
        .client
        .request(
            reqwest::Method::from_bytes(b"XCANARYMETHOD").unwrap(),
            format!("{}/healthz", app.address),
        )
        .send()
        .await
        .unwrap();
    let odd_id = request_id(&odd);
    // A percent-encoded route is logged by its template, as the router matched it.
    let encoded = app.get("/api/v1/%69ntake").await;
    assert_eq!(encoded.status(), 200);
    let encoded_id = request_id(&encoded);
    app.hang_up_and_stop().await;

    let line = finished_line_of(&encoded_id);
    assert_eq!(line["span"]["http.route"], "/api/v1/intake", "{line}");

    let line = finished_line_of(&filed_id);
    let span = &line["span"];
    assert_eq!(span["name"], "http_request", "{line}");
    assert_eq!(span["http.method"], "POST", "{line}");
    assert_eq!(span["http.route"], "/api/v1/reports", "{line}");
    assert_eq!(span["http.status_code"], 201, "{line}");
    let latency_ms = span["latency_ms"].as_f64().expect("a numeric latency");
    assert!(latency_ms.is_finite() && latency_ms >= 0.0, "{line}");
    assert!(!filed_id.is_empty());
    assert_eq!(span["request_id"], filed_id.as_str(), "{line}");
    assert_eq!(line["fields"]["status"], 201, "{line}");

    let line = finished_line_of(&read_id);
    assert_ne!(read_id, filed_id, "each request has its own id");
    assert_eq!(line["span"]["http.method"], "GET", "{line}");
    assert_eq!(
        line["span"]["http.route"], "/api/v1/cases/{case_ref}",
        "{line}"
    );
    assert_eq!(line["span"]["http.status_code"], 401, "{line}");
    for spelling in crate::helpers::case_ref_spellings(&case_ref) {
        assert!(
            !line.to_string().contains(&spelling),
            "the case reference is in the log: {line}"
        );
    }

    let line = finished_line_of(&odd_id);
    assert_eq!(line["span"]["http.method"], "other", "{line}");
    let every_line = LOGS.lines_of_requests(&[odd_id]).join("\n");
    assert!(
        !every_line.contains("XCANARYMETHOD"),
        "the client's method word is in the log: {every_line}"
    );
}

/// A request actix cannot parse (here a `Content-Length` that is not a number) is answered 400
/// and leaves no ERROR line: any client could send them by the thousand.
async fn an_unparsable_request_is_refused_without_an_error_in_the_log(backend: Backend) {
    let Some(mut app) = spawn_app(backend).await else {
        return;
    };

    let answer = app
        .raw_exchange(
            b"POST /api/v1/reports HTTP/1.1\r\nHost: vault\r\n\
              Content-Type: application/json\r\nContent-Length: XCANARYLENGTH\r\n\r\n",
        )
        .await;
    // Every line the server writes for that connection is written once it has stopped.
    app.hang_up_and_stop().await;

    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let logs = LOGS.contents();
    assert!(
        !logs.contains("request parse error"),
        "an ERROR line for the client's fault"
    );
    let leaked: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("XCANARYLENGTH"))
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");
}

/// The address a proxy would claim for the client, in this test's requests only.
const FORWARDED_V4: &str = "203.0.113.187";
/// The same, as IPv6.
const FORWARDED_V6: &str = "2001:db8:5e1d::c0de";

/// [`crate::helpers::test_client`] (the test's source address and User-Agent) that also names
/// [`FORWARDED_V4`] and [`FORWARDED_V6`] in every header a proxy uses for the client's address.
fn forwarding_client() -> reqwest::Client {
    let mut headers = HeaderMap::new();
    let both = format!("{FORWARDED_V4}, {FORWARDED_V6}");
    for (name, value) in [
        ("x-forwarded-for", both.clone()),
        (
            "forwarded",
            format!("for={FORWARDED_V4};proto=https, for=\"[{FORWARDED_V6}]\""),
        ),
        ("x-real-ip", FORWARDED_V4.to_owned()),
        ("true-client-ip", FORWARDED_V6.to_owned()),
        ("cf-connecting-ip", FORWARDED_V4.to_owned()),
        ("x-client-ip", both),
    ] {
        headers.insert(name, HeaderValue::from_str(&value).unwrap());
    }
    reqwest::Client::builder()
        .local_address(IpAddr::V4(CLIENT_ADDRESS))
        .user_agent(TEST_USER_AGENT)
        .default_headers(headers)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// The base32 secret of an account's `totp_uri`, as an authenticator app reads it.
fn totp_base32(account: &crate::people::Reviewer) -> String {
    account
        .totp_uri
        .split(['?', '&'])
        .find_map(|part| part.strip_prefix("secret="))
        .unwrap()
        .to_owned()
}

/// Whether `haystack` holds `secret` as raw bytes, as hex, or as base64 of either alphabet.
fn holds_bytes(haystack: &[u8], secret: &[u8]) -> bool {
    let hex: String = secret.iter().map(|byte| format!("{byte:02x}")).collect();
    let mut forms = vec![
        secret.to_vec(),
        hex.clone().into_bytes(),
        hex.to_uppercase().into_bytes(),
    ];
    for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
        forms.push(engine.encode(secret).into_bytes());
    }
    forms.iter().any(|form| {
        haystack
            .windows(form.len())
            .any(|window| window == form.as_slice())
    })
}

/// No IP address, User-Agent or secret of a whole flow is at rest, in the database or on disk:
/// neither the client's address, a forwarded address nor its User-Agent, sent with every
/// request; nor the receipt, a session token, recovery code, TOTP secret, setup code,
/// invitation or password. What only this test sends (receipt, tokens, codes) reaches no log.
async fn no_client_address_user_agent_or_secret_of_a_whole_flow_is_at_rest(backend: Backend) {
    let Some(mut app) = spawn_app(backend).await else {
        return;
    };
    app.client = forwarding_client();
    let secret = canary();
    let setup_code = app.setup_code.clone().expect("a setup code on first start");

    let ada = app.enrol_with(&setup_code, "ada").await;
    let ada_token = app.login(&ada).await;
    let refused = app
        .post_json(
            "/api/v1/auth/login",
            json!({"username": "ada", "password": format!("{PASSWORD} no"), "totp": "123456"}),
        )
        .await;
    assert_eq!(refused.status(), 401);
    let invitation = app
        .invite(&ada_token, "rita", "reviewer", &["default"])
        .await;
    // Recovery instead of a login: a third code in a row would wait for the next TOTP step.
    let rita = app.enrol_with(&invitation, "rita").await;
    let new_password = format!("recovered violet lantern {}", secret.to_lowercase());
    let recovered = app
        .post_json(
            "/api/v1/auth/recover",
            json!({
                "username": "rita",
                "recovery_code": rita.recovery_code,
                "totp": rita.next_code().await,
                "new_password": new_password,
            }),
        )
        .await;
    assert_eq!(recovered.status(), 200);
    let recovered: Value = recovered.json().await.unwrap();
    let recovered_token = recovered["token"].as_str().unwrap().to_owned();
    let new_recovery_code = recovered["recovery_code"].as_str().unwrap().to_owned();
    let (_, receipt) = app.file(&full_report(&secret)).await;
    let stepped_up = app
        .send(
            Method::POST,
            "/api/v1/auth/step-up",
            Some(&ada_token),
            Some(json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(stepped_up.status(), 204);
    assert_eq!(app.get_as(&ada_token, "/api/v1/cases").await.status(), 200);
    let logged_out = app
        .send(
            Method::POST,
            "/api/v1/auth/logout",
            Some(&recovered_token),
            None,
        )
        .await;
    assert_eq!(logged_out.status(), 204);
    app.hang_up_and_stop().await;

    let receipt_digits = receipt.replace('-', "");
    assert_eq!(receipt_digits.len(), 16, "{receipt}");
    let tokens = [&ada_token, &recovered_token];
    let mut texts: Vec<(&str, String)> = vec![
        ("the client's address", CLIENT_ADDRESS.to_string()),
        ("the forwarded IPv4 address", FORWARDED_V4.to_owned()),
        ("the forwarded IPv6 address", FORWARDED_V6.to_owned()),
        ("the User-Agent", TEST_USER_AGENT.to_owned()),
        ("the User-Agent's canary", "ua-canary-5e1d".to_owned()),
        ("the receipt", receipt.clone()),
        ("the receipt's digits", receipt_digits.clone()),
        ("ada's TOTP secret", totp_base32(&ada)),
        ("rita's TOTP secret", totp_base32(&rita)),
        ("the password", PASSWORD.to_owned()),
        ("the new password", new_password.clone()),
    ];
    for (what, code) in [
        ("the setup code", &setup_code),
        ("the invitation", &invitation),
        ("ada's recovery code", &ada.recovery_code),
        ("rita's first recovery code", &rita.recovery_code),
        ("rita's new recovery code", &new_recovery_code),
    ] {
        texts.push((what, code.clone()));
        texts.push((what, code.replace('-', "")));
    }
    for token in tokens {
        texts.push(("a session token", token.clone()));
    }
    let mut bytes: Vec<(&str, Vec<u8>)> = vec![
        (
            "the forwarded IPv6 address",
            FORWARDED_V6.parse::<Ipv6Addr>().unwrap().octets().to_vec(),
        ),
        ("ada's TOTP secret", ada.totp.expose_bytes().to_vec()),
        ("rita's TOTP secret", rita.totp.expose_bytes().to_vec()),
    ];
    for token in tokens {
        bytes.push(("a session token", URL_SAFE_NO_PAD.decode(token).unwrap()));
    }

    let places = [
        ("the database", app.database_at_rest().await),
        ("the data directory", read_tree(app.dir.path())),
    ];
    // On PostgreSQL the data directory may well be empty.
    assert!(!places[0].1.is_empty());
    let mut leaks = Vec::new();
    for (place, content) in &places {
        for (what, text) in &texts {
            if contains_in_any_encoding(content, text) {
                leaks.push(format!("{what} ({text}) is in {place}"));
            }
        }
        for (what, secret) in &bytes {
            if holds_bytes(content, secret) {
                leaks.push(format!("{what} is in {place} as bytes"));
            }
        }
    }
    // Only this test knows these: no line of the whole capture may hold them.
    let everything = LOGS.contents();
    for (what, text) in texts.iter().filter(|(what, _)| {
        !matches!(
            *what,
            "the client's address" | "the User-Agent" | "the User-Agent's canary" | "the password"
        )
    }) {
        if contains_in_any_encoding(everything.as_bytes(), text) {
            leaks.push(format!("{what} ({text}) is in a log"));
        }
    }
    assert!(leaks.is_empty(), "{leaks:#?}");
}

/// The name of the refusal that [`a_database_error_on_a_canary_leaves_it_out_of_log_and_answer`]
/// adds to the database.
const REFUSAL: &str = "privacy_test_refuses_invitations";

/// What PostgreSQL adds to its error (the DETAIL) when an invitation for `username` meets
/// [`REFUSAL`].
async fn postgres_detail_of_the_refusal(app: &TestApp, username: &str) -> String {
    use sqlx::Connection as _;
    let mut connection = sqlx::PgConnection::connect(app.database.url())
        .await
        .unwrap();
    let error = sqlx::query(
        "INSERT INTO enrolments (token_hash, kind, role, desk_ids, expires_at, username) \
         VALUES ($1, 'invitation', 'reviewer', '', 0, $2)",
    )
    .bind(vec![0u8; 32])
    .bind(username)
    .execute(&mut connection)
    .await
    .expect_err("the refusal refuses");
    let error = error.as_database_error().expect("a database error");
    assert!(error.message().contains(REFUSAL), "{error}");
    error
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .and_then(|error| error.detail())
        .unwrap_or_default()
        .to_owned()
}

/// A database error on a statement that carries a client's value, an invited username, is
/// logged by its cause without the value, and answered opaquely. On PostgreSQL the error
/// itself holds the value (its DETAIL): a service that logged the whole error would leak it.
async fn a_database_error_on_a_canary_leaves_it_out_of_log_and_answer(backend: Backend) {
    let Some(mut app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.enrol_first_admin("ada").await;
    let token = app.login(&admin).await;
    let secret = canary().to_lowercase();
    let username = format!("priv{secret}");
    // Any invitation, which names its account, now fails in the database.
    app.execute(&match backend {
        Backend::Postgres => {
            format!(
                "ALTER TABLE enrolments ADD CONSTRAINT {REFUSAL} CHECK (username IS NULL) NOT VALID"
            )
        }
        Backend::Sqlite => format!(
            "CREATE TRIGGER {REFUSAL} BEFORE INSERT ON enrolments WHEN NEW.username IS NOT NULL \
             BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END"
        ),
    })
    .await;
    let failed = app
        .send(
            Method::POST,
            "/api/v1/admin/reviewers",
            Some(&token),
            Some(json!({"username": username, "role": "reviewer", "desks": ["default"]})),
        )
        .await;
    assert_eq!(failed.status(), 500);
    let failed_request = request_id(&failed);
    let answer = failed.text().await.unwrap();
    assert!(
        !answer.to_lowercase().contains(&secret),
        "the 500 echoes the username: {answer}"
    );
    if backend == Backend::Postgres {
        let detail = postgres_detail_of_the_refusal(&app, &username).await;
        assert!(detail.contains(&username), "{detail}");
    }
    app.hang_up_and_stop().await;

    let own = LOGS.lines_of_requests(std::slice::from_ref(&failed_request));
    assert!(
        own.iter()
            .any(|line| line.contains("request failed") && line.contains(REFUSAL)),
        "the database's error for this request is in the log: {own:?}"
    );
    let everything = LOGS.contents().to_lowercase();
    assert!(
        !contains_in_any_encoding(everything.as_bytes(), &secret),
        "the username of the failed statement is in a log"
    );
}

crate::on_both_backends!(
    an_unparsable_request_is_refused_without_an_error_in_the_log,
    account_secrets_leave_no_trace_in_the_logs,
    a_canary_in_a_report_leaves_no_trace_at_rest_or_in_the_logs,
    a_full_request_cycle_logs_no_ip_address_and_no_user_agent,
    the_request_span_carries_method_route_template_status_latency_and_the_returned_id,
    no_client_address_user_agent_or_secret_of_a_whole_flow_is_at_rest,
    a_database_error_on_a_canary_leaves_it_out_of_log_and_answer,
);
