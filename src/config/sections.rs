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

/// API tokens: HS256 with a secret, or RS256 with a key pair.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// With reads open, the `Host` names a request may carry; empty: the loopback names
    /// when listening on loopback, else any.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// HS256 secret; `None` (and no public key): generated under the data directory.
    pub jwt_secret: Option<SecretString>,
    /// RS256: tokens are verified with this PEM public key.
    pub jwt_public_key_file: Option<PathBuf>,
    /// RS256: `token issue` signs with this PEM private key.
    pub jwt_private_key_file: Option<PathBuf>,
    /// The `iss` claim.
    pub issuer: String,
    /// Clock difference allowed when checking `exp`.
    #[serde(with = "humantime_serde")]
    pub clock_skew: Duration,
    /// Require a `reports:read` token for the read API (builds, queue, pools, costs,
    /// reports, export) and the dashboard's data.
    pub protect_reads: bool,
}

/// Jenkins controllers, by name. The name is the one webhooks use (`?controller=`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct JenkinsSettings {
    /// Controllers by name, e.g. `prod: {url: https://ci.example.com/, user: autopilot}`.
    #[serde(default)]
    pub controllers: BTreeMap<String, JenkinsControllerSettings>,
}

impl JenkinsSettings {
    /// The controller named `name` (controller names compare without case).
    pub fn controller(&self, name: &str) -> Option<&JenkinsControllerSettings> {
        self.controllers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, c)| c)
    }
}

/// How to reach one Jenkins controller's REST API.
#[derive(Debug, Clone, Deserialize)]
pub struct JenkinsControllerSettings {
    /// Root URL, e.g. `https://ci.example.com/` or `https://host/jenkins/`.
    pub url: url::Url,
    /// User for basic auth with an API token.
    #[serde(default)]
    pub user: Option<String>,
    /// The user's API token (AUTOPILOT_JENKINS__CONTROLLERS__<NAME>__API_TOKEN).
    #[serde(default)]
    pub api_token: Option<SecretString>,
    /// Time allowed for one request.
    #[serde(default = "default_jenkins_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Retries of a failed read (with exponential backoff from 100 ms); writes are never
    /// retried.
    #[serde(default = "default_jenkins_retries")]
    pub retries: u32,
}

fn default_jenkins_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_jenkins_retries() -> u32 {
    2
}

/// Where scaling decisions are applied.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSettings {
    /// `auto` (default): apply when a cluster is found (in-cluster config or KUBECONFIG),
    /// else dry-run. `dry-run`: never apply. `apply`: a cluster is required.
    #[serde(default)]
    pub mode: KubernetesMode,
    /// A kubeconfig file to use instead of the environment's.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// Every request to the API server gives up after this long (connect, send, answer):
    /// a reconcile waiting on a silent API server holds its pool, it does not hang.
    #[serde(default = "default_kube_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_kube_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Default for KubernetesSettings {
    fn default() -> Self {
        Self {
            mode: KubernetesMode::default(),
            kubeconfig: None,
            timeout: default_kube_timeout(),
        }
    }
}

/// Whether decisions are applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KubernetesMode {
    #[default]
    Auto,
    DryRun,
    Apply,
}

/// How replicas elect the one that leads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaderMode {
    /// `lease` in a cluster (`KUBERNETES_SERVICE_HOST` set), else `postgres` with a
    /// PostgreSQL store, else `off`.
    #[default]
    Auto,
    /// A Kubernetes Lease in the service's namespace.
    Lease,
    /// A session advisory lock on the PostgreSQL store.
    Postgres,
    /// One replica: it always leads.
    Off,
}

/// Leader election.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderElectionSettings {
    #[serde(default)]
    pub mode: LeaderMode,
    /// A standby tries to take the lead this often; the leader checks its hold as often.
    #[serde(default = "default_retry_every", with = "humantime_serde")]
    pub retry_every: Duration,
    /// A leader whose check gets no answer within this long stops acting.
    #[serde(default = "default_renew_deadline", with = "humantime_serde")]
    pub renew_deadline: Duration,
    /// How long a hold lasts without a renewal: a Lease's duration, or how long PostgreSQL
    /// keeps a silent leader's session (and its lock). Longer than `renew_deadline`, so a
    /// leader that cannot renew stops acting before another can take over.
    #[serde(default = "default_lease_duration", with = "humantime_serde")]
    pub lease_duration: Duration,
    /// The Lease's name (`lease` mode).
    #[serde(default = "default_lease_name")]
    pub lease_name: String,
    /// The Lease's namespace: else `POD_NAMESPACE`, else the kubeconfig's.
    #[serde(default)]
    pub lease_namespace: Option<String>,
}

fn default_lease_duration() -> Duration {
    Duration::from_secs(15)
}

fn default_lease_name() -> String {
    "jenkins-autopilot-leader".into()
}

fn default_retry_every() -> Duration {
    Duration::from_secs(5)
}

fn default_renew_deadline() -> Duration {
    Duration::from_secs(10)
}

impl Default for LeaderElectionSettings {
    fn default() -> Self {
        Self {
            mode: LeaderMode::Auto,
            retry_every: default_retry_every(),
            renew_deadline: default_renew_deadline(),
            lease_duration: default_lease_duration(),
            lease_name: default_lease_name(),
            lease_namespace: None,
        }
    }
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
    crate::backfill::Options::DEFAULT_RATE
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
    /// With the embedded store: webhooks and reports are refused (507) while the data
    /// directory's disk has less free space than this, in MiB.
    #[serde(default = "default_min_free_disk")]
    pub min_free_disk_mib: u64,
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

/// Where builds and events are stored.
#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// `None`: embedded SQLite under the data directory. Else a `sqlite:` or
    /// `postgres://` URL.
    pub url: Option<SecretString>,
    /// Connections kept for reads. Writes have their own (one on SQLite, a few on
    /// PostgreSQL), so no number of slow readers can hold up a webhook.
    pub max_connections: u32,
    /// Longest a read may wait for a connection or (PostgreSQL) run; a read past it
    /// fails and is answered 503, and its connection goes back to the others.
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// SQLite only: the write-ahead log is truncated once this many MiB of it are in use
    /// (0: never; it then grows for as long as writes never pause).
    pub wal_limit_mib: u64,
    /// SQLite only: `full` (default) fsyncs every commit, so an answered webhook survives
    /// power loss; `normal` fsyncs at checkpoints only: still safe when the process is
    /// killed, not when the machine loses power.
    pub sqlite_synchronous: SqliteSynchronous,
}

impl DatabaseSettings {
    /// The URL when the store is PostgreSQL.
    pub fn postgres_url(&self) -> Option<String> {
        use secrecy::ExposeSecret;
        self.url
            .as_ref()
            .map(|u| u.expose_secret().to_string())
            .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
    }
}

/// SQLite's `synchronous` setting in WAL mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    Full,
    Normal,
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
