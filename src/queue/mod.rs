//! The durable job queue: jobs in the `queue` sled tree, scheduled by an in-memory index.
//!
//! # Invariants
//!
//! - Every change is one atomic sled batch: routing a slice of the journal writes its jobs and
//!   the router's cursor together, settling a job writes its state, its attempt and the sync
//!   effects (cross-reference, version, status) together. After a crash the tree is a
//!   consistent prefix of those batches, and the journal from the cursor on is routed again.
//! - sled is flushed on a timer (`[store] flush_every_ms`): what a crash loses of the queue is
//!   redone from the journal and re-delivered under the same idempotency keys.
//! - Per ordering key, one job at a time, in arrival order (lines.rs).
//! - A lease lives in memory only (no write per attempt). A clean shutdown, with nothing in
//!   flight, leaves a marker (`keys::CLEAN`); opening a store without it means the process died,
//!   and every job that may have been in flight (ready or retrying) comes back in doubt: the
//!   adapter checks before creating again.
//! - The marker carries the token of the schedule snapshot written just before it; the next
//!   open reads that file instead of scanning `o/` (snapshot.rs), and only then.
//!
//! Key layout: keys.rs. Schedule: lines.rs. Snapshot: snapshot.rs.

pub mod job;
pub mod keys;
mod lines;
pub mod retry;
mod snapshot;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::journal::Position;
use crate::store::Store;
pub use job::{Attempt, Class, Job, JobId, Reason, State};
pub use lines::Entry;
use lines::Lines;

#[derive(Debug, Error)]
pub enum QueueError {
    #[error("queue storage failed: {0}")]
    Store(#[from] sled::Error),
    #[error("queue record {0} is unreadable")]
    Corrupt(String),
    #[error("no job {0}")]
    NotFound(JobId),
    #[error("job {id} is {state}; {action} needs a {needs} job")]
    WrongState {
        id: JobId,
        state: &'static str,
        action: &'static str,
        needs: &'static str,
    },
}

/// Where the router is in the journal.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Cursor {
    pub next_seq: u64,
    pub at: Option<Position>,
}

/// An extra write to apply with a settle (cross-reference, version, status…).
pub struct Write {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// What an operator can do to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Retry,
    Skip,
}

pub struct Queue {
    tree: sled::Tree,
    /// The data directory, for the schedule's snapshot (snapshot.rs).
    dir: PathBuf,
    lines: Mutex<Lines>,
    wake: Mutex<HashMap<String, Arc<Notify>>>,
    /// Wakes the timer task when an earlier timer was set.
    timers_changed: Notify,
    next_id: AtomicU64,
    pub clock: Clock,
}

impl Queue {
    /// Opens the queue tree and rebuilds the schedule: from the snapshot a clean shutdown left,
    /// or else from the open entries in the tree.
    pub fn open(store: &Store, clock: Clock) -> Result<Queue, QueueError> {
        let tree = store.db.open_tree("queue")?;
        let next_id = match tree.get(keys::NEXT_ID)? {
            Some(raw) => u64::from_be_bytes(raw.as_ref().try_into().unwrap_or_default()),
            None => 1,
        };
        // The marker is removed (durably) before any work, so a crash from here on is unclean.
        let marker = tree.remove(keys::CLEAN)?;
        tree.flush()?;
        let token = marker
            .as_deref()
            .and_then(|raw| raw.try_into().ok())
            .map(u64::from_le_bytes);
        let mut lines = Lines::default();
        let now = clock.now_ms();
        let read = token.and_then(|token| {
            snapshot::read(&store.dir, token, |id, entry| lines.insert(id, entry, now))
        });
        snapshot::remove(&store.dir);
        if read.is_none() {
            lines = Lines::default();
            for item in tree.scan_prefix(keys::OPEN) {
                let (key, value) = item?;
                let mut entry: Entry = decode(&key, &value)?;
                let may_have_run =
                    matches!(entry.state, State::Ready | State::Retrying | State::Leased);
                entry.in_doubt |= marker.is_none() && may_have_run;
                lines.insert(keys::id_of(&key), entry, now);
            }
        }
        lines.compact();
        Ok(Queue {
            tree,
            dir: store.dir.clone(),
            lines: Mutex::new(lines),
            wake: Mutex::new(HashMap::new()),
            timers_changed: Notify::new(),
            next_id: AtomicU64::new(next_id),
            clock,
        })
    }

    pub fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    fn lines(&self) -> MutexGuard<'_, Lines> {
        self.lines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn cursor(&self) -> Result<Cursor, QueueError> {
        match self.tree.get(keys::CURSOR)? {
            Some(raw) => decode(keys::CURSOR, &raw),
            None => Ok(Cursor {
                next_seq: 1,
                at: None,
            }),
        }
    }

    /// Reserves `n` job ids.
    pub fn allocate_ids(&self, n: u64) -> JobId {
        self.next_id.fetch_add(n, Ordering::Relaxed)
    }

    /// Stores new jobs and the router's cursor in one batch, then schedules the jobs.
    pub fn enqueue(&self, jobs: Vec<Job>, cursor: Cursor) -> Result<(), QueueError> {
        let mut batch = sled::Batch::default();
        let mut entries = Vec::with_capacity(jobs.len());
        for job in &jobs {
            let entry = entry_of(job);
            batch.insert(keys::job(job.id), encode(job));
            batch.insert(keys::open(job.id), encode(&entry));
            for record in job.object_id.iter().chain(std::iter::once(&job.order_key)) {
                batch.insert(keys::record(record, job.id), &[]);
            }
            entries.push((job.id, entry));
        }
        batch.insert(keys::CURSOR, encode(&cursor));
        let next_id = self.next_id.load(Ordering::Relaxed);
        batch.insert(keys::NEXT_ID, &next_id.to_be_bytes());
        self.tree.apply_batch(batch)?;
        let now = self.clock.now_ms();
        let mut lines = self.lines();
        for (id, entry) in entries {
            lines.insert(id, entry, now);
        }
        drop(lines);
        self.wake_all();
        Ok(())
    }

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

    /// The next runnable job of `connector`, leased, if there is one. The lease is not written:
    /// the settle that ends it is (see the invariants above).
    pub fn try_lease(&self, connector: &str) -> Result<Option<Job>, QueueError> {
        let mut lines = self.lines();
        let Some((id, in_doubt)) = lines.pop_ready(connector) else {
            return Ok(None);
        };
        let more = lines.has_ready(connector);
        drop(lines);
        if more {
            // Pass the wake-up on: one worker per ready job, not every worker per change.
            self.wake_of(connector).notify_one();
        }
        let mut job = self.read(id)?;
        job.state = State::Leased;
        job.in_doubt |= in_doubt;
        job.due_ms = None;
        job.attempts += 1;
        job.updated_ms = self.clock.now_ms();
        Ok(Some(job))
    }

    /// Marks a clean shutdown: call it last, when no job is leased. The schedule is written
    /// beside the store so that the next open need not scan it (snapshot.rs).
    pub fn close_clean(&self) -> Result<(), QueueError> {
        let token = fastrand::u64(..);
        let lines = self.lines();
        if let Err(error) = snapshot::write(&self.dir, token, lines.entries()) {
            tracing::warn!(%error, "could not write the schedule snapshot; the next start scans the store");
        }
        drop(lines);
        self.tree.insert(keys::CLEAN, &token.to_le_bytes())?;
        self.tree.flush()?;
        Ok(())
    }

    /// Records how a leased job's attempt ended: the job (with its new state, reason, due time),
    /// the attempt, and the effects, in one batch; then releases the jobs parked on `releases`.
    pub fn settle(
        &self,
        job: Job,
        attempt: Option<Attempt>,
        effects: Vec<Write>,
        releases: &[(String, String)],
    ) -> Result<(), QueueError> {
        let mut lines = self.lines();
        let mut batch = sled::Batch::default();
        for write in effects {
            match write.value {
                Some(value) => batch.insert(write.key, value),
                None => batch.remove(write.key),
            }
        }
        if let Some(attempt) = &attempt {
            batch.insert(keys::attempt(job.id, attempt.n), encode(attempt));
        }
        let mut released = Vec::new();
        if job.state == State::Done {
            for (kind, id) in releases {
                for parked in lines.parked_on(kind, id) {
                    let mut waiting = self.read(parked)?;
                    waiting.state = State::Ready;
                    waiting.due_ms = None;
                    waiting.waits_for = None;
                    waiting.reason = None;
                    stage(&mut batch, &waiting);
                    released.push(waiting);
                }
            }
        }
        if let Some(external_id) = &job.external_id {
            batch.insert(keys::record(external_id, job.id), &[]);
        }
        stage(&mut batch, &job);
        self.tree.apply_batch(batch)?;
        let now = self.clock.now_ms();
        for job in released.iter().chain(std::iter::once(&job)) {
            place(&mut lines, job, now);
        }
        drop(lines);
        self.wake_all();
        self.timers_changed.notify_one();
        Ok(())
    }

    /// Runs forever: fires timers (retry due, hold recheck, parking deadline).
    pub async fn run_timers(&self, parked_gave_up: impl Fn(&Job) -> Reason) {
        loop {
            let notified = self.timers_changed.notified();
            if let Err(error) = self.fire_timers(&parked_gave_up) {
                tracing::error!(error = %error, "queue timers failed");
            }
            let next = self.lines().next_timer();
            let wait = next.map_or(std::time::Duration::from_secs(3600), |at| {
                self.clock.until(at)
            });
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = notified => {}
            }
        }
    }

    fn fire_timers(&self, parked_gave_up: &impl Fn(&Job) -> Reason) -> Result<(), QueueError> {
        let now = self.clock.now_ms();
        let mut lines = self.lines();
        let fired = lines.fire(now);
        for (id, state) in fired {
            let mut job = self.read(id)?;
            match state {
                State::Held => job.state = State::Ready,
                _ => {
                    job.state = State::Dead;
                    job.reason = Some(parked_gave_up(&job));
                }
            }
            job.due_ms = None;
            job.updated_ms = now;
            let mut batch = sled::Batch::default();
            stage(&mut batch, &job);
            self.tree.apply_batch(batch)?;
            place(&mut lines, &job, now);
        }
        drop(lines);
        self.wake_all();
        Ok(())
    }

    /// An operator's action on a dead, parked or held job: retry runs it now, skip settles it.
    pub fn act(&self, id: JobId, action: Action) -> Result<Job, QueueError> {
        self.change(id, action_name(action), |job| match action {
            Action::Retry => {
                job.state = State::Ready;
                job.reason = None;
            }
            Action::Skip => {
                job.state = State::Skipped;
                job.reason = Some(Reason::new("skipped_by_operator", "skipped by an operator"));
            }
        })
    }

    /// Edit-and-resubmit: the job runs again on `payload` (or on the data it has), re-mapped
    /// with the current mapping, under a new idempotency key.
    pub fn resubmit(
        &self,
        id: JobId,
        payload: Option<serde_json::Value>,
    ) -> Result<Job, QueueError> {
        self.change(id, "resubmit", |job| {
            job.state = State::Ready;
            job.reason = None;
            if payload.is_some() {
                job.payload = payload;
            }
            job.resubmits += 1;
        })
    }

    fn change(
        &self,
        id: JobId,
        action: &'static str,
        apply: impl FnOnce(&mut Job),
    ) -> Result<Job, QueueError> {
        let mut lines = self.lines();
        let mut job = self.read(id)?;
        if !matches!(job.state, State::Dead | State::Parked | State::Held) {
            return Err(QueueError::WrongState {
                id,
                state: job.state.as_str(),
                action,
                needs: "dead, parked or held",
            });
        }
        apply(&mut job);
        job.due_ms = None;
        job.waits_for = None;
        job.in_doubt = false;
        job.updated_ms = self.clock.now_ms();
        let mut batch = sled::Batch::default();
        stage(&mut batch, &job);
        self.tree.apply_batch(batch)?;
        place(&mut lines, &job, self.clock.now_ms());
        drop(lines);
        self.wake_all();
        Ok(job)
    }

    /// A job as stored, with its state `leased` while a worker has it.
    pub fn get(&self, id: JobId) -> Result<Job, QueueError> {
        let mut job = self.read(id)?;
        if self
            .lines()
            .get(id)
            .is_some_and(|e| e.state == State::Leased)
        {
            job.state = State::Leased;
        }
        Ok(job)
    }

    fn read(&self, id: JobId) -> Result<Job, QueueError> {
        let raw = self
            .tree
            .get(keys::job(id))?
            .ok_or(QueueError::NotFound(id))?;
        decode(&keys::job(id), &raw)
    }

    pub fn attempts(&self, id: JobId) -> Result<Vec<Attempt>, QueueError> {
        self.tree
            .scan_prefix(keys::attempts(id))
            .map(|item| {
                let (key, value) = item?;
                decode(&key, &value)
            })
            .collect()
    }

    /// Jobs newest first, below `before` (an id, for paging), within `scope`, that `keep`
    /// accepts. A scan stops after [`SCAN_BUDGET`] jobs so that a page costs a bounded time;
    /// `next_before` then says where the next page starts.
    pub fn list(
        &self,
        scope: Scope<'_>,
        before: Option<JobId>,
        limit: usize,
        keep: impl Fn(&Job) -> bool,
    ) -> Result<Page, QueueError> {
        let before = before.unwrap_or(JobId::MAX);
        // (id, the job when the walk read it already)
        type Found = Result<(JobId, Option<Job>), QueueError>;
        let found: Box<dyn Iterator<Item = Found>> = match scope {
            Scope::State(state) => Box::new(self.newest_in(state, before).map(|id| Ok((id, None)))),
            Scope::Record(record) => {
                let prefix = keys::record_prefix(record);
                let start = prefix.clone();
                let mut end = prefix.clone();
                end.extend_from_slice(&before.to_be_bytes());
                Box::new(self.tree.range(start..end).rev().map(move |item| {
                    let (key, _) = item?;
                    let bytes: [u8; 8] = key[prefix.len()..].try_into().expect("u64 id");
                    Ok((JobId::from_be_bytes(bytes), None))
                }))
            }
            Scope::All { .. } => Box::new(
                self.tree
                    .range(keys::job(0)..keys::job(before))
                    .rev()
                    .map(|item| {
                        let (key, value) = item?;
                        Ok((keys::id_of(&key), decode(&key, &value).ok()))
                    }),
            ),
        };
        let since_ms = match scope {
            Scope::All { since_ms } => since_ms,
            _ => None,
        };
        let mut page = Page::default();
        for (scanned, found) in found.enumerate() {
            let (id, job) = found?;
            if scanned == SCAN_BUDGET {
                page.next_before = Some(id + 1);
                break;
            }
            let Some(job) = job.or_else(|| self.read(id).ok()) else {
                continue;
            };
            if since_ms.is_some_and(|t| job.created_ms < t) {
                break;
            }
            if keep(&job) {
                page.jobs.push(job);
                if page.jobs.len() == limit {
                    page.next_before = Some(id);
                    break;
                }
            }
        }
        Ok(page)
    }

    /// Ids of the jobs the schedule holds in `state` (open states and dead letters).
    pub fn ids_in(&self, state: State) -> Vec<JobId> {
        self.lines().ids_in(state)
    }

    /// Ids in `state` below `before`, newest first, fetched from the schedule a chunk at a time.
    fn newest_in(&self, state: State, mut before: JobId) -> impl Iterator<Item = JobId> + '_ {
        let mut chunk = Vec::new().into_iter();
        std::iter::from_fn(move || {
            if chunk.len() == 0 {
                chunk = self.lines().newest_in(state, before, 256).into_iter();
            }
            let id = chunk.next()?;
            before = id;
            Some(id)
        })
    }

    /// Jobs the schedule holds in `state` by reason code: the count and up to `keep` newest ids.
    pub fn groups(&self, state: State, keep: usize) -> BTreeMap<String, (u64, Vec<JobId>)> {
        self.lines().groups(state, keep)
    }

    /// The schedule entry of an open or dead job.
    pub fn entry(&self, id: JobId) -> Option<Entry> {
        self.lines().get(id).cloned()
    }

    /// Open and dead jobs per (connector, state).
    pub fn counts(&self) -> HashMap<(Arc<str>, State), u64> {
        self.lines().counts()
    }

    pub fn oldest_open(&self) -> Option<JobId> {
        self.lines().oldest_open()
    }

    /// Makes sled write what it holds to disk (on shutdown).
    pub fn flush(&self) -> Result<(), QueueError> {
        self.tree.flush()?;
        Ok(())
    }

    fn wake_of(&self, connector: &str) -> Arc<Notify> {
        self.wake
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(connector.to_owned())
            .or_default()
            .clone()
    }

    /// Wakes one worker of every connector that has a ready job (a worker that leases one
    /// wakes the next while more are ready).
    fn wake_all(&self) {
        let wake = self.wake.lock().unwrap_or_else(|p| p.into_inner());
        let lines = self.lines();
        for (connector, notify) in wake.iter() {
            if lines.has_ready(connector) {
                notify.notify_one();
            }
        }
    }

    /// Wakes the workers of `connector` (after a pause ends).
    pub fn wake(&self, connector: &str) {
        self.wake_of(connector).notify_waiters();
    }
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::Retry => "retry",
        Action::Skip => "skip",
    }
}

/// Adds the job and its schedule entry (or its removal, once settled) to a batch.
fn stage(batch: &mut sled::Batch, job: &Job) {
    batch.insert(keys::job(job.id), encode(job));
    match job.state {
        State::Done | State::Skipped => batch.remove(keys::open(job.id)),
        _ => batch.insert(keys::open(job.id), encode(&entry_of(job))),
    }
}

fn place(lines: &mut Lines, job: &Job, now: i64) {
    match job.state {
        State::Done | State::Skipped => {
            let key = lines.remove(job.id).map(|e| e.key);
            if let Some(key) = key {
                lines.promote(&key, now);
            }
        }
        _ => lines.insert(job.id, entry_of(job), now),
    }
}

/// Which jobs a listing walks through.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Every job, newest first, back to `since_ms` (jobs are numbered in arrival order).
    All { since_ms: Option<i64> },
    /// The jobs the schedule holds in this state (open ones and dead letters).
    State(State),
    /// The jobs of one record (CRM id, order key or id in the target), by the record index.
    Record(&'a str),
}

/// One page of a listing.
#[derive(Debug, Default)]
pub struct Page {
    pub jobs: Vec<Job>,
    /// Pass as `before` for the next page; none when the listing is complete.
    pub next_before: Option<JobId>,
}

/// Jobs one listing page looks at, at most.
pub const SCAN_BUDGET: usize = 10_000;

pub fn entry_of(job: &Job) -> Entry {
    Entry {
        key: Arc::from(job.order_key.as_str()),
        connector: Arc::from(job.connector.as_str()),
        state: job.state,
        due: job.due_ms,
        waits_for: job.waits_for.clone().map(Box::new),
        reason: job.reason.as_ref().map(|r| r.code.as_str().into()),
        in_doubt: job.in_doubt,
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("queue records serialize")
}

fn decode<T: for<'de> Deserialize<'de>>(key: &[u8], raw: &[u8]) -> Result<T, QueueError> {
    serde_json::from_slice(raw)
        .map_err(|error| QueueError::Corrupt(format!("{}: {error}", String::from_utf8_lossy(key))))
}

#[cfg(test)]
mod tests;
