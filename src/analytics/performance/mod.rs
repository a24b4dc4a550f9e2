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

mod report;
pub use report::{
    CostSummary, DailyPoint, Filter, PerformanceReport, Regression, Scaling, SlowBuild, Stats,
    Trend, Trends, slope,
};

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
