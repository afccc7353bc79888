//! The receiver's cost: how fast a notification is acknowledged (202 after the fsync'd enqueue).
//!
//! The daemon's registry URL points at a listener that accepts connections and never answers, so the few
//! jobs the worker starts hang on their first request and no job consumes CPU while acks are measured;
//! everything stays queued on disk. Phases: one serial sender at fixed rates, then 32 senders at full speed.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::launch::{Launched, Setup};
use crate::populate::sha256;
use crate::stats::{Latency, cpu_seconds, metric_value, round3, status_mib};
use crate::support::daemon::NOTIFY_TOKEN;

const EVENTS_V1: &str = "application/vnd.docker.distribution.events.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// A one-event envelope as CNCF distribution 2.8 sends it for a tag push of `repo:tag`.
pub fn envelope(id: &str, repo: &str, tag: &str, digest: &str, media_type: &str) -> Vec<u8> {
    let event = json!({
        "id": id,
        "timestamp": "2026-01-02T03:04:05.123456789Z",
        "action": "push",
        "target": {"mediaType": media_type, "size": 1370, "digest": digest, "length": 1370,
                   "repository": repo, "url": format!("http://127.0.0.1:5000/v2/{repo}/manifests/{digest}"),
                   "tag": tag},
        "request": {"id": format!("req-{id}"), "addr": "127.0.0.1:40000", "host": "127.0.0.1:5000",
                    "method": "PUT", "useragent": "containers/5.30.0 (github.com/containers/image)"},
        "actor": {},
        "source": {"addr": "registry:5000", "instanceID": "0d6b4d4e-6f35-4e02-9b2d-1c2a3b4c5d6e"},
    });
    serde_json::to_vec(&json!({ "events": [event] })).expect("envelope json")
}

fn ack_body(phase: &str, i: usize) -> Vec<u8> {
    let tag = format!("{phase}-{i}");
    envelope(
        &format!("ack-{tag}"),
        "team/ack",
        &tag,
        &sha256(tag.as_bytes()),
        DOCKER_MANIFEST,
    )
}

/// POST one body; returns (latency, whether it was acknowledged with 202).
pub async fn send(c: &reqwest::Client, url: &str, body: Vec<u8>) -> (Duration, bool) {
    let started = Instant::now();
    let accepted = match c
        .post(url)
        .header("content-type", EVENTS_V1)
        .bearer_auth(NOTIFY_TOKEN)
        .body(body)
        .send()
        .await
    {
        Ok(r) => {
            let ok = r.status().as_u16() == 202;
            let _ = r.bytes().await;
            ok
        }
        Err(_) => false,
    };
    (started.elapsed(), accepted)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build()
        .expect("client")
}

/// One sender, one request at a time, started on a fixed schedule of `rate` per second for `secs`.
async fn serial(url: &str, pid: u32, rate: usize, secs: u64) -> Value {
    let c = client();
    let total = rate * secs as usize;
    let mut samples = Vec::with_capacity(total);
    let mut errors = 0;
    let mut late = 0;
    let cpu0 = cpu_seconds(pid).unwrap_or(0.0);
    let t0 = tokio::time::Instant::now();
    for i in 0..total {
        let due = t0 + Duration::from_secs_f64(i as f64 / rate as f64);
        if tokio::time::Instant::now() > due + Duration::from_millis(1) {
            late += 1;
        }
        tokio::time::sleep_until(due).await;
        let (latency, ok) = send(&c, url, ack_body(&format!("r{rate}"), i)).await;
        samples.push(latency);
        errors += usize::from(!ok);
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid).unwrap_or(0.0) - cpu0;
    let lat = Latency::of(&mut samples);
    println!(
        "  serial {rate:>4}/s: sent {total} in {wall:.1} s, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, \
         errors {errors}, started late {late}, daemon CPU {:.3} ms/notification",
        lat.p50_ms,
        lat.p99_ms,
        lat.max_ms,
        cpu * 1e3 / total as f64
    );
    json!({"rate_per_s": rate, "seconds": secs, "sent": total, "errors": errors, "late_starts": late,
           "achieved_per_s": round3(total as f64 / wall), "latency": lat.json(),
           "daemon_cpu_ms_per_notification": round3(cpu * 1e3 / total as f64)})
}

/// `senders` concurrent senders, each one request at a time, until `total` were sent.
async fn flood(url: &str, pid: u32, senders: usize, total: usize) -> (Value, f64) {
    let c = client();
    let next = Arc::new(AtomicUsize::new(0));
    let cpu0 = cpu_seconds(pid).unwrap_or(0.0);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let (c, next, url) = (c.clone(), next.clone(), url.to_string());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut errors = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return (samples, errors);
                }
                let (latency, ok) = send(&c, &url, ack_body("flood", i)).await;
                samples.push(latency);
                errors += usize::from(!ok);
            }
        }));
    }
    let mut samples = Vec::with_capacity(total);
    let mut errors = 0;
    for t in tasks {
        let (s, e) = t.await.expect("sender task");
        samples.extend(s);
        errors += e;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid).unwrap_or(0.0) - cpu0;
    let lat = Latency::of(&mut samples);
    let rate = total as f64 / wall;
    println!(
        "  {senders} senders: {total} in {wall:.2} s = {rate:.0}/s, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, \
         errors {errors}, daemon CPU {:.3} ms/notification",
        lat.p50_ms,
        lat.p99_ms,
        lat.max_ms,
        cpu * 1e3 / total as f64
    );
    (
        json!({"senders": senders, "sent": total, "errors": errors, "seconds": round3(wall),
               "per_s": round3(rate), "latency": lat.json(),
               "daemon_cpu_ms_per_notification": round3(cpu * 1e3 / total as f64)}),
        rate,
    )
}

/// Sizes of the ack phases.
pub struct AckSizes {
    pub rates: Vec<usize>,
    pub secs: u64,
    pub senders: usize,
    pub flood: usize,
}

/// Run every ack phase against a fresh daemon in `dir`; returns the JSON section.
pub async fn run(dir: &Path, kubeconfig: &Path, sizes: &AckSizes) -> Value {
    // Accepts (the kernel completes the handshake), never answers: jobs park on their first registry GET.
    let black_hole = TcpListener::bind("127.0.0.1:0").expect("black hole");
    let registry_url = format!("http://{}", black_hole.local_addr().expect("addr"));
    let queue_capacity =
        sizes.flood + sizes.rates.iter().sum::<usize>() * sizes.secs as usize + 1000;
    let daemon = Launched::start(
        dir,
        &Setup {
            registry_url: &registry_url,
            kubeconfig,
            concurrency: 8,
            queue_capacity,
        },
    )
    .await;
    let url = format!("{}/notify/reg", daemon.url());
    println!(
        "ack latency (stateDir on {}):",
        crate::stats::filesystem_of(dir)
    );
    // Warm the connection and the store (first commit creates tables).
    let c = client();
    for i in 0..20 {
        send(&c, &url, ack_body("warm", i)).await;
    }
    let recording = crate::launch::profile(daemon.pid, "ack");
    let mut serial_results = Vec::new();
    for &rate in &sizes.rates {
        serial_results.push(serial(&url, daemon.pid, rate, sizes.secs).await);
    }
    let (flood_result, _) = flood(&url, daemon.pid, sizes.senders, sizes.flood).await;
    crate::launch::stop_profile(recording);
    let metrics = daemon.metrics().await;
    let queued = metric_value(
        &metrics,
        "imagestream_ingest_notifications_total{source=\"reg\",outcome=\"queued\"}",
    );
    let peak = status_mib(daemon.pid, "VmHWM");
    let rss = status_mib(daemon.pid, "VmRSS");
    println!(
        "  daemon after the flood: {} queued in total, peak RSS {:.1} MiB, RSS now {:.1} MiB",
        queued.unwrap_or(0.0),
        peak.unwrap_or(0.0),
        rss.unwrap_or(0.0)
    );
    drop(black_hole);
    json!({"state_dir_filesystem": crate::stats::filesystem_of(dir),
           "startup_to_healthy_ms": round3(daemon.healthy_after.as_secs_f64() * 1e3),
           "startup_to_ready_ms": round3(daemon.ready_after.as_secs_f64() * 1e3),
           "serial": serial_results, "flood": flood_result, "queued_total": queued,
           "peak_rss_mib": peak.map(round3), "rss_after_mib": rss.map(round3)})
}
