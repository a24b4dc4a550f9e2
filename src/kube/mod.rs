//! The pool executor: all Kubernetes I/O lives here. Reads a pool's Deployment through its
//! `scale` subresource and its pods, marks pods with `controller.kubernetes.io/pod-deletion-cost`,
//! and patches the replicas with the read `resourceVersion` as a precondition (a 409 is
//! re-read and retried).

mod ports;
mod settings;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
pub use settings::{KubernetesMode, KubernetesSettings};
use std::collections::BTreeMap;
use std::sync::Arc;

mod watch;
pub use crate::domain::{KubeError, PodState, PoolState, PoolUsage, Waker};

/// The annotation the ReplicaSet controller reads to pick which pods to remove first.
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// How long a scale-in waits after raising a busy agent's deletion cost. The ReplicaSet
/// controller ranks pods from its own cache, and Kubernetes orders nothing between a
/// pod's new annotation reaching that cache and the new replicas reaching the ReplicaSet:
/// on a real control plane a pod that had just turned busy, marked right before the
/// scale-in, was removed by the cost it had before.
pub const COSTS_SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

fn classify(what: String, e: kube::Error) -> KubeError {
    match e {
        kube::Error::Api(status) => match status.code {
            404 => KubeError::NotFound { what },
            403 => KubeError::Forbidden {
                what,
                detail: status.message.clone(),
            },
            code => KubeError::Api {
                what,
                code,
                message: status.message.clone(),
            },
        },
        other => KubeError::Transport {
            what,
            detail: other.to_string(),
        },
    }
}

/// Why no cluster could be reached from the settings.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("reading kubeconfig {}: {source}", path.display())]
    Kubeconfig {
        path: std::path::PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("finding a cluster (in-cluster or KUBECONFIG): {0}")]
    NoCluster(#[source] kube::config::InferConfigError),
    #[error("building the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// The cluster the settings name: their kubeconfig, else in-cluster or `KUBECONFIG`.
pub async fn load_config(settings: &KubernetesSettings) -> Result<kube::Config, ConnectError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = match &settings.kubeconfig {
        Some(path) => {
            let bad = |source| ConnectError::Kubeconfig {
                path: path.clone(),
                source,
            };
            let kc = kube::config::Kubeconfig::read_from(path).map_err(bad)?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(bad)
        }
        None => kube::Config::infer().await.map_err(ConnectError::NoCluster),
    };
    config.map(|mut config| {
        config.connect_timeout = Some(settings.timeout);
        config.read_timeout = Some(settings.timeout);
        config.write_timeout = Some(settings.timeout);
        config
    })
}

/// Applies decisions to a cluster.
#[derive(Clone)]
pub struct KubeExecutor {
    client: Client,
    /// The pool namespaces' Deployments and Pods, as watched.
    watches: Arc<watch::Watches>,
}

impl KubeExecutor {
    /// The executor for the settings, or `None` for dry-run: mode `dry-run`, or mode
    /// `auto` with no cluster found. Mode `apply` without a cluster is an error.
    /// `watch_up` is set per namespace and resource (deployments, pods): 1 while its watch
    /// is up.
    pub async fn from_settings(
        settings: &KubernetesSettings,
        watch_up: prometheus::IntGaugeVec,
    ) -> Result<Option<Self>, ConnectError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        if settings.mode == KubernetesMode::DryRun {
            return Ok(None);
        }
        match (load_config(settings).await, settings.mode) {
            (Ok(config), _) => {
                // A watch is quiet while nothing changes: its client may not give up on
                // a quiet read (the watcher notices a dead connection itself).
                let mut for_watches = config.clone();
                for_watches.read_timeout = None;
                let client = Client::try_from(config).map_err(ConnectError::Client)?;
                let watch_client = Client::try_from(for_watches).map_err(ConnectError::Client)?;
                Ok(Some(Self {
                    client,
                    watches: Arc::new(watch::Watches::new(watch_client, watch_up)),
                }))
            }
            (Err(e), KubernetesMode::Apply) => Err(e),
            (Err(e), _) => {
                tracing::info!(reason = %e, "no Kubernetes cluster configured: scaling runs in dry-run");
                Ok(None)
            }
        }
    }

    /// Wakes `wake` when a pod of the deployment turns Ready, starts terminating or is
    /// removed (once the namespace is watched: from its first read on).
    pub fn follow(&self, namespace: &str, deployment: &str, wake: Waker) {
        self.watches.follow(namespace, deployment, wake);
    }

    /// The Deployment's scale and the pods its selector picks: from the namespace's
    /// watches while they are up, else read from the API server.
    pub async fn read_pool(
        &self,
        namespace: &str,
        deployment: &str,
    ) -> Result<PoolState, KubeError> {
        if let Some(pool) = self.watches.read_pool(namespace, deployment) {
            return Ok(pool);
        }
        self.get_pool(namespace, deployment).await
    }

    /// The Deployment's scale and its pods, read from the API server.
    async fn get_pool(&self, namespace: &str, deployment: &str) -> Result<PoolState, KubeError> {
        let what = format!("deployment {namespace}/{deployment}");
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let scale = deployments
            .get_scale(deployment)
            .await
            .map_err(|e| classify(what.clone(), e))?;
        let replicas = scale.spec.and_then(|s| s.replicas).unwrap_or(0).max(0) as u32;
        let selector = scale
            .status
            .map(|s| s.selector.unwrap_or_default())
            .unwrap_or_default();
        let pods = if selector.is_empty() {
            Vec::new()
        } else {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            let list = api
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(|e| classify(format!("pods of {what}"), e))?;
            list.items.into_iter().map(pod_state).collect()
        };
        Ok(PoolState {
            replicas,
            resource_version: scale.metadata.resource_version,
            selector,
            pods,
        })
    }

    /// CPU and memory utilisation of the pool's ready pods (use over requests, summed as
    /// the HPA does), from the metrics API (metrics-server). A missing metrics API is an
    /// error, never a zero.
    pub async fn pool_usage(
        &self,
        namespace: &str,
        pool: &PoolState,
    ) -> Result<PoolUsage, KubeError> {
        if pool.selector.is_empty() {
            return Ok(PoolUsage {
                cpu_percent: None,
                memory_percent: None,
                pods_measured: 0,
            });
        }
        let resource = kube::core::ApiResource {
            group: "metrics.k8s.io".into(),
            version: "v1beta1".into(),
            api_version: "metrics.k8s.io/v1beta1".into(),
            kind: "PodMetrics".into(),
            plural: "pods".into(),
        };
        let api: Api<kube::core::DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        let list = api
            .list(&ListParams::default().labels(&pool.selector))
            .await
            .map_err(|e| classify(format!("pod metrics in {namespace}"), e))?;
        let mut readings = BTreeMap::new();
        for item in list.items {
            let name = item.metadata.name.clone().unwrap_or_default();
            if let Some(usage) = pod_usage(&item.data) {
                readings.insert(name, usage);
            }
        }
        Ok(utilisation(&pool.pods, &readings))
    }

    /// Sets each named pod's deletion cost, skipping pods that already carry it.
    pub async fn set_deletion_costs(
        &self,
        namespace: &str,
        pods: &[PodState],
        costs: &BTreeMap<String, i32>,
    ) -> Result<usize, KubeError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let mut changed = 0;
        for pod in pods {
            let Some(cost) = costs.get(&pod.name) else {
                continue;
            };
            if pod.deletion_cost == Some(*cost) || pod.terminating {
                continue;
            }
            let patch = json!({"metadata": {"annotations": {DELETION_COST: cost.to_string()}}});
            api.patch(&pod.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| classify(format!("pod {namespace}/{}", pod.name), e))?;
            changed += 1;
        }
        Ok(changed)
    }

    /// Sets the Deployment's replicas. The patch carries the `resourceVersion` read last,
    /// so a concurrent change is refused (409) instead of overwritten; then the scale is
    /// read again and the patch retried, up to three times.
    pub async fn scale(&self, to: crate::domain::ScaleTo<'_>) -> Result<(), KubeError> {
        let crate::domain::ScaleTo {
            namespace,
            deployment,
            replicas,
            resource_version,
        } = to;
        let what = format!("deployment {namespace}/{deployment}");
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let mut rv = resource_version;
        const ATTEMPTS: u32 = 3;
        for attempt in 1..=ATTEMPTS {
            let mut patch = json!({"spec": {"replicas": replicas}});
            if let Some(v) = &rv {
                patch["metadata"] = json!({"resourceVersion": v});
            }
            match api
                .patch_scale(deployment, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(scale) => {
                    self.watches.wrote_scale(
                        namespace,
                        deployment,
                        rv,
                        replicas,
                        scale.metadata.resource_version,
                    );
                    return Ok(());
                }
                Err(kube::Error::Api(status)) if status.code == 409 && attempt < ATTEMPTS => {
                    tracing::info!(%what, attempt, "scale changed concurrently (409); re-reading");
                    let fresh = api
                        .get_scale(deployment)
                        .await
                        .map_err(|e| classify(what.clone(), e))?;
                    rv = fresh.metadata.resource_version;
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    return Err(KubeError::Conflict {
                        what,
                        attempts: ATTEMPTS,
                    });
                }
                Err(e) => return Err(classify(what, e)),
            }
        }
        Err(KubeError::Conflict {
            what,
            attempts: ATTEMPTS,
        })
    }
}

fn pod_state(pod: Pod) -> PodState {
    let ready_condition = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready" && c.status == "True"));
    let ready = ready_condition.is_some();
    let startup_ms = ready_condition
        .and_then(|c| c.last_transition_time.as_ref())
        .zip(pod.metadata.creation_timestamp.as_ref())
        .map(|(ready_at, created)| ready_at.0.as_millisecond() - created.0.as_millisecond())
        .filter(|ms| *ms >= 0);
    let deletion_cost = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DELETION_COST))
        .and_then(|v| v.parse().ok());
    let requests = |key: &str| -> Option<u64> {
        let containers = &pod.spec.as_ref()?.containers;
        containers.iter().try_fold(0u64, |sum, c| {
            let q = c.resources.as_ref()?.requests.as_ref()?.get(key)?;
            let v = match key {
                "cpu" => crate::profiles::Millicores::parse(&q.0).ok()?.get(),
                _ => crate::profiles::Bytes::parse(&q.0).ok()?.get(),
            };
            Some(sum + v)
        })
    };
    PodState {
        cpu_request: requests("cpu"),
        memory_request: requests("memory"),
        name: pod.metadata.name.unwrap_or_default(),
        ready,
        terminating: pod.metadata.deletion_timestamp.is_some(),
        deletion_cost,
        startup_ms,
    }
}

/// (CPU millicores, memory bytes) a PodMetrics item reports, summed over its containers.
fn pod_usage(data: &serde_json::Value) -> Option<(u64, u64)> {
    let containers = data.get("containers")?.as_array()?;
    containers.iter().try_fold((0u64, 0u64), |(cpu, mem), c| {
        let usage = c.get("usage")?;
        let c_cpu = crate::profiles::Millicores::parse(usage.get("cpu")?.as_str()?).ok()?;
        let c_mem = crate::profiles::Bytes::parse(usage.get("memory")?.as_str()?).ok()?;
        Some((cpu + c_cpu.get(), mem + c_mem.get()))
    })
}

/// Use over requests of the ready pods that have both, in percent.
fn utilisation(pods: &[PodState], readings: &BTreeMap<String, (u64, u64)>) -> PoolUsage {
    let (mut cpu_use, mut cpu_req, mut mem_use, mut mem_req, mut measured) = (0, 0, 0, 0, 0);
    let (mut cpu_ok, mut mem_ok) = (true, true);
    for pod in pods.iter().filter(|p| p.ready && !p.terminating) {
        let Some((cpu, mem)) = readings.get(&pod.name) else {
            continue;
        };
        measured += 1;
        match pod.cpu_request {
            Some(r) if r > 0 => {
                cpu_use += cpu;
                cpu_req += r;
            }
            _ => cpu_ok = false,
        }
        match pod.memory_request {
            Some(r) if r > 0 => {
                mem_use += mem;
                mem_req += r;
            }
            _ => mem_ok = false,
        }
    }
    let pct = |used: u64, req: u64, ok: bool| {
        (ok && req > 0).then(|| (used as f64 / req as f64 * 1000.0).round() / 10.0)
    };
    PoolUsage {
        cpu_percent: pct(cpu_use, cpu_req, cpu_ok),
        memory_percent: pct(mem_use, mem_req, mem_ok),
        pods_measured: measured,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ready: bool, cpu: Option<u64>, mem: Option<u64>) -> PodState {
        PodState {
            name: name.into(),
            ready,
            terminating: false,
            deletion_cost: None,
            cpu_request: cpu,
            memory_request: mem,
            startup_ms: None,
        }
    }

    #[test]
    fn utilisation_sums_use_over_requests_of_ready_measured_pods() {
        const GI: u64 = 1 << 30;
        let pods = [
            pod("a", true, Some(1000), Some(GI)),
            pod("b", true, Some(1000), Some(GI)),
            pod("starting", false, Some(1000), Some(GI)),
            pod("unmeasured", true, Some(1000), Some(GI)),
        ];
        let readings = BTreeMap::from([
            ("a".to_string(), (1500, GI / 2)),
            ("b".to_string(), (500, GI / 2)),
            ("starting".to_string(), (4000, GI)),
        ]);
        let u = utilisation(&pods, &readings);
        assert_eq!(u.pods_measured, 2);
        assert_eq!(u.cpu_percent, Some(100.0));
        assert_eq!(u.memory_percent, Some(50.0));
        // A pod without a CPU request makes CPU utilisation undefined, not zero.
        let no_req = [pod("a", true, None, Some(GI))];
        let u = utilisation(&no_req, &readings);
        assert_eq!(u.cpu_percent, None);
        assert_eq!(u.memory_percent, Some(50.0));
        assert_eq!(utilisation(&pods, &BTreeMap::new()).cpu_percent, None);
    }

    #[test]
    fn pod_metrics_items_are_summed_over_containers() {
        let item = serde_json::json!({"containers": [
            {"name": "agent", "usage": {"cpu": "250000000n", "memory": "300Mi"}},
            {"name": "side", "usage": {"cpu": "50m", "memory": "20Mi"}}]});
        assert_eq!(pod_usage(&item), Some((300, 320 * 1024 * 1024)));
        assert_eq!(
            pod_usage(&serde_json::json!({"containers": [{"usage": {}}]})),
            None
        );
    }
}
