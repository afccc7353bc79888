//! `deploy/` and the configuration docs, checked against the code they describe (SPEC §8).
//!
//! The kustomize base and overlays are rendered with the real `kubectl kustomize` and every object that
//! matters is checked: RBAC equals `imagestream_ingest::rbac::RULES`, probes, security context, resources,
//! the state volume, and the ConfigMap's config run through the real `check-config` with the Secrets
//! materialised at their mount paths. Without kubectl those tests print why and return; the docs tests
//! (`docs/config.example.yaml` ⇄ README table ⇄ the loader's effective config) need nothing.

use std::path::PathBuf;

use serde_json::Value;

#[path = "deploy/base.rs"]
mod base;
#[path = "deploy/docs.rs"]
mod docs;
#[path = "deploy/overlays.rs"]
mod overlays;
#[path = "deploy/render.rs"]
mod render;

const NAMESPACE: &str = "imagestream-ingest";
const NAME: &str = "imagestream-ingest";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// Keys whose values are filesystem paths in the daemon's config.
fn is_path_key(key: &str) -> bool {
    key.ends_with("File") || matches!(key, "stateDir" | "kubeconfig" | "directory")
}

/// Rewrite every path value below `v` with `f(key, path)` (for configs whose paths point at mounts).
fn rewrite_paths(v: &mut Value, f: &mut dyn FnMut(&str, &str) -> String) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                match child {
                    Value::String(s) if is_path_key(k) => *s = f(k, s),
                    _ => rewrite_paths(child, f),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| rewrite_paths(i, f)),
        _ => {}
    }
}
