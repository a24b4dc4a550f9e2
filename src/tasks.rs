//! Background work with handles: every long-running task the service starts (the pools'
//! reconcile loops, the leader's jobs, the wake-up listener) is spawned into a [`Tasks`],
//! so that shutdown can stop them all and wait for them before the store closes.

use std::future::Future;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A set of named background tasks that stop together.
#[derive(Default)]
pub struct Tasks {
    set: JoinSet<()>,
    stop: CancellationToken,
}

impl Tasks {
    /// Runs `work` until it ends or the set is stopped; at a stop it is dropped at its
    /// next await point (a transaction it holds rolls back). Its log lines carry `name`.
    pub fn spawn(&mut self, name: &'static str, work: impl Future<Output = ()> + Send + 'static) {
        use tracing::Instrument;
        let stop = self.stop.clone();
        self.set.spawn(
            async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = work => {}
                }
            }
            .instrument(tracing::info_span!("task", name)),
        );
    }

    /// How many tasks are still held (running, or ended and not yet collected).
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Tells every task to stop and waits for them, at most `grace` (a task blocked
    /// without an await point cannot be stopped); those still running then are aborted.
    /// Returns how many had to be aborted.
    pub async fn stop(mut self, grace: Duration) -> usize {
        self.stop.cancel();
        let all_done = async { while self.set.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all_done).await.is_ok() {
            return 0;
        }
        let left = self.set.len();
        self.set.abort_all();
        while self.set.join_next().await.is_some() {}
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts its drop.
    struct Guard(Arc<AtomicUsize>);

    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_stop_ends_every_running_task_and_waits_for_them() {
        let (started, ended) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut tasks = Tasks::default();
        for _ in 0..3 {
            let (started, ended) = (started.clone(), ended.clone());
            tasks.spawn("forever", async move {
                let _guard = Guard(ended);
                started.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
            });
        }
        while started.load(Ordering::SeqCst) < 3 {
            tokio::task::yield_now().await;
        }
        assert_eq!(tasks.len(), 3);
        assert_eq!(ended.load(Ordering::SeqCst), 0);
        assert_eq!(tasks.stop(Duration::from_secs(5)).await, 0);
        assert_eq!(ended.load(Ordering::SeqCst), 3, "every task was dropped");
    }
}
