//! Backfill: a controller's build history read from Jenkins and folded as the webhooks
//! would, so a new installation has reports, costs, forecasts and replays from day one;
//! and the repair, the same read over the last hours, for builds whose webhooks were lost.
//!
//! The walk goes through folders, multibranch projects and organisation folders (at most
//! [`MAX_DEPTH`] deep), reads each job's builds newest first a page at a time until they
//! are older than the range, and stores them as events keyed by build and phase: a rerun,
//! the repair and the webhooks for the same builds all land on the same records once. A
//! run checkpoints each job it read to the end; a stopped or failed run resumes after
//! them. Every request waits its turn under `max_requests_per_second`, and each read is
//! retried (the client's own retries, then [`ATTEMPTS`] more with backoff) before the run
//! stops as failed.
//!
//! Which pool a past build ran in: the pool whose Deployment names the node's pod
//! (`jenkins-agent-linux-7d9f...` is Deployment `jenkins-agent-linux`'s), else the node's
//! labels while the node exists, else the label the job's newest webhook-known build asked
//! for, else unknown (kept without a label, never guessed).

mod registry;
mod repair;
mod walk;

pub use registry::Backfills;
pub use repair::{publish_repair_counts, repair_every};
pub use walk::history_event;

use crate::config::Settings;
use crate::domain::{ControllerName, EventSource, Timestamp};
use crate::jenkins::{JenkinsClient, JenkinsError};
use crate::store::Store;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Folders below folders: at most this deep.
pub const MAX_DEPTH: usize = 8;
/// Jobs one run reads at most.
pub const MAX_JOBS: usize = 100_000;
/// Builds asked for per request.
pub const PAGE: usize = 100;
/// Builds of one job read at most.
pub const MAX_BUILDS_PER_JOB: usize = 100_000;
/// Tries per read, after the client's own retries, with backoff between them.
pub const ATTEMPTS: u32 = 4;
/// Events stored per transaction.
const BATCH: usize = 500;

/// What to read.
#[derive(Debug, Clone)]
pub struct Options {
    /// Builds started at or after this instant.
    pub since: Timestamp,
    /// Only jobs whose full name matches this glob (`team/*`).
    pub jobs: Option<String>,
    /// Read and count, store nothing.
    pub dry_run: bool,
    pub max_requests_per_second: f64,
    /// `Backfill`, or `Repair` for the re-read of recent history.
    pub source: EventSource,
    /// Wait this long before retrying a failed read (doubled each time).
    pub backoff: Duration,
}

/// A run's progress, as the API and the CLI show it.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Progress {
    pub controller: String,
    pub run_id: i64,
    /// `running`, `done` or `failed`.
    pub state: String,
    pub source: String,
    /// Builds started at or after this instant (epoch ms).
    pub since: i64,
    pub jobs_glob: String,
    pub dry_run: bool,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// Jobs found in the walk (after the glob).
    pub jobs_total: u64,
    /// Jobs read to the end, this run or (resumed) an earlier attempt of it.
    pub jobs_done: u64,
    /// Jobs an earlier attempt of the run had read: skipped.
    pub jobs_resumed: u64,
    pub builds_read: u64,
    /// Builds whose event was new (not stored before by a run, the repair or webhooks).
    pub events_stored: u64,
    /// Builds refused by the payload bounds (kept out, counted).
    pub builds_refused: u64,
    /// Requests made to Jenkins, retries included.
    pub requests: u64,
    pub error: Option<String>,
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("jenkins: {0}")]
    Jenkins(#[from] JenkinsError),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Invalid(String),
}

impl BackfillError {
    /// What the run's progress and its stored record say: a store error's own text can
    /// name tables and values, so it stays in the log.
    pub fn public(&self) -> String {
        match self {
            Self::Store(_) => "the store failed (the service's log says why)".into(),
            other => other.to_string(),
        }
    }
}

pub type SharedProgress = Arc<Mutex<Progress>>;

fn update(p: &SharedProgress, f: impl FnOnce(&mut Progress)) {
    f(&mut p.lock().unwrap_or_else(|e| e.into_inner()));
}

/// Reads the controller's history in `opts`' range and stores it, updating `progress`
/// as it goes. Resumes the controller's unfinished run of the same jobs, in that run's
/// range.
pub async fn run(
    store: &Store,
    jenkins: &JenkinsClient,
    settings: &Settings,
    controller: &ControllerName,
    opts: &Options,
    progress: &SharedProgress,
) -> Result<Progress, BackfillError> {
    crate::config::BackfillSettings::check_rate(opts.max_requests_per_second)
        .map_err(|e| BackfillError::Invalid(format!("max_requests_per_second {e}")))?;
    let glob = match &opts.jobs {
        Some(g) => {
            Some(glob::Pattern::new(g).map_err(|e| BackfillError::Invalid(format!("jobs: {e}")))?)
        }
        None => None,
    };
    let glob_text = opts.jobs.clone().unwrap_or_else(|| "*".into());
    let now = Timestamp::now();
    // Backfills checkpoint their runs; the repair and dry runs read everything each time.
    let checkpointed = !opts.dry_run && opts.source == EventSource::Backfill;
    let (run, done) = if !checkpointed {
        (
            crate::store::BackfillRun {
                id: 0,
                controller: controller.to_string(),
                since: opts.since.millis(),
                jobs_glob: glob_text.clone(),
                started_at: now.millis(),
                finished_at: None,
                state: "running".into(),
                error: None,
            },
            Default::default(),
        )
    } else {
        store
            .backfill_resume_or_start(
                controller,
                opts.since,
                &glob_text,
                &crate::leader::identity(),
                now,
            )
            .await?
    };
    let since = Timestamp::from_millis(run.since).unwrap_or(opts.since);
    let opts = &Options {
        since,
        ..opts.clone()
    };
    update(progress, |p| {
        *p = Progress {
            controller: controller.to_string(),
            run_id: run.id,
            state: "running".into(),
            source: opts.source.as_str().into(),
            since: since.millis(),
            jobs_glob: glob_text.clone(),
            dry_run: opts.dry_run,
            started_at: run.started_at,
            ..Progress::default()
        }
    });
    let mut w = walk::Walker::new(store, jenkins, settings, controller, opts, progress);
    let result = async {
        let mut jobs = w.jobs().await?;
        if let Some(g) = &glob {
            jobs.retain(|j| g.matches(j));
        }
        update(progress, |p| p.jobs_total = jobs.len() as u64);
        for job in &jobs {
            if done.contains(job) {
                update(progress, |p| {
                    p.jobs_done += 1;
                    p.jobs_resumed += 1;
                });
                continue;
            }
            let n = w.job(job).await?;
            if checkpointed {
                store
                    .backfill_job_done(run.id, job, n, Timestamp::now())
                    .await?;
            }
            update(progress, |p| p.jobs_done += 1);
        }
        Ok::<(), BackfillError>(())
    }
    .await;
    if let Err(e) = &result {
        tracing::warn!(error = %e, "backfill run failed");
    }
    let error = result.as_ref().err().map(BackfillError::public);
    if checkpointed {
        store
            .backfill_finish(run.id, error.as_deref(), Timestamp::now())
            .await?;
    }
    update(progress, |p| {
        p.state = if error.is_some() { "failed" } else { "done" }.into();
        p.error = error.clone();
        p.finished_at = Some(Timestamp::now().millis());
    });
    result?;
    Ok(progress.lock().unwrap_or_else(|e| e.into_inner()).clone())
}
