//! Liveness and readiness.

use std::time::Duration;

use actix_web::{HttpResponse, get, web};
use serde_json::json;

use crate::error::ApiError;
use crate::services::Vault;

/// Liveness: the process answers. Touches nothing shared, so it stays fast under load.
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Readiness: the database answers a real query within two seconds.
#[get("/readyz")]
pub async fn readyz(vault: web::Data<Vault>) -> Result<HttpResponse, ApiError> {
    let check = tokio::time::timeout(Duration::from_secs(2), vault.store.health_check()).await;
    match check {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(json!({
            "status": "ready",
            "database": vault.store.backend(),
        }))),
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
        message: "The database does not answer.".into(),
    }
}
