//! Aggregates for costs and reports, computed by the database: a range of a million
//! builds comes back as a few hundred groups, histograms and medians.

use super::{Backend, Store, StoreError, corrupt, unsigned};
use crate::domain::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;

/// Builds of one controller, job, label and result, on one side of the split.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildGroup {
    pub controller: String,
    pub job: String,
    pub label: Option<String>,
    pub result: Option<String>,
    /// Finished at or after the split (the range asked for), not before it.
    pub current: bool,
    pub builds: u64,
    pub duration_ms: i64,
    pub wait_ms: i64,
    /// Builds with a known queue wait.
    pub waits: u64,
    /// Builds without a usage report, and their summed duration.
    pub unreported: u64,
    pub unreported_ms: i64,
    /// Over reported builds: sum of duration (ms) x max(requested, used) millicores.
    pub cpu_m_ms: f64,
    /// Over reported builds: sum of duration (ms) x max(requested, peak) bytes.
    pub memory_b_ms: f64,
}

/// One day of the range: builds, duration sum, wait sum and waits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DaySums {
    /// Days since the range's start.
    pub day: i64,
    pub builds: u64,
    pub duration_ms: f64,
    pub wait_ms: f64,
    pub waits: u64,
    /// Of the builds, those a backfill found, and those only the repair found.
    pub backfilled: u64,
    pub repaired: u64,
}

/// The median duration of a job's successful builds on one side of the split.
#[derive(Debug, Clone, PartialEq)]
pub struct JobMedian {
    pub controller: String,
    pub job: String,
    pub current: bool,
    pub median_ms: f64,
    pub builds: u64,
}

/// Which duration a histogram counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Duration,
    QueueWait,
}

fn count(row: &AnyRow, col: &str) -> Result<u64, StoreError> {
    Ok(unsigned(row, col)?.unwrap_or(0))
}

/// The `cur` column: 1 for the range asked for, 0 for the one before, decoded whichever
/// integer width the backend gives a CASE of literals.
fn side(row: &AnyRow) -> Result<bool, StoreError> {
    let v = row
        .try_get::<i32, _>("cur")
        .map(i64::from)
        .or_else(|_| row.try_get::<i64, _>("cur"))?;
    Ok(v == 1)
}

fn float(row: &AnyRow, col: &str) -> Result<f64, StoreError> {
    Ok(row.try_get::<Option<f64>, _>(col)?.unwrap_or(0.0))
}

impl Store {
    /// The larger of two SQL expressions, as each backend spells it.
    fn greatest(&self, a: &str, b: &str) -> String {
        match self.backend {
            Backend::Sqlite => format!("MAX({a}, {b})"),
            Backend::Postgres => format!("GREATEST({a}, {b})"),
        }
    }

    /// Finished builds of `[from, to)` grouped by controller, job, label, result and side
    /// of `split`, with the sums costs and reports need.
    pub async fn build_groups(
        &self,
        from: Timestamp,
        split: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<BuildGroup>, StoreError> {
        let cpu = self.greatest("COALESCE(p.request_cpu_m, 0)", "p.cpu_average_m");
        let mem = self.greatest("COALESCE(p.request_memory_bytes, 0)", "p.memory_peak_bytes");
        let sql = format!(
            "SELECT b.controller, b.job, b.label, b.result, \
             CASE WHEN b.finished_at >= $2 THEN 1 ELSE 0 END AS cur, \
             COUNT(*) AS builds, \
             CAST(SUM(CAST(b.duration_ms AS DOUBLE PRECISION)) AS DOUBLE PRECISION) AS duration_ms, \
             CAST(COALESCE(SUM(CAST(b.queue_wait_ms AS DOUBLE PRECISION)), 0) AS DOUBLE PRECISION) AS wait_ms, \
             COUNT(b.queue_wait_ms) AS waits, \
             CAST(SUM(CASE WHEN p.number IS NULL THEN 1 ELSE 0 END) AS BIGINT) AS unreported, \
             CAST(SUM(CASE WHEN p.number IS NULL THEN CAST(b.duration_ms AS DOUBLE PRECISION) ELSE 0 END) AS DOUBLE PRECISION) AS unreported_ms, \
             CAST(SUM(CASE WHEN p.number IS NULL THEN 0 \
                  ELSE CAST(b.duration_ms AS DOUBLE PRECISION) * {cpu} END) AS DOUBLE PRECISION) AS cpu_m_ms, \
             CAST(SUM(CASE WHEN p.number IS NULL THEN 0 \
                  ELSE CAST(b.duration_ms AS DOUBLE PRECISION) * {mem} END) AS DOUBLE PRECISION) AS memory_b_ms \
             FROM builds b LEFT JOIN build_performance p \
             ON p.controller = b.controller AND p.job = b.job AND p.number = b.number \
             WHERE b.finished_at >= $1 AND b.finished_at < $3 AND b.duration_ms IS NOT NULL \
             GROUP BY b.controller, b.job, b.label, b.result, CASE WHEN b.finished_at >= $2 THEN 1 ELSE 0 END"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(from.millis())
            .bind(split.millis())
            .bind(to.millis())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(BuildGroup {
                    controller: row.try_get("controller")?,
                    job: row.try_get("job")?,
                    label: row.try_get("label")?,
                    result: row.try_get("result")?,
                    current: side(row)?,
                    builds: count(row, "builds")?,
                    // Summed as floating point: no sum of stored numbers can overflow; the
                    // conversion back saturates.
                    duration_ms: float(row, "duration_ms")? as i64,
                    wait_ms: float(row, "wait_ms")? as i64,
                    waits: count(row, "waits")?,
                    unreported: count(row, "unreported")?,
                    unreported_ms: float(row, "unreported_ms")? as i64,
                    cpu_m_ms: float(row, "cpu_m_ms")?,
                    memory_b_ms: float(row, "memory_b_ms")?,
                })
            })
            .collect()
    }

    /// `SELECT {select}` over the finished builds of `[from, to)` (`$1`, `$2`) that also
    /// meet `also` and the `keep` equalities, grouped by `group` and ordered by its first
    /// column.
    #[allow(clippy::too_many_arguments)]
    async fn finished_builds_grouped(
        &self,
        select: &str,
        also: &str,
        group: &str,
        from: Timestamp,
        to: Timestamp,
        keep: &[(&str, &str)],
    ) -> Result<Vec<AnyRow>, StoreError> {
        let mut filter = String::new();
        for (i, (col, _)) in keep.iter().enumerate() {
            filter.push_str(&format!(" AND {col} = ${}", i + 3));
        }
        let sql = format!(
            "SELECT {select} FROM builds WHERE finished_at >= $1 AND finished_at < $2 \
             AND duration_ms IS NOT NULL{also}{filter} GROUP BY {group} ORDER BY 1"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(from.millis())
            .bind(to.millis());
        for (_, v) in keep {
            q = q.bind(v.to_string());
        }
        Ok(q.fetch_all(&self.pool).await?)
    }

    /// Per day of `[from, to)` (days counted from `from`): builds, duration and wait sums.
    /// `keep` narrows to one controller, job or label (applied as SQL equality).
    pub async fn day_sums(
        &self,
        from: Timestamp,
        to: Timestamp,
        keep: &[(&str, &str)],
    ) -> Result<Vec<DaySums>, StoreError> {
        let rows = self
            .finished_builds_grouped(
                "(finished_at - $1) / 86400000 AS day, COUNT(*) AS builds, \
                 CAST(SUM(CAST(duration_ms AS DOUBLE PRECISION)) AS DOUBLE PRECISION) AS duration_ms, \
                 CAST(COALESCE(SUM(CAST(queue_wait_ms AS DOUBLE PRECISION)), 0) AS DOUBLE PRECISION) AS wait_ms, \
                 COUNT(queue_wait_ms) AS waits, \
                 SUM(CASE WHEN found_by = 'backfill' THEN 1 ELSE 0 END) AS backfilled, \
                 SUM(CASE WHEN found_by = 'repair' THEN 1 ELSE 0 END) AS repaired",
                "",
                "(finished_at - $1) / 86400000",
                from,
                to,
                keep,
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(DaySums {
                    day: row.try_get("day")?,
                    builds: count(row, "builds")?,
                    duration_ms: float(row, "duration_ms")?,
                    wait_ms: float(row, "wait_ms")?,
                    waits: count(row, "waits")?,
                    backfilled: count(row, "backfilled")?,
                    repaired: count(row, "repaired")?,
                })
            })
            .collect()
    }

    /// How many finished builds of `[from, to)` had each whole second of `measure`:
    /// `(seconds, builds)` ascending. Percentiles from it are exact to the second.
    pub async fn histogram(
        &self,
        measure: Measure,
        from: Timestamp,
        to: Timestamp,
        keep: &[(&str, &str)],
    ) -> Result<Vec<(i64, u64)>, StoreError> {
        let col = match measure {
            Measure::Duration => "duration_ms",
            Measure::QueueWait => "queue_wait_ms",
        };
        let rows = self
            .finished_builds_grouped(
                &format!("{col} / 1000 AS s, COUNT(*) AS n"),
                &format!(" AND {col} IS NOT NULL"),
                &format!("{col} / 1000"),
                from,
                to,
                keep,
            )
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("s")?, count(row, "n")?)))
            .collect()
    }

    /// The median duration (ms) of each job's successful builds of `[from, to)`, on each
    /// side of `split`.
    pub async fn job_medians(
        &self,
        from: Timestamp,
        split: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<JobMedian>, StoreError> {
        let rows = sqlx::query(
            "SELECT controller, job, cur, duration_ms, rn, cnt FROM ( \
               SELECT controller, job, CASE WHEN finished_at >= $2 THEN 1 ELSE 0 END AS cur, duration_ms, \
                 ROW_NUMBER() OVER (PARTITION BY controller, job, CASE WHEN finished_at >= $2 THEN 1 ELSE 0 END \
                                    ORDER BY duration_ms) AS rn, \
                 COUNT(*) OVER (PARTITION BY controller, job, CASE WHEN finished_at >= $2 THEN 1 ELSE 0 END) AS cnt \
               FROM builds WHERE finished_at >= $1 AND finished_at < $3 AND result = 'SUCCESS' \
               AND duration_ms IS NOT NULL \
             ) t WHERE rn = (cnt + 1) / 2 OR rn = cnt / 2 + 1",
        )
        .bind(from.millis())
        .bind(split.millis())
        .bind(to.millis())
        .fetch_all(&self.pool)
        .await?;
        // One or two middle rows per job and side: their mean is the median.
        let mut out = Vec::new();
        let mut parts: std::collections::BTreeMap<(String, String, bool), (f64, u32, u64)> =
            Default::default();
        for row in &rows {
            let cur = side(row)?;
            let e = parts
                .entry((row.try_get("controller")?, row.try_get("job")?, cur))
                .or_default();
            e.0 += row.try_get::<i64, _>("duration_ms")? as f64;
            e.1 += 1;
            e.2 = count(row, "cnt")?;
        }
        for ((controller, job, cur), (sum, n, builds)) in parts {
            if n == 0 {
                return Err(corrupt("median", "no middle row"));
            }
            out.push(JobMedian {
                controller,
                job,
                current: cur,
                median_ms: sum / f64::from(n),
                builds,
            });
        }
        Ok(out)
    }

    /// The first successful build of a job in `[from, to)` slower than `limit_ms`.
    pub async fn first_slow_build(
        &self,
        controller: &str,
        job: &str,
        from: Timestamp,
        to: Timestamp,
        limit_ms: f64,
    ) -> Result<Option<(u64, i64, i64)>, StoreError> {
        let row = sqlx::query(
            "SELECT number, finished_at, duration_ms FROM builds WHERE controller = $1 AND job = $2 \
             AND finished_at >= $3 AND finished_at < $4 AND result = 'SUCCESS' AND duration_ms > $5 \
             ORDER BY finished_at, number LIMIT 1",
        )
        .bind(controller)
        .bind(job)
        .bind(from.millis())
        .bind(to.millis())
        .bind(limit_ms.floor() as i64)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => Ok(Some((
                unsigned(&r, "number")?.ok_or_else(|| corrupt("number", "null"))?,
                r.try_get("finished_at")?,
                r.try_get("duration_ms")?,
            ))),
            None => Ok(None),
        }
    }

    /// Finished builds of `[from, to)` that may cost more than a threshold: those lasting
    /// at least `min_ms` (enough at the dearest unreported rate), and reported ones whose
    /// max(request, use) x duration at the prices exceeds `threshold`. Longest first, at
    /// most `limit`; the caller prices them exactly.
    #[allow(clippy::too_many_arguments)]
    pub async fn costly_build_candidates(
        &self,
        from: Timestamp,
        to: Timestamp,
        min_ms: i64,
        cpu_hour: f64,
        memory_gib_hour: f64,
        threshold: f64,
        limit: u32,
    ) -> Result<Vec<super::PricedBuild>, StoreError> {
        let cpu = self.greatest("COALESCE(p.request_cpu_m, 0)", "p.cpu_average_m");
        let mem = self.greatest("COALESCE(p.request_memory_bytes, 0)", "p.memory_peak_bytes");
        let sql = format!(
            "{} AND ((p.number IS NULL AND b.duration_ms >= $3) OR (p.number IS NOT NULL AND \
               CAST(b.duration_ms AS DOUBLE PRECISION) / 3600000.0 * \
               ({cpu} / 1000.0 * $4 + {mem} / 1073741824.0 * $5) > $6)) \
             ORDER BY b.duration_ms DESC LIMIT {limit}",
            super::performance::FINISHED_BUILDS
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(from.millis())
            .bind(to.millis())
            .bind(min_ms)
            .bind(cpu_hour)
            .bind(memory_gib_hour)
            .bind(threshold)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(super::performance::priced_from_row)
            .collect()
    }
}
