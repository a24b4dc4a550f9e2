//! Scheduled reports: each schedule runs the performance report on its cron expression and
//! writes it to a directory, keeping the newest N files.

use super::Range;
use super::performance::{Filter, performance_report};
use super::render::{Format, render};
use crate::config::{ReportSchedule, Settings};
use crate::domain::FileError;
use crate::domain::Timestamp;
use crate::store::Store;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Starts one task per schedule.
/// Runs every scheduled report until cancelled.
pub async fn run_all(
    store: Store,
    settings: Arc<Settings>,
    metrics: crate::metrics::Metrics,
    leader: crate::leader::Leadership,
) {
    let runs = settings
        .reports
        .schedules
        .clone()
        .into_iter()
        .map(|schedule| {
            run(
                store.clone(),
                settings.clone(),
                schedule,
                metrics.clone(),
                leader.clone(),
            )
        });
    futures_util::future::join_all(runs).await;
}

async fn run(
    store: Store,
    settings: Arc<Settings>,
    schedule: ReportSchedule,
    metrics: crate::metrics::Metrics,
    leader: crate::leader::Leadership,
) {
    let cron: croner::Cron = match schedule.cron.parse() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(schedule = %schedule.name, error = %e, "invalid cron expression; schedule not started");
            return;
        }
    };
    loop {
        let now = chrono::Utc::now();
        let next = match cron.find_next_occurrence(&now, false) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(schedule = %schedule.name, error = %e, "no next run; schedule stopped");
                return;
            }
        };
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        if !leader.confirm().await {
            continue;
        }
        match write_report(&store, &settings, &schedule, Timestamp::now(), &metrics).await {
            Ok(path) => {
                tracing::info!(schedule = %schedule.name, path = %path.display(), "scheduled report written")
            }
            Err(e) => {
                tracing::warn!(schedule = %schedule.name, error = format!("{e:#}"), "scheduled report failed")
            }
        }
    }
}

/// Runs one schedule's report as of `now`, writes it (atomically: a temporary file
/// renamed), and removes the schedule's oldest files beyond `keep`.
/// Why a scheduled report was not written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("range {0}")]
    Range(#[from] crate::domain::RangeError),
    #[error("format {0}")]
    Format(#[from] crate::domain::NotOneOf),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    File(#[from] FileError),
}

pub async fn write_report(
    store: &Store,
    settings: &Settings,
    schedule: &ReportSchedule,
    now: Timestamp,
    metrics: &crate::metrics::Metrics,
) -> Result<PathBuf, ReportError> {
    let range = Range::parse(&schedule.range, now)?;
    let format = Format::parse(&schedule.format)?;
    let filter = Filter {
        controller: schedule.controller.clone(),
        job: schedule.job.clone(),
        label: schedule.label.clone(),
    };
    let report = performance_report(store, settings, range, filter).await?;
    let frontiers = super::render::frontiers_drawn(
        store,
        std::sync::Arc::new(settings.clone()),
        range,
        format,
        metrics,
        (),
    )
    .await?;
    let dir = &schedule.directory;
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(FileError::at("creating", dir))?;
    let stamp = now.to_datetime().format("%Y%m%dT%H%M%S%.3fZ");
    let path = dir.join(format!("{}-{stamp}.{}", schedule.name, format.extension()));
    let tmp = dir.join(format!(".{}-{stamp}.tmp", schedule.name));
    tokio::fs::write(&tmp, render(&report, format, &frontiers))
        .await
        .map_err(FileError::at("writing", &tmp))?;
    tokio::fs::rename(&tmp, &path)
        .await
        .map_err(FileError::at("renaming to", &path))?;
    prune(dir, &schedule.name, format.extension(), schedule.keep)?;
    Ok(path)
}

/// Removes the oldest `<name>-*.<ext>` files of `dir` beyond `keep` (names sort by time).
fn prune(dir: &Path, name: &str, ext: &str, keep: usize) -> Result<(), FileError> {
    let prefix = format!("{name}-");
    let suffix = format!(".{ext}");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(FileError::at("listing", dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(&suffix))
        })
        .collect();
    files.sort();
    let excess = files.len().saturating_sub(keep);
    for old in &files[..excess] {
        std::fs::remove_file(old).map_err(FileError::at("removing", old))?;
    }
    Ok(())
}
