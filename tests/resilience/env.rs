//! One resilience scenario's world: a cluster emulator, a real registry (notifying the daemon, a recorder,
//! or nobody), optionally a pausable forwarder between the daemon and the registry, and the real daemon
//! binary. Also the client side of the daemon's HTTP interface (notifications as the registry sends them,
//! /readyz, /metrics, dead letters) and small measuring helpers.
//!
//! It must not change what the daemon is configured with beyond what a scenario asks for, and it never
//! reads anything outside the test's temporary directories.

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

use super::net::{Forwarder, Recorder};
use crate::support::daemon::{Daemon, NOTIFY_TOKEN, free_port};
use crate::support::emulator::{self, Emulator, Grant};
use crate::support::images::{Format, OciLayout, registry_manifest, skopeo_copy};
use crate::support::registry::{Registry, RegistryAuth, RegistryOptions};

pub const CLUSTER_TOKEN: &str = "cluster-token-resilience";
/// The media type distribution 2.x sends notifications with.
pub const EVENTS_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";
pub const NAMESPACE: &str = "team";

/// Where the registry sends its notifications.
pub enum NotifyTo {
    /// Straight to the daemon, as in production.
    Daemon,
    /// To a [`Recorder`] (which may later forward to the daemon).
    Recorder,
    /// Nowhere: the test sends every notification by hand.
    Nobody,
}

pub struct EnvOptions {
    pub notify: NotifyTo,
    /// Lines under `worker:` (two-space indented).
    pub worker: &'static str,
    /// Extra lines under `cluster:` (two-space indented).
    pub cluster: &'static str,
    /// Put a pausable TCP forwarder between the daemon and the registry.
    pub forwarder: bool,
}

impl Default for EnvOptions {
    fn default() -> Self {
        Self {
            notify: NotifyTo::Daemon,
            worker: "  concurrency: 4\n  maxAttempts: 20\n",
            cluster: "",
            forwarder: false,
        }
    }
}

pub struct Env {
    pub emulator: Emulator,
    pub registry: Registry,
    pub daemon: Daemon,
    pub layout: OciLayout,
    pub recorder: Option<Recorder>,
    pub forwarder: Option<Forwarder>,
    pub http: reqwest::Client,
    _dir: TempDir,
}

/// The grants the daemon needs in `namespace` (and cluster-wide for images).
pub fn daemon_grants(namespace: &str) -> Vec<Grant> {
    vec![
        Grant::namespaced(namespace, "imagestreammappings", "create"),
        Grant::namespaced(namespace, "imagestreams", "get"),
        Grant::namespaced(namespace, "imagestreams", "create"),
        Grant::cluster("images", "get"),
        Grant::cluster("images", "create"),
    ]
}

/// A daemon config for `registry_url`, with the default mapping rule and `cluster.kubeconfig`.
pub fn daemon_config(
    registry_url: &str,
    pull_host: &str,
    kubeconfig: &std::path::Path,
    worker: &str,
    cluster: &str,
) -> String {
    format!(
        "listen: 127.0.0.1:{{{{PORT}}}}\nadminListen: 127.0.0.1:{{{{ADMIN_PORT}}}}\nstateDir: state\n\
         registries:\n  - name: reg\n    url: {registry_url}\n    pullHost: '{pull_host}'\n\
         sources:\n  - name: reg\n    type: distribution\n    path: /notify/reg\n    registry: reg\n    auth:\n      bearerTokenFile: notify-token\n\
         cluster:\n  sink: kube\n  kubeconfig: {kubeconfig}\n{cluster}\
         worker:\n{worker}",
        kubeconfig = kubeconfig.display(),
    )
}

impl Env {
    pub async fn start(opts: EnvOptions) -> Env {
        let dir = TempDir::new().expect("tempdir");
        let emulator = emulator::start().await;
        emulator.add_namespace(NAMESPACE);
        emulator.add_token(
            CLUSTER_TOKEN,
            "system:serviceaccount:ingest:imagestream-ingest",
            &daemon_grants(NAMESPACE),
        );
        let kubeconfig = emulator.write_kubeconfig(dir.path(), CLUSTER_TOKEN);
        let port = free_port();
        let recorder = match opts.notify {
            NotifyTo::Recorder => Some(Recorder::start().await),
            _ => None,
        };
        let notify_url = match (&opts.notify, &recorder) {
            (NotifyTo::Daemon, _) => Some(format!("http://127.0.0.1:{port}/notify/reg")),
            (NotifyTo::Recorder, Some(r)) => Some(r.url()),
            _ => None,
        };
        let registry = Registry::start(RegistryOptions {
            notify_url,
            notify_token: Some(NOTIFY_TOKEN.to_string()),
            auth: RegistryAuth::None,
            tls: false,
        })
        .await;
        let forwarder = if opts.forwarder {
            Some(Forwarder::start(registry.host.clone()).await)
        } else {
            None
        };
        let daemon_registry_url = match &forwarder {
            Some(f) => f.url(),
            None => registry.url.clone(),
        };
        let config = daemon_config(
            &daemon_registry_url,
            &registry.host,
            &kubeconfig,
            opts.worker,
            opts.cluster,
        );
        let daemon = Daemon::start(&dir.path().join("daemon"), port, &config).await;
        let layout = OciLayout::new(&dir.path().join("layout"));
        Env {
            emulator,
            registry,
            daemon,
            layout,
            recorder,
            forwarder,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
            _dir: dir,
        }
    }

    /// Build a one-layer image from `content` and push it to `dest` (`repo:tag`); returns the digest the
    /// registry now serves for that tag (read back from the registry, not from the layout).
    pub fn push(&self, content: &str, dest: &str) -> String {
        let (repo, tag) = dest.rsplit_once(':').expect("repo:tag");
        let layout_tag = format!(
            "l{}",
            &hex::encode(Sha256::digest(content.as_bytes()))[..16]
        );
        tokio::task::block_in_place(|| {
            self.layout
                .add_image(&layout_tag, "amd64", "linux", None, &[content.as_bytes()]);
            skopeo_copy(
                &self.layout,
                &layout_tag,
                &self.registry,
                dest,
                Format::Oci,
                false,
            );
            registry_manifest(&self.registry, repo, tag).2
        })
    }

    /// Tag events of `team/<stream>:<tag>`, newest first.
    pub fn events(&self, stream: &str, tag: &str) -> Vec<Value> {
        self.emulator.tag_events(NAMESPACE, stream, tag)
    }

    /// The `image` of every tag event of `team/<stream>:<tag>`, newest first.
    pub fn event_images(&self, stream: &str, tag: &str) -> Vec<String> {
        images_of(&self.events(stream, tag))
    }

    /// POST a notification body (raw bytes, as the registry sends them) to the daemon.
    pub async fn notify(&self, body: &[u8]) -> Result<Answer, reqwest::Error> {
        notify(&self.http, &self.daemon.url(), body).await
    }

    pub async fn metrics(&self) -> String {
        metrics_of(&self.http, &self.daemon.url()).await
    }

    /// Dead letters as the admin endpoint lists them.
    pub async fn dead_letters(&self) -> Vec<Value> {
        let url = format!(
            "http://127.0.0.1:{}/admin/dead-letters",
            self.daemon.admin_port
        );
        let r = self.http.get(url).send().await.expect("dead letters");
        r.json().await.expect("dead letters json")
    }

    /// Wait (up to `timeout`) for `check`; panic with `what` and the daemon log otherwise.
    pub async fn wait<F, Fut>(&self, what: &str, timeout: Duration, check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        if !eventually(timeout, check).await {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n--- daemon log tail ---\n{}",
                tail(&self.daemon.log(), 60)
            );
        }
    }

    /// Wait until the daemon has nothing pending (`imagestream_ingest_queue_depth 0`).
    pub async fn wait_idle(&self, timeout: Duration) {
        let url = self.daemon.url();
        self.wait("an empty queue", timeout, || async {
            metric(
                &metrics_of(&self.http, &url).await,
                "imagestream_ingest_queue_depth",
            ) == Some(0.0)
        })
        .await;
    }

    /// A distribution 2.8 push notification for what the registry serves at `repo:tag` now.
    pub fn push_notification(&self, repo: &str, tag: &str) -> Vec<u8> {
        let (bytes, media_type, _) =
            tokio::task::block_in_place(|| registry_manifest(&self.registry, repo, tag));
        let body = json!({ "events": [distribution_push_event(&self.registry.host, repo, tag, &bytes, &media_type)] });
        serde_json::to_vec(&body).expect("json")
    }
}

/// What the daemon answered to a notification.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// POST `body` to `<daemon_url>/notify/reg` with the headers distribution 2.8 sends.
pub async fn notify(
    http: &reqwest::Client,
    daemon_url: &str,
    body: &[u8],
) -> Result<Answer, reqwest::Error> {
    let r = http
        .post(format!("{daemon_url}/notify/reg"))
        .bearer_auth(NOTIFY_TOKEN)
        .header("content-type", EVENTS_MEDIA_TYPE)
        .header("user-agent", "Go-http-client/1.1")
        .body(body.to_vec())
        .send()
        .await?;
    let retry_after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok(Answer {
        status: r.status().as_u16(),
        retry_after,
    })
}

/// `/metrics` text of the daemon at `daemon_url` (empty when it does not answer).
pub async fn metrics_of(http: &reqwest::Client, daemon_url: &str) -> String {
    match http.get(format!("{daemon_url}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The value of the sample named exactly `series` (name plus `{labels}` if any).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

/// `/readyz` status code (0 when the daemon does not answer).
pub async fn readyz(http: &reqwest::Client, daemon_url: &str) -> u16 {
    match http.get(format!("{daemon_url}/readyz")).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// Poll `check` every 100 ms until it is true (→ true) or `timeout` passes (→ false).
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn images_of(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["image"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// One manifest `push` event shaped like the ones distribution 2.8 sends: a UUID id, an RFC 3339
/// timestamp, a target with size/length, references and a by-digest url, request, an empty actor
/// (no auth) and source.
pub fn distribution_push_event(
    host: &str,
    repo: &str,
    tag: &str,
    manifest: &[u8],
    media_type: &str,
) -> Value {
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(manifest)));
    let parsed: Value = serde_json::from_slice(manifest).unwrap_or(Value::Null);
    let mut references = Vec::new();
    for d in std::iter::once(&parsed["config"])
        .chain(parsed["layers"].as_array().into_iter().flatten())
        .chain(parsed["manifests"].as_array().into_iter().flatten())
    {
        if d.is_object() {
            references.push(
                json!({"mediaType": d["mediaType"], "size": d["size"], "digest": d["digest"]}),
            );
        }
    }
    let timestamp = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("timestamp");
    json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "timestamp": timestamp,
        "action": "push",
        "target": {
            "mediaType": media_type,
            "size": manifest.len(),
            "digest": digest,
            "length": manifest.len(),
            "repository": repo,
            "url": format!("http://{host}/v2/{repo}/manifests/{digest}"),
            "tag": tag,
            "references": references,
        },
        "request": {"id": uuid::Uuid::new_v4().to_string(), "addr": "127.0.0.1:40022", "host": host,
                    "method": "PUT", "useragent": "containers/5.23.1 (github.com/containers/image)"},
        "actor": {},
        "source": {"addr": "vm:5000", "instanceID": uuid::Uuid::new_v4().to_string()},
    })
}

/// The same single-event envelope with a fresh event id (a new delivery of an old fact).
pub fn with_new_id(body: &[u8]) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(body).expect("notification json");
    v["events"][0]["id"] = Value::from(uuid::Uuid::new_v4().to_string());
    serde_json::to_vec(&v).expect("json")
}

/// The peak resident set of a process, from `/proc/<pid>/status` (`VmHWM`), in KiB.
pub fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

/// Send `signal` (e.g. "-KILL", "-TERM") to `pid`.
pub fn signal(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill {signal} {pid} failed");
}

/// Values of `key` in the daemon's JSON log lines whose message is `message`.
pub fn log_field(log: &str, message: &str, key: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == message || v["fields"]["message"] == message)
        .filter_map(|v| v.get(key).or_else(|| v["fields"].get(key)).cloned())
        .collect()
}

pub fn tail(text: &str, lines: usize) -> String {
    crate::support::registry::tail(text, lines)
}
