//! Build performance reports and the per-job history the profiles learn from.

use super::{Store, StoreError, corrupt, instant, unsigned};
use crate::domain::{ControllerName, JobName, Timestamp};
use crate::ingest::performance::{PerformanceReport, StageTiming};
use crate::profiles::recommend::Sample;
use crate::profiles::rules::Resources;
use crate::profiles::{Bytes, Millicores};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

/// A report as stored, with when it arrived.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StoredPerformance {
    #[schema(value_type = i64)]
    pub recorded_at: Timestamp,
    #[serde(flatten)]
    pub report: PerformanceReport,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn resources(
    row: &AnyRow,
    cpu: &str,
    memory: &str,
) -> Result<Option<Resources>, StoreError> {
    match (unsigned(row, cpu)?, unsigned(row, memory)?) {
        (Some(c), Some(m)) => Ok(Some(Resources {
            cpu: Millicores::new(c),
            memory: Bytes::new(m),
        })),
        (None, None) => Ok(None),
        _ => Err(corrupt(cpu, "one of the pair is null")),
    }
}

pub(super) fn required(row: &AnyRow, col: &str) -> Result<u64, StoreError> {
    unsigned(row, col)?.ok_or_else(|| corrupt(col, "null"))
}

fn from_row(row: &AnyRow) -> Result<StoredPerformance, StoreError> {
    let stages: String = row.try_get("stages")?;
    Ok(StoredPerformance {
        recorded_at: instant(row, "recorded_at")?.ok_or_else(|| corrupt("recorded_at", "null"))?,
        report: PerformanceReport {
            build_type: row.try_get("build_type")?,
            elapsed_ms: required(row, "elapsed_ms")?,
            cpu_usage_usec: required(row, "cpu_usage_usec")?,
            cpu_average: Millicores::new(required(row, "cpu_average_m")?),
            memory_peak: Bytes::new(required(row, "memory_peak_bytes")?),
            oom_kills: unsigned(row, "oom_kills")?,
            requests: resources(row, "request_cpu_m", "request_memory_bytes")?,
            limits: resources(row, "limit_cpu_m", "limit_memory_bytes")?,
            profile: row.try_get("profile")?,
            stages: serde_json::from_str::<Vec<StageTiming>>(&stages)
                .map_err(|e| corrupt("stages", e))?,
        },
    })
}

impl Store {
    /// Stores a build's report, replacing an earlier one of the same build.
    pub async fn upsert_performance(
        &self,
        controller: &ControllerName,
        job: &JobName,
        number: u64,
        report: &PerformanceReport,
        recorded_at: Timestamp,
    ) -> Result<(), StoreError> {
        let stages = serde_json::to_string(&report.stages).map_err(|e| corrupt("stages", e))?;
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO build_performance (controller, job, number, build_type, recorded_at, \
             elapsed_ms, cpu_usage_usec, cpu_average_m, memory_peak_bytes, oom_kills, \
             request_cpu_m, request_memory_bytes, limit_cpu_m, limit_memory_bytes, profile, stages) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             ON CONFLICT (controller, job, number) DO UPDATE SET \
             build_type = excluded.build_type, recorded_at = excluded.recorded_at, \
             elapsed_ms = excluded.elapsed_ms, cpu_usage_usec = excluded.cpu_usage_usec, \
             cpu_average_m = excluded.cpu_average_m, memory_peak_bytes = excluded.memory_peak_bytes, \
             oom_kills = excluded.oom_kills, request_cpu_m = excluded.request_cpu_m, \
             request_memory_bytes = excluded.request_memory_bytes, limit_cpu_m = excluded.limit_cpu_m, \
             limit_memory_bytes = excluded.limit_memory_bytes, profile = excluded.profile, \
             stages = excluded.stages",
        )
        .bind(controller.as_str())
        .bind(job.as_str())
        .bind(to_i64(number))
        .bind(report.build_type.as_str())
        .bind(recorded_at.millis())
        .bind(to_i64(report.elapsed_ms))
        .bind(to_i64(report.cpu_usage_usec))
        .bind(to_i64(report.cpu_average.get()))
        .bind(to_i64(report.memory_peak.get()))
        .bind(report.oom_kills.map(to_i64))
        .bind(report.requests.map(|r| to_i64(r.cpu.get())))
        .bind(report.requests.map(|r| to_i64(r.memory.get())))
        .bind(report.limits.map(|r| to_i64(r.cpu.get())))
        .bind(report.limits.map(|r| to_i64(r.memory.get())))
        .bind(report.profile.as_deref())
        .bind(stages)
        .execute(&mut *tx)
        .await?;
        // The build's hour in the report rollups counts its usage anew.
        let finished: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT finished_at FROM builds WHERE controller = $1 AND job = $2 AND number = $3",
        )
        .bind(controller.as_str())
        .bind(job.as_str())
        .bind(to_i64(number))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(at) = finished
            .flatten()
            .and_then(|ms| Timestamp::from_millis(ms).ok())
        {
            super::rollups::mark_stale(&mut tx, &[at]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// One build's report.
    pub async fn get_performance(
        &self,
        controller: &ControllerName,
        job: &JobName,
        number: u64,
    ) -> Result<Option<StoredPerformance>, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM build_performance WHERE controller = $1 AND job = $2 AND number = $3",
        )
        .bind(controller.as_str())
        .bind(job.as_str())
        .bind(to_i64(number))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The most recent `limit` reports of a job and build type, as recommender samples.
    pub async fn usage_samples(
        &self,
        controller: &ControllerName,
        job: &JobName,
        build_type: &str,
        limit: u32,
    ) -> Result<Vec<Sample>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT recorded_at, cpu_average_m, memory_peak_bytes, oom_kills FROM build_performance \
             WHERE controller = $1 AND job = $2 AND build_type = $3 \
             ORDER BY recorded_at DESC LIMIT {limit}"
        )))
        .bind(controller.as_str())
        .bind(job.as_str())
        .bind(build_type)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Sample {
                    at: instant(row, "recorded_at")?
                        .ok_or_else(|| corrupt("recorded_at", "null"))?,
                    cpu: Millicores::new(required(row, "cpu_average_m")?),
                    memory_peak: Bytes::new(required(row, "memory_peak_bytes")?),
                    oom_killed: unsigned(row, "oom_kills")?.is_some_and(|n| n > 0),
                })
            })
            .collect()
    }

    /// Durations (ms) of a job's successful builds numbered below `before`, newest
    /// first, at most `limit`.
    pub async fn earlier_durations(
        &self,
        controller: &ControllerName,
        job: &JobName,
        before: u64,
        limit: u32,
    ) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT duration_ms FROM builds WHERE controller = $1 AND job = $2 AND number < $3 \
             AND result = 'SUCCESS' AND duration_ms IS NOT NULL ORDER BY number DESC LIMIT {limit}"
        )))
        .bind(controller.as_str())
        .bind(job.as_str())
        .bind(to_i64(before))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok(row.try_get::<i64, _>("duration_ms")?))
            .collect()
    }

    /// The label of the job's most recent build that names one; with `webhooks_only`, of
    /// the most recent a webhook told of (a backfill or the repair found the others).
    pub async fn latest_label(
        &self,
        controller: &ControllerName,
        job: &JobName,
        webhooks_only: bool,
    ) -> Result<Option<String>, StoreError> {
        let found_by = if webhooks_only {
            "AND (found_by IS NULL OR found_by = 'webhook') "
        } else {
            ""
        };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT label FROM builds WHERE controller = $1 AND job = $2 AND label IS NOT NULL \
             {found_by}ORDER BY sort_at DESC, number DESC LIMIT 1"
        )))
        .bind(controller.as_str())
        .bind(job.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => r.try_get("label")?,
            None => None,
        })
    }
}
