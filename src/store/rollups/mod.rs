//! Report rollups: finished builds summed by hour and by UTC day (per controller, job,
//! label and result, with their durations and queue waits listed), so a report over
//! months reads a few thousand rows instead of every build.
//!
//! The rule that keeps them exact: every hour with finished builds is either marked
//! stale (`rollup_stale`) or rolled up. A write that changes a build (or its usage
//! report) marks the hours it finished in, before and after, in its own transaction; the
//! roller (the leader, every minute) rolls the stale hours that are over, then the UTC days
//! whose hours are all current (from their builds), and drops the hour rows of days older
//! than 35 days. A read takes a UTC day from its day rows when the day is rolled and none
//! of its hours is stale, an hour from its hour rows when it is not stale and its day
//! keeps them, and the builds themselves for the rest: stale hours and the partial hours
//! (or, in old days, partial days) at the range's edges. Reads take one snapshot of the
//! rollups and the builds.

mod read;
mod roll;
mod rows;

pub use roll::{HOUR_ROWS_KEPT_MS, ROLL_GRACE_MS, RollUp};

use super::StoreError;
use crate::domain::Timestamp;
use sqlx::{Any, Row};
use std::collections::BTreeSet;

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;

type Tx<'a> = sqlx::Transaction<'a, Any>;

/// The start of the hour `at` falls in.
fn hour_of(at: i64) -> i64 {
    at - at.rem_euclid(HOUR_MS)
}

/// Marks the rollups of the hours these instants fall in as out of date: the writer's own
/// row per hour (its database session on PostgreSQL, so concurrent writers never wait on
/// one another's row; the one writer on SQLite) takes a new random version. An hour keeps
/// a row per writer, not per write: at a thousand webhooks a second a row per write made
/// a million and a half rows an hour, and removing them held the writer for seconds.
pub(super) async fn mark_stale(tx: &mut Tx<'_>, at: &[Timestamp]) -> Result<(), StoreError> {
    let hours: BTreeSet<i64> = at.iter().map(|t| hour_of(t.millis())).collect();
    let hours: Vec<i64> = hours.into_iter().collect();
    let writer = if tx.backend_name() == "PostgreSQL" {
        "pg_backend_pid()"
    } else {
        "0"
    };
    let version: i64 = rand::random::<i64>() & i64::MAX;
    for chunk in crate::store::write::shaped_chunks(&hours, 500) {
        let values: Vec<String> = (1..=chunk.len())
            .map(|i| format!("(${i}, {writer}, ${})", chunk.len() + 1))
            .collect();
        let sql = format!(
            "INSERT INTO rollup_stale (hour, mark, version) VALUES {} \
             ON CONFLICT (hour, mark) DO UPDATE SET version = excluded.version",
            values.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for h in chunk {
            q = q.bind(*h);
        }
        q.bind(version).execute(&mut **tx).await?;
    }
    Ok(())
}

/// Which periods of a span have current rollups, as read in one snapshot.
struct Coverage {
    stale: BTreeSet<i64>,
    /// Days whose day rows are current.
    days: BTreeSet<i64>,
    /// Days whose hour rows were dropped.
    hourless: BTreeSet<i64>,
}

impl Coverage {
    async fn read(tx: &mut Tx<'_>, from: i64, to: i64) -> Result<Self, StoreError> {
        let stale =
            sqlx::query("SELECT DISTINCT hour FROM rollup_stale WHERE hour >= $1 AND hour < $2")
                .bind(hour_of(from))
                .bind(to)
                .fetch_all(&mut **tx)
                .await?
                .iter()
                .map(|r| r.try_get::<i64, _>("hour"))
                .collect::<Result<_, _>>()?;
        let mut days = BTreeSet::new();
        let mut hourless = BTreeSet::new();
        let rows =
            sqlx::query("SELECT day, rolled, hours FROM rollup_days WHERE day >= $1 AND day < $2")
                .bind(from - from.rem_euclid(DAY_MS))
                .bind(to)
                .fetch_all(&mut **tx)
                .await?;
        for r in &rows {
            let day: i64 = r.try_get("day")?;
            if r.try_get::<i64, _>("rolled")? == 1 {
                days.insert(day);
            }
            if r.try_get::<i64, _>("hours")? == 0 {
                hourless.insert(day);
            }
        }
        Ok(Self {
            stale,
            days,
            hourless,
        })
    }

    fn day_ok(&self, day: i64) -> bool {
        self.days.contains(&day) && self.stale.range(day..day + DAY_MS).next().is_none()
    }

    fn hour_ok(&self, hour: i64) -> bool {
        !self.stale.contains(&hour) && !self.hourless.contains(&(hour - hour.rem_euclid(DAY_MS)))
    }
}

/// A stretch of time read one way: `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slice {
    /// Day rows of the UTC days starting in it.
    Days(i64, i64),
    /// Hour rows of the hours starting in it.
    Hours(i64, i64),
    /// The builds that finished in it.
    Builds(i64, i64),
}

impl Slice {
    fn bounds(self) -> (i64, i64) {
        match self {
            Slice::Days(a, b) | Slice::Hours(a, b) | Slice::Builds(a, b) => (a, b),
        }
    }

    /// The same kind, `[self.from, to)`.
    fn until(self, to: i64) -> Self {
        match self {
            Slice::Days(a, _) => Slice::Days(a, to),
            Slice::Hours(a, _) => Slice::Hours(a, to),
            Slice::Builds(a, _) => Slice::Builds(a, to),
        }
    }

    fn same_kind(self, other: Self) -> bool {
        std::mem::discriminant(&self) == std::mem::discriminant(&other)
    }
}

/// How to read `[cuts[0], cuts[last])` so that no rollup row spans a cut (each row then
/// lies in one bucket between two cuts): whole UTC days, whole hours, and builds for the
/// rest; adjacent slices of one kind merged.
fn slices(cover: &Coverage, cuts: &[i64]) -> Vec<Slice> {
    let mut out: Vec<Slice> = Vec::new();
    let mut push = |s: Slice| match out.last_mut() {
        Some(last) if last.same_kind(s) && last.bounds().1 == s.bounds().0 => {
            *last = last.until(s.bounds().1)
        }
        _ => out.push(s),
    };
    for pair in cuts.windows(2) {
        let (mut t, end) = (pair[0], pair[1]);
        while t < end {
            if t.rem_euclid(DAY_MS) == 0 && t + DAY_MS <= end && cover.day_ok(t) {
                push(Slice::Days(t, t + DAY_MS));
                t += DAY_MS;
            } else if t.rem_euclid(HOUR_MS) == 0 && t + HOUR_MS <= end && cover.hour_ok(t) {
                push(Slice::Hours(t, t + HOUR_MS));
                t += HOUR_MS;
            } else {
                let next = end.min(hour_of(t) + HOUR_MS);
                push(Slice::Builds(t, next));
                t = next;
            }
        }
    }
    out
}

/// The stored rollup state, for the status and the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct RollupCounts {
    /// Hours whose builds changed since they were rolled up (read from the builds).
    pub stale_hours: u64,
    /// UTC days whose day rows are current.
    pub rolled_days: u64,
    /// Rows of hour and of day rollups.
    pub hour_rows: u64,
    pub day_rows: u64,
}

impl super::Store {
    pub async fn rollup_counts(&self) -> Result<RollupCounts, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(DISTINCT hour) FROM rollup_stale) AS stale, \
             (SELECT COUNT(*) FROM rollup_days WHERE rolled = 1) AS days, \
             (SELECT COUNT(*) FROM build_rollups WHERE span_ms = $1) AS hour_rows, \
             (SELECT COUNT(*) FROM build_rollups WHERE span_ms = $2) AS day_rows",
        )
        .bind(HOUR_MS)
        .bind(DAY_MS)
        .fetch_one(&self.pool)
        .await?;
        let n = |c: &str| super::unsigned(&row, c).map(|v| v.unwrap_or(0));
        Ok(RollupCounts {
            stale_hours: n("stale")?,
            rolled_days: n("days")?,
            hour_rows: n("hour_rows")?,
            day_rows: n("day_rows")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D0: i64 = 1_700_006_400_000; // a UTC midnight

    fn cover(stale: &[i64], days: &[i64]) -> Coverage {
        Coverage {
            stale: stale.iter().copied().collect(),
            days: days.iter().copied().collect(),
            hourless: BTreeSet::new(),
        }
    }

    #[test]
    fn slices_take_days_then_hours_then_builds_and_never_span_a_cut() {
        assert_eq!(D0 % DAY_MS, 0);
        let from = D0 - HOUR_MS - 5;
        let split = D0 + DAY_MS + 90 * 60_000;
        let to = D0 + 3 * DAY_MS + 10;
        let all = cover(&[], &[D0, D0 + DAY_MS, D0 + 2 * DAY_MS]);
        assert_eq!(
            slices(&all, &[from, split, to]),
            vec![
                Slice::Builds(from, D0 - HOUR_MS),
                Slice::Hours(D0 - HOUR_MS, D0),
                Slice::Days(D0, D0 + DAY_MS),
                Slice::Hours(D0 + DAY_MS, D0 + DAY_MS + HOUR_MS),
                // The hour the split falls in is read from its builds.
                Slice::Builds(D0 + DAY_MS + HOUR_MS, D0 + DAY_MS + 2 * HOUR_MS),
                Slice::Hours(D0 + DAY_MS + 2 * HOUR_MS, D0 + 2 * DAY_MS),
                Slice::Days(D0 + 2 * DAY_MS, D0 + 3 * DAY_MS),
                Slice::Builds(D0 + 3 * DAY_MS, to),
            ]
        );
        // A stale hour: its day is read by the hour, the stale one from its builds.
        let stale = D0 + 2 * DAY_MS + 5 * HOUR_MS;
        let some = cover(&[stale], &[D0, D0 + DAY_MS, D0 + 2 * DAY_MS]);
        let s = slices(&some, &[D0 + 2 * DAY_MS, D0 + 3 * DAY_MS]);
        assert_eq!(
            s,
            vec![
                Slice::Hours(D0 + 2 * DAY_MS, stale),
                Slice::Builds(stale, stale + HOUR_MS),
                Slice::Hours(stale + HOUR_MS, D0 + 3 * DAY_MS),
            ]
        );
        // A day not rolled is read by the hour.
        assert_eq!(
            slices(&cover(&[], &[]), &[D0, D0 + DAY_MS]),
            vec![Slice::Hours(D0, D0 + DAY_MS)]
        );
        // Slices cover the span without gap or overlap.
        let s = slices(&some, &[from, split, to]);
        assert_eq!(s.first().unwrap().bounds().0, from);
        assert_eq!(s.last().unwrap().bounds().1, to);
        for w in s.windows(2) {
            assert_eq!(w[0].bounds().1, w[1].bounds().0);
        }
    }
}
