//! The plan: the one pure step between what a pool looks like and what to do about it.
//! The live controller, the replay and the demo all call [`plan`] with what they
//! gathered, and apply what it returns; none of them decides anything itself.

use super::decide::{PolicyName, PoolSnapshot, ScaleDecision, ScalePolicy, decide};
use super::multi_metric::{self, Signal};
use super::schedule::{Schedule, policy_at};
use super::{History, multi_metric::MultiMetricPolicy};
use crate::domain::Timestamp;
use std::collections::HashMap;
use std::hash::Hash;

/// How far back the demand-rate signal counts builds entering the queue.
pub const DEMAND_WINDOW_MS: i64 = 5 * 60_000;
/// How far back the queue-wait signal reads the waits of builds that started.
pub const WAIT_WINDOW_MS: i64 = 15 * 60_000;

/// Why a reconcile runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// A wake-up: a build entered the queue (a queue webhook), a pipeline announced one,
    /// or a pod of the pool turned Ready or went away.
    Event,
    /// The reconcile period.
    Periodic,
}

/// One agent of the pool as gathered: a pod of the Deployment, with its Jenkins node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentView {
    /// Ready to take builds (pod ready, node online).
    pub ready: bool,
    /// At least one executor running a build: never removed.
    pub busy: bool,
    /// When it last became idle (epoch ms), when known.
    pub idle_since_ms: Option<i64>,
}

/// What the gather step saw of one pool.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// Buildable queue items waiting for the pool's label.
    pub queued: u32,
    pub busy_executors: u32,
    pub idle_executors: u32,
    /// The Deployment's replicas now.
    pub current_replicas: u32,
    /// The pool's agents not being removed, in any order.
    pub agents: Vec<AgentView>,
    /// Idle agents the warm policy asks for (`warm` only).
    pub warm_agents: u32,
    /// Executors a forecast asks for beyond today's demand.
    pub forecast_extra: u32,
    /// Multi-metric signals, for the `hpa` and `weighted` policies.
    pub signals: Vec<Signal>,
}

/// What to do with one pool now.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub decision: ScaleDecision,
    /// On a scale-in, the agents to remove (indices into [`Observation::agents`]),
    /// starting ones first, then idle ones longest idle first; never a busy one. There
    /// may be fewer than the replicas removed when pods lag the Deployment.
    pub victims: Vec<usize>,
    /// The victims that are ready, whose Jenkins nodes are taken offline first when the
    /// pool drains.
    pub drain: Vec<usize>,
}

/// The decision for one pool at `now`: the sizing rules in force then (schedules
/// included), `decide` on what was observed, and which agents a scale-in removes.
pub fn plan(
    seen: &Observation,
    policy: &ScalePolicy,
    schedules: &[Schedule],
    mut history: History,
    now: Timestamp,
) -> Plan {
    // A pool found at some size holds it through the scale-down window first.
    history.seed(now, seen.current_replicas);
    let ready = seen.agents.iter().filter(|a| a.ready).count() as u32;
    let snapshot = PoolSnapshot {
        queued: seen.queued,
        busy_executors: seen.busy_executors,
        idle_executors: seen.idle_executors,
        busy_agents: seen.agents.iter().filter(|a| a.busy).count() as u32,
        ready_agents: ready,
        pending_agents: seen.agents.len() as u32 - ready,
        current_replicas: seen.current_replicas,
        forecast_extra: seen.forecast_extra,
        warm_agents: seen.warm_agents,
        // Only `keep-idle` reads when its agents became idle.
        idle_since_ms: if policy.policy == PolicyName::KeepIdle {
            seen.agents
                .iter()
                .filter(|a| a.ready && !a.busy)
                .filter_map(|a| a.idle_since_ms)
                .collect()
        } else {
            Vec::new()
        },
        signals: seen.signals.clone(),
        history,
    };
    let (policy, schedule) = policy_at(policy, schedules, now);
    let mut decision = decide(&snapshot, &policy, now);
    if let Some(s) = schedule {
        decision
            .reason
            .push_str(&format!("; min {} from schedule {}", s.min, s.pattern));
    }
    let want = seen.current_replicas.saturating_sub(decision.desired) as usize;
    let victims = victims(&seen.agents, want);
    let drain = victims
        .iter()
        .copied()
        .filter(|&i| seen.agents[i].ready)
        .collect();
    Plan {
        decision,
        victims,
        drain,
    }
}

/// Whether a pool needs no periodic reconcile until something happens: its size is
/// what its demand asks for, and no agent is kept idle for a while above the minimum
/// (`keep-idle` agents leave on a later tick, with no event to wake it).
pub fn at_rest(policy: &ScalePolicy, seen: &Observation, recommended: u32, after: u32) -> bool {
    let kept_idle = policy.policy == PolicyName::KeepIdle
        && recommended > policy.min
        && seen.agents.iter().any(|a| a.ready && !a.busy);
    after == seen.current_replicas && recommended == seen.current_replicas && !kept_idle
}

/// Up to `want` agents to remove: starting ones first, newest first (as the ReplicaSet
/// removes pods not ready first, the newest of them first; agents are given oldest
/// first), then idle ones longest idle first (an agent idle since an unknown time counts
/// as idle longest). A busy agent is never chosen.
fn victims(agents: &[AgentView], want: usize) -> Vec<usize> {
    if want == 0 {
        return Vec::new();
    }
    let mut idle: Vec<usize> = (0..agents.len())
        .filter(|&i| agents[i].ready && !agents[i].busy)
        .collect();
    idle.sort_by_key(|&i| (agents[i].idle_since_ms.unwrap_or(i64::MIN), i));
    (0..agents.len())
        .rev()
        .filter(|&i| !agents[i].ready && !agents[i].busy)
        .chain(idle)
        .take(want)
        .collect()
}

/// When each agent was first seen idle. Jenkins does not say when a node became idle,
/// so the controller remembers it from reconcile to reconcile; the replay does the same,
/// so both see the same instants.
#[derive(Debug, Clone, Default)]
pub struct IdleSince<K> {
    seen: HashMap<K, i64>,
}

impl<K: Hash + Eq> IdleSince<K> {
    /// The instant `agent` was first seen idle, when it is idle now.
    pub fn observe(&mut self, agent: K, idle: bool, now: i64) -> Option<i64> {
        if idle {
            Some(*self.seen.entry(agent).or_insert(now))
        } else {
            self.seen.remove(&agent);
            None
        }
    }

    /// Forgets agents that are gone.
    pub fn keep(&mut self, alive: impl Fn(&K) -> bool) {
        self.seen.retain(|k, _| alive(k));
    }
}

/// The demand-rate and queue-wait signals from what happened recently: builds that
/// entered the queue within [`DEMAND_WINDOW_MS`] (per minute), and the p95 of the waits
/// of builds started within [`WAIT_WINDOW_MS`] together with the ages of builds still
/// queued (a queue nobody takes from is a long wait, not none). CPU and memory are the
/// pods' use when read; a failed read is `None`, never 0.
pub fn signals(
    cpu_memory: (Option<f64>, Option<f64>),
    arrivals_in_window: Option<usize>,
    waits_ms: Option<Vec<i64>>,
) -> Vec<Signal> {
    let wait_p95 = waits_ms.map(|mut w| {
        w.iter_mut().for_each(|x| *x = (*x).max(0));
        w.sort_unstable();
        // No build started or waiting: nobody waited.
        crate::domain::nearest_rank(&w, 0.95).unwrap_or(0) as f64
    });
    let rate = arrivals_in_window.map(|n| n as f64 * 60_000.0 / DEMAND_WINDOW_MS as f64);
    multi_metric::signals(cpu_memory.0, cpu_memory.1, rate, wait_p95).to_vec()
}

/// The signals scored as the pool's multi-metric policy scores them (or as `weighted`
/// would, for pools that do not use them), for the decision's inputs.
pub fn scored_signals(policy: PolicyName, signals: &[Signal], current: u32) -> serde_json::Value {
    let (kind, name, acting) = match policy {
        PolicyName::Hpa => (MultiMetricPolicy::Hpa, "hpa", true),
        PolicyName::Weighted => (MultiMetricPolicy::Weighted, "weighted", true),
        _ => (MultiMetricPolicy::Weighted, "weighted", false),
    };
    let m = multi_metric::decide(kind, signals, current);
    serde_json::json!({
        "scored_by": name,
        "acting": acting,
        "desired": m.desired,
        "total_score": m.total_score,
        "reason": m.reason,
        "scores": m.signals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scaling::Behavior;

    fn policy() -> ScalePolicy {
        ScalePolicy {
            policy: PolicyName::Queue,
            executors_per_agent: 1,
            min: 0,
            max: 10,
            idle_headroom: 0,
            behavior: Behavior {
                scale_down: crate::scaling::ScalingRules {
                    stabilization_window: std::time::Duration::ZERO,
                    ..Behavior::default().scale_down
                },
                scale_down_delay_after_scale_up: std::time::Duration::ZERO,
                ..Behavior::default()
            },
            keep_idle_ms: 0,
        }
    }

    fn agent(ready: bool, busy: bool, idle_since_ms: Option<i64>) -> AgentView {
        AgentView {
            ready,
            busy,
            idle_since_ms,
        }
    }

    #[test]
    fn a_scale_in_removes_starting_then_longest_idle_never_busy() {
        let seen = Observation {
            busy_executors: 1,
            current_replicas: 5,
            agents: vec![
                agent(true, false, Some(3_000)),
                agent(true, true, None),
                agent(false, false, None),
                agent(true, false, Some(1_000)),
                agent(true, false, Some(2_000)),
            ],
            ..Default::default()
        };
        let now = Timestamp::from_millis(10_000).unwrap();
        let p = plan(&seen, &policy(), &[], History::default(), now);
        assert_eq!(p.decision.desired, 1);
        assert_eq!(p.victims, [2, 3, 4, 0]);
        assert_eq!(p.drain, [3, 4, 0], "only ready agents go offline first");
    }

    #[test]
    fn keep_idle_reads_when_agents_became_idle() {
        let seen = Observation {
            current_replicas: 2,
            agents: vec![
                agent(true, false, Some(9_000)),
                agent(true, false, Some(1_000)),
            ],
            ..Default::default()
        };
        let p = ScalePolicy {
            policy: PolicyName::KeepIdle,
            keep_idle_ms: 5_000,
            ..policy()
        };
        let now = Timestamp::from_millis(10_000).unwrap();
        let out = plan(&seen, &p, &[], History::default(), now);
        assert_eq!(out.decision.desired, 1, "{}", out.decision.reason);
        assert_eq!(out.victims, [1], "the agent idle longest goes");
    }

    #[test]
    fn signals_count_the_still_queued_and_never_read_failures_as_zero() {
        let s = signals((None, Some(50.0)), Some(10), Some(vec![100, -5, 90_000]));
        assert_eq!(s[0].value, None);
        assert_eq!(s[1].value, Some(50.0));
        assert_eq!(s[2].value, Some(2.0), "10 builds in 5 minutes");
        assert_eq!(s[3].value, Some(90_000.0));
        let unknown = signals((None, None), None, None);
        assert!(unknown.iter().all(|s| s.value.is_none()));
        assert_eq!(
            signals((None, None), Some(0), Some(vec![]))[3].value,
            Some(0.0)
        );
    }
}
