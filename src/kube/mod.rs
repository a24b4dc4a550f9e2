//! The pool executor: all Kubernetes I/O lives here. Reads a pool's Deployment through its
//! `scale` subresource and its pods, marks pods with `controller.kubernetes.io/pod-deletion-cost`,
//! and patches the replicas with the read `resourceVersion` as a precondition (a 409 is
//! re-read and retried).

use crate::config::{KubernetesMode, KubernetesSettings};
use anyhow::Context;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use std::collections::BTreeMap;

/// The annotation the ReplicaSet controller reads to pick which pods to remove first.
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

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
}

/// A pool's Deployment as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolState {
    /// `spec.replicas` of the scale subresource.
    pub replicas: u32,
    pub resource_version: Option<String>,
    pub pods: Vec<PodState>,
}

/// Applies decisions to a cluster.
#[derive(Clone)]
pub struct KubeExecutor {
    client: Client,
}

impl KubeExecutor {
    /// The executor for the settings, or `None` for dry-run: mode `dry-run`, or mode
    /// `auto` with no cluster found. Mode `apply` without a cluster is an error.
    pub async fn from_settings(settings: &KubernetesSettings) -> anyhow::Result<Option<Self>> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        if settings.mode == KubernetesMode::DryRun {
            return Ok(None);
        }
        let config = match &settings.kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("reading kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(
                    kc,
                    &kube::config::KubeConfigOptions::default(),
                )
                .await
                .with_context(|| format!("loading kubeconfig {}", path.display()))
            }
            None => kube::Config::infer()
                .await
                .context("finding a cluster (in-cluster or KUBECONFIG)"),
        };
        match (config, settings.mode) {
            (Ok(config), _) => {
                let client = Client::try_from(config).context("building the Kubernetes client")?;
                Ok(Some(Self { client }))
            }
            (Err(e), KubernetesMode::Apply) => Err(e),
            (Err(e), _) => {
                tracing::info!(reason = %format!("{e:#}"), "no Kubernetes cluster configured: scaling runs in dry-run");
                Ok(None)
            }
        }
    }

    /// Reads the Deployment's scale and the pods its selector picks.
    pub async fn read_pool(
        &self,
        namespace: &str,
        deployment: &str,
    ) -> Result<PoolState, KubeError> {
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
            pods,
        })
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
    pub async fn scale(
        &self,
        namespace: &str,
        deployment: &str,
        replicas: u32,
        resource_version: Option<String>,
    ) -> Result<(), KubeError> {
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
                Ok(_) => return Ok(()),
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
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let deletion_cost = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DELETION_COST))
        .and_then(|v| v.parse().ok());
    PodState {
        name: pod.metadata.name.unwrap_or_default(),
        ready,
        terminating: pod.metadata.deletion_timestamp.is_some(),
        deletion_cost,
    }
}
