//! Network stand-ins the resilience scenarios put around the real processes:
//! - [`Recorder`]: a notification endpoint for the registry that keeps every body byte for byte (so a
//!   test can deliver the registry's own notifications later, or replay them) and can tee them on to
//!   the daemon, relaying the daemon's answer to the registry;
//! - [`Forwarder`]: a TCP forwarder between the daemon and the registry that can go down (every
//!   connection closed at once, new ones closed on accept) to simulate a registry outage;
//! - [`TwoEndpointRegistry`]: a `docker-registry` whose config has two notification endpoints (the
//!   shared harness writes exactly one).
//!
//! None of these interpret what passes through beyond what their doc says; they must not hide a failure
//! of the daemon (a forwarded request that fails is answered 502, never 2xx).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tempfile::TempDir;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::env::EVENTS_MEDIA_TYPE;
use crate::support::daemon::{NOTIFY_TOKEN, free_port};

/// Notification bodies as received, and where to forward them.
#[derive(Default)]
struct RecorderState {
    bodies: Vec<Bytes>,
    forward_to: Option<String>,
}

pub struct Recorder {
    addr: SocketAddr,
    state: Arc<Mutex<RecorderState>>,
    task: JoinHandle<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Recorder {
    pub async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state: Arc<Mutex<RecorderState>> = Arc::default();
        let shared = state.clone();
        let client = reqwest::Client::new();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                let client = client.clone();
                tokio::spawn(async move {
                    let service =
                        service_fn(move |req| record(shared.clone(), client.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Recorder { addr, state, task }
    }

    /// The URL to configure as the registry's notification endpoint.
    pub fn url(&self) -> String {
        format!("http://{}/notify/reg", self.addr)
    }

    /// From now on, relay every notification to `daemon_url` and answer with the daemon's status.
    pub fn forward_to(&self, daemon_url: &str) {
        lock(&self.state).forward_to = Some(format!("{daemon_url}/notify/reg"));
    }

    /// Every notification body with a tagged manifest push, as received, in arrival order.
    pub fn manifest_pushes(&self) -> Vec<Bytes> {
        lock(&self.state)
            .bodies
            .iter()
            .filter(|b| is_tagged_manifest_push(b))
            .cloned()
            .collect()
    }

    /// The recorded tagged manifest push for `repo:tag` naming `digest`.
    pub fn push_of(&self, repo: &str, tag: &str, digest: &str) -> Option<Bytes> {
        self.manifest_pushes().into_iter().find(|b| {
            let v: Value = serde_json::from_slice(b).unwrap_or(Value::Null);
            let t = &v["events"][0]["target"];
            t["repository"] == repo && t["tag"] == tag && t["digest"] == digest
        })
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A single-event envelope holding a `push` of a manifest (not a blob) with a tag.
pub fn is_tagged_manifest_push(body: &[u8]) -> bool {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let events = v["events"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    events.len() == 1
        && events[0]["action"] == "push"
        && events[0]["target"]["tag"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
        && events[0]["target"]["mediaType"]
            .as_str()
            .is_some_and(|m| m.contains("manifest") || m.contains("index"))
}

async fn record(
    state: Arc<Mutex<RecorderState>>,
    client: reqwest::Client,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let body = req.into_body().collect().await?.to_bytes();
    let forward = {
        let mut st = lock(&state);
        st.bodies.push(body.clone());
        st.forward_to.clone()
    };
    let status = match forward {
        None => 200,
        Some(url) => match client
            .post(url)
            .bearer_auth(NOTIFY_TOKEN)
            .header("content-type", EVENTS_MEDIA_TYPE)
            .body(body)
            .send()
            .await
        {
            Ok(r) => r.status().as_u16(),
            Err(_) => 502,
        },
    };
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    Ok(resp)
}

/// A TCP forwarder that can be taken down and brought back on the same address.
pub struct Forwarder {
    addr: SocketAddr,
    down: watch::Sender<bool>,
    refused: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Forwarder {
    /// Listen on a free loopback port and forward every connection to `target` (`host:port`).
    pub async fn start(target: String) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (down, _) = watch::channel(false);
        let refused = Arc::new(AtomicUsize::new(0));
        let (tx, counter) = (down.clone(), refused.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let mut rx = tx.subscribe();
                if *rx.borrow_and_update() {
                    counter.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut upstream) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                        _ = rx.wait_for(|down| *down) => {}
                    }
                });
            }
        });
        Forwarder {
            addr,
            down,
            refused,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Down: close every open connection and every new one at accept. Up: forward again.
    pub fn set_down(&self, down: bool) {
        self.down.send_replace(down);
    }

    /// Connections closed at accept because the forwarder was down.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A plain-HTTP, anonymous `docker-registry` notifying two endpoints (bearer [`NOTIFY_TOKEN`]).
pub struct TwoEndpointRegistry {
    /// `127.0.0.1:PORT`
    pub host: String,
    child: Child,
    log_path: PathBuf,
    _dir: TempDir,
}

impl TwoEndpointRegistry {
    pub async fn start(endpoints: [&str; 2]) -> TwoEndpointRegistry {
        let dir = TempDir::new().expect("tempdir");
        let log_path = dir.path().join("registry.log");
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: resilience-test-secret\n\
             notifications:\n  events:\n    includereferences: true\n  endpoints:\n",
            data = dir.path().join("data").display(),
        );
        for (i, url) in endpoints.iter().enumerate() {
            config.push_str(&format!(
                "    - name: ingest-{i}\n      url: {url}\n      headers:\n        Authorization: [\"Bearer {NOTIFY_TOKEN}\"]\n      timeout: 2s\n      threshold: 3\n      backoff: 1s\n"
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("config");
        let log = std::fs::File::create(&log_path).expect("log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("run docker-registry");
        let mut reg = TwoEndpointRegistry {
            host: format!("127.0.0.1:{port}"),
            child,
            log_path,
            _dir: dir,
        };
        assert!(
            reg.wait_ready().await,
            "registry did not start:\n{}",
            reg.log()
        );
        reg
    }

    async fn wait_ready(&mut self) -> bool {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(r) = client.get(format!("http://{}/v2/", self.host)).send().await {
                if r.status().is_success() {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for TwoEndpointRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
