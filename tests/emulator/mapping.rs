//! The ImageStreamMapping pipeline: validation 422s, defaults, the 201 Status, the tag-event merge
//! rules, image immutability, the managed-image reference rewrite, tracking tags and `dryRun`.

use super::*;

#[tokio::test]
async fn validation_failures_are_422_with_field_causes() {
    let e = setup().await;
    e.set_internal_registry(None);
    e.add_stream("team", "app");
    let body = json!({"metadata": {"name": "app"}, "tag": "",
        "image": {"metadata": {"namespace": "team"}, "dockerImageReference": "Not A Reference",
            "dockerImageLayers": [{"name": digest(3), "size": 1, "mediaType": "x/y"}],
            "dockerImageManifests": [{"digest": "nope", "mediaType": "bad", "manifestSize": -1}]}});
    let a = post(&e, ISM_PATH, &body).await;
    assert_eq!(a.code, 422);
    assert_eq!(a.body["reason"], "Invalid");
    assert_eq!(a.body["details"]["kind"], "ImageStreamMapping");
    let got = causes(&a.body);
    for want in [
        ("tag", "FieldValueRequired"),
        ("image.metadata.name", "FieldValueRequired"),
        ("image.metadata.namespace", "FieldValueForbidden"),
        ("image.dockerImageReference", "FieldValueInvalid"),
        ("image.dockerImageManifests[0].digest", "FieldValueInvalid"),
        (
            "image.dockerImageManifests[0].mediaType",
            "FieldValueInvalid",
        ),
        (
            "image.dockerImageManifests[0].architecture",
            "FieldValueRequired",
        ),
        ("image.dockerImageManifests[0].os", "FieldValueRequired"),
        ("image.dockerImageManifests[0].size", "FieldValueInvalid"),
        ("image.dockerImageLayers", "FieldValueInvalid"),
    ] {
        assert!(
            got.contains(&(want.0.to_string(), want.1.to_string())),
            "missing {want:?} in {got:?}"
        );
    }
    let mut m = mapping("a/b", "v1", &digest(1), "");
    m["metadata"]["name"] = json!("a/b");
    let b = post(&e, ISM_PATH, &m).await;
    let got = causes(&b.body);
    assert!(
        got.contains(&("metadata.name".into(), "FieldValueInvalid".into())),
        "{got:?}"
    );
    assert!(
        got.contains(&(
            "image.dockerImageReference".into(),
            "FieldValueRequired".into()
        )),
        "{got:?}"
    );
    assert_eq!(e.image_count(), 0);
}

#[tokio::test]
async fn the_server_only_requires_a_non_empty_tag_and_defaults_an_empty_reference() {
    let e = setup().await;
    e.add_stream("team", "app");
    assert_eq!(
        post(
            &e,
            ISM_PATH,
            &mapping("app", "Not a/valid:tag!", &digest(1), &reference(1))
        )
        .await
        .code,
        201
    );
    assert_eq!(e.tag_events("team", "app", "Not a/valid:tag!").len(), 1);
    assert_eq!(
        post(&e, ISM_PATH, &mapping("app", "v2", &digest(2), ""))
            .await
            .code,
        201
    );
    let expected = format!("{}/team/app@{}", emulator::INTERNAL_REGISTRY, digest(2));
    assert_eq!(
        e.tag_events("team", "app", "v2")[0]["dockerImageReference"],
        json!(expected)
    );
}

#[tokio::test]
async fn a_mapping_answers_201_with_a_success_status_and_creates_the_image() {
    let e = setup().await;
    e.add_stream("team", "app");
    let a = post(
        &e,
        ISM_PATH,
        &mapping("app", "v1", &digest(1), &reference(1)),
    )
    .await;
    assert_eq!(a.code, 201);
    assert_eq!(
        a.body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
    );
    let events = e.tag_events("team", "app", "v1");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["image"], json!(digest(1)));
    assert_eq!(events[0]["dockerImageReference"], json!(reference(1)));
    assert_eq!(events[0]["generation"], 1);
    let image = get(
        &e,
        &format!("/apis/image.openshift.io/v1/images/{}", digest(1)),
    )
    .await;
    assert_eq!(image.code, 200);
    assert_eq!(image.body["dockerImageMetadata"]["kind"], "DockerImage");
    assert_eq!(image.body["dockerImageMetadataVersion"], "1.0");
    assert!(image.body["metadata"]["uid"].is_string());
}

#[tokio::test]
async fn the_same_image_twice_is_one_event_and_no_write() {
    let e = setup().await;
    e.add_stream("team", "app");
    let m = mapping("app", "v1", &digest(1), &reference(1));
    assert_eq!(post(&e, ISM_PATH, &m).await.code, 201);
    let rv = e.stream("team", "app").unwrap()["metadata"]["resourceVersion"].clone();
    assert_eq!(
        post(&e, ISM_PATH, &m).await.code,
        201,
        "a repeat is still a success"
    );
    assert_eq!(e.tag_events("team", "app", "v1").len(), 1);
    assert_eq!(
        e.stream("team", "app").unwrap()["metadata"]["resourceVersion"],
        rv,
        "nothing was written"
    );
}

#[tokio::test]
async fn a_new_image_prepends_a_second_event_newest_first() {
    let e = setup().await;
    e.add_stream("team", "app");
    post(
        &e,
        ISM_PATH,
        &mapping("app", "v1", &digest(1), &reference(1)),
    )
    .await;
    post(
        &e,
        ISM_PATH,
        &mapping("app", "v1", &digest(2), &reference(2)),
    )
    .await;
    let events = e.tag_events("team", "app", "v1");
    let images: Vec<&Value> = events.iter().map(|ev| &ev["image"]).collect();
    assert_eq!(images, [&json!(digest(2)), &json!(digest(1))]);
}

#[tokio::test]
async fn the_same_reference_with_another_image_is_overwritten_in_place() {
    let e = setup().await;
    e.add_stream("team", "app");
    let tag_ref = "registry.example:5000/team/app:v1";
    post(&e, ISM_PATH, &mapping("app", "v1", &digest(1), tag_ref)).await;
    post(&e, ISM_PATH, &mapping("app", "v1", &digest(2), tag_ref)).await;
    let events = e.tag_events("team", "app", "v1");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["image"], json!(digest(2)));
    // Same image, other reference: the reference is overwritten in place.
    post(
        &e,
        ISM_PATH,
        &mapping("app", "v1", &digest(2), &reference(2)),
    )
    .await;
    let events = e.tag_events("team", "app", "v1");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["dockerImageReference"], json!(reference(2)));
}

#[tokio::test]
async fn images_are_immutable() {
    let e = setup().await;
    e.add_stream("team", "app");
    let image = json!({"metadata": {"name": digest(1)}, "dockerImageReference": "elsewhere.example/x/y@".to_string() + &digest(1)});
    assert_eq!(
        post(&e, "/apis/image.openshift.io/v1/images", &image)
            .await
            .code,
        201
    );
    let again = post(&e, "/apis/image.openshift.io/v1/images", &image).await;
    assert_eq!(
        (again.code, again.body["reason"].clone()),
        (409, json!("AlreadyExists"))
    );
    // A mapping of the same image does not update it, but its tag event uses the submitted reference.
    assert_eq!(
        post(
            &e,
            ISM_PATH,
            &mapping("app", "v1", &digest(1), &reference(1))
        )
        .await
        .code,
        201
    );
    assert_eq!(
        e.image(&digest(1)).unwrap()["dockerImageReference"],
        json!(format!("elsewhere.example/x/y@{}", digest(1)))
    );
    assert_eq!(
        e.tag_events("team", "app", "v1")[0]["dockerImageReference"],
        json!(reference(1))
    );
}

#[tokio::test]
async fn a_managed_existing_image_gets_a_reference_local_to_the_stream() {
    let e = setup().await;
    e.add_stream("team", "app");
    e.add_stream("team", "other");
    let mut m = mapping("other", "v1", &digest(1), &reference(1));
    m["image"]["metadata"]["annotations"]["openshift.io/image.managed"] = json!("true");
    post(&e, ISM_PATH, &m).await;
    assert_eq!(
        e.tag_events("team", "other", "v1")[0]["dockerImageReference"],
        json!(reference(1)),
        "new image: as sent"
    );
    m["metadata"]["name"] = json!("app");
    post(&e, ISM_PATH, &m).await;
    let expected = format!("{}/team/app@{}", emulator::INTERNAL_REGISTRY, digest(1));
    assert_eq!(
        e.tag_events("team", "app", "v1")[0]["dockerImageReference"],
        json!(expected)
    );
}

#[tokio::test]
async fn spec_tags_tracking_the_mapped_tag_get_the_same_event() {
    let e = setup().await;
    e.put_stream(
        "team",
        json!({"metadata": {"name": "app"}, "spec": {"tags": [
            {"name": "latest", "from": {"kind": "ImageStreamTag", "name": "v1"}},
            {"name": "stable", "from": {"kind": "ImageStreamTag", "name": "app:v1"}},
            {"name": "pinned", "from": {"kind": "DockerImage", "name": "quay.io/x/y:v1"}}]}}),
    );
    post(
        &e,
        ISM_PATH,
        &mapping("app", "v1", &digest(1), &reference(1)),
    )
    .await;
    assert_eq!(
        e.tag_events("team", "app", "latest")[0]["image"],
        json!(digest(1))
    );
    assert_eq!(
        e.tag_events("team", "app", "stable")[0]["image"],
        json!(digest(1))
    );
    assert!(e.tag_events("team", "app", "pinned").is_empty());
    let spec_tags = e.stream("team", "app").unwrap()["spec"]["tags"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(spec_tags, 3, "a mapping never creates spec tags");
}

#[tokio::test]
async fn dry_run_all_on_a_mapping_writes_for_real() {
    let e = setup().await;
    e.add_stream("team", "app");
    let a = post(
        &e,
        &format!("{ISM_PATH}?dryRun=All"),
        &mapping("app", "v1", &digest(1), &reference(1)),
    )
    .await;
    assert_eq!(a.code, 201);
    assert_eq!(e.tag_events("team", "app", "v1").len(), 1);
    assert!(e.image(&digest(1)).is_some());
    let b = post(
        &e,
        &format!("{ISM_PATH}?dryRun=Maybe"),
        &mapping("app", "v2", &digest(2), &reference(2)),
    )
    .await;
    assert_eq!(
        (b.code, b.body["details"]["kind"].clone()),
        (422, json!("CreateOptions"))
    );
    // On the images store dryRun is honoured.
    let img = json!({"metadata": {"name": digest(9)}, "dockerImageReference": reference(9)});
    assert_eq!(
        post(&e, "/apis/image.openshift.io/v1/images?dryRun=All", &img)
            .await
            .code,
        201
    );
    assert!(e.image(&digest(9)).is_none());
}

#[tokio::test]
async fn a_new_stream_generation_only_updates_the_generation_of_the_same_event() {
    let e = setup().await;
    e.add_stream("team", "app");
    let m = mapping("app", "v1", &digest(1), &reference(1));
    post(&e, ISM_PATH, &m).await;
    e.bump_generation("team", "app");
    assert_eq!(post(&e, ISM_PATH, &m).await.code, 201);
    let events = e.tag_events("team", "app", "v1");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["generation"], 2);
}
