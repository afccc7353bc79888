//! [`RegistryClient`]: the HTTP side of the distribution API for one configured registry (SPEC §5).
//!
//! One `reqwest::Client` (rustls, system + webpki roots + `caFile`) per registry, so connections are reused.
//! Every URL is `cfg.url` + `/v2/...` built from validated path segments; the only other URLs ever requested
//! are the token realm named by this registry's own challenge and same-origin pagination links.
//! Bodies are read under a byte limit while streaming and digested before anyone parses them.
//! It must not retry (the worker does), parse manifests, or log credentials.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header;
use reqwest::{Response, StatusCode};
use serde::Deserialize;
use tracing::{Instrument as _, debug};
use url::Url;

use super::MAX_MANIFEST_BYTES;
use super::auth::{self, Auth, Challenge, TokenCache};
use super::body::{announced_digest, error_from, read_error_body, read_limited, verify_digest};
use super::error::{ErrorBody, Op, classify};
use super::paging::{next_link, resolve_next};
use super::{FetchedManifest, Reference, RegistryError, validate_repository, validate_tag};
use crate::config::{RegistryConfig, RegistryCredentials, Secret};
use crate::digest::Digest;
use crate::manifest::ACCEPT_MANIFESTS;
use crate::metrics::Metrics;

const ACCEPT_JSON: &str = "application/json";
const USER_AGENT: &str = concat!("imagestream-ingest/", env!("CARGO_PKG_VERSION"));
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Blob GETs are redirected to storage; more hops than this is a loop.
const MAX_REDIRECTS: usize = 5;
const MAX_TOKEN_BODY_BYTES: u64 = 1024 * 1024;
const MAX_LIST_PAGE_BYTES: u64 = 8 * 1024 * 1024;
const CATALOG_PAGE_SIZE: u32 = 1000;
const MAX_PAGES: usize = 10_000;
const CATALOG_SCOPE: &str = "registry:catalog:*";

/// A client for one configured registry. Cheap to clone (the state is behind an `Arc`).
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    /// `cfg.url` with a trailing `/`, no query, no fragment.
    base: Url,
    http: reqwest::Client,
    credentials: RegistryCredentials,
    tokens: TokenCache,
    /// The registry challenged with `Basic` once: present credentials up front from then on.
    basic_challenged: AtomicBool,
    metrics: Arc<Metrics>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("name", &self.inner.name)
            .field("base", &self.inner.base.as_str())
            .finish_non_exhaustive()
    }
}

/// Records the request's duration when dropped, so body reads and early returns are counted too.
struct RequestTimer<'a> {
    inner: &'a Inner,
    op: Op,
    started: Instant,
}

impl Drop for RequestTimer<'_> {
    fn drop(&mut self) {
        self.inner
            .metrics
            .observe_registry(&self.inner.name, self.op.as_str(), self.started);
    }
}

/// A successful response and the timer of the request that produced it.
struct Exchange<'a> {
    response: Response,
    timer: RequestTimer<'a>,
}

impl RegistryClient {
    /// Build the client for `cfg`: TLS roots, timeouts, redirect policy. No I/O happens here.
    pub fn new(cfg: &RegistryConfig, metrics: Arc<Metrics>) -> Result<Self, RegistryError> {
        let base = base_url(&cfg.url)?;
        if cfg.insecure_skip_tls_verify {
            tracing::warn!(registry = %cfg.name, "TLS certificate verification is disabled for this registry");
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .redirect(redirect_policy())
            .danger_accept_invalid_certs(cfg.insecure_skip_tls_verify);
        if let Some(pem) = &cfg.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| RegistryError::Config(format!("caFile: {e}")))?;
            if certs.is_empty() {
                return Err(RegistryError::Config("caFile holds no certificate".into()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| RegistryError::Config(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                name: cfg.name.clone(),
                base,
                http,
                credentials: cfg.auth.clone(),
                tokens: TokenCache::default(),
                basic_challenged: AtomicBool::new(false),
                metrics,
            }),
        })
    }

    /// The configured registry name (metric label, log field).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// GET `/v2/<repo>/manifests/<ref>`; the digest is checked over the exact bytes against the requested
    /// digest and `Docker-Content-Digest` before the bytes are returned. Over [`MAX_MANIFEST_BYTES`] → `TooLarge`.
    pub async fn fetch_manifest(
        &self,
        repository: &str,
        reference: &Reference,
    ) -> Result<FetchedManifest, RegistryError> {
        let span = tracing::info_span!("registry_fetch", registry = %self.inner.name, op = "manifest",
            repository, reference = %reference);
        async {
            validate_repository(repository)?;
            let requested = match reference {
                Reference::Tag(tag) => {
                    validate_tag(tag)?;
                    None
                }
                Reference::Digest(d) => Some(d),
            };
            let url = self.v2_url(Some(repository), &["manifests", &reference.to_string()])?;
            let Exchange { response, timer } = self
                .get(
                    Op::Manifest,
                    &url,
                    Some(ACCEPT_MANIFESTS),
                    &pull_scope(repository),
                )
                .await?;
            let content_type = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let announced = announced_digest(response.headers())?;
            let bytes = read_limited(response, MAX_MANIFEST_BYTES).await?;
            drop(timer);
            let digest = self.counted(verify_digest(&bytes, requested, announced.as_ref()))?;
            Ok(FetchedManifest {
                bytes,
                digest,
                content_type,
            })
        }
        .instrument(span)
        .await
    }

    /// GET `/v2/<repo>/blobs/<digest>` (redirects to storage are followed), verify the digest, refuse more than
    /// `max_bytes`.
    pub async fn fetch_blob(
        &self,
        repository: &str,
        digest: &Digest,
        max_bytes: u64,
    ) -> Result<Bytes, RegistryError> {
        let span = tracing::info_span!("registry_fetch", registry = %self.inner.name, op = "blob",
            repository, reference = %digest);
        async {
            validate_repository(repository)?;
            let url = self.v2_url(Some(repository), &["blobs", &digest.to_string()])?;
            let Exchange { response, timer } = self
                .get(Op::Blob, &url, None, &pull_scope(repository))
                .await?;
            let announced = announced_digest(response.headers())?;
            let bytes = read_limited(response, max_bytes).await?;
            drop(timer);
            self.counted(verify_digest(&bytes, Some(digest), announced.as_ref()))?;
            Ok(bytes)
        }
        .instrument(span)
        .await
    }

    /// Every repository in `/v2/_catalog`, following `Link: <...>; rel="next"`.
    pub async fn catalog(&self) -> Result<Vec<String>, RegistryError> {
        #[derive(Deserialize)]
        struct Catalog {
            #[serde(default)]
            repositories: Option<Vec<String>>,
        }
        let span =
            tracing::info_span!("registry_list", registry = %self.inner.name, op = "catalog");
        async {
            let mut url = self.v2_url(None, &["_catalog"])?;
            url.query_pairs_mut()
                .append_pair("n", &CATALOG_PAGE_SIZE.to_string());
            self.paginate(Op::Catalog, url, CATALOG_SCOPE, |body| {
                let page: Catalog = serde_json::from_slice(body)
                    .map_err(|e| RegistryError::InvalidResponse(format!("catalog page: {e}")))?;
                Ok(page.repositories.unwrap_or_default())
            })
            .await
        }
        .instrument(span)
        .await
    }

    /// Every tag of `repository` from `/v2/<repo>/tags/list`, following pagination.
    pub async fn tags(&self, repository: &str) -> Result<Vec<String>, RegistryError> {
        #[derive(Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let span = tracing::info_span!("registry_list", registry = %self.inner.name, op = "tags",
            repository);
        async {
            validate_repository(repository)?;
            let url = self.v2_url(Some(repository), &["tags", "list"])?;
            self.paginate(Op::Tags, url, &pull_scope(repository), |body| {
                let page: TagList = serde_json::from_slice(body)
                    .map_err(|e| RegistryError::InvalidResponse(format!("tags page: {e}")))?;
                Ok(page.tags.unwrap_or_default())
            })
            .await
        }
        .instrument(span)
        .await
    }

    async fn paginate(
        &self,
        op: Op,
        first: Url,
        scope: &str,
        parse: impl Fn(&[u8]) -> Result<Vec<String>, RegistryError>,
    ) -> Result<Vec<String>, RegistryError> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut next = Some(first);
        while let Some(url) = next.take() {
            if seen.len() >= MAX_PAGES {
                return Err(RegistryError::InvalidResponse(format!(
                    "more than {MAX_PAGES} pages"
                )));
            }
            if !seen.insert(url.clone()) {
                return Err(RegistryError::InvalidResponse(
                    "pagination link repeats an earlier page".into(),
                ));
            }
            let Exchange { response, timer } = self.get(op, &url, Some(ACCEPT_JSON), scope).await?;
            let link = next_link(
                response
                    .headers()
                    .get_all(header::LINK)
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
            );
            let body = read_limited(response, MAX_LIST_PAGE_BYTES).await?;
            drop(timer);
            out.extend(parse(&body)?);
            next = link
                .map(|l| resolve_next(&self.inner.base, &l))
                .transpose()?;
        }
        Ok(out)
    }

    /// `base` + `v2` + the repository's components + `tail`, each pushed as a literal path segment.
    fn v2_url(&self, repository: Option<&str>, tail: &[&str]) -> Result<Url, RegistryError> {
        let mut url = self.inner.base.clone();
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|_| RegistryError::Config("registry URL cannot be a base URL".into()))?;
            segments.pop_if_empty().push("v2");
            if let Some(repo) = repository {
                segments.extend(repo.split('/'));
            }
            segments.extend(tail);
        }
        Ok(url)
    }

    /// One logical GET: presents cached credentials, answers at most one 401 challenge, maps failures.
    async fn get(
        &self,
        op: Op,
        url: &Url,
        accept: Option<&str>,
        scope: &str,
    ) -> Result<Exchange<'_>, RegistryError> {
        let mut auth = self.preemptive_auth(scope);
        let mut challenged = false;
        loop {
            let timer = self.timer(op);
            let mut request = self.inner.http.get(url.clone());
            if let Some(accept) = accept {
                request = request.header(header::ACCEPT, accept);
            }
            if let Some(auth) = &auth {
                request = request.header(header::AUTHORIZATION, auth.header_value()?);
            }
            let response = request.send().await.map_err(RegistryError::transport)?;
            let status = response.status();
            debug!(
                op = op.as_str(),
                status = status.as_u16(),
                "registry answered"
            );
            if status == StatusCode::UNAUTHORIZED && !challenged {
                challenged = true;
                if matches!(auth, Some(Auth::Bearer(_))) {
                    self.inner.tokens.remove(scope);
                }
                let challenges = auth::challenges(response.headers());
                let body = read_error_body(response).await;
                drop(timer);
                auth = Some(self.answer(op, &challenges, scope, &body).await?);
                continue;
            }
            if !status.is_success() {
                return Err(error_from(op, response).await);
            }
            return Ok(Exchange { response, timer });
        }
    }

    fn preemptive_auth(&self, scope: &str) -> Option<Auth> {
        if let Some(token) = self.inner.tokens.get(scope) {
            return Some(Auth::Bearer(token));
        }
        match &self.inner.credentials {
            RegistryCredentials::Basic { username, password }
                if self.inner.basic_challenged.load(Ordering::Relaxed) =>
            {
                Some(Auth::Basic {
                    username: username.clone(),
                    password: password.clone(),
                })
            }
            _ => None,
        }
    }

    /// Turn a 401's challenges into credentials for the retry: Bearer (token flow) wins over Basic.
    async fn answer(
        &self,
        op: Op,
        challenges: &[Challenge],
        scope: &str,
        body: &ErrorBody,
    ) -> Result<Auth, RegistryError> {
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            return Ok(Auth::Bearer(self.fetch_token(bearer, scope).await?));
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            return match &self.inner.credentials {
                RegistryCredentials::Basic { username, password } => {
                    debug!("registry asks for Basic authentication");
                    self.inner.basic_challenged.store(true, Ordering::Relaxed);
                    Ok(Auth::Basic {
                        username: username.clone(),
                        password: password.clone(),
                    })
                }
                RegistryCredentials::Anonymous => Err(RegistryError::Unauthorized {
                    message: "the registry requires Basic authentication and no credentials are \
                              configured"
                        .into(),
                }),
            };
        }
        Err(classify(op, StatusCode::UNAUTHORIZED, None, body))
    }

    /// GET the challenge's realm with `service` and `scope`, Basic credentials if configured; cache the token.
    async fn fetch_token(
        &self,
        challenge: &Challenge,
        scope: &str,
    ) -> Result<Secret, RegistryError> {
        let credentials = match &self.inner.credentials {
            RegistryCredentials::Basic { username, password } => Some(Auth::Basic {
                username: username.clone(),
                password: password.clone(),
            }),
            RegistryCredentials::Anonymous => None,
        };
        let url = auth::token_url(challenge, scope)?;
        if credentials.is_some() && !auth::may_send_credentials(&self.inner.base, &url) {
            return Err(RegistryError::InsecureRealm {
                realm: format!("{}{}", url.origin().ascii_serialization(), url.path()),
            });
        }
        debug!(realm = %url.origin().ascii_serialization(), "fetching a registry token");
        let timer = self.timer(Op::Token);
        let mut request = self.inner.http.get(url);
        if let Some(credentials) = &credentials {
            request = request.header(header::AUTHORIZATION, credentials.header_value()?);
        }
        let response = request.send().await.map_err(RegistryError::transport)?;
        if !response.status().is_success() {
            return Err(error_from(Op::Token, response).await);
        }
        let body = read_limited(response, MAX_TOKEN_BODY_BYTES).await?;
        drop(timer);
        let issued = auth::parse_token_response(&body).ok_or_else(|| {
            RegistryError::InvalidResponse("token response carries no token".into())
        })?;
        let token = issued.token.clone();
        self.inner.tokens.insert(scope, issued);
        Ok(token)
    }

    fn timer(&self, op: Op) -> RequestTimer<'_> {
        RequestTimer {
            inner: &self.inner,
            op,
            started: Instant::now(),
        }
    }

    /// Count digest mismatches where they are detected (SPEC §5: metric + hard failure).
    fn counted<T>(&self, result: Result<T, RegistryError>) -> Result<T, RegistryError> {
        if matches!(result, Err(RegistryError::DigestMismatch { .. })) {
            self.inner.metrics.digest_mismatches.inc();
        }
        result
    }
}

/// Normalise the configured base URL: http(s), a host, no credentials, a trailing `/`.
fn base_url(url: &Url) -> Result<Url, RegistryError> {
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(RegistryError::Config(format!(
            "registry URL must be http(s)://host[:port][/prefix], got scheme `{}`",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(RegistryError::Config(
            "registry URL must not carry credentials; use `auth`".into(),
        ));
    }
    let mut base = url.clone();
    base.set_query(None);
    base.set_fragment(None);
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    Ok(base)
}

/// Follow at most [`MAX_REDIRECTS`] hops, never from https down to plain http. (reqwest itself drops
/// `Authorization` when a redirect changes host or port.)
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else if attempt.url().scheme() != "https"
            && attempt.previous().iter().any(|u| u.scheme() == "https")
        {
            attempt.error("refusing a redirect from https to plain http")
        } else {
            attempt.follow()
        }
    })
}

fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}
