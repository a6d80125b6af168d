//! `ApiError`: what a client sees when something goes wrong. Every error has a stable
//! snake_case code, a sentence for a person, and, for validation, the fields at fault
//! (`{"error", "message", "fields"}`). A 500 is opaque to the client; its cause chain goes to
//! the log, where it carries no secrets and no content (errors below never hold either).

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// An error at the HTTP edge.
#[derive(thiserror::Error)]
pub enum ApiError {
    /// 400: the request cannot be read at all (malformed JSON, bad header).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// 401: no valid session, or a failed login.
    #[error("{message}")]
    Unauthorized { code: &'static str, message: String },
    /// 403: authenticated, but this request is refused (never used to hide a case: that is 404).
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// 404
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// 405: the address is a route, but not for this method; `Allow` lists the methods it takes.
    #[error("This address does not take that method. It takes: {allow}.")]
    MethodNotAllowed { allow: &'static str },
    /// 408: the client took too long to send its body.
    #[error("The request body arrived too slowly. Please try again.")]
    BodyTimeout,
    /// 413
    #[error("The request body is larger than the limit of {limit} bytes.")]
    PayloadTooLarge { limit: usize },
    /// 415
    #[error("{message}")]
    UnsupportedMediaType { message: String },
    /// 422: readable, but some fields are wrong; `fields` names them.
    #[error("{message}")]
    Unprocessable {
        code: &'static str,
        message: String,
        fields: BTreeMap<String, String>,
    },
    /// 503: temporarily overloaded or the database is unreachable; retry later.
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },
    /// 503: the database is unreachable or busy for now; retry later. The log gets the cause.
    #[error("The database is not answering right now. Please try again in a few seconds.")]
    DatabaseUnavailable(#[source] anyhow::Error),
    /// 500: our fault. The client learns nothing more; the log gets the cause chain.
    #[error("Something went wrong on our side and nothing was changed. Please try again.")]
    Internal(#[source] anyhow::Error),
}

impl std::fmt::Debug for ApiError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.log_detail())
    }
}

/// Headers on every response (`startup::security_headers`): nothing is cached, framed, sniffed
/// or referred. Names in lower case, as `HeaderName::from_static` wants them.
pub const SECURITY_HEADERS: [(&str, &str); 7] = [
    ("cache-control", "no-store"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    // Browsers heed it only over HTTPS (behind the TLS proxy), where it keeps them there.
    ("strict-transport-security", "max-age=31536000"),
    (
        "permissions-policy",
        "camera=(), microphone=(), geolocation=()",
    ),
];

/// The JSON body of every error. It is also the `ApiError` schema of `/api/v1/openapi.json`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ApiError)]
pub struct ErrorBody<'a> {
    /// The stable snake_case code, e.g. `case_not_found`.
    #[schema(example = "case_not_found")]
    error: &'a str,
    /// A sentence for a person; it never repeats what the client sent.
    message: String,
    /// Each field at fault (dotted path) and what is wrong with it; an empty object when the
    /// error is not about a field. Always present (DESIGN §5), so a client reads one shape.
    fields: BTreeMap<String, String>,
}

impl ApiError {
    /// Wraps an unexpected failure as an opaque 500, or as a 503 with `Retry-After` when its
    /// cause is a database that is only unavailable for now (see
    /// [`crate::storage::StoreError::is_transient`]): a phone then retries instead of giving up.
    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        let error = error.into();
        let transient = error.chain().any(|cause| {
            cause
                .downcast_ref::<crate::storage::StoreError>()
                .is_some_and(crate::storage::StoreError::is_transient)
        });
        if transient {
            Self::DatabaseUnavailable(error)
        } else {
            Self::Internal(error)
        }
    }

    /// A 422 naming one field.
    pub fn invalid_field(code: &'static str, field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::Unprocessable {
            code,
            message: format!("The field `{field}` is invalid: {message}"),
            fields: BTreeMap::from([(field.to_owned(), message)]),
        }
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Unauthorized { code, .. }
            | Self::Forbidden { code, .. }
            | Self::NotFound { code, .. }
            | Self::Unprocessable { code, .. }
            | Self::Unavailable { code, .. } => code,
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::BodyTimeout => "body_timeout",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType { .. } => "unsupported_media_type",
            Self::DatabaseUnavailable(_) => "database_unavailable",
            Self::Internal(_) => "internal_error",
        }
    }

    /// What the log may say about this error: the code, plus the cause chain of a 500.
    pub fn log_detail(&self) -> String {
        match self {
            Self::Internal(cause) => format!("internal_error: {cause:#}"),
            Self::DatabaseUnavailable(cause) => format!("database_unavailable: {cause:#}"),
            other => other.code().to_owned(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable { .. } | Self::DatabaseUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let fields = match self {
            Self::Unprocessable { fields, .. } => fields.clone(),
            _ => BTreeMap::new(),
        };
        let mut response = HttpResponse::build(self.status_code());
        if matches!(
            self,
            Self::Unavailable { .. } | Self::DatabaseUnavailable(_)
        ) {
            response.insert_header((header::RETRY_AFTER, "5"));
        }
        if let Self::MethodNotAllowed { allow } = self {
            response.insert_header((header::ALLOW, *allow));
        }
        response.json(ErrorBody {
            error: self.code(),
            message: self.to_string(),
            fields,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StoreError;

    #[test]
    fn a_database_away_for_now_is_503_with_retry_after_and_anything_else_500() {
        let away = [
            StoreError::Database(sqlx::Error::PoolTimedOut),
            StoreError::Database(sqlx::Error::PoolClosed),
            StoreError::Database(sqlx::Error::Io(std::io::ErrorKind::BrokenPipe.into())),
        ];
        for error in away {
            let wrapped = anyhow::Error::new(error).context("could not file the report");
            let api = ApiError::internal(wrapped);
            assert_eq!(api.status_code(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(api.code(), "database_unavailable");
            let response = api.error_response();
            assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "5");
            assert!(api.log_detail().contains("could not file the report"));
        }
        let ours = [
            ApiError::internal(StoreError::Conflict("username")),
            ApiError::internal(StoreError::Database(sqlx::Error::RowNotFound)),
            ApiError::internal(anyhow::anyhow!("a bug")),
        ];
        for api in ours {
            assert_eq!(api.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(api.code(), "internal_error");
        }
    }
}
