//! The replay simulator: real CI history against any scaling policy, so every claim about
//! cost and wait is measured. `jenkins-autopilot simulate`.

pub mod engine;
pub mod frontier;
pub mod guard;
pub mod outcome;
pub mod policy;
pub mod predictive;
pub mod startup;
pub mod trace;
pub mod world;

pub use engine::{SimBuild, SimConfig, SimOutcome, SimPolicy, replay};
pub use frontier::{
    FRONTIER, Frontier, FrontierPoint, PoolFrontier, frontier, frontier_table, pool_frontier,
};

use serde::Serialize;
use std::collections::BTreeMap;

/// The figures of one policy on one pool, or on all pools together.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyFigures {
    pub builds: usize,
    pub agent_hours: f64,
    pub cost: f64,
    pub wait_p50_s: f64,
    pub wait_p95_s: f64,
    pub wait_p99_s: f64,
    pub wait_max_s: f64,
    /// Builds that waited at all.
    pub builds_waited: usize,
    pub scale_ups: u64,
    pub scale_downs: u64,
    /// Busy executor time / provisioned executor time.
    pub efficiency: f64,
    /// Must be 0: busy agents are never removed.
    pub busy_agents_removed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pools: Option<BTreeMap<String, PolicyFigures>>,
}

impl PolicyFigures {
    /// Share of builds that started without waiting, 0 to 1 (0 with no builds).
    pub fn started_at_once(&self) -> f64 {
        if self.builds == 0 {
            0.0
        } else {
            (self.builds - self.builds_waited) as f64 / self.builds as f64
        }
    }
}

/// The nearest-rank percentile of sorted waits in ms, in seconds (0 when there are none).
pub(crate) fn percentile(sorted: &[i64], p: f64) -> f64 {
    crate::domain::nearest_rank(sorted, p).map_or(0.0, |ms| ms as f64 / 1000.0)
}

pub(crate) fn figures(
    outcomes: &[(&SimOutcome, f64)],
    pools: Option<BTreeMap<String, PolicyFigures>>,
) -> PolicyFigures {
    let mut waits: Vec<i64> = outcomes
        .iter()
        .flat_map(|(o, _)| o.waits_ms.iter().copied())
        .collect();
    waits.sort_unstable();
    let agent_ms: i64 = outcomes.iter().map(|(o, _)| o.agent_ms).sum();
    let cost: f64 = outcomes
        .iter()
        .map(|(o, price)| o.agent_ms as f64 / 3_600_000.0 * price)
        .sum();
    let busy: i64 = outcomes.iter().map(|(o, _)| o.busy_executor_ms).sum();
    let provisioned: i64 = outcomes
        .iter()
        .map(|(o, _)| o.provisioned_executor_ms)
        .sum();
    PolicyFigures {
        builds: waits.len(),
        agent_hours: agent_ms as f64 / 3_600_000.0,
        cost,
        wait_p50_s: percentile(&waits, 0.50),
        wait_p95_s: percentile(&waits, 0.95),
        wait_p99_s: percentile(&waits, 0.99),
        wait_max_s: waits.last().copied().unwrap_or(0) as f64 / 1000.0,
        builds_waited: waits.iter().filter(|w| **w > 0).count(),
        scale_ups: outcomes.iter().map(|(o, _)| o.scale_ups).sum(),
        scale_downs: outcomes.iter().map(|(o, _)| o.scale_downs).sum(),
        efficiency: if provisioned > 0 {
            busy as f64 / provisioned as f64
        } else {
            0.0
        },
        busy_agents_removed: outcomes.iter().map(|(o, _)| o.busy_agents_removed).sum(),
        pools,
    }
}

/// Replays every label of `builds` as its own pool under each policy.
pub fn compare(
    builds: &[trace::TraceBuild],
    policies: &[SimPolicy],
    cfg: &SimConfig,
    progress: &indicatif::ProgressBar,
) -> BTreeMap<String, PolicyFigures> {
    let mut by_label: BTreeMap<&str, Vec<SimBuild>> = BTreeMap::new();
    for b in builds {
        by_label
            .entry(b.label.as_str())
            .or_default()
            .push(SimBuild {
                queued_at: b.queued_at_ms,
                duration: b.duration_ms,
            });
    }
    let mut out = BTreeMap::new();
    for &policy in policies {
        let mut per_pool = Vec::new();
        for (label, pool_builds) in &by_label {
            progress.set_message(format!("{} / {label}", policy.name()));
            per_pool.push((label.to_string(), replay(pool_builds, policy, cfg)));
            progress.inc(pool_builds.len() as u64);
        }
        let pools: BTreeMap<String, PolicyFigures> = per_pool
            .iter()
            .map(|(label, o)| (label.clone(), figures(&[(o, cfg.agent_hour_price)], None)))
            .collect();
        let all: Vec<(&SimOutcome, f64)> = per_pool
            .iter()
            .map(|(_, o)| (o, cfg.agent_hour_price))
            .collect();
        out.insert(policy.name(), figures(&all, Some(pools)));
    }
    progress.finish_and_clear();
    out
}

/// The most agents any label's pool needs at once when no build waits (the oracle's
/// peak), summed over labels: the static pool size that never queues.
pub fn peak_agents(builds: &[trace::TraceBuild], cfg: &SimConfig) -> u32 {
    let mut by_label: BTreeMap<&str, Vec<(i64, i64)>> = BTreeMap::new();
    for b in builds {
        let e = by_label.entry(b.label.as_str()).or_default();
        e.push((b.queued_at_ms, 1));
        e.push((b.queued_at_ms + b.duration_ms, -1));
    }
    let per = i64::from(cfg.executors_per_agent.max(1));
    by_label
        .into_values()
        .map(|mut edges| {
            edges.sort();
            let (mut running, mut peak) = (0i64, 0i64);
            for (_, d) in edges {
                running += d;
                peak = peak.max(running);
            }
            ((peak + per - 1) / per) as u32
        })
        .sum()
}

/// The table people read.
pub fn table(results: &BTreeMap<String, PolicyFigures>, order: &[SimPolicy]) -> String {
    let mut s = format!(
        "{:<16} {:>11} {:>10} {:>9} {:>9} {:>9} {:>9} {:>8} {:>6} {:>6} {:>6} {:>5}\n",
        "policy",
        "agent-hours",
        "cost",
        "wait p50",
        "wait p95",
        "wait p99",
        "wait max",
        "waited",
        "ups",
        "downs",
        "eff",
        "busy-"
    );
    for p in order {
        let name = p.name();
        let Some(f) = results.get(&name) else {
            continue;
        };
        s.push_str(&format!(
            "{:<16} {:>11.1} {:>10.2} {:>8.0}s {:>8.0}s {:>8.0}s {:>8.0}s {:>8} {:>6} {:>6} {:>5.0}% {:>5}\n",
            name,
            f.agent_hours,
            f.cost,
            f.wait_p50_s,
            f.wait_p95_s,
            f.wait_p99_s,
            f.wait_max_s,
            f.builds_waited,
            f.scale_ups,
            f.scale_downs,
            f.efficiency * 100.0,
            f.busy_agents_removed
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let w: Vec<i64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile(&w, 0.5), 50.0);
        assert_eq!(percentile(&w, 0.95), 95.0);
        assert_eq!(percentile(&w, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
