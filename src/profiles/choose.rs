//! The answer to "what should this build's pod get": the learned size once the job has
//! enough reported builds, else the first rule that matches; with the pod YAML and why.

use super::pod_yaml::{limits_for, pod, pod_yaml};
use super::recommend::{Recommendation, Sample, recommend};
use super::rules::{Resources, select};
use super::settings::{BuildOptimizationSettings, ProfileSettings};
use crate::domain::Timestamp;
use serde::Serialize;

/// Which source decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Rule,
    Learned,
}

/// The pool's load as far as it is known, and how it was learned.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    pub percent: Option<u32>,
    pub how: String,
}

/// A chosen profile.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Selection {
    /// The ladder's profile (for an exact learned size: the profile it was shaped after).
    pub profile: String,
    #[schema(value_type = Object)]
    pub requests: Resources,
    #[schema(value_type = Object)]
    pub limits: Resources,
    pub source: Source,
    pub reason: String,
    /// The load the rules were judged at (percent), `null` when unknown.
    pub load: Option<u32>,
    /// Reported builds of this job and type.
    pub samples: usize,
    /// The build container's name in `pod_yaml` (`container(NAME) { ... }`).
    pub container: String,
    /// A Pod for `podTemplate(yaml: ...)`: the build container with these resources.
    pub pod_yaml: String,
}

/// What the rules and the learned recommendation say for one job and type.
pub struct Inputs<'a> {
    pub build_type: &'a str,
    pub load: Load,
    pub samples: &'a [Sample],
    pub now: Timestamp,
    /// The pool allows exact learned sizes.
    pub exact: bool,
    /// The build container's image; `None`: the configured one.
    pub image: Option<&'a str>,
}

/// The learned recommendation, when the job has enough samples.
pub fn learned(
    profiles: &ProfileSettings,
    optimization: &BuildOptimizationSettings,
    inputs: &Inputs<'_>,
) -> Option<Recommendation> {
    recommend(
        inputs.samples,
        inputs.now,
        &optimization.learned.recommend_settings(inputs.exact),
        &profiles.catalog(),
    )
}

/// Chooses. `None` only when no rule matches, which validated settings rule out.
pub fn choose(
    profiles: &ProfileSettings,
    optimization: &BuildOptimizationSettings,
    inputs: &Inputs<'_>,
) -> Option<Selection> {
    let catalog = profiles.catalog();
    let min = optimization.learned.min_samples;
    let image = inputs.image.unwrap_or(&profiles.pod.image);
    let (profile, requests, limits, source, reason) = match learned(profiles, optimization, inputs)
    {
        Some(rec) => {
            let shaped_after = match &rec.profile {
                Some(name) => catalog.get(name)?.clone(),
                None => catalog.round_up(rec.requests).clone(),
            };
            let limits = if rec.profile.is_some() {
                shaped_after.limits
            } else {
                limits_for(&rec.requests, &shaped_after)
            };
            (
                shaped_after.name.clone(),
                rec.requests,
                limits,
                Source::Learned,
                format!("learned from this job's reports: {}", rec.reason),
            )
        }
        None => {
            let (row, name) = select(&optimization.rules, inputs.build_type, inputs.load.percent)?;
            let p = catalog.get(name)?.clone();
            let rule = &optimization.rules[row];
            let mut cond = Vec::new();
            if let Some(t) = &rule.build_type {
                cond.push(format!("type {t}"));
            }
            if let Some(b) = rule.load_below {
                cond.push(format!("load < {b} %"));
            }
            let cond = if cond.is_empty() {
                "any build".to_string()
            } else {
                cond.join(" and ")
            };
            (
                p.name.clone(),
                p.requests,
                p.limits,
                Source::Rule,
                format!(
                    "rule {} ({cond} -> {}); {}; {} of {min} reported builds needed to learn",
                    row + 1,
                    p.name,
                    inputs.load.how,
                    inputs.samples.len()
                ),
            )
        }
    };
    let yaml = pod_yaml(&pod(&profile, &requests, &limits, &profiles.pod, image));
    Some(Selection {
        profile,
        requests,
        limits,
        source,
        reason,
        load: inputs.load.percent,
        samples: inputs.samples.len(),
        container: profiles.pod.container.clone(),
        pod_yaml: yaml,
    })
}
