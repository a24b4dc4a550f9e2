//! The batched write path. One group commit runs a handful of statements whatever its
//! size: insert the events (skipping keys already stored), load the records they touch,
//! fold the new events in memory in arrival order, write the changed records back.

use super::{StoreError, build_from_row, queue_from_row};
use crate::domain::{
    BuildFacts, BuildRecord, ControllerName, DomainEvent, IngestEvent, JobName, QueueItem,
    Timestamp,
};
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AssertSqlSafe, Row};
use std::collections::{HashMap, HashSet};

mod fold;
use fold::Fold;

type Tx<'a> = sqlx::Transaction<'a, Any>;
type BuildId = (ControllerName, JobName, u64);
type QueueId = (ControllerName, u64);

/// Rows per multi-row statement: keeps every statement well under both databases'
/// bound-parameter limits (SQLite 32766, PostgreSQL 65535).
const CHUNK: usize = 100;

/// A value to bind, so rows of mixed columns can be bound in a loop.
enum Arg {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    OptInt(Option<i64>),
}

/// `items` in chunks of `max`, the rest in chunks of falling powers of two (77 items are
/// 64, 8, 4 and 1): a statement with a row of placeholders per item then takes one of a
/// few shapes, which stay prepared. A chunk of every size made a statement of its own
/// for each: under a steady load every size turned up, the writer's cache of a hundred
/// churned, and batches paid for preparing large statements anew.
pub(super) fn shaped_chunks<T>(items: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = if rest.len() >= max {
            max
        } else {
            1 << rest.len().ilog2()
        };
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

fn bind_all<'q>(
    mut q: Query<'q, Any, AnyArguments>,
    args: Vec<Arg>,
) -> Query<'q, Any, AnyArguments> {
    for a in args {
        q = match a {
            Arg::Text(v) => q.bind(v),
            Arg::OptText(v) => q.bind(v),
            Arg::Int(v) => q.bind(v),
            Arg::OptInt(v) => q.bind(v),
        };
    }
    q
}

/// `($1, $2, ...), ($n+1, ...)` for `rows` rows of `cols` placeholders.
fn placeholders(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let cells: Vec<String> = (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Stores a group of requests' events in one transaction; per request, how many of its
/// events were new.
pub(super) async fn write_batch(
    tx: &mut Tx<'_>,
    batch: &[&[IngestEvent]],
    now: Timestamp,
    lock_records: bool,
) -> Result<Vec<Vec<bool>>, StoreError> {
    // A key seen twice in one batch is a redelivery of the first.
    let mut seen = HashSet::new();
    let mut candidates: Vec<(usize, &IngestEvent)> = Vec::new();
    // Per request, per event: whether this event is the one stored under its key.
    let mut first: Vec<Vec<bool>> = Vec::with_capacity(batch.len());
    for (i, events) in batch.iter().enumerate() {
        let mut flags = Vec::with_capacity(events.len());
        for e in *events {
            let new = seen.insert(e.key.as_str());
            if new {
                candidates.push((i, e));
            }
            flags.push(new);
        }
        first.push(flags);
    }
    let inserted = insert_events(tx, &candidates, now).await?;
    let fresh: Vec<&IngestEvent> = candidates
        .iter()
        .filter(|(_, e)| inserted.contains(e.key.as_str()))
        .map(|(_, e)| *e)
        .collect();
    let stored: Vec<Vec<bool>> = batch
        .iter()
        .zip(first)
        .map(|(events, flags)| {
            events
                .iter()
                .zip(flags)
                .map(|(e, new)| new && inserted.contains(e.key.as_str()))
                .collect()
        })
        .collect();
    if fresh.is_empty() {
        return Ok(stored);
    }
    if lock_records {
        lock_folded(tx, &fresh).await?;
    }

    let mut fold = Fold::load(tx, &fresh).await?;
    for e in &fresh {
        fold.apply(e);
    }
    fold.save(tx, now).await?;
    for e in &fresh {
        write_side_record(tx, e).await?;
    }
    Ok(stored)
}

/// Takes a transaction-scoped PostgreSQL advisory lock on every record the events fold
/// (each build, each queue item), in one order, so two writers folding the same record
/// take turns: the second reads what the first committed. Sorted: no deadlock.
async fn lock_folded(tx: &mut Tx<'_>, events: &[&IngestEvent]) -> Result<(), StoreError> {
    use sha2::Digest;
    let mut keys: Vec<i64> = events
        .iter()
        .flat_map(|e| {
            let c = e.controller.as_str();
            let mut out = Vec::new();
            match &e.event {
                DomainEvent::Build(f) => {
                    out.push(format!(
                        "build\0{c}\0{}\0{}",
                        f.build.job.as_str(),
                        f.build.number
                    ));
                    if let Some(q) = f.queue_id {
                        out.push(format!("queue\0{c}\0{q}"));
                    }
                }
                DomainEvent::Queue(q) => out.push(format!("queue\0{c}\0{}", q.queue_id)),
                _ => {}
            }
            out
        })
        .map(|k| {
            let d = sha2::Sha256::digest(k.as_bytes());
            i64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    for chunk in shaped_chunks(&keys, 100) {
        let sql = format!(
            "SELECT {}",
            (1..=chunk.len())
                .map(|i| format!("CAST(pg_advisory_xact_lock(${i}) AS TEXT)"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let args = chunk.iter().map(|k| Arg::Int(*k)).collect();
        bind_all(sqlx::query(AssertSqlSafe(sql)), args)
            .fetch_all(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn insert_events(
    tx: &mut Tx<'_>,
    events: &[(usize, &IngestEvent)],
    now: Timestamp,
) -> Result<HashSet<String>, StoreError> {
    let mut inserted = HashSet::new();
    for chunk in shaped_chunks(events, CHUNK) {
        let sql = format!(
            "INSERT INTO events (idempotency_key, controller, source, kind, received_at, payload) VALUES {} \
             ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key",
            placeholders(chunk.len(), 6)
        );
        let mut args = Vec::with_capacity(chunk.len() * 6);
        for (_, e) in chunk {
            let payload =
                ledger_payload(&e.event).map_err(|err| StoreError::Corrupt(err.to_string()))?;
            args.extend([
                Arg::Text(e.key.clone()),
                Arg::Text(e.controller.as_str().to_string()),
                Arg::Text(e.source.as_str().to_string()),
                Arg::Text(e.kind.clone()),
                Arg::Int(now.millis()),
                Arg::Text(payload),
            ]);
        }
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), args)
            .fetch_all(&mut **tx)
            .await?;
        for row in rows {
            inserted.insert(row.try_get::<String, _>(0)?);
        }
    }
    Ok(inserted)
}

/// What the event log keeps of an event: its identity and small facts. A build's big
/// fields (parameters, SCM, URL) are stored once, in its record, not again per event.
fn ledger_payload(event: &DomainEvent) -> Result<String, serde_json::Error> {
    match event {
        DomainEvent::Build(f) => serde_json::to_string(&DomainEvent::Build(BuildFacts {
            parameters: None,
            url: None,
            scm_url: None,
            scm_branch: None,
            scm_commit: None,
            ..f.clone()
        })),
        other => serde_json::to_string(other),
    }
}

/// Node states and build steps: few, written one by one.
async fn write_side_record(tx: &mut Tx<'_>, event: &IngestEvent) -> Result<(), StoreError> {
    let controller = &event.controller;
    match &event.event {
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
        DomainEvent::Build(_) | DomainEvent::Queue(_) | DomainEvent::JobChanged { .. } => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::shaped_chunks;

    #[test]
    fn chunks_cover_every_item_in_order_in_a_few_shapes() {
        let mut shapes = std::collections::BTreeSet::new();
        for n in 0..=250usize {
            let items: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = shaped_chunks(&items, 100).collect();
            assert_eq!(chunks.concat(), items, "{n}");
            shapes.extend(chunks.iter().map(|c| c.len()));
        }
        assert_eq!(
            shapes.into_iter().collect::<Vec<_>>(),
            [1, 2, 4, 8, 16, 32, 64, 100]
        );
    }
}
