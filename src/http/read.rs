//! The read API: builds and the live queue as the webhooks told it.

use super::AppState;
use super::errors::ApiError;
use crate::domain::{BuildRecord, BuildResult, ControllerName, JobName, QueueItem, Timestamp};
use crate::store::BuildFilter;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// Query of `GET /api/v1/builds`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct BuildQuery {
    /// Only this controller's builds.
    controller: Option<String>,
    /// Only this job (full name, folders joined by `/`).
    job: Option<String>,
    /// Only builds with this result (SUCCESS, UNSTABLE, FAILURE, NOT_BUILT, ABORTED).
    result: Option<String>,
    /// Only builds started (or queued) at or after this instant: RFC 3339 or epoch ms.
    since: Option<String>,
    /// At most this many (default 100, at most 1000).
    limit: Option<String>,
}

/// A page of builds, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BuildList {
    pub builds: Vec<BuildRecord>,
}

/// Queue items waiting.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueList {
    pub items: Vec<QueueItem>,
    /// Items waiting in all, of which `items` is the page asked for.
    pub total: usize,
}

/// A `limit` query parameter: 1 to 1000, 100 when absent.
pub(super) fn parse_limit(raw: Option<&str>) -> Result<u32, ApiError> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(l) => match l.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid(
                "limit",
                format!("must be a whole number from 1 to {MAX_LIMIT}"),
            )),
        },
    }
}

fn controller_param(raw: Option<&str>) -> Result<Option<ControllerName>, ApiError> {
    raw.map(|c| ControllerName::parse(c).map_err(|e| ApiError::invalid("controller", e)))
        .transpose()
}

/// Secret-looking parameters stored before they were masked at ingest stay masked in
/// answers too.
fn mask(b: &mut crate::domain::BuildRecord, secret: &regex::Regex) {
    crate::ingest::limits::mask_parameters(&mut b.parameters, secret);
}

/// Builds, newest first.
#[utoipa::path(get, path = "/api/v1/builds", tag = "builds", params(BuildQuery),
    responses((status = 200, body = BuildList), (status = 400, body = super::errors::ErrorBody)))]
pub async fn list_builds(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::auth::require_read(&req, &state)?;
    let q = web::Query::<BuildQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::invalid("query", e))?
        .into_inner();
    let limit = parse_limit(q.limit.as_deref())?;
    let result = match q.result.as_deref() {
        None => None,
        Some(r) => match BuildResult::parse(r) {
            Ok(Some(r)) => Some(r),
            _ => {
                return Err(ApiError::invalid(
                    "result",
                    "must be SUCCESS, UNSTABLE, FAILURE, NOT_BUILT or ABORTED",
                ));
            }
        },
    };
    let filter = BuildFilter {
        controller: controller_param(q.controller.as_deref())?,
        job: q
            .job
            .as_deref()
            .map(JobName::parse)
            .transpose()
            .map_err(|e| ApiError::invalid("job", e))?,
        result,
        since: q
            .since
            .as_deref()
            .map(Timestamp::parse_str)
            .transpose()
            .map_err(|e| ApiError::invalid("since", e))?,
        limit,
    };
    let mut builds = state.store.list_builds(&filter).await?;
    for b in &mut builds {
        mask(b, &state.secret_parameters);
    }
    Ok(HttpResponse::Ok().json(BuildList { builds }))
}

/// One build. The job's full name takes the path's middle segments: folders may be sent
/// as plain `/` (`/api/v1/builds/prod/team/app/12`) or as `%2F`
/// (`/api/v1/builds/prod/team%2Fapp/12`); other characters percent-encoded as usual.
#[utoipa::path(get, path = "/api/v1/builds/{controller}/{job}/{number}", tag = "builds",
    params(("controller" = String, Path, description = "Controller name"),
           ("job" = String, Path, description = "Job full name; folder separators as `/` or `%2F`"),
           ("number" = u64, Path, description = "Build number")),
    responses((status = 200, body = BuildRecord), (status = 400, body = super::errors::ErrorBody),
              (status = 404, body = super::errors::ErrorBody)))]
pub async fn get_build(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::auth::require_read(&req, &state)?;
    let (controller, job, number) = super::profiles::build_path(&req)?;
    match state.store.get_build(&controller, &job, number).await? {
        Some(mut build) => {
            mask(&mut build, &state.secret_parameters);
            Ok(HttpResponse::Ok().json(build))
        }
        None => Err(ApiError::NotFound(format!(
            "no build {job} #{number} on controller {controller}"
        ))),
    }
}

/// The furthest a queue page may start: past it, page by `controller` instead.
const MAX_OFFSET: u64 = 1_000_000;

/// Query of `GET /api/v1/queue`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct QueueQuery {
    /// Only this controller's items.
    controller: Option<String>,
    /// At most this many (default 100, at most 1000).
    limit: Option<String>,
    /// Items after the first this many (paging; default 0).
    offset: Option<String>,
}

/// Queue items seen entering the queue and not yet seen leaving, oldest first.
#[utoipa::path(get, path = "/api/v1/queue", tag = "queue", params(QueueQuery),
    responses((status = 200, body = QueueList), (status = 400, body = super::errors::ErrorBody)))]
pub async fn list_queue(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::auth::require_read(&req, &state)?;
    let q = web::Query::<QueueQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::invalid("query", e))?
        .into_inner();
    let controller = controller_param(q.controller.as_deref())?;
    let limit = parse_limit(q.limit.as_deref())?;
    let offset = match q.offset.as_deref() {
        None => 0,
        Some(o) => o
            .parse::<u64>()
            .ok()
            .filter(|o| *o <= MAX_OFFSET)
            .ok_or_else(|| {
                ApiError::invalid(
                    "offset",
                    format!("must be a whole number, 0 to {MAX_OFFSET}"),
                )
            })?,
    };
    let (items, total) = state
        .store
        .waiting_queue_page(controller.as_ref(), offset, limit)
        .await?;
    Ok(HttpResponse::Ok().json(QueueList {
        items,
        total: usize::try_from(total).unwrap_or(usize::MAX),
    }))
}
