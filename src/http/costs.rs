//! Costs: what CI cost over a range, grouped, with its trend and alerts.

use super::AppState;
use super::errors::ApiError;
use crate::analytics::Range;
use crate::analytics::costs::{CostReport, GroupBy, cost_report};
use crate::domain::Timestamp;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

/// Query of `GET /api/v1/costs`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct CostQuery {
    /// `24h` (default), `7d`, `30d` (any span ending now), or `FROM..TO` (RFC 3339 or epoch ms).
    range: Option<String>,
    /// `job` (default), `pool`, `controller` or `label`.
    group_by: Option<String>,
    /// Rows of the breakdown, costliest first (default 100, at most 1000); the rest are
    /// summed in one row `(N others)`.
    limit: Option<String>,
}

/// The parsed `range` parameter (default `24h`).
/// The longest range a report, cost answer or export reads: a little over a year.
pub(super) const MAX_READ_DAYS: i64 = 400;
/// The longest history an answer replays (frontier, optimize): a replay costs by the
/// history's length, so an answer over decades would run for minutes.
pub(super) const MAX_REPLAY_DAYS: i64 = 120;

/// `?range=` (or `default`), no longer than `max_days`.
pub(super) fn bounded_range(
    raw: Option<&str>,
    default: &str,
    max_days: i64,
) -> Result<Range, ApiError> {
    let range = Range::parse(raw.unwrap_or(default), Timestamp::now())
        .map_err(|e| ApiError::invalid("range", e))?;
    if range.millis() > max_days * 86_400_000 {
        return Err(ApiError::invalid(
            "range",
            format!("must be at most {max_days} days long"),
        ));
    }
    Ok(range)
}

pub(super) fn range_param(raw: Option<&str>) -> Result<Range, ApiError> {
    bounded_range(raw, "24h", MAX_READ_DAYS)
}

/// Totals by resource (CPU, memory, storage, and the idle part), the breakdown by group
/// (rows add up to the total), the hourly rate, the monthly projection, the trend against
/// the range before, each pool's provisioned agent-hours and efficiency, and alerts.
#[utoipa::path(get, path = "/api/v1/costs", tag = "costs", params(CostQuery),
    responses((status = 200, body = CostReport), (status = 400, body = super::errors::ErrorBody)))]
pub async fn get_costs(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::auth::require_read(&req, &state)?;
    let q = web::Query::<CostQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::invalid("query", e))?
        .into_inner();
    let range = range_param(q.range.as_deref())?;
    let _heavy = state.heavy.admit(&req)?;
    let group_by = GroupBy::parse(q.group_by.as_deref().unwrap_or("job"))
        .map_err(|e| ApiError::invalid("group_by", e))?;
    let limit = super::read::parse_limit(q.limit.as_deref())?;
    let mut report = cost_report(&state.store, &state.settings, range, group_by, true).await?;
    report.keep_top(limit as usize);
    Ok(HttpResponse::Ok().json(report))
}

/// Body of `POST /api/v1/costs/optimize`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptimizeRequest {
    /// Savings sought, percent (above 0, below 100).
    target_savings: f64,
    /// The history replayed (default `30d`).
    #[serde(default)]
    range: Option<String>,
}

/// Replays the recorded history against cheaper pool settings and learned build sizes;
/// answers the gentlest plan reaching the target, or the best found (`reached: false`),
/// with the cost and queue wait before and after and the settings to write. Applies
/// nothing (`jenkins-autopilot cost optimize --apply` writes them). One runs at a time:
/// another request meanwhile gets 503 with Retry-After.
#[utoipa::path(post, path = "/api/v1/costs/optimize", tag = "costs",
    request_body = OptimizeRequest,
    responses((status = 200, body = crate::analytics::optimize::Plan),
              (status = 400, body = super::errors::ErrorBody),
              (status = 503, body = super::errors::ErrorBody)))]
pub async fn optimize(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::auth::require_read(&req, &state)?;
    super::webhooks::require_json(&req)?;
    let body =
        super::webhooks::read_body(&req, payload, 64 * 1024, state.settings.server.body_timeout)
            .await?;
    let req: OptimizeRequest = crate::ingest::parse_json(&body)?;
    if !(req.target_savings > 0.0 && req.target_savings < 100.0) {
        return Err(ApiError::invalid(
            "target_savings",
            "must be above 0 and below 100 (percent)",
        ));
    }
    let range = bounded_range(req.range.as_deref(), "30d", MAX_REPLAY_DAYS)?;
    // One replay at a time; a second request is told to come back.
    let slot = state
        .optimizing
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Overloaded { retry_after: 5 })?;
    let state = state.clone();
    super::heavy::answer_while_working(state.stopping.clone(), "application/json", async move {
        let (plan, _) = crate::analytics::optimize::optimize(
            &state.store,
            state.settings.clone(),
            range,
            req.target_savings,
            &state.metrics,
            slot,
        )
        .await?;
        serde_json::to_vec(&plan)
            .map(web::Bytes::from)
            .map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await
}
