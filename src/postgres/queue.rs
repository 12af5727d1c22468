//! [`PgQueue`]: the storage seam ([`Queue`]) on the shared database, so the engine, the
//! pollers, the dashboard and the API run unchanged on several instances.
//!
//! The trait is synchronous (the embedded backend answers from memory and its own files); each
//! call here runs its queries with [`block_on`], which hands the calling engine thread's other
//! tasks to the runtime's other threads while it waits.
//!
//! - Workers lease only from the partitions this instance holds (`leases.rs`), in memory (a
//!   lease writes nothing), and a settle is written only under the epoch the job was leased
//!   with: after the partition moved, the settle is refused ([`QueueError::Fenced`]) and the
//!   new owner runs the job again, in doubt, under the same idempotency key.
//! - Timers (retry due, hold recheck, parking deadline) are fired by the partition's owner.
//! - Operators' actions, listings and counts work on every partition from any instance; a job
//!   in flight on any instance (as its heartbeat last said) shows as leased and is not changed.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, mpsc};

use super::jobs::{self, COLUMNS, JOBS_CHANNEL, Leased, PgJobs, finished_of, job_of};
use super::leases::Leases;
use super::records::{PgRecords, RecordReads};
use super::{PgError, Postgres, roles};
use crate::clock::Clock;
use crate::queue::records::{Applied, Echo, Effect, Xref};
use crate::queue::{
    Action, Attempt, Cursor, Entry, Fetch, Job, JobId, Member, Page, Queue, QueueError, Reason,
    SCAN_BUDGET, Scope, Settle, State, actions, entry_of,
};

pub use crate::queue::block_on;

fn shared(error: PgError) -> QueueError {
    QueueError::Shared(error.to_string())
}

pub struct PgQueue {
    postgres: Arc<Postgres>,
    leases: Arc<Leases>,
    clock: Clock,
    /// The jobs handed to this instance's workers: their partition and the lease's epoch.
    /// (Every job leased and not yet settled, those leased ahead and those whose settle
    /// waits for the committer included, is in `leases`' in-flight set.)
    leased: Mutex<HashMap<JobId, (i16, i64)>>,
    /// Jobs leased ahead per connector, for the next workers that ask (one query leases a
    /// few).
    ahead: Mutex<HashMap<String, VecDeque<Leased>>>,
    /// Connectors with a lease query running now.
    lease_running: Mutex<std::collections::HashSet<String>>,
    /// Counts what may have made jobs runnable for this instance (new jobs, settles that free
    /// a record's next job, due timers, partitions taken, releases): see [`PgQueue::changed`].
    changes: std::sync::atomic::AtomicU64,
    /// Per connector, the count of changes when a lease query last found fewer jobs than it
    /// asked for: until something changes, another query would find nothing more, so the
    /// workers woken meanwhile wait instead of asking (at 1,000 orders/s they asked ~850 times
    /// a second, most of them for nothing).
    found_all: Mutex<HashMap<String, u64>>,
    /// Lease queries sent so far.
    lease_queries: std::sync::atomic::AtomicU64,
    /// Settles on their way to the committer, which writes them in batches.
    settles: mpsc::UnboundedSender<(Leased, Settle)>,
    committing: Mutex<Option<mpsc::UnboundedReceiver<(Leased, Settle)>>>,
    /// Settles handed over and not yet written.
    unwritten: std::sync::atomic::AtomicUsize,
    wake: Mutex<HashMap<String, Arc<Notify>>>,
    timers_changed: Notify,
    /// The delivery path's reads of cross-references and applied versions, gathered.
    reads: RecordReads,
}

impl PgQueue {
    pub fn new(postgres: Arc<Postgres>, leases: Arc<Leases>, clock: Clock) -> PgQueue {
        let (settles, committing) = mpsc::unbounded_channel();
        PgQueue {
            leases,
            clock,
            leased: Mutex::new(HashMap::new()),
            ahead: Mutex::new(HashMap::new()),
            lease_running: Mutex::default(),
            changes: std::sync::atomic::AtomicU64::new(0),
            found_all: Mutex::default(),
            lease_queries: std::sync::atomic::AtomicU64::new(0),
            settles,
            committing: Mutex::new(Some(committing)),
            unwritten: std::sync::atomic::AtomicUsize::new(0),
            wake: Mutex::new(HashMap::new()),
            timers_changed: Notify::new(),
            reads: RecordReads::new(&postgres),
            postgres,
        }
    }

    fn me(&self) -> &str {
        self.leases.me()
    }

    fn exec<T: Send>(
        &self,
        work: impl Future<Output = Result<T, PgError>> + Send,
    ) -> Result<T, QueueError> {
        block_on(work).map_err(shared)
    }

    fn failed(&self) -> impl Fn(tokio_postgres::Error) -> PgError + '_ {
        |e| self.postgres.query_error(&e)
    }

    /// Notes a change that may have made jobs runnable; call it after the change is committed
    /// and before waking the workers. A lease query that started before it may have missed the
    /// change; one that started after it sees it.
    fn changed(&self) {
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Wakes every connector's workers (new jobs, releases, timers, partitions taken).
    pub fn wake_all(&self) {
        self.changed();
        for notify in self.wake.lock().unwrap_or_else(|p| p.into_inner()).values() {
            notify.notify_waiters();
        }
    }

    /// Wakes the workers whenever another instance (or this one) notifies that jobs became
    /// runnable, and every [`LOOK_AGAIN`] anyway; runs until aborted. Notifications sent while
    /// the connection was down are lost, so a new connection wakes everyone once, and the
    /// periodic look bounds what any other lost wake-up can cost (an instance's workers that
    /// found nothing wait for a wake-up).
    pub async fn listen(self: Arc<Self>) {
        loop {
            match self.postgres.listen(JOBS_CHANNEL).await {
                Ok(listener) => {
                    self.wake_all();
                    while !listener.is_closed() {
                        let _ =
                            tokio::time::timeout(LOOK_AGAIN, listener.notified.notified()).await;
                        self.wake_all();
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %error, "no LISTEN for new jobs; workers look every second");
                    self.wake_all();
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Writes the settles the workers hand over, as many as wait in one transaction, until
    /// aborted. A batch the database refuses is tried again (the jobs stay leased meanwhile;
    /// if the partitions move in between, their settles are refused and the new owner runs
    /// them again). A job's lease ends once its settle is written or refused.
    pub async fn commit_settles(self: Arc<Self>) {
        let Some(mut settles) = self
            .committing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        while let Some(first) = settles.recv().await {
            let mut batch = vec![first];
            while batch.len() < SETTLE_BATCH
                && let Ok(next) = settles.try_recv()
            {
                batch.push(next);
            }
            let written = loop {
                match PgJobs::new(&self.postgres)
                    .settle_all(self.me(), &batch)
                    .await
                {
                    Ok(written) => break written,
                    Err(error) => {
                        tracing::warn!(error = %error, settles = batch.len(), "settles not written; trying again in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            };
            // The next job of each settled job's record may be runnable now.
            self.changed();
            for ((_, settle), written) in batch.iter().zip(written) {
                if !written {
                    tracing::warn!(error = %QueueError::Fenced(settle.job.id), "settle refused");
                }
                self.leases.done(settle.job.id);
                self.wake_of(&settle.job.connector).notify_one();
            }
            self.unwritten
                .fetch_sub(batch.len(), std::sync::atomic::Ordering::SeqCst);
            // A retry, hold or parking deadline may come sooner than the timers wait for.
            if batch
                .iter()
                .any(|(_, s)| matches!(s.job.state, State::Retrying | State::Held | State::Parked))
            {
                self.timers_changed.notify_one();
            }
        }
    }

    /// Waits (up to `limit`) until the committer has written every settle handed over.
    fn settles_written(&self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while self.unwritten.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Reads one job and applies `change` to it under a row lock, if an operator may change
    /// it; a settled job is reported in its state.
    fn change(
        &self,
        id: JobId,
        action: &'static str,
        change: impl FnOnce(&mut Job) -> Result<(), QueueError> + Send,
    ) -> Result<Job, QueueError> {
        let now = self.clock.now_ms();
        let job = block_on(async {
            let mut client = self.postgres.client().await.map_err(shared)?;
            let tx = client
                .transaction()
                .await
                .map_err(|e| shared(self.postgres.query_error(&e)))?;
            let row = tx
                .query_opt(
                    &format!("SELECT {COLUMNS} FROM jobs WHERE id = $1 FOR UPDATE"),
                    &[&(id as i64)],
                )
                .await
                .map_err(|e| shared(self.postgres.query_error(&e)))?;
            let Some(row) = row else {
                return match self.finished(id).await? {
                    Some(job) => Err(actions::wrong_state(id, job.state, action)),
                    None => Err(QueueError::NotFound(id)),
                };
            };
            let mut job = job_of(&row)?;
            // A retry under way somewhere is the running instance's until it settles.
            if runnable(job.state)
                && self
                    .in_flight_anywhere()
                    .await
                    .map_err(shared)?
                    .contains(&id)
            {
                job.state = State::Leased;
            }
            if !actions::may_change(job.state) {
                return Err(actions::wrong_state(id, job.state, action));
            }
            change(&mut job)?;
            actions::touched(&mut job, now);
            jobs::store(&tx, &job, None)
                .await
                .map_err(|e| shared(self.postgres.query_error(&e)))?;
            tx.batch_execute(&format!("NOTIFY {JOBS_CHANNEL}"))
                .await
                .map_err(|e| shared(self.postgres.query_error(&e)))?;
            tx.commit()
                .await
                .map_err(|e| shared(self.postgres.query_error(&e)))?;
            Ok(job)
        })?;
        self.wake_all();
        self.timers_changed.notify_one();
        Ok(job)
    }

    async fn finished(&self, id: JobId) -> Result<Option<Job>, QueueError> {
        let client = self.postgres.client().await.map_err(shared)?;
        let row = client
            .query_opt(
                "SELECT id, job FROM finished WHERE id = $1 ORDER BY at DESC LIMIT 1",
                &[&(id as i64)],
            )
            .await
            .map_err(|e| shared(self.postgres.query_error(&e)))?;
        row.map(|row| finished_of(&row)).transpose()
    }

    /// Rows of `sql` (which selects [`COLUMNS`] or `id, job`) as jobs; a job in flight on any
    /// instance is shown leased (its row says ready or retrying: leases are kept in memory).
    fn jobs(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        read: fn(&tokio_postgres::Row) -> Result<Job, QueueError>,
    ) -> Result<Vec<Job>, QueueError> {
        let rows = self.exec(async {
            let client = self.postgres.client().await?;
            client.query(sql, params).await.map_err(self.failed())
        })?;
        let mut jobs = rows.iter().map(read).collect::<Result<Vec<Job>, _>>()?;
        if jobs.iter().any(|job| runnable(job.state)) {
            let in_flight = self.exec(self.in_flight_anywhere())?;
            for job in &mut jobs {
                if runnable(job.state) && in_flight.contains(&job.id) {
                    job.state = State::Leased;
                }
            }
        }
        Ok(jobs)
    }

    /// The lowest of the newest [`SCAN_BUDGET`] ids of `table` below `before`, if it has that
    /// many.
    fn window_end(&self, table: &str, before: i64) -> Result<Option<JobId>, QueueError> {
        let row = self.exec(async {
            let client = self.postgres.client().await?;
            client
                .query_one(
                    &format!(
                        "SELECT min(id) FILTER (WHERE n = $2) FROM (SELECT id, count(*) OVER () \
                         AS n FROM (SELECT id FROM {table} WHERE id < $1 ORDER BY id DESC \
                         LIMIT $2) w) c"
                    ),
                    &[&before, &(SCAN_BUDGET as i64)],
                )
                .await
                .map_err(self.failed())
        })?;
        Ok(row.get::<_, Option<i64>>(0).map(|id| id as JobId))
    }

    /// The jobs in flight on any instance: this one's now, the others' as of their last
    /// heartbeat.
    async fn in_flight_anywhere(&self) -> Result<HashSet<JobId>, PgError> {
        let client = self.postgres.client().await?;
        let row = client
            .query_one(
                "SELECT coalesce(array_agg(id), '{}') FROM (SELECT unnest(leased) AS id \
                 FROM instances WHERE seen_until > now() AND name <> $1) l",
                &[&self.me()],
            )
            .await
            .map_err(self.failed())?;
        let others: Vec<i64> = row.get(0);
        let mut in_flight: HashSet<JobId> = others.into_iter().map(|id| id as JobId).collect();
        in_flight.extend(self.leases.in_flight().into_iter().map(|id| id as JobId));
        Ok(in_flight)
    }

    /// An answer the trait gives without an error: logged and empty when the database fails.
    fn or_empty<T: Default>(&self, what: &str, result: Result<T, QueueError>) -> T {
        result.unwrap_or_else(|error| {
            tracing::warn!(error = %error, "{what}: the shared store did not answer");
            T::default()
        })
    }

    /// Gives this instance's partitions and roles back (a clean shutdown), so the others take
    /// them at once instead of after the lease period. The jobs leased ahead are given up; a
    /// partition with a job still in flight keeps this instance's name, so that its next owner
    /// runs its jobs in doubt.
    pub fn release_all(&self) -> Result<(), QueueError> {
        let ahead = std::mem::take(&mut *self.ahead.lock().unwrap_or_else(|p| p.into_inner()));
        for leased in ahead.values().flatten() {
            self.leases.done(leased.job.id);
        }
        let busy: Vec<i16> = self.leases.busy().into_iter().collect();
        self.exec(async {
            let mut client = self.postgres.client().await?;
            let tx = client.transaction().await.map_err(self.failed())?;
            tx.execute(
                "UPDATE parts SET lease_until = '-infinity', \
                 owner = CASE WHEN part = ANY($2) THEN owner END WHERE owner = $1",
                &[&self.me(), &busy],
            )
            .await
            .map_err(self.failed())?;
            tx.batch_execute(&format!(
                "UPDATE poll_cursors SET owner = NULL, lease_until = '-infinity' WHERE owner = {me}; \
                 DELETE FROM instances WHERE name = {me};",
                me = quote(self.me()),
            ))
            .await
            .map_err(self.failed())?;
            tx.commit().await.map_err(self.failed())
        })
    }
}

impl PgQueue {
    /// Marks a lease query of `connector` as running (`start`; false when one already runs)
    /// or done.
    fn leasing(&self, connector: &str, start: bool) -> bool {
        let mut running = self.lease_running.lock().unwrap_or_else(|p| p.into_inner());
        match start {
            true => running.insert(connector.to_owned()),
            false => running.remove(connector),
        }
    }

    /// Lease queries sent so far.
    pub fn lease_queries(&self) -> u64 {
        self.lease_queries
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock_found_all(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.found_all.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next job leased ahead for `connector` whose partition this instance still holds.
    /// Jobs leased ahead in a partition this instance no longer holds under that epoch are
    /// given up (the new owner leases them).
    fn next_ahead(&self, connector: &str) -> Option<Leased> {
        let owned = self.leases.owned();
        let (next, lost) = {
            let mut ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
            let queue = ahead.get_mut(connector)?;
            let (kept, lost): (Vec<Leased>, Vec<Leased>) = queue
                .drain(..)
                .partition(|l| owned.get(&l.part) == Some(&l.epoch));
            *queue = kept.into();
            (queue.pop_front(), lost)
        };
        for leased in &lost {
            self.leases.done(leased.job.id);
        }
        next
    }
}

/// How often idle workers look for jobs without being woken (a wake-up lost with a broken
/// connection costs this much at most).
const LOOK_AGAIN: Duration = Duration::from_secs(5);
/// Jobs one lease query takes for a connector, at most.
const LEASE_AHEAD: i64 = 32;
/// Settles written in one transaction, at most.
const SETTLE_BATCH: usize = 256;

/// A state a leased job's row keeps (leases are kept in memory).
fn runnable(state: State) -> bool {
    matches!(state, State::Ready | State::Retrying)
}

/// A text literal for SQL.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl Queue for PgQueue {
    fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The router on PostgreSQL keeps its own cursor (`router.rs`).
    fn cursor(&self) -> Result<Cursor, QueueError> {
        Ok(Cursor::default())
    }

    fn enqueue(&self, jobs: Vec<Job>, _cursor: Cursor) -> Result<Vec<JobId>, QueueError> {
        let ids = self.exec(PgJobs::new(&self.postgres).enqueue(&jobs))?;
        self.wake_all();
        Ok(ids)
    }

    fn try_lease(&self, connector: &str) -> Result<Option<Job>, QueueError> {
        let held = self.leases.held();
        let next = match self.next_ahead(connector) {
            Some(next) => next,
            None if held.is_empty() => return Ok(None),
            None => {
                // One lease query per connector at a time (each scans the line's head); the
                // workers that find it running wait for the wake-up its jobs bring.
                if !self.leasing(connector, true) {
                    return Ok(None);
                }
                let looked_at = self.changes.load(std::sync::atomic::Ordering::SeqCst);
                if self.lock_found_all().get(connector) == Some(&looked_at) {
                    self.leasing(connector, false);
                    return Ok(None);
                }
                self.lease_queries
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let leased = self.exec(PgJobs::new(&self.postgres).lease(
                    self.me(),
                    &held,
                    connector,
                    LEASE_AHEAD,
                    &self.leases.in_flight(),
                ));
                if let Ok(leased) = &leased {
                    self.leases.take(leased.iter().map(|l| (l.job.id, l.part)));
                    if (leased.len() as i64) < LEASE_AHEAD {
                        self.lock_found_all()
                            .insert(connector.to_owned(), looked_at);
                    }
                }
                self.leasing(connector, false);
                let leased = leased?;
                let mut leased = leased.into_iter();
                let Some(first) = leased.next() else {
                    return Ok(None);
                };
                self.ahead
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(connector.to_owned())
                    .or_default()
                    .extend(leased);
                first
            }
        };
        let Leased {
            mut job,
            part,
            epoch,
        } = next;
        self.leased
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.id, (part, epoch));
        // Pass the wake-up on: there may be more.
        self.wake_of(connector).notify_one();
        job.updated_ms = self.clock.now_ms();
        Ok(Some(job))
    }

    fn wake_of(&self, connector: &str) -> Arc<Notify> {
        let mut wake = self.wake.lock().unwrap_or_else(|p| p.into_inner());
        wake.entry(connector.to_owned()).or_default().clone()
    }

    /// Hands the settle to the committer and returns: the next job of the record waits until
    /// it is written (this one is leased until then). A job whose partition this instance
    /// took again under a newer epoch while it ran (PostgreSQL was gone past the lease) is
    /// settled under that epoch: no one else can have settled it since, as the settle's
    /// check of the row tells.
    fn settle(&self, settle: Settle) -> Result<(), QueueError> {
        let id = settle.job.id;
        let Some((part, epoch)) = self
            .leased
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
        else {
            return Err(QueueError::Fenced(id));
        };
        let epoch = match self.leases.owned().get(&part) {
            Some(&now) => now.max(epoch),
            None => epoch,
        };
        let leased = Leased {
            job: settle.job.clone(),
            part,
            epoch,
        };
        self.unwritten
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.settles
            .send((leased, settle))
            .map_err(|_| QueueError::Shared("the settle committer has stopped".into()))
    }

    fn fire_timers(
        &self,
        parked_gave_up: &dyn Fn(&Job) -> Reason,
    ) -> Result<Option<i64>, QueueError> {
        let now = self.clock.now_ms();
        let parts: Vec<i16> = self.leases.held().into_keys().collect();
        // Partitions come and go, and other instances make jobs due: look again within 1 s.
        let soon = now + 1000;
        if parts.is_empty() {
            return Ok(Some(soon));
        }
        let mut gave_up = self.jobs(
            &format!(
                "SELECT {COLUMNS} FROM jobs WHERE part = ANY($1) AND state = 'parked' \
                 AND due_at <= now()"
            ),
            &[&parts],
            job_of,
        )?;
        for job in &mut gave_up {
            job.reason = Some(parked_gave_up(job));
            job.state = State::Dead;
            job.due_ms = None;
            job.updated_ms = now;
        }
        let (released, next): (u64, Option<i64>) = self.exec(async {
            let mut client = self.postgres.client().await?;
            let tx = client.transaction().await.map_err(self.failed())?;
            let release = tx
                .prepare_cached(
                    "UPDATE jobs SET state = 'ready', due_at = NULL \
                     WHERE part = ANY($1) AND state = 'held' AND due_at <= now()",
                )
                .await
                .map_err(self.failed())?;
            let released = tx
                .execute(&release, &[&parts])
                .await
                .map_err(self.failed())?;
            for job in &gave_up {
                jobs::store(&tx, job, None).await.map_err(self.failed())?;
            }
            let next = tx
                .prepare_cached(
                    "SELECT (extract(epoch FROM min(due_at)) * 1000)::bigint FROM jobs \
                     WHERE part = ANY($1) AND state IN ('retrying', 'held', 'parked')",
                )
                .await
                .map_err(self.failed())?;
            let next = tx
                .query_one(&next, &[&parts])
                .await
                .map_err(self.failed())?
                .get(0);
            tx.commit().await.map_err(self.failed())?;
            Ok((released, next))
        })?;
        // Workers look again when jobs became runnable: released holds, or retries now due.
        if released > 0 || !gave_up.is_empty() || next.is_some_and(|next| next <= now) {
            self.wake_all();
        }
        Ok(Some(next.map_or(soon, |next: i64| next.min(soon))))
    }

    fn timers_changed(&self) -> &Notify {
        &self.timers_changed
    }

    fn xref(&self, system: &str, kind: &str, crm_id: &str) -> Result<Option<Xref>, QueueError> {
        self.exec(PgRecords::new(&self.postgres).xref(system, kind, crm_id))
    }

    fn xrefs(&self, filter: &str, limit: usize) -> Result<Vec<Xref>, QueueError> {
        let rows = self.exec(async {
            let client = self.postgres.client().await?;
            client
                .query(
                    "SELECT detail FROM xrefs WHERE $1 = '' OR crm_id = $1 OR external_id = $1 \
                     ORDER BY system, kind, crm_id LIMIT $2",
                    &[&filter, &(limit.min(i64::MAX as usize) as i64)],
                )
                .await
                .map_err(self.failed())
        })?;
        Ok(rows
            .iter()
            .filter_map(|row| serde_json::from_value(row.get(0)).ok())
            .collect())
    }

    fn link(&self, xref: Xref) -> Result<(), QueueError> {
        self.exec(async {
            let mut client = self.postgres.client().await?;
            let tx = client.transaction().await.map_err(self.failed())?;
            super::records::write_all(&tx, &[&Effect::Xref(xref)])
                .await
                .map_err(self.failed())?;
            tx.commit().await.map_err(self.failed())
        })
    }

    fn applied(&self, flow: &str, record: &str) -> Result<Option<Applied>, QueueError> {
        self.exec(PgRecords::new(&self.postgres).applied(flow, record))
    }

    fn status(&self, order: &str) -> Result<Option<String>, QueueError> {
        self.exec(PgRecords::new(&self.postgres).status(order))
    }

    fn echo(&self, record: &str) -> Result<Option<Echo>, QueueError> {
        self.exec(self.reads.echo(record))
    }

    fn fetch_xref<'a>(
        &'a self,
        system: &'a str,
        kind: &'a str,
        crm_id: &'a str,
    ) -> Fetch<'a, Option<Xref>> {
        Box::pin(async move { self.reads.xref(system, kind, crm_id).await.map_err(shared) })
    }

    fn fetch_applied<'a>(&'a self, flow: &'a str, record: &'a str) -> Fetch<'a, Option<Applied>> {
        Box::pin(async move { self.reads.applied(flow, record).await.map_err(shared) })
    }

    fn fetch_status<'a>(&'a self, order: &'a str) -> Fetch<'a, Option<String>> {
        Box::pin(async move {
            PgRecords::new(&self.postgres)
                .status(order)
                .await
                .map_err(shared)
        })
    }

    fn fetch_echo<'a>(&'a self, record: &'a str) -> Fetch<'a, Option<Echo>> {
        Box::pin(async move { self.reads.echo(record).await.map_err(shared) })
    }

    fn poll_cursor(&self, connector: &str) -> Result<Option<Value>, QueueError> {
        let row = self.exec(async {
            let client = self.postgres.client().await?;
            client
                .query_opt(
                    "SELECT cursor FROM poll_cursors WHERE connector = $1",
                    &[&connector],
                )
                .await
                .map_err(self.failed())
        })?;
        Ok(row.and_then(|row| row.get::<_, Option<Value>>(0)))
    }

    fn poll_emitted(&self, connector: &str, order: &str) -> Result<u64, QueueError> {
        let row = self.exec(async {
            let client = self.postgres.client().await?;
            client
                .query_opt(
                    "SELECT emitted FROM poll_emitted WHERE connector = $1 AND order_ref = $2",
                    &[&connector, &order],
                )
                .await
                .map_err(self.failed())
        })?;
        Ok(row.map_or(0, |row| row.get::<_, i64>(0).max(0) as u64))
    }

    fn save_poll(
        &self,
        connector: &str,
        cursor: Option<&Value>,
        emitted: &[(String, u64)],
    ) -> Result<(), QueueError> {
        self.exec(async {
            let mut client = self.postgres.client().await?;
            let tx = client.transaction().await.map_err(self.failed())?;
            for (order, count) in emitted {
                tx.execute(
                    "INSERT INTO poll_emitted (connector, order_ref, emitted) VALUES ($1, $2, $3) \
                     ON CONFLICT (connector, order_ref) DO UPDATE SET emitted = EXCLUDED.emitted",
                    &[&connector, order, &(*count as i64)],
                )
                .await
                .map_err(self.failed())?;
            }
            if let Some(cursor) = cursor {
                tx.execute(
                    "INSERT INTO poll_cursors (connector, cursor) VALUES ($1, $2) \
                     ON CONFLICT (connector) DO UPDATE SET cursor = EXCLUDED.cursor",
                    &[&connector, cursor],
                )
                .await
                .map_err(self.failed())?;
            }
            tx.commit().await.map_err(self.failed())
        })
    }

    fn claim(&self, role: &str, lease: Duration) -> Result<bool, QueueError> {
        self.exec(async {
            let mut client = self.postgres.client().await?;
            let tx = client.transaction().await.map_err(self.failed())?;
            let taken = roles::take(&tx, role, self.me(), lease, &Value::Null)
                .await
                .map_err(self.failed())?;
            tx.commit().await.map_err(self.failed())?;
            Ok(taken.is_some())
        })
    }

    fn save_run(&self, id: u64, run: &Value) -> Result<(), QueueError> {
        self.exec(async {
            let client = self.postgres.client().await?;
            client
                .execute(
                    "INSERT INTO reconcile_runs (id, run) VALUES ($1, $2) \
                     ON CONFLICT (id) DO UPDATE SET run = EXCLUDED.run",
                    &[&(id as i64), run],
                )
                .await
                .map_err(self.failed())
        })
        .map(drop)
    }

    fn run(&self, id: u64) -> Result<Option<Value>, QueueError> {
        let row = self.exec(async {
            let client = self.postgres.client().await?;
            client
                .query_opt(
                    "SELECT run FROM reconcile_runs WHERE id = $1",
                    &[&(id as i64)],
                )
                .await
                .map_err(self.failed())
        })?;
        Ok(row.map(|row| row.get(0)))
    }

    fn runs(&self, limit: usize) -> Result<Vec<Value>, QueueError> {
        let rows = self.exec(async {
            let client = self.postgres.client().await?;
            client
                .query(
                    "SELECT run FROM reconcile_runs ORDER BY id DESC LIMIT $1",
                    &[&(limit.min(i64::MAX as usize) as i64)],
                )
                .await
                .map_err(self.failed())
        })?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    fn act(&self, id: JobId, action: Action) -> Result<Job, QueueError> {
        self.change(id, actions::name(action), move |job| {
            actions::check_accept(id, job.state, action)?;
            actions::apply(job, action);
            Ok(())
        })
    }

    fn supersede(&self, flow: &str, record: &str, by: JobId) -> Result<usize, QueueError> {
        let now = self.clock.now_ms();
        self.exec(async {
            let mut client = self.postgres.client().await?;
            let tx = client.transaction().await.map_err(self.failed())?;
            let rows = tx
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM jobs WHERE state = 'dead' AND flow = $1 \
                         AND body->>'object_id' = $2 AND id < $3 FOR UPDATE"
                    ),
                    &[&flow, &record, &(by as i64)],
                )
                .await
                .map_err(self.failed())?;
            let mut count = 0;
            for row in &rows {
                let Ok(mut job) = job_of(row) else { continue };
                actions::supersede(&mut job, by, record, now);
                jobs::store(&tx, &job, None).await.map_err(self.failed())?;
                count += 1;
            }
            tx.commit().await.map_err(self.failed())?;
            Ok(count)
        })
    }

    fn release_retrying(&self, connector: &str, limit: usize) -> Result<usize, QueueError> {
        let released = self.exec(async {
            let client = self.postgres.client().await?;
            client
                .execute(
                    "UPDATE jobs SET state = 'ready', due_at = NULL WHERE id IN \
                     (SELECT id FROM jobs WHERE state = 'retrying' AND connector = $1 \
                      ORDER BY id LIMIT $2)",
                    &[&connector, &(limit.min(i64::MAX as usize) as i64)],
                )
                .await
                .map_err(self.failed())
        })?;
        self.changed();
        self.wake_of(connector).notify_waiters();
        Ok(released as usize)
    }

    fn release_parked(&self, on: &[(String, String)]) -> Result<usize, QueueError> {
        let released = self.exec(async {
            let mut client = self.postgres.client().await?;
            let tx = client.transaction().await.map_err(self.failed())?;
            let released = jobs::release_parked(&tx, on).await.map_err(self.failed())?;
            if released > 0 {
                tx.batch_execute(&format!("NOTIFY {JOBS_CHANNEL}"))
                    .await
                    .map_err(self.failed())?;
            }
            tx.commit().await.map_err(self.failed())?;
            Ok(released)
        })?;
        if released > 0 {
            self.wake_all();
            self.timers_changed.notify_one();
        }
        Ok(released as usize)
    }

    fn resubmit(&self, id: JobId, payload: Option<Value>) -> Result<Job, QueueError> {
        self.change(id, "resubmit", move |job| {
            actions::resubmit(job);
            if payload.is_some() {
                job.payload = payload;
            }
            Ok(())
        })
    }

    fn get(&self, id: JobId) -> Result<Job, QueueError> {
        let open = self.jobs(
            &format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"),
            &[&(id as i64)],
            job_of,
        )?;
        if let Some(job) = open.into_iter().next() {
            return Ok(job);
        }
        block_on(self.finished(id))?.ok_or(QueueError::NotFound(id))
    }

    fn attempts(&self, id: JobId) -> Result<Vec<Attempt>, QueueError> {
        let rows = self.exec(async {
            let client = self.postgres.client().await?;
            client
                .query(
                    "SELECT detail FROM job_log WHERE job = $1 AND kind = 'attempt' ORDER BY at",
                    &[&(id as i64)],
                )
                .await
                .map_err(self.failed())
        })?;
        Ok(rows
            .iter()
            .filter_map(|row| serde_json::from_value(row.get(0)).ok())
            .collect())
    }

    fn list(
        &self,
        scope: Scope<'_>,
        before: Option<JobId>,
        limit: usize,
        keep: &dyn Fn(&Job) -> bool,
    ) -> Result<Page, QueueError> {
        let before = before.unwrap_or(JobId::MAX).min(i64::MAX as u64) as i64;
        let budget = SCAN_BUDGET as i64;
        let mut cut = None;
        let (mut found, since_ms) = match scope {
            // Leased jobs are those in flight (their rows say ready or retrying).
            Scope::State(State::Leased) => {
                let in_flight: Vec<i64> = self
                    .exec(self.in_flight_anywhere())?
                    .into_iter()
                    .map(|id| id as i64)
                    .collect();
                let mut found = self.jobs(
                    &format!(
                        "SELECT {COLUMNS} FROM jobs WHERE id = ANY($1) AND id < $2 \
                         ORDER BY id DESC LIMIT $3"
                    ),
                    &[&in_flight, &before, &budget],
                    job_of,
                )?;
                found.retain(|job| job.state == State::Leased);
                (found, None)
            }
            Scope::State(state) => {
                let mut found = self.jobs(
                    &format!(
                        "SELECT {COLUMNS} FROM jobs WHERE state = $1 AND id < $2 \
                         ORDER BY id DESC LIMIT $3"
                    ),
                    &[&state.as_str(), &before, &budget],
                    job_of,
                )?;
                found.retain(|job| job.state == state);
                (found, None)
            }
            // The record's jobs among the newest SCAN_BUDGET of each table below `before`, as
            // the embedded store bounds its search: an index on the record's fields would
            // cost every order its entries, and a search that does not stop reads all of
            // `finished` for a record with few jobs.
            Scope::Record(record) => {
                let of_record = "(order_key = $1 OR object_id = $1 OR external_id = $1)";
                let mut found = self.jobs(
                    &format!(
                        "SELECT {COLUMNS} FROM (SELECT *, body->>'object_id' AS object_id, \
                         body->>'external_id' AS external_id FROM jobs WHERE id < $2 \
                         ORDER BY id DESC LIMIT $3) j WHERE {of_record}"
                    ),
                    &[&record, &before, &budget],
                    job_of,
                )?;
                found.extend(self.jobs(
                    &format!(
                        "SELECT id, job FROM (SELECT id, job, job->>'order_key' AS order_key, \
                         job->>'object_id' AS object_id, job->>'external_id' AS external_id \
                         FROM finished WHERE id < $2 ORDER BY id DESC LIMIT $3) f \
                         WHERE {of_record}"
                    ),
                    &[&record, &before, &budget],
                    finished_of,
                )?);
                // Below the lower end of a full window, the other table was not read either.
                cut = self
                    .window_end("jobs", before)?
                    .max(self.window_end("finished", before)?);
                if let Some(cut) = cut {
                    found.retain(|job| job.id >= cut);
                }
                (found, None)
            }
            Scope::All { since_ms } => {
                let mut found = self.jobs(
                    &format!("SELECT {COLUMNS} FROM jobs WHERE id < $1 ORDER BY id DESC LIMIT $2"),
                    &[&before, &budget],
                    job_of,
                )?;
                found.extend(self.jobs(
                    "SELECT id, job FROM finished WHERE id < $1 ORDER BY id DESC LIMIT $2",
                    &[&before, &budget],
                    finished_of,
                )?);
                (found, since_ms)
            }
        };
        found.sort_by_key(|job| std::cmp::Reverse(job.id));
        found.dedup_by_key(|job| job.id);
        let mut page = Page::default();
        for (scanned, job) in found.into_iter().enumerate() {
            if scanned == SCAN_BUDGET {
                page.next_before = Some(job.id + 1);
                break;
            }
            if since_ms.is_some_and(|t| job.created_ms < t) {
                break;
            }
            if keep(&job) {
                let id = job.id;
                page.jobs.push(job);
                if page.jobs.len() == limit {
                    page.next_before = Some(id);
                    break;
                }
            }
        }
        if page.next_before.is_none() {
            page.next_before = cut;
        }
        Ok(page)
    }

    fn ids_in(&self, state: State) -> Vec<JobId> {
        let rows = self.exec(async {
            let client = self.postgres.client().await?;
            client
                .query(
                    "SELECT id FROM jobs WHERE state = $1 ORDER BY id",
                    &[&state.as_str()],
                )
                .await
                .map_err(self.failed())
        });
        self.or_empty("ids", rows)
            .iter()
            .map(|row| row.get::<_, i64>(0) as JobId)
            .collect()
    }

    fn groups(&self, state: State, keep: usize) -> BTreeMap<String, (u64, Vec<JobId>)> {
        let rows = self.exec(async {
            let client = self.postgres.client().await?;
            client
                .query(
                    "SELECT coalesce(reason->>'code', ''), count(*), \
                     (array_agg(id ORDER BY id DESC))[1:$2] FROM jobs WHERE state = $1 \
                     GROUP BY 1",
                    &[&state.as_str(), &(keep.min(i32::MAX as usize) as i32)],
                )
                .await
                .map_err(self.failed())
        });
        self.or_empty("groups", rows)
            .iter()
            .map(|row| {
                let ids: Vec<i64> = row.get(2);
                (
                    row.get::<_, String>(0),
                    (
                        row.get::<_, i64>(1) as u64,
                        ids.into_iter().map(|id| id as JobId).collect(),
                    ),
                )
            })
            .collect()
    }

    fn entry(&self, id: JobId) -> Option<Entry> {
        let found = self.jobs(
            &format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"),
            &[&(id as i64)],
            job_of,
        );
        self.or_empty("entry", found).first().map(entry_of)
    }

    /// Jobs by connector and state; a job in flight (this instance's now, the others' as of
    /// their last heartbeat) counts as leased.
    fn counts(&self) -> HashMap<(Arc<str>, State), u64> {
        let rows = self.exec(async {
            let in_flight: Vec<i64> = self
                .in_flight_anywhere()
                .await?
                .into_iter()
                .map(|id| id as i64)
                .collect();
            let client = self.postgres.client().await?;
            client
                .query(
                    "SELECT connector, CASE WHEN state IN ('ready', 'retrying') \
                     AND id = ANY($1) THEN 'leased' ELSE state END, count(*) \
                     FROM jobs GROUP BY 1, 2",
                    &[&in_flight],
                )
                .await
                .map_err(self.failed())
        });
        self.or_empty("counts", rows)
            .iter()
            .filter_map(|row| {
                let state = State::parse(row.get(1))?;
                let connector: String = row.get(0);
                Some(((Arc::from(connector), state), row.get::<_, i64>(2) as u64))
            })
            .collect()
    }

    fn oldest_open(&self) -> Option<JobId> {
        let row = self.exec(async {
            let client = self.postgres.client().await?;
            client
                .query_one(
                    "SELECT min(id) FROM jobs WHERE state IN \
                     ('ready', 'leased', 'retrying', 'parked', 'held')",
                    &[],
                )
                .await
                .map_err(self.failed())
        });
        self.or_empty("oldest", row.map(Some))
            .and_then(|row| row.get::<_, Option<i64>>(0))
            .map(|id| id as JobId)
    }

    fn members(&self) -> Vec<Member> {
        let rows = self.exec(async {
            let client = self.postgres.client().await?;
            client
                .query(
                    "SELECT i.name, (extract(epoch FROM i.seen_until) * 1000)::bigint, \
                     coalesce((SELECT array_agg(p.part ORDER BY p.part) FROM parts p \
                               WHERE p.owner = i.name AND p.lease_until > now()), '{}'), \
                     cardinality(i.leased)::bigint \
                     FROM instances i WHERE i.seen_until > now() ORDER BY i.name",
                    &[],
                )
                .await
                .map_err(self.failed())
        });
        self.or_empty("members", rows)
            .iter()
            .map(|row| {
                let name: String = row.get(0);
                Member {
                    this_instance: name == self.me(),
                    alive_until_ms: row.get(1),
                    partitions: row.get(2),
                    leased: match name == self.me() {
                        true => self.leases.in_flight().len() as u64,
                        false => row.get::<_, i64>(3) as u64,
                    },
                    name,
                }
            })
            .collect()
    }

    /// History leaves by partition (`space.rs`), not through this.
    fn upkeep(
        &self,
        _below_seq: u64,
        _read_event: &dyn Fn(&Job) -> Option<Value>,
    ) -> Result<u64, QueueError> {
        Ok(0)
    }

    /// Writes the last settles and gives the partitions back.
    fn close_clean(&self) -> Result<(), QueueError> {
        if !self.settles_written(Duration::from_secs(10)) {
            tracing::warn!("settles still unwritten after 10 s; their jobs run again, in doubt");
        }
        self.release_all()
    }

    fn flush(&self) -> Result<(), QueueError> {
        self.settles_written(Duration::from_secs(10));
        Ok(())
    }
}
