//! Enrolment, login and logout (DESIGN §5, "Enrolment and login, the shapes that clients rely on").

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, post, web};
use age::secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::RequestLimits;
use super::body::read_json;
use crate::domain::password::Password;
use crate::domain::username::Username;
use crate::error::ApiError;
use crate::services::Vault;
use crate::services::accounts::{
    AccountError, AuthenticatedReviewer, NewSession, SESSION_ABSOLUTE_SECONDS,
};

/// The session cookie: `__Host-` pins it to this origin, over HTTPS, for every path.
pub const SESSION_COOKIE: &str = "__Host-iv_session";

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EnrolRequest {
    /// The setup code, or an invitation token from `POST /api/v1/admin/reviewers`.
    #[schema(value_type = String, format = Password)]
    token: SecretString,
    username: String,
    /// At least 12 characters, and not a common password.
    #[schema(value_type = String, format = Password)]
    password: SecretString,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ConfirmRequest {
    #[schema(value_type = String, format = Password)]
    token: SecretString,
    /// The first code from the authenticator app.
    #[schema(value_type = String, format = Password)]
    totp: SecretString,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct StepUpRequest {
    #[schema(value_type = String, format = Password)]
    password: SecretString,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PasswordChangeRequest {
    #[schema(value_type = String, format = Password)]
    current_password: SecretString,
    #[schema(value_type = String, format = Password)]
    new_password: SecretString,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RecoverRequest {
    username: String,
    #[schema(value_type = String, format = Password)]
    recovery_code: SecretString,
    #[schema(value_type = String, format = Password)]
    totp: SecretString,
    #[schema(value_type = String, format = Password)]
    new_password: SecretString,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    username: String,
    #[schema(value_type = String, format = Password)]
    password: SecretString,
    #[schema(value_type = String, format = Password)]
    totp: SecretString,
}

/// The answer to an enrolment: both values are shown once.
#[derive(Serialize, ToSchema)]
struct EnrolmentStarted<'a> {
    /// An `otpauth://` URI for the authenticator app.
    totp_uri: &'a str,
    /// Replaces a forgotten password once; keep it offline.
    recovery_code: &'a str,
}

/// A new session. The same token is also set as the session cookie.
#[derive(Serialize, ToSchema)]
struct SessionStarted<'a> {
    /// Send it as `Authorization: Bearer <token>`.
    token: &'a str,
    /// When the session ends at the latest, RFC 3339.
    expires_at: Option<String>,
    /// Only after a recovery: the new recovery code, shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_code: Option<&'a str>,
}

pub(super) fn account_error(error: AccountError) -> ApiError {
    match error {
        AccountError::InvalidToken => ApiError::invalid_field(
            "invalid_token",
            "token",
            "unknown, spent or expired; ask an admin for a new invitation (for the first \
             account, the operator runs `incident-vault setup-code`)",
        ),
        AccountError::UsernameTaken => {
            ApiError::invalid_field("username_taken", "username", "is taken; choose another")
        }
        AccountError::UsernameMismatch => ApiError::invalid_field(
            "username_mismatch",
            "username",
            "must be the username the invitation was made for",
        ),
        AccountError::WrongPassword => ApiError::invalid_field(
            "wrong_password",
            "password",
            "is wrong, or the account is locked for a while after repeated failures",
        ),
        AccountError::InvalidTotp => ApiError::invalid_field(
            "invalid_totp",
            "totp",
            "is wrong; check the time on your phone and try the next code",
        ),
        AccountError::LoginFailed => ApiError::Unauthorized {
            code: "login_failed",
            message:
                "The username, password or code is wrong, or the account is locked for a while."
                    .into(),
        },
        AccountError::NoSession => ApiError::Unauthorized {
            code: "no_session",
            message: "Log in first; the session is unknown, expired or ended.".into(),
        },
        AccountError::Saturated => ApiError::Unavailable {
            code: "busy",
            message: "Too many logins are being checked right now. Please retry shortly.".into(),
        },
        AccountError::Internal(cause) => ApiError::internal(cause),
    }
}

/// Redeems a setup code or invitation with the reviewer's own username and password.
#[utoipa::path(
    tag = "accounts",
    request_body = EnrolRequest,
    responses(
        (
            status = 200, description = "Enrolled; confirm with a first TOTP code.",
            body = EnrolmentStarted,
        ),
        (status = 422, description = "`invalid_token`, `invalid_username`, `weak_password`, \
            `username_taken`, `username_mismatch`, or a body of the wrong shape."),
        (status = 503, description = "`busy`: too many key derivations at once; retry shortly."),
        super::openapi::JsonBodyErrors,
        super::openapi::InternalError,
    ),
)]
#[post("/enrol")]
pub async fn enrol(
    request: HttpRequest,
    payload: web::Payload,
    vault: web::Data<Vault>,
    limits: web::Data<RequestLimits>,
) -> Result<HttpResponse, ApiError> {
    let body: EnrolRequest = read_json(&request, payload, &limits).await?;
    let username = Username::parse(&body.username).map_err(|error| {
        ApiError::invalid_field("invalid_username", "username", error.to_string())
    })?;
    let password = Password::parse(body.password.expose_secret(), username.as_str())
        .map_err(|error| ApiError::invalid_field("weak_password", "password", error.to_string()))?;
    let started = vault
        .enrol(body.token.expose_secret(), username, password)
        .await
        .map_err(account_error)?;
    Ok(HttpResponse::Ok().json(EnrolmentStarted {
        totp_uri: started.totp_uri.expose_secret(),
        recovery_code: started.recovery_code.expose_secret(),
    }))
}

/// Confirms enrolment with a first TOTP code: the account becomes active.
#[utoipa::path(
    tag = "accounts",
    request_body = ConfirmRequest,
    responses(
        (status = 204, description = "The account is active."),
        (status = 422, description = "`invalid_token`, `invalid_totp`, or a body of the wrong \
            shape."),
        (status = 503, description = "`busy`: retry shortly."),
        super::openapi::JsonBodyErrors,
        super::openapi::InternalError,
    ),
)]
#[post("/enrol/confirm")]
pub async fn confirm_enrolment(
    request: HttpRequest,
    payload: web::Payload,
    vault: web::Data<Vault>,
    limits: web::Data<RequestLimits>,
) -> Result<HttpResponse, ApiError> {
    let body: ConfirmRequest = read_json(&request, payload, &limits).await?;
    vault
        .confirm_enrolment(body.token.expose_secret(), body.totp.expose_secret())
        .await
        .map_err(account_error)?;
    Ok(HttpResponse::NoContent().finish())
}

/// Password + TOTP → a session token (JSON for API clients, and an HttpOnly cookie for browsers).
#[utoipa::path(
    tag = "accounts",
    request_body = LoginRequest,
    responses(
        (
            status = 200, description = "A session.", body = SessionStarted,
            headers((
                "Set-Cookie" = String,
                description = "The session cookie, `HttpOnly; Secure; SameSite=Strict`."
            )),
        ),
        (status = 401, description = "`login_failed`: one generic answer for a wrong username, \
            password or code, or a locked account."),
        (status = 422, description = "A body of the wrong shape."),
        (status = 503, description = "`busy`: too many logins are being checked; retry shortly."),
        super::openapi::JsonBodyErrors,
        super::openapi::InternalError,
    ),
)]
#[post("/auth/login")]
pub async fn login(
    request: HttpRequest,
    payload: web::Payload,
    vault: web::Data<Vault>,
    limits: web::Data<RequestLimits>,
) -> Result<HttpResponse, ApiError> {
    let body: LoginRequest = read_json(&request, payload, &limits).await?;
    let session = vault
        .login(&body.username, body.password, body.totp)
        .await
        .map_err(account_error)?;
    Ok(session_response(&session, None))
}

/// The answer that starts a session: the token in JSON for API clients, and the same token in an
/// HttpOnly cookie for browsers.
fn session_response(session: &NewSession, recovery_code: Option<&SecretString>) -> HttpResponse {
    let cookie = Cookie::build(SESSION_COOKIE, session.token.expose_secret().to_owned())
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::seconds(
            SESSION_ABSOLUTE_SECONDS,
        ))
        .finish();
    let body = SessionStarted {
        token: session.token.expose_secret(),
        expires_at: time::OffsetDateTime::from_unix_timestamp(session.expires_at)
            .ok()
            .and_then(|moment| {
                moment
                    .format(&time::format_description::well_known::Rfc3339)
                    .ok()
            }),
        recovery_code: recovery_code.map(|code| code.expose_secret()),
    };
    HttpResponse::Ok().cookie(cookie).json(body)
}

fn removed_session_cookie() -> Cookie<'static> {
    let mut removal = Cookie::build(SESSION_COOKIE, "")
        .path("/")
        .secure(true)
        .http_only(true)
        .finish();
    removal.make_removal();
    removal
}

/// The reviewer behind the request's session, with their identity open for this request.
pub async fn authenticated(
    request: &HttpRequest,
    vault: &Vault,
) -> Result<AuthenticatedReviewer, ApiError> {
    let credential =
        session_credential(request)?.ok_or_else(|| account_error(AccountError::NoSession))?;
    vault
        .authenticate(credential.token.expose_secret())
        .await
        .map_err(account_error)
}

/// The password entered again within a session: granting a case needs one in the last 5 minutes.
#[utoipa::path(
    tag = "accounts",
    request_body = StepUpRequest,
    security(("session_token" = []), ("session_cookie" = [])),
    responses(
        (status = 204, description = "Stepped up for the next 5 minutes."),
        (status = 403, description = "`cross_origin_request`."),
        (status = 422, description = "`wrong_password`, or a body of the wrong shape."),
        (status = 503, description = "`busy`: retry shortly."),
        super::openapi::SessionErrors,
        super::openapi::JsonBodyErrors,
        super::openapi::InternalError,
    ),
)]
#[post("/auth/step-up")]
pub async fn step_up(
    request: HttpRequest,
    payload: web::Payload,
    vault: web::Data<Vault>,
    limits: web::Data<RequestLimits>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticated(&request, &vault).await?;
    let body: StepUpRequest = read_json(&request, payload, &limits).await?;
    vault
        .step_up(&caller, body.password)
        .await
        .map_err(account_error)?;
    Ok(HttpResponse::NoContent().finish())
}

/// Changes the caller's password. Every session of the account ends, this one too.
#[utoipa::path(
    tag = "accounts",
    request_body = PasswordChangeRequest,
    security(("session_token" = []), ("session_cookie" = [])),
    responses(
        (status = 204, description = "Changed; every session has ended and the cookie is cleared."),
        (status = 403, description = "`cross_origin_request`."),
        (status = 422, description = "`wrong_password` (`current_password`), `weak_password` \
            (`new_password`), or a body of the wrong shape."),
        (status = 503, description = "`busy`: retry shortly."),
        super::openapi::SessionErrors,
        super::openapi::JsonBodyErrors,
        super::openapi::InternalError,
    ),
)]
#[post("/auth/password")]
pub async fn change_password(
    request: HttpRequest,
    payload: web::Payload,
    vault: web::Data<Vault>,
    limits: web::Data<RequestLimits>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticated(&request, &vault).await?;
    let body: PasswordChangeRequest = read_json(&request, payload, &limits).await?;
    let new_password =
        Password::parse(body.new_password.expose_secret(), &caller.reviewer.username).map_err(
            |error| ApiError::invalid_field("weak_password", "new_password", error.to_string()),
        )?;
    vault
        .change_password(&caller, body.current_password, new_password)
        .await
        .map_err(|error| match error {
            AccountError::WrongPassword => ApiError::invalid_field(
                "wrong_password",
                "current_password",
                "is wrong, or the account is locked for a while after repeated failures",
            ),
            other => account_error(other),
        })?;
    Ok(HttpResponse::NoContent()
        .cookie(removed_session_cookie())
        .finish())
}

/// The recovery code replaces a forgotten password, once; the TOTP code is still needed. Gives a
/// session and a new recovery code.
#[utoipa::path(
    tag = "accounts",
    request_body = RecoverRequest,
    responses(
        (
            status = 200, description = "A session, and a new recovery code.",
            body = SessionStarted,
            headers(("Set-Cookie" = String, description = "The session cookie.")),
        ),
        (status = 401, description = "`login_failed`: one generic answer for every failure."),
        (status = 422, description = "`weak_password` (`new_password`), or a body of the \
            wrong shape."),
        (status = 503, description = "`busy`: retry shortly."),
        super::openapi::JsonBodyErrors,
        super::openapi::InternalError,
    ),
)]
#[post("/auth/recover")]
pub async fn recover(
    request: HttpRequest,
    payload: web::Payload,
    vault: web::Data<Vault>,
    limits: web::Data<RequestLimits>,
) -> Result<HttpResponse, ApiError> {
    let body: RecoverRequest = read_json(&request, payload, &limits).await?;
    let new_password =
        Password::parse(body.new_password.expose_secret(), &body.username).map_err(|error| {
            ApiError::invalid_field("weak_password", "new_password", error.to_string())
        })?;
    let recovered = vault
        .recover(&body.username, body.recovery_code, body.totp, new_password)
        .await
        .map_err(account_error)?;
    Ok(session_response(
        &recovered.session,
        Some(&recovered.recovery_code),
    ))
}

/// Ends the caller's session and clears the cookie.
#[utoipa::path(
    tag = "accounts",
    security((), ("session_token" = []), ("session_cookie" = [])),
    responses(
        (status = 204, description = "The session, if any, has ended; the cookie is cleared."),
        (status = 401, description = "`no_session`: an `Authorization` header that is not \
            `Bearer`."),
        (status = 403, description = "`cross_origin_request`."),
        super::openapi::InternalError,
    ),
)]
#[post("/auth/logout")]
pub async fn logout(
    request: HttpRequest,
    vault: web::Data<Vault>,
) -> Result<HttpResponse, ApiError> {
    if let Some(credential) = session_credential(&request)? {
        vault
            .logout(credential.token.expose_secret())
            .await
            .map_err(account_error)?;
    }
    Ok(HttpResponse::NoContent()
        .cookie(removed_session_cookie())
        .finish())
}

/// A session token from `Authorization: Bearer` or the session cookie.
pub struct SessionCredential {
    pub token: SecretString,
}

/// Reads the session credential. A state-changing request authenticated by cookie must come from
/// this origin (a strict `Origin` check against `Host`), which defeats cross-site request forgery.
pub fn session_credential(request: &HttpRequest) -> Result<Option<SessionCredential>, ApiError> {
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            // The scheme is case-insensitive (RFC 9110 §11.1): `bearer` is as good.
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
            .map(|(_, token)| token)
            .ok_or_else(|| ApiError::Unauthorized {
                code: "no_session",
                message: "Send `Authorization: Bearer <token>`.".into(),
            })?;
        return Ok(Some(SessionCredential {
            token: SecretString::from(token.trim()),
        }));
    }
    let Some(cookie) = request.cookie(SESSION_COOKIE) else {
        return Ok(None);
    };
    let safe_method = matches!(request.method().as_str(), "GET" | "HEAD" | "OPTIONS");
    if !safe_method && !same_origin(request) {
        return Err(ApiError::Forbidden {
            code: "cross_origin_request",
            message: "A cookie-authenticated change must come from this site.".into(),
        });
    }
    Ok(Some(SessionCredential {
        token: SecretString::from(cookie.value()),
    }))
}

fn same_origin(request: &HttpRequest) -> bool {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|value| value.to_str().ok());
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok());
    match (origin, host) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host)),
        _ => false,
    }
}
