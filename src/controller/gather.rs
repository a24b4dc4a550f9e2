//! Gather: what Jenkins, the cluster and the store say about one pool, turned into the
//! plan's [`Observation`]. A failed read is an error, never a zero.

use super::ReconcileError;
use super::{Context, PoolWorker};
use crate::domain::Timestamp;
use crate::jenkins::{ComputerView, LabelView, QueueItemView};
use crate::kube::PoolState;
use crate::scaling::PolicyName;
use crate::scaling::demand::{self, QueueDemand, QueuedItem};
use crate::scaling::multi_metric::Signal;
use crate::scaling::plan::{self, AgentView, DEMAND_WINDOW_MS, Observation, WAIT_WINDOW_MS};
use std::collections::{HashMap, HashSet};

/// What Jenkins says about a pool: the controller's shared queue and agents, and the
/// pool's label.
pub(super) struct JenkinsView {
    pub snapshot: std::sync::Arc<super::snapshot::Snapshot>,
    pub label: LabelView,
    pub load_statistics: f64,
}

/// One pool as gathered.
pub(super) struct Gathered {
    pub seen: Observation,
    /// The Jenkins node (and pod) name of each of `seen.agents`.
    pub names: Vec<String>,
    /// The Deployment and its pods; `None` in dry-run.
    pub pool: Option<PoolState>,
    pub jenkins: JenkinsView,
    pub queue: QueueDemand,
    /// The label's nodes running a build.
    pub busy_nodes: Vec<String>,
}

impl PoolWorker {
    /// Reads Jenkins, the cluster and the store's queue events at once.
    pub(super) async fn gather(
        &mut self,
        ctx: &Context,
        now: Timestamp,
    ) -> Result<Gathered, ReconcileError> {
        let label = self.settings.label.as_str();
        let not_before = self
            .fresh_after
            .take()
            .unwrap_or_else(std::time::Instant::now);
        let jenkins = async {
            let stats = async {
                ctx.jenkins
                    .label_queue_length(label)
                    .await
                    .map_err(ReconcileError::from)
            };
            let (snapshot, stats) = tokio::try_join!(ctx.snapshot.get(not_before), stats)?;
            let label_view = match LabelView::from_computers(label, &snapshot.computers) {
                Some(v) => v,
                None => ctx.jenkins.label(label).await?,
            };
            Ok::<_, ReconcileError>(JenkinsView {
                snapshot,
                label: label_view,
                load_statistics: stats,
            })
        };
        let cluster = async {
            match &ctx.cluster {
                None => Ok(None),
                Some(c) => c
                    .read_pool(&self.settings.namespace, &self.settings.deployment)
                    .await
                    .map(Some)
                    .map_err(ReconcileError::from),
            }
        };
        let (jenkins, pool, events) = tokio::join!(
            jenkins,
            cluster,
            ctx.store.waiting_queue(Some(&self.controller))
        );
        // The current size for a hold, when the cluster could be read.
        self.held_at = pool
            .as_ref()
            .ok()
            .and_then(|p| p.as_ref().map(|p| p.replicas))
            .or(self.dry_run_replicas);
        let (jenkins, pool, events) = (jenkins?, pool?, events?);
        self.close_missing_queue_items(ctx, &jenkins, now).await;
        let event_labels: HashMap<u64, String> = events
            .into_iter()
            .filter_map(|q| q.label.map(|l| (q.queue_id, l)))
            .collect();
        let items: Vec<QueuedItem> = jenkins
            .snapshot
            .queue
            .iter()
            .map(|i| QueuedItem {
                id: i.id,
                blocked: i.blocked,
                why: i.why.clone(),
            })
            .collect();
        let queue = demand::queued_for_label(
            &self.settings.label,
            &items,
            &event_labels,
            jenkins.load_statistics,
        )
        .with_announced(self.announced.live(now.millis()));
        let (agents, names, busy_nodes) = self.agents(&jenkins, pool.as_ref(), now.millis());
        let current = match &pool {
            Some(p) => p.replicas,
            None => self
                .dry_run_replicas
                .unwrap_or(agents.iter().filter(|a| a.ready).count() as u32),
        };
        let seen = Observation {
            queued: queue.queued,
            busy_executors: jenkins.label.busy_executors,
            idle_executors: jenkins.label.idle_executors,
            current_replicas: current,
            agents,
            warm_agents: 0,
            forecast_extra: 0,
            signals: Vec::new(),
        };
        Ok(Gathered {
            seen,
            names,
            pool,
            jenkins,
            queue,
            busy_nodes,
        })
    }

    /// Jenkins is authoritative for what is queued: items a lost webhook left waiting in
    /// the store are closed (a minute's grace for items newer than this read).
    async fn close_missing_queue_items(&self, ctx: &Context, j: &JenkinsView, now: Timestamp) {
        let present: Vec<u64> = j.snapshot.queue.iter().map(|i| i.id).collect();
        let grace = Timestamp::from_millis(now.millis() - 60_000).unwrap_or(now);
        match ctx
            .store
            .close_missing_queue_items(&self.controller, &present, grace, now)
            .await
        {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(pool = %self.name, closed = n, "queue items Jenkins no longer lists marked left")
            }
            Err(e) => {
                tracing::warn!(pool = %self.name, error = %e, "closing stale queue items failed")
            }
        }
    }

    /// The pool's agents: its pods (not terminating) with their Jenkins nodes, or in
    /// dry-run the label's online nodes. A busy node of the label that matches no pod
    /// counts as a busy agent (never removed). Also each agent's name, and the busy
    /// nodes.
    fn agents(
        &mut self,
        j: &JenkinsView,
        pool: Option<&PoolState>,
        now: i64,
    ) -> (Vec<AgentView>, Vec<String>, Vec<String>) {
        let nodes: HashSet<&str> = j.label.nodes.iter().map(|n| n.node_name.as_str()).collect();
        let computers: HashMap<&str, &ComputerView> = j
            .snapshot
            .computers
            .iter()
            .filter(|c| nodes.contains(c.display_name.as_str()))
            .map(|c| (c.display_name.as_str(), c))
            .collect();
        // A node taken offline may still be finishing a build: busy is busy.
        let mut busy_nodes: Vec<String> = computers
            .values()
            .filter(|c| !c.idle)
            .map(|c| c.display_name.clone())
            .collect();
        busy_nodes.sort();
        let mut out = Vec::new();
        let mut names = Vec::new();
        let idle = &mut self.idle_since;
        let mut see = |name: &str, ready: bool, busy: bool| {
            out.push(AgentView {
                ready,
                busy,
                idle_since_ms: idle.observe(name.to_string(), ready && !busy, now),
            });
            names.push(name.to_string());
        };
        match pool {
            Some(p) => {
                for pod in p.pods.iter().filter(|p| !p.terminating) {
                    let busy = computers.get(pod.name.as_str()).is_some_and(|c| !c.idle);
                    see(&pod.name, pod.ready, busy);
                }
                let pods: HashSet<&str> = p.pods.iter().map(|p| p.name.as_str()).collect();
                for n in busy_nodes.iter().filter(|n| !pods.contains(n.as_str())) {
                    see(n, true, true);
                }
            }
            None => {
                let mut online: Vec<&&ComputerView> =
                    computers.values().filter(|c| !c.offline).collect();
                online.sort_by(|a, b| a.display_name.cmp(&b.display_name));
                for c in online {
                    see(&c.display_name, true, !c.idle);
                }
            }
        }
        let alive: HashSet<&String> = names.iter().collect();
        self.idle_since.keep(|n| alive.contains(n));
        (out, names, busy_nodes)
    }

    /// The multi-metric signals. Pods' CPU and memory use (metrics.k8s.io) are read only
    /// for the `hpa` and `weighted` policies; demand rate and queue wait come from the
    /// store's queue events and build starts over the plan's windows, with the ages of
    /// the builds Jenkins still lists as queued. A failed read leaves its signal unknown.
    pub(super) async fn signals(&self, ctx: &Context, g: &Gathered, now: Timestamp) -> Vec<Signal> {
        let label = &self.settings.label;
        let needs_usage = matches!(self.settings.policy, PolicyName::Hpa | PolicyName::Weighted);
        let usage = match (&ctx.cluster, &g.pool, needs_usage) {
            (Some(c), Some(state), true) => {
                match c.pool_usage(&self.settings.namespace, state).await {
                    Ok(u) => Some(u),
                    Err(e) => {
                        ctx.metrics
                            .pool_failures
                            .with_label_values(&[&self.name, "metrics"])
                            .inc();
                        tracing::warn!(pool = %self.name, error = %e, "reading pod metrics failed; CPU and memory signals unknown");
                        None
                    }
                }
            }
            _ => None,
        };
        let since = |ms: i64| Timestamp::from_millis(now.millis() - ms).unwrap_or(now);
        let arrivals = match ctx
            .store
            .queue_entries_since(&self.controller, since(DEMAND_WINDOW_MS))
            .await
        {
            Ok(labels) => Some(
                labels
                    .iter()
                    .filter(|l| l.as_deref().is_some_and(|l| label.is(l)))
                    .count(),
            ),
            Err(e) => {
                tracing::warn!(pool = %self.name, error = %e, "reading the demand rate failed");
                None
            }
        };
        let waits = match ctx
            .store
            .waits_since(&self.controller, since(WAIT_WINDOW_MS))
            .await
        {
            Ok(rows) => {
                let mut waits: Vec<i64> = rows
                    .into_iter()
                    .filter(|(l, _)| l.as_deref().is_some_and(|l| label.is(l)))
                    .map(|(_, w)| w)
                    .collect();
                let why_label = |i: &&QueueItemView| {
                    i.why
                        .as_deref()
                        .and_then(crate::domain::label_from_why)
                        .is_some_and(|l| label.is(&l))
                };
                waits.extend(
                    g.jenkins
                        .snapshot
                        .queue
                        .iter()
                        .filter(|i| !i.blocked)
                        .filter(why_label)
                        .filter_map(|i| i.in_queue_since)
                        .map(|t| now.millis() - t),
                );
                Some(waits)
            }
            Err(e) => {
                tracing::warn!(pool = %self.name, error = %e, "reading queue waits failed");
                None
            }
        };
        plan::signals(
            (
                usage.and_then(|u| u.cpu_percent),
                usage.and_then(|u| u.memory_percent),
            ),
            arrivals,
            waits,
        )
    }
}
