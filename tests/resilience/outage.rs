//! Outages of the cluster (every API request answered 503 for a minute) and of the registry (the daemon's
//! connections to it cut for 30 s): pushes during the outage are accepted, retried with backoff, never
//! dead-lettered, and all mapped afterwards; `/readyz` reflects the cluster outage.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::env::{Env, EnvOptions, metric, readyz};
use crate::support::emulator::{Fault, FaultAction};

const RECOVERY: Duration = Duration::from_secs(120);

/// Samples `/readyz` every 250 ms in the background: (time since `origin`, status).
struct ReadySampler {
    samples: Arc<Mutex<Vec<(Duration, u16)>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl ReadySampler {
    fn start(env: &Env, origin: Instant) -> ReadySampler {
        let samples: Arc<Mutex<Vec<(Duration, u16)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (out, halt, http, url) = (
            samples.clone(),
            stop.clone(),
            env.http.clone(),
            env.daemon.url(),
        );
        let task = tokio::spawn(async move {
            while !halt.load(Ordering::SeqCst) {
                let code = readyz(&http, &url).await;
                out.lock().unwrap().push((origin.elapsed(), code));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        ReadySampler {
            samples,
            stop,
            task,
        }
    }

    async fn finish(self) -> Vec<(Duration, u16)> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        Arc::try_unwrap(self.samples).unwrap().into_inner().unwrap()
    }
}

/// Codes sampled in `[from, to)`.
fn codes_between(samples: &[(Duration, u16)], from: Duration, to: Duration) -> Vec<u16> {
    samples
        .iter()
        .filter(|(at, _)| *at >= from && *at < to)
        .map(|(_, c)| *c)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_minute_cluster_outage_delays_but_loses_no_push_and_never_moves_a_tag_backwards() {
    const OUTAGE: Duration = Duration::from_secs(60);
    const WINDOW: Duration = Duration::from_secs(5);
    let env = Env::start(EnvOptions {
        cluster: "  readyWindow: 5s\n",
        ..EnvOptions::default()
    })
    .await;
    let origin = Instant::now();
    let sampler = ReadySampler::start(&env, origin);
    let warm = env.push("outage warm-up", "team/out:warm");
    env.wait(
        "the warm-up push mapped",
        Duration::from_secs(60),
        || async { env.event_images("out", "warm") == vec![warm.clone()] },
    )
    .await;
    // A healthy, idle period longer than two ready windows: /readyz must stay 200 throughout.
    let healthy_from = origin.elapsed();
    tokio::time::sleep(Duration::from_secs(12)).await;

    let outage_from = origin.elapsed();
    let outage_started = Instant::now();
    env.emulator.inject(Fault {
        path_contains: "/api".into(),
        method: None,
        action: FaultAction::Status(503, None),
        times: 0,
    });
    let mut expected = Vec::new();
    for tag in ["p1", "p2", "p3"] {
        let digest = env.push(&format!("outage push {tag}"), &format!("team/out:{tag}"));
        expected.push((tag, digest));
    }
    let a = env.push("outage moved A", "team/out:moved");
    let b = env.push("outage moved B", "team/out:moved");
    env.wait(
        "all six notifications queued",
        Duration::from_secs(60),
        || async {
            metric(
                &env.metrics().await,
                "imagestream_ingest_notifications_total{source=\"reg\",outcome=\"queued\"}",
            ) == Some(6.0)
        },
    )
    .await;
    tokio::time::sleep(OUTAGE.saturating_sub(outage_started.elapsed())).await;
    for (tag, _) in &expected {
        assert!(
            env.events("out", tag).is_empty(),
            "{tag} cannot be mapped during the outage"
        );
    }
    let outage_to = origin.elapsed();
    env.emulator.clear_faults();
    let cleared = Instant::now();

    env.wait("every push mapped after the outage", RECOVERY, || async {
        expected
            .iter()
            .all(|(tag, _)| !env.events("out", tag).is_empty())
            && env.event_images("out", "moved").first() == Some(&b)
    })
    .await;
    let recovery = cleared.elapsed();
    env.wait_idle(RECOVERY).await;
    println!(
        "[cluster outage] {:.0} s outage, 5 pushes; all mapped {:.1} s after it ended",
        (outage_to - outage_from).as_secs_f64(),
        recovery.as_secs_f64()
    );
    for (tag, digest) in &expected {
        assert_eq!(env.event_images("out", tag), vec![digest.clone()], "{tag}");
    }
    let moved = env.event_images("out", "moved");
    assert!(
        moved == vec![b.clone()] || moved == vec![b.clone(), a.clone()],
        "moved: newest B, at most A before it, never backwards: {moved:?} (A={a}, B={b})"
    );
    assert!(
        env.dead_letters().await.is_empty(),
        "a 60 s outage dead-letters nothing"
    );
    assert!(
        metric(
            &env.metrics().await,
            "imagestream_ingest_jobs_total{outcome=\"retry\"}"
        )
        .is_some_and(|n| n > 0.0),
        "jobs were retried during the outage"
    );

    // Readiness: after recovery it must be 200 again and stay so.
    let back_from = origin.elapsed();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let samples = sampler.finish().await;
    let first_ready_after = samples
        .iter()
        .find(|(at, c)| *at >= outage_to && *c == 200)
        .map(|(at, _)| *at);
    println!(
        "[cluster outage] /readyz: first 503 {:?} after the outage began, 200 again {:?} after it ended",
        samples
            .iter()
            .find(|(at, c)| *at >= outage_from && *c == 503)
            .map(|(at, _)| *at - outage_from),
        first_ready_after.map(|at| at - outage_to)
    );
    let healthy = codes_between(&samples, healthy_from, outage_from);
    assert!(
        healthy.iter().all(|c| *c == 200),
        "/readyz flapped while the cluster was healthy and idle (readyWindow 5s): {healthy:?}"
    );
    // The outage shows within the window plus a probe interval (slack for a slow machine).
    let during = codes_between(&samples, outage_from + WINDOW * 2, outage_to);
    assert!(
        !during.is_empty() && during.iter().all(|c| *c == 503),
        "/readyz must be 503 from readyWindow after the outage began until it ended: {during:?}"
    );
    let after = codes_between(&samples, back_from, Duration::MAX);
    assert!(
        !after.is_empty() && after.iter().all(|c| *c == 200),
        "/readyz must be 200 again after the outage: {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thirty_second_registry_outage_maps_every_queued_push_afterwards() {
    const OUTAGE: Duration = Duration::from_secs(30);
    let env = Env::start(EnvOptions {
        forwarder: true,
        ..EnvOptions::default()
    })
    .await;
    let forwarder = env.forwarder.as_ref().unwrap();
    let warm = env.push("registry outage warm-up", "team/regout:warm");
    env.wait(
        "the warm-up push mapped",
        Duration::from_secs(60),
        || async { env.event_images("regout", "warm") == vec![warm.clone()] },
    )
    .await;

    forwarder.set_down(true);
    let down_at = Instant::now();
    let mut expected = Vec::new();
    for tag in ["r1", "r2", "r3", "r4"] {
        let digest = env.push(
            &format!("registry outage {tag}"),
            &format!("team/regout:{tag}"),
        );
        expected.push((tag, digest));
    }
    env.wait(
        "all five notifications queued",
        Duration::from_secs(60),
        || async {
            metric(
                &env.metrics().await,
                "imagestream_ingest_notifications_total{source=\"reg\",outcome=\"queued\"}",
            ) == Some(5.0)
        },
    )
    .await;
    tokio::time::sleep(OUTAGE.saturating_sub(down_at.elapsed())).await;
    for (tag, _) in &expected {
        assert!(
            env.events("regout", tag).is_empty(),
            "{tag} cannot be read during the outage"
        );
    }
    let refused = forwarder.refused();
    forwarder.set_down(false);
    let up_at = Instant::now();
    assert!(
        refused > 0,
        "the daemon tried the registry during the outage"
    );

    env.wait("every queued push mapped", RECOVERY, || async {
        expected
            .iter()
            .all(|(tag, _)| !env.events("regout", tag).is_empty())
    })
    .await;
    let recovery = up_at.elapsed();
    env.wait_idle(RECOVERY).await;
    println!(
        "[registry outage] {:.0} s outage, 4 pushes, {refused} connections refused; all mapped {:.1} s after it ended",
        OUTAGE.as_secs_f64(),
        recovery.as_secs_f64()
    );
    for (tag, digest) in &expected {
        assert_eq!(
            env.event_images("regout", tag),
            vec![digest.clone()],
            "{tag}"
        );
    }
    assert!(env.dead_letters().await.is_empty(), "nothing dead-lettered");
}
