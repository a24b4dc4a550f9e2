//! The leader's periodic work: report rollups, retention purges, cost alerts, scheduled
//! reports and the repair. Each runs only while this replica leads (started when the lead
//! is won, dropped when it is lost) and confirms the lead right before it acts, so a
//! replica whose hold on the lead vanished between checks does not act beside the new
//! leader.

use crate::backfill::Backfills;
use crate::config::Settings;
use crate::domain::Timestamp;
use crate::leader::{Leadership, while_leading};
use crate::metrics::Metrics;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;

/// Starts every duty in `tasks`; each waits for the lead.
pub fn spawn_all(
    settings: &Arc<Settings>,
    store: &Store,
    metrics: &Metrics,
    backfills: &Arc<Backfills>,
    leadership: &Leadership,
    tasks: &mut crate::tasks::Tasks,
) {
    {
        let (store, settings, metrics) = (store.clone(), settings.clone(), metrics.clone());
        tasks.spawn(
            "cost alerts",
            while_leading(leadership.clone(), move |leader| {
                crate::analytics::costs::watch_alerts(
                    store.clone(),
                    settings.clone(),
                    metrics.clone(),
                    leader,
                )
            }),
        );
    }
    {
        let (store, settings, metrics) = (store.clone(), settings.clone(), metrics.clone());
        tasks.spawn(
            "scheduled reports",
            while_leading(leadership.clone(), move |leader| {
                crate::analytics::schedule::run_all(
                    store.clone(),
                    settings.clone(),
                    metrics.clone(),
                    leader,
                )
            }),
        );
    }
    {
        // Reports read hourly and daily sums of the builds; the leader keeps them current.
        let (store, metrics) = (store.clone(), metrics.clone());
        tasks.spawn(
            "rollups",
            while_leading(leadership.clone(), move |leader| {
                roll_up_every(
                    store.clone(),
                    Duration::from_secs(60),
                    metrics.clone(),
                    leader,
                )
            }),
        );
    }
    {
        let (store, retention) = (store.clone(), settings.ingest.event_retention);
        tasks.spawn(
            "event purge",
            while_leading(leadership.clone(), move |leader| {
                purge_every_hour(store.clone(), retention, Retained::Events, leader)
            }),
        );
    }
    if !settings.scaling.pools.is_empty() {
        let (store, retention) = (store.clone(), settings.scaling.decision_retention);
        tasks.spawn(
            "decision purge",
            while_leading(leadership.clone(), move |leader| {
                purge_every_hour(store.clone(), retention, Retained::Decisions, leader)
            }),
        );
    }
    {
        let (store, settings, metrics, backfills) = (
            store.clone(),
            settings.clone(),
            metrics.clone(),
            backfills.clone(),
        );
        tasks.spawn(
            "repair",
            while_leading(leadership.clone(), move |leader| {
                crate::backfill::repair_every(
                    store.clone(),
                    settings.clone(),
                    metrics.clone(),
                    backfills.clone(),
                    leader,
                )
            }),
        );
    }
}

/// What a retention purge deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retained {
    /// Raw webhook events.
    Events,
    /// Scaling decisions.
    Decisions,
}

/// Every hour (the first time at once), deletes what of `what` is older than
/// `retention`, and logs how much went.
pub async fn purge_every_hour(
    store: Store,
    retention: Duration,
    what: Retained,
    leader: Leadership,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let age = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let Ok(cutoff) = Timestamp::from_millis(Timestamp::now().millis().saturating_sub(age))
        else {
            continue;
        };
        if !leader.confirm().await {
            continue;
        }
        let deleted = match what {
            Retained::Events => store.delete_events_before(cutoff).await,
            Retained::Decisions => store.delete_decisions_before(cutoff).await,
        };
        match deleted {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, ?what, "deleted past their retention"),
            Err(e) => tracing::warn!(error = %e, ?what, "deleting past the retention failed"),
        }
    }
}

/// Keeps the rollups current while this replica leads: a pass every `every`, and passes
/// back to back while stale hours are left (a store upgraded with a year of builds). Each
/// pass is counted by outcome; the hours still behind and the last good pass's time are
/// gauges, so an alert can tell reports reading builds instead of rollups.
pub async fn roll_up_every(store: Store, every: Duration, metrics: Metrics, leader: Leadership) {
    loop {
        if !leader.confirm().await {
            tokio::time::sleep(every).await;
            continue;
        }
        let wait = match store.roll_up(Timestamp::now(), 200).await {
            Ok(done) => {
                metrics.rollup_passes.with_label_values(&["ok"]).inc();
                metrics
                    .rollup_behind_hours
                    .set(i64::try_from(done.behind).unwrap_or(i64::MAX));
                metrics
                    .rollup_last_pass
                    .set(Timestamp::now().millis() / 1000);
                if done.hours > 0 || done.days > 0 {
                    tracing::debug!(
                        hours = done.hours,
                        days = done.days,
                        behind = done.behind,
                        "report rollups updated"
                    );
                }
                if done.left {
                    Duration::from_millis(50)
                } else {
                    every
                }
            }
            Err(e) => {
                metrics.rollup_passes.with_label_values(&["error"]).inc();
                tracing::warn!(error = %e, "report rollups not updated: reports read the builds until they are");
                every
            }
        };
        tokio::time::sleep(wait).await;
    }
}
