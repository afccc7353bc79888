//! HTTP servers: the public listener (notifications, `/healthz`, `/readyz`, `/metrics`) and the
//! loopback-only admin listener (dead letters), both actix-web (SPEC §4, §8, §2).
//!
//! Handlers only authenticate, bound, parse and enqueue; they never fetch from a registry or talk to the
//! cluster, so a slow cluster can never hold a registry's notification queue.

pub mod admin;
pub mod notify;
pub mod tls;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::{App, HttpResponse, HttpServer, dev::Server, web};

use crate::config::Config;
use crate::event::now_ms;
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::sink::Sink;

/// Shared state of the HTTP handlers.
pub struct AppState {
    pub config: Arc<Config>,
    pub queue: Queue,
    pub metrics: Arc<Metrics>,
    /// Used only for readiness (`last_answer_ms`); handlers never write through it.
    pub sink: Arc<Sink>,
    shutting_down: AtomicBool,
}

impl AppState {
    pub fn new(config: Arc<Config>, queue: Queue, metrics: Arc<Metrics>, sink: Arc<Sink>) -> Self {
        Self {
            config,
            queue,
            metrics,
            sink,
            shutting_down: AtomicBool::new(false),
        }
    }

    /// From now on, notifications get 503 (SIGTERM, SPEC §7).
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Ready = queue open and the cluster answered within `cluster.readyWindow`.
    pub fn readiness(&self) -> Result<(), String> {
        if self.is_shutting_down() || self.queue.is_closed() {
            return Err("queue closed".into());
        }
        let window = self.config.cluster.ready_window.as_millis() as i64;
        let last = self.sink.last_answer_ms();
        if last <= 0 {
            return Err("the cluster has not answered yet".into());
        }
        let age = now_ms() - last;
        if age > window {
            return Err(format!("the cluster has not answered for {} s", age / 1000));
        }
        Ok(())
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.readiness() {
        Ok(()) => HttpResponse::Ok()
            .content_type("text/plain")
            .body("ready\n"),
        Err(why) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body(format!("not ready: {why}\n")),
    }
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    state.metrics.queue_depth.set(state.queue.depth() as i64);
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.encode())
}

/// Build the public server on an already-bound listener (port 0 in tests).
pub fn public_server(
    state: web::Data<AppState>,
    listener: TcpListener,
    workers: usize,
    tls: Option<rustls::ServerConfig>,
) -> std::io::Result<Server> {
    let config = state.config.clone();
    let server = HttpServer::new(move || {
        let mut app = App::new()
            .app_data(state.clone())
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics));
        for source in &config.sources {
            let data = web::Data::new(source.clone());
            app = app.service(
                web::resource(source.path.as_str())
                    .app_data(data)
                    .route(web::post().to(notify::receive))
                    .default_service(web::to(notify::method_not_allowed)),
            );
        }
        app
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(5);
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls)?,
        None => server.listen(listener)?,
    };
    Ok(server.run())
}

/// Build the loopback admin server.
pub fn admin_server(state: web::Data<AppState>, listener: TcpListener) -> std::io::Result<Server> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/admin/dead-letters", web::get().to(admin::list))
            .route("/admin/dead-letters/retry", web::post().to(admin::retry))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run();
    Ok(server)
}
