//! The guard on outcomes: a `warm` pool acts on its model only while the replay of its
//! own recorded builds shows warm capacity at its budget starting more builds at once
//! than a plain scale-down window of the same agent-hours (the windows' frontier, read
//! between its points). Otherwise the pool stays reactive and says why.

use super::engine::{SimBuild, SimConfig, SimPolicy};
use super::{FRONTIER, FrontierPoint};
use serde::Serialize;

/// What the replay of a pool's history says of its warm capacity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WarmVerdict {
    /// Whether the pool may act on warm capacity.
    pub acts: bool,
    /// Builds replayed.
    pub builds: usize,
    /// Warm capacity at the pool's budget.
    pub warm: FrontierPoint,
    /// Builds the windows would start at once for warm's agent-hours (between the two
    /// window points around them), `None` when warm costs less than every window.
    pub windows_at_equal_cost: Option<f64>,
    pub windows: Vec<FrontierPoint>,
    pub reason: String,
}

/// Replays `builds` (sorted by queue time) under warm capacity at `budget` (a fraction of
/// busy agent-hours, as the live pool takes it) and under each window, and judges.
pub fn warm_verdict(builds: &[SimBuild], cfg: &SimConfig, budget: f64) -> WarmVerdict {
    let point = |family, policy| super::frontier::replay_point(builds, cfg, family, policy);
    let warm = point("warm", SimPolicy::Warm(budget));
    // Held against the frontier's windows.
    let mut windows: Vec<FrontierPoint> = FRONTIER
        .iter()
        .filter(|(family, _)| *family == "window")
        .map(|&(family, policy)| point(family, policy))
        .collect();
    windows.sort_by(|a, b| a.agent_hours.total_cmp(&b.agent_hours));
    let at_cost = upper_envelope_at(&windows, warm.agent_hours);
    let (acts, reason) = match at_cost {
        _ if builds.is_empty() => (false, "no recorded builds to replay yet".to_string()),
        None => (
            true,
            format!(
                "warm capacity costs less than every window in the replay ({:.1} agent-hours)",
                warm.agent_hours
            ),
        ),
        Some(w) if warm.started_at_once > w => (
            true,
            format!(
                "in the replay of {} builds warm capacity started {:.0} % at once for {:.1} agent-hours; windows of that cost start {:.0} %",
                builds.len(),
                warm.started_at_once * 100.0,
                warm.agent_hours,
                w * 100.0
            ),
        ),
        Some(w) => (
            false,
            format!(
                "in the replay of {} builds warm capacity started {:.0} % at once for {:.1} agent-hours, no more than windows of that cost ({:.0} %): reactive",
                builds.len(),
                warm.started_at_once * 100.0,
                warm.agent_hours,
                w * 100.0
            ),
        ),
    };
    WarmVerdict {
        acts,
        builds: builds.len(),
        warm,
        windows_at_equal_cost: at_cost,
        windows,
        reason,
    }
}

/// The most builds at once the points (sorted by agent-hours) reach for `hours`: the
/// best point at or below it, or the line to the next dearer point that starts more.
/// `None` below the cheapest point.
fn upper_envelope_at(points: &[FrontierPoint], hours: f64) -> Option<f64> {
    let below: Vec<&FrontierPoint> = points.iter().filter(|p| p.agent_hours <= hours).collect();
    let best_below = below
        .iter()
        .max_by(|a, b| a.started_at_once.total_cmp(&b.started_at_once))?;
    let mut best = best_below.started_at_once;
    for above in points.iter().filter(|p| p.agent_hours > hours) {
        for b in &below {
            let span = above.agent_hours - b.agent_hours;
            if span > 0.0 {
                let t = (hours - b.agent_hours) / span;
                best =
                    best.max(b.started_at_once + t * (above.started_at_once - b.started_at_once));
            }
        }
    }
    Some(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(agent_hours: f64, started_at_once: f64) -> FrontierPoint {
        FrontierPoint::at("window", agent_hours, started_at_once)
    }

    #[test]
    fn the_windows_are_read_between_their_points() {
        let w = [p(10.0, 0.1), p(20.0, 0.5), p(40.0, 0.7)];
        assert_eq!(upper_envelope_at(&w, 5.0), None);
        assert_eq!(upper_envelope_at(&w, 10.0), Some(0.1));
        assert!((upper_envelope_at(&w, 15.0).unwrap() - 0.3).abs() < 1e-9);
        assert!((upper_envelope_at(&w, 30.0).unwrap() - 0.6).abs() < 1e-9);
        assert_eq!(upper_envelope_at(&w, 50.0), Some(0.7));
    }

    fn cfg() -> SimConfig {
        SimConfig {
            behavior: crate::scaling::Behavior::default(),
            reconcile_ms: 30_000,
            warm_max_idle: 4,
            ..crate::sim::engine::tests::cfg()
        }
    }

    #[test]
    fn a_pool_that_learned_its_rhythm_acts_and_one_without_budget_does_not() {
        // A ten-minute build every half hour: warm capacity learns when the next comes
        // and starts an agent just before, which no window of the same cost can do.
        let builds: Vec<SimBuild> = (0..800)
            .map(|i| SimBuild {
                queued_at: 1_700_000_000_000 + i * 1_800_000,
                duration: 600_000,
            })
            .collect();
        let v = warm_verdict(&builds, &cfg(), 1.0);
        assert!(v.acts, "{}", v.reason);
        let w = v.windows_at_equal_cost.unwrap();
        assert!(v.warm.started_at_once > w + 0.3, "{}", v.reason);
        assert_eq!(v.windows.len(), 6);
        assert_eq!(v.builds, 800);
        // With no budget warm capacity is the zero window: no better, so reactive.
        let none = warm_verdict(&builds, &cfg(), 0.0);
        assert!(!none.acts, "{}", none.reason);
        assert!(none.reason.contains("reactive"), "{}", none.reason);
    }

    #[test]
    fn nothing_recorded_does_not_act() {
        let v = warm_verdict(&[], &cfg(), 0.25);
        assert!(!v.acts);
        assert!(v.reason.contains("no recorded builds"), "{}", v.reason);
    }
}
