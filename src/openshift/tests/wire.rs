//! The JSON the cluster sees and sends back.

use super::*;

#[test]
fn mapping_json_uses_the_openshift_wire_names() {
    let image = build(DOCKER_SCHEMA2, DOCKER_CONFIG, false);
    let standalone = serde_json::to_value(&image).unwrap();
    assert_eq!(standalone["apiVersion"], "image.openshift.io/v1");
    assert_eq!(standalone["kind"], "Image");

    let mapping = build_mapping("team-a", "app", "v1.2", image);
    let v = serde_json::to_value(&mapping).unwrap();
    let digest = Digest::sha256(DOCKER_SCHEMA2).to_string();
    let checks: &[(&str, Value)] = &[
        ("/apiVersion", json!("image.openshift.io/v1")),
        ("/kind", json!("ImageStreamMapping")),
        ("/metadata/name", json!("app")),
        ("/metadata/namespace", json!("team-a")),
        ("/tag", json!("v1.2")),
        ("/image/metadata/name", json!(digest)),
        (
            "/image/metadata/annotations/image.openshift.io~1dockerLayersOrder",
            json!("ascending"),
        ),
        (
            "/image/dockerImageReference",
            json!(format!("{HOST}/{REPO}@{digest}")),
        ),
        (
            "/image/dockerImageManifestMediaType",
            json!(manifest::MEDIA_DOCKER_MANIFEST),
        ),
        ("/image/dockerImageMetadataVersion", json!("1.0")),
        ("/image/dockerImageMetadata/kind", json!("DockerImage")),
        (
            "/image/dockerImageMetadata/apiVersion",
            json!("image.openshift.io/1.0"),
        ),
        (
            "/image/dockerImageMetadata/Id",
            json!(Digest::sha256(DOCKER_CONFIG).to_string()),
        ),
        (
            "/image/dockerImageMetadata/Created",
            json!("2024-03-05T10:20:30Z"),
        ),
        (
            "/image/dockerImageMetadata/Size",
            json!(DOCKER_CONFIG.len() + 1111 + 22222 + 333333),
        ),
        ("/image/dockerImageMetadata/DockerVersion", json!("24.0.7")),
        ("/image/dockerImageMetadata/Architecture", json!("amd64")),
        (
            "/image/dockerImageMetadata/ContainerConfig/Hostname",
            json!("8f2c1d9e7b6a"),
        ),
        (
            "/image/dockerImageMetadata/Config/Cmd/1",
            json!("--listen=:8080"),
        ),
        (
            "/image/dockerImageMetadata/Config/ExposedPorts/8080~1tcp",
            json!({}),
        ),
        (
            "/image/dockerImageMetadata/Config/Labels/io.openshift.tags",
            json!("app,test"),
        ),
        ("/image/dockerImageLayers/0/size", json!(1111)),
        (
            "/image/dockerImageLayers/2/mediaType",
            json!("application/vnd.docker.image.rootfs.diff.tar.gzip"),
        ),
        (
            "/image/dockerImageLayers/4/name",
            v["image"]["dockerImageLayers"][0]["name"].clone(),
        ),
    ];
    for (pointer, want) in checks {
        assert_eq!(v.pointer(pointer), Some(want), "{pointer}");
    }
    let image = v["image"].as_object().unwrap();
    assert!(
        !image.contains_key("apiVersion") && !image.contains_key("kind"),
        "embedded image has no TypeMeta"
    );
    let annotations = v["image"]["metadata"]["annotations"].as_object().unwrap();
    assert!(!annotations.contains_key(ANNOTATION_IMAGE_MANAGED));
    for absent in ["Parent", "os", "history", "rootfs", "Healthcheck"] {
        assert!(
            v["image"]["dockerImageMetadata"].get(absent).is_none(),
            "{absent}"
        );
    }
}

#[test]
fn a_mapping_survives_a_json_round_trip() {
    for mapping in [
        build_mapping("ns", "s", "latest", build(OCI_MANIFEST, OCI_CONFIG, true)),
        build_mapping("ns", "s", "latest", build_list(DOCKER_LIST, false)),
    ] {
        let bytes = serde_json::to_vec(&mapping).unwrap();
        let back: ImageStreamMapping = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, mapping);
    }
}

#[test]
fn server_objects_read_back_tolerantly() {
    let stream: ImageStream = serde_json::from_value(json!({
        "kind": "ImageStream", "apiVersion": "image.openshift.io/v1",
        "metadata": {"name": "app", "namespace": "team-a", "resourceVersion": "42", "generation": 3,
                     "creationTimestamp": "2024-01-01T00:00:00Z", "managedFields": [{"manager": "x"}]},
        "spec": {"lookupPolicy": {"local": false}},
        "status": {"dockerImageRepository": "", "tags": [
            {"tag": "old", "items": null},
            {"tag": "v1", "items": [
                {"created": "2024-01-02T00:00:00Z", "dockerImageReference": "h/r@sha256:a", "image": "sha256:a", "generation": 3},
                {"created": "2024-01-01T00:00:00Z", "dockerImageReference": "h/r@sha256:b", "image": "sha256:b", "generation": 1}],
             "conditions": [{"type": "ImportSuccess", "status": "False"}]}]}
    }))
    .unwrap();
    assert_eq!(stream.metadata.generation, Some(3));
    assert_eq!(stream.metadata.resource_version.as_deref(), Some("42"));
    assert_eq!(
        stream.tag_head("v1").map(|e| e.image.as_str()),
        Some("sha256:a")
    );
    assert_eq!(stream.tag_head("old"), None);
    assert_eq!(stream.tag_head("missing"), None);

    let image: Image = serde_json::from_value(json!({
        "kind": "Image", "metadata": {"name": "sha256:a"}, "dockerImageLayers": null,
        "dockerImageMetadata": {"kind": "DockerImage", "apiVersion": "image.openshift.io/1.0", "Id": "sha256:c",
                                "Created": null, "ContainerConfig": {}, "Size": 5, "Unknown": true},
        "signatures": null
    }))
    .unwrap();
    let meta = image.docker_image_metadata.unwrap();
    assert_eq!(
        (meta.id.as_str(), meta.size, meta.created),
        ("sha256:c", 5, None)
    );
    assert!(image.docker_image_layers.is_empty());
}

#[test]
fn status_bodies_parse_and_serialize_like_metav1() {
    let created: Status = serde_json::from_str(
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":201}"#,
    )
    .unwrap();
    assert_eq!(created, Status::success(201));
    assert_eq!(
        serde_json::to_value(Status::success(201)).unwrap(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
    );
    let missing: Status = serde_json::from_value(json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "imagestreammappings.image.openshift.io \"app\" not found", "reason": "NotFound",
        "details": {"name": "app", "group": "image.openshift.io", "kind": "imagestreammappings",
                    "causes": [{"reason": "FieldValueRequired", "message": "Required value", "field": "tag"}]},
        "code": 404
    }))
    .unwrap();
    let details = missing.details.unwrap();
    assert_eq!(details.kind.as_deref(), Some("imagestreammappings"));
    assert_eq!(details.causes[0].field.as_deref(), Some("tag"));
    assert_eq!(missing.reason.as_deref(), Some("NotFound"));
    let failure = serde_json::to_value(Status::failure(409, "AlreadyExists", "exists")).unwrap();
    assert_eq!(failure["status"], "Failure");
    assert_eq!(failure["code"], 409);
    assert!(failure.get("details").is_none());
}

#[test]
fn tag_names_are_validated_like_docker_tags() {
    let long_ok = "a".repeat(128);
    let too_long = "a".repeat(129);
    let cases = [
        ("latest", true),
        ("v1.2.3", true),
        ("_private", true),
        ("1.0-rc_1", true),
        ("A", true),
        (long_ok.as_str(), true),
        ("", false),
        (too_long.as_str(), false),
        (".hidden", false),
        ("-dash", false),
        ("a:b", false),
        ("a/b", false),
        ("a b", false),
        ("sha256@x", false),
        ("tág", false),
    ];
    for (tag, want) in cases {
        assert_eq!(is_valid_tag(tag), want, "{tag:?}");
    }
}

#[test]
fn references_and_new_streams_have_the_expected_shape() {
    let d = Digest::sha256(b"m");
    assert_eq!(
        image_reference(HOST, REPO, &d),
        format!("{HOST}/{REPO}@{d}")
    );
    assert_eq!(image_reference("", REPO, &d), format!("{REPO}@{d}"));
    assert_eq!(
        serde_json::to_value(new_image_stream("team-a", "app")).unwrap(),
        json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
               "metadata": {"name": "app", "namespace": "team-a"}})
    );
}
