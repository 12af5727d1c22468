//! The embedded backend: the queue log beside the journal for jobs and their state changes,
//! sled for the small mutable indexes, and the schedule in memory.
//!
//! # Invariants
//!
//! - A job is written once: a `created` record that points at its journal record. Each state
//!   change is one small `changed` record (log.rs, record.rs); nothing is rewritten.
//! - Every change of the schedule and the records it appends happen under one lock, in the same
//!   order, so the log replayed over a snapshot gives the schedule back (snapshot.rs).
//! - A slice's `created` records count only once the router's cursor after them is read back:
//!   a crash between them routes the slice again.
//! - A settle writes its effects to sled before its record is appended; the log's committer
//!   flushes sled before it writes, so a state change on disk has its effects on disk.
//! - A lease lives in memory only. After a crash every ready or retrying job comes back in
//!   doubt; a clean close leaves a marker with the snapshot it wrote, and nothing is in doubt.
//! - Space: `upkeep` writes a snapshot now and then and deletes a log segment once no open job
//!   or dead letter points into it and it lies before the snapshot; the jobs that hold an old
//!   segment on their own are copied forward first. Settled jobs stay listable while their
//!   records last (`recent`).
//!
//! ```text
//! <data_dir>/queue/*.log           the queue log (log.rs, record.rs, compact.rs)
//! <data_dir>/queue/schedule.snap   the schedule at one point of the log (snapshot.rs)
//! <data_dir>/queue/clean           present between a clean shutdown and the next open
//! <data_dir>/index (sled) queue    cross-references, versions, status, echo, pollers, records
//!                                  (index.rs; the first two compact.rs)
//! ```

mod compact;
pub mod index;
mod listing;
pub mod log;
#[cfg(test)]
mod model_tests;
mod record;
mod recover;
mod snapshot;
mod space;
mod superseded;
#[cfg(test)]
mod tests;
mod upgrade;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Notify;

use super::actions;
use super::lines::{Lines, Locs};
use super::records::{Applied, Echo, Effect, Xref};
use super::{
    Action, Attempt, Cursor, Entry, Job, JobId, Page, Queue, QueueError, Reason, Scope, Settle,
    State, entry_of,
};
use crate::clock::Clock;
use crate::store::Store;
use index::Index;
use log::{Log, Pos};
use record::{Changed, Created, Payload, Record};

/// State changes appended as one group (after a crash all of them are there, or none), then
/// placed in the schedule.
#[derive(Default)]
struct Group {
    records: Vec<Record>,
    /// A changed job, where its records were, and the indexes of its new records.
    jobs: Vec<(Job, Locs, usize, Option<usize>)>,
}

impl Group {
    /// Adds a change of `job` (with new event data, when given).
    fn change(
        &mut self,
        inner: &Inner,
        job: Job,
        attempt: Option<Attempt>,
        payload: Option<Value>,
        effects: Vec<Effect>,
    ) {
        let at = inner.lines.get(job.id).map(|e| e.at).unwrap_or_default();
        let payload_at = payload.map(|data| {
            self.records
                .push(Record::Payload(Payload { id: job.id, data }));
            self.records.len() - 1
        });
        let prev = (at.last != 0).then_some(at.last);
        self.records
            .push(Record::Changed(Changed::of(&job, prev, attempt, effects)));
        self.jobs
            .push((job, at, self.records.len() - 1, payload_at));
    }
}

/// Default size of a queue log segment.
pub const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// A snapshot is written once this many records were appended since the last one…
const SNAPSHOT_RECORDS: u64 = 200_000;
/// …or this long after the last one, when anything was appended.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(30);
/// An old segment held by at most this many jobs has them copied forward.
const COPY_FORWARD_MAX: usize = 5_000;

/// How the embedded queue is tuned (`[store]`).
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub segment_bytes: u64,
    /// A snapshot is due after this many records…
    pub snapshot_records: u64,
    /// …or this long after the last one, when anything was appended.
    pub snapshot_every: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_bytes: SEGMENT_BYTES,
            snapshot_records: SNAPSHOT_RECORDS,
            snapshot_every: SNAPSHOT_EVERY,
        }
    }
}

struct Inner {
    lines: Lines,
    /// Settled jobs whose records are still in the log, for listings.
    recent: BTreeMap<JobId, Locs>,
    next_id: JobId,
    cursor: Cursor,
    /// The log seq and time of the last snapshot.
    snapshot_at: (u64, Instant),
    /// The log segments the last snapshot points into: none of them may go before the next.
    snapshot_held: HashSet<u64>,
    /// Snapshots written since the start, and their bytes.
    snapshots: (u64, u64),
    /// Dead letters by (flow, record), once something asked (superseded.rs).
    dead_by_record: Option<superseded::DeadByRecord>,
}

pub struct Embedded {
    dir: PathBuf,
    options: Options,
    log: Log,
    index: Index,
    inner: Mutex<Inner>,
    wake: Mutex<HashMap<String, Arc<Notify>>>,
    timers_changed: Notify,
    clock: Clock,
}

impl Embedded {
    /// The jobs parked on any of `on`, made ready (to be appended as changes by the caller).
    fn parked_on(&self, inner: &Inner, on: &[(String, String)]) -> Result<Vec<Job>, QueueError> {
        let mut released = Vec::new();
        for (kind, id) in on {
            for parked in inner.lines.parked_on(kind, id) {
                let at = inner.lines.get(parked).expect("parked").at;
                let mut waiting = self.read(at)?;
                waiting.state = State::Ready;
                waiting.due_ms = None;
                waiting.waits_for = None;
                waiting.reason = None;
                released.push(waiting);
            }
        }
        Ok(released)
    }
    /// Opens the queue of `store`'s data directory: upgrades a release-1 store, reads the
    /// snapshot and replays the log after it.
    pub fn open(store: &Store, clock: Clock, options: Options) -> Result<Embedded, QueueError> {
        let dir = store.dir.join("queue");
        std::fs::create_dir_all(&dir)?;
        let tree = store.db.open_tree("queue")?;
        let upgraded = upgrade::prepare(store, &tree, &dir)?;
        let clean = snapshot::take_clean(&dir)?;
        let log = Log::open(&dir, options.segment_bytes)?;
        let index = Index::new(tree);
        let mut inner = recover::recover(&dir, &log, &index, clean, clock.now_ms())?;
        log.append(record::group(vec![Record::Opened]));
        if let Some(next_id) = upgraded {
            inner.next_id = inner.next_id.max(next_id);
        }
        let queue = Embedded {
            dir,
            options,
            log,
            index,
            inner: Mutex::new(inner),
            wake: Mutex::new(HashMap::new()),
            timers_changed: Notify::new(),
            clock,
        };
        if upgraded.is_some() {
            queue.write_snapshot(fastrand::u64(..))?;
            upgrade::finish(store, &queue.index.tree)?;
        }
        Ok(queue)
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The indexes' values, for moving the installation to another backend.
    pub fn export(&self) -> Result<index::Exported, QueueError> {
        self.index.export()
    }

    /// Bytes and records the log has written (benchmarks).
    pub fn log_stats(&self) -> log::LogStats {
        self.log.stats()
    }

    fn read_record(&self, at: Pos) -> Result<Record, QueueError> {
        let bytes = self.log.read(at)?;
        Record::decode(&bytes)
            .map(|(_, record)| record)
            .ok_or_else(|| QueueError::Corrupt(format!("queue log at {at}")))
    }

    /// Appends a group and places its jobs by their new state.
    fn append(&self, inner: &mut Inner, group: Group) {
        let positions = self.log.append(record::group(group.records));
        let now = self.clock.now_ms();
        for (job, mut at, changed, payload) in group.jobs {
            at.last = positions[changed];
            if let Some(payload) = payload {
                at.payload = positions[payload];
            }
            place(inner, &job, at, now);
        }
    }

    /// A job from its records.
    fn read(&self, at: Locs) -> Result<Job, QueueError> {
        let Record::Created(created) = self.read_record(at.created)? else {
            return Err(QueueError::Corrupt(format!("queue log at {}", at.created)));
        };
        let mut job = created.job();
        if at.last != 0
            && let Record::Changed(changed) = self.read_record(at.last)?
        {
            changed.apply(&mut job);
        }
        if at.payload != 0
            && let Record::Payload(payload) = self.read_record(at.payload)?
        {
            job.payload = Some(payload.data);
        }
        Ok(job)
    }

    /// Where a job's records are, and whether it is leased now.
    fn locate(&self, id: JobId) -> Result<(Locs, bool), QueueError> {
        let inner = self.inner();
        match inner.lines.get(id) {
            Some(entry) => Ok((entry.at, entry.state == State::Leased)),
            None => inner
                .recent
                .get(&id)
                .map(|at| (*at, false))
                .ok_or(QueueError::NotFound(id)),
        }
    }

    fn wake_all(&self) {
        let wake = self.wake.lock().unwrap_or_else(|p| p.into_inner());
        let inner = self.inner();
        for (connector, notify) in wake.iter() {
            if inner.lines.has_ready(connector) {
                notify.notify_one();
            }
        }
    }

    fn change(
        &self,
        id: JobId,
        action: &'static str,
        payload: Option<Value>,
        apply: impl FnOnce(&mut Job),
    ) -> Result<Job, QueueError> {
        let mut inner = self.inner();
        let entry = inner.lines.get(id).cloned();
        let Some(entry) = entry else {
            let state = match inner.recent.contains_key(&id) {
                true => self.read(inner.recent[&id])?.state,
                false => return Err(QueueError::NotFound(id)),
            };
            return Err(actions::wrong_state(id, state, action));
        };
        if !actions::may_change(entry.state) {
            return Err(actions::wrong_state(id, entry.state, action));
        }
        let mut job = self.read(entry.at)?;
        apply(&mut job);
        actions::touched(&mut job, self.clock.now_ms());
        if payload.is_some() {
            job.payload.clone_from(&payload);
        }
        let mut group = Group::default();
        group.change(&inner, job.clone(), None, payload, Vec::new());
        self.append(&mut inner, group);
        drop(inner);
        // An operator's action is on disk before it is answered.
        self.log.sync()?;
        self.wake_all();
        Ok(job)
    }
}

/// Places a job in the schedule by its state (settled jobs leave it for `recent`).
fn place(inner: &mut Inner, job: &Job, at: Locs, now: i64) {
    if let Some(index) = &mut inner.dead_by_record {
        index.note(job);
    }
    match job.state {
        State::Done | State::Skipped => {
            if let Some(entry) = inner.lines.remove(job.id) {
                inner.lines.promote(&entry.key, now);
            }
            inner.recent.insert(job.id, at);
        }
        _ => {
            let mut entry = entry_of(job);
            entry.at = at;
            inner.lines.insert(job.id, entry, now);
        }
    }
}

impl Queue for Embedded {
    fn clock(&self) -> &Clock {
        &self.clock
    }

    fn cursor(&self) -> Result<Cursor, QueueError> {
        Ok(self.inner().cursor)
    }

    fn enqueue(&self, mut jobs: Vec<Job>, cursor: Cursor) -> Result<Vec<JobId>, QueueError> {
        let now = self.clock.now_ms();
        let mut inner = self.inner();
        let mut records = Vec::with_capacity(jobs.len() + 1);
        for job in &mut jobs {
            job.id = inner.next_id;
            inner.next_id += 1;
            records.push(Record::Created(Created::of(job)));
        }
        records.push(Record::Cursor(cursor));
        let positions = self.log.append(record::group(records));
        for (job, at) in jobs.iter().zip(positions) {
            let mut entry = entry_of(job);
            entry.at.created = at;
            inner.lines.insert(job.id, entry, now);
        }
        inner.cursor = cursor;
        drop(inner);
        self.wake_all();
        Ok(jobs.iter().map(|job| job.id).collect())
    }

    fn try_lease(&self, connector: &str) -> Result<Option<Job>, QueueError> {
        let mut inner = self.inner();
        let Some((id, in_doubt)) = inner.lines.pop_ready(connector) else {
            return Ok(None);
        };
        let at = inner.lines.get(id).expect("just leased").at;
        let more = inner.lines.has_ready(connector);
        drop(inner);
        if more {
            // Pass the wake-up on: one worker per ready job, not every worker per change.
            self.wake_of(connector).notify_one();
        }
        let mut job = self.read(at)?;
        job.state = State::Leased;
        job.in_doubt |= in_doubt;
        job.due_ms = None;
        job.attempts += 1;
        job.updated_ms = self.clock.now_ms();
        Ok(Some(job))
    }

    fn wake_of(&self, connector: &str) -> Arc<Notify> {
        let mut wake = self.wake.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(notify) = wake.get(connector) {
            return notify.clone();
        }
        wake.entry(connector.to_owned()).or_default().clone()
    }

    fn settle(&self, settle: Settle) -> Result<(), QueueError> {
        let Settle {
            job,
            attempt,
            effects,
            releases,
        } = settle;
        self.index.stage(&effects);
        // Older dead letters of the record are moot once a later version is delivered.
        let superseded = match (job.state, &job.object_id) {
            (State::Done, Some(record)) => Some((job.flow.clone(), record.clone(), job.id)),
            _ => None,
        };
        let mut inner = self.inner();
        let mut group = Group::default();
        let released = if job.state == State::Done {
            self.parked_on(&inner, &releases)?
        } else {
            Vec::new()
        };
        group.change(&inner, job, attempt, None, effects);
        for waiting in released {
            group.change(&inner, waiting, None, None, Vec::new());
        }
        // In the same group: after a crash the settle and what it made moot are both there.
        if let Some((flow, record, by)) = superseded {
            self.moot(&mut inner, &mut group, &flow, &record, by)?;
        }
        self.append(&mut inner, group);
        drop(inner);
        self.wake_all();
        self.timers_changed.notify_one();
        Ok(())
    }

    fn fire_timers(
        &self,
        parked_gave_up: &dyn Fn(&Job) -> Reason,
    ) -> Result<Option<i64>, QueueError> {
        let now = self.clock.now_ms();
        let mut inner = self.inner();
        let fired = inner.lines.fire(now);
        let mut group = Group::default();
        for (id, state) in fired {
            let at = inner.lines.get(id).expect("fired").at;
            let mut job = self.read(at)?;
            match state {
                State::Held => job.state = State::Ready,
                _ => {
                    job.state = State::Dead;
                    job.reason = Some(parked_gave_up(&job));
                }
            }
            job.due_ms = None;
            job.updated_ms = now;
            group.change(&inner, job, None, None, Vec::new());
        }
        self.append(&mut inner, group);
        let next = inner.lines.next_timer();
        drop(inner);
        self.wake_all();
        Ok(next)
    }

    fn timers_changed(&self) -> &Notify {
        &self.timers_changed
    }

    fn xref(&self, system: &str, kind: &str, crm_id: &str) -> Result<Option<Xref>, QueueError> {
        self.index.xref(system, kind, crm_id)
    }

    fn xrefs(&self, filter: &str, limit: usize) -> Result<Vec<Xref>, QueueError> {
        self.index.xrefs(filter, limit)
    }

    fn link(&self, xref: Xref) -> Result<(), QueueError> {
        self.index.link(&xref)
    }

    fn applied(&self, flow: &str, record: &str) -> Result<Option<Applied>, QueueError> {
        self.index.applied(flow, record)
    }

    fn status(&self, order: &str) -> Result<Option<String>, QueueError> {
        self.index.status(order)
    }

    fn echo(&self, record: &str) -> Result<Option<Echo>, QueueError> {
        self.index.echo(record)
    }

    fn poll_cursor(&self, connector: &str) -> Result<Option<Value>, QueueError> {
        self.index.poll_cursor(connector)
    }

    fn poll_emitted(&self, connector: &str, order: &str) -> Result<u64, QueueError> {
        self.index.poll_emitted(connector, order)
    }

    fn save_run(&self, id: u64, run: &Value) -> Result<(), QueueError> {
        self.index.save_run(id, run)
    }

    fn run(&self, id: u64) -> Result<Option<Value>, QueueError> {
        self.index.run(id)
    }

    fn runs(&self, limit: usize) -> Result<Vec<Value>, QueueError> {
        self.index.runs(limit)
    }

    fn save_poll(
        &self,
        connector: &str,
        cursor: Option<&Value>,
        emitted: &[(String, u64)],
    ) -> Result<(), QueueError> {
        self.index.save_poll(connector, cursor, emitted)
    }

    fn act(&self, id: JobId, action: Action) -> Result<Job, QueueError> {
        if let Some(entry) = self.entry(id) {
            actions::check_accept(id, entry.state, action)?;
        }
        self.change(id, actions::name(action), None, |job| {
            actions::apply(job, action)
        })
    }

    fn supersede(&self, flow: &str, record: &str, by: JobId) -> Result<usize, QueueError> {
        self.supersede_dead(flow, record, by)
    }

    fn release_parked(&self, on: &[(String, String)]) -> Result<usize, QueueError> {
        let mut inner = self.inner();
        let released = self.parked_on(&inner, on)?;
        let count = released.len();
        if count > 0 {
            let mut group = Group::default();
            for waiting in released {
                group.change(&inner, waiting, None, None, Vec::new());
            }
            self.append(&mut inner, group);
            drop(inner);
            self.wake_all();
            self.timers_changed.notify_one();
        }
        Ok(count)
    }

    fn release_retrying(&self, connector: &str, limit: usize) -> Result<usize, QueueError> {
        let is_ours = |inner: &Inner, id: JobId| {
            inner.lines.get(id).is_some_and(|entry| {
                entry.state == State::Retrying && &*entry.connector == connector
            })
        };
        let ids: Vec<JobId> = {
            let inner = self.inner();
            let ids = inner.lines.ids_in(State::Retrying);
            ids.into_iter()
                .filter(|id| is_ours(&inner, *id))
                .take(limit)
                .collect()
        };
        let mut released = 0;
        // In groups of a few hundred, so workers lease between them.
        for chunk in ids.chunks(256) {
            let mut inner = self.inner();
            let now = self.clock.now_ms();
            let mut group = Group::default();
            for &id in chunk.iter().filter(|id| is_ours(&inner, **id)) {
                let mut job = self.read(inner.lines.get(id).expect("listed").at)?;
                job.state = State::Ready;
                job.due_ms = None;
                job.updated_ms = now;
                group.change(&inner, job, None, None, Vec::new());
                released += 1;
            }
            self.append(&mut inner, group);
            drop(inner);
            self.wake_of(connector).notify_waiters();
        }
        Ok(released)
    }

    fn resubmit(&self, id: JobId, payload: Option<Value>) -> Result<Job, QueueError> {
        self.change(id, "resubmit", payload, actions::resubmit)
    }

    fn get(&self, id: JobId) -> Result<Job, QueueError> {
        let (at, leased) = self.locate(id)?;
        let mut job = self.read(at).map_err(|_| QueueError::NotFound(id))?;
        if leased {
            job.state = State::Leased;
        }
        Ok(job)
    }

    fn attempts(&self, id: JobId) -> Result<Vec<Attempt>, QueueError> {
        self.attempts_of(id)
    }

    fn list(
        &self,
        scope: Scope<'_>,
        before: Option<JobId>,
        limit: usize,
        keep: &dyn Fn(&Job) -> bool,
    ) -> Result<Page, QueueError> {
        self.list_jobs(scope, before, limit, keep)
    }
    fn ids_in(&self, state: State) -> Vec<JobId> {
        self.inner().lines.ids_in(state)
    }

    fn groups(&self, state: State, keep: usize) -> BTreeMap<String, (u64, Vec<JobId>)> {
        self.inner().lines.groups(state, keep)
    }

    fn entry(&self, id: JobId) -> Option<Entry> {
        self.inner().lines.get(id).cloned()
    }

    fn counts(&self) -> HashMap<(Arc<str>, State), u64> {
        self.inner().lines.counts()
    }

    fn oldest_open(&self) -> Option<JobId> {
        self.inner().lines.oldest_open()
    }

    fn upkeep(
        &self,
        below_seq: u64,
        read_event: &dyn Fn(&Job) -> Option<Value>,
    ) -> Result<u64, QueueError> {
        self.upkeep_round(below_seq, read_event)
    }
    fn close_clean(&self) -> Result<(), QueueError> {
        let token = fastrand::u64(..);
        self.write_snapshot(token)?;
        snapshot::mark_clean(&self.dir, token)?;
        let stats = self.log.stats();
        let (snapshots, snapshot_bytes) = self.inner().snapshots;
        tracing::info!(
            records = stats.records,
            bytes = stats.bytes,
            commits = stats.commits,
            snapshots,
            snapshot_bytes,
            "queue closed"
        );
        Ok(())
    }

    fn flush(&self) -> Result<(), QueueError> {
        self.index.apply(true)?;
        self.log.sync()?;
        Ok(())
    }
}

impl Embedded {}
