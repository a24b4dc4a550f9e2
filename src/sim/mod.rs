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

use crate::scaling::Behavior;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// A pool's configuration for replays (`--pool-config FILE`); every field defaults as a
/// pool in `jenkins-scaling.yaml` does.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimPoolSettings {
    /// Executors each agent offers.
    pub executors_per_agent: u32,
    pub min: u32,
    pub max: u32,
    pub idle_headroom: u32,
    /// HPA-style behaviour, as in a pool's settings.
    pub behavior: Behavior,
    /// CPU cores one agent requests (priced per CPU-hour).
    pub agent_cpu: f64,
    /// Memory one agent requests, GiB (priced per GiB-hour).
    pub agent_memory_gib: f64,
    /// Price of one CPU-hour.
    pub cpu_hour_price: f64,
    /// Price of one GiB-hour of memory.
    pub memory_gib_hour_price: f64,
    /// Most idle agents the `warm` policy keeps.
    pub warm_max_idle: u32,
    /// Minimums by the hour, as in a pool's settings.
    pub schedules: Vec<crate::scaling::schedule::ScheduleSettings>,
}

impl Default for SimPoolSettings {
    fn default() -> Self {
        Self {
            executors_per_agent: 1,
            min: 0,
            max: 10,
            idle_headroom: 0,
            behavior: Behavior::default(),
            agent_cpu: 1.0,
            agent_memory_gib: 2.0,
            cpu_hour_price: 0.05,
            memory_gib_hour_price: 0.01,
            warm_max_idle: 10,
            schedules: Vec::new(),
        }
    }
}

impl SimPoolSettings {
    /// The engine's configuration for this pool.
    pub fn config(&self, pod_startup: startup::Startup, reconcile: Duration) -> SimConfig {
        SimConfig {
            executors_per_agent: self.executors_per_agent.max(1),
            min: self.min,
            max: self.max,
            idle_headroom: self.idle_headroom,
            behavior: self.behavior.clone(),
            pod_startup_ms: pod_startup.p50_ms,
            startup_p95_ms: pod_startup.p95_ms,
            reconcile_ms: (reconcile.as_millis() as i64).max(1),
            agent_hour_price: self.agent_cpu * self.cpu_hour_price
                + self.agent_memory_gib * self.memory_gib_hour_price,
            // Daily refits (the service's default) on four weeks of 5-minute steps: 50
            // trees keep a long replay short.
            forecast_params: crate::forecast::ModelParams {
                trees: 50,
                max_depth: 10,
                seed: 42,
            },
            forecast_retrain_ms: crate::config::default_retrain().as_millis() as i64,
            warm_max_idle: self.warm_max_idle,
            warm_window_ms: crate::config::WarmSettings::default().window.as_millis() as i64,
            schedules: crate::scaling::schedule::parse_valid(&self.schedules),
        }
    }
}

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
    settings: &SimPoolSettings,
    pod_startup: startup::Startup,
    reconcile: Duration,
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
    let cfg = settings.config(pod_startup, reconcile);
    let mut out = BTreeMap::new();
    for &policy in policies {
        let mut per_pool = Vec::new();
        for (label, pool_builds) in &by_label {
            progress.set_message(format!("{} / {label}", policy.name()));
            per_pool.push((label.to_string(), replay(pool_builds, policy, &cfg)));
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
