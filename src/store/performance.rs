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

fn resources(row: &AnyRow, cpu: &str, memory: &str) -> Result<Option<Resources>, StoreError> {
    match (unsigned(row, cpu)?, unsigned(row, memory)?) {
        (Some(c), Some(m)) => Ok(Some(Resources {
            cpu: Millicores::new(c),
            memory: Bytes::new(m),
        })),
        (None, None) => Ok(None),
        _ => Err(corrupt(cpu, "one of the pair is null")),
    }
}

fn required(row: &AnyRow, col: &str) -> Result<u64, StoreError> {
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

    /// The label of the job's most recent build that names one.
    pub async fn latest_label(
        &self,
        controller: &ControllerName,
        job: &JobName,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT label FROM builds WHERE controller = $1 AND job = $2 AND label IS NOT NULL \
             ORDER BY sort_at DESC, number DESC LIMIT 1",
        )
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

/// A finished build with what it is priced from.
#[derive(Debug, Clone, PartialEq)]
pub struct PricedBuild {
    pub controller: String,
    pub job: String,
    pub number: u64,
    pub label: Option<String>,
    pub duration_ms: i64,
    pub finished_at: i64,
    pub queue_wait_ms: Option<i64>,
    pub result: Option<String>,
    /// From the build's usage report, when it sent one.
    pub requests: Option<Resources>,
    /// The build type its report named.
    pub build_type: Option<String>,
    pub usage: Option<crate::cost::BuildUsage>,
}

impl Store {
    /// Calls `each` for every finished build whose finish is in `[from, to)`, with its usage
    /// report joined, one row at a time (a year of builds is never held in memory).
    pub async fn for_each_finished_build(
        &self,
        from: Timestamp,
        to: Timestamp,
        mut each: impl FnMut(PricedBuild),
    ) -> Result<u64, StoreError> {
        use futures_util::TryStreamExt;
        let mut rows = finished_builds(from, to).fetch(&self.pool);
        let mut n = 0;
        while let Some(row) = rows.try_next().await? {
            each(priced_from_row(&row)?);
            n += 1;
        }
        Ok(n)
    }

    /// Up to `limit` finished builds of `[from, to)` after `after` (none: from the
    /// start), in export order: finish, controller, job, number. A page is read whole and
    /// its connection given back before the caller does anything with it, so a slow
    /// consumer never holds a connection.
    pub async fn finished_builds_page(
        &self,
        from: Timestamp,
        to: Timestamp,
        after: Option<&PricedBuild>,
        limit: u32,
    ) -> Result<Vec<PricedBuild>, StoreError> {
        let order = "ORDER BY b.finished_at, b.controller, b.job, b.number";
        let rows = match after {
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{FINISHED_BUILDS} {order} LIMIT {limit}"
                )))
                .bind(from.millis())
                .bind(to.millis())
                .fetch_all(&self.pool)
                .await?
            }
            Some(last) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{FINISHED_BUILDS} AND (b.finished_at > $3 OR (b.finished_at = $3 AND \
                     (b.controller > $4 OR (b.controller = $4 AND (b.job > $5 OR \
                     (b.job = $5 AND b.number > $6)))))) {order} LIMIT {limit}"
                )))
                .bind(from.millis())
                .bind(to.millis())
                .bind(last.finished_at)
                .bind(last.controller.as_str())
                .bind(last.job.as_str())
                .bind(last.number as i64)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(priced_from_row).collect()
    }

    /// A pool's replica count over `[from, to)`: the count in force at `from` (from the
    /// last decision before it, `None` when there is none) and each change after, from the
    /// recorded decisions. A decision that was applied, unchanged or dry-run set `desired`;
    /// a held or failed one left `current`.
    pub async fn replica_steps(
        &self,
        pool: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<(Option<u32>, Vec<(i64, u32)>), StoreError> {
        let level = |row: &AnyRow| -> Result<Option<u32>, StoreError> {
            let outcome: String = row.try_get("outcome")?;
            let col = match outcome.as_str() {
                "applied" | "unchanged" | "dry-run" => "desired",
                _ => "current_replicas",
            };
            Ok(unsigned(row, col)?.map(|v| u32::try_from(v).unwrap_or(u32::MAX)))
        };
        let before = sqlx::query(
            "SELECT outcome, desired, current_replicas FROM scaling_decisions \
             WHERE pool = $1 AND decided_at < $2 ORDER BY decided_at DESC, seq DESC LIMIT 1",
        )
        .bind(pool)
        .bind(from.millis())
        .fetch_optional(&self.pool)
        .await?;
        let before = match before {
            Some(row) => level(&row)?,
            None => None,
        };
        // Only the decisions that change the level come back (LAG over the non-null
        // levels): a month of 10 s reconciles is a few hundred rows, not a quarter million.
        let rows = sqlx::query(
            "SELECT decided_at, lvl FROM ( \
               SELECT decided_at, seq, lvl, LAG(lvl) OVER (ORDER BY decided_at, seq) AS prev FROM ( \
                 SELECT decided_at, seq, \
                   CASE WHEN outcome IN ('applied', 'unchanged', 'dry-run') THEN desired \
                        ELSE current_replicas END AS lvl \
                 FROM scaling_decisions WHERE pool = $1 AND decided_at >= $2 AND decided_at < $3 \
               ) l WHERE lvl IS NOT NULL \
             ) c WHERE prev IS NULL OR prev <> lvl ORDER BY decided_at, seq",
        )
        .bind(pool)
        .bind(from.millis())
        .bind(to.millis())
        .fetch_all(&self.pool)
        .await?;
        let mut steps: Vec<(i64, u32)> = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(l) = unsigned(row, "lvl")? {
                let l = u32::try_from(l).unwrap_or(u32::MAX);
                let at: i64 = row.try_get("decided_at")?;
                if steps.last().is_none_or(|(_, prev)| *prev != l) {
                    steps.push((at, l));
                }
            }
        }
        Ok((before, steps))
    }

    /// Scale changes of a pool decided in `[from, to)`: (ups, downs), counting decisions
    /// applied (or, in dry-run, that would have been) whose replicas differ from before.
    pub async fn scale_events(
        &self,
        pool: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<(u64, u64), StoreError> {
        let row = sqlx::query(
            "SELECT \
             SUM(CASE WHEN desired > current_replicas THEN 1 ELSE 0 END) AS ups, \
             SUM(CASE WHEN desired < current_replicas THEN 1 ELSE 0 END) AS downs \
             FROM scaling_decisions WHERE pool = $1 AND decided_at >= $2 AND decided_at < $3 \
             AND outcome IN ('applied', 'dry-run')",
        )
        .bind(pool)
        .bind(from.millis())
        .bind(to.millis())
        .fetch_one(&self.pool)
        .await?;
        Ok((
            unsigned(&row, "ups")?.unwrap_or(0),
            unsigned(&row, "downs")?.unwrap_or(0),
        ))
    }
}

/// Finished builds of `[from, to)` (`$1`, `$2`) with their usage reports joined: the
/// columns [`priced_from_row`] reads.
pub(super) const FINISHED_BUILDS: &str = "SELECT b.controller, b.job, b.number, b.label, \
     b.duration_ms, b.finished_at, b.queue_wait_ms, b.result, p.request_cpu_m, \
     p.request_memory_bytes, p.cpu_average_m, p.memory_peak_bytes, p.build_type \
     FROM builds b LEFT JOIN build_performance p \
     ON p.controller = b.controller AND p.job = b.job AND p.number = b.number \
     WHERE b.finished_at >= $1 AND b.finished_at < $2 AND b.duration_ms IS NOT NULL";

fn finished_builds<'q>(
    from: Timestamp,
    to: Timestamp,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "{FINISHED_BUILDS} ORDER BY b.finished_at"
    )))
    .bind(from.millis())
    .bind(to.millis())
}

pub(super) fn priced_from_row(row: &AnyRow) -> Result<PricedBuild, StoreError> {
    let usage = match (
        unsigned(row, "cpu_average_m")?,
        unsigned(row, "memory_peak_bytes")?,
    ) {
        (Some(c), Some(m)) => Some(crate::cost::BuildUsage {
            cpu: Millicores::new(c),
            memory_peak: Bytes::new(m),
        }),
        _ => None,
    };
    Ok(PricedBuild {
        controller: row.try_get("controller")?,
        job: row.try_get("job")?,
        number: required(row, "number")?,
        label: row.try_get("label")?,
        duration_ms: row.try_get("duration_ms")?,
        finished_at: row.try_get("finished_at")?,
        queue_wait_ms: row.try_get("queue_wait_ms")?,
        result: row.try_get("result")?,
        requests: resources(row, "request_cpu_m", "request_memory_bytes")?,
        build_type: row.try_get("build_type")?,
        usage,
    })
}
