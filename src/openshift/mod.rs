//! OpenShift side of the data flow: wire types and the pure builders of `Image` / `ImageStreamMapping` (SPEC §6).
//!
//! - [`types`]: `image.openshift.io/v1` objects and `metav1.Status`, tolerant when read back.
//! - [`docker10`]: `dockerImageMetadata` (`DockerImage`, `DockerConfig`) with upstream's key names.
//! - [`build`]: manifest + config → Image, list → Image, Image → ImageStreamMapping, tag validation.
//!
//! Nothing here talks to a cluster; the sinks do.

pub mod build;
pub mod docker10;
pub mod types;

pub use build::{
    BuildError, BuildOptions, build_image, build_index_image, build_mapping, image_reference,
    is_valid_tag, new_image_stream,
};
pub use docker10::{
    DOCKER_IMAGE_API_VERSION, DOCKER_IMAGE_KIND, DOCKER_IMAGE_METADATA_VERSION, DockerConfig,
    DockerImage, EmptyObject,
};
pub use types::{
    ANNOTATION_IMAGE_MANAGED, ANNOTATION_LAYERS_ORDER, IMAGE_API_VERSION, Image, ImageLayer,
    ImageManifestRef, ImageStream, ImageStreamMapping, ImageStreamStatus, KIND_IMAGE,
    KIND_IMAGE_STREAM, KIND_IMAGE_STREAM_MAPPING, KIND_STATUS, LAYERS_ORDER_ASCENDING,
    NamedTagEventList, ObjectMeta, Status, StatusCause, StatusDetails, TagEvent,
};

#[cfg(test)]
mod tests;
