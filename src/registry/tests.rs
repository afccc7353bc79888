//! Tests of the registry module: name validation, digest verification, and the whole client against a small
//! HTTP server started on 127.0.0.1:0 (no real registry needed).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use url::Url;

use super::body::verify_digest;
use super::test_server::{Recorded, Reply, TestServer};
use super::*;
use crate::config::{RegistryConfig, RegistryCredentials, Secret};
use crate::digest::{Algorithm, Digest};
use crate::metrics::Metrics;

const MANIFEST: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

pub(super) fn client_for(base: &Url, auth: RegistryCredentials) -> (RegistryClient, Arc<Metrics>) {
    let cfg = RegistryConfig {
        name: "corp".into(),
        url: base.clone(),
        pull_host: base.authority().to_string(),
        ca_pem: None,
        ca_file: None,
        insecure_skip_tls_verify: false,
        auth,
    };
    let metrics = Arc::new(Metrics::new());
    (RegistryClient::new(&cfg, metrics.clone()).unwrap(), metrics)
}

pub(super) fn robot() -> RegistryCredentials {
    RegistryCredentials::Basic {
        username: "robot".into(),
        password: Secret::new("pa55word"),
    }
}

pub(super) fn robot_basic_header() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("robot:pa55word")
    )
}

pub(super) fn tag(t: &str) -> Reference {
    Reference::Tag(t.into())
}

pub(super) fn manifest_reply() -> Reply {
    Reply::new(200, MANIFEST)
        .header("content-type", OCI_MANIFEST)
        .header(
            "docker-content-digest",
            Digest::sha256(MANIFEST).to_string(),
        )
}

pub(super) fn unauthorized_body() -> &'static str {
    r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
}

// ---------------------------------------------------------------------------------------------
// Pure parts
// ---------------------------------------------------------------------------------------------

#[test]
fn repository_names_follow_the_distribution_grammar() {
    let long_ok = format!("{}/{}", "a".repeat(127), "b".repeat(127));
    for ok in [
        "app",
        "team/app",
        "a/b/c/d",
        "my-app",
        "my--app",
        "my.app",
        "my_app",
        "my__app",
        "0/9",
        long_ok.as_str(),
    ] {
        assert!(validate_repository(ok).is_ok(), "{ok} rejected");
    }
    let too_long = "a".repeat(256);
    for bad in [
        "",
        "..",
        "team/../etc",
        "team/./app",
        "team%2fapp",
        "team/%2e%2e",
        "Team/app",
        "team/App",
        "tëam/app",
        "team//app",
        "/team/app",
        "team/app/",
        "-app",
        "app-",
        "a.-b",
        "a...b",
        "a___b",
        "a b",
        "a?b",
        "a#b",
        "a:b",
        too_long.as_str(),
    ] {
        let err = validate_repository(bad).unwrap_err();
        assert_eq!(err.metric_label(), "invalid_repository", "{bad}");
    }
}

#[test]
fn tags_follow_the_tag_grammar_and_references_parse() {
    for ok in ["v1", "latest", "_x", "1.2.3-rc_1", &"a".repeat(128)] {
        assert!(validate_tag(ok).is_ok(), "{ok}");
        assert_eq!(Reference::parse(ok).unwrap(), tag(ok));
    }
    for bad in ["", ".v1", "-v1", "v/1", "v1?x", "..", "ü", &"a".repeat(129)] {
        assert!(validate_tag(bad).is_err(), "{bad}");
        assert!(Reference::parse(bad).is_err(), "{bad}");
    }
    let d = Digest::sha256(b"x");
    assert_eq!(
        Reference::parse(&d.to_string()).unwrap(),
        Reference::Digest(d.clone())
    );
    assert_eq!(Reference::Digest(d.clone()).to_string(), d.to_string());
    assert!(Reference::parse("sha256:abc").is_err());
}

#[test]
fn digests_are_checked_against_the_request_and_the_announced_header() {
    let sha256 = Digest::sha256(MANIFEST);
    let sha512 = Digest::compute(Algorithm::Sha512, MANIFEST);
    let other = Digest::sha256(b"other");
    assert_eq!(verify_digest(MANIFEST, None, None).unwrap(), sha256);
    assert_eq!(
        verify_digest(MANIFEST, Some(&sha512), Some(&sha256)).unwrap(),
        sha512
    );
    assert_eq!(
        verify_digest(MANIFEST, None, Some(&sha512)).unwrap(),
        sha256
    );
    assert!(matches!(
        verify_digest(MANIFEST, Some(&other), None),
        Err(RegistryError::DigestMismatch { .. })
    ));
    assert!(matches!(
        verify_digest(MANIFEST, None, Some(&other)),
        Err(RegistryError::DigestMismatch { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// The client against a local server
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_anonymous_manifest_fetch_returns_the_exact_bytes_and_records_metrics() {
    let server = TestServer::start(|_| |_: &Recorded| manifest_reply()).await;
    let (client, metrics) = client_for(&server.base, RegistryCredentials::Anonymous);

    let m = client.fetch_manifest("team/app", &tag("v1")).await.unwrap();

    assert_eq!(&m.bytes[..], MANIFEST);
    assert_eq!(m.digest, Digest::sha256(MANIFEST));
    assert_eq!(m.content_type.as_deref(), Some(OCI_MANIFEST));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].target, "/v2/team/app/manifests/v1");
    assert_eq!(reqs[0].header("authorization"), None);
    let accept = reqs[0].header("accept").unwrap();
    for mt in [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ] {
        assert!(accept.contains(mt), "{accept}");
    }
    let text = metrics.encode();
    assert!(
        text.contains(
            r#"registry_request_duration_seconds_count{registry="corp",op="manifest"} 1"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn the_base_url_path_prefix_is_kept_and_digest_references_are_sent_verbatim() {
    let server = TestServer::start(|_| |_: &Recorded| manifest_reply()).await;
    let base = server.base.join("mirror/prefix").unwrap();
    let (client, _) = client_for(&base, RegistryCredentials::Anonymous);
    let digest = Digest::sha256(MANIFEST);

    let m = client
        .fetch_manifest("team/app", &Reference::Digest(digest.clone()))
        .await
        .unwrap();

    assert_eq!(m.digest, digest);
    assert_eq!(
        server.requests()[0].target,
        format!("/mirror/prefix/v2/team/app/manifests/{digest}")
    );
}

#[tokio::test]
async fn a_manifest_that_does_not_hash_to_the_requested_digest_is_refused_and_counted() {
    let server = TestServer::start(|_| |_: &Recorded| Reply::new(200, MANIFEST)).await;
    let (client, metrics) = client_for(&server.base, RegistryCredentials::Anonymous);
    let wanted = Digest::sha256(b"something else");

    let err = client
        .fetch_manifest("team/app", &Reference::Digest(wanted.clone()))
        .await
        .unwrap_err();

    match err {
        RegistryError::DigestMismatch { expected, actual } => {
            assert_eq!(expected, wanted);
            assert_eq!(actual, Digest::sha256(MANIFEST));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(metrics.digest_mismatches.get(), 1);
}

#[tokio::test]
async fn a_docker_content_digest_that_disagrees_with_the_bytes_is_a_mismatch() {
    let server = TestServer::start(|_| {
        |_: &Recorded| {
            Reply::new(200, MANIFEST)
                .header("docker-content-digest", Digest::sha256(b"nope").to_string())
        }
    })
    .await;
    let (client, _) = client_for(&server.base, RegistryCredentials::Anonymous);

    let err = client
        .fetch_manifest("team/app", &tag("v1"))
        .await
        .unwrap_err();

    assert_eq!(err.metric_label(), "digest_mismatch");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_sha512_reference_is_verified_with_sha512_and_the_header_with_its_own_algorithm() {
    let server = TestServer::start(|_| |_: &Recorded| manifest_reply()).await;
    let (client, _) = client_for(&server.base, RegistryCredentials::Anonymous);
    let sha512 = Digest::compute(Algorithm::Sha512, MANIFEST);

    let m = client
        .fetch_manifest("team/app", &Reference::Digest(sha512.clone()))
        .await
        .unwrap();

    assert_eq!(m.digest, sha512);
}

#[tokio::test]
async fn a_streamed_manifest_over_4_mib_is_refused_and_exactly_4_mib_is_accepted() {
    let server = TestServer::start(|_| {
        |r: &Recorded| {
            let n = MAX_MANIFEST_BYTES as usize + usize::from(r.path().ends_with("/big"));
            Reply::new(200, vec![b' '; n]).streamed()
        }
    })
    .await;
    let (client, _) = client_for(&server.base, RegistryCredentials::Anonymous);

    let err = client
        .fetch_manifest("team/app", &tag("big"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::TooLarge { limit } if limit == MAX_MANIFEST_BYTES),
        "{err:?}"
    );

    let m = client
        .fetch_manifest("team/app", &tag("exact"))
        .await
        .unwrap();
    assert_eq!(m.bytes.len() as u64, MAX_MANIFEST_BYTES);
}

#[tokio::test]
async fn a_manifest_announced_over_4_mib_by_content_length_is_refused() {
    let server = TestServer::start(|_| {
        |_: &Recorded| Reply::new(200, vec![b' '; MAX_MANIFEST_BYTES as usize + 1])
    })
    .await;
    let (client, _) = client_for(&server.base, RegistryCredentials::Anonymous);

    let err = client
        .fetch_manifest("team/app", &tag("v1"))
        .await
        .unwrap_err();

    assert_eq!(err.metric_label(), "too_large");
}

#[tokio::test]
async fn rate_limits_and_server_errors_carry_retry_after_and_are_retryable() {
    let server = TestServer::start(|_| {
        |r: &Recorded| match r.path() {
            "/v2/team/app/manifests/limited" => {
                Reply::new(429, r#"{"errors":[{"code":"TOOMANYREQUESTS"}]}"#)
                    .header("retry-after", "7")
            }
            _ => Reply::new(503, "down").header("retry-after", "2"),
        }
    })
    .await;
    let (client, _) = client_for(&server.base, RegistryCredentials::Anonymous);

    let err = client
        .fetch_manifest("team/app", &tag("limited"))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::RateLimited { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));

    let err = client
        .fetch_manifest("team/app", &tag("other"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Server { status: 503, .. }),
        "{err:?}"
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
}

#[tokio::test]
async fn a_missing_manifest_is_manifest_unknown_and_retryable() {
    let server = TestServer::start(|_| {
        |_: &Recorded| {
            Reply::new(
                404,
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            )
        }
    })
    .await;
    let (client, _) = client_for(&server.base, RegistryCredentials::Anonymous);

    let err = client
        .fetch_manifest("team/app", &tag("v1"))
        .await
        .unwrap_err();

    assert!(err.is_manifest_unknown());
    assert!(err.is_retryable());
}

#[tokio::test]
async fn invalid_names_are_refused_before_any_request() {
    let server = TestServer::start(|_| |_: &Recorded| manifest_reply()).await;
    let (client, _) = client_for(&server.base, RegistryCredentials::Anonymous);

    for repo in ["../v2", "team%2fapp", "Team/app"] {
        let err = client.fetch_manifest(repo, &tag("v1")).await.unwrap_err();
        assert_eq!(err.metric_label(), "invalid_repository");
        assert_eq!(
            client.tags(repo).await.unwrap_err().metric_label(),
            "invalid_repository"
        );
    }
    let err = client
        .fetch_manifest("team/app", &tag("../../x"))
        .await
        .unwrap_err();
    assert_eq!(err.metric_label(), "invalid_reference");
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn blobs_follow_redirects_to_storage_and_are_verified_and_limited() {
    let config = br#"{"architecture":"amd64"}"#.to_vec();
    let digest = Digest::sha256(&config);
    let served = config.clone();
    let server = TestServer::start(move |_| {
        move |r: &Recorded| {
            if r.path().starts_with("/v2/") {
                Reply::new(307, "").header("location", "/storage/blob-data?sig=x")
            } else {
                Reply::new(200, served.clone())
            }
        }
    })
    .await;
    let (client, metrics) = client_for(&server.base, RegistryCredentials::Anonymous);

    let bytes = client.fetch_blob("team/app", &digest, 1024).await.unwrap();
    assert_eq!(&bytes[..], &config[..]);
    assert_eq!(
        server.requests()[0].target,
        format!("/v2/team/app/blobs/{digest}")
    );
    assert_eq!(server.hits("/storage/blob-data"), 1);

    let err = client.fetch_blob("team/app", &digest, 4).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::TooLarge { limit: 4 }),
        "{err:?}"
    );

    let wrong = Digest::sha256(b"another blob");
    let err = client
        .fetch_blob("team/app", &wrong, 1024)
        .await
        .unwrap_err();
    assert_eq!(err.metric_label(), "digest_mismatch");
    assert_eq!(metrics.digest_mismatches.get(), 1);
}

#[tokio::test]
async fn a_missing_blob_is_not_found_and_not_retryable() {
    let server = TestServer::start(|_| {
        |_: &Recorded| {
            Reply::new(
                404,
                r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}"#,
            )
        }
    })
    .await;
    let (client, _) = client_for(&server.base, RegistryCredentials::Anonymous);

    let err = client
        .fetch_blob("team/app", &Digest::sha256(b"x"), 1024)
        .await
        .unwrap_err();

    assert!(
        matches!(&err, RegistryError::NotFound { message } if message.contains("BLOB_UNKNOWN")),
        "{err:?}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn the_catalog_follows_link_pagination() {
    let server = TestServer::start(|_| {
        |r: &Recorded| match r.target.as_str() {
            "/v2/_catalog?n=1000" => Reply::new(200, r#"{"repositories":["a/one","a/two"]}"#)
                .header("link", r#"</v2/_catalog?last=a%2Ftwo&n=1000>; rel="next""#),
            "/v2/_catalog?last=a%2Ftwo&n=1000" => {
                Reply::new(200, r#"{"repositories":["b/three"]}"#)
            }
            _ => Reply::new(404, ""),
        }
    })
    .await;
    let (client, metrics) = client_for(&server.base, RegistryCredentials::Anonymous);

    let repos = client.catalog().await.unwrap();

    assert_eq!(repos, ["a/one", "a/two", "b/three"]);
    assert_eq!(server.requests().len(), 2);
    assert!(metrics.encode().contains(r#"op="catalog"} 2"#));
}

#[tokio::test]
async fn a_pagination_link_to_another_host_or_back_to_the_same_page_is_refused() {
    let server = TestServer::start(|_| {
        |r: &Recorded| match r.path() {
            "/v2/_catalog" => Reply::new(200, r#"{"repositories":["a/one"]}"#).header(
                "link",
                r#"<http://evil.test/v2/_catalog?last=a>; rel="next""#,
            ),
            _ => Reply::new(200, r#"{"name":"team/app","tags":["v1"]}"#)
                .header("link", r#"</v2/team/app/tags/list>; rel="next""#),
        }
    })
    .await;
    let (client, _) = client_for(&server.base, RegistryCredentials::Anonymous);

    assert_eq!(
        client.catalog().await.unwrap_err().metric_label(),
        "invalid_response"
    );
    assert_eq!(
        client.tags("team/app").await.unwrap_err().metric_label(),
        "invalid_response"
    );
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.header("host").is_some_and(|h| h.starts_with("127.0.0.1")))
    );
}

#[tokio::test]
async fn tags_are_listed_across_pages_and_null_tags_mean_none() {
    let server = TestServer::start(|_| {
        |r: &Recorded| match r.target.as_str() {
            "/v2/team/app/tags/list" => Reply::new(200, r#"{"name":"team/app","tags":["v1","v2"]}"#)
                .header("link", r#"</v2/team/app/tags/list?last=v2&n=2>; rel="next""#),
            "/v2/team/app/tags/list?last=v2&n=2" => Reply::new(200, r#"{"name":"team/app","tags":["v3"]}"#),
            "/v2/team/empty/tags/list" => Reply::new(200, r#"{"name":"team/empty","tags":null}"#),
            _ => Reply::new(404, r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#),
        }
    })
    .await;
    let (client, _) = client_for(&server.base, RegistryCredentials::Anonymous);

    assert_eq!(client.tags("team/app").await.unwrap(), ["v1", "v2", "v3"]);
    assert!(client.tags("team/empty").await.unwrap().is_empty());
    assert_eq!(
        client.tags("team/gone").await.unwrap_err().metric_label(),
        "not_found"
    );
}

#[tokio::test]
async fn connection_failures_are_retryable_transport_errors() {
    let server = TestServer::start(|_| |_: &Recorded| manifest_reply()).await;
    let base = server.base.clone();
    drop(server);
    // Nothing listens on a fresh port taken and released here.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut dead = base.clone();
    dead.set_port(Some(port)).unwrap();
    let (client, _) = client_for(&dead, RegistryCredentials::Anonymous);

    let err = client
        .fetch_manifest("team/app", &tag("v1"))
        .await
        .unwrap_err();

    assert_eq!(err.metric_label(), "transport");
    assert!(err.is_retryable());
}

#[test]
fn a_registry_url_with_credentials_or_a_bad_ca_is_a_config_error() {
    let mut cfg = RegistryConfig {
        name: "corp".into(),
        url: Url::parse("https://user:pw@reg.test/").unwrap(),
        pull_host: "reg.test".into(),
        ca_pem: None,
        ca_file: None,
        insecure_skip_tls_verify: false,
        auth: RegistryCredentials::Anonymous,
    };
    let metrics = Arc::new(Metrics::new());
    let err = RegistryClient::new(&cfg, metrics.clone()).unwrap_err();
    assert_eq!(err.metric_label(), "config");
    cfg.url = Url::parse("https://reg.test/").unwrap();
    cfg.ca_pem = Some(b"not a certificate".to_vec());
    assert_eq!(
        RegistryClient::new(&cfg, metrics.clone())
            .unwrap_err()
            .metric_label(),
        "config"
    );
    cfg.ca_pem = None;
    let client = RegistryClient::new(&cfg, metrics).unwrap();
    assert_eq!(client.name(), "corp");
    assert!(!format!("{client:?}").contains("pw"));
}
