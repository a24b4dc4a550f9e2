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

pub(super) fn count(row: &AnyRow, col: &str) -> Result<u64, StoreError> {
    Ok(unsigned(row, col)?.unwrap_or(0))
}

/// The `cur` column: 1 for the range asked for, 0 for the one before, decoded whichever
/// integer width the backend gives a CASE of literals.
pub(super) fn side(row: &AnyRow) -> Result<bool, StoreError> {
    let v = row
        .try_get::<i32, _>("cur")
        .map(i64::from)
        .or_else(|_| row.try_get::<i64, _>("cur"))?;
    Ok(v == 1)
}

pub(super) fn float(row: &AnyRow, col: &str) -> Result<f64, StoreError> {
    Ok(row.try_get::<Option<f64>, _>(col)?.unwrap_or(0.0))
}

impl Store {
    /// The larger of two SQL expressions, as each backend spells it.
    pub(super) fn greatest(&self, a: &str, b: &str) -> String {
        match self.backend {
            Backend::Sqlite => format!("MAX({a}, {b})"),
            Backend::Postgres => format!("GREATEST({a}, {b})"),
        }
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
            super::priced::FINISHED_BUILDS
        );
        // Slice by slice (`store/slices.rs`), each slice's longest kept: the longest of
        // the range are among them. An hour of a busy installation read in one statement
        // took 10 s and held the WAL meanwhile.
        let keep = limit as usize;
        let mut longest: Vec<super::PricedBuild> = Vec::new();
        let longest_first = |v: &mut Vec<super::PricedBuild>| {
            v.sort_by_key(|b| std::cmp::Reverse(b.duration_ms));
            v.truncate(keep);
        };
        let range = (from.millis(), to.millis());
        let prices = |q| bind_prices(q, min_ms, cpu_hour, memory_gib_hour, threshold);
        self.each_row_sliced(&sql, range, prices, |row| {
            longest.push(super::priced::priced_from_row(row)?);
            if longest.len() >= 2 * keep.max(1) {
                longest_first(&mut longest);
            }
            Ok(())
        })
        .await?;
        longest_first(&mut longest);
        Ok(longest)
    }
}

/// Binds the costly-build query's threshold and prices (`$3` to `$6`).
fn bind_prices(
    q: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
    min_ms: i64,
    cpu_hour: f64,
    memory_gib_hour: f64,
    threshold: f64,
) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
    q.bind(min_ms)
        .bind(cpu_hour)
        .bind(memory_gib_hour)
        .bind(threshold)
}
