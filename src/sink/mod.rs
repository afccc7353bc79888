//! Where built ImageStreamMappings go (SPEC §6): the cluster ([`KubeSink`]) or a directory of JSON files
//! ([`DirectorySink`]), behind one [`Sink`] with one typed error, [`SinkError`].
//!
//! The worker decides (`unchanged`, dry run, re-decide on 409); a sink only reads and writes. A sink never
//! retries on its own except the one SPEC §6 retry after auto-creating a missing stream, never adds
//! `?dryRun=All` (upstream writes mappings for real with it), and never logs credentials. Names are
//! validated here, before they become a URL path or a file path.

pub mod directory;
pub mod kube;

use std::sync::Arc;
use std::time::Duration;

pub use self::directory::DirectorySink;
pub use self::kube::{ClusterOp, KubeSink, classify_response};

use crate::config::{ClusterConfig, SinkKind};
use crate::metrics::Metrics;
use crate::openshift::{Image, ImageStreamMapping, is_valid_tag};

/// Longest namespace name (a DNS-1123 label).
const MAX_NAMESPACE_LEN: usize = 63;
/// Longest stream or image name accepted in a path segment (the API server's object name limit).
const MAX_NAME_LEN: usize = 253;

/// Newest tag event of a tag, as compared for the `unchanged` decision (SPEC §1/§6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagEventRef {
    pub image: String,
    pub docker_image_reference: String,
}

/// Why a sink call failed. The variant, not the text, drives the worker's decision.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// 404 with `details.kind: namespaces`: never auto-created (SPEC §6).
    #[error("namespace `{namespace}` does not exist")]
    NamespaceNotFound { namespace: String },
    /// 404 with `details.kind: imagestreammappings`: the stream is missing.
    #[error("image stream `{namespace}/{stream}` does not exist")]
    StreamNotFound { namespace: String, stream: String },
    /// 409: the tag changed concurrently; re-read and re-decide.
    #[error("conflict: {message}")]
    Conflict { message: String },
    /// 422 (or a name rejected client-side): bad data or a bug; dead-letter with the causes.
    #[error("invalid: {message}{}", format_causes(.causes))]
    Invalid {
        message: String,
        causes: Vec<String>,
    },
    #[error("unauthorized: {message}")]
    Unauthorized { message: String },
    #[error("forbidden: {message}")]
    Forbidden { message: String },
    /// 429 or 5xx: back off (honouring `Retry-After`) and retry.
    #[error("cluster unavailable (HTTP {code}): {message}")]
    Unavailable {
        code: u16,
        retry_after: Option<Duration>,
        message: String,
    },
    /// Connection refused, reset, timed out: no HTTP answer at all.
    #[error("cannot reach the cluster: {0}")]
    Transport(#[source] ::kube::Error),
    #[error("unexpected answer from the cluster (HTTP {code}): {message}")]
    UnexpectedResponse { code: u16, message: String },
    #[error("directory sink: {0}")]
    Io(#[source] std::io::Error),
    #[error("cluster configuration: {0}")]
    Config(String),
    #[error("JSON: {0}")]
    Serialize(#[source] serde_json::Error),
}

fn format_causes(causes: &[String]) -> String {
    if causes.is_empty() {
        String::new()
    } else {
        format!(" ({})", causes.join("; "))
    }
}

impl SinkError {
    /// Worth retrying with backoff: a concurrent change, an overloaded/unavailable server, no answer.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Conflict { .. } | Self::Unavailable { .. } | Self::Transport(_)
        )
    }

    /// The server's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A label from a closed set, for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::NamespaceNotFound { .. } => "namespace_not_found",
            Self::StreamNotFound { .. } => "stream_not_found",
            Self::Conflict { .. } => "conflict",
            Self::Invalid { .. } => "invalid",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Forbidden { .. } => "forbidden",
            Self::Unavailable { .. } => "unavailable",
            Self::Transport(_) => "transport",
            Self::UnexpectedResponse { .. } => "unexpected_response",
            Self::Io(_) => "io",
            Self::Config(_) => "config",
            Self::Serialize(_) => "serialize",
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid {
            message: message.into(),
            causes: Vec::new(),
        }
    }
}

/// The configured sink.
pub enum Sink {
    Kube(KubeSink),
    Directory(DirectorySink),
}

impl Sink {
    /// Build the sink `cluster.sink` names. The kube sink reads its kubeconfig here (no request is made).
    pub async fn from_config(
        cfg: &ClusterConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Sink, SinkError> {
        match cfg.sink {
            SinkKind::Kube => Ok(Sink::Kube(
                KubeSink::from_kubeconfig(cfg.kubeconfig.as_deref(), metrics).await?,
            )),
            SinkKind::Directory => Ok(Sink::Directory(DirectorySink::new(cfg.directory.clone()))),
        }
    }

    /// `items[0]` of `status.tags[tag]`; `None` when the stream or the tag does not exist.
    pub async fn current_tag(
        &self,
        namespace: &str,
        stream: &str,
        tag: &str,
    ) -> Result<Option<TagEventRef>, SinkError> {
        match self {
            Sink::Kube(k) => k.current_tag(namespace, stream, tag).await,
            Sink::Directory(d) => d.current_tag(namespace, stream, tag).await,
        }
    }

    /// Create a cluster-scoped Image; an existing one is success (images are immutable once created).
    pub async fn create_image(&self, image: &Image) -> Result<(), SinkError> {
        match self {
            Sink::Kube(k) => k.create_image(image).await,
            Sink::Directory(d) => d.create_image(image).await,
        }
    }

    /// Write the mapping. On a missing stream and `create_stream`, create it and retry the mapping once.
    pub async fn create_mapping(
        &self,
        mapping: &ImageStreamMapping,
        create_stream: bool,
    ) -> Result<(), SinkError> {
        match self {
            Sink::Kube(k) => k.create_mapping(mapping, create_stream).await,
            Sink::Directory(d) => d.create_mapping(mapping).await,
        }
    }

    /// A cheap call that proves the cluster answers (directory: the directory is writable).
    pub async fn ping(&self) -> Result<(), SinkError> {
        match self {
            Sink::Kube(k) => k.ping().await,
            Sink::Directory(d) => d.ping().await,
        }
    }

    /// Unix ms of the last time the cluster answered any HTTP response (for `/readyz`); directory: now.
    pub fn last_answer_ms(&self) -> i64 {
        match self {
            Sink::Kube(k) => k.last_answer_ms(),
            Sink::Directory(_) => crate::event::now_ms(),
        }
    }
}

/// A namespace must be a DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn validate_namespace(namespace: &str) -> Result<(), SinkError> {
    let b = namespace.as_bytes();
    let edge_ok = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ok = !b.is_empty()
        && b.len() <= MAX_NAMESPACE_LEN
        && edge_ok(b.first())
        && edge_ok(b.last())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    if ok {
        Ok(())
    } else {
        Err(SinkError::invalid(format!(
            "namespace `{}` is not a DNS-1123 label",
            namespace.escape_debug()
        )))
    }
}

/// A stream name must be safe as one path segment: not `.`/`..`, no `/` or `%`. Only `[A-Za-z0-9._-]` is
/// accepted, a superset of what the server allows for ImageStream names, so nothing needs escaping.
pub fn validate_stream(stream: &str) -> Result<(), SinkError> {
    if is_safe_segment(stream, |c| {
        c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-')
    }) {
        Ok(())
    } else {
        Err(SinkError::invalid(format!(
            "image stream name `{}` is not a safe path segment",
            stream.escape_debug()
        )))
    }
}

/// Tags follow SPEC §6 (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`); the server itself only checks non-empty.
pub fn validate_tag(tag: &str) -> Result<(), SinkError> {
    if is_valid_tag(tag) {
        Ok(())
    } else {
        Err(SinkError::invalid(format!(
            "tag `{}` does not match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}",
            tag.escape_debug()
        )))
    }
}

/// An image name (a digest, `sha256:<hex>`) as a path segment: `[A-Za-z0-9:._+-]`, not `.`/`..`.
pub fn validate_image_name(name: &str) -> Result<(), SinkError> {
    let allowed =
        |c: u8| c.is_ascii_alphanumeric() || matches!(c, b':' | b'.' | b'_' | b'+' | b'-');
    if is_safe_segment(name, allowed) {
        Ok(())
    } else {
        Err(SinkError::invalid(format!(
            "image name `{}` is not a safe path segment",
            name.escape_debug()
        )))
    }
}

fn is_safe_segment(s: &str, allowed: impl Fn(u8) -> bool) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME_LEN && s != "." && s != ".." && s.bytes().all(allowed)
}

/// Namespace, stream and tag of a mapping, validated.
fn mapping_target(mapping: &ImageStreamMapping) -> Result<(&str, &str, &str), SinkError> {
    let namespace = mapping
        .metadata
        .namespace
        .as_deref()
        .ok_or_else(|| SinkError::invalid("the mapping has no metadata.namespace"))?;
    validate_namespace(namespace)?;
    validate_stream(&mapping.metadata.name)?;
    validate_tag(&mapping.tag)?;
    Ok((namespace, &mapping.metadata.name, &mapping.tag))
}

#[cfg(test)]
mod tests;
