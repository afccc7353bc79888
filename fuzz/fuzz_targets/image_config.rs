//! An image config turned into `dockerImageMetadata` (SPEC §6): a config blob that parses goes through
//! `build_image` (digest re-check, `Created` normalisation, `Size`) with a manifest naming it, and the Image
//! serialises to JSON. None of it may panic, whatever timestamps, ports or labels the config holds.
#![no_main]

use imagestream_ingest::digest::Digest;
use imagestream_ingest::manifest::{
    self, Descriptor, ImageManifest, MEDIA_OCI_CONFIG, MEDIA_OCI_MANIFEST,
};
use imagestream_ingest::openshift::{BuildOptions, build_image};
use libfuzzer_sys::fuzz_target;

const MANIFEST: &[u8] = b"{\"schemaVersion\":2}";

fuzz_target!(|blob: &[u8]| {
    let Ok(config) = manifest::parse_config(blob) else {
        return;
    };
    let config_digest = Digest::sha256(blob);
    let layer = Descriptor {
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        digest: Digest::sha256(b"layer"),
        size: 7,
    };
    let m = ImageManifest {
        media_type: MEDIA_OCI_MANIFEST.into(),
        config: Descriptor {
            media_type: MEDIA_OCI_CONFIG.into(),
            digest: config_digest.clone(),
            size: blob.len() as u64,
        },
        layers: vec![layer.clone(), layer],
    };
    for store_manifests in [false, true] {
        let opts = BuildOptions {
            pull_host: "registry.example:5000",
            store_manifests,
        };
        let built = build_image(
            "team/app",
            &Digest::sha256(MANIFEST),
            MANIFEST,
            &m,
            blob,
            &config,
            &opts,
        );
        if let Ok(image) = built {
            let json = serde_json::to_vec(&image).expect("an Image serialises");
            assert!(!json.is_empty());
            let meta = image.docker_image_metadata.expect("metadata");
            assert_eq!(meta.id, config_digest.to_string());
            assert_eq!(meta.size, blob.len() as u64 + 7);
        } else {
            assert!(store_manifests, "only storing non-UTF-8 bytes may fail");
        }
    }
});
