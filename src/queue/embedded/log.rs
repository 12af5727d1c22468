//! The queue log: append-only segment files (the journal's segment code: preallocated segments,
//! crc, torn tail cut at open) holding the queue's small records, group-committed by a thread
//! of its own.
//!
//! # Invariants
//!
//! - A record gets its position when it is appended, before it is written: the log decides
//!   where segments end (`Writer::open_manual`), so the schedule can point at a record at once.
//!   Until the committer has written it, a read finds it in memory.
//! - Appends do not wait for the disk. The committer writes and fsyncs what is pending every
//!   [`COMMIT_EVERY`] (or at once when asked, `sync`). A crash loses at most the last few
//!   milliseconds of state changes, which the journal and the idempotency keys make good: the
//!   jobs run again, in doubt.
//! - When no next segment can be made (a full disk) the records wait in memory and the
//!   committer tries again every second. A failed write or fsync stops the log (as in the
//!   journal): `sync` reports it from then on and the next start reads what is on disk.
//!
//! ```text
//! <data_dir>/queue/<first seq, 20 digits>.log   segments of records (record.rs)
//! position of a record = first seq of its segment << 24 | byte offset   (segments < 16 MiB)
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::journal::segment::{self, CommitError, Writer};

/// How long appends gather before the committer writes them.
pub const COMMIT_EVERY: Duration = Duration::from_millis(10);
/// Largest queue segment: offsets must fit in 24 bits, with room for the last batch.
pub const MAX_SEGMENT_BYTES: u64 = 12 * 1024 * 1024;
const OFFSET_BITS: u32 = 24;

/// Where a record is: its segment's first seq and its byte offset, in one number.
pub type Pos = u64;

pub fn segment_of(pos: Pos) -> u64 {
    pos >> OFFSET_BITS
}

fn offset_of(pos: Pos) -> u64 {
    pos & ((1 << OFFSET_BITS) - 1)
}

fn pos(segment: u64, offset: u64) -> Pos {
    debug_assert!(offset < 1 << OFFSET_BITS);
    (segment << OFFSET_BITS) | offset
}

/// Counters for benchmarks.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogStats {
    pub commits: u64,
    pub records: u64,
    pub bytes: u64,
}

struct Pending {
    seq: u64,
    pos: Pos,
    /// This record starts a new segment.
    rolls: bool,
    bytes: Arc<[u8]>,
}

struct State {
    next_seq: u64,
    /// The segment the next record goes to, and its length counting pending records.
    segment: u64,
    segment_len: u64,
    pending: BTreeMap<Pos, Pending>,
    /// Every record below this seq is on disk.
    durable: u64,
    /// Someone waits for a commit (`sync`).
    urgent: bool,
    failed: Option<String>,
    stopping: bool,
    stats: LogStats,
    /// Where the records on disk end: (segment, offset).
    end: (u64, u64),
}

pub struct Log {
    dir: PathBuf,
    segment_bytes: u64,
    state: Arc<(Mutex<State>, Condvar)>,
    readers: Mutex<HashMap<u64, Arc<File>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Log {
    /// Opens the log in `dir` (its torn tail cut, a new segment started) and starts the
    /// committer.
    pub fn open(dir: &Path, segment_bytes: u64) -> io::Result<Log> {
        let segment_bytes = segment_bytes.clamp(4096, MAX_SEGMENT_BYTES);
        let writer = Writer::open_manual(dir, segment_bytes)?;
        let next_seq = writer.next_seq();
        let state = Arc::new((
            Mutex::new(State {
                next_seq,
                segment: next_seq,
                segment_len: 0,
                pending: BTreeMap::new(),
                durable: next_seq,
                urgent: false,
                failed: None,
                stopping: false,
                stats: LogStats::default(),
                end: (next_seq, 0),
            }),
            Condvar::new(),
        ));
        let shared = state.clone();
        let thread = std::thread::Builder::new()
            .name("queue-log".into())
            .spawn(move || commit_loop(writer, &shared))?;
        Ok(Log {
            dir: dir.to_owned(),
            segment_bytes,
            state,
            readers: Mutex::new(HashMap::new()),
            thread: Some(thread),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends records; returns their positions. They reach the disk with the next commit.
    pub fn append(&self, records: Vec<Vec<u8>>) -> Vec<Pos> {
        let mut state = self.state();
        // The committer sleeps while nothing is pending, and gathers for `COMMIT_EVERY` once
        // something is: only the first record of a batch wakes it.
        let wake = state.pending.is_empty();
        let mut positions = Vec::with_capacity(records.len());
        for bytes in records {
            let len = segment::record_len(bytes.len());
            let rolls = state.segment_len > 0 && state.segment_len + len > self.segment_bytes;
            if rolls {
                state.segment = state.next_seq;
                state.segment_len = 0;
            }
            let at = pos(state.segment, state.segment_len);
            let seq = state.next_seq;
            state.next_seq += 1;
            state.segment_len += len;
            state.pending.insert(
                at,
                Pending {
                    seq,
                    pos: at,
                    rolls,
                    bytes: bytes.into(),
                },
            );
            positions.push(at);
        }
        drop(state);
        if wake {
            self.state.1.notify_all();
        }
        positions
    }

    /// The seq the next record will get: records below it are in the log (or pending).
    pub fn next_seq(&self) -> u64 {
        self.state().next_seq
    }

    /// Waits until everything appended so far is on disk.
    pub fn sync(&self) -> io::Result<()> {
        let (lock, changed) = &*self.state;
        let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
        let target = state.next_seq;
        state.urgent = true;
        changed.notify_all();
        while state.durable < target && state.failed.is_none() {
            state = changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        match &state.failed {
            Some(error) => Err(io::Error::other(error.clone())),
            None => Ok(()),
        }
    }

    pub fn stats(&self) -> LogStats {
        self.state().stats
    }

    /// Where the records on disk end: (segment, byte offset). For tests that tear the tail.
    pub fn durable_end(&self) -> (u64, u64) {
        self.state().end
    }

    /// The record at `at`: from memory while it waits for the committer, else from its file.
    pub fn read(&self, at: Pos) -> io::Result<Vec<u8>> {
        if let Some(pending) = self.state().pending.get(&at) {
            return Ok(pending.bytes.to_vec());
        }
        let file = self.reader(segment_of(at))?;
        match segment::read_at(&file, offset_of(at))? {
            Some((_, payload)) => Ok(payload),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "queue log record at {}:{} is damaged",
                    segment_of(at),
                    offset_of(at)
                ),
            )),
        }
    }

    fn reader(&self, segment: u64) -> io::Result<Arc<File>> {
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(file) = readers.get(&segment) {
            return Ok(file.clone());
        }
        let file = Arc::new(File::open(segment::segment_path(&self.dir, segment))?);
        readers.insert(segment, file.clone());
        Ok(file)
    }

    /// The segments on disk (first seqs), oldest first; the last is being written.
    pub fn segments(&self) -> io::Result<Vec<u64>> {
        Ok(segment::list(&self.dir)?
            .into_iter()
            .map(|(_, first)| first)
            .collect())
    }

    /// Deletes a segment nothing points into any more (never the one being written).
    pub fn remove_segment(&self, first: u64) -> io::Result<()> {
        if first >= self.state().segment {
            return Ok(());
        }
        self.readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&first);
        std::fs::remove_file(segment::segment_path(&self.dir, first))
    }

    /// Every record from seq `from` on with its position, in order (replay at open).
    pub fn replay(
        &self,
        from: u64,
    ) -> io::Result<impl Iterator<Item = io::Result<(u64, Pos, Vec<u8>)>>> {
        replay(&self.dir, from)
    }
}

/// Every record of the log in `dir` from seq `from` on, with its position.
pub fn replay(
    dir: &Path,
    from: u64,
) -> io::Result<impl Iterator<Item = io::Result<(u64, Pos, Vec<u8>)>> + use<>> {
    let segments = segment::list(dir)?;
    let start = segments
        .iter()
        .rposition(|(_, first)| *first <= from)
        .unwrap_or(0);
    let mut files = Vec::new();
    for (path, first) in &segments[start..] {
        files.push((File::open(path)?, *first));
    }
    Ok(files.into_iter().flat_map(move |(file, first)| {
        let mut records = segment::Records::new(io::BufReader::with_capacity(1 << 20, file), first);
        std::iter::from_fn(move || {
            let offset = records.offset;
            let record = records.next()?;
            Some(record.map(|(seq, payload)| (seq, pos(first, offset), payload)))
        })
        .filter(move |record| !matches!(record, Ok((seq, _, _)) if *seq < from))
    }))
}

impl Drop for Log {
    /// Commits what is pending and stops the committer.
    fn drop(&mut self) {
        self.state().stopping = true;
        self.state.1.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn commit_loop(mut writer: Writer, shared: &(Mutex<State>, Condvar)) {
    let (lock, changed) = shared;
    loop {
        let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
        while state.pending.is_empty() && !state.stopping {
            state = changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        if !state.urgent && !state.stopping {
            // Let appends gather: one write and one fsync for all of them.
            state = changed
                .wait_timeout_while(state, COMMIT_EVERY, |s| !s.urgent && !s.stopping)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let batch: Vec<(u64, bool, Arc<[u8]>, Pos)> = state
            .pending
            .values()
            .map(|p| (p.seq, p.rolls, p.bytes.clone(), p.pos))
            .collect();
        let stopping = state.stopping;
        state.urgent = false;
        let target = state.next_seq;
        drop(state);
        if batch.is_empty() && stopping {
            return;
        }
        let (written, result) = write(&mut writer, &batch);
        let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
        for (_, _, payload, at) in &batch[..written] {
            state.pending.remove(at);
            state.stats.bytes += segment::record_len(payload.len());
        }
        state.stats.records += written as u64;
        let end = writer.end();
        state.end = (end.segment, end.offset);
        match result {
            Ok(()) => {
                state.durable = target;
                state.stats.commits += 1;
            }
            Err(CommitError::RollOver(error)) if stopping => {
                // Closing: what is not written is what a crash would have lost.
                tracing::error!(%error, "the queue log cannot start its next segment; closing without the last state changes");
                state.failed = Some(error.to_string());
                changed.notify_all();
                return;
            }
            Err(CommitError::RollOver(error)) => {
                state.durable = batch.get(written).map_or(target, |(seq, ..)| *seq);
                drop(state);
                tracing::warn!(%error, "the queue log cannot start its next segment; trying again in 1 s");
                changed.notify_all();
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
            Err(CommitError::Write(error)) => {
                tracing::error!(%error, "the queue log cannot write; state changes stay in memory until a restart");
                state.failed = Some(error.to_string());
                changed.notify_all();
                return;
            }
        }
        changed.notify_all();
    }
}

/// Writes a batch (rolling over where the appends decided) and fsyncs; returns how many of
/// its records are on disk, and how it ended.
fn write(
    writer: &mut Writer,
    batch: &[(u64, bool, Arc<[u8]>, Pos)],
) -> (usize, Result<(), CommitError>) {
    let Some(&(first, ..)) = batch.first() else {
        return (0, Ok(()));
    };
    let (mut start, mut done) = (first, 0);
    for (n, (seq, rolls, payload, _)) in batch.iter().enumerate() {
        if *rolls {
            if let Err(error) = writer.commit(start) {
                return (done, Err(error));
            }
            done = n;
            if let Err(error) = writer.roll_over(*seq) {
                return (done, Err(CommitError::RollOver(error)));
            }
            start = *seq;
        }
        writer.push(payload);
    }
    match writer.commit(start) {
        Ok(()) => (batch.len(), Ok(())),
        Err(error) => (done, Err(error)),
    }
}
