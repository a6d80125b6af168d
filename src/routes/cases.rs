//! The triage list and reading one case (issue 3, item 6). A case the caller holds no grant for
//! is a 404, whatever their role: a role alone never reveals content.

use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use serde::Deserialize;
use serde_json::json;

use super::RequestLimits;
use super::accounts::authenticated;
use super::body::read_json;
use crate::domain::{CaseRef, CaseStatus, IncidentType, MechanismKind};
use crate::error::ApiError;
use crate::services::Vault;
use crate::services::cases::{CaseListQuery, ReadCaseError};
use crate::services::grants::{GrantError, GrantOutcome};

/// Largest page of the triage list.
const MAX_PAGE: i64 = 100;

/// Query parameters of `GET /api/v1/cases`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParameters {
    status: Option<String>,
    incident_type: Option<String>,
    mechanism: Option<String>,
    desk: Option<String>,
    received_from: Option<String>,
    received_until: Option<String>,
    after: Option<String>,
    limit: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantRequest {
    /// The username of the reviewer who receives the grant.
    reviewer: String,
}

fn case_not_found() -> ApiError {
    ApiError::NotFound {
        code: "case_not_found",
        message: "There is no such case, or you hold no grant for it.".into(),
    }
}

pub(super) fn grant_error(error: GrantError) -> ApiError {
    match error {
        GrantError::CaseNotFound => case_not_found(),
        GrantError::NotCoordinator => ApiError::Forbidden {
            code: "forbidden",
            message: "Only a coordinator grants and revokes access.".into(),
        },
        GrantError::StepUpRequired => ApiError::Forbidden {
            code: "step_up_required",
            message: "Enter your password again (POST /api/v1/auth/step-up), then retry within \
                      5 minutes."
                .into(),
        },
        GrantError::Ineligible(why) => {
            ApiError::invalid_field("ineligible_grantee", "reviewer", why)
        }
        GrantError::GrantNotFound => ApiError::NotFound {
            code: "grant_not_found",
            message: "That reviewer holds no grant for this case.".into(),
        },
        GrantError::UnknownDesk => ApiError::NotFound {
            code: "desk_not_found",
            message: "There is no desk of that name.".into(),
        },
        GrantError::Saturated => ApiError::Unavailable {
            code: "busy",
            message: "The server is busy sealing. Please retry shortly.".into(),
        },
        GrantError::Internal(cause) => ApiError::Internal(cause),
    }
}

fn parse_case_ref(text: &str) -> Result<CaseRef, ApiError> {
    CaseRef::parse(text).map_err(|_| case_not_found())
}

fn vocabulary_filter(
    field: &str,
    value: Option<String>,
    known: impl Fn(&str) -> bool,
) -> Result<Option<String>, ApiError> {
    match value {
        Some(value) if !known(&value) => Err(ApiError::invalid_field(
            "unknown_value",
            field,
            "is not an allowed value; GET /api/v1/intake lists them",
        )),
        other => Ok(other),
    }
}

fn day_filter(field: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    match value {
        Some(day) if time::Date::parse(&day, format).is_err() => Err(ApiError::invalid_field(
            "invalid_date",
            field,
            "must be a day written YYYY-MM-DD",
        )),
        other => Ok(other),
    }
}

/// The caller's granted cases, newest first, filtered, 50 per page by default.
#[get("/cases")]
pub async fn list_cases(
    request: HttpRequest,
    query: web::Query<ListParameters>,
    vault: web::Data<Vault>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticated(&request, &vault).await?;
    let parameters = query.into_inner();
    let limit = parameters.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid_field(
            "invalid_limit",
            "limit",
            "must be 1 to 100",
        ));
    }
    let after = match parameters.after {
        Some(cursor) => Some(
            cursor
                .split_once('~')
                .filter(|(day, id)| day.len() == 10 && CaseRef::parse(id).is_ok())
                .map(|(day, id)| (day.to_owned(), id.to_owned()))
                .ok_or_else(|| {
                    ApiError::invalid_field(
                        "invalid_cursor",
                        "after",
                        "is not a cursor from this list",
                    )
                })?,
        ),
        None => None,
    };
    let list_query = CaseListQuery {
        status: vocabulary_filter("status", parameters.status, |value| {
            CaseStatus::parse(value).is_some()
        })?,
        incident_type: vocabulary_filter("incident_type", parameters.incident_type, |value| {
            IncidentType::parse(value).is_some()
        })?,
        mechanism_kind: vocabulary_filter("mechanism", parameters.mechanism, |value| {
            MechanismKind::parse(value).is_some()
        })?,
        desk_slug: parameters.desk,
        received_from: day_filter("received_from", parameters.received_from)?,
        received_until: day_filter("received_until", parameters.received_until)?,
        after,
        limit,
    };
    let page = vault
        .list_granted_cases(&caller.reviewer, list_query)
        .await
        .map_err(ApiError::internal)?;
    let next = (page.len() as i64 == limit)
        .then(|| {
            page.last()
                .map(|case| format!("{}~{}", case.received_on, case.id))
        })
        .flatten();
    let cases: Vec<_> = page
        .into_iter()
        .map(|case| {
            json!({
                "case_ref": case.id,
                "status": case.status,
                "priority": case.priority,
                "incident_type": case.incident_type,
                "mechanism": case.mechanism_kind,
                "session": case.session_label,
                "perpetrator_kind": case.perpetrator_kind,
                "incident_month": case.incident_month,
                "received_on": case.received_on,
                "updated_on": case.updated_on,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"cases": cases, "next": next})))
}

/// One case, decrypted with the caller's grant.
#[get("/cases/{case_ref}")]
pub async fn read_case(
    request: HttpRequest,
    path: web::Path<String>,
    vault: web::Data<Vault>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticated(&request, &vault).await?;
    let case_ref = parse_case_ref(&path.into_inner())?;
    let case = vault
        .read_case(&caller, &case_ref)
        .await
        .map_err(|error| match error {
            ReadCaseError::NotGranted => case_not_found(),
            ReadCaseError::Internal(cause) => ApiError::Internal(cause),
        })?;
    Ok(HttpResponse::Ok().json(json!({
        "case_ref": case.case_ref,
        "status": case.status,
        "priority": case.priority,
        "assignee": null,
        "labels": [],
        "incident_type": case.incident_type,
        "received_on": case.received_on,
        "report": case.report,
        "thread": case.thread,
        "attachments": [],
        "links": [],
    })))
}

/// Grants a case to another reviewer: a coordinator who can read it seals its key again for them.
/// Needs a step-up in the last 5 minutes. 201 when granted, 200 when they held it already.
#[post("/cases/{case_ref}/grants")]
pub async fn grant_case(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    vault: web::Data<Vault>,
    limits: web::Data<RequestLimits>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticated(&request, &vault).await?;
    let case_ref = parse_case_ref(&path.into_inner())?;
    let body: GrantRequest = read_json(&request, payload, &limits).await?;
    let outcome = vault
        .grant_case(&caller, &case_ref, &body.reviewer)
        .await
        .map_err(grant_error)?;
    let answer = json!({"case_ref": case_ref.as_str(), "reviewer": body.reviewer});
    Ok(match outcome {
        GrantOutcome::Granted => HttpResponse::Created().json(answer),
        GrantOutcome::AlreadyHeld => HttpResponse::Ok().json(answer),
    })
}

/// Revokes a reviewer's access: their grants go, and the case is re-keyed so that nothing added
/// later opens with what they held.
#[delete("/cases/{case_ref}/grants/{reviewer}")]
pub async fn revoke_grant(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    vault: web::Data<Vault>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticated(&request, &vault).await?;
    let (case_ref, reviewer) = path.into_inner();
    let case_ref = parse_case_ref(&case_ref)?;
    vault
        .revoke_grant(&caller, &case_ref, &reviewer)
        .await
        .map_err(grant_error)?;
    Ok(HttpResponse::NoContent().finish())
}

/// Grants every case of a desk that the caller can read to a member of that desk, as a batch.
/// Needs a step-up in the last 5 minutes.
#[post("/desks/{slug}/grants")]
pub async fn grant_desk_cases(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    vault: web::Data<Vault>,
    limits: web::Data<RequestLimits>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticated(&request, &vault).await?;
    let body: GrantRequest = read_json(&request, payload, &limits).await?;
    let tally = vault
        .grant_desk_cases(&caller, &path.into_inner(), &body.reviewer)
        .await
        .map_err(grant_error)?;
    Ok(HttpResponse::Ok().json(tally))
}
