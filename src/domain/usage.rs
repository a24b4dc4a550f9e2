//! What a build used, as its own report (`autopilot.recordPerformance()`) tells it once
//! validated: CPU, memory peak, OOM kills, the requests and limits it ran with, and its
//! stage timings.

use super::{Bytes, Millicores, Resources};
use serde::{Deserialize, Serialize};

/// One stage's wall time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StageTiming {
    pub name: String,
    pub duration_ms: u64,
}

/// What a build used, validated.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = BuildPerformance)]
pub struct PerformanceReport {
    /// The build type the pipeline asked its profile for (`build`, `test`, ...).
    pub build_type: String,
    /// How long the measured container ran, in ms.
    pub elapsed_ms: u64,
    /// `usage_usec` of `cpu.stat`: CPU time of every process in the container.
    pub cpu_usage_usec: u64,
    /// Average CPU over `elapsed_ms`.
    #[schema(value_type = String)]
    pub cpu_average: Millicores,
    /// `memory.peak`.
    #[schema(value_type = String)]
    pub memory_peak: Bytes,
    /// `oom_kill` of `memory.events`; `null` when the file was not sent.
    pub oom_kills: Option<u64>,
    /// The requests the build container had.
    #[schema(value_type = Option<Object>)]
    pub requests: Option<Resources>,
    #[schema(value_type = Option<Object>)]
    pub limits: Option<Resources>,
    /// The profile the build was given, when it asked for one.
    pub profile: Option<String>,
    pub stages: Vec<StageTiming>,
}
