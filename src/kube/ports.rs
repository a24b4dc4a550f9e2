//! The controller's port to the cluster, over the executor.

use super::{KubeError, KubeExecutor, PodState, PoolState, PoolUsage, Waker};
use std::collections::BTreeMap;

#[async_trait::async_trait]
impl crate::scaling::ports::ClusterApi for KubeExecutor {
    async fn read_pool(&self, namespace: &str, deployment: &str) -> Result<PoolState, KubeError> {
        KubeExecutor::read_pool(self, namespace, deployment).await
    }
    async fn pool_usage(&self, namespace: &str, pool: &PoolState) -> Result<PoolUsage, KubeError> {
        KubeExecutor::pool_usage(self, namespace, pool).await
    }
    async fn set_deletion_costs(
        &self,
        namespace: &str,
        pods: &[PodState],
        costs: &BTreeMap<String, i32>,
    ) -> Result<usize, KubeError> {
        KubeExecutor::set_deletion_costs(self, namespace, pods, costs).await
    }
    fn costs_settle(&self) -> std::time::Duration {
        crate::kube::COSTS_SETTLE
    }
    async fn scale(&self, to: crate::domain::ScaleTo<'_>) -> Result<(), KubeError> {
        KubeExecutor::scale(self, to).await
    }
    fn follow(&self, namespace: &str, deployment: &str, wake: Waker) {
        KubeExecutor::follow(self, namespace, deployment, wake)
    }
}
