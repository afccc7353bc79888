//! Loopback-only admin endpoints, so `dead-letters list|retry` works while `serve` holds the store
//! (an embedded store is single-process; SPEC §2). Bound to `adminListen`, which config requires to be
//! loopback; it carries no secrets.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;

/// Body of `POST /admin/dead-letters/retry`: the job ids to retry; empty = all.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RetryRequest {
    #[serde(default)]
    pub ids: Vec<u64>,
}

/// Answer of `POST /admin/dead-letters/retry`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RetryResponse {
    pub retried: usize,
}

pub async fn list(state: web::Data<AppState>) -> HttpResponse {
    match state.queue.dead_letters() {
        Ok(dead) => HttpResponse::Ok().json(dead),
        Err(e) => HttpResponse::InternalServerError().json(json!({ "message": e.to_string() })),
    }
}

pub async fn retry(state: web::Data<AppState>, body: web::Json<RetryRequest>) -> HttpResponse {
    match state.queue.retry_dead(&body.ids).await {
        Ok(retried) => HttpResponse::Ok().json(RetryResponse { retried }),
        Err(e) => HttpResponse::InternalServerError().json(json!({ "message": e.to_string() })),
    }
}
