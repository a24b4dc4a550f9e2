//! Cost optimization with evidence: the recorded builds of a range are replayed in the
//! simulator against each pool's current settings, against variations of `min`,
//! `idle_headroom`, the scale-down stabilization window and the delay after a scale-up,
//! and against every knob of the frontier (`window`, `keep-idle`, `headroom`, `warm`
//! budgets, as `simulate --frontier` sweeps them); per-job learned sizes are priced
//! against the requests builds had. The plan is the gentlest one (lowest queue-wait p95,
//! then most builds started at once) that reaches the target, or the one saving most
//! when none does, said so. Nothing is applied here: the plan carries the config diff, and
//! [`apply`] writes it.

use super::Range;
use crate::analytics::round;
use crate::config::{PoolSettings, Settings};
use crate::cost;
use crate::domain::Timestamp;
use crate::profiles::recommend::{Sample, recommend};
use crate::profiles::rules::Resources;
use crate::scaling::PolicyName;
use crate::sim::engine::{SimBuild, SimConfig, SimPolicy, replay};
use crate::store::{PricedBuild, Store, StoreError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// What the simulator measured for one setting of one pool.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Figures {
    pub cost: f64,
    pub agent_hours: f64,
    pub wait_p95_s: f64,
    /// Share of builds that started without waiting, 0 to 1.
    pub started_at_once: f64,
}

/// One setting changed.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Change {
    pub setting: String,
    pub from: String,
    pub to: String,
}

/// A pool's part of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PoolPlan {
    pub pool: String,
    pub builds: usize,
    pub before: Figures,
    pub after: Figures,
    pub changes: Vec<Change>,
    /// Why the pool was left alone, when it was.
    pub note: Option<String>,
}

/// A job whose learned size is cheaper than what its builds requested.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ProfileChange {
    /// `controller/job`.
    pub job: String,
    #[serde(rename = "type")]
    pub build_type: String,
    pub builds: usize,
    #[schema(value_type = Object)]
    pub recommended: Resources,
    pub cost_before: f64,
    pub cost_after: f64,
}

/// The plan.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Plan {
    pub range: Range,
    pub target_percent: f64,
    /// Whether the plan saves at least the target.
    pub reached: bool,
    pub message: String,
    pub currency: String,
    /// Replayed cost of the pools at their settings plus the reported builds' cost.
    pub cost_before: f64,
    pub cost_after: f64,
    pub saved: f64,
    pub saved_percent: f64,
    /// Over every replayed build.
    pub wait_p95_before_s: f64,
    pub wait_p95_after_s: f64,
    pub pools: Vec<PoolPlan>,
    pub profiles: Vec<ProfileChange>,
    /// Settings evaluated in the replay.
    pub evaluated: usize,
    /// The settings to write (`ci-cd-integration/optimized.yaml`), empty when nothing changes.
    pub config_diff: String,
}

mod candidates;
use candidates::{candidates, changes, gentler, override_yaml, p95, run};

/// Each pool's finished builds in `range` as the replay's arrivals (queued at their
/// recorded queue time), sorted; `each` sees every finished build.
pub async fn pool_builds(
    store: &Store,
    settings: &Settings,
    range: Range,
    mut each: impl FnMut(PricedBuild),
) -> Result<BTreeMap<String, Vec<SimBuild>>, StoreError> {
    let mut per_pool: BTreeMap<String, Vec<SimBuild>> = BTreeMap::new();
    store
        .for_each_finished_build(range.from, range.to, |b| {
            if let Some((name, _)) =
                super::costs::pool_of(&settings.scaling.pools, &b.controller, b.label.as_deref())
            {
                per_pool.entry(name.clone()).or_default().push(SimBuild {
                    queued_at: b.finished_at - b.duration_ms - b.queue_wait_ms.unwrap_or(0),
                    duration: b.duration_ms,
                });
            }
            each(b);
        })
        .await?;
    for builds in per_pool.values_mut() {
        builds.sort_by_key(|b| b.queued_at);
    }
    Ok(per_pool)
}

/// Plans savings of `target_percent` over `range`: reads the history, then replays it on a
/// blocking thread (never on the async runtime).
pub async fn optimize<S: Send + 'static>(
    store: &Store,
    settings: std::sync::Arc<Settings>,
    range: Range,
    target_percent: f64,
    metrics: &crate::metrics::Metrics,
    slot: S,
) -> Result<(Plan, String), StoreError> {
    // The recorded builds: per pool, as the simulator's arrivals; reported builds with
    // their job and type for right-sizing.
    let mut reported: BTreeMap<(String, String), Vec<PricedBuild>> = BTreeMap::new();
    let per_pool = pool_builds(store, &settings, range, |b| {
        if b.requests.is_some() {
            let key = (
                format!("{}/{}", b.controller, b.job),
                b.build_type.clone().unwrap_or_else(|| "build".into()),
            );
            reported.entry(key).or_default().push(b);
        }
    })
    .await?;
    super::replay::on_blocking_thread(metrics, slot, move |stop| {
        plan(&settings, range, target_percent, per_pool, reported, stop)
    })
    .await
}

/// The search itself, on the loaded history.
fn plan(
    settings: &Settings,
    range: Range,
    target_percent: f64,
    mut per_pool: BTreeMap<String, Vec<SimBuild>>,
    reported: BTreeMap<(String, String), Vec<PricedBuild>>,
    stop: &super::replay::Stop,
) -> Option<(Plan, String)> {
    let mut evaluated = 0;
    let mut pools = Vec::new();
    let mut chosen: Vec<(String, PoolSettings)> = Vec::new();
    let (mut waits_before, mut waits_after) = (Vec::new(), Vec::new());
    let (mut pool_before, mut pool_after) = (0.0, 0.0);
    for (name, p) in &settings.scaling.pools {
        let builds = per_pool.remove(name).unwrap_or_default();
        // The pool's own settings come first.
        let mut tried = candidates(p).into_iter();
        let current = tried.next().expect("the pool's own settings are tried");
        let (before, w_before) = run(&builds, &current, settings);
        evaluated += 1;
        pool_before += before.cost;
        waits_before.extend(w_before.iter().copied());
        if builds.is_empty() {
            pool_after += before.cost;
            waits_after.extend(w_before);
            pools.push(PoolPlan {
                pool: name.clone(),
                builds: 0,
                before,
                after: before,
                changes: Vec::new(),
                note: Some("no recorded builds in the range".to_string()),
            });
            continue;
        }
        // Every candidate; keep the gentlest reaching the target, else the cheapest.
        let goal = before.cost * (1.0 - target_percent / 100.0);
        let mut best: Option<(PoolSettings, Figures, Vec<i64>)> = None;
        let mut cheapest: Option<(PoolSettings, Figures, Vec<i64>)> = None;
        // The current settings' replay counts as the first candidate.
        let replays = tried.map_while(|v| {
            if stop.asked() {
                return None;
            }
            let (f, w) = run(&builds, &v, settings);
            evaluated += 1;
            Some((v, f, w))
        });
        for (v, f, w) in std::iter::once((current, before, w_before)).chain(replays) {
            if f.cost <= goal + 1e-9 && best.as_ref().is_none_or(|(_, b, _)| gentler(&f, b)) {
                best = Some((v.clone(), f, w.clone()));
            }
            if cheapest.as_ref().is_none_or(|(_, c, _)| f.cost < c.cost) {
                cheapest = Some((v, f, w));
            }
        }
        if stop.asked() {
            return None;
        }
        let (v, after, w) = best
            .or(cheapest)
            .expect("the current settings were replayed");
        pool_after += after.cost;
        waits_after.extend(w);
        let ch = changes(p, &v);
        if !ch.is_empty() {
            chosen.push((name.clone(), v));
        }
        pools.push(PoolPlan {
            pool: name.clone(),
            builds: builds.len(),
            before,
            after,
            changes: ch,
            note: None,
        });
    }

    // Right-sizing: each job's learned size against what its reported builds requested.
    let prices = &settings.cost.prices;
    let mut profiles = Vec::new();
    let (mut builds_before, mut builds_after) = (0.0, 0.0);
    let now = Timestamp::now();
    for ((job, build_type), builds) in reported {
        let samples: Vec<Sample> = builds
            .iter()
            .filter_map(|b| {
                let u = b.usage?;
                Some(Sample {
                    at: Timestamp::from_millis(b.finished_at).ok()?,
                    cpu: u.cpu,
                    memory_peak: u.memory_peak,
                    oom_killed: false,
                })
            })
            .collect();
        let cost_at = |req: Option<Resources>| -> f64 {
            builds
                .iter()
                .map(|b| {
                    let r = req.or(b.requests).unwrap_or(settings.cost.default_build);
                    cost::build_cost(prices, r, b.usage, b.duration_ms).total()
                })
                .sum()
        };
        let before = cost_at(None);
        builds_before += before;
        let rec = recommend(
            &samples,
            now,
            &settings
                .build_optimization
                .learned
                .recommend_settings(false),
            &settings.profiles.catalog(),
        );
        match rec {
            Some(r) => {
                let after = cost_at(Some(r.requests));
                if after < before - 1e-9 {
                    builds_after += after;
                    profiles.push(ProfileChange {
                        job,
                        build_type,
                        builds: builds.len(),
                        recommended: r.requests,
                        cost_before: before,
                        cost_after: after,
                    });
                } else {
                    builds_after += before;
                }
            }
            None => builds_after += before,
        }
    }

    let cost_before = pool_before + builds_before;
    let cost_after = pool_after + builds_after;
    let saved = cost_before - cost_after;
    let saved_percent = if cost_before > 0.0 {
        saved / cost_before * 100.0
    } else {
        0.0
    };
    let reached = cost_before > 0.0 && saved_percent + 1e-9 >= target_percent;
    let (wait_p95_before_s, wait_p95_after_s) = (p95(&mut waits_before), p95(&mut waits_after));
    let message = if cost_before <= 0.0 {
        "nothing was spent in the range: there is nothing to save".to_string()
    } else if reached {
        format!(
            "saves {saved_percent:.1} % ({saved:.2} {}) against the {target_percent:.0} % target; queue-wait p95 {:.0} s -> {:.0} s",
            settings.cost.currency, wait_p95_before_s, wait_p95_after_s
        )
    } else {
        format!(
            "the {target_percent:.0} % target cannot be reached with these settings on this history: the most found is {saved_percent:.1} % ({saved:.2} {})",
            settings.cost.currency
        )
    };
    let diff = override_yaml(&chosen, &message);
    let plan = Plan {
        range,
        target_percent,
        reached,
        message,
        currency: settings.cost.currency.clone(),
        cost_before: round(cost_before),
        cost_after: round(cost_after),
        saved: round(saved),
        saved_percent: (saved_percent * 10.0).round() / 10.0,
        wait_p95_before_s,
        wait_p95_after_s,
        pools,
        profiles,
        evaluated,
        config_diff: diff.clone(),
    };
    Some((plan, diff))
}

/// Writes the plan's settings to `<config_dir>/optimized.yaml` after checking that the
/// settings load with it; nothing is written when they would not.
pub fn apply(config_dir: &std::path::Path, diff: &str) -> Result<std::path::PathBuf, ApplyError> {
    use crate::domain::FileError;
    if diff.is_empty() {
        return Err(ApplyError::NothingToWrite);
    }
    let path = config_dir.join("optimized.yaml");
    let staging = tempfile::tempdir().map_err(FileError::at(
        "creating a staging directory in",
        &std::env::temp_dir(),
    ))?;
    let entries = std::fs::read_dir(config_dir).map_err(FileError::at("reading", config_dir))?;
    for entry in entries {
        let p = entry.map_err(FileError::at("reading", config_dir))?.path();
        if p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let copy = staging.path().join(p.file_name().expect("a file name"));
            std::fs::copy(&p, &copy).map_err(FileError::at("copying", &p))?;
        }
    }
    let planned = staging.path().join("optimized.yaml");
    std::fs::write(&planned, diff).map_err(FileError::at("writing", &planned))?;
    Settings::load(Some(staging.path()), std::env::vars()).map_err(ApplyError::WouldNotLoad)?;
    let tmp = config_dir.join(".optimized.yaml.tmp");
    std::fs::write(&tmp, diff).map_err(FileError::at("writing", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(FileError::at("writing", &path))?;
    Ok(path)
}

/// Why a plan's settings were not written.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("the plan changes no setting: nothing to write")]
    NothingToWrite,
    #[error("the planned settings do not load:\n{0}")]
    WouldNotLoad(crate::config::ConfigErrors),
    #[error(transparent)]
    File(#[from] crate::domain::FileError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_with(pool: &str) -> Settings {
        let mut s = Settings::load(None, Vec::new()).unwrap();
        let p: PoolSettings = serde_yaml::from_str(pool).unwrap();
        s.scaling.pools.insert("linux".into(), p);
        s
    }

    #[test]
    fn every_frontier_knob_is_a_candidate_for_every_policy() {
        let s = settings_with(
            "{controller: prod, label: linux, namespace: ci, deployment: a, policy: warm, max: 4, warm: {budget: 100%, max_idle: 4}}",
        );
        let p = &s.scaling.pools["linux"];
        let c = candidates(p);
        assert_eq!(&c[0], p, "the pool's own settings first");
        // Seventeen frontier points; warm 100 % is the pool itself.
        assert_eq!(c.len(), 17, "{c:#?}");
        assert!(
            c.iter()
                .any(|c| c.policy == PolicyName::KeepIdle
                    && c.keep_idle == Duration::from_secs(1800))
        );
        assert!(c.iter().all(|c| c.warm.max_idle <= c.max));
    }

    #[test]
    fn a_warm_pool_is_searched_and_its_plan_writes_settings_that_load() {
        // A ten-minute build every half hour for two weeks: warm 100 % pays for an agent
        // between builds; a smaller budget or a window saves.
        let s = settings_with(
            "{controller: prod, label: linux, namespace: ci, deployment: a, policy: warm, max: 4, warm: {budget: 100%, max_idle: 4}}",
        );
        let builds: Vec<SimBuild> = (0..672)
            .map(|i| SimBuild {
                queued_at: 1_700_000_000_000 + i * 1_800_000,
                duration: 600_000,
            })
            .collect();
        let range = Range {
            from: Timestamp::from_millis(1_700_000_000_000).unwrap(),
            to: Timestamp::from_millis(1_700_000_000_000 + 14 * 86_400_000).unwrap(),
        };
        let per_pool = BTreeMap::from([("linux".to_string(), builds)]);
        let stop = crate::analytics::replay::Stop::default();
        let asked = crate::analytics::replay::Stop::default();
        asked.ask();
        assert!(
            plan(&s, range, 20.0, per_pool.clone(), BTreeMap::new(), &asked).is_none(),
            "a replay asked to stop answers nothing"
        );
        let (plan, yaml) = plan(&s, range, 20.0, per_pool, BTreeMap::new(), &stop).unwrap();
        let pool = &plan.pools[0];
        assert_eq!(pool.note, None, "{pool:?}");
        assert!(plan.reached, "{}", plan.message);
        assert!(!pool.changes.is_empty(), "{pool:?}");
        assert!(pool.after.cost <= pool.before.cost * 0.8 + 1e-9, "{pool:?}");
        assert!(plan.evaluated >= 17);
        // The override loads over the settings it changes.
        let doc: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
        let mut over = serde_json::to_value(
            serde_yaml::from_str::<serde_json::Value>(
                "{controller: prod, label: linux, namespace: ci, deployment: a, max: 4}",
            )
            .unwrap(),
        )
        .unwrap();
        for (k, v) in doc["scaling"]["pools"]["linux"].as_object().unwrap() {
            over[k] = v.clone();
        }
        let loaded: PoolSettings = serde_json::from_value(over).unwrap();
        let chosen = candidates(&s.scaling.pools["linux"])
            .into_iter()
            .find(|c| changes(&s.scaling.pools["linux"], c) == pool.changes)
            .expect("the plan is one of the candidates");
        assert_eq!(loaded.policy, chosen.policy);
        assert_eq!(loaded.warm.budget, chosen.warm.budget);
        assert_eq!(loaded.keep_idle, chosen.keep_idle);
        assert_eq!(loaded.behavior, chosen.behavior);
    }
}
