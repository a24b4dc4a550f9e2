//! The world as the live controller sees it: Jenkins' queue, labels and agents and the
//! cluster's pods, through the controller's ports.

use super::*;
use crate::domain::{
    ComputerView, JenkinsError, KubeError, LabelView, NodeRef, PodState, PoolState, PoolUsage,
    QueueItemView,
};
use crate::scaling::ports::{Clock, ClusterApi, JenkinsApi};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A world the live controller reads and changes through its Jenkins and Kubernetes
/// traits. Queue ids are build indices plus one. With a clock, every call first runs
/// the world up to the clock's time (the demo); without, whoever drives it moves it.
#[derive(Clone)]
pub struct SharedWorld(pub Arc<Mutex<World>>, Option<Arc<dyn Clock>>);

impl SharedWorld {
    pub fn new(world: World) -> Self {
        Self(Arc::new(Mutex::new(world)), None)
    }

    /// A world that follows `clock`.
    pub fn following(world: World, clock: Arc<dyn Clock>) -> Self {
        Self(Arc::new(Mutex::new(world)), Some(clock))
    }

    /// The world, run up to the clock's time when it follows one.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, World> {
        // A panic while holding it leaves a world no test or demo can trust anyway.
        let mut w = self.0.lock().expect("the in-memory world");
        if let Some(c) = &self.1 {
            w.advance_to(c.now().millis());
        }
        w
    }
}

#[async_trait::async_trait]
impl JenkinsApi for SharedWorld {
    async fn queue(&self) -> Result<Vec<QueueItemView>, JenkinsError> {
        let w = self.lock();
        let why = format!(
            "Waiting for next available executor on \u{2018}{}\u{2019}",
            w.label
        );
        Ok(w.queue
            .iter()
            .map(|&i| QueueItemView {
                class: Some("hudson.model.Queue$BuildableItem".into()),
                id: i as u64 + 1,
                why: Some(why.clone()),
                buildable: true,
                blocked: false,
                stuck: false,
                in_queue_since: Some(w.builds[i].queued_at),
                task: None,
            })
            .collect())
    }

    async fn label(&self, _label: &str) -> Result<LabelView, JenkinsError> {
        let w = self.lock();
        let ready: Vec<usize> = w.ready_ids().collect();
        let busy: u32 = ready.iter().map(|&i| w.agents[i].busy).sum();
        let total = ready.len() as u32 * w.per;
        Ok(LabelView {
            busy_executors: busy,
            idle_executors: total - busy,
            total_executors: total,
            nodes: ready
                .iter()
                .map(|&i| NodeRef {
                    node_name: w.agent_name(i),
                })
                .collect(),
        })
    }

    async fn label_queue_length(&self, _label: &str) -> Result<f64, JenkinsError> {
        Ok(self.lock().queue.len() as f64)
    }

    async fn computers(&self) -> Result<Vec<ComputerView>, JenkinsError> {
        let w = self.lock();
        Ok(w.ready_ids().map(|i| w.computer(i)).collect())
    }

    async fn computer(&self, node: &str) -> Result<ComputerView, JenkinsError> {
        let w = self.lock();
        w.agent_id(node)
            .map(|i| w.computer(i))
            .ok_or_else(|| JenkinsError::Status {
                method: "GET",
                url: format!("computer/{node}/api/json"),
                status: 404,
            })
    }

    async fn set_offline(
        &self,
        node: &str,
        offline: bool,
        _message: &str,
    ) -> Result<bool, JenkinsError> {
        let mut w = self.lock();
        let Some(i) = w.agent_id(node) else {
            return Err(JenkinsError::Status {
                method: "POST",
                url: format!("computer/{node}/toggleOffline"),
                status: 404,
            });
        };
        let changed = w.agents[i].offline != offline;
        w.agents[i].offline = offline;
        if !offline {
            let now = w.now;
            w.start_builds(now);
        }
        Ok(changed)
    }
}

#[async_trait::async_trait]
impl ClusterApi for SharedWorld {
    async fn read_pool(&self, _namespace: &str, _deployment: &str) -> Result<PoolState, KubeError> {
        let w = self.lock();
        let pods = w
            .live
            .iter()
            .map(|&i| {
                let a = &w.agents[i];
                let ready = a.ready_at <= w.now;
                PodState {
                    name: w.agent_name(i),
                    ready,
                    terminating: false,
                    deletion_cost: Some(a.deletion_cost),
                    cpu_request: None,
                    memory_request: None,
                    startup_ms: ready.then_some(a.ready_at - a.created),
                }
            })
            .collect();
        Ok(PoolState {
            replicas: w.live.len() as u32,
            resource_version: Some(w.version.to_string()),
            selector: format!("app={}", w.deployment),
            pods,
        })
    }

    async fn pool_usage(
        &self,
        _namespace: &str,
        _pool: &PoolState,
    ) -> Result<PoolUsage, KubeError> {
        Err(KubeError::NotFound {
            what: "the metrics API (an in-memory pool has none)".into(),
        })
    }

    async fn set_deletion_costs(
        &self,
        _namespace: &str,
        pods: &[PodState],
        costs: &BTreeMap<String, i32>,
    ) -> Result<usize, KubeError> {
        let mut w = self.lock();
        let mut changed = 0;
        for pod in pods {
            if let (Some(&cost), Some(i)) = (costs.get(&pod.name), w.agent_id(&pod.name))
                && w.agents[i].deletion_cost != cost
            {
                w.agents[i].deletion_cost = cost;
                changed += 1;
            }
        }
        Ok(changed)
    }

    async fn scale(&self, to: crate::domain::ScaleTo<'_>) -> Result<(), KubeError> {
        let mut w = self.lock();
        if to
            .resource_version
            .is_some_and(|v| v != w.version.to_string())
        {
            return Err(KubeError::Conflict {
                what: format!("deployment {}/{}", to.namespace, to.deployment),
                attempts: 1,
            });
        }
        let now = w.now;
        w.scale_to(to.replicas, now);
        Ok(())
    }
}
