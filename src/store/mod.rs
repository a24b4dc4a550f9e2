//! All SQL lives here. One schema and one set of queries for SQLite (embedded default,
//! WAL) and PostgreSQL, through sqlx's `Any` driver; `$N` placeholders work on both.

mod writer;

pub use writer::{SubmitError, WriteOutcome, Writer, WriterHandle};

use crate::domain::{
    BuildPhase, BuildRecord, BuildResult, ControllerName, DomainEvent, IngestEvent, JobName,
    QueueItem, QueueState, Timestamp,
};
use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Row, SqlSafeStr};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
}

/// The database handle. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
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

/// Counts of stored rows, for tests and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowCounts {
    pub events: i64,
    pub builds: i64,
    pub queue_items: i64,
}

impl Store {
    /// Connects to `url`, or to `<data_dir>/autopilot.db` when `url` is `None`, and applies
    /// the migrations.
    pub async fn connect(
        url: Option<&secrecy::SecretString>,
        data_dir: &Path,
        max_connections: u32,
    ) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let url = match url {
            Some(u) => u.expose_secret().to_string(),
            None => {
                std::fs::create_dir_all(data_dir).with_context(|| {
                    format!("creating the data directory {}", data_dir.display())
                })?;
                format!(
                    "sqlite://{}?mode=rwc",
                    data_dir.join("autopilot.db").display()
                )
            }
        };
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let options = AnyConnectOptions::from_str(&url).context("parsing the database URL")?;
        let mut pool_options = AnyPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            pool_options = pool_options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // WAL lets readers run beside the writer; FULL makes each commit durable
                    // on return, and group commit keeps that to one fsync per batch.
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = FULL",
                        "PRAGMA busy_timeout = 10000",
                        "PRAGMA foreign_keys = ON",
                    ] {
                        sqlx::query(pragma).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            });
        }
        let pool = pool_options
            .connect_with(options)
            .await
            .context("connecting to the database")?;
        let store = Self { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        let migrations = vec![Migration::new(
            1,
            Cow::Borrowed("initial"),
            MigrationType::Simple,
            include_str!("migrations/0001_initial.sql").into_sql_str(),
            false,
        )];
        Migrator::with_migrations(migrations)
            .run(&self.pool)
            .await
            .context("applying database migrations")?;
        Ok(())
    }

    /// Answers when the database answers a query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Stores a group of requests' events in one transaction. Returns, per request, how
    /// many of its events were new (a redelivered event is skipped).
    pub(crate) async fn write_batch(
        &self,
        batch: &[&[IngestEvent]],
        now: Timestamp,
    ) -> Result<Vec<usize>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut stored = Vec::with_capacity(batch.len());
        for events in batch {
            let mut n = 0;
            for event in *events {
                if apply_event(&mut tx, event, now).await? {
                    n += 1;
                }
            }
            stored.push(n);
        }
        tx.commit().await?;
        Ok(stored)
    }

    /// Builds, newest first.
    pub async fn list_builds(&self, filter: &BuildFilter) -> Result<Vec<BuildRecord>, StoreError> {
        let mut sql = String::from("SELECT * FROM builds WHERE 1 = 1");
        let mut args: Vec<String> = Vec::new();
        let mut n = 0;
        let mut bind = |sql: &mut String, clause: &str| {
            n += 1;
            sql.push_str(&clause.replace('?', &format!("${n}")));
        };
        if let Some(c) = &filter.controller {
            bind(&mut sql, " AND controller = ?");
            args.push(c.as_str().to_string());
        }
        if let Some(j) = &filter.job {
            bind(&mut sql, " AND job = ?");
            args.push(j.as_str().to_string());
        }
        if let Some(r) = filter.result {
            bind(&mut sql, " AND result = ?");
            args.push(r.as_str().to_string());
        }
        let since_idx = filter.since.map(|s| {
            bind(&mut sql, " AND sort_at >= ?");
            s.millis()
        });
        sql.push_str(&format!(
            " ORDER BY sort_at DESC, number DESC LIMIT {}",
            filter.limit
        ));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in args {
            query = query.bind(a);
        }
        if let Some(s) = since_idx {
            query = query.bind(s);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(build_from_row).collect()
    }

    /// One build.
    pub async fn get_build(
        &self,
        controller: &ControllerName,
        job: &JobName,
        number: u64,
    ) -> Result<Option<BuildRecord>, StoreError> {
        let row =
            sqlx::query("SELECT * FROM builds WHERE controller = $1 AND job = $2 AND number = $3")
                .bind(controller.as_str())
                .bind(job.as_str())
                .bind(number as i64)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(build_from_row).transpose()
    }

    /// Queue items seen waiting and not yet left, oldest first.
    pub async fn waiting_queue(
        &self,
        controller: Option<&ControllerName>,
    ) -> Result<Vec<QueueItem>, StoreError> {
        let rows = match controller {
            Some(c) => {
                sqlx::query("SELECT * FROM queue_items WHERE state <> 'left' AND controller = $1 ORDER BY entered_at, queue_id")
                    .bind(c.as_str())
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM queue_items WHERE state <> 'left' ORDER BY entered_at, queue_id")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(queue_from_row).collect()
    }

    /// How many rows each table holds.
    pub async fn row_counts(&self) -> Result<RowCounts, StoreError> {
        let count = |sql: &'static str| async move {
            let row = sqlx::query(sql).fetch_one(&self.pool).await?;
            Ok::<i64, StoreError>(row.try_get::<i64, _>(0)?)
        };
        Ok(RowCounts {
            events: count("SELECT COUNT(*) FROM events").await?,
            builds: count("SELECT COUNT(*) FROM builds").await?,
            queue_items: count("SELECT COUNT(*) FROM queue_items").await?,
        })
    }
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// Records one event and folds it into its records. `false` when it was already stored.
async fn apply_event(
    tx: &mut Tx<'_>,
    event: &IngestEvent,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let payload =
        serde_json::to_string(&event.event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let inserted = sqlx::query(
        "INSERT INTO events (idempotency_key, controller, source, kind, received_at, payload) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(event.key.as_str())
    .bind(event.controller.as_str())
    .bind(event.source.as_str())
    .bind(event.kind.as_str())
    .bind(now.millis())
    .bind(payload)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(false);
    }
    let controller = &event.controller;
    match &event.event {
        DomainEvent::Build(facts) => {
            let mut record = load_build(tx, controller, &facts.build.job, facts.build.number)
                .await?
                .unwrap_or_else(|| {
                    BuildRecord::empty(
                        controller.clone(),
                        facts.build.job.clone(),
                        facts.build.number,
                    )
                });
            record.apply(facts);
            if let Some(qid) = record.queue_id
                && let Some(item) = load_queue_item(tx, controller, qid).await?
            {
                record.apply_queue_item(&item);
            }
            save_build(tx, &record, now).await?;
        }
        DomainEvent::Queue(q) => {
            let item = match load_queue_item(tx, controller, q.queue_id).await? {
                Some(mut item) => {
                    item.apply(q);
                    item
                }
                None => QueueItem::new(controller.clone(), q),
            };
            save_queue_item(tx, &item, now).await?;
            let rows = sqlx::query("SELECT * FROM builds WHERE controller = $1 AND queue_id = $2")
                .bind(controller.as_str())
                .bind(q.queue_id as i64)
                .fetch_all(&mut **tx)
                .await?;
            for row in rows {
                let mut record = build_from_row(&row)?;
                record.apply_queue_item(&item);
                save_build(tx, &record, now).await?;
            }
        }
        DomainEvent::Node(n) => {
            // Only a newer change replaces the node's state.
            sqlx::query(
                "INSERT INTO nodes (controller, name, online, executors, offline_cause, changed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (controller, name) DO UPDATE SET online = excluded.online, \
                 executors = COALESCE(excluded.executors, nodes.executors), \
                 offline_cause = excluded.offline_cause, changed_at = excluded.changed_at \
                 WHERE excluded.changed_at >= nodes.changed_at",
            )
            .bind(controller.as_str())
            .bind(n.node.as_str())
            .bind(i64::from(n.online))
            .bind(n.executors.map(i64::from))
            .bind(n.offline_cause.as_deref())
            .bind(n.at.millis())
            .execute(&mut **tx)
            .await?;
        }
        DomainEvent::Step(s) => {
            sqlx::query(
                "INSERT INTO build_steps (controller, job, number, step_id, step_type, started_at, finished_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (controller, job, number, step_id) DO UPDATE SET \
                 started_at = COALESCE(build_steps.started_at, excluded.started_at), \
                 finished_at = COALESCE(excluded.finished_at, build_steps.finished_at)",
            )
            .bind(controller.as_str())
            .bind(s.build.job.as_str())
            .bind(s.build.number as i64)
            .bind(s.step_id.as_str())
            .bind(s.step_type.as_str())
            .bind(s.started_at.map(Timestamp::millis))
            .bind(s.finished_at.map(Timestamp::millis))
            .execute(&mut **tx)
            .await?;
        }
        DomainEvent::JobChanged { .. } => {}
    }
    Ok(true)
}

async fn load_build(
    tx: &mut Tx<'_>,
    controller: &ControllerName,
    job: &JobName,
    number: u64,
) -> Result<Option<BuildRecord>, StoreError> {
    let row =
        sqlx::query("SELECT * FROM builds WHERE controller = $1 AND job = $2 AND number = $3")
            .bind(controller.as_str())
            .bind(job.as_str())
            .bind(number as i64)
            .fetch_optional(&mut **tx)
            .await?;
    row.as_ref().map(build_from_row).transpose()
}

async fn save_build(tx: &mut Tx<'_>, r: &BuildRecord, now: Timestamp) -> Result<(), StoreError> {
    let params =
        serde_json::to_string(&r.parameters).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let sort_at = r
        .started_at
        .or(r.queued_at)
        .or(r.finished_at)
        .unwrap_or(now);
    sqlx::query(
        "INSERT INTO builds (controller, job, number, queue_id, phase, label, node, queued_at, started_at, \
         finished_at, queue_wait_ms, duration_ms, result, parameters, scm_url, scm_branch, scm_commit, url, \
         sort_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20) \
         ON CONFLICT (controller, job, number) DO UPDATE SET queue_id = excluded.queue_id, \
         phase = excluded.phase, label = excluded.label, node = excluded.node, queued_at = excluded.queued_at, \
         started_at = excluded.started_at, finished_at = excluded.finished_at, \
         queue_wait_ms = excluded.queue_wait_ms, duration_ms = excluded.duration_ms, result = excluded.result, \
         parameters = excluded.parameters, scm_url = excluded.scm_url, scm_branch = excluded.scm_branch, \
         scm_commit = excluded.scm_commit, url = excluded.url, sort_at = excluded.sort_at, \
         updated_at = excluded.updated_at",
    )
    .bind(r.controller.as_str())
    .bind(r.job.as_str())
    .bind(r.number as i64)
    .bind(r.queue_id.map(|q| q as i64))
    .bind(r.phase.as_str())
    .bind(r.label.as_deref())
    .bind(r.node.as_deref())
    .bind(r.queued_at.map(Timestamp::millis))
    .bind(r.started_at.map(Timestamp::millis))
    .bind(r.finished_at.map(Timestamp::millis))
    .bind(r.queue_wait_ms)
    .bind(r.duration_ms)
    .bind(r.result.map(BuildResult::as_str))
    .bind(params)
    .bind(r.scm_url.as_deref())
    .bind(r.scm_branch.as_deref())
    .bind(r.scm_commit.as_deref())
    .bind(r.url.as_deref())
    .bind(sort_at.millis())
    .bind(now.millis())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn load_queue_item(
    tx: &mut Tx<'_>,
    controller: &ControllerName,
    queue_id: u64,
) -> Result<Option<QueueItem>, StoreError> {
    let row = sqlx::query("SELECT * FROM queue_items WHERE controller = $1 AND queue_id = $2")
        .bind(controller.as_str())
        .bind(queue_id as i64)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(queue_from_row).transpose()
}

async fn save_queue_item(tx: &mut Tx<'_>, q: &QueueItem, now: Timestamp) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO queue_items (controller, queue_id, task, job, state, state_at, entered_at, left_at, why, label, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (controller, queue_id) DO UPDATE SET task = excluded.task, job = excluded.job, \
         state = excluded.state, state_at = excluded.state_at, entered_at = excluded.entered_at, \
         left_at = excluded.left_at, why = excluded.why, label = excluded.label, updated_at = excluded.updated_at",
    )
    .bind(q.controller.as_str())
    .bind(q.queue_id as i64)
    .bind(q.task.as_str())
    .bind(q.job.as_ref().map(JobName::as_str))
    .bind(q.state.as_str())
    .bind(q.state_at.millis())
    .bind(q.entered_at.map(Timestamp::millis))
    .bind(q.left_at.map(Timestamp::millis))
    .bind(q.why.as_deref())
    .bind(q.label.as_deref())
    .bind(now.millis())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}

fn instant(row: &AnyRow, col: &str) -> Result<Option<Timestamp>, StoreError> {
    row.try_get::<Option<i64>, _>(col)?
        .map(|ms| Timestamp::from_millis(ms).map_err(|e| corrupt(col, e)))
        .transpose()
}

fn unsigned(row: &AnyRow, col: &str) -> Result<Option<u64>, StoreError> {
    row.try_get::<Option<i64>, _>(col)?
        .map(|v| u64::try_from(v).map_err(|e| corrupt(col, e)))
        .transpose()
}

fn build_from_row(row: &AnyRow) -> Result<BuildRecord, StoreError> {
    let controller = ControllerName::parse(&row.try_get::<String, _>("controller")?)
        .map_err(|e| corrupt("controller", e))?;
    let job = JobName::parse(&row.try_get::<String, _>("job")?).map_err(|e| corrupt("job", e))?;
    let phase_raw: String = row.try_get("phase")?;
    let phase = BuildPhase::parse(&phase_raw).ok_or_else(|| corrupt("phase", &phase_raw))?;
    let result = match row.try_get::<Option<String>, _>("result")? {
        Some(r) => BuildResult::parse(&r).map_err(|e| corrupt("result", e))?,
        None => None,
    };
    let params: String = row.try_get("parameters")?;
    let parameters: BTreeMap<String, String> =
        serde_json::from_str(&params).map_err(|e| corrupt("parameters", e))?;
    Ok(BuildRecord {
        controller,
        job,
        number: unsigned(row, "number")?.ok_or_else(|| corrupt("number", "null"))?,
        queue_id: unsigned(row, "queue_id")?,
        phase,
        label: row.try_get("label")?,
        node: row.try_get("node")?,
        queued_at: instant(row, "queued_at")?,
        started_at: instant(row, "started_at")?,
        finished_at: instant(row, "finished_at")?,
        queue_wait_ms: row.try_get("queue_wait_ms")?,
        duration_ms: row.try_get("duration_ms")?,
        result,
        parameters,
        scm_url: row.try_get("scm_url")?,
        scm_branch: row.try_get("scm_branch")?,
        scm_commit: row.try_get("scm_commit")?,
        url: row.try_get("url")?,
    })
}

fn queue_from_row(row: &AnyRow) -> Result<QueueItem, StoreError> {
    let controller = ControllerName::parse(&row.try_get::<String, _>("controller")?)
        .map_err(|e| corrupt("controller", e))?;
    let state_raw: String = row.try_get("state")?;
    let job = match row.try_get::<Option<String>, _>("job")? {
        Some(j) => Some(JobName::parse(&j).map_err(|e| corrupt("job", e))?),
        None => None,
    };
    Ok(QueueItem {
        controller,
        queue_id: unsigned(row, "queue_id")?.ok_or_else(|| corrupt("queue_id", "null"))?,
        task: row.try_get("task")?,
        job,
        state: QueueState::parse(&state_raw).ok_or_else(|| corrupt("state", &state_raw))?,
        state_at: instant(row, "state_at")?.ok_or_else(|| corrupt("state_at", "null"))?,
        entered_at: instant(row, "entered_at")?,
        left_at: instant(row, "left_at")?,
        why: row.try_get("why")?,
        label: row.try_get("label")?,
    })
}
