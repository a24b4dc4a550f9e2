//! The profile settings (`ci-cd-integration/resource-profiles.yaml`) and the selection and
//! learning settings (`ci-cd-integration/build-optimization.yaml`).

use super::recommend::RecommendSettings;
use super::rules::{Catalog, Profile, Rule};
use super::{Bytes, Millicores};
use serde::Deserialize;
use std::time::Duration;

/// `profiles:` the ladder and the build container the pod YAML describes.
#[derive(Debug, Clone, Deserialize)]
pub struct ProfileSettings {
    /// Smallest first; a learned size is rounded up to the first profile that covers it.
    pub ladder: Vec<Profile>,
    /// The build container of the pod YAML.
    pub pod: PodSettings,
}

/// The build container of a profile's pod YAML. The Kubernetes plugin adds its own
/// `jnlp` container; this one runs the build's steps (`container('build') { ... }`).
#[derive(Debug, Clone, Deserialize)]
pub struct PodSettings {
    /// Container name.
    pub container: String,
    /// Image, unless the caller names one (`image=`).
    pub image: String,
    /// Keeps the container alive while the pipeline runs steps in it.
    pub command: Vec<String>,
}

impl ProfileSettings {
    pub fn catalog(&self) -> Catalog {
        Catalog {
            profiles: self.ladder.clone(),
        }
    }
}

/// `build_optimization:` the rules and the learned recommendation.
#[derive(Debug, Clone, Deserialize)]
pub struct BuildOptimizationSettings {
    /// First match wins: `{type, load_below, profile}`; a rule without `type` matches
    /// every type, one without `load_below` every load.
    pub rules: Vec<Rule>,
    pub learned: LearnedSettings,
    pub analysis: AnalysisSettings,
}

/// The learned per-job recommendation.
#[derive(Debug, Clone, Deserialize)]
pub struct LearnedSettings {
    /// Builds with recorded usage a job needs before its learned size replaces the rules.
    pub min_samples: usize,
    /// Most recent samples read per job and type.
    pub max_samples: u32,
    /// A sample's weight halves every this long.
    #[serde(with = "humantime_serde")]
    pub half_life: Duration,
    /// Percentile of average CPU usage (1-100).
    pub cpu_percentile: f64,
    /// Percentile of memory peaks (1-100).
    pub memory_percentile: f64,
    /// Added to the memory percentile, in percent.
    pub memory_margin_percent: f64,
    pub cpu_floor: Millicores,
    pub memory_floor: Bytes,
    /// Exact sizes instead of the ladder's, for every pool (a pool can also allow them
    /// alone with `exact_sizes: true`).
    pub exact: bool,
}

impl LearnedSettings {
    pub fn recommend_settings(&self, exact: bool) -> RecommendSettings {
        RecommendSettings {
            min_samples: self.min_samples,
            half_life: self.half_life,
            cpu_percentile: self.cpu_percentile / 100.0,
            memory_percentile: self.memory_percentile / 100.0,
            memory_margin: self.memory_margin_percent / 100.0,
            cpu_floor: self.cpu_floor,
            memory_floor: self.memory_floor,
            exact: exact || self.exact,
        }
    }
}

/// How a build's performance is scored.
#[derive(Debug, Clone, Deserialize)]
pub struct AnalysisSettings {
    /// Earlier builds of the job its duration is compared with (their median).
    pub history: u32,
    /// A queue wait up to this long scores full marks.
    #[serde(with = "humantime_serde")]
    pub queue_wait_good: Duration,
    /// A queue wait this long or longer scores zero.
    #[serde(with = "humantime_serde")]
    pub queue_wait_bad: Duration,
    /// A duration more than this share above the job's median is called out, in percent.
    pub slower_percent: f64,
}

/// Checks the two sections together; `(path, reason)` for each problem.
pub fn validate(
    profiles: &ProfileSettings,
    opt: &BuildOptimizationSettings,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut bad = |path: String, reason: &str| out.push((path, reason.to_string()));
    if profiles.ladder.is_empty() {
        bad("profiles.ladder".into(), "must name at least one profile");
    }
    for (i, p) in profiles.ladder.iter().enumerate() {
        let at = |f: &str| format!("profiles.ladder.{i}.{f}");
        if p.name.trim().is_empty() {
            bad(at("name"), "must not be empty");
        }
        if profiles.ladder[..i].iter().any(|q| q.name == p.name) {
            bad(at("name"), "is used twice");
        }
        if p.limits.cpu < p.requests.cpu {
            bad(at("limits.cpu"), "must not be below requests.cpu");
        }
        if p.limits.memory < p.requests.memory {
            bad(at("limits.memory"), "must not be below requests.memory");
        }
        if i > 0 {
            let prev = &profiles.ladder[i - 1].requests;
            if p.requests.cpu < prev.cpu || p.requests.memory < prev.memory {
                bad(
                    at("requests"),
                    "the ladder goes smallest first: each profile's requests at least the previous one's",
                );
            }
        }
    }
    if profiles.pod.container.trim().is_empty() || profiles.pod.container == "jnlp" {
        bad(
            "profiles.pod.container".into(),
            "must be a container name other than jnlp (the plugin's own)",
        );
    }
    if profiles.pod.image.trim().is_empty() {
        bad("profiles.pod.image".into(), "must not be empty");
    }
    if opt.rules.is_empty() {
        bad(
            "build_optimization.rules".into(),
            "must hold at least one rule",
        );
    }
    for (i, r) in opt.rules.iter().enumerate() {
        if !profiles.ladder.iter().any(|p| p.name == r.profile) {
            bad(
                format!("build_optimization.rules.{i}.profile"),
                "names no profile of profiles.ladder",
            );
        }
        if r.load_below.is_some_and(|b| b > 101) {
            bad(
                format!("build_optimization.rules.{i}.load_below"),
                "is a percentage: 0 to 101",
            );
        }
    }
    if !opt
        .rules
        .iter()
        .any(|r| r.build_type.is_none() && r.load_below.is_none())
    {
        bad(
            "build_optimization.rules".into(),
            "needs a last rule with neither type nor load_below, so every build gets a profile",
        );
    }
    let l = &opt.learned;
    if l.min_samples == 0 {
        bad(
            "build_optimization.learned.min_samples".into(),
            "must be at least 1",
        );
    }
    if (l.max_samples as usize) < l.min_samples {
        bad(
            "build_optimization.learned.max_samples".into(),
            "must be at least min_samples",
        );
    }
    if l.half_life.is_zero() {
        bad(
            "build_optimization.learned.half_life".into(),
            "must be longer than 0s",
        );
    }
    for (name, v) in [
        ("cpu_percentile", l.cpu_percentile),
        ("memory_percentile", l.memory_percentile),
    ] {
        if !(v > 0.0 && v <= 100.0) {
            bad(
                format!("build_optimization.learned.{name}"),
                "must be above 0 and at most 100",
            );
        }
    }
    if !(0.0..=1000.0).contains(&l.memory_margin_percent) {
        bad(
            "build_optimization.learned.memory_margin_percent".into(),
            "must be 0 to 1000",
        );
    }
    let a = &opt.analysis;
    if a.history == 0 {
        bad(
            "build_optimization.analysis.history".into(),
            "must be at least 1",
        );
    }
    if a.queue_wait_bad <= a.queue_wait_good {
        bad(
            "build_optimization.analysis.queue_wait_bad".into(),
            "must be longer than queue_wait_good",
        );
    }
    if !a.slower_percent.is_finite() || a.slower_percent <= 0.0 {
        bad(
            "build_optimization.analysis.slower_percent".into(),
            "must be above 0",
        );
    }
    out
}
