//! Trace files: one build per row, `queued_at` (RFC 3339 or epoch seconds), `job`,
//! `label`, `duration_s`; optional `result`, `cpu_millicores`, `memory_mib`.

use crate::domain::Timestamp;
use serde::Deserialize;
use std::path::Path;

/// One build of a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceBuild {
    pub queued_at_ms: i64,
    pub job: String,
    pub label: String,
    pub duration_ms: i64,
    pub result: Option<String>,
    pub cpu_millicores: Option<f64>,
    pub memory_mib: Option<f64>,
}

/// A row that could not be read, with its line.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{path}: cannot read: {detail}")]
    Io { path: String, detail: String },
    #[error("{path}: line {line}: {detail}")]
    Row {
        path: String,
        line: u64,
        detail: String,
    },
    #[error("{path}: line {line}: field `{field}` {detail}")]
    Field {
        path: String,
        line: u64,
        field: &'static str,
        detail: String,
    },
    #[error("{path}: holds no builds")]
    Empty { path: String },
}

#[derive(Debug, Deserialize)]
struct Row {
    queued_at: String,
    job: String,
    label: String,
    duration_s: f64,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    cpu_millicores: Option<f64>,
    #[serde(default)]
    memory_mib: Option<f64>,
}

/// Reads a trace, sorted by queue time. Every bad row is an error naming its line.
pub fn read(path: &Path) -> Result<Vec<TraceBuild>, TraceError> {
    let shown = path.display().to_string();
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| TraceError::Io {
            path: shown.clone(),
            detail: e.to_string(),
        })?;
    let mut builds = Vec::new();
    for record in reader.deserialize::<Row>() {
        let row = record.map_err(|e| TraceError::Row {
            path: shown.clone(),
            line: e.position().map_or(0, |p| p.line()),
            detail: e.to_string(),
        })?;
        let line = builds.len() as u64 + 2;
        let field = |field: &'static str, detail: &str| TraceError::Field {
            path: shown.clone(),
            line,
            field,
            detail: detail.to_string(),
        };
        let queued_at_ms = parse_instant(&row.queued_at)
            .ok_or_else(|| field("queued_at", "is not RFC 3339 nor epoch seconds"))?;
        if !row.duration_s.is_finite() || row.duration_s < 0.0 {
            return Err(field(
                "duration_s",
                "must be a number of seconds, 0 or more",
            ));
        }
        if row.label.is_empty() {
            return Err(field("label", "must not be empty"));
        }
        builds.push(TraceBuild {
            queued_at_ms,
            job: row.job,
            label: row.label,
            duration_ms: (row.duration_s * 1000.0).round() as i64,
            result: row.result.filter(|r| !r.is_empty()),
            cpu_millicores: row.cpu_millicores,
            memory_mib: row.memory_mib,
        });
    }
    if builds.is_empty() {
        return Err(TraceError::Empty { path: shown });
    }
    builds.sort_by_key(|b| b.queued_at_ms);
    Ok(builds)
}

fn parse_instant(raw: &str) -> Option<i64> {
    if let Ok(secs) = raw.parse::<f64>() {
        return secs.is_finite().then(|| (secs * 1000.0).round() as i64);
    }
    Timestamp::parse_str(raw).ok().map(Timestamp::millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_time_forms_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok.csv");
        std::fs::write(&ok, "queued_at,job,label,duration_s,result\n1700000060,b,linux,30,success\n2023-11-14T22:13:20Z,a,linux,12.5,\n").unwrap();
        let builds = read(&ok).unwrap();
        assert_eq!(builds[0].queued_at_ms, 1_700_000_000_000);
        assert_eq!(builds[0].duration_ms, 12_500);
        assert_eq!(builds[0].result, None);
        assert_eq!(builds[1].result.as_deref(), Some("success"));
        let bad = dir.path().join("bad.csv");
        std::fs::write(
            &bad,
            "queued_at,job,label,duration_s\n1700000000,a,linux,5\nsoon,a,linux,5\n",
        )
        .unwrap();
        let err = read(&bad).unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("queued_at"), "{err}");
        let neg = dir.path().join("neg.csv");
        std::fs::write(
            &neg,
            "queued_at,job,label,duration_s\n1700000000,a,linux,-5\n",
        )
        .unwrap();
        assert!(read(&neg).unwrap_err().to_string().contains("duration_s"));
    }
}
