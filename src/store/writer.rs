//! The single writer: webhook handlers hand it events through a bounded queue and wait for
//! their commit. It commits whatever has queued up in one transaction (group commit), so
//! a flood of webhooks pays one fsync per batch, not per event.

use super::Store;
use crate::domain::{IngestEvent, Timestamp};
use crate::metrics::Metrics;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// What a committed request amounted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Events stored now.
    pub stored: usize,
    /// Events already stored before (redeliveries), skipped.
    pub duplicates: usize,
    /// For each event of the request, in order, whether it was stored now.
    pub stored_events: Vec<bool>,
}

impl WriteOutcome {
    fn of(flags: Vec<bool>) -> Self {
        let stored = flags.iter().filter(|s| **s).count();
        Self {
            stored,
            duplicates: flags.len() - stored,
            stored_events: flags,
        }
    }
}

/// Why a request was not committed. Nothing of it is stored.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the write queue is full")]
    Full,
    #[error("the writer has stopped")]
    Closed,
    /// The database's disk is full: nothing of the request is stored, and the writer
    /// takes events again as soon as there is space.
    #[error("the store's disk is full")]
    DiskFull,
    /// The store failed the write; the cause is logged, never answered.
    #[error("the store refused the write")]
    Failed,
}

impl SubmitError {
    fn of(e: &super::StoreError) -> Self {
        if e.is_disk_full() {
            Self::DiskFull
        } else {
            Self::Failed
        }
    }
}

struct WriteRequest {
    events: Vec<IngestEvent>,
    ack: oneshot::Sender<Result<WriteOutcome, SubmitError>>,
}

/// Submits events to the writer. Cheap to clone.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<WriteRequest>,
    capacity: usize,
    metrics: Metrics,
}

impl WriterHandle {
    /// Queues `events` and waits until they are committed. Fails at once with
    /// [`SubmitError::Full`] when the queue is full: memory stays bounded.
    pub async fn write(&self, events: Vec<IngestEvent>) -> Result<WriteOutcome, SubmitError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .try_send(WriteRequest { events, ack })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => SubmitError::Full,
                mpsc::error::TrySendError::Closed(_) => SubmitError::Closed,
            })?;
        self.metrics
            .write_queue_length
            .set((self.capacity - self.tx.capacity()) as i64);
        match done.await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SubmitError::Closed),
        }
    }
}

/// The writer task.
pub struct Writer;

impl Writer {
    /// Starts the writer on the current runtime. It stops when every handle is dropped,
    /// or when [`Drain::drain`] is called.
    pub fn spawn(
        store: Store,
        capacity: usize,
        max_batch: usize,
        metrics: Metrics,
    ) -> (WriterHandle, Drain) {
        let (tx, rx) = mpsc::channel(capacity);
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(run(store, rx, max_batch, metrics.clone(), stop.clone()));
        (
            WriterHandle {
                tx,
                capacity,
                metrics,
            },
            Drain { stop, task },
        )
    }
}

/// Stops the writer at shutdown: it takes no new events (a webhook then gets 503) and
/// commits every event already queued before it ends.
pub struct Drain {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Drain {
    /// Closes the queue and waits until every queued event is committed (or refused).
    pub async fn drain(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the writer ended abnormally");
        }
    }
}

async fn run(
    store: Store,
    mut rx: mpsc::Receiver<WriteRequest>,
    max_batch: usize,
    metrics: Metrics,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut closed = false;
    loop {
        let first = tokio::select! {
            first = rx.recv() => first,
            _ = stop.cancelled(), if !closed => {
                // No new requests; those queued are still received, then `None`.
                rx.close();
                closed = true;
                continue;
            }
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        let mut events = batch[0].events.len();
        while events < max_batch {
            match rx.try_recv() {
                Ok(req) => {
                    events += req.events.len();
                    batch.push(req);
                }
                Err(_) => break,
            }
        }
        metrics.write_queue_length.set(rx.len() as i64);
        commit(&store, batch, &metrics).await;
    }
    tracing::info!("writer stopped: every queued event committed");
}

async fn commit(store: &Store, batch: Vec<WriteRequest>, metrics: &Metrics) {
    let slices: Vec<&[IngestEvent]> = batch.iter().map(|r| r.events.as_slice()).collect();
    let started = Instant::now();
    let result = store.write_batch_events(&slices, Timestamp::now()).await;
    metrics
        .store_commit_seconds
        .observe(started.elapsed().as_secs_f64());
    metrics.batch_size.observe(batch.len() as f64);
    match result {
        Ok(flags) => {
            for (req, flags) in batch.into_iter().zip(flags) {
                let _ = req.ack.send(Ok(WriteOutcome::of(flags)));
            }
        }
        Err(e) if batch.len() == 1 => {
            tracing::error!(error = %e, "commit failed");
            metrics.store_errors.inc();
            for req in batch {
                let _ = req.ack.send(Err(SubmitError::of(&e)));
            }
        }
        Err(e) if e.is_disk_full() => {
            // No request of the batch can be stored now: each is refused (nothing of it
            // is stored; the transaction rolled back), and the next batch tries again.
            tracing::error!(error = %e, requests = batch.len(), "commit failed: the store's disk is full");
            metrics.store_errors.inc();
            for req in batch {
                let _ = req.ack.send(Err(SubmitError::DiskFull));
            }
        }
        Err(e) => {
            // One request may be what failed the batch: commit each on its own so the
            // others still land and only the bad one is refused.
            tracing::warn!(error = %e, requests = batch.len(), "batch commit failed; retrying requests one by one");
            for req in batch {
                let events = [req.events.as_slice()];
                let started = Instant::now();
                let single = store.write_batch_events(&events, Timestamp::now()).await;
                metrics
                    .store_commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                let reply = match single {
                    Ok(mut flags) => Ok(WriteOutcome::of(flags.swap_remove(0))),
                    Err(e) => {
                        tracing::error!(error = %e, "commit failed");
                        metrics.store_errors.inc();
                        Err(SubmitError::of(&e))
                    }
                };
                let _ = req.ack.send(reply);
            }
        }
    }
}
