//! What the behaviour remembers of a pool between decisions, and how a new leader picks
//! it up from the stored decisions. Pure.

use crate::domain::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::Duration;

/// One stored decision, as a new leader reads it to pick a pool's history up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Past {
    pub at: Timestamp,
    /// The recommendation before the behaviour.
    pub recommended: Option<u32>,
    /// The replicas it changed, from and to, when the change was applied.
    pub change: Option<(u32, u32)>,
}

/// What the behaviour remembers between decisions: past recommendations and the scale
/// changes applied. Bounded: entries older than every window and period are dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub(super) recommendations: VecDeque<(Timestamp, u32)>,
    pub(super) scale_events: VecDeque<(Timestamp, i64)>,
    pub(super) last_scale_up: Option<Timestamp>,
}

impl History {
    /// Records a replica change that was applied.
    pub fn record_change(&mut self, at: Timestamp, from: u32, to: u32) {
        if from == to {
            return;
        }
        self.scale_events
            .push_back((at, i64::from(to) - i64::from(from)));
        if to > from {
            self.last_scale_up = Some(at);
        }
    }

    /// Starts an empty history from the replicas found, as if they had been recommended
    /// now: a restarted service then waits out the scale-down window instead of
    /// shrinking a pool it knows nothing about yet.
    pub fn seed(&mut self, at: Timestamp, replicas: u32) {
        if self.recommendations.is_empty() {
            self.recommendations.push_back((at, replicas));
        }
    }

    /// The history the previous leader had at `now`, rebuilt from its stored decisions
    /// (any order). Decisions are stored when they change, so each recommendation held
    /// until the next stored one: it is remembered at both ends, and the newest as still
    /// in force now. The changes applied count for the rate limits and the delay after a
    /// scale-up.
    pub fn resume(past: &[Past], now: Timestamp) -> Self {
        let mut past: Vec<Past> = past.iter().copied().filter(|p| p.at <= now).collect();
        past.sort_by_key(|p| p.at);
        let mut h = History::default();
        let recs: Vec<(Timestamp, u32)> = past
            .iter()
            .filter_map(|p| p.recommended.map(|r| (p.at, r)))
            .collect();
        for (i, &(at, r)) in recs.iter().enumerate() {
            h.recommendations.push_back((at, r));
            let until = match recs.get(i + 1) {
                Some(&(next, _)) => Timestamp::from_millis(next.millis() - 1).unwrap_or(at),
                None => now,
            };
            if until > at {
                h.recommendations.push_back((until, r));
            }
        }
        for p in &past {
            if let Some((from, to)) = p.change {
                h.record_change(p.at, from, to);
            }
        }
        h
    }

    /// How many recommendations are remembered.
    pub fn len(&self) -> usize {
        self.recommendations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recommendations.is_empty()
    }

    pub(super) fn prune(&mut self, now: Timestamp, keep: Duration) {
        let cutoff = now.millis() - keep.as_millis() as i64;
        while self
            .recommendations
            .front()
            .is_some_and(|(t, _)| t.millis() < cutoff)
        {
            self.recommendations.pop_front();
        }
        while self
            .scale_events
            .front()
            .is_some_and(|(t, _)| t.millis() < cutoff)
        {
            self.scale_events.pop_front();
        }
    }

    pub(super) fn changes_since(&self, since_ms: i64, up: bool) -> u32 {
        self.scale_events
            .iter()
            .filter(|(t, d)| t.millis() > since_ms && (*d > 0) == up && *d != 0)
            .map(|(_, d)| d.unsigned_abs() as u32)
            .sum()
    }
}
