//! The settings' sections, their defaults and their small helpers.

use super::*;

/// Performance reports (`ci-cd-integration/pipeline-performance.yaml`).
#[derive(Debug, Clone, Deserialize)]
pub struct ReportSettings {
    /// A job's median duration this much above its previous median is a regression, %.
    pub regression_percent: f64,
    pub schedules: Vec<ReportSchedule>,
}

/// One scheduled report.
#[derive(Debug, Clone, Deserialize)]
pub struct ReportSchedule {
    /// Names the files: `<name>-<time>.<format>`.
    pub name: String,
    /// When, in UTC: 5 fields (minute first) or 6 (seconds first).
    pub cron: String,
    /// The span ending at each run, e.g. 7d.
    pub range: String,
    /// json, csv, md or html.
    pub format: String,
    pub directory: PathBuf,
    /// Newest files of this schedule kept.
    pub keep: usize,
    #[serde(default)]
    pub controller: Option<String>,
    #[serde(default)]
    pub job: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
}

/// Prices and cost alerts (`ci-cd-integration/cost-policies.yaml`).
#[derive(Debug, Clone, Deserialize)]
pub struct CostSettings {
    pub currency: String,
    pub prices: crate::cost::Prices,
    /// Requests of a build with no usage report outside any pool.
    pub default_build: crate::profiles::rules::Resources,
    pub alerts: crate::cost::AlertThresholds,
}

/// Reading Jenkins' build history.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillSettings {
    /// Re-read each controller's recent history this often and fold in the builds whose
    /// webhooks were lost (none of the plugins retries a refused delivery); `0s` turns it
    /// off.
    #[serde(default = "default_repair_every", with = "humantime_serde")]
    pub repair_every: Duration,
    /// How far back the repair reads.
    #[serde(default = "default_repair_window", with = "humantime_serde")]
    pub repair_window: Duration,
    /// Requests per second to one Jenkins, for backfills (unless given) and the repair.
    #[serde(default = "default_backfill_rate")]
    pub max_requests_per_second: f64,
}

fn default_repair_every() -> Duration {
    Duration::from_secs(3600)
}

fn default_repair_window() -> Duration {
    Duration::from_secs(3 * 3600)
}

fn default_backfill_rate() -> f64 {
    BackfillSettings::DEFAULT_RATE
}

/// A backfill rate outside what a run may go at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "must be from {:.4} (one a minute) to {} requests per second",
    BackfillSettings::MIN_RATE,
    BackfillSettings::MAX_RATE
)]
pub struct RateOutOfBounds;

impl BackfillSettings {
    /// A gentle default rate: a big controller is not hurt.
    pub const DEFAULT_RATE: f64 = 5.0;
    /// At most this many requests per second.
    pub const MAX_RATE: f64 = 1_000.0;
    /// At least this many: one request a minute. A slower run would hold the one
    /// backfill slot (and keep the repair waiting) for days.
    pub const MIN_RATE: f64 = 1.0 / 60.0;

    /// Whether `rate` is a request rate a run may go at; the reason when not.
    pub fn check_rate(rate: f64) -> Result<(), RateOutOfBounds> {
        if (Self::MIN_RATE..=Self::MAX_RATE).contains(&rate) {
            Ok(())
        } else {
            Err(RateOutOfBounds)
        }
    }
}

impl Default for BackfillSettings {
    fn default() -> Self {
        Self {
            repair_every: default_repair_every(),
            repair_window: default_repair_window(),
            max_requests_per_second: default_backfill_rate(),
        }
    }
}

/// HTTP listener and local storage.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    /// Address and port to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Directory for the embedded database and generated secrets.
    pub data_dir: PathBuf,
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    /// Longest a request body may take to arrive (408 after).
    #[serde(default = "default_body_timeout", with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Most connections the service holds open at once (per worker thread).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Signed webhooks whose bodies are read before they are authenticated, at once.
    #[serde(default = "default_unverified_bodies")]
    pub max_unverified_bodies: usize,
    /// Requests one peer address may have in flight at once; more get 503.
    #[serde(default = "default_requests_per_peer")]
    pub max_requests_per_peer: usize,
    /// How long an idle connection is kept open for the client's next request. A client
    /// that reuses a connection the service is closing at that instant sees "connection
    /// closed" and, sending a webhook, loses it: clients should drop their idle
    /// connections sooner than this (nginx's default, 75 s, outlasts most clients' own).
    #[serde(default = "default_keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    /// With the embedded store: webhooks and reports are refused (507) while the data
    /// directory's disk has less free space than this, in MiB.
    #[serde(default = "default_min_free_disk")]
    pub min_free_disk_mib: u64,
}

fn default_keep_alive() -> Duration {
    Duration::from_secs(75)
}

fn default_requests_per_peer() -> usize {
    512
}

fn default_min_free_disk() -> u64 {
    512
}

fn default_body_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_max_connections() -> usize {
    4096
}

fn default_unverified_bodies() -> usize {
    16
}

/// The webhook write path.
#[derive(Debug, Clone, Deserialize)]
pub struct IngestSettings {
    /// Events waiting for the writer before webhooks get 503.
    pub write_queue_capacity: usize,
    /// Most events committed in one transaction.
    pub max_batch: usize,
    /// Seconds a sender is told to wait when the write queue is full.
    pub retry_after_seconds: u32,
    /// Raw events older than this are deleted (records stay).
    #[serde(with = "humantime_serde")]
    pub event_retention: Duration,
    /// Build parameters whose names match this regular expression (case-insensitive) are
    /// stored masked.
    #[serde(default = "default_secret_parameters")]
    pub secret_parameters: String,
}

pub(super) fn default_secret_parameters() -> String {
    "pass|secret|token|key|credential|auth|private|cert|cookie|session".into()
}

/// The secret-parameter pattern as the service uses it: case-insensitive, bounded.
pub(super) fn build_secret_pattern(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(1 << 20)
        .build()
}

impl IngestSettings {
    /// The secret-parameter pattern, compiled (the settings check refused a bad one).
    pub fn secret_pattern(&self) -> regex::Regex {
        build_secret_pattern(&self.secret_parameters)
            .unwrap_or_else(|_| regex::Regex::new("$^").expect("a pattern that matches nothing"))
    }
}

/// Webhook authentication and defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookSettings {
    /// Shared token; `None` means generate one under the data directory.
    pub token: Option<SecretString>,
    /// Controller for events whose payload and request name none.
    pub default_controller: ControllerName,
}
