//! HPA-style behaviour, after the Kubernetes HorizontalPodAutoscaler's
//! `normalizeDesiredReplicasWithBehaviors`: stabilization windows, rate-limit policies per
//! period with a select policy, plus a scale-down delay after any scale-up. Pure: the clock
//! and the history come in, the new history goes out.

pub use super::history::{History, Past};
use crate::domain::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How a rate-limit policy counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PolicyKind {
    /// At most `value` agents per period.
    Pods,
    /// At most `value` percent of the agents at the start of the period.
    Percent,
}

/// One rate-limit policy: `value` pods or percent per `period`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatePolicy {
    #[serde(rename = "type")]
    pub kind: PolicyKind,
    pub value: u32,
    #[serde(with = "humantime_serde")]
    pub period: Duration,
}

/// Which policy wins when several apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SelectPolicy {
    /// The policy that allows the most change.
    Max,
    /// The policy that allows the least change.
    Min,
    /// No change in this direction at all.
    Disabled,
}

/// The rules for one direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalingRules {
    /// Recommendations of this long are considered: scale-up takes their lowest,
    /// scale-down their highest.
    #[serde(with = "humantime_serde")]
    pub stabilization_window: Duration,
    pub select_policy: SelectPolicy,
    pub policies: Vec<RatePolicy>,
}

/// Both directions and the delay after a scale-up. Spelled as the HPA's `behavior`
/// (`scaleUp`, `scaleDown`, `stabilizationWindow`, `selectPolicy`, `policies`); a direction
/// left out keeps its default, a direction given is given whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "PartialBehavior")]
pub struct Behavior {
    pub scale_up: ScalingRules,
    pub scale_down: ScalingRules,
    /// No scale-down for this long after a scale-up.
    #[serde(with = "humantime_serde")]
    pub scale_down_delay_after_scale_up: Duration,
}

/// A behaviour as written: every field optional, as the HPA's. What a direction leaves
/// out is that direction's default (`scaleDown: {stabilizationWindow: 10m}` keeps the
/// scale-down policies and select policy).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PartialBehavior {
    scale_up: Option<PartialRules>,
    scale_down: Option<PartialRules>,
    #[serde(default, with = "humantime_serde")]
    scale_down_delay_after_scale_up: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PartialRules {
    #[serde(default, with = "humantime_serde")]
    stabilization_window: Option<Duration>,
    select_policy: Option<SelectPolicy>,
    policies: Option<Vec<RatePolicy>>,
}

impl PartialRules {
    fn over(self, d: ScalingRules) -> ScalingRules {
        ScalingRules {
            stabilization_window: self.stabilization_window.unwrap_or(d.stabilization_window),
            select_policy: self.select_policy.unwrap_or(d.select_policy),
            policies: self.policies.unwrap_or(d.policies),
        }
    }
}

impl From<PartialBehavior> for Behavior {
    fn from(p: PartialBehavior) -> Self {
        let d = Behavior::default();
        Self {
            scale_up: p.scale_up.unwrap_or_default().over(d.scale_up),
            scale_down: p.scale_down.unwrap_or_default().over(d.scale_down),
            scale_down_delay_after_scale_up: p
                .scale_down_delay_after_scale_up
                .unwrap_or(d.scale_down_delay_after_scale_up),
        }
    }
}

impl Behavior {
    /// How far back the behaviour looks: its longest window, delay or policy period.
    pub fn memory(&self) -> Duration {
        [
            self.scale_up.stabilization_window,
            self.scale_down.stabilization_window,
            self.scale_down_delay_after_scale_up,
        ]
        .into_iter()
        .chain(self.scale_up.policies.iter().map(|p| p.period))
        .chain(self.scale_down.policies.iter().map(|p| p.period))
        .max()
        .unwrap_or_default()
    }
}

impl Default for Behavior {
    /// The HPA's defaults: up +100 % or +4 agents per 15 s (the larger), no up
    /// stabilization; down to the highest recommendation of the last 300 s, at most 100 %
    /// per 15 s; and no scale-down within 60 s of a scale-up.
    fn default() -> Self {
        Self {
            scale_up: ScalingRules {
                stabilization_window: Duration::ZERO,
                select_policy: SelectPolicy::Max,
                policies: vec![
                    RatePolicy {
                        kind: PolicyKind::Percent,
                        value: 100,
                        period: Duration::from_secs(15),
                    },
                    RatePolicy {
                        kind: PolicyKind::Pods,
                        value: 4,
                        period: Duration::from_secs(15),
                    },
                ],
            },
            scale_down: ScalingRules {
                stabilization_window: Duration::from_secs(300),
                select_policy: SelectPolicy::Max,
                policies: vec![RatePolicy {
                    kind: PolicyKind::Percent,
                    value: 100,
                    period: Duration::from_secs(15),
                }],
            },
            scale_down_delay_after_scale_up: Duration::from_secs(60),
        }
    }
}

/// Why the behaviour changed the recommendation, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Limit {
    /// Nothing held the recommendation back.
    None,
    /// A stabilization window kept an earlier, higher (or lower) recommendation.
    Stabilized,
    /// A rate-limit policy capped the change for this period.
    RateLimited,
    /// Scale-down is disabled by `selectPolicy: Disabled`.
    Disabled,
    /// Within the delay after a scale-up.
    DelayAfterScaleUp,
}

/// The behaviour's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    pub replicas: u32,
    pub limit: Limit,
    pub history: History,
}

/// Applies the behaviour to a recommendation. `current` is the replicas now.
pub fn normalize(
    behavior: &Behavior,
    history: &History,
    current: u32,
    recommended: u32,
    now: Timestamp,
) -> Normalized {
    let mut history = history.clone();
    history.prune(now, behavior.memory());

    let within =
        |window: Duration, t: Timestamp| t.millis() > now.millis() - window.as_millis() as i64;
    let mut up_rec = recommended;
    let mut down_rec = recommended;
    for (t, r) in &history.recommendations {
        if within(behavior.scale_up.stabilization_window, *t) {
            up_rec = up_rec.min(*r);
        }
        if within(behavior.scale_down.stabilization_window, *t) {
            down_rec = down_rec.max(*r);
        }
    }
    history.recommendations.push_back((now, recommended));

    let mut stabilized = current;
    if stabilized < up_rec {
        stabilized = up_rec;
    }
    if stabilized > down_rec {
        stabilized = down_rec;
    }
    let mut limit = if stabilized != recommended {
        Limit::Stabilized
    } else {
        Limit::None
    };

    let replicas = if stabilized > current {
        let cap = scale_up_limit(&behavior.scale_up, &history, current, now);
        if stabilized > cap {
            limit = if behavior.scale_up.select_policy == SelectPolicy::Disabled {
                Limit::Disabled
            } else {
                Limit::RateLimited
            };
            cap
        } else {
            stabilized
        }
    } else if stabilized < current {
        if let Some(up) = history.last_scale_up
            && within(behavior.scale_down_delay_after_scale_up, up)
        {
            limit = Limit::DelayAfterScaleUp;
            current
        } else {
            let floor = scale_down_limit(&behavior.scale_down, &history, current, now);
            if stabilized < floor {
                limit = if behavior.scale_down.select_policy == SelectPolicy::Disabled {
                    Limit::Disabled
                } else {
                    Limit::RateLimited
                };
                floor
            } else {
                stabilized
            }
        }
    } else {
        stabilized
    };
    Normalized {
        replicas,
        limit,
        history,
    }
}

fn scale_up_limit(rules: &ScalingRules, history: &History, current: u32, now: Timestamp) -> u32 {
    if rules.select_policy == SelectPolicy::Disabled {
        return current;
    }
    let limits = rules.policies.iter().map(|p| {
        let added = history.changes_since(now.millis() - p.period.as_millis() as i64, true);
        let start = current.saturating_sub(added);
        match p.kind {
            PolicyKind::Pods => start.saturating_add(p.value),
            PolicyKind::Percent => {
                (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as u32
            }
        }
    });
    let limit = match rules.select_policy {
        SelectPolicy::Min => limits.min(),
        _ => limits.max(),
    };
    // No policy at all: unlimited.
    limit.unwrap_or(u32::MAX).max(current)
}

fn scale_down_limit(rules: &ScalingRules, history: &History, current: u32, now: Timestamp) -> u32 {
    if rules.select_policy == SelectPolicy::Disabled {
        return current;
    }
    let limits = rules.policies.iter().map(|p| {
        let removed = history.changes_since(now.millis() - p.period.as_millis() as i64, false);
        let start = current.saturating_add(removed);
        match p.kind {
            PolicyKind::Pods => start.saturating_sub(p.value),
            PolicyKind::Percent => {
                (f64::from(start) * (1.0 - f64::from(p.value.min(100)) / 100.0)) as u32
            }
        }
    });
    // For scale-down the policy allowing the most change is the lowest floor.
    let limit = match rules.select_policy {
        SelectPolicy::Min => limits.max(),
        _ => limits.min(),
    };
    limit.unwrap_or(0).min(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_millis(1_700_000_000_000 + s * 1000).unwrap()
    }

    /// Runs a sequence of (second, recommendation) through the behaviour, applying every
    /// result, and returns the replicas after each step.
    fn run(behavior: &Behavior, start: u32, steps: &[(i64, u32)]) -> Vec<(u32, Limit)> {
        let mut history = History::default();
        let mut current = start;
        let mut out = Vec::new();
        for (s, rec) in steps {
            let n = normalize(behavior, &history, current, *rec, at(*s));
            history = n.history;
            history.record_change(at(*s), current, n.replicas);
            current = n.replicas;
            out.push((n.replicas, n.limit));
        }
        out
    }

    #[test]
    fn a_partial_behavior_keeps_each_directions_defaults() {
        let b: Behavior = serde_yaml::from_str("scaleDown: {stabilizationWindow: 10m}").unwrap();
        let d = Behavior::default();
        assert_eq!(b.scale_down.stabilization_window, Duration::from_secs(600));
        assert_eq!(b.scale_down.select_policy, d.scale_down.select_policy);
        assert_eq!(b.scale_down.policies, d.scale_down.policies);
        assert_eq!(b.scale_up, d.scale_up);
        assert_eq!(
            b.scale_down_delay_after_scale_up,
            d.scale_down_delay_after_scale_up
        );
        let e: Behavior = serde_yaml::from_str("{}").unwrap();
        assert_eq!(e, d);
        assert!(serde_yaml::from_str::<Behavior>("scaleDown: {window: 1m}").is_err());
    }

    #[test]
    fn a_spike_scales_up_at_once_within_the_rate_limit() {
        let b = Behavior::default();
        // From 2: +100 % gives 4, +4 pods gives 6; the larger wins.
        assert_eq!(run(&b, 2, &[(0, 50)]), [(6, Limit::RateLimited)]);
        // 15 s later the period has passed: 6 -> 12 (+100 %).
        let r = run(&b, 2, &[(0, 50), (5, 50), (16, 50)]);
        assert_eq!(r.iter().map(|x| x.0).collect::<Vec<_>>(), [6, 6, 12]);
        // From 0, +4 pods is what allows any growth.
        assert_eq!(run(&b, 0, &[(0, 3)]), [(3, Limit::None)]);
    }

    #[test]
    fn flapping_demand_does_not_flap_the_pool() {
        let b = Behavior::default();
        let steps: Vec<(i64, u32)> = (0..40)
            .map(|i| (i * 10, if i % 2 == 0 { 8 } else { 2 }))
            .collect();
        let r = run(&b, 8, &steps);
        assert!(r.iter().all(|(n, _)| *n == 8), "{r:?}");
    }

    #[test]
    fn a_history_resumed_from_stored_decisions_decides_as_the_old_leader_would() {
        // Rate limits on both sides, a window and a delay: every part of the history counts.
        let mut b = Behavior::default();
        b.scale_up.policies = vec![RatePolicy {
            kind: PolicyKind::Pods,
            value: 2,
            period: Duration::from_secs(60),
        }];
        b.scale_down.policies = vec![RatePolicy {
            kind: PolicyKind::Pods,
            value: 1,
            period: Duration::from_secs(30),
        }];
        let recs: Vec<(i64, u32)> = (0..120)
            .map(|i| {
                let s = i * 10;
                let r = match s {
                    0..=99 => 3,
                    100..=399 => 9,
                    400..=699 => 2,
                    _ => 6,
                };
                (s, r)
            })
            .collect();
        for takeover in [150, 420, 650, 720, 900] {
            // The old leader: every reconcile in memory, and only the changes stored.
            let mut history = History::default();
            let mut current = 3;
            let mut stored: Vec<Past> = Vec::new();
            let mut last_key = None;
            let mut steps = recs.iter().copied().peekable();
            while let Some(&(s, rec)) = steps.peek() {
                if s >= takeover {
                    break;
                }
                steps.next();
                history.seed(at(s), current);
                let n = normalize(&b, &history, current, rec, at(s));
                history = n.history;
                history.record_change(at(s), current, n.replicas);
                let key = (rec, current, n.replicas);
                if last_key != Some(key) {
                    stored.push(Past {
                        at: at(s),
                        recommended: Some(rec),
                        change: (n.replicas != current).then_some((current, n.replicas)),
                    });
                    last_key = Some(key);
                }
                current = n.replicas;
            }
            // The new leader resumes from the stored rows; both go on from the takeover.
            let mut resumed = History::resume(&stored, at(takeover - 1));
            let (mut a, mut b_current) = (current, current);
            let mut prev = current;
            for (s, rec) in steps {
                resumed.seed(at(s), b_current);
                history.seed(at(s), a);
                let old = normalize(&b, &history, a, rec, at(s));
                let new = normalize(&b, &resumed, b_current, rec, at(s));
                // The stored rows tell when a recommendation changed, not the last
                // reconcile that made the old one: the new leader may keep an old
                // recommendation one reconcile longer, never shorter.
                assert!(
                    new.replicas == old.replicas || new.replicas == prev,
                    "takeover at {takeover} s, step {s} s: {} vs {} (before: {prev})",
                    new.replicas,
                    old.replicas
                );
                prev = old.replicas;
                history = old.history;
                history.record_change(at(s), a, old.replicas);
                resumed = new.history;
                resumed.record_change(at(s), b_current, new.replicas);
                a = old.replicas;
                b_current = new.replicas;
            }
        }
    }

    #[test]
    fn scale_down_waits_for_the_window_then_follows() {
        let b = Behavior::default();
        // High at 0 s, then low for 400 s: nothing drops until the high leaves the window.
        let mut steps = vec![(0, 10)];
        steps.extend((1..=40).map(|i| (i * 10, 2)));
        let r = run(&b, 10, &steps);
        let at_s = |s: i64| r[(s / 10) as usize].0;
        assert_eq!(at_s(290), 10);
        assert_eq!(r[(290 / 10) as usize].1, Limit::Stabilized);
        assert_eq!(at_s(310), 2);
    }

    #[test]
    fn no_scale_down_right_after_a_scale_up() {
        let mut b = Behavior::default();
        b.scale_down.stabilization_window = Duration::ZERO;
        let r = run(&b, 1, &[(0, 5), (30, 1), (61, 1)]);
        assert_eq!(
            r,
            [
                (5, Limit::None),
                (5, Limit::DelayAfterScaleUp),
                (1, Limit::None)
            ]
        );
    }

    #[test]
    fn scale_down_rate_policies_and_select() {
        let mut b = Behavior {
            scale_down_delay_after_scale_up: Duration::ZERO,
            ..Default::default()
        };
        b.scale_down.stabilization_window = Duration::ZERO;
        b.scale_down.policies = vec![
            RatePolicy {
                kind: PolicyKind::Pods,
                value: 2,
                period: Duration::from_secs(60),
            },
            RatePolicy {
                kind: PolicyKind::Percent,
                value: 10,
                period: Duration::from_secs(60),
            },
        ];
        // Max: the policy allowing the most change (2 pods from 10 -> 8).
        assert_eq!(run(&b, 10, &[(0, 1)]), [(8, Limit::RateLimited)]);
        // Within the same period nothing more may go.
        assert_eq!(run(&b, 10, &[(0, 1), (30, 1)])[1], (8, Limit::RateLimited));
        b.scale_down.select_policy = SelectPolicy::Min;
        assert_eq!(run(&b, 10, &[(0, 1)]), [(9, Limit::RateLimited)]);
        b.scale_down.select_policy = SelectPolicy::Disabled;
        assert_eq!(run(&b, 10, &[(0, 1)]), [(10, Limit::Disabled)]);
    }

    #[test]
    fn history_stays_bounded() {
        let b = Behavior::default();
        let steps: Vec<(i64, u32)> = (0..10_000).map(|i| (i, 3)).collect();
        let mut history = History::default();
        for (s, rec) in steps {
            history = normalize(&b, &history, 3, rec, at(s)).history;
        }
        assert!(history.len() <= 301, "{}", history.len());
    }
}
