//! Reports: the performance report of a range in JSON, CSV, Markdown or HTML.

use super::AppState;
use super::costs::range_param;
use super::errors::ApiError;
use crate::analytics::performance::{Filter, PerformanceReport, performance_report};
use crate::analytics::render::{Format, render};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

/// Query of `GET /api/v1/reports/performance`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ReportQuery {
    /// `24h` (default), `7d`, `30d` (any span ending now), or `FROM..TO`.
    range: Option<String>,
    controller: Option<String>,
    /// Full job name.
    job: Option<String>,
    label: Option<String>,
    /// `json` (default), `csv`, `md` or `html`.
    format: Option<String>,
}

/// Builds, success and error rates, demand, queue wait and duration (mean, p50, p95),
/// scaling events, cost efficiency, trends against the range before, regressions, and
/// recommendations.
#[utoipa::path(get, path = "/api/v1/reports/performance", tag = "reports", params(ReportQuery),
    responses((status = 200, body = PerformanceReport), (status = 400, body = super::errors::ErrorBody)))]
pub async fn performance(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = web::Query::<ReportQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::invalid("query", e))?
        .into_inner();
    let range = range_param(q.range.as_deref())?;
    let format = Format::parse(q.format.as_deref().unwrap_or("json"))
        .map_err(|e| ApiError::invalid("format", e))?;
    let filter = Filter {
        controller: q.controller,
        job: q.job,
        label: q.label,
    };
    let report = performance_report(&state.store, &state.settings, range, filter).await?;
    Ok(HttpResponse::Ok()
        .content_type(format.content_type())
        .body(render(&report, format)))
}
