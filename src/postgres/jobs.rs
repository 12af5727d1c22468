//! Jobs in PostgreSQL: narrow rows (the event is referred to, never copied), leased only from
//! the partitions this instance holds, one at a time per record in id order, settled only
//! under the lease's epoch, and logged append-only in `job_log`.
//!
//! Per-record order needs no lock of its own: a record's jobs all hash to one partition, a
//! partition has one owner, and a job is leased only when no earlier job of its record is
//! still open. When a partition moves, the jobs the old owner had leased are leased again by
//! the new one, in doubt (the old owner's settles are refused by the epoch).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::leases::{FENCE, partition_of};
use super::{PgError, Postgres};
use crate::queue::records::Effect;

/// A job to store: the event it comes from and where it goes.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub event: i64,
    pub order_key: String,
    pub flow: String,
    pub connector: String,
}

/// A job leased to this instance under `epoch`.
#[derive(Debug, Clone, PartialEq)]
pub struct Leased {
    pub id: i64,
    pub event: i64,
    pub order_key: String,
    pub part: i16,
    pub epoch: i64,
    pub attempts: i32,
    /// An earlier attempt may have taken effect (it was leased under an older epoch).
    pub in_doubt: bool,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Delivered: what it leaves behind (cross-reference, version, status, echo), written with
    /// the settle.
    Done(Vec<Effect>),
    Retry {
        after: Duration,
        reason: Value,
    },
    Dead {
        reason: Value,
    },
}

/// Inserts jobs (ready, in their record's partition) within `tx`; returns their ids in order.
pub(super) async fn insert(
    tx: &deadpool_postgres::Transaction<'_>,
    jobs: &[NewJob],
) -> Result<Vec<i64>, tokio_postgres::Error> {
    let statement = tx
        .prepare(
            "INSERT INTO jobs (event, part, order_key, flow, connector, state) \
             VALUES ($1, $2, $3, $4, $5, 'ready') RETURNING id",
        )
        .await?;
    let mut ids = Vec::with_capacity(jobs.len());
    for job in jobs {
        let part = partition_of(&job.order_key);
        let row = tx
            .query_one(
                &statement,
                &[&job.event, &part, &job.order_key, &job.flow, &job.connector],
            )
            .await?;
        ids.push(row.get(0));
    }
    Ok(ids)
}

/// Open states: a job in one of them holds back the later jobs of its record.
const OPEN: &str = "('ready', 'leased', 'retrying', 'parked', 'held')";

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
    pub async fn enqueue(&self, jobs: &[NewJob]) -> Result<Vec<i64>, PgError> {
        let mut client = self.postgres.client().await?;
        let tx = client.transaction().await.map_err(self.failed())?;
        let ids = insert(&tx, jobs).await.map_err(self.failed())?;
        tx.commit().await.map_err(self.failed())?;
        Ok(ids)
    }

    /// Leases up to `limit` runnable jobs of `connector` in the partitions `held` (partition →
    /// epoch): ready or due jobs, and jobs leased under an older epoch (their owner lost the
    /// partition), each the first open job of its record.
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
        let mut client = self.postgres.client().await?;
        let tx = client.transaction().await.map_err(self.failed())?;
        let rows = tx
            .query(
                &format!(
                    "WITH mine AS (SELECT * FROM unnest($1::smallint[], $2::bigint[]) AS m(part, epoch)),
                     candidates AS (
                        SELECT j.id, m.epoch FROM jobs j JOIN mine m ON m.part = j.part
                        WHERE j.connector = $3
                          AND ((j.state IN ('ready', 'retrying') AND (j.due_at IS NULL OR j.due_at <= now()))
                               OR (j.state = 'leased' AND j.leased_epoch < m.epoch))
                          AND NOT EXISTS (SELECT 1 FROM jobs k WHERE k.order_key = j.order_key
                                          AND k.id < j.id AND k.state IN {OPEN})
                        ORDER BY j.id LIMIT $4 FOR UPDATE OF j SKIP LOCKED)
                     UPDATE jobs SET state = 'leased', attempts = jobs.attempts + 1,
                        in_doubt = jobs.in_doubt OR jobs.state = 'leased',
                        leased_epoch = candidates.epoch
                     FROM candidates WHERE jobs.id = candidates.id
                       AND EXISTS (SELECT 1 FROM parts WHERE parts.part = jobs.part AND owner = $5
                                   AND parts.epoch = candidates.epoch AND lease_until > now())
                     RETURNING jobs.id, jobs.event, jobs.order_key, jobs.part, jobs.leased_epoch,
                               jobs.attempts, jobs.in_doubt"
                ),
                &[&parts, &epochs, &connector, &limit, &me],
            )
            .await
            .map_err(self.failed())?;
        tx.commit().await.map_err(self.failed())?;
        let mut leased: Vec<Leased> = rows
            .iter()
            .map(|row| Leased {
                id: row.get(0),
                event: row.get(1),
                order_key: row.get(2),
                part: row.get(3),
                epoch: row.get(4),
                attempts: row.get(5),
                in_doubt: row.get(6),
            })
            .collect();
        leased.sort_by_key(|job| job.id);
        Ok(leased)
    }

    /// Stores how the attempt ended, if this instance still holds the job's partition under
    /// the epoch it leased it with; returns false (and changes nothing) when it does not.
    pub async fn settle(&self, me: &str, job: &Leased, outcome: &Outcome) -> Result<bool, PgError> {
        let mut client = self.postgres.client().await?;
        let tx = client.transaction().await.map_err(self.failed())?;
        let fence = format!("leased_epoch = $3 AND state = 'leased' AND {FENCE}");
        let (kind, detail, changed) = match outcome {
            Outcome::Done(_) => {
                let deleted = tx
                    .execute(
                        &format!("DELETE FROM jobs WHERE id = $4 AND part = $1 AND {fence}"),
                        &[&job.part, &me, &job.epoch, &job.id],
                    )
                    .await
                    .map_err(self.failed())?;
                ("done", Value::Null, deleted)
            }
            Outcome::Retry { after, reason } => {
                let updated = tx
                    .execute(
                        &format!(
                            "UPDATE jobs SET state = 'retrying', reason = $5, \
                             due_at = now() + make_interval(secs => $6::float8) \
                             WHERE id = $4 AND part = $1 AND {fence}"
                        ),
                        &[
                            &job.part,
                            &me,
                            &job.epoch,
                            &job.id,
                            reason,
                            &after.as_secs_f64(),
                        ],
                    )
                    .await
                    .map_err(self.failed())?;
                ("retrying", reason.clone(), updated)
            }
            Outcome::Dead { reason } => {
                let updated = tx
                    .execute(
                        &format!(
                            "UPDATE jobs SET state = 'dead', reason = $5 \
                             WHERE id = $4 AND part = $1 AND {fence}"
                        ),
                        &[&job.part, &me, &job.epoch, &job.id, reason],
                    )
                    .await
                    .map_err(self.failed())?;
                ("dead", reason.clone(), updated)
            }
        };
        if changed == 0 {
            return Ok(false);
        }
        if let Outcome::Done(effects) = outcome {
            super::records::write(&tx, effects)
                .await
                .map_err(self.failed())?;
        }
        let detail = serde_json::json!({
            "attempt": job.attempts, "in_doubt": job.in_doubt, "by": me, "epoch": job.epoch,
            "reason": detail,
        });
        tx.execute(
            "INSERT INTO job_log (job, kind, detail) VALUES ($1, $2, $3)",
            &[&job.id, &kind, &detail],
        )
        .await
        .map_err(self.failed())?;
        tx.commit().await.map_err(self.failed())?;
        Ok(true)
    }
}
