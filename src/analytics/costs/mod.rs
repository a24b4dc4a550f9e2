//! What CI cost over a range: every finished build priced by the cost model, every pool's
//! provisioned agents from its recorded scaling decisions, the idle difference, grouped by
//! job, pool, controller or label, with the trend against the range before.

use super::{Range, percent_change};
use crate::analytics::round;
use crate::config::{PoolSettings, Settings};
use crate::cost::{self, Alert, Breakdown, PoolCost};
use crate::domain::Timestamp;
use crate::store::{BuildGroup, PricedBuild, Store, StoreError};
use serde::Serialize;
use std::collections::BTreeMap;

mod report;
pub use report::{CostReport, GroupBy, Money, PricedBy, Row};

/// The pool a build ran in: same controller, and its label is the pool's (compared
/// without whitespace) or, when it is a node's labels (Statistics Gatherer sends them
/// space-separated), one of them is: the one rule the controller, the warm model, the
/// forecaster and the costs all use (`Label::serves`).
pub fn pool_of<'a>(
    pools: &'a BTreeMap<String, PoolSettings>,
    controller: &str,
    label: Option<&str>,
) -> Option<(&'a String, &'a PoolSettings)> {
    let label = label?;
    pools
        .iter()
        .find(|(_, p)| p.controller.as_str() == controller && p.label.serves(label))
}

/// Prices one build: its report's requests, else its executor's share of its pool's
/// agent, else the default; at max(request, use) x duration.
pub fn price_build(settings: &Settings, b: &PricedBuild) -> (Breakdown, &'static str) {
    let (requests, source) = match b.requests {
        Some(r) => (r, "report"),
        None => {
            let pool = pool_of(&settings.scaling.pools, &b.controller, b.label.as_deref());
            let source = if pool.is_some() { "pool" } else { "default" };
            (unreported_requests(settings, pool.map(|(_, p)| p)), source)
        }
    };
    (
        cost::build_cost(&settings.cost.prices, requests, b.usage, b.duration_ms),
        source,
    )
}

/// The requests a build without a usage report is priced at: its executor's share of its
/// pool's agent, or the default outside every pool.
fn unreported_requests(
    settings: &Settings,
    pool: Option<&PoolSettings>,
) -> crate::profiles::rules::Resources {
    match pool {
        Some(p) => cost::executor_share(&p.agent, p.executors_per_agent),
        None => settings.cost.default_build,
    }
}

/// Prices one group of builds, which ran in `pool` (`None`: outside every pool).
fn price_group(settings: &Settings, g: &BuildGroup, pool: Option<&PoolSettings>) -> Breakdown {
    let requests = unreported_requests(settings, pool);
    cost::group_cost(
        &settings.cost.prices,
        requests,
        g.unreported_ms,
        g.cpu_m_ms,
        g.memory_b_ms,
    )
}

struct Group {
    builds: u64,
    cost: Breakdown,
}

/// Most builds listed in the per-build alerts of one report.
const MAX_BUILD_ALERTS: u32 = 100;

/// Builds of the range costing more than the per-build alert threshold, dearest first.
async fn costly_builds(
    store: &Store,
    settings: &Settings,
    range: Range,
) -> Result<Vec<(String, f64)>, StoreError> {
    let Some(threshold) = settings.cost.alerts.cost_per_build else {
        return Ok(Vec::new());
    };
    let prices = &settings.cost.prices;
    // The dearest hourly rate an unreported build can have: a build shorter than
    // threshold / rate cannot cross the threshold.
    let rate = settings
        .scaling
        .pools
        .values()
        .map(Some)
        .chain([None])
        .map(|pool| {
            let r = unreported_requests(settings, pool);
            cost::build_cost(prices, r, None, 3_600_000).total()
        })
        .fold(0.0, f64::max);
    let min_ms = if rate > 0.0 {
        (threshold / rate * 3_600_000.0).floor() as i64
    } else {
        i64::MAX
    };
    let candidates = store
        .costly_build_candidates(
            range.from,
            range.to,
            min_ms,
            prices.cpu_hour,
            prices.memory_gib_hour,
            threshold,
            MAX_BUILD_ALERTS,
        )
        .await?;
    let mut out: Vec<(String, f64)> = candidates
        .iter()
        .map(|b| {
            (
                format!("{}/{}#{}", b.controller, b.job, b.number),
                price_build(settings, b).0.total(),
            )
        })
        .filter(|(_, c)| *c > threshold)
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(out)
}

/// The cost report for `range`; with `previous`, also the total of the range before.
pub async fn cost_report(
    store: &Store,
    settings: &Settings,
    range: Range,
    group_by: GroupBy,
    previous: bool,
) -> Result<CostReport, StoreError> {
    let from = match (previous, range.previous()) {
        (true, Some(prev)) => prev.from,
        _ => range.from,
    };
    let groups = store.build_groups(from, range.from, range.to).await?;
    cost_from_groups(store, settings, range, group_by, &groups, previous).await
}

/// The cost report from build groups already read: `groups` split at the range's start;
/// those before it (when `previous`) give the previous range's total.
pub async fn cost_from_groups(
    store: &Store,
    settings: &Settings,
    range: Range,
    group_by: GroupBy,
    all: &[BuildGroup],
    previous: bool,
) -> Result<CostReport, StoreError> {
    let current: Vec<&BuildGroup> = all.iter().filter(|g| g.current).collect();
    let mut report = cost_of(store, settings, range, group_by, &current, true).await?;
    if let (true, Some(prev)) = (previous, range.previous()) {
        let before: Vec<&BuildGroup> = all.iter().filter(|g| !g.current).collect();
        let p = Box::pin(cost_of(store, settings, prev, group_by, &before, false)).await?;
        report.previous_total = Some(p.total.total);
        report.trend_percent = percent_change(p.total.total, report.total.total);
    }
    Ok(report)
}

/// The cost of `range` from its build groups; `alerts`: also look for costly builds.
async fn cost_of(
    store: &Store,
    settings: &Settings,
    range: Range,
    group_by: GroupBy,
    build_groups: &[&BuildGroup],
    alerts: bool,
) -> Result<CostReport, StoreError> {
    let prices = &settings.cost.prices;
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut per_pool: BTreeMap<String, (Breakdown, i64)> = BTreeMap::new();
    let mut unpooled = Breakdown::default();
    let mut priced_by = PricedBy::default();
    let mut count = 0;
    for g in build_groups.iter().copied() {
        let pool = pool_of(&settings.scaling.pools, &g.controller, g.label.as_deref());
        let c = price_group(settings, g, pool.map(|(_, p)| p));
        count += g.builds;
        priced_by.report += g.builds - g.unreported;
        if pool.is_some() {
            priced_by.pool += g.unreported;
        } else {
            priced_by.default += g.unreported;
        }
        match pool {
            Some((name, _)) => {
                let e = per_pool.entry(name.clone()).or_default();
                e.0 += c;
                e.1 = e.1.saturating_add(g.duration_ms.max(0));
            }
            None => unpooled += c,
        }
        let key = match group_by {
            GroupBy::Job => format!("{}/{}", g.controller, g.job),
            GroupBy::Controller => g.controller.clone(),
            GroupBy::Label => g.label.clone().unwrap_or_else(|| "(none)".into()),
            GroupBy::Pool => pool.map_or_else(|| "(no pool)".into(), |(n, _)| n.clone()),
        };
        let e = groups.entry(key).or_insert(Group {
            builds: 0,
            cost: Breakdown::default(),
        });
        e.builds += g.builds;
        e.cost += c;
    }

    // Pools: provisioned agents until now at the latest (the future is not provisioned).
    let now = Timestamp::now();
    let until = range.to.min(now).max(range.from);
    let mut pools = BTreeMap::new();
    let mut total = unpooled;
    let mut idle_total = 0.0;
    for (name, p) in &settings.scaling.pools {
        let (before, steps) = store.replica_steps(name, range.from, until).await?;
        let hours = cost::agent_hours(&steps, before, range.from.millis(), until.millis());
        // The span the decisions cover: all of the range when one came before it, else
        // from the first one in it, else none.
        let covered_from = match (before, steps.first()) {
            (Some(_), _) => Some(range.from.millis()),
            (None, Some((at, _))) => Some(*at),
            (None, None) => None,
        };
        let (builds_cost, busy_ms) = match covered_from {
            Some(from) if from > range.from.millis() => {
                // Only the builds that finished while the decisions covered the pool.
                let from = Timestamp::from_millis(from).unwrap_or(range.from);
                let covered = store.build_groups(from, from, until).await?;
                let mut sum = (Breakdown::default(), 0i64);
                for g in covered.iter().filter(|g| {
                    pool_of(&settings.scaling.pools, &g.controller, g.label.as_deref())
                        .is_some_and(|(n, _)| n == name)
                }) {
                    sum.0 += price_group(settings, g, Some(p));
                    sum.1 = sum.1.saturating_add(g.duration_ms.max(0));
                }
                sum
            }
            Some(_) => per_pool.get(name).copied().unwrap_or_default(),
            None => (Breakdown::default(), 0),
        };
        let busy_hours = busy_ms as f64 / 3_600_000.0 / f64::from(p.executors_per_agent.max(1));
        let mut pc = cost::pool_cost(prices, &p.agent, hours, busy_hours, builds_cost);
        pc.covered_from = covered_from;
        // Builds outside the covered span still cost what they cost.
        let builds_cost = per_pool.get(name).map_or(builds_cost, |(c, _)| *c);
        // The pool's spend: its agents, or its builds when they priced above the agents
        // (usage above requests, or no decisions recorded for the range).
        let mut spend = if pc.cost.total() >= builds_cost.total() {
            pc.cost
        } else {
            builds_cost
        };
        spend.idle = pc.cost.idle;
        idle_total += spend.idle;
        total += Breakdown { idle: 0.0, ..spend };
        if group_by == GroupBy::Pool {
            let g = groups.entry(name.clone()).or_insert(Group {
                builds: 0,
                cost: Breakdown::default(),
            });
            g.cost = spend;
        }
        pools.insert(name.clone(), pc);
    }
    total.idle = idle_total;
    if group_by != GroupBy::Pool && idle_total > 0.0 {
        groups.insert(
            "(idle)".into(),
            Group {
                builds: 0,
                cost: Breakdown {
                    idle: idle_total,
                    ..Default::default()
                },
            },
        );
    }
    let grand = total.total();
    let mut breakdown: Vec<Row> = groups
        .into_iter()
        .map(|(key, g)| {
            let row_total = if key == "(idle)" {
                g.cost.idle
            } else {
                g.cost.total()
            };
            let mut cost = Money::from(g.cost);
            cost.total = round(row_total);
            Row {
                key,
                builds: g.builds,
                cost,
                share_percent: if grand > 0.0 {
                    (row_total / grand * 1000.0).round() / 10.0
                } else {
                    0.0
                },
            }
        })
        .collect();
    breakdown.sort_by(|a, b| {
        b.cost
            .total
            .total_cmp(&a.cost.total)
            .then(a.key.cmp(&b.key))
    });

    let hours = range.hours();
    let hourly = if hours > 0.0 { grand / hours } else { 0.0 };
    let pool_list: Vec<(String, PoolCost)> = pools.iter().map(|(k, v)| (k.clone(), *v)).collect();
    let expensive = if alerts {
        costly_builds(store, settings, range).await?
    } else {
        Vec::new()
    };
    Ok(CostReport {
        range,
        hours: round(hours),
        currency: settings.cost.currency.clone(),
        group_by,
        total: Money::from(total),
        builds: count,
        priced_by,
        hourly_rate: round(hourly),
        monthly_projection: round(hourly * cost::HOURS_PER_MONTH),
        trend_percent: None,
        previous_total: None,
        breakdown,
        pools,
        alerts: cost::alerts(
            &settings.cost.alerts,
            &expensive,
            &pool_list,
            &settings.cost.currency,
        ),
    })
}

/// Every hour, ten minutes past, checks the hour just past against the alert thresholds: each alert is
/// logged and counted (`autopilot_cost_alerts_total`); a build or pool-hour is checked
/// once, as the hours do not overlap.
pub async fn watch_alerts(
    store: Store,
    settings: std::sync::Arc<Settings>,
    metrics: crate::metrics::Metrics,
    leader: crate::leader::Leadership,
) {
    const HOUR_MS: i64 = 3_600_000;
    let mut checked: Option<i64> = None;
    loop {
        // Once the hour that ended has been rolled up (its grace and a roller's pass
        // after it), so its costs come from its rollup rows, not from its builds.
        let now = Timestamp::now().millis();
        let after = crate::store::ROLL_GRACE_MS + 5 * 60_000;
        let wait = (after - now.rem_euclid(HOUR_MS)).rem_euclid(HOUR_MS);
        tokio::time::sleep(std::time::Duration::from_millis(wait.max(1_000) as u64)).await;
        let now = Timestamp::now().millis();
        let end = now - now.rem_euclid(HOUR_MS);
        // Each hour once, however the sleeps fall.
        if checked.replace(end) == Some(end) {
            continue;
        }
        let (Ok(from), Ok(to)) = (
            Timestamp::from_millis(end - HOUR_MS),
            Timestamp::from_millis(end),
        ) else {
            continue;
        };
        if !leader.confirm().await {
            continue;
        }
        match cost_report(&store, &settings, Range { from, to }, GroupBy::Pool, false).await {
            Ok(report) => raise(&report.alerts, &metrics),
            Err(e) => tracing::warn!(error = %e, "checking cost alerts failed"),
        }
    }
}

/// Logs and counts alerts.
pub fn raise(alerts: &[Alert], metrics: &crate::metrics::Metrics) {
    for a in alerts {
        metrics.cost_alerts.with_label_values(&[a.kind]).inc();
        tracing::warn!(kind = a.kind, subject = %a.subject, value = a.value, threshold = a.threshold, "{}", a.message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raised_alerts_are_counted_by_kind() {
        let metrics = crate::metrics::Metrics::new();
        let alert = |kind| Alert {
            kind,
            subject: "x".into(),
            value: 2.0,
            threshold: 1.0,
            message: "m".into(),
        };
        raise(
            &[
                alert("cost_per_build"),
                alert("cost_per_build"),
                alert("idle_share"),
            ],
            &metrics,
        );
        let text = metrics.render();
        assert!(
            text.contains(r#"autopilot_cost_alerts_total{kind="cost_per_build"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"autopilot_cost_alerts_total{kind="idle_share"} 1"#));
    }
}
