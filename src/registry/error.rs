//! [`RegistryError`] and [`classify`], the ONE place an HTTP status plus the registry's JSON error body
//! (`{"errors":[{"code","message"}]}`) become a typed error (SPEC §5: what is retried, what fails the job).
//!
//! Nothing here does I/O. Messages copied from a registry are truncated; they never carry credentials.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use serde::Deserialize;

use crate::digest::Digest;

/// A `Retry-After` longer than this is clamped: a registry should not park a job for hours.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// Longest registry-provided message kept in an error.
const MAX_MESSAGE_CHARS: usize = 500;

pub(crate) const CODE_MANIFEST_UNKNOWN: &str = "MANIFEST_UNKNOWN";
pub(crate) const CODE_TOO_MANY_REQUESTS: &str = "TOOMANYREQUESTS";

/// Why a registry request failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// 404 on a manifest GET (`MANIFEST_UNKNOWN`): right after a push the tag may not be readable yet.
    #[error("manifest unknown at the registry")]
    ManifestUnknown,
    #[error("not found: {message}")]
    NotFound { message: String },
    #[error("unauthorized: {message}")]
    Unauthorized { message: String },
    #[error("forbidden: {message}")]
    Forbidden { message: String },
    #[error("response larger than the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error("digest mismatch: expected {expected}, computed {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("rate limited by the registry{}", after(retry_after))]
    RateLimited { retry_after: Option<Duration> },
    #[error("registry server error {status}{}", after(retry_after))]
    Server {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// Any other non-success status (400, 405, 416, an unfollowed 3xx, ...).
    #[error("registry answered {status}: {message}")]
    Rejected { status: u16, message: String },
    #[error("registry request timed out")]
    Timeout,
    #[error("registry transport error: {}", chain(.0))]
    Transport(#[source] reqwest::Error),
    #[error("invalid repository name `{0}`")]
    InvalidRepository(String),
    #[error("invalid tag or digest `{0}`")]
    InvalidReference(String),
    #[error("invalid registry response: {0}")]
    InvalidResponse(String),
    /// The token realm is plain http while the registry is https: the password is not sent there.
    #[error("refusing to send registry credentials to plain-http token realm {realm}")]
    InsecureRealm { realm: String },
    #[error("registry client configuration: {0}")]
    Config(String),
}

impl RegistryError {
    /// Worth retrying later: 429, 5xx, timeouts, connection errors, and a manifest not readable yet.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::ManifestUnknown
            | Self::RateLimited { .. }
            | Self::Server { .. }
            | Self::Timeout => true,
            Self::Transport(e) => !(e.is_builder() || e.is_redirect()),
            _ => false,
        }
    }

    /// The registry's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } | Self::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A label from a fixed set, for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::ManifestUnknown => "manifest_unknown",
            Self::NotFound { .. } => "not_found",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Forbidden { .. } => "forbidden",
            Self::TooLarge { .. } => "too_large",
            Self::DigestMismatch { .. } => "digest_mismatch",
            Self::RateLimited { .. } => "rate_limited",
            Self::Server { .. } => "server_error",
            Self::Rejected { .. } => "rejected",
            Self::Timeout => "timeout",
            Self::Transport(_) => "transport",
            Self::InvalidRepository(_) => "invalid_repository",
            Self::InvalidReference(_) => "invalid_reference",
            Self::InvalidResponse(_) => "invalid_response",
            Self::InsecureRealm { .. } => "insecure_realm",
            Self::Config(_) => "config",
        }
    }

    /// 404 `MANIFEST_UNKNOWN` (or any 404 on a manifest GET).
    pub fn is_manifest_unknown(&self) -> bool {
        matches!(self, Self::ManifestUnknown)
    }

    /// A transport failure, with timeouts split out.
    pub(crate) fn transport(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            Self::Timeout
        } else {
            Self::Transport(e)
        }
    }
}

/// Which distribution API operation a request belongs to; also the `op` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Manifest,
    Blob,
    Token,
    Catalog,
    Tags,
}

impl Op {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Manifest => "manifest",
            Self::Blob => "blob",
            Self::Token => "token",
            Self::Catalog => "catalog",
            Self::Tags => "tags",
        }
    }
}

/// The registry's error body. Token services (Docker Hub's, for one) answer `{"details": "..."}` instead.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub errors: Vec<ErrorEntry>,
    #[serde(default)]
    pub details: Option<serde_json::Value>,
}

/// One entry of `errors`: `code` is e.g. `MANIFEST_UNKNOWN`, `UNAUTHORIZED`, `DENIED`, `TOOMANYREQUESTS`.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorEntry {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

impl ErrorBody {
    /// Lenient: a body that is not the documented JSON shape is an empty body (the status still decides).
    pub(crate) fn parse(bytes: &[u8]) -> Self {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    pub(crate) fn has_code(&self, code: &str) -> bool {
        self.errors.iter().any(|e| e.code == code)
    }

    /// `CODE: message; ...`, or the `details` string, truncated; empty when the body said nothing.
    pub(crate) fn message(&self) -> String {
        let joined = if self.errors.is_empty() {
            match &self.details {
                Some(serde_json::Value::String(s)) => s.clone(),
                _ => String::new(),
            }
        } else {
            self.errors
                .iter()
                .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                    (false, false) => format!("{}: {}", e.code, e.message),
                    (false, true) => e.code.clone(),
                    _ => e.message.clone(),
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        joined.chars().take(MAX_MESSAGE_CHARS).collect()
    }
}

/// Map a non-success answer to a [`RegistryError`]. `op` matters for 404: on a manifest GET it always means
/// "not readable (yet)", elsewhere it is a plain not-found.
pub(crate) fn classify(
    op: Op,
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &ErrorBody,
) -> RegistryError {
    let message = || {
        let m = body.message();
        if m.is_empty() {
            status
                .canonical_reason()
                .unwrap_or("no message")
                .to_string()
        } else {
            m
        }
    };
    match status.as_u16() {
        401 => RegistryError::Unauthorized { message: message() },
        403 if body.has_code(CODE_TOO_MANY_REQUESTS) => RegistryError::RateLimited { retry_after },
        403 => RegistryError::Forbidden { message: message() },
        404 if op == Op::Manifest || body.has_code(CODE_MANIFEST_UNKNOWN) => {
            RegistryError::ManifestUnknown
        }
        404 => RegistryError::NotFound { message: message() },
        429 => RegistryError::RateLimited { retry_after },
        s @ 500..=599 => RegistryError::Server {
            status: s,
            retry_after,
        },
        s => RegistryError::Rejected {
            status: s,
            message: message(),
        },
    }
}

/// `Retry-After` as delta-seconds or an HTTP date (relative to `now`), clamped to [`MAX_RETRY_AFTER`].
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(value.parse().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// ` (retry after 2s)` when the registry said so, nothing otherwise.
fn after(retry_after: &Option<Duration>) -> String {
    retry_after
        .map(|d| format!(" (retry after {}s)", d.as_secs()))
        .unwrap_or_default()
}

/// reqwest's message plus its causes ("error sending request: connection refused"), so dead-letter
/// reasons say what actually failed.
fn chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> ErrorBody {
        ErrorBody::parse(json.as_bytes())
    }

    #[test]
    fn status_and_error_code_map_to_the_documented_error_kinds() {
        let unknown = r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
        let blob = r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}"#;
        let denied = r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#;
        let toomany = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#;
        let table: &[(Op, u16, &str, &str, bool)] = &[
            (Op::Manifest, 404, unknown, "manifest_unknown", true),
            (Op::Manifest, 404, "", "manifest_unknown", true),
            (
                Op::Manifest,
                404,
                r#"{"errors":[{"code":"NAME_UNKNOWN"}]}"#,
                "manifest_unknown",
                true,
            ),
            (Op::Blob, 404, blob, "not_found", false),
            (Op::Tags, 404, "not json", "not_found", false),
            (Op::Blob, 404, unknown, "manifest_unknown", true),
            (Op::Manifest, 401, "", "unauthorized", false),
            (
                Op::Token,
                401,
                r#"{"details":"incorrect username or password"}"#,
                "unauthorized",
                false,
            ),
            (Op::Manifest, 403, denied, "forbidden", false),
            (Op::Manifest, 403, toomany, "rate_limited", true),
            (Op::Manifest, 429, toomany, "rate_limited", true),
            (Op::Blob, 500, "", "server_error", true),
            (
                Op::Catalog,
                502,
                "<html>bad gateway</html>",
                "server_error",
                true,
            ),
            (Op::Manifest, 503, "", "server_error", true),
            (
                Op::Manifest,
                400,
                r#"{"errors":[{"code":"NAME_INVALID"}]}"#,
                "rejected",
                false,
            ),
            (Op::Manifest, 307, "", "rejected", false),
        ];
        for (op, status, json, label, retryable) in table {
            let e = classify(
                *op,
                StatusCode::from_u16(*status).unwrap(),
                None,
                &body(json),
            );
            assert_eq!(e.metric_label(), *label, "{op:?} {status} {json}");
            assert_eq!(e.is_retryable(), *retryable, "{op:?} {status} {json}");
        }
    }

    #[test]
    fn the_registry_message_is_carried_into_the_error() {
        let e = classify(
            Op::Manifest,
            StatusCode::UNAUTHORIZED,
            None,
            &body(
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":[{"Type":"repository"}]}]}"#,
            ),
        );
        match e {
            RegistryError::Unauthorized { message } => {
                assert_eq!(message, "UNAUTHORIZED: authentication required")
            }
            other => panic!("{other:?}"),
        }
        let e = classify(Op::Blob, StatusCode::FORBIDDEN, None, &body(""));
        assert_eq!(e.to_string(), "forbidden: Forbidden");
    }

    #[test]
    fn retry_after_is_kept_on_rate_limits_and_server_errors_only() {
        let d = Some(Duration::from_secs(7));
        let e = classify(Op::Manifest, StatusCode::TOO_MANY_REQUESTS, d, &body(""));
        assert_eq!(e.retry_after(), d);
        let e = classify(Op::Manifest, StatusCode::SERVICE_UNAVAILABLE, d, &body(""));
        assert_eq!(e.retry_after(), d);
        let e = classify(Op::Manifest, StatusCode::NOT_FOUND, d, &body(""));
        assert_eq!(e.retry_after(), None);
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates_and_is_clamped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("12", now), Some(Duration::from_secs(12)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(MAX_RETRY_AFTER)
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
