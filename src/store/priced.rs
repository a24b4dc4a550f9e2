//! Finished builds with what they are priced from (for costs, exports and replays), and
//! the pools' recorded replica steps and scale events.

use super::performance::{required, resources};
use super::{Store, StoreError, unsigned};
use crate::domain::Timestamp;
use crate::domain::{Bytes, Millicores};
use crate::profiles::rules::Resources;
use sqlx::Row;
use sqlx::any::AnyRow;

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
    /// report joined, in order of finish, one row at a time (a year of builds is never
    /// held in memory) and one slice of the range per snapshot (`store/slices.rs`).
    pub async fn for_each_finished_build(
        &self,
        from: Timestamp,
        to: Timestamp,
        mut each: impl FnMut(PricedBuild),
    ) -> Result<u64, StoreError> {
        let sql = format!("{FINISHED_BUILDS} ORDER BY b.finished_at");
        let mut n = 0;
        let range = (from.millis(), to.millis());
        self.each_row_sliced(
            &sql,
            range,
            |q| q,
            |row| {
                each(priced_from_row(row)?);
                n += 1;
                Ok(())
            },
        )
        .await?;
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
            let outcome = crate::domain::from_name::<crate::domain::Outcome>(&outcome);
            let col = match outcome.is_some_and(|o| o.took_effect()) {
                true => "desired",
                false => "current_replicas",
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
