//! A fault-injecting HTTP/1.1 reverse proxy in front of the real registry (plain http), so tests can prove
//! how the daemon handles registry-side faults: error statuses with `Retry-After`, delays, connection
//! resets, corrupted bodies (digest mismatches), oversized chunked manifests, and a registry that is down.
//!
//! It runs on its own thread and tokio runtime (like the cluster emulator), so a test that blocks its own
//! runtime does not stall it. Only the daemon goes through it: skopeo pushes to the registry directly and the
//! registry notifies the daemon directly. It must not rewrite anything a rule does not ask for (headers,
//! including `Docker-Content-Digest`, are passed through), and it never follows redirects.

mod wire;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

use wire::{Body, Conn, error_response, error_response_with, full, oversize_response};

/// Headers that belong to one hop and are never copied across the proxy.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "proxy-connection",
];
/// How long `set_down` waits for the listener to close or reopen.
const STATE_CHANGE_DEADLINE: Duration = Duration::from_secs(10);

/// What a matching request gets.
#[derive(Debug, Clone)]
pub enum Action {
    /// Answer this status without forwarding, with a distribution-style `{"errors":[...]}` body and, if
    /// given, `Retry-After: <secs>`. A 401 carries a `Basic` challenge.
    Status(u16, Option<u32>),
    /// Wait this long, then forward.
    Delay(Duration),
    /// Read the request, then abort the TCP connection with a RST (`SO_LINGER` 0), answering nothing.
    Reset,
    /// Forward, then flip one byte in the middle of the response body; every header is kept as the
    /// registry sent it (`Content-Length`, `Docker-Content-Digest`, ...).
    CorruptBody,
    /// Answer 200 with an OCI manifest content type and a JSON-looking body of exactly this many bytes,
    /// streamed chunked (no `Content-Length`), without forwarding.
    OversizeBody(usize),
    /// Behave like a server process that went away: close the connection (FIN) without answering.
    Down,
}

/// A fault for requests whose path contains `path_contains` (and whose method is `method`, if set).
#[derive(Debug, Clone)]
pub struct Rule {
    pub path_contains: String,
    pub method: Option<String>,
    pub action: Action,
    /// How many matching requests it applies to; 0 = all of them until `clear_rules`.
    pub times: usize,
}

impl Rule {
    /// A rule for GETs whose path contains `path_contains`.
    pub fn get(path_contains: &str, action: Action, times: usize) -> Rule {
        Rule {
            path_contains: path_contains.to_string(),
            method: Some("GET".to_string()),
            action,
            times,
        }
    }
}

/// One request as the proxy saw it: `at` is when its head arrived, `status` is what the client got
/// (0: the connection was dropped or the answer is still pending).
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// The request carried an `Authorization` header (its value is not kept).
    pub authorized: bool,
    pub at: Instant,
}

struct State {
    rules: Vec<(Rule, usize)>,
    requests: Vec<Seen>,
}

type Shared = Arc<Mutex<State>>;

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running proxy. Dropping it stops the server.
pub struct Proxy {
    addr: SocketAddr,
    shared: Shared,
    down: watch::Sender<bool>,
    listening: Arc<AtomicBool>,
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy").field("addr", &self.addr).finish()
    }
}

/// Start a proxy on a free loopback port forwarding to `upstream` (`http://host:port`, no trailing slash).
pub fn start(upstream: &str) -> Proxy {
    let shared: Shared = Arc::new(Mutex::new(State {
        rules: Vec::new(),
        requests: Vec::new(),
    }));
    let (down, down_rx) = watch::channel(false);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let listening = Arc::new(AtomicBool::new(false));
    let (addr_tx, addr_rx) = mpsc::channel();
    let server = Server {
        upstream: upstream.trim_end_matches('/').to_string(),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("proxy upstream client"),
        shared: shared.clone(),
    };
    let listening_flag = listening.clone();
    let thread = std::thread::Builder::new()
        .name("registry-proxy".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("proxy runtime");
            rt.block_on(async move {
                let listener = bind("127.0.0.1:0".parse().expect("addr")).expect("bind proxy");
                let addr = listener.local_addr().expect("proxy addr");
                listening_flag.store(true, Ordering::SeqCst);
                let _ = addr_tx.send(addr);
                accept_loop(
                    Arc::new(server),
                    addr,
                    listener,
                    listening_flag,
                    down_rx,
                    shutdown_rx,
                )
                .await;
            });
        })
        .expect("spawn proxy thread");
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("proxy did not start");
    Proxy {
        addr,
        shared,
        down,
        listening,
        shutdown,
        thread: Some(thread),
    }
}

impl Proxy {
    /// `http://127.0.0.1:<port>`, no trailing slash: what the daemon's `registries[].url` points at.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Add a rule; rules are tried in the order they were added and the first live match applies.
    pub fn inject(&self, rule: Rule) {
        lock(&self.shared).rules.push((rule, 0));
    }

    pub fn clear_rules(&self) {
        lock(&self.shared).rules.clear();
    }

    /// Emulate an outage of the whole registry: `true` closes the listener (new connections are refused)
    /// and every open connection; `false` listens on the same port again. Returns once that is done.
    pub fn set_down(&self, down: bool) {
        let _ = self.down.send(down);
        let deadline = Instant::now() + STATE_CHANGE_DEADLINE;
        while self.listening.load(Ordering::SeqCst) == down {
            assert!(
                Instant::now() < deadline,
                "proxy did not go {}",
                if down { "down" } else { "up" }
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Seen> {
        lock(&self.shared).requests.clone()
    }

    /// The requests with `method` whose path contains `path_contains`, in arrival order.
    pub fn requests_matching(&self, method: &str, path_contains: &str) -> Vec<Seen> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.contains(path_contains))
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        // Not joined: Drop may run inside an async test, which must not block on the thread.
        drop(self.thread.take());
    }
}

/// A listener with `SO_REUSEADDR`, so the same port can be bound again after an outage.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(
    server: Arc<Server>,
    addr: SocketAddr,
    listener: TcpListener,
    listening: Arc<AtomicBool>,
    mut down: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut listener = Some(listener);
    loop {
        if *down.borrow_and_update() {
            listener = None;
            listening.store(false, Ordering::SeqCst);
        } else if listener.is_none() {
            match bind(addr) {
                Ok(l) => {
                    listener = Some(l);
                    listening.store(true, Ordering::SeqCst);
                }
                Err(_) => {
                    // The port is briefly unavailable: try again (set_down(false) waits for `listening`).
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let accepted = match &listener {
            Some(l) => tokio::select! {
                _ = shutdown.changed() => return,
                changed = down.changed() => match changed {
                    Ok(()) => continue,
                    Err(_) => return,
                },
                accepted = l.accept() => accepted,
            },
            None => tokio::select! {
                _ = shutdown.changed() => return,
                changed = down.changed() => match changed {
                    Ok(()) => continue,
                    Err(_) => return,
                },
            },
        };
        let Ok((stream, _)) = accepted else { continue };
        let server = server.clone();
        let down = down.clone();
        tokio::spawn(serve_connection(server, stream, down));
    }
}

/// Serve one client connection until it ends, or until the proxy goes down (then it is closed).
async fn serve_connection(server: Arc<Server>, stream: TcpStream, mut down: watch::Receiver<bool>) {
    let reset = Arc::new(AtomicBool::new(false));
    let conn = Conn {
        stream,
        reset: reset.clone(),
    };
    let service = service_fn(move |req| {
        let server = server.clone();
        let reset = reset.clone();
        async move { server.handle(req, &reset).await }
    });
    let serving = http1::Builder::new().serve_connection(TokioIo::new(conn), service);
    tokio::select! {
        // Errors are dropped connections (by the client, or by a fault): nothing to report.
        _ = serving => {}
        _ = down.wait_for(|d| *d) => {}
    }
}

/// The error that makes hyper close a connection without answering.
#[derive(Debug)]
struct Dropped;

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}

impl std::error::Error for Dropped {}

struct Server {
    upstream: String,
    client: reqwest::Client,
    shared: Shared,
}

impl Server {
    async fn handle(
        &self,
        req: Request<Incoming>,
        reset: &AtomicBool,
    ) -> Result<Response<Body>, Dropped> {
        let (parts, body) = req.into_parts();
        let method = parts.method.as_str().to_string();
        let path = parts.uri.path().to_string();
        let (index, action) = {
            let mut st = lock(&self.shared);
            st.requests.push(Seen {
                method: method.clone(),
                path: path.clone(),
                status: 0,
                authorized: parts.headers.contains_key(hyper::header::AUTHORIZATION),
                at: Instant::now(),
            });
            let index = st.requests.len() - 1;
            let action = st.rules.iter_mut().find_map(|(rule, used)| {
                let matches = path.contains(&rule.path_contains)
                    && rule.method.as_deref().is_none_or(|m| m == method)
                    && (rule.times == 0 || *used < rule.times);
                matches.then(|| {
                    *used += 1;
                    rule.action.clone()
                })
            });
            (index, action)
        };
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let result = match action {
            None => Ok(self.forward(&parts, body, false).await),
            Some(Action::Status(code, retry_after)) => Ok(error_response(code, retry_after, &path)),
            Some(Action::Delay(d)) => {
                tokio::time::sleep(d).await;
                Ok(self.forward(&parts, body, false).await)
            }
            Some(Action::CorruptBody) => Ok(self.forward(&parts, body, true).await),
            Some(Action::OversizeBody(n)) => Ok(oversize_response(n)),
            Some(Action::Reset) => {
                reset.store(true, Ordering::SeqCst);
                Err(Dropped)
            }
            Some(Action::Down) => Err(Dropped),
        };
        if let Ok(response) = &result {
            lock(&self.shared).requests[index].status = response.status().as_u16();
        }
        result
    }

    /// Send the request to the registry and return its answer (502 if the registry cannot be reached).
    async fn forward(
        &self,
        parts: &hyper::http::request::Parts,
        body: Bytes,
        corrupt: bool,
    ) -> Response<Body> {
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let mut request = self.client.request(
            parts.method.clone(),
            format!("{}{path_and_query}", self.upstream),
        );
        for (name, value) in &parts.headers {
            if name != hyper::header::HOST && !HOP_BY_HOP.contains(&name.as_str()) {
                request = request.header(name, value);
            }
        }
        let upstream = match request.body(body).send().await {
            Ok(r) => r,
            Err(e) => return error_response_with(502, None, "UNAVAILABLE", &e.to_string()),
        };
        let status = upstream.status();
        let headers = upstream.headers().clone();
        let mut bytes = match upstream.bytes().await {
            Ok(b) => b.to_vec(),
            Err(e) => return error_response_with(502, None, "UNAVAILABLE", &e.to_string()),
        };
        if corrupt && !bytes.is_empty() {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x01;
        }
        let mut builder = Response::builder().status(status);
        for (name, value) in &headers {
            if !HOP_BY_HOP.contains(&name.as_str()) {
                builder = builder.header(name, value);
            }
        }
        builder
            .body(full(bytes))
            .unwrap_or_else(|e| error_response_with(502, None, "UNKNOWN", &e.to_string()))
    }
}
