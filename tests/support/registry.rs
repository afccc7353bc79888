//! Starts a real CNCF distribution registry (`docker-registry serve`, Debian's 2.8) on a free loopback port,
//! with its storage, config, certificates and log in a temporary directory, optionally behind htpasswd or
//! token auth and TLS, and with a notification endpoint. It must not touch the host's
//! `/etc/docker/registry` config nor leave processes behind (Drop kills and reaps the child).

use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::tls::{self, TestPki};
use super::token::TokenIssuer;

/// How long a registry may take to answer `GET /v2/`.
pub const START_DEADLINE: Duration = Duration::from_secs(20);
const START_ATTEMPTS: usize = 3;
const REGISTRY_BIN: &str = "docker-registry";

/// Who may use the registry.
pub enum RegistryAuth {
    /// Anonymous push and pull.
    None,
    /// `auth: htpasswd:` with one bcrypt user.
    Htpasswd { user: String, password: String },
    /// `auth: token:` trusting `issuer`; `user`/`password` are what clients send to the issuer.
    Token {
        issuer: TokenIssuer,
        user: String,
        password: String,
    },
}

/// How to start a registry.
pub struct RegistryOptions {
    /// Notification endpoint URL; no `notifications:` section when `None`.
    pub notify_url: Option<String>,
    /// Sent as `Authorization: Bearer <token>` with every notification.
    pub notify_token: Option<String>,
    pub auth: RegistryAuth,
    /// Serve HTTPS with a certificate from a fresh test CA.
    pub tls: bool,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            notify_url: None,
            notify_token: None,
            auth: RegistryAuth::None,
            tls: false,
        }
    }
}

/// A running registry process.
pub struct Registry {
    /// `127.0.0.1:PORT`
    pub host: String,
    /// `http(s)://127.0.0.1:PORT`
    pub url: String,
    /// PEM of the CA that signed the server certificate (TLS only).
    pub ca_pem: Option<String>,
    /// File holding `ca_pem` (TLS only).
    pub ca_file: Option<PathBuf>,
    /// Directory holding only `ca.crt`, for skopeo `--dest-cert-dir`/`--cert-dir` (TLS only).
    pub cert_dir: Option<PathBuf>,
    pub auth: RegistryAuth,
    /// Root of everything this registry owns (config, data, certs, log).
    pub dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    _tempdir: TempDir,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind free port");
    listener.local_addr().expect("local addr").port()
}

fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).expect("yaml string")
}

fn auth_section(auth: &RegistryAuth, dir: &std::path::Path) -> String {
    match auth {
        RegistryAuth::None => String::new(),
        RegistryAuth::Htpasswd { user, password } => {
            let hash = bcrypt::hash(password, 4).expect("bcrypt");
            let path = dir.join("htpasswd");
            fs::write(&path, format!("{user}:{hash}\n")).expect("write htpasswd");
            format!(
                "auth:\n  htpasswd:\n    realm: test-registry\n    path: {}\n",
                yaml_str(&path.display().to_string())
            )
        }
        RegistryAuth::Token { issuer, .. } => format!(
            "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
            yaml_str(&issuer.realm),
            yaml_str(&issuer.service),
            yaml_str(&issuer.issuer),
            yaml_str(&issuer.rootcert_path.display().to_string()),
        ),
    }
}

fn notifications_section(opts: &RegistryOptions) -> String {
    let Some(url) = &opts.notify_url else {
        return String::new();
    };
    let headers = match &opts.notify_token {
        Some(token) => format!(
            "      headers:\n        Authorization: [{}]\n",
            yaml_str(&format!("Bearer {token}"))
        ),
        None => String::new(),
    };
    format!(
        "notifications:\n  events:\n    includereferences: true\n  endpoints:\n    - name: ingest\n      url: {}\n{headers}      timeout: 2s\n      threshold: 3\n      backoff: 1s\n",
        yaml_str(url)
    )
}

impl Registry {
    /// Start a registry and wait until `GET /v2/` answers (401 counts). Panics with the log tail if it never does.
    pub async fn start(opts: RegistryOptions) -> Registry {
        let tempdir = TempDir::new().expect("registry tempdir");
        let dir = tempdir.path().to_path_buf();
        let data = dir.join("data");
        fs::create_dir_all(&data).expect("data dir");
        let (pki, tls_section) = if opts.tls {
            let pki = TestPki::create(&dir.join("certs"));
            let (cert, key) = tls::issue_server_cert(&pki.ca, &["127.0.0.1", "localhost"]);
            // The server key lives outside `certs/`: skopeo would take a `*.key` there for a client key.
            let tls_dir = dir.join("tls");
            fs::create_dir_all(&tls_dir).expect("tls dir");
            fs::write(tls_dir.join("server.crt"), cert).expect("server cert");
            fs::write(tls_dir.join("server.key"), key).expect("server key");
            let section = format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                yaml_str(&tls_dir.join("server.crt").display().to_string()),
                yaml_str(&tls_dir.join("server.key").display().to_string())
            );
            (Some(pki), section)
        } else {
            (None, String::new())
        };
        let auth = auth_section(&opts.auth, &dir);
        let notifications = notifications_section(&opts);
        let scheme = if opts.tls { "https" } else { "http" };
        let log_path = dir.join("registry.log");

        let mut registry = Registry {
            host: String::new(),
            url: String::new(),
            ca_pem: pki.as_ref().map(|p| p.ca_pem.clone()),
            ca_file: pki.as_ref().map(|p| p.ca_file()),
            cert_dir: pki.as_ref().map(|p| p.dir.clone()),
            auth: opts.auth,
            dir: dir.clone(),
            log_path,
            child: None,
            _tempdir: tempdir,
        };
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            let config = format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: imagestream-ingest-test-secret\n{tls_section}{auth}{notifications}",
                yaml_str(&data.display().to_string())
            );
            let config_path = dir.join("config.yml");
            fs::write(&config_path, config).expect("write registry config");
            registry.host = format!("127.0.0.1:{port}");
            registry.url = format!("{scheme}://127.0.0.1:{port}");
            registry.spawn(&config_path);
            match registry.wait_ready().await {
                Ok(()) => return registry,
                Err(why) => {
                    registry.stop();
                    let log = registry.log();
                    let collided = log.contains("address already in use");
                    if !collided || attempt == START_ATTEMPTS {
                        panic!(
                            "registry did not start: {why}\n--- registry log tail ---\n{}",
                            tail(&log, 40)
                        );
                    }
                }
            }
        }
        unreachable!("the start loop returns or panics")
    }

    fn spawn(&mut self, config_path: &std::path::Path) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open registry log");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(config_path)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run `{REGISTRY_BIN}` (apt-get install docker-registry): {e}")
            });
        self.child = Some(child);
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let client = self.http_client();
        let deadline = Instant::now() + START_DEADLINE;
        let url = format!("{}/v2/", self.url);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Err(format!("registry exited with {status}"));
            }
            if let Ok(resp) = client.get(&url).send().await {
                let code = resp.status().as_u16();
                if code == 200 || code == 401 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("no answer from {url} within {START_DEADLINE:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// An HTTP client that trusts this registry's CA (no credentials attached).
    pub fn http_client(&self) -> reqwest::Client {
        client_trusting(self.ca_pem.as_deref())
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Everything the registry wrote to stdout/stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// (user, password) clients must present, if the registry needs any.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        match &self.auth {
            RegistryAuth::None => None,
            RegistryAuth::Htpasswd { user, password }
            | RegistryAuth::Token { user, password, .. } => {
                Some((user.as_str(), password.as_str()))
            }
        }
    }

    /// `user:pass` for skopeo `--creds`/`--dest-creds`.
    pub fn skopeo_creds(&self) -> Option<String> {
        self.credentials().map(|(u, p)| format!("{u}:{p}"))
    }

    /// The token issuer behind this registry, if it uses token auth.
    pub fn token_issuer(&self) -> Option<&TokenIssuer> {
        match &self.auth {
            RegistryAuth::Token { issuer, .. } => Some(issuer),
            _ => None,
        }
    }
}

/// A response read from the registry.
pub struct Fetched {
    pub status: u16,
    /// `Content-Type`, empty when absent.
    pub content_type: String,
    /// `Docker-Content-Digest`, if sent.
    pub docker_digest: Option<String>,
    pub body: Vec<u8>,
}

/// What a reader needs to reach a registry, detached from the `Registry` so it can move to another thread.
#[derive(Clone)]
struct Reader {
    url: String,
    ca_pem: Option<String>,
    creds: Option<(String, String)>,
}

impl Registry {
    /// `GET {url}{path}` with `accept`, answering a Basic or Bearer challenge with this registry's credentials
    /// (the Bearer flow goes through the token realm, as any client would). Runs on its own thread and
    /// runtime, so it may be called from synchronous code and from inside an async test alike.
    pub fn get_blocking(&self, path: &str, accept: &str) -> Fetched {
        let reader = Reader {
            url: self.url.clone(),
            ca_pem: self.ca_pem.clone(),
            creds: self
                .credentials()
                .map(|(u, p)| (u.to_string(), p.to_string())),
        };
        let path = path.to_string();
        let accept = accept.to_string();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("reader runtime");
            rt.block_on(reader.get(&path, &accept))
        })
        .join()
        .expect("reader thread")
    }
}

impl Reader {
    async fn get(&self, path: &str, accept: &str) -> Fetched {
        let client = client_trusting(self.ca_pem.as_deref());
        let url = format!("{}{path}", self.url);
        let first = client
            .get(&url)
            .header("Accept", accept)
            .send()
            .await
            .expect("registry GET");
        if first.status().as_u16() != 401 {
            return read(first).await;
        }
        let challenge = first
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let retry = client.get(&url).header("Accept", accept);
        let retry = if let Some(params) = challenge.strip_prefix("Bearer ") {
            let token = self.token(&client, &parse_challenge(params)).await;
            retry.bearer_auth(token)
        } else {
            let (user, pass) = self.creds.clone().unwrap_or_default();
            retry.basic_auth(user, Some(pass))
        };
        read(retry.send().await.expect("registry GET with credentials")).await
    }

    async fn token(&self, client: &reqwest::Client, params: &[(String, String)]) -> String {
        let realm = params
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.clone())
            .expect("realm in challenge");
        let query: Vec<&(String, String)> = params
            .iter()
            .filter(|(k, _)| k == "service" || k == "scope")
            .collect();
        let mut req = client.get(&realm).query(&query);
        if let Some((user, pass)) = &self.creds {
            req = req.basic_auth(user, Some(pass));
        }
        let resp = req.send().await.expect("token request");
        assert!(
            resp.status().is_success(),
            "token realm answered {}",
            resp.status()
        );
        let body: serde_json::Value = resp.json().await.expect("token json");
        body.get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|t| t.as_str())
            .expect("token in answer")
            .to_string()
    }
}

async fn read(resp: reqwest::Response) -> Fetched {
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let status = resp.status().as_u16();
    let content_type = header("content-type").unwrap_or_default();
    let docker_digest = header("docker-content-digest");
    let body = resp.bytes().await.expect("registry body").to_vec();
    Fetched {
        status,
        content_type,
        docker_digest,
        body,
    }
}

/// A reqwest client that also trusts `ca_pem` (the test CA), with a timeout so a hung registry fails the test.
fn client_trusting(ca_pem: Option<&str>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if let Some(pem) = ca_pem {
        let cert = reqwest::Certificate::from_pem(pem.as_bytes()).expect("ca pem");
        builder = builder.add_root_certificate(cert);
    }
    builder.build().expect("http client")
}

/// `k="v",k2="v,with,commas"` (the part after `Bearer `) → pairs.
pub fn parse_challenge(params: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = params.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_string();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.split_once('"') {
                Some((v, n)) => (v.to_string(), n),
                None => (quoted.to_string(), ""),
            }
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v.trim().to_string(), n),
                None => (after.trim().to_string(), ""),
            }
        };
        out.push((key, value));
        rest = next.trim_start_matches(',').trim();
    }
    out
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
