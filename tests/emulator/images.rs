//! What the server does to images and streams: metadata filled from the manifest, sub-manifests of
//! a list, the registry whitelist on tag events, stream creation, and body decoding.

use super::*;

fn oci_manifest(layers: &[(u8, i64)]) -> (String, String) {
    let config = r#"{"architecture":"amd64","os":"linux","created":"2024-05-06T07:08:09.123456789Z","config":{"Env":["A=b"]}}"#;
    let layers: Vec<Value> = layers
        .iter()
        .map(|(n, size)| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(*n), "size": size}))
        .collect();
    let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(200), "size": config.len()},
        "layers": layers});
    (manifest.to_string(), config.to_string())
}

#[tokio::test]
async fn the_server_fills_metadata_from_the_manifest_and_reverses_layers_without_the_order_annotation()
 {
    let e = setup().await;
    e.add_stream("team", "app");
    let (manifest, config) = oci_manifest(&[(10, 100), (11, 50), (10, 100)]);
    let sent_layers = json!([{"name": digest(10), "size": 100, "mediaType": "a/b"}, {"name": digest(11), "size": 50, "mediaType": "a/b"}]);
    let mut m = mapping("app", "v1", &digest(1), &reference(1));
    m["image"]["metadata"]["annotations"] = json!({});
    m["image"]["dockerImageManifest"] = json!(manifest);
    m["image"]["dockerImageConfig"] = json!(config);
    m["image"]["dockerImageManifestMediaType"] = json!(OCI_MANIFEST);
    m["image"]["dockerImageLayers"] = sent_layers;
    assert_eq!(post(&e, ISM_PATH, &m).await.code, 201);
    let image = e.image(&digest(1)).unwrap();
    let names: Vec<&Value> = image["dockerImageLayers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["name"])
        .collect();
    assert_eq!(
        names,
        [&json!(digest(11)), &json!(digest(10))],
        "reversed: taken as descending"
    );
    assert_eq!(
        image["metadata"]["annotations"]["image.openshift.io/dockerLayersOrder"],
        "ascending"
    );
    let meta = &image["dockerImageMetadata"];
    assert_eq!(meta["Id"], json!(digest(200)));
    assert_eq!(
        meta["Size"],
        json!(config.len() as i64 + 150),
        "config bytes + unique layers"
    );
    assert_eq!(
        meta["Created"], "2024-05-06T07:08:09Z",
        "metav1.Time keeps whole seconds"
    );
    assert_eq!(meta["Architecture"], "amd64");

    // No layers sent: filled from the manifest in manifest order (duplicates kept).
    let mut m2 = mapping("app", "v2", &digest(2), &reference(2));
    m2["image"]["dockerImageManifest"] = json!(manifest);
    m2["image"]["dockerImageConfig"] = json!(config);
    post(&e, ISM_PATH, &m2).await;
    let image = e.image(&digest(2)).unwrap();
    assert_eq!(image["dockerImageLayers"].as_array().unwrap().len(), 3);
    assert_eq!(image["dockerImageManifestMediaType"], OCI_MANIFEST);

    // Layers + size + media type sent: trusted as they are.
    let mut m3 = mapping("app", "v3", &digest(3), &reference(3));
    m3["image"]["dockerImageManifest"] = json!(manifest);
    m3["image"]["dockerImageManifestMediaType"] = json!(OCI_MANIFEST);
    m3["image"]["dockerImageLayers"] = json!([{"name": digest(12), "size": 7, "mediaType": "a/b"}]);
    m3["image"]["dockerImageMetadata"] = json!({"kind": "DockerImage", "apiVersion": "image.openshift.io/1.0", "Id": "mine", "Size": 7});
    post(&e, ISM_PATH, &m3).await;
    let image = e.image(&digest(3)).unwrap();
    assert_eq!(image["dockerImageMetadata"]["Id"], "mine");
    assert_eq!(image["dockerImageLayers"][0]["name"], json!(digest(12)));
}

#[tokio::test]
async fn a_manifest_list_gets_its_sub_manifests_from_the_server() {
    let e = setup().await;
    e.add_stream("team", "app");
    let list = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": digest(20), "size": 500, "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        {"mediaType": OCI_MANIFEST, "digest": digest(21), "size": 400, "platform": {"architecture": "amd64", "os": "linux"}}]});
    let mut m = mapping("app", "v1", &digest(1), &reference(1));
    m["image"]["dockerImageManifest"] = json!(list.to_string());
    m["image"]["dockerImageManifestMediaType"] = json!(OCI_INDEX);
    assert_eq!(post(&e, ISM_PATH, &m).await.code, 201);
    let image = e.image(&digest(1)).unwrap();
    assert_eq!(
        image["dockerImageManifests"][0],
        json!({"digest": digest(20), "mediaType": OCI_MANIFEST,
        "manifestSize": 500, "architecture": "arm64", "os": "linux", "variant": "v8"})
    );
    assert_eq!(image["dockerImageManifests"][1]["architecture"], "amd64");
    assert_eq!(image["dockerImageMetadata"]["Id"], json!(digest(1)));
    assert!(image["dockerImageLayers"].is_null());
}

#[tokio::test]
async fn allowed_registries_reject_a_foreign_reference_after_the_image_is_created() {
    let e = setup().await;
    e.add_stream("team", "app");
    e.set_allowed_registries(vec!["quay.io".into()]);
    let a = post(
        &e,
        ISM_PATH,
        &mapping("app", "v1", &digest(1), &reference(1)),
    )
    .await;
    assert_eq!(a.code, 422);
    assert_eq!(a.body["details"]["kind"], "ImageStream");
    assert_eq!(
        causes(&a.body),
        [(
            "status.tags[v1].items[0].dockerImageReference".to_string(),
            "FieldValueForbidden".to_string()
        )]
    );
    let msg = a.body["details"]["causes"][0]["message"].as_str().unwrap();
    assert_eq!(
        msg,
        format!(
            "Forbidden: registry \"registry.example:5000\" not allowed by whitelist: \"{}\", \"quay.io:443\"",
            emulator::INTERNAL_REGISTRY
        )
    );
    assert!(e.tag_events("team", "app", "v1").is_empty());
    assert!(
        e.image(&digest(1)).is_some(),
        "the image was created before the status update failed"
    );
    let ok = format!("quay.io/team/app@{}", digest(2));
    assert_eq!(
        post(&e, ISM_PATH, &mapping("app", "v1", &digest(2), &ok))
            .await
            .code,
        201
    );
}

#[tokio::test]
async fn creating_a_stream_returns_the_stored_object_and_refuses_duplicates_and_bad_names() {
    let e = setup().await;
    let path = "/apis/image.openshift.io/v1/namespaces/team/imagestreams";
    let body = json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": {"name": "app"}});
    let a = post(&e, path, &body).await;
    assert_eq!(a.code, 201);
    assert_eq!(a.body["metadata"]["generation"], 1);
    assert_eq!(a.body["metadata"]["namespace"], "team");
    assert!(
        a.body["metadata"]["uid"].is_string() && a.body["metadata"]["resourceVersion"].is_string()
    );
    assert!(a.body["metadata"]["creationTimestamp"].is_string());
    assert_eq!(
        a.body["status"]["dockerImageRepository"],
        json!(format!("{}/team/app", emulator::INTERNAL_REGISTRY))
    );
    assert_eq!(get(&e, &format!("{path}/app")).await.body, a.body);
    let dup = post(&e, path, &body).await;
    assert_eq!(
        (dup.code, dup.body["reason"].clone()),
        (409, json!("AlreadyExists"))
    );
    let bad = post(&e, path, &json!({"metadata": {"name": "Bad_Name"}})).await;
    assert_eq!(
        causes(&bad.body),
        [("metadata.name".to_string(), "FieldValueInvalid".to_string())]
    );
    let ghost = post(
        &e,
        "/apis/image.openshift.io/v1/namespaces/ghost/imagestreams",
        &body,
    )
    .await;
    assert_eq!(
        (ghost.code, ghost.body["details"]["kind"].clone()),
        (404, json!("namespaces"))
    );
}

#[tokio::test]
async fn unknown_fields_are_dropped_with_a_warning_and_wrong_types_are_400() {
    let e = setup().await;
    e.add_stream("team", "app");
    let mut m = mapping("app", "v1", &digest(1), &reference(1));
    m["image"]["dockerImageLayer"] = json!([]);
    let a = post(&e, ISM_PATH, &m).await;
    assert_eq!(a.code, 201);
    let warning = a.headers.get("warning").unwrap().to_str().unwrap();
    assert!(warning.contains("image.dockerImageLayer"), "{warning}");
    assert!(
        e.image(&digest(1))
            .unwrap()
            .get("dockerImageLayer")
            .is_none()
    );
    let mut bad = mapping("app", "v1", &digest(2), &reference(2));
    bad["image"]["dockerImageLayers"] =
        json!([{"name": digest(3), "size": "12", "mediaType": "a/b"}]);
    assert_eq!(post(&e, ISM_PATH, &bad).await.code, 400);
}
