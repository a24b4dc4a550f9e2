//! The decision: how many agents a pool needs now. Pure arithmetic on a snapshot; the
//! behaviour (stabilization, rate limits) is applied on top by [`super::behavior`].

use super::behavior::{self, Behavior, History, Limit};
use crate::domain::Timestamp;
use serde::{Deserialize, Serialize};

/// How a pool turns demand into agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyName {
    /// Busy plus queued executors, in agents, plus idle headroom (the default).
    Queue,
    /// The seed's rule, kept for comparison: agents = min(max(queue / 2, 1), 10).
    SeedQueueHalf,
    /// Multi-metric, HPA-style: per signal ceil(current x value / target), the most wins.
    Hpa,
    /// Multi-metric, the seed's weighted scorer.
    Weighted,
    /// Busy plus queued executors, in agents, plus the idle agents worth keeping warm
    /// under the pool's budget (`scaling::warm`).
    Warm,
    /// Busy plus queued executors, in agents, plus every idle agent idle for less than
    /// `keep_idle` (the Kubernetes plugin's `idleMinutes`), for comparison.
    KeepIdle,
}

/// A pool's sizing rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePolicy {
    pub policy: PolicyName,
    /// Executors each agent offers (at least 1).
    pub executors_per_agent: u32,
    pub min: u32,
    pub max: u32,
    /// Idle agents kept ready beyond the demand.
    pub idle_headroom: u32,
    pub behavior: Behavior,
    /// `keep-idle`: how long an idle agent is kept after its last build.
    pub keep_idle_ms: i64,
}

/// A pool's sizes, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolShape {
    pub executors_per_agent: u32,
    pub min: u32,
    pub max: u32,
    pub idle_headroom: u32,
}

impl ScalePolicy {
    /// The sizing rules of a pool: the one place they are built, for the live pool
    /// (`config::PoolPolicy::scale`) and the replay (`SimPolicy`). A `warm` or
    /// `keep-idle` pool's scale-down stabilization window is zero: its budget, or each
    /// agent's own idle time, decides which idle agents stay.
    pub fn new(
        policy: PolicyName,
        shape: PoolShape,
        configured: &Behavior,
        keep_idle_ms: i64,
    ) -> Self {
        let mut behavior = configured.clone();
        if matches!(policy, PolicyName::Warm | PolicyName::KeepIdle) {
            behavior.scale_down.stabilization_window = std::time::Duration::ZERO;
        }
        Self {
            policy,
            executors_per_agent: shape.executors_per_agent.max(1),
            min: shape.min,
            max: shape.max,
            idle_headroom: shape.idle_headroom,
            behavior,
            keep_idle_ms: if policy == PolicyName::KeepIdle {
                keep_idle_ms.max(0)
            } else {
                0
            },
        }
    }
}

/// What the controller saw of one pool at one instant.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PoolSnapshot {
    /// Buildable queue items waiting for this pool's label.
    pub queued: u32,
    pub busy_executors: u32,
    pub idle_executors: u32,
    /// Agents with at least one busy executor: never removed.
    pub busy_agents: u32,
    /// Pods ready (agents able to take work).
    pub ready_agents: u32,
    /// Pods created but not ready yet.
    pub pending_agents: u32,
    /// The Deployment's replicas now.
    pub current_replicas: u32,
    /// Extra executors a forecast asks for (0 when forecasting is off).
    pub forecast_extra: u32,
    /// Idle agents the warm policy keeps beyond the demand (`warm` only).
    pub warm_agents: u32,
    /// When each idle, ready agent became idle (epoch ms), for `keep-idle`.
    pub idle_since_ms: Vec<i64>,
    /// Multi-metric signals, for the `hpa` and `weighted` policies.
    #[serde(skip)]
    pub signals: Vec<super::multi_metric::Signal>,
    /// The behaviour's memory: past recommendations and applied changes.
    #[serde(skip)]
    pub history: History,
}

/// The rule that settled the replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Demand (busy + queued, plus headroom) decided.
    Demand,
    /// The seed-queue-half rule decided.
    SeedQueueHalf,
    /// A multi-metric policy decided.
    MultiMetric,
    /// Raised to the pool's minimum.
    Min,
    /// Capped at the pool's maximum.
    Max,
    /// Held at the agents that are busy: busy agents are never removed.
    BusyFloor,
    /// A stabilization window kept a recent recommendation.
    Stabilized,
    /// A rate-limit policy capped this period's change.
    RateLimited,
    /// Scaling in this direction is disabled.
    Disabled,
    /// Within the delay after a scale-up.
    DelayAfterScaleUp,
    /// A read failed and the controller held the pool at its size (never `decide`'s).
    HoldOnError,
}

/// The outcome for one pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScaleDecision {
    /// Replicas the pool should have.
    pub desired: u32,
    /// Replicas before the behaviour was applied.
    pub recommended: u32,
    pub current: u32,
    pub rule: Rule,
    /// For people: the arithmetic that led here.
    pub reason: String,
    /// The behaviour's memory to keep for the next decision.
    #[serde(skip)]
    pub history: History,
}

/// Decides a pool's replicas.
pub fn decide(snapshot: &PoolSnapshot, policy: &ScalePolicy, now: Timestamp) -> ScaleDecision {
    let per_agent = policy.executors_per_agent.max(1);
    let (raw, mut rule, mut reason) = match policy.policy {
        PolicyName::Queue | PolicyName::Warm | PolicyName::KeepIdle => {
            let demand = snapshot.busy_executors + snapshot.queued + snapshot.forecast_extra;
            let (extra, what) = match policy.policy {
                PolicyName::Warm => (snapshot.warm_agents, "warm"),
                PolicyName::KeepIdle => (
                    snapshot
                        .idle_since_ms
                        .iter()
                        .filter(|&&since| now.millis() - since < policy.keep_idle_ms)
                        .count() as u32,
                    "kept idle",
                ),
                _ => (0, "warm"),
            };
            let agents = demand.div_ceil(per_agent) + policy.idle_headroom + extra;
            let mut reason = format!(
                "ceil(({} busy + {} queued + {} forecast) / {per_agent}) + {} headroom",
                snapshot.busy_executors,
                snapshot.queued,
                snapshot.forecast_extra,
                policy.idle_headroom
            );
            if policy.policy != PolicyName::Queue {
                reason.push_str(&format!(" + {extra} {what}"));
            }
            reason.push_str(&format!(" = {agents}"));
            (agents, Rule::Demand, reason)
        }
        PolicyName::SeedQueueHalf => {
            let agents = (snapshot.queued / 2).clamp(1, 10);
            (
                agents,
                Rule::SeedQueueHalf,
                format!("min(max({} queued / 2, 1), 10) = {agents}", snapshot.queued),
            )
        }
        PolicyName::Hpa | PolicyName::Weighted => {
            let kind = if policy.policy == PolicyName::Hpa {
                super::multi_metric::MultiMetricPolicy::Hpa
            } else {
                super::multi_metric::MultiMetricPolicy::Weighted
            };
            let m = super::multi_metric::decide(kind, &snapshot.signals, snapshot.current_replicas);
            (m.desired, Rule::MultiMetric, m.reason)
        }
    };
    let mut recommended = raw;
    if recommended < policy.min {
        recommended = policy.min;
        rule = Rule::Min;
        reason.push_str(&format!("; raised to min {}", policy.min));
    }
    if recommended > policy.max {
        recommended = policy.max;
        rule = Rule::Max;
        reason.push_str(&format!("; capped at max {}", policy.max));
    }
    if recommended < snapshot.busy_agents {
        recommended = snapshot.busy_agents;
        rule = Rule::BusyFloor;
        reason.push_str(&format!("; held at {} busy agents", snapshot.busy_agents));
    }

    let n = behavior::normalize(
        &policy.behavior,
        &snapshot.history,
        snapshot.current_replicas,
        recommended,
        now,
    );
    let mut desired = n.replicas;
    match n.limit {
        Limit::None => {}
        Limit::Stabilized => {
            rule = Rule::Stabilized;
            reason.push_str(&format!("; stabilized at {desired}"));
        }
        Limit::RateLimited => {
            rule = Rule::RateLimited;
            reason.push_str(&format!("; rate limit allows {desired} now"));
        }
        Limit::Disabled => {
            rule = Rule::Disabled;
            reason.push_str("; scaling in this direction is disabled");
        }
        Limit::DelayAfterScaleUp => {
            rule = Rule::DelayAfterScaleUp;
            reason.push_str("; no scale-down so soon after a scale-up");
        }
    }
    // Whatever the behaviour says, busy agents stay.
    if desired < snapshot.busy_agents {
        desired = snapshot.busy_agents;
        rule = Rule::BusyFloor;
    }
    ScaleDecision {
        desired,
        recommended,
        current: snapshot.current_replicas,
        rule,
        reason,
        history: n.history,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn policy() -> ScalePolicy {
        let mut behavior = Behavior::default();
        behavior.scale_down.stabilization_window = Duration::ZERO;
        behavior.scale_down_delay_after_scale_up = Duration::ZERO;
        ScalePolicy {
            policy: PolicyName::Queue,
            executors_per_agent: 2,
            min: 1,
            max: 20,
            idle_headroom: 0,
            behavior,
            keep_idle_ms: 0,
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_millis(1_700_000_000_000).unwrap()
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            snap: PoolSnapshot,
            tweak: fn(&mut ScalePolicy),
            desired: u32,
            rule: Rule,
        }
        let snap = |queued, busy_exec, busy_agents, current| PoolSnapshot {
            queued,
            busy_executors: busy_exec,
            busy_agents,
            current_replicas: current,
            ready_agents: current,
            ..Default::default()
        };
        let cases = [
            Case {
                name: "demand in agents",
                snap: snap(3, 4, 2, 4),
                tweak: |_| {},
                desired: 4,
                rule: Rule::Demand,
            },
            Case {
                name: "odd demand rounds up",
                snap: snap(3, 0, 0, 2),
                tweak: |_| {},
                desired: 2,
                rule: Rule::Demand,
            },
            Case {
                name: "nothing to do keeps min",
                snap: snap(0, 0, 0, 3),
                tweak: |_| {},
                desired: 1,
                rule: Rule::Min,
            },
            Case {
                name: "max caps a spike",
                snap: snap(200, 0, 0, 20),
                tweak: |_| {},
                desired: 20,
                rule: Rule::Max,
            },
            Case {
                name: "busy agents above max stay",
                snap: snap(0, 6, 6, 6),
                tweak: |p| p.max = 3,
                desired: 6,
                rule: Rule::BusyFloor,
            },
            Case {
                name: "busy agents above demand stay",
                snap: snap(0, 3, 3, 5),
                tweak: |p| p.executors_per_agent = 4,
                desired: 3,
                rule: Rule::BusyFloor,
            },
            Case {
                name: "headroom",
                snap: snap(0, 2, 1, 1),
                tweak: |p| p.idle_headroom = 2,
                desired: 3,
                rule: Rule::Demand,
            },
            Case {
                name: "min zero scales to zero",
                snap: snap(0, 0, 0, 2),
                tweak: |p| p.min = 0,
                desired: 0,
                rule: Rule::Demand,
            },
            Case {
                name: "spike is rate limited",
                snap: snap(100, 0, 0, 1),
                tweak: |_| {},
                desired: 5,
                rule: Rule::RateLimited,
            },
            Case {
                name: "seed rule",
                snap: snap(9, 0, 0, 4),
                tweak: |p| p.policy = PolicyName::SeedQueueHalf,
                desired: 4,
                rule: Rule::SeedQueueHalf,
            },
            Case {
                name: "seed rule floor of one",
                snap: snap(0, 0, 0, 1),
                tweak: |p| {
                    p.policy = PolicyName::SeedQueueHalf;
                    p.min = 0
                },
                desired: 1,
                rule: Rule::SeedQueueHalf,
            },
            Case {
                name: "forecast adds ahead of demand",
                snap: PoolSnapshot {
                    forecast_extra: 6,
                    ..snap(0, 0, 0, 3)
                },
                tweak: |_| {},
                desired: 3,
                rule: Rule::Demand,
            },
        ];
        for c in cases {
            let mut p = policy();
            (c.tweak)(&mut p);
            let d = decide(&c.snap, &p, now());
            assert_eq!(
                (d.desired, d.rule),
                (c.desired, c.rule),
                "{}: {}",
                c.name,
                d.reason
            );
        }
    }

    #[test]
    fn busy_agents_survive_the_stabilized_scale_down() {
        let mut p = policy();
        p.behavior = Behavior::default();
        let mut s = PoolSnapshot {
            busy_executors: 8,
            busy_agents: 4,
            current_replicas: 4,
            ..Default::default()
        };
        let d = decide(&s, &p, now());
        s.history = d.history;
        // All idle now, but the window keeps 4 for 300 s; after it, down to min.
        s.busy_executors = 0;
        s.busy_agents = 0;
        let later = Timestamp::from_millis(now().millis() + 120_000).unwrap();
        let d2 = decide(&s, &p, later);
        assert_eq!(
            (d2.desired, d2.rule),
            (4, Rule::Stabilized),
            "{}",
            d2.reason
        );
        s.history = d2.history;
        let much_later = Timestamp::from_millis(now().millis() + 301_000).unwrap();
        let d3 = decide(&s, &p, much_later);
        assert_eq!(d3.desired, 1, "{}", d3.reason);
    }
}
