//! What a pool's reconcile reads of the cluster: its Deployment's scale and pods, their
//! use against their requests, and how a call fails. The Kubernetes executor (`kube/`)
//! reads them; the replay world builds them; the controller's ports (`scaling::ports`)
//! speak them.

use std::sync::Arc;

/// Called when something the pool waits for happened to one of its pods.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// A failed Kubernetes call. Never read as "zero".
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("{what} not found (404): check the pool's namespace and deployment")]
    NotFound { what: String },
    #[error("{what}: forbidden (403): the service account lacks the permission ({detail})")]
    Forbidden { what: String, detail: String },
    #[error("{what}: the object changed under us (409) {attempts} times in a row")]
    Conflict { what: String, attempts: u32 },
    #[error("{what}: API error {code}: {message}")]
    Api {
        what: String,
        code: u16,
        message: String,
    },
    #[error("{what}: {detail}")]
    Transport { what: String, detail: String },
}

/// A pod of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodState {
    pub name: String,
    /// The pod's Ready condition is true.
    pub ready: bool,
    /// Deletion has started.
    pub terminating: bool,
    /// The pod's current deletion cost annotation, if any.
    pub deletion_cost: Option<i32>,
    /// The sum of its containers' CPU requests (millicores); `None` when a container has
    /// none (utilisation is then undefined, as for the HPA).
    pub cpu_request: Option<u64>,
    /// The sum of its containers' memory requests (bytes); `None` as for CPU.
    pub memory_request: Option<u64>,
    /// From the pod's creation to its Ready condition turning true (ms), once ready.
    pub startup_ms: Option<i64>,
}

/// The pool's pods' use against their requests, from metrics.k8s.io.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PoolUsage {
    /// Sum of CPU use over sum of CPU requests, percent; `None` without requests or data.
    pub cpu_percent: Option<f64>,
    pub memory_percent: Option<f64>,
    /// Pods with both a reading and requests.
    pub pods_measured: usize,
}

/// A pool's Deployment as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolState {
    /// `spec.replicas` of the scale subresource.
    pub replicas: u32,
    pub resource_version: Option<String>,
    /// The scale's label selector (how the pods are found).
    pub selector: String,
    pub pods: Vec<PodState>,
}

/// A scale patch: the Deployment's new replicas, refused when the Deployment changed since
/// `resource_version` (the one read, when it was read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleTo<'a> {
    pub namespace: &'a str,
    pub deployment: &'a str,
    pub replicas: u32,
    pub resource_version: Option<String>,
}
