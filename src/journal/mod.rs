//! The durable journal of accepted events: append-only segment files, group commit, dedupe.
//!
//! # Invariants
//!
//! - `append` returns only after its records are fsynced (`fdatasync`): a caller may acknowledge
//!   the sender as soon as it returns `Ok`.
//! - One committer thread owns the files. Requests queue up while it fsyncs; it then takes all of
//!   them, writes them with one `write`, fsyncs once and answers them all (group commit). No timer
//!   decides when to flush.
//! - Sequence numbers are contiguous from 1 and only grow: journal order is arrival order.
//! - After each commit the committer publishes where the journal ends and from which seq on it
//!   holds only records ignored on arrival (`End`), so the router can skip them unread; it wakes
//!   the router only after commits that wrote records the router must read.
//! - A duplicate (same source and event id within the window) is not written again; it is
//!   answered with the first copy's seq, only once that copy is durable.
//! - The dedupe index is in memory and derived from the journal: rebuilt on open from the records
//!   received within the window (see `dedupe.rs`), so a crash loses none of it. A clean close
//!   saves it, and the next open reads that instead when the journal still ends there.
//! - Once committed, the newest routable envelopes stay parsed in memory (`recent.rs`, a bounded
//!   copy without the raw body), so the router and the workers do not decode what ingest parsed
//!   a moment ago; anything older is read back from its segment.
//! - When no next segment can be made (a full disk), the batch is refused and the journal goes on
//!   once there is space. A failed write or fsync refuses the batch and every later one until
//!   a restart re-reads the journal: after a failed fsync the kernel may have dropped the dirty
//!   pages, so a later fsync that succeeds proves nothing.
//!
//! # Layout
//!
//! ```text
//! <data_dir>/journal/*.log          records (segment.rs), each an envelope (record.rs)
//! <data_dir>/journal/dedupe.snap    the dedupe index at the last clean close (dedupe.rs)
//! ```
//!
//! Why files and not a sled tree: sled's per-write cost capped durable acks at about 1,700/s on
//! the reference machine, and a sled dedupe tree cost ~40 µs of CPU per event; an append plus one
//! `fdatasync` per batch and an in-memory index do not (BENCHMARKS.md).

mod dedupe;
pub mod events;
mod recent;
mod record;
pub mod segment;
mod tail;

pub use events::Events;
pub use tail::{Position, Tail};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use crate::envelope::Envelope;
use dedupe::Dedupe;
use segment::Writer;

#[derive(Debug, Error, Clone)]
pub enum JournalError {
    #[error("the store could not write: {0}")]
    Write(String),
    #[error("journal record {0} is unreadable")]
    Corrupt(u64),
    #[error("the journal's committer has stopped")]
    Stopped,
    #[error("a journal write or fsync failed earlier; no events are taken until handoff restarts")]
    Poisoned,
    #[error("{0}")]
    Shared(String),
}

impl From<sled::Error> for JournalError {
    fn from(error: sled::Error) -> Self {
        JournalError::Write(error.to_string())
    }
}

impl From<std::io::Error> for JournalError {
    fn from(error: std::io::Error) -> Self {
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

/// Counters for benchmarks and metrics.
#[derive(Debug, Default)]
pub struct CommitStats {
    pub fsyncs: AtomicU64,
    pub requests: AtomicU64,
    /// Time spent in write + fsync, in microseconds.
    pub commit_micros: AtomicU64,
}

struct Item {
    key: dedupe::Key,
    received: i64,
    /// Not ignored on arrival: the router must read it.
    routable: bool,
    /// The parsed envelope of a routable record, kept in `recent` once committed.
    parsed: Option<Arc<Envelope>>,
    payload: Vec<u8>,
}

/// Where the journal ends, published after every commit for the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End {
    /// The first seq not yet committed.
    pub next_seq: u64,
    /// Where that record will start.
    pub at: Position,
    /// Every record from this seq up to `next_seq` was ignored on arrival (as far as this run
    /// knows: records from before the start count as routable), so the router may skip them
    /// unread.
    pub ignored_from: u64,
}

struct Request {
    items: Vec<Item>,
    reply: oneshot::Sender<Result<Vec<Appended>, JournalError>>,
}

pub struct Journal {
    dir: PathBuf,
    /// Open segment files, for workers reading records back (one `pread` per record).
    readers: Mutex<HashMap<u64, Arc<std::fs::File>>>,
    end: Arc<Mutex<End>>,
    committer: Option<mpsc::UnboundedSender<Request>>,
    /// Signalled after a commit that wrote records the router must read.
    routable: Arc<tokio::sync::Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub stats: Arc<CommitStats>,
    /// The newest routable events, parsed (recent.rs).
    recent: Arc<recent::Recent>,
}

impl Journal {
    /// Opens the journal in the data directory (`<data_dir>/journal`, see store.rs), rebuilds
    /// the dedupe index from the records inside the window, and starts the committer thread
    /// (dropping the journal stops it). It needs nothing from sled, so it opens beside it.
    pub fn open(
        data_dir: &Path,
        dedupe_window_secs: u64,
        segment_bytes: u64,
    ) -> Result<Journal, JournalError> {
        let dir = data_dir.join("journal");
        let writer = Writer::open(&dir, segment_bytes)?;
        let window = i64::try_from(dedupe_window_secs).unwrap_or(i64::MAX);
        let now = chrono::Utc::now().timestamp();
        let dedupe = match Dedupe::load(&dir, writer.next_seq(), window, now) {
            Some(saved) => saved,
            None => {
                let mut dedupe = Dedupe::new(window);
                rebuild(&dir, &mut dedupe, now)?;
                dedupe
            }
        };
        let end = Arc::new(Mutex::new(End {
            next_seq: writer.next_seq(),
            at: writer.end(),
            ignored_from: writer.next_seq(),
        }));
        let stats = Arc::new(CommitStats::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let routable = Arc::new(tokio::sync::Notify::new());
        let recent = Arc::new(recent::Recent::default());
        let published = Published {
            end: end.clone(),
            routable: routable.clone(),
            recent: recent.clone(),
        };
        let (thread_dir, thread_stats) = (dir.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name("journal-commit".into())
            .spawn(move || commit_loop(&thread_dir, writer, dedupe, rx, &published, &thread_stats))
            .map_err(JournalError::from)?;
        Ok(Journal {
            dir,
            readers: Mutex::new(HashMap::new()),
            end,
            committer: Some(tx),
            routable,
            thread: Some(thread),
            stats,
            recent,
        })
    }

    /// Writes the envelopes (skipping duplicates) and waits until they are on disk.
    pub async fn append(&self, envelopes: Vec<Envelope>) -> Result<Vec<Appended>, JournalError> {
        let items = envelopes
            .into_iter()
            .map(|envelope| {
                let payload = record::encode(&envelope);
                let routable = !envelope.ignored;
                Item {
                    key: dedupe::key(&envelope.source, &envelope.id),
                    received: envelope.received_at.timestamp(),
                    routable,
                    payload,
                    parsed: routable.then(|| Arc::new(recent::without_raw_body(envelope))),
                }
            })
            .collect();
        self.request(items).await
    }

    async fn request(&self, items: Vec<Item>) -> Result<Vec<Appended>, JournalError> {
        let (reply, answer) = oneshot::channel();
        self.committer
            .as_ref()
            .ok_or(JournalError::Stopped)?
            .send(Request { items, reply })
            .map_err(|_| JournalError::Stopped)?;
        answer.await.map_err(|_| JournalError::Stopped)?
    }

    /// Proves the journal can still write and fsync, and that its next segment exists (for
    /// `/readyz`: whether events can be taken). sled is not asked: it holds derived state, and
    /// sled stays failed after a failed write until a restart, which redoes it from the journal.
    pub async fn probe(&self) -> Result<(), JournalError> {
        self.request(Vec::new()).await.map(drop)
    }

    /// Every journaled envelope from `from` on, in arrival order.
    pub fn iter_from(
        &self,
        from: u64,
    ) -> Result<impl Iterator<Item = Result<(u64, Envelope), JournalError>> + use<>, JournalError>
    {
        Ok(segment::read_from(&self.dir, from)?.map(|record| {
            let (seq, payload) = record?;
            let envelope = record::decode(&payload).ok_or(JournalError::Corrupt(seq))?;
            Ok((seq, envelope))
        }))
    }

    /// A reader of committed records from `seq` on; `at` is where `seq` starts, when known.
    pub fn tail(&self, seq: u64, at: Option<Position>) -> Tail {
        Tail::new(&self.dir, seq, at)
    }

    /// The first seq not yet committed.
    pub fn next_seq(&self) -> u64 {
        self.end().next_seq
    }

    /// Where the journal ends after the last commit, and from where on it holds only ignored
    /// records.
    pub fn end(&self) -> End {
        *self
            .end
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until a commit writes records that were not ignored on arrival (or returns at
    /// once if one did since the last call). Commits of ignored records alone wake no one.
    pub async fn routable_committed(&self) {
        self.routable.notified().await;
    }

    /// An envelope as a journal record stores it (the PostgreSQL journal keeps the same bytes).
    pub fn encode(envelope: &Envelope) -> Vec<u8> {
        record::encode(envelope)
    }

    /// Decodes a record's payload.
    pub fn decode(seq: u64, payload: &[u8]) -> Result<Envelope, JournalError> {
        record::decode(payload).ok_or(JournalError::Corrupt(seq))
    }

    /// Whether a record was ignored on arrival (no flow handled it), read from its header
    /// alone: the router skips it without parsing the body.
    pub fn is_ignored(payload: &[u8]) -> bool {
        record::is_ignored(payload).unwrap_or(false)
    }

    /// The envelope of record `seq` (which starts at `at`) for the delivery path: without its
    /// raw body, from memory while it is among the newest events, else read back and decoded.
    pub fn event(&self, seq: u64, at: Position) -> Result<Arc<Envelope>, JournalError> {
        match self.recent.get(seq) {
            Some(envelope) => Ok(envelope),
            None => Ok(Arc::new(recent::without_raw_body(self.read(seq, at)?))),
        }
    }

    /// The parsed envelope of record `seq` when it is among the newest events (the router
    /// routes it without decoding the payload it read).
    pub fn recent(&self, seq: u64) -> Option<Arc<Envelope>> {
        self.recent.get(seq)
    }

    /// The envelope of record `seq`, which starts at `at`, with its raw body.
    pub fn read(&self, seq: u64, at: Position) -> Result<Envelope, JournalError> {
        let file = self.reader(at.segment)?;
        match segment::read_at(&file, at.offset)? {
            Some((found, payload)) if found == seq => Self::decode(seq, &payload),
            _ => Err(JournalError::Corrupt(seq)),
        }
    }

    fn reader(&self, segment: u64) -> Result<Arc<std::fs::File>, JournalError> {
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(file) = readers.get(&segment) {
            return Ok(file.clone());
        }
        let file = Arc::new(std::fs::File::open(segment::segment_path(
            &self.dir, segment,
        ))?);
        readers.insert(segment, file.clone());
        Ok(file)
    }

    /// The first seq the journal must keep to hold every record received at or after
    /// `cutoff` (Unix seconds): segments wholly before it hold only older records.
    pub fn kept_from(&self, cutoff: i64) -> Result<u64, JournalError> {
        first_seq_since(&self.dir, cutoff)
    }

    /// Deletes the segments that end before record `seq` (never the one being written);
    /// returns how many.
    pub fn remove_before(&self, seq: u64) -> Result<usize, JournalError> {
        let segments = segment::list(&self.dir)?;
        let mut removed = 0;
        for pair in segments.windows(2) {
            let ((path, first), (_, next)) = (&pair[0], &pair[1]);
            if *next > seq {
                break;
            }
            self.readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(first);
            std::fs::remove_file(path)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// How many records the journal holds.
    pub fn len(&self) -> u64 {
        self.next_seq() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Journal {
    /// Stops the committer and waits for it, so the files are closed when this returns.
    fn drop(&mut self) {
        self.committer.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Fills the dedupe index from the records received within the window before `now`.
fn rebuild(dir: &std::path::Path, dedupe: &mut Dedupe, now: i64) -> Result<(), JournalError> {
    let cutoff = now.saturating_sub(dedupe.window_secs());
    for record in segment::read_from(dir, first_seq_since(dir, cutoff)?)? {
        let (seq, payload) = record?;
        let key = record::decode_key(&payload).ok_or(JournalError::Corrupt(seq))?;
        let received = key.received_at.timestamp();
        if received >= cutoff {
            dedupe.insert(dedupe::key(&key.source, &key.id), seq, received);
        }
    }
    Ok(())
}

/// The first seq of the newest segment that starts before `cutoff`: older segments hold only
/// records received before it (records are in arrival order).
fn first_seq_since(dir: &std::path::Path, cutoff: i64) -> Result<u64, JournalError> {
    for (path, first) in segment::list(dir)?.into_iter().rev() {
        let file = std::fs::File::open(path)?;
        let mut records = segment::Records::new(std::io::BufReader::new(file), first);
        let started = match records.next() {
            Some(record) => {
                let (seq, payload) = record?;
                record::decode_key(&payload)
                    .ok_or(JournalError::Corrupt(seq))?
                    .received_at
                    .timestamp()
            }
            None => continue,
        };
        if started < cutoff {
            return Ok(first);
        }
    }
    Ok(0)
}

/// What the committer tells readers after each commit.
struct Published {
    end: Arc<Mutex<End>>,
    /// Signalled after a commit that wrote records the router must read.
    routable: Arc<tokio::sync::Notify>,
    /// Where committed routable records are kept parsed.
    recent: Arc<recent::Recent>,
}

fn commit_loop(
    dir: &Path,
    mut writer: Writer,
    mut dedupe: Dedupe,
    mut rx: mpsc::UnboundedReceiver<Request>,
    published: &Published,
    stats: &CommitStats,
) {
    let mut poisoned = false;
    let mut ignored_from = writer.next_seq();
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while let Ok(request) = rx.try_recv() {
            batch.push(request);
        }
        let started = std::time::Instant::now();
        let (answers, routable) = match poisoned {
            true => (vec![Err(JournalError::Poisoned); batch.len()], None),
            false => commit_batch(
                &mut writer,
                &mut dedupe,
                &batch,
                &mut poisoned,
                &published.recent,
            ),
        };
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        stats.commit_micros.fetch_add(micros, Ordering::Relaxed);
        ignored_from = routable.map_or(ignored_from, |seq| seq + 1);
        published.publish(&writer, ignored_from, routable.is_some());
        stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        stats
            .requests
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        for (request, answer) in batch.into_iter().zip(answers) {
            let _ = request.reply.send(answer);
        }
    }
    let fsyncs = stats.fsyncs.load(Ordering::Relaxed);
    tracing::info!(
        fsyncs,
        requests = stats.requests.load(Ordering::Relaxed),
        mean_commit_micros = stats.commit_micros.load(Ordering::Relaxed) / fsyncs.max(1),
        "journal closed"
    );
    if !poisoned && let Err(error) = dedupe.save(dir, writer.next_seq()) {
        tracing::warn!(%error, "could not save the dedupe index; the next start reads the journal");
    }
}

impl Published {
    /// Publishes the end; wakes the router only when it has something to read.
    fn publish(&self, writer: &Writer, ignored_from: u64, routable: bool) {
        let end = End {
            next_seq: writer.next_seq(),
            at: writer.end(),
            ignored_from: ignored_from.min(writer.next_seq()),
        };
        *self
            .end
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = end;
        if routable {
            self.routable.notify_one();
        }
    }
}

/// Dedupes, writes and fsyncs one batch; returns one answer per request, and the seq of the
/// last record written that was not ignored on arrival.
fn commit_batch(
    writer: &mut Writer,
    dedupe: &mut Dedupe,
    batch: &[Request],
    poisoned: &mut bool,
    recent: &recent::Recent,
) -> (Vec<Result<Vec<Appended>, JournalError>>, Option<u64>) {
    let first_seq = writer.next_seq();
    // Probes (empty requests) also ask whether the journal can go on past this segment.
    let spare = match batch.iter().any(|request| request.items.is_empty()) {
        true => writer.check_spare().map_err(JournalError::from),
        false => Ok(()),
    };
    let mut in_batch: HashMap<&dedupe::Key, u64> = HashMap::new();
    let mut answers = Vec::with_capacity(batch.len());
    let mut written = Vec::new();
    for request in batch {
        if request.items.is_empty() {
            answers.push(spare.clone().map(|()| Vec::new()));
            continue;
        }
        let mut appended = Vec::with_capacity(request.items.len());
        for item in &request.items {
            let seen = in_batch
                .get(&item.key)
                .copied()
                .or_else(|| dedupe.lookup(&item.key, item.received));
            appended.push(match seen {
                Some(seq) => Appended::Duplicate(seq),
                None => {
                    let seq = writer.push(&item.payload);
                    in_batch.insert(&item.key, seq);
                    written.push((item, seq));
                    Appended::New(seq)
                }
            });
        }
        answers.push(Ok(appended));
    }
    if let Err(error) = writer.commit(first_seq) {
        *poisoned = matches!(error, segment::CommitError::Write(_));
        match poisoned {
            true => {
                tracing::error!(error = %error, "journal stopped: events are refused until restart")
            }
            false => tracing::error!(error = %error, "journal cannot grow; the batch is refused"),
        }
        let error = JournalError::Write(error.to_string());
        return (vec![Err(error); batch.len()], None);
    }
    let last_routable = written
        .iter()
        .filter(|(item, _)| item.routable)
        .map(|(_, seq)| *seq)
        .max();
    for (item, seq) in written {
        if let Some(parsed) = &item.parsed {
            recent.insert(seq, parsed.clone());
        }
        dedupe.insert(item.key, seq, item.received);
    }
    dedupe.expire(chrono::Utc::now().timestamp(), false);
    (answers, last_routable)
}

#[cfg(test)]
mod tests;
