//! Tests of the cluster emulator itself, over real HTTP with reqwest: each openshift-apiserver rule
//! the daemon's tests rely on (Status shapes, 401/403/404/409/422, the ImageStreamMapping pipeline
//! and tag-event merge, server-side image metadata, faults, the request log).

#[path = "support/emulator/mod.rs"]
mod emulator;
#[path = "emulator/images.rs"]
mod images;
#[path = "emulator/mapping.rs"]
mod mapping;

use std::time::{Duration, Instant};

use emulator::{Emulator, Fault, FaultAction, Grant};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const ADMIN: &str = "admin-token";
const ISM_PATH: &str = "/apis/image.openshift.io/v1/namespaces/team/imagestreammappings";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

struct Answer {
    code: u16,
    body: Value,
    headers: HeaderMap,
}

async fn setup() -> Emulator {
    let e = emulator::start().await;
    e.add_admin_token(ADMIN);
    e.add_namespace("team");
    e
}

async fn send(
    e: &Emulator,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Answer {
    let client = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut rb = client.request(method, format!("{}{path}", e.url()));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if let Some(b) = body {
        rb = rb.json(b);
    }
    let resp = rb.send().await.unwrap();
    let code = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(Value::Null);
    Answer {
        code,
        body,
        headers,
    }
}

async fn post(e: &Emulator, path: &str, body: &Value) -> Answer {
    send(e, "POST", path, Some(ADMIN), Some(body)).await
}

async fn get(e: &Emulator, path: &str) -> Answer {
    send(e, "GET", path, Some(ADMIN), None).await
}

fn digest(n: u8) -> String {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
}

fn mapping(stream: &str, tag: &str, image: &str, reference: &str) -> Value {
    json!({
        "apiVersion": "image.openshift.io/v1", "kind": "ImageStreamMapping",
        "metadata": {"name": stream, "namespace": "team"},
        "tag": tag,
        "image": {"metadata": {"name": image, "annotations": {"image.openshift.io/dockerLayersOrder": "ascending"}},
                  "dockerImageReference": reference},
    })
}

fn reference(n: u8) -> String {
    format!("registry.example:5000/team/app@{}", digest(n))
}

fn causes(body: &Value) -> Vec<(String, String)> {
    body["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["field"].as_str().unwrap().to_string(),
                c["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}
#[tokio::test]
async fn discovery_lists_the_image_resources_and_version_is_public() {
    let e = setup().await;
    let list = get(&e, "/apis/image.openshift.io/v1").await;
    assert_eq!(list.code, 200);
    assert_eq!(list.body["kind"], "APIResourceList");
    let resources = list.body["resources"].as_array().unwrap();
    let find = |n: &str| resources.iter().find(|r| r["name"] == n).unwrap().clone();
    assert_eq!(find("imagestreammappings")["verbs"], json!(["create"]));
    assert_eq!(find("imagestreams")["namespaced"], true);
    assert_eq!(find("images")["namespaced"], false);
    assert_eq!(
        get(&e, "/apis").await.body["groups"][0]["name"],
        "image.openshift.io"
    );
    assert_eq!(get(&e, "/api").await.body["kind"], "APIVersions");
    let version = send(&e, "GET", "/version", None, None).await;
    assert_eq!(
        (version.code, version.body["major"].clone()),
        (200, json!("1"))
    );
    let anonymous = send(&e, "GET", "/apis", None, None).await;
    assert_eq!(
        anonymous.code, 403,
        "system:discovery is for authenticated users"
    );
}

#[tokio::test]
async fn an_unknown_token_is_401_with_an_unauthorized_status() {
    let e = setup().await;
    let a = send(&e, "GET", "/version", Some("nope"), None).await;
    assert_eq!(a.code, 401);
    assert_eq!(
        a.body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
    );
}

#[tokio::test]
async fn a_missing_grant_is_403_with_the_upstream_message() {
    let e = setup().await;
    e.add_stream("team", "app");
    e.add_token(
        "t",
        "alice",
        &[Grant::namespaced("team", "imagestreams", "get")],
    );
    let a = send(
        &e,
        "POST",
        ISM_PATH,
        Some("t"),
        Some(&mapping("app", "v1", &digest(1), &reference(1))),
    )
    .await;
    assert_eq!(a.code, 403);
    assert_eq!(a.body["reason"], "Forbidden");
    assert_eq!(
        a.body["message"],
        "imagestreammappings.image.openshift.io is forbidden: User \"alice\" cannot create resource \
         \"imagestreammappings\" in API group \"image.openshift.io\" in the namespace \"team\""
    );
    let other = "/apis/image.openshift.io/v1/namespaces/other/imagestreams/app";
    let b = send(&e, "GET", other, Some("t"), None).await;
    assert_eq!(b.code, 403);
    assert_eq!(
        b.body["message"],
        "imagestreams.image.openshift.io \"app\" is forbidden: User \"alice\" cannot get resource \
         \"imagestreams\" in API group \"image.openshift.io\" in the namespace \"other\""
    );
    assert_eq!(
        b.body["details"],
        json!({"name": "app", "group": "image.openshift.io", "kind": "imagestreams"})
    );
    let c = send(
        &e,
        "GET",
        &format!("/apis/image.openshift.io/v1/images/{}", digest(1)),
        Some("t"),
        None,
    )
    .await;
    assert_eq!(c.code, 403);
    assert!(
        c.body["message"]
            .as_str()
            .unwrap()
            .ends_with("at the cluster scope")
    );
    let ok = send(
        &e,
        "GET",
        "/apis/image.openshift.io/v1/namespaces/team/imagestreams/app",
        Some("t"),
        None,
    )
    .await;
    assert_eq!(ok.code, 200);
}

#[tokio::test]
async fn a_missing_stream_is_404_imagestreammappings_and_a_missing_namespace_is_404_namespaces() {
    let e = setup().await;
    let a = post(
        &e,
        ISM_PATH,
        &mapping("absent", "v1", &digest(1), &reference(1)),
    )
    .await;
    assert_eq!(a.code, 404);
    assert_eq!(
        a.body["details"],
        json!({"name": "absent", "group": "image.openshift.io", "kind": "imagestreammappings"})
    );
    assert_eq!(
        a.body["message"],
        "imagestreammappings.image.openshift.io \"absent\" not found"
    );
    assert_eq!(
        e.image_count(),
        0,
        "the stream is looked up before the image is created"
    );

    let mut m = mapping("app", "v1", &digest(1), &reference(1));
    m["metadata"]["namespace"] = json!("ghost");
    let b = post(
        &e,
        "/apis/image.openshift.io/v1/namespaces/ghost/imagestreammappings",
        &m,
    )
    .await;
    assert_eq!(b.code, 404);
    assert_eq!(
        b.body["details"],
        json!({"name": "ghost", "kind": "namespaces"})
    );
    assert_eq!(b.body["message"], "namespaces \"ghost\" not found");
    // A read in a missing namespace is just a missing object (admission only guards creates).
    let c = get(
        &e,
        "/apis/image.openshift.io/v1/namespaces/ghost/imagestreams/app",
    )
    .await;
    assert_eq!(
        (c.code, c.body["details"]["kind"].clone()),
        (404, json!("imagestreams"))
    );
}

#[tokio::test]
async fn a_namespace_that_differs_from_the_url_is_400() {
    let e = setup().await;
    e.add_stream("team", "app");
    let mut m = mapping("app", "v1", &digest(1), &reference(1));
    m["metadata"]["namespace"] = json!("elsewhere");
    let a = post(&e, ISM_PATH, &m).await;
    assert_eq!(
        (a.code, a.body["reason"].clone()),
        (400, json!("BadRequest"))
    );
}
#[tokio::test]
async fn a_status_fault_answers_with_retry_after_then_expires() {
    let e = setup().await;
    e.add_stream("team", "app");
    e.inject(Fault {
        path_contains: "imagestreammappings".into(),
        method: Some("POST".into()),
        action: FaultAction::Status(429, Some(7)),
        times: 1,
    });
    let m = mapping("app", "v1", &digest(1), &reference(1));
    let a = post(&e, ISM_PATH, &m).await;
    assert_eq!(
        (a.code, a.body["reason"].clone()),
        (429, json!("TooManyRequests"))
    );
    assert_eq!(a.headers.get("retry-after").unwrap(), "7");
    assert!(
        e.tag_events("team", "app", "v1").is_empty(),
        "a faulted request does nothing"
    );
    assert_eq!(post(&e, ISM_PATH, &m).await.code, 201);
    let codes: Vec<u16> = e.requests().iter().map(|r| r.status).collect();
    assert_eq!(codes, [429, 201]);
    assert_eq!(e.mapping_posts(), 2);
    assert_eq!(e.requests()[1].body["tag"], "v1");
}

#[tokio::test]
async fn a_delay_fault_holds_the_answer() {
    let e = setup().await;
    e.inject(Fault {
        path_contains: "/version".into(),
        method: None,
        action: FaultAction::Delay(Duration::from_millis(300)),
        times: 0,
    });
    let started = Instant::now();
    assert_eq!(get(&e, "/version").await.code, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    e.clear_faults();
    let started = Instant::now();
    get(&e, "/version").await;
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn a_drop_fault_closes_the_connection_without_an_answer() {
    let e = setup().await;
    e.inject(Fault {
        path_contains: "/apis".into(),
        method: None,
        action: FaultAction::Drop,
        times: 1,
    });
    let client = reqwest::Client::new();
    let err = client
        .get(format!("{}/apis", e.url()))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap_err();
    assert!(err.status().is_none(), "no HTTP answer: {err}");
    assert_eq!(e.requests()[0].status, 0);
    assert_eq!(get(&e, "/apis").await.code, 200);
}

#[tokio::test]
async fn the_kubeconfig_points_at_the_emulator_and_stop_shuts_it_down() {
    let e = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let path = e.write_kubeconfig(dir.path(), "tok-1");
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(&format!("server: {}", e.url())) && text.contains("token: tok-1"));
    assert!(text.contains("current-context: emulator"));
    let url = e.url();
    e.stop().await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    assert!(client.get(format!("{url}/version")).send().await.is_err());
}
