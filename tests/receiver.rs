//! The notification endpoint and the CLI of the real binary: status codes of SPEC §4, exit codes of §2,
//! durability of accepted events across a restart. No registry is needed: the configured one is a closed port,
//! so accepted jobs stay queued (retrying) and can be observed.

mod support;

use std::time::Duration;

use serde_json::json;
use support::daemon::{Daemon, NOTIFY_TOKEN, free_port};
use tempfile::TempDir;

const V1: &str = "application/vnd.docker.distribution.events.v1+json";
const V2: &str = "application/vnd.docker.distribution.events.v2+json";
const DIGEST: &str = "sha256:4afff550708506c5b8b7384ad10d401a02b29ed587cb2730cb02753095b5178d";

fn config(registry_port: u16, max_body: u64) -> String {
    format!(
        "listen: 127.0.0.1:{{{{PORT}}}}\nadminListen: 127.0.0.1:{{{{ADMIN_PORT}}}}\nstateDir: state\nmaxBodyBytes: {max_body}\n\
         registries:\n  - name: reg\n    url: http://127.0.0.1:{registry_port}\n\
         sources:\n  - name: reg\n    type: distribution\n    path: /notify/reg\n    registry: reg\n    auth:\n      bearerTokenFile: notify-token\n\
         cluster:\n  sink: directory\n  directory: mappings\n\
         worker:\n  maxAttempts: 1000\n"
    )
}

async fn start(dir: &TempDir, max_body: u64) -> Daemon {
    Daemon::start(
        &dir.path().join("d"),
        free_port(),
        &config(free_port(), max_body),
    )
    .await
}

fn push(id: &str, repo: &str, tag: &str) -> serde_json::Value {
    json!({"id": id, "timestamp": "2026-01-01T00:00:00Z", "action": "push",
           "target": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 1, "length": 1,
                      "digest": DIGEST, "repository": repo, "tag": tag,
                      "url": "http://169.254.169.254/latest/meta-data"},
           "request": {"id": "r", "addr": "10.0.0.1", "host": "169.254.169.254", "method": "PUT"}})
}

async fn post(
    d: &Daemon,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("{}/notify/reg", d.url()))
        .header("content-type", content_type)
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("post")
}

fn envelope(events: &[serde_json::Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "events": events })).expect("json")
}

async fn metric(d: &Daemon, needle: &str) -> bool {
    let text = reqwest::get(format!("{}/metrics", d.url()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.contains(needle)
}

#[tokio::test]
async fn status_codes_follow_the_contract() {
    let dir = TempDir::new().expect("tmp");
    let d = start(&dir, 4096).await;
    let ok_body = envelope(&[push("e1", "team/app", "v1")]);

    // 401: missing and wrong token, with WWW-Authenticate; nothing queued.
    for token in [
        None,
        Some("wrong"),
        Some(&NOTIFY_TOKEN[..NOTIFY_TOKEN.len() - 1]),
    ] {
        let r = post(&d, token, V1, ok_body.clone()).await;
        assert_eq!(r.status(), 401, "token {token:?}");
        assert!(r.headers().get("www-authenticate").is_some());
    }
    // 405 for other methods.
    let r = reqwest::Client::new()
        .get(format!("{}/notify/reg", d.url()))
        .bearer_auth(NOTIFY_TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 405);
    // 413 by Content-Length, and for a chunked body that grows past the limit.
    let r = post(&d, Some(NOTIFY_TOKEN), V1, vec![b' '; 5000]).await;
    assert_eq!(r.status(), 413);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..10).map(|_| Ok(vec![b' '; 1000])).collect();
    let r = reqwest::Client::new()
        .post(format!("{}/notify/reg", d.url()))
        .bearer_auth(NOTIFY_TOKEN)
        .header("content-type", V1)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 413);
    // 415 for a content type that cannot carry the envelope.
    assert_eq!(
        post(&d, Some(NOTIFY_TOKEN), "text/html", ok_body.clone())
            .await
            .status(),
        415
    );
    // 400 for bodies that are not an envelope.
    for bad in [
        &b"{"[..],
        b"[]",
        b"{\"events\": 3}",
        b"{\"events\": [{\"id\": 1}]}",
    ] {
        assert_eq!(
            post(&d, Some(NOTIFY_TOKEN), V1, bad.to_vec())
                .await
                .status(),
            400
        );
    }
    // 200 for well-formed events that are not actionable.
    let mut pull = push("p1", "team/app", "v1");
    pull["action"] = json!("pull");
    let mut blob = push("b1", "team/app", "v1");
    blob["target"]["mediaType"] = json!("application/octet-stream");
    assert_eq!(
        post(&d, Some(NOTIFY_TOKEN), V1, envelope(&[pull, blob]))
            .await
            .status(),
        200
    );
    // 202 for an actionable push (both event media types), then 200 for the same id again.
    assert_eq!(
        post(&d, Some(NOTIFY_TOKEN), V1, ok_body.clone())
            .await
            .status(),
        202
    );
    assert_eq!(
        post(&d, Some(NOTIFY_TOKEN), V1, ok_body.clone())
            .await
            .status(),
        200
    );
    assert_eq!(
        post(
            &d,
            Some(NOTIFY_TOKEN),
            V2,
            envelope(&[push("e2", "team/app", "v2")])
        )
        .await
        .status(),
        202
    );
    assert_eq!(
        post(
            &d,
            Some(NOTIFY_TOKEN),
            "application/json",
            envelope(&[push("e3", "team/app", "v3")])
        )
        .await
        .status(),
        202
    );
    // The auth scheme is case-insensitive (RFC 7235); the token is not.
    let lower = reqwest::Client::new()
        .post(format!("{}/notify/reg", d.url()))
        .header("authorization", format!("bearer {NOTIFY_TOKEN}"))
        .header("content-type", V1)
        .body(envelope(&[push("e4", "team/app", "v4")]))
        .send()
        .await
        .expect("post");
    assert_eq!(lower.status(), 202);
    // Same content with a new id while the first is pending: deduplicated.
    assert_eq!(
        post(
            &d,
            Some(NOTIFY_TOKEN),
            V1,
            envelope(&[push("e1-again", "team/app", "v1")])
        )
        .await
        .status(),
        200
    );

    assert!(
        metric(
            &d,
            "imagestream_ingest_notifications_total{source=\"reg\",outcome=\"unauthorized\"} 3"
        )
        .await
    );
    assert!(
        metric(
            &d,
            "imagestream_ingest_notifications_total{source=\"reg\",outcome=\"queued\"} 4"
        )
        .await
    );
    assert!(
        metric(
            &d,
            "imagestream_ingest_notifications_total{source=\"reg\",outcome=\"duplicate\"} 2"
        )
        .await
    );
    assert!(metric(&d, "imagestream_ingest_queue_depth 4").await);
    assert!(
        !d.log().contains(NOTIFY_TOKEN),
        "the notification token leaked into the log"
    );
}

#[tokio::test]
async fn accepted_events_survive_a_kill_and_run_after_restart() {
    let dir = TempDir::new().expect("tmp");
    let mut d = start(&dir, 1 << 20).await;
    for i in 0..20 {
        let r = post(
            &d,
            Some(NOTIFY_TOKEN),
            V1,
            envelope(&[push(&format!("k{i}"), "team/app", &format!("t{i}"))]),
        )
        .await;
        assert_eq!(r.status(), 202);
    }
    d.kill9();
    d.spawn().await;
    assert!(
        metric(&d, "imagestream_ingest_queue_depth 20").await,
        "all 20 accepted jobs are pending after kill -9"
    );
    // The same ids are still recognised after the restart.
    let r = post(
        &d,
        Some(NOTIFY_TOKEN),
        V1,
        envelope(&[push("k0", "team/app", "t0")]),
    )
    .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn sigterm_stops_accepting_and_exits_zero() {
    let dir = TempDir::new().expect("tmp");
    let mut d = start(&dir, 1 << 20).await;
    assert_eq!(
        post(
            &d,
            Some(NOTIFY_TOKEN),
            V1,
            envelope(&[push("s1", "team/app", "v1")])
        )
        .await
        .status(),
        202
    );
    let status = d.terminate();
    assert!(status.success(), "exit status {status}");
    d.spawn().await;
    assert!(
        metric(&d, "imagestream_ingest_queue_depth 1").await,
        "the unfinished job stayed queued"
    );
}

#[tokio::test]
async fn health_and_readiness_endpoints_answer() {
    let dir = TempDir::new().expect("tmp");
    let d = start(&dir, 1 << 20).await;
    assert_eq!(
        reqwest::get(format!("{}/healthz", d.url()))
            .await
            .expect("healthz")
            .status(),
        200
    );
    // The directory sink is always reachable once probed.
    let mut ready = false;
    for _ in 0..50 {
        if reqwest::get(format!("{}/readyz", d.url()))
            .await
            .expect("readyz")
            .status()
            == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "readyz never turned 200:\n{}", d.log());
}

fn cli(dir: &std::path::Path, config: &str, args: &[&str]) -> (i32, String, String) {
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::write(dir.join("notify-token"), "t\n").expect("token");
    let path = dir.join("config.yaml");
    std::fs::write(&path, config).expect("config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imagestream-ingest"))
        .args(args)
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_prints_the_effective_config_without_secrets() {
    let dir = TempDir::new().expect("tmp");
    let yaml = config(5000, 1024)
        .replace("{{PORT}}", "18080")
        .replace("{{ADMIN_PORT}}", "18081");
    let (code, stdout, stderr) = cli(dir.path(), &yaml, &["check-config"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("/notify/reg"));
    assert!(stdout.contains("<redacted>"));
    assert!(
        !stdout.contains("\nt\n") && !stdout.contains(": t\n"),
        "secret printed: {stdout}"
    );
}

#[test]
fn a_bad_config_exits_64_naming_the_key() {
    let dir = TempDir::new().expect("tmp");
    let cases = [
        ("listen: 127.0.0.1:1\nbogus: 1\n", "bogus"),
        ("listen: nope\n", "listen"),
        (
            "registries:\n  - name: r\n    url: ftp://x\n",
            "registries[0].url",
        ),
        (
            "registries:\n  - name: r\n    url: http://x\n    auth: {username: u, passwordFile: missing}\n",
            "registries[0].auth.passwordFile",
        ),
        (
            "registries:\n  - name: r\n    url: http://x\nsources:\n  - {name: s, type: distribution, path: /n, registry: r, auth: {}}\n",
            "sources[0].auth",
        ),
        (
            "registries:\n  - name: r\n    url: http://x\nmappings:\n  - {registry: r, repository: '(', namespace: a, imageStream: b}\n",
            "mappings[0].repository",
        ),
        ("worker:\n  concurrency: 0\n", "worker.concurrency"),
    ];
    for (yaml, key) in cases {
        let (code, _, stderr) = cli(dir.path(), yaml, &["check-config"]);
        assert_eq!(code, 64, "{yaml}: {stderr}");
        assert!(
            stderr.contains(key),
            "{yaml}: message does not name `{key}`: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
}

#[test]
fn usage_errors_exit_64_and_help_exits_0() {
    let bin = env!("CARGO_BIN_EXE_imagestream-ingest");
    let out = std::process::Command::new(bin)
        .arg("--help")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    let out = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    let out = std::process::Command::new(bin)
        .arg("frobnicate")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
}
