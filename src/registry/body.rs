//! Response bodies: read under a byte limit while streaming, digest the exact bytes, turn error answers
//! into [`RegistryError`] (SPEC §5: "digest computed over the exact bytes", "manifests over 4 MiB refused").
//!
//! Nothing here parses a manifest or keeps a body beyond the limit it was given.

use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use reqwest::Response;
use reqwest::header::{self, HeaderMap};

use super::RegistryError;
use super::error::{ErrorBody, Op, classify, parse_retry_after};
use crate::digest::Digest;

/// Digest of the served content, announced by the registry.
pub const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";
/// Error bodies are only read for their message; more than this is not an error document.
const MAX_ERROR_BODY_BYTES: u64 = 64 * 1024;

/// `Docker-Content-Digest`, parsed; absent or empty → `None`; present but unusable → `InvalidResponse`.
pub(crate) fn announced_digest(headers: &HeaderMap) -> Result<Option<Digest>, RegistryError> {
    let Some(value) = headers.get(DOCKER_CONTENT_DIGEST) else {
        return Ok(None);
    };
    let text = value.to_str().map(str::trim).unwrap_or("\u{fffd}");
    if text.is_empty() {
        return Ok(None);
    }
    Digest::parse(text).map(Some).map_err(|_| {
        RegistryError::InvalidResponse(format!(
            "unusable Docker-Content-Digest `{}`",
            text.chars().take(200).collect::<String>()
        ))
    })
}

/// The digest of `bytes`: with the requested digest's algorithm when there is one (and it must match), else
/// sha256. An announced digest must match too, computed with the announced algorithm.
pub(crate) fn verify_digest(
    bytes: &[u8],
    requested: Option<&Digest>,
    announced: Option<&Digest>,
) -> Result<Digest, RegistryError> {
    let check = |expected: &Digest| {
        let actual = Digest::compute(expected.algorithm(), bytes);
        if &actual == expected {
            Ok(actual)
        } else {
            Err(RegistryError::DigestMismatch {
                expected: expected.clone(),
                actual,
            })
        }
    };
    let digest = match requested {
        Some(requested) => check(requested)?,
        None => Digest::sha256(bytes),
    };
    if let Some(announced) = announced {
        check(announced)?;
    }
    Ok(digest)
}

/// Read the body, refusing more than `limit` bytes (by `Content-Length` up front, or while streaming).
pub(crate) async fn read_limited(
    mut response: Response,
    limit: u64,
) -> Result<Bytes, RegistryError> {
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(RegistryError::TooLarge { limit });
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(RegistryError::transport)? {
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(RegistryError::TooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

pub(crate) async fn read_error_body(response: Response) -> ErrorBody {
    match read_limited(response, MAX_ERROR_BODY_BYTES).await {
        Ok(bytes) => ErrorBody::parse(&bytes),
        Err(_) => ErrorBody::default(),
    }
}

pub(crate) async fn error_from(op: Op, response: Response) -> RegistryError {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let body = read_error_body(response).await;
    classify(op, status, retry_after, &body)
}
