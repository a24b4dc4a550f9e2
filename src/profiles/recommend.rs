//! Learned per-job sizes, after the Kubernetes VPA recommender: CPU = the p90 of observed
//! usage, memory = the p90 of peaks plus a 15 % margin, floors 25m / 250Mi, older samples
//! weighing less (exponential decay with a half-life), and after an OOM kill memory of at
//! least max(peak + 100Mi, peak x 1.2). Rounded up to the profile ladder unless exact.

use super::rules::{Catalog, Resources};
use super::{Bytes, Millicores};
use crate::domain::Timestamp;
use serde::Serialize;
use std::time::Duration;

/// What one build used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at: Timestamp,
    /// Average CPU over the build.
    pub cpu: Millicores,
    /// Memory peak.
    pub memory_peak: Bytes,
    pub oom_killed: bool,
}

/// The recommender's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RecommendSettings {
    /// Fewer samples than this: the rules decide.
    pub min_samples: usize,
    pub half_life: Duration,
    pub cpu_percentile: f64,
    pub memory_percentile: f64,
    pub memory_margin: f64,
    pub cpu_floor: Millicores,
    pub memory_floor: Bytes,
    /// Exact sizes instead of the ladder's.
    pub exact: bool,
}

impl Default for RecommendSettings {
    fn default() -> Self {
        Self {
            min_samples: 5,
            half_life: Duration::from_secs(24 * 3600),
            cpu_percentile: 0.9,
            memory_percentile: 0.9,
            memory_margin: 0.15,
            cpu_floor: Millicores::new(25),
            memory_floor: Bytes::mib(250),
            exact: false,
        }
    }
}

/// A learned size and how it was reached.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    pub requests: Resources,
    /// The ladder's profile the size was rounded up to (`None` when exact).
    pub profile: Option<String>,
    pub samples: usize,
    pub reason: String,
}

/// The smallest value whose cumulative weight reaches `p` of the total.
fn weighted_percentile(mut points: Vec<(u64, f64)>, p: f64) -> u64 {
    points.sort_by_key(|x| x.0);
    let total: f64 = points.iter().map(|x| x.1).sum();
    let mut acc = 0.0;
    for (v, w) in &points {
        acc += w;
        if acc >= p * total - 1e-12 {
            return *v;
        }
    }
    points.last().map_or(0, |x| x.0)
}

/// The learned size, or `None` with fewer than `min_samples` samples.
pub fn recommend(
    samples: &[Sample],
    now: Timestamp,
    settings: &RecommendSettings,
    catalog: &Catalog,
) -> Option<Recommendation> {
    if samples.len() < settings.min_samples.max(1) {
        return None;
    }
    let half_life_ms = settings.half_life.as_millis().max(1) as f64;
    let weight =
        |s: &Sample| 0.5f64.powf(((now.millis() - s.at.millis()).max(0)) as f64 / half_life_ms);
    let cpu = weighted_percentile(
        samples.iter().map(|s| (s.cpu.get(), weight(s))).collect(),
        settings.cpu_percentile,
    );
    let peak = weighted_percentile(
        samples
            .iter()
            .map(|s| (s.memory_peak.get(), weight(s)))
            .collect(),
        settings.memory_percentile,
    );
    let mut memory = (peak as f64 * (1.0 + settings.memory_margin)).ceil() as u64;
    let mut reason = format!(
        "p{:.0} CPU {} and p{:.0} memory peak {} + {:.0} % over {} builds",
        settings.cpu_percentile * 100.0,
        Millicores::new(cpu),
        settings.memory_percentile * 100.0,
        Bytes::new(peak),
        settings.memory_margin * 100.0,
        samples.len()
    );
    if let Some(oom_peak) = samples
        .iter()
        .filter(|s| s.oom_killed)
        .map(|s| s.memory_peak.get())
        .max()
    {
        let bumped = (oom_peak + 100 * 1024 * 1024).max((oom_peak as f64 * 1.2).ceil() as u64);
        if bumped > memory {
            memory = bumped;
            reason.push_str(&format!(
                "; OOM-killed at {}: memory at least {}",
                Bytes::new(oom_peak),
                Bytes::new(bumped)
            ));
        }
    }
    let requests = Resources {
        cpu: Millicores::new(cpu.max(settings.cpu_floor.get())),
        memory: Bytes::new(memory.max(settings.memory_floor.get())),
    };
    if settings.exact {
        return Some(Recommendation {
            requests,
            profile: None,
            samples: samples.len(),
            reason,
        });
    }
    let profile = catalog.round_up(requests);
    reason.push_str(&format!("; rounded up to {}", profile.name));
    Some(Recommendation {
        requests: profile.requests,
        profile: Some(profile.name.clone()),
        samples: samples.len(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        crate::profiles::rules::tests::defaults().profiles.catalog()
    }

    const H: i64 = 3_600_000;

    fn at(h: i64) -> Timestamp {
        Timestamp::from_millis(1_700_000_000_000 + h * H).unwrap()
    }

    fn s(h: i64, cpu: u64, mib: u64) -> Sample {
        Sample {
            at: at(h),
            cpu: Millicores::new(cpu),
            memory_peak: Bytes::mib(mib),
            oom_killed: false,
        }
    }

    #[test]
    fn too_few_samples_leave_it_to_the_rules() {
        let few: Vec<Sample> = (0..4).map(|i| s(i, 100, 300)).collect();
        assert!(recommend(&few, at(5), &RecommendSettings::default(), &catalog()).is_none());
    }

    #[test]
    fn twenty_builds_peaking_at_300mi_get_medium() {
        let builds: Vec<Sample> = (0..20)
            .map(|i| s(i, 200 + (i as u64 % 3) * 50, 280 + (i as u64 % 2) * 20))
            .collect();
        let r = recommend(&builds, at(20), &RecommendSettings::default(), &catalog()).unwrap();
        // p90 peak 300Mi x 1.15 = 345Mi: above light's 256Mi, within medium's 512Mi.
        assert_eq!(r.profile.as_deref(), Some("medium"), "{}", r.reason);
        let exact = recommend(
            &builds,
            at(20),
            &RecommendSettings {
                exact: true,
                ..Default::default()
            },
            &catalog(),
        )
        .unwrap();
        assert_eq!(exact.requests.memory, Bytes::mib(345));
        assert_eq!(exact.requests.cpu, Millicores::new(300));
    }

    #[test]
    fn old_samples_weigh_less() {
        // Ten old heavy builds, five recent light ones: with a 24 h half-life the old ones
        // (a week back) barely count.
        let mut builds: Vec<Sample> = (0..10).map(|i| s(i, 1800, 1800)).collect();
        builds.extend((0..5).map(|i| s(24 * 7 + i, 100, 200)));
        let settings = RecommendSettings {
            exact: true,
            ..Default::default()
        };
        let r = recommend(&builds, at(24 * 7 + 5), &settings, &catalog()).unwrap();
        assert_eq!(r.requests.cpu, Millicores::new(100), "{}", r.reason);
        // Without decay (a huge half-life) the heavy past dominates the p90.
        let flat = RecommendSettings {
            half_life: Duration::from_secs(10 * 365 * 86_400),
            ..settings
        };
        assert_eq!(
            recommend(&builds, at(24 * 7 + 5), &flat, &catalog())
                .unwrap()
                .requests
                .cpu,
            Millicores::new(1800)
        );
    }

    #[test]
    fn an_oom_kill_bumps_memory_and_floors_hold() {
        let mut builds: Vec<Sample> = (0..6).map(|i| s(i, 10, 100)).collect();
        builds[5].oom_killed = true;
        builds[5].memory_peak = Bytes::mib(400);
        let settings = RecommendSettings {
            exact: true,
            ..Default::default()
        };
        let r = recommend(&builds, at(6), &settings, &catalog()).unwrap();
        // max(400 + 100, 400 x 1.2) = 500Mi.
        assert_eq!(r.requests.memory, Bytes::mib(500), "{}", r.reason);
        assert_eq!(r.requests.cpu, Millicores::new(25), "the CPU floor");
        let tiny: Vec<Sample> = (0..6).map(|i| s(i, 1, 10)).collect();
        assert_eq!(
            recommend(&tiny, at(6), &settings, &catalog())
                .unwrap()
                .requests
                .memory,
            Bytes::mib(250)
        );
    }
}
