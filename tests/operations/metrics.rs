//! `/metrics` after real pushes: counters, histograms, label sets, and the docs and alerts that name them.

use std::collections::BTreeSet;

use crate::scrape::{assert_labels_from_fixed_sets, metric_names_in};
use crate::{Env, EnvOptions};

#[tokio::test]
async fn metrics_count_notifications_jobs_and_requests_after_real_pushes() {
    let env = Env::start(EnvOptions::default()).await;
    env.layout
        .add_image("app", "amd64", "linux", None, &[b"ops app"]);
    let amd = env
        .layout
        .add_image("amd", "amd64", "linux", None, &[b"ops amd"]);
    let arm = env
        .layout
        .add_image("arm", "arm64", "linux", Some("v8"), &[b"ops arm"]);
    env.layout.add_index("multi", &[&amd, &arm]);
    env.layout
        .add_image("ghost", "amd64", "linux", None, &[b"ops ghost"]);
    env.layout
        .add_image("deep", "amd64", "linux", None, &[b"ops deep"]);

    env.push("app", "team/app:v1");
    env.wait_events("team", "app", "v1", 1).await;
    env.push("app", "team/app:v1"); // identical re-push: a new event, `unchanged`
    env.push("multi", "team/multi:v1"); // index: two child Images, then the mapping
    env.push("ghost", "ghost/app:v1"); // no such namespace: dead
    env.push("deep", "a/b/c:v1"); // no rule matches: ignored
    let m = env
        .wait_metrics(
            "2 created, 1 unchanged, 1 ignored, 1 dead, empty queue",
            |m| {
                m.get("jobs_total", &[("outcome", "created")]) >= 2.0
                    && m.get("jobs_total", &[("outcome", "unchanged")]) >= 1.0
                    && m.get("jobs_total", &[("outcome", "ignored")]) >= 1.0
                    && m.get("dead_letters", &[]) >= 1.0
                    && m.get("queue_depth", &[]) == 0.0
            },
        )
        .await;

    let q = |outcome| {
        m.get(
            "notifications_total",
            &[("source", "reg"), ("outcome", outcome)],
        )
    };
    assert_eq!(q("queued"), 5.0, "one queued notification per tagged push");
    assert_eq!(m.get("jobs_total", &[("outcome", "created")]), 2.0);
    assert_eq!(m.get("jobs_total", &[("outcome", "unchanged")]), 1.0);
    assert_eq!(m.get("jobs_total", &[("outcome", "dead")]), 1.0);
    assert_eq!(m.get("jobs_total", &[("outcome", "ignored")]), 1.0);
    assert_eq!(
        m.get("ignored_jobs_total", &[("reason", "unmapped_repository")]),
        1.0
    );
    assert_eq!(m.get("jobs_total", &[("outcome", "retry")]), 0.0);
    assert_eq!(m.get("dead_letters", &[]), 1.0);
    assert_eq!(m.get("queue_depth", &[]), 0.0);
    let reg = |op| {
        m.get(
            "registry_request_duration_seconds_count",
            &[("registry", "reg"), ("op", op)],
        )
    };
    assert!(
        reg("manifest") >= 6.0,
        "4 tags + 2 children: {}",
        reg("manifest")
    );
    assert!(reg("blob") >= 3.0, "a config per image");
    let cluster = |op, code| {
        m.get(
            "cluster_request_duration_seconds_count",
            &[("op", op), ("code", code)],
        )
    };
    assert_eq!(cluster("create_mapping", "201"), 2.0);
    assert_eq!(cluster("create_image", "201"), 2.0, "the index's children");
    assert!(cluster("get_stream", "200") >= 1.0, "the unchanged check");
    assert!(
        cluster("create_mapping", "404") >= 1.0,
        "the missing namespace"
    );
    assert!(cluster("ping", "200") >= 1.0, "the readiness probe");
    assert_eq!(m.get("event_to_mapping_seconds_count", &[]), 2.0);
    assert_eq!(m.get("digest_mismatches_total", &[]), 0.0);
    assert_labels_from_fixed_sets(&m);

    // The README documents every exported metric, and nothing else.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("\n### Metrics\n").expect("### Metrics");
    let section = &readme[start..];
    let section = &section[..section[5..]
        .find("\n### ")
        .map(|i| i + 5)
        .unwrap_or(section.len())];
    let documented: BTreeSet<String> = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.split('`').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(
        documented,
        m.documented_names(),
        "README metrics table vs /metrics"
    );

    // Every series the alerts use exists.
    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/overlays/servicemonitor/prometheusrule.yaml"
    ))
    .unwrap();
    let exported: BTreeSet<String> = m
        .samples
        .iter()
        .map(|(n, _, _)| n.trim_start_matches("imagestream_ingest_").to_string())
        .collect();
    for name in metric_names_in(&rules).union(&metric_names_in(&readme)) {
        assert!(
            exported.contains(name) || m.types.contains_key(&format!("imagestream_ingest_{name}")),
            "imagestream_ingest_{name} is used in an alert but not exported"
        );
    }
}
