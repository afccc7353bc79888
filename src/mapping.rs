//! Repository → namespace/stream, decided by the configured rules only (SPEC §1, §3).
//!
//! First matching rule wins. A repository that matches no rule — or whose rendered namespace or stream is not
//! a valid name — is ignored with a reason, never mapped into an arbitrary namespace. Pure: no I/O.

use crate::config::MappingRule;

/// Where a pushed tag goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    pub stream: String,
    pub create_stream: bool,
}

/// Why a push maps nowhere (closed set, used as a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmapped {
    NoRule,
    TagFiltered,
    InvalidTag,
    InvalidNamespace,
    InvalidStream,
}

impl Unmapped {
    pub fn reason(self) -> &'static str {
        match self {
            Self::NoRule => "no mapping rule matches the repository",
            Self::TagFiltered => "tag excluded by the rule's tag filter",
            Self::InvalidTag => "tag is not a valid image stream tag",
            Self::InvalidNamespace => "rule produced an invalid namespace name",
            Self::InvalidStream => "rule produced an invalid image stream name",
        }
    }
    pub fn metric_label(self) -> &'static str {
        match self {
            Self::NoRule => "unmapped_repository",
            Self::TagFiltered => "tag_filtered",
            Self::InvalidTag => "invalid_tag",
            Self::InvalidNamespace => "invalid_namespace",
            Self::InvalidStream => "invalid_stream",
        }
    }
}

/// Resolve a pushed `repository:tag` of `registry` against the rules.
pub fn resolve(
    rules: &[MappingRule],
    registry: &str,
    repository: &str,
    tag: &str,
) -> Result<Target, Unmapped> {
    if !is_valid_tag(tag) {
        return Err(Unmapped::InvalidTag);
    }
    for rule in rules.iter().filter(|r| r.registry == registry) {
        let Some(caps) = rule.repository.captures(repository) else {
            continue;
        };
        if let Some(filter) = &rule.tags {
            if !filter.is_match(tag) {
                return Err(Unmapped::TagFiltered);
            }
        }
        let render = |template: &str| {
            let mut out = String::new();
            let mut rest = template;
            while let Some(open) = rest.find('{') {
                out.push_str(&rest[..open]);
                let after = &rest[open + 1..];
                match after.find('}') {
                    Some(close) => {
                        let name = &after[..close];
                        out.push_str(caps.name(name).map(|m| m.as_str()).unwrap_or(""));
                        rest = &after[close + 1..];
                    }
                    None => {
                        out.push_str(&rest[open..]);
                        rest = "";
                    }
                }
            }
            out.push_str(rest);
            out
        };
        let namespace = render(&rule.namespace);
        let stream = render(&rule.image_stream);
        if !is_dns1123_label(&namespace) {
            return Err(Unmapped::InvalidNamespace);
        }
        if !is_valid_stream_name(&stream) {
            return Err(Unmapped::InvalidStream);
        }
        return Ok(Target {
            namespace,
            stream,
            create_stream: rule.create_image_stream,
        });
    }
    Err(Unmapped::NoRule)
}

/// The image stream tag grammar, validated client-side (the server only checks non-empty; SPEC §6).
pub use crate::openshift::is_valid_tag;

/// A Kubernetes namespace name: DNS-1123 label.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase() | b[0].is_ascii_digit()
        && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// An ImageStream name: a DNS-1123 subdomain-ish path segment (lowercase, digits, `-`, `.`, `_`), ≤ 253,
/// never `.`/`..`, starting and ending alphanumeric.
pub fn is_valid_stream_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 253
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'.' | b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn config(mappings: &str) -> Config {
        let yaml = format!(
            "registries:\n  - name: corp\n    url: http://127.0.0.1:5000\n  - name: other\n    url: http://127.0.0.1:5001\n{mappings}"
        );
        Config::from_yaml(&yaml, Path::new(".")).expect("config")
    }

    #[test]
    fn default_rule_maps_two_segment_repositories() {
        let c = config("");
        let t = resolve(&c.mappings, "corp", "team-a/app", "v1").expect("mapped");
        assert_eq!(t.namespace, "team-a");
        assert_eq!(t.stream, "app");
        assert!(t.create_stream);
    }

    #[test]
    fn repositories_outside_the_rules_are_ignored() {
        let c = config("");
        for repo in ["app", "a/b/c", "Team/app", "../x", "a/%2fb", "ns/ünï"] {
            assert_eq!(
                resolve(&c.mappings, "corp", repo, "v1"),
                Err(Unmapped::NoRule),
                "{repo}"
            );
        }
    }

    #[test]
    fn explicit_rules_apply_in_order_with_tag_filters() {
        let c = config(
            "mappings:\n  - registry: corp\n    repository: '^mirror/(?P<name>[a-z]+)$'\n    namespace: mirrors\n    imageStream: '{name}'\n    tags: '^v[0-9.]+$'\n  - registry: corp\n    repository: '^(?P<ns>[a-z]+)/(?P<name>[a-z]+)$'\n    namespace: 'apps-{ns}'\n    imageStream: '{name}'\n    createImageStream: true\n",
        );
        let t = resolve(&c.mappings, "corp", "mirror/nginx", "v1.2").expect("mapped");
        assert_eq!(
            (t.namespace.as_str(), t.stream.as_str(), t.create_stream),
            ("mirrors", "nginx", false)
        );
        assert_eq!(
            resolve(&c.mappings, "corp", "mirror/nginx", "latest"),
            Err(Unmapped::TagFiltered)
        );
        let t = resolve(&c.mappings, "corp", "team/web", "latest").expect("mapped");
        assert_eq!(t.namespace, "apps-team");
        assert_eq!(
            resolve(&c.mappings, "other", "team/web", "latest"),
            Err(Unmapped::NoRule)
        );
    }

    #[test]
    fn a_rule_that_renders_an_invalid_namespace_maps_nothing() {
        let c = config(
            "mappings:\n  - registry: corp\n    repository: '^(?P<ns>[A-Za-z_]+)/(?P<name>[a-z]+)$'\n    namespace: '{ns}'\n    imageStream: '{name}'\n",
        );
        assert_eq!(
            resolve(&c.mappings, "corp", "Bad_NS/app", "v1"),
            Err(Unmapped::InvalidNamespace)
        );
    }

    #[test]
    fn tag_validation_follows_the_documented_grammar() {
        for ok in ["v1", "latest", "_x", "1.0-rc.1", &"a".repeat(128)] {
            assert!(is_valid_tag(ok), "{ok}");
        }
        for bad in ["", ".v1", "-v1", "v1/x", "v 1", "ü", &"a".repeat(129)] {
            assert!(!is_valid_tag(bad), "{bad}");
        }
    }
}
