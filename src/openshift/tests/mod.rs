//! Tests for the OpenShift builders and wire types, over the project's fixtures (fixtures/manifests/).
//!
//! - `build`: manifest + config → Image, lists → Image, size arithmetic, digest and UTF-8 checks.
//! - `wire`: JSON key names, round trips, reading server objects back, Status, tag validation.

use serde_json::{Value, json};

use super::*;
use crate::digest::Digest;
use crate::manifest::{self, Descriptor, ImageIndex, ImageManifest, Manifest};

const DOCKER_SCHEMA2: &[u8] = include_bytes!("../../../fixtures/manifests/docker-schema2.json");
const DOCKER_CONFIG: &[u8] = include_bytes!("../../../fixtures/manifests/docker-config.json");
const DOCKER_LIST: &[u8] = include_bytes!("../../../fixtures/manifests/docker-manifest-list.json");
const OCI_MANIFEST: &[u8] = include_bytes!("../../../fixtures/manifests/oci-manifest.json");
const OCI_CONFIG: &[u8] = include_bytes!("../../../fixtures/manifests/oci-config.json");
const OCI_INDEX: &[u8] = include_bytes!("../../../fixtures/manifests/oci-index.json");

const HOST: &str = "registry.corp.example:5000";
const REPO: &str = "team-a/app";

fn opts(store_manifests: bool) -> BuildOptions<'static> {
    BuildOptions {
        pull_host: HOST,
        store_manifests,
    }
}

fn parsed_image(bytes: &[u8]) -> ImageManifest {
    match manifest::parse_manifest(bytes, None).unwrap() {
        Manifest::Image(m) => m,
        other => panic!("{other:?}"),
    }
}

fn parsed_index(bytes: &[u8]) -> ImageIndex {
    match manifest::parse_manifest(bytes, None).unwrap() {
        Manifest::Index(i) => i,
        other => panic!("{other:?}"),
    }
}

fn build(manifest_bytes: &[u8], config_bytes: &[u8], store: bool) -> Image {
    let m = parsed_image(manifest_bytes);
    let c = manifest::parse_config(config_bytes).unwrap();
    build_image(
        REPO,
        &Digest::sha256(manifest_bytes),
        manifest_bytes,
        &m,
        config_bytes,
        &c,
        &opts(store),
    )
    .unwrap()
}

fn build_list(bytes: &[u8], store: bool) -> Image {
    build_index_image(
        REPO,
        &Digest::sha256(bytes),
        bytes,
        &parsed_index(bytes),
        &opts(store),
    )
    .unwrap()
}

mod build;
mod wire;
