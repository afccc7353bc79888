//! Load benchmark of the real daemon binary against the real registry and the cluster emulator: ack latency
//! and throughput of the receiver, end-to-end mappings/s against a minimal client (the floor) and a shell
//! script (skopeo + curl), CPU and memory, startup time, and `resync` over a large registry.
//!
//! `cargo bench --bench load` (full, a few minutes) or `LOAD_QUICK=1 cargo bench --bench load` (smaller
//! sizes). Prints a table and writes `target/bench-results.json`. Started without `--bench` (as
//! `cargo test --all-targets` does) it only checks its own helpers and exits. Every request goes to
//! 127.0.0.1; every process it starts is killed when the run ends.

#[path = "../../tests/support/mod.rs"]
mod support;

mod ack;
mod e2e;
mod floor;
mod launch;
mod populate;
mod resync;
mod stats;

use std::path::PathBuf;
use std::time::Instant;

use serde_json::{Value, json};

use support::registry::{Registry, RegistryOptions};

/// Sizes of one run.
struct Sizes {
    quick: bool,
    ack: ack::AckSizes,
    pushes: usize,
    streams: usize,
    e2e: e2e::E2eSizes,
    resync_repos: usize,
    resync_tags: usize,
}

impl Sizes {
    fn from_env() -> Sizes {
        let quick = std::env::var("LOAD_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let (secs, flood, pushes, sample, startups, repos) = if quick {
            (3, 5_000, 200, 10, 3, 100)
        } else {
            (10, 20_000, 1_000, 20, 5, 1_000)
        };
        Sizes {
            quick,
            ack: ack::AckSizes {
                rates: vec![100, 500],
                secs,
                senders: 32,
                flood,
            },
            pushes,
            streams: 20,
            e2e: e2e::E2eSizes {
                single: 20,
                script_sample: sample,
                startups,
            },
            resync_repos: repos,
            resync_tags: 10,
        }
    }
}

/// `target/` (the parent of the bench's scratch directory).
fn target_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().map(PathBuf::from).unwrap_or(tmp)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        stats::self_check();
        println!("load benchmark helpers ok; run it with `cargo bench --bench load`");
        return;
    }
    let sizes = Sizes::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let results = runtime.block_on(run(&sizes));
    let path = target_dir().join("bench-results.json");
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&results).expect("results json"),
    )
    .expect("write results");
    println!("\nwrote {}", path.display());
}

async fn run(sizes: &Sizes) -> Value {
    let started = Instant::now();
    std::fs::create_dir_all(env!("CARGO_TARGET_TMPDIR")).expect("scratch parent");
    // On the project's disk (not tmpfs), so the queue's fsync is a real one.
    let dir = tempfile::TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch dir");
    let load = stats::load_average();
    println!(
        "load benchmark ({} mode), {} CPUs, load average at start {load}, scratch on {}",
        if sizes.quick { "quick" } else { "full" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        stats::filesystem_of(dir.path())
    );

    let ack_em = e2e::emulator_with(&[]).await;
    let ack_dir = dir.path().join("ack");
    std::fs::create_dir_all(&ack_dir).expect("ack dir");
    let kubeconfig = ack_em.write_kubeconfig(&ack_dir, e2e::CLUSTER_TOKEN);
    let ack = ack::run(&ack_dir, &kubeconfig, &sizes.ack).await;
    drop(ack_em);

    let registry = Registry::start(RegistryOptions::default()).await;
    let base = populate::push_base(&registry, &dir.path().join("layout-e2e"), "team/base");
    let pushes = populate::distinct_pushes(
        &registry,
        &base,
        sizes.pushes + sizes.e2e.single,
        sizes.streams,
    )
    .await;
    let e2e_dir = dir.path().join("e2e");
    std::fs::create_dir_all(&e2e_dir).expect("e2e dir");
    let e2e = e2e::run(&e2e_dir, &registry, &pushes, &sizes.e2e).await;
    drop(registry);

    let registry = Registry::start(RegistryOptions::default()).await;
    let base = populate::push_base(&registry, &dir.path().join("layout-resync"), "team/base");
    let resync_dir = dir.path().join("resync");
    std::fs::create_dir_all(&resync_dir).expect("resync dir");
    let resync = resync::run(
        &resync_dir,
        &registry,
        &base,
        sizes.resync_repos,
        sizes.resync_tags,
    )
    .await;
    drop(registry);

    let summary = summary(&ack, &e2e, &resync);
    println!("\n{}", table(&summary));
    println!("total time {:.0} s", started.elapsed().as_secs_f64());
    json!({"mode": if sizes.quick { "quick" } else { "full" }, "load_average_at_start": load,
           "summary": summary, "ack": ack, "end_to_end": e2e, "resync": resync})
}

/// One row per target: (what, measured, target, met).
fn summary(ack: &Value, e2e: &Value, resync: &Value) -> Value {
    let serial_500 = ack["serial"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["rate_per_s"] == 500))
        .map(|r| r["latency"]["p99_ms"].as_f64().unwrap_or(f64::NAN))
        .unwrap_or(f64::NAN);
    let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let idle = e2e["startup"]["idle_rss_mib"]
        .as_array()
        .map(|v| v.iter().map(num).fold(0.0, f64::max))
        .unwrap_or(f64::NAN);
    let rows = [
        (
            "ack p99 at 500/s, one serial sender (ms)",
            serial_500,
            "<= 2",
            Some(serial_500 <= 2.0),
        ),
        (
            "notifications/s, 32 senders",
            num(&ack["flood"]["per_s"]),
            ">= 5000",
            Some(num(&ack["flood"]["per_s"]) >= 5000.0),
        ),
        (
            "end-to-end mappings/s, daemon / floor",
            num(&e2e["floor"]["daemon_over_floor"]),
            ">= 0.8",
            Some(num(&e2e["floor"]["daemon_over_floor"]) >= 0.8),
        ),
        (
            "script time per push / daemon time per push",
            num(&e2e["script"]["script_over_daemon_per_push"]),
            ">= 100",
            Some(num(&e2e["script"]["script_over_daemon_per_push"]) >= 100.0),
        ),
        (
            "idle RSS (MiB, max of startups)",
            idle,
            "<= 30",
            Some(idle <= 30.0),
        ),
        (
            "peak RSS under the flood (MiB)",
            num(&ack["peak_rss_mib"]),
            "<= 80",
            Some(num(&ack["peak_rss_mib"]) <= 80.0),
        ),
        (
            "startup to ready, p50 (ms)",
            num(&e2e["startup"]["ready"]["p50_ms"]),
            "<= 100",
            Some(num(&e2e["startup"]["ready"]["p50_ms"]) <= 100.0),
        ),
        (
            "resync tags/s, daemon / floor",
            num(&resync["daemon_over_floor"]),
            "(no target)",
            None,
        ),
    ];
    Value::Array(
        rows.iter()
            .map(|(what, value, target, met)| {
                json!({"what": what, "measured": stats::round3(*value), "target": target, "met": met})
            })
            .collect(),
    )
}

fn table(summary: &Value) -> String {
    let mut out = format!(
        "| {:<46} | {:>10} | {:>11} | {:<4} |\n|{}|{}|{}|{}|\n",
        "measure",
        "measured",
        "target",
        "met",
        "-".repeat(48),
        "-".repeat(12),
        "-".repeat(13),
        "-".repeat(6)
    );
    for row in summary.as_array().into_iter().flatten() {
        out.push_str(&format!(
            "| {:<46} | {:>10.2} | {:>11} | {:<4} |\n",
            row["what"].as_str().unwrap_or(""),
            row["measured"].as_f64().unwrap_or(f64::NAN),
            row["target"].as_str().unwrap_or(""),
            match row["met"].as_bool() {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            }
        ));
    }
    out
}
