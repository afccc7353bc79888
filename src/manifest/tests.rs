//! Table tests for manifest and config parsing over the project's own fixtures (fixtures/manifests/).

use super::*;

const DOCKER_SCHEMA2: &[u8] = include_bytes!("../../fixtures/manifests/docker-schema2.json");
const DOCKER_CONFIG: &[u8] = include_bytes!("../../fixtures/manifests/docker-config.json");
const DOCKER_LIST: &[u8] = include_bytes!("../../fixtures/manifests/docker-manifest-list.json");
const OCI_MANIFEST: &[u8] = include_bytes!("../../fixtures/manifests/oci-manifest.json");
const OCI_CONFIG: &[u8] = include_bytes!("../../fixtures/manifests/oci-config.json");
const OCI_INDEX: &[u8] = include_bytes!("../../fixtures/manifests/oci-index.json");
const SCHEMA1_SIGNED: &[u8] = include_bytes!("../../fixtures/manifests/schema1-signed.json");
const SCHEMA1_UNSIGNED: &[u8] = include_bytes!("../../fixtures/manifests/schema1-unsigned.json");
const ARTIFACT_TYPE: &[u8] = include_bytes!("../../fixtures/manifests/oci-artifact-type.json");
const ARTIFACT_HELM: &[u8] = include_bytes!("../../fixtures/manifests/oci-artifact-helm.json");

fn image(bytes: &[u8], content_type: Option<&str>) -> ImageManifest {
    match parse_manifest(bytes, content_type).unwrap() {
        Manifest::Image(m) => m,
        other => panic!("expected an image manifest, got {other:?}"),
    }
}

fn index(bytes: &[u8]) -> ImageIndex {
    match parse_manifest(bytes, None).unwrap() {
        Manifest::Index(i) => i,
        other => panic!("expected an index, got {other:?}"),
    }
}

/// The fixture with its top-level `mediaType` removed (byte-level edit of our own fixture).
fn without_media_type(bytes: &[u8]) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(bytes).unwrap();
    v.as_object_mut().unwrap().remove("mediaType");
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn docker_schema2_keeps_layers_in_order_with_duplicates() {
    let m = image(DOCKER_SCHEMA2, Some(MEDIA_DOCKER_MANIFEST));
    assert_eq!(m.media_type, MEDIA_DOCKER_MANIFEST);
    assert_eq!(m.config.media_type, MEDIA_DOCKER_CONFIG);
    assert_eq!(m.config.digest, Digest::sha256(DOCKER_CONFIG));
    assert_eq!(
        m.config.size, 9999,
        "descriptor size is reported as written"
    );
    let sizes: Vec<u64> = m.layers.iter().map(|l| l.size).collect();
    assert_eq!(sizes, [1111, 22222, 22222, 333333, 1111]);
    assert_eq!(m.layers[1].digest, m.layers[2].digest);
    assert_eq!(m.layers[0].digest, m.layers[4].digest);
    assert_ne!(m.layers[0].digest, m.layers[1].digest);
    assert!(
        m.layers
            .iter()
            .all(|l| l.media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip")
    );
}

#[test]
fn oci_manifest_parses_with_its_layer_media_types() {
    let m = image(OCI_MANIFEST, None);
    assert_eq!(m.media_type, MEDIA_OCI_MANIFEST);
    assert_eq!(m.config.media_type, MEDIA_OCI_CONFIG);
    assert_eq!(m.config.digest, Digest::sha256(OCI_CONFIG));
    assert_eq!(m.config.size, OCI_CONFIG.len() as u64);
    let layers: Vec<(&str, u64)> = m
        .layers
        .iter()
        .map(|l| (l.media_type.as_str(), l.size))
        .collect();
    assert_eq!(
        layers,
        [
            ("application/vnd.oci.image.layer.v1.tar+gzip", 4444),
            ("application/vnd.oci.image.layer.v1.tar+zstd", 55555)
        ]
    );
}

#[test]
fn media_type_comes_from_json_then_content_type_then_shape() {
    let bare_oci = without_media_type(OCI_MANIFEST);
    let bare_index = without_media_type(OCI_INDEX);
    let cases: &[(&[u8], Option<&str>, &str)] = &[
        // The JSON field wins over a disagreeing header.
        (
            OCI_MANIFEST,
            Some(MEDIA_DOCKER_MANIFEST),
            MEDIA_OCI_MANIFEST,
        ),
        (
            &bare_oci,
            Some(MEDIA_DOCKER_MANIFEST),
            MEDIA_DOCKER_MANIFEST,
        ),
        (
            &bare_oci,
            Some("Application/VND.oci.image.manifest.v1+json; charset=utf-8"),
            MEDIA_OCI_MANIFEST,
        ),
        (&bare_oci, None, MEDIA_OCI_MANIFEST),
        // A generic Content-Type says nothing about the shape.
        (&bare_oci, Some("application/json"), MEDIA_OCI_MANIFEST),
        (
            &bare_index,
            Some("application/octet-stream"),
            MEDIA_OCI_INDEX,
        ),
        (&bare_index, None, MEDIA_OCI_INDEX),
    ];
    for (bytes, ct, want) in cases {
        let got = match parse_manifest(bytes, *ct).unwrap() {
            Manifest::Image(m) => m.media_type,
            Manifest::Index(i) => i.media_type,
            other => panic!("{ct:?}: {other:?}"),
        };
        assert_eq!(&got, want, "content type {ct:?}");
    }
}

#[test]
fn oci_index_keeps_platforms_and_marks_the_attestation_as_platformless() {
    let i = index(OCI_INDEX);
    assert_eq!(i.media_type, MEDIA_OCI_INDEX);
    assert_eq!(i.manifests.len(), 3);
    assert_eq!(
        i.manifests[0].platform,
        Some(Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None
        })
    );
    assert_eq!(
        i.manifests[1].platform,
        Some(Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            variant: Some("v8".into())
        })
    );
    assert_eq!(i.manifests[1].digest, Digest::sha256(OCI_MANIFEST));
    assert_eq!(i.manifests[1].size, OCI_MANIFEST.len() as u64);
    assert_eq!(i.manifests[2].platform, None);
    assert!(
        i.manifests
            .iter()
            .all(|e| e.media_type == MEDIA_OCI_MANIFEST)
    );
}

#[test]
fn docker_manifest_list_parses_with_variants() {
    let i = index(DOCKER_LIST);
    assert_eq!(i.media_type, MEDIA_DOCKER_LIST);
    let entries: Vec<(String, u64, Option<String>)> = i
        .manifests
        .iter()
        .map(|e| {
            let p = e.platform.clone().unwrap();
            (format!("{}/{}", p.os, p.architecture), e.size, p.variant)
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("linux/amd64".to_string(), DOCKER_SCHEMA2.len() as u64, None),
            ("linux/arm".to_string(), 1001, Some("v7".to_string())),
        ]
    );
    assert_eq!(i.manifests[0].digest, Digest::sha256(DOCKER_SCHEMA2));
}

#[test]
fn platform_without_os_or_architecture_counts_as_none() {
    let d = Digest::sha256(b"child").to_string();
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MEDIA_OCI_INDEX}","manifests":[
            {{"mediaType":"{MEDIA_OCI_MANIFEST}","digest":"{d}","size":1,"platform":{{"architecture":"amd64"}}}},
            {{"mediaType":"{MEDIA_OCI_MANIFEST}","digest":"{d}","size":1,"platform":{{"architecture":"","os":"linux"}}}}]}}"#
    );
    let i = index(body.as_bytes());
    assert!(i.manifests.iter().all(|e| e.platform.is_none()));
}

#[test]
fn schema1_and_artifacts_are_recognised_and_skipped_with_a_reason() {
    let artifact_index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MEDIA_OCI_INDEX}","artifactType":"application/x.sig","manifests":[]}}"#
    );
    let cases: &[(&str, &[u8], Option<&str>, &str)] = &[
        (
            "signed schema1",
            SCHEMA1_SIGNED,
            Some(MEDIA_DOCKER_SCHEMA1_SIGNED),
            REASON_SCHEMA1,
        ),
        (
            "signed schema1, no header",
            SCHEMA1_SIGNED,
            None,
            REASON_SCHEMA1,
        ),
        (
            "unsigned schema1",
            SCHEMA1_UNSIGNED,
            Some(MEDIA_DOCKER_SCHEMA1),
            REASON_SCHEMA1,
        ),
        (
            "unsigned schema1, wrong header",
            SCHEMA1_UNSIGNED,
            Some("application/json"),
            REASON_SCHEMA1,
        ),
        (
            "schema1 by header only",
            br#"{"name":"a/b"}"#,
            Some(MEDIA_DOCKER_SCHEMA1_SIGNED),
            REASON_SCHEMA1,
        ),
        ("artifactType", ARTIFACT_TYPE, None, REASON_ARTIFACT),
        (
            "helm config, inferred type",
            ARTIFACT_HELM,
            None,
            REASON_ARTIFACT,
        ),
        (
            "helm config, OCI header",
            ARTIFACT_HELM,
            Some(MEDIA_OCI_MANIFEST),
            REASON_ARTIFACT,
        ),
        (
            "index with artifactType",
            artifact_index.as_bytes(),
            None,
            REASON_ARTIFACT,
        ),
    ];
    for (name, bytes, ct, reason) in cases {
        match parse_manifest(bytes, *ct) {
            Ok(Manifest::Unsupported { reason: got }) => assert_eq!(got, *reason, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

fn error_kind(e: &ManifestError) -> &'static str {
    match e {
        ManifestError::NotJson(_) => "not json",
        ManifestError::NotObject => "not object",
        ManifestError::FieldType { .. } => "field type",
        ManifestError::Shape { .. } => "shape",
        ManifestError::BadDigest { .. } => "bad digest",
        ManifestError::SchemaVersion(_) => "schema version",
        ManifestError::UnknownMediaType(_) => "unknown media type",
        ManifestError::Undetermined => "undetermined",
        ManifestError::ConfigNotJson(_) => "config not json",
        ManifestError::ConfigNotObject => "config not object",
    }
}

#[test]
fn malformed_manifests_are_errors_that_say_where() {
    let good = Digest::sha256(b"x").to_string();
    let cfg = format!(r#"{{"mediaType":"{MEDIA_OCI_CONFIG}","digest":"{good}","size":2}}"#);
    let m = |layers: &str| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{MEDIA_OCI_MANIFEST}","config":{cfg},"layers":{layers}}}"#
        )
    };
    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("empty body", String::new(), "not json", ""),
        ("truncated", r#"{"schemaVersion":2,"#.into(), "not json", ""),
        ("array", "[]".into(), "not object", ""),
        (
            "string schemaVersion",
            r#"{"schemaVersion":"2","config":{}}"#.into(),
            "field type",
            "",
        ),
        (
            "numeric mediaType",
            r#"{"mediaType":5}"#.into(),
            "field type",
            "",
        ),
        (
            "schemaVersion 3",
            format!(r#"{{"schemaVersion":3,"mediaType":"{MEDIA_OCI_MANIFEST}"}}"#),
            "schema version",
            "",
        ),
        (
            "no type, no shape",
            r#"{"schemaVersion":2}"#.into(),
            "undetermined",
            "",
        ),
        (
            "unknown type",
            r#"{"schemaVersion":2,"mediaType":"application/x-foo"}"#.into(),
            "unknown media type",
            "",
        ),
        (
            "missing config",
            format!(r#"{{"schemaVersion":2,"mediaType":"{MEDIA_DOCKER_MANIFEST}","layers":[]}}"#),
            "shape",
            ".",
        ),
        ("layers not a list", m(r#"{"a":1}"#), "shape", "layers"),
        (
            "negative size",
            m(&format!(
                r#"[{{"mediaType":"a/b","digest":"{good}","size":-1}}]"#
            )),
            "shape",
            "layers[0].size",
        ),
        (
            "string size",
            m(&format!(
                r#"[{{"mediaType":"a/b","digest":"{good}","size":"1"}}]"#
            )),
            "shape",
            "layers[0].size",
        ),
        (
            "layer without digest",
            m(r#"[{"mediaType":"a/b","size":1}]"#),
            "shape",
            "layers[0]",
        ),
        (
            "bad layer digest",
            m(&format!(
                r#"[{{"mediaType":"a/b","digest":"{good}","size":1}},{{"mediaType":"a/b","digest":"sha256:XYZ","size":1}}]"#
            )),
            "bad digest",
            "layers[1].digest",
        ),
        (
            "bad config digest",
            format!(
                r#"{{"schemaVersion":2,"config":{{"mediaType":"{MEDIA_DOCKER_CONFIG}","digest":"md5:00","size":1}},"layers":[]}}"#
            ),
            "bad digest",
            "config.digest",
        ),
        (
            "bad index digest",
            format!(
                r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{MEDIA_OCI_MANIFEST}","digest":"sha256:../../x","size":1}}]}}"#
            ),
            "bad digest",
            "manifests[0].digest",
        ),
        (
            "manifests not a list",
            r#"{"schemaVersion":2,"manifests":"x"}"#.into(),
            "shape",
            "manifests",
        ),
    ];
    for (name, body, want, where_) in cases {
        let err = parse_manifest(body.as_bytes(), None).expect_err(name);
        assert_eq!(error_kind(&err), want, "{name}: {err}");
        match &err {
            ManifestError::Shape { path, .. } => assert_eq!(path, where_, "{name}"),
            ManifestError::BadDigest { field, .. } => assert_eq!(field, where_, "{name}"),
            _ => {}
        }
        assert!(!err.is_retryable());
        assert_eq!(err.metric_label(), "bad_manifest", "{name}");
    }
}

#[test]
fn docker_config_keeps_the_docker10_fields() {
    let c = parse_config(DOCKER_CONFIG).unwrap();
    assert_eq!(c.created.as_deref(), Some("2024-03-05T10:20:30.123456789Z"));
    assert_eq!(c.architecture, "amd64");
    assert_eq!(c.author, "Platform Team <platform@corp.example>");
    assert_eq!(c.comment, "built for the imagestream-ingest tests");
    assert_eq!(c.docker_version, "24.0.7");
    assert!(c.container.starts_with("8f2c1d9e"));
    assert_eq!(c.parent, "");
    let config = c.config.unwrap();
    assert_eq!(config.user, "1001");
    assert_eq!(config.cmd, ["/usr/bin/app", "--listen=:8080"]);
    assert_eq!(config.working_dir, "/srv");
    assert_eq!(
        config.exposed_ports.keys().collect::<Vec<_>>(),
        ["8080/tcp"]
    );
    assert!(
        config.entrypoint.is_empty() && config.volumes.is_empty(),
        "null reads as empty"
    );
    assert_eq!(config.labels["io.openshift.tags"], "app,test");
    assert_eq!(c.container_config.hostname, "8f2c1d9e7b6a");
    assert_eq!(c.container_config.cmd.len(), 3);
}

#[test]
fn oci_config_parses_without_docker_only_fields() {
    let c = parse_config(OCI_CONFIG).unwrap();
    assert_eq!(c.architecture, "arm64");
    assert_eq!(c.author, "ci@corp.example");
    assert_eq!(c.container, "");
    assert!(c.container_config.is_empty());
    let config = c.config.unwrap();
    assert_eq!(config.entrypoint, ["/ko-app/server"]);
    assert!(config.cmd.is_empty());
    assert_eq!(config.volumes.keys().collect::<Vec<_>>(), ["/data"]);
    assert_eq!(config.exposed_ports.len(), 2);
}

#[test]
fn config_fields_outside_docker10_are_dropped() {
    let c = parse_config(DOCKER_CONFIG).unwrap();
    let out = serde_json::to_value(c.config.unwrap()).unwrap();
    let keys: Vec<&str> = out
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for dropped in [
        "Healthcheck",
        "ArgsEscaped",
        "StopSignal",
        "Volumes",
        "Entrypoint",
        "AttachStdin",
    ] {
        assert!(!keys.contains(&dropped), "{dropped} kept: {keys:?}");
    }
    for kept in [
        "User",
        "ExposedPorts",
        "Env",
        "Cmd",
        "Image",
        "WorkingDir",
        "Labels",
    ] {
        assert!(keys.contains(&kept), "{kept} missing: {keys:?}");
    }
    assert_eq!(out["ExposedPorts"]["8080/tcp"], serde_json::json!({}));
}

#[test]
fn bad_configs_are_errors() {
    let cases: &[(&str, &[u8], &str)] = &[
        ("not json", b"\x1f\x8b\x08\x00", "config not json"),
        ("empty", b"", "config not json"),
        ("array", b"[1,2]", "config not object"),
        ("string", b"\"config\"", "config not object"),
        ("numeric created", br#"{"created":5}"#, "shape"),
        ("cmd as number", br#"{"config":{"Cmd":1}}"#, "shape"),
        ("labels as list", br#"{"config":{"Labels":["a"]}}"#, "shape"),
    ];
    for (name, bytes, want) in cases {
        let err = parse_config(bytes).expect_err(name);
        assert_eq!(error_kind(&err), *want, "{name}: {err}");
        assert_eq!(err.metric_label(), "bad_config", "{name}");
    }
}

#[test]
fn config_nulls_and_missing_fields_default() {
    let c = parse_config(
        br#"{"created":null,"config":null,"container_config":null,"author":null,"os":"linux"}"#,
    )
    .unwrap();
    assert_eq!(c, ImageConfig::default());
}

#[test]
fn manifest_media_types_are_recognised_for_notifications() {
    let cases = [
        (MEDIA_DOCKER_MANIFEST, true),
        (MEDIA_DOCKER_LIST, true),
        (MEDIA_OCI_MANIFEST, true),
        (MEDIA_OCI_INDEX, true),
        (
            "application/vnd.oci.image.index.v1+json; charset=utf-8",
            true,
        ),
        (MEDIA_DOCKER_SCHEMA1_SIGNED, false),
        (MEDIA_DOCKER_SCHEMA1, false),
        (MEDIA_DOCKER_CONFIG, false),
        ("application/vnd.docker.image.rootfs.diff.tar.gzip", false),
        ("application/octet-stream", false),
        ("", false),
    ];
    for (mt, want) in cases {
        assert_eq!(is_manifest_media_type(mt), want, "{mt}");
    }
}

#[test]
fn accept_header_lists_exactly_the_four_supported_types() {
    let listed: Vec<&str> = ACCEPT_MANIFESTS.split(',').map(str::trim).collect();
    assert_eq!(listed.len(), 4);
    for mt in [
        MEDIA_DOCKER_MANIFEST,
        MEDIA_DOCKER_LIST,
        MEDIA_OCI_MANIFEST,
        MEDIA_OCI_INDEX,
    ] {
        assert!(listed.contains(&mt), "{mt} missing");
    }
    assert!(listed.iter().all(|mt| is_manifest_media_type(mt)));
}
