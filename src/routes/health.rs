//! Liveness and readiness.

use std::time::Duration;

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::services::Vault;

/// The answer of `GET /healthz`.
#[derive(Serialize, ToSchema)]
struct Liveness {
    #[schema(example = "ok")]
    status: &'static str,
}

/// The answer of `GET /readyz`.
#[derive(Serialize, ToSchema)]
struct Readiness {
    #[schema(example = "ready")]
    status: &'static str,
    /// The database backend that answered: `sqlite` or `postgres`.
    #[schema(example = "postgres")]
    database: &'static str,
}

/// Liveness: the process answers. Touches nothing shared, so it stays fast under load.
#[utoipa::path(
    tag = "health",
    responses((status = 200, description = "The process answers.", body = Liveness)),
)]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Liveness { status: "ok" })
}

/// Readiness: the database answers a real query within two seconds.
#[utoipa::path(
    tag = "health",
    responses(
        (status = 200, description = "The database answers.", body = Readiness),
        (status = 503, description = "`database_unavailable`: the database does not answer \
            within two seconds, or holds no instance (empty or not this service's). \
            `Retry-After` is set."),
    ),
)]
#[get("/readyz")]
pub async fn readyz(vault: web::Data<Vault>) -> Result<HttpResponse, ApiError> {
    let check = tokio::time::timeout(Duration::from_secs(2), vault.database_ready()).await;
    match check {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(Readiness {
            status: "ready",
            database: vault.database_backend(),
        })),
        // It answers, but without this service's instance: a swapped, emptied or half-restored
        // database, which calls for another look than a network fault does. The log says so;
        // the anonymous answer does not (a restore under way is nobody else's business).
        Ok(Err(error)) if error.holds_no_instance() => {
            tracing::warn!(
                "readiness check failed: the database answers but holds no instance of this service"
            );
            Err(database_unavailable())
        }
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "readiness check failed");
            Err(database_unavailable())
        }
        Err(_) => {
            tracing::warn!("readiness check timed out");
            Err(database_unavailable())
        }
    }
}

fn database_unavailable() -> ApiError {
    ApiError::Unavailable {
        code: "database_unavailable",
        message: "The database is not ready; the service's log says why.".into(),
    }
}
