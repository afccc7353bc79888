//! The queue's single writer: group commit of every waiting request in one fsync'd transaction.
//!
//! Each request is staged in two steps: first every read and decision (dedupe, capacity, "is this job
//! pending"), which may fail for that request alone; then its writes, which can only fail with a storage
//! error, and that aborts the whole group (nobody is answered `Ok` for anything not committed). The
//! in-memory mirror changes only after the commit returned. This file must not be called from async code
//! directly: it blocks on fsync and runs on its own thread.
//!
//! Only what must survive a crash is fsync'd before it is answered: enqueues (the 2xx of a notification),
//! dead letters and their retries. A group of nothing but completions and reschedules is committed without
//! an fsync; losing one to a crash only runs that job again, which the level-triggered worker answers with
//! `unchanged`. Such commits are made durable by the next durable commit, by a flush at most
//! [`LAZY_WINDOW`] later, after [`LAZY_MAX`] of them, and at shutdown.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use redb::{Database, Durability, WriteTransaction};
use tokio::sync::oneshot;

use super::stage::{self, Op, Staged, Staging, Tables};
use super::store::{self, NEXT_ID};
use super::{Core, EnqueueOutcome, QueueError};
use crate::event::{PushEvent, now_ms};

/// At most this many requests share one transaction (bounds one commit's latency and memory).
const MAX_GROUP: usize = 4096;
/// Expired seen ids are pruned in every this-many commits (and at open).
const PRUNE_EVERY: u64 = 256;
/// A non-durable commit is flushed to disk at most this long after it was made.
const LAZY_WINDOW: Duration = Duration::from_millis(200);
/// At most this many non-durable commits in a row (redb reuses their pages only after a durable one).
const LAZY_MAX: u32 = 64;

type Reply<T> = oneshot::Sender<Result<T, QueueError>>;

/// A message to the writer thread.
pub(super) enum Request {
    Work(Work),
    /// Flush what was received so far, answer, and stop.
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// A write the writer stages into the next group commit.
pub(super) enum Work {
    Enqueue {
        events: Vec<PushEvent>,
        reply: Reply<EnqueueOutcome>,
    },
    Complete {
        id: u64,
        reply: Reply<()>,
    },
    Reschedule {
        id: u64,
        not_before_ms: i64,
        error: String,
        reply: Reply<()>,
    },
    Bury {
        id: u64,
        reason: String,
        reply: Reply<()>,
    },
    RetryDead {
        ids: Vec<u64>,
        reply: Reply<usize>,
    },
}

/// An answer held back until the commit: given the group's failure, if any.
type Deferred = Box<dyn FnOnce(Option<&QueueError>) + Send>;

fn defer<T: Send + 'static>(reply: Reply<T>, result: Result<T, QueueError>) -> Deferred {
    Box::new(move |failed| {
        let answer = match failed {
            Some(e) => Err(e.clone()),
            None => result,
        };
        // The caller may have given up waiting (its future was dropped): nothing to tell.
        let _ = reply.send(answer);
    })
}

fn settle<T: Send + 'static>(
    reply: Reply<T>,
    staged: Staging<T>,
) -> (Deferred, Option<QueueError>) {
    match staged {
        Ok(result) => (defer(reply, result), None),
        Err(e) => (defer(reply, Err(e.clone())), Some(e)),
    }
}

/// The writer thread's body: runs until a `Shutdown` arrives or every handle is gone.
pub(super) fn run(core: Arc<Core>, db: Arc<Database>, requests: Receiver<Request>, next_id: u64) {
    let mut writer = Writer {
        core,
        db,
        next_id,
        commits_since_prune: 0,
        lazy_commits: 0,
        last_durable: Instant::now(),
    };
    loop {
        let first = if writer.lazy_commits > 0 {
            let wait = LAZY_WINDOW.saturating_sub(writer.last_durable.elapsed());
            match requests.recv_timeout(wait) {
                Ok(r) => r,
                Err(RecvTimeoutError::Timeout) => {
                    writer.flush();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match requests.recv() {
                Ok(r) => r,
                Err(_) => break,
            }
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match requests.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        let mut stops = Vec::new();
        let mut work = Vec::with_capacity(group.len());
        for request in group {
            match request {
                Request::Work(w) => work.push(w),
                Request::Shutdown { reply } => stops.push(reply),
            }
        }
        if !work.is_empty() {
            writer.commit_group(work);
        }
        if !stops.is_empty() {
            writer.flush();
            for stop in stops {
                let _ = stop.send(());
            }
            return;
        }
    }
    writer.flush();
}

struct Writer {
    core: Arc<Core>,
    db: Arc<Database>,
    next_id: u64,
    commits_since_prune: u64,
    /// Commits made without an fsync since the last durable one.
    lazy_commits: u32,
    last_durable: Instant,
}

impl Writer {
    fn commit_group(&mut self, work: Vec<Work>) {
        let started = Instant::now();
        let size = work.len();
        let now = now_ms();
        let mut staged = Staged::default();
        let mut deferred: Vec<Deferred> = Vec::with_capacity(size);
        let durable = work.iter().any(Work::must_be_durable)
            || self.lazy_commits + 1 >= LAZY_MAX
            || self.last_durable.elapsed() >= LAZY_WINDOW;
        let mut work = work.into_iter();
        let mut committed = false;
        let failure = match self.db.begin_write() {
            Err(e) => Some(QueueError::from(e)),
            Ok(mut txn) => {
                if !durable {
                    // Refused only when persistent savepoints changed, which the queue never makes.
                    let _ = txn.set_durability(Durability::None);
                }
                let failure = self.stage_all(&txn, &mut work, &mut staged, &mut deferred, now);
                match failure {
                    None if staged.wrote => {
                        committed = true;
                        txn.commit().err().map(QueueError::from)
                    }
                    None => txn.abort().err().map(QueueError::from),
                    Some(e) => {
                        let _ = txn.abort();
                        Some(e)
                    }
                }
            }
        };
        // Requests never staged (the group failed before them) get the group's error too.
        for w in work {
            deferred.push(w.unstaged());
        }
        match &failure {
            None => {
                if committed {
                    self.core.commits.fetch_add(1, Ordering::Relaxed);
                    if durable {
                        self.lazy_commits = 0;
                        self.last_durable = Instant::now();
                    } else {
                        self.lazy_commits += 1;
                    }
                }
                self.publish(staged);
                tracing::debug!(
                    requests = size,
                    elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                    "queue group committed"
                );
            }
            Some(e) => {
                tracing::debug!(requests = size, error = %e, "queue group commit failed; nothing written");
            }
        }
        for answer in deferred {
            answer(failure.as_ref());
        }
    }

    /// Make every non-durable commit so far durable: an empty transaction committed with an fsync.
    fn flush(&mut self) {
        if self.lazy_commits == 0 {
            return;
        }
        let result = match self.db.begin_write() {
            Ok(txn) => txn.commit().map_err(QueueError::from),
            Err(e) => Err(QueueError::from(e)),
        };
        match result {
            Ok(()) => {
                self.lazy_commits = 0;
                self.last_durable = Instant::now();
            }
            // Nothing acknowledged depends on it; the next durable commit or flush tries again.
            Err(e) => tracing::warn!(error = %e, "queue flush failed"),
        }
    }

    /// Stage every request into `txn`; returns the error that must abort the group, if any.
    fn stage_all(
        &mut self,
        txn: &WriteTransaction,
        work: &mut impl Iterator<Item = Work>,
        staged: &mut Staged,
        deferred: &mut Vec<Deferred>,
        now: i64,
    ) -> Option<QueueError> {
        let mut tables = match Tables::open(txn) {
            Ok(t) => t,
            Err(e) => return Some(e),
        };
        let first_id = self.next_id;
        for w in work.by_ref() {
            let (answer, abort) = self.stage(&mut tables, staged, w, now);
            deferred.push(answer);
            if abort.is_some() {
                return abort;
            }
        }
        if self.next_id != first_id {
            if let Err(e) = tables.meta.insert(NEXT_ID, self.next_id) {
                return Some(e.into());
            }
        }
        if !staged.wrote {
            return None;
        }
        self.commits_since_prune += 1;
        if self.commits_since_prune >= PRUNE_EVERY {
            self.commits_since_prune = 0;
            if let Err(e) = store::prune_seen(&mut tables.seen, &mut tables.by_time, now) {
                return Some(e);
            }
        }
        None
    }

    fn stage(
        &mut self,
        t: &mut Tables<'_>,
        s: &mut Staged,
        work: Work,
        now: i64,
    ) -> (Deferred, Option<QueueError>) {
        match work {
            Work::Enqueue { events, reply } => settle(
                reply,
                stage::stage_enqueue(&self.core, &mut self.next_id, t, s, events, now),
            ),
            Work::Complete { id, reply } => settle(reply, stage::stage_complete(t, s, id)),
            Work::Reschedule {
                id,
                not_before_ms,
                error,
                reply,
            } => settle(
                reply,
                stage::stage_reschedule(t, s, id, not_before_ms, error),
            ),
            Work::Bury { id, reason, reply } => {
                settle(reply, stage::stage_bury(t, s, id, reason, now))
            }
            Work::RetryDead { ids, reply } => {
                settle(reply, stage::stage_retry(&mut self.next_id, t, s, ids, now))
            }
        }
    }
}

impl Work {
    /// Whether the request's answer promises the write survives a crash.
    fn must_be_durable(&self) -> bool {
        match self {
            Work::Enqueue { .. } | Work::Bury { .. } | Work::RetryDead { .. } => true,
            Work::Complete { .. } | Work::Reschedule { .. } => false,
        }
    }

    /// The answer for a request the group never reached: only ever sent with the group's failure.
    fn unstaged(self) -> Deferred {
        match self {
            Work::Enqueue { reply, .. } => defer(reply, Err(QueueError::Closed)),
            Work::RetryDead { reply, .. } => defer(reply, Err(QueueError::Closed)),
            Work::Complete { reply, .. }
            | Work::Reschedule { reply, .. }
            | Work::Bury { reply, .. } => defer(reply, Err(QueueError::Closed)),
        }
    }
}

impl Writer {
    fn publish(&self, staged: Staged) {
        let mut mirror = self.core.mirror();
        let mut wake = false;
        for op in staged.ops {
            match op {
                Op::Upsert(job) => {
                    mirror.upsert(*job);
                    wake = true;
                }
                Op::Remove(id) => mirror.remove(id),
            }
        }
        mirror.dead = (mirror.dead as isize + staged.dead).max(0) as usize;
        self.core
            .metrics
            .queue_depth
            .set(mirror.pending.len() as i64);
        self.core.metrics.dead_letters.set(mirror.dead as i64);
        drop(mirror);
        if wake {
            self.core.wake.notify_one();
        }
    }
}
