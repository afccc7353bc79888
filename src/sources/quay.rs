//! Quay "Repository Push" notifications (webhook method), SPEC §4.
//!
//! The body is one flat object: `repository` (`namespace/name`, the registry path), `namespace`, `name`,
//! `docker_url`, `homepage` and `updated_tags[]`. It names **no digest**: each tag becomes one push that
//! the worker resolves at the registry. Every Quay event carries `repository`; only a push carries
//! `updated_tags`, so build and vulnerability events are well-formed but not actionable. Quay sends no id,
//! so each push gets a fresh one (a stable id would hide a later push of the same tag for a day).

use serde::Deserialize;

use super::{Origin, ParseError, PushFields, push_notice};
use crate::event::Notice;

#[derive(Deserialize)]
struct Event {
    repository: String,
    updated_tags: Option<Vec<String>>,
}

/// Parse a Quay notification body.
pub fn parse(origin: Origin<'_>, body: &[u8]) -> Result<Vec<Notice>, ParseError> {
    let e: Event = serde_json::from_slice(body).map_err(ParseError::Json)?;
    let Some(tags) = e.updated_tags else {
        return Ok(vec![Notice::Ignored {
            reason: "not a repository push",
        }]);
    };
    Ok(tags
        .iter()
        .map(|tag| {
            push_notice(
                origin,
                PushFields {
                    repository: &e.repository,
                    tag: Some(tag),
                    ..PushFields::default()
                },
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::test_support::*;
    use serde_json::json;

    const PUSH: &[u8] = include_bytes!("../../fixtures/notifications/quay/repo-push.json");
    const BUILD: &[u8] = include_bytes!("../../fixtures/notifications/quay/build-success.json");

    #[test]
    fn each_updated_tag_is_one_push_without_a_digest() {
        let notices = parse(ORIGIN, PUSH).expect("parse");
        let tags: Vec<&str> = notices.iter().map(|n| push(n).tag.as_str()).collect();
        assert_eq!(tags, ["v1", "latest"]);
        for n in &notices {
            let p = push(n);
            assert_eq!(p.repository, "team/app");
            assert_eq!(p.digest, None);
            assert_eq!(p.registry, "reg");
        }
        assert_ne!(push(&notices[0]).event_id, push(&notices[1]).event_id);
    }

    #[test]
    fn events_that_are_not_pushes_or_name_bad_tags_are_ignored() {
        let cases: Vec<(Vec<u8>, Vec<&str>)> = vec![
            (BUILD.to_vec(), vec!["not a repository push"]),
            (edited(PUSH, |v| v["updated_tags"] = json!([])), vec![]),
            (
                edited(PUSH, |v| v["updated_tags"] = json!(["ok", "-bad", ""])),
                vec!["push", "invalid tag", "push by digest (no tag)"],
            ),
            (
                edited(PUSH, |v| v["repository"] = json!("Team/App")),
                vec!["invalid repository name", "invalid repository name"],
            ),
        ];
        for (body, want) in cases {
            let got: Vec<&str> = parse(ORIGIN, &body)
                .expect("parse")
                .iter()
                .map(|n| match n {
                    Notice::Push(_) => "push",
                    other => reason(other),
                })
                .collect();
            assert_eq!(got, want, "{}", String::from_utf8_lossy(&body));
        }
    }

    #[test]
    fn bodies_that_are_not_a_quay_event_are_errors() {
        let bodies: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"[]".to_vec(),
            edited(PUSH, |v| v["repository"] = json!(null)),
            edited(PUSH, |v| v["updated_tags"] = json!("v1")),
            edited(PUSH, |v| v["updated_tags"] = json!([1])),
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
