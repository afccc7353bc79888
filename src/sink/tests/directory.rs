//! The directory sink on a temp dir: round trip, atomic replacement, names that try to escape.

use crate::openshift::{Image, ImageStreamMapping, ObjectMeta, build_mapping};
use crate::sink::{DirectorySink, Sink, SinkError, TagEventRef};

const DIGEST_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const DIGEST_B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn image(digest: &str) -> Image {
    Image {
        metadata: ObjectMeta {
            name: digest.to_string(),
            ..ObjectMeta::default()
        },
        docker_image_reference: format!("registry.example:5000/team/app@{digest}"),
        ..Image::default()
    }
}

fn mapping(namespace: &str, stream: &str, tag: &str, digest: &str) -> ImageStreamMapping {
    build_mapping(namespace, stream, tag, image(digest))
}

fn sink() -> (tempfile::TempDir, Sink) {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::Directory(DirectorySink::new(dir.path().join("mappings")));
    (dir, sink)
}

#[tokio::test]
async fn a_written_mapping_is_read_back_as_the_current_tag() {
    let (dir, sink) = sink();
    assert_eq!(sink.current_tag("team", "app", "v1").await.unwrap(), None);

    sink.create_mapping(&mapping("team", "app", "v1", DIGEST_A), false)
        .await
        .unwrap();

    let current = sink.current_tag("team", "app", "v1").await.unwrap();
    assert_eq!(
        current,
        Some(TagEventRef {
            image: DIGEST_A.to_string(),
            docker_image_reference: format!("registry.example:5000/team/app@{DIGEST_A}"),
        })
    );
    let file = dir.path().join("mappings/team/app/v1.json");
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(written["kind"], "ImageStreamMapping");
    assert_eq!(written["metadata"]["namespace"], "team");
    assert_eq!(written["tag"], "v1");
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("\n  \"tag\""),
        "pretty JSON"
    );
    assert_eq!(sink.current_tag("team", "app", "v2").await.unwrap(), None);
}

#[tokio::test]
async fn a_second_write_replaces_the_file_and_leaves_no_temp_files() {
    let (dir, sink) = sink();
    sink.create_mapping(&mapping("team", "app", "latest", DIGEST_A), true)
        .await
        .unwrap();
    sink.create_mapping(&mapping("team", "app", "latest", DIGEST_B), true)
        .await
        .unwrap();

    let current = sink
        .current_tag("team", "app", "latest")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current.image, DIGEST_B);
    let names: Vec<String> = std::fs::read_dir(dir.path().join("mappings/team/app"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["latest.json".to_string()]);
}

#[tokio::test]
async fn names_that_would_escape_the_directory_are_rejected_before_any_write() {
    let (dir, sink) = sink();
    let attempts = [
        ("..", "app", "v1"),
        ("team", "..", "v1"),
        ("team", ".", "v1"),
        ("team/x", "app", "v1"),
        ("team", "app/../../x", "v1"),
        ("team", "app", "../v1"),
        ("team", "app", ".hidden"),
        ("team", "a%2F..", "v1"),
        ("Team", "app", "v1"),
        ("", "app", "v1"),
        ("team", "", "v1"),
        ("team", "app", ""),
    ];
    for (namespace, stream, tag) in attempts {
        let got = sink
            .create_mapping(&mapping(namespace, stream, tag, DIGEST_A), true)
            .await;
        assert!(
            matches!(got, Err(SinkError::Invalid { .. })),
            "{namespace:?}/{stream:?}:{tag:?} gave {got:?}"
        );
        let read = sink.current_tag(namespace, stream, tag).await;
        assert!(matches!(read, Err(SinkError::Invalid { .. })), "{read:?}");
    }
    assert!(
        !dir.path().join("mappings").exists(),
        "nothing may be written"
    );
}

#[tokio::test]
async fn images_are_written_once_under_the_underscore_directory() {
    let (dir, sink) = sink();
    sink.create_image(&image(DIGEST_A)).await.unwrap();
    let path = dir
        .path()
        .join("mappings/_images")
        .join(format!("{}.json", DIGEST_A.replace(':', "_")));
    let first = std::fs::read(&path).unwrap();
    let stored: Image = serde_json::from_slice(&first).unwrap();
    assert_eq!(stored.metadata.name, DIGEST_A);

    // Images are immutable once created: a second create with other data keeps the first.
    let mut changed = image(DIGEST_A);
    changed.docker_image_reference = "elsewhere.example/x@sha256:00".into();
    sink.create_image(&changed).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), first);

    let mut escaping = image("../../etc/passwd");
    escaping.metadata.name = "../x".into();
    assert!(matches!(
        sink.create_image(&escaping).await,
        Err(SinkError::Invalid { .. })
    ));
}

#[tokio::test]
async fn ping_creates_the_directory_and_fails_when_it_cannot_be_written() {
    let (dir, sink) = sink();
    sink.ping().await.unwrap();
    assert!(dir.path().join("mappings").is_dir());
    assert!(
        std::fs::read_dir(dir.path().join("mappings"))
            .unwrap()
            .next()
            .is_none()
    );
    assert!(sink.last_answer_ms() > 0);

    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let blocked = Sink::Directory(DirectorySink::new(file.join("sub")));
    assert!(matches!(blocked.ping().await, Err(SinkError::Io(_))));
}
