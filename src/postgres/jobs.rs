//! Jobs in PostgreSQL: narrow rows (the event is referred to, never copied; the job's other
//! fields ride in `body`), leased only from the partitions this instance holds, one at a time
//! per record in id order, settled only under the lease's epoch, attempts logged append-only in
//! `job_log`, settled jobs moved to `finished`.
//!
//! A lease reads and writes nothing else: the instance keeps it in memory (`leases.rs`) and
//! names the jobs it has in flight in its next leases, which skip them. A leased job's row
//! stays ready (or retrying), so it still holds its record's line.
//!
//! Per-record order needs no lock of its own: a record's jobs all hash to one partition, a
//! partition has one owner, and a job is leased only when no earlier job of its record is
//! still in line (ready or retrying; parked and held jobs step out of line as in the embedded
//! queue). When a partition moves, its runnable jobs are leased by the new owner, in doubt (the
//! old owner's settles are refused by the epoch).

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;
use tokio_postgres::Row;
use tokio_postgres::types::Json;

use super::leases::{FENCE, partition_of};
use super::{PgError, Postgres};
use crate::journal::Position;
use crate::queue::records::Effect;
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

/// The job as stored in `body`: everything but its payload and the columns. Written straight
/// from the job (no `Value` in between) unless an operator's payload must be left out.
fn body(job: &Job) -> Body<'_> {
    match &job.payload {
        None => Body::Job(Json(job)),
        Some(_) => {
            let mut value = serde_json::to_value(job).expect("a job serialises");
            if let Some(map) = value.as_object_mut() {
                map.remove("payload");
            }
            Body::Value(value)
        }
    }
}

/// A job's `body` parameter (see [`body`]).
#[derive(Debug)]
enum Body<'a> {
    Job(Json<&'a Job>),
    Value(Value),
}

impl tokio_postgres::types::ToSql for Body<'_> {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Body::Job(job) => job.to_sql(ty, out),
            Body::Value(value) => value.to_sql(ty, out),
        }
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <Value as tokio_postgres::types::ToSql>::accepts(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}

fn json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("queue values serialise")
}

/// A job from a row of [`COLUMNS`].
pub fn job_of(row: &Row) -> Result<Job, QueueError> {
    let id: i64 = row.get(0);
    let Json(mut job) = row
        .try_get::<_, Json<Job>>(8)
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
    row.try_get::<_, Json<Job>>(1)
        .map(|Json(job)| job)
        .map_err(|e| QueueError::Corrupt(format!("job {id}: {e}")))
}

/// Inserts jobs (each in its record's partition) within `tx` in one statement; returns their
/// ids in order (identities are drawn in the order rows are inserted, which `ORDER BY n` fixes,
/// so the ids sorted are the jobs' ids in order).
pub(super) async fn insert(
    tx: &deadpool_postgres::Transaction<'_>,
    jobs: &[Job],
) -> Result<Vec<JobId>, tokio_postgres::Error> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let statement = tx
        .prepare_cached(
            "INSERT INTO jobs (event, part, order_key, flow, connector, state, reason, body) \
             SELECT event, part, order_key, flow, connector, state, reason, body \
             FROM unnest($1::bigint[], $2::smallint[], $3::text[], $4::text[], $5::text[], \
                         $6::text[], $7::jsonb[], $8::jsonb[]) WITH ORDINALITY \
                  AS j(event, part, order_key, flow, connector, state, reason, body, n) \
             ORDER BY n RETURNING id",
        )
        .await?;
    let events: Vec<i64> = jobs.iter().map(|j| j.seq as i64).collect();
    let parts: Vec<i16> = jobs.iter().map(|j| partition_of(&j.order_key)).collect();
    let keys: Vec<&str> = jobs.iter().map(|j| j.order_key.as_str()).collect();
    let flows: Vec<&str> = jobs.iter().map(|j| j.flow.as_str()).collect();
    let connectors: Vec<&str> = jobs.iter().map(|j| j.connector.as_str()).collect();
    let states: Vec<&str> = jobs.iter().map(|j| j.state.as_str()).collect();
    let reasons: Vec<Option<Value>> = jobs.iter().map(|j| j.reason.as_ref().map(json)).collect();
    let bodies: Vec<Body> = jobs.iter().map(body).collect();
    let rows = tx
        .query(
            &statement,
            &[
                &events,
                &parts,
                &keys,
                &flows,
                &connectors,
                &states,
                &reasons,
                &bodies,
            ],
        )
        .await?;
    let mut ids: Vec<JobId> = rows.iter().map(|r| r.get::<_, i64>(0) as JobId).collect();
    ids.sort_unstable();
    tx.batch_execute(&format!("NOTIFY {JOBS_CHANNEL}")).await?;
    Ok(ids)
}

/// A settle's check that its job is still runnable (no one changed it since the lease). Written
/// as an expression, not `state IN (…)`: a condition that implies the predicate of the partial
/// index `jobs_runnable` made it a candidate, and under stale statistics the planner read all
/// of it (filtering by id) instead of probing `jobs_pkey`.
const IN_LINE: &str = "state || '' IN ('ready', 'retrying')";

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
            format!("part = $1 AND {IN_LINE} AND {FENCE}"),
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
            let delete = tx
                .prepare_cached(&format!("DELETE FROM jobs WHERE id = $4 AND {condition}"))
                .await?;
            let deleted = tx.execute(&delete, &[&part, &me, &epoch, &id]).await?;
            if deleted == 1 {
                let insert = tx
                    .prepare_cached("INSERT INTO finished (id, job) VALUES ($1, $2)")
                    .await?;
                tx.execute(&insert, &[&id, &Json(job)]).await?;
            }
            deleted
        }
        _ => {
            let update = tx
                .prepare_cached(&format!(
                    "UPDATE jobs SET state = $5, attempts = $6, \
                     due_at = to_timestamp($7::float8 / 1000.0), in_doubt = $8, reason = $9, \
                     waits_for = $10, payload = $11, body = $12 WHERE id = $4 AND {condition}"
                ))
                .await?;
            tx.execute(
                &update,
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

/// The lease query (`PgJobs::lease`): `$1` partitions and `$2` their epochs, `$3` connector,
/// `$4` how many, `$5` this instance, `$6` the jobs it has in flight (skipped). The partitions
/// still held under those epochs are
/// found once (a scalar subquery), so the scan can walk `jobs_runnable` in id order, check each
/// job's line with a probe of `jobs_by_key`, and stop at `$4` (on `Postgres::by_key`'s connections). It
/// writes nothing: the attempt it counts is written by the settle.
///
/// Every access to `jobs` is written so that one index path is possible, whatever the
/// statistics say: a vacuum that found the queue empty leaves the planner expecting no rows,
/// and then a scan of a whole index costs it as little as a probe. The line check is a
/// subplan (`OFFSET 0` keeps it from becoming a join, whose inner side could be a scan of all
/// of `jobs_by_key` for every job walked past) with `k.id + 0` (so `jobs_pkey` is no
/// candidate). Those plans gave leases of 0.5-1.5 s and a minute of stalled deliveries in a
/// soak under a CPU shortage, until autovacuum analysed the table again. ('leased' in the line
/// check is for rows an earlier version left so.)
const LEASE: &str = "SELECT j.id, 'leased'::text AS state, j.attempts + 1 AS attempts,
        NULL::bigint AS due_ms, j.in_doubt, j.reason, j.payload, j.waits_for, j.body, j.part,
        ($2::bigint[])[array_position($1::smallint[], j.part)] AS epoch, j.event
        FROM jobs j
        WHERE j.connector = $3 AND j.state IN ('ready', 'retrying')
          AND (j.due_at IS NULL OR j.due_at <= now())
          AND j.part = ANY(ARRAY(SELECT part FROM parts
                                 WHERE part = ANY($1::smallint[]) AND owner = $5
                                   AND epoch = ($2::bigint[])[array_position($1::smallint[], part)]
                                   AND lease_until > now()))
          AND j.id <> ALL($6::bigint[])
          AND NOT EXISTS (SELECT 1 FROM jobs k WHERE k.order_key = j.order_key
                          AND k.id + 0 < j.id AND k.state IN ('ready', 'leased', 'retrying')
                          OFFSET 0)
        ORDER BY j.id LIMIT $4";

// The lease runs on `Postgres::by_key`'s connections (`Plans::IndexPathsOnce`). The planner
// settings are for it: a queue table's statistics are always stale (taken while it was nearly
// empty, or full), and with them the planner sorted every runnable job, or read them through
// bitmaps, and checked each one's line through the dead entries a busy queue leaves between
// vacuums: leases of 0.3-50 s in the soak, the queue stalled for tens of seconds. With sorts,
// bitmap and sequential scans, hash and merge joins priced out, only the walk in index order
// is left (3 ms against 190 ms on a reproduction with 150,000 dead rows and 8,000 waiting).
// With one shape left, the plan is made once per connection (generic) instead of on every
// lease: planning took as long as a third of the lease's execution (pg_stat_statements with
// track_planning, benches/postgres.sh). Set for the connection rather than per transaction,
// a lease is one statement and one round trip (it was `BEGIN`, the settings, the query and
// `ROLLBACK`).

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
    /// epoch), other than those in `in_flight` (this instance's, leased before and not yet
    /// settled): ready or due jobs, each the first job in its record's line, in id order. The
    /// scan walks `jobs_runnable` in id order and stops at `limit`. Nothing is written: the
    /// caller keeps the lease (`Leases::take`). (The runnable jobs of a partition taken from
    /// an owner whose lease ran out were marked in doubt when it was taken: `leases.rs`.)
    pub async fn lease(
        &self,
        me: &str,
        held: &BTreeMap<i16, i64>,
        connector: &str,
        limit: i64,
        in_flight: &[i64],
    ) -> Result<Vec<Leased>, PgError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .run_lease(LEASE, me, held, connector, limit, in_flight)
            .await?;
        // The events the delivery path will read (unless an operator's payload replaces
        // one), read now unless this instance's router kept them.
        let missing: Vec<i64> = rows
            .iter()
            .filter(|row| row.get::<_, Option<Value>>(6).is_none())
            .map(|row| row.get::<_, i64>(11))
            .filter(|&event| !self.postgres.has_event(event as u64))
            .collect();
        if !missing.is_empty() {
            let client = self.postgres.client().await?;
            let statement = client
                .prepare_cached("SELECT id, envelope FROM events WHERE id = ANY($1::bigint[])")
                .await
                .map_err(self.failed())?;
            let events = client
                .query(&statement, &[&missing])
                .await
                .map_err(self.failed())?;
            self.postgres.keep_events(
                events
                    .iter()
                    .map(|row| (row.get::<_, i64>(0) as u64, row.get(1))),
            );
        }
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

    /// The plan [`PgJobs::lease`] runs with now, as `EXPLAIN` prints it (for tests and for
    /// diagnosing a slow queue): the same statement, parameters and planner settings.
    pub async fn lease_plan(
        &self,
        me: &str,
        held: &BTreeMap<i16, i64>,
        connector: &str,
        limit: i64,
    ) -> Result<String, PgError> {
        let explain = format!("EXPLAIN {LEASE}");
        let rows = self
            .run_lease(&explain, me, held, connector, limit, &[])
            .await?;
        Ok(rows
            .iter()
            .map(|row| row.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n"))
    }

    /// Runs `sql` (the lease, or its `EXPLAIN`) with the lease's parameters on
    /// [`Postgres::by_key`]'s connections, a read-only statement on its own.
    async fn run_lease(
        &self,
        sql: &str,
        me: &str,
        held: &BTreeMap<i16, i64>,
        connector: &str,
        limit: i64,
        in_flight: &[i64],
    ) -> Result<Vec<tokio_postgres::Row>, PgError> {
        let (parts, epochs): (Vec<i16>, Vec<i64>) = held.iter().map(|(p, e)| (*p, *e)).unzip();
        let client = self.postgres.by_key()?.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(self.failed())?;
        client
            .query(
                &statement,
                &[&parts, &epochs, &connector, &limit, &me, &in_flight],
            )
            .await
            .map_err(self.failed())
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
    /// says of each whether it was written. Each kind of write is one statement for the
    /// whole batch (a delivered job's delete and its move to `finished`, the attempts, each
    /// kind of effect, the releases), so a batch costs a handful of round trips.
    pub async fn settle_all(
        &self,
        me: &str,
        settles: &[(Leased, Settle)],
    ) -> Result<Vec<bool>, PgError> {
        let mut client = self.postgres.by_key()?.client().await?;
        let tx = client.transaction().await.map_err(self.failed())?;
        let written = store_all(&tx, me, settles).await.map_err(self.failed())?;
        let kept: Vec<&(Leased, Settle)> = settles
            .iter()
            .zip(&written)
            .filter(|(_, w)| **w)
            .map(|(s, _)| s)
            .collect();
        log_attempts(&tx, me, &kept).await.map_err(self.failed())?;
        let effects: Vec<&Effect> = kept.iter().flat_map(|(_, s)| &s.effects).collect();
        super::records::write_all(&tx, &effects)
            .await
            .map_err(self.failed())?;
        let releases: Vec<(String, String)> = kept
            .iter()
            .filter(|(_, s)| s.job.state == State::Done)
            .flat_map(|(_, s)| s.releases.iter().cloned())
            .collect();
        let released = !releases.is_empty()
            && release_parked(&tx, &releases)
                .await
                .map_err(self.failed())?
                > 0;
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

/// The delivered and skipped jobs of a settle batch leave `jobs` (`$1` ids, each once, `$2`
/// partitions, `$3` epochs, `$4` this instance): each only under its own lease, that is while
/// this instance still holds the job's partition under the epoch it leased it with, and only
/// if no one changed the job meanwhile (an operator's hold, say). The jobs are found by `id =
/// ANY` alone (one index condition whatever the statistics say); each one's lease is read from
/// the arrays at its id's position. (Matched instead by a join to the arrays, the planner put
/// `id = ANY` into the join's inner index scan as well: a walk of the whole array for every
/// job, PostgreSQL 15 counted 69 scans of `jobs_pkey` per job.) The state is checked as
/// [`IN_LINE`] says, so `jobs_runnable` is no candidate.
pub const SETTLE_DELETE: &str = "DELETE FROM jobs j WHERE j.id = ANY($1::bigint[]) \
    AND j.state || '' IN ('ready', 'retrying') \
    AND j.part = ($2::smallint[])[array_position($1::bigint[], j.id)] \
    AND EXISTS (SELECT 1 FROM parts p WHERE p.part = j.part AND p.owner = $4 \
    AND p.epoch = ($3::bigint[])[array_position($1::bigint[], j.id)] AND p.lease_until > now()) \
    RETURNING j.id, ($3::bigint[])[array_position($1::bigint[], j.id)]";

/// Stores the settled jobs under their leases' fences: the delivered and skipped ones leave
/// `jobs` for `finished` in two statements; the others (retry, park, dead) are updated one by
/// one. Says of each whether it was written.
async fn store_all(
    tx: &deadpool_postgres::Transaction<'_>,
    me: &str,
    settles: &[(Leased, Settle)],
) -> Result<Vec<bool>, tokio_postgres::Error> {
    let finals: Vec<&(Leased, Settle)> = settles
        .iter()
        .filter(|(_, s)| matches!(s.job.state, State::Done | State::Skipped))
        .collect();
    let mut gone = std::collections::HashSet::new();
    if !finals.is_empty() {
        // Each settle is matched with its own lease: a batch may hold two settles of one job
        // (one leased under an epoch since taken again, and the new lease's). A partition's
        // epochs only grow, so of those only the latest can still hold; the others are
        // refused here and each id is sent once.
        let mut latest: HashMap<u64, &Leased> = HashMap::new();
        for (leased, _) in &finals {
            let kept = latest.entry(leased.job.id).or_insert(leased);
            if leased.epoch > kept.epoch {
                *kept = leased;
            }
        }
        let latest: Vec<&Leased> = latest.into_values().collect();
        let ids: Vec<i64> = latest.iter().map(|l| l.job.id as i64).collect();
        let parts: Vec<i16> = latest.iter().map(|l| l.part).collect();
        let epochs: Vec<i64> = latest.iter().map(|l| l.epoch).collect();
        let delete = tx.prepare_cached(SETTLE_DELETE).await?;
        for row in tx.query(&delete, &[&ids, &parts, &epochs, &me]).await? {
            gone.insert((row.get::<_, i64>(0), row.get::<_, i64>(1)));
        }
        let (ids, bodies): (Vec<i64>, Vec<Json<&Job>>) = finals
            .iter()
            .filter(|(l, _)| gone.contains(&(l.job.id as i64, l.epoch)))
            .map(|(_, s)| (s.job.id as i64, Json(&s.job)))
            .unzip();
        if !ids.is_empty() {
            let insert = tx
                .prepare_cached(
                    "INSERT INTO finished (id, job) \
                     SELECT * FROM unnest($1::bigint[], $2::jsonb[])",
                )
                .await?;
            tx.execute(&insert, &[&ids, &bodies]).await?;
        }
    }
    let mut written = Vec::with_capacity(settles.len());
    for (leased, settle) in settles {
        written.push(match settle.job.state {
            State::Done | State::Skipped => gone.contains(&(leased.job.id as i64, leased.epoch)),
            _ => store(tx, &settle.job, Some((leased.part, me, leased.epoch))).await?,
        });
    }
    Ok(written)
}

/// Appends the attempts of the written settles to `job_log`, with who ran them under which
/// epoch.
async fn log_attempts(
    tx: &deadpool_postgres::Transaction<'_>,
    me: &str,
    kept: &[&(Leased, Settle)],
) -> Result<(), tokio_postgres::Error> {
    let (jobs, details): (Vec<i64>, Vec<Value>) = kept
        .iter()
        .filter_map(|(leased, settle)| {
            let mut detail = json(settle.attempt.as_ref()?);
            detail["by"] = Value::from(me);
            detail["epoch"] = Value::from(leased.epoch);
            Some((settle.job.id as i64, detail))
        })
        .unzip();
    if jobs.is_empty() {
        return Ok(());
    }
    let insert = tx
        .prepare_cached(
            "INSERT INTO job_log (job, kind, detail) \
             SELECT job, 'attempt', detail FROM unnest($1::bigint[], $2::jsonb[]) AS a(job, detail)",
        )
        .await?;
    tx.execute(&insert, &[&jobs, &details]).await?;
    Ok(())
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
    let moot = tx
        .prepare_cached(&format!(
            "SELECT {COLUMNS}, d.by, d.record FROM jobs j \
             JOIN unnest($1::text[], $2::text[], $3::bigint[]) AS d(flow, record, by) \
             ON j.flow = d.flow AND j.body->>'object_id' = d.record AND j.id < d.by \
             WHERE j.state = 'dead' FOR UPDATE OF j"
        ))
        .await?;
    let rows = tx.query(&moot, &[&flows, &records, &bys]).await?;
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
    let release = tx
        .prepare_cached(
            "UPDATE jobs SET state = 'ready', due_at = NULL, waits_for = NULL, reason = NULL \
             WHERE state = 'parked' AND waits_for = ANY($1::jsonb[])",
        )
        .await?;
    tx.execute(&release, &[&on]).await
}
