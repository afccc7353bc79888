//! Listener TLS and mutual TLS (`tls.certFile/keyFile/clientCAFile`): a client certificate issued by the
//! configured CA is accepted and its notification queued; one from another CA, or none, fails the handshake.
//! The support `Daemon` polls `/healthz` over plain HTTP, so this starts the binary itself.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tempfile::TempDir;

use crate::support::daemon::{NOTIFY_TOKEN, free_port};
use crate::support::tls::{CaBundle, issue_client_cert, issue_server_cert, make_ca};

/// The daemon process; killed on drop.
struct TlsDaemon {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Drop for TlsDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TlsDaemon {
    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn client(server_ca: &CaBundle, identity: Option<(String, String)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(server_ca.pem.as_bytes()).expect("ca"))
        .timeout(Duration::from_secs(10));
    if let Some((cert, key)) = identity {
        let pem = format!("{cert}\n{key}");
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
    }
    b.build().expect("client")
}

/// Start the daemon with TLS (and mutual TLS against `client_ca`) and wait until `probe` gets /healthz.
async fn start(
    dir: &Path,
    server_ca: &CaBundle,
    client_ca: &CaBundle,
    probe: &reqwest::Client,
) -> TlsDaemon {
    let (cert, key) = issue_server_cert(server_ca, &["127.0.0.1"]);
    std::fs::write(dir.join("tls.crt"), cert).expect("cert");
    std::fs::write(dir.join("tls.key"), key).expect("key");
    std::fs::write(dir.join("client-ca.crt"), &client_ca.pem).expect("client ca");
    std::fs::write(dir.join("notify-token"), format!("{NOTIFY_TOKEN}\n")).expect("token");
    let port = free_port();
    let config = format!(
        "listen: 127.0.0.1:{port}\nadminListen: 127.0.0.1:{admin}\nstateDir: state\n\
         tls: {{certFile: tls.crt, keyFile: tls.key, clientCAFile: client-ca.crt}}\n\
         registries:\n  - {{name: reg, url: 'http://127.0.0.1:{closed}'}}\n\
         sources:\n  - {{name: reg, type: distribution, path: /notify/reg, registry: reg, auth: {{bearerTokenFile: notify-token}}}}\n\
         cluster: {{sink: directory, directory: mappings}}\nworker: {{maxAttempts: 1000}}\n",
        admin = free_port(),
        closed = free_port(),
    );
    let config_path = dir.join("config.yaml");
    std::fs::write(&config_path, config).expect("config");
    let log = dir.join("daemon.log");
    let child = Command::new(env!("CARGO_BIN_EXE_imagestream-ingest"))
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn daemon");
    let mut d = TlsDaemon { child, port, log };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = probe.get(d.url("/healthz")).send().await {
            if r.status().is_success() {
                return d;
            }
        }
        if let Ok(Some(status)) = d.child.try_wait() {
            panic!("daemon exited ({status}):\n{}", d.log());
        }
        assert!(
            Instant::now() < deadline,
            "daemon did not come up:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn push_body() -> Vec<u8> {
    serde_json::to_vec(&json!({"events": [{
        "id": "tls-1", "action": "push",
        "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "repository": "team/app", "tag": "v1",
                   "digest": "sha256:f079a57f1a4b4b515ef76af8f784208ad36a39869bb5e5a9cb3929355b388175"}}]}))
    .expect("json")
}

#[tokio::test]
async fn a_client_certificate_from_the_configured_ca_is_accepted_over_mutual_tls() {
    let dir = TempDir::new().expect("tmp");
    let server_ca = make_ca();
    let client_ca = make_ca();
    let good = client(&server_ca, Some(issue_client_cert(&client_ca, "registry")));
    let d = start(dir.path(), &server_ca, &client_ca, &good).await;
    let r = good
        .post(d.url("/notify/reg"))
        .bearer_auth(NOTIFY_TOKEN)
        .header("content-type", "application/json")
        .body(push_body())
        .send()
        .await
        .expect("post over mutual TLS");
    assert_eq!(r.status(), 202, "{}", d.log());
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_or_none_fails_the_handshake() {
    let dir = TempDir::new().expect("tmp");
    let server_ca = make_ca();
    let client_ca = make_ca();
    let other_ca = make_ca();
    let good = client(&server_ca, Some(issue_client_cert(&client_ca, "registry")));
    let d = start(dir.path(), &server_ca, &client_ca, &good).await;
    let strangers = [
        (
            "another CA",
            client(&server_ca, Some(issue_client_cert(&other_ca, "registry"))),
        ),
        ("no certificate", client(&server_ca, None)),
    ];
    for (what, c) in strangers {
        let r = c
            .post(d.url("/notify/reg"))
            .bearer_auth(NOTIFY_TOKEN)
            .header("content-type", "application/json")
            .body(push_body())
            .send()
            .await;
        assert!(
            r.is_err(),
            "{what}: got an answer {:?}",
            r.map(|r| r.status())
        );
    }
    // The listener is still up for the right client.
    let r = good.get(d.url("/healthz")).send().await.expect("healthz");
    assert!(r.status().is_success());
}
