//! What a performance report holds: its statistics, trends, slow builds, regressions,
//! scaling and cost summaries, and the daily series.

use super::*;

/// Which builds a report covers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Filter {
    pub controller: Option<String>,
    pub job: Option<String>,
    pub label: Option<String>,
}

impl Filter {
    /// Whether builds of this controller, job and label are in (a `None` label is not
    /// checked: for per-job figures).
    pub(super) fn admits(&self, controller: &str, job: &str, label: Option<&str>) -> bool {
        self.controller.as_deref().is_none_or(|c| c == controller)
            && self.job.as_deref().is_none_or(|j| j == job)
            && match (&self.label, label) {
                (Some(want), Some(l)) => want == l,
                (Some(_), None) => false,
                (None, _) => true,
            }
    }

    /// The filter as SQL equalities on the builds table.
    pub(super) fn columns(&self) -> Vec<(&'static str, &str)> {
        [
            ("controller", &self.controller),
            ("job", &self.job),
            ("label", &self.label),
        ]
        .into_iter()
        .filter_map(|(c, v)| v.as_deref().map(|v| (c, v)))
        .collect()
    }
}

/// Mean and percentiles of a set of durations, in ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Stats {
    pub count: u64,
    pub mean_ms: Option<f64>,
    pub p50_ms: Option<i64>,
    pub p95_ms: Option<i64>,
}

/// How a measure moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Trend {
    /// The measure over the range.
    pub value: Option<f64>,
    /// The same over the range before.
    pub previous: Option<f64>,
    /// Change against the range before, percent.
    pub change_percent: Option<f64>,
    /// Least-squares slope of the daily values over the range, per day.
    pub slope_per_day: Option<f64>,
}

/// Least-squares slope of `(x, y)` points; `None` with fewer than two distinct x.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx <= f64::EPSILON {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    Some((sxy / sxx * 1000.0).round() / 1000.0)
}

/// Trends of the four measures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Trends {
    /// Mean build duration, ms.
    pub duration: Trend,
    /// Mean queue wait, ms.
    pub queue_wait: Trend,
    /// Builds per hour.
    pub demand: Trend,
    /// Cost of the range.
    pub cost: Trend,
}

/// The first build of the range slower than the regression threshold.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SlowBuild {
    pub number: u64,
    #[schema(value_type = i64)]
    pub finished_at: Timestamp,
    pub duration_ms: i64,
}

/// A job whose median duration rose beyond the threshold against its history.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Regression {
    /// `controller/job`.
    pub job: String,
    pub median_ms: f64,
    /// The median of the job's builds in the range before.
    pub baseline_median_ms: f64,
    pub change_percent: f64,
    pub builds: u64,
    pub first_slow_build: Option<SlowBuild>,
}

/// Scale changes recorded in the range.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Scaling {
    pub scale_ups: u64,
    pub scale_downs: u64,
    #[schema(value_type = Object)]
    pub pools: BTreeMap<String, (u64, u64)>,
}

/// Cost in the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CostSummary {
    pub currency: String,
    pub total: f64,
    pub idle: f64,
    /// Busy agent-time over provisioned agent-time of the pools; `null` without pools.
    pub efficiency: Option<f64>,
    pub monthly_projection: f64,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PerformanceReport {
    pub range: Range,
    pub filter: Filter,
    #[schema(value_type = i64)]
    pub generated_at: Timestamp,
    pub builds: u64,
    /// Builds by result (SUCCESS, FAILURE, ...; `NONE` without one).
    #[schema(value_type = Object)]
    pub results: BTreeMap<String, u64>,
    /// SUCCESS over builds with a result.
    pub success_rate: Option<f64>,
    /// FAILURE over builds with a result.
    pub error_rate: Option<f64>,
    /// Builds per hour.
    pub demand_per_hour: f64,
    pub queue_wait: Stats,
    pub duration: Stats,
    pub scaling: Scaling,
    pub cost: CostSummary,
    pub trends: Trends,
    pub regressions: Vec<Regression>,
    pub recommendations: Vec<String>,
    /// Per day of the range: builds and mean duration and queue wait.
    pub daily: Vec<DailyPoint>,
}

/// One day of the range.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DailyPoint {
    /// The day's start (epoch ms): the range's start plus whole days.
    pub start: i64,
    pub builds: u64,
    pub mean_duration_ms: Option<f64>,
    pub mean_wait_ms: Option<f64>,
    /// Of the day's builds, those read from Jenkins' history by a backfill.
    pub backfilled: u64,
    /// Of the day's builds, those only the repair found (their webhooks were lost).
    pub repaired: u64,
}
