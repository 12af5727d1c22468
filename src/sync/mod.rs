//! The delivery engine: the router turns journaled events into jobs, workers deliver them.
//!
//! `ingest → journal → router → queue ← workers → {mapping, adapters, records}`. This module is
//! the one place that combines the queue, the mappings and the adapters.
//!
//! - `router`   journal → jobs (one per flow that handles the event), with the cursor
//! - `process`  one attempt as typed stages (prepare → resolve → map → send → record) ending in one
//!   `Outcome`, settled once
//! - `upkeep`   snapshots and space: the queue's segments and the journal's retention
//! - `breaker`  the per-connector circuit breaker
//! - `changed`  a newer version of a record already created that the target would not change:
//!   held as `order_changed` with what differs
//! - `poll`     status pollers (Tryton): changed orders → `order_status.changed` events in the journal
//! - `products` product sync from an ERP that masters products: changed products →
//!   `product.changed` events in the journal
//! - `reconcile` compares a flow's source and target records with what handoff delivered, sorts
//!   them into drift classes and repairs the safe ones through the journal
//! - `status`, `version`, `echo`  the small rules process applies
//!
//! # Invariants
//!
//! - Each connector has its own workers (`concurrency`), breaker and pause switch: one broken
//!   connector never stalls another.
//! - A failure's class decides its fate (adapters classify): transient, in-doubt and rate-limited
//!   retry on the connector's schedule; fix-data is a dead letter at once; fix-config is a dead
//!   letter and pauses the connector until an operator resumes it.
//! - The service runs the engine's tasks on a runtime of their own ([`runtime`], niceness
//!   `sync.engine_nice`), so webhook acks are never queued behind mapping and delivery work on
//!   the same threads.
//! - Shutdown stops leasing, lets deliveries in flight finish within the grace period, and
//!   flushes the store, marking the close clean only when nothing was cut off; after an unclean
//!   stop every open job comes back in doubt.

pub mod backfill;
mod breaker;
mod changed;
mod echo;
pub mod poll;
pub mod process;
pub mod products;
pub mod reconcile;
pub mod router;
pub mod status;
mod upkeep;
mod version;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::adapters::Adapter;
use crate::adapters::connector::{Connector, Role};
use crate::config::SyncConfig;
use crate::journal::{Events, Journal};
use crate::mapping::Mapping;
use crate::mapping::live::LiveMappings;
use crate::queue::retry::RetryPolicy;
use crate::queue::{Queue, Reason};
pub use breaker::{Admit, Breaker};

/// A connector at run time: its adapter, breaker and pause switch.
pub struct Live {
    pub connector: Connector,
    breaker: Mutex<Breaker>,
    paused: Mutex<Option<String>>,
    /// Signalled on resume and when a probe's result is in.
    changed: Notify,
    /// The last failed delivery: when (ms) and why.
    last_error: Mutex<Option<(i64, String)>>,
    /// The status poller's last success (ms) and last error, when the connector has one.
    polled: Mutex<(Option<i64>, Option<String>)>,
    /// Orders the poller saw that handoff neither created nor linked (never written back).
    not_ours: Mutex<NotOurs>,
}

/// Orders not ours: how many distinct ones were seen, and the newest few ids.
#[derive(Debug, Default)]
struct NotOurs {
    seen: std::collections::HashSet<String>,
    count: u64,
    newest: std::collections::VecDeque<String>,
}

/// Distinct "not ours" order ids remembered, at most (beyond it each sighting counts).
const NOT_OURS_KEPT: usize = 100_000;

impl Live {
    pub fn new(connector: Connector) -> Live {
        Live {
            breaker: Mutex::new(Breaker::new(connector.breaker.clone())),
            connector,
            paused: Mutex::new(None),
            changed: Notify::new(),
            last_error: Mutex::new(None),
            polled: Mutex::new((None, None)),
            not_ours: Mutex::new(NotOurs::default()),
        }
    }

    pub fn name(&self) -> &str {
        &self.connector.name
    }

    pub fn adapter(&self) -> &dyn Adapter {
        self.connector.adapter.as_ref()
    }

    pub fn retry(&self) -> &RetryPolicy {
        &self.connector.retry
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether deliveries through this flow write to a CRM (they are watched for echoes).
    pub fn writes_to_crm(&self, _mapping: &Mapping) -> bool {
        self.connector.role == Role::Crm
    }

    /// The target answered: a probe that succeeds closes the circuit. Returns true when it
    /// did (the caller releases the connector's retrying jobs).
    pub fn success(&self) -> bool {
        let closed = self.breaker().success();
        if closed {
            tracing::info!(
                connector = self.name(),
                "circuit closed: the connector answers again"
            );
            self.changed.notify_waiters();
        }
        closed
    }

    /// A transient failure; `probe` says whether it answered the circuit's probe.
    pub fn transient_failure(&self, now: i64, probe: bool) {
        if self.breaker().failure(now, probe) {
            tracing::warn!(
                connector = self.name(),
                "circuit open: deliveries pause, then one probes"
            );
        }
        self.changed.notify_waiters();
    }

    /// A rate-limit answer: the whole connector waits; returns until when.
    pub fn rate_limited(&self, now: i64, asked: Option<Duration>) -> i64 {
        let asked = asked.map(|wait| {
            let wait = self.connector.retry.retry_after(wait);
            i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 4)
        });
        let until = self.breaker().rate_limited(now, asked);
        tracing::warn!(
            connector = self.name(),
            wait_ms = until - now,
            "rate limited: the connector waits, then restarts with one request"
        );
        self.changed.notify_waiters();
        until
    }

    /// The probe's job ended without an answer from the target: another job probes.
    pub fn probe_done(&self, now: i64) {
        self.breaker().probe_done(now);
        self.changed.notify_waiters();
    }

    pub fn pause(&self, reason: String) {
        tracing::warn!(connector = self.name(), reason = %reason, "connector paused");
        *self.paused.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
        self.changed.notify_waiters();
    }

    pub fn resume(&self) {
        *self.paused.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.breaker().success();
        self.changed.notify_waiters();
    }

    pub fn paused(&self) -> Option<String> {
        self.paused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// What operators see of it.
    pub fn note_error(&self, at_ms: i64, message: &str) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((at_ms, crate::adapters::cut(message, 300)));
    }

    /// Records a poll's outcome: `Ok` at `now_ms`, or its error.
    pub fn note_poll(&self, now_ms: i64, result: Result<(), String>) {
        let mut polled = self.polled.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(()) => *polled = (Some(now_ms), None),
            Err(error) => polled.1 = Some(error),
        }
    }

    /// Counts orders the poller saw that are not handoff's.
    pub fn note_not_ours<'a>(&self, orders: impl Iterator<Item = &'a str>) {
        let mut not_ours = self.not_ours.lock().unwrap_or_else(|p| p.into_inner());
        for order in orders {
            let full = not_ours.seen.len() >= NOT_OURS_KEPT;
            if full || not_ours.seen.insert(order.to_owned()) {
                not_ours.count += 1;
                not_ours.newest.push_back(order.to_owned());
                if not_ours.newest.len() > 10 {
                    not_ours.newest.pop_front();
                }
            }
        }
    }

    pub fn status(&self) -> ConnectorStatus {
        let last_error = self
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .map(|(at_ms, message)| LastError { at_ms, message });
        let poller = self.connector.poller.as_ref().map(|poller| {
            let (last_ok_ms, last_error) = self
                .polled
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let not_ours = self.not_ours.lock().unwrap_or_else(|p| p.into_inner());
            PollerStatus {
                every_secs: poller.every().as_secs(),
                last_ok_ms,
                last_error,
                not_ours: not_ours.count,
                not_ours_newest: not_ours.newest.iter().cloned().collect(),
            }
        });
        ConnectorStatus {
            last_error,
            poller,
            name: self.name().to_owned(),
            kind: self.adapter().kind(),
            role: self.connector.role,
            description: self.connector.description.clone(),
            sandbox: self.connector.sandbox.is_some(),
            concurrency: self.connector.concurrency,
            circuit: self.breaker().describe(),
            paused: self.paused(),
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConnectorStatus {
    pub name: String,
    #[schema(value_type = String)]
    pub kind: &'static str,
    pub role: Role,
    pub description: String,
    pub sandbox: bool,
    pub concurrency: usize,
    /// `closed`, `open` or `half_open`.
    #[schema(value_type = String)]
    pub circuit: &'static str,
    pub paused: Option<String>,
    pub last_error: Option<LastError>,
    pub poller: Option<PollerStatus>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LastError {
    pub at_ms: i64,
    pub message: String,
}

/// A status poller's health: its lag is now minus `last_ok_ms`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PollerStatus {
    pub every_secs: u64,
    pub last_ok_ms: Option<i64>,
    pub last_error: Option<String>,
    /// Orders seen that handoff neither created nor linked: never written back.
    pub not_ours: u64,
    /// Their ids in the ERP, newest last (up to ten).
    pub not_ours_newest: Vec<String>,
}

/// Where the engine's events and jobs live, for the background work each store needs.
pub enum Backend {
    /// The data dir: the journal's router and the upkeep of its segments.
    Embedded(Arc<Journal>),
    /// The shared PostgreSQL: leases, the router role, wake-ups, history by partition.
    Postgres(Arc<crate::postgres::instance::Instance>),
}

impl Backend {
    pub fn events(&self) -> Arc<dyn Events> {
        match self {
            Backend::Embedded(journal) => journal.clone(),
            Backend::Postgres(instance) => instance.events.clone(),
        }
    }
}

pub struct Engine {
    pub journal: Arc<dyn Events>,
    backend: Backend,
    pub queue: Arc<dyn Queue>,
    pub mappings: Arc<LiveMappings>,
    pub connectors: BTreeMap<String, Arc<Live>>,
    pub config: SyncConfig,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// How long the journal keeps events (upkeep.rs).
    journal_retention_secs: u64,
    stop: watch::Sender<bool>,
    /// The last product backfill of each connector (backfill.rs).
    pub backfills: backfill::Runs,
}

impl Engine {
    pub fn new(
        backend: Backend,
        queue: Arc<dyn Queue>,
        mappings: Arc<LiveMappings>,
        connectors: Vec<Connector>,
        config: SyncConfig,
        journal_retention_secs: u64,
    ) -> Arc<Engine> {
        let connectors = connectors
            .into_iter()
            .map(|c| (c.name.clone(), Arc::new(Live::new(c))))
            .collect();
        Arc::new(Engine {
            journal: backend.events(),
            backend,
            queue,
            mappings,
            connectors,
            config,
            metrics: Arc::default(),
            journal_retention_secs,
            stop: watch::channel(false).0,
            backfills: backfill::Runs::default(),
        })
    }

    /// Starts the router, the timers and every connector's workers.
    pub fn spawn(self: &Arc<Self>) -> Workers {
        self.spawn_on(&tokio::runtime::Handle::current())
    }

    /// Starts the engine's tasks on `runtime` (the service gives the engine a runtime of its
    /// own, see [`runtime`]).
    pub fn spawn_on(self: &Arc<Self>, runtime: &tokio::runtime::Handle) -> Workers {
        let mut background = JoinSet::new();
        match &self.backend {
            Backend::Embedded(journal) => {
                background.spawn_on(
                    router::run(journal.clone(), self.queue.clone(), self.mappings.clone()),
                    runtime,
                );
                background.spawn_on(
                    upkeep::run(
                        journal.clone(),
                        self.queue.clone(),
                        self.journal_retention_secs,
                    ),
                    runtime,
                );
            }
            Backend::Postgres(instance) => {
                instance.spawn(self.mappings.clone(), runtime, &mut background)
            }
        }
        let queue = self.queue.clone();
        background.spawn_on(
            async move {
                queue
                    .run_timers(|job| {
                        let (kind, id) = job.waits_for.clone().unwrap_or_default();
                        Reason::new(
                            "dependency_timeout",
                            format!(
                                "{kind} {id} never arrived in {}; sync it, then retry",
                                job.connector
                            ),
                        )
                    })
                    .await;
            },
            runtime,
        );
        for live in self.connectors.values() {
            if let Some(source) = live
                .connector
                .products
                .as_ref()
                .filter(|s| !s.every().is_zero())
            {
                background.spawn_on(
                    products::run(
                        self.clone(),
                        live.name().to_owned(),
                        source.clone(),
                        self.stop.subscribe(),
                    ),
                    runtime,
                );
            }
            if let Some(poller) = &live.connector.poller {
                background.spawn_on(
                    poll::run(
                        self.clone(),
                        live.name().to_owned(),
                        poller.clone(),
                        self.stop.subscribe(),
                    ),
                    runtime,
                );
            }
        }
        let engine = self.clone();
        runtime.spawn(async move { reconcile::resume(&engine) });
        let mut workers = JoinSet::new();
        for live in self.connectors.values() {
            for _ in 0..live.connector.concurrency {
                workers.spawn_on(
                    worker(self.clone(), live.clone(), self.stop.subscribe()),
                    runtime,
                );
            }
        }
        Workers {
            background,
            workers,
        }
    }

    /// Stops leasing, waits for deliveries in flight (up to the grace period), flushes the store.
    pub async fn shutdown(&self, mut running: Workers) {
        let _ = self.stop.send(true);
        running.background.abort_all();
        // Wait until they have stopped: the router may be writing a batch on another thread.
        while running.background.join_next().await.is_some() {}
        let grace = Duration::from_secs(self.config.shutdown_grace_secs);
        let drained = tokio::time::timeout(grace, async {
            while running.workers.join_next().await.is_some() {}
        })
        .await;
        let closed = if drained.is_err() {
            tracing::warn!(
                "deliveries still in flight after the grace period; they come back in doubt"
            );
            running.workers.abort_all();
            self.queue.flush()
        } else {
            self.queue.close_clean()
        };
        if let Err(error) = closed {
            tracing::error!(error = %error, "flushing the queue failed");
        }
    }

    /// The embedded journal, when the engine runs on the data dir.
    pub fn embedded_journal(&self) -> Option<&Arc<Journal>> {
        match &self.backend {
            Backend::Embedded(journal) => Some(journal),
            Backend::Postgres(_) => None,
        }
    }

    pub fn connector(&self, name: &str) -> Option<&Arc<Live>> {
        self.connectors.get(name)
    }
}

pub struct Workers {
    background: JoinSet<()>,
    workers: JoinSet<()>,
}

/// One worker of one connector: waits while the connector is paused or its circuit is open,
/// leases the next job and processes it.
async fn worker(engine: Arc<Engine>, live: Arc<Live>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let changed = live.changed.notified();
        if live.paused().is_some() {
            tokio::select! {
                () = changed => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let now = engine.queue.clock().now_ms();
        let admit = live.breaker().admit(now);
        match admit {
            Admit::Go => {}
            Admit::Probe => {
                // The retrying jobs wait for their own time; one of them probes now.
                if let Err(error) = engine.queue.release_retrying(live.name(), 1) {
                    tracing::error!(connector = live.name(), error = %error, "could not release a job to probe");
                }
            }
            Admit::WaitUntil(until) => {
                tokio::select! {
                    () = tokio::time::sleep(engine.queue.clock().until(until)) => {}
                    () = changed => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            Admit::WaitForProbe => {
                tokio::select! {
                    () = changed => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
        }
        let probe = admit == Admit::Probe;
        // A pause or an opening circuit wakes a waiting worker before it takes a job (a probe
        // waits for a job: nothing else may go before it).
        let job = match probe {
            true => tokio::select! {
                job = engine.queue.lease(live.name()) => job,
                _ = stop.changed() => {
                    live.probe_done(now);
                    return;
                }
            },
            false => tokio::select! {
                job = engine.queue.lease(live.name()) => job,
                () = changed => continue,
                _ = stop.changed() => return,
            },
        };
        let result = match job {
            Ok(job) => process::process(&engine, &live, job, probe).await,
            Err(error) => Err(error),
        };
        if probe {
            live.probe_done(engine.queue.clock().now_ms());
        }
        match result {
            Ok(()) => {}
            Err(error @ crate::queue::QueueError::Fenced(_)) => {
                tracing::warn!(connector = live.name(), error = %error, "settle refused")
            }
            Err(error) => {
                tracing::error!(connector = live.name(), error = %error, "the queue cannot write; pausing 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Whether this instance does the work one instance does at a time (an ERP's poller) for
/// the next rounds of `every`: always with the embedded store; on PostgreSQL while it holds
/// the role (another instance takes it over once it lapses).
fn holds_role(engine: &Engine, role: &str, every: Duration) -> bool {
    let lease = every * 3 + Duration::from_secs(10);
    match engine.queue.claim(role, lease) {
        Ok(held) => held,
        Err(error) => {
            tracing::warn!(role, error = %error, "could not claim the role; skipping this round");
            false
        }
    }
}

/// A runtime for the engine whose threads run at niceness `nice`, so that under a CPU shortage
/// the scheduler gives ingest (acks) the larger share; the queue is durable, so deliveries only
/// wait. Linux sets niceness per thread.
pub fn runtime(nice: i32) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name("handoff-engine")
        .on_thread_start(move || {
            // SAFETY: setpriority has no memory effects; `0` names the calling thread.
            if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } != 0 {
                tracing::warn!(nice, "could not lower the engine threads' priority");
            }
        })
        .enable_all()
        .build()
}

#[cfg(test)]
mod runtime_tests {
    #[test]
    fn the_engine_runtime_threads_run_at_the_configured_niceness() {
        let before = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let runtime = super::runtime(7).unwrap();
        let own = runtime
            .block_on(async {
                tokio::spawn(async { unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) } }).await
            })
            .unwrap();
        assert_eq!(own, 7);
        // Only the engine's threads: this one keeps its priority.
        assert_eq!(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }, before);
    }
}
