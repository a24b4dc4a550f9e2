//! What a pool keeps of its decisions: each one is stored when something changed, plus an
//! hourly keyframe; a replica that becomes the leader picks the pool's history up from
//! them.

use super::{Context, PoolWorker};
use crate::domain::Timestamp;
use crate::scaling::History;
use crate::store::DecisionRecord;

/// A stored decision is kept at least this often, changed or not: the hourly keyframe.
pub const KEYFRAME_MS: i64 = 3_600_000;

/// What makes a decision worth a new row: the trigger, the sizes, the outcome, the rule,
/// the reason (which names the demand it saw), the error, and what the dashboard draws
/// from the inputs: the forecast (to a tenth) and the warm agents kept.
pub(super) type DecisionKey = (
    crate::scaling::plan::Trigger,
    [Option<u32>; 3],
    crate::domain::Outcome,
    crate::scaling::Rule,
    String,
    Option<String>,
    String,
);

pub(super) fn decision_key(r: &DecisionRecord) -> DecisionKey {
    let forecast = r
        .inputs
        .forecast
        .and_then(|f| f.value)
        .map(|v| format!("{v:.1}"))
        .unwrap_or_default();
    let warm = r
        .inputs
        .warm
        .as_ref()
        .map(|w| w.agents.to_string())
        .unwrap_or_else(|| "null".into());
    (
        r.trigger,
        [r.current, r.recommended, r.desired],
        r.outcome,
        r.rule,
        r.reason.clone(),
        r.error.clone(),
        format!("{forecast}/{warm}"),
    )
}

/// Whether `next` is stored after `last` (the newest stored, with its time): when
/// something changed, or an hour passed. Pool cost, which integrates the replicas between
/// stored decisions, is the same either way: a decision that changes nothing is a step
/// to the same level.
pub fn worth_storing(last: Option<&(DecisionKey, i64)>, next: &DecisionRecord) -> bool {
    match last {
        None => true,
        Some((key, at)) => {
            *key != decision_key(next) || next.decided_at.millis() - at >= KEYFRAME_MS
        }
    }
}

pub(super) async fn record_decision(w: &mut PoolWorker, ctx: &Context, record: DecisionRecord) {
    if worth_storing(w.stored.as_ref(), &record) {
        match ctx.store.insert_decision(&record).await {
            Ok(()) => w.stored = Some((decision_key(&record), record.decided_at.millis())),
            Err(e) => {
                tracing::error!(pool = %record.pool, error = %e, "storing the decision failed")
            }
        }
    }
    if let Some(view) = ctx.views.write().await.get_mut(&record.pool) {
        view.last = Some(record);
    }
}

impl PoolWorker {
    /// This replica has just become the leader: pick the pool's history up from the
    /// decisions the previous leader stored, so the scale-down window, the rate limits and
    /// the delay after a scale-up run on as they were (a pool is not shrunk at once), and
    /// store the next decision whatever it is.
    pub(super) async fn take_over(&mut self, ctx: &Context) {
        let now = ctx.clock.now();
        let memory = self.policy.behavior.memory().as_millis() as i64;
        // The row in force when the memory starts is at most a keyframe older.
        let since =
            Timestamp::from_millis(now.millis().saturating_sub(memory + KEYFRAME_MS).max(0))
                .unwrap_or(now);
        self.stored = None;
        match ctx.store.decisions(&self.name, since, 10_000).await {
            Ok(rows) => {
                let past: Vec<crate::scaling::behavior::Past> = rows
                    .iter()
                    .map(|r| crate::scaling::behavior::Past {
                        at: r.decided_at,
                        recommended: r.recommended,
                        change: match (r.outcome, r.current, r.desired) {
                            (
                                crate::domain::Outcome::Applied | crate::domain::Outcome::DryRun,
                                Some(from),
                                Some(to),
                            ) if from != to => Some((from, to)),
                            _ => None,
                        },
                    })
                    .collect();
                self.history = History::resume(&past, now);
                if ctx.cluster.is_none() {
                    self.dry_run_replicas = rows.first().and_then(|r| r.desired);
                }
                tracing::info!(pool = %self.name, decisions = rows.len(), "leading: the pool's history resumed from the stored decisions");
            }
            Err(e) => {
                // The history starts from the replicas found, which holds them through the
                // scale-down window: safe, only slower to shrink.
                tracing::warn!(pool = %self.name, error = %e, "leading: the stored decisions could not be read");
                self.history = History::default();
            }
        }
    }
}
