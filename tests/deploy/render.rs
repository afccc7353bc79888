//! Rendering with `kubectl kustomize` and looking objects up in the result.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::{NAME, repo, str_of};

pub(crate) fn kubectl() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file())
}

/// The rendered objects of a kustomization, or None (with the reason printed) when kubectl is absent.
pub(crate) fn render(dir: &str) -> Option<Vec<Value>> {
    let Some(kubectl) = kubectl() else {
        // Straight to the process's stderr: cargo test captures `eprintln!` of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: kubectl is not on PATH, so `kubectl kustomize {dir}` is not checked \
             (install one: Debian's kubernetes-client, as .ci/run does, or any newer kubectl)"
        );
        return None;
    };
    let out = Command::new(kubectl)
        .args(["kustomize", dir])
        .current_dir(repo())
        .output()
        .expect("run kubectl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubectl kustomize {dir}: {stderr}");
    // The kustomizations use `commonLabels` and `bases` on purpose so that kustomize v2 (kubectl 1.20,
    // Debian's package) renders them; kustomize v5 calls both deprecated. Any other warning is a defect.
    let unexpected: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("Warning"))
        .filter(|l| {
            !l.contains("'commonLabels' is deprecated") && !l.contains("'bases' is deprecated")
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "kustomize warns about {dir}: {stderr}"
    );
    Some(yaml_docs(&String::from_utf8_lossy(&out.stdout)))
}

pub(crate) fn yaml_docs(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).expect("yaml document"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

pub(crate) fn one<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "exactly one {kind} {name}");
    found[0]
}

pub(crate) fn all<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// `matchLabels` ⊆ `labels`, and not empty (an empty selector selects nothing or everything).
pub(crate) fn selects(selector: &Value, labels: &Value) -> bool {
    let Some(want) = selector["matchLabels"].as_object() else {
        return false;
    };
    !want.is_empty() && want.iter().all(|(k, v)| &labels[k] == v)
}

pub(crate) fn statefulset(docs: &[Value]) -> &Value {
    one(docs, "StatefulSet", NAME)
}

pub(crate) fn container(docs: &[Value]) -> &Value {
    let containers = statefulset(docs)["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1);
    &containers[0]
}

pub(crate) fn config_yaml(docs: &[Value]) -> String {
    str_of(&one(docs, "ConfigMap", NAME)["data"]["config.yaml"]).to_string()
}

/// A port reference (name or number) of the container → its number.
pub(crate) fn container_port(c: &Value, port: &Value) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    c["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == *port)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port {port}"))
}
