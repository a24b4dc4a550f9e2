//! Where scaling decisions are applied: the cluster's settings and their check.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Where scaling decisions are applied.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSettings {
    /// `auto` (default): apply when a cluster is found (in-cluster config or KUBECONFIG),
    /// else dry-run. `dry-run`: never apply. `apply`: a cluster is required.
    #[serde(default)]
    pub mode: KubernetesMode,
    /// A kubeconfig file to use instead of the environment's.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// Every request to the API server gives up after this long (connect, send, answer):
    /// a reconcile waiting on a silent API server holds its pool, it does not hang.
    #[serde(default = "default_kube_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_kube_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Default for KubernetesSettings {
    fn default() -> Self {
        Self {
            mode: KubernetesMode::default(),
            kubeconfig: None,
            timeout: default_kube_timeout(),
        }
    }
}

/// Whether decisions are applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KubernetesMode {
    #[default]
    Auto,
    DryRun,
    Apply,
}

impl KubernetesSettings {
    /// Every rule these settings break: (field, reason).
    pub fn check(&self) -> Vec<(String, String)> {
        let mut bad = Vec::new();
        let kt = self.timeout;
        if kt < Duration::from_millis(100) || kt > Duration::from_secs(300) {
            bad.push(("timeout".into(), "must be between 100ms and 5m".into()));
        }
        bad
    }
}
