//! Harbor 2.x webhooks, both payload formats (SPEC §4):
//!
//! - Default: `{"type":"PUSH_ARTIFACT","occur_at":…,"event_data":{"resources":[…],"repository":{…}}}`;
//! - CloudEvents (structured, `application/cloudevents+json`): `type: harbor.artifact.pushed`, `data` holds
//!   what the Default format puts in `event_data`.
//!
//! One push per tagged resource. The repository is `repository.repo_full_name` (`project/repo`, the
//! registry path). Harbor sometimes puts the digest in `tag` (proxy cache, robot pushes): that is a push by
//! digest and maps nothing. `resource_url` holds a host and is deliberately not deserialised.

use serde::Deserialize;

use super::{Origin, ParseError, PushFields, push_notice, sub_event_id};
use crate::event::Notice;

/// Event type of a push in the Default format.
pub const DEFAULT_PUSH: &str = "PUSH_ARTIFACT";
/// Event type of a push in the CloudEvents format.
pub const CLOUDEVENT_PUSH: &str = "harbor.artifact.pushed";

/// Either format; told apart by `specversion`, which only a CloudEvent has.
#[derive(Deserialize)]
struct Envelope {
    specversion: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    /// CloudEvents id.
    #[serde(default)]
    id: String,
    /// CloudEvents time (RFC 3339).
    time: Option<String>,
    /// Default format: Unix seconds.
    occur_at: Option<i64>,
    event_data: Option<EventData>,
    data: Option<EventData>,
}

#[derive(Deserialize)]
struct EventData {
    #[serde(default)]
    resources: Vec<Resource>,
    repository: Option<Repository>,
}

#[derive(Deserialize)]
struct Resource {
    digest: Option<String>,
    tag: Option<String>,
}

#[derive(Deserialize)]
struct Repository {
    #[serde(default)]
    repo_full_name: String,
}

/// Parse a Harbor webhook body (Default or CloudEvents format).
pub fn parse(origin: Origin<'_>, body: &[u8]) -> Result<Vec<Notice>, ParseError> {
    let e: Envelope = serde_json::from_slice(body).map_err(ParseError::Json)?;
    let cloudevent = e.specversion.is_some();
    let (push_type, data) = if cloudevent {
        (CLOUDEVENT_PUSH, e.data)
    } else {
        (DEFAULT_PUSH, e.event_data)
    };
    if e.kind != push_type {
        return Ok(vec![Notice::Ignored {
            reason: "not an artifact push",
        }]);
    }
    let data = data.ok_or(ParseError::Shape("artifact push without event data"))?;
    let repository = data
        .repository
        .map(|r| r.repo_full_name)
        .unwrap_or_default();
    let timestamp = e.time.or_else(|| e.occur_at.map(unix_to_rfc3339));
    // The Default format has no id; Harbor re-sends the same body after a timeout, so derive a stable one.
    let base_id = if cloudevent {
        e.id
    } else {
        match e.occur_at {
            Some(at) => format!("harbor:{at}:{repository}"),
            None => String::new(),
        }
    };
    Ok(data
        .resources
        .iter()
        .map(|r| {
            let tag = r.tag.as_deref().unwrap_or_default();
            let digest = r.digest.as_deref().unwrap_or_default();
            push_notice(
                origin,
                PushFields {
                    event_id: sub_event_id(&base_id, &format!("{tag}@{digest}")),
                    repository: &repository,
                    tag: r.tag.as_deref(),
                    digest: r.digest.as_deref(),
                    media_type: None,
                    timestamp: timestamp.clone(),
                },
            )
        })
        .collect())
}

fn unix_to_rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::test_support::*;
    use serde_json::json;

    const DEFAULT: &[u8] =
        include_bytes!("../../fixtures/notifications/harbor/push-artifact-default.json");
    const MULTI: &[u8] =
        include_bytes!("../../fixtures/notifications/harbor/push-artifact-multi.json");
    const PULL: &[u8] =
        include_bytes!("../../fixtures/notifications/harbor/pull-artifact-default.json");
    const CLOUDEVENT: &[u8] =
        include_bytes!("../../fixtures/notifications/harbor/artifact-pushed-cloudevent.json");
    const D1: &str = "sha256:f079a57f1a4b4b515ef76af8f784208ad36a39869bb5e5a9cb3929355b388175";

    #[test]
    fn both_formats_give_one_push_per_tagged_resource() {
        for (name, body, id) in [
            ("default", DEFAULT, "harbor:1767323045:team/app#v1@"),
            (
                "cloudevent",
                CLOUDEVENT,
                "2ec326a7-ffb3-40f9-8a5e-b8a3b6e9a06a#v1@",
            ),
        ] {
            let notices = parse(ORIGIN, body).expect("parse");
            assert_eq!(notices.len(), 1, "{name}");
            let p = push(&notices[0]);
            assert_eq!(
                (p.repository.as_str(), p.tag.as_str()),
                ("team/app", "v1"),
                "{name}"
            );
            assert_eq!(p.digest.as_deref(), Some(D1), "{name}");
            assert_eq!(p.event_id, format!("{id}{D1}"), "{name}");
            assert_eq!(p.registry, "reg", "{name}");
            assert!(
                p.timestamp
                    .as_deref()
                    .is_some_and(|t| t.starts_with("2026-01-02T")),
                "{name}"
            );
        }
    }

    #[test]
    fn a_tag_that_is_really_a_digest_is_a_push_by_digest() {
        let notices = parse(ORIGIN, MULTI).expect("parse");
        assert_eq!(notices.len(), 3);
        assert_eq!(push(&notices[0]).tag, "v1");
        assert_eq!(push(&notices[1]).tag, "latest");
        assert_ne!(push(&notices[0]).event_id, push(&notices[1]).event_id);
        assert_eq!(reason(&notices[2]), "push by digest (no tag)");
    }

    #[test]
    fn other_events_and_bad_names_are_ignored() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (PULL.to_vec(), "not an artifact push"),
            (
                edited(CLOUDEVENT, |v| v["type"] = json!("harbor.artifact.pulled")),
                "not an artifact push",
            ),
            // A Default-format type inside a CloudEvent is not a push of that format.
            (
                edited(CLOUDEVENT, |v| v["type"] = json!("PUSH_ARTIFACT")),
                "not an artifact push",
            ),
            (
                edited(DEFAULT, |v| {
                    v["event_data"]["repository"]["repo_full_name"] = json!("team/../etc")
                }),
                "invalid repository name",
            ),
            (
                edited(DEFAULT, |v| v["event_data"]["repository"] = json!(null)),
                "push without a repository",
            ),
            (
                edited(DEFAULT, |v| {
                    v["event_data"]["resources"][0]["digest"] = json!("md5:1")
                }),
                "invalid digest",
            ),
        ];
        assert_first_ignored(parse, cases);
        let none = edited(DEFAULT, |v| v["event_data"]["resources"] = json!([]));
        assert_eq!(parse(ORIGIN, &none).expect("parse"), vec![]);
    }

    #[test]
    fn bodies_that_are_not_a_harbor_event_are_errors() {
        let bodies: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"[]".to_vec(),
            b"{\"events\": []}".to_vec(),
            edited(DEFAULT, |v| v["event_data"] = json!(null)),
            edited(DEFAULT, |v| v["event_data"]["resources"] = json!("v1")),
            edited(CLOUDEVENT, |v| v["data"] = json!(null)),
        ];
        for body in bodies {
            assert!(
                parse(ORIGIN, &body).is_err(),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
    }
}
