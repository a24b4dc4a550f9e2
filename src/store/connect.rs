//! Opening the store: its pools (reads bounded, writes on connections of their own),
//! the migrations, the health of its writes and the WAL's checkpoints.

use super::health::{WRITER_CHECKPOINT_PAGES, checkpoint_in_background};
use super::*;
use secrecy::ExposeSecret;
use sqlx::Connection;
use sqlx::SqlSafeStr;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

impl Store {
    /// Connects to `url`, or to `<data_dir>/autopilot.db` when `url` is `None`, and applies
    /// the migrations.
    pub async fn connect(settings: &DatabaseSettings, data_dir: &Path) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let max_connections = settings.max_connections;
        let synchronous = match settings.sqlite_synchronous {
            SqliteSynchronous::Full => "PRAGMA synchronous = FULL",
            SqliteSynchronous::Normal => "PRAGMA synchronous = NORMAL",
        };
        let url = match settings.url.as_ref() {
            Some(u) => u.expose_secret().to_string(),
            None => {
                use crate::domain::FileError;
                std::fs::create_dir_all(data_dir)
                    .map_err(FileError::at("creating the data directory", data_dir))?;
                // It holds build data: readable by the service's user only. SQLite gives
                // its write-ahead log the database file's mode.
                let db = data_dir.join("autopilot.db");
                let mut open = std::fs::OpenOptions::new();
                open.create(true).append(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
                open.open(&db).map_err(FileError::at("creating", &db))?;
                #[cfg(unix)]
                std::fs::set_permissions(&db, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                    .map_err(FileError::at("restricting", &db))?;
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
        let options = AnyConnectOptions::from_str(&url).map_err(StoreError::Url)?;
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
        .map_err(StoreError::Connect)?;
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
            health: Arc::new(WriteHealth::on(sqlite_dir)),
            slice_builds: super::slices::SLICE_BUILDS,
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
    pub(super) fn pool_options(
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

    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
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
            .await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.write.close().await;
    }
}

/// Bytes free for the service's user on the file system of `dir`.
pub fn free_disk_bytes(dir: &Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(dir)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Connections for writes on PostgreSQL: the webhook writer, the controllers' decisions,
/// the roll-ups and a backfill each find one free.
const WRITE_CONNECTIONS: u32 = 4;
