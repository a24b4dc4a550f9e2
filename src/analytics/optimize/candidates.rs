//! The settings a pool's optimization tries (variations of its knobs and every frontier
//! point), what changes between two of them, and the settings file a plan writes.

use super::*;

/// The settings tried for a pool, its own first: for a `queue` pool, gentler-on-cost
/// values of `min`, `idle_headroom`, the scale-down stabilization window and the delay
/// after a scale-up; for every pool, each point of the frontier (`window`, `keep-idle`,
/// `headroom` and `warm` at their knobs, `simulate --frontier`) over its other settings.
pub(super) fn candidates(p: &PoolSettings) -> Vec<PoolSettings> {
    let mut out = vec![p.clone()];
    let mut push = |c: PoolSettings| {
        if !out.contains(&c) {
            out.push(c);
        }
    };
    if p.policy == PolicyName::Queue {
        let window = p.behavior.scale_down.stabilization_window;
        let delay = p.behavior.scale_down_delay_after_scale_up;
        let mut mins = vec![p.min, p.min / 2, 0];
        let mut heads = vec![p.idle_headroom, p.idle_headroom / 2, 0];
        let mut windows = vec![window];
        windows.extend(
            [60u64, 120, 300]
                .map(Duration::from_secs)
                .into_iter()
                .filter(|w| *w < window),
        );
        let mut delays = vec![delay];
        delays.extend(
            [0u64, 30]
                .map(Duration::from_secs)
                .into_iter()
                .filter(|d| *d < delay),
        );
        for v in [&mut mins, &mut heads] {
            v.sort_unstable();
            v.dedup();
        }
        windows.sort_unstable();
        windows.dedup();
        delays.sort_unstable();
        delays.dedup();
        for &min in &mins {
            for &idle_headroom in &heads {
                for &w in &windows {
                    for &d in &delays {
                        let mut c = p.clone();
                        c.min = min;
                        c.idle_headroom = idle_headroom;
                        c.behavior.scale_down.stabilization_window = w;
                        c.behavior.scale_down_delay_after_scale_up = d;
                        push(c);
                    }
                }
            }
        }
    }
    for &(_, policy) in crate::sim::FRONTIER.iter() {
        let mut c = p.clone();
        match policy {
            SimPolicy::Window(m) => {
                c.policy = PolicyName::Queue;
                c.behavior.scale_down.stabilization_window = Duration::from_secs(u64::from(m) * 60);
            }
            SimPolicy::KeepIdle(d) => {
                c.policy = PolicyName::KeepIdle;
                c.keep_idle = d;
            }
            SimPolicy::Headroom(n) => {
                c.policy = PolicyName::Queue;
                c.idle_headroom = n;
            }
            SimPolicy::Warm(b) => {
                c.policy = PolicyName::Warm;
                // The settings take the budget as a percentage.
                c.warm.budget = b * 100.0;
                c.warm.max_idle = c.warm.max_idle.min(c.max);
            }
            _ => continue,
        }
        push(c);
    }
    out
}

/// The p95 of waits in ms, in seconds.
pub(super) fn p95(waits: &mut [i64]) -> f64 {
    waits.sort_unstable();
    crate::sim::percentile(waits, 0.95)
}

/// Replays `builds` under the pool settings `p`, as the live pool would run them.
pub(super) fn run(
    builds: &[SimBuild],
    p: &PoolSettings,
    settings: &Settings,
) -> (Figures, Vec<i64>) {
    let p = crate::config::PoolPolicy::from(p);
    let cfg = SimConfig::new(&p, settings);
    let o = replay(builds, SimPolicy::from(&p), &cfg);
    let f = crate::sim::figures(&[(&o, cfg.agent_hour_price)], None);
    (
        Figures {
            cost: f.cost,
            agent_hours: f.agent_hours,
            wait_p95_s: f.wait_p95_s,
            started_at_once: f.started_at_once(),
        },
        o.waits_ms,
    )
}

/// Whether `a` treats builds more gently than `b`: a lower queue-wait p95, then more
/// builds started at once, then a lower cost.
pub(super) fn gentler(a: &Figures, b: &Figures) -> bool {
    (a.wait_p95_s, -a.started_at_once, a.cost) < (b.wait_p95_s, -b.started_at_once, b.cost)
}

pub(super) fn changes(p: &PoolSettings, v: &PoolSettings) -> Vec<Change> {
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
    let name = crate::domain::name_of::<PolicyName>;
    push("policy", name(&p.policy), name(&v.policy));
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
        fmt(v.behavior.scale_down.stabilization_window),
    );
    push(
        "behavior.scaleDownDelayAfterScaleUp",
        fmt(p.behavior.scale_down_delay_after_scale_up),
        fmt(v.behavior.scale_down_delay_after_scale_up),
    );
    if v.policy == PolicyName::KeepIdle {
        push("keep_idle", fmt(p.keep_idle), fmt(v.keep_idle));
    }
    if v.policy == PolicyName::Warm {
        push(
            "warm.budget",
            format!("{}%", p.warm.budget),
            format!("{}%", v.warm.budget),
        );
        push(
            "warm.max_idle",
            p.warm.max_idle.to_string(),
            v.warm.max_idle.to_string(),
        );
    }
    out
}

/// The YAML that sets the planned values over the current settings (the files are
/// merged in name order, so `optimized.yaml` wins over `jenkins-scaling.yaml`).
pub(super) fn override_yaml(chosen: &[(String, PoolSettings)], note: &str) -> String {
    if chosen.is_empty() {
        return String::new();
    }
    let mut pools = serde_json::Map::new();
    for (name, v) in chosen {
        let mut pool = serde_json::json!({
            "policy": v.policy,
            "min": v.min,
            "idle_headroom": v.idle_headroom,
            "behavior": v.behavior,
        });
        if v.policy == PolicyName::KeepIdle {
            pool["keep_idle"] = humantime::format_duration(v.keep_idle).to_string().into();
        }
        if v.policy == PolicyName::Warm {
            pool["warm"] = serde_json::to_value(&v.warm).expect("settings serialize");
        }
        pools.insert(name.clone(), pool);
    }
    let doc = serde_json::json!({"scaling": {"pools": pools}});
    format!(
        "# Written by `jenkins-autopilot cost optimize --apply`: {note}\n# Remove this file to go back to the settings it overrides.\n{}",
        serde_yaml::to_string(&doc).expect("settings serialize")
    )
}
