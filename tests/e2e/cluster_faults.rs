//! Cluster-side faults (SPEC §5, §7) on the mapping POST, injected in the emulator: 429 honours
//! `Retry-After`, a 409 is re-decided within the attempt, dropped connections and 500 are retried until the tag is mapped exactly once, a 500
//! that never ends is given up after exactly `maxAttempts` (3 in [`Env`]), and a 422 is dead-lettered at
//! once with the server's cause. Time gaps are measured between the emulator's own request timestamps.

use std::time::Duration;

use super::support::emulator::{Fault, FaultAction, Recorded};
use super::support::images::{Format, skopeo_copy};
use super::{Env, EnvOptions};

const MAPPINGS: &str = "/imagestreammappings";

fn mapping_fault(action: FaultAction, times: usize) -> Fault {
    Fault {
        path_contains: MAPPINGS.to_string(),
        method: Some("POST".to_string()),
        action,
        times,
    }
}

/// Push `team/<stream>:v1` into a stream that exists (so every mapping POST is one the fault may hit).
fn push(env: &Env, stream: &str, layer: &[u8]) {
    if env.emulator.stream("team", stream).is_none() {
        env.emulator.add_stream("team", stream);
    }
    env.layout.add_image("v1", "amd64", "linux", None, &[layer]);
    skopeo_copy(
        &env.layout,
        "v1",
        &env.registry,
        &format!("team/{stream}:v1"),
        Format::Oci,
        false,
    );
}

fn mapping_posts(env: &Env) -> Vec<Recorded> {
    env.emulator
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with(MAPPINGS))
        .collect()
}

/// The mapping POSTs once there are at least `n` (a request is recorded just after it is answered, so
/// the stored tag event can be seen a moment before its POST is).
async fn posts_at_least(env: &Env, n: usize) -> Vec<Recorded> {
    let deadline = tokio::time::Instant::now() + super::WAIT;
    loop {
        let posts = mapping_posts(env);
        if posts.len() >= n {
            return posts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} mapping POSTs, waited for {n}\ndaemon log:\n{}",
            posts.len(),
            env.daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn statuses(posts: &[Recorded]) -> Vec<u16> {
    posts.iter().map(|r| r.status).collect()
}

#[tokio::test]
async fn a_429_on_the_mapping_is_retried_no_sooner_than_retry_after() {
    let env = Env::start(EnvOptions::default()).await;
    env.emulator
        .inject(mapping_fault(FaultAction::Status(429, Some(2)), 1));
    push(&env, "throttled", b"throttled");

    let events = env.wait_events("team", "throttled", "v1", 1).await;
    assert_eq!(events.len(), 1);
    let posts = posts_at_least(&env, 2).await;
    assert_eq!(statuses(&posts), vec![429, 201]);
    let gap = posts[1].at.duration_since(posts[0].at);
    assert!(
        gap >= Duration::from_secs(2),
        "retried {gap:?} after a 429 with Retry-After: 2"
    );
    env.wait_metric("imagestream_ingest_jobs_total{outcome=\"retry\"} 1")
        .await;
}

#[tokio::test]
async fn a_409_a_dropped_connection_and_a_500_are_retried_and_the_tag_is_mapped_once() {
    let env = Env::start(EnvOptions::default()).await;
    // A 409 means the tag moved meanwhile: the same attempt re-reads the stream and posts again. That
    // POST meets a dropped connection, which fails the attempt; the retry maps the tag.
    env.emulator
        .inject(mapping_fault(FaultAction::Status(409, None), 1));
    env.emulator.inject(mapping_fault(FaultAction::Drop, 1));
    push(&env, "conflicted", b"conflicted");

    let events = env.wait_events("team", "conflicted", "v1", 1).await;
    assert_eq!(events.len(), 1);
    // status 0 = the emulator dropped the connection without answering.
    assert_eq!(statuses(&posts_at_least(&env, 3).await), vec![409, 0, 201]);
    env.wait_metric("imagestream_ingest_jobs_total{outcome=\"retry\"} 1")
        .await;
    env.wait_metric("imagestream_ingest_jobs_total{outcome=\"created\"} 1")
        .await;

    // A 500 on the next push is retried as well; the tag moves once more, by exactly one event.
    env.emulator
        .inject(mapping_fault(FaultAction::Status(500, None), 1));
    push(&env, "conflicted", b"conflicted, second image");
    let events = env.wait_events("team", "conflicted", "v1", 2).await;
    assert_eq!(events.len(), 2);
    assert_eq!(
        statuses(&posts_at_least(&env, 5).await),
        vec![409, 0, 201, 500, 201]
    );
}

#[tokio::test]
async fn a_cluster_failing_with_500_forever_is_given_up_after_exactly_max_attempts() {
    let env = Env::start(EnvOptions::default()).await;
    env.emulator
        .inject(mapping_fault(FaultAction::Status(500, None), 0));
    push(&env, "broken", b"broken");

    let dead = env.dead_letters(1).await;
    let reason = dead[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("gave up after 3 attempts") && reason.contains("500"),
        "reason: {reason}"
    );
    // Settle: nothing more is sent for a dead job.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let posts = mapping_posts(&env);
    assert_eq!(statuses(&posts), vec![500, 500, 500]);
    // Exponential backoff: the second wait is at least the first step's lower bound and never shorter
    // than half the doubled step (jitter spans the upper half).
    let first = posts[1].at.duration_since(posts[0].at);
    let second = posts[2].at.duration_since(posts[1].at);
    assert!(
        first >= Duration::from_millis(250),
        "first backoff {first:?}"
    );
    assert!(
        second >= Duration::from_millis(500),
        "second backoff {second:?}"
    );
    env.wait_metric("imagestream_ingest_dead_letters 1").await;
    assert!(env.emulator.tag_events("team", "broken", "v1").is_empty());
}

#[tokio::test]
async fn a_422_is_dead_lettered_at_once_with_the_servers_cause() {
    let env = Env::start(EnvOptions::default()).await;
    env.emulator
        .inject(mapping_fault(FaultAction::Status(422, None), 0));
    push(&env, "refused", b"refused");

    let dead = env.dead_letters(1).await;
    let reason = dead[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("image.dockerImageReference")
            && reason.contains("not allowed by whitelist"),
        "the reason names the field and the server's cause: {reason}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        statuses(&mapping_posts(&env)),
        vec![422],
        "a 422 is not retried"
    );
}
