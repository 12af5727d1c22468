//! The job queue: one typed interface, [`Queue`], that the router, the workers, the pollers and
//! the dashboard use, and the embedded backend that implements it (`embedded/`: the queue log
//! beside the journal, and small sled indexes). A second backend (PostgreSQL) implements the same
//! trait; nothing above this module knows which one runs.
//!
//! # Guarantees every backend keeps
//!
//! - A job refers to its journal record; the event is not copied into the queue (an operator's
//!   edited payload is a record of its own).
//! - Routing a slice of the journal stores its jobs and the router's cursor together: after a
//!   crash either both are there or the slice is routed again.
//! - Per ordering key, one job at a time, in arrival order (lines.rs).
//! - A settle stores the job's new state, its attempt and its effects (cross-reference,
//!   version, status, echo record); a crash may lose the last moments of settles, and then the
//!   jobs run again under the same idempotency key, in doubt.
//! - After a crash every job that may have been in flight comes back in doubt: the adapter
//!   checks before creating again. A clean close leaves nothing in doubt.
//! - Retry due times, holds and parking deadlines are stored with the state change.
//!
//! # Layout
//!
//! - `job`      the job, its states, reasons, attempts
//! - `records`  cross-references, applied versions, echo records: what a settle leaves behind
//! - `lines`    the in-memory schedule (per-key lines, timers, counts)
//! - `retry`    the retry policy
//! - `actions`  what an operator's retry, skip, accept or resubmit does to a job
//! - `embedded` the default backend (queue log + snapshot + sled indexes)

pub mod actions;
pub mod embedded;
pub mod job;
mod lines;
pub mod records;
pub mod retry;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::journal::Position;
pub use embedded::Embedded;
pub use job::{Attempt, Job, JobId, Reason, State};
pub use lines::Entry;
use records::{Applied, Echo, Effect, Xref};

#[derive(Debug, Error)]
pub enum QueueError {
    #[error("queue storage failed: {0}")]
    Store(#[from] sled::Error),
    #[error("queue log failed: {0}")]
    Log(#[from] std::io::Error),
    #[error("queue record {0} is unreadable")]
    Corrupt(String),
    #[error("no job {0}")]
    NotFound(JobId),
    #[error("the shared store failed: {0}")]
    Shared(String),
    #[error(
        "job {0}'s partition moved to another instance: its settle is refused, the new owner \
         runs it again under the same idempotency key"
    )]
    Fenced(JobId),
    #[error("job {id} is {state}; {action} needs a {needs} job")]
    WrongState {
        id: JobId,
        state: &'static str,
        action: &'static str,
        needs: &'static str,
    },
}

/// Where the router is in the journal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub next_seq: u64,
    pub at: Option<Position>,
}

/// What an operator can do to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Retry,
    Skip,
    /// A held job runs again with the target's own figures accepted (`amount_mismatch`).
    Accept,
}

/// How a leased job's attempt ended, to be stored.
#[derive(Clone)]
pub struct Settle {
    /// The job in its new state (reason, due time, dependency, id in the target).
    pub job: Job,
    pub attempt: Option<Attempt>,
    pub effects: Vec<Effect>,
    /// (kind, CRM id) that now exist in the target: jobs parked on them run again.
    pub releases: Vec<(String, String)>,
}

/// Which jobs a listing walks through.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Every job the queue still knows, newest first, back to `since_ms`.
    All { since_ms: Option<i64> },
    /// The jobs the schedule holds in this state (open ones and dead letters).
    State(State),
    /// The jobs of one record (CRM id, order key or id in the target), by the record index.
    Record(&'a str),
}

/// One page of a listing.
#[derive(Debug, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Page {
    pub jobs: Vec<Job>,
    /// Pass as `before` for the next page; none when the listing is complete.
    pub next_before: Option<JobId>,
}

/// One instance sharing the store (the PostgreSQL backend), as the dashboard shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Member {
    pub name: String,
    /// The instance answering this request.
    pub this_instance: bool,
    /// Until when it counts as alive without renewing.
    pub alive_until_ms: i64,
    /// The partitions it holds now.
    pub partitions: Vec<i16>,
    /// Jobs its workers have leased now.
    pub leased: u64,
}

/// Jobs one listing page looks at, at most.
pub const SCAN_BUDGET: usize = 10_000;

/// A read of the delivery path, as a future (see [`Queue::fetch_xref`]).
pub type Fetch<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, QueueError>> + Send + 'a>>;

/// The storage seam: every operation of the queue. Implementations keep the guarantees in the
/// module doc.
pub trait Queue: Send + Sync {
    fn clock(&self) -> &Clock;

    // The router.
    /// Where the router goes on in the journal.
    fn cursor(&self) -> Result<Cursor, QueueError>;
    /// Stores new jobs with the router's cursor; the queue numbers them (their `id` is
    /// ignored) and returns their ids.
    fn enqueue(&self, jobs: Vec<Job>, cursor: Cursor) -> Result<Vec<JobId>, QueueError>;

    // The workers.
    /// The next runnable job of `connector`, leased, if there is one.
    fn try_lease(&self, connector: &str) -> Result<Option<Job>, QueueError>;
    /// Signalled when `connector` may have a runnable job.
    fn wake_of(&self, connector: &str) -> Arc<Notify>;
    /// Stores how a leased job's attempt ended; releases the jobs parked on `releases`. A job
    /// delivered (`Done`) supersedes its record's older dead letters of the same flow.
    fn settle(&self, settle: Settle) -> Result<(), QueueError>;
    /// Acts on timers that are due (retries, hold rechecks, parking deadlines); returns when
    /// the next one is due. `parked_gave_up` says why a parked job became a dead letter.
    fn fire_timers(
        &self,
        parked_gave_up: &dyn Fn(&Job) -> Reason,
    ) -> Result<Option<i64>, QueueError>;
    /// Signalled when an earlier timer was set.
    fn timers_changed(&self) -> &Notify;

    // What sync remembers (stored by `settle`'s effects).
    fn xref(&self, system: &str, kind: &str, crm_id: &str) -> Result<Option<Xref>, QueueError>;
    fn xrefs(&self, filter: &str, limit: usize) -> Result<Vec<Xref>, QueueError>;
    /// An operator links a CRM record to a record in a target (durable when it returns): its
    /// status then flows back as if handoff had created it.
    fn link(&self, xref: Xref) -> Result<(), QueueError>;
    fn applied(&self, flow: &str, record: &str) -> Result<Option<Applied>, QueueError>;
    fn status(&self, order: &str) -> Result<Option<String>, QueueError>;
    fn echo(&self, record: &str) -> Result<Option<Echo>, QueueError>;
    // The same reads for the delivery path, as futures: a backend that asks a server does not
    // hold a thread while it waits; the embedded one answers at once.
    fn fetch_xref<'a>(
        &'a self,
        system: &'a str,
        kind: &'a str,
        crm_id: &'a str,
    ) -> Fetch<'a, Option<Xref>> {
        Box::pin(std::future::ready(self.xref(system, kind, crm_id)))
    }
    fn fetch_applied<'a>(&'a self, flow: &'a str, record: &'a str) -> Fetch<'a, Option<Applied>> {
        Box::pin(std::future::ready(self.applied(flow, record)))
    }
    fn fetch_status<'a>(&'a self, order: &'a str) -> Fetch<'a, Option<String>> {
        Box::pin(std::future::ready(self.status(order)))
    }
    fn fetch_echo<'a>(&'a self, record: &'a str) -> Fetch<'a, Option<Echo>> {
        Box::pin(std::future::ready(self.echo(record)))
    }
    /// A status poller's cursor, and how many milestones of `order` it emitted.
    fn poll_cursor(&self, connector: &str) -> Result<Option<Value>, QueueError>;
    fn poll_emitted(&self, connector: &str, order: &str) -> Result<u64, QueueError>;
    fn save_poll(
        &self,
        connector: &str,
        cursor: Option<&Value>,
        emitted: &[(String, u64)],
    ) -> Result<(), QueueError>;

    /// Takes or keeps `role` (work one instance does at a time, such as polling one ERP) for
    /// `lease`; false while another instance holds it. A single process always holds it.
    fn claim(&self, _role: &str, _lease: std::time::Duration) -> Result<bool, QueueError> {
        Ok(true)
    }

    // Reconciliation runs (JSON, by id: what `sync::reconcile` keeps of a run).
    /// Stores a run, durably when it returns.
    fn save_run(&self, id: u64, run: &Value) -> Result<(), QueueError>;
    fn run(&self, id: u64) -> Result<Option<Value>, QueueError>;
    /// The newest `limit` runs, newest first.
    fn runs(&self, limit: usize) -> Result<Vec<Value>, QueueError>;

    // Operators.
    /// Retry runs a dead, parked, held or retrying job now; skip settles it; accept runs a
    /// held job again, accepting the target's own figures.
    fn act(&self, id: JobId, action: Action) -> Result<Job, QueueError>;
    /// Settles the dead letters of `flow` and `record` older than job `by` (which delivered a
    /// later version) as skipped, `superseded`; returns how many.
    fn supersede(&self, flow: &str, record: &str, by: JobId) -> Result<usize, QueueError>;
    /// Makes up to `limit` retrying jobs of `connector` runnable now, oldest first (its target
    /// answers again, or an operator said "retry now"); returns how many.
    fn release_retrying(&self, connector: &str, limit: usize) -> Result<usize, QueueError>;
    /// Makes the jobs parked on any of `on` (kind, id) runnable: what they wait for arrived
    /// without a delivery of handoff's (a product the ERP's product sync saw); returns how many.
    fn release_parked(&self, on: &[(String, String)]) -> Result<usize, QueueError>;
    /// Edit-and-resubmit: the job runs again on `payload` (or on the data it has), re-mapped,
    /// under a new idempotency key.
    fn resubmit(&self, id: JobId, payload: Option<Value>) -> Result<Job, QueueError>;

    // Listings.
    /// A job as stored, with its state `leased` while a worker has it, and its edited payload.
    fn get(&self, id: JobId) -> Result<Job, QueueError>;
    /// Its attempts, oldest first (as many as the queue still holds).
    fn attempts(&self, id: JobId) -> Result<Vec<Attempt>, QueueError>;
    /// Jobs newest first below `before`, within `scope`, that `keep` accepts; a page looks at
    /// [`SCAN_BUDGET`] jobs at most.
    fn list(
        &self,
        scope: Scope<'_>,
        before: Option<JobId>,
        limit: usize,
        keep: &dyn Fn(&Job) -> bool,
    ) -> Result<Page, QueueError>;
    /// Ids of the jobs the schedule holds in `state` (open states and dead letters).
    fn ids_in(&self, state: State) -> Vec<JobId>;
    /// Jobs in `state` by reason code: the count and up to `keep` newest ids.
    fn groups(&self, state: State, keep: usize) -> BTreeMap<String, (u64, Vec<JobId>)>;
    /// The schedule entry of an open or dead job.
    fn entry(&self, id: JobId) -> Option<Entry>;
    /// Open and dead jobs per (connector, state).
    fn counts(&self) -> HashMap<(Arc<str>, State), u64>;
    fn oldest_open(&self) -> Option<JobId>;
    /// The instances sharing the store and what each holds (none for a single process).
    fn members(&self) -> Vec<Member> {
        Vec::new()
    }

    // Upkeep.
    /// Writes what recovery needs (a snapshot) and gives back space nothing needs any more;
    /// `below_seq` is the first journal record the journal keeps after its next trim: events
    /// of open jobs below it are copied into the queue first. Returns the journal seq the
    /// queue still needs (the journal may drop records before it).
    fn upkeep(
        &self,
        below_seq: u64,
        read_event: &dyn Fn(&Job) -> Option<Value>,
    ) -> Result<u64, QueueError>;
    /// Marks a clean shutdown: call it last, when no job is leased.
    fn close_clean(&self) -> Result<(), QueueError>;
    /// Makes everything stored so far durable (a shutdown that could not finish cleanly).
    fn flush(&self) -> Result<(), QueueError>;
}

impl dyn Queue {
    /// Waits for the next runnable job of `connector` and leases it.
    pub async fn lease(&self, connector: &str) -> Result<Job, QueueError> {
        let wake = self.wake_of(connector);
        loop {
            let notified = wake.notified();
            if let Some(job) = self.try_lease(connector)? {
                return Ok(job);
            }
            notified.await;
        }
    }

    /// Runs forever: fires timers (retry due, hold recheck, parking deadline).
    pub async fn run_timers(&self, parked_gave_up: impl Fn(&Job) -> Reason) {
        loop {
            let notified = self.timers_changed().notified();
            let next = match self.fire_timers(&parked_gave_up) {
                Ok(next) => next,
                Err(error) => {
                    tracing::error!(error = %error, "queue timers failed");
                    Some(self.clock().now_ms() + 1000)
                }
            };
            let wait = next.map_or(std::time::Duration::from_secs(3600), |at| {
                self.clock().until(at)
            });
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = notified => {}
            }
        }
    }

    /// Wakes the workers of `connector` (after a pause ends).
    pub fn wake(&self, connector: &str) {
        self.wake_of(connector).notify_waiters();
    }
}

/// Runs `work` to its end from synchronous code. On a multi-threaded runtime the calling
/// thread's other tasks move to the other threads while it waits; elsewhere (a test's
/// single-threaded runtime, no runtime) it runs on a thread of its own.
pub fn block_on<T: Send>(work: impl Future<Output = T> + Send) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(work))
        }
        _ => std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime for one call")
                        .block_on(work)
                })
                .join()
                .expect("the call does not panic")
        }),
    }
}

pub fn entry_of(job: &Job) -> Entry {
    Entry {
        key: Arc::from(job.order_key.as_str()),
        connector: Arc::from(job.connector.as_str()),
        state: job.state,
        due: job.due_ms,
        waits_for: job.waits_for.clone().map(Box::new),
        reason: job.reason.as_ref().map(|r| r.code.as_str().into()),
        in_doubt: job.in_doubt,
        at: lines::Locs::default(),
    }
}
