//! `GET /healthz` (the process answers) and `GET /readyz` (the store can still write and fsync),
//! for load balancers and orchestrators; open to anyone.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::journal::Events;

pub fn router(journal: Arc<dyn Events>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(journal)
}

/// Ready when the store can still write and fsync.
async fn readyz(State(journal): State<Arc<dyn Events>>) -> (StatusCode, &'static str) {
    match journal.probe().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(error) => {
            tracing::error!(error = %error, "store is not writable");
            (StatusCode::SERVICE_UNAVAILABLE, "store not writable")
        }
    }
}
