//! Wiring only: open the store → start the journal → compile sources → serve.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use chrono::Utc;
use tokio::net::TcpListener;

use crate::config::{Config, Origin, SecretLookup};
use crate::ingest::{self, Ingest};
use crate::journal::Journal;
use crate::store::Store;

/// How often expired dedupe entries are removed (housekeeping, not durability).
const DEDUPE_SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// The running service's parts.
#[derive(Clone)]
pub struct App {
    pub journal: Arc<Journal>,
    pub ingest: Arc<Ingest>,
}

impl App {
    /// Opens the store and compiles the sources; returns start-up warnings to log.
    pub fn build(
        config: &Config,
        origin: &Origin,
        secrets: &SecretLookup,
    ) -> anyhow::Result<(App, Vec<String>)> {
        std::fs::create_dir_all(&config.data_dir)?;
        let store = Store::open(&config.data_dir)?;
        let journal = Arc::new(Journal::new(store, config.ingest.dedupe_window_secs));
        let (ingest, warnings) = Ingest::new(config, origin, secrets, journal.clone())?;
        let app = App {
            journal,
            ingest: Arc::new(ingest),
        };
        Ok((app, warnings))
    }

    pub fn router(&self) -> Router {
        let hooks = Router::new()
            .route("/hooks/{source}", post(ingest::receive))
            .with_state(self.ingest.clone());
        let health = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .with_state(self.journal.clone());
        hooks.merge(health)
    }

    /// Serves on `listener` until `shutdown` completes, then lets in-flight requests finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let sweeper = tokio::spawn(sweep_dedupe(self.journal.clone()));
        let result = axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await;
        sweeper.abort();
        self.journal.sync().await?;
        Ok(result?)
    }
}

/// Ready when the store can still write and fsync.
async fn readyz(State(journal): State<Arc<Journal>>) -> (StatusCode, &'static str) {
    match journal.probe(Utc::now().timestamp()).await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(error) => {
            tracing::error!(error = %error, "store is not writable");
            (StatusCode::SERVICE_UNAVAILABLE, "store not writable")
        }
    }
}

async fn sweep_dedupe(journal: Arc<Journal>) {
    let mut every = tokio::time::interval(DEDUPE_SWEEP_EVERY);
    loop {
        every.tick().await;
        let journal = journal.clone();
        let swept =
            tokio::task::spawn_blocking(move || journal.sweep_dedupe(Utc::now().timestamp())).await;
        match swept {
            Ok(Ok(removed)) => tracing::debug!(removed, "expired dedupe entries removed"),
            Ok(Err(error)) => tracing::warn!(error = %error, "dedupe sweep failed"),
            Err(_) => return,
        }
    }
}
