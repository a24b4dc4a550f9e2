//! Reading builds, the queue and decisions back.

use super::*;
use crate::domain::{
    BuildPhase, BuildRecord, BuildResult, ControllerName, FoundBy, JobName, QueueItem, QueueState,
    Timestamp,
};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::BTreeMap;

/// A build's label and its queue, start and finish instants (epoch ms).
type BuildTimes = (Option<String>, Option<i64>, Option<i64>, Option<i64>);

impl Store {
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

    /// `(label, queued, started, finished)` of a controller's builds sorted at or after
    /// `since`.
    pub(super) async fn build_times(
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
                    trigger: typed(row, "trigger_kind")?,
                    current: replicas("current_replicas")?,
                    recommended: replicas("recommended")?,
                    desired: replicas("desired")?,
                    rule: typed(row, "rule")?,
                    reason: row.try_get("reason")?,
                    outcome: typed(row, "outcome")?,
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

pub(super) fn instant(row: &AnyRow, col: &str) -> Result<Option<Timestamp>, StoreError> {
    row.try_get::<Option<i64>, _>(col)?
        .map(|ms| Timestamp::from_millis(ms).map_err(|e| corrupt(col, e)))
        .transpose()
}

pub(super) fn unsigned(row: &AnyRow, col: &str) -> Result<Option<u64>, StoreError> {
    row.try_get::<Option<i64>, _>(col)?
        .map(|v| u64::try_from(v).map_err(|e| corrupt(col, e)))
        .transpose()
}

pub(super) fn build_from_row(row: &AnyRow) -> Result<BuildRecord, StoreError> {
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

pub(super) fn queue_from_row(row: &AnyRow) -> Result<QueueItem, StoreError> {
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

/// The name stored in `col` as its enum; a name this release does not know is a corrupt
/// row.
fn typed<T: serde::de::DeserializeOwned>(row: &AnyRow, col: &str) -> Result<T, StoreError> {
    let name: String = row.try_get(col)?;
    crate::domain::from_name(&name).ok_or_else(|| corrupt(col, format!("unknown value {name:?}")))
}
