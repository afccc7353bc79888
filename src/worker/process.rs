//! One job, end to end: resolve the pushed tag at the registry, verify, build, compare, write (SPEC §1, §6).
//!
//! Level-triggered: the notification only names a reference; what is mapped is what the registry serves for
//! that tag *now*, so duplicates, replays and re-ordered events converge and never move a tag backwards.
//! This module owns no queue and no scheduling — [`Processor::process`] is the single step tests call.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::digest::Digest;
use crate::manifest::{self, ImageIndex, ImageManifest, Manifest};
use crate::mapping::{self, Target};
use crate::metrics::Metrics;
use crate::openshift::{self, BuildOptions, Image, ImageStreamMapping};
use crate::registry::{Reference, RegistryClient, RegistryError};
use crate::sink::{Sink, SinkError, TagEventRef};

/// Config blobs larger than this are refused (real configs are a few KiB).
pub const MAX_CONFIG_BYTES: u64 = 8 * 1024 * 1024;
/// A push event may arrive before the tag is readable: quick in-job retries on MANIFEST_UNKNOWN.
const MANIFEST_UNKNOWN_DELAYS: [Duration; 3] = [
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::from_millis(1000),
];
/// The tag resolved to another digest than the notification named: re-read it this often before accepting
/// the registry's current state (an old or replayed event then maps what the tag holds now).
const TAG_CATCH_UP_DELAYS: [Duration; 4] = [
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(800),
];
/// 409 from the mapping means the tag moved concurrently: re-read and re-decide this many times.
const CONFLICT_REDECIDES: usize = 3;

/// What to map: a tag of a repository of a configured registry, optionally pinned to a digest (`map`).
#[derive(Debug, Clone)]
pub struct Request {
    pub registry: String,
    pub repository: String,
    pub tag: String,
    /// Fetch exactly this digest instead of resolving the tag (`map repo:tag@digest`).
    pub pinned: Option<Digest>,
    /// The digest the notification named, if any: a hint, never the truth. distribution emits the push
    /// event before it moves the tag, so for a moment the tag can still resolve to the previous image;
    /// while it does, the tag is re-read briefly (see [`TAG_CATCH_UP_DELAYS`]).
    pub expected: Option<Digest>,
}

/// How a job ended when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Unchanged,
    Ignored {
        reason: &'static str,
        label: &'static str,
    },
    /// `cluster.dryRun` / `map --dry-run`: built and verified, nothing written.
    DryRun,
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Unchanged => "unchanged",
            Self::Ignored { .. } => "ignored",
            Self::DryRun => "dry_run",
        }
    }
}

/// The result of processing, with what was built (for `map` output and logs).
#[derive(Debug, Clone)]
pub struct Processed {
    pub outcome: Outcome,
    pub target: Option<Target>,
    pub digest: Option<Digest>,
    pub mapping: Option<ImageStreamMapping>,
}

impl Processed {
    fn ignored(reason: &'static str, label: &'static str) -> Self {
        Self {
            outcome: Outcome::Ignored { reason, label },
            target: None,
            digest: None,
            mapping: None,
        }
    }
}

/// Why a job failed; `is_retryable` decides between backoff and the dead-letter table.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("no registry named `{0}` is configured")]
    UnknownRegistry(String),
    #[error("registry: {0}")]
    Registry(#[from] RegistryError),
    #[error("manifest: {0}")]
    Manifest(#[from] manifest::ManifestError),
    #[error("building the image: {0}")]
    Build(#[from] openshift::BuildError),
    #[error("cluster: {0}")]
    Sink(#[from] SinkError),
    #[error("index child {digest} is not an image manifest")]
    ChildNotImage { digest: String },
    #[error("the tag kept changing concurrently (409 after {CONFLICT_REDECIDES} re-reads)")]
    KeptConflicting,
}

impl JobError {
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Registry(e) => e.is_retryable(),
            Self::Sink(e) => e.is_retryable(),
            Self::KeptConflicting => true,
            _ => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Registry(e) => e.retry_after(),
            Self::Sink(e) => e.retry_after(),
            _ => None,
        }
    }

    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::UnknownRegistry(_) => "unknown_registry",
            Self::Registry(e) => e.metric_label(),
            Self::Manifest(_) => "bad_manifest",
            Self::Build(_) => "build",
            Self::Sink(e) => e.metric_label(),
            Self::ChildNotImage { .. } => "bad_manifest",
            Self::KeptConflicting => "conflict",
        }
    }
}

/// What fetching and building produced (a short-lived return value, one per job: size does not matter).
#[allow(clippy::large_enum_variant)]
enum Built {
    /// Schema1 or an artifact: nothing to map.
    Unsupported(Processed),
    Ready {
        image: Image,
        children: Vec<Image>,
        digest: Digest,
    },
}

/// Everything one job needs: config, a client per registry, the sink.
pub struct Processor {
    pub config: Arc<Config>,
    pub registries: HashMap<String, RegistryClient>,
    pub sink: Arc<Sink>,
    pub metrics: Arc<Metrics>,
    pub dry_run: bool,
}

impl Processor {
    /// Build a client per configured registry and the configured sink.
    pub async fn new(
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        dry_run: bool,
    ) -> Result<Self, JobError> {
        let mut registries = HashMap::new();
        for r in &config.registries {
            registries.insert(r.name.clone(), RegistryClient::new(r, metrics.clone())?);
        }
        let sink = Arc::new(Sink::from_config(&config.cluster, metrics.clone()).await?);
        Ok(Self {
            dry_run: dry_run || config.cluster.dry_run,
            config,
            registries,
            sink,
            metrics,
        })
    }

    /// Where a request maps, or why it maps nowhere.
    pub fn target(&self, req: &Request) -> Result<Target, mapping::Unmapped> {
        mapping::resolve(
            &self.config.mappings,
            &req.registry,
            &req.repository,
            &req.tag,
        )
    }

    /// Process one request: the whole of SPEC §1 → §6 for one tag.
    pub async fn process(&self, req: &Request) -> Result<Processed, JobError> {
        let target = match self.target(req) {
            Ok(t) => t,
            Err(u) => return Ok(Processed::ignored(u.reason(), u.metric_label())),
        };
        let client = self
            .registries
            .get(&req.registry)
            .ok_or_else(|| JobError::UnknownRegistry(req.registry.clone()))?;
        let reference = match &req.pinned {
            Some(d) => Reference::Digest(d.clone()),
            None => Reference::Tag(req.tag.clone()),
        };
        // The stream's current tag is read while the registry is: one round trip less per job. Later
        // rounds (after a 409) re-read it.
        let (built, first_read) = tokio::join!(
            self.fetch_and_build(client, req, &reference, &target),
            self.sink
                .current_tag(&target.namespace, &target.stream, &req.tag),
        );
        let (image, children, digest) = match built? {
            Built::Unsupported(p) => return Ok(p),
            Built::Ready {
                image,
                children,
                digest,
            } => (image, children, digest),
        };
        let mut first_read = Some(first_read);
        let wanted = TagEventRef {
            image: image.metadata.name.clone(),
            docker_image_reference: image.docker_image_reference.clone(),
        };
        let mapping = openshift::build_mapping(&target.namespace, &target.stream, &req.tag, image);
        let mut processed = Processed {
            outcome: Outcome::Unchanged,
            target: Some(target.clone()),
            digest: Some(digest),
            mapping: Some(mapping),
        };
        let Some(mapping) = processed.mapping.as_ref() else {
            return Ok(processed);
        };

        for round in 0..=CONFLICT_REDECIDES {
            let current = match first_read.take() {
                Some(read) => read?,
                None => {
                    self.sink
                        .current_tag(&target.namespace, &target.stream, &req.tag)
                        .await?
                }
            };
            if current.as_ref() == Some(&wanted) {
                processed.outcome = Outcome::Unchanged;
                return Ok(processed);
            }
            if self.dry_run {
                processed.outcome = Outcome::DryRun;
                return Ok(processed);
            }
            if round == 0 {
                for child in &children {
                    self.sink.create_image(child).await?;
                }
            }
            match self
                .sink
                .create_mapping(mapping, target.create_stream)
                .await
            {
                Ok(()) => {
                    processed.outcome = Outcome::Created;
                    return Ok(processed);
                }
                Err(SinkError::Conflict { .. }) if round < CONFLICT_REDECIDES => continue,
                Err(SinkError::Conflict { .. }) => return Err(JobError::KeptConflicting),
                Err(e) => return Err(e.into()),
            }
        }
        Err(JobError::KeptConflicting)
    }

    /// Resolve the reference at the registry, verify, and build the Image (and child Images of a list).
    async fn fetch_and_build(
        &self,
        client: &RegistryClient,
        req: &Request,
        reference: &Reference,
        target: &Target,
    ) -> Result<Built, JobError> {
        let reference = reference.clone();
        let mut fetched = fetch_with_unknown_retries(client, &req.repository, &reference).await?;
        if let (Reference::Tag(_), Some(expected)) = (&reference, &req.expected) {
            for delay in TAG_CATCH_UP_DELAYS {
                if &fetched.digest == expected {
                    break;
                }
                tokio::time::sleep(delay).await;
                fetched = fetch_with_unknown_retries(client, &req.repository, &reference).await?;
            }
        }
        let pull_host = self
            .config
            .registry(&req.registry)
            .map(|r| r.pull_host.as_str())
            .unwrap_or_default();
        let opts = BuildOptions {
            pull_host,
            store_manifests: self.config.cluster.store_manifests,
        };
        let (image, children) =
            match manifest::parse_manifest(&fetched.bytes, fetched.content_type.as_deref())? {
                Manifest::Unsupported { reason } => {
                    let mut p = Processed::ignored(reason, unsupported_label(reason));
                    p.target = Some(target.clone());
                    p.digest = Some(fetched.digest);
                    return Ok(Built::Unsupported(p));
                }
                Manifest::Image(m) => {
                    let image = self
                        .build_image(
                            client,
                            &req.repository,
                            &fetched.digest,
                            &fetched.bytes,
                            &m,
                            &opts,
                        )
                        .await?;
                    (image, Vec::new())
                }
                Manifest::Index(index) => {
                    let children = if self.config.cluster.create_child_images {
                        self.build_children(client, &req.repository, &index, &opts)
                            .await?
                    } else {
                        Vec::new()
                    };
                    let image = openshift::build_index_image(
                        &req.repository,
                        &fetched.digest,
                        &fetched.bytes,
                        &index,
                        &opts,
                    )?;
                    (image, children)
                }
            };
        Ok(Built::Ready {
            image,
            children,
            digest: fetched.digest,
        })
    }

    async fn build_image(
        &self,
        client: &RegistryClient,
        repository: &str,
        digest: &Digest,
        bytes: &[u8],
        m: &ImageManifest,
        opts: &BuildOptions<'_>,
    ) -> Result<Image, JobError> {
        let config_bytes = client
            .fetch_blob(repository, &m.config.digest, MAX_CONFIG_BYTES)
            .await?;
        let config = manifest::parse_config(&config_bytes)?;
        Ok(openshift::build_image(
            repository,
            digest,
            bytes,
            m,
            &config_bytes,
            &config,
            opts,
        )?)
    }

    /// Child Images of a list, built like any image manifest and fetched by digest from the registry.
    async fn build_children(
        &self,
        client: &RegistryClient,
        repository: &str,
        index: &ImageIndex,
        opts: &BuildOptions<'_>,
    ) -> Result<Vec<Image>, JobError> {
        let mut out = Vec::new();
        for entry in index.manifests.iter().filter(|e| e.platform.is_some()) {
            let fetched = client
                .fetch_manifest(repository, &Reference::Digest(entry.digest.clone()))
                .await?;
            match manifest::parse_manifest(&fetched.bytes, fetched.content_type.as_deref())? {
                Manifest::Image(m) => {
                    out.push(
                        self.build_image(
                            client,
                            repository,
                            &fetched.digest,
                            &fetched.bytes,
                            &m,
                            opts,
                        )
                        .await?,
                    );
                }
                _ => {
                    return Err(JobError::ChildNotImage {
                        digest: entry.digest.to_string(),
                    });
                }
            }
        }
        Ok(out)
    }
}

fn unsupported_label(reason: &str) -> &'static str {
    if reason.contains("schema1") {
        "schema1"
    } else {
        "artifact"
    }
}

async fn fetch_with_unknown_retries(
    client: &RegistryClient,
    repository: &str,
    reference: &Reference,
) -> Result<crate::registry::FetchedManifest, JobError> {
    let mut delays = MANIFEST_UNKNOWN_DELAYS.iter();
    loop {
        match client.fetch_manifest(repository, reference).await {
            Err(e) if e.is_manifest_unknown() => match delays.next() {
                Some(d) => tokio::time::sleep(*d).await,
                None => return Err(e.into()),
            },
            other => return other.map_err(JobError::from),
        }
    }
}
