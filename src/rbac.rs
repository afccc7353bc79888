//! The cluster permissions the daemon needs, in one place (SPEC §6 "least privilege").
//!
//! [`RULES`] lists exactly the `image.openshift.io` requests that [`crate::sink::kube`] makes; the unit
//! test below reads that file's source and fails when a request appears there without a rule here (or a
//! rule here has no request there). `deploy/base/rbac.yaml` is checked against [`RULES`] by the same test
//! and, rendered through kustomize, by `tests/deploy.rs`. This module only describes; it grants nothing
//! and makes no requests.

use std::collections::{BTreeMap, BTreeSet};

/// The API group of every resource the daemon touches.
pub const API_GROUP: &str = "image.openshift.io";

/// The discovery document the readiness probe GETs (`KubeSink::ping`). It is a non-resource URL that
/// the default `system:discovery` ClusterRole grants to every authenticated user, so no rule is needed.
pub const DISCOVERY_PATH: &str = "/apis/image.openshift.io/v1";

/// One RBAC rule: `verbs` on `resource` in `api_group`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub api_group: &'static str,
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
    /// Cluster-scoped resources need a ClusterRoleBinding; namespaced ones can be narrowed to the
    /// namespaces the mapping rules produce with RoleBindings.
    pub cluster_scoped: bool,
    /// When the daemon makes this call (for operators deciding what they can leave out).
    pub needed_when: &'static str,
}

/// Exactly what the daemon calls; nothing else (SPEC §6).
pub const RULES: &[Rule] = &[
    Rule {
        api_group: API_GROUP,
        resource: "imagestreammappings",
        verbs: &["create"],
        cluster_scoped: false,
        needed_when: "always: POST …/imagestreammappings is the write itself (the server creates the \
                      Image and updates the stream status with its own storage)",
    },
    Rule {
        api_group: API_GROUP,
        resource: "imagestreams",
        verbs: &["get", "create"],
        cluster_scoped: false,
        needed_when: "get: always (the `unchanged` check reads status.tags[tag].items[0]); create: only \
                      when a mapping rule sets createImageStream",
    },
    Rule {
        api_group: API_GROUP,
        resource: "images",
        verbs: &["create"],
        cluster_scoped: true,
        needed_when: "only with cluster.createChildImages: the children of a manifest list are created \
                      first (409 AlreadyExists counts as success, so images are never read)",
    },
];

/// [`RULES`] as `(api_group, resource, cluster_scoped) → verbs`, the shape manifests are compared in.
pub fn verbs_by_resource() -> BTreeMap<(&'static str, &'static str, bool), BTreeSet<&'static str>> {
    let mut out: BTreeMap<_, BTreeSet<_>> = BTreeMap::new();
    for rule in RULES {
        out.entry((rule.api_group, rule.resource, rule.cluster_scoped))
            .or_default()
            .extend(rule.verbs.iter().copied());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    const KUBE_SINK: &str = include_str!("sink/kube.rs");
    const RBAC_YAML: &str = include_str!("../deploy/base/rbac.yaml");

    /// A request the kube sink makes, as RBAC sees it.
    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
    enum Call {
        Resource {
            resource: String,
            verb: &'static str,
            cluster_scoped: bool,
        },
        Discovery,
    }

    /// `(method, path after the API prefix)` → what RBAC checks for it.
    fn call_of(method: &str, suffix: &str) -> Call {
        let segments: Vec<&str> = suffix.split('/').filter(|s| !s.is_empty()).collect();
        if segments.is_empty() {
            assert_eq!(method, "GET", "only GET of the discovery document is free");
            return Call::Discovery;
        }
        let (cluster_scoped, rest) = match segments.as_slice() {
            ["namespaces", _namespace, rest @ ..] => (false, rest),
            rest => (true, rest),
        };
        let (resource, named) = match rest {
            [resource] => (resource.to_string(), false),
            [resource, _name] => (resource.to_string(), true),
            [resource, _name, sub] => (format!("{resource}/{sub}"), true),
            other => panic!("unrecognised request path {suffix} ({other:?})"),
        };
        let verb = match (method, named) {
            ("GET", true) => "get",
            ("GET", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            (m, _) => panic!("unrecognised method {m}"),
        };
        Call::Resource {
            resource,
            verb,
            cluster_scoped,
        }
    }

    /// Every request in `src/sink/kube.rs`, read from its source text.
    fn calls_in_kube_sink() -> BTreeSet<Call> {
        let prefix = Regex::new(r#"const IMAGE_API_PATH: &str = "([^"]+)";"#).unwrap();
        let declared = &prefix.captures(KUBE_SINK).expect("IMAGE_API_PATH")[1];
        assert_eq!(declared, DISCOVERY_PATH);

        let send =
            Regex::new(r"\.send\(\s*op,\s*Method::([A-Z]+),\s*(&path|IMAGE_API_PATH)\s*,").unwrap();
        let path =
            Regex::new(r#"let path = format!\(\s*"\{IMAGE_API_PATH\}([^"]*)"\s*\)"#).unwrap();
        let mut calls = BTreeSet::new();
        let mut sends = 0;
        for c in send.captures_iter(KUBE_SINK) {
            sends += 1;
            let at = c.get(0).unwrap().start();
            let suffix = if &c[2] == "IMAGE_API_PATH" {
                String::new()
            } else {
                let before = &KUBE_SINK[..at];
                path.captures_iter(before)
                    .last()
                    .map(|p| p[1].to_string())
                    .expect("a `let path = format!(\"{IMAGE_API_PATH}…\")` before the send")
            };
            calls.insert(call_of(&c[1], &suffix));
        }
        // A request built any other way would escape the scan: every `Method::X` must be one of the
        // sends above, and the client is touched in exactly one place (`send`).
        let methods = Regex::new(r"Method::[A-Z]+")
            .unwrap()
            .find_iter(KUBE_SINK)
            .count();
        assert_eq!(
            methods, sends,
            "src/sink/kube.rs uses Method::X outside `self.send(op, Method::X, &path|IMAGE_API_PATH, …)`; \
             extend this scan and RULES"
        );
        assert_eq!(KUBE_SINK.matches("self.client.").count(), 1);
        assert!(!KUBE_SINK.contains("Api::<") && !KUBE_SINK.contains("kube::Api"));
        assert!(
            sends >= 5,
            "found only {sends} requests; is the scan still right?"
        );
        calls
    }

    fn granted() -> BTreeSet<Call> {
        RULES
            .iter()
            .flat_map(|r| {
                r.verbs.iter().map(|v| Call::Resource {
                    resource: r.resource.to_string(),
                    verb: v,
                    cluster_scoped: r.cluster_scoped,
                })
            })
            .collect()
    }

    #[test]
    fn every_request_of_the_kube_sink_has_a_rule_and_every_rule_a_request() {
        let mut calls = calls_in_kube_sink();
        assert!(
            calls.remove(&Call::Discovery),
            "the probe GETs the discovery document"
        );
        let granted = granted();
        let missing: Vec<_> = calls.difference(&granted).collect();
        let unused: Vec<_> = granted.difference(&calls).collect();
        assert!(missing.is_empty(), "requests without a rule: {missing:?}");
        assert!(unused.is_empty(), "rules without a request: {unused:?}");
    }

    #[test]
    fn rules_are_in_the_image_group_unique_and_explained() {
        let mut seen = BTreeSet::new();
        for r in RULES {
            assert_eq!(r.api_group, API_GROUP);
            assert!(seen.insert(r.resource), "{} listed twice", r.resource);
            assert!(!r.verbs.is_empty() && !r.needed_when.trim().is_empty());
        }
    }

    #[test]
    fn the_base_cluster_roles_grant_exactly_the_rules() {
        let mut found: BTreeMap<(String, String, bool), BTreeSet<String>> = BTreeMap::new();
        for doc in serde_yaml_ng::Deserializer::from_str(RBAC_YAML) {
            let v: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
            if v["kind"] != "ClusterRole" {
                continue;
            }
            let cluster_role = v["metadata"]["name"].as_str().unwrap().to_string();
            for rule in v["rules"].as_array().unwrap() {
                for group in rule["apiGroups"].as_array().unwrap() {
                    for resource in rule["resources"].as_array().unwrap() {
                        let resource = resource.as_str().unwrap();
                        let scoped = RULES
                            .iter()
                            .find(|r| r.resource == resource)
                            .map(|r| r.cluster_scoped)
                            .unwrap_or_else(|| panic!("{resource} is not in RULES"));
                        // Cluster-scoped grants live in their own ClusterRole so the namespaced one
                        // can be bound per namespace.
                        assert_eq!(
                            cluster_role.ends_with("-images"),
                            scoped,
                            "{resource} in ClusterRole {cluster_role}"
                        );
                        let verbs = found
                            .entry((
                                group.as_str().unwrap().to_string(),
                                resource.to_string(),
                                scoped,
                            ))
                            .or_default();
                        for verb in rule["verbs"].as_array().unwrap() {
                            verbs.insert(verb.as_str().unwrap().to_string());
                        }
                    }
                }
            }
        }
        let expected: BTreeMap<(String, String, bool), BTreeSet<String>> = verbs_by_resource()
            .into_iter()
            .map(|((g, r, s), v)| {
                (
                    (g.to_string(), r.to_string(), s),
                    v.into_iter().map(str::to_string).collect(),
                )
            })
            .collect();
        assert_eq!(found, expected);
    }
}
