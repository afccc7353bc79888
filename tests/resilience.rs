//! Resilience of the real daemon binary against the real registry and the cluster emulator (SPEC §1, §4,
//! §7): nothing accepted is lost (kill -9 during a flood, outages of the cluster and of the registry,
//! SIGTERM), nothing regresses (replays and re-ordered notifications never move a tag backwards, two
//! replicas converge to what one daemon produces), nothing is let in beyond capacity (503 + Retry-After
//! under a flood, bounded memory).
//!
//! Every scenario has its own registry, emulator and daemon. Waits are on conditions with generous
//! deadlines; measured numbers (flood sizes, VmHWM, recovery times) are printed for `--nocapture`.
//!
//! Layout: this file holds the crash and backpressure scenarios; `resilience/outage.rs` the cluster and
//! registry outages, `resilience/shutdown.rs` SIGTERM, `resilience/ordering.rs` replays and replicas;
//! `resilience/env.rs` and `resilience/net.rs` the world they run in.

mod support;

#[path = "resilience/env.rs"]
mod env;
#[path = "resilience/net.rs"]
mod net;
#[path = "resilience/ordering.rs"]
mod ordering;
#[path = "resilience/outage.rs"]
mod outage;
#[path = "resilience/shutdown.rs"]
mod shutdown;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use env::{Env, EnvOptions, NotifyTo, metric, notify, signal, vm_hwm_kib};
use support::emulator::{Fault, FaultAction};
use support::images::registry_manifest;

const WAIT: Duration = Duration::from_secs(60);

/// Push `n` distinct images to `team/<stream>:t00..`; returns (tag, registry digest) in push order.
fn push_distinct(env: &Env, stream: &str, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let tag = format!("t{i:02}");
            let digest = env.push(
                &format!("{stream} image number {i}"),
                &format!("team/{stream}:{tag}"),
            );
            (tag, digest)
        })
        .collect()
}

/// Send `bodies` from `tasks` concurrent senders; when `kill_after` 2xx answers were counted, SIGKILL
/// `pid` (once). Returns each body's answer status (None: no HTTP answer) in `bodies` order.
async fn flood(
    env: &Env,
    bodies: &[Bytes],
    tasks: usize,
    kill_after: Option<(usize, u32)>,
) -> Vec<Option<u16>> {
    let work: Arc<Mutex<VecDeque<usize>>> = Arc::new(Mutex::new((0..bodies.len()).collect()));
    let results: Arc<Mutex<Vec<Option<u16>>>> = Arc::new(Mutex::new(vec![None; bodies.len()]));
    let ok = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (work, results, ok, killed) =
            (work.clone(), results.clone(), ok.clone(), killed.clone());
        let bodies = bodies.to_vec();
        let http = env.http.clone();
        let url = env.daemon.url();
        handles.push(tokio::spawn(async move {
            loop {
                let Some(i) = work.lock().unwrap().pop_front() else {
                    return;
                };
                let Ok(answer) = notify(&http, &url, &bodies[i]).await else {
                    continue;
                };
                results.lock().unwrap()[i] = Some(answer.status);
                if answer.is_success() {
                    let count = ok.fetch_add(1, Ordering::SeqCst) + 1;
                    if let Some((after, pid)) = kill_after {
                        if count >= after && !killed.swap(true, Ordering::SeqCst) {
                            signal(pid, "-KILL");
                        }
                    }
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    Arc::try_unwrap(results).unwrap().into_inner().unwrap()
}

/// After recovery: every tag has exactly one event naming the registry's digest, the stream has no other
/// tag, nothing is pending and nothing was dead-lettered.
async fn assert_each_tag_mapped_once(env: &Env, stream: &str, tags: &[(String, String)]) {
    env.wait(
        &format!("all {} tags of {stream} mapped", tags.len()),
        WAIT,
        || async {
            tags.iter()
                .all(|(tag, _)| !env.events(stream, tag).is_empty())
        },
    )
    .await;
    env.wait_idle(WAIT).await;
    for (tag, digest) in tags {
        assert_eq!(
            env.event_images(stream, tag),
            vec![digest.clone()],
            "{stream}:{tag}: exactly one event naming the registry's digest"
        );
    }
    let status_tags = env
        .emulator
        .stream("team", stream)
        .and_then(|s| s["status"]["tags"].as_array().map(Vec::len))
        .unwrap_or(0);
    assert_eq!(status_tags, tags.len(), "no extra tags on {stream}");
    assert!(env.dead_letters().await.is_empty(), "nothing dead-lettered");
}

async fn crash_scenario(stream: &str, n: usize, mid_flight: bool) {
    let mut env = Env::start(EnvOptions {
        notify: NotifyTo::Recorder,
        ..EnvOptions::default()
    })
    .await;
    let tags = push_distinct(&env, stream, n);
    let recorder = env.recorder.as_ref().unwrap();
    env.wait(
        "the registry's notifications of every push",
        WAIT,
        || async { recorder.manifest_pushes().len() >= n },
    )
    .await;
    let bodies = recorder.manifest_pushes();
    assert_eq!(bodies.len(), n, "one tagged manifest push per image");
    let pid = env.daemon.pid().unwrap();

    let answers = if mid_flight {
        env.emulator.inject(Fault {
            path_contains: "/imagestreammappings".into(),
            method: Some("POST".into()),
            action: FaultAction::Delay(Duration::from_secs(2)),
            times: 0,
        });
        let answers = flood(&env, &bodies, 8, None).await;
        // Kill once a few mappings landed: others are mid-POST, the rest still queued.
        env.wait("a few tags mapped before the kill", WAIT, || async {
            tags.iter()
                .filter(|(t, _)| !env.events(stream, t).is_empty())
                .count()
                >= 3
        })
        .await;
        signal(pid, "-KILL");
        let mapped = tags
            .iter()
            .filter(|(t, _)| !env.events(stream, t).is_empty())
            .count();
        println!("[crash mid-flight] {n} notifications, {mapped} tags mapped when killed");
        env.emulator.clear_faults();
        answers
    } else {
        flood(&env, &bodies, 8, Some((n / 2, pid))).await
    };
    env.daemon.kill9();
    let accepted = answers
        .iter()
        .filter(|a| a.is_some_and(|s| (200..300).contains(&s)))
        .count();
    println!("[crash {stream}] {accepted}/{n} notifications answered 2xx before the kill");
    assert!(
        mid_flight || accepted < n,
        "the kill happened during the flood"
    );

    let restarted = Instant::now();
    env.daemon.spawn().await;
    let (mut re_queued, mut re_duplicate) = (0, 0);
    for (i, answer) in answers.iter().enumerate() {
        if answer.is_some_and(|s| (200..300).contains(&s)) {
            continue;
        }
        // The registry re-sends the same event (same id) until it gets a 2xx.
        let again = env.notify(&bodies[i]).await.expect("re-send");
        match again.status {
            202 => re_queued += 1,
            200 => re_duplicate += 1,
            other => panic!("re-sent notification answered {other}"),
        }
    }
    println!(
        "[crash {stream}] re-sent {} (202: {re_queued}, 200 already committed before the kill: {re_duplicate})",
        re_queued + re_duplicate
    );
    assert_each_tag_mapped_once(&env, stream, &tags).await;
    println!(
        "[crash {stream}] all {n} tags mapped {:.1} s after the restart",
        restarted.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_notification_flood_loses_nothing_and_adds_no_extra_event() {
    crash_scenario("flood", 40, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_jobs_are_mid_flight_maps_every_tag_once_after_restart() {
    crash_scenario("midflight", 24, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_beyond_queue_capacity_gets_503_with_retry_after_and_bounded_memory() {
    const FLOOD: usize = 2000;
    const CAPACITY: usize = 50;
    let env = Env::start(EnvOptions {
        notify: NotifyTo::Nobody,
        worker: "  concurrency: 4\n  maxAttempts: 20\n  queueCapacity: 50\n",
        ..EnvOptions::default()
    })
    .await;
    env.emulator.inject(Fault {
        path_contains: "/namespaces/".into(),
        method: None,
        action: FaultAction::Status(503, None),
        times: 0,
    });
    // One image, tagged FLOOD times straight through the registry API (a manifest PUT per tag).
    env.push("flood seed", "team/flood:seed");
    let (manifest, media_type, digest) =
        tokio::task::block_in_place(|| registry_manifest(&env.registry, "team/flood", "seed"));
    let tags: Vec<String> = (0..FLOOD).map(|i| format!("t{i:04}")).collect();
    let started = Instant::now();
    let mut puts = Vec::new();
    for chunk in tags.chunks(FLOOD / 16) {
        let (chunk, http, url) = (chunk.to_vec(), env.http.clone(), env.registry.url.clone());
        let (manifest, media_type) = (manifest.clone(), media_type.clone());
        puts.push(tokio::spawn(async move {
            for tag in chunk {
                let r = http
                    .put(format!("{url}/v2/team/flood/manifests/{tag}"))
                    .header("content-type", &media_type)
                    .body(manifest.clone())
                    .send()
                    .await
                    .expect("PUT manifest");
                assert_eq!(r.status().as_u16(), 201, "PUT {tag}");
            }
        }));
    }
    for p in puts {
        p.await.unwrap();
    }
    println!(
        "[backpressure] tagged {FLOOD} tags in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let bodies: Vec<Bytes> = tags
        .iter()
        .map(|tag| {
            let event = env::distribution_push_event(
                &env.registry.host,
                "team/flood",
                tag,
                &manifest,
                &media_type,
            );
            Bytes::from(serde_json::to_vec(&serde_json::json!({ "events": [event] })).unwrap())
        })
        .collect();
    let started = Instant::now();
    let answers = flood_with_headers(&env, &bodies, 16).await;
    let elapsed = started.elapsed().as_secs_f64();
    let accepted: Vec<&String> = tags
        .iter()
        .zip(&answers)
        .filter(|(_, a)| a.status == 202)
        .map(|(t, _)| t)
        .collect();
    let refused = answers.iter().filter(|a| a.status == 503).count();
    let without_retry_after = answers
        .iter()
        .filter(|a| a.status == 503 && a.retry_after.is_none())
        .count();
    let pid = env.daemon.pid().unwrap();
    let hwm = vm_hwm_kib(pid);
    println!(
        "[backpressure] flood of {FLOOD} from 16 tasks in {elapsed:.1} s: {} × 202, {refused} × 503; daemon VmHWM {:.1} MiB",
        accepted.len(),
        hwm as f64 / 1024.0
    );
    assert_eq!(accepted.len(), CAPACITY, "exactly the capacity is accepted");
    assert_eq!(
        refused,
        FLOOD - CAPACITY,
        "every other notification is refused with 503"
    );
    assert_eq!(without_retry_after, 0, "every 503 carries Retry-After");
    assert!(hwm < 150 * 1024, "VmHWM {hwm} KiB must stay under 150 MiB");
    assert_eq!(
        metric(&env.metrics().await, "imagestream_ingest_queue_depth"),
        Some(CAPACITY as f64)
    );

    env.emulator.clear_faults();
    let cleared = Instant::now();
    let expected: Vec<(String, String)> = accepted
        .iter()
        .map(|t| ((*t).clone(), digest.clone()))
        .collect();
    assert_each_tag_mapped_once(&env, "flood", &expected).await;
    println!(
        "[backpressure] all {CAPACITY} accepted tags mapped {:.1} s after the cluster recovered",
        cleared.elapsed().as_secs_f64()
    );
}

/// Like [`flood`] without a kill, keeping each full answer (status and `Retry-After`).
async fn flood_with_headers(env: &Env, bodies: &[Bytes], tasks: usize) -> Vec<env::Answer> {
    let mut handles = Vec::new();
    let chunk = bodies.len().div_ceil(tasks);
    for (n, part) in bodies.chunks(chunk).enumerate() {
        let (part, http, url) = (part.to_vec(), env.http.clone(), env.daemon.url());
        handles.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(part.len());
            for body in part {
                out.push(notify(&http, &url, &body).await.expect("daemon answers"));
            }
            (n, out)
        }));
    }
    let mut parts = Vec::new();
    for h in handles {
        parts.push(h.await.unwrap());
    }
    parts.sort_by_key(|(n, _)| *n);
    parts.into_iter().flat_map(|(_, out)| out).collect()
}
