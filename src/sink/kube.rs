//! The cluster sink: raw `image.openshift.io/v1` requests through a `kube::Client` (SPEC §6).
//!
//! ImageStreamMapping is not in k8s-openapi, and the interesting part of every answer is its status code
//! and `Status` body, so requests are built by hand and every answer goes through [`classify_response`],
//! the one place where (status code, `Status`) becomes a [`SinkError`]. This module must not retry beyond
//! the single SPEC §6 retry after auto-creating a stream (the worker owns backoff; kube's own retry layer
//! is turned off), must not add `?dryRun=All`, and must not log tokens or request bodies.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tracing::Instrument;

use super::{
    SinkError, TagEventRef, mapping_target, validate_image_name, validate_namespace,
    validate_stream, validate_tag,
};
use crate::event::now_ms;
use crate::metrics::{Metrics, status_code_label};
use crate::openshift::{
    IMAGE_API_VERSION, Image, ImageStream, ImageStreamMapping, KIND_IMAGE, KIND_STATUS, Status,
    new_image_stream,
};

/// Discovery document of the image API group; also the prefix of every path this sink builds.
const IMAGE_API_PATH: &str = "/apis/image.openshift.io/v1";
const CONTENT_TYPE_JSON: &str = "application/json";
/// No cluster call this sink makes should take longer; a slower answer surfaces as `Transport`.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest server message kept in an error (a proxy may answer with a whole HTML page).
const MAX_MESSAGE_CHARS: usize = 512;
const REASON_ALREADY_EXISTS: &str = "AlreadyExists";
/// `details.kind` of a 404 for a missing namespace (admission), never auto-created.
const DETAILS_KIND_NAMESPACES: &str = "namespaces";
/// `details.kind` of a 404 for a missing stream on a live server (resource from the request info).
const DETAILS_KIND_MAPPINGS: &str = "imagestreammappings";
/// `details.kind` of the same 404 when the server has no request info (upstream unit tests).
const DETAILS_KIND_STREAMS: &str = "imagestreams";

/// The cluster calls this sink makes; each is a fixed metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterOp {
    GetStream,
    CreateMapping,
    CreateStream,
    CreateImage,
    Ping,
}

impl ClusterOp {
    /// The `op` label of `imagestream_ingest_cluster_request_duration_seconds`.
    pub fn label(self) -> &'static str {
        match self {
            Self::GetStream => "get_stream",
            Self::CreateMapping => "create_mapping",
            Self::CreateStream => "create_stream",
            Self::CreateImage => "create_image",
            Self::Ping => "ping",
        }
    }
}

/// Turn one cluster answer into success or a typed error (SPEC §6). `namespace`/`name` are what the
/// request was about (empty for cluster-scoped calls); `retry_after` is the parsed `Retry-After` header.
pub fn classify_response(
    op: ClusterOp,
    code: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    namespace: &str,
    name: &str,
) -> Result<(), SinkError> {
    if (200..300).contains(&code) {
        return Ok(());
    }
    let status: Option<Status> = serde_json::from_slice::<Status>(body)
        .ok()
        .filter(|s| s.kind.as_deref() == Some(KIND_STATUS));
    let message = error_message(code, status.as_ref(), body);
    let reason = status.as_ref().and_then(|s| s.reason.as_deref());
    let details = status.as_ref().and_then(|s| s.details.as_ref());
    let details_kind = details.and_then(|d| d.kind.as_deref());
    match code {
        404 if details_kind == Some(DETAILS_KIND_NAMESPACES) => Err(SinkError::NamespaceNotFound {
            namespace: details
                .and_then(|d| d.name.clone())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| namespace.to_string()),
        }),
        404 if op == ClusterOp::GetStream
            || (op == ClusterOp::CreateMapping
                && matches!(
                    details_kind,
                    Some(DETAILS_KIND_MAPPINGS | DETAILS_KIND_STREAMS)
                )) =>
        {
            Err(SinkError::StreamNotFound {
                namespace: namespace.to_string(),
                stream: name.to_string(),
            })
        }
        409 if op == ClusterOp::CreateStream => Ok(()),
        409 if op == ClusterOp::CreateImage && reason == Some(REASON_ALREADY_EXISTS) => Ok(()),
        409 => Err(SinkError::Conflict { message }),
        400 | 422 => Err(SinkError::Invalid {
            message,
            causes: details
                .map(|d| d.causes.iter().map(format_cause).collect())
                .unwrap_or_default(),
        }),
        401 => Err(SinkError::Unauthorized { message }),
        403 => Err(SinkError::Forbidden { message }),
        408 | 429 | 500..=599 => Err(SinkError::Unavailable {
            code,
            retry_after: retry_after.or_else(|| {
                details
                    .and_then(|d| d.retry_after_seconds)
                    .and_then(|s| u64::try_from(s).ok())
                    .filter(|s| *s > 0)
                    .map(Duration::from_secs)
            }),
            message,
        }),
        _ => Err(SinkError::UnexpectedResponse { code, message }),
    }
}

/// The server's `message`, else the start of a non-`Status` body, else the code's reason phrase.
fn error_message(code: u16, status: Option<&Status>, body: &[u8]) -> String {
    if let Some(m) = status
        .and_then(|s| s.message.as_deref())
        .filter(|m| !m.is_empty())
    {
        return m.to_string();
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if !text.is_empty() && status.is_none() {
        return text.chars().take(MAX_MESSAGE_CHARS).collect();
    }
    StatusCode::from_u16(code)
        .ok()
        .and_then(|c| c.canonical_reason())
        .unwrap_or("no message")
        .to_string()
}

fn format_cause(cause: &crate::openshift::StatusCause) -> String {
    let message = cause.message.as_deref().unwrap_or_default();
    match (cause.field.as_deref(), cause.reason.as_deref()) {
        (Some(field), _) if !field.is_empty() => format!("{field}: {message}"),
        (_, Some(reason)) if !reason.is_empty() => format!("{reason}: {message}"),
        _ => message.to_string(),
    }
}

/// `Retry-After` as delta-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// What came back from one request that got an HTTP answer.
struct Answer {
    code: u16,
    retry_after: Option<Duration>,
    body: Bytes,
}

/// Writes to a real (or emulated) cluster through a `kube::Client`.
pub struct KubeSink {
    client: kube::Client,
    metrics: Arc<Metrics>,
    /// Unix ms of the last HTTP answer of any status; 0 until the first one.
    last_answer_ms: AtomicI64,
}

impl KubeSink {
    /// A sink over an existing client (tests inject one; the daemon uses [`KubeSink::from_kubeconfig`]).
    pub fn new(client: kube::Client, metrics: Arc<Metrics>) -> Self {
        Self {
            client,
            metrics,
            last_answer_ms: AtomicI64::new(0),
        }
    }

    /// Client from `kubeconfig` when given, else in-cluster, then `$KUBECONFIG`, then `~/.kube/config`
    /// (SPEC §3). kube's retry layer is turned off: the worker retries with its own backoff and must see
    /// every 429/503 itself.
    pub async fn from_kubeconfig(
        kubeconfig: Option<&Path>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SinkError> {
        Self::with_read_timeout(kubeconfig, metrics, READ_TIMEOUT).await
    }

    /// [`KubeSink::from_kubeconfig`] with another read timeout (a request whose answer does not start
    /// within it fails as a retryable transport error).
    pub(crate) async fn with_read_timeout(
        kubeconfig: Option<&Path>,
        metrics: Arc<Metrics>,
        read_timeout: Duration,
    ) -> Result<Self, SinkError> {
        let mut config = load_config(kubeconfig).await?;
        config.default_retry = false;
        if config.read_timeout.is_none() {
            config.read_timeout = Some(read_timeout);
            config.reset_reader_on_write = true;
        }
        let client = kube::Client::try_from(config)
            .map_err(|e| SinkError::Config(format!("cannot build the cluster client: {e}")))?;
        Ok(Self::new(client, metrics))
    }

    /// Unix ms of the last time the cluster answered anything (for `/readyz`).
    pub fn last_answer_ms(&self) -> i64 {
        self.last_answer_ms.load(Ordering::Relaxed)
    }

    /// `GET …/imagestreams/{stream}` and its `status.tags[tag].items[0]`; 404 is `None`.
    pub async fn current_tag(
        &self,
        namespace: &str,
        stream: &str,
        tag: &str,
    ) -> Result<Option<TagEventRef>, SinkError> {
        validate_namespace(namespace)?;
        validate_stream(stream)?;
        validate_tag(tag)?;
        let path = format!("{IMAGE_API_PATH}/namespaces/{namespace}/imagestreams/{stream}");
        let op = ClusterOp::GetStream;
        let answer = self.send(op, Method::GET, &path, Vec::new()).await?;
        match classify_response(
            op,
            answer.code,
            answer.retry_after,
            &answer.body,
            namespace,
            stream,
        ) {
            Ok(()) => {}
            Err(SinkError::StreamNotFound { .. } | SinkError::NamespaceNotFound { .. }) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        let found: ImageStream =
            serde_json::from_slice(&answer.body).map_err(SinkError::Serialize)?;
        Ok(found.tag_head(tag).map(|event| TagEventRef {
            image: event.image.clone(),
            docker_image_reference: event.docker_image_reference.clone(),
        }))
    }

    /// `POST /apis/image.openshift.io/v1/images`; 409 `AlreadyExists` is success (images are immutable).
    pub async fn create_image(&self, image: &Image) -> Result<(), SinkError> {
        validate_image_name(&image.metadata.name)?;
        let mut standalone = image.clone();
        standalone.api_version = Some(IMAGE_API_VERSION.into());
        standalone.kind = Some(KIND_IMAGE.into());
        standalone.metadata.namespace = None;
        let body = serde_json::to_vec(&standalone).map_err(SinkError::Serialize)?;
        let path = format!("{IMAGE_API_PATH}/images");
        let op = ClusterOp::CreateImage;
        let answer = self.send(op, Method::POST, &path, body).await?;
        classify_response(
            op,
            answer.code,
            answer.retry_after,
            &answer.body,
            "",
            &image.metadata.name,
        )
    }

    /// `POST …/imagestreammappings`. A 404 for the stream with `create_stream` creates the stream (409 is
    /// fine: someone else did) and retries the mapping once (SPEC §6); a missing namespace is never created.
    pub async fn create_mapping(
        &self,
        mapping: &ImageStreamMapping,
        create_stream: bool,
    ) -> Result<(), SinkError> {
        let (namespace, stream, _) = mapping_target(mapping)?;
        let body = serde_json::to_vec(mapping).map_err(SinkError::Serialize)?;
        match self.post_mapping(namespace, stream, body.clone()).await {
            Err(SinkError::StreamNotFound { .. }) if create_stream => {
                self.create_stream(namespace, stream).await?;
                self.post_mapping(namespace, stream, body).await
            }
            other => other,
        }
    }

    /// `GET /apis/image.openshift.io/v1`: the API group is served and our credentials are accepted.
    pub async fn ping(&self) -> Result<(), SinkError> {
        let op = ClusterOp::Ping;
        let answer = self
            .send(op, Method::GET, IMAGE_API_PATH, Vec::new())
            .await?;
        classify_response(op, answer.code, answer.retry_after, &answer.body, "", "")
    }

    async fn post_mapping(
        &self,
        namespace: &str,
        stream: &str,
        body: Vec<u8>,
    ) -> Result<(), SinkError> {
        let path = format!("{IMAGE_API_PATH}/namespaces/{namespace}/imagestreammappings");
        let op = ClusterOp::CreateMapping;
        let answer = self.send(op, Method::POST, &path, body).await?;
        classify_response(
            op,
            answer.code,
            answer.retry_after,
            &answer.body,
            namespace,
            stream,
        )
    }

    async fn create_stream(&self, namespace: &str, stream: &str) -> Result<(), SinkError> {
        let body = serde_json::to_vec(&new_image_stream(namespace, stream))
            .map_err(SinkError::Serialize)?;
        let path = format!("{IMAGE_API_PATH}/namespaces/{namespace}/imagestreams");
        let op = ClusterOp::CreateStream;
        let answer = self.send(op, Method::POST, &path, body).await?;
        classify_response(
            op,
            answer.code,
            answer.retry_after,
            &answer.body,
            namespace,
            stream,
        )?;
        tracing::info!(namespace, stream, "image stream was missing; created it");
        Ok(())
    }

    /// One request: records the metric, remembers that the cluster answered, reads the whole body.
    async fn send(
        &self,
        op: ClusterOp,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Answer, SinkError> {
        let span = tracing::debug_span!("cluster_request", op = op.label(), %method, path);
        async {
            let mut builder = Request::builder()
                .method(method)
                .uri(path)
                .header(header::ACCEPT, CONTENT_TYPE_JSON);
            if !body.is_empty() {
                builder = builder.header(header::CONTENT_TYPE, CONTENT_TYPE_JSON);
            }
            let request = builder
                .body(kube::client::Body::from(body))
                .map_err(|e| SinkError::invalid(format!("cannot build request for {path}: {e}")))?;
            let started = Instant::now();
            let response = match self.client.send(request).await {
                Ok(r) => r,
                Err(e) => {
                    self.metrics.observe_cluster(op.label(), "error", started);
                    return Err(SinkError::Transport(e));
                }
            };
            let code = response.status().as_u16();
            // A cluster that only answers 429/5xx is not healthy for /readyz; any other answer (4xx
            // included: they are the server's decisions) proves it is up.
            if code < 500 && code != 429 {
                self.last_answer_ms.store(now_ms(), Ordering::Relaxed);
            }
            let retry_after = parse_retry_after(response.headers(), SystemTime::now());
            let collected = response.into_body().collect_bytes().await;
            self.metrics
                .observe_cluster(op.label(), status_code_label(code), started);
            let body = collected.map_err(SinkError::Transport)?;
            tracing::debug!(code, "cluster answered");
            Ok(Answer {
                code,
                retry_after,
                body,
            })
        }
        .instrument(span)
        .await
    }
}

/// The kube client configuration: the configured kubeconfig, or in-cluster, `$KUBECONFIG`, `~/.kube/config`.
async fn load_config(kubeconfig: Option<&Path>) -> Result<kube::Config, SinkError> {
    let options = KubeConfigOptions::default();
    if let Some(path) = kubeconfig {
        let parsed = Kubeconfig::read_from(path).map_err(|e| {
            SinkError::Config(format!("cluster.kubeconfig {}: {e}", path.display()))
        })?;
        return kube::Config::from_custom_kubeconfig(parsed, &options)
            .await
            .map_err(|e| SinkError::Config(format!("cluster.kubeconfig {}: {e}", path.display())));
    }
    match kube::Config::incluster() {
        Ok(config) => Ok(config),
        Err(in_cluster) => kube::Config::from_kubeconfig(&options).await.map_err(|local| {
            SinkError::Config(format!(
                "no cluster credentials: not in a cluster ({in_cluster}) and no usable kubeconfig \
                 ($KUBECONFIG or ~/.kube/config: {local}); set cluster.kubeconfig"
            ))
        }),
    }
}
