//! `/api/v1/admin/…`: accounts, desks and the audit log (issue 3). Admins only, except the
//! audit log, which auditors read too. Nothing here reveals case content.

use actix_web::{HttpRequest, HttpResponse, get, patch, post, put, web};
use age::secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::RequestLimits;
use super::accounts::authenticated;
use super::body::read_json;
use crate::domain::{AccountStatus, DeskName, DeskRole, DeskSlug, Role, Username};
use crate::error::ApiError;
use crate::services::Vault;
use crate::services::admin::{AccountView, AdminError, DeskView, MemberView, MembershipView};

/// Most desks one invitation may name, and most members one desk may have.
const MAX_DESKS: usize = 50;
const MAX_MEMBERS: usize = 500;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct InviteRequest {
    username: String,
    #[schema(value_type = Role)]
    role: String,
    /// Slugs of the desks the reviewer joins as a member.
    #[serde(default)]
    desks: Vec<String>,
}

/// Give a role, a status, or both.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AccountChangeRequest {
    #[schema(value_type = Option<Role>)]
    role: Option<String>,
    /// `active` or `disabled`; disabling ends every session of the account at once.
    #[schema(value_type = Option<AccountStatus>)]
    status: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewDeskRequest {
    slug: String,
    /// 1 to 100 characters with something visible; no control, invisible (zero-width space, soft
    /// hyphen), direction-changing or unassigned characters. Reporters see it.
    name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct MembersRequest {
    /// The whole new set of members.
    #[serde(deserialize_with = "crate::domain::wire::list_of_objects")]
    members: Vec<MemberRequest>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct MemberRequest {
    username: String,
    #[schema(value_type = DeskRole)]
    role: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AuditParameters {
    /// The `next` of the previous page: events after this sequence number. Read as text, as
    /// `limit` is, so that a bad value is a 422 naming it rather than a query that does not parse.
    #[param(value_type = Option<i64>, minimum = 0)]
    after: Option<String>,
    /// Page size, 1 to 500; 100 by default.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
}

/// A new invitation, shown once.
#[derive(Serialize, ToSchema)]
struct InvitationAnswer<'a> {
    username: &'a str,
    /// The single-use enrolment token for `POST /api/v1/enrol`.
    token: &'a str,
    /// RFC 3339.
    expires_at: Option<String>,
}

/// Every account.
#[derive(Serialize, ToSchema)]
struct AccountList {
    reviewers: Vec<Account>,
}

/// An account as the admin sees it: no secret, no key material.
#[derive(Serialize, ToSchema)]
struct Account {
    username: String,
    #[schema(value_type = Role)]
    role: String,
    #[schema(value_type = AccountStatus)]
    status: String,
    created_on: String,
    desks: Vec<Membership>,
}

/// One desk membership of an account.
#[derive(Serialize, ToSchema)]
struct Membership {
    /// The desk's slug.
    desk: String,
    #[schema(value_type = DeskRole)]
    role: String,
}

/// Every desk.
#[derive(Serialize, ToSchema)]
struct DeskList {
    desks: Vec<Desk>,
}

/// A desk and its members.
#[derive(Serialize, ToSchema)]
struct Desk {
    slug: String,
    name: String,
    members: Vec<DeskMember>,
}

/// A member of a desk.
#[derive(Serialize, ToSchema)]
struct DeskMember {
    username: String,
    #[schema(value_type = DeskRole)]
    role: String,
}

/// A desk just created.
#[derive(Serialize, ToSchema)]
struct NewDesk<'a> {
    slug: &'a str,
    name: &'a str,
}

/// A page of the audit log.
#[derive(Serialize, ToSchema)]
struct AuditPage {
    events: Vec<AuditEvent>,
    /// The `after` of the next page, or null on the last page.
    next: Option<i64>,
}

/// One audit event: no content and no IP address.
#[derive(Serialize, ToSchema)]
struct AuditEvent {
    sequence: i64,
    /// RFC 3339.
    occurred_at: Option<String>,
    /// The acting account's id, or `reporter`, `system`.
    actor: String,
    #[schema(example = "case.read")]
    action: String,
    target: Option<String>,
    #[schema(example = "success")]
    outcome: String,
    /// SHA-256 of this event and the previous event's hash, hex.
    hash: String,
}

// The `From` impls below destructure exhaustively on purpose: a field added to a service view
// must be exposed (and so documented) or skipped here, deliberately.
impl From<AccountView> for Account {
    fn from(view: AccountView) -> Self {
        let AccountView {
            username,
            role,
            status,
            created_on,
            desks,
        } = view;
        Self {
            username,
            role,
            status,
            created_on,
            desks: desks.into_iter().map(Membership::from).collect(),
        }
    }
}

impl From<MembershipView> for Membership {
    fn from(view: MembershipView) -> Self {
        let MembershipView { desk, role } = view;
        Self { desk, role }
    }
}

impl From<DeskView> for Desk {
    fn from(view: DeskView) -> Self {
        let DeskView {
            slug,
            name,
            members,
        } = view;
        Self {
            slug,
            name,
            members: members.into_iter().map(DeskMember::from).collect(),
        }
    }
}

impl From<MemberView> for DeskMember {
    fn from(view: MemberView) -> Self {
        let MemberView { username, role } = view;
        Self { username, role }
    }
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
        AdminError::Internal(cause) => ApiError::internal(cause),
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
#[utoipa::path(
    tag = "admin",
    request_body = InviteRequest,
    security(("session_token" = []), ("session_cookie" = [])),
    responses(
        (status = 201, description = "Invited.", body = InvitationAnswer),
        (status = 403, description = "`forbidden`: this needs the admin role; \
            `cross_origin_request`."),
        (status = 404, description = "`desk_not_found`."),
        (status = 422, description = "`invalid_username`, `unknown_value`, `invalid_desk`, \
            `too_many`, `invalid_field`, or a body of the wrong shape."),
        super::openapi::SessionErrors,
        super::openapi::JsonBodyErrors,
        super::openapi::InternalError,
    ),
)]
#[post("/admin/reviewers")]
pub async fn invite(
    request: HttpRequest,
    payload: web::Payload,
    vault: web::Data<Vault>,
    limits: web::Data<RequestLimits>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticated(&request, &vault).await?;
    // The role before the body: a caller who may not do this learns that first (403), not
    // what is wrong with a body that could never be accepted.
    crate::services::admin::require_admin(&caller).map_err(admin_error)?;
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
    Ok(HttpResponse::Created().json(InvitationAnswer {
        username: name.as_str(),
        token: invitation.token.expose_secret(),
        expires_at: rfc3339(invitation.expires_at),
    }))
}

/// Every account, with its role, status and desks.
#[utoipa::path(
    tag = "admin",
    security(("session_token" = []), ("session_cookie" = [])),
    responses(
        (status = 200, description = "Every account.", body = AccountList),
        (status = 403, description = "`forbidden`: this needs the admin role."),
        super::openapi::SessionErrors,
        super::openapi::InternalError,
    ),
)]
#[get("/admin/reviewers")]
pub async fn list_accounts(
    request: HttpRequest,
    vault: web::Data<Vault>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticated(&request, &vault).await?;
    let accounts = vault.accounts(&caller).await.map_err(admin_error)?;
    Ok(HttpResponse::Ok().json(AccountList {
        reviewers: accounts.into_iter().map(Account::from).collect(),
    }))
}

/// Changes an account's role, or disables or re-enables it.
#[utoipa::path(
    tag = "admin",
    params(("username" = String, Path, description = "The account to change.")),
    request_body = AccountChangeRequest,
    security(("session_token" = []), ("session_cookie" = [])),
    responses(
        (status = 204, description = "Changed."),
        (status = 403, description = "`forbidden`: this needs the admin role; \
            `cross_origin_request`."),
        (status = 404, description = "`account_not_found`."),
        (status = 422, description = "`unknown_value`, `nothing_to_change`, `invalid_field`, or \
            a body of the wrong shape."),
        super::openapi::SessionErrors,
        super::openapi::JsonBodyErrors,
        super::openapi::InternalError,
    ),
)]
#[patch("/admin/reviewers/{username}")]
pub async fn change_account(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    vault: web::Data<Vault>,
    limits: web::Data<RequestLimits>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticated(&request, &vault).await?;
    // The role before the body: a caller who may not do this learns that first (403), not
    // what is wrong with a body that could never be accepted.
    crate::services::admin::require_admin(&caller).map_err(admin_error)?;
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
#[utoipa::path(
    tag = "admin",
    security(("session_token" = []), ("session_cookie" = [])),
    responses(
        (status = 200, description = "Every desk.", body = DeskList),
        (status = 403, description = "`forbidden`: this needs the admin role."),
        super::openapi::SessionErrors,
        super::openapi::InternalError,
    ),
)]
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
    Ok(HttpResponse::Ok().json(DeskList {
        desks: desks.into_iter().map(Desk::from).collect(),
    }))
}

/// Creates a desk.
#[utoipa::path(
    tag = "admin",
    request_body = NewDeskRequest,
    security(("session_token" = []), ("session_cookie" = [])),
    responses(
        (status = 201, description = "Created.", body = NewDesk),
        (status = 403, description = "`forbidden`: this needs the admin role; \
            `cross_origin_request`."),
        (status = 422, description = "`invalid_desk`, `invalid_name`, `invalid_field`, or \
            a body of the wrong shape."),
        super::openapi::SessionErrors,
        super::openapi::JsonBodyErrors,
        super::openapi::InternalError,
    ),
)]
#[post("/admin/desks")]
pub async fn create_desk(
    request: HttpRequest,
    payload: web::Payload,
    vault: web::Data<Vault>,
    limits: web::Data<RequestLimits>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticated(&request, &vault).await?;
    // The role before the body: a caller who may not do this learns that first (403), not
    // what is wrong with a body that could never be accepted.
    crate::services::admin::require_admin(&caller).map_err(admin_error)?;
    let body: NewDeskRequest = read_json(&request, payload, &limits).await?;
    let slug = DeskSlug::parse(&body.slug)
        .map_err(|error| ApiError::invalid_field("invalid_desk", "slug", error.to_string()))?;
    let name = DeskName::parse(&body.name)
        .map_err(|error| ApiError::invalid_field("invalid_name", "name", error.to_string()))?;
    vault
        .create_desk(&caller, &slug, &name)
        .await
        .map_err(admin_error)?;
    Ok(HttpResponse::Created().json(NewDesk {
        slug: slug.as_str(),
        name: name.as_str(),
    }))
}

/// Sets the members of a desk (replacing the previous set).
#[utoipa::path(
    tag = "admin",
    params(("slug" = String, Path, description = "The desk's slug.")),
    request_body = MembersRequest,
    security(("session_token" = []), ("session_cookie" = [])),
    responses(
        (status = 204, description = "The desk has exactly these members now."),
        (status = 403, description = "`forbidden`: this needs the admin role; \
            `cross_origin_request`."),
        (status = 404, description = "`desk_not_found`, `account_not_found`."),
        (status = 422, description = "`too_many`, `unknown_value`, `invalid_username`, \
            `invalid_field`, or a body of the wrong shape."),
        super::openapi::SessionErrors,
        super::openapi::JsonBodyErrors,
        super::openapi::InternalError,
    ),
)]
#[put("/admin/desks/{slug}/members")]
pub async fn set_desk_members(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    vault: web::Data<Vault>,
    limits: web::Data<RequestLimits>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticated(&request, &vault).await?;
    // The role before the body: a caller who may not do this learns that first (403), not
    // what is wrong with a body that could never be accepted.
    crate::services::admin::require_admin(&caller).map_err(admin_error)?;
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
        .enumerate()
        .map(|(index, member)| {
            // Indexed, as the shape errors of the same list are (`members[0].role`).
            let role = DeskRole::parse(&member.role).ok_or_else(|| {
                ApiError::invalid_field(
                    "unknown_value",
                    &format!("members[{index}].role"),
                    "must be coordinator or member",
                )
            })?;
            Ok((
                username(&format!("members[{index}].username"), &member.username)?,
                role,
            ))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    vault
        .set_desk_members(&caller, &path.into_inner(), &members)
        .await
        .map_err(admin_error)?;
    Ok(HttpResponse::NoContent().finish())
}

/// The audit log, oldest first, paged by sequence number.
#[utoipa::path(
    tag = "admin",
    params(AuditParameters),
    security(("session_token" = []), ("session_cookie" = [])),
    responses(
        (status = 200, description = "A page of events.", body = AuditPage),
        (status = 400, description = "`invalid_query`: an unknown or mistyped parameter."),
        (status = 403, description = "`forbidden`: this needs the admin or auditor role."),
        (status = 422, description = "`invalid_limit`."),
        super::openapi::SessionErrors,
        super::openapi::InternalError,
    ),
)]
#[get("/admin/audit")]
pub async fn audit_log(
    request: HttpRequest,
    query: web::Query<AuditParameters>,
    vault: web::Data<Vault>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticated(&request, &vault).await?;
    let after = match query.after.as_deref() {
        None => 0,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|after| *after >= 0)
            .ok_or_else(|| {
                ApiError::invalid_field(
                    "invalid_cursor",
                    "after",
                    "must be a sequence number: the `next` of the previous page, or 0",
                )
            })?,
    };
    let limit = match query.limit.as_deref() {
        None => 100,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|limit| (1..=crate::services::admin::MAX_AUDIT_PAGE).contains(limit))
            .ok_or_else(|| ApiError::invalid_field("invalid_limit", "limit", "must be 1 to 500"))?,
    };
    let (events, more) = vault
        .audit_log(&caller, after, limit)
        .await
        .map_err(admin_error)?;
    let next = more
        .then(|| events.last().map(|event| event.sequence))
        .flatten();
    let events: Vec<_> = events
        .into_iter()
        .map(|event| AuditEvent {
            sequence: event.sequence,
            occurred_at: rfc3339(event.occurred_at),
            actor: event.actor,
            action: event.action,
            target: event.target,
            outcome: event.outcome,
            hash: crate::services::hex(&event.hash),
        })
        .collect();
    Ok(HttpResponse::Ok().json(AuditPage { events, next }))
}
