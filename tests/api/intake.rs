//! `GET /api/v1/intake`.

use incident_vault::domain::IncidentType;
use serde_json::Value;

use crate::helpers::{Backend, spawn_app};

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
    assert_eq!(
        body["limits"]["body_bytes"],
        app.settings.limits.json_body_bytes
    );
    assert_eq!(body["idempotency"]["header"], "Idempotency-Key");
}

crate::on_both_backends!(intake_lists_the_default_desk_the_vocabularies_and_the_limits);
