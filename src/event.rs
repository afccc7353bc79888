//! The internal push event every source type normalises to (SPEC §4), and what the queue stores.
//!
//! A `PushEvent` is a *trigger*: it says which reference changed, never where to fetch it from. It carries
//! no URL and no host from the payload (SPEC §1).

use serde::{Deserialize, Serialize};

/// A push of a tagged manifest, as normalised from any source format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushEvent {
    /// Name of the configured source that received it.
    pub source: String,
    /// Name of the configured registry the event refers to (from the source's config, not the payload).
    pub registry: String,
    /// The sender's event id (deduplication key); generated when the format has none.
    pub event_id: String,
    pub repository: String,
    pub tag: String,
    /// Digest named by the payload, if any. Informational: the worker resolves the tag at the registry.
    pub digest: Option<String>,
    /// Media type named by the payload, if any.
    pub media_type: Option<String>,
    /// The sender's timestamp (RFC 3339), if any.
    pub timestamp: Option<String>,
    /// When the daemon accepted it, Unix milliseconds (for `event_to_mapping_seconds`).
    pub received_at_ms: i64,
}

impl PushEvent {
    /// The key under which an equivalent pending job is deduplicated (SPEC §4).
    pub fn dedupe_key(&self) -> String {
        format!(
            "{}\u{0}{}\u{0}{}\u{0}{}",
            self.registry,
            self.repository,
            self.tag,
            self.digest.as_deref().unwrap_or("")
        )
    }
}

/// What a notification body held, per event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A tagged manifest push: queue it.
    Push(PushEvent),
    /// A tag was deleted: recorded and counted, not propagated (yet).
    TagDeleted {
        event_id: String,
        repository: String,
        tag: String,
    },
    /// Well-formed but not actionable (blob push, pull, mount, push by digest, ...).
    Ignored { reason: &'static str },
}

/// Current Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
