//! HTTP resources, one file each: DTO → domain type → service call. No SQL, no crypto here.

mod accounts;
mod admin;
mod body;
mod cases;
mod health;
mod intake;
mod openapi;
mod reports;

use actix_web::{HttpRequest, web};

use crate::error::ApiError;

/// Request limits the routes enforce, from `[limits]`.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    pub json_body_bytes: usize,
    pub body_timeout: std::time::Duration,
    /// The whole request's deadline (`startup::answer_within`), told to phones by `/intake`.
    pub request_timeout: std::time::Duration,
    pub idempotency_ttl_hours: u32,
}

/// The GET routes that anyone may probe and that change nothing: HEAD is answered on them (see
/// `startup::head_as_get`), and their `Allow` lists it.
pub(crate) const HEAD_ROUTES: [&str; 4] = [
    "/healthz",
    "/readyz",
    "/api/v1/intake",
    "/api/v1/openapi.json",
];

/// Mounts every route. Each one must also be listed in `openapi::ApiDoc`: `tests/api/openapi.rs`
/// fails on a route that is served but not documented.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(health::healthz)
        .service(health::readyz)
        .service(
            web::scope("/api/v1")
                .service(openapi::openapi_document)
                .service(intake::intake_parameters)
                .service(reports::file_report)
                .service(accounts::enrol)
                .service(accounts::confirm_enrolment)
                .service(accounts::login)
                .service(accounts::logout)
                .service(accounts::step_up)
                .service(accounts::change_password)
                .service(accounts::recover)
                .service(cases::list_cases)
                .service(cases::read_case)
                .service(cases::grant_case)
                .service(cases::revoke_grant)
                .service(cases::grant_desk_cases)
                .service(admin::invite)
                .service(admin::list_accounts)
                .service(admin::change_account)
                .service(admin::list_desks)
                .service(admin::create_desk)
                .service(admin::set_desk_members)
                .service(admin::audit_log),
        )
        .default_service(web::to(not_found));
}

/// What no route answered: a 405 naming the methods where the address is a route, else a 404.
async fn not_found(request: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    // The path as the router saw it, percent-encoded unreserved characters decoded: the raw
    // `/api/v1/%72eports` is the report route, and a PUT to it is a 405 too.
    if let Some(allow) = openapi::allowed_methods(request.match_info().as_str()) {
        return Err(ApiError::MethodNotAllowed { allow });
    }
    Err(ApiError::NotFound {
        code: "not_found",
        message: "There is nothing at this address.".into(),
    })
}
