//! How a reconcile fails, and the service's clock.

use crate::domain::{JenkinsError, KubeError, Timestamp};
use crate::scaling::ports::Clock;
use crate::store::StoreError;

/// The system's clock: the service's.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Why a reconcile could not plan: a read failed. The pool then holds its size
/// (`error_policy`); a failed read is never taken for zero.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{0}")]
    Jenkins(#[from] JenkinsError),
    #[error("{0}")]
    Kubernetes(#[from] KubeError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl ReconcileError {
    /// The failing side, as the `source` label of `autopilot_pool_failures_total` and the
    /// decision's error prefix.
    pub fn source(&self) -> &'static str {
        match self {
            Self::Jenkins(_) => "jenkins",
            Self::Kubernetes(_) => "kubernetes",
            Self::Store(_) => "store",
        }
    }
}
