//! A build's performance score (0-100) and what to change, from its record (queue wait,
//! duration, result) and its own usage report (CPU and memory against its requests).
//! Each part scores 0 to 1; parts without data are left out and the others reweighed.

use super::rules::Catalog;
use super::settings::AnalysisSettings;
use super::{Bytes, Millicores};
use crate::domain::PerformanceReport;
use crate::domain::{BuildRecord, BuildResult};
use serde::Serialize;

/// One scored part.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Part {
    /// `queue_wait`, `duration`, `cpu_efficiency`, `memory_efficiency`, `result`.
    pub name: &'static str,
    /// 0 to 1; `null` when there is no data for it.
    pub score: Option<f64>,
    pub weight: f64,
    /// What was measured.
    pub detail: String,
}

/// The analysis of one build.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Analysis {
    /// 0-100: the weighted mean of the parts that have data.
    pub score: u32,
    pub parts: Vec<Part>,
    /// Concrete changes, most important first.
    pub recommendations: Vec<String>,
}

const WEIGHTS: [(&str, f64); 5] = [
    ("queue_wait", 0.2),
    ("duration", 0.25),
    ("cpu_efficiency", 0.2),
    ("memory_efficiency", 0.2),
    ("result", 0.15),
];

fn weight(name: &str) -> f64 {
    WEIGHTS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0.0, |(_, w)| *w)
}

fn secs(ms: i64) -> String {
    humantime::format_duration(std::time::Duration::from_secs((ms.max(0) / 1000) as u64))
        .to_string()
}

/// The median of a non-empty list.
fn median(values: &[i64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2] as f64
    } else {
        (v[n / 2 - 1] as f64 + v[n / 2] as f64) / 2.0
    })
}

/// Usage against request: full marks from 60 % to 100 %, falling to 0 at 0 % below and
/// at 200 % above (a build far over its request starves its neighbours or gets evicted).
fn efficiency_score(used: f64, requested: f64) -> f64 {
    if requested <= 0.0 {
        return 0.0;
    }
    let r = used / requested;
    if r < 0.6 {
        r / 0.6
    } else if r <= 1.0 {
        1.0
    } else {
        (1.0 - (r - 1.0)).max(0.0)
    }
}

/// Analyses one build. `earlier` are the durations (ms) of the job's earlier successful
/// builds.
pub fn analyse(
    build: Option<&BuildRecord>,
    usage: Option<&PerformanceReport>,
    earlier: &[i64],
    settings: &AnalysisSettings,
    catalog: &Catalog,
) -> Analysis {
    let mut parts = Vec::new();
    let mut recs: Vec<String> = Vec::new();
    let mut part = |name: &'static str, score: Option<f64>, detail: String| {
        parts.push(Part {
            name,
            score: score.map(|s| (s.clamp(0.0, 1.0) * 1000.0).round() / 1000.0),
            weight: weight(name),
            detail,
        });
    };

    // Queue wait.
    match build.and_then(|b| b.queue_wait_ms) {
        Some(wait) => {
            let good = settings.queue_wait_good.as_millis() as f64;
            let bad = settings.queue_wait_bad.as_millis() as f64;
            let w = wait.max(0) as f64;
            let score = if w <= good {
                1.0
            } else {
                1.0 - (w - good) / (bad - good)
            };
            if w > good {
                recs.push(format!(
                    "waited {} in the queue (full marks up to {}): raise the pool's min or idle_headroom, or give it `policy: warm` with a budget",
                    secs(wait),
                    humantime::format_duration(settings.queue_wait_good)
                ));
            }
            part("queue_wait", Some(score), format!("waited {}", secs(wait)));
        }
        None => part("queue_wait", None, "queue wait not known".into()),
    }

    // Duration against the job's median.
    let duration = build.and_then(|b| b.duration_ms);
    match (duration, median(earlier)) {
        (Some(d), Some(m)) if m > 0.0 => {
            let change = (d as f64 - m) / m * 100.0;
            // Full marks up to +10 %, none at +100 %.
            let score = 1.0 - ((change - 10.0) / 90.0).max(0.0);
            if change > settings.slower_percent {
                recs.push(format!(
                    "duration {} is {:+.0} % against the job's median of {} over {} builds: look at what changed",
                    secs(d),
                    change,
                    secs(m as i64),
                    earlier.len()
                ));
            }
            part(
                "duration",
                Some(score),
                format!(
                    "{} against a median of {} ({:+.0} %)",
                    secs(d),
                    secs(m as i64),
                    change
                ),
            );
        }
        (Some(d), _) => part(
            "duration",
            None,
            format!("{}; no earlier successful build to compare with", secs(d)),
        ),
        (None, _) => part("duration", None, "duration not known yet".into()),
    }

    // CPU and memory against the requests.
    match usage.and_then(|u| u.requests.map(|r| (u, r))) {
        Some((u, req)) => {
            let cpu_used = u.cpu_average.get() as f64;
            let mem_used = u.memory_peak.get() as f64;
            part(
                "cpu_efficiency",
                Some(efficiency_score(cpu_used, req.cpu.get() as f64)),
                format!(
                    "{} average of {} requested ({:.0} %)",
                    u.cpu_average,
                    req.cpu,
                    cpu_used / req.cpu.get().max(1) as f64 * 100.0
                ),
            );
            let oom = u.oom_kills.unwrap_or(0) > 0;
            part(
                "memory_efficiency",
                Some(if oom {
                    0.0
                } else {
                    efficiency_score(mem_used, req.memory.get() as f64)
                }),
                format!(
                    "peak {} of {} requested ({:.0} %){}",
                    u.memory_peak,
                    req.memory,
                    mem_used / req.memory.get().max(1) as f64 * 100.0,
                    if oom { ", OOM-killed" } else { "" }
                ),
            );
            let fits = catalog.round_up(super::rules::Resources {
                cpu: Millicores::new(u.cpu_average.get()),
                memory: Bytes::new((mem_used * 1.15).ceil() as u64),
            });
            if oom {
                let need =
                    (u.memory_peak.get() + 100 * 1024 * 1024).max((mem_used * 1.2).ceil() as u64);
                recs.insert(
                    0,
                    format!(
                        "OOM-killed with a memory request of {} (peak {}): request at least {}",
                        req.memory,
                        u.memory_peak,
                        Bytes::new(need)
                    ),
                );
            } else if fits.requests.memory < req.memory && mem_used < 0.6 * req.memory.get() as f64
            {
                recs.push(format!(
                    "memory request {}, peak {}: use {} ({})",
                    req.memory, u.memory_peak, fits.name, fits.requests.memory
                ));
            } else if mem_used > req.memory.get() as f64 {
                recs.push(format!(
                    "memory peak {} is above the request of {}: the pod may be evicted; use {}",
                    u.memory_peak, req.memory, fits.name
                ));
            }
            if fits.requests.cpu < req.cpu && cpu_used < 0.6 * req.cpu.get() as f64 {
                recs.push(format!(
                    "CPU request {}, used {} on average: {} fits",
                    req.cpu, u.cpu_average, fits.name
                ));
            } else if cpu_used > req.cpu.get() as f64 * 1.2 {
                recs.push(format!(
                    "CPU used {} on average against a request of {}: the build is throttled; a larger profile may be faster",
                    u.cpu_average, req.cpu
                ));
            }
        }
        None => {
            let why = if usage.is_some() {
                "the report names no requests"
            } else {
                "no usage report (autopilot.recordPerformance)"
            };
            part("cpu_efficiency", None, why.into());
            part("memory_efficiency", None, why.into());
        }
    }

    // Result.
    match build.and_then(|b| b.result) {
        Some(r) => {
            let score = match r {
                BuildResult::Success => 1.0,
                BuildResult::Unstable => 0.5,
                _ => 0.0,
            };
            if score < 1.0 {
                recs.push(format!("the build ended {}", r.as_str()));
            }
            part("result", Some(score), r.as_str().to_string());
        }
        None => part("result", None, "not finished".into()),
    }

    let (sum, weights) = parts
        .iter()
        .filter_map(|p| p.score.map(|s| (s * p.weight, p.weight)))
        .fold((0.0, 0.0), |(a, b), (s, w)| (a + s, b + w));
    let score = if weights > 0.0 {
        (sum / weights * 100.0).round() as u32
    } else {
        0
    };
    Analysis {
        score,
        parts,
        recommendations: recs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ControllerName, JobName, Resources};

    fn settings() -> (AnalysisSettings, Catalog) {
        let s = crate::profiles::rules::tests::defaults();
        (s.build_optimization.analysis, s.profiles.catalog())
    }

    fn build(wait_s: i64, dur_s: i64, result: BuildResult) -> BuildRecord {
        let mut b = BuildRecord::empty(
            ControllerName::parse("c").unwrap(),
            JobName::parse("j").unwrap(),
            7,
        );
        b.queue_wait_ms = Some(wait_s * 1000);
        b.duration_ms = Some(dur_s * 1000);
        b.result = Some(result);
        b
    }

    fn perf(cpu: u64, peak_mib: u64, req_cpu: u64, req_mib: u64, ooms: u64) -> PerformanceReport {
        PerformanceReport {
            build_type: "build".into(),
            elapsed_ms: 1000,
            cpu_usage_usec: cpu * 1000,
            cpu_average: Millicores::new(cpu),
            memory_peak: Bytes::mib(peak_mib),
            oom_kills: Some(ooms),
            requests: Some(Resources {
                cpu: Millicores::new(req_cpu),
                memory: Bytes::mib(req_mib),
            }),
            limits: None,
            profile: None,
            stages: vec![],
        }
    }

    #[test]
    fn a_right_sized_quick_green_build_scores_full_marks() {
        let (s, c) = settings();
        let a = analyse(
            Some(&build(5, 100, BuildResult::Success)),
            Some(&perf(400, 400, 500, 512, 0)),
            &[100_000, 98_000, 103_000],
            &s,
            &c,
        );
        assert_eq!(a.score, 100, "{a:?}");
        assert!(a.recommendations.is_empty(), "{a:?}");
    }

    #[test]
    fn an_oversized_slow_build_is_told_what_to_use() {
        let (s, c) = settings();
        let a = analyse(
            Some(&build(5, 140, BuildResult::Success)),
            Some(&perf(120, 310, 1000, 1024, 0)),
            &[100_000, 100_000, 100_000],
            &s,
            &c,
        );
        assert!(a.score < 80, "{a:?}");
        let all = a.recommendations.join("\n");
        assert!(
            all.contains("memory request 1Gi, peak 310Mi: use medium"),
            "{all}"
        );
        assert!(all.contains("+40 % against the job's median"), "{all}");
        assert!(all.contains("CPU request 1, used 120m on average"), "{all}");
    }

    #[test]
    fn an_oom_kill_comes_first_and_missing_parts_are_left_out() {
        let (s, c) = settings();
        let a = analyse(None, Some(&perf(100, 400, 100, 256, 1)), &[], &s, &c);
        assert!(a.recommendations[0].starts_with("OOM-killed"), "{a:?}");
        assert!(
            a.recommendations[0].contains("request at least 500Mi"),
            "{a:?}"
        );
        assert_eq!(a.parts.iter().filter(|p| p.score.is_some()).count(), 2);
        // CPU 100 % of request scores 1, memory 0 (OOM): (0.2 + 0) / 0.4.
        assert_eq!(a.score, 50);
        let long_wait = analyse(
            Some(&build(600, 10, BuildResult::Failure)),
            None,
            &[],
            &s,
            &c,
        );
        assert_eq!(long_wait.score, 0, "{long_wait:?}");
    }
}
