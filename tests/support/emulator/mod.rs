//! A cluster emulator for the integration tests: a plain-HTTP server on 127.0.0.1 that answers the
//! `image.openshift.io/v1` calls the daemon makes the way openshift-apiserver does on the wire —
//! bearer-token authentication, RBAC-style 403s, `Status` bodies, admission's namespace 404, the
//! ImageStreamMapping create pipeline (validation 422s, stream 404, image creation with server-side
//! metadata, the tag-event merge rules, `?dryRun=All` ignored), plus fault injection and a request log.
//!
//! It must stay independent of the crate under test (no `imagestream_ingest` types: everything is
//! `serde_json::Value`) so that it cannot share a bug with the daemon, and it must follow upstream
//! even where that is inconvenient (see `routes.rs` for the order of checks). It never reads
//! /work/shared or anything outside what the test gives it.
//!
//! Deviations a test should know about: only the resources the daemon touches are served
//! (images, imagestreams get/list/create, imagestreammappings create); updates, deletes, watches and
//! protobuf are not emulated.

// Included by several test binaries, each of which uses a different part of it.
#![allow(dead_code)]

mod create;
mod decode;
mod image;
mod reference;
mod routes;
mod status;
mod stream;
mod validate;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::watch;

/// The internal registry hostname a default cluster reports (`status.dockerImageRepository`).
pub const INTERNAL_REGISTRY: &str = "image-registry.openshift-image-registry.svc:5000";
/// The user a request without credentials is treated as (anonymous auth is on, as in OpenShift).
pub const ANONYMOUS: &str = "system:anonymous";

/// One RBAC rule of a token's user. `namespace: None` is a cluster-wide binding (all namespaces
/// and cluster-scoped resources); `"*"` as resource or verb matches everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub namespace: Option<String>,
    pub resource: String,
    pub verb: String,
}

impl Grant {
    /// A RoleBinding-style grant in one namespace.
    pub fn namespaced(namespace: &str, resource: &str, verb: &str) -> Grant {
        Grant {
            namespace: Some(namespace.to_string()),
            resource: resource.to_string(),
            verb: verb.to_string(),
        }
    }

    /// A ClusterRoleBinding-style grant.
    pub fn cluster(resource: &str, verb: &str) -> Grant {
        Grant {
            namespace: None,
            resource: resource.to_string(),
            verb: verb.to_string(),
        }
    }
}

/// What an injected fault does to a matching request.
#[derive(Debug, Clone)]
pub enum FaultAction {
    /// Answer with this HTTP status (a `Status` body) and, if given, `Retry-After: <secs>`.
    Status(u16, Option<u32>),
    /// Wait this long, then handle the request normally.
    Delay(Duration),
    /// Close the connection without writing any response.
    Drop,
}

/// A fault for requests whose path contains `path_contains` (and whose method is `method`, if set).
#[derive(Debug, Clone)]
pub struct Fault {
    pub path_contains: String,
    pub method: Option<String>,
    pub action: FaultAction,
    /// How many requests it applies to; 0 = every request until `clear_faults`.
    pub times: usize,
}

/// One request as the emulator saw it. `status` is 0 when the connection was dropped.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
    pub body: Value,
    /// When the request was answered (or dropped).
    pub at: std::time::Instant,
}

struct Token {
    user: String,
    grants: Vec<Grant>,
}

/// Everything the server knows; one lock, held only for synchronous work.
struct State {
    namespaces: BTreeSet<String>,
    streams: BTreeMap<(String, String), Value>,
    images: BTreeMap<String, Value>,
    tokens: HashMap<String, Token>,
    faults: Vec<(Fault, usize)>,
    requests: Vec<Recorded>,
    allowed_registries: Option<Vec<String>>,
    internal_registry: Option<String>,
    resource_version: u64,
}

impl State {
    fn new() -> State {
        State {
            namespaces: BTreeSet::new(),
            streams: BTreeMap::new(),
            images: BTreeMap::new(),
            tokens: HashMap::new(),
            faults: Vec::new(),
            requests: Vec::new(),
            allowed_registries: None,
            internal_registry: Some(INTERNAL_REGISTRY.to_string()),
            resource_version: 1000,
        }
    }

    /// The next etcd-style resourceVersion (one counter for every write, like a real cluster).
    fn next_rv(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    /// uid, resourceVersion and creationTimestamp of a newly stored object.
    fn system_fields(&mut self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("uid".into(), Value::from(uuid::Uuid::new_v4().to_string()));
        m.insert("resourceVersion".into(), Value::from(self.next_rv()));
        m.insert("creationTimestamp".into(), Value::from(image::now()));
        m
    }
}

type Shared = Arc<Mutex<State>>;

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A test that panicked while holding the lock must not hide the state from the next assertion.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running emulator. Dropping it stops the server (connections are closed).
pub struct Emulator {
    url: String,
    shared: Shared,
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emulator").field("url", &self.url).finish()
    }
}

/// The error that makes hyper close a connection without answering (a `Drop` fault).
#[derive(Debug)]
struct DropConnection;

impl fmt::Display for DropConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}

impl std::error::Error for DropConnection {}

async fn serve_one(
    shared: Shared,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, DropConnection> {
    let (parts, body) = req.into_parts();
    // A client that hangs up mid-body is treated like an empty body; the answer goes nowhere anyway.
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let request = routes::Request {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        authorization: parts
            .headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body,
    };
    let Some(reply) = routes::handle(&shared, &request).await else {
        return Err(DropConnection);
    };
    let mut builder = Response::builder()
        .status(reply.code)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header("Cache-Control", "no-cache, private");
    for (name, value) in &reply.headers {
        builder = builder.header(*name, value.as_str());
    }
    let bytes = serde_json::to_vec(&reply.body).unwrap_or_default();
    builder
        .body(Full::new(Bytes::from(bytes)))
        .map_err(|_| DropConnection)
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    shared: Shared,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| serve_one(shared.clone(), req));
            // Errors here are dropped connections (by the client, or by a Drop fault): nothing to report.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Start an emulator on a free loopback port. It runs on its own thread and runtime, so a test that
/// blocks its own runtime (e.g. waiting on a child process) does not stall the cluster side.
pub async fn start() -> Emulator {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind emulator");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}", listener.local_addr().expect("local addr"));
    let shared: Shared = Arc::new(Mutex::new(State::new()));
    let (shutdown, rx) = watch::channel(false);
    let server_state = shared.clone();
    let thread = std::thread::Builder::new()
        .name("cluster-emulator".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("emulator runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                accept_loop(listener, server_state, rx).await;
            });
            // Dropping the runtime here cancels every connection task, closing their sockets.
        })
        .expect("spawn emulator thread");
    Emulator {
        url,
        shared,
        shutdown,
        thread: Some(thread),
    }
}

impl Emulator {
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Stop the server and wait until its thread (and every open connection) is gone.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    /// Register a bearer token for `user` with exactly these grants (replaces an earlier one).
    pub fn add_token(&self, token: &str, user: &str, grants: &[Grant]) {
        let entry = Token {
            user: user.to_string(),
            grants: grants.to_vec(),
        };
        lock(&self.shared).tokens.insert(token.to_string(), entry);
    }

    /// A token for `system:admin` with every verb on every resource, cluster-wide.
    pub fn add_admin_token(&self, token: &str) {
        self.add_token(token, "system:admin", &[Grant::cluster("*", "*")]);
    }

    pub fn add_namespace(&self, ns: &str) {
        lock(&self.shared).namespaces.insert(ns.to_string());
    }

    /// Create an empty ImageStream as `oc create imagestream` would (the namespace is created too).
    pub fn add_stream(&self, ns: &str, name: &str) {
        self.put_stream(ns, serde_json::json!({"metadata": {"name": name}}));
    }

    /// Store an ImageStream (v1 JSON: name in `metadata.name`, optional `spec`) as a create would
    /// prepare it; the namespace is created too. Replaces an existing stream of that name.
    pub fn put_stream(&self, ns: &str, object: Value) {
        let mut st = lock(&self.shared);
        st.namespaces.insert(ns.to_string());
        let name = validate::s(object.get("metadata").unwrap_or(&Value::Null), "name").to_string();
        let system = st.system_fields();
        let internal = st.internal_registry.clone();
        let stored = stream::prepare_new(&object, ns, &name, internal.as_deref(), &system);
        st.streams.insert((ns.to_string(), name), stored);
    }

    /// Bump `metadata.generation` of a stream, as a spec update by a user would (no status change).
    pub fn bump_generation(&self, ns: &str, name: &str) {
        let mut st = lock(&self.shared);
        let rv = st.next_rv();
        if let Some(stream) = st.streams.get_mut(&(ns.to_string(), name.to_string())) {
            let generation = stream["metadata"]["generation"].as_i64().unwrap_or(0);
            stream["metadata"]["generation"] = Value::from(generation + 1);
            stream["metadata"]["resourceVersion"] = Value::from(rv);
        }
    }

    /// The stored ImageStream, as a GET would return it.
    pub fn stream(&self, ns: &str, name: &str) -> Option<Value> {
        lock(&self.shared)
            .streams
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// `status.tags[tag].items` of a stream, newest first (empty when the stream or tag is absent).
    pub fn tag_events(&self, ns: &str, stream_name: &str, tag: &str) -> Vec<Value> {
        self.stream(ns, stream_name)
            .map(|s| stream::events(&s, tag))
            .unwrap_or_default()
    }

    /// The stored Image, as a GET would return it.
    pub fn image(&self, name: &str) -> Option<Value> {
        lock(&self.shared).images.get(name).cloned()
    }

    pub fn image_count(&self) -> usize {
        lock(&self.shared).images.len()
    }

    /// Turn on the `allowedRegistriesForImport` whitelist (`host[:port]` globs; the internal registry
    /// is always allowed). Without it every registry is allowed.
    pub fn set_allowed_registries(&self, registries: Vec<String>) {
        lock(&self.shared).allowed_registries = Some(registries);
    }

    /// The internal registry hostname, or `None` for a cluster without one (then an empty
    /// `dockerImageReference` is not defaulted and streams get no `status.dockerImageRepository`).
    pub fn set_internal_registry(&self, host: Option<&str>) {
        lock(&self.shared).internal_registry = host.map(str::to_string);
    }

    pub fn inject(&self, fault: Fault) {
        lock(&self.shared).faults.push((fault, 0));
    }

    pub fn clear_faults(&self) {
        lock(&self.shared).faults.clear();
    }

    /// Every request so far, in arrival order of their answers.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared).requests.clone()
    }

    /// How many POSTs reached `…/imagestreammappings`, whatever they were answered.
    pub fn mapping_posts(&self) -> usize {
        let st = lock(&self.shared);
        st.requests
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/imagestreammappings"))
            .count()
    }

    /// Write `<dir>/kubeconfig` pointing at this emulator with `token`, and return its path.
    pub fn write_kubeconfig(&self, dir: &Path, token: &str) -> PathBuf {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: {url}\n\
             users:\n- name: emulator-user\n  user:\n    token: {token}\n\
             contexts:\n- name: emulator\n  context:\n    cluster: emulator\n    user: emulator-user\n    namespace: default\n\
             current-context: emulator\npreferences: {{}}\n",
            url = self.url,
        );
        let path = dir.join("kubeconfig");
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // Not joined here: Drop may run inside an async test, which must not block.
        let _ = self.shutdown.send(true);
    }
}
