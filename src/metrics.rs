//! Prometheus metrics of the service, in one registry served at `/metrics`.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every metric's name starts with this and `_`.
pub const PREFIX: &str = "autopilot";

/// The service's metrics. Cheap to clone (the collectors are shared handles).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Webhook events by source, type and outcome (stored, duplicate, rejected, ignored,
    /// unauthorized, overloaded, failed).
    pub events: IntCounterVec,
    /// Seconds one group commit took.
    pub store_commit_seconds: Histogram,
    /// Requests committed per group commit.
    pub batch_size: Histogram,
    /// Requests waiting for the writer.
    pub write_queue_length: IntGauge,
    /// Failed commits.
    pub store_errors: IntCounter,
    /// Agents per pool by kind: desired, current, ready, pending, busy.
    pub pool_agents: IntGaugeVec,
    /// Queued items waiting for each pool's label.
    pub pool_queued: IntGaugeVec,
    /// Applied scale changes per pool and direction (up, down).
    pub pool_scale_events: IntCounterVec,
    /// Failed reads or writes per pool and source (jenkins, kubernetes, store): the pool
    /// held its size each time.
    pub pool_failures: IntCounterVec,
    /// Failed drain steps per pool: take-offline, bring-back (the node stays offline in
    /// Jenkins until a reconcile brings it back).
    pub pool_drain_failures: IntCounterVec,
    /// 1 while this replica leads (scales pools, runs the periodic work), else 0.
    pub leader: IntGauge,
    /// Build records only the repair of lost webhooks found, per controller.
    pub repair_found: IntGaugeVec,
    /// Builds pipelines announced as about to wait for each pool's label.
    pub pool_announcements: IntCounterVec,
    /// Wake-ups passed between replicas through PostgreSQL, by outcome (sent, received,
    /// dropped, failed; lost: the listener's connection was lost, so every pool was woken).
    pub wakeups: IntCounterVec,
    /// Cost alerts raised, by kind (cost_per_build, idle_share).
    pub cost_alerts: IntCounterVec,
    /// 1 while the watch of a pool namespace's resource (deployments, pods) is up: listed
    /// and without an error since; 0 while pools there are read from the API server.
    pub kube_watch_up: IntGaugeVec,
    /// The leader's rollup passes, by outcome (ok, error).
    pub rollup_passes: IntCounterVec,
    /// Hours that are over and not yet rolled up after the last pass: reports read their
    /// builds until they are.
    pub rollup_behind_hours: IntGauge,
    /// Replays of recorded history (frontiers, optimizations, HTML reports) running now.
    pub replays_running: IntGauge,
    /// Replays stopped before they ended because nobody waited for them any more.
    pub replays_stopped: IntCounter,
    /// When the last rollup pass that worked ended (Unix seconds; 0 before the first).
    pub rollup_last_pass: IntGauge,
    /// Bytes of SQLite's write-ahead log in use at the last checkpoint.
    pub store_wal_bytes: IntGauge,
    /// The process's own figures (resident memory, CPU seconds, open files, threads):
    /// `autopilot_process_*`, read from /proc at each scrape.
    process: std::sync::Arc<prometheus::process_collector::ProcessCollector>,
}

impl Metrics {
    pub fn new() -> Self {
        let registry =
            Registry::new_custom(Some(PREFIX.into()), None).expect("valid registry prefix");
        let events = IntCounterVec::new(
            Opts::new(
                "webhook_events_total",
                "Webhook events by source, type and outcome",
            ),
            &["source", "type", "outcome"],
        )
        .expect("valid metric");
        let store_commit_seconds = Histogram::with_opts(
            HistogramOpts::new("store_commit_seconds", "Time to commit one batch of events")
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
        )
        .expect("valid metric");
        let batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "store_batch_requests",
                "Webhook requests committed per transaction",
            )
            .buckets(vec![
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0,
            ]),
        )
        .expect("valid metric");
        let write_queue_length = IntGauge::new(
            "write_queue_length",
            "Webhook requests waiting for the writer",
        )
        .expect("valid metric");
        let store_errors =
            IntCounter::new("store_errors_total", "Failed commits").expect("valid metric");
        registry
            .register(Box::new(events.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(store_commit_seconds.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(batch_size.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(write_queue_length.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(store_errors.clone()))
            .expect("unique metric");
        let pool_agents = IntGaugeVec::new(
            Opts::new("pool_agents", "Agents per pool by kind"),
            &["pool", "kind"],
        )
        .expect("valid metric");
        let pool_queued = IntGaugeVec::new(
            Opts::new("pool_queued", "Queued items for the pool's label"),
            &["pool"],
        )
        .expect("valid metric");
        let pool_scale_events = IntCounterVec::new(
            Opts::new(
                "pool_scale_events_total",
                "Applied scale changes by direction",
            ),
            &["pool", "direction"],
        )
        .expect("valid metric");
        let pool_failures = IntCounterVec::new(
            Opts::new(
                "pool_failures_total",
                "Failed reads or writes; the pool held its size",
            ),
            &["pool", "source"],
        )
        .expect("valid metric");
        let leader = IntGauge::new(
            "leader",
            "1 while this replica leads: scales pools and runs the periodic work",
        )
        .expect("valid metric");
        let rollup_behind_hours = IntGauge::new(
            "rollup_behind_hours",
            "Hours that are over and not yet rolled up: reports read their builds",
        )
        .expect("valid metric");
        let rollup_last_pass = IntGauge::new(
            "rollup_last_pass_timestamp_seconds",
            "When the last rollup pass that worked ended",
        )
        .expect("valid metric");
        let replays_running = IntGauge::new(
            "replays_running",
            "Replays of recorded history (frontiers, optimizations, HTML reports) running now",
        )
        .expect("valid metric");
        let replays_stopped = IntCounter::new(
            "replays_stopped_total",
            "Replays stopped early: the request went away or the service was stopping",
        )
        .expect("valid metric");
        registry
            .register(Box::new(replays_stopped.clone()))
            .expect("unique metric");
        for g in [
            &leader,
            &rollup_behind_hours,
            &rollup_last_pass,
            &replays_running,
        ] {
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
        }
        let repair_found = IntGaugeVec::new(
            Opts::new(
                "repair_found_builds",
                "Build records only the repair found (their webhooks were lost), per controller",
            ),
            &["controller"],
        )
        .expect("valid metric");
        let kube_watch_up = IntGaugeVec::new(
            Opts::new(
                "kube_watch_up",
                "1 while the watch of a pool namespace's deployments or pods is up",
            ),
            &["namespace", "resource"],
        )
        .expect("valid metric");
        for c in [&pool_agents, &pool_queued, &repair_found, &kube_watch_up] {
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
        }
        let cost_alerts = IntCounterVec::new(
            Opts::new("cost_alerts_total", "Cost alerts raised by kind"),
            &["kind"],
        )
        .expect("valid metric");
        let pool_announcements = IntCounterVec::new(
            Opts::new(
                "pool_announcements_total",
                "Builds a pipeline announced as about to wait for the pool's label",
            ),
            &["pool"],
        )
        .expect("valid metric");
        let pool_drain_failures = IntCounterVec::new(
            Opts::new(
                "pool_drain_failures_total",
                "Failed drain steps (take-offline, bring-back) per pool",
            ),
            &["pool", "step"],
        )
        .expect("valid metric");
        let wakeups = IntCounterVec::new(
            Opts::new(
                "replica_wakeups_total",
                "Pool wake-ups passed between replicas through PostgreSQL, by outcome",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let rollup_passes = IntCounterVec::new(
            Opts::new(
                "rollup_passes_total",
                "The leader's rollup passes by outcome (ok, error)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let store_wal_bytes = IntGauge::new(
            "store_wal_bytes",
            "Bytes of the SQLite write-ahead log in use at the last checkpoint",
        )
        .expect("valid metric");
        registry
            .register(Box::new(store_wal_bytes.clone()))
            .expect("unique metric");
        let process =
            std::sync::Arc::new(prometheus::process_collector::ProcessCollector::for_self());
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique metric");
        for c in [
            &rollup_passes,
            &wakeups,
            &pool_drain_failures,
            &pool_scale_events,
            &pool_failures,
            &cost_alerts,
            &pool_announcements,
        ] {
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
        }
        Self {
            registry,
            events,
            store_commit_seconds,
            batch_size,
            cost_alerts,
            write_queue_length,
            store_errors,
            pool_agents,
            pool_queued,
            pool_scale_events,
            pool_failures,
            pool_announcements,
            wakeups,
            pool_drain_failures,
            repair_found,
            leader,
            kube_watch_up,
            rollup_passes,
            rollup_behind_hours,
            rollup_last_pass,
            replays_running,
            replays_stopped,
            store_wal_bytes,
            process,
        }
    }

    /// Counts one webhook event.
    pub fn count_event(&self, source: &str, kind: &str, outcome: &str) {
        self.events
            .with_label_values(&[source, kind, outcome])
            .inc();
    }

    /// Every metric family's full name (`autopilot_...`), with or without samples yet.
    pub fn names(&self) -> Vec<String> {
        use prometheus::core::Collector;
        let collectors: [&dyn Collector; 23] = [
            &self.events,
            &self.store_commit_seconds,
            &self.batch_size,
            &self.write_queue_length,
            &self.store_errors,
            &self.pool_agents,
            &self.pool_queued,
            &self.pool_scale_events,
            &self.pool_failures,
            &self.cost_alerts,
            &self.pool_announcements,
            &self.wakeups,
            &self.pool_drain_failures,
            &self.repair_found,
            &self.leader,
            &self.kube_watch_up,
            &self.rollup_passes,
            &self.rollup_behind_hours,
            &self.rollup_last_pass,
            &self.replays_running,
            &self.replays_stopped,
            &self.store_wal_bytes,
            &*self.process,
        ];
        collectors
            .iter()
            .flat_map(|c| {
                c.desc()
                    .into_iter()
                    .map(|d| format!("{PREFIX}_{}", d.fq_name))
            })
            .collect()
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# encoding failed: {e}\n"))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
