//! The event store as the rest of the service sees it: [`Events`], implemented by the embedded
//! [`Journal`] and by the shared PostgreSQL journal (`postgres::events`). Ingest, the workers,
//! the pollers and the dashboard use only this; the router and upkeep of each backend know
//! their own store.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{Appended, Journal, JournalError, Position};
use crate::envelope::Envelope;

/// A future an [`Events`] method returns.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, JournalError>> + Send + 'a>>;

pub trait Events: Send + Sync {
    /// Stores the envelopes (a duplicate is answered with its first copy) and returns once
    /// they are durable: the caller may acknowledge then.
    fn append(&self, envelopes: Vec<Envelope>) -> Pending<'_, Vec<Appended>>;
    /// Proves the store can still take events (`/readyz`).
    fn probe(&self) -> Pending<'_, ()>;
    /// The event `seq` (found at `at` in the embedded journal) for the delivery path, without
    /// its raw body.
    fn event(&self, seq: u64, at: Position) -> Result<Arc<Envelope>, JournalError>;
    /// [`Events::event`] as a future, for the delivery path (a shared store is asked without
    /// holding a thread).
    fn fetch_event(&self, seq: u64, at: Position) -> Pending<'_, Arc<Envelope>> {
        Box::pin(std::future::ready(self.event(seq, at)))
    }
    /// The event `seq` with its raw body (the dashboard shows it).
    fn read(&self, seq: u64, at: Position) -> Result<Envelope, JournalError>;
    /// How many events the store holds (this instance's count for a shared store).
    fn len(&self) -> u64;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Events for Journal {
    fn append(&self, envelopes: Vec<Envelope>) -> Pending<'_, Vec<Appended>> {
        Box::pin(Journal::append(self, envelopes))
    }

    fn probe(&self) -> Pending<'_, ()> {
        Box::pin(Journal::probe(self))
    }

    fn event(&self, seq: u64, at: Position) -> Result<Arc<Envelope>, JournalError> {
        Journal::event(self, seq, at)
    }

    fn read(&self, seq: u64, at: Position) -> Result<Envelope, JournalError> {
        Journal::read(self, seq, at)
    }

    fn len(&self) -> u64 {
        Journal::len(self)
    }
}
