//! `deploy/base`: RBAC, the StatefulSet, the network policy and PDB, and the ConfigMap's config.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use imagestream_ingest::rbac;
use serde_json::Value;

use crate::render::{
    all, config_yaml, container, container_port, one, render, selects, statefulset,
};
use crate::{NAME, NAMESPACE, read, rewrite_paths, str_of};

#[test]
fn base_cluster_roles_grant_exactly_the_rules_of_src_rbac() {
    let Some(docs) = render("deploy/base") else {
        return;
    };
    let mut granted: BTreeMap<(String, String, bool), BTreeSet<String>> = BTreeMap::new();
    let bound: BTreeSet<String> = all(&docs, "ClusterRoleBinding")
        .iter()
        .map(|b| {
            let subjects = b["subjects"].as_array().expect("subjects");
            assert_eq!(subjects.len(), 1);
            assert_eq!(subjects[0]["kind"], "ServiceAccount");
            assert_eq!(subjects[0]["name"], NAME);
            assert_eq!(subjects[0]["namespace"], NAMESPACE);
            assert_eq!(b["roleRef"]["kind"], "ClusterRole");
            str_of(&b["roleRef"]["name"]).to_string()
        })
        .collect();
    assert!(all(&docs, "Role").is_empty() && all(&docs, "RoleBinding").is_empty());
    for role in all(&docs, "ClusterRole") {
        let name = str_of(&role["metadata"]["name"]);
        assert!(bound.contains(name), "ClusterRole {name} is not bound");
        for rule in role["rules"].as_array().expect("rules") {
            for group in rule["apiGroups"].as_array().expect("apiGroups") {
                for resource in rule["resources"].as_array().expect("resources") {
                    let scoped = rbac::RULES
                        .iter()
                        .find(|r| r.resource == str_of(resource))
                        .map(|r| r.cluster_scoped)
                        .unwrap_or_else(|| panic!("{resource} is granted but not in rbac::RULES"));
                    let verbs = granted
                        .entry((str_of(group).into(), str_of(resource).into(), scoped))
                        .or_default();
                    for verb in rule["verbs"].as_array().expect("verbs") {
                        assert_ne!(verb, "*", "no wildcard verbs");
                        verbs.insert(str_of(verb).to_string());
                    }
                }
            }
        }
    }
    let expected: BTreeMap<(String, String, bool), BTreeSet<String>> = rbac::verbs_by_resource()
        .into_iter()
        .map(|((g, r, s), v)| {
            (
                (g.into(), r.into(), s),
                v.into_iter().map(Into::into).collect(),
            )
        })
        .collect();
    assert_eq!(granted, expected);
    let sa = one(&docs, "ServiceAccount", NAME);
    assert_eq!(sa["metadata"]["namespace"], NAMESPACE);
}

#[test]
fn base_statefulset_probes_security_context_and_resources_are_production_ready() {
    let Some(docs) = render("deploy/base") else {
        return;
    };
    let sts = statefulset(&docs);
    let pod = &sts["spec"]["template"]["spec"];
    let c = container(&docs);
    assert_eq!(pod["serviceAccountName"], NAME);

    // Probes hit the daemon's endpoints on the port `listen` binds.
    let config: Value = serde_yaml_ng::from_str(&config_yaml(&docs)).expect("config yaml");
    let listen_port: u64 = str_of(&config["listen"])
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("listen port");
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(container_port(c, &get["port"]), listen_port, "{probe} port");
    }

    // Non-root, read-only, no capabilities, RuntimeDefault seccomp (pod or container level).
    let sc = &c["securityContext"];
    let psc = &pod["securityContext"];
    assert!(sc["runAsNonRoot"] == true || psc["runAsNonRoot"] == true);
    assert_ne!(sc["runAsUser"], 0);
    assert_ne!(psc["runAsUser"], 0);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_ne!(sc["privileged"], true);
    let drop = sc["capabilities"]["drop"].as_array().expect("drop");
    assert!(drop.iter().any(|d| d == "ALL"));
    assert!(sc["capabilities"]["add"].is_null());
    let seccomp = if sc["seccompProfile"].is_null() {
        &psc["seccompProfile"]
    } else {
        &sc["seccompProfile"]
    };
    assert_eq!(seccomp["type"], "RuntimeDefault");

    for kind in ["requests", "limits"] {
        let r = &c["resources"][kind];
        assert!(r["memory"].is_string(), "resources.{kind}.memory");
        assert!(!r["cpu"].is_null(), "resources.{kind}.cpu");
    }
    assert_eq!(
        sts["spec"]["replicas"], 1,
        "the queue is a single-writer store"
    );

    // The Service reaches the container port and selects the pod.
    let svc = one(&docs, "Service", NAME);
    let labels = &sts["spec"]["template"]["metadata"]["labels"];
    assert!(selects(&sts["spec"]["selector"], labels));
    let svc_selector = serde_json::json!({"matchLabels": svc["spec"]["selector"]});
    assert!(selects(&svc_selector, labels), "Service selects the pod");
    let svc_port = &svc["spec"]["ports"][0];
    assert_eq!(container_port(c, &svc_port["targetPort"]), listen_port);
}

#[test]
fn base_has_a_network_policy_and_a_pdb_that_select_the_pod() {
    let Some(docs) = render("deploy/base") else {
        return;
    };
    let labels = &statefulset(&docs)["spec"]["template"]["metadata"]["labels"];
    let np = one(&docs, "NetworkPolicy", NAME);
    assert!(selects(&np["spec"]["podSelector"], labels));
    let ports: Vec<u64> = np["spec"]["ingress"]
        .as_array()
        .expect("ingress")
        .iter()
        .flat_map(|i| i["ports"].as_array().cloned().unwrap_or_default())
        .map(|p| container_port(container(&docs), &p["port"]))
        .collect();
    assert_eq!(ports, vec![8080], "only the public port is admitted");
    let pdb = one(&docs, "PodDisruptionBudget", NAME);
    assert!(selects(&pdb["spec"]["selector"], labels));
    assert_eq!(
        pdb["spec"]["maxUnavailable"], 1,
        "a single replica must stay drainable"
    );
}

fn check_config(path: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_imagestream-ingest"))
        .args(["check-config", "--config"])
        .arg(path)
        .output()
        .expect("run check-config");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `25s`, `1m 30s`, `5m` → seconds (humantime's output for whole seconds).
fn seconds(text: &str) -> u64 {
    text.split_whitespace()
        .map(|t| {
            let (n, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
            let n: u64 = n.parse().unwrap_or_else(|_| panic!("duration {text}"));
            match unit {
                "s" => n,
                "m" => n * 60,
                "h" => n * 3600,
                _ => panic!("duration unit in {text}"),
            }
        })
        .sum()
}

#[test]
fn base_config_map_passes_check_config_with_the_secrets_at_their_mount_paths() {
    let Some(docs) = render("deploy/base") else {
        return;
    };
    let sts = statefulset(&docs);
    let pod = &sts["spec"]["template"]["spec"];
    let c = container(&docs);
    let root = tempfile::TempDir::new().unwrap();
    let under = |p: &str| root.path().join(p.trim_start_matches('/'));

    // Materialise every ConfigMap/Secret volume at its mount path, the way the kubelet would.
    let claims: BTreeSet<&str> = sts["spec"]["volumeClaimTemplates"]
        .as_array()
        .map(|v| v.iter().map(|t| str_of(&t["metadata"]["name"])).collect())
        .unwrap_or_default();
    let mut mounts: Vec<(String, bool)> = Vec::new();
    for m in c["volumeMounts"].as_array().expect("volumeMounts") {
        let (name, path) = (str_of(&m["name"]), str_of(&m["mountPath"]));
        std::fs::create_dir_all(under(path)).unwrap();
        if claims.contains(name) {
            mounts.push((path.to_string(), true));
            continue;
        }
        let volume = pod["volumes"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["name"] == name))
            .unwrap_or_else(|| panic!("no volume {name}"));
        let (kind, object) = if !volume["secret"].is_null() {
            ("Secret", str_of(&volume["secret"]["secretName"]))
        } else {
            ("ConfigMap", str_of(&volume["configMap"]["name"]))
        };
        assert!(volume["secret"]["items"].is_null() && volume["configMap"]["items"].is_null());
        let source = one(&docs, kind, object);
        for field in ["data", "stringData"] {
            for (key, value) in source[field].as_object().into_iter().flatten() {
                let bytes = match (kind, field) {
                    ("Secret", "data") => base64::engine::general_purpose::STANDARD
                        .decode(str_of(value))
                        .unwrap(),
                    _ => str_of(value).as_bytes().to_vec(),
                };
                std::fs::write(under(path).join(key), bytes).unwrap();
            }
        }
        mounts.push((path.to_string(), false));
    }

    // The config the container is started with: `--config <mounted file>`; point its paths at the copies.
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(str_of)
        .collect();
    let config_at = args
        .iter()
        .position(|a| *a == "--config")
        .map(|i| args[i + 1])
        .expect("--config in args");
    let original: Value = serde_yaml_ng::from_str(&config_yaml(&docs)).unwrap();
    assert_eq!(
        std::fs::read_to_string(under(config_at)).unwrap(),
        config_yaml(&docs),
        "--config names the ConfigMap's config.yaml"
    );
    let state_dir = str_of(&original["stateDir"]);
    assert!(
        mounts
            .iter()
            .any(|(p, persistent)| *persistent && p == state_dir),
        "stateDir {state_dir} is a persistent volume mount: {mounts:?}"
    );
    let mut config = original.clone();
    rewrite_paths(&mut config, &mut |_, p| {
        let mounted = mounts.iter().any(|(m, _)| Path::new(p).starts_with(m));
        assert!(mounted, "config path {p} is on no volume mount");
        under(p).display().to_string()
    });
    let materialised = under(config_at);
    std::fs::write(&materialised, serde_yaml_ng::to_string(&config).unwrap()).unwrap();
    let (code, stdout, stderr) = check_config(&materialised);
    assert_eq!(code, 0, "check-config: {stderr}");
    let effective: Value = serde_yaml_ng::from_str(&stdout).unwrap();
    assert_eq!(
        effective["stateDir"],
        under(state_dir).display().to_string()
    );
    assert!(
        !stdout.contains("REPLACE-with"),
        "the notify token is redacted: {stdout}"
    );
    assert_eq!(effective["registries"][0]["auth"]["password"], "<redacted>");
    let grace = seconds(str_of(&effective["worker"]["shutdownGrace"]));
    let termination = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    assert!(
        termination > grace,
        "the kubelet waits longer than shutdownGrace"
    );

    // The registry snippet notifies the Service on a configured source path.
    let snippet: Value =
        serde_yaml_ng::from_str(&read("deploy/registry/notifications.yaml")).unwrap();
    let endpoint = &snippet["notifications"]["endpoints"][0];
    let url = url::Url::parse(str_of(&endpoint["url"])).unwrap();
    let svc = one(&docs, "Service", NAME);
    assert_eq!(
        url.host_str(),
        Some(format!("{NAME}.{NAMESPACE}.svc").as_str())
    );
    assert_eq!(
        url.port().map(u64::from),
        svc["spec"]["ports"][0]["port"].as_u64()
    );
    let paths: Vec<&str> = effective["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| str_of(&s["path"]))
        .collect();
    assert!(
        paths.contains(&url.path()),
        "{} is a source path",
        url.path()
    );
    assert!(str_of(&endpoint["headers"]["Authorization"][0]).starts_with("Bearer "));
}
