//! Registry manifest bytes (SPEC §5), with the first byte choosing the `Content-Type` the registry answered
//! with: `parse_manifest` never panics, and what it accepts as an image or an index is consistent.
#![no_main]

use imagestream_ingest::digest::Digest;
use imagestream_ingest::manifest::{
    self, MEDIA_DOCKER_CONFIG, MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST, MEDIA_OCI_CONFIG,
    MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST, Manifest,
};
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: &[Option<&str>] = &[
    None,
    Some(MEDIA_DOCKER_MANIFEST),
    Some(MEDIA_DOCKER_LIST),
    Some(MEDIA_OCI_MANIFEST),
    Some(MEDIA_OCI_INDEX),
    Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
    Some("application/json; charset=utf-8"),
    Some("application/octet-stream"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()];
    let round_trips = |d: &Digest| Digest::parse(&d.to_string()).as_ref() == Ok(d);
    match manifest::parse_manifest(bytes, content_type) {
        Ok(Manifest::Image(m)) => {
            assert!([MEDIA_DOCKER_MANIFEST, MEDIA_OCI_MANIFEST].contains(&m.media_type.as_str()));
            assert!(
                [MEDIA_DOCKER_CONFIG, MEDIA_OCI_CONFIG].contains(&m.config.media_type.as_str())
            );
            assert!(round_trips(&m.config.digest));
            assert!(m.layers.iter().all(|l| round_trips(&l.digest)));
        }
        Ok(Manifest::Index(i)) => {
            assert!([MEDIA_DOCKER_LIST, MEDIA_OCI_INDEX].contains(&i.media_type.as_str()));
            assert!(i.manifests.iter().all(|e| round_trips(&e.digest)));
        }
        Ok(Manifest::Unsupported { .. }) | Err(_) => {}
    }
});
