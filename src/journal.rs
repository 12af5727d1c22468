//! The durable journal of accepted events, with dedupe and group commit.
//!
//! # Invariants
//!
//! - `append` returns only after everything it wrote is fsynced: a caller may acknowledge the
//!   sender as soon as it returns `Ok`.
//! - Concurrent appends share fsyncs (group commit): each writer registers with the committer
//!   thread after its writes; the committer takes every waiter registered so far, calls one
//!   `flush` (which fsyncs) and wakes them all. Writers arriving during a flush wait for the next.
//!   No timer is involved.
//! - An event and its dedupe entry are written in one transaction, so a dedupe hit always points
//!   at a journaled event; a duplicate is answered only after a flush too (the first copy may
//!   still be on its way to disk).
//! - Sequence numbers only grow, so journal order is arrival order.
//!
//! # Key layout
//!
//! ```text
//! journal   seq: u64 BE                     -> Envelope as JSON
//! dedupe    source 0x00 event id            -> seq: u64 BE ++ received: i64 BE (unix secs)
//! ```
//!
//! A dedupe entry older than the window no longer counts and is removed by `sweep_dedupe`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use crate::envelope::Envelope;
use crate::store::Store;

#[derive(Debug, Error, Clone)]
pub enum JournalError {
    #[error("the store could not write: {0}")]
    Write(String),
    #[error("the journal's committer has stopped")]
    Stopped,
}

impl From<sled::Error> for JournalError {
    fn from(error: sled::Error) -> Self {
        JournalError::Write(error.to_string())
    }
}

/// What `append` did with one envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    New(u64),
    /// Seen within the dedupe window; the sequence number of the first copy.
    Duplicate(u64),
}

type Waiter = oneshot::Sender<Result<(), JournalError>>;

/// Counters for benchmarks and metrics.
#[derive(Debug, Default)]
pub struct CommitStats {
    pub flushes: AtomicU64,
    pub waiters: AtomicU64,
}

pub struct Journal {
    store: Store,
    window_secs: i64,
    committer: Option<mpsc::UnboundedSender<Waiter>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub stats: Arc<CommitStats>,
}

impl Drop for Journal {
    /// Stops the committer and waits for it, so the database is closed when this returns.
    fn drop(&mut self) {
        self.committer.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Journal {
    /// Starts the committer thread; dropping the journal stops it.
    pub fn new(store: Store, dedupe_window_secs: u64) -> Journal {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(CommitStats::default());
        let db = store.db.clone();
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("journal-commit".into())
            .spawn(move || commit_loop(db, rx, &thread_stats))
            .expect("spawn the journal committer thread");
        Journal {
            store,
            window_secs: i64::try_from(dedupe_window_secs).unwrap_or(i64::MAX),
            committer: Some(tx),
            thread: Some(thread),
            stats,
        }
    }

    /// Writes the envelopes (skipping duplicates) and waits until they are on disk.
    pub async fn append(&self, envelopes: &[Envelope]) -> Result<Vec<Appended>, JournalError> {
        let mut results = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            results.push(self.write(envelope)?);
        }
        self.sync().await?;
        Ok(results)
    }

    /// Waits until everything written so far is on disk (sharing the flush with others).
    pub async fn sync(&self) -> Result<(), JournalError> {
        let (tx, rx) = oneshot::channel();
        self.committer
            .as_ref()
            .ok_or(JournalError::Stopped)?
            .send(tx)
            .map_err(|_| JournalError::Stopped)?;
        rx.await.map_err(|_| JournalError::Stopped)?
    }

    fn write(&self, envelope: &Envelope) -> Result<Appended, JournalError> {
        let key = dedupe_key(&envelope.source, &envelope.id);
        let received = envelope.received_at.timestamp();
        let json = serde_json::to_vec(envelope).expect("envelopes serialize");
        let seq = self.store.db.generate_id()?;
        let result = (&self.store.journal, &self.store.dedupe).transaction(|(journal, dedupe)| {
            if let Some(entry) = dedupe.get(&key)? {
                let (first, seen) = decode_dedupe(&entry);
                if received - seen <= self.window_secs
                    && journal.get(first.to_be_bytes())?.is_some()
                {
                    return Ok(Appended::Duplicate(first));
                }
            }
            journal.insert(&seq.to_be_bytes(), json.as_slice())?;
            dedupe.insert(key.as_slice(), encode_dedupe(seq, received).as_slice())?;
            Ok::<_, ConflictableTransactionError<()>>(Appended::New(seq))
        });
        result.map_err(|error| match error {
            TransactionError::Storage(error) => JournalError::from(error),
            TransactionError::Abort(()) => unreachable!("the transaction never aborts"),
        })
    }

    pub fn get(&self, seq: u64) -> Result<Option<Envelope>, JournalError> {
        Ok(self
            .store
            .journal
            .get(seq.to_be_bytes())?
            .and_then(|raw| serde_json::from_slice(&raw).ok()))
    }

    /// Every journaled envelope from `from` on, in arrival order.
    pub fn iter_from(
        &self,
        from: u64,
    ) -> impl Iterator<Item = Result<(u64, Envelope), JournalError>> + '_ {
        self.store.journal.range(from.to_be_bytes()..).map(|item| {
            let (key, value) = item?;
            let seq = u64::from_be_bytes(key.as_ref().try_into().expect("8-byte keys"));
            let envelope = serde_json::from_slice(&value)
                .map_err(|e| JournalError::Write(format!("journal entry {seq} unreadable: {e}")))?;
            Ok((seq, envelope))
        })
    }

    pub fn len(&self) -> usize {
        self.store.journal.len()
    }

    pub fn is_empty(&self) -> bool {
        self.store.journal.is_empty()
    }

    /// Removes dedupe entries older than the window; returns how many.
    pub fn sweep_dedupe(&self, now: i64) -> Result<usize, JournalError> {
        let mut removed = 0;
        for item in self.store.dedupe.iter() {
            let (key, value) = item?;
            if now - decode_dedupe(&value).1 > self.window_secs {
                self.store.dedupe.remove(key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Writes a probe and flushes: proves the store can still write (for `/readyz`).
    pub async fn probe(&self, now: i64) -> Result<(), JournalError> {
        self.store.meta.insert("ready_probe", &now.to_be_bytes())?;
        self.sync().await
    }
}

fn commit_loop(db: sled::Db, mut rx: mpsc::UnboundedReceiver<Waiter>, stats: &CommitStats) {
    while let Some(first) = rx.blocking_recv() {
        let mut waiters = vec![first];
        while let Ok(waiter) = rx.try_recv() {
            waiters.push(waiter);
        }
        let result = db.flush().map(drop).map_err(JournalError::from);
        stats.flushes.fetch_add(1, Ordering::Relaxed);
        stats
            .waiters
            .fetch_add(waiters.len() as u64, Ordering::Relaxed);
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
    }
}

fn dedupe_key(source: &str, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(source.len() + 1 + id.len());
    key.extend_from_slice(source.as_bytes());
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    key
}

fn encode_dedupe(seq: u64, received: i64) -> [u8; 16] {
    let mut value = [0; 16];
    value[..8].copy_from_slice(&seq.to_be_bytes());
    value[8..].copy_from_slice(&received.to_be_bytes());
    value
}

fn decode_dedupe(value: &[u8]) -> (u64, i64) {
    let seq = u64::from_be_bytes(value[..8].try_into().expect("16-byte dedupe values"));
    let seen = i64::from_be_bytes(value[8..16].try_into().expect("16-byte dedupe values"));
    (seq, seen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    fn envelope(id: &str, at: i64) -> Envelope {
        Envelope {
            id: id.into(),
            source: "crm".into(),
            event_type: Some("account.updated".into()),
            object: Some("Account".into()),
            object_id: Some("001".into()),
            version: None,
            signed_at: None,
            received_at: Utc.timestamp_opt(at, 0).unwrap(),
            raw_body: "{}".into(),
            data: json!({}),
        }
    }

    fn journal(dir: &std::path::Path) -> Journal {
        Journal::new(Store::open(dir).unwrap(), 100)
    }

    #[tokio::test]
    async fn appends_in_order_and_dedupes_within_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let j = journal(dir.path());
        let a = j
            .append(&[envelope("a", 1000), envelope("b", 1000)])
            .await
            .unwrap();
        let (Appended::New(first), Appended::New(second)) = (a[0], a[1]) else {
            panic!("{a:?}")
        };
        assert!(first < second);
        let again = j.append(&[envelope("a", 1050)]).await.unwrap();
        assert_eq!(again, vec![Appended::Duplicate(first)]);
        let late = j.append(&[envelope("a", 1101)]).await.unwrap();
        assert!(matches!(late[0], Appended::New(_)));
        let ids: Vec<String> = j.iter_from(0).map(|r| r.unwrap().1.id).collect();
        assert_eq!(ids, ["a", "b", "a"]);
    }

    #[tokio::test]
    async fn concurrent_appends_share_flushes_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = Arc::new(journal(dir.path()));
            let tasks: Vec<_> = (0..200)
                .map(|i| {
                    let j = j.clone();
                    tokio::spawn(async move { j.append(&[envelope(&format!("e{i}"), 1)]).await })
                })
                .collect();
            for task in tasks {
                task.await.unwrap().unwrap();
            }
            let flushes = j.stats.flushes.load(Ordering::Relaxed);
            assert!(flushes < 200, "no flush was shared: {flushes}");
            assert_eq!(j.stats.waiters.load(Ordering::Relaxed), 200);
        }
        let j = journal(dir.path());
        assert_eq!(j.len(), 200);
    }

    #[tokio::test]
    async fn sweep_removes_only_expired_entries() {
        let dir = tempfile::tempdir().unwrap();
        let j = journal(dir.path());
        j.append(&[envelope("old", 0), envelope("new", 500)])
            .await
            .unwrap();
        assert_eq!(j.sweep_dedupe(550).unwrap(), 1);
        assert_eq!(j.store.dedupe.len(), 1);
    }
}
