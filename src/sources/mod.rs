//! Notification formats → [`Notice`]s (SPEC §4). One file per source type; all pure functions over bytes.
//!
//! Parsers never decide where to fetch from: URLs and hosts in payloads are read past, never kept.

pub mod distribution;

use crate::config::SourceType;
use crate::event::Notice;

/// Media types a distribution registry sends notifications with.
pub const MEDIA_EVENTS_V1: &str = "application/vnd.docker.distribution.events.v1+json";
pub const MEDIA_EVENTS_V2: &str = "application/vnd.docker.distribution.events.v2+json";

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
    _headers: &RequestHeaders,
    body: &[u8],
) -> Result<Vec<Notice>, ParseError> {
    match kind {
        SourceType::Distribution => distribution::parse(origin, body),
        _ => Err(ParseError::Shape("source type not supported by this build")),
    }
}

/// Check a body signature for sources authenticated by `hmacSecretFile` (SPEC §3), over the raw body,
/// before parsing. Returns false when the signature is missing or wrong.
pub fn verify_signature(
    _kind: SourceType,
    _secret: &[u8],
    _headers: &RequestHeaders,
    _body: &[u8],
) -> bool {
    false
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
            MEDIA_EVENTS_V1 | MEDIA_EVENTS_V2 | "application/json" | ""
        ),
        _ => essence.ends_with("json") || essence.is_empty(),
    }
}
