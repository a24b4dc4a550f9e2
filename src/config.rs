//! The settings tree. Built-in defaults (`ci-cd-integration/service.yaml`, embedded in the
//! binary), then every `*.yaml` in the config directory, then `AUTOPILOT_SECTION__FIELD`
//! environment variables. Every invalid or unknown field is reported with its path.

use crate::domain::ControllerName;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The built-in defaults, which are also the documented sample files.
pub const DEFAULTS_YAML: [(&str, &str); 5] = [
    (
        "service.yaml",
        include_str!("../ci-cd-integration/service.yaml"),
    ),
    (
        "resource-profiles.yaml",
        include_str!("../ci-cd-integration/resource-profiles.yaml"),
    ),
    (
        "build-optimization.yaml",
        include_str!("../ci-cd-integration/build-optimization.yaml"),
    ),
    (
        "cost-policies.yaml",
        include_str!("../ci-cd-integration/cost-policies.yaml"),
    ),
    (
        "pipeline-performance.yaml",
        include_str!("../ci-cd-integration/pipeline-performance.yaml"),
    ),
];
const ENV_PREFIX: &str = "AUTOPILOT_";

/// All settings of the service.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// HTTP listener and local storage.
    pub server: ServerSettings,
    /// Where builds and events are stored.
    pub database: DatabaseSettings,
    /// The webhook write path.
    pub ingest: IngestSettings,
    /// Webhook authentication and defaults.
    pub webhook: WebhookSettings,
    /// Log output.
    pub logging: LoggingSettings,
    /// Jenkins controllers the service reads and drains.
    #[serde(default)]
    pub jenkins: JenkinsSettings,
    /// The Kubernetes cluster the pools run in.
    #[serde(default)]
    pub kubernetes: KubernetesSettings,
    /// Agent pools and the controller loop.
    #[serde(default)]
    pub scaling: ScalingSettings,
    /// Reading Jenkins' build history: backfills and the repair of lost webhooks.
    #[serde(default)]
    pub backfill: BackfillSettings,
    /// Which replica scales pools and runs the periodic work.
    #[serde(default)]
    pub leader_election: LeaderElectionSettings,
    /// API tokens (JWT).
    pub auth: AuthSettings,
    /// The resource profile ladder and the build container.
    pub profiles: crate::profiles::settings::ProfileSettings,
    /// Profile rules and the learned recommendation.
    pub build_optimization: crate::profiles::settings::BuildOptimizationSettings,
    /// Prices and cost alerts.
    pub cost: CostSettings,
    /// Performance reports and their schedules.
    pub reports: ReportSettings,
}

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

/// Agent pools and the controller loop.
#[derive(Debug, Clone, Deserialize)]
pub struct ScalingSettings {
    /// Every pool is reconciled at least this often, whatever events arrive.
    #[serde(default = "default_reconcile_interval", with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// Events for a pool within this long are handled by one reconcile.
    #[serde(default = "default_debounce", with = "humantime_serde")]
    pub debounce: Duration,
    /// A pipeline's announcement that a build is about to wait for a label
    /// (`POST /api/v1/controllers/{name}/waiting`, the library's `autopilot.node`) counts as
    /// one queued build for this long, or until Jenkins' queue shows at least as many.
    #[serde(default = "default_announcement_ttl", with = "humantime_serde")]
    pub announcement_ttl: Duration,
    /// Pools by name.
    #[serde(default)]
    pub pools: BTreeMap<String, PoolSettings>,
    /// Trees in each pool's demand model.
    #[serde(default = "default_trees")]
    pub forecast_trees: usize,
    /// How often each pool's demand model is retrained (in the background).
    #[serde(default = "default_retrain", with = "humantime_serde")]
    pub forecast_retrain_every: Duration,
    /// Time from a pod's creation to its agent taking work: the forecast's horizon.
    #[serde(default = "default_pod_startup", with = "humantime_serde")]
    pub pod_startup: Duration,
    /// Decisions older than this are deleted (hourly).
    #[serde(default = "default_decision_retention", with = "humantime_serde")]
    pub decision_retention: Duration,
}

fn default_trees() -> usize {
    100
}

/// How often a pool's forecast model is retrained unless set.
pub fn default_retrain() -> Duration {
    Duration::from_secs(86_400)
}

fn default_pod_startup() -> Duration {
    Duration::from_secs(60)
}

fn default_decision_retention() -> Duration {
    Duration::from_secs(62 * 86_400)
}

impl Default for ScalingSettings {
    fn default() -> Self {
        Self {
            reconcile_interval: default_reconcile_interval(),
            debounce: default_debounce(),
            announcement_ttl: default_announcement_ttl(),
            pools: BTreeMap::new(),
            decision_retention: default_decision_retention(),
            forecast_retrain_every: default_retrain(),
            forecast_trees: default_trees(),
            pod_startup: default_pod_startup(),
        }
    }
}

fn default_reconcile_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_debounce() -> Duration {
    Duration::from_millis(10)
}

fn default_announcement_ttl() -> Duration {
    Duration::from_secs(30)
}

/// One agent pool: a Jenkins label served by a Deployment of inbound agents.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PoolSettings {
    /// The Jenkins controller (a key of `jenkins.controllers`), as webhooks name it
    /// (controller names compare without case).
    pub controller: ControllerName,
    /// The label expression builds ask for, as Jenkins prints it (e.g. `linux`).
    pub label: crate::domain::Label,
    /// Namespace of the agents' Deployment.
    pub namespace: String,
    /// The agents' Deployment; its pods register with Jenkins under their pod names.
    pub deployment: String,
    /// Executors each agent offers.
    #[serde(default = "one")]
    pub executors_per_agent: u32,
    /// Fewest agents.
    #[serde(default)]
    pub min: u32,
    /// Most agents.
    #[serde(default = "ten")]
    pub max: u32,
    /// Idle agents kept beyond the demand.
    #[serde(default)]
    pub idle_headroom: u32,
    /// `queue` (default) or the seed's `seed-queue-half`, kept for comparison.
    #[serde(default = "default_policy")]
    pub policy: crate::scaling::PolicyName,
    /// Take chosen idle nodes offline in Jenkins before removing them.
    #[serde(default)]
    pub drain: bool,
    /// HPA-style behaviour; defaults as the HPA's, plus 60 s without scale-down after a
    /// scale-up.
    #[serde(default)]
    pub behavior: crate::scaling::Behavior,
    /// The demand forecast: `forecast-only` (the default: forecasts are recorded beside
    /// the actual demand, nothing is acted on) or `off`. `scale` is refused: a plain
    /// scale-down window beat it in replay; `policy: warm` is what acts ahead of demand.
    #[serde(default)]
    pub predictive: PredictiveMode,
    /// Learned build sizes for this pool's jobs are exact, not rounded up to the ladder.
    #[serde(default)]
    pub exact_sizes: bool,
    /// What one agent pod requests (priced by the cost model); default 1 CPU, 2Gi.
    #[serde(default)]
    pub agent: crate::cost::Shape,
    /// Warm capacity (`policy: warm`): the budget and the most idle agents kept.
    #[serde(default)]
    pub warm: WarmSettings,
    /// Minimums by the hour: at least `min` agents while `cron` matches the minute in
    /// `timezone` (any policy).
    #[serde(default)]
    pub schedules: Vec<crate::scaling::schedule::ScheduleSettings>,
    /// `policy: keep-idle`: how long each agent is kept after its last build (the
    /// Kubernetes plugin's `idleMinutes`).
    #[serde(default = "default_keep_idle", with = "humantime_serde")]
    pub keep_idle: Duration,
}

fn default_keep_idle() -> Duration {
    Duration::from_secs(10 * 60)
}

impl PoolSettings {
    /// The sizing rules `scaling::decide` runs for this pool: the one place they are built.
    /// A `warm` pool's scale-down stabilization window is zero: its budget decides which
    /// idle agents stay.
    pub fn scale_policy(&self) -> crate::scaling::ScalePolicy {
        crate::scaling::ScalePolicy::new(
            self.policy,
            crate::scaling::PoolShape {
                executors_per_agent: self.executors_per_agent,
                min: self.min,
                max: self.max,
                idle_headroom: self.idle_headroom,
            },
            &self.behavior,
            self.keep_idle.as_millis() as i64,
        )
    }

    /// The pool's schedules, parsed (the settings check has refused bad ones).
    pub fn schedules(&self) -> Vec<crate::scaling::schedule::Schedule> {
        crate::scaling::schedule::parse_valid(&self.schedules)
    }

    /// The warm settings as the plan reads them, with the pool's pod start-up.
    pub fn warm_policy(&self, pod_startup: Duration) -> crate::scaling::warm::WarmPolicy {
        crate::scaling::warm::WarmPolicy {
            budget: self.warm.budget / 100.0,
            max_idle: self.warm.max_idle,
            window_ms: self.warm.window.as_millis().max(1) as i64,
            startup_ms: pod_startup.as_millis() as i64,
            executors_per_agent: self.executors_per_agent.max(1),
        }
    }
}

/// How a `warm` pool spends on idle agents.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WarmSettings {
    /// Idle agent-hours allowed over the pool's busy agent-hours, as a percentage
    /// (`25%` or `25`), enforced over `window`.
    #[serde(deserialize_with = "percent")]
    pub budget: f64,
    /// Most idle agents kept ready.
    pub max_idle: u32,
    /// The rolling window the budget is enforced over.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// `act` (the default) or `forecast-only`: decide and record the idle agents the
    /// pool would keep, keep none.
    pub mode: WarmMode,
}

/// Whether a warm pool acts on its decisions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WarmMode {
    #[default]
    Act,
    ForecastOnly,
}

impl Default for WarmSettings {
    fn default() -> Self {
        Self {
            budget: 25.0,
            max_idle: 10,
            window: Duration::from_secs(7 * 86_400),
            mode: WarmMode::Act,
        }
    }
}

/// A percentage written `25%` or `25`, from 0 to 1000.
fn percent<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(f64),
        Text(String),
    }
    let v = match Raw::deserialize(d)? {
        Raw::Number(n) => n,
        Raw::Text(t) => t
            .trim()
            .trim_end_matches('%')
            .trim()
            .parse::<f64>()
            .map_err(|_| serde::de::Error::custom(format!("{t:?} is not a percentage")))?,
    };
    if !(0.0..=1000.0).contains(&v) {
        return Err(serde::de::Error::custom(format!(
            "{v} is not a percentage from 0 to 1000"
        )));
    }
    Ok(v)
}

/// How a pool uses its demand forecast.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PredictiveMode {
    Off,
    #[default]
    ForecastOnly,
    /// Refused by the settings check (kept so that old settings get a clear message).
    Scale,
}

fn one() -> u32 {
    1
}

fn ten() -> u32 {
    10
}

fn default_policy() -> crate::scaling::PolicyName {
    crate::scaling::PolicyName::Queue
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
    /// Connections kept for reads.
    pub max_connections: u32,
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

fn default_secret_parameters() -> String {
    "pass|secret|token|key|credential|auth|private|cert|cookie|session".into()
}

/// The secret-parameter pattern as the service uses it: case-insensitive, bounded.
fn build_secret_pattern(pattern: &str) -> Result<regex::Regex, regex::Error> {
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

/// Log output.
#[derive(Debug, Clone, Deserialize)]
pub struct LoggingSettings {
    /// `json` or `pretty`.
    pub format: LogFormat,
    /// tracing filter directives.
    pub filter: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where: `file: section.field` (or `env AUTOPILOT_X__Y: section.field`).
    pub path: String,
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Every invalid field found while loading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<FieldError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} invalid setting(s):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

/// Where a value in the merged tree came from, for error messages.
#[derive(Debug, Clone, Default)]
struct Origins(Vec<(String, String)>);

impl Origins {
    fn set(&mut self, path: &str, origin: String) {
        self.0.retain(|(p, _)| p != path);
        self.0.push((path.to_string(), origin));
    }

    fn of(&self, path: &str) -> String {
        // The longest recorded prefix of the path names its origin; else a setting below
        // it (an unknown section is reported by its name, its origin recorded by leaf).
        let below = format!("{path}.");
        self.0
            .iter()
            .filter(|(p, _)| path == p || path.starts_with(&format!("{p}.")))
            .max_by_key(|(p, _)| p.len())
            .or_else(|| self.0.iter().rev().find(|(p, _)| p.starts_with(&below)))
            .map(|(_, o)| o.clone())
            .unwrap_or_else(|| "defaults".to_string())
    }
}

/// The embedded defaults as one tree, parsed once.
fn defaults_tree() -> &'static Value {
    static TREE: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    TREE.get_or_init(|| {
        let mut defaults = Value::Object(Default::default());
        for (name, text) in DEFAULTS_YAML {
            let file: Value = serde_yaml::from_str(text)
                .unwrap_or_else(|e| panic!("embedded defaults {name} are not valid YAML: {e}"));
            let Value::Object(map) = file else {
                panic!("embedded defaults {name} are not a mapping");
            };
            for (section, value) in map {
                merge(&mut defaults, &section, value);
            }
        }
        defaults
    })
}

/// A settings file's YAML. A key given twice in one mapping is an error (the YAML spec
/// says keys are unique; taking either silently would hide a mistake).
fn yaml_mapping(text: &str) -> Result<Value, String> {
    serde_yaml::from_str::<serde_yaml::Value>(text).map_err(|e| e.to_string())?;
    serde_yaml::from_str::<Value>(text).map_err(|e| e.to_string())
}

impl Settings {
    /// Loads the defaults, the YAML files of `config_dir` (when given) and the
    /// `AUTOPILOT_*` variables of `env`.
    pub fn load(
        config_dir: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigErrors> {
        let mut files = Vec::new();
        let mut errors = Vec::new();
        if let Some(dir) = config_dir {
            match yaml_files(dir) {
                Ok(found) => {
                    for file in found {
                        let shown = file.display().to_string();
                        match std::fs::read_to_string(&file) {
                            Ok(text) => files.push((shown, text)),
                            Err(e) => errors.push(FieldError {
                                path: shown,
                                reason: format!("cannot read: {e}"),
                            }),
                        }
                    }
                }
                Err(e) => errors.push(FieldError {
                    path: dir.display().to_string(),
                    reason: e,
                }),
            }
        }
        Self::from_texts(files, env, errors)
    }

    /// The defaults, then each settings file's text (named as errors should show it), in
    /// order, then the `AUTOPILOT_*` variables of `env`; `errors` found on the way (files
    /// that could not be read) are reported with the rest.
    pub fn from_texts(
        files: Vec<(String, String)>,
        env: impl IntoIterator<Item = (String, String)>,
        mut errors: Vec<FieldError>,
    ) -> Result<Self, ConfigErrors> {
        let defaults = defaults_tree();
        let mut tree = defaults.clone();
        let mut origins = Origins::default();
        for (shown, text) in files {
            if text.trim().is_empty() {
                continue;
            }
            match yaml_mapping(&text) {
                Err(e) => errors.push(FieldError {
                    path: shown,
                    reason: format!("is not valid YAML: {e}"),
                }),
                Ok(Value::Null) => {}
                Ok(Value::Object(map)) => {
                    for (section, value) in map {
                        let mut leaves = Vec::new();
                        collect_leaves(&value, &section, &mut leaves);
                        for leaf in leaves {
                            origins.set(&leaf, shown.clone());
                        }
                        merge(&mut tree, &section, value);
                    }
                }
                Ok(_) => errors.push(FieldError {
                    path: shown,
                    reason: "must be a mapping of sections".into(),
                }),
            }
        }

        for (name, raw) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            if path.len() < 2 || path.iter().any(String::is_empty) {
                continue;
            }
            let dotted = path.join(".");
            let existing = lookup(&tree, &path);
            let value = match existing {
                Some(Value::Number(_)) | Some(Value::Bool(_)) => {
                    serde_yaml::from_str::<Value>(&raw).unwrap_or(Value::String(raw.clone()))
                }
                _ => Value::String(raw.clone()),
            };
            origins.set(&dotted, format!("env {name}"));
            set_path(&mut tree, &path, value);
        }

        let settings = deserialize_reporting_all::<Settings>(tree, defaults, &origins, &mut errors);
        if let Some(s) = &settings {
            s.validate(&origins, &mut errors);
        }
        match settings {
            Some(s) if errors.is_empty() => Ok(s),
            _ => Err(ConfigErrors(errors)),
        }
    }

    fn validate(&self, origins: &Origins, errors: &mut Vec<FieldError>) {
        let mut bad = |path: &str, reason: &str| {
            errors.push(FieldError {
                path: format!("{}: {path}", origins.of(path)),
                reason: reason.to_string(),
            });
        };
        if self.server.body_limit_bytes < 1024 {
            bad("server.body_limit_bytes", "must be at least 1024");
        }
        if self.database.max_connections == 0 {
            bad("database.max_connections", "must be at least 1");
        }
        if self.ingest.write_queue_capacity == 0 {
            bad("ingest.write_queue_capacity", "must be at least 1");
        }
        // The default is known to build (a unit test): only a configured one is compiled.
        let pattern = &self.ingest.secret_parameters;
        if *pattern != default_secret_parameters()
            && let Err(e) = build_secret_pattern(pattern)
        {
            bad(
                "ingest.secret_parameters",
                &format!("is not a regular expression: {e}"),
            );
        }
        if self.ingest.event_retention < Duration::from_secs(3600) {
            bad("ingest.event_retention", "must be at least 1h");
        }
        if self.ingest.max_batch == 0 {
            bad("ingest.max_batch", "must be at least 1");
        }
        if let Some(url) = &self.database.url {
            use secrecy::ExposeSecret;
            let u = url.expose_secret();
            if !(u.starts_with("sqlite:")
                || u.starts_with("postgres://")
                || u.starts_with("postgresql://"))
            {
                bad(
                    "database.url",
                    "must start with sqlite:, postgres:// or postgresql://",
                );
            }
        }
        if let Some(token) = &self.webhook.token {
            use secrecy::ExposeSecret;
            if token.expose_secret().len() < 16 {
                bad("webhook.token", "must be at least 16 characters");
            }
        }
        if let Some(secret) = &self.auth.jwt_secret {
            use secrecy::ExposeSecret;
            if secret.expose_secret().len() < 32 {
                bad("auth.jwt_secret", "must be at least 32 characters");
            }
            if self.auth.jwt_public_key_file.is_some() {
                bad(
                    "auth.jwt_secret",
                    "give either jwt_secret (HS256) or jwt_public_key_file (RS256), not both",
                );
            }
        }
        if self.auth.jwt_private_key_file.is_some() && self.auth.jwt_public_key_file.is_none() {
            bad(
                "auth.jwt_private_key_file",
                "needs jwt_public_key_file, which the service verifies tokens with",
            );
        }
        for (field, path) in [
            ("auth.jwt_public_key_file", &self.auth.jwt_public_key_file),
            ("auth.jwt_private_key_file", &self.auth.jwt_private_key_file),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                bad(field, &format!("{} is not a readable file", path.display()));
            }
        }
        if self.auth.issuer.trim().is_empty() {
            bad("auth.issuer", "must not be empty");
        }
        let c = &self.cost;
        if c.currency.trim().is_empty() {
            bad("cost.currency", "must not be empty");
        }
        for (field, v) in [
            ("cost.prices.cpu_hour", c.prices.cpu_hour),
            ("cost.prices.memory_gib_hour", c.prices.memory_gib_hour),
            ("cost.prices.storage_gib_month", c.prices.storage_gib_month),
        ] {
            if !v.is_finite() || v < 0.0 {
                bad(field, "must be a price of 0 or more");
            }
        }
        if c.alerts
            .cost_per_build
            .is_some_and(|v| !v.is_finite() || v < 0.0)
        {
            bad("cost.alerts.cost_per_build", "must be 0 or more, or null");
        }
        if c.alerts
            .idle_share_percent
            .is_some_and(|v| !(0.0..=100.0).contains(&v))
        {
            bad(
                "cost.alerts.idle_share_percent",
                "must be 0 to 100, or null",
            );
        }
        if !self.reports.regression_percent.is_finite() || self.reports.regression_percent <= 0.0 {
            bad("reports.regression_percent", "must be above 0");
        }
        for (i, sch) in self.reports.schedules.iter().enumerate() {
            let at = |f: &str| format!("reports.schedules.{i}.{f}");
            if sch.name.is_empty()
                || !sch
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                bad(&at("name"), "must be letters, digits, '-' or '_'");
            }
            if self.reports.schedules[..i]
                .iter()
                .any(|o| o.name == sch.name)
            {
                bad(&at("name"), "is used by another schedule");
            }
            if let Err(e) = sch.cron.parse::<croner::Cron>() {
                bad(&at("cron"), &format!("is not a cron expression: {e}"));
            }
            if let Err(e) =
                crate::analytics::Range::parse(&sch.range, crate::domain::Timestamp::now())
            {
                bad(&at("range"), &e);
            }
            if let Err(e) = crate::analytics::render::Format::parse(&sch.format) {
                bad(&at("format"), &e);
            }
            if sch.keep == 0 {
                bad(&at("keep"), "must be at least 1");
            }
        }
        for (path, reason) in
            crate::profiles::settings::validate(&self.profiles, &self.build_optimization)
        {
            bad(&path, &reason);
        }
        if let Err(e) = crate::telemetry::parse_filter(&self.logging.filter) {
            bad("logging.filter", &e);
        }
        self.validate_pools(&mut bad);
    }

    fn validate_pools(&self, bad: &mut impl FnMut(&str, &str)) {
        for (name, c) in &self.jenkins.controllers {
            if ControllerName::parse(name).is_err() {
                bad(
                    &format!("jenkins.controllers.{name}"),
                    "name: letters, digits, '.', '_', '-' only",
                );
            }
            if !matches!(c.url.scheme(), "http" | "https") {
                bad(
                    &format!("jenkins.controllers.{name}.url"),
                    "must be an http or https URL",
                );
            }
            if c.api_token.is_some() && c.user.is_none() {
                bad(
                    &format!("jenkins.controllers.{name}.user"),
                    "is required with api_token",
                );
            }
        }
        if self.scaling.reconcile_interval < Duration::from_secs(1) {
            bad("scaling.reconcile_interval", "must be at least 1s");
        }
        let kt = self.kubernetes.timeout;
        if kt < Duration::from_millis(100) || kt > Duration::from_secs(300) {
            bad("kubernetes.timeout", "must be between 100ms and 5m");
        }
        let le = &self.leader_election;
        if le.retry_every < Duration::from_millis(100) || le.retry_every > Duration::from_secs(60) {
            bad(
                "leader_election.retry_every",
                "must be between 100ms and 1m",
            );
        }
        if le.renew_deadline < Duration::from_millis(100)
            || le.renew_deadline > Duration::from_secs(60)
        {
            bad(
                "leader_election.renew_deadline",
                "must be between 100ms and 1m",
            );
        }
        if le.lease_duration <= le.renew_deadline || le.lease_duration > Duration::from_secs(300) {
            bad(
                "leader_election.lease_duration",
                "must be longer than renew_deadline and at most 5m",
            );
        }
        if le.retry_every >= le.renew_deadline {
            bad(
                "leader_election.retry_every",
                "must be shorter than renew_deadline (the leader renews this often)",
            );
        }
        if le.mode == LeaderMode::Lease {
            for (field, d) in [
                ("leader_election.lease_duration", le.lease_duration),
                ("leader_election.retry_every", le.retry_every),
            ] {
                if d.subsec_nanos() != 0 || d.is_zero() {
                    bad(
                        field,
                        "must be whole seconds in lease mode (a Lease counts seconds)",
                    );
                }
            }
        }
        if !is_dns_subdomain(&le.lease_name) {
            bad(
                "leader_election.lease_name",
                "must be a Kubernetes name: lower-case letters, digits, - and ., at most 253",
            );
        }
        if let Some(ns) = &le.lease_namespace
            && !is_dns_label(ns)
        {
            bad(
                "leader_election.lease_namespace",
                "must be a Kubernetes namespace name",
            );
        }
        if le.mode == LeaderMode::Postgres && self.database.postgres_url().is_none() {
            bad(
                "leader_election.mode",
                "postgres needs a PostgreSQL store (database.url); one replica on SQLite needs no election",
            );
        }
        let b = &self.backfill;
        if !(b.max_requests_per_second > 0.0
            && b.max_requests_per_second <= crate::backfill::Options::MAX_RATE)
        {
            bad(
                "backfill.max_requests_per_second",
                "must be above 0 and at most 1000",
            );
        }
        if !b.repair_every.is_zero() && b.repair_every < Duration::from_secs(60) {
            bad("backfill.repair_every", "must be 0s (off) or at least 1m");
        }
        if b.repair_window < Duration::from_secs(60)
            || b.repair_window > Duration::from_secs(7 * 86_400)
        {
            bad("backfill.repair_window", "must be between 1m and 7d");
        }
        let ttl = self.scaling.announcement_ttl;
        if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(600) {
            bad("scaling.announcement_ttl", "must be between 1s and 10m");
        }
        for (name, p) in &self.scaling.pools {
            let at = |field: &str| format!("scaling.pools.{name}.{field}");
            if !is_dns_label(name) {
                bad(
                    &format!("scaling.pools.{name}"),
                    "name must be a DNS label (a-z, 0-9, '-')",
                );
            }
            if self.jenkins.controller(p.controller.as_str()).is_none() {
                bad(
                    &at("controller"),
                    &format!(
                        "names no controller in jenkins.controllers ({:?})",
                        p.controller
                    ),
                );
            }
            if p.policy == crate::scaling::PolicyName::Warm && p.warm.max_idle > p.max {
                bad(&at("warm.max_idle"), "must not exceed max");
            }
            if p.warm.window < Duration::from_secs(3600) {
                bad(&at("warm.window"), "must be at least 1h");
            }
            for (i, sch) in p.schedules.iter().enumerate() {
                if let Err(e) = crate::scaling::schedule::Schedule::parse(sch) {
                    bad(&at(&format!("schedules[{i}]")), &e);
                }
                if sch.min > p.max {
                    bad(&at(&format!("schedules[{i}].min")), "must not exceed max");
                }
            }
            if p.predictive == PredictiveMode::Scale {
                bad(
                    &at("predictive"),
                    "scale is no longer offered: in replay a plain scale-down window cost less and started more builds at once (`simulate --compare predictive,queue` and `--frontier`); use `policy: warm`, which beat every window; `forecast-only` still records the forecast",
                );
            }
            if !is_dns_label(&p.namespace) {
                bad(
                    &at("namespace"),
                    "must be a DNS label (a-z, 0-9, '-', at most 63)",
                );
            }
            if !is_dns_subdomain(&p.deployment) {
                bad(
                    &at("deployment"),
                    "must be a DNS subdomain name (a-z, 0-9, '-', '.')",
                );
            }
            if p.executors_per_agent == 0 {
                bad(&at("executors_per_agent"), "must be at least 1");
            }
            if p.min > p.max {
                bad(&at("min"), &format!("must not exceed max ({})", p.max));
            }
            for (dir, rules) in [
                ("scaleUp", &p.behavior.scale_up),
                ("scaleDown", &p.behavior.scale_down),
            ] {
                for (i, policy) in rules.policies.iter().enumerate() {
                    if policy.period.is_zero() {
                        bad(
                            &at(&format!("behavior.{dir}.policies.{i}.period")),
                            "must be longer than 0s",
                        );
                    }
                    if policy.value == 0 {
                        bad(
                            &at(&format!("behavior.{dir}.policies.{i}.value")),
                            "must be at least 1",
                        );
                    }
                }
            }
        }
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read the config directory: {e}"))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    files.sort();
    Ok(files)
}

fn merge(tree: &mut Value, key: &str, value: Value) {
    let Value::Object(map) = tree else { return };
    match (map.get_mut(key), value) {
        (Some(existing @ Value::Object(_)), Value::Object(incoming)) => {
            for (k, v) in incoming {
                merge(existing, &k, v);
            }
        }
        (_, v) => {
            map.insert(key.to_string(), v);
        }
    }
}

fn collect_leaves(value: &Value, prefix: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                collect_leaves(v, &format!("{prefix}.{k}"), out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

fn lookup<'a>(tree: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(tree, |node, key| node.get(key))
}

fn set_path(tree: &mut Value, path: &[String], value: Value) {
    let mut node = tree;
    for key in &path[..path.len() - 1] {
        if !node.is_object() {
            *node = Value::Object(Default::default());
        }
        let map = node.as_object_mut().expect("just made an object");
        node = map
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    if !node.is_object() {
        *node = Value::Object(Default::default());
    }
    node.as_object_mut()
        .expect("just made an object")
        .insert(path[path.len() - 1].clone(), value);
}

fn remove_path(tree: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = tree;
    for key in parents {
        match node.get_mut(key) {
            Some(n) => node = n,
            None => return,
        }
    }
    if let Some(map) = node.as_object_mut() {
        map.remove(last);
    }
}

/// Deserializes `tree`, collecting every unknown field (via serde_ignored) and every
/// invalid one (via serde_path_to_error): each invalid field is put back to its default
/// and the tree tried again, so one run reports them all.
fn deserialize_reporting_all<T: serde::de::DeserializeOwned>(
    mut tree: Value,
    defaults: &Value,
    origins: &Origins,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    for _ in 0..64 {
        let mut unknown: Vec<String> = Vec::new();
        let result: Result<T, _> = {
            let mut note = |path: serde_ignored::Path| unknown.push(path.to_string());
            let ignoring = serde_ignored::Deserializer::new(&tree, &mut note);
            serde_path_to_error::deserialize(ignoring)
        };
        match result {
            Ok(value) => {
                for path in unknown {
                    errors.push(FieldError {
                        path: format!("{}: {path}", origins.of(&path)),
                        reason: "is not a known setting".into(),
                    });
                }
                return Some(value);
            }
            Err(err) => {
                let path = err.path().to_string();
                let reason = err.into_inner().to_string();
                errors.push(FieldError {
                    path: format!("{}: {path}", origins.of(&path)),
                    reason,
                });
                let keys: Vec<String> = path.split('.').map(str::to_string).collect();
                match lookup(defaults, &keys) {
                    Some(default) if path != "?" && !path.is_empty() => {
                        set_path(&mut tree, &keys, default.clone())
                    }
                    _ if path != "?" && !path.is_empty() => remove_path(&mut tree, &keys),
                    _ => return None,
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn defaults_load_with_no_file_and_no_env() {
        let s = Settings::load(None, Vec::new()).unwrap();
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
        assert!(s.database.url.is_none());
        assert_eq!(s.webhook.default_controller.as_str(), "default");
    }

    /// The settings check skips compiling the default secret-parameter pattern.
    #[test]
    fn the_default_secret_pattern_builds_and_a_bad_one_is_refused() {
        let p = build_secret_pattern(&default_secret_parameters()).unwrap();
        assert!(p.is_match("DB_PASSWORD") && !p.is_match("BRANCH"));
        let err = Settings::from_texts(
            vec![(
                "x.yaml".into(),
                "ingest:\n  secret_parameters: \"(unclosed\"\n".into(),
            )],
            Vec::new(),
            Vec::new(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("ingest.secret_parameters"),
            "{err}"
        );
    }

    #[test]
    fn env_overrides_files_and_keeps_strings_as_strings() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("service.yaml"),
            "server:\n  body_limit_bytes: 2048\n",
        )
        .unwrap();
        let env = vec![
            (
                "AUTOPILOT_WEBHOOK__TOKEN".to_string(),
                "0123456789012345".to_string(),
            ),
            ("AUTOPILOT_INGEST__MAX_BATCH".to_string(), "64".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let s = Settings::load(Some(dir.path()), env).unwrap();
        assert_eq!(s.server.body_limit_bytes, 2048);
        assert_eq!(s.ingest.max_batch, 64);
        assert_eq!(s.webhook.token.unwrap().expose_secret(), "0123456789012345");
    }

    #[test]
    fn report_schedules_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("pipeline-performance.yaml"),
            "reports:\n  schedules:\n    - {name: a, cron: 'every day', range: 7d, format: html, directory: r, keep: 1}\n\
             \x20   - {name: a, cron: '0 6 * * MON', range: soon, format: pdf, directory: r, keep: 0}\n",
        )
        .unwrap();
        let errs = Settings::load(Some(dir.path()), Vec::new()).unwrap_err().0;
        for field in [
            "schedules.0.cron",
            "schedules.1.name",
            "schedules.1.range",
            "schedules.1.format",
            "schedules.1.keep",
        ] {
            assert!(
                errs.iter()
                    .any(|e| e.path.ends_with(&format!("reports.{field}"))),
                "{field}: {errs:?}"
            );
        }
        assert!(!errs.iter().any(|e| e.path.ends_with("schedules.0.range")));
    }

    #[test]
    fn pools_are_checked_against_controllers_and_their_own_rules() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("jenkins-scaling.yaml"),
            "jenkins:\n  controllers:\n    prod: {url: \"https://ci.example.com/\", user: autopilot}\n\
             scaling:\n  pools:\n    linux: {controller: prod, label: linux, namespace: ci-agents, deployment: agents}\n\
             \x20   gpu: {controller: nope, label: gpu, namespace: CI, deployment: agents, min: 5, max: 2, executors_per_agent: 0, policy: sometimes}\n",
        )
        .unwrap();
        let errs = Settings::load(Some(dir.path()), Vec::new()).unwrap_err().0;
        let has = |suffix: &str| errs.iter().any(|e| e.path.ends_with(suffix));
        for field in [
            "gpu.controller",
            "gpu.namespace",
            "gpu.min",
            "gpu.executors_per_agent",
            "gpu.policy",
        ] {
            assert!(has(&format!("scaling.pools.{field}")), "{field}: {errs:?}");
        }
        assert!(
            !errs.iter().any(|e| e.path.contains("pools.linux")),
            "{errs:?}"
        );
    }

    #[test]
    fn every_bad_field_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("service.yaml"),
            "server:\n  listen: nowhere\n  body_limit_bytes: 10\n  colour: blue\ningest:\n  max_batch: -1\nlogging:\n  format: xml\n",
        )
        .unwrap();
        let env = vec![(
            "AUTOPILOT_WEBHOOK__DEFAULT_CONTROLLER".to_string(),
            "has space".to_string(),
        )];
        let errs = Settings::load(Some(dir.path()), env).unwrap_err().0;
        let paths: Vec<String> = errs.iter().map(|e| e.path.clone()).collect();
        let has = |suffix: &str| paths.iter().any(|p| p.ends_with(suffix));
        assert!(has("server.listen"), "{paths:?}");
        assert!(has("server.colour"), "{paths:?}");
        assert!(has("ingest.max_batch"), "{paths:?}");
        assert!(has("logging.format"), "{paths:?}");
        assert!(has("webhook.default_controller"), "{paths:?}");
        assert!(
            paths
                .iter()
                .any(|p| p.starts_with("env AUTOPILOT_WEBHOOK__DEFAULT_CONTROLLER")),
            "{paths:?}"
        );
        // body_limit_bytes parsed (it is a number) but fails validation: reported as well.
        assert!(has("server.body_limit_bytes"), "{paths:?}");
    }
}
