//! Wake-ups across replicas. Every replica takes webhooks and pipeline announcements, but
//! only the leader reconciles; on PostgreSQL each replica passes what it took to the
//! others with `NOTIFY`, and each one listening applies it to its own pools, so a queue
//! webhook or an announcement that reached a follower wakes the leader's pool at once,
//! not at its next periodic reconcile. Followers keep the announcements too: a new leader
//! knows them. Messages a listener misses while it reconnects are caught by the periodic
//! reconcile.

use super::ScalingHandle;
use crate::domain::ControllerName;
use crate::metrics::Metrics;
use crate::store::{ChannelListener, Store};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// The channel every replica listens on.
const CHANNEL: &str = "autopilot_wake";

/// Wake-ups waiting to be sent; more are dropped (and counted): the periodic reconcile
/// still sees what they would have said.
const QUEUE: usize = 1024;

/// NOTIFY payloads are at most 8000 bytes; ours are far smaller, anything bigger is not ours.
const MAX_PAYLOAD: usize = 8000;

/// One wake-up, as sent between replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub(super) enum Wake {
    /// A queue event arrived for the controller.
    Queue {
        from: u64,
        controller: ControllerName,
        /// The label the queued build waits for, when known.
        #[serde(default)]
        label: Option<String>,
    },
    /// A pipeline announced a build for `label`, counting until `until` (epoch ms).
    Announce {
        from: u64,
        controller: ControllerName,
        label: String,
        until: i64,
    },
}

impl Wake {
    fn from(&self) -> u64 {
        match self {
            Wake::Queue { from, .. } | Wake::Announce { from, .. } => *from,
        }
    }
}

/// Sends this replica's wake-ups to the others.
#[derive(Clone)]
pub(super) struct Outbox {
    /// This process, so it skips its own messages.
    pub(super) me: u64,
    tx: mpsc::Sender<Wake>,
    metrics: Metrics,
}

impl Outbox {
    pub(super) fn send(&self, wake: Wake) {
        if self.tx.try_send(wake).is_err() {
            self.metrics.wakeups.with_label_values(&["dropped"]).inc();
        }
    }
}

/// Starts sending and listening, when the store is PostgreSQL at `url`.
pub(super) fn start(
    store: Store,
    url: String,
    metrics: Metrics,
    tasks: &mut crate::tasks::Tasks,
) -> (Outbox, Inbox) {
    let (tx, mut rx) = mpsc::channel::<Wake>(QUEUE);
    let me = rand::random::<u64>();
    let m = metrics.clone();
    tasks.spawn("wake-up sender", async move {
        while let Some(wake) = rx.recv().await {
            let payload = serde_json::to_string(&wake).expect("a wake-up serializes");
            match store.notify(CHANNEL, &payload).await {
                Ok(()) => m.wakeups.with_label_values(&["sent"]).inc(),
                Err(e) => {
                    m.wakeups.with_label_values(&["failed"]).inc();
                    tracing::warn!(error = %e, "passing a wake-up to the other replicas failed");
                }
            }
        }
    });
    (
        Outbox {
            me,
            tx,
            metrics: metrics.clone(),
        },
        Inbox { url, me, metrics },
    )
}

/// Receives the other replicas' wake-ups.
pub(super) struct Inbox {
    url: String,
    me: u64,
    metrics: Metrics,
}

impl Inbox {
    /// Applies every wake-up the others send to `handle`'s pools, for ever; reconnects
    /// after a lost connection.
    pub(super) async fn run(self, handle: ScalingHandle) {
        loop {
            let mut listener = match ChannelListener::open(&self.url, CHANNEL).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "listening for other replicas' wake-ups failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    continue;
                }
            };
            loop {
                match listener.next().await {
                    Ok(Some(payload)) => {
                        if let Some(wake) = parse(&payload, self.me) {
                            self.metrics.wakeups.with_label_values(&["received"]).inc();
                            handle.apply(&wake);
                        }
                    }
                    // The connection was lost (the next call reconnects): what the others
                    // sent meanwhile is gone, so every pool reconciles now instead of at
                    // its next period.
                    Ok(None) => {
                        tracing::warn!(
                            "the wake-up listener's connection was lost; waking every pool and reconnecting"
                        );
                        self.metrics.wakeups.with_label_values(&["lost"]).inc();
                        handle.wake_all();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the wake-up listener's connection failed; waking every pool and reconnecting");
                        self.metrics.wakeups.with_label_values(&["lost"]).inc();
                        handle.wake_all();
                        break;
                    }
                }
            }
        }
    }
}

/// Another replica's wake-up, or `None` for our own, an oversized or a foreign payload.
pub(super) fn parse(payload: &str, me: u64) -> Option<Wake> {
    if payload.len() > MAX_PAYLOAD {
        return None;
    }
    let wake: Wake = serde_json::from_str(payload).ok()?;
    let fits = |label: &str| {
        !label.trim().is_empty() && label.len() <= 1024 && !label.chars().any(char::is_control)
    };
    let valid = match &wake {
        Wake::Queue { label, .. } => label.as_deref().is_none_or(fits),
        Wake::Announce { label, .. } => fits(label),
    };
    (valid && wake.from() != me).then_some(wake)
}

impl ScalingHandle {
    /// Applies another replica's wake-up here.
    pub(super) fn apply(&self, wake: &Wake) {
        match wake {
            Wake::Queue {
                controller, label, ..
            } => self.wake_pools(controller, label.as_deref()),
            Wake::Announce {
                controller,
                label,
                until,
                ..
            } => {
                self.count_announcement(controller, label, *until);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_other_replicas_well_formed_wake_ups_are_applied() {
        let queue = Wake::Queue {
            from: 7,
            controller: ControllerName::parse("prod").unwrap(),
            label: Some("linux".into()),
        };
        let text = serde_json::to_string(&queue).unwrap();
        assert_eq!(parse(&text, 8), Some(queue.clone()));
        assert_eq!(parse(&text, 7), None, "our own");
        let announce = Wake::Announce {
            from: 7,
            controller: ControllerName::parse("prod").unwrap(),
            label: "linux && big".into(),
            until: 1_700_000_030_000,
        };
        let text = serde_json::to_string(&announce).unwrap();
        assert_eq!(parse(&text, 8), Some(announce));
        for foreign in [
            "",
            "not json",
            r#"{"kind":"queue","from":1}"#,
            r#"{"kind":"queue","from":1,"controller":""}"#,
            r#"{"kind":"queue","from":1,"controller":"a/b"}"#,
            r#"{"kind":"queue","from":1,"controller":"prod","label":"a\u0000b"}"#,
            r#"{"kind":"queue","from":1,"controller":"prod","extra":1}"#,
            r#"{"kind":"announce","from":1,"controller":"prod","label":"a\nb","until":1}"#,
            r#"{"kind":"drop-tables","from":1}"#,
        ] {
            assert_eq!(parse(foreign, 8), None, "{foreign}");
        }
        let huge = format!(
            r#"{{"kind":"queue","from":1,"controller":"{}"}}"#,
            "a".repeat(9000)
        );
        assert_eq!(parse(&huge, 8), None);
    }
}
