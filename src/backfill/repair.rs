//! The repair: the leader reads the last hours of each controller's history again, for
//! builds whose webhooks were lost, and publishes how many it found.

use super::{Backfills, EventSource, Options, run};
use crate::config::Settings;
use crate::domain::{ControllerName, Timestamp};
use crate::jenkins::JenkinsClient;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;

/// Sets `autopilot_repair_found_builds` from the store.
pub async fn publish_repair_counts(store: &Store, metrics: &crate::metrics::Metrics) {
    match store.repair_found().await {
        Ok(rows) => {
            for (controller, n) in rows {
                metrics
                    .repair_found
                    .with_label_values(&[&controller])
                    .set(n);
            }
        }
        Err(e) => tracing::warn!(error = %e, "counting the builds only the repair found failed"),
    }
}

/// Every `backfill.repair_every`, re-reads each controller's last `repair_window` of
/// history and folds in the builds whose webhooks were lost, one controller at a time and
/// never beside a backfill (`slot`).
pub async fn repair_every(
    store: Store,
    settings: Arc<Settings>,
    metrics: crate::metrics::Metrics,
    backfills: Arc<Backfills>,
    leader: crate::leader::Leadership,
) {
    let every = settings.backfill.repair_every;
    if every.is_zero() || settings.jenkins.controllers.is_empty() {
        return;
    }
    publish_repair_counts(&store, &metrics).await;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for (name, c) in &settings.jenkins.controllers {
            let (Ok(controller), Ok(jenkins)) =
                (ControllerName::parse(name), JenkinsClient::new(c))
            else {
                continue;
            };
            if !leader.confirm().await {
                break;
            }
            let Some(_slot) = backfills.slot() else {
                tracing::info!(controller = %controller, "a backfill is running; the repair waits for the next round");
                continue;
            };
            let since = Timestamp::from_millis(
                Timestamp::now().millis() - settings.backfill.repair_window.as_millis() as i64,
            )
            .unwrap_or(Timestamp::now());
            let opts = Options {
                since,
                jobs: None,
                dry_run: false,
                max_requests_per_second: settings.backfill.max_requests_per_second,
                source: EventSource::Repair,
                backoff: Duration::from_secs(1),
            };
            let progress = backfills.track(&controller);
            match run(&store, &jenkins, &settings, &controller, &opts, &progress).await {
                Ok(p) if p.events_stored > 0 => {
                    tracing::warn!(controller = %controller, found = p.events_stored,
                    "the repair found build events the webhooks did not deliver")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(controller = %controller, error = %e, "the repair read failed")
                }
            }
        }
        publish_repair_counts(&store, &metrics).await;
    }
}
