//! Staging one request into the open write transaction: decisions first, then writes.
//!
//! Every function here reads and decides (dedupe, capacity, "is this job pending") before it writes, so a
//! request refused on its own (inner `Err`) leaves nothing behind; a write can then only fail with a
//! storage error (outer `Err`), which aborts the whole group. Nothing here commits or touches the mirror:
//! the writer does both.

use std::collections::{BTreeSet, HashMap, HashSet};

use redb::{ReadableTable, Table, WriteTransaction};

use super::store::{self, DEAD, META, PENDING, SEEN, SEEN_BY_TIME};
use super::{Core, DeadLetter, EnqueueOutcome, Job, QueueError};
use crate::event::PushEvent;

/// Outer `Err`: storage failed, abort the group. Inner `Err`: this request alone is refused.
pub(super) type Staging<T> = Result<Result<T, QueueError>, QueueError>;

/// A change to the mirror, applied in order after the commit.
pub(super) enum Op {
    Upsert(Box<Job>),
    Remove(u64),
}

/// What the open transaction changed, relative to the mirror.
#[derive(Default)]
pub(super) struct Staged {
    pub(super) ops: Vec<Op>,
    pub(super) keys: HashMap<String, isize>,
    pub(super) pending: isize,
    pub(super) dead: isize,
    /// Whether anything was written; a group of refused requests is not committed (no fsync for nothing).
    pub(super) wrote: bool,
}

impl Staged {
    pub(super) fn add(&mut self, job: Job) {
        *self.keys.entry(job.event.dedupe_key()).or_insert(0) += 1;
        self.pending += 1;
        self.wrote = true;
        self.ops.push(Op::Upsert(Box::new(job)));
    }

    pub(super) fn remove(&mut self, job: &Job) {
        *self.keys.entry(job.event.dedupe_key()).or_insert(0) -= 1;
        self.pending -= 1;
        self.wrote = true;
        self.ops.push(Op::Remove(job.id));
    }
}

/// Every table, opened once per group commit.
pub(super) struct Tables<'txn> {
    pub(super) pending: Table<'txn, u64, &'static str>,
    pub(super) seen: Table<'txn, &'static str, i64>,
    pub(super) by_time: Table<'txn, (i64, &'static str), ()>,
    pub(super) dead: Table<'txn, u64, &'static str>,
    pub(super) meta: Table<'txn, &'static str, u64>,
}

impl<'txn> Tables<'txn> {
    pub(super) fn open(txn: &'txn WriteTransaction) -> Result<Self, QueueError> {
        Ok(Self {
            pending: txn.open_table(PENDING)?,
            seen: txn.open_table(SEEN)?,
            by_time: txn.open_table(SEEN_BY_TIME)?,
            dead: txn.open_table(DEAD)?,
            meta: txn.open_table(META)?,
        })
    }
}

fn allocate_id(next_id: &mut u64) -> u64 {
    let id = *next_id;
    *next_id += 1;
    id
}

/// Dedupe (SPEC §4) and capacity for one batch, then its writes: new jobs and newly seen event ids.
pub(super) fn stage_enqueue(
    core: &Core,
    next_id: &mut u64,
    t: &mut Tables<'_>,
    s: &mut Staged,
    events: Vec<PushEvent>,
    now: i64,
) -> Staging<EnqueueOutcome> {
    // Decide every event's fate before writing anything: the batch is all or nothing.
    let mut already_seen = Vec::with_capacity(events.len());
    for event in &events {
        already_seen.push(t.seen.get(store::seen_key(event).as_str())?.is_some());
    }
    let mut record = Vec::with_capacity(events.len());
    let mut queue = Vec::with_capacity(events.len());
    {
        let mirror = core.mirror();
        let mut batch_ids = HashSet::new();
        let mut batch_keys = HashSet::new();
        for (event, seen) in events.iter().zip(already_seen) {
            let seen_key = store::seen_key(event);
            let fresh_id = !seen && batch_ids.insert(seen_key);
            record.push(fresh_id);
            if !fresh_id {
                queue.push(false);
                continue;
            }
            let key = event.dedupe_key();
            let pending = mirror.keys.get(&key).copied().unwrap_or(0) as isize
                + s.keys.get(&key).copied().unwrap_or(0);
            queue.push(pending <= 0 && batch_keys.insert(key));
        }
        let queued = queue.iter().filter(|q| **q).count();
        let depth = mirror.pending.len() as isize + s.pending;
        if queued > 0 && depth + queued as isize > core.capacity as isize {
            return Ok(Err(QueueError::Full));
        }
    }
    let mut outcome = EnqueueOutcome::default();
    let mut jobs = Vec::new();
    let mut seen_keys = Vec::new();
    for ((event, record), queue) in events.into_iter().zip(record).zip(queue) {
        if record {
            seen_keys.push(store::seen_key(&event));
        }
        if queue {
            outcome.queued += 1;
            let job = Job {
                id: allocate_id(next_id),
                event,
                attempts: 0,
                not_before_ms: now,
                last_error: None,
            };
            let json = match store::encode(&job) {
                Ok(json) => json,
                Err(e) => return Ok(Err(e)),
            };
            jobs.push((job, json));
        } else {
            outcome.duplicates += 1;
        }
    }
    s.wrote |= !seen_keys.is_empty();
    for key in &seen_keys {
        t.seen.insert(key.as_str(), now)?;
        t.by_time.insert((now, key.as_str()), ())?;
    }
    for (job, json) in jobs {
        t.pending.insert(job.id, json.as_str())?;
        s.add(job);
    }
    Ok(Ok(outcome))
}

/// Move dead letters back to pending under new ids (all when `ids` is empty).
pub(super) fn stage_retry(
    next_id: &mut u64,
    t: &mut Tables<'_>,
    s: &mut Staged,
    ids: Vec<u64>,
    now: i64,
) -> Staging<usize> {
    let ids: BTreeSet<u64> = if ids.is_empty() {
        let mut all = BTreeSet::new();
        for row in t.dead.iter()? {
            all.insert(row?.0.value());
        }
        all
    } else {
        ids.into_iter().collect()
    };
    let mut moves = Vec::new();
    for old_id in ids {
        let letter = match read_row::<DeadLetter>(&t.dead, "dead", old_id)? {
            Some(Ok(letter)) => letter,
            Some(Err(e)) => return Ok(Err(e)),
            None => continue,
        };
        let job = Job {
            id: allocate_id(next_id),
            attempts: 0,
            not_before_ms: now,
            ..letter.job
        };
        let json = match store::encode(&job) {
            Ok(json) => json,
            Err(e) => return Ok(Err(e)),
        };
        moves.push((old_id, job, json));
    }
    let moved = moves.len();
    for (old_id, job, json) in moves {
        t.dead.remove(old_id)?;
        t.pending.insert(job.id, json.as_str())?;
        s.add(job);
        s.dead -= 1;
    }
    Ok(Ok(moved))
}

/// Read and decode one row: `None` when absent, `Some(Err)` when it does not decode.
fn read_row<T: serde::de::DeserializeOwned>(
    table: &Table<'_, u64, &'static str>,
    name: &str,
    id: u64,
) -> Result<Option<Result<T, QueueError>>, QueueError> {
    Ok(table
        .get(id)?
        .map(|row| store::decode::<T>(name, id, row.value())))
}

fn pending_job(t: &Tables<'_>, id: u64) -> Staging<Job> {
    Ok(match read_row::<Job>(&t.pending, "pending", id)? {
        Some(result) => result,
        None => Err(QueueError::UnknownJob(id)),
    })
}

pub(super) fn stage_complete(t: &mut Tables<'_>, s: &mut Staged, id: u64) -> Staging<()> {
    let job = match pending_job(t, id)? {
        Ok(job) => job,
        Err(e) => return Ok(Err(e)),
    };
    t.pending.remove(id)?;
    s.remove(&job);
    Ok(Ok(()))
}

pub(super) fn stage_reschedule(
    t: &mut Tables<'_>,
    s: &mut Staged,
    id: u64,
    not_before_ms: i64,
    error: String,
) -> Staging<()> {
    let job = match pending_job(t, id)? {
        Ok(job) => job,
        Err(e) => return Ok(Err(e)),
    };
    let job = Job {
        attempts: job.attempts.saturating_add(1),
        not_before_ms,
        last_error: Some(error),
        ..job
    };
    let json = match store::encode(&job) {
        Ok(json) => json,
        Err(e) => return Ok(Err(e)),
    };
    t.pending.insert(id, json.as_str())?;
    // Same dedupe key before and after: only the mirror's copy changes.
    s.wrote = true;
    s.ops.push(Op::Upsert(Box::new(job)));
    Ok(Ok(()))
}

pub(super) fn stage_bury(
    t: &mut Tables<'_>,
    s: &mut Staged,
    id: u64,
    reason: String,
    now: i64,
) -> Staging<()> {
    let job = match pending_job(t, id)? {
        Ok(job) => job,
        Err(e) => return Ok(Err(e)),
    };
    let letter = DeadLetter {
        job,
        reason,
        died_at_ms: now,
    };
    let json = match store::encode(&letter) {
        Ok(json) => json,
        Err(e) => return Ok(Err(e)),
    };
    t.pending.remove(id)?;
    t.dead.insert(id, json.as_str())?;
    s.remove(&letter.job);
    s.dead += 1;
    Ok(Ok(()))
}
