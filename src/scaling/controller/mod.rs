//! The controller: one task per pool, in the controller-runtime style. Each
//! [`reconcile`] gathers what Jenkins, the cluster and the store say (`gather`, through
//! the traits of `ports`), calls the pure [`crate::scaling::plan::plan`] the replay calls
//! too, applies the result (`apply`) and records it; when a read fails,
//! [`error_policy`] holds the pool at its size: nothing is scaled on an error. Queue
//! webhooks trigger a pool's reconcile at once (debounced); a periodic reconcile catches
//! what events miss. Time is the [`Context`]'s clock, so the demo and the tests run the
//! real controller on a clock they move.

mod apply;
mod forecast;
mod gather;
pub mod ports;
mod snapshot;
mod wakeups;

pub use apply::{BUSY_COST, DRAINED_COST, IDLE_COST, KEPT_COST};
use ports::{Clock, ClusterApi, JenkinsApi, ReconcileError, SystemClock};

use super::demand::QueueDemand;
use super::plan::{IdleSince, Observation, plan, scored_signals};
use super::{History, PolicyName, ScalePolicy};
use crate::config::{PoolSettings, Settings};
use crate::domain::{ControllerName, Timestamp};
use crate::jenkins::JenkinsClient;
use crate::kube::KubeExecutor;
use crate::metrics::Metrics;
use crate::store::{DecisionRecord, Store};
use anyhow::Context as _;
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

/// Lets webhooks and pipelines wake pools and the API read them.
#[derive(Clone)]
pub struct ScalingHandle {
    views: Arc<RwLock<BTreeMap<String, PoolView>>>,
    /// Each controller's pools (by lower-case controller name).
    pools: Arc<HashMap<String, Vec<PoolWake>>>,
    clock: Arc<dyn Clock>,
    announcement_ttl_ms: i64,
    metrics: Metrics,
    /// Passes wake-ups to the other replicas (PostgreSQL stores only).
    outbox: Option<wakeups::Outbox>,
}

impl Default for ScalingHandle {
    fn default() -> Self {
        Self {
            views: Arc::default(),
            pools: Arc::default(),
            clock: Arc::new(SystemClock),
            announcement_ttl_ms: 30_000,
            metrics: Metrics::default(),
            outbox: None,
        }
    }
}

/// How the handle reaches one pool's task.
#[derive(Clone)]
struct PoolWake {
    name: String,
    label: crate::domain::Label,
    wake: mpsc::Sender<()>,
    /// When it was last woken: its reconcile wants Jenkins read after that.
    woken_at: WokenAt,
    announced: Announced,
}

/// The latest wake-up of a pool.
type WokenAt = Arc<std::sync::Mutex<Option<std::time::Instant>>>;

impl PoolWake {
    /// Wakes the pool's task (never blocks: a pending wake-up stands for this one).
    fn wake(&self) {
        *self.woken_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
        let _ = self.wake.try_send(());
    }
}

/// At most this many announcements are held per pool: more than any pool's `max`.
const MAX_ANNOUNCED: usize = 10_000;

/// The builds pipelines announced as about to wait for a pool's label, each with the
/// time it stops counting (epoch ms, the controller's clock).
#[derive(Clone, Default)]
pub(crate) struct Announced(Arc<std::sync::Mutex<Vec<i64>>>);

impl Announced {
    fn add(&self, until_ms: i64) {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() < MAX_ANNOUNCED {
            v.push(until_ms);
        }
    }

    /// The announcements still counting at `now_ms`; expired ones are forgotten.
    pub(crate) fn live(&self, now_ms: i64) -> u32 {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        v.retain(|&until| until > now_ms);
        v.len() as u32
    }
}

/// What an announcement reached.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Announcement {
    /// The pools of the controller whose label is the announced one (woken now).
    pub pools: Vec<String>,
    /// Until when the build counts as queued for them (epoch ms), unless Jenkins' queue
    /// shows it first.
    pub counts_until: i64,
}

impl ScalingHandle {
    /// Wakes the pools of a controller, here and (through the store) at the other
    /// replicas: a queue event arrived for it, for `label` when it names one. The pools
    /// of that label wake; when none has it (or it is unknown), every pool of the
    /// controller does. Never blocks: a pool with a wake-up pending already will
    /// reconcile anyway.
    pub fn notify(&self, controller: &ControllerName, label: Option<&str>) {
        self.wake_pools(controller, label);
        if let Some(out) = &self.outbox {
            out.send(wakeups::Wake::Queue {
                from: out.me,
                controller: controller.clone(),
                label: label.map(str::to_string),
            });
        }
    }

    fn wake_pools(&self, controller: &ControllerName, label: Option<&str>) {
        let pools = self.pools.get(controller.as_str());
        let of_label = |p: &&PoolWake| label.is_some_and(|l| p.label.is(l));
        let any_of_label = pools.into_iter().flatten().any(|p| of_label(&p));
        for p in pools.into_iter().flatten() {
            if !any_of_label || of_label(&p) {
                p.wake();
            }
        }
    }

    /// A pipeline is about to ask Jenkins for an executor of `label`: the controller's
    /// pools of that label count one more queued build (for `scaling.announcement_ttl`)
    /// and reconcile at once, before Jenkins' queue shows the build. The other replicas
    /// count it too.
    pub fn announce(&self, controller: &ControllerName, label: &str) -> Announcement {
        let until = self
            .clock
            .now()
            .millis()
            .saturating_add(self.announcement_ttl_ms);
        let pools = self.count_announcement(controller, label, until);
        if let Some(out) = &self.outbox {
            out.send(wakeups::Wake::Announce {
                from: out.me,
                controller: controller.clone(),
                label: label.to_string(),
                until,
            });
        }
        Announcement {
            pools,
            counts_until: until,
        }
    }

    /// Counts an announced build for the controller's pools of `label` until `until`
    /// (epoch ms) and wakes them; returns their names.
    fn count_announcement(
        &self,
        controller: &ControllerName,
        label: &str,
        until: i64,
    ) -> Vec<String> {
        let mut pools = Vec::new();
        for p in self.pools.get(controller.as_str()).into_iter().flatten() {
            if p.label.is(label) {
                p.announced.add(until);
                p.wake();
                self.metrics
                    .pool_announcements
                    .with_label_values(&[&p.name])
                    .inc();
                pools.push(p.name.clone());
            }
        }
        pools
    }

    /// Every pool's current view.
    pub async fn pools(&self) -> Vec<PoolView> {
        self.views.read().await.values().cloned().collect()
    }

    pub async fn pool(&self, name: &str) -> Option<PoolView> {
        self.views.read().await.get(name).cloned()
    }
}

pub use super::plan::Trigger;

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
#[derive(Clone)]
pub struct Adapters {
    /// Jenkins by controller name (lower case).
    pub jenkins: HashMap<String, Arc<dyn JenkinsApi>>,
    pub cluster: Option<Arc<dyn ClusterApi>>,
    pub clock: Arc<dyn Clock>,
}

impl Adapters {
    /// The service's: a Jenkins client per configured controller, the cluster if any.
    pub fn real(settings: &Settings, kube: Option<KubeExecutor>) -> anyhow::Result<Self> {
        let mut jenkins: HashMap<String, Arc<dyn JenkinsApi>> = HashMap::new();
        for (name, c) in &settings.jenkins.controllers {
            let client =
                JenkinsClient::new(c).with_context(|| format!("Jenkins controller {name}"))?;
            jenkins.insert(name.to_ascii_lowercase(), Arc::new(client));
        }
        Ok(Self {
            jenkins,
            cluster: kube.map(|k| Arc::new(k) as Arc<dyn ClusterApi>),
            clock: Arc::new(SystemClock),
        })
    }
}

/// Starts one task per configured pool on `adapters`.
pub fn start_with(
    settings: &Settings,
    store: Store,
    metrics: Metrics,
    adapters: Adapters,
    leadership: crate::leader::Leadership,
) -> anyhow::Result<ScalingHandle> {
    let views: Arc<RwLock<BTreeMap<String, PoolView>>> = Arc::default();
    let mut wake: HashMap<String, Vec<PoolWake>> = HashMap::new();
    let seq = Arc::new(AtomicI64::new(0));
    let mut snapshots: HashMap<String, Arc<snapshot::SharedSnapshot>> = HashMap::new();
    for (name, pool) in &settings.scaling.pools {
        let jenkins = adapters
            .jenkins
            .get(pool.controller.as_str())
            .cloned()
            .with_context(|| format!("pool {name}: no Jenkins controller {:?}", pool.controller))?;
        let (tx, rx) = mpsc::channel(1);
        let woken_at = WokenAt::default();
        let announced = Announced::default();
        wake.entry(pool.controller.as_str().to_string())
            .or_default()
            .push(PoolWake {
                name: name.clone(),
                label: pool.label.clone(),
                wake: tx,
                woken_at: woken_at.clone(),
                announced: announced.clone(),
            });
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
        let mut worker = PoolWorker::new(name, pool, settings)?;
        worker.announced = announced;
        let (period, debounce) = (
            adapters.clock.real(settings.scaling.reconcile_interval),
            adapters.clock.real(settings.scaling.debounce),
        );
        tokio::spawn(run(worker, ctx, (rx, woken_at), period, debounce));
    }
    let store_for_wakeups = store.clone();
    if !settings.scaling.pools.is_empty() {
        let retention = settings.scaling.decision_retention;
        tokio::spawn(crate::leader::while_leading(leadership, move || {
            crate::store::purge_every_hour(
                store.clone(),
                retention,
                crate::store::Retained::Decisions,
            )
        }));
    }
    let (outbox, inbox) = match settings.database.postgres_url() {
        Some(url) if !settings.scaling.pools.is_empty() => {
            let (out, inbox) = wakeups::start(store_for_wakeups, url, metrics.clone());
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
        tokio::spawn(inbox.run(handle.clone()));
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
    warm: Option<super::warm_live::LiveWarm>,
    /// Minimums by the hour.
    schedules: Vec<super::schedule::Schedule>,
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
    pub fn new(name: &str, pool: &PoolSettings, settings: &Settings) -> anyhow::Result<Self> {
        Ok(Self {
            name: name.to_string(),
            settings: pool.clone(),
            policy: pool.scale_policy(),
            controller: pool.controller.clone(),
            history: History::default(),
            warm: (pool.policy == PolicyName::Warm).then(|| {
                super::warm_live::LiveWarm::new(
                    pool.warm_policy(settings.scaling.pod_startup),
                    crate::sim::engine::SimConfig::for_pool(pool, settings),
                    pool.warm.mode == crate::config::WarmMode::ForecastOnly,
                )
            }),
            schedules: pool.schedules(),
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
        })
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
        // A follower takes webhooks and serves reads; only the leader scales.
        if !ctx.leadership.is_leader() {
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

impl PoolWorker {
    /// This replica has just become the leader: pick the pool's history up from the
    /// decisions the previous leader stored, so the scale-down window, the rate limits and
    /// the delay after a scale-up run on as they were (a pool is not shrunk at once), and
    /// store the next decision whatever it is.
    async fn take_over(&mut self, ctx: &Context) {
        let now = ctx.clock.now();
        let memory = self.policy.behavior.memory().as_millis() as i64;
        // The row in force when the memory starts is at most a keyframe older.
        let since =
            Timestamp::from_millis(now.millis().saturating_sub(memory + KEYFRAME_MS).max(0))
                .unwrap_or(now);
        self.stored = None;
        match ctx.store.decisions(&self.name, since, 10_000).await {
            Ok(rows) => {
                let past: Vec<super::behavior::Past> = rows
                    .iter()
                    .map(|r| super::behavior::Past {
                        at: r.decided_at,
                        recommended: r.recommended,
                        change: match (r.outcome.as_str(), r.current, r.desired) {
                            ("applied" | "dry-run", Some(from), Some(to)) if from != to => {
                                Some((from, to))
                            }
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

/// What one reconcile did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    pub current: u32,
    pub recommended: u32,
    /// The replicas set (or, in dry-run, that would be).
    pub desired: u32,
    pub rule: super::Rule,
    /// Whether the pool needs no periodic reconcile until something happens.
    pub at_rest: bool,
}

/// One reconcile of one pool: gather, plan, apply, record. A failed read is returned
/// for [`error_policy`]; a failed apply is recorded as the decision's outcome.
pub async fn reconcile(
    w: &mut PoolWorker,
    ctx: &Context,
    trigger: Trigger,
) -> Result<Reconciled, ReconcileError> {
    let now = ctx.clock.now();
    let mut g = w.gather(ctx, now).await?;
    let current = g.seen.current_replicas;
    let forecast = match w.forecast.as_mut() {
        Some(f) => Some(
            f.forecast(&ctx.store, &w.controller, &w.settings.label, now)
                .await,
        ),
        None => None,
    };
    for p in g.pool.iter().flat_map(|s| &s.pods) {
        if let Some(ms) = p.startup_ms {
            w.startups.record(&p.name, ms);
        }
    }
    let measured = w.startups.startup();
    if let (Some(warm), Some(s)) = (w.warm.as_mut(), measured) {
        warm.use_startup(s);
    }
    let busy_agents = g.seen.agents.iter().filter(|a| a.busy).count() as u32;
    let warm = match w.warm.as_mut() {
        Some(warm) => {
            let label = w.settings.label.clone();
            Some(
                warm.plan(
                    &ctx.store,
                    &w.controller,
                    |l| label.serves(l),
                    now,
                    current,
                    busy_agents,
                )
                .await,
            )
        }
        None => None,
    };
    g.seen.warm_agents = warm.as_ref().map_or(0, |d| d.decision.agents);
    g.seen.signals = w.signals(ctx, &g, now).await;
    let mut planned = plan(
        &g.seen,
        &w.policy,
        &w.schedules,
        std::mem::take(&mut w.history),
        now,
    );
    // The decision's history is the pool's from now on; the rest of the decision is read below.
    w.history = std::mem::take(&mut planned.decision.history);

    let mut inputs = inputs_json(&g.seen, &g.queue, &g.busy_nodes);
    let scored = scored_signals(w.settings.policy, &g.seen.signals, current);
    inputs["signals"] = scored.clone();
    if let Some(d) = &warm {
        inputs["warm"] = serde_json::to_value(d).unwrap_or_default();
    }
    inputs["startup"] = serde_json::json!({
        "samples": w.startups.len(),
        "measured_p50_ms": measured.map(|s| s.p50_ms),
        "measured_p95_ms": measured.map(|s| s.p95_ms),
    });
    if let Some(f) = &forecast {
        inputs["forecast"] =
            serde_json::json!({"value": f.value, "target_at": f.target_at, "acting": f.acting});
    }
    if let Some(view) = ctx.views.write().await.get_mut(&w.name) {
        view.forecast = forecast;
        view.signals = Some(scored);
    }
    w.update_gauges(ctx, &g.seen, planned.decision.desired);

    let decision = &planned.decision;
    let mut desired = decision.desired;
    // Drain steps that failed: the decision stands, the problem is shown with it.
    let mut problems = Vec::new();
    if ctx.cluster.is_some() && !w.left_offline.is_empty() {
        w.bring_back(ctx, &g.names, &mut problems).await;
    }
    let (outcome, error) = match (&ctx.cluster, &g.pool) {
        (None, _) => {
            w.dry_run_replicas = Some(desired);
            w.history.record_change(now, current, desired);
            ("dry-run", None)
        }
        (Some(_), _) if desired == current => ("unchanged", None),
        (Some(cluster), Some(state)) => {
            match w
                .apply(ctx, cluster.as_ref(), state, &g, &planned, &mut problems)
                .await
            {
                Ok(applied) => {
                    desired = applied;
                    w.history.record_change(now, current, applied);
                    let direction = if applied > current { "up" } else { "down" };
                    if applied != current {
                        ctx.metrics
                            .pool_scale_events
                            .with_label_values(&[&w.name, direction])
                            .inc();
                    }
                    ("applied", None)
                }
                Err(e) => {
                    ctx.metrics
                        .pool_failures
                        .with_label_values(&[&w.name, e.source()])
                        .inc();
                    tracing::warn!(pool = %w.name, error = %e, "applying the decision failed");
                    ("failed", Some(e.to_string()))
                }
            }
        }
        (Some(_), None) => unreachable!("a cluster read gives a pool state"),
    };
    let error = match (error, problems.is_empty()) {
        (e, true) => e,
        (Some(e), false) => Some(format!("{e}; {}", problems.join("; "))),
        (None, false) => Some(problems.join("; ")),
    };
    let rule = serde_json::to_value(decision.rule)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let done = Reconciled {
        current,
        recommended: decision.recommended,
        desired,
        rule: decision.rule,
        at_rest: super::plan::at_rest(&w.policy, &g.seen, decision.recommended, desired),
    };
    let record = w.decision(
        ctx,
        now,
        trigger,
        (Some(current), Some(decision.recommended), Some(desired)),
        &rule,
        &decision.reason,
        outcome,
        error,
        inputs,
    );
    record_decision(w, ctx, record).await;
    Ok(done)
}

/// A reconcile that could not plan: the pool holds its size (never "zero"), the failure
/// is counted and logged, and recorded as a `hold-on-error` decision.
pub async fn error_policy(
    w: &mut PoolWorker,
    ctx: &Context,
    trigger: Trigger,
    error: &ReconcileError,
) {
    let source = error.source();
    ctx.metrics
        .pool_failures
        .with_label_values(&[&w.name, source])
        .inc();
    tracing::warn!(pool = %w.name, source, %error, "read failed; holding the pool at its size");
    let record = w.decision(
        ctx,
        ctx.clock.now(),
        trigger,
        (w.held_at, None, None),
        "hold-on-error",
        "a read failed; the pool holds its size",
        "held",
        Some(format!("{source}: {error}")),
        serde_json::json!({}),
    );
    record_decision(w, ctx, record).await;
}

/// A stored decision is kept at least this often, changed or not: the hourly keyframe.
pub const KEYFRAME_MS: i64 = 3_600_000;

/// What makes a decision worth a new row: the trigger, the sizes, the outcome, the rule,
/// the reason (which names the demand it saw), the error, and what the dashboard draws
/// from the inputs: the forecast (to a tenth) and the warm agents kept.
type DecisionKey = (
    String,
    [Option<u32>; 3],
    String,
    String,
    String,
    Option<String>,
    String,
);

fn decision_key(r: &DecisionRecord) -> DecisionKey {
    let forecast = r.inputs["forecast"]["value"]
        .as_f64()
        .map(|v| format!("{v:.1}"))
        .unwrap_or_default();
    (
        r.trigger.clone(),
        [r.current, r.recommended, r.desired],
        r.outcome.clone(),
        r.rule.clone(),
        r.reason.clone(),
        r.error.clone(),
        format!("{forecast}/{}", r.inputs["warm"]["agents"]),
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

async fn record_decision(w: &mut PoolWorker, ctx: &Context, record: DecisionRecord) {
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
    fn update_gauges(&self, ctx: &Context, s: &Observation, desired: u32) {
        let g = |kind: &str, v: u32| {
            ctx.metrics
                .pool_agents
                .with_label_values(&[&self.name, kind])
                .set(i64::from(v))
        };
        let ready = s.agents.iter().filter(|a| a.ready).count() as u32;
        g("desired", desired);
        g("current", s.current_replicas);
        g("ready", ready);
        g("pending", s.agents.len() as u32 - ready);
        g("busy", s.agents.iter().filter(|a| a.busy).count() as u32);
        ctx.metrics
            .pool_queued
            .with_label_values(&[&self.name])
            .set(i64::from(s.queued));
    }

    #[allow(clippy::too_many_arguments)]
    fn decision(
        &self,
        ctx: &Context,
        now: Timestamp,
        trigger: Trigger,
        (current, recommended, desired): (Option<u32>, Option<u32>, Option<u32>),
        rule: &str,
        reason: &str,
        outcome: &str,
        error: Option<String>,
        inputs: serde_json::Value,
    ) -> DecisionRecord {
        DecisionRecord {
            pool: self.name.clone(),
            decided_at: now,
            seq: ctx.seq.fetch_add(1, Ordering::Relaxed),
            trigger: trigger.as_str().to_string(),
            current,
            recommended,
            desired,
            rule: rule.to_string(),
            reason: reason.to_string(),
            outcome: outcome.to_string(),
            error,
            inputs,
        }
    }
}

fn inputs_json(s: &Observation, q: &QueueDemand, busy_nodes: &[String]) -> serde_json::Value {
    let ready = s.agents.iter().filter(|a| a.ready).count();
    serde_json::json!({
        "queued": s.queued,
        "queue_sources": q,
        "busy_executors": s.busy_executors,
        "idle_executors": s.idle_executors,
        "busy_agents": s.agents.iter().filter(|a| a.busy).count(),
        "busy_nodes": busy_nodes,
        "ready_agents": ready,
        "pending_agents": s.agents.len() - ready,
        "current_replicas": s.current_replicas,
        "forecast_extra": s.forecast_extra,
    })
}

#[cfg(test)]
mod tests;
