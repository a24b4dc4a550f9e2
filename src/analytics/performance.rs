//! The performance report of a range: builds, success and error rates, demand, queue wait
//! and duration statistics, scaling events, cost efficiency, trends against the range
//! before, per-job duration regressions, and the recommendations they lead to. One pass
//! over the builds of the range and the range before, holding only their durations.

use super::costs::{GroupBy, cost_from_groups};
use super::{Range, percent_change};
use crate::config::Settings;
use crate::domain::Timestamp;
use crate::store::{DaySums, Measure, Store, StoreError};
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
    /// Whether builds of this controller, job and label are in (a `None` label is not
    /// checked: for per-job figures).
    fn admits(&self, controller: &str, job: &str, label: Option<&str>) -> bool {
        self.controller.as_deref().is_none_or(|c| c == controller)
            && self.job.as_deref().is_none_or(|j| j == job)
            && match (&self.label, label) {
                (Some(want), Some(l)) => want == l,
                (Some(_), None) => false,
                (None, _) => true,
            }
    }

    /// The filter as SQL equalities on the builds table.
    fn columns(&self) -> Vec<(&'static str, &str)> {
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

/// Nearest-rank percentile from a `(seconds, count)` histogram, in ms.
fn histogram_percentile(h: &[(i64, u64)], p: f64) -> Option<i64> {
    let n: u64 = h.iter().map(|x| x.1).sum();
    if n == 0 {
        return None;
    }
    let rank = ((n as f64) * p).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (s, c) in h {
        seen += c;
        if seen >= rank {
            return Some(s * 1000);
        }
    }
    h.last().map(|x| x.0 * 1000)
}

fn stats(sum_ms: f64, count: u64, h: &[(i64, u64)]) -> Stats {
    if count == 0 {
        return Stats::default();
    }
    Stats {
        count,
        mean_ms: Some((sum_ms / count as f64 * 10.0).round() / 10.0),
        p50_ms: histogram_percentile(h, 0.5),
        p95_ms: histogram_percentile(h, 0.95),
    }
}

/// Sums of one side of the split.
#[derive(Default)]
struct Side {
    builds: u64,
    duration_ms: f64,
    wait_ms: f64,
    waits: u64,
    results: BTreeMap<String, u64>,
}

impl Side {
    fn mean_duration(&self) -> Option<f64> {
        (self.builds > 0).then(|| self.duration_ms / self.builds as f64)
    }

    fn mean_wait(&self) -> Option<f64> {
        (self.waits > 0).then(|| self.wait_ms / self.waits as f64)
    }

    fn rate(&self, result: &str) -> Option<f64> {
        let with_result = self.builds - self.results.get("NONE").copied().unwrap_or(0);
        (with_result > 0).then(|| {
            (self.results.get(result).copied().unwrap_or(0) as f64 / with_result as f64 * 1000.0)
                .round()
                / 1000.0
        })
    }
}

/// Builds the report from the database's aggregates (groups, histograms, daily sums,
/// per-job medians): the work does not grow with the builds held in memory.
pub async fn performance_report(
    store: &Store,
    settings: &Settings,
    range: Range,
    filter: Filter,
) -> Result<PerformanceReport, StoreError> {
    let threshold = settings.reports.regression_percent;
    let previous = range.previous();
    let from = previous.map_or(range.from, |p| p.from);
    let mut cur = Side::default();
    let mut prev = Side::default();
    let groups = store.build_groups(from, range.from, range.to).await?;
    for g in &groups {
        if !filter.admits(&g.controller, &g.job, g.label.as_deref()) {
            continue;
        }
        let side = if g.current { &mut cur } else { &mut prev };
        side.builds += g.builds;
        side.duration_ms += g.duration_ms as f64;
        side.wait_ms += g.wait_ms as f64;
        side.waits += g.waits;
        *side
            .results
            .entry(g.result.clone().unwrap_or_else(|| "NONE".into()))
            .or_default() += g.builds;
    }
    let keep = filter.columns();
    let waits = store
        .histogram(Measure::QueueWait, range.from, range.to, &keep)
        .await?;
    let durations = store
        .histogram(Measure::Duration, range.from, range.to, &keep)
        .await?;
    let days = store.day_sums(range.from, range.to, &keep).await?;

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
    let costs = cost_from_groups(store, settings, range, GroupBy::Pool, &groups, true).await?;
    let (busy, provisioned) = costs.pools.values().fold((0.0, 0.0), |(b, p), c| {
        (b + c.busy_agent_hours, p + c.agent_hours)
    });
    let efficiency =
        (provisioned > 0.0).then(|| ((busy / provisioned).min(1.0) * 1000.0).round() / 1000.0);

    let daily = |f: &dyn Fn(&DaySums) -> Option<f64>| -> Vec<(f64, f64)> {
        days.iter()
            .filter_map(|d| f(d).map(|y| (d.day as f64, y)))
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
            cur.mean_duration(),
            prev.mean_duration(),
            daily(&|d| (d.builds > 0).then(|| d.duration_ms / d.builds as f64)),
        ),
        queue_wait: trend(
            cur.mean_wait(),
            prev.mean_wait(),
            daily(&|d| (d.waits > 0).then(|| d.wait_ms / d.waits as f64)),
        ),
        demand: trend(
            Some(demand),
            prev_demand,
            daily(&|d| Some(d.builds as f64 / 24.0)),
        ),
        cost: Trend {
            value: Some(costs.total.total),
            previous: costs.previous_total,
            change_percent: costs.trend_percent,
            slope_per_day: None,
        },
    };

    // Regressions: each job's median against its median in the range before.
    #[derive(Default)]
    struct Medians {
        before: Option<f64>,
        now: Option<(f64, u64)>,
    }
    let mut medians: BTreeMap<(String, String), Medians> = BTreeMap::new();
    for m in store.job_medians(from, range.from, range.to).await? {
        if !filter.admits(&m.controller, &m.job, None) {
            continue;
        }
        let e = medians.entry((m.controller, m.job)).or_default();
        if m.current {
            e.now = Some((m.median_ms, m.builds));
        } else {
            e.before = Some(m.median_ms);
        }
    }
    let mut regressions = Vec::new();
    for ((controller, job), m) in medians {
        let (Some(base), Some((now, builds))) = (m.before, m.now) else {
            continue;
        };
        if base <= 0.0 {
            continue;
        }
        let change = (now - base) / base * 100.0;
        if change > threshold {
            let limit = base * (1.0 + threshold / 100.0);
            let first = store
                .first_slow_build(&controller, &job, range.from, range.to, limit)
                .await?
                .and_then(|(number, at, duration_ms)| {
                    Some(SlowBuild {
                        number,
                        finished_at: Timestamp::from_millis(at).ok()?,
                        duration_ms,
                    })
                });
            regressions.push(Regression {
                job: format!("{controller}/{job}"),
                median_ms: now,
                baseline_median_ms: base,
                change_percent: (change * 10.0).round() / 10.0,
                builds,
                first_slow_build: first,
            });
        }
    }
    regressions.sort_by(|a, b| b.change_percent.total_cmp(&a.change_percent));

    let queue_wait = stats(cur.wait_ms, cur.waits, &waits);
    let duration = stats(cur.duration_ms, cur.builds, &durations);
    let success_rate = cur.rate("SUCCESS");
    let error_rate = cur.rate("FAILURE");
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
        daily: days
            .iter()
            .map(|d| DailyPoint {
                start: range.from.millis() + d.day * 86_400_000,
                builds: d.builds,
                mean_duration_ms: (d.builds > 0)
                    .then(|| (d.duration_ms / d.builds as f64 * 10.0).round() / 10.0),
                mean_wait_ms: (d.waits > 0)
                    .then(|| (d.wait_ms / d.waits as f64 * 10.0).round() / 10.0),
                backfilled: d.backfilled,
                repaired: d.repaired,
            })
            .collect(),
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
            "queue wait p95 is {} (target {}): raise the busiest pools' min or idle_headroom, or give them `policy: warm` with a budget (`jenkins-autopilot simulate --frontier` shows what each budget buys)",
            fmt_ms(p95),
            fmt_ms(good)
        ));
    }
    if let Some(e) = cost.efficiency
        && e < 0.5
        && cost.idle > 0.0
    {
        out.push(format!(
            "agents were busy {:.0} % of the time they were paid for ({:.2} {} idle): lower min, idle_headroom or the scale-down stabilization window (`jenkins-autopilot simulate` replays a trace against each choice)",
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
    fn percentiles_from_histograms_and_slopes() {
        // Seconds 1..=5 once each: nearest rank p50 is the 3rd, p95 the 5th.
        let h: Vec<(i64, u64)> = (1..=5).map(|s| (s, 1)).collect();
        let s = stats(15_000.0, 5, &h);
        assert_eq!(
            (s.count, s.mean_ms, s.p50_ms, s.p95_ms),
            (5, Some(3000.0), Some(3000), Some(5000))
        );
        assert_eq!(stats(0.0, 0, &[]).p50_ms, None);
        // 99 builds of 1 s and one of 100 s: p95 is still 1 s.
        assert_eq!(histogram_percentile(&[(1, 99), (100, 1)], 0.95), Some(1000));
        assert_eq!(slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]), Some(2.0));
        assert_eq!(slope(&[(1.0, 1.0)]), None);
    }
}
