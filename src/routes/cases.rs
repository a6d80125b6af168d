//! The triage list and reading one case (issue 3, item 6). A case the caller holds no grant for
//! is a 404, whatever their role: a role alone never reveals content.

use actix_web::{HttpRequest, HttpResponse, get, web};
use serde::Deserialize;
use serde_json::json;

use super::accounts::{account_error, session_credential};
use crate::domain::{CaseRef, CaseStatus, IncidentType, MechanismKind};
use crate::error::ApiError;
use crate::services::Vault;
use crate::services::accounts::{AccountError, AuthenticatedReviewer};
use crate::services::cases::{CaseListQuery, ReadCaseError};

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

async fn reviewer(request: &HttpRequest, vault: &Vault) -> Result<AuthenticatedReviewer, ApiError> {
    let credential =
        session_credential(request)?.ok_or_else(|| account_error(AccountError::NoSession))?;
    vault
        .authenticate(age::secrecy::ExposeSecret::expose_secret(&credential.token))
        .await
        .map_err(account_error)
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
    let caller = reviewer(&request, &vault).await?;
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
    let caller = reviewer(&request, &vault).await?;
    let not_found = || ApiError::NotFound {
        code: "case_not_found",
        message: "There is no such case, or you hold no grant for it.".into(),
    };
    let case_ref = CaseRef::parse(&path.into_inner()).map_err(|_| not_found())?;
    let case = vault
        .read_case(&caller, &case_ref)
        .await
        .map_err(|error| match error {
            ReadCaseError::NotGranted => not_found(),
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
