//! Notification formats → [`Notice`]s (SPEC §4). One file per source type; all pure functions over bytes.
//!
//! Parsers never decide where to fetch from: URLs and hosts in payloads are read past, never kept, and the
//! registry a push refers to always comes from the source's configuration ([`Origin`]). Every format goes
//! through [`push_notice`], so repository, tag and digest are validated the same way for all of them.

pub mod acr;
pub mod artifactory;
pub mod cloudevents;
pub mod distribution;
pub mod dockerhub;
pub mod github;
pub mod harbor;
pub mod quay;
pub mod signature;

use crate::config::SourceType;
use crate::digest::Digest;
use crate::event::{Notice, PushEvent};
use crate::mapping::is_valid_tag;
use crate::registry::validate_repository;

/// Media types a distribution registry sends notifications with.
pub const MEDIA_EVENTS_V1: &str = "application/vnd.docker.distribution.events.v1+json";
pub const MEDIA_EVENTS_V2: &str = "application/vnd.docker.distribution.events.v2+json";
/// A CloudEvent in structured mode (Harbor's CloudEvents format, zot, any CloudEvents sender).
pub const MEDIA_CLOUDEVENTS_JSON: &str = "application/cloudevents+json";
const MEDIA_JSON: &str = "application/json";

/// The body is not a parseable envelope for the source type (→ 400).
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("body is not valid JSON for this source type: {0}")]
    Json(#[source] serde_json::Error),
    #[error("{0}")]
    Shape(&'static str),
}

/// Who sent the notification, as configured (never taken from the payload).
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub source: &'a str,
    pub registry: &'a str,
    pub received_at_ms: i64,
}

/// Request headers a parser may read (names lowercased), e.g. `x-github-event`, `ce-type`.
#[derive(Debug, Clone, Default)]
pub struct RequestHeaders(Vec<(String, String)>);

impl RequestHeaders {
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
        )
    }

    /// First value of a header (case-insensitive name).
    pub fn get(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parse a notification body of `kind` that came without interesting headers.
pub fn parse(kind: SourceType, origin: Origin<'_>, body: &[u8]) -> Result<Vec<Notice>, ParseError> {
    parse_request(kind, origin, &RequestHeaders::default(), body)
}

/// Parse a notification request of `kind` (headers + raw body).
pub fn parse_request(
    kind: SourceType,
    origin: Origin<'_>,
    headers: &RequestHeaders,
    body: &[u8],
) -> Result<Vec<Notice>, ParseError> {
    match kind {
        SourceType::Distribution => distribution::parse(origin, body),
        SourceType::Harbor => harbor::parse(origin, body),
        SourceType::Quay => quay::parse(origin, body),
        SourceType::Dockerhub => dockerhub::parse(origin, body),
        SourceType::Github => github::parse(origin, headers, body),
        SourceType::Cloudevents => cloudevents::parse(origin, headers, body),
        SourceType::Acr => acr::parse(origin, body),
        SourceType::Artifactory => artifactory::parse(origin, body),
    }
}

/// Check a body signature for sources authenticated by `hmacSecretFile` (SPEC §3), over the raw body,
/// before parsing. Returns false when the signature is missing or wrong, and for types that cannot sign
/// (configuration refuses `hmacSecretFile` for them, so that is only a second line of defence).
pub fn verify_signature(
    kind: SourceType,
    secret: &[u8],
    headers: &RequestHeaders,
    body: &[u8],
) -> bool {
    match kind {
        SourceType::Github => signature::verify_github(secret, headers, body),
        SourceType::Artifactory => signature::verify_artifactory(secret, headers, body),
        _ => false,
    }
}

/// Whether a content type can carry a notification body of `kind` (others get 415).
pub fn accepts_content_type(kind: SourceType, content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return true;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match kind {
        SourceType::Distribution => matches!(
            essence.as_str(),
            MEDIA_EVENTS_V1 | MEDIA_EVENTS_V2 | MEDIA_JSON | ""
        ),
        // Structured CloudEvents, or binary mode whose data is JSON.
        SourceType::Harbor | SourceType::Cloudevents => {
            matches!(essence.as_str(), MEDIA_CLOUDEVENTS_JSON | MEDIA_JSON | "")
        }
        _ => essence.ends_with("json") || essence.is_empty(),
    }
}

/// What a format says about one pushed reference, before validation.
#[derive(Debug, Default)]
pub(crate) struct PushFields<'a> {
    /// The sender's id for this push; empty when the format has none (a random one is generated).
    pub event_id: String,
    pub repository: &'a str,
    /// The tag; `None`, empty, or a digest (Harbor, zot) means a push by digest.
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
    pub media_type: Option<&'a str>,
    pub timestamp: Option<String>,
}

/// Validate one push the way every format must (SPEC §4) and build its [`Notice`].
///
/// A push without a usable tag creates no mapping, and names that could not have come from a registry
/// (path traversal, upper case, bad digests) are ignored with a reason rather than refused: the body as
/// a whole is well-formed, and a 4xx would make some senders retry it forever.
pub(crate) fn push_notice(origin: Origin<'_>, f: PushFields<'_>) -> Notice {
    let ignored = |reason| Notice::Ignored { reason };
    let tag = match f.tag.map(str::trim) {
        None | Some("") => return ignored("push by digest (no tag)"),
        Some(t) if t.contains(':') && Digest::parse(t).is_ok() => {
            return ignored("push by digest (no tag)");
        }
        Some(t) => t,
    };
    if f.repository.is_empty() {
        return ignored("push without a repository");
    }
    if validate_repository(f.repository).is_err() {
        return ignored("invalid repository name");
    }
    if !is_valid_tag(tag) {
        return ignored("invalid tag");
    }
    let digest = match f.digest.filter(|d| !d.is_empty()) {
        Some(d) => match Digest::parse(d) {
            Ok(d) => Some(d.to_string()),
            Err(_) => return ignored("invalid digest"),
        },
        None => None,
    };
    let event_id = if f.event_id.is_empty() {
        // No id to deduplicate on; the (registry, repository, tag, digest) dedupe still applies.
        uuid::Uuid::new_v4().to_string()
    } else {
        f.event_id
    };
    Notice::Push(PushEvent {
        source: origin.source.to_string(),
        registry: origin.registry.to_string(),
        event_id,
        repository: f.repository.to_string(),
        tag: tag.to_string(),
        digest,
        media_type: f.media_type.filter(|m| !m.is_empty()).map(str::to_string),
        timestamp: f.timestamp.filter(|t| !t.is_empty()),
        received_at_ms: origin.received_at_ms,
    })
}

/// The id of the `n`th push of a notification that names several (Harbor resources, Quay tags): the queue
/// remembers ids per source, so each push needs its own, and a re-sent notification must map to the same.
pub(crate) fn sub_event_id(base: &str, tag: &str) -> String {
    if base.is_empty() {
        String::new()
    } else {
        format!("{base}#{tag}")
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Helpers shared by the parsers' unit tests.
    use super::Origin;
    use crate::event::{Notice, PushEvent};

    pub const ORIGIN: Origin<'static> = Origin {
        source: "src",
        registry: "reg",
        received_at_ms: 1,
    };

    /// The push in `n`, or a panic naming what it was instead.
    pub fn push(n: &Notice) -> &PushEvent {
        match n {
            Notice::Push(p) => p,
            other => panic!("not a push: {other:?}"),
        }
    }

    /// The reason of an ignored notice, or a panic.
    pub fn reason(n: &Notice) -> &'static str {
        match n {
            Notice::Ignored { reason } => reason,
            other => panic!("not ignored: {other:?}"),
        }
    }

    /// Asserts that each body's first notice is ignored with the expected reason.
    pub fn assert_first_ignored(
        parse: impl Fn(Origin<'_>, &[u8]) -> Result<Vec<Notice>, super::ParseError>,
        cases: Vec<(Vec<u8>, &str)>,
    ) {
        for (body, want) in cases {
            let notices = parse(ORIGIN, &body).expect("parse");
            assert_eq!(
                reason(&notices[0]),
                want,
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    /// A fixture as JSON, with `edit` applied (the unit tests vary one field at a time).
    pub fn edited(fixture: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_slice(fixture).expect("fixture json");
        edit(&mut v);
        serde_json::to_vec(&v).expect("json")
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    const DIGEST: &str = "sha256:4afff550708506c5b8b7384ad10d401a02b29ed587cb2730cb02753095b5178d";

    #[test]
    fn every_push_is_validated_the_same_way() {
        let base = || PushFields {
            event_id: "e".into(),
            repository: "team/app",
            tag: Some("v1"),
            digest: Some(DIGEST),
            ..PushFields::default()
        };
        let cases: Vec<(PushFields<'_>, &str)> = vec![
            (
                PushFields {
                    tag: None,
                    ..base()
                },
                "push by digest (no tag)",
            ),
            (
                PushFields {
                    tag: Some(""),
                    ..base()
                },
                "push by digest (no tag)",
            ),
            (
                PushFields {
                    tag: Some(DIGEST),
                    ..base()
                },
                "push by digest (no tag)",
            ),
            (
                PushFields {
                    repository: "",
                    ..base()
                },
                "push without a repository",
            ),
            (
                PushFields {
                    repository: "Team/App",
                    ..base()
                },
                "invalid repository name",
            ),
            (
                PushFields {
                    repository: "a/../b",
                    ..base()
                },
                "invalid repository name",
            ),
            (
                PushFields {
                    tag: Some("-x"),
                    ..base()
                },
                "invalid tag",
            ),
            (
                PushFields {
                    tag: Some("a:b"),
                    ..base()
                },
                "invalid tag",
            ),
            (
                PushFields {
                    digest: Some("sha256:zz"),
                    ..base()
                },
                "invalid digest",
            ),
        ];
        for (fields, want) in cases {
            let shown = format!("{fields:?}");
            assert_eq!(reason(&push_notice(ORIGIN, fields)), want, "{shown}");
        }
        let n = push_notice(ORIGIN, base());
        let p = push(&n);
        assert_eq!((p.registry.as_str(), p.source.as_str()), ("reg", "src"));
        assert_eq!(p.digest.as_deref(), Some(DIGEST));
        let no_id = push_notice(
            ORIGIN,
            PushFields {
                event_id: String::new(),
                digest: None,
                ..base()
            },
        );
        assert!(!push(&no_id).event_id.is_empty());
        assert_eq!(push(&no_id).digest, None);
    }

    #[test]
    fn content_types_follow_what_each_sender_uses() {
        let cases = [
            (SourceType::Cloudevents, Some(MEDIA_CLOUDEVENTS_JSON), true),
            (
                SourceType::Cloudevents,
                Some("application/json; charset=utf-8"),
                true,
            ),
            (SourceType::Cloudevents, Some("text/plain"), false),
            (SourceType::Harbor, Some(MEDIA_CLOUDEVENTS_JSON), true),
            (SourceType::Harbor, Some("application/json"), true),
            (SourceType::Github, Some("application/json"), true),
            (
                SourceType::Github,
                Some("application/x-www-form-urlencoded"),
                false,
            ),
            (SourceType::Distribution, Some(MEDIA_EVENTS_V2), true),
            (
                SourceType::Distribution,
                Some(MEDIA_CLOUDEVENTS_JSON),
                false,
            ),
            (SourceType::Quay, None, true),
        ];
        for (kind, ct, want) in cases {
            assert_eq!(accepts_content_type(kind, ct), want, "{kind:?} {ct:?}");
        }
    }

    #[test]
    fn types_that_cannot_sign_never_pass_a_signature_check() {
        let headers = RequestHeaders::new([(
            "X-Hub-Signature-256".to_string(),
            format!(
                "sha256={}",
                hex::encode(signature::hmac_sha256(b"k", b"{}"))
            ),
        )]);
        assert!(verify_signature(SourceType::Github, b"k", &headers, b"{}"));
        assert!(!verify_signature(SourceType::Harbor, b"k", &headers, b"{}"));
        assert!(!verify_signature(
            SourceType::Distribution,
            b"k",
            &headers,
            b"{}"
        ));
    }
}
