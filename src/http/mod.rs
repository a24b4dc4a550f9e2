//! HTTP surface: webhooks, the read API, health, metrics and the OpenAPI document.

pub mod auth;
pub mod backfill;
mod costs;
mod dashboard;
pub mod disk;
pub mod errors;
pub mod heavy;
mod ops;
pub mod peers;
mod performance;
mod pools;
mod profiles;
mod read;
mod reports;
mod webhooks;

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::store::{Store, WriterHandle};
use actix_web::web;
use std::sync::Arc;

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub writer: WriterHandle,
    pub metrics: Metrics,
    pub auth: auth::WebhookAuth,
    pub tokens: crate::tokens::TokenKeys,
    pub settings: Arc<Settings>,
    pub scaling: crate::controller::ScalingHandle,
    /// One cost optimization at a time: each replays the history on a blocking thread.
    pub optimizing: Arc<tokio::sync::Semaphore>,
    /// One frontier replay at a time.
    pub replaying: Arc<tokio::sync::Semaphore>,
    /// Reports, exports, costs and frontiers: a few at a time, four per peer address.
    pub heavy: heavy::HeavyReads,
    /// Writes refused below the free-disk floor.
    pub disk: Arc<disk::DiskFloor>,
    /// With reads open, the `Host` names reads are answered for (empty: any).
    pub read_hosts: Vec<String>,
    /// Build parameters stored masked.
    pub secret_parameters: regex::Regex,
    /// Signed webhook bodies read before they are authenticated.
    pub unverified_bodies: Arc<tokio::sync::Semaphore>,
    /// Backfills: one at a time, each controller's latest progress.
    pub backfills: Arc<crate::backfill::Backfills>,
    /// This replica's part in the leader election.
    pub leadership: crate::leader::Leadership,
    /// Cancelled when the service is told to stop.
    pub stopping: tokio_util::sync::CancellationToken,
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/webhooks/notification")
            .route(web::post().to(webhooks::receive_notification)),
    )
    .service(
        web::resource("/webhooks/cloudevents").route(web::post().to(webhooks::receive_cloudevent)),
    )
    .service(
        web::resource("/webhooks/statistics").route(web::post().to(webhooks::receive_statistics)),
    )
    .service(web::resource("/api/v1/builds").route(web::get().to(read::list_builds)))
    .service(
        web::resource("/api/v1/builds/{controller}/{job:.+}/{number:[0-9]+}")
            .route(web::get().to(read::get_build)),
    )
    .service(
        web::resource("/api/v1/builds/{controller}/{job:.+}/{number:[0-9]+}/performance")
            .route(web::post().to(performance::record_performance)),
    )
    .service(
        web::resource("/api/v1/builds/{controller}/{job:.+}/{number:[0-9]+}/analysis")
            .route(web::get().to(performance::build_analysis)),
    )
    .service(
        web::resource("/api/v1/jobs/{controller}/{job:.+}/recommendation")
            .route(web::get().to(profiles::job_recommendation)),
    )
    .service(
        web::resource("/api/v1/profiles/select").route(web::get().to(profiles::select_profile)),
    )
    .service(
        web::resource("/api/v1/reports/performance").route(web::get().to(reports::performance)),
    )
    .service(web::resource("/api/v1/export").route(web::get().to(reports::export)))
    .service(web::resource("/api/v1/costs").route(web::get().to(costs::get_costs)))
    .service(web::resource("/api/v1/costs/optimize").route(web::post().to(costs::optimize)))
    .service(web::resource("/api/v1/queue").route(web::get().to(read::list_queue)))
    .service(web::resource("/api/v1/pools").route(web::get().to(pools::list_pools)))
    .service(
        web::resource("/api/v1/controllers/{controller}/backfill")
            .route(web::post().to(backfill::start))
            .route(web::get().to(backfill::progress))
            .route(web::delete().to(backfill::cancel)),
    )
    .service(
        web::resource("/api/v1/controllers/{controller}/waiting")
            .route(web::post().to(pools::announce_waiting)),
    )
    .service(
        web::resource("/api/v1/pools/{name}/decisions").route(web::get().to(pools::list_decisions)),
    )
    .service(
        web::resource("/api/v1/pools/{name}/forecast").route(web::get().to(pools::get_forecast)),
    )
    .service(
        web::resource("/api/v1/pools/{name}/frontier").route(web::get().to(pools::get_frontier)),
    )
    .service(web::resource("/").route(web::get().to(dashboard::index)))
    .service(web::resource("/assets/{path:.+}").route(web::get().to(dashboard::asset)))
    .service(web::resource("/healthz").route(web::get().to(ops::healthz)))
    .service(web::resource("/api/v1/status").route(web::get().to(ops::status)))
    .service(web::resource("/readyz").route(web::get().to(ops::readyz)))
    .service(web::resource("/metrics").route(web::get().to(ops::metrics)))
    .service(web::resource("/openapi.json").route(web::get().to(ops::openapi)));
}

/// The OpenAPI document of every endpoint.
#[derive(utoipa::OpenApi)]
#[openapi(
    modifiers(&BearerJwt),
    info(
        title = "jenkins-autopilot",
        description = "Jenkins build events in; build records, queue and health out."
    ),
    paths(
        webhooks::receive_notification,
        webhooks::receive_cloudevent,
        webhooks::receive_statistics,
        read::list_builds,
        read::get_build,
        read::list_queue,
        pools::list_pools,
        pools::list_decisions,
        pools::get_forecast,
        pools::get_frontier,
        pools::announce_waiting,
        backfill::start,
        backfill::progress,
        backfill::cancel,
        costs::get_costs,
        costs::optimize,
        reports::performance,
        reports::export,
        profiles::select_profile,
        profiles::job_recommendation,
        performance::record_performance,
        performance::build_analysis,
        ops::healthz,
        ops::status,
        ops::readyz,
        ops::metrics,
        ops::openapi,
    ),
    components(schemas(
        crate::domain::BuildRecord,
        crate::domain::QueueItem,
        errors::ErrorBody,
        webhooks::WebhookReply,
        read::BuildList,
        read::QueueList,
        pools::PoolList,
        pools::DecisionList,
        pools::WaitingRequest,
        backfill::BackfillRequest,
        crate::backfill::Progress,
        pools::WaitingReply,
        crate::controller::Announcement,
        crate::controller::PoolView,
        crate::controller::ForecastView,
        crate::sim::PoolFrontier,
        crate::store::DecisionRecord,
        ops::Health,
        crate::leader::Status,
        crate::analytics::performance::PerformanceReport,
        crate::analytics::performance::Filter,
        crate::analytics::performance::Stats,
        crate::analytics::performance::Trend,
        crate::analytics::performance::Trends,
        crate::analytics::performance::Regression,
        crate::analytics::performance::SlowBuild,
        crate::analytics::performance::Scaling,
        crate::analytics::performance::CostSummary,
        crate::analytics::performance::DailyPoint,
        costs::OptimizeRequest,
        crate::analytics::optimize::Plan,
        crate::analytics::optimize::PoolPlan,
        crate::analytics::optimize::ProfileChange,
        crate::analytics::optimize::Figures,
        crate::analytics::optimize::Change,
        crate::analytics::costs::CostReport,
        crate::analytics::costs::Money,
        crate::analytics::costs::Row,
        crate::analytics::costs::PricedBy,
        crate::analytics::costs::GroupBy,
        crate::analytics::Range,
        crate::cost::PoolCost,
        crate::cost::Breakdown,
        crate::cost::Alert,
        profiles::JobRecommendation,
        performance::PerformanceReply,
        performance::BuildAnalysis,
        crate::profiles::choose::Selection,
        crate::profiles::choose::Source,
        crate::profiles::analysis::Analysis,
        crate::profiles::analysis::Part,
        crate::store::StoredPerformance,
        crate::ingest::performance::PerformanceReport,
        crate::ingest::performance::StageTiming,
    ))
)]
pub struct ApiDoc;

/// Declares the bearer JWT the pipeline API requires.
struct BearerJwt;

impl utoipa::Modify for BearerJwt {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}
