//! All SQL lives here. One schema and one set of queries for SQLite (embedded default,
//! WAL) and PostgreSQL, through sqlx's `Any` driver; `$N` placeholders work on both.

pub(crate) mod analytics;
mod backfill;
mod connect;
mod error;
mod health;
mod listen;
mod lock;
mod performance;
mod priced;
mod reads;
mod rollups;
mod settings;
mod slices;
mod write;
mod writer;

pub use analytics::{BuildGroup, DaySums, JobMedian, Measure};
pub use backfill::BackfillRun;
pub use connect::free_disk_bytes;
pub use error::StoreError;
use health::WriteHealth;
pub use listen::ChannelListener;
pub use lock::LockSession;
pub use performance::StoredPerformance;
pub use priced::PricedBuild;
use reads::{build_from_row, instant, queue_from_row, unsigned};
pub use rollups::{HOUR_ROWS_KEPT_MS, ROLL_GRACE_MS, RollUp, RollupCounts};
pub use writer::{Drain, SubmitError, WriteOutcome, Writer, WriterHandle};

use crate::domain::{BuildResult, ControllerName, IngestEvent, JobName, Timestamp};
pub use settings::{DatabaseSettings, SqliteSynchronous};
use sqlx::Connection;
use sqlx::{AnyPool, Row};
use std::sync::Arc;

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database handle. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// Reads: bounded, with a timeout.
    pool: AnyPool,
    /// Writes only.
    write: AnyPool,
    backend: Backend,
    health: Arc<WriteHealth>,
    /// The most builds a long read takes in one snapshot (`slices.rs`).
    slice_builds: u32,
}

/// Filters for listing builds.
#[derive(Debug, Clone, Default)]
pub struct BuildFilter {
    pub controller: Option<ControllerName>,
    pub job: Option<JobName>,
    pub result: Option<BuildResult>,
    /// Builds whose start (or queue time, when not started) is at or after this instant.
    pub since: Option<Timestamp>,
    pub limit: u32,
}

/// One scaling decision as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct DecisionRecord {
    pub pool: String,
    #[schema(value_type = i64)]
    pub decided_at: Timestamp,
    /// Orders decisions of the same millisecond.
    pub seq: i64,
    /// What started the reconcile: `event`, `periodic`.
    #[schema(value_type = String)]
    pub trigger: crate::scaling::plan::Trigger,
    /// Replicas before; `null` when they could not be read.
    pub current: Option<u32>,
    pub recommended: Option<u32>,
    /// Replicas decided; `null` when no decision could be made (a read failed).
    pub desired: Option<u32>,
    /// The rule that fired (`demand`, `min`, `max`, `busy-floor`, `stabilized`,
    /// `rate-limited`, `delay-after-scale-up`, `hold-on-error`, ...).
    #[schema(value_type = String)]
    pub rule: crate::scaling::Rule,
    pub reason: String,
    /// `applied`, `unchanged`, `dry-run`, `held` or `failed`.
    #[schema(value_type = String)]
    pub outcome: crate::domain::Outcome,
    pub error: Option<String>,
    /// The snapshot the decision was made from.
    pub inputs: crate::domain::DecisionInputs,
}

/// Counts of stored rows, for tests and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowCounts {
    pub events: i64,
    /// Bytes the event log's payloads take.
    pub event_payload_bytes: i64,
    pub builds: i64,
    pub queue_items: i64,
}

impl Store {
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Sends `payload` to every session listening on `channel` (PostgreSQL `NOTIFY`).
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Stores a group of requests' events in one transaction. Returns, per request, how
    /// many of its events were new (a redelivered event is skipped).
    pub async fn write_batch(
        &self,
        batch: &[&[IngestEvent]],
        now: Timestamp,
    ) -> Result<Vec<usize>, StoreError> {
        Ok(self
            .write_batch_events(batch, now)
            .await?
            .iter()
            .map(|flags| flags.iter().filter(|s| **s).count())
            .collect())
    }

    /// [`Store::write_batch`], telling for each event of each request whether it was
    /// stored now (else it was a redelivery).
    pub async fn write_batch_events(
        &self,
        batch: &[&[IngestEvent]],
        now: Timestamp,
    ) -> Result<Vec<Vec<bool>>, StoreError> {
        // Several writers (the webhook writer, a backfill, other replicas) fold the same
        // records: SQLite takes its write lock at the start (a deferred transaction that
        // read first could not write), PostgreSQL locks each record the batch folds.
        let mut conn = match self.write.acquire().await {
            Ok(conn) => conn,
            Err(e) => return self.wrote(Err(e.into())),
        };
        let postgres = self.backend == Backend::Postgres;
        let result = async {
            let mut tx = match self.backend {
                Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await?,
                Backend::Postgres => conn.begin().await?,
            };
            let stored = write::write_batch(&mut tx, batch, now, postgres).await?;
            tx.commit().await?;
            Ok(stored)
        }
        .await;
        if result.is_err() {
            // Whatever state the failure left the connection in, the next write starts
            // on a new one.
            conn.close_on_drop();
        }
        self.wrote(result)
    }

    /// Marks as left the items of a controller that Jenkins no longer lists (`present`
    /// are the ids it lists now), for items whose last change is older than `older_than`:
    /// a lost "left" webhook must not keep an item waiting forever. Returns how many.
    pub async fn close_missing_queue_items(
        &self,
        controller: &ControllerName,
        present: &[u64],
        older_than: Timestamp,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        // The items still waiting are read, those Jenkins no longer lists picked here, and
        // closed a few hundred at a time: a queue of any length works (an SQL list of
        // every present id would not).
        let rows = sqlx::query(
            "SELECT queue_id FROM queue_items WHERE controller = $1 AND state <> 'left' AND state_at < $2",
        )
        .bind(controller.as_str())
        .bind(older_than.millis())
        .fetch_all(&self.pool)
        .await?;
        let present: std::collections::HashSet<i64> = present.iter().map(|&i| i as i64).collect();
        let mut gone = Vec::new();
        for row in &rows {
            let id: i64 = row.try_get("queue_id")?;
            if !present.contains(&id) {
                gone.push(id);
            }
        }
        let mut closed = 0;
        for chunk in write::shaped_chunks(&gone, 500) {
            let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 4)).collect();
            let sql = format!(
                "UPDATE queue_items SET state = 'left', left_at = $2, state_at = $2, updated_at = $2 \
                 WHERE controller = $1 AND state <> 'left' AND state_at < $3 AND queue_id IN ({})",
                marks.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(controller.as_str())
                .bind(now.millis())
                .bind(older_than.millis());
            for id in chunk {
                q = q.bind(*id);
            }
            closed += q.execute(&self.write).await?.rows_affected();
        }
        Ok(closed)
    }

    /// Records one scaling decision.
    pub async fn insert_decision(&self, d: &DecisionRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO scaling_decisions (pool, decided_at, seq, trigger_kind, current_replicas, recommended, \
             desired, rule, reason, outcome, error, inputs) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(d.pool.as_str())
        .bind(d.decided_at.millis())
        .bind(d.seq)
        .bind(crate::domain::name_of(&d.trigger))
        .bind(d.current.map(i64::from))
        .bind(d.recommended.map(i64::from))
        .bind(d.desired.map(i64::from))
        .bind(crate::domain::name_of(&d.rule))
        .bind(d.reason.as_str())
        .bind(crate::domain::name_of(&d.outcome))
        .bind(d.error.as_deref())
        .bind(serde_json::to_string(&d.inputs).map_err(|e| corrupt("inputs", e))?)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Deletes raw events received before `before`, a batch at a time so the writer is
    /// never held up for long; returns how many.
    pub async fn delete_events_before(&self, before: Timestamp) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let done = sqlx::query(
                "DELETE FROM events WHERE idempotency_key IN \
                 (SELECT idempotency_key FROM events WHERE received_at < $1 LIMIT 5000)",
            )
            .bind(before.millis())
            .execute(&self.write)
            .await?;
            total += done.rows_affected();
            if done.rows_affected() < 5000 {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }

    /// Deletes decisions made before `before`; returns how many.
    pub async fn delete_decisions_before(&self, before: Timestamp) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM scaling_decisions WHERE decided_at < $1")
            .bind(before.millis())
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected())
    }
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}
