//! GitHub Packages / GHCR webhooks (SPEC §4): the `package` and `registry_package` events.
//!
//! The event name is the `X-GitHub-Event` header and the delivery id (`X-GitHub-Delivery`, reused on
//! redelivery) is the event id. The signature (`X-Hub-Signature-256`) is checked before this parser runs
//! ([`super::signature`]). A container version carries
//! `package_version.container_metadata.{tag{name,digest},manifest{digest,media_type}}`; the repository is
//! the GHCR path `owner/package`, lowercased (GitHub keeps the owner's casing, image names are lowercase).
//! `ping` and every other event are well-formed but not actionable.

use serde::Deserialize;

use super::{Origin, ParseError, PushFields, RequestHeaders, push_notice};
use crate::event::Notice;

/// Header naming the event type.
pub const EVENT_HEADER: &str = "x-github-event";
/// Header carrying the delivery id.
pub const DELIVERY_HEADER: &str = "x-github-delivery";

#[derive(Deserialize)]
struct Event {
    #[serde(default)]
    action: String,
    /// `package` events.
    package: Option<Package>,
    /// `registry_package` events.
    registry_package: Option<Package>,
}

#[derive(Deserialize)]
struct Package {
    #[serde(default)]
    name: String,
    #[serde(default)]
    package_type: String,
    #[serde(default)]
    ecosystem: String,
    owner: Option<Owner>,
    package_version: Option<PackageVersion>,
}

#[derive(Deserialize)]
struct Owner {
    #[serde(default)]
    login: String,
}

#[derive(Deserialize)]
struct PackageVersion {
    updated_at: Option<String>,
    container_metadata: Option<ContainerMetadata>,
}

#[derive(Deserialize)]
struct ContainerMetadata {
    tag: Option<TagInfo>,
    manifest: Option<ManifestInfo>,
}

#[derive(Deserialize)]
struct TagInfo {
    name: Option<String>,
    digest: Option<String>,
}

#[derive(Deserialize)]
struct ManifestInfo {
    digest: Option<String>,
    media_type: Option<String>,
}

/// Parse a GitHub webhook delivery (headers + raw body).
pub fn parse(
    origin: Origin<'_>,
    headers: &RequestHeaders,
    body: &[u8],
) -> Result<Vec<Notice>, ParseError> {
    let event = headers
        .get(EVENT_HEADER)
        .ok_or(ParseError::Shape("missing X-GitHub-Event header"))?;
    let e: Event = serde_json::from_slice(body).map_err(ParseError::Json)?;
    let ignored = |reason| Ok(vec![Notice::Ignored { reason }]);
    let package = match event {
        "package" => e.package,
        "registry_package" => e.registry_package,
        "ping" => return ignored("ping"),
        _ => return ignored("not a package event"),
    };
    let package = package.ok_or(ParseError::Shape("package event without its package"))?;
    if !matches!(e.action.as_str(), "published" | "updated") {
        return ignored("package action is not a publication");
    }
    let is_container = [&package.package_type, &package.ecosystem]
        .iter()
        .any(|t| t.eq_ignore_ascii_case("container") || t.eq_ignore_ascii_case("docker"));
    if !is_container {
        return ignored("not a container package");
    }
    let owner = package.owner.map(|o| o.login).unwrap_or_default();
    if owner.is_empty() || package.name.is_empty() {
        return ignored("push without a repository");
    }
    let repository = format!("{owner}/{}", package.name).to_ascii_lowercase();
    let version = package.package_version;
    let timestamp = version.as_ref().and_then(|v| v.updated_at.clone());
    let metadata = version.and_then(|v| v.container_metadata);
    let (tag, manifest) = match metadata {
        Some(m) => (m.tag, m.manifest),
        None => (None, None),
    };
    let (tag_name, tag_digest) = match tag {
        Some(t) => (t.name, t.digest),
        None => (None, None),
    };
    let (manifest_digest, manifest_media_type) = match manifest {
        Some(m) => (m.digest, m.media_type),
        None => (None, None),
    };
    // The digest the tag points at; the manifest's own is the same for a single-manifest push.
    let digest = tag_digest
        .filter(|d| !d.is_empty())
        .or(manifest_digest.clone());
    let media_type = manifest_media_type.filter(|_| digest == manifest_digest);
    Ok(vec![push_notice(
        origin,
        PushFields {
            event_id: headers.get(DELIVERY_HEADER).unwrap_or_default().to_string(),
            repository: &repository,
            tag: tag_name.as_deref(),
            digest: digest.as_deref(),
            media_type: media_type.as_deref(),
            timestamp,
        },
    )])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::test_support::*;
    use serde_json::json;

    const PACKAGE: &[u8] =
        include_bytes!("../../fixtures/notifications/github/package-published.json");
    const REGISTRY_PACKAGE: &[u8] =
        include_bytes!("../../fixtures/notifications/github/registry-package-published.json");
    const PING: &[u8] = include_bytes!("../../fixtures/notifications/github/ping.json");
    const D1: &str = "sha256:f079a57f1a4b4b515ef76af8f784208ad36a39869bb5e5a9cb3929355b388175";

    fn headers(event: &str) -> RequestHeaders {
        RequestHeaders::new([
            ("X-GitHub-Event".to_string(), event.to_string()),
            ("X-GitHub-Delivery".to_string(), "delivery-1".to_string()),
        ])
    }

    #[test]
    fn both_package_events_become_a_push_of_the_lowercased_ghcr_path() {
        for (event, body) in [("package", PACKAGE), ("registry_package", REGISTRY_PACKAGE)] {
            let notices = parse(ORIGIN, &headers(event), body).expect("parse");
            let p = push(&notices[0]);
            assert_eq!(
                (p.repository.as_str(), p.tag.as_str()),
                ("team/app", "v1"),
                "{event}"
            );
            assert_eq!(p.digest.as_deref(), Some(D1), "{event}");
            assert_eq!(p.event_id, "delivery-1", "{event}");
            assert_eq!(
                p.media_type.as_deref(),
                Some("application/vnd.oci.image.manifest.v1+json"),
                "{event}"
            );
        }
    }

    #[test]
    fn pings_other_events_and_other_packages_are_ignored() {
        let pv = "/package/package_version/container_metadata";
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("ping", PING.to_vec(), "ping"),
            ("push", PING.to_vec(), "not a package event"),
            // The event header decides which object is read.
            (
                "registry_package",
                edited(PACKAGE, |_| {}),
                "package event without its package",
            ),
            (
                "package",
                edited(PACKAGE, |v| v["action"] = json!("deleted")),
                "package action is not a publication",
            ),
            (
                "package",
                edited(PACKAGE, |v| {
                    v["package"]["package_type"] = json!("npm");
                    v["package"]["ecosystem"] = json!("npm");
                }),
                "not a container package",
            ),
            (
                "package",
                edited(PACKAGE, |v| {
                    *v.pointer_mut(&format!("{pv}/tag/name")).expect("tag") = json!("")
                }),
                "push by digest (no tag)",
            ),
            (
                "package",
                edited(PACKAGE, |v| {
                    *v.pointer_mut(&format!("{pv}/tag/digest")).expect("digest") =
                        json!("sha256:6c62fb45fe66bfb1ea9a66abc38f6a0cc974292b")
                }),
                "invalid digest",
            ),
            (
                "package",
                edited(PACKAGE, |v| v["package"]["owner"] = json!(null)),
                "push without a repository",
            ),
        ];
        for (event, body, want) in cases {
            match parse(ORIGIN, &headers(event), &body) {
                Ok(n) => assert_eq!(reason(&n[0]), want, "{event}"),
                Err(e) => assert_eq!(e.to_string(), want, "{event}"),
            }
        }
    }

    #[test]
    fn a_missing_tag_digest_falls_back_to_the_manifest_digest() {
        let body = edited(PACKAGE, |v| {
            v["package"]["package_version"]["container_metadata"]["tag"]["digest"] = json!(null)
        });
        let notices = parse(ORIGIN, &headers("package"), &body).expect("parse");
        assert_eq!(push(&notices[0]).digest.as_deref(), Some(D1));
        let no_delivery = RequestHeaders::new([("x-github-event".into(), "package".into())]);
        let notices = parse(ORIGIN, &no_delivery, PACKAGE).expect("parse");
        assert!(!push(&notices[0]).event_id.is_empty());
    }

    #[test]
    fn deliveries_that_are_not_github_events_are_errors() {
        assert!(parse(ORIGIN, &RequestHeaders::default(), PACKAGE).is_err());
        for body in [&b""[..], b"[]", b"{\"action\": 5}", b"{\"package\": \"x\"}"] {
            assert!(
                parse(ORIGIN, &headers("package"), body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
