//! What a replay runs: the pool's configuration (sizes, behaviour, start-up, prices, the
//! warm model's window) and the policy replayed, as the command line and a pool's settings
//! name them.

use crate::scaling::{Behavior, PolicyName, ScalePolicy};
use std::time::Duration;

/// The pool's configuration for a replay.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub executors_per_agent: u32,
    pub min: u32,
    pub max: u32,
    pub idle_headroom: u32,
    pub behavior: Behavior,
    /// Time from an agent's creation to its readiness: the median, which policies plan
    /// with.
    pub pod_startup_ms: i64,
    /// Its 95th percentile: above the median, each agent draws its own start-up from a
    /// log-normal distribution with both (`super::startup`).
    pub startup_p95_ms: i64,
    /// The controller's reconcile period.
    pub reconcile_ms: i64,
    /// What one agent costs per hour.
    pub agent_hour_price: f64,
    /// The forest the predictive policy trains.
    pub forecast_params: crate::forecast::ModelParams,
    /// How often it is retrained (as the live pool retrains its model).
    pub forecast_retrain_ms: i64,
    /// Most idle agents the warm policy keeps.
    pub warm_max_idle: u32,
    /// The rolling window the warm policy's budget is enforced over.
    pub warm_window_ms: i64,
    /// Minimums by the hour.
    pub schedules: Vec<crate::scaling::schedule::Schedule>,
}

/// Every replay draws the same start-ups.
pub(super) const STARTUP_SEED: u64 = 42;

impl SimConfig {
    /// The start-up agents take.
    pub fn startup(&self) -> super::startup::Startup {
        super::startup::Startup {
            p50_ms: self.pod_startup_ms,
            p95_ms: self.startup_p95_ms.max(self.pod_startup_ms),
        }
    }

    /// A pool as a replay runs it: its policy's sizes, behaviour, warm window and
    /// schedules, the agent's price at the service's prices, and the service's pod
    /// start-up, reconcile period and retraining.
    pub fn new(pool: &crate::config::PoolPolicy, settings: &crate::config::Settings) -> Self {
        let startup_ms = settings.scaling.pod_startup.as_millis() as i64;
        Self {
            executors_per_agent: pool.shape.executors_per_agent.max(1),
            min: pool.shape.min,
            max: pool.shape.max,
            idle_headroom: pool.shape.idle_headroom,
            behavior: pool.behavior.clone(),
            pod_startup_ms: startup_ms,
            startup_p95_ms: startup_ms,
            reconcile_ms: (settings.scaling.reconcile_interval.as_millis() as i64).max(1),
            agent_hour_price: settings.cost.prices.of(&pool.agent, 1.0).total(),
            // Daily refits (the service's default) on four weeks of 5-minute steps: 50
            // trees keep a long replay short.
            forecast_params: crate::forecast::ModelParams {
                trees: 50,
                max_depth: 10,
                seed: 42,
            },
            forecast_retrain_ms: settings.scaling.forecast_retrain_every.as_millis() as i64,
            warm_max_idle: pool.warm.max_idle,
            warm_window_ms: pool.warm.window_ms,
            schedules: pool.schedules.clone(),
        }
    }

    /// The same replay with agents starting as `startup` says and a reconcile every
    /// `reconcile` (the command line's `--pod-startup` and `--reconcile`).
    pub fn with_timing(self, startup: super::startup::Startup, reconcile: Duration) -> Self {
        Self {
            pod_startup_ms: startup.p50_ms,
            startup_p95_ms: startup.p95_ms,
            reconcile_ms: (reconcile.as_millis() as i64).max(1),
            ..self
        }
    }
}

/// Which sizing to replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SimPolicy {
    /// A fixed number of agents, always ready.
    Static(u32),
    /// The seed's rule through `decide`.
    SeedQueueHalf,
    /// The reactive queue policy through `decide` (the default), with the pool's behaviour.
    Queue,
    /// The queue policy with this scale-down stabilization window, in minutes.
    Window(u32),
    /// The Kubernetes plugin's `idleMinutes`: each agent is kept this long after its last
    /// build (no stabilization window).
    KeepIdle(Duration),
    /// The queue policy with this many idle agents always kept beyond the demand.
    Headroom(u32),
    /// Warm capacity under this budget: idle agent-hours as a fraction of busy ones
    /// (0.25 for `25%`).
    Warm(f64),
    /// The Kubernetes plugin's model: one pod per build, each waiting the start-up.
    PerBuild,
    /// Knows the future: no build waits, and agents are exactly the running builds'
    /// executors at every instant. The lower bound for both wait and agent time.
    Oracle,
    /// The queue policy plus a forecast of demand one pod start-up ahead, which can only
    /// raise the agents (never scale in on a forecast alone).
    Predictive,
    /// The `hpa` multi-metric policy on the signals a replay has: demand rate (builds
    /// queued in the last minute) and queue wait p95 (builds started in the last five
    /// minutes, and the age of those still queued).
    MultiMetric,
}

impl SimPolicy {
    /// A policy as the command line names it: `warm:12.5` is a budget of 12.5 %,
    /// `keep-idle:10` ten minutes (`keep-idle:90s` takes any duration).
    pub fn parse(raw: &str) -> Option<Self> {
        let arg = |prefix: &str| raw.strip_prefix(prefix).and_then(|n| n.parse().ok());
        let keep_idle = raw.strip_prefix("keep-idle:").and_then(|v| {
            v.parse::<u64>()
                .ok()
                .map(|m| Duration::from_secs(m.saturating_mul(60)))
                .or_else(|| humantime::parse_duration(v).ok())
        });
        let warm = raw
            .strip_prefix("warm:")
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|p| p.is_finite() && *p >= 0.0)
            .map(|p| p / 100.0);
        match raw {
            "seed-queue-half" => Some(Self::SeedQueueHalf),
            "queue" => Some(Self::Queue),
            "per-build" => Some(Self::PerBuild),
            "oracle" => Some(Self::Oracle),
            "predictive" => Some(Self::Predictive),
            "multi-metric" => Some(Self::MultiMetric),
            _ => arg("static:")
                .map(Self::Static)
                .or_else(|| arg("window:").map(Self::Window))
                .or_else(|| keep_idle.map(Self::KeepIdle))
                .or_else(|| arg("headroom:").map(Self::Headroom))
                .or_else(|| warm.map(Self::Warm)),
        }
    }

    pub fn name(self) -> String {
        match self {
            Self::Static(n) => format!("static:{n}"),
            Self::SeedQueueHalf => "seed-queue-half".into(),
            Self::Queue => "queue".into(),
            Self::Window(m) => format!("window:{m}"),
            Self::KeepIdle(d) if d.as_secs() % 60 == 0 && d.subsec_nanos() == 0 => {
                format!("keep-idle:{}", d.as_secs() / 60)
            }
            Self::KeepIdle(d) => format!("keep-idle:{}", humantime::format_duration(d)),
            Self::Headroom(n) => format!("headroom:{n}"),
            Self::Warm(b) => format!("warm:{}", percent(b)),
            Self::PerBuild => "per-build".into(),
            Self::Oracle => "oracle".into(),
            Self::Predictive => "predictive".into(),
            Self::MultiMetric => "multi-metric".into(),
        }
    }

    /// The scaling policy `decide` runs for this replay policy, built as a live pool's
    /// is (`ScalePolicy::new`).
    pub(super) fn scale_policy(self, cfg: &SimConfig) -> ScalePolicy {
        let mut behavior = cfg.behavior.clone();
        let mut idle_headroom = cfg.idle_headroom;
        let mut keep_idle_ms = 0;
        let policy = match self {
            Self::SeedQueueHalf => PolicyName::SeedQueueHalf,
            Self::MultiMetric => PolicyName::Hpa,
            Self::Warm(_) => PolicyName::Warm,
            Self::Window(m) => {
                behavior.scale_down.stabilization_window = Duration::from_secs(u64::from(m) * 60);
                PolicyName::Queue
            }
            Self::KeepIdle(d) => {
                keep_idle_ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
                PolicyName::KeepIdle
            }
            Self::Headroom(n) => {
                idle_headroom = n;
                PolicyName::Queue
            }
            _ => PolicyName::Queue,
        };
        ScalePolicy::new(
            policy,
            crate::scaling::PoolShape {
                executors_per_agent: cfg.executors_per_agent,
                min: cfg.min,
                max: cfg.max,
                idle_headroom,
            },
            &behavior,
            keep_idle_ms,
        )
    }
}

impl From<&crate::config::PoolPolicy> for SimPolicy {
    /// The replay of a pool as it runs (its sizes and behaviour come with
    /// [`SimConfig::new`]): the budget and the keep-idle time exactly as the live pool
    /// takes them (a budget of 12.5 % was replayed as 13 %, and 90 s as 60 s, before).
    fn from(p: &crate::config::PoolPolicy) -> Self {
        match p.name {
            PolicyName::Queue => Self::Queue,
            PolicyName::SeedQueueHalf => Self::SeedQueueHalf,
            PolicyName::Hpa | PolicyName::Weighted => Self::MultiMetric,
            PolicyName::Warm => Self::Warm(p.warm.budget),
            PolicyName::KeepIdle => Self::KeepIdle(p.keep_idle),
        }
    }
}

/// A fraction as a percentage for people: 0.125 is `12.5`, 0.25 is `25`.
pub fn percent(fraction: f64) -> String {
    let p = (fraction * 100.0 * 1e6).round() / 1e6;
    format!("{p}")
}
