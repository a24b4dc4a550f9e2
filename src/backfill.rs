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

use crate::config::{PoolSettings, Settings};
use crate::domain::{
    BuildFacts, BuildKey, BuildPhase, ControllerName, DomainEvent, EventSource, IngestEvent,
    JobName, Label, Timestamp,
};
use crate::jenkins::history::HistoricBuild;
use crate::jenkins::{JenkinsClient, JenkinsError};
use crate::store::Store;
use serde::Serialize;
use std::collections::HashMap;
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

impl Options {
    /// A gentle default rate: a big controller is not hurt.
    pub const DEFAULT_RATE: f64 = 5.0;
    /// At most this many requests per second.
    pub const MAX_RATE: f64 = 1_000.0;
    /// At least this many: one request a minute. A slower run would hold the one
    /// backfill slot (and keep the repair waiting) for days.
    pub const MIN_RATE: f64 = 1.0 / 60.0;

    /// Whether `rate` is a request rate a run may go at; the reason when not.
    pub fn check_rate(rate: f64) -> Result<(), String> {
        if (Self::MIN_RATE..=Self::MAX_RATE).contains(&rate) {
            Ok(())
        } else {
            Err(format!(
                "must be from {:.4} (one a minute) to {} requests per second",
                Self::MIN_RATE,
                Self::MAX_RATE
            ))
        }
    }
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

/// Requests wait their turn: at most one per `every`.
struct Pacer {
    every: Duration,
    next: tokio::time::Instant,
}

impl Pacer {
    fn new(per_second: f64) -> Self {
        Self {
            every: Duration::from_secs_f64(1.0 / per_second),
            next: tokio::time::Instant::now(),
        }
    }

    async fn wait(&mut self) {
        tokio::time::sleep_until(self.next).await;
        self.next = self.next.max(tokio::time::Instant::now()) + self.every;
    }
}

/// The controller's pools, for telling which one a past build ran in.
struct Pools(Vec<(Label, String)>);

impl Pools {
    fn of(settings: &Settings, controller: &ControllerName) -> Self {
        let mut v: Vec<(Label, String)> = settings
            .scaling
            .pools
            .values()
            .filter(|p: &&PoolSettings| &p.controller == controller)
            .map(|p| (p.label.clone(), p.deployment.clone()))
            .collect();
        // The longest Deployment name first: `agent-linux-arm` before `agent-linux`.
        v.sort_by_key(|(_, d)| std::cmp::Reverse(d.len()));
        Self(v)
    }

    /// The pool whose Deployment's pods are named like `node`.
    fn by_pod_name(&self, node: &str) -> Option<&Label> {
        self.0.iter().find_map(|(label, deployment)| {
            node.strip_prefix(deployment.as_str())
                .is_some_and(|rest| rest.starts_with('-') && rest.len() > 1)
                .then_some(label)
        })
    }

    /// The pool one of the node's labels (space-separated) is.
    fn by_node_labels(&self, labels: &str) -> Option<&Label> {
        self.0.iter().map(|(l, _)| l).find(|l| l.serves(labels))
    }
}

struct Walker<'a> {
    store: &'a Store,
    jenkins: &'a JenkinsClient,
    controller: ControllerName,
    opts: &'a Options,
    progress: &'a SharedProgress,
    pacer: Pacer,
    pools: Pools,
    node_labels: HashMap<String, Option<String>>,
    job_labels: HashMap<String, Option<String>>,
}

impl Walker<'_> {
    /// One Jenkins read: paced, counted, retried with backoff.
    async fn read<T, F, Fut>(&mut self, mut call: F) -> Result<T, JenkinsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, JenkinsError>>,
    {
        let mut attempt = 0;
        loop {
            self.pacer.wait().await;
            update(self.progress, |p| p.requests += 1);
            match call().await {
                Ok(v) => return Ok(v),
                // An answer that will not change: refused, or not there.
                Err(e @ JenkinsError::Unauthorized { .. }) => return Err(e),
                Err(
                    e @ JenkinsError::Status {
                        status: 400..=499, ..
                    },
                ) if !matches!(
                    &e,
                    JenkinsError::Status {
                        status: 408 | 429,
                        ..
                    }
                ) =>
                {
                    return Err(e);
                }
                Err(e) if attempt + 1 >= ATTEMPTS => return Err(e),
                Err(e) => {
                    let wait = self.opts.backoff * 2u32.pow(attempt);
                    tracing::warn!(controller = %self.controller, error = %e, ?wait, "a history read failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Every job's full name, folders walked (at most [`MAX_DEPTH`] deep, [`MAX_JOBS`]).
    async fn jobs(&mut self) -> Result<Vec<String>, BackfillError> {
        let mut out = Vec::new();
        let mut folders = vec![(String::new(), 0usize)];
        while let Some((folder, depth)) = folders.pop() {
            let jenkins = self.jenkins;
            let items = self.read(|| jenkins.folder_items(&folder)).await?;
            for item in items {
                let full = if folder.is_empty() {
                    item.name.clone()
                } else {
                    format!("{folder}/{}", item.name)
                };
                if item.is_folder() {
                    if depth + 1 < MAX_DEPTH {
                        folders.push((full, depth + 1));
                    }
                } else if out.len() < MAX_JOBS {
                    out.push(full);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// The label a past build is recorded under: its pool's, else the job's known one.
    async fn label_for(
        &mut self,
        job: &JobName,
        built_on: Option<&str>,
    ) -> Result<Option<String>, BackfillError> {
        // With no pool on this controller a node's labels could name none: not asked.
        if let Some(node) = built_on.filter(|_| !self.pools.0.is_empty()) {
            if let Some(l) = self.pools.by_pod_name(node) {
                return Ok(Some(l.to_string()));
            }
            if !self.node_labels.contains_key(node) {
                let jenkins = self.jenkins;
                let labels = match self.read(|| jenkins.computer(node)).await {
                    Ok(c) => Some(
                        c.assigned_labels
                            .iter()
                            .map(|l| l.name.as_str())
                            .collect::<Vec<_>>()
                            .join(" "),
                    ),
                    // The node is gone (its pod was removed long ago).
                    Err(JenkinsError::Status { status: 404, .. }) => None,
                    Err(e) => return Err(e.into()),
                };
                self.node_labels.insert(node.to_string(), labels);
            }
            if let Some(Some(labels)) = self.node_labels.get(node)
                && let Some(l) = self.pools.by_node_labels(labels)
            {
                return Ok(Some(l.to_string()));
            }
        }
        if !self.job_labels.contains_key(job.as_str()) {
            let known = self.store.webhook_label_of(&self.controller, job).await?;
            self.job_labels.insert(job.as_str().to_string(), known);
        }
        Ok(self.job_labels[job.as_str()].clone())
    }

    /// Reads one job's builds in the range and stores them; returns how many were read.
    async fn job(&mut self, name: &str) -> Result<u64, BackfillError> {
        let Ok(job) = JobName::parse(name) else {
            tracing::warn!(controller = %self.controller, job = name, "a job name the service refuses; skipped");
            return Ok(0);
        };
        let mut read = 0u64;
        let mut events = Vec::new();
        let mut from = 0;
        'pages: while from < MAX_BUILDS_PER_JOB {
            let jenkins = self.jenkins;
            let page = self
                .read(|| jenkins.builds_page(name, from, from + PAGE))
                .await?;
            if page.is_empty() {
                break;
            }
            let last_page = page.len() < PAGE;
            for b in &page {
                if b.timestamp < self.opts.since.millis() {
                    break 'pages;
                }
                read += 1;
                let label = self.label_for(&job, b.node()).await?;
                match history_event(&self.controller, &job, b, label, self.opts.source) {
                    Some(e) => events.push(e),
                    None => update(self.progress, |p| p.builds_refused += 1),
                }
            }
            if last_page {
                break;
            }
            from += PAGE;
        }
        update(self.progress, |p| p.builds_read += read);
        if !self.opts.dry_run {
            for chunk in events.chunks(BATCH) {
                let stored = self.store.write_batch(&[chunk], Timestamp::now()).await?;
                let n = stored.iter().sum::<usize>() as u64;
                update(self.progress, |p| p.events_stored += n);
            }
        }
        Ok(read)
    }
}

/// The event a past build stands for, keyed by build and phase (a running build read
/// again once finished gives its completion); `None` when it breaks the payload bounds.
pub fn history_event(
    controller: &ControllerName,
    job: &JobName,
    b: &HistoricBuild,
    label: Option<String>,
    source: EventSource,
) -> Option<IngestEvent> {
    let outcome = crate::ingest::result(b.result.as_deref());
    let ended = outcome.ended();
    let phase = if ended {
        BuildPhase::Completed
    } else {
        BuildPhase::Started
    };
    let mut facts = BuildFacts::new(
        BuildKey {
            job: job.clone(),
            number: b.number,
        },
        phase,
    );
    let started = Timestamp::from_millis(b.timestamp).ok()?;
    facts.started_at = Some(started);
    if let Some(wait) = b.queue_wait_ms() {
        facts.queued_at = Timestamp::from_millis(b.timestamp.checked_sub(wait)?).ok();
    }
    if ended {
        facts.duration_ms = Some(b.duration.max(0));
        facts.finished_at =
            Timestamp::from_millis(b.timestamp.checked_add(b.duration.max(0))?).ok();
    }
    facts.result = outcome.result;
    facts.result_raw = outcome.unrecognized;
    facts.queue_id = b.queue_id;
    facts.node = b.node().map(str::to_string);
    facts.label = label;
    let event = IngestEvent {
        key: format!(
            "history:{controller}:{}#{}:{}",
            job.as_str(),
            b.number,
            phase.as_str()
        ),
        controller: controller.clone(),
        source,
        kind: format!("build.{}", phase.as_str()),
        event: DomainEvent::Build(facts),
    };
    crate::ingest::limits::check(&event).ok()?;
    Some(event)
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
    Options::check_rate(opts.max_requests_per_second)
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
    let mut w = Walker {
        store,
        jenkins,
        controller: controller.clone(),
        opts,
        progress,
        pacer: Pacer::new(opts.max_requests_per_second),
        pools: Pools::of(settings, controller),
        node_labels: HashMap::new(),
        job_labels: HashMap::new(),
    };
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
    backfills: Arc<crate::http::backfill::Backfills>,
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
