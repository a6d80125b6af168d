//! `GET /api/v1/intake`: what a phone needs to build the form before the reporter types.

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::RequestLimits;
use crate::domain::idempotency::{MAX_IDEMPOTENCY_KEY_LENGTH, MIN_IDEMPOTENCY_KEY_LENGTH};
use crate::domain::report::limits;
use crate::domain::{
    IncidentType, MechanismKind, OccurredAtPrecision, PerpetratorKind, SgReportConsent,
};
use crate::error::ApiError;
use crate::services::Vault;

/// The answer of `GET /api/v1/intake`.
#[derive(Serialize, ToSchema)]
struct IntakeParameters {
    desks: Vec<IntakeDesk>,
    /// The desk a report goes to when it names none.
    default_desk: &'static str,
    vocabulary: FormVocabulary,
    /// The fields every report must have.
    required: Vec<&'static str>,
    limits: IntakeLimits,
    idempotency: IdempotencyRules,
}

/// A desk a report may be sent to.
#[derive(Serialize, ToSchema)]
struct IntakeDesk {
    slug: String,
    name: String,
}

/// Every closed vocabulary of the report, keyed by the field's dotted path.
#[derive(Serialize, ToSchema)]
struct FormVocabulary {
    incident_type: Vec<IncidentType>,
    #[serde(rename = "mechanism.kind")]
    mechanism_kind: Vec<MechanismKind>,
    #[serde(rename = "perpetrator.kind")]
    perpetrator_kind: Vec<PerpetratorKind>,
    occurred_at_precision: Vec<OccurredAtPrecision>,
    #[serde(rename = "consent.sg_report")]
    consent_sg_report: Vec<SgReportConsent>,
}

/// The body size limit in bytes, the time limits in seconds, and the longest each free-text field
/// may be, in characters.
#[derive(Serialize, ToSchema)]
struct IntakeLimits {
    body_bytes: usize,
    /// How long the body may take to arrive (408 `body_timeout` beyond).
    body_timeout_seconds: u64,
    /// How long the whole request may take once its headers have arrived (up to 10 s), the body
    /// included (503 `timed_out` beyond): a phone that waits this long plus 10 s and a margin
    /// for the network gets the service's answer rather than none.
    request_timeout_seconds: u64,
    description_chars: u64,
    location_chars: u64,
    #[serde(rename = "perpetrator.description_chars")]
    perpetrator_description_chars: u64,
    #[serde(rename = "mechanism.session_chars")]
    mechanism_session_chars: u64,
    #[serde(rename = "mechanism.state_under_review_chars")]
    mechanism_state_under_review_chars: u64,
    #[serde(rename = "blocked_submission.platform_chars")]
    blocked_submission_platform_chars: u64,
    #[serde(rename = "blocked_submission.reference_chars")]
    blocked_submission_reference_chars: u64,
    #[serde(rename = "blocked_submission.what_happened_chars")]
    blocked_submission_what_happened_chars: u64,
    #[serde(rename = "consent.contact.channel_chars")]
    consent_contact_channel_chars: u64,
    #[serde(rename = "consent.contact.handle_chars")]
    consent_contact_handle_chars: u64,
    language_chars: u64,
    occurred_at_chars: u64,
}

/// How a phone makes a retry safe: a random key in this header, kept for `ttl_hours`.
#[derive(Serialize, ToSchema)]
struct IdempotencyRules {
    header: &'static str,
    min_length: usize,
    max_length: usize,
    ttl_hours: u32,
}

/// Desks, vocabularies and limits.
#[utoipa::path(
    tag = "intake",
    responses(
        (status = 200, description = "What the form needs.", body = IntakeParameters),
        super::openapi::InternalError,
    ),
)]
#[get("/intake")]
pub async fn intake_parameters(
    vault: web::Data<Vault>,
    request_limits: web::Data<RequestLimits>,
) -> Result<HttpResponse, ApiError> {
    let desks = vault.intake_desks().await.map_err(ApiError::internal)?;
    let desks: Vec<_> = desks
        .into_iter()
        .map(|desk| IntakeDesk {
            slug: desk.slug,
            name: desk.name,
        })
        .collect();
    Ok(HttpResponse::Ok().json(IntakeParameters {
        desks,
        default_desk: crate::domain::desk::DEFAULT_DESK_SLUG,
        vocabulary: FormVocabulary {
            incident_type: IncidentType::ALL.to_vec(),
            mechanism_kind: MechanismKind::ALL.to_vec(),
            perpetrator_kind: PerpetratorKind::ALL.to_vec(),
            occurred_at_precision: OccurredAtPrecision::ALL.to_vec(),
            consent_sg_report: SgReportConsent::ALL.to_vec(),
        },
        required: vec!["incident_type", "description"],
        limits: IntakeLimits {
            body_bytes: request_limits.json_body_bytes,
            body_timeout_seconds: request_limits.body_timeout.as_secs(),
            request_timeout_seconds: request_limits.request_timeout.as_secs(),
            description_chars: limits::DESCRIPTION,
            location_chars: limits::LOCATION,
            perpetrator_description_chars: limits::PERPETRATOR_DESCRIPTION,
            mechanism_session_chars: limits::SESSION_LABEL,
            mechanism_state_under_review_chars: limits::STATE_UNDER_REVIEW,
            blocked_submission_platform_chars: limits::SUBMISSION_FIELD,
            blocked_submission_reference_chars: limits::SUBMISSION_FIELD,
            blocked_submission_what_happened_chars: limits::SUBMISSION_WHAT_HAPPENED,
            consent_contact_channel_chars: limits::CONTACT_CHANNEL,
            consent_contact_handle_chars: limits::CONTACT_HANDLE,
            language_chars: limits::LANGUAGE,
            occurred_at_chars: limits::OCCURRED_AT,
        },
        idempotency: IdempotencyRules {
            header: super::reports::IDEMPOTENCY_KEY_HEADER,
            min_length: MIN_IDEMPOTENCY_KEY_LENGTH,
            max_length: MAX_IDEMPOTENCY_KEY_LENGTH,
            ttl_hours: request_limits.idempotency_ttl_hours,
        },
    }))
}
