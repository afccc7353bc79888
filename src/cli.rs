//! Command line (SPEC §2): `serve`, `map`, `check-config`, `dead-letters`.
//!
//! stdout carries only a command's result; logs go to stderr. Exit codes: 0 success, 64 bad usage or
//! config (one line naming the key), 1 runtime failure.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::app::{self, AppError, Listeners};
use crate::config::{Config, ConfigError};
use crate::digest::Digest;
use crate::http::admin::{RetryRequest, RetryResponse};
use crate::metrics::Metrics;
use crate::queue::{DeadLetter, Queue, QueueError};
use crate::telemetry::LogFormat;
use crate::worker::{JobError, Outcome, Processor, Request};

#[derive(Debug, Parser)]
#[command(
    name = "imagestream-ingest",
    version,
    about = "Registry push notifications → OpenShift ImageStreamMappings"
)]
pub struct Cli {
    /// Config file (YAML, SPEC §3).
    #[arg(long, global = true, env = "IMAGESTREAM_INGEST_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format; default text on a TTY, json otherwise. Filters from RUST_LOG.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Serve,
    /// Fetch, build and apply one reference (`repo:tag` or `repo:tag@sha256:…`); print the mapping JSON.
    Map {
        /// Which configured registry (default: the only one).
        #[arg(long)]
        registry: Option<String>,
        /// Build and verify, print, never write.
        #[arg(long)]
        dry_run: bool,
        reference: String,
    },
    /// Walk the registry (catalog, tags) and apply every mapped tag; prints counts as JSON. Idempotent.
    Resync {
        /// Only this configured registry (default: all).
        #[arg(long)]
        registry: Option<String>,
        /// Only repositories matching this regex.
        #[arg(long)]
        repository: Option<String>,
    },
    /// Inspect or re-queue dead-lettered jobs (through the running daemon's admin endpoint if it runs).
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
    /// Validate the config and print the effective config (secrets redacted).
    CheckConfig,
}

#[derive(Debug, Subcommand)]
pub enum DeadLetterAction {
    /// List dead jobs as JSON.
    List,
    /// Re-queue dead jobs (all when no id is given).
    Retry { ids: Vec<u64> },
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    App(#[from] AppError),
    #[error(transparent)]
    Job(#[from] JobError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("{0}")]
    Runtime(String),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Usage(_) | Self::Config(_) | Self::App(AppError::Tls(_)) => ExitCode::from(64),
            _ => ExitCode::from(1),
        }
    }
}

fn load(cli: &Cli) -> Result<Config, CliError> {
    let path = cli.config.as_ref().ok_or_else(|| {
        CliError::Usage("no config: pass --config FILE or set IMAGESTREAM_INGEST_CONFIG".into())
    })?;
    Ok(Config::load(path)?)
}

/// Run the parsed command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let config = load(&cli)?;
    match cli.command {
        Command::Serve => {
            let listeners = Listeners::bind(&config)?;
            app::run(config, listeners, app::shutdown_signal()).await?;
            Ok(())
        }
        Command::CheckConfig => {
            let text =
                serde_yaml_ng::to_string(&config).map_err(|e| CliError::Runtime(e.to_string()))?;
            print!("{text}");
            Ok(())
        }
        Command::Map {
            registry,
            dry_run,
            reference,
        } => map(config, registry, dry_run, &reference).await,
        Command::DeadLetters { action } => dead_letters(config, action).await,
        Command::Resync {
            registry,
            repository,
        } => resync(config, registry, repository).await,
    }
}

/// Split `repo:tag`, `repo:tag@sha256:…`. A mapping needs a tag, so a bare `repo@digest` is a usage error.
pub fn parse_reference(reference: &str) -> Result<(String, String, Option<Digest>), CliError> {
    let (name, digest) = match reference.split_once('@') {
        Some((n, d)) => (
            n,
            Some(Digest::parse(d).map_err(|e| CliError::Usage(e.to_string()))?),
        ),
        None => (reference, None),
    };
    let (repo, tag) = match name.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => {
            return Err(CliError::Usage(format!(
                "`{reference}`: a mapping needs a tag: use repo:tag or repo:tag@sha256:…"
            )));
        }
    };
    if repo.is_empty() || tag.is_empty() {
        return Err(CliError::Usage(format!("`{reference}` is not repo:tag")));
    }
    Ok((repo.to_string(), tag.to_string(), digest))
}

async fn map(
    config: Config,
    registry: Option<String>,
    dry_run: bool,
    reference: &str,
) -> Result<(), CliError> {
    let (repository, tag, pinned) = parse_reference(reference)?;
    let registry = match registry {
        Some(r) if config.registry(&r).is_some() => r,
        Some(r) => {
            return Err(CliError::Usage(format!(
                "--registry: no registry named `{r}`"
            )));
        }
        None => match config.registries.as_slice() {
            [only] => only.name.clone(),
            [] => return Err(CliError::Usage("the config has no registries".into())),
            _ => {
                return Err(CliError::Usage(
                    "several registries are configured: pass --registry".into(),
                ));
            }
        },
    };
    let metrics = Arc::new(Metrics::new());
    let processor = Processor::new(Arc::new(config), metrics, dry_run).await?;
    let processed = processor
        .process(&Request {
            registry,
            repository,
            tag,
            pinned,
            expected: None,
        })
        .await?;
    if let Outcome::Ignored { reason, .. } = processed.outcome {
        return Err(CliError::Runtime(format!("nothing mapped: {reason}")));
    }
    tracing::info!(outcome = processed.outcome.label(), "map finished");
    if let Some(mapping) = processed.mapping {
        let text =
            serde_json::to_string_pretty(&mapping).map_err(|e| CliError::Runtime(e.to_string()))?;
        println!("{text}");
    }
    Ok(())
}

async fn resync(
    config: Config,
    registry: Option<String>,
    repository: Option<String>,
) -> Result<(), CliError> {
    let filter = repository
        .map(|r| regex::Regex::new(&r).map_err(|e| CliError::Usage(format!("--repository: {e}"))))
        .transpose()?;
    if let Some(r) = &registry {
        if config.registry(r).is_none() {
            return Err(CliError::Usage(format!(
                "--registry: no registry named `{r}`"
            )));
        }
    }
    let concurrency = config.worker.concurrency;
    let processor = Processor::new(Arc::new(config), Arc::new(Metrics::new()), false).await?;
    let counts = crate::resync::run_direct(
        &processor,
        registry.as_deref(),
        filter.as_ref(),
        concurrency,
    )
    .await
    .map_err(|e| CliError::Runtime(e.to_string()))?;
    println!(
        "{}",
        serde_json::to_string(&counts).map_err(|e| CliError::Runtime(e.to_string()))?
    );
    if counts.failed > 0 {
        return Err(CliError::Runtime(format!(
            "{} tag(s) failed",
            counts.failed
        )));
    }
    Ok(())
}

async fn dead_letters(config: Config, action: DeadLetterAction) -> Result<(), CliError> {
    let base = format!("http://{}/admin/dead-letters", config.admin_listen);
    let client = reqwest::Client::new();
    let via_daemon = match &action {
        DeadLetterAction::List => client.get(&base).send().await,
        DeadLetterAction::Retry { ids } => {
            client
                .post(format!("{base}/retry"))
                .json(&RetryRequest { ids: ids.clone() })
                .send()
                .await
        }
    };
    match via_daemon {
        Ok(resp) => {
            if !resp.status().is_success() {
                return Err(CliError::Runtime(format!(
                    "admin endpoint answered {}",
                    resp.status()
                )));
            }
            let text = resp
                .text()
                .await
                .map_err(|e| CliError::Runtime(e.to_string()))?;
            match action {
                DeadLetterAction::List => {
                    let dead: Vec<DeadLetter> = serde_json::from_str(&text)
                        .map_err(|e| CliError::Runtime(e.to_string()))?;
                    print_dead(&dead)
                }
                DeadLetterAction::Retry { .. } => {
                    let r: RetryResponse = serde_json::from_str(&text)
                        .map_err(|e| CliError::Runtime(e.to_string()))?;
                    println!("{}", serde_json::json!({ "retried": r.retried }));
                    Ok(())
                }
            }
        }
        Err(e) if e.is_connect() => {
            // The daemon is not running: the store is ours to open.
            let queue = Queue::open(
                &config.state_dir,
                config.worker.queue_capacity,
                Arc::new(Metrics::new()),
            )?;
            let result = match action {
                DeadLetterAction::List => print_dead(&queue.dead_letters()?),
                DeadLetterAction::Retry { ids } => {
                    let retried = queue.retry_dead(&ids).await?;
                    println!("{}", serde_json::json!({ "retried": retried }));
                    Ok(())
                }
            };
            queue.shutdown().await;
            result
        }
        Err(e) => Err(CliError::Runtime(format!("admin endpoint: {e}"))),
    }
}

fn print_dead(dead: &[DeadLetter]) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(dead).map_err(|e| CliError::Runtime(e.to_string()))?;
    println!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_repository_tag_and_pin() {
        let (r, t, d) = parse_reference("team/app:v1").expect("ok");
        assert_eq!((r.as_str(), t.as_str(), d), ("team/app", "v1", None));
        let pin = format!("sha256:{}", "a".repeat(64));
        let (r, t, d) = parse_reference(&format!("team/app:v1@{pin}")).expect("ok");
        assert_eq!((r.as_str(), t.as_str()), ("team/app", "v1"));
        assert_eq!(d.map(|d| d.to_string()), Some(pin.clone()));
        assert!(parse_reference(&format!("team/app@{pin}")).is_err());
        assert!(parse_reference("team/app").is_err());
        assert!(parse_reference("team/app:v1@sha256:nothex").is_err());
    }
}
