//! Property tests of the pure parsers that face hostile bytes (SPEC §4, §5, §3): notification bodies,
//! manifests, image configs, digests and the config YAML never panic on any input, and whatever they accept
//! keeps the invariants the rest of the daemon relies on (valid repository, tag and digest in every push).
//!
//! Inputs are arbitrary bytes and the project's own fixtures (`fixtures/notifications`, `fixtures/manifests`)
//! mutated structurally and byte-wise. Bounded (a few hundred cases per property) so CI runs it on every
//! change; the cargo-fuzz targets in `fuzz/` explore the same entry points open-endedly.

#[path = "properties/mutate.rs"]
mod mutate;

use std::cell::Cell;
use std::path::Path;

use imagestream_ingest::config::{Config, SourceType};
use imagestream_ingest::digest::{Algorithm, Digest};
use imagestream_ingest::event::Notice;
use imagestream_ingest::manifest::{
    self, MEDIA_DOCKER_CONFIG, MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST, MEDIA_OCI_CONFIG,
    MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST, Manifest,
};
use imagestream_ingest::mapping::is_valid_tag;
use imagestream_ingest::registry::validate_repository;
use imagestream_ingest::sources::{self, Origin, RequestHeaders};
use mutate::{Edit, apply_bytes, apply_edits, byte_edits, json_edits, json_value};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::Value;

const ORIGIN: Origin<'static> = Origin {
    source: "src",
    registry: "reg",
    received_at_ms: 1,
};

const NOTIFICATIONS: &[&[u8]] = &[
    include_bytes!("../fixtures/notifications/push-docker-schema2-tagged.json"),
    include_bytes!("../fixtures/notifications/push-oci-manifest-tagged.json"),
    include_bytes!("../fixtures/notifications/push-docker-manifest-list-tagged.json"),
    include_bytes!("../fixtures/notifications/push-oci-index-tagged.json"),
    include_bytes!("../fixtures/notifications/push-by-digest.json"),
    include_bytes!("../fixtures/notifications/push-blob-layer.json"),
    include_bytes!("../fixtures/notifications/pull-manifest.json"),
    include_bytes!("../fixtures/notifications/mount-blob.json"),
    include_bytes!("../fixtures/notifications/delete-tag.json"),
    include_bytes!("../fixtures/notifications/delete-manifest-by-digest.json"),
    include_bytes!("../fixtures/notifications/push-sequence-of-an-oci-image.json"),
    include_bytes!("../fixtures/notifications/empty-envelope.json"),
];

const MANIFESTS: &[&[u8]] = &[
    include_bytes!("../fixtures/manifests/docker-schema2.json"),
    include_bytes!("../fixtures/manifests/docker-manifest-list.json"),
    include_bytes!("../fixtures/manifests/oci-manifest.json"),
    include_bytes!("../fixtures/manifests/oci-index.json"),
    include_bytes!("../fixtures/manifests/oci-artifact-helm.json"),
    include_bytes!("../fixtures/manifests/oci-artifact-type.json"),
    include_bytes!("../fixtures/manifests/schema1-signed.json"),
    include_bytes!("../fixtures/manifests/schema1-unsigned.json"),
];

const CONFIGS: &[&[u8]] = &[
    include_bytes!("../fixtures/manifests/docker-config.json"),
    include_bytes!("../fixtures/manifests/oci-config.json"),
];

const CONTENT_TYPES: &[Option<&str>] = &[
    None,
    Some(MEDIA_DOCKER_MANIFEST),
    Some(MEDIA_DOCKER_LIST),
    Some(MEDIA_OCI_MANIFEST),
    Some(MEDIA_OCI_INDEX),
    Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
    Some("application/json; charset=utf-8"),
    Some("application/octet-stream"),
    Some(""),
    Some("APPLICATION/VND.OCI.IMAGE.MANIFEST.V1+JSON; x=y"),
];

thread_local! {
    /// Pushes produced on this thread: a property over mutated envelopes that never yields a push proves
    /// nothing about pushes.
    static PUSHES_SEEN: Cell<usize> = const { Cell::new(0) };
}

/// The invariants every notice of a distribution body must keep, whatever the body was.
fn check_notices(notices: &[Notice]) -> Result<(), TestCaseError> {
    for n in notices {
        if let Notice::Push(p) = n {
            PUSHES_SEEN.set(PUSHES_SEEN.get() + 1);
            prop_assert!(
                validate_repository(&p.repository).is_ok(),
                "repository {:?}",
                p.repository
            );
            prop_assert!(is_valid_tag(&p.tag), "tag {:?}", p.tag);
            if let Some(d) = &p.digest {
                prop_assert!(Digest::parse(d).is_ok(), "digest {d:?}");
            }
            prop_assert_eq!(&p.registry, "reg", "registry comes from the configuration");
            prop_assert_eq!(&p.source, "src");
            prop_assert!(!p.event_id.is_empty());
            if let Some(mt) = &p.media_type {
                prop_assert!(manifest::is_manifest_media_type(mt), "media type {mt:?}");
            }
        }
    }
    Ok(())
}

fn parse_notification(body: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(notices) = sources::parse(SourceType::Distribution, ORIGIN, body) {
        prop_assert!(
            notices.iter().all(|n| match n {
                Notice::Push(p) => p.media_type.is_some(),
                _ => true,
            }),
            "a distribution push always names its manifest media type"
        );
        check_notices(&notices)?;
    }
    Ok(())
}

/// Headers the header-reading formats (GitHub, CloudEvents binary mode) look at.
fn request_headers() -> impl Strategy<Value = RequestHeaders> {
    let pair = (
        prop::sample::select(
            &[
                "x-github-event",
                "ce-type",
                "ce-source",
                "ce-id",
                "content-type",
            ][..],
        ),
        prop_oneof![
            prop::sample::select(
                &[
                    "package",
                    "registry_package",
                    "push",
                    "harbor.artifact.pushed",
                    "application/json"
                ][..]
            )
            .prop_map(str::to_string),
            ".{0,20}",
        ],
    )
        .prop_map(|(k, v)| (k.to_string(), v));
    prop::collection::vec(pair, 0..4).prop_map(RequestHeaders::new)
}

/// Invariants of what `parse_manifest` accepts.
fn check_manifest(bytes: &[u8], content_type: Option<&str>) -> Result<(), TestCaseError> {
    let round_trips = |d: &Digest| Digest::parse(&d.to_string()).as_ref() == Ok(d);
    match manifest::parse_manifest(bytes, content_type) {
        Ok(Manifest::Image(m)) => {
            prop_assert!(
                [MEDIA_DOCKER_MANIFEST, MEDIA_OCI_MANIFEST].contains(&m.media_type.as_str()),
                "image media type {:?}",
                m.media_type
            );
            prop_assert!(
                [MEDIA_DOCKER_CONFIG, MEDIA_OCI_CONFIG].contains(&m.config.media_type.as_str()),
                "an image's config is an image config, else it is an artifact"
            );
            prop_assert!(round_trips(&m.config.digest));
            prop_assert!(m.layers.iter().all(|l| round_trips(&l.digest)));
        }
        Ok(Manifest::Index(i)) => {
            prop_assert!(
                [MEDIA_DOCKER_LIST, MEDIA_OCI_INDEX].contains(&i.media_type.as_str()),
                "index media type {:?}",
                i.media_type
            );
            prop_assert!(i.manifests.iter().all(|e| round_trips(&e.digest)));
        }
        Ok(Manifest::Unsupported { .. }) | Err(_) => {}
    }
    Ok(())
}

fn check_config(bytes: &[u8]) -> Result<(), TestCaseError> {
    if manifest::parse_config(bytes).is_ok() {
        let v: Result<Value, _> = serde_json::from_slice(bytes);
        prop_assert!(
            matches!(v, Ok(Value::Object(_))),
            "only a JSON object is a config"
        );
    }
    Ok(())
}

fn check_digest(s: &str) -> Result<(), TestCaseError> {
    if let Ok(d) = Digest::parse(s) {
        prop_assert_eq!(
            d.to_string(),
            s,
            "an accepted digest prints as it was written"
        );
        prop_assert_eq!(Digest::parse(&d.to_string()), Ok(d.clone()));
        let len = match d.algorithm() {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        };
        prop_assert_eq!(d.hex().len(), len);
    }
    Ok(())
}

fn fixture(pool: &'static [&'static [u8]]) -> impl Strategy<Value = &'static [u8]> {
    prop::sample::select(pool)
}

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    }
}

#[test]
fn the_notification_fixtures_parse_to_what_they_describe() {
    let kinds: Vec<Vec<&str>> = NOTIFICATIONS
        .iter()
        .map(|body| {
            sources::parse(SourceType::Distribution, ORIGIN, body)
                .expect("fixture parses")
                .iter()
                .map(|n| match n {
                    Notice::Push(_) => "push",
                    Notice::TagDeleted { .. } => "tag_deleted",
                    Notice::Ignored { .. } => "ignored",
                })
                .collect()
        })
        .collect();
    let want: [&[&str]; 12] = [
        &["push"],
        &["push"],
        &["push"],
        &["push"],
        &["ignored"],
        &["ignored"],
        &["ignored"],
        &["ignored"],
        &["tag_deleted"],
        &["ignored"],
        &["ignored", "ignored", "push"],
        &[],
    ];
    assert_eq!(kinds, want);
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn arbitrary_bytes_never_panic_the_notification_parser(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        parse_notification(&body)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_any_source_parser(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..1024),
            json_value().prop_map(|v| serde_json::to_vec(&v).expect("json")),
        ],
        kind in prop::sample::select(&SourceType::ALL[..]),
        headers in request_headers(),
    ) {
        if let Ok(notices) = sources::parse_request(kind, ORIGIN, &headers, &body) {
            check_notices(&notices)?;
        }
    }

    #[test]
    fn manifests_and_configs_of_arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        ct in prop::sample::select(CONTENT_TYPES),
    ) {
        check_manifest(&bytes, ct)?;
        check_config(&bytes)?;
    }

    #[test]
    fn an_accepted_digest_round_trips(
        s in prop_oneof![
            any::<String>(),
            "(sha256|sha512|sha384|SHA256|md5|)(:|::|)[0-9a-fA-F:]{0,130}",
            "sha256:[0-9a-f]{64}",
            "sha512:[0-9a-f]{128}",
        ],
    ) {
        check_digest(&s)?;
    }

    #[test]
    fn computed_digests_are_accepted_and_verify_their_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let d = Digest::compute(algorithm, &bytes);
            prop_assert_eq!(Digest::parse(&d.to_string()), Ok(d.clone()));
            prop_assert!(d.verify(&bytes).is_ok());
            check_digest(&d.to_string())?;
        }
    }
}

proptest! {
    #![proptest_config(cases(500))]

    #[test]
    fn mutated_manifests_never_panic_and_what_is_accepted_is_consistent(
        base in fixture(MANIFESTS),
        edits in json_edits(),
        bytes in byte_edits(),
        ct in prop::sample::select(CONTENT_TYPES),
    ) {
        let mutated = mutate_json(base, &edits);
        check_manifest(&mutated, ct)?;
        check_manifest(&apply_bytes(&mutated, &bytes), ct)?;
        check_manifest(&apply_bytes(base, &bytes), ct)?;
    }

    #[test]
    fn mutated_image_configs_never_panic(
        base in fixture(CONFIGS),
        edits in json_edits(),
        bytes in byte_edits(),
    ) {
        let mutated = mutate_json(base, &edits);
        check_config(&mutated)?;
        check_config(&apply_bytes(&mutated, &bytes))?;
    }

    #[test]
    fn config_yaml_of_arbitrary_text_never_panics(text in prop_oneof![
        any::<String>(),
        "([a-zA-Z]{1,12}: ?[^\n]{0,20}\n){0,6}",
        "(- |  |[{}\\[\\]&*!|>:,'\"-]|[a-z]{1,6}|\n){0,40}",
    ]) {
        let _ = Config::from_yaml(&text, Path::new("/nonexistent"));
    }
}

/// Apply `edits` to a fixture parsed as JSON and print it again.
fn mutate_json(base: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(base).expect("fixtures are JSON");
    apply_edits(&mut v, edits);
    serde_json::to_vec(&v).expect("a Value prints")
}

#[test]
fn mutated_notification_envelopes_never_panic_and_every_push_is_valid() {
    let before = PUSHES_SEEN.get();
    proptest!(cases(1000), |(
        base in fixture(NOTIFICATIONS),
        edits in json_edits(),
        bytes in byte_edits(),
    )| {
        let mutated = mutate_json(base, &edits);
        parse_notification(&mutated)?;
        parse_notification(&apply_bytes(&mutated, &bytes))?;
    });
    let seen = PUSHES_SEEN.get() - before;
    assert!(
        seen >= 100,
        "only {seen} pushes came out of the mutated envelopes: the invariants were hardly exercised"
    );
}

#[test]
fn a_yaml_alias_bomb_is_refused_without_expanding_it() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    text.push_str("listen: *a11\n");
    assert!(Config::from_yaml(&text, Path::new("/nonexistent")).is_err());
}
