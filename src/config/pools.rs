//! The agent pools' settings: the controller loop, each pool, warm capacity and forecasts.

use super::*;

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
    /// One pool's settings from YAML (an entry of `scaling.pools`, as `simulate
    /// --pool-config` reads it; `shown` names the file in errors), read as the service
    /// reads its settings files: a key given twice is refused, and every unknown or
    /// invalid field is reported, then the pool's own checks.
    pub fn from_yaml(shown: &str, text: &str) -> Result<Self, ConfigErrors> {
        let refused = |reason: String| {
            ConfigErrors(vec![FieldError {
                path: shown.to_string(),
                reason,
            }])
        };
        let tree = match yaml_mapping(text) {
            Ok(tree @ Value::Object(_)) => tree,
            Ok(_) => return Err(refused("must be a mapping of a pool's settings".into())),
            Err(e) => return Err(refused(format!("is not valid YAML: {e}"))),
        };
        let mut origins = Origins::default();
        // The pool as a whole (a required field missing) and each field it sets.
        origins.set("", shown.to_string());
        if let Value::Object(map) = &tree {
            for (key, value) in map {
                let mut leaves = Vec::new();
                collect_leaves(value, key, &mut leaves);
                for leaf in leaves {
                    origins.set(&leaf, shown.to_string());
                }
            }
        }
        let mut errors = Vec::new();
        // No defaults beyond the fields' own: an invalid field is left out and reported.
        let none = Value::Object(Default::default());
        let pool = deserialize_reporting_all::<Self>(tree, &none, &origins, &mut errors);
        if let Some(p) = &pool {
            errors.extend(p.check().into_iter().map(|(field, reason)| FieldError {
                path: format!("{shown}: {field}"),
                reason,
            }));
        }
        match pool {
            Some(p) if errors.is_empty() => Ok(p),
            _ => Err(ConfigErrors(errors)),
        }
    }

    /// What is wrong with this pool's own settings: (field, reason), the field named
    /// within the pool. Whether its controller is configured is the service's check.
    pub fn check(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |field: String, reason: &str| out.push((field, reason.to_string()));
        if self.policy == crate::scaling::PolicyName::Warm && self.warm.max_idle > self.max {
            bad("warm.max_idle".into(), "must not exceed max");
        }
        if self.warm.window < Duration::from_secs(3600) {
            bad("warm.window".into(), "must be at least 1h");
        }
        for (i, sch) in self.schedules.iter().enumerate() {
            if let Err(e) = crate::scaling::schedule::Schedule::parse(sch) {
                bad(format!("schedules[{i}]"), &e.to_string());
            }
            if sch.min > self.max {
                bad(format!("schedules[{i}].min"), "must not exceed max");
            }
        }
        if self.predictive == PredictiveMode::Scale {
            bad(
                "predictive".into(),
                "scale is no longer offered: in replay a plain scale-down window cost less and started more builds at once (`simulate --compare predictive,queue` and `--frontier`); use `policy: warm`, which beat every window; `forecast-only` still records the forecast",
            );
        }
        if !crate::domain::is_dns_label(&self.namespace) {
            bad(
                "namespace".into(),
                "must be a DNS label (a-z, 0-9, '-', at most 63)",
            );
        }
        if !crate::domain::is_dns_subdomain(&self.deployment) {
            bad(
                "deployment".into(),
                "must be a DNS subdomain name (a-z, 0-9, '-', '.')",
            );
        }
        if self.executors_per_agent == 0 {
            bad("executors_per_agent".into(), "must be at least 1");
        }
        if self.min > self.max {
            bad("min".into(), &format!("must not exceed max ({})", self.max));
        }
        for (dir, rules) in [
            ("scaleUp", &self.behavior.scale_up),
            ("scaleDown", &self.behavior.scale_down),
        ] {
            for (i, policy) in rules.policies.iter().enumerate() {
                if policy.period.is_zero() {
                    bad(
                        format!("behavior.{dir}.policies.{i}.period"),
                        "must be longer than 0s",
                    );
                }
                if policy.value == 0 {
                    bad(
                        format!("behavior.{dir}.policies.{i}.value"),
                        "must be at least 1",
                    );
                }
            }
        }
        out
    }
}

/// What a pool runs, built from its settings in this one place: the policy, sizes and
/// behaviour as configured, the keep-idle time, the warm budget (a fraction: `12.5%` is
/// 0.125) and window (a duration), the schedules and the agent's shape. The live
/// controller, the replay of a pool's history, the warm guard, the optimizer, the
/// frontier and `simulate --pool-config` all start from it, so a pool replays as it runs.
#[derive(Debug, Clone)]
pub struct PoolPolicy {
    pub name: crate::scaling::PolicyName,
    pub shape: crate::scaling::PoolShape,
    /// The behaviour as configured (a `warm` or `keep-idle` pool's rules then drop its
    /// scale-down window: [`PoolPolicy::scale`]).
    pub behavior: crate::scaling::Behavior,
    /// `keep-idle`: how long each agent is kept after its last build.
    pub keep_idle: Duration,
    /// The warm budget, most idle agents and window; its start-up is the service's
    /// (zero here: [`PoolPolicy::warm_starting_in`]).
    pub warm: crate::scaling::warm::WarmPolicy,
    pub schedules: Vec<crate::scaling::schedule::Schedule>,
    /// What one agent pod requests (priced by the cost model).
    pub agent: crate::cost::Shape,
}

impl From<&PoolSettings> for PoolPolicy {
    fn from(p: &PoolSettings) -> Self {
        Self {
            name: p.policy,
            shape: crate::scaling::PoolShape {
                executors_per_agent: p.executors_per_agent.max(1),
                min: p.min,
                max: p.max,
                idle_headroom: p.idle_headroom,
            },
            behavior: p.behavior.clone(),
            keep_idle: p.keep_idle,
            warm: crate::scaling::warm::WarmPolicy {
                budget: p.warm.budget / 100.0,
                max_idle: p.warm.max_idle,
                window_ms: i64::try_from(p.warm.window.as_millis())
                    .unwrap_or(i64::MAX)
                    .max(1),
                startup_ms: 0,
                executors_per_agent: p.executors_per_agent.max(1),
            },
            // The settings check has refused bad ones.
            schedules: crate::scaling::schedule::parse_valid(&p.schedules),
            agent: p.agent,
        }
    }
}

impl PoolPolicy {
    /// The sizing rules `scaling::decide` runs: the one place they are built. A `warm` or
    /// `keep-idle` pool's scale-down stabilization window is zero (its budget or its
    /// keep-idle time decides which idle agents stay).
    pub fn scale(&self) -> crate::scaling::ScalePolicy {
        crate::scaling::ScalePolicy::new(
            self.name,
            self.shape,
            &self.behavior,
            i64::try_from(self.keep_idle.as_millis()).unwrap_or(i64::MAX),
        )
    }

    /// The warm policy as the plan reads it, with the pool's pod start-up.
    pub fn warm_starting_in(&self, pod_startup: Duration) -> crate::scaling::warm::WarmPolicy {
        crate::scaling::warm::WarmPolicy {
            startup_ms: i64::try_from(pod_startup.as_millis()).unwrap_or(i64::MAX),
            ..self.warm
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
