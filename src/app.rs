//! Wiring only: compile mappings → open the store → start the journal → open the queue → build
//! the connectors → compile sources → serve, with the delivery engine and the mapping watcher
//! (SIGHUP or a change on disk reloads them) beside the server.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::adapters::connector;
use crate::clock::Clock;
use crate::config::{Config, Origin, SecretLookup};
use crate::ingest::{self, Ingest};
use crate::journal::{Events, Journal};
use crate::mapping::live::LiveMappings;
use crate::queue::{Embedded, Queue};
use crate::store::Store;
use crate::sync::{Backend, Engine};

/// The running service's parts.
#[derive(Clone)]
pub struct App {
    pub journal: Arc<dyn Events>,
    pub ingest: Arc<Ingest>,
    /// The mappings in force.
    pub mappings: Arc<LiveMappings>,
    pub engine: Arc<Engine>,
    /// Who may use the dashboard and the API.
    pub auth: Arc<crate::dashboard::auth::Auth>,
    /// Limits on HTTP clients.
    pub http: crate::config::HttpConfig,
    /// Where the outcome counts are kept across restarts.
    pub data_dir: std::path::PathBuf,
}

impl App {
    /// Opens the store and compiles the sources; returns start-up warnings to log.
    pub fn build(
        config: &Config,
        origin: &Origin,
        secrets: &SecretLookup,
    ) -> anyhow::Result<(App, Vec<String>)> {
        let mappings = LiveMappings::load(&config.mappings_dir, &config.schemas_dir)
            .map_err(|problems| problems_error("mappings", &problems))?;
        std::fs::create_dir_all(&config.data_dir)?;
        let (connectors, queue, backend) = match config.store.backend {
            crate::config::Backend::Embedded => open_embedded(config, secrets, &mappings)?,
            crate::config::Backend::Postgres => open_postgres(config, secrets, &mappings)?,
        };
        // Loading a large schedule and dedupe index leaves freed blocks behind (half-full
        // nodes, the files read whole): hand them back to the OS before serving.
        // SAFETY: mi_collect only frees memory no live allocation uses.
        unsafe { libmimalloc_sys::mi_collect(true) };
        tracing::info!(rss_mib = resident_mib(), "loaded");
        let mappings = Arc::new(mappings);
        let journal = backend.events();
        let engine = Engine::new(
            backend,
            queue,
            mappings.clone(),
            connectors,
            config.sync.clone(),
            config
                .store
                .journal_retention_secs
                .max(config.ingest.dedupe_window_secs),
        );
        let live = mappings.clone();
        let interest = Arc::new(move |source: &str, event_type: &str| {
            live.current()
                .mappings
                .iter()
                .any(|m| m.event == event_type && m.source.as_deref().is_none_or(|s| s == source))
        });
        let (mut ingest, warnings) =
            Ingest::new(config, origin, secrets, journal.clone(), interest)?;
        ingest.metrics = engine.metrics.clone();
        let auth = crate::dashboard::auth::Auth::new(&config.dashboard, secrets)?;
        let mut warnings = warnings;
        if auth.is_open() && !config.listen.ip().is_loopback() {
            if !config.dashboard.open_access {
                anyhow::bail!(
                    "listen = {} is not a loopback address and [dashboard] has no users or tokens: \
                     anyone who reaches it could act on jobs and connectors. Add [[dashboard.users]] \
                     or [[dashboard.tokens]], listen on 127.0.0.1, or set [dashboard] open_access = true \
                     if your own access control stands in front",
                    config.listen
                );
            }
            warnings.push(format!(
                "the dashboard and the API are open to anyone who reaches {} (open_access = true)",
                config.listen
            ));
        }
        let app = App {
            journal,
            ingest: Arc::new(ingest),
            mappings,
            engine,
            auth: Arc::new(auth),
            http: config.http.clone(),
            data_dir: config.data_dir.clone(),
        };
        app.engine.metrics.resume(
            crate::metrics::Totals::load(&config.data_dir),
            chrono::Utc::now().timestamp_millis(),
        );
        Ok((app, warnings))
    }

    pub fn router(&self) -> Router {
        let hooks = Router::new()
            .route("/hooks/{source}", post(ingest::receive))
            .with_state(self.ingest.clone());
        let health = crate::dashboard::health::router(self.journal.clone());
        let (api, openapi) =
            crate::dashboard::api::router(self.engine.clone(), self.mappings.clone());
        let openapi = Arc::new(openapi.to_json().expect("the API document serialises"));
        let ui = crate::dashboard::pages::Ui {
            engine: self.engine.clone(),
            auth: self.auth.clone(),
            mappings: self.mappings.clone(),
        };
        let guarded = api.merge(crate::dashboard::pages::router(ui)).route_layer(
            axum::middleware::from_fn_with_state(self.auth.clone(), crate::dashboard::auth::guard),
        );
        let open = Router::new()
            .route("/", get(|| async { axum::response::Redirect::to("/ui") }))
            .route(
                "/api/v1/openapi.json",
                get(move || async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        (*openapi).clone(),
                    )
                }),
            )
            .merge(crate::dashboard::prometheus::router(self.engine.clone()));
        hooks
            .merge(health)
            .merge(open)
            .merge(guarded)
            .layer(axum::middleware::from_fn(
                crate::dashboard::json_errors::api_errors,
            ))
    }

    /// Serves on `listener` until `shutdown` completes, then lets in-flight requests finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.serve_with_engine_on(listener, shutdown, &tokio::runtime::Handle::current())
            .await
    }

    /// Serves, with the engine's tasks on `engine` (in production a runtime of their own, see
    /// [`crate::sync::runtime`]).
    pub async fn serve_with_engine_on(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
        engine: &tokio::runtime::Handle,
    ) -> anyhow::Result<()> {
        let watcher = tokio::spawn(crate::mapping::live::watch(self.mappings.clone()));
        let workers = self.engine.spawn_on(engine);
        let totals = tokio::spawn(keep_totals(self.engine.clone(), self.data_dir.clone()));
        let result = crate::serve::serve(listener, self.router(), &self.http, shutdown).await;
        watcher.abort();
        self.engine.shutdown(workers).await;
        totals.abort();
        save_totals(&self.engine, &self.data_dir);
        Ok(result?)
    }
}

/// What the engine runs on: connectors, the queue and the backend.
type Opened = (Vec<connector::Connector>, Arc<dyn Queue>, Backend);

/// The data dir's journal, sled and queue log, opened side by side.
fn open_embedded(
    config: &Config,
    secrets: &SecretLookup,
    mappings: &LiveMappings,
) -> anyhow::Result<Opened> {
    // sled and the journal's dedupe index load side by side, and the schedule after sled:
    // at a million jobs each takes a while, and a restart should deliver again soon.
    std::thread::scope(|scope| {
        let journal = scope.spawn(|| {
            let started = std::time::Instant::now();
            let journal = Journal::open(
                &config.data_dir,
                config.ingest.dedupe_window_secs,
                config.store.journal_segment_bytes,
            )?;
            tracing::info!(
                ms = started.elapsed().as_millis() as u64,
                events = journal.len(),
                rss_mib = resident_mib(),
                "journal opened"
            );
            anyhow::Ok(journal)
        });
        let started = std::time::Instant::now();
        let store = Store::open(
            &config.data_dir,
            Some(config.store.flush_every_ms),
            config.store.cache_mib,
        )?;
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            rss_mib = resident_mib(),
            "store opened"
        );
        let connectors = load_connectors(config, secrets, mappings, Some(&store.db))?;
        let started = std::time::Instant::now();
        let options = crate::queue::embedded::Options {
            segment_bytes: config.store.queue_segment_bytes,
            ..Default::default()
        };
        let queue = Embedded::open(&store, Clock::new(), options)?;
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            jobs = queue.counts().values().sum::<u64>(),
            rss_mib = resident_mib(),
            "schedule loaded (open jobs and dead letters)"
        );
        let journal = journal.join().expect("the journal opener does not panic")?;
        let queue: Arc<dyn Queue> = Arc::new(queue);
        anyhow::Ok((connectors, queue, Backend::Embedded(Arc::new(journal))))
    })
}

/// The connectors (with their stored state when `store` is given), refused when a mapping
/// names one that does not exist.
fn load_connectors(
    config: &Config,
    secrets: &SecretLookup,
    mappings: &LiveMappings,
    store: Option<&sled::Db>,
) -> anyhow::Result<Vec<connector::Connector>> {
    let connectors = connector::load_dir(&config.connectors_dir, secrets, store)
        .map_err(|problems| problems_error("connectors", &problems))?;
    let unknown = crate::check::connector_problems(
        &mappings.current().mappings,
        &connectors,
        &config.connectors_dir,
    );
    if !unknown.is_empty() {
        return Err(problems_error("mappings", &unknown));
    }
    Ok(connectors)
}

/// The shared PostgreSQL: this instance joins the others (schema, partitions, roles).
fn open_postgres(
    config: &Config,
    secrets: &SecretLookup,
    mappings: &LiveMappings,
) -> anyhow::Result<Opened> {
    let mut connectors = load_connectors(config, secrets, mappings, None)?;
    if connectors.iter().any(|c| c.sandbox.is_some()) {
        // The sandbox connectors (the quick start's) are demonstrations, not shared state: each
        // instance keeps what its sandbox holds in its own data directory.
        let sandbox = sled::open(config.data_dir.join("sandbox"))?;
        connectors = load_connectors(config, secrets, mappings, Some(&sandbox))?;
    }
    let window = std::time::Duration::from_secs(config.ingest.dedupe_window_secs);
    let retention = std::time::Duration::from_secs(
        config
            .store
            .journal_retention_secs
            .max(config.ingest.dedupe_window_secs),
    );
    let instance = crate::postgres::instance::Instance::start(
        &config.store.postgres,
        secrets,
        window,
        retention,
    )?;
    let queue: Arc<dyn Queue> = instance.queue.clone();
    Ok((connectors, queue, Backend::Postgres(Arc::new(instance))))
}

/// Saves the outcome counts every few seconds, so the dashboard's counts survive a restart.
async fn keep_totals(engine: Arc<Engine>, dir: std::path::PathBuf) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        save_totals(&engine, &dir);
    }
}

fn save_totals(engine: &Engine, dir: &std::path::Path) {
    if let Err(error) = engine.metrics.totals().save(dir) {
        tracing::warn!(error = %error, "could not save the outcome counts");
    }
}

fn problems_error(what: &str, problems: &[crate::problem::Problem]) -> anyhow::Error {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    anyhow::anyhow!(
        "the {what} have {} problem(s):\n{}",
        problems.len(),
        lines.join("\n")
    )
}

/// The process's resident memory in MiB (from /proc; 0 where there is none), for start-up logs.
fn resident_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib / 1024)
}
