//! Docker Hub repository webhooks (SPEC §4): `push_data.tag` + `repository.repo_name`.
//!
//! Docker Hub only sends pushes, names **no digest** (the worker resolves the tag) and has no sender
//! authentication of its own (see the README for how the source is protected). `callback_url` is a
//! legacy field and is deliberately not deserialised. The id is derived from `pushed_at`, so a re-sent
//! body is recognised while a later push of the same tag is not mistaken for it.

use serde::Deserialize;

use super::{Origin, ParseError, PushFields, push_notice};
use crate::event::Notice;

#[derive(Deserialize)]
struct Event {
    push_data: PushData,
    repository: Repository,
}

#[derive(Deserialize)]
struct PushData {
    /// Unix seconds.
    pushed_at: Option<i64>,
    tag: Option<String>,
}

#[derive(Deserialize)]
struct Repository {
    repo_name: String,
}

/// Parse a Docker Hub webhook body.
pub fn parse(origin: Origin<'_>, body: &[u8]) -> Result<Vec<Notice>, ParseError> {
    let e: Event = serde_json::from_slice(body).map_err(ParseError::Json)?;
    let tag = e.push_data.tag.as_deref().unwrap_or_default();
    let event_id = match e.push_data.pushed_at {
        Some(at) => format!("dockerhub:{at}:{}:{tag}", e.repository.repo_name),
        None => String::new(),
    };
    Ok(vec![push_notice(
        origin,
        PushFields {
            event_id,
            repository: &e.repository.repo_name,
            tag: e.push_data.tag.as_deref(),
            ..PushFields::default()
        },
    )])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::test_support::*;
    use serde_json::json;

    const PUSH: &[u8] = include_bytes!("../../fixtures/notifications/dockerhub/push.json");

    #[test]
    fn a_push_names_repository_and_tag_but_no_digest() {
        let notices = parse(ORIGIN, PUSH).expect("parse");
        let p = push(&notices[0]);
        assert_eq!((p.repository.as_str(), p.tag.as_str()), ("team/app", "v1"));
        assert_eq!(p.digest, None);
        assert_eq!(p.event_id, "dockerhub:1767323045:team/app:v1");
        let stored = serde_json::to_string(p).expect("json");
        assert!(!stored.contains("invalid"), "payload URL leaked: {stored}");
    }

    #[test]
    fn pushes_without_a_usable_tag_or_repository_are_ignored() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                edited(PUSH, |v| v["push_data"]["tag"] = json!(null)),
                "push by digest (no tag)",
            ),
            (
                edited(PUSH, |v| v["push_data"]["tag"] = json!("")),
                "push by digest (no tag)",
            ),
            (
                edited(PUSH, |v| v["push_data"]["tag"] = json!("a b")),
                "invalid tag",
            ),
            (
                edited(PUSH, |v| v["repository"]["repo_name"] = json!("team//app")),
                "invalid repository name",
            ),
        ];
        assert_first_ignored(parse, cases);
        let no_time = edited(PUSH, |v| v["push_data"]["pushed_at"] = json!(null));
        assert!(
            !push(&parse(ORIGIN, &no_time).expect("parse")[0])
                .event_id
                .is_empty()
        );
    }

    #[test]
    fn bodies_that_are_not_a_docker_hub_event_are_errors() {
        let bodies: Vec<Vec<u8>> = vec![
            b"{}".to_vec(),
            b"[]".to_vec(),
            edited(PUSH, |v| v["repository"] = json!("team/app")),
            edited(PUSH, |v| v["push_data"] = json!(null)),
            edited(PUSH, |v| v["repository"]["repo_name"] = json!(5)),
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
