//! The router tails the journal and turns each accepted event into one job per flow that
//! handles it. A slice of the journal's jobs is stored together with the cursor after it, so a
//! crash either keeps both or routes the slice again. Records ignored on arrival are skipped
//! unread when nothing else follows them (`Journal::end`), and slices that make no jobs move
//! the stored cursor at most once a second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::envelope::Envelope;
use crate::journal::{Journal, Position, Tail};
use crate::mapping::live::Loaded;
use crate::queue::{Cursor, Job, Queue, QueueError, Reason, State};

/// Records routed per batch.
const SLICE: usize = 512;
/// How long the cursor may lag behind slices that made no jobs. Such slices are not written
/// at once (ingest alone would otherwise write the cursor to sled after every journal commit);
/// after a crash the router reads them again, which makes no jobs again.
const CURSOR_LAG: Duration = Duration::from_secs(1);
/// After a slice that was not full the router waits this long before reading again, so that
/// it reads the journal in chunks of several commits rather than once per commit (CPU that
/// ingest shares), at the cost of this much delay before a job is queued.
const PAUSE: Duration = Duration::from_millis(2);

/// Routes journaled events into jobs, forever.
pub async fn run(
    journal: Arc<Journal>,
    queue: Arc<dyn Queue>,
    mappings: Arc<crate::mapping::live::LiveMappings>,
) {
    let cursor = match queue.cursor() {
        Ok(cursor) => cursor,
        Err(error) => {
            tracing::error!(error = %error, "cannot read the router's cursor; nothing is routed");
            return;
        }
    };
    let mut tail = journal.tail(cursor.next_seq, cursor.at);
    let mut saved = (Instant::now(), tail.next_seq());
    loop {
        let end = journal.end();
        if tail.next_seq() >= end.ignored_from {
            // Only records ignored on arrival lie ahead: nothing to read.
            tail.skip_to(end.next_seq, end.at);
        }
        let records = match tail.read(end.next_seq, SLICE) {
            Ok(records) => records,
            Err(error) => {
                tracing::error!(error = %error, seq = tail.next_seq(), "cannot read the journal; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let (empty, full) = (records.is_empty(), records.len() == SLICE);
        let loaded = mappings.current();
        let mut jobs = Vec::new();
        for (seq, at, payload) in records {
            if Journal::is_ignored(&payload) {
                continue;
            }
            let parsed = match journal.recent(seq) {
                Some(envelope) => Ok(envelope),
                None => Journal::decode(seq, &payload).map(Arc::new),
            };
            match parsed {
                Ok(envelope) => {
                    jobs.extend(route(&loaded, &envelope, seq, at, queue.clock().now_ms()))
                }
                Err(error) => tracing::error!(error = %error, "journal record skipped"),
            }
        }
        let moved = tail.next_seq() > saved.1;
        if !jobs.is_empty() || (moved && saved.0.elapsed() >= CURSOR_LAG) {
            if let Err(error) = store(queue.as_ref(), jobs, &tail).await {
                tracing::error!(error = %error, "the router stopped: the queue cannot write");
                return;
            }
            saved = (Instant::now(), tail.next_seq());
        }
        if empty {
            // Woken by routable records; now and then anyway, to skip ignored ones and save
            // the cursor.
            let _ = tokio::time::timeout(CURSOR_LAG, journal.routable_committed()).await;
        } else if !full {
            tokio::time::sleep(PAUSE).await;
        }
    }
}

/// Stores the jobs with the cursor after the records they came from.
async fn store(queue: &dyn Queue, jobs: Vec<Job>, tail: &Tail) -> Result<(), QueueError> {
    let cursor = Cursor {
        next_seq: tail.next_seq(),
        at: tail.position(),
    };
    enqueue_retrying(queue, jobs, cursor).await
}

async fn enqueue_retrying(
    queue: &dyn Queue,
    jobs: Vec<Job>,
    cursor: Cursor,
) -> Result<(), QueueError> {
    let mut delay = Duration::from_millis(100);
    loop {
        match queue.enqueue(jobs.clone(), cursor) {
            Ok(_) => return Ok(()),
            Err(error @ (QueueError::Store(_) | QueueError::Log(_))) => {
                tracing::error!(error = %error, "the queue cannot write; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            Err(other) => return Err(other),
        }
    }
}

/// The jobs one event makes: one per mapping that handles it. A mapping whose condition or keys
/// fail on this event makes a dead letter that says why.
pub fn route(loaded: &Loaded, envelope: &Envelope, seq: u64, at: Position, now: i64) -> Vec<Job> {
    let Some(event_type) = envelope.event_type.as_deref() else {
        return Vec::new();
    };
    if envelope.ignored {
        return Vec::new();
    }
    let mut jobs = Vec::new();
    for mapping in &loaded.mappings {
        let handles = mapping.handles(
            &envelope.source,
            event_type,
            &envelope.data,
            &loaded.lookups,
        );
        let failure = match handles {
            Ok(false) => continue,
            Ok(true) => None,
            Err(error) => Some(error),
        };
        let keys = match &failure {
            None => mapping.keys(&envelope.data, &loaded.lookups),
            Some(error) => Err(error.clone()),
        };
        let fallback_key = || {
            envelope
                .object_id
                .clone()
                .unwrap_or_else(|| format!("{}:{}", envelope.source, envelope.id))
        };
        let (order_key, state, reason) = match keys {
            Ok(keys) => (
                keys.order_key.unwrap_or_else(fallback_key),
                State::Ready,
                None,
            ),
            Err(error) => (
                fallback_key(),
                State::Dead,
                Some(Reason::new("fix_data", error.to_string())),
            ),
        };
        jobs.push(Job {
            id: 0,
            seq,
            at,
            source: envelope.source.clone(),
            event_id: envelope.id.clone(),
            flow: mapping.flow.clone(),
            connector: mapping.connector.clone(),
            operation: mapping.operation.clone(),
            order_key,
            object_id: envelope.object_id.clone(),
            version: envelope.version.clone(),
            state,
            attempts: 0,
            created_ms: now,
            updated_ms: now,
            due_ms: None,
            reason,
            waits_for: None,
            in_doubt: false,
            resubmits: 0,
            failing: None,
            accepted: false,
            payload: None,
            mapping_version: Some(mapping.version.clone()),
            external_id: None,
        });
    }
    jobs
}
