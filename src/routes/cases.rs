//! The triage list and reading one case (issue 3, item 6). A case the caller holds no grant for
//! is a 404, whatever their role: a role alone never reveals content.

use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::RequestLimits;
use super::accounts::authenticated;
use super::body::read_json;
use crate::domain::{CaseRef, CaseStatus, EntryKind, IncidentType, MechanismKind, PerpetratorKind};
use crate::error::ApiError;
use crate::services::Vault;
use crate::services::cases::{CaseListQuery, ListCasesError, ReadCaseError};
use crate::services::grants::{BatchTally, GrantError, GrantOutcome};
use crate::services::offline::{DecryptedCase, DecryptedEntry};

/// Largest page of the triage list.
const MAX_PAGE: i64 = 100;

/// Query parameters of `GET /api/v1/cases`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListParameters {
    /// Only cases with this status.
    #[param(value_type = Option<CaseStatus>)]
    status: Option<String>,
    /// Only cases of this incident type.
    #[param(value_type = Option<IncidentType>)]
    incident_type: Option<String>,
    /// Only cases with this mechanism kind.
    #[param(value_type = Option<MechanismKind>)]
    mechanism: Option<String>,
    /// Only cases of the desk with this slug.
    desk: Option<String>,
    /// Only cases received on or after this day, `YYYY-MM-DD`.
    #[param(format = Date)]
    received_from: Option<String>,
    /// Only cases received on or before this day, `YYYY-MM-DD`.
    #[param(format = Date)]
    received_until: Option<String>,
    /// The `next` cursor of the previous page.
    after: Option<String>,
    /// Page size, 1 to 100; 50 by default. Read as text, so that a number too large for an
    /// integer is the same `invalid_limit` as one out of range, not a query that does not parse.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct GrantRequest {
    /// The username of the reviewer who receives the grant.
    reviewer: String,
}

/// A page of the triage list.
#[derive(Serialize, ToSchema)]
struct CaseList {
    cases: Vec<CaseSummary>,
    /// The cursor of the next page (`after`), or null on the last page.
    next: Option<String>,
}

/// A case in the triage list: allowlisted plaintext only, nothing decrypted.
#[derive(Serialize, ToSchema)]
struct CaseSummary {
    case_ref: String,
    #[schema(value_type = CaseStatus)]
    status: String,
    #[schema(example = "normal")]
    priority: String,
    #[schema(value_type = IncidentType)]
    incident_type: String,
    #[schema(value_type = Option<MechanismKind>)]
    mechanism: Option<String>,
    /// A normalised session label such as `UPR 45`.
    session: Option<String>,
    #[schema(value_type = Option<PerpetratorKind>)]
    perpetrator_kind: Option<String>,
    /// `YYYY-MM`.
    incident_month: Option<String>,
    received_on: String,
    updated_on: String,
}

/// A case decrypted with the caller's grant (DESIGN §5).
#[derive(Serialize, ToSchema)]
struct CaseView {
    case_ref: String,
    #[schema(value_type = CaseStatus)]
    status: String,
    #[schema(example = "normal")]
    priority: String,
    /// Not built yet: always null.
    assignee: Option<String>,
    /// Not built yet: always empty.
    labels: Vec<String>,
    #[schema(value_type = IncidentType)]
    incident_type: String,
    received_on: String,
    /// The report as the reporter sent it.
    #[schema(value_type = crate::domain::ReportWire)]
    report: serde_json::Value,
    thread: Vec<ThreadEntry>,
    /// Not built yet: always empty.
    attachments: Vec<serde_json::Value>,
    /// Not built yet: always empty.
    links: Vec<serde_json::Value>,
}

/// One decrypted item of a case's thread.
#[derive(Serialize, ToSchema)]
struct ThreadEntry {
    id: String,
    #[schema(value_type = EntryKind)]
    kind: String,
    /// `reporter`, or a reviewer id.
    author: String,
    created_on: String,
    /// The report's wire shape for the `report` entry; the entry's content otherwise.
    body: serde_json::Value,
}

impl From<DecryptedEntry> for ThreadEntry {
    fn from(entry: DecryptedEntry) -> Self {
        // Exhaustive on purpose: a new field in the service type must be exposed or skipped here.
        let DecryptedEntry {
            id,
            kind,
            author,
            created_on,
            body,
        } = entry;
        Self {
            id,
            kind,
            author,
            created_on,
            body,
        }
    }
}

impl From<DecryptedCase> for CaseView {
    fn from(case: DecryptedCase) -> Self {
        // Exhaustive on purpose, as above; the key epoch stays server-side.
        let DecryptedCase {
            case_ref,
            status,
            priority,
            incident_type,
            received_on,
            key_epoch: _,
            report,
            thread,
        } = case;
        Self {
            case_ref,
            status,
            priority,
            assignee: None,
            labels: Vec::new(),
            incident_type,
            received_on,
            report,
            thread: thread.into_iter().map(ThreadEntry::from).collect(),
            attachments: Vec::new(),
            links: Vec::new(),
        }
    }
}

/// The answer to a grant.
#[derive(Serialize, ToSchema)]
struct GrantAnswer<'a> {
    case_ref: &'a str,
    /// The grantee's username.
    reviewer: &'a str,
}

/// The tally of a batch grant over a desk.
#[derive(Serialize, ToSchema)]
struct DeskGrantTally {
    /// Cases newly granted.
    granted: u64,
    /// Cases the reviewer held already.
    already_held: u64,
}

impl From<BatchTally> for DeskGrantTally {
    fn from(tally: BatchTally) -> Self {
        let BatchTally {
            granted,
            already_held,
        } = tally;
        Self {
            granted,
            already_held,
        }
    }
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
        GrantError::Internal(cause) => ApiError::internal(cause),
    }
}

fn parse_case_ref(text: &str) -> Result<CaseRef, ApiError> {
    CaseRef::parse(text).map_err(|_| case_not_found())
}

/// A filter that must be one of `allowed`, which a refusal lists (case statuses are in no other
/// published list).
fn vocabulary_filter(
    field: &str,
    value: Option<String>,
    allowed: &[&str],
) -> Result<Option<String>, ApiError> {
    match value {
        Some(value) if !allowed.contains(&value.as_str()) => Err(ApiError::invalid_field(
            "unknown_value",
            field,
            format!(
                "is not an allowed value; expected one of {}",
                allowed.join(", ")
            ),
        )),
        other => Ok(other),
    }
}

/// Whether `text` is a day written `YYYY-MM-DD`.
/// A day written `YYYY-MM-DD`, exactly as days are stored: a signed year (`-0001-01-01`) would
/// compare as other text against them.
fn is_day(text: &str) -> bool {
    crate::domain::report::parse_date(text).is_some()
}

fn day_filter(field: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(day) if !is_day(&day) => Err(ApiError::invalid_field(
            "invalid_date",
            field,
            "must be a day written YYYY-MM-DD",
        )),
        other => Ok(other),
    }
}

/// The caller's granted cases, newest first, filtered, 50 per page by default.
#[utoipa::path(
    tag = "cases",
    params(ListParameters),
    security(("session_token" = []), ("session_cookie" = [])),
    responses(
        (status = 200, description = "A page of the cases granted to the caller.", body = CaseList),
        (status = 400, description = "`invalid_query`: an unknown or mistyped parameter."),
        (status = 422, description = "`invalid_limit`, `invalid_cursor`, `unknown_value`, \
            `invalid_date`."),
        super::openapi::SessionErrors,
        super::openapi::InternalError,
    ),
)]
#[get("/cases")]
pub async fn list_cases(
    request: HttpRequest,
    query: web::Query<ListParameters>,
    vault: web::Data<Vault>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticated(&request, &vault).await?;
    let parameters = query.into_inner();
    let limit = match parameters.limit.as_deref() {
        None => 50,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|limit| (1..=MAX_PAGE).contains(limit))
            .ok_or_else(|| ApiError::invalid_field("invalid_limit", "limit", "must be 1 to 100"))?,
    };
    let after = match parameters.after {
        Some(cursor) => Some(
            cursor
                .split_once('~')
                // A real day, not ten arbitrary characters: PostgreSQL refuses a NUL in text
                // (a 500), and anything else is no cursor this list gave out.
                // The case reference as this list wrote it: one in lower case or without its
                // hyphens, which the router's reads accept, would compare as other text and
                // start the page in the wrong place.
                .filter(|(day, _)| is_day(day))
                .and_then(|(day, id)| Some((day.to_owned(), CaseRef::parse(id).ok()?.to_string())))
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
        status: vocabulary_filter("status", parameters.status, &CaseStatus::names())?,
        incident_type: vocabulary_filter(
            "incident_type",
            parameters.incident_type,
            &IncidentType::names(),
        )?,
        mechanism_kind: vocabulary_filter(
            "mechanism",
            parameters.mechanism,
            &MechanismKind::names(),
        )?,
        desk_slug: parameters.desk,
        received_from: day_filter("received_from", parameters.received_from)?,
        received_until: day_filter("received_until", parameters.received_until)?,
        after,
        // One more than the page: whether it exists says whether there is a next page, so that
        // a page that ends exactly at the end of the list says so (`next` null).
        limit: limit + 1,
    };
    let mut page = vault
        .list_granted_cases(&caller.reviewer, list_query)
        .await
        .map_err(|error| match error {
            ListCasesError::UnknownDesk => ApiError::invalid_field(
                "unknown_value",
                "desk",
                "is not a desk; GET /api/v1/intake lists them",
            ),
            ListCasesError::Internal(error) => ApiError::internal(error),
        })?;
    let more = page.len() as i64 > limit;
    page.truncate(usize::try_from(limit).unwrap_or_default());
    let next = more
        .then(|| {
            page.last()
                .map(|case| format!("{}~{}", case.received_on, case.id))
        })
        .flatten();
    let cases: Vec<_> = page
        .into_iter()
        .map(|case| CaseSummary {
            case_ref: case.id,
            status: case.status,
            priority: case.priority,
            incident_type: case.incident_type,
            mechanism: case.mechanism_kind,
            session: case.session_label,
            perpetrator_kind: case.perpetrator_kind,
            incident_month: case.incident_month,
            received_on: case.received_on,
            updated_on: case.updated_on,
        })
        .collect();
    Ok(HttpResponse::Ok().json(CaseList { cases, next }))
}

/// One case, decrypted with the caller's grant.
#[utoipa::path(
    tag = "cases",
    params(("case_ref" = String, Path, description = "The case reference, e.g. `K7QM-3XTA-9PWD`.")),
    security(("session_token" = []), ("session_cookie" = [])),
    responses(
        (status = 200, description = "The decrypted case.", body = CaseView),
        (status = 404, description = "`case_not_found`: no such case, or no grant for it."),
        super::openapi::SessionErrors,
        super::openapi::InternalError,
    ),
)]
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
            ReadCaseError::Internal(cause) => ApiError::internal(cause),
        })?;
    Ok(HttpResponse::Ok().json(CaseView::from(case)))
}

/// Grants a case to another reviewer: a coordinator who can read it seals its key again for them.
/// Needs a step-up in the last 5 minutes. 201 when granted, 200 when they held it already.
#[utoipa::path(
    tag = "cases",
    params(("case_ref" = String, Path, description = "The case reference, e.g. `K7QM-3XTA-9PWD`.")),
    request_body = GrantRequest,
    security(("session_token" = []), ("session_cookie" = [])),
    responses(
        (status = 201, description = "Granted.", body = GrantAnswer),
        (status = 200, description = "The reviewer held the case already.", body = GrantAnswer),
        (status = 403, description = "`forbidden` (not a coordinator), `step_up_required`, \
            `cross_origin_request`."),
        (status = 404, description = "`case_not_found`."),
        (status = 422, description = "`ineligible_grantee`, or a body of the wrong shape."),
        (status = 503, description = "`busy`: retry shortly."),
        super::openapi::SessionErrors,
        super::openapi::JsonBodyErrors,
        super::openapi::InternalError,
    ),
)]
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
    let answer = GrantAnswer {
        case_ref: case_ref.as_str(),
        reviewer: &body.reviewer,
    };
    Ok(match outcome {
        GrantOutcome::Granted => HttpResponse::Created().json(answer),
        GrantOutcome::AlreadyHeld => HttpResponse::Ok().json(answer),
    })
}

/// Revokes a reviewer's access: their grants go, and the case is re-keyed so that nothing added
/// later opens with what they held.
#[utoipa::path(
    tag = "cases",
    params(
        ("case_ref" = String, Path, description = "The case reference, e.g. `K7QM-3XTA-9PWD`."),
        ("reviewer" = String, Path, description = "The username whose grant goes."),
    ),
    security(("session_token" = []), ("session_cookie" = [])),
    responses(
        (status = 204, description = "Revoked, and the case re-keyed."),
        (status = 403, description = "`forbidden` (not a coordinator), `cross_origin_request`."),
        (status = 404, description = "`case_not_found`, `grant_not_found`."),
        (status = 503, description = "`busy`: retry shortly."),
        super::openapi::SessionErrors,
        super::openapi::InternalError,
    ),
)]
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
#[utoipa::path(
    tag = "cases",
    params(("slug" = String, Path, description = "The desk's slug.")),
    request_body = GrantRequest,
    security(("session_token" = []), ("session_cookie" = [])),
    responses(
        (status = 200, description = "What the batch did.", body = DeskGrantTally),
        (status = 403, description = "`forbidden` (neither the coordinator role nor the \
            desk's coordinator; one with the role is answered with what it could grant, which \
            is only the desk's cases it can read), `step_up_required`, `cross_origin_request`."),
        (status = 404, description = "`desk_not_found`."),
        (status = 422, description = "`ineligible_grantee`, or a body of the wrong shape."),
        (status = 503, description = "`busy`: retry shortly."),
        super::openapi::SessionErrors,
        super::openapi::JsonBodyErrors,
        super::openapi::InternalError,
    ),
)]
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
    Ok(HttpResponse::Ok().json(DeskGrantTally::from(tally)))
}
