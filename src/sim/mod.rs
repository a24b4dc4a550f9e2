//! The replay simulator: real CI history against any scaling policy, so every claim about
//! cost and wait is measured. `jenkins-autopilot simulate`.

pub mod engine;
pub mod predictive;
pub mod trace;

pub use engine::{SimBuild, SimConfig, SimOutcome, SimPolicy, replay};

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
        }
    }
}

impl SimPoolSettings {
    /// The engine's configuration for this pool.
    pub fn config(&self, pod_startup: Duration, reconcile: Duration) -> SimConfig {
        SimConfig {
            executors_per_agent: self.executors_per_agent.max(1),
            min: self.min,
            max: self.max,
            idle_headroom: self.idle_headroom,
            behavior: self.behavior.clone(),
            pod_startup_ms: pod_startup.as_millis() as i64,
            reconcile_ms: (reconcile.as_millis() as i64).max(1),
            agent_hour_price: self.agent_cpu * self.cpu_hour_price
                + self.agent_memory_gib * self.memory_gib_hour_price,
            // Weekly refits on four weeks of 5-minute steps: 50 trees keep a long replay
            // to seconds.
            forecast_params: crate::forecast::ModelParams {
                trees: 50,
                max_depth: 10,
                seed: 42,
            },
            warm_max_idle: self.warm_max_idle,
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

/// The nearest-rank percentile of sorted waits in ms, in seconds (0 when there are none).
pub(crate) fn percentile(sorted: &[i64], p: f64) -> f64 {
    crate::analytics::nearest_rank(sorted, p).map_or(0.0, |ms| ms as f64 / 1000.0)
}

fn figures(
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
    pod_startup: Duration,
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

/// One point of the frontier: a policy family at one setting, on one trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrontierPoint {
    /// `window`, `keep-idle`, `headroom` or `warm`.
    pub family: &'static str,
    /// The family's knob: `15m`, `1`, `25%`.
    pub setting: String,
    pub agent_hours: f64,
    /// Share of builds that started without waiting, 0 to 1.
    pub started_at_once: f64,
    pub wait_p50_s: f64,
    pub wait_p95_s: f64,
    pub busy_agents_removed: u64,
}

/// Agent-hours against builds started at once for each family's knob, beside the oracle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Frontier {
    pub oracle_agent_hours: f64,
    pub frontier: Vec<FrontierPoint>,
}

impl Frontier {
    /// The heuristic points (every family but `warm`) that start at least as many builds
    /// at once as `p` for no more agent-hours: `p` is dominated when there is one.
    pub fn dominating(&self, p: &FrontierPoint) -> Vec<&FrontierPoint> {
        self.frontier
            .iter()
            .filter(|h| h.family != "warm")
            .filter(|h| h.agent_hours <= p.agent_hours && h.started_at_once >= p.started_at_once)
            .collect()
    }
}

/// The policies swept: a scale-down window, the Kubernetes plugin's keep-idle minutes, a
/// fixed idle headroom, and warm capacity at several budgets.
pub const FRONTIER: [(&str, SimPolicy); 17] = [
    ("window", SimPolicy::Window(0)),
    ("window", SimPolicy::Window(15)),
    ("window", SimPolicy::Window(30)),
    ("window", SimPolicy::Window(60)),
    ("window", SimPolicy::Window(120)),
    ("window", SimPolicy::Window(240)),
    ("keep-idle", SimPolicy::KeepIdle(10)),
    ("keep-idle", SimPolicy::KeepIdle(30)),
    ("keep-idle", SimPolicy::KeepIdle(60)),
    ("keep-idle", SimPolicy::KeepIdle(120)),
    ("headroom", SimPolicy::Headroom(1)),
    ("headroom", SimPolicy::Headroom(2)),
    ("warm", SimPolicy::Warm(5)),
    ("warm", SimPolicy::Warm(10)),
    ("warm", SimPolicy::Warm(25)),
    ("warm", SimPolicy::Warm(50)),
    ("warm", SimPolicy::Warm(100)),
];

/// Replays every frontier policy and the oracle on the same builds.
pub fn frontier(
    builds: &[trace::TraceBuild],
    settings: &SimPoolSettings,
    pod_startup: Duration,
    reconcile: Duration,
    progress: &indicatif::ProgressBar,
) -> Frontier {
    let mut policies: Vec<SimPolicy> = FRONTIER.iter().map(|(_, p)| *p).collect();
    policies.push(SimPolicy::Oracle);
    let results = compare(
        builds,
        &policies,
        settings,
        pod_startup,
        reconcile,
        progress,
    );
    let point = |family: &'static str, policy: SimPolicy| {
        let f = &results[&policy.name()];
        let setting = match policy {
            SimPolicy::Window(m) | SimPolicy::KeepIdle(m) => format!("{m}m"),
            SimPolicy::Warm(b) => format!("{b}%"),
            SimPolicy::Headroom(n) => n.to_string(),
            other => other.name(),
        };
        FrontierPoint {
            family,
            setting,
            agent_hours: f.agent_hours,
            started_at_once: if f.builds == 0 {
                0.0
            } else {
                (f.builds - f.builds_waited) as f64 / f.builds as f64
            },
            wait_p50_s: f.wait_p50_s,
            wait_p95_s: f.wait_p95_s,
            busy_agents_removed: f.busy_agents_removed,
        }
    };
    Frontier {
        oracle_agent_hours: results[&SimPolicy::Oracle.name()].agent_hours,
        frontier: FRONTIER.iter().map(|&(f, p)| point(f, p)).collect(),
    }
}

/// The frontier as people read it: each point's agent-hours also as a multiple of the
/// oracle's, and for `warm` the heuristic points that dominate it, if any.
pub fn frontier_table(f: &Frontier) -> String {
    let mut s = format!(
        "{:<10} {:>8} {:>11} {:>8} {:>9} {:>9} {:>9} {:>5}  {}\n",
        "family",
        "setting",
        "agent-hours",
        "x oracle",
        "at once",
        "wait p50",
        "wait p95",
        "busy-",
        "dominated by"
    );
    for p in &f.frontier {
        let dominated = if p.family == "warm" {
            let d: Vec<String> = f
                .dominating(p)
                .iter()
                .map(|h| format!("{} {}", h.family, h.setting))
                .collect();
            if d.is_empty() {
                "none".to_string()
            } else {
                d.join(", ")
            }
        } else {
            String::new()
        };
        s.push_str(&format!(
            "{:<10} {:>8} {:>11.1} {:>7.2}x {:>8.1}% {:>8.0}s {:>8.0}s {:>5}  {dominated}\n",
            p.family,
            p.setting,
            p.agent_hours,
            p.agent_hours / f.oracle_agent_hours.max(f64::MIN_POSITIVE),
            p.started_at_once * 100.0,
            p.wait_p50_s,
            p.wait_p95_s,
            p.busy_agents_removed
        ));
    }
    s.push_str(&format!("oracle     {:>20.1}\n", f.oracle_agent_hours));
    s
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
    fn a_point_is_dominated_only_by_a_cheaper_heuristic_that_starts_as_many() {
        let point = |family, agent_hours, started_at_once| FrontierPoint {
            family,
            setting: String::new(),
            agent_hours,
            started_at_once,
            wait_p50_s: 0.0,
            wait_p95_s: 0.0,
            busy_agents_removed: 0,
        };
        let f = Frontier {
            oracle_agent_hours: 10.0,
            frontier: vec![
                point("window", 12.0, 0.3),
                point("headroom", 20.0, 0.9),
                point("warm", 11.0, 0.4),
                point("warm", 13.0, 0.2),
            ],
        };
        assert!(f.dominating(&f.frontier[2]).is_empty());
        let d = f.dominating(&f.frontier[3]);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].family, "window");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let w: Vec<i64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile(&w, 0.5), 50.0);
        assert_eq!(percentile(&w, 0.95), 95.0);
        assert_eq!(percentile(&w, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
