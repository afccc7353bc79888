//! CNCF distribution 2.x/3.x and GitLab notifications: `{"events":[…]}` (SPEC §4).
//!
//! Acts on `push` of a manifest media type with a `tag`; blob pushes, pulls, mounts and pushes by digest
//! are well-formed but not actionable; a tag `delete` is reported for counting. `target.url`,
//! `request.host` and `source.addr` are client-controlled and deliberately not even deserialised.

use serde::Deserialize;

use super::{Origin, ParseError};
use crate::digest::Digest;
use crate::event::{Notice, PushEvent};
use crate::manifest::is_manifest_media_type;
use crate::mapping::is_valid_tag;
use crate::registry::validate_repository;

#[derive(Deserialize)]
struct Envelope {
    events: Vec<Event>,
}

#[derive(Deserialize)]
struct Event {
    #[serde(default)]
    id: String,
    timestamp: Option<String>,
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: Target,
}

/// An event's `target`; ACR sends the same object without distribution's envelope.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct Target {
    pub(super) media_type: Option<String>,
    pub(super) digest: Option<String>,
    pub(super) repository: Option<String>,
    pub(super) tag: Option<String>,
}

/// Parse a distribution envelope into one notice per event.
pub fn parse(origin: Origin<'_>, body: &[u8]) -> Result<Vec<Notice>, ParseError> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(ParseError::Json)?;
    Ok(envelope
        .events
        .into_iter()
        .map(|e| classify(origin, e))
        .collect())
}

fn classify(origin: Origin<'_>, e: Event) -> Notice {
    let ignored = |reason| Notice::Ignored { reason };
    let t = e.target;
    match e.action.as_str() {
        "push" => {}
        "delete" => {
            return match (t.repository, t.tag) {
                (Some(repository), Some(tag)) if t.digest.is_none() => Notice::TagDeleted {
                    event_id: e.id,
                    repository,
                    tag,
                },
                _ => ignored("delete by digest"),
            };
        }
        "pull" => return ignored("pull"),
        "mount" => return ignored("blob mount"),
        _ => return ignored("unknown action"),
    }
    let Some(media_type) = t.media_type else {
        return ignored("push without a media type");
    };
    if !is_manifest_media_type(&media_type) {
        return ignored("push of a blob or unsupported manifest type");
    }
    let Some(repository) = t.repository else {
        return ignored("push without a repository");
    };
    let Some(tag) = t.tag.filter(|t| !t.is_empty()) else {
        return ignored("push by digest (no tag)");
    };
    if validate_repository(&repository).is_err() {
        return ignored("invalid repository name");
    }
    if !is_valid_tag(&tag) {
        return ignored("invalid tag");
    }
    let digest = match t.digest {
        Some(d) => match Digest::parse(&d) {
            Ok(d) => Some(d.to_string()),
            Err(_) => return ignored("invalid digest"),
        },
        None => None,
    };
    let event_id = if e.id.is_empty() {
        // No id to deduplicate on; the (registry, repository, tag, digest) dedupe still applies.
        uuid::Uuid::new_v4().to_string()
    } else {
        e.id
    };
    Notice::Push(PushEvent {
        source: origin.source.to_string(),
        registry: origin.registry.to_string(),
        event_id,
        repository,
        tag,
        digest,
        media_type: Some(media_type),
        timestamp: e.timestamp,
        received_at_ms: origin.received_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ORIGIN: Origin<'static> = Origin {
        source: "corp",
        registry: "corp",
        received_at_ms: 1,
    };
    const DIGEST: &str = "sha256:4afff550708506c5b8b7384ad10d401a02b29ed587cb2730cb02753095b5178d";

    fn event(action: &str, target: serde_json::Value) -> serde_json::Value {
        json!({"id": format!("id-{action}"), "timestamp": "2026-01-02T03:04:05.123456789Z",
               "action": action, "target": target,
               "request": {"id": "r", "addr": "10.0.0.1:1234", "host": "evil.example", "method": "PUT"},
               "actor": {}, "source": {"addr": "evil.example:5000", "instanceID": "x"}})
    }

    fn parse_one(e: serde_json::Value) -> Notice {
        let body = serde_json::to_vec(&json!({ "events": [e] })).expect("json");
        let mut notices = parse(ORIGIN, &body).expect("parse");
        assert_eq!(notices.len(), 1);
        notices.remove(0)
    }

    #[test]
    fn a_tagged_manifest_push_becomes_a_push_event_without_any_url() {
        let n = parse_one(event(
            "push",
            json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 10, "length": 10,
                   "digest": DIGEST, "repository": "team/app", "tag": "v1",
                   "url": "http://evil.example/v2/team/app/manifests/x"}),
        ));
        let Notice::Push(p) = n else {
            panic!("not a push: {n:?}")
        };
        assert_eq!(p.repository, "team/app");
        assert_eq!(p.tag, "v1");
        assert_eq!(p.digest.as_deref(), Some(DIGEST));
        assert_eq!(p.event_id, "id-push");
        assert_eq!(p.registry, "corp");
        let stored = serde_json::to_string(&p).expect("json");
        assert!(
            !stored.contains("evil"),
            "payload host leaked into the event: {stored}"
        );
    }

    #[test]
    fn non_actionable_events_are_ignored_with_a_reason() {
        let cases = [
            (
                event(
                    "push",
                    json!({"mediaType": "application/octet-stream", "digest": DIGEST, "repository": "a/b"}),
                ),
                "push of a blob or unsupported manifest type",
            ),
            (
                event(
                    "push",
                    json!({"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": DIGEST, "repository": "a/b"}),
                ),
                "push by digest (no tag)",
            ),
            (
                event(
                    "pull",
                    json!({"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": DIGEST, "repository": "a/b", "tag": "v1"}),
                ),
                "pull",
            ),
            (
                event(
                    "mount",
                    json!({"mediaType": "application/octet-stream", "digest": DIGEST, "repository": "a/b"}),
                ),
                "blob mount",
            ),
            (
                event("delete", json!({"digest": DIGEST, "repository": "a/b"})),
                "delete by digest",
            ),
            (
                event(
                    "push",
                    json!({"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": DIGEST, "repository": "A/B", "tag": "v1"}),
                ),
                "invalid repository name",
            ),
            (
                event(
                    "push",
                    json!({"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": DIGEST, "repository": "a/../b", "tag": "v1"}),
                ),
                "invalid repository name",
            ),
            (
                event(
                    "push",
                    json!({"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": DIGEST, "repository": "a/b", "tag": "-bad"}),
                ),
                "invalid tag",
            ),
            (
                event(
                    "push",
                    json!({"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": "sha256:zz", "repository": "a/b", "tag": "v1"}),
                ),
                "invalid digest",
            ),
            (
                event(
                    "push",
                    json!({"mediaType": "application/vnd.docker.distribution.manifest.v1+prettyjws", "digest": DIGEST, "repository": "a/b", "tag": "v1"}),
                ),
                "push of a blob or unsupported manifest type",
            ),
        ];
        for (e, want) in cases {
            match parse_one(e.clone()) {
                Notice::Ignored { reason } => assert_eq!(reason, want, "{e}"),
                other => panic!("{e} gave {other:?}"),
            }
        }
    }

    #[test]
    fn a_tag_delete_is_reported() {
        let n = parse_one(event("delete", json!({"repository": "a/b", "tag": "v1"})));
        assert_eq!(
            n,
            Notice::TagDeleted {
                event_id: "id-delete".into(),
                repository: "a/b".into(),
                tag: "v1".into()
            }
        );
    }

    #[test]
    fn bodies_that_are_not_an_envelope_are_errors() {
        let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        for body in [
            &b""[..],
            b"{",
            b"[]",
            b"{\"events\": {}}",
            b"{\"events\": [1]}",
            b"{\"events\": [{\"id\": 5}]}",
            b"{\"events\": [{\"action\": \"push\", \"target\": \"x\"}]}",
            nested.as_bytes(),
        ] {
            assert!(
                parse(ORIGIN, body).is_err(),
                "{:?} parsed",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn an_empty_envelope_is_valid_and_holds_nothing() {
        assert_eq!(parse(ORIGIN, b"{\"events\": []}").expect("parse"), vec![]);
    }
}
