//! Configuration: YAML (SPEC §3) parsed once, fully, into typed values before anything binds.
//!
//! Unknown keys are rejected and every error names the offending key, so a bad config exits 64 with one
//! line an operator can act on. Secrets are only ever read from files and are wrapped in [`Secret`],
//! whose `Debug`/`Display` never print the value. This module performs no network I/O.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};
use url::Url;

/// A configuration error, always naming the key it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
}

impl ConfigError {
    /// An error about `key`; the message is folded onto one line (regex and YAML errors span several).
    fn key(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Key {
            key: key.into(),
            message: message
                .into()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// A secret read from a file. Never printed, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret value; call only where it is put on the wire or compared.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

// ---------------------------------------------------------------------------------------------
// Raw (file) shape
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default = "default_admin_listen")]
    admin_listen: String,
    tls: Option<RawTls>,
    #[serde(default = "default_state_dir")]
    state_dir: PathBuf,
    #[serde(default = "default_max_body")]
    max_body_bytes: u64,
    #[serde(default)]
    registries: Vec<RawRegistry>,
    #[serde(default)]
    sources: Vec<RawSource>,
    mappings: Option<Vec<RawMapping>>,
    #[serde(default)]
    cluster: RawCluster,
    #[serde(default)]
    worker: RawWorker,
}

fn default_listen() -> String {
    "0.0.0.0:8080".into()
}
fn default_admin_listen() -> String {
    "127.0.0.1:8081".into()
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/imagestream-ingest")
}
fn default_max_body() -> u64 {
    1024 * 1024
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    #[serde(rename = "clientCAFile")]
    client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRegistry {
    name: String,
    url: String,
    pull_host: Option<String>,
    ca_file: Option<PathBuf>,
    #[serde(default, rename = "insecureSkipTLSVerify")]
    insecure_skip_tls_verify: bool,
    auth: Option<RawRegistryAuth>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRegistryAuth {
    username: Option<String>,
    password_file: Option<PathBuf>,
    docker_config_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSource {
    name: String,
    #[serde(rename = "type")]
    kind: SourceType,
    path: String,
    registry: String,
    auth: RawSourceAuth,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSourceAuth {
    bearer_token_file: Option<PathBuf>,
    basic: Option<RawBasic>,
    hmac_secret_file: Option<PathBuf>,
    header_secret: Option<RawHeaderSecret>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawBasic {
    username: String,
    password_file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawHeaderSecret {
    header: String,
    secret_file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawMapping {
    registry: String,
    repository: String,
    namespace: String,
    image_stream: String,
    tags: Option<String>,
    #[serde(default)]
    create_image_stream: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawCluster {
    #[serde(default)]
    sink: SinkKind,
    kubeconfig: Option<PathBuf>,
    #[serde(default = "default_directory")]
    directory: PathBuf,
    #[serde(default)]
    store_manifests: bool,
    #[serde(default = "yes")]
    create_child_images: bool,
    #[serde(default)]
    dry_run: bool,
    #[serde(default = "default_ready_window", with = "humantime_serde")]
    ready_window: Duration,
}

impl Default for RawCluster {
    fn default() -> Self {
        Self {
            sink: SinkKind::default(),
            kubeconfig: None,
            directory: default_directory(),
            store_manifests: false,
            create_child_images: true,
            dry_run: false,
            ready_window: default_ready_window(),
        }
    }
}

fn default_directory() -> PathBuf {
    PathBuf::from("./mappings")
}
fn yes() -> bool {
    true
}
fn default_ready_window() -> Duration {
    Duration::from_secs(300)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawWorker {
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    #[serde(default, with = "humantime_serde")]
    resync_interval: Duration,
    #[serde(default = "default_max_attempts")]
    max_attempts: u32,
    #[serde(default = "default_queue_capacity")]
    queue_capacity: usize,
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    shutdown_grace: Duration,
}

impl Default for RawWorker {
    fn default() -> Self {
        Self {
            concurrency: default_concurrency(),
            resync_interval: Duration::ZERO,
            max_attempts: default_max_attempts(),
            queue_capacity: default_queue_capacity(),
            shutdown_grace: default_shutdown_grace(),
        }
    }
}

fn default_concurrency() -> usize {
    8
}
fn default_max_attempts() -> u32 {
    10
}
fn default_queue_capacity() -> usize {
    10_000
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(25)
}

// ---------------------------------------------------------------------------------------------
// Typed shape
// ---------------------------------------------------------------------------------------------

/// The validated configuration.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    pub listen: SocketAddr,
    /// Loopback-only admin endpoint (dead letters) used by the CLI while `serve` runs.
    pub admin_listen: SocketAddr,
    pub tls: Option<TlsConfig>,
    pub state_dir: PathBuf,
    pub max_body_bytes: u64,
    pub registries: Vec<RegistryConfig>,
    pub sources: Vec<SourceConfig>,
    pub mappings: Vec<MappingRule>,
    pub cluster: ClusterConfig,
    pub worker: WorkerConfig,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    #[serde(rename = "clientCAFile")]
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryConfig {
    pub name: String,
    /// Base URL; the only place manifests and blobs are fetched from (SPEC §1).
    pub url: Url,
    /// `host[:port]` written into `dockerImageReference`.
    pub pull_host: String,
    /// PEM bytes of the extra trust anchor, read at load time.
    #[serde(skip)]
    pub ca_pem: Option<Vec<u8>>,
    pub ca_file: Option<PathBuf>,
    #[serde(rename = "insecureSkipTLSVerify")]
    pub insecure_skip_tls_verify: bool,
    pub auth: RegistryCredentials,
}

/// Credentials the daemon presents to a registry (Basic directly, or to the token realm).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum RegistryCredentials {
    Anonymous,
    Basic { username: String, password: Secret },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceType {
    Distribution,
    Harbor,
    Quay,
    Dockerhub,
    Github,
    Cloudevents,
    Acr,
    Artifactory,
}

impl SourceType {
    /// Every source type, for tests and fuzzing that must cover them all.
    pub const ALL: [SourceType; 8] = [
        Self::Distribution,
        Self::Harbor,
        Self::Quay,
        Self::Dockerhub,
        Self::Github,
        Self::Cloudevents,
        Self::Acr,
        Self::Artifactory,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Distribution => "distribution",
            Self::Harbor => "harbor",
            Self::Quay => "quay",
            Self::Dockerhub => "dockerhub",
            Self::Github => "github",
            Self::Cloudevents => "cloudevents",
            Self::Acr => "acr",
            Self::Artifactory => "artifactory",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: SourceType,
    pub path: String,
    /// Name of the registry this source's events refer to.
    pub registry: String,
    pub auth: SourceAuth,
}

/// How a notification sender proves itself.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum SourceAuth {
    BearerToken { token: Secret },
    Basic { username: String, password: Secret },
    HmacSecret { secret: Secret },
    HeaderSecret { header: String, secret: Secret },
}

/// One mapping rule: repository → namespace/stream (first match wins).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MappingRule {
    pub registry: String,
    #[serde(with = "regex_serde")]
    pub repository: Regex,
    pub namespace: String,
    pub image_stream: String,
    #[serde(with = "opt_regex_serde")]
    pub tags: Option<Regex>,
    pub create_image_stream: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    #[default]
    Kube,
    Directory,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfig {
    pub sink: SinkKind,
    pub kubeconfig: Option<PathBuf>,
    pub directory: PathBuf,
    pub store_manifests: bool,
    pub create_child_images: bool,
    pub dry_run: bool,
    /// `/readyz` fails when the cluster has not answered within this window.
    #[serde(with = "humantime_serde")]
    pub ready_window: Duration,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerConfig {
    pub concurrency: usize,
    #[serde(with = "humantime_serde")]
    pub resync_interval: Duration,
    pub max_attempts: u32,
    /// Pending jobs beyond this make the receiver answer 503 (backpressure).
    pub queue_capacity: usize,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

mod regex_serde {
    pub fn serialize<S: serde::Serializer>(r: &regex::Regex, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(r.as_str())
    }
}

mod opt_regex_serde {
    pub fn serialize<S: serde::Serializer>(
        r: &Option<regex::Regex>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match r {
            Some(r) => s.serialize_str(r.as_str()),
            None => s.serialize_none(),
        }
    }
}

/// The repository rule used when `mappings` is absent: `namespace/name`.
pub const DEFAULT_REPOSITORY_RULE: &str =
    r"^(?P<namespace>[a-z0-9]([-a-z0-9]*[a-z0-9])?)/(?P<name>[a-z0-9][-a-z0-9._]*)$";

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Self::from_yaml(&text, base)
    }

    /// Parse and validate YAML. Relative secret/CA paths are resolved against `base`.
    pub fn from_yaml(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let key = if path.is_empty() || path == "." {
                "(root)".to_string()
            } else {
                path
            };
            ConfigError::key(key, e.into_inner().to_string())
        })?;
        raw.validate(base)
    }

    pub fn registry(&self, name: &str) -> Option<&RegistryConfig> {
        self.registries.iter().find(|r| r.name == name)
    }

    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Read a secret file, trimming surrounding whitespace and the trailing newline.
fn read_secret(base: &Path, p: &Path, key: &str) -> Result<Secret, ConfigError> {
    let full = resolve(base, p);
    let text = std::fs::read_to_string(&full)
        .map_err(|e| ConfigError::key(key, format!("cannot read {}: {e}", full.display())))?;
    let value = text.trim();
    if value.is_empty() {
        return Err(ConfigError::key(
            key,
            format!("{} is empty", full.display()),
        ));
    }
    Ok(Secret::new(value))
}

fn parse_addr(s: &str, key: &str) -> Result<SocketAddr, ConfigError> {
    s.parse()
        .map_err(|e| ConfigError::key(key, format!("`{s}` is not host:port ({e})")))
}

fn compile(pattern: &str, key: &str) -> Result<Regex, ConfigError> {
    Regex::new(pattern).map_err(|e| ConfigError::key(key, format!("invalid regex: {e}")))
}

/// `{group}` references in a template; each must name a capture group of the rule's regex.
fn check_template(template: &str, re: &Regex, key: &str) -> Result<(), ConfigError> {
    let names: HashSet<&str> = re.capture_names().flatten().collect();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| ConfigError::key(key, "unclosed `{` in template"))?;
        let name = &after[..close];
        if !names.contains(name) {
            return Err(ConfigError::key(
                key,
                format!(
                    "template references `{{{name}}}` but the repository regex has no such named group"
                ),
            ));
        }
        rest = &after[close + 1..];
    }
    if template.is_empty() {
        return Err(ConfigError::key(key, "must not be empty"));
    }
    Ok(())
}

impl RawConfig {
    fn validate(self, base: &Path) -> Result<Config, ConfigError> {
        let listen = parse_addr(&self.listen, "listen")?;
        let admin_listen = parse_addr(&self.admin_listen, "adminListen")?;
        if !admin_listen.ip().is_loopback() {
            return Err(ConfigError::key(
                "adminListen",
                "must be a loopback address (the admin endpoint has no authentication)",
            ));
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::key("maxBodyBytes", "must be greater than 0"));
        }
        let tls = self.tls.map(|t| TlsConfig {
            cert_file: resolve(base, &t.cert_file),
            key_file: resolve(base, &t.key_file),
            client_ca_file: t.client_ca_file.map(|p| resolve(base, &p)),
        });

        let mut registries = Vec::new();
        let mut seen = HashSet::new();
        for (i, r) in self.registries.into_iter().enumerate() {
            let k = |f: &str| format!("registries[{i}].{f}");
            if r.name.is_empty() {
                return Err(ConfigError::key(k("name"), "must not be empty"));
            }
            if !seen.insert(r.name.clone()) {
                return Err(ConfigError::key(
                    k("name"),
                    format!("duplicate registry `{}`", r.name),
                ));
            }
            let url = Url::parse(&r.url)
                .map_err(|e| ConfigError::key(k("url"), format!("`{}`: {e}", r.url)))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(ConfigError::key(
                    k("url"),
                    "must be an http(s) URL with a host",
                ));
            }
            let default_pull_host = match (url.host_str(), url.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_string(),
                (None, _) => unreachable_host(),
            };
            let pull_host = r.pull_host.unwrap_or(default_pull_host);
            if pull_host.is_empty() || pull_host.contains('/') {
                return Err(ConfigError::key(k("pullHost"), "must be host[:port]"));
            }
            let (ca_file, ca_pem) = match r.ca_file {
                Some(p) => {
                    let full = resolve(base, &p);
                    let pem = std::fs::read(&full).map_err(|e| {
                        ConfigError::key(
                            k("caFile"),
                            format!("cannot read {}: {e}", full.display()),
                        )
                    })?;
                    (Some(full), Some(pem))
                }
                None => (None, None),
            };
            let auth = match r.auth {
                None => RegistryCredentials::Anonymous,
                Some(a) => registry_credentials(a, base, &url, &k("auth"))?,
            };
            registries.push(RegistryConfig {
                name: r.name,
                url,
                pull_host,
                ca_pem,
                ca_file,
                insecure_skip_tls_verify: r.insecure_skip_tls_verify,
                auth,
            });
        }
        let registry_names: HashSet<String> = registries.iter().map(|r| r.name.clone()).collect();

        let mut sources = Vec::new();
        let mut paths = HashSet::new();
        for (i, s) in self.sources.into_iter().enumerate() {
            let k = |f: &str| format!("sources[{i}].{f}");
            if s.name.is_empty() {
                return Err(ConfigError::key(k("name"), "must not be empty"));
            }
            if !s.path.starts_with('/') {
                return Err(ConfigError::key(k("path"), "must start with `/`"));
            }
            if matches!(s.path.as_str(), "/healthz" | "/readyz" | "/metrics") {
                return Err(ConfigError::key(
                    k("path"),
                    "collides with a built-in endpoint",
                ));
            }
            if !paths.insert(s.path.clone()) {
                return Err(ConfigError::key(
                    k("path"),
                    format!("duplicate path `{}`", s.path),
                ));
            }
            if !registry_names.contains(&s.registry) {
                return Err(ConfigError::key(
                    k("registry"),
                    format!("no registry named `{}`", s.registry),
                ));
            }
            let auth = source_auth(s.auth, base, &k("auth"))?;
            check_auth_fits_type(s.kind, &auth, &k("auth"))?;
            sources.push(SourceConfig {
                name: s.name,
                kind: s.kind,
                path: s.path,
                registry: s.registry,
                auth,
            });
        }

        let mappings = match self.mappings {
            Some(rules) => {
                let mut out = Vec::new();
                for (i, m) in rules.into_iter().enumerate() {
                    let k = |f: &str| format!("mappings[{i}].{f}");
                    if !registry_names.contains(&m.registry) {
                        return Err(ConfigError::key(
                            k("registry"),
                            format!("no registry named `{}`", m.registry),
                        ));
                    }
                    let repository = compile(&m.repository, &k("repository"))?;
                    check_template(&m.namespace, &repository, &k("namespace"))?;
                    check_template(&m.image_stream, &repository, &k("imageStream"))?;
                    let tags = m
                        .tags
                        .as_deref()
                        .map(|t| compile(t, &k("tags")))
                        .transpose()?;
                    out.push(MappingRule {
                        registry: m.registry,
                        repository,
                        namespace: m.namespace,
                        image_stream: m.image_stream,
                        tags,
                        create_image_stream: m.create_image_stream,
                    });
                }
                out
            }
            None => registries
                .iter()
                .map(|r| -> Result<MappingRule, ConfigError> {
                    Ok(MappingRule {
                        registry: r.name.clone(),
                        repository: compile(DEFAULT_REPOSITORY_RULE, "mappings")?,
                        namespace: "{namespace}".into(),
                        image_stream: "{name}".into(),
                        tags: Some(compile("^.+$", "mappings")?),
                        create_image_stream: true,
                    })
                })
                .collect::<Result<_, _>>()?,
        };

        let c = self.cluster;
        let cluster = ClusterConfig {
            sink: c.sink,
            kubeconfig: c.kubeconfig.map(|p| resolve(base, &p)),
            directory: resolve(base, &c.directory),
            store_manifests: c.store_manifests,
            create_child_images: c.create_child_images,
            dry_run: c.dry_run,
            ready_window: c.ready_window,
        };

        let w = self.worker;
        if w.concurrency == 0 {
            return Err(ConfigError::key("worker.concurrency", "must be at least 1"));
        }
        if w.max_attempts == 0 {
            return Err(ConfigError::key("worker.maxAttempts", "must be at least 1"));
        }
        if w.queue_capacity == 0 {
            return Err(ConfigError::key(
                "worker.queueCapacity",
                "must be at least 1",
            ));
        }

        Ok(Config {
            listen,
            admin_listen,
            tls,
            state_dir: resolve(base, &self.state_dir),
            max_body_bytes: self.max_body_bytes,
            registries,
            sources,
            mappings,
            cluster,
            worker: WorkerConfig {
                concurrency: w.concurrency,
                resync_interval: w.resync_interval,
                max_attempts: w.max_attempts,
                queue_capacity: w.queue_capacity,
                shutdown_grace: w.shutdown_grace,
            },
        })
    }
}

fn unreachable_host() -> String {
    // `Url::host_str()` is checked to be `Some` before this is reached.
    String::new()
}

fn registry_credentials(
    a: RawRegistryAuth,
    base: &Path,
    url: &Url,
    key: &str,
) -> Result<RegistryCredentials, ConfigError> {
    match (a.username, a.password_file, a.docker_config_file) {
        (Some(username), Some(pw), None) => Ok(RegistryCredentials::Basic {
            username,
            password: read_secret(base, &pw, &format!("{key}.passwordFile"))?,
        }),
        (None, None, Some(p)) => {
            let k = format!("{key}.dockerConfigFile");
            let full = resolve(base, &p);
            let bytes = std::fs::read(&full).map_err(|e| {
                ConfigError::key(&k, format!("cannot read {}: {e}", full.display()))
            })?;
            docker_config_credentials(&bytes, url).map_err(|m| ConfigError::key(&k, m))
        }
        _ => Err(ConfigError::key(
            key,
            "set either `username` + `passwordFile`, or `dockerConfigFile`",
        )),
    }
}

/// Find the entry for the registry's `host[:port]` in a `kubernetes.io/dockerconfigjson` document
/// (`{"auths": {host: {auth | username+password}}}`; a bare `.dockercfg` map is accepted too).
pub fn docker_config_credentials(bytes: &[u8], url: &Url) -> Result<RegistryCredentials, String> {
    use base64::Engine as _;
    #[derive(Deserialize)]
    struct Entry {
        auth: Option<String>,
        username: Option<String>,
        password: Option<String>,
    }
    let doc: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let auths = doc.get("auths").unwrap_or(&doc);
    let host = url.host_str().unwrap_or_default();
    let host_port = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let wanted = [
        host_port.clone(),
        format!("https://{host_port}"),
        format!("http://{host_port}"),
        format!("https://{host_port}/v2/"),
        format!("https://{host_port}/v1/"),
    ];
    let obj = auths
        .as_object()
        .ok_or_else(|| "expected an object with `auths`".to_string())?;
    let entry = wanted
        .iter()
        .find_map(|w| obj.get(w))
        .ok_or_else(|| format!("no entry for `{host_port}`"))?;
    let entry: Entry = serde_json::from_value(entry.clone())
        .map_err(|e| format!("entry for `{host_port}`: {e}"))?;
    if let Some(auth) = entry.auth.filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| format!("entry for `{host_port}`: `auth` is not base64"))?;
        let text = String::from_utf8(decoded)
            .map_err(|_| format!("entry for `{host_port}`: `auth` is not UTF-8"))?;
        let (u, p) = text
            .split_once(':')
            .ok_or_else(|| format!("entry for `{host_port}`: `auth` is not user:password"))?;
        return Ok(RegistryCredentials::Basic {
            username: u.to_string(),
            password: Secret::new(p),
        });
    }
    match (entry.username, entry.password) {
        (Some(u), Some(p)) => Ok(RegistryCredentials::Basic {
            username: u,
            password: Secret::new(p),
        }),
        _ => Err(format!(
            "entry for `{host_port}` has neither `auth` nor username/password"
        )),
    }
}

/// Refuse an authentication the sender of `kind` cannot produce (it would answer 401 to every event).
/// GitHub can only sign; Artifactory sends `X-JFrog-Event-Auth` (plain or signed); the others cannot sign,
/// so they authenticate with a header (their own, one set by a proxy, or Basic from the webhook URL).
fn check_auth_fits_type(kind: SourceType, auth: &SourceAuth, key: &str) -> Result<(), ConfigError> {
    let hmac = matches!(auth, SourceAuth::HmacSecret { .. });
    let message = match kind {
        SourceType::Github if !hmac => {
            "github signs its deliveries: use hmacSecretFile (the webhook's secret)".to_string()
        }
        SourceType::Artifactory if !hmac && !matches!(auth, SourceAuth::HeaderSecret { .. }) => {
            "artifactory authenticates with X-JFrog-Event-Auth: use hmacSecretFile (plain or signed) \
             or headerSecret"
                .to_string()
        }
        SourceType::Github | SourceType::Artifactory => return Ok(()),
        other if hmac => format!(
            "`{}` cannot sign its notifications: use bearerTokenFile, basic or headerSecret",
            other.as_str()
        ),
        _ => return Ok(()),
    };
    Err(ConfigError::key(key, message))
}

fn source_auth(a: RawSourceAuth, base: &Path, key: &str) -> Result<SourceAuth, ConfigError> {
    let set = [
        a.bearer_token_file.is_some(),
        a.basic.is_some(),
        a.hmac_secret_file.is_some(),
        a.header_secret.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if set != 1 {
        return Err(ConfigError::key(
            key,
            "set exactly one of bearerTokenFile, basic, hmacSecretFile, headerSecret",
        ));
    }
    if let Some(p) = a.bearer_token_file {
        return Ok(SourceAuth::BearerToken {
            token: read_secret(base, &p, &format!("{key}.bearerTokenFile"))?,
        });
    }
    if let Some(b) = a.basic {
        return Ok(SourceAuth::Basic {
            username: b.username,
            password: read_secret(base, &b.password_file, &format!("{key}.basic.passwordFile"))?,
        });
    }
    if let Some(p) = a.hmac_secret_file {
        return Ok(SourceAuth::HmacSecret {
            secret: read_secret(base, &p, &format!("{key}.hmacSecretFile"))?,
        });
    }
    match a.header_secret {
        Some(h) => {
            if http::HeaderName::from_bytes(h.header.as_bytes()).is_err() {
                return Err(ConfigError::key(
                    format!("{key}.headerSecret.header"),
                    "not a valid HTTP header name",
                ));
            }
            Ok(SourceAuth::HeaderSecret {
                header: h.header,
                secret: read_secret(
                    base,
                    &h.secret_file,
                    &format!("{key}.headerSecret.secretFile"),
                )?,
            })
        }
        None => Err(ConfigError::key(key, "no authentication configured")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn write(dir: &Path, name: &str, content: &str) {
        std::fs::write(dir.join(name), content).expect("write");
    }

    #[test]
    fn defaults_fill_an_almost_empty_config() {
        let c = Config::from_yaml("{}", Path::new(".")).expect("config");
        assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.max_body_bytes, 1024 * 1024);
        assert_eq!(c.worker.concurrency, 8);
        assert_eq!(c.worker.max_attempts, 10);
        assert!(c.cluster.create_child_images);
        assert!(!c.cluster.store_manifests && !c.cluster.dry_run);
        assert_eq!(c.cluster.sink, SinkKind::Kube);
    }

    #[test]
    fn secrets_are_read_from_files_trimmed_and_never_serialized() {
        let dir = tempfile::tempdir().expect("tmp");
        write(dir.path(), "token", "  s3cret-token \n");
        write(dir.path(), "pw", "hunter2\n");
        let yaml = "registries:\n  - name: r\n    url: https://reg.example:5000/prefix\n    auth: {username: robot, passwordFile: pw}\n\
                    sources:\n  - {name: s, type: distribution, path: /n, registry: r, auth: {bearerTokenFile: token}}\n";
        let c = Config::from_yaml(yaml, dir.path()).expect("config");
        let SourceAuth::BearerToken { token } = &c.sources[0].auth else {
            panic!("auth")
        };
        assert_eq!(token.expose(), "s3cret-token");
        assert_eq!(c.registries[0].pull_host, "reg.example:5000");
        let shown = serde_yaml_ng::to_string(&c).expect("yaml");
        let debug = format!("{c:?}");
        for text in [&shown, &debug] {
            assert!(
                !text.contains("s3cret-token") && !text.contains("hunter2"),
                "secret shown: {text}"
            );
        }
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn docker_config_json_entries_are_found_by_host_and_port() {
        let url = Url::parse("https://reg.example:5000").expect("url");
        let auth = base64::engine::general_purpose::STANDARD.encode("robot:pa:ss");
        let doc = format!(
            r#"{{"auths":{{"other:1":{{"auth":"eDp5"}},"reg.example:5000":{{"auth":"{auth}"}}}}}}"#
        );
        let RegistryCredentials::Basic { username, password } =
            docker_config_credentials(doc.as_bytes(), &url).expect("creds")
        else {
            panic!("not basic")
        };
        assert_eq!((username.as_str(), password.expose()), ("robot", "pa:ss"));
        let plain = r#"{"auths":{"https://reg.example:5000":{"username":"u","password":"p"}}}"#;
        assert!(matches!(
            docker_config_credentials(plain.as_bytes(), &url),
            Ok(RegistryCredentials::Basic { .. })
        ));
        for bad in [
            r#"{"auths":{}}"#,
            "not json",
            r#"{"auths":{"reg.example:5000":{"auth":"!!"}}}"#,
        ] {
            assert!(
                docker_config_credentials(bad.as_bytes(), &url).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn errors_name_the_offending_key() {
        let cases = [
            ("unknownKey: 1\n", "unknownKey"),
            ("cluster:\n  sink: s3\n", "cluster.sink"),
            ("worker:\n  resyncInterval: soon\n", "worker.resyncInterval"),
            ("adminListen: 0.0.0.0:9\n", "adminListen"),
            ("maxBodyBytes: 0\n", "maxBodyBytes"),
            (
                "registries:\n  - {name: r, url: 'http://a'}\n  - {name: r, url: 'http://b'}\n",
                "registries[1].name",
            ),
            (
                "registries:\n  - {name: r, url: 'http://a'}\nmappings:\n  - {registry: r, repository: '^(?P<a>x)$', namespace: '{b}', imageStream: x}\n",
                "mappings[0].namespace",
            ),
            (
                "registries:\n  - {name: r, url: 'http://a'}\nsources:\n  - {name: s, type: distribution, path: n, registry: r, auth: {bearerTokenFile: t}}\n",
                "sources[0].path",
            ),
            (
                "registries:\n  - {name: r, url: 'http://a'}\nsources:\n  - {name: s, type: distribution, path: /n, registry: x, auth: {bearerTokenFile: t}}\n",
                "sources[0].registry",
            ),
        ];
        for (yaml, key) in cases {
            match Config::from_yaml(yaml, Path::new("/nonexistent")) {
                Err(ConfigError::Key { key: k, message }) => {
                    assert!(
                        k.contains(key),
                        "{yaml}: got key `{k}` ({message}), want `{key}`"
                    );
                    assert!(!message.contains('\n'));
                }
                other => panic!("{yaml}: {other:?}"),
            }
        }
    }
}
