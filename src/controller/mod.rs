//! The controller: one task per pool, in the controller-runtime style. Each
//! [`reconcile`] gathers what Jenkins, the cluster and the store say (`gather`, through
//! the traits of `ports`, Jenkins' queue and agents from the controller's shared
//! `snapshot`), calls the pure [`crate::scaling::plan::plan`] the replay calls too,
//! applies the result (`apply`) and records it (`record`); when a read fails,
//! [`error_policy`] holds the pool at its size: nothing is scaled on an error. Queue
//! webhooks and announcements wake the pools of their label at once (`handle`, debounced;
//! passed to the other replicas by `wakeups`); a periodic reconcile catches what events
//! miss. Only the leading replica reconciles; a new leader resumes each pool's history
//! from its stored decisions. Time is the [`Context`]'s clock, so the demo and the tests
//! run the real controller on a clock they move.

mod adapters;
mod apply;
mod error;
mod forecast;
mod gather;
mod handle;
mod reconcile;
mod record;
mod snapshot;
mod wakeups;
pub mod warm;

use crate::scaling::ports::{Clock, ClusterApi, JenkinsApi};
pub use adapters::{Adapters, StartError};
pub use apply::{BUSY_COST, DRAINED_COST, IDLE_COST, KEPT_COST};
pub use error::{ReconcileError, SystemClock};
use handle::{Announced, PoolWake, WokenAt};
pub use handle::{Announcement, ScalingHandle};
pub use reconcile::{Reconciled, error_policy, reconcile};
#[cfg(test)]
use record::decision_key;
use record::{DecisionKey, record_decision};
pub use record::{KEYFRAME_MS, worth_storing};

use crate::config::{PoolSettings, Settings};
use crate::domain::{
    ControllerName, DecisionInputs, ForecastInputs, StartupInputs, Timestamp, WarmInputs,
};
use crate::metrics::Metrics;
use crate::scaling::demand::QueueDemand;
use crate::scaling::plan::{IdleSince, Observation, plan, scored_signals};
use crate::scaling::{History, PolicyName, ScalePolicy};
use crate::store::{DecisionRecord, Store};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::{RwLock, mpsc};

/// What a pool looks like now, for the API.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PoolView {
    pub name: String,
    pub controller: String,
    pub label: String,
    pub namespace: String,
    pub deployment: String,
    /// `apply` or `dry-run`.
    pub mode: &'static str,
    pub min: u32,
    pub max: u32,
    pub executors_per_agent: u32,
    /// The latest reconcile, once one has run.
    #[schema(value_type = Option<Object>)]
    pub last: Option<DecisionRecord>,
    /// `off`, `forecast-only` or `scale`.
    #[schema(value_type = String)]
    pub predictive: crate::config::PredictiveMode,
    /// The latest demand forecast, when the mode is not `off`.
    pub forecast: Option<ForecastView>,
    /// The multi-metric signals at the latest reconcile and how they scored: under the
    /// pool's policy when it is `hpa` or `weighted`, else under `weighted` (shown only).
    #[schema(value_type = Option<Object>)]
    pub signals: Option<serde_json::Value>,
}

/// A pool's demand forecast as last made.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ForecastView {
    /// Builds expected running or waiting one pod start-up from the reconcile.
    pub value: Option<f64>,
    /// When the forecast is for (epoch ms).
    pub target_at: Option<i64>,
    /// The demand at the reconcile, for comparison.
    pub actual_now: Option<f64>,
    /// Always false: forecasts are recorded and shown, never acted on.
    pub acting: bool,
    /// The model in use: training window, rows, backtest scores.
    #[schema(value_type = Option<Object>)]
    pub model: Option<serde_json::Value>,
    /// Why there is no forecast (e.g. too little history yet).
    pub error: Option<String>,
}

pub use crate::scaling::plan::Trigger;

/// What the pools of one Jenkins controller share: its Jenkins, the cluster (none in
/// dry-run), the store, the metrics, the clock and the API's views.
#[derive(Clone)]
pub struct Context {
    pub jenkins: Arc<dyn JenkinsApi>,
    /// The controller's queue and agents, read once for all its pools.
    snapshot: Arc<snapshot::SharedSnapshot>,
    pub cluster: Option<Arc<dyn ClusterApi>>,
    pub store: Store,
    pub metrics: Metrics,
    pub clock: Arc<dyn Clock>,
    views: Arc<RwLock<BTreeMap<String, PoolView>>>,
    seq: Arc<AtomicI64>,
    /// Only the leading replica reconciles.
    leadership: crate::leader::Leadership,
}

/// What the controller runs on: the real clients and the system clock, or in-memory
/// adapters and a moved clock (the demo, the tests).
/// Starts one task per configured pool on `adapters`, in `tasks`.
pub fn start_with(
    settings: &Settings,
    store: Store,
    metrics: Metrics,
    adapters: Adapters,
    leadership: crate::leader::Leadership,
    tasks: &mut crate::tasks::Tasks,
) -> Result<ScalingHandle, StartError> {
    let views: Arc<RwLock<BTreeMap<String, PoolView>>> = Arc::default();
    let mut wake: HashMap<String, Vec<PoolWake>> = HashMap::new();
    let seq = Arc::new(AtomicI64::new(0));
    let mut snapshots: HashMap<String, Arc<snapshot::SharedSnapshot>> = HashMap::new();
    for (name, pool) in &settings.scaling.pools {
        let jenkins = adapters
            .jenkins
            .get(pool.controller.as_str())
            .cloned()
            .ok_or_else(|| StartError::NoController {
                pool: name.clone(),
                controller: pool.controller.as_str().to_string(),
            })?;
        let (tx, rx) = mpsc::channel(1);
        let woken_at = WokenAt::default();
        let announced = Announced::default();
        let pool_wake = PoolWake {
            name: name.clone(),
            label: pool.label.clone(),
            wake: tx,
            woken_at: woken_at.clone(),
            announced: announced.clone(),
        };
        if let Some(cluster) = &adapters.cluster {
            let pool_wake = pool_wake.clone();
            cluster.follow(
                &pool.namespace,
                &pool.deployment,
                Arc::new(move || pool_wake.wake()),
            );
        }
        wake.entry(pool.controller.as_str().to_string())
            .or_default()
            .push(pool_wake);
        views.try_write().expect("no other holder yet").insert(
            name.clone(),
            PoolView::new(name, pool, adapters.cluster.is_some()),
        );
        let snapshot = snapshots
            .entry(pool.controller.as_str().to_string())
            .or_insert_with(|| Arc::new(snapshot::SharedSnapshot::new(jenkins.clone())))
            .clone();
        let ctx = Context {
            snapshot,
            jenkins,
            cluster: adapters.cluster.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            clock: adapters.clock.clone(),
            views: views.clone(),
            seq: seq.clone(),
            leadership: leadership.clone(),
        };
        let mut worker = PoolWorker::new(name, pool, settings);
        worker.announced = announced;
        let (period, debounce) = (
            adapters.clock.real(settings.scaling.reconcile_interval),
            adapters.clock.real(settings.scaling.debounce),
        );
        tasks.spawn("pool", run(worker, ctx, (rx, woken_at), period, debounce));
    }
    let store_for_wakeups = store.clone();
    let (outbox, inbox) = match settings.database.postgres_url() {
        Some(url) if !settings.scaling.pools.is_empty() => {
            let (out, inbox) = wakeups::start(store_for_wakeups, url, metrics.clone(), tasks);
            (Some(out), Some(inbox))
        }
        _ => (None, None),
    };
    let handle = ScalingHandle {
        views,
        pools: Arc::new(wake),
        clock: adapters.clock,
        announcement_ttl_ms: settings.scaling.announcement_ttl.as_millis() as i64,
        metrics,
        outbox,
    };
    if let Some(inbox) = inbox {
        tasks.spawn("wake-up listener", inbox.run(handle.clone()));
    }
    Ok(handle)
}

impl PoolView {
    fn new(name: &str, pool: &PoolSettings, applies: bool) -> Self {
        PoolView {
            name: name.to_string(),
            controller: pool.controller.to_string(),
            label: pool.label.to_string(),
            namespace: pool.namespace.clone(),
            deployment: pool.deployment.clone(),
            mode: if applies { "apply" } else { "dry-run" },
            min: pool.min,
            max: pool.max,
            executors_per_agent: pool.executors_per_agent,
            last: None,
            predictive: pool.predictive,
            forecast: None,
            signals: None,
        }
    }
}

/// One pool's state between reconciles.
pub struct PoolWorker {
    name: String,
    settings: PoolSettings,
    /// The pool's sizing rules, built once from its settings.
    policy: ScalePolicy,
    controller: ControllerName,
    history: History,
    /// A `warm` pool's model, ledger and history.
    warm: Option<warm::LiveWarm>,
    /// Minimums by the hour.
    schedules: Vec<crate::scaling::schedule::Schedule>,
    /// Its agents' start-ups as measured (pod created to ready).
    startups: crate::sim::startup::Measured,
    /// When each agent was first seen idle.
    idle_since: IdleSince<String>,
    /// In dry-run the replicas are never read from a cluster: the last decision stands in.
    dry_run_replicas: Option<u32>,
    /// The size a failed reconcile holds, as far as it was read.
    held_at: Option<u32>,
    forecast: Option<forecast::LiveForecast>,
    /// Builds pipelines announced for the pool's label.
    announced: Announced,
    /// Nodes this pool took offline that could not be brought back yet.
    left_offline: std::collections::BTreeSet<String>,
    /// The newest stored decision's key and time: unchanged ones are not stored again
    /// within the hour.
    stored: Option<(DecisionKey, i64)>,
    /// The next reconcile may use the controller's Jenkins snapshot if it was read since
    /// then (`None`: read afresh).
    fresh_after: Option<std::time::Instant>,
}

impl PoolWorker {
    /// The state of the configured pool `name`.
    pub fn new(name: &str, pool: &PoolSettings, settings: &Settings) -> Self {
        let policy = crate::config::PoolPolicy::from(pool);
        Self {
            name: name.to_string(),
            settings: pool.clone(),
            policy: policy.scale(),
            controller: pool.controller.clone(),
            history: History::default(),
            warm: (pool.policy == PolicyName::Warm).then(|| {
                warm::LiveWarm::new(
                    policy.warm_starting_in(settings.scaling.pod_startup),
                    crate::sim::engine::SimConfig::new(&policy, settings),
                    pool.warm.mode == crate::config::WarmMode::ForecastOnly,
                )
            }),
            schedules: policy.schedules.clone(),
            startups: Default::default(),
            idle_since: IdleSince::default(),
            dry_run_replicas: None,
            held_at: None,
            announced: Announced::default(),
            left_offline: Default::default(),
            stored: None,
            fresh_after: None,
            forecast: (pool.predictive != crate::config::PredictiveMode::Off).then(|| {
                forecast::LiveForecast::new(
                    settings.scaling.forecast_retrain_every.as_millis() as i64,
                    settings.scaling.forecast_trees,
                    settings.scaling.pod_startup.as_millis() as i64,
                )
            }),
        }
    }
}

async fn run(
    mut worker: PoolWorker,
    ctx: Context,
    (mut wake, last_wake): (mpsc::Receiver<()>, WokenAt),
    period: Duration,
    debounce: Duration,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading = false;
    let mut elected = ctx.leadership.clone();
    loop {
        let mut woken_at = None;
        let trigger = tokio::select! {
            _ = tick.tick() => Trigger::Periodic,
            // A new leader reconciles at once, not at its next tick.
            _ = elected.until_leading(), if !leading => {
                tick.reset();
                Trigger::Periodic
            }
            woken = wake.recv() => match woken {
                Some(()) => {
                    if !debounce.is_zero() {
                        tokio::time::sleep(debounce).await;
                    }
                    while wake.try_recv().is_ok() {}
                    // The latest wake-up, when it happened (not when this task saw it).
                    woken_at = last_wake.lock().unwrap_or_else(|e| e.into_inner()).take();
                    Trigger::Event
                }
                None => return,
            },
        };
        // A follower takes webhooks and serves reads; only the leader scales, and it
        // confirms its hold right before it acts.
        if !ctx.leadership.confirm().await {
            leading = false;
            continue;
        }
        if !leading {
            worker.take_over(&ctx).await;
            leading = true;
        }
        // A periodic reconcile shares the controller's snapshot of this period with the
        // other pools; a woken one wants a read that started after the wake-up (it may
        // join one in flight).
        let now = std::time::Instant::now();
        worker.fresh_after = Some(match (trigger, woken_at) {
            (Trigger::Event, Some(at)) => at,
            _ => now.checked_sub(period / 2).unwrap_or(now),
        });
        // Leadership lost mid-reconcile: the reconcile is dropped where it stands, so
        // nothing more is applied; the next leader reads the pool afresh (a scale patch
        // carries the resourceVersion it read, so a stale one is refused).
        let mut lost = ctx.leadership.clone();
        tokio::select! {
            done = reconcile(&mut worker, &ctx, trigger) => {
                if let Err(e) = done {
                    error_policy(&mut worker, &ctx, trigger, &e).await;
                }
            }
            _ = lost.until_following() => {
                tracing::warn!(pool = %worker.name, "leadership lost during a reconcile; it stops here");
                leading = false;
            }
        }
    }
}

#[cfg(test)]
mod tests;
