//! A live `warm` pool's side of [`super::warm`]: its builds' arrivals and finishes read
//! from the store (at most once a minute once it has a model), and the state the plan keeps between
//! reconciles. The decision is the same [`WarmState::plan`] a replay runs.

use super::warm::{WarmDecision, WarmPolicy, WarmState};
use crate::domain::{ControllerName, Timestamp};
use crate::store::Store;

/// How long the store's history is reused before it is read again.
const REREAD_MS: i64 = 60_000;
/// History read: the model's twelve weeks.
const HISTORY_MS: i64 = 84 * 86_400_000;

/// A pool's arrivals and finishes, sorted (epoch ms).
#[derive(Debug, Clone, Default)]
struct History {
    read_at: i64,
    arrivals: Vec<i64>,
    finishes: Vec<i64>,
}

/// What a live warm pool keeps between reconciles.
pub struct LiveWarm {
    pub policy: WarmPolicy,
    state: WarmState,
    history: Option<History>,
    last: Option<WarmDecision>,
}

impl LiveWarm {
    pub fn new(policy: WarmPolicy) -> Self {
        Self {
            policy,
            state: WarmState::default(),
            history: None,
            last: None,
        }
    }

    /// One reconcile's warm decision. A failed read of the history keeps the last
    /// decision (never drops warm agents on an error) and says so.
    pub async fn plan(
        &mut self,
        store: &Store,
        controller: &ControllerName,
        matches_label: impl Fn(&str) -> bool,
        now: Timestamp,
        provisioned: u32,
        busy: u32,
    ) -> WarmDecision {
        // Until there is a model the history is small: it is read at every reconcile.
        let stale = !self.state.has_model()
            || self
                .history
                .as_ref()
                .is_none_or(|h| now.millis() - h.read_at >= REREAD_MS);
        if stale {
            let since = Timestamp::from_millis((now.millis() - HISTORY_MS).max(0)).unwrap_or(now);
            match store.build_spans(controller, since).await {
                Ok(spans) => {
                    let mut h = History {
                        read_at: now.millis(),
                        ..Default::default()
                    };
                    for (label, start, end) in spans {
                        if label.as_deref().is_some_and(&matches_label) {
                            h.arrivals.push(start);
                            h.finishes.extend(end.filter(|&e| e <= now.millis()));
                        }
                    }
                    h.arrivals.retain(|&a| a <= now.millis());
                    h.arrivals.sort_unstable();
                    h.finishes.sort_unstable();
                    self.history = Some(h);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the build history for warm capacity failed");
                    let mut held = self.last.clone().unwrap_or(WarmDecision {
                        agents: 0,
                        worth_first: 0.0,
                        price: None,
                        spent_hours: 0.0,
                        allowed_hours: 0.0,
                        reason: String::new(),
                    });
                    held.reason = format!("build history unreadable ({e}): warm agents held");
                    return held;
                }
            }
        }
        let h = self.history.as_ref().expect("read above");
        let d = self.state.plan(
            now.millis(),
            provisioned,
            busy,
            &h.arrivals,
            &h.finishes,
            &self.policy,
        );
        self.last = Some(d.clone());
        d
    }
}
