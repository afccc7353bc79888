//! `resync` against the real registry: walks catalog and tags, maps what the rules allow, is idempotent;
//! and the periodic resync inside `serve` repairs a push whose notification never arrived.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::daemon::{Daemon, free_port};
use support::emulator::{self, Emulator, Grant};
use support::images::{Format, OciLayout, registry_manifest, skopeo_copy};
use support::registry::{Registry, RegistryAuth, RegistryOptions};
use tempfile::TempDir;

const TOKEN: &str = "resync-cluster-token";

async fn setup(resync_interval: &str) -> (TempDir, Emulator, Registry, Daemon, OciLayout) {
    let dir = TempDir::new().expect("tmp");
    let emulator = emulator::start().await;
    emulator.add_namespace("team");
    emulator.add_token(
        TOKEN,
        "resync",
        &[
            Grant::namespaced("team", "imagestreammappings", "create"),
            Grant::namespaced("team", "imagestreams", "get"),
            Grant::namespaced("team", "imagestreams", "create"),
            Grant::cluster("images", "get"),
            Grant::cluster("images", "create"),
        ],
    );
    let kubeconfig = emulator.write_kubeconfig(dir.path(), TOKEN);
    // No notifications: only resync can find these pushes.
    let registry = Registry::start(RegistryOptions {
        notify_url: None,
        notify_token: None,
        auth: RegistryAuth::None,
        tls: false,
    })
    .await;
    let config = format!(
        "listen: 127.0.0.1:{{{{PORT}}}}\nadminListen: 127.0.0.1:{{{{ADMIN_PORT}}}}\nstateDir: state\n\
         registries:\n  - name: reg\n    url: {}\n\
         sources:\n  - name: reg\n    type: distribution\n    path: /notify/reg\n    registry: reg\n    auth:\n      bearerTokenFile: notify-token\n\
         cluster:\n  sink: kube\n  kubeconfig: {}\n\
         worker:\n  concurrency: 4\n  resyncInterval: {resync_interval}\n",
        registry.url,
        kubeconfig.display()
    );
    let daemon = Daemon::start(&dir.path().join("daemon"), free_port(), &config).await;
    let layout = OciLayout::new(&dir.path().join("layout"));
    (dir, emulator, registry, daemon, layout)
}

fn counts(stdout: &str) -> Value {
    serde_json::from_str(stdout.trim()).expect("counts JSON on stdout")
}

#[tokio::test]
async fn resync_maps_every_allowed_tag_once_and_a_second_run_is_all_unchanged() {
    let (_dir, emulator, registry, daemon, layout) = setup("0s").await;
    for (tag, repo, content) in [
        ("a1", "team/alpha:v1", &b"alpha one"[..]),
        ("a2", "team/alpha:v2", b"alpha two"),
        ("b1", "team/beta:latest", b"beta"),
        ("deep", "a/b/c:v1", b"unmapped"),
    ] {
        layout.add_image(tag, "amd64", "linux", None, &[content]);
        skopeo_copy(&layout, tag, &registry, repo, Format::Oci, false);
    }
    let (code, stdout, stderr) = daemon.cli(&["resync"]);
    assert_eq!(code, 0, "{stderr}");
    let c = counts(&stdout);
    assert_eq!(
        (
            c["created"].as_u64(),
            c["unchanged"].as_u64(),
            c["ignored"].as_u64(),
            c["failed"].as_u64()
        ),
        (Some(3), Some(0), Some(1), Some(0)),
        "{stdout}"
    );
    for (repo, stream, tag) in [
        ("team/alpha", "alpha", "v1"),
        ("team/alpha", "alpha", "v2"),
        ("team/beta", "beta", "latest"),
    ] {
        let events = emulator.tag_events("team", stream, tag);
        assert_eq!(events.len(), 1, "{repo}:{tag}");
        let (_, _, digest) = registry_manifest(&registry, repo, tag);
        assert_eq!(events[0]["image"], Value::String(digest));
    }
    let posts = emulator.mapping_posts();

    let (code, stdout, stderr) = daemon.cli(&["resync"]);
    assert_eq!(code, 0, "{stderr}");
    let c = counts(&stdout);
    assert_eq!(
        (c["created"].as_u64(), c["unchanged"].as_u64()),
        (Some(0), Some(3)),
        "{stdout}"
    );
    assert_eq!(
        emulator.mapping_posts(),
        posts,
        "an idempotent run posts nothing"
    );

    let (code, stdout, _) = daemon.cli(&["resync", "--repository", "^team/alpha$"]);
    assert_eq!(code, 0);
    assert_eq!(counts(&stdout)["unchanged"].as_u64(), Some(2));
    let (code, _, _) = daemon.cli(&["resync", "--registry", "nope"]);
    assert_eq!(code, 64);
}

#[tokio::test]
async fn periodic_resync_repairs_a_push_whose_notification_was_lost() {
    let (_dir, emulator, registry, daemon, layout) = setup("1s").await;
    layout.add_image("lost", "amd64", "linux", None, &[b"lost notification"]);
    skopeo_copy(
        &layout,
        "lost",
        &registry,
        "team/lost:v1",
        Format::Oci,
        false,
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while emulator.tag_events("team", "lost", "v1").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never resynced:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Later periodic runs find it unchanged: still one event.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(emulator.tag_events("team", "lost", "v1").len(), 1);
}
