//! End to end: pushes already in the real registry, one notification each (sent serially, as a registry
//! sends them), until the emulator holds every mapping; then the floor and the script over the same pushes,
//! each against its own fresh emulator. Also the daemon's startup time and idle memory.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::ack::{envelope, send};
use crate::floor::{self, Target};
use crate::launch::{Launched, Setup};
use crate::populate::Push;
use crate::stats::{
    CpuMeter, Latency, child_pids, cpu_line, cpu_seconds, histogram_quantile, round3, status_mib,
};
use crate::support::emulator::{self, Emulator, Grant};
use crate::support::registry::Registry;

pub const CLUSTER_TOKEN: &str = "load-bench-cluster-token";
const DEADLINE: Duration = Duration::from_secs(180);
const CONCURRENCY: usize = 8;

/// An emulator with namespace `team`, the given streams, and a token with what the daemon needs.
pub async fn emulator_with(streams: &[String]) -> Emulator {
    let e = emulator::start().await;
    e.add_namespace("team");
    for s in streams {
        e.add_stream("team", s);
    }
    e.add_token(
        CLUSTER_TOKEN,
        "system:serviceaccount:ingest:imagestream-ingest",
        &[
            Grant::namespaced("team", "imagestreammappings", "create"),
            Grant::namespaced("team", "imagestreams", "get"),
            Grant::namespaced("team", "imagestreams", "create"),
            Grant::cluster("images", "get"),
            Grant::cluster("images", "create"),
        ],
    );
    e
}

/// Tags with at least one event, over `streams` of namespace `team`.
pub fn mapped_tags(e: &Emulator, streams: &[String]) -> usize {
    streams
        .iter()
        .filter_map(|s| e.stream("team", s))
        .map(|v| {
            v["status"]["tags"]
                .as_array()
                .map(|tags| {
                    tags.iter()
                        .filter(|t| t["items"].as_array().is_some_and(|i| !i.is_empty()))
                        .count()
                })
                .unwrap_or(0)
        })
        .sum()
}

/// Sizes of the end-to-end phase.
pub struct E2eSizes {
    /// Pushes mapped one at a time (notify, wait for the mapping) before the burst: unloaded latency.
    pub single: usize,
    pub script_sample: usize,
    pub startups: usize,
}

fn streams_of(pushes: &[Push]) -> Vec<String> {
    let mut s: Vec<String> = pushes
        .iter()
        .map(|p| p.repo.trim_start_matches("team/").to_string())
        .collect();
    s.sort();
    s.dedup();
    s
}

/// Daemon, floor and script over `pushes` (the first `sizes.single` are mapped one at a time, the rest in
/// a burst); returns the JSON section.
pub async fn run(dir: &Path, registry: &Registry, all: &[Push], sizes: &E2eSizes) -> Value {
    let (singles, pushes) = all.split_at(sizes.single.min(all.len()));
    let n = pushes.len();
    let streams = streams_of(all);
    let registry_pid = child_pids("docker-registry").first().copied().unwrap_or(0);
    let bench_pid = std::process::id();
    let em = emulator_with(&streams).await;
    let kubeconfig = em.write_kubeconfig(dir, CLUSTER_TOKEN);
    let setup = Setup {
        registry_url: &registry.url,
        kubeconfig: &kubeconfig,
        concurrency: CONCURRENCY,
        queue_capacity: 10_000,
    };

    // Startup: several fresh daemons, spawn → healthy → ready, and RSS one second after ready.
    let mut healthy = Vec::new();
    let mut ready = Vec::new();
    let mut idle_rss = Vec::new();
    for i in 0..sizes.startups {
        let d = Launched::start(&dir.join(format!("startup-{i}")), &setup).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        healthy.push(d.healthy_after);
        ready.push(d.ready_after);
        idle_rss.push(status_mib(d.pid, "VmRSS").unwrap_or(0.0));
    }
    let healthy = Latency::of(&mut healthy);
    let ready = Latency::of(&mut ready);
    idle_rss.sort_by(f64::total_cmp);
    let idle_rss_max = idle_rss.last().copied().unwrap_or(0.0);
    println!(
        "startup ({} runs): healthy p50 {:.1} ms max {:.1} ms; ready p50 {:.1} ms max {:.1} ms; idle RSS max {idle_rss_max:.1} MiB",
        sizes.startups, healthy.p50_ms, healthy.max_ms, ready.p50_ms, ready.max_ms
    );

    // The daemon.
    let daemon = Launched::start(&dir.join("daemon"), &setup).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let url = format!("{}/notify/reg", daemon.url());
    let c = reqwest::Client::new();
    let mut single = Vec::new();
    for (i, p) in singles.iter().enumerate() {
        let before = em.mapping_posts();
        let t = Instant::now();
        let body = envelope(
            &format!("single-{i}"),
            &p.repo,
            &p.tag,
            &p.digest,
            &p.media_type,
        );
        let (_, ok) = send(&c, &url, body).await;
        assert!(ok, "notification not accepted:\n{}", daemon.log());
        while em.mapping_posts() == before {
            assert!(t.elapsed() < DEADLINE, "no mapping:\n{}", daemon.log());
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        single.push(t.elapsed());
    }
    let single = Latency::of(&mut single);
    println!(
        "one push at a time ({}): notification → mapping p50 {:.1} ms, max {:.1} ms",
        single.count, single.p50_ms, single.max_ms
    );
    let meter = CpuMeter::start(&[
        ("daemon", daemon.pid),
        ("registry", registry_pid),
        ("bench (emulator + client)", bench_pid),
    ]);
    let recording = crate::launch::profile(daemon.pid, "e2e");
    let cpu0 = cpu_seconds(daemon.pid).unwrap_or(0.0);
    let t0 = Instant::now();
    let mut sent_at = Vec::with_capacity(n);
    let mut done_at: Vec<Duration> = Vec::with_capacity(n);
    let sender = async {
        for (i, p) in pushes.iter().enumerate() {
            sent_at.push(t0.elapsed());
            let body = envelope(
                &format!("e2e-{i}"),
                &p.repo,
                &p.tag,
                &p.digest,
                &p.media_type,
            );
            let (_, ok) = send(&c, &url, body).await;
            assert!(ok, "notification {i} not accepted:\n{}", daemon.log());
        }
    };
    let before = em.mapping_posts();
    let poller = async {
        while done_at.len() < n {
            let posts = em.mapping_posts() - before;
            while done_at.len() < posts.min(n) {
                done_at.push(t0.elapsed());
            }
            assert!(
                t0.elapsed() < DEADLINE,
                "only {} of {n} mappings after {DEADLINE:?}:\n{}",
                done_at.len(),
                daemon.log()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::join!(sender, poller);
    let wall = done_at.last().copied().unwrap_or_default();
    let cpu = cpu_seconds(daemon.pid).unwrap_or(0.0) - cpu0;
    let daemon_cpu = meter.stop();
    crate::launch::stop_profile(recording);
    let peak = status_mib(daemon.pid, "VmHWM").unwrap_or(0.0);
    let metrics = daemon.metrics().await;
    let mapped = mapped_tags(&em, &streams);
    assert_eq!(mapped, all.len(), "every push mapped exactly once");
    let hist = "imagestream_ingest_event_to_mapping_seconds";
    let h50 = histogram_quantile(&metrics, hist, 0.5).unwrap_or(0.0) * 1e3;
    let h99 = histogram_quantile(&metrics, hist, 0.99).unwrap_or(0.0) * 1e3;
    let mut fifo: Vec<Duration> = done_at
        .iter()
        .zip(&sent_at)
        .map(|(d, s)| d.saturating_sub(*s))
        .collect();
    let fifo = Latency::of(&mut fifo);
    let daemon_rate = n as f64 / wall.as_secs_f64();
    println!(
        "end to end: {n} pushes mapped in {:.2} s = {daemon_rate:.0} mappings/s; per push (histogram) p50 {h50:.1} ms p99 {h99:.1} ms; \
         (k-th sent → k-th mapped) p50 {:.1} ms p99 {:.1} ms; daemon CPU {:.2} ms/mapping, peak RSS {peak:.1} MiB",
        wall.as_secs_f64(),
        fifo.p50_ms,
        fifo.p99_ms,
        cpu * 1e3 / n as f64
    );
    println!("  CPU during the burst: {}", cpu_line(&daemon_cpu));
    drop(daemon);
    drop(em);

    // The floor: same pushes, same concurrency, fresh emulator.
    let em = emulator_with(&streams).await;
    let target = Target {
        registry_url: registry.url.clone(),
        registry_host: registry.host.clone(),
        emulator_url: em.url(),
        token: CLUSTER_TOKEN.into(),
    };
    let refs: Vec<(String, String)> = pushes
        .iter()
        .map(|p| (p.repo.clone(), p.tag.clone()))
        .collect();
    let meter = CpuMeter::start(&[
        ("registry", registry_pid),
        ("bench (emulator + floor)", bench_pid),
    ]);
    let floor_wall = floor::floor(&target, &refs, CONCURRENCY).await;
    let floor_cpu = meter.stop();
    assert_eq!(mapped_tags(&em, &streams), n, "floor mapped every push");
    let floor_rate = n as f64 / floor_wall.as_secs_f64();
    println!(
        "floor: {n} pushes in {:.2} s = {floor_rate:.0} mappings/s; daemon/floor = {:.2}",
        floor_wall.as_secs_f64(),
        daemon_rate / floor_rate
    );
    println!("  CPU during the floor: {}", cpu_line(&floor_cpu));
    drop(em);

    // The script: a serial sample, fresh emulator.
    let em = emulator_with(&streams).await;
    let target = Target {
        emulator_url: em.url(),
        ..target
    };
    let sample = &refs[..sizes.script_sample.min(n)];
    let mut per_push = floor::script(&target, sample);
    let script_total: f64 = per_push.iter().map(Duration::as_secs_f64).sum();
    let script_per_push_ms = script_total * 1e3 / sample.len() as f64;
    let script = Latency::of(&mut per_push);
    let daemon_per_push_ms = wall.as_secs_f64() * 1e3 / n as f64;
    println!(
        "script: {} pushes serially, {script_per_push_ms:.1} ms per push (p50 {:.1} ms); \
         daemon {daemon_per_push_ms:.2} ms per push → {:.0}× the script",
        sample.len(),
        script.p50_ms,
        script_per_push_ms / daemon_per_push_ms
    );

    json!({
        "startup": {"runs": sizes.startups, "healthy": healthy.json(), "ready": ready.json(),
                    "idle_rss_mib": idle_rss.iter().map(|v| round3(*v)).collect::<Vec<_>>()},
        "single_push": single.json(),
        "daemon": {"pushes": n, "streams": streams.len(), "concurrency": CONCURRENCY, "cpu": daemon_cpu,
                   "seconds": round3(wall.as_secs_f64()), "mappings_per_s": round3(daemon_rate),
                   "per_push_histogram_p50_ms": round3(h50), "per_push_histogram_p99_ms": round3(h99),
                   "per_push_fifo": fifo.json(), "cpu_seconds": round3(cpu),
                   "cpu_ms_per_mapping": round3(cpu * 1e3 / n as f64), "peak_rss_mib": round3(peak)},
        "floor": {"cpu": floor_cpu, "seconds": round3(floor_wall.as_secs_f64()), "mappings_per_s": round3(floor_rate),
                  "daemon_over_floor": round3(daemon_rate / floor_rate)},
        "script": {"pushes": sample.len(), "ms_per_push": round3(script_per_push_ms),
                   "latency": script.json(),
                   "script_over_daemon_per_push": round3(script_per_push_ms / daemon_per_push_ms)},
    })
}
