//! What the controller needs from the world, as small traits: Jenkins (queue, label,
//! agents, taking a node offline), the cluster (the Deployment's scale and pods), and
//! the clock. The service runs them against the real clients (their impls live beside
//! them, in `jenkins/` and `kube/`); the demo and the tests against the in-memory pool of
//! `sim::world`, on a clock they move. Their types are the domain's.

use crate::domain::{
    ComputerView, JenkinsError, KubeError, LabelView, PodState, PoolState, PoolUsage,
    QueueItemView, ScaleTo, Timestamp, Waker,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};

/// The Jenkins reads and writes a pool's reconcile makes.
#[async_trait::async_trait]
pub trait JenkinsApi: Send + Sync {
    /// The build queue.
    async fn queue(&self) -> Result<Vec<QueueItemView>, JenkinsError>;
    /// A label's executors and nodes.
    async fn label(&self, label: &str) -> Result<LabelView, JenkinsError>;
    /// The label's queue length as Jenkins' load statistics count it.
    async fn label_queue_length(&self, label: &str) -> Result<f64, JenkinsError>;
    /// Every agent.
    async fn computers(&self) -> Result<Vec<ComputerView>, JenkinsError>;
    /// One agent.
    async fn computer(&self, node: &str) -> Result<ComputerView, JenkinsError>;
    /// Takes a node offline (or brings it back); whether anything changed.
    async fn set_offline(
        &self,
        node: &str,
        offline: bool,
        message: &str,
    ) -> Result<bool, JenkinsError>;
}

/// The Kubernetes reads and writes a pool's reconcile makes.
#[async_trait::async_trait]
pub trait ClusterApi: Send + Sync {
    /// The Deployment's scale and the pods its selector picks.
    async fn read_pool(&self, namespace: &str, deployment: &str) -> Result<PoolState, KubeError>;
    /// CPU and memory use of the pool's ready pods.
    async fn pool_usage(&self, namespace: &str, pool: &PoolState) -> Result<PoolUsage, KubeError>;
    /// Sets each named pod's deletion cost.
    async fn set_deletion_costs(
        &self,
        namespace: &str,
        pods: &[PodState],
        costs: &BTreeMap<String, i32>,
    ) -> Result<usize, KubeError>;
    /// How long a scale-in waits after raising a busy agent's deletion cost, so the
    /// ReplicaSet controller has seen the cost when it picks the pods to remove.
    fn costs_settle(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
    /// Sets the Deployment's replicas, refused when it changed since the version read.
    async fn scale(&self, to: ScaleTo<'_>) -> Result<(), KubeError>;
    /// Calls `wake` when a pod of the deployment turns Ready or goes away, if this
    /// cluster can tell (the real one watches; the simulated one is read every time).
    fn follow(&self, _namespace: &str, _deployment: &str, _wake: Waker) {}
}

/// What time it is for the controller.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;

    /// How long `d` of this clock's time lasts in real time (the reconcile period and
    /// the debounce are set in the clock's time).
    fn real(&self, d: std::time::Duration) -> std::time::Duration {
        d
    }
}

/// A clock that moves only when told: replays, the demo and tests.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(at_ms: i64) -> Self {
        Self(AtomicI64::new(at_ms))
    }

    pub fn set(&self, at_ms: i64) {
        self.0.store(at_ms, Ordering::SeqCst);
    }

    pub fn millis(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.millis()).unwrap_or(Timestamp::now())
    }
}
