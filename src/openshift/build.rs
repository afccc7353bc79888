//! Build the `Image` and `ImageStreamMapping` the cluster should hold for a manifest (SPEC §6).
//!
//! Computes exactly what openshift-apiserver would derive from the manifest and config (layers in manifest
//! order, `Size` over unique layer digests, docker10 metadata), so the server has nothing to re-derive and never
//! reverses layers. Pure functions over already-verified bytes and parsed structs: no I/O, no clock.

use std::collections::{BTreeMap, HashSet};
use std::string::FromUtf8Error;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::docker10::{
    DOCKER_IMAGE_API_VERSION, DOCKER_IMAGE_KIND, DOCKER_IMAGE_METADATA_VERSION, DockerImage,
};
use super::types::{
    ANNOTATION_LAYERS_ORDER, IMAGE_API_VERSION, Image, ImageLayer, ImageManifestRef, ImageStream,
    ImageStreamMapping, KIND_IMAGE, KIND_IMAGE_STREAM, KIND_IMAGE_STREAM_MAPPING,
    LAYERS_ORDER_ASCENDING, ObjectMeta,
};
use crate::digest::{Digest, DigestError};
use crate::manifest::{ImageConfig, ImageIndex, ImageManifest};

/// Per-registry / per-cluster choices that shape the Image.
#[derive(Debug, Clone, Copy)]
pub struct BuildOptions<'a> {
    /// Host[:port] written into `dockerImageReference` (the registry's `pullHost`).
    pub pull_host: &'a str,
    /// Also send `dockerImageManifest` / `dockerImageConfig` as the exact bytes (`cluster.storeManifests`).
    pub store_manifests: bool,
}

/// Why an Image could not be built from bytes that were already fetched and parsed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The bytes do not hash to the digest the Image would be named by (a caller bug or corrupted data).
    #[error("{what} bytes do not match their digest")]
    DigestMismatch {
        what: &'static str,
        #[source]
        source: DigestError,
    },
    /// `storeManifests` sends the bytes as a JSON string, which must be UTF-8 to stay byte-exact.
    #[error("{what} is not UTF-8 and cannot be stored byte-exact")]
    NotUtf8 {
        what: &'static str,
        #[source]
        source: FromUtf8Error,
    },
}

impl BuildError {
    /// Same bytes, same failure.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// `"<pullHost>/<repo>@sha256:…"` (just `<repo>@…` when no pull host is known).
pub fn image_reference(pull_host: &str, repository: &str, digest: &Digest) -> String {
    if pull_host.is_empty() {
        format!("{repository}@{digest}")
    } else {
        format!("{pull_host}/{repository}@{digest}")
    }
}

fn verify(what: &'static str, digest: &Digest, bytes: &[u8]) -> Result<(), BuildError> {
    digest
        .verify(bytes)
        .map_err(|source| BuildError::DigestMismatch { what, source })
}

fn exact_string(what: &'static str, bytes: &[u8]) -> Result<String, BuildError> {
    String::from_utf8(bytes.to_vec()).map_err(|source| BuildError::NotUtf8 { what, source })
}

/// `metav1.Time` encoding: RFC 3339 in UTC, whole seconds. An unparseable value is left out, as the server
/// would fail to decode the config and store no timestamp.
fn normalize_created(raw: &str) -> Option<String> {
    let t = OffsetDateTime::parse(raw, &Rfc3339).ok()?;
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .ok()?;
    t.format(&Rfc3339).ok()
}

/// Config byte length + the sizes of the unique layer digests; a layer whose digest is the config's is not
/// counted again (the server's rule; first occurrence wins).
fn image_size(config_len: usize, config_digest: &Digest, manifest: &ImageManifest) -> u64 {
    let mut seen: HashSet<&Digest> = HashSet::from([config_digest]);
    let mut size = config_len as u64;
    for layer in &manifest.layers {
        if seen.insert(&layer.digest) {
            size = size.saturating_add(layer.size);
        }
    }
    size
}

/// SPEC §6 image: name = manifest digest; annotation dockerLayersOrder=ascending; layers in manifest order with
/// duplicates kept; dockerImageMetadata from config with Id = config digest and Size = config byte length + sum of
/// UNIQUE layer digests' sizes (skip a layer whose digest equals the config digest); dockerImageMetadataVersion "1.0";
/// dockerImageManifestMediaType always set; never set openshift.io/image.managed; with store_manifests also
/// dockerImageManifest/dockerImageConfig as the exact bytes (String::from_utf8 → error if not UTF-8).
///
/// Both digests are re-checked against the bytes, so the Image can never be named after bytes it does not
/// describe.
pub fn build_image(
    repository: &str,
    manifest_digest: &Digest,
    manifest_bytes: &[u8],
    manifest: &ImageManifest,
    config_bytes: &[u8],
    config: &ImageConfig,
    opts: &BuildOptions,
) -> Result<Image, BuildError> {
    verify("manifest", manifest_digest, manifest_bytes)?;
    verify("config", &manifest.config.digest, config_bytes)?;
    let metadata = DockerImage {
        kind: DOCKER_IMAGE_KIND.into(),
        api_version: DOCKER_IMAGE_API_VERSION.into(),
        id: manifest.config.digest.to_string(),
        parent: config.parent.clone(),
        comment: config.comment.clone(),
        created: config.created.as_deref().and_then(normalize_created),
        container: config.container.clone(),
        container_config: config.container_config.clone(),
        docker_version: config.docker_version.clone(),
        author: config.author.clone(),
        config: config.config.clone(),
        architecture: config.architecture.clone(),
        size: image_size(config_bytes.len(), &manifest.config.digest, manifest),
    };
    let (docker_image_manifest, docker_image_config) = if opts.store_manifests {
        (
            exact_string("manifest", manifest_bytes)?,
            exact_string("config", config_bytes)?,
        )
    } else {
        (String::new(), String::new())
    };
    Ok(Image {
        api_version: Some(IMAGE_API_VERSION.into()),
        kind: Some(KIND_IMAGE.into()),
        metadata: ObjectMeta {
            name: manifest_digest.to_string(),
            annotations: Some(BTreeMap::from([(
                ANNOTATION_LAYERS_ORDER.to_string(),
                LAYERS_ORDER_ASCENDING.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        docker_image_reference: image_reference(opts.pull_host, repository, manifest_digest),
        docker_image_metadata: Some(metadata),
        docker_image_metadata_version: DOCKER_IMAGE_METADATA_VERSION.into(),
        docker_image_manifest,
        docker_image_layers: manifest
            .layers
            .iter()
            .map(|l| ImageLayer {
                name: l.digest.to_string(),
                size: l.size,
                media_type: l.media_type.clone(),
            })
            .collect(),
        docker_image_manifest_media_type: manifest.media_type.clone(),
        docker_image_config,
        docker_image_manifests: Vec::new(),
    })
}

/// List/index image: no layers, dockerImageManifests one entry per child that has a platform (entries without a
/// platform, e.g. attestations, are omitted — the server's validation requires architecture and os),
/// dockerImageMetadata.Id = list digest.
///
/// `Created` is left out: the server stamps its own time on list images, and this core has no clock.
pub fn build_index_image(
    repository: &str,
    digest: &Digest,
    bytes: &[u8],
    index: &ImageIndex,
    opts: &BuildOptions,
) -> Result<Image, BuildError> {
    verify("manifest list", digest, bytes)?;
    let docker_image_manifest = if opts.store_manifests {
        exact_string("manifest list", bytes)?
    } else {
        String::new()
    };
    Ok(Image {
        api_version: Some(IMAGE_API_VERSION.into()),
        kind: Some(KIND_IMAGE.into()),
        metadata: ObjectMeta {
            name: digest.to_string(),
            ..ObjectMeta::default()
        },
        docker_image_reference: image_reference(opts.pull_host, repository, digest),
        docker_image_metadata: Some(DockerImage {
            kind: DOCKER_IMAGE_KIND.into(),
            api_version: DOCKER_IMAGE_API_VERSION.into(),
            id: digest.to_string(),
            ..DockerImage::default()
        }),
        docker_image_metadata_version: DOCKER_IMAGE_METADATA_VERSION.into(),
        docker_image_manifest,
        docker_image_layers: Vec::new(),
        docker_image_manifest_media_type: index.media_type.clone(),
        docker_image_config: String::new(),
        docker_image_manifests: index
            .manifests
            .iter()
            .filter_map(|e| {
                let p = e.platform.as_ref()?;
                Some(ImageManifestRef {
                    digest: e.digest.to_string(),
                    media_type: e.media_type.clone(),
                    manifest_size: e.size,
                    architecture: p.architecture.clone(),
                    os: p.os.clone(),
                    variant: p.variant.clone().unwrap_or_default(),
                })
            })
            .collect(),
    })
}

/// The mapping to POST to `/apis/image.openshift.io/v1/namespaces/{namespace}/imagestreammappings`.
/// The embedded image loses its own apiVersion/kind (SPEC §6 shape; the server ignores them there).
pub fn build_mapping(namespace: &str, stream: &str, tag: &str, image: Image) -> ImageStreamMapping {
    ImageStreamMapping {
        api_version: IMAGE_API_VERSION.into(),
        kind: KIND_IMAGE_STREAM_MAPPING.into(),
        metadata: ObjectMeta {
            name: stream.into(),
            namespace: Some(namespace.into()),
            ..ObjectMeta::default()
        },
        tag: tag.into(),
        image: Image {
            api_version: None,
            kind: None,
            ..image
        },
    }
}

/// Tag names the server would accept but we validate client-side: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
pub fn is_valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    let Some((first, rest)) = bytes.split_first() else {
        return false;
    };
    bytes.len() <= 128
        && (first.is_ascii_alphanumeric() || *first == b'_')
        && rest
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A new empty ImageStream object to POST when auto-creating a stream.
pub fn new_image_stream(namespace: &str, name: &str) -> ImageStream {
    ImageStream {
        api_version: IMAGE_API_VERSION.into(),
        kind: KIND_IMAGE_STREAM.into(),
        metadata: ObjectMeta {
            name: name.into(),
            namespace: Some(namespace.into()),
            ..ObjectMeta::default()
        },
        spec: None,
        status: None,
    }
}
