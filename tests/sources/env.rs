//! The scenario harness of `tests/sources.rs`: emulator + real registry (sending nothing itself) + the
//! daemon configured with one source per type, the credentials each request carries, and bodies built from
//! the project's fixtures with the repository, tag and digest of an image really pushed.

use std::time::Duration;

use reqwest::RequestBuilder;
use serde_json::Value;
use sha2::Sha256;
use tempfile::TempDir;

use crate::support::daemon::{Daemon, NOTIFY_TOKEN, free_port};
use crate::support::emulator::{self, Emulator, Grant};
use crate::support::images::{Format, OciLayout, registry_manifest, skopeo_copy};
use crate::support::registry::{Registry, RegistryAuth, RegistryOptions};

pub(crate) const CLUSTER_TOKEN: &str = "cluster-token-5a71";
pub(crate) const WAIT: Duration = Duration::from_secs(30);
pub(crate) const BASIC_USER: &str = "notifier";
pub(crate) const BASIC_PASSWORD: &str = "basic-pw-71c2";
pub(crate) const HEADER_SECRET: &str = "header-secret-09be";
pub(crate) const HMAC_SECRET: &str = "hmac-secret-3d4f";

/// How a request proves itself, per source.
#[derive(Clone, Copy)]
pub(crate) enum Auth {
    Bearer,
    Basic,
    /// `headerSecret` with this header name.
    Header(&'static str),
    /// GitHub `X-Hub-Signature-256`.
    GithubHmac,
    /// Artifactory `X-JFrog-Event-Auth` carrying the HMAC of the body.
    JfrogHmac,
}

/// Which credentials a request carries.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Cred {
    Valid,
    Wrong,
    Missing,
}

/// The daemon's sources: (name = path segment, type, auth YAML).
pub(crate) const SOURCES: &[(&str, &str, &str)] = &[
    (
        "distribution",
        "distribution",
        "bearerTokenFile: notify-token",
    ),
    ("harbor", "harbor", "bearerTokenFile: notify-token"),
    (
        "quay",
        "quay",
        "basic: {username: notifier, passwordFile: basic-password}",
    ),
    (
        "dockerhub",
        "dockerhub",
        "headerSecret: {header: X-Ingest-Secret, secretFile: header-secret}",
    ),
    ("github", "github", "hmacSecretFile: hmac-secret"),
    (
        "cloudevents",
        "cloudevents",
        "basic: {username: notifier, passwordFile: basic-password}",
    ),
    (
        "acr",
        "acr",
        "headerSecret: {header: Authorization, secretFile: header-secret}",
    ),
    ("artifactory", "artifactory", "hmacSecretFile: hmac-secret"),
    (
        "artifactory-plain",
        "artifactory",
        "headerSecret: {header: X-JFrog-Event-Auth, secretFile: header-secret}",
    ),
];

pub(crate) fn hmac_hex(body: &[u8]) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(HMAC_SECRET.as_bytes()).expect("key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The same JSON with different bytes (pretty-printed): a signature over one must not validate the other.
pub(crate) fn respaced(body: &[u8]) -> Vec<u8> {
    let v: Value = serde_json::from_slice(body).expect("json");
    let pretty = serde_json::to_vec_pretty(&v).expect("json");
    assert_ne!(pretty, body, "the variant must differ in bytes");
    pretty
}

pub(crate) fn authed(req: RequestBuilder, auth: Auth, cred: Cred, body: &[u8]) -> RequestBuilder {
    if cred == Cred::Missing {
        return req;
    }
    let valid = cred == Cred::Valid;
    match auth {
        Auth::Bearer => req.bearer_auth(if valid { NOTIFY_TOKEN } else { "wrong-token" }),
        Auth::Basic => req.basic_auth(
            BASIC_USER,
            Some(if valid { BASIC_PASSWORD } else { "wrong" }),
        ),
        Auth::Header(name) => req.header(name, if valid { HEADER_SECRET } else { "wrong" }),
        Auth::GithubHmac | Auth::JfrogHmac => {
            // Wrong = the signature of a body that differs only in whitespace.
            let signed = if valid { body.to_vec() } else { respaced(body) };
            let sig = hmac_hex(&signed);
            match auth {
                Auth::GithubHmac => req.header("X-Hub-Signature-256", format!("sha256={sig}")),
                _ => req.header("X-JFrog-Event-Auth", sig),
            }
        }
    }
}

/// Everything one scenario needs: emulator, registry (sending nothing itself), daemon with every source.
pub(crate) struct Env {
    pub(crate) _dir: TempDir,
    pub(crate) emulator: Emulator,
    pub(crate) registry: Registry,
    pub(crate) daemon: Daemon,
    pub(crate) layout: OciLayout,
}

impl Env {
    pub(crate) async fn start() -> Env {
        let dir = TempDir::new().expect("tempdir");
        let emulator = emulator::start().await;
        emulator.add_namespace("team");
        let grants = [
            Grant::namespaced("team", "imagestreammappings", "create"),
            Grant::namespaced("team", "imagestreams", "get"),
            Grant::namespaced("team", "imagestreams", "create"),
            Grant::cluster("images", "get"),
            Grant::cluster("images", "create"),
        ];
        emulator.add_token(
            CLUSTER_TOKEN,
            "system:serviceaccount:ingest:ingest",
            &grants,
        );
        let kubeconfig = emulator.write_kubeconfig(dir.path(), CLUSTER_TOKEN);
        let registry = Registry::start(RegistryOptions {
            notify_url: None,
            notify_token: None,
            auth: RegistryAuth::None,
            tls: false,
        })
        .await;
        let daemon_dir = dir.path().join("daemon");
        std::fs::create_dir_all(&daemon_dir).expect("dir");
        for (file, secret) in [
            ("basic-password", BASIC_PASSWORD),
            ("header-secret", HEADER_SECRET),
            ("hmac-secret", HMAC_SECRET),
        ] {
            std::fs::write(daemon_dir.join(file), format!("{secret}\n")).expect("secret");
        }
        let sources: String = SOURCES
            .iter()
            .map(|(name, kind, auth)| {
                format!(
                    "  - {{name: {name}, type: {kind}, path: /notify/{name}, registry: reg, auth: {{{auth}}}}}\n"
                )
            })
            .collect();
        let config = format!(
            "listen: 127.0.0.1:{{{{PORT}}}}\nadminListen: 127.0.0.1:{{{{ADMIN_PORT}}}}\nstateDir: state\n\
             registries:\n  - name: reg\n    url: {url}\nsources:\n{sources}\
             cluster:\n  sink: kube\n  kubeconfig: {kubeconfig}\nworker:\n  concurrency: 2\n  maxAttempts: 3\n",
            url = registry.url,
            kubeconfig = kubeconfig.display(),
        );
        let daemon = Daemon::start(&daemon_dir, free_port(), &config).await;
        let layout = OciLayout::new(&dir.path().join("layout"));
        Env {
            _dir: dir,
            emulator,
            registry,
            daemon,
            layout,
        }
    }

    /// Push a fresh image as `repo:tag` for every tag; returns (manifest digest, manifest media type).
    pub(crate) fn push_image(&self, repo: &str, tags: &[&str]) -> (String, String) {
        self.layout.add_image(
            "src",
            "amd64",
            "linux",
            None,
            &[repo.as_bytes(), b"shared base"],
        );
        for tag in tags {
            skopeo_copy(
                &self.layout,
                "src",
                &self.registry,
                &format!("{repo}:{tag}"),
                Format::V2s2,
                false,
            );
        }
        let (_, media_type, digest) = registry_manifest(&self.registry, repo, tags[0]);
        (digest, media_type)
    }

    pub(crate) async fn post(
        &self,
        source: &str,
        auth: Auth,
        cred: Cred,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> u16 {
        let mut req = reqwest::Client::new()
            .post(format!("{}/notify/{source}", self.daemon.url()))
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = authed(req, auth, cred, &body);
        req.body(body).send().await.expect("post").status().as_u16()
    }

    pub(crate) async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.daemon.url()))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    pub(crate) async fn wait_image(&self, stream: &str, tag: &str, digest: &str) {
        let found = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(e) = self.emulator.tag_events("team", stream, tag).first() {
                    return e["image"].clone();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        match found {
            Ok(image) => assert_eq!(
                image, digest,
                "team/{stream}:{tag} names the pushed manifest"
            ),
            Err(_) => panic!(
                "timed out waiting for team/{stream}:{tag}\n{}",
                self.daemon.log()
            ),
        }
    }
}

/// One source type, exercised end to end.
pub(crate) struct Case<'a> {
    pub(crate) source: &'a str,
    pub(crate) auth: Auth,
    /// Headers every request of this type carries (event type, CloudEvents attributes).
    pub(crate) headers: Vec<(&'a str, &'a str)>,
    pub(crate) push: Vec<u8>,
    pub(crate) non_push: (Vec<(&'a str, &'a str)>, Vec<u8>),
}

/// 401 (wrong, missing), 200 (non-push), 400 (malformed), with nothing queued; then the push is mapped.
pub(crate) async fn exercise(env: &Env, case: Case<'_>, stream: &str, tag: &str, digest: &str) {
    let s = case.source;
    for cred in [Cred::Wrong, Cred::Missing] {
        let code = env
            .post(s, case.auth, cred, &case.headers, case.push.clone())
            .await;
        assert_eq!(code, 401, "{s}: a push with bad credentials");
    }
    let (non_push_headers, non_push) = case.non_push;
    let code = env
        .post(s, case.auth, Cred::Valid, &non_push_headers, non_push)
        .await;
    assert_eq!(code, 200, "{s}: a non-push event\n{}", env.daemon.log());
    let truncated = case.push[..case.push.len() / 2].to_vec();
    let code = env
        .post(s, case.auth, Cred::Valid, &case.headers, truncated)
        .await;
    assert_eq!(code, 400, "{s}: a malformed body");
    let metrics = env.metrics().await;
    assert!(
        metrics.contains(&format!("source=\"{s}\",outcome=\"unauthorized\"}} 2")),
        "{s}: both refusals counted\n{metrics}"
    );
    assert!(
        !metrics.contains(&format!("source=\"{s}\",outcome=\"queued\"")),
        "{s}: queued\n{metrics}"
    );
    assert_eq!(env.emulator.mapping_posts(), 0, "{s}: nothing mapped yet");

    let code = env
        .post(s, case.auth, Cred::Valid, &case.headers, case.push)
        .await;
    assert_eq!(code, 202, "{s}: the push\n{}", env.daemon.log());
    env.wait_image(stream, tag, digest).await;
}

pub(crate) fn fixture(path: &str) -> Value {
    let full = format!(
        "{}/fixtures/notifications/{path}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_slice(&std::fs::read(&full).expect("fixture")).expect("fixture json")
}

/// `fixture` with each (JSON pointer, value) replaced; every pointer must exist.
pub(crate) fn body<P: AsRef<str>>(path: &str, edits: &[(P, Value)]) -> Vec<u8> {
    let mut v = fixture(path);
    for (pointer, value) in edits {
        let pointer = pointer.as_ref();
        *v.pointer_mut(pointer)
            .unwrap_or_else(|| panic!("{path}: no {pointer}")) = value.clone();
    }
    serde_json::to_vec(&v).expect("json")
}
