//! Tests of the client's authentication against a local server (SPEC §5): the Bearer token flow and its cache,
//! Basic, and what a refusal after authenticating becomes.

use url::Url;

use super::RegistryError;
use super::auth::may_send_credentials;
use super::test_server::{Recorded, Reply, TestServer};
use super::tests::{client_for, manifest_reply, robot, robot_basic_header, tag, unauthorized_body};
use crate::config::RegistryCredentials;

#[test]
fn the_password_never_goes_to_a_plain_http_realm_of_an_https_registry() {
    let url = |s: &str| Url::parse(s).unwrap();
    assert!(may_send_credentials(
        &url("https://r/"),
        &url("https://auth/token")
    ));
    assert!(!may_send_credentials(
        &url("https://r/"),
        &url("http://auth/token")
    ));
    assert!(may_send_credentials(
        &url("http://r/"),
        &url("http://auth/token")
    ));
}

#[tokio::test]
async fn a_bearer_challenge_fetches_a_token_once_and_reuses_it() {
    let server = TestServer::start(|base: Url| {
        move |r: &Recorded| {
            if r.path() == "/token" {
                return Reply::new(200, r#"{"token":"tok-1","expires_in":300}"#);
            }
            if r.header("authorization") == Some("Bearer tok-1") {
                return manifest_reply();
            }
            Reply::new(401, unauthorized_body()).header(
                "www-authenticate",
                format!(
                    r#"Bearer realm="{base}token",service="test registry",scope="repository:team/app:pull""#
                ),
            )
        }
    })
    .await;
    let (client, metrics) = client_for(&server.base, robot());

    client.fetch_manifest("team/app", &tag("v1")).await.unwrap();
    client.fetch_manifest("team/app", &tag("v2")).await.unwrap();

    assert_eq!(server.hits("/token"), 1);
    let reqs = server.requests();
    let paths: Vec<&str> = reqs.iter().map(|r| r.path()).collect();
    assert_eq!(
        paths,
        [
            "/v2/team/app/manifests/v1",
            "/token",
            "/v2/team/app/manifests/v1",
            "/v2/team/app/manifests/v2"
        ]
    );
    let token_req = &reqs[1];
    assert_eq!(
        token_req.target,
        "/token?service=test+registry&scope=repository%3Ateam%2Fapp%3Apull"
    );
    assert_eq!(
        token_req.header("authorization"),
        Some(robot_basic_header().as_str())
    );
    assert!(metrics.encode().contains(r#"op="token""#));
}

#[tokio::test]
async fn an_anonymous_bearer_flow_accepts_access_token_and_sends_no_credentials() {
    let server = TestServer::start(|base: Url| {
        move |r: &Recorded| match (r.path(), r.header("authorization")) {
            ("/auth", _) => Reply::new(200, r#"{"access_token":"anon"}"#),
            (_, Some("Bearer anon")) => manifest_reply(),
            _ => Reply::new(401, "")
                .header("www-authenticate", format!(r#"Bearer realm="{base}auth""#)),
        }
    })
    .await;
    let (client, _) = client_for(&server.base, RegistryCredentials::Anonymous);

    client.fetch_manifest("team/app", &tag("v1")).await.unwrap();

    let token_req = server
        .requests()
        .into_iter()
        .find(|r| r.path() == "/auth")
        .unwrap();
    assert_eq!(token_req.header("authorization"), None);
    // No scope in the challenge: the client asks for the pull scope of the repository.
    assert_eq!(
        token_req.target,
        "/auth?scope=repository%3Ateam%2Fapp%3Apull"
    );
}

#[tokio::test]
async fn a_basic_challenge_is_answered_and_then_credentials_are_sent_up_front() {
    let server = TestServer::start(|_| {
        |r: &Recorded| {
            if r.header("authorization") == Some(robot_basic_header().as_str()) {
                manifest_reply()
            } else {
                Reply::new(401, unauthorized_body())
                    .header("www-authenticate", r#"Basic realm="Registry Realm""#)
            }
        }
    })
    .await;
    let (client, _) = client_for(&server.base, robot());

    client.fetch_manifest("team/app", &tag("v1")).await.unwrap();
    client.fetch_manifest("team/app", &tag("v2")).await.unwrap();

    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn a_basic_challenge_without_configured_credentials_is_unauthorized() {
    let server = TestServer::start(|_| {
        |_: &Recorded| Reply::new(401, "").header("www-authenticate", r#"Basic realm="x""#)
    })
    .await;
    let (client, _) = client_for(&server.base, RegistryCredentials::Anonymous);

    let err = client
        .fetch_manifest("team/app", &tag("v1"))
        .await
        .unwrap_err();

    assert_eq!(err.metric_label(), "unauthorized");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_second_401_after_authenticating_is_unauthorized_with_the_registry_message() {
    let server = TestServer::start(|base: Url| {
        move |r: &Recorded| {
            if r.path() == "/token" {
                return Reply::new(200, r#"{"token":"useless"}"#);
            }
            Reply::new(401, unauthorized_body()).header(
                "www-authenticate",
                format!(r#"Bearer realm="{base}token",service="reg""#),
            )
        }
    })
    .await;
    let (client, _) = client_for(&server.base, robot());

    let err = client
        .fetch_manifest("team/app", &tag("v1"))
        .await
        .unwrap_err();

    match &err {
        RegistryError::Unauthorized { message } => {
            assert!(message.contains("authentication required"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(server.hits("/v2/team/app/manifests/v1"), 2);
    assert_eq!(server.hits("/token"), 1);
}

#[tokio::test]
async fn a_token_endpoint_refusing_the_credentials_is_unauthorized_and_403_is_forbidden() {
    let server = TestServer::start(|base: Url| {
        move |r: &Recorded| match r.path() {
            "/token" => Reply::new(401, r#"{"details":"incorrect username or password"}"#),
            "/v2/team/denied/manifests/v1" => Reply::new(
                403,
                r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#,
            ),
            _ => Reply::new(401, "").header("www-authenticate", format!(r#"Bearer realm="{base}token""#)),
        }
    })
    .await;
    let (client, _) = client_for(&server.base, robot());

    let err = client
        .fetch_manifest("team/app", &tag("v1"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("incorrect username or password"),
        "{err}"
    );
    assert_eq!(err.metric_label(), "unauthorized");

    let err = client
        .fetch_manifest("team/denied", &tag("v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::Forbidden { message } if message.contains("denied")),
        "{err:?}"
    );
}

#[tokio::test]
async fn neither_the_password_nor_the_token_appears_in_the_logs() {
    use std::sync::{Arc, Mutex};
    let captured = Arc::new(Mutex::new(Vec::<u8>::new()));
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || CaptureWriter(sink.clone()))
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let server = TestServer::start(|base: Url| {
        move |r: &Recorded| {
            if r.path() == "/token" {
                return Reply::new(200, r#"{"token":"tok-secret-123"}"#);
            }
            if r.header("authorization") == Some("Bearer tok-secret-123") {
                return manifest_reply();
            }
            Reply::new(401, unauthorized_body()).header(
                "www-authenticate",
                format!(r#"Bearer realm="{base}token",service="reg""#),
            )
        }
    })
    .await;
    let (client, _) = client_for(&server.base, robot());

    client.fetch_manifest("team/app", &tag("v1")).await.unwrap();
    tracing::debug!(?client, "client after use");

    let text = String::from_utf8(captured.lock().unwrap().clone()).unwrap();
    assert!(text.contains("registry_fetch"), "nothing captured: {text}");
    for secret in [
        "pa55word",
        "tok-secret-123",
        robot_basic_header().trim_start_matches("Basic "),
    ] {
        assert!(!text.contains(secret), "{secret} leaked into logs:\n{text}");
    }
}

struct CaptureWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
