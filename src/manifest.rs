//! Registry bytes → typed manifest facts (SPEC §5): image manifest, list/index, or a skip reason.
//!
//! Pure: the caller has already fetched the bytes and verified their digest (STYLE rule 4); nothing here does
//! I/O or re-serializes what was hashed. Digests inside manifests are validated with [`Digest::parse`].
//!
//! Small serde structs are used instead of `oci-spec`'s `ImageManifest`/`ImageIndex`: those types are OCI-only
//! (Docker schema2 and manifest-list media types, and a missing `mediaType`, have to be decided *before* picking
//! a shape), their `Arch`/`Os` enums and digest type would be converted back to strings anyway, and we need the
//! raw `schemaVersion` / `artifactType` / config media type to classify legacy and artifact manifests.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::digest::{Digest, DigestError};
use crate::openshift::DockerConfig;
use crate::openshift::docker10::null_default;

pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_DOCKER_SCHEMA1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const MEDIA_DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const MEDIA_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const MEDIA_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Accept header value for manifest GETs: the four supported types (schema2, list, OCI manifest, OCI index).
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Why a schema1 manifest is skipped.
pub const REASON_SCHEMA1: &str = "schema1 manifest (legacy)";
/// Why an OCI artifact is skipped.
pub const REASON_ARTIFACT: &str = "OCI artifact, not an image";

/// A media type without parameters, lower-cased: `application/json; charset=utf-8` → `application/json`.
fn essence(mt: &str) -> String {
    mt.split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// True when the media type is one of the four manifest types above (used by the notification parser).
pub fn is_manifest_media_type(mt: &str) -> bool {
    matches!(
        essence(mt).as_str(),
        MEDIA_DOCKER_MANIFEST | MEDIA_DOCKER_LIST | MEDIA_OCI_MANIFEST | MEDIA_OCI_INDEX
    )
}

fn is_schema1_media_type(mt: &str) -> bool {
    mt == MEDIA_DOCKER_SCHEMA1_SIGNED || mt == MEDIA_DOCKER_SCHEMA1
}

/// What a manifest turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    /// Docker schema2 or OCI image manifest.
    Image(ImageManifest),
    /// Docker manifest list or OCI image index.
    Index(ImageIndex),
    /// Recognised but not mapped (schema1, OCI artifacts); `reason` is logged and counted.
    Unsupported { reason: &'static str },
}

/// A content descriptor (config or layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// A Docker schema2 or OCI image manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageManifest {
    /// The effective media type (see [`parse_manifest`]); becomes `dockerImageManifestMediaType`.
    pub media_type: String,
    pub config: Descriptor,
    /// In manifest order, duplicates kept.
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    pub variant: Option<String>,
}

/// One child of a list / index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// `None` when absent or missing `architecture`/`os` (e.g. attestation manifests): such an entry cannot
    /// become a `dockerImageManifests` item, whose validation requires both.
    pub platform: Option<Platform>,
}

/// A Docker manifest list or OCI image index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageIndex {
    pub media_type: String,
    pub manifests: Vec<IndexEntry>,
}

/// Why registry bytes could not be understood. All permanent: the same bytes fail the same way.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not JSON")]
    NotJson(#[source] serde_json::Error),
    #[error("manifest is not a JSON object")]
    NotObject,
    #[error("manifest field `{field}` has the wrong type")]
    FieldType { field: &'static str },
    #[error("{what} has an unexpected shape at `{path}`")]
    Shape {
        what: &'static str,
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid digest in `{field}`")]
    BadDigest {
        field: String,
        #[source]
        source: DigestError,
    },
    #[error("unsupported manifest schemaVersion {0}")]
    SchemaVersion(u64),
    #[error("unknown manifest media type `{0}`")]
    UnknownMediaType(String),
    #[error(
        "cannot tell the manifest type: no mediaType, no usable Content-Type, neither config nor manifests"
    )]
    Undetermined,
    #[error("image config is not JSON")]
    ConfigNotJson(#[source] serde_json::Error),
    #[error("image config is not a JSON object")]
    ConfigNotObject,
}

impl ManifestError {
    /// Bad registry data never heals by retrying the same bytes.
    pub fn is_retryable(&self) -> bool {
        false
    }

    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::ConfigNotJson(_) | Self::ConfigNotObject => "bad_config",
            Self::Shape {
                what: "image config",
                ..
            } => "bad_config",
            _ => "bad_manifest",
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: String,
    digest: String,
    size: u64,
}

#[derive(Deserialize)]
struct RawManifest {
    config: RawDescriptor,
    layers: Vec<RawDescriptor>,
}

#[derive(Deserialize)]
struct RawPlatform {
    #[serde(default, deserialize_with = "null_default")]
    architecture: String,
    #[serde(default, deserialize_with = "null_default")]
    os: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIndexEntry {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    platform: Option<RawPlatform>,
}

#[derive(Deserialize)]
struct RawIndex {
    manifests: Vec<RawIndexEntry>,
}

/// `content_type` is the registry's Content-Type header. Media type is taken from the JSON `mediaType` field,
/// else content_type, else inferred (OCI manifest: has config+layers; OCI index: has manifests).
/// Schema1 (either v1 media type or schemaVersion 1) → Unsupported{reason: "schema1 manifest (legacy)"}.
/// OCI artifacts (an `artifactType`, or a config media type that is not an image config — docker or OCI config)
/// → Unsupported{reason: "OCI artifact, not an image"}.
///
/// A Content-Type is only used when it names a manifest type: registries and proxies also answer with
/// `application/json` or `application/octet-stream`, which say nothing about the shape.
pub fn parse_manifest(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
    let value: Value = serde_json::from_slice(bytes).map_err(ManifestError::NotJson)?;
    let Value::Object(obj) = value else {
        return Err(ManifestError::NotObject);
    };
    let schema_version = match obj.get("schemaVersion") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or(ManifestError::FieldType {
            field: "schemaVersion",
        })?),
    };
    let json_media_type = match obj.get("mediaType") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ManifestError::FieldType { field: "mediaType" }),
    };
    let header_media_type = content_type
        .map(essence)
        .filter(|mt| is_manifest_media_type(mt) || is_schema1_media_type(mt));

    if schema_version == Some(1) {
        return Ok(Manifest::Unsupported {
            reason: REASON_SCHEMA1,
        });
    }
    let media_type = match json_media_type.or(header_media_type) {
        Some(mt) => mt,
        None => infer_media_type(&obj)?,
    };
    if is_schema1_media_type(&media_type) {
        return Ok(Manifest::Unsupported {
            reason: REASON_SCHEMA1,
        });
    }
    if let Some(v) = schema_version.filter(|v| *v != 2) {
        return Err(ManifestError::SchemaVersion(v));
    }
    let is_artifact = obj
        .get("artifactType")
        .is_some_and(|v| !v.is_null() && v.as_str() != Some(""));
    match media_type.as_str() {
        MEDIA_DOCKER_MANIFEST | MEDIA_OCI_MANIFEST => {
            if is_artifact {
                return Ok(Manifest::Unsupported {
                    reason: REASON_ARTIFACT,
                });
            }
            parse_image_manifest(media_type, obj)
        }
        MEDIA_DOCKER_LIST | MEDIA_OCI_INDEX => {
            if is_artifact {
                return Ok(Manifest::Unsupported {
                    reason: REASON_ARTIFACT,
                });
            }
            parse_index(media_type, obj)
        }
        _ => Err(ManifestError::UnknownMediaType(
            media_type.chars().take(200).collect(),
        )),
    }
}

/// No `mediaType` and no usable Content-Type: OCI allows leaving `mediaType` out, so go by shape.
fn infer_media_type(obj: &Map<String, Value>) -> Result<String, ManifestError> {
    if obj.contains_key("manifests") {
        Ok(MEDIA_OCI_INDEX.to_string())
    } else if obj.contains_key("config") || obj.contains_key("layers") {
        Ok(MEDIA_OCI_MANIFEST.to_string())
    } else {
        Err(ManifestError::Undetermined)
    }
}

fn from_object<T: for<'de> Deserialize<'de>>(
    what: &'static str,
    obj: Map<String, Value>,
) -> Result<T, ManifestError> {
    serde_path_to_error::deserialize(Value::Object(obj)).map_err(|e| ManifestError::Shape {
        what,
        path: e.path().to_string(),
        source: e.into_inner(),
    })
}

fn parse_digest(field: impl FnOnce() -> String, digest: &str) -> Result<Digest, ManifestError> {
    Digest::parse(digest).map_err(|source| ManifestError::BadDigest {
        field: field(),
        source,
    })
}

fn descriptor(
    raw: RawDescriptor,
    field: impl FnOnce() -> String,
) -> Result<Descriptor, ManifestError> {
    Ok(Descriptor {
        digest: parse_digest(field, &raw.digest)?,
        media_type: raw.media_type,
        size: raw.size,
    })
}

fn parse_image_manifest(
    media_type: String,
    obj: Map<String, Value>,
) -> Result<Manifest, ManifestError> {
    let raw: RawManifest = from_object("manifest", obj)?;
    if raw.config.media_type != MEDIA_DOCKER_CONFIG && raw.config.media_type != MEDIA_OCI_CONFIG {
        return Ok(Manifest::Unsupported {
            reason: REASON_ARTIFACT,
        });
    }
    let config = descriptor(raw.config, || "config.digest".to_string())?;
    let layers = raw
        .layers
        .into_iter()
        .enumerate()
        .map(|(i, l)| descriptor(l, || format!("layers[{i}].digest")))
        .collect::<Result<_, _>>()?;
    Ok(Manifest::Image(ImageManifest {
        media_type,
        config,
        layers,
    }))
}

fn parse_index(media_type: String, obj: Map<String, Value>) -> Result<Manifest, ManifestError> {
    let raw: RawIndex = from_object("manifest list", obj)?;
    let manifests = raw
        .manifests
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let platform = e
                .platform
                .filter(|p| !p.architecture.is_empty() && !p.os.is_empty())
                .map(|p| Platform {
                    architecture: p.architecture,
                    os: p.os,
                    variant: p.variant.filter(|v| !v.is_empty()),
                });
            Ok(IndexEntry {
                digest: parse_digest(|| format!("manifests[{i}].digest"), &e.digest)?,
                media_type: e.media_type,
                size: e.size,
                platform,
            })
        })
        .collect::<Result<_, ManifestError>>()?;
    Ok(Manifest::Index(ImageIndex {
        media_type,
        manifests,
    }))
}

/// The image config fields OpenShift's docker10 `DockerImage` keeps (created, container, container_config,
/// config, docker_version, author, architecture, parent, comment); everything else in the blob is ignored.
/// Missing or `null` fields default, as Go's decoder would leave them zero.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ImageConfig {
    /// Raw RFC 3339 timestamp as written in the blob.
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub container: String,
    #[serde(default, deserialize_with = "null_default")]
    pub container_config: DockerConfig,
    #[serde(default)]
    pub config: Option<DockerConfig>,
    #[serde(default, deserialize_with = "null_default")]
    pub docker_version: String,
    #[serde(default, deserialize_with = "null_default")]
    pub author: String,
    #[serde(default, deserialize_with = "null_default")]
    pub architecture: String,
    #[serde(default, deserialize_with = "null_default")]
    pub parent: String,
    #[serde(default, deserialize_with = "null_default")]
    pub comment: String,
}

/// Parse an image config blob (Docker or OCI); a blob that is not a JSON object, or whose kept fields have the
/// wrong types, is an error.
pub fn parse_config(bytes: &[u8]) -> Result<ImageConfig, ManifestError> {
    let value: Value = serde_json::from_slice(bytes).map_err(ManifestError::ConfigNotJson)?;
    let Value::Object(obj) = value else {
        return Err(ManifestError::ConfigNotObject);
    };
    from_object("image config", obj)
}

#[cfg(test)]
mod tests;
