//! Runs the real `imagestream-ingest` binary with a real config file, on free loopback ports.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound then released; the caller binds it soon after).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

pub const NOTIFY_TOKEN: &str = "notify-token-5c1e7a";

/// A daemon process and the files it was started with.
pub struct Daemon {
    pub port: u16,
    pub admin_port: u16,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    child: Option<Child>,
    log_path: PathBuf,
    /// Extra environment for the process (e.g. `RUST_LOG=trace`), applied after the defaults.
    env: Vec<(String, String)>,
}

impl Daemon {
    /// Write `config` (YAML, with `{{PORT}}`, `{{ADMIN_PORT}}`, `{{DIR}}` placeholders) and start `serve`.
    /// `port` is the public port the config listens on (chosen before the registry was started).
    pub async fn start(dir: &Path, port: u16, config: &str) -> Daemon {
        Self::start_with_env(dir, port, config, &[]).await
    }

    /// [`Daemon::start`] with extra environment variables for the process (they override the defaults,
    /// e.g. `("RUST_LOG", "trace")`).
    pub async fn start_with_env(
        dir: &Path,
        port: u16,
        config: &str,
        env: &[(&str, &str)],
    ) -> Daemon {
        fs::create_dir_all(dir).expect("dir");
        let admin_port = free_port();
        let text = config
            .replace("{{PORT}}", &port.to_string())
            .replace("{{ADMIN_PORT}}", &admin_port.to_string())
            .replace("{{DIR}}", &dir.display().to_string());
        let config_path = dir.join("config.yaml");
        fs::write(&config_path, text).expect("write config");
        fs::write(dir.join("notify-token"), format!("{NOTIFY_TOKEN}\n")).expect("token");
        let mut d = Daemon {
            port,
            admin_port,
            dir: dir.to_path_buf(),
            config_path,
            child: None,
            log_path: dir.join(format!("daemon-{}.log", port)),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        d.spawn().await;
        d
    }

    /// (Re)start the process with the same config and wait for /healthz.
    pub async fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_imagestream-ingest"))
            .args(["serve", "--config"])
            .arg(&self.config_path)
            .args(["--log-format", "json"])
            .env("RUST_LOG", "info,imagestream_ingest=debug")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn daemon");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{}/healthz", self.url())).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("daemon exited at start ({status}):\n{}", self.log());
                }
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not become healthy:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id of the running daemon (None once killed or terminated).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL, as a crash or power cut would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        c.wait().expect("wait")
    }

    /// Run a CLI command against the same config; returns (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_imagestream-ingest"))
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .output()
            .expect("run cli");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Poll `check` until it returns Some or `timeout` passes (then panic with `what`).
pub async fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
