//! Multi-metric scaling: agent pods' CPU and memory utilisation, demand rate (builds
//! queued per minute) and queue wait p95, under two policies. `hpa` follows the
//! HorizontalPodAutoscaler: per signal `ceil(current x value / target)` with a 10 %
//! tolerance, the largest wins, and no scale-down while a signal is missing. `weighted` is
//! the seed's scorer: a weighted sum of value / threshold; above 0.8 add
//! `int(score x 5)` agents, below 0.3 remove one. Pure; both return per-signal scores.

use serde::{Deserialize, Serialize};

/// One signal's reading and its settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub name: &'static str,
    /// `None` when the reading failed or is not available (e.g. no metrics-server).
    pub value: Option<f64>,
    /// `hpa`: the target value. `weighted`: the threshold a value is scored against.
    pub target: f64,
    /// `weighted` only.
    pub weight: f64,
}

/// The four signals with the seed's weights and thresholds: CPU 0.4 / 70 %, memory
/// 0.3 / 80 %, demand rate 0.2 / 1000 per minute, queue wait p95 0.1 / 500 ms.
pub fn signals(
    cpu_pct: Option<f64>,
    memory_pct: Option<f64>,
    demand_per_min: Option<f64>,
    wait_p95_ms: Option<f64>,
) -> [Signal; 4] {
    [
        Signal {
            name: "cpu",
            value: cpu_pct,
            target: 70.0,
            weight: 0.4,
        },
        Signal {
            name: "memory",
            value: memory_pct,
            target: 80.0,
            weight: 0.3,
        },
        Signal {
            name: "demand_rate",
            value: demand_per_min,
            target: 1000.0,
            weight: 0.2,
        },
        Signal {
            name: "queue_wait_p95",
            value: wait_p95_ms,
            target: 500.0,
            weight: 0.1,
        },
    ]
}

/// How a signal scored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignalScore {
    pub name: &'static str,
    pub value: Option<f64>,
    pub target: f64,
    /// `hpa`: value / target. `weighted`: weight x value / threshold.
    pub score: Option<f64>,
    /// `hpa` only: the replicas this signal asks for.
    pub desired: Option<u32>,
}

/// Which multi-metric policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MultiMetricPolicy {
    Hpa,
    Weighted,
}

/// The outcome, before the pool's min, max and busy floor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MultiMetricDecision {
    pub desired: u32,
    /// `weighted`: the total score.
    pub total_score: Option<f64>,
    pub signals: Vec<SignalScore>,
    pub reason: String,
}

/// HPA tolerance: ratios within 10 % of 1 change nothing.
pub const TOLERANCE: f64 = 0.1;

/// Decides from signals. `current` is the agents now.
pub fn decide(policy: MultiMetricPolicy, signals: &[Signal], current: u32) -> MultiMetricDecision {
    match policy {
        MultiMetricPolicy::Hpa => hpa(signals, current),
        MultiMetricPolicy::Weighted => weighted(signals, current),
    }
}

fn hpa(signals: &[Signal], current: u32) -> MultiMetricDecision {
    let mut scores = Vec::new();
    let mut best: Option<(u32, &'static str)> = None;
    let mut missing = false;
    for s in signals {
        let (score, desired) = match s.value {
            Some(v) if s.target > 0.0 => {
                let ratio = v / s.target;
                let d = if (ratio - 1.0).abs() <= TOLERANCE {
                    current
                } else {
                    (f64::from(current.max(1)) * ratio).ceil() as u32
                };
                (Some(ratio), Some(d))
            }
            _ => {
                missing = true;
                (None, None)
            }
        };
        if let Some(d) = desired
            && best.is_none_or(|(b, _)| d > b)
        {
            best = Some((d, s.name));
        }
        scores.push(SignalScore {
            name: s.name,
            value: s.value,
            target: s.target,
            score,
            desired,
        });
    }
    let (mut desired, reason) = match best {
        Some((d, name)) => (d, format!("{name} asks for {d}, the most of any signal")),
        None => (current, "no signal available: holding".to_string()),
    };
    if missing && desired < current {
        desired = current;
        return MultiMetricDecision {
            desired,
            total_score: None,
            signals: scores,
            reason: "a signal is missing: no scale-down".into(),
        };
    }
    MultiMetricDecision {
        desired,
        total_score: None,
        signals: scores,
        reason,
    }
}

fn weighted(signals: &[Signal], current: u32) -> MultiMetricDecision {
    let scores: Vec<SignalScore> = signals
        .iter()
        .map(|s| SignalScore {
            name: s.name,
            value: s.value,
            target: s.target,
            score: s
                .value
                .filter(|_| s.target > 0.0)
                .map(|v| s.weight * v / s.target),
            desired: None,
        })
        .collect();
    if scores.iter().all(|s| s.score.is_none()) {
        return MultiMetricDecision {
            desired: current,
            total_score: None,
            signals: scores,
            reason: "no signal available: holding".into(),
        };
    }
    let total: f64 = scores.iter().filter_map(|s| s.score).sum();
    let (desired, reason) = if total > 0.8 {
        let add = (total * 5.0) as u32;
        (
            current + add,
            format!("score {total:.2} > 0.8: add int({total:.2} x 5) = {add}"),
        )
    } else if total < 0.3 {
        (
            current.saturating_sub(1),
            format!("score {total:.2} < 0.3: remove one"),
        )
    } else {
        (current, format!("score {total:.2} within [0.3, 0.8]: hold"))
    };
    MultiMetricDecision {
        desired,
        total_score: Some(total),
        signals: scores,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpa_table() {
        let cases: [(&str, [Option<f64>; 4], u32, u32); 6] = [
            (
                "cpu high wins",
                [Some(140.0), Some(40.0), Some(10.0), Some(100.0)],
                4,
                8,
            ),
            (
                "within tolerance holds",
                [Some(75.0), Some(85.0), None, None],
                4,
                4,
            ),
            (
                "all low scales down",
                [Some(35.0), Some(40.0), Some(100.0), Some(100.0)],
                4,
                2,
            ),
            (
                "a missing signal blocks scale-down",
                [Some(35.0), None, Some(100.0), Some(100.0)],
                4,
                4,
            ),
            (
                "a missing signal does not block scale-up",
                [Some(140.0), None, None, None],
                4,
                8,
            ),
            (
                "queue wait drives",
                [Some(10.0), Some(10.0), Some(10.0), Some(2_000.0)],
                2,
                8,
            ),
        ];
        for (name, v, current, want) in cases {
            let d = decide(
                MultiMetricPolicy::Hpa,
                &signals(v[0], v[1], v[2], v[3]),
                current,
            );
            assert_eq!(d.desired, want, "{name}: {}", d.reason);
            assert_eq!(d.signals.len(), 4);
        }
        let none = decide(MultiMetricPolicy::Hpa, &signals(None, None, None, None), 3);
        assert_eq!(none.desired, 3);
    }

    #[test]
    fn weighted_is_the_seed_scorer() {
        // 0.4 x 140/70 + 0.3 x 80/80 + 0.2 x 500/1000 + 0.1 x 500/500 = 0.8 + 0.3 + 0.1 + 0.1 = 1.3
        let d = decide(
            MultiMetricPolicy::Weighted,
            &signals(Some(140.0), Some(80.0), Some(500.0), Some(500.0)),
            3,
        );
        assert!((d.total_score.unwrap() - 1.3).abs() < 1e-9);
        assert_eq!(d.desired, 3 + 6, "int(1.3 x 5) = 6");
        let cpu = d.signals.iter().find(|s| s.name == "cpu").unwrap();
        assert!((cpu.score.unwrap() - 0.8).abs() < 1e-9);
        // Quiet: 0.4 x 7/70 = 0.04 -> below 0.3, remove one.
        let quiet = decide(
            MultiMetricPolicy::Weighted,
            &signals(Some(7.0), Some(0.0), Some(0.0), Some(0.0)),
            3,
        );
        assert_eq!(quiet.desired, 2);
        // In between holds; zero agents never go below zero.
        let mid = decide(
            MultiMetricPolicy::Weighted,
            &signals(Some(70.0), Some(0.0), Some(0.0), Some(0.0)),
            3,
        );
        assert_eq!(mid.desired, 3);
        assert_eq!(
            decide(
                MultiMetricPolicy::Weighted,
                &signals(Some(0.0), None, None, None),
                0
            )
            .desired,
            0
        );
        assert_eq!(
            decide(
                MultiMetricPolicy::Weighted,
                &signals(None, None, None, None),
                5
            )
            .desired,
            5
        );
    }
}
