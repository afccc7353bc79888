//! Queue behaviour against a real store in a temporary directory; `crash` kills a writer with `kill -9`.

mod crash;

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::event::now_ms;

pub(super) fn event(event_id: &str, tag: &str, digest: &str) -> PushEvent {
    PushEvent {
        source: "registry".into(),
        registry: "main".into(),
        event_id: event_id.into(),
        repository: "team/app".into(),
        tag: tag.into(),
        digest: Some(digest.into()),
        media_type: None,
        timestamp: None,
        received_at_ms: now_ms(),
    }
}

pub(super) fn open(dir: &Path, capacity: usize) -> (Queue, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let queue = Queue::open(dir, capacity, metrics.clone()).unwrap();
    (queue, metrics)
}

pub(super) fn event_ids(queue: &Queue) -> Vec<String> {
    queue
        .snapshot_pending()
        .into_iter()
        .map(|j| j.event.event_id)
        .collect()
}

#[tokio::test]
async fn enqueued_event_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, metrics) = open(dir.path(), 10);
    let outcome = queue
        .enqueue(vec![event("e1", "v1", "sha256:a")])
        .await
        .unwrap();
    assert_eq!(
        outcome,
        EnqueueOutcome {
            queued: 1,
            duplicates: 0
        }
    );
    assert_eq!(metrics.queue_depth.get(), 1);
    queue.shutdown().await;

    let (queue, metrics) = open(dir.path(), 10);
    let pending = queue.snapshot_pending();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].event.tag, "v1");
    assert_eq!(pending[0].attempts, 0);
    assert_eq!(metrics.queue_depth.get(), 1);
}

#[tokio::test]
async fn dropping_every_handle_closes_the_store_so_it_can_be_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, _) = open(dir.path(), 10);
    queue
        .enqueue(vec![event("e1", "v1", "sha256:a")])
        .await
        .unwrap();
    drop(queue);
    let (queue, _) = open(dir.path(), 10);
    assert_eq!(event_ids(&queue), ["e1"]);
}

#[tokio::test]
async fn replayed_event_id_is_a_duplicate_even_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, _) = open(dir.path(), 10);
    queue
        .enqueue(vec![event("e1", "v1", "sha256:a")])
        .await
        .unwrap();
    let job = queue.snapshot_pending().remove(0);
    queue.complete(job.id).await.unwrap();
    queue.shutdown().await;

    let (queue, _) = open(dir.path(), 10);
    let outcome = queue
        .enqueue(vec![event("e1", "v1", "sha256:a")])
        .await
        .unwrap();
    assert_eq!(
        outcome,
        EnqueueOutcome {
            queued: 0,
            duplicates: 1
        }
    );
    assert_eq!(queue.depth(), 0);
}

#[tokio::test]
async fn event_equivalent_to_a_pending_job_is_a_duplicate_and_its_id_is_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, _) = open(dir.path(), 10);
    queue
        .enqueue(vec![event("e1", "v1", "sha256:a")])
        .await
        .unwrap();
    let outcome = queue
        .enqueue(vec![event("e2", "v1", "sha256:a")])
        .await
        .unwrap();
    assert_eq!(
        outcome,
        EnqueueOutcome {
            queued: 0,
            duplicates: 1
        }
    );
    assert_eq!(event_ids(&queue), ["e1"]);

    // Once the pending job is gone, e2 is still known by its id.
    let job = queue.snapshot_pending().remove(0);
    queue.complete(job.id).await.unwrap();
    let outcome = queue
        .enqueue(vec![event("e2", "v1", "sha256:a")])
        .await
        .unwrap();
    assert_eq!(outcome.duplicates, 1);
    assert_eq!(queue.depth(), 0);
}

#[tokio::test]
async fn duplicates_inside_one_batch_are_counted_once_queued() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, _) = open(dir.path(), 10);
    let outcome = queue
        .enqueue(vec![
            event("e1", "v1", "sha256:a"),
            event("e1", "v1", "sha256:a"),
            event("e2", "v1", "sha256:a"),
            event("e3", "v2", "sha256:a"),
        ])
        .await
        .unwrap();
    assert_eq!(
        outcome,
        EnqueueOutcome {
            queued: 2,
            duplicates: 2
        }
    );
    assert_eq!(event_ids(&queue), ["e1", "e3"]);
}

#[tokio::test]
async fn same_image_with_a_new_event_id_is_queued_again_after_completion() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, metrics) = open(dir.path(), 10);
    queue
        .enqueue(vec![event("e1", "v1", "sha256:a")])
        .await
        .unwrap();
    let job = queue.snapshot_pending().remove(0);
    queue.complete(job.id).await.unwrap();
    assert_eq!(queue.depth(), 0);
    assert_eq!(metrics.queue_depth.get(), 0);

    let outcome = queue
        .enqueue(vec![event("e2", "v1", "sha256:a")])
        .await
        .unwrap();
    assert_eq!(
        outcome,
        EnqueueOutcome {
            queued: 1,
            duplicates: 0
        }
    );
    assert!(queue.snapshot_pending()[0].id > job.id);
}

#[tokio::test]
async fn batch_over_capacity_is_refused_and_nothing_from_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, _) = open(dir.path(), 2);
    queue
        .enqueue(vec![event("e1", "v1", "sha256:a")])
        .await
        .unwrap();
    let batch = vec![event("e2", "v2", "sha256:a"), event("e3", "v3", "sha256:a")];
    let commits = queue.commits();
    let err = queue.enqueue(batch.clone()).await.unwrap_err();
    assert!(matches!(err, QueueError::Full), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(event_ids(&queue), ["e1"]);
    assert_eq!(queue.commits(), commits, "a refused batch costs no commit");
    queue.shutdown().await;

    // Neither the jobs nor the event ids were recorded: with room, the same batch is queued.
    let (queue, _) = open(dir.path(), 3);
    let outcome = queue.enqueue(batch).await.unwrap();
    assert_eq!(
        outcome,
        EnqueueOutcome {
            queued: 2,
            duplicates: 0
        }
    );
}

#[tokio::test]
async fn jobs_pending_at_startup_are_all_loaded_even_beyond_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, _) = open(dir.path(), 10);
    let events = (0..5).map(|i| event(&format!("e{i}"), &format!("v{i}"), "sha256:a"));
    queue.enqueue(events.collect()).await.unwrap();
    queue.shutdown().await;

    let (queue, _) = open(dir.path(), 3);
    assert_eq!(queue.depth(), 5);
    let err = queue
        .enqueue(vec![event("e9", "v9", "sha256:a")])
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::Full), "{err:?}");
}

#[tokio::test]
async fn closed_queue_refuses_events_but_still_records_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, _) = open(dir.path(), 10);
    queue
        .enqueue(vec![event("e1", "v1", "sha256:a")])
        .await
        .unwrap();
    queue.close();
    queue.close();
    assert!(queue.is_closed());
    let err = queue
        .enqueue(vec![event("e2", "v2", "sha256:a")])
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::Closed), "{err:?}");
    let job = queue.snapshot_pending().remove(0);
    queue.complete(job.id).await.unwrap();
    assert_eq!(queue.depth(), 0);
}

#[tokio::test]
async fn operations_after_shutdown_fail_as_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, _) = open(dir.path(), 10);
    queue
        .enqueue(vec![event("e1", "v1", "sha256:a")])
        .await
        .unwrap();
    let id = queue.snapshot_pending()[0].id;
    queue.shutdown().await;
    queue.shutdown().await;
    assert!(matches!(queue.complete(id).await, Err(QueueError::Closed)));
    assert!(matches!(
        queue.enqueue(vec![event("e2", "v2", "sha256:a")]).await,
        Err(QueueError::Closed)
    ));
}

#[tokio::test]
async fn operations_on_an_unknown_job_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, _) = open(dir.path(), 10);
    let err = queue.complete(42).await.unwrap_err();
    assert!(matches!(err, QueueError::UnknownJob(42)), "{err:?}");
    assert_eq!(err.metric_label(), "unknown_job");
    assert!(matches!(
        queue.reschedule(42, 0, "x".into()).await,
        Err(QueueError::UnknownJob(42))
    ));
    assert!(matches!(
        queue.bury(42, "x".into()).await,
        Err(QueueError::UnknownJob(42))
    ));
}

#[tokio::test]
async fn reschedule_counts_the_attempt_and_persists_the_retry_time() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, _) = open(dir.path(), 10);
    queue
        .enqueue(vec![event("e1", "v1", "sha256:a")])
        .await
        .unwrap();
    let id = queue.snapshot_pending()[0].id;
    let later = now_ms() + 60_000;
    queue
        .reschedule(id, later, "registry 503".into())
        .await
        .unwrap();

    assert!(queue.ready_jobs(now_ms(), 10, |_| false).is_empty());
    assert_eq!(queue.next_ready_ms(), Some(later));
    assert_eq!(queue.ready_jobs(later, 10, |_| false).len(), 1);
    queue.shutdown().await;

    let (queue, _) = open(dir.path(), 10);
    let job = queue.snapshot_pending().remove(0);
    assert_eq!(job.id, id);
    assert_eq!(job.attempts, 1);
    assert_eq!(job.not_before_ms, later);
    assert_eq!(job.last_error.as_deref(), Some("registry 503"));
}

#[tokio::test]
async fn ready_jobs_come_in_ready_order_without_excluded_ones_and_up_to_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, _) = open(dir.path(), 10);
    let events = (0..4).map(|i| event(&format!("e{i}"), &format!("v{i}"), "sha256:a"));
    queue.enqueue(events.collect()).await.unwrap();
    let first = queue.snapshot_pending()[0].id;
    queue
        .reschedule(first, now_ms() + 60_000, "later".into())
        .await
        .unwrap();

    let ready = queue.ready_jobs(now_ms(), 2, |job| job.event.tag == "v1");
    let tags: Vec<_> = ready.iter().map(|j| j.event.tag.as_str()).collect();
    assert_eq!(tags, ["v2", "v3"]);
}

#[tokio::test]
async fn buried_job_is_a_dead_letter_that_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, metrics) = open(dir.path(), 10);
    queue
        .enqueue(vec![event("e1", "v1", "sha256:a")])
        .await
        .unwrap();
    let id = queue.snapshot_pending()[0].id;
    queue
        .bury(id, "manifest unknown after 5 attempts".into())
        .await
        .unwrap();
    assert_eq!(queue.depth(), 0);
    assert_eq!(metrics.queue_depth.get(), 0);
    assert_eq!(metrics.dead_letters.get(), 1);
    queue.shutdown().await;

    let (queue, metrics) = open(dir.path(), 10);
    assert_eq!(queue.depth(), 0);
    assert_eq!(metrics.dead_letters.get(), 1);
    let dead = queue.dead_letters().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].job.id, id);
    assert_eq!(dead[0].job.event.event_id, "e1");
    assert_eq!(dead[0].reason, "manifest unknown after 5 attempts");
}

#[tokio::test]
async fn retried_dead_letters_are_pending_again_with_new_ids_and_no_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, metrics) = open(dir.path(), 10);
    let events = (0..3).map(|i| event(&format!("e{i}"), &format!("v{i}"), "sha256:a"));
    queue.enqueue(events.collect()).await.unwrap();
    let jobs = queue.snapshot_pending();
    for job in &jobs {
        queue.reschedule(job.id, 0, "boom".into()).await.unwrap();
        queue.bury(job.id, "permanent".into()).await.unwrap();
    }
    assert_eq!(metrics.dead_letters.get(), 3);

    assert_eq!(queue.retry_dead(&[jobs[1].id, 999]).await.unwrap(), 1);
    let pending = queue.snapshot_pending();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].event.event_id, "e1");
    assert_eq!(pending[0].attempts, 0);
    assert!(pending[0].id > jobs[2].id);
    assert_eq!(metrics.dead_letters.get(), 2);

    assert_eq!(queue.retry_dead(&[]).await.unwrap(), 2);
    assert!(queue.dead_letters().unwrap().is_empty());
    assert_eq!(metrics.dead_letters.get(), 0);
    assert_eq!(event_ids(&queue), ["e1", "e0", "e2"]);
    assert_eq!(metrics.queue_depth.get(), 3);
}

#[tokio::test]
async fn job_ids_are_never_reused_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, _) = open(dir.path(), 10);
    queue
        .enqueue(vec![event("e1", "v1", "sha256:a")])
        .await
        .unwrap();
    let id = queue.snapshot_pending()[0].id;
    queue.complete(id).await.unwrap();
    queue.shutdown().await;

    let (queue, _) = open(dir.path(), 10);
    queue
        .enqueue(vec![event("e2", "v1", "sha256:a")])
        .await
        .unwrap();
    assert!(queue.snapshot_pending()[0].id > id);
}

#[tokio::test]
async fn event_ids_older_than_a_day_are_forgotten_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, _) = open(dir.path(), 10);
    queue
        .enqueue(vec![event("fresh", "v1", "sha256:a")])
        .await
        .unwrap();
    let id = queue.snapshot_pending()[0].id;
    queue.complete(id).await.unwrap();
    queue.shutdown().await;

    // Back-date an event id as if it had been seen two days ago.
    let old = event("old", "v2", "sha256:a");
    {
        let db = Database::create(dir.path().join(store::FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let two_days_ago = now_ms() - 2 * store::SEEN_TTL_MS;
            let key = store::seen_key(&old);
            txn.open_table(store::SEEN)
                .unwrap()
                .insert(key.as_str(), two_days_ago)
                .unwrap();
            let mut by_time = txn.open_table(store::SEEN_BY_TIME).unwrap();
            by_time.insert((two_days_ago, key.as_str()), ()).unwrap();
        }
        txn.commit().unwrap();
    }

    let (queue, _) = open(dir.path(), 10);
    let outcome = queue
        .enqueue(vec![old, event("fresh", "v1", "sha256:a")])
        .await
        .unwrap();
    assert_eq!(
        outcome,
        EnqueueOutcome {
            queued: 1,
            duplicates: 1
        }
    );
    assert_eq!(event_ids(&queue), ["old"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_enqueues_all_land_in_fewer_commits_than_callers() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, metrics) = open(dir.path(), 1000);
    let start = Arc::new(tokio::sync::Barrier::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..64 {
        let queue = queue.clone();
        let start = start.clone();
        tasks.spawn(async move {
            start.wait().await;
            let e = event(&format!("e{i}"), &format!("v{i}"), "sha256:a");
            queue.enqueue(vec![e]).await
        });
    }
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.unwrap().unwrap().queued, 1);
    }
    assert_eq!(queue.depth(), 64);
    assert_eq!(metrics.queue_depth.get(), 64);
    println!("{} commits for 64 concurrent callers", queue.commits());
    assert!(
        queue.commits() < 64,
        "{} commits for 64 callers",
        queue.commits()
    );
    queue.shutdown().await;

    let (queue, _) = open(dir.path(), 1000);
    assert_eq!(queue.depth(), 64);
}
