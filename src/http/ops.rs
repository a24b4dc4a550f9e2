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

/// The store answers reads and the writer can commit (after a failed write, a small
/// write is tried at each check, so readiness comes back by itself once the store does).
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, body = Health), (status = 503, body = super::errors::ErrorBody)))]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "not ready: the store does not answer reads");
        ApiError::Unavailable("the store does not answer reads".into())
    })?;
    state.store.writer_ready().await.map_err(|e| {
        tracing::warn!(error = %e, "not ready: the store cannot commit writes");
        let why = if e.is_disk_full() {
            "the store cannot commit writes: its disk is full"
        } else {
            "the store cannot commit writes"
        };
        ApiError::Unavailable(why.into())
    })?;
    Ok(HttpResponse::Ok().json(Health { status: "ready" }))
}

/// Prometheus metrics, text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    state.metrics.store_wal_bytes.set(state.store.wal_bytes());
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, content_type = "application/json", body = Object)))]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(super::ApiDoc::openapi())
}
