//! `GET /api/v1/intake`: what a phone needs to build the form before the reporter types.

use actix_web::{HttpResponse, get, web};
use serde_json::json;

use super::RequestLimits;
use crate::domain::idempotency::{MAX_IDEMPOTENCY_KEY_LENGTH, MIN_IDEMPOTENCY_KEY_LENGTH};
use crate::domain::report::limits;
use crate::domain::{
    IncidentType, MechanismKind, OccurredAtPrecision, PerpetratorKind, SgReportConsent,
};
use crate::error::ApiError;
use crate::services::Vault;

/// Desks, vocabularies and limits.
#[get("/intake")]
pub async fn intake_parameters(
    vault: web::Data<Vault>,
    request_limits: web::Data<RequestLimits>,
) -> Result<HttpResponse, ApiError> {
    let desks = vault.store.desks().await.map_err(ApiError::internal)?;
    let desks: Vec<_> = desks
        .into_iter()
        .map(|desk| json!({"slug": desk.slug, "name": desk.name}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "desks": desks,
        "default_desk": crate::domain::desk::DEFAULT_DESK_SLUG,
        "vocabulary": {
            "incident_type": IncidentType::names(),
            "mechanism.kind": MechanismKind::names(),
            "perpetrator.kind": PerpetratorKind::names(),
            "occurred_at_precision": OccurredAtPrecision::names(),
            "consent.sg_report": SgReportConsent::names(),
        },
        "required": ["incident_type", "description"],
        "limits": {
            "body_bytes": request_limits.json_body_bytes,
            "description_chars": limits::DESCRIPTION,
            "location_chars": limits::LOCATION,
            "perpetrator.description_chars": limits::PERPETRATOR_DESCRIPTION,
            "mechanism.session_chars": limits::SESSION_LABEL,
            "mechanism.state_under_review_chars": limits::STATE_UNDER_REVIEW,
            "blocked_submission.platform_chars": limits::SUBMISSION_FIELD,
            "blocked_submission.reference_chars": limits::SUBMISSION_FIELD,
            "blocked_submission.what_happened_chars": limits::SUBMISSION_WHAT_HAPPENED,
            "consent.contact.channel_chars": limits::CONTACT_CHANNEL,
            "consent.contact.handle_chars": limits::CONTACT_HANDLE,
            "language_chars": limits::LANGUAGE,
        },
        "idempotency": {
            "header": super::reports::IDEMPOTENCY_KEY_HEADER,
            "min_length": MIN_IDEMPOTENCY_KEY_LENGTH,
            "max_length": MAX_IDEMPOTENCY_KEY_LENGTH,
            "ttl_hours": request_limits.idempotency_ttl_hours,
        },
    })))
}
