//! Configuration docs: `docs/config.example.yaml` ⇄ the README table ⇄ the loader's effective config.

use std::collections::BTreeSet;
use std::path::Path;

use imagestream_ingest::config::Config;
use serde_json::Value;

use crate::{read, rewrite_paths, str_of};

/// Leaf key paths (`registries[].auth.username`) of a YAML/JSON document.
fn leaves(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(child, &p, out);
            }
        }
        Value::Array(items) if items.iter().any(|i| i.is_object()) => {
            for i in items {
                leaves(i, &format!("{prefix}[]"), out);
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

/// The example with its absolute paths moved under `root`, the files they name created there.
fn materialise_example(root: &Path) -> String {
    let mut example: Value = serde_yaml_ng::from_str(&read("docs/config.example.yaml")).unwrap();
    let hosts: Vec<String> = example["registries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let u = url::Url::parse(str_of(&r["url"])).unwrap();
            match u.port() {
                Some(p) => format!("{}:{p}", u.host_str().unwrap()),
                None => u.host_str().unwrap().to_string(),
            }
        })
        .collect();
    rewrite_paths(&mut example, &mut |key, p| {
        let at = root.join(p.trim_start_matches('/'));
        if !key.ends_with("File") {
            return at.display().to_string();
        }
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        let content = if p.ends_with(".dockerconfigjson") {
            let auths: serde_json::Map<String, Value> = hosts
                .iter()
                .map(|h| {
                    (
                        h.clone(),
                        serde_json::json!({"username": "u", "password": "p"}),
                    )
                })
                .collect();
            serde_json::json!({ "auths": auths }).to_string()
        } else {
            "example-secret\n".to_string()
        };
        std::fs::write(&at, content).unwrap();
        at.display().to_string()
    });
    serde_yaml_ng::to_string(&example).unwrap()
}

/// Key paths in the first column of README's "## Configuration" table (one key per row).
fn readme_config_keys() -> BTreeSet<String> {
    let readme = read("README.md");
    let start = readme
        .find("\n## Configuration\n")
        .expect("## Configuration");
    let section = &readme[start + 1..];
    let section = &section[..section[3..]
        .find("\n## ")
        .map(|i| i + 3)
        .unwrap_or(section.len())];
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cell = l.split('|').nth(1).unwrap().trim();
            assert_eq!(cell.matches('`').count(), 2, "one key per row: {l}");
            cell.trim_matches('`').to_string()
        })
        .collect()
}

/// Auth sections are `exactly one of` alternatives whose effective form differs by design
/// (`bearerTokenFile` → `{kind: bearerToken, token: <redacted>}`), so they are compared by name only
/// between the example and the README.
fn without_auth(keys: &BTreeSet<String>) -> BTreeSet<String> {
    keys.iter()
        .filter(|k| !k.starts_with("registries[].auth.") && !k.starts_with("sources[].auth."))
        .cloned()
        .collect()
}

#[test]
fn the_config_example_the_readme_table_and_the_loader_name_the_same_keys() {
    let root = tempfile::TempDir::new().unwrap();
    let text = materialise_example(root.path());
    let config = Config::from_yaml(&text, root.path())
        .unwrap_or_else(|e| panic!("docs/config.example.yaml does not load: {e}"));

    let mut example = BTreeSet::new();
    leaves(
        &serde_yaml_ng::from_str(&read("docs/config.example.yaml")).unwrap(),
        "",
        &mut example,
    );
    let readme = readme_config_keys();
    assert_eq!(
        readme.difference(&example).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "README keys missing from docs/config.example.yaml"
    );
    assert_eq!(
        example.difference(&readme).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "docs/config.example.yaml keys missing from the README table"
    );

    // A key added to the config types shows up in the effective config; it must be in the example too.
    let mut effective = BTreeSet::new();
    let serialized: Value =
        serde_yaml_ng::from_str(&serde_yaml_ng::to_string(&config).unwrap()).unwrap();
    leaves(&serialized, "", &mut effective);
    let (effective, example) = (without_auth(&effective), without_auth(&example));
    let undocumented: Vec<_> = effective.difference(&example).collect();
    let unknown: Vec<_> = example.difference(&effective).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "the loader's effective config has keys missing from docs/config.example.yaml: {undocumented:?}; \
         the example has keys the effective config lacks: {unknown:?}"
    );
}

#[test]
fn the_readme_keeps_the_two_quick_start_commands_and_a_registries_section() {
    let readme = read("README.md");
    for line in [
        "cargo run --release -- serve --config config/local.yaml",
        ".ci/run",
    ] {
        assert!(
            readme.lines().any(|l| l == line),
            "README quick start: {line}"
        );
    }
    assert!(readme.contains("\n## Registries\n"));
}
