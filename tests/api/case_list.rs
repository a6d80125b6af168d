//! The triage list's two query shapes (`Store::cases_granted_to`): a reviewer who holds many
//! grants gets an index walk, one who holds few gets a sort of their grants. Both must give the
//! same pages for every filter and cursor: this fills a database with synthetic rows (no
//! content; grant ciphertexts are dummy bytes) and compares every page with the one expected.

use incident_vault::storage::{CaseFilter, CaseRecord};

use crate::helpers::{Backend, TestApp, TestDatabase, spawn_app};

/// More than the store's threshold (`FEW_GRANTS` in src/storage/sql.rs, 1000): the walk.
const MANY: usize = 1_100;
/// Fewer: the sort of the reviewer's own grants.
const FEW: usize = 37;
const STATUSES: [&str; 3] = ["new", "triaged", "awaiting_reporter"];
const TYPES: [&str; 4] = [
    "photographing",
    "intimidation",
    "blocked_submission",
    "threat_to_family",
];

struct Synthetic {
    id: String,
    status: &'static str,
    incident_type: &'static str,
    received_on: String,
}

/// Case `index`: days and attributes spread so that days repeat (the cursor's tie on id).
fn synthetic(index: usize) -> Synthetic {
    Synthetic {
        id: format!("case-{index:05}"),
        status: STATUSES[index % STATUSES.len()],
        incident_type: TYPES[(index / 3) % TYPES.len()],
        received_on: format!("2026-{:02}-{:02}", 1 + (index / 7) % 12, 1 + index % 28),
    }
}

async fn fill(app: &TestApp, desk_id: &str) {
    let (no, blob) = match &app.database {
        TestDatabase::Sqlite { .. } => ("0", "X'00'"),
        TestDatabase::Postgres { .. } => ("false", "'\\x00'::bytea"),
    };
    let mut cases = Vec::new();
    let mut grants = Vec::new();
    for index in 0..MANY {
        let case = synthetic(index);
        cases.push(format!(
            "('{}', '{desk_id}', 1, 'age1dummy', '{}', 'normal', '{}', NULL, NULL, NULL, NULL, \
             {no}, 'no', {no}, {no}, {no}, '{}', '{}')",
            case.id, case.status, case.incident_type, case.received_on, case.received_on
        ));
        grants.push(format!("('{}', 'reviewer', 'many', 1, {blob})", case.id));
        if index % (MANY / FEW) == 0 {
            grants.push(format!("('{}', 'reviewer', 'few', 1, {blob})", case.id));
            // A second epoch of the same grant (after a re-key) must not list the case twice.
            grants.push(format!("('{}', 'reviewer', 'few', 2, {blob})", case.id));
        }
    }
    for chunk in cases.chunks(200) {
        app.execute(&format!(
            "INSERT INTO cases (id, desk_id, key_epoch, case_recipient, status, priority, \
             incident_type, mechanism_kind, session_label, perpetrator_kind, incident_month, \
             consent_ohchr, consent_sg_report, consent_partners, consent_statistics, \
             consent_contact, received_on, updated_on) VALUES {}",
            chunk.join(", ")
        ))
        .await;
    }
    for chunk in grants.chunks(500) {
        app.execute(&format!(
            "INSERT INTO grants (case_id, grantee_kind, grantee_id, epoch, ciphertext) VALUES {}",
            chunk.join(", ")
        ))
        .await;
    }
}

/// The pages the list must give, computed from the synthetic data.
fn expected(grantee: &str, filter: &CaseFilter) -> Vec<String> {
    let mut held: Vec<Synthetic> = (0..MANY)
        .filter(|index| grantee == "many" || index % (MANY / FEW) == 0)
        .map(synthetic)
        .filter(|case| filter.status.as_deref().is_none_or(|s| s == case.status))
        .filter(|case| {
            filter
                .incident_type
                .as_deref()
                .is_none_or(|t| t == case.incident_type)
        })
        .filter(|case| {
            filter
                .received_from
                .as_deref()
                .is_none_or(|from| case.received_on.as_str() >= from)
        })
        .filter(|case| {
            filter.after.as_ref().is_none_or(|(day, id)| {
                (case.received_on.as_str(), case.id.as_str()) < (day.as_str(), id.as_str())
            })
        })
        .collect();
    held.sort_by(|a, b| (&b.received_on, &b.id).cmp(&(&a.received_on, &a.id)));
    held.into_iter()
        .take(usize::try_from(filter.limit).unwrap())
        .map(|case| case.id)
        .collect()
}

fn ids(page: &[CaseRecord]) -> Vec<String> {
    page.iter().map(|case| case.id.clone()).collect()
}

async fn both_query_shapes_give_the_same_pages_for_every_filter_and_cursor(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let desk = app.store.desk_by_slug("default").await.unwrap().unwrap();
    fill(&app, &desk.id).await;
    let filters = [
        CaseFilter::default(),
        CaseFilter {
            status: Some("triaged".into()),
            ..CaseFilter::default()
        },
        CaseFilter {
            incident_type: Some("photographing".into()),
            status: Some("new".into()),
            ..CaseFilter::default()
        },
        CaseFilter {
            received_from: Some("2026-06-01".into()),
            desk_id: Some(desk.id.clone()),
            ..CaseFilter::default()
        },
        CaseFilter {
            desk_id: Some("another-desk".into()),
            ..CaseFilter::default()
        },
    ];

    let mut pages_checked = 0;
    for grantee in ["many", "few"] {
        for filter in &filters {
            // Walk every page of this filter through the cursor, as a client pages.
            let mut filter = CaseFilter {
                limit: 25,
                ..filter.clone()
            };
            loop {
                let page = app.store.cases_granted_to(grantee, &filter).await.unwrap();
                let expected = if filter.desk_id.as_deref() == Some("another-desk") {
                    Vec::new()
                } else {
                    expected(grantee, &filter)
                };
                assert_eq!(ids(&page), expected, "{grantee}: {filter:?}");
                pages_checked += 1;
                let Some(last) = page.last() else { break };
                if page.len() < 25 {
                    break;
                }
                filter.after = Some((last.received_on.clone(), last.id.clone()));
            }
        }
    }
    assert!(
        pages_checked > 90,
        "only {pages_checked} pages were compared"
    );
    assert!(
        app.store
            .cases_granted_to(
                "nobody",
                &CaseFilter {
                    limit: 50,
                    ..CaseFilter::default()
                }
            )
            .await
            .unwrap()
            .is_empty()
    );
}

crate::on_both_backends!(both_query_shapes_give_the_same_pages_for_every_filter_and_cursor,);
