//! Every notification source type against the real daemon binary, a real registry and the cluster emulator:
//! a push built from the project's fixture (with the repository, tag and digest of an image really pushed to
//! the registry) is mapped; wrong or missing credentials get 401 and queue nothing; a non-push event gets
//! 200 and queues nothing; a malformed body gets 400. Signed types prove the signature covers the raw
//! bytes. Also: which auth each type accepts in the config, and listener TLS / mutual TLS.

mod support;

#[path = "sources/env.rs"]
mod env;
#[path = "sources/tls.rs"]
mod tls_listener;

use env::{Auth, Case, Cred, Env, HMAC_SECRET, body, exercise, hmac_hex, respaced};
use serde_json::{Value, json};
use tempfile::TempDir;

#[tokio::test]
async fn distribution_accepts_a_gitlab_shaped_notification() {
    let env = Env::start().await;
    let (digest, media_type) = env.push_image("team/gitlab", &["v1"]);
    let t = "/events/0/target";
    let push = body(
        "distribution/gitlab-push.json",
        &[
            (format!("{t}/repository"), json!("team/gitlab")),
            (format!("{t}/tag"), json!("v1")),
            (format!("{t}/digest"), json!(digest)),
            (format!("{t}/mediaType"), json!(media_type)),
        ],
    );
    let pull = body(
        "distribution/gitlab-push.json",
        &[("/events/0/action", json!("pull"))],
    );
    let case = Case {
        source: "distribution",
        auth: Auth::Bearer,
        headers: vec![],
        push,
        non_push: (vec![], pull),
    };
    exercise(&env, case, "gitlab", "v1", &digest).await;
}

#[tokio::test]
async fn harbor_pushes_in_the_default_and_the_cloudevents_format_are_mapped() {
    let env = Env::start().await;
    let (digest, _) = env.push_image("team/harbor", &["v1", "v2"]);
    let edits = |root: &str, tag: &str| {
        vec![
            (
                format!("{root}/repository/repo_full_name"),
                json!("team/harbor"),
            ),
            (format!("{root}/repository/name"), json!("harbor")),
            (format!("{root}/resources/0/tag"), json!(tag)),
            (format!("{root}/resources/0/digest"), json!(digest)),
        ]
    };
    let push = body(
        "harbor/push-artifact-default.json",
        &edits("/event_data", "v1"),
    );
    let pull = body::<&str>("harbor/pull-artifact-default.json", &[]);
    let case = Case {
        source: "harbor",
        auth: Auth::Bearer,
        headers: vec![],
        push,
        non_push: (vec![], pull),
    };
    exercise(&env, case, "harbor", "v1", &digest).await;

    let cloudevent = body(
        "harbor/artifact-pushed-cloudevent.json",
        &edits("/data", "v2"),
    );
    let ct = [("content-type", "application/cloudevents+json")];
    let code = env
        .post("harbor", Auth::Bearer, Cred::Valid, &ct, cloudevent)
        .await;
    assert_eq!(code, 202);
    env.wait_image("harbor", "v2", &digest).await;
}

#[tokio::test]
async fn quay_pushes_map_every_updated_tag_resolved_at_the_registry() {
    let env = Env::start().await;
    let (digest, _) = env.push_image("team/quay", &["v1", "latest"]);
    let push = body(
        "quay/repo-push.json",
        &[
            ("/repository", json!("team/quay")),
            ("/name", json!("quay")),
            ("/updated_tags", json!(["v1", "latest"])),
        ],
    );
    let build = body::<&str>("quay/build-success.json", &[]);
    let case = Case {
        source: "quay",
        auth: Auth::Basic,
        headers: vec![],
        push,
        non_push: (vec![], build),
    };
    exercise(&env, case, "quay", "v1", &digest).await;
    env.wait_image("quay", "latest", &digest).await;
}

#[tokio::test]
async fn docker_hub_pushes_are_resolved_by_tag() {
    let env = Env::start().await;
    let (digest, _) = env.push_image("team/dockerhub", &["v1"]);
    let push = body(
        "dockerhub/push.json",
        &[
            ("/repository/repo_name", json!("team/dockerhub")),
            ("/push_data/tag", json!("v1")),
        ],
    );
    let untagged = body("dockerhub/push.json", &[("/push_data/tag", json!(""))]);
    let auth = Auth::Header("X-Ingest-Secret");
    let case = Case {
        source: "dockerhub",
        auth,
        headers: vec![],
        push,
        non_push: (vec![], untagged),
    };
    exercise(&env, case, "dockerhub", "v1", &digest).await;
}

#[tokio::test]
async fn github_package_events_are_verified_over_the_raw_body_and_mapped() {
    let env = Env::start().await;
    let (digest, media_type) = env.push_image("team/github", &["v1"]);
    let pv = "/registry_package/package_version/container_metadata";
    let push = body(
        "github/registry-package-published.json",
        &[
            ("/registry_package/name".to_string(), json!("GitHub")),
            ("/registry_package/owner/login".to_string(), json!("Team")),
            (format!("{pv}/tag/name"), json!("v1")),
            (format!("{pv}/tag/digest"), json!(digest)),
            (format!("{pv}/manifest/digest"), json!(digest)),
            (format!("{pv}/manifest/media_type"), json!(media_type)),
        ],
    );
    let ping = body::<&str>("github/ping.json", &[]);
    let event = |e| vec![("X-GitHub-Event", e), ("X-GitHub-Delivery", "d-1")];
    let case = Case {
        source: "github",
        auth: Auth::GithubHmac,
        headers: event("registry_package"),
        push: push.clone(),
        non_push: (event("ping"), ping),
    };
    exercise(&env, case, "github", "v1", &digest).await;
    // The whitespace variant with its own signature is a valid delivery too (a duplicate by delivery id).
    let code = env
        .post(
            "github",
            Auth::GithubHmac,
            Cred::Valid,
            &event("registry_package"),
            respaced(&push),
        )
        .await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn cloudevents_in_binary_and_structured_mode_are_mapped() {
    let env = Env::start().await;
    let (digest, media_type) = env.push_image("team/zot", &["v1", "v2"]);
    let data = |tag: &str| {
        vec![
            ("/name", json!("team/zot")),
            ("/reference", json!(tag)),
            ("/digest", json!(digest)),
            ("/mediaType", json!(media_type)),
        ]
    };
    let ce = |kind| {
        vec![
            ("Ce-Specversion", "1.0"),
            ("Ce-Type", kind),
            ("Ce-Id", "zot-1"),
            ("Ce-Source", "zotregistry.dev"),
        ]
    };
    let push = body("cloudevents/zot-image-updated-data.json", &data("v1"));
    let created = body::<&str>("cloudevents/zot-repository-created-data.json", &[]);
    let case = Case {
        source: "cloudevents",
        auth: Auth::Basic,
        headers: ce("zotregistry.image.updated"),
        push,
        non_push: (ce("zotregistry.repository.created"), created),
    };
    exercise(&env, case, "zot", "v1", &digest).await;

    let structured_edits: Vec<(String, Value)> = data("v2")
        .into_iter()
        .map(|(p, v)| (format!("/data{p}"), v))
        .collect();
    let structured = body(
        "cloudevents/zot-image-updated-structured.json",
        &structured_edits,
    );
    let ct = [("content-type", "application/cloudevents+json")];
    assert_eq!(
        env.post("cloudevents", Auth::Basic, Cred::Valid, &ct, structured)
            .await,
        202
    );
    env.wait_image("zot", "v2", &digest).await;
}

#[tokio::test]
async fn acr_bare_events_are_mapped() {
    let env = Env::start().await;
    let (digest, media_type) = env.push_image("team/acr", &["v1"]);
    let push = body(
        "acr/push.json",
        &[
            ("/target/repository", json!("team/acr")),
            ("/target/tag", json!("v1")),
            ("/target/digest", json!(digest)),
            ("/target/mediaType", json!(media_type)),
        ],
    );
    let chart = body::<&str>("acr/chart-push.json", &[]);
    let auth = Auth::Header("Authorization");
    let case = Case {
        source: "acr",
        auth,
        headers: vec![],
        push,
        non_push: (vec![], chart),
    };
    exercise(&env, case, "acr", "v1", &digest).await;
}

#[tokio::test]
async fn artifactory_accepts_a_signed_or_a_plain_event_auth_header() {
    let env = Env::start().await;
    let (digest, _) = env.push_image("team/jfrog", &["v1", "v2"]);
    let hex = digest.trim_start_matches("sha256:");
    let push = |tag: &str| {
        body(
            "artifactory/docker-pushed.json",
            &[
                ("/data/image_name", json!("team/jfrog")),
                ("/data/tag", json!(tag)),
                ("/data/sha256", json!(hex)),
            ],
        )
    };
    let deleted = body::<&str>("artifactory/docker-deleted.json", &[]);
    let case = Case {
        source: "artifactory",
        auth: Auth::JfrogHmac,
        headers: vec![],
        push: push("v1"),
        non_push: (vec![], deleted.clone()),
    };
    exercise(&env, case, "jfrog", "v1", &digest).await;
    // With hmacSecretFile the plain secret is accepted too; a wrong one is not.
    let plain = |secret| [("X-JFrog-Event-Auth", secret)];
    let code = env
        .post(
            "artifactory",
            Auth::Bearer,
            Cred::Missing,
            &plain("wrong"),
            push("v2"),
        )
        .await;
    assert_eq!(code, 401);
    let code = env
        .post(
            "artifactory",
            Auth::Bearer,
            Cred::Missing,
            &plain(HMAC_SECRET),
            push("v2"),
        )
        .await;
    assert_eq!(code, 202);
    env.wait_image("jfrog", "v2", &digest).await;
    // With headerSecret only the plain form is accepted.
    let signed = hmac_hex(&push("v2"));
    let code = env
        .post(
            "artifactory-plain",
            Auth::Bearer,
            Cred::Missing,
            &plain(&signed),
            push("v2"),
        )
        .await;
    assert_eq!(code, 401);
    let header = Auth::Header("X-JFrog-Event-Auth");
    assert_eq!(
        env.post("artifactory-plain", header, Cred::Valid, &[], deleted)
            .await,
        200
    );
}

#[test]
fn each_type_accepts_only_the_authentication_its_sender_can_produce() {
    let dir = TempDir::new().expect("tmp");
    std::fs::write(dir.path().join("s"), "secret\n").expect("secret");
    let auths = [
        ("bearer", "bearerTokenFile: s"),
        ("basic", "basic: {username: u, passwordFile: s}"),
        ("hmac", "hmacSecretFile: s"),
        ("header", "headerSecret: {header: X-Secret, secretFile: s}"),
    ];
    let allowed = |kind: &str, auth: &str| match kind {
        "github" => auth == "hmac",
        "artifactory" => auth == "hmac" || auth == "header",
        _ => auth != "hmac",
    };
    for kind in [
        "distribution",
        "harbor",
        "quay",
        "dockerhub",
        "github",
        "cloudevents",
        "acr",
        "artifactory",
    ] {
        for (name, auth) in auths {
            let yaml = format!(
                "registries:\n  - {{name: r, url: 'http://127.0.0.1:1'}}\n\
                 sources:\n  - {{name: s, type: {kind}, path: /n, registry: r, auth: {{{auth}}}}}\n"
            );
            let got = imagestream_ingest::config::Config::from_yaml(&yaml, dir.path());
            match (allowed(kind, name), got) {
                (true, Ok(_)) => {}
                (false, Err(imagestream_ingest::config::ConfigError::Key { key, .. })) => {
                    assert_eq!(key, "sources[0].auth", "{kind} with {name}")
                }
                (want, got) => panic!("{kind} with {name}: want ok={want}, got {got:?}"),
            }
        }
    }
}
