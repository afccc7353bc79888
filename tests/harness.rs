//! Tests of the integration-test harness itself, against the real `docker-registry` and `skopeo`: that images
//! built from scratch push and read back with the digests the tests will compute, that every auth and TLS
//! variant really is enforced, and that the registry really notifies. If these fail, e2e failures mean nothing.

#[allow(dead_code)]
#[path = "support/images.rs"]
mod images;
#[allow(dead_code)]
#[path = "support/registry.rs"]
mod registry;
#[allow(dead_code)]
#[path = "support/tls.rs"]
mod tls;
#[allow(dead_code)]
#[path = "support/token.rs"]
mod token;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use images::{
    DOCKER_LIST, DOCKER_MANIFEST, Format, OCI_INDEX, OCI_MANIFEST, OciLayout, registry_blob,
    registry_manifest, sha256_digest, skopeo_copy,
};
use registry::{Registry, RegistryAuth, RegistryOptions, parse_challenge};
use serde_json::Value;
use tempfile::TempDir;
use token::{HttpRequest, read_http_request, start_token_issuer, write_http_response};

fn manifest_json(reg: &Registry, repo: &str, reference: &str) -> (Value, String, String) {
    let (bytes, content_type, digest) = registry_manifest(reg, repo, reference);
    (
        serde_json::from_slice(&bytes).expect("manifest json"),
        content_type,
        digest,
    )
}

#[test]
fn built_images_are_deterministic_and_their_configs_name_the_uncompressed_layers() {
    let a = TempDir::new().unwrap();
    let b = TempDir::new().unwrap();
    let one =
        OciLayout::new(a.path()).add_image("v1", "arm64", "linux", Some("v8"), &[b"x", b"y", b"x"]);
    let two = OciLayout::new(b.path()).add_image(
        "other",
        "arm64",
        "linux",
        Some("v8"),
        &[b"x", b"y", b"x"],
    );
    assert_eq!(one.manifest_digest, two.manifest_digest);
    assert_eq!(
        one.layers[0], one.layers[2],
        "identical contents give one blob"
    );
    assert_ne!(one.layers[0].digest, one.layers[1].digest);
    assert_eq!(sha256_digest(&one.manifest_bytes), one.manifest_digest);
    let config: Value = serde_json::from_slice(&one.config_bytes).unwrap();
    assert_eq!(config["architecture"], "arm64");
    assert_eq!(config["variant"], "v8");
    let diff_ids: Vec<&str> = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let expected: Vec<&str> = one.layers.iter().map(|l| l.diff_id.as_str()).collect();
    assert_eq!(diff_ids, expected);
    for layer in &one.layers {
        let gz = std::fs::read(
            a.path()
                .join("blobs/sha256")
                .join(layer.digest.trim_start_matches("sha256:")),
        )
        .unwrap();
        let mut tar = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut tar).unwrap();
        assert_eq!(sha256_digest(&tar), layer.diff_id);
    }
}

#[test]
fn retagging_in_a_layout_replaces_the_index_entry() {
    let dir = TempDir::new().unwrap();
    let layout = OciLayout::new(dir.path());
    layout.add_image("v1", "amd64", "linux", None, &[b"first"]);
    let second = layout.add_image("v1", "amd64", "linux", None, &[b"second"]);
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["digest"], Value::String(second.manifest_digest));
}

#[test]
fn bearer_challenges_with_quoted_commas_are_split_into_parameters() {
    let got = parse_challenge(
        r#"realm="http://127.0.0.1:1/token",service="reg",scope="repository:a/b:pull,push""#,
    );
    let expected = [
        ("realm", "http://127.0.0.1:1/token"),
        ("service", "reg"),
        ("scope", "repository:a/b:pull,push"),
    ];
    let got: Vec<(&str, &str)> = got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn an_oci_image_pushed_to_a_plain_registry_keeps_its_layout_digest() {
    let reg = Registry::start(RegistryOptions::default()).await;
    let dir = TempDir::new().unwrap();
    let layout = OciLayout::new(dir.path());
    let image = layout.add_image("v1", "amd64", "linux", None, &[b"one", b"two"]);
    skopeo_copy(&layout, "v1", &reg, "team/oci:v1", Format::Oci, false);
    let (bytes, content_type, digest) = registry_manifest(&reg, "team/oci", "v1");
    assert_eq!(content_type, OCI_MANIFEST);
    assert_eq!(digest, image.manifest_digest);
    assert_eq!(bytes, image.manifest_bytes);
    assert_eq!(
        registry_blob(&reg, "team/oci", &image.config_digest),
        image.config_bytes
    );
    assert_eq!(reg.credentials(), None);
}

#[tokio::test]
async fn an_oci_image_pushed_by_digest_only_is_served_by_that_digest() {
    let reg = Registry::start(RegistryOptions::default()).await;
    let dir = TempDir::new().unwrap();
    let layout = OciLayout::new(dir.path());
    let image = layout.add_image("d", "amd64", "linux", None, &[b"by digest"]);
    skopeo_copy(
        &layout,
        "d",
        &reg,
        &format!("team/bydigest@{}", image.manifest_digest),
        Format::Oci,
        false,
    );
    let (_, _, digest) = registry_manifest(&reg, "team/bydigest", &image.manifest_digest);
    assert_eq!(digest, image.manifest_digest);
    let tags = reg.get_blocking("/v2/team/bydigest/tags/list", "application/json");
    let tags: Value = serde_json::from_slice(&tags.body).unwrap();
    assert!(
        tags["tags"].as_array().is_none_or(|t| t.is_empty()),
        "no tag was created: {tags}"
    );
}

#[tokio::test]
async fn a_v2s2_push_stores_a_docker_schema2_manifest_with_the_same_blobs() {
    let reg = Registry::start(RegistryOptions::default()).await;
    let dir = TempDir::new().unwrap();
    let layout = OciLayout::new(dir.path());
    let image = layout.add_image("v1", "amd64", "linux", None, &[b"base", b"app"]);
    skopeo_copy(&layout, "v1", &reg, "team/docker:v1", Format::V2s2, false);
    let (manifest, content_type, digest) = manifest_json(&reg, "team/docker", "v1");
    assert_eq!(content_type, DOCKER_MANIFEST);
    assert_eq!(manifest["mediaType"], DOCKER_MANIFEST);
    assert_ne!(
        digest, image.manifest_digest,
        "conversion changes the manifest"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    let layer_digests: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = image.layers.iter().map(|l| l.digest.as_str()).collect();
    assert_eq!(layer_digests, expected);
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let config: Value =
        serde_json::from_slice(&registry_blob(&reg, "team/docker", config_digest)).unwrap();
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["created"], images::CREATED);
}

#[tokio::test]
async fn an_all_v2s2_push_of_a_two_arch_index_stores_a_manifest_list_with_readable_children() {
    let reg = Registry::start(RegistryOptions::default()).await;
    let dir = TempDir::new().unwrap();
    let layout = OciLayout::new(dir.path());
    let amd = layout.add_image("amd", "amd64", "linux", None, &[b"amd64 layer"]);
    let arm = layout.add_image("arm", "arm64", "linux", Some("v8"), &[b"arm64 layer"]);
    layout.add_index("multi", &[&amd, &arm]);
    skopeo_copy(&layout, "multi", &reg, "team/multi:v1", Format::V2s2, true);
    let (list, content_type, _) = manifest_json(&reg, "team/multi", "v1");
    assert_eq!(content_type, DOCKER_LIST);
    let children = list["manifests"].as_array().unwrap();
    assert_eq!(children.len(), 2);
    let platforms: Vec<(&str, Option<&str>)> = children
        .iter()
        .map(|c| {
            (
                c["platform"]["architecture"].as_str().unwrap(),
                c["platform"]["variant"].as_str(),
            )
        })
        .collect();
    assert_eq!(platforms, [("amd64", None), ("arm64", Some("v8"))]);
    for child in children {
        let digest = child["digest"].as_str().unwrap();
        let (bytes, child_type, got) = registry_manifest(&reg, "team/multi", digest);
        assert_eq!(got, digest);
        assert_eq!(child_type, DOCKER_MANIFEST);
        assert_eq!(child["size"].as_u64(), Some(bytes.len() as u64));
    }
}

#[tokio::test]
async fn an_oci_index_pushed_with_all_keeps_its_digest() {
    let reg = Registry::start(RegistryOptions::default()).await;
    let dir = TempDir::new().unwrap();
    let layout = OciLayout::new(dir.path());
    let amd = layout.add_image("amd", "amd64", "linux", None, &[b"amd64 layer"]);
    let arm = layout.add_image("arm", "arm64", "linux", Some("v8"), &[b"arm64 layer"]);
    let (bytes, digest) = layout.add_index("multi", &[&amd, &arm]);
    skopeo_copy(&layout, "multi", &reg, "team/index:v1", Format::Oci, true);
    let (got, content_type, got_digest) = registry_manifest(&reg, "team/index", "v1");
    assert_eq!(content_type, OCI_INDEX);
    assert_eq!((got, got_digest), (bytes, digest));
    let (_, _, child) = registry_manifest(&reg, "team/index", &arm.manifest_digest);
    assert_eq!(child, arm.manifest_digest);
}

#[tokio::test]
async fn an_htpasswd_tls_registry_takes_a_push_with_credentials_and_refuses_anonymous_pulls() {
    let reg = Registry::start(RegistryOptions {
        auth: RegistryAuth::Htpasswd {
            user: "robot".into(),
            password: "robot-pass-81".into(),
        },
        tls: true,
        ..RegistryOptions::default()
    })
    .await;
    assert!(reg.url.starts_with("https://127.0.0.1:"));
    let cert_dir = reg.cert_dir.as_ref().unwrap();
    let names: Vec<String> = std::fs::read_dir(cert_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["ca.crt"], "only the CA in the skopeo cert dir");
    assert_eq!(reg.skopeo_creds().as_deref(), Some("robot:robot-pass-81"));

    let dir = TempDir::new().unwrap();
    let layout = OciLayout::new(dir.path());
    let image = layout.add_image("v1", "amd64", "linux", None, &[b"secured"]);
    skopeo_copy(&layout, "v1", &reg, "team/secure:v1", Format::Oci, false);
    let (_, _, digest) = registry_manifest(&reg, "team/secure", "v1");
    assert_eq!(digest, image.manifest_digest);

    let anonymous = reg
        .http_client()
        .get(format!("{}/v2/team/secure/manifests/v1", reg.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let challenge = anonymous.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Basic "), "{challenge}");
    let wrong = reg
        .http_client()
        .get(format!("{}/v2/team/secure/manifests/v1", reg.url))
        .basic_auth("robot", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let untrusted = reqwest::Client::new()
        .get(format!("{}/v2/", reg.url))
        .send()
        .await;
    assert!(untrusted.is_err(), "the test CA is not a public root");
}

#[tokio::test]
async fn a_token_registry_takes_a_push_through_the_issuer_and_grants_nothing_to_anonymous() {
    let issuer = start_token_issuer(&[("robot", "token-pass-3")]).await;
    let requests = issuer.requests.clone();
    let reg = Registry::start(RegistryOptions {
        auth: RegistryAuth::Token {
            issuer,
            user: "robot".into(),
            password: "token-pass-3".into(),
        },
        ..RegistryOptions::default()
    })
    .await;
    let dir = TempDir::new().unwrap();
    let layout = OciLayout::new(dir.path());
    let image = layout.add_image("v1", "amd64", "linux", None, &[b"token"]);
    skopeo_copy(&layout, "v1", &reg, "team/tokened:v1", Format::Oci, false);
    let after_push = requests.load(Ordering::SeqCst);
    assert!(after_push > 0, "skopeo went through the issuer");
    let issuer = reg.token_issuer().unwrap();
    assert!(
        issuer
            .scopes
            .lock()
            .unwrap()
            .iter()
            .any(|s| s == "repository:team/tokened:pull,push")
    );

    let (_, _, digest) = registry_manifest(&reg, "team/tokened", "v1");
    assert_eq!(digest, image.manifest_digest);
    assert!(
        requests.load(Ordering::SeqCst) > after_push,
        "the reader went through the issuer too"
    );

    let client = reg.http_client();
    let url = format!("{}/v2/team/tokened/manifests/v1", reg.url);
    let challenged = client.get(&url).send().await.unwrap();
    assert_eq!(challenged.status().as_u16(), 401);
    let challenge = challenged.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    let params = parse_challenge(challenge.strip_prefix("Bearer ").expect("bearer challenge"));
    let query: Vec<&(String, String)> = params.iter().filter(|(k, _)| k != "realm").collect();
    let token_answer: Value = client
        .get(&issuer.realm)
        .query(&query)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let anonymous = client
        .get(&url)
        .bearer_auth(token_answer["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        anonymous.status().as_u16(),
        401,
        "an anonymous token grants nothing"
    );
    let bad = client
        .get(&issuer.realm)
        .query(&query)
        .basic_auth("robot", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 401);
}

/// A notification endpoint on its own thread that records every request and answers 200.
struct Recorder {
    url: String,
    seen: Arc<Mutex<Vec<HttpRequest>>>,
}

fn start_recorder() -> Recorder {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/notify/reg", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    // Detached on purpose: it lives until the test process exits, like the registry's retries may.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                if let Some(req) = read_http_request(&mut stream).await {
                    record.lock().unwrap().push(req);
                }
                write_http_response(&mut stream, 200, &[], b"").await;
            }
        });
    });
    Recorder { url, seen }
}

#[tokio::test]
async fn the_registry_posts_bearer_authorized_event_envelopes_to_the_notify_endpoint() {
    let recorder = start_recorder();
    let reg = Registry::start(RegistryOptions {
        notify_url: Some(recorder.url.clone()),
        notify_token: Some("s3cret-notify".into()),
        ..RegistryOptions::default()
    })
    .await;
    let dir = TempDir::new().unwrap();
    let layout = OciLayout::new(dir.path());
    let image = layout.add_image("v1", "amd64", "linux", None, &[b"notified"]);
    skopeo_copy(&layout, "v1", &reg, "team/notified:v1", Format::Oci, false);

    let deadline = Instant::now() + Duration::from_secs(15);
    let manifest_event = loop {
        let found = recorder.seen.lock().unwrap().iter().find_map(|req| {
            let body: Value = serde_json::from_slice(&req.body).ok()?;
            let event = body["events"]
                .as_array()?
                .iter()
                .find(|e| e["target"]["mediaType"] == OCI_MANIFEST)?
                .clone();
            Some((req.clone(), event))
        });
        if let Some(found) = found {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "no manifest event arrived\n{}",
            registry::tail(&reg.log(), 30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (req, event) = manifest_event;
    assert_eq!(req.method, "POST");
    assert_eq!(req.path(), "/notify/reg");
    assert_eq!(req.header("authorization"), Some("Bearer s3cret-notify"));
    assert_eq!(
        req.header("content-type"),
        Some("application/vnd.docker.distribution.events.v1+json")
    );
    assert_eq!(event["action"], "push");
    assert_eq!(event["target"]["repository"], "team/notified");
    assert_eq!(event["target"]["tag"], "v1");
    assert_eq!(
        event["target"]["digest"],
        Value::String(image.manifest_digest.clone())
    );
    assert_eq!(
        event["target"]["references"].as_array().map(Vec::len),
        Some(2),
        "includereferences is on"
    );
}

/// Runs a TLS handshake in memory between a client presenting `client` (cert, key) and a server presenting
/// `server`, both trusting only `ca_pem`. Returns the first error either side raised.
fn handshake(
    ca_pem: &str,
    server: &(String, String),
    client: &(String, String),
) -> Result<(), rustls::Error> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    // The crate builds rustls with ring only; ring's lack of post-quantum key exchange is irrelevant here.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let roots = Arc::new(roots);
    let cert = |pem: &str| vec![CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()];
    let key = |pem: &str| PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(cert(&server.0), key(&server.1))
        .unwrap();
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(cert(&client.0), key(&client.1))
        .unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut c = rustls::ClientConnection::new(Arc::new(client_config), name).unwrap();
    let mut s = rustls::ServerConnection::new(Arc::new(server_config)).unwrap();
    for _ in 0..20 {
        let mut buf = Vec::new();
        c.write_tls(&mut buf).unwrap();
        if !buf.is_empty() {
            s.read_tls(&mut &buf[..]).unwrap();
            s.process_new_packets()?;
        }
        let mut buf = Vec::new();
        s.write_tls(&mut buf).unwrap();
        if !buf.is_empty() {
            c.read_tls(&mut &buf[..]).unwrap();
            c.process_new_packets()?;
        }
        if !c.is_handshaking() && !s.is_handshaking() {
            assert!(s.peer_certificates().is_some_and(|certs| !certs.is_empty()));
            return Ok(());
        }
    }
    panic!("handshake did not finish");
}

#[test]
fn certificates_from_the_test_ca_pass_mutual_tls_and_those_of_another_ca_do_not() {
    let ca = tls::make_ca();
    let server = tls::issue_server_cert(&ca, &["127.0.0.1", "localhost"]);
    let client = tls::issue_client_cert(&ca, "ingest-client");
    handshake(&ca.pem, &server, &client).unwrap();

    let other = tls::make_ca();
    let stranger = tls::issue_client_cert(&other, "stranger");
    assert!(
        handshake(&ca.pem, &server, &stranger).is_err(),
        "a client of another CA is refused"
    );
    let wrong_host = tls::issue_server_cert(&ca, &["registry.example.test"]);
    assert!(
        handshake(&ca.pem, &wrong_host, &client).is_err(),
        "the IP SAN is what makes 127.0.0.1 valid"
    );
}
