// Why not `oci-client` (oras-project/rust-oci-client), as read in its source: `OciDistributionError` has no
// Retry-After and no retryable/metric classification, and the versions read buffer the whole manifest body
// (`res.bytes()` in `_pull_manifest_raw`) with no size cap. It does check sha256/384/512 digests (ref + header).
//! Distribution API v2 client (SPEC §5): manifests, blobs, catalog and tags from ONE configured registry.
//!
//! Every URL is built from the configured base URL (`cfg.url`) plus `/v2/...`; nothing from a notification
//! payload is ever dereferenced (SPEC §1). Manifests are limited to [`MAX_MANIFEST_BYTES`] while streaming, and
//! their digest is computed over the exact bytes received and checked before anyone parses them.
//! This module must not parse manifests (that is [`crate::manifest`]), retry (the worker decides, using
//! [`RegistryError::is_retryable`]) or log secrets.
//!
//! - [`auth`]: `WWW-Authenticate` parsing, the Bearer token flow, the token cache.
//! - [`error`]: [`RegistryError`] and the one function mapping status + error body to it.
//! - [`client`]: [`RegistryClient`], the HTTP side.
//! - [`body`]: bodies read under a limit, digests over the exact bytes, error answers → [`RegistryError`].
//! - [`paging`]: `Link: <...>; rel="next"` pagination.

pub mod auth;
mod body;
mod client;
mod error;
mod paging;

#[cfg(test)]
mod auth_tests;
#[cfg(test)]
mod test_server;
#[cfg(test)]
mod tests;

use std::fmt;

pub use client::RegistryClient;
pub use error::RegistryError;

use crate::digest::Digest;

/// Manifests larger than this are refused, whether announced by `Content-Length` or seen while streaming.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;
/// Longest repository name the distribution grammar allows.
pub const MAX_REPOSITORY_LEN: usize = 255;
/// Longest tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`).
pub const MAX_TAG_LEN: usize = 128;

/// What to fetch a manifest by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

impl Reference {
    /// `sha256:…`/`sha512:…` → a digest reference, anything else must be a valid tag.
    pub fn parse(s: &str) -> Result<Self, RegistryError> {
        if s.contains(':') {
            return Digest::parse(s)
                .map(Self::Digest)
                .map_err(|_| RegistryError::InvalidReference(truncate(s)));
        }
        validate_tag(s)?;
        Ok(Self::Tag(s.to_string()))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tag(t) => f.write_str(t),
            Self::Digest(d) => fmt::Display::fmt(d, f),
        }
    }
}

/// A manifest exactly as the registry served it, with its verified digest.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The exact bytes received (hash these, send these; never re-serialize).
    pub bytes: bytes::Bytes,
    /// The requested digest for by-digest references, else the sha256 of `bytes`.
    pub digest: Digest,
    /// The `Content-Type` the registry answered with, if any.
    pub content_type: Option<String>,
}

/// Check a repository name against the distribution grammar: `/`-separated components of
/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`, at most [`MAX_REPOSITORY_LEN`] bytes in total.
///
/// This is what keeps `..`, `%2f`, upper case and unicode out of the URL path.
pub fn validate_repository(name: &str) -> Result<(), RegistryError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_REPOSITORY_LEN
        && name.split('/').all(valid_path_component);
    if ok {
        Ok(())
    } else {
        Err(RegistryError::InvalidRepository(truncate(name)))
    }
}

fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: &u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(&b[0]) || !alnum(&b[b.len() - 1]) {
        return false;
    }
    // Every run of non-alphanumerics must be one separator: `.`, `_`, `__`, or any number of `-`.
    let mut i = 0;
    while i < b.len() {
        if alnum(&b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(&b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let dashes = sep.bytes().all(|x| x == b'-');
        if !(sep == "." || sep == "_" || sep == "__" || dashes) {
            return false;
        }
    }
    true
}

/// Check a tag against `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<(), RegistryError> {
    if crate::openshift::is_valid_tag(tag) && tag.len() <= MAX_TAG_LEN {
        Ok(())
    } else {
        Err(RegistryError::InvalidReference(truncate(tag)))
    }
}

/// Input echoed into an error is cut short so a hostile name cannot flood logs.
fn truncate(s: &str) -> String {
    s.chars().take(300).collect()
}
