//! One Jenkins snapshot per controller, shared by its pools. Every pool's reconcile needs
//! the queue and the agents (`/queue` and `/computer`, the heaviest read a controller
//! answers); the pools of one controller read them once per period between them, and a
//! reconcile that starts while a read is in flight joins it (single flight). A pool's
//! label view comes from the agents when its label is atoms joined by `&&`; only the
//! label's queue length (load statistics), and other expressions' views, are read per
//! label.

use super::ReconcileError;
use crate::jenkins::{ComputerView, JenkinsError, QueueItemView};
use crate::scaling::ports::JenkinsApi;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The queue and the agents, read together.
#[derive(Debug)]
pub(super) struct Snapshot {
    pub queue: Vec<QueueItemView>,
    pub computers: Vec<ComputerView>,
}

type Read = Shared<BoxFuture<'static, Result<Arc<Snapshot>, JenkinsError>>>;

/// A controller's snapshot: the newest read (in flight or done) and when it started.
pub(super) struct SharedSnapshot {
    jenkins: Arc<dyn JenkinsApi>,
    newest: Mutex<Option<(Instant, Read)>>,
}

impl SharedSnapshot {
    pub(super) fn new(jenkins: Arc<dyn JenkinsApi>) -> Self {
        Self {
            jenkins,
            newest: Mutex::new(None),
        }
    }

    /// A snapshot read no earlier than `not_before`: the newest one (joined if still in
    /// flight) when it started since, else a new read. A failed read is not kept: the next
    /// caller reads again.
    pub(super) async fn get(&self, not_before: Instant) -> Result<Arc<Snapshot>, ReconcileError> {
        let read = {
            let mut newest = self.newest.lock().unwrap_or_else(|e| e.into_inner());
            let reusable = newest.as_ref().filter(|(started, read)| {
                *started >= not_before && !matches!(read.peek(), Some(Err(_)))
            });
            match reusable {
                Some((_, read)) => read.clone(),
                None => {
                    let jenkins = self.jenkins.clone();
                    let read = async move {
                        let (queue, computers) =
                            tokio::try_join!(jenkins.queue(), jenkins.computers())?;
                        Ok(Arc::new(Snapshot { queue, computers }))
                    }
                    .boxed()
                    .shared();
                    *newest = Some((Instant::now(), read.clone()));
                    read
                }
            }
        };
        Ok(read.await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jenkins::{LabelView, QueueItemView};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Counts the reads; each takes 50 ms; fails when told to.
    #[derive(Default)]
    struct Counting {
        reads: AtomicUsize,
        fail: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl JenkinsApi for Counting {
        async fn queue(&self) -> Result<Vec<QueueItemView>, JenkinsError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            if self.fail.load(Ordering::SeqCst) {
                return Err(JenkinsError::Status {
                    method: "GET",
                    url: "queue".into(),
                    status: 503,
                });
            }
            Ok(Vec::new())
        }
        async fn label(&self, _: &str) -> Result<LabelView, JenkinsError> {
            unreachable!()
        }
        async fn label_queue_length(&self, _: &str) -> Result<f64, JenkinsError> {
            unreachable!()
        }
        async fn computers(&self) -> Result<Vec<ComputerView>, JenkinsError> {
            Ok(Vec::new())
        }
        async fn computer(&self, _: &str) -> Result<ComputerView, JenkinsError> {
            unreachable!()
        }
        async fn set_offline(&self, _: &str, _: bool, _: &str) -> Result<bool, JenkinsError> {
            unreachable!()
        }
    }

    #[tokio::test]
    async fn pools_share_one_read_in_flight_and_a_recent_one() {
        let jenkins = Arc::new(Counting::default());
        let shared = Arc::new(SharedSnapshot::new(jenkins.clone()));
        let start = Instant::now();
        // 50 pools at once: one read.
        let all = (0..50).map(|_| {
            let s = shared.clone();
            async move { s.get(start).await.is_ok() }
        });
        assert!(
            futures_util::future::join_all(all)
                .await
                .into_iter()
                .all(|ok| ok)
        );
        assert_eq!(jenkins.reads.load(Ordering::SeqCst), 1);
        // A periodic reconcile accepts the read that started since its period began.
        shared.get(start).await.unwrap();
        assert_eq!(jenkins.reads.load(Ordering::SeqCst), 1);
        // A webhook after that read started wants a newer one.
        let woken = Instant::now();
        shared.get(woken).await.unwrap();
        assert_eq!(jenkins.reads.load(Ordering::SeqCst), 2);
        // A failed read is an error for everyone who joined it, and not kept.
        jenkins.fail.store(true, Ordering::SeqCst);
        let later = Instant::now();
        let (a, b) = tokio::join!(shared.get(later), shared.get(later));
        assert!(a.is_err() && b.is_err());
        assert_eq!(jenkins.reads.load(Ordering::SeqCst), 3);
        jenkins.fail.store(false, Ordering::SeqCst);
        shared.get(later).await.unwrap();
        assert_eq!(jenkins.reads.load(Ordering::SeqCst), 4);
    }
}
