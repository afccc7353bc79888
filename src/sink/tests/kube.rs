//! The kube sink against a small actix-web stand-in for openshift-apiserver, reached through a kubeconfig
//! written to a temp dir (plain HTTP + bearer token), so the whole client path is exercised.

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use crate::config::{ClusterConfig, SinkKind};
use crate::metrics::Metrics;
use crate::openshift::{Image, ObjectMeta, build_mapping};
use crate::sink::{KubeSink, Sink, SinkError, TagEventRef};

const TOKEN: &str = "s3cret-token";
const API: &str = "/apis/image.openshift.io/v1";
const DIGEST: &str = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

/// One request as the fake server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    authorization: String,
}

/// Namespaces that exist, streams by `ns/name`, images by name, and an optional forced answer.
#[derive(Default)]
struct Fake {
    namespaces: HashSet<String>,
    streams: Mutex<HashMap<String, Value>>,
    images: Mutex<HashSet<String>>,
    forced: Mutex<Option<(u16, &'static str)>>,
    seen: Mutex<Vec<Seen>>,
}

fn status(code: u16, reason: &str, message: &str, details: Value) -> HttpResponse {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "details": details, "code": code});
    HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap()).json(body)
}

async fn answer(req: HttpRequest, body: web::Bytes, fake: web::Data<Fake>) -> HttpResponse {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    fake.seen.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        path: req.path().to_string(),
        query: req.query_string().to_string(),
        authorization: auth.clone(),
    });
    if auth != format!("Bearer {TOKEN}") {
        return status(401, "Unauthorized", "Unauthorized", json!({}));
    }
    if let Some((code, retry_after)) = *fake.forced.lock().unwrap() {
        let mut response = status(code, "ServiceUnavailable", "try later", json!({}));
        let value = actix_web::http::header::HeaderValue::from_static(retry_after);
        response
            .headers_mut()
            .insert(actix_web::http::header::RETRY_AFTER, value);
        return response;
    }
    let rest = req.path().strip_prefix(API).unwrap_or("?");
    let parts: Vec<&str> = rest.split('/').collect();
    match (req.method().as_str(), parts.as_slice()) {
        ("GET", [""]) => HttpResponse::Ok()
            .json(json!({"kind": "APIResourceList", "groupVersion": "image.openshift.io/v1"})),
        ("POST", ["", "images"]) => {
            let image: Value = serde_json::from_slice(&body).unwrap();
            let name = image["metadata"]["name"].as_str().unwrap().to_string();
            if fake.images.lock().unwrap().insert(name) {
                HttpResponse::Created().json(image)
            } else {
                status(
                    409,
                    "AlreadyExists",
                    "images \"x\" already exists",
                    json!({"kind": "images"}),
                )
            }
        }
        (_, ["", "namespaces", ns, ..]) if !fake.namespaces.contains(*ns) => status(
            404,
            "NotFound",
            "namespaces not found",
            json!({"name": ns, "kind": "namespaces"}),
        ),
        ("GET", ["", "namespaces", ns, "imagestreams", name]) => {
            match fake.streams.lock().unwrap().get(&format!("{ns}/{name}")) {
                Some(s) => HttpResponse::Ok().json(s),
                None => status(
                    404,
                    "NotFound",
                    "not found",
                    json!({"name": name, "kind": "imagestreams"}),
                ),
            }
        }
        ("POST", ["", "namespaces", ns, "imagestreams"]) => {
            let stream: Value = serde_json::from_slice(&body).unwrap();
            let name = stream["metadata"]["name"].as_str().unwrap();
            fake.streams
                .lock()
                .unwrap()
                .insert(format!("{ns}/{name}"), stream.clone());
            HttpResponse::Created().json(stream)
        }
        ("POST", ["", "namespaces", ns, "imagestreammappings"]) => {
            let mapping: Value = serde_json::from_slice(&body).unwrap();
            let name = mapping["metadata"]["name"].as_str().unwrap();
            let mut streams = fake.streams.lock().unwrap();
            let Some(stream) = streams.get_mut(&format!("{ns}/{name}")) else {
                let details = json!({"name": name, "group": "image.openshift.io", "kind": "imagestreammappings"});
                return status(404, "NotFound", "not found", details);
            };
            stream["status"] = json!({"tags": [{"tag": mapping["tag"], "items": [{
                "created": "2025-01-01T00:00:00Z", "generation": 1,
                "image": mapping["image"]["metadata"]["name"],
                "dockerImageReference": mapping["image"]["dockerImageReference"]}]}]});
            HttpResponse::Created()
                .json(json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Success", "code": 201}))
        }
        _ => HttpResponse::NotFound().body("404 page not found"),
    }
}

/// Start the fake on 127.0.0.1:0 and write a kubeconfig for it.
fn start(fake: Fake, token: &str, dir: &Path) -> web::Data<Fake> {
    let fake = web::Data::new(fake);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let data = fake.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(answer))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    write_kubeconfig(dir, &format!("http://127.0.0.1:{port}"), token);
    fake
}

fn write_kubeconfig(dir: &Path, server: &str, token: &str) {
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {server}\n\
         users:\n- name: ingest\n  user:\n    token: {token}\ncontexts:\n- name: fake\n  context:\n    \
         cluster: fake\n    user: ingest\n    namespace: team\ncurrent-context: fake\n"
    );
    std::fs::write(dir.join("kubeconfig"), kubeconfig).unwrap();
}

async fn kube_sink(dir: &Path, metrics: Arc<Metrics>) -> Sink {
    let cfg = ClusterConfig {
        sink: SinkKind::Kube,
        kubeconfig: Some(dir.join("kubeconfig")),
        directory: dir.join("unused"),
        store_manifests: false,
        create_child_images: true,
        dry_run: false,
        ready_window: Duration::from_secs(60),
    };
    Sink::from_config(&cfg, metrics).await.unwrap()
}

fn team_fake() -> Fake {
    Fake {
        namespaces: HashSet::from(["team".to_string()]),
        ..Fake::default()
    }
}

fn mapping_for(namespace: &str) -> crate::openshift::ImageStreamMapping {
    let image = Image {
        metadata: ObjectMeta {
            name: DIGEST.into(),
            ..ObjectMeta::default()
        },
        docker_image_reference: format!("registry.example:5000/team/app@{DIGEST}"),
        ..Image::default()
    };
    build_mapping(namespace, "app", "v1", image)
}

fn calls(fake: &Fake) -> Vec<(String, String)> {
    let seen = fake.seen.lock().unwrap();
    seen.iter()
        .map(|s| (s.method.clone(), s.path.clone()))
        .collect()
}

#[actix_web::test]
async fn a_missing_stream_is_created_and_the_mapping_retried_once_with_the_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let fake = start(team_fake(), TOKEN, dir.path());
    let metrics = Arc::new(Metrics::new());
    let sink = kube_sink(dir.path(), metrics.clone()).await;
    assert_eq!(sink.last_answer_ms(), 0);

    assert_eq!(sink.current_tag("team", "app", "v1").await.unwrap(), None);
    sink.create_mapping(&mapping_for("team"), true)
        .await
        .unwrap();
    let current = sink.current_tag("team", "app", "v1").await.unwrap();

    assert_eq!(
        current,
        Some(TagEventRef {
            image: DIGEST.into(),
            docker_image_reference: format!("registry.example:5000/team/app@{DIGEST}"),
        })
    );
    let mappings = format!("{API}/namespaces/team/imagestreammappings");
    let stream = format!("{API}/namespaces/team/imagestreams/app");
    let expected = [
        ("GET", stream.clone()),
        ("POST", mappings.clone()),
        ("POST", format!("{API}/namespaces/team/imagestreams")),
        ("POST", mappings),
        ("GET", stream),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(m, p)| (m.to_string(), p.clone()))
        .collect();
    assert_eq!(calls(&fake), expected);
    for seen in fake.seen.lock().unwrap().iter() {
        assert_eq!(seen.authorization, format!("Bearer {TOKEN}"));
        assert!(!seen.query.contains("dryRun"), "never ?dryRun: {seen:?}");
    }
    assert!(sink.last_answer_ms() > 0);
    let exposed = metrics.encode();
    assert!(
        exposed.contains(r#"op="create_mapping",code="404""#),
        "{exposed}"
    );
    assert!(
        exposed.contains(r#"op="create_stream",code="201""#),
        "{exposed}"
    );
    assert!(
        exposed.contains(r#"op="get_stream",code="200""#),
        "{exposed}"
    );
}

#[actix_web::test]
async fn without_create_stream_a_missing_stream_is_reported_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let fake = start(team_fake(), TOKEN, dir.path());
    let sink = kube_sink(dir.path(), Arc::new(Metrics::new())).await;

    let got = sink.create_mapping(&mapping_for("team"), false).await;

    assert!(
        matches!(got, Err(SinkError::StreamNotFound { .. })),
        "{got:?}"
    );
    assert_eq!(calls(&fake).len(), 1);
}

#[actix_web::test]
async fn a_missing_namespace_fails_without_creating_a_stream() {
    let dir = tempfile::tempdir().unwrap();
    let fake = start(team_fake(), TOKEN, dir.path());
    let sink = kube_sink(dir.path(), Arc::new(Metrics::new())).await;

    let got = sink.create_mapping(&mapping_for("other"), true).await;

    assert!(
        matches!(&got, Err(SinkError::NamespaceNotFound { namespace }) if namespace == "other"),
        "{got:?}"
    );
    assert_eq!(calls(&fake).len(), 1);
}

#[actix_web::test]
async fn an_existing_image_counts_as_created() {
    let dir = tempfile::tempdir().unwrap();
    let fake = start(team_fake(), TOKEN, dir.path());
    let sink = kube_sink(dir.path(), Arc::new(Metrics::new())).await;
    let image = mapping_for("team").image;

    sink.create_image(&image).await.unwrap();
    sink.create_image(&image).await.unwrap();

    assert_eq!(calls(&fake).len(), 2);
    assert!(fake.images.lock().unwrap().contains(DIGEST));
}

#[actix_web::test]
async fn a_wrong_token_is_unauthorized_but_still_counts_as_an_answer() {
    let dir = tempfile::tempdir().unwrap();
    let _fake = start(team_fake(), "not-the-token", dir.path());
    let sink = kube_sink(dir.path(), Arc::new(Metrics::new())).await;

    let got = sink.ping().await;

    assert!(
        matches!(got, Err(SinkError::Unauthorized { .. })),
        "{got:?}"
    );
    assert!(sink.last_answer_ms() > 0);
}

#[actix_web::test]
async fn service_unavailable_is_returned_at_once_with_retry_after_not_retried_inside_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let fake = start(team_fake(), TOKEN, dir.path());
    *fake.forced.lock().unwrap() = Some((503, "2"));
    let sink = kube_sink(dir.path(), Arc::new(Metrics::new())).await;

    let err = sink
        .create_mapping(&mapping_for("team"), true)
        .await
        .unwrap_err();

    assert!(
        matches!(err, SinkError::Unavailable { code: 503, .. }),
        "{err:?}"
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
    assert_eq!(calls(&fake).len(), 1, "the worker owns retries");
    assert_eq!(sink.last_answer_ms(), 0, "a 503 is not a healthy answer");
}

#[actix_web::test]
async fn ping_succeeds_against_the_image_api_group() {
    let dir = tempfile::tempdir().unwrap();
    let fake = start(team_fake(), TOKEN, dir.path());
    let sink = kube_sink(dir.path(), Arc::new(Metrics::new())).await;

    sink.ping().await.unwrap();

    assert_eq!(calls(&fake), vec![("GET".to_string(), API.to_string())]);
}

#[actix_web::test]
async fn an_unreachable_cluster_is_a_retryable_transport_error_and_not_an_answer() {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    write_kubeconfig(dir.path(), &format!("http://127.0.0.1:{port}"), TOKEN);
    let metrics = Arc::new(Metrics::new());
    let sink = kube_sink(dir.path(), metrics.clone()).await;

    let err = sink.current_tag("team", "app", "v1").await.unwrap_err();

    assert!(matches!(err, SinkError::Transport(_)), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(sink.last_answer_ms(), 0);
    assert!(metrics.encode().contains(r#"op="get_stream",code="error""#));
}

#[actix_web::test]
async fn a_cluster_that_never_answers_times_out_as_a_retryable_error() {
    let dir = tempfile::tempdir().unwrap();
    // The kernel completes connections on the listener's backlog; nothing ever reads or answers them.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    write_kubeconfig(dir.path(), &format!("http://127.0.0.1:{port}"), TOKEN);
    let metrics = Arc::new(Metrics::new());
    let sink = KubeSink::with_read_timeout(
        Some(&dir.path().join("kubeconfig")),
        metrics.clone(),
        Duration::from_millis(300),
    )
    .await
    .unwrap();

    let err = sink
        .create_mapping(&mapping_for("team"), true)
        .await
        .unwrap_err();

    assert!(matches!(err, SinkError::Transport(_)), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(sink.last_answer_ms(), 0);
    drop(silent);
}

#[actix_web::test]
async fn bad_names_are_rejected_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let fake = start(team_fake(), TOKEN, dir.path());
    let sink = kube_sink(dir.path(), Arc::new(Metrics::new())).await;

    let got = sink.current_tag("team", "..", "v1").await;
    assert!(matches!(got, Err(SinkError::Invalid { .. })), "{got:?}");
    let got = sink
        .create_mapping(&mapping_for("team/../kube-system"), true)
        .await;
    assert!(matches!(got, Err(SinkError::Invalid { .. })), "{got:?}");

    assert!(calls(&fake).is_empty());
}

#[tokio::test]
async fn an_unreadable_kubeconfig_is_a_config_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ClusterConfig {
        sink: SinkKind::Kube,
        kubeconfig: Some(dir.path().join("missing-kubeconfig")),
        directory: dir.path().to_path_buf(),
        store_manifests: false,
        create_child_images: true,
        dry_run: false,
        ready_window: Duration::from_secs(60),
    };
    match Sink::from_config(&cfg, Arc::new(Metrics::new())).await {
        Err(SinkError::Config(message)) => {
            assert!(message.contains("missing-kubeconfig"), "{message}")
        }
        Err(other) => panic!("expected Config, got {other:?}"),
        Ok(_) => panic!("expected Config, got a sink"),
    }
}
