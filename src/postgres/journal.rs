//! Ingest into PostgreSQL: accepted events are written once (`events`), deduplicated by a
//! unique key on (source, event id) (`seen`), and answered only after the transaction that
//! holds them commits, so a 202 means the event is in the shared database.
//!
//! Group commit as in the embedded journal: requests queue while a transaction runs; the
//! committer then takes all of them and writes them in one transaction. Within it, events are
//! claimed in key order, so two instances writing overlapping batches wait for each other
//! instead of deadlocking. A duplicate sent to two instances at once is stored once: the second
//! claim waits on the first's unique-key entry and, once that commits, answers with the first
//! copy's id. A claim older than the dedupe window is taken over as new.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{PgError, Postgres};
use crate::envelope::Envelope;
use crate::journal::{Appended, Journal};

/// Claims the key with a fresh event id, or takes over a claim older than the window; returns
/// the id only when this transaction owns the key now.
const CLAIM: &str = "INSERT INTO seen (source, event_id, first_id, seen_at)
    VALUES ($1, $2, nextval(pg_get_serial_sequence('events', 'id')), now())
    ON CONFLICT (source, event_id) DO UPDATE
        SET first_id = EXCLUDED.first_id, seen_at = EXCLUDED.seen_at
        WHERE seen.seen_at < now() - make_interval(secs => $3::float8)
    RETURNING first_id";
const FIRST: &str = "SELECT first_id FROM seen WHERE source = $1 AND event_id = $2";
const STORE: &str = "INSERT INTO events (id, received_at, source, event_id, envelope)
    OVERRIDING SYSTEM VALUE
    VALUES ($1, to_timestamp($2::float8 / 1000.0), $3, $4, $5)";

/// The channel a commit that stored new events notifies.
pub const EVENTS_CHANNEL: &str = "handoff_events";

/// How often a batch is tried again when PostgreSQL aborts it (a deadlock it detected, a
/// serialization failure) before its requests are refused.
const ATTEMPTS: usize = 3;

struct Item {
    source: String,
    event_id: String,
    received_ms: i64,
    record: Vec<u8>,
}

struct Request {
    items: Vec<Item>,
    reply: oneshot::Sender<Result<Vec<Appended>, PgError>>,
}

/// The journal of one instance on the shared database.
pub struct PgJournal {
    committer: mpsc::UnboundedSender<Request>,
}

impl PgJournal {
    /// Starts the committer on the current runtime; it stops when the journal is dropped.
    pub fn start(postgres: Arc<Postgres>, dedupe_window: Duration) -> PgJournal {
        let (committer, requests) = mpsc::unbounded_channel();
        tokio::spawn(commit_loop(postgres, requests, dedupe_window));
        PgJournal { committer }
    }

    /// Stores the envelopes (duplicates answered with the first copy's id) and returns once
    /// the transaction that holds them has committed.
    pub async fn append(&self, envelopes: Vec<Envelope>) -> Result<Vec<Appended>, PgError> {
        let items = envelopes
            .iter()
            .map(|envelope| Item {
                source: envelope.source.clone(),
                event_id: envelope.id.clone(),
                received_ms: envelope.received_at.timestamp_millis(),
                record: Journal::encode(envelope),
            })
            .collect();
        let (reply, answer) = oneshot::channel();
        let stopped = || PgError::Query {
            at: "this instance".into(),
            reason: "the journal's committer has stopped".into(),
        };
        self.committer
            .send(Request { items, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn commit_loop(
    postgres: Arc<Postgres>,
    mut requests: mpsc::UnboundedReceiver<Request>,
    window: Duration,
) {
    while let Some(first) = requests.recv().await {
        let mut batch = vec![first];
        while let Ok(request) = requests.try_recv() {
            batch.push(request);
        }
        let mut result = commit(&postgres, &batch, window).await;
        for _ in 1..ATTEMPTS {
            match &result {
                Err(Retry::Again(_)) => result = commit(&postgres, &batch, window).await,
                _ => break,
            }
        }
        match result {
            Ok(answers) => {
                for (request, answer) in batch.into_iter().zip(answers) {
                    let _ = request.reply.send(Ok(answer));
                }
            }
            Err(Retry::Again(error) | Retry::Not(error)) => {
                tracing::error!(error = %error, "events not stored; the batch is refused");
                for request in batch {
                    let _ = request.reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// A failed batch: worth trying again (PostgreSQL aborted it) or not.
enum Retry {
    Again(PgError),
    Not(PgError),
}

/// Writes one batch in one transaction; one answer per request.
async fn commit(
    postgres: &Postgres,
    batch: &[Request],
    window: Duration,
) -> Result<Vec<Vec<Appended>>, Retry> {
    let failed = |error: tokio_postgres::Error| {
        let again = error.code().is_some_and(|code| {
            *code == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED
                || *code == tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
        });
        match again {
            true => Retry::Again(postgres.query_error(&error)),
            false => Retry::Not(postgres.query_error(&error)),
        }
    };
    let mut client = postgres.client().await.map_err(Retry::Not)?;
    let transaction = client.transaction().await.map_err(failed)?;
    let (claim, first, store) = (
        transaction.prepare(CLAIM).await.map_err(failed)?,
        transaction.prepare(FIRST).await.map_err(failed)?,
        transaction.prepare(STORE).await.map_err(failed)?,
    );
    let window_secs = window.as_secs_f64();
    // Each key once, in key order (the lock order every instance follows).
    let mut keys: BTreeMap<(&str, &str), &Item> = BTreeMap::new();
    for item in batch.iter().flat_map(|r| &r.items) {
        keys.entry((&item.source, &item.event_id)).or_insert(item);
    }
    let mut answers: BTreeMap<(&str, &str), Appended> = BTreeMap::new();
    for ((source, event_id), item) in keys {
        let claimed = transaction
            .query_opt(&claim, &[&source, &event_id, &window_secs])
            .await
            .map_err(failed)?;
        let answer = match claimed {
            Some(row) => {
                let id: i64 = row.get(0);
                let received = item.received_ms as f64;
                transaction
                    .execute(&store, &[&id, &received, &source, &event_id, &item.record])
                    .await
                    .map_err(failed)?;
                Appended::New(id as u64)
            }
            None => {
                let row = transaction
                    .query_one(&first, &[&source, &event_id])
                    .await
                    .map_err(failed)?;
                Appended::Duplicate(row.get::<_, i64>(0) as u64)
            }
        };
        answers.insert((source, event_id), answer);
    }
    if answers.values().any(|a| matches!(a, Appended::New(_))) {
        // Delivered at commit: wakes the router of whichever instance routes.
        transaction
            .batch_execute(&format!("NOTIFY {EVENTS_CHANNEL}"))
            .await
            .map_err(failed)?;
    }
    transaction.commit().await.map_err(failed)?;
    // A key sent twice in one batch: its first copy is new, the others duplicates of it.
    let mut answered_new = std::collections::HashSet::new();
    Ok(batch
        .iter()
        .map(|request| {
            request
                .items
                .iter()
                .map(
                    |item| match answers[&(item.source.as_str(), item.event_id.as_str())] {
                        Appended::New(id) if !answered_new.insert(id) => Appended::Duplicate(id),
                        answer => answer,
                    },
                )
                .collect()
        })
        .collect())
}
