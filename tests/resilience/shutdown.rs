//! SIGTERM (SPEC §7): notifications get 503 during the drain, the in-flight job finishes within
//! `worker.shutdownGrace` (or is abandoned when the grace is shorter), the process exits 0, and whatever
//! was not finished stays queued and runs after the restart.

use std::time::{Duration, Instant};

use crate::env::{Env, EnvOptions, log_field, metric, readyz, signal};
use crate::support::emulator::{Fault, FaultAction};

const WAIT: Duration = Duration::from_secs(60);

/// An env whose mapping POSTs take `delay`, with one job in flight for `team/drain:first` when it returns.
async fn with_a_job_in_flight(worker: &'static str, delay: Duration) -> (Env, String) {
    let env = Env::start(EnvOptions {
        worker,
        ..EnvOptions::default()
    })
    .await;
    env.emulator.add_stream("team", "drain");
    env.emulator.inject(Fault {
        path_contains: "/imagestreammappings".into(),
        method: Some("POST".into()),
        action: FaultAction::Delay(delay),
        times: 0,
    });
    let first = env.push("drain first", "team/drain:first");
    // The job read the stream: its (delayed) mapping POST comes next.
    env.wait("the first job to read its stream", WAIT, || async {
        env.emulator
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.path.ends_with("/imagestreams/drain"))
    })
    .await;
    (env, first)
}

/// `left_queued` of the daemon's last "stopped" log line.
fn left_queued(env: &Env) -> Option<u64> {
    log_field(&env.daemon.log(), "stopped", "left_queued")
        .last()
        .and_then(|v| v.as_u64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_refuses_new_notifications_finishes_the_in_flight_job_and_keeps_the_rest_queued() {
    let (mut env, first) = with_a_job_in_flight(
        "  concurrency: 1\n  maxAttempts: 5\n  shutdownGrace: 10s\n",
        Duration::from_secs(3),
    )
    .await;
    // Accepted, but waits for the only worker slot.
    let second = env.push("drain second", "team/drain:second");
    env.wait("the second notification queued", WAIT, || async {
        metric(
            &env.metrics().await,
            "imagestream_ingest_notifications_total{source=\"reg\",outcome=\"queued\"}",
        ) == Some(2.0)
    })
    .await;
    assert!(
        env.events("drain", "first").is_empty(),
        "the first job is still in flight"
    );

    let pid = env.daemon.pid().unwrap();
    let termed = Instant::now();
    signal(pid, "-TERM");
    let url = env.daemon.url();
    env.wait(
        "/readyz to report the drain",
        Duration::from_secs(10),
        || async { readyz(&env.http, &url).await == 503 },
    )
    .await;
    let late = env.push_notification("team/drain", "second");
    let late = crate::env::with_new_id(&late);
    let answer = env
        .notify(&late)
        .await
        .expect("the daemon still answers while draining");
    assert_eq!(
        answer.status, 503,
        "a notification during the drain is refused"
    );
    assert!(answer.retry_after.is_some(), "with Retry-After");

    let status = tokio::task::block_in_place(|| env.daemon.terminate());
    println!(
        "[sigterm grace 10s] exited {status} {:.1} s after SIGTERM",
        termed.elapsed().as_secs_f64()
    );
    assert_eq!(
        status.code(),
        Some(0),
        "exit status 0\n{}",
        env.daemon.log()
    );
    assert_eq!(
        env.event_images("drain", "first"),
        vec![first.clone()],
        "the in-flight job completed before the exit"
    );
    assert!(
        env.events("drain", "second").is_empty(),
        "the queued job did not start"
    );
    assert_eq!(left_queued(&env), Some(1), "one job left queued");

    env.emulator.clear_faults();
    env.daemon.spawn().await;
    env.wait("the queued job to run after the restart", WAIT, || async {
        !env.events("drain", "second").is_empty()
    })
    .await;
    env.wait_idle(WAIT).await;
    assert_eq!(env.event_images("drain", "first"), vec![first]);
    assert_eq!(env.event_images("drain", "second"), vec![second]);
    assert!(env.dead_letters().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_short_grace_exits_0_in_time_and_the_abandoned_job_runs_after_restart() {
    let (mut env, first) = with_a_job_in_flight(
        "  concurrency: 1\n  maxAttempts: 5\n  shutdownGrace: 1s\n",
        Duration::from_secs(5),
    )
    .await;
    let pid = env.daemon.pid().unwrap();
    let termed = Instant::now();
    signal(pid, "-TERM");
    let status = tokio::task::block_in_place(|| env.daemon.terminate());
    let took = termed.elapsed();
    println!(
        "[sigterm grace 1s] exited {status} {:.2} s after SIGTERM (mapping POST delayed 5 s)",
        took.as_secs_f64()
    );
    assert_eq!(
        status.code(),
        Some(0),
        "exit status 0\n{}",
        env.daemon.log()
    );
    // The mapping POST needs 5 s; exiting before it landed shows the daemon did not wait past its grace.
    assert!(
        env.events("drain", "first").is_empty(),
        "the daemon exited only after the 5 s POST (took {took:?}), not within its 1 s grace"
    );
    assert_eq!(left_queued(&env), Some(1), "the abandoned job stays queued");

    env.emulator.clear_faults();
    env.daemon.spawn().await;
    env.wait(
        "the abandoned job to run after the restart",
        WAIT,
        || async { !env.events("drain", "first").is_empty() },
    )
    .await;
    env.wait_idle(WAIT).await;
    assert_eq!(env.event_images("drain", "first"), vec![first]);
    let m = env.metrics().await;
    let done = metric(&m, "imagestream_ingest_jobs_total{outcome=\"created\"}").unwrap_or(0.0)
        + metric(&m, "imagestream_ingest_jobs_total{outcome=\"unchanged\"}").unwrap_or(0.0);
    assert_eq!(
        done, 1.0,
        "the restarted daemon ran the job to completion:\n{m}"
    );
    assert!(env.dead_letters().await.is_empty());
}
