//! The roller: stale hours that are over are summed anew from their builds, then the
//! UTC days whose hours are all current from their hour rows.

use super::rows::{Key, Sums, key_of, replace_rows};
use super::{DAY_MS, HOUR_MS, Tx};
use crate::domain::Timestamp;
use crate::store::{Backend, Store, StoreError};
use sqlx::Row;
use std::collections::BTreeMap;

/// How far behind the roller's clock another replica's may be: writes this much older
/// than the last pass are looked at again. Two minutes: replicas keep time by NTP (within
/// milliseconds), and a write's time is taken just before its commit. Ten minutes made a
/// busy hour that just ended be summed anew at every pass for ten minutes.
const SKEW_MS: i64 = 2 * 60_000;

/// An hour is first rolled this long after it ends. The events of builds that finish
/// just before an hour ends keep arriving for a little while (a build's completion and its
/// usage report come from different plugins): an hour rolled at once was marked again by
/// them and summed anew, two or three times over in the soak, seconds of a core each.
pub const ROLL_GRACE_MS: i64 = 5 * 60_000;

/// Hour rows are kept this long (35 days: a 30-day report's edges inside days read hour
/// rows; older edges read the builds of one day).
pub const HOUR_ROWS_KEPT_MS: i64 = 35 * DAY_MS;

/// What one pass of the roller did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollUp {
    pub hours: usize,
    pub days: usize,
    /// Stale hours that are over and were left for the next pass.
    pub left: bool,
    /// Hours that are over and still stale after the pass (left, or written meanwhile):
    /// reports read their builds until they are rolled.
    pub behind: usize,
}

impl Store {
    /// A transaction that may write rollups: SQLite's write lock at once, PostgreSQL's
    /// rollup lock (one roller at a time, also across replicas during a hand-over).
    async fn roll_tx(&self) -> Result<Tx<'static>, StoreError> {
        match self.backend {
            Backend::Sqlite => Ok(self.write.begin_with("BEGIN IMMEDIATE").await?),
            Backend::Postgres => {
                let mut tx = self.write.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(7460032915823)")
                    .execute(&mut *tx)
                    .await?;
                Ok(tx)
            }
        }
    }

    /// Rolls up to `max_hours` stale hours that ended [`ROLL_GRACE_MS`] or more before
    /// `now`, oldest first, then every UTC day before `now` whose hours are all current.
    pub async fn roll_up(&self, now: Timestamp, max_hours: usize) -> Result<RollUp, StoreError> {
        self.mark_unmarked_writes(now).await?;
        let due = sqlx::query(
            "SELECT DISTINCT hour FROM rollup_stale WHERE hour <= $1 ORDER BY hour LIMIT $2",
        )
        .bind(now.millis() - HOUR_MS - ROLL_GRACE_MS)
        .bind(max_hours as i64 + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut done = RollUp {
            left: due.len() > max_hours,
            ..Default::default()
        };
        for row in due.iter().take(max_hours) {
            self.roll_hour(row.try_get("hour")?).await?;
            done.hours += 1;
        }
        let days = sqlx::query("SELECT day FROM rollup_days WHERE rolled = 0 AND day <= $1")
            .bind(now.millis() - DAY_MS)
            .fetch_all(&self.pool)
            .await?;
        for row in &days {
            if self.roll_day(row.try_get("day")?).await? {
                done.days += 1;
            }
        }
        self.drop_old_hour_rows(now).await?;
        let behind: i64 =
            sqlx::query_scalar("SELECT COUNT(DISTINCT hour) FROM rollup_stale WHERE hour <= $1")
                .bind(now.millis() - HOUR_MS - ROLL_GRACE_MS)
                .fetch_one(&self.pool)
                .await?;
        done.behind = usize::try_from(behind).unwrap_or(0);
        Ok(done)
    }

    /// Marks the hours of builds updated and usage reports recorded since the last pass
    /// (less [`SKEW_MS`]): writers that mark nothing themselves (a release before this
    /// one, during a rolling upgrade) are then rolled up too, within a pass.
    ///
    /// An hour is marked only for a change newer than the newest its last roll summed
    /// (`rollup_hours`): a busy hour that just ended was otherwise summed anew at every
    /// pass while its last writes stayed inside the look-back, seconds of a core each.
    ///
    /// The hours are found in SQL (one row per hour, not per build) on a read connection,
    /// outside the write lock: at 1,000 webhooks a second a pass looks at some hundred
    /// thousand recent builds, which neither memory nor the writer should pay for. A write
    /// the read does not see was made after `now` less the margin, so the next pass sees it.
    async fn mark_unmarked_writes(&self, now: Timestamp) -> Result<(), StoreError> {
        let since: i64 =
            sqlx::query_scalar("SELECT value FROM rollup_state WHERE name = 'updated_through'")
                .fetch_optional(&self.pool)
                .await?
                .unwrap_or(0);
        // An hour whose last roll already summed a change this new is left alone.
        let hours = sqlx::query(
            "SELECT c.hour AS hour FROM (SELECT hour, MAX(at) AS at FROM ( \
             SELECT (finished_at / 3600000) * 3600000 AS hour, updated_at AS at FROM builds \
             WHERE updated_at > $1 AND finished_at IS NOT NULL \
             UNION ALL SELECT (b.finished_at / 3600000) * 3600000 AS hour, p.recorded_at AS at \
             FROM build_performance p JOIN builds b \
             ON p.controller = b.controller AND p.job = b.job AND p.number = b.number \
             WHERE p.recorded_at > $1 AND b.finished_at IS NOT NULL) u GROUP BY hour) c \
             LEFT JOIN rollup_hours r ON r.hour = c.hour \
             WHERE r.seen_through IS NULL OR c.at > r.seen_through",
        )
        .bind(since - SKEW_MS)
        .fetch_all(&self.pool)
        .await?;
        let mut at = Vec::with_capacity(hours.len());
        for row in &hours {
            if let Ok(t) = Timestamp::from_millis(row.try_get("hour")?) {
                at.push(t);
            }
        }
        let mut tx = self.roll_tx().await?;
        // Marking an hour again only rolls it once more.
        super::mark_stale(&mut tx, &at).await?;
        sqlx::query(
            "INSERT INTO rollup_state (name, value) VALUES ('updated_through', $1) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(now.millis().max(since))
        .execute(&mut *tx)
        .await?;
        Ok(tx.commit().await?)
    }

    /// The finished builds of `[from, to)` summed per controller, job, label and result,
    /// read in slices of their own snapshot each (`store/slices.rs`). Exact all the same:
    /// the caller read the hour's marks (or found the day's hours current) before the
    /// first slice, and a write a slice did not see came later and left a mark the roll
    /// finds under its lock.
    async fn sum_builds(
        &self,
        from: i64,
        to: i64,
    ) -> Result<(BTreeMap<Key, Sums>, Option<i64>), StoreError> {
        let cpu = self.greatest("COALESCE(p.request_cpu_m, 0)", "p.cpu_average_m");
        let mem = self.greatest("COALESCE(p.request_memory_bytes, 0)", "p.memory_peak_bytes");
        let sql = format!(
            "SELECT b.controller, b.job, b.label, b.result, b.duration_ms, b.queue_wait_ms, \
             b.found_by, b.updated_at, p.recorded_at, \
             CASE WHEN p.number IS NULL THEN 1 ELSE 0 END AS unreported, \
             CAST({cpu} AS DOUBLE PRECISION) AS cpu_m, CAST({mem} AS DOUBLE PRECISION) AS mem_b \
             FROM builds b LEFT JOIN build_performance p \
             ON p.controller = b.controller AND p.job = b.job AND p.number = b.number \
             WHERE b.finished_at >= $1 AND b.finished_at < $2 AND b.duration_ms IS NOT NULL"
        );
        let mut groups: BTreeMap<Key, Sums> = BTreeMap::new();
        // The newest change summed: a build's update or its usage report.
        let mut seen_through: Option<i64> = None;
        // Row by row: holding a busy hour's builds as rows took most of a gigabyte.
        self.each_row_sliced(
            &sql,
            (from, to),
            |q| q,
            |row| sum_row(&mut groups, &mut seen_through, row),
        )
        .await?;
        Ok((groups, seen_through))
    }

    /// Drops the hour rows of rolled days older than [`HOUR_ROWS_KEPT_MS`]: their day rows
    /// stand for them, and reads at an edge inside such a day read its builds.
    async fn drop_old_hour_rows(&self, now: Timestamp) -> Result<(), StoreError> {
        let old =
            sqlx::query("SELECT day FROM rollup_days WHERE rolled = 1 AND hours = 1 AND day < $1")
                .bind(now.millis() - HOUR_ROWS_KEPT_MS - DAY_MS)
                .fetch_all(&self.pool)
                .await?;
        for row in &old {
            let day: i64 = row.try_get("day")?;
            let mut tx = self.roll_tx().await?;
            sqlx::query(
                "DELETE FROM build_rollups WHERE span_ms = $1 AND start_at >= $2 AND start_at < $3",
            )
            .bind(HOUR_MS)
            .bind(day)
            .bind(day + DAY_MS)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE rollup_days SET hours = 0 WHERE day = $1")
                .bind(day)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM rollup_hours WHERE hour >= $1 AND hour < $2")
                .bind(day)
                .bind(day + DAY_MS)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Sums the hour's builds anew; its day is to be rolled again.
    ///
    /// The builds are read and summed outside the write lock, in short snapshots: a busy
    /// hour holds hundreds of thousands of builds, and summing them under the lock held
    /// every webhook for seconds. What keeps it exact: every write sets a new version on
    /// its writer's mark of the hours it changes, in the same transaction; the marks are
    /// read before the builds, and a mark is removed only if it still has the version
    /// read. A write the read did not see left a newer version that stays, so the hour is
    /// rolled again. Under the lock, the roll goes ahead only if every mark it read is
    /// still there (removed, or kept at a newer version): another roller that removed one
    /// (during a hand-over of the lead) rolled the hour from a later snapshot.
    async fn roll_hour(&self, hour: i64) -> Result<(), StoreError> {
        let day = hour - hour.rem_euclid(DAY_MS);
        let (marks, hours) = {
            let mut read = self.read_tx().await?;
            let marks: Vec<(i64, i64)> =
                sqlx::query_as("SELECT mark, version FROM rollup_stale WHERE hour = $1")
                    .bind(hour)
                    .fetch_all(&mut *read)
                    .await?;
            let hours: Option<i64> =
                sqlx::query_scalar("SELECT hours FROM rollup_days WHERE day = $1")
                    .bind(day)
                    .fetch_optional(&mut *read)
                    .await?;
            read.commit().await?;
            (marks, hours)
        };
        // A day that dropped its hour rows is summed from its builds again; its hours
        // are not kept one by one.
        let (groups, seen_through) = match hours {
            _ if marks.is_empty() => (BTreeMap::new(), None),
            Some(0) => (BTreeMap::new(), None),
            _ => self.sum_builds(hour, hour + HOUR_MS).await?,
        };
        if marks.is_empty() {
            return Ok(());
        }
        let mut tx = self.roll_tx().await?;
        // The marks read go first (a writer's or a release's before: a handful an hour).
        for (mark, version) in &marks {
            let removed = sqlx::query(
                "DELETE FROM rollup_stale WHERE hour = $1 AND mark = $2 AND version = $3",
            )
            .bind(hour)
            .bind(mark)
            .bind(version)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if removed == 0 {
                let newer: Option<i64> = sqlx::query_scalar(
                    "SELECT version FROM rollup_stale WHERE hour = $1 AND mark = $2",
                )
                .bind(hour)
                .bind(mark)
                .fetch_optional(&mut *tx)
                .await?;
                if newer.is_none() {
                    tx.rollback().await?;
                    return Ok(());
                }
            }
        }
        replace_rows(&mut tx, HOUR_MS, hour, groups).await?;
        if let Some(seen) = seen_through {
            sqlx::query(
                "INSERT INTO rollup_hours (hour, seen_through) VALUES ($1, $2) \
                 ON CONFLICT (hour) DO UPDATE SET seen_through = excluded.seen_through",
            )
            .bind(hour)
            .bind(seen)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM build_rollups WHERE span_ms = $1 AND start_at = $2")
            .bind(DAY_MS)
            .bind(day)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO rollup_days (day, rolled, hours) VALUES ($1, 0, 1) \
             ON CONFLICT (day) DO UPDATE SET rolled = 0",
        )
        .bind(day)
        .execute(&mut *tx)
        .await?;
        Ok(tx.commit().await?)
    }

    /// Sums the day's builds, when none of its hours is stale; whether it did. As for an
    /// hour, the builds are summed in short snapshots outside the write lock, and the sums
    /// are kept only if still no hour of the day is stale under the lock (a write since
    /// marked one).
    async fn roll_day(&self, day: i64) -> Result<bool, StoreError> {
        let stale_in = |day: i64| {
            sqlx::query_scalar::<_, i64>(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM rollup_stale WHERE hour >= $1 AND hour < $2",
            )
            .bind(day)
            .bind(day + DAY_MS)
        };
        if stale_in(day).fetch_one(&self.pool).await? > 0 {
            return Ok(false);
        }
        let (groups, _) = self.sum_builds(day, day + DAY_MS).await?;
        let mut tx = self.roll_tx().await?;
        if stale_in(day).fetch_one(&mut *tx).await? > 0 {
            tx.commit().await?;
            return Ok(false);
        }
        replace_rows(&mut tx, DAY_MS, day, groups).await?;
        sqlx::query("UPDATE rollup_days SET rolled = 1 WHERE day = $1")
            .bind(day)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// Adds one build row to its group's sums and to the newest change summed.
fn sum_row(
    groups: &mut BTreeMap<Key, Sums>,
    seen_through: &mut Option<i64>,
    row: &sqlx::any::AnyRow,
) -> Result<(), StoreError> {
    let changed = [
        row.try_get::<Option<i64>, _>("updated_at")?,
        row.try_get::<Option<i64>, _>("recorded_at")?,
    ];
    *seen_through = (*seen_through).max(changed.into_iter().flatten().max());
    let key = key_of(row)?;
    let duration: i64 = row.try_get("duration_ms")?;
    let wait: Option<i64> = row.try_get("queue_wait_ms")?;
    let found_by: Option<String> = row.try_get("found_by")?;
    let unreported = row
        .try_get::<i32, _>("unreported")
        .map(i64::from)
        .or_else(|_| row.try_get::<i64, _>("unreported"))?
        == 1;
    let g = groups.entry(key).or_default();
    g.builds += 1;
    g.duration_ms += duration as f64;
    g.durations.push(duration);
    if let Some(w) = wait {
        g.wait_ms += w as f64;
        g.waits += 1;
        g.queue_waits.push(w);
    }
    if unreported {
        g.unreported += 1;
        g.unreported_ms += duration as f64;
    } else {
        let cpu: Option<f64> = row.try_get("cpu_m")?;
        let mem: Option<f64> = row.try_get("mem_b")?;
        g.cpu_m_ms += duration as f64 * cpu.unwrap_or(0.0);
        g.memory_b_ms += duration as f64 * mem.unwrap_or(0.0);
    }
    match found_by.as_deref() {
        Some("backfill") => g.backfilled += 1,
        Some("repair") => g.repaired += 1,
        _ => {}
    }
    Ok(())
}
