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
    for chunk in keys.chunks(100) {
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
    for chunk in events.chunks(CHUNK) {
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

/// The records a batch touches, loaded once, folded in memory.
struct Fold {
    builds: HashMap<BuildId, BuildRecord>,
    queue: HashMap<QueueId, QueueItem>,
    builds_by_queue: HashMap<QueueId, Vec<BuildId>>,
    dirty_builds: HashSet<BuildId>,
    dirty_queue: HashSet<QueueId>,
    /// When each loaded build had finished, as stored (its report rollup hour changes).
    finished_before: HashMap<BuildId, Timestamp>,
}

impl Fold {
    async fn load(tx: &mut Tx<'_>, events: &[&IngestEvent]) -> Result<Self, StoreError> {
        let mut build_ids: Vec<BuildId> = Vec::new();
        let mut queue_ids: Vec<QueueId> = Vec::new();
        let mut queue_event_ids: Vec<QueueId> = Vec::new();
        for e in events {
            match &e.event {
                DomainEvent::Build(f) => {
                    build_ids.push((e.controller.clone(), f.build.job.clone(), f.build.number));
                    if let Some(q) = f.queue_id {
                        queue_ids.push((e.controller.clone(), q));
                    }
                }
                DomainEvent::Queue(q) => {
                    queue_ids.push((e.controller.clone(), q.queue_id));
                    queue_event_ids.push((e.controller.clone(), q.queue_id));
                }
                _ => {}
            }
        }
        dedup(&mut build_ids);
        dedup(&mut queue_ids);
        dedup(&mut queue_event_ids);

        let mut fold = Self {
            builds: HashMap::new(),
            queue: HashMap::new(),
            builds_by_queue: HashMap::new(),
            dirty_builds: HashSet::new(),
            dirty_queue: HashSet::new(),
            finished_before: HashMap::new(),
        };
        for chunk in build_ids.chunks(CHUNK) {
            let clauses: Vec<String> = (0..chunk.len())
                .map(|i| {
                    format!(
                        "(controller = ${} AND job = ${} AND number = ${})",
                        3 * i + 1,
                        3 * i + 2,
                        3 * i + 3
                    )
                })
                .collect();
            let sql = format!("SELECT * FROM builds WHERE {}", clauses.join(" OR "));
            let args = chunk
                .iter()
                .flat_map(|(c, j, n)| {
                    [
                        Arg::Text(c.as_str().into()),
                        Arg::Text(j.as_str().into()),
                        Arg::Int(*n as i64),
                    ]
                })
                .collect();
            for row in bind_all(sqlx::query(AssertSqlSafe(sql)), args)
                .fetch_all(&mut **tx)
                .await?
            {
                fold.add_build(build_from_row(&row)?);
            }
        }
        // Builds already linked to a queue item that changes in this batch.
        for chunk in queue_event_ids.chunks(CHUNK) {
            let sql = format!(
                "SELECT * FROM builds WHERE {}",
                or_pairs("queue_id", chunk.len())
            );
            for row in bind_all(sqlx::query(AssertSqlSafe(sql)), pair_args(chunk))
                .fetch_all(&mut **tx)
                .await?
            {
                let b = build_from_row(&row)?;
                if !fold
                    .builds
                    .contains_key(&(b.controller.clone(), b.job.clone(), b.number))
                {
                    fold.add_build(b);
                }
            }
        }
        for chunk in queue_ids.chunks(CHUNK) {
            let sql = format!(
                "SELECT * FROM queue_items WHERE {}",
                or_pairs("queue_id", chunk.len())
            );
            for row in bind_all(sqlx::query(AssertSqlSafe(sql)), pair_args(chunk))
                .fetch_all(&mut **tx)
                .await?
            {
                let q = queue_from_row(&row)?;
                fold.queue.insert((q.controller.clone(), q.queue_id), q);
            }
        }
        Ok(fold)
    }

    fn add_build(&mut self, b: BuildRecord) {
        let id = (b.controller.clone(), b.job.clone(), b.number);
        if let Some(at) = b.finished_at {
            self.finished_before.insert(id.clone(), at);
        }
        if let Some(q) = b.queue_id {
            self.builds_by_queue
                .entry((b.controller.clone(), q))
                .or_default()
                .push(id.clone());
        }
        self.builds.insert(id, b);
    }

    fn apply(&mut self, e: &IngestEvent) {
        let c = &e.controller;
        match &e.event {
            DomainEvent::Build(f) => {
                let id = (c.clone(), f.build.job.clone(), f.build.number);
                let record = self.builds.entry(id.clone()).or_insert_with(|| {
                    BuildRecord::empty(c.clone(), f.build.job.clone(), f.build.number)
                });
                let had_queue = record.queue_id;
                record.apply(f);
                record.found(e.source);
                if let Some(q) = record.queue_id {
                    if let Some(item) = self.queue.get(&(c.clone(), q)) {
                        record.apply_queue_item(item);
                    }
                    if had_queue.is_none() {
                        self.builds_by_queue
                            .entry((c.clone(), q))
                            .or_default()
                            .push(id.clone());
                    }
                }
                self.dirty_builds.insert(id);
            }
            DomainEvent::Queue(q) => {
                let qid = (c.clone(), q.queue_id);
                let item = match self.queue.remove(&qid) {
                    Some(mut item) => {
                        item.apply(q);
                        item
                    }
                    None => QueueItem::new(c.clone(), q),
                };
                for bid in self.builds_by_queue.get(&qid).into_iter().flatten() {
                    if let Some(b) = self.builds.get_mut(bid) {
                        b.apply_queue_item(&item);
                        self.dirty_builds.insert(bid.clone());
                    }
                }
                self.queue.insert(qid.clone(), item);
                self.dirty_queue.insert(qid);
            }
            _ => {}
        }
    }

    async fn save(&self, tx: &mut Tx<'_>, now: Timestamp) -> Result<(), StoreError> {
        let builds: Vec<&BuildRecord> = self
            .dirty_builds
            .iter()
            .filter_map(|id| self.builds.get(id))
            .collect();
        for chunk in builds.chunks(CHUNK / 2) {
            save_builds(tx, chunk, now).await?;
        }
        // The report rollups of the hours these builds finished in, before and now, are
        // out of date.
        let changed: Vec<Timestamp> = self
            .dirty_builds
            .iter()
            .flat_map(|id| {
                let now = self.builds.get(id).and_then(|b| b.finished_at);
                [self.finished_before.get(id).copied(), now]
            })
            .flatten()
            .collect();
        super::rollups::mark_stale(tx, &changed).await?;
        let items: Vec<&QueueItem> = self
            .dirty_queue
            .iter()
            .filter_map(|id| self.queue.get(id))
            .collect();
        for chunk in items.chunks(CHUNK) {
            save_queue_items(tx, chunk, now).await?;
        }
        Ok(())
    }
}

fn dedup<T: std::hash::Hash + Eq + Clone>(v: &mut Vec<T>) {
    let mut seen = HashSet::new();
    v.retain(|x| seen.insert(x.clone()));
}

fn or_pairs(col: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("(controller = ${} AND {col} = ${})", 2 * i + 1, 2 * i + 2))
        .collect::<Vec<_>>()
        .join(" OR ")
}

fn pair_args(ids: &[QueueId]) -> Vec<Arg> {
    ids.iter()
        .flat_map(|(c, q)| [Arg::Text(c.as_str().into()), Arg::Int(*q as i64)])
        .collect()
}

const BUILD_COLUMNS: [&str; 21] = [
    "controller",
    "job",
    "number",
    "queue_id",
    "phase",
    "label",
    "node",
    "queued_at",
    "started_at",
    "finished_at",
    "queue_wait_ms",
    "duration_ms",
    "result",
    "parameters",
    "scm_url",
    "scm_branch",
    "scm_commit",
    "url",
    "found_by",
    "sort_at",
    "updated_at",
];

async fn save_builds(
    tx: &mut Tx<'_>,
    records: &[&BuildRecord],
    now: Timestamp,
) -> Result<(), StoreError> {
    let updates: Vec<String> = BUILD_COLUMNS[3..]
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    let sql = format!(
        "INSERT INTO builds ({}) VALUES {} ON CONFLICT (controller, job, number) DO UPDATE SET {}",
        BUILD_COLUMNS.join(", "),
        placeholders(records.len(), BUILD_COLUMNS.len()),
        updates.join(", ")
    );
    let mut args = Vec::with_capacity(records.len() * BUILD_COLUMNS.len());
    for r in records {
        let params =
            serde_json::to_string(&r.parameters).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let sort_at = r
            .started_at
            .or(r.queued_at)
            .or(r.finished_at)
            .unwrap_or(now);
        let ms = |t: Option<Timestamp>| Arg::OptInt(t.map(Timestamp::millis));
        args.extend([
            Arg::Text(r.controller.as_str().into()),
            Arg::Text(r.job.as_str().into()),
            Arg::Int(r.number as i64),
            Arg::OptInt(r.queue_id.map(|q| q as i64)),
            Arg::Text(r.phase.as_str().into()),
            Arg::OptText(r.label.clone()),
            Arg::OptText(r.node.clone()),
            ms(r.queued_at),
            ms(r.started_at),
            ms(r.finished_at),
            Arg::OptInt(r.queue_wait_ms),
            Arg::OptInt(r.duration_ms),
            Arg::OptText(r.result.map(|x| x.as_str().to_string())),
            Arg::Text(params),
            Arg::OptText(r.scm_url.clone()),
            Arg::OptText(r.scm_branch.clone()),
            Arg::OptText(r.scm_commit.clone()),
            Arg::OptText(r.url.clone()),
            Arg::Text(r.found_by.as_str().into()),
            Arg::Int(sort_at.millis()),
            Arg::Int(now.millis()),
        ]);
    }
    bind_all(sqlx::query(AssertSqlSafe(sql)), args)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const QUEUE_COLUMNS: [&str; 11] = [
    "controller",
    "queue_id",
    "task",
    "job",
    "state",
    "state_at",
    "entered_at",
    "left_at",
    "why",
    "label",
    "updated_at",
];

async fn save_queue_items(
    tx: &mut Tx<'_>,
    items: &[&QueueItem],
    now: Timestamp,
) -> Result<(), StoreError> {
    let updates: Vec<String> = QUEUE_COLUMNS[2..]
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    let sql = format!(
        "INSERT INTO queue_items ({}) VALUES {} ON CONFLICT (controller, queue_id) DO UPDATE SET {}",
        QUEUE_COLUMNS.join(", "),
        placeholders(items.len(), QUEUE_COLUMNS.len()),
        updates.join(", ")
    );
    let mut args = Vec::with_capacity(items.len() * QUEUE_COLUMNS.len());
    for q in items {
        args.extend([
            Arg::Text(q.controller.as_str().into()),
            Arg::Int(q.queue_id as i64),
            Arg::Text(q.task.clone()),
            Arg::OptText(q.job.as_ref().map(|j| j.as_str().to_string())),
            Arg::Text(q.state.as_str().into()),
            Arg::Int(q.state_at.millis()),
            Arg::OptInt(q.entered_at.map(Timestamp::millis)),
            Arg::OptInt(q.left_at.map(Timestamp::millis)),
            Arg::OptText(q.why.clone()),
            Arg::OptText(q.label.clone()),
            Arg::Int(now.millis()),
        ]);
    }
    bind_all(sqlx::query(AssertSqlSafe(sql)), args)
        .execute(&mut **tx)
        .await?;
    Ok(())
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
