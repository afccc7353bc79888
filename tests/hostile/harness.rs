//! What the hostile-input tests share: a daemon on the directory sink whose registry is a closed port (so an
//! accepted job stays queued and can be counted), a full environment (real registry + cluster emulator), a raw
//! HTTP/1.1 client for requests reqwest refuses to send, and readers for /metrics, the log and the process.
//!
//! It must not read anything outside the repository and the tests' own temporary directories.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::daemon::{Daemon, NOTIFY_TOKEN, free_port};
use crate::support::emulator::{self, Emulator, Grant};
use crate::support::images::OciLayout;
use crate::support::registry::{Registry, RegistryAuth, RegistryOptions};
use tempfile::TempDir;

pub const V1: &str = "application/vnd.docker.distribution.events.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DIGEST: &str = "sha256:4afff550708506c5b8b7384ad10d401a02b29ed587cb2730cb02753095b5178d";
pub const CLUSTER_TOKEN: &str = "cluster-token-hostile-7b3e";
pub const WAIT: Duration = Duration::from_secs(30);

/// A push event as distribution 2.8 writes it (fields from its documented envelope).
pub fn push(id: &str, repo: &str, tag: &str) -> Value {
    json!({"id": id, "timestamp": "2026-01-01T00:00:00Z", "action": "push",
           "target": {"mediaType": DOCKER_MANIFEST, "size": 1, "length": 1,
                      "digest": DIGEST, "repository": repo, "tag": tag,
                      "url": format!("http://127.0.0.1:5000/v2/{repo}/manifests/{DIGEST}")},
           "request": {"id": "r", "addr": "10.0.0.1", "host": "127.0.0.1:5000", "method": "PUT",
                       "useragent": "skopeo"},
           "actor": {}, "source": {"addr": "registry:5000", "instanceID": "i"}})
}

pub fn envelope(events: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "events": events })).expect("json")
}

/// A daemon on the directory sink; its registry is a closed port, so accepted jobs stay pending.
pub async fn start_receiver(dir: &TempDir, max_body: u64) -> Daemon {
    let config = format!(
        "listen: 127.0.0.1:{{{{PORT}}}}\nadminListen: 127.0.0.1:{{{{ADMIN_PORT}}}}\nstateDir: state\nmaxBodyBytes: {max_body}\n\
         registries:\n  - name: reg\n    url: http://127.0.0.1:{registry_port}\n\
         sources:\n  - name: reg\n    type: distribution\n    path: /notify/reg\n    registry: reg\n    auth:\n      bearerTokenFile: notify-token\n\
         cluster:\n  sink: directory\n  directory: mappings\n\
         worker:\n  maxAttempts: 1000\n",
        registry_port = free_port(),
    );
    Daemon::start(&dir.path().join("d"), free_port(), &config).await
}

/// POST a body to `/notify/reg` with the right token.
pub async fn post(d: &Daemon, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/notify/reg", d.url()))
        .bearer_auth(NOTIFY_TOKEN)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("post")
}

pub async fn metrics_text(d: &Daemon) -> String {
    reqwest::get(format!("{}/metrics", d.url()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The value of the sample `series` (name with labels, exactly as exposed); 0 when absent.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

pub fn notifications(text: &str, outcome: &str) -> f64 {
    sample(
        text,
        &format!("imagestream_ingest_notifications_total{{source=\"reg\",outcome=\"{outcome}\"}}"),
    )
}

/// Nothing was queued, the daemon still answers /healthz and its log holds no panic.
pub async fn assert_nothing_queued_and_healthy(d: &Daemon) {
    let text = metrics_text(d).await;
    assert_eq!(
        sample(&text, "imagestream_ingest_queue_depth"),
        0.0,
        "queue depth:\n{text}"
    );
    assert_eq!(notifications(&text, "queued"), 0.0, "queued:\n{text}");
    assert_healthy(d).await;
}

pub async fn assert_healthy(d: &Daemon) {
    let r = reqwest::get(format!("{}/healthz", d.url()))
        .await
        .expect("the daemon still answers");
    assert_eq!(r.status(), 200);
    let log = d.log();
    assert!(!log.contains("panicked"), "the daemon panicked:\n{log}");
}

/// Peak resident set size of a process in KiB (`VmHWM` of /proc/<pid>/status).
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// What a raw exchange produced.
pub struct RawReply {
    pub status: u16,
    /// The response head (status line and headers), lower-cased.
    pub head: String,
    /// Body bytes the client had written when the response head arrived.
    pub sent_before_reply: u64,
}

/// Send `head` (request line + headers, without the blank line), then `chunks` chunk-encoded if `chunked`,
/// else raw; read the response head concurrently (the daemon may answer before the body is sent).
pub async fn raw_exchange(
    port: u16,
    head: &str,
    chunked: bool,
    chunks: usize,
    chunk_size: usize,
) -> RawReply {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer_sent = sent.clone();
    let head = format!("{head}\r\n\r\n");
    let writer = tokio::spawn(async move {
        if wr.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b' '; chunk_size];
        for _ in 0..chunks {
            let ok = if chunked {
                let mut frame = format!("{chunk_size:x}\r\n").into_bytes();
                frame.extend_from_slice(&chunk);
                frame.extend_from_slice(b"\r\n");
                wr.write_all(&frame).await.is_ok()
            } else {
                wr.write_all(&chunk).await.is_ok()
            };
            if !ok {
                return;
            }
            writer_sent.fetch_add(chunk_size as u64, std::sync::atomic::Ordering::SeqCst);
        }
        if chunked {
            let _ = wr.write_all(b"0\r\n\r\n").await;
        }
        // Keep the write half open until the reader is done.
        tokio::time::sleep(WAIT).await;
    });
    let mut buf = Vec::new();
    let deadline = Instant::now() + WAIT;
    let mut tmp = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        assert!(Instant::now() < deadline, "no response head");
        match tokio::time::timeout(WAIT, rd.read(&mut tmp)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&tmp[..n]),
            Ok(Err(e)) => panic!("reading the response: {e}"),
        }
    }
    let sent_before_reply = sent.load(std::sync::atomic::Ordering::SeqCst);
    writer.abort();
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    RawReply {
        status,
        head,
        sent_before_reply,
    }
}

/// Request head for `POST /notify/reg` with the given extra header lines.
pub fn notify_head(port: u16, headers: &[&str]) -> String {
    let mut h = format!("POST /notify/reg HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close");
    for line in headers {
        h.push_str("\r\n");
        h.push_str(line);
    }
    h
}

/// A real registry (optionally sending notifications to the daemon), the cluster emulator and the daemon on
/// the kube sink, each on its own ports and directories (the pattern of tests/e2e.rs).
pub struct Env {
    /// Owns every directory of the scenario (removed on drop).
    _dir: TempDir,
    pub emulator: Emulator,
    pub registry: Registry,
    pub daemon: Daemon,
    pub layout: OciLayout,
}

pub struct EnvOptions {
    /// Point the registry's notifications at the daemon.
    pub notify: bool,
    pub auth: RegistryAuth,
    /// Extra YAML appended to the daemon config (e.g. `mappings:`).
    pub extra: String,
    /// Namespaces that exist; the daemon's token gets every grant it needs in each.
    pub namespaces: Vec<&'static str>,
    /// Extra environment of the daemon process.
    pub daemon_env: Vec<(&'static str, &'static str)>,
}

impl Default for EnvOptions {
    fn default() -> Self {
        Self {
            notify: true,
            auth: RegistryAuth::None,
            extra: String::new(),
            namespaces: vec!["team"],
            daemon_env: Vec::new(),
        }
    }
}

impl Env {
    pub async fn start(opts: EnvOptions) -> Env {
        let dir = TempDir::new().expect("tempdir");
        let emulator = emulator::start().await;
        let mut grants = vec![
            Grant::cluster("images", "get"),
            Grant::cluster("images", "create"),
        ];
        for ns in &opts.namespaces {
            emulator.add_namespace(ns);
            for (resource, verb) in [
                ("imagestreammappings", "create"),
                ("imagestreams", "get"),
                ("imagestreams", "create"),
            ] {
                grants.push(Grant::namespaced(ns, resource, verb));
            }
        }
        emulator.add_token(
            CLUSTER_TOKEN,
            "system:serviceaccount:ingest:imagestream-ingest",
            &grants,
        );
        let kubeconfig = emulator.write_kubeconfig(dir.path(), CLUSTER_TOKEN);
        let port = free_port();
        let registry = Registry::start(RegistryOptions {
            notify_url: opts
                .notify
                .then(|| format!("http://127.0.0.1:{port}/notify/reg")),
            notify_token: Some(NOTIFY_TOKEN.to_string()),
            auth: opts.auth,
            tls: false,
        })
        .await;
        let daemon_dir = dir.path().join("daemon");
        let mut registry_auth = String::new();
        if let Some((user, pass)) = registry.credentials() {
            std::fs::create_dir_all(&daemon_dir).expect("dir");
            std::fs::write(daemon_dir.join("registry-password"), format!("{pass}\n")).expect("pw");
            registry_auth = format!(
                "    auth:\n      username: {user}\n      passwordFile: registry-password\n"
            );
        }
        let config = format!(
            "listen: 127.0.0.1:{{{{PORT}}}}\nadminListen: 127.0.0.1:{{{{ADMIN_PORT}}}}\nstateDir: state\n\
             registries:\n  - name: reg\n    url: {url}\n{registry_auth}\
             sources:\n  - name: reg\n    type: distribution\n    path: /notify/reg\n    registry: reg\n    auth:\n      bearerTokenFile: notify-token\n\
             cluster:\n  sink: kube\n  kubeconfig: {kubeconfig}\n\
             worker:\n  concurrency: 4\n  maxAttempts: 3\n{extra}",
            url = registry.url,
            kubeconfig = kubeconfig.display(),
            extra = opts.extra,
        );
        let daemon = Daemon::start_with_env(&daemon_dir, port, &config, &opts.daemon_env).await;
        let layout = OciLayout::new(&dir.path().join("layout"));
        Env {
            _dir: dir,
            emulator,
            registry,
            daemon,
            layout,
        }
    }

    pub async fn wait_events(&self, ns: &str, stream: &str, tag: &str) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let events = self.emulator.tag_events(ns, stream, tag);
            if !events.is_empty() {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "no tag event on {ns}/{stream}:{tag}\ndaemon log:\n{}",
                self.daemon.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn dead_letters(&self) -> Vec<Value> {
        let url = format!(
            "http://127.0.0.1:{}/admin/dead-letters",
            self.daemon.admin_port
        );
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(r) = reqwest::get(&url).await {
                if let Ok(list) = r.json::<Vec<Value>>().await {
                    if !list.is_empty() {
                        return list;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no dead letter\ndaemon log:\n{}",
                self.daemon.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait until /metrics has `series` at `value` or more.
    pub async fn wait_sample(&self, series: &str, value: f64) {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = metrics_text(&self.daemon).await;
            if sample(&text, series) >= value {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {series} >= {value}\nmetrics:\n{text}\ndaemon log:\n{}",
                self.daemon.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
