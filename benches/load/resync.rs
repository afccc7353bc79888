//! `imagestream-ingest resync` over a registry of many repositories × tags, against the floor doing the same
//! walk (catalog, tags/list per repository, serially) and the same three requests per tag, each against its
//! own fresh emulator with the streams already there.

use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};

use crate::e2e::{CLUSTER_TOKEN, emulator_with, mapped_tags};
use crate::floor::{self, Target};
use crate::launch::{Setup, run_cli, write_config};
use crate::populate::{Base, tree};
use crate::stats::{CpuMeter, child_pids, cpu_line, round3};
use crate::support::daemon::free_port;
use crate::support::registry::Registry;

const CONCURRENCY: usize = 8;

/// Populate `repos` × `tags` (plus the base repository's one tag), then time the daemon and the floor.
pub async fn run(dir: &Path, registry: &Registry, base: &Base, repos: usize, tags: usize) -> Value {
    let (names, populate) = tree(registry, base, repos, tags).await;
    let total = repos * tags + 1;
    println!(
        "resync: registry holds {repos} repositories × {tags} tags (+ the base tag) = {total} tags, prepared in {:.1} s",
        populate.as_secs_f64()
    );
    let mut streams: Vec<String> = names
        .iter()
        .map(|r| r.trim_start_matches("team/").to_string())
        .collect();
    streams.push(base.repo.trim_start_matches("team/").to_string());

    let em = emulator_with(&streams).await;
    let kubeconfig = em.write_kubeconfig(dir, CLUSTER_TOKEN);
    let config = write_config(
        &dir.join("resync-daemon"),
        free_port(),
        &Setup {
            registry_url: &registry.url,
            kubeconfig: &kubeconfig,
            concurrency: CONCURRENCY,
            queue_capacity: 10_000,
        },
    );
    let registry_pid = child_pids("docker-registry").first().copied().unwrap_or(0);
    let bench_pid = std::process::id();
    let meter = CpuMeter::start(&[("registry", registry_pid), ("bench (emulator)", bench_pid)]);
    let run = run_cli(&config, &["resync"]);
    let daemon_cpu = meter.stop();
    assert_eq!(run.code, 0, "resync failed: {}\n{}", run.stdout, run.stderr);
    let counts: Value = serde_json::from_str(run.stdout.trim()).expect("resync counts");
    assert_eq!(
        counts["created"].as_u64(),
        Some(total as u64),
        "resync created every tag: {counts}"
    );
    assert_eq!(mapped_tags(&em, &streams), total);
    let daemon_s = run.wall.as_secs_f64();
    let cpu = run.cpu_seconds.unwrap_or(0.0);
    println!(
        "  daemon resync: {total} tags in {daemon_s:.2} s = {:.0} tags/s, CPU {cpu:.2} s ({:.3} ms/tag)",
        total as f64 / daemon_s,
        cpu * 1e3 / total as f64
    );
    println!(
        "    other CPU during the daemon's resync: {}",
        cpu_line(&daemon_cpu)
    );
    drop(em);

    let em = emulator_with(&streams).await;
    let target = Target {
        registry_url: registry.url.clone(),
        registry_host: registry.host.clone(),
        emulator_url: em.url(),
        token: CLUSTER_TOKEN.into(),
    };
    let meter = CpuMeter::start(&[
        ("registry", registry_pid),
        ("bench (emulator + floor)", bench_pid),
    ]);
    let started = Instant::now();
    let refs = floor::walk(&target).await;
    let walk_s = started.elapsed().as_secs_f64();
    assert_eq!(refs.len(), total, "the floor's walk found every tag");
    floor::floor(&target, &refs, CONCURRENCY).await;
    let floor_s = started.elapsed().as_secs_f64();
    let floor_cpu = meter.stop();
    assert_eq!(mapped_tags(&em, &streams), total);
    println!(
        "  floor: walk {walk_s:.2} s + mapping = {floor_s:.2} s = {:.0} tags/s; daemon/floor (throughput) = {:.2}",
        total as f64 / floor_s,
        floor_s / daemon_s
    );
    println!("    CPU during the floor: {}", cpu_line(&floor_cpu));
    json!({"repositories": repos, "tags_per_repository": tags, "tags": total,
           "prepare_seconds": round3(populate.as_secs_f64()),
           "daemon": {"seconds": round3(daemon_s), "tags_per_s": round3(total as f64 / daemon_s),
                      "cpu_seconds": round3(cpu), "counts": counts,
                      "other_cpu": daemon_cpu},
           "floor": {"cpu": floor_cpu, "seconds": round3(floor_s), "walk_seconds": round3(walk_s),
                     "tags_per_s": round3(total as f64 / floor_s)},
           "daemon_over_floor": round3(floor_s / daemon_s)})
}
