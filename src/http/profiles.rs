//! The pipeline API (JWT): profile selection, build performance reports, build analysis
//! and per-job recommendations.

use super::AppState;
use super::auth::require_scope;
use super::errors::ApiError;
use crate::domain::{ControllerName, JobName, Timestamp};
use crate::profiles::choose::{Inputs, Load, Selection, Source, choose, learned};
use crate::profiles::recommend::Recommendation;
use crate::tokens::Scope;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

/// Query of `GET /api/v1/profiles/select`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SelectQuery {
    /// The job's full name (folders joined by `/`).
    job: Option<String>,
    /// Build type: `build`, `test`, `deploy`, or any other word.
    #[serde(rename = "type")]
    build_type: Option<String>,
    /// The controller (default: `webhook.default_controller`).
    controller: Option<String>,
    /// The pool's busy share in percent (0-100); default: the job's pool's, as last read.
    load: Option<String>,
    /// The pool the build runs in (default: the pool serving the job's last label).
    pool: Option<String>,
    /// The build container's image (default: `profiles.pod.image`).
    image: Option<String>,
}

/// Query of the job recommendation.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct TypeQuery {
    /// Build type (default `build`).
    #[serde(rename = "type")]
    build_type: Option<String>,
}

/// A job's learned size, or why it has none yet.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobRecommendation {
    pub controller: String,
    pub job: String,
    #[serde(rename = "type")]
    pub build_type: String,
    pub samples: usize,
    pub min_samples: usize,
    /// `learned` once there are enough samples, else `rule`.
    pub source: Source,
    /// The learned size, once there are enough samples.
    #[schema(value_type = Option<Object>)]
    pub learned: Option<Recommendation>,
    /// What `profiles/select` answers now (at unknown load unless the pool's is known).
    pub selection: Selection,
}

fn decode(req: &HttpRequest, name: &str) -> Result<String, ApiError> {
    let raw = req
        .match_info()
        .get(name)
        .ok_or_else(|| ApiError::invalid(name, "is required"))?;
    urlencoding::decode(raw)
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::invalid(name, "is not valid percent-encoded UTF-8"))
}

/// `{controller}` of the path.
pub(super) fn controller_path(req: &HttpRequest) -> Result<ControllerName, ApiError> {
    ControllerName::parse(&decode(req, "controller")?)
        .map_err(|e| ApiError::invalid("controller", e))
}

/// `{controller}/{job}` of the path (the job may span segments: folders as `/` or `%2F`).
pub(super) fn job_path(req: &HttpRequest) -> Result<(ControllerName, JobName), ApiError> {
    let controller = controller_path(req)?;
    let job = JobName::parse(&decode(req, "job")?).map_err(|e| ApiError::invalid("job", e))?;
    Ok((controller, job))
}

/// `{controller}/{job}/{number}` of the path.
pub(super) fn build_path(req: &HttpRequest) -> Result<(ControllerName, JobName, u64), ApiError> {
    let (controller, job) = job_path(req)?;
    let number: u64 = decode(req, "number")?
        .parse()
        .ok()
        .filter(|n| (1..=crate::ingest::limits::MAX_BUILD_NUMBER).contains(n))
        .ok_or_else(|| {
            ApiError::invalid(
                "number",
                format!(
                    "must be a build number, 1 to {}",
                    crate::ingest::limits::MAX_BUILD_NUMBER
                ),
            )
        })?;
    Ok((controller, job, number))
}

fn build_type(raw: Option<&str>) -> Result<String, ApiError> {
    crate::profiles::build_type(raw.unwrap_or("build")).map_err(|r| ApiError::invalid("type", r))
}

/// The pool a job's builds run in: the named one, else the one whose label the job's
/// last build asked for.
async fn job_pool(
    state: &AppState,
    controller: &ControllerName,
    job: &JobName,
    named: Option<&str>,
) -> Result<Option<(String, crate::config::PoolSettings)>, ApiError> {
    let pools = &state.settings.scaling.pools;
    if let Some(name) = named {
        return match pools.get(name) {
            Some(p) => Ok(Some((name.to_string(), p.clone()))),
            None => Err(ApiError::invalid("pool", format!("no pool named {name:?}"))),
        };
    }
    let Some(label) = state.store.latest_label(controller, job, false).await? else {
        return Ok(None);
    };
    Ok(
        crate::analytics::costs::pool_of(pools, controller.as_str(), Some(&label))
            .map(|(n, p)| (n.clone(), p.clone())),
    )
}

/// The pool's load from its newest decision (`profiles::load::pool_load`).
async fn pool_load(state: &AppState, pool: &str) -> Load {
    let Some(view) = state.scaling.pool(pool).await else {
        return Load {
            percent: None,
            how: format!("load unknown: pool {pool} is not running"),
        };
    };
    let last = view.last.as_ref().map(|d| crate::profiles::load::Reading {
        decided_at: d.decided_at,
        error: d.error.as_deref(),
        inputs: &d.inputs,
    });
    let max_age = state.settings.scaling.reconcile_interval.as_millis() as i64 * 3;
    crate::profiles::load::pool_load(pool, last, Timestamp::now(), max_age)
}

/// Picks the build's profile: the job's learned size once it has enough reported builds,
/// else the first matching rule; with a pod YAML for `podTemplate(yaml: ...)`.
#[utoipa::path(get, path = "/api/v1/profiles/select", tag = "profiles", params(SelectQuery),
    security(("bearer" = ["profiles:read"])),
    responses((status = 200, body = Selection), (status = 400, body = super::errors::ErrorBody),
              (status = 401, body = super::errors::ErrorBody), (status = 403, body = super::errors::ErrorBody)))]
pub async fn select_profile(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_scope(&req, &state.tokens, Scope::ProfilesRead)?;
    let q = web::Query::<SelectQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::invalid("query", e))?
        .into_inner();
    let job = JobName::parse(
        q.job
            .as_deref()
            .ok_or_else(|| ApiError::invalid("job", "is required"))?,
    )
    .map_err(|e| ApiError::invalid("job", e))?;
    let build_type = build_type(Some(q.build_type.as_deref().ok_or_else(|| {
        ApiError::invalid("type", "is required (build, test, deploy, ...)")
    })?))?;
    let controller = match q.controller.as_deref() {
        Some(c) => ControllerName::parse(c).map_err(|e| ApiError::invalid("controller", e))?,
        None => state.settings.webhook.default_controller.clone(),
    };
    if let Some(image) = q.image.as_deref()
        && (image.trim().is_empty() || image.len() > 512 || image.contains(char::is_whitespace))
    {
        return Err(ApiError::invalid(
            "image",
            "must be a container image reference",
        ));
    }
    let given_load = q
        .load
        .as_deref()
        .map(|l| match l.trim().parse::<f64>() {
            Ok(v) if (0.0..=100.0).contains(&v) => Ok(v.round() as u32),
            _ => Err(ApiError::invalid(
                "load",
                "must be a percentage from 0 to 100",
            )),
        })
        .transpose()?;
    let pool = job_pool(&state, &controller, &job, q.pool.as_deref()).await?;
    let load = match (given_load, &pool) {
        (Some(p), _) => Load {
            percent: Some(p),
            how: format!("load {p} % as given"),
        },
        (None, Some((name, _))) => pool_load(&state, name).await,
        (None, None) => Load {
            percent: None,
            how: "load unknown: no load= given and no pool serves this job's label".into(),
        },
    };
    let samples = samples(&state, &controller, &job, &build_type).await?;
    let selection = select(
        &state,
        &Inputs {
            build_type: &build_type,
            load,
            samples: &samples,
            now: Timestamp::now(),
            exact: pool.as_ref().is_some_and(|(_, p)| p.exact_sizes),
            image: q.image.as_deref(),
        },
    )?;
    Ok(HttpResponse::Ok().json(selection))
}

/// The recorded usage of a job and type, the most recent first.
async fn samples(
    state: &AppState,
    controller: &ControllerName,
    job: &JobName,
    build_type: &str,
) -> Result<Vec<crate::profiles::recommend::Sample>, ApiError> {
    let max = state.settings.build_optimization.learned.max_samples;
    Ok(state
        .store
        .usage_samples(controller, job, build_type, max)
        .await?)
}

fn select(state: &AppState, inputs: &Inputs<'_>) -> Result<Selection, ApiError> {
    choose(
        &state.settings.profiles,
        &state.settings.build_optimization,
        inputs,
    )
    .ok_or_else(|| ApiError::Internal("no rule matches: the settings need a catch-all rule".into()))
}

/// What a job's learned size is now (or why the rules still decide).
#[utoipa::path(get, path = "/api/v1/jobs/{controller}/{job}/recommendation", tag = "profiles",
    params(("controller" = String, Path, description = "Controller name"),
           ("job" = String, Path, description = "Job full name; folder separators as `/` or `%2F`"),
           TypeQuery),
    security(("bearer" = ["profiles:read"])),
    responses((status = 200, body = JobRecommendation), (status = 400, body = super::errors::ErrorBody),
              (status = 401, body = super::errors::ErrorBody), (status = 403, body = super::errors::ErrorBody)))]
pub async fn job_recommendation(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_scope(&req, &state.tokens, Scope::ProfilesRead)?;
    let (controller, job) = job_path(&req)?;
    let q = web::Query::<TypeQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::invalid("query", e))?
        .into_inner();
    let build_type = build_type(q.build_type.as_deref())?;
    let pool = job_pool(&state, &controller, &job, None).await?;
    let load = match &pool {
        Some((name, _)) => pool_load(&state, name).await,
        None => Load {
            percent: None,
            how: "load unknown: no pool serves this job's label".into(),
        },
    };
    let samples = samples(&state, &controller, &job, &build_type).await?;
    let inputs = Inputs {
        build_type: &build_type,
        load,
        samples: &samples,
        now: Timestamp::now(),
        exact: pool.as_ref().is_some_and(|(_, p)| p.exact_sizes),
        image: None,
    };
    let selection = select(&state, &inputs)?;
    let learned = learned(
        &state.settings.profiles,
        &state.settings.build_optimization,
        &inputs,
    );
    Ok(HttpResponse::Ok().json(JobRecommendation {
        controller: controller.to_string(),
        job: job.to_string(),
        build_type,
        samples: samples.len(),
        min_samples: state.settings.build_optimization.learned.min_samples,
        source: selection.source,
        learned,
        selection,
    }))
}
