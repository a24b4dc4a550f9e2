//! A live `warm` pool's side of [`crate::scaling::warm`]: its builds' arrivals and finishes read
//! from the store (at most once a minute once it has a model), the state the plan keeps
//! between reconciles, and the guard on outcomes: once a day, or sooner once they grew by
//! a quarter, the pool's recorded builds are replayed (on a blocking thread) against the
//! windows, and the pool acts on warm capacity only while the replay shows it starting
//! more builds at once than a window of the same cost. The decision is the same
//! [`WarmState::plan`] a replay runs.

use crate::domain::{ControllerName, Timestamp};
use crate::scaling::warm::{WarmDecision, WarmPolicy, WarmState};
use crate::sim::engine::{SimBuild, SimConfig};
use crate::sim::guard::{WarmVerdict, warm_verdict};
use crate::store::Store;
use serde::Serialize;
use tokio::task::JoinHandle;

/// How long the store's history is reused before it is read again.
const REREAD_MS: i64 = 60_000;
/// History read: the model's twelve weeks; the guard replays them too.
const HISTORY_MS: i64 = 84 * 86_400_000;
/// How often the guard replays the history.
const GUARD_EVERY_MS: i64 = 86_400_000;
/// After a replay or its read fails, it is tried again this soon.
const GUARD_RETRY_MS: i64 = 60_000;

/// A pool's arrivals and finishes, sorted (epoch ms).
#[derive(Debug, Clone, Default)]
struct History {
    read_at: i64,
    arrivals: Vec<i64>,
    finishes: Vec<i64>,
}

/// A live warm pool's decision: the plan's, and the guard's verdict on it.
#[derive(Debug, Clone, Serialize)]
pub struct LiveWarmDecision {
    #[serde(flatten)]
    pub decision: WarmDecision,
    /// The last replay of the pool's history, once one has run.
    pub guard: Option<WarmVerdict>,
    /// False in `forecast-only` mode: the agents are recorded, none kept.
    pub acting: bool,
    /// The idle agents the decision keeps, or would keep in `forecast-only` mode.
    pub would_keep: u32,
}

/// What a live warm pool keeps between reconciles.
pub struct LiveWarm {
    pub policy: WarmPolicy,
    /// `forecast-only`: decide and record, keep none.
    forecast_only: bool,
    replay: SimConfig,
    state: WarmState,
    history: Option<History>,
    last: Option<WarmDecision>,
    guard: Option<WarmVerdict>,
    guarding: Option<JoinHandle<WarmVerdict>>,
    next_guard_ms: i64,
    /// The finished builds the history held when the last replay started.
    guarded_finishes: usize,
}

impl LiveWarm {
    /// `replay` is the pool as the guard replays it.
    pub fn new(policy: WarmPolicy, replay: SimConfig, forecast_only: bool) -> Self {
        Self {
            forecast_only,
            policy,
            replay,
            state: WarmState::default(),
            history: None,
            last: None,
            guard: None,
            guarding: None,
            next_guard_ms: 0,
            guarded_finishes: 0,
        }
    }

    /// Plans and replays with the pool's measured start-up from now on.
    pub fn use_startup(&mut self, s: crate::sim::startup::Startup) {
        self.policy.startup_ms = s.p50_ms;
        self.replay.pod_startup_ms = s.p50_ms;
        self.replay.startup_p95_ms = s.p95_ms;
    }

    /// Collects a finished replay and starts the next one when it is due: a day after the
    /// last, or at once when the pool's finished builds grew by a quarter since it started
    /// (a new install filling up, a backfill), so a replay of a history that was still
    /// being recorded is not the verdict for a day. `finishes` is the history's count.
    async fn check_guard(
        &mut self,
        store: &Store,
        controller: &ControllerName,
        matches_label: &impl Fn(&str) -> bool,
        now: Timestamp,
        finishes: usize,
    ) {
        if self.guarding.as_ref().is_some_and(|h| h.is_finished()) {
            match self.guarding.take().expect("checked").await {
                Ok(v) => self.guard = Some(v),
                Err(e) => {
                    tracing::warn!(error = %e, "the warm capacity replay stopped");
                    self.next_guard_ms = now.millis() + GUARD_RETRY_MS;
                }
            }
        }
        let grown = crate::scaling::warm::grew_by_a_quarter(finishes, self.guarded_finishes);
        if self.guarding.is_some() || (now.millis() < self.next_guard_ms && !grown) {
            return;
        }
        let since = Timestamp::from_millis((now.millis() - HISTORY_MS).max(0)).unwrap_or(now);
        match store.finished_build_runs(controller, since).await {
            Ok(runs) => {
                let mut builds: Vec<SimBuild> = runs
                    .into_iter()
                    .filter(|(l, _, _)| l.as_deref().is_some_and(matches_label))
                    .map(|(_, queued_at, duration)| SimBuild {
                        queued_at,
                        duration,
                    })
                    .collect();
                builds.sort_by_key(|b| b.queued_at);
                // With no model yet the history is small and cheap to replay: again at
                // the next reconcile, so a pool filling up is judged at once.
                let every = if self.state.has_model() {
                    GUARD_EVERY_MS
                } else {
                    0
                };
                self.next_guard_ms = now.millis() + every;
                self.guarded_finishes = finishes;
                let (cfg, budget) = (self.replay.clone(), self.policy.budget);
                self.guarding = Some(tokio::task::spawn_blocking(move || {
                    warm_verdict(&builds, &cfg, budget)
                }));
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the builds to replay for warm capacity failed");
                self.next_guard_ms = now.millis() + GUARD_RETRY_MS;
            }
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
    ) -> LiveWarmDecision {
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
                    let would_keep = held.agents;
                    if self.forecast_only {
                        held.agents = 0;
                    }
                    return LiveWarmDecision {
                        would_keep,
                        acting: !self.forecast_only,
                        decision: held,
                        guard: self.guard.clone(),
                    };
                }
            }
        }
        let finishes = self.history.as_ref().expect("read above").finishes.len();
        self.check_guard(store, controller, &matches_label, now, finishes)
            .await;
        let h = self.history.as_ref().expect("read above");
        let d = self.state.plan(
            now.millis(),
            provisioned,
            busy,
            &h.arrivals,
            &h.finishes,
            &self.policy,
        );
        let mut d = d;
        match &self.guard {
            Some(v) if v.acts => {}
            Some(v) => {
                d.agents = 0;
                d.reason = v.reason.clone();
            }
            None => {
                d.agents = 0;
                d.reason =
                    "replaying the recorded builds to check warm capacity: reactive meanwhile"
                        .into();
            }
        }
        self.last = Some(d.clone());
        let would_keep = d.agents;
        if self.forecast_only {
            d.agents = 0;
            d.reason = format!("forecast-only, nothing kept: {}", d.reason);
        }
        LiveWarmDecision {
            decision: d,
            guard: self.guard.clone(),
            acting: !self.forecast_only,
            would_keep,
        }
    }
}
