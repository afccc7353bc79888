//! The queue's single writer: group commit of every waiting request in one fsync'd transaction.
//!
//! Each request is staged in two steps: first every read and decision (dedupe, capacity, "is this job
//! pending"), which may fail for that request alone; then its writes, which can only fail with a storage
//! error, and that aborts the whole group (nobody is answered `Ok` for anything not committed). The
//! in-memory mirror changes only after the commit returned. This file must not be called from async code
//! directly: it blocks on fsync and runs on its own thread.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::time::Instant;

use redb::{Database, WriteTransaction};
use tokio::sync::oneshot;

use super::stage::{self, Op, Staged, Staging, Tables};
use super::store::{self, NEXT_ID};
use super::{Core, EnqueueOutcome, QueueError};
use crate::event::{PushEvent, now_ms};

/// At most this many requests share one transaction (bounds one commit's latency and memory).
const MAX_GROUP: usize = 4096;
/// Expired seen ids are pruned in every this-many commits (and at open).
const PRUNE_EVERY: u64 = 256;

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
    };
    while let Ok(first) = requests.recv() {
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
            for stop in stops {
                let _ = stop.send(());
            }
            break;
        }
    }
}

struct Writer {
    core: Arc<Core>,
    db: Arc<Database>,
    next_id: u64,
    commits_since_prune: u64,
}

impl Writer {
    fn commit_group(&mut self, work: Vec<Work>) {
        let started = Instant::now();
        let size = work.len();
        let now = now_ms();
        let mut staged = Staged::default();
        let mut deferred: Vec<Deferred> = Vec::with_capacity(size);
        let mut work = work.into_iter();
        let mut committed = false;
        let failure = match self.db.begin_write() {
            Err(e) => Some(QueueError::from(e)),
            Ok(txn) => {
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
