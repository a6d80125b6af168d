//! `POST /api/v1/reports`: file a report.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, post, web};
use age::secrecy::ExposeSecret;
use serde::Serialize;
use utoipa::ToSchema;

use super::RequestLimits;
use super::body::read_json;
use crate::domain::{IdempotencyKey, Report, ReportWire};
use crate::error::ApiError;
use crate::services::Vault;
use crate::services::intake::IntakeError;

/// The header a phone sends so that a retry after a lost answer files nothing twice.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// The answer to a filed report.
#[derive(Serialize, ToSchema)]
struct FiledReport<'a> {
    /// The case reference, for the desk.
    case_ref: &'a str,
    /// The reporter's receipt, shown once: it opens the reporter's way back into the case.
    receipt: &'a str,
}

/// Files a JSON report → `201 {"case_ref", "receipt"}`. A retry with the same Idempotency-Key
/// gets the same answer, marked `Idempotent-Replayed: true`.
#[utoipa::path(
    tag = "intake",
    params((
        "Idempotency-Key" = Option<String>, Header,
        description = "A fresh random key for each new report (limits in `GET /api/v1/intake`): \
            a retry with the same key files nothing twice.",
    )),
    request_body(content = ReportWire, content_type = "application/json"),
    responses(
        // First, so that the 400 below (which adds `invalid_idempotency_key`) replaces its 400.
        super::openapi::JsonBodyErrors,
        (
            status = 201, description = "Filed. On a retry with the same Idempotency-Key, the \
                first answer again.",
            body = FiledReport,
            headers(("Idempotent-Replayed" = String, description = "`true` on a replayed answer.")),
        ),
        (status = 400, description = "`invalid_idempotency_key`, `malformed_json`, \
            `body_unreadable`."),
        (status = 422, description = "`invalid_report` (validation; `fields` names each field), \
            `unknown_desk`, `idempotency_key_reused`, or a body of the wrong shape."),
        (status = 503, description = "`intake_saturated`: nothing was stored; retry with the \
            same Idempotency-Key. `Retry-After` is set."),
        super::openapi::InternalError,
    ),
)]
#[post("/reports")]
pub async fn file_report(
    request: HttpRequest,
    payload: web::Payload,
    vault: web::Data<Vault>,
    limits: web::Data<RequestLimits>,
) -> Result<HttpResponse, ApiError> {
    let idempotency_key = idempotency_key(&request)?;
    let wire: ReportWire = read_json(&request, payload, &limits).await?;
    let report = Report::parse(wire).map_err(|rejected| ApiError::Unprocessable {
        code: "invalid_report",
        message: format!(
            "Some fields of the report are invalid: {}.",
            rejected
                .fields
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ),
        fields: rejected.fields,
    })?;
    let filed = vault
        .file_report(report, idempotency_key)
        .await
        .map_err(|error| match error {
            IntakeError::UnknownDesk => ApiError::invalid_field(
                "unknown_desk",
                "desk",
                "no such desk; GET /api/v1/intake lists them",
            ),
            IntakeError::IdempotencyKeyReused => ApiError::Unprocessable {
                code: "idempotency_key_reused",
                message: "This Idempotency-Key was already used for a different report. Use a \
                          fresh random key for each new report."
                    .into(),
                fields: [(
                    IDEMPOTENCY_KEY_HEADER.to_owned(),
                    "used for another report".to_owned(),
                )]
                .into(),
            },
            IntakeError::Saturated => ApiError::Unavailable {
                code: "intake_saturated",
                message: "Too many reports are arriving right now. Nothing was stored; please \
                          retry in a few seconds with the same Idempotency-Key."
                    .into(),
            },
            IntakeError::Internal(cause) => ApiError::internal(cause),
        })?;
    let mut response = HttpResponse::Created();
    if filed.replayed {
        response.insert_header(("Idempotent-Replayed", "true"));
    }
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    Ok(response.json(FiledReport {
        case_ref: filed.case_ref.as_str(),
        receipt: filed.receipt.expose_secret(),
    }))
}

fn idempotency_key(request: &HttpRequest) -> Result<Option<IdempotencyKey>, ApiError> {
    let invalid = |message: String| ApiError::BadRequest {
        code: "invalid_idempotency_key",
        message,
    };
    let mut values = request.headers().get_all(IDEMPOTENCY_KEY_HEADER);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    // Which of two keys a retry would repeat cannot be known: honouring the first would file a
    // second case for a retry that sends them in another order. The same key twice (a proxy
    // that repeats a header) is one key.
    if values.any(|other| other != value) {
        return Err(invalid(
            "Send one Idempotency-Key header, not several.".into(),
        ));
    }
    let text = value
        .to_str()
        .map_err(|_| invalid("Idempotency-Key must be plain ASCII.".into()))?;
    IdempotencyKey::parse(text)
        .map(Some)
        .map_err(|error| invalid(format!("{error}.")))
}
