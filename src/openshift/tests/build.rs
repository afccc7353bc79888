//! Building Images from manifests, configs and lists.

use super::*;

#[test]
fn docker_schema2_image_has_manifest_order_layers_and_config_metadata() {
    let image = build(DOCKER_SCHEMA2, DOCKER_CONFIG, false);
    let digest = Digest::sha256(DOCKER_SCHEMA2);
    assert_eq!(image.metadata.name, digest.to_string());
    assert_eq!(
        image.docker_image_reference,
        format!("{HOST}/{REPO}@{digest}")
    );
    assert_eq!(
        image.docker_image_manifest_media_type,
        manifest::MEDIA_DOCKER_MANIFEST
    );
    assert_eq!(image.docker_image_metadata_version, "1.0");
    let annotations = image.metadata.annotations.clone().unwrap();
    assert_eq!(annotations.len(), 1);
    assert_eq!(annotations[ANNOTATION_LAYERS_ORDER], "ascending");
    let layers: Vec<(String, u64)> = image
        .docker_image_layers
        .iter()
        .map(|l| (l.name.clone(), l.size))
        .collect();
    let m = parsed_image(DOCKER_SCHEMA2);
    let expected: Vec<(String, u64)> = m
        .layers
        .iter()
        .map(|l| (l.digest.to_string(), l.size))
        .collect();
    assert_eq!(layers, expected);
    assert_eq!(layers.len(), 5, "duplicates are kept");

    let meta = image.docker_image_metadata.unwrap();
    assert_eq!(meta.kind, "DockerImage");
    assert_eq!(meta.api_version, "image.openshift.io/1.0");
    assert_eq!(meta.id, Digest::sha256(DOCKER_CONFIG).to_string());
    assert_eq!(meta.created.as_deref(), Some("2024-03-05T10:20:30Z"));
    assert_eq!(meta.docker_version, "24.0.7");
    assert_eq!(meta.author, "Platform Team <platform@corp.example>");
    assert_eq!(meta.comment, "built for the imagestream-ingest tests");
    assert_eq!(meta.architecture, "amd64");
    assert_eq!(meta.parent, "");
    assert!(meta.container.starts_with("8f2c1d9e"));
    assert_eq!(meta.container_config.hostname, "8f2c1d9e7b6a");
    assert_eq!(meta.config.unwrap().cmd, ["/usr/bin/app", "--listen=:8080"]);
    assert!(image.docker_image_manifest.is_empty() && image.docker_image_config.is_empty());
    assert!(image.docker_image_manifests.is_empty());
}

/// The golden schema2 case's arithmetic (openshift-apiserver `InternalImageWithMetadata`): config *byte length*
/// (not the descriptor's `size`) plus each unique layer digest once.
#[test]
fn size_is_config_bytes_plus_unique_layer_sizes() {
    let image = build(DOCKER_SCHEMA2, DOCKER_CONFIG, false);
    let size = image.docker_image_metadata.unwrap().size;
    assert_eq!(size, DOCKER_CONFIG.len() as u64 + 1111 + 22222 + 333333);
    assert_ne!(
        parsed_image(DOCKER_SCHEMA2).config.size,
        DOCKER_CONFIG.len() as u64
    );
    let all_layers: u64 = image.docker_image_layers.iter().map(|l| l.size).sum();
    assert_eq!(
        all_layers,
        1111 * 2 + 22222 * 2 + 333333,
        "the listed layers still include duplicates"
    );
}

#[test]
fn a_layer_with_the_config_digest_is_not_counted() {
    let mut m = parsed_image(DOCKER_SCHEMA2);
    m.layers.push(Descriptor {
        media_type: "application/vnd.docker.image.rootfs.diff.tar.gzip".into(),
        digest: m.config.digest.clone(),
        size: 777_777,
    });
    let c = manifest::parse_config(DOCKER_CONFIG).unwrap();
    let d = Digest::sha256(DOCKER_SCHEMA2);
    let image = build_image(
        REPO,
        &d,
        DOCKER_SCHEMA2,
        &m,
        DOCKER_CONFIG,
        &c,
        &opts(false),
    )
    .unwrap();
    assert_eq!(image.docker_image_layers.len(), 6);
    assert_eq!(
        image.docker_image_metadata.unwrap().size,
        DOCKER_CONFIG.len() as u64 + 1111 + 22222 + 333333
    );
}

#[test]
fn oci_image_keeps_oci_media_types_and_normalizes_created_to_utc_seconds() {
    let image = build(OCI_MANIFEST, OCI_CONFIG, false);
    assert_eq!(
        image.docker_image_manifest_media_type,
        manifest::MEDIA_OCI_MANIFEST
    );
    let types: Vec<&str> = image
        .docker_image_layers
        .iter()
        .map(|l| l.media_type.as_str())
        .collect();
    assert_eq!(
        types,
        [
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+zstd"
        ]
    );
    let meta = image.docker_image_metadata.unwrap();
    assert_eq!(meta.id, Digest::sha256(OCI_CONFIG).to_string());
    assert_eq!(meta.created.as_deref(), Some("2024-06-01T06:00:00Z"));
    assert_eq!(meta.architecture, "arm64");
    assert_eq!(meta.size, OCI_CONFIG.len() as u64 + 4444 + 55555);
    assert!(meta.container_config.is_empty());
}

#[test]
fn unparseable_created_is_left_out() {
    let config = br#"{"created":"yesterday","architecture":"amd64"}"#;
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":{}}},"layers":[]}}"#,
        manifest::MEDIA_OCI_MANIFEST,
        manifest::MEDIA_OCI_CONFIG,
        Digest::sha256(config),
        config.len()
    );
    let image = build(body.as_bytes(), config, false);
    let meta = image.docker_image_metadata.unwrap();
    assert_eq!(meta.created, None);
    assert_eq!(meta.size, config.len() as u64);
}

#[test]
fn store_manifests_adds_the_exact_bytes_only_when_asked() {
    for store in [false, true] {
        let image = build(DOCKER_SCHEMA2, DOCKER_CONFIG, store);
        let v = serde_json::to_value(&image).unwrap();
        if store {
            assert_eq!(image.docker_image_manifest.as_bytes(), DOCKER_SCHEMA2);
            assert_eq!(image.docker_image_config.as_bytes(), DOCKER_CONFIG);
            assert_eq!(
                v["dockerImageManifest"].as_str().unwrap().as_bytes(),
                DOCKER_SCHEMA2
            );
            assert_eq!(
                v["dockerImageConfig"].as_str().unwrap().as_bytes(),
                DOCKER_CONFIG
            );
        } else {
            assert!(v.get("dockerImageManifest").is_none() && v.get("dockerImageConfig").is_none());
        }
        let list = serde_json::to_value(build_list(OCI_INDEX, store)).unwrap();
        assert_eq!(list.get("dockerImageManifest").is_some(), store);
        assert!(list.get("dockerImageConfig").is_none());
    }
    assert_eq!(
        build_list(OCI_INDEX, true).docker_image_manifest.as_bytes(),
        OCI_INDEX
    );
}

#[test]
fn non_utf8_bytes_cannot_be_stored_but_can_be_mapped() {
    let m = parsed_image(DOCKER_SCHEMA2);
    let c = manifest::parse_config(DOCKER_CONFIG).unwrap();
    let odd = b"\xff\xfe not utf-8";
    let d = Digest::sha256(odd);
    let err = build_image(REPO, &d, odd, &m, DOCKER_CONFIG, &c, &opts(true)).unwrap_err();
    assert!(
        matches!(
            err,
            BuildError::NotUtf8 {
                what: "manifest",
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert!(build_image(REPO, &d, odd, &m, DOCKER_CONFIG, &c, &opts(false)).is_ok());
}

#[test]
fn bytes_that_do_not_match_their_digests_are_refused() {
    let m = parsed_image(DOCKER_SCHEMA2);
    let c = manifest::parse_config(DOCKER_CONFIG).unwrap();
    let d = Digest::sha256(DOCKER_SCHEMA2);
    let wrong = Digest::sha256(b"something else");
    let cases: [(&str, &Digest, &[u8], &str); 2] = [
        ("manifest digest", &wrong, DOCKER_CONFIG, "manifest"),
        ("config bytes", &d, OCI_CONFIG, "config"),
    ];
    for (name, digest, config_bytes, want) in cases {
        let err = build_image(
            REPO,
            digest,
            DOCKER_SCHEMA2,
            &m,
            config_bytes,
            &c,
            &opts(false),
        )
        .unwrap_err();
        assert!(
            matches!(err, BuildError::DigestMismatch { what, .. } if what == want),
            "{name}: {err}"
        );
    }
    let i = parsed_index(OCI_INDEX);
    assert!(build_index_image(REPO, &wrong, OCI_INDEX, &i, &opts(false)).is_err());
}

#[test]
fn oci_index_image_lists_platform_children_and_omits_the_attestation() {
    let image = build_list(OCI_INDEX, false);
    let digest = Digest::sha256(OCI_INDEX);
    assert_eq!(image.metadata.name, digest.to_string());
    assert_eq!(image.metadata.annotations, None);
    assert_eq!(
        image.docker_image_manifest_media_type,
        manifest::MEDIA_OCI_INDEX
    );
    assert!(image.docker_image_layers.is_empty());
    let meta = image.docker_image_metadata.clone().unwrap();
    assert_eq!(
        (meta.id.as_str(), meta.kind.as_str()),
        (digest.to_string().as_str(), "DockerImage")
    );
    assert_eq!((meta.size, meta.created), (0, None));
    let children: Vec<(&str, &str, &str)> = image
        .docker_image_manifests
        .iter()
        .map(|c| (c.architecture.as_str(), c.os.as_str(), c.variant.as_str()))
        .collect();
    assert_eq!(children, [("amd64", "linux", ""), ("arm64", "linux", "v8")]);
    let arm = &image.docker_image_manifests[1];
    assert_eq!(arm.digest, Digest::sha256(OCI_MANIFEST).to_string());
    assert_eq!(arm.manifest_size, OCI_MANIFEST.len() as u64);
    assert_eq!(arm.media_type, manifest::MEDIA_OCI_MANIFEST);

    let v = serde_json::to_value(&image).unwrap();
    assert!(v.get("dockerImageLayers").is_none());
    assert_eq!(
        v["dockerImageManifests"][1]["manifestSize"],
        json!(OCI_MANIFEST.len())
    );
    assert_eq!(v["dockerImageManifests"][1]["variant"], "v8");
    assert!(
        v["dockerImageManifests"][0].get("variant").is_none(),
        "empty variant is omitted"
    );
    assert_eq!(
        v["dockerImageMetadata"],
        json!({"kind": "DockerImage", "apiVersion": "image.openshift.io/1.0", "Id": digest.to_string()})
    );
}

#[test]
fn docker_manifest_list_image_keeps_the_list_media_type() {
    let image = build_list(DOCKER_LIST, false);
    assert_eq!(
        image.docker_image_manifest_media_type,
        manifest::MEDIA_DOCKER_LIST
    );
    let refs: Vec<(String, u64, &str, &str)> = image
        .docker_image_manifests
        .iter()
        .map(|c| {
            (
                c.digest.clone(),
                c.manifest_size,
                c.architecture.as_str(),
                c.variant.as_str(),
            )
        })
        .collect();
    assert_eq!(
        refs[0],
        (
            Digest::sha256(DOCKER_SCHEMA2).to_string(),
            DOCKER_SCHEMA2.len() as u64,
            "amd64",
            ""
        )
    );
    assert_eq!((refs[1].1, refs[1].2, refs[1].3), (1001, "arm", "v7"));
    assert!(
        image
            .docker_image_manifests
            .iter()
            .all(|c| c.media_type == manifest::MEDIA_DOCKER_MANIFEST)
    );
}
