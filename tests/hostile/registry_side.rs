//! Hostile input that needs the real registry and the cluster emulator (SPEC §1, §3, §5): payload URLs and
//! hosts are never dereferenced, rules decide namespaces, a config blob that is not JSON dead-letters with a
//! clear reason, and no secret reaches the log even at `RUST_LOG=trace`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncWriteExt as _;

use super::harness::*;
use crate::support::daemon::NOTIFY_TOKEN;
use crate::support::images::{Format, OCI_CONFIG, OCI_MANIFEST, REF_NAME, skopeo_copy};
use crate::support::registry::RegistryAuth;

/// A listener that counts every connection it gets and answers each with an empty 200.
async fn start_canary() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("canary bind");
    let host = listener.local_addr().expect("addr").to_string();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = sock
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });
    (host, hits)
}

#[tokio::test]
async fn payload_urls_and_hosts_are_never_dereferenced_and_the_push_is_mapped_from_the_configured_registry()
 {
    let env = Env::start(EnvOptions {
        notify: false,
        ..EnvOptions::default()
    })
    .await;
    let (canary, hits) = start_canary().await;
    let img = env
        .layout
        .add_image("v1", "amd64", "linux", None, &[b"canary layer"]);
    skopeo_copy(
        &env.layout,
        "v1",
        &env.registry,
        "team/app:v1",
        Format::Oci,
        false,
    );
    let event = json!({
        "id": "canary-1", "timestamp": "2026-01-01T00:00:00Z", "action": "push",
        "target": {"mediaType": OCI_MANIFEST, "size": img.manifest_bytes.len(), "length": img.manifest_bytes.len(),
                   "digest": img.manifest_digest, "repository": "team/app", "tag": "v1",
                   "url": format!("http://{canary}/v2/team/app/manifests/{}", img.manifest_digest),
                   "urls": [format!("http://{canary}/blob")]},
        "request": {"id": "r", "addr": canary, "host": canary, "method": "PUT", "useragent": "x"},
        "actor": {"name": "mallory"},
        "source": {"addr": canary, "instanceID": "i"},
    });
    let r = post(&env.daemon, V1, envelope(&[event])).await;
    assert_eq!(r.status(), 202);
    let events = env.wait_events("team", "app", "v1").await;
    assert_eq!(events[0]["image"], img.manifest_digest.as_str());
    assert_eq!(
        events[0]["dockerImageReference"],
        format!("{}/team/app@{}", env.registry.host, img.manifest_digest),
        "the reference names the configured registry, not the payload's host"
    );
    let image = env
        .emulator
        .image(&img.manifest_digest)
        .expect("image created");
    assert!(!image.to_string().contains(&canary), "{image}");
    env.wait_sample("imagestream_ingest_jobs_total{outcome=\"created\"}", 1.0)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the daemon connected to a host named in the payload"
    );
    assert!(
        !env.daemon.log().contains(&canary),
        "payload host was logged"
    );
    assert_healthy(&env.daemon).await;
}

#[tokio::test]
async fn a_repository_outside_the_rules_is_ignored_and_nothing_reaches_its_namespace() {
    let env = Env::start(EnvOptions {
        namespaces: vec!["apps", "kube-system"],
        extra: "mappings:\n  - registry: reg\n    repository: '^apps/(?P<name>[a-z0-9][-a-z0-9._]*)$'\n    \
                namespace: apps\n    imageStream: '{name}'\n    createImageStream: true\n"
            .into(),
        ..EnvOptions::default()
    })
    .await;
    env.layout
        .add_image("v1", "amd64", "linux", None, &[b"evil layer"]);
    // The daemon's token could write to kube-system: only the rules stand in the way.
    skopeo_copy(
        &env.layout,
        "v1",
        &env.registry,
        "kube-system/evil:v1",
        Format::Oci,
        false,
    );
    skopeo_copy(
        &env.layout,
        "v1",
        &env.registry,
        "apps/good:v1",
        Format::Oci,
        false,
    );
    env.wait_events("apps", "good", "v1").await;
    env.wait_sample(
        "imagestream_ingest_ignored_jobs_total{reason=\"unmapped_repository\"}",
        1.0,
    )
    .await;
    // Names that try to climb out of `apps/` are not even accepted as events.
    for (i, repo) in [
        "apps/../kube-system/evil",
        "apps/%2e%2e/kube-system/evil",
        "apps/evil/../../kube-system/x",
    ]
    .iter()
    .enumerate()
    {
        let r = post(
            &env.daemon,
            V1,
            envelope(&[push(&format!("climb-{i}"), repo, "v1")]),
        )
        .await;
        assert_eq!(r.status(), 200, "{repo}");
    }
    let touched: Vec<_> = env
        .emulator
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("kube-system"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(touched.is_empty(), "requests for kube-system: {touched:?}");
    assert!(env.emulator.stream("kube-system", "evil").is_none());
    assert_healthy(&env.daemon).await;
}

#[tokio::test]
async fn a_config_blob_that_is_not_json_dead_letters_with_a_clear_reason() {
    let env = Env::start(EnvOptions::default()).await;
    let base = env
        .layout
        .add_image("base", "amd64", "linux", None, &[b"bad config layer"]);
    let config = b"this is not JSON {\"architecture\": \"amd64\"".to_vec();
    let config_digest = env.layout.write_blob(&config);
    let manifest = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": base.layers.iter()
            .map(|l| json!({"mediaType": l.media_type, "digest": l.digest, "size": l.size}))
            .collect::<Vec<_>>(),
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("json");
    let manifest_digest = env.layout.write_blob(&manifest_bytes);
    let index_path = env.layout.dir.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).expect("index")).expect("json");
    index["manifests"]
        .as_array_mut()
        .expect("manifests")
        .push(json!({"mediaType": OCI_MANIFEST, "digest": manifest_digest,
                     "size": manifest_bytes.len(), "annotations": {REF_NAME: "bad"}}));
    std::fs::write(&index_path, serde_json::to_vec(&index).expect("json")).expect("index");
    skopeo_copy(
        &env.layout,
        "bad",
        &env.registry,
        "team/badconfig:v1",
        Format::Oci,
        false,
    );

    let dead = env.dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let reason = dead[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("config") && reason.contains("not JSON"),
        "the reason says the image config is not JSON: {reason:?}"
    );
    env.wait_sample("imagestream_ingest_jobs_total{outcome=\"dead\"}", 1.0)
        .await;
    assert_eq!(env.emulator.mapping_posts(), 0);
    assert!(env.emulator.image(&manifest_digest).is_none());
    assert_healthy(&env.daemon).await;
}

#[tokio::test]
async fn no_secret_reaches_the_log_even_at_trace_level() {
    const USER: &str = "robot";
    const PASSWORD: &str = "registry-pass-hostile-4c1d";
    let env = Env::start(EnvOptions {
        auth: RegistryAuth::Htpasswd {
            user: USER.into(),
            password: PASSWORD.into(),
        },
        daemon_env: vec![("RUST_LOG", "trace")],
        ..EnvOptions::default()
    })
    .await;
    env.layout
        .add_image("v1", "amd64", "linux", None, &[b"secret test layer"]);
    skopeo_copy(
        &env.layout,
        "v1",
        &env.registry,
        "team/secret:v1",
        Format::Oci,
        false,
    );
    env.wait_events("team", "secret", "v1").await;
    // A rejected sender and a replay with the right token are logged too.
    let r = reqwest::Client::new()
        .post(format!("{}/notify/reg", env.daemon.url()))
        .bearer_auth("not-the-token")
        .header("content-type", V1)
        .body(envelope(&[push("s", "team/secret", "v1")]))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 401);
    let r = post(
        &env.daemon,
        V1,
        envelope(&[push("s2", "team/secret", "v2")]),
    )
    .await;
    assert!(r.status().is_success());
    env.wait_sample("imagestream_ingest_jobs_total{outcome=\"dead\"}", 1.0)
        .await;

    let log = env.daemon.log();
    assert!(
        log.contains("TRACE"),
        "RUST_LOG=trace reached the daemon (no TRACE line in the log)"
    );
    let basic = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    };
    for (what, secret) in [
        ("notification token", NOTIFY_TOKEN),
        ("registry password", PASSWORD),
        ("registry Basic credentials", basic.as_str()),
        ("cluster token", CLUSTER_TOKEN),
    ] {
        assert!(!log.contains(secret), "the {what} is in the daemon log");
    }
    let metrics = metrics_text(&env.daemon).await;
    for secret in [NOTIFY_TOKEN, PASSWORD, CLUSTER_TOKEN] {
        assert!(!metrics.contains(secret));
    }
    assert_healthy(&env.daemon).await;
}
