//! Folding a batch of events into the build and queue records they change: the records
//! are loaded once, every event applied in order, and each changed record saved once.

use super::*;

/// The records a batch touches, loaded once, folded in memory.
pub(super) struct Fold {
    builds: HashMap<BuildId, BuildRecord>,
    queue: HashMap<QueueId, QueueItem>,
    builds_by_queue: HashMap<QueueId, Vec<BuildId>>,
    dirty_builds: HashSet<BuildId>,
    dirty_queue: HashSet<QueueId>,
    /// When each loaded build had finished, as stored (its report rollup hour changes).
    finished_before: HashMap<BuildId, Timestamp>,
}

impl Fold {
    pub(super) async fn load(tx: &mut Tx<'_>, events: &[&IngestEvent]) -> Result<Self, StoreError> {
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
        for chunk in shaped_chunks(&build_ids, CHUNK) {
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
        for chunk in shaped_chunks(&queue_event_ids, CHUNK) {
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
        for chunk in shaped_chunks(&queue_ids, CHUNK) {
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

    pub(super) fn apply(&mut self, e: &IngestEvent) {
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

    pub(super) async fn save(&self, tx: &mut Tx<'_>, now: Timestamp) -> Result<(), StoreError> {
        let builds: Vec<&BuildRecord> = self
            .dirty_builds
            .iter()
            .filter_map(|id| self.builds.get(id))
            .collect();
        for chunk in shaped_chunks(&builds, CHUNK / 2) {
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
        crate::store::rollups::mark_stale(tx, &changed).await?;
        let items: Vec<&QueueItem> = self
            .dirty_queue
            .iter()
            .filter_map(|id| self.queue.get(id))
            .collect();
        for chunk in shaped_chunks(&items, CHUNK) {
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
