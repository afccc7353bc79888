//! JFrog Artifactory webhooks, domain `docker` (SPEC §4):
//! `{domain, event_type, data{repo_key, path, name, sha256, size, image_name, tag, platforms}, …}`.
//!
//! The registry repository is `data.image_name`: `repo_key` names the Artifactory repository, which the
//! configured registry URL already selects (Docker access method "subdomain" or "port"; see the README).
//! `data.sha256` is the checksum of the manifest file (`manifest.json`, or `list.manifest.json` for a
//! list), i.e. the manifest digest. Artifactory sends no event id and no timestamp. A `deleted` event of a
//! tag is reported as a tag delete; `promoted` and other domains are not actionable. `jpd_origin` is a URL
//! and is deliberately not deserialised.

use serde::Deserialize;

use super::{Origin, ParseError, PushFields, push_notice};
use crate::event::Notice;

/// The only domain that describes container images.
pub const DOMAIN_DOCKER: &str = "docker";

#[derive(Deserialize)]
struct Event {
    domain: String,
    event_type: String,
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(default)]
    image_name: String,
    tag: Option<String>,
    sha256: Option<String>,
}

/// Parse an Artifactory webhook body.
pub fn parse(origin: Origin<'_>, body: &[u8]) -> Result<Vec<Notice>, ParseError> {
    let e: Event = serde_json::from_slice(body).map_err(ParseError::Json)?;
    let ignored = |reason| Ok(vec![Notice::Ignored { reason }]);
    if e.domain != DOMAIN_DOCKER {
        return ignored("not a docker event");
    }
    let pushed = match e.event_type.as_str() {
        "pushed" => true,
        "deleted" => false,
        "promoted" => return ignored("promotion"),
        _ => return ignored("unknown event type"),
    };
    let data = e
        .data
        .ok_or(ParseError::Shape("docker event without data"))?;
    if !pushed {
        return Ok(vec![match data.tag {
            Some(tag) if !tag.is_empty() && !data.image_name.is_empty() => Notice::TagDeleted {
                event_id: uuid::Uuid::new_v4().to_string(),
                repository: data.image_name,
                tag,
            },
            _ => Notice::Ignored {
                reason: "delete by digest",
            },
        }]);
    }
    let digest = data
        .sha256
        .filter(|h| !h.is_empty())
        .map(|hex| format!("sha256:{hex}"));
    Ok(vec![push_notice(
        origin,
        PushFields {
            repository: &data.image_name,
            tag: data.tag.as_deref(),
            digest: digest.as_deref(),
            ..PushFields::default()
        },
    )])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::test_support::*;
    use serde_json::json;

    const PUSHED: &[u8] =
        include_bytes!("../../fixtures/notifications/artifactory/docker-pushed.json");
    const DELETED: &[u8] =
        include_bytes!("../../fixtures/notifications/artifactory/docker-deleted.json");
    const D1: &str = "sha256:f079a57f1a4b4b515ef76af8f784208ad36a39869bb5e5a9cb3929355b388175";

    #[test]
    fn a_docker_push_names_the_image_tag_and_manifest_digest() {
        let notices = parse(ORIGIN, PUSHED).expect("parse");
        let p = push(&notices[0]);
        assert_eq!((p.repository.as_str(), p.tag.as_str()), ("team/app", "v1"));
        assert_eq!(p.digest.as_deref(), Some(D1));
        assert!(!p.event_id.is_empty());
        let stored = serde_json::to_string(p).expect("json");
        assert!(
            !stored.contains("docker-local") && !stored.contains("invalid"),
            "{stored}"
        );
    }

    #[test]
    fn deletes_promotions_and_other_domains_are_not_pushes() {
        let n = parse(ORIGIN, DELETED).expect("parse");
        assert!(
            matches!(&n[0], Notice::TagDeleted { repository, tag, .. } if repository == "team/app" && tag == "v1"),
            "{n:?}"
        );
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                edited(DELETED, |v| v["data"]["tag"] = json!(null)),
                "delete by digest",
            ),
            (
                edited(PUSHED, |v| v["event_type"] = json!("promoted")),
                "promotion",
            ),
            (
                edited(PUSHED, |v| v["event_type"] = json!("scanned")),
                "unknown event type",
            ),
            (
                edited(PUSHED, |v| v["domain"] = json!("artifact")),
                "not a docker event",
            ),
            (
                edited(PUSHED, |v| v["data"]["sha256"] = json!("xyz")),
                "invalid digest",
            ),
            (
                edited(PUSHED, |v| v["data"]["tag"] = json!("")),
                "push by digest (no tag)",
            ),
            (
                edited(PUSHED, |v| v["data"]["image_name"] = json!("")),
                "push without a repository",
            ),
        ];
        assert_first_ignored(parse, cases);
        let no_digest = edited(PUSHED, |v| v["data"]["sha256"] = json!(null));
        assert_eq!(
            push(&parse(ORIGIN, &no_digest).expect("parse")[0]).digest,
            None
        );
    }

    #[test]
    fn bodies_that_are_not_an_artifactory_event_are_errors() {
        let bodies: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"{}".to_vec(),
            b"{\"events\": []}".to_vec(),
            edited(PUSHED, |v| v["data"] = json!(null)),
            edited(PUSHED, |v| v["data"]["tag"] = json!(1)),
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
