//! The walk through a controller's jobs and their builds: paced, retried reads, and each
//! past build turned into the events its webhooks would have sent.

use super::{
    ATTEMPTS, BATCH, BackfillError, MAX_BUILDS_PER_JOB, MAX_DEPTH, MAX_JOBS, Options, PAGE,
    SharedProgress, update,
};
use crate::config::{PoolSettings, Settings};
use crate::domain::{
    BuildFacts, BuildKey, BuildPhase, ControllerName, DomainEvent, EventSource, IngestEvent,
    JobName, Label, Timestamp,
};
use crate::jenkins::history::HistoricBuild;
use crate::jenkins::{JenkinsClient, JenkinsError};
use crate::store::Store;
use std::collections::HashMap;
use std::time::Duration;

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

pub(super) struct Walker<'a> {
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

impl<'a> Walker<'a> {
    pub(super) fn new(
        store: &'a Store,
        jenkins: &'a JenkinsClient,
        settings: &Settings,
        controller: &ControllerName,
        opts: &'a Options,
        progress: &'a SharedProgress,
    ) -> Self {
        Self {
            store,
            jenkins,
            controller: controller.clone(),
            opts,
            progress,
            pacer: Pacer::new(opts.max_requests_per_second),
            pools: Pools::of(settings, controller),
            node_labels: HashMap::new(),
            job_labels: HashMap::new(),
        }
    }

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
    pub(super) async fn jobs(&mut self) -> Result<Vec<String>, BackfillError> {
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
            let known = self.store.latest_label(&self.controller, job, true).await?;
            self.job_labels.insert(job.as_str().to_string(), known);
        }
        Ok(self.job_labels[job.as_str()].clone())
    }

    /// Reads one job's builds in the range and stores them; returns how many were read.
    pub(super) async fn job(&mut self, name: &str) -> Result<u64, BackfillError> {
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
