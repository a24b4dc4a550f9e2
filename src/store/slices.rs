//! Long reads of builds in short snapshots.
//!
//! A read over a range of builds (an hour's roll-up, a day's, the costly-build alert, the
//! optimizer's pass) is cut into slices of finish time, each read by a statement of its
//! own. Why: on SQLite a read snapshot keeps every page written after it in the WAL, so
//! no checkpoint can start the log over while it lasts; at 1,000 webhooks a second the
//! log grows about 16 MB a second, and one read of a busy hour (600,000 builds, 37 s
//! beside a compile) took it to 650 MB. On PostgreSQL a long snapshot holds back vacuum
//! the same way. What each caller gives up (one snapshot for the whole range) and why it
//! stays exact is said where it is used.

use super::{Store, StoreError};
use sqlx::Any;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;

/// The most builds read in one snapshot by default (ties at a slice's last instant aside). The soak's
/// load (1,000 webhooks a second, about 10,000 builds a minute) reads some 16,000 joined
/// builds a second beside a compile: a slice then lasts about a second, and the WAL grows
/// by some 20 MB meanwhile. A quiet month is a slice or two.
pub(super) const SLICE_BUILDS: u32 = 20_000;

/// The slices of `[from, to)` by finish time, found one at a time.
struct BuildSlices {
    at: i64,
    to: i64,
}

impl BuildSlices {
    fn new(from: i64, to: i64) -> Self {
        Self { at: from, to }
    }

    /// The next slice: from the last one's end up to the finish of the build that many
    /// builds on as the store's slice size (the range's end when fewer are left); `None` when the range is
    /// done. Found by an index-only look-up, so the number of slices follows the number
    /// of builds, not the length of the range.
    async fn next(&mut self, store: &Store) -> Result<Option<(i64, i64)>, StoreError> {
        if self.at >= self.to {
            return Ok(None);
        }
        let cut: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT finished_at FROM builds WHERE finished_at >= $1 AND finished_at < $2 \
             ORDER BY finished_at LIMIT 1 OFFSET {}",
            store.slice_builds
        )))
        .bind(self.at)
        .bind(self.to)
        .fetch_optional(&store.pool)
        .await?;
        let from = self.at;
        // Builds finished at the same instant stay in one slice.
        let end = cut.map_or(self.to, |t| t.max(from + 1));
        self.at = end;
        Ok(Some((from, end)))
    }
}

impl Store {
    /// Runs `sql` (a read of finished builds of `[$1, $2)`; `more` binds its other
    /// parameters, from `$3`) over `[from, to)` slice by slice, and calls `each` for every
    /// row, as it comes (no slice is held in memory).
    pub(super) async fn each_row_sliced<'q>(
        &self,
        sql: &'q str,
        (from, to): (i64, i64),
        more: impl Fn(Query<'q, Any, AnyArguments>) -> Query<'q, Any, AnyArguments>,
        mut each: impl FnMut(&AnyRow) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        use futures_util::TryStreamExt;
        let mut slices = BuildSlices::new(from, to);
        while let Some((a, b)) = slices.next(self).await? {
            let q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(a).bind(b);
            let mut rows = more(q).fetch(&self.pool);
            while let Some(row) = rows.try_next().await? {
                each(&row)?;
            }
        }
        Ok(())
    }

    /// The same store, reading at most `builds` builds per snapshot in long reads (default
    /// 20,000): smaller slices keep snapshots shorter for more statements.
    pub fn with_read_slice(mut self, builds: u32) -> Self {
        self.slice_builds = builds.max(1);
        self
    }
}
