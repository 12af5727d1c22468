//! `handoff move-to-postgres`: moves an embedded installation (its data dir) into an
//! empty handoff database, so several instances can take over where the single process
//! stopped. Run it with the embedded service stopped; nothing acknowledged is lost:
//!
//! - every open job and dead letter, with its state, attempts count, retry time, reason,
//!   parking and edited payload, and the event it refers to (each event once);
//! - the events acknowledged but not yet routed into jobs (after the embedded router's cursor:
//!   a process killed just after taking them), for the instances' router;
//! - cross-references, applied versions, order status, echo records, the status pollers'
//!   cursors and milestones, reconciliation runs;
//! - the dedupe keys of the events received within the dedupe window, so a sender that
//!   retries an event the old process took gets the duplicate answer.
//!
//! It all goes in one transaction: a failure leaves the database as it was. The router's
//! cursor is set after the events moved with jobs, so they are not routed a second time, and
//! before the ones still to route.

use std::collections::HashMap;

use anyhow::Context;

use super::jobs::{insert, store};
use super::queue::block_on;
use super::{Postgres, records, schema};
use crate::clock::Clock;
use crate::config::{Config, SecretLookup};
use crate::journal::Journal;
use crate::queue::embedded::{Embedded, Options};
use crate::queue::{Queue, State};
use crate::store::Store;

/// What was moved.
#[derive(Debug, Default)]
pub struct Moved {
    pub jobs: usize,
    pub dead_letters: usize,
    pub events: usize,
    /// Events acknowledged and not yet routed into jobs (among `events`).
    pub unrouted: usize,
    pub records: usize,
    pub dedupe_keys: usize,
}

/// Moves `config.data_dir` into the database `config.store.postgres` names; `progress` gets a
/// line now and then.
pub fn move_to_postgres(
    config: &Config,
    secrets: &SecretLookup,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Moved> {
    let store = Store::open(&config.data_dir, None, config.store.cache_mib)
        .with_context(|| format!("cannot open the data dir {}", config.data_dir.display()))?;
    let journal = Journal::open(
        &config.data_dir,
        config.ingest.dedupe_window_secs,
        config.store.journal_segment_bytes,
    )?;
    let options = Options {
        segment_bytes: config.store.queue_segment_bytes,
        ..Default::default()
    };
    let queue = Embedded::open(&store, Clock::new(), options)?;
    let postgres = Postgres::new(&config.store.postgres, secrets)?;
    progress(&format!(
        "moving {} into PostgreSQL at {}",
        config.data_dir.display(),
        postgres.at()
    ));
    let moved = block_on(copy(&postgres, &journal, &queue, config, progress))?;
    Ok(moved)
}

async fn copy(
    postgres: &Postgres,
    journal: &Journal,
    queue: &Embedded,
    config: &Config,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Moved> {
    let failed = |e: tokio_postgres::Error| postgres.query_error(&e);
    schema::migrate(postgres).await?;
    let mut client = postgres.client().await?;
    let tx = client.transaction().await.map_err(failed)?;
    let used: i64 = tx
        .query_one(
            "SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM jobs)",
            &[],
        )
        .await
        .map_err(failed)?
        .get(0);
    anyhow::ensure!(
        used == 0,
        "the database already holds events or jobs: move into an empty handoff database"
    );
    let mut moved = Moved::default();
    let exported = queue.export()?;
    let effects: Vec<_> = exported.effects.iter().collect();
    records::write_all(&tx, &effects).await.map_err(failed)?;
    moved.records = exported.effects.len();
    for (connector, cursor) in &exported.cursors {
        tx.execute(
            "INSERT INTO poll_cursors (connector, cursor) VALUES ($1, $2)",
            &[connector, cursor],
        )
        .await
        .map_err(failed)?;
    }
    for (connector, order, emitted) in &exported.emitted {
        tx.execute(
            "INSERT INTO poll_emitted (connector, order_ref, emitted) VALUES ($1, $2, $3)",
            &[connector, order, &(*emitted as i64)],
        )
        .await
        .map_err(failed)?;
    }
    for (id, run) in &exported.runs {
        tx.execute(
            "INSERT INTO reconcile_runs (id, run) VALUES ($1, $2)",
            &[&(*id as i64), run],
        )
        .await
        .map_err(failed)?;
    }
    progress(&format!("{} records moved", moved.records));

    // Each event once: journal seq → its id in PostgreSQL.
    let mut events: HashMap<u64, i64> = HashMap::new();
    let states = [
        State::Ready,
        State::Leased,
        State::Retrying,
        State::Parked,
        State::Held,
        State::Dead,
    ];
    for state in states {
        for id in queue.ids_in(state) {
            let mut job = queue.get(id)?;
            let event = match events.get(&job.seq) {
                Some(event) => Some(*event),
                None => match journal.read(job.seq, job.at) {
                    Ok(envelope) => {
                        let event = insert_event(&tx, &envelope).await.map_err(failed)?;
                        events.insert(job.seq, event);
                        Some(event)
                    }
                    // Copied into the job before its segment went: the payload stands for it.
                    Err(_) if job.payload.is_some() => None,
                    Err(error) => anyhow::bail!("job {id}'s event is unreadable: {error}"),
                },
            };
            job.seq = event.unwrap_or(0) as u64;
            if job.state == State::Leased {
                job.state = State::Ready;
                job.in_doubt = true;
            }
            let new = insert(&tx, std::slice::from_ref(&job))
                .await
                .map_err(failed)?;
            job.id = new[0];
            store(&tx, &job, None).await.map_err(failed)?;
            match job.state {
                State::Dead => moved.dead_letters += 1,
                _ => moved.jobs += 1,
            }
            if (moved.jobs + moved.dead_letters) % 10_000 == 0 {
                progress(&format!(
                    "{} jobs and dead letters moved",
                    moved.jobs + moved.dead_letters
                ));
            }
        }
    }
    // The router of the instances starts after the events moved with their jobs.
    let last = events.values().copied().max().unwrap_or(0);
    // The embedded router stores its cursor with the jobs it makes, and a process killed before
    // its last slice was written routes those events again at start: they are acknowledged and
    // have no jobs yet. They go in after `last`, for the instances' router.
    for entry in journal.iter_from(queue.cursor()?.next_seq)? {
        let (seq, envelope) = entry?;
        if let std::collections::hash_map::Entry::Vacant(slot) = events.entry(seq) {
            slot.insert(insert_event(&tx, &envelope).await.map_err(failed)?);
            moved.unrouted += 1;
        }
    }
    moved.events = events.len();

    // The dedupe keys of the window: a retried event gets the duplicate answer.
    let window = config.ingest.dedupe_window_secs as i64;
    let cutoff = chrono::Utc::now().timestamp() - window;
    let first = journal.kept_from(cutoff)?;
    let by_seq: HashMap<u64, i64> = events.clone();
    for entry in journal.iter_from(first)? {
        let (seq, envelope) = entry?;
        if envelope.received_at.timestamp() < cutoff {
            continue;
        }
        let claimed = tx
            .execute(
                "INSERT INTO seen (source, event_id, first_id, seen_at) VALUES ($1, $2, \
                 coalesce($3, nextval((SELECT pg_get_serial_sequence('events', 'id'))::regclass)), \
                 to_timestamp($4::float8 / 1000.0)) ON CONFLICT DO NOTHING",
                &[
                    &envelope.source,
                    &envelope.id,
                    &by_seq.get(&seq).copied(),
                    &(envelope.received_at.timestamp_millis() as f64),
                ],
            )
            .await
            .map_err(failed)?;
        moved.dedupe_keys += claimed as usize;
    }
    tx.execute(
        "INSERT INTO poll_cursors (connector, cursor) VALUES ('router', \
         jsonb_build_object('xid', pg_current_xact_id()::text, 'id', $1::bigint)) \
         ON CONFLICT (connector) DO UPDATE SET cursor = EXCLUDED.cursor",
        &[&last],
    )
    .await
    .map_err(failed)?;
    tx.commit().await.map_err(failed)?;
    Ok(moved)
}

/// Stores one event of the journal; returns its id.
async fn insert_event(
    tx: &deadpool_postgres::Transaction<'_>,
    envelope: &crate::envelope::Envelope,
) -> Result<i64, tokio_postgres::Error> {
    let row = tx
        .query_one(
            "INSERT INTO events (received_at, source, event_id, envelope) \
             VALUES (to_timestamp($1::float8 / 1000.0), $2, $3, $4) RETURNING id",
            &[
                &(envelope.received_at.timestamp_millis() as f64),
                &envelope.source,
                &envelope.id,
                &Journal::encode(envelope),
            ],
        )
        .await?;
    Ok(row.get(0))
}
