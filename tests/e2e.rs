//! End to end: real `docker-registry` (CNCF distribution 2.8) → notifications → the real daemon binary →
//! the cluster emulator. Images are built from scratch and pushed with skopeo. Every expected field is
//! computed here from what the registry serves, independently of the daemon's code.

mod support;

#[path = "e2e/cluster_faults.rs"]
mod cluster_faults;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use support::daemon::{Daemon, NOTIFY_TOKEN, free_port};
use support::emulator::{self, Emulator, Grant};
use support::images::{Format, OciLayout, registry_blob, registry_manifest, skopeo_copy};
use support::registry::{Registry, RegistryAuth, RegistryOptions};
use tempfile::TempDir;

const CLUSTER_TOKEN: &str = "cluster-token-9f2d";
const WAIT: Duration = Duration::from_secs(30);

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Everything one scenario needs, each on its own ports and directories.
struct Env {
    dir: TempDir,
    emulator: Emulator,
    registry: Registry,
    daemon: Daemon,
    layout: OciLayout,
}

struct EnvOptions {
    auth: RegistryAuth,
    tls: bool,
    /// Extra YAML appended to the daemon config (e.g. `mappings:`).
    extra: String,
    /// Grants of the daemon's cluster token; None = everything the daemon needs in `team`.
    grants: Option<Vec<Grant>>,
    namespaces: Vec<&'static str>,
}

impl Default for EnvOptions {
    fn default() -> Self {
        Self {
            auth: RegistryAuth::None,
            tls: false,
            extra: String::new(),
            grants: None,
            namespaces: vec!["team"],
        }
    }
}

fn daemon_grants(namespace: &str) -> Vec<Grant> {
    vec![
        Grant::namespaced(namespace, "imagestreammappings", "create"),
        Grant::namespaced(namespace, "imagestreams", "get"),
        Grant::namespaced(namespace, "imagestreams", "create"),
        Grant::cluster("images", "get"),
        Grant::cluster("images", "create"),
    ]
}

impl Env {
    async fn start(opts: EnvOptions) -> Env {
        let dir = TempDir::new().expect("tempdir");
        let emulator = emulator::start().await;
        for ns in &opts.namespaces {
            emulator.add_namespace(ns);
        }
        let grants = opts.grants.unwrap_or_else(|| daemon_grants("team"));
        emulator.add_token(
            CLUSTER_TOKEN,
            "system:serviceaccount:ingest:imagestream-ingest",
            &grants,
        );
        let kubeconfig = emulator.write_kubeconfig(dir.path(), CLUSTER_TOKEN);

        let port = free_port();
        let registry = Registry::start(RegistryOptions {
            notify_url: Some(format!("http://127.0.0.1:{port}/notify/reg")),
            notify_token: Some(NOTIFY_TOKEN.to_string()),
            auth: opts.auth,
            tls: opts.tls,
        })
        .await;
        let mut registry_auth = String::new();
        if let Some((user, pass)) = registry.credentials() {
            let daemon_dir = dir.path().join("daemon");
            std::fs::create_dir_all(&daemon_dir).expect("dir");
            std::fs::write(daemon_dir.join("registry-password"), format!("{pass}\n")).expect("pw");
            registry_auth = format!(
                "    auth:\n      username: {user}\n      passwordFile: registry-password\n"
            );
        }
        let ca = match &registry.ca_file {
            Some(p) => format!("    caFile: {}\n", p.display()),
            None => String::new(),
        };
        let config = format!(
            "listen: 127.0.0.1:{{{{PORT}}}}\nadminListen: 127.0.0.1:{{{{ADMIN_PORT}}}}\nstateDir: state\n\
             registries:\n  - name: reg\n    url: {url}\n{ca}{registry_auth}\
             sources:\n  - name: reg\n    type: distribution\n    path: /notify/reg\n    registry: reg\n    auth:\n      bearerTokenFile: notify-token\n\
             cluster:\n  sink: kube\n  kubeconfig: {kubeconfig}\n\
             worker:\n  concurrency: 4\n  maxAttempts: 3\n{extra}",
            url = registry.url,
            kubeconfig = kubeconfig.display(),
            extra = opts.extra,
        );
        let daemon = Daemon::start(&dir.path().join("daemon"), port, &config).await;
        let layout = OciLayout::new(&dir.path().join("layout"));
        Env {
            dir,
            emulator,
            registry,
            daemon,
            layout,
        }
    }

    async fn wait_events(&self, ns: &str, stream: &str, tag: &str, n: usize) -> Vec<Value> {
        let what = format!("{n} tag event(s) on {ns}/{stream}:{tag}");
        let result = tokio::time::timeout(WAIT, async {
            loop {
                let events = self.emulator.tag_events(ns, stream, tag);
                if events.len() >= n {
                    return events;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        match result {
            Ok(events) => events,
            Err(_) => panic!(
                "timed out waiting for {what}\ndaemon log:\n{}",
                self.daemon.log()
            ),
        }
    }

    async fn dead_letters(&self, n: usize) -> Vec<Value> {
        let url = format!(
            "http://127.0.0.1:{}/admin/dead-letters",
            self.daemon.admin_port
        );
        let client = reqwest::Client::new();
        let result = tokio::time::timeout(WAIT, async {
            loop {
                if let Ok(r) = client.get(&url).send().await {
                    if let Ok(list) = r.json::<Vec<Value>>().await {
                        if list.len() >= n {
                            return list;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        match result {
            Ok(list) => list,
            Err(_) => panic!(
                "timed out waiting for {n} dead letter(s)\ndaemon log:\n{}",
                self.daemon.log()
            ),
        }
    }

    /// Wait until the daemon's /metrics contains `needle`.
    async fn wait_metric(&self, needle: &str) {
        let result = tokio::time::timeout(WAIT, async {
            loop {
                if self.metrics().await.contains(needle) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        if result.is_err() {
            panic!(
                "timed out waiting for metric `{needle}`\nmetrics:\n{}\ndaemon log:\n{}",
                self.metrics().await,
                self.daemon.log()
            );
        }
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.daemon.url()))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }
}

/// The Image fields SPEC §6 requires, computed from the registry's bytes.
fn assert_image_matches_registry(env: &Env, image: &Value, repo: &str) {
    let name = image["metadata"]["name"].as_str().expect("image name");
    let (manifest_bytes, _ct, digest) = registry_manifest(&env.registry, repo, name);
    assert_eq!(name, digest, "image name is the manifest digest");
    assert_eq!(sha256(&manifest_bytes), digest);
    let manifest: Value = serde_json::from_slice(&manifest_bytes).expect("manifest json");
    assert_eq!(
        image["dockerImageReference"],
        Value::String(format!("{}/{repo}@{digest}", env.registry.host))
    );
    assert_eq!(image["dockerImageManifestMediaType"], manifest["mediaType"]);
    assert_eq!(
        image["metadata"]["annotations"]["image.openshift.io/dockerLayersOrder"],
        "ascending"
    );
    assert!(
        image["metadata"]["annotations"]
            .get("openshift.io/image.managed")
            .is_none()
    );
    let layers = manifest["layers"].as_array().expect("layers");
    let got = image["dockerImageLayers"]
        .as_array()
        .expect("dockerImageLayers");
    assert_eq!(got.len(), layers.len());
    for (g, l) in got.iter().zip(layers) {
        assert_eq!(g["name"], l["digest"]);
        assert_eq!(g["size"], l["size"]);
        assert_eq!(g["mediaType"], l["mediaType"]);
    }
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .expect("config digest");
    let config_bytes = registry_blob(&env.registry, repo, config_digest);
    assert_eq!(sha256(&config_bytes), config_digest);
    let config: Value = serde_json::from_slice(&config_bytes).expect("config json");
    let mut seen = HashSet::new();
    let unique: u64 = layers
        .iter()
        .filter(|l| seen.insert(l["digest"].as_str().unwrap_or_default().to_string()))
        .map(|l| l["size"].as_u64().unwrap_or(0))
        .sum();
    let meta = &image["dockerImageMetadata"];
    assert_eq!(meta["kind"], "DockerImage");
    assert_eq!(meta["apiVersion"], "image.openshift.io/1.0");
    assert_eq!(meta["Id"], config_digest);
    assert_eq!(
        meta["Size"].as_u64(),
        Some(config_bytes.len() as u64 + unique)
    );
    assert_eq!(meta["Architecture"], config["architecture"]);
    assert_eq!(meta["Created"], config["created"]);
    assert_eq!(meta["Author"], config["author"]);
    assert_eq!(meta["Config"]["Env"], config["config"]["Env"]);
    assert_eq!(meta["Config"]["Cmd"], config["config"]["Cmd"]);
    assert_eq!(image["dockerImageMetadataVersion"], "1.0");
}

fn assert_tag_event_is(env: &Env, event: &Value, repo: &str, digest: &str) {
    assert_eq!(event["image"], digest);
    assert_eq!(
        event["dockerImageReference"],
        Value::String(format!("{}/{repo}@{digest}", env.registry.host))
    );
}

#[tokio::test]
async fn docker_schema2_tag_is_mapped_with_fields_computed_from_the_registry() {
    let env = Env::start(EnvOptions::default()).await;
    env.layout.add_image(
        "v1",
        "amd64",
        "linux",
        None,
        &[b"base layer", b"app layer", b"base layer"],
    );
    skopeo_copy(
        &env.layout,
        "v1",
        &env.registry,
        "team/app:v1",
        Format::V2s2,
        false,
    );
    let events = env.wait_events("team", "app", "v1", 1).await;
    assert_eq!(events.len(), 1);
    let digest = events[0]["image"].as_str().expect("image").to_string();
    let (_, ct, registry_digest) = registry_manifest(&env.registry, "team/app", "v1");
    assert_eq!(
        digest, registry_digest,
        "the tag event names what the registry serves for the tag"
    );
    assert_eq!(ct, "application/vnd.docker.distribution.manifest.v2+json");
    assert_tag_event_is(&env, &events[0], "team/app", &digest);
    let image = env.emulator.image(&digest).expect("image stored");
    assert_image_matches_registry(&env, &image, "team/app");
    assert_eq!(
        image["dockerImageLayers"].as_array().map(Vec::len),
        Some(3),
        "duplicate layers kept"
    );
}

#[tokio::test]
async fn oci_manifest_tag_is_mapped() {
    let env = Env::start(EnvOptions::default()).await;
    env.layout.add_image(
        "v1",
        "arm64",
        "linux",
        Some("v8"),
        &[b"oci layer one", b"oci layer two"],
    );
    skopeo_copy(
        &env.layout,
        "v1",
        &env.registry,
        "team/oci:v1",
        Format::Oci,
        false,
    );
    let events = env.wait_events("team", "oci", "v1", 1).await;
    let digest = events[0]["image"].as_str().expect("image").to_string();
    let image = env.emulator.image(&digest).expect("image stored");
    assert_eq!(
        image["dockerImageManifestMediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_image_matches_registry(&env, &image, "team/oci");
    assert_tag_event_is(&env, &events[0], "team/oci", &digest);
}

async fn index_scenario(format: Format, list_media_type: &str) {
    let env = Env::start(EnvOptions::default()).await;
    let amd = env
        .layout
        .add_image("amd", "amd64", "linux", None, &[b"amd64 layer"]);
    let arm = env
        .layout
        .add_image("arm", "arm64", "linux", Some("v8"), &[b"arm64 layer"]);
    env.layout.add_index("multi", &[&amd, &arm]);
    skopeo_copy(
        &env.layout,
        "multi",
        &env.registry,
        "team/multi:v1",
        format,
        true,
    );
    let events = env.wait_events("team", "multi", "v1", 1).await;
    let digest = events[0]["image"].as_str().expect("image").to_string();
    let (list_bytes, _, registry_digest) = registry_manifest(&env.registry, "team/multi", "v1");
    assert_eq!(digest, registry_digest);
    let list: Value = serde_json::from_slice(&list_bytes).expect("list json");
    assert_eq!(list["mediaType"], list_media_type);
    let image = env.emulator.image(&digest).expect("list image stored");
    assert_eq!(image["dockerImageManifestMediaType"], list_media_type);
    assert!(
        image["dockerImageLayers"]
            .as_array()
            .is_none_or(|l| l.is_empty()),
        "a list has no layers"
    );
    assert_eq!(
        image["dockerImageMetadata"]["Id"],
        Value::String(digest.clone())
    );
    let entries = image["dockerImageManifests"]
        .as_array()
        .expect("dockerImageManifests");
    let children = list["manifests"].as_array().expect("manifests");
    assert_eq!(entries.len(), 2);
    for (e, c) in entries.iter().zip(children) {
        assert_eq!(e["digest"], c["digest"]);
        assert_eq!(e["mediaType"], c["mediaType"]);
        assert_eq!(e["manifestSize"], c["size"]);
        assert_eq!(e["architecture"], c["platform"]["architecture"]);
        assert_eq!(e["os"], c["platform"]["os"]);
        let variant = c["platform"].get("variant").cloned().unwrap_or(Value::Null);
        let got = e.get("variant").cloned().unwrap_or(Value::Null);
        assert_eq!(got, variant);
        // createChildImages: every child exists as an Image, built from the registry like any image.
        let child = env
            .emulator
            .image(c["digest"].as_str().expect("child digest"))
            .expect("child image created");
        assert_image_matches_registry(&env, &child, "team/multi");
    }
}

#[tokio::test]
async fn oci_index_with_two_platforms_maps_the_index_and_creates_child_images() {
    index_scenario(Format::Oci, "application/vnd.oci.image.index.v1+json").await;
}

#[tokio::test]
async fn docker_manifest_list_maps_the_list_and_creates_child_images() {
    index_scenario(
        Format::V2s2,
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
    .await;
}

#[tokio::test]
async fn a_new_image_on_an_existing_tag_moves_the_tag_with_a_second_event() {
    let env = Env::start(EnvOptions::default()).await;
    let first = env
        .layout
        .add_image("one", "amd64", "linux", None, &[b"first"]);
    skopeo_copy(
        &env.layout,
        "one",
        &env.registry,
        "team/moving:latest",
        Format::Oci,
        false,
    );
    env.wait_events("team", "moving", "latest", 1).await;
    let second = env
        .layout
        .add_image("two", "amd64", "linux", None, &[b"second"]);
    skopeo_copy(
        &env.layout,
        "two",
        &env.registry,
        "team/moving:latest",
        Format::Oci,
        false,
    );
    let events = env.wait_events("team", "moving", "latest", 2).await;
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[0]["image"],
        Value::String(second.manifest_digest.clone()),
        "newest first"
    );
    assert_eq!(
        events[1]["image"],
        Value::String(first.manifest_digest.clone())
    );
}

#[tokio::test]
async fn an_identical_re_push_and_a_replayed_notification_add_no_tag_event() {
    let env = Env::start(EnvOptions::default()).await;
    let img = env
        .layout
        .add_image("v1", "amd64", "linux", None, &[b"same"]);
    skopeo_copy(
        &env.layout,
        "v1",
        &env.registry,
        "team/same:v1",
        Format::Oci,
        false,
    );
    env.wait_events("team", "same", "v1", 1).await;
    let posts_before = env.emulator.mapping_posts();

    // Identical re-push: the registry notifies again with a new event id.
    skopeo_copy(
        &env.layout,
        "v1",
        &env.registry,
        "team/same:v1",
        Format::Oci,
        false,
    );
    // Replay by hand: same id as a delivered event would be deduplicated; a new id must be `unchanged`.
    let body = serde_json::json!({"events": [{
        "id": "replayed-by-test", "timestamp": "2026-01-01T00:00:00Z", "action": "push",
        "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": img.manifest_digest,
                   "repository": "team/same", "tag": "v1", "size": 1, "length": 1}}]});
    let client = reqwest::Client::new();
    for expected in [202u16, 200] {
        let r = client
            .post(format!("{}/notify/reg", env.daemon.url()))
            .bearer_auth(NOTIFY_TOKEN)
            .header(
                "content-type",
                "application/vnd.docker.distribution.events.v1+json",
            )
            .json(&body)
            .send()
            .await
            .expect("post");
        assert_eq!(
            r.status().as_u16(),
            expected,
            "first post queues, the replay is a duplicate"
        );
    }
    // Sync point: a later push to another tag is processed after the events above (per-source FIFO).
    env.layout
        .add_image("marker", "amd64", "linux", None, &[b"marker"]);
    skopeo_copy(
        &env.layout,
        "marker",
        &env.registry,
        "team/same:marker",
        Format::Oci,
        false,
    );
    env.wait_events("team", "same", "marker", 1).await;
    env.wait_metric("imagestream_ingest_jobs_total{outcome=\"unchanged\"} 2")
        .await;
    assert_eq!(env.emulator.tag_events("team", "same", "v1").len(), 1);
    assert_eq!(
        env.emulator.mapping_posts(),
        posts_before + 1,
        "only the marker was posted"
    );
}

#[tokio::test]
async fn a_push_by_digest_only_creates_no_mapping() {
    let env = Env::start(EnvOptions::default()).await;
    let img = env
        .layout
        .add_image("bydigest", "amd64", "linux", None, &[b"by digest"]);
    let dest = format!("team/bydigest@{}", img.manifest_digest);
    skopeo_copy(
        &env.layout,
        "bydigest",
        &env.registry,
        &dest,
        Format::Oci,
        false,
    );
    env.layout
        .add_image("marker", "amd64", "linux", None, &[b"marker"]);
    skopeo_copy(
        &env.layout,
        "marker",
        &env.registry,
        "team/marker:v1",
        Format::Oci,
        false,
    );
    env.wait_events("team", "marker", "v1", 1).await;
    assert!(env.emulator.stream("team", "bydigest").is_none());
    assert!(env.emulator.image(&img.manifest_digest).is_none());
}

#[tokio::test]
async fn a_registry_with_htpasswd_and_tls_is_read_with_the_configured_credentials_and_ca() {
    let env = Env::start(EnvOptions {
        auth: RegistryAuth::Htpasswd {
            user: "robot".into(),
            password: "robot-pass-81".into(),
        },
        tls: true,
        ..EnvOptions::default()
    })
    .await;
    env.layout
        .add_image("v1", "amd64", "linux", None, &[b"secured"]);
    skopeo_copy(
        &env.layout,
        "v1",
        &env.registry,
        "team/secure:v1",
        Format::Oci,
        false,
    );
    let events = env.wait_events("team", "secure", "v1", 1).await;
    let image = env
        .emulator
        .image(events[0]["image"].as_str().expect("image"))
        .expect("image");
    assert_image_matches_registry(&env, &image, "team/secure");
    assert!(
        !env.daemon.log().contains("robot-pass-81"),
        "registry password leaked into the log"
    );
}

#[tokio::test]
async fn a_registry_with_token_auth_is_read_through_the_bearer_flow() {
    let issuer = support::token::start_token_issuer(&[("robot", "token-pass-3")]).await;
    let requests = issuer.requests.clone();
    let env = Env::start(EnvOptions {
        auth: RegistryAuth::Token {
            issuer,
            user: "robot".into(),
            password: "token-pass-3".into(),
        },
        ..EnvOptions::default()
    })
    .await;
    env.layout
        .add_image("v1", "amd64", "linux", None, &[b"token"]);
    let before = requests.load(std::sync::atomic::Ordering::SeqCst);
    skopeo_copy(
        &env.layout,
        "v1",
        &env.registry,
        "team/tokened:v1",
        Format::Oci,
        false,
    );
    let events = env.wait_events("team", "tokened", "v1", 1).await;
    let image = env
        .emulator
        .image(events[0]["image"].as_str().expect("image"))
        .expect("image");
    assert_image_matches_registry(&env, &image, "team/tokened");
    assert!(
        requests.load(std::sync::atomic::Ordering::SeqCst) > before,
        "the issuer was used"
    );
}

#[tokio::test]
async fn a_missing_stream_is_created_when_the_rule_allows_it() {
    let env = Env::start(EnvOptions::default()).await;
    assert!(env.emulator.stream("team", "fresh").is_none());
    env.layout
        .add_image("v1", "amd64", "linux", None, &[b"fresh"]);
    skopeo_copy(
        &env.layout,
        "v1",
        &env.registry,
        "team/fresh:v1",
        Format::Oci,
        false,
    );
    env.wait_events("team", "fresh", "v1", 1).await;
    assert!(env.emulator.stream("team", "fresh").is_some());
}

#[tokio::test]
async fn a_missing_stream_without_create_image_stream_dead_letters_the_job() {
    let env = Env::start(EnvOptions {
        extra: "mappings:\n  - registry: reg\n    repository: '^(?P<ns>[a-z]+)/(?P<name>[a-z]+)$'\n    namespace: '{ns}'\n    imageStream: '{name}'\n    createImageStream: false\n".into(),
        ..EnvOptions::default()
    })
    .await;
    env.emulator.add_stream("team", "exists");
    env.layout
        .add_image("v1", "amd64", "linux", None, &[b"nostream"]);
    skopeo_copy(
        &env.layout,
        "v1",
        &env.registry,
        "team/absent:v1",
        Format::Oci,
        false,
    );
    let dead = env.dead_letters(1).await;
    let reason = dead[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("absent"),
        "reason names the stream: {reason}"
    );
    assert!(
        env.emulator.stream("team", "absent").is_none(),
        "no stream was created"
    );
    // The existing stream still works.
    skopeo_copy(
        &env.layout,
        "v1",
        &env.registry,
        "team/exists:v1",
        Format::Oci,
        false,
    );
    env.wait_events("team", "exists", "v1", 1).await;
}

#[tokio::test]
async fn a_missing_namespace_dead_letters_the_job_without_creating_anything() {
    let env = Env::start(EnvOptions {
        grants: Some([daemon_grants("team"), daemon_grants("ghost")].concat()),
        ..EnvOptions::default()
    })
    .await;
    env.layout
        .add_image("v1", "amd64", "linux", None, &[b"ghost"]);
    skopeo_copy(
        &env.layout,
        "v1",
        &env.registry,
        "ghost/app:v1",
        Format::Oci,
        false,
    );
    let dead = env.dead_letters(1).await;
    let reason = dead[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("ghost"),
        "reason names the namespace: {reason}"
    );
    assert!(env.emulator.stream("ghost", "app").is_none());

    // The operator fixes the cause and retries through the CLI while the daemon runs.
    env.emulator.add_namespace("ghost");
    let (code, stdout, stderr) = env.daemon.cli(&["dead-letters", "list"]);
    assert_eq!(code, 0, "{stderr}");
    let listed: Vec<Value> = serde_json::from_str(&stdout).expect("list is JSON");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["job"]["event"]["repository"], "ghost/app");
    let (code, stdout, stderr) = env.daemon.cli(&["dead-letters", "retry"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).expect("json")["retried"],
        1
    );
    env.wait_events("ghost", "app", "v1", 1).await;
    let (_, stdout, _) = env.daemon.cli(&["dead-letters", "list"]);
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&stdout)
            .expect("json")
            .len(),
        0
    );
}

#[tokio::test]
async fn map_prints_only_the_mapping_and_dry_run_writes_nothing() {
    let mut env = Env::start(EnvOptions::default()).await;
    // Stop the daemon so only the CLI acts on this push.
    env.daemon.kill9();
    let img = env
        .layout
        .add_image("v1", "amd64", "linux", None, &[b"cli"]);
    skopeo_copy(
        &env.layout,
        "v1",
        &env.registry,
        "team/cli:v1",
        Format::Oci,
        false,
    );

    let (code, stdout, stderr) = env.daemon.cli(&["map", "--dry-run", "team/cli:v1"]);
    assert_eq!(code, 0, "{stderr}");
    let mapping: Value = serde_json::from_str(&stdout).expect("stdout is exactly the mapping JSON");
    assert_eq!(mapping["kind"], "ImageStreamMapping");
    assert_eq!(mapping["metadata"]["namespace"], "team");
    assert_eq!(mapping["metadata"]["name"], "cli");
    assert_eq!(mapping["tag"], "v1");
    assert_eq!(
        mapping["image"]["metadata"]["name"],
        Value::String(img.manifest_digest.clone())
    );
    assert_eq!(env.emulator.mapping_posts(), 0, "dry run posted nothing");

    let (code, stdout, stderr) = env.daemon.cli(&["map", "team/cli:v1"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).expect("json")["tag"],
        "v1"
    );
    let events = env.wait_events("team", "cli", "v1", 1).await;
    assert_tag_event_is(&env, &events[0], "team/cli", &img.manifest_digest);

    // Again: unchanged, nothing posted.
    let posts = env.emulator.mapping_posts();
    let (code, _, stderr) = env.daemon.cli(&["map", "team/cli:v1"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(env.emulator.mapping_posts(), posts);
    assert_eq!(env.emulator.tag_events("team", "cli", "v1").len(), 1);

    let (code, _, stderr) = env.daemon.cli(&["map", "team/cli:missing"]);
    assert_eq!(code, 1, "a tag the registry does not have fails: {stderr}");
    let (code, _, _) = env
        .daemon
        .cli(&["map", &format!("team/cli@{}", img.manifest_digest)]);
    assert_eq!(code, 64, "a mapping needs a tag");
}

#[tokio::test]
async fn a_forbidden_cluster_answer_dead_letters_without_hammering() {
    let env = Env::start(EnvOptions {
        grants: Some(vec![
            Grant::namespaced("team", "imagestreams", "get"),
            Grant::cluster("images", "create"),
            Grant::cluster("images", "get"),
        ]),
        ..EnvOptions::default()
    })
    .await;
    env.layout
        .add_image("v1", "amd64", "linux", None, &[b"forbidden"]);
    skopeo_copy(
        &env.layout,
        "v1",
        &env.registry,
        "team/denied:v1",
        Format::Oci,
        false,
    );
    let dead = env.dead_letters(1).await;
    let reason = dead[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("forbidden"),
        "reason carries the server's message: {reason}"
    );
    assert_eq!(env.emulator.mapping_posts(), 1, "a 403 is not retried");
}

#[tokio::test]
async fn an_unmapped_repository_is_ignored_and_counted() {
    let env = Env::start(EnvOptions::default()).await;
    env.layout
        .add_image("v1", "amd64", "linux", None, &[b"deep"]);
    skopeo_copy(
        &env.layout,
        "v1",
        &env.registry,
        "a/b/c:v1",
        Format::Oci,
        false,
    );
    skopeo_copy(
        &env.layout,
        "v1",
        &env.registry,
        "team/after:v1",
        Format::Oci,
        false,
    );
    env.wait_events("team", "after", "v1", 1).await;
    env.wait_metric("imagestream_ingest_ignored_jobs_total{reason=\"unmapped_repository\"} 1")
        .await;
    let touched: Vec<_> = env
        .emulator
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/namespaces/a/"))
        .collect();
    assert!(
        touched.is_empty(),
        "nothing was sent to the cluster for a/b/c: {touched:?}"
    );
    let _ = &env.dir;
}
