//! Wiring only: open the store → start the journal → compile sources → serve.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::config::{Config, Origin, SecretLookup};
use crate::ingest::{self, Ingest};
use crate::journal::Journal;
use crate::mapping::{Lookups, Mapping};
use crate::store::Store;

/// The running service's parts.
#[derive(Clone)]
pub struct App {
    pub journal: Arc<Journal>,
    pub ingest: Arc<Ingest>,
    /// The compiled mappings and their lookup tables (the delivery engine will use them).
    pub mappings: Arc<(Vec<Mapping>, Lookups)>,
}

impl App {
    /// Opens the store and compiles the sources; returns start-up warnings to log.
    pub fn build(
        config: &Config,
        origin: &Origin,
        secrets: &SecretLookup,
    ) -> anyhow::Result<(App, Vec<String>)> {
        let mappings = crate::mapping::load_dir(&config.mappings_dir, &config.schemas_dir)
            .map_err(|problems| {
                let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
                anyhow::anyhow!(
                    "the mappings have {} problem(s):\n{}",
                    problems.len(),
                    lines.join("\n")
                )
            })?;
        std::fs::create_dir_all(&config.data_dir)?;
        let store = Store::open(&config.data_dir)?;
        let journal = Arc::new(Journal::open(
            store,
            config.ingest.dedupe_window_secs,
            config.store.journal_segment_bytes,
        )?);
        let (ingest, warnings) = Ingest::new(config, origin, secrets, journal.clone())?;
        let app = App {
            journal,
            ingest: Arc::new(ingest),
            mappings: Arc::new(mappings),
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
        let result = axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await;
        Ok(result?)
    }
}

/// Ready when the store can still write and fsync.
async fn readyz(State(journal): State<Arc<Journal>>) -> (StatusCode, &'static str) {
    match journal.probe().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(error) => {
            tracing::error!(error = %error, "store is not writable");
            (StatusCode::SERVICE_UNAVAILABLE, "store not writable")
        }
    }
}
