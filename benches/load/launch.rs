//! Runs the release `imagestream-ingest` binary for the load benchmark: writes its config, spawns `serve`
//! and times spawn → `/healthz` 200 → `/readyz` 200 with 1 ms polling, or runs a CLI command and reports its
//! CPU. Every process started here is killed and reaped on drop; nothing else is ever signalled.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::daemon::{NOTIFY_TOKEN, free_port};

/// The daemon binary cargo built for this bench (release profile under `cargo bench`).
pub const BIN: &str = env!("CARGO_BIN_EXE_imagestream-ingest");
const START_DEADLINE: Duration = Duration::from_secs(20);
/// Production log level: one `info` line per job, no debug output.
const RUST_LOG: &str = "info";

/// What a daemon config needs beyond the defaults.
pub struct Setup<'a> {
    pub registry_url: &'a str,
    pub kubeconfig: &'a Path,
    pub concurrency: usize,
    pub queue_capacity: usize,
}

/// Write `<dir>/config.yaml` (+ the notify token) for `setup`, listening on `port`; returns the path.
pub fn write_config(dir: &Path, port: u16, setup: &Setup<'_>) -> PathBuf {
    fs::create_dir_all(dir).expect("daemon dir");
    fs::write(dir.join("notify-token"), format!("{NOTIFY_TOKEN}\n")).expect("token");
    let config = format!(
        "listen: 127.0.0.1:{port}\nadminListen: 127.0.0.1:{admin}\nstateDir: state\n\
         registries:\n  - name: reg\n    url: {url}\n\
         sources:\n  - name: reg\n    type: distribution\n    path: /notify/reg\n    registry: reg\n    auth:\n      bearerTokenFile: notify-token\n\
         cluster:\n  sink: kube\n  kubeconfig: {kubeconfig}\n\
         worker:\n  concurrency: {concurrency}\n  queueCapacity: {capacity}\n",
        admin = free_port(),
        url = setup.registry_url,
        kubeconfig = setup.kubeconfig.display(),
        concurrency = setup.concurrency,
        capacity = setup.queue_capacity,
    );
    let path = dir.join("config.yaml");
    fs::write(&path, config).expect("write config");
    path
}

/// A running `serve` process and how long it took to come up.
pub struct Launched {
    pub port: u16,
    pub pid: u32,
    /// Spawn → first `/healthz` 200.
    pub healthy_after: Duration,
    /// Spawn → first `/readyz` 200 (the cluster answered the first probe).
    pub ready_after: Duration,
    log_path: PathBuf,
    child: Child,
}

impl Launched {
    /// Write a config in `dir` and start `serve`; returns once `/readyz` answers 200.
    pub async fn start(dir: &Path, setup: &Setup<'_>) -> Launched {
        let port = free_port();
        let config_path = write_config(dir, port, setup);
        let log_path = dir.join("daemon.log");
        let log = fs::File::create(&log_path).expect("daemon log");
        let spawned = Instant::now();
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config_path)
            .args(["--log-format", "json"])
            .env("RUST_LOG", RUST_LOG)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn daemon");
        let pid = child.id();
        let mut launched = Launched {
            port,
            pid,
            healthy_after: Duration::ZERO,
            ready_after: Duration::ZERO,
            log_path,
            child,
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        launched.healthy_after = launched.wait_200(&client, "/healthz", spawned).await;
        launched.ready_after = launched.wait_200(&client, "/readyz", spawned).await;
        launched
    }

    async fn wait_200(&mut self, client: &reqwest::Client, path: &str, t0: Instant) -> Duration {
        let url = format!("{}{path}", self.url());
        loop {
            if let Ok(r) = client.get(&url).send().await {
                if r.status().is_success() {
                    return t0.elapsed();
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("daemon exited at start ({status}):\n{}", self.log());
            }
            assert!(
                t0.elapsed() < START_DEADLINE,
                "daemon never answered {path}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The daemon's `/metrics` text.
    pub async fn metrics(&self) -> String {
        match reqwest::get(format!("{}/metrics", self.url())).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A finished CLI run.
pub struct CliRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub wall: Duration,
    /// User + system CPU seconds of the command (from the shell's `times`).
    pub cpu_seconds: Option<f64>,
}

/// Run `imagestream-ingest <args> --config <config>` under bash so `times` reports the child's CPU.
pub fn run_cli(config: &Path, args: &[&str]) -> CliRun {
    let started = Instant::now();
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#""$@"; rc=$?; times >&2; exit $rc"#)
        .arg("bench-cli")
        .arg(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run cli");
    let wall = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // `times` prints the shell's own line, then the children's: "0m1.234s 0m0.567s".
    let cpu_seconds = stderr.lines().last().and_then(|line| {
        let secs: Option<Vec<f64>> = line.split_whitespace().map(parse_times).collect();
        secs.map(|v| v.iter().sum())
    });
    CliRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
        wall,
        cpu_seconds,
    }
}

/// `1m2.500s` → 62.5
fn parse_times(field: &str) -> Option<f64> {
    let (m, s) = field.strip_suffix('s')?.split_once('m')?;
    Some(m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

/// With `LOAD_PERF=1`, record `pid` with `perf record -g` into `target/perf-<name>.data` until
/// [`stop_profile`]; otherwise (or without perf) nothing.
pub fn profile(pid: u32, name: &str) -> Option<Child> {
    if std::env::var("LOAD_PERF").ok()? != "1" {
        return None;
    }
    let out = crate::target_dir().join(format!("perf-{name}.data"));
    let child = Command::new("perf")
        .args(["record", "-F", "999", "-g", "-p", &pid.to_string(), "-o"])
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // perf needs a moment to attach before the measured phase starts.
    std::thread::sleep(Duration::from_millis(300));
    println!("  (perf recording pid {pid} into {})", out.display());
    Some(child)
}

/// Stop a [`profile`] recording (SIGINT, so perf writes its file) and wait for it.
pub fn stop_profile(recording: Option<Child>) {
    if let Some(mut child) = recording {
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let _ = child.wait();
    }
}
