//! The run loop: take ready jobs from the durable queue, run them with bounded concurrency, record outcomes.
//!
//! Jobs for the same (namespace, stream, tag) never run concurrently; different tags run in parallel up to
//! `worker.concurrency` (SPEC §7). Every job ends `created`, `unchanged`, `ignored` or `dead`; retryable
//! failures are rescheduled with exponential backoff and jitter, honouring `Retry-After`.

pub mod process;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{Instrument, info, info_span, warn};

pub use process::{JobError, Outcome, Processed, Processor, Request};

use crate::event::now_ms;
use crate::queue::{Job, Queue};

/// First retry delay; doubles per attempt up to [`MAX_BACKOFF`].
pub const BASE_BACKOFF: Duration = Duration::from_millis(500);
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Longest the loop sleeps without a wake-up (new jobs and finished jobs wake it at once; retries are timed
/// with `next_ready_ms`). A safety net, not the scheduling mechanism.
const MAX_IDLE: Duration = Duration::from_secs(1);

/// Delay before attempt `attempts + 1`: full-range jitter over the upper half of an exponential step, and
/// never shorter than the server's `Retry-After`.
pub fn backoff(attempts: u32, retry_after: Option<Duration>) -> Duration {
    let exp = BASE_BACKOFF.saturating_mul(1u32 << attempts.min(16));
    let capped = exp.min(MAX_BACKOFF);
    let jittered = capped.mul_f64(rand::rng().random_range(0.5..=1.0));
    match retry_after {
        Some(ra) => jittered.max(ra.min(Duration::from_secs(600))),
        None => jittered,
    }
}

/// The concurrency key of SPEC §7: (namespace, stream, tag), or a unique key for jobs that map nowhere.
fn job_key(processor: &Processor, job: &Job) -> String {
    let req = request_of(job);
    match processor.target(&req) {
        Ok(t) => format!("{}/{}:{}", t.namespace, t.stream, req.tag),
        Err(_) => format!("unmapped:{}#{}", job.id, req.repository),
    }
}

fn request_of(job: &Job) -> Request {
    Request {
        registry: job.event.registry.clone(),
        repository: job.event.repository.clone(),
        tag: job.event.tag.clone(),
        pinned: None,
        expected: job
            .event
            .digest
            .as_deref()
            .and_then(|d| crate::digest::Digest::parse(d).ok()),
    }
}

/// Run jobs until `shutdown` turns true, then let in-flight jobs finish within `grace`; whatever is left
/// stays queued on disk for the next start.
pub async fn run(
    processor: Arc<Processor>,
    queue: Queue,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let concurrency = processor.config.worker.concurrency;
    let max_attempts = processor.config.worker.max_attempts;
    let permits = Arc::new(Semaphore::new(concurrency));
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::new(Mutex::new(HashSet::new()));
    let wake = queue.subscribe();
    let mut tasks = JoinSet::new();

    loop {
        if *shutdown.borrow() {
            break;
        }
        let available = permits.available_permits();
        if available > 0 {
            let now = now_ms();
            let busy = lock(&in_flight).clone();
            // Each candidate's key is computed once: the chosen jobs take theirs from `keys`.
            let mut taken: HashSet<String> = HashSet::new();
            let mut keys: HashMap<u64, String> = HashMap::new();
            let jobs = queue.ready_jobs(now, available, |job| {
                let key = job_key(&processor, job);
                if busy.contains(&key) || taken.contains(&key) {
                    true
                } else {
                    taken.insert(key.clone());
                    keys.insert(job.id, key);
                    false
                }
            });
            for job in jobs {
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    break;
                };
                let key = keys
                    .remove(&job.id)
                    .unwrap_or_else(|| job_key(&processor, &job));
                lock(&in_flight).insert(key.clone());
                let processor = processor.clone();
                let queue = queue.clone();
                let in_flight = in_flight.clone();
                let wake = wake.clone();
                let span = info_span!("job", id = job.id, event_id = %job.event.event_id,
                    repository = %job.event.repository, tag = %job.event.tag);
                tasks.spawn(
                    async move {
                        let slot = Slot {
                            _permit: permit,
                            wake: wake.clone(),
                        };
                        run_job(&processor, &queue, job, max_attempts, slot).await;
                        lock(&in_flight).remove(&key);
                        wake.notify_one();
                    }
                    .instrument(span),
                );
            }
        }
        // Reap finished tasks so the set does not grow.
        while let Some(res) = tasks.try_join_next() {
            if let Err(e) = res {
                warn!(error = %e, "job task ended abnormally");
            }
        }
        // A due time in the past belongs to a job that is running or waits for its tag's running job:
        // that job's completion wakes the loop, so only future due times (retries) shorten the sleep.
        let idle = match queue.next_ready_ms().map(|due| due - now_ms()) {
            Some(wait) if wait > 0 => Duration::from_millis(wait as u64).min(MAX_IDLE),
            _ => MAX_IDLE,
        };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(idle) => {}
            _ = shutdown.changed() => {}
        }
    }

    let running = tasks.len();
    if running > 0 {
        info!(
            running,
            grace_secs = grace.as_secs_f64(),
            "draining in-flight jobs"
        );
    }
    let drained = tokio::time::timeout(grace, async {
        while let Some(res) = tasks.join_next().await {
            if let Err(e) = res {
                warn!(error = %e, "job task ended abnormally");
            }
        }
    })
    .await;
    if drained.is_err() {
        warn!(
            left = tasks.len(),
            "grace period expired; aborting in-flight jobs (they stay queued and run on the next start)"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// A worker slot: returning it wakes the scheduling loop so the slot is reused at once.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    wake: Arc<Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Process one queued job and record its end in the queue, the metrics and the log.
///
/// The worker slot is released as soon as the registry and cluster work is done, before the
/// queue commit is awaited: the commit is a shared fsync, and another tag's job can use the slot meanwhile.
/// The caller keeps the job's tag key busy until this returns, so the same tag still never runs twice at
/// once, and at most `2 × concurrency` jobs exist (half of them only waiting for their commit).
pub async fn run_job(
    processor: &Processor,
    queue: &Queue,
    job: Job,
    max_attempts: u32,
    slot: Slot,
) {
    let started = Instant::now();
    let req = request_of(&job);
    let result = processor.process(&req).await;
    drop(slot);
    let metrics = &processor.metrics;
    let duration_ms = started.elapsed().as_millis() as u64;
    let event = &job.event;
    match result {
        Ok(p) => {
            let (namespace, stream) = p
                .target
                .as_ref()
                .map(|t| (t.namespace.as_str(), t.stream.as_str()))
                .unwrap_or(("", ""));
            let digest = p.digest.as_ref().map(|d| d.to_string()).unwrap_or_default();
            if let Outcome::Ignored { reason, label } = &p.outcome {
                metrics
                    .ignored
                    .get_or_create(&crate::metrics::ReasonLabels { reason: label })
                    .inc();
                info!(event_id = %event.event_id, repository = %event.repository, tag = %event.tag,
                      digest, namespace, stream, outcome = "ignored", reason, duration_ms, "job finished");
            } else {
                info!(event_id = %event.event_id, repository = %event.repository, tag = %event.tag,
                      digest, namespace, stream, outcome = p.outcome.label(), duration_ms, "job finished");
            }
            if p.outcome == Outcome::Created {
                let secs = (now_ms() - event.received_at_ms).max(0) as f64 / 1000.0;
                metrics.event_to_mapping.observe(secs);
            }
            metrics.job(p.outcome.label());
            if let Err(e) = queue.complete(job.id).await {
                warn!(error = %e, "could not mark job complete; it will run again (idempotent)");
            }
        }
        Err(e) => {
            let attempts = job.attempts + 1;
            let (namespace, stream) = processor
                .target(&req)
                .map(|t| (t.namespace, t.stream))
                .unwrap_or_default();
            let digest = event.digest.as_deref().unwrap_or("");
            if e.is_retryable() && attempts < max_attempts {
                let delay = backoff(job.attempts, e.retry_after());
                warn!(event_id = %event.event_id, repository = %event.repository, tag = %event.tag,
                      digest, namespace, stream, outcome = "retry", attempts, retry_in_ms = delay.as_millis() as u64,
                      cause = e.metric_label(), error = %e, duration_ms, "job failed; will retry");
                metrics.job("retry");
                let not_before = now_ms() + delay.as_millis() as i64;
                if let Err(qe) = queue.reschedule(job.id, not_before, e.to_string()).await {
                    warn!(error = %qe, "could not reschedule job");
                }
            } else {
                let reason = if e.is_retryable() {
                    format!("gave up after {attempts} attempts: {e}")
                } else {
                    e.to_string()
                };
                warn!(event_id = %event.event_id, repository = %event.repository, tag = %event.tag,
                      digest, namespace, stream, outcome = "dead", attempts, cause = e.metric_label(), reason, duration_ms,
                      "job dead-lettered");
                metrics.job("dead");
                if let Err(qe) = queue.bury(job.id, reason).await {
                    warn!(error = %qe, "could not dead-letter job");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        for attempt in 0..20 {
            let d = backoff(attempt, None);
            let step = BASE_BACKOFF
                .saturating_mul(1u32 << attempt.min(16))
                .min(MAX_BACKOFF);
            assert!(d >= step / 2 && d <= step, "attempt {attempt}: {d:?}");
        }
        assert!(backoff(0, Some(Duration::from_secs(7))) >= Duration::from_secs(7));
        assert!(backoff(0, Some(Duration::from_secs(100_000))) <= Duration::from_secs(600));
    }
}
