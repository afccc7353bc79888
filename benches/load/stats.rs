//! Measurement helpers: latency percentiles, a process's CPU and memory from /proc, Prometheus histogram
//! quantiles, and the filesystem a directory lives on. Read-only: nothing here starts or stops anything.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};

/// Latency summary of one phase, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// Nearest-rank percentiles of `samples` (sorted here).
    pub fn of(samples: &mut [Duration]) -> Latency {
        samples.sort_unstable();
        let n = samples.len();
        let rank = |q: f64| {
            if n == 0 {
                0.0
            } else {
                let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
                samples[i].as_secs_f64() * 1e3
            }
        };
        Latency {
            count: n,
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            max_ms: rank(1.0),
        }
    }

    pub fn json(&self) -> Value {
        json!({"count": self.count, "p50_ms": round3(self.p50_ms), "p99_ms": round3(self.p99_ms),
               "max_ms": round3(self.max_ms)})
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// utime + stime of `pid` in seconds (all threads), from /proc/<pid>/stat.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// A `VmXXX:` value of /proc/<pid>/status in MiB (e.g. `VmRSS`, `VmHWM`).
pub fn status_mib(pid: u32, key: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(&format!("{key}:")))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Quantile `q` of a Prometheus histogram called `name` in an exposition text, by linear interpolation
/// inside the bucket (as `histogram_quantile` does). Returns seconds.
pub fn histogram_quantile(metrics: &str, name: &str, q: f64) -> Option<f64> {
    let prefix = format!("{name}_bucket{{");
    let mut buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count: f64 = l.rsplit(' ').next()?.parse().ok()?;
            Some((bound, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let target = q * total;
    let mut prev = (0.0, 0.0);
    for &(bound, count) in &buckets {
        if count >= target {
            if bound.is_infinite() {
                return Some(prev.0);
            }
            let span = count - prev.1;
            let frac = if span > 0.0 {
                (target - prev.1) / span
            } else {
                1.0
            };
            return Some(prev.0 + (bound - prev.0) * frac);
        }
        prev = (bound, count);
    }
    None
}

/// The value of a plain (counter or gauge) sample line starting with `series` (exact labels as printed).
pub fn metric_value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `df -T` of `dir`: (filesystem, type), to show the queue really lives on a disk and not on tmpfs.
pub fn filesystem_of(dir: &Path) -> String {
    Command::new("df")
        .arg("-T")
        .arg(dir)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            let line = s.lines().nth(1)?.to_string();
            let cols: Vec<&str> = line.split_whitespace().collect();
            Some(format!(
                "{} ({})",
                cols.first()?,
                cols.get(1).copied().unwrap_or("?")
            ))
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The 1-minute load average when the run started (the machine may be shared with builds).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Children of this process whose command name is `comm` (e.g. the `docker-registry` a harness started).
pub fn child_pids(comm: &str) -> Vec<u32> {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let ppid = stat
                .rfind(')')
                .and_then(|i| stat[i + 2..].split_whitespace().nth(1).map(str::to_string));
            name.trim() == comm && ppid.as_deref() == Some(me.as_str())
        })
        .collect()
}

/// CPU seconds used by a few named processes between `start` and `stop` (where the two cores went).
pub struct CpuMeter {
    start: Vec<(&'static str, u32, f64)>,
}

impl CpuMeter {
    pub fn start(pids: &[(&'static str, u32)]) -> CpuMeter {
        CpuMeter {
            start: pids
                .iter()
                .map(|&(name, pid)| (name, pid, cpu_seconds(pid).unwrap_or(0.0)))
                .collect(),
        }
    }

    /// `{name: seconds}` since `start`.
    pub fn stop(&self) -> Value {
        let mut out = serde_json::Map::new();
        for &(name, pid, t0) in &self.start {
            let used = cpu_seconds(pid).map_or(0.0, |t| t - t0);
            out.insert(name.to_string(), json!(round3(used)));
        }
        Value::Object(out)
    }
}

/// `name 1.23 s, other 0.45 s` for a [`CpuMeter::stop`] result.
pub fn cpu_line(v: &Value) -> String {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k} {:.2} s", v.as_f64().unwrap_or(0.0)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// Checks of the helpers above, run when the bench binary is started by `cargo test --all-targets` (which
/// passes no `--bench`): the load run itself is too heavy for a test run.
pub fn self_check() {
    let mut v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
    let l = Latency::of(&mut v);
    assert_eq!((l.p50_ms, l.p99_ms, l.max_ms), (50.0, 99.0, 100.0));
    let text =
        "x_bucket{le=\"0.1\"} 0\nx_bucket{le=\"0.2\"} 10\nx_bucket{le=\"+Inf\"} 10\nx_count 10\n";
    let q = histogram_quantile(text, "x", 0.5).expect("quantile");
    assert!((q - 0.15).abs() < 1e-9, "{q}");
    assert_eq!(metric_value(text, "x_count"), Some(10.0));
    let me = std::process::id();
    assert!(cpu_seconds(me).is_some_and(|s| s >= 0.0));
    assert!(status_mib(me, "VmRSS").is_some_and(|m| m > 0.0));
}
