//! The frontier: agent-hours against the share of builds started at once, for each
//! family's knob on the same trace, beside the oracle. `simulate --frontier`.

use super::{PolicyFigures, SimConfig, SimPolicy, compare, trace};
use serde::Serialize;
use std::time::Duration;

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

impl FrontierPoint {
    /// The point of `policy` (of `family`) from its replay figures.
    pub fn of(family: &'static str, policy: SimPolicy, f: &PolicyFigures) -> Self {
        let setting = match policy {
            SimPolicy::Window(m) => format!("{m}m"),
            SimPolicy::KeepIdle(d) if d.as_secs() % 60 == 0 => format!("{}m", d.as_secs() / 60),
            SimPolicy::KeepIdle(d) => format!("{}s", d.as_secs()),
            SimPolicy::Warm(b) => format!("{}%", super::engine::percent(b)),
            SimPolicy::Headroom(n) => n.to_string(),
            other => other.name(),
        };
        Self {
            family,
            setting,
            agent_hours: f.agent_hours,
            started_at_once: f.started_at_once(),
            wait_p50_s: f.wait_p50_s,
            wait_p95_s: f.wait_p95_s,
            busy_agents_removed: f.busy_agents_removed,
        }
    }
}

#[cfg(test)]
impl FrontierPoint {
    /// A point with only its cost and share, for tests.
    pub(crate) fn at(family: &'static str, agent_hours: f64, started_at_once: f64) -> Self {
        Self {
            family,
            setting: String::new(),
            agent_hours,
            started_at_once,
            wait_p50_s: 0.0,
            wait_p95_s: 0.0,
            busy_agents_removed: 0,
        }
    }
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
    ("keep-idle", SimPolicy::KeepIdle(Duration::from_secs(600))),
    ("keep-idle", SimPolicy::KeepIdle(Duration::from_secs(1800))),
    ("keep-idle", SimPolicy::KeepIdle(Duration::from_secs(3600))),
    ("keep-idle", SimPolicy::KeepIdle(Duration::from_secs(7200))),
    ("headroom", SimPolicy::Headroom(1)),
    ("headroom", SimPolicy::Headroom(2)),
    ("warm", SimPolicy::Warm(0.05)),
    ("warm", SimPolicy::Warm(0.1)),
    ("warm", SimPolicy::Warm(0.25)),
    ("warm", SimPolicy::Warm(0.5)),
    ("warm", SimPolicy::Warm(1.0)),
];

/// The point of `policy` (of `family`) replayed on one pool's `builds`.
pub fn replay_point(
    builds: &[super::SimBuild],
    cfg: &super::SimConfig,
    family: &'static str,
    policy: SimPolicy,
) -> FrontierPoint {
    let o = super::replay(builds, policy, cfg);
    FrontierPoint::of(
        family,
        policy,
        &super::figures(&[(&o, cfg.agent_hour_price)], None),
    )
}

/// A pool's frontier on its own recorded builds, with its current settings marked.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PoolFrontier {
    pub builds: usize,
    pub oracle_agent_hours: f64,
    /// The pool's own settings replayed: family `current`, setting the policy.
    #[schema(value_type = Object)]
    pub current: FrontierPoint,
    #[schema(value_type = Vec<Object>)]
    pub frontier: Vec<FrontierPoint>,
}

/// Replays `builds` (one pool's, sorted by queue time) under every frontier policy, the
/// oracle and the pool's own `current` policy; `None` if `stop` said so between two
/// replays (nobody waits for the answer any more).
pub fn pool_frontier(
    builds: &[super::SimBuild],
    cfg: &super::SimConfig,
    current: SimPolicy,
    stop: &dyn Fn() -> bool,
) -> Option<PoolFrontier> {
    let point = |family, policy| (!stop()).then(|| replay_point(builds, cfg, family, policy));
    let oracle = super::replay(builds, SimPolicy::Oracle, cfg);
    let mut current_point = point("current", current)?;
    current_point.setting = current.name();
    Some(PoolFrontier {
        builds: builds.len(),
        oracle_agent_hours: oracle.agent_ms as f64 / 3_600_000.0,
        current: current_point,
        frontier: FRONTIER
            .iter()
            .map(|&(f, p)| point(f, p))
            .collect::<Option<_>>()?,
    })
}

/// Replays every frontier policy and the oracle on the same builds.
pub fn frontier(
    builds: &[trace::TraceBuild],
    cfg: &SimConfig,
    progress: &indicatif::ProgressBar,
) -> Frontier {
    let mut policies: Vec<SimPolicy> = FRONTIER.iter().map(|(_, p)| *p).collect();
    policies.push(SimPolicy::Oracle);
    let results = compare(builds, &policies, cfg, progress);
    Frontier {
        oracle_agent_hours: results[&SimPolicy::Oracle.name()].agent_hours,
        frontier: FRONTIER
            .iter()
            .map(|&(f, p)| FrontierPoint::of(f, p, &results[&p.name()]))
            .collect(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_is_dominated_only_by_a_cheaper_heuristic_that_starts_as_many() {
        let point = FrontierPoint::at;
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
}
