//! Ingest into PostgreSQL: accepted events are written once (`events`), deduplicated by a
//! unique key on (source, event id) (`seen`), and answered only after the transaction that
//! holds them commits, so a 202 means the event is in the shared database.
//!
//! Group commit as in the embedded journal: requests queue while a transaction runs; a free
//! committer then takes all of them and writes them in one transaction (two committers, so
//! one batch gathers while the other waits for its commit). The router is told of new events
//! after the commit, by a notifier of its own (see [`notifier`]), not by the batch's
//! transaction. Within it, events are
//! claimed in key order, so two instances writing overlapping batches wait for each other
//! instead of deadlocking. A duplicate sent to two instances at once is stored once: the second
//! claim waits on the first's unique-key entry and, once that commits, answers with the first
//! copy's id. A claim older than the dedupe window is taken over as new.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, mpsc, oneshot};

use super::{PgError, Postgres};
use crate::envelope::Envelope;
use crate::journal::{Appended, Journal};

/// Stores a batch in one statement, so in one round trip and one transaction of its own (the
/// statement's, committed before its answer comes back): claims the keys (`$1` sources, `$2`
/// event ids, in key order) with fresh event ids, or takes over claims older than the window
/// (`$3` seconds); stores the events of the keys claimed (`$4` received at, ms, `$5`
/// envelopes, by position); returns the keys claimed with their ids. The events' sequence is found once per statement (a
/// sub-select): `pg_get_serial_sequence` per row searched the catalog for each key (5.5 µs a
/// row against 1.9). (As `BEGIN`, a claim, a store, `NOTIFY` and `COMMIT`, a batch took five
/// round trips, which at 1,000 events/s made the acks' median 6-7 ms against 1.6 ms for one
/// committed insert.)
const STORE: &str = "WITH k AS (
        SELECT * FROM unnest($1::text[], $2::text[], $4::float8[], $5::bytea[]) WITH ORDINALITY
            AS k(source, event_id, ms, envelope, n)),
    claimed AS (
        INSERT INTO seen (source, event_id, first_id, seen_at)
        SELECT source, event_id, nextval((SELECT pg_get_serial_sequence('events', 'id'))::regclass), now()
        FROM k ORDER BY n
        ON CONFLICT (source, event_id) DO UPDATE
            SET first_id = EXCLUDED.first_id, seen_at = EXCLUDED.seen_at
            WHERE seen.seen_at < now() - make_interval(secs => $3::float8)
        RETURNING source, event_id, first_id),
    stored AS (
        INSERT INTO events (id, received_at, source, event_id, envelope) OVERRIDING SYSTEM VALUE
        SELECT c.first_id, to_timestamp(k.ms / 1000.0), c.source, c.event_id, k.envelope
        FROM claimed c JOIN k ON k.source = c.source AND k.event_id = c.event_id)
    SELECT source, event_id, first_id FROM claimed";
/// The first copy's id of keys claimed before.
const FIRST: &str = "SELECT seen.source, seen.event_id, first_id FROM seen
    JOIN unnest($1::text[], $2::text[]) AS k(source, event_id)
    ON seen.source = k.source AND seen.event_id = k.event_id";

/// The channel a commit that stored new events notifies.
pub const EVENTS_CHANNEL: &str = "handoff_events";

/// Batches in flight at once: while one commits (its round trip and the wait for the WAL to
/// reach the disk), the next gathers and goes. Two concurrent batches are as two instances'
/// (keys claimed in key order; a duplicate waits for the first claim).
const COMMITTERS: usize = 2;

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
    /// Starts the committers and the notifier on the current runtime; they stop when the
    /// journal is dropped.
    pub fn start(postgres: Arc<Postgres>, dedupe_window: Duration) -> PgJournal {
        let (committer, requests) = mpsc::unbounded_channel();
        let requests = Arc::new(Mutex::new(requests));
        // One notification waiting at most: commits made meanwhile are told by it.
        let (stored, told) = mpsc::channel(1);
        for _ in 0..COMMITTERS {
            tokio::spawn(commit_loop(
                postgres.clone(),
                requests.clone(),
                dedupe_window,
                stored.clone(),
            ));
        }
        tokio::spawn(notifier(postgres, told));
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

/// Notifies [`EVENTS_CHANNEL`] after commits that stored new events (`told`; commits made
/// while a notification is on its way are told by the next one), until the committers stop.
///
/// Not in the batch's own transaction: a transaction that notifies holds PostgreSQL's one
/// lock on the notification queue from its commit until it ends, its wait for the disk
/// included, so every notifying commit of the whole server waits for the one before. With the
/// store notifying, two committers and the router queued on that lock behind each other's
/// flushes (up to 100 ms, `log_lock_waits`), and the acks with them. Here the notification is a
/// transaction of its own that does not wait for the disk (it writes nothing to keep): a
/// notification lost in a crash costs the router its next poll at most.
async fn notifier(postgres: Arc<Postgres>, mut told: mpsc::Receiver<()>) {
    let mut client = None;
    while told.recv().await.is_some() {
        if client
            .as_ref()
            .is_none_or(|c: &tokio_postgres::Client| c.is_closed())
        {
            client = postgres.own_client(NOTIFIER_SETUP).await.ok();
        }
        let sent = match &client {
            Some(client) => client.batch_execute(NOTIFY).await.is_ok(),
            None => false,
        };
        if !sent {
            // The router polls meanwhile; try again with the next commit, a moment later.
            client = None;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The notifier's session: its transactions do not wait for the WAL to reach the disk.
const NOTIFIER_SETUP: &str = "SET synchronous_commit = off";
const NOTIFY: &str = "NOTIFY handoff_events";

async fn commit_loop(
    postgres: Arc<Postgres>,
    requests: Arc<Mutex<mpsc::UnboundedReceiver<Request>>>,
    window: Duration,
    stored: mpsc::Sender<()>,
) {
    loop {
        // The batch is what waits when this committer is free; the requests are shared with
        // the other committers, which take what comes while this one's batch commits.
        let batch = {
            let mut requests = requests.lock().await;
            let Some(first) = requests.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while let Ok(request) = requests.try_recv() {
                batch.push(request);
            }
            batch
        };
        let mut result = commit(&postgres, &batch, window).await;
        for _ in 1..ATTEMPTS {
            match &result {
                Err(Retry::Again(_)) => result = commit(&postgres, &batch, window).await,
                _ => break,
            }
        }
        match result {
            Ok(answers) => {
                if answers
                    .iter()
                    .flatten()
                    .any(|a| matches!(a, Appended::New(_)))
                {
                    // Full: a notification is waiting to go, and tells of this commit too.
                    let _ = stored.try_send(());
                }
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

/// Writes one batch in one transaction (one statement); one answer per request.
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
    let client = postgres.client().await.map_err(Retry::Not)?;
    let (store, first) = (
        client.prepare_cached(STORE).await.map_err(failed)?,
        client.prepare_cached(FIRST).await.map_err(failed)?,
    );
    let window_secs = window.as_secs_f64();
    // Each key once, in key order (the order every instance claims, and so locks, them in).
    let mut keys: BTreeMap<(&str, &str), &Item> = BTreeMap::new();
    for item in batch.iter().flat_map(|r| &r.items) {
        keys.entry((&item.source, &item.event_id)).or_insert(item);
    }
    let (sources, event_ids): (Vec<&str>, Vec<&str>) = keys.keys().copied().unzip();
    let received: Vec<f64> = keys.values().map(|i| i.received_ms as f64).collect();
    let records: Vec<&[u8]> = keys.values().map(|i| i.record.as_slice()).collect();
    let entries: Vec<(&str, &str)> = keys.keys().copied().collect();
    // The batch's own key for a key a row names.
    let find = |source: &str, event_id: &str| {
        entries
            .binary_search(&(source, event_id))
            .ok()
            .map(|at| entries[at])
    };
    let mut answers: BTreeMap<(&str, &str), Appended> = BTreeMap::new();
    for row in client
        .query(
            &store,
            &[&sources, &event_ids, &window_secs, &received, &records],
        )
        .await
        .map_err(failed)?
    {
        let (source, event_id, id): (&str, &str, i64) = (row.get(0), row.get(1), row.get(2));
        if let Some(key) = find(source, event_id) {
            answers.insert(key, Appended::New(id as u64));
        }
    }
    // The others were claimed before (committed: a claim waits for the one it meets).
    let (sources, event_ids): (Vec<&str>, Vec<&str>) = keys
        .keys()
        .filter(|key| !answers.contains_key(*key))
        .copied()
        .unzip();
    if !sources.is_empty() {
        for row in client
            .query(&first, &[&sources, &event_ids])
            .await
            .map_err(failed)?
        {
            let (source, event_id, id): (&str, &str, i64) = (row.get(0), row.get(1), row.get(2));
            if let Some(key) = find(source, event_id) {
                answers.insert(key, Appended::Duplicate(id as u64));
            }
        }
    }
    if let Some(key) = keys.keys().find(|key| !answers.contains_key(*key)) {
        return Err(Retry::Again(PgError::Query {
            at: postgres.at().to_owned(),
            reason: format!(
                "the dedupe key of event {} was neither new nor found",
                key.1
            ),
        }));
    }
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_notifier_notifies_the_events_channel_and_the_store_does_not() {
        assert_eq!(super::NOTIFY, format!("NOTIFY {}", super::EVENTS_CHANNEL));
        assert!(!super::STORE.contains("notify"));
    }
}
