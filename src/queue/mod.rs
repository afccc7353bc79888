//! The durable job queue (SPEC §4 dedupe, §7 durability): every accepted push event is fsync'd into an
//! embedded ACID store (`redb`) before [`Queue::enqueue`] returns, and stays there until the worker records
//! its outcome (`complete`, `reschedule`, `bury`).
//!
//! # How it is built
//!
//! - One writer thread owns every write. Callers send requests over a channel; the writer drains all that
//!   are waiting, applies them in ONE write transaction and commits once (one fsync, group commit), then
//!   answers each caller. Thousands of acks per second with fsync on come from this batching.
//! - An in-memory mirror of the pending jobs (plus a ready-time index and a dedupe-key index) serves the
//!   worker's scheduling without touching the disk. The writer is its only mutator and updates it only
//!   after a commit succeeded, so the mirror never shows what is not on disk.
//! - Reads of dead letters use read transactions directly.
//!
//! Files: `store` (tables, row encoding, open-time reads), `writer` (the thread and its group commit),
//! `stage` (one request's decisions and writes inside the group's transaction).
//!
//! This module must not know about registries, clusters or HTTP: it stores [`PushEvent`]s and their
//! attempts, nothing else.

mod stage;
mod store;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;

use redb::Database;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, oneshot};

use crate::event::PushEvent;
use crate::metrics::Metrics;
use writer::{Request, Work};

/// A queued push event and its retry state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Monotonic id; ids are never reused, so id order is acceptance order.
    pub id: u64,
    pub event: PushEvent,
    /// Failed attempts so far (0 for a fresh or retried job).
    pub attempts: u32,
    /// The job is not ready before this Unix-ms instant (acceptance time for a fresh job).
    pub not_before_ms: i64,
    pub last_error: Option<String>,
}

/// A job that ended `dead` (SPEC §7): kept for inspection and `dead-letters retry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub job: Job,
    pub reason: String,
    pub died_at_ms: i64,
}

/// What [`Queue::enqueue`] did with a batch of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EnqueueOutcome {
    /// Events that became new pending jobs.
    pub queued: usize,
    /// Events already seen (same event id) or equivalent to a pending job (same registry, repository,
    /// tag and digest).
    pub duplicates: usize,
}

/// Why a queue operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    /// Accepting the batch would exceed the configured capacity; nothing was written (→ 503).
    #[error("queue is full")]
    Full,
    /// The queue no longer accepts events (shutting down) or its writer has stopped (→ 503).
    #[error("queue is closed")]
    Closed,
    /// The store failed; nothing from the request was committed. Shared so every caller of a failed group
    /// commit gets the cause.
    #[error("queue store: {0}")]
    Storage(#[source] Arc<redb::Error>),
    /// A stored row does not decode: the store holds data this version cannot read.
    #[error("corrupt queue row: {0}")]
    Corrupt(String),
    /// The state directory could not be created, or the writer thread could not start.
    #[error("queue state directory: {0}")]
    Io(#[source] Arc<std::io::Error>),
    /// `complete`/`reschedule`/`bury` named a job that is not pending.
    #[error("job {0} is not pending")]
    UnknownJob(u64),
}

impl QueueError {
    /// Whether the same request may succeed later (capacity frees up, storage recovers).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Full | Self::Closed | Self::Storage(_) | Self::Io(_)
        )
    }

    /// A label from a fixed set, for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Closed => "closed",
            Self::Storage(_) => "storage",
            Self::Corrupt(_) => "corrupt",
            Self::Io(_) => "io",
            Self::UnknownJob(_) => "unknown_job",
        }
    }
}

macro_rules! storage_from {
    ($($t:ty),+) => {$(
        impl From<$t> for QueueError {
            fn from(e: $t) -> Self {
                Self::Storage(Arc::new(redb::Error::from(e)))
            }
        }
    )+};
}
storage_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl From<std::io::Error> for QueueError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(Arc::new(e))
    }
}

/// The in-memory mirror of what is committed. Only the writer mutates it, after a successful commit.
#[derive(Default)]
struct Mirror {
    pending: BTreeMap<u64, Job>,
    /// `(not_before_ms, id)` of every pending job: ready jobs are a prefix, so scheduling is O(ready).
    ready: BTreeSet<(i64, u64)>,
    /// Pending jobs per [`PushEvent::dedupe_key`] (more than one only after a dead letter was retried).
    keys: HashMap<String, usize>,
    dead: usize,
}

impl Mirror {
    fn upsert(&mut self, job: Job) {
        if let Some(old) = self.pending.remove(&job.id) {
            self.ready.remove(&(old.not_before_ms, old.id));
            self.forget_key(&old.event.dedupe_key());
        }
        self.ready.insert((job.not_before_ms, job.id));
        *self.keys.entry(job.event.dedupe_key()).or_insert(0) += 1;
        self.pending.insert(job.id, job);
    }

    fn remove(&mut self, id: u64) {
        if let Some(old) = self.pending.remove(&id) {
            self.ready.remove(&(old.not_before_ms, old.id));
            self.forget_key(&old.event.dedupe_key());
        }
    }

    fn forget_key(&mut self, key: &str) {
        if let Some(n) = self.keys.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.keys.remove(key);
            }
        }
    }
}

/// State shared by the handles and the writer thread.
struct Core {
    /// Taken by [`Queue::shutdown`] so the file is released (and reopenable) while handles remain.
    db: Mutex<Option<Arc<Database>>>,
    mirror: Mutex<Mirror>,
    capacity: usize,
    closed: AtomicBool,
    commits: AtomicU64,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
}

impl Core {
    fn mirror(&self) -> MutexGuard<'_, Mirror> {
        lock(&self.mirror)
    }

    fn db(&self) -> Option<Arc<Database>> {
        lock(&self.db).clone()
    }
}

struct Inner {
    core: Arc<Core>,
    requests: mpsc::Sender<Request>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Inner {
    fn take_writer(&self) -> Option<JoinHandle<()>> {
        lock(&self.writer).take()
    }
}

impl Drop for Inner {
    /// The last handle went away without `shutdown`: stop the writer after it flushed what it holds, so the
    /// store is closed (and reopenable) when this returns.
    fn drop(&mut self) {
        lock(&self.core.db).take();
        if let Some(handle) = self.take_writer() {
            let (reply, _) = oneshot::channel();
            let _ = self.requests.send(Request::Shutdown { reply });
            if handle.join().is_err() {
                tracing::error!("queue writer thread panicked");
            }
        }
    }
}

/// Handle to the durable queue. Cheap to clone; all clones share one store and one writer.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

impl Queue {
    /// Open (or create) `<state_dir>/queue.redb`, load every pending job into memory and start the writer.
    ///
    /// `capacity` bounds pending jobs for [`Queue::enqueue`]; jobs already pending at startup are all loaded
    /// even when they exceed it (new events are then refused until the backlog drains).
    pub fn open(
        state_dir: &Path,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Queue, QueueError> {
        std::fs::create_dir_all(state_dir)?;
        let db = Database::create(state_dir.join(store::FILE_NAME))?;
        store::init(&db, crate::event::now_ms())?;
        let loaded = store::load(&db)?;
        let mut mirror = Mirror::default();
        for job in loaded.pending {
            mirror.upsert(job);
        }
        mirror.dead = loaded.dead;
        metrics.queue_depth.set(mirror.pending.len() as i64);
        metrics.dead_letters.set(mirror.dead as i64);
        tracing::info!(
            path = %state_dir.join(store::FILE_NAME).display(),
            pending = mirror.pending.len(),
            dead = mirror.dead,
            "queue opened"
        );
        let db = Arc::new(db);
        let core = Arc::new(Core {
            db: Mutex::new(Some(db.clone())),
            mirror: Mutex::new(mirror),
            capacity,
            closed: AtomicBool::new(false),
            commits: AtomicU64::new(0),
            wake: Arc::new(Notify::new()),
            metrics,
        });
        let (requests, rx) = mpsc::channel();
        let writer_core = core.clone();
        let next_id = loaded.next_id;
        let handle = std::thread::Builder::new()
            .name("queue-writer".into())
            .spawn(move || writer::run(writer_core, db, rx, next_id))?;
        Ok(Queue {
            inner: Arc::new(Inner {
                core,
                requests,
                writer: Mutex::new(Some(handle)),
            }),
        })
    }

    /// Durably queue a batch of events (all or nothing): returns once the new jobs and the seen event ids
    /// are committed and fsync'd. Duplicates (SPEC §4) are counted, not queued; an event equivalent to a
    /// pending job still has its id recorded as seen.
    pub async fn enqueue(&self, events: Vec<PushEvent>) -> Result<EnqueueOutcome, QueueError> {
        if self.is_closed() {
            return Err(QueueError::Closed);
        }
        if events.is_empty() {
            return Ok(EnqueueOutcome::default());
        }
        self.call(|reply| Request::Work(Work::Enqueue { events, reply }))
            .await
    }

    /// The job ran to an end (`created`, `unchanged` or `ignored`): remove it.
    pub async fn complete(&self, id: u64) -> Result<(), QueueError> {
        self.call(|reply| Request::Work(Work::Complete { id, reply }))
            .await
    }

    /// The job failed retryably: count the attempt, remember the error, run it again after `not_before_ms`.
    pub async fn reschedule(
        &self,
        id: u64,
        not_before_ms: i64,
        error: String,
    ) -> Result<(), QueueError> {
        self.call(|reply| {
            Request::Work(Work::Reschedule {
                id,
                not_before_ms,
                error,
                reply,
            })
        })
        .await
    }

    /// The job ended `dead`: move it to the dead letters in one transaction.
    pub async fn bury(&self, id: u64, reason: String) -> Result<(), QueueError> {
        self.call(|reply| Request::Work(Work::Bury { id, reason, reply }))
            .await
    }

    /// Move dead letters back to pending (all of them when `ids` is empty) with attempts reset and new ids,
    /// so they run after what is already queued. Unknown ids are skipped; returns how many moved.
    ///
    /// This is an operator action and is not bounded by the capacity: it can only re-add jobs that were
    /// pending once, and enqueues are refused until the backlog drains.
    pub async fn retry_dead(&self, ids: &[u64]) -> Result<usize, QueueError> {
        let ids = ids.to_vec();
        self.call(|reply| Request::Work(Work::RetryDead { ids, reply }))
            .await
    }

    /// Every dead letter, in job-id order (read from the store).
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, QueueError> {
        let db = self.inner.core.db().ok_or(QueueError::Closed)?;
        store::dead_letters(&db)
    }

    /// Up to `limit` pending jobs whose `not_before_ms <= now_ms`, earliest-ready first, skipping those for
    /// which `exclude` returns true (e.g. a job for a tag that is already running).
    ///
    /// Cost is O(ready jobs visited), not O(pending): jobs waiting for a retry time are never visited.
    /// `exclude` runs under the queue's lock and must not call back into the queue.
    pub fn ready_jobs(
        &self,
        now_ms: i64,
        limit: usize,
        mut exclude: impl FnMut(&Job) -> bool,
    ) -> Vec<Job> {
        let mirror = self.inner.core.mirror();
        let mut out = Vec::new();
        for &(_, id) in mirror.ready.range(..=(now_ms, u64::MAX)) {
            if out.len() >= limit {
                break;
            }
            match mirror.pending.get(&id) {
                Some(job) if !exclude(job) => out.push(job.clone()),
                _ => {}
            }
        }
        out
    }

    /// When the earliest pending job becomes ready (Unix ms), so a scheduler can sleep until then.
    pub fn next_ready_ms(&self) -> Option<i64> {
        self.inner.core.mirror().ready.first().map(|&(at, _)| at)
    }

    /// Every pending job in id order (inspection and tests; O(pending)).
    pub fn snapshot_pending(&self) -> Vec<Job> {
        self.inner.core.mirror().pending.values().cloned().collect()
    }

    /// Notified (`notify_one`) after every commit that added or rescheduled a job. Meant for the single
    /// scheduling loop; a permit is stored when nobody is waiting, so no wake-up is lost.
    pub fn subscribe(&self) -> Arc<Notify> {
        self.inner.core.wake.clone()
    }

    /// Pending jobs (waiting or running).
    pub fn depth(&self) -> usize {
        self.inner.core.mirror().pending.len()
    }

    /// Group commits made by the writer since open (for tests and benchmarks of batching).
    pub fn commits(&self) -> u64 {
        self.inner.core.commits.load(Ordering::Relaxed)
    }

    /// Refuse new events from now on ([`QueueError::Closed`]); worker operations keep working. Idempotent.
    pub fn close(&self) {
        self.inner.core.closed.store(true, Ordering::SeqCst);
    }

    /// Whether [`Queue::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.core.closed.load(Ordering::SeqCst)
    }

    /// Close, let the writer flush every request sent before this call, stop it and wait for its thread.
    /// Later operations on any clone fail with [`QueueError::Closed`]; the store file is released once this
    /// returns. Idempotent.
    pub async fn shutdown(&self) {
        self.close();
        let (reply, done) = oneshot::channel();
        if self
            .inner
            .requests
            .send(Request::Shutdown { reply })
            .is_ok()
        {
            let _ = done.await;
        }
        if let Some(handle) = self.inner.take_writer() {
            match tokio::task::spawn_blocking(move || handle.join()).await {
                Ok(Ok(())) => tracing::debug!("queue writer stopped"),
                Ok(Err(_)) => tracing::error!("queue writer thread panicked"),
                Err(e) => tracing::error!(error = %e, "joining the queue writer failed"),
            }
        }
        lock(&self.inner.core.db).take();
    }

    async fn call<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T, QueueError>>) -> Request,
    ) -> Result<T, QueueError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .requests
            .send(request(reply))
            .map_err(|_| QueueError::Closed)?;
        answer.await.map_err(|_| QueueError::Closed)?
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}
