//! The report aggregates, read from the rollups for whole periods and from the builds for
//! the rest (see the module's rule), in one snapshot.

use super::rows::{Key, Sums, decode, key_of};
use super::{Coverage, DAY_MS, HOUR_MS, Slice, Tx, slices};
use crate::domain::Timestamp;
use crate::store::analytics::{BuildGroup, DaySums, JobMedian, Measure, count, float, side};
use crate::store::{Backend, Store, StoreError, corrupt};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::BTreeMap;

/// `AND col = $n ...` for the `keep` equalities, numbered from `first`.
fn keep_sql(keep: &[(&str, &str)], first: usize) -> String {
    keep.iter()
        .enumerate()
        .map(|(i, (col, _))| format!(" AND {col} = ${}", first + i))
        .collect()
}

/// The slice's condition on `build_rollups` or on `builds`, with its bounds as `$1` and
/// `$2`, and whether it reads rollups.
fn slice_sql(s: Slice) -> (String, i64, i64, bool) {
    match s {
        Slice::Days(a, b) | Slice::Hours(a, b) => {
            let span = if matches!(s, Slice::Days(..)) {
                DAY_MS
            } else {
                HOUR_MS
            };
            (
                format!("span_ms = {span} AND start_at >= $1 AND start_at < $2"),
                a,
                b,
                true,
            )
        }
        Slice::Builds(a, b) => (
            "finished_at >= $1 AND finished_at < $2 AND duration_ms IS NOT NULL".into(),
            a,
            b,
            false,
        ),
    }
}

/// The split (not before `from`) and the cuts of `[from, to)` split there; `None` for an
/// empty range.
fn split_cuts(from: Timestamp, split: Timestamp, to: Timestamp) -> Option<(i64, Vec<i64>)> {
    let (from, to) = (from.millis(), to.millis());
    let split = split.millis().max(from);
    if to <= from {
        return None;
    }
    let cuts = if split < to {
        vec![from, split, to]
    } else {
        vec![from, to]
    };
    Some((split, cuts))
}

impl Store {
    /// A read-only snapshot of the rollups and the builds.
    pub(super) async fn read_tx(&self) -> Result<Tx<'static>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin().await?,
            Backend::Postgres => {
                self.pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?
            }
        })
    }

    /// Reads the slices of `[cuts[0], cuts[last])` in one snapshot: for each, runs the
    /// statement `sql(cond, rolled)` makes (`cond` the slice's condition on `$1` and `$2`;
    /// `rolled`: over rollup rows, else over builds), with `$3` bound to `third` when given
    /// and `keep`'s values after it, and calls `each(row, rolled)` for every row.
    async fn each_slice_row(
        &self,
        cuts: &[i64],
        sql: impl Fn(&str, bool) -> String,
        (third, keep): (Option<i64>, &[(&str, &str)]),
        mut each: impl FnMut(&AnyRow, bool) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut tx = self.read_tx().await?;
        let (from, to) = (cuts[0], cuts[cuts.len() - 1]);
        let cover = Coverage::read(&mut tx, from, to).await?;
        for s in slices(&cover, cuts) {
            let (cond, a, b, rolled) = slice_sql(s);
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql(&cond, rolled)))
                .bind(a)
                .bind(b);
            if let Some(v) = third {
                q = q.bind(v);
            }
            for (_, v) in keep {
                q = q.bind(v.to_string());
            }
            for row in q.fetch_all(&mut *tx).await? {
                each(&row, rolled)?;
            }
        }
        Ok(tx.commit().await?)
    }

    /// Finished builds of `[from, to)` grouped by controller, job, label, result and side
    /// of `split`, with the sums costs and reports need.
    pub async fn build_groups(
        &self,
        from: Timestamp,
        split: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<BuildGroup>, StoreError> {
        let Some((split, cuts)) = split_cuts(from, split, to) else {
            return Ok(Vec::new());
        };
        let mut groups: BTreeMap<(Key, bool), Sums> = BTreeMap::new();
        let cpu = self.greatest("COALESCE(p.request_cpu_m, 0)", "p.cpu_average_m");
        let mem = self.greatest("COALESCE(p.request_memory_bytes, 0)", "p.memory_peak_bytes");
        let sql = |cond: &str, rolled: bool| match rolled {
            true => format!(
                "SELECT controller, job, label, result, \
                     CASE WHEN start_at >= $3 THEN 1 ELSE 0 END AS cur, \
                     CAST(SUM(builds) AS BIGINT) AS builds, \
                     CAST(SUM(duration_ms) AS DOUBLE PRECISION) AS duration_ms, \
                     CAST(SUM(wait_ms) AS DOUBLE PRECISION) AS wait_ms, \
                     CAST(SUM(waits) AS BIGINT) AS waits, \
                     CAST(SUM(unreported) AS BIGINT) AS unreported, \
                     CAST(SUM(unreported_ms) AS DOUBLE PRECISION) AS unreported_ms, \
                     CAST(SUM(cpu_m_ms) AS DOUBLE PRECISION) AS cpu_m_ms, \
                     CAST(SUM(memory_b_ms) AS DOUBLE PRECISION) AS memory_b_ms \
                     FROM build_rollups WHERE {cond} \
                     GROUP BY controller, job, label, result, CASE WHEN start_at >= $3 THEN 1 ELSE 0 END"
            ),
            false => format!(
                "SELECT b.controller, b.job, b.label, b.result, \
                     CASE WHEN b.finished_at >= $3 THEN 1 ELSE 0 END AS cur, \
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
                     WHERE {cond} \
                     GROUP BY b.controller, b.job, b.label, b.result, CASE WHEN b.finished_at >= $3 THEN 1 ELSE 0 END"
            ),
        };
        self.each_slice_row(&cuts, sql, (Some(split), &[]), |row, _| {
            let g = groups.entry((key_of(row)?, side(row)?)).or_default();
            g.builds += count(row, "builds")?;
            g.duration_ms += float(row, "duration_ms")?;
            g.wait_ms += float(row, "wait_ms")?;
            g.waits += count(row, "waits")?;
            g.unreported += count(row, "unreported")?;
            g.unreported_ms += float(row, "unreported_ms")?;
            g.cpu_m_ms += float(row, "cpu_m_ms")?;
            g.memory_b_ms += float(row, "memory_b_ms")?;
            Ok(())
        })
        .await?;
        Ok(groups
            .into_iter()
            .map(
                |(((controller, job, label, result), current), s)| BuildGroup {
                    controller,
                    job,
                    label,
                    result,
                    current,
                    builds: s.builds,
                    // Summed as floating point: no sum of stored numbers can overflow; the
                    // conversion back saturates.
                    duration_ms: s.duration_ms as i64,
                    wait_ms: s.wait_ms as i64,
                    waits: s.waits,
                    unreported: s.unreported,
                    unreported_ms: s.unreported_ms as i64,
                    cpu_m_ms: s.cpu_m_ms,
                    memory_b_ms: s.memory_b_ms,
                },
            )
            .collect())
    }

    /// Per day of `[from, to)` (days counted from `from`): builds, duration and wait sums.
    /// `keep` narrows to one controller, job or label (applied as SQL equality).
    pub async fn day_sums(
        &self,
        from: Timestamp,
        to: Timestamp,
        keep: &[(&str, &str)],
    ) -> Result<Vec<DaySums>, StoreError> {
        let (from, to) = (from.millis(), to.millis());
        if to <= from {
            return Ok(Vec::new());
        }
        let mut cuts: Vec<i64> = (0..)
            .map(|k| from + k * DAY_MS)
            .take_while(|t| *t < to)
            .collect();
        cuts.push(to);
        let mut days: BTreeMap<i64, DaySums> = BTreeMap::new();
        let sql = |cond: &str, rolled: bool| match rolled {
            true => format!(
                "SELECT (start_at - $3) / 86400000 AS day, CAST(SUM(builds) AS BIGINT) AS builds, \
                     CAST(SUM(duration_ms) AS DOUBLE PRECISION) AS duration_ms, \
                     CAST(SUM(wait_ms) AS DOUBLE PRECISION) AS wait_ms, \
                     CAST(SUM(waits) AS BIGINT) AS waits, \
                     CAST(SUM(backfilled) AS BIGINT) AS backfilled, \
                     CAST(SUM(repaired) AS BIGINT) AS repaired \
                     FROM build_rollups WHERE {cond}{} GROUP BY (start_at - $3) / 86400000",
                keep_sql(keep, 4)
            ),
            false => format!(
                "SELECT (finished_at - $3) / 86400000 AS day, COUNT(*) AS builds, \
                     CAST(SUM(CAST(duration_ms AS DOUBLE PRECISION)) AS DOUBLE PRECISION) AS duration_ms, \
                     CAST(COALESCE(SUM(CAST(queue_wait_ms AS DOUBLE PRECISION)), 0) AS DOUBLE PRECISION) AS wait_ms, \
                     COUNT(queue_wait_ms) AS waits, \
                     CAST(SUM(CASE WHEN found_by = 'backfill' THEN 1 ELSE 0 END) AS BIGINT) AS backfilled, \
                     CAST(SUM(CASE WHEN found_by = 'repair' THEN 1 ELSE 0 END) AS BIGINT) AS repaired \
                     FROM builds WHERE {cond}{} GROUP BY (finished_at - $3) / 86400000",
                keep_sql(keep, 4)
            ),
        };
        self.each_slice_row(&cuts, sql, (Some(from), keep), |row, _| {
            let day: i64 = row.try_get("day")?;
            let d = days.entry(day).or_insert(DaySums {
                day,
                builds: 0,
                duration_ms: 0.0,
                wait_ms: 0.0,
                waits: 0,
                backfilled: 0,
                repaired: 0,
            });
            d.builds += count(row, "builds")?;
            d.duration_ms += float(row, "duration_ms")?;
            d.wait_ms += float(row, "wait_ms")?;
            d.waits += count(row, "waits")?;
            d.backfilled += count(row, "backfilled")?;
            d.repaired += count(row, "repaired")?;
            Ok(())
        })
        .await?;
        Ok(days.into_values().collect())
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
        let (from, to) = (from.millis(), to.millis());
        if to <= from {
            return Ok(Vec::new());
        }
        let (col, list) = match measure {
            Measure::Duration => ("duration_ms", "durations"),
            Measure::QueueWait => ("queue_wait_ms", "queue_waits"),
        };
        let mut seconds: BTreeMap<i64, u64> = BTreeMap::new();
        let mut values = Vec::new();
        let sql = |cond: &str, rolled: bool| match rolled {
            true => format!(
                "SELECT {list} AS list FROM build_rollups WHERE {cond}{}",
                keep_sql(keep, 3)
            ),
            false => format!(
                "SELECT {col} / 1000 AS s, COUNT(*) AS n FROM builds WHERE {cond} \
                     AND {col} IS NOT NULL{} GROUP BY {col} / 1000",
                keep_sql(keep, 3)
            ),
        };
        self.each_slice_row(&[from, to], sql, (None, keep), |row, rolled| {
            if rolled {
                values.clear();
                decode(&row.try_get::<String, _>("list")?, &mut values)?;
                for v in &values {
                    *seconds.entry(v / 1000).or_default() += 1;
                }
            } else {
                *seconds.entry(row.try_get("s")?).or_default() += count(row, "n")?;
            }
            Ok(())
        })
        .await?;
        Ok(seconds.into_iter().collect())
    }

    /// The median duration (ms) of each job's successful builds of `[from, to)`, on each
    /// side of `split`.
    pub async fn job_medians(
        &self,
        from: Timestamp,
        split: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<JobMedian>, StoreError> {
        let Some((split, cuts)) = split_cuts(from, split, to) else {
            return Ok(Vec::new());
        };
        let mut durations: BTreeMap<(String, String, bool), Vec<i64>> = BTreeMap::new();
        let sql = |cond: &str, rolled: bool| match rolled {
            true => format!(
                "SELECT controller, job, CASE WHEN start_at >= $3 THEN 1 ELSE 0 END AS cur, \
                     durations FROM build_rollups WHERE {cond} AND result = 'SUCCESS'"
            ),
            false => format!(
                "SELECT controller, job, CASE WHEN finished_at >= $3 THEN 1 ELSE 0 END AS cur, \
                     duration_ms FROM builds WHERE {cond} AND result = 'SUCCESS'"
            ),
        };
        self.each_slice_row(&cuts, sql, (Some(split), &[]), |row, rolled| {
            let v = durations
                .entry((row.try_get("controller")?, row.try_get("job")?, side(row)?))
                .or_default();
            if rolled {
                decode(&row.try_get::<String, _>("durations")?, v)?;
            } else {
                v.push(row.try_get("duration_ms")?);
            }
            Ok(())
        })
        .await?;
        let mut out = Vec::with_capacity(durations.len());
        for ((controller, job, current), mut v) in durations {
            let n = v.len();
            if n == 0 {
                return Err(corrupt("median", "no builds"));
            }
            v.sort_unstable();
            // The middle build, or the mean of the two middle ones.
            let median_ms = (v[(n - 1) / 2] as f64 + v[n / 2] as f64) / 2.0;
            out.push(JobMedian {
                controller,
                job,
                current,
                median_ms,
                builds: n as u64,
            });
        }
        Ok(out)
    }
}
