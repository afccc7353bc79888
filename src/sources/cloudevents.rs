//! CloudEvents 1.0 over HTTP (SPEC §4), as zot sends them: `zotregistry.image.updated` with data
//! `{name, reference, digest, mediaType, manifest}` (or `<typePrefix>.image.updated` when zot's events
//! `typePrefix` is set).
//!
//! Both HTTP modes: *binary* (attributes in `Ce-*` headers, the body is the data; what zot's HTTP sink
//! sends) and *structured* (`application/cloudevents+json`, attributes and `data` in the body). The event
//! id is `ce-id` / `id`. `reference` is a tag or a digest; a digest reference maps nothing. An
//! `image.deleted` of a tag is reported as a tag delete. The `manifest` string is never trusted: the worker
//! fetches and verifies the manifest itself.

use base64::Engine as _;
use serde::Deserialize;

use super::{MEDIA_CLOUDEVENTS_JSON, Origin, ParseError, PushFields, RequestHeaders, push_notice};
use crate::digest::Digest;
use crate::event::Notice;

/// zot: a manifest was pushed (or a tag moved).
pub const ZOT_IMAGE_UPDATED: &str = "zotregistry.image.updated";
/// zot: a manifest or tag was deleted.
pub const ZOT_IMAGE_DELETED: &str = "zotregistry.image.deleted";

const HEADER_TYPE: &str = "ce-type";
const HEADER_ID: &str = "ce-id";
const HEADER_TIME: &str = "ce-time";
const HEADER_SPECVERSION: &str = "ce-specversion";

/// A structured-mode event: the attributes this parser uses, and the data.
#[derive(Deserialize)]
struct Structured {
    specversion: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: String,
    time: Option<String>,
    data: Option<serde_json::Value>,
    data_base64: Option<String>,
}

/// zot's image event data.
#[derive(Deserialize)]
struct ImageData {
    #[serde(default)]
    name: String,
    #[serde(default)]
    reference: String,
    digest: Option<String>,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
}

/// The attributes and data of one event, whichever mode carried it.
struct CloudEvent {
    kind: String,
    id: String,
    time: Option<String>,
    data: Option<serde_json::Value>,
}

/// Parse a CloudEvents request (binary mode when `ce-type` is present, structured mode otherwise).
pub fn parse(
    origin: Origin<'_>,
    headers: &RequestHeaders,
    body: &[u8],
) -> Result<Vec<Notice>, ParseError> {
    let event = match headers.get(HEADER_TYPE) {
        Some(kind) => binary(kind, headers, body)?,
        None => structured(headers, body)?,
    };
    let updated = is_type(&event.kind, ZOT_IMAGE_UPDATED);
    if !updated && !is_type(&event.kind, ZOT_IMAGE_DELETED) {
        return Ok(vec![Notice::Ignored {
            reason: "not an image event",
        }]);
    }
    let data = event
        .data
        .ok_or(ParseError::Shape("image event without data"))?;
    let data: ImageData = serde_json::from_value(data).map_err(ParseError::Json)?;
    if !updated {
        let by_digest = data.reference.is_empty() || Digest::parse(&data.reference).is_ok();
        return Ok(vec![if by_digest || data.name.is_empty() {
            Notice::Ignored {
                reason: "delete by digest",
            }
        } else {
            Notice::TagDeleted {
                event_id: event.id,
                repository: data.name,
                tag: data.reference,
            }
        }]);
    }
    Ok(vec![push_notice(
        origin,
        PushFields {
            event_id: event.id,
            repository: &data.name,
            tag: Some(&data.reference),
            digest: data.digest.as_deref(),
            media_type: data.media_type.as_deref(),
            timestamp: event.time,
        },
    )])
}

/// `kind` is `builtin`, or the same event under a configured prefix (zot's `typePrefix` replaces the
/// `zotregistry` namespace, e.g. `corp.image.updated`).
fn is_type(kind: &str, builtin: &str) -> bool {
    let suffix = builtin.trim_start_matches("zotregistry");
    kind == builtin || (kind.len() > suffix.len() && kind.ends_with(suffix))
}

fn binary(kind: &str, headers: &RequestHeaders, body: &[u8]) -> Result<CloudEvent, ParseError> {
    if headers.get(HEADER_SPECVERSION).is_none() {
        return Err(ParseError::Shape(
            "binary-mode CloudEvent without ce-specversion",
        ));
    }
    let data = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(serde_json::from_slice(body).map_err(ParseError::Json)?)
    };
    Ok(CloudEvent {
        kind: kind.to_string(),
        id: headers.get(HEADER_ID).unwrap_or_default().to_string(),
        time: headers.get(HEADER_TIME).map(str::to_string),
        data,
    })
}

fn structured(headers: &RequestHeaders, body: &[u8]) -> Result<CloudEvent, ParseError> {
    let declared = headers
        .get("content-type")
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with(MEDIA_CLOUDEVENTS_JSON));
    let e: Structured = serde_json::from_slice(body).map_err(|err| {
        if declared {
            ParseError::Json(err)
        } else {
            ParseError::Shape("neither a binary-mode (ce-type header) nor a structured CloudEvent")
        }
    })?;
    if e.specversion.is_empty() {
        return Err(ParseError::Shape("CloudEvent without specversion"));
    }
    let data = match (e.data, e.data_base64) {
        (Some(d), _) => Some(d),
        (None, Some(b64)) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| ParseError::Shape("data_base64 is not base64"))?;
            Some(serde_json::from_slice(&bytes).map_err(ParseError::Json)?)
        }
        (None, None) => None,
    };
    Ok(CloudEvent {
        kind: e.kind,
        id: e.id,
        time: e.time,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::test_support::*;
    use serde_json::json;

    const DATA: &[u8] =
        include_bytes!("../../fixtures/notifications/cloudevents/zot-image-updated-data.json");
    const STRUCTURED: &[u8] = include_bytes!(
        "../../fixtures/notifications/cloudevents/zot-image-updated-structured.json"
    );
    const REPO_CREATED: &[u8] =
        include_bytes!("../../fixtures/notifications/cloudevents/zot-repository-created-data.json");
    const D1: &str = "sha256:f079a57f1a4b4b515ef76af8f784208ad36a39869bb5e5a9cb3929355b388175";

    fn binary_headers(kind: &str) -> RequestHeaders {
        RequestHeaders::new(
            [
                ("Ce-Specversion", "1.0"),
                ("Ce-Type", kind),
                ("Ce-Id", "ce-1"),
                ("Ce-Source", "zotregistry.dev"),
                ("Ce-Time", "2026-01-02T03:04:05Z"),
                ("Content-Type", "application/json"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    fn structured_headers() -> RequestHeaders {
        RequestHeaders::new([("content-type".into(), MEDIA_CLOUDEVENTS_JSON.into())])
    }

    #[test]
    fn binary_and_structured_modes_give_the_same_push() {
        let cases = [
            (
                "binary",
                binary_headers(ZOT_IMAGE_UPDATED),
                DATA.to_vec(),
                "ce-1",
            ),
            (
                "structured",
                structured_headers(),
                STRUCTURED.to_vec(),
                "3f7c2a10-5b8e-4d61-a0c9-7e2b1d4f6a53",
            ),
            (
                "structured, base64 data",
                structured_headers(),
                edited(STRUCTURED, |v| {
                    let data = serde_json::to_vec(&v["data"]).expect("json");
                    v["data_base64"] =
                        json!(base64::engine::general_purpose::STANDARD.encode(data));
                    v.as_object_mut().expect("object").remove("data");
                }),
                "3f7c2a10-5b8e-4d61-a0c9-7e2b1d4f6a53",
            ),
        ];
        for (mode, headers, body, id) in cases {
            let notices = parse(ORIGIN, &headers, &body).expect("parse");
            let p = push(&notices[0]);
            assert_eq!(
                (p.repository.as_str(), p.tag.as_str()),
                ("team/app", "v1"),
                "{mode}"
            );
            assert_eq!(p.digest.as_deref(), Some(D1), "{mode}");
            assert_eq!(p.event_id, id, "{mode}");
            assert_eq!(
                p.timestamp.as_deref(),
                Some("2026-01-02T03:04:05Z"),
                "{mode}"
            );
        }
    }

    #[test]
    fn a_configured_type_prefix_is_recognised() {
        let notices = parse(ORIGIN, &binary_headers("corp.image.updated"), DATA).expect("parse");
        assert_eq!(push(&notices[0]).tag, "v1");
        let notices = parse(ORIGIN, &binary_headers(".image.updated"), DATA).expect("parse");
        assert_eq!(reason(&notices[0]), "not an image event");
    }

    #[test]
    fn other_types_digest_references_and_deletes_are_not_pushes() {
        let digest_ref = edited(DATA, |v| v["reference"] = json!(D1));
        let cases: Vec<(RequestHeaders, Vec<u8>, Notice)> = vec![
            (
                binary_headers("zotregistry.repository.created"),
                REPO_CREATED.to_vec(),
                Notice::Ignored {
                    reason: "not an image event",
                },
            ),
            (
                structured_headers(),
                edited(STRUCTURED, |v| {
                    v["type"] = json!("zotregistry.image.lint_failed")
                }),
                Notice::Ignored {
                    reason: "not an image event",
                },
            ),
            (
                binary_headers("zotregistry.image.updated.v2"),
                DATA.to_vec(),
                Notice::Ignored {
                    reason: "not an image event",
                },
            ),
            (
                binary_headers(ZOT_IMAGE_UPDATED),
                digest_ref.clone(),
                Notice::Ignored {
                    reason: "push by digest (no tag)",
                },
            ),
            (
                binary_headers(ZOT_IMAGE_DELETED),
                digest_ref,
                Notice::Ignored {
                    reason: "delete by digest",
                },
            ),
            (
                binary_headers(ZOT_IMAGE_DELETED),
                DATA.to_vec(),
                Notice::TagDeleted {
                    event_id: "ce-1".into(),
                    repository: "team/app".into(),
                    tag: "v1".into(),
                },
            ),
        ];
        for (headers, body, want) in cases {
            assert_eq!(parse(ORIGIN, &headers, &body).expect("parse"), vec![want]);
        }
    }

    #[test]
    fn requests_that_are_not_cloudevents_are_errors() {
        let no_spec = RequestHeaders::new([("ce-type".into(), ZOT_IMAGE_UPDATED.into())]);
        let cases: Vec<(RequestHeaders, Vec<u8>)> = vec![
            (RequestHeaders::default(), DATA.to_vec()),
            (structured_headers(), DATA.to_vec()),
            (structured_headers(), b"{".to_vec()),
            (no_spec, DATA.to_vec()),
            (binary_headers(ZOT_IMAGE_UPDATED), b"not json".to_vec()),
            (binary_headers(ZOT_IMAGE_UPDATED), b"".to_vec()),
            (binary_headers(ZOT_IMAGE_UPDATED), b"{\"name\": 5}".to_vec()),
            (
                structured_headers(),
                edited(STRUCTURED, |v| {
                    v.as_object_mut().expect("object").remove("data");
                    v["data_base64"] = json!("!!");
                }),
            ),
        ];
        for (i, (headers, body)) in cases.into_iter().enumerate() {
            assert!(
                parse(ORIGIN, &headers, &body).is_err(),
                "case {i}: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
}
