//! Operating the daemon (SPEC §8): `/metrics` after real pushes, `/readyz` against a failing cluster, and
//! the structured log, all on the real binary with the real registry and the cluster emulator.
//!
//! The emulator's grants are built from `imagestream_ingest::rbac::RULES` (cluster-wide, like the
//! ClusterRoleBindings in `deploy/base`), so these scenarios also show that those rules are enough.

mod support;

#[path = "operations/health_logs.rs"]
mod health_logs;
#[path = "operations/metrics.rs"]
mod metrics;
#[path = "operations/scrape.rs"]
mod scrape;

use std::time::Duration;

use imagestream_ingest::rbac;
use scrape::Metrics;
use support::daemon::{Daemon, NOTIFY_TOKEN, free_port};
use support::emulator::{self, Emulator, Grant};
use support::images::{Format, OciLayout, skopeo_copy};
use support::registry::{Registry, RegistryAuth, RegistryOptions};
use tempfile::TempDir;

const CLUSTER_TOKEN: &str = "cluster-token-0b7e41";
const REGISTRY_PASSWORD: &str = "robot-pass-3d9a77";
const WAIT: Duration = Duration::from_secs(45);

struct Env {
    _dir: TempDir,
    emulator: Emulator,
    registry: Registry,
    daemon: Daemon,
    layout: OciLayout,
}

#[derive(Default)]
struct EnvOptions {
    auth: Option<RegistryAuth>,
    /// `cluster.readyWindow`, e.g. `1s`.
    ready_window: Option<&'static str>,
    /// Extra environment for the daemon (e.g. `RUST_LOG=trace`).
    env: Vec<(&'static str, &'static str)>,
}

impl Env {
    async fn start(opts: EnvOptions) -> Env {
        let dir = TempDir::new().expect("tempdir");
        let emulator = emulator::start().await;
        emulator.add_namespace("team");
        let grants: Vec<Grant> = rbac::RULES
            .iter()
            .flat_map(|r| r.verbs.iter().map(|v| Grant::cluster(r.resource, v)))
            .collect();
        emulator.add_token(
            CLUSTER_TOKEN,
            "system:serviceaccount:imagestream-ingest:imagestream-ingest",
            &grants,
        );
        let kubeconfig = emulator.write_kubeconfig(dir.path(), CLUSTER_TOKEN);
        let port = free_port();
        let registry = Registry::start(RegistryOptions {
            notify_url: Some(format!("http://127.0.0.1:{port}/notify/reg")),
            notify_token: Some(NOTIFY_TOKEN.to_string()),
            auth: opts.auth.unwrap_or(RegistryAuth::None),
            tls: false,
        })
        .await;
        let daemon_dir = dir.path().join("daemon");
        std::fs::create_dir_all(&daemon_dir).expect("dir");
        let mut registry_auth = String::new();
        if let Some((user, pass)) = registry.credentials() {
            std::fs::write(daemon_dir.join("registry-password"), format!("{pass}\n")).expect("pw");
            registry_auth = format!(
                "    auth:\n      username: {user}\n      passwordFile: registry-password\n"
            );
        }
        let ready_window = opts
            .ready_window
            .map(|w| format!("  readyWindow: {w}\n"))
            .unwrap_or_default();
        let config = format!(
            "listen: 127.0.0.1:{{{{PORT}}}}\nadminListen: 127.0.0.1:{{{{ADMIN_PORT}}}}\nstateDir: state\n\
             registries:\n  - name: reg\n    url: {url}\n{registry_auth}\
             sources:\n  - name: reg\n    type: distribution\n    path: /notify/reg\n    registry: reg\n    auth:\n      bearerTokenFile: notify-token\n\
             cluster:\n  sink: kube\n  kubeconfig: {kubeconfig}\n{ready_window}\
             worker:\n  concurrency: 4\n  maxAttempts: 3\n",
            url = registry.url,
            kubeconfig = kubeconfig.display(),
        );
        let daemon = Daemon::start_with_env(&daemon_dir, port, &config, &opts.env).await;
        let layout = OciLayout::new(&dir.path().join("layout"));
        Env {
            _dir: dir,
            emulator,
            registry,
            daemon,
            layout,
        }
    }

    fn push(&self, tag: &str, dest: &str) {
        skopeo_copy(&self.layout, tag, &self.registry, dest, Format::Oci, true);
    }

    async fn scrape(&self) -> Metrics {
        let text = reqwest::get(format!("{}/metrics", self.daemon.url()))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        Metrics::parse(&text)
    }

    /// Poll `/metrics` until `done` holds (then return that scrape) or fail with the log.
    async fn wait_metrics(&self, what: &str, done: impl Fn(&Metrics) -> bool) -> Metrics {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let m = self.scrape().await;
            if done(&m) {
                return m;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}\nmetrics:\n{}\ndaemon log:\n{}",
                    m.text,
                    self.daemon.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_events(&self, ns: &str, stream: &str, tag: &str, n: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.emulator.tag_events(ns, stream, tag).len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {ns}/{stream}:{tag}\ndaemon log:\n{}",
                self.daemon.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn readyz(&self) -> u16 {
        reqwest::get(format!("{}/readyz", self.daemon.url()))
            .await
            .expect("readyz")
            .status()
            .as_u16()
    }

    async fn wait_readyz(&self, code: u16) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.readyz().await != code {
            assert!(
                tokio::time::Instant::now() < deadline,
                "/readyz never answered {code}\ndaemon log:\n{}",
                self.daemon.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
