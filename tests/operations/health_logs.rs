//! `/readyz` against a failing cluster, and the structured log (one outcome line per job, no secrets).

use std::collections::BTreeSet;

use base64::Engine as _;
use serde_json::Value;

use crate::support::daemon::NOTIFY_TOKEN;
use crate::support::emulator::{Fault, FaultAction};
use crate::support::images::registry_manifest;
use crate::support::registry::RegistryAuth;
use crate::{CLUSTER_TOKEN, Env, EnvOptions, REGISTRY_PASSWORD};

#[tokio::test]
async fn readyz_fails_when_the_cluster_fails_for_longer_than_the_ready_window_and_recovers() {
    let env = Env::start(EnvOptions {
        ready_window: Some("1s"),
        ..EnvOptions::default()
    })
    .await;
    env.wait_readyz(200).await;
    env.emulator.inject(Fault {
        path_contains: "/".into(),
        method: None,
        action: FaultAction::Status(503, None),
        times: 0,
    });
    env.wait_readyz(503).await;
    let body = reqwest::get(format!("{}/readyz", env.daemon.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("cluster"),
        "the reason names the cluster: {body}"
    );
    let health = reqwest::get(format!("{}/healthz", env.daemon.url()))
        .await
        .unwrap();
    assert_eq!(
        health.status().as_u16(),
        200,
        "liveness does not depend on the cluster"
    );
    env.emulator.clear_faults();
    env.wait_readyz(200).await;
    let m = env.scrape().await;
    assert!(
        m.get(
            "cluster_request_duration_seconds_count",
            &[("op", "ping"), ("code", "503")]
        ) >= 1.0
    );
}

/// The log's JSON lines whose `outcome` ends a job (`retry` does not).
fn outcome_lines(lines: &[Value]) -> Vec<&Value> {
    lines
        .iter()
        .filter(|l| {
            matches!(
                l["outcome"].as_str(),
                Some("created" | "unchanged" | "ignored" | "dead" | "dry_run")
            )
        })
        .collect()
}

#[tokio::test]
async fn json_logs_have_one_outcome_line_per_job_and_never_a_secret() {
    let env = Env::start(EnvOptions {
        auth: Some(RegistryAuth::Htpasswd {
            user: "robot".into(),
            password: REGISTRY_PASSWORD.into(),
        }),
        env: vec![("RUST_LOG", "trace")],
        ..EnvOptions::default()
    })
    .await;
    env.layout
        .add_image("app", "amd64", "linux", None, &[b"log app"]);
    env.layout
        .add_image("deep", "amd64", "linux", None, &[b"log deep"]);
    env.layout
        .add_image("ghost", "amd64", "linux", None, &[b"log ghost"]);
    env.push("app", "team/app:v1");
    env.wait_events("team", "app", "v1", 1).await;
    env.push("app", "team/app:v1");
    env.push("deep", "a/b/c:v1"); // no rule matches: ignored
    env.push("ghost", "ghost/app:v1"); // no namespace: dead
    env.wait_metrics("4 finished jobs", |m| {
        ["created", "unchanged", "ignored", "dead"]
            .iter()
            .all(|o| m.get("jobs_total", &[("outcome", o)]) >= 1.0)
            && m.get("queue_depth", &[]) == 0.0
    })
    .await;
    let (_, _, digest) = registry_manifest(&env.registry, "team/app", "v1");

    let log = env.daemon.log();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() > 50, "RUST_LOG=trace was applied");
    let outcomes = outcome_lines(&lines);
    let ids: BTreeSet<&str> = outcomes
        .iter()
        .map(|l| l["event_id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        ids.len(),
        outcomes.len(),
        "one outcome line per job: {outcomes:#?}"
    );
    assert_eq!(outcomes.len(), 4, "{outcomes:#?}");
    assert!(!ids.contains(""));
    let by_outcome = |o: &str| -> &Value {
        let found: Vec<_> = outcomes.iter().filter(|l| l["outcome"] == o).collect();
        assert_eq!(found.len(), 1, "one {o} line");
        found[0]
    };
    for o in ["created", "unchanged", "ignored"] {
        let line = by_outcome(o);
        assert_eq!(line["message"], "job finished", "{line}");
        for field in [
            "event_id",
            "repository",
            "tag",
            "digest",
            "namespace",
            "stream",
            "outcome",
        ] {
            assert!(line[field].is_string(), "{o} line lacks {field}: {line}");
        }
        assert!(
            line["duration_ms"].is_u64(),
            "{o} line lacks duration_ms: {line}"
        );
    }
    for o in ["created", "unchanged"] {
        let line = by_outcome(o);
        assert_eq!(line["repository"], "team/app");
        assert_eq!(line["tag"], "v1");
        assert_eq!(line["digest"], digest.as_str());
        assert_eq!(line["namespace"], "team");
        assert_eq!(line["stream"], "app");
    }
    assert_eq!(by_outcome("ignored")["repository"], "a/b/c");
    // A dead job's line carries the reason instead of what was built (it may have failed before that).
    let dead = by_outcome("dead");
    assert_eq!(dead["repository"], "ghost/app");
    for field in ["event_id", "tag", "reason", "cause"] {
        assert!(dead[field].is_string(), "dead line lacks {field}: {dead}");
    }
    assert!(dead["duration_ms"].is_u64());

    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("robot:{REGISTRY_PASSWORD}"));
    for secret in [
        NOTIFY_TOKEN,
        REGISTRY_PASSWORD,
        basic.as_str(),
        CLUSTER_TOKEN,
    ] {
        let leaks: Vec<&str> = log.lines().filter(|l| l.contains(secret)).collect();
        assert!(
            leaks.is_empty(),
            "a secret is logged:\n{}",
            leaks.join("\n")
        );
    }
}
