//! Azure Container Registry webhooks (SPEC §4): one bare event per request, shaped like a distribution
//! event but without the `{"events":[…]}` envelope: `id`, `timestamp`, `action`,
//! `target{mediaType,size,digest,repository,tag}`, `request{…}`.
//!
//! Acts on `push` of a manifest media type with a tag. ACR's `delete` is a manifest delete (tag deletes
//! fire nothing), and `chart_push`/`chart_delete` are Helm charts: all well-formed, none actionable.
//! `request.host` is client-controlled and deliberately not deserialised.

use serde::Deserialize;

use super::distribution::Target;
use super::{Origin, ParseError, PushFields, push_notice};
use crate::event::Notice;
use crate::manifest::is_manifest_media_type;

#[derive(Deserialize)]
struct Event {
    #[serde(default)]
    id: String,
    timestamp: Option<String>,
    action: String,
    #[serde(default)]
    target: Target,
}

/// Parse an ACR webhook body.
pub fn parse(origin: Origin<'_>, body: &[u8]) -> Result<Vec<Notice>, ParseError> {
    let e: Event = serde_json::from_slice(body).map_err(ParseError::Json)?;
    let ignored = |reason| Ok(vec![Notice::Ignored { reason }]);
    match e.action.as_str() {
        "push" => {}
        "delete" => return ignored("manifest delete"),
        "chart_push" | "chart_delete" => return ignored("helm chart event"),
        _ => return ignored("unknown action"),
    }
    let t = e.target;
    match t.media_type.as_deref() {
        None => return ignored("push without a media type"),
        Some(mt) if !is_manifest_media_type(mt) => {
            return ignored("push of a blob or unsupported manifest type");
        }
        Some(_) => {}
    }
    Ok(vec![push_notice(
        origin,
        PushFields {
            event_id: e.id,
            repository: t.repository.as_deref().unwrap_or_default(),
            tag: t.tag.as_deref(),
            digest: t.digest.as_deref(),
            media_type: t.media_type.as_deref(),
            timestamp: e.timestamp,
        },
    )])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::test_support::*;
    use serde_json::json;

    const PUSH: &[u8] = include_bytes!("../../fixtures/notifications/acr/push.json");
    const CHART: &[u8] = include_bytes!("../../fixtures/notifications/acr/chart-push.json");
    const D1: &str = "sha256:f079a57f1a4b4b515ef76af8f784208ad36a39869bb5e5a9cb3929355b388175";

    #[test]
    fn a_bare_push_event_becomes_a_push_without_the_request_host() {
        let notices = parse(ORIGIN, PUSH).expect("parse");
        let p = push(&notices[0]);
        assert_eq!((p.repository.as_str(), p.tag.as_str()), ("team/app", "v1"));
        assert_eq!(p.digest.as_deref(), Some(D1));
        assert_eq!(p.event_id, "0edc52bf-d369-47ce-aaf2-a65e535d351e");
        let stored = serde_json::to_string(p).expect("json");
        assert!(!stored.contains("evil"), "payload host leaked: {stored}");
    }

    #[test]
    fn deletes_charts_and_untagged_or_blob_pushes_are_ignored() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (CHART.to_vec(), "helm chart event"),
            (
                edited(PUSH, |v| v["action"] = json!("delete")),
                "manifest delete",
            ),
            (
                edited(PUSH, |v| v["action"] = json!("quarantine")),
                "unknown action",
            ),
            (
                edited(PUSH, |v| v["target"]["tag"] = json!(null)),
                "push by digest (no tag)",
            ),
            (
                edited(PUSH, |v| {
                    v["target"]["mediaType"] = json!("application/octet-stream")
                }),
                "push of a blob or unsupported manifest type",
            ),
            (
                edited(PUSH, |v| v["target"]["mediaType"] = json!(null)),
                "push without a media type",
            ),
            (
                edited(PUSH, |v| v["target"]["repository"] = json!("hello world")),
                "invalid repository name",
            ),
        ];
        assert_first_ignored(parse, cases);
    }

    #[test]
    fn bodies_that_are_not_a_bare_acr_event_are_errors() {
        let enveloped = format!("{{\"events\": [{}]}}", String::from_utf8_lossy(PUSH));
        let bodies: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"[]".to_vec(),
            enveloped.into_bytes(),
            edited(PUSH, |v| v["target"] = json!("x")),
            edited(PUSH, |v| v["action"] = json!(1)),
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
