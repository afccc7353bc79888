//! A Docker token-auth issuer for a registry configured with `auth: token:` (realm, service, issuer,
//! rootcertbundle), plus the minimal HTTP/1.1 reading and writing it (and test listeners) need.
//!
//! The issuer runs on its own thread and runtime so that a test blocking its own thread (skopeo runs
//! synchronously) cannot starve it. Tokens are ES256 JWTs carrying the signing certificate in `x5c`; the
//! registry trusts them because that self-signed certificate is its `rootcertbundle`. It is a test double:
//! every known user gets every action asked for, anonymous callers get an empty grant.

use std::fs;
use std::net::TcpListener as StdTcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tempfile::TempDir;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::tls;

/// Lifetime of issued tokens, seconds.
pub const TOKEN_TTL_SECS: i64 = 300;
const MAX_HEAD: usize = 64 * 1024;

/// One HTTP/1.1 request as read off a socket.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// Decoded query pairs, in order (a key may repeat).
    pub fn query(&self) -> Vec<(String, String)> {
        match url::Url::parse(&format!("http://h{}", self.target)) {
            Ok(u) => u
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// Read one request (head, then a `Content-Length` body). `None` on EOF or a malformed head.
pub async fn read_http_request(stream: &mut TcpStream) -> Option<HttpRequest> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Some(HttpRequest {
        method,
        target,
        headers,
        body,
    })
}

/// Write a complete response and announce `Connection: close` (callers serve one request per connection).
pub async fn write_http_response(
    stream: &mut TcpStream,
    status: u16,
    extra_headers: &[(&str, &str)],
    body: &[u8],
) {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason(status),
        body.len()
    );
    for (k, v) in extra_headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let _ = stream.shutdown().await;
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

/// A running token issuer. Dropping it stops the server thread.
pub struct TokenIssuer {
    /// `http://127.0.0.1:PORT/token`
    pub realm: String,
    /// The `service` the registry names in its challenge and tokens are issued for (`aud`).
    pub service: String,
    /// The `iss` of issued tokens.
    pub issuer: String,
    /// PEM file of the self-signed signing certificate (the registry's `rootcertbundle`).
    pub rootcert_path: PathBuf,
    /// Number of token requests served (any outcome).
    pub requests: Arc<AtomicUsize>,
    /// Every `scope` value asked for, in order.
    pub scopes: Arc<Mutex<Vec<String>>>,
    _dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct IssuerState {
    users: Vec<(String, String)>,
    service: String,
    issuer: String,
    x5c: String,
    key: EncodingKey,
    requests: Arc<AtomicUsize>,
    scopes: Arc<Mutex<Vec<String>>>,
}

/// Start an issuer on a free loopback port that knows `users` as (name, password).
pub async fn start_token_issuer(users: &[(&str, &str)]) -> TokenIssuer {
    let dir = TempDir::new().expect("issuer tempdir");
    let (cert_pem, cert_der, key_pem) =
        tls::self_signed_signing_cert("imagestream-ingest test token signer");
    let rootcert_path = dir.path().join("token-root.crt");
    fs::write(&rootcert_path, &cert_pem).expect("write rootcertbundle");
    let std_listener = StdTcpListener::bind("127.0.0.1:0").expect("bind issuer");
    std_listener.set_nonblocking(true).expect("nonblocking");
    let port = std_listener.local_addr().expect("issuer addr").port();
    let requests = Arc::new(AtomicUsize::new(0));
    let scopes = Arc::new(Mutex::new(Vec::new()));
    let state = Arc::new(IssuerState {
        users: users
            .iter()
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect(),
        service: "imagestream-ingest-test-registry".to_string(),
        issuer: "imagestream-ingest-test-issuer".to_string(),
        x5c: STANDARD.encode(&cert_der),
        key: EncodingKey::from_ec_pem(key_pem.as_bytes()).expect("signing key"),
        requests: requests.clone(),
        scopes: scopes.clone(),
    });
    let (tx, rx) = oneshot::channel();
    let thread_state = state.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("issuer runtime");
        rt.block_on(serve(std_listener, thread_state, rx));
    });
    TokenIssuer {
        realm: format!("http://127.0.0.1:{port}/token"),
        service: state.service.clone(),
        issuer: state.issuer.clone(),
        rootcert_path,
        requests,
        scopes,
        _dir: dir,
        shutdown: Some(tx),
        thread: Some(thread),
    }
}

async fn serve(listener: StdTcpListener, state: Arc<IssuerState>, mut stop: oneshot::Receiver<()>) {
    let listener = TcpListener::from_std(listener).expect("tokio listener");
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                let Ok((mut stream, _)) = accepted else { continue };
                let state = state.clone();
                tokio::spawn(async move {
                    if let Some(req) = read_http_request(&mut stream).await {
                        let (status, body) = answer(&state, &req);
                        write_http_response(&mut stream, status, &[("Content-Type", "application/json")], body.as_bytes()).await;
                    }
                });
            }
        }
    }
}

/// The authenticated user: `Ok(None)` for anonymous, `Err(())` for bad credentials.
fn authenticate(state: &IssuerState, req: &HttpRequest) -> Result<Option<String>, ()> {
    let Some(value) = req.header("authorization") else {
        return Ok(None);
    };
    let encoded = value.strip_prefix("Basic ").ok_or(())?;
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| ())?;
    let text = String::from_utf8(decoded).map_err(|_| ())?;
    let (user, pass) = text.split_once(':').ok_or(())?;
    if state.users.iter().any(|(u, p)| u == user && p == pass) {
        Ok(Some(user.to_string()))
    } else {
        Err(())
    }
}

/// `type:name:actions` scopes (several may share one parameter, space-separated) → access entries.
fn access_for(scopes: &[String]) -> Vec<Value> {
    scopes
        .iter()
        .flat_map(|s| s.split(' '))
        .filter_map(|scope| {
            let (kind, rest) = scope.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
            Some(json!({"type": kind, "name": name, "actions": actions}))
        })
        .collect()
}

fn answer(state: &IssuerState, req: &HttpRequest) -> (u16, String) {
    state.requests.fetch_add(1, Ordering::SeqCst);
    if req.method != "GET" || req.path() != "/token" {
        return (404, r#"{"error":"not found"}"#.to_string());
    }
    let query = req.query();
    let scopes: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    state
        .scopes
        .lock()
        .expect("scopes lock")
        .extend(scopes.iter().cloned());
    let service = query
        .iter()
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.as_str());
    if service.is_some_and(|s| s != state.service) {
        return (400, r#"{"error":"unknown service"}"#.to_string());
    }
    let user = match authenticate(state, req) {
        Ok(u) => u,
        Err(()) => return (401, r#"{"error":"bad credentials"}"#.to_string()),
    };
    let access = if user.is_some() {
        access_for(&scopes)
    } else {
        Vec::new()
    };
    let now = OffsetDateTime::now_utc();
    let iat = now.unix_timestamp();
    let claims = json!({
        "iss": state.issuer,
        "sub": user.clone().unwrap_or_default(),
        "aud": state.service,
        "exp": iat + TOKEN_TTL_SECS,
        "nbf": iat - 10,
        "iat": iat,
        "jti": uuid::Uuid::new_v4().to_string(),
        "access": access,
    });
    let mut header = Header::new(Algorithm::ES256);
    header.x5c = Some(vec![state.x5c.clone()]);
    let token = jsonwebtoken::encode(&header, &claims, &state.key).expect("sign token");
    let body = json!({
        "token": token,
        "access_token": token,
        "expires_in": TOKEN_TTL_SECS,
        "issued_at": now.format(&Rfc3339).unwrap_or_default(),
    });
    (200, body.to_string())
}
