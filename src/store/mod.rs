//! All SQL lives here. One schema and one set of queries for SQLite (embedded default,
//! WAL) and PostgreSQL, through sqlx's `Any` driver; `$N` placeholders work on both.

pub(crate) mod analytics;
mod backfill;
mod performance;
mod rollups;
mod settings;
mod write;
mod writer;

pub use analytics::{BuildGroup, DaySums, JobMedian, Measure};
pub use backfill::BackfillRun;
pub use performance::{PricedBuild, StoredPerformance};
pub use rollups::{HOUR_ROWS_KEPT_MS, RollUp, RollupCounts};
pub use writer::{Drain, SubmitError, WriteOutcome, Writer, WriterHandle};

use crate::domain::{
    BuildPhase, BuildRecord, BuildResult, ControllerName, FoundBy, IngestEvent, JobName, QueueItem,
    QueueState, Timestamp,
};
use anyhow::Context;
use secrecy::ExposeSecret;
pub use settings::{DatabaseSettings, SqliteSynchronous};
use sqlx::Connection;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Row, SqlSafeStr};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
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

impl StoreError {
    /// The database's disk is full (SQLite `SQLITE_FULL`, PostgreSQL `disk_full`), or
    /// SQLite could not write its files for want of space (`SQLITE_IOERR` over `ENOSPC`).
    pub fn is_disk_full(&self) -> bool {
        let Self::Database(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Database(db) => {
                let code = db.code();
                // SQLite reports its extended result code; the primary code is its low byte.
                let sqlite_full = code
                    .as_deref()
                    .and_then(|c| c.parse::<i64>().ok())
                    .is_some_and(|c| c & 0xff == 13);
                sqlite_full
                    || code.as_deref() == Some("53100")
                    || db.message().contains("database or disk is full")
            }
            sqlx::Error::Io(io) => io.raw_os_error() == Some(28),
            _ => false,
        }
    }

    /// No connection came free in time: the store is busy, not broken.
    pub fn is_busy(&self) -> bool {
        matches!(self, Self::Database(sqlx::Error::PoolTimedOut))
            || matches!(self, Self::Database(sqlx::Error::Database(db)) if db.code().as_deref() == Some("57014"))
    }
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
}

impl WriteHealth {
    /// Space a webhook's events take at most (a body of the largest size, twice: the
    /// event log and the record), beyond what was free when the disk filled up.
    const MARGIN_BYTES: u64 = 4 << 20;

    fn free_bytes(&self) -> Option<u64> {
        free_disk_bytes(self.dir.as_ref()?).ok()
    }

    /// A disk-full error while the disk that filled up has not got space back.
    fn still_full(&self) -> Option<StoreError> {
        let at = (*self.full_at_free.lock().unwrap_or_else(|p| p.into_inner()))?;
        let now = self.free_bytes()?;
        (now < at.saturating_add(Self::MARGIN_BYTES))
            .then(|| StoreError::Database(sqlx::Error::Io(std::io::Error::from_raw_os_error(28))))
    }
}

/// Bytes free for the service's user on the file system of `dir`.
pub fn free_disk_bytes(dir: &Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(dir)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// The writer checkpoints the WAL itself after a commit that leaves this many pages in
/// it (SQLite's own default, 4 MiB). A checkpoint the writer runs has no writer beside it,
/// so it copies the whole log and the next commit starts it over; a checkpoint beside a
/// steady writer never catches up (see `checkpoint_in_background`).
const WRITER_CHECKPOINT_PAGES: u32 = 1000;

/// Connections for writes on PostgreSQL: the webhook writer, the controllers' decisions,
/// the roll-ups and a backfill each find one free.
const WRITE_CONNECTIONS: u32 = 4;

/// Whether the last write committed, and the WAL's size, as the store last saw them.
#[derive(Debug, Default)]
struct WriteHealth {
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
    pub trigger: String,
    /// Replicas before; `null` when they could not be read.
    pub current: Option<u32>,
    pub recommended: Option<u32>,
    /// Replicas decided; `null` when no decision could be made (a read failed).
    pub desired: Option<u32>,
    /// The rule that fired (`demand`, `min`, `max`, `busy-floor`, `stabilized`,
    /// `rate-limited`, `delay-after-scale-up`, `hold-on-error`, ...).
    pub rule: String,
    pub reason: String,
    /// `applied`, `unchanged`, `dry-run`, `held` or `failed`.
    pub outcome: String,
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

/// A build's label and its queue, start and finish instants (epoch ms).
type BuildTimes = (Option<String>, Option<i64>, Option<i64>, Option<i64>);

impl Store {
    /// Connects to `url`, or to `<data_dir>/autopilot.db` when `url` is `None`, and applies
    /// the migrations.
    pub async fn connect(settings: &DatabaseSettings, data_dir: &Path) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let max_connections = settings.max_connections;
        let synchronous = match settings.sqlite_synchronous {
            SqliteSynchronous::Full => "PRAGMA synchronous = FULL",
            SqliteSynchronous::Normal => "PRAGMA synchronous = NORMAL",
        };
        let url = match settings.url.as_ref() {
            Some(u) => u.expose_secret().to_string(),
            None => {
                std::fs::create_dir_all(data_dir).with_context(|| {
                    format!("creating the data directory {}", data_dir.display())
                })?;
                // It holds build data: readable by the service's user only. SQLite gives
                // its write-ahead log the database file's mode.
                let db = data_dir.join("autopilot.db");
                let mut open = std::fs::OpenOptions::new();
                open.create(true).append(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
                open.open(&db)
                    .with_context(|| format!("creating {}", db.display()))?;
                #[cfg(unix)]
                std::fs::set_permissions(&db, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                    .with_context(|| format!("restricting {}", db.display()))?;
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
        let sqlite_dir = (backend == Backend::Sqlite).then(|| {
            let file = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:")
                .split('?')
                .next()
                .unwrap_or_default();
            Path::new(file)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf()
        });
        let options = AnyConnectOptions::from_str(&url).context("parsing the database URL")?;
        let read_timeout = settings.read_timeout;
        // Writes have connections of their own: a reader that is slow (a client that does
        // not read its answer, a long report) can never hold up a webhook's commit.
        // SQLite has one writer at a time anyway; PostgreSQL's writers (the webhook
        // writer, the controllers, the roll-ups, a backfill) get a few.
        let write_connections = match backend {
            Backend::Sqlite => 1,
            Backend::Postgres => WRITE_CONNECTIONS,
        };
        let write = Self::pool_options(
            backend,
            synchronous,
            write_connections,
            None,
            WRITER_CHECKPOINT_PAGES,
        )
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options.clone())
        .await
        .context("connecting to the database")?;
        let checkpoints = match backend {
            // Checkpoints have a connection of their own too: the writer never waits for
            // one to be copied.
            Backend::Sqlite => Some(
                Self::pool_options(backend, synchronous, 1, None, 0)
                    .connect_lazy_with(options.clone()),
            ),
            Backend::Postgres => None,
        };
        let pool = Self::pool_options(
            backend,
            synchronous,
            max_connections.max(1),
            Some(read_timeout),
            0,
        )
        .acquire_timeout(read_timeout)
        .connect_lazy_with(options);
        let store = Self {
            pool,
            write,
            backend,
            health: Arc::new(WriteHealth {
                dir: sqlite_dir,
                ..WriteHealth::default()
            }),
        };
        store.migrate().await?;
        if let Some(checkpoints) = checkpoints {
            let limit = i64::try_from(settings.wal_limit_mib)
                .unwrap_or(i64::MAX)
                .saturating_mul(1 << 20);
            tokio::spawn(checkpoint_in_background(
                checkpoints,
                store.health.clone(),
                limit,
            ));
        }
        Ok(store)
    }

    /// Options of a pool of `size` connections. A connection that comes back from a
    /// failed transaction is closed, not reused: after SQLite rolled back a transaction
    /// on its own (a full disk), the driver's own rollback fails and the connection would
    /// refuse every later transaction. `read_timeout` marks a read pool: on PostgreSQL its
    /// statements stop after it, on SQLite it cannot write.
    fn pool_options(
        backend: Backend,
        synchronous: &'static str,
        size: u32,
        read_timeout: Option<Duration>,
        writer_checkpoint_pages: u32,
    ) -> AnyPoolOptions {
        let options = AnyPoolOptions::new()
            .max_connections(size)
            .after_release(|conn, _meta| {
                Box::pin(async move {
                    // The ping runs after any rollback the driver queued on drop.
                    if conn.ping().await.is_err() || conn.is_in_transaction() {
                        tracing::warn!("a store connection came back broken; it is closed");
                        return Ok(false);
                    }
                    Ok(true)
                })
            });
        match backend {
            Backend::Sqlite => options.after_connect(move |conn, _meta| {
                Box::pin(async move {
                    // WAL lets readers run beside the writer; FULL makes each commit durable
                    // on return, and group commit keeps that to one fsync per batch.
                    // Checkpoints run in the background (see `checkpoint_in_background`),
                    // not inside whichever commit crosses the WAL size threshold.
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        synchronous,
                        "PRAGMA busy_timeout = 10000",
                        "PRAGMA foreign_keys = ON",
                        // A checkpoint that reached the end truncates the WAL to this.
                        "PRAGMA journal_size_limit = 67108864",
                    ] {
                        sqlx::query(pragma).execute(&mut *conn).await?;
                    }
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "PRAGMA wal_autocheckpoint = {writer_checkpoint_pages}"
                    )))
                    .execute(&mut *conn)
                    .await?;
                    if read_timeout.is_some() {
                        sqlx::query("PRAGMA query_only = ON")
                            .execute(&mut *conn)
                            .await?;
                        // A read connection keeps 512 KiB of pages, not SQLite's 2 MiB:
                        // reads spread over the pool, so each connection's cache filled
                        // in turn and the service's memory crept up by 16 MiB over its
                        // first hour; the operating system caches the file for them all.
                        sqlx::query("PRAGMA cache_size = -512")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            }),
            Backend::Postgres => options.after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if let Some(t) = read_timeout {
                        let ms = t.as_millis().max(1);
                        sqlx::query(sqlx::AssertSqlSafe(format!("SET statement_timeout = {ms}")))
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            }),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        let migrations = vec![
            Migration::new(
                1,
                Cow::Borrowed("initial"),
                MigrationType::Simple,
                include_str!("migrations/0001_initial.sql").into_sql_str(),
                false,
            ),
            Migration::new(
                2,
                Cow::Borrowed("scaling decisions"),
                MigrationType::Simple,
                include_str!("migrations/0002_scaling_decisions.sql").into_sql_str(),
                false,
            ),
            Migration::new(
                3,
                Cow::Borrowed("build performance"),
                MigrationType::Simple,
                include_str!("migrations/0003_build_performance.sql").into_sql_str(),
                false,
            ),
            Migration::new(
                4,
                Cow::Borrowed("builds by finish"),
                MigrationType::Simple,
                include_str!("migrations/0004_builds_finished_at.sql").into_sql_str(),
                false,
            ),
            Migration::new(
                5,
                Cow::Borrowed("backfill"),
                MigrationType::Simple,
                include_str!("migrations/0005_backfill.sql").into_sql_str(),
                false,
            ),
            Migration::new(
                6,
                Cow::Borrowed("report rollups"),
                MigrationType::Simple,
                include_str!("migrations/0006_rollups.sql").into_sql_str(),
                false,
            ),
            Migration::new(
                7,
                Cow::Borrowed("backfill owner"),
                MigrationType::Simple,
                include_str!("migrations/0007_backfill_owner.sql").into_sql_str(),
                false,
            ),
            Migration::new(
                8,
                Cow::Borrowed("rollup marks per writer"),
                MigrationType::Simple,
                include_str!("migrations/0008_rollup_marks.sql").into_sql_str(),
                false,
            ),
            Migration::new(
                9,
                Cow::Borrowed("rollup hours seen"),
                MigrationType::Simple,
                include_str!("migrations/0009_rollup_hours.sql").into_sql_str(),
                false,
            ),
            Migration::new(
                10,
                Cow::Borrowed("events by received_at"),
                MigrationType::Simple,
                include_str!("migrations/0010_events_received_at.sql").into_sql_str(),
                false,
            ),
        ];
        // A rolling upgrade runs this release beside the next one on one store: a
        // migration the next release applied and this one does not know is not an error.
        // Migrations only add (tables, columns with defaults, indexes) for that reason.
        Migrator::with_migrations(migrations)
            .set_ignore_missing(true)
            .run(&self.write)
            .await
            .context("applying database migrations")?;
        Ok(())
    }

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
    fn wrote<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
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

    /// Sends `payload` to every session listening on `channel` (PostgreSQL `NOTIFY`).
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.write.close().await;
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

    /// One page of the queue items seen waiting and not yet left, oldest first, and how
    /// many there are in all: paged in SQL, so a queue of any length costs a page.
    pub async fn waiting_queue_page(
        &self,
        controller: Option<&ControllerName>,
        offset: u64,
        limit: u32,
    ) -> Result<(Vec<QueueItem>, u64), StoreError> {
        let filter = if controller.is_some() {
            "state <> 'left' AND controller = $1"
        } else {
            "state <> 'left'"
        };
        let page = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT * FROM queue_items WHERE {filter} ORDER BY entered_at, queue_id \
             LIMIT {limit} OFFSET {offset}"
        )));
        let count = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM queue_items WHERE {filter}"
        )));
        let (page, count) = match controller {
            Some(c) => (page.bind(c.as_str()), count.bind(c.as_str())),
            None => (page, count),
        };
        let rows = page.fetch_all(&self.pool).await?;
        let total = count.fetch_one(&self.pool).await?;
        let items = rows.iter().map(queue_from_row).collect::<Result<_, _>>()?;
        Ok((items, u64::try_from(total).unwrap_or(0)))
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
        for chunk in gone.chunks(500) {
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
        .bind(d.trigger.as_str())
        .bind(d.current.map(i64::from))
        .bind(d.recommended.map(i64::from))
        .bind(d.desired.map(i64::from))
        .bind(d.rule.as_str())
        .bind(d.reason.as_str())
        .bind(d.outcome.as_str())
        .bind(d.error.as_deref())
        .bind(serde_json::to_string(&d.inputs).map_err(|e| corrupt("inputs", e))?)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// `(label, queued, started, finished)` of a controller's builds sorted at or after
    /// `since`.
    async fn build_times(
        &self,
        controller: &ControllerName,
        since: Timestamp,
    ) -> Result<Vec<BuildTimes>, StoreError> {
        let rows = sqlx::query(
            "SELECT label, queued_at, started_at, finished_at FROM builds \
             WHERE controller = $1 AND sort_at >= $2",
        )
        .bind(controller.as_str())
        .bind(since.millis())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("label")?,
                    row.try_get("queued_at")?,
                    row.try_get("started_at")?,
                    row.try_get("finished_at")?,
                ))
            })
            .collect()
    }

    /// `(label, start, end)` of a controller's builds since `since`: start is the queue
    /// time (or the start), end the finish (`None` while running).
    pub async fn build_spans(
        &self,
        controller: &ControllerName,
        since: Timestamp,
    ) -> Result<Vec<(Option<String>, i64, Option<i64>)>, StoreError> {
        Ok(self
            .build_times(controller, since)
            .await?
            .into_iter()
            .filter_map(|(label, queued, started, finished)| {
                Some((label, queued.or(started)?, finished))
            })
            .collect())
    }

    /// A controller's finished builds sorted at or after `since`, as a replay takes them:
    /// (label, arrived = queued or else started, ran = finished - started or else queued),
    /// epoch ms.
    pub async fn finished_build_runs(
        &self,
        controller: &ControllerName,
        since: Timestamp,
    ) -> Result<Vec<(Option<String>, i64, i64)>, StoreError> {
        Ok(self
            .build_times(controller, since)
            .await?
            .into_iter()
            .filter_map(|(label, queued, started, finished)| {
                let arrived = queued.or(started)?;
                let ran = finished? - started.unwrap_or(arrived);
                (ran > 0).then_some((label, arrived, ran))
            })
            .collect())
    }

    /// Labels of a controller's queue items that entered the queue at or after `since`
    /// (`None` for items whose label is not known).
    pub async fn queue_entries_since(
        &self,
        controller: &ControllerName,
        since: Timestamp,
    ) -> Result<Vec<Option<String>>, StoreError> {
        let rows =
            sqlx::query("SELECT label FROM queue_items WHERE controller = $1 AND entered_at >= $2")
                .bind(controller.as_str())
                .bind(since.millis())
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<Option<String>, _>("label")?))
            .collect()
    }

    /// `(label, queue wait ms)` of a controller's builds that started at or after `since`.
    pub async fn waits_since(
        &self,
        controller: &ControllerName,
        since: Timestamp,
    ) -> Result<Vec<(Option<String>, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT label, queue_wait_ms FROM builds WHERE controller = $1 AND started_at >= $2 \
             AND queue_wait_ms IS NOT NULL",
        )
        .bind(controller.as_str())
        .bind(since.millis())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("label")?, r.try_get("queue_wait_ms")?)))
            .collect()
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

    /// A pool's decisions at or after `since`, newest first.
    pub async fn decisions(
        &self,
        pool: &str,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<DecisionRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT * FROM scaling_decisions WHERE pool = $1 AND decided_at >= $2 \
             ORDER BY decided_at DESC, seq DESC LIMIT {limit}"
        )))
        .bind(pool)
        .bind(since.millis())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let inputs: String = row.try_get("inputs")?;
                let replicas = |col: &str| -> Result<Option<u32>, StoreError> {
                    row.try_get::<Option<i64>, _>(col)?
                        .map(|v| u32::try_from(v).map_err(|e| corrupt(col, e)))
                        .transpose()
                };
                Ok(DecisionRecord {
                    pool: row.try_get("pool")?,
                    decided_at: instant(row, "decided_at")?
                        .ok_or_else(|| corrupt("decided_at", "null"))?,
                    seq: row.try_get("seq")?,
                    trigger: row.try_get("trigger_kind")?,
                    current: replicas("current_replicas")?,
                    recommended: replicas("recommended")?,
                    desired: replicas("desired")?,
                    rule: row.try_get("rule")?,
                    reason: row.try_get("reason")?,
                    outcome: row.try_get("outcome")?,
                    error: row.try_get("error")?,
                    inputs: serde_json::from_str(&inputs).map_err(|e| corrupt("inputs", e))?,
                })
            })
            .collect()
    }

    /// How many rows each table holds.
    pub async fn row_counts(&self) -> Result<RowCounts, StoreError> {
        let count = |sql: &'static str| async move {
            let row = sqlx::query(sql).fetch_one(&self.pool).await?;
            Ok::<i64, StoreError>(row.try_get::<i64, _>(0)?)
        };
        Ok(RowCounts {
            events: count("SELECT COUNT(*) FROM events").await?,
            event_payload_bytes: count(
                "SELECT CAST(COALESCE(SUM(LENGTH(payload)), 0) AS BIGINT) FROM events",
            )
            .await?,
            builds: count("SELECT COUNT(*) FROM builds").await?,
            queue_items: count("SELECT COUNT(*) FROM queue_items").await?,
        })
    }
}

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
async fn checkpoint_in_background(pool: AnyPool, health: Arc<WriteHealth>, limit: i64) {
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
        found_by: match row.try_get::<Option<String>, _>("found_by")? {
            None => FoundBy::Webhook,
            Some(f) => FoundBy::parse(&f).ok_or_else(|| corrupt("found_by", &f))?,
        },
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
