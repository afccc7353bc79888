//! The on-disk layout of the queue (tables, row encoding) and the reads done outside the writer.
//!
//! Rows are JSON so a stored job can be read by a human with any redb viewer and survives added optional
//! fields. This file must not write anything but the table creation and seen-id pruning at open; every
//! other write belongs to the writer thread.

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{DeadLetter, Job, QueueError};
use crate::event::PushEvent;

/// File name of the store inside the state directory.
pub(super) const FILE_NAME: &str = "queue.redb";

/// Pending jobs: job id → JSON [`Job`].
pub(super) const PENDING: TableDefinition<u64, &str> = TableDefinition::new("pending");
/// Seen event ids: `"<source>\0<event_id>"` → Unix ms when first seen (SPEC §4 dedupe across restarts).
pub(super) const SEEN: TableDefinition<&str, i64> = TableDefinition::new("seen");
/// The same entries ordered by time, so pruning visits only what expires.
pub(super) const SEEN_BY_TIME: TableDefinition<(i64, &str), ()> =
    TableDefinition::new("seen_by_time");
/// Dead letters: job id → JSON [`DeadLetter`].
pub(super) const DEAD: TableDefinition<u64, &str> = TableDefinition::new("dead");
/// Counters that must survive restarts (`next_id`).
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(super) const NEXT_ID: &str = "next_id";

/// How long an event id is remembered. A registry re-sends within minutes; a day covers long outages.
pub(super) const SEEN_TTL_MS: i64 = 24 * 60 * 60 * 1000;
/// At most this many expired seen ids are removed per pruning pass, to bound one commit's latency.
pub(super) const PRUNE_BATCH: usize = 10_000;

/// The key under which an event id is remembered.
pub(super) fn seen_key(event: &PushEvent) -> String {
    format!("{}\u{0}{}", event.source, event.event_id)
}

pub(super) fn encode<T: Serialize>(value: &T) -> Result<String, QueueError> {
    serde_json::to_string(value).map_err(|e| QueueError::Corrupt(format!("encoding a row: {e}")))
}

pub(super) fn decode<T: DeserializeOwned>(
    table: &str,
    id: u64,
    row: &str,
) -> Result<T, QueueError> {
    serde_json::from_str(row).map_err(|e| QueueError::Corrupt(format!("{table} row {id}: {e}")))
}

/// What [`load`] found.
pub(super) struct Loaded {
    pub pending: Vec<Job>,
    pub dead: usize,
    pub next_id: u64,
}

/// Create every table (so read transactions find them) and prune expired seen ids.
pub(super) fn init(db: &Database, now_ms: i64) -> Result<(), QueueError> {
    let txn = db.begin_write()?;
    {
        txn.open_table(PENDING)?;
        txn.open_table(DEAD)?;
        txn.open_table(META)?;
        let mut seen = txn.open_table(SEEN)?;
        let mut by_time = txn.open_table(SEEN_BY_TIME)?;
        loop {
            let pruned = prune_seen(&mut seen, &mut by_time, now_ms)?;
            if pruned < PRUNE_BATCH {
                break;
            }
        }
    }
    txn.commit()?;
    Ok(())
}

/// Remove up to [`PRUNE_BATCH`] seen ids older than [`SEEN_TTL_MS`]; returns how many went.
pub(super) fn prune_seen(
    seen: &mut Table<'_, &'static str, i64>,
    by_time: &mut Table<'_, (i64, &'static str), ()>,
    now_ms: i64,
) -> Result<usize, QueueError> {
    let cutoff = now_ms.saturating_sub(SEEN_TTL_MS);
    let mut expired: Vec<(i64, String)> = Vec::new();
    for row in by_time.range(..(cutoff, ""))?.take(PRUNE_BATCH) {
        let (key, _) = row?;
        let (at, name) = key.value();
        expired.push((at, name.to_string()));
    }
    for (at, name) in &expired {
        by_time.remove((*at, name.as_str()))?;
        seen.remove(name.as_str())?;
    }
    Ok(expired.len())
}

/// Read every pending job, count dead letters and find the next unused job id.
pub(super) fn load(db: &Database) -> Result<Loaded, QueueError> {
    let txn = db.begin_read()?;
    let pending_table = txn.open_table(PENDING)?;
    let mut pending = Vec::new();
    for row in pending_table.iter()? {
        let (id, json) = row?;
        pending.push(decode::<Job>("pending", id.value(), json.value())?);
    }
    let dead_table = txn.open_table(DEAD)?;
    let dead = usize::try_from(dead_table.len()?).unwrap_or(usize::MAX);
    let meta = txn.open_table(META)?;
    let stored_next = meta.get(NEXT_ID)?.map(|g| g.value()).unwrap_or(1);
    let after_pending = pending_table.last()?.map(|(k, _)| k.value() + 1);
    let after_dead = dead_table.last()?.map(|(k, _)| k.value() + 1);
    let next_id = [Some(stored_next), after_pending, after_dead]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(1);
    Ok(Loaded {
        pending,
        dead,
        next_id,
    })
}

/// Every dead letter in id order.
pub(super) fn dead_letters(db: &Database) -> Result<Vec<DeadLetter>, QueueError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(DEAD)?;
    let mut out = Vec::new();
    for row in table.iter()? {
        let (id, json) = row?;
        out.push(decode::<DeadLetter>("dead", id.value(), json.value())?);
    }
    Ok(out)
}
