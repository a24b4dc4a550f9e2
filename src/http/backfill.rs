//! Backfills through the API: start one for a controller, follow its progress.

use super::AppState;
use super::errors::ApiError;
use crate::backfill::{Options, Progress};
use crate::domain::{ControllerName, EventSource, Timestamp};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use std::time::Duration;

/// What to backfill.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackfillRequest {
    /// How far back, as a duration (`90d`, the default; at most 3650d).
    pub since: Option<String>,
    /// Only jobs whose full name matches this glob (`team/*`).
    pub jobs: Option<String>,
    /// Read and count, store nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Requests per second to Jenkins (default `backfill.max_requests_per_second`).
    pub max_requests_per_second: Option<f64>,
    /// The repair's read: records what it finds as found by the repair.
    #[serde(default)]
    pub repair: bool,
}

/// The path's controller and its settings; 404 for one `jenkins.controllers` lacks.
fn controller(
    req: &HttpRequest,
    state: &AppState,
) -> Result<(ControllerName, crate::config::JenkinsControllerSettings), ApiError> {
    let name = super::profiles::controller_path(req)?;
    let settings = state
        .settings
        .jenkins
        .controller(name.as_str())
        .cloned()
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no Jenkins controller {name} in jenkins.controllers"
            ))
        })?;
    Ok((name, settings))
}

/// Largest backfill request body.
const BODY_LIMIT: usize = 4 * 1024;
/// How far back a backfill reads at most.
const MAX_SINCE: Duration = Duration::from_secs(3650 * 86_400);

/// Starts a backfill of a controller's build history (admin). One runs at a time:
/// another request meanwhile gets 503 with Retry-After. It resumes the controller's
/// unfinished run of the same range and jobs. 202 with its progress.
#[utoipa::path(post, path = "/api/v1/controllers/{controller}/backfill", tag = "backfill",
    params(("controller" = String, Path, description = "Controller name, as in jenkins.controllers")),
    security(("bearer" = ["admin"])),
    request_body = BackfillRequest,
    responses((status = 202, body = Progress), (status = 400, body = super::errors::ErrorBody),
              (status = 401, body = super::errors::ErrorBody), (status = 403, body = super::errors::ErrorBody),
              (status = 404, body = super::errors::ErrorBody), (status = 413, body = super::errors::ErrorBody),
              (status = 415, body = super::errors::ErrorBody), (status = 503, body = super::errors::ErrorBody)))]
pub async fn start(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::auth::require_scope(&req, &state.tokens, crate::tokens::Scope::Admin)?;
    super::webhooks::require_json(&req)?;
    let body = super::webhooks::read_body(
        &req,
        payload,
        BODY_LIMIT,
        state.settings.server.body_timeout,
    )
    .await?;
    let (name, settings) = controller(&req, &state)?;
    let r: BackfillRequest = crate::ingest::parse_json(&body)?;
    let back = match r.since.as_deref() {
        None => Duration::from_secs(90 * 86_400),
        Some(s) => humantime::parse_duration(s)
            .ok()
            .filter(|d| !d.is_zero() && *d <= MAX_SINCE)
            .ok_or_else(|| {
                ApiError::invalid("since", "must be a duration from 1s to 3650d, e.g. 90d")
            })?,
    };
    let rate = r
        .max_requests_per_second
        .unwrap_or(state.settings.backfill.max_requests_per_second);
    crate::config::BackfillSettings::check_rate(rate)
        .map_err(|e| ApiError::invalid("max_requests_per_second", e))?;
    if let Some(g) = &r.jobs
        && (g.len() > crate::ingest::limits::MAX_TEXT || glob::Pattern::new(g).is_err())
    {
        return Err(ApiError::invalid(
            "jobs",
            "must be a glob of at most 1024 bytes, e.g. team/*",
        ));
    }
    let since = Timestamp::from_millis(Timestamp::now().millis() - back.as_millis() as i64)
        .map_err(|e| ApiError::invalid("since", e))?;
    let opts = Options {
        since,
        jobs: r.jobs,
        dry_run: r.dry_run,
        max_requests_per_second: rate,
        source: if r.repair {
            EventSource::Repair
        } else {
            EventSource::Backfill
        },
        backoff: Duration::from_millis(500),
    };
    let slot = state
        .backfills
        .slot()
        .ok_or(ApiError::Overloaded { retry_after: 30 })?;
    let jenkins = crate::jenkins::JenkinsClient::new(&settings)
        .map_err(|e| ApiError::Unavailable(format!("the Jenkins client: {e}")))?;
    let progress = state.backfills.track(&name);
    {
        let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
        p.controller = name.to_string();
        p.state = "running".into();
        p.source = opts.source.as_str().into();
        p.since = opts.since.millis();
        p.dry_run = opts.dry_run;
    }
    let shown = progress.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (store, all, metrics) = (
        state.store.clone(),
        state.settings.clone(),
        state.metrics.clone(),
    );
    let mut stop = state.backfills.stop_signal(&name);
    let backfills = state.backfills.clone();
    tokio::spawn(async move {
        let _slot = slot;
        // A stop request drops the run where it stands: its batch in flight rolls back,
        // the jobs it read to the end stay done.
        let stopped = async move {
            while stop.changed().await.is_ok() {
                if *stop.borrow() {
                    return;
                }
            }
            std::future::pending::<()>().await;
        };
        tokio::select! {
            result = crate::backfill::run(&store, &jenkins, &all, &name, &opts, &progress) => match result {
                Ok(p) => {
                    tracing::info!(controller = %name, builds = p.builds_read, stored = p.events_stored,
                    requests = p.requests, "backfill done")
                }
                Err(e) => {
                    tracing::warn!(controller = %name, error = %e, "backfill stopped; a new request resumes it")
                }
            },
            () = stopped => {
                let run_id = progress.lock().unwrap_or_else(|e| e.into_inner()).run_id;
                if let Err(e) = store.backfill_cancel(run_id, Timestamp::now()).await {
                    tracing::error!(controller = %name, error = %e, "recording a cancelled backfill failed");
                }
                let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
                p.state = "cancelled".into();
                p.finished_at = Some(Timestamp::now().millis());
                tracing::info!(controller = %name, "backfill cancelled");
            }
        }
        backfills.forget_stop(&name);
        crate::backfill::publish_repair_counts(&store, &metrics).await;
    });
    Ok(HttpResponse::Accepted().json(shown))
}

/// Stops a controller's running backfill (admin): it ends as `cancelled`, keeping the
/// jobs it read to the end; 202 with its progress, 404 when none runs.
#[utoipa::path(delete, path = "/api/v1/controllers/{controller}/backfill", tag = "backfill",
    params(("controller" = String, Path, description = "Controller name, as in jenkins.controllers")),
    security(("bearer" = ["admin"])),
    responses((status = 202, body = Progress), (status = 401, body = super::errors::ErrorBody),
              (status = 403, body = super::errors::ErrorBody), (status = 404, body = super::errors::ErrorBody)))]
pub async fn cancel(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::auth::require_scope(&req, &state.tokens, crate::tokens::Scope::Admin)?;
    let (name, _) = controller(&req, &state)?;
    if !state.backfills.stop(&name) {
        return Err(ApiError::NotFound(format!(
            "no backfill of {name} is running here"
        )));
    }
    let shown = state.backfills.latest(&name).unwrap_or_default();
    Ok(HttpResponse::Accepted().json(shown))
}

/// A controller's latest backfill: its progress while it runs, how it ended after.
#[utoipa::path(get, path = "/api/v1/controllers/{controller}/backfill", tag = "backfill",
    params(("controller" = String, Path, description = "Controller name, as in jenkins.controllers")),
    responses((status = 200, body = Progress), (status = 400, body = super::errors::ErrorBody),
              (status = 404, body = super::errors::ErrorBody)))]
pub async fn progress(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::auth::require_read(&req, &state)?;
    let (name, _) = controller(&req, &state)?;
    if let Some(p) = state.backfills.latest(&name) {
        return Ok(HttpResponse::Ok().json(p));
    }
    let run = state
        .store
        .backfill_runs(&name, 1)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::NotFound(format!("no backfill of {name} yet")))?;
    Ok(HttpResponse::Ok().json(Progress {
        controller: run.controller,
        run_id: run.id,
        state: run.state,
        source: "backfill".into(),
        since: run.since,
        jobs_glob: run.jobs_glob,
        started_at: run.started_at,
        finished_at: run.finished_at,
        error: run.error,
        ..Progress::default()
    }))
}
