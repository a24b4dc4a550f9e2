//! The pipeline API's build reports (JWT): what a build used, and the analysis of a
//! build against its job's history.

use super::AppState;
use super::auth::require_scope;
use super::errors::ApiError;
use super::profiles::build_path;
use crate::domain::Timestamp;
use crate::profiles::analysis::{Analysis, analyse};
use crate::store::StoredPerformance;
use crate::tokens::Scope;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

/// The answer to a performance report.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PerformanceReply {
    pub controller: String,
    pub job: String,
    pub number: u64,
    /// Whether the webhooks have told of this build yet (the report is kept either way).
    pub build_known: bool,
    pub performance: StoredPerformance,
}

/// A build's analysis with what it was made from.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BuildAnalysis {
    pub controller: String,
    pub job: String,
    pub number: u64,
    #[serde(flatten)]
    pub analysis: Analysis,
    #[schema(value_type = Option<Object>)]
    pub build: Option<crate::domain::BuildRecord>,
    pub performance: Option<StoredPerformance>,
}

/// Largest performance report accepted: its cgroup files and stages are small.
const PERFORMANCE_BODY_LIMIT: usize = 256 * 1024;

/// Records what a build used: its container's cgroup v2 files (`cpu.stat`, `memory.peak`,
/// `memory.events`) or the numbers from them, its requests and stage timings. A second
/// report of the same build replaces the first.
#[utoipa::path(post, path = "/api/v1/builds/{controller}/{job}/{number}/performance", tag = "profiles",
    params(("controller" = String, Path, description = "Controller name"),
           ("job" = String, Path, description = "Job full name; folder separators as `/` or `%2F`"),
           ("number" = u64, Path, description = "Build number")),
    security(("bearer" = ["builds:write"])),
    request_body(content = Object, content_type = "application/json",
        description = "{type, elapsed_ms, cgroup: {\"cpu.stat\", \"memory.peak\", \"memory.events\"} | usage: {cpu_usage_usec, memory_peak_bytes, oom_kills}, requests?, limits?, profile?, stages?: [{name, duration_ms}]}"),
    responses((status = 201, body = PerformanceReply), (status = 400, body = super::errors::ErrorBody),
              (status = 401, body = super::errors::ErrorBody), (status = 403, body = super::errors::ErrorBody),
              (status = 413, body = super::errors::ErrorBody)))]
pub async fn record_performance(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_scope(&req, &state.tokens, Scope::BuildsWrite)?;
    super::webhooks::require_json(&req)?;
    state.disk.check()?;
    // Authenticated first: the body is read only for a token holder, within the limit.
    let body = super::webhooks::read_body(
        &req,
        payload,
        PERFORMANCE_BODY_LIMIT,
        state.settings.server.body_timeout,
    )
    .await?;
    let (controller, job, number) = build_path(&req)?;
    let report = crate::ingest::performance::parse(&body)?;
    let now = Timestamp::now();
    state
        .store
        .upsert_performance(&controller, &job, number, &report, now)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "storing a performance report failed");
            if e.is_disk_full() {
                ApiError::InsufficientStorage(
                    "the store's disk is full: the report was not stored".into(),
                )
            } else {
                ApiError::Unavailable("the report could not be stored".into())
            }
        })?;
    let build_known = state
        .store
        .get_build(&controller, &job, number)
        .await?
        .is_some();
    Ok(HttpResponse::Created().json(PerformanceReply {
        controller: controller.to_string(),
        job: job.to_string(),
        number,
        build_known,
        performance: StoredPerformance {
            recorded_at: now,
            report,
        },
    }))
}

/// A build's performance score (0-100) and what to change.
#[utoipa::path(get, path = "/api/v1/builds/{controller}/{job}/{number}/analysis", tag = "profiles",
    params(("controller" = String, Path, description = "Controller name"),
           ("job" = String, Path, description = "Job full name; folder separators as `/` or `%2F`"),
           ("number" = u64, Path, description = "Build number")),
    security(("bearer" = ["reports:read"])),
    responses((status = 200, body = BuildAnalysis), (status = 400, body = super::errors::ErrorBody),
              (status = 401, body = super::errors::ErrorBody), (status = 403, body = super::errors::ErrorBody),
              (status = 404, body = super::errors::ErrorBody)))]
pub async fn build_analysis(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_scope(&req, &state.tokens, Scope::ReportsRead)?;
    let (controller, job, number) = build_path(&req)?;
    let build = state.store.get_build(&controller, &job, number).await?;
    let perf = state
        .store
        .get_performance(&controller, &job, number)
        .await?;
    if build.is_none() && perf.is_none() {
        return Err(ApiError::NotFound(format!(
            "no build {job} #{number} on controller {controller}"
        )));
    }
    let a = &state.settings.build_optimization.analysis;
    let earlier = state
        .store
        .earlier_durations(&controller, &job, number, a.history)
        .await?;
    let analysis = analyse(
        build.as_ref(),
        perf.as_ref().map(|p| &p.report),
        &earlier,
        a,
        &state.settings.profiles.catalog(),
    );
    Ok(HttpResponse::Ok().json(BuildAnalysis {
        controller: controller.to_string(),
        job: job.to_string(),
        number,
        analysis,
        build,
        performance: perf,
    }))
}
