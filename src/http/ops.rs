//! Health, readiness, metrics and the OpenAPI document.

use super::AppState;
use super::errors::ApiError;
use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::OpenApi;

/// Health answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// This replica's part: `leader`, `follower` or `single`, its identity, the leader's,
/// and how leadership is held.
#[utoipa::path(get, path = "/api/v1/status", tag = "ops", responses((status = 200, body = crate::leader::Status)))]
pub async fn status(state: actix_web::web::Data<super::AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.leadership.status())
}

/// The store answers queries.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, body = Health), (status = 503, body = super::errors::ErrorBody)))]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state
        .store
        .ping()
        .await
        .map_err(|e| ApiError::Unavailable(format!("the store is not reachable: {e}")))?;
    Ok(HttpResponse::Ok().json(Health { status: "ready" }))
}

/// Prometheus metrics, text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, content_type = "application/json", body = Object)))]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(super::ApiDoc::openapi())
}
