//! Registry-side faults (SPEC §5, §7) against the REAL registry, seen through a fault-injecting proxy
//! (tests/support/proxy.rs): retryable statuses honour `Retry-After`, resets and outages are retried until
//! the tag is mapped exactly once, while digest mismatches, oversized manifests and authorization failures
//! are dead-lettered at once with a reason that says why. Only the daemon talks to the proxy; skopeo pushes
//! to the registry directly and the registry notifies the daemon directly.
//!
//! Assertions count requests the proxy recorded and compare the proxy's own timestamps; wall-clock
//! deadlines are only generous upper bounds for waiting.

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use support::daemon::{Daemon, NOTIFY_TOKEN, free_port};
use support::emulator::{self, Emulator, Grant};
use support::images::{Format, OciLayout, registry_blob, registry_manifest, skopeo_copy};
use support::proxy::{self, Action, Proxy, Rule, Seen};
use support::registry::{Registry, RegistryAuth, RegistryOptions};
use tempfile::TempDir;

const CLUSTER_TOKEN: &str = "cluster-token-4b7e";
const WAIT: Duration = Duration::from_secs(45);
const MANIFESTS: &str = "/manifests/";
const BLOBS: &str = "/blobs/";
const RETRIES: &str = "imagestream_ingest_jobs_total{outcome=\"retry\"}";
const CREATED: &str = "imagestream_ingest_jobs_total{outcome=\"created\"}";
const DEAD: &str = "imagestream_ingest_jobs_total{outcome=\"dead\"}";
const MISMATCHES: &str = "imagestream_ingest_digest_mismatches_total";
const QUEUED: &str = "imagestream_ingest_notifications_total{source=\"reg\",outcome=\"queued\"}";

/// Emulator + real registry + proxy in front of it + daemon reading the registry through the proxy.
struct Env {
    _dir: TempDir,
    emulator: Emulator,
    registry: Registry,
    proxy: Proxy,
    daemon: Daemon,
    layout: OciLayout,
}

impl Env {
    async fn start(auth: RegistryAuth, max_attempts: u32) -> Env {
        let dir = TempDir::new().expect("tempdir");
        let emulator = emulator::start().await;
        emulator.add_namespace("team");
        emulator.add_token(
            CLUSTER_TOKEN,
            "system:serviceaccount:ingest:imagestream-ingest",
            &[
                Grant::namespaced("team", "imagestreammappings", "create"),
                Grant::namespaced("team", "imagestreams", "get"),
                Grant::namespaced("team", "imagestreams", "create"),
                Grant::cluster("images", "get"),
                Grant::cluster("images", "create"),
            ],
        );
        let kubeconfig = emulator.write_kubeconfig(dir.path(), CLUSTER_TOKEN);
        let port = free_port();
        let registry = Registry::start(RegistryOptions {
            notify_url: Some(format!("http://127.0.0.1:{port}/notify/reg")),
            notify_token: Some(NOTIFY_TOKEN.to_string()),
            auth,
            tls: false,
        })
        .await;
        let proxy = proxy::start(&registry.url);
        let daemon_dir = dir.path().join("daemon");
        std::fs::create_dir_all(&daemon_dir).expect("dir");
        let mut registry_auth = String::new();
        if let Some((user, pass)) = registry.credentials() {
            std::fs::write(daemon_dir.join("registry-password"), format!("{pass}\n")).expect("pw");
            registry_auth = format!(
                "    auth:\n      username: {user}\n      passwordFile: registry-password\n"
            );
        }
        // pullHost: image references name the registry, not the proxy the daemon happens to read through.
        let config = format!(
            "listen: 127.0.0.1:{{{{PORT}}}}\nadminListen: 127.0.0.1:{{{{ADMIN_PORT}}}}\nstateDir: state\n\
             registries:\n  - name: reg\n    url: {proxy_url}\n    pullHost: {pull_host}\n{registry_auth}\
             sources:\n  - name: reg\n    type: distribution\n    path: /notify/reg\n    registry: reg\n    auth:\n      bearerTokenFile: notify-token\n\
             cluster:\n  sink: kube\n  kubeconfig: {kubeconfig}\n\
             worker:\n  concurrency: 4\n  maxAttempts: {max_attempts}\n",
            proxy_url = proxy.url(),
            pull_host = registry.host,
            kubeconfig = kubeconfig.display(),
        );
        let daemon = Daemon::start(&daemon_dir, port, &config).await;
        let layout = OciLayout::new(&dir.path().join("layout"));
        Env {
            _dir: dir,
            emulator,
            registry,
            proxy,
            daemon,
            layout,
        }
    }

    /// Build a one-layer image and push it to the registry directly as `team/<stream>:<tag>`; returns the
    /// manifest and config digests the registry serves for it.
    fn push(&self, stream: &str, tag: &str, layer: &[u8]) -> (String, String) {
        self.layout.add_image(tag, "amd64", "linux", None, &[layer]);
        let repo = format!("team/{stream}");
        skopeo_copy(
            &self.layout,
            tag,
            &self.registry,
            &format!("{repo}:{tag}"),
            Format::Oci,
            false,
        );
        let (bytes, _, digest) = registry_manifest(&self.registry, &repo, tag);
        let manifest: Value = serde_json::from_slice(&bytes).expect("manifest json");
        let config = manifest["config"]["digest"]
            .as_str()
            .expect("config digest");
        // The registry really holds the config: a later mismatch can only come from the proxy.
        assert!(!registry_blob(&self.registry, &repo, config).is_empty());
        (digest, config.to_string())
    }

    async fn wait_events(&self, stream: &str, tag: &str) -> Vec<Value> {
        self.wait("a tag event", || {
            let events = self.emulator.tag_events("team", stream, tag);
            (!events.is_empty()).then_some(events)
        })
        .await
    }

    /// Poll `check` until it gives a value; panic with the daemon log after [`WAIT`].
    async fn wait<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\nproxy saw: {:?}\ndaemon log:\n{}",
                self.proxy.requests(),
                self.daemon.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn dead_letters(&self) -> Vec<Value> {
        let url = format!(
            "http://127.0.0.1:{}/admin/dead-letters",
            self.daemon.admin_port
        );
        reqwest::get(url)
            .await
            .expect("admin reachable")
            .json()
            .await
            .expect("dead-letter list")
    }

    /// The one dead letter this scenario produces, once it exists.
    async fn the_dead_letter(&self) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let list = self.dead_letters().await;
            if !list.is_empty() {
                assert_eq!(list.len(), 1, "exactly one dead letter: {list:?}");
                return list.into_iter().next().expect("one");
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for a dead letter\nproxy saw: {:?}\ndaemon log:\n{}",
                self.proxy.requests(),
                self.daemon.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The value of one sample of /metrics (0 when it is not exported yet).
    async fn metric(&self, sample: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.daemon.url()))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    async fn wait_metric_at_least(&self, sample: &str, at_least: f64) {
        let deadline = Instant::now() + WAIT;
        while self.metric(sample).await < at_least {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {sample} >= {at_least}\ndaemon log:\n{}",
                self.daemon.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn gets(&self, path_contains: &str) -> Vec<Seen> {
        self.proxy.requests_matching("GET", path_contains)
    }

    /// Statuses of the GETs whose path contains `path_contains`, without 404s: the registry notifies
    /// before the tag is readable, so a first manifest GET may race the tag and get MANIFEST_UNKNOWN
    /// (which the daemon retries within the attempt).
    fn statuses(&self, path_contains: &str) -> Vec<u16> {
        self.gets(path_contains)
            .iter()
            .map(|r| r.status)
            .filter(|s| *s != 404)
            .collect()
    }

    /// Nothing was written to the cluster for `team/<stream>`.
    fn assert_nothing_mapped(&self, stream: &str) {
        assert!(
            self.emulator.stream("team", stream).is_none(),
            "no stream created"
        );
        assert_eq!(self.emulator.mapping_posts(), 0, "no mapping posted");
        assert_eq!(self.emulator.image_count(), 0, "no image created");
    }

    /// The tag was mapped to what the registry serves, exactly once, and nothing is dead.
    async fn assert_mapped_once(&self, stream: &str, tag: &str, digest: &str) {
        let events = self.wait_events(stream, tag).await;
        self.wait_metric_at_least(CREATED, 1.0).await;
        let events_now = self.emulator.tag_events("team", stream, tag);
        assert_eq!(events_now.len(), 1, "exactly one tag event: {events:?}");
        assert_eq!(events_now[0]["image"], Value::String(digest.to_string()));
        assert_eq!(
            events_now[0]["dockerImageReference"],
            Value::String(format!("{}/team/{stream}@{digest}", self.registry.host)),
            "the reference names the registry, not the proxy"
        );
        // The first POST may 404 (the stream does not exist yet) and be repeated after creating it.
        let accepted = self
            .emulator
            .requests()
            .iter()
            .filter(|r| {
                r.method == "POST"
                    && r.path.ends_with("/imagestreammappings")
                    && (200..300).contains(&r.status)
            })
            .count();
        assert_eq!(accepted, 1, "exactly one mapping accepted");
        assert_eq!(self.dead_letters().await, Vec::<Value>::new());
    }
}

fn dead_letter_reason(dead: &Value) -> String {
    dead["reason"].as_str().expect("reason").to_string()
}

#[tokio::test]
async fn a_503_with_retry_after_on_the_first_manifest_gets_is_retried_no_sooner_than_asked() {
    let env = Env::start(RegistryAuth::None, 5).await;
    env.proxy
        .inject(Rule::get(MANIFESTS, Action::Status(503, Some(1)), 3));
    let (digest, _) = env.push("app", "v1", b"retry-after layer");
    env.assert_mapped_once("app", "v1", &digest).await;

    assert_eq!(
        env.statuses(MANIFESTS),
        [503, 503, 503, 200],
        "three 503s, then the tag"
    );
    let gets = env.gets(MANIFESTS);
    for pair in gets.windows(2).filter(|p| p[0].status == 503) {
        let gap = pair[1].at.duration_since(pair[0].at);
        // Retry-After: 1 is a floor; 50 ms of slack for the daemon's millisecond clock.
        assert!(
            gap >= Duration::from_millis(950),
            "a retry came {gap:?} after a 503 with Retry-After: 1"
        );
    }
    let last = gets.last().expect("a manifest GET");
    assert!(last.at.duration_since(gets[0].at) >= Duration::from_millis(2850));
    assert_eq!(env.metric(RETRIES).await, 3.0);
}

#[tokio::test]
async fn a_429_on_the_config_blob_is_retried_and_the_tag_is_mapped() {
    let env = Env::start(RegistryAuth::None, 5).await;
    env.proxy
        .inject(Rule::get(BLOBS, Action::Status(429, None), 1));
    let (digest, _) = env.push("limited", "v1", b"rate limited layer");
    env.assert_mapped_once("limited", "v1", &digest).await;
    assert_eq!(env.statuses(BLOBS), [429, 200]);
    assert!(env.metric(RETRIES).await >= 1.0);
}

#[tokio::test]
async fn two_connection_resets_and_a_closed_connection_on_manifest_gets_are_retried_and_mapped() {
    let env = Env::start(RegistryAuth::None, 5).await;
    env.proxy.inject(Rule::get(MANIFESTS, Action::Reset, 2));
    env.proxy.inject(Rule::get(MANIFESTS, Action::Down, 1));
    let (digest, _) = env.push("reset", "v1", b"reset layer");
    env.assert_mapped_once("reset", "v1", &digest).await;
    assert_eq!(
        env.statuses(MANIFESTS),
        [0, 0, 0, 200],
        "two resets and a closed connection, then the tag"
    );
    assert_eq!(
        env.metric(RETRIES).await,
        3.0,
        "each drop is one failed attempt"
    );
}

/// The harness itself: a `Reset` is a real RST, a `Down` rule closes without an answer, and an outage
/// refuses connections until the proxy listens on the same port again.
#[tokio::test]
async fn the_proxy_really_resets_closes_and_refuses() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Nothing listens upstream: a forwarded request would get a 502, which no step below expects.
    let proxy = proxy::start(&format!("http://127.0.0.1:{}", free_port()));
    proxy.inject(Rule::get("/reset", Action::Reset, 0));
    proxy.inject(Rule::get("/closed", Action::Down, 0));
    let exchange = |path: &'static str| {
        let host = proxy.host();
        async move {
            let mut s = tokio::net::TcpStream::connect(&host).await?;
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await?;
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await.map(|_| buf)
        }
    };
    let reset = exchange("/v2/reset")
        .await
        .expect_err("a reset is an error");
    assert_eq!(reset.kind(), std::io::ErrorKind::ConnectionReset);
    let closed = exchange("/v2/closed").await.expect("a clean close");
    assert!(closed.is_empty(), "no answer at all: {closed:?}");
    let answered = exchange("/v2/").await.expect("answered");
    assert!(
        answered.starts_with(b"HTTP/1.1 502"),
        "forwarded, upstream unreachable"
    );

    proxy.set_down(true);
    let refused = tokio::net::TcpStream::connect(proxy.host())
        .await
        .expect_err("refused while down");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    proxy.set_down(false);
    tokio::net::TcpStream::connect(proxy.host())
        .await
        .expect("listening again on the same port");
    let seen: Vec<(String, u16)> = proxy
        .requests()
        .into_iter()
        .map(|r| (r.path, r.status))
        .collect();
    assert_eq!(
        seen,
        [
            ("/v2/reset".to_string(), 0),
            ("/v2/closed".to_string(), 0),
            ("/v2/".to_string(), 502)
        ]
    );
}

#[tokio::test]
async fn a_registry_answering_after_two_seconds_is_waited_for_without_a_retry() {
    let env = Env::start(RegistryAuth::None, 5).await;
    env.proxy.inject(Rule::get(
        MANIFESTS,
        Action::Delay(Duration::from_secs(2)),
        0,
    ));
    let (digest, _) = env.push("slow", "v1", b"slow layer");
    env.assert_mapped_once("slow", "v1", &digest).await;
    assert_eq!(env.statuses(MANIFESTS), [200]);
    assert_eq!(env.metric(RETRIES).await, 0.0);
}

#[tokio::test]
async fn a_notification_accepted_while_the_registry_is_down_is_mapped_once_it_is_back() {
    // Enough attempts for a 5 s outage: the backoff reaches 4-8 s by the sixth attempt.
    let env = Env::start(RegistryAuth::None, 10).await;
    env.proxy.set_down(true);
    let down_since = Instant::now();
    let (digest, _) = env.push("outage", "v1", b"outage layer");
    env.wait_metric_at_least(QUEUED, 1.0).await;
    // The daemon tried (connection refused) and rescheduled, twice; nothing reached the registry.
    env.wait_metric_at_least(RETRIES, 1.0).await;
    assert!(
        env.proxy.requests().is_empty(),
        "the outage refuses everything"
    );
    assert_eq!(env.emulator.mapping_posts(), 0);
    let outage = Duration::from_secs(5);
    tokio::time::sleep(outage.saturating_sub(down_since.elapsed())).await;
    env.proxy.set_down(false);

    env.assert_mapped_once("outage", "v1", &digest).await;
    assert_eq!(env.statuses(MANIFESTS), [200], "one GET once it was back");
}

#[tokio::test]
async fn a_corrupted_manifest_body_is_dead_lettered_as_a_digest_mismatch_without_retries() {
    let env = Env::start(RegistryAuth::None, 5).await;
    env.proxy
        .inject(Rule::get(MANIFESTS, Action::CorruptBody, 0));
    let (digest, _) = env.push("corrupt", "v1", b"corrupt manifest layer");
    let dead = env.the_dead_letter().await;
    let reason = dead_letter_reason(&dead);
    assert!(
        reason.contains("digest mismatch") && reason.contains(&digest),
        "reason names the mismatch and the announced digest: {reason}"
    );
    assert_eq!(dead["job"]["event"]["repository"], "team/corrupt");
    assert_eq!(dead["job"]["event"]["tag"], "v1");
    assert!(env.metric(MISMATCHES).await >= 1.0);
    assert_eq!(env.metric(DEAD).await, 1.0);
    assert_eq!(env.metric(RETRIES).await, 0.0, "a mismatch is not retried");
    assert_eq!(env.statuses(MANIFESTS), [200], "no retry storm");
    assert!(
        env.gets(BLOBS).is_empty(),
        "nothing read past a bad manifest"
    );
    env.assert_nothing_mapped("corrupt");
}

#[tokio::test]
async fn a_corrupted_config_blob_is_dead_lettered_as_a_digest_mismatch_without_retries() {
    let env = Env::start(RegistryAuth::None, 5).await;
    env.proxy.inject(Rule::get(BLOBS, Action::CorruptBody, 0));
    let (_, config) = env.push("badconfig", "v1", b"corrupt config layer");
    let dead = env.the_dead_letter().await;
    let reason = dead_letter_reason(&dead);
    assert!(
        reason.contains("digest mismatch") && reason.contains(&config),
        "reason names the mismatch and the config digest: {reason}"
    );
    assert!(env.metric(MISMATCHES).await >= 1.0);
    assert_eq!(env.metric(RETRIES).await, 0.0);
    assert_eq!(env.statuses(BLOBS), [200], "no retry storm");
    env.assert_nothing_mapped("badconfig");
}

#[tokio::test]
async fn an_oversized_streamed_manifest_is_dead_lettered_for_the_size_limit() {
    let env = Env::start(RegistryAuth::None, 5).await;
    env.proxy.inject(Rule::get(
        MANIFESTS,
        Action::OversizeBody(5 * 1024 * 1024),
        0,
    ));
    env.push("huge", "v1", b"huge layer");
    let dead = env.the_dead_letter().await;
    let reason = dead_letter_reason(&dead);
    assert!(
        reason.contains("limit") && reason.contains(&(4 * 1024 * 1024).to_string()),
        "reason names the size limit: {reason}"
    );
    assert_eq!(env.metric(RETRIES).await, 0.0);
    assert_eq!(env.statuses(MANIFESTS), [200], "one GET, not retried");
    env.assert_nothing_mapped("huge");
}

#[tokio::test]
async fn a_401_after_authenticating_is_dead_lettered_at_once_and_the_password_stays_out_of_the_log()
{
    let (user, password) = ("puller", "puller-secret-6d3a");
    let env = Env::start(
        RegistryAuth::Htpasswd {
            user: user.into(),
            password: password.into(),
        },
        5,
    )
    .await;
    env.proxy.inject(Rule {
        path_contains: "/v2/".into(),
        method: None,
        action: Action::Status(401, None),
        times: 0,
    });
    env.push("denied", "v1", b"denied layer");
    let dead = env.the_dead_letter().await;
    let reason = dead_letter_reason(&dead);
    assert!(
        reason.to_lowercase().contains("unauthorized"),
        "reason says the registry refused the credentials: {reason}"
    );
    let gets = env.gets(MANIFESTS);
    assert!(
        gets.iter().any(|r| r.authorized && r.status == 401),
        "the daemon answered the challenge with its credentials: {gets:?}"
    );
    assert!(
        gets.len() <= 2,
        "one attempt (a challenge and its answer), not maxAttempts: {gets:?}"
    );
    assert_eq!(env.metric(RETRIES).await, 0.0);
    env.assert_nothing_mapped("denied");
    let log = env.daemon.log();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    assert!(
        !log.contains(password),
        "registry password leaked into the log"
    );
    assert!(
        !log.contains(&basic),
        "Basic credentials leaked into the log"
    );
}

#[tokio::test]
async fn a_registry_failing_with_500_forever_is_given_up_after_exactly_max_attempts() {
    let env = Env::start(RegistryAuth::None, 3).await;
    env.proxy
        .inject(Rule::get(MANIFESTS, Action::Status(500, None), 0));
    env.push("broken", "v1", b"broken layer");
    let dead = env.the_dead_letter().await;
    let reason = dead_letter_reason(&dead);
    assert!(
        reason.contains("gave up after 3 attempts"),
        "reason says how many attempts: {reason}"
    );
    // A dead job is final: give a stray fourth attempt the time it would need to show up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        env.statuses(MANIFESTS),
        [500, 500, 500],
        "one manifest GET per attempt"
    );
    assert_eq!(env.metric(RETRIES).await, 2.0);
    assert_eq!(env.metric(DEAD).await, 1.0);
    env.assert_nothing_mapped("broken");
}
