//! `POST /api/v1/reports`.

use futures_util::StreamExt;
use incident_vault::storage::StoreError;
use serde_json::{Value, json};

use crate::helpers::{Backend, full_report, minimal_report, random_idempotency_key, spawn_app};

async fn a_valid_report_gets_201_with_a_case_ref_and_a_receipt(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };

    let response = app
        .post_report(&minimal_report("They photographed us."), None)
        .await;

    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    let case_ref = body["case_ref"].as_str().unwrap();
    let receipt = body["receipt"].as_str().unwrap();
    assert_eq!(case_ref.len(), 14);
    assert_eq!(receipt.len(), 19);
    assert!(
        receipt
            .split('-')
            .all(|group| group.len() == 4 && group.bytes().all(|b| b.is_ascii_digit()))
    );
    assert_eq!(app.count("cases").await, 1);
    assert_eq!(app.count("grants").await, 1, "one grant: the escrow key");
    assert_eq!(app.count("entries").await, 1);
    assert_eq!(app.count("reporter_access").await, 1);
    assert_eq!(app.count("idempotency_records").await, 0);
}

async fn the_full_wire_shape_of_the_design_is_accepted(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };

    let mut report = full_report("nothing secret");
    // The session as DESIGN §4 types it: label-shaped, so it is kept in clear.
    report["mechanism"]["session"] = json!("UPR 45");

    let (case_ref, _) = app.file(&report).await;

    let case = app.store.case_record(&case_ref).await.unwrap().unwrap();
    assert_eq!(case.incident_type, "photographing");
    assert_eq!(case.mechanism_kind.as_deref(), Some("upr"));
    assert_eq!(case.session_label.as_deref(), Some("UPR 45"));
    assert_eq!(
        case.perpetrator_kind.as_deref(),
        Some("gongo_representative")
    );
    assert_eq!(case.incident_month.as_deref(), Some("2024-01"));
    assert!(case.consent_ohchr && case.consent_statistics && case.consent_contact);
    assert!(!case.consent_partners);
    assert_eq!(case.consent_sg_report, "anonymised");
    assert_eq!(case.status, "new");
}

async fn the_same_idempotency_key_gives_one_case_and_the_same_receipt(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let report = minimal_report("A retry after the answer was lost.");
    let key = "0b6f3c2e-4a8d-4f7e-9c1a-2d3e4f5a6b7c";

    let first = app.post_report(&report, Some(key)).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let second = app.post_report(&report, Some(key)).await;

    assert_eq!(second.status(), 201);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    let second: Value = second.json().await.unwrap();
    assert_eq!(first, second);
    assert_eq!(app.count("cases").await, 1);
    assert_eq!(app.count("idempotency_records").await, 1);
}

async fn an_expired_key_files_a_new_report_and_answers_its_retries(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let key = "5d1e8a7c-3b2f-4e6d-9a0b-1c2d3e4f5a6b";
    let first = app
        .post_report(&minimal_report("Filed in June."), Some(key))
        .await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    // The record outlived its day but was not purged yet: the key is free again.
    app.execute("UPDATE idempotency_records SET expires_at = 0")
        .await;

    let later = minimal_report("Filed in September, with a key the phone reused.");
    let second = app.post_report(&later, Some(key)).await;

    assert_eq!(second.status(), 201);
    assert!(second.headers().get("idempotent-replayed").is_none());
    let second: Value = second.json().await.unwrap();
    assert_ne!(first["case_ref"], second["case_ref"]);
    assert_eq!(app.count("cases").await, 2);
    assert_eq!(app.count("idempotency_records").await, 1);
    let retry = app.post_report(&later, Some(key)).await;
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.json::<Value>().await.unwrap(), second);
    assert_eq!(app.count("cases").await, 2);
}

async fn concurrent_retries_with_one_key_still_give_one_case(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let report = minimal_report("Sent from a phone that retried eagerly.");
    let key = "7Qm2vX9kLp4RtY8sWz3nBc6HdJf";

    let attempts = (0..6).map(|_| app.post_report(&report, Some(key)));
    let responses = futures_util::future::join_all(attempts).await;

    let mut answers = Vec::new();
    for response in responses {
        assert_eq!(response.status(), 201);
        answers.push(response.json::<Value>().await.unwrap());
    }
    assert!(
        answers.windows(2).all(|pair| pair[0] == pair[1]),
        "{answers:?}"
    );
    assert_eq!(app.count("cases").await, 1);
}

async fn one_key_reused_for_another_report_is_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let key = "0b6f3c2e-4a8d-4f7e-9c1a-2d3e4f5a6b7c";
    assert_eq!(
        app.post_report(&minimal_report("first"), Some(key))
            .await
            .status(),
        201
    );

    let response = app
        .post_report(&minimal_report("second, different"), Some(key))
        .await;

    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "idempotency_key_reused");
    assert_eq!(app.count("cases").await, 1);
}

/// One class of bad input: what is sent, and the status, code and field it must get.
struct BadInput {
    name: &'static str,
    body: Vec<u8>,
    content_type: &'static str,
    idempotency_key: Option<&'static str>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
}

fn json_bytes(value: Value) -> Vec<u8> {
    serde_json::to_vec(&value).unwrap()
}

fn bad_inputs() -> Vec<BadInput> {
    let json = "application/json";
    let case = |name, body, status, code, field| BadInput {
        name,
        body,
        content_type: json,
        idempotency_key: None,
        status,
        code,
        field,
    };
    vec![
        case(
            "malformed JSON",
            b"{\"incident_type\": \"threat\", ".to_vec(),
            400,
            "malformed_json",
            None,
        ),
        case(
            "a body over the limit",
            vec![b' '; 300 * 1024],
            413,
            "payload_too_large",
            None,
        ),
        case(
            "an unknown incident type",
            json_bytes(json!({"incident_type": "kidnapping", "description": "x"})),
            422,
            "unknown_value",
            Some("incident_type"),
        ),
        case(
            "an unknown nested enum value",
            json_bytes(
                json!({"incident_type": "threat", "description": "x", "perpetrator": {"kind": "alien"}}),
            ),
            422,
            "unknown_value",
            Some("perpetrator.kind"),
        ),
        case(
            "an unknown consent value",
            json_bytes(
                json!({"incident_type": "threat", "description": "x", "consent": {"sg_report": "maybe"}}),
            ),
            422,
            "unknown_value",
            Some("consent.sg_report"),
        ),
        case(
            "a missing description",
            json_bytes(json!({"incident_type": "threat"})),
            422,
            "missing_field",
            Some("description"),
        ),
        case(
            "a mistyped field",
            json_bytes(json!({"incident_type": "threat", "description": ["x"]})),
            422,
            "invalid_type",
            Some("description"),
        ),
        case(
            "an unknown field",
            json_bytes(json!({"incident_type": "threat", "description": "x", "gps": "46.22,6.14"})),
            422,
            "unknown_field",
            // The key itself is never echoed (it could carry content): the fault is the body's.
            Some("body"),
        ),
        case(
            "a report given as an array of its values",
            json_bytes(json!([
                "default", "threat", null, null, null, null, null, "x"
            ])),
            422,
            "invalid_type",
            Some("body"),
        ),
        case(
            "a nested object given as an array",
            json_bytes(
                json!({"incident_type": "threat", "description": "x", "mechanism": ["upr", "UPR 45"]}),
            ),
            422,
            "invalid_type",
            Some("mechanism"),
        ),
        case(
            "a vocabulary value given as an object",
            json_bytes(json!({"incident_type": {"threat": null}, "description": "x"})),
            422,
            "invalid_type",
            Some("incident_type"),
        ),
        case(
            "a vocabulary value that is null",
            json_bytes(json!({"incident_type": null, "description": "x"})),
            422,
            "invalid_type",
            Some("incident_type"),
        ),
        case(
            "a key given twice",
            br#"{"incident_type": "threat", "description": "a", "description": "b"}"#.to_vec(),
            422,
            "duplicate_field",
            Some("description"),
        ),
        case(
            "a body cut off after a fault of shape",
            br#"{"incident_type":"threat","description":"x","gps":"#.to_vec(),
            400,
            "malformed_json",
            None,
        ),
        case(
            "a submission date in the future",
            json_bytes(
                json!({"incident_type": "threat", "description": "x", "blocked_submission": {"submitted_on": "2999-01-01"}}),
            ),
            422,
            "invalid_report",
            Some("blocked_submission.submitted_on"),
        ),
        case(
            "an occurred_at of 200,000 digits",
            json_bytes(
                json!({"incident_type": "threat", "description": "x", "occurred_at": format!("2024-01-23T10:30:00.{}Z", "1".repeat(200_000))}),
            ),
            422,
            "invalid_report",
            Some("occurred_at"),
        ),
        case(
            "a signed year",
            json_bytes(
                json!({"incident_type": "threat", "description": "x", "occurred_at": "-0001-01-01"}),
            ),
            422,
            "invalid_report",
            Some("occurred_at"),
        ),
        case(
            "a moment of year 0 that is year -1 in UTC",
            json_bytes(
                json!({"incident_type": "threat", "description": "x", "occurred_at": "0000-01-01T00:00:00+01:00"}),
            ),
            422,
            "invalid_report",
            Some("occurred_at"),
        ),
        case(
            "a line separator in a one-line field",
            json_bytes(
                json!({"incident_type": "threat", "description": "x", "mechanism": {"kind": "upr", "session": "UPR\u{2028}45"}}),
            ),
            422,
            "invalid_report",
            Some("mechanism.session"),
        ),
        case(
            "an over-long description",
            json_bytes(json!({"incident_type": "threat", "description": "x".repeat(20_001)})),
            422,
            "invalid_report",
            Some("description"),
        ),
        case(
            "a blank description",
            json_bytes(json!({"incident_type": "threat", "description": "   "})),
            422,
            "invalid_report",
            Some("description"),
        ),
        case(
            "a control character in a one-line field",
            json_bytes(
                json!({"incident_type": "threat", "description": "x", "consent": {"contact": {"allowed": true, "handle": "a\u{1b}[31m"}}}),
            ),
            422,
            "invalid_report",
            Some("consent.contact.handle"),
        ),
        case(
            "a date in the future",
            json_bytes(
                json!({"incident_type": "threat", "description": "x", "occurred_at": "2999-01-01"}),
            ),
            422,
            "invalid_report",
            Some("occurred_at"),
        ),
        case(
            "a moment past the calendar's end once in UTC",
            json_bytes(
                json!({"incident_type": "threat", "description": "x", "occurred_at": "9999-12-31T23:00:00-01:00"}),
            ),
            422,
            "invalid_report",
            Some("occurred_at"),
        ),
        case(
            "an unknown desk",
            json_bytes(
                json!({"incident_type": "threat", "description": "x", "desk": "no-such-desk"}),
            ),
            422,
            "unknown_desk",
            Some("desk"),
        ),
        BadInput {
            content_type: "text/plain",
            ..case(
                "a body that is not JSON",
                json_bytes(minimal_report("x")),
                415,
                "unsupported_media_type",
                None,
            )
        },
        BadInput {
            idempotency_key: Some("short"),
            ..case(
                "a weak Idempotency-Key",
                json_bytes(minimal_report("x")),
                400,
                "invalid_idempotency_key",
                None,
            )
        },
    ]
}

/// Each class is sent without an Idempotency-Key and again with a fresh valid one (a phone sends
/// one with every report): a refused report leaves no idempotency record either. The class whose
/// fault is the key itself is sent with its key only.
async fn each_class_of_bad_input_gets_its_code_and_stores_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };

    for bad in bad_inputs() {
        let keys = match bad.idempotency_key {
            Some(key) => vec![Some(key.to_owned())],
            None => vec![None, Some(random_idempotency_key())],
        };
        for key in keys {
            let name = format!(
                "{} ({})",
                bad.name,
                if key.is_some() {
                    "with a key"
                } else {
                    "without a key"
                }
            );
            let mut request = app
                .client
                .post(format!("{}/api/v1/reports", app.address))
                .header("Content-Type", bad.content_type)
                .body(bad.body.clone());
            if let Some(key) = &key {
                request = request.header("Idempotency-Key", key.as_str());
            }
            let response = request.send().await.unwrap();

            assert_eq!(response.status().as_u16(), bad.status, "{name}");
            let body: Value = response
                .json()
                .await
                .unwrap_or_else(|_| panic!("{name}: not JSON"));
            assert_eq!(body["error"], bad.code, "{name}: {body}");
            assert!(
                body["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{name}"
            );
            let fields = body["fields"]
                .as_object()
                .unwrap_or_else(|| panic!("{name}: every error carries `fields`: {body}"));
            match bad.field {
                Some(field) => assert!(fields[field].is_string(), "{name}: {body}"),
                None => assert!(fields.is_empty(), "{name}: {body}"),
            }
            app.assert_nothing_stored().await;
        }
    }
}

/// Posts `body` to the intake with exactly these headers, a name given twice sent twice.
async fn post_with_headers(
    app: &crate::helpers::TestApp,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(format!("{}/api/v1/reports", app.address))
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// Two different Idempotency-Key headers: which one a retry repeats cannot be known, so neither
/// is used.
async fn two_idempotency_keys_are_refused_and_store_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };

    let report = || serde_json::to_vec(&minimal_report("x")).unwrap();
    let (first, second) = (random_idempotency_key(), random_idempotency_key());
    let response = post_with_headers(
        &app,
        &[
            ("Content-Type", "application/json"),
            ("Idempotency-Key", &first),
            ("Idempotency-Key", &second),
        ],
        report(),
    )
    .await;

    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_idempotency_key", "{body}");
    app.assert_nothing_stored().await;

    // The same key twice (a proxy that repeats a header) is one key.
    let key = random_idempotency_key();
    for _ in 0..2 {
        let response = post_with_headers(
            &app,
            &[
                ("Content-Type", "application/json"),
                ("Idempotency-Key", &key),
                ("Idempotency-Key", &key),
            ],
            report(),
        )
        .await;
        assert_eq!(response.status(), 201);
    }
    assert_eq!(app.count("cases").await, 1);
}

/// Two different Content-Types: which one the body is cannot be known.
async fn two_content_types_are_refused_and_store_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    for (first, second) in [
        ("application/json", "text/plain"),
        ("text/plain", "application/json"),
    ] {
        let response = post_with_headers(
            &app,
            &[("Content-Type", first), ("Content-Type", second)],
            serde_json::to_vec(&minimal_report("x")).unwrap(),
        )
        .await;

        assert_eq!(response.status(), 415, "{first}, {second}");
        app.assert_nothing_stored().await;
    }
}

/// A compressed body is refused for its encoding, not as malformed JSON.
async fn a_compressed_body_is_refused_as_unsupported_and_stores_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };

    let response = post_with_headers(
        &app,
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        vec![0x1f, 0x8b, 0x08, 0x00],
    )
    .await;

    assert_eq!(response.status(), 415);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_media_type", "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|message| message.contains("Content-Encoding")),
        "{body}"
    );
    app.assert_nothing_stored().await;
}

async fn a_chunked_body_over_the_limit_is_cut_off_with_413(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let chunk = bytes_of(64 * 1024);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..8).map(|_| Ok(chunk.clone())).collect();

    let response = post_streamed(&app, futures_util::stream::iter(chunks)).await;

    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "payload_too_large");
    app.assert_nothing_stored().await;
}

/// A body sent without Content-Length in small chunks grows its buffer many times over: the
/// report arrives whole, every character in place.
async fn a_large_report_sent_in_small_chunks_is_filed_whole(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    // 20,000 four-byte characters (80 KB) and an ASCII tail, so that a dropped or repeated
    // chunk would show in the text.
    let description = format!("{}{}", "\u{1F4F7}".repeat(19_990), "0123456789");
    let body = json_bytes(minimal_report(&description));
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(1_000).map(|chunk| Ok(chunk.to_vec())).collect();

    let response = post_streamed(&app, futures_util::stream::iter(chunks)).await;

    assert_eq!(response.status(), 201);
    let answer: Value = response.json().await.unwrap();
    let case_ref =
        incident_vault::domain::CaseRef::parse(answer["case_ref"].as_str().unwrap()).unwrap();
    let case = incident_vault::services::offline::decrypt_case(
        app.store.as_ref(),
        &[&app.escrow],
        &case_ref,
    )
    .await
    .unwrap();
    assert_eq!(case.report["description"], description);
}

async fn a_body_that_stalls_gets_408_and_stores_nothing(backend: Backend) {
    let Some(app) = crate::helpers::spawn_app_with(backend, |settings| {
        settings.limits.body_timeout_seconds = 1;
    })
    .await
    else {
        return;
    };
    // The first half of a report, then nothing for longer than the limit.
    let first_half: Result<Vec<u8>, std::io::Error> =
        Ok(b"{\"incident_type\": \"threat\", ".to_vec());
    let stalled = futures_util::stream::iter([first_half]).chain(futures_util::stream::pending());

    let response = post_streamed(&app, stalled).await;

    assert_eq!(response.status(), 408);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "body_timeout");
    app.assert_nothing_stored().await;
}

/// POSTs a JSON report body sent as a stream, without Content-Length, as a slow phone might.
async fn post_streamed<S>(app: &crate::helpers::TestApp, chunks: S) -> reqwest::Response
where
    S: futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + Sync + 'static,
{
    app.client
        .post(format!("{}/api/v1/reports", app.address))
        .header("Content-Type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap()
}

fn bytes_of(length: usize) -> Vec<u8> {
    vec![b' '; length]
}

async fn a_desk_member_gets_a_grant_that_opens_the_report(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let member = age::x25519::Identity::generate();
    let desk = app.store.desk_by_slug("default").await.unwrap().unwrap();
    app.execute(&format!(
        "INSERT INTO reviewers (id, username, role, status, recipient, created_on) \
         VALUES ('R1', 'coordinator', 'coordinator', 'active', '{}', '2026-01-01')",
        member.to_public()
    ))
    .await;
    app.execute(&format!(
        "INSERT INTO desk_members (desk_id, reviewer_id, role) VALUES ('{}', 'R1', 'coordinator')",
        desk.id
    ))
    .await;

    let (case_ref, _) = app
        .file(&minimal_report("Only the desk should read this."))
        .await;

    assert_eq!(app.count("grants").await, 2);
    let case_ref = incident_vault::domain::CaseRef::parse(&case_ref).unwrap();
    let case =
        incident_vault::services::offline::decrypt_case(app.store.as_ref(), &[&member], &case_ref)
            .await
            .unwrap();
    assert_eq!(
        case.report["description"],
        "Only the desk should read this."
    );
}

async fn a_database_failure_midway_gives_an_opaque_500_and_leaves_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    // Sabotage: the last table intake writes to disappears, after the case, grants and entry.
    app.execute("ALTER TABLE reporter_access RENAME TO reporter_access_gone")
        .await;

    let response = app
        .post_report(
            &minimal_report("This must not half-exist."),
            Some("0b6f3c2e-4a8d-4f7e-9c1a-2d3e4f5a6b7c"),
        )
        .await;

    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "internal_error");
    let text = body.to_string().to_lowercase();
    assert!(
        !text.contains("reporter_access") && !text.contains("sql"),
        "{body}"
    );
    for table in [
        "cases",
        "grants",
        "entries",
        "idempotency_records",
        "reporter_access_gone",
    ] {
        assert_eq!(app.count(table).await, 0, "{table}");
    }
}

/// A sealed case's rows as the store receives them, with `grants` grants to made-up reviewers
/// (the store does not open ciphertexts; the bytes are filler, not report content).
fn sealed_case_rows(
    desk_id: &str,
    case_id: &str,
    grants: usize,
) -> incident_vault::storage::NewSealedCase {
    use incident_vault::storage::{
        CaseRecord, EntryRecord, GrantRecord, NewSealedCase, ReporterAccessRecord,
    };
    NewSealedCase {
        case: CaseRecord {
            id: case_id.to_owned(),
            desk_id: desk_id.to_owned(),
            key_epoch: 1,
            case_recipient: age::x25519::Identity::generate().to_public().to_string(),
            status: "new".to_owned(),
            priority: "normal".to_owned(),
            incident_type: "intimidation".to_owned(),
            mechanism_kind: None,
            session_label: None,
            perpetrator_kind: None,
            incident_month: None,
            consent_ohchr: false,
            consent_sg_report: "no".to_owned(),
            consent_partners: false,
            consent_statistics: false,
            consent_contact: false,
            received_on: "2026-11-29".to_owned(),
            updated_on: "2026-11-29".to_owned(),
        },
        grants: (0..grants)
            .map(|index| GrantRecord {
                case_id: case_id.to_owned(),
                grantee_kind: "reviewer".to_owned(),
                grantee_id: format!("R{index:05}"),
                epoch: 1,
                ciphertext: vec![0xA5; 200],
            })
            .collect(),
        report: EntryRecord {
            id: format!("E-{case_id}"),
            case_id: case_id.to_owned(),
            kind: "report".to_owned(),
            author: "reporter".to_owned(),
            epoch: 1,
            created_on: "2026-11-29".to_owned(),
            ciphertext: vec![0x5A; 2_000],
        },
        reporter_access: ReporterAccessRecord {
            lookup_id: case_id.as_bytes().to_vec(),
            case_id: case_id.to_owned(),
            kdf_params: "argon2id$v=19$m=19456,t=2,p=1".to_owned(),
            reporter_recipient: age::x25519::Identity::generate().to_public().to_string(),
            sealed_identity: vec![0x11; 120],
            failed_attempts: 0,
        },
        idempotency: None,
        now: 1_795_000_000,
    }
}

async fn a_case_with_more_grants_than_one_statement_holds_is_written_whole_or_not_at_all(
    backend: Backend,
) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let desk = app.store.desk_by_slug("default").await.unwrap().unwrap();
    // The case statement carries the first GRANTS_PER_STATEMENT grants; the rest follow in two
    // more statements, the last of them partly filled.
    let many = 2 * incident_vault::storage::GRANTS_PER_STATEMENT + 203;
    app.seed_desk_members(&desk.id, many).await;

    app.store
        .insert_sealed_case(&sealed_case_rows(&desk.id, "CASE-MANY-1", many))
        .await
        .unwrap();

    assert_eq!(app.count("grants").await, i64::try_from(many).unwrap());
    let mut broken = sealed_case_rows(&desk.id, "CASE-MANY-2", many);
    // The very last grant repeats an earlier grantee: the third grant statement fails after the
    // case, its entry, its reporter access and a thousand grants were written.
    let last = broken.grants.len() - 1;
    broken.grants[last].grantee_id = "R00007".to_owned();
    assert!(app.store.insert_sealed_case(&broken).await.is_err());
    assert_eq!(app.count("cases").await, 1);
    assert_eq!(app.count("entries").await, 1);
    assert_eq!(app.count("reporter_access").await, 1);
    assert_eq!(app.count("grants").await, i64::try_from(many).unwrap());
}

/// A case that fits one statement, with or without an Idempotency-Key, is written without
/// BEGIN/COMMIT on PostgreSQL (one statement is atomic there) and inside a transaction on SQLite:
/// either way, a failure in its last row leaves none of the others.
async fn a_case_written_as_one_statement_is_whole_or_absent(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let desk = app.store.desk_by_slug("default").await.unwrap().unwrap();
    app.seed_desk_members(&desk.id, 3).await;
    for (keyed, case_id) in [(false, "CASE-ONE-1"), (true, "CASE-ONE-2")] {
        let mut broken = sealed_case_rows(&desk.id, case_id, 3);
        if keyed {
            broken.idempotency = Some(idempotency_record(case_id));
        }
        // The last grant repeats the first grantee: the statement fails on its very last row,
        // and that uniqueness rule is not the Idempotency-Key's.
        broken.grants[2].grantee_id = "R00000".to_owned();

        let refused = app.store.insert_sealed_case(&broken).await;

        assert!(
            matches!(refused, Err(StoreError::Database(_))),
            "keyed {keyed}: {refused:?}"
        );
        for table in [
            "cases",
            "entries",
            "reporter_access",
            "grants",
            "idempotency_records",
        ] {
            assert_eq!(app.count(table).await, 0, "keyed {keyed}: {table}");
        }
    }
    let mut whole = sealed_case_rows(&desk.id, "CASE-ONE-3", 3);
    whole.idempotency = Some(idempotency_record("CASE-ONE-3"));
    app.store.insert_sealed_case(&whole).await.unwrap();
    assert_eq!(app.count("cases").await, 1);
    assert_eq!(app.count("grants").await, 3);
    assert_eq!(app.count("idempotency_records").await, 1);

    // The same key again, for another case: refused as a conflict, and nothing of it written.
    let mut again = sealed_case_rows(&desk.id, "CASE-ONE-4", 3);
    again.idempotency = Some(idempotency_record("CASE-ONE-3"));
    let refused = app.store.insert_sealed_case(&again).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict("idempotency_key"))),
        "{refused:?}"
    );
    assert_eq!(app.count("cases").await, 1);
    assert_eq!(app.count("grants").await, 3);
}

/// Intake reads a desk's members before sealing, and the crypto pool may hold the job for seconds:
/// a reviewer removed from the desk or disabled in between gets no grant of the new case, in the
/// case's own statement and in the further statements of a desk too large for one.
async fn a_reviewer_who_left_the_desk_before_the_write_gets_no_grant(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let desk = app.store.desk_by_slug("default").await.unwrap().unwrap();
    let many = incident_vault::storage::GRANTS_PER_STATEMENT + 20;
    app.seed_desk_members(&desk.id, many).await;
    // Sealed for every member; then R00001 leaves the desk, R00002 is disabled, and R00510,
    // whose grant goes in the second statement, leaves too.
    let mut small = sealed_case_rows(&desk.id, "CASE-LEFT-1", 4);
    small.grants[3].grantee_kind = "escrow".to_owned();
    small.grants[3].grantee_id = "escrow".to_owned();
    let large = sealed_case_rows(&desk.id, "CASE-LEFT-2", many);
    app.execute("DELETE FROM desk_members WHERE reviewer_id IN ('R00001', 'R00510')")
        .await;
    app.execute("UPDATE reviewers SET status = 'disabled' WHERE id = 'R00002'")
        .await;

    app.store.insert_sealed_case(&small).await.unwrap();
    app.store.insert_sealed_case(&large).await.unwrap();

    let granted = |case_id: &'static str| {
        let app = &app;
        async move {
            let grants = app.store.grants_of_case(case_id).await.unwrap();
            grants
                .iter()
                .map(|grant| format!("{} {}", grant.grantee_kind, grant.grantee_id))
                .collect::<Vec<_>>()
        }
    };
    let mut small_grants = granted("CASE-LEFT-1").await;
    small_grants.sort();
    assert_eq!(small_grants, ["escrow escrow", "reviewer R00000"]);
    let large_grants = granted("CASE-LEFT-2").await;
    assert_eq!(large_grants.len(), many - 3);
    for gone in ["R00001", "R00002", "R00510"] {
        assert!(
            !large_grants.contains(&format!("reviewer {gone}")),
            "{gone} was granted"
        );
    }
    assert!(large_grants.contains(&"reviewer R00509".to_owned()));
    assert!(large_grants.contains(&"reviewer R00511".to_owned()));
}

/// A live idempotency record for a key derived from `seed` (the store does not open it).
fn idempotency_record(seed: &str) -> incident_vault::storage::IdempotencyRecord {
    incident_vault::storage::IdempotencyRecord {
        key_hash: seed.as_bytes().to_vec(),
        sealed_response: vec![0x3C; 90],
        expires_at: 1_795_000_000 + 86_400,
    }
}

crate::on_both_backends!(
    a_case_written_as_one_statement_is_whole_or_absent,
    a_reviewer_who_left_the_desk_before_the_write_gets_no_grant,
    a_valid_report_gets_201_with_a_case_ref_and_a_receipt,
    the_full_wire_shape_of_the_design_is_accepted,
    the_same_idempotency_key_gives_one_case_and_the_same_receipt,
    an_expired_key_files_a_new_report_and_answers_its_retries,
    concurrent_retries_with_one_key_still_give_one_case,
    one_key_reused_for_another_report_is_refused,
    each_class_of_bad_input_gets_its_code_and_stores_nothing,
    two_idempotency_keys_are_refused_and_store_nothing,
    a_compressed_body_is_refused_as_unsupported_and_stores_nothing,
    two_content_types_are_refused_and_store_nothing,
    a_chunked_body_over_the_limit_is_cut_off_with_413,
    a_large_report_sent_in_small_chunks_is_filed_whole,
    a_body_that_stalls_gets_408_and_stores_nothing,
    a_desk_member_gets_a_grant_that_opens_the_report,
    a_database_failure_midway_gives_an_opaque_500_and_leaves_nothing,
    a_case_with_more_grants_than_one_statement_holds_is_written_whole_or_not_at_all,
);

/// PostgreSQL only (SQLite's `synchronous = FULL` is checked on every pooled connection by a
/// unit test): a database whose default is `synchronous_commit = off`, which answers COMMIT
/// before the WAL is on disk, still gets every case committed with `on`, on every pooled
/// connection, and the operator is told.
#[tokio::test]
async fn on_postgres_reports_are_committed_durably_where_the_database_says_otherwise() {
    use sqlx::Connection;
    // Capturing before the build, whose connections warn.
    std::sync::LazyLock::force(&crate::helpers::LOGS);
    let dir = tempfile::tempdir().unwrap();
    let Some(database) =
        crate::helpers::TestDatabase::create_for_test(Backend::Postgres, dir.path()).await
    else {
        return;
    };
    let crate::helpers::TestDatabase::Postgres { name, .. } = &database else {
        unreachable!("a PostgreSQL database was asked for");
    };
    database
        .execute(&format!(
            "ALTER DATABASE {name} SET synchronous_commit = off"
        ))
        .await;
    let escrow = age::x25519::Identity::generate();
    let settings = crate::helpers::test_settings(database.url(), dir.path(), Some(&escrow));
    let app = crate::helpers::start(
        incident_vault::startup::Application::build(settings.clone())
            .await
            .unwrap(),
        settings,
        escrow,
        database,
        dir,
    );
    // What each INSERT of a case saw, recorded by the database itself.
    app.database
        .execute(
            "CREATE TABLE commit_settings (setting text NOT NULL); \
             CREATE FUNCTION note_commit_setting() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN INSERT INTO commit_settings \
             VALUES (current_setting('synchronous_commit')); RETURN NEW; END $$; \
             CREATE TRIGGER note_commit_setting BEFORE INSERT ON cases \
             FOR EACH ROW EXECUTE FUNCTION note_commit_setting()",
        )
        .await;

    // At once, so that more than one pooled connection writes.
    let reports: Vec<Value> = (0..6)
        .map(|index| minimal_report(&format!("report {index}")))
        .collect();
    futures_util::future::join_all(reports.iter().map(|report| app.file(report))).await;

    let mut connection = sqlx::PgConnection::connect(app.database.url())
        .await
        .unwrap();
    let outside: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(
        outside, "off",
        "the test did not set the database's default"
    );
    let seen: Vec<String> = sqlx::query_scalar("SELECT setting FROM commit_settings")
        .fetch_all(&mut connection)
        .await
        .unwrap();
    assert_eq!(seen.len(), 6);
    assert!(seen.iter().all(|setting| setting == "on"), "{seen:?}");
    // No other test turns the setting off, and the warning comes once per process.
    assert!(
        crate::helpers::LOGS
            .contents()
            .contains("synchronous_commit is off"),
        "the operator was not told"
    );
}
