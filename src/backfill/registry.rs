//! The service's backfills: one at a time, each controller's latest progress and the
//! running one's stop signal.

use super::{Progress, SharedProgress};
use crate::domain::ControllerName;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The service's backfills: one at a time, and each controller's latest progress.
pub struct Backfills {
    running: Arc<tokio::sync::Semaphore>,
    latest: Mutex<HashMap<String, SharedProgress>>,
    /// The running backfill's stop signal, per controller.
    stops: Mutex<HashMap<String, tokio::sync::watch::Sender<bool>>>,
}

impl Default for Backfills {
    fn default() -> Self {
        Self {
            running: Arc::new(tokio::sync::Semaphore::new(1)),
            latest: Mutex::default(),
            stops: Mutex::default(),
        }
    }
}

impl Backfills {
    /// A new progress for `controller`, shown from now on.
    pub fn track(&self, controller: &ControllerName) -> SharedProgress {
        let p = SharedProgress::default();
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(controller.to_string(), p.clone());
        p
    }

    pub fn latest(&self, controller: &ControllerName) -> Option<Progress> {
        let map = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        let p = map.get(controller.as_str())?;
        Some(p.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// A stop signal for `controller`'s run starting now.
    pub fn stop_signal(&self, controller: &ControllerName) -> tokio::sync::watch::Receiver<bool> {
        let (tx, rx) = tokio::sync::watch::channel(false);
        self.stops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(controller.to_string(), tx);
        rx
    }

    /// Tells `controller`'s running backfill to stop; `false` when none runs.
    pub fn stop(&self, controller: &ControllerName) -> bool {
        let stops = self.stops.lock().unwrap_or_else(|e| e.into_inner());
        stops
            .get(controller.as_str())
            .is_some_and(|tx| tx.send(true).is_ok())
    }

    pub fn forget_stop(&self, controller: &ControllerName) {
        self.stops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(controller.as_str());
    }

    /// The one-at-a-time slot, when free.
    pub fn slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.running.clone().try_acquire_owned().ok()
    }
}
