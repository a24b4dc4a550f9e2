//! The pools API: each pool's latest snapshot and decision, and its decision history.

use super::AppState;
use super::errors::ApiError;
use crate::controller::PoolView;
use crate::domain::Timestamp;
use crate::store::DecisionRecord;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

/// Every pool.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PoolList {
    pub pools: Vec<PoolView>,
}

/// A pool's decisions, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DecisionList {
    pub decisions: Vec<DecisionRecord>,
}

/// Query of the decisions endpoint.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DecisionQuery {
    /// Decisions at or after this instant (RFC 3339 or epoch ms); default the last hour.
    since: Option<String>,
    /// At most this many (default 100, at most 1000).
    limit: Option<String>,
}

/// The pool the path names, or 404.
async fn pool_or_404(req: &HttpRequest, state: &AppState) -> Result<PoolView, ApiError> {
    let name = req.match_info().get("name").unwrap_or_default();
    state
        .scaling
        .pool(name)
        .await
        .ok_or_else(|| ApiError::NotFound(format!("no pool {name:?}")))
}

/// Every pool with its latest snapshot and decision.
#[utoipa::path(get, path = "/api/v1/pools", tag = "pools", responses((status = 200, body = PoolList)))]
pub async fn list_pools(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::auth::require_read(&req, &state)?;
    Ok(HttpResponse::Ok().json(PoolList {
        pools: state.scaling.pools().await,
    }))
}

/// A pool's decisions: inputs, rule, result, applied or dry-run, error.
#[utoipa::path(get, path = "/api/v1/pools/{name}/decisions", tag = "pools",
    params(("name" = String, Path, description = "Pool name"), DecisionQuery),
    responses((status = 200, body = DecisionList), (status = 400, body = super::errors::ErrorBody),
              (status = 404, body = super::errors::ErrorBody)))]
pub async fn list_decisions(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::auth::require_read(&req, &state)?;
    let name = pool_or_404(&req, &state).await?.name;
    let q = web::Query::<DecisionQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::invalid("query", e))?
        .into_inner();
    let since = match q.since.as_deref() {
        Some(s) => Timestamp::parse_str(s).map_err(|e| ApiError::invalid("since", e))?,
        None => Timestamp::from_millis(Timestamp::now().millis() - 3_600_000)
            .unwrap_or(Timestamp::now()),
    };
    let limit = super::read::parse_limit(q.limit.as_deref())?;
    let decisions = state.store.decisions(&name, since, limit).await?;
    Ok(HttpResponse::Ok().json(DecisionList { decisions }))
}

/// A pool's demand forecast beside the actual demand, with the model's training window
/// and backtest scores, and whether it acts (mode `scale` and a model that beats the
/// seasonal naive); and the multi-metric signals with their scores.
#[utoipa::path(get, path = "/api/v1/pools/{name}/forecast", tag = "pools",
    params(("name" = String, Path, description = "Pool name")),
    responses((status = 200, body = crate::controller::ForecastView),
              (status = 404, body = super::errors::ErrorBody)))]
pub async fn get_forecast(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::auth::require_read(&req, &state)?;
    let pool = pool_or_404(&req, &state).await?;
    let name = pool.name.clone();
    let mode = serde_json::to_value(pool.predictive).unwrap_or_default();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "pool": name,
        "mode": mode,
        "forecast": pool.forecast,
        "signals": pool.signals,
    })))
}

/// Query of the frontier endpoint.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct FrontierQuery {
    /// The recorded builds replayed: `24h`, `7d`, `30d` (default) or `FROM..TO`.
    range: Option<String>,
}

/// A pool's frontier on its own recorded builds: agent-hours against the share of builds
/// started at once for every `window`, `keep-idle`, `headroom` and `warm` setting, the
/// oracle's agent-hours, and the pool's current settings replayed on the same builds.
/// One replay at a time: another request meanwhile gets 503 with Retry-After.
#[utoipa::path(get, path = "/api/v1/pools/{name}/frontier", tag = "pools",
    params(("name" = String, Path, description = "Pool name"), FrontierQuery),
    responses((status = 200, body = crate::sim::PoolFrontier),
              (status = 400, body = super::errors::ErrorBody),
              (status = 404, body = super::errors::ErrorBody),
              (status = 503, body = super::errors::ErrorBody)))]
pub async fn get_frontier(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::auth::require_read(&req, &state)?;
    let name = pool_or_404(&req, &state).await?.name;
    let q = web::Query::<FrontierQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::invalid("query", e))?
        .into_inner();
    let range =
        super::costs::bounded_range(q.range.as_deref(), "30d", super::costs::MAX_REPLAY_DAYS)?;
    let heavy = state.heavy.admit(&req)?;
    let slot = state
        .replaying
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Overloaded { retry_after: 5 })?;
    let state = state.clone();
    super::heavy::answer_while_working(state.stopping.clone(), "application/json", async move {
        let _heavy = heavy;
        let mut replayed = crate::analytics::frontier::pool_frontiers(
            &state.store,
            state.settings.clone(),
            range,
            Some(&name),
            &state.metrics,
            slot,
        )
        .await?;
        let mut body = serde_json::to_value(replayed.pop()).unwrap_or_default();
        body["range"] = serde_json::to_value(range).unwrap_or_default();
        Ok(web::Bytes::from(body.to_string()))
    })
    .await
}

/// A build about to wait for an executor of `label`, as a pipeline announces it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitingRequest {
    /// The label expression the build asks for, as in `node('linux')`.
    pub label: String,
    /// The job's full name, for the log.
    pub job: Option<String>,
    /// The build number, for the log.
    pub number: Option<u64>,
}

/// What a pipeline's announcement reached.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WaitingReply {
    pub controller: String,
    pub label: String,
    #[serde(flatten)]
    pub announcement: crate::controller::Announcement,
}

/// Largest announcement body accepted.
const WAITING_BODY_LIMIT: usize = 4 * 1024;

/// A pipeline is about to wait for an executor of a label (the shared library's
/// `autopilot.node`): the controller's pools of that label count one more queued build
/// and reconcile at once, before Jenkins' queue shows it. Pipelines need this: the
/// CloudEvents plugin drops the queue events of Pipeline `node` steps. 202 whether or not
/// a pool has the label (`pools` says which were woken).
#[utoipa::path(post, path = "/api/v1/controllers/{controller}/waiting", tag = "pools",
    params(("controller" = String, Path, description = "Controller name, as the webhooks give it")),
    security(("bearer" = ["builds:write"])),
    request_body = WaitingRequest,
    responses((status = 202, body = WaitingReply), (status = 400, body = super::errors::ErrorBody),
              (status = 401, body = super::errors::ErrorBody), (status = 403, body = super::errors::ErrorBody),
              (status = 413, body = super::errors::ErrorBody), (status = 415, body = super::errors::ErrorBody)))]
pub async fn announce_waiting(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    use crate::ingest::limits::{MAX_BUILD_NUMBER, MAX_TEXT};
    super::auth::require_scope(&req, &state.tokens, crate::tokens::Scope::BuildsWrite)?;
    super::webhooks::require_json(&req)?;
    let body = super::webhooks::read_body(
        &req,
        payload,
        WAITING_BODY_LIMIT,
        state.settings.server.body_timeout,
    )
    .await?;
    let controller = super::profiles::controller_path(&req)?;
    let w: WaitingRequest = crate::ingest::parse_json(&body)?;
    let label = w.label.trim();
    if label.is_empty() || label.len() > MAX_TEXT || label.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "label",
            format!(
                "must be a label expression of 1 to {MAX_TEXT} bytes without control characters"
            ),
        ));
    }
    if w.job.as_ref().is_some_and(|j| j.len() > MAX_TEXT) {
        return Err(ApiError::invalid(
            "job",
            format!("must be at most {MAX_TEXT} bytes"),
        ));
    }
    if w.number
        .is_some_and(|n| !(1..=MAX_BUILD_NUMBER).contains(&n))
    {
        return Err(ApiError::invalid(
            "number",
            format!("must be a build number, 1 to {MAX_BUILD_NUMBER}"),
        ));
    }
    let announcement = state.scaling.announce(&controller, label);
    tracing::debug!(%controller, label, job = w.job.as_deref(), number = w.number,
        pools = ?announcement.pools, "a pipeline announced a build waiting for an executor");
    Ok(HttpResponse::Accepted().json(WaitingReply {
        controller: controller.to_string(),
        label: label.to_string(),
        announcement,
    }))
}
