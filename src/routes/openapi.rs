//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 description of every route (issue 3, item 10).
//!
//! Only the list of handlers and the prose are written by hand: each operation comes from the
//! handler's own `#[utoipa::path]` (whose method and path `utoipa` reads from the actix attribute
//! beside it), and each schema is derived from the type the handler reads or writes. The
//! integration test `tests/api/openapi.rs` fails when a route is served but missing here.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use actix_web::{HttpResponse, get};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

use super::accounts::SESSION_COOKIE;
use crate::error::ErrorBody;

/// The name of the `Authorization: Bearer <token>` security scheme. Handlers cite it in
/// `security(…)`; the integration test checks that the names match.
const SESSION_TOKEN: &str = "session_token";
/// The name of the session-cookie security scheme, cited the same way.
const SESSION_COOKIE_SCHEME: &str = "session_cookie";

/// The whole document. Routes outside `/api/v1` are listed here; the others in [`ApiV1`], nested
/// under the same prefix as the `web::scope` in [`super::configure`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "incident-vault",
        description = "A sealed intake for reprisal reports. Every error has the body \
                       `{\"error\", \"message\", \"fields\"}` (the `ApiError` schema), and \
                       each response lists the `error` codes it can carry. A JSON body of the \
                       wrong shape is a 422 `missing_field`, `unknown_field`, `invalid_type`, \
                       `unknown_value` or `duplicate_field` whose `fields` names the dotted \
                       path; objects are objects (an array of their values is refused). A case the caller \
                       may not see is a 404, never a 403. A route asked \
                       with a method it does not take is a 405 `method_not_allowed` whose \
                       `Allow` header lists the methods it takes.",
    ),
    paths(super::health::healthz, super::health::readyz),
    nest((path = "/api/v1", api = ApiV1)),
    components(schemas(ErrorBody)),
    modifiers(&SessionSchemes, &DatabaseUnavailable, &ErrorBodies),
    tags(
        (name = "health", description = "Liveness and readiness."),
        (name = "intake", description = "What a reporter's phone needs, and filing a report."),
        (name = "accounts", description = "Enrolment, login, sessions and recovery."),
        (name = "cases", description = "The triage list, reading a case, and grants."),
        (name = "admin", description = "Accounts, desks and the audit log."),
        (name = "openapi", description = "This document."),
    ),
)]
pub struct ApiDoc;

/// Every route under `/api/v1`, by handler.
#[derive(OpenApi)]
#[openapi(paths(
    openapi_document,
    super::intake::intake_parameters,
    super::reports::file_report,
    super::accounts::enrol,
    super::accounts::confirm_enrolment,
    super::accounts::login,
    super::accounts::logout,
    super::accounts::step_up,
    super::accounts::change_password,
    super::accounts::recover,
    super::cases::list_cases,
    super::cases::read_case,
    super::cases::grant_case,
    super::cases::revoke_grant,
    super::cases::grant_desk_cases,
    super::admin::invite,
    super::admin::list_accounts,
    super::admin::change_account,
    super::admin::list_desks,
    super::admin::create_desk,
    super::admin::set_desk_members,
    super::admin::audit_log,
))]
struct ApiV1;

/// Built once: the document depends on nothing but the code.
static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(ApiDoc::openapi);

/// A route of the document as a matcher: its path segments (`None` for a `{parameter}`, which
/// matches any one non-empty segment, as actix's does) and the methods it answers.
struct RouteMethods {
    segments: Vec<Option<String>>,
    allow: String,
}

/// Every documented route with its methods, HEAD included where it is answered as GET.
static ROUTE_METHODS: LazyLock<Vec<RouteMethods>> = LazyLock::new(|| {
    DOCUMENT
        .paths
        .paths
        .iter()
        .map(|(template, item)| {
            let mut methods = Vec::new();
            for (name, operation) in [
                ("GET", &item.get),
                ("POST", &item.post),
                ("PUT", &item.put),
                ("PATCH", &item.patch),
                ("DELETE", &item.delete),
            ] {
                if operation.is_some() {
                    methods.push(name);
                    if name == "GET" && super::HEAD_ROUTES.contains(&template.as_str()) {
                        methods.push("HEAD");
                    }
                }
            }
            RouteMethods {
                segments: template
                    .split('/')
                    .map(|segment| {
                        (!(segment.starts_with('{') && segment.ends_with('}')))
                            .then(|| segment.to_owned())
                    })
                    .collect(),
                allow: methods.join(", "),
            }
        })
        .collect()
});

/// The `Allow` list of the route at `path` (e.g. `GET, HEAD`), or `None` where no route is: a
/// request that reaches the default service with a method the route does not take is told
/// which ones it does (RFC 9110 §15.5.6) instead of that nothing is there.
pub(crate) fn allowed_methods(path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.split('/').collect();
    ROUTE_METHODS
        .iter()
        .find(|route| {
            route.segments.len() == segments.len()
                && route
                    .segments
                    .iter()
                    .zip(&segments)
                    .all(|(expected, actual)| match expected {
                        Some(literal) => literal == actual,
                        None => !actual.is_empty(),
                    })
        })
        .map(|route| route.allow.as_str())
}

/// This document.
#[utoipa::path(
    tag = "openapi",
    responses((
        status = 200,
        description = "The OpenAPI 3.1 description of every route.",
        content_type = "application/json",
        body = serde_json::Value,
    )),
)]
#[get("/openapi.json")]
pub async fn openapi_document() -> HttpResponse {
    HttpResponse::Ok().json(&*DOCUMENT)
}

/// Declares the two ways a reviewer's session travels (issue 3, item 4).
struct SessionSchemes;

impl Modify for SessionSchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SESSION_TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The `token` from `POST /api/v1/auth/login`, for API clients.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            SESSION_COOKIE_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                SESSION_COOKIE,
                "The HttpOnly cookie set by login, for browsers. A state-changing request \
                 authenticated by it must carry an `Origin` of this site, or it gets a 403 \
                 `cross_origin_request`.",
            ))),
        );
    }
}

/// Gives every 4xx and 5xx response the `ApiError` body: every error the service sends goes
/// through `ApiError::error_response` (the default 404 and bad query strings too), so the
/// handlers' attributes only say which codes a response can carry.
struct ErrorBodies;

impl Modify for ErrorBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in operations(item) {
                for (status, response) in &mut operation.responses.responses {
                    if let (true, RefOr::T(response)) = (status.as_str() >= "400", response) {
                        response.content.insert(
                            "application/json".to_owned(),
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                                .build(),
                        );
                    }
                }
            }
        }
    }
}

/// Adds `database_unavailable` to the 503 of every operation that can give the opaque 500 (any
/// route touching the database), or gives it that 503: the route's own 503 (`busy`,
/// `intake_saturated`) keeps its text and gains this one's, so neither code goes undocumented.
struct DatabaseUnavailable;

/// What [`DatabaseUnavailable`] adds to a 503: the database's own refusal, and the request
/// deadline that ends a wait the database does not end (`startup::answer_within`).
const DATABASE_UNAVAILABLE: &str = "`database_unavailable`: the database is unreachable, \
     restarting or busy past its timeout; nothing was changed. Retry after `Retry-After` seconds. \
     Or `timed_out`: the request did not finish within `server.request_timeout_seconds` (a \
     stalled database); a write either landed whole or not at all, and a report sent again with \
     the same `Idempotency-Key` is filed once.";

impl Modify for DatabaseUnavailable {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in operations(item) {
                let responses = &mut operation.responses.responses;
                if !responses.contains_key("500") {
                    continue;
                }
                match responses.get_mut("503") {
                    Some(RefOr::T(busy)) => {
                        busy.description =
                            format!("{} Or {DATABASE_UNAVAILABLE}", busy.description);
                    }
                    Some(RefOr::Ref(_)) => {}
                    None => {
                        let response = ResponseBuilder::new().description(DATABASE_UNAVAILABLE);
                        responses.insert("503".to_owned(), response.build().into());
                    }
                }
            }
        }
    }
}

/// Every operation of a path.
fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

/// Error responses by status; [`ErrorBodies`] gives them their body.
fn responses(list: &[(&str, &str)]) -> BTreeMap<String, RefOr<Response>> {
    list.iter()
        .map(|(status, description)| {
            let response = ResponseBuilder::new().description(*description).build();
            ((*status).to_owned(), response.into())
        })
        .collect()
}

/// What reading a JSON body can fail with (`super::body::read_json`). Its 422s (a body of the
/// wrong shape) are listed by each handler, together with its own. A handler that adds codes to
/// one of these statuses lists this set first, so that its own entry replaces the set's.
pub struct JsonBodyErrors;

impl IntoResponses for JsonBodyErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses(&[
            (
                "400",
                "`malformed_json`: the body is not JSON; `body_unreadable`.",
            ),
            ("408", "`body_timeout`: the body arrived too slowly."),
            (
                "413",
                "`payload_too_large`: the body is over the limit that `GET /api/v1/intake` \
                 publishes.",
            ),
            (
                "415",
                "`unsupported_media_type`: the body is not `application/json`, is sent with two \
                 different `Content-Type`s, or with a `Content-Encoding`.",
            ),
        ])
    }
}

/// What every route that needs a session can fail with.
pub struct SessionErrors;

impl IntoResponses for SessionErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses(&[(
            "401",
            "`no_session`: no session, or one that is unknown, expired or ended.",
        )])
    }
}

/// The opaque 500 that any route touching the database or the crypto can give. The 503 such a
/// route gives while the database is away is added by [`DatabaseUnavailable`]: a "503" entry
/// here would replace the route's own 503 (`busy`, `intake_saturated`) in the merged document.
pub struct InternalError;

impl IntoResponses for InternalError {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses(&[(
            "500",
            "`internal_error`: our fault; nothing was changed. The client learns nothing more.",
        )])
    }
}
