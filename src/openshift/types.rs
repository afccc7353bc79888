//! `image.openshift.io/v1` wire types (Image, ImageStreamMapping, ImageStream) and `metav1.Status`.
//!
//! Serialization matches what openshift-apiserver expects (camelCase keys, empty fields left out, SPEC §6).
//! Deserialization is tolerant — unknown keys are ignored, missing or `null` fields default — because the
//! same types read objects back from the server and from the emulator. Plain data: no I/O, no HTTP.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::docker10::{DockerImage, null_default};

/// `apiVersion` of every image.openshift.io object we send.
pub const IMAGE_API_VERSION: &str = "image.openshift.io/v1";
pub const KIND_IMAGE: &str = "Image";
pub const KIND_IMAGE_STREAM: &str = "ImageStream";
pub const KIND_IMAGE_STREAM_MAPPING: &str = "ImageStreamMapping";
pub const KIND_STATUS: &str = "Status";
/// Without it the server reverses manifest-order layers when it parses a manifest (SPEC §6).
pub const ANNOTATION_LAYERS_ORDER: &str = "image.openshift.io/dockerLayersOrder";
pub const LAYERS_ORDER_ASCENDING: &str = "ascending";
/// Never set by this daemon: it makes the server rewrite tag references to the internal registry (SPEC §6).
pub const ANNOTATION_IMAGE_MANAGED: &str = "openshift.io/image.managed";

/// `metav1.ObjectMeta`, reduced to what this daemon and the cluster emulator read or write.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// `image.openshift.io/v1` Image. Cluster-scoped; named by the manifest digest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// Set on a standalone Image (POST /images); left out when embedded in a mapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `<pullHost>/<repository>@<digest>`: where clients pull this image from.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub docker_image_reference: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_image_metadata: Option<DockerImage>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub docker_image_metadata_version: String,
    /// The exact manifest bytes (only with `storeManifests`).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub docker_image_manifest: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub docker_image_layers: Vec<ImageLayer>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub docker_image_manifest_media_type: String,
    /// The exact config blob bytes (only with `storeManifests`, image manifests only).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub docker_image_config: String,
    /// Children of a manifest list / index; never together with layers (server validation).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub docker_image_manifests: Vec<ImageManifestRef>,
}

/// One `dockerImageLayers` entry: descriptor digest, descriptor size, media type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageLayer {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub media_type: String,
}

/// One `dockerImageManifests` entry: a child of a manifest list / index with its platform.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifestRef {
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub media_type: String,
    #[serde(default)]
    pub manifest_size: u64,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub variant: String,
}

/// `image.openshift.io/v1` ImageStreamMapping: `metadata.name` is the stream, `tag` the tag to point.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageStreamMapping {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub tag: String,
    #[serde(default)]
    pub image: Image,
}

/// `image.openshift.io/v1` ImageStream; `spec` is kept opaque (this daemon never writes spec tags).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageStream {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ImageStreamStatus>,
}

impl ImageStream {
    /// `status.tags[tag].items[0]`: what the tag points at now (the SPEC §6 `unchanged` check).
    pub fn tag_head(&self, tag: &str) -> Option<&TagEvent> {
        self.status
            .as_ref()?
            .tags
            .iter()
            .find(|t| t.tag == tag)?
            .items
            .first()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageStreamStatus {
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub docker_image_repository: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_docker_image_repository: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tags: Vec<NamedTagEventList>,
}

/// The history of one tag, newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamedTagEventList {
    #[serde(default)]
    pub tag: String,
    #[serde(default, deserialize_with = "null_default")]
    pub items: Vec<TagEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagEvent {
    #[serde(default, deserialize_with = "null_default")]
    pub created: String,
    #[serde(default)]
    pub docker_image_reference: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub generation: i64,
}

/// `metav1.Status`: the body of every error answer, and of the 201 a mapping create returns (SPEC §6).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    /// `Success` or `Failure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Machine-readable: `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `Forbidden`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
}

impl Status {
    /// `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":<code>}`.
    pub fn success(code: i32) -> Self {
        Self {
            status: Some("Success".into()),
            code: Some(code),
            ..Self::bare()
        }
    }

    /// A `Failure` status with the given HTTP code, reason and message (add `details` as needed).
    pub fn failure(code: i32, reason: &str, message: impl Into<String>) -> Self {
        Self {
            status: Some("Failure".into()),
            code: Some(code),
            reason: Some(reason.into()),
            message: Some(message.into()),
            ..Self::bare()
        }
    }

    fn bare() -> Self {
        Self {
            kind: Some(KIND_STATUS.into()),
            api_version: Some("v1".into()),
            metadata: Some(serde_json::Value::Object(serde_json::Map::new())),
            ..Self::default()
        }
    }
}

/// Which object a `Status` is about; `kind` tells a missing stream (`imagestreammappings`) from a missing
/// namespace (`namespaces`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub causes: Vec<StatusCause>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<i32>,
}

/// One validation cause of a 422 (`field` is the JSON path, e.g. `image.dockerImageReference`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusCause {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}
