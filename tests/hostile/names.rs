//! Hostile names in well-formed events (SPEC §4, §1): repositories, tags and digests that could escape a URL
//! path, a namespace or a file name are not actionable — 200 (a registry retries any non-2xx forever and holds
//! later events behind it), counted as ignored, nothing queued, nothing written.

use serde_json::{Value, json};
use tempfile::TempDir;

use super::harness::*;

fn with_target(field: &str, value: Value) -> Value {
    let mut e = push("n", "team/app", "v1");
    e["target"][field] = value;
    e
}

#[tokio::test]
async fn hostile_repository_names_tags_and_digests_get_200_and_queue_nothing() {
    let dir = TempDir::new().expect("tmp");
    let d = start_receiver(&dir, 1 << 20).await;
    let long_ok_chars = format!("team/{}", "a".repeat(251));
    assert_eq!(long_ok_chars.len(), 256);
    let repositories = [
        "..",
        "team/..",
        "team/../kube-system/app",
        "../team/app",
        "team/./app",
        "team/%2e%2e/app",
        "team%2fapp",
        "team/%2F..%2Fapp",
        "Team/App",
        "team/APP",
        "team/ápp",
        "tеam/app", // Cyrillic `е`
        "team/app\u{0}",
        "team/app\n",
        " team/app",
        "team/app ",
        "team\\app",
        "team/app:v1",
        "team/app@sha256",
        "team//app",
        "/team/app",
        "team/app/",
        "/",
        "",
        "-team/app",
        "team/app-",
        "team/a..b",
        "team/a._b",
        "team/a___b",
        long_ok_chars.as_str(),
    ];
    let long_tag = "t".repeat(129);
    let tags = [
        "",
        "-v1",
        ".v1",
        "v1/../x",
        "../v1",
        "v1%2f",
        "v 1",
        "v1\n",
        "tág",
        "v1:latest",
        "v1@sha256",
        long_tag.as_str(),
    ];
    let digests = [
        "",
        "sha256",
        "sha256:",
        "sha256:zz",
        "sha256:4AFFF550708506C5B8B7384AD10D401A02B29ED587CB2730CB02753095B5178D",
        "sha256:4afff550708506c5b8b7384ad10d401a02b29ed587cb2730cb02753095b5178",
        "sha256:4afff550708506c5b8b7384ad10d401a02b29ed587cb2730cb02753095b5178d0",
        "sha512:4afff550708506c5b8b7384ad10d401a02b29ed587cb2730cb02753095b5178d",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha256:../../../etc/passwd",
        " sha256:4afff550708506c5b8b7384ad10d401a02b29ed587cb2730cb02753095b5178d",
        "SHA256:4afff550708506c5b8b7384ad10d401a02b29ed587cb2730cb02753095b5178d",
    ];
    let mut events: Vec<(String, Value)> = Vec::new();
    for r in repositories {
        events.push((
            format!("repository {r:?}"),
            with_target("repository", json!(r)),
        ));
    }
    for t in tags {
        // An empty tag is a push by digest: not actionable either.
        events.push((format!("tag {t:?}"), with_target("tag", json!(t))));
    }
    for g in digests {
        events.push((format!("digest {g:?}"), with_target("digest", json!(g))));
    }
    let n = events.len();
    for (i, (what, mut e)) in events.into_iter().enumerate() {
        e["id"] = json!(format!("hostile-{i}"));
        let r = post(&d, V1, envelope(&[e])).await;
        assert_eq!(r.status(), 200, "{what}");
    }
    let text = metrics_text(&d).await;
    assert_eq!(notifications(&text, "ignored"), n as f64, "{text}");
    assert_nothing_queued_and_healthy(&d).await;
    let written = std::fs::read_dir(d.dir.join("mappings"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(written, 0, "the directory sink wrote something");

    // All of them in one envelope beside one good event: only the good one is queued (202).
    let mut batch: Vec<Value> = repositories
        .iter()
        .map(|r| with_target("repository", json!(r)))
        .collect();
    batch.push(push("good", "team/app", "v1"));
    let r = post(&d, V1, envelope(&batch)).await;
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["queued"], 1, "{body}");
    let text = metrics_text(&d).await;
    assert_eq!(sample(&text, "imagestream_ingest_queue_depth"), 1.0);
    assert_healthy(&d).await;
}

#[tokio::test]
async fn the_longest_valid_repository_name_is_accepted_and_one_byte_more_is_not() {
    let dir = TempDir::new().expect("tmp");
    let d = start_receiver(&dir, 1 << 20).await;
    let at_limit = format!("team/{}", "a".repeat(250));
    assert_eq!(at_limit.len(), 255);
    let over = format!("{at_limit}b");
    let r = post(&d, V1, envelope(&[push("over", &over, "v1")])).await;
    assert_eq!(r.status(), 200);
    let r = post(&d, V1, envelope(&[push("limit", &at_limit, "v1")])).await;
    assert_eq!(r.status(), 202);
    let text = metrics_text(&d).await;
    assert_eq!(notifications(&text, "queued"), 1.0);
    assert_eq!(notifications(&text, "ignored"), 1.0);
    assert_healthy(&d).await;
}

#[tokio::test]
async fn an_envelope_repeating_one_event_or_one_tag_queues_it_once() {
    let dir = TempDir::new().expect("tmp");
    let d = start_receiver(&dir, 1 << 20).await;
    // The same event id three times, then the same tag under new ids: one job.
    let same = push("rep-1", "team/app", "v1");
    let batch = [
        same.clone(),
        same.clone(),
        same,
        push("rep-2", "team/app", "v1"),
        push("rep-3", "team/app", "v1"),
    ];
    let r = post(&d, V1, envelope(&batch)).await;
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["queued"], 1, "{body}");
    // A long event id (512 KiB) is just an id: accepted once, a duplicate the second time.
    let long_id = "i".repeat(512 * 1024);
    let e = push(&long_id, "team/app", "v2");
    assert_eq!(
        post(&d, V1, envelope(std::slice::from_ref(&e)))
            .await
            .status(),
        202
    );
    assert_eq!(post(&d, V1, envelope(&[e])).await.status(), 200);
    let text = metrics_text(&d).await;
    assert_eq!(
        sample(&text, "imagestream_ingest_queue_depth"),
        2.0,
        "{text}"
    );
    assert_eq!(notifications(&text, "queued"), 2.0);
    assert_healthy(&d).await;
}
