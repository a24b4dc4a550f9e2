//! The controller: one task per pool. It gathers a snapshot from Jenkins and Kubernetes,
//! calls the pure [`decide`], applies the result, and records it. Queue webhooks trigger a
//! pool's reconcile at once (debounced); a periodic reconcile catches what events miss.
//! A failed read holds the pool at its size: nothing is scaled on an error.

pub mod ports;

use super::demand::{self, QueueDemand, QueuedItem};
use super::multi_metric::Signal;
use super::{History, PoolSnapshot, ScalePolicy, decide};
use crate::config::{PoolSettings, Settings};
use crate::domain::{ControllerName, Timestamp};
use crate::jenkins::{ComputerView, JenkinsClient, LabelView, QueueItemView};
use crate::kube::{KubeExecutor, PodState, PoolState};
use crate::metrics::Metrics;
use crate::store::{DecisionRecord, Store};
use anyhow::Context;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::{RwLock, mpsc};

/// Deletion cost given to pods whose agent is busy: removed last.
pub const BUSY_COST: i32 = 10_000;
/// Deletion cost given to idle pods: removed first.
pub const IDLE_COST: i32 = -100;
/// Deletion cost given to pods drained for removal.
pub const DRAINED_COST: i32 = -1_000;

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

/// The model and its background retraining.
struct LiveForecast {
    model: Option<Arc<crate::forecast::Model>>,
    training: Option<tokio::task::JoinHandle<Result<crate::forecast::Model, String>>>,
    next_train_ms: i64,
    error: Option<String>,
    /// The demand series and the step it was read at.
    series: Option<(i64, crate::forecast::Series)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Event,
    Periodic,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Event => "event",
            Trigger::Periodic => "periodic",
        }
    }
}

/// Lets webhooks wake pools and the API read them.
#[derive(Clone, Default)]
pub struct ScalingHandle {
    views: Arc<RwLock<BTreeMap<String, PoolView>>>,
    wake: Arc<HashMap<String, Vec<mpsc::Sender<()>>>>,
}

impl ScalingHandle {
    /// Wakes the pools of a controller: a queue event arrived for it. Never blocks: a
    /// pool with a wake-up pending already will reconcile anyway.
    pub fn notify(&self, controller: &ControllerName) {
        if let Some(senders) = self.wake.get(controller.as_str()) {
            for s in senders {
                let _ = s.try_send(());
            }
        }
    }

    /// Every pool's current view.
    pub async fn pools(&self) -> Vec<PoolView> {
        self.views.read().await.values().cloned().collect()
    }

    pub async fn pool(&self, name: &str) -> Option<PoolView> {
        self.views.read().await.get(name).cloned()
    }
}

/// Starts one task per configured pool.
pub fn start(
    settings: &Settings,
    store: Store,
    metrics: Metrics,
    kube: Option<KubeExecutor>,
) -> anyhow::Result<ScalingHandle> {
    let mut clients: HashMap<String, Arc<JenkinsClient>> = HashMap::new();
    for (name, c) in &settings.jenkins.controllers {
        clients.insert(
            name.clone(),
            Arc::new(JenkinsClient::new(c).with_context(|| format!("Jenkins controller {name}"))?),
        );
    }
    let views: Arc<RwLock<BTreeMap<String, PoolView>>> = Arc::default();
    let mut wake: HashMap<String, Vec<mpsc::Sender<()>>> = HashMap::new();
    let seq = Arc::new(AtomicI64::new(0));
    for (name, pool) in &settings.scaling.pools {
        let jenkins = clients
            .get(&pool.controller)
            .cloned()
            .with_context(|| format!("pool {name}: no Jenkins controller {:?}", pool.controller))?;
        let (tx, rx) = mpsc::channel(1);
        wake.entry(pool.controller.to_ascii_lowercase())
            .or_default()
            .push(tx);
        let view = PoolView {
            name: name.clone(),
            controller: pool.controller.clone(),
            label: pool.label.clone(),
            namespace: pool.namespace.clone(),
            deployment: pool.deployment.clone(),
            mode: if kube.is_some() { "apply" } else { "dry-run" },
            min: pool.min,
            max: pool.max,
            executors_per_agent: pool.executors_per_agent,
            last: None,
            predictive: pool.predictive,
            forecast: None,
            signals: None,
        };
        views
            .try_write()
            .expect("no other holder yet")
            .insert(name.clone(), view);
        let worker = PoolWorker {
            name: name.clone(),
            settings: pool.clone(),
            policy: pool.scale_policy(),
            startups: Default::default(),
            schedules: pool.schedules(),
            warm: (pool.policy == super::PolicyName::Warm).then(|| {
                super::warm_live::LiveWarm::new(
                    pool.warm_policy(settings.scaling.pod_startup),
                    crate::sim::engine::SimConfig::for_pool(pool, settings),
                    pool.warm.mode == crate::config::WarmMode::ForecastOnly,
                )
            }),
            controller: ControllerName::parse(&pool.controller).context("controller name")?,
            jenkins,
            kube: kube.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            views: views.clone(),
            history: History::default(),
            dry_run_replicas: None,
            seq: seq.clone(),
            live_forecast: LiveForecast {
                model: None,
                training: None,
                next_train_ms: 0,
                error: None,
                series: None,
            },
            retrain_ms: settings.scaling.forecast_retrain_every.as_millis() as i64,
            trees: settings.scaling.forecast_trees.max(1),
            horizon_steps: (settings.scaling.pod_startup.as_millis() as i64 + STEP_MS - 1)
                .div_euclid(STEP_MS)
                .max(1) as usize,
        };
        tokio::spawn(worker.run(
            rx,
            settings.scaling.reconcile_interval,
            settings.scaling.debounce,
        ));
    }
    if !settings.scaling.pools.is_empty() {
        tokio::spawn(crate::store::purge_every_hour(
            store,
            settings.scaling.decision_retention,
            crate::store::Retained::Decisions,
        ));
    }
    Ok(ScalingHandle {
        views,
        wake: Arc::new(wake),
    })
}

struct PoolWorker {
    name: String,
    settings: PoolSettings,
    policy: ScalePolicy,
    controller: ControllerName,
    jenkins: Arc<JenkinsClient>,
    kube: Option<KubeExecutor>,
    store: Store,
    metrics: Metrics,
    views: Arc<RwLock<BTreeMap<String, PoolView>>>,
    history: History,
    /// A `warm` pool's model, ledger and history.
    warm: Option<super::warm_live::LiveWarm>,
    /// Minimums by the hour.
    schedules: Vec<super::schedule::Schedule>,
    /// Its agents' start-ups as measured (pod created to ready).
    startups: crate::sim::startup::Measured,
    /// In dry-run the replicas are never read from a cluster: the last decision stands in.
    dry_run_replicas: Option<u32>,
    seq: Arc<AtomicI64>,
    live_forecast: LiveForecast,
    retrain_ms: i64,
    trees: usize,
    horizon_steps: usize,
}

/// Step of the live demand series.
const STEP_MS: i64 = 5 * 60_000;
/// History the model trains on.
const HISTORY_MS: i64 = 28 * 86_400_000;

/// What Jenkins says about a pool.
struct JenkinsView {
    queue: Vec<QueueItemView>,
    label: LabelView,
    computers: Vec<ComputerView>,
    load_statistics: f64,
}

impl PoolWorker {
    async fn run(mut self, mut wake: mpsc::Receiver<()>, period: Duration, debounce: Duration) {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let trigger = tokio::select! {
                _ = tick.tick() => Trigger::Periodic,
                woken = wake.recv() => match woken {
                    Some(()) => {
                        if !debounce.is_zero() {
                            tokio::time::sleep(debounce).await;
                        }
                        while wake.try_recv().is_ok() {}
                        Trigger::Event
                    }
                    None => return,
                },
            };
            self.reconcile(trigger).await;
        }
    }

    async fn read_jenkins(&self) -> Result<JenkinsView, String> {
        let label = self.settings.label.as_str();
        let (queue, label_view, computers, stats) = tokio::try_join!(
            self.jenkins.queue(),
            self.jenkins.label(label),
            self.jenkins.computers(),
            self.jenkins.label_queue_length(label),
        )
        .map_err(|e| e.to_string())?;
        Ok(JenkinsView {
            queue,
            label: label_view,
            computers,
            load_statistics: stats,
        })
    }

    async fn reconcile(&mut self, trigger: Trigger) {
        let now = Timestamp::now();
        let (jenkins, pool) = tokio::join!(self.read_jenkins(), self.read_kube());
        let event_labels = self.store.waiting_queue(Some(&self.controller)).await;
        let failure = match (&jenkins, &pool, &event_labels) {
            (Err(e), _, _) => Some(("jenkins", e.clone())),
            (_, Err(e), _) => Some(("kubernetes", e.clone())),
            (_, _, Err(e)) => Some(("store", e.to_string())),
            _ => None,
        };
        if let Some((source, error)) = failure {
            // Never "zero": the pool keeps its size until the reads work again.
            self.metrics
                .pool_failures
                .with_label_values(&[&self.name, source])
                .inc();
            tracing::warn!(pool = %self.name, source, %error, "read failed; holding the pool at its size");
            let current = pool
                .as_ref()
                .ok()
                .and_then(|p| p.as_ref().map(|p| p.replicas))
                .or(self.dry_run_replicas);
            self.record(
                now,
                trigger,
                current,
                None,
                None,
                "hold-on-error",
                "a read failed; the pool holds its size",
                "held",
                Some(format!("{source}: {error}")),
                serde_json::json!({}),
            )
            .await;
            return;
        }
        let (Ok(jenkins), Ok(pool)) = (jenkins, pool) else {
            unreachable!("failures returned above")
        };
        let event_labels: HashMap<u64, String> = event_labels
            .unwrap_or_default()
            .into_iter()
            .filter_map(|q| q.label.map(|l| (q.queue_id, l)))
            .collect();
        // Jenkins is authoritative for what is queued: items a lost webhook left waiting
        // in the store are closed (a minute's grace for items newer than this read).
        let present: Vec<u64> = jenkins.queue.iter().map(|i| i.id).collect();
        let grace = Timestamp::from_millis(now.millis() - 60_000).unwrap_or(now);
        match self
            .store
            .close_missing_queue_items(&self.controller, &present, grace, now)
            .await
        {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(pool = %self.name, closed = n, "queue items Jenkins no longer lists marked left")
            }
            Err(e) => {
                tracing::warn!(pool = %self.name, error = %e, "closing stale queue items failed")
            }
        }
        let items: Vec<QueuedItem> = jenkins
            .queue
            .iter()
            .map(|i| QueuedItem {
                id: i.id,
                blocked: i.blocked,
                why: i.why.clone(),
            })
            .collect();
        let queue = demand::queued_for_label(
            &self.settings.label,
            &items,
            &event_labels,
            jenkins.load_statistics,
        );

        let nodes: HashSet<&str> = jenkins
            .label
            .nodes
            .iter()
            .map(|n| n.node_name.as_str())
            .collect();
        let busy_nodes: Vec<&str> = jenkins
            .computers
            .iter()
            // A node taken offline may still be finishing a build: busy is busy.
            .filter(|c| nodes.contains(c.display_name.as_str()) && !c.idle)
            .map(|c| c.display_name.as_str())
            .collect();
        let online_nodes = jenkins
            .computers
            .iter()
            .filter(|c| nodes.contains(c.display_name.as_str()) && !c.offline)
            .count() as u32;
        let (current, ready, pending) = match &pool {
            Some(p) => (
                p.replicas,
                p.pods.iter().filter(|x| x.ready && !x.terminating).count() as u32,
                p.pods.iter().filter(|x| !x.ready && !x.terminating).count() as u32,
            ),
            None => (
                self.dry_run_replicas.unwrap_or(online_nodes),
                online_nodes,
                0,
            ),
        };
        self.history.seed(now, current);
        let forecast = self.forecast(now).await;
        let busy_agents = busy_nodes.len() as u32;
        for p in pool.iter().flat_map(|s| &s.pods) {
            if let Some(ms) = p.startup_ms {
                self.startups.record(&p.name, ms);
            }
        }
        let measured = self.startups.startup();
        if let (Some(w), Some(s)) = (self.warm.as_mut(), measured) {
            w.use_startup(s);
        }
        let warm = match self.warm.as_mut() {
            Some(w) => {
                let label = self.settings.label.clone();
                Some(
                    w.plan(
                        &self.store,
                        &self.controller,
                        |l| demand::label_matches(l, &label),
                        now,
                        current,
                        busy_agents,
                    )
                    .await,
                )
            }
            None => None,
        };
        let snapshot = PoolSnapshot {
            queued: queue.queued,
            busy_executors: jenkins.label.busy_executors,
            idle_executors: jenkins.label.idle_executors,
            busy_agents,
            ready_agents: ready,
            pending_agents: pending,
            current_replicas: current,
            forecast_extra: 0,
            warm_agents: warm.as_ref().map_or(0, |w| w.decision.agents),
            idle_since_ms: Vec::new(),
            signals: self.signals(pool.as_ref(), now).await,
            history: self.history.clone(),
        };
        let (policy, schedule) = super::schedule::policy_at(&self.policy, &self.schedules, now);
        let mut decision = decide(&snapshot, &policy, now);
        if let Some(s) = schedule {
            decision
                .reason
                .push_str(&format!("; min {} from schedule {}", s.min, s.pattern));
        }
        self.history = decision.history.clone();
        let mut inputs = inputs_json(&snapshot, &queue, &busy_nodes);
        let scored = self.score_signals(&snapshot);
        inputs["signals"] = scored.clone();
        if let Some(w) = &warm {
            inputs["warm"] = serde_json::to_value(w).unwrap_or_default();
        }
        inputs["startup"] = serde_json::json!({
            "samples": self.startups.len(),
            "measured_p50_ms": measured.map(|s| s.p50_ms),
            "measured_p95_ms": measured.map(|s| s.p95_ms),
        });
        if let Some(f) = &forecast {
            inputs["forecast"] =
                serde_json::json!({"value": f.value, "target_at": f.target_at, "acting": f.acting});
        }
        if let Some(view) = self.views.write().await.get_mut(&self.name) {
            view.forecast = forecast;
            view.signals = Some(scored);
        }
        self.update_gauges(&snapshot, decision.desired);

        let mut desired = decision.desired;
        let (outcome, error) = match (&self.kube, &pool) {
            (None, _) => {
                self.dry_run_replicas = Some(desired);
                self.history.record_change(now, current, desired);
                ("dry-run", None)
            }
            (Some(_), _) if desired == current => ("unchanged", None),
            (Some(kube), Some(state)) => {
                match self.apply(kube, state, &busy_nodes, current, desired).await {
                    Ok(applied) => {
                        desired = applied;
                        self.history.record_change(now, current, applied);
                        let direction = if applied > current { "up" } else { "down" };
                        if applied != current {
                            self.metrics
                                .pool_scale_events
                                .with_label_values(&[&self.name, direction])
                                .inc();
                        }
                        ("applied", None)
                    }
                    Err(e) => {
                        self.metrics
                            .pool_failures
                            .with_label_values(&[&self.name, "kubernetes"])
                            .inc();
                        tracing::warn!(pool = %self.name, error = %e, "applying the decision failed");
                        ("failed", Some(e))
                    }
                }
            }
            (Some(_), None) => unreachable!("a cluster read gives a pool state"),
        };
        let rule = serde_json::to_value(decision.rule)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        self.record(
            now,
            trigger,
            Some(current),
            Some(decision.recommended),
            Some(desired),
            &rule,
            &decision.reason,
            outcome,
            error,
            inputs,
        )
        .await;
    }

    /// The pool's demand series up to `now` (last index = now's step), from the builds of
    /// the last four weeks in the store.
    async fn demand_series(&self, now: Timestamp) -> Result<crate::forecast::Series, String> {
        let since = Timestamp::from_millis((now.millis() - HISTORY_MS).max(0))
            .map_err(|e| e.to_string())?;
        let spans = self
            .store
            .build_spans(&self.controller, since)
            .await
            .map_err(|e| format!("reading build history: {e}"))?;
        let label = self.settings.label.as_str();
        let mine: Vec<(i64, i64)> = spans
            .into_iter()
            .filter(|(l, _, _)| {
                l.as_deref()
                    .is_some_and(|l| demand::label_matches(l, label))
            })
            .map(|(_, start, end)| (start, end.unwrap_or(now.millis() + STEP_MS)))
            .collect();
        let mut series = crate::forecast::running_demand(&mine, STEP_MS)
            .ok_or_else(|| "no build history for this label yet".to_string())?;
        // Steps since the last build are steps of no demand.
        let t = (now.millis() - series.start_ms).div_euclid(STEP_MS).max(0) as usize;
        if series.values.len() <= t {
            series.values.resize(t + 1, 0.0);
        }
        series.values.truncate(t + 1);
        Ok(series)
    }

    /// The demand forecast one pod start-up ahead, from the builds in the store. The model
    /// is retrained in the background (on a blocking thread) every `retrain_ms`; until a
    /// model exists, or when too little history is known, there is no forecast.
    /// The multi-metric signals. Pods' CPU and memory use (metrics.k8s.io) are read only
    /// for the `hpa` and `weighted` policies; demand rate is the builds that entered the
    /// queue for this label per minute over the last 5 minutes; queue wait is the p95 of
    /// builds started in the last 15 minutes. A failed or impossible read leaves its
    /// signal unknown (`None`), never 0.
    async fn signals(&self, pool: Option<&PoolState>, now: Timestamp) -> Vec<Signal> {
        let label = self.settings.label.as_str();
        let needs_usage = matches!(
            self.settings.policy,
            super::PolicyName::Hpa | super::PolicyName::Weighted
        );
        let usage = match (&self.kube, pool, needs_usage) {
            (Some(kube), Some(state), true) => {
                match kube.pool_usage(&self.settings.namespace, state).await {
                    Ok(u) => Some(u),
                    Err(e) => {
                        self.metrics
                            .pool_failures
                            .with_label_values(&[&self.name, "metrics"])
                            .inc();
                        tracing::warn!(pool = %self.name, error = %e, "reading pod metrics failed; CPU and memory signals unknown");
                        None
                    }
                }
            }
            _ => None,
        };
        let since = |ms: i64| Timestamp::from_millis(now.millis() - ms).unwrap_or(now);
        let demand = match self
            .store
            .queue_entries_since(&self.controller, since(5 * 60_000))
            .await
        {
            Ok(labels) => Some(
                labels
                    .iter()
                    .filter(|l| l.as_deref().is_some_and(|l| demand::same_label(l, label)))
                    .count() as f64
                    / 5.0,
            ),
            Err(e) => {
                tracing::warn!(pool = %self.name, error = %e, "reading the demand rate failed");
                None
            }
        };
        let wait = match self
            .store
            .waits_since(&self.controller, since(15 * 60_000))
            .await
        {
            Ok(rows) => {
                let mut waits: Vec<i64> = rows
                    .into_iter()
                    .filter(|(l, _)| l.as_deref().is_some_and(|l| demand::same_label(l, label)))
                    .map(|(_, w)| w.max(0))
                    .collect();
                waits.sort_unstable();
                // No build started: nobody waited.
                Some(crate::analytics::nearest_rank(&waits, 0.95).unwrap_or(0) as f64)
            }
            Err(e) => {
                tracing::warn!(pool = %self.name, error = %e, "reading queue waits failed");
                None
            }
        };
        super::multi_metric::signals(
            usage.and_then(|u| u.cpu_percent),
            usage.and_then(|u| u.memory_percent),
            demand,
            wait,
        )
        .to_vec()
    }

    /// The signals scored as the pool's multi-metric policy scores them (or as `weighted`
    /// would, for pools that do not use them).
    fn score_signals(&self, snapshot: &PoolSnapshot) -> serde_json::Value {
        use super::multi_metric::{MultiMetricPolicy, decide as score};
        let (kind, name, acting) = match self.settings.policy {
            super::PolicyName::Hpa => (MultiMetricPolicy::Hpa, "hpa", true),
            super::PolicyName::Weighted => (MultiMetricPolicy::Weighted, "weighted", true),
            _ => (MultiMetricPolicy::Weighted, "weighted", false),
        };
        let m = score(kind, &snapshot.signals, snapshot.current_replicas);
        serde_json::json!({
            "scored_by": name,
            "acting": acting,
            "desired": m.desired,
            "total_score": m.total_score,
            "reason": m.reason,
            "scores": m.signals,
        })
    }

    async fn forecast(&mut self, now: Timestamp) -> Option<ForecastView> {
        use crate::config::PredictiveMode;
        use crate::forecast::{self, Model, ModelParams};
        if self.settings.predictive == PredictiveMode::Off {
            return None;
        }
        let lf = &mut self.live_forecast;
        if lf.training.as_ref().is_some_and(|h| h.is_finished()) {
            match lf.training.take().expect("checked").await {
                Ok(Ok(model)) => {
                    lf.model = Some(Arc::new(model));
                    lf.error = None;
                }
                Ok(Err(e)) => {
                    // Usually too little history yet: try again within the hour.
                    lf.next_train_ms = lf.next_train_ms.min(now.millis() + 3_600_000);
                    lf.error = Some(e);
                }
                Err(e) => lf.error = Some(format!("training stopped: {e}")),
            }
        }
        // The series is sampled at step starts: read the store once per step, not on
        // every reconcile, and afresh for every training.
        let step = now.millis().div_euclid(STEP_MS);
        let lf = &self.live_forecast;
        let train_due = now.millis() >= lf.next_train_ms && lf.training.is_none();
        let cached = lf.series.as_ref().filter(|(s, _)| *s == step && !train_due);
        let series = match cached {
            Some((_, series)) => series.clone(),
            None => match self.demand_series(now).await {
                Ok(series) => {
                    self.live_forecast.series = Some((step, series.clone()));
                    series
                }
                Err(error) => {
                    return Some(ForecastView {
                        error: Some(error),
                        ..Default::default()
                    });
                }
            },
        };
        let t = series.values.len() - 1;
        let lf = &mut self.live_forecast;
        if now.millis() >= lf.next_train_ms && lf.training.is_none() {
            lf.next_train_ms = now.millis() + self.retrain_ms;
            let training = series.clone();
            let h = self.horizon_steps;
            let params = ModelParams {
                trees: self.trees,
                ..ModelParams::default()
            };
            lf.training = Some(tokio::task::spawn_blocking(move || {
                let mut model = Model::train(&training, h, params, training.values.len())
                    .map_err(|e| e.to_string())?;
                model.backtest = forecast::backtest(&training, h, params, 4, 288).ok();
                Ok(model)
            }));
        }
        let mut view = ForecastView {
            actual_now: Some(series.values[t]),
            error: lf.error.clone(),
            ..Default::default()
        };
        if let Some(model) = &lf.model {
            view.value = model.predict(&series, t);
            view.target_at = Some(series.start_ms + (t + model.horizon_steps) as i64 * STEP_MS);
            // Shown, never acted on: warm capacity is what acts ahead of demand.
            let beats_naive = model
                .backtest
                .as_ref()
                .is_some_and(|b| b.mae.model < b.mae.seasonal_naive);
            view.model = Some(serde_json::json!({
                "trained_from_ms": model.trained_from_ms, "trained_to_ms": model.trained_to_ms,
                "rows": model.rows, "backtest": model.backtest, "beats_seasonal_naive": beats_naive,
            }));
        }
        Some(view)
    }

    async fn read_kube(&self) -> Result<Option<PoolState>, String> {
        match &self.kube {
            None => Ok(None),
            Some(k) => k
                .read_pool(&self.settings.namespace, &self.settings.deployment)
                .await
                .map(Some)
                .map_err(|e| e.to_string()),
        }
    }

    /// Applies a decision; returns the replicas set. Before a scale-down busy pods get a
    /// high deletion cost and idle ones a low one; with `drain`, the idle nodes chosen
    /// for removal are taken offline in Jenkins and checked idle again first, and a node
    /// that turned busy is brought back and kept.
    async fn apply(
        &self,
        kube: &KubeExecutor,
        state: &PoolState,
        busy: &[&str],
        current: u32,
        desired: u32,
    ) -> Result<u32, String> {
        let ns = &self.settings.namespace;
        let dep = &self.settings.deployment;
        let mut target = desired;
        if desired < current {
            let busy: HashSet<&str> = busy.iter().copied().collect();
            let mut costs: BTreeMap<String, i32> = state
                .pods
                .iter()
                .map(|p| {
                    (
                        p.name.clone(),
                        if busy.contains(p.name.as_str()) {
                            BUSY_COST
                        } else {
                            IDLE_COST
                        },
                    )
                })
                .collect();
            if self.settings.drain {
                let drained = self.drain(state, &busy, (current - desired) as usize).await;
                for (name, ok) in &drained {
                    costs.insert(name.clone(), if *ok { DRAINED_COST } else { BUSY_COST });
                }
                // Remove only what was drained and is still idle.
                let removable = drained.iter().filter(|(_, ok)| *ok).count() as u32;
                target = current - removable.min(current - desired);
            }
            kube.set_deletion_costs(ns, &state.pods, &costs)
                .await
                .map_err(|e| e.to_string())?;
        }
        if target != current {
            kube.scale(ns, dep, target, state.resource_version.clone())
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(target)
    }

    /// Takes up to `count` idle, ready agents offline; returns each with whether it is
    /// still idle after going offline (those that turned busy are brought back online).
    async fn drain(
        &self,
        state: &PoolState,
        busy: &HashSet<&str>,
        count: usize,
    ) -> Vec<(String, bool)> {
        let candidates: Vec<&PodState> = state
            .pods
            .iter()
            .filter(|p| p.ready && !p.terminating && !busy.contains(p.name.as_str()))
            .take(count)
            .collect();
        let mut out = Vec::new();
        for pod in candidates {
            let name = pod.name.clone();
            let result = async {
                self.jenkins
                    .set_offline(&name, true, "jenkins-autopilot: scaling in")
                    .await?;
                let again = self.jenkins.computer(&name).await?;
                if again.idle {
                    Ok(true)
                } else {
                    self.jenkins.set_offline(&name, false, "").await?;
                    Ok::<bool, crate::jenkins::JenkinsError>(false)
                }
            }
            .await;
            match result {
                Ok(ok) => out.push((name, ok)),
                Err(e) => {
                    tracing::warn!(pool = %self.name, node = %name, error = %e, "draining failed; keeping the agent");
                    out.push((name, false));
                }
            }
        }
        out
    }

    fn update_gauges(&self, s: &PoolSnapshot, desired: u32) {
        let g = |kind: &str, v: u32| {
            self.metrics
                .pool_agents
                .with_label_values(&[&self.name, kind])
                .set(i64::from(v))
        };
        g("desired", desired);
        g("current", s.current_replicas);
        g("ready", s.ready_agents);
        g("pending", s.pending_agents);
        g("busy", s.busy_agents);
        self.metrics
            .pool_queued
            .with_label_values(&[&self.name])
            .set(i64::from(s.queued));
    }

    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        now: Timestamp,
        trigger: Trigger,
        current: Option<u32>,
        recommended: Option<u32>,
        desired: Option<u32>,
        rule: &str,
        reason: &str,
        outcome: &str,
        error: Option<String>,
        inputs: serde_json::Value,
    ) {
        let record = DecisionRecord {
            pool: self.name.clone(),
            decided_at: now,
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            trigger: trigger.as_str().to_string(),
            current,
            recommended,
            desired,
            rule: rule.to_string(),
            reason: reason.to_string(),
            outcome: outcome.to_string(),
            error,
            inputs,
        };
        if let Err(e) = self.store.insert_decision(&record).await {
            tracing::error!(pool = %self.name, error = %e, "storing the decision failed");
        }
        if let Some(view) = self.views.write().await.get_mut(&self.name) {
            view.last = Some(record);
        }
    }
}

fn inputs_json(s: &PoolSnapshot, q: &QueueDemand, busy_nodes: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "queued": s.queued,
        "queue_sources": q,
        "busy_executors": s.busy_executors,
        "idle_executors": s.idle_executors,
        "busy_agents": s.busy_agents,
        "busy_nodes": busy_nodes,
        "ready_agents": s.ready_agents,
        "pending_agents": s.pending_agents,
        "current_replicas": s.current_replicas,
        "forecast_extra": s.forecast_extra,
    })
}
