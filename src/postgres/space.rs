//! History leaves the shared database by partition, not row by row, so vacuum keeps up:
//! `events`, `job_log` and `finished` have one partition per day (UTC), made two days ahead;
//! a day's partition is dropped once it is older than the retention. An events partition that
//! an open job or dead letter still refers to is kept until its events were copied into those
//! jobs (their `payload`), so one old dead letter never pins a day of events. The dedupe keys
//! (`seen`) outside their window are deleted in batches.
//!
//! Every instance runs it; a transaction-level advisory lock lets one of them work at a time.

use std::sync::Arc;
use std::time::Duration;

use chrono::{Days, NaiveDate, Utc};

use super::{PgError, Postgres};
use crate::journal::Journal;

/// The tables kept by day.
const TABLES: [&str; 3] = ["events", "job_log", "finished"];
/// Days made ahead of today.
const AHEAD: u64 = 2;
const LOCK: i64 = 0x68616e646f6667;

fn partition(table: &str, day: NaiveDate) -> String {
    format!("{table}_p{}", day.format("%Y%m%d"))
}

/// Runs a round at start and every hour, until aborted.
pub async fn run(postgres: Arc<Postgres>, me: String, retention: Duration) {
    loop {
        match round(&postgres, retention).await {
            Ok(dropped) if dropped > 0 => {
                tracing::info!(instance = %me, dropped, "old history partitions dropped")
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = %error, "history upkeep failed; next round in an hour")
            }
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

/// Makes the coming days' partitions and drops the expired ones; returns how many it dropped.
pub async fn round(postgres: &Postgres, retention: Duration) -> Result<usize, PgError> {
    let failed = |e: tokio_postgres::Error| postgres.query_error(&e);
    let mut client = postgres.client().await?;
    let tx = client.transaction().await.map_err(failed)?;
    let locked: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&LOCK])
        .await
        .map_err(failed)?
        .get(0);
    if !locked {
        return Ok(0);
    }
    let today = Utc::now().date_naive();
    for table in TABLES {
        for ahead in 0..=AHEAD {
            let day = today + Days::new(ahead);
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} \
                 FOR VALUES FROM ('{day}') TO ('{next}')",
                name = partition(table, day),
                next = day + Days::new(1),
            );
            // Rows of that day already in the default partition (a day before this ran) keep
            // it from being made; they stay there, and the next day gets its own.
            tx.batch_execute("SAVEPOINT day").await.map_err(failed)?;
            let undo = match tx.batch_execute(&sql).await {
                Ok(()) => "RELEASE SAVEPOINT day",
                Err(error) => {
                    tracing::debug!(error = %error, table, "a day's partition was not made");
                    "ROLLBACK TO SAVEPOINT day"
                }
            };
            tx.batch_execute(undo).await.map_err(failed)?;
        }
    }
    let cutoff =
        (Utc::now() - chrono::Duration::from_std(retention).unwrap_or_default()).date_naive();
    let mut dropped = 0;
    for table in TABLES {
        let rows = tx
            .query(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
                 WHERE i.inhparent = $1::text::regclass ORDER BY 1",
                &[&table],
            )
            .await
            .map_err(failed)?;
        for row in rows {
            let name: String = row.get(0);
            let Some(day) = name
                .strip_prefix(&format!("{table}_p"))
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok())
            else {
                continue;
            };
            if day + Days::new(1) > cutoff {
                continue;
            }
            if table == "events" {
                copy_forward(&tx, &name).await.map_err(failed)?;
            }
            tx.batch_execute(&format!("DROP TABLE {name}"))
                .await
                .map_err(failed)?;
            dropped += 1;
        }
    }
    tx.execute(
        "DELETE FROM seen WHERE ctid IN (SELECT ctid FROM seen \
         WHERE seen_at < now() - make_interval(secs => $1::float8) LIMIT 50000)",
        &[&retention.as_secs_f64()],
    )
    .await
    .map_err(failed)?;
    tx.commit().await.map_err(failed)?;
    Ok(dropped)
}

/// Copies the events of partition `name` that jobs still refer to into those jobs.
async fn copy_forward(
    tx: &deadpool_postgres::Transaction<'_>,
    name: &str,
) -> Result<(), tokio_postgres::Error> {
    let rows = tx
        .query(
            &format!(
                "SELECT j.id, e.id, e.envelope FROM jobs j JOIN {name} e ON e.id = j.event \
                 WHERE j.payload IS NULL"
            ),
            &[],
        )
        .await?;
    for row in rows {
        let (job, event): (i64, i64) = (row.get(0), row.get(1));
        let Ok(envelope) = Journal::decode(event as u64, row.get(2)) else {
            tracing::error!(
                job,
                event,
                "an event to copy forward is unreadable; it goes with its day"
            );
            continue;
        };
        tx.execute(
            "UPDATE jobs SET payload = $2 WHERE id = $1",
            &[&job, &envelope.data],
        )
        .await?;
    }
    Ok(())
}
