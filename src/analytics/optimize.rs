//! Cost optimization with evidence: the recorded builds of a range are replayed in the
//! simulator against each pool's current settings and against variations of `min`,
//! `idle_headroom`, the scale-down stabilization window and the delay after a scale-up;
//! per-job learned sizes are priced against the requests builds had. The plan is the
//! gentlest one (lowest queue-wait p95) that reaches the target, or the one saving most
//! when none does, said so. Nothing is applied here: the plan carries the config diff, and
//! [`apply`] writes it.

use super::Range;
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

/// One setting of a pool under evaluation.
#[derive(Debug, Clone, PartialEq)]
struct Variant {
    min: u32,
    idle_headroom: u32,
    stabilization: Duration,
    delay_after_up: Duration,
}

/// The variations tried for a pool: its own values and gentler-on-cost ones.
fn variants(p: &PoolSettings) -> Vec<Variant> {
    let cur = Variant {
        min: p.min,
        idle_headroom: p.idle_headroom,
        stabilization: p.behavior.scale_down.stabilization_window,
        delay_after_up: p.behavior.scale_down_delay_after_scale_up,
    };
    let mut mins = vec![p.min, p.min / 2, 0];
    let mut heads = vec![p.idle_headroom, p.idle_headroom / 2, 0];
    let mut windows = vec![cur.stabilization];
    windows.extend(
        [60u64, 120, 300]
            .map(Duration::from_secs)
            .into_iter()
            .filter(|w| *w < cur.stabilization),
    );
    let mut delays = vec![cur.delay_after_up];
    delays.extend(
        [0u64, 30]
            .map(Duration::from_secs)
            .into_iter()
            .filter(|d| *d < cur.delay_after_up),
    );
    for v in [&mut mins, &mut heads] {
        v.sort_unstable();
        v.dedup();
    }
    windows.sort_unstable();
    windows.dedup();
    delays.sort_unstable();
    delays.dedup();
    let mut out = vec![cur.clone()];
    for &min in &mins {
        for &idle_headroom in &heads {
            for &stabilization in &windows {
                for &delay_after_up in &delays {
                    let v = Variant {
                        min,
                        idle_headroom,
                        stabilization,
                        delay_after_up,
                    };
                    if v != cur {
                        out.push(v);
                    }
                }
            }
        }
    }
    out
}

fn config_for(p: &PoolSettings, v: &Variant, settings: &Settings) -> SimConfig {
    let mut cfg = SimConfig::for_pool(p, settings);
    cfg.min = v.min;
    cfg.idle_headroom = v.idle_headroom;
    cfg.behavior.scale_down.stabilization_window = v.stabilization;
    cfg.behavior.scale_down_delay_after_scale_up = v.delay_after_up;
    cfg
}

/// The p95 of waits in ms, in seconds.
fn p95(waits: &mut [i64]) -> f64 {
    waits.sort_unstable();
    crate::sim::percentile(waits, 0.95)
}

fn run(builds: &[SimBuild], cfg: &SimConfig) -> (Figures, Vec<i64>) {
    let o = replay(builds, SimPolicy::Queue, cfg);
    let mut waits = o.waits_ms;
    let hours = o.agent_ms as f64 / 3_600_000.0;
    let wait_p95_s = p95(&mut waits);
    (
        Figures {
            cost: hours * cfg.agent_hour_price,
            agent_hours: hours,
            wait_p95_s,
        },
        waits,
    )
}

fn changes(p: &PoolSettings, v: &Variant) -> Vec<Change> {
    let mut out = Vec::new();
    let mut push = |setting: &str, from: String, to: String| {
        if from != to {
            out.push(Change {
                setting: setting.into(),
                from,
                to,
            });
        }
    };
    push("min", p.min.to_string(), v.min.to_string());
    push(
        "idle_headroom",
        p.idle_headroom.to_string(),
        v.idle_headroom.to_string(),
    );
    let fmt = |d: Duration| humantime::format_duration(d).to_string();
    push(
        "behavior.scaleDown.stabilizationWindow",
        fmt(p.behavior.scale_down.stabilization_window),
        fmt(v.stabilization),
    );
    push(
        "behavior.scaleDownDelayAfterScaleUp",
        fmt(p.behavior.scale_down_delay_after_scale_up),
        fmt(v.delay_after_up),
    );
    out
}

/// The YAML that sets the planned values over the current settings (the files are
/// merged in name order, so `optimized.yaml` wins over `jenkins-scaling.yaml`).
fn override_yaml(settings: &Settings, chosen: &[(String, Variant)], note: &str) -> String {
    if chosen.is_empty() {
        return String::new();
    }
    let mut pools = serde_json::Map::new();
    for (name, v) in chosen {
        let p = &settings.scaling.pools[name];
        let mut behavior = p.behavior.clone();
        behavior.scale_down.stabilization_window = v.stabilization;
        behavior.scale_down_delay_after_scale_up = v.delay_after_up;
        pools.insert(
            name.clone(),
            serde_json::json!({
                "min": v.min,
                "idle_headroom": v.idle_headroom,
                "behavior": behavior,
            }),
        );
    }
    let doc = serde_json::json!({"scaling": {"pools": pools}});
    format!(
        "# Written by `jenkins-autopilot cost optimize --apply`: {note}\n# Remove this file to go back to the settings it overrides.\n{}",
        serde_yaml::to_string(&doc).expect("settings serialize")
    )
}

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
pub async fn optimize(
    store: &Store,
    settings: std::sync::Arc<Settings>,
    range: Range,
    target_percent: f64,
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
    let plan = tokio::task::spawn_blocking(move || {
        plan(&settings, range, target_percent, per_pool, reported)
    })
    .await
    .map_err(|e| crate::store::StoreError::Corrupt(format!("the replay failed: {e}")))?;
    Ok(plan)
}

/// The search itself, on the loaded history.
fn plan(
    settings: &Settings,
    range: Range,
    target_percent: f64,
    mut per_pool: BTreeMap<String, Vec<SimBuild>>,
    reported: BTreeMap<(String, String), Vec<PricedBuild>>,
) -> (Plan, String) {
    let mut evaluated = 0;
    let mut pools = Vec::new();
    let mut chosen: Vec<(String, Variant)> = Vec::new();
    let (mut waits_before, mut waits_after) = (Vec::new(), Vec::new());
    let (mut pool_before, mut pool_after) = (0.0, 0.0);
    for (name, p) in &settings.scaling.pools {
        let mut builds = per_pool.remove(name).unwrap_or_default();
        builds.sort_by_key(|b| b.queued_at);
        // The pool's own settings come first.
        let mut tried = variants(p).into_iter();
        let current = tried.next().expect("the pool's own settings are tried");
        let (before, w_before) = run(&builds, &config_for(p, &current, settings));
        evaluated += 1;
        pool_before += before.cost;
        waits_before.extend(w_before.iter().copied());
        if p.policy != PolicyName::Queue || builds.is_empty() {
            let note = if builds.is_empty() {
                "no recorded builds in the range".to_string()
            } else {
                format!(
                    "policy {:?} is not searched; only `queue` pools are",
                    p.policy
                )
            };
            pool_after += before.cost;
            waits_after.extend(w_before);
            pools.push(PoolPlan {
                pool: name.clone(),
                builds: builds.len(),
                before,
                after: before,
                changes: Vec::new(),
                note: Some(note),
            });
            continue;
        }
        // Every variation; keep the gentlest reaching the target, else the cheapest.
        let goal = before.cost * (1.0 - target_percent / 100.0);
        let mut best: Option<(Variant, Figures, Vec<i64>)> = None;
        let mut cheapest: Option<(Variant, Figures, Vec<i64>)> = None;
        // The current settings' replay counts as the first candidate.
        let replays = tried.map(|v| {
            let (f, w) = run(&builds, &config_for(p, &v, settings));
            evaluated += 1;
            (v, f, w)
        });
        for (v, f, w) in std::iter::once((current, before, w_before)).chain(replays) {
            if f.cost <= goal + 1e-9
                && best.as_ref().is_none_or(|(_, b, _)| {
                    f.wait_p95_s < b.wait_p95_s || (f.wait_p95_s == b.wait_p95_s && f.cost < b.cost)
                })
            {
                best = Some((v.clone(), f, w.clone()));
            }
            if cheapest.as_ref().is_none_or(|(_, c, _)| f.cost < c.cost) {
                cheapest = Some((v, f, w));
            }
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
    let diff = override_yaml(settings, &chosen, &message);
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
    (plan, diff)
}

fn round(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// Writes the plan's settings to `<config_dir>/optimized.yaml` after checking that the
/// settings load with it; nothing is written when they would not.
pub fn apply(config_dir: &std::path::Path, diff: &str) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context;
    anyhow::ensure!(
        !diff.is_empty(),
        "the plan changes no setting: nothing to write"
    );
    let path = config_dir.join("optimized.yaml");
    let staging = tempfile::tempdir().context("creating a staging directory")?;
    for entry in std::fs::read_dir(config_dir)
        .with_context(|| format!("reading {}", config_dir.display()))?
    {
        let p = entry?.path();
        if p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            std::fs::copy(&p, staging.path().join(p.file_name().expect("a file name")))?;
        }
    }
    std::fs::write(staging.path().join("optimized.yaml"), diff)?;
    Settings::load(Some(staging.path()), std::env::vars())
        .map_err(|e| anyhow::anyhow!("the planned settings do not load:\n{e}"))?;
    let tmp = config_dir.join(".optimized.yaml.tmp");
    std::fs::write(&tmp, diff).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
