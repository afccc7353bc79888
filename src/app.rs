//! `serve`: wire the stages together, run until the shutdown future resolves, stop in order (SPEC §7).
//!
//! Shutdown order: notifications get 503 and the queue closes; the worker stops taking jobs and drains
//! in-flight ones within the grace period; the servers stop; the queue's writer flushes. Whatever was not
//! finished stays on disk and runs on the next start.

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Config;
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::queue::{Queue, QueueError};
use crate::worker::{self, JobError, Processor};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("opening the queue in the state directory: {0}")]
    Queue(#[from] QueueError),
    #[error("setting up clients: {0}")]
    Setup(#[from] JobError),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("http server: {0}")]
    Server(#[source] std::io::Error),
    #[error(transparent)]
    Tls(#[from] crate::config::ConfigError),
}

/// How often the cluster is probed so `/readyz` reflects an outage even when no job runs: at most this,
/// and at least three probes per `cluster.readyWindow`.
const PROBE_INTERVAL: Duration = Duration::from_secs(10);

/// Listeners the daemon serves on; bound before `run` so tests can use port 0.
pub struct Listeners {
    pub public: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    pub fn bind(config: &Config) -> Result<Self, AppError> {
        let bind = |addr| TcpListener::bind(addr).map_err(|source| AppError::Bind { addr, source });
        Ok(Self {
            public: bind(config.listen)?,
            admin: bind(config.admin_listen)?,
        })
    }
}

/// Run the daemon until `shutdown` resolves.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AppError> {
    let started = Instant::now();
    let tls = config
        .tls
        .as_ref()
        .map(http::tls::server_config)
        .transpose()?;
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new());
    let queue = Queue::open(
        &config.state_dir,
        config.worker.queue_capacity,
        metrics.clone(),
    )?;
    let processor = Arc::new(Processor::new(config.clone(), metrics.clone(), false).await?);
    let state = web::Data::new(AppState::new(
        config.clone(),
        queue.clone(),
        metrics.clone(),
        processor.sink.clone(),
    ));

    let workers = std::thread::available_parallelism()
        .map(|n| n.get().min(2))
        .unwrap_or(1);
    let public = http::public_server(state.clone(), listeners.public, workers, tls)
        .map_err(AppError::Server)?;
    let admin = http::admin_server(state.clone(), listeners.admin).map_err(AppError::Server)?;
    let public_handle = public.handle();
    let admin_handle = admin.handle();
    let public_task = tokio::spawn(public);
    let admin_task = tokio::spawn(admin);

    let (stop_tx, stop_rx) = watch::channel(false);
    let probe_sink = processor.sink.clone();
    let mut probe_stop = stop_rx.clone();
    let probe_every = PROBE_INTERVAL
        .min(config.cluster.ready_window / 3)
        .max(Duration::from_millis(100));
    let probe_task = tokio::spawn(async move {
        loop {
            if let Err(e) = probe_sink.ping().await {
                warn!(error = %e, "cluster probe failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(probe_every) => {}
                _ = probe_stop.changed() => break,
            }
        }
    });
    let resync_task = (!config.worker.resync_interval.is_zero()).then(|| {
        let processor = processor.clone();
        let queue = queue.clone();
        let interval = config.worker.resync_interval;
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stop.changed() => break,
                }
                if let Err(e) = crate::resync::enqueue_all(&processor, &queue).await {
                    warn!(error = %e, "periodic resync failed");
                }
            }
        })
    });
    let grace = config.worker.shutdown_grace;
    let worker_task = tokio::spawn(worker::run(
        processor.clone(),
        queue.clone(),
        stop_rx,
        grace,
    ));

    info!(
        listen = %config.listen,
        admin = %config.admin_listen,
        pending = queue.depth(),
        startup_ms = started.elapsed().as_millis() as u64,
        "imagestream-ingest serving"
    );

    shutdown.await;
    info!("shutdown requested: refusing new notifications, draining jobs");
    state.begin_shutdown();
    queue.close();
    let _ = stop_tx.send(true);
    if let Err(e) = worker_task.await {
        warn!(error = %e, "worker task ended abnormally");
    }
    if let Err(e) = probe_task.await {
        warn!(error = %e, "probe task ended abnormally");
    }
    if let Some(task) = resync_task {
        task.abort();
        let _ = task.await;
    }
    public_handle.stop(true).await;
    admin_handle.stop(true).await;
    for (name, task) in [("public", public_task), ("admin", admin_task)] {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(server = name, error = %e, "server ended with an error"),
            Err(e) => warn!(server = name, error = %e, "server task ended abnormally"),
        }
    }
    let left = queue.depth();
    queue.shutdown().await;
    info!(left_queued = left, "stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (the one owner of OS signals).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
