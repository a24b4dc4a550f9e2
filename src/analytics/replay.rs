//! Replays of recorded history run on a blocking thread (never on the async runtime), and
//! stop when nobody waits for them any more: the request went away, or the service is
//! stopping. A replay checks between the settings it replays, so it ends within one
//! replay of being asked; its slot is given back only when its thread is done, so a
//! client that leaves and asks again cannot pile replays up.

use crate::metrics::Metrics;
use crate::store::StoreError;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the replay was asked to stop.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn asked(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Asks the replay to stop.
    pub fn ask(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Asks the replay to stop when the waiting future is dropped before it ended.
struct StopOnDrop {
    stop: Stop,
    ended: bool,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if !self.ended {
            self.stop.ask();
        }
    }
}

/// Runs `work` on a blocking thread, holding `slot` until it is done. `work` returns
/// `None` when it saw the stop.
pub async fn on_blocking_thread<T, S>(
    metrics: &Metrics,
    slot: S,
    work: impl FnOnce(&Stop) -> Option<T> + Send + 'static,
) -> Result<T, StoreError>
where
    T: Send + 'static,
    S: Send + 'static,
{
    let mut guard = StopOnDrop {
        stop: Stop::default(),
        ended: false,
    };
    let stop = guard.stop.clone();
    let (running, stopped) = (
        metrics.replays_running.clone(),
        metrics.replays_stopped.clone(),
    );
    running.inc();
    let out = tokio::task::spawn_blocking(move || {
        let out = work(&stop);
        drop(slot);
        running.dec();
        if out.is_none() {
            stopped.inc();
            tracing::info!("a replay stopped early: nobody waits for it any more");
        }
        out
    })
    .await;
    guard.ended = true;
    match out {
        Ok(Some(out)) => Ok(out),
        Ok(None) => Err(StoreError::Corrupt("the replay was stopped".into())),
        Err(e) => Err(StoreError::Corrupt(format!("the replay failed: {e}"))),
    }
}
