//! How webhooks, pipelines and the API reach the pools: wake-ups (here and, through the
//! store, at the other replicas), pipeline announcements, and the pools' views.

use super::{PoolView, wakeups};
use crate::controller::SystemClock;
use crate::domain::ControllerName;
use crate::metrics::Metrics;
use crate::scaling::ports::Clock;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::sync::{RwLock, mpsc};

/// Lets webhooks and pipelines wake pools and the API read them.
#[derive(Clone)]
pub struct ScalingHandle {
    pub(super) views: Arc<RwLock<BTreeMap<String, PoolView>>>,
    /// Each controller's pools (by lower-case controller name).
    pub(super) pools: Arc<HashMap<String, Vec<PoolWake>>>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) announcement_ttl_ms: i64,
    pub(super) metrics: Metrics,
    /// Passes wake-ups to the other replicas (PostgreSQL stores only).
    pub(super) outbox: Option<wakeups::Outbox>,
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
pub(super) struct PoolWake {
    pub(super) name: String,
    pub(super) label: crate::domain::Label,
    pub(super) wake: mpsc::Sender<()>,
    /// When it was last woken: its reconcile wants Jenkins read after that.
    pub(super) woken_at: WokenAt,
    pub(super) announced: Announced,
}

/// The latest wake-up of a pool.
pub(super) type WokenAt = Arc<std::sync::Mutex<Option<std::time::Instant>>>;

impl PoolWake {
    /// Wakes the pool's task (never blocks: a pending wake-up stands for this one).
    pub(super) fn wake(&self) {
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
    pub(super) fn add(&self, until_ms: i64) {
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

    /// Wakes every pool of every controller (here only).
    pub(super) fn wake_all(&self) {
        for p in self.pools.values().flatten() {
            p.wake();
        }
    }

    pub(super) fn wake_pools(&self, controller: &ControllerName, label: Option<&str>) {
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
    pub(super) fn count_announcement(
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
