//! The shared journal as the service sees it ([`Events`]): ingest appends through
//! [`PgJournal`] (one transaction per batch, answered after its commit), and the delivery path
//! reads an event by its id (most were read with their job's lease: `Postgres::take_event`). A failure of the database is a [`JournalError::Shared`]: ingest
//! answers 503 and the sender retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::journal::PgJournal;
use super::queue::block_on;
use super::{PgError, Postgres};
use crate::envelope::Envelope;
use crate::journal::events::{Events, Pending};
use crate::journal::{Appended, Journal, JournalError, Position};

pub struct PgEvents {
    /// Ingest's connections: appends and the readiness probe.
    postgres: Arc<Postgres>,
    /// The workers' connections, whose leases read events ahead: the delivery path's reads.
    reads: Arc<Postgres>,
    journal: PgJournal,
    /// Events this instance stored since it started.
    stored: AtomicU64,
}

fn shared(error: PgError) -> JournalError {
    JournalError::Shared(error.to_string())
}

impl PgEvents {
    /// Starts the committer on the current runtime.
    pub fn start(
        postgres: Arc<Postgres>,
        reads: Arc<Postgres>,
        dedupe_window: std::time::Duration,
    ) -> PgEvents {
        PgEvents {
            journal: PgJournal::start(postgres.clone(), dedupe_window),
            postgres,
            reads,
            stored: AtomicU64::new(0),
        }
    }

    async fn fetch(&self, id: u64) -> Result<Envelope, JournalError> {
        if let Some(envelope) = self.reads.take_event(id) {
            return Journal::decode(id, &envelope);
        }
        let client = self.reads.client().await.map_err(shared)?;
        let failed = |e: tokio_postgres::Error| shared(self.reads.query_error(&e));
        let statement = client
            .prepare_cached("SELECT envelope FROM events WHERE id = $1")
            .await
            .map_err(failed)?;
        let row = client
            .query_opt(&statement, &[&(id as i64)])
            .await
            .map_err(failed)?
            .ok_or(JournalError::Corrupt(id))?;
        Journal::decode(id, row.get(0))
    }
}

impl Events for PgEvents {
    fn append(&self, envelopes: Vec<Envelope>) -> Pending<'_, Vec<Appended>> {
        Box::pin(async move {
            let appended = self.journal.append(envelopes).await.map_err(shared)?;
            let new = appended
                .iter()
                .filter(|a| matches!(a, Appended::New(_)))
                .count();
            self.stored.fetch_add(new as u64, Ordering::Relaxed);
            Ok(appended)
        })
    }

    fn probe(&self) -> Pending<'_, ()> {
        Box::pin(async move {
            let client = self.postgres.client().await.map_err(shared)?;
            client
                .simple_query("SELECT 1")
                .await
                .map_err(|e| shared(self.postgres.query_error(&e)))?;
            Ok(())
        })
    }

    fn event(&self, seq: u64, at: Position) -> Result<Arc<Envelope>, JournalError> {
        let mut envelope = self.read(seq, at)?;
        envelope.raw_body = String::new();
        Ok(Arc::new(envelope))
    }

    fn fetch_event(&self, seq: u64, _at: Position) -> Pending<'_, Arc<Envelope>> {
        Box::pin(async move {
            let mut envelope = self.fetch(seq).await?;
            envelope.raw_body = String::new();
            Ok(Arc::new(envelope))
        })
    }

    fn read(&self, seq: u64, _at: Position) -> Result<Envelope, JournalError> {
        block_on(self.fetch(seq))
    }

    fn len(&self) -> u64 {
        self.stored.load(Ordering::Relaxed)
    }
}
