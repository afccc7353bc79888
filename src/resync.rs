//! Resync: walk the registry (`/v2/_catalog`, `tags/list`, paginated) and bring every mapped tag up to date
//! (SPEC §2 `resync`, §7). Repairs whatever a lost notification missed; idempotent (a second run is all
//! `unchanged`).
//!
//! Two entry points: [`run_direct`] (the `resync` command: processes tags in-process, bounded concurrency,
//! returns counts) and [`enqueue_all`] (periodic resync inside `serve`: goes through the durable queue, so a
//! resync never runs a tag concurrently with a notification-driven job of the same tag).

use std::time::Duration;

use futures_util::StreamExt as _;
use regex::Regex;
use serde::Serialize;
use tracing::{info, warn};

use crate::event::{PushEvent, now_ms};
use crate::mapping;
use crate::queue::{Queue, QueueError};
use crate::registry::{RegistryClient, RegistryError};
use crate::worker::{Outcome, Processor, Request};

/// What a resync did, per tag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub created: u64,
    pub unchanged: u64,
    pub ignored: u64,
    pub failed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ResyncError {
    #[error("no registry named `{0}` is configured")]
    UnknownRegistry(String),
    #[error("listing registry `{registry}`: {source}")]
    Catalog {
        registry: String,
        #[source]
        source: RegistryError,
    },
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
}

/// Every (registry, repository, tag) the walk finds, with tags the rules exclude already counted as ignored.
struct Walk {
    requests: Vec<Request>,
    ignored: u64,
    failed: u64,
}

async fn walk(
    processor: &Processor,
    only_registry: Option<&str>,
    repository_filter: Option<&Regex>,
) -> Result<Walk, ResyncError> {
    if let Some(name) = only_registry {
        if !processor.registries.contains_key(name) {
            return Err(ResyncError::UnknownRegistry(name.to_string()));
        }
    }
    let mut names: Vec<&String> = processor.registries.keys().collect();
    names.sort();
    let mut out = Walk {
        requests: Vec::new(),
        ignored: 0,
        failed: 0,
    };
    for name in names {
        if only_registry.is_some_and(|only| only != name.as_str()) {
            continue;
        }
        let client: &RegistryClient = &processor.registries[name];
        let repositories = client
            .catalog()
            .await
            .map_err(|source| ResyncError::Catalog {
                registry: name.clone(),
                source,
            })?;
        for repository in repositories {
            if repository_filter.is_some_and(|re| !re.is_match(&repository)) {
                continue;
            }
            let tags = match client.tags(&repository).await {
                Ok(t) => t,
                Err(e) => {
                    warn!(registry = %name, repository, error = %e, "resync: cannot list tags");
                    out.failed += 1;
                    continue;
                }
            };
            for tag in tags {
                let req = Request {
                    registry: name.clone(),
                    repository: repository.clone(),
                    tag,
                    pinned: None,
                    expected: None,
                };
                match mapping::resolve(&processor.config.mappings, name, &req.repository, &req.tag)
                {
                    Ok(_) => out.requests.push(req),
                    Err(_) => out.ignored += 1,
                }
            }
        }
    }
    Ok(out)
}

/// The `resync` command: process every mapped tag now, `concurrency` at a time.
pub async fn run_direct(
    processor: &Processor,
    only_registry: Option<&str>,
    repository_filter: Option<&Regex>,
    concurrency: usize,
) -> Result<Counts, ResyncError> {
    let walk = walk(processor, only_registry, repository_filter).await?;
    let mut counts = Counts {
        ignored: walk.ignored,
        failed: walk.failed,
        ..Counts::default()
    };
    let mut results = futures_util::stream::iter(walk.requests)
        .map(|req| async move {
            let result = processor.process(&req).await;
            (req, result)
        })
        .buffer_unordered(concurrency.max(1));
    while let Some((req, result)) = results.next().await {
        match result {
            Ok(p) => match p.outcome {
                Outcome::Created => counts.created += 1,
                Outcome::Unchanged | Outcome::DryRun => counts.unchanged += 1,
                Outcome::Ignored { .. } => counts.ignored += 1,
            },
            Err(e) => {
                warn!(registry = %req.registry, repository = %req.repository, tag = %req.tag,
                      error = %e, "resync: tag failed");
                counts.failed += 1;
            }
        }
    }
    Ok(counts)
}

/// Periodic resync inside `serve`: queue a job per mapped tag (deduplicated against pending jobs), waiting
/// for room when the queue is full so a large registry never floods it. Returns how many jobs were queued.
pub async fn enqueue_all(processor: &Processor, queue: &Queue) -> Result<usize, ResyncError> {
    let walk = walk(processor, None, None).await?;
    let run = now_ms();
    let mut queued = 0;
    for chunk in walk.requests.chunks(100) {
        let events: Vec<PushEvent> = chunk
            .iter()
            .map(|r| PushEvent {
                source: "resync".into(),
                registry: r.registry.clone(),
                event_id: format!("resync-{run}-{}:{}", r.repository, r.tag),
                repository: r.repository.clone(),
                tag: r.tag.clone(),
                digest: None,
                media_type: None,
                timestamp: None,
                received_at_ms: now_ms(),
            })
            .collect();
        loop {
            match queue.enqueue(events.clone()).await {
                Ok(o) => {
                    queued += o.queued;
                    break;
                }
                Err(QueueError::Full) => tokio::time::sleep(Duration::from_millis(500)).await,
                Err(e) => return Err(e.into()),
            }
        }
    }
    info!(
        queued,
        ignored = walk.ignored,
        failed = walk.failed,
        "periodic resync queued the mapped tags"
    );
    Ok(queued)
}
