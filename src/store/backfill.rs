//! What a backfill of Jenkins' history keeps: its runs, the jobs each read to the end
//! (a stopped run resumes after them), and what the webhooks already said of a job.

use super::{Store, StoreError};
use crate::domain::{ControllerName, Timestamp};
use sqlx::Row;
use std::collections::HashSet;

/// A backfill run as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BackfillRun {
    pub id: i64,
    pub controller: String,
    /// Builds started at or after this instant (epoch ms) are read.
    pub since: i64,
    pub jobs_glob: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// `running`, `done`, `failed`, `cancelled` (stopped on request), `interrupted` (its
    /// process ended while it ran) or `superseded` (a request reaching further back took
    /// its place).
    pub state: String,
    pub error: Option<String>,
}

impl Store {
    /// The controller's unfinished run for the same jobs, with its range and the jobs it
    /// read to the end; else a new run from `since` (and no jobs).
    pub async fn backfill_resume_or_start(
        &self,
        controller: &ControllerName,
        since: Timestamp,
        jobs_glob: &str,
        owner: &str,
        now: Timestamp,
    ) -> Result<(BackfillRun, HashSet<String>), StoreError> {
        let open = sqlx::query(
            "SELECT * FROM backfill_runs WHERE controller = $1 AND jobs_glob = $2 \
             AND state IN ('running', 'failed', 'interrupted') \
             ORDER BY started_at DESC, id DESC LIMIT 1",
        )
        .bind(controller.as_str().to_string())
        .bind(jobs_glob.to_string())
        .fetch_optional(&self.write)
        .await?;
        let open = match open {
            Some(row) => Some(run_from_row(&row)?),
            None => None,
        };
        // A request that reaches further back than the unfinished run cannot take the
        // jobs it read as done (they were read from a later instant): a new run replaces
        // it. One that reaches as far or less resumes it, from its own instant.
        if let Some(run) = open.as_ref().filter(|r| since.millis() < r.since) {
            sqlx::query(
                "UPDATE backfill_runs SET state = 'superseded', finished_at = $1 WHERE id = $2",
            )
            .bind(now.millis())
            .bind(run.id)
            .execute(&self.write)
            .await?;
        }
        if let Some(run) = open.filter(|r| since.millis() >= r.since) {
            sqlx::query(
                "UPDATE backfill_runs SET state = 'running', error = NULL, since = $1, owner = $3 \
                 WHERE id = $2",
            )
            .bind(since.millis())
            .bind(run.id)
            .bind(owner.to_string())
            .execute(&self.write)
            .await?;
            let run = BackfillRun {
                since: since.millis(),
                ..run
            };
            let done: Vec<String> = sqlx::query("SELECT job FROM backfill_jobs WHERE run_id = $1")
                .bind(run.id)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>("job"))
                .collect::<Result<_, _>>()?;
            return Ok((
                BackfillRun {
                    state: "running".into(),
                    error: None,
                    ..run
                },
                done.into_iter().collect(),
            ));
        }
        let id: i64 =
            sqlx::query("SELECT CAST(COALESCE(MAX(id), 0) + 1 AS BIGINT) FROM backfill_runs")
                .fetch_one(&self.write)
                .await?
                .try_get(0)?;
        let run = BackfillRun {
            id,
            controller: controller.as_str().to_string(),
            since: since.millis(),
            jobs_glob: jobs_glob.to_string(),
            started_at: now.millis(),
            finished_at: None,
            state: "running".into(),
            error: None,
        };
        sqlx::query(
            "INSERT INTO backfill_runs (id, controller, since, jobs_glob, started_at, state, owner) \
             VALUES ($1, $2, $3, $4, $5, 'running', $6)",
        )
        .bind(run.id)
        .bind(run.controller.clone())
        .bind(run.since)
        .bind(run.jobs_glob.clone())
        .bind(run.started_at)
        .bind(owner.to_string())
        .execute(&self.write)
        .await?;
        Ok((run, HashSet::new()))
    }

    /// Marks `job` read to the end in run `run_id`.
    pub async fn backfill_job_done(
        &self,
        run_id: i64,
        job: &str,
        builds: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO backfill_jobs (run_id, job, builds, done_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (run_id, job) DO UPDATE SET builds = excluded.builds, done_at = excluded.done_at",
        )
        .bind(run_id)
        .bind(job.to_string())
        .bind(builds as i64)
        .bind(now.millis())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Ends run `run_id` as `done` or `failed` (with the error).
    pub async fn backfill_finish(
        &self,
        run_id: i64,
        error: Option<&str>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE backfill_runs SET state = $1, error = $2, finished_at = $3 WHERE id = $4",
        )
        .bind(if error.is_some() { "failed" } else { "done" })
        .bind(error.map(str::to_string))
        .bind(now.millis())
        .bind(run_id)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Ends run `run_id` as cancelled (stopped on request).
    pub async fn backfill_cancel(&self, run_id: i64, now: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE backfill_runs SET state = 'cancelled', finished_at = $1 WHERE id = $2 \
             AND state = 'running'",
        )
        .bind(now.millis())
        .bind(run_id)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Marks as interrupted the runs still `running` that no process runs any more (at
    /// start: on SQLite one process owns the store, so every one; on PostgreSQL the runs
    /// of this replica's identity, a restart of the same pod). Returns how many.
    pub async fn backfill_mark_interrupted(
        &self,
        owner: &str,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let sql = match self.backend {
            super::Backend::Sqlite => {
                "UPDATE backfill_runs SET state = 'interrupted', finished_at = $1, \
                 error = 'the service stopped while it ran; a new request resumes it' \
                 WHERE state = 'running' AND $2 = $2"
            }
            super::Backend::Postgres => {
                "UPDATE backfill_runs SET state = 'interrupted', finished_at = $1, \
                 error = 'the service stopped while it ran; a new request resumes it' \
                 WHERE state = 'running' AND owner = $2"
            }
        };
        let done = sqlx::query(sql)
            .bind(now.millis())
            .bind(owner.to_string())
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected())
    }

    /// The controller's runs, newest first.
    pub async fn backfill_runs(
        &self,
        controller: &ControllerName,
        limit: u32,
    ) -> Result<Vec<BackfillRun>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT * FROM backfill_runs WHERE controller = $1 ORDER BY started_at DESC, id DESC LIMIT {}",
            limit.min(1000)
        )))
        .bind(controller.as_str().to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(run_from_row)
        .collect()
    }

    /// How many of the controller's build records only the repair found, per controller.
    pub async fn repair_found(&self) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query(
            "SELECT controller, CAST(COUNT(*) AS BIGINT) AS n FROM builds WHERE found_by = 'repair' \
             GROUP BY controller ORDER BY controller",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("controller")?, r.try_get("n")?)))
        .collect()
    }
}

fn run_from_row(row: &sqlx::any::AnyRow) -> Result<BackfillRun, StoreError> {
    Ok(BackfillRun {
        id: row.try_get("id")?,
        controller: row.try_get("controller")?,
        since: row.try_get("since")?,
        jobs_glob: row.try_get("jobs_glob")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        state: row.try_get("state")?,
        error: row.try_get("error")?,
    })
}
