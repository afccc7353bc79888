//! `deploy/overlays/*` and `deploy/Containerfile`.

use serde_json::Value;

use crate::render::{config_yaml, one, render, selects};
use crate::{NAME, NAMESPACE, read, repo, str_of};

/// Every base object is still there after an overlay (overlays only add).
fn assert_contains_base(overlay: &[Value], base: &[Value]) {
    for b in base {
        let key = (&b["kind"], &b["metadata"]["name"]);
        assert!(
            overlay
                .iter()
                .any(|o| (&o["kind"], &o["metadata"]["name"]) == key),
            "overlay lost {key:?}"
        );
    }
}

#[test]
fn route_overlay_exposes_only_notification_paths_over_edge_tls() {
    let (Some(base), Some(docs)) = (
        render("deploy/base"),
        render("deploy/overlays/openshift-route"),
    ) else {
        return;
    };
    assert_contains_base(&docs, &base);
    let route = one(&docs, "Route", NAME);
    assert_eq!(route["metadata"]["namespace"], NAMESPACE);
    let spec = &route["spec"];
    assert_eq!(spec["to"]["kind"], "Service");
    assert_eq!(spec["to"]["name"], NAME);
    let svc = one(&docs, "Service", NAME);
    assert!(
        svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == spec["port"]["targetPort"])
    );
    assert_eq!(spec["tls"]["termination"], "edge");
    assert_ne!(spec["tls"]["insecureEdgeTerminationPolicy"], "Allow");
    let prefix = str_of(&spec["path"]);
    let config: Value = serde_yaml_ng::from_str(&config_yaml(&docs)).unwrap();
    for s in config["sources"].as_array().unwrap() {
        assert!(
            str_of(&s["path"]).starts_with(prefix),
            "{} is routed",
            s["path"]
        );
    }
    for internal in ["/metrics", "/readyz", "/healthz"] {
        assert!(!internal.starts_with(prefix), "{internal} is not routed");
    }
}

#[test]
fn servicemonitor_overlay_scrapes_metrics_from_the_service_and_ships_alerts() {
    let (Some(base), Some(docs)) = (
        render("deploy/base"),
        render("deploy/overlays/servicemonitor"),
    ) else {
        return;
    };
    assert_contains_base(&docs, &base);
    let sm = one(&docs, "ServiceMonitor", NAME);
    let svc = one(&docs, "Service", NAME);
    assert!(selects(&sm["spec"]["selector"], &svc["metadata"]["labels"]));
    let endpoint = &sm["spec"]["endpoints"][0];
    assert_eq!(endpoint["path"], "/metrics");
    assert!(
        svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == endpoint["port"])
    );
    let rules = one(&docs, "PrometheusRule", NAME);
    let alerts = rules["spec"]["groups"][0]["rules"]
        .as_array()
        .expect("rules");
    assert!(alerts.len() >= 5);
    assert!(
        alerts
            .iter()
            .all(|a| a["alert"].is_string() && a["expr"].is_string())
    );
}

#[test]
fn containerfile_is_multi_stage_and_runs_the_binary_as_non_root() {
    let text = read("deploy/Containerfile");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let froms: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert!(
        froms.len() >= 2 && froms[0].contains(" AS build"),
        "multi-stage: {froms:?}"
    );
    let runtime_at = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    let runtime = &lines[runtime_at..];
    let user = runtime
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER in the runtime stage");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("numeric USER (runAsNonRoot)");
    assert_ne!(uid, 0);
    assert!(
        runtime
            .iter()
            .any(|l| l.starts_with("COPY --from=build") && l.contains("imagestream-ingest"))
    );
    // Every path the build stage copies exists (a missing one would fail the build).
    for l in lines[..runtime_at]
        .iter()
        .filter(|l| l.starts_with("COPY "))
    {
        let parts: Vec<&str> = l.split_whitespace().skip(1).collect();
        for src in &parts[..parts.len() - 1] {
            assert!(
                repo().join(src).exists(),
                "Containerfile copies missing {src}"
            );
        }
    }
}
