//! What the pools' controllers talk to: the configured Jenkins controllers and the
//! cluster (or, for the demo and the tests, in-memory ones), and why they could not start.

use crate::config::Settings;
use crate::jenkins::JenkinsClient;
use crate::kube::KubeExecutor;
use crate::scaling::ports::{Clock, ClusterApi, JenkinsApi};
use std::collections::HashMap;
use std::sync::Arc;

/// Why the pools' controllers could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("Jenkins controller {controller}: building its HTTP client: {source}")]
    Jenkins {
        controller: String,
        source: reqwest::Error,
    },
    #[error("pool {pool}: no Jenkins controller {controller:?}")]
    NoController { pool: String, controller: String },
}

#[derive(Clone)]
pub struct Adapters {
    /// Jenkins by controller name (lower case).
    pub jenkins: HashMap<String, Arc<dyn JenkinsApi>>,
    pub cluster: Option<Arc<dyn ClusterApi>>,
    pub clock: Arc<dyn Clock>,
}

impl Adapters {
    /// The service's: a Jenkins client per configured controller, the cluster if any.
    pub fn real(settings: &Settings, kube: Option<KubeExecutor>) -> Result<Self, StartError> {
        let mut jenkins: HashMap<String, Arc<dyn JenkinsApi>> = HashMap::new();
        for (name, c) in &settings.jenkins.controllers {
            let client = JenkinsClient::new(c).map_err(|source| StartError::Jenkins {
                controller: name.clone(),
                source,
            })?;
            jenkins.insert(name.to_ascii_lowercase(), Arc::new(client));
        }
        Ok(Self {
            jenkins,
            cluster: kube.map(|k| Arc::new(k) as Arc<dyn ClusterApi>),
            clock: Arc::new(super::SystemClock),
        })
    }
}
