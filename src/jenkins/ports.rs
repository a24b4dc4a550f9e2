//! The controller's port to Jenkins, over the client.

use super::{ComputerView, JenkinsClient, JenkinsError, LabelView, QueueItemView};

#[async_trait::async_trait]
impl crate::scaling::ports::JenkinsApi for JenkinsClient {
    async fn queue(&self) -> Result<Vec<QueueItemView>, JenkinsError> {
        JenkinsClient::queue(self).await
    }
    async fn label(&self, label: &str) -> Result<LabelView, JenkinsError> {
        JenkinsClient::label(self, label).await
    }
    async fn label_queue_length(&self, label: &str) -> Result<f64, JenkinsError> {
        JenkinsClient::label_queue_length(self, label).await
    }
    async fn computers(&self) -> Result<Vec<ComputerView>, JenkinsError> {
        JenkinsClient::computers(self).await
    }
    async fn computer(&self, node: &str) -> Result<ComputerView, JenkinsError> {
        JenkinsClient::computer(self, node).await
    }
    async fn set_offline(
        &self,
        node: &str,
        offline: bool,
        message: &str,
    ) -> Result<bool, JenkinsError> {
        JenkinsClient::set_offline(self, node, offline, message).await
    }
}
