//! Hostile bodies and headers at the notification endpoint (SPEC §4): malformed, truncated, wrongly typed and
//! deeply nested JSON → 400; oversized bodies → 413 without buffering them; foreign content types → 415;
//! bad or missing credentials → 401 with `WWW-Authenticate`. Nothing of it may be queued.

use serde_json::json;
use tempfile::TempDir;

use super::harness::*;
use crate::support::daemon::NOTIFY_TOKEN;

const MIB: usize = 1 << 20;

#[tokio::test]
async fn malformed_truncated_wrongly_typed_and_deeply_nested_json_gets_400_and_queues_nothing() {
    let dir = TempDir::new().expect("tmp");
    let d = start_receiver(&dir, 4 * MIB as u64).await;
    let valid = envelope(&[push("e1", "team/app", "v1")]);

    let mut bodies: Vec<(String, Vec<u8>)> = Vec::new();
    // Truncated at every 7th byte of a valid envelope (each prefix is an unfinished document).
    for cut in (0..valid.len()).step_by(7) {
        bodies.push((format!("truncated at {cut}"), valid[..cut].to_vec()));
    }
    let malformed: &[&[u8]] = &[
        b"",
        b"null",
        b"{",
        b"}",
        b"[]",
        b"\"events\"",
        b"{events: []}",
        b"{'events': []}",
        b"{\"events\": [],}",
        b"{\"events\": []} trailing",
        b"{\"events\": [NaN]}",
        b"{\"events\": [] /* comment */}",
        b"\xef\xbb\xbf{\"events\": []}",
        b"{\"events\": [{\"action\": \"push\", \"target\": {\"repository\": \"a\xff/b\"}}]}",
        b"{\"events\": [{\"action\": \"push\", \"target\": {\"repository\": \"\\ud800\"}}]}",
        b"{\"events\": [], \"events\": []}",
        b"\x00\x01\x02\x03",
    ];
    for (i, b) in malformed.iter().enumerate() {
        bodies.push((format!("malformed #{i}"), b.to_vec()));
    }
    // Every field of the envelope with a JSON type the format does not allow.
    let wrong_types = [
        json!({"events": "push"}),
        json!({"events": {"0": {}}}),
        json!({"events": [1]}),
        json!({"events": [null]}),
        json!({"events": [[]]}),
        json!({"events": [{"id": 5, "action": "push"}]}),
        json!({"events": [{"action": true}]}),
        json!({"events": [{"action": "push", "target": "team/app:v1"}]}),
        json!({"events": [{"action": "push", "target": [DIGEST]}]}),
        json!({"events": [{"action": "push", "target": {"repository": ["team", "app"], "tag": "v1"}}]}),
        json!({"events": [{"action": "push", "target": {"repository": "team/app", "tag": 1}}]}),
        json!({"events": [{"action": "push", "target": {"repository": "team/app", "tag": "v1", "digest": false}}]}),
        json!({"events": [{"action": "push", "target": {"mediaType": {"type": DOCKER_MANIFEST}, "repository": "team/app", "tag": "v1"}}]}),
        json!({"events": [{"action": "push", "timestamp": 1_700_000_000, "target": {"repository": "team/app", "tag": "v1"}}]}),
    ];
    for (i, v) in wrong_types.iter().enumerate() {
        bodies.push((
            format!("wrong type #{i}"),
            serde_json::to_vec(v).expect("json"),
        ));
    }
    // 100k levels of nesting, as the whole body and as the value of a field the envelope does read.
    let depth = 100_000;
    bodies.push((
        "100k nested arrays".into(),
        format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes(),
    ));
    bodies.push((
        "100k nested objects".into(),
        format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth)).into_bytes(),
    ));
    bodies.push((
        "100k nested in target".into(),
        format!(
            "{{\"events\": [{{\"action\": \"push\", \"target\": {}{}}}]}}",
            "[".repeat(depth),
            "]".repeat(depth)
        )
        .into_bytes(),
    ));

    let n = bodies.len();
    for (what, body) in bodies {
        let r = post(&d, V1, body).await;
        assert_eq!(r.status(), 400, "{what}");
    }
    let text = metrics_text(&d).await;
    assert_eq!(notifications(&text, "malformed"), n as f64, "{text}");
    assert_nothing_queued_and_healthy(&d).await;
}

/// `event` as an envelope whose `field` holds `value` verbatim (too deep for `serde_json::Value`).
fn envelope_with_raw(event: serde_json::Value, field: &str, value: &str) -> Vec<u8> {
    const MARK: &str = "__raw_value__";
    let mut event = event;
    event[field] = json!(MARK);
    String::from_utf8(envelope(&[event]))
        .expect("utf-8")
        .replacen(&format!("\"{MARK}\""), value, 1)
        .into_bytes()
}

#[tokio::test]
async fn deep_nesting_in_fields_the_envelope_does_not_read_is_skipped_without_harm() {
    let dir = TempDir::new().expect("tmp");
    let d = start_receiver(&dir, 4 * MIB as u64).await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    // `request`, `actor`, `source` and unknown fields are skipped, however deep: the event itself decides.
    for (i, field) in ["request", "actor", "source", "unknown"].iter().enumerate() {
        let mut e = push(&format!("deep-{i}"), "team/app", "v1");
        e["action"] = json!("pull");
        let body = envelope_with_raw(e, field, &deep);
        assert_eq!(post(&d, V1, body).await.status(), 200, "{field}");
    }
    assert_nothing_queued_and_healthy(&d).await;
    // The same junk beside a well-formed push: the push is queued once.
    let body = envelope_with_raw(push("deep-push", "team/app", "v1"), "request", &deep);
    assert_eq!(post(&d, V1, body).await.status(), 202);
    let text = metrics_text(&d).await;
    assert_eq!(notifications(&text, "queued"), 1.0);
    assert_eq!(sample(&text, "imagestream_ingest_queue_depth"), 1.0);
    assert_healthy(&d).await;
}

#[tokio::test]
async fn bodies_over_max_body_bytes_get_413_by_length_and_chunked_without_being_buffered() {
    let dir = TempDir::new().expect("tmp");
    let d = start_receiver(&dir, MIB as u64).await;
    let auth = format!("Authorization: Bearer {NOTIFY_TOKEN}");
    let ct = format!("Content-Type: {V1}");

    // By Content-Length: answered from the headers alone, before any body byte is sent.
    let head = notify_head(
        d.port,
        &[&auth, &ct, &format!("Content-Length: {}", 50 * MIB)],
    );
    let r = raw_exchange(d.port, &head, false, 0, 0).await;
    assert_eq!(r.status, 413, "{}", r.head);
    // One byte over the limit, sent in full.
    let r = post(&d, V1, vec![b' '; MIB + 1]).await;
    assert_eq!(r.status(), 413);
    // Exactly at the limit is read and parsed (whitespace is not an envelope: 400, not 413).
    let r = post(&d, V1, vec![b' '; MIB]).await;
    assert_eq!(r.status(), 400);

    let pid = d.pid().expect("daemon pid");
    let before = peak_rss_kib(pid);
    // Chunked, 50 MiB in 1 MiB chunks, no Content-Length: refused as soon as the limit is crossed.
    let head = notify_head(d.port, &[&auth, &ct, "Transfer-Encoding: chunked"]);
    let r = raw_exchange(d.port, &head, true, 50, MIB).await;
    assert_eq!(r.status, 413, "{}", r.head);
    assert!(
        r.sent_before_reply < (50 * MIB) as u64,
        "413 came only after the whole 50 MiB was sent ({} bytes)",
        r.sent_before_reply
    );
    // A second one on another connection while the first may still be draining.
    let r = raw_exchange(d.port, &head, true, 50, MIB).await;
    assert_eq!(r.status, 413, "{}", r.head);
    let after = peak_rss_kib(pid);
    // The daemon's own footprint (~30 MiB in a debug build) is there before; what 100 MiB of refused
    // chunks may add must stay far below one of them.
    assert!(
        after < before + 8 * 1024,
        "peak RSS grew from {before} KiB to {after} KiB: the body was buffered"
    );

    let text = metrics_text(&d).await;
    assert_eq!(notifications(&text, "too_large"), 4.0, "{text}");
    assert_nothing_queued_and_healthy(&d).await;
}

#[tokio::test]
async fn content_types_that_cannot_carry_an_envelope_get_415_and_queue_nothing() {
    let dir = TempDir::new().expect("tmp");
    let d = start_receiver(&dir, MIB as u64).await;
    let body = envelope(&[push("ct", "team/app", "v1")]);
    let types = [
        "text/plain",
        "text/html",
        "text/json",
        "application/xml",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/octet-stream",
        "application/jsonx",
        "application/json-seq",
        "application/vnd.docker.distribution.events.v3+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/cloudevents+json",
        "image/png",
        "*/*",
    ];
    for ct in types {
        let r = post(&d, ct, body.clone()).await;
        assert_eq!(r.status(), 415, "{ct}");
    }
    let text = metrics_text(&d).await;
    assert_eq!(notifications(&text, "malformed"), types.len() as f64);
    assert_nothing_queued_and_healthy(&d).await;
    // Parameters and case do not matter for the accepted types.
    let r = post(&d, "Application/JSON; charset=utf-8", body).await;
    assert_eq!(r.status(), 202);
    let text = metrics_text(&d).await;
    assert_eq!(sample(&text, "imagestream_ingest_queue_depth"), 1.0);
}

#[tokio::test]
async fn bad_and_missing_credentials_get_401_with_www_authenticate_before_the_body_is_read() {
    let dir = TempDir::new().expect("tmp");
    let d = start_receiver(&dir, MIB as u64).await;
    let body = envelope(&[push("auth", "team/app", "v1")]);
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let values = [
        String::new(),
        "Bearer".into(),
        "Bearer ".into(),
        format!("Bearer{NOTIFY_TOKEN}"),
        format!("Bearer  {NOTIFY_TOKEN}"),
        format!("Bearer\t{NOTIFY_TOKEN}"),
        format!("Token {NOTIFY_TOKEN}"),
        format!("Bearer {NOTIFY_TOKEN}x"),
        format!("Bearer x{NOTIFY_TOKEN}"),
        format!("Bearer {}", &NOTIFY_TOKEN[1..]),
        format!("Bearer {}", NOTIFY_TOKEN.to_uppercase()),
        format!("Bearer {NOTIFY_TOKEN}\\n"),
        format!("Bearer {NOTIFY_TOKEN}%0A"),
        format!("Bearer {NOTIFY_TOKEN} {NOTIFY_TOKEN}"),
        format!("Bearer {}", b64(NOTIFY_TOKEN)),
        format!("Basic {}", b64(&format!("reg:{NOTIFY_TOKEN}"))),
        format!("Basic {}", b64(NOTIFY_TOKEN)),
        format!("Basic {NOTIFY_TOKEN}"),
        NOTIFY_TOKEN.to_string(),
    ];
    let client = reqwest::Client::new();
    for v in &values {
        let mut req = client
            .post(format!("{}/notify/reg", d.url()))
            .header("content-type", V1)
            .body(body.clone());
        if !v.is_empty() {
            req = req.header("authorization", v.as_str());
        }
        let r = req.send().await.expect("post");
        assert_eq!(r.status(), 401, "Authorization: {v:?}");
        let challenge = r
            .headers()
            .get("www-authenticate")
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(challenge.starts_with("Bearer"), "{v:?}: {challenge:?}");
    }
    // The token elsewhere than in Authorization.
    let elsewhere = [
        client
            .post(format!(
                "{}/notify/reg?access_token={NOTIFY_TOKEN}",
                d.url()
            ))
            .header("content-type", V1),
        client
            .post(format!("{}/notify/reg", d.url()))
            .header("content-type", V1)
            .header("x-auth", NOTIFY_TOKEN)
            .header("cookie", format!("token={NOTIFY_TOKEN}")),
    ];
    for req in elsewhere {
        let r = req.body(body.clone()).send().await.expect("post");
        assert_eq!(r.status(), 401);
        assert!(r.headers().get("www-authenticate").is_some());
    }
    // Authentication comes first: a huge declared body or garbage with bad credentials is a 401.
    let head = notify_head(
        d.port,
        &[
            "Authorization: Bearer wrong",
            &format!("Content-Length: {}", 50 * MIB),
        ],
    );
    let r = raw_exchange(d.port, &head, false, 0, 0).await;
    assert_eq!(r.status, 401, "{}", r.head);
    assert!(r.head.contains("www-authenticate: bearer"), "{}", r.head);
    let r = client
        .post(format!("{}/notify/reg", d.url()))
        .header("content-type", "text/html")
        .body(&b"{"[..])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 401);

    let unauthorized = values.len() + 4;
    let text = metrics_text(&d).await;
    assert_eq!(
        notifications(&text, "unauthorized"),
        unauthorized as f64,
        "{text}"
    );
    assert_eq!(notifications(&text, "malformed"), 0.0);
    assert_nothing_queued_and_healthy(&d).await;
    // The token file ends with a newline (as a mounted Secret often does); the token itself works.
    let r = post(&d, V1, body).await;
    assert_eq!(r.status(), 202);
    let text = metrics_text(&d).await;
    assert_eq!(sample(&text, "imagestream_ingest_queue_depth"), 1.0);
}

#[tokio::test]
async fn a_gzip_bomb_is_refused_without_inflating_it_in_memory() {
    use std::io::Write as _;
    let dir = TempDir::new().expect("tmp");
    let d = start_receiver(&dir, MIB as u64).await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    for _ in 0..64 {
        gz.write_all(&vec![b' '; MIB]).expect("gzip");
    }
    let bomb = gz.finish().expect("gzip");
    assert!(bomb.len() < MIB / 4, "{} bytes", bomb.len());
    let pid = d.pid().expect("daemon pid");
    let before = peak_rss_kib(pid);
    let r = reqwest::Client::new()
        .post(format!("{}/notify/reg", d.url()))
        .bearer_auth(NOTIFY_TOKEN)
        .header("content-type", V1)
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .expect("post");
    let status = r.status().as_u16();
    let after = peak_rss_kib(pid);
    // Not inflated at all (400: gzip bytes are not an envelope), or refused once past the limit (413/415).
    assert!(
        [400, 413, 415].contains(&status),
        "64 MiB inflated from a small body: {status}"
    );
    assert!(
        after < before + 8 * 1024,
        "peak RSS grew from {before} KiB to {after} KiB: the body was inflated in memory"
    );
    assert_nothing_queued_and_healthy(&d).await;
}
