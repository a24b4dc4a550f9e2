//! The performance report of a range: builds, success and error rates, demand, queue wait
//! and duration statistics, scaling events, cost efficiency, trends against the range
//! before, per-job duration regressions, and the recommendations they lead to. One pass
//! over the builds of the range and the range before, holding only their durations.

use super::costs::{GroupBy, cost_report};
use super::{Range, percent_change};
use crate::config::Settings;
use crate::domain::Timestamp;
use crate::store::{PricedBuild, Store, StoreError};
use serde::Serialize;
use std::collections::BTreeMap;

/// Which builds a report covers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Filter {
    pub controller: Option<String>,
    pub job: Option<String>,
    pub label: Option<String>,
}

impl Filter {
    fn admits(&self, b: &PricedBuild) -> bool {
        self.controller.as_deref().is_none_or(|c| c == b.controller)
            && self.job.as_deref().is_none_or(|j| j == b.job)
            && self.label.as_deref().is_none_or(|l| {
                b.label
                    .as_deref()
                    .is_some_and(|bl| crate::scaling::demand::same_label(l, bl))
            })
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

/// Nearest-rank percentile of an unsorted list (reordered in place).
fn percentile(values: &mut [i64], p: f64) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    let rank = ((values.len() as f64) * p).ceil() as usize;
    let i = rank.clamp(1, values.len()) - 1;
    Some(*values.select_nth_unstable(i).1)
}

impl Stats {
    fn of(values: &mut [i64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let sum: f64 = values.iter().map(|v| *v as f64).sum();
        Self {
            count: values.len() as u64,
            mean_ms: Some((sum / values.len() as f64 * 10.0).round() / 10.0),
            p50_ms: percentile(values, 0.5),
            p95_ms: percentile(values, 0.95),
        }
    }
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
}

#[derive(Default)]
struct Side {
    builds: u64,
    durations: Vec<i64>,
    waits: Vec<i64>,
    results: BTreeMap<String, u64>,
    /// Day index (from the range's start) -> that day's sums.
    days: BTreeMap<i64, Day>,
}

/// One day's sums, for the daily trend points.
#[derive(Default)]
struct Day {
    builds: u64,
    duration_sum: f64,
    wait_sum: f64,
    waits: u64,
}

struct JobRuns {
    /// (finished_at, number, duration) in the range.
    current: Vec<(i64, u64, i64)>,
    previous: Vec<i64>,
}

fn median(values: &mut [i64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2] as f64
    } else {
        (values[n / 2 - 1] + values[n / 2]) as f64 / 2.0
    })
}

fn mean(values: &[i64]) -> Option<f64> {
    (!values.is_empty())
        .then(|| values.iter().map(|v| *v as f64).sum::<f64>() / values.len() as f64)
}

/// Builds the report.
pub async fn performance_report(
    store: &Store,
    settings: &Settings,
    range: Range,
    filter: Filter,
) -> Result<PerformanceReport, StoreError> {
    let analysis = &settings.build_optimization.analysis;
    let previous = range.previous();
    let from = previous.map_or(range.from, |p| p.from);
    let mut cur = Side::default();
    let mut prev = Side::default();
    let mut jobs: BTreeMap<String, JobRuns> = BTreeMap::new();
    let start = range.from.millis();
    store
        .for_each_finished_build(from, range.to, |b| {
            if !filter.admits(&b) {
                return;
            }
            let in_range = b.finished_at >= start;
            let side = if in_range { &mut cur } else { &mut prev };
            side.builds += 1;
            side.durations.push(b.duration_ms);
            if let Some(w) = b.queue_wait_ms {
                side.waits.push(w.max(0));
            }
            *side
                .results
                .entry(b.result.clone().unwrap_or_else(|| "NONE".into()))
                .or_default() += 1;
            let day = (b.finished_at - start).div_euclid(86_400_000);
            let d = side.days.entry(day).or_default();
            d.builds += 1;
            d.duration_sum += b.duration_ms as f64;
            if let Some(w) = b.queue_wait_ms {
                d.wait_sum += w.max(0) as f64;
                d.waits += 1;
            }
            if b.result.as_deref() == Some("SUCCESS") {
                let runs = jobs
                    .entry(format!("{}/{}", b.controller, b.job))
                    .or_insert_with(|| JobRuns {
                        current: Vec::new(),
                        previous: Vec::new(),
                    });
                if in_range {
                    runs.current.push((b.finished_at, b.number, b.duration_ms));
                } else {
                    runs.previous.push(b.duration_ms);
                }
            }
        })
        .await?;

    let with_result = |s: &Side| s.builds - s.results.get("NONE").copied().unwrap_or(0);
    let rate = |s: &Side, r: &str| {
        let n = with_result(s);
        (n > 0).then(|| {
            (s.results.get(r).copied().unwrap_or(0) as f64 / n as f64 * 1000.0).round() / 1000.0
        })
    };
    let hours = range.hours();
    let demand = if hours > 0.0 {
        cur.builds as f64 / hours
    } else {
        0.0
    };
    let prev_demand = previous.map(|p| prev.builds as f64 / p.hours().max(f64::EPSILON));

    // Scaling events and cost, for the pools (not filtered by job).
    let mut scaling = Scaling::default();
    for name in settings.scaling.pools.keys() {
        let (ups, downs) = store.scale_events(name, range.from, range.to).await?;
        scaling.scale_ups += ups;
        scaling.scale_downs += downs;
        scaling.pools.insert(name.clone(), (ups, downs));
    }
    let costs = cost_report(store, settings, range, GroupBy::Pool, true).await?;
    let (busy, provisioned) = costs.pools.values().fold((0.0, 0.0), |(b, p), c| {
        (b + c.busy_agent_hours, p + c.agent_hours)
    });
    let efficiency =
        (provisioned > 0.0).then(|| ((busy / provisioned).min(1.0) * 1000.0).round() / 1000.0);

    let daily = |s: &Side, f: &dyn Fn(&Day) -> Option<f64>| -> Vec<(f64, f64)> {
        s.days
            .iter()
            .filter_map(|(day, v)| f(v).map(|y| (*day as f64, y)))
            .collect()
    };
    let trend = |value: Option<f64>, previous: Option<f64>, points: Vec<(f64, f64)>| Trend {
        value: value.map(|v| (v * 1000.0).round() / 1000.0),
        previous: previous.map(|v| (v * 1000.0).round() / 1000.0),
        change_percent: match (previous, value) {
            (Some(p), Some(v)) => percent_change(p, v),
            _ => None,
        },
        slope_per_day: slope(&points),
    };
    let trends = Trends {
        duration: trend(
            mean(&cur.durations),
            mean(&prev.durations),
            daily(&cur, &|d| Some(d.duration_sum / d.builds as f64)),
        ),
        queue_wait: trend(
            mean(&cur.waits),
            mean(&prev.waits),
            daily(&cur, &|d| {
                (d.waits > 0).then(|| d.wait_sum / d.waits as f64)
            }),
        ),
        demand: trend(
            Some(demand),
            prev_demand,
            daily(&cur, &|d| Some(d.builds as f64 / 24.0)),
        ),
        cost: Trend {
            value: Some(costs.total.total),
            previous: costs.previous_total,
            change_percent: costs.trend_percent,
            slope_per_day: None,
        },
    };

    // Regressions: median against the job's median in the range before.
    let mut regressions = Vec::new();
    for (job, mut runs) in jobs {
        let (Some(base), false) = (median(&mut runs.previous), runs.current.is_empty()) else {
            continue;
        };
        let mut durations: Vec<i64> = runs.current.iter().map(|r| r.2).collect();
        let Some(now) = median(&mut durations) else {
            continue;
        };
        if base <= 0.0 {
            continue;
        }
        let change = (now - base) / base * 100.0;
        if change > analysis.slower_percent {
            let limit = base * (1.0 + analysis.slower_percent / 100.0);
            runs.current.sort_unstable();
            let first = runs
                .current
                .iter()
                .find(|r| r.2 as f64 > limit)
                .and_then(|r| {
                    Some(SlowBuild {
                        number: r.1,
                        finished_at: Timestamp::from_millis(r.0).ok()?,
                        duration_ms: r.2,
                    })
                });
            regressions.push(Regression {
                job,
                median_ms: now,
                baseline_median_ms: base,
                change_percent: (change * 10.0).round() / 10.0,
                builds: runs.current.len() as u64,
                first_slow_build: first,
            });
        }
    }
    regressions.sort_by(|a, b| b.change_percent.total_cmp(&a.change_percent));

    let queue_wait = Stats::of(&mut cur.waits);
    let duration = Stats::of(&mut cur.durations);
    let success_rate = rate(&cur, "SUCCESS");
    let error_rate = rate(&cur, "FAILURE");
    let cost = CostSummary {
        currency: costs.currency.clone(),
        total: costs.total.total,
        idle: costs.total.idle,
        efficiency,
        monthly_projection: costs.monthly_projection,
    };
    let recommendations = recommend(
        settings,
        &queue_wait,
        error_rate,
        &cost,
        &regressions,
        costs.priced_by.default + costs.priced_by.pool,
        costs.builds,
    );
    Ok(PerformanceReport {
        range,
        filter,
        generated_at: Timestamp::now(),
        builds: cur.builds,
        results: cur.results,
        success_rate,
        error_rate,
        demand_per_hour: (demand * 1000.0).round() / 1000.0,
        queue_wait,
        duration,
        scaling,
        cost,
        trends,
        regressions,
        recommendations,
    })
}

fn recommend(
    settings: &Settings,
    wait: &Stats,
    error_rate: Option<f64>,
    cost: &CostSummary,
    regressions: &[Regression],
    unreported: u64,
    builds: u64,
) -> Vec<String> {
    let mut out = Vec::new();
    let good = settings
        .build_optimization
        .analysis
        .queue_wait_good
        .as_millis() as i64;
    if let Some(p95) = wait.p95_ms
        && p95 > good
    {
        out.push(format!(
            "queue wait p95 is {} (target {}): raise the busiest pools' min or idle_headroom, or turn predictive scaling to `scale` where its backtest allows",
            fmt_ms(p95),
            fmt_ms(good)
        ));
    }
    if let Some(e) = cost.efficiency
        && e < 0.5
        && cost.idle > 0.0
    {
        out.push(format!(
            "agents were busy {:.0} % of the time they were paid for ({:.2} {} idle): lower min, idle_headroom or the scale-down stabilization window; `jenkins-autopilot cost optimize` replays the options",
            e * 100.0,
            cost.idle,
            cost.currency
        ));
    }
    for r in regressions.iter().take(5) {
        let since = r
            .first_slow_build
            .as_ref()
            .map(|b| format!(" since #{}", b.number))
            .unwrap_or_default();
        out.push(format!(
            "{} is {:+.0} % slower (median {} against {}){since}: look at what changed",
            r.job,
            r.change_percent,
            fmt_ms(r.median_ms as i64),
            fmt_ms(r.baseline_median_ms as i64)
        ));
    }
    if let Some(e) = error_rate
        && e > 0.1
    {
        out.push(format!(
            "{:.0} % of builds failed: the failing jobs cost capacity and developers' time",
            e * 100.0
        ));
    }
    if builds > 0 && unreported * 2 > builds {
        out.push(format!(
            "{unreported} of {builds} builds sent no usage report: wrap them in autopilot.podTemplate (or call autopilot.recordPerformance) so their pods are sized from what they use"
        ));
    }
    out
}

fn fmt_ms(ms: i64) -> String {
    humantime::format_duration(std::time::Duration::from_secs((ms.max(0) / 1000) as u64))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_slope_and_medians() {
        let mut v = vec![5, 1, 4, 2, 3];
        let s = Stats::of(&mut v);
        assert_eq!(
            (s.count, s.mean_ms, s.p50_ms, s.p95_ms),
            (5, Some(3.0), Some(3), Some(5))
        );
        assert_eq!(Stats::of(&mut []).p50_ms, None);
        assert_eq!(slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]), Some(2.0));
        assert_eq!(slope(&[(1.0, 1.0)]), None);
        assert_eq!(median(&mut [4, 1, 3, 2]), Some(2.5));
    }
}
