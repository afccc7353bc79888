//! `POST <source.path>`: authenticate, bound, parse, durably enqueue, answer (SPEC §4).
//!
//! Order matters: method, then authentication (before any byte of the body is read), then the size limit
//! (413 before buffering), then parsing (400), then the fsync'd enqueue (202). A distribution registry
//! retries any non-2xx forever and holds later events behind it, so a well-formed but uninteresting body
//! gets 200, never an error.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use futures_util::StreamExt as _;
use serde_json::json;
use subtle::ConstantTimeEq;
use tracing::{info, warn};

use super::AppState;
use crate::config::{SourceAuth, SourceConfig};
use crate::event::{Notice, now_ms};
use crate::queue::QueueError;
use crate::sources::{self, Origin};

/// How long a sender should wait after a 503.
pub const RETRY_AFTER_SECS: u64 = 5;

fn reply(status: actix_web::http::StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "status": status.as_u16(), "message": message }))
}

fn unavailable(message: &str) -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS.to_string()))
        .json(json!({ "status": 503, "message": message }))
}

/// Constant-time equality of two byte strings (length leaks, contents do not).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Check the sender's credentials from headers only. HMAC sources need the body and are checked later.
fn authenticate(auth: &SourceAuth, req: &HttpRequest) -> Result<(), &'static str> {
    let header_str = |name: &str| req.headers().get(name).map(HeaderValue::as_bytes);
    match auth {
        SourceAuth::BearerToken { token } => {
            let got = header_str("authorization").ok_or("Bearer")?;
            // The scheme is case-insensitive (RFC 7235); the token is compared exactly, in constant time.
            let (scheme, presented) = got.split_at_checked(7).ok_or("Bearer")?;
            if scheme.eq_ignore_ascii_case(b"Bearer ")
                && ct_eq(presented, token.expose().as_bytes())
            {
                Ok(())
            } else {
                Err("Bearer")
            }
        }
        SourceAuth::Basic { username, password } => {
            let got = header_str("authorization").ok_or("Basic")?;
            let (scheme, encoded) = got.split_at_checked(6).ok_or("Basic")?;
            if !scheme.eq_ignore_ascii_case(b"Basic ") {
                return Err("Basic");
            }
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| "Basic")?;
            let expected = format!("{username}:{}", password.expose());
            if ct_eq(&decoded, expected.as_bytes()) {
                Ok(())
            } else {
                Err("Basic")
            }
        }
        SourceAuth::HeaderSecret { header, secret } => {
            let got = header_str(header).ok_or("Secret")?;
            if ct_eq(got, secret.expose().as_bytes()) {
                Ok(())
            } else {
                Err("Secret")
            }
        }
        // Signature over the raw body: checked once the body is read, before parsing.
        SourceAuth::HmacSecret { .. } => Ok(()),
    }
}

/// Read the body, refusing more than `limit` bytes without buffering them.
async fn read_limited(
    mut payload: web::Payload,
    limit: u64,
) -> Result<web::Bytes, Option<actix_web::error::PayloadError>> {
    let mut buf = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(Some)?;
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The handler for one configured source.
pub async fn receive(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    source: web::Data<SourceConfig>,
) -> HttpResponse {
    let metrics = &state.metrics;
    let name = source.name.as_str();
    if let Err(scheme) = authenticate(&source.auth, &req) {
        metrics.notification(name, "unauthorized");
        warn!(
            source = name,
            "notification rejected: bad or missing credentials"
        );
        return HttpResponse::Unauthorized()
            .insert_header((
                header::WWW_AUTHENTICATE,
                format!("{scheme} realm=\"imagestream-ingest\""),
            ))
            .json(json!({ "status": 401, "message": "authentication required" }));
    }
    if state.queue.is_closed() || state.is_shutting_down() {
        metrics.notification(name, "unavailable");
        return unavailable("shutting down");
    }
    let limit = state.config.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        metrics.notification(name, "too_large");
        return reply(
            actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
            "body exceeds maxBodyBytes",
        );
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if !sources::accepts_content_type(source.kind, content_type) {
        metrics.notification(name, "malformed");
        return reply(
            actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported content type for this source",
        );
    }
    let body = match read_limited(payload, limit).await {
        Ok(b) => b,
        Err(None) => {
            metrics.notification(name, "too_large");
            return reply(
                actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                "body exceeds maxBodyBytes",
            );
        }
        Err(Some(e)) => {
            metrics.notification(name, "malformed");
            return reply(
                actix_web::http::StatusCode::BAD_REQUEST,
                &format!("cannot read body: {e}"),
            );
        }
    };
    let headers = sources::RequestHeaders::new(req.headers().iter().filter_map(|(k, v)| {
        v.to_str()
            .ok()
            .map(|v| (k.as_str().to_string(), v.to_string()))
    }));
    if let SourceAuth::HmacSecret { secret } = &source.auth {
        if !sources::verify_signature(source.kind, secret.expose().as_bytes(), &headers, &body) {
            metrics.notification(name, "unauthorized");
            warn!(
                source = name,
                "notification rejected: missing or wrong body signature"
            );
            return HttpResponse::Unauthorized()
                .insert_header((
                    header::WWW_AUTHENTICATE,
                    "Signature realm=\"imagestream-ingest\"",
                ))
                .json(json!({ "status": 401, "message": "missing or wrong body signature" }));
        }
    }
    let origin = Origin {
        source: name,
        registry: &source.registry,
        received_at_ms: now_ms(),
    };
    let notices = match sources::parse_request(source.kind, origin, &headers, &body) {
        Ok(n) => n,
        Err(e) => {
            metrics.notification(name, "malformed");
            info!(source = name, error = %e, "notification body rejected");
            return reply(actix_web::http::StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    let mut pushes = Vec::new();
    for notice in notices {
        match notice {
            Notice::Push(p) => pushes.push(p),
            Notice::TagDeleted {
                event_id,
                repository,
                tag,
            } => {
                metrics.tag_deletes.inc();
                metrics.notification(name, "tag_deleted");
                info!(
                    source = name,
                    event_id, repository, tag, "tag deleted at the registry (not propagated)"
                );
            }
            Notice::Ignored { reason } => {
                metrics.notification(name, "ignored");
                tracing::debug!(source = name, reason, "event not actionable");
            }
        }
    }
    if pushes.is_empty() {
        return reply(actix_web::http::StatusCode::OK, "nothing actionable");
    }
    let count = pushes.len();
    match state.queue.enqueue(pushes).await {
        Ok(outcome) => {
            for _ in 0..outcome.queued {
                metrics.notification(name, "queued");
            }
            for _ in 0..outcome.duplicates {
                metrics.notification(name, "duplicate");
            }
            if outcome.queued > 0 {
                HttpResponse::Accepted().json(json!({ "status": 202, "queued": outcome.queued, "duplicates": outcome.duplicates }))
            } else {
                HttpResponse::Ok()
                    .json(json!({ "status": 200, "queued": 0, "duplicates": outcome.duplicates }))
            }
        }
        Err(QueueError::Full) => {
            metrics.notification(name, "unavailable");
            warn!(
                source = name,
                events = count,
                "queue full; asking the sender to retry"
            );
            unavailable("queue full")
        }
        Err(QueueError::Closed) => {
            metrics.notification(name, "unavailable");
            unavailable("shutting down")
        }
        Err(e) => {
            metrics.notification(name, "unavailable");
            warn!(source = name, error = %e, "could not persist notification");
            unavailable("could not persist the notification")
        }
    }
}

/// Anything but POST on a source path.
pub async fn method_not_allowed(
    state: web::Data<AppState>,
    source: web::Data<SourceConfig>,
) -> HttpResponse {
    state
        .metrics
        .notification(&source.name, "method_not_allowed");
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, "POST"))
        .json(json!({ "status": 405, "message": "use POST" }))
}
