//! Whether the store can take writes (a full disk, a failing connection) and the WAL's
//! checkpoints that keep it bounded.

use super::*;
use crate::domain::Timestamp;
use sqlx::{AnyPool, Row};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

impl Store {
    /// Answers when the database answers a query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Whether the writer can commit now: after a failed write, or when the last check
    /// is older than a few seconds, a small write is tried (the failure heals itself
    /// once it commits).
    pub async fn writer_ready(&self) -> Result<(), StoreError> {
        if let Some(short) = self.health.still_full() {
            return Err(short);
        }
        let fresh = self
            .health
            .probed_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| at.elapsed() < Duration::from_secs(5));
        if fresh && !self.health.failing.load(Ordering::Relaxed) {
            return Ok(());
        }
        let probe = async {
            let mut conn = self.write.acquire().await?;
            sqlx::query(
                "INSERT INTO rollup_state (name, value) VALUES ('write_probe', $1) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            )
            .bind(Timestamp::now().millis())
            .execute(&mut *conn)
            .await
            .inspect_err(|_| conn.close_on_drop())?;
            Ok::<_, StoreError>(())
        };
        let result = match tokio::time::timeout(Duration::from_secs(5), probe).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Database(sqlx::Error::PoolTimedOut)),
        };
        *self
            .health
            .probed_at
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
        self.wrote(result)
    }

    /// Records whether a write committed, for [`Store::writer_ready`].
    pub(super) fn wrote<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        self.health
            .failing
            .store(result.is_err(), Ordering::Relaxed);
        let full = match &result {
            Err(e) if e.is_disk_full() => self.health.free_bytes(),
            _ => None,
        };
        *self
            .health
            .full_at_free
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = full;
        result
    }

    /// Bytes of the write-ahead log in use at the last checkpoint (SQLite; 0 otherwise).
    pub fn wal_bytes(&self) -> i64 {
        self.health.wal_bytes.load(Ordering::Relaxed)
    }
}

impl WriteHealth {
    /// The health of a store whose files are in `dir` (SQLite), or elsewhere (`None`).
    pub(super) fn on(dir: Option<std::path::PathBuf>) -> Self {
        Self {
            dir,
            ..Self::default()
        }
    }

    /// Space a webhook's events take at most (a body of the largest size, twice: the
    /// event log and the record), beyond what was free when the disk filled up.
    const MARGIN_BYTES: u64 = 4 << 20;

    pub(super) fn free_bytes(&self) -> Option<u64> {
        free_disk_bytes(self.dir.as_ref()?).ok()
    }

    /// A disk-full error while the disk that filled up has not got space back.
    pub(super) fn still_full(&self) -> Option<StoreError> {
        let at = (*self.full_at_free.lock().unwrap_or_else(|p| p.into_inner()))?;
        let now = self.free_bytes()?;
        (now < at.saturating_add(Self::MARGIN_BYTES))
            .then(|| StoreError::Database(sqlx::Error::Io(std::io::Error::from_raw_os_error(28))))
    }
}

/// Whether the last write committed, and the WAL's size, as the store last saw them.
#[derive(Debug, Default)]
pub(super) struct WriteHealth {
    /// The last write failed: the writer cannot commit until one succeeds.
    failing: AtomicBool,
    /// When [`Store::writer_ready`] last tried a write.
    probed_at: std::sync::Mutex<Option<std::time::Instant>>,
    /// SQLite: the directory of the database's files, whose free space is read after a
    /// write failed for want of it.
    dir: Option<std::path::PathBuf>,
    /// The free bytes of `dir` when the last write failed for want of space: until a write
    /// commits or more space than this (and a margin) is free, the writer cannot commit
    /// what webhooks send, whatever a small probe write manages.
    full_at_free: std::sync::Mutex<Option<u64>>,
    /// Bytes of the write-ahead log in use (SQLite), at the last checkpoint.
    wal_bytes: AtomicI64,
}

/// The writer checkpoints the WAL itself after a commit that leaves this many pages in
/// it (SQLite's own default, 4 MiB). A checkpoint the writer runs has no writer beside it,
/// so it copies the whole log and the next commit starts it over; a checkpoint beside a
/// steady writer never catches up (see `checkpoint_in_background`).
pub(super) const WRITER_CHECKPOINT_PAGES: u32 = 1000;

/// Copies the WAL back into the database file every second on a connection of its own
/// (`PASSIVE` never blocks the writer), so commits do not pay for checkpoints and the WAL
/// is reused once it is fully copied; past `limit` bytes it is truncated (`TRUNCATE`
/// waits, at most its busy timeout, for readers of older pages). Stops when the pool
/// closes.
///
/// Why a limit is needed: under a steady load the writer appends while a PASSIVE
/// checkpoint copies, so the copy never catches up with the end of the log at the moment
/// a write begins, and SQLite never starts the log over: it grows for as long as the
/// load lasts (3.1 GB in ten minutes at 1,000 webhooks a second).
pub(super) async fn checkpoint_in_background(pool: AnyPool, health: Arc<WriteHealth>, limit: i64) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        let in_use = match checkpoint(&pool, "PASSIVE").await {
            Ok(bytes) => bytes,
            Err(e) if pool.is_closed() => {
                tracing::debug!(error = %e, "checkpointer stopped");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed");
                continue;
            }
        };
        health.wal_bytes.store(in_use, Ordering::Relaxed);
        if limit > 0 && in_use > limit {
            match checkpoint(&pool, "TRUNCATE").await {
                Ok(after) => {
                    tracing::info!(
                        wal_mib = in_use >> 20,
                        after_mib = after >> 20,
                        "the WAL passed its bound and was truncated"
                    );
                    health.wal_bytes.store(after, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!(error = %e, "truncating the WAL failed"),
            }
        }
    }
}

/// Runs one checkpoint in `mode`; returns the bytes of the WAL still in use after it.
async fn checkpoint(pool: &AnyPool, mode: &str) -> Result<i64, StoreError> {
    let mut conn = pool.acquire().await?;
    // A TRUNCATE checkpoint holds new writers back while it waits for readers: not long.
    let wait = if mode == "TRUNCATE" { 250 } else { 10_000 };
    sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA busy_timeout = {wait}")))
        .execute(&mut *conn)
        .await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "PRAGMA wal_checkpoint({mode})"
    )))
    .fetch_one(&mut *conn)
    .await?;
    let page: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&mut *conn)
        .await?;
    // (busy, frames in the log, frames copied); -1 when the database is not in WAL mode.
    let busy: i64 = row.try_get(0)?;
    let log: i64 = row.try_get(1)?;
    if mode == "TRUNCATE" && busy == 0 {
        return Ok(0);
    }
    Ok(log.max(0) * page)
}
