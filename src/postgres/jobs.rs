//! Jobs in PostgreSQL: narrow rows (the event is referred to, never copied; the job's other
//! fields ride in `body`), leased only from the partitions this instance holds, one at a time
//! per record in id order, settled only under the lease's epoch, attempts logged append-only in
//! `job_log`, settled jobs moved to `finished`.
//!
//! Per-record order needs no lock of its own: a record's jobs all hash to one partition, a
//! partition has one owner, and a job is leased only when no earlier job of its record is
//! still in line (ready, leased or retrying; parked and held jobs step out of line as in the
//! embedded queue). When a partition moves, the jobs the old owner had leased are leased again
//! by the new one, in doubt (the old owner's settles are refused by the epoch).

use std::collections::BTreeMap;

use serde_json::Value;
use tokio_postgres::Row;

use super::leases::{FENCE, partition_of};
use super::{PgError, Postgres};
use crate::journal::Position;
use crate::queue::{Job, JobId, QueueError, Reason, Settle, State};

/// The channel a change that makes jobs runnable notifies (the router's inserts, releases,
/// operators' actions): every instance's workers look again.
pub const JOBS_CHANNEL: &str = "handoff_jobs";

/// The columns a [`Job`] is read from (`job_of`).
pub const COLUMNS: &str = "id, state, attempts, \
    (extract(epoch FROM due_at) * 1000)::bigint AS due_ms, in_doubt, reason, payload, \
    waits_for, body";

/// A job to store by the tests and tools that make jobs without a mapping: the event it comes
/// from and where it goes.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub event: i64,
    pub order_key: String,
    pub flow: String,
    pub connector: String,
}

impl NewJob {
    pub fn into_job(self) -> Job {
        Job {
            id: 0,
            seq: self.event as u64,
            at: Position {
                segment: 0,
                offset: 0,
            },
            source: "test".into(),
            event_id: format!("event-{}", self.event),
            operation: "upsert".into(),
            object_id: Some(self.order_key.clone()),
            order_key: self.order_key,
            flow: self.flow,
            connector: self.connector,
            version: None,
            state: State::Ready,
            attempts: 0,
            created_ms: 0,
            updated_ms: 0,
            due_ms: None,
            reason: None,
            waits_for: None,
            in_doubt: false,
            resubmits: 0,
            accepted: false,
            failing: None,
            payload: None,
            mapping_version: None,
            external_id: None,
        }
    }
}

/// A job leased to this instance under `epoch` of its partition.
#[derive(Debug, Clone, PartialEq)]
pub struct Leased {
    pub job: Job,
    pub part: i16,
    pub epoch: i64,
}

/// The job as stored in `body`: everything but its payload and the columns.
fn body(job: &Job) -> Value {
    let mut value = serde_json::to_value(job).expect("a job serialises");
    if let Some(map) = value.as_object_mut() {
        map.remove("payload");
    }
    value
}

fn json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("queue values serialise")
}

/// A job from a row of [`COLUMNS`].
pub fn job_of(row: &Row) -> Result<Job, QueueError> {
    let id: i64 = row.get(0);
    let mut job: Job = serde_json::from_value(row.get(8))
        .map_err(|e| QueueError::Corrupt(format!("job {id}: {e}")))?;
    job.id = id as JobId;
    let state: &str = row.get(1);
    job.state = State::parse(state).ok_or_else(|| QueueError::Corrupt(format!("job {id}")))?;
    job.attempts = row.get::<_, i32>(2).max(0) as u32;
    job.due_ms = row.get(3);
    job.in_doubt = row.get(4);
    job.reason = row
        .get::<_, Option<Value>>(5)
        .and_then(|v| serde_json::from_value::<Reason>(v).ok());
    job.payload = row.get(6);
    job.waits_for = row
        .get::<_, Option<Value>>(7)
        .and_then(|v| serde_json::from_value(v).ok());
    Ok(job)
}

/// A settled job as `finished` keeps it.
pub fn finished_of(row: &Row) -> Result<Job, QueueError> {
    let id: i64 = row.get(0);
    serde_json::from_value(row.get(1)).map_err(|e| QueueError::Corrupt(format!("job {id}: {e}")))
}

/// Inserts jobs (each in its record's partition) within `tx`; returns their ids in order.
pub(super) async fn insert(
    tx: &deadpool_postgres::Transaction<'_>,
    jobs: &[Job],
) -> Result<Vec<JobId>, tokio_postgres::Error> {
    let statement = tx
        .prepare(
            "INSERT INTO jobs (event, part, order_key, flow, connector, state, reason, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .await?;
    let mut ids = Vec::with_capacity(jobs.len());
    for job in jobs {
        let part = partition_of(&job.order_key);
        let row = tx
            .query_one(
                &statement,
                &[
                    &(job.seq as i64),
                    &part,
                    &job.order_key,
                    &job.flow,
                    &job.connector,
                    &job.state.as_str(),
                    &job.reason.as_ref().map(json),
                    &body(job),
                ],
            )
            .await?;
        ids.push(row.get::<_, i64>(0) as JobId);
    }
    if !jobs.is_empty() {
        tx.batch_execute(&format!("NOTIFY {JOBS_CHANNEL}")).await?;
    }
    Ok(ids)
}

/// Where a stored job goes: a settled one leaves `jobs` for `finished`, any other is updated
/// in place. `fence` (partition, instance, epoch) makes the write conditional on this instance
/// still holding the job's lease; returns whether the job was written.
pub(super) async fn store(
    tx: &deadpool_postgres::Transaction<'_>,
    job: &Job,
    fence: Option<(i16, &str, i64)>,
) -> Result<bool, tokio_postgres::Error> {
    let id = job.id as i64;
    let (condition, part, me, epoch) = match fence {
        Some((part, me, epoch)) => (
            format!("part = $1 AND leased_epoch = $3 AND state = 'leased' AND {FENCE}"),
            part,
            me,
            epoch,
        ),
        None => (
            "$1::smallint IS NOT NULL AND $2::text IS NOT NULL AND $3::bigint IS NOT NULL"
                .to_owned(),
            0,
            "",
            0,
        ),
    };
    let changed = match job.state {
        State::Done | State::Skipped => {
            let deleted = tx
                .execute(
                    &format!("DELETE FROM jobs WHERE id = $4 AND {condition}"),
                    &[&part, &me, &epoch, &id],
                )
                .await?;
            if deleted == 1 {
                tx.execute(
                    "INSERT INTO finished (id, job) VALUES ($1, $2)",
                    &[&id, &json(job)],
                )
                .await?;
            }
            deleted
        }
        _ => {
            tx.execute(
                &format!(
                    "UPDATE jobs SET state = $5, attempts = $6, \
                     due_at = to_timestamp($7::float8 / 1000.0), in_doubt = $8, reason = $9, \
                     waits_for = $10, payload = $11, body = $12 WHERE id = $4 AND {condition}"
                ),
                &[
                    &part,
                    &me,
                    &epoch,
                    &id,
                    &job.state.as_str(),
                    &(job.attempts as i32),
                    &job.due_ms.map(|ms| ms as f64),
                    &job.in_doubt,
                    &job.reason.as_ref().map(json),
                    &job.waits_for.as_ref().map(json),
                    &job.payload,
                    &body(job),
                ],
            )
            .await?
        }
    };
    Ok(changed == 1)
}

pub struct PgJobs<'a> {
    postgres: &'a Postgres,
}

impl<'a> PgJobs<'a> {
    pub fn new(postgres: &'a Postgres) -> PgJobs<'a> {
        PgJobs { postgres }
    }

    fn failed(&self) -> impl Fn(tokio_postgres::Error) -> PgError + '_ {
        |e| self.postgres.query_error(&e)
    }

    /// Stores the jobs in one transaction; returns their ids (in order).
    pub async fn enqueue(&self, jobs: &[Job]) -> Result<Vec<JobId>, PgError> {
        let mut client = self.postgres.client().await?;
        let tx = client.transaction().await.map_err(self.failed())?;
        let ids = insert(&tx, jobs).await.map_err(self.failed())?;
        tx.commit().await.map_err(self.failed())?;
        Ok(ids)
    }

    /// Leases up to `limit` runnable jobs of `connector` in the partitions `held` (partition →
    /// epoch): ready or due jobs, and jobs leased under an older epoch (their owner lost the
    /// partition), each the first job in its record's line.
    pub async fn lease(
        &self,
        me: &str,
        held: &BTreeMap<i16, i64>,
        connector: &str,
        limit: i64,
    ) -> Result<Vec<Leased>, PgError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let (parts, epochs): (Vec<i16>, Vec<i64>) = held.iter().map(|(p, e)| (*p, *e)).unzip();
        let client = self.postgres.client().await?;
        let rows = client
            .query(
                "WITH mine AS (SELECT * FROM unnest($1::smallint[], $2::bigint[]) AS m(part, epoch)),
                     candidates AS (
                        SELECT j.id, m.epoch FROM jobs j JOIN mine m ON m.part = j.part
                        WHERE j.connector = $3
                          AND ((j.state IN ('ready', 'retrying') AND (j.due_at IS NULL OR j.due_at <= now()))
                               OR (j.state = 'leased' AND j.leased_epoch < m.epoch))
                          AND NOT EXISTS (SELECT 1 FROM jobs k WHERE k.order_key = j.order_key
                                          AND k.id < j.id AND k.state IN ('ready', 'leased', 'retrying'))
                        ORDER BY j.id LIMIT $4 FOR UPDATE OF j SKIP LOCKED)
                     UPDATE jobs SET state = 'leased', attempts = jobs.attempts + 1,
                        in_doubt = jobs.in_doubt OR jobs.state = 'leased', due_at = NULL,
                        leased_epoch = candidates.epoch
                     FROM candidates WHERE jobs.id = candidates.id
                       AND EXISTS (SELECT 1 FROM parts WHERE parts.part = jobs.part AND owner = $5
                                   AND parts.epoch = candidates.epoch AND lease_until > now())
                     RETURNING jobs.id, jobs.state, jobs.attempts, NULL::bigint, jobs.in_doubt,
                        jobs.reason, jobs.payload, jobs.waits_for, jobs.body, jobs.part,
                        jobs.leased_epoch",
                &[&parts, &epochs, &connector, &limit, &me],
            )
            .await
            .map_err(self.failed())?;
        let mut leased = Vec::with_capacity(rows.len());
        for row in &rows {
            let job = job_of(row).map_err(|e| PgError::Query {
                at: self.postgres.at().to_owned(),
                reason: e.to_string(),
            })?;
            leased.push(Leased {
                job,
                part: row.get(9),
                epoch: row.get(10),
            });
        }
        leased.sort_by_key(|l| l.job.id);
        Ok(leased)
    }

    /// Stores how the attempt ended, if this instance still holds the job's partition under
    /// the epoch it leased it with: the job's new state, its attempt, its effects, and the
    /// jobs parked on what it made released. Returns false (and changes nothing) when it does
    /// not hold it any more.
    pub async fn settle(
        &self,
        me: &str,
        leased: &Leased,
        settle: &Settle,
    ) -> Result<bool, PgError> {
        let written = self
            .settle_all(me, std::slice::from_ref(&(leased.clone(), settle.clone())))
            .await?;
        Ok(written[0])
    }

    /// [`PgJobs::settle`] for many jobs in one transaction (the settle committer's batch);
    /// says of each whether it was written.
    pub async fn settle_all(
        &self,
        me: &str,
        settles: &[(Leased, Settle)],
    ) -> Result<Vec<bool>, PgError> {
        let mut client = self.postgres.client().await?;
        let tx = client.transaction().await.map_err(self.failed())?;
        let mut written = Vec::with_capacity(settles.len());
        let mut released = false;
        for (leased, settle) in settles {
            let stored = store(&tx, &settle.job, Some((leased.part, me, leased.epoch)))
                .await
                .map_err(self.failed())?;
            written.push(stored);
            if !stored {
                continue;
            }
            if let Some(attempt) = &settle.attempt {
                let mut detail = json(attempt);
                detail["by"] = Value::from(me);
                detail["epoch"] = Value::from(leased.epoch);
                tx.execute(
                    "INSERT INTO job_log (job, kind, detail) VALUES ($1, 'attempt', $2)",
                    &[&(settle.job.id as i64), &detail],
                )
                .await
                .map_err(self.failed())?;
            }
            super::records::write(&tx, &settle.effects)
                .await
                .map_err(self.failed())?;
            if settle.job.state == State::Done && !settle.releases.is_empty() {
                released |= release_parked(&tx, &settle.releases)
                    .await
                    .map_err(self.failed())?
                    > 0;
            }
        }
        supersede(&tx, settles, &written)
            .await
            .map_err(self.failed())?;
        if released {
            tx.batch_execute(&format!("NOTIFY {JOBS_CHANNEL}"))
                .await
                .map_err(self.failed())?;
        }
        tx.commit().await.map_err(self.failed())?;
        Ok(written)
    }
}

/// Settles the dead letters that the delivered jobs among `settles` make moot (an older job of
/// the same flow and record) as skipped, `superseded`: one query for the whole batch.
async fn supersede(
    tx: &deadpool_postgres::Transaction<'_>,
    settles: &[(Leased, Settle)],
    written: &[bool],
) -> Result<(), tokio_postgres::Error> {
    let mut flows = Vec::new();
    let mut records = Vec::new();
    let mut bys = Vec::new();
    for ((_, settle), _) in settles.iter().zip(written).filter(|(_, w)| **w) {
        if let (State::Done, Some(record)) = (settle.job.state, &settle.job.object_id) {
            flows.push(settle.job.flow.as_str());
            records.push(record.as_str());
            bys.push(settle.job.id as i64);
        }
    }
    if bys.is_empty() {
        return Ok(());
    }
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS}, d.by, d.record FROM jobs j \
                 JOIN unnest($1::text[], $2::text[], $3::bigint[]) AS d(flow, record, by) \
                 ON j.flow = d.flow AND j.body->>'object_id' = d.record AND j.id < d.by \
                 WHERE j.state = 'dead' FOR UPDATE OF j"
            ),
            &[&flows, &records, &bys],
        )
        .await?;
    let now = chrono::Utc::now().timestamp_millis();
    for row in &rows {
        let Ok(mut job) = job_of(row) else { continue };
        let (by, record): (i64, &str) = (row.get(9), row.get(10));
        crate::queue::actions::supersede(&mut job, by as JobId, record, now);
        store(tx, &job, None).await?;
    }
    Ok(())
}

/// Makes the jobs parked on any of `on` (kind, id) ready; returns how many.
pub(super) async fn release_parked(
    tx: &deadpool_postgres::Transaction<'_>,
    on: &[(String, String)],
) -> Result<u64, tokio_postgres::Error> {
    let on: Vec<Value> = on.iter().map(json).collect();
    tx.execute(
        "UPDATE jobs SET state = 'ready', due_at = NULL, waits_for = NULL, reason = NULL \
         WHERE state = 'parked' AND waits_for = ANY($1::jsonb[])",
        &[&on],
    )
    .await
}
