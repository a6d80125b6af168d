//! `/api/v1/admin/…`: accounts, desks and the audit log (issue 3). Admins only, except the
//! audit log, which auditors read too. Nothing here reveals case content.

use actix_web::{HttpRequest, HttpResponse, get, patch, post, put, web};
use age::secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;

use super::RequestLimits;
use super::accounts::authenticated;
use super::body::read_json;
use crate::domain::{AccountStatus, DeskRole, DeskSlug, Role, Username};
use crate::error::ApiError;
use crate::services::Vault;
use crate::services::admin::AdminError;

/// Most desks one invitation may name, and most members one desk may have.
const MAX_DESKS: usize = 50;
const MAX_MEMBERS: usize = 500;
/// Longest desk display name, in characters.
const MAX_DESK_NAME: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteRequest {
    username: String,
    role: String,
    #[serde(default)]
    desks: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountChangeRequest {
    role: Option<String>,
    status: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDeskRequest {
    slug: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MembersRequest {
    members: Vec<MemberRequest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberRequest {
    username: String,
    role: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParameters {
    after: Option<i64>,
    limit: Option<i64>,
}

pub(super) fn admin_error(error: AdminError) -> ApiError {
    match error {
        AdminError::Forbidden(role) => ApiError::Forbidden {
            code: "forbidden",
            message: format!("This needs the {role} role."),
        },
        AdminError::UnknownAccount => ApiError::NotFound {
            code: "account_not_found",
            message: "There is no account of that name.".into(),
        },
        AdminError::UnknownDesk => ApiError::NotFound {
            code: "desk_not_found",
            message: "There is no desk of that name.".into(),
        },
        AdminError::Invalid(field, why) => ApiError::invalid_field("invalid_field", field, why),
        AdminError::Internal(cause) => ApiError::Internal(cause),
    }
}

fn username(field: &str, text: &str) -> Result<Username, ApiError> {
    Username::parse(text)
        .map_err(|error| ApiError::invalid_field("invalid_username", field, error.to_string()))
}

fn role(text: &str) -> Result<Role, ApiError> {
    Role::parse(text).ok_or_else(|| {
        ApiError::invalid_field(
            "unknown_value",
            "role",
            "must be admin, coordinator, reviewer or auditor",
        )
    })
}

fn rfc3339(unix: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|moment| {
            moment
                .format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
}

/// Invites a reviewer: a single-use enrolment token, shown once.
#[post("/admin/reviewers")]
pub async fn invite(
    request: HttpRequest,
    payload: web::Payload,
    vault: web::Data<Vault>,
    limits: web::Data<RequestLimits>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticated(&request, &vault).await?;
    let body: InviteRequest = read_json(&request, payload, &limits).await?;
    let name = username("username", &body.username)?;
    let role = role(&body.role)?;
    if body.desks.len() > MAX_DESKS {
        return Err(ApiError::invalid_field(
            "too_many",
            "desks",
            format!("at most {MAX_DESKS}"),
        ));
    }
    let desks = body
        .desks
        .iter()
        .map(|slug| DeskSlug::parse(slug))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| ApiError::invalid_field("invalid_desk", "desks", error.to_string()))?;
    let invitation = vault
        .invite(&caller, &name, role, &desks)
        .await
        .map_err(admin_error)?;
    Ok(HttpResponse::Created().json(json!({
        "username": name.as_str(),
        "token": invitation.token.expose_secret(),
        "expires_at": rfc3339(invitation.expires_at),
    })))
}

/// Every account, with its role, status and desks.
#[get("/admin/reviewers")]
pub async fn list_accounts(
    request: HttpRequest,
    vault: web::Data<Vault>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticated(&request, &vault).await?;
    let accounts = vault.accounts(&caller).await.map_err(admin_error)?;
    Ok(HttpResponse::Ok().json(json!({ "reviewers": accounts })))
}

/// Changes an account's role, or disables or re-enables it.
#[patch("/admin/reviewers/{username}")]
pub async fn change_account(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    vault: web::Data<Vault>,
    limits: web::Data<RequestLimits>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticated(&request, &vault).await?;
    let body: AccountChangeRequest = read_json(&request, payload, &limits).await?;
    let role = body.role.as_deref().map(role).transpose()?;
    let status = body
        .status
        .as_deref()
        .map(|text| {
            AccountStatus::parse(text).ok_or_else(|| {
                ApiError::invalid_field("unknown_value", "status", "must be active or disabled")
            })
        })
        .transpose()?;
    if role.is_none() && status.is_none() {
        return Err(ApiError::invalid_field(
            "nothing_to_change",
            "role",
            "give a role, a status, or both",
        ));
    }
    vault
        .change_account(&caller, &path.into_inner(), role, status)
        .await
        .map_err(admin_error)?;
    Ok(HttpResponse::NoContent().finish())
}

/// Every desk and its members.
#[get("/admin/desks")]
pub async fn list_desks(
    request: HttpRequest,
    vault: web::Data<Vault>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticated(&request, &vault).await?;
    let desks = vault
        .desks_with_members(&caller)
        .await
        .map_err(admin_error)?;
    Ok(HttpResponse::Ok().json(json!({ "desks": desks })))
}

/// Creates a desk.
#[post("/admin/desks")]
pub async fn create_desk(
    request: HttpRequest,
    payload: web::Payload,
    vault: web::Data<Vault>,
    limits: web::Data<RequestLimits>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticated(&request, &vault).await?;
    let body: NewDeskRequest = read_json(&request, payload, &limits).await?;
    let slug = DeskSlug::parse(&body.slug)
        .map_err(|error| ApiError::invalid_field("invalid_desk", "slug", error.to_string()))?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > MAX_DESK_NAME || name.chars().any(char::is_control)
    {
        return Err(ApiError::invalid_field(
            "invalid_name",
            "name",
            format!("must be 1 to {MAX_DESK_NAME} printable characters"),
        ));
    }
    vault
        .create_desk(&caller, &slug, name)
        .await
        .map_err(admin_error)?;
    Ok(HttpResponse::Created().json(json!({ "slug": slug.as_str(), "name": name })))
}

/// Sets the members of a desk (replacing the previous set).
#[put("/admin/desks/{slug}/members")]
pub async fn set_desk_members(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    vault: web::Data<Vault>,
    limits: web::Data<RequestLimits>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticated(&request, &vault).await?;
    let body: MembersRequest = read_json(&request, payload, &limits).await?;
    if body.members.len() > MAX_MEMBERS {
        return Err(ApiError::invalid_field(
            "too_many",
            "members",
            format!("at most {MAX_MEMBERS}"),
        ));
    }
    let members = body
        .members
        .iter()
        .map(|member| {
            let role = DeskRole::parse(&member.role).ok_or_else(|| {
                ApiError::invalid_field(
                    "unknown_value",
                    "members.role",
                    "must be coordinator or member",
                )
            })?;
            Ok((username("members.username", &member.username)?, role))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    vault
        .set_desk_members(&caller, &path.into_inner(), &members)
        .await
        .map_err(admin_error)?;
    Ok(HttpResponse::NoContent().finish())
}

/// The audit log, oldest first, paged by sequence number.
#[get("/admin/audit")]
pub async fn audit_log(
    request: HttpRequest,
    query: web::Query<AuditParameters>,
    vault: web::Data<Vault>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticated(&request, &vault).await?;
    let after = query.after.unwrap_or(0).max(0);
    let limit = query.limit.unwrap_or(100);
    if !(1..=crate::services::admin::MAX_AUDIT_PAGE).contains(&limit) {
        return Err(ApiError::invalid_field(
            "invalid_limit",
            "limit",
            "must be 1 to 500",
        ));
    }
    let events = vault
        .audit_log(&caller, after, limit)
        .await
        .map_err(admin_error)?;
    let next = (events.len() as i64 == limit)
        .then(|| events.last().map(|event| event.sequence))
        .flatten();
    let events: Vec<_> = events
        .into_iter()
        .map(|event| {
            json!({
                "sequence": event.sequence,
                "occurred_at": rfc3339(event.occurred_at),
                "actor": event.actor,
                "action": event.action,
                "target": event.target,
                "outcome": event.outcome,
                "hash": crate::services::hex(&event.hash),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "events": events, "next": next })))
}
