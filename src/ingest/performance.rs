//! A build's own report of what it used (`POST .../performance`, sent by
//! `autopilot.recordPerformance()`): the build container's cgroup v2 files as read with
//! `cat`, or the numbers already taken from them, plus the requests the build ran with and
//! its stage timings. No I/O here.

use super::{IngestError, parse_json};
use crate::domain::{Bytes, Millicores, Resources};
use serde::Deserialize;

pub use crate::domain::{PerformanceReport, StageTiming};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(rename = "type")]
    build_type: String,
    elapsed_ms: u64,
    #[serde(default)]
    cgroup: Option<RawCgroup>,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(default)]
    requests: Option<Resources>,
    #[serde(default)]
    limits: Option<Resources>,
    #[serde(default)]
    profile: Option<String>,
    #[serde(default)]
    stages: Vec<StageTiming>,
}

/// The files' contents, as `cat` printed them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCgroup {
    #[serde(rename = "cpu.stat")]
    cpu_stat: String,
    #[serde(rename = "memory.peak")]
    memory_peak: String,
    #[serde(rename = "memory.events", default)]
    memory_events: Option<String>,
}

/// The numbers, for reporters that read the files themselves.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUsage {
    cpu_usage_usec: u64,
    memory_peak_bytes: u64,
    #[serde(default)]
    oom_kills: Option<u64>,
}

/// The value of `key` in a flat-keyed cgroup file (`key value` per line).
fn keyed(field: &str, text: &str, key: &str) -> Result<u64, IngestError> {
    let line = text
        .lines()
        .find_map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next() == Some(key)).then(|| parts.next())
        })
        .ok_or_else(|| IngestError::invalid(field, format!("has no `{key}` line")))?;
    line.and_then(|v| v.parse().ok())
        .ok_or_else(|| IngestError::invalid(field, format!("`{key}` is not a whole number")))
}

/// Parses a performance report.
/// The most CPUs a build pod reports using.
const MAX_CPUS: u64 = 1024;
/// The most memory a build pod reports, in bytes (16 TiB).
const MAX_MEMORY: u64 = 16 << 40;

pub fn parse(body: &[u8]) -> Result<PerformanceReport, IngestError> {
    let raw: Raw = parse_json(body)?;
    let build_type = crate::profiles::build_type(&raw.build_type)
        .map_err(|reason| IngestError::invalid("type", reason))?;
    if raw.elapsed_ms == 0 {
        return Err(IngestError::invalid("elapsed_ms", "must be above 0"));
    }
    let (cpu_usage_usec, memory_peak, oom_kills) = match (raw.cgroup, raw.usage) {
        (Some(c), None) => {
            let cpu = keyed("cgroup.cpu.stat", &c.cpu_stat, "usage_usec")?;
            let peak = c.memory_peak.trim().parse::<u64>().map_err(|_| {
                IngestError::invalid("cgroup.memory.peak", "must be a whole number of bytes")
            })?;
            let ooms = c
                .memory_events
                .as_deref()
                .map(|t| keyed("cgroup.memory.events", t, "oom_kill"))
                .transpose()?;
            (cpu, peak, ooms)
        }
        (None, Some(u)) => (u.cpu_usage_usec, u.memory_peak_bytes, u.oom_kills),
        (Some(_), Some(_)) => {
            return Err(IngestError::invalid(
                "usage",
                "give either `cgroup` (the files) or `usage` (the numbers), not both",
            ));
        }
        (None, None) => {
            return Err(IngestError::invalid(
                "cgroup",
                "is required (or `usage`): the build container's cpu.stat and memory.peak",
            ));
        }
    };
    if let Some(profile) = &raw.profile
        && (profile.trim().is_empty() || profile.len() > 64)
    {
        return Err(IngestError::invalid(
            "profile",
            "must be 1 to 64 characters",
        ));
    }
    for (i, s) in raw.stages.iter().enumerate() {
        if s.name.trim().is_empty() || s.name.len() > 200 {
            return Err(IngestError::invalid(
                &format!("stages[{i}].name"),
                "must be 1 to 200 characters",
            ));
        }
    }
    if raw.stages.len() > 500 {
        return Err(IngestError::invalid("stages", "at most 500 stages"));
    }
    // What a build pod can report: a year of wall time, 1,024 CPUs busy all of it, 16 TiB
    // of memory; more would skew what the service learns from the reports.
    let max_ms = super::limits::MAX_SPAN_MS as u64;
    if raw.elapsed_ms > max_ms {
        return Err(IngestError::invalid(
            "elapsed_ms",
            format!("must be at most {max_ms} (a year)"),
        ));
    }
    for (i, s) in raw.stages.iter().enumerate() {
        if s.duration_ms > max_ms {
            return Err(IngestError::invalid(
                &format!("stages[{i}].duration_ms"),
                "must be at most a year",
            ));
        }
    }
    if cpu_usage_usec > raw.elapsed_ms.saturating_mul(1000 * MAX_CPUS) {
        return Err(IngestError::invalid(
            "usage.cpu_usage_usec",
            format!("is more than {MAX_CPUS} CPUs busy for the whole build"),
        ));
    }
    if memory_peak > MAX_MEMORY {
        return Err(IngestError::invalid(
            "usage.memory_peak_bytes",
            "is more than 16 TiB",
        ));
    }
    for (field, r) in [("requests", &raw.requests), ("limits", &raw.limits)] {
        if let Some(r) = r
            && (r.cpu.get() > MAX_CPUS * 1000 || r.memory.get() > MAX_MEMORY)
        {
            return Err(IngestError::invalid(
                field,
                format!("must be at most {MAX_CPUS} CPUs and 16 TiB"),
            ));
        }
    }
    Ok(PerformanceReport {
        build_type,
        elapsed_ms: raw.elapsed_ms,
        cpu_usage_usec,
        // usec per ms of wall time = millicores.
        cpu_average: Millicores::new(cpu_usage_usec.div_ceil(raw.elapsed_ms)),
        memory_peak: Bytes::new(memory_peak),
        oom_kills,
        requests: raw.requests,
        limits: raw.limits,
        profile: raw.profile,
        stages: raw.stages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: serde_json::Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    #[test]
    fn cgroup_files_as_cat_prints_them() {
        let r = parse(&body(json!({
            "type": "Build",
            "elapsed_ms": 120_000,
            "cgroup": {
                "cpu.stat": "usage_usec 30000000\nuser_usec 25000000\nsystem_usec 5000000\nnr_periods 0\n",
                "memory.peak": "314572800\n",
                "memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n"
            },
            "requests": {"cpu": "500m", "memory": "512Mi"},
            "profile": "medium",
            "stages": [{"name": "Compile", "duration_ms": 60000}]
        })))
        .unwrap();
        assert_eq!(r.build_type, "build");
        assert_eq!(r.cpu_average, Millicores::new(250));
        assert_eq!(r.memory_peak, Bytes::mib(300));
        assert_eq!(r.oom_kills, Some(1));
        assert_eq!(r.requests.unwrap().memory, Bytes::mib(512));
    }

    #[test]
    fn numbers_instead_of_files_and_no_events_file_is_unknown_not_zero() {
        let r = parse(&body(json!({
            "type": "test", "elapsed_ms": 1000,
            "usage": {"cpu_usage_usec": 1500, "memory_peak_bytes": 1048576}
        })))
        .unwrap();
        assert_eq!(r.cpu_average, Millicores::new(2));
        assert_eq!(r.oom_kills, None);
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases = [
            (
                json!({"type": "b", "elapsed_ms": 0, "usage": {"cpu_usage_usec": 1, "memory_peak_bytes": 1}}),
                "elapsed_ms",
            ),
            (
                json!({"type": "b c", "elapsed_ms": 1, "usage": {"cpu_usage_usec": 1, "memory_peak_bytes": 1}}),
                "type",
            ),
            (json!({"type": "b", "elapsed_ms": 1}), "cgroup"),
            (
                json!({"type": "b", "elapsed_ms": 1, "cgroup": {"cpu.stat": "user_usec 1", "memory.peak": "1"}}),
                "cgroup.cpu.stat",
            ),
            (
                json!({"type": "b", "elapsed_ms": 1, "cgroup": {"cpu.stat": "usage_usec x", "memory.peak": "1"}}),
                "cgroup.cpu.stat",
            ),
            (
                json!({"type": "b", "elapsed_ms": 1, "cgroup": {"cpu.stat": "usage_usec 1", "memory.peak": "max"}}),
                "cgroup.memory.peak",
            ),
            (
                json!({"type": "b", "elapsed_ms": 1, "usage": {"cpu_usage_usec": 1, "memory_peak_bytes": 1}, "requests": {"cpu": "lots", "memory": "1Gi"}}),
                "requests.cpu",
            ),
            (
                json!({"type": "b", "elapsed_ms": 1, "usage": {"cpu_usage_usec": 1, "memory_peak_bytes": 1}, "extra": 1}),
                "extra",
            ),
            (
                json!({"type": "b", "elapsed_ms": -5, "usage": {"cpu_usage_usec": 1, "memory_peak_bytes": 1}}),
                "elapsed_ms",
            ),
        ];
        for (payload, field) in cases {
            match parse(&body(payload.clone())) {
                Err(IngestError::Invalid { field: f, .. }) => assert_eq!(f, field, "{payload}"),
                other => panic!("{payload}: {other:?}"),
            }
        }
        assert!(matches!(parse(b"{"), Err(IngestError::Malformed(_))));
    }
}
